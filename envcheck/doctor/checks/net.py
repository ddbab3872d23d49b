"""The network NCCL runs over between nodes, judged from sysfs (the ``net`` probe): the InfiniBand and RoCE ports,
what GPUDirect RDMA needs, and which NIC is nearest each GPU.

Why a doctor looks here: a node whose port is down, whose ``nvidia_peermem`` is not loaded or whose container
was given no ``/dev/infiniband`` still trains: NCCL falls back quietly to copies through host memory or to TCP
sockets, at a tenth of the speed (all_reduce 180 -> 10 GB/s after an OS upgrade: NVIDIA/nccl#1676), and every
other tool says only "bandwidth below X". Each finding here names the port or the piece that is missing and the
command or setting that fixes it. A node without HCAs skips all three at the cost of one directory listing.
"""

from __future__ import annotations

from typing import Any

from envcheck.core.model import SkipCheck, Verdict, fail, ok, skip, warn
from envcheck.core.probing import Context, ProbeFailed, ProbeTimeout
from envcheck.doctor.areas import check
from envcheck.doctor.checks.host import MEMLOCK_WARN_BELOW
from envcheck.doctor.reading import nvml_state
from envcheck.probes import net as _net_probe  # noqa: F401 - registers the probe
from envcheck.probes.net import (
    CONGESTION_COUNTERS,
    Hca,
    NetInfo,
    PciPlace,
    PeerKey,
    Port,
    fabric_ports,
    gpu_places,
    kernel_at_least,
    peer_key,
    place_of,
)

#: The last NCCL that looks only for the old ``nv_peer_mem`` module's files (``/sys/kernel/mm/memory_peers/nv_mem``)
#: and so turns GPUDirect RDMA off beside ``nvidia_peermem``: 2.23.4 also checks ``/sys/module/nvidia_peermem``
#: (NVIDIA/nccl#1676, #1537; ``src/transport/net_ib.cc`` of v2.22.3-1 against v2.23.4-1).
NCCL_PEERMEM_QUIRK_UP_TO = (2, 22, 3)
#: dma-buf, GPUDirect RDMA without a peer-memory module: Linux 5.12 or newer and the open GPU kernel module of
#: r515 or newer (NCCL 2.19+ uses it where the NIC's driver supports it; NVIDIA GPUDirect RDMA guide, "DMA-BUF").
DMABUF_KERNEL = (5, 12)
DMABUF_DRIVER = 515

NO_HCA = "no InfiniBand or RoCE HCA (nothing under /sys/class/infiniband): NCCL between nodes goes over TCP"

