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
"""

from __future__ import annotations

import json
import re
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from envcheck.core.exit import ExitCode
from envcheck.core.model import Status, worst
from envcheck.fleet.read import NodeReport, Skipped

#: A GPU more than this share below its model's fleet median is slow (``--threshold``): run-to-run
#: noise of one healthy GPU is a few per cent; a throttling or degraded one is well past 10 %.
DEFAULT_THRESHOLD = 0.10

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

#: Where a field's value is taken from when a node has several reports: the doctor sees the most.
_KIND_ORDER = {"doctor": 0, "bench": 1, "burn": 2, "comm": 3}


@dataclass(frozen=True)
class Problem:
    """One failing (or warning) item of a node, as its report stated it."""

    source: str
    report: str
    id: str
    status: Status
    summary: str
    fix: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "report": self.report,
            "source": self.source,
            "id": self.id,
            "status": self.status.value,
            "summary": self.summary,
            "fix": self.fix,
        }


@dataclass(frozen=True)
class ReportRef:
    """Which reports a node's verdict rests on."""

    source: str
    kind: str
    status: Status
    exit_code: int | None
    generated_at: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "source": self.source,
            "status": self.status.value,
            "exit_code": self.exit_code,
            "generated_at": self.generated_at,
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


@dataclass(frozen=True)
class Comparison:
    """Every device of one model that ran one benchmark, with the fleet median: what a chart draws."""

    id: str
    device_kind: str
    model: str
    unit: str
    median: float
    figures: tuple[Figure, ...]
    #: Figures of ``bench --quick`` runs: smaller cases, lower figures, compared only with each other.
    quick: bool = False


class Group(NamedTuple):
    """What makes figures comparable: the same benchmark on the same model, in the same unit, from runs
    of the same kind (a ``--quick`` bench runs smaller cases, whose figures are lower)."""

    id: str
    device_kind: str
    model: str
    unit: str
    quick: bool


@dataclass(frozen=True)
class DuplicateHost:
    hostname: str
    kind: str
    sources: tuple[str, ...]


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

    @property
    def slow(self) -> list[Figure]:
        return [f for c in self.comparisons for f in c.figures if f.slow]

    @property
    def slow_gpus(self) -> list[Figure]:
        return [f for f in self.slow if f.device_kind == "gpu"]

    @property
    def slow_cpus(self) -> list[Figure]:
        return [f for f in self.slow if f.device_kind != "gpu"]

    @property
    def failing_nodes(self) -> list[Node]:
        return [n for n in self.nodes if n.status.is_problem]

    @property
    def exit_code(self) -> ExitCode:
        """1 when a node fails or a device is slow; drift and duplicates are called out but do not fail
        the fleet by themselves (a rolling driver upgrade drifts on purpose)."""
        return ExitCode.FAILED if self.failing_nodes or self.slow else ExitCode.OK

    @property
    def status(self) -> Status:
        if self.exit_code is ExitCode.FAILED:
            return Status.FAIL
        warned = self.drift or self.duplicate_hosts or self.duplicate_gpus or self.skipped
        return worst([n.status for n in self.nodes] + ([Status.WARN] if warned else []))


def field_title(name: str) -> str:
    if name.startswith("package."):
        return f"package {name.removeprefix('package.')}"
    return FIELDS.get(name, name)


def merge(
    reports: Iterable[NodeReport], skipped: Sequence[Skipped] = (), *, threshold: float = DEFAULT_THRESHOLD
) -> FleetReport:
    """The fleet report over ``reports`` (already read and classified; see envcheck.fleet.read)."""
    return merge_digests((digest(r) for r in reports), skipped, threshold=threshold)


@dataclass(frozen=True)
class Reading:
    """One device's headline figure for one benchmark, as one report states it."""

    group: Group
    device_key: str  # the device's UUID, else its bench name ("cpu"): one figure per device and host
    device_kind: str
    device: str
    index: int | None
    uuid: str | None
    pci_bus_id: str | None
    value: float


