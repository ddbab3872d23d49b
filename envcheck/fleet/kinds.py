"""How the fleet reads each kind of report: one adapter per kind, registered by its schema name, so that
the merge never asks which kind a report is.

Every report starts with the envelope (:mod:`envcheck.core.report`): its schema, the host and its Python,
the GPUs it saw, and its verdict (``status``, ``exit_code``, ``summary``, ``interrupted``). The base
:class:`Adapter` reads only that, and is what a report of a kind without an adapter of its own is read
with (a newer command's, say ``envcheck.storage/1``): its node, its verdict, its Python and its GPU UUIDs
still count in the merge instead of the report being skipped. A kind's adapter adds what only its report
holds: the doctor's checks, driver, GPUs and the lab spec's packages; the bench's preflight, failed cases
and headline figures; burn's verdicts and sustained throughput; comm's problems, each with its rank's host.

Adding a kind to the fleet is one subclass here, registered with :func:`register`. The schema names come
from :mod:`envcheck.core.report`: the fleet never imports another command's package (only the lab spec,
shared by every command, for the bench's headline figure).

Every reader here takes the document as it was found, hand-edited or foreign, and never raises on a
value of an unexpected type: it reads what it can.
"""

from __future__ import annotations

import functools
import json
import math
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, ClassVar, NamedTuple, TypedDict

import msgspec

from envcheck.core.model import Status, worst
from envcheck.core.registry import Registry
from envcheck.core.report import BENCH_SCHEMA, BURN_SCHEMA, COMM_SCHEMA, DOCTOR_SCHEMA, kind_of


class Problem(NamedTuple):
    """One failing (or warning) item of a node, as its report stated it. A named tuple, as
    :class:`Reading`: each batch's are pickled to the merge, and a tuple pickles at a fraction of a
    dataclass's size and cost."""

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


class ReportRef(NamedTuple):
    """Which reports a node's verdict rests on (a named tuple, as :class:`Problem`)."""

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


class Group(NamedTuple):
    """What makes figures comparable: the same benchmark on the same model, in the same unit, from runs
    of the same kind (a ``--quick`` bench runs smaller cases, whose figures are lower)."""

    id: str
    device_kind: str
    model: str
    unit: str
    quick: bool


class Reading(NamedTuple):
    """One device's headline figure for one benchmark, as one report states it. A named tuple, not a
    dataclass: a fleet of 10 000 8-GPU nodes holds half a million of them, each made in a worker and sent
    to the merge, and a tuple is several times cheaper to make and to pickle than a frozen dataclass."""

    group: Group
    device_key: str  # the device's UUID, else its bench name ("cpu"): one figure per device and host
    device_kind: str
    device: str
    index: int | None
    uuid: str | None
    pci_bus_id: str | None
    value: float
    #: Taken while other work held the CPUs (the bench's mark): listed, never compared.
    contended: bool = False
    #: Its samples spread too widely to judge by (the bench's ``noisy`` mark): listed, never compared.
    noisy: bool = False

    @property
    def set_apart(self) -> str | None:
        """Why this figure is not compared ("contended", "noisy"), or None: it is."""
        return "contended" if self.contended else "noisy" if self.noisy else None


_new = tuple.__new__
_NONE: frozenset[str] = frozenset()

#: A device as a report's figures name it: (device_key, device_kind, device, index, uuid, pci_bus_id), the
#: fields of :class:`Reading` that say which device it is.
DeviceNames = tuple[str, str, str, "int | None", "str | None", "str | None"]


class Figures(NamedTuple):
    """A report's figures packed for the merge: each device once, then each group's figures as two aligned
    tuples (the devices' places in ``devices``, their values), and the few figures set apart as readings.

    A bench report of an 8-GPU node states 48 figures on 8 devices in 6 groups: one :class:`Reading` each
    cost the merge a tuple, a device lookup and a group lookup per figure, half a million of each in the
    workers for 10 000 nodes and most of a bench report's digest and merge. Packed, the merge looks up each
    device and each group once per report (benchmarks/RESULTS-fleet.md: a third fewer instructions past the
    parse, with the changes beside it).
    :func:`pack` makes this from readings; the bench's adapter makes it straight from its results, the
    same (tests/fleet/test_read.py)."""

    devices: tuple[DeviceNames, ...] = ()
    groups: tuple[tuple[Group, tuple[int, ...], tuple[float, ...]], ...] = ()
    #: contended or noisy: listed, never compared
    set_apart: tuple[Reading, ...] = ()


def pack(readings: Iterable[Reading]) -> Figures:
    """``readings`` as :class:`Figures`: devices and groups in the order they first appear, each group's
    figures in the readings' order."""
    places: dict[DeviceNames, int] = {}
    groups: dict[Group, tuple[list[int], list[float]]] = {}
    apart: list[Reading] = []
    for r in readings:
        if r.contended or r.noisy:
            apart.append(r)
            continue
        names = r[1:7]
        at = places.setdefault(names, len(places))  # type: ignore[arg-type]
        found = groups.get(r.group)
        if found is None:
            found = groups[r.group] = ([], [])
        found[0].append(at)
        found[1].append(r.value)
    return Figures(
        tuple(places),  # type: ignore[arg-type]
        tuple((g, tuple(at), tuple(values)) for g, (at, values) in groups.items()),
        tuple(apart),
    )


def unpack(figures: Figures) -> list[Reading]:
    """The readings ``figures`` packs: each group's figures in order, then the set-apart ones."""
    out = [
        _new(Reading, (group, *figures.devices[at], value, False, False))
        for group, places, values in figures.groups
        for at, value in zip(places, values, strict=True)
    ]
    return out + list(figures.set_apart)


