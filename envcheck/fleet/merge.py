"""Node reports → one frozen :class:`FleetReport`: pure functions over the documents, nothing read or
printed here, so every rule is tested on hand-made documents as well as real ones.

Four questions, each answered in one pass with dicts so that ten thousand nodes merge in seconds:

* **which nodes fail, and why** — a node's status is the worst over its reports (and a fail when one of
  its devices is slow); its failing items are the doctor's failed checks, the bench's failed results and
  preflight, comm's problems, burn's failed verdicts, the lab spec's unmet minimums, each with the fix
  its report carried;
* **drift** — each field that should be the same on every node (driver, torch and its CUDA, cuDNN, NCCL,
  Python, GPU model and count, the lab spec's packages), with every value and the nodes that have it;
* **slow devices** — per benchmark and device model, each device's headline figure against the fleet's
  median for that model: a GPU (or a CPU, by CPU model) more than the threshold below it is named;
* **duplicates** — a GPU UUID on two hosts, or a host with two reports of one kind: a copied report, or
  a card that moved.

Then the answer is read the way an admin reads it: :func:`problem_groups` folds every node's problems
into one entry per (report, check, verdict) with the nodes that have it and its fix, and the slow
devices into one entry per device model, counted as devices (one GPU slow in nine figures is one slow
GPU), so that a fleet of ten thousand nodes reads as its few problems.
"""

from __future__ import annotations

import math
import re
import string
from array import array
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from functools import cached_property
from itertools import chain, compress, islice
from typing import Any, NamedTuple

from envcheck.core.exit import ExitCode, exit_code_for
from envcheck.core.model import Status, worst
from envcheck.fleet.kinds import (
    SPAN_LISTED,
    UNNAMED_GPU,
    Digest,
    Figures,
    Group,
    Problem,
    Reading,
    ReportRef,
    adapter_for,
    numberless,
    spanned,
)
from envcheck.fleet.read import NodeReport, Skipped

#: A GPU more than this share below its model's fleet median is slow (``--threshold``): run-to-run
#: noise of one healthy GPU is a few per cent; a throttling or degraded one is well past 10 %.
DEFAULT_THRESHOLD = 0.10

#: Distinct fixes a problem group keeps, each with its nodes (one node's hand-edited report must not
#: make the group as long as the fleet); any more are only counted.
FIXES_KEPT = 3
#: Distinct wordings a problem group keeps with their nodes, where they name different devices
#: (:attr:`ProblemGroup.words`); any more are only counted, each node's own list saying it.
WORDS_KEPT = 3

#: What a slow device's group says to do: the figure alone does not say why the card is slow.
SLOW_FIX = {
    "text": "Check its clocks, temperature, power limit and PCIe link against a healthy sibling, then benchmark it "
    "again alone",
    "command": "nvidia-smi -q -d PERFORMANCE,CLOCK,POWER,TEMPERATURE",
}

#: The fields that should be uniform across a fleet, and what the reports call them, in report order.
#: ``package.<name>`` fields (the lab spec's packages) follow these.
FIELDS = {
    "driver.version": "NVIDIA driver",
    "driver.cuda": "CUDA the driver supports",
    "torch.version": "torch",
    "torch.flavour": "torch build",
    "torch.cuda_runtime": "CUDA runtime (torch's)",
    "torch.cudnn": "cuDNN",
    "torch.nccl": "NCCL",
    "python": "Python",
    "gpu.model": "GPU model",
    "gpu.count": "GPU count",
}


@dataclass(frozen=True)
class Node:
    hostname: str
    status: Status
    reports: tuple[ReportRef, ...]
    failing: tuple[Problem, ...]
    warnings: tuple[Problem, ...]
    #: Its devices more than the threshold below their model's fleet median: they fail the node too.
    slow: tuple[Figure, ...] = ()


@dataclass(frozen=True)
class Drift:
    """A field with more than one value across the fleet: each value with its hosts, the majority first."""

    field: str
    values: tuple[tuple[Any, tuple[str, ...]], ...]
    #: Where the values differ only between GPU models (each model's nodes agree: an A100 pool on another
    #: torch build than the H100s), each value's models, as :attr:`values` are ordered; None where the
    #: field drifts among nodes of one model (or nodes of no known single model state it).
    models: tuple[tuple[str, ...], ...] | None = None

    @property
    def by_model(self) -> bool:
        """Whether this is a fleet of pools built apart rather than drift: listed, not warned of."""
        return self.models is not None

    @property
    def title(self) -> str:
        return field_title(self.field)


@dataclass(frozen=True)
class Figure:
    """One device's headline figure for one benchmark, against its model's fleet median."""

    hostname: str
    device_kind: str  # "gpu" or "cpu"
    device: str  # the bench's name for it: "cuda:3", "cpu"
    index: int | None
    uuid: str | None
    pci_bus_id: str | None
    id: str
    model: str
    unit: str
    value: float
    fleet_median: float
    shortfall: float  # 1 - value / median: 0.2 is 20 % below the median; negative above it
    slow: bool
    source: str
    quick: bool = False


class Device(NamedTuple):
    """A compared device, once for the fleet however many benchmarks ran on it: what each of its figures
    names it by."""

    hostname: str
    #: Its UUID, else its bench name ("cpu"): with the host, what makes it one device.
    key: str
    device_kind: str  # "gpu" or "cpu"
    device: str  # the bench's name for it: "cuda:3", "cpu"
    index: int | None
    uuid: str | None
    pci_bus_id: str | None


@dataclass(frozen=True)
class Comparison:
    """Every device of one model that ran one benchmark, with the fleet median: what a chart draws.

    Held as columns (each device, its figure and the report it came from, aligned), not as a
    :class:`Figure` per device: ten thousand 8-GPU nodes that ran six benchmarks are 480 000 figures,
    and only the slow ones are ever shown one by one. :attr:`figures` makes them all when asked (a
    test, a small fleet). The numbers stay arrays of machine numbers, as the merge kept them (a Python
    float or int each was a fifth of the report's memory; arrays are not hashable, so neither is a
    comparison)."""

    id: str
    device_kind: str
    model: str
    unit: str
    median: float
    #: The fleet's device table (:attr:`FleetReport.devices`, shared), or this group's copy of it where
    #: its reports name a device otherwise (:attr:`devices` reads it).
    table: Sequence[Device]
    #: Each device's place in ``table``, aligned.
    positions: Sequence[int]
    values: Sequence[float]
    sources: Sequence[str]
    #: The devices more than the threshold below the median, as figures, in :attr:`figures`' order.
    slow: tuple[Figure, ...]
    #: Figures of ``bench --quick`` runs: smaller cases, lower figures, compared only with each other.
    quick: bool = False
    #: :attr:`values` in ascending order (what a chart of the fleet draws; the median was read off it).
    ordered: Sequence[float] = ()
    #: A host-bound benchmark's figures (host copies): charted, never judged slow.
    host_bound: bool = False

    @property
    def devices(self) -> tuple[Device, ...]:
        """Each device, aligned with :attr:`values`: made when asked (a tuple of eighty thousand per
        group, six groups for a fleet of 10 000 nodes, was a tenth of the report's memory)."""
        return tuple(map(self.table.__getitem__, self.positions))

    @cached_property
    def figures(self) -> tuple[Figure, ...]:
        """Every device's figure against the median, by host, then index (none first), then device."""
        slow = {(f.hostname, f.uuid or f.device) for f in self.slow}
        made = [
            _figure(self, d, value, source, (d.hostname, d.key) in slow)
            for d, value, source in zip(self.devices, self.values, self.sources, strict=True)
        ]
        made.sort(key=lambda f: (f.hostname, f.index if f.index is not None else -1, f.device))
        return tuple(made)


def _figure(c: Comparison, d: Device, value: float, source: str, slow: bool) -> Figure:
    shortfall = 1.0 - value / c.median if c.median > 0 else 0.0
    return Figure(
        d.hostname,
        d.device_kind,
        d.device,
        d.index,
        d.uuid,
        d.pci_bus_id,
        c.id,
        c.model,
        c.unit,
        value,
        c.median,
        round(shortfall, 4),
        slow,
        source,
        c.quick,
    )


@dataclass(frozen=True)
class SlowDevice:
    """One slow device and every figure of it that fell below its model's fleet median: the unit of the
    count (one GPU slow in nine benchmarks is one slow GPU)."""

    hostname: str
    device_kind: str
    device: str
    index: int | None
    uuid: str | None
    pci_bus_id: str | None
    model: str
    figures: tuple[Figure, ...]


@dataclass(frozen=True)
class Fix:
    """One of a problem group's fixes, with the nodes whose reports gave it."""

    fix: dict[str, Any] | None
    nodes: tuple[str, ...]


class Words(NamedTuple):
    """One thing a problem's nodes say (:attr:`ProblemGroup.words`): the first words of it, the nodes that
    say it, those words as true of each node where its nodes' words differ in numbers (``said``: the span of
    each number, :func:`kinds.spanned`; None where they are one wording), and how many wordings that is."""

    summary: str
    nodes: tuple[str, ...]
    said: str | None = None
    wordings: int = 1


