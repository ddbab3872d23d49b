"""The GPU fabric of a multi-GPU node, judged from NVML (the ``fabric`` probe): NVLinks, the NVSwitch fabric
and its manager, peer-to-peer access, the PCIe topology between GPUs, and PCIe replays.

Why a doctor looks here: a node whose GPUs all pass ``gpu.*`` can still train at a fraction of its speed (one
NVLink down: NCCL's rings run at the pace of the slowest link) or not at all (the fabric manager not running
on an NVSwitch system: every CUDA program fails with "system not yet initialized"). Error counters are judged
as DCGM judges them, by their rate: from two readings a moment apart (see ``probes/nvml/fabric.py``), rising
faster than NVIDIA's limit is a fault happening now (fail); a steady count is history since the driver loaded,
often a burst while the links trained at boot, and is reported, not judged (a healthy node with a week of
uptime must not warn forever); PCIe replays averaging more than the limit since boot warn. Each finding names
the GPU (index and PCI bus id) and the link; nothing here changes GPU state or needs root.
"""

from __future__ import annotations

import re
from collections import Counter as Tally
from collections.abc import Callable, Iterable
from typing import Any

from envcheck.core.model import NA, SkipCheck, Verdict, available, fail, ok, skip, warn
from envcheck.core.probing import Context
from envcheck.core.units import runs
from envcheck.doctor.areas import check
from envcheck.doctor.checks.gpu import REFUSED_FIX, label, refused
from envcheck.doctor.reading import nvml_state
from envcheck.probes.nvml import fabric as _fabric_probe  # noqa: F401 - registers the probe
from envcheck.probes.nvml.fabric import P2P_LABELS, FabricInfo, GpuFabric, GpuPair
from envcheck.probes.nvml.session import NO_PERMISSION

#: Words for the NVLink error counters (nvml.h ``nvmlNvLinkErrorCounter_t``).
COUNTER_WORDS = {
    "replay": "replays",
    "recovery": "recoveries",
    "crc_flit": "CRC errors (flit)",
    "crc_data": "CRC errors (data)",
    "ecc_data": "ECC errors (data)",
}

#: Error rates NVIDIA counts as a fault (DCGM's ``dcgm_gpu_hardware_limits.h``): PCIe replays above 8 a minute
#: ("the maximum recommended by RM"), NVLink CRC errors at 100 a second and more ("CRC errors only matter at rates
#: of 100+ per second"); any other NVLink error counted while watched (``DCGM_LIMIT_MAX_LWLINK_ERROR`` 1).
PCIE_REPLAY_LIMIT_PER_MIN = 8
NVLINK_CRC_LIMIT_PER_S = 100.0
NVLINK_CRC_COUNTERS = ("crc_flit", "crc_data")
#: PCIe replays since the driver loaded are judged by their average rate only after this long up: within it, a
#: burst while the links trained at boot would read as a rate.
HISTORY_JUDGED_AFTER_S = 3600.0

#: Words for P2P statuses (nvml.h ``nvmlGpuP2PStatus_t``).
P2P_WORDS = {
    "chipset_not_supported": "chipset not supported",
    "gpu_not_supported": "GPU not supported",
    "ioh_topology_not_supported": "topology not supported",
    "disabled_by_regkey": "disabled by a driver registry key",
    "not_supported": "not supported",
    "unknown": "unknown",
}

# -- fixes ---------------------------------------------------------------------------------------------------

