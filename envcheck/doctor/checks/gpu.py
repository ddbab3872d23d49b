"""Every GPU, judged from NVML readings only (never through torch, so ``--quick`` stays light).

Each check covers all GPUs and names the ones that are wrong; a lost GPU is reported once, by
``gpu.inventory``, and left out of the others so that the healthy GPUs are still judged. A reading the
card does not offer (GeForce has no ECC) is "not available", never a failure. A reading the driver
refuses to this user (NVML_ERROR_NO_PERMISSION) is a warning in the check that needed it: that check
could not judge the GPU, and "ok" would claim it had.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from envcheck.core.model import NA, SkipCheck, Verdict, available, fail, ok, skip, warn
from envcheck.core.probing import Context
from envcheck.core.units import human
from envcheck.doctor.areas import check
from envcheck.doctor.reading import nvml_state
from envcheck.probes.nvml.constants import TEMPERATURE_MARGIN_C, THROTTLE_PROBLEMS
from envcheck.probes.nvml.inventory import GpuInfo
from envcheck.probes.nvml.session import NO_PERMISSION, NOT_SUPPORTED

#: The clocks-event bit of SW thermal slowdown (nvml.h), the one problem reason that is not the hardware's.
SW_THERMAL = 0x20

#: Another process holding at least this share of a GPU's memory leaves too little for training.
BUSY_MEMORY_SHARE = 0.5
#: Utilisation above which a GPU is already doing someone else's work.
BUSY_UTILIZATION_PCT = 50
#: PCIe generation drops at idle to save power (ASPM), so it is judged only when the GPU is this busy.
PCIE_GEN_LOAD_PCT = 50
#: A power limit below this share of the card's default is a cap someone set, not rounding.
POWER_CAP_SHARE = 0.95

#: Said when the driver refused a reading to this user. Seen on MIG-enabled GPUs (the whole GPU's memory
#: and processes need administrator rights: NVML reference, nvmlDeviceGetMemoryInfo_v2) and where the
#: user's access to the NVIDIA device nodes is restricted.
REFUSED_FIX = (
    "The driver refused that reading to this user (NVML: Insufficient Permissions), so envcheck could not judge "
    "it: run the query below as root to compare. If root sees it, your user lacks access: on a MIG-enabled GPU "
    "the whole GPU's memory and processes need administrator rights (read them on the host); elsewhere check "
    "your access to /dev/nvidia* (often the `video` group), and in a container pass the GPUs in with `--gpus` "
    "(NVIDIA Container Toolkit) rather than as bare device nodes."
)


def label(gpu: GpuInfo) -> str:
    """'GPU 1 (00000000:19:00.0)': index as NVML counts, plus the bus id people find in dmesg."""
    return f"GPU {gpu.index} ({gpu.pci_bus_id})" if available(gpu.pci_bus_id) else f"GPU {gpu.index}"


def working_gpus(ctx: Context) -> list[GpuInfo]:
    """GPUs that answer NVML; skips the calling check when there are none."""
    state = nvml_state(ctx)
    gpus = [g for g in state.gpus if g.answers]
    if not gpus:
        raise SkipCheck("no working GPUs to judge")
    return gpus


def refused(value: Any) -> bool:
    """Whether this reading is one the driver refused to this user."""
    return isinstance(value, NA) and value.reason == NO_PERMISSION


#: A problem's severity: ``fail``, ``warn``, or ``refused`` (a warning: the driver refused a reading).
REFUSED = "refused"
#: Not problems but notes: every reading of the check was not available on that GPU (unsupported, MIG
#: mode), or some were. A reading that could not be taken is never evidence of health (:func:`verdict`).
UNREAD = "unread"
PARTIAL = "partial"
NOTES = (UNREAD, PARTIAL)


def judge_each(
    ctx: Context,
    judge: Callable[[GpuInfo], tuple[str, str] | None],
    *,
    reads: dict[str, str],
    what: str,
    reading: Callable[[GpuInfo], Any] | None = None,
) -> tuple[list[GpuInfo], list[tuple[GpuInfo, str, str]], dict[str, Any]]:
    """Run ``judge`` on every working GPU: returns (gpus, [(gpu, severity, words)], per-GPU readings).

    ``reads`` maps each detail the check reports to the GpuInfo field it comes from (``reading``, where
    given, shapes the details instead), and ``what`` says what those fields are: a GPU where the driver
    refused any of them is a problem of its own, so a check that could not judge never says "ok".
    """
    gpus = working_gpus(ctx)
    problems = []
    for gpu in gpus:
        found = judge(gpu)
        if found is not None:
            problems.append((gpu, *found))
        if any(refused(getattr(gpu, name)) for name in reads.values()):
            problems.append((gpu, REFUSED, f"the driver refused to read its {what} (no permission)"))
            continue
        missing = {key: getattr(gpu, name) for key, name in reads.items() if not available(getattr(gpu, name))}
        if missing and len(missing) == len(reads):
            reasons = {v.reason if isinstance(v, NA) else "not available" for v in missing.values()}
            said = ", ".join(sorted(reasons - {"not available"} or reasons))
            problems.append((gpu, UNREAD, f"{what} not available ({said})"))
        elif missing:
            problems.append((gpu, PARTIAL, f"not available: {', '.join(missing)}"))
    if reading is None:
        return gpus, problems, {str(g.index): {key: getattr(g, name) for key, name in reads.items()} for g in gpus}
    return gpus, problems, {str(g.index): reading(g) for g in gpus}


def verdict(
    gpus: list[GpuInfo],
    problems: list[tuple[GpuInfo, str, str]],
    details: dict[str, Any],
    *,
    fine: str,
    fix: str,
    command: str | None = None,
    query: str | None = None,
) -> Verdict:
    """One verdict for all GPUs: the worst problem's severity, each bad GPU named in the summary.

    When the only problems are refused readings, the fix is how to get them, and its command ``query`` (by
    default ``command``, when that only reads) run as root to compare; with other problems too, that advice
    follows the check's own fix.
    """
    notes = [(g, sev, words) for g, sev, words in problems if sev in NOTES]
    problems = [p for p in problems if p[1] not in NOTES]
    noted = "; ".join(f"{label(g)}: {words}" for g, _, words in notes)
    if not problems:
        # Unknown is not ok: a check that could read nothing on any GPU judged nothing; one that could
        # read only part says which part it could not.
        if gpus and sum(sev == UNREAD for _, sev, _ in notes) == len(gpus):
            return skip(noted, gpus=details)
        return ok(f"{fine} ({noted})" if notes else fine, gpus=details)
    summary = "; ".join(f"{label(g)}: {words}" for g, _, words in problems) + (f"; {noted}" if notes else "")
    factory = fail if any(sev == "fail" for _, sev, _ in problems) else warn
    if all(sev == REFUSED for _, sev, _ in problems):
        query = query or command
        return factory(summary, REFUSED_FIX, f"sudo {query}" if query else None, gpus=details)
    if any(sev == REFUSED for _, sev, _ in problems):
        fix = f"{fix} {REFUSED_FIX}"
    return factory(summary, fix, command, gpus=details)


@check("gpu.inventory", "GPUs present")
def inventory(ctx: Context) -> Verdict:
    """Every GPU the driver counts answers; a lost GPU (fallen off the bus) fails and the rest are listed."""
    state = nvml_state(ctx)
    if not state.gpus:
        return warn(
            "the driver answers but sees no GPUs",
            "In a container, pass the GPUs in (`docker run --gpus all`); on a VM, check the GPU is attached "
            "(`lspci | grep -i nvidia`).",
            "lspci | grep -i nvidia",
        )
    lost = [g for g in state.gpus if g.lost]
    shut_out = [g for g in state.gpus if g.refused]
    listing = {
        str(g.index): {
            "name": g.name,
            "uuid": g.uuid,
            "pci_bus_id": g.pci_bus_id,
            "compute_capability": ".".join(map(str, g.compute_capability)) if available(g.compute_capability) else None,
            "memory_total": human(g.memory_total_bytes) if available(g.memory_total_bytes) else None,
            "lost": g.lost,
            "refused": g.refused,
            "error": g.lost_error,
        }
        for g in state.gpus
    }
    answering = f"{len(state.gpus) - len(lost) - len(shut_out)} of {len(state.gpus)} GPUs answer"
    if lost:
        names = ", ".join(label(g) for g in lost)
        refused_too = f"; {_refused_words(shut_out)}" if shut_out else ""
        return fail(
            f"{names} lost (fallen off the bus){refused_too}; {answering}",
            "A lost GPU (Xid 79) needs the node drained and rebooted; if it recurs, check cooling, power and "
            "seating, and ask the vendor for an RMA. `dmesg` shows the Xid and when it happened.",
            "sudo dmesg -T | grep -iE 'xid|fallen off'",
            gpus=listing,
        )
    if shut_out:
        return warn(
            f"{_refused_words(shut_out)}; {answering}",
            "Your user may not open these GPUs' device nodes (/dev/nvidia<N>): check their group (often `video`) "
            "and add yourself to it; in a container, give it the GPUs through the NVIDIA Container Toolkit "
            "(`--gpus`) rather than bind-mounted device nodes.",
            "ls -l /dev/nvidia*",
            gpus=listing,
        )
    identity = {"name": "name", "compute_capability": "compute capability", "memory_total_bytes": "memory size"}
    unread = [(g, [w for name, w in identity.items() if refused(getattr(g, name))]) for g in state.gpus]
    unread = [(g, what) for g, what in unread if what]
    if unread:
        # name exactly what was refused (a MIG GPU seen by a user refuses its memory, not its name)
        summary = "; ".join(
            f"{label(g)}: the driver refused to read its {' and '.join(what)} (no permission)" for g, what in unread
        )
        return warn(summary, REFUSED_FIX, "sudo nvidia-smi -L", gpus=listing)
    models: dict[str, int] = {}
    for g in state.gpus:
        models[str(g.name)] = models.get(str(g.name), 0) + 1
    first = state.gpus[0]
    mem = f", {human(first.memory_total_bytes)}" if available(first.memory_total_bytes) else ""
    cc = "cc {}.{}".format(*first.compute_capability) if available(first.compute_capability) else ""
    kinds = ", ".join(f"{n} × {name}" for name, n in models.items())
    return ok(f"{kinds} ({cc}{mem})" if len(models) == 1 else kinds, gpus=listing)


def _refused_words(gpus: list[GpuInfo]) -> str:
    return f"the driver refused to open {', '.join(label(g) for g in gpus)} (no permission)"


@check("gpu.memory", "GPU memory free for you")
def memory(ctx: Context) -> Verdict:
    """Other processes holding a large share of a GPU's memory leave too little for your job."""

    def judge(g: GpuInfo) -> tuple[str, str] | None:
        if not available(g.memory_total_bytes) or not available(g.memory_used_bytes):
            return None
        procs = g.processes if available(g.processes) else []
        held = sum(p.used_bytes or 0 for p in procs)
        if held >= BUSY_MEMORY_SHARE * g.memory_total_bytes:
            # one process: its figure is the total already; several: each one's share
            each = len([p for p in procs if p.used_bytes]) > 1
            who = ", ".join(
                f"pid {p.pid} ({p.name or 'not visible'})" + (f" {human(p.used_bytes or 0)}" if each else "")
                for p in procs
            )
            return "warn", f"{human(held)} of {human(g.memory_total_bytes)} held by {who}"
        if not procs and g.memory_used_bytes >= BUSY_MEMORY_SHARE * g.memory_total_bytes:
            return "warn", (
                f"{human(g.memory_used_bytes)} of {human(g.memory_total_bytes)} in use by processes not visible "
                "from here (another container?)"
            )
        return None

    def reading(g: GpuInfo) -> dict[str, Any]:
        procs = g.processes if available(g.processes) else None
        return {
            "total_bytes": g.memory_total_bytes,
            "used_bytes": g.memory_used_bytes,
            "free_bytes": g.memory_free_bytes,
            "processes": procs if procs is not None else "refused" if refused(g.processes) else "not available",
        }

    gpus, problems, details = judge_each(
        ctx,
        judge,
        reads={"used_bytes": "memory_used_bytes", "processes": "processes"},
        what="memory use or its processes",
        reading=reading,
    )
    free = [g.memory_free_bytes for g in gpus if available(g.memory_free_bytes)]
    return verdict(
        gpus,
        problems,
        details,
        fine=f"{human(min(free))} or more free on every GPU" if free else "memory readings not available",
        fix="Someone else's job holds this GPU: pick another one with CUDA_VISIBLE_DEVICES, or ask the owner "
        "(the pid is above; `nvidia-smi` lists them). Stale processes from a crashed job can be killed.",
        command="nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv",
    )


