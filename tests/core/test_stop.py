"""envcheck.core.stop in this process: the first signal is raised once while the run is armed, every
further one is only noted, a settled run notes even the first, the exit code says which signal came, an
inherited SIG_IGN stays ignored, and a stopped command leaves the signals ignored on its way out. (The
installed commands are stopped for real in tests/cli/test_stopping.py.)"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

from envcheck.core import stop
from envcheck.core.exit import ExitCode, exit_code_for
from envcheck.core.model import Status

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@pytest.fixture(autouse=True)
def handlers_kept() -> Iterator[None]:
    """Whatever a test does to the handlers and the mask, pytest gets its own back."""
    saved = {s: signal.getsignal(s) for s in SIGNALS}
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def deliver(sig: signal.Signals) -> None:
    """Send ``sig`` to this process and give Python the moment to run its handler."""
    os.kill(os.getpid(), sig)
    for _ in range(100):
        time.sleep(0.01)


def test_the_first_signal_is_raised_once_and_the_others_are_only_noted():
    with stop.orderly(bound_s=60) as s:
        with pytest.raises(stop.Stopped) as caught:
            deliver(signal.SIGTERM)
        assert caught.value.signum == signal.SIGTERM and str(caught.value) == "SIGTERM"
        assert isinstance(caught.value, KeyboardInterrupt)  # every Ctrl-C path ends the run on it
        deliver(signal.SIGINT)  # not raised
        deliver(signal.SIGTERM)
        assert s.signum == signal.SIGTERM and s.count == 3 and s.stopped_by == "SIGTERM"
        assert stop.stopped_by(True) == "SIGTERM" and stop.stopped_by(False) is None
    # a stopped command is on its way out: later signals are ignored, not Python's defaults
    assert all(signal.getsignal(x) is signal.SIG_IGN for x in SIGNALS)


def test_once_settled_even_the_first_signal_is_only_noted_and_the_exit_code_says_it():
    with stop.orderly(bound_s=60) as s:
        stop.settle()
        assert signal.SIGTERM in signal.pthread_sigmask(signal.SIG_BLOCK, [])  # the report write is not cut
        deliver(signal.SIGTERM)
        deliver(signal.SIGHUP)
        assert s.signum == signal.SIGTERM and s.count == 2
        assert [s.exit_code(c) for c in (0, 1, 130, 2, 74)] == [143, 143, 143, 2, 74]
    assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, [])  # the mask is given back


def test_without_a_signal_the_handlers_are_given_back():
    before = {x: signal.getsignal(x) for x in SIGNALS}
    with stop.orderly(bound_s=60) as s:
        assert all(signal.getsignal(x) == s._on_signal for x in SIGNALS if before[x] is not signal.SIG_IGN)
        assert stop.current() is s
    assert {x: signal.getsignal(x) for x in SIGNALS} == before and stop.current() is None
    assert s.exit_code(1) == 1 and s.stopped_by is None


def test_a_signal_inherited_as_ignored_stays_ignored():
    """``nohup`` ignores SIGHUP; a background job of a non-interactive shell ignores SIGINT."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    with stop.orderly(bound_s=60) as s:
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        deliver(signal.SIGHUP)
        assert s.signum is None and s.count == 0


def test_a_run_interrupted_without_an_orderly_stop_was_stopped_by_ctrl_c():
    assert stop.current() is None
    assert stop.stopped_by(True) == "SIGINT" and stop.stopped_by(False) is None
    assert stop.stopped_words("SIGINT") == "Ctrl-C" and stop.stopped_words("SIGTERM") == "SIGTERM"


@pytest.mark.parametrize(
    ("text", "bound"),
    [("3", 3.0), ("0.5", 0.5), ("0", stop.STOP_BOUND_S), ("-4", stop.STOP_BOUND_S), ("nan", stop.STOP_BOUND_S)]
    + [("inf", stop.STOP_BOUND_S), ("soon", stop.STOP_BOUND_S), ("", stop.STOP_BOUND_S)],
)
def test_the_bound_is_a_positive_finite_number_of_seconds_or_the_default(text, bound):
    assert stop.bound_from({stop.BOUND_VARIABLE: text}) == bound


def test_the_exit_code_is_128_and_the_signal_and_the_default_bound_is_under_a_schedulers_grace():
    assert exit_code_for([Status.FAIL], interrupted=True, stopped_by="SIGTERM") == ExitCode.TERMINATED == 143
    assert exit_code_for([Status.OK], interrupted=True, stopped_by="SIGHUP") == ExitCode.HANGUP == 129
    assert exit_code_for([Status.OK], interrupted=True, stopped_by="SIGINT") == ExitCode.INTERRUPTED == 130
    assert stop.exit_code(signal.SIGTERM) == 143
    # above comm's ten seconds for rank 0's report, below the 30 s Slurm and Kubernetes wait before SIGKILL
    assert 10 < stop.STOP_BOUND_S < 30
