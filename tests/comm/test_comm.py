"""``envcheck comm`` on CPU ranks (gloo over loopback) through the installed command: the figures and
the JSON contract, torchrun's world, and each way a rank can fail the others: it never joins, it hangs,
it dies, it returns a wrong result (faults injected by tests/comm/fault_site, a sitecustomize)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from envcheck.comm import ops, render
from envcheck.comm.plan import CPU_DEFAULTS, calls_per_run

ENVCHECK = shutil.which("envcheck") or str(Path(sys.executable).with_name("envcheck"))
TORCHRUN = str(Path(ENVCHECK).with_name("torchrun"))
FAULT_SITE = Path(__file__).parent / "fault_site"
ALL_OPS = ["all_reduce", "all_gather", "reduce_scatter", "broadcast", "all_to_all", "send_recv"]
#: For the failure cases: short, so the tests are quick, and long enough for a busy 2-core machine.
TIMEOUT_S = 6
HOST = socket.gethostname()


def env_with(**extra: str) -> dict[str, str]:
    drop = ("ENVCHECK_", "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_", "TORCHELASTIC_", "SLURM_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(extra)
    return env


def run(*args: str, argv0: str = ENVCHECK, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([argv0, *args], capture_output=True, text=True, env=env_with(**extra), timeout=180, cwd="/")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_contract(doc: dict, n: int) -> None:
    """The envcheck.comm/1 contract, and every figure derived as nccl-tests derives it."""
    assert doc["schema"] == "envcheck.comm/1"
    for key in ("envcheck_version", "generated_at", "duration_s", "host"):
        assert key in doc
    world = doc["world"]
    assert world["size"] == n and world["backend"] == "gloo"
    assert doc["transport"]["captured"] is False and "gloo writes no NCCL log" in doc["transport"]["note"]
    assert [r["rank"] for r in world["ranks"]] == list(range(n))
    assert all(r["host"] == HOST and r["device"] == "cpu" and "gpu_uuid" in r for r in world["ranks"])
    assert {r["op"] for r in doc["results"]} == set(ALL_OPS)
    for r in doc["results"]:
        assert r["verified"] is True, r
        factor = ops.OPS[r["op"]].factor(n)
        assert r["busbw_gb_s"] / r["algbw_gb_s"] == pytest.approx(factor)
        assert r["algbw_gb_s"] == pytest.approx(r["size_bytes"] / r["time_s"] / 1e9)
        assert len(r["rank_times_s"]) == n
        assert r["time_s"] == pytest.approx(statistics.median(statistics.median(t) for t in r["rank_times_s"]))
        assert r["latency_us"] == pytest.approx(r["time_s"] * 1e6)  # the time of one call, in µs
        assert r["calls_per_run"] == calls_per_run(CPU_DEFAULTS, r["size_bytes"])
    for op in ALL_OPS:  # several calls a timed run at the small sizes, fewer as they grow
        calls = [r["calls_per_run"] for r in doc["results"] if r["op"] == op]
        assert calls[0] > 1 and calls == sorted(calls, reverse=True)
    smallest = {op: min(r["size_bytes"] for r in doc["results"] if r["op"] == op) for op in ALL_OPS}
    assert {(x["op"], x["size_bytes"]) for x in doc["latency"]} == set(smallest.items())
    for x in doc["latency"]:
        (r,) = [r for r in doc["results"] if (r["op"], r["size_bytes"]) == (x["op"], x["size_bytes"])]
        assert x["latency_us"] == r["latency_us"]
        if r["op"] in ("all_gather", "reduce_scatter", "all_to_all"):
            assert r["size_bytes"] == r["count"] * n * 4  # S is the total buffer
        else:
            assert r["size_bytes"] == r["count"] * 4
    assert {p["op"] for p in doc["peaks"]} == set(ALL_OPS)
    assert doc["reference"] is None  # CPU ranks: no fabric to hold the figures against
    p2p = doc["p2p"]
    assert p2p["unit"] == "GB/s" and p2p["ranks"] == list(range(n))
    for i, row in enumerate(p2p["matrix"]):
        assert [v is None for v in row] == [j == i for j in range(n)]  # every pair measured, null diagonal
    assert doc["problems"] == [] and doc["completed"] is True and doc["exit_code"] == 0
    assert doc["status"] == "ok"  # like every kind's, from the verdicts the exit code comes from


@pytest.fixture(scope="module")
def two_ranks() -> tuple[subprocess.CompletedProcess[str], dict]:
    proc = run("comm", "--device", "cpu", "--nproc", "2", "--json")
    return proc, json.loads(proc.stdout)


@pytest.fixture(scope="module")
def four_ranks(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], dict, str]:
    folder = tmp_path_factory.mktemp("comm")
    proc = run("comm", "--device", "cpu", "--nproc", "4", "--output", str(folder / "report.json"))
    return proc, json.loads((folder / "report.json").read_text()), proc.stdout


def test_two_cpu_ranks_verify_every_collective_and_the_figures_are_nccl_tests(two_ranks):
    proc, doc = two_ranks
    assert proc.returncode == 0, proc.stderr
    check_contract(doc, 2)
    assert "Traceback" not in proc.stderr


def test_four_cpu_ranks_and_the_text_report(four_ranks):
    proc, doc, text = four_ranks
    assert proc.returncode == 0, proc.stderr
    check_contract(doc, 4)
    assert "all_reduce (busbw = algbw × 1.5)" in text  # 2(n-1)/n for n = 4
    assert "peak busbw: all_reduce" in text and "send/recv GB/s" in text
    (latency,) = [line for line in text.splitlines() if line.startswith("latency at the smallest size (4.0 KiB): ")]
    for x in doc["latency"]:  # each op's time per call at 4 KiB, as the table shows it
        assert f"{x['op']} {render.seconds(x['latency_us'] / 1e6)}" in latency
    assert "30 of 30 results verified" in text


def test_torchrun_world_rank_0_writes_the_one_report():
    proc = run("--standalone", "--nproc-per-node", "3", ENVCHECK, "comm", "--device", "cpu", "--json", argv0=TORCHRUN)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)  # exactly one JSON document: the other ranks print nothing
    check_contract(doc, 3)
    assert doc["world"]["launcher"] == "torchrun"


def test_a_rank_that_never_starts_is_named_within_the_timeout():
    port = str(free_port())
    world = {"WORLD_SIZE": "3", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}
    args = [ENVCHECK, "comm", "--device", "cpu", "--timeout", str(TIMEOUT_S), "--json"]
    started = time.monotonic()
    rank1 = subprocess.Popen(
        args, env=env_with(RANK="1", **world), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    rank0 = subprocess.run(args, env=env_with(RANK="0", **world), capture_output=True, text=True, timeout=120)
    took = time.monotonic() - started
    out1, err1 = rank1.communicate(timeout=60)
    assert rank0.returncode == 1, rank0.stderr
    assert took < TIMEOUT_S + 45  # the join timeout, imports, the report (a loaded host's): not NCCL's 10 minutes
    doc = json.loads(rank0.stdout)
    (problem,) = doc["problems"]
    assert problem["rank"] == 2 and problem["host"] is None and "never joined" in problem["what"]
    assert [r["joined"] for r in doc["world"]["ranks"]] == [True, True, False]
    assert rank1.returncode == 1 and out1 == "" and "rank 0 ended the run" in err1


def test_rank_0_alone_in_a_world_of_8192_reports_in_proportion_to_its_ranks():
    """WORLD_SIZE=8192 and no other rank comes: the report names the 8191 missing ranks and has no P2P
    matrix (it used to build an 8192 x 8192 one: 42 s, 7.5 GB of memory, a 942 MB report)."""
    world = {"RANK": "0", "WORLD_SIZE": "8192", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    proc = run("comm", "--device", "cpu", "--timeout", "5", "--json", **world)
    assert proc.returncode == 1, proc.stderr[-2000:]
    doc = json.loads(proc.stdout)
    assert len(doc["problems"]) == 8191 and doc["p2p"] is None
    assert len(proc.stdout) < 1000 * 8192, len(proc.stdout)  # ~320 bytes a rank


def faulty(fault: str, *ops_args: str) -> tuple[subprocess.CompletedProcess[str], dict, float]:
    started = time.monotonic()
    proc = run(
        "comm", "--device", "cpu", "--nproc", "3", "--timeout", str(TIMEOUT_S), "--max-size", "8KiB", "--json",
        *ops_args, PYTHONPATH=str(FAULT_SITE), ENVCHECK_TEST_COMM_FAULT=fault,
    )  # fmt: skip
    return proc, json.loads(proc.stdout), time.monotonic() - started


def test_a_wrong_result_names_the_rank_and_its_host():
    proc, doc, _ = faulty("wrong:1:all_gather", "--ops", "all_reduce,all_gather")
    assert proc.returncode == 1, proc.stderr
    gathers = [r for r in doc["results"] if r["op"] == "all_gather"]
    assert gathers and all(not r["verified"] and [w["rank"] for w in r["wrong"]] == [1] for r in gathers)
    assert all(r["verified"] for r in doc["results"] if r["op"] == "all_reduce")
    assert {p["rank"] for p in doc["problems"]} == {1}
    assert all(p["host"] == HOST and "wrong result in all_gather" in p["what"] for p in doc["problems"])
    assert doc["summary"]["wrong"] == len(gathers)
    assert doc["status"] == "fail" and doc["exit_code"] == 1


def test_a_stuck_rank_is_named_and_the_run_ends_within_the_timeout():
    proc, doc, took = faulty("hang:1:reduce_scatter", "--ops", "all_reduce,reduce_scatter")
    assert proc.returncode == 1, proc.stderr
    assert took < TIMEOUT_S + 45, took  # the timeout (a loaded host's), not run()'s 180 s limit
    (problem,) = doc["problems"]
    assert problem["rank"] == 1 and problem["host"] == HOST
    assert "stuck in reduce_scatter" in problem["what"]
    assert doc["completed"] is False
    assert {r["op"] for r in doc["results"]} == {"all_reduce"}  # what finished before is still reported


def restore_sigint() -> None:
    """A shell without job control starts background commands with SIGINT ignored (and envcheck keeps
    ignoring what it inherited as ignored): the tests that press Ctrl-C give the child its default back."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextlib.contextmanager
