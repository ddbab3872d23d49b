"""What the kernel log says about the node's GPUs, NVSwitches and PCIe links (the ``kernel_log`` probe).

Why a doctor reads it: the costliest failures leave their first trace there, before any counter NVML shows moves
and after the job that hit them is gone. A GPU that fell off the bus leaves Xid 79; an HBM fault Xid 48/63/64/94/95;
NVSwitch trouble SXids; PCIe AER "corrected error" lines come before a link drops. Each event is mapped from its
PCI address to the GPU (index, UUID, bus id) through NVML, judged against NVIDIA's catalogue (``doctor/xids.py``)
and given the catalogue's action as its fix. Summaries name the Xid and the GPU, never a time or a count, so that
the fleet reads the same fault on several nodes as one line; times and counts are in the details. envcheck only
reads: every reset or reboot in a fix is advice to the node's administrator.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from envcheck.core import machine
from envcheck.core.model import Fix, Status, Verdict, available, fail, ok, warn
from envcheck.core.probing import Context
from envcheck.doctor.areas import check
from envcheck.doctor.reading import nvml_state
from envcheck.doctor.xids import INSPECT, REBOOT, REBOOTS_BEFORE_INSPECTION, RESET_GPU, RESTART_APP, SXIDS, XIDS
from envcheck.probes import kernel as _kernel_probe  # noqa: F401 - registers the probe
from envcheck.probes.kernel import KernelEvent, KernelLogInfo, pci_key

# -- fixes ---------------------------------------------------------------------------------------------------

UNREADABLE_FIX = (
    "Let this user read the kernel log: add it to the systemd-journal group (or adm), which may read the journal "
    "(`sudo usermod -aG systemd-journal $USER`, then log in again), or let every user read the kernel's ring buffer "
    "with `sudo sysctl kernel.dmesg_restrict=0` (kernel.dmesg_restrict = 0 in /etc/sysctl.d/ keeps it). In a "
    "container, the host's log is the host's: run envcheck there, or save it (`journalctl -k -o short-iso > "
    "kern.log`) and read it with ENVCHECK_KERNEL_LOG=kern.log."
)
NO_LOG_FIX = (
    "Neither a journal nor the kernel's ring buffer is there to read (a container without the host's journal, or "
    "no journalctl and dmesg). Save the host's kernel log (`journalctl -k -o short-iso > kern.log`, or `dmesg -T`) "
    "and read it with ENVCHECK_KERNEL_LOG=kern.log."
)
ACTION_FIXES = {
    RESTART_APP: (
        "The GPU recovered: restart the job. An Xid that recurs on the same GPU whatever job runs is the GPU's: "
        "drain the node and run `dcgmi diag -r 3` on it."
    ),
    RESET_GPU: (
        "Drain the node (no new job on it), stop the processes on the GPU, then have an administrator reset it "
        "(`sudo nvidia-smi -r -i <index>`) or reboot the node; envcheck itself never resets a GPU. If the Xid comes "
        "back, the GPU needs hardware inspection."
    ),
    REBOOT: (
        "Drain the node and reboot it: the GPU cannot be used again before that. If the same Xid comes back after "
        "reboots, the GPU needs hardware inspection (power, seating, riser, the card)."
    ),
    INSPECT: (
        f"The same Xid came back after {REBOOTS_BEFORE_INSPECTION} or more reboots: rebooting does not clear it "
        "(the rule leptonai/gpud applies). Drain the node, collect `sudo nvidia-bug-report.sh` and have the GPU "
        "inspected by the vendor (reseat, power, riser, RMA)."
    ),
}
UNKNOWN_XID_FIX = (
    "envcheck's catalogue does not list this Xid: look it up in NVIDIA's Xid catalogue "
    "(https://docs.nvidia.com/deploy/xid-errors/) for its action; one that recurs on the same GPU means draining it."
)
HISTORY_FIX = (
    "It happened in an earlier boot and not in this one: the reboot cleared it. Watch for it; if it comes back, "
    "follow the action its Xid's catalogue entry gives."
)
AER_HISTORY_FIX = (
    "Uncorrected PCIe errors in an earlier boot and none in this one: the reboot brought the link back. Watch for "
    "them (`sudo lspci -vvv` shows the AER status); if they come back, drain the node and reseat the card and check "
    "its riser, cable and slot."
)
AER_CORRECTED_FIX = (
    "Corrected PCIe errors are a link that retries (a marginal riser, cable, slot or seating): they cost bandwidth "
    "and often come before the device drops off the bus (Xid 79). Watch whether they keep coming (`sudo lspci -vvv` "
    "shows the AER status); drain the node and reseat the card or its riser when they do."
)
AER_UNCORRECTED_FIX = (
    "Uncorrected PCIe errors lose data on the link, and a fatal one takes the device off the bus. Drain the node; "
    "reseat the card and check its riser, cable and slot; if it recurs, move the card or ask the vendor."
)
API_MISMATCH_FIX = (
    "The NVIDIA kernel module loaded is another version than the driver's libraries (the driver was upgraded "
    "without reloading the module): CUDA and NVML refuse to start. Reboot the node, or unload and reload the "
    "modules when no process uses them (`sudo rmmod nvidia_uvm nvidia_drm nvidia_modeset nvidia`, then "
    "`sudo nvidia-modprobe`)."
)
SEGFAULT_FIX = (
    "A process crashed inside NCCL or the CUDA libraries. Read the job's own log for the first error; a crash "
    "inside the driver's libraries after an upgrade is a library/driver mismatch (see driver.nvml); inside NCCL, "
    "rerun with NCCL_DEBUG=INFO and try the NCCL version torch ships."
)
PEERMEM_FIX = (
    "nvidia-peermem could not find the GPU memory a NIC registration pointed at (an RDMA buffer freed while "
    "registered): collectives over GPUDirect RDMA may hang or fail. Update the GPU driver (and with it "
    "nvidia-peermem), or use DMA-BUF instead of peermem (the open kernel module, a recent kernel and NCCL)."
)
OOM_FIX = (
    "The kernel's OOM killer ended a training process: the host ran out of RAM (or the job's cgroup hit its limit). "
    "Fewer DataLoader workers, smaller prefetch and pinned-memory buffers, or a higher memory limit for the job."
)

#: Drivers whose AER lines are a NIC's (InfiniBand/RoCE, EFA, and the usual 100G+ Ethernet NICs).
NIC_DRIVERS = ("mlx5_core", "mlx4_core", "bnxt_en", "efa", "irdma", "ice", "i40e")
#: Names the kernel gives a training process (its ``comm``, cut to 15 characters).
TRAINING_PROCESSES = ("python", "torchrun", "pt_main_thread", "pt_data_worker", "deepspeed", "accelerate")

Problem = tuple[str, str, str, str | None]  # severity, words, fix, command


# -- shared ---------------------------------------------------------------------------------------------------


def kernel_log(ctx: Context) -> KernelLogInfo | Verdict:
    """The probe's log, or the skip that says why it could not be read and how to allow it (never ok: an unread
    log says nothing about the GPUs)."""
    info: KernelLogInfo = ctx.probe("kernel_log")
    if info.readable and info.lines == 0 and not info.resumed:
        # A container's empty dmesg, an empty saved file: read, but it holds nothing to judge by.
        return Verdict(Status.SKIP, f"the kernel log ({info.source}) holds no message to judge by", None,
                       log_details(info))  # fmt: skip
    if info.readable:
        return info
    why = "; ".join(info.tried) or "no way to read it"
    fix = Fix(UNREADABLE_FIX, "sudo usermod -aG systemd-journal $USER") if info.refused else Fix(NO_LOG_FIX)
    return Verdict(Status.SKIP, f"kernel log not readable ({why})", fix, {"tried": info.tried})


def log_details(info: KernelLogInfo) -> dict[str, Any]:
    details = {"source": info.source, "boots": info.boots, "lines": info.lines, "cut": info.cut}
    if info.boots_read:
        details.update(boots_read=info.boots_read, ran_out=info.ran_out)
    if info.since is not None:
        details.update(read=info.since, state=info.state, earlier_boots=info.history_boots)
    elif info.history_boots:
        # the full doctor over a log of this boot alone, with the healthcheck's record of the boots before
        details.update(earlier_boots=info.history_boots, earlier_boots_from="the healthcheck's state file")
    return details


def read_words(info: KernelLogInfo) -> str:
    """What a verdict adds about a partial read: the journal's boots read when its deadline ended the read; the
    healthcheck's read cut short, or of the whole boot because no state could be kept."""
    words = []
    if info.ran_out and info.since is None:
        words.append(f"the journal's read ran out of time: boots {', '.join(map(str, info.boots_read))} read")
    if info.ran_out and info.since is not None:
        words.append(f"read {info.since}")
    if info.state and info.state.startswith("no state could be written"):
        words.append(info.state.split(": ", 1)[0] + ": read this boot's whole log")
    return f" ({'; '.join(words)})" if words else ""


