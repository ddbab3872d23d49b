"""The parts of envcheck comm that need no ranks: nccl-tests' factors, the sweep, the launcher's
variables, and the report built from a rank 0 account (medians, figures, wrong results, slow links)."""

from __future__ import annotations

import os
import statistics
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envcheck.comm import ops
from envcheck.comm.app import CommRequest, build_report
from envcheck.comm.plan import CPU_DEFAULTS, GPU_DEFAULTS, GiB, KiB, MiB, Plan, calls_per_run, sweep
from envcheck.comm.world import WorldError, detect
from envcheck.core.errors import CommandError
from tests.cuda_torch import CUDA_TORCH_PYTHON, needs_cuda_torch


@pytest.mark.parametrize(
    ("op", "n", "factor"),
    [
        ("all_reduce", 8, 2 * 7 / 8),
        ("all_reduce", 2, 1.0),
        ("all_gather", 4, 3 / 4),
        ("reduce_scatter", 8, 7 / 8),
        ("all_to_all", 3, 2 / 3),
        ("broadcast", 8, 1.0),
        ("send_recv", 8, 1.0),
    ],
)
def test_busbw_factors_are_nccl_tests(op, n, factor):
    assert ops.busbw(op, 10.0, n) == pytest.approx(10.0 * factor)


def test_total_buffer_ops_count_s_over_every_rank():
    # all_gather of 1 MiB total on 4 ranks: each rank contributes 64 Ki floats, S counts all of them.
    assert ops.OPS["all_gather"].count(1 << 20, 4) == (1 << 20) // 16
    assert ops.OPS["all_gather"].size_bytes((1 << 20) // 16, 4) == 1 << 20
    assert ops.OPS["all_reduce"].size_bytes(ops.OPS["all_reduce"].count(1 << 20, 4), 4) == 1 << 20


def test_sweep_doubles_from_min_to_max_and_is_capped_by_free_memory():
    assert sweep(Plan(device="cuda"), cuda=True, free_bytes=None)[0] == 32 * KiB
    assert sweep(Plan(device="cuda"), cuda=True, free_bytes=None)[-1] == 1 * GiB
    capped = sweep(Plan(device="cuda"), cuda=True, free_bytes=1 * GiB)
    assert capped[-1] == 128 * 1024 * KiB  # 1/8 of the free memory
    assert sweep(Plan(min_size=5000, max_size=20000), cuda=False, free_bytes=None) == [5000, 10000, 20000]


def test_launcher_variables():
    assert detect({}) is None
    world = detect({"RANK": "2", "WORLD_SIZE": "4", "LOCAL_RANK": "0", "MASTER_ADDR": "n1", "MASTER_PORT": "29500"})
    assert (world.rank, world.size, world.local_rank, world.launcher) == (2, 4, 0, "env")
    slurm = {"SLURM_PROCID": "5", "SLURM_STEP_NUM_TASKS": "16", "SLURM_LOCALID": "5"}
    assert detect({**slurm, "MASTER_ADDR": "n1", "MASTER_PORT": "29500"}).launcher == "slurm"
    # A batch script outside srun has SLURM_PROCID and SLURM_NTASKS but is no rank of a world.
    assert detect({"SLURM_PROCID": "0", "SLURM_NTASKS": "16"}) is None
    with pytest.raises(WorldError, match="MASTER_ADDR"):
        detect(slurm)
    with pytest.raises(WorldError, match="does not fit"):
        detect({"RANK": "4", "WORLD_SIZE": "4", "MASTER_ADDR": "n1", "MASTER_PORT": "1"})


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"timeout": "nan"}, "--timeout"),
        ({"timeout": "inf"}, "--timeout"),
        ({"timeout": "0"}, "--timeout"),
        ({"ops_text": "all_reduce,allreduce"}, "unknown op 'allreduce'"),
        ({"min_size": "lots"}, "--min-size"),
        ({"min_size": "1MiB", "max_size": "4KiB"}, "larger than"),
        ({"iters": 0}, "--iters"),
    ],
)
def test_bad_options_are_usage_errors(options, words):
    with pytest.raises(CommandError, match=words) as error:
        CommRequest.parse(**options)
    assert error.value.exit_code == 2


def _record(index, op, rank, times, size=4096, mismatch=None, **extra):
    return {"index": index, "op": op, "size": size, "rank": rank, "size_bytes": size, "count": size // 4,
            "times_s": times, "mismatch": mismatch, **extra}  # fmt: skip


