"""The PCIe between the GPUs, read from sysfs (envcheck.probes.pci): what NCCL's P2P rides on when there is
no NVLink, and what turns it into a detour through the CPU's root complex.

An area of its own rather than part of the fabric's: these checks read only the kernel's PCI tree (no NVML,
no fabric probe), so they run where the driver is broken too, and over a captured tree (``ENVCHECK_SYSFS``,
``ENVCHECK_PROCFS``) from another node.
"""

from __future__ import annotations

from envcheck.core.model import SkipCheck, Verdict, ok, skip, warn
from envcheck.core.probing import Context
from envcheck.doctor.areas import check
from envcheck.probes import pci

#: What a person runs as root to see the bridges' ACS control where envcheck may not read it.
ACS_COMMAND = "sudo lspci -vvv | grep -i ACSCtl"
#: The redirect bits that send peer-to-peer requests and completions up to the root complex.
REDIRECT = pci.ACS_BITS["ReqRedir"] | pci.ACS_BITS["CmpltRedir"]
#: NVIDIA's recommendation (NCCL User Guide, Troubleshooting, "PCI Access Control Services (ACS)", :data:`NCCL_ACS`):
#: on bare metal, disable ACS in the BIOS, or clear each bridge's ACS control with setpci (until the next boot). The
#: kernel sets ACS itself on bridges when an IOMMU is on (to isolate devices), so an IOMMU in translation mode brings
#: it back; Linux 5.1+ clears the redirect bits of the bridges it is given at boot (``pci=disable_acs_redir=``,
#: Documentation/admin-guide/kernel-parameters.txt).
NCCL_ACS = (
    "https://docs.nvidia.com/deeplearning/nccl/user-guide/docs/troubleshooting.html#pci-access-control-services-acs"
)
ACS_FIX = (
    "Disable ACS in the BIOS (or VT-d/IOMMU where the node needs no device isolation; NCCL's troubleshooting guide, "
    f"{NCCL_ACS}); or boot with `pci=disable_acs_redir={{first}}` (Linux 5.1+; the ports joined by `;`, as in "
    "details' `kernel_parameter`); or clear it now, until the next boot, with `sudo setpci -s BDF "
    "ECAP_ACS+0x6.w=0000` on each of the {count} port(s) (the command shown clears {first}; details' `setpci` "
    "lists one per port). With the IOMMU on, the kernel enables ACS itself: boot with `iommu=pt` (or the IOMMU off) "
    "unless the node needs device isolation. Until then NCCL's P2P goes through the CPU (or hangs; "
    "NCCL_P2P_DISABLE=1 hides it)."
)
#: Switch ports named in the summary; the rest are counted (details keep every one).
NAMED_PORTS = 3


@check("pcie.acs", "PCIe ACS redirect where GPUs and NICs share a switch")
def check_acs(ctx: Context) -> Verdict:
    """ACS redirect on the PCIe switch ports where GPUs (and their NICs) under one switch meet sends their
    peer-to-peer traffic up through the CPU's root complex: all_reduce is slow or hangs, and
    `NCCL_P2P_DISABLE=1` seems to fix it. Only those ports are judged: traffic between devices under different
    root ports crosses the root complex anyway, so a root port's redirect bits are noted, not judged. Read from
    each port's extended config space (root only: otherwise the exact command to run), with the IOMMU mode;
    skipped under a hypervisor, where ACS is expected (it isolates passed-through devices)."""
    env = ctx.env
    bus: pci.PciBus = ctx.probe("pci")
    gpus = bus.nvidia_gpus()
    if not gpus:
        raise SkipCheck("no NVIDIA GPU on the PCI bus")
    vm = pci.hypervisor(env)
    if vm is not None:
        return skip(f"under a hypervisor ({vm}): ACS is the host's to set, and expected there")
    iommu = pci.iommu(env)
    paths = {device: pci.bridges_above(device, env) for device in [*gpus, *bus.nics()]}
    bridges = list(dict.fromkeys(b for gpu in gpus for b in paths[gpu]))
    if not bridges:
        raise SkipCheck("the GPUs sit directly on the root complex: no bridge above them")
    judged = switch_ports(paths, gpus)
    roots = list(dict.fromkeys(path[0] for path in paths.values() if path))
    spaces = {b: pci.config(b, env) for b in dict.fromkeys([*judged, *roots])}
    unread = [b for b in judged if (space := spaces[b]) is None or len(space) <= pci.EXTENDED]
    redirect = {b: _redirect(spaces[b]) for b in spaces}
    redirected = {b: redirect[b] for b in judged if redirect[b]}
    at_roots = {b: redirect[b] for b in roots if redirect[b] and b not in judged}
    details = {"bridges": bridges, "judged": judged, "iommu": iommu, "redirected": redirected, "unread": unread,
               "root_ports_redirected": at_roots}  # fmt: skip
    mode = _iommu_words(iommu)
    noted = (
        f"; ACS redirect on root port(s) {_first(sorted(at_roots))} (noted: traffic between root ports crosses the "
        "root complex anyway)"
        if at_roots
        else ""
    )
    if redirected:
        ports = sorted(redirected)  # sysfs's bus ids: lower-case, zero-padded
        details["setpci"] = [f"sudo setpci -s {b} ECAP_ACS+0x6.w=0000" for b in ports]
        details["kernel_parameter"] = "pci=disable_acs_redir=" + ";".join(ports)
        return warn(
            f"ACS redirect on {len(redirected)} of {len(judged)} PCIe switch ports where GPUs and NICs under one "
            f"switch meet ({_ports_words(ports, redirected)}); {mode}{noted}",
            ACS_FIX.format(first=ports[0], count=len(ports)),
            details["setpci"][0],
            **details,
        )
    if not judged:
        return ok(
            "no GPU shares a PCIe switch with another GPU or a NIC: their P2P crosses the root complex whatever "
            f"ACS says; {mode}{noted}",
            **details,
        )
    if unread:
        return skip(
            f"ACS state not available without root (extended config space of {len(unread)} switch ports); run "
            f"`{ACS_COMMAND}` (SrcValid+ ReqRedir+ CmpltRedir+ means redirected); {mode}",
            command=ACS_COMMAND,
            **details,
        )
    return ok(
        f"no ACS redirect on the {len(judged)} PCIe switch ports where GPUs and NICs under one switch meet; "
        f"{mode}{noted}",
        **details,
    )