class Gpus:
    """The GPUs NVML enumerates, by PCI address (:func:`envcheck.probes.kernel.pci_key`); a GPU the log names that
    NVML does not (a GPU that fell off the bus, a log from another node) is named by its address, with the UUID
    the driver logged for it."""

    def __init__(self, ctx: Context, info: KernelLogInfo) -> None:
        state = nvml_state(ctx, consult=True)
        self.by_key = {pci_key(g.pci_bus_id): g for g in (state.gpus if state else []) if available(g.pci_bus_id)}
        self.uuids = info.gpu_uuids
        self.theirs, self.container = _theirs(ctx, info, state)

    def ours(self, key: str) -> bool:
        return not self.theirs(key)

    def not_ours_words(self, key: str) -> str:
        return f"GPU {key} is not one of this {'container' if self.container else 'environment'}'s GPUs"

    def words(self, key: str) -> str:
        gpu = self.by_key.get(key)
        return f"GPU {gpu.index}" if gpu is not None else f"GPU {key}"

    def index(self, key: str) -> int | None:
        gpu = self.by_key.get(key)
        return gpu.index if gpu is not None else None

    def details(self, key: str) -> dict[str, Any]:
        gpu = self.by_key.get(key)
        if gpu is None:
            return {"index": None, "uuid": self.uuids.get(key), "bus_id": key}
        uuid = gpu.uuid if available(gpu.uuid) else self.uuids.get(key)
        return {"index": gpu.index, "uuid": uuid, "bus_id": gpu.pci_bus_id}


