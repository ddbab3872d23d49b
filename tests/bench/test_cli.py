"""envcheck bench through click's runner: what a user sees, the JSON contract, and the exit codes. (The
isolation from a broken torch, Ctrl-C and the output channels run the installed command: see
test_isolation.py and test_interrupt.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from envcheck.bench import case
from envcheck.bench.harness import Budget

WORKER_FAULTS = Path(__file__).resolve().parent / "worker_faults"
FAST = {
    ("cpu", True): Budget(measure_s=0.02, warmup_s=0.0, min_samples=3, min_warmup=1),
    ("cpu", False): Budget(measure_s=0.02, warmup_s=0.0, min_samples=3, min_warmup=1),
}


@pytest.fixture
def fast_budgets(monkeypatch):
    """Short cases: the budgets travel to the worker in its job."""
    monkeypatch.setattr(case, "BUDGETS", FAST)


@pytest.fixture
def worker_faults(monkeypatch):
    """``worker_faults("cpu=nan")``: the bench's workers start with that fault (tests/bench/worker_faults)."""

    def use(faults: str) -> None:
        path = os.pathsep.join(filter(None, [str(WORKER_FAULTS), os.environ.get("PYTHONPATH")]))
        monkeypatch.setenv("PYTHONPATH", path)
        monkeypatch.setenv("ENVCHECK_TEST_WORKER_FAULTS", faults)

    return use


def test_serial_runs_the_cpu_in_its_worker_too(invoke, fast_budgets):
    result = invoke("--device", "cpu", "--quick", "--only", "memory.d2d", "--serial", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["options"]["serial"] is True and [r["status"] for r in doc["results"]] == ["ok"]
    assert [w["device"] for w in doc["workers"]] == ["cpu"] and doc["workers"][0]["error"] is None
    assert doc["devices"][0]["threads"] == torch.get_num_threads()  # described by the worker


def test_importing_the_cli_does_not_import_torch():
    code = "import sys, envcheck.cli; print('torch' in sys.modules, 'rich' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_list_shows_every_id_with_what_it_measures(invoke):
    result = invoke("--list")
    assert result.exit_code == 0
    for bench_id in ("matmul.bf16", "matmul.sweep", "conv.fwd_bwd", "attention.fwd", "train.cnn", "memory.d2d"):
        assert bench_id in result.stdout
    listed = json.loads(invoke("--list", "--json").stdout)
    assert {"id": "memory.d2d", "title": "device memory copy"}.items() <= listed[-5].items()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--device", "tpu"], 2, "unknown device 'tpu'"),
        (["--device", "cuda:x"], 2, "unknown device 'cuda:x'"),
        (["--only", "matmul.int4"], 2, "unknown benchmark 'matmul.int4'"),
        (["--dtype", "fp4"], 2, "unknown dtype 'fp4'"),
        (["--threshold", "15"], 2, "--threshold must be between 0 and 1"),
    ],
)
def test_usage_errors_are_one_line_on_stderr(invoke, args, code, message):
    result = invoke(*args)
    assert result.exit_code == code
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:0,1"])
def test_asking_for_cuda_without_one_names_what_is_available(invoke, device):
    result = invoke("--device", device)
    assert result.exit_code == 1
    assert result.stderr.strip().endswith("available: cpu")
    assert result.stderr.count("\n") == 1


def test_quick_json_run_meets_the_contract(invoke, fast_budgets):
    result = invoke(
        "--device", "cpu", "--quick", "--json", "--only", "matmul.fp32,matmul.fp8,matmul.sweep,memory.d2d,train.cnn"
    )
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["schema"] == "envcheck.bench/1"
    # the envelope every envcheck report starts with
    assert {"envcheck_version", "generated_at", "duration_s", "host"} <= doc.keys()
    assert doc["host"]["hostname"] and doc["host"]["python"] and "gpus" not in doc  # no GPU benchmarked
    assert doc["duration_s"] >= doc["wall_s"] > 0
    assert doc["devices"][0]["name"] == "cpu"
    assert {"uuid", "pci_bus_id", "free_bytes"} <= doc["devices"][0].keys()
    assert doc["torch"]["version"] == torch.__version__ and doc["torch"]["cuda"] == torch.version.cuda
    first = doc["results"][0]
    assert first["benchmark"] == "matmul" and first["id"] == "matmul.fp32" and first["device"] == "cpu"
    assert first["case"] == "fp32 512x512x512" and first["unit"] == "GFLOP/s"
    assert first["verified"] is True and first["peak_fraction"] is None
    assert {"median_s", "iqr_s", "samples", "samples_s"} <= first["stats"].keys()
    assert len(first["stats"]["samples_s"]) == first["stats"]["samples"]
    assert {r["id"] for r in doc["results"]} >= {"matmul.sweep", "memory.d2d", "train.cnn"}
    skipped = next(r for r in doc["results"] if r["id"] == "matmul.fp8")
    assert skipped["status"] == "skip" and skipped["value"] is None and skipped["reason"]
    assert first["status"] == "ok" and first["contended"] in (True, False)
    assert doc["summary"]["failed"] == 0 and doc["exit_code"] == 0 and doc["interrupted"] is False
    assert doc["preflight"][0]["id"] == "bench.cpu_contention" and doc["preflight"][0]["status"] in ("ok", "warn")
    # progress went to stderr as plain lines (not a terminal)
    assert "cpu [1/6] matmul.fp32 fp32 ..." in result.stderr and "cpu ok: matmul.fp32 fp32 512x512x512" in result.stderr
    (worker,) = doc["workers"]  # one device, one worker process
    assert (worker["device"], worker["returncode"], worker["error"]) == ("cpu", 0, None) and worker["pid"] > 0
    assert doc["options"]["serial"] is False