@check("gpu.utilization", "GPUs idle")
def utilization(ctx: Context) -> Verdict:
    """A GPU already busy with other work will make your job and its benchmark slow."""

    def judge(g: GpuInfo) -> tuple[str, str] | None:
        if available(g.utilization_gpu_pct) and g.utilization_gpu_pct >= BUSY_UTILIZATION_PCT:
            return "warn", f"{g.utilization_gpu_pct}% busy"
        return None

    gpus, problems, details = judge_each(
        ctx,
        judge,
        reads={"gpu_pct": "utilization_gpu_pct", "memory_pct": "utilization_memory_pct"},
        what="utilisation",
    )
    return verdict(
        gpus,
        problems,
        details,
        fine="idle",
        fix="Another job is computing on this GPU; choose a free one with CUDA_VISIBLE_DEVICES.",
        command="nvidia-smi",
    )


@check("gpu.temperature", "GPU temperature")
def temperature(ctx: Context) -> Verdict:
    """Near the driver's slowdown threshold the GPU drops its clocks; your throughput drops with them. Above
    it the GPU is slowing down now: a failure, as the burn judges it (burn.throttle)."""

    def judge(g: GpuInfo) -> tuple[str, str] | None:
        if not available(g.temperature_c) or not available(g.temperature_slowdown_c):
            return None
        if g.temperature_c > g.temperature_slowdown_c:
            return "fail", f"{g.temperature_c} °C, above its slowdown threshold of {g.temperature_slowdown_c} °C"
        if g.temperature_c >= g.temperature_slowdown_c - TEMPERATURE_MARGIN_C:
            return "warn", f"{g.temperature_c} °C, slowdown at {g.temperature_slowdown_c} °C"
        return None

    gpus, problems, details = judge_each(
        ctx,
        judge,
        reads={"temperature_c": "temperature_c", "slowdown_c": "temperature_slowdown_c"},
        what="temperature or its slowdown threshold",
    )
    hottest = max((g.temperature_c for g in gpus if available(g.temperature_c)), default=None)
    return verdict(
        gpus,
        problems,
        details,
        fine=f"hottest {hottest} °C" if hottest is not None else "temperature not available",
        fix="Check the cooling: fans, airflow, blocked inlets, the room's temperature; compare with the other "
        "GPUs in the node.",
        command="nvidia-smi -q -d TEMPERATURE,PERFORMANCE",
    )


