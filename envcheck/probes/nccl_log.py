"""What NCCL says it chose, read from its ``NCCL_DEBUG=INFO`` output (subsystems INIT, NET, GRAPH).

Why: a node whose InfiniBand port is down, whose ``nvidia_peermem`` is not loaded, or whose container has no
``/dev/infiniband`` runs NCCL quietly over TCP sockets or through host memory, and the only place that says so
is NCCL's own log: ``NET/Socket : Using [0]eth0:...`` and ``Using network Socket`` where ``Using network IB``
was expected, ``GPU Direct RDMA Disabled for HCA 0 'mlx5_0'``, and the transport of every channel
(``Channel 00/0 : 0[0] -> 1[1] via NET/IB/0/GDRDMA``). ``envcheck comm`` captures each rank's log and
``envcheck explain`` reads a saved one; both parse it here (the probes layer, below both commands).

The line shapes are NCCL 2.x's, as they appear in public logs (NVIDIA/nccl#1676, #229, #1189, #1538,
NVIDIA/nccl-tests#188, aws/aws-ofi-nccl#889): ``host:pid:tid [cudaDev] NCCL INFO message``, optionally
behind a timestamp. The bracket holds the CUDA device, not the rank: a process's rank comes from its
communicator's ``comm 0x... rank R nranks N cudaDev D ... Init START`` line, and a channel's
``0[0] -> 1[1]`` names ranks (with their devices in brackets). Nothing here judges.
"""

from __future__ import annotations

import os
import re
import socket
import sys
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from envcheck.core.machine import listdir, sysfs

#: The variables by which a user asks NCCL for its log; where any is set, envcheck asks for nothing more.
DEBUG_VARIABLES = ("NCCL_DEBUG", "NCCL_DEBUG_SUBSYS", "NCCL_DEBUG_FILE")
#: What envcheck asks for: initialisation, the network and the graph search name every choice parsed here.
SUBSYSTEMS = "INIT,NET,GRAPH"

_LINE = re.compile(
    r"(?P<host>[^\s:\[\]]+):(?P<pid>\d+):(?P<tid>\d+) \[(?P<dev>\d+)\] NCCL (?P<level>INFO|WARN) (?P<msg>[^\n]*)"
)
_VERSION = re.compile(r"NCCL version (?P<v>\d+\.\d+\.\d+)")
_COMM = re.compile(r"comm (?P<ptr>0x[0-9a-f]+) rank (?P<rank>\d+) nr?anks (?P<n>\d+) cudaDev (?P<dev>\d+)", re.I)
_IB_USING = re.compile(r"NET/IB ?: Using (?P<list>[^;\n]*)")
_IB_DEVICE = re.compile(r"\[(?P<i>\d+)\](?P<name>[\w.-]+):(?P<port>\d+)/(?P<layer>IB|RoCE)")
_SOCKET_USING = re.compile(r"NET/Socket ?: Using (?P<list>[^\n]*)")
_SOCKET_DEVICE = re.compile(r"\[(?P<i>\d+)\](?P<name>[^:\s]+):")
_NETWORK = re.compile(r"Using network (?P<net>[^\n]+)")
_GDR = re.compile(
    r"GPU Direct RDMA (?:\([^)\n]*\) )?(?P<state>enabled|disabled) for HCA (?P<i>\d+) '(?P<name>[^']+)'", re.I
)
_NVLS = re.compile(r"NVLS multicast support is (?P<not>not )?available")
_NVLS_USED = re.compile(r"Connected NVLS|NVLS comm 0x")
_LINK = re.compile(
    r"(?:Channel|Ring) (?P<ch>\d+)(?:/\d+)? : (?P<src>\d+)(?:\[\d+\])? -> (?P<dst>\d+)(?:\[\d+\])?"
    r"(?: \[(?:send|receive)\])? via (?P<via>[^\n]+?)\s*$"
)


@dataclass(frozen=True)
class Link:
    """One channel's connection as NCCL set it up: from rank ``src`` to rank ``dst``, over ``via``."""

    channel: int
    src: int
    dst: int
    via: str
    #: ``P2P`` (NVLink or PCIe peer-to-peer), ``SHM``, ``NVLS``, ``IB``, ``RoCE``, ``Socket``, ``OFI``, ``NET``.
    kind: str
    #: For a network link: whether GPUDirect RDMA carries it (``/GDRDMA``); None for the others.
    gdr: bool | None = None
    #: For a network link: the device by name (``mlx5_0``, ``eth0``) where the log listed it.
    device: str | None = None


@dataclass
class Communicator:
    """One NCCL communicator in a process: its rank, its size, its links."""

    rank: int
    nranks: int
    links: list[Link] = field(default_factory=list)