NO_FIGURES = Figures()


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
    figures: Figures
    uuids: frozenset[str]
    #: Its adapter's :attr:`Adapter.rank`: which report's value of a field wins on its node.
    rank: int
    #: Benchmarks whose figures the report marks host-bound (host copies, a small CNN step: they vary
    #: with the CPU socket a worker ran on), and those it marks not host-bound; a benchmark some report
    #: marks host-bound and none marks otherwise is charted across the fleet, never judged slow.
    host_bound: frozenset[str] = frozenset()
    device_bound: frozenset[str] = frozenset()


# --- small readers that never raise on a document shaped unexpectedly --------------------------------


#: The longest host name a report may give: a DNS name is at most 253 characters (Linux's own host name at
#: most 64). A hand-made report naming a host in a megabyte would be that node's name in every line of the
#: fleet's report.
MAX_HOSTNAME = 253


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in _list(value) if isinstance(v, dict)]


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


#: Each verdict by its word: a dict lookup, where ``Status(word)`` costs microseconds, is asked for every
#: check of every report (a hundred per doctor report, two million for 10 000 nodes).
_STATUSES = {s.value: s for s in Status}


def _status(value: Any) -> Status | None:
    return _STATUSES.get(value) if isinstance(value, str) else None


#: The verdicts a check is listed for (a warning or worse), and those that fail a node, by word: most of
#: a report's hundred checks are ok, and are passed over with one lookup.
_JUDGED = {s.value: s for s in Status if s.severity > 0}
_PROBLEMS = {s.value: s for s in Status if s.is_problem}


def json_words(value: Any, limit: int = 60) -> str:
    """A value from a document as its JSON says it (``"banana"``, ``[1, 2]``), cut to ``limit`` characters."""
    try:
        text = json.dumps(value, default=str)  # ASCII: a control character is escaped, never obeyed
    except (TypeError, ValueError, RecursionError):
        text = type(value).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _number(value: Any) -> float | None:
    """A finite float, or None: an integer too wide for a float (a 400-digit one) is not a figure either."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


#: The largest figure taken as measured. Figures are throughputs in the bench's units (GFLOP/s, GB/s,
#: images/s, tokens/s): a thousand times what any device does today is 1e7 to 1e8 of them. A hand-edited
#: 1e308 among real figures made the fleet's median astronomical, every real device "100 % slow", and the
#: charts' scales infinite; past this, a figure is not one, as one of 0 or below is not.
MAX_FIGURE = 1e12


def figure_value(value: Any) -> float | None:
    """A measured throughput: a positive number within :data:`MAX_FIGURE` (a figure of 0 or below measured
    nothing; one past it is not a measurement)."""
    number = _number(value)
    return number if number is not None and 0 < number <= MAX_FIGURE else None


def _plain(value: Any) -> bool:
    """Whether a field's value can be compared across the fleet and written back as it is: a string,
    boolean, integer, finite float or null. A nested value (1 000 levels deep, a million items) or NaN
    is not a version of anything: the field is not stated rather than carried into the merge."""
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, (str, int))


class Adapter:
    """The envelope reader, and the base of every kind's adapter: a subclass overrides what its kind adds
    (:meth:`items`, :meth:`fields`, :meth:`readings`, :meth:`uuids`), calling up for the envelope's part."""

    #: The schema this adapter reads (``envcheck.doctor/1``); the envelope reader reads any.
    id: ClassVar[str] = ""
    #: Where a node's reports disagree on a field, the lower rank's value is taken: the doctor sees the
    #: most; a kind the fleet has no adapter for, the least.
    rank: ClassVar[int] = 9

    def digest(self, source: str, kind: str, hostname: str, doc: dict[str, Any]) -> Digest:
        return self.made(source, kind, hostname, doc, self.items(source, kind, doc), self.figures(doc), self.bound(doc))

    def made(
        self,
        source: str,
        kind: str,
        hostname: str,
        doc: dict[str, Any],
        found: list[tuple[str | None, Problem]],
        figures: Figures,
        bound: tuple[frozenset[str], frozenset[str]],
    ) -> Digest:
        """The digest of a report whose items, figures and marks are read (:meth:`digest` reads each in
        turn; an adapter that reads them in one pass over the document passes them here)."""
        ref, problems = self.judge(source, kind, doc, found)
        return Digest(
            source,
            kind,
            hostname,
            ref,
            tuple(problems),
            # a field's value is the same on most nodes (a driver version): one string for a worker's batch
            tuple((name, _intern(value)) for name, value in self.fields(doc).items() if _plain(value)),
            figures,
            frozenset(u for u in self.uuids(doc) if u is not None),
            self.rank,
            *bound,
        )

    def judge(
        self, source: str, kind: str, doc: dict[str, Any], found: list[tuple[str | None, Problem]] | None = None
    ) -> tuple[ReportRef, list[tuple[str | None, Problem]]]:
        """The report's own status and its problems (``found``: its items, read by :meth:`items` unless
        given), each with the host it concerns (None: the report's). A report that failed without naming
        an item that failed (a kind the fleet cannot read further, an interrupted run, a nonzero exit
        with a lenient status) becomes one problem in its own words."""
        if found is None:
            found = self.items(source, kind, doc)
        exit_code = doc.get("exit_code") if type(doc.get("exit_code")) is int else None  # (a bool is no code)
        status = _status(doc.get("status"))
        if status is None:
            # a verdict this envcheck does not know ("banana", "FAIL", null, none at all): the report's
            # items are read, but "ok" would be a verdict it never gave
            stated = doc.get("status")
            words = (
                f"the {kind} report states no status"
                if stated is None
                else f"the {kind} report's status is {json_words(stated)}, which this envcheck does not know"
            )
            found.append((None, Problem(source, kind, kind, Status.WARN, words + ": its verdict is not read")))
            status = Status.OK
        if exit_code:
            # A nonzero exit with a lenient status: --strict warnings, an interrupted run, a write error.
            status = worst([status, Status.FAIL])
        if status.is_problem and not any(p.status.is_problem for _, p in found):
            words = f"the {kind} report's status is {status.value}"
            if exit_code is not None:
                words += f" (exit code {exit_code})"
            if doc.get("interrupted") is True:
                words += ": the run was interrupted before it finished"
            elif text := _str(_dict(doc.get("summary")).get("text")):
                words += f": {text}"
            found.append((None, Problem(source, kind, kind, Status.FAIL, words)))
        # what the fleet finds in a report (a figure that is no measurement) is not the report's verdict
        status = worst([status] + [p.status for _, p in found if p.report != "fleet"])
        return ReportRef(source, _intern(kind), status, exit_code, _str(doc.get("generated_at"))), found

    def items(self, source: str, kind: str, doc: dict[str, Any]) -> list[tuple[str | None, Problem]]:
        """The items the report judged that warned or failed; the envelope names none."""
        return []

    def fields(self, doc: dict[str, Any]) -> dict[str, Any]:
        """The node's values of the fields that should be uniform across a fleet (merge.FIELDS): the
        envelope's Python, and torch where a report carries its build (the doctor, bench and burn do)."""
        out: dict[str, Any] = {}
        python = _str(_dict(doc.get("host")).get("python"))
        if python:
            out["python"] = python
        torch = doc.get("torch")
        if isinstance(torch, dict):
            out.update(_torch_fields(torch))
        return out

    def readings(self, doc: dict[str, Any]) -> list[Reading]:
        """The report's figures per device, compared across the fleet; the envelope states none."""
        return []

    def figures(self, doc: dict[str, Any]) -> Figures:
        """:meth:`readings` packed for the merge."""
        readings = self.readings(doc)
        return pack(readings) if readings else NO_FIGURES

    def uuids(self, doc: dict[str, Any]) -> set[str | None]:
        """The GPU UUIDs the report saw on its host (the envelope's GPUs). The same UUID on two hosts is a
        copied report or a card that moved."""
        return {_str(g.get("uuid")) for g in _dicts(doc.get("gpus"))}

    def bound(self, doc: dict[str, Any]) -> tuple[frozenset[str], frozenset[str]]:
        """The benchmarks the report marks host-bound, and those it marks not (:attr:`Digest.host_bound`)."""
        return _NONE, _NONE