PORT_DOWN_FIX = (
    "NCCL uses the ports that are up and runs at the pace of the slowest rank: a port down takes its GPU's share "
    "of the network away (or NCCL_IB_HCA names a port that is not there). `ibstat` shows the state; a port that "
    "is Polling sees no signal (cable, transceiver, switch port); one that is Disabled or stays in INIT needs the "
    "subnet manager (`sminfo`) or the switch's admin. Reseat or swap the cable, and ask the fabric's admin about "
    "the switch side."
)
#: NCCL_IB_HCA's syntax, NCCL User Guide, "Environment Variables": docs.nvidia.com/deeplearning/nccl/user-guide/
#: docs/env.html#nccl-ib-hca.
NCCL_IB_HCA_FIX = (
    "NCCL_IB_HCA names a device or port that is not here: NCCL then leaves out ports meant to be used (or, with "
    "nothing left, falls back to TCP sockets). The devices here: {devices}. Name them as `ibv_devices` or "
    "`ibstat` list them: a comma list of names (a prefix unless the list starts with `=`), `:N` for a port, a "
    "leading `^` to leave them out (NCCL's docs, NCCL_IB_HCA); or unset it and let NCCL choose."
)
PORT_RISING_FIX = (
    "Error counters rising now mean a marginal link (cable, transceiver, port): retransmissions cost bandwidth "
    "and the link may drop. Watch them with `perfquery -x` (or the sysfs counters), reseat or replace the cable, "
    "and have the switch side checked."
)
PORT_SLOW_FIX = (
    "A port trained below its peers runs its GPU's traffic slower and NCCL's rings at the pace of that rank: "
    "usually a cable, transceiver or switch port that negotiated down. Compare `ibstat` (or `ethtool` on RoCE) "
    "across the ports; reseat or replace the cable."
)
PEERMEM_FIX = (
    "Without a peer-memory module the NIC cannot read GPU memory: NCCL turns GPUDirect RDMA off and copies through "
    "host memory ('GPU Direct RDMA Disabled for HCA' with NCCL_DEBUG=INFO). Load it (`sudo modprobe nvidia-peermem`, "
    "and at boot: `echo nvidia-peermem | sudo tee /etc/modules-load.d/nvidia-peermem.conf`); or use dma-buf: the "
    "open GPU kernel module (r515+) on Linux 5.12+."
)
UVERBS_FIX = (
    "NCCL opens the HCAs through /dev/infiniband/uverbs*; without them it falls back to TCP sockets. In a container, "
    "pass them in: `docker run --device /dev/infiniband/uverbs0 ... --device /dev/infiniband/rdma_cm` (Kubernetes: "
    "the RDMA shared device plugin, or the NVIDIA network operator). On the host, load the verbs module: "
    "`sudo modprobe ib_uverbs`."
)
MEMLOCK_FIX = (
    "RDMA registers (pins) NCCL's buffers with the NIC, which counts against the locked-memory limit: with a low "
    "one ibv_reg_mr fails and NCCL errors out. Raise it to unlimited: `ulimit -l unlimited` (hard limit "
    "permitting), `memlock unlimited` in /etc/security/limits.conf, `LimitMEMLOCK=infinity` in a systemd unit (and "
    "Docker's own: `docker run --ulimit memlock=-1`), Slurm's `PropagateResourceLimits`."
)
NCCL_QUIRK_FIX = (
    "NCCL {nccl} (up to 2.22.3) looks only for the old nv_peer_mem module, so beside nvidia_peermem it turns "
    "GPUDirect RDMA off: all_reduce across nodes runs several times slower (NVIDIA/nccl#1676). Use NCCL 2.23 or "
    "newer: a newer torch, or its NCCL wheel (`pip install -U nvidia-nccl-cu12`, the one torch loads)."
)
PLUGIN_FIX = (
    "On EFA, NCCL needs the aws-ofi-nccl network plugin (libnccl-net.so); without it NCCL falls back to TCP "
    "sockets. Install it (AWS's EFA installer puts it in /opt/amazon/ofi-nccl/lib) and put its directory on "
    "LD_LIBRARY_PATH, or name it with NCCL_NET_PLUGIN. Searched: {searched}."
)
AFFINITY_FIX = (
    "These GPUs have no NIC on their CPU socket: their traffic to other nodes crosses the socket link, slower and "
    "without GPUDirect RDMA (NCCL uses it only up to PHB by default). Check `nvidia-smi topo -m`; on a node built "
    "this way, keep NCCL's choice (it picks the nearest NIC) and do not pin NCCL_IB_HCA across sockets; if the "
    "board should have a NIC per switch, a NIC is missing or in the wrong slot."
)

DOWN_NIC_FIX = (
    "A GPU's own NIC (the one on its PCIe switch) has no port up: NCCL sends that GPU's traffic through a NIC "
    "farther away, across the switch and through the CPU's root complex, which other GPUs' traffic also uses "
    "(and GPUDirect RDMA only up to PHB by default), so the node runs collectives slower than its peers. Bring "
    "the port up:"
)


def net_info(ctx: Context) -> NetInfo:
    """The probe's data, or the skip every net check gives on a node without HCAs."""
    info: NetInfo = ctx.probe("net")
    if not info.hcas:
        raise SkipCheck(NO_HCA)
    return info


