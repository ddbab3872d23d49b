"""The comm report's figures from rank 0's raw account, in-process: each result's time, algbw, busbw and
latency, the peaks and latencies that leave out what did not verify, the statuses, and the document's
fields. Times are powers of two so that every expected figure below is exact and computed by hand."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

from envcheck.comm.app import CommRequest, build_report, slow_pairs
from envcheck.core.model import Status

T = 2.0**-10  # seconds
KiB = 1024
WRONG = {"index": 5, "elements": 131072, "wrong": 1, "got": 7.0, "expected": 6.0}


def _rec(index, op, rank, times, size, count, mismatch=None, calls=None):
    rec = {"index": index, "op": op, "rank": rank, "size": size, "size_bytes": size, "count": count,
           "times_s": times, "mismatch": mismatch}  # fmt: skip
    return rec if calls is None else {**rec, "calls": calls}


def _ranks():
    return [
        {"rank": r, "host": "h1" if r < 2 else "h2", "device": f"cuda:{r % 2}", "gpu_uuid": f"GPU-{r}",
         "gpu_name": "NVIDIA H100", "local_rank": r % 2}
        for r in range(4)
    ]  # fmt: skip


#: Each rank's times of the first all_reduce: their medians are 2T, 4T, T, 2T.
FIRST_TIMES = [[T, 2 * T, 4 * T], [4 * T], [T], [2 * T, 2 * T]]


def _records():
    every = range(4)
    return [
        # all_reduce of 1 MiB: each rank's median is 2T, 4T, T, 2T; the median of those four is 2T.
        *(_rec(0, "all_reduce", r, t, 2**20, 2**18, calls=8) for r, t in enumerate(FIRST_TIMES)),
        *(_rec(1, "all_reduce", r, [2 * T], 2**21, 2**19, calls=4) for r in every),
        # Smaller and faster, but rank 3's output was wrong: no latency from it.
        *(_rec(2, "all_reduce", r, [T], 2**19, 2**17, WRONG if r == 3 else None, calls=8) for r in every),
        # The fastest of all, but rank 1's output was wrong: no peak from it.
        *(_rec(3, "all_reduce", r, [T], 2**22, 2**20, WRONG if r == 1 else None, calls=2) for r in every),
        # Rank 3 never finished this step: no result at all.
        *(_rec(4, "all_gather", r, [T], 2**20, 2**16) for r in range(3)),
        *(_rec(5, "all_gather", r, [T], 2**20, 2**16) for r in every),
        # Twice the bytes in twice the time: the same busbw, so the peak stays at the first size.
        *(_rec(6, "all_gather", r, [2 * T], 2**21, 2**17) for r in every),
        # Timed at zero: no bandwidth (not an infinite one), and a latency of 0.
        *(_rec(7, "broadcast", r, [0.0], 2**20, 2**18) for r in every),
    ]  # fmt: skip


def _raw(**extra):
    return {
        "world": {"size": 4, "backend": "nccl", "launcher": "torchrun", "ranks": _ranks()},
        "records": _records(),
        "problems": [{"rank": 2, "host": "h2", "what": "its NIC said goodbye"}],
        "completed": True,
        "iters": 20,
        "warmup": 5,
        **extra,
    }


def _build(raw, request=None):
    request = request or CommRequest.parse(device="cuda", ops_text="all_reduce,all_gather,broadcast")
    return build_report(request, raw, generated_at=datetime.now(timezone.utc), started=time.monotonic())


def test_each_result_is_figured_from_the_median_over_ranks_of_each_ranks_median():
    report = _build(_raw())
    assert [(r.op, r.size_bytes) for r in report.results] == [
        ("all_reduce", 2**20), ("all_reduce", 2**21), ("all_reduce", 2**19), ("all_reduce", 2**22),
        ("all_gather", 2**20), ("all_gather", 2**21), ("broadcast", 2**20),
    ]  # fmt: skip
    first = report.results[0].to_json()
    assert first == {
        "op": "all_reduce",
        "size_bytes": 2**20,
        "count": 2**18,
        "time_s": 2**-9,
        "algbw_gb_s": 2**29 / 1e9,  # 2**20 bytes / 2**-9 s
        "busbw_gb_s": 2**29 / 1e9 * 1.5,  # 2(n-1)/n for n = 4
        "busbw_factor": 1.5,
        "verified": True,
        "wrong": [],
        "rank_times_s": FIRST_TIMES,
        "latency_us": 1953.125,  # 2**-9 s
        "calls_per_run": 8,
    }
    gather = report.results[4].to_json()
    assert (gather["busbw_factor"], gather["busbw_gb_s"], gather["calls_per_run"]) == (0.75, 2**30 / 1e9 * 0.75, None)
    bcast = report.results[6].to_json()
    assert (bcast["time_s"], bcast["algbw_gb_s"], bcast["busbw_gb_s"], bcast["latency_us"]) == (0.0, None, None, 0.0)
    wrong = report.results[2].to_json()
    assert wrong["verified"] is False
    assert wrong["wrong"] == [{"rank": 3, "host": "h2", **WRONG}]


def test_peaks_and_latencies_come_from_verified_finite_figures_only():
    report = _build(_raw())
    assert report.peaks() == [
        {"op": "all_reduce", "busbw_gb_s": 2**30 / 1e9 * 1.5, "size_bytes": 2**21},
        {"op": "all_gather", "busbw_gb_s": 2**30 / 1e9 * 0.75, "size_bytes": 2**20},
    ]
    assert report.latencies() == [
        {"op": "all_reduce", "latency_us": 1953.125, "size_bytes": 2**20},
        {"op": "all_gather", "latency_us": 976.5625, "size_bytes": 2**20},
        {"op": "broadcast", "latency_us": 0.0, "size_bytes": 2**20},
    ]


def test_the_reports_world_problems_and_run_fields_are_rank_0s():
    from envcheck.comm.report import comm_document

    report = _build(_raw(interrupted=True, stopped_by="SIGTERM"))
    assert (report.size, report.backend, report.launcher, report.iters, report.warmup) == (4, "nccl", "torchrun", 20, 5)
    assert (report.interrupted, report.stopped_by, int(report.exit_code)) == (True, "SIGTERM", 143)
    assert 0 <= report.duration_s < 60
    doc = comm_document(report)
    assert doc["world"]["ranks"][3] == {
        "rank": 3, "host": "h2", "device": "cuda:1", "gpu_uuid": "GPU-3", "gpu_name": "NVIDIA H100",
        "local_rank": 1, "joined": True,
    }  # fmt: skip
    assert doc["problems"] == [
        {"rank": 2, "host": "h2", "what": "its NIC said goodbye"},
        {"rank": 3, "host": "h2",
         "what": "wrong result in all_reduce 512.0 KiB: element 5 of 131072 is 7, expected 6 (1 wrong)"},
        {"rank": 1, "host": "h1",
         "what": "wrong result in all_reduce 4.0 MiB: element 5 of 131072 is 7, expected 6 (1 wrong)"},
    ]  # fmt: skip
    assert doc["p2p"] is None  # p2p was not asked for
    bare = _build({"world": {"size": 2, "ranks": []}, "records": [], "stopped_by": 15})
    assert (bare.launcher, bare.backend, bare.stopped_by, bare.interrupted, bare.iters) == (
        "envcheck", None, None, False, None,
    )  # fmt: skip


def _clean(**extra):
    records = [_rec(0, "all_reduce", r, [T], 2**20, 2**18) for r in range(2)]
    ranks = [{"rank": r, "host": "h", "device": "cpu"} for r in range(2)]
    return {"world": {"size": 2, "ranks": ranks}, "records": records, "problems": [], "completed": True, **extra}


def test_a_run_is_ok_only_when_it_finished_verified_and_met_the_spec():
    request = CommRequest.parse(device="cpu", ops_text="all_reduce")
    ok = _build(_clean(), request)
    assert (ok.status, int(ok.exit_code)) == (Status.OK, 0)
    assert int(_build(_clean(completed=False), request).exit_code) == 1
    below = SimpleNamespace(passed=False)
    unmeasured = SimpleNamespace(passed=None)
    assert int(replace(ok, spec_verdicts=(unmeasured,)).exit_code) == 0
    assert int(replace(ok, spec_verdicts=(unmeasured, below)).exit_code) == 1


def test_a_world_of_one_rank_has_results_with_a_busbw_of_zero():
    """One rank moves nothing over a link: all_reduce's factor 2(n-1)/n is 0."""
    raw = {"world": {"size": 1, "ranks": [{"rank": 0, "host": "h", "device": "cpu"}]},
           "records": [_rec(0, "all_reduce", 0, [T], 2**20, 2**18, calls=3)], "completed": True}  # fmt: skip
    (result,) = _build(raw, CommRequest.parse(device="cpu", ops_text="all_reduce")).results
    assert (result.op, result.size_bytes, result.count, result.calls_per_run) == ("all_reduce", 2**20, 2**18, 3)
    assert (result.algbw_gb_s, result.busbw_gb_s) == (2**30 / 1e9, 0.0)


