"""The stack above torch, built for real on this machine: xformers', DeepSpeed's and bitsandbytes' build records
as those packages write them, installed as distributions; an extension compiled here whose fatbin carries
only sm_80 kernels, judged against fake GPUs; and the CUDA build of torch's mapped libraries, with a preloaded
copy and a second cuDNN major. Through the installed command where envcheck's own torch is the one judged;
through the real CUDA torch's child where the CUDA build is (its libraries exist only there)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from envcheck.core.model import Status
from envcheck.doctor.signatures import SIGNATURES
from envcheck.probes import elf
from envcheck.probes.toolkit import Nvcc, ToolkitInfo
from envcheck.probes.torch import TorchInfo, probe_torch
from tests.cuda_torch import CUDA_TORCH_PYTHON, needs_cuda_torch
from tests.doctor.checks.test_torch_checks import cuda_torch, judge

ROOT = Path(__file__).resolve().parents[3]
ENVCHECK = shutil.which("envcheck") or str(Path(sys.executable).with_name("envcheck"))
NVML_SITE = ROOT / "tests" / "nvml_site"
HAS_GCC = shutil.which("gcc") is not None


@pytest.fixture
def no_nvml(nvml: Any) -> None:
    nvml("no_library")


def install(site: Path, name: str, version: str, files: dict[str, bytes | str]) -> Path:
    """A distribution in ``site`` as pip leaves it: its files, and a dist-info whose RECORD lists them."""
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    for relative, content in files.items():
        path = site / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "RECORD").write_text("".join(f"{r},,\n" for r in [*files, f"{info.name}/METADATA", f"{info.name}/RECORD"]))
    return site


def run(*args: str, site: Path, scenario: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENVCHECK_") and k != "BNB_CUDA_VERSION"}
    env["PYTHONPATH"] = os.pathsep.join([str(site), *([str(NVML_SITE)] if scenario else [])])
    if scenario:
        env["ENVCHECK_FAKE_NVML"] = scenario
    return subprocess.run([ENVCHECK, *args], capture_output=True, text=True, env=env, timeout=180, cwd=ROOT)


def verdict(check_id: str, site: Path, scenario: str | None = None) -> dict[str, Any]:
    proc = run("doctor", check_id, "--json", site=site, scenario=scenario)
    [found] = json.loads(proc.stdout)["checks"]
    return found


# -- build records -----------------------------------------------------------------------------------------------


def xformers_record(torch: str, cuda: int | None, python: str = "3.11.9") -> str:
    """cpp_lib.json as xformers' setup.py writes it (xformers/_cpp_lib.py reads ``version``)."""
    version = {"torch": torch, "cuda": cuda, "hip": None, "python": python}
    return json.dumps({"cpp_lib_path": "_C.so", "version": version})


def test_an_xformers_built_for_another_torch_and_cuda_fails_and_explain_names_the_check(tmp_path) -> None:
    record = xformers_record("2.5.1+cu121", 1201)
    site = install(tmp_path, "xformers", "0.0.28.post3", {"xformers/cpp_lib.json": record})
    found = verdict("packages.extension_builds", site)
    assert found["status"] == "fail"
    assert "xformers 0.0.28.post3 was built for PyTorch 2.5.1+cu121 (you have 2.13.0+cpu)" in found["summary"]
    assert "CUDA 12.1 (torch has none: a CPU-only build)" in found["summary"]
    assert found["fix"]["command"] == "python -m xformers.info"
    pasted = (
        "WARNING[XFORMERS]: xFormers can't load C++/CUDA extensions. xFormers was built for:\n"
        "    PyTorch 2.5.1+cu121 with CUDA 1201 (you have 2.13.0+cpu)"
    )
    proc = run("explain", pasted, "--json", site=site)
    [match] = json.loads(proc.stdout)["matches"]
    [result] = [r for r in match["results"] if r["id"] == "packages.extension_builds"]
    assert result["status"] == "fail" and match["verdict"] == "shown" and proc.returncode == 1


