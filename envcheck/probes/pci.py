"""The PCI bus as sysfs shows it (``/sys/bus/pci/devices``, through envcheck.core.machine): NVIDIA GPUs, the
bridges above them, and their ACS control from PCIe extended config space.

Plain data, no judgement: ``gpu.count`` compares the bus's GPUs with NVML's, ``pcie.acs`` judges the bridges,
``net.affinity`` places each GPU beside the NICs.

The bus is scanned once a doctor run: the ``pci`` probe's :class:`PciBus` is what every check that needs the list
of devices reads (the runner shares a probe's data between checks), and the functions below take it instead of
walking ``/sys/bus/pci/devices`` again.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from envcheck.core.machine import listdir, procfs, read_bytes, read_text, sysfs
from envcheck.probes.registry import probe

NVIDIA = 0x10DE
#: PCI base class and subclass (PCI Code and ID Assignment Specification), the programming interface left out:
#: VGA and 3D controllers are GPUs; an NVSwitch is a bridge of class 0x0680 ("other bridge") and is not.
GPU_CLASSES = (0x0300, 0x0302)
#: The most PCI devices read on one bus: a large node has a few hundred; a stalled or odd sysfs stops here.
MAX_PCI_DEVICES = 4096
#: The ACS extended capability's ID (PCIe Base Specification, 7.7.8), and its control register's bits.
ACS_CAP_ID = 0x000D
ACS_BITS = {
    "SrcValid": 0x01,
    "TransBlk": 0x02,
    "ReqRedir": 0x04,
    "CmpltRedir": 0x08,
    "UpstreamFwd": 0x10,
    "EgressCtrl": 0x20,
    "DirectTrans": 0x40,
}
#: Extended config space starts here; a reader without root gets only the first 64 bytes of ``config``.
EXTENDED = 0x100
_ADDRESS = re.compile(r"^[0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$", re.I)


@dataclass(frozen=True)
class PciDevice:
    address: str
    vendor: int | None
    pci_class: int | None


def normal(address: str) -> str:
    """``00000000:18:00.0`` (NVML) and ``0000:18:00.0`` (sysfs) as one form: four-digit domain, lower case."""
    domain, rest = address.strip().lower().split(":", 1)
    return f"{int(domain, 16):04x}:{rest}"


def _hex(text: str | None) -> int | None:
    try:
        return int((text or "").strip(), 16)
    except ValueError:
        return None


def devices(env: Mapping[str, str] | None = None) -> list[PciDevice]:
    """Every PCI device sysfs lists, with its vendor and class."""
    root = sysfs(env, "bus", "pci", "devices")
    return [
        PciDevice(name, _hex(read_text(root / name / "vendor")), _hex(read_text(root / name / "class")))
        for name in listdir(root)[:MAX_PCI_DEVICES]
    ]


@dataclass(frozen=True)
class PciBus:
    """One scan of the bus: every device with its vendor and class."""

    devices: tuple[PciDevice, ...]

    def nvidia_gpus(self) -> list[str]:
        """The addresses of the NVIDIA display and 3D controllers on the bus (not NVSwitches, not audio)."""
        return [d.address for d in self.devices if d.vendor == NVIDIA and d.pci_class is not None
                and d.pci_class >> 8 in GPU_CLASSES]  # fmt: skip

    def nics(self) -> list[str]:
        """The addresses of the network controllers on the bus (base class 0x02: Ethernet, InfiniBand...),
        whatever their vendor: the NICs a GPU's GPUDirect RDMA traffic goes to."""
        return [d.address for d in self.devices if d.pci_class is not None and d.pci_class >> 16 == 0x02]


@probe("pci", timeout_s=10.0, what="the PCI bus (/sys/bus/pci/devices)")
def probe_pci(env: Mapping[str, str] | None = None) -> PciBus:
    """The bus, read once for every check of a run that needs it (a node has a few hundred devices, two reads
    each)."""
    return PciBus(tuple(devices(env)))


def gpu_drivers(bus: PciBus, env: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """Each NVIDIA GPU on the bus that is a whole device, with the driver bound to it (``nvidia``, ``vfio-pci``,
    ``nouveau``; None when none is). SR-IOV virtual functions (a ``physfn`` link: vGPU on a host) are left out:
    NVML never lists them as GPUs."""
    root = sysfs(env, "bus", "pci", "devices")
    found: dict[str, str | None] = {}
    for address in bus.nvidia_gpus():
        if os.path.lexists(root / address / "physfn"):
            continue
        try:
            found[address] = os.path.basename(os.readlink(root / address / "driver"))
        except OSError:
            found[address] = None
    return found


def bridges_above(address: str, env: Mapping[str, str] | None = None) -> list[str]:
    """The PCI bridges between the root complex and ``address``, nearest the root first: the path that
    ``/sys/bus/pci/devices/ADDR`` links to (``devices/pci0000:00/0000:00:01.0/0000:01:00.0/ADDR``)."""
    link = sysfs(env, "bus", "pci", "devices", address)
    try:
        real = os.path.realpath(link)
    except OSError:
        return []
    parts = real.split(os.sep)
    return [p for p in parts[:-1] if _ADDRESS.match(p)]


def config(address: str, env: Mapping[str, str] | None = None) -> bytes | None:
    """The device's config space as this user may read it (64 bytes without root, 4096 with)."""
    return read_bytes(sysfs(env, "bus", "pci", "devices", address, "config"))


def acs_control(space: bytes) -> int | None:
    """The ACS control register from a full config space, walking the extended capability list from 0x100
    (each header: ID in bits 0-15, version 16-19, next offset 20-31); None when the device has no ACS."""
    offset, seen = EXTENDED, set()
    while EXTENDED <= offset <= len(space) - 8 and offset not in seen:
        seen.add(offset)
        (header,) = struct.unpack_from("<I", space, offset)
        if header in (0, 0xFFFFFFFF):
            return None
        if header & 0xFFFF == ACS_CAP_ID:
            (control,) = struct.unpack_from("<H", space, offset + 6)
            return int(control)
        offset = (header >> 20) & 0xFFC
    return None


def acs_words(control: int) -> str:
    """As ``lspci -vvv`` prints it: ``SrcValid+ TransBlk- ReqRedir+ ...``."""
    return " ".join(f"{name}{'+' if control & bit else '-'}" for name, bit in ACS_BITS.items())


def hypervisor(env: Mapping[str, str] | None = None) -> str | None:
    """The hypervisor this system runs under, or None on bare metal: the CPU's ``hypervisor`` flag, named by
    the DMI system vendor where it says."""
    flags = next(
        (line for line in (read_text(procfs(env, "cpuinfo")) or "").splitlines() if line.startswith("flags")), ""
    )
    if " hypervisor" not in flags:
        return None
    return (read_text(sysfs(env, "class", "dmi", "id", "sys_vendor")) or "").strip() or "a hypervisor"


def iommu(env: Mapping[str, str] | None = None) -> dict[str, object]:
    """The IOMMU's state: whether the kernel has one active (``/sys/class/iommu``), and the kernel command
    line's IOMMU settings (``iommu=pt``, ``intel_iommu=on``, ``amd_iommu=...``)."""
    cmdline = (read_text(procfs(env, "cmdline")) or "").split()
    settings = [w for w in cmdline if w.split("=")[0] in ("iommu", "intel_iommu", "amd_iommu", "pci")]
    return {
        "active": bool(listdir(sysfs(env, "class", "iommu"))),
        "cmdline": settings,
        "passthrough": "iommu=pt" in cmdline,
    }
