"""torch.compile readiness: the compilers, the Python headers, libcuda for Triton's linker and the cache
directories, through the installed command where a user sees them (a PATH without a compiler, CC at a real
gcc, a cache directory that is a file, TRITON_LIBCUDA_PATH with fake NVML GPUs), and the verdicts that need a
machine this one is not (no torch, a noexec mount, only libcuda.so.1) over probe data made by hand."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from envcheck.core.model import CheckResult, Status
from envcheck.doctor.areas import CHECKS, QUICK_AREAS
from envcheck.doctor.checks import compile as _compile_checks  # noqa: F401 - registers the compile checks
from envcheck.doctor.runner import ProbeContext as Context
from envcheck.doctor.runner import ProbeRunner, run_check
from envcheck.probes import compile as compile_probe
from envcheck.probes.compile import CacheDir, CompileInfo, Compiler, LibcudaInfo, cache_dirs, parse_ldconfig
from envcheck.probes.nvml.inventory import GpuInfo, NvmlState
from envcheck.probes.packages import PackagesState, TorchBuild
from envcheck.probes.registry import ProbeSpec
from tests.cli.test_terminal import ENVCHECK, NVML_SITE

GCC = shutil.which("gcc")
needs_gcc = pytest.mark.skipif(GCC is None, reason="no gcc on this machine")


def doctor(*checks: str, scenario: str = "healthy_multi_gpu", **extra: str) -> dict[str, dict]:
    """``envcheck doctor CHECKS --json`` as a user runs it (CC and CXX unset unless given), by check id."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENVCHECK_", "TRITON_", "TORCHINDUCTOR_"))
           and k not in ("CC", "CXX")}  # fmt: skip
    env.update(PYTHONPATH=str(NVML_SITE), ENVCHECK_FAKE_NVML=scenario, **extra)
    proc = subprocess.run([ENVCHECK, "doctor", *checks, "--json"], capture_output=True, text=True, env=env,
                          timeout=120, cwd="/")  # fmt: skip
    assert proc.returncode in (0, 1), proc.stderr
    return {c["id"]: c for c in json.loads(proc.stdout)["checks"]}


def test_the_compile_area_is_not_in_the_healthcheck():
    assert "compile" not in QUICK_AREAS
    assert {c.id for c in CHECKS.ordered() if c.area == "compile"} == {
        "compile.compiler", "compile.python_headers", "compile.libcuda", "compile.cache_dirs"}  # fmt: skip


@pytest.mark.parametrize("scenario", ["healthy_multi_gpu", "no_library"])
def test_a_path_without_any_compiler_fails_with_the_install(tmp_path, scenario):
    (tmp_path / "python").symlink_to(sys.executable)
    check = doctor("compile.compiler", scenario=scenario, PATH=str(tmp_path))["compile.compiler"]
    assert check["status"] == "fail", check
    assert "no gcc and no clang on PATH" in check["summary"] and "no g++ on PATH" in check["summary"]
    assert ("Triton's GPU kernels" if scenario == "healthy_multi_gpu" else "Inductor's CPU code") in check["summary"]
    assert check["fix"]["command"] == "sudo apt-get install build-essential"
    assert "conda install -c conda-forge gcc gxx" in check["fix"]["text"]


@needs_gcc
def test_cc_at_a_real_gcc_is_ok_and_names_its_version(tmp_path):
    version = subprocess.run([GCC, "--version"], capture_output=True, text=True).stdout.splitlines()[0].strip()
    (tmp_path / "python").symlink_to(sys.executable)
    (tmp_path / "g++").symlink_to(shutil.which("g++") or GCC)
    check = doctor("compile.compiler", PATH=str(tmp_path), CC=GCC)["compile.compiler"]
    assert check["status"] == "ok", check
    assert f"c: CC={GCC} ({version})" in check["summary"]


def test_cc_set_to_something_that_does_not_run_fails(tmp_path):
    check = doctor("compile.compiler", CC=str(tmp_path / "no-such-cc"))["compile.compiler"]
    assert check["status"] == "fail" and f"CC={tmp_path / 'no-such-cc'}" in check["summary"], check


@pytest.mark.parametrize("how", ["a file", "under a file", "a read-only directory"])
def test_an_inductor_cache_that_cannot_be_written_fails(tmp_path, how):
    target = tmp_path / "cache"
    if how == "a file":
        target.write_text("not a directory")
    elif how == "under a file":
        (tmp_path / "file").write_text("not a directory")
        target = tmp_path / "file" / "inductor"
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes through chmod")
        target.mkdir()
        target.chmod(0o555)
    try:
        check = doctor("compile.cache_dirs", TORCHINDUCTOR_CACHE_DIR=str(target),
                       TRITON_CACHE_DIR=str(tmp_path / "triton"))["compile.cache_dirs"]  # fmt: skip
    finally:
        if target.is_dir():
            target.chmod(0o755)
    assert check["status"] == "fail", check
    assert check["summary"].startswith(f"inductor cache {target} (TORCHINDUCTOR_CACHE_DIR): ")
    assert "triton cache" not in check["summary"]
    assert check["fix"]["command"] == "export TORCHINDUCTOR_CACHE_DIR=$HOME/.cache/inductor"