def test_a_stable_abi_xformers_needs_only_a_torch_at_least_as_new(tmp_path) -> None:
    site = install(tmp_path, "xformers", "0.0.34", {"xformers/cpp_lib.json": xformers_record("2.10.0+cpu", None)})
    found = verdict("packages.extension_builds", site)
    assert found["status"] == "ok" and "xformers 0.0.34 built for torch 2.10.0+cpu" in found["summary"]


def test_deepspeed_ops_prebuilt_for_another_torch_fail_with_its_own_words(tmp_path) -> None:
    record = (
        "version='0.15.0'\ngit_hash='55b4cae8'\ninstalled_ops={'async_io': False, 'fused_adam': 1, 'cpu_adam': 1}\n"
        "torch_info={'version': '2.3', 'bf16_support': True, 'cuda_version': '12.1', 'nccl_version': '0.0'}\n"
    )
    site = install(tmp_path, "deepspeed", "0.15.0", {"deepspeed/git_version_info_installed.py": record})
    found = verdict("packages.extension_builds", site)
    assert found["status"] == "fail"
    assert "prebuilt ops (cpu_adam, fused_adam) were compiled for torch 2.3 (runtime torch 2.13)" in found["summary"]
    assert "DS_BUILD_OPS=1" in found["fix"]["text"]


def test_bitsandbytes_on_a_cpu_torch_needs_its_cpu_library(tmp_path) -> None:
    cudas = {f"bitsandbytes/libbitsandbytes_cuda{v}.so": b"\x7fELF" for v in (118, 121, 124)}
    with_cpu = install(tmp_path / "a", "bitsandbytes", "0.45.0", {**cudas, "bitsandbytes/libbitsandbytes_cpu.so": b""})
    found = verdict("packages.extension_builds", with_cpu)
    assert found["status"] == "ok" and "ships libbitsandbytes_cpu for CPU" in found["summary"]
    without = install(tmp_path / "b", "bitsandbytes", "0.42.0", cudas)
    found = verdict("packages.extension_builds", without)
    assert found["status"] == "fail" and "has no libbitsandbytes_cpu for a CPU-only torch" in found["summary"]
    assert "(it ships cuda118, cuda121, cuda124)" in found["summary"]


def _records(**records: Any) -> dict[str, Any]:
    return {name: {"version": v, "path": f"/site/{name}", "record": r} for name, (v, r) in records.items()}


def test_bitsandbytes_without_the_library_for_torchs_cuda_fails(no_nvml: None) -> None:
    shipped = {"libraries": ["libbitsandbytes_cuda118.so", "libbitsandbytes_cuda124.so"]}
    info = cuda_torch("12.8", stack_records=_records(bitsandbytes=("0.43.0", shipped)))
    result = judge("packages.extension_builds", info)
    assert result.status is Status.FAIL and "no libbitsandbytes_cuda128 for torch's CUDA 12.8" in result.summary
    assert result.fix is not None and result.fix.command == "pip install -U bitsandbytes"


def test_bnb_cuda_version_picks_another_library(no_nvml: None) -> None:
    shipped = {"libraries": ["libbitsandbytes_cuda118.so", "libbitsandbytes_cuda124.so"]}
    info = cuda_torch("12.4", stack_records=_records(bitsandbytes=("0.43.0", shipped)))
    result = judge("packages.extension_builds", info, env={"BNB_CUDA_VERSION": "118"})
    assert result.status is Status.WARN
    assert "BNB_CUDA_VERSION=118 makes it load libbitsandbytes_cuda118" in result.summary
    result = judge("packages.extension_builds", info, env={"BNB_CUDA_VERSION": "117"})
    assert result.status is Status.FAIL and "for BNB_CUDA_VERSION=117" in result.summary
    assert result.fix is not None and result.fix.command == "unset BNB_CUDA_VERSION"
    assert judge("packages.extension_builds", info).status is Status.OK