def test_human_report_is_a_table_with_a_summary(invoke, fast_budgets):
    result = invoke("--device", "cpu", "--quick", "--only", "matmul.fp32,matmul.tf32")
    assert result.exit_code == 0
    assert "matmul.fp32" in result.stdout and "GFLOP/s" in result.stdout
    assert "skipped: tf32 is a GPU tensor-core format" in result.stdout
    assert "1 verified, 1 skipped" in result.stdout


def test_a_wrong_kernel_fails_loudly_with_exit_1(invoke, fast_budgets, worker_faults):
    worker_faults("cpu=nan")  # the worker's torch.matmul leaves a NaN in its output
    result = invoke("--device", "cpu", "--quick", "--only", "matmul.fp32")
    assert result.exit_code == 1
    assert "WRONG RESULT" in result.stdout and "non-finite" in result.stdout


def test_save_then_compare_flags_a_regression(invoke, fast_budgets, tmp_path):
    saved = tmp_path / "base.json"
    first = invoke("--device", "cpu", "--quick", "--only", "matmul.fp32", "--save", str(saved))
    assert first.exit_code == 0
    doc = json.loads(saved.read_text())
    # Pretend the baseline machine was 100 times as fast (far beyond any run-to-run noise on a busy box).
    doc["results"][0]["value"] *= 100
    saved.write_text(json.dumps(doc))
    result = invoke("--device", "cpu", "--quick", "--only", "matmul.fp32", "--compare", str(saved), "--json")
    assert result.exit_code == 1
    comparison = json.loads(result.stdout)["comparison"]
    assert comparison["deltas"][0]["regressed"] is True and comparison["threshold"] == 0.10


def test_compare_within_threshold_passes(invoke, fast_budgets, tmp_path):
    saved = tmp_path / "base.json"
    invoke("--device", "cpu", "--quick", "--only", "matmul.fp32", "--save", str(saved))
    doc = json.loads(saved.read_text())
    doc["results"][0]["value"] *= 0.01  # the baseline was far slower
    saved.write_text(json.dumps(doc))
    result = invoke("--device", "cpu", "--quick", "--only", "matmul.fp32", "--compare", str(saved))
    assert result.exit_code == 0 and "compared with" in result.stdout


@pytest.mark.parametrize("content", ["not json", json.dumps({"schema": "other/1", "results": []})])
def test_a_malformed_baseline_is_exit_2_before_anything_runs(invoke, tmp_path, content):
    path = tmp_path / "b.json"
    path.write_text(content)
    result = invoke("--device", "cpu", "--quick", "--compare", str(path))
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "[1/" not in result.stderr  # nothing was benchmarked


def test_a_baseline_from_other_devices_is_a_mismatch(invoke, tmp_path):
    path = tmp_path / "b.json"
    path.write_text(
        json.dumps(
            {
                "schema": "envcheck.bench/1",
                "results": [
                    {
                        "id": "matmul.fp32",
                        "case": "fp32 8192x8192x8192",
                        "device": "cuda:0",
                        "value": 50.0,
                        "unit": "TFLOP/s",
                    }
                ],
            }
        )
    )
    result = invoke("--device", "cpu", "--quick", "--compare", str(path))
    assert result.exit_code == 2
    assert "no figure for the selected benchmarks on cpu" in result.stderr


