"""The burn's run layer: the workers on CPU "devices" (several at once stand in for a node's GPUs, as in the
bench's fan-out tests), a wrong result or a crash injected into one worker from tests/burn/worker_faults, and
the GPU verdicts carried into the envcheck.burn/1 document from the fake NVML's scenarios on a fake clock."""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path

import pytest

from envcheck.burn import plan
from envcheck.burn.app import BurnChild, BurnRequest, report_for, run_burn
from envcheck.burn.report import burn_document, value_at
from envcheck.core.errors import CommandError
from envcheck.core.exit import ExitCode, exit_code_for
from envcheck.core.model import Status
from envcheck.core.report import utc_now
from envcheck.core.units import parse_duration
from envcheck.devices import resolve
from envcheck.devices.model import DeviceInfo
from envcheck.probes.contention import Contention
from envcheck.probes.nvml.telemetry import Point, Sampler
from envcheck.render import make_console, render
from tests import fakenvml

FAULTS = Path(__file__).resolve().parent / "worker_faults"


def cpus(*names: str) -> list[DeviceInfo]:
    return [replace(resolve.cpu_here(), name=name) for name in names]


def with_faults(faults: str) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(FAULTS), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "ENVCHECK_TEST_BURN_FAULTS": faults}


def verdict(doc: dict, device: str, rule: str) -> dict:
    entry = next(d for d in doc["devices"] if d["name"] == device)
    return next(v for v in entry["verdicts"] if v["id"] == rule)


# -- the options -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"), [("10m", 600.0), ("90s", 90.0), ("1h", 3600.0), ("1.5h", 5400.0), ("45", 45.0), (5, 5.0)]
)
def test_durations_as_people_write_them(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["0", "-5s", "nan", "inf", "1e400", "ten minutes", "", "5d"])
def test_a_duration_that_is_not_one_is_refused_in_one_line_with_exit_2(text):
    with pytest.raises(CommandError) as caught:
        BurnRequest.parse(device="cpu", duration=text)
    assert caught.value.exit_code == ExitCode.USAGE
    assert str(caught.value).startswith("--duration ") and "\n" not in str(caught.value)


def test_each_signal_has_its_own_exit_code():
    assert exit_code_for([Status.FAIL], interrupted=True, stopped_by="SIGTERM") == ExitCode.TERMINATED == 143
    assert exit_code_for([Status.OK], interrupted=True, stopped_by="SIGHUP") == ExitCode.HANGUP == 129
    assert exit_code_for([Status.FAIL], interrupted=True, stopped_by="SIGINT") == ExitCode.INTERRUPTED == 130
    assert exit_code_for([Status.OK], interrupted=True) == ExitCode.INTERRUPTED == 130


# -- workers on CPU devices --------------------------------------------------------------------------------------


def test_a_wrong_result_fails_that_device_only_and_a_crashed_worker_fails_its_own(left_behind):
    """cpu:1 computes one wrong element once; cpu:2's worker dies of SIGSEGV at its first check; cpu:0 is fine."""
    request = replace(BurnRequest.parse(device="cpu", duration="3s"), check_every_s=1.0)
    started = time.monotonic()
    report = run_burn(request, chosen=cpus("cpu:0", "cpu:1", "cpu:2"), env=with_faults("cpu:1=mismatch,cpu:2=segv"))
    took = time.monotonic() - started
    doc = burn_document(report)
    json.dumps(doc, allow_nan=False)
    results = {v["id"]: v for v in doc["verdicts"]}

    mismatch = results["burn.mismatch"]
    assert mismatch["status"] == "fail" and mismatch["summary"].startswith("cpu:1: 1 of ")
    assert mismatch["details"]["problems"].keys() == {"cpu:1"}
    assert verdict(doc, "cpu:1", "burn.mismatch")["status"] == "fail"
    assert verdict(doc, "cpu:0", "burn.mismatch")["status"] == "ok"
    assert verdict(doc, "cpu:2", "burn.mismatch")["status"] == "ok"
    one = next(d for d in doc["devices"] if d["name"] == "cpu:1")
    assert one["mismatches"] == 1 and one["checked"] >= 10 and one["max_abs_diff"] >= 999

    worker = results["burn.worker"]
    assert worker["status"] == "fail" and worker["details"]["problems"].keys() == {"cpu:2"}
    assert worker["summary"].startswith("cpu:2: worker crashed with SIGSEGV during the burn (at ")
    assert "sitecustomize.py" in worker["summary"] and "dmesg" in worker["fix"]["command"]
    assert verdict(doc, "cpu:0", "burn.worker")["status"] == "ok"
    healthy = next(d for d in doc["devices"] if d["name"] == "cpu:0")
    assert healthy["mismatches"] == 0 and healthy["load_s"] >= 3.0 and healthy["error"] is None

    assert doc["exit_code"] == 1 and doc["summary"]["verdict"] == "failed" and not doc["interrupted"]
    assert took < 30
    assert not left_behind()  # no worker left behind