LINK_DOWN_FIX = (
    "A link that is down takes its share of this GPU's NVLink bandwidth away, and NCCL's collectives run at the "
    "pace of the slowest GPU. See the link state with `nvidia-smi nvlink -s` and look in `dmesg` for Xid 74 "
    "(NVLink error). Drain the node and reset the GPUs or reboot: that retrains the links. A link that stays "
    "down is a hardware fault (GPU seating, baseboard, NVSwitch tray): open a ticket with the vendor, attaching "
    "`sudo nvidia-bug-report.sh`."
)
RISING_FIX = (
    "Errors counting up now mean a marginal link: the link retries (less bandwidth) and may go down. Watch the "
    "counters with `nvidia-smi nvlink -e`; drain the node and have the link checked (`dcgmi diag -r 3` "
    "exercises NVLink; a link that keeps counting needs the vendor: reseat, baseboard, NVSwitch tray)."
)
BRIDGE_FIX = (
    "NVLink-bridged PCIe cards talk over their bridges; a card with fewer active links than its twins has a bridge "
    "missing, loose or faulty (or a link down): power off, check that every bridge is fitted and seated (H100 NVL "
    "pairs take three), and compare `nvidia-smi nvlink -s` on both cards."
)
SLOW_CRC_FIX = (
    "CRC errors are rising, but slower than the 100 a second at which NVIDIA's DCGM counts them as a fault: the "
    "link retries a little. Watch it with `nvidia-smi nvlink -e`; if the rate grows, have the link checked."
)
FABRIC_MANAGER_FIX = (
    "On an NVSwitch system (HGX/DGX) the nvidia-fabricmanager service must have set up the fabric before CUDA "
    'can start: until then every CUDA program fails with "system not yet initialized" (cudaErrorSystemNotReady, '
    "error 802). Check the service with `systemctl status nvidia-fabricmanager` (on the host, when envcheck runs "
    "in a container); start it and enable it at boot with `sudo systemctl enable --now nvidia-fabricmanager`. "
    "If it will not start, its log (`journalctl -u nvidia-fabricmanager`) usually says why: the fabricmanager "
    "package's version must match the driver's exactly{driver}, so install the matching one (or update both "
    "together)."
)
#: How long after boot the fabric manager may take to train the NVSwitch fabric before "in progress" means
#: it never will (it takes up to a minute or two; NVIDIA Fabric Manager User Guide, "GPU fabric state").
FABRIC_SETUP_S = 300.0
FABRIC_IN_PROGRESS_FIX = (
    "The fabric manager is still setting up the NVSwitch fabric (it takes up to a minute or two after boot); CUDA "
    'fails with "system not yet initialized" (error 802) until it finishes. Run the doctor again in a minute; '
    "if it stays in progress, read `journalctl -u nvidia-fabricmanager`."
)
FABRIC_FAILED_FIX = (
    "The fabric manager could not register these GPUs with the NVSwitch fabric, so CUDA cannot use them. Read "
    "`journalctl -u nvidia-fabricmanager`; a fabricmanager package that does not match the driver exactly{driver} "
    "is the usual cause; otherwise restart it (`sudo systemctl restart nvidia-fabricmanager`), and if that does "
    "not help, drain the node and reboot."
)
DEGRADED_FIX = (
    "The NVSwitch fabric reports degraded bandwidth for these GPUs (links or switch ports lost): multi-GPU work "
    "runs, slower. See `nvidia-smi nvlink -s` and `journalctl -u nvidia-fabricmanager`; drain and reboot, and "
    "call the vendor if it persists."
)
P2P_FIX = (
    "Without P2P, CUDA and NCCL copy between these GPUs through host memory: slower collectives, and code that "
    "assumes P2P fails. Between GPUs on one CPU socket, the usual causes are the IOMMU (boot with `iommu=pt`, or "
    "turn DMA remapping off where it is not needed) and PCIe ACS on the switches (turn ACS off in the BIOS, or "
    'with setpci at boot); in a VM, P2P needs the hypervisor\'s support. "Disabled by a driver registry key" is '
    "an NVreg_RegistryDwords option in /etc/modprobe.d: remove it. Compare with `nvidia-smi topo -p2p r`. If "
    "NCCL hangs or corrupts data between GPUs whose P2P is reported fine (ACS routing P2P through the CPU), "
    "`NCCL_P2P_DISABLE=1` is the workaround until ACS is off."
)
GEFORCE_P2P_FIX = (
    "NVIDIA's driver does not enable P2P between GeForce cards (RTX 4090, RTX 5090 and most others), whatever the "
    "IOMMU, ACS or BIOS settings: nothing on this machine turns it on. CUDA and NCCL copy through host memory "
    "instead, which works, more slowly; nothing needs setting (NCCL finds it alone). For P2P, use workstation "
    "or data-centre cards."
)
TOPOLOGY_FIX = (
    "Fewer NVLinks to some peers means less bandwidth between them, and NCCL's rings run at the pace of the "
    "slowest pair. fabric.nvlink names the link that is down; `nvidia-smi topo -m` shows the whole matrix."
)
PCIE_REPLAY_FIX = (
    "Replays are PCIe packets sent again after link errors: a marginal link (riser, cable, slot, seating) that "
    "costs bandwidth now and can drop the GPU off the bus (Xid 79). Drain the node, reseat the GPU and check its "
    "riser or cable; if it keeps counting, move the card to another slot or ask the vendor."
)
PCIE_REPLAY_WATCH_FIX = (
    "A few replays while envcheck watched half a second or so: too short a watch to tell a marginal link from a "
    "burst. Watch longer under load: `envcheck burn` reads the counter through its run and judges the rate."
)
PCIE_REPLAY_HISTORY_FIX = (
    "None was counted while envcheck watched, but the count since the driver loaded averages more than the 8 a "
    "minute NVIDIA recommends at most: the link replays at times (under load, or in bursts). Run `envcheck burn` "
    "and compare the count before and after; if it grows, reseat the GPU and check its riser or cable."
)


