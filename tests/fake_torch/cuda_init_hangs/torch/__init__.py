"""A CUDA torch that imports, but whose CUDA initialisation never returns (a wedged driver)."""

import time
from types import SimpleNamespace

__version__ = "2.5.1+cu124"
version = SimpleNamespace(cuda="12.4", hip=None)


def _hang() -> bool:
    time.sleep(3600)
    return True


cuda = SimpleNamespace(is_available=_hang)