def test_deepspeed_without_prebuilt_ops_needs_nvcc_on_a_cuda_torch(no_nvml: None) -> None:
    record = {"installed_ops": {"fused_adam": False}, "torch_info": {"version": "2.4", "cuda_version": "12.4"}}
    info = cuda_torch("12.4", version="2.4.1+cu124", stack_records=_records(deepspeed=("0.16.4", record)))
    result = judge("packages.extension_builds", info)
    assert result.status is Status.WARN and "CUDA_HOME does not exist" in result.summary
    toolkit = ToolkitInfo([Nvcc("CUDA_HOME", "/opt/cuda/bin/nvcc", version="12.4")])
    toolkit.cuda_home, toolkit.cuda_home_source = "/opt/cuda", "CUDA_HOME"
    result = judge("packages.extension_builds", info, toolkit=toolkit)
    assert result.status is Status.OK and "compiled at first use with nvcc 12.4" in result.summary


def test_nothing_installed_and_an_unreadable_record_are_skips_not_ok(tmp_path) -> None:
    assert verdict("packages.extension_builds", tmp_path)["status"] == "skip"
    site = install(tmp_path / "s", "xformers", "0.0.28", {"xformers/cpp_lib.json": "{not json"})
    found = verdict("packages.extension_builds", site)
    assert found["status"] == "skip" and "build record unreadable (JSONDecodeError" in found["summary"]


def test_the_pasted_messages_of_these_packages_name_the_check() -> None:
    named = {s.id for s in SIGNATURES if "packages.extension_builds" in s.checks}
    assert {"xformers.no_extensions", "bitsandbytes.no_cuda_library", "deepspeed.no_cuda_home"} <= named
    assert {s.id for s in SIGNATURES if "packages.extension_arch" in s.checks} >= {"flash_attn.needs_ampere"}
    assert "cudnn.missing" in {s.id for s in SIGNATURES if "torch.libraries" in s.checks}


# -- GPU targets -------------------------------------------------------------------------------------------------


def fatbin(*targets: tuple[int, ...]) -> bytes:
    """A fatbin container as nvcc embeds it (magic 0xBA55ED50, then one entry per target: kind 2 or 0x10 is a
    cubin, 1 PTX; the target at byte 28 of the entry's header as 10 * major + minor; flags at byte 40: 0x100000
    arch-specific, 0x200000 family-specific), with empty payloads."""
    entries = b""
    for kind, arch, *flags in targets:
        header = bytearray(64)
        struct.pack_into("<HHIQ", header, 0, kind, 0x0101, 64, 16)
        struct.pack_into("<I", header, 28, arch)
        struct.pack_into("<Q", header, 40, flags[0] if flags else 0)
        entries += bytes(header) + bytes(16)
    return struct.pack("<IHHQ", 0xBA55ED50, 1, 16, len(entries)) + entries


def elf_with_fatbin(tmp_path: Path, name: str, data: bytes, *links: str) -> Path:
    """A shared object built here whose .nv_fatbin section holds ``data``."""
    source = tmp_path / f"{name}.c"
    blob = ",".join(str(b) for b in data)
    source.write_text(
        f'__attribute__((used, section(".nv_fatbin"))) static const unsigned char fatbin[] = {{{blob}}};\n'
        f"int {name}_version(void) {{ return 1; }}\n"
    )
    built = tmp_path / f"{name}.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(built), str(source), *links],
                   check=True, capture_output=True, timeout=60)  # fmt: skip
    return built


def _torch_lib() -> Path:
    spec = importlib.util.find_spec("torch")
    assert spec is not None and spec.submodule_search_locations
    return Path(spec.submodule_search_locations[0]) / "lib"