@dataclass(frozen=True)
class ProblemGroup:
    """One problem across the fleet: a (report, check id, verdict) with every node that has it, or the
    slow devices of one model (``id`` ``slow.gpu``, ``slow.cpu``), with their count."""

    report: str
    id: str
    status: Status
    #: The words of the first node with its most common fix (each node's own stay in its list).
    summary: str
    nodes: tuple[str, ...]
    #: The distinct fixes, the most common first, at most :data:`FIXES_KEPT`.
    fixes: tuple[Fix, ...]
    #: Distinct fixes beyond those kept.
    more_fixes: int = 0
    #: Slow devices and their slow figures (a slow group only).
    devices: int = 0
    figures: int = 0
    model: str | None = None
    #: How many distinct summaries its nodes give (a load average, a process's name, ``GPU 0`` here and
    #: ``GPU 5`` there).
    wordings: int = 1
    #: Its nodes' words name different devices (``GPU 0: ...`` on one, ``GPU 5: ...`` on another): each
    #: node's own words say what to act on there, and are shown with it. Words that differ in a number
    #: alone (a load average) are not worth a section per node.
    own_words: bool = False
    #: Where :attr:`own_words`: each distinct wording with its nodes, the most nodes first, at most
    #: :data:`WORDS_KEPT` (``GPU 1: ...`` on two nodes, ``GPU 2: ...`` on a third): one wording shown for
    #: all would send an admin to the wrong GPU on the third.
    words: tuple[Words, ...] = ()
    #: Where :attr:`own_words` and most of its nodes say the same: the others, whose words differ from theirs
    #: (each keeps its own list where the problem is on every node, envcheck.fleet.render).
    odd: tuple[str, ...] = ()
    #: :attr:`summary` as true of every node whose words differ from it in numbers alone (``1–7 uncorrected
    #: ECC errors``), where some do; None where none does.
    said: str | None = None

    @property
    def key(self) -> str:
        """What a later run matches this problem by on a node (``envcheck fleet --since``)."""
        return problem_key(self.report, self.id, self.status.value)


def problem_key(report: str, check: str, status: str) -> str:
    return f"{report} {check} {status}"


@dataclass(frozen=True)
class DuplicateHost:
    hostname: str
    kind: str
    #: The newest first, where their times say which that is.
    sources: tuple[str, ...]
    #: The report that decides the node's verdict for this kind: the newest; None where their times do
    #: not tell (then every one of them counts).
    newest: str | None = None
    #: Every one of them was made at the same time as :attr:`newest`, which they copy (the same GPUs, verdict
    #: and problems): one report copied, counted once, not a newer report deciding over an older.
    copies: bool = False


@dataclass(frozen=True)
class DuplicateGpu:
    uuid: str
    hosts: tuple[str, ...]
    sources: tuple[str, ...]


@dataclass(frozen=True)
class FleetReport:
    nodes: tuple[Node, ...]
    drift: tuple[Drift, ...]
    #: Fields every node that states them agrees on: (field, value, how many nodes).
    uniform: tuple[tuple[str, Any, int], ...]
    comparisons: tuple[Comparison, ...]
    duplicate_hosts: tuple[DuplicateHost, ...]
    duplicate_gpus: tuple[DuplicateGpu, ...]
    skipped: tuple[Skipped, ...]
    reports_read: int
    threshold: float
    #: Figures taken while other work held the CPUs, or too noisy to judge by: (reading, hostname,
    #: source), listed and never compared.
    contended: tuple[tuple[Reading, str, str], ...] = ()
    #: The nodes' problems and the slow devices, one entry each across the fleet, the worst and most
    #: common first.
    problems: tuple[ProblemGroup, ...] = ()
    #: Every compared device, once (what :attr:`Comparison.positions` point into).
    devices: tuple[Device, ...] = ()

    @property
    def slow(self) -> list[Figure]:
        return [f for c in self.comparisons for f in c.slow]

    @property
    def drifting(self) -> list[Drift]:
        """The fields that drift among nodes of one GPU model: what the verdict warns of."""
        return [d for d in self.drift if not d.by_model]

    @property
    def by_model(self) -> list[Drift]:
        """The fields whose values differ only between GPU models: listed apart, not warned of."""
        return [d for d in self.drift if d.by_model]

    @property
    def slow_gpus(self) -> list[Figure]:
        return [f for f in self.slow if f.device_kind == "gpu"]

    @property
    def slow_cpus(self) -> list[Figure]:
        return [f for f in self.slow if f.device_kind != "gpu"]

    @property
    def slow_devices(self) -> list[SlowDevice]:
        return slow_devices(self.slow)

    def statuses(self) -> list[Status]:
        """Each node's status (a node with a slow device fails), and a warning for drift, duplicates or a
        skipped source: called out, but not a failure by themselves (a rolling driver upgrade drifts on
        purpose)."""
        warned = self.drifting or self.duplicate_hosts or self.duplicate_gpus or self.skipped
        return [n.status for n in self.nodes] + ([Status.WARN] if warned else [])

    @property
    def status(self) -> Status:
        return worst(self.statuses())

    @property
    def exit_code(self) -> ExitCode:
        """1 when a node fails or a device is slow, else 0: core.exit's policy, as for every command."""
        return exit_code_for(self.statuses())


def field_title(name: str) -> str:
    if name.startswith("package."):
        return f"package {name.removeprefix('package.')}"
    return FIELDS.get(name, name)


def merge(
    reports: Iterable[NodeReport], skipped: Sequence[Skipped] = (), *, threshold: float = DEFAULT_THRESHOLD
) -> FleetReport:
    """The fleet report over ``reports`` (already read and classified; see envcheck.fleet.read)."""
    return merge_digests((digest(r) for r in reports), skipped, threshold=threshold)


def digest(report: NodeReport) -> Digest:
    """What the merge needs of one report, read by its kind's adapter (envcheck.fleet.kinds)."""
    return adapter_for(report.document.get("schema")).digest(
        report.source, report.kind, report.hostname, report.document
    )


def merge_digests(
    digests: Iterable[Digest], skipped: Sequence[Skipped] = (), *, threshold: float = DEFAULT_THRESHOLD
) -> FleetReport:
    """The fleet report over ``digests``, in one pass (:class:`Merger`). Linear in the number of reports."""
    merger = Merger()
    for d in digests:
        merger.add(d)
    return merger.finish(skipped, threshold)


class Column:
    """One (benchmark, model) group's figures as columns: each device's place in the merger's device
    table, its best figure and the report that gave it, aligned, and its names where that report names
    it otherwise than the table (cuda:0 under CUDA_VISIBLE_DEVICES=3).

    Arrays of machine numbers, not dicts of Python ones: ten thousand 8-GPU nodes that ran six benchmarks
    are 480 000 figures, which as dicts of floats were the largest part of the merge's memory, of each
    batch's pickle and of the parent's work absorbing them. ``index`` (device -> row) is made when a
    device may already be here; a batch whose devices are all new is appended whole."""

    __slots__ = ("positions", "values", "sources", "whens", "named", "index")

    def __init__(self) -> None:
        self.positions = array("q")
        self.values = array("d")
        self.sources: list[str] = []
        #: when the report that gave each figure was made (seconds since the epoch; NaN: not said)
        self.whens = array("d")
        self.named: dict[int, Device] = {}
        #: made by :meth:`rows` where a device may already be here (never, in a worker whose batch names
        #: each device once), then kept up to date
        self.index: dict[int, int] | None = None

    def __getstate__(self) -> tuple[Any, ...]:
        # the index is rebuilt where it is needed, not sent
        return (self.positions, self.values, self.sources, self.whens, self.named)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.positions, self.values, self.sources, self.whens, self.named = state
        self.index = None

    def rows(self) -> dict[int, int]:
        """device -> its row, made once and then kept up to date."""
        if self.index is None:
            self.index = {at: row for row, at in enumerate(self.positions)}
        return self.index

    def extend(
        self, devices: Iterable[int], values: Iterable[float], sources: list[str], whens: Iterable[float]
    ) -> None:
        """Figures of devices not in the column yet, appended whole at the speed of ``array.extend`` (the
        common case: a node's devices arrive in one report, and in one batch); the index, where it is made,
        kept up to date."""
        start = len(self.positions)
        self.positions.extend(devices)
        if self.index is not None:
            self.index.update(zip(self.positions[start:], range(start, len(self.positions)), strict=True))
        self.values.extend(values)
        self.sources.extend(sources)
        self.whens.extend(whens)

    def put(self, device: int, value: float, source: str, names: Device | None, when: float = math.nan) -> None:
        """A device's figure: its first here, or one from a newer report than the one it had (last week's
        bench beside today's: today's says how the card is), or, between reports of one time or where a
        time is not said, the better one (a device benchmarked twice keeps its best, from the report that
        gave it)."""
        rows = self.index if self.index is not None else self.rows()
        row = rows.get(device)
        if row is None:
            rows[device] = len(self.positions)
            self.positions.append(device)
            self.values.append(value)
            self.sources.append(source)
            self.whens.append(when)
        elif when > self.whens[row] or (not when < self.whens[row] and value > self.values[row]):
            self.values[row] = value
            self.sources[row] = source
            self.whens[row] = when
        else:
            return
        if names is not None:
            self.named[device] = names
        elif self.named:
            self.named.pop(device, None)


