"""Stopping a run (README, "Stopping a run"; envcheck.core.stop), through the installed command, for every
long command: the first SIGINT, SIGTERM or SIGHUP starts an orderly stop that writes the report of what
ran, with the exit code 128 + that signal; further signals during the stop, however soon, do not lose it;
a stop that hangs ends at the hard bound; no worker or rank outlives the command.

Each child gets SIGINT back to its default: a shell without job control (``nohup``, a background job)
starts commands with SIGINT ignored, and the command would then keep ignoring it, as it should."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.comm.test_comm import rank_1_stuck, restore_sigint

ENVCHECK = shutil.which("envcheck") or str(Path(sys.executable).with_name("envcheck"))
INT, TERM, HUP = signal.SIGINT, signal.SIGTERM, signal.SIGHUP
#: What no stop may print: a traceback, a bug's line, click's word for a KeyboardInterrupt it caught.
NEVER = ("Traceback", "internal error", "aborted")


def start(args: list[str], cwd: Path, stdout: int = subprocess.PIPE, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [ENVCHECK, *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env={**os.environ, **env},
        preexec_fn=restore_sigint,
    )


def wait_for(process: subprocess.Popen[str], starts: tuple[str, ...], within_s: float = 120) -> list[str]:
    """Read stderr until a line starting with one of ``starts`` (the progress lines of a pipe)."""
    assert process.stderr is not None
    os.set_blocking(process.stderr.fileno(), True)
    seen: list[str] = []
    deadline = time.monotonic() + within_s
    for line in process.stderr:
        seen.append(line)
        if line.strip().startswith(starts):
            return seen
        if time.monotonic() > deadline:
            break
    raise AssertionError(f"never saw {starts}: {''.join(seen)[-2000:]}")


def send(process: subprocess.Popen[str], sequence: list[tuple[float, signal.Signals]]) -> None:
    """Each signal after its pause (seconds after the previous one)."""
    for pause, sig in sequence:
        time.sleep(pause)
        process.send_signal(sig)


@contextlib.contextmanager
def ended(process: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def workers_of(process: subprocess.Popen[str]) -> list[psutil.Process]:
    return psutil.Process(process.pid).children(recursive=True)


def assert_stopped(doc: dict, code: int, by: str, stderr: str, process: subprocess.Popen[str]) -> None:
    assert process.returncode == code, stderr[-2000:]
    assert doc["interrupted"] is True and doc["stopped_by"] == by and doc["exit_code"] == code, (
        doc["interrupted"],
        doc.get("stopped_by"),
        doc["exit_code"],
    )
    assert doc["summary"]["verdict"] == "interrupted"
    assert not any(word in stderr for word in NEVER), stderr[-2000:]


# -- bench ---------------------------------------------------------------------------------------------------

#: A finished case's progress line (stderr is a pipe: one plain line per case, starting with its device).
FINISHED = ("cpu ok:", "cpu fail:", "cpu crash:", "cpu skip:")


@pytest.mark.parametrize(
    ("sequence", "code", "by"),
    [
        ([(0, INT), (0.05, INT)], 130, "SIGINT"),  # a second Ctrl-C 50 ms after the first
        ([(0, TERM)], 143, "SIGTERM"),  # a scheduler's stop
        ([(0, HUP), (0.01, TERM), (0.01, INT)], 129, "SIGHUP"),  # the terminal closes, then everyone else
    ],
    ids=["ctrl-c-twice", "sigterm", "sighup-then-more"],
)
def test_bench_writes_what_ran_whatever_signals_follow_the_first(tmp_path, sequence, code, by):
    out = tmp_path / "bench.json"
    args = ["bench", "--device", "cpu", "--only", "conv", "--json", "--output", str(out)]
    with ended(start(args, tmp_path)) as process:
        wait_for(process, FINISHED)
        workers = workers_of(process)
        send(process, sequence)
        stdout, stderr = process.communicate(timeout=60)
    doc = json.loads(out.read_text())
    assert_stopped(doc, code, by, stderr, process)
    assert doc["results"][0]["id"] == "conv.fwd" and doc["results"][0]["verified"] is True
    finished, planned = doc["summary"]["finished"], doc["summary"]["planned"]
    assert 1 <= finished < planned == 4
    words = "Ctrl-C" if by == "SIGINT" else by
    assert doc["summary"]["text"].startswith(f"interrupted by {words} after {finished} of 4 cases")
    assert json.loads(stdout) == doc  # --json: stdout holds the same whole report
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive


# -- burn ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sequence", "code", "by"),
    [
        ([(0, TERM), (0.15, TERM)], 143, "SIGTERM"),  # SIGTERM twice within 0.15 s
        # Ctrl-C, then everything at once. (Signals sent in the same instant have no first: the kernel and
        # Python each hand pending signals over lowest number first, SIGHUP before SIGINT.)
        ([(0, INT), (0.3, TERM), (0.0, HUP), (0.0, INT)], 130, "SIGINT"),
    ],
    ids=["sigterm-twice", "ctrl-c-then-all-at-once"],
)
def test_burn_writes_what_ran_whatever_signals_follow_the_first(tmp_path, sequence, code, by):
    with ended(start(["burn", "--device", "cpu", "--duration", "10m", "--json"], tmp_path)) as process:
        wait_for(process, ("cpu ",))  # the load began
        time.sleep(1)
        workers = workers_of(process)
        send(process, sequence)
        stdout, stderr = process.communicate(timeout=60)
    doc = json.loads(stdout)
    assert_stopped(doc, code, by, stderr, process)
    assert doc["devices"][0]["error"] is None and doc["timeline"]
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive


# -- comm ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sequence", "code", "by", "words"),
    [
        ([(0, INT), (0.05, INT)], 130, "SIGINT", "Ctrl-C"),
        ([(0, TERM), (0.05, TERM), (0.5, INT)], 143, "SIGTERM", "SIGTERM"),
    ],
    ids=["ctrl-c-twice", "sigterm-twice-then-ctrl-c"],
)
def test_comm_writes_the_steps_every_rank_finished_whatever_signals_follow(tmp_path, sequence, code, by, words):
    """Rank 1 is stuck in reduce_scatter: rank 0 is asked to stop, and its report of the all_reduce sweep
    is still the report, however many signals follow."""
    with rank_1_stuck(tmp_path, 2, subprocess.PIPE) as (process, ranks):
        send(process, sequence)
        stdout, stderr = process.communicate(timeout=60)
    doc = json.loads(stdout)
    assert_stopped(doc, code, by, stderr, process)
    assert {r["op"] for r in doc["results"]} == {"all_reduce"} and all(r["verified"] for r in doc["results"])
    assert [p["what"] for p in doc["problems"]] == [
        f"interrupted ({words}) during reduce_scatter 4.0 KiB: the report holds what finished before"
    ]
    _, alive = psutil.wait_procs(ranks, timeout=10)
    assert not alive


# -- a signal while the report is being written --------------------------------------------------------------


def small_pipe() -> tuple[int, int]:
    """A pipe that holds one page: a report bigger than that blocks its writer until someone reads."""
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, getattr(fcntl, "F_SETPIPE_SZ", 1031), 4096)
    return read_end, write_end


def read_all(fd: int) -> bytes:
    with os.fdopen(fd, "rb") as pipe:
        return pipe.read()


def blocked_writing(pid: int, within_s: float = 120) -> bool:
    """Whether the process comes to sleep in a pipe write (Linux's wait channel)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            if "pipe_write" in Path(f"/proc/{pid}/wchan").read_text():  # pipe_write, anon_pipe_write
                return True
        except OSError:
            return False
        time.sleep(0.1)
    return False


@pytest.mark.skipif(not Path("/proc/self/wchan").exists(), reason="needs Linux's /proc/PID/wchan")
def test_signals_while_the_report_is_written_into_a_slow_pipe_lose_nothing(tmp_path):
    """The run is over and the report is going into a pipe whose reader is slow: a SIGTERM there (and a
    Ctrl-C after it) used to cut the write short and lose the rest of the report, or kill envcheck. Now
    the reader gets the whole report, and the exit code says SIGTERM came."""
    read_end, write_end = small_pipe()
    args = ["bench", "--device", "cpu", "--only", "matmul.fp32", "--quick", "--json"]
    with ended(start(args, tmp_path, stdout=write_end)) as process:
        os.close(write_end)
        assert blocked_writing(process.pid), "the bench never came to write its report"
        send(process, [(0, TERM), (0.2, INT)])
        time.sleep(0.5)  # the signals have landed before the reader starts
        report = read_all(read_end)
        process.wait(30)
        stderr = process.stderr.read() if process.stderr else ""
    doc = json.loads(report)  # whole: it parses
    assert doc["schema"] == "envcheck.bench/1" and doc["interrupted"] is False  # the run itself finished
    assert doc["results"][0]["verified"] is True
    assert process.returncode == 143, stderr[-2000:]
    assert not any(word in stderr for word in NEVER), stderr[-2000:]


@pytest.mark.skipif(not Path("/proc/self/wchan").exists(), reason="needs Linux's /proc/PID/wchan")
def test_a_stop_that_hangs_ends_at_the_hard_bound(tmp_path):
    """The report goes into a pipe nobody reads: the orderly stop can never finish. The command ends at
    the hard bound after the first signal (3 s here), with one line, the signal's exit code and no worker
    left, rather than waiting forever for a reader."""
    read_end, write_end = small_pipe()
    args = ["burn", "--device", "cpu", "--duration", "10m", "--json"]
    with ended(start(args, tmp_path, stdout=write_end, ENVCHECK_STOP_BOUND_S="3")) as process:
        os.close(write_end)
        wait_for(process, ("cpu ",))
        workers = workers_of(process)
        send(process, [(1, TERM), (0.5, TERM)])
        process.wait(60)
        stderr = process.stderr.read() if process.stderr else ""
    os.close(read_end)
    assert process.returncode == 143, stderr[-2000:]
    assert "envcheck: already stopping (SIGTERM)" in stderr
    assert "envcheck: the stop after SIGTERM did not finish within 3 s: ended now" in stderr
    assert not any(word in stderr for word in NEVER), stderr[-2000:]
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive


def test_a_signal_before_the_run_began_is_a_report_of_no_cases_and_its_exit_code(tmp_path):
    """SIGTERM (twice) while the bench still waits for torch to say what the devices are (a torch whose import
    hangs): nothing ran, and the report says so, interrupted by SIGTERM, with exit code 143."""
    out = tmp_path / "bench.json"
    args = ["bench", "--device", "cpu", "--only", "conv", "--json", "--output", str(out)]
    hangs = Path(__file__).parents[1] / "fake_torch" / "hangs"
    with ended(start(args, tmp_path, PYTHONPATH=str(hangs), ENVCHECK_TORCH_TIMEOUT="60")) as process:
        time.sleep(4)
        send(process, [(0, TERM), (0.05, TERM)])
        stdout, stderr = process.communicate(timeout=60)
    doc = json.loads(out.read_text())
    assert_stopped(doc, 143, "SIGTERM", stderr, process)
    assert doc["results"] == [] and doc["summary"]["text"].startswith("interrupted by SIGTERM after 0 of 0 cases")