# -- shared ---------------------------------------------------------------------------------------------------


def fabric_info(ctx: Context) -> FabricInfo:
    """The fabric probe's data, or skip the calling check when NVML did not start (``driver.nvml`` says why)."""
    info: FabricInfo = ctx.probe("fabric")
    if not info.available:
        raise SkipCheck(f"NVML unavailable ({info.status.replace('_', ' ')}); see driver.nvml")
    return info


def answering(info: FabricInfo) -> list[GpuFabric]:
    """GPUs that answered (a lost or refused GPU is ``gpu.inventory``'s finding); skips when there are none."""
    gpus = [g for g in info.gpus if g.answers]
    if not gpus:
        raise SkipCheck("no GPUs: no fabric to check")
    return gpus


def several(info: FabricInfo) -> list[GpuFabric]:
    """At least two GPUs that answer: a single GPU has no pairs to judge."""
    gpus = answering(info)
    if len(gpus) < 2:
        raise SkipCheck("one GPU: no fabric to check")
    return gpus


def unordered(info: FabricInfo, gpus: list[GpuFabric]) -> list[GpuPair]:
    """Each pair once (a < b), between GPUs that answer."""
    indices = {g.index for g in gpus}
    return [p for p in info.pairs if p.a < p.b and p.a in indices and p.b in indices]


def span(indices: Iterable[int]) -> str:
    """GPU indices as a person writes them: "0-3", "0,2,5", "0-1,6"."""
    return ",".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs(indices))


#: A finding: (severity ``fail`` or ``warn``, its words, its fix, the GPU it is about or None).
Problem = tuple[str, str, str, GpuFabric | None]


def _judged(problems: list[Problem], details: dict[str, Any], *, command: Any) -> Verdict:
    """One verdict from the problems: the worst severity, failures first in the summary, each distinct fix once
    (in the order met); ``command`` is a string, or a function of the first problem's GPU giving one."""
    problems = sorted(problems, key=lambda p: p[0] != "fail")
    summary = "; ".join(words for _, words, _, _ in problems)
    fixes = " ".join(dict.fromkeys(fix for _, _, fix, _ in problems))
    factory = fail if problems[0][0] == "fail" else warn
    if callable(command):
        command = command(problems[0][3])
    return factory(summary, fixes, command, **details)


def _counted(
    counters: dict[str, Any], watched_s: float | None, over: Callable[[str, int, float], bool], under: str = ""
) -> tuple[str, str] | None:
    """(severity, words) for the counters (name -> :class:`~envcheck.probes.nvml.fabric.Counter`) that rose
    while watched, ``watched_s`` apart: ``fail`` where ``over(name, rise, watched_s)`` says the rise is a fault,
    else ``warn``, its words ending with ``under`` (why it is not judged a fault); None when none rose. A
    steady count is history, not a fault now: :func:`_history` reports it."""
    rising = [(name, c) for name, c in counters.items() if c.rising]
    if not rising:
        return None
    watched = watched_s or 0.0
    grew = ", ".join(f"{name} +{c.later - c.first} ({c.later} in all)" for name, c in rising)
    words = f"{grew} in {watched:.2g} s"
    if any(over(name, c.later - c.first, watched) for name, c in rising):
        return "fail", words
    return "warn", f"{words} ({under})"


def _nvlink_over(name: str, rise: int, watched_s: float) -> bool:
    """A replay, recovery or ECC error counted while watched is a fault (DCGM: one); CRC errors only from 100 a
    second, over at least a second's worth of watching (a single error in a few milliseconds is no rate)."""
    if name in {COUNTER_WORDS[n] for n in NVLINK_CRC_COUNTERS}:
        return rise >= NVLINK_CRC_LIMIT_PER_S * max(watched_s, 1.0)
    return True


def _pcie_over(name: str, rise: int, watched_s: float) -> bool:
    """More than 8 replays while watched is more than 8 a minute, whatever the watch (it is under a minute);
    fewer cannot tell a rate from a burst in so short a watch."""
    return rise > PCIE_REPLAY_LIMIT_PER_MIN


def _history(counts: Iterable[tuple[str, int | NA]]) -> str:
    """Counts since the driver loaded, in words ("2 recoveries, 5 replays"); empty when all are zero or unread."""
    return ", ".join(f"{value} {name}" for name, value in counts if available(value) and value > 0)