def test_a_rank_that_never_joined_has_no_place_in_its_hosts_matrix():
    ranks = [{"rank": r, "host": "h", "device": "cpu", "joined": r != 2} for r in range(3)]
    raw = {"world": {"size": 3, "ranks": ranks}, "records": [], "completed": False}
    (node,) = _build(raw, CommRequest.parse(device="cpu", ops_text="p2p")).p2p.nodes
    assert node.ranks == (0, 1)


def test_a_slow_link_below_one_gb_s_is_found_too():
    matrix = [[None, 0.8, 0.8], [0.8, None, 0.8], [0.8, 0.1, None]]
    assert slow_pairs((0, 1, 2), matrix) == [
        {"src": 2, "dst": 1, "gb_s": 0.1, "median_gb_s": 0.8, "shortfall": pytest.approx(0.875)}
    ]


def test_the_lab_spec_judges_the_peaks_and_the_slowest_pair(tmp_path):
    spec = tmp_path / "lab.toml"
    spec.write_text(
        '[comm]\nall_reduce = { min_busbw = "1 GB/s" }\nall_gather = { min_busbw = "1 GB/s" }\n'
        'send_recv = { min_busbw = "50 GB/s" }\n'
    )
    request = CommRequest.parse(device="cuda", ops_text="all_reduce,all_gather,p2p", spec_path=str(spec))
    # Ranks 0 and 1 on h1: 0 -> 1 at 2**20 bytes in 2**-14 s, 1 -> 0 in 2**-16 s.
    p2p = [
        {**_rec(8, "p2p", 1, [2**-14], 2**20, 2**18), "src": 0, "dst": 1},
        {**_rec(9, "p2p", 0, [2**-16], 2**20, 2**18), "src": 1, "dst": 0},
    ]
    report = _build({**_raw(), "records": [*_records(), *p2p]}, request)
    verdicts = {v.op: (v.value_gb_s, v.passed) for v in report.spec_verdicts}
    assert verdicts == {
        "all_reduce": (2**30 / 1e9 * 1.5, True),  # 1.61 GB/s, the verified peak
        "all_gather": (2**30 / 1e9 * 0.75, False),  # 0.81 GB/s
        "send_recv": (2**34 / 1e9, False),  # the slowest pair, 0 -> 1: 17.2 GB/s
    }
    assert int(report.exit_code) == 1
    assert report.request.describe()["spec"] == str(spec)


