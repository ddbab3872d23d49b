"""Probe the network NCCL runs over between nodes: every InfiniBand and RoCE port, what GPUDirect RDMA needs, and
where each NIC and each NVIDIA GPU sits on the PCIe tree.

Why from sysfs and not ``ibstat`` or ``ibv_devinfo``: those are not installed in most training containers, and the
kernel's files say the same without root (``/sys/class/infiniband/<hca>/ports/<n>/state``, ``rate``, the error
``counters/``). Every read goes through :mod:`envcheck.core.machine`, so ``ENVCHECK_SYSFS``, ``ENVCHECK_PROCFS``
and ``ENVCHECK_DEVFS`` point it at another node's captured state (and the tests at theirs).

The port error counters are read twice, as the fabric probe reads NVLink's (``probes/nvml/fabric.py``): a count
that is there but steady happened some time since the port came up; one that rises while envcheck watches is
happening now. The wait is the fabric probe's (``ENVCHECK_FABRIC_INTERVAL_S``), and only where there is a port
to watch: a node without HCAs pays nothing. Bounded: at most :data:`MAX_HCAS` HCAs of :data:`MAX_PORTS` ports,
envcheck.probes.pci's bound on the PCI devices scanned for GPUs.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from envcheck.core import machine
from envcheck.probes import pci
from envcheck.probes.nvml.fabric import Counter, bus_key, interval
from envcheck.probes.registry import probe

MAX_HCAS = 64
MAX_PORTS = 8

#: Port counters (``/sys/class/infiniband/<hca>/ports/<n>/counters/``, IBTA PortCounters) that count link faults:
#: one rising while watched is a link failing now.
FAULT_COUNTERS = (
    "symbol_error",
    "link_downed",
    "link_error_recovery",
    "port_rcv_errors",
    "port_rcv_remote_physical_errors",
    "local_link_integrity_errors",
    "excessive_buffer_overrun_errors",
)
#: Counters that also rise on a healthy fabric under congestion (packets dropped for lack of credit): reported.
CONGESTION_COUNTERS = ("port_xmit_discards",)
COUNTERS = FAULT_COUNTERS + CONGESTION_COUNTERS

#: Where aws-ofi-nccl's NCCL network plugin is installed by AWS's EFA installer and the Deep Learning AMIs/containers.
OFI_PLUGIN_DIRS = ("/opt/amazon/ofi-nccl/lib", "/opt/amazon/ofi-nccl/lib64", "/opt/aws-ofi-nccl/lib", "/usr/local/lib")
#: The file names NCCL tries for a network plugin (NCCL ``src/plugin/net.cc``: ``libnccl-net-<NCCL_NET_PLUGIN>.so``,
#: else ``libnccl-net.so``); aws-ofi-nccl 1.9+ also installs ``libnccl-net-ofi.so``.
PLUGIN_NAMES = ("libnccl-net.so", "libnccl-net-ofi.so")


_PCI_ADDRESS = re.compile(r"^[0-9a-fA-F]{4,}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-9a-fA-F]$")
_KERNEL = re.compile(r"^(\d+)\.(\d+)")
_DRIVER = re.compile(r"Kernel Module(?: for \S+)?\s+(\d+(?:\.\d+)+)")


@dataclass
class Port:
    number: int
    #: The kernel's words without their number: "ACTIVE", "DOWN", "INIT"; "LinkUp", "Polling", "Disabled".
    state: str | None = None
    phys_state: str | None = None
    #: "400 Gb/sec (4X NDR)" as the kernel says it, and its figure in Gb/s.
    rate: str | None = None
    rate_gbps: float | None = None
    #: "InfiniBand" or "Ethernet" (RoCE).
    link_layer: str | None = None
    counters: dict[str, Counter] = field(default_factory=dict)

    @property
    def up(self) -> bool:
        return self.state == "ACTIVE" and self.phys_state == "LinkUp"

    @property
    def kind(self) -> str:
        return "RoCE" if self.link_layer == "Ethernet" else "InfiniBand"


@dataclass
class PciPlace:
    """Where a PCI device sits: its bus id, the bridges above it (root port first) and its NUMA node."""

    bus_id: str
    #: Bus ids of the bridges from the root port down to the device's own parent.
    bridges: list[str] = field(default_factory=list)
    #: ``pci0000:00``: the host bridge (root complex) above it.
    root: str | None = None
    #: None where the kernel does not say (-1: a single-node machine, or firmware that does not tell).
    numa_node: int | None = None


@dataclass
class Hca:
    name: str
    #: The kernel driver bound to its PCI device ("mlx5_core", "efa", "bnxt_en"...).
    driver: str | None = None
    pci: PciPlace | None = None
    ports: list[Port] = field(default_factory=list)
    #: ``/sys/class/infiniband/<hca>/hca_type`` (the chip: ``MT4129`` is a ConnectX-7) and ``board_id`` (the
    #: board's PSID, ``MT_0000000838``: one per product, so one per port count and rate the card is sold at);
    #: the PCI device id where the driver writes neither (EFA).
    hca_type: str | None = None
    board_id: str | None = None
    pci_device: str | None = None

    @property
    def efa(self) -> bool:
        return self.driver == "efa" or self.name.startswith("efa")

    @property
    def model(self) -> str | None:
        """What makes two HCAs the same product: the board and the chip, else the PCI id, else the driver."""
        if self.board_id or self.hca_type:
            return f"{self.hca_type or '?'}/{self.board_id or '?'}"
        return self.pci_device or self.driver


@dataclass
class PeerMemory:
    """What lets a NIC read and write GPU memory directly (GPUDirect RDMA)."""

    #: ``nvidia_peermem`` (the driver's own module, r470+) is loaded.
    nvidia_peermem: bool = False
    #: Mellanox's older ``nv_peer_mem`` is loaded (its module, or the ``nv_mem`` memory-peer client it registers).
    nv_peer_mem: bool = False
    #: ``/sys/kernel/mm/memory_peers/*/version``: the peer-memory clients MLNX_OFED registered (``nv_mem``...).
    memory_peers: list[str] = field(default_factory=list)
    #: The running kernel's release (``/proc/sys/kernel/osrelease``): dma-buf needs 5.12 or newer.
    kernel: str | None = None
    #: From ``/proc/driver/nvidia/version``: the NVIDIA driver's version, and whether it is the open kernel
    #: module (dma-buf needs it); None where the file is not there (no driver, or a container without it).
    driver_version: str | None = None
    open_kernel_module: bool | None = None


@dataclass
class NetInfo:
    hcas: list[Hca] = field(default_factory=list)
    #: ``/dev/infiniband/uverbs*`` present here (in a container: what was passed in).
    uverbs: list[str] = field(default_factory=list)
    #: HCA name -> the uverbs device that serves it (``/sys/class/infiniband_verbs/uverbsN/ibdev``).
    uverbs_of: dict[str, str] = field(default_factory=dict)
    peer: PeerMemory = field(default_factory=PeerMemory)
    #: Where an NCCL network plugin file was found (only looked for where an EFA HCA is present), or None.
    net_plugin: str | None = None
    #: Where it was looked for, in order (for the fix when it is not found).
    plugin_searched: list[str] = field(default_factory=list)
    #: Seconds between the two counter readings; None when nothing was watched.
    interval_s: float | None = None
    #: The soft locked-memory limit in bytes from ``/proc/self/limits`` (None: unlimited), and whether it was
    #: read at all: from /proc rather than ``getrlimit`` so that a captured node's limit is its own.
    memlock_soft: int | None = None
    memlock_read: bool = False
    #: ``NCCL_IB_HCA`` as this process's environment has it (None: not set, NCCL uses every HCA).
    nccl_ib_hca: HcaFilter | None = None

    @property
    def ports(self) -> list[tuple[Hca, Port]]:
        return [(hca, port) for hca in self.hcas for port in hca.ports]


@dataclass(frozen=True)
class HcaFilter:
    """``NCCL_IB_HCA`` as NCCL reads it (NCCL User Guide, "Environment Variables", NCCL_IB_HCA:
    docs.nvidia.com/deeplearning/nccl/user-guide/docs/env.html#nccl-ib-hca; ``parseStringList`` and
    ``matchIfList`` in NCCL's ``src/misc/utils.cc``): a comma-separated list of HCA names, each with an optional
    ``:port``; a leading ``^`` makes it a list to leave out, and a ``=`` (after the ``^`` where both are) makes its
    names exact, where otherwise each is a prefix (``mlx5`` is every mlx5_N). ``=mlx5_0:1,mlx5_1:1``: port 1 of
    those two; ``^=mlx5_1,mlx5_4``: every HCA but those two. Empty entries are skipped, as NCCL skips them."""

    text: str
    exclude: bool
    exact: bool
    #: (name or prefix, port or None for every port)
    entries: tuple[tuple[str, int | None], ...]

    @classmethod
    def parse(cls, value: str | None) -> HcaFilter | None:
        text = (value or "").strip()
        if not text:
            return None
        rest = text
        exclude = rest.startswith("^")
        rest = rest[1:] if exclude else rest
        exact = rest.startswith("=")
        rest = rest[1:] if exact else rest
        entries = []
        for token in rest.split(","):
            name, colon, port = token.partition(":")
            if name:
                entries.append((name, int(port) if colon and port.isdigit() else None))
        return cls(text, exclude, exact, tuple(entries))

    def _matches(self, entry: tuple[str, int | None], hca: str, port: int) -> bool:
        name, wanted = entry
        named = hca == name if self.exact else hca.startswith(name)
        return named and (wanted is None or wanted == port)

    def uses(self, hca: str, port: int) -> bool:
        """Whether NCCL will use this port (an empty list, like an unset variable, leaves every port in)."""
        if not self.entries:
            return True
        return any(self._matches(e, hca, port) for e in self.entries) != self.exclude

    def unmatched(self, ports: list[tuple[str, int]]) -> list[str]:
        """The entries that name no HCA and port this node has (as written: ``mlx5_9``, ``mlx5_0:2``)."""
        return [
            name + (f":{port}" if port is not None else "")
            for name, port in self.entries
            if not any(self._matches((name, port), hca, number) for hca, number in ports)
        ]


@probe("net", timeout_s=10.0, what="InfiniBand/RoCE ports and GPUDirect RDMA (/sys/class/infiniband)")
def probe_net(
    env: Mapping[str, str] | None = None,
    *,
    interval_s: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> NetInfo:
    env = env if env is not None else os.environ
    info = NetInfo(nccl_ib_hca=HcaFilter.parse(env.get("NCCL_IB_HCA")))
    root = machine.sysfs(env, "class", "infiniband")
    for name in machine.listdir(root)[:MAX_HCAS]:
        info.hcas.append(_read_hca(root / name))
    if not info.hcas:
        return info  # no RDMA here: nothing else matters, and nothing to wait for
    for hca, port in info.ports:
        _read_counters(env, hca, port, later=False)
    watched = [(hca, port) for hca, port in info.ports if port.counters]
    if watched:
        wait_s = interval(env, interval_s)
        sleep(wait_s)
        info.interval_s = wait_s
        for hca, port in watched:
            _read_counters(env, hca, port, later=True)
    info.uverbs = [n for n in machine.listdir(machine.devfs(env, "infiniband")) if n.startswith("uverbs")]
    verbs = machine.sysfs(env, "class", "infiniband_verbs")
    for name in machine.listdir(verbs):
        ibdev = (machine.read_text(verbs / name / "ibdev") or "").strip()
        if ibdev:
            info.uverbs_of[ibdev] = name
    info.peer = _read_peer(env)
    info.memlock_read, info.memlock_soft = _read_memlock(env)
    if any(hca.efa for hca in info.hcas):
        info.net_plugin, info.plugin_searched = find_net_plugin(env)
    return info


def _read_hca(path: Path) -> Hca:
    hca = Hca(name=path.name)
    hca.hca_type, hca.board_id = (_stripped(machine.read_text(path / name)) for name in ("hca_type", "board_id"))
    device = machine.link_target(path / "device")
    if device is not None:
        hca.pci = pci_place(device)
        driver = machine.link_target(device / "driver")
        hca.driver = driver.name if driver is not None else None
        ids = [_stripped(machine.read_text(device / name)) for name in ("vendor", "device")]
        hca.pci_device = ":".join(i for i in ids if i) or None
    ports = path / "ports"
    for number in sorted((n for n in machine.listdir(ports) if n.isdigit()), key=int)[:MAX_PORTS]:
        hca.ports.append(_read_port(ports / number, int(number)))
    return hca


def _read_port(path: Path, number: int) -> Port:
    port = Port(number)
    port.state = _worded(machine.read_text(path / "state"))
    port.phys_state = _worded(machine.read_text(path / "phys_state"))
    rate = machine.read_text(path / "rate")
    if rate is not None:
        port.rate = rate.strip()
        match = re.match(r"\s*([0-9.]+)\s*Gb/sec", rate)
        port.rate_gbps = float(match.group(1)) if match else None
    layer = machine.read_text(path / "link_layer")
    port.link_layer = layer.strip() if layer else None
    return port


def _stripped(text: str | None) -> str | None:
    return text.strip() or None if text is not None else None


def _worded(text: str | None) -> str | None:
    """``"4: ACTIVE"`` -> ``"ACTIVE"``; ``"5: LinkUp"`` -> ``"LinkUp"``."""
    if text is None:
        return None
    return text.strip().split(":", 1)[-1].strip() or None


def _read_counters(env: Mapping[str, str], hca: Hca, port: Port, *, later: bool) -> None:
    directory = machine.sysfs(env, "class", "infiniband", hca.name, "ports", str(port.number), "counters")
    for name in COUNTERS:
        text = machine.read_text(directory / name)
        try:
            value = int(text.strip()) if text is not None else None
        except ValueError:
            value = None
        if value is None:
            continue
        if later and name in port.counters:
            port.counters[name].later = value
        elif not later:
            port.counters[name] = Counter(value)


def pci_place(device: Path) -> PciPlace:
    """A PCI device's place from its resolved sysfs path (``devices/pci0000:00/0000:00:01.0/.../0000:18:00.0``)."""
    parts = device.parts
    roots = [i for i, part in enumerate(parts) if part.startswith("pci") and ":" in part]
    above = parts[roots[-1] + 1 : -1] if roots else ()
    place = PciPlace(
        bus_id=device.name,
        bridges=[p for p in above if _PCI_ADDRESS.match(p)],
        root=parts[roots[-1]] if roots else None,
    )
    text = machine.read_text(device / "numa_node")
    try:
        node = int(text.strip()) if text is not None else -1
    except ValueError:
        node = -1
    place.numa_node = node if node >= 0 else None
    return place


def gpu_places(bus: pci.PciBus, env: Mapping[str, str] | None = None) -> list[PciPlace]:
    """Where each NVIDIA GPU on the bus sits, by bus id (for GPU<->NIC affinity, joined to NVML's bus ids by the
    check): from the ``pci`` probe's one scan of the bus, which the checks share."""
    devices = machine.sysfs(env, "bus", "pci", "devices")
    gpus = []
    for name in bus.nvidia_gpus():
        target = machine.link_target(devices / name)
        gpus.append(pci_place(target) if target is not None else PciPlace(bus_id=name))
    return gpus


PeerKey = tuple[str | None, str | None]


def peer_key(hca: Hca, port: Port) -> PeerKey:
    """Ports that are alike: the same link layer on the same product (``Hca.model``: chip and board). A 400 Gb/s
    NDR compute port and a 25 GbE management port of another board are never each other's peers."""
    return (port.link_layer, hca.model)


def fabric_ports(ports: list[tuple[Hca, Port]], rate_gbps: float | None = None) -> list[tuple[Hca, Port]]:
    """The compute fabric's ports: the peer groups (:func:`peer_key`) whose fastest port up runs at ``rate_gbps``
    (the lab spec's) or faster; without a rate, or where no group reaches it, the groups at the fastest rate any
    runs at. Where no port is up at all, every port (nothing tells the fabric from the rest)."""
    best: dict[PeerKey, float] = {}
    for hca, port in ports:
        if port.up and port.rate_gbps:
            key = peer_key(hca, port)
            best[key] = max(best.get(key, 0.0), port.rate_gbps)
    if not best:
        return list(ports)
    chosen = {k for k, v in best.items() if rate_gbps is not None and v >= rate_gbps}
    if not chosen:
        top = max(best.values())
        chosen = {k for k, v in best.items() if v == top}
    return [(hca, port) for hca, port in ports if peer_key(hca, port) in chosen]


def place_of(places: list[PciPlace], bus_id: object) -> PciPlace | None:
    """The place of the device with this bus id, whatever its spelling (``00000000:18:00.0``, ``0000:18:00.0``)."""
    key = bus_key(bus_id)
    return next((p for p in places if key is not None and bus_key(p.bus_id) == key), None)


def _read_peer(env: Mapping[str, str]) -> PeerMemory:
    peer = PeerMemory()
    modules = machine.read_text(machine.procfs(env, "modules")) or ""
    loaded = {line.split(" ", 1)[0] for line in modules.splitlines() if line}
    peer.nvidia_peermem = "nvidia_peermem" in loaded or machine.sysfs(env, "module", "nvidia_peermem").is_dir()
    memory_peers = machine.sysfs(env, "kernel", "mm", "memory_peers")
    peer.memory_peers = [n for n in machine.listdir(memory_peers) if (memory_peers / n / "version").exists()]
    peer.nv_peer_mem = (
        "nv_peer_mem" in loaded
        or machine.sysfs(env, "module", "nv_peer_mem").is_dir()
        or bool({"nv_mem", "nv_mem_nc"} & set(peer.memory_peers))
    )
    release = machine.read_text(machine.procfs(env, "sys", "kernel", "osrelease"))
    peer.kernel = release.strip() if release else None
    version = machine.read_text(machine.procfs(env, "driver", "nvidia", "version"))
    if version:
        match = _DRIVER.search(version)
        peer.driver_version = match.group(1) if match else None
        peer.open_kernel_module = "Open Kernel Module" in version
    return peer


def _read_memlock(env: Mapping[str, str]) -> tuple[bool, int | None]:
    """``Max locked memory  8388608  8388608  bytes`` -> (True, 8388608); ``unlimited`` -> (True, None)."""
    limits = machine.read_text(machine.procfs(env, "self", "limits")) or ""
    for line in limits.splitlines():
        if line.startswith("Max locked memory"):
            soft = line[len("Max locked memory") :].split()[0]
            if soft == "unlimited":
                return True, None
            if soft.isdigit():
                return True, int(soft)
    return False, None


def kernel_at_least(release: str | None, major: int, minor: int) -> bool | None:
    """Whether a kernel release (``6.8.0-90-generic``) is at least ``major.minor``; None when it does not say."""
    match = _KERNEL.match(release or "")
    if match is None:
        return None
    return (int(match.group(1)), int(match.group(2))) >= (major, minor)


def find_net_plugin(env: Mapping[str, str]) -> tuple[str | None, list[str]]:
    """Where NCCL would find its network plugin: ``NCCL_NET_PLUGIN`` (a path, or a name that makes
    ``libnccl-net-<name>.so``), then the plugin's file names in ``LD_LIBRARY_PATH`` and the usual install
    directories. Returns the file found (or None) and the places searched."""
    names = list(PLUGIN_NAMES)
    chosen = env.get("NCCL_NET_PLUGIN", "").strip()
    if chosen and "/" in chosen:
        return (chosen if os.path.isfile(chosen) else None), [chosen]
    if chosen:
        names = [chosen if chosen.endswith(".so") else f"libnccl-net-{chosen}.so", *names]
    dirs = [d for d in env.get("LD_LIBRARY_PATH", "").split(":") if d] + list(OFI_PLUGIN_DIRS)
    searched = []
    for directory in dict.fromkeys(dirs):
        searched.append(directory)
        for name in names:
            candidate = os.path.join(directory, name)
            if os.path.isfile(candidate):
                return candidate, searched
    return None, searched
