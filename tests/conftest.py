"""Shared fixtures: the fake NVML library (at the C boundary); under CI, the guard that the CUDA build of torch
is there (tests/cuda_torch.py)."""

from __future__ import annotations

import os
from collections.abc import Callable

import psutil
import pytest

from tests import cuda_torch, fakenvml


def pytest_report_header() -> str:
    return f"CUDA build of torch: {cuda_torch.CUDA_TORCH_PYTHON or 'none'} ({cuda_torch.ENV})"


def pytest_sessionstart(session: pytest.Session) -> None:
    # Under CI the tests against the real CUDA build must run, not skip: a CI that lost its second venv
    # would otherwise stay green while testing less.
    reason = cuda_torch.missing_reason()
    if os.environ.get("CI", "").lower() in ("1", "true", "yes") and reason:
        raise pytest.UsageError(f"CI needs the CUDA build of torch: {reason}")


@pytest.fixture(autouse=True, scope="session")
def _state_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The healthcheck keeps its kernel-log position under $XDG_STATE_HOME: the tests' runs keep theirs apart."""
    os.environ["XDG_STATE_HOME"] = str(tmp_path_factory.mktemp("state"))


@pytest.fixture
def nvml(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], fakenvml.FakeNvmlLib | None]:
    """``nvml("gpu_lost")`` installs that scenario; ``nvml("no_library")`` removes the library."""

    def use(scenario: str) -> fakenvml.FakeNvmlLib | None:
        lib = None if scenario == "no_library" else fakenvml.SCENARIOS[scenario]()
        fakenvml.install(lib, monkeypatch)
        return lib

    return use


@pytest.fixture
def left_behind() -> Callable[[], list[psutil.Process]]:
    """``left_behind()``: the processes this test started that are still there, running or dead and not reaped.
    Only this test's: a probe an earlier in-process doctor no longer needed may still be finishing (the
    runner does not wait for data no check reads), and it is not a worker this test left behind."""
    before = {p.pid for p in psutil.Process().children(recursive=True)}

    def left() -> list[psutil.Process]:
        return [p for p in psutil.Process().children(recursive=True) if p.pid not in before]

    return left
