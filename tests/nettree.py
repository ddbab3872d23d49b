"""Captured machine trees for the net area: ``sys``, ``proc`` and ``dev`` as the kernel shows them on real nodes,
written under a test's directory so that ``ENVCHECK_SYSFS``, ``ENVCHECK_PROCFS`` and ``ENVCHECK_DEVFS`` point
envcheck at them.

The shapes are those of an HGX H100 node (DGX H100 layout): eight GPUs, each behind a PCIe switch it shares with
one ConnectX-7 NDR HCA (mlx5_0..7, 400 Gb/s), GPUs 0-3 and their NICs on NUMA node 0, 4-7 on node 1. The GPUs'
bus ids are the fake NVML's ``hgx_8gpu`` ones (``0000:18:00.0`` + i), so NVML's GPU i is the tree's GPU i. The
file contents are the kernel's (``4: ACTIVE``, ``5: LinkUp``, ``400 Gb/sec (4X NDR)``); the device links are
relative, as in sysfs, so the tree resolves wherever it is written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

NDR = "400 Gb/sec (4X NDR)"
COUNTER_NAMES = (
    "symbol_error",
    "link_downed",
    "link_error_recovery",
    "port_rcv_errors",
    "port_rcv_remote_physical_errors",
    "local_link_integrity_errors",
    "excessive_buffer_overrun_errors",
    "port_xmit_discards",
    "port_xmit_data",
    "port_rcv_data",
)


#: ConnectX-7's chip and an NDR OSFP board's PSID as ``/sys/class/infiniband/mlx5_0/{hca_type,board_id}`` show them.
CX7 = ("MT4129", "MT_0000000838")
#: A ConnectX-6 Lx dual-port 25GbE board (a management or storage NIC beside the compute fabric).
CX6LX = ("MT4127", "MT_0000000531")


@dataclass
class Nic:
    """An HCA besides the GPUs' ones, on a root port of socket 0 (a front-end, management or storage NIC)."""

    name: str
    state: str = "4: ACTIVE"
    phys_state: str = "5: LinkUp"
    rate: str = "25 Gb/sec (1X EDR)"
    link_layer: str = "Ethernet"
    model: tuple[str, str] = CX6LX


@dataclass
class NodeShape:
    gpus: int = 8
    #: HCA index -> (state, phys_state, rate) for ports that are not up at NDR.
    ports: dict[int, tuple[str, str, str]] = field(default_factory=dict)
    link_layer: str = "InfiniBand"
    hca_prefix: str = "mlx5_"
    driver: str = "mlx5_core"
    #: HCA index (the GPUs' first, then ``extra``'s) -> counter -> count.
    counters: dict[int, dict[str, int]] = field(default_factory=dict)
    nvidia_peermem: bool = True
    #: MLNX_OFED's peer-memory clients (``nv_mem`` where nv_peer_mem or an OFED-built nvidia-peermem registers).
    memory_peers: tuple[str, ...] = ()
    uverbs: bool = True
    kernel: str = "6.8.0-1015-nvidia"
    driver_version: str = "550.90.07"
    open_module: bool = True
    #: The job's locked-memory limit (``ulimit -l``, bytes), None for unlimited.
    memlock: int | None = None
    #: Where each HCA sits: ``switch`` (behind its GPU's PCIe switch) or ``socket:N`` (on a root port of socket N).
    nic_place: dict[int, str] = field(default_factory=dict)
    #: The GPUs' HCAs' chip and board (``hca_type``, ``board_id``).
    model: tuple[str, str] = CX7
    #: Other HCAs, not beside a GPU.
    extra: tuple[Nic, ...] = ()


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _link(link: Path, target: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(target, link.parent))


