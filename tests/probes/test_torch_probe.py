"""The torch probe: a child process that imports torch, against real builds and deliberately broken ones.

Broken torches are small packages under ``tests/fake_torch/<scenario>/torch`` put first on the child's
path through ``PYTHONPATH`` (the lowest boundary: the real child script, the real subprocess handling).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap
import time
import venv
from pathlib import Path

import pytest

from envcheck.probes import torch_child
from envcheck.probes.torch import (
    DEFAULT_CHILD_TIMEOUT_S,
    PROBE_TIMEOUT_S,
    TIMEOUT_ENV,
    _parse,
    child_timeout,
    probe_torch,
)

FAKE_TORCH = Path(__file__).resolve().parents[1] / "fake_torch"

#: The real CUDA build of torch (2.14.1+cu130 on the development machine); absent in CI, so those
#: tests skip. Point the variable at another CUDA torch's interpreter to test that one.
CUDA_TORCH_PYTHON = os.environ.get("ENVCHECK_CUDA_TORCH_PYTHON", "/work/venv-cuda/bin/python")
needs_cuda_torch = pytest.mark.skipif(
    not os.access(CUDA_TORCH_PYTHON, os.X_OK), reason=f"no CUDA build of torch at {CUDA_TORCH_PYTHON}"
)
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
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


# -- broken torches ----------------------------------------------------------------------------------


def test_import_error_quotes_the_real_exception() -> None:
    info = probe_torch(fake_env("raises"))
    assert info.status == "import_error"
    assert info.error == "OSError: libcudnn.so.9: cannot open shared object file: No such file or directory"
    assert info.stage == "import"
    assert info.version is None


def test_hanging_import_is_killed_and_says_where_it_hung() -> None:
    started = time.monotonic()
    info = probe_torch(fake_env("hangs"), timeout_s=2)
    assert time.monotonic() - started < 5
    assert info.status == "timeout"
    assert info.error == "import torch did not finish within 2 s"
    # faulthandler's dump just before the kill pins the hang to the fake torch's sleep.
    assert info.where is not None and info.where.endswith("hangs/torch/__init__.py:5 in <module>")


def test_crash_names_the_signal_and_the_step() -> None:
    info = probe_torch(fake_env("crashes"))
    assert info.status == "crashed"
    assert info.error is not None and "SIGSEGV" in info.error and "during import torch" in info.error
    assert info.exit_code == -11
    assert "Segmentation fault" in info.stderr_tail  # faulthandler's report reaches the verdict's details


def test_hang_in_cuda_initialisation_is_told_apart_from_a_hanging_import() -> None:
    info = probe_torch(fake_env("cuda_init_hangs"), timeout_s=2)
    assert info.status == "timeout"
    assert info.error == "CUDA initialisation (torch.cuda.is_available()) did not finish within 2 s"
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
    pids = [int(p) for p in pidfile.read_text().split()]
    deadline = time.monotonic() + 3
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(p) for p in pids), "a process of the hung child survived"


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
    subprocess.run([sys.executable, "-c", script], timeout=30, check=True)
    pids = [int(p) for p in pidfile.read_text().split()]
    deadline = time.monotonic() + 3
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(p) for p in pids), "the torch child outlived envcheck"


def test_child_of_a_killed_envcheck_ends_itself(tmp_path: Path) -> None:
    """Killed outright (SIGTERM from `timeout` or a scheduler), envcheck runs no exit handler: the child,
    in its own session, must still not hang on (holding a GPU) past its own time limit."""
    pidfile = tmp_path / "pids"
    script = textwrap.dedent(
        f"""
        import os, threading, time
        from envcheck.probes.torch import probe_torch
        env = {fake_env("hangs_with_helper", ENVCHECK_TEST_PIDFILE=str(pidfile))!r}
        threading.Thread(target=probe_torch, args=(env,), kwargs={{"timeout_s": 1}}, daemon=True).start()
        while not os.path.exists({str(pidfile)!r}):  # the child is past its last message, hanging
            time.sleep(0.01)
        os._exit(0)  # like SIGKILL or an unhandled SIGTERM: no atexit
        """
    )
    subprocess.run([sys.executable, "-c", script], timeout=30, check=True)
    child, helper = (int(p) for p in pidfile.read_text().split())
    try:
        deadline = time.monotonic() + 1 + torch_child.ORPHAN_GRACE_S + 5
        while alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(child), "the torch child outlived a killed envcheck"
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


# -- the protocol and the time limit -----------------------------------------------------------------


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


def test_child_timeout_defaults_env_and_never_outlasts_the_probe() -> None:
    assert child_timeout({}) == DEFAULT_CHILD_TIMEOUT_S
    assert child_timeout({TIMEOUT_ENV: "2.5"}) == 2.5
    assert child_timeout({TIMEOUT_ENV: "not a number"}) == DEFAULT_CHILD_TIMEOUT_S
    assert child_timeout({TIMEOUT_ENV: "1000"}) < PROBE_TIMEOUT_S
    assert child_timeout({TIMEOUT_ENV: "1000"}, timeout_s=4) == 4


def test_child_timeout_ends_before_the_doctors_deadline() -> None:
    """The same margin before the runner gives up, whether at the probe's timeout or the deadline."""
    assert child_timeout({}, deadline_s=5.0) == 4.0
    assert child_timeout({TIMEOUT_ENV: "1000"}) == PROBE_TIMEOUT_S - 1.0
    assert child_timeout({}, deadline_s=1000.0) == DEFAULT_CHILD_TIMEOUT_S
    assert child_timeout({}, deadline_s=0.2) == 0.5  # the floor: the child always gets a moment


