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
import itertools
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING

from envcheck.core import files
from envcheck.fleet.merge import DEFAULT_THRESHOLD, FleetReport, Merger, digest
from envcheck.fleet.read import FLEET_REPORT, STDIN, NodeReport, Skipped, expand, read_files, read_stdin

if TYPE_CHECKING:
    from concurrent.futures import Future

#: Fewer files than this are read in this process: starting workers costs more than they would save.
POOL_FROM_FILES = 64
#: The most files handed to a worker at a time: enough to amortise the round trip, the worker's reading
#: thread and the batch's merged state (its nodes' devices once, whatever the benchmarks); a smaller
#: fleet's batches are smaller, so that every worker gets several (see :func:`_items`).
CHUNK = 256
#: Batches each worker gets at least, where the fleet is large enough: the load stays balanced.
BATCHES_PER_WORKER = 4
#: The most worker processes, however many CPUs: past this the merge in this process is the bound.
MAX_WORKERS = 32
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
    (the command warns on stderr). ``workers``: processes to parse in (default: the usable CPUs).

    A fleet report found in a directory is passed over without a word: ``envcheck fleet reports/ --json >
    reports/fleet.json`` is how a lab keeps the last run for ``--since``, and it is no node's report. Named
    on the command line, it is skipped with the reason, as any other source that is not a node's report."""
    names = list(names)
    named = {files.path_shown(name) for name in names}
    skipped: list[Skipped] = []
    merger = Merger()
    with collector_paused():
        for item in _items(names, stdin, workers or usable_cpus()):
            if isinstance(item, Skipped):
                if item.reason == FLEET_REPORT and item.source not in named and not item.source.startswith("<"):
                    continue
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


def _items(names: Iterable[str], stdin: IO[bytes] | None, workers: int) -> Iterator[Merger | Skipped]:
    """Merged batches and skips in the order of the sources: each run of files in batches through the
    pool (when there are enough to be worth it) or here, stdin and skips where they stand.

    The directories are listed as the batches go: the first batches are sent while the rest of a fleet
    of ten thousand directories is still being listed (listing it took as long as starting the pool).
    So the batch size is settled on the first files listed: a fleet of fewer than
    ``workers * BATCHES_PER_WORKER * CHUNK`` files is listed whole first and cut so that every worker
    gets several batches."""
    workers = min(workers, MAX_WORKERS)
    entries = expand(names)
    ahead: list[str | Skipped] = []
    files, whole = 0, True
    for entry in entries:
        ahead.append(entry)
        if isinstance(entry, str) and entry != STDIN:
            files += 1
            if files >= workers * BATCHES_PER_WORKER * CHUNK:
                whole = False
                break
    size = CHUNK if not whole else max(1, min(CHUNK, -(-files // (workers * BATCHES_PER_WORKER))))
    pool = None
    if workers > 1 and (files >= POOL_FROM_FILES or not whole):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # forkserver (spawn where there is none): forking a process that has threads (files are read in
        # one, see envcheck.fleet.read) can leave a lock held in the child.
        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        # The workers run with the cyclic collector off (collector_paused says why).
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method), initializer=gc.disable)
    # Batches in flight, each with its files (read here if its worker died), at most AHEAD per worker:
    # what waits here stays bounded, whatever the fleet's size.
    flight: deque[tuple[list[str], Future[list[Merger | Skipped]]]] = deque()

    def received() -> list[Merger | Skipped]:
        batch, future = flight.popleft()
        try:
            return future.result()
        except Exception:  # noqa: BLE001 - a worker that died (OOM-killed): read it here
            return merge_files(batch)

    def sent(batch: list[str]) -> bool:
        """Whether the batch went to a worker. A pool one of whose workers died takes no more work (the
        batches in flight are read here as they come due): the rest of the fleet is read here."""
        nonlocal pool
        if pool is None:
            return False
        try:
            flight.append((batch, pool.submit(merge_files, batch)))
        except Exception:  # noqa: BLE001 - BrokenProcessPool, or a pool that cannot start a worker
            pool.shutdown(wait=False, cancel_futures=False)
            pool = None
            return False
        return True

    try:
        batch: list[str] = []
        for entry in itertools.chain(ahead, entries, [None]):
            if isinstance(entry, str) and entry != STDIN:
                batch.append(entry)
                if len(batch) < size:
                    continue
            if batch:
                if sent(batch):
                    while len(flight) >= AHEAD * workers:
                        yield from received()
                else:
                    while flight:  # what stands before it first
                        yield from received()
                    yield from merge_files(batch)
                batch = []
            if entry is None or isinstance(entry, str) and entry != STDIN:
                continue
            while flight:  # what stands before it first
                yield from received()
            if isinstance(entry, Skipped):
                yield entry
            else:
                yield from _stdin(stdin)
        while flight:
            yield from received()
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def _stdin(stdin: IO[bytes] | None) -> Iterator[Merger | Skipped]:
    for item in read_stdin(stdin):
        if isinstance(item, NodeReport):
            merger = Merger()
            merger.add(digest(item))
            yield merger
        else:
            yield item
