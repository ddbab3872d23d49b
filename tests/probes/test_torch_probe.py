"""The torch probe: a child process that imports torch, against real builds and deliberately broken ones;
and the toolkit probe (nvcc, the host compilers).

Broken torches are small packages under ``tests/fake_torch/<scenario>/torch`` put first on the child's
path through ``PYTHONPATH`` (the lowest boundary: the real child script, the real subprocess handling).
What the README promises of the doctor is tested through the installed ``envcheck`` command.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import venv
from pathlib import Path
from typing import Any

import pytest

from envcheck.core.workers import ScriptEnd
from envcheck.probes import torch_child
from envcheck.probes.torch import (
    CHILD_SCRIPT,
    DEFAULT_CHILD_TIMEOUT_S,
    PROBE_TIMEOUT_S,
    TIMEOUT_ENV,
    _parse,
    child_timeout,
    probe_torch,
    time_limit,
)
from tests.cuda_torch import CUDA_TORCH_PYTHON, needs_cuda_torch

FAKE_TORCH = Path(__file__).resolve().parents[1] / "fake_torch"
NVML_SITE = Path(__file__).resolve().parents[1] / "nvml_site"
ENVCHECK = shutil.which("envcheck") or str(Path(sys.executable).with_name("envcheck"))

needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed here")


def fake_env(scenario: str, **extra: str) -> dict[str, str]:
    """This process's environment with the fake torch ``scenario`` first on the child's path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(FAKE_TORCH / scenario), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (dead, not yet reaped by its parent) counts as gone.
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def survivors(pids: list[int], grace_s: float = 3.0) -> list[int]:
    """The pids still alive once the kernel has had ``grace_s`` to deliver the kills (SIGKILL is
    asynchronous: a process can take a moment to exit)."""
    end = time.monotonic() + grace_s
    while any(alive(p) for p in pids) and time.monotonic() < end:
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


def read_pids(path: Path, wait_s: float = 60.0) -> list[int]:
    """The pids a fake wrote to ``path``, waiting for the file to be complete."""
    end = time.monotonic() + wait_s
    while time.monotonic() < end:
        if path.exists() and path.read_text().endswith("\n"):
            return [int(p) for p in path.read_text().split()]
        time.sleep(0.05)
    raise AssertionError(f"nothing wrote {path}")