@check("gpu.power", "GPU power draw and limit")
def power(ctx: Context) -> Verdict:
    """A power limit set below the card's default caps its speed without anyone noticing."""

    def judge(g: GpuInfo) -> tuple[str, str] | None:
        if available(g.power_limit_w) and available(g.power_default_limit_w):
            if g.power_limit_w < POWER_CAP_SHARE * g.power_default_limit_w:
                return "warn", f"power capped at {g.power_limit_w:.0f} W of the default {g.power_default_limit_w:.0f} W"
        return None

    gpus, problems, details = judge_each(
        ctx,
        judge,
        reads={"draw_w": "power_draw_w", "limit_w": "power_limit_w", "default_limit_w": "power_default_limit_w"},
        what="power draw or limits",
    )
    draws = [f"{g.power_draw_w:.0f}/{g.power_limit_w:.0f} W" for g in gpus if available(g.power_draw_w)]
    return verdict(
        gpus,
        problems,
        details,
        fine=f"draw/limit {', '.join(draws)}" if draws else "power readings not available",
        fix="An administrator lowered the power limit (`nvidia-smi -pl`); ask them to restore the default if the "
        "cap was not intended. envcheck never changes it.",
        command="nvidia-smi -q -d POWER",
    )


@check("gpu.throttle", "Clock throttling")
def throttle(ctx: Context) -> Verdict:
    """HW slowdown, thermal slowdown and power brake mean a fault or heat is slowing the GPU now: a hardware
    reason fails, as DCGM's diagnostic and the burn judge it; SW thermal slowdown alone (the driver easing
    off, which clears by itself) warns."""

    def judge(g: GpuInfo) -> tuple[str, str] | None:
        if not available(g.clocks_event_reasons):
            return None
        active = [words for bit, words in THROTTLE_PROBLEMS.items() if g.clocks_event_reasons & bit]
        if not active:
            return None
        hardware = g.clocks_event_reasons & ~SW_THERMAL & sum(THROTTLE_PROBLEMS)
        return ("fail" if hardware else "warn", "throttled: " + ", ".join(active))

    gpus, problems, details = judge_each(
        ctx,
        judge,
        reads={"clocks_event_reasons": "clocks_event_reasons"},
        what="clock throttle reasons",
    )
    return verdict(
        gpus,
        problems,
        details,
        fine="no thermal or hardware slowdown",
        fix="Thermal slowdown: improve cooling. HW slowdown or power brake: the board or the PSU signals a "
        "problem; check power cabling and `dmesg`, and compare with the other GPUs.",
        command="nvidia-smi -q -d PERFORMANCE",
    )


