"""Sources → :class:`~envcheck.fleet.merge.FleetReport`: read every source, digest each document as it
arrives, merge the digests. What the command and the benchmark both call.

Parsing the JSON is nearly all of the work (an 8-GPU node's doctor report is ~150 KiB as written), and
it is the same work for every file, so many files are parsed in worker processes, one per usable CPU:
each worker reads, parses and digests its files and sends back only the digests (a few KiB each).
stdin is read here, in order with the files around it. Ten files are not worth starting a process for.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import IO

from envcheck.fleet.merge import DEFAULT_THRESHOLD, Digest, FleetReport, digest, merge_digests
from envcheck.fleet.read import STDIN, NodeReport, Skipped, expand, read_file, read_stdin

#: Fewer files than this are read in this process: starting workers costs more than they would save.
POOL_FROM_FILES = 64
#: Files handed to a worker at a time: enough to amortise the round trip, few enough to balance load.
CHUNK = 16


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

    def digests() -> Iterator[Digest]:
        for item in _items(list(expand(names)), stdin, workers or usable_cpus()):
            if isinstance(item, Skipped):
                skipped.append(item)
                if on_skip is not None:
                    on_skip(item)
            else:
                yield item

    return merge_digests(digests(), skipped, threshold=threshold)


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def digest_file(path: str) -> list[Digest | Skipped]:
    """One file's digests and skips (what a worker sends back)."""
    return [digest(item) if isinstance(item, NodeReport) else item for item in read_file(path)]


def _items(expanded: list[str | Skipped], stdin: IO[bytes] | None, workers: int) -> Iterator[Digest | Skipped]:
    """Digests and skips in the order of ``expanded``: runs of files through the pool (if worth it),
    stdin and skips where they stand."""
    paths = [e for e in expanded if isinstance(e, str) and e != STDIN]
    if workers < 2 or len(paths) < POOL_FROM_FILES:
        for entry in expanded:
            yield from _one(entry, stdin)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # forkserver (spawn where there is none): forking a process that has threads (every file read runs
    # in one, see envcheck.core.files) can leave a lock held in the child.
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    with ProcessPoolExecutor(min(workers, 32), mp_context=multiprocessing.get_context(method)) as pool:
        run: list[str] = []
        for entry in [*expanded, None]:
            if isinstance(entry, str) and entry != STDIN:
                run.append(entry)
                continue
            for found in pool.map(digest_file, run, chunksize=CHUNK):
                yield from found
            run = []
            if entry is not None:
                yield from _one(entry, stdin)


def _one(entry: str | Skipped, stdin: IO[bytes] | None) -> Iterator[Digest | Skipped]:
    if isinstance(entry, Skipped):
        yield entry
    elif entry == STDIN:
        yield from (digest(i) if isinstance(i, NodeReport) else i for i in read_stdin(stdin))
    else:
        yield from digest_file(entry)