def test_report_takes_the_median_over_ranks_of_each_ranks_median_and_names_a_wrong_rank():
    raw = {
        "world": {"size": 2, "backend": "gloo", "launcher": "envcheck",
                  "ranks": [{"rank": 0, "host": "a", "device": "cpu"}, {"rank": 1, "host": "b", "device": "cpu"}]},
        "records": [
            _record(0, "all_reduce", 0, [1.0, 2.0, 9.0]),
            _record(0, "all_reduce", 1, [3.0, 4.0, 5.0]),
            _record(1, "broadcast", 0, [1.0]),
            _record(1, "broadcast", 1, [1.0], mismatch={"index": 3, "elements": 1024, "wrong": 1, "got": 4.0,
                                                         "expected": 3.0}),
        ],
        "problems": [],
        "completed": True,
    }  # fmt: skip
    report = build_report(
        CommRequest.parse(ops_text="all_reduce,broadcast"),
        raw,
        generated_at=datetime.now(timezone.utc),
        started=0.0,
    )
    reduce, bcast = report.results
    assert reduce.time_s == statistics.median([2.0, 4.0])
    assert reduce.algbw_gb_s == pytest.approx(4096 / 3.0 / 1e9)
    assert reduce.verified and not bcast.verified
    assert report.exit_code == 1
    (problem,) = report.problems
    assert (problem.rank, problem.host) == (1, "b") and "element 3 of 1024 is 4, expected 3" in problem.what


def test_a_large_worlds_p2p_is_one_block_per_node_and_its_report_grows_with_its_ranks():
    """1024 nodes of 8 ranks, every same-node pair measured, one slow link on node 517: the report holds
    1024 blocks of 8 x 8 (not one 8192 x 8192 matrix, 67 million cells), the slow link is found on its
    node, and the text report shows that node alone."""
    import io
    import json

    from rich.console import Console

    from envcheck.comm.render import render_text
    from envcheck.comm.report import comm_document
    from envcheck.render import RenderOptions

    nodes, per = 1024, 8
    ranks = [{"rank": r, "host": f"node{r // per}", "device": f"cuda:{r % per}"} for r in range(nodes * per)]
    records = []
    for node in range(nodes):
        members = range(node * per, (node + 1) * per)
        for src in members:
            for dst in members:
                if src != dst:
                    gb = 20.0 if (node, src % per, dst % per) == (517, 3, 5) else 100.0
                    times = [1e6 / (gb * 1e9)]
                    records.append(_record(len(records), "p2p", dst, times, size=1_000_000, src=src, dst=dst))
    raw = {"world": {"size": nodes * per, "ranks": ranks}, "records": records, "problems": [], "completed": True}
    report = build_report(CommRequest.parse(), raw, generated_at=datetime.now(timezone.utc), started=0.0)
    assert len(report.p2p.nodes) == nodes and all(len(n.matrix) == per for n in report.p2p.nodes)
    (slow,) = report.p2p.slow_pairs
    assert (slow["src"], slow["dst"]) == (517 * per + 3, 517 * per + 5)
    doc = comm_document(report)
    assert doc["p2p"]["ranks"] is None and doc["p2p"]["matrix"] is None  # a world on several nodes: read nodes
    assert [n["host"] for n in doc["p2p"]["nodes"]][:2] == ["node0", "node1"]
    size = len(json.dumps(doc))
    assert size < 1500 * nodes * per, size  # proportional to the ranks: ~1 KB a rank, not 8192 cells a rank
    out = io.StringIO()
    render_text(doc, Console(file=out, width=200, color_system=None), RenderOptions())
    text = out.getvalue()
    assert "send/recv GB/s on node517" in text and "on node516" not in text
    assert "send/recv on 1023 other node(s): no slow link" in text


def test_ranks_that_never_joined_have_no_p2p_block():
    """Rank 0 alone in a world of 8192 (no other rank came): no node has two ranks that joined, so there is
    no matrix at all, where there used to be 8192 x 8192 empty cells."""
    ranks = [{"rank": 0, "host": "a", "device": "cpu"}] + [
        {"rank": r, "host": None, "device": None, "joined": False} for r in range(1, 8192)
    ]
    raw = {"world": {"size": 8192, "ranks": ranks}, "records": [], "problems": [], "completed": False}
    report = build_report(CommRequest.parse(), raw, generated_at=datetime.now(timezone.utc), started=0.0)
    assert report.p2p is None