def _port_name(hca: Hca, port: Port) -> str:
    return f"{hca.name} port {port.number}"


@check("net.ports", "InfiniBand/RoCE ports up, error counters not rising")
def ports(ctx: Context) -> Verdict:
    """Every InfiniBand/RoCE port NCCL will use is ACTIVE and LinkUp, at the rate of its peers, and its error
    counters (symbol errors, link downed, receive errors...) do not rise while watched. Peers are ports alike:
    the same link layer on the same board (its chip and board id, which fix the rate it is sold at), so eight
    400 Gb/s NDR ports beside two 25 GbE management ports are two groups, and a port down on a board that is
    not the compute fabric's is a spare, which warns. ``NCCL_IB_HCA`` (NCCL's syntax: a comma list, ``^`` to
    leave out, ``=`` for exact names, ``:port``) says which ports NCCL uses: a port it leaves out is only
    noted, and a name that matches no HCA or port fails. The lab spec's ``[net]`` holds the compute fabric's
    count and rate (spec.net_ports, spec.net_rate)."""
    info = net_info(ctx)
    details: dict[str, Any] = {"ports": [_port_details(h, p) for h, p in info.ports], "interval_s": info.interval_s}
    if not info.ports:
        return skip(f"{len(info.hcas)} HCA(s) without ports under /sys/class/infiniband", **details)
    chosen = info.nccl_ib_hca
    if chosen is not None:
        details["nccl_ib_hca"] = chosen.text
        unknown = chosen.unmatched([(h.name, p.number) for h, p in info.ports])
        if unknown:
            devices = ", ".join(_port_name(h, p) for h, p in info.ports)
            return fail(
                f"NCCL_IB_HCA={chosen.text} names {', '.join(unknown)}, which this node does not have",
                NCCL_IB_HCA_FIX.format(devices=devices),
                "ibv_devices",
                **details,
            )
    used = [(h, p) for h, p in info.ports if chosen is None or chosen.uses(h.name, p.number)]
    left_out = [(h, p) for h, p in info.ports if (h, p) not in used]
    if left_out:
        details["left_out_by_nccl_ib_hca"] = [_port_name(h, p) for h, p in left_out]
    problems, fixes = [], []
    down = [(h, p) for h, p in used if not p.up]
    if down:
        problems += [f"{_port_name(h, p)} {p.state or '?'} ({p.phys_state or '?'})" for h, p in down]
        fixes.append(PORT_DOWN_FIX)
    slow = _slower_than_peers(used)
    if slow:
        problems += [f"{_port_name(h, p)} at {p.rate} where its peers run {best:g} Gb/s" for h, p, best in slow]
        fixes.append(PORT_SLOW_FIX)
    rising, noted = [], []
    for hca, port in used:
        for name, counter in port.counters.items():
            if counter.rising:
                rise = f"{_port_name(hca, port)} {name} +{counter.later - counter.first}"  # type: ignore[operator]
                (noted if name in CONGESTION_COUNTERS else rising).append(rise)
    if rising:
        problems.append("counting errors now: " + ", ".join(rising))
        fixes.append(PORT_RISING_FIX)
    if noted:
        details["congestion"] = noted
    up = [p for _, p in used if p.up]
    # A port whose link trained but is not ACTIVE waits on the subnet manager: a fault. A port with no link
    # (Disabled, Polling) may be one left uncabled on purpose (a second port, a front-end NIC): the lab spec's
    # [net] count (spec.net_ports) says whether it is needed, so here it warns.
    unmanaged = [(h, p) for h, p in down if "linkup" in (p.phys_state or "").replace(" ", "").lower()]
    dead_rails = _dead_rails(used, down)
    watched = bool(info.interval_s) and any(p.counters for _, p in used)
    aside = _left_out_words(left_out)
    if problems:
        factory = fail if unmanaged or dead_rails or rising else warn
        summary = f"{len(up)} of {len(used)} ports up; " + "; ".join(problems) + aside
        return factory(summary, " ".join(fixes), "ibstat", **details)
    said = "no errors counted while watched" if watched else "error counters not watched"
    return ok(f"{len(up)} ports up ({_rates([(h, p) for h, p in used if p.up])}), {said}{aside}", **details)