#: Every kind's adapter, by the schema it reads.
ADAPTERS: Registry[Adapter] = Registry("fleet adapter")
#: What a report of a kind without an adapter is read with.
ENVELOPE = Adapter()


def register(cls: type[Adapter]) -> type[Adapter]:
    ADAPTERS.add(cls())
    return cls


def adapter_for(schema: object) -> Adapter:
    adapter = ADAPTERS.get(schema) if isinstance(schema, str) else None
    return adapter if isinstance(adapter, Adapter) else ENVELOPE


def schema_by_kind() -> dict[str, str]:
    """kind → the schema (and so the version) this envcheck reads it at, for every kind with an adapter."""
    return {kind_of(schema) or schema: schema for schema in ADAPTERS}


def _checks(source: str, kind: str, value: Any) -> list[tuple[str | None, Problem]]:
    """Check results (the doctor's checks, the bench's preflight, burn's verdicts) that warned or failed."""
    out: list[tuple[str | None, Problem]] = []
    judged = _JUDGED
    # exact types tested inline, not through _dicts and isinstance, in a comprehension: a hundred checks a
    # report, two million for 10 000 nodes, most of them ok and passed over here
    listed = [
        c
        for c in (value if type(value) is list else ())
        if type(c) is dict and type(w := c.get("status")) is str and w in judged
    ]
    for check in listed:
        status = judged[check["status"]]
        fix = _fix(check.get("fix"))
        summary = _intern(str(check.get("summary") or check.get("title") or ""))
        out.append((None, Problem(source, kind, _intern(str(check.get("id") or "?")), status, summary, fix)))
    return out


def _intern(text: Any) -> Any:
    """One string object for each distinct text in this process (anything else as it is): ten thousand
    nodes that fail one check carry its words and fix ten thousand times. A worker's batch of them is
    pickled once over, and the merge holds one copy per batch (unpickling does not intern again)."""
    return sys.intern(text) if type(text) is str else text


def _fix(value: Any) -> dict[str, str | None] | None:
    """A check's fix as the model writes it (text and command), whatever the file held."""
    fix = _dict(value)
    text, command = _str(fix.get("text")), _str(fix.get("command"))
    if not (text or command):
        return None
    return {"text": _intern(text), "command": _intern(command)}


def _spec_verdicts(source: str, kind: str, verdicts: Any) -> list[tuple[str | None, Problem]]:
    """The lab spec's minimums a run did not reach (the doctor's are checks)."""
    out: list[tuple[str | None, Problem]] = []
    for v in _dicts(verdicts):
        if v.get("passed") is False:
            name = v.get("id") or v.get("op") or "?"
            out.append((None, Problem(source, kind, f"spec.{name}", Status.FAIL, str(v.get("summary") or ""))))
    return out


