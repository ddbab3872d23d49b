"""What one rank of ``envcheck comm`` does: join, sweep the collectives, measure the send/recv matrix,
and hand everything to rank 0, which writes the one report.

Every rank runs this, whether envcheck started it (``python -m envcheck.comm PLAN``, a child of
envcheck.comm.launch) or torchrun/srun did (``envcheck comm`` in each process). torch is imported here
and only here.

Why so much machinery around a few collectives: a distributed job that goes wrong usually *hangs*, and
NCCL's own answer is a ten-minute timeout that names nobody. Here no blocking step may outlast
``timeout_s``, and whoever does not keep up is named with its host:

* **joining** goes through the rendezvous store (a TCPStore at MASTER_ADDR:MASTER_PORT) before any
  process group exists: each rank writes who it is (host, device, GPU uuid) under its own key, and rank 0
  waits at most ``timeout_s`` for all of them. A rank whose key never came "never joined".
* **each step** (one op at one size, or one pair of the matrix) starts with ``monitored_barrier`` on a
  side gloo group: rank 0 learns which ranks did not arrive within the timeout, by rank. Every op of the
  main group has the same timeout (gloo raises; NCCL's is longer, because a thread here fires first).
* **markers in the store** tell stuck ranks from their victims after a failure: each rank writes where it
  is (``at``: step and phase) and what it finished (``res``), a heartbeat thread increments ``beat``
  twice a second, and a rank that failed writes its error (``err``). A rank whose heartbeat stopped
  died (or froze); one that never reached the step, or entered it and never finished while the others
  timed out waiting, is stuck; the others are its victims and are not blamed.
* **a watchdog** thread fires when one step outlasts the timeout anyway (a native call that never
  returns): rank 0 then diagnoses and reports from that thread, the others write their error; then the
  process ends itself (``os._exit``). Behind it, ``SIGALRM`` with its default action kills a process whose
  every thread is stuck.
* **the heartbeat thread** also ends a rank at once when rank 0 has given up on the run (``abort``) or
  its store has gone (rank 0 died), so no rank outlives the run by more than a second or two.

A test can patch :func:`run_step` and :func:`envcheck.comm.ops.run` (the rank's steps are called through
the module) to make a rank hang, die or return a wrong result: production code carries no test hook.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

from envcheck.comm import ops
from envcheck.comm.plan import P2P, Plan, calls_per_run, sweep
from envcheck.comm.world import World
from envcheck.core import workers
from envcheck.core.model import first_line
from envcheck.core.report import host_name
from envcheck.probes import nccl_log

#: A rank's exit codes, for the launcher: ended because rank 0 gave up on the run (it reports why), a
#: watchdog fired, rank 0's store went away.
EXIT_FAILED, EXIT_ABORTED, EXIT_STUCK, EXIT_LOST = 1, 3, 4, 5
HEARTBEAT_S = 0.5
#: Long enough for four heartbeats: a rank that beat none of them in this time has died or frozen.
STALE_S = 2.0
#: How long rank 0, giving up before the run started, waits for the ranks that joined to read why.
READ_WAIT_S = 5.0
#: Past the watchdog, SIGALRM (default action: the kernel ends the process) gets this long.
BACKSTOP_S = 30.0
#: NCCL's own timeout is longer than ours, so that the watchdog here, which names ranks, fires first.
NCCL_EXTRA_S = 60.0
#: How a wait that ran out of time says so.
_TIMED_OUT = re.compile(r"time[d ]?\s?out|timeout", re.I)
#: Errors a rank gets *because* another rank failed: a timeout waiting for it, its connection closing.
_VICTIM = re.compile(_TIMED_OUT.pattern + r"|connection (closed|reset|refused)|broken pipe|peer|abort", re.I)
_BARRIER = re.compile(r"Ranks? ([\d, ]+) failed to pass monitoredBarrier")


class Aborted(Exception):
    """Rank 0 gave up on the run before it started (a rank never joined): it reports why."""


@dataclass(frozen=True)
class Identity:
    """Who a rank is: what it announces in the store and the report shows."""

    rank: int
    host: str
    device: str
    local_rank: int
    pid: int
    gpu_uuid: str | None = None
    gpu_name: str | None = None
    #: Free memory of this rank's device (the host's available memory / local ranks on CPU).
    free_bytes: int | None = None


@dataclass(frozen=True)
class Step:
    """One unit of the run: ``op`` at ``size`` bytes, or (``op`` p2p) one transfer ``src`` → ``dst``.
    ``calls``: the back-to-back calls in each timed run of a collective (rank 0 decides, so that every rank
    makes the same calls)."""

    op: str
    size: int
    src: int | None = None
    dst: int | None = None
    calls: int = 1

    def words(self) -> str:
        from envcheck.core.units import human

        if self.op == P2P:
            return f"send/recv rank {self.src} → rank {self.dst} ({human(self.size)})"
        return f"{self.op} {human(self.size)}"


@dataclass
class Ctx:
    """One rank's run: its world, device, store and groups, and the schedule rank 0 published."""

    plan: Plan
    world: World
    me: Identity
    cuda: bool
    store: Any
    device: Any = None
    side: Any = None
    steps: list[Step] = field(default_factory=list)
    iters: int = 1
    warmup: int = 0
    p2p_iters: int = 1
    ranks: list[dict[str, Any]] = field(default_factory=list)
    watchdog: Watchdog | None = None
    #: The world group is bound to this rank's GPU (``device_id``): NCCL made its communicator at init,
    #: and point-to-point transfers can use it (:func:`_p2p_transfer`).
    bound: bool = False
    #: Where NCCL writes this rank's log (:func:`capture_nccl`); None on gloo.
    nccl: NcclCapture | None = None

    @property
    def rank(self) -> int:
        return self.world.rank

    @property
    def n(self) -> int:
        return self.world.size


