"""The real CUDA build of torch, for the tests that run it in a child interpreter.

``scripts/test.sh`` (the test command, and CI's) makes a virtual environment with torch 2.14.1+cu130 and
names its python in ``ENVCHECK_CUDA_TORCH_PYTHON``; point the variable at another CUDA torch's python to
test that one. Without it those tests skip, except under CI, where a missing CUDA build is an error
(see conftest.py): CI must never pass by skipping them.
"""

from __future__ import annotations

import os

import pytest

ENV = "ENVCHECK_CUDA_TORCH_PYTHON"
#: The interpreter of an environment with a CUDA build of torch, or None when none was named.
CUDA_TORCH_PYTHON: str | None = os.environ.get(ENV) or None
HOW_TO_ENABLE = f"run scripts/test.sh, or set {ENV} to the python of an environment with a CUDA build of torch"


def missing_reason() -> str | None:
    """Why the CUDA build cannot be used, or None when it can."""
    if CUDA_TORCH_PYTHON is None:
        return f"no CUDA build of torch named: {HOW_TO_ENABLE}"
    if not os.access(CUDA_TORCH_PYTHON, os.X_OK):
        return f"{ENV} is not an executable python ({CUDA_TORCH_PYTHON}): {HOW_TO_ENABLE}"
    return None


needs_cuda_torch = pytest.mark.skipif(missing_reason() is not None, reason=str(missing_reason()))
