"""The verdict in words, computed once for every format, and the healthcheck's judgement of a crash."""

from __future__ import annotations

import pytest

from envcheck.core.model import CheckResult, Status
from envcheck.reporting import summarize


def results(*statuses: Status) -> list[CheckResult]:
    return [CheckResult(f"host.c{i}", "t", s, "s") for i, s in enumerate(statuses)]


@pytest.mark.parametrize(
    ("statuses", "gpus_seen", "verdict", "text"),
    [
        ((Status.OK, Status.OK), True, "ready", "ready: no problems found"),
        ((Status.OK, Status.SKIP), False, "ready_cpu", "ready for CPU work: no NVIDIA GPU found"),
        ((Status.OK, Status.WARN), False, "ready_cpu", "ready for CPU work: no NVIDIA GPU found, 1 warning"),
        ((Status.OK, Status.WARN, Status.WARN), True, "warnings", "ready, with warnings: 2 warnings"),
        ((Status.OK, Status.WARN), None, "warnings", "ready, with warnings: 1 warning"),
        ((Status.FAIL, Status.WARN), True, "not_ready", "not ready: 1 problem, 1 warning"),
        ((Status.CRASH,), True, "not_ready", "not ready: 1 check crashed (envcheck bug)"),
        (
            (Status.FAIL, Status.FAIL, Status.CRASH),
            False,
            "not_ready",
            "not ready: 2 problems, 1 check crashed (envcheck bug)",
        ),
        (
            (Status.SKIP, Status.SKIP, Status.SKIP),
            False,
            "nothing_checked",
            "nothing checked: all 3 selected checks skipped",
        ),
        ((), None, "nothing_checked", "nothing checked: no check selected"),
    ],
)
def test_summary_words(statuses, gpus_seen, verdict, text):
    summary = summarize(results(*statuses), gpus_seen=gpus_seen)
    assert (summary.verdict, summary.text) == (verdict, text)


def test_a_check_that_crashes_inside_the_healthcheck_is_unhealthy(monkeypatch, nvml):
    from envcheck.core.registry import CHECKS, CheckSpec
    from envcheck.health import healthcheck_line

    nvml("healthy_multi_gpu")

    def broken(ctx):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setitem(CHECKS, "host.os", CheckSpec("host.os", "Operating system", broken, "doc"))
    healthy, line = healthcheck_line(8.0)
    assert healthy is False
    assert line.startswith("unhealthy: host.os: check crashed: ZeroDivisionError: division by zero")
