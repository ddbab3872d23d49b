"""Sources → :class:`~envcheck.fleet.merge.FleetReport`: read every source, digest each document as it
arrives, merge the digests. What the command and the benchmark both call.

Reading, parsing and digesting each document is most of the work (an 8-GPU node's doctor report is
~150 KiB as written; benchmarks/RESULTS-fleet.md), the same for every file, so many files are handled
in worker processes, one per usable CPU: each reads, parses, digests and *merges* a batch of files
and sends back the batch's merged state (:class:`~envcheck.fleet.merge.Merger`), which this process
folds into the fleet's. Sending a digest per report instead left this process unpickling and merging
half a million device figures one by one while the workers waited. stdin is read here, in order with
the files around it. A few dozen files are not worth starting processes for.
"""

from __future__ import annotations

import gc
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING

from envcheck.fleet.merge import DEFAULT_THRESHOLD, FleetReport, Merger, digest
from envcheck.fleet.read import STDIN, NodeReport, Skipped, expand, read_files, read_stdin

if TYPE_CHECKING:
    from concurrent.futures import Executor, Future

#: Fewer files than this are read in this process: starting workers costs more than they would save.
POOL_FROM_FILES = 64
#: The most files handed to a worker at a time: enough to amortise the round trip, the worker's reading
#: thread and the batch's merged state (its nodes' devices once, whatever the benchmarks); a smaller
#: fleet's batches are smaller, so that every worker gets several (see :func:`_pooled`).
CHUNK = 256
#: Batches each worker gets at least, where the fleet is large enough: the load stays balanced.
BATCHES_PER_WORKER = 4
#: Batches in flight per worker. The merge consumes merged batches in this process while the workers
#: make them; with every batch submitted at once, the results of a fleet the merge had not reached yet
#: would pile up here. Two keeps each worker fed while the next is received.
AHEAD = 2


def merge_sources(
    names: Iterable[str],
    stdin: IO[bytes] | None = None,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    workers: int | None = None,
    on_skip: Callable[[Skipped], None] | None = None,
) -> FleetReport:
    """The fleet report over every source; ``on_skip`` hears of each skipped source as it is found
    (the command warns on stderr). ``workers``: processes to parse in (default: the usable CPUs)."""
    skipped: list[Skipped] = []
    merger = Merger()
    with collector_paused():
        for item in _items(list(expand(names)), stdin, workers or usable_cpus()):
            if isinstance(item, Skipped):
                skipped.append(item)
                if on_skip is not None:
                    on_skip(item)
            else:
                merger.absorb(item)
        return merger.finish(skipped, threshold)


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for a while. The merge makes millions of small objects
    (every parsed document, every digest, the fleet's state) and keeps many of them; the collector,
    started by allocations, walks all that is kept each time its oldest generation is due, and took a
    third of the merge's time (benchmarks/RESULTS-fleet.md). Nothing here makes reference cycles that
    need it: reference counting frees every document once it is digested."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def merge_files(paths: list[str]) -> list[Merger | Skipped]:
    """What a worker sends back for some files: their merged state, with each skipped source where it
    stood (a merger per run of reports between skips, so the skips keep their order)."""
    out: list[Merger | Skipped] = []
    merger = None
    for item in read_files(paths):
        if isinstance(item, NodeReport):
            if merger is None:
                merger = Merger()
                out.append(merger)
            merger.add(digest(item))
        else:
            out.append(item)
            merger = None
    return out


def _pooled(pool: Executor, paths: list[str], workers: int) -> Iterator[Merger | Skipped]:
    """The merged batches and skips of ``paths``, in order, from batches run in ``pool``, at most
    :data:`AHEAD` per worker in flight (what waits here stays bounded, whatever the fleet's size)."""
    size = max(1, min(CHUNK, -(-len(paths) // (workers * BATCHES_PER_WORKER))))
    batches = deque(paths[i : i + size] for i in range(0, len(paths), size))
    flight: deque[tuple[list[str], Future[list[Merger | Skipped]]]] = deque()
    while batches or flight:
        while batches and len(flight) < AHEAD * workers:
            batch = batches.popleft()
            flight.append((batch, pool.submit(merge_files, batch)))
        batch, future = flight.popleft()
        try:
            found = future.result()
        except Exception:  # noqa: BLE001 - a worker that died (OOM-killed): read it here
            found = merge_files(batch)
        yield from found


def _stdin(stdin: IO[bytes] | None) -> Iterator[Merger | Skipped]:
    for item in read_stdin(stdin):
        if isinstance(item, NodeReport):
            merger = Merger()
            merger.add(digest(item))
            yield merger
        else:
            yield item


def _items(expanded: list[str | Skipped], stdin: IO[bytes] | None, workers: int) -> Iterator[Merger | Skipped]:
    """Merged batches and skips in the order of ``expanded``: each run of files in batches through the
    pool (when there are enough to be worth it) or here, stdin and skips where they stand."""
    paths = sum(1 for e in expanded if isinstance(e, str) and e != STDIN)
    pool = None
    if workers > 1 and paths >= POOL_FROM_FILES:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # forkserver (spawn where there is none): forking a process that has threads (files are read in
        # one, see envcheck.fleet.read) can leave a lock held in the child.
        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        workers = min(workers, 32)
        # The workers run with the cyclic collector off (collector_paused says why).
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method), initializer=gc.disable)
    try:
        run: list[str] = []
        for entry in [*expanded, None]:
            if isinstance(entry, str) and entry != STDIN:
                run.append(entry)
                continue
            if pool is not None:
                yield from _pooled(pool, run, workers)
            elif run:
                yield from merge_files(run)
            run = []
            if isinstance(entry, Skipped):
                yield entry
            elif entry == STDIN:
                yield from _stdin(stdin)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