@dataclass(frozen=True)
class Digest:
    """What the merge needs of one report, taken as soon as it is read so that the document itself (a
    doctor report of an 8-GPU node is ~150 KiB of JSON, several times that as Python objects) can be
    dropped: ten thousand nodes merge in bounded memory."""

    source: str
    kind: str
    hostname: str
    ref: ReportRef
    #: Problems and warnings, each with the host it concerns (None: the report's own).
    problems: tuple[tuple[str | None, Problem], ...]
    fields: tuple[tuple[str, Any], ...]
    readings: tuple[Reading, ...]
    uuids: frozenset[str]


def digest(report: NodeReport) -> Digest:
    ref, problems = judge_report(report)
    return Digest(
        report.source,
        report.kind,
        report.hostname,
        ref,
        tuple(problems),
        tuple(report_fields(report).items()),
        tuple(report_readings(report)),
        report_uuids(report),
    )


def merge_digests(
    digests: Iterable[Digest], skipped: Sequence[Skipped] = (), *, threshold: float = DEFAULT_THRESHOLD
) -> FleetReport:
    """One pass over the digests into dicts keyed by host, field, (benchmark, model) and UUID; then
    each part is read off those dicts. Linear in the number of reports."""
    refs: dict[str, list[ReportRef]] = defaultdict(list)
    problems: dict[str, list[Problem]] = defaultdict(list)
    fields: dict[str, dict[str, tuple[int, Any]]] = defaultdict(dict)
    groups: dict[Group, dict[tuple[str, str], tuple[Reading, str, str]]] = defaultdict(dict)
    sources: dict[tuple[str, str], list[str]] = defaultdict(list)
    uuid_hosts: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    read = 0
    for d in digests:
        read += 1
        refs[d.hostname].append(d.ref)
        for hostname, problem in d.problems:
            problems[hostname or d.hostname].append(problem)
        # A field's value comes from the report that sees the most (the doctor first); the first such
        # report wins among equals.
        rank = _KIND_ORDER.get(d.kind, len(_KIND_ORDER))
        own = fields[d.hostname]
        for name, value in d.fields:
            if name not in own or rank < own[name][0]:
                own[name] = (rank, value)
        for r in d.readings:
            group = groups[r.group]
            key = (d.hostname, r.device_key)
            if key not in group or r.value > group[key][0].value:  # a device benchmarked twice: its best
                group[key] = (r, d.hostname, d.source)
        sources[(d.hostname, d.kind)].append(d.source)
        for uuid in d.uuids:
            uuid_hosts[uuid][d.hostname].append(d.source)
    by_field: dict[str, dict[Any, list[str]]] = defaultdict(lambda: defaultdict(list))
    for hostname, own in fields.items():
        for name, (_, value) in own.items():
            by_field[name][_hashable(value)].append(hostname)
    compared = comparisons(groups, threshold)
    return FleetReport(
        nodes=tuple(_nodes(refs, problems, compared)),
        drift=tuple(drift(by_field)),
        uniform=tuple(uniform(by_field)),
        comparisons=tuple(compared),
        duplicate_hosts=tuple(DuplicateHost(h, k, tuple(s)) for (h, k), s in sorted(sources.items()) if len(s) > 1),
        duplicate_gpus=tuple(
            DuplicateGpu(uuid, tuple(sorted(by_host)), tuple(s for h in sorted(by_host) for s in by_host[h]))
            for uuid, by_host in sorted(uuid_hosts.items())
            if len(by_host) > 1
        ),
        skipped=tuple(skipped),
        reports_read=read,
        threshold=threshold,
    )


# --- small readers that never raise on a document shaped unexpectedly --------------------------------


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in _list(value) if isinstance(v, dict)]


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _status(value: Any) -> Status | None:
    try:
        return Status(value)
    except ValueError:
        return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if value == value and abs(value) != float("inf") else None


# --- nodes -------------------------------------------------------------------------------------------