@check("gpu.pcie", "PCIe link")
def pcie(ctx: Context) -> Verdict:
    """A link narrower than its maximum, or a slot of an older generation than the GPU, cuts host<->GPU
    bandwidth; the generation the link runs at now is judged under load only."""

    def judge(g: GpuInfo) -> tuple[str, str] | None:
        if available(g.pcie_width_current) and available(g.pcie_width_max):
            if g.pcie_width_current < g.pcie_width_max:
                return "warn", f"link x{g.pcie_width_current} of x{g.pcie_width_max}"
        # The link's highest generation is the lower of the GPU's and the slot's: at any load, a Gen5 GPU in a
        # Gen4 slot (or behind a Gen4 riser or switch) gets half its host bandwidth.
        if available(g.pcie_gen_max) and available(g.pcie_gen_gpu_max) and g.pcie_gen_max < g.pcie_gen_gpu_max:
            return "warn", f"the slot allows Gen{g.pcie_gen_max}, the GPU Gen{g.pcie_gen_gpu_max}"
        # The link trains down to Gen1 at idle to save power, so a low generation means nothing unless
        # the GPU is busy.
        busy = available(g.utilization_gpu_pct) and g.utilization_gpu_pct >= PCIE_GEN_LOAD_PCT
        if busy and available(g.pcie_gen_current) and available(g.pcie_gen_max):
            if g.pcie_gen_current < g.pcie_gen_max:
                return "warn", f"Gen{g.pcie_gen_current} of Gen{g.pcie_gen_max} under load"
        return None

    gpus, problems, details = judge_each(
        ctx,
        judge,
        reads={
            "width": "pcie_width_current",
            "width_max": "pcie_width_max",
            "gen": "pcie_gen_current",
            "gen_max": "pcie_gen_max",
        },
        what="PCIe link",
    )
    return verdict(
        gpus,
        problems,
        details,
        fine="full link width and generation",
        fix="A downgraded link is usually a seating, riser or slot problem: reseat the card or move it, and "
        "check the BIOS slot settings (a slot of an older PCIe generation than the GPU: move it to a newer one).",
        command="nvidia-smi -q -d PCI | grep -iA2 'link'",
    )