def rank_1_stuck(
    tmp_path: Path, nproc: int, output: int | None, **popen: Any
) -> Iterator[tuple[subprocess.Popen[str], list]]:
    """``envcheck comm`` over ``nproc`` CPU ranks with rank 1 stuck in reduce_scatter (the timeout far away),
    once the all_reduce sweep is done: (envcheck, its ranks). envcheck is killed on the way out if still there."""
    mark = tmp_path / "hanging"
    args = ["comm", "--device", "cpu", "--nproc", str(nproc), "--timeout", "120", "--max-size", "8KiB", "--json"]
    process = subprocess.Popen(
        [ENVCHECK, *args, "--ops", "all_reduce,reduce_scatter"],
        stdout=output,
        stderr=output,
        text=True,
        cwd="/",
        env=env_with(
            PYTHONPATH=str(FAULT_SITE),
            ENVCHECK_TEST_COMM_FAULT="hang:1:reduce_scatter",
            ENVCHECK_TEST_COMM_HANG_MARK=str(mark),
        ),
        **{"preexec_fn": restore_sigint, **popen},
    )
    try:
        deadline = time.monotonic() + 90
        while not mark.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert mark.exists(), "rank 1 never reached reduce_scatter"
        yield process, psutil.Process(process.pid).children(recursive=True)
    finally:
        if process.poll() is None:
            process.kill()