@pytest.fixture(scope="module")
def sm80_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``fastops``: a module linked against this torch's libc10 whose fatbin holds sm_80 cubins only."""
    if not HAS_GCC:
        pytest.skip("needs gcc to build the extension")
    root = tmp_path_factory.mktemp("sm80")
    data = ",".join(str(b) for b in fatbin((2, 80)))
    (root / "ops.c").write_text(
        f'__attribute__((used, section(".nv_fatbin"))) static const unsigned char fatbin[] = {{{data}}};\n'
        "int fastops_version(void) { return 1; }\n"
    )
    module = "fastops/_C.cpython-311-x86_64-linux-gnu.so"
    (root / "site" / "fastops").mkdir(parents=True)
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-o", str(root / "site" / module), str(root / "ops.c"), f"-L{_torch_lib()}",
         "-Wl,--no-as-needed", "-lc10"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    site = install(root / "site", "fastops", "1.0", {})
    _record_module(site, "fastops", "1.0", module)
    return site


def _record_module(site: Path, dist: str, version: str, module: str) -> None:
    record = site / f"{dist}-{version}.dist-info" / "RECORD"
    record.write_text(f"{module},,\n" + record.read_text())


def test_the_fatbin_reader_reads_targets_and_kinds(tmp_path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(b"\x7fELF")
    assert elf.fatbin_targets(path) is None  # too short to be an ELF file
    assert elf.fatbin_targets(__file__) is None
    assert elf.fatbin_targets(sys.executable) == []  # an ELF file without CUDA code


@pytest.mark.skipif(not HAS_GCC, reason="needs gcc to build the test objects")
def test_the_fatbin_reader_tells_arch_and_family_targets_and_both_cubin_kinds(tmp_path) -> None:
    data = fatbin((2, 80), (0x10, 86), (2, 90, 0x100000), (2, 120, 0x1200000), (1, 90, 0x100000), (1, 120))
    built = elf_with_fatbin(tmp_path, "kinds", bytes(24) + data)  # padding before the container
    assert elf.fatbin_targets(built) == ["sm_80", "sm_86", "sm_90a", "sm_120f", "compute_90a", "compute_120"]


@pytest.mark.skipif(not HAS_GCC, reason="needs gcc to build the test objects")
def test_a_malformed_fatbin_is_unknown_or_partial_never_a_hang_or_an_error(tmp_path) -> None:
    good = fatbin((2, 80))
    huge = struct.pack("<IHHQ", 0xBA55ED50, 1, 16, 1 << 60) + good[16:]  # a container claiming exabytes
    truncated = good[:40]
    garbage = bytes(range(256)) * 64  # no magic anywhere: searched in blocks, not 8 bytes a read
    for name, data in (("huge", huge), ("truncated", truncated), ("garbage", garbage)):
        found = elf.fatbin_targets(elf_with_fatbin(tmp_path, name, data))
        assert found is None or isinstance(found, list), name
    assert elf.fatbin_targets(elf_with_fatbin(tmp_path, "many", fatbin(*[(2, 80)] * 50)), max_entries=10) is None


def test_an_extension_without_kernels_for_a_gpu_fails_naming_its_targets(sm80_site) -> None:
    module = sm80_site / "fastops" / "_C.cpython-311-x86_64-linux-gnu.so"
    assert elf.fatbin_targets(module) == ["sm_80"]
    found = verdict("packages.extension_arch", sm80_site, scenario="healthy_multi_gpu")
    assert found["status"] == "fail", found
    assert found["summary"] == (
        "fastops 1.0: no kernels for GPU 0, GPU 1, GPU 2, GPU 3 (NVIDIA H100 80GB HBM3, compute capability 9.0) in "
        "any of its 1 module(s) with CUDA code: built for sm_80"
    )
    assert 'TORCH_CUDA_ARCH_LIST="9.0"' in found["fix"]["text"]
    # An sm_80 cubin runs on 8.9 (same major, newer minor): an RTX 4090 is covered.
    found = verdict("packages.extension_arch", sm80_site, scenario="geforce_no_ecc")
    assert found["status"] == "ok" and "fastops 1.0" in found["summary"], found
    assert verdict("packages.extension_arch", sm80_site)["status"] == "skip"  # no GPU here


@pytest.mark.skipif(not HAS_GCC, reason="needs gcc to build the extension")
def test_flash_attn_on_a_gpu_below_its_floor_fails(tmp_path) -> None:
    site = tmp_path / "site"
    (tmp_path / "fa.c").write_text("int flash_attn_fake(void) { return 2; }\n")
    module = "flash_attn_2_cuda.cpython-311-x86_64-linux-gnu.so"
    site.mkdir()
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-o", str(site / module), str(tmp_path / "fa.c"), f"-L{_torch_lib()}",
         "-Wl,--no-as-needed", "-lc10"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    install(site, "flash_attn", "2.7.4", {})
    _record_module(site, "flash_attn", "2.7.4", module)
    found = verdict("packages.extension_arch", site, scenario="old_driver")
    assert found["status"] == "fail" and "flash_attn 2.7.4 on GPU 0 (Tesla V100-SXM2-32GB, 7.0)" in found["summary"]
    assert "scaled_dot_product_attention" in found["fix"]["text"]
    assert verdict("packages.extension_arch", site, scenario="healthy_multi_gpu")["status"] == "ok"


@pytest.mark.skipif(not HAS_GCC, reason="needs gcc to build the extension")
def test_a_package_passes_where_any_of_its_modules_has_kernels_for_the_gpu(tmp_path) -> None:
    """vLLM and xformers ship optional modules for one architecture (Hopper-only kernels): the package fails a GPU
    only where none of its modules runs on it."""
    site = tmp_path / "site"
    (site / "fastops").mkdir(parents=True)
    links = (f"-L{_torch_lib()}", "-Wl,--no-as-needed", "-lc10")
    for name, targets in (("_C", fatbin((2, 80))), ("_hopper_C", fatbin((2, 90, 0x100000)))):
        shutil.copy(elf_with_fatbin(tmp_path, name, targets, *links), site / "fastops" / f"{name}.so")
    install(site, "fastops", "2.0", {})
    for name in ("_C", "_hopper_C"):
        _record_module(site, "fastops", "2.0", f"fastops/{name}.so")
    found = verdict("packages.extension_arch", site, scenario="healthy_multi_gpu")
    assert found["status"] == "ok", found
    assert found["details"]["covered_by"]["fastops 2.0"]["GPU 0"] == "_hopper_C.so: sm_90a"
    found = verdict("packages.extension_arch", site, scenario="old_driver")  # a V100: neither module runs there
    assert found["status"] == "fail" and "in any of its 2 module(s) with CUDA code" in found["summary"], found
    assert "built for sm_80 sm_90a" in found["summary"]
    assert "--no-binary fastops fastops" in found["fix"]["text"]


@pytest.mark.skipif(not HAS_GCC, reason="needs gcc to build the extension")
def test_flash_attn_1_is_not_held_to_flash_attn_2s_floor(tmp_path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    module = "flash_attn_cuda.cpython-311-x86_64-linux-gnu.so"
    shutil.copy(elf_with_fatbin(tmp_path, "fa1", fatbin((2, 75)), f"-L{_torch_lib()}", "-Wl,--no-as-needed",
                                "-lc10"), site / module)  # fmt: skip
    install(site, "flash_attn", "1.0.9", {})
    _record_module(site, "flash_attn", "1.0.9", module)
    found = verdict("packages.extension_arch", site, scenario="old_driver")  # V100, 7.0: no sm_70 cubin either
    assert found["status"] == "fail" and "Ampere" not in found["summary"], found
    assert 'FLASH_ATTENTION_FORCE_BUILD=TRUE FLASH_ATTN_CUDA_ARCHS="70"' in found["fix"]["text"]


@pytest.mark.skipif(not HAS_GCC, reason="needs gcc to build the extension")
def test_alternative_modules_pass_when_the_one_for_this_system_loads(tmp_path) -> None:
    """torchaudio ships one FFmpeg module per FFmpeg major: only the installed FFmpeg's loads, as it should."""
    site = tmp_path / "site"
    (site / "torchaudio" / "lib").mkdir(parents=True)
    stub = tmp_path / "stub"
    stub.mkdir()
    (tmp_path / "av.c").write_text("int av_version_info(void) { return 58; }\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-Wl,-soname,libavutil.so.58", "-o", str(stub / "libavutil.so.58"),
                    str(tmp_path / "av.c")], check=True, capture_output=True, timeout=60)  # fmt: skip
    (tmp_path / "ff.c").write_text("int av_version_info(void);\nint torio_fake(void) { return av_version_info(); }\n")
    torch = [f"-L{_torch_lib()}", "-Wl,--no-as-needed", "-lc10"]  # each links torch, as torchaudio's do
    for major, source, links in (("4", "ff.c", [str(stub / "libavutil.so.58")]), ("6", "av.c", [])):
        out = site / "torchaudio" / "lib" / f"libtorio_ffmpeg{major}.so"
        subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(out), str(tmp_path / source), *torch, *links],
                       check=True, capture_output=True, timeout=60)  # fmt: skip
    shutil.rmtree(stub)  # the FFmpeg 4 module's library is not installed here
    install(site, "torchaudio", "2.5.1", {})
    for major in ("4", "6"):
        _record_module(site, "torchaudio", "2.5.1", f"torchaudio/lib/libtorio_ffmpeg{major}.so")
    found = verdict("packages.extensions", site)
    assert found["status"] == "ok", found
    assert found["details"]["alternatives_not_loaded"][0].endswith("libtorio_ffmpeg4.so")


