"""A healthy CPU torch whose import is slow but finishes, like a real one on a busy machine or a cold
network filesystem: it keeps the interpreter busy running Python for ENVCHECK_TEST_IMPORT_S seconds
(default 2), as torch's own import does, then behaves like a CPU build.

With ENVCHECK_TEST_PIDFILE set it first writes its pid there, so that a test can check that it is gone.
"""

import os
import time
from types import SimpleNamespace

if os.environ.get("ENVCHECK_TEST_PIDFILE"):
    with open(os.environ["ENVCHECK_TEST_PIDFILE"], "w") as pidfile:
        pidfile.write(f"{os.getpid()}\n")


def _import_the_world(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        compile("x = [i * i for i in range(100)]", "<torch>", "exec")  # busy, like importing modules


_import_the_world(float(os.environ.get("ENVCHECK_TEST_IMPORT_S", "2")))

__version__ = "2.5.1+cpu"
version = SimpleNamespace(cuda=None, hip=None, debug=False)
backends = SimpleNamespace(cudnn=SimpleNamespace(version=lambda: None))
cuda = SimpleNamespace(is_available=lambda: False, device_count=lambda: 0)