def _device(sys: Path, path: Path, vendor: str, device: str, klass: str, numa: int, driver: str | None) -> None:
    for name, text in (("vendor", vendor), ("device", device), ("class", klass), ("numa_node", str(numa))):
        _write(path / name, text + "\n")
    _link(sys / "bus" / "pci" / "devices" / path.name, path)
    if driver:
        drivers = sys / "bus" / "pci" / "drivers" / driver
        drivers.mkdir(parents=True, exist_ok=True)
        _link(path / "driver", drivers)


def _hca(sys: Path, dev: Path, shape: NodeShape, nic: Path, spec: Nic, socket: int, number: int) -> None:
    """One HCA's PCI function, its ``/sys/class/infiniband`` entry with one port, and its uverbs device."""
    device = "0x1021" if spec.model == CX7 else "0x101f"
    _device(sys, nic, "0x15b3", device, "0x020700" if spec.link_layer == "InfiniBand" else "0x020000", socket,
            shape.driver)  # fmt: skip
    hca = nic / "infiniband" / spec.name
    _link(hca / "device", nic)
    _link(sys / "class" / "infiniband" / spec.name, hca)
    _write(hca / "hca_type", spec.model[0] + "\n")
    _write(hca / "board_id", spec.model[1] + "\n")
    port = hca / "ports" / "1"
    for attr, text in (("state", spec.state), ("phys_state", spec.phys_state), ("rate", spec.rate),
                       ("link_layer", spec.link_layer)):  # fmt: skip
        _write(port / attr, text + "\n")
    for counter in COUNTER_NAMES:
        _write(port / "counters" / counter, f"{shape.counters.get(number, {}).get(counter, 0)}\n")
    _write(sys / "class" / "infiniband_verbs" / f"uverbs{number}" / "ibdev", spec.name + "\n")
    if shape.uverbs:
        _write(dev / "infiniband" / f"uverbs{number}", "")