def test_a_slow_link_stands_out_of_the_matrix():
    ranks = [{"rank": r, "host": "h", "device": f"cuda:{r}"} for r in range(3)]
    speeds = {(0, 1): 100.0, (0, 2): 100.0, (1, 0): 100.0, (1, 2): 100.0, (2, 0): 20.0, (2, 1): 100.0}
    records = [
        _record(i, "p2p", dst, [1e6 / (gb * 1e9)], size=1_000_000, src=src, dst=dst)
        for i, ((src, dst), gb) in enumerate(speeds.items())
    ]
    raw = {"world": {"size": 3, "ranks": ranks}, "records": records, "problems": [], "completed": True}
    report = build_report(CommRequest.parse(), raw, generated_at=datetime.now(timezone.utc), started=0.0)
    (node,) = report.p2p.nodes
    assert node.host == "h" and node.ranks == (0, 1, 2)
    assert node.matrix[0][0] is None and node.matrix[0][1] == pytest.approx(100.0)
    (slow,) = report.p2p.slow_pairs
    assert (slow["src"], slow["dst"]) == (2, 0) and slow["shortfall"] == pytest.approx(0.8)


@pytest.mark.parametrize(
    ("local_rank", "count", "index"), [(0, 8, 0), (7, 8, 7), (3, 1, 0), (5, 1, 0)]
)  # a rank that sees one GPU (given to it alone) uses it, whatever its local rank
def test_each_rank_takes_its_own_gpu(local_rank, count, index):
    from envcheck.comm.rank import gpu_index

    assert gpu_index(local_rank, count, None) == index


def test_a_rank_past_the_gpus_it_sees_is_said_not_doubled_up():
    """local_rank % count used to put ranks 4-7 on GPUs 0-3 beside ranks 0-3, silently."""
    from envcheck.comm.rank import gpu_index

    with pytest.raises(RuntimeError) as caught:
        gpu_index(5, 4, "0,1,2,3")
    assert str(caught.value) == (
        "local rank 5 has no GPU of its own: this rank sees 4 GPUs (CUDA_VISIBLE_DEVICES=0,1,2,3); start at most 4 "
        "ranks per node (torchrun --nproc-per-node=4), or give each rank its own GPU"
    )


def test_a_mig_instance_keeps_its_mig_prefix():
    from envcheck.comm.rank import uuid_text_for

    uuid = "11111111-2222-3333-4444-555555555555"
    assert uuid_text_for(uuid, "MIG-11111111-2222-3333-4444-555555555555") == f"MIG-{uuid}"
    assert uuid_text_for(uuid, None) == f"GPU-{uuid}" and uuid_text_for(uuid, "0,1") == f"GPU-{uuid}"
    assert uuid_text_for(f"GPU-{uuid}", "MIG-x") == f"GPU-{uuid}"


def test_nccl_binds_the_world_group_to_the_ranks_gpu_and_gloo_to_nothing():
    """device_id makes NCCL build the world's communicator at init, and send/recv use it instead of a new
    2-rank communicator per pair; a torch without the argument (before 2.3) is not given it."""
    import torch
    import torch.distributed as dist

    from envcheck.comm.rank import group_options

    gpu = torch.device("cuda", 3)
    nccl = group_options(dist.init_process_group, cuda=True, device=gpu, timeout_s=5.0)
    assert nccl == {"backend": "nccl", "timeout": timedelta(seconds=65), "device_id": gpu}
    assert group_options(dist.init_process_group, cuda=False, device=None, timeout_s=5.0) == {
        "backend": "gloo",
        "timeout": timedelta(seconds=5),
    }

    def torch_2_2_init(backend=None, init_method=None, timeout=None, world_size=-1, rank=-1, store=None,
                       group_name="", pg_options=None):  # fmt: skip
        """torch 2.2's init_process_group: no device_id."""

    assert "device_id" not in group_options(torch_2_2_init, cuda=True, device=gpu, timeout_s=5.0)


@needs_cuda_torch
def test_the_cuda_build_of_torch_takes_device_id():
    """The CUDA build's own init_process_group (2.14.1+cu130) is given the rank's GPU."""
    code = (
        "import torch, torch.distributed as dist\n"
        "from envcheck.comm.rank import group_options\n"
        "o = group_options(dist.init_process_group, cuda=True, device=torch.device('cuda', 1), timeout_s=5)\n"
        "print(torch.version.cuda is not None, o['backend'], o['device_id'])\n"
    )
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([CUDA_TORCH_PYTHON, "-W", "ignore", "-c", code], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(root)})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["True", "nccl", "cuda:1"]