def _nodes(
    refs: dict[str, list[ReportRef]], problems: dict[str, list[Problem]], compared: list[Comparison]
) -> list[Node]:
    """Every node, the failing ones first (then warnings, then by name): the order an admin reads. A
    host named only by another node's report (a comm rank that never joined) is a node too. A node
    with a slow device fails: a GPU well below its siblings elsewhere is throttling, degraded or
    misconfigured, whatever its own checks said."""
    slow: dict[str, list[Figure]] = defaultdict(list)
    for c in compared:
        for f in c.figures:
            if f.slow:
                slow[f.hostname].append(f)
    made = []
    for hostname in refs.keys() | problems.keys():
        own = problems.get(hostname, [])
        status = worst(
            [r.status for r in refs.get(hostname, [])]
            + [p.status for p in own]
            + ([Status.FAIL] if hostname in slow else [])
        )
        made.append(
            Node(
                hostname,
                status,
                tuple(refs.get(hostname, ())),
                tuple(p for p in own if p.status.is_problem),
                tuple(p for p in own if p.status is Status.WARN),
                tuple(slow.get(hostname, ())),
            )
        )
    made.sort(key=lambda n: (-n.status.severity, n.hostname))
    return made


def judge_report(report: NodeReport) -> tuple[ReportRef, list[tuple[str | None, Problem]]]:
    """The report's own status and its problems, each with the host it concerns (None: the report's)."""
    doc = report.document
    found: list[tuple[str | None, Problem]] = [(None, p) for p in _checks(report, "checks")]
    if report.kind == "bench":
        found += [(None, p) for p in _checks(report, "preflight")]
        found += [(None, p) for p in _bench_results(report)]
    elif report.kind == "burn":
        found += [(None, p) for p in _checks(report, "verdicts")]
    elif report.kind == "comm":
        for p in _dicts(doc.get("problems")):
            where = f"rank {p['rank']}: " if isinstance(p.get("rank"), int) else ""
            problem = Problem(report.source, "comm", "comm", Status.FAIL, where + str(p.get("what") or "a problem"))
            found.append((_str(p.get("host")), problem))
    found += [(None, p) for p in _spec_verdicts(report)]
    exit_code = doc.get("exit_code") if isinstance(doc.get("exit_code"), int) else None
    status = _status(doc.get("status")) or Status.OK
    if exit_code:
        # A nonzero exit with a lenient status: --strict warnings, an interrupted run, a write error.
        status = worst([status, Status.FAIL])
    if status.is_problem and not any(p.status.is_problem for _, p in found):
        words = f"the {report.kind} report's status is {status.value}"
        if exit_code is not None:
            words += f" (exit code {exit_code})"
        if doc.get("interrupted") is True:
            words += ": the run was interrupted before it finished"
        found.append((None, Problem(report.source, report.kind, report.kind, Status.FAIL, words)))
    status = worst([status] + [p.status for _, p in found])
    generated = _str(doc.get("generated_at"))
    return ReportRef(report.source, report.kind, status, exit_code, generated), found


def _checks(report: NodeReport, key: str) -> list[Problem]:
    """Check results (the doctor's checks, the bench's preflight, burn's verdicts) that warned or failed."""
    out = []
    for check in _dicts(report.document.get(key)):
        status = _status(check.get("status"))
        if status is None or status.severity == 0:
            continue
        fix = _fix(check.get("fix"))
        summary = str(check.get("summary") or check.get("title") or "")
        out.append(Problem(report.source, report.kind, str(check.get("id") or "?"), status, summary, fix))
    return out


def _fix(value: Any) -> dict[str, str | None] | None:
    """A check's fix as the model writes it (text and command), whatever the file held."""
    fix = _dict(value)
    text, command = _str(fix.get("text")), _str(fix.get("command"))
    return {"text": text, "command": command} if text or command else None


def _bench_results(report: NodeReport) -> list[Problem]:
    out = []
    for r in _dicts(report.document.get("results")):
        status = _status(r.get("status"))
        if status is None or not status.is_problem:
            continue
        why = _str(r.get("reason")) or _str(_dict(r.get("check")).get("detail")) or status.value
        summary = f"{r.get('case') or r.get('id')} on {r.get('device') or '?'}: {why}"
        out.append(Problem(report.source, "bench", str(r.get("id") or "?"), status, summary))
    return out


def _spec_verdicts(report: NodeReport) -> list[Problem]:
    """The lab spec's minimums a bench, comm or burn run did not reach (the doctor's are checks)."""
    spec = report.document.get("spec")
    verdicts = _dicts(spec) if isinstance(spec, list) else _dicts(_dict(spec).get("verdicts"))
    out = []
    for v in verdicts:
        if v.get("passed") is False:
            name = v.get("id") or v.get("op") or "?"
            out.append(Problem(report.source, report.kind, f"spec.{name}", Status.FAIL, str(v.get("summary") or "")))
    return out