# -- the watchdog and the heartbeat --------------------------------------------------------------------


class Watchdog:
    """Fires ``expire(what)`` when one step outlasts ``limit_s`` (see the module's docstring)."""

    def __init__(self, limit_s: float, expire: Callable[[str], None]) -> None:
        self.limit_s = limit_s
        self.expire = expire
        self.what = "starting"
        self.deadline: float | None = None
        self._lock = threading.Lock()
        threading.Thread(target=self._watch, name="envcheck-comm-watchdog", daemon=True).start()

    def arm(self, what: str, limit_s: float | None = None) -> None:
        limit = self.limit_s if limit_s is None else limit_s
        with self._lock:
            self.what, self.deadline = what, time.monotonic() + limit
        if hasattr(signal, "alarm"):
            signal.alarm(int(math.ceil(limit + BACKSTOP_S)))

    def disarm(self) -> None:
        with self._lock:
            self.deadline = None
        if hasattr(signal, "alarm"):
            signal.alarm(0)

    def _watch(self) -> None:
        while True:
            time.sleep(0.1)
            with self._lock:
                fired = self.deadline is not None and time.monotonic() > self.deadline
                what = self.what
            if fired:
                self.expire(what)
                return


def _client(world: World, timeout_s: float) -> Any:
    """A store client of our own (the heartbeat and the watchdog must not share the main thread's)."""
    import torch.distributed as dist

    raw = bounded_store(
        timeout_s,
        lambda: dist.TCPStore(
            world.master_addr, world.master_port, None, False, timedelta(seconds=timeout_s), wait_for_workers=False
        ),
    )
    return dist.PrefixStore(_prefix(world), raw)


#: Beyond a store's own timeout, how long its constructor may take before it is given up on.
STORE_GRACE_S = 5.0


def bounded_store(timeout_s: float, make: Callable[[], Any]) -> Any:
    """``make()`` (a TCPStore), given up ``timeout_s`` + :data:`STORE_GRACE_S` from now. The store's own
    timeout bounds the connect, not the handshake after it: a port that accepts and never answers (another
    service on MASTER_PORT, a half-dead rank 0) kept a rank waiting forever. It runs in a daemon thread
    (the constructor waits without holding the GIL), which the process leaves behind when it ends."""
    made: dict[str, Any] = {}

    def attempt() -> None:
        try:
            made["store"] = make()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            made["error"] = exc

    thread = threading.Thread(target=attempt, name="envcheck-comm-store", daemon=True)
    thread.start()
    thread.join(timeout_s + STORE_GRACE_S)
    if thread.is_alive():
        raise TimeoutError(f"connected, but no answer within {timeout_s + STORE_GRACE_S:g} s")
    if "error" in made:
        raise made["error"]
    return made["store"]


def _prefix(world: World) -> str:
    return f"envcheck.comm/{world.run_id}/"


def _heartbeat(ctx: Ctx, stop: threading.Event, beating: threading.Event) -> None:
    """Beat; end this rank when rank 0 gave up (it reports) or its store went away (it died).

    The first beat is written before ``beating`` is set, and the rank joins only then: a diagnosis reads
    "no heartbeat" as death, so a rank must not reach a step before its heartbeat is seen. (It used to
    beat first half a second after its thread had connected: on a loaded machine a healthy rank could
    still be silent when a step failed, and was named dead beside the rank that died.)"""
    try:
        store = _client(ctx.world, 5.0)
        store.add(f"beat/{ctx.rank}", 1)
    except Exception:  # noqa: BLE001 - no second connection: no heartbeat, and rank 0 will say so
        return
    finally:
        beating.set()
    failures = 0
    while not stop.wait(HEARTBEAT_S):
        try:
            store.add(f"beat/{ctx.rank}", 1)
            aborted = ctx.rank != 0 and store.check(["abort"])
            failures = 0
        except Exception:  # noqa: BLE001 - the store is gone or slow: three in a row is gone
            failures += 1
            if failures >= 3 and ctx.rank != 0 and not stop.is_set():
                _say(
                    f"rank {ctx.rank} ({ctx.me.host}): lost rank 0's store at {_where(ctx.world)}: rank 0 ended or died"
                )
                os._exit(EXIT_LOST)
            continue
        if aborted and not stop.is_set():
            _say(f"rank {ctx.rank} ({ctx.me.host}): stopping: rank 0 ended the run (its report says why)")
            os._exit(EXIT_ABORTED)