def _torch_fields(torch: dict[str, Any]) -> dict[str, Any]:
    version = _str(torch.get("version"))
    if version is None:
        return {}  # torch did not import (the doctor says why in its checks): nothing to compare
    cuda, hip = _str(torch.get("cuda")), _str(torch.get("hip"))
    flavour = f"ROCm {hip}" if hip else f"CUDA {cuda}" if cuda else "CPU-only"
    out: dict[str, Any] = {"torch.version": version, "torch.flavour": flavour}
    if cuda or hip:
        out["torch.cuda_runtime"] = torch.get("cuda_runtime_version") or cuda
        # where the report carries them: a burn report's torch names its version and CUDA only, and "not
        # known" must not read as drift (nor as a stack that differs)
        if "cudnn_version" in torch:
            out["torch.cudnn"] = torch["cudnn_version"]
        if "nccl_version" in torch:
            out["torch.nccl"] = _version(torch["nccl_version"])
    return out


def _version(value: Any) -> Any:
    """A version as the reports write some (NCCL's: ``[2, 21, 5]``) in words, ``2.21.5``, so that it is
    compared and listed as the other fields are (a list is not a field's value); anything else as it is."""
    if type(value) is list and 0 < len(value) <= 4 and all(type(part) is int and part >= 0 for part in value):
        return ".".join(map(str, value))
    return value


class _Named(NamedTuple):
    """What a device's figures name it by, read once per device of a report."""

    kind: str
    model: str
    uuid: str | None
    index: int | None
    pci: str | None


def _named(device: dict[str, Any]) -> _Named:
    kind = "gpu" if device.get("kind") in ("cuda", "gpu") else _intern(str(device.get("kind") or "cpu"))
    index = device.get("index")
    # Names that repeat on every node (a model, the bus ids of an 8-GPU board) are one string for a
    # worker's batch (see _intern); a UUID is the device's own.
    return _new(
        _Named,
        (
            kind,
            _intern(_str(device.get("model")) or "unknown model"),
            _str(device.get("uuid")),
            index if isinstance(index, int) else None,
            _intern(_str(device.get("pci_bus_id"))),
        ),
    )


def _reading(
    bench_id: str,
    named: _Named,
    name: str,
    value: float,
    unit: str,
    quick: bool,
    contended: bool = False,
    noisy: bool = False,
) -> Reading:
    """A device's figure, keyed by its UUID where it has one (else its bench name: one figure per device
    and host), with every name an admin may look for it by."""
    kind, model, uuid, index, pci = named
    # tuple.__new__ straight, not the named tuples' generated __new__ (a Python function, several times
    # slower): a fleet makes a million of these.
    group = _new(Group, (bench_id, kind, model, unit, quick))
    return _new(Reading, (group, uuid or name, kind, name, index, uuid, pci, value, contended, noisy))


def _device_uuids(doc: dict[str, Any]) -> set[str | None]:
    """The UUIDs of the devices a bench or burn ran on, beside the envelope's GPUs."""
    return {_str(d.get("uuid")) for d in _dicts(doc.get("devices"))}


@register
class Doctor(Adapter):
    id = DOCTOR_SCHEMA
    rank = 0

    def items(self, source: str, kind: str, doc: dict[str, Any]) -> list[tuple[str | None, Problem]]:
        return _checks(source, kind, doc.get("checks"))

    def fields(self, doc: dict[str, Any]) -> dict[str, Any]:
        out = super().fields(doc)
        driver = _dict(doc.get("driver"))
        out["driver.version"] = _str(driver.get("version"))
        out["driver.cuda"] = _str(driver.get("cuda_version"))
        gpus = _dicts(doc.get("gpus"))
        out["gpu.count"] = len(gpus)
        # a GPU whose name NVML could not read (null) is no model "None" of its own
        out["gpu.model"] = _models(_str(g.get("name")) or UNNAMED_GPU for g in gpus)
        out.update(_package_fields(doc))
        if "torch.version" not in out and isinstance(doc.get("packages"), dict):
            # The doctor's --quick never imports torch; its installed version is still known.
            out["torch.version"] = _str(doc["packages"].get("torch"))
        return out


#: A GPU's model where its report names none (NVML could not read it): never a pool of its own.
UNNAMED_GPU = "(unnamed GPU)"


def _models(names: Iterable[str]) -> str | None:
    """One model name, or "2× A + 6× B" for a node of mixed GPUs (itself worth seeing as drift)."""
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    if len(counts) <= 1:
        return next(iter(counts), None)
    return " + ".join(f"{n}× {name}" for name, n in sorted(counts.items()))


#: What a lab spec package check says when the version matches (envcheck.spec.checks): the version
#: is only in the words, while a mismatch carries it in ``details.found``.
_PACKAGE_OK = re.compile(r"^\S+ (\S+) matches ")


def _package_fields(doc: dict[str, Any]) -> dict[str, Any]:
    """The installed version of each package the lab spec pins (its ``spec.package.<name>`` checks)."""
    out: dict[str, Any] = {}
    checks = doc.get("checks")
    prefix = "spec.package."
    # a comprehension, as _checks: sixty checks a report, few or none of them the spec's packages
    pinned = [
        c
        for c in (checks if type(checks) is list else ())
        if type(c) is dict and type(i := c.get("id")) is str and i[:13] == prefix
    ]
    for check in pinned:
        name = check["id"].removeprefix(prefix)
        details = _dict(check.get("details"))
        if "found" in details:
            out[f"package.{name}"] = details["found"]
            continue
        match = _PACKAGE_OK.match(str(check.get("summary") or ""))
        out[f"package.{name}"] = match.group(1) if match else _dict(doc.get("packages")).get(name)
    return out


#: A leaf the adapters read: any JSON scalar; integers within 64 bits (envcheck.fleet.read says why).
Scalar = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)] | float | str | bool | None


class CheckWords(TypedDict, total=False):
    detail: Scalar