def _dead_rails(used: list[tuple[Hca, Port]], down: list[tuple[Hca, Port]]) -> list[tuple[Hca, Port]]:
    """The down ports that are a rail of the compute fabric gone dark, a failure: an HCA with no port up where
    HCAs of its peer group (envcheck.probes.net.peer_key) are up and that group is the compute fabric (7 of 8
    NDR NICs), or several HCAs of one group all dark. A lone dark HCA of another group (a spare 25 GbE port
    beside its cabled twin) is not one: it warns. Several HCAs dark with none up anywhere fail too."""
    hcas_up = {h.name for h, p in used if p.up}
    fabric = {peer_key(h, p) for h, p in fabric_ports(used) if p.up}
    dark: dict[PeerKey, set[str]] = {}
    for h, p in down:
        if h.name not in hcas_up:
            dark.setdefault(peer_key(h, p), set()).add(h.name)
    return [
        (h, p)
        for h, p in down
        if h.name not in hcas_up
        and (
            peer_key(h, p) in fabric
            or len(dark[peer_key(h, p)]) > 1
            or (not hcas_up and sum(map(len, dark.values())) > 1)
        )
    ]


def _left_out_words(left_out: list[tuple[Hca, Port]]) -> str:
    """The ports NCCL_IB_HCA leaves out, said once at the end: information, never the verdict."""
    if not left_out:
        return ""
    down = [p for _, p in left_out if not p.up]
    words = ", ".join(f"{_port_name(h, p)}{'' if p.up else ' down'}" for h, p in left_out)
    return f" ({words}: left out by NCCL_IB_HCA{', not judged' if down else ''})"


def _port_details(hca: Hca, port: Port) -> dict[str, Any]:
    return {
        "hca": hca.name,
        "port": port.number,
        "state": port.state,
        "phys_state": port.phys_state,
        "rate": port.rate,
        "rate_gbps": port.rate_gbps,
        "link_layer": port.link_layer,
        "bus_id": hca.pci.bus_id if hca.pci else None,
        "numa_node": hca.pci.numa_node if hca.pci else None,
        "counters": {name: {"first": c.first, "later": c.later} for name, c in port.counters.items()},
    }


def _slower_than_peers(ports: list[tuple[Hca, Port]]) -> list[tuple[Hca, Port, float]]:
    """Ports up at a lower rate than the fastest port of their peer group (envcheck.probes.net.peer_key: the same
    link layer on the same board): one cable that trained at HDR among NDR ones. Unlike ports (a front-end or
    storage NIC of another board) are never compared."""
    best: dict[PeerKey, float] = {}
    for hca, port in ports:
        if port.up and port.rate_gbps:
            best[peer_key(hca, port)] = max(best.get(peer_key(hca, port), 0.0), port.rate_gbps)
    return [
        (hca, port, best[peer_key(hca, port)])
        for hca, port in ports
        if port.up and port.rate_gbps and port.rate_gbps < best[peer_key(hca, port)]
    ]


def _rates(ports: list[tuple[Hca, Port]]) -> str:
    """``400 Gb/s InfiniBand``; with ports of several boards, each rate with its count (``8 × 400 Gb/s
    InfiniBand, 2 × 25 Gb/s RoCE``)."""
    counted: dict[str, int] = {}
    for _, p in ports:
        if p.rate_gbps:
            kind = f"{p.rate_gbps:g} Gb/s {p.kind}"
            counted[kind] = counted.get(kind, 0) + 1
    if len(counted) <= 1:
        return ", ".join(counted) or "rate unknown"
    return ", ".join(f"{n} × {kind}" for kind, n in sorted(counted.items(), key=lambda kv: -kv[1]))