def doctor(*args: str, fake: str | None = None, path_first: Path | None = None, **extra: str) -> tuple[Any, dict]:
    """``envcheck doctor --json ARGS`` as a user runs it, with the fake torch ``fake`` first on the path,
    ``path_first`` first on PATH and no NVML library: (the finished process, its JSON report)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENVCHECK_", "CUDA_HOME", "CUDA_PATH"))}
    env["PYTHONPATH"] = os.pathsep.join([*([str(FAKE_TORCH / fake)] if fake else []), str(NVML_SITE)])
    env["ENVCHECK_FAKE_NVML"] = "no_library"
    if path_first is not None:
        env["PATH"] = os.pathsep.join([str(path_first), env.get("PATH", os.defpath)])
    env.update(extra)
    done = subprocess.run(
        [ENVCHECK, "doctor", "--json", *args], capture_output=True, text=True, env=env, timeout=120, cwd="/"
    )
    assert done.stdout, done.stderr
    return done, json.loads(done.stdout)


def verdict(report: dict, check_id: str) -> dict:
    return next(c for c in report["checks"] if c["id"] == check_id)


# -- broken torches ----------------------------------------------------------------------------------


def test_import_error_quotes_the_real_exception() -> None:
    info = probe_torch(fake_env("raises"))
    assert info.status == "import_error"
    assert info.error == "OSError: libcudnn.so.9: cannot open shared object file: No such file or directory"
    assert info.stage == "import"
    assert info.version is None


def test_hanging_import_is_killed_and_says_where_it_hung() -> None:
    info = probe_torch(fake_env("hangs"), timeout_s=2)
    assert info.status == "timeout"
    assert info.error == "import torch did not finish within 2 s"
    # The stack the child dumped when asked, just before the kill, pins the hang to the fake torch's sleep.
    assert info.where is not None and info.where.endswith("hangs/torch/__init__.py:5 in <module>")


def test_crash_names_the_signal_and_the_step() -> None:
    info = probe_torch(fake_env("crashes"))
    assert info.status == "crashed"
    assert info.error is not None and "SIGSEGV" in info.error and "during import torch" in info.error
    assert info.exit_code == -11
    assert "Segmentation fault" in info.stderr_tail  # faulthandler's report reaches the verdict's details
    assert info.where is not None and info.where.endswith(" in string_at")  # the fake's ctypes.string_at(0)


def test_hang_in_cuda_initialisation_is_told_apart_from_a_hanging_import() -> None:
    info = probe_torch(fake_env("cuda_init_hangs"), timeout_s=2)
    assert info.status == "timeout"
    assert info.error == "CUDA initialisation (torch.cuda.is_available()) did not finish within 2 s"
    assert info.stage == "cuda_init"
    # The stack is taken at the kill, so it shows the step that hung, not where the child was earlier.
    assert info.where is not None and info.where.endswith("cuda_init_hangs/torch/__init__.py:11 in _hang")
    # What the child learnt before it hung is kept.
    assert info.version == "2.5.1+cu124" and info.cuda == "12.4"


def test_child_that_exits_silently_is_bad_output() -> None:
    info = probe_torch(fake_env("exits"))
    assert info.status == "bad_output"
    assert "last step: import torch" in (info.error or "")


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    info = probe_torch(fake_env("hangs_with_helper", ENVCHECK_TEST_PIDFILE=str(pidfile)), timeout_s=2)
    assert info.status == "timeout"
    assert survivors(read_pids(pidfile)) == [], "a process of the hung child survived"


def test_children_still_running_when_envcheck_exits_are_killed(tmp_path: Path) -> None:
    """The doctor's deadline can come before the child's timeout; exiting must not leave it behind."""
    pidfile = tmp_path / "pids"
    script = textwrap.dedent(
        f"""
        import os, threading, time
        from envcheck.probes.torch import probe_torch
        env = {fake_env("hangs_with_helper", ENVCHECK_TEST_PIDFILE=str(pidfile))!r}
        threading.Thread(target=probe_torch, args=(env,), kwargs={{"timeout_s": 30}}, daemon=True).start()
        while not os.path.exists({str(pidfile)!r}):
            time.sleep(0.05)
        """
    )
    subprocess.run([sys.executable, "-c", script], timeout=60, check=True)
    assert survivors(read_pids(pidfile)) == [], "the torch child outlived envcheck"


def test_child_of_a_killed_envcheck_ends_itself(tmp_path: Path) -> None:
    """Killed outright (SIGKILL, the OOM killer), envcheck runs no handler at all: the child, in its own
    session, must still not hang on (holding a GPU) long past its own time limit."""
    pidfile = tmp_path / "pids"
    script = textwrap.dedent(
        f"""
        import os, threading, time
        from envcheck.probes.torch import probe_torch
        env = {fake_env("hangs_with_helper", ENVCHECK_TEST_PIDFILE=str(pidfile))!r}
        threading.Thread(target=probe_torch, args=(env,), kwargs={{"timeout_s": 1}}, daemon=True).start()
        while not os.path.exists({str(pidfile)!r}):  # the child is past its last message, hanging
            time.sleep(0.01)
        os.kill(os.getpid(), 9)
        """
    )
    subprocess.run([sys.executable, "-c", script], timeout=60)
    child, helper = read_pids(pidfile)
    try:
        assert survivors([child], grace_s=1 + torch_child.ORPHAN_GRACE_S + 10) == [], "the child outlived envcheck"
    finally:
        for pid in (child, helper):  # the fake's helper left the child's reach: not what is tested here
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass


def test_not_installed(tmp_path: Path) -> None:
    """An interpreter without torch (a fresh virtualenv) reports ``not_installed``, not an error."""
    venv.create(tmp_path / "venv", with_pip=False)
    python = tmp_path / "venv" / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONNOUSERSITE": "1"}
    info = probe_torch(env, python=str(python))
    assert info.status == "not_installed"
    assert info.error == "ModuleNotFoundError: No module named 'torch'"


def test_interpreter_that_cannot_start() -> None:
    info = probe_torch({}, python="/nonexistent/python3")
    assert info.status == "spawn_error"
    assert "/nonexistent/python3" in (info.error or "")


# -- the watchdog never breaks what it watches (through the installed command) ----------------------------


def test_slow_import_that_finishes_is_ok_and_never_interrupted() -> None:
    """An import that takes most of a short --deadline (torch on a busy 2-core machine) is judged as what
    it is: fine. Nothing fires inside it on a timer: no stack dump, no signal, no crash. (A watchdog that
    dumped the stack 2 s before the deadline, or killed 1 s before it, would both have hit this import.)"""
    done, report = doctor("torch", "--deadline", "6", fake="slow_import", ENVCHECK_TEST_IMPORT_S="4.2")
    result = verdict(report, "torch.import")
    assert (result["status"], done.returncode) == ("ok", 0), result
    assert result["summary"].startswith("torch 2.5.1+cpu (CPU-only build) imports in ")
    torch = report["torch"]
    assert torch["status"] == "ok" and torch["where"] is None and torch["exit_code"] == 0
    assert "most recent call first" not in torch["stderr_tail"], torch["stderr_tail"]


def test_deadline_before_a_slow_import_is_not_called_a_hang(tmp_path: Path) -> None:
    """When the doctor's deadline comes first, the child was still working: that is not a hang. The verdict
    says so, names the step and the line it was in, and the child is gone when the doctor returns."""
    pidfile = tmp_path / "pid"
    done, report = doctor(
        # 8 s: the child is in the import by then on a loaded host too (it starts Python first)
        "torch",
        "--deadline",
        "8",
        fake="slow_import",
        ENVCHECK_TEST_IMPORT_S="120",
        ENVCHECK_TEST_PIDFILE=str(pidfile),
    )
    result = verdict(report, "torch.import")
    assert result["status"] == "warn" and done.returncode == 0, result
    assert result["summary"].startswith(
        "torch not judged: import torch was still running when the doctor's deadline came"
    )
    assert "hung" not in result["summary"] and "crash" not in result["summary"]
    # Where in the busy loop (its while line or its body) depends on the moment.
    assert re.search(r"slow_import/torch/__init__\.py:\d+ in _import_the_world\)$", result["summary"])
    assert result["fix"]["command"] == "envcheck doctor --deadline 60"
    assert report["torch"]["status"] == "unfinished" and report["torch"]["stage"] == "import"
    # The other torch checks skip rather than pile on.
    assert verdict(report, "torch.cuda_build")["status"] == "skip"
    assert survivors(read_pids(pidfile)) == []


def test_hang_past_the_childs_own_timeout_is_a_hang_naming_the_step(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    done, report = doctor(
        "torch",
        "--deadline",
        "20",
        fake="hangs_with_helper",
        ENVCHECK_TORCH_TIMEOUT="2",
        ENVCHECK_TEST_PIDFILE=str(pidfile),
    )
    result = verdict(report, "torch.import")
    assert result["status"] == "fail" and done.returncode == 1
    assert result["summary"].startswith("torch hung: import torch did not finish within 2 s (at ")
    assert result["summary"].endswith("hangs_with_helper/torch/__init__.py:14 in <module>)")
    assert result["fix"]["command"] == 'python -X importtime -c "import torch"'
    # The child and the helper it started were killed as one group.
    assert survivors(read_pids(pidfile)) == []


def test_the_torch_child_dies_with_a_doctor_killed_outright(tmp_path: Path) -> None:
    """SIGKILL runs no handler in the doctor: the kernel ends its torch child at once, not at the child's own
    time limit (here a minute away)."""
    pidfile = tmp_path / "pids"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENVCHECK_", "CUDA_HOME", "CUDA_PATH"))}
    env.update(
        PYTHONPATH=os.pathsep.join([str(FAKE_TORCH / "hangs_with_helper"), str(NVML_SITE)]),
        ENVCHECK_FAKE_NVML="no_library",
        ENVCHECK_TORCH_TIMEOUT="60",
        ENVCHECK_TEST_PIDFILE=str(pidfile),
    )
    doctor = subprocess.Popen(
        [ENVCHECK, "doctor", "--json", "torch", "--deadline", "90"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd="/",
    )
    try:
        child, helper = read_pids(pidfile)
        doctor.kill()
        doctor.wait(timeout=10)
        assert survivors([child], grace_s=10.0) == []
    finally:
        if doctor.poll() is None:
            doctor.kill()
        for pid in read_pids(pidfile, wait_s=0.1) if pidfile.exists() else []:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_hang_in_cuda_initialisation_through_the_doctor() -> None:
    done, report = doctor("torch", "--deadline", "20", fake="cuda_init_hangs", ENVCHECK_TORCH_TIMEOUT="2")
    result = verdict(report, "torch.import")
    assert result["status"] == "fail" and done.returncode == 1
    assert result["summary"].startswith(
        "torch hung: CUDA initialisation (torch.cuda.is_available()) did not finish within 2 s (at "
    )
    assert "nvidia-smi" in result["fix"]["text"] and "dmesg" in result["fix"]["command"]


# -- the protocol and the time limits -----------------------------------------------------------------


def test_marked_lines_are_read_among_junk_and_a_cut_off_line() -> None:
    mark = torch_child.MARK
    stdout = "\n".join(
        [
            "some library says hello",
            f'{mark}{{"stage": "import"}}',
            f'junk without newline{mark}{{"not": "at line start"}}',
            f'{mark}{{"version": "2.13.0+cpu", "cuda": null}}',
            f'{mark}{{"stage": "done", "status": "ok", "done": true}}',
            f'{mark}{{"cut off',
        ]
    )
    info = _parse(stdout, "", 0, hung=False, limit=10)
    assert info.status == "ok" and info.version == "2.13.0+cpu" and info.cuda is None


def test_a_child_that_ended_itself_at_its_limit_was_hung_not_crashed() -> None:
    """SIGALRM is only the child's own orphan alarm: dying of it means it ran past its limit."""
    info = _parse(f'{torch_child.MARK}{{"stage": "cuda_init"}}\n', "", -signal.SIGALRM, hung=False, limit=3)
    assert info.status == "timeout"
    assert info.error == "CUDA initialisation (torch.cuda.is_available()) did not finish within 3 s"