def _theirs(ctx: Context, info: KernelLogInfo, state: Any) -> tuple[Callable[[str], bool], str | None]:
    """Which PCI addresses of this machine's kernel log are another environment's GPUs, and the container we run
    in. The rule is kernel.xid's docstring's; the words for the container come from its markers."""
    from envcheck.core.machine import SYSFS_ENV, devfs, listdir
    from envcheck.probes import pci
    from envcheck.probes.host import read_container

    container = read_container(ctx.env).kind
    if info.source.startswith(machine.KERNEL_LOG_ENV) or state is None or not state.gpus:
        return (lambda _key: False), container  # another node's saved log, or no NVML to tell ours by
    nodes = [n for n in listdir(devfs(ctx.env)) if re.fullmatch(r"nvidia\d+", n)]
    visible = ctx.env.get("NVIDIA_VISIBLE_DEVICES", "")
    listed = [v for v in visible.split(",") if v.strip()] if re.fullmatch(r"[\w,-]+", visible) else []
    if visible in ("all", "void", "none"):
        listed = []
    given = max(len(nodes), len(listed))
    if given > len(state.gpus):
        return (lambda _key: False), container  # a GPU we were given is missing from NVML: any could be it
    known = {pci_key(g.pci_bus_id) for g in state.gpus if available(g.pci_bus_id)}
    own_bus = bool(ctx.env.get(SYSFS_ENV)) or container is None
    bus = ctx.probe("pci") if own_bus else None
    drivers = pci.gpu_drivers(bus, ctx.env) if isinstance(bus, pci.PciBus) else {}
    on_bus = {pci_key(a) for a, d in drivers.items() if d in (None, "nvidia")}
    return (lambda key: key not in known and key not in on_bus), container