def test_a_worker_that_hangs_is_killed_at_its_deadline_and_named_while_its_sibling_keeps_its_figures(left_behind):
    """cpu:1's first check never returns (a wedged driver): after its silence allowance the worker gets SIGUSR1
    for its stack, then its process group is killed; the run ends instead of waiting out the duration's grace,
    cpu:1 fails burn.worker naming the hang, and cpu:0's burn is whole."""
    request = replace(BurnRequest.parse(device="cpu", duration="4s"), check_every_s=1.0, silence_s=6.0)
    started = time.monotonic()
    report = run_burn(request, chosen=cpus("cpu:0", "cpu:1"), env=with_faults("cpu:1=hang"))
    took = time.monotonic() - started
    doc = burn_document(report)
    json.dumps(doc, allow_nan=False)

    worker = {v["id"]: v for v in doc["verdicts"]}["burn.worker"]
    assert worker["status"] == "fail" and worker["details"]["problems"].keys() == {"cpu:1"}
    assert worker["summary"].startswith("cpu:1: worker hung past its "), worker["summary"]
    assert "killed" in worker["summary"]
    assert verdict(doc, "cpu:0", "burn.worker")["status"] == "ok"
    healthy = next(d for d in doc["devices"] if d["name"] == "cpu:0")
    assert healthy["error"] is None and healthy["load_s"] >= 4.0 and healthy["mismatches"] == 0
    hung = next(d for d in doc["devices"] if d["name"] == "cpu:1")
    assert hung["error"] and "hung" in hung["error"]
    assert doc["exit_code"] == 1 and not doc["interrupted"]
    assert took < 30  # not the 30 s a finished burn's last check is allowed
    assert not left_behind()


def test_a_request_for_a_gpu_where_there_is_none_is_one_line():
    with pytest.raises(CommandError) as caught:
        BurnRequest.parse(device="cuda:x")
    assert caught.value.exit_code == ExitCode.USAGE and "unknown device" in str(caught.value)


# -- the GPU verdicts in the document, from the fake NVML on a fake clock -------------------------------------


def gpu_run(nvml, scenario: str, *, interrupted: bool = False, spec: str | None = None) -> dict:
    """A whole 10-minute burn of ``scenario`` on its fake clock: the sampler reads the fake NVML, and each
    GPU's worker reports a throughput that follows its SM clock (as a matmul's does)."""
    lib = nvml(scenario)
    sampler = Sampler(clock=lib.clock, host=False)
    sampler.open()
    chosen = [
        DeviceInfo(f"cuda:{g.index}", "cuda", "NVIDIA H100 80GB HBM3", index=g.index, uuid=str(g.uuid))
        for g in sampler.gpus
    ]
    request = BurnRequest.parse(device="cuda", duration="10m")
    if spec is not None:
        from envcheck.spec import parse_spec_text

        request = replace(request, lab=parse_spec_text(spec, "lab.toml"), spec_path="lab.toml")
    children = []
    for dev in chosen:
        job = plan.BurnJob(dev, "bf16", 600.0, dev.uuid or "")
        child = BurnChild.of(job, dev.index, lambda c, t, v: None)
        child.done, child.load_s, child.compared = True, 600.0, 61
        children.append(child)
    while lib.clock() <= fakenvml.BURN_RUN_S:
        for sample in sampler.sample():
            if not sample.lost:
                sampler.record(sample.device, sample.sm_clock_mhz * 0.4, sample.t_s)
        lib.clock.advance(5.0)
    sampler.close()
    report = report_for(
        request,
        chosen,
        children,
        sampler.telemetry(),
        began=0.0,
        generated_at=utc_now(),
        duration_s=601.0,
        interrupted=interrupted,
    )
    return burn_document(report)


def test_a_gpu_that_throttles_fails_alone_with_when_and_how_long(nvml):
    doc = gpu_run(nvml, "burn_throttle_after_warmup")
    assert doc["schema"] == "envcheck.burn/1" and doc["exit_code"] == 1 and doc["status"] == "fail"
    statuses = {d["name"]: d["status"] for d in doc["devices"]}
    assert statuses == {f"cuda:{i}": "fail" if i == 2 else "ok" for i in range(8)}
    throttle = verdict(doc, "cuda:2", "burn.throttle")
    assert throttle["summary"].startswith("HW thermal slowdown from 7:00 to the end of the run (3.0 min), at 87 °C")
    assert verdict(doc, "cuda:3", "burn.throttle") == {
        "id": "burn.throttle",
        "status": "ok",
        "summary": "not this device",
    }
    steady = next(d for d in doc["devices"] if d["name"] == "cuda:2")["steady"]
    assert (steady["sm_clock_mhz"], steady["throughput"]) == (1386, pytest.approx(554.4))
    # the timeline: every GPU at every round, its telemetry and its throughput on one clock
    rows = [r for r in doc["timeline"] if r["device"] == "cuda:2"]
    assert len(rows) == 121 and [r["t_s"] for r in rows] == sorted(r["t_s"] for r in rows)
    at_seven = next(r for r in rows if r["t_s"] == 420.0)
    assert (at_seven["sm_clock_mhz"], at_seven["reasons"], at_seven["value"]) == (
        1386,
        ["hw_thermal"],
        pytest.approx(554.4),
    )
    assert len(doc["timeline"]) == 8 * 121
    json.dumps(doc, allow_nan=False)