def test_ctrl_c_ends_the_run_with_a_report_of_the_collectives_that_finished(tmp_path):
    """Ctrl-C while rank 1 is stuck in reduce_scatter (the timeout is far away): envcheck asks rank 0 to stop,
    the report holds the all_reduce sweep every rank finished, says it was interrupted and where, and exits 130;
    no rank outlives it."""
    with rank_1_stuck(tmp_path, 3, subprocess.PIPE) as (process, ranks):
        interrupted = time.monotonic()
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
        took = time.monotonic() - interrupted
    assert process.returncode == 130, stderr
    assert took < 45, took  # rank 0's grace (slow on a loaded host), not the 120 s timeout
    doc = json.loads(stdout)
    assert doc["interrupted"] is True and doc["completed"] is False and doc["exit_code"] == 130
    assert doc["status"] == "fail"  # what it found: 130 says it did not finish
    assert doc["results"] and {r["op"] for r in doc["results"]} == {"all_reduce"}
    assert all(r["verified"] for r in doc["results"])
    assert [p["what"] for p in doc["problems"]] == [
        "interrupted (Ctrl-C) during reduce_scatter 4.0 KiB: the report holds what finished before"
    ], doc["problems"]
    _, alive = psutil.wait_procs(ranks, timeout=10)
    assert not alive