def group(events: Iterable[KernelEvent], key: Callable[[KernelEvent], Any]) -> dict[Any, list[KernelEvent]]:
    groups: dict[Any, list[KernelEvent]] = defaultdict(list)
    for event in events:
        groups[key(event)].append(event)
    return dict(groups)


def seen(events: list[KernelEvent]) -> dict[str, Any]:
    """How often, when last, and in which boots (0 this one) a group of events happened."""
    return {"count": len(events), "last": events[-1].time, "boots": sorted({e.boot for e in events})}


def earlier_boots(info: KernelLogInfo) -> dict[tuple[str | None, int | None], list[int]]:
    """(device, Xid or SXid) -> the earlier boots the healthcheck's state file saw it in (a GPU off the bus as Xid
    79, as in this boot's log): the healthcheck reads this boot alone, and judges a recurring Xid by these as the
    full doctor does by the journal's earlier boots."""
    boots: dict[tuple[str | None, int | None], set[int]] = defaultdict(set)
    for e in info.history:
        boots[(e.device, 79 if e.kind == "off_bus" else e.code)].add(e.boot)
    return {key: sorted(found) for key, found in boots.items()}


def escalated(action: str | None, boots: list[int]) -> str | None:
    """gpud's rule: a hardware Xid whose action is a reboot (or a GPU reset) that happened again at least
    :data:`REBOOTS_BEFORE_INSPECTION` reboots after it was first seen needs hardware inspection."""
    if action in (REBOOT, RESET_GPU) and boots and max(boots) - min(boots) >= REBOOTS_BEFORE_INSPECTION:
        return INSPECT
    return action


def joined(problems: list[Problem], details: dict[str, Any]) -> Verdict:
    """One verdict from several findings: the worst severity, the findings in order of severity (each said once,
    with the GPUs it concerns together), each distinct fix once; the command of the first."""
    order = {"fail": 0, "warn": 1}
    problems = sorted(problems, key=lambda p: order[p[0]])
    words = "; ".join(dict.fromkeys(p[1] for p in problems))
    fixes = " ".join(dict.fromkeys(p[2] for p in problems))
    command = next((p[3] for p in problems if p[3]), None)
    make = fail if problems[0][0] == "fail" else warn
    return make(words, fixes, command, **details)


def together(items: list[tuple[tuple[Any, ...], str]]) -> dict[tuple[Any, ...], list[str]]:
    """Items that share a key, their names listed together (``Xid 48 ... on GPU 2, GPU 5``)."""
    out: dict[tuple[Any, ...], list[str]] = defaultdict(list)
    for key, name in items:
        out[key].append(name)
    return dict(out)


# -- kernel.xid -----------------------------------------------------------------------------------------------


