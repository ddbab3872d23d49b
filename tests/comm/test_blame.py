"""Who the comm report blames, in-process: the side of a point-to-point transfer a figure, a slow link or
wrong data is put on (row: the sender, column: the receiver), and the words a dead rank's exit is given.
Every expected figure is computed by hand in the test."""

from __future__ import annotations

import io
import re
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

from envcheck.comm import app, launch
from envcheck.comm.app import CommRequest, P2PMatrix, P2PNode, Problem, build_report, slow_pairs
from envcheck.comm.launch import Launched, RankChild, exit_words
from envcheck.comm.plan import Plan
from envcheck.comm.rank import EXIT_ABORTED, EXIT_FAILED, EXIT_LOST, EXIT_STUCK

MB = 1_000_000


def _pair(src: int, dst: int, time_s: float, mismatch: dict | None = None) -> dict:
    """The receiver's record of one ordered pair, as rank 0 collects it (the receiver times the run)."""
    return {"index": 0, "op": "p2p", "size": MB, "src": src, "dst": dst, "rank": dst, "size_bytes": MB,
            "count": MB // 4, "times_s": [time_s], "calls": 20, "mismatch": mismatch}  # fmt: skip


def _report(hosts: dict[int, str], records: list[dict], problems: list[dict] | None = None, **kwargs):
    ranks = [{"rank": r, "host": h, "device": "cpu"} for r, h in hosts.items()]
    raw = {"world": {"size": len(hosts), "ranks": ranks}, "records": records, "problems": problems or [],
           "completed": True}  # fmt: skip
    return build_report(
        CommRequest.parse(device="cpu"), raw, generated_at=datetime.now(timezone.utc), started=0.0, **kwargs
    )


#: Ranks interleaved over two hosts, so that a rank's number, its place in its node's block and its host
#: all differ: host b holds ranks 0, 2, 4 (rows/columns 0, 1, 2), host a ranks 1, 3.
HOSTS = {0: "b", 1: "a", 2: "b", 3: "a", 4: "b"}
#: 1 MB in 10 µs is 100 GB/s; in 100 µs 10 GB/s; in 20 µs 50 GB/s. Rank 4 sends slowly to rank 2 only.
RECORDS = [
    _pair(0, 2, 1e-5),
    _pair(0, 4, 1e-5),
    _pair(2, 0, 1e-5),
    _pair(2, 4, 1e-5),
    _pair(4, 0, 1e-5),
    _pair(4, 2, 1e-4),
    _pair(1, 3, 2e-5),
    _pair(3, 1, 2e-5),
]


def test_each_figure_is_put_in_the_senders_row_and_the_receivers_column_of_its_own_node():
    report = _report(HOSTS, RECORDS)
    b, a = report.p2p.nodes
    assert (b.host, b.ranks, a.host, a.ranks) == ("b", (0, 2, 4), "a", (1, 3))
    assert report.p2p.size_bytes == MB
    approx = pytest.approx
    # 4 -> 2 is row 2 (rank 4), column 1 (rank 2): 10 GB/s; its reverse 2 -> 4 (row 1, column 2) is 100.
    assert b.matrix == (
        (None, approx(100.0), approx(100.0)),
        (approx(100.0), None, approx(100.0)),
        (approx(100.0), approx(10.0), None),
    )
    assert a.matrix == ((None, approx(50.0)), (approx(50.0), None))


def test_a_slow_link_names_its_sender_and_receiver_with_its_figures():
    """On b the other five pairs run at 100 GB/s: 4 -> 2 at 10 is 90 % below their median. On a, two
    pairs alone have no median of others to be judged against (one other pair is not a median)."""
    report = _report(HOSTS, RECORDS)
    (slow,) = report.p2p.slow_pairs
    assert (slow["src"], slow["dst"]) == (4, 2)
    assert slow["gb_s"] == pytest.approx(10.0)
    assert slow["median_gb_s"] == pytest.approx(100.0)
    assert slow["shortfall"] == pytest.approx(0.9)
    assert report.p2p.nodes[1].slow_pairs == ()
    assert report.p2p.to_json()["slow_pairs"] == [slow]
    # A slow link is a warning for the person reading the matrix, not a failed run.
    assert report.exit_code == 0


def test_wrong_data_is_blamed_on_the_receiver_that_saw_it_naming_the_sender():
    wrong = {"index": 7, "elements": MB // 4, "wrong": 3, "got": 5.0, "expected": 9.0}
    records = [*RECORDS[:5], _pair(4, 2, 1e-4, mismatch=wrong), *RECORDS[6:]]
    report = _report(HOSTS, records)
    (problem,) = report.problems
    assert (problem.rank, problem.host) == (2, "b")
    assert problem.what == (
        "received wrong data from rank 4 (b) over send/recv: element 7 of 250000 is 5, expected 9 (3 wrong)"
    )
    assert report.exit_code == 1


def test_a_pair_timed_at_zero_has_no_figure_and_a_pair_across_nodes_none_either():
    records = [_pair(0, 2, 0.0), _pair(1, 2, 1e-5), _pair(2, 0, 1e-5)]
    b, a = _report(HOSTS, records).p2p.nodes
    assert b.matrix[0][1] is None  # 0 -> 2 took no time: no figure, not an infinite one
    assert b.matrix[1][0] == pytest.approx(100.0)
    assert all(v is None for row in a.matrix for v in row)  # 1 (a) -> 2 (b) lands on neither node


def test_a_world_without_p2p_records_has_blocks_but_no_slow_pair():
    report = _report({0: "h", 1: "h", 2: "h"}, [])
    (node,) = report.p2p.nodes
    assert node.matrix == ((None,) * 3,) * 3 and report.p2p.size_bytes == 0 and node.slow_pairs == ()


@pytest.mark.parametrize(
    ("slowest", "flagged"),
    [
        (50.0, False),  # exactly half the median of the others (100): not below it
        (49.9, True),
        (10.0, True),
    ],
)
def test_a_pair_is_slow_only_below_half_the_median_of_the_other_pairs(slowest, flagged):
    matrix = [[None, 100.0, 100.0], [100.0, None, 100.0], [100.0, slowest, None]]
    got = slow_pairs((7, 8, 9), matrix)
    if not flagged:
        assert got == []
        return
    assert got == [
        {"src": 9, "dst": 8, "gb_s": slowest, "median_gb_s": 100.0, "shortfall": pytest.approx(1 - slowest / 100.0)}
    ]


def test_the_median_is_that_of_the_other_pairs_and_needs_two_of_them():
    # Three pairs: 1 -> 0 at 10 against the median of 100 and 30 (65): 10 < 32.5, slow. 0 -> 1 at 30 against
    # the median of 100 and 10 (55): 30 > 27.5, not slow. Two pairs only: never judged.
    three = [[None, 30.0, 100.0], [10.0, None, None], [None, None, None]]
    assert slow_pairs((0, 1, 2), three) == [
        {"src": 1, "dst": 0, "gb_s": 10.0, "median_gb_s": 65.0, "shortfall": pytest.approx(1 - 10 / 65)}
    ]
    assert slow_pairs((0, 1), [[None, 1.0], [100.0, None]]) == []
    assert slow_pairs((0, 1, 2), [[None, 0.0, 0.0], [0.0, None, 0.0], [0.0, 0.0, None]]) == []


def _doc(report):
    from envcheck.comm.report import comm_document

    return comm_document(report)


def test_the_text_report_marks_the_slow_cell_in_the_senders_row_and_names_sender_then_receiver():
    from rich.console import Console

    from envcheck.comm.render import render_text
    from envcheck.render import RenderOptions

    out = io.StringIO()
    render_text(_doc(_report(HOSTS, RECORDS)), Console(file=out, width=200, color_system=None), RenderOptions())
    text = out.getvalue()
    rows = {
        cells[0]: cells[1:]
        for line in text.splitlines()
        if (cells := [c.strip() for c in line.strip("│ ").split("│")]) and cells[0] in ("0", "2", "4")
    }
    assert rows["4"] == ["100.0", "10.0", "-"]
    assert rows["2"] == ["100.0", "-", "100.0"]
    assert (
        "SLOW LINK rank 4 → rank 2: 10.0 GB/s, 90% below the median of the other pairs on its host (100.0 GB/s)" in text
    )


def test_the_html_matrix_flags_the_cell_of_the_slow_sender_and_lists_it():
    from envcheck.comm.render import comm_p2p

    page = comm_p2p(_doc(_report(HOSTS, RECORDS)))
    assert "slow link rank 4 → rank 2: 10.0 GB/s, 90% below the median of the other pairs on its host (100.0 GB/s)" in (
        page
    )
    body_rows = re.findall(r"<tr><td[^>]*><b>(\d)</b></td>(.*?)</tr>", page)
    flagged = {row: re.findall(r"<td[^>]*>([^<]*)</td>", cells) for row, cells in body_rows}
    assert flagged["4"] == ["100.0", "10.0 !", "-"]
    assert flagged["2"] == ["100.0", "-", "100.0"]


# -- how a rank's exit is worded ---------------------------------------------------------------------------


def _child(rank: int, returncode: int | None, *, stderr: str = "", error: str | None = None, killed: bool = False):
    child = RankChild(f"rank {rank}", 60.0, rank=rank, error=error, killed=killed)
    child.process = None if returncode is None else SimpleNamespace(returncode=returncode)
    child.stderr_bytes = stderr.encode()
    return child


@pytest.mark.parametrize(
    ("returncode", "words"),
    [
        (-9, "its process was killed by SIGKILL"),
        (-11, "its process was killed by SIGSEGV"),
        (-6, "its process was killed by SIGABRT"),
        (-15, "its process was killed by SIGTERM"),
        (-200, "its process was killed by signal 200"),
        (137, "its process exited with code 137"),
        (EXIT_FAILED, "its process exited with code 1"),
        (2, "its process exited with code 2"),
        (EXIT_STUCK, "its process stopped itself: a step made no progress within the timeout"),
        # Ended because the run was over: rank 0 gave up (and says why), or its store went with rank 0.
        (EXIT_ABORTED, None),
        (EXIT_LOST, None),
        (0, None),
        (None, None),  # never started, or still running
    ],
)
def test_a_ranks_exit_is_worded_by_its_code_or_signal(returncode, words):
    assert exit_words(_child(1, returncode)) == words


def test_a_rank_the_launcher_killed_itself_is_not_said_to_have_died():
    assert exit_words(_child(1, -9, killed=True)) is None
    assert exit_words(_child(1, 1, killed=True)) is None


def _run(monkeypatch, children, raw, *, device="cpu", env=None, progress=None, **launched):
    """run_comm over a faked launch: ``children`` as the parent saw them, ``raw`` as rank 0's report."""
    plan = Plan(device=device)
    calls = []

    def resolve(request, seen_env):
        calls.append(("resolve", request, seen_env))
        return plan, len(children)

    def fake_launch(*args, **kwargs):
        calls.append(("launch", args, kwargs))
        return Launched(raw, tuple(children), **launched)

    monkeypatch.setattr(app, "resolve_launch", resolve)
    monkeypatch.setattr(launch, "launch", fake_launch)
    monkeypatch.setattr(app, "host_name", lambda: "here")
    request = CommRequest.parse(device="cpu")
    report = app.run_comm(request, env={} if env is None else env, progress=progress)
    want_env = {} if env is None else env
    assert calls == [
        ("resolve", request, want_env),
        ("launch", (plan, len(children)), {"env": want_env, "progress": progress}),
    ]
    assert isinstance(report.generated_at, datetime)
    return report


def _raw(problems):
    ranks = [{"rank": r, "host": "here", "device": "cpu"} for r in range(4)]
    return {"world": {"size": 4, "backend": "gloo", "ranks": ranks}, "records": [], "problems": problems,
            "completed": False}  # fmt: skip


def test_the_words_shown_join_rank_0s_account_with_how_each_process_ended(monkeypatch):
    """Rank 1 was SIGKILLed (its stderr, cut off mid-line, is not why); rank 2 raised a Python exception
    (its traceback's last line says which); rank 3 said its own error before exiting 1; rank 0 ended well."""
    traceback = (
        'Traceback (most recent call last):\n  File "x.py", line 1, in <module>\n'
        "UserWarning: ignore me\nRuntimeError: CUDA error: out of memory\n"
    )
    children = [
        _child(0, 0),
        _child(1, -9, stderr="half a line of NCCL INFO"),
        _child(2, 1, stderr=traceback),
        _child(3, 1, stderr="noise\n", error="ValueError: bad plan"),
    ]
    said = "stopped answering during all_reduce 4.0 KiB: no heartbeat for 2 s (its process died or froze)"
    report = _run(monkeypatch, children, _raw([{"rank": 1, "host": None, "what": said}]))
    words = {p.rank: (p.host, p.what) for p in report.problems}
    assert words == {
        1: ("here", f"{said} (its process was killed by SIGKILL)"),
        2: ("here", "its process exited with code 1; RuntimeError: CUDA error: out of memory"),
        3: ("here", "its process exited with code 1; ValueError: bad plan"),
    }
    assert report.exit_code == 1


def test_a_rank_0_that_died_without_a_report_is_named_once_with_its_signal(monkeypatch):
    report = _run(monkeypatch, [_child(0, -9), _child(1, EXIT_LOST)], None)
    assert [(p.rank, p.host, p.what) for p in report.problems] == [(0, "here", "its process was killed by SIGKILL")]


def test_without_a_report_a_rank_0_that_ended_well_is_said_to_have_given_none(monkeypatch):
    report = _run(monkeypatch, [_child(0, 0), _child(1, 137)], None)
    assert [(p.rank, p.what) for p in report.problems] == [
        (0, "rank 0 ended without a report"),
        (1, "its process exited with code 137"),
    ]


def test_a_process_problem_joins_rank_0s_problem_for_that_rank_and_keeps_its_host():
    merged = app._merge([Problem(1, "b", "stuck"), Problem(2, None, "gone")], Problem(2, "h", "killed"))
    assert merged == [Problem(1, "b", "stuck"), Problem(2, "h", "gone (killed)")]
    assert app._merge([Problem(None, None, "run")], Problem(None, "h", "x")) == [
        Problem(None, None, "run"),
        Problem(None, "h", "x"),
    ]


def test_p2p_matrix_json_of_one_node_keeps_its_ranks_and_matrix():
    node = P2PNode("h", (3, 5), ((None, 12.5), (float("inf"), None)), ())
    doc = P2PMatrix(MB, (node,)).to_json()
    assert doc["ranks"] == [3, 5] and doc["matrix"] == [[None, 12.5], [None, None]]
    assert doc["nodes"] == [{"host": "h", "ranks": [3, 5], "matrix": [[None, 12.5], [None, None]]}]


def test_a_rank_that_ended_well_after_rank_0_reported_is_no_problem_whatever_it_said(monkeypatch):
    report = _run(monkeypatch, [_child(0, 0), _child(1, 0, error="late words")], _raw([]))
    assert report.problems == ()


def _no_report_world(report):
    return (report.backend, report.launcher, [(r.rank, r.host, r.device) for r in report.ranks], report.completed)


@pytest.mark.parametrize(
    ("device", "backend"),
    [("cpu", "gloo"), ("cuda", "nccl")],
)
def test_without_rank_0s_report_the_world_is_the_launchers_and_the_run_did_not_complete(monkeypatch, device, backend):
    report = _run(monkeypatch, [_child(0, 0), _child(1, EXIT_LOST)], None, device=device)
    assert _no_report_world(report) == (backend, "envcheck", [(0, "here", None), (1, "here", None)], False)
    assert [(p.rank, p.host) for p in report.problems] == [(0, "here")]
    assert (report.results, report.interrupted, report.stopped_by) == ((), False, None)


def test_a_rank_0_silent_past_its_limit_is_said_so_with_the_seconds(monkeypatch):
    report = _run(monkeypatch, [_child(0, 0), _child(1, EXIT_LOST)], None, stalled_s=180.4)
    assert [p.what for p in report.problems] == ["rank 0 reported no progress for 180 s; every rank was stopped"]


def test_a_run_interrupted_before_rank_0_reported_says_by_what(monkeypatch):
    report = _run(monkeypatch, [_child(0, 0), _child(1, EXIT_LOST)], None, interrupted=True)
    assert [p.what for p in report.problems] == ["interrupted (Ctrl-C) before rank 0 could report"]
    assert (report.interrupted, report.stopped_by, int(report.exit_code)) == (True, "SIGINT", 130)


def test_a_run_a_signal_stopped_before_rank_0_reported_names_the_signal(monkeypatch):
    monkeypatch.setattr("envcheck.core.stop.stopped_by", lambda interrupted: "SIGTERM" if interrupted else None)
    report = _run(monkeypatch, [_child(0, 0), _child(1, EXIT_LOST)], None, interrupted=True)
    assert [p.what for p in report.problems] == ["interrupted (SIGTERM) before rank 0 could report"]
    assert (report.stopped_by, int(report.exit_code)) == ("SIGTERM", 143)


def test_an_interrupted_run_keeps_rank_0s_report_and_marks_it_stopped(monkeypatch):
    report = _run(monkeypatch, [_child(0, 0), _child(1, EXIT_ABORTED)], _raw([]), interrupted=True)
    assert (report.problems, report.interrupted, report.stopped_by) == ((), True, "SIGINT")


def test_the_callers_environment_and_progress_reach_the_launch(monkeypatch):
    _run(monkeypatch, [_child(0, 0)], _raw([]), env={"NCCL_DEBUG": "INFO"}, progress=print)


def test_without_an_environment_given_the_processs_own_is_used(monkeypatch):
    seen = []
    monkeypatch.setenv("ENVCHECK_TEST_MARK", "7")
    monkeypatch.setattr(app, "resolve_launch", lambda request, env: seen.append(env) or (Plan(device="cpu"), 1))
    monkeypatch.setattr(launch, "launch", lambda *a, **k: Launched(_raw([]), (_child(0, 0),)))
    app.run_comm(CommRequest.parse(device="cpu"))
    assert seen[0]["ENVCHECK_TEST_MARK"] == "7"
