"""``packages.extensions`` through the installed command, over extensions built here for real: a module
linked against this CPU torch's libc10 with an undefined ``c10::cuda`` symbol (a flash-attn wheel for another
torch), and one linked against a ``libcudart.so.12`` that is not there (a build for another CUDA), each
installed as a distribution (dist-info with METADATA and RECORD) on PYTHONPATH. ``explain`` with the
loader's message names the same check."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from envcheck.probes import elf
from tests.explain.test_symbols import fake_site

ROOT = Path(__file__).resolve().parents[3]
ENVCHECK = shutil.which("envcheck") or str(Path(sys.executable).with_name("envcheck"))
SYMBOL = "_ZN3c104cuda9SetDeviceEi"

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc to build the extensions")


def _torch_lib() -> Path:
    spec = importlib.util.find_spec("torch")  # found, not imported
    assert spec is not None and spec.submodule_search_locations
    return Path(spec.submodule_search_locations[0]) / "lib"


def _gcc(*args: str | Path) -> None:
    subprocess.run(["gcc", "-shared", "-fPIC", *map(str, args)], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two sites, each with one broken extension, compiled once for the module."""
    root = tmp_path_factory.mktemp("extensions")
    # c10::cuda::SetDevice(int), called and left undefined (libc10_cuda would define it; libc10 does not).
    (root / "torch_ext.c").write_text(
        f'extern void set_device(int) __asm__("{SYMBOL}");\nvoid envcheck_fake(void) {{ set_device(0); }}\n'
    )
    torch_so = root / "torch_ext.so"
    _gcc("-o", torch_so, root / "torch_ext.c", f"-L{_torch_lib()}", "-Wl,--no-as-needed", "-lc10")
    # A stub CUDA runtime of major 12 to link against, removed once linked.
    stub = root / "stub"
    stub.mkdir()
    (root / "cudart.c").write_text("int cudaRuntimeGetVersion(int *v) { *v = 12040; return 0; }\n")
    _gcc("-o", stub / "libcudart.so.12", "-Wl,-soname,libcudart.so.12", root / "cudart.c")
    (root / "cuda_ext.c").write_text(
        "int cudaRuntimeGetVersion(int *);\nint envcheck_fake(int *v) { return cudaRuntimeGetVersion(v); }\n"
    )
    cuda_so = root / "cuda_ext.so"
    _gcc("-o", cuda_so, root / "cuda_ext.c", stub / "libcudart.so.12")
    shutil.rmtree(stub)
    # A module linked against libc10 whose static constructor kills the process as it loads.
    (root / "crash_ext.c").write_text(
        "#include <signal.h>\n__attribute__((constructor)) static void boom(void) { raise(SIGSEGV); }\n"
    )
    crash_so = root / "crash_ext.so"
    _gcc("-o", crash_so, root / "crash_ext.c", f"-L{_torch_lib()}", "-Wl,--no-as-needed", "-lc10")
    # One whose static constructor never returns (waiting on something that does not come).
    (root / "hang_ext.c").write_text(
        "#include <unistd.h>\n__attribute__((constructor)) static void wait(void) { for (;;) pause(); }\n"
    )
    hang_so = root / "hang_ext.so"
    _gcc("-o", hang_so, root / "hang_ext.c", f"-L{_torch_lib()}", "-Wl,--no-as-needed", "-lc10")
    # vLLM's allocator links the driver's own libcuda.so.1 (and no torch library: found as a known package's).
    stub.mkdir()
    (root / "libcuda.c").write_text("int cuInit(unsigned int flags) { return 0; }\n")
    _gcc("-o", stub / "libcuda.so.1", "-Wl,-soname,libcuda.so.1", root / "libcuda.c")
    (root / "driver_ext.c").write_text("int cuInit(unsigned int);\nint envcheck_fake(void) { return cuInit(0); }\n")
    driver_so = root / "driver_ext.so"
    _gcc("-o", driver_so, root / "driver_ext.c", stub / "libcuda.so.1")
    shutil.rmtree(stub)
    found = {}
    kinds = (
        ("torch", torch_so, "flash_attn"),
        ("cuda", cuda_so, "bitsandbytes_fake"),
        ("crash", crash_so, "crashy"),
        ("hang", hang_so, "hangs"),
        ("driver", driver_so, "vllm"),
    )
    for kind, built, name in kinds:
        site, module = fake_site(root / kind, name=name)
        shutil.copy(built, site / module)
        found[kind] = site
    return found


