"""``nvml_state``: the one way a check reads NVML, in each of the ways checks need it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from envcheck.core.model import SkipCheck
from envcheck.core.probing import ProbeTimeout
from envcheck.doctor.reading import nvml_state
from envcheck.probes.nvml.inventory import NvmlState


@dataclass
class Ctx:
    """A check's context whose ``nvml`` probe answers ``state``, or raises it."""

    state: Any
    env: dict[str, str] = field(default_factory=dict)

    def probe(self, name: str) -> Any:
        assert name == "nvml"
        if isinstance(self.state, BaseException):
            raise self.state
        return self.state


RUNNING = NvmlState(status="ok")
NOT_LOADED = NvmlState(status="driver_not_loaded")
HUNG = ProbeTimeout("nvml", "NVML (the NVIDIA driver library)", 15.0, None)


def test_a_check_that_judges_nvml_skips_when_it_did_not_start_and_owns_a_hang():
    assert nvml_state(Ctx(RUNNING)) is RUNNING
    with pytest.raises(SkipCheck, match=r"^NVML unavailable \(driver not loaded\); see driver.nvml$"):
        nvml_state(Ctx(NOT_LOADED))
    with pytest.raises(ProbeTimeout):
        nvml_state(Ctx(HUNG))


def test_a_check_that_reads_any_state_gets_it_whatever_its_status():
    assert nvml_state(Ctx(NOT_LOADED), started=False) is NOT_LOADED
    with pytest.raises(ProbeTimeout):
        nvml_state(Ctx(HUNG), started=False)


def test_a_check_that_only_consults_nvml_gets_none_or_its_own_skip():
    assert nvml_state(Ctx(RUNNING), consult=True) is RUNNING
    assert nvml_state(Ctx(NOT_LOADED), consult=True) is None
    assert nvml_state(Ctx(HUNG), consult=True) is None
    assert nvml_state(Ctx(NOT_LOADED), started=False, consult=True) is NOT_LOADED
    assert nvml_state(Ctx(HUNG), started=False, consult=True) is None
    for state in (NOT_LOADED, HUNG):
        with pytest.raises(SkipCheck, match="^no NVML here$"):
            nvml_state(Ctx(state), consult=True, skip="no NVML here")
