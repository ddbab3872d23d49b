"""Lab specs: parsing and its one-line errors, snapshot -> doctor round trips, and a spec held against a
different (fake) machine failing on exactly the requirements that differ."""

from __future__ import annotations

import json
from dataclasses import replace
from importlib.metadata import version as installed_version
from pathlib import Path

import pytest
from click.testing import CliRunner

from envcheck.cli import main
from envcheck.probes import registry
from envcheck.probes.packages import probe_packages
from envcheck.spec.bench import bench_figures, judge_bench
from envcheck.spec.find import find_spec, load_spec
from envcheck.spec.parse import BenchMinimum, CommMinimum, SpecError, parse_spec_text

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "lab.toml"


def write(tmp_path: Path, text: str, name: str = "lab.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# -- parsing ---------------------------------------------------------------------------------------


def test_example_spec_parses_with_every_key():
    spec = load_spec(EXAMPLE)
    assert spec.get("python", "version") == "==3.11.*"
    assert spec.get("gpu", "min_memory") == 140 * 1024**3
    assert spec.get("host", "min_shm") == 16 * 1024**3
    assert spec.packages["numpy"] == ">=1.26,<3"
    assert spec.bench_fraction == 0.9
    assert BenchMinimum("matmul.bf16", 600.0, "TFLOP/s") in spec.bench
    assert CommMinimum("all_reduce", 400.0) in spec.comm


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[gpu\ncount = 3\n", "not valid TOML: Expected ']' at the end of a table declaration (at line 1, column 5)"),
        (
            '[gpu]\ncolour = "red"\n',
            "[gpu]: unknown key 'colour' (known: name, count, min_count, min_memory, min_compute_capability)",
        ),
        (
            "[gpus]\ncount = 3\n",
            "unknown section [gpus] (known: python, torch, driver, gpu, host, net, packages, bench, comm, burn)",
        ),
        ('[gpu]\ncount = "eight"\n', "[gpu] count must be a whole number from 1 to 65536, got 'eight'"),
        (
            '[gpu]\nmin_memory = "lots"\n',
            "[gpu] min_memory must be a size above 0 like '80GiB' or '24 GB', got 'lots'",
        ),
        (
            "[gpu]\nmin_compute_capability = 9\n",
            "[gpu] min_compute_capability must be a compute capability like '9.0', got 9",
        ),
        ("[gpu]\ncount = 8\nmin_count = 4\n", "[gpu] give either count or min_count, not both"),
        (
            '[torch]\nversion = "two"\n',
            "[torch] version is not a version specifier: 'two' (write e.g. '>=2.5,<2.7' or '==2.14.1')",
        ),
        ('[driver]\nmin_version = "new"\n', "[driver] min_version is not a version: 'new'"),
        ("[packages]\nnumpy = 2\n", "[packages] numpy must be a non-empty string, got 2"),
        ("gpu = 3\n", "'gpu' must be a table ([gpu]), got 3"),
        (
            '[bench]\n"matmul.bf16" = 600\n',
            "[bench] 'matmul.bf16': must be a table { min = <number>, unit = '<unit>' }, got 600",
        ),
        ("[bench]\nfraction = 1.5\n", "[bench] fraction must be a number in (0, 1], got 1.5"),
    ],  # fmt: skip
)
def test_malformed_specs_are_one_line_and_exit_2(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert str(caught.value) == f"{path}: {message}"
    result = CliRunner().invoke(main, ["doctor", "--spec", str(path)])
    assert result.exit_code == 2
    assert result.stderr == f"envcheck: {path}: {message}\n"
    assert result.stdout == ""  # nothing else runs


def test_unreadable_spec_is_exit_2(tmp_path):
    result = CliRunner().invoke(main, ["doctor", "--spec", str(tmp_path / "missing.toml")])
    assert result.exit_code == 2
    assert result.stderr == f"envcheck: {tmp_path / 'missing.toml'}: does not exist\n"


def test_spec_found_by_env_then_cwd_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    none = tmp_path / "no-system-spec.toml"
    assert find_spec(None, {}, tmp_path, system=none) is None
    write(tmp_path, '[tool.envcheck.gpu]\ncount = 2\n[project]\nname = "x"\n', "pyproject.toml")
    assert find_spec(None, {}, tmp_path, system=none).get("gpu", "count") == 2
    write(tmp_path, "[gpu]\ncount = 3\n", "envcheck.toml")
    assert find_spec(None, {}, tmp_path, system=none).get("gpu", "count") == 3
    other = write(tmp_path, "[gpu]\ncount = 4\n", "other.toml")
    assert find_spec(None, {"ENVCHECK_SPEC": str(other)}, tmp_path, system=none).get("gpu", "count") == 4
    assert find_spec(str(other), {"ENVCHECK_SPEC": "/nope"}, tmp_path, system=none).get("gpu", "count") == 4


def test_pyproject_errors_name_the_table(tmp_path):
    path = write(tmp_path, '[tool.envcheck.gpu]\ncount = "x"\n', "pyproject.toml")
    with pytest.raises(SpecError, match=r"\[tool.envcheck.gpu\] count must be a whole number"):
        load_spec(path)


# -- snapshot and doctor ---------------------------------------------------------------------------


def snapshot(tmp_path: Path, *args: str) -> Path:
    out = tmp_path / "lab.toml"
    result = CliRunner().invoke(main, ["snapshot", "-o", str(out), *args])
    assert result.exit_code == 0, result.output
    return out


def spec_results(path: Path) -> dict[str, dict]:
    result = CliRunner().invoke(main, ["doctor", "spec", "--spec", str(path), "--json"])
    doc = json.loads(result.stdout)
    return {c["id"]: c for c in doc["checks"]}, result.exit_code


def test_snapshot_round_trips_and_passes_on_itself(tmp_path, nvml):
    nvml("healthy_multi_gpu")
    path = snapshot(tmp_path, "--package", "click")
    spec = load_spec(path)  # what snapshot writes, the parser reads
    assert spec.get("gpu", "name") == "NVIDIA H100 80GB HBM3"
    assert spec.get("gpu", "count") == 4
    assert spec.get("gpu", "min_memory") == 80 * 1024**3
    assert spec.get("gpu", "min_compute_capability") == "9.0"
    assert spec.get("driver", "min_version") == "550.54.15"
    assert spec.get("torch", "cuda") == "cpu"  # the CPU build this test venv has
    assert spec.packages["click"] == f"=={installed_version('click')}"
    assert "# Written by `envcheck snapshot`" in path.read_text()
    checks, code = spec_results(path)
    assert code == 0
    assert {c["status"] for c in checks.values()} == {"ok"}
    assert {"spec.python", "spec.driver", "spec.gpu_count", "spec.gpu_name", "spec.package.click"} <= set(checks)


def test_snapshot_refuses_to_overwrite(tmp_path, nvml):
    nvml("no_library")
    path = snapshot(tmp_path)
    result = CliRunner().invoke(main, ["snapshot", "-o", str(path)])
    assert result.exit_code == 2 and "exists; use --force" in result.stderr


def test_spec_against_a_different_machine_fails_exactly_where_it_differs(tmp_path, nvml, monkeypatch):
    lib = nvml("healthy_multi_gpu")
    path = snapshot(tmp_path)
    # Another machine: two GPUs fewer, another H100 model (same memory and capability), an older driver,
    # and a torch outside the spec's range (same CPU flavour), every other package as here.
    lib.gpus = lib.gpus[:2]
    lib._handles = lib._handles[:2]
    for gpu in lib.gpus:
        gpu.name = "NVIDIA H100 PCIe"
    lib.driver_version = "535.129.03"
    site = tmp_path / "site"
    site.mkdir()
    for name, ver in (("torch", "2.5.1+cpu"), ("numpy", installed_version("numpy"))):
        info = site / f"{name}-{ver}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {ver}\n")
    packages = registry.PROBES["packages"]
    monkeypatch.setitem(
        registry.PROBES, "packages", replace(packages, fn=lambda env: probe_packages(env, paths=[str(site)]))
    )
    checks, code = spec_results(path)
    failed = {i for i, c in checks.items() if c["status"] == "fail"}
    assert failed == {"spec.gpu_count", "spec.gpu_name", "spec.driver", "spec.torch_version"}
    assert code == 1
    assert checks["spec.gpu_count"]["summary"] == "expected 4 GPUs, found 2 GPUs"
    assert checks["spec.driver"]["summary"] == "expected NVIDIA driver ≥ 550.54.15, found 535.129.03"
    assert checks["spec.gpu_name"]["summary"].startswith(
        "expected GPUs matching 'NVIDIA H100 80GB HBM3'; GPU 0 is NVIDIA H100 PCIe"
    )
    assert checks["spec.torch_version"]["summary"].startswith("expected torch ==2.13.0, found 2.5.1+cpu")
    assert checks["spec.torch_version"]["fix"]["command"] == 'pip install "torch==2.13.0"'
    assert str(path) in checks["spec.driver"]["fix"]["text"]


