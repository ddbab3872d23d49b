"""Probe the GPU fabric of a multi-GPU node through NVML: NVLink links, the PCIe topology between every pair
of GPUs, peer-to-peer support, the NVSwitch fabric's state and the PCIe replay counters.

A probe of its own, apart from ``nvml``, for two reasons: the Docker healthcheck (``doctor --quick``) reads
the ``nvml`` probe and must not pay for this one, and this one waits. Error counters only say something when
watched: a count that is there but steady happened some time since the driver loaded, a count that rises
while envcheck watches is happening now. So the counters are read twice, :data:`DEFAULT_INTERVAL_S` apart
(``ENVCHECK_FABRIC_INTERVAL_S`` changes it), and only on GPUs where there is something to watch (a GPU with
NVLinks up, or a PCIe replay count that is not zero): a laptop pays nothing.

Everything is bounded: at most :data:`NVLINK_MAX_LINKS` links per GPU, N² pair reads (64 for 8 GPUs), one
wait; the probe itself runs under the runner's timeout and deadline. Every call goes through the one NVML
funnel, as a reader over the process's NVML session (:mod:`envcheck.probes.nvml.session`, which also opens the
GPUs and says which are lost or refused): a function this driver or this pynvml lacks is a reading that is not
available. Nothing here changes GPU state or needs root; NVML's constants are the C values from ``nvml.h``
(:mod:`envcheck.probes.nvml.constants`).
"""

from __future__ import annotations

import ctypes
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from envcheck.core.model import NA, Fix, available
from envcheck.probes.nvml.constants import (
    FABRIC_STATES,
    HEALTH_DEGRADED_BW_SHIFT,
    HEALTH_DEGRADED_BW_TRUE,
    HEALTH_DEGRADED_BW_WIDTH,
    NVLINK_COUNTERS,
    NVLINK_MAX_LINKS,
    NVLINK_REMOTE_TYPES,
    NVLINK_VERSIONS,
    P2P_CAPS_NVLINK,
    P2P_CAPS_READ,
    P2P_STATUSES,
    TOPOLOGY_LEVELS,
)
from envcheck.probes.nvml.session import (
    NOT_IN_BINDINGS,
    OLDER_DRIVER,
    GpuLost,
    NoCount,
    NvmlSession,
    Reader,
    as_text,
    shared,
)
from envcheck.probes.registry import probe

#: Seconds between the two readings of the error counters: long enough for a link that is failing now to
#: count a replay, short enough not to slow the doctor. ``ENVCHECK_FABRIC_INTERVAL_S`` overrides it.
DEFAULT_INTERVAL_S = 0.5
INTERVAL_ENV = "ENVCHECK_FABRIC_INTERVAL_S"
#: No wait longer than this, whatever the environment says: the probe must end well inside its timeout.
MAX_INTERVAL_S = 5.0

#: :data:`TOPOLOGY_LEVELS` (nvml.h ``nvmlGpuTopologyLevel_t``) -> the label ``nvidia-smi topo -m`` prints for that
#: path. INTERNAL is two GPUs on one board (a K80); nvidia-smi has no label of its own for it and it is closer
#: than PIX.
TOPOLOGY_LABELS = {
    "internal": "PIX",
    "single": "PIX",
    "multiple": "PXB",
    "hostbridge": "PHB",
    "node": "NODE",
    "system": "SYS",
}

#: The labels of ``nvidia-smi topo -p2p r``'s legend; "DIS" (disabled by a driver registry key) is envcheck's.
P2P_LABELS = {
    "ok": "OK",
    "chipset_not_supported": "CNS",
    "gpu_not_supported": "GNS",
    "ioh_topology_not_supported": "TNS",
    "disabled_by_regkey": "DIS",
    "not_supported": "NS",
    "unknown": "U",
}