@check("kernel.xid", "NVIDIA Xid and NVSwitch SXid errors")
def xid(ctx: Context) -> Verdict:
    """The kernel log holds no hardware Xid (or NVSwitch SXid, or a GPU that fell off the bus without one) in this
    boot, each judged against NVIDIA's catalogue with its action as the fix (reset the GPU, reboot, hardware
    inspection once the same Xid survives two reboots); Xids that blame the application (13, 31, 43, 45) are
    information, and so are a GPU's Xids before the driver initialised it again (a reset), and another
    environment's GPUs'.

    Each row of the details (``xids``, ``sxids``) says with ``status`` whether the verdict counts it (``fail``,
    ``warn``) or it is information (``info``): explain shows a signature's cause only by the Xids that decide it.

    Whose GPU an event is on. In a container (or a Slurm job) the kernel log is the host's, and so holds the Xids
    of GPUs given to others; they must not fail this environment. An event's GPU is this environment's when NVML
    enumerates it; one NVML does not enumerate is still judged (it may be ours, lost) when the PCI tree shows it
    as an NVIDIA GPU for the nvidia driver and that tree is ours (bare metal, or a captured tree: in a container
    sysfs shows the host's whole bus), or when NVML enumerates fewer GPUs than the environment was given (its
    ``/dev/nvidiaN`` nodes, or the GPUs NVIDIA_VISIBLE_DEVICES lists: then any unknown address could be the one
    that fell off the bus). Otherwise it is information, "not one of this container's GPUs". Without NVML, and in
    a saved log (another node's), every event is judged as before: nothing tells ours from theirs. Without an
    NVIDIA driver library at all (and no saved log) the check skips: no GPU here for an Xid to be on."""
    info = kernel_log(ctx)
    if isinstance(info, Verdict):
        return info
    nvml = nvml_state(ctx, started=False, consult=True)
    if nvml is not None and nvml.status == "no_library" and not info.source.startswith(machine.KERNEL_LOG_ENV):
        return Verdict(Status.SKIP, "no NVIDIA driver library here: no GPU for an Xid to be on; see driver.nvml",
                       None, log_details(info))  # fmt: skip
    gpus = Gpus(ctx, info)
    events = info.events
    history = reset_history(events)
    xids = [e for e in events if e.kind == "xid"]
    logged_79 = {(e.device, e.boot) for e in xids if e.code == 79}
    # A GPU that fell off the bus is Xid 79 whether or not the driver wrote the Xid line (some drivers do not).
    off_bus = []
    for e in events:
        if e.kind == "off_bus" and (e.device, e.boot) not in logged_79:
            off_bus.append(replace(e, kind="xid", code=79, detail="no Xid line"))
            if id(e) in history:
                history[id(off_bus[-1])] = history[id(e)]
    rows: list[dict[str, Any]] = []
    found: list[tuple[tuple[Any, ...], str]] = []
    cleared: list[str] = []
    theirs: dict[str, list[str]] = defaultdict(list)
    kept = earlier_boots(info)
    for (device, code), group_ in sorted(group(xids + off_bus, lambda e: (e.device, e.code)).items()):
        row = XIDS.get(code)
        current = [e for e in group_ if id(e) not in history]
        seen_ = seen(group_)
        kept_boots = kept.get((device, code), [])
        action = escalated(row.action if row else None, kept_boots + seen_["boots"])
        name = row.name if row else "not in envcheck's catalogue"
        if all(e.detail == "no Xid line" for e in group_):
            name = "GPU has fallen off the bus, no Xid line logged"
        if row is None:
            severity = "warn"
        elif row.blames_app or row.action is None:
            severity = "info"
        elif action == RESTART_APP:
            severity = "warn"
        else:
            severity = "fail"
        reset_at = None
        if severity != "info" and not any(e.boot == 0 for e in current) and any(e.boot == 0 for e in group_):
            reset_at = history[id(next(e for e in reversed(group_) if e.boot == 0))]
            cleared.append(f"Xid {code} on {gpus.words(device)} before its reset at {reset_at or 'a later time'}")
            severity = "info"
        if severity != "info" and 0 not in seen_["boots"]:
            severity, action = "warn", "history"
        rows.append({
            "xid": code, "name": name, "gpu": gpus.details(device), **seen_, "action": action,
            "blames_app": bool(row and row.blames_app), "meaning": row.meaning if row else None,
            "source": row.source if row else None, "line": group_[-1].line, "reset_at": reset_at,
            "this_environment": gpus.ours(device or ""), "kept_boots": kept_boots,
            "status": severity if reset_at is None and gpus.ours(device or "") else "info",
        })  # fmt: skip
        if not gpus.ours(device or ""):
            theirs[gpus.not_ours_words(device or "")].append(f"Xid {code}")
            continue
        if reset_at is None:
            found.append(((severity, code, name, action), gpus.words(device)))
    sxids = [e for e in events if e.kind == "sxid"]
    switch_rows: list[dict[str, Any]] = []
    for (device, code), group_ in sorted(group(sxids, lambda e: (e.device, e.code)).items()):
        row_s = SXIDS.get(code)
        seen_ = seen(group_)
        fatal = any(e.detail == "fatal" for e in group_)
        kept_boots = kept.get((device, code), [])
        action = escalated(row_s.action if row_s else (REBOOT if fatal else None), kept_boots + seen_["boots"])
        name = row_s.name if row_s else "not in envcheck's catalogue"
        severity = "fail" if fatal else ("warn" if action else "info")
        if severity != "info" and 0 not in seen_["boots"]:
            severity, action = "warn", "history"
        switch_rows.append({
            "sxid": code, "name": name, "nvswitch": device, **seen_, "fatal": fatal, "action": action,
            "meaning": row_s.meaning if row_s else None, "source": row_s.source if row_s else None,
            "line": group_[-1].line, "kept_boots": kept_boots, "status": severity,
        })  # fmt: skip
        found.append(((severity, -code, name, action), f"NVSwitch {device}"))
    details = {**log_details(info), "xids": rows, "sxids": switch_rows}
    problems: list[Problem] = []
    information: list[str] = []
    for (severity, code, name, action), where in together(found).items():
        what = f"SXid {-code} ({name})" if code < 0 else f"Xid {code} ({name})"
        words = f"{what} on {', '.join(where)}"
        if severity == "info":
            information.append(words)
            continue
        if action == "history":
            problems.append(("warn", f"{words} in an earlier boot", HISTORY_FIX, None))
            continue
        fix = ACTION_FIXES.get(action or "", UNKNOWN_XID_FIX)
        problems.append((severity, f"{words}: {action or 'look it up'}", fix, _command(action, where, gpus)))
    information += cleared
    information += [f"{words} ({', '.join(dict.fromkeys(codes))})" for words, codes in theirs.items()]
    partial = read_words(info)
    if problems:
        verdict = joined(problems, details)
        if information:
            verdict = replace(verdict, summary=f"{verdict.summary}; information: {'; '.join(information)}")
        return replace(verdict, summary=verdict.summary + partial) if partial else verdict
    if information:
        return ok("no Xid that needs action; information: " + "; ".join(information) + partial, **details)
    return ok("no Xid or SXid in the kernel log" + partial, **details)