def test_records_of_unexpected_shapes_are_unknown_never_a_crash(no_nvml: None) -> None:
    odd = {
        "xformers": {"version": "0.0.28", "path": "/x", "record": {"version": "2.5.1+cu121"}},
        "deepspeed": {"version": "0.15.0", "path": "/d", "record": {"torch_info": "2.3", "installed_ops": [1]}},
        "bitsandbytes": {"version": "0.43.0", "path": "/b", "record": {"libraries": "libbitsandbytes_cpu.so"}},
    }
    result = judge("packages.extension_builds", cuda_torch("12.4", stack_records=odd))
    assert result.status is Status.SKIP, result.summary
    assert "deepspeed 0.15.0: build record of an unexpected shape" in result.summary
    assert "bitsandbytes 0.43.0: build record of an unexpected shape" in result.summary
    assert "xformers 0.0.28: build record of an unexpected shape" in result.summary
    # A float version written by hand compares as the text it reads as: no "torch 2.3 (runtime torch 2.3)".
    record = {"installed_ops": {"fused_adam": 1}, "torch_info": {"version": 2.4, "cuda_version": 12.4}}
    info = cuda_torch("12.4", version="2.4.1+cu124", stack_records=_records(deepspeed=("0.15.0", record)))
    assert judge("packages.extension_builds", info).status is Status.OK