def test_no_rank_outlives_envcheck_killed_outright(tmp_path):
    """SIGKILL runs no handler in envcheck: the kernel ends its ranks (they die with their launcher), so
    neither the rank stuck in a collective nor the one waiting on it outlives it."""
    with rank_1_stuck(tmp_path, 2, subprocess.DEVNULL) as (process, ranks):
        assert len(ranks) >= 2
        process.kill()
        process.wait(timeout=10)
        _, alive = psutil.wait_procs(ranks, timeout=15)
        assert not alive, [p.pid for p in alive]


def test_a_rendezvous_port_that_accepts_but_never_answers_ends_in_one_line():
    """Another service on MASTER_PORT (or a half-dead rank 0) accepts the connection and says nothing: the
    store's own timeout bounds only the connect, so a rank used to wait forever. Now it ends soon after
    --timeout, with envcheck's one line and none of c10d's C++ log."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                accepted.append(silent.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    world = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1"}
    try:
        started = time.monotonic()
        proc = run("comm", "--device", "cpu", "--timeout", "5", MASTER_PORT=str(silent.getsockname()[1]), **world)
        took = time.monotonic() - started
    finally:
        silent.close()
        for conn in accepted:
            conn.close()
    assert proc.returncode == 1, proc.stderr
    assert took < 5 + 40, took
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("envcheck comm: error: rank 1 "), proc.stderr
    assert "did not answer" in proc.stderr


def test_a_dead_rank_is_named_with_how_it_died():
    proc, doc, took = faulty("die:2:broadcast", "--ops", "all_reduce,broadcast")
    assert proc.returncode == 1, proc.stderr
    assert took < TIMEOUT_S + 45, took  # the timeout (a loaded host's), not run()'s 180 s limit
    (problem,) = doc["problems"]
    assert problem["rank"] == 2 and problem["host"] == HOST
    assert "died" in problem["what"] and "SIGKILL" in problem["what"]


def test_a_dead_rank_is_named_alone_when_a_healthy_ranks_heartbeat_starts_late():
    """On a loaded machine a rank's heartbeat thread can start seconds late (here rank 1's, 5 s: the load,
    made deterministic). A rank used to join and run before its first beat, so when rank 2 died rank 1 had
    not beaten yet either and was named dead beside it; now a rank joins once its heartbeat is seen."""
    proc = run(
        "comm", "--device", "cpu", "--nproc", "3", "--timeout", "15", "--max-size", "8KiB", "--json",
        "--ops", "all_reduce,broadcast", PYTHONPATH=str(FAULT_SITE),
        ENVCHECK_TEST_COMM_FAULT="die:2:broadcast,late_heartbeat:1:5",
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    (problem,) = json.loads(proc.stdout)["problems"]
    assert problem["rank"] == 2 and problem["host"] == HOST
    assert "died" in problem["what"] and "SIGKILL" in problem["what"]


def test_a_sizes_figure_is_a_timed_run_of_back_to_back_calls_divided_by_their_number():
    """Rank 1 stalls before the first all_reduce of each timed run (what launching the first call costs on a
    GPU, made large). Timed a run at a time, the stall is spread over the run's calls, as in nccl-tests'
    figures; timed a call at a time, as before, it was inside every call's figure."""
    stall = 0.4
    proc = run(
        "comm", "--device", "cpu", "--nproc", "2", "--ops", "all_reduce", "--max-size", "8KiB", "--iters", "2",
        "--json", PYTHONPATH=str(FAULT_SITE), ENVCHECK_TEST_COMM_FAULT="stall:1:all_reduce",
        ENVCHECK_TEST_COMM_STALL_S=str(stall),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)["results"]
    assert [r["size_bytes"] for r in results] == [4096, 8192]
    for r in results:
        calls = r["calls_per_run"]
        assert calls == calls_per_run(CPU_DEFAULTS, r["size_bytes"]) == 4  # CPU: 64 KiB a run, at most 4 calls
        assert len(r["rank_times_s"][1]) == 2  # --iters: two timed runs
        for per_call in r["rank_times_s"][1]:  # each run held the stall once, and divided it among its calls
            assert stall / calls <= per_call < stall / 2, per_call
        assert r["latency_us"] < stall / 2 * 1e6


