"""A CUDA 12.4 build of torch compiled for Ampere and Hopper only (sm_80, sm_90), as the doctor's torch
child sees it (put this folder first on the child's PYTHONPATH): it imports, reports its build, and finds
no usable GPU, so nothing is ever run on one. On a machine with a newer card (compute capability 12.0)
its arch list does not cover it: the doctor's torch.arch fails, and so must the bench's preflight."""

from types import SimpleNamespace

__version__ = "2.5.1+cu124"
version = SimpleNamespace(cuda="12.4", hip=None, debug=False)
backends = SimpleNamespace(cudnn=SimpleNamespace(version=lambda: 90100))
_C = SimpleNamespace(_cuda_getArchFlags=lambda: "sm_80 sm_90")


def _no_driver() -> None:
    raise RuntimeError("Found no NVIDIA driver on your system.")


cuda = SimpleNamespace(
    is_available=lambda: False,
    init=_no_driver,
    device_count=lambda: 0,
    nccl=SimpleNamespace(version=lambda: (2, 21, 5)),
)