def _say(line: str) -> None:
    try:
        sys.stderr.write(f"envcheck comm: {line}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _where(world: World) -> str:
    return f"{world.master_addr}:{world.master_port}"


# -- joining ---------------------------------------------------------------------------------------------


def identify(plan: Plan, world: World) -> tuple[Identity, bool, Any]:
    """Pick this rank's device (its local rank's GPU, or the CPU) and say who it is."""
    import torch

    cuda = plan.device == "cuda" or (plan.device == "auto" and torch.cuda.is_available())
    host = host_name()
    if not cuda:
        local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "0") or 0) or 1)
        free = _available_memory()
        return (
            Identity(world.rank, host, "cpu", world.local_rank, os.getpid(), free_bytes=free and free // local),
            False,
            None,
        )
    count = torch.cuda.device_count()
    if count == 0:
        raise RuntimeError("no CUDA GPU is visible to this rank (torch.cuda.device_count() is 0)")
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    index = gpu_index(world.local_rank, count, visible)
    torch.cuda.set_device(index)
    props = torch.cuda.get_device_properties(index)
    uuid = getattr(props, "uuid", None)
    uuid_text = None if uuid is None else uuid_text_for(str(uuid), visible)
    free, _total = torch.cuda.mem_get_info(index)
    device = torch.device("cuda", index)
    return (
        Identity(world.rank, host, f"cuda:{index}", world.local_rank, os.getpid(), uuid_text, props.name, int(free)),
        True,
        device,
    )


def gpu_index(local_rank: int, count: int, visible: str | None) -> int:
    """The GPU this rank uses: its local rank's, or the only one it sees (a launcher that gives each rank
    one GPU: Slurm's --gpus-per-task=1). A local rank past the GPUs it sees is an error said in words: the
    old ``local_rank % count`` silently put two ranks on one GPU, and their figures were half each."""
    if count == 1:
        return 0
    if 0 <= local_rank < count:
        return local_rank
    shown = f" (CUDA_VISIBLE_DEVICES={visible})" if visible is not None else ""
    raise RuntimeError(
        f"local rank {local_rank} has no GPU of its own: this rank sees {count} GPUs{shown}; start at most "
        f"{count} ranks per node (torchrun --nproc-per-node={count}), or give each rank its own GPU"
    )


def uuid_text_for(uuid: str, visible: str | None) -> str:
    """The UUID as nvidia-smi writes it: ``GPU-…`` for a GPU, ``MIG-…`` for a MIG instance (torch gives the
    bare UUID of either; a rank that sees MIG instances was given them by CUDA_VISIBLE_DEVICES)."""
    if uuid.startswith(("GPU-", "MIG-")):
        return uuid
    entries = [e.strip() for e in (visible or "").split(",") if e.strip()]
    mig = bool(entries) and all(e.startswith("MIG-") for e in entries)
    return f"{'MIG' if mig else 'GPU'}-{uuid}"


def _available_memory() -> int | None:
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def group_options(init: Callable[..., Any], *, cuda: bool, device: Any, timeout_s: float) -> dict[str, Any]:
    """The keywords of ``init_process_group`` (``init``) for this rank. On NCCL the group is bound to the
    rank's GPU (``device_id``, torch 2.3 and later: told by ``init``'s own signature): NCCL then makes the
    world's communicator at once, collectives and point-to-point transfers share it, and c10d stops
    guessing the device. Unbound, c10d makes communicators lazily, and a send/recv between two ranks a new
    2-rank communicator for every pair (28 on 8 GPUs: seconds each, and their own buffers). gloo has no
    device to bind. NCCL's timeout is longer than ours, so that the watchdog here, which names ranks,
    fires first."""
    options: dict[str, Any] = {
        "backend": "nccl" if cuda else "gloo",
        "timeout": timedelta(seconds=timeout_s + NCCL_EXTRA_S if cuda else timeout_s),
    }
    if cuda and "device_id" in inspect.signature(init).parameters:
        options["device_id"] = device
    return options


def connect(world: World, timeout_s: float) -> Any:
    """The rendezvous store: rank 0 serves it (unless torchrun's agent does); the others connect,
    retrying until ``timeout_s``. A store that never answers is rank 0 that never came."""
    import torch.distributed as dist

    serve = world.rank == 0 and not world.agent_store
    try:
        raw = bounded_store(
            timeout_s,
            lambda: dist.TCPStore(
                world.master_addr,
                world.master_port,
                None,
                serve,
                timedelta(seconds=timeout_s),
                wait_for_workers=False,
                multi_tenant=True,
            ),
        )
    except Exception as exc:  # noqa: BLE001 - DistNetworkError, TimeoutError, RuntimeError: one line
        if serve:
            raise RuntimeError(f"cannot serve the rendezvous store at {_where(world)}: {first_line(exc)}") from None
        raise RuntimeError(
            f"rank 0's rendezvous store at {_where(world)} did not answer within {timeout_s:g} s: rank 0 never "
            f"started, or {world.master_addr} cannot be reached from this host ({first_line(exc)})"
        ) from None
    return dist.PrefixStore(_prefix(world), raw)


def join(ctx: Ctx) -> dict[str, Any]:
    """Announce this rank; rank 0 waits for every announcement and publishes the schedule (or the
    abort). Returns the schedule; raises :class:`Aborted` when rank 0 gave up."""
    store, rank, n = ctx.store, ctx.rank, ctx.n
    store.set(f"rank/{rank}", json.dumps(asdict(ctx.me)))
    store.add("joined", 1)
    if rank != 0:
        store.set_timeout(timedelta(seconds=2 * ctx.plan.timeout_s + 10))
        try:
            start = json.loads(store.get("start"))
        except Exception as exc:  # noqa: BLE001 - rank 0 published no start: one line, by its cause
            error = first_line(exc)
            if _TIMED_OUT.search(error):
                raise RuntimeError(
                    f"rank 0 published no start within {2 * ctx.plan.timeout_s + 10:g} s: rank 0 is stopped or "
                    f"hung ({error})"
                ) from None
            raise RuntimeError(
                f"lost rank 0's store at {_where(ctx.world)} before the run started: rank 0 ended or died ({error})"
            ) from None
        store.set_timeout(timedelta(seconds=ctx.plan.timeout_s))
        if "abort" in start:
            _guarded(lambda: store.set(f"read/{rank}", "1"))
            raise Aborted(start["abort"])
        return start
    deadline = time.monotonic() + ctx.plan.timeout_s
    while store.add("joined", 0) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    ranks = [_announced(store, k) for k in range(n)]
    missing = [k for k, r in enumerate(ranks) if r is None]
    if missing:
        words = f"rank(s) {', '.join(map(str, missing))} never joined within {ctx.plan.timeout_s:g} s"
        store.set("start", json.dumps({"abort": words}))
        _wait_for_readers(store, [k for k in range(1, n) if k not in missing])
        raise Aborted(words)
    start = schedule(ctx, [r for r in ranks if r is not None])
    store.set("start", json.dumps(start))
    return start


def _wait_for_readers(store: Any, joined: list[int]) -> None:
    """Rank 0 serves the store: leaving the moment the abort is written let a rank that had joined lose the
    store before it read the abort, and it said only "connection closed" instead of why the run ended. Each
    rank that joined acknowledges the read under its own key (a count let a late rank's stand in for one
    still on its way); rank 0 waits for them, at most :data:`READ_WAIT_S` (a rank that died says nothing)."""
    keys = [f"read/{k}" for k in joined]
    deadline = time.monotonic() + READ_WAIT_S
    while keys and time.monotonic() < deadline:
        read = _guarded(lambda: store.check(keys))
        if read is None or read:
            return
        time.sleep(0.02)


def _guarded(call: Callable[[], Any]) -> Any:
    """A store call whose failure changes nothing (an acknowledgement): None when it failed."""
    try:
        return call()
    except Exception:  # noqa: BLE001 - the store went: nothing to acknowledge to
        return None


def _announced(store: Any, rank: int) -> dict[str, Any] | None:
    if not store.check([f"rank/{rank}"]):
        return None
    data: dict[str, Any] = json.loads(store.get(f"rank/{rank}"))
    return data


def schedule(ctx: Ctx, ranks: list[dict[str, Any]]) -> dict[str, Any]:
    """Rank 0's schedule for everyone: the sweep's sizes (capped by the fullest rank's free memory), the
    collective steps, and one p2p step per ordered pair of ranks on the same host."""
    frees = [r["free_bytes"] for r in ranks if r.get("free_bytes")]
    d = ctx.plan.defaults(ctx.cuda)
    sizes = sweep(ctx.plan, cuda=ctx.cuda, free_bytes=min(frees) if frees else None)
    # One rank has no neighbour to send to (gloo refuses a pair with itself): no send_recv then.
    collectives = [op for op in ctx.plan.collectives() if not (op == "send_recv" and ctx.n == 1)]
    steps = [Step(op, size, calls=calls_per_run(d, size)) for op in collectives for size in sizes]
    if P2P in ctx.plan.ops:
        p2p_size = min(d.p2p_size, max(sizes))
        steps += [
            Step(P2P, p2p_size, a["rank"], b["rank"])
            for a in ranks
            for b in ranks
            if a["rank"] != b["rank"] and a["host"] == b["host"]
        ]
    return {
        "ranks": ranks,
        "steps": [asdict(s) for s in steps],
        "iters": ctx.plan.iters or d.iters,
        "warmup": ctx.plan.warmup if ctx.plan.warmup is not None else d.warmup,
        "p2p_iters": d.p2p_iters,
    }


# -- one step --------------------------------------------------------------------------------------------


def _sync(ctx: Ctx) -> None:
    if ctx.cuda:
        import torch

        torch.cuda.synchronize()


def _timed(ctx: Ctx, fn: Callable[[], None], runs: int, calls: int, *, barrier: bool = True) -> list[float]:
    """Seconds per call of ``fn``, one figure per timed run: each run is ``calls`` back-to-back calls
    between one pair of clock readings, divided by ``calls``, as nccl-tests times its ``-n`` iterations.

    On a GPU the clock is a pair of CUDA events on the stream (the GPU's own time, not the host's). The
    runs are queued one after another with no synchronisation between them (nor after the warm-up), so
    the stream is never idle waiting for Python to launch the next call except where a call is shorter
    than its launch, which is what the many calls of a small size's run spread out. (Timed one call at a
    time between events on an idle stream, every small-size figure held the host's launch latency: 2-4x
    nccl-tests' below a few MiB.) On the CPU: ``perf_counter`` after a barrier, so that every rank starts
    each run together."""
    import torch.distributed as dist

    if ctx.cuda:
        import torch

        marks = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(runs)]
        for start, end in marks:
            start.record()
            for _ in range(calls):
                fn()
            end.record()
        _sync(ctx)
        return [start.elapsed_time(end) / 1000.0 / calls for start, end in marks]
    times = []
    for _ in range(runs):
        if barrier:
            dist.barrier()
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - t0) / calls)
    return times


