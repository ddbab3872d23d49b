"""The runner's isolation (cf. flutter doctor's Passing / Crashing / Stuck validators): a stuck probe
becomes a verdict naming what hung, a crashing check becomes ``crash``, and the run always finishes."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest

import envcheck.probes.nvml.inventory  # noqa: F401 - registers the nvml probe
from envcheck.core.exit import ExitCode, exit_code_for
from envcheck.core.model import SkipCheck, Status, ok, worst
from envcheck.core.registry import CheckSpec, UnknownSelection
from envcheck.doctor.areas import select_checks as select
from envcheck.doctor.runner import ProbeContext as Context
from envcheck.doctor.runner import ProbeRunner, run_check
from envcheck.probes.registry import PROBES, ProbeSpec


def make_ctx(probes: dict[str, ProbeSpec], deadline_s: float = 5.0) -> Context:
    return Context(ProbeRunner({}, deadline_s, probes=probes), {})


def spec(fn, check_id: str = "host.test") -> CheckSpec:
    return CheckSpec(check_id, "Test check", fn, "test")


def test_passing_check():
    ctx = make_ctx({"data": ProbeSpec("data", lambda env: 42, 1.0, "the data source")})
    result = run_check(spec(lambda c: ok(f"answer {c.probe('data')}", value=c.probe("data"))), ctx)
    assert result.status is Status.OK and result.summary == "answer 42"
    assert result.details == {"value": 42}


def test_stuck_probe_becomes_a_verdict_naming_what_hung():
    release = threading.Event()
    # The real NVML probe's registration (its words and its fix), with a body that never returns.
    stuck = replace(PROBES["nvml"], fn=lambda env: release.wait(60), timeout_s=0.2)
    ctx = make_ctx({"nvml": stuck})
    try:
        result = run_check(spec(lambda c: ok(str(c.probe("nvml")))), ctx)
    finally:
        release.set()
    assert result.status is Status.FAIL
    assert result.summary == "NVML (the NVIDIA driver library) hung: no answer within 0.2 s"
    assert "xid" in result.fix.command.lower() and "nvidia-smi" in result.fix.text
    assert result.details == {"probe": "nvml", "timeout_s": 0.2}


def test_global_deadline_bounds_a_probe_with_a_longer_timeout():
    release = threading.Event()
    stuck = ProbeSpec("torch", lambda env: release.wait(60), 600.0, "the torch child process")
    ctx = make_ctx({"torch": stuck}, deadline_s=0.3)
    try:
        result = run_check(spec(lambda c: ok(str(c.probe("torch")))), ctx)
    finally:
        release.set()
    assert result.status is Status.FAIL and "the torch child process hung" in result.summary
    assert "by hand" in result.fix.text  # a probe without its own advice gets the generic one


def test_crashing_check_is_reported_and_counts_as_failure():
    ctx = make_ctx({})

    def broken(c: Context):
        raise ZeroDivisionError("division by zero")

    result = run_check(spec(broken), ctx)
    assert result.status is Status.CRASH
    assert result.summary == "check crashed: ZeroDivisionError: division by zero"
    assert "bug in envcheck" in result.fix.text
    assert any("ZeroDivisionError" in line for line in result.details["traceback"])
    assert worst([Status.OK, Status.CRASH]) is Status.FAIL
    assert exit_code_for([Status.OK, Status.CRASH]) is ExitCode.FAILED


def test_probe_that_raises_crashes_only_its_checks():
    def explode(env):
        raise RuntimeError("boom")

    ctx = make_ctx(
        {"bad": ProbeSpec("bad", explode, 1.0, "a bad probe"), "good": ProbeSpec("good", lambda e: 1, 1.0, "g")}
    )
    bad = run_check(spec(lambda c: ok(str(c.probe("bad")))), ctx)
    good = run_check(spec(lambda c: ok(str(c.probe("good")))), ctx)
    assert bad.status is Status.CRASH and "RuntimeError: boom" in bad.summary
    assert good.status is Status.OK


def test_skip_check():
    def no_gpus(c: Context):
        raise SkipCheck("no working GPUs to judge", reason="none")

    result = run_check(spec(no_gpus), make_ctx({}))
    assert result.status is Status.SKIP
    assert (result.summary, result.details) == ("no working GPUs to judge", {"reason": "none"})


def test_probe_runs_once_for_many_checks():
    calls = []
    ctx = make_ctx({"p": ProbeSpec("p", lambda env: calls.append(1) or len(calls), 1.0, "p")})
    for _ in range(3):
        run_check(spec(lambda c: ok(str(c.probe("p")))), ctx)
    assert calls == [1]


def test_exit_code_policy():
    assert exit_code_for([Status.OK, Status.SKIP]) is ExitCode.OK
    assert exit_code_for([Status.OK, Status.WARN]) is ExitCode.OK
    assert exit_code_for([Status.WARN], strict=True) is ExitCode.FAILED
    assert exit_code_for([Status.FAIL, Status.WARN]) is ExitCode.FAILED


def test_quick_selection_never_includes_torch_or_packages():
    chosen = select([], quick=True)
    areas = {c.area for c in chosen if c.area != "kernel"}
    assert {"driver", "gpu"} <= areas <= {"host", "driver", "gpu"}
    # Of the kernel area, the healthcheck runs kernel.xid alone (this boot's log since its last run).
    assert [c.id for c in chosen if c.area == "kernel"] == ["kernel.xid"]
    assert {c.area for c in select(["torch"], quick=False)} == {"torch"}
    with pytest.raises(UnknownSelection, match="--quick runs only the host, driver, gpu areas, not torch.arch"):
        select(["gpu", "torch.arch"], quick=True)
