"""The one supervisor of envcheck's child processes, driven with tiny real children (``python -c``) that
report, crash, hang, are SIGKILLed, or lose their parent: what is tested is what the kernel and
faulthandler do with them, and the words a report would carry."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envcheck.core import workers
from tests.probes.test_torch_probe import read_pids, survivors

#: What every child runs first: the protocol's start (a stack on signals, die with the parent).
PROLOGUE = "import os, signal, sys, time\nfrom envcheck.core import workers\nworkers.start(int(sys.argv[1]))\n"


@dataclass
class Recording(workers.Child):
    """A child that keeps every event it said."""

    said: list[dict[str, Any]] = field(default_factory=list)

    def on_event(self, event: dict[str, Any], now: float) -> None:
        super().on_event(event, now)
        self.said.append(event)


def child(body: str, *, startup_s: float = 30.0) -> Recording:
    import os

    script = PROLOGUE + textwrap.dedent(body)
    return Recording("test", startup_s, [sys.executable, "-c", script, str(os.getpid())])


def supervised(*children: Recording) -> list[Recording]:
    ended: list[Recording] = []
    assert workers.supervise(children, finished=ended.append) is False  # type: ignore[arg-type]
    return ended


def test_a_child_that_reports_is_read_event_by_event_and_has_no_failure() -> None:
    w = child(
        """
        print("a library's own line")
        workers.emit(event="stage", stage="work")
        workers.emit(event="result", value=42)
        workers.emit(event="done")
        workers.exit_now(0)
        """
    )
    assert supervised(w) == [w]
    assert [e["event"] for e in w.said] == ["stage", "result", "done"] and w.said[1]["value"] == 42
    assert w.returncode == 0 and w.failure() is None and not w.killed


def test_a_child_that_crashes_is_named_with_its_signal_its_step_and_its_line() -> None:
    w = child(
        """
        workers.emit(event="stage", stage="the crash")
        os.kill(os.getpid(), signal.SIGSEGV)
        """
    )
    supervised(w)
    assert w.returncode == -11
    assert w.failure() == "worker crashed with SIGSEGV during the crash (at <string>:6 in <module>)"


def test_a_child_that_hangs_is_asked_for_its_stack_then_killed() -> None:
    w = child(
        """
        workers.emit(event="stage", stage="the nap")
        time.sleep(3600)
        """,
        startup_s=1.0,
    )
    supervised(w)
    assert w.killed and w.hung_after == 1.0 and w.returncode == -9
    assert "most recent call first" in w.stderr  # faulthandler answered SIGUSR1 before the kill
    assert w.failure() == "worker hung past its 1 s deadline during the nap; killed (at <string>:6 in <module>)"


def test_a_child_killed_by_sigkill_is_named_as_most_likely_the_oom_killer() -> None:
    w = child(
        """
        workers.emit(event="stage", stage="allocating")
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    supervised(w)
    words = w.failure() or ""
    assert w.returncode == -9 and not w.killed
    assert words.startswith("worker was killed (SIGKILL) during allocating") and "out-of-memory killer" in words


def test_a_child_that_exits_with_a_status_quotes_its_last_stderr_line_past_warnings() -> None:
    w = child(
        """
        sys.stderr.write("RuntimeError: the device is gone\\nUserWarning: something else\\n")
        workers.exit_now(3)
        """
    )
    supervised(w)
    assert w.failure() == "worker exited with status 3 during the start of the Python interpreter: " + (
        "RuntimeError: the device is gone"
    )


def test_the_parents_death_kills_the_child(tmp_path: Path) -> None:
    """SIGKILL runs no handler in the parent: the kernel ends its child (PR_SET_PDEATHSIG)."""
    pidfile = tmp_path / "pids"
    # Written whole, then renamed: the parent kills itself the moment the file is there.
    body = (
        f"with open({str(pidfile)!r} + '.tmp', 'w') as f:\n    f.write(f'{{os.getpid()}}\\n')\n"
        f"os.rename({str(pidfile)!r} + '.tmp', {str(pidfile)!r})\ntime.sleep(3600)\n"
    )
    parent = textwrap.dedent(
        f"""
        import os, sys, threading, time
        from envcheck.core import workers
        script = {(PROLOGUE + body)!r}
        w = workers.Child("orphan", 3600.0, [sys.executable, "-c", script, str(os.getpid())])
        def kill_me():
            while not os.path.exists({str(pidfile)!r}):
                time.sleep(0.01)
            os.kill(os.getpid(), 9)
        threading.Thread(target=kill_me, daemon=True).start()
        workers.supervise([w])
        """
    )
    subprocess.run([sys.executable, "-c", parent], timeout=60)
    assert survivors(read_pids(pidfile)) == [], "the child outlived its parent"


def test_the_innermost_frame_of_the_current_thread_or_of_the_named_one() -> None:
    stderr = (
        "Thread 0x1 (most recent call first):\n"
        '  File "/site/helper.py", line 3 in wait\n'
        '  File "/site/main_script.py", line 9 in main\n'
        "Current thread 0x2 (most recent call first):\n"
        '  File "<frozen importlib._bootstrap>", line 241 in _call\n'
        '  File "/site/torch/__init__.py", line 5 in <module>\n'
    )
    assert workers.innermost_frame(stderr) == "/site/torch/__init__.py:5 in <module>"
    assert workers.innermost_frame(stderr, thread_with="main_script.py") == "/site/helper.py:3 in wait"
    assert workers.innermost_frame("nothing dumped") is None
    assert workers.signal_name(11) == "SIGSEGV" and workers.signal_name(11, described=True).startswith("SIGSEGV (")