def run_step(ctx: Ctx, index: int, step: Step) -> dict[str, Any] | None:
    """Run one step on this rank; its record (None for a p2p step this rank has no part in)."""
    if step.op == P2P:
        return _p2p(ctx, step)
    op, n = ops.OPS[step.op], ctx.n
    count = op.count(step.size, n)
    bufs = ops.make_buffers(step.op, count, ctx.rank, n, ctx.device or "cpu", verify=True)
    ops.run(step.op, bufs, ctx.rank, n)
    _sync(ctx)
    mismatch = ops.first_mismatch(bufs.recv, ops.expected(step.op, count, ctx.rank, n, ctx.device or "cpu"))
    bufs = ops.make_buffers(step.op, count, ctx.rank, n, ctx.device or "cpu", verify=False)
    for _ in range(max(0, ctx.warmup - 1)):
        ops.run(step.op, bufs, ctx.rank, n)
    times = _timed(ctx, lambda: ops.run(step.op, bufs, ctx.rank, n), ctx.iters, step.calls)
    return {
        "size_bytes": op.size_bytes(count, n),
        "count": count,
        "times_s": times,
        "calls": step.calls,
        "mismatch": mismatch,
    }


def _p2p_transfer(ctx: Ctx, send: bool, buf: Any, peer: int) -> None:
    """One send or recv of the matrix, over the world group, with no group of its own for the pair.

    A single ``dist.send``/``recv`` on NCCL keys its communicator by the pair ("low:high") and, unless
    the group is bound to a device, makes a 2-rank communicator for each pair: the matrix then measured
    throw-away communicators, not the job's. A batched transfer (``batch_isend_irecv``, here of one op)
    runs on the group's own communicator, as a collective does; with the group bound (``device_id``) that
    communicator exists from init, so the two ranks of a pair may use it alone. An unbound NCCL group
    (torch before 2.3) has no communicator until a collective made one, and a batch between two of its
    ranks first would hang: there the plain send/recv, with its pair communicator, is the only choice."""
    import torch.distributed as dist

    if ctx.cuda and not ctx.bound:
        (dist.send if send else dist.recv)(buf, peer)
        return
    for work in dist.batch_isend_irecv([dist.P2POp(dist.isend if send else dist.irecv, buf, peer)]):
        work.wait()