def reset_history(events: list[KernelEvent]) -> dict[int, str | None]:
    """This boot's GPU events that came before the driver initialised their GPU again (``id(event)`` -> the time of
    that initialisation): history, not a current failure.

    This rests on the driver printing ``NVRM: GPU at PCI:<bus id>: GPU-<uuid>`` once for each time it set the GPU
    up: the open kernel module prints it from ``_krcLogUuidOnce`` (src/nvidia/src/kernel/gpu/rc/kernel_rc.c in
    NVIDIA/open-gpu-kernel-modules), guarded by a flag of the GPU's RC object, which a reset or re-initialisation of
    the GPU creates anew; captured logs show it once per GPU before its first Xid and again only after a reset. So
    a second such line for the same bus id, after an event, means the GPU was set up again since. An event whose
    action is a reboot (Xid 79, a GPU off the bus) is cleared only by a line that really follows it: later in the
    log and at a later time, never the line the driver prints with the same event (the same second)."""
    out: dict[int, str | None] = {}
    inits: dict[str | None, list[tuple[int, KernelEvent]]] = defaultdict(list)
    for n, event in enumerate(events):
        if event.kind == "gpu_init" and event.boot == 0:
            inits[event.device].append((n, event))
    for n, event in enumerate(events):
        if event.boot != 0 or event.kind not in ("xid", "off_bus") or event.device not in inits:
            continue
        reboot = event.kind == "off_bus" or (XIDS.get(event.code or 0) and XIDS[event.code or 0].action == REBOOT)
        for m, init in inits[event.device]:
            if m <= n:
                continue
            later = init.at is not None and event.at is not None and init.at > event.at
            if later or (not reboot and (init.at is None or event.at is None or init.at >= event.at)):
                out[id(event)] = init.time
                break
    return out