class Merger:
    """The merge's state, folded one digest at a time into dicts keyed by host, field, (benchmark,
    model) and UUID; :meth:`finish` reads each part of the report off them.

    It is also what a worker sends back for its batch of files (envcheck.fleet.app): a worker merges
    what it read, and this process absorbs each worker's merger (:meth:`absorb`), so what crosses between the
    processes is a batch's merged state (plain dicts, lists and tuples: cheap to pickle), not a
    digest per report, and the parent's work is per node and per device rather than per report and
    reading. Absorbing batches in the order of their files gives the same report as one merger over
    every digest in that order (tests/fleet/test_merge.py)."""

    def __init__(self) -> None:
        self.read = 0
        self.refs: dict[str, list[ReportRef]] = {}
        self.problems: dict[str, list[Problem]] = {}
        #: host -> field -> ((rank of the report it came from, minus its time), value)
        self.fields: dict[str, dict[str, tuple[tuple[int, float], Any]]] = {}
        #: every device compared, once; ``groups`` name them by their place here
        self.devices: list[Device] = []
        self.device_ids: dict[tuple[str, str], int] | None = {}
        #: (benchmark, model) -> its figures (:class:`Column`)
        self.groups: dict[Group, Column] = {}
        self.sources: dict[tuple[str, str], list[str]] = {}
        #: GPU UUID -> (host, source, host, source, ...) of each report that saw it: flat, as most are seen
        #: by one node's two or three reports, and eighty thousand small dicts of lists were a tenth of
        #: the merge's memory
        self.uuid_seen: dict[str, tuple[str, ...]] = {}
        self.contended: list[tuple[Reading, str, str]] = []
        #: benchmarks some report marks host-bound, and those some report marks not: a benchmark in the
        #: first and not the second is charted, never judged slow (one hand-edited report cannot switch
        #: off the judgement of a benchmark every other report says is device-bound)
        self.host_bound: set[str] = set()
        self.device_bound: set[str] = set()

    def add(self, d: Digest) -> None:
        self.read += 1
        if d.host_bound:
            self.host_bound |= d.host_bound
        if d.device_bound:
            self.device_bound |= d.device_bound
        host = d.hostname
        self.refs.setdefault(host, []).append(d.ref)
        for hostname, problem in d.problems:
            self.problems.setdefault(hostname or host, []).append(problem)
        when = _epoch(d.ref.generated_at)
        # a field's value: the lowest rank's (the doctor's), and the newest report's among those
        order = (d.rank, -when if when == when else math.inf)
        self._fields(host, {name: (order, value) for name, value in d.fields})
        figures = d.figures
        source = d.source
        for r in figures.set_apart:
            self.contended.append((r, host, source))
        if figures.groups:
            self._figures(host, source, when, figures)
        self.sources.setdefault((host, d.kind), []).append(d.source)
        seen = self.uuid_seen
        for uuid in d.uuids:
            seen[uuid] = seen.get(uuid, ()) + (host, d.source)

    def _figures(self, host: str, source: str, when: float, figures: Figures) -> None:
        """A report's compared figures (:class:`~envcheck.fleet.kinds.Figures`): each of its devices looked
        up in the table once, each group's column once, and a group's figures put in whole where its
        devices are new to it (the common case: a node's figures arrive in one report)."""
        device_ids, devices = self._device_ids(), self.devices
        # each device of this report: its place in the table, and its names here where they are not the
        # table's (another CUDA_VISIBLE_DEVICES: its figures keep them)
        places: list[int] = []
        renamed: list[Device | None] = []
        fresh = True
        for names in figures.devices:
            key = (host, names[0])
            at = device_ids.get(key)
            row = tuple.__new__(Device, (host, *names))
            if at is None:
                at = device_ids[key] = len(devices)
                devices.append(row)
                renamed.append(None)
            else:
                fresh = False
                known = devices[at]
                differs = row.device != known.device or row.index != known.index or row.pci_bus_id != known.pci_bus_id
                renamed.append(row if differs else None)
            places.append(at)
        any_renamed = renamed.count(None) != len(renamed)
        groups = self.groups
        for group, at, values in figures.groups:
            column = groups.get(group)
            if column is None:
                column = groups[group] = Column()
            ids = [places[i] for i in at]
            if fresh and len(set(at)) == len(at):
                # Every device of the report is new to the table (the common case: a node's figures arrive
                # in one report), so no column holds it yet: the group's figures go in whole, without the
                # column's index of devices (a worker's columns never need one).
                column.extend(ids, values, [source] * len(ids), [when] * len(ids))
                continue
            rows = column.index if column.index is not None else column.rows()
            if rows.keys().isdisjoint(ids) and len(set(ids)) == len(ids):
                column.extend(ids, values, [source] * len(ids), [when] * len(ids))
                if any_renamed:
                    for i in at:
                        if renamed[i] is not None:
                            column.named[places[i]] = renamed[i]  # type: ignore[assignment]
                continue
            for i, value in zip(at, values, strict=True):
                column.put(places[i], value, source, renamed[i], when)

    def __getstate__(self) -> dict[str, Any]:
        # What a worker sends back: the device table's index is made again where it is needed, and the
        # table goes as columns of plain values (a named tuple is pickled as a call of its class, and
        # unpickled by its __new__, a Python function: the largest part of a batch's pickle).
        # So do each node's report references and problems.
        state = {name: value for name, value in vars(self).items() if name != "device_ids"}
        state["devices"] = tuple(zip(*self.devices, strict=True))
        state["refs"] = _columns(self.refs)
        state["problems"] = _columns(self.problems)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        vars(self).update(state)
        self.devices = [tuple.__new__(Device, row) for row in zip(*state["devices"], strict=True)]
        self.refs = _rows(state["refs"], ReportRef)
        self.problems = _rows(state["problems"], Problem)
        self.device_ids = None  # made again by the first add or absorb into this merger (none, in the command)

    def _device_ids(self) -> dict[tuple[str, str], int]:
        if self.device_ids is None:
            self.device_ids = {(d.hostname, d.key): at for at, d in enumerate(self.devices)}
        return self.device_ids

    def _fields(self, host: str, found: dict[str, tuple[tuple[int, float], Any]]) -> None:
        """A field's value comes from the report that sees the most (the lowest rank: the doctor first),
        and among those from the newest (its order's second part: minus its time, a time not said last);
        the first such report wins among equals."""
        own = self.fields.get(host)
        if own is None:
            self.fields[host] = found
            return
        for name, (order, value) in found.items():
            if name not in own or order < own[name][0]:
                own[name] = (order, value)

    def absorb(self, other: Merger) -> None:
        """Fold in ``other`` (a later batch's merger), as if its digests had been added here."""
        self.read += other.read
        for host, refs in other.refs.items():
            self.refs.setdefault(host, []).extend(refs)
        for host, problems in other.problems.items():
            self.problems.setdefault(host, []).extend(problems)
        for host, found in other.fields.items():
            self._fields(host, found)
        ids = []
        seen_before = False
        device_ids = self._device_ids()
        for device in other.devices:
            key = (device.hostname, device.key)
            mine = device_ids.get(key)
            if mine is None:
                mine = device_ids[key] = len(self.devices)
                self.devices.append(device)
            else:
                seen_before = True
            ids.append(mine)
        for group, theirs in other.groups.items():
            mine = self.groups.get(group)
            if mine is None:
                mine = self.groups[group] = Column()
            if not seen_before:
                # Every device of the batch is new here (the common case: a node's reports are read
                # together): its figures go in whole.
                mine.extend(
                    array("q", map(ids.__getitem__, theirs.positions)), theirs.values, theirs.sources, theirs.whens
                )
                mine.named.update(zip(map(ids.__getitem__, theirs.named), theirs.named.values(), strict=True))
                continue
            for device, value, source, when in zip(
                theirs.positions, theirs.values, theirs.sources, theirs.whens, strict=True
            ):
                at = ids[device]
                names = theirs.named.get(device) or other.devices[device]
                mine.put(at, value, source, names if names != self.devices[at] else None, when)
        for key, found in other.sources.items():
            self.sources.setdefault(key, []).extend(found)
        seen, theirs = self.uuid_seen, other.uuid_seen
        both = {uuid: seen[uuid] + theirs[uuid] for uuid in seen.keys() & theirs.keys()}
        seen.update(theirs)
        seen.update(both)
        self.contended.extend(other.contended)
        self.host_bound |= other.host_bound
        self.device_bound |= other.device_bound

    def finish(self, skipped: Sequence[Skipped] = (), threshold: float = DEFAULT_THRESHOLD) -> FleetReport:
        """The fleet report: each part read off the merged state."""
        self._one_name_per_host()
        by_field: dict[str, dict[Any, list[str]]] = defaultdict(lambda: defaultdict(list))
        for hostname, own in self.fields.items():
            for name, (_, value) in own.items():
                by_field[name][value].append(hostname)  # scalars (kinds._plain)
        devices = tuple(self.devices)  # the report's, shared by its comparisons: the merger may grow on
        groups = _one_group_per_model(self.groups)
        compared = comparisons(groups, devices, threshold, frozenset(self.host_bound - self.device_bound))
        twice = {source for found in self.sources.values() if len(found) > 1 for source in found}
        gpus = _gpus_by_source(self.uuid_seen, twice)
        shared = _duplicate_gpus(self.uuid_seen)
        fleet_problems = _fewer_gpus(self.fields, self.refs)
        pools = _pools(self.fields)
        mixed = _mixed_gpus(self.fields, self.refs)
        # the GPU models of the nodes that warn of their mixed GPUs: listed by model, in no pool, not drift
        warned = {self.fields[host]["gpu.model"][1] for host in mixed}
        for more in (
            _missing_reports(self.refs, pools),
            mixed,
            _shared_gpus(shared, self.refs),
            _off_stack(self.fields, self.refs),
        ):
            for host, found in more.items():
                fleet_problems.setdefault(host, []).extend(found)
        nodes = _nodes(self.refs, self.problems, compared, fleet_problems, gpus)
        return FleetReport(
            nodes=tuple(nodes),
            drift=tuple(drift(by_field, pools, warned)),
            uniform=tuple(uniform(by_field)),
            comparisons=tuple(compared),
            duplicate_hosts=tuple(
                _duplicate_host(h, k, s, self.refs.get(h, []), gpus, self.problems.get(h, ()))
                for (h, k), s in sorted(i for i in self.sources.items() if len(i[1]) > 1)
            ),
            duplicate_gpus=tuple(shared),
            skipped=tuple(skipped),
            reports_read=self.read,
            threshold=threshold,
            contended=tuple(self.contended),
            problems=tuple(problem_groups(nodes, [f for c in compared for f in c.slow], threshold)),
            devices=devices,
        )

    def _one_name_per_host(self) -> None:
        """A host named in two spellings that differ in case or a trailing dot (``NODE-00500`` in its bench
        report, ``node-00500`` in its doctor report) is one host: names are case-insensitive in ASCII (RFC
        4343), and ``node5.`` is ``node5`` fully qualified. Read as two, the fleet had a node more than it has,
        each half missing the other's report, and its GPUs "seen on two hosts". It keeps the spelling that is
        its :func:`host_key` where one is, else one without the trailing dot, else the first read. Done once,
        on the merged state, only where names collide: its devices are then merged as one batch's are into
        another's (a card in both spellings' reports is one device, its newer report's figures deciding)."""
        spellings: dict[str, list[str]] = {}
        for host in chain(self.refs, self.problems):
            found = spellings.setdefault(host_key(host), [])
            if host not in found:
                found.append(host)
        alias: dict[str, str] = {}
        for key, found in spellings.items():
            if len(found) > 1:
                kept = next((h for h in found if h == key), next((h for h in found if not h.endswith(".")), found[0]))
                alias.update((other, kept) for other in found if other != kept)
        if not alias:
            return

        def one(host: str) -> str:
            return alias.get(host, host)

        def joined(by_host: dict[Any, list[Any]], name: Callable[[Any], Any]) -> dict[Any, list[Any]]:
            out: dict[Any, list[Any]] = {}
            for key, found in by_host.items():
                out.setdefault(name(key), []).extend(found)
            return out

        self.refs = joined(self.refs, one)
        self.problems = joined(self.problems, one)
        self.sources = joined(self.sources, lambda key: (one(key[0]), key[1]))
        for host in [h for h in self.fields if h in alias]:
            self._fields(alias[host], self.fields.pop(host))
        self.uuid_seen = {
            uuid: tuple(one(v) if i % 2 == 0 else v for i, v in enumerate(seen))
            for uuid, seen in self.uuid_seen.items()
        }
        self.contended = [(r, one(host), source) for r, host, source in self.contended]
        # the device table and the figures: renamed, and absorbed into an empty merger's as a batch is, so that
        # a device the two spellings share is one row whose newer figure decides (Column.put)
        renamed = Merger()
        renamed.devices = [d._replace(hostname=alias[d.hostname]) if d.hostname in alias else d for d in self.devices]
        renamed.groups = self.groups
        for column in self.groups.values():
            for at, names in column.named.items():
                if names.hostname in alias:
                    column.named[at] = names._replace(hostname=alias[names.hostname])
        fresh = Merger()
        fresh.absorb(renamed)
        self.devices, self.groups, self.device_ids = fresh.devices, fresh.groups, None