def _driver_words(ctx: Context) -> str:
    nvml = nvml_state(ctx, consult=True)
    version = nvml.driver_version if nvml is not None else None
    return f" (driver {version} here)" if version else ""


# -- checks ---------------------------------------------------------------------------------------------------


@check("fabric.nvlink", "NVLinks up, error counters not rising")
def nvlink(ctx: Context) -> Verdict:
    """Every NVLink is up and its error counters (replay, recovery, CRC, ECC) do not rise while watched; a link
    down or counting errors now fails, with the GPU, its bus id and the link number. Counts from before are
    history (reported, not judged); on bridged PCIe cards a link index without a bridge is not down."""
    info = fabric_info(ctx)
    gpus = answering(info)
    shut = [g for g in gpus if refused(g.nvlinks)]
    with_links = [g for g in gpus if available(g.nvlinks) and g.nvlinks]
    if not with_links and not shut:
        raise SkipCheck("no NVLink on " + ("this GPU" if len(gpus) == 1 else "these GPUs"))
    waiting = [g for g in with_links if g.fabric.state in ("not_started", "in_progress")]
    judged = [g for g in with_links if g not in waiting]
    if with_links and not judged and not shut:
        raise SkipCheck("the NVSwitch fabric is not set up, so its NVLinks are not trained: see fabric.manager")
    details = {"gpus": {str(g.index): _link_details(g) for g in with_links}, "interval_s": info.interval_s}
    on_fabric = any(g.fabric.state == "completed" for g in judged)
    if judged and not on_fabric and not any(g.active_links for g in judged) and not shut:
        # PCIe cards with NVLink but no bridge fitted: nothing is broken, they talk over PCIe.
        return ok(f"NVLink on {len(judged)} GPU(s), no link active (no NVLink bridge fitted): GPUs talk over PCIe")
    problems: list[Problem] = []
    for gpu in shut:
        words = f"{label(gpu)}: the driver refused to read its NVLinks (no permission)"
        problems.append(("warn", words, REFUSED_FIX, gpu))
    bridged = [g for g in judged if _bridged(g)]
    history: list[str] = []
    for gpu in judged:
        links = gpu.nvlinks
        down = [link.link for link in links if not link.active]
        if down and gpu in bridged:
            # A bridged PCIe card (H100 NVL, RTX A6000) has more link indices than bridges: a link without one
            # is inactive, not down. Only fewer active links than a card of its model has is a finding.
            most = max(len(h.active_links) for h in bridged if h.name == gpu.name)
            if len(gpu.active_links) < most:
                words = (f"{label(gpu)}: {len(gpu.active_links)} NVLinks active, {most} on another {gpu.name}: "
                         "a bridge missing or loose, or a link down")  # fmt: skip
                problems.append(("warn", words, BRIDGE_FIX, gpu))
        elif down:
            which = f"link {down[0]}" if len(down) == 1 else f"links {', '.join(map(str, down))}"
            up = f"{len(links) - len(down)} of {len(links)} NVLinks up"
            problems.append(("fail", f"{label(gpu)}: {which} down ({up})", LINK_DOWN_FIX, gpu))
        for link in gpu.active_links:
            named = {COUNTER_WORDS[n]: c for n, c in link.counters.items()}
            found = _counted(named, gpu.watched_s, _nvlink_over, "fewer than the 100 a second NVIDIA counts as a fault")
            if found is not None:
                severity, words = found
                fix = RISING_FIX if severity == "fail" else SLOW_CRC_FIX
                problems.append((severity, f"{label(gpu)}: link {link.link} {words}", fix, gpu))
            elif counted := _history((name, c.value) for name, c in named.items()):
                history.append(f"GPU {gpu.index} link {link.link}: {counted}")
    if not problems:
        up = sum(len(g.active_links) for g in judged)
        versions = {link.version for g in judged for link in g.active_links if available(link.version)}
        version = f" (NVLink {'/'.join(sorted(versions))})" if versions else ""
        waits = f"; {span(g.index for g in waiting)} wait for the fabric (fabric.manager)" if waiting else ""
        if any(len(g.active_links) < len(g.nvlinks) for g in bridged):
            waits = f"; bridged cards: links without a bridge are inactive{waits}"
        unread = [g for g in judged if g.active_links and not _counters_read(g)]
        if unread:
            # Unknown is not "no errors": NVLink 5 (Blackwell) gives its error counts as field values, not
            # through the per-link counters, which then read N/A on every link.
            which = "any GPU" if len(unread) == len(judged) else span(g.index for g in unread)
            return ok(
                f"{up} links up on {len(judged)} GPU(s){version}; error counters not available on {which} "
                f"(not judged){waits}",
                **details,
            )
        if history:
            more = f" and {len(history) - 3} more links" if len(history) > 3 else ""
            counted = f"; since the driver loaded (history, not judged): {'; '.join(history[:3])}{more}"
            return ok(f"{up} links up on {len(judged)} GPU(s){version}, no errors while watched{counted}{waits}",
                      **details)  # fmt: skip
        return ok(f"{up} links up on {len(judged)} GPU(s){version}, no errors{waits}", **details)
    return _judged(problems, details, command=lambda g: f"nvidia-smi nvlink -s -i {g.index}")


