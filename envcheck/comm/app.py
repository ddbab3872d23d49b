"""What ``envcheck comm`` does, as one function: ``run_comm(request) -> CommReport``.

1. :meth:`CommRequest.parse` finds everything wrong with the options (an unknown op, a size that is not
   one, a timeout that is not a positive number, a lab spec that cannot be used) before anything runs:
   one line, exit 2.
2. In a torchrun or srun world (envcheck.comm.world) this process is a rank: it runs
   envcheck.comm.rank in-process, and rank 0 alone gets a report. Otherwise the ranks are this node's
   child processes (envcheck.comm.launch) and this process never imports torch.
3. Rank 0's raw account becomes a frozen :class:`CommReport`: per op and size, each rank's median time
   and the median over the ranks (the ranks' raw times are kept), algbw and busbw as nccl-tests defines
   them, the verification, the p2p matrix, the problems with rank and host, the lab spec's verdicts.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from envcheck.comm import ops
from envcheck.comm.plan import ALL_OPS, P2P, Plan
from envcheck.comm.transport import Transport, judge
from envcheck.comm.world import World, WorldError, detect
from envcheck.core.errors import CommandError
from envcheck.core.exit import ExitCode, exit_code_for
from envcheck.core.model import Status, worst
from envcheck.core.report import host_name
from envcheck.core.units import human, parse_size

if TYPE_CHECKING:
    from envcheck.spec import LabSpec

#: A p2p pair below this share of the median of its host's other pairs is flagged (a bad link, a PCIe
#: switch in the way, a GPU on the other socket): a warning, since loopback and busy CPUs vary as much.
SLOW_PAIR_SHARE = 0.5
MAX_RANKS = 4096


@dataclass(frozen=True)
class CommRequest:
    plan: Plan
    nproc: int | None = None
    lab: LabSpec | None = None
    spec_path: str | None = None

    @classmethod
    def parse(
        cls,
        *,
        device: str = "auto",
        nproc: int | None = None,
        timeout: float | str = 60.0,
        ops_text: str | None = None,
        min_size: str | None = None,
        max_size: str | None = None,
        iters: int | None = None,
        warmup: int | None = None,
        spec_path: str | None = None,
    ) -> CommRequest:
        """Check every option; a problem is a :class:`CommandError` with exit code 2."""
        from envcheck.spec import load_spec

        def usage(message: str) -> CommandError:
            return CommandError(message, ExitCode.USAGE)

        if device not in ("auto", "cpu", "cuda"):
            raise usage(f"--device {device!r}: choose auto, cpu or cuda")
        try:
            seconds = float(timeout)
        except ValueError:
            seconds = math.nan
        if not (math.isfinite(seconds) and seconds > 0):  # NaN fails every comparison: refused here too
            raise usage(f"--timeout must be a positive number of seconds, not {str(timeout)[:40]!r}")
        chosen = tuple(part.strip() for part in (ops_text or "").split(",") if part.strip()) or ALL_OPS
        unknown = [name for name in chosen if name not in ALL_OPS]
        if unknown:
            raise usage(f"unknown op {unknown[0]!r}; choose from {', '.join(ALL_OPS)}")
        sizes = []
        for option, text in (("--min-size", min_size), ("--max-size", max_size)):
            try:
                value = parse_size(text) if text is not None else None
            except ValueError as exc:
                raise usage(f"{option}: {exc}") from None
            if value is not None and value < ops.ELEMENT_BYTES:
                raise usage(f"{option} {text}: at least {ops.ELEMENT_BYTES} bytes (one float32)")
            sizes.append(value)
        if sizes[0] is not None and sizes[1] is not None and sizes[0] > sizes[1]:
            raise usage(f"--min-size {min_size} is larger than --max-size {max_size}")
        for option, count, low in (("--iters", iters, 1), ("--warmup", warmup, 1), ("--nproc", nproc, 1)):
            if count is not None and not low <= count <= (MAX_RANKS if option == "--nproc" else 100_000):
                raise usage(f"{option} {count}: out of range")
        lab = load_spec(spec_path) if spec_path else None
        plan = Plan(device, tuple(dict.fromkeys(chosen)), sizes[0], sizes[1], iters, warmup, seconds)
        return cls(plan, nproc, lab, spec_path)

    def describe(self) -> dict[str, Any]:
        p = self.plan
        return {
            "device": p.device,
            "nproc": self.nproc,
            "ops": list(p.ops),
            "min_size": p.min_size,
            "max_size": p.max_size,
            "iters": p.iters,
            "warmup": p.warmup,
            "timeout_s": p.timeout_s,
            "spec": self.spec_path,
        }


@dataclass(frozen=True)
class RankInfo:
    rank: int
    host: str | None
    device: str | None
    gpu_uuid: str | None = None
    gpu_name: str | None = None
    local_rank: int | None = None
    joined: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "host": self.host,
            "device": self.device,
            "gpu_uuid": self.gpu_uuid,
            "gpu_name": self.gpu_name,
            "local_rank": self.local_rank,
            "joined": self.joined,
        }


@dataclass(frozen=True)
class Problem:
    rank: int | None
    host: str | None
    what: str

    def to_json(self) -> dict[str, Any]:
        return {"rank": self.rank, "host": self.host, "what": self.what}


@dataclass(frozen=True)
class OpResult:
    """One op at one size: the ranks' raw times kept, the figures derived from them."""

    op: str
    size_bytes: int
    count: int
    #: Each rank's seconds per call, one figure per timed run, by rank.
    rank_times_s: tuple[tuple[float, ...], ...]
    #: Ranks whose output was wrong, with where: {rank, host, index, got, expected, wrong, elements}.
    wrong: tuple[dict[str, Any], ...]
    world_size: int
    #: Back-to-back calls in each timed run (envcheck.comm.plan.calls_per_run); None in an older account.
    calls_per_run: int | None = None

    @property
    def time_s(self) -> float:
        """The median over the ranks of each rank's median."""
        return statistics.median(statistics.median(t) for t in self.rank_times_s)

    @property
    def latency_us(self) -> float:
        """The time of one call in µs: at the smallest sizes, the latency nccl-tests' time column shows."""
        return self.time_s * 1e6

    @property
    def algbw_gb_s(self) -> float:
        return self.size_bytes / self.time_s / 1e9 if self.time_s > 0 else math.inf

    @property
    def busbw_gb_s(self) -> float:
        return ops.busbw(self.op, self.algbw_gb_s, self.world_size)

    @property
    def verified(self) -> bool:
        return not self.wrong

    def to_json(self) -> dict[str, Any]:
        return {
            "op": self.op,
            "size_bytes": self.size_bytes,
            "count": self.count,
            "time_s": _finite(self.time_s),
            "algbw_gb_s": _finite(self.algbw_gb_s),
            "busbw_gb_s": _finite(self.busbw_gb_s),
            "busbw_factor": ops.OPS[self.op].factor(self.world_size),
            "verified": self.verified,
            "wrong": list(self.wrong),
            "rank_times_s": [list(t) for t in self.rank_times_s],
            "latency_us": _finite(self.latency_us),
            "calls_per_run": self.calls_per_run,
        }


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class P2PNode:
    """One node's point-to-point matrix: GB/s of send/recv from rank ``src`` (row) to rank ``dst`` (column)
    among the ranks on ``host``; None where not measured (the diagonal, a pair the run did not reach)."""

    host: str | None
    ranks: tuple[int, ...]
    matrix: tuple[tuple[float | None, ...], ...]
    slow_pairs: tuple[dict[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "ranks": list(self.ranks),
            "matrix": [[_finite(v) if v is not None else None for v in row] for row in self.matrix],
        }


@dataclass(frozen=True)
class P2PMatrix:
    """The point-to-point figures, node by node. P2P is a question about one node's links (NVLink,
    PCIe switches): pairs are measured only between ranks on the same host, so a world's matrix is one
    block per node, and the report grows with its ranks (8 ranks a node: 56 figures a node), not with
    their square (a world of 8192 ranks would be 67 million cells, all but 0.1 % empty)."""

    size_bytes: int
    nodes: tuple[P2PNode, ...]

    @property
    def slow_pairs(self) -> tuple[dict[str, Any], ...]:
        return tuple(pair for node in self.nodes for pair in node.slow_pairs)

    def to_json(self) -> dict[str, Any]:
        """``nodes``: one block per node; ``ranks``/``matrix``: the one node's, as envcheck.comm/1 always
        had them, for a world on one node (null for a world on several: read ``nodes``)."""
        single = self.nodes[0] if len(self.nodes) == 1 else None
        return {
            "size_bytes": self.size_bytes,
            "unit": "GB/s",
            "ranks": list(single.ranks) if single else None,
            "matrix": single.to_json()["matrix"] if single else None,
            "nodes": [node.to_json() for node in self.nodes],
            "slow_pairs": list(self.slow_pairs),
        }


@dataclass(frozen=True)
class CommReport:
    request: CommRequest
    size: int
    backend: str | None
    launcher: str
    ranks: tuple[RankInfo, ...]
    results: tuple[OpResult, ...]
    p2p: P2PMatrix | None
    problems: tuple[Problem, ...]
    completed: bool
    generated_at: datetime
    duration_s: float
    iters: int | None = None
    warmup: int | None = None
    spec_verdicts: tuple[Any, ...] | None = None
    #: Stopped early by Ctrl-C or a signal: the report holds the steps every rank finished before.
    interrupted: bool = False
    #: The signal that cut it short (``SIGTERM``), if one did (envcheck.core.stop).
    stopped_by: str | None = None
    #: What NCCL chose per rank (its parsed log) and the findings over it (envcheck.comm.transport).
    transport: Transport | None = None

    def statuses(self) -> list[Status]:
        """Every verdict of the run: each problem (a wrong result, a missing, stuck or dead rank), each
        result that did not verify, a run that did not finish, each figure below the lab spec's minimum."""
        return [
            *(Status.FAIL for _ in self.problems),
            *(Status.OK if r.verified else Status.FAIL for r in self.results),
            *([] if self.completed else [Status.FAIL]),
            *(Status.FAIL for v in self.spec_verdicts or () if getattr(v, "passed", None) is False),
            *(f.status for f in (self.transport.findings if self.transport else ())),
        ]

    @property
    def status(self) -> Status:
        return worst(self.statuses())

    @property
    def exit_code(self) -> ExitCode:
        """0: every collective ran and verified; 1: a problem or a figure below the lab spec's minimum;
        130/143/129: stopped by Ctrl-C, SIGTERM, SIGHUP (core.exit's policy, as for every command)."""
        return exit_code_for(self.statuses(), interrupted=self.interrupted, stopped_by=self.stopped_by)

    def peaks(self) -> list[dict[str, Any]]:
        """Per op, its highest busbw over the sizes (verified results only), and at which size."""
        best: dict[str, OpResult] = {}
        for r in self.results:
            if (
                r.verified
                and math.isfinite(r.busbw_gb_s)
                and (r.op not in best or r.busbw_gb_s > best[r.op].busbw_gb_s)
            ):
                best[r.op] = r
        return [{"op": op, "busbw_gb_s": r.busbw_gb_s, "size_bytes": r.size_bytes} for op, r in best.items()]

    def latencies(self) -> list[dict[str, Any]]:
        """Per op, the time of one call at its smallest size (verified results only): the latency that
        nccl-tests' small-message rows show, where bandwidth says nothing."""
        smallest: dict[str, OpResult] = {}
        for r in self.results:
            if not (r.verified and math.isfinite(r.latency_us)):
                continue
            if r.op not in smallest or r.size_bytes < smallest[r.op].size_bytes:
                smallest[r.op] = r
        return [{"op": op, "latency_us": r.latency_us, "size_bytes": r.size_bytes} for op, r in smallest.items()]


# -- from rank 0's raw account to the report -------------------------------------------------------------


def build_report(
    request: CommRequest,
    raw: Mapping[str, Any],
    *,
    generated_at: datetime,
    started: float,
    extra_problems: list[Problem] | None = None,
) -> CommReport:
    world = raw["world"]
    n = int(world["size"])
    ranks = tuple(
        RankInfo(
            int(r["rank"]),
            r.get("host"),
            r.get("device"),
            r.get("gpu_uuid"),
            r.get("gpu_name"),
            r.get("local_rank"),
            r.get("joined", True),
        )
        for r in world.get("ranks") or []
    )
    host_of = {r.rank: r.host for r in ranks}
    records = raw.get("records") or []
    results = tuple(_results(records, n, host_of))
    problems = [Problem(p.get("rank"), p.get("host"), p["what"]) for p in raw.get("problems") or []]
    for r in results:
        for w in r.wrong:
            problems.append(
                Problem(
                    w["rank"],
                    w["host"],
                    f"wrong result in {r.op} {human(r.size_bytes)}: element {w['index']} of {w['elements']} "
                    f"is {w['got']:g}, expected {w['expected']:g} ({w['wrong']} wrong)",
                )
            )
    p2p = _p2p(records, ranks, problems, host_of) if P2P in request.plan.ops else None
    for extra in extra_problems or []:
        problems = _merge(problems, extra)
    report = CommReport(
        request=request,
        size=n,
        backend=world.get("backend"),
        launcher=world.get("launcher", "envcheck"),
        ranks=ranks,
        results=results,
        p2p=p2p,
        problems=tuple(problems),
        completed=bool(raw.get("completed")),
        generated_at=generated_at,
        duration_s=time.monotonic() - started,
        iters=raw.get("iters"),
        warmup=raw.get("warmup"),
        interrupted=bool(raw.get("interrupted")),
        stopped_by=raw.get("stopped_by") if isinstance(raw.get("stopped_by"), str) else None,
        transport=judge(world.get("backend"), raw.get("nccl")),
    )
    if request.lab is not None:
        from envcheck.spec.comm import judge_comm

        verdicts = tuple(judge_comm(request.lab, [r.to_json() for r in results], p2p.to_json() if p2p else None))
        report = _with_verdicts(report, verdicts)
    return report


def _with_verdicts(report: CommReport, verdicts: tuple[Any, ...]) -> CommReport:
    from dataclasses import replace

    return replace(report, spec_verdicts=verdicts)


def _merge(problems: list[Problem], extra: Problem) -> list[Problem]:
    """The parent's view of a rank's process (killed by a signal...) joins rank 0's problem for that rank."""
    for i, p in enumerate(problems):
        if extra.rank is not None and p.rank == extra.rank:
            problems[i] = Problem(p.rank, p.host or extra.host, f"{p.what} ({extra.what})")
            return problems
    return [*problems, extra]


def _results(records: list[dict[str, Any]], n: int, host_of: Mapping[int, str | None]) -> list[OpResult]:
    """One result per collective step that every rank finished, in the order they ran."""
    by_step: dict[int, list[dict[str, Any]]] = {}
    for rec in records:
        if rec["op"] != P2P:
            by_step.setdefault(int(rec["index"]), []).append(rec)
    results = []
    for index in sorted(by_step):
        recs = sorted(by_step[index], key=lambda rec: rec["rank"])
        if len(recs) != n:
            continue
        wrong = tuple(
            {"rank": rec["rank"], "host": host_of.get(rec["rank"]), **rec["mismatch"]}
            for rec in recs
            if rec["mismatch"]
        )
        results.append(
            OpResult(
                op=recs[0]["op"],
                size_bytes=int(recs[0]["size_bytes"]),
                count=int(recs[0]["count"]),
                rank_times_s=tuple(tuple(float(t) for t in rec["times_s"]) for rec in recs),
                wrong=wrong,
                world_size=n,
                calls_per_run=int(recs[0]["calls"]) if recs[0].get("calls") is not None else None,
            )
        )
    return results


def _p2p(
    records: list[dict[str, Any]],
    ranks: tuple[RankInfo, ...],
    problems: list[Problem],
    host_of: Mapping[int, str | None],
) -> P2PMatrix | None:
    """The P2P figures node by node (:class:`P2PMatrix`): a block for each host with two ranks or more that
    joined; ranks that never joined have no host and no block (they are problems already)."""
    pairs = [rec for rec in records if rec["op"] == P2P]
    by_host: dict[str, list[int]] = {}
    for r in ranks:
        if r.host is not None and r.joined:
            by_host.setdefault(r.host, []).append(r.rank)
    blocks = {host: members for host, members in by_host.items() if len(members) > 1}
    if not blocks:
        return None
    position = {rank: (host, i) for host, members in blocks.items() for i, rank in enumerate(members)}
    matrices = {host: [[None] * len(members) for _ in members] for host, members in blocks.items()}
    size = 0
    for rec in pairs:
        src, dst = position.get(rec["src"]), position.get(rec["dst"])
        if src is not None and dst is not None and src[0] == dst[0]:
            size = int(rec["size_bytes"])
            time_s = float(rec["times_s"][0])
            matrices[src[0]][src[1]][dst[1]] = size / time_s / 1e9 if time_s > 0 else None
        if rec["mismatch"]:
            m = rec["mismatch"]
            problems.append(
                Problem(
                    rec["dst"],
                    host_of.get(rec["dst"]),
                    f"received wrong data from rank {rec['src']} ({host_of.get(rec['src'])}) over send/recv: element "
                    f"{m['index']} of {m['elements']} is {m['got']:g}, expected {m['expected']:g} ({m['wrong']} wrong)",
                )
            )
    nodes = tuple(
        P2PNode(
            host,
            tuple(members),
            tuple(tuple(row) for row in matrices[host]),
            tuple(slow_pairs(tuple(members), matrices[host])) if pairs else (),
        )
        for host, members in blocks.items()
    )
    return P2PMatrix(size, nodes)


def slow_pairs(order: tuple[int, ...], matrix: list[list[float | None]]) -> list[dict[str, Any]]:
    """Pairs of one node far below the median of the node's other pairs: one bad link stands out."""
    measured = [(i, j, v) for i, row in enumerate(matrix) for j, v in enumerate(row) if v is not None]
    flagged = []
    for i, j, value in measured:
        others = [v for a, b, v in measured if (a, b) != (i, j)]
        if len(others) < 2:
            continue
        median = statistics.median(others)
        if median > 0 and value < SLOW_PAIR_SHARE * median:
            flagged.append(
                {
                    "src": order[i],
                    "dst": order[j],
                    "gb_s": value,
                    "median_gb_s": median,
                    "shortfall": 1 - value / median,
                }
            )
    return flagged


# -- running ---------------------------------------------------------------------------------------------


def joined_world(env: Mapping[str, str]) -> World | None:
    """The torchrun/srun world this process belongs to, if any (bad launcher variables: exit 2)."""
    try:
        return detect(env)
    except WorldError as exc:
        raise CommandError(str(exc), ExitCode.USAGE) from None


def resolve_launch(request: CommRequest, env: Mapping[str, str]) -> tuple[Plan, int]:
    """For ranks of our own: the device (auto: CUDA when torch sees a GPU) and how many ranks. torch is
    asked in the doctor's torch child, never imported here, and judged ready as for every command
    (envcheck.devices.resolve)."""
    from dataclasses import replace

    from envcheck.devices import resolve

    plan = request.plan
    resolve.torch_installed()
    if plan.device == "cpu":
        return plan, request.nproc or 2
    from envcheck.probes.torch import probe_torch

    info = probe_torch(env)
    resolve.torch_ready(info, gpus=True)
    gpus = resolve.resolve(resolve.parse(plan.device), resolve.probed_inventory(info, env), env)
    if gpus is None:
        return replace(plan, device="cpu"), request.nproc or 2
    nproc = request.nproc or len(gpus)
    if nproc > len(gpus):
        raise CommandError(f"--nproc {nproc}: only {len(gpus)} GPU(s) are visible (one rank per GPU)", ExitCode.USAGE)
    return replace(plan, device="cuda"), nproc


def run_comm(
    request: CommRequest,
    *,
    env: Mapping[str, str] | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> CommReport:
    """Launch this node's ranks and build the report from rank 0's account and the parent's view."""
    from envcheck.comm.launch import exit_words, launch
    from envcheck.core import stop
    from envcheck.core.report import utc_now
    from envcheck.core.workers import last_line

    env = dict(os.environ if env is None else env)
    generated_at, started = utc_now(), time.monotonic()
    plan, nproc = resolve_launch(request, env)
    launched = launch(plan, nproc, env=env, progress=progress)
    host = host_name()
    extra = []
    for child in launched.children:
        words = exit_words(child)
        if words or (launched.raw is None and child.error):
            # A rank killed by a signal wrote nothing about it; its stderr's last line would mislead.
            detail = child.error or (None if child.returncode and child.returncode < 0 else last_line(child.stderr))
            extra.append(Problem(child.rank, host, "; ".join(filter(None, [words, detail])) or "ended"))
    raw = launched.raw
    by = stop.stopped_by(launched.interrupted)
    if raw is None:
        what = "rank 0 ended without a report"
        if launched.interrupted:
            what = f"interrupted ({stop.stopped_words(by)}) before rank 0 could report"
        elif launched.stalled_s is not None:
            what = f"rank 0 reported no progress for {launched.stalled_s:.0f} s; every rank was stopped"
        raw = {
            "world": {
                "size": nproc,
                "backend": "nccl" if plan.device == "cuda" else "gloo",
                "launcher": "envcheck",
                "ranks": [{"rank": r, "host": host, "device": None} for r in range(nproc)],
            },
            "records": [],
            "problems": [] if any(p.rank == 0 for p in extra) else [{"rank": 0, "host": host, "what": what}],
            "completed": False,
        }
    if launched.interrupted:
        raw = {**raw, "interrupted": True, "stopped_by": by}
    return build_report(request, raw, generated_at=generated_at, started=started, extra_problems=extra)


def run_as_rank(
    request: CommRequest,
    world: World,
    *,
    progress: Callable[[dict[str, Any]], None] | None = None,
    on_report: Callable[[CommReport], int],
) -> int:
    """This process is one rank of a torchrun/srun world: run it; rank 0 delivers the report through
    ``on_report`` (also from the watchdog's thread, should a step hang) and returns its exit code; the
    other ranks return 0, or their own exit code when they failed."""
    from envcheck.comm import rank as rank_module
    from envcheck.core.model import first_line
    from envcheck.core.report import utc_now

    if request.nproc is not None:
        raise CommandError(
            f"--nproc: this process is rank {world.rank} of a world of {world.size} that {world.launcher} started",
            ExitCode.USAGE,
        )
    generated_at, started = utc_now(), time.monotonic()

    def deliver(raw: dict[str, Any]) -> int:
        return on_report(build_report(request, raw, generated_at=generated_at, started=started))

    try:
        raw = rank_module.run_rank(request.plan, world, progress=progress, on_hang=deliver)
    except SystemExit as exc:
        if exc.code == rank_module.EXIT_ABORTED:
            raise CommandError(
                f"rank {world.rank}: rank 0 ended the run before it started (its report names the ranks)",
                ExitCode.FAILED,
            ) from None
        # This rank's failure is in rank 0's report; here it only makes the launcher see a failed rank.
        return int(ExitCode.FAILED) if exc.code else 0
    except Exception as exc:  # noqa: BLE001 - one line naming this rank, never a traceback
        raise CommandError(f"rank {world.rank} ({host_name()}): {first_line(exc)}", ExitCode.FAILED) from None
    return deliver(raw) if raw is not None else 0