def test_a_child_that_reported_everything_is_judged_on_its_report() -> None:
    """Whatever happens after the last line (a teardown that hangs or crashes), the report was complete."""
    stdout = f'{torch_child.MARK}{{"version": "2.13.0+cpu"}}\n{torch_child.MARK}{{"status": "ok", "done": true}}\n'
    assert _parse(stdout, "", -signal.SIGKILL, hung=True, limit=3).status == "ok"
    assert _parse(stdout, "", -signal.SIGSEGV, hung=False, limit=3).status == "ok"


def _innermost_frame(stderr: str, *, hung: bool) -> str | None:
    """Where the torch child's end is placed (envcheck.core.workers.ScriptEnd.frame, as the probe reads it)."""
    return ScriptEnd.read("", stderr, None, hung, CHILD_SCRIPT.name).frame()


def test_the_hang_is_placed_in_the_main_threads_stack() -> None:
    """faulthandler dumps every thread, the one that took the signal first; the hang is the main thread's."""
    stderr = textwrap.dedent(
        f"""\
        Current thread 0x00007f0000000002 (most recent call first):
          File "/site/torch/_inductor/compile_worker.py", line 12 in _watch
          File "/usr/lib/python3.11/threading.py", line 975 in run

        Thread 0x00007f0000000001 (most recent call first):
          File "/site/torch/cuda/__init__.py", line 319 in _lazy_init
          File "<frozen importlib._bootstrap>", line 241 in _call_with_frames_removed
          File "{CHILD_SCRIPT}", line 200 in main
          File "{CHILD_SCRIPT}", line 240 in <module>
        """
    )
    assert _innermost_frame(stderr, hung=True) == "/site/torch/cuda/__init__.py:319 in _lazy_init"
    assert _innermost_frame(stderr, hung=False) == "/site/torch/_inductor/compile_worker.py:12 in _watch"
    assert _innermost_frame("no dump here", hung=True) is None


