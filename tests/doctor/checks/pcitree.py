"""A captured PCI tree of an 8-GPU HGX node, as ``/sys`` and ``/proc`` show it, for ``ENVCHECK_SYSFS`` and
``ENVCHECK_PROCFS``: each GPU (at the fake NVML's bus ids, 0000:18:00.0 up) below a PCIe switch port and a
root port, NVSwitches beside them, and each bridge's config space with a real extended-capability chain
(AER at 0x100, then ACS at 0x148: ID 0x000D, its control register at +6).

Two layouts: each GPU alone below its own root port (``shared=1``, no NICs), or PCIe switches of ``shared``
GPUs each (an upstream port below the root port, a downstream port per device), with a NIC beside each GPU
under the same switch where ``nics`` (DGX A100: two GPUs and two ConnectX NICs per switch)."""

from __future__ import annotations

import os
import struct
from pathlib import Path

from envcheck.probes.pci import ACS_BITS

#: lspci's "ACSCtl: SrcValid+ TransBlk- ReqRedir+ CmpltRedir+ UpstreamFwd+ ...": the kernel's setting for
#: isolation with an IOMMU on.
REDIRECTING = ACS_BITS["SrcValid"] | ACS_BITS["ReqRedir"] | ACS_BITS["CmpltRedir"] | ACS_BITS["UpstreamFwd"]


def config_space(acs: int | None, *, full: bool = True) -> bytes:
    """A bridge's config space: 4096 bytes as root reads it (64 without root) with AER then ACS."""
    space = bytearray(4096)
    struct.pack_into("<HH", space, 0, 0x10B5, 0x8796)  # a PCIe switch's vendor and device
    if acs is None:
        struct.pack_into("<I", space, 0x100, 0x0001 | (1 << 16))  # AER, the end of the chain
    else:
        struct.pack_into("<I", space, 0x100, 0x0001 | (1 << 16) | (0x148 << 20))  # AER, next: ACS
        struct.pack_into("<I", space, 0x148, 0x000D | (1 << 16))  # ACS, the end of the chain
        struct.pack_into("<HH", space, 0x14C, 0x005F, acs)  # capability, control
    return bytes(space if full else space[:64])


#: ``root_acs``'s default: the root ports' ACS control as the switch ports'.
SAME = -1


def _device(sys: Path, chain: list[str], vendor: int, cls: int, space: bytes | None = None) -> None:
    where = sys / "devices" / "pci0000:00" / Path(*chain)
    where.mkdir(parents=True, exist_ok=True)
    (where / "vendor").write_text(f"0x{vendor:04x}\n")
    (where / "class").write_text(f"0x{cls:06x}\n")
    (where / "config").write_bytes(space if space is not None else bytes(64))
    link = sys / "bus" / "pci" / "devices" / chain[-1]
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        os.symlink(os.path.relpath(where, link.parent), link)


def hgx_tree(
    root: Path,
    *,
    gpus: int = 8,
    acs: int | None = 0,
    full: bool = True,
    hypervisor: str | None = None,
    cmdline: str = "BOOT_IMAGE=/vmlinuz ro quiet",
    iommu: bool = False,
    shared: int = 1,
    nics: bool = False,
    root_acs: int | None = SAME,
) -> dict[str, str]:
    """Build the tree under ``root``; the variables that point envcheck at it."""
    sys, proc = root / "sys", root / "proc"
    switch_space = config_space(acs, full=full)
    root_space = switch_space if root_acs == SAME else config_space(root_acs, full=full)
    for i in range(gpus):
        gpu = f"0000:{0x18 + i:02x}:00.0"
        if shared == 1 and not nics:
            port, switch = f"0000:00:{1 + i:02x}.0", f"0000:{0x80 + i:02x}:00.0"
            above = [port, switch]
            _device(sys, [port], 0x8086, 0x060400, root_space)
        else:
            s, k = divmod(i, shared)
            port, upstream = f"0000:00:{1 + s:02x}.0", f"0000:{0x80 + s:02x}:00.0"
            _device(sys, [port], 0x8086, 0x060400, root_space)
            _device(sys, [port, upstream], 0x10B5, 0x060400, switch_space)
            above = [port, upstream, f"0000:{0x90 + s:02x}:{k:02x}.0"]
            if nics:
                nic_port = f"0000:{0x90 + s:02x}:{0x10 + k:02x}.0"
                _device(sys, [port, upstream, nic_port], 0x10B5, 0x060400, switch_space)
                _device(sys, [port, upstream, nic_port, f"0000:{0x40 + i:02x}:00.0"], 0x15B3, 0x020700)
        _device(sys, above, 0x10B5, 0x060400, switch_space)
        _device(sys, [*above, gpu], 0x10DE, 0x030200)
        _device(sys, [*above, f"0000:{0x18 + i:02x}:00.1"], 0x10DE, 0x040300)  # its audio function
    for n in range(4):  # NVSwitches: an NVIDIA "other bridge", not a GPU
        _device(sys, [f"0000:00:{0x10 + n:02x}.0", f"0000:{0xA0 + n:02x}:00.0"], 0x10DE, 0x068000)
    (sys / "class" / "iommu").mkdir(parents=True, exist_ok=True)
    if iommu:
        (sys / "class" / "iommu" / "dmar0").mkdir()
    proc.mkdir(parents=True, exist_ok=True)
    (proc / "cmdline").write_text(cmdline + "\n")
    flags = "fpu vme de pse tsc msr pae" + (" hypervisor" if hypervisor else "")
    (proc / "cpuinfo").write_text(f"processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: {flags}\n")
    if hypervisor:
        (sys / "class" / "dmi" / "id").mkdir(parents=True)
        (sys / "class" / "dmi" / "id" / "sys_vendor").write_text(hypervisor + "\n")
    return {"ENVCHECK_SYSFS": str(sys), "ENVCHECK_PROCFS": str(proc)}