def _gpus(ctx: Context) -> list[Any]:
    state = nvml_state(ctx, consult=True)
    return [g for g in state.gpus if not g.lost] if state is not None and state.available else []


@check("net.gpudirect", "GPUDirect RDMA ready")
def gpudirect(ctx: Context) -> Verdict:
    """Where there are HCAs and GPUs, what GPUDirect RDMA needs: ``nvidia_peermem`` loaded (or dma-buf possible:
    Linux 5.12+ and the open GPU kernel module r515+), ``/dev/infiniband/uverbs*`` present (in a container: passed
    in), a locked-memory limit high enough, an NCCL that finds ``nvidia_peermem`` (2.22.3 and older look only for
    ``nv_peer_mem``), and on EFA the aws-ofi-nccl plugin findable. Without them NCCL runs through host memory or
    TCP sockets, many times slower."""
    info = net_info(ctx)
    if not _gpus(ctx):
        return skip("no NVIDIA GPU answers: GPUDirect RDMA has nothing to reach")
    peer = info.peer
    details: dict[str, Any] = {
        "nvidia_peermem": peer.nvidia_peermem,
        "nv_peer_mem": peer.nv_peer_mem,
        "memory_peers": peer.memory_peers,
        "kernel": peer.kernel,
        "driver_version": peer.driver_version,
        "open_kernel_module": peer.open_kernel_module,
        "uverbs": info.uverbs,
        "net_plugin": info.net_plugin,
    }
    problems: list[tuple[str, str, str | None]] = []  # (what, fix, command)
    said: list[str] = []
    dmabuf = _dmabuf(info)
    details["dmabuf_possible"] = dmabuf
    if peer.nvidia_peermem or peer.nv_peer_mem:
        said.append("nvidia_peermem loaded" if peer.nvidia_peermem else "nv_peer_mem loaded")
    elif dmabuf:
        said.append("no peer-memory module, dma-buf possible (whether the NIC's driver supports it is not visible)")
    elif peer.driver_version is None:
        said.append("peer memory not judged (the driver's version and kind are not readable here)")
    elif not any(h.efa for h in info.hcas):  # EFA registers GPU memory through its own driver or dma-buf
        problems.append(("no nvidia_peermem (nor nv_peer_mem), and dma-buf not possible" + _why_no_dmabuf(info),
                         PEERMEM_FIX, "sudo modprobe nvidia-peermem"))  # fmt: skip
    if not info.uverbs:
        # the devices of the HCAs NCCL will use: NCCL_IB_HCA's, where it is set
        chosen = info.nccl_ib_hca
        used = [h for h in info.hcas if chosen is None or any(chosen.uses(h.name, p.number) for p in h.ports)]
        devices = [info.uverbs_of.get(h.name) for h in used or info.hcas]
        flags = " ".join(f"--device /dev/infiniband/{d}" for d in devices if d) or "--device /dev/infiniband/uverbs0"
        problems.append(
            ("no /dev/infiniband/uverbs* here", UVERBS_FIX, f"docker run {flags} --device /dev/infiniband/rdma_cm …")
        )
    else:
        said.append(f"{len(info.uverbs)} uverbs device(s)")
    memlock = info.memlock_soft
    if info.memlock_read and memlock is not None and memlock < MEMLOCK_WARN_BELOW:
        problems.append((f"locked-memory limit {memlock // 1024} KiB", MEMLOCK_FIX, "ulimit -l unlimited"))
    details["memlock_soft_bytes"] = memlock
    if peer.nvidia_peermem and not peer.nv_peer_mem and not dmabuf:
        nccl = _nccl_version(ctx)
        details["nccl_version"] = list(nccl) if nccl else None
        if nccl and tuple(nccl[:3]) <= NCCL_PEERMEM_QUIRK_UP_TO:
            shown = ".".join(map(str, nccl))
            problems.append((f"torch's NCCL {shown} does not see nvidia_peermem", NCCL_QUIRK_FIX.format(nccl=shown),
                             "pip install -U nvidia-nccl-cu12"))  # fmt: skip
    if any(h.efa for h in info.hcas):
        if info.net_plugin is None:
            problems.append(("EFA without the aws-ofi-nccl plugin (libnccl-net.so) findable",
                             PLUGIN_FIX.format(searched=", ".join(info.plugin_searched)), None))  # fmt: skip
        else:
            said.append(f"NCCL net plugin {info.net_plugin}")
    if problems:
        # Ethernet ports alone may be RoCE for the GPUs or only a front-end NIC (a cloud VM's accelerated
        # networking shows an mlx5 device too): what they lack is then a warning, not a node failure.
        ethernet = bool(info.ports) and all((p.link_layer or "").lower() == "ethernet" for _, p in info.ports)
        verdict = warn if ethernet else fail
        note = " (Ethernet ports only: RoCE for the GPUs, or a front-end NIC that carries none of their traffic)"
        summary = "; ".join(p[0] for p in problems) + (note if ethernet else "")
        return verdict(summary, " ".join(p[1] for p in problems), problems[0][2], **details)
    return ok("GPUDirect RDMA ready: " + ", ".join(said), **details)