@dataclass
class Process:
    """Everything one process (one rank) of NCCL said about its choices."""

    host: str
    pid: int
    device: int
    version: str | None = None
    #: NCCL's ``Using network ...`` (``IB``, ``Socket``, ``IBext_v8``, ``AWS Libfabric``).
    network: str | None = None
    #: The network devices NCCL listed, by index: InfiniBand/RoCE HCAs or socket interfaces.
    net_devices: dict[int, str] = field(default_factory=dict)
    #: HCA name -> its link layer (``IB`` or ``RoCE``).
    link_layers: dict[str, str] = field(default_factory=dict)
    ib_found: bool | None = None
    sockets: bool = False
    #: HCA name -> whether NCCL enabled GPUDirect RDMA on it.
    gdr: dict[str, bool] = field(default_factory=dict)
    nvls_available: bool | None = None
    nvls_used: bool = False
    comms: dict[str, Communicator] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    _by_tid: dict[int, str] = field(default_factory=dict, repr=False)

    @property
    def main(self) -> Communicator | None:
        """The widest communicator (a job's world; send/recv and sub-groups make smaller ones)."""
        return max(self.comms.values(), key=lambda c: c.nranks, default=None)

    @property
    def links(self) -> list[Link]:
        return [link for comm in self.comms.values() for link in comm.links]

    def to_json(self) -> dict[str, Any]:
        """The process as the comm report and explain show it: per peer of its widest communicator the
        transport, whether GPUDirect RDMA is on, and which HCAs its links went through."""
        main = self.main
        peers: dict[int, dict[str, Any]] = {}
        for link in main.links if main else []:
            peer = link.dst if link.src == main.rank else link.src  # type: ignore[union-attr]
            entry = peers.setdefault(peer, {"peer": peer, "transport": link.kind, "via": set(), "devices": set()})
            entry["via"].add(link.via)
            if link.device:
                entry["devices"].add(link.device)
            if link.gdr is not None:
                entry["gdr"] = entry.get("gdr", True) and link.gdr
        net = [link for link in self.links if link.gdr is not None]
        kinds: dict[str, int] = {}
        for link in self.links:
            kinds[link.kind] = kinds.get(link.kind, 0) + 1
        return {
            "host": self.host,
            "pid": self.pid,
            "cuda_device": self.device,
            "rank": main.rank if main else None,
            "nranks": main.nranks if main else None,
            "version": self.version,
            "network": self.network,
            "net_devices": [self.net_devices[i] for i in sorted(self.net_devices)],
            "link_layers": dict(self.link_layers),
            "gdr": dict(self.gdr),
            "gdr_links": sum(bool(link.gdr) for link in net) if net else None,
            "net_links": len(net),
            "hcas_used": sorted({link.device for link in net if link.device and link.kind in ("IB", "RoCE")}),
            "nvls": {"available": self.nvls_available, "used": self.nvls_used},
            "transports": kinds,
            "peers": [
                {**e, "via": sorted(e["via"]), "devices": sorted(e["devices"])} for _, e in sorted(peers.items())
            ],
            "warnings": self.warnings[:10],
        }


def _kind(via: str, process: Process) -> tuple[str, bool | None, str | None]:
    """A link's transport from its ``via`` text: (kind, GPUDirect RDMA, network device)."""
    if via.startswith("P2P"):
        return "P2P", None, None
    if via.startswith("SHM") or via.startswith("direct shared memory"):
        return "SHM", None, None
    if via.startswith("NVLS"):
        return "NVLS", None, None
    if not via.startswith("NET/"):
        return via.split("/")[0], None, None
    parts = via.split("/")
    name = parts[1] if len(parts) > 1 else ""
    index = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else None
    device = process.net_devices.get(index) if index is not None else None
    gdr = parts[-1] == "GDRDMA"
    if name == "Socket":
        return "Socket", False, device
    if name.startswith("IB"):
        return process.link_layers.get(device or "", "IB"), gdr, device
    if "Libfabric" in name or "OFI" in name:
        return "OFI", gdr, device
    return "NET", gdr, device


def parse(text: str) -> list[Process]:
    """Every process that wrote NCCL lines in ``text``, in order of first appearance (a log of many ranks,
    as a job's combined output is, or one rank's own)."""
    processes: dict[tuple[str, int], Process] = {}
    for m in _LINE.finditer(text):
        key = (m["host"], int(m["pid"]))
        p = processes.get(key)
        if p is None:
            p = processes[key] = Process(m["host"], int(m["pid"]), int(m["dev"]))
        _read(p, int(m["tid"]), m["level"], m["msg"].rstrip())
    return list(processes.values())