def test_writable_cache_dirs_are_ok(tmp_path):
    check = doctor("compile.cache_dirs", TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "a" / "b"),
                   TRITON_CACHE_DIR=str(tmp_path))["compile.cache_dirs"]  # fmt: skip
    assert check["status"] == "ok", check
    inductor, triton = f"{tmp_path}/a/b (TORCHINDUCTOR_CACHE_DIR)", f"{tmp_path} (TRITON_CACHE_DIR)"
    assert check["summary"] == f"inductor: {inductor}; triton: {triton}"


def test_triton_libcuda_path_with_libcuda_so_is_ok_on_a_gpu_node_and_skipped_without_gpus(tmp_path):
    (tmp_path / "libcuda.so.1").write_bytes(b"\x7fELF fake")
    (tmp_path / "libcuda.so").symlink_to("libcuda.so.1")
    check = doctor("compile.libcuda", TRITON_LIBCUDA_PATH=str(tmp_path))["compile.libcuda"]
    assert check["status"] == "ok" and check["summary"] == f"TRITON_LIBCUDA_PATH={tmp_path} holds libcuda.so", check
    (tmp_path / "libcuda.so").unlink()
    check = doctor("compile.libcuda", TRITON_LIBCUDA_PATH=str(tmp_path))["compile.libcuda"]
    assert check["status"] == "warn" and check["fix"]["command"] == f"sudo ln -s libcuda.so.1 {tmp_path}/libcuda.so"
    check = doctor("compile.libcuda", scenario="no_library", TRITON_LIBCUDA_PATH=str(tmp_path))["compile.libcuda"]
    assert check["status"] == "skip" and "no NVIDIA GPU answers NVML" in check["summary"], check


def test_the_python_headers_are_those_of_envcheck_s_interpreter():
    check = doctor("compile.python_headers")["compile.python_headers"]
    include = Path(check["details"]["include_dir"])
    assert check["status"] == ("ok" if (include / "Python.h").is_file() else "fail"), check
    # The interpreter the installed command runs in: its script's shebang.
    assert check["details"]["python"] == Path(ENVCHECK).read_text().splitlines()[0].removeprefix("#!")


# -- verdicts over probe data made by hand -----------------------------------------------------------------

TORCH = PackagesState("python", {}, torch=TorchBuild("2.13.0", kind="cpu", accelerator_version=None, source=None,
                                                     location=None))  # fmt: skip
H100 = [GpuInfo(0, name="NVIDIA H100 80GB HBM3", uuid="GPU-1111")]
GCC_C = Compiler("c", "gcc", "/usr/bin/gcc", "gcc 12")
GXX = Compiler("c++", "g++", "/usr/bin/g++", "g++ 12")


def judge(check_id: str, info: CompileInfo, *, gpus: list[GpuInfo] | None = H100,
          packages: PackagesState = TORCH) -> CheckResult:  # fmt: skip
    nvml = NvmlState("ok", gpus=gpus) if gpus is not None else NvmlState("no_library", error="libnvidia-ml.so.1")
    probes = {
        "nvml": ProbeSpec("nvml", lambda e: nvml, 1.0, "NVML"),
        "packages": ProbeSpec("packages", lambda e: packages, 1.0, "packages"),
        "compile": ProbeSpec("compile", lambda e: info, 1.0, "compile"),
    }
    return run_check(CHECKS[check_id], Context(ProbeRunner({}, 5.0, probes=probes), {}))


@pytest.mark.parametrize("check_id", ["compile.compiler", "compile.python_headers", "compile.libcuda",
                                      "compile.cache_dirs"])  # fmt: skip
def test_without_torch_every_check_skips_with_the_reason(check_id):
    result = judge(check_id, CompileInfo(), packages=PackagesState("python", {}))
    assert result.status is Status.SKIP and result.summary.startswith("torch is not installed"), result


@pytest.mark.parametrize(("gpus", "missing", "status"), [
    (H100, "c", Status.FAIL), (H100, "c++", Status.WARN),
    (None, "c++", Status.FAIL), (None, "c", Status.WARN)])  # fmt: skip
def test_a_missing_compiler_fails_where_this_machine_needs_it(gpus, missing, status):
    absent = Compiler(missing, "gcc or clang", error="no gcc and no clang on PATH")
    info = CompileInfo(compilers=[absent if c.language == missing else c for c in (GCC_C, GXX)])
    assert judge("compile.compiler", info, gpus=gpus).status is status