def test_xid_and_a_lost_gpu_fail_those_gpus_and_the_report_renders(nvml):
    doc = gpu_run(nvml, "burn_xid")
    failed = sorted(d["name"] for d in doc["devices"] if d["status"] == "fail")
    assert failed == ["cuda:1", "cuda:6"]
    assert verdict(doc, "cuda:6", "burn.lost")["summary"] == "lost at 7:30 (GPU is lost)"
    assert verdict(doc, "cuda:1", "burn.xid")["summary"] == "Xid 48 at 5:00 (double-bit ECC error)"
    from io import StringIO

    text, markdown = StringIO(), StringIO()
    render(doc, "text", make_console(text, for_file=True))
    render(doc, "markdown", make_console(markdown, for_file=True))
    assert "FAIL No Xid errors: GPU 1: Xid 48 at 5:00 (double-bit ECC error)" in text.getvalue()
    assert "fix: Drain the node" in text.getvalue()
    assert "burn-in failed: burn.lost, burn.xid (8 devices, 10 min)" in text.getvalue()
    assert "## envcheck burn: failed" in markdown.getvalue() and "`burn.xid`" in markdown.getvalue()


def test_a_healthy_run_passes_and_an_interrupted_one_says_so(nvml):
    assert gpu_run(nvml, "burn_healthy_8gpu")["exit_code"] == 0
    doc = gpu_run(nvml, "burn_healthy_8gpu", interrupted=True)
    assert doc["exit_code"] == 130 and doc["interrupted"] and doc["stopped_by"] == "SIGINT"
    assert doc["summary"]["verdict"] == "interrupted"


def test_the_value_at_a_sample_is_the_nearest_throughput_within_an_interval():
    points = [Point(1.2, 10.0), Point(2.2, 20.0)]
    assert [value_at(points, t, 1.0) for t in (0.0, 1.0, 2.0, 3.0, 3.5)] == [None, 10.0, 20.0, 20.0, None]


def test_the_lab_spec_may_tolerate_a_slowdown_and_holds_each_gpu_to_its_minimum(nvml):
    spec = '[burn]\nmin_duration = "10m"\nallow_throttle = true\nmin_sustained = { min = 700, unit = "TFLOP/s" }'
    doc = gpu_run(nvml, "burn_throttle_after_warmup", spec=spec)
    throttle = next(v for v in doc["verdicts"] if v["id"] == "burn.throttle")
    assert throttle["status"] == "warn" and throttle["summary"].endswith("(tolerated by the lab spec)")
    judged = {(v["requirement"], v["device"]): v["passed"] for v in doc["spec"]["verdicts"]}
    assert judged[("min_duration", None)] is True
    assert [d for (r, d), passed in judged.items() if r == "min_sustained" and not passed] == ["cuda:2"]
    assert doc["exit_code"] == 1  # GPU 2 is 30 % behind its siblings and below the spec's minimum


def test_the_live_line_of_a_gpu_says_throughput_temperature_clocks_power_and_mismatches(nvml):
    from envcheck.burn.render import line

    lib = nvml("burn_healthy_8gpu")
    sampler = Sampler([0], clock=lib.clock, host=False)
    sampler.open()
    lib.clock.advance(130.0)
    [sample] = sampler.sample()
    dev = DeviceInfo("cuda:0", "cuda", "NVIDIA H100 80GB HBM3", index=0)
    child = BurnChild.of(plan.BurnJob(dev, "bf16", 600.0, ""), 0, lambda c, t, v: None)
    assert line(child, None, 0.0) == "cuda:0  starting (the start of the Python interpreter)"
    child.load_started, child.last_value, child.mismatched, child.compared = 0.0, 792.0, 0, 1002
    assert line(child, sample, 130.0) == "cuda:0  2:10/10:00  792 TFLOP/s  68 °C  1980 MHz  690 W  mismatches 0 of 1002"
    sampler.close()