@dataclass
class Counter:
    """An error counter read once, or twice ``interval_s`` apart (``later`` is None when read once)."""

    first: int | NA
    later: int | NA | None = None

    @property
    def rising(self) -> bool:
        """It counted while envcheck watched: the fault is happening now."""
        return available(self.first) and available(self.later) and self.later > self.first  # type: ignore[operator]

    @property
    def value(self) -> int | NA:
        """The latest count."""
        return self.later if self.later is not None and available(self.later) else self.first


@dataclass
class NvLink:
    link: int
    active: bool
    #: ``nvmlNvlinkVersion_t``'s name, "4.0" on an H100; read on active links only.
    version: str | NA = NA()
    remote_type: str | NA = NA()
    remote_bus_id: str | NA = NA()
    #: Counter name (:data:`NVLINK_COUNTERS`) -> its readings; active links only.
    counters: dict[str, Counter] = field(default_factory=dict)


@dataclass
class FabricManagerState:
    """What the GPU says of its NVSwitch fabric (``nvmlDeviceGetGpuFabricInfoV``): ``state`` is
    ``not_supported`` on a GPU without one (it needs no fabric manager)."""

    state: str | NA = NA()
    #: NVML return code of the GPU's registration with the fabric manager (0: it succeeded), and the driver's
    #: words for it when it failed.
    status: int | NA = NA()
    status_text: str | NA | None = None
    clique_id: int | NA = NA()
    degraded_bandwidth: bool | NA = NA()


@dataclass
class GpuFabric:
    index: int
    name: str | NA = NA()
    pci_bus_id: str | NA = NA()
    #: The GPU's links in order; NA when it has none (a GPU without NVLink answers NotSupported).
    nvlinks: list[NvLink] | NA = NA()
    pcie_replay: Counter = field(default_factory=lambda: Counter(NA()))
    fabric: FabricManagerState = field(default_factory=FabricManagerState)
    #: The GPU did not answer (lost, or not open to this user): ``gpu.inventory`` says which; left out here.
    unreadable: str | None = None
    #: Seconds between the starts of its two counter readings, as they happened (the wait, and the reads of
    #: the GPUs in between): what a rate is divided by. None when read once.
    watched_s: float | None = None

    @property
    def answers(self) -> bool:
        return self.unreadable is None

    @property
    def active_links(self) -> list[NvLink]:
        return [link for link in self.nvlinks if link.active] if available(self.nvlinks) else []


@dataclass
class GpuPair:
    """Two GPUs, ``a`` to ``b`` (NVML indices). Topology is the same both ways; P2P is read both ways."""

    a: int
    b: int
    #: :data:`TOPOLOGY_LEVELS` name of the PCIe path between them.
    topology: str | NA = NA()
    #: :data:`P2P_STATUSES` name, for P2P reads from ``a`` to ``b`` (over whatever path) and over NVLink.
    p2p_read: str | NA = NA()
    p2p_nvlink: str | NA = NA()
    #: Active NVLinks joining them, directly or through NVSwitches (what ``nvidia-smi topo -m`` calls NV#).
    nvlinks: int = 0

    @property
    def label(self) -> str:
        """The ``nvidia-smi topo -m`` label: NV# where NVLinks join them, else the PCIe path."""
        if self.nvlinks:
            return f"NV{self.nvlinks}"
        return TOPOLOGY_LABELS.get(self.topology, "?") if available(self.topology) else "N/A"