class Result(msgspec.Struct, gc=False):
    """One of a bench report's results, as the fleet reads it: a struct, not a dict. The fleet's decoder
    (envcheck.fleet.read.DECODER) builds these straight from the JSON; a document read whole (one the
    decoder refuses) has its results made into these by :func:`results_of`, so the adapter reads one shape.
    An 8-GPU report has 48 results and the fleet reads ten fields of each, half a million times for
    10 000 nodes: an attribute is read at a fraction of a dict lookup's cost, and the decoder builds a
    struct faster than a dict (benchmarks/RESULTS-fleet.md)."""

    id: Scalar = None
    case: Scalar = None
    device: Scalar = None
    unit: Scalar = None
    status: Scalar = None
    reason: Scalar = None
    value: Scalar = None
    verified: Scalar = None
    contended: Scalar = None
    noisy: Scalar = None
    host_bound: Scalar = None
    #: the failed check's words, where a result failed its check (the rest of the check is not read)
    check: CheckWords | None = None


_RESULT_FIELDS = Result.__struct_fields__


def results_of(value: Any) -> list[Result]:
    """A report's ``results`` as :class:`Result` structs, whatever the document held: the decoder's own
    structs as they are; from a document read whole, each object made into one with its values as they are
    (a struct made here checks no types: the scan reads around a list where a word is read, and a problem's
    words show it, as they did from the dict), and anything but an object left out (the adapter read past
    those before)."""
    if type(value) is not list:
        return []
    if not value or type(value[0]) is Result:
        return value  # the decoder's: it makes every item a struct, and a document read whole none
    out = []
    for r in value:
        if type(r) is Result:
            out.append(r)
        elif type(r) is dict:
            out.append(Result(**{k: r[k] for k in _RESULT_FIELDS if k in r}))
    return out


#: A bench report's results read in one pass (:func:`_scan_results`): those that failed, each headline
#: table (calm, contended, noisy: (benchmark, device name) -> (best value, unit)) and the benchmarks
#: marked host-bound and device-bound.
_Tables = dict[tuple[str, str], tuple[float, str]]


class _Scanned(NamedTuple):
    failed: list[Result]
    #: verified results whose figure is not one (0 or below, past MAX_FIGURE, not a number): said, not compared
    unmeasured: list[Result]
    calm: _Tables
    contended: _Tables
    noisy: _Tables
    host_bound: set[str]
    device_bound: set[str]


def _scan_results(results: Any) -> _Scanned:
    """One pass over a bench report's results for everything the fleet reads of them: the failed ones,
    each benchmark's best verified figure on each device (as the lab spec picks a headline:
    envcheck.spec.bench.headlines; tests/fleet/test_read.py holds the two together) in one table per mark,
    and the host-bound marks. A fleet reads 48 results per 8-GPU report, half a million for 10 000 nodes:
    exact types are tested inline, and the three readings that took a pass each take one together."""
    failed: list[dict[str, Any]] = []
    unmeasured: list[Result] = []
    # A figure taken while other work held the CPUs, or whose samples spread too widely (the bench's
    # ``noisy``), judges nothing: it is listed, never compared (a device measured both ways keeps its calm
    # figure). One table per mark.
    calm: _Tables = {}
    contended: _Tables = {}
    noisy: _Tables = {}
    host_bound: set[str] = set()
    device_bound: set[str] = set()
    problems = _PROBLEMS
    for r in results_of(results):
        bench_id = r.id
        if type(bench_id) is str:
            bound = r.host_bound
            if bound is True:
                host_bound.add(bench_id)
            elif bound is False:
                device_bound.add(bench_id)
        word = r.status
        if word != "ok":
            if type(word) is str and word in problems:
                failed.append(r)
            continue
        if r.verified is not True:
            continue
        value = r.value
        if type(value) is float:
            if not 0.0 < value <= MAX_FIGURE:  # NaN too
                unmeasured.append(r)
                continue
        elif (value := figure_value(value)) is None:
            unmeasured.append(r)
            continue
        unit, name = r.unit, r.device
        if type(bench_id) is not str or type(unit) is not str or type(name) is not str:
            continue
        table = noisy if r.noisy is True else contended if r.contended is True else calm
        key = (bench_id, name)
        best = table.get(key)
        if best is None or value > best[0]:
            table[key] = (value, unit)
    return _Scanned(failed, unmeasured, calm, contended, noisy, host_bound, device_bound)


#: The most of a failed benchmark's words searched for an error envcheck knows: the first line, as far as
#: this. An error's own line is short; some of the signatures' patterns cost the square of a line made to
#: look like many log lines at once (4 KiB took a quarter of a second), and a hand-made report may hold one.
KNOWN_FIX_CHARS = 256
#: The distinct errors of one report looked up (the rest have no fix; errors that differ in numbers alone
#: are one): a report of 48 results made to fail each in its own words costs at most this many searches.
KNOWN_FIX_PER_REPORT = 8

#: A number in a problem's words. Words that differ in numbers alone (a load average, a count of errors, the
#: sizes an out of memory tried) say one thing: the fix looked up for it here, the wording the merge groups
#: nodes by (envcheck.fleet.merge), the benchmarks the fleet's reports fold (envcheck.fleet.render). A number
#: is read whole, with its decimals, its thousands and its sign (a minus after no letter, digit, dot or
#: hyphen: not node-12's): "0.5 GiB free" and "12 GiB free", "-15 MHz" and "4 MHz", "1,500" and "15" say one
#: thing each, and were several wordings of it.
_NUMBER = re.compile(r"(?:(?<![\w.-])-)?\d+(?:[.,]\d+)*")


def numberless(words: str) -> str:
    """``words`` with each number as ``#``: what they say, whatever the numbers."""
    return _NUMBER.sub("#", words)


