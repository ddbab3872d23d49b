"""``envcheck comm`` on real GPUs: NCCL, CUDA-event timing, each rank's GPU identity, every collective
verified. Skipped without CUDA (benchmarks/gpu_check.sh runs them with `pytest -m gpu`)."""

from __future__ import annotations

import json

import pytest
import torch

from envcheck.comm.plan import GPU_DEFAULTS, calls_per_run
from tests.comm.test_comm import run

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_every_visible_gpu_is_a_rank_and_every_collective_verifies_over_nccl():
    proc = run("comm", "--device", "cuda", "--max-size", "64MiB", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    n = torch.cuda.device_count()
    assert doc["world"]["size"] == n and doc["world"]["backend"] == "nccl"
    assert [r["device"] for r in doc["world"]["ranks"]] == [f"cuda:{i}" for i in range(n)]
    assert all(r["gpu_uuid"] and r["gpu_uuid"].startswith("GPU-") for r in doc["world"]["ranks"])
    assert doc["results"] and all(r["verified"] for r in doc["results"])
    assert all(r["time_s"] > 0 for r in doc["results"])
    # Each figure is a timed run of back-to-back calls (50 at 32 KiB), and each op's latency is its 32 KiB call.
    assert all(r["calls_per_run"] == calls_per_run(GPU_DEFAULTS, r["size_bytes"]) for r in doc["results"])
    assert {x["op"] for x in doc["latency"]} == {r["op"] for r in doc["results"]}
    assert all(x["size_bytes"] <= 32 * 1024 and x["latency_us"] > 0 for x in doc["latency"])
    if n > 1:
        assert all(p["busbw_gb_s"] > 0 for p in doc["peaks"])