@dataclass
class FabricInfo:
    """The fabric as NVML sees it. ``status`` is the ``nvml`` probe's vocabulary (``ok`` or how NVML failed
    to start; ``driver.nvml`` judges that)."""

    status: str
    error: str | None = None
    gpus: list[GpuFabric] = field(default_factory=list)
    #: Every ordered pair of GPUs that answer, a != b.
    pairs: list[GpuPair] = field(default_factory=list)
    #: Seconds between the two counter readings; None when nothing needed a second reading.
    interval_s: float | None = None
    missing_functions: list[str] = field(default_factory=list)

    @property
    def available(self) -> bool:
        return self.status == "ok"

    def pair(self, a: int, b: int) -> GpuPair | None:
        return next((p for p in self.pairs if p.a == a and p.b == b), None)

    def topology_matrix(self, indices: list[int]) -> list[list[str]]:
        """Rows and columns in ``indices`` order, labelled as ``nvidia-smi topo -m`` does (X on the diagonal)."""
        return self._matrix(indices, lambda p: p.label)

    def p2p_matrix(self, indices: list[int], which: str = "p2p_read") -> list[list[str]]:
        """P2P from row to column (``which``: ``p2p_read`` or ``p2p_nvlink``), labelled as ``nvidia-smi topo
        -p2p r`` does: X, OK, CNS, GNS, TNS, NS, U (and DIS, see :data:`P2P_LABELS`)."""

        def cell(p: GpuPair) -> str:
            status = getattr(p, which)
            return P2P_LABELS.get(status, status) if available(status) else "N/A"

        return self._matrix(indices, cell)

    def _matrix(self, indices: list[int], show: Callable[[GpuPair], str]) -> list[list[str]]:
        def cell(a: int, b: int) -> str:
            pair = self.pair(a, b)
            return "X" if a == b else show(pair) if pair is not None else "N/A"

        return [[cell(a, b) for b in indices] for a in indices]


def interval(env: Mapping[str, str] | None, interval_s: float | None = None) -> float:
    """Seconds between the two readings: the argument, else ``ENVCHECK_FABRIC_INTERVAL_S``, else the default;
    never negative, never past :data:`MAX_INTERVAL_S`."""
    if interval_s is None:
        try:
            interval_s = float((env or {}).get(INTERVAL_ENV, DEFAULT_INTERVAL_S))
        except ValueError:
            interval_s = DEFAULT_INTERVAL_S
    if not math.isfinite(interval_s):
        interval_s = DEFAULT_INTERVAL_S
    return min(max(interval_s, 0.0), MAX_INTERVAL_S)