#: What to do about each kind of ECC finding, in the order said.
ECC_FIXES = {
    "since_boot": "Uncorrected ECC errors since boot: stop using this GPU, drain the node and reset the GPU; "
    "if errors return, RMA it.",
    "lifetime": "Uncorrected ECC errors only in the lifetime count: they happened before the last reboot or GPU "
    "reset, and the memory was repaired since (row remapping or page retirement, see gpu.retired_memory). "
    "A reset cannot clear this count; watch whether it grows, and RMA the GPU if it does.",
    "mode": "A pending or disabled ECC mode takes effect after a GPU reset or reboot.",
}


@check("gpu.ecc", "ECC memory errors")
def ecc(ctx: Context) -> Verdict:
    """Uncorrected ECC errors mean the GPU returned corrupt data; a pending ECC mode change needs a reset.

    Errors since boot (the volatile counter) fail. Errors only in the lifetime (aggregate) count are history a
    person should know of, not a present fault: a warning, since no reset clears that count.
    """
    kinds: set[str] = set()

    def judge(g: GpuInfo) -> tuple[str, str] | None:
        if not available(g.ecc_mode_current):
            return None  # GeForce and some workstation cards have no ECC: not available, not a failure.
        volatile = g.ecc_volatile_uncorrected if available(g.ecc_volatile_uncorrected) else 0
        aggregate = g.ecc_aggregate_uncorrected if available(g.ecc_aggregate_uncorrected) else 0
        if volatile:
            kinds.add("since_boot")
            return "fail", f"{volatile} uncorrected ECC errors since boot, {aggregate} over its life"
        if aggregate:
            kinds.add("lifetime")
            return "warn", f"{aggregate} uncorrected ECC errors over its life, none since boot"
        if available(g.ecc_mode_pending) and g.ecc_mode_pending != g.ecc_mode_current:
            kinds.add("mode")
            return "warn", f"ECC {'on' if g.ecc_mode_pending else 'off'} pending a reset"
        if not g.ecc_mode_current:
            kinds.add("mode")
            return "warn", "ECC is off"
        return None

    gpus, problems, details = judge_each(
        ctx,
        judge,
        reads={
            "mode": "ecc_mode_current",
            "pending": "ecc_mode_pending",
            "volatile_uncorrected": "ecc_volatile_uncorrected",
            "aggregate_uncorrected": "ecc_aggregate_uncorrected",
        },
        what="ECC mode or error counts",
        reading=lambda g: {
            "mode": g.ecc_mode_current if available(g.ecc_mode_current) else "not available",
            "pending": g.ecc_mode_pending,
            "volatile_uncorrected": g.ecc_volatile_uncorrected,
            "aggregate_uncorrected": g.ecc_aggregate_uncorrected,
        },
    )
    without = [g for g in gpus if not available(g.ecc_mode_current)]
    fine = "no uncorrected ECC errors" if len(without) < len(gpus) else "ECC not available on these GPUs"
    return verdict(
        gpus,
        problems,
        details,
        fine=fine,
        fix=" ".join(text for kind, text in ECC_FIXES.items() if kind in kinds),
        command="nvidia-smi -q -d ECC,ROW_REMAPPER" if "lifetime" in kinds else "nvidia-smi -q -d ECC",
    )