# -- real builds -------------------------------------------------------------------------------------


@needs_torch
def test_real_cpu_build() -> None:
    """The torch installed in this environment (the CPU build 2.13.0 in development)."""
    info = probe_torch(dict(os.environ, CUDA_VISIBLE_DEVICES="1"))
    assert info.status == "ok", info.error
    assert info.version and info.import_s is not None
    assert info.cuda_visible_devices == "1"  # the environment reaches the child
    assert info.path and info.path.endswith("torch")
    if info.cuda is None and info.hip is None:  # a CPU build
        assert info.cuda_available is False and info.device_count == 0
        assert info.arch_list == [] and info.cuda_init_error is None


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
    if info.version == "2.14.1+cu130":  # the build on the development machine, exactly
        assert info.cuda == "13.0" and info.cudnn_version == 92400 and info.nccl_version == (2, 30, 7)
        assert info.arch_list == ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]
    if not info.cuda_available:
        assert info.cuda_init_error  # e.g. "RuntimeError: Found no NVIDIA driver on your system ..."


@needs_torch
def test_matmul_comparison_on_cpu() -> None:
    """The child's correctness measure itself: on the CPU the result equals the float64 reference to
    float32 rounding."""
    import torch

    assert torch_child.matmul_error(torch, "cpu") < 1e-5


@pytest.mark.gpu
def test_real_gpu_matmul() -> None:
    """On a machine with a CUDA GPU: every visible GPU runs the matmul and agrees with the CPU."""
    python = CUDA_TORCH_PYTHON if os.access(CUDA_TORCH_PYTHON, os.X_OK) else sys.executable
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
    started = time.monotonic()
    info = toolkit.probe_toolkit({"PATH": "", "CUDA_HOME": str(home)}, default_home=str(tmp_path / "none"))
    assert time.monotonic() - started < 5
    assert info.found[0].version is None and "did not finish within 0.5 s" in (info.found[0].error or "")


def test_nvcc_printing_bytes_that_are_not_utf8_is_still_read(tmp_path: Path) -> None:
    """A wrapper script or a locale can put stray bytes in nvcc's output: the version is still found."""
    from envcheck.probes.toolkit import probe_toolkit

    home = fake_toolkit(tmp_path / "cuda", "12.4")
    nvcc = home / "bin" / "nvcc"
    nvcc.write_bytes(nvcc.read_bytes().replace(b"#!/bin/sh\n", b"#!/bin/sh\nprintf '\\377\\376 wrapper\\n'\n", 1))
    info = probe_toolkit({"PATH": "", "CUDA_HOME": str(home)}, default_home=str(tmp_path / "none"))
    assert info.found[0].version == "12.4", info.found[0].error