#: A word that holds one number (a count, a decimal, a version, ``1,234`` grouped in thousands), with what
#: stands before and after it in the word (``eth`` and ``:``, ``(`` and ``GiB``). A word holding several
#: numbers or a number read otherwise (a PCI bus id, ``0x1f0``, ``12/16``) does not match: its values are
#: listed whole, never spanned (a span inside ``0000:17:00.0`` read as another device).
_ONE_NUMBER = re.compile(r"(\D*?)([1-9]\d{0,2}(?:,\d{3})+(?:\.\d+)?(?![\d,])|\d+(?:\.\d+)*)(\D*)", re.ASCII)

#: The letters of a name a number ends (``eth`` of ``eth0``, ``node-`` of ``node-12``).
_NAME_END = re.compile(r"[A-Za-z_][A-Za-z_-]*$")

#: Whitespace between words: words are compared, listed and spanned one by one.
_SPACE = re.compile(r"(\s+)")

#: The most values of a number that differs among words said as one that :func:`spanned` lists; past this,
#: the least and the greatest.
SPAN_LISTED = 3


def spanned(texts: Sequence[str]) -> str:
    """Words that differ in numbers alone (one :func:`numberless` for all) as one text true of each: a word
    whose number differs is said as the values it takes, ``2.2.0 or 2.3.0``, or past :data:`SPAN_LISTED` of
    them as their span, ``1–7 uncorrected ECC errors``. Seven nodes said "GPU 0: 1 uncorrected ECC errors"
    for a node that had seven; a fleet report says nothing a node's own report does not.

    Each word is read whole: a number grouped in thousands (``1,234``) is one number, a minus before a
    number (not a name's hyphen, ``node-12``) its sign, and a word with several numbers or a number read
    otherwise (``0x1f0``, a PCI bus id, ``12/16``) is listed as it is, never spanned: "1,234 or 567" and
    "0000:17 or 18:00.0" said what no node had."""
    first = texts[0]
    if len(texts) == 1:
        return first
    split = [_SPACE.split(t) for t in texts]
    # one numberless text has the same words and spaces in each (whitespace is not a number); where they do
    # not line up (words not alike), the first words are said as they are
    if any(len(s) != len(split[0]) for s in split):
        return first
    out: list[str] = []
    for slot, word in enumerate(split[0]):
        values = list(dict.fromkeys(s[slot] for s in split))
        if len(values) == 1:
            out.append(word)
        elif slot % 2 or len({numberless(v) for v in values}) > 1:
            return first  # the spaces, or a word beyond its numbers, differ: not alike
        else:
            out.append(_word_said(values))
    return "".join(out)


def _word_said(words: list[str]) -> str:
    """One word's distinct values (alike but for their numbers) as one text true of each."""
    split: list[tuple[str, str, str]] = []
    for m in map(_ONE_NUMBER.fullmatch, words):
        if m is None:
            return _listed(sorted(words, key=_natural_order))
        before, number, after = m.groups()
        # a minus that stands alone before the number, or after anything but a letter, digit, dot or hyphen
        # (``=-5``, ``(-5``), is its sign: not a name's hyphen (node-12), nor the second of two (--12)
        if before.endswith("-") and (len(before) == 1 or not (before[-2].isalnum() or before[-2] in "_.-")):
            before, number = before[:-1], "-" + number
        split.append((before, number, after))
    parts = {(before, after) for before, _, after in split}
    if len(parts) != 1:
        return _listed(sorted(words, key=_natural_order))
    ((before, after),) = parts
    numbers = [number for _, number, _ in split]
    negative = any(n.startswith("-") for n in numbers)
    # listed where few, or where a span would not say them truly (3.9 and 3.10: decimals or versions? 100,200:
    # a hundred thousand or two numbers?)
    ambiguous = _ambiguous(numbers)
    # (a negative number is no version: by its value)
    numbers.sort(key=_version_order if ambiguous and not negative else _figure_order)
    # a number that ends a name (eth0, eth1) is said with its name: "eth0 or eth1", not "eth0 or 1"
    name = None if negative else _NAME_END.search(before)
    if name is not None:
        before = before[: name.start()]
        numbers = [name.group() + n for n in numbers]
    if len(numbers) <= SPAN_LISTED or ambiguous:
        return before + _listed(numbers) + after
    # "-12 to -3", not "-12–-3"
    return before + f"{numbers[0]}{' to ' if negative else '–'}{numbers[-1]}" + after


def _listed(values: list[str]) -> str:
    """Values said as a list, the first :data:`LISTED_MOST` and a count of the rest."""
    if len(values) > LISTED_MOST:
        values = [*values[: LISTED_MOST - 1], f"{len(values) - LISTED_MOST + 1} other values"]
    return f"{', '.join(values[:-1])} or {values[-1]}"


#: The most values of one number listed where a span would not say them truly (:func:`_ambiguous`).
LISTED_MOST = 6


def _ambiguous(values: list[str]) -> bool:
    """Whether a span would not say the numbers truly: numbers of one dot that could be decimals or versions
    (``3.9`` and ``3.10``: a span "3.10–3.9" by value, or one that leaves out 3.8 and 3.11 by either
    reading: their places after the dot differ), or numbers with commas (``100,200``: a hundred thousand, or
    a list of two?)."""
    return len({len(v.partition(".")[2]) for v in values if v.count(".") == 1}) > 1 or any("," in v for v in values)


def _version_order(value: str) -> tuple[Decimal, ...]:
    """A number read as a version, part by part (``3.10`` after ``3.9``). Exact, whatever its size: a float
    put a 400-digit number below 5, and a span left out the node that had it."""
    return tuple(Decimal(part) for part in value.replace(",", "").split("."))