def test_the_latency_line_names_each_ops_time_per_call_at_the_smallest_size():
    from envcheck.comm.render import latency_line

    rows = [{"op": "all_reduce", "latency_us": 52.14, "size_bytes": 32768},
            {"op": "broadcast", "latency_us": 1250.0, "size_bytes": 32768}]  # fmt: skip
    assert latency_line(rows) == "at the smallest size (32.0 KiB): all_reduce 52.1 µs, broadcast 1.25 ms"
    rows[1]["size_bytes"] = 32760  # all_gather over 3 ranks: S a multiple of 12 bytes, as its table shows it
    assert latency_line(rows) == "at the smallest size (31.9 KiB–32.0 KiB): all_reduce 52.1 µs, broadcast 1.25 ms"
    rows[1]["size_bytes"] = 65536  # broadcast's 32 KiB result was wrong: its smallest figure is at 64 KiB
    assert latency_line(rows) == "at the smallest size (32.0 KiB–64.0 KiB): all_reduce 52.1 µs, broadcast 1.25 ms"
    assert latency_line([]) is None and latency_line(None) is None


@settings(max_examples=200, deadline=None)
@given(size=st.integers(min_value=4, max_value=16 * GiB))
def test_a_timed_run_moves_a_bounded_amount_and_small_sizes_run_many_calls(size):
    """One timed run moves at most the device's run_bytes (or one call, when a call is larger), with at
    least one call and at most max_calls: the sweep's time stays bounded as nccl-tests' -n bounds it."""
    for d in (GPU_DEFAULTS, CPU_DEFAULTS):
        calls = calls_per_run(d, size)
        assert 1 <= calls <= d.max_calls
        assert calls * size <= max(d.run_bytes, size)
        assert calls == d.max_calls or (calls + 1) * size > d.run_bytes  # no more could fit


def test_gpu_runs_are_many_calls_at_small_sizes_and_one_from_256_mib():
    assert [calls_per_run(GPU_DEFAULTS, s) for s in (32 * KiB, 4 * MiB, 8 * MiB, 64 * MiB, 256 * MiB, GiB)] == [
        50, 50, 32, 4, 1, 1,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("cuda", "bound", "used"),
    [(True, True, "batch"), (True, False, "send"), (False, False, "batch")],
    ids=["nccl-bound", "nccl-unbound", "gloo"],
)
def test_a_p2p_transfer_uses_the_worlds_communicator_unless_nccl_could_not_bind_it(monkeypatch, cuda, bound, used):
    """Bound to its GPU (device_id) the world's NCCL communicator carries the pair; unbound (torch < 2.3), a
    batch between two ranks before any collective would hang, so the plain send makes its pair communicator.
    gloo batches."""
    import types

    import torch.distributed as dist

    from envcheck.comm import rank

    calls: list[str] = []

    class Work:
        def wait(self) -> None:
            calls.append("wait")

    monkeypatch.setattr(dist, "send", lambda buf, peer: calls.append(f"send->{peer}"))
    monkeypatch.setattr(dist, "batch_isend_irecv", lambda ops: calls.append(f"batch{len(ops)}") or [Work()])
    monkeypatch.setattr(dist, "P2POp", lambda op, buf, peer: (op, peer))
    ctx = types.SimpleNamespace(cuda=cuda, bound=bound)
    rank._p2p_transfer(ctx, True, object(), 3)
    assert calls == (["batch1", "wait"] if used == "batch" else ["send->3"])


def test_rank_0_giving_up_waits_for_each_joined_rank_to_read_why(monkeypatch):
    """Rank 0 serves the store: it stays until each rank that joined has read the abort (a rank that left
    first said only "connection closed"), each by its own key (a late rank's read stands in for no one), and
    no longer than READ_WAIT_S (a rank that died never reads)."""
    import types

    import torch.distributed as dist

    from envcheck.comm import rank

    clock = {"now": 0.0}
    fake_time = types.SimpleNamespace(
        monotonic=lambda: clock["now"], sleep=lambda s: clock.__setitem__("now", clock["now"] + s)
    )
    monkeypatch.setattr(rank, "time", fake_time)
    store = dist.HashStore()
    store.set("read/1", "1")
    store.set("read/3", "1")  # a rank that announced itself too late: counted as missing
    rank._wait_for_readers(store, [1, 2])
    assert clock["now"] >= rank.READ_WAIT_S  # rank 2 never read: waited to the bound, no longer
    assert clock["now"] < rank.READ_WAIT_S + 0.1
    clock["now"] = 0.0
    store.set("read/2", "1")
    rank._wait_for_readers(store, [1, 2])
    assert clock["now"] == 0.0  # both read: no wait
    rank._wait_for_readers(store, [])  # no rank joined but rank 0
    assert clock["now"] == 0.0