def test_child_timeout_defaults_env_and_never_outlasts_the_probe() -> None:
    assert child_timeout({}) == DEFAULT_CHILD_TIMEOUT_S
    assert child_timeout({TIMEOUT_ENV: "2.5"}) == 2.5
    assert child_timeout({TIMEOUT_ENV: "not a number"}) == DEFAULT_CHILD_TIMEOUT_S
    assert child_timeout({TIMEOUT_ENV: "nan"}) == DEFAULT_CHILD_TIMEOUT_S
    assert child_timeout({TIMEOUT_ENV: "1000"}) == PROBE_TIMEOUT_S - 0.5
    assert child_timeout({TIMEOUT_ENV: "1000"}, timeout_s=4) == 4


def test_time_limit_tells_the_deadline_from_the_childs_own_timeout() -> None:
    """Half a second before the doctor's deadline (for the stack dump, the kill and the parsing), or the
    child's own timeout if that comes first; only the latter is a hang."""
    assert time_limit(40.0, None) == (40.0, False)
    assert time_limit(40.0, 1000.0) == (40.0, False)
    assert time_limit(40.0, 3.0) == (2.5, True)
    # An early child started 0.3 s before the doctor's clock: it gets those 0.3 s too.
    assert time_limit(40.0, 3.0, elapsed_s=0.3) == (2.8, True)
    assert time_limit(2.0, 3.0) == (2.0, False)
    assert time_limit(40.0, 0.2) == (0.5, True)  # the floor: the child always gets a moment


