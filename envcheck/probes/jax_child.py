"""The script the JAX probe runs in a child process: ``python jax_child.py LIMIT_S [torch]``.

JAX picks its backend when ``jax.devices()`` is first called: it imports every module under the
``jax_plugins`` namespace and every ``jax_plugins`` entry point (``jax._src.xla_bridge.discover_pjrt_plugins``),
calls each one's ``initialize()`` (the CUDA plugin checks the cuDNN, cuBLAS, cuFFT, cuSPARSE and CUDA runtime
it loads against what it was built with there, and raises), and falls back to the CPU with a *logged warning*
when that fails: "CUDA backend failed to initialize: ...", "An NVIDIA GPU may be present on this machine, but a
CUDA-enabled jaxlib is not installed", "Jax plugin configuration error: Exception when calling ...". Nothing
raises; the job just runs on the CPU. So this child keeps every warning jax logs or warns while it imports and
picks its devices, and says which backend it ended on.

With ``torch`` it imports torch first, as most scripts that use both do: torch loads its own cuDNN and cuBLAS
into the process, and JAX's plugin then finds those instead of its own (jax-ml/jax#18032).

Like the torch child it never imports envcheck, takes only envcheck/core/workers.py by path
(envcheck.probes.child_protocol), says each step before it starts (``{"stage": ...}``) and its last line
carries ``"done": true``.
"""

import logging
import sys
import time
import traceback
import warnings

if __package__:
    from envcheck.probes.child_protocol import load
else:  # run by path: this file's directory is first on sys.path (until main drops it)
    from child_protocol import load

workers = load()
emit = workers.emit
error_text = workers.error_text

#: One message is kept to this many characters (a plugin's traceback is long; its last lines say why).
MESSAGE_CHARS = 3000


class Keep(logging.Handler):
    """Every warning or error any logger writes (jax's, its plugins'), with the traceback a plugin's
    ``initialize()`` failure carries: that traceback's last line is the CUDA version message."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        try:
            text = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                text += "\n" + "".join(traceback.format_exception_only(record.exc_info[0], record.exc_info[1]))
        except Exception as exc:  # noqa: BLE001 - a badly formatted record is still a message
            text = f"(unformattable log record: {error_text(exc)})"
        self.messages.append(text.strip()[-MESSAGE_CHARS:])


def main(argv):
    timeout_s = float(argv[1]) if len(argv) > 1 else 0.0
    torch_first = len(argv) > 2 and argv[2] == "torch"
    workers.start_script(__file__, timeout_s)  # off envcheck's own jax.py and torch.py, last words, orphan alarm
    keep = Keep()
    logging.getLogger().addHandler(keep)
    emit(python=sys.version.split()[0], executable=sys.executable)
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        if torch_first:
            emit(stage="import_torch")
            try:
                import torch
            except BaseException as exc:  # noqa: BLE001 - torch's own checks judge it; this run has no answer
                emit(status="torch_error", error=error_text(exc), done=True)
                return 0
            emit(torch_version=str(getattr(torch, "__version__", "")) or None,
                 torch_cuda=getattr(getattr(torch, "version", None), "cuda", None))  # fmt: skip
        emit(stage="import")
        started = time.monotonic()
        try:
            import jax
        except ModuleNotFoundError as exc:
            status = "not_installed" if exc.name == "jax" else "import_error"
            emit(status=status, error=error_text(exc), messages=keep.messages, done=True)
            return 0
        except BaseException as exc:  # noqa: BLE001 - SystemExit, KeyboardInterrupt from a broken jax too
            emit(status="import_error", error=error_text(exc), messages=keep.messages, done=True)
            return 0
        emit(import_s=round(time.monotonic() - started, 3), jax_version=getattr(jax, "__version__", None))
        try:
            import jaxlib

            emit(jaxlib_version=getattr(jaxlib, "__version__", None))
        except BaseException as exc:  # noqa: BLE001 - jax imported, so this is only a missing fact
            emit(jaxlib_error=error_text(exc))
        emit(stage="backend")
        started = time.monotonic()
        try:
            devices = jax.devices()
            emit(
                devices=[
                    {"id": getattr(d, "id", None), "platform": getattr(d, "platform", None),
                     "kind": getattr(d, "device_kind", None)}
                    for d in devices
                ],
                default_backend=jax.default_backend(),
            )  # fmt: skip
        except BaseException as exc:  # noqa: BLE001 - JAX_PLATFORMS=cuda with a broken plugin raises here
            emit(devices_error=error_text(exc))
        emit(backend_s=round(time.monotonic() - started, 3))
    messages = keep.messages + [f"{w.category.__name__}: {w.message}" for w in warned]
    emit(stage="done", status="ok", messages=[m[-MESSAGE_CHARS:] for m in messages], done=True)
    return 0


if __name__ == "__main__":
    # Everything is said: skip the interpreter's teardown (a CUDA context on a bad GPU can hang in it).
    workers.exit_now(main(sys.argv))