@check("gpu.retired_memory", "Retired pages and row remapping")
def retired_memory(ctx: Context) -> Verdict:
    """Pending page retirement or row remapping needs a GPU reset; a failed remap means RMA."""

    def judge(g: GpuInfo) -> tuple[str, str] | None:
        if g.remapped_rows_failed is True:
            return "fail", "row remapping failed: the GPU has run out of spare rows"
        if g.remapped_rows_pending is True:
            return "fail", "row remapping pending: a GPU reset is needed to apply it"
        if g.retired_pages_pending is True:
            return "fail", "retired pages pending: a GPU reset is needed to retire them"
        return None

    gpus, problems, details = judge_each(
        ctx,
        judge,
        reads={
            name: name
            for name in (
                "retired_pages_pending",
                "remapped_rows_pending",
                "remapped_rows_failed",
                "remapped_rows_uncorrectable",
            )
        },
        what="page retirement or row remapping state",
    )
    fix = (
        "Drain the node and reset the GPU (or reboot) so the remap or retirement takes effect; "
        "a failed row remap means the GPU needs an RMA."
    )
    command = "nvidia-smi -q -d ROW_REMAPPER,PAGE_RETIREMENT"
    return verdict(gpus, problems, details, fine="nothing pending", fix=fix, command=command)