def host_key(hostname: str) -> str:
    """What tells one host from another: its name without a trailing dot, in ASCII lower case (host names
    are case-insensitive in ASCII alone, RFC 4343: ``straße`` is not ``strasse``)."""
    return hostname.rstrip(".").translate(_ASCII_LOWER)


_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def _columns(by_host: dict[str, list[tuple[Any, ...]]]) -> tuple[tuple[str, ...], tuple[int, ...], tuple[Any, ...]]:
    """host -> its named tuples, as plain columns for a pickle (:meth:`Merger.__getstate__`): the hosts,
    how many each has, and each field's values in order."""
    rows = [row for found in by_host.values() for row in found]
    return tuple(by_host), tuple(map(len, by_host.values())), tuple(zip(*rows, strict=True))


def _rows(columns: tuple[tuple[str, ...], tuple[int, ...], tuple[Any, ...]], kind: type) -> dict[str, list[Any]]:
    """:func:`_columns` back: host -> its named tuples of ``kind``."""
    hosts, counts, fields = columns
    rows = iter([tuple.__new__(kind, row) for row in zip(*fields, strict=True)])
    return {host: list(islice(rows, n)) for host, n in zip(hosts, counts, strict=True)}


def _when(generated_at: str | None) -> datetime | None:
    """A report's ``generated_at`` as a time to compare (one without a zone taken as UTC), or None."""
    try:
        when = datetime.fromisoformat(generated_at) if isinstance(generated_at, str) else None
    except ValueError:
        return None
    return when.replace(tzinfo=timezone.utc) if when is not None and when.tzinfo is None else when


def _epoch(generated_at: str | None) -> float:
    """A report's time in seconds since the epoch, NaN where it says none (what Column.put compares)."""
    when = _when(generated_at)
    return when.timestamp() if when is not None else math.nan


def _superseded(
    refs: Sequence[ReportRef],
    gpus: dict[str, frozenset[str]] | None = None,
    problems: Sequence[Problem] = (),
) -> set[str]:
    """The sources of a node's reports that a newer report of the same kind from the same machine
    replaces (last week's doctor report left beside today's). The same machine: their GPU UUIDs meet, or
    neither names a GPU; two machines answering to one host name each keep their reports (both fail the
    node where either fails). Where a kind's reports do not all say when they were made, none is left out:
    envcheck cannot tell which is current, and the duplicate is named either way.

    Of the newest, those that are copies of the first in the sources' order are left out too (``cp
    node5/doctor.json node5/doctor-copy.json``): the same machine, the same time to the microsecond and the
    same verdict and problems (``problems``: the node's, each naming its source). A copy counted twice
    listed each of its failures twice on the node. Reports of one time that say different things cannot be
    told apart: each counts."""
    by_kind: dict[str, list[ReportRef]] = {}
    for r in refs:
        by_kind.setdefault(r.kind, []).append(r)
    older: set[str] = set()
    gpus = gpus or {}
    for same in by_kind.values():
        if len(same) < 2:
            continue
        times = [_when(r.generated_at) for r in same]
        if any(t is None for t in times):
            continue
        newest = max(t for t in times if t is not None)
        current = [r for r, t in zip(same, times, strict=True) if t == newest]
        seen = frozenset().union(*(gpus.get(r.source, frozenset()) for r in current))
        for r, t in zip(same, times, strict=True):
            own = gpus.get(r.source, frozenset())
            if t is not None and t < newest and (own & seen or not (own or seen)):
                older.add(r.source)
        if len(current) > 1:
            said: dict[str, set[tuple[str, Status, str]]] = {r.source: set() for r in current}
            for p in problems:
                if p.source in said:
                    said[p.source].add((p.id, p.status, p.summary))
            first = min(current, key=lambda r: r.source)
            for r in current:
                if (
                    r.source != first.source  # (one file named twice: both count, as before)
                    and gpus.get(r.source, frozenset()) == gpus.get(first.source, frozenset())
                    and (r.status, r.exit_code) == (first.status, first.exit_code)
                    and said[r.source] == said[first.source]
                ):
                    older.add(r.source)
    return older


def _gpus_by_source(uuid_seen: dict[str, tuple[str, ...]], sources: set[str]) -> dict[str, frozenset[str]]:
    """The GPU UUIDs each of ``sources`` saw (the reports of hosts seen twice: few, where any)."""
    found: dict[str, set[str]] = {}
    if sources:
        for uuid, seen in uuid_seen.items():
            for source in seen[1::2]:
                if source in sources:
                    found.setdefault(source, set()).add(uuid)
    return {source: frozenset(uuids) for source, uuids in found.items()}


def _duplicate_host(
    hostname: str,
    kind: str,
    sources: list[str],
    refs: Sequence[ReportRef],
    gpus: dict[str, frozenset[str]],
    problems: Sequence[Problem] = (),
) -> DuplicateHost:
    same = [r for r in refs if r.kind == kind]
    older = _superseded(same, gpus, problems)
    if not older:
        return DuplicateHost(hostname, kind, tuple(sources))
    when = {r.source: _when(r.generated_at) for r in same}
    ordered = sorted(sources, key=lambda s: when.get(s) or datetime.min.replace(tzinfo=timezone.utc), reverse=True)
    # two of the newest time that say different things (or another machine's report beside them) each
    # count: none alone decides
    kept = [s for s in ordered if s not in older]
    deciding = kept[0] if len(kept) == 1 else None
    copies = deciding is not None and len({when.get(s) for s in sources}) == 1
    return DuplicateHost(hostname, kind, tuple(ordered), deciding, copies)