def test_spec_on_a_machine_without_driver(tmp_path, nvml):
    path = write(tmp_path, '[gpu]\nmin_count = 1\nmin_memory = "24GB"\n[driver]\nmin_version = "550"\n')
    nvml("driver_library_mismatch")
    checks, code = spec_results(path)
    assert code == 1
    assert (
        checks["spec.gpu_count"]["summary"] == "expected at least 1 GPUs, found no GPUs (NVML: driver library mismatch)"
    )
    assert checks["spec.driver"]["summary"].startswith("expected NVIDIA driver ≥ 550, found none")


# -- bench figures ---------------------------------------------------------------------------------


def result(bench_id, device, value, unit="TFLOP/s", verified=True, status="ok"):
    return {"id": bench_id, "device": device, "value": value, "unit": unit, "verified": verified, "status": status}


def test_bench_figures_take_each_benchmarks_best_case_on_the_slowest_device():
    doc = {"results": [
        result("matmul.bf16", "cuda:0", 700.0), result("matmul.bf16", "cuda:0", 650.0),
        result("matmul.bf16", "cuda:1", 640.0), result("matmul.bf16", "cuda:1", 900.0, verified=False),
        result("memory.d2d", "cuda:0", 3000.0, "GB/s"), result("memory.d2d", "cuda:1", None, "GB/s", status="skipped"),
    ]}  # fmt: skip
    figures = {f.id: (f.value, f.unit) for f in bench_figures(doc)}
    assert figures == {"matmul.bf16": (640.0, "TFLOP/s"), "memory.d2d": (3000.0, "GB/s")}