def _command(action: str | None, where: list[str], gpus: Gpus) -> str | None:
    """The administrator's command for an action: the reset of the first GPU named, by its index."""
    if action == RESET_GPU:
        index = next((w.removeprefix("GPU ") for w in where if w.removeprefix("GPU ").isdigit()), "<index>")
        return f"sudo nvidia-smi -r -i {index}"
    if action == INSPECT:
        return "sudo nvidia-bug-report.sh"
    if action == REBOOT:
        return "sudo reboot"
    return None


# -- kernel.pcie_aer ------------------------------------------------------------------------------------------


def nic_addresses(ctx: Context) -> dict[str, str]:
    """PCI address -> NIC name, for the RDMA devices (``/sys/class/infiniband``) and network interfaces backed by
    a PCI device (``/sys/class/net/*/device``)."""
    out: dict[str, str] = {}
    for kind in ("infiniband", "net"):
        base = machine.sysfs(ctx.env, "class", kind)
        for name in machine.listdir(base):
            try:
                target = Path(base, name, "device").resolve(strict=True).name
            except OSError:
                continue
            if target.count(":") == 2:
                out.setdefault(pci_key(target), name)
    return out


@check("kernel.pcie_aer", "PCIe AER errors on GPUs and NICs")
def pcie_aer(ctx: Context) -> Verdict:
    """No PCIe AER errors on the GPUs' and NICs' links in the kernel log: corrected errors (a link that retries,
    often before it drops) in this boot warn, uncorrected or fatal ones fail; with counts and the last time seen.

    A GPU's other PCI functions (the audio function ``.1`` of a workstation or consumer card) share its link: their
    lines count for the GPU, with the function named, never as a second GPU. Earlier boots: corrected errors are
    information (a reboot retrains the link, and a link that still retries shows it again in this boot; warning on
    them would warn at every run for as long as the journal keeps that boot); uncorrected or fatal ones still warn,
    as any hardware fault of an earlier boot does here: the link lost data or dropped the device, which a reboot
    hides but does not mend. Another environment's GPUs' lines are information (see kernel.xid)."""
    info = kernel_log(ctx)
    if isinstance(info, Verdict):
        return info
    gpus = Gpus(ctx, info)
    nics = nic_addresses(ctx)
    aer = [e for e in info.events if e.kind == "aer"]
    own = {pci_key(e.device or "") for e in aer}
    # A root port's "error received: <device>" counts only for a device that wrote no AER line of its own.
    aer += [e for e in info.events if e.kind == "aer_received" and pci_key(e.device or "") not in own]
    problems: list[Problem] = []
    information: list[str] = []
    rows: dict[str, dict[str, Any]] = {}
    others: dict[str, int] = {}
    for key, events in sorted(group(aer, lambda e: pci_key(e.device or "")).items()):
        drivers = {e.driver for e in events}
        functions = sorted({(e.device or "").rpartition(".")[2] for e in events if "." in (e.device or "")})
        if key in gpus.by_key or key in gpus.uuids or "nvidia" in drivers:
            what, kind = f"{gpus.words(key)} ({key})" if key in gpus.by_key else f"GPU {key}", "gpu"
            if functions and functions != ["0"]:
                what += f", function {', '.join(functions)}"
        elif key in nics or drivers & set(NIC_DRIVERS):
            what, kind = f"NIC {nics[key]} ({key})" if key in nics else f"NIC {key}", "nic"
        else:
            others[key] = len(events)
            continue
        counts = {s: sum(e.detail == s for e in events) for s in ("corrected", "non_fatal", "fatal")}
        rows[key] = {"device": kind, "name": what, **counts, **seen(events), "functions": functions}
        if kind == "gpu" and not gpus.ours(key):
            information.append(f"{gpus.not_ours_words(key)} (PCIe AER)")
            continue
        now = [e for e in events if e.boot == 0]
        worst = "fatal" if counts["fatal"] else "non_fatal" if counts["non_fatal"] else "corrected"
        words = {"fatal": "uncorrected (fatal)", "non_fatal": "uncorrected", "corrected": "corrected"}[worst]
        command = f"sudo lspci -vvv -s {key}"
        if not now and worst == "corrected":
            information.append(f"{what}: corrected PCIe errors (AER) in an earlier boot")
        elif not now:
            problems.append(("warn", f"{what}: {words} PCIe errors (AER) in an earlier boot", AER_HISTORY_FIX, command))
        elif any(e.detail != "corrected" for e in now):
            problems.append(("fail", f"{what}: {words} PCIe errors (AER)", AER_UNCORRECTED_FIX, command))
        else:
            problems.append(("warn", f"{what}: corrected PCIe errors (AER)", AER_CORRECTED_FIX, command))
    details = {**log_details(info), "devices": rows, "other_devices": others}
    tail = f"; information: {'; '.join(information)}" if information else ""
    if problems:
        verdict = joined(problems, details)
        return replace(verdict, summary=verdict.summary + tail) if tail else verdict
    return ok("no PCIe AER errors on the GPUs or NICs in the kernel log" + tail, **details)