def switch_ports(paths: dict[str, list[str]], gpus: list[str]) -> list[str]:
    """The switch ports that P2P between two devices under one PCIe switch crosses, for every pair with a GPU
    in it (GPU<->GPU, GPU<->NIC). ``paths`` gives each device's bridges, root port first. Two devices share a
    switch where their paths share a bridge below the root port (the switch's upstream port); their traffic
    turns there, and enters it through the bridges below that shared part: the downstream port above each
    device (with a cascade of switches, the lower switch's ports on the way too). That is where ACS P2P Request
    Redirect and Completion Redirect apply (PCIe Base Specification, 6.12 "Access Control Services": a
    downstream port with P2P Request Redirect set forwards peer requests upstream, to the root complex, instead
    of to the peer), and where NVIDIA's NCCL troubleshooting guide ("PCI Access Control Services") says ACS
    breaks or slows GPU Direct P2P. Devices under different root ports share only the root complex: their
    traffic goes through it whatever ACS says."""
    judged: dict[str, None] = {}
    devices = list(paths)
    for i, a in enumerate(devices):
        for b in devices[i + 1 :]:
            if a not in gpus and b not in gpus:
                continue
            pa, pb = paths[a], paths[b]
            shared = 0
            while shared < min(len(pa), len(pb)) and pa[shared] == pb[shared]:
                shared += 1
            if shared >= 2:  # a bridge below the root port in common: one switch
                judged.update(dict.fromkeys([*pa[shared:], *pb[shared:]]))
    return list(judged)


def _redirect(space: bytes | None) -> str | None:
    """The ACS control in ``lspci``'s words where it redirects P2P, else None (no ACS, or not readable)."""
    control = pci.acs_control(space) if space and len(space) > pci.EXTENDED else None
    return pci.acs_words(control) if control is not None and control & REDIRECT else None


def _first(ports: list[str], count: int = NAMED_PORTS) -> str:
    """The first ``count`` ports, then how many more."""
    rest = len(ports) - count
    return ", ".join(ports[:count]) + (f" and {rest} more" if rest > 0 else "")


def _ports_words(ports: list[str], words: dict[str, str]) -> str:
    """The redirecting ports, short: per set of ACS bits, the first port with its bits, the next ones by bus id up
    to :data:`NAMED_PORTS` in all, then how many more (16 ports' full bits made one unreadable line)."""
    groups: dict[str, list[str]] = {}
    for port in ports:
        groups.setdefault(words[port], []).append(port)
    return "; ".join(
        f"{group[0]}: {bits}" + (f"; the same on {_first(group[1:], NAMED_PORTS - 1)}" if group[1:] else "")
        for bits, group in groups.items()
    )


def _iommu_words(iommu: dict[str, object]) -> str:
    settings = " ".join(iommu["cmdline"]) or "none on the kernel command line"  # type: ignore[arg-type]
    state = "passthrough" if iommu["passthrough"] else "on" if iommu["active"] else "off"
    return f"IOMMU {state} ({settings})"