def _p2p(ctx: Ctx, step: Step) -> dict[str, Any] | None:
    """One ordered pair: the first transfer is verified, then ``p2p_iters`` back to back are timed on
    the receiver as one run (its recv cannot finish before the data is there)."""
    import torch

    if ctx.rank not in (step.src, step.dst):
        return None
    device = ctx.device or "cpu"
    count = ops.OPS["send_recv"].count(step.size, ctx.n)
    if ctx.rank == step.src:
        buf = ops.pattern(ctx.rank, 0, count, device)
        for _ in range(1 + ctx.p2p_iters):
            _p2p_transfer(ctx, True, buf, step.dst)
        _sync(ctx)
        return None
    buf = torch.empty(count, dtype=torch.float32, device=device)
    _p2p_transfer(ctx, False, buf, step.src)
    _sync(ctx)
    mismatch = ops.first_mismatch(buf, ops.pattern(step.src, 0, count, device))
    times = _timed(ctx, lambda: _p2p_transfer(ctx, False, buf, step.src), 1, ctx.p2p_iters, barrier=False)
    size = count * ops.ELEMENT_BYTES
    return {"size_bytes": size, "count": count, "times_s": times, "calls": ctx.p2p_iters, "mismatch": mismatch}


# -- after a failure: who is to blame -----------------------------------------------------------------


def _get(store: Any, key: str) -> str | None:
    try:
        return store.get(key).decode() if store.check([key]) else None
    except Exception:  # noqa: BLE001 - a diagnosis reads what it can
        return None


def diagnose(ctx: Ctx, store: Any, index: int, what: str, error: str) -> list[dict[str, Any]]:
    """Rank 0's account of a step that failed (``error``: its own exception): the ranks that died, never
    reached the step, or never finished it while the others waited, each with its host. A rank that
    only timed out waiting for those is a victim and is not named; when nobody else is to blame, rank 0's
    own error is the problem."""
    others = range(1, ctx.n)
    before = {k: _get(store, f"beat/{k}") for k in others}
    time.sleep(STALE_S)  # the heartbeats' proof, and time for the victims to write their errors
    host = {r["rank"]: r["host"] for r in ctx.ranks}
    named_by_barrier = {int(k) for k in (_BARRIER.search(error) or [None, ""])[1].replace(",", " ").split()}
    culprits: list[dict[str, Any]] = []
    victims: list[dict[str, Any]] = []

    def blame(k: int, words: str, into: list[dict[str, Any]]) -> None:
        into.append({"rank": k, "host": host.get(k), "what": words})

    for k in others:
        at_text = _get(store, f"at/{k}") or "-1:none"
        at, _, phase = at_text.partition(":")
        at_index = int(at)
        err = json.loads(_get(store, f"err/{k}") or "null")
        finished = _get(store, f"res/{index}/{k}") is not None
        # A rank's own error comes first: it wrote it after the failure began, so it was alive then, and a
        # heartbeat late on a loaded machine must not turn the victim it says it is into a dead rank.
        if err and not _VICTIM.search(err["error"]):
            blame(k, f"failed in {err['what']}: {err['error']}", culprits)
        elif err:
            blame(k, f"failed in {err['what']}: {err['error']}", victims)
        elif _get(store, f"beat/{k}") == before[k]:
            blame(
                k,
                f"stopped answering during {_step_words(ctx, at_index)}: no heartbeat for {STALE_S:g} s "
                "(its process died or froze)",
                culprits,
            )
        elif at_index < index or k in named_by_barrier:
            blame(
                k,
                f"stuck: never reached {what} within {ctx.plan.timeout_s:g} s "
                f"(last seen in {_step_words(ctx, at_index)})",
                culprits,
            )
        elif phase == "run" and not finished:
            blame(
                k,
                f"stuck in {what}: it started and never finished within {ctx.plan.timeout_s:g} s "
                "while the other ranks waited",
                culprits,
            )
    if culprits:
        return culprits
    if not _VICTIM.search(error) or not victims:
        return [{"rank": 0, "host": ctx.me.host, "what": f"failed in {what}: {error}"}]
    return victims


