"""The packages probe, against fake ``*.dist-info`` directories built in tmp_path and against this venv."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from envcheck.probes.packages import probe_packages, scan_library_path


def make_dist(site: Path, name: str, version: str, requires: tuple[str, ...] = (), files: dict | None = None) -> Path:
    """A minimal installed distribution: ``<name>-<version>.dist-info/METADATA`` and a RECORD listing any
    package files, which are written too."""
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    lines += [f"Requires-Dist: {r}" for r in requires]
    (info / "METADATA").write_text("\n".join(lines) + "\n")
    for rel, text in (files or {}).items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text(text)
    record = [*(files or {}), f"{info.name}/METADATA", f"{info.name}/RECORD"]
    (info / "RECORD").write_text("".join(f"{rel},,\n" for rel in record))
    return info


def probe(site: Path, env: dict[str, str] | None = None, *more: Path):
    return probe_packages(env or {}, paths=[str(site), *map(str, more)])


@pytest.mark.parametrize(
    "version, requires, files, flavour, source",
    [
        ("2.5.1+cu124", (), {}, "CUDA 12.4", "version label"),
        ("2.1.2+cu118", (), {}, "CUDA 11.8", "version label"),
        ("2.13.0+cu130", (), {}, "CUDA 13.0", "version label"),
        ("2.5.1+rocm6.2", (), {}, "ROCm 6.2", "version label"),
        ("2.13.0+cpu", (), {}, "CPU-only", "version label"),
        ("2.14.1", (), {"torch/version.py": "__version__ = '2.14.1+cu130'\ncuda: Optional[str] = '13.0'\nhip = None\n"},
         "CUDA 13.0", "torch/version.py"),
        ("2.5.1", (), {"torch/version.py": "cuda = None\nhip = '6.2.41133'\nrocm = '6.2.4'\n"}, "ROCm 6.2.4",
         "torch/version.py"),
        ("2.5.1", (), {"torch/version.py": "cuda: Optional[str] = None\nhip: Optional[str] = None\n"}, "CPU-only",
         "torch/version.py"),
        ("2.5.1", ('nvidia-cuda-runtime-cu12==12.4.127; platform_system == "Linux"',), {}, "CUDA 12.4",
         "requirements"),
        ("2.14.1", ('cuda-toolkit[cublas,cudart]==13.0.3; platform_system == "Linux"',), {}, "CUDA 13.0",
         "requirements"),
        ("2.14.1", ('nvidia-cudnn-cu13==9.24.0.43; platform_system == "Linux"',), {}, "CUDA 13.x", "requirements"),
        ("2.5.1", ("filelock",), {}, "unknown build", None),
    ],
    ids=["cu124", "cu118", "cu130", "rocm", "cpu", "version_py_cuda", "version_py_rocm", "version_py_cpu",
         "req_runtime_cu12", "req_cuda_toolkit", "req_cu13_suffix_only", "unknown"],
)  # fmt: skip
def test_torch_flavour_without_importing_torch(tmp_path, version, requires, files, flavour, source):
    make_dist(tmp_path, "torch", version, requires, files)
    build = probe(tmp_path).torch
    assert build is not None
    assert (build.version, build.flavour, build.source) == (version, flavour, source)


def test_cuda_torch_knows_its_own_library_directories(tmp_path):
    files = {"torch/lib/libtorch.so": "", "nvidia/cublas/lib/libcublas.so.12": "", "nvidia/cudnn/lib/libcudnn.so.9": ""}
    make_dist(tmp_path, "torch", "2.5.1+cu124", files=files)
    build = probe(tmp_path).torch
    dirs = ("torch/lib", "nvidia/cublas/lib", "nvidia/cudnn/lib")
    assert build.own_lib_dirs == [os.path.realpath(tmp_path / d) for d in dirs]
    assert build.own_libs == ["libcublas.so.12", "libcudnn.so.9"]


def test_conda_torch_counts_the_environments_lib_directory_as_its_own(tmp_path):
    prefix = tmp_path / "envs" / "train"
    (prefix / "conda-meta").mkdir(parents=True)
    (prefix / "lib").mkdir()
    site = prefix / "lib" / "python3.11" / "site-packages"
    make_dist(site, "torch", "2.5.1", files={"torch/version.py": "cuda = '12.4'\nhip = None\n"})
    assert os.path.realpath(prefix / "lib") in probe(site).torch.own_lib_dirs


def test_names_are_canonicalised(tmp_path):
    make_dist(tmp_path, "Typing_Extensions", "4.12.2")
    state = probe(tmp_path)
    assert "typing-extensions" in state.dists
    assert state.dists["typing-extensions"].display_name == "Typing_Extensions"


def test_first_copy_on_the_path_wins_and_the_rest_are_shadowed(tmp_path):
    venv, user = tmp_path / "venv", tmp_path / "user"
    make_dist(venv, "torch", "2.5.1+cu124")
    make_dist(user, "torch", "2.3.0+cpu")
    state = probe(venv, None, user)
    assert state.dists["torch"].version == "2.5.1+cu124"
    assert [d.version for d in state.shadowed["torch"]] == ["2.3.0+cpu"]


def test_the_same_directory_twice_on_the_path_is_no_duplicate(tmp_path):
    make_dist(tmp_path, "numpy", "2.1.0")
    state = probe(tmp_path, None, tmp_path)
    assert state.shadowed == {}


def test_metadata_without_a_version_is_reported_not_raised(tmp_path):
    info = make_dist(tmp_path, "broken", "1.0")
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\n")
    state = probe(tmp_path)
    assert "broken" not in state.dists
    assert state.unreadable == [str(info)]


def test_ld_library_path_entries_are_scanned_for_cuda_libraries(tmp_path):
    cuda = tmp_path / "cuda" / "lib64"
    cuda.mkdir(parents=True)
    for name in ("libcudart.so.12", "libcublasLt.so.12", "libcudnn_ops.so.9", "libfoo.so", "libcudart_static.a"):
        (cuda / name).write_text("")
    entries = scan_library_path(f"{cuda}:{tmp_path / 'missing'}")
    assert [(e.path, e.exists) for e in entries] == [(str(cuda), True), (str(tmp_path / "missing"), False)]
    assert entries[0].cuda_libs == ["libcublasLt.so.12", "libcudart.so.12", "libcudnn_ops.so.9"]
    assert probe(tmp_path, {"LD_LIBRARY_PATH": str(cuda)}).ld_library_path[0].cuda_libs == entries[0].cuda_libs


def test_no_ld_library_path_means_no_entries(tmp_path):
    assert probe(tmp_path).ld_library_path == []


def test_this_venv_has_a_cpu_only_torch():
    state = probe_packages(dict(os.environ))
    assert state.torch is not None
    assert state.torch.version.startswith("2.") and state.torch.flavour == "CPU-only"
    assert "numpy" in state.dists and "nvidia-ml-py" in state.dists


def test_probing_packages_never_imports_torch():
    code = "import os, sys; from envcheck.probes.packages import probe_packages; probe_packages(os.environ); " \
           "print('torch' in sys.modules)"  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"


def test_a_few_hundred_interlinked_distributions_check_clean(tmp_path):
    # How fast this is lives in benchmarks/packages_probe.py; timing is not asserted in tests.
    from envcheck.doctor.checks.packages import dependency_problems

    for i in range(300):
        requires = (f"pkg{(i + 1) % 300}>=1.0", f"pkg{(i + 7) % 300}; python_version >= '3'",
                    "colorama; sys_platform == 'win32'", "pytest; extra == 'test'")  # fmt: skip
        make_dist(tmp_path, f"pkg{i}", "1.0.0", requires)
    state = probe(tmp_path)
    problems = dependency_problems(state.dists)
    assert len(state.dists) == 300 and problems == []


def test_the_pynvml_module_is_traced_to_the_distribution_that_installed_it(tmp_path):
    make_dist(tmp_path, "nvidia-ml-py", "12.560.30", files={"pynvml.py": ""})
    module = probe(tmp_path).pynvml_module
    assert module is not None and module.path == str(tmp_path / "pynvml.py")
    assert (module.owner.name, module.owner.version) == ("nvidia-ml-py", "12.560.30")


def test_the_deprecated_pynvml_package_shadows_nvidia_ml_py_in_the_same_directory(tmp_path):
    # pynvml 11.x is a package, pynvml/; Python prefers a package to a module of the same name.
    make_dist(tmp_path, "nvidia-ml-py", "12.560.30", files={"pynvml.py": ""})
    make_dist(tmp_path, "pynvml", "11.5.0", files={"pynvml/__init__.py": "from .nvml import *\n", "pynvml/nvml.py": ""})
    module = probe(tmp_path).pynvml_module
    assert module.path == str(tmp_path / "pynvml" / "__init__.py")
    assert (module.owner.name, module.owner.version) == ("pynvml", "11.5.0")


def test_a_vendored_pynvml_first_on_the_path_belongs_to_no_distribution(tmp_path):
    vendored, site = tmp_path / "project", tmp_path / "site"
    (vendored / "pynvml").mkdir(parents=True)
    (vendored / "pynvml" / "__init__.py").write_text("")
    make_dist(site, "nvidia-ml-py", "12.560.30", files={"pynvml.py": ""})
    module = probe(vendored, None, site).pynvml_module
    assert module.path == str(vendored / "pynvml" / "__init__.py") and module.owner is None


def test_no_pynvml_module_at_all(tmp_path):
    assert probe(tmp_path).pynvml_module is None


def test_torch_without_metadata_is_found_where_python_would_import_it(tmp_path):
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text("")
    state = probe(tmp_path)
    assert state.torch is None and state.torch_module == str(tmp_path / "torch" / "__init__.py")


def test_a_bare_folder_called_torch_is_not_a_torch(tmp_path):
    (tmp_path / "torch").mkdir()  # importable as an empty namespace package, but not torch
    assert probe(tmp_path).torch_module is None