def test_an_xformers_with_compiled_modules_but_no_record_is_unknown(tmp_path) -> None:
    site = install(tmp_path, "xformers", "0.0.20", {"xformers/_C.so": b"\x7fELF"})
    found = verdict("packages.extension_builds", site)
    assert found["status"] == "skip" and "compiled modules but no cpp_lib.json" in found["summary"]


# -- the real CUDA build --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cuda_site() -> Path:
    info = probe_torch(dict(os.environ), python=CUDA_TORCH_PYTHON)
    assert info.status == "ok" and info.path, info.error
    return Path(info.path).parent


@needs_cuda_torch
def test_the_fatbin_of_a_real_cuda_torch_holds_its_arch_list(cuda_site: Path) -> None:
    info = probe_torch(dict(os.environ), python=CUDA_TORCH_PYTHON)
    # What the fatbin holds, however long its walk takes here: the check's own one-second bound is for a
    # warm page cache, and a loaded machine that has evicted this 1 GB library reads it from disk.
    targets = elf.fatbin_targets(cuda_site / "torch" / "lib" / "libtorch_cuda.so", max_seconds=300)
    assert targets and set(info.arch_list) <= set(targets), (targets, info.arch_list)


def _libraries(env_changes: dict[str, str]) -> tuple[TorchInfo, dict[str, str]]:
    env = dict(os.environ) | env_changes
    return probe_torch(env, python=CUDA_TORCH_PYTHON), env