def build(root: Path, shape: NodeShape | None = None) -> dict[str, str]:
    """Write the node under ``root``; return the environment that points envcheck at it."""
    shape = shape or NodeShape()
    sys, proc, dev = root / "sys", root / "proc", root / "dev"
    for i in range(shape.gpus):
        socket = i // 4
        host_bridge = f"pci0000:{0x10 * socket:02x}"
        root_port = f"0000:{0x10 * socket:02x}:{1 + i % 4:02x}.0"
        up, down = f"0000:{0x20 + i * 4:02x}:00.0", 0x21 + i * 4
        base = sys / "devices" / host_bridge / root_port
        _device(sys, base, "0x8086", "0x352a", "0x060400", socket, "pcieport")
        switch = base / up
        _device(sys, switch, "0x1000", "0xc030", "0x060400", socket, "pcieport")
        gpu_port = switch / f"0000:{down:02x}:00.0"
        _device(sys, gpu_port, "0x1000", "0xc030", "0x060400", socket, "pcieport")
        _device(sys, gpu_port / f"0000:{0x18 + i:02x}:00.0", "0x10de", "0x2330", "0x030200", socket, "nvidia")
        place = shape.nic_place.get(i, "switch")
        if place == "switch":
            nic_parent = switch / f"0000:{down:02x}:01.0"
            _device(sys, nic_parent, "0x1000", "0xc030", "0x060400", socket, "pcieport")
            nic_socket = socket
        else:
            nic_socket = int(place.split(":")[1])
            bus = f"{0x10 * nic_socket:02x}"
            nic_parent = sys / "devices" / f"pci0000:{bus}" / f"0000:{bus}:{5 + i % 4:02x}.0"
            _device(sys, nic_parent, "0x8086", "0x352a", "0x060400", nic_socket, "pcieport")
        name = f"{shape.hca_prefix}{i}"
        state, phys, rate = shape.ports.get(i, ("4: ACTIVE", "5: LinkUp", NDR))
        nic = Nic(name, state, phys, rate, shape.link_layer, shape.model)
        _hca(sys, dev, shape, nic_parent / f"0000:{0x40 + i:02x}:00.0", nic, nic_socket, i)
    for k, nic in enumerate(shape.extra):
        parent = sys / "devices" / "pci0000:00" / f"0000:00:{0x0A + k:02x}.0"
        _device(sys, parent, "0x8086", "0x352a", "0x060400", 0, "pcieport")
        _hca(sys, dev, shape, parent / f"0000:{0x60 + k:02x}:00.0", nic, 0, shape.gpus + k)
    if shape.uverbs and shape.gpus:
        _write(dev / "infiniband" / "rdma_cm", "")
    modules = ["mlx5_ib 462848 0 - Live 0x0000000000000000", "ib_uverbs 196608 2 mlx5_ib, Live 0x0000000000000000"]
    if shape.nvidia_peermem:
        modules.append("nvidia_peermem 16384 0 - Live 0x0000000000000000 (POE)")
        _write(sys / "module" / "nvidia_peermem" / "initstate", "live\n")
    modules.append("nvidia 8650752 2 nvidia_peermem, Live 0x0000000000000000 (POE)")
    _write(proc / "modules", "\n".join(modules) + "\n")
    for client in shape.memory_peers:
        _write(sys / "kernel" / "mm" / "memory_peers" / client / "version", "1.3\n")
    _write(proc / "sys" / "kernel" / "osrelease", shape.kernel + "\n")
    locked = "unlimited" if shape.memlock is None else str(shape.memlock)
    _write(
        proc / "self" / "limits",
        "Limit                     Soft Limit           Hard Limit           Units     \n"
        "Max open files            1048576              1048576              files     \n"
        f"Max locked memory         {locked:<21}{locked:<21}bytes     \n",
    )
    flavour = "Open Kernel Module for x86_64" if shape.open_module else "x86_64 Kernel Module"
    _write(
        proc / "driver" / "nvidia" / "version",
        f"NVRM version: NVIDIA UNIX {flavour}  {shape.driver_version}  Release Build  (dvs-builder@U16-I3-B03-4-3)\n"
        "GCC version:  gcc version 12.3.0 (Ubuntu 12.3.0-1ubuntu1~22.04)\n",
    )
    dev.mkdir(parents=True, exist_ok=True)
    return {"ENVCHECK_SYSFS": str(sys), "ENVCHECK_PROCFS": str(proc), "ENVCHECK_DEVFS": str(dev)}


def hgx_ndr(root: Path) -> dict[str, str]:
    """The healthy node: eight NDR ports up, nvidia_peermem loaded, uverbs devices present."""
    return build(root)


def hgx_port_down(root: Path) -> dict[str, str]:
    """mlx5_3's port is down: no cable signal (``Polling``), at the 10 Gb/s the kernel shows for a link not up."""
    return build(root, NodeShape(ports={3: ("1: DOWN", "2: Polling", "10 Gb/sec (4X SDR)")}))


def hgx_no_peermem(root: Path) -> dict[str, str]:
    """No peer-memory module, and the proprietary kernel module (no dma-buf)."""
    return build(root, NodeShape(nvidia_peermem=False, open_module=False))


def hgx_container_no_devices(root: Path) -> dict[str, str]:
    """A container that sees the host's sysfs but was given no ``/dev/infiniband``."""
    return build(root, NodeShape(uverbs=False))


def roce_node(root: Path) -> dict[str, str]:
    """Eight 400GbE RoCE ports (link layer Ethernet), one of them trained at 200 Gb/s."""
    ports = {5: ("4: ACTIVE", "5: LinkUp", "200 Gb/sec (4X HDR)")}
    return build(root, NodeShape(link_layer="Ethernet", ports=ports))


def efa_node(root: Path) -> dict[str, str]:
    """An AWS p5-like node: EFA devices (driver ``efa``), no memory-peer module needed."""
    return build(root, NodeShape(hca_prefix="rdmap", driver="efa", link_layer="Unspecified", nvidia_peermem=False))