def _figure_order(value: str) -> tuple[Decimal, ...]:
    """A number's place among its kind: a decimal by its value (``0.75`` below ``0.8``, ``-12`` below
    ``-3``), a version part by part (``2.10.0`` above ``2.9.1``); exact (:func:`_version_order`)."""
    return (Decimal(value.replace(",", "")),) if value.count(".") <= 1 else _version_order(value)


def _natural_order(word: str) -> tuple[tuple[int, int, str], ...]:
    """A word's place among words alike but for their numbers: each number by its value (``0x9`` before
    ``0x10`` where their letters agree; its digits compared, never made an int, which refuses thousands
    of digits), the rest as written."""
    return tuple(
        (0, len(part.lstrip("0")), part.lstrip("0")) if part.isascii() and part.isdigit() else (1, 0, part)
        for part in _NUMBERS.split(word)
        if part
    )


#: :data:`_NUMBER` in ASCII digits, kept where a word is split at its numbers.
_NUMBERS = re.compile(r"(\d+)", re.ASCII)


#: How :meth:`Bench._items` words a failed benchmark: ``CASE on DEVICE: WHY`` (read back by
#: envcheck.fleet.render to tell benchmarks that failed alike).
FAILED_BENCHMARK = re.compile(r"^.*? on (\S+): (.*)$", re.S)


def known_fix(words: str) -> dict[str, str | None] | None:
    """The fix for a failed benchmark's error where ``envcheck explain`` knows it (its signatures: a CUDA
    out of memory, no kernel image for this GPU, a kernel's fault, ECC errors, a GPU that fell off the
    bus...), said as the fleet says a check's fix: what was recognised and what to do, and the command to
    look with. Only the first line is read, as far as :data:`KNOWN_FIX_CHARS`."""
    return _known_fix(words.partition("\n")[0][:KNOWN_FIX_CHARS])


@functools.lru_cache(maxsize=1024)
def _known_fix(text: str) -> dict[str, str | None] | None:
    """Nodes whose GPU failed alike fail with the same words: each is searched once per worker."""
    from envcheck.doctor.signatures import SIGNATURES  # only where a benchmark failed

    for signature in SIGNATURES:
        if any(p.search(text) for p in signature.patterns):
            return {"text": f"{signature.title}: {signature.fix}", "command": signature.command}
    return None


#: What a verified figure that is not one says (0 or below, past :data:`MAX_FIGURE`, not a number): the
#: device has no figure in the fleet's comparison, which must not go unsaid.
UNMEASURED = (
    "a verified figure that is not a measurement (0 or below, past any device's, or not a number): not compared"
)
UNMEASURED_ID = "figure.invalid"

UNMEASURED_FIX = {
    "text": "Run envcheck bench on this node again: a throughput of 0 or below, past any device's or not a number is "
    "not a measurement, so this device has no figure to compare with its siblings' (a timer that did not advance, a "
    "report edited by hand)",
    "command": "envcheck bench --json",
}


def _value_words(value: Any, unit: Any) -> str:
    """A figure that is not one, as it was written: a hand-edited report's may be anything (a list nested
    a thousand deep, whose repr overflowed the stack), so as its JSON, cut to a few characters."""
    said = "none" if value is None else json_words(value, 40)
    return f"{said} {_words(unit)}" if type(unit) is str and unit else said


def _words(value: Any, limit: int = 80) -> str:
    """A name from a document (a benchmark's id, case, device) for a problem's words, whatever it holds."""
    return value[:limit] if type(value) is str else json_words(value, 40)