# -- real builds -------------------------------------------------------------------------------------


@needs_torch
def test_real_cpu_build() -> None:
    """The torch installed in this environment (the CPU build 2.13.0 in development)."""
    info = probe_torch(dict(os.environ, CUDA_VISIBLE_DEVICES="1"))
    assert info.status == "ok", info.error
    assert info.version and info.import_s is not None
    assert info.cuda_visible_devices == "1"  # the environment reaches the child
    assert info.path and info.path.endswith("torch")
    assert info.debug is False  # release wheels are not debug builds
    if info.cuda is None and info.hip is None:  # a CPU build
        assert info.cuda_available is False and info.device_count == 0
        assert info.arch_list == [] and info.cuda_init_error is None
        assert info.cuda_runtime_version is None and info.cuda_runtime_library is None
    assert "nvidia-ml-py" not in info.cuda_wheels  # NVML's bindings are no CUDA library


@needs_cuda_torch
def test_real_cuda_build_reports_its_build_without_a_gpu() -> None:
    """The CUDA 13.0 build (2.14.1+cu130): version, arch flags, cuDNN and NCCL come from the build
    itself even where no GPU can start; CUDA's own reason for being unavailable is kept."""
    info = probe_torch(dict(os.environ), python=CUDA_TORCH_PYTHON)
    assert info.status == "ok", info.error
    assert info.cuda is not None and info.hip is None
    assert info.arch_list and all(a.startswith(("sm_", "compute_")) for a in info.arch_list)
    assert info.cudnn_version is not None and info.cudnn_version >= 90000
    assert info.nccl_version is not None and len(info.nccl_version) == 3
    if info.version == "2.14.1+cu130":  # the build scripts/test.sh installs, exactly
        assert info.cuda == "13.0" and info.cudnn_version == 92400 and info.nccl_version == (2, 30, 7)
        assert info.arch_list == ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]
    if not info.cuda_available:
        assert info.cuda_init_error  # e.g. "RuntimeError: Found no NVIDIA driver on your system ..."
    # The runtime torch loaded answers for itself, without CUDA starting.
    assert info.cuda_runtime_version is not None and info.cuda_runtime_library
    assert Path(info.cuda_runtime_library).name.startswith("libcudart.so")
    if info.version == "2.14.1+cu130":
        assert info.cuda_runtime_version == "13.0" and info.debug is False
        assert info.cuda_wheels["nvidia-cudnn-cu13"] == "9.24.0.43"
        assert info.cuda_wheels["nvidia-nccl-cu13"] == "2.30.7"
        assert info.cuda_wheels["nvidia-cuda-runtime"] == "13.0.96"
        assert info.triton_version == "3.8.0"