def _dmabuf(info: NetInfo) -> bool:
    peer = info.peer
    major = int(peer.driver_version.split(".")[0]) if peer.driver_version else None
    kernel = kernel_at_least(peer.kernel, *DMABUF_KERNEL)
    return bool(kernel and peer.open_kernel_module and major is not None and major >= DMABUF_DRIVER)


def _why_no_dmabuf(info: NetInfo) -> str:
    peer = info.peer
    if peer.driver_version is None:
        return " (the driver's version and kind are not readable here: /proc/driver/nvidia/version)"
    if not peer.open_kernel_module:
        return f" (driver {peer.driver_version} is the proprietary kernel module, not the open one)"
    if not kernel_at_least(peer.kernel, *DMABUF_KERNEL):
        return f" (kernel {peer.kernel or '?'} is older than 5.12)"
    return f" (driver {peer.driver_version} is older than r{DMABUF_DRIVER})"


def _nccl_version(ctx: Context) -> tuple[int, ...] | None:
    """torch's NCCL, asked only where it decides something (the torch probe is a child process)."""
    try:
        return ctx.probe("torch").nccl_version
    except (ProbeTimeout, ProbeFailed):
        return None


#: How near a NIC is to a GPU, nearest first, and ``nvidia-smi topo -m``'s letters for it.
NEARNESS = ("same PCIe switch", "same host bridge", "same NUMA node", "across the CPU socket")
NEARNESS_LABELS = ("PIX", "PHB", "NODE", "SYS")


def nearness(gpu: PciPlace, nic: PciPlace) -> int | None:
    """:data:`NEARNESS`'s index for this pair; None where sysfs does not say (no NUMA node, no shared bridge)."""
    shared = set(gpu.bridges[1:]) & set(nic.bridges[1:])  # below the root port: a PCIe switch
    if shared:
        return 0
    if gpu.bridges[:1] and gpu.bridges[:1] == nic.bridges[:1]:
        return 1
    if gpu.numa_node is not None and nic.numa_node is not None:
        return 2 if gpu.numa_node == nic.numa_node else 3
    return None


def _nic_details(hca: Hca) -> dict[str, Any]:
    """What the fabric section shows of a NIC: its ports as NCCL names them (``mlx5_0:1``), up ones where any is."""
    ports = [p for p in hca.ports if p.up] or hca.ports
    return {
        "ports": [f"{hca.name}:{p.number}" for p in ports],
        "bus_id": hca.pci.bus_id if hca.pci else None,
        "numa_node": hca.pci.numa_node if hca.pci else None,
    }