def test_the_lab_spec_is_judged_without_a_matrix_when_p2p_was_not_run(tmp_path):
    spec = tmp_path / "lab.toml"
    spec.write_text('[comm]\nall_reduce = { min_busbw = "1 GB/s" }\nsend_recv = { min_busbw = "1 GB/s" }\n')
    request = CommRequest.parse(device="cuda", ops_text="all_reduce", spec_path=str(spec))
    report = _build(_raw(), request)
    assert report.p2p is None
    assert [(v.op, v.passed) for v in report.spec_verdicts] == [("all_reduce", True), ("send_recv", None)]


def test_the_p2p_document_states_its_unit():
    ranks = [{"rank": r, "host": "h", "device": "cpu"} for r in range(2)]
    raw = {"world": {"size": 2, "ranks": ranks}, "records": [], "completed": True}
    p2p = _build(raw, CommRequest.parse(device="cpu", ops_text="p2p")).p2p.to_json()
    assert (p2p["unit"], p2p["size_bytes"], p2p["ranks"]) == ("GB/s", 0, [0, 1])


def test_a_buffer_holds_whole_elements_and_at_least_one():
    from envcheck.comm.ops import OPS

    assert OPS["all_reduce"].count(10, 4) == 2  # 10 bytes: two whole float32, not 2.5
    assert OPS["all_reduce"].count(4, 4) == 1
    assert OPS["all_gather"].count(8, 4) == 1  # under one element per rank's chunk: still one
    assert OPS["all_gather"].size_bytes(1, 4) == 16