@needs_cuda_torch
def test_what_collect_env_reports_envcheck_reports_too() -> None:
    """PyTorch's bug template asks for ``python -m torch.utils.collect_env``: its debug flag, CUDA version,
    CUDA wheels and triton are in the torch probe's data, with the same values."""
    assert CUDA_TORCH_PYTHON is not None
    collect = subprocess.run(
        [CUDA_TORCH_PYTHON, "-W", "ignore", "-m", "torch.utils.collect_env"],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1"),
    ).stdout
    said = dict(line.split(": ", 1) for line in collect.splitlines() if ": " in line)
    info = probe_torch(dict(os.environ), python=CUDA_TORCH_PYTHON)
    assert said["Is debug build"] == str(info.debug)
    assert said["CUDA used to build PyTorch"] == info.cuda
    # collect_env lists pip's view of the CUDA wheels and triton as "[pip3] name==version".
    listed = dict(line.split("] ", 1)[1].split("==", 1) for line in collect.splitlines() if line.startswith("[pip3]"))
    listed = {name.lower().replace("_", "-"): version for name, version in listed.items()}
    for name, version in info.cuda_wheels.items():
        if name in listed:  # collect_env's name patterns miss some (cuda-bindings, nvidia-cufile)
            assert listed[name] == version, name
    assert {n for n in listed if n.startswith("nvidia-")} <= set(info.cuda_wheels)
    assert listed.get("triton") == info.triton_version


def test_cuda_wheels_and_triton_are_read_from_the_directory_next_to_torch(tmp_path: Path) -> None:
    for entry in [
        "torch-2.6.0+cu124.dist-info",
        "nvidia_cudnn_cu12-9.1.0.70.dist-info",
        "nvidia_nccl_cu12-2.21.5.dist-info",
        "nvidia_ml_py-12.560.30.dist-info",  # NVML's bindings: not a CUDA library
        "cuda_toolkit-13.0.3.0.dist-info",
        "triton-3.2.0.dist-info",
        "numpy-2.1.0.dist-info",
        "nvidia",  # the wheels' package directory, not metadata
    ]:
        (tmp_path / entry).mkdir()
    wheels, triton = torch_child.wheels_next_to(str(tmp_path))
    assert wheels == {"cuda-toolkit": "13.0.3.0", "nvidia-cudnn-cu12": "9.1.0.70", "nvidia-nccl-cu12": "2.21.5"}
    assert triton == "3.2.0"
    assert torch_child.wheels_next_to(str(tmp_path / "missing")) == ({}, None)


@needs_torch
def test_matmul_comparison_on_cpu() -> None:
    """The child's correctness measure itself: on the CPU the result equals the float64 reference to
    float32 rounding."""
    import torch

    assert torch_child.matmul_error(torch, "cpu") < 1e-5


@pytest.mark.gpu
def test_real_gpu_matmul() -> None:
    """On a machine with a CUDA GPU: every visible GPU runs the matmul and agrees with the CPU."""
    python = CUDA_TORCH_PYTHON if CUDA_TORCH_PYTHON and os.access(CUDA_TORCH_PYTHON, os.X_OK) else sys.executable
    info = probe_torch(dict(os.environ), python=python)
    if not info.cuda_available:
        pytest.skip(f"no usable CUDA GPU: {info.cuda_init_error}")
    assert info.device_count == len(info.devices) > 0
    for device in info.devices:
        assert device.matmul_error is None and device.matmul_max_rel_error is not None
        assert device.matmul_max_rel_error < 1e-5
        assert device.capability is not None and device.name


# -- the CUDA toolkit (nvcc) probe -------------------------------------------------------------------

NVCC_OUTPUT = """nvcc: NVIDIA (R) Cuda compiler driver
Copyright (c) 2005-2024 NVIDIA Corporation
Cuda compilation tools, release {version}, V{version}.131
"""


def fake_toolkit(root: Path, version: str | None, *, hang: bool = False) -> Path:
    """A directory ``root/bin/nvcc`` whose nvcc prints ``version`` like the real one (or hangs)."""
    nvcc = root / "bin" / "nvcc"
    nvcc.parent.mkdir(parents=True)
    # Only shell built-ins and absolute paths: the tests run nvcc with a PATH of their own.
    body = f"exec {shutil.which('sleep')} 30" if hang else f"printf '%s' '{NVCC_OUTPUT.format(version=version)}'"
    nvcc.write_text(f"#!/bin/sh\n{body}\n")
    nvcc.chmod(0o755)
    return root