def _step_words(ctx: Ctx, index: int) -> str:
    if index < 0:
        return "joining"
    if index >= len(ctx.steps):
        return "finishing"
    return ctx.steps[index].words()


# -- NCCL's own account of what it chose -----------------------------------------------------------------


@dataclass(frozen=True)
class NcclCapture:
    """This rank's NCCL log: the file, whether envcheck made it (and removes it), and whether the user asked
    for NCCL's log without a file (so they are given its text where NCCL would have written it)."""

    path: str
    ours: bool
    echo: bool


def capture_nccl(rank: int) -> NcclCapture:
    """Ask NCCL for its log before it initialises (it reads its variables once, at its first call): each
    rank parses its own, on its own node, so a world that torchrun or srun started across nodes reports every
    node's transport, not only the ones envcheck launched."""
    import tempfile

    asked, given = nccl_log.user_asked(os.environ), bool(os.environ.get("NCCL_DEBUG_FILE"))
    ours = os.path.join(tempfile.gettempdir(), f"envcheck-nccl-{os.getpid()}-{rank}.log")
    path = nccl_log.capture(os.environ, ours)
    return NcclCapture(path or ours, ours=not given, echo=asked and not given)


def nccl_account(ctx: Ctx) -> dict[str, Any]:
    """This rank's NCCL log, parsed, with the RDMA devices its node has (what NCCL could have used) and the
    NCCL_IB_HCA that chose among them."""
    assert ctx.nccl is not None
    text = nccl_log.read_back(ctx.nccl.path, ours=ctx.nccl.ours, echo=ctx.nccl.echo)
    processes = nccl_log.parse(text or "")
    return {
        "rank": ctx.rank,
        "host": ctx.me.host,
        **nccl_log.rdma_on_node(),
        "log": "read" if text else "none",
        "processes": [p.to_json() for p in processes],
    }


def collect_nccl(ctx: Ctx, store: Any, own: dict[str, Any] | None) -> list[dict[str, Any]] | None:
    """Rank 0: every rank's NCCL account (``nccl/<rank>`` in the store), its own first; None on gloo."""
    if own is None:
        return None
    accounts = [own]
    for k in range(1, ctx.n):
        text = _get(store, f"nccl/{k}")
        if text is not None:
            accounts.append(json.loads(text))
    return accounts


# -- the run ---------------------------------------------------------------------------------------------


def collect(ctx: Ctx, store: Any, upto: int) -> list[dict[str, Any]]:
    """Rank 0: every record of steps before ``upto``, each with the rank that made it."""
    records = []
    for index, step in enumerate(ctx.steps[:upto]):
        for k in range(ctx.n):
            text = _get(store, f"res/{index}/{k}")
            if text is not None:
                records.append({**asdict(step), "index": index, "rank": k, **json.loads(text)})
    return records