@needs_cuda_torch
def test_the_cuda_torch_loads_each_library_once_from_its_wheels(no_nvml: None) -> None:
    info, env = _libraries({})
    names = {lib["name"] for lib in info.libraries or []}
    assert {"libcudart.so.13", "libcublas.so.13", "libnccl.so.2", "libcudnn.so.9"} <= names, names
    result = judge("torch.libraries", info, env=env)
    assert result.status is Status.OK and "from the nvidia-* wheels" in result.summary
    assert "cuDNN 9" in result.summary and "NCCL 2" in result.summary
    assert "cuDNN and the CUDA runtime of the version torch was built with" in result.summary


def test_a_loaded_cudnn_of_another_major_than_built_fails_and_an_older_one_warns(no_nvml: None) -> None:
    libraries = [{"name": "libcudnn.so.8", "path": "/site/nvidia/cudnn/lib/libcudnn.so.8", "wheel_copy": None}]
    info = cuda_torch("12.4", libraries=libraries, cudnn_version=8907, cudnn_compile_version=[9, 1, 0])
    result = judge("torch.libraries", info)
    assert result.status is Status.FAIL
    assert "cuDNN 8.9.7 is loaded, torch was built with 9.1.0" in result.summary
    info = cuda_torch("12.4", libraries=libraries, cudnn_version=90100, cudnn_compile_version=[9, 5, 1],
                      cuda_runtime_version="12.4")  # fmt: skip
    result = judge("torch.libraries", info)
    assert result.status is Status.WARN
    assert "cuDNN 9.1.0 is loaded, torch was built with 9.5.1 (older)" in result.summary


@needs_cuda_torch
def test_another_copy_of_the_cuda_runtime_preloaded_warns(no_nvml: None, cuda_site: Path, tmp_path) -> None:
    wheel = next((cuda_site / "nvidia").glob("*/lib/libcudart.so.*"))
    other = tmp_path / wheel.name
    other.write_bytes(wheel.read_bytes() + b"\0")  # another build of the same soname: a different file
    info, env = _libraries({"LD_PRELOAD": str(other)})
    result = judge("torch.libraries", info, env=env)
    assert result.status is Status.WARN, result.summary
    assert f"torch loaded {wheel.name} from {tmp_path} (LD_PRELOAD)" in result.summary
    assert result.fix is not None and result.fix.command == "unset LD_PRELOAD"
    # A byte-for-byte copy is the same library: nothing to fail.
    shutil.copy(wheel, other)
    info, env = _libraries({"LD_PRELOAD": str(other)})
    assert judge("torch.libraries", info, env=env).status is Status.OK


@needs_cuda_torch
@pytest.mark.skipif(not HAS_GCC, reason="needs gcc to build the stub library")
def test_two_cudnn_majors_in_one_process_warn(no_nvml: None, tmp_path) -> None:
    """A package imported before torch (here a sitecustomize) loads cuDNN 8's ops library; torch loads cuDNN 9."""
    (tmp_path / "c.c").write_text("int cudnnGetVersion(void) { return 8907; }\n")
    lib = tmp_path / "libcudnn_ops_infer.so.8"
    subprocess.run(["gcc", "-shared", "-fPIC", f"-Wl,-soname,{lib.name}", "-o", str(lib), str(tmp_path / "c.c")],
                   check=True, capture_output=True, timeout=60)  # fmt: skip
    (tmp_path / "sitecustomize.py").write_text(f"import ctypes\nctypes.CDLL({str(lib)!r})\n")
    info, env = _libraries({"PYTHONPATH": str(tmp_path)})
    result = judge("torch.libraries", info, env=env)
    assert result.status is Status.WARN and "two majors of cuDNN are loaded in one process" in result.summary
    assert f"cuDNN 8: {lib}" in result.summary