def run(*args: str, site: Path, scenario: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENVCHECK_")}
    env["PYTHONPATH"] = str(site)
    if scenario:
        env["PYTHONPATH"] += os.pathsep + str(ROOT / "tests" / "nvml_site")
        env["ENVCHECK_FAKE_NVML"] = scenario
    return subprocess.run([ENVCHECK, *args], capture_output=True, text=True, env=env, timeout=180, cwd=ROOT)


def doctor(site: Path) -> dict:
    proc = run("doctor", "packages.extensions", "--json", site=site)
    [verdict] = json.loads(proc.stdout)["checks"]
    return verdict


def test_the_elf_reader_finds_what_the_modules_link(sites) -> None:
    [torch_module] = [m for m in elf.scan(_dists(sites["torch"]))["modules"]]
    assert "libc10.so" in torch_module["needs"] and torch_module["distribution"] == "flash_attn"
    [cuda_module] = elf.scan(_dists(sites["cuda"]))["modules"]
    assert cuda_module["needs"] == ["libcudart.so.12"]
    assert elf.needed(__file__) is None  # not an ELF file


def test_a_cap_on_files_read_is_said(sites) -> None:
    found = elf.scan(_dists(sites["torch"]), max_files=0)
    assert found["modules"] == [] and "stopped after reading 0" in found["truncated"]


def _dists(site: Path) -> list:
    from importlib import metadata

    return list(metadata.distributions(path=[str(site)]))


def test_an_extension_built_for_another_torch_fails_naming_the_distribution_and_the_symbol(sites) -> None:
    verdict = doctor(sites["torch"])
    assert verdict["status"] == "fail"
    assert "flash_attn 2.5.8" in verdict["summary"] and "c10::cuda::SetDevice" in verdict["summary"]
    assert "built for another torch" in verdict["summary"]
    assert verdict["fix"]["command"] == "pip install --force-reinstall --no-build-isolation --no-deps flash_attn"
    [failure] = verdict["details"]["failures"]
    assert failure["symbol"] == SYMBOL and failure["namespace"] == "c10" and failure["wrong_side"] == "torch"


def test_explain_with_the_loaders_message_names_the_same_check(sites) -> None:
    message = f"ImportError: {sites['torch']}/x.so: undefined symbol: {SYMBOL}"
    proc = run("explain", message, "--json", site=sites["torch"])
    [match] = json.loads(proc.stdout)["matches"]
    assert "packages.extensions" in match["checks"]
    [result] = [r for r in match["results"] if r["id"] == "packages.extensions"]
    assert result["status"] == "fail" and match["verdict"] == "shown" and proc.returncode == 1


def test_an_extension_built_for_another_cuda_names_the_missing_runtime(sites) -> None:
    verdict = doctor(sites["cuda"])
    assert verdict["status"] == "fail"
    assert "bitsandbytes_fake" in verdict["summary"] and "libcudart.so.12" in verdict["summary"]
    assert "built for CUDA 12" in verdict["summary"] and "CPU-only" in verdict["summary"]
    [failure] = verdict["details"]["failures"]
    assert failure["cuda_major"] == 12
    proc = run("explain", "libcudart.so.12: cannot open shared object file", "--json", site=sites["cuda"])
    [match] = json.loads(proc.stdout)["matches"]
    assert "packages.extensions" in match["checks"] and match["verdict"] == "shown"


def test_nothing_linked_against_torch_is_a_skip_not_ok(tmp_path) -> None:
    verdict = doctor(tmp_path)
    assert verdict["status"] == "skip" and "no installed distribution" in verdict["summary"]


def test_an_extension_that_crashes_the_child_is_a_verdict_and_torch_is_still_judged(sites) -> None:
    proc = run("doctor", "packages.extensions", "torch.import", "--json", site=sites["crash"])
    checks = {c["id"]: c for c in json.loads(proc.stdout)["checks"]}
    assert checks["torch.import"]["status"] == "ok"
    verdict = checks["packages.extensions"]
    assert verdict["status"] == "fail" and "crashy" in verdict["summary"] and "crashed" in verdict["summary"]
    assert "SIGSEGV" in verdict["summary"]


def test_an_extension_whose_load_hangs_is_a_verdict_and_torch_is_still_judged(sites) -> None:
    proc = run("doctor", "packages.extensions", "torch.import", "--json", site=sites["hang"])
    checks = {c["id"]: c for c in json.loads(proc.stdout)["checks"]}
    assert checks["torch.import"]["status"] == "ok"
    verdict = checks["packages.extensions"]
    assert verdict["status"] == "fail" and "hangs" in verdict["summary"] and "hung" in verdict["summary"]
    [failure] = verdict["details"]["failures"]
    assert failure["how"] == "hung"


def test_a_known_package_module_that_needs_the_driver_is_judged_only_where_the_driver_is(sites) -> None:
    """No torch library in its links: loaded because vllm is a known extension package. Without a driver, its
    missing libcuda.so.1 is the driver checks' finding; with GPUs answering NVML, it is this check's."""
    verdict = doctor(sites["driver"])
    assert verdict["status"] == "skip" and "need the NVIDIA driver's library, absent here" in verdict["summary"]
    proc = run("doctor", "packages.extensions", "--json", site=sites["driver"], scenario="healthy_multi_gpu")
    [verdict] = json.loads(proc.stdout)["checks"]
    assert verdict["status"] == "fail" and "vllm 2.5.8" in verdict["summary"] and "libcuda.so.1" in verdict["summary"]