def test_missing_headers_name_the_package_of_a_system_python():
    info = CompileInfo(include_dir="/usr/include/python3.12", has_python_h=False, python_version="3.12",
                       base_prefix="/usr")  # fmt: skip
    result = judge("compile.python_headers", info)
    assert result.status is Status.FAIL and result.fix.command == "sudo apt-get install python3.12-dev"


def test_libcuda_only_versioned_warns_none_fails_unreadable_skips():
    only_1 = LibcudaInfo(ldconfig={"libcuda.so": [], "libcuda.so.1": ["/usr/lib/x86_64-linux-gnu/libcuda.so.1"]})
    result = judge("compile.libcuda", CompileInfo(libcuda=only_1))
    assert result.status is Status.WARN
    assert result.fix.command == "sudo ln -s libcuda.so.1 /usr/lib/x86_64-linux-gnu/libcuda.so"
    both = LibcudaInfo(ldconfig={"libcuda.so": ["/usr/lib64/libcuda.so"], "libcuda.so.1": ["/usr/lib64/libcuda.so.1"]})
    assert judge("compile.libcuda", CompileInfo(libcuda=both)).status is Status.OK
    none = LibcudaInfo(ldconfig={"libcuda.so": [], "libcuda.so.1": []})
    assert judge("compile.libcuda", CompileInfo(libcuda=none)).status is Status.FAIL
    unreadable = LibcudaInfo(ldconfig=None, ldconfig_error="no ldconfig in /sbin, /usr/sbin or on PATH")
    assert judge("compile.libcuda", CompileInfo(libcuda=unreadable)).status is Status.SKIP


def test_parse_ldconfig_reads_both_names_and_nothing_else():
    text = """3 libs found in cache `/etc/ld.so.cache'
\tlibcudart.so.12 (libc6,x86-64) => /usr/local/cuda/lib64/libcudart.so.12
\tlibcuda.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/libcuda.so.1
\tlibcuda.so (libc6,x86-64) => /lib/x86_64-linux-gnu/libcuda.so
\tlibcuda.so.1 (libc6) => /lib/i386-linux-gnu/libcuda.so.1
"""
    assert parse_ldconfig(text) == {
        "libcuda.so": ["/lib/x86_64-linux-gnu/libcuda.so"],
        "libcuda.so.1": ["/lib/x86_64-linux-gnu/libcuda.so.1", "/lib/i386-linux-gnu/libcuda.so.1"],
    }


def test_a_noexec_mount_fails_and_an_unreadable_one_is_not_ok(tmp_path, monkeypatch):
    real = os.statvfs

    class Flags:
        def __init__(self, flag: int) -> None:
            self.f_flag = flag

    monkeypatch.setattr(compile_probe.os, "statvfs", lambda p: Flags(real(p).f_flag | os.ST_NOEXEC))
    caches = cache_dirs({"TORCHINDUCTOR_CACHE_DIR": str(tmp_path), "TRITON_CACHE_DIR": str(tmp_path / "t")})
    assert all(c.noexec and c.blocked is None for c in caches)
    result = judge("compile.cache_dirs", CompileInfo(caches=caches))
    assert result.status is Status.FAIL and "on a noexec filesystem" in result.summary
    # Without a GPU, Triton's cache alone only warns.
    triton_only = [CacheDir("inductor", str(tmp_path), "default", str(tmp_path), noexec=False), caches[1]]
    assert judge("compile.cache_dirs", CompileInfo(caches=triton_only), gpus=None).status is Status.WARN

    def broken(p):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(compile_probe.os, "statvfs", broken)
    unknown = cache_dirs({"TORCHINDUCTOR_CACHE_DIR": str(tmp_path), "TRITON_CACHE_DIR": str(tmp_path)})
    assert judge("compile.cache_dirs", CompileInfo(caches=unknown)).status is Status.SKIP


def test_the_default_inductor_cache_is_torchinductor_user_in_tmpdir(tmp_path):
    inductor, triton = cache_dirs({"TMPDIR": str(tmp_path), "USER": "a/b", "HOME": str(tmp_path / "home")})
    assert inductor.path == f"{tmp_path}/torchinductor_a_b" and inductor.source == "default"
    assert triton.path == f"{tmp_path}/home/.triton/cache" and triton.nearest == str(tmp_path)


def test_explain_of_the_pasted_message_names_the_same_check(tmp_path):
    (tmp_path / "python").symlink_to(sys.executable)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENVCHECK_") and k not in ("CC", "CXX")}
    env.update(PYTHONPATH=str(NVML_SITE), ENVCHECK_FAKE_NVML="healthy_multi_gpu", PATH=str(tmp_path))
    message = "RuntimeError: Failed to find C compiler. Please specify via CC environment variable."
    proc = subprocess.run([ENVCHECK, "explain", message], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "This machine shows the cause (compile.compiler)" in proc.stdout
    assert "run: sudo apt-get install build-essential" in proc.stdout