#: Names of PCIe cards that take NVLink bridges (H100/H200 NVL, A100 PCIe, RTX and Quadro workstation cards,
#: A40/A30/A10/A16, TITAN): their link indices outnumber their bridges. SXM modules (HGX, DGX) are not among them:
#: every link of theirs is wired, to an NVSwitch or straight to another GPU.
BRIDGED_CARD_NAME = re.compile(r"\bNVL\b|PCIe|\bRTX\b|Quadro|\bA(?:40|30|10|16)\b|TITAN", re.IGNORECASE)


def _bridged(gpu: GpuFabric) -> bool:
    """A PCIe card joined to its peers by NVLink bridges: a bridge card's name, no NVSwitch fabric, and every
    active link ends at a GPU. GPUs wired straight to each other on a board (a 4-GPU HGX, a DGX-1) are not:
    a link down there is down."""
    on_switch = gpu.fabric.state in ("completed", "in_progress", "not_started")
    card = available(gpu.name) and BRIDGED_CARD_NAME.search(gpu.name) is not None
    ends = bool(gpu.active_links) and all(link.remote_type == "gpu" for link in gpu.active_links)
    return card and not on_switch and ends


def _counters_read(gpu: GpuFabric) -> bool:
    """Whether any error counter of any of its active links gave a reading."""
    return any(available(c.value) or c.rising for link in gpu.active_links for c in link.counters.values())


def _link_details(gpu: GpuFabric) -> dict[str, Any]:
    links = gpu.nvlinks if available(gpu.nvlinks) else []
    return {
        "pci_bus_id": gpu.pci_bus_id,
        "links_up": len(gpu.active_links),
        "links_total": len(links),
        "down": [link.link for link in links if not link.active],
        "errors": {
            str(link.link): {name: c.value for name, c in link.counters.items() if available(c.value) and c.value}
            for link in gpu.active_links
            if any(available(c.value) and c.value for c in link.counters.values())
        },
    }


@check("fabric.manager", "NVSwitch fabric ready (fabric manager)")
def manager(ctx: Context) -> Verdict:
    """On an NVSwitch system (HGX/DGX, Hopper and later), every GPU is registered with the fabric: without the
    fabric manager running, CUDA fails with "system not yet initialized" (error 802)."""
    info = fabric_info(ctx)
    gpus = answering(info)
    on_fabric = [g for g in gpus if available(g.fabric.state) and g.fabric.state != "not_supported"]
    shut = [g for g in gpus if refused(g.fabric.state)]
    if not on_fabric and not shut:
        raise SkipCheck(
            "no NVSwitch fabric reported (none here, or GPUs older than Hopper, whose state NVML does not give)"
        )
    details = {
        "gpus": {
            str(g.index): {"pci_bus_id": g.pci_bus_id, "state": g.fabric.state, "status": g.fabric.status_text}
            for g in on_fabric
        }
    }
    driver = _driver_words(ctx)
    problems: list[Problem] = []
    by_state: dict[str, list[GpuFabric]] = {}
    for g in on_fabric:
        by_state.setdefault(str(g.fabric.state), []).append(g)

    def named(group: list[GpuFabric]) -> str:
        """Every GPU by index and bus id; all of them at once (bus ids in the details) when it is every one."""
        if len(group) > 1 and len(group) == len(on_fabric):
            return f"all {len(group)} GPUs"
        return ", ".join(label(g) for g in group)

    if "not_started" in by_state:
        group = by_state["not_started"]
        words = f"fabric not started on {named(group)}: the fabric manager is not running (CUDA fails: error 802)"
        problems.append(("fail", words, FABRIC_MANAGER_FIX.format(driver=driver), None))
    failed = [g for g in by_state.get("completed", []) if available(g.fabric.status) and g.fabric.status != 0]
    for g in failed:
        why = g.fabric.status_text if available(g.fabric.status_text) and g.fabric.status_text else g.fabric.status
        words = f"{label(g)}: the fabric manager could not register it (NVML: {why})"
        problems.append(("fail", words, FABRIC_FAILED_FIX.format(driver=driver), g))
    if "in_progress" in by_state:
        from envcheck.probes.host import seconds_since_boot

        up = seconds_since_boot()
        if up is not None and up > FABRIC_SETUP_S:
            # Past its setup time the fabric is not coming: a dead or mismatched fabric manager leaves the
            # state at In Progress indefinitely, and CUDA fails with error 802 meanwhile.
            since = f"{up / 60:.0f} min" if up < 7200 else f"{up / 3600:.1f} h"
            words = (
                f"fabric still not set up on {named(by_state['in_progress'])} {since} after boot: "
                "the fabric manager is not running or does not match the driver (CUDA fails: error 802)"
            )
            problems.append(("fail", words, FABRIC_MANAGER_FIX.format(driver=driver), None))
        else:
            words = f"fabric still being set up on {named(by_state['in_progress'])} (CUDA waits: error 802 until done)"
            problems.append(("warn", words, FABRIC_IN_PROGRESS_FIX, None))
    degraded = [g for g in on_fabric if g.fabric.degraded_bandwidth is True]
    if degraded:
        problems.append(("warn", f"fabric bandwidth degraded on {named(degraded)}", DEGRADED_FIX, None))
    for g in shut:
        words = f"{label(g)}: the driver refused to read its fabric state (no permission)"
        problems.append(("warn", words, REFUSED_FIX, g))
    if problems:
        return _judged(problems, details, command="systemctl status nvidia-fabricmanager")
    return ok(f"{len(on_fabric)} GPU(s) registered with the NVSwitch fabric", **details)


