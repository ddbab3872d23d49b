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
#: NVIDIA's recommendation (NCCL User Guide, Troubleshooting, "PCI Access Control Services (ACS)",
#: docs.nvidia.com/deeplearning/nccl/user-guide/docs/troubleshooting.html): on bare metal, disable ACS in the
#: BIOS, or clear each bridge's ACS control with setpci (until the next boot). The kernel sets ACS itself on
#: bridges when an IOMMU is on (to isolate devices), so an IOMMU in translation mode brings it back.
ACS_FIX = (
    'Disable ACS in the BIOS (NVIDIA\'s NCCL troubleshooting guide, "PCI Access Control Services"), or clear '
    "it on each bridge above the GPUs until the next boot with `sudo setpci -s BDF ECAP_ACS+0x6.w=0000`; with "
    "the IOMMU on, the kernel enables ACS itself: boot with `iommu=pt` (or the IOMMU off) unless the node needs "
    "device isolation. Until then NCCL's P2P goes through the CPU (or hangs; NCCL_P2P_DISABLE=1 hides it)."
)


@check("pcie.acs", "PCIe ACS redirect above the GPUs")
def check_acs(ctx: Context) -> Verdict:
    """ACS redirect on a PCIe bridge above the GPUs sends their peer-to-peer traffic through the CPU's root
    complex: all_reduce is slow or hangs, and `NCCL_P2P_DISABLE=1` seems to fix it. Read from each bridge's
    extended config space (root only: otherwise the exact command to run), with the IOMMU mode; skipped under
    a hypervisor, where ACS is expected (it isolates passed-through devices)."""
    env = ctx.env
    gpus = pci.nvidia_gpus(env)
    if not gpus:
        raise SkipCheck("no NVIDIA GPU on the PCI bus")
    vm = pci.hypervisor(env)
    if vm is not None:
        return skip(f"under a hypervisor ({vm}): ACS is the host's to set, and expected there")
    iommu = pci.iommu(env)
    bridges = list(dict.fromkeys(b for gpu in gpus for b in pci.bridges_above(gpu, env)))
    if not bridges:
        raise SkipCheck("the GPUs sit directly on the root complex: no bridge above them")
    spaces = {b: pci.config(b, env) for b in bridges}
    unread = [b for b, space in spaces.items() if space is None or len(space) <= pci.EXTENDED]
    redirected = {}
    for bridge, space in spaces.items():
        control = pci.acs_control(space) if bridge not in unread and space else None
        if control is not None and control & REDIRECT:
            redirected[bridge] = pci.acs_words(control)
    details = {"bridges": bridges, "iommu": iommu, "redirected": redirected, "unread": unread}
    mode = _iommu_words(iommu)
    if redirected:
        named = "; ".join(f"{b}: {words}" for b, words in redirected.items())
        return warn(
            f"ACS redirect on {len(redirected)} of {len(bridges)} bridges above the GPUs ({named}); {mode}",
            ACS_FIX,
            ACS_COMMAND,
            **details,
        )
    if unread:
        return skip(
            f"ACS state not available without root (extended config space of {len(unread)} bridges); run "
            f"`{ACS_COMMAND}` (SrcValid+ ReqRedir+ CmpltRedir+ means redirected); {mode}",
            command=ACS_COMMAND,
            **details,
        )
    return ok(f"no ACS redirect on the {len(bridges)} bridges above the GPUs; {mode}", **details)


def _iommu_words(iommu: dict[str, object]) -> str:
    settings = " ".join(iommu["cmdline"]) or "none on the kernel command line"  # type: ignore[arg-type]
    state = "passthrough" if iommu["passthrough"] else "on" if iommu["active"] else "off"
    return f"IOMMU {state} ({settings})"