def test_bench_spec_judges_every_device(tmp_path):
    spec = parse_spec_text(
        '[bench]\n"matmul.bf16" = { min = 600, unit = "TFLOP/s" }\n"memory.d2d" = { min = 2500, unit = "GB/s" }\n'
        '"conv.fwd" = { min = 100, unit = "TFLOP/s" }\n',
        "lab.toml",
    )
    verdicts = judge_bench(
        spec,
        [
            result("matmul.bf16", "cuda:0", 700.0),
            result("matmul.bf16", "cuda:1", 512.0),
            result("memory.d2d", "cpu", 20.0, "GB/s"),
        ],  # fmt: skip
    )
    seen = {(v.id, v.device): (v.passed, v.words) for v in verdicts}
    assert seen[("matmul.bf16", "cuda:0")] == (True, "700 TFLOP/s ≥ spec minimum 600 TFLOP/s")
    assert seen[("matmul.bf16", "cuda:1")] == (False, "512 TFLOP/s < spec minimum 600 TFLOP/s")
    assert seen[("memory.d2d", "cpu")] == (False, "20 GB/s < spec minimum 2500 GB/s")
    assert seen[("conv.fwd", None)] == (None, "not measured in this run")


def test_snapshot_with_bench_figures_round_trips_and_bench_spec_passes_on_itself(tmp_path, nvml, monkeypatch):
    """A real (quick, one-benchmark) CPU bench behind `snapshot --with-bench`, then `bench --spec` on the
    same machine. The fraction is 0.01: on a shared 2-core CI machine two short CPU runs a moment apart
    were seen to differ by 8x, and this test is about the pipeline, not about the machine's speed."""
    import envcheck.spec.cli as spec_cli

    nvml("no_library")
    real = spec_cli.run_bench_for_snapshot

    def calm(device: str) -> dict:
        # on a busy machine the bench marks its figure contended, and the snapshot rightly leaves it out
        # (test_a_contended_figure_is_never_a_minimum): this test is about the pipeline
        doc = real(device, only="matmul.fp32", quick=True)
        for r in doc["results"]:
            r["contended"] = False
        return doc

    monkeypatch.setattr(spec_cli, "run_bench_for_snapshot", calm)
    path = snapshot(tmp_path, "--with-bench", "--device", "cpu", "--fraction", "0.01")
    spec = load_spec(path)
    assert spec.bench_fraction == 0.01
    [minimum] = spec.bench
    assert (minimum.id, minimum.unit) == ("matmul.fp32", "GFLOP/s") and minimum.value > 0
    result = CliRunner().invoke(
        main, ["bench", "--device", "cpu", "--only", "matmul.fp32", "--quick", "--spec", str(path), "--json"]
    )
    doc = json.loads(result.stdout)
    assert result.exit_code == 0, doc.get("spec")
    assert [v["passed"] for v in doc["spec"]["verdicts"]] == [True]