@check("net.affinity", "Each GPU's nearest NIC")
def affinity(ctx: Context) -> Verdict:
    """Which NIC is nearest each GPU (same PCIe switch, same NUMA node, or across the CPU socket), from the PCI
    tree in sysfs and NVML's bus ids: a GPU whose nearest NIC is across the socket warns, its traffic to other
    nodes crossing the socket link without GPUDirect RDMA. NCCL picks the nearest NIC with a port up, so a GPU
    whose own NIC (on its PCIe switch) has none up warns too, naming that NIC: its traffic goes farther (across
    the switch, the NUMA node) while net.ports says only that a port is down."""
    info = net_info(ctx)
    gpus = _gpus(ctx)
    if not gpus:
        return skip("no NVIDIA GPU answers: nothing to place beside the NICs")
    places = gpu_places(ctx.probe("pci"), ctx.env)
    placed = [h for h in info.hcas if h.pci is not None]
    up = [h for h in placed if any(p.up for p in h.ports)]
    nics = up or placed
    # A NIC with no port up that is a peer of the ones up (not a front-end NIC of another board): NCCL passes it by.
    down = [h for h in placed if up and h not in up and h.model in {n.model for n in up}]
    table: dict[str, Any] = {}
    across, unknown, bypassed = [], [], []
    for gpu in gpus:
        place = place_of(places, gpu.pci_bus_id)
        ranked = sorted(
            ((n, h) for h in nics if place is not None and (n := nearness(place, h.pci)) is not None),  # type: ignore[arg-type]
            key=lambda pair: pair[0],
        )
        own = [h.name for h in down if place is not None and nearness(place, h.pci) == 0]  # type: ignore[arg-type]
        if not ranked:
            unknown.append(gpu.index)
            table[str(gpu.index)] = {"bus_id": gpu.pci_bus_id, "nic": None, "nearness": None}
            continue
        best = ranked[0][0]
        nearest = [h.name for n, h in ranked if n == best]
        table[str(gpu.index)] = {
            "bus_id": gpu.pci_bus_id,
            "nic": nearest,
            "nearness": NEARNESS[best],
            "label": NEARNESS_LABELS[best],
        }
        if own and best > 0:
            table[str(gpu.index)]["down_nic"] = own
            bypassed.append(gpu.index)
        if best == len(NEARNESS) - 1:
            across.append(gpu.index)
    named = {n for v in table.values() for n in [*(v["nic"] or ()), *v.get("down_nic", ())]}
    details = {"gpus": table, "nics": {h.name: _nic_details(h) for h in placed if h.name in named}}
    problems = []
    for i in bypassed:
        row = table[str(i)]
        problems.append(
            (
                f"GPU {i} ({row['bus_id']}): its NIC on the same PCIe switch, {'/'.join(row['down_nic'])}, has no "
                f"port up: NCCL goes to {'/'.join(row['nic'])} instead, across the switch ({row['nearness']}, "
                f"{row['label']})",
                DOWN_NIC_FIX + " " + PORT_DOWN_FIX,
                f"ibstat {row['down_nic'][0]}",
            )
        )
    if across:
        words = ", ".join(f"GPU {i} ({table[str(i)]['bus_id']})" for i in across)
        problems.append((f"{words}: nearest NIC across the CPU socket", AFFINITY_FIX, "nvidia-smi topo -m"))
    if problems:
        summary = "; ".join(p[0] for p in problems)
        return warn(summary, " ".join(dict.fromkeys(p[1] for p in problems)), problems[0][2], **details)
    if len(unknown) == len(gpus):
        return skip(
            "sysfs does not say where the GPUs sit against the NICs (no shared bridge, no NUMA node)", **details
        )
    pairs = ", ".join(f"GPU {i} → {'/'.join(v['nic'])} ({v['label']})" for i, v in table.items() if v["nic"])
    return ok(pairs, **details)
