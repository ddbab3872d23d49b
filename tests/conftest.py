"""Shared fixtures: the fake NVML library (at the C boundary) and a click runner."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests import fakenvml


@pytest.fixture
def nvml(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], fakenvml.FakeNvmlLib | None]:
    """``nvml("gpu_lost")`` installs that scenario; ``nvml("no_library")`` removes the library."""

    def use(scenario: str) -> fakenvml.FakeNvmlLib | None:
        lib = None if scenario == "no_library" else fakenvml.SCENARIOS[scenario]()
        fakenvml.install(lib, monkeypatch)
        return lib

    return use