def test_toolkit_follows_torchs_search_order(tmp_path: Path) -> None:
    from envcheck.probes.toolkit import probe_toolkit

    home = fake_toolkit(tmp_path / "cuda-12.4", "12.4")
    on_path = fake_toolkit(tmp_path / "cuda-13.0", "13.0")
    env = {"PATH": str(on_path / "bin"), "CUDA_HOME": str(home)}
    info = probe_toolkit(env, default_home=str(tmp_path / "none"))
    assert [(n.source, n.version) for n in info.found] == [("CUDA_HOME", "12.4"), ("PATH", "13.0")]
    assert info.cuda_home == str(home) and info.for_extensions is info.found[0]


def test_toolkit_from_path_and_nothing_found(tmp_path: Path) -> None:
    from envcheck.probes.toolkit import probe_toolkit

    on_path = fake_toolkit(tmp_path / "cuda", "12.8")
    info = probe_toolkit({"PATH": str(on_path / "bin")}, default_home=str(tmp_path / "none"))
    assert info.cuda_home_source == "PATH" and info.for_extensions and info.for_extensions.version == "12.8"
    empty = probe_toolkit({"PATH": str(tmp_path / "empty")}, default_home=str(tmp_path / "none"))
    assert empty.found == [] and empty.for_extensions is None


def test_toolkit_cuda_home_without_nvcc(tmp_path: Path) -> None:
    from envcheck.probes.toolkit import probe_toolkit

    info = probe_toolkit({"PATH": "", "CUDA_HOME": str(tmp_path)}, default_home=str(tmp_path / "none"))
    assert info.for_extensions is not None and info.for_extensions.error == "no nvcc in this toolkit directory"


def test_hanging_nvcc_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from envcheck.probes import toolkit

    monkeypatch.setattr(toolkit, "NVCC_TIMEOUT_S", 0.5)
    home = fake_toolkit(tmp_path / "cuda", None, hang=True)
    info = toolkit.probe_toolkit({"PATH": "", "CUDA_HOME": str(home)}, default_home=str(tmp_path / "none"))
    assert info.found[0].version is None and info.found[0].error == "`nvcc --version` did not finish within 0.5 s"


def test_nvcc_is_stopped_before_the_doctors_deadline(tmp_path: Path) -> None:
    """With 1 s of the deadline left, nvcc gets 0.5 s: the probe reports the hang itself, in time."""
    from envcheck.probes.toolkit import probe_toolkit

    home = fake_toolkit(tmp_path / "cuda", None, hang=True)
    info = probe_toolkit({"PATH": "", "CUDA_HOME": str(home)}, default_home=str(tmp_path / "none"), deadline_s=1.0)
    assert info.found[0].error == "`nvcc --version` did not finish within 0.5 s"


#: What the tools print on Ubuntu 22.04 (gcc 11.4, clang 14, CMake 3.22), first lines as collect_env reads them.
BUILD_TOOL_OUTPUT = {
    "gcc": "gcc (Ubuntu 11.4.0-1ubuntu1~22.04) 11.4.0\nCopyright (C) 2021 Free Software Foundation, Inc.\n",
    "clang": "Ubuntu clang version 14.0.0-1ubuntu1.1\nTarget: x86_64-pc-linux-gnu\nThread model: posix\n",
    "cmake": "cmake version 3.22.1\n\nCMake suite maintained and supported by Kitware (kitware.com/cmake).\n",
}