@probe(
    "fabric",
    timeout_s=15.0,
    what="NVML's NVLink, topology and fabric readings",
    hang_fix=Fix(
        "The NVIDIA driver is not answering NVLink or topology queries. Check whether `nvidia-smi topo -m` and "
        "`nvidia-smi nvlink -s` hang too, and what `dmesg` says (Xid); a wedged driver needs the node drained "
        "and rebooted.",
        "sudo dmesg -T | grep -iE 'nvrm|xid|nvlink' | tail",
    ),
)
def probe_fabric(
    env: Mapping[str, str] | None = None,
    *,
    interval_s: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> FabricInfo:
    session = shared()
    info = FabricInfo(status=session.status, error=session.error)
    if session.available:
        _read_fabric(session, info, interval(env, interval_s), sleep)
    return info


def _read_fabric(session: NvmlSession, info: FabricInfo, wait_s: float, sleep: Callable[[float], None]) -> None:
    read = session.reader(missing=info.missing_functions)
    try:
        opened = session.gpus(read)
    except NoCount as exc:
        info.status, info.error = "error", str(exc)
        return
    handles: dict[int, Any] = {}
    first_read_at: dict[int, float] = {}  # when each GPU's first counter reading began
    for nvml_gpu in opened:
        gpu = GpuFabric(index=nvml_gpu.index)
        info.gpus.append(gpu)
        if nvml_gpu.refused is not None:
            gpu.unreadable = "the driver refused to open it (no permission)"
        elif nvml_gpu.lost is not None:
            gpu.unreadable = f"lost: {nvml_gpu.lost}"
        elif nvml_gpu.handle is None:
            gpu.unreadable = "the pynvml module failed to open it"
        else:
            try:
                first_read_at[gpu.index] = _read_gpu(session.pynvml, read, nvml_gpu.handle, gpu)
                handles[gpu.index] = nvml_gpu.handle
            except GpuLost as exc:
                gpu.unreadable = f"lost: {exc}"
    _read_pairs(read, info, handles)
    watched = [g for g in info.gpus if g.index in handles and _worth_watching(g)]
    if watched:
        sleep(wait_s)
        info.interval_s = wait_s
        for gpu in watched:
            try:
                _read_counters(read, handles[gpu.index], gpu, later=True)
                gpu.watched_s = time.monotonic() - first_read_at[gpu.index]
            except GpuLost as exc:
                gpu.unreadable = f"lost: {exc}"


def _read_gpu(pynvml: Any, read: Reader, handle: Any, gpu: GpuFabric) -> float:
    """Read what the GPU says of its fabric; return when its first counter reading began (monotonic)."""
    q = read.on(handle)
    gpu.name = as_text(q("nvmlDeviceGetName"))
    pci = q("nvmlDeviceGetPciInfo")
    gpu.pci_bus_id = as_text(pci.busId) if available(pci) else pci
    gpu.nvlinks = _read_links(q)
    gpu.fabric = _read_fabric_state(pynvml, read, q)
    began = time.monotonic()
    _read_counters(read, handle, gpu, later=False)
    return began


def _read_links(q: Callable[..., Any]) -> list[NvLink] | NA:
    """Every link the GPU has, in order: asked for until the driver says there is no such link
    (InvalidArgument) or no NVLink at all (NotSupported), never past :data:`NVLINK_MAX_LINKS`."""
    links: list[NvLink] = []
    for number in range(NVLINK_MAX_LINKS):
        active = q("nvmlDeviceGetNvLinkState", number)
        if not available(active):
            return links or active
        link = NvLink(link=number, active=bool(active))
        links.append(link)
        if not link.active:
            continue  # an inactive link has no version, peer or counters worth reading
        version = q("nvmlDeviceGetNvLinkVersion", number)
        link.version = NVLINK_VERSIONS.get(version, str(version)) if available(version) else version
        kind = q("nvmlDeviceGetNvLinkRemoteDeviceType", number)
        link.remote_type = NVLINK_REMOTE_TYPES.get(kind, str(kind)) if available(kind) else kind
        remote = q("nvmlDeviceGetNvLinkRemotePciInfo", number)
        link.remote_bus_id = as_text(remote.busId) if available(remote) else remote
    return links


def _read_counters(read: Reader, handle: Any, gpu: GpuFabric, *, later: bool) -> None:
    """The NVLink error counters of every active link and the PCIe replay counter: the first reading, or
    (``later``) the second, into the same :class:`Counter` objects."""

    def note(counter: Counter | None, value: Any) -> Counter:
        if counter is None or not later:
            return Counter(value)
        counter.later = value
        return counter

    for link in gpu.active_links:
        for name, selector in NVLINK_COUNTERS.items():
            value = read("nvmlDeviceGetNvLinkErrorCounter", handle, link.link, selector)
            link.counters[name] = note(link.counters.get(name), value)
    gpu.pcie_replay = note(gpu.pcie_replay, read("nvmlDeviceGetPcieReplayCounter", handle))


def _worth_watching(gpu: GpuFabric) -> bool:
    """A second reading is only worth its wait where a counter could rise: NVLinks up, or PCIe replays seen."""
    replays = gpu.pcie_replay.first
    return bool(gpu.active_links) or (available(replays) and replays > 0)  # type: ignore[operator]


def _read_fabric_state(pynvml: Any, read: Reader, q: Callable[..., Any]) -> FabricManagerState:
    """The NVSwitch fabric's state for this GPU: the versioned call (r535+) with its health mask, else the first
    one (r525). Both take a struct by pointer; a pynvml without the struct cannot ask."""
    result = FabricManagerState()
    struct = getattr(pynvml, "c_nvmlGpuFabricInfo_v2_t", None)
    answer: Any = NA(NOT_IN_BINDINGS)
    if struct is not None:
        fabric = struct()
        answer = q("nvmlDeviceGetGpuFabricInfoV", ctypes.byref(fabric))
    if not available(answer) and answer.reason in (OLDER_DRIVER, NOT_IN_BINDINGS):
        struct = getattr(pynvml, "c_nvmlGpuFabricInfo_t", None)
        if struct is not None:
            fabric = struct()
            answer = q("nvmlDeviceGetGpuFabricInfo", ctypes.byref(fabric))
    if not available(answer):
        result.state = answer
        return result
    result.state = FABRIC_STATES.get(fabric.state, str(fabric.state))
    result.status = int(fabric.status)
    if result.status != 0:
        result.status_text = as_text(read("nvmlErrorString", result.status))
    result.clique_id = int(fabric.cliqueId)
    mask = getattr(fabric, "healthMask", None)
    if mask is not None:
        degraded = (mask >> HEALTH_DEGRADED_BW_SHIFT) & HEALTH_DEGRADED_BW_WIDTH
        result.degraded_bandwidth = degraded == HEALTH_DEGRADED_BW_TRUE
    return result


def _read_pairs(read: Reader, info: FabricInfo, handles: dict[int, Any]) -> None:
    """Topology once per unordered pair (it is symmetric), P2P both ways; N² calls, no more."""
    by_index = {g.index: g for g in info.gpus}
    for a, ha in handles.items():
        for b, hb in handles.items():
            if a == b:
                continue
            pair = GpuPair(a, b, nvlinks=_links_between(by_index[a], by_index[b]))
            info.pairs.append(pair)
            try:
                _read_pair(read, info, pair, ha, hb)
            except GpuLost:
                # One of the two fell off the bus meanwhile (which, NVML does not say): the pair's readings
                # stay N/A, and the lost GPU is gpu.inventory's finding.
                continue


def _read_pair(read: Reader, info: FabricInfo, pair: GpuPair, ha: Any, hb: Any) -> None:
    mirror = info.pair(pair.b, pair.a)
    if mirror is not None:
        pair.topology = mirror.topology
    else:
        level = read("nvmlDeviceGetTopologyCommonAncestor", ha, hb)
        pair.topology = TOPOLOGY_LEVELS.get(level, str(level)) if available(level) else level
    for attr, caps in (("p2p_read", P2P_CAPS_READ), ("p2p_nvlink", P2P_CAPS_NVLINK)):
        status = read("nvmlDeviceGetP2PStatus", ha, hb, caps)
        setattr(pair, attr, P2P_STATUSES.get(status, str(status)) if available(status) else status)


def _links_between(a: GpuFabric, b: GpuFabric) -> int:
    """Active NVLinks joining two GPUs: links of ``a`` whose far end is ``b``; or, where both reach NVSwitches,
    the fewer of their links to the switches (every GPU on the switches reaches every other through them)."""
    target = bus_key(b.pci_bus_id)
    direct = sum(1 for link in a.active_links if target is not None and bus_key(link.remote_bus_id) == target)
    if direct:
        return direct
    a_switch = sum(1 for link in a.active_links if link.remote_type == "switch")
    b_switch = sum(1 for link in b.active_links if link.remote_type == "switch")
    return min(a_switch, b_switch)


_BUS_ID = re.compile(r"^(?:([0-9a-fA-F]+):)?([0-9a-fA-F]+):([0-9a-fA-F]+)\.([0-9a-fA-F]+)$")


def bus_key(bus_id: Any) -> tuple[int, int, int, int] | None:
    """A PCI bus id as numbers, so that "00000000:18:00.0" and "0000:18:00.0" are the same device."""
    if not isinstance(bus_id, str):
        return None
    match = _BUS_ID.match(bus_id.strip())
    if match is None:
        return None
    domain, bus, device, function = match.groups()
    return int(domain or "0", 16), int(bus, 16), int(device, 16), int(function, 16)
