"""The Markdown report is what a user pastes into a GitHub issue: it must survive the table syntax
(pipes, newlines in values) and carry the versions a bug report needs."""

from __future__ import annotations

from io import StringIO
from typing import Any

from envcheck.render import RenderOptions, make_console, render


def markdown(doc: dict[str, Any]) -> str:
    buffer = StringIO()
    render(doc, "markdown", make_console(buffer, for_file=True), RenderOptions())
    return buffer.getvalue()


def doctor_doc(**extra: Any) -> dict[str, Any]:
    doc = {
        "schema": "envcheck.doctor/1",
        "envcheck_version": "9.9.9",
        "generated_at": "2026-12-01T10:00:00+00:00",
        "duration_s": 2.25,
        "host": {"hostname": "gpu-17", "os": "Linux", "kernel": "6.8.0", "python": "3.11.7", "container": "docker"},
        "summary": {"verdict": "not_ready", "text": "not ready: 1 problem"},
        "areas": {"gpu": "GPUs", "torch": "torch and CUDA"},
        "checks": [
            {
                "id": "gpu.ecc",
                "title": "ECC memory errors",
                "status": "fail",
                "summary": "GPU 1: 3 | uncorrected\nsince boot",
                "fix": {"text": "Drain the node.", "command": "nvidia-smi -q -d ECC"},
            },
            {"id": "torch.arch", "title": "arch", "status": "ok", "summary": "sm_90 in the list", "fix": None},
        ],
        "driver": {"version": "550.54.15", "cuda_version": "12.4"},
        "gpus": [{"index": 0, "name": "NVIDIA H100 80GB HBM3", "compute_capability": [9, 0], "pci_bus_id": "0:18"}],
        "torch": {"version": "2.9.1+cu128", "cuda": "12.8", "cudnn_version": 91002, "nccl_version": [2, 27, 3]},
        "packages": {"numpy": "2.1.0", "nvidia-cudnn-cu12": "9.10.2.21", "triton": "3.4.0"},
    }
    doc.update(extra)
    return doc


def test_a_heading_and_a_table_per_area_with_cells_that_cannot_break_the_table():
    text = markdown(doctor_doc())
    lines = text.splitlines()
    assert lines[0] == "## envcheck doctor: not ready: 1 problem"
    assert "### GPUs" in lines and "### torch and CUDA" in lines
    assert "| ❌ fail | ECC memory errors | GPU 1: 3 \\| uncorrected<br>since boot | `gpu.ecc` |" in lines
    assert "| ✅ ok | arch | sm_90 in the list | `torch.arch` |" in lines


def test_the_gpu_inventory_and_fabric_sections_are_there_as_in_the_html():
    """The Markdown report used to lack the GPU inventory and the fabric matrix the HTML page has."""
    gpus = [
        {"index": i, "name": "NVIDIA H100 | 80GB", "pci_bus_id": f"0:1{i}", "memory_used_bytes": 2**30,
         "memory_total_bytes": 80 * 2**30, "temperature_c": 34 + i, "power_draw_w": 70.0, "power_limit_w": 700.0,
         "utilization_gpu_pct": 0, "lost": i == 1}
        for i in range(2)
    ]  # fmt: skip
    fabric = {"gpus": [0, 1], "topology": [["X", "NV18"], ["NV18", "X"]]}
    lines = markdown(doctor_doc(gpus=gpus, fabric=fabric)).splitlines()
    at = lines.index("### GPU inventory")
    assert lines[at + 2] == "NVIDIA driver 550.54.15, CUDA ≤ 12.4, NVML -"
    assert "| 0 | NVIDIA H100 \\| 80GB | `0:10` | 1.0 GiB of 80.0 GiB | 34 | 70 / 700 | 0 |" in lines
    assert "| 1 | NVIDIA H100 \\| 80GB (lost) | `0:11` | 1.0 GiB of 80.0 GiB | 35 | 70 / 700 | 0 |" in lines
    at = lines.index("### GPU fabric")
    matrix = ["| | GPU 0 | GPU 1 |", "|---|---|---|", "| GPU 0 | X | NV18 |", "| GPU 1 | NV18 | X |"]
    assert lines[at + 2 : at + 6] == matrix