@check("gpu.persistence", "Persistence mode")
def persistence(ctx: Context) -> Verdict:
    """Without persistence mode the driver tears GPU state down between jobs: slow starts, lost settings."""

    def judge(g: GpuInfo) -> tuple[str, str] | None:
        return ("warn", "persistence mode off") if g.persistence_mode is False else None

    gpus, problems, details = judge_each(
        ctx,
        judge,
        reads={"persistence_mode": "persistence_mode"},
        what="persistence mode",
    )
    return verdict(
        gpus,
        problems,
        details,
        fine="on" if any(g.persistence_mode is True for g in gpus) else "not available",
        fix="Ask an administrator to enable the NVIDIA persistence daemon (envcheck never changes it).",
        command="sudo systemctl enable --now nvidia-persistenced",
        query="nvidia-smi --query-gpu=index,persistence_mode --format=csv",
    )


@check("gpu.compute_mode", "Compute mode")
def compute_mode(ctx: Context) -> Verdict:
    """Exclusive-process mode lets one process use the GPU; prohibited lets none (DataParallel, NCCL tests fail)."""

    def judge(g: GpuInfo) -> tuple[str, str] | None:
        if available(g.compute_mode) and g.compute_mode in ("prohibited", "exclusive_process", "exclusive_thread"):
            return "warn", f"compute mode {g.compute_mode.replace('_', '-')}"
        return None

    gpus, problems, details = judge_each(ctx, judge, reads={"compute_mode": "compute_mode"}, what="compute mode")
    return verdict(
        gpus,
        problems,
        details,
        fine="default (shared)",
        fix="An administrator set a restrictive compute mode; if it was not intended, ask them to reset it to "
        "default (`nvidia-smi -c DEFAULT`).",
        command="nvidia-smi --query-gpu=index,compute_mode --format=csv",
    )


@check("gpu.mig", "MIG mode")
def mig(ctx: Context) -> Verdict:
    """With MIG on, CUDA sees GPU instances, not whole GPUs; a pending change needs a reset."""

    def judge(g: GpuInfo) -> tuple[str, str] | None:
        if available(g.mig_mode_current) and available(g.mig_mode_pending):
            if g.mig_mode_current != g.mig_mode_pending:
                state = "on" if g.mig_mode_pending else "off"
                return "warn", f"MIG {'on' if g.mig_mode_current else 'off'}, {state} pending a GPU reset"
        return None

    gpus, problems, details = judge_each(
        ctx,
        judge,
        reads={"current": "mig_mode_current", "pending": "mig_mode_pending"},
        what="MIG mode",
    )
    enabled = [label(g) for g in gpus if g.mig_mode_current is True]
    # A card without MIG (NOT_SUPPORTED) is off; a mode that could not be read is not known to be.
    unread = [label(g) for g in gpus if not available(g.mig_mode_current) and g.mig_mode_current != NA(NOT_SUPPORTED)]
    fine = "MIG off" if not unread else f"MIG mode not read on {', '.join(unread)}"
    if enabled:
        fine = f"MIG enabled on {', '.join(enabled)}: CUDA sees its instances"
    return verdict(
        gpus,
        problems,
        details,
        fine=fine,
        fix="A MIG mode change waits for a GPU reset; ask an administrator to reset the GPU or reboot.",
        command="nvidia-smi -q -d MIG",
    )


