"""A stand-in for ``jax`` that behaves as ``FAKE_JAX`` says, to judge what no CPU machine shows with the real one:

* ``hang``: the import never finishes; ``crash``: the import kills the interpreter (SIGSEGV);
* ``torch_cudnn``: on the GPU (4 devices), unless torch was imported first: then JAX logs the message of
  jax-ml/jax#18032 ("CUDA backend failed to initialize: Found cuDNN version 8700, ...") and runs on the CPU;
* ``outdated``: JAX's CUDA plugin refuses the cuDNN it finds, as ``_check_cuda_versions`` of
  jax_plugins/xla_cuda12 does, logged by ``discover_pjrt_plugins``; JAX runs on the CPU.

Put tests/fake_jax on PYTHONPATH and set FAKE_JAX.
"""

import logging
import os
import signal
import sys
import time

__version__ = "0.4.20"
_mode = os.environ.get("FAKE_JAX", "")
_logger = logging.getLogger("jax._src.xla_bridge")

if _mode == "hang":
    while True:
        time.sleep(1)
if _mode == "crash":
    os.kill(os.getpid(), signal.SIGSEGV)


class _Device:
    def __init__(self, index, platform):
        self.id, self.platform = index, platform
        self.device_kind = "NVIDIA H100 80GB HBM3" if platform == "gpu" else "cpu"


def _backend():
    if _mode == "torch_cudnn" and "torch" in sys.modules:
        _logger.warning(
            "CUDA backend failed to initialize: Found cuDNN version 8700, but JAX was built against version 8800, "
            "which is newer. The copy of cuDNN that is installed must be at least as new as the version against "
            "which JAX was built. (Set TF_CPP_MIN_LOG_LEVEL=0 and rerun for more info.)"
        )
        return "cpu"
    if _mode == "outdated":
        try:
            raise RuntimeError(
                "Unable to use CUDA because of the following issues with CUDA components:\n"
                "Outdated cuDNN installation found.\nVersion JAX was built against: 91200\nMinimum supported: 91200\n"
                "Installed version: 90100\nThe local installation version must be no lower than 91200."
            )
        except RuntimeError:
            _logger.exception(
                "Jax plugin configuration error: Exception when calling jax_plugins.xla_cuda12.initialize()"
            )
        return "cpu"
    return "gpu"


_chosen = []


def default_backend():
    if not _chosen:
        _chosen.append(_backend())
    return _chosen[0]


def devices():
    platform = default_backend()
    return [_Device(i, platform) for i in range(4 if platform == "gpu" else 1)]