def fake_tools(bin_dir: Path, outputs: dict[str, str | None]) -> None:
    """Scripts in ``bin_dir`` that print ``outputs[name]``, or fail (exit 1) where it is None."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name, output in outputs.items():
        body = f"printf '%s' '{output}'" if output is not None else "echo broken >&2; exit 1"
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)


def test_build_tools_report_what_collect_env_reports(tmp_path: Path) -> None:
    from envcheck.probes.toolkit import probe_toolkit

    fake_tools(tmp_path / "bin", BUILD_TOOL_OUTPUT)
    info = probe_toolkit({"PATH": str(tmp_path / "bin")}, default_home=str(tmp_path / "none"))
    assert info.build_tools == {"gcc": "(Ubuntu 11.4.0-1ubuntu1~22.04) 11.4.0", "clang": "14.0.0-1ubuntu1.1",
                                "cmake": "3.22.1"}  # fmt: skip


def test_missing_or_broken_build_tools_are_none(tmp_path: Path) -> None:
    from envcheck.probes.toolkit import probe_toolkit

    fake_tools(tmp_path / "bin", {"gcc": None, "cmake": "not a version line\n"})
    info = probe_toolkit({"PATH": str(tmp_path / "bin")}, default_home=str(tmp_path / "none"))
    assert info.build_tools == {"gcc": None, "clang": None, "cmake": None}


def hanging_nvcc(bin_dir: Path, pidfile: Path) -> None:
    """An ``nvcc`` that starts a grandchild, writes both pids to ``pidfile`` and never answers."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    sleep = shutil.which("sleep")
    (bin_dir / "nvcc").write_text(f'#!/bin/sh\n{sleep} 3600 &\necho "$$ $!" > {pidfile}\nwait\n')
    (bin_dir / "nvcc").chmod(0o755)


def test_a_hanging_nvcc_and_its_grandchild_are_gone_when_the_doctor_returns(tmp_path: Path) -> None:
    pidfile = tmp_path / "nvcc.pids"
    hanging_nvcc(tmp_path / "bin", pidfile)
    done, report = doctor("torch.nvcc", "--deadline", "3", fake="raises", path_first=tmp_path / "bin")
    pids = read_pids(pidfile)
    assert len(pids) == 2 and survivors(pids) == []
    result = verdict(report, "torch.nvcc")
    assert result["status"] == "skip" and done.returncode == 0
    nvcc = tmp_path / "bin" / "nvcc"
    assert f"nvcc at {nvcc} (from PATH) (`nvcc --version` did not finish within " in result["summary"]


def test_sigterm_to_envcheck_takes_its_children_with_it(tmp_path: Path) -> None:
    """A `timeout` wrapper or a scheduler ends envcheck with SIGTERM, which runs no exit handler by
    default: envcheck still kills every process group it started, then dies of that SIGTERM."""
    nvcc_pids, torch_pids = tmp_path / "nvcc.pids", tmp_path / "torch.pids"
    hanging_nvcc(tmp_path / "bin", nvcc_pids)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENVCHECK_", "CUDA_HOME", "CUDA_PATH"))}
    env.update(
        PYTHONPATH=os.pathsep.join([str(FAKE_TORCH / "hangs_with_helper"), str(NVML_SITE)]),
        ENVCHECK_FAKE_NVML="no_library",
        ENVCHECK_TEST_PIDFILE=str(torch_pids),
        PATH=os.pathsep.join([str(tmp_path / "bin"), env.get("PATH", os.defpath)]),
    )
    envcheck = subprocess.Popen(
        [ENVCHECK, "doctor", "--json", "torch", "--deadline", "60"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        pids = read_pids(nvcc_pids) + read_pids(torch_pids)
        envcheck.send_signal(signal.SIGTERM)
        assert envcheck.wait(timeout=30) == -signal.SIGTERM
    finally:
        envcheck.kill()
        envcheck.wait()
    # nvcc and its grandchild, the torch child and the helper it started: four groups' worth, all gone.
    assert survivors(pids) == [], "a child survived envcheck's SIGTERM"


def test_nvcc_printing_bytes_that_are_not_utf8_is_still_read(tmp_path: Path) -> None:
    """A wrapper script or a locale can put stray bytes in nvcc's output: the version is still found."""
    from envcheck.probes.toolkit import probe_toolkit

    home = fake_toolkit(tmp_path / "cuda", "12.4")
    nvcc = home / "bin" / "nvcc"
    nvcc.write_bytes(nvcc.read_bytes().replace(b"#!/bin/sh\n", b"#!/bin/sh\nprintf '\\377\\376 wrapper\\n'\n", 1))
    info = probe_toolkit({"PATH": "", "CUDA_HOME": str(home)}, default_home=str(tmp_path / "none"))
    assert info.found[0].version == "12.4", info.found[0].error
