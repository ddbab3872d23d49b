"""Reference figures for ``envcheck comm``: the links' datasheet peaks, and what NCCL typically measures.

A bus bandwidth means little alone: 370 GB/s is a healthy 8×H100 NVLink node and impossible over
PCIe. So where the fabric is known, the report shows each op's peak busbw as a fraction of two
references: the link's *line rate* per direction (what the datasheet quotes, halved where it quotes
both directions together), which no collective reaches because of protocol overhead, and the busbw
that NCCL is *typically measured* at on that fabric, which a healthy node should come close to.

Every figure names its source. The fabric is inferred from the GPU model, matched exactly (after
trimming and case-folding) like the bench's datasheet peaks, and only when every rank is on one host
with the same model: across hosts the network decides, and envcheck does not see how many NICs a node
has, so it shows no fraction rather than a guess. Models sold both with and without NVLink bridges
(H100 PCIe, A100 PCIe, H200 NVL) are not in the table for the same reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Link:
    """A GPU-to-GPU fabric and its datasheet peak per direction, in GB/s (10⁹ bytes per second)."""

    id: str
    title: str
    line_rate_gb_s: float
    source: str


LINKS: dict[str, Link] = {
    link.id: link
    for link in (
        Link("nvlink3", "NVLink 3 (NVSwitch)", 300.0, "NVIDIA A100 datasheet: NVLink 600 GB/s, both directions"),
        Link("nvlink4", "NVLink 4 (NVSwitch)", 450.0, "NVIDIA H100/H200 datasheets: NVLink 900 GB/s, both directions"),
        Link(
            "nvlink4_h800",
            "NVLink 4, H800 (NVSwitch)",
            200.0,
            "NVIDIA H800 datasheet: NVLink 400 GB/s, both directions",
        ),
        Link("nvlink5", "NVLink 5 (NVSwitch)", 900.0, "NVIDIA B200 datasheet: NVLink 1.8 TB/s, both directions"),
        # PCI Express Base Specification 4.0/5.0: 16/32 GT/s per lane, 128b/130b encoding, ×16.
        Link("pcie4", "PCIe 4.0 ×16", 31.5, "PCIe 4.0 base spec: 16 GT/s × 16 lanes × 128/130 ÷ 8"),
        Link("pcie5", "PCIe 5.0 ×16", 63.0, "PCIe 5.0 base spec: 32 GT/s × 16 lanes × 128/130 ÷ 8"),
        # Between nodes, per NIC port; a node's total is this times its NICs (8 on an HGX H100/H200).
        Link("ib_hdr", "InfiniBand HDR, per port", 25.0, "InfiniBand HDR: 200 Gb/s per port (ConnectX-6)"),
        Link("ib_ndr", "InfiniBand NDR, per port", 50.0, "InfiniBand NDR: 400 Gb/s per port (ConnectX-7)"),
        Link("ib_xdr", "InfiniBand XDR, per port", 100.0, "InfiniBand XDR: 800 Gb/s per port (ConnectX-8)"),
    )
}

#: GPU model (as torch and NVML name it) -> the fabric its GPUs share in an 8-GPU baseboard.
MODELS: dict[str, str] = {
    "NVIDIA A100-SXM4-40GB": "nvlink3",
    "NVIDIA A100-SXM4-80GB": "nvlink3",
    "NVIDIA H100 80GB HBM3": "nvlink4",
    "NVIDIA H100 SXM5 80GB": "nvlink4",
    "NVIDIA H200": "nvlink4",
    "NVIDIA H800": "nvlink4_h800",
    "NVIDIA B200": "nvlink5",
    "NVIDIA L40S": "pcie4",
    "NVIDIA L40": "pcie4",
    "NVIDIA L4": "pcie4",
    "NVIDIA A10": "pcie4",
    "NVIDIA A10G": "pcie4",
    "NVIDIA RTX 6000 Ada Generation": "pcie4",
}
_BY_NAME = {name.casefold(): link for name, link in MODELS.items()}


@dataclass(frozen=True)
class Typical:
    """A bus bandwidth NCCL is typically measured at on a fabric, for ops (``*``: every op)."""

    link: str
    ops: tuple[str, ...]
    busbw_gb_s: float
    what: str
    source: str


#: What healthy nodes measure. NVLink SHARP (NVLS, NCCL ≥ 2.17 on NVSwitch systems with the fabric
#: manager running) accelerates all_reduce only, and its busbw exceeds what the wire could carry for a
#: ring: that is why all_reduce has its own, higher figure.
TYPICAL: tuple[Typical, ...] = (
    Typical(
        "nvlink4",
        ("all_reduce",),
        480.0,
        "8 GPUs, all_reduce with NVLink SHARP, sizes ≥ 1 GiB",
        "NCCL maintainers, NVIDIA/nccl-tests issue 212: peak busbw ~480 GB/s on 8×H100 with NVLS "
        "(475 GB/s measured on 8×H200 in issue 272)",
    ),
    Typical(
        "nvlink4",
        ("*",),
        370.0,
        "8 GPUs, without NVLS (ring, or any op but all_reduce)",
        "NCCL maintainers, NVIDIA/nccl-tests issue 212: ~370 GB/s effective NVLink bandwidth after "
        "protocol overhead (~20% below the 450 GB/s line rate)",
    ),
)


def fabric_of(models: Iterable[str | None], hosts: int) -> Link | None:
    """The fabric every rank shares, when it is known: one host, one GPU model, in :data:`MODELS`. A rank
    without a GPU (a CPU rank, or one that never joined) leaves the fabric unknown."""
    listed = list(models)
    if hosts != 1 or not listed or any(m is None for m in listed):
        return None
    names = {str(m).strip().casefold() for m in listed}
    if len(names) != 1:
        return None
    link = _BY_NAME.get(names.pop())
    return LINKS[link] if link else None


def typical_for(op: str, link: Link) -> Typical | None:
    """The typical busbw of ``op`` on ``link``: the op's own figure first, else the link's general one."""
    for wildcard in (False, True):
        for entry in TYPICAL:
            if entry.link == link.id and (("*" in entry.ops) if wildcard else (op in entry.ops)):
                return entry
    return None


def references(peaks: dict[str, float], models: Iterable[str | None], hosts: int) -> dict[str, Any] | None:
    """The ``reference`` object of an envcheck.comm/1 report: the fabric, and for each op's peak busbw its
    fraction of the line rate and of the typical figure. None where the fabric is not known."""
    link = fabric_of(models, hosts)
    if link is None:
        return None
    ops: dict[str, Any] = {}
    for op, busbw in peaks.items():
        typical = typical_for(op, link)
        ops[op] = {
            "busbw_gb_s": busbw,
            "line_rate_fraction": round(busbw / link.line_rate_gb_s, 4),
            "typical_gb_s": typical.busbw_gb_s if typical else None,
            "typical_fraction": round(busbw / typical.busbw_gb_s, 4) if typical else None,
            "typical_source": typical.source if typical else None,
        }
    return {
        "fabric": link.id,
        "title": link.title,
        "line_rate_gb_s": link.line_rate_gb_s,
        "source": link.source,
        "ops": ops,
    }
