"""The one way envcheck starts a subprocess: its own process group, bounded in time, killed whole.

Real processes throughout (``sh`` and ``sleep``, Python children): what is tested is what the kernel
does with them. Pids are checked after the fact, so nothing here measures time.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from envcheck.core import proc
from tests.probes.test_torch_probe import read_pids, survivors

SH = shutil.which("sh") or "/bin/sh"
SLEEP = shutil.which("sleep") or "sleep"


def test_a_command_that_answers() -> None:
    ended = proc.run([SH, "-c", "echo out; echo err >&2; exit 3"], 30)
    assert (ended.returncode, ended.stdout, ended.stderr, ended.timed_out) == (3, "out\n", "err\n", False)


def test_bytes_that_are_not_utf8_do_not_raise() -> None:
    ended = proc.run([SH, "-c", r"printf '\377 release 12.4'"], 30)
    assert ended.stdout == "\ufffd release 12.4"


def test_a_command_that_cannot_start_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        proc.run([str(tmp_path / "missing")], 30)


def test_timeout_kills_the_command_and_what_it_started(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    ended = proc.run([SH, "-c", f'{SLEEP} 3600 & echo "$$ $!" > {pidfile}; wait'], 1)
    assert ended.timed_out and ended.returncode == -signal.SIGKILL
    assert survivors(read_pids(pidfile)) == []


def test_what_a_finished_command_left_running_goes_too(tmp_path: Path) -> None:
    """A command that exits while its child holds the pipes did not time out (its own exit status
    counts); the child is killed with the group."""
    pidfile = tmp_path / "pids"
    ended = proc.run([SH, "-c", f'{SLEEP} 3600 & echo "$!" > {pidfile}; echo done; exit 0'], 1)
    assert (ended.returncode, ended.stdout, ended.timed_out) == (0, "done\n", False)
    assert survivors(read_pids(pidfile)) == []


def test_last_words_come_before_the_kill() -> None:
    """The torch child's stack dump: asked for with a signal, written, then the group is killed."""
    child = textwrap.dedent(
        """
        import signal, sys, time
        signal.signal(signal.SIGUSR1, lambda *_: (sys.stderr.write("stuck here\\n"), sys.stderr.flush()))
        print("ready", flush=True)
        while True:
            time.sleep(0.01)
        """
    )
    started = proc.start([sys.executable, "-c", child])
    ended = proc.wait(started, 2, last_words=signal.SIGUSR1)
    assert ended.timed_out and ended.stdout == "ready\n" and ended.stderr == "stuck here\n"


def test_exit_kills_every_group_still_running(tmp_path: Path) -> None:
    """envcheck gave up waiting (the doctor's deadline) and exits: atexit takes the command with it."""
    pidfile = tmp_path / "pids"
    script = textwrap.dedent(
        f"""
        import os, threading, time
        from envcheck.core import proc
        argv = [{SH!r}, "-c", '{SLEEP} 3600 & echo "$$ $!" > {pidfile}; wait']
        threading.Thread(target=proc.run, args=(argv, 3600), daemon=True).start()
        while not os.path.exists({str(pidfile)!r}):
            time.sleep(0.01)
        """
    )
    subprocess.run([sys.executable, "-c", script], timeout=60, check=True)
    assert survivors(read_pids(pidfile)) == []


def test_sigterm_kills_every_group_then_envcheck_dies_of_it(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    script = textwrap.dedent(
        f"""
        import os, time
        from envcheck.core import proc
        proc.start([{SH!r}, "-c", '{SLEEP} 3600 & echo "$$ $!" > {pidfile}; wait'])
        time.sleep(3600)
        """
    )
    envcheck = subprocess.Popen([sys.executable, "-c", script])
    try:
        pids = read_pids(pidfile)
        envcheck.send_signal(signal.SIGTERM)
        assert envcheck.wait(timeout=30) == -signal.SIGTERM
    finally:
        envcheck.kill()
        envcheck.wait()
    assert survivors(pids) == []


def test_sigterm_taken_by_another_thread_still_kills_every_group(tmp_path: Path) -> None:
    """The kernel may hand a process's SIGTERM to any thread, and Python's handler then waits for the main
    thread, which the doctor keeps blocked waiting for probes. Here the main thread cannot take it at all
    (it blocks the signal): the children must die anyway."""
    pidfile = tmp_path / "pids"
    script = textwrap.dedent(
        f"""
        import signal, threading, time
        from envcheck.core import proc
        threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()  # takes the signal
        proc.start([{SH!r}, "-c", '{SLEEP} 3600 & echo "$$ $!" > {pidfile}; wait'])
        signal.pthread_sigmask(signal.SIG_BLOCK, {{signal.SIGTERM}})
        threading.Event().wait(3600)
        """
    )
    envcheck = subprocess.Popen([sys.executable, "-c", script])
    try:
        pids = read_pids(pidfile)
        envcheck.send_signal(signal.SIGTERM)
        assert survivors(pids) == []
    finally:
        envcheck.kill()
        envcheck.wait()


def test_a_handler_someone_else_installed_is_left_alone() -> None:
    """Imported into another program that handles SIGTERM itself, envcheck does not take it over."""
    script = textwrap.dedent(
        """
        import signal
        mine = lambda *_: None
        signal.signal(signal.SIGTERM, mine)
        from envcheck.core import proc
        assert signal.getsignal(signal.SIGTERM) is mine
        assert signal.getsignal(signal.SIGHUP) is proc._on_terminate
        """
    )
    subprocess.run([sys.executable, "-c", script], timeout=60, check=True)


def test_a_child_dies_with_envcheck_killed_outright(tmp_path):
    """SIGKILL runs no handler: the kernel kills every child envcheck started (a hung nvcc, scontrol, a
    worker) as envcheck dies, not when the child's own command ends."""
    import signal
    import subprocess
    import sys
    import time

    import psutil

    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from envcheck.core import proc; import time; c = proc.start(['sleep', '60']); "
            "print(c.pid, flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        child = psutil.Process(int(parent.stdout.readline()))
        assert child.is_running()
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        gone, alive = psutil.wait_procs([child], timeout=10)
        assert not alive
    finally:
        if parent.poll() is None:
            parent.kill()
        time.sleep(0)