def _duplicate_gpus(uuid_seen: dict[str, tuple[str, ...]]) -> list[DuplicateGpu]:
    """Each GPU UUID seen on more than one host, by UUID, with its hosts and, host by host, the reports
    that saw it there."""
    out = []
    for uuid, seen in uuid_seen.items():
        # most GPUs are seen by one node's reports only: (host, source, host, source) with one host
        if len(seen) > 2 and (seen[2] != seen[0] or seen[2::2].count(seen[0]) != len(seen) // 2 - 1):
            by_host: dict[str, list[str]] = {}
            for host, source in zip(seen[0::2], seen[1::2], strict=True):
                by_host.setdefault(host, []).append(source)
            hosts = sorted(by_host)
            out.append(DuplicateGpu(uuid, tuple(hosts), tuple(s for h in hosts for s in by_host[h])))
    out.sort(key=lambda d: d.uuid)
    return out


# --- nodes -------------------------------------------------------------------------------------------


#: What to do on a node with fewer GPUs than most nodes of its GPU model.
FEWER_GPUS_FIX = {
    "text": "Find the GPU that is missing: `nvidia-smi -L` lists those the driver sees, `lspci -d 10de:` those on "
    "the bus, and the kernel log says whether one fell off it (Xid 79); reseat or replace it. A node built "
    "with fewer GPUs needs nothing.",
    "command": "nvidia-smi -L",
}


def _source(refs: dict[str, list[ReportRef]], host: str, kind: str | None = None) -> str:
    """The source a problem the fleet finds on ``host`` names: its report of ``kind`` (the one that says
    what the problem is about), else its first report, else none."""
    own = refs.get(host, [])
    first = own[0].source if own else ""
    return next((r.source for r in own if r.kind == kind), first) if kind else first


#: What to do on a node whose GPUs' UUIDs another node's reports name too.
SHARED_GPUS_FIX = {
    "text": "A GPU's UUID is its own: compare `nvidia-smi -L` on each of these nodes with its report. A report "
    "copied from another node (a job that wrote to the wrong directory, an image built with a report in it) "
    "is removed and the node run again; a card moved between them leaves the older report to be run again.",
    "command": "nvidia-smi -L",
}


def _shared_gpus(duplicates: Sequence[DuplicateGpu], refs: dict[str, list[ReportRef]]) -> dict[str, list[Problem]]:
    """A warning for each node whose GPUs' UUIDs another node's reports name too (a report copied from
    another node, or cards moved and an old report left): listed as duplicates alone, a cloned node read
    as a healthy one, since its report passes. Each distinct set of hosts is worded once, naming a few
    of them: an image built with a report in it shares its GPUs across a thousand nodes."""
    uuids_of: dict[frozenset[str], int] = {}
    for d in duplicates:
        hosts = frozenset(d.hosts)
        uuids_of[hosts] = uuids_of.get(hosts, 0) + 1
    sets_of: dict[str, list[frozenset[str]]] = {}
    for hosts in uuids_of:
        for host in hosts:
            sets_of.setdefault(host, []).append(hosts)
    worded: dict[frozenset[str], str] = {}
    out: dict[str, list[Problem]] = {}
    for host, sets in sets_of.items():
        together = sets[0] if len(sets) == 1 else frozenset().union(*sets)
        summary = worded.get(together)
        if summary is None:
            count = max(uuids_of[hosts] for hosts in sets)
            ordered = sorted(together)
            if len(ordered) == 2:
                names = " and ".join(ordered)
            elif len(ordered) <= SHARED_NAMED:
                names = ", ".join(ordered)
            else:
                names = (
                    f"{len(ordered)} nodes ({', '.join(ordered[:SHARED_NAMED])} and {len(ordered) - SHARED_NAMED} more)"
                )
            gpus = f"{count} GPU UUIDs" if count > 1 else "a GPU UUID"
            summary = worded[together] = (
                f"{gpus} in the reports of {names} alike: a copied report, or cards moved between them"
            )
        out[host] = [Problem(_source(refs, host), "fleet", "gpu.shared", Status.WARN, summary, dict(SHARED_GPUS_FIX))]
    return out


#: Hosts a shared GPU's problem names in its words (the problem lists every node it is on).
SHARED_NAMED = 4


#: The counts in a mixed node's model ("2× A + 6× B": kinds._models).
_MIXED_COUNTS = re.compile(r"(?:(?<=^)|(?<= \+ ))\d+× ")


def _fewer_gpus(
    fields: dict[str, dict[str, tuple[tuple[int, float], Any]]], refs: dict[str, list[ReportRef]]
) -> dict[str, list[Problem]]:
    """A warning for each node whose doctor counts fewer GPUs than most nodes of its GPU model (a strict
    majority): a GPU that fell off the bus leaves a node that passes its own checks but runs one GPU short,
    which a fleet's drift alone shows as a value among others. A fleet of mixed sizes (no count held by
    most nodes of a model) warns of nothing."""
    by_model: dict[str, dict[int, list[str]]] = {}
    spelled: dict[str, dict[str, int]] = {}  # a model as drivers spell it (pool_key), the most common named
    for host, own in fields.items():
        model, count = own.get("gpu.model", (0, None))[1], own.get("gpu.count", (0, None))[1]
        if isinstance(model, str) and type(count) is int:
            # a node of mixed GPUs by its models alone ("2× A + 6× B" and "2× A + 5× B" are one kind of node)
            model = _MIXED_COUNTS.sub("", model)
            key = pool_key(model)
            by_model.setdefault(key, {}).setdefault(count, []).append(host)
            said = spelled.setdefault(key, {})
            said[model] = said.get(model, 0) + 1
    out: dict[str, list[Problem]] = {}
    for key, counts in by_model.items():
        model = max(spelled[key].items(), key=lambda kv: (kv[1], kv[0]))[0]
        nodes = sum(len(hosts) for hosts in counts.values())
        usual, most = max(counts.items(), key=lambda kv: (len(kv[1]), kv[0]))
        if len(most) * 2 <= nodes:
            continue
        for count, hosts in counts.items():
            if count >= usual:
                continue
            gpus = f"{count} GPU{'' if count == 1 else 's'}"
            summary = f"{gpus} ({model}) where {len(most)} of the {nodes} nodes with this model have {usual}"
            for host in hosts:
                out.setdefault(host, []).append(
                    Problem(
                        _source(refs, host, "doctor"), "fleet", "gpu.count", Status.WARN, summary, dict(FEWER_GPUS_FIX)
                    )
                )
    return out


MIXED_GPUS_FIX = {
    "text": "Compare this node's GPUs with how it was built: a card of another model in a node of one model is a "
    "swapped or wrongly seated card, or an inventory that is wrong; a node built mixed on purpose needs nothing",
    "command": "nvidia-smi -L",
}


def _mixed_gpus(
    fields: dict[str, dict[str, tuple[tuple[int, float], Any]]], refs: dict[str, list[ReportRef]]
) -> dict[str, list[Problem]]:
    """A warning for each node of GPUs of several models where most nodes that name theirs (a strict
    majority) have one model: its own doctor passes it (mixed cards are fine on a workstation), so only the
    fleet sees a card of another model in a rack built of one. A fleet built mixed warns of nothing."""
    mixed, single = [], 0
    for host, own in fields.items():
        model = own.get("gpu.model", (0, None))[1]
        if isinstance(model, str) and model.strip() and UNNAMED_GPU not in model:
            if _mixed(model):
                mixed.append((host, model))
            else:
                single += 1
    total = single + len(mixed)
    if not mixed or single * 2 <= total:
        return {}
    return {
        host: [
            Problem(
                _source(refs, host, "doctor"),
                "fleet",
                "gpu.model",
                Status.WARN,
                f"GPUs of several models ({model}), where {single} of the {total} nodes have one model",
                dict(MIXED_GPUS_FIX),
            )
        ]
        for host, model in mixed
    }


#: The fields a node's value of which, where most of the fleet has another, is a warning on it (the
#: software stack; a node's GPUs are another matter: envcheck.fleet.merge._fewer_gpus).
STACK_HARDWARE = frozenset({"gpu.model", "gpu.count"})

#: Fields that follow another: a node on another driver differs in the CUDA it supports, one on another torch in
#: its build, CUDA runtime, cuDNN and NCCL: said once, by the field they follow.
STACK_FOLLOWS = {
    "driver.cuda": "driver.version",
    "torch.flavour": "torch.version",
    "torch.cuda_runtime": "torch.version",
    "torch.cudnn": "torch.version",
    "torch.nccl": "torch.version",
    "package.torch": "torch.version",
}

#: The share of the nodes of one GPU model that must run one value for it to be the fleet's: a rack on an
#: older driver is off it; a rolling upgrade half done, or pools built apart, has no one stack to be off.
STACK_MOST = 0.75

OFF_STACK_FIX = {
    "text": "Bring this node's stack in line with the fleet's (its image, driver or environment), or the fleet's "
    "with it: a node that differs runs the same job differently (other results, another speed) or fails it.",
    "command": None,
}


def _off_stack(
    fields: dict[str, dict[str, tuple[tuple[int, float], Any]]], refs: dict[str, list[ReportRef]]
) -> dict[str, list[Problem]]:
    """A warning for each node whose software stack differs from the one most nodes of its GPU model run (at
    least :data:`STACK_MOST` of those that state each field): a rack on an older driver, five nodes on another
    torch. One warning a node, naming each field it differs in (a field that follows another, said by that
    one), so the nodes that differ alike read as one group. A value not stated (None: no driver found, a
    report that does not carry cuDNN) is never the fleet's nor a difference: the node's own checks say what
    is missing. Nodes of different GPU models are compared apart (a B200 pool on a newer driver than the
    H100s is not drift to warn of), a model spelled otherwise (another case, the "NVIDIA " an older driver
    leaves out of the name) being the same model; the drift section, or the one by GPU model, lists every
    value either way."""
    by_model: dict[Any, dict[str, dict[Any, list[str]]]] = {}
    spelled: dict[Any, dict[Any, int]] = {}  # each model's spellings (pool_key), the most common named
    for host, own in fields.items():
        model = own.get("gpu.model", (0, None))[1]
        key = pool_key(model) if isinstance(model, str) and not _mixed(model) else model
        said = spelled.setdefault(key, {})
        said[model] = said.get(model, 0) + 1
        mine = by_model.setdefault(key, {})
        for name, (_, value) in own.items():
            if name not in STACK_HARDWARE and value is not None:
                mine.setdefault(name, {}).setdefault(value, []).append(host)
    named = {key: max(said.items(), key=lambda kv: (kv[1], str(kv[0])))[0] for key, said in spelled.items()}
    # the models whose value another's node may be said to run: pools (two nodes or more of one named model)
    pools = {
        key
        for key, said in spelled.items()
        if isinstance(named[key], str)
        and not _mixed(named[key])
        and UNNAMED_GPU not in named[key]
        and sum(said.values()) >= POOL_MIN
    }
    # each model's usual value of each field (what at least STACK_MOST of its nodes stating it have)
    usual_of: dict[str, dict[Any, Any]] = {}
    for key, by_field in by_model.items():
        for name, values in by_field.items():
            usual, most = max(values.items(), key=lambda kv: (len(kv[1]), str(kv[0])))
            if len(most) >= STACK_MOST * sum(len(hosts) for hosts in values.values()):
                usual_of.setdefault(name, {})[key] = (usual, len(most))
    owners: dict[str, dict[Any, list[str]]] = {}  # field -> value -> the pools that usually run it
    for name, usual in usual_of.items():
        for key, (value, _) in usual.items():
            if key in pools:
                owners.setdefault(name, {}).setdefault(value, []).append(key)
    differs: dict[str, dict[str, str]] = {}
    for key, by_field in by_model.items():
        model = named[key]
        for name, values in sorted(by_field.items(), key=lambda kv: _field_order(kv[0])):
            if len(values) < 2 or key not in usual_of.get(name, {}):
                continue
            usual, most = usual_of[name][key]
            stating = sum(len(hosts) for hosts in values.values())
            of = f"the {stating} nodes" + (f" of {model}" if isinstance(model, str) else "")
            for value, hosts in values.items():
                if value != usual:
                    # another model's own (an H100 node given the A100 nodes' image) says where it came from
                    theirs = sorted(str(named[other]) for other in owners.get(name, {}).get(value, ()) if other != key)
                    whose = (
                        f" (as the nodes of {', '.join(theirs)} have)"
                        if 0 < len(theirs) <= SPAN_LISTED
                        else f" (as the nodes of {len(theirs)} other GPU models have)"
                        if theirs
                        else ""
                    )
                    for host in hosts:
                        differs.setdefault(host, {})[name] = (
                            f"{field_title(name)} {value} where {most} of {of} have {usual}{whose}"
                        )
    out = {}
    for host, said in differs.items():
        kept = [words for name, words in said.items() if STACK_FOLLOWS.get(name) not in said]
        out[host] = [Problem(_source(refs, host), "fleet", "stack", Status.WARN, "; ".join(kept), dict(OFF_STACK_FIX))]
    return out


def _missing_reports(
    refs: dict[str, list[ReportRef]], models: dict[str, str] | None = None
) -> dict[str, list[Problem]]:
    """A warning for each node without a report of a kind that most of the fleet's nodes have (a strict
    majority): a node whose bench is missing (a job that died, a file skipped as truncated) has no figure
    in the comparisons, and without this it read "ok" on its doctor alone, a verdict on what was never
    measured. A kind only some nodes run (a comm job's one report, a bench of a sample of the fleet)
    warns of nothing.

    With ``models`` (host -> its pool's GPU model: :func:`_pools`), a node of a pool is held to its pool: a
    fleet that benches its H100 pool and not its A100s (or a sample of them) is two pools run apart, and a
    fleet-wide majority warned every A100 node of a bench it was never meant to have. Where exactly half of
    its pool has one (a pool of two, one bench lost), it is held to the fleet, as a node in no pool is."""
    models = models or {}
    pools: dict[str, set[str]] = {}
    for host in refs:
        if host in models:
            pools.setdefault(models[host], set()).add(host)
    having: dict[str, set[str]] = {}
    for host, own in refs.items():
        for r in own:
            having.setdefault(r.kind, set()).add(host)
    out: dict[str, list[Problem]] = {}
    for kind, hosts in sorted(having.items()):
        fix = {
            "text": f"Run envcheck {kind} on this node and merge again; if it ran, find why its report is missing "
            "(its job's log, or the sources this report lists as skipped).",
            "command": f"envcheck {kind} --json",
        }
        fleet = (
            f"no {kind} report, where {len(hosts)} of the {len(refs)} nodes have one"
            if len(hosts) * 2 > len(refs)
            else None
        )
        said: dict[str | None, str | None] = {None: fleet}  # per pool (None: the fleet), its words, or None: none
        for host in sorted(refs.keys() - hosts):
            model = models.get(host)
            if model not in said:
                among = pools[model]
                have = len(among & hosts)
                # held to its pool where most of its pool has one; where half of it has (a pool of two, one
                # bench lost), to the fleet, as a node of no pool is; else its pool does not run the kind, or
                # runs it on a sample of its nodes
                said[model] = (
                    f"no {kind} report, where {have} of the {len(among)} nodes of {model} have one"
                    if have * 2 > len(among)
                    else fleet
                    if have * 2 == len(among)
                    else None
                )
            if said[model] is not None:
                out.setdefault(host, []).append(
                    Problem(_source(refs, host), "fleet", "report.missing", Status.WARN, said[model], dict(fix))
                )
    return out


def _nodes(
    refs: dict[str, list[ReportRef]],
    problems: dict[str, list[Problem]],
    compared: list[Comparison],
    fleet_problems: dict[str, list[Problem]] | None = None,
    gpus: dict[str, frozenset[str]] | None = None,
) -> list[Node]:
    """Every node, the failing ones first (then warnings, then by name): the order an admin reads. A
    host named only by another node's report (a comm rank that never joined) is a node too. A node
    with a slow device fails: a GPU well below its siblings elsewhere is throttling, degraded or
    misconfigured, whatever its own checks said."""
    slow: dict[str, list[Figure]] = defaultdict(list)
    for c in compared:
        for f in c.slow:
            slow[f.hostname].append(f)
    made = []
    for hostname in refs.keys() | problems.keys():
        reports, own = refs.get(hostname, []), problems.get(hostname, [])
        older = _superseded(reports, gpus, own) if len(reports) > 1 else set()
        if older:  # a node's verdict rests on its newest report of each kind
            reports = [r for r in reports if r.source not in older]
            own = [p for p in own if p.source not in older]
        if fleet_problems and hostname in fleet_problems:  # what only the fleet shows (fewer GPUs)
            own = own + fleet_problems[hostname]
        slow_here = [Status.FAIL] if hostname in slow else []
        status = worst([r.status for r in reports] + [p.status for p in own] + slow_here)
        made.append(
            Node(
                hostname,
                status,
                tuple(reports),
                tuple(p for p in own if p.status.is_problem),
                tuple(p for p in own if p.status is Status.WARN),
                tuple(slow.get(hostname, ())),
            )
        )
    made.sort(key=lambda n: (-n.status.severity, n.hostname))
    return made


# --- drift -------------------------------------------------------------------------------------------


def _field_order(name: str) -> tuple[int, str]:
    order = list(FIELDS)
    return (order.index(name), "") if name in FIELDS else (len(order), name)


#: The fewest nodes of one GPU model that make a pool built apart: a model only one node has (a card an
#: older driver names otherwise, a stray of another kind) is compared with the whole fleet, never a pool of
#: one whose stack and figures agree with themselves.
POOL_MIN = 2


def pool_key(model: str) -> str:
    """A GPU model as pools are told apart: its case, its spacing and the "NVIDIA " older drivers leave out
    of the name do not make another model."""
    return " ".join(model.split()).casefold().removeprefix("nvidia ")


def _mixed(model: str) -> bool:
    """Whether a node's model is several ("2× A + 6× B", kinds._models), not a name holding a ``+``."""
    return _MIXED_COUNTS.match(model) is not None


def _pools(fields: dict[str, dict[str, tuple[tuple[int, float], Any]]]) -> dict[str, str]:
    """Each node of a pool built apart: host -> the pool's model, as most of its nodes spell it. A pool is
    the nodes of one GPU model (:func:`pool_key`), at least :data:`POOL_MIN` of them; none where the fleet
    has fewer than two pools. A node of mixed GPUs, of no GPU, or of a model no other node has is in no
    pool (:func:`drift` and :func:`_missing_reports` say what that changes)."""
    members: dict[str, list[str]] = {}
    spellings: dict[str, dict[str, int]] = {}
    for host, own in fields.items():
        model = own.get("gpu.model", (0, None))[1]
        if not isinstance(model, str) or not model.strip() or _mixed(model) or UNNAMED_GPU in model:
            continue
        key = pool_key(model)
        members.setdefault(key, []).append(host)
        said = spellings.setdefault(key, {})
        said[model] = said.get(model, 0) + 1
    pools = {key: hosts for key, hosts in members.items() if len(hosts) >= POOL_MIN}
    if len(pools) < 2:
        return {}
    out = {}
    for key, hosts in pools.items():
        name = max(spellings[key].items(), key=lambda kv: (kv[1], kv[0]))[0]
        out.update(dict.fromkeys(hosts, name))
    return out


def drift(
    by_field: dict[str, dict[Any, list[str]]], pools: dict[str, str] | None = None, mixed: Iterable[Any] = ()
) -> list[Drift]:
    """Each field with more than one value (field -> {value: hosts}), its values ordered by how many
    nodes have them. A field no report of a node states is absent for that node, not None: "not known"
    must not read as drift, while "no driver" (None from a doctor) does.

    With ``pools`` (host -> its pool's GPU model: :func:`_pools`): a field on which the nodes of each pool
    agree, and that two pools or more state, differs by model (:attr:`Drift.models`): a fleet of an H100
    pool and an A100 pool built apart, each on its own image, is not drifting, and read as drift its verdict
    warned for as long as both pools stood. A node in no pool (mixed GPUs, none, a model of its own) is
    listed under its value and changes nothing while that is a pool's value; a value no pool has (a node of
    its own model on a driver no pool runs) is drift. ``mixed``: the GPU models of nodes that warn of their
    mixed GPUs themselves (:func:`_mixed_gpus`), which are no drift of the GPU model's."""
    pools = pools or {}
    mixed = set(mixed)
    out = []
    for name, values in sorted(by_field.items(), key=lambda kv: _field_order(kv[0])):
        if len(values) < 2:
            continue
        ranked = sorted(values.items(), key=lambda kv: (-len(kv[1]), str(kv[0])))
        # a node of mixed GPUs is no pool's GPU model, and warns of that itself (_mixed_gpus)
        exempt = {at for at, (v, _) in enumerate(ranked) if v in mixed} if name == "gpu.model" else set()
        models = _models_apart([hosts for _, hosts in ranked], pools, exempt)
        odd = _off_their_pool([hosts for _, hosts in ranked], pools) if pools and models is None else set()
        out.append(
            Drift(
                name,
                # the nodes off their pool's value first: one H100 node on the A100s' driver was the 90th
                # name of that value's list, left out where it is cut
                tuple((value, tuple(sorted(hosts, key=lambda h: (h not in odd, h)))) for value, hosts in ranked),
                models,
            )
        )
    return out


def _off_their_pool(hosts: list[list[str]], pools: dict[str, str]) -> set[str]:
    """The nodes whose value (``hosts``: each value's) is not the one most of their pool has, and those in no
    pool whose value no pool has most."""
    counts: dict[str, dict[int, int]] = {}
    for at, found in enumerate(hosts):
        for host in found:
            pool = pools.get(host)
            if pool is not None:
                mine = counts.setdefault(pool, {})
                mine[at] = mine.get(at, 0) + 1
    usual = {pool: max(mine.items(), key=lambda kv: (kv[1], -kv[0]))[0] for pool, mine in counts.items()}
    held = set(usual.values())
    return {
        host
        for at, found in enumerate(hosts)
        for host in found
        if (usual.get(pools[host]) != at if host in pools else at not in held)
    }


def _models_apart(
    hosts: list[list[str]],
    pools: dict[str, str],
    exempt: set[int] = frozenset(),  # type: ignore[assignment]
) -> tuple[tuple[str, ...], ...] | None:
    """Each value's pools (``hosts``: each value's), where no pool has two values, two pools or more state
    the field and every value is a pool's (or ``exempt``: said elsewhere); else None (drift)."""
    if not pools:
        return None
    seen: dict[str, int] = {}  # pool -> the value (its place) its nodes have
    outside: set[int] = set()  # the values of nodes in no pool
    for at, found in enumerate(hosts):
        for host in found:
            pool = pools.get(host)
            if pool is None:
                outside.add(at)
            elif seen.setdefault(pool, at) != at:
                return None
    if len(seen) < 2 or not outside - exempt <= set(seen.values()):
        return None
    out: list[list[str]] = [[] for _ in hosts]
    for pool, at in sorted(seen.items()):
        out[at].append(pool)
    return tuple(map(tuple, out))


def uniform(by_field: dict[str, dict[Any, list[str]]]) -> list[tuple[str, Any, int]]:
    """The fleet's stack where it agrees: (field, the one value, how many nodes state it)."""
    return [
        (name, *next(iter((value, len(hosts)) for value, hosts in values.items())))
        for name, values in sorted(by_field.items(), key=lambda kv: _field_order(kv[0]))
        if len(values) == 1
    ]


# --- slow devices ------------------------------------------------------------------------------------


def _copied(column: Column) -> Column:
    out = Column()
    out.extend(column.positions, column.values, list(column.sources), column.whens)
    out.named = dict(column.named)
    return out


def _one_group_per_model(groups: dict[Group, Column]) -> dict[Group, Column]:
    """The groups whose models differ only in how a driver spells them (:func:`pool_key`: "H100 80GB HBM3"
    from an older driver beside "NVIDIA H100 80GB HBM3") as one, named as the one with the most figures:
    apart, a node on that driver was compared only with itself, and all its GPUs slow read as none.
    The figures of the others are put in it as a later report's are (:meth:`Column.put`)."""
    keyed: dict[tuple[Any, ...], list[Group]] = {}
    for group in groups:
        keyed.setdefault((group.id, group.device_kind, pool_key(group.model), group.unit, group.quick), []).append(
            group
        )
    if len(keyed) == len(groups):
        return groups
    out: dict[Group, Column] = {}
    into: dict[Group, Group] = {}
    for alike in keyed.values():
        kept = max(alike, key=lambda g: len(groups[g].values))
        into.update(dict.fromkeys(alike, kept))
    for group, column in groups.items():
        kept = into[group]
        if kept not in out:
            out[kept] = groups[kept]
            if len(keyed[(kept.id, kept.device_kind, pool_key(kept.model), kept.unit, kept.quick)]) > 1:
                out[kept] = _copied(groups[kept])  # the merger's own column is left as it was
        if group != kept:
            target = out[kept]
            for at, value, source, when in zip(
                column.positions, column.values, column.sources, column.whens, strict=True
            ):
                target.put(at, value, source, column.named.get(at), when)
    return out


def comparisons(
    groups: dict[Group, Column],
    devices: Sequence[Device],
    threshold: float = DEFAULT_THRESHOLD,
    host_bound: frozenset[str] = frozenset(),
) -> list[Comparison]:
    """Each (benchmark, model) group (:class:`Column`: devices named by their place in ``devices``) with
    its fleet median and the devices more than ``threshold`` below it, which are slow. One device alone
    has nothing to compare with and is never slow, nor is a figure of a benchmark in ``host_bound`` (the
    bench's own rule among a node's GPUs: a host copy depends on the CPU socket the worker ran on). Only
    the slow ones become :class:`Figure` objects here: the rest stay columns (see :class:`Comparison`)."""
    out = []
    for group, column in sorted(groups.items()):
        named = column.named
        table = devices
        if named:
            table = [*devices]  # this group's names: the table's, but where its own report differs
            for at, names in named.items():
                table[at] = names
        bench_id, kind, model, unit, quick = group
        # copies: the report stays as it is whatever the merger absorbs after
        positions, values, sources = array("q", column.positions), array("d", column.values), tuple(column.sources)
        ordered = array("d", sorted(values))  # sorted once: the median, and the chart's figures
        median = _median(ordered)
        comparison = Comparison(
            bench_id,
            kind,
            model,
            unit,
            median,
            table,
            positions,
            values,
            sources,
            (),
            quick,
            ordered,
            bench_id in host_bound,
        )
        slow: list[Figure] = []
        if len(values) > 1 and median > 0 and not comparison.host_bound:
            # Slow: 1 - value / median > threshold, which falls as the value rises, so the slow figures
            # are the lowest few, a prefix of the sorted ones. Counted there; then their rows are found
            # at the speed of C, not by testing eighty thousand figures one by one.
            k = 0
            while k < len(ordered) and ordered[k] < median and 1.0 - ordered[k] / median > threshold:
                k += 1
            if k:
                for row in compress(range(len(values)), map(ordered[k - 1].__ge__, values)):
                    slow.append(_figure(comparison, table[positions[row]], values[row], sources[row], True))
        slow.sort(key=lambda f: (f.hostname, f.index if f.index is not None else -1, f.device))
        out.append(replace(comparison, slow=tuple(slow)))
    return out


def _median(ordered: Sequence[float]) -> float:
    """The median of figures already in ascending order (as :func:`statistics.median`, without sorting
    them again); where the mean of the two middle ones overflows (figures near the float maximum), the
    lower one (:func:`statistics.median_low`)."""
    n = len(ordered)
    if n % 2:
        return ordered[n // 2]
    median = (ordered[n // 2 - 1] + ordered[n // 2]) / 2
    return median if math.isfinite(median) else ordered[n // 2 - 1]


def slow_devices(slow: Iterable[Figure]) -> list[SlowDevice]:
    """The slow figures folded by device (its UUID, else its host and bench name), by host then index."""
    by_device: dict[tuple[str, str, str], list[Figure]] = defaultdict(list)
    for f in slow:
        by_device[(f.hostname, f.device_kind, f.uuid or f.device)].append(f)
    out = [
        SlowDevice(host, kind, fs[0].device, fs[0].index, fs[0].uuid, fs[0].pci_bus_id, fs[0].model, tuple(fs))
        for (host, kind, _), fs in by_device.items()
    ]
    out.sort(key=lambda d: (d.hostname, d.index if d.index is not None else -1, d.device))
    return out


# --- problems across the fleet ------------------------------------------------------------------------


def problem_groups(nodes: Sequence[Node], slow: Sequence[Figure], threshold: float) -> list[ProblemGroup]:
    """Each node's failing items and warnings folded into one group per (report, check, verdict), with
    the nodes that have it in the nodes' order and its distinct fixes; then one group per slow device
    model. The worst first, then the most common: what to fix first leads."""
    # each node's items of a group, in its report's order: a node counts once per group, and its first item
    # gives its fix, but a second GPU failing the same check there has words of its own (GPU 5 beside GPU 2)
    found: dict[tuple[str, str, Status], dict[str, list[Problem]]] = defaultdict(dict)
    for node in nodes:
        for p in (*node.failing, *node.warnings):
            found[(p.report, p.id, p.status)].setdefault(node.hostname, []).append(p)
    out = [_group(report, check, status, by_node) for (report, check, status), by_node in found.items()]
    by_model: dict[tuple[str, str], list[SlowDevice]] = defaultdict(list)
    for device in slow_devices(slow):
        by_model[(device.device_kind, device.model)].append(device)
    for (kind, model), devices in sorted(by_model.items()):
        hosts = tuple(dict.fromkeys(d.hostname for d in devices))
        figures = sum(len(d.figures) for d in devices)
        name = "GPU" if kind == "gpu" else kind.upper()
        summary = (
            f"{len(devices)} {name}{'s' if len(devices) != 1 else ''} of {model} more than {threshold:.0%} below "
            f"the fleet median of their model ({figures} figure{'s' if figures != 1 else ''})"
        )
        fix = (Fix(SLOW_FIX, hosts),)
        out.append(
            ProblemGroup("fleet", f"slow.{kind}", Status.FAIL, summary, hosts, fix, 0, len(devices), figures, model)
        )
    out.sort(key=lambda g: (-g.status.severity, -len(g.nodes), g.report, g.id, g.model or ""))
    return out


def _fix_key(fix: dict[str, Any] | None) -> Any:
    """What tells one fix from another: its items (text and command, as kinds._fix makes it), or their
    repr where one is not hashable (a fix made by hand)."""
    if not fix:
        return ""
    items = tuple(fix.items())
    try:
        hash(items)
    except TypeError:
        return repr(items)
    return items


def _group(report: str, check: str, status: Status, items: dict[str, list[Problem]]) -> ProblemGroup:
    """One problem across the fleet from each node's items of it (in its report's order; its first gives the
    node's fix). One pass over the nodes: a group of 10 000 nodes is common, and a fleet has dozens."""
    fixes: dict[str, tuple[dict[str, Any] | None, list[str]]] = {}
    # every item's words, each with the nodes that say them (a node once per wording), and the devices each
    # wording names (found once per wording, not per node)
    said: dict[str, list[str]] = {}
    shape: dict[str, tuple[frozenset[str], str]] = {}
    # the nodes by what their words say (see own_words below)
    shapes: dict[frozenset[tuple[frozenset[str], str]], list[str]] = {}
    several: dict[tuple[str, ...], frozenset[tuple[frozenset[str], str]]] = {}
    # its nodes by name, as an admin looks for one (not in the order of their verdicts)
    for hostname, found in sorted(items.items()):
        fix = found[0].fix
        fixes.setdefault(_fix_key(fix), (fix, []))[1].append(hostname)
        for p in found[1:]:  # a second GPU's other error may have a fix of its own (ECC beside a kernel's fault)
            if p.fix is not fix:
                listed = fixes.setdefault(_fix_key(p.fix), (p.fix, []))[1]
                if listed[-1:] != [hostname]:
                    listed.append(hostname)
        for p in found:
            words = p.summary
            hosts = said.get(words)
            if hosts is None:
                said[words] = [hostname]
                shape[words] = (frozenset(DEVICE_NAMED.findall(words)), numberless(words))
            elif hosts[-1] != hostname:
                hosts.append(hostname)
        if len(found) == 1:
            mine = frozenset((shape[found[0].summary],))
        else:  # a node's several items (eight GPUs): the same words on every node, so each set made once
            key = tuple(p.summary for p in found)
            mine = several.get(key)
            if mine is None:
                mine = several[key] = frozenset(shape[words] for words in key)
        shapes.setdefault(mine, []).append(hostname)
    ranked = sorted(fixes.values(), key=lambda f: (f[0] is None, -len(f[1])))
    # the words of a node whose fix is the one shown first, so that the two shown together belong together
    top = _fix_key(ranked[0][0])
    first = next(p for p in items[ranked[0][1][0]] if _fix_key(p.fix) == top)
    # Its nodes' words say different things (GPU 0 here, GPU 5 there; two GPUs on one node, one on another;
    # another error): each node's words say what to act on there. Every node saying the same (all eight GPUs
    # of each, alike) is one problem said once, as are words that differ in a number alone. Where most of
    # its nodes say the same, the others are ``odd``: a problem on every node is said once for the many, and
    # the few keep their own lists (one node's GPU 5 with ECC errors among a fleet's kernel faults).
    own_words = len(shapes) > 1
    most = max(shapes.values(), key=len)
    odd = tuple(sorted(h for hosts in shapes.values() if hosts is not most for h in hosts)) if own_words else ()
    if len(most) * 2 <= len(items):
        odd = ()  # no majority: each node's words are its own
    # each thing said (words that differ in numbers alone say one thing), in its first words, with every node
    # that says it: the many first, so that what most nodes say is never left out for the few
    alike: dict[tuple[frozenset[str], str], tuple[list[str], dict[str, None]]] = {}
    for text, hosts in said.items():
        known = alike.get(shape[text])
        if known is None:
            alike[shape[text]] = ([text], dict.fromkeys(hosts))
        else:
            known[0].append(text)
            known[1].update(dict.fromkeys(hosts))
    ranked_words = sorted(alike.values(), key=lambda w: -len(w[1]))
    # several things said (eight GPUs of every node, alike), or said differently by node: each with its nodes,
    # in words true of each of them (the numbers that differ said as their span), and how many wordings that
    # is. Where there is room, a thing said in a few wordings is said in each, with its nodes: "1 or 3 errors
    # since boot, 7 or 40 over its life" on two nodes did not say which node had forty.
    words: list[tuple[list[str], list[str]]] = []
    room = WORDS_KEPT - min(len(ranked_words), WORDS_KEPT)
    for texts, hosts in ranked_words[:WORDS_KEPT]:
        if 1 < len(texts) <= min(room + 1, SPAN_LISTED):
            room -= len(texts) - 1
            words += sorted((([text], said[text]) for text in texts), key=lambda w: -len(w[1]))
        else:
            words.append((texts, sorted(hosts)))
    if len(words) < 2:
        words = []  # one thing said: the summary says it
    first_said = alike[shape[first.summary]][0]
    return ProblemGroup(
        report,
        check,
        status,
        first.summary,
        tuple(sorted(items)),
        tuple(Fix(fix, tuple(hosts)) for fix, hosts in ranked[:FIXES_KEPT]),
        max(0, len(ranked) - FIXES_KEPT),
        wordings=len(said),
        own_words=own_words,
        words=tuple(Words(texts[0], tuple(hosts), _spanned(texts), len(texts)) for texts, hosts in words),
        odd=odd,
        # said where the summary is what is shown (its words, where several things are said, say each)
        said=_spanned(first_said) if not words else None,
    )


def _spanned(texts: list[str]) -> str | None:
    """Words said alike but for their numbers as one text true of each (:func:`kinds.spanned`); None where
    there is one text (it is the summary itself)."""
    return spanned(texts) if len(texts) > 1 else None


#: How a check's words name a device: a GPU by index, a CUDA device, an InfiniBand HCA (``mlx5_3``), a PCI
#: bus id, a GPU UUID.
DEVICE_NAMED = re.compile(
    r"\bGPU \d+\b|\bcuda:\d+\b|\bmlx\d+_\d+\b"
    r"|\b[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7]\b|\bGPU-[0-9A-Fa-f-]{8,}"
)