def test_a_contended_figure_is_never_a_minimum(tmp_path, nvml, monkeypatch, capsys):
    """A figure the bench took while other work held the CPUs (one conv.fwd at 6.3 against 258.9 calm) is
    left out of the snapshot's minimums, with a line saying so; the calm figure is kept."""
    import envcheck.spec.cli as spec_cli

    nvml("no_library")
    results = [
        {"id": "matmul.fp32", "case": "fp32", "device": "cpu", "value": 150.0, "unit": "GFLOP/s", "status": "ok",
         "verified": True, "contended": False},
        {"id": "conv.fwd", "case": "fp32", "device": "cpu", "value": 6.3, "unit": "GFLOP/s", "status": "ok",
         "verified": True, "contended": True},
    ]  # fmt: skip
    monkeypatch.setattr(spec_cli, "run_bench_for_snapshot", lambda device: {"results": results})
    runner = CliRunner()
    out = tmp_path / "lab.toml"
    result = runner.invoke(main, ["snapshot", "--with-bench", "--device", "cpu", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert [m.id for m in load_spec(out).bench] == ["matmul.fp32"]
    assert "not recorded, measured while other work held the CPUs: conv.fwd" in result.stderr


def test_every_gpu_must_meet_memory_and_capability(tmp_path, nvml):
    lib = nvml("healthy_multi_gpu")
    lib.gpus[2].memory_total = 40 * 1024**3
    path = write(tmp_path, '[gpu]\nmin_memory = "80GiB"\nmin_compute_capability = "10.0"\nname = "nvidia h100*"\n')
    checks, code = spec_results(path)
    assert code == 1
    assert checks["spec.gpu_memory"]["summary"] == "expected GPUs with ≥ 80.0 GiB; GPU 2 has 40.0 GiB"
    assert checks["spec.gpu_compute_capability"]["summary"] == (
        "expected GPUs of compute capability ≥ 10.0; GPU 0 is 9.0, GPU 1 is 9.0, GPU 2 is 9.0, GPU 3 is 9.0"
    )
    assert checks["spec.gpu_name"]["status"] == "ok"  # patterns are case-insensitive
    assert checks["spec.gpu_name"]["summary"] == "all 4 GPUs: GPUs matching 'nvidia h100*'"