def test_the_p2p_matrix_goes_over_the_world_group_with_no_group_per_pair(tmp_path):
    """Every transfer of the matrix uses the world group (on NCCL: its communicator, made at init with the
    device bound), and no rank makes a group for a pair: its one new_group is the side gloo group of the
    monitored barriers. Each rank records what it did (tests/comm/fault_site)."""
    proc = run("comm", "--device", "cpu", "--nproc", "3", "--ops", "p2p", "--json",
               PYTHONPATH=str(FAULT_SITE), ENVCHECK_TEST_COMM_RECORD=str(tmp_path))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    matrix = json.loads(proc.stdout)["p2p"]["matrix"]
    assert [[v is None for v in row] for row in matrix] == [[i == j for j in range(3)] for i in range(3)]
    per_pair = 1 + CPU_DEFAULTS.p2p_iters  # the verified transfer, then the timed ones
    for rank in range(3):
        calls = [json.loads(line) for line in (tmp_path / f"rank-{rank}.jsonl").read_text().splitlines()]
        assert [c["backend"] for c in calls if c["call"] == "new_group"] == ["gloo"]
        transfers = [c for c in calls if c["call"] != "new_group"]
        assert transfers and all(c["group"] == "world" for c in transfers), transfers
        for peer in set(range(3)) - {rank}:
            assert sum(c["peer"] == peer and c["call"] in ("isend", "send") for c in transfers) == per_pair
            assert sum(c["peer"] == peer and c["call"] in ("irecv", "recv") for c in transfers) == per_pair


def test_a_figure_below_the_lab_spec_minimum_fails(tmp_path):
    spec = tmp_path / "lab.toml"
    spec.write_text('[comm]\n"all_reduce" = { min_busbw = "400 GB/s" }\n"broadcast" = { min_busbw = "1 MB/s" }\n')
    proc = run(
        "comm", "--device", "cpu", "--ops", "all_reduce,broadcast", "--max-size", "4KiB", "--spec", str(spec), "--json"
    )
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    verdicts = {v["op"]: v["passed"] for v in doc["spec"]}
    assert verdicts == {"all_reduce": False, "broadcast": True}
    assert doc["status"] == "fail" and doc["exit_code"] == 1


@pytest.mark.parametrize(
    "args",
    [
        ["--timeout", "nan"],
        ["--timeout", "-1"],
        ["--ops", "allreduce"],
        ["--max-size", "huge"],
        ["--spec", "/nonexistent/lab.toml"],
    ],
)
def test_bad_input_is_one_line_and_exit_2(args):
    proc = run("comm", "--device", "cpu", *args)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("envcheck comm: error:"), proc.stderr


def test_bad_launcher_variables_are_exit_2():
    proc = run("comm", "--device", "cpu", RANK="0", WORLD_SIZE="2")
    assert proc.returncode == 2 and "MASTER_ADDR" in proc.stderr and proc.stderr.count("\n") == 1


def test_a_torch_that_breaks_on_import_stops_a_gpu_run_in_the_benchs_words():
    """comm judges the torch child's report with the one readiness check every command uses
    (envcheck.devices.resolve.torch_ready), so a torch that raises on import reads as it does for the bench."""
    fake = Path(__file__).resolve().parents[1] / "fake_torch" / "raises"
    proc = run("comm", "--device", "auto", PYTHONPATH=str(fake), ENVCHECK_TORCH_TIMEOUT="20")
    assert proc.returncode == 1 and proc.stdout == "" and proc.stderr.count("\n") == 1
    assert "torch cannot be imported (OSError: libcudnn.so.9: cannot open shared object file" in proc.stderr
    assert proc.stderr.rstrip().endswith("`envcheck doctor` says why")


@pytest.mark.parametrize("columns", [80, 120])
def test_the_peak_line_breaks_between_ops_on_a_terminal(columns):
    import re

    from tests.cli.test_terminal import read_pty

    shown = read_pty([ENVCHECK, "comm", "--device", "cpu", "--nproc", "2"], env_with(TERM="xterm"), columns)
    lines = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown).replace("\r", "").split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("peak busbw: "))
    end = next(i for i in range(start + 1, len(lines)) if not lines[i].startswith(" "))
    peak = lines[start:end]
    assert len(peak) > 1  # six ops do not fit on one line of either width
    item = r"\w+ [\d.,]+ GB/s"
    for line in peak:
        assert len(line) <= columns and not line.lstrip().startswith(","), peak
        # whole items only: an op, its figure and its unit on one line, the comma at the end
        assert re.fullmatch(rf"(peak busbw: | {{12}})({item})(, {item})*,?", line), line
    assert re.findall(r"(\w+) [\d.,]+ GB/s", " ".join(peak)) == ALL_OPS
    title = next(line for line in lines if line.startswith("send/recv GB/s"))
    assert title.endswith("(row: sender, column: receiver)")  # one line, not wrapped to the matrix's width