# -- kernel.events --------------------------------------------------------------------------------------------


def training_process(name: str | None) -> bool:
    return bool(name) and any(name.startswith(p) for p in TRAINING_PROCESSES)  # type: ignore[union-attr]


@check("kernel.events", "GPU jobs' crashes in the kernel log")
def events(ctx: Context) -> Verdict:
    """This boot's kernel log shows no NVIDIA driver/library mismatch (``NVRM: API mismatch``), no segfault inside
    NCCL or the CUDA libraries, no nvidia-peermem "invalid context", and no training process killed by the OOM
    killer."""
    info = kernel_log(ctx)
    if isinstance(info, Verdict):
        return info
    wanted = [
        e
        for e in info.events
        if e.kind in ("api_mismatch", "segfault", "peermem") or (e.kind == "oom_kill" and training_process(e.detail))
    ]
    now = [e for e in wanted if e.boot == 0]
    rows = {
        kind: {**seen(group_), "line": group_[-1].line}
        for kind, group_ in group(wanted, lambda e: (e.kind, e.boot == 0)).items()
    }
    details = {
        **log_details(info),
        "events": {f"{kind}{'' if current else ' (earlier boots)'}": row for (kind, current), row in rows.items()},
    }
    problems: list[Problem] = []
    by_kind = group(now, lambda e: e.kind)
    if "api_mismatch" in by_kind:
        words = "NVRM: API mismatch (the NVIDIA kernel module and the driver's libraries differ)"
        problems.append(("fail", words, API_MISMATCH_FIX, "cat /proc/driver/nvidia/version"))
    if "segfault" in by_kind:
        libraries = sorted({(e.detail or "").split(".so")[0] for e in by_kind["segfault"]})
        problems.append(("warn", f"segfault in {', '.join(libraries)}", SEGFAULT_FIX, None))
    if "peermem" in by_kind:
        problems.append(("warn", 'nvidia-peermem: "invalid context"', PEERMEM_FIX, "lsmod | grep peermem"))
    if "oom_kill" in by_kind:
        names = sorted({e.detail or "" for e in by_kind["oom_kill"]})
        words = f"OOM killer killed a training process ({', '.join(names)})"
        problems.append(("warn", words, OOM_FIX, "free -g"))
    if problems:
        return joined(problems, details)
    earlier = " (some in earlier boots)" if wanted else ""
    return ok(f"no driver mismatch, GPU-library segfault, peermem error or OOM kill in this boot{earlier}", **details)