@register
class Bench(Adapter):
    id = BENCH_SCHEMA
    rank = 1

    def digest(self, source: str, kind: str, hostname: str, doc: dict[str, Any]) -> Digest:
        scanned = _scan_results(doc.get("results"))
        return self.made(
            source,
            kind,
            hostname,
            doc,
            self._items(source, kind, doc, scanned),
            self._figures(doc, scanned),
            self._bound(scanned),
        )

    def items(self, source: str, kind: str, doc: dict[str, Any]) -> list[tuple[str | None, Problem]]:
        return self._items(source, kind, doc, _scan_results(doc.get("results")))

    def readings(self, doc: dict[str, Any]) -> list[Reading]:
        """Each benchmark's headline on each device: its best verified case, picked as the lab spec picks
        it (envcheck.spec.bench.headlines): the calm figures, then those set apart."""
        return unpack(self.figures(doc))

    def figures(self, doc: dict[str, Any]) -> Figures:
        return self._figures(doc, _scan_results(doc.get("results")))

    def bound(self, doc: dict[str, Any]) -> tuple[frozenset[str], frozenset[str]]:
        return self._bound(_scan_results(doc.get("results")))

    def uuids(self, doc: dict[str, Any]) -> set[str | None]:
        return super().uuids(doc) | _device_uuids(doc)

    @staticmethod
    def _items(source: str, kind: str, doc: dict[str, Any], scanned: _Scanned) -> list[tuple[str | None, Problem]]:
        out = _checks(source, kind, doc.get("preflight"))
        fixes: dict[str, dict[str, str | None] | None] = {}  # each distinct error's, a few (KNOWN_FIX_PER_REPORT)
        for r in scanned.failed:
            status = _PROBLEMS[r.status]  # type: ignore[index]
            why = _str(r.reason) or _str(_dict(r.check).get("detail")) or status.value
            summary = f"{r.case or r.id} on {r.device or '?'}: {why}"  # as FAILED_BENCHMARK reads it
            # an error's numbers (the sizes of an out of memory) make no other error: counted once
            error = numberless(why)
            if error in fixes:
                fix = fixes[error]
            elif len(fixes) < KNOWN_FIX_PER_REPORT:
                fix = fixes[error] = known_fix(why)
            else:
                fix = None
            out.append((None, Problem(source, kind, str(r.id or "?"), status, summary, fix)))
        for r in scanned.unmeasured:
            # The fleet's finding, not the bench's (whose verdict on it was ok): said as the fleet's, which
            # leaves the report's own status as it is (Adapter.judge), one problem for every such figure.
            value = _value_words(r.value, r.unit)
            case = f" {_words(r.case)}" if r.case else ""
            summary = f"{_words(r.id or '?')}{case} on {_words(r.device or '?')}: {value}, {UNMEASURED}"
            out.append((None, Problem(source, "fleet", UNMEASURED_ID, Status.WARN, summary, dict(UNMEASURED_FIX))))
        return out + _spec_verdicts(source, kind, _dict(doc.get("spec")).get("verdicts"))

    @staticmethod
    def _figures(doc: dict[str, Any], scanned: _Scanned) -> Figures:
        """The headlines packed: each device's names read once (and its bench name one string for a
        worker's batch: "cuda:3" on every node), each group's figures gathered."""
        quick = _dict(doc.get("options")).get("quick") is True
        calm = scanned.calm
        by_name: dict[str, dict[str, Any]] | None = None
        named: dict[str, _Named] = {}

        def names(name: str) -> _Named:
            nonlocal by_name
            if by_name is None:
                by_name = {str(d.get("name")): d for d in _dicts(doc.get("devices"))}
            device = by_name.get(name) or {"name": name, "kind": "cpu" if name == "cpu" else "cuda"}
            found = named[name] = _named(device)
            return found

        places: dict[str, int] = {}
        devices: list[DeviceNames] = []
        # each device's (kind, model), one tuple per device, so that a figure's group is found by a key of
        # three parts, two of them strings whose hashes are kept, without making a Group per figure
        models: list[tuple[str, str]] = []
        # (benchmark, unit, (kind, model)) -> [place, value, place, value, ...]
        groups: dict[tuple[str, str, tuple[str, str]], list[Any]] = {}
        for (bench_id, name), (value, unit) in calm.items():
            at = places.get(name)
            if at is None:
                n = named.get(name) or names(name)
                at = places[name] = len(devices)
                name = _intern(name)
                devices.append((n.uuid or name, n.kind, name, n.index, n.uuid, n.pci))
                models.append((n.kind, n.model))
            key = (bench_id, unit, models[at])
            found = groups.get(key)
            if found is None:
                groups[key] = [at, value]
            else:
                found += (at, value)
        apart: list[Reading] = []
        for table, marks in ((scanned.contended, (True, False)), (scanned.noisy, (False, True))):
            for key, (value, unit) in table.items():
                if key in calm or (table is scanned.noisy and key in scanned.contended):
                    continue
                bench_id, name = key
                n = named.get(name) or names(name)
                apart.append(_reading(bench_id, n, _intern(name), value, unit, quick, *marks))
        if not devices and not apart:
            return NO_FIGURES
        return Figures(
            tuple(devices),
            tuple(
                (_new(Group, (bench_id, kind, model, unit, quick)), tuple(found[0::2]), tuple(found[1::2]))
                for (bench_id, unit, (kind, model)), found in groups.items()
            ),
            tuple(apart),
        )

    @staticmethod
    def _bound(scanned: _Scanned) -> tuple[frozenset[str], frozenset[str]]:
        return (
            frozenset(scanned.host_bound) if scanned.host_bound else _NONE,
            frozenset(scanned.device_bound) if scanned.device_bound else _NONE,
        )


@register
class Burn(Adapter):
    id = BURN_SCHEMA
    rank = 2

    def items(self, source: str, kind: str, doc: dict[str, Any]) -> list[tuple[str | None, Problem]]:
        return _checks(source, kind, doc.get("verdicts")) + _spec_verdicts(
            source, kind, _dict(doc.get("spec")).get("verdicts")
        )

    def readings(self, doc: dict[str, Any]) -> list[Reading]:
        """Each device's steady-state throughput; a CPU's taken while other work held the cores is marked
        contended (listed, never compared)."""
        unit = _str(doc.get("unit")) or "TFLOP/s"
        out = []
        for device in _dicts(doc.get("devices")):
            value = figure_value(_dict(device.get("steady")).get("throughput"))
            if value is not None:
                name = str(device.get("name") or "?")
                bench_id = f"burn.{device.get('dtype') or 'load'}"
                contended = device.get("contended") is True
                out.append(_reading(bench_id, _named(device), name, value, unit, False, contended))
        return out

    def uuids(self, doc: dict[str, Any]) -> set[str | None]:
        return super().uuids(doc) | _device_uuids(doc)


@register
class Comm(Adapter):
    id = COMM_SCHEMA
    rank = 3

    def items(self, source: str, kind: str, doc: dict[str, Any]) -> list[tuple[str | None, Problem]]:
        """Each problem with the host of its rank (a rank on another node that never joined fails that
        node), and the lab spec's verdicts (a list in comm's document)."""
        out: list[tuple[str | None, Problem]] = []
        for p in _dicts(doc.get("problems")):
            where = f"rank {p['rank']}: " if isinstance(p.get("rank"), int) else ""
            host = _str(p.get("host"))
            if host is not None and not host.strip():
                host = None  # a blank name is no node's (as a report's own, envcheck.fleet.read): rank 0's
            elif host is not None and len(host) > MAX_HOSTNAME:
                # no node is named so (envcheck.fleet.read skips a report that names its own host so): the
                # problem stays on the report's node, saying why
                where += f"(its host's name is {len(host):,} characters long, which names no host) "
                host = None
            problem = Problem(source, kind, "comm", Status.FAIL, where + str(p.get("what") or "a problem"))
            out.append((host, problem))
        return out + _spec_verdicts(source, kind, doc.get("spec"))