@check("gpu.count", "GPUs on the bus vs the driver")
def gpu_count(ctx: Context) -> Verdict:
    """Every NVIDIA GPU the PCI bus shows (display and 3D controllers in sysfs; NVSwitches are not GPUs) is
    one the driver enumerates: "PCI sees 8, the driver 7" names the missing bus id, a GPU the driver dropped
    at boot (fallen off the bus, a failed init) that no NVML check can see. The lab spec's count is judged by
    its own check."""
    from envcheck.core.machine import captured
    from envcheck.probes import pci
    from envcheck.probes.host import read_container

    state = nvml_state(ctx)  # without NVML it skips as every GPU check does: driver.nvml judges that
    if state is None:
        raise SkipCheck("NVML unavailable; see driver.nvml")
    shut = [g for g in state.gpus if refused(g.pci_bus_id)]
    if shut:  # without every bus id, a GPU the driver has cannot be told from one it lacks
        return warn(
            f"the driver refused to read the PCI bus id of {', '.join(label(g) for g in shut)} (no permission)",
            REFUSED_FIX,
            "sudo nvidia-smi --query-gpu=index,pci.bus_id --format=csv",
        )
    drivers = {pci.normal(a): d for a, d in pci.gpu_drivers(ctx.probe("pci"), ctx.env).items()}
    # A GPU bound to another driver (vfio-pci for a VM's passthrough, nouveau) is given away on purpose.
    elsewhere = sorted(a for a, d in drivers.items() if d is not None and d != "nvidia")
    on_bus = {a for a in drivers if a not in elsewhere}
    if not on_bus:
        raise SkipCheck("no NVIDIA GPU on the PCI bus for the nvidia driver (or /sys/bus/pci not readable here)")
    known = {pci.normal(str(g.pci_bus_id)) for g in state.gpus if available(g.pci_bus_id)}
    missing = sorted(on_bus - known)
    counts = {"pci": len(on_bus), "driver": len(state.gpus), "missing": missing, "bound_elsewhere": elsewhere}
    if not missing:
        return ok(f"PCI sees {len(on_bus)}, the driver {len(state.gpus)}", **counts)
    container = None if captured(ctx.env) else read_container(ctx.env).kind
    if container is not None:
        # sysfs is not namespaced: a container sees the host's whole bus but only the GPUs passed in.
        return ok(f"PCI sees {len(on_bus)}, the driver {len(state.gpus)} (a {container} container: the others "
                  "are not passed in)", **counts)  # fmt: skip
    if ctx.env.get("SLURM_JOB_ID"):
        # Slurm's device cgroup (ConstrainDevices) shows a job only the GPUs it was given.
        return skip(f"PCI sees {len(on_bus)}, the driver {len(state.gpus)} inside Slurm job "
                    f"{ctx.env['SLURM_JOB_ID']}: a job sees only its GPUs, so the node's count is not judged here",
                    **counts)  # fmt: skip
    return fail(
        f"PCI sees {len(on_bus)}, the driver {len(state.gpus)}: missing {', '.join(missing)}",
        "The driver did not take these GPUs: read the kernel log for their bus ids (an Xid 79, 'fallen off the "
        "bus', 'RmInitAdapter failed'); reset or reboot, and if it recurs reseat the card or ask for an RMA.",
        f"sudo dmesg -T | grep -iE '{'|'.join(missing)}|NVRM'",
        **counts,
    )