def _read(p: Process, tid: int, level: str, msg: str) -> None:
    if level == "WARN":
        p.warnings.append(msg)
    if (m := _VERSION.search(msg)) and p.version is None:
        p.version = m["v"]
    elif m := _COMM.search(msg):
        p.comms.setdefault(m["ptr"], Communicator(int(m["rank"]), int(m["n"])))
        p._by_tid[tid] = m["ptr"]
        p.device = int(m["dev"])
    elif m := _IB_USING.search(msg):
        for d in _IB_DEVICE.finditer(m["list"]):  # empty after "No device found" ("Using [RO]; OOB ...")
            p.ib_found = True
            p.net_devices[int(d["i"])] = d["name"]
            p.link_layers[d["name"]] = d["layer"]
    elif "NET/IB : No device found" in msg:
        p.ib_found = False
    elif m := _SOCKET_USING.search(msg):
        p.sockets = True
        if p.ib_found is not True:  # the socket transport's own list, when IB is not the network
            p.net_devices = {int(d["i"]): d["name"] for d in _SOCKET_DEVICE.finditer(m["list"])}
    elif m := _NETWORK.search(msg):
        p.network = m["net"].strip()
    elif m := _GDR.search(msg):
        p.gdr[m["name"]] = m["state"].lower() == "enabled"
    elif m := _NVLS.search(msg):
        p.nvls_available = not m["not"]
    elif _NVLS_USED.search(msg):
        p.nvls_used = True
    elif m := _LINK.search(msg):
        ptr = p._by_tid.get(tid) or next(reversed(p.comms), None)
        if ptr is None:  # a log without its Init line (cut): one communicator of unknown rank
            ptr = "?"
            p.comms.setdefault(ptr, Communicator(int(m["src"]), 0))
        kind, gdr, device = _kind(m["via"], p)
        p.comms[ptr].links.append(Link(int(m["ch"]), int(m["src"]), int(m["dst"]), m["via"], kind, gdr, device))


# -- capturing a rank's own log ------------------------------------------------------------------------


def user_asked(env: Mapping[str, str]) -> bool:
    """Whether the user set any of NCCL's debug variables: then envcheck parses what they asked for."""
    return any(env.get(name) for name in DEBUG_VARIABLES)


def capture(env: MutableMapping[str, str], path: str) -> str | None:
    """Ask NCCL (in this process, before it initialises) for its log in ``path``; return the file to read
    afterwards. Where the user set ``NCCL_DEBUG_FILE``, that file (NCCL's ``%h``/``%p`` expanded) is read
    and theirs stays; where they set ``NCCL_DEBUG`` without a file, their level and subsystems are kept and
    only the destination is ``path`` (:func:`read_back` gives them the text on stdout, where NCCL writes by
    default). Otherwise envcheck asks for INFO on INIT, NET and GRAPH."""
    given = env.get("NCCL_DEBUG_FILE")
    if given:
        return given.replace("%h", socket.gethostname()).replace("%p", str(os.getpid()))
    if not user_asked(env):
        env["NCCL_DEBUG"] = "INFO"
        env["NCCL_DEBUG_SUBSYS"] = SUBSYSTEMS
    env["NCCL_DEBUG_FILE"] = path
    return path


def read_back(path: str, *, ours: bool, echo: bool, limit: int = 8 << 20) -> str | None:
    """The log NCCL wrote to ``path`` (None when it wrote none: NCCL never initialised); ``ours`` removes
    the file envcheck asked for, ``echo`` writes the text to stdout for a user who asked for NCCL's log."""
    try:
        with open(path, "rb") as f:
            text = f.read(limit).decode("utf-8", "replace")
    except OSError:
        return None
    if ours:
        try:
            os.unlink(path)
        except OSError:
            pass
    if echo and text:
        sys.stdout.write(text)
        sys.stdout.flush()
    return text


def hcas(env: Mapping[str, str] | None = None) -> list[str]:
    """The RDMA devices (InfiniBand or RoCE HCAs) this node's kernel has, by name: what NCCL could have used."""
    return listdir(sysfs(env, "class", "infiniband"))


def rdma_on_node(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What a rank tells rank 0 of its node's RDMA, beside its log: the HCAs, their ports (``[name, port]``), and
    the ``NCCL_IB_HCA`` its NCCL read (None: not set). Rank 0 judges every node's account, but only a rank can
    read its own node's ``/sys`` and environment, so the facts travel and the judging stays in one place."""
    env = env if env is not None else os.environ
    names = hcas(env)
    ports = [
        [name, port]
        for name in names
        for port in sorted(int(n) for n in listdir(sysfs(env, "class", "infiniband", name, "ports")) if n.isdigit())
    ]
    return {"hcas": names, "hca_ports": ports, "nccl_ib_hca": env.get("NCCL_IB_HCA")}