@check("fabric.p2p", "GPU peer-to-peer (P2P) access")
def p2p(ctx: Context) -> Verdict:
    """Every pair of GPUs can read each other's memory directly (P2P), over NVLink where one joins them; pairs on
    one CPU socket without P2P warn (IOMMU, PCIe ACS), pairs across sockets are only noted (many platforms
    route no P2P between sockets)."""
    info = fabric_info(ctx)
    gpus = several(info)
    pairs = unordered(info, gpus)
    details: dict[str, Any] = {
        "gpus": {str(g.index): g.pci_bus_id for g in gpus},
        "matrix": info.p2p_matrix([g.index for g in gpus], "p2p_read"),
    }
    readings = [info.pair(p.b, p.a) for p in pairs]
    both = [(p, q) for p, q in zip(pairs, readings, strict=True) if q is not None]
    if all(not available(x.p2p_read) for p, q in both for x in (p, q)):
        reasons = {x.p2p_read.reason for p, q in both for x in (p, q) if isinstance(x.p2p_read, NA)}
        if NO_PERMISSION in reasons:
            return warn(
                "the driver refused to read P2P status (no permission)", REFUSED_FIX, "sudo nvidia-smi topo -p2p r"
            )
        raise SkipCheck(f"P2P status not available: {', '.join(sorted(reasons))}")
    near: dict[str, list[GpuPair]] = {}
    across: dict[str, list[GpuPair]] = {}
    nvlink_off: list[GpuPair] = []
    for p, q in both:
        status = next((s for s in (p.p2p_read, q.p2p_read) if available(s) and s != "ok"), None)
        if status is not None:
            far = p.topology == "system" and status != "disabled_by_regkey"
            (across if far else near).setdefault(str(status), []).append(p)
        if p.nvlinks and any(available(s) and s != "ok" for s in (p.p2p_nvlink, q.p2p_nvlink)):
            nvlink_off.append(p)
    over = {True: "NVLink", False: "PCIe"}.get(all(p.nvlinks for p in pairs), "")
    if any(p.nvlinks for p in pairs) and not all(p.nvlinks for p in pairs):
        over = "NVLink and PCIe"
    across_words = "; ".join(
        f"off across the CPU sockets (SYS) for {len(group)} pair(s) ({P2P_WORDS.get(s, s)}: {P2P_LABELS.get(s, s)})"
        for s, group in across.items()
    )
    problems: list[Problem] = []
    geforce = {g.index for g in gpus if available(g.name) and "geforce" in g.name.lower()}
    for status, group in near.items():
        pair_list = ", ".join(f"{p.a}↔{p.b}" for p in group)
        words = f"P2P off between GPUs {pair_list} ({P2P_WORDS.get(status, status)}: {P2P_LABELS.get(status, status)})"
        # The status the driver gives GeForce cards varies by driver; what they are does not.
        if all(p.a in geforce and p.b in geforce for p in group):
            words = f"{words}: GeForce cards, on which the driver disables P2P"
            problems.append(("warn", words, GEFORCE_P2P_FIX, None))
        else:
            problems.append(("warn", words, P2P_FIX, None))
    if nvlink_off:
        pair_list = ", ".join(f"{p.a}↔{p.b}" for p in nvlink_off)
        words = f"P2P over NVLink unavailable between GPUs {pair_list}, though NVLink joins them"
        problems.append(("warn", words, P2P_FIX, None))
    if problems:
        if across_words:
            problems.append(("warn", across_words, P2P_FIX, None))
        return _judged(problems, details, command="nvidia-smi topo -p2p r")
    if across_words:
        return ok(f"P2P between GPUs on one CPU socket; {across_words}: NCCL goes through host memory there", **details)
    which = "both GPUs" if len(pairs) == 1 else f"all {len(pairs)} pairs of {len(gpus)} GPUs"
    return ok(f"P2P between {which} (over {over})", **details)


