"""What NCCL chose under ``envcheck comm``, rank by rank, and what is wrong with it.

Each rank parsed its own ``NCCL_DEBUG=INFO`` log (envcheck.comm.rank, envcheck.probes.nccl_log) and listed
the RDMA devices its node has; rank 0 gathered them. Two choices are findings, because both run quietly at
a fraction of the speed and no bandwidth figure says why (NVIDIA/nccl#1676: all_reduce 180 -> 10 GB/s):

* NCCL used TCP sockets (``NET/Socket``) on a node that has InfiniBand/RoCE HCAs: the rank's ``NCCL_IB_HCA``
  leaves out every HCA the node has (read as NCCL reads it, envcheck.probes.net.HcaFilter), or else a port is
  down, the container has no ``/dev/infiniband``, or the net plugin did not load (the doctor's ``net.ports``
  and ``net.gpudirect`` name which);
* GPUDirect RDMA is off on a network link: data between nodes is staged through host memory
  (``nvidia_peermem`` not loaded, or NCCL <= 2.22.3 looking only for ``nv_peer_mem``: ``net.gpudirect``).

gloo writes no NCCL log: a CPU run has nothing to parse, and the report says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from envcheck.core.model import Status
from envcheck.probes.net import HcaFilter


@dataclass(frozen=True)
class Finding:
    """One thing wrong with NCCL's choice, on one host: the ranks, the checks that name the cause, the fix."""

    host: str | None
    ranks: tuple[int, ...]
    what: str
    checks: tuple[str, ...]
    fix: str
    status: Status = Status.WARN

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "host": self.host,
            "ranks": list(self.ranks),
            "what": self.what,
            "checks": list(self.checks),
            "fix": self.fix,
        }


@dataclass(frozen=True)
class Transport:
    """Every rank's NCCL account (or why there is none) and the findings over them."""

    accounts: tuple[dict[str, Any], ...]
    findings: tuple[Finding, ...]
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "captured": bool(self.accounts),
            "note": self.note,
            "ranks": [rank_view(a) for a in self.accounts],
            "findings": [f.to_json() for f in self.findings],
        }


def rank_view(account: Mapping[str, Any]) -> dict[str, Any]:
    """One rank's line of the report: its widest communicator's choices (its own process in its log)."""
    processes = [p for p in account.get("processes") or [] if isinstance(p, dict)]
    main = max(processes, key=lambda p: p.get("nranks") or 0, default={})
    return {
        "rank": account.get("rank"),
        "host": account.get("host"),
        "hcas_on_node": list(account.get("hcas") or []),
        "hca_ports": [[name, port] for name, port in _node_ports(account)],
        "nccl_ib_hca": account.get("nccl_ib_hca"),
        "hcas_kept": _kept_by_nccl_ib_hca(account),
        "log": account.get("log"),
        "version": next((p["version"] for p in processes if p.get("version")), None),
        "network": main.get("network"),
        "gdr": main.get("gdr") or {},
        "gdr_links": main.get("gdr_links"),
        "net_links": main.get("net_links", 0),
        "hcas_used": main.get("hcas_used") or [],
        "nvls": main.get("nvls") or {},
        "transports": main.get("transports") or {},
        "peers": main.get("peers") or [],
    }


def _node_ports(account: Mapping[str, Any]) -> list[tuple[str, int]]:
    """The node's HCA ports as the rank listed them (envcheck.probes.nccl_log.rdma_on_node), read defensively:
    an account is JSON that came over the store."""
    pairs = [p for p in account.get("hca_ports") or [] if isinstance(p, (list, tuple)) and len(p) == 2]
    return [(str(name), int(port)) for name, port in pairs if isinstance(port, int)]


def _kept_by_nccl_ib_hca(account: Mapping[str, Any]) -> list[str] | None:
    """The node's HCAs that the rank's ``NCCL_IB_HCA`` lets NCCL use (any of their ports); None where it is not
    set or the rank did not say which ports its node has (then nothing is known of what it left out)."""
    chosen = HcaFilter.parse(account.get("nccl_ib_hca"))
    ports = _node_ports(account)
    if chosen is None or not ports:
        return None
    return sorted({name for name, port in ports if chosen.uses(name, port)})