# --- drift -------------------------------------------------------------------------------------------


def report_fields(report: NodeReport) -> dict[str, Any]:
    doc = report.document
    out: dict[str, Any] = {}
    python = _str(_dict(doc.get("host")).get("python"))
    if python:
        out["python"] = python
    if report.kind == "doctor":
        driver = _dict(doc.get("driver"))
        out["driver.version"] = _str(driver.get("version"))
        out["driver.cuda"] = _str(driver.get("cuda_version"))
        gpus = _dicts(doc.get("gpus"))
        out["gpu.count"] = len(gpus)
        out["gpu.model"] = _models(str(g.get("name")) for g in gpus)
        out.update(_package_fields(doc))
    torch = doc.get("torch")
    if isinstance(torch, dict):
        out.update(_torch_fields(torch))
    if "torch.version" not in out and isinstance(doc.get("packages"), dict):
        # The doctor's --quick never imports torch; its installed version is still known.
        out["torch.version"] = _str(doc["packages"].get("torch"))
    return out


def _models(names: Iterable[str]) -> str | None:
    """One model name, or "2× A + 6× B" for a node of mixed GPUs (itself worth seeing as drift)."""
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    if len(counts) <= 1:
        return next(iter(counts), None)
    return " + ".join(f"{n}× {name}" for name, n in sorted(counts.items()))


def _torch_fields(torch: dict[str, Any]) -> dict[str, Any]:
    version = _str(torch.get("version"))
    if version is None:
        return {}  # torch did not import (the doctor says why in its checks): nothing to compare
    cuda, hip = _str(torch.get("cuda")), _str(torch.get("hip"))
    flavour = f"ROCm {hip}" if hip else f"CUDA {cuda}" if cuda else "CPU-only"
    out: dict[str, Any] = {"torch.version": version, "torch.flavour": flavour}
    if cuda or hip:
        out["torch.cuda_runtime"] = torch.get("cuda_runtime_version") or cuda
        out["torch.cudnn"] = torch.get("cudnn_version")
        out["torch.nccl"] = torch.get("nccl_version")
    return out


#: What a lab spec package check says when the version matches (envcheck.spec.checks): the version
#: is only in the words, while a mismatch carries it in ``details.found``.
_PACKAGE_OK = re.compile(r"^\S+ (\S+) matches ")


def _package_fields(doc: dict[str, Any]) -> dict[str, Any]:
    """The installed version of each package the lab spec pins (its ``spec.package.<name>`` checks)."""
    out: dict[str, Any] = {}
    for check in _dicts(doc.get("checks")):
        check_id = check.get("id")
        if not isinstance(check_id, str) or not check_id.startswith("spec.package."):
            continue
        name = check_id.removeprefix("spec.package.")
        details = _dict(check.get("details"))
        if "found" in details:
            out[f"package.{name}"] = details["found"]
            continue
        match = _PACKAGE_OK.match(str(check.get("summary") or ""))
        out[f"package.{name}"] = match.group(1) if match else _dict(doc.get("packages")).get(name)
    return out