@pytest.mark.parametrize(("others", "status"), [(0.4, "ok"), (0.5, "warn"), (1.9, "warn")])
def test_the_burn_contention_verdict_warns_from_a_quarter_of_the_cores(others, status):
    """Two usable cores: other processes' 0.4 cores is 20 % (calm), 0.5 is the 25 % at which the bench too marks
    a figure contended."""
    from envcheck.burn.app import contention_verdict

    verdict = contention_verdict(Contention(others, 2.0, 0.0, 10.0))
    assert (verdict.id, verdict.status.value) == ("burn.contention", status)
    assert verdict.summary.startswith(f"other processes used {others:.1f} of the 2 CPU cores this burn may use")
    assert (verdict.fix is not None) == (status == "warn")


def test_a_contended_figure_can_meet_a_lab_minimum_but_never_miss_one():
    from envcheck.spec.burn import _sustained

    met, missed, calm = _sustained(1.0, "fp32", {"a": 1.5, "b": 0.5, "c": 0.5}, contended={"a", "b"})
    assert (met.passed, missed.passed, calm.passed) == (True, None, False)
    assert missed.words.endswith("not judged (burn.contention)") and "not judged" not in calm.words


def _on_terminal(doc: dict, columns: int) -> list[str]:
    """The text report as a terminal of ``columns`` columns shows it."""
    from io import StringIO

    from rich.console import Console

    out = StringIO()
    console = Console(file=out, force_terminal=True, width=columns, color_system=None, highlight=False, emoji=False)
    render(doc, "text", console)
    return out.getvalue().split("\n")


def test_eight_gpus_steady_state_fits_80_columns_and_gpus_of_several_models_fold_whole(nvml):
    import re

    doc = gpu_run(nvml, "burn_throttle_after_warmup")
    shown = _on_terminal(doc, 80)
    # a fix's command is the one line left whole (tests/render/test_commands_whole.py): the terminal folds it
    commands = [line for line in shown if line.lstrip().startswith("run: ")]
    shown = [line for line in shown if line not in commands]
    assert all(len(line) <= 80 for line in shown) and "…" not in "\n".join(shown)
    assert "steady state of NVIDIA H100 80GB HBM3 in bf16 (medians over the last minute)" in shown
    rows = {line.split()[1]: line for line in shown if line.startswith("│ cuda:")}
    assert len(rows) == 8 and "554.4" in rows["cuda:2"] and "fail" in rows["cuda:2"]
    # A node of two models is too wide for a table at 80 columns: each GPU is a line of named figures.
    for d in doc["devices"][::2]:
        d["model"] = "NVIDIA GeForce RTX 4090"
    shown = [line for line in _on_terminal(doc, 80) if not line.lstrip().startswith("run: ")]
    text = "\n".join(shown)
    assert all(len(line) <= 80 for line in shown) and "…" not in text
    assert "steady state in bf16 (medians over the last minute)" in shown
    figures = " ".join(line.strip() for line in shown if re.match(r"(cuda:\d |\s{10,}\S)", line))
    for d in doc["devices"]:
        steady = d["steady"]
        assert f"model {d['model']}; TFLOP/s {steady['throughput']:,.1f};" in figures
        assert f"mismatches {d['mismatches']} of {d['checked']}" in figures
    assert re.search(r"^cuda:2 fail: model NVIDIA GeForce RTX 4090; TFLOP/s 554.4;", text, re.M)
    # 120 columns: the table again, one row per GPU, with the models in a column of their own.
    wide = _on_terminal(doc, 120)
    assert sum(line.startswith("│ cuda:") for line in wide) == 8


def test_a_machine_that_slows_down_mid_batch_does_not_carry_the_run_past_its_duration(capsys):
    """A batch is sized from the previous one's pace. Other work taking the CPU makes each product 50 times
    slower 0.6 s into a 1 s run: the batch sized at the fast pace (~0.2 s of products) would take seconds.
    The run still ends within one product of its duration, and its last check still runs."""
    import types

    from envcheck.burn import load, worker
    from envcheck.core.workers import MARK

    work = load.Load("cpu", "fp32", load.Shape(32, 2, 4))
    fast_step, began = work.step, time.monotonic()

    def step() -> None:
        fast_step()
        time.sleep(0.001 if time.monotonic() - began < 0.6 else 0.05)

    work.step = step
    job = types.SimpleNamespace(duration_s=1.0, report_every_s=0.25, check_every_s=60.0)
    worker.burn(work, job)
    said = capsys.readouterr().out.splitlines()
    events = [json.loads(line[len(MARK) :]) for line in said if line.startswith(MARK)]
    done = events[-1]
    assert done["event"] == "done" and 1.0 <= done["load_s"] < 1.0 + 0.3, done
    # Every product that ran is counted, and the last check compared them.
    assert done["steps"] == work.steps == sum(e["steps"] for e in events if e["event"] == "tick")
    assert [e["mismatched"] for e in events if e["event"] == "check"] == [0]