#: The fix for a fallback to sockets, with the node's name filled in.
SOCKET_FIX = (
    "Run `envcheck doctor net.ports net.gpudirect` on {host}: a port that is down, a container without "
    "/dev/infiniband (`--device /dev/infiniband`), or an NCCL net plugin that did not load makes NCCL fall back "
    "to TCP; and unset NCCL_IB_DISABLE=1 or NCCL_NET=Socket if the job sets them."
)
#: The fix for a fallback to sockets that the rank's NCCL_IB_HCA caused (NCCL User Guide, "Environment
#: Variables", NCCL_IB_HCA: with no HCA left, NCCL's IB transport finds no device and NCCL uses sockets).
NCCL_IB_HCA_SOCKET_FIX = (
    "Unset NCCL_IB_HCA in the job's environment on {host} (NCCL then uses every HCA), or name HCAs the node has "
    "({devices}; `ibv_devices` lists them): a comma list of names, a prefix unless the list starts with `=`, "
    "`:N` for a port, a leading `^` to leave them out. `envcheck doctor net.ports` there judges the value."
)
#: The fix for GPUDirect RDMA off.
GDR_FIX = (
    "Load nvidia-peermem on {host} (`sudo modprobe nvidia-peermem`, and at boot) or use NCCL 2.23 or newer "
    "with dma-buf (NCCL 2.22.3 and older look only for nv_peer_mem); `envcheck doctor net.gpudirect` there "
    "names what is missing."
)


def judge(backend: str | None, accounts: Sequence[Mapping[str, Any]] | None) -> Transport:
    """The transport section of the report from rank 0's gathered accounts (None: no NCCL run)."""
    if backend != "nccl" or accounts is None:
        return Transport((), (), f"{backend or 'this backend'} writes no NCCL log: no transport to read")
    views = [rank_view(a) for a in accounts]
    if not any(v["log"] == "read" for v in views):
        return Transport(tuple(dict(a) for a in accounts), (), "NCCL wrote no log (it did not initialise)")
    # keyed by host and, where it left out every HCA, the NCCL_IB_HCA that did: that is the cause then
    socket: dict[tuple[str | None, str | None], list[dict[str, Any]]] = {}
    no_gdr: dict[str | None, list[dict[str, Any]]] = {}
    for v in views:
        if v["hcas_on_node"] and (v["network"] == "Socket" or v["transports"].get("Socket")):
            blocked = v["nccl_ib_hca"] if v["hcas_kept"] == [] else None
            socket.setdefault((v["host"], blocked), []).append(v)
        off = sorted(name for name, on in v["gdr"].items() if not on)
        if off or (v["net_links"] and v["gdr_links"] == 0 and not v["transports"].get("Socket")):
            no_gdr.setdefault(v["host"], []).append({**v, "off": off or v["hcas_used"]})
    findings = [_socket_finding(host, blocked, vs) for (host, blocked), vs in socket.items()]
    findings += [
        Finding(
            host,
            tuple(v["rank"] for v in vs),
            f"GPUDirect RDMA is off on {', '.join(vs[0]['off']) or 'the network links'}: data between nodes "
            "is staged through host memory",
            ("net.gpudirect",),
            GDR_FIX.format(host=host or "the node"),
        )
        for host, vs in no_gdr.items()
    ]
    return Transport(tuple(dict(a) for a in accounts), tuple(findings))


def _socket_finding(host: str | None, blocked: str | None, views: list[dict[str, Any]]) -> Finding:
    """NCCL on sockets beside RDMA devices: caused by ``blocked`` (the NCCL_IB_HCA that left out every HCA) where
    there is one, else by one of the causes the doctor's net checks tell apart."""
    devices = ", ".join(views[0]["hcas_on_node"])
    what = f"NCCL used TCP sockets (NET/Socket) although the node has RDMA devices ({devices})"
    ranks = tuple(v["rank"] for v in views)
    slower = "collectives between nodes run many times slower"
    if blocked is None:
        fix = SOCKET_FIX.format(host=host or "the node")
        return Finding(host, ranks, f"{what}: {slower}", ("net.ports", "net.gpudirect", "host.container"), fix)
    chosen = HcaFilter.parse(blocked)
    assert chosen is not None  # blocked is a value that left out every HCA
    unknown = chosen.unmatched(_node_ports(views[0]))
    named = f", naming {', '.join(unknown)}, which it does not have" if unknown and not chosen.exclude else ""
    cause = f"NCCL_IB_HCA={blocked} leaves out every one of them{named}"
    fix = NCCL_IB_HCA_SOCKET_FIX.format(host=host or "the node", devices=devices)
    return Finding(host, ranks, f"{what}: {cause}, so {slower}", ("net.ports",), fix)


def transport_words(view: Mapping[str, Any]) -> str:
    """One rank in one line: ``rank 0 (gpu19): IB 4 links, GPUDirect RDMA on (mlx5_0, mlx5_1), NVLS``."""
    kinds = ", ".join(f"{k} {n} link(s)" for k, n in (view.get("transports") or {}).items()) or "no links seen"
    parts = [kinds]
    if view.get("network"):
        parts.append(f"network {view['network']}")
    if view.get("net_links"):
        on = view.get("gdr_links") or 0
        parts.append(f"GPUDirect RDMA {'on' if on == view['net_links'] else 'off' if on == 0 else 'partly on'}")
    if view.get("hcas_used"):
        parts.append(f"HCAs {', '.join(view['hcas_used'])}")
    if (view.get("nvls") or {}).get("used"):
        parts.append("NVLS")
    return "; ".join(parts)