@check("fabric.topology", "GPU interconnect topology")
def topology(ctx: Context) -> Verdict:
    """How the GPUs are joined, as ``nvidia-smi topo -m`` says it (NV#, PIX, PXB, PHB, NODE, SYS): a summary
    to read, and a warning when some pairs have fewer NVLinks than the rest."""
    info = fabric_info(ctx)
    gpus = several(info)
    pairs = unordered(info, gpus)
    details = {"gpus": [g.index for g in gpus], "matrix": info.topology_matrix([g.index for g in gpus])}
    linked = [p for p in pairs if p.nvlinks]
    unknown = [p for p in pairs if not available(p.topology)]
    if unknown and len(unknown) == len(pairs) and not linked:
        # Unknown is not ok: nothing here says how the GPUs are joined (its own matrix is all N/A).
        reasons = sorted({p.topology.reason for p in unknown if isinstance(p.topology, NA)}) or ["not available"]
        return skip(f"the driver did not say how the GPUs are joined ({', '.join(reasons)})", **details)
    if unknown:  # where a pair's level is not known, no pair is said to cross the CPU socket
        sockets = [[g.index for g in gpus]]
        socket_words = f"; topology not available for {len(unknown)} of {len(pairs)} pairs"
    else:
        sockets = _groups(gpus, pairs, lambda p: p.topology != "system")
        socket_words = (
            f"; GPUs {' and '.join(span(s) for s in sockets)} across the CPU socket (SYS)" if len(sockets) > 1 else ""
        )
    if linked:
        counts = Tally(p.nvlinks for p in linked)
        usual = max(counts, key=lambda n: (counts[n], n))  # the most common count; the larger on a tie
        short = [p for p in linked if p.nvlinks < usual]
        if short:
            return warn(_fewer_links(gpus, linked, short, usual), TOPOLOGY_FIX, "nvidia-smi topo -m", **details)
        if len(linked) == len(pairs):
            return ok(f"{len(gpus)} GPUs, every pair NVLink (NV{usual}){socket_words}", **details)
        islands = _groups(gpus, pairs, lambda p: p.nvlinks > 0)
        joined = ", ".join(span(i) for i in islands if len(i) > 1)
        return ok(
            f"{len(gpus)} GPUs: NVLink (NV{usual}) within {joined}, PCIe between the rest{socket_words}", **details
        )
    switches = [
        s for s in _groups(gpus, pairs, lambda p: p.topology in ("internal", "single", "multiple")) if len(s) > 1
    ]
    switch_words = f"; on one PCIe switch (PIX/PXB): {', '.join(span(s) for s in switches)}" if switches else ""
    if len(sockets) == 1 and not unknown:
        levels = Tally(p.label for p in pairs)
        socket_words = f"; one CPU socket (mostly {levels.most_common(1)[0][0]})"
    none = "no NVLink up" if any(available(g.nvlinks) and g.nvlinks for g in gpus) else "no NVLink"
    return ok(f"{len(gpus)} GPUs over PCIe, {none}{socket_words}{switch_words}", **details)