def _hashable(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return json.dumps(value, sort_keys=True)


def _field_order(name: str) -> tuple[int, str]:
    order = list(FIELDS)
    return (order.index(name), "") if name in FIELDS else (len(order), name)


def drift(by_field: dict[str, dict[Any, list[str]]]) -> list[Drift]:
    """Each field with more than one value (field -> {value: hosts}), its values ordered by how many
    nodes have them. A field no report of a node states is absent for that node, not None: "not known"
    must not read as drift, while "no driver" (None from a doctor) does."""
    out = []
    for name, values in sorted(by_field.items(), key=lambda kv: _field_order(kv[0])):
        if len(values) < 2:
            continue
        ranked = sorted(values.items(), key=lambda kv: (-len(kv[1]), str(kv[0])))
        out.append(Drift(name, tuple((value, tuple(sorted(hosts))) for value, hosts in ranked)))
    return out


def uniform(by_field: dict[str, dict[Any, list[str]]]) -> list[tuple[str, Any, int]]:
    """The fleet's stack where it agrees: (field, the one value, how many nodes state it)."""
    return [
        (name, *next(iter((value, len(hosts)) for value, hosts in values.items())))
        for name, values in sorted(by_field.items(), key=lambda kv: _field_order(kv[0]))
        if len(values) == 1
    ]


# --- slow devices ------------------------------------------------------------------------------------


def report_readings(report: NodeReport) -> list[Reading]:
    """The report's figures per device. A bench figure is the benchmark's headline on that device, its
    best verified case, picked as the lab spec picks it (envcheck.spec.bench.headlines); a burn figure
    is a device's steady-state throughput."""
    from envcheck.spec.bench import headlines

    doc = report.document
    out: list[Reading] = []

    quick = report.kind == "bench" and _dict(doc.get("options")).get("quick") is True

    def add(bench_id: str, device: dict[str, Any], name: str, value: float, unit: str) -> None:
        kind = "gpu" if device.get("kind") in ("cuda", "gpu") else str(device.get("kind") or "cpu")
        model = _str(device.get("model")) or "unknown model"
        uuid = _str(device.get("uuid"))
        index = device.get("index") if isinstance(device.get("index"), int) else None
        pci = _str(device.get("pci_bus_id"))
        out.append(
            Reading(Group(bench_id, kind, model, unit, quick), uuid or name, kind, name, index, uuid, pci, value)
        )

    if report.kind == "bench":
        devices = {str(d.get("name")): d for d in _dicts(doc.get("devices"))}
        results = [
            r
            for r in _dicts(doc.get("results"))
            if isinstance(r.get("id"), str) and isinstance(r.get("unit"), str) and isinstance(r.get("device"), str)
        ]
        for (bench_id, name), (value, unit) in headlines(results).items():
            if _number(value) is None:
                continue
            device = devices.get(str(name)) or {"name": name, "kind": "cpu" if name == "cpu" else "cuda"}
            add(bench_id, device, str(name), value, unit)
    elif report.kind == "burn":
        unit = _str(doc.get("unit")) or "TFLOP/s"
        for device in _dicts(doc.get("devices")):
            value = _number(_dict(device.get("steady")).get("throughput"))
            if value is not None and value > 0:
                add(f"burn.{device.get('dtype') or 'load'}", device, str(device.get("name") or "?"), value, unit)
    return out


def comparisons(
    groups: dict[Group, dict[tuple[str, str], tuple[Reading, str, str]]],
    threshold: float = DEFAULT_THRESHOLD,
) -> list[Comparison]:
    """Each (benchmark, model) group with its fleet median and every device's shortfall from it; a
    device more than ``threshold`` below the median is slow. One device alone has nothing to compare
    with and is never slow."""
    out = []
    for (bench_id, kind, model, unit, quick), group in sorted(groups.items()):
        values = [r.value for r, _, _ in group.values()]
        median = statistics.median(values)
        figures = []
        ordered = sorted(
            group.values(), key=lambda e: (e[1], e[0].index if e[0].index is not None else -1, e[0].device)
        )
        for r, hostname, source in ordered:
            shortfall = 1.0 - r.value / median if median > 0 else 0.0
            slow = len(values) > 1 and shortfall > threshold
            figures.append(
                Figure(
                    hostname,
                    kind,
                    r.device,
                    r.index,
                    r.uuid,
                    r.pci_bus_id,
                    bench_id,
                    model,
                    unit,
                    r.value,
                    median,
                    round(shortfall, 4),
                    slow,
                    source,
                    quick,
                )
            )
        out.append(Comparison(bench_id, kind, model, unit, median, tuple(figures), quick))
    return out


# --- duplicates --------------------------------------------------------------------------------------


def report_uuids(report: NodeReport) -> frozenset[str]:
    """The GPU UUIDs a report saw on its host (the envelope's GPUs and the bench's or burn's devices).
    The same UUID on two hosts is a copied report or a card that moved; two reports of one kind from one
    host are two machines answering to one name (an image with its hostname baked in), or a copy."""
    doc = report.document
    found = {_str(g.get("uuid")) for g in _dicts(doc.get("gpus"))}
    found |= {_str(d.get("uuid")) for d in _dicts(doc.get("devices"))}
    return frozenset(u for u in found if u is not None)