def test_fixes_are_listed_with_their_commands():
    text = markdown(doctor_doc())
    assert "- **`gpu.ecc`** (fail): Drain the node." in text
    assert "  nvidia-smi -q -d ECC" in text


def test_the_versions_block_holds_what_a_bug_report_needs():
    text = markdown(doctor_doc())
    block = text.split("### Versions", 1)[1]
    for line in (
        "envcheck: 9.9.9",
        "container: docker",
        "NVIDIA driver: 550.54.15",
        "driver CUDA: 12.4",
        "GPU 0: NVIDIA H100 80GB HBM3 (cc 9.0) 0:18",
        "torch: 2.9.1+cu128",
        "torch CUDA build: 12.8",
        "cuDNN: 91002",
        "NCCL: 2.27.3",
        "nvidia-cudnn-cu12: 9.10.2.21",
        "triton: 3.4.0",
    ):
        assert line in block, line


def test_the_bench_report_has_devices_with_identity_the_preflight_and_marked_figures():
    doc = {
        "schema": "envcheck.bench/1",
        "envcheck_version": "9.9.9",
        "generated_at": "2026-12-01T10:00:00+00:00",
        "wall_s": 61.0,
        "exit_code": 1,
        "host": {"hostname": "gpu-17"},
        "devices": [{"name": "cuda:0", "model": "NVIDIA H100", "uuid": "GPU-abc", "pci_bus_id": "00000000:18:00.0"}],
        "preflight": [{"id": "torch.arch", "title": "arch", "status": "ok", "summary": "sm_90 covered"}],
        "results": [
            {
                "id": "matmul.bf16",
                "label": "bf16",
                "device": "cuda:0",
                "status": "ok",
                "value": 712.4,
                "unit": "TFLOP/s",
                "peak_fraction": 0.72,
                "contended": True,
            },
            {
                "id": "matmul.fp8",
                "label": "fp8",
                "device": "cuda:0",
                "status": "fail",
                "value": 1000.0,
                "unit": "TFLOP/s",
                "reason": "wrong result: error 0.5",
            },
        ],
        "comparison": {"baseline": "base.json", "note": "no figure in common"},
        "summary": {"verified": 1, "failed": 1},
    }
    text = markdown(doc)
    assert text.startswith("## envcheck bench: problems found")
    assert "| `cuda:0` | NVIDIA H100 | GPU-abc | 00000000:18:00.0 |" in text
    assert "| ✅ ok | arch | sm_90 covered | `torch.arch` |" in text
    assert "| `matmul.bf16` | bf16 | 712.4 TFLOP/s (72% of peak) (contended) |" in text
    assert "| `matmul.fp8` | fp8 | **fail** 1000 TFLOP/s |" in text
    assert "- `matmul.fp8` on `cuda:0`: wrong result: error 0.5" in text
    assert "Comparison with `base.json`: no figure in common" in text


def test_the_fix_of_a_warning_and_of_a_crash_are_listed_and_those_of_a_pass_or_a_skip_are_not():
    checks = [
        {"id": "gpu.pcie", "title": "PCIe", "status": "warn", "summary": "x8 of x16",
         "fix": {"text": "Reseat the card | riser.", "command": None}},
        {"id": "gpu.nvlink", "title": "NVLink", "status": "crash", "summary": "KeyError",
         "fix": {"text": "Report the bug.", "command": "envcheck doctor -v"}},
        {"id": "host.cpu", "title": "CPU", "status": "ok", "summary": "64 cores",
         "fix": {"text": "Nothing to do here.", "command": None}},
        {"id": "host.shm", "title": "shm", "status": "skip", "summary": "no /dev/shm",
         "fix": {"text": "Skipped, no fix needed.", "command": None}},
    ]  # fmt: skip
    lines = markdown(doctor_doc(checks=checks)).splitlines()
    warned = lines.index("- **`gpu.pcie`** (warn): Reseat the card \\| riser.")
    assert lines[warned + 1] == "- **`gpu.nvlink`** (crash): Report the bug."  # no command: no code block
    assert lines[warned + 2 : warned + 5] == ["  ```sh", "  envcheck doctor -v", "  ```"]
    text = "\n".join(lines)
    assert "Nothing to do here." not in text and "Skipped, no fix needed." not in text