def test_full_quick_cpu_pass_end_to_end(invoke):
    """The real --quick pass with its real budgets, as CI would run it."""
    result = invoke("--device", "cpu", "--quick", "--json")
    assert result.exit_code == 0, result.stdout[-2000:]
    doc = json.loads(result.stdout)
    ran = [r for r in doc["results"] if r["status"] != "skip"]
    assert ran and all(r["verified"] for r in ran)
    assert {r["benchmark"] for r in ran} == {"matmul", "conv", "attention", "train", "compile", "memory"}
    # How long the pass takes is measured in benchmarks/RESULTS-bench.md, not asserted here.


def write_spec(tmp_path, minimum: float) -> str:
    path = tmp_path / "lab.toml"
    path.write_text(f'[bench]\n"matmul.fp32" = {{ min = {minimum}, unit = "GFLOP/s" }}\n')
    return str(path)


def test_spec_minimum_not_reached_fails(invoke, fast_budgets, tmp_path):
    result = invoke("--device", "cpu", "--quick", "--only", "matmul.fp32", "--spec", write_spec(tmp_path, 1e9))
    assert result.exit_code == 1
    assert "BELOW SPEC cpu matmul.fp32:" in result.stdout and "< spec minimum 1e+09 GFLOP/s" in result.stdout
    assert ", 1 below spec on 1 device(s)" in result.stdout  # the summary names why it is red


def test_spec_minimum_reached_passes_and_is_in_the_json(invoke, fast_budgets, tmp_path):
    result = invoke("--device", "cpu", "--quick", "--only", "matmul.fp32", "--json", "--spec", write_spec(tmp_path, 1))
    assert result.exit_code == 0
    (verdict,) = json.loads(result.stdout)["spec"]["verdicts"]
    assert verdict["id"] == "matmul.fp32" and verdict["device"] == "cpu" and verdict["passed"] is True


def test_a_broken_spec_is_exit_2_before_anything_runs(invoke, tmp_path):
    path = tmp_path / "lab.toml"
    path.write_text('[bench]\n"matmul.fp32" = 600\n')
    result = invoke("--device", "cpu", "--spec", str(path))
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and "must be a table" in result.stderr
    assert "[1/" not in result.stderr


def test_output_file_gets_markdown_while_the_terminal_gets_the_table(invoke, fast_budgets, tmp_path):
    report = tmp_path / "bench.md"
    result = invoke("--device", "cpu", "--quick", "--only", "matmul.fp32", "--output", str(report))
    assert result.exit_code == 0
    assert "1 verified" in result.stdout and "envcheck bench" in result.stdout  # the text report
    text = report.read_text()
    assert text.startswith("## envcheck bench: verified") and "| `matmul.fp32` |" in text
    assert not list(tmp_path.glob(".bench.md.*"))  # the temporary file of the atomic write is gone


def test_save_writes_strict_json_atomically_and_a_failed_save_is_exit_74(invoke, fast_budgets, tmp_path):
    saved = tmp_path / "runs" / "base.json"
    saved.parent.mkdir()
    result = invoke("--device", "cpu", "--quick", "--only", "matmul.fp32", "--save", str(saved))
    assert result.exit_code == 0
    doc = json.loads(saved.read_text(), parse_constant=lambda name: pytest.fail(f"{name} in strict JSON"))
    assert doc["schema"] == "envcheck.bench/1" and doc["results"][0]["id"] == "matmul.fp32"
    assert [p.name for p in saved.parent.iterdir()] == ["base.json"]
    missing = tmp_path / "no such dir" / "base.json"
    result = invoke("--device", "cpu", "--quick", "--only", "matmul.fp32", "--save", str(missing))
    assert result.exit_code == 74
    assert result.stderr.splitlines()[-1].startswith(f"envcheck: cannot write --save file {missing}: ")
    assert "1 verified" in result.stdout  # the report itself still reached the terminal


def test_json_and_another_format_disagree_is_a_usage_error(invoke):
    result = invoke("--device", "cpu", "--json", "--format", "markdown")
    assert result.exit_code == 2 and "disagree" in result.stderr


def test_a_secret_in_a_reason_is_redacted_in_every_output(invoke, fast_budgets, worker_faults, monkeypatch, tmp_path):
    token = "hf_" + "a1B2c3D4e5" * 3 + "f6G7"  # a Hugging Face token: hf_ + 34 characters
    monkeypatch.setenv("HF_TOKEN", token)
    worker_faults("cpu=leak")  # the worker's torch.matmul raises an error quoting $HF_TOKEN
    saved = tmp_path / "run.json"
    result = invoke("--device", "cpu", "--quick", "--only", "matmul.fp32", "--json", "--save", str(saved))
    assert result.exit_code == 1  # the case crashed
    doc = json.loads(result.stdout)
    assert doc["results"][0]["status"] == "crash" and "<redacted>" in doc["results"][0]["reason"]
    for text in (result.stdout, result.stderr, saved.read_text()):
        assert token not in text