def raw_report(
    ctx: Ctx,
    records: list[dict[str, Any]],
    problems: list[dict[str, Any]],
    *,
    completed: bool,
    nccl: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Rank 0's account of the run, for envcheck.comm.app to turn into the report."""
    return {
        "world": {
            "size": ctx.n,
            "backend": "nccl" if ctx.cuda else "gloo",
            "launcher": ctx.world.launcher,
            "ranks": ctx.ranks,
        },
        "iters": ctx.iters,
        "warmup": ctx.warmup,
        "p2p_iters": ctx.p2p_iters,
        "records": records,
        "problems": problems,
        "completed": completed,
        "steps_planned": len(ctx.steps),
        "nccl": nccl,
    }


def run_rank(
    plan: Plan,
    world: World,
    *,
    progress: Callable[[dict[str, Any]], None] | None = None,
    on_hang: Callable[[dict[str, Any]], int] | None = None,
    on_steps: Callable[[Callable[[str], None]], None] | None = None,
) -> dict[str, Any] | None:
    """Run this rank. Rank 0 returns the raw report (also when the run failed: the report says why);
    another rank returns None, or raises SystemExit with its exit code when it failed or was told to
    stop. ``on_hang`` (rank 0): deliver the raw report from the watchdog's thread, return the exit code.
    ``on_steps`` (rank 0): called once the steps are known with a function that, from any thread, stops
    the run early with what finished so far (``stop(why)``; it delivers through ``on_hang`` and ends the
    process), so that an interrupted run still reports the collectives it measured."""
    # torch's C++ warnings (c10d's socket retries: dozens of lines for an unresolvable MASTER_ADDR) say again,
    # less clearly, what this rank reports in one line; its errors (an NCCL watchdog's timeout, a store that
    # failed) are kept: when a rank dies they are the clues. A user who wants more sets TORCH_CPP_LOG_LEVEL.
    # Read when torch loads, so set before the first import of torch.
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
    import torch.distributed as dist

    progress = progress or (lambda event: None)
    me, cuda, device = identify(plan, world)
    store = connect(world, plan.timeout_s)
    ctx = Ctx(plan, world, me, cuda, store, device)
    stop, beating = threading.Event(), threading.Event()
    threading.Thread(target=_heartbeat, args=(ctx, stop, beating), name="envcheck-comm-heartbeat", daemon=True).start()
    beating.wait(plan.timeout_s)
    progress({"event": "joining", "rank": world.rank, "size": world.size})
    try:
        start = join(ctx)
    except Aborted as exc:
        stop.set()
        if world.rank == 0:
            return _never_joined(ctx, str(exc))
        raise SystemExit(EXIT_ABORTED) from None
    ctx.ranks, ctx.steps = start["ranks"], [Step(**s) for s in start["steps"]]
    ctx.iters, ctx.warmup, ctx.p2p_iters = start["iters"], start["warmup"], start["p2p_iters"]
    state = {"index": -1}

    def expire(what: str) -> None:
        _on_watchdog(ctx, state["index"], what, on_hang)

    if on_steps is not None and world.rank == 0:
        on_steps(lambda why: _stop_early(ctx, state["index"], why, on_hang))
    ctx.watchdog = Watchdog(plan.timeout_s + 5.0, expire)
    ctx.watchdog.arm("creating the process groups")
    timeout = timedelta(seconds=plan.timeout_s)
    options = group_options(dist.init_process_group, cuda=cuda, device=device, timeout_s=plan.timeout_s)
    ctx.bound = "device_id" in options
    ctx.nccl = capture_nccl(world.rank) if cuda else None
    dist.init_process_group(store=dist.PrefixStore("pg/", store), rank=world.rank, world_size=world.size, **options)
    ctx.side = dist.new_group(backend="gloo", timeout=timeout)
    progress({"event": "joined", "steps": len(ctx.steps)})
    index, step_what = 0, "starting"
    try:
        for index, step in enumerate([*ctx.steps, None]):
            state["index"] = index
            step_what = step.words() if step else "finishing"
            progress({"event": "step", "index": index, "total": len(ctx.steps), "what": step_what})
            store.set(f"at/{world.rank}", f"{index}:barrier")
            ctx.watchdog.arm(step_what)
            dist.monitored_barrier(group=ctx.side, timeout=timeout, wait_all_ranks=True)
            if step is None:
                break
            store.set(f"at/{world.rank}", f"{index}:run")
            record = run_step(ctx, index, step)
            if record is not None:
                store.set(f"res/{index}/{world.rank}", json.dumps(record))
    except Exception as exc:  # noqa: BLE001 - a failed step is reported, never a traceback
        ctx.watchdog.disarm()
        error = first_line(exc)
        if world.rank != 0:
            store.set(f"err/{world.rank}", json.dumps({"what": step_what, "error": error}))
            _say(f"rank {world.rank} ({me.host}): {step_what}: {error}")
            # Stay (and beat) until rank 0 has decided: leaving now would look like dying.
            time.sleep(plan.timeout_s + STALE_S + 5.0)
            raise SystemExit(EXIT_FAILED) from None
        problems = diagnose(ctx, store, index, step_what, error)
        store.set("abort", "1")
        stop.set()
        own = nccl_account(ctx) if ctx.nccl else None  # rank 0's own: the others' may never come
        return raw_report(ctx, collect(ctx, store, index + 1), problems, completed=False, nccl=own and [own])
    ctx.watchdog.arm("leaving")
    dist.destroy_process_group()
    own = nccl_account(ctx) if ctx.nccl else None
    if world.rank != 0:
        if own is not None:
            store.set(f"nccl/{world.rank}", json.dumps(own))
        store.set_timeout(timedelta(seconds=plan.timeout_s))
        store.get("done")
        stop.set()
        ctx.watchdog.disarm()
        store.set(f"bye/{world.rank}", "1")
        return None
    records = collect(ctx, store, len(ctx.steps))
    store.set("done", "1")
    _wait_for_byes(ctx, store)
    stop.set()
    ctx.watchdog.disarm()
    return raw_report(ctx, records, [], completed=True, nccl=collect_nccl(ctx, store, own))


def _wait_for_byes(ctx: Ctx, store: Any) -> None:
    """Rank 0 serves the store: leaving before the others read ``done`` would look to them like dying."""
    deadline = time.monotonic() + min(ctx.plan.timeout_s, 10.0)
    for k in range(1, ctx.n):
        while not store.check([f"bye/{k}"]) and time.monotonic() < deadline:
            time.sleep(0.02)


def _never_joined(ctx: Ctx, words: str) -> dict[str, Any]:
    ranks = [_announced(ctx.store, k) for k in range(ctx.n)]
    ctx.ranks = [
        r if r is not None else {"rank": k, "host": None, "device": None, "joined": False} for k, r in enumerate(ranks)
    ]
    problems = [
        {
            "rank": k,
            "host": None,
            "what": f"never joined within {ctx.plan.timeout_s:g} s (host unknown: it never announced itself)",
        }
        for k, r in enumerate(ranks)
        if r is None
    ]
    return raw_report(ctx, [], problems or [{"rank": None, "host": None, "what": words}], completed=False)


def _on_watchdog(ctx: Ctx, index: int, what: str, on_hang: Callable[[dict[str, Any]], int] | None) -> None:
    """A step outlasted the timeout without raising: say so from the watchdog's thread, then end."""
    error = f"no progress for {ctx.plan.timeout_s + 5.0:g} s (timed out)"
    try:
        store = _client(ctx.world, 5.0)
        if ctx.rank != 0:
            store.set(f"err/{ctx.rank}", json.dumps({"what": what, "error": error}))
            _say(f"rank {ctx.rank} ({ctx.me.host}): {what}: {error}")
            os._exit(EXIT_STUCK)
        code = _end_early(ctx, store, index, diagnose(ctx, store, index, what, error), on_hang)
    except BaseException as exc:  # noqa: BLE001 - whatever happens here, the process ends now
        _say(f"rank {ctx.rank} ({ctx.me.host}): {what}: {error}; and then: {first_line(exc)}")
        code = EXIT_STUCK
    os._exit(code)


def _stop_early(ctx: Ctx, index: int, why: str, on_hang: Callable[[dict[str, Any]], int] | None) -> None:
    """Rank 0, asked to stop (the launcher was interrupted): tell the others to leave, report the steps every
    rank finished (the one under way is left out: not every rank has its figure), and end."""
    code = EXIT_FAILED
    try:
        at = ctx.steps[index].words() if 0 <= index < len(ctx.steps) else "the start" if index < 0 else "the end"
        problems = [{"rank": None, "host": None, "what": f"{why} during {at}: the report holds what finished before"}]
        code = _end_early(ctx, _client(ctx.world, 5.0), index, problems, on_hang, interrupted=True)
    except BaseException as exc:  # noqa: BLE001 - whatever happens here, the process ends now
        _say(f"rank {ctx.rank} ({ctx.me.host}): {why}; and then: {first_line(exc)}")
    os._exit(code)


def _end_early(
    ctx: Ctx,
    store: Any,
    index: int,
    problems: list[dict[str, Any]],
    on_hang: Callable[[dict[str, Any]], int] | None,
    *,
    interrupted: bool = False,
) -> int:
    """Rank 0 ends the run from a thread other than the main one (a hang, an interrupt): the others are told
    to leave, and the records of every step up to ``index`` are delivered through ``on_hang`` (a step not
    every rank finished is left out of the results when the report is built). Returns the exit code."""
    store.set("abort", "1")
    raw = raw_report(ctx, collect(ctx, store, index + 1), problems, completed=False)
    if interrupted:
        raw["interrupted"] = True
    return on_hang(raw) if on_hang else EXIT_FAILED


# -- as a child of envcheck.comm.launch -------------------------------------------------------------------

#: What the launcher writes on rank 0's stdin to stop the run early (its user pressed Ctrl-C, or a signal
#: came): this word, then what stopped it (``Ctrl-C``, ``SIGTERM``), then a newline.
STOP_LINE = b"stop"


def stop_line(by: str) -> bytes:
    """The line that asks rank 0 to stop, saying what stopped the launcher."""
    return STOP_LINE + b" " + by.encode("ascii", "replace") + b"\n"


def stopped_by_line(said: bytes) -> str | None:
    """What stopped the launcher, once rank 0 has read a whole stop line (else None)."""
    line, newline, _ = said.partition(b"\n")
    if not newline or not line.startswith(STOP_LINE):
        return None
    return line[len(STOP_LINE) :].strip().decode("ascii", "replace") or "Ctrl-C"


def emit(event: dict[str, Any]) -> None:
    """One event for the launcher (the protocol of envcheck.core.workers)."""
    workers.emit(**event)


def main(argv: list[str] | None = None) -> int:
    """``python -m envcheck.comm PLAN_JSON``: one rank started by envcheck.comm.launch (the world in the
    torchrun variables it set). Rank 0 writes the raw report as its last line on stdout. Like every child
    of envcheck it dies with its launcher, even one killed outright (envcheck.core.proc.start)."""
    from envcheck.comm.world import detect

    args = sys.argv[1:] if argv is None else argv
    plan = Plan.from_json(args[0])
    world = detect(os.environ)
    if world is None:
        _say("envcheck.comm.rank runs as a rank of a world: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT")
        return 2

    def on_hang(raw: dict[str, Any]) -> int:
        emit({"event": "report", "report": raw})
        return EXIT_FAILED

    def listen(stop: Callable[[str], None]) -> None:
        """Stop early when the launcher says so on stdin (from a thread: the main one may be inside a
        collective for a while)."""

        def read() -> None:
            # os.read on the descriptor, not sys.stdin: a daemon thread blocked inside a buffered reader holds
            # its lock, and the interpreter aborts at exit when it cannot take that lock.
            said = b""
            while True:
                try:
                    chunk = os.read(0, 64)
                except OSError:
                    return
                if not chunk:
                    return
                said += chunk
                by = stopped_by_line(said)
                if by is not None:
                    stop(f"interrupted ({by})")
                    return

        threading.Thread(target=read, name="envcheck-comm-stop", daemon=True).start()

    try:
        raw = run_rank(
            plan,
            world,
            progress=emit if world.rank == 0 else None,
            on_hang=on_hang,
            on_steps=listen if world.rank == 0 and world.launcher == "envcheck" else None,
        )
    except SystemExit as exc:
        return int(exc.code or 0)
    except Exception as exc:  # noqa: BLE001 - the launcher reads this line and names the rank
        emit({"event": "error", "rank": world.rank, "error": first_line(exc)})
        return EXIT_FAILED
    if raw is not None:
        emit({"event": "report", "report": raw})
    return 0