def _fewer_links(gpus: list[GpuFabric], linked: list[GpuPair], short: list[GpuPair], usual: int) -> str:
    """Name the GPU whose every NVLink peer gets fewer links (a GPU on a fabric that lost links), else the pairs
    (bridged cards: a bridge missing)."""
    by_index = {g.index: g for g in gpus}
    peers = {g.index: [p for p in linked if g.index in (p.a, p.b)] for g in gpus}
    culprits = [i for i, mine in peers.items() if len(mine) > 1 and all(p in short for p in mine)]
    if culprits:
        lows = {i: min(p.nvlinks for p in peers[i]) for i in culprits}
        named = ", ".join(f"{label(by_index[i])} NV{n} to every peer" for i, n in lows.items())
        return f"{named}, the others NV{usual} (a link is down: see fabric.nvlink)"
    pair_list = ", ".join(f"{p.a}↔{p.b} (NV{p.nvlinks})" for p in short)
    return f"fewer NVLinks between GPUs {pair_list} than between the other NVLink pairs (NV{usual})"


def _groups(gpus: list[GpuFabric], pairs: list[GpuPair], joined: Any) -> list[list[int]]:
    """GPUs in groups where ``joined(pair)`` links them (connected components), in index order."""
    group = {g.index: {g.index} for g in gpus}
    for p in pairs:
        if joined(p) and group[p.a] is not group[p.b]:
            merged = group[p.a] | group[p.b]
            for i in merged:
                group[i] = merged
    seen: list[set[int]] = []
    for g in gpus:
        if not any(group[g.index] is s for s in seen):
            seen.append(group[g.index])
    return [sorted(s) for s in seen]


@check("fabric.pcie_replay", "PCIe link replays")
def pcie_replay(ctx: Context) -> Verdict:
    """No GPU's PCIe link is replaying packets (resending them after errors) while watched: rising replays are
    a marginal link (riser, slot, seating). A count since the driver loaded warns only where it averages more
    than NVIDIA's 8 a minute since boot."""
    info = fabric_info(ctx)
    gpus = answering(info)
    details = {
        "gpus": {str(g.index): {"pci_bus_id": g.pci_bus_id, "replays": g.pcie_replay.value} for g in gpus},
        "interval_s": info.interval_s,
    }
    problems: list[Problem] = []
    history: list[tuple[GpuFabric, int]] = []
    for gpu in gpus:
        if refused(gpu.pcie_replay.first):
            words = f"{label(gpu)}: the driver refused to read its PCIe replays (no permission)"
            problems.append(("warn", words, REFUSED_FIX, gpu))
            continue
        found = _counted(
            {"PCIe replays": gpu.pcie_replay},
            gpu.watched_s,
            _pcie_over,
            "8 or fewer: too short a watch to tell a rate above NVIDIA's 8 a minute; `envcheck burn` watches longer",
        )
        if found is not None:
            severity, words = found
            fix = PCIE_REPLAY_FIX if severity == "fail" else PCIE_REPLAY_WATCH_FIX
            problems.append((severity, f"{label(gpu)}: {words}", fix, gpu))
        elif available(gpu.pcie_replay.value) and gpu.pcie_replay.value > 0:
            history.append((gpu, gpu.pcie_replay.value))
    if not any(available(g.pcie_replay.first) for g in gpus) and not problems:
        raise SkipCheck("PCIe replay counter not available: " + str(gpus[0].pcie_replay.first.reason))
    up: float | None = None
    if history:
        from envcheck.probes.host import seconds_since_boot

        # The count is since the driver loaded, which is no earlier than boot: dividing by the uptime gives a
        # rate no higher than the real one, so a rate above the limit is above it for sure. Within the first
        # hour a burst while the links trained at boot would read as a rate: not judged then.
        up = seconds_since_boot()
        for gpu, count in history:
            if up and up >= HISTORY_JUDGED_AFTER_S and count / up * 60 > PCIE_REPLAY_LIMIT_PER_MIN:
                words = (f"{label(gpu)}: {count} PCIe replays since the driver loaded, none while watched: "
                         f"{count / up * 60:.3g} a minute on average since boot (NVIDIA: at most 8)")  # fmt: skip
                problems.append(("warn", words, PCIE_REPLAY_HISTORY_FIX, gpu))
    if problems:
        return _judged(problems, details, command=lambda g: f"nvidia-smi -q -i {g.index} | grep -i -A1 replay")
    if history:
        counted = ", ".join(f"{count} on GPU {gpu.index}" for gpu, count in history)
        if not up:
            pace = "the time since boot is not known"
        elif up < HISTORY_JUDGED_AFTER_S:
            pace = "within an hour of boot, when the links' training counts some"
        else:
            pace = "under NVIDIA's 8 a minute since boot"
        return ok(f"no PCIe replays while watched on {len(gpus)} GPU(s); since the driver loaded: {counted} "
                  f"(history, not judged: {pace})", **details)  # fmt: skip
    return ok(f"no PCIe replays on {len(gpus)} GPU(s)", **details)
