"""The doctor's areas, its named selections (``--quick``, opt-in checks, the bench's preflight) and the
check registry.

This is the doctor's policy, not the ground floor's: which areas exist, in which order the report shows
them, and which run in the healthcheck. A check registers itself here where it is defined
(``@check("gpu.ecc", ...)`` in ``doctor/checks/gpu.py``), so adding one touches one file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from envcheck.core.registry import CheckSpec, Registry, UnknownSelection, first_paragraph

if TYPE_CHECKING:
    from envcheck.core.model import Verdict
    from envcheck.core.probing import Context


@dataclass(frozen=True)
class Area:
    """One part of the doctor's report: its title, the probes its checks lean on (started together, before
    any check waits on one) and whether ``--quick`` (the healthcheck) runs it, or which of its checks it runs
    (``quick_checks``: the cheap ones of an area that is otherwise too slow for it)."""

    id: str
    title: str
    probes: tuple[str, ...]
    quick: bool = False
    quick_checks: tuple[str, ...] = ()


#: The areas in the order the report shows them. A new area is one entry here and one module of checks in
#: ``envcheck/doctor/checks/``.
AREA_LIST = (
    Area("host", "Host", ("host", "disk"), quick=True),
    Area("packages", "Packages", ("packages", "nvml")),
    Area("driver", "Driver and NVML", ("nvml",), quick=True),
    Area("gpu", "GPUs", ("nvml", "pci"), quick=True),
    Area("fabric", "GPU fabric (NVLink, P2P, topology)", ("fabric", "nvml")),
    Area("pcie", "PCIe (ACS, IOMMU)", ("pci",)),
    Area("net", "Network under NCCL (InfiniBand/RoCE, GPUDirect RDMA)", ("net", "nvml", "pci")),
    # The healthcheck reads this boot's log since its last run (envcheck.probes.kernel.since_last_run), and judges
    # only the Xids: an AER or crash history is the full doctor's.
    Area("kernel", "Kernel log (Xid, PCIe AER, crashes)", ("kernel_log", "nvml", "pci"), quick_checks=("kernel.xid",)),
    Area("torch", "torch and CUDA", ("torch", "nvml", "toolkit")),
    Area("compile", "torch.compile (Inductor and Triton)", ("compile", "packages", "nvml")),
    Area("jax", "JAX", ("jax", "nvml", "packages")),
    Area("env", "Environment variables", ("nvml", "packages")),
    Area("spec", "Lab spec", ("host", "disk", "packages", "nvml")),
)

#: Area id -> title, in report order.
AREAS: dict[str, str] = {area.id: area.title for area in AREA_LIST}

#: Area id -> the probes its checks lean on.
AREA_PROBES: dict[str, tuple[str, ...]] = {area.id: area.probes for area in AREA_LIST}

#: Areas that ``--quick`` (the Docker healthcheck) runs: none of them imports or spawns torch.
QUICK_AREAS = tuple(area.id for area in AREA_LIST if area.quick)
#: Checks ``--quick`` runs from the other areas (their probes are cheap in the healthcheck).
QUICK_CHECKS = tuple(c for area in AREA_LIST if not area.quick for c in area.quick_checks)

#: The checks that decide whether a GPU can be benchmarked at all: the torch build has kernels
#: for the card, and no other process holds most of its memory (the bench's preflight, over its chosen GPUs).
PREFLIGHT = ("torch.arch", "gpu.memory")

#: Checks that run only when a flag asks for them (``--require-gpu``), never by area or by default.
OPT_IN = ("gpu.required",)


CHECKS: Registry[CheckSpec] = Registry("check", AREAS, group_word="areas", package="envcheck.doctor.checks")


def check(check_id: str, title: str) -> Callable[[Callable[[Context], Verdict]], Callable[[Context], Verdict]]:
    """Register a check. Its docstring's first paragraph is what ``--list-checks`` shows."""

    def register(fn: Callable[[Context], Verdict]) -> Callable[[Context], Verdict]:
        CHECKS.add(CheckSpec(check_id, title, fn, first_paragraph(fn.__doc__ or title)))
        return fn

    return register


def select_checks(
    names: list[str] | tuple[str, ...], *, quick: bool = False, opt_in: tuple[str, ...] = ()
) -> list[CheckSpec]:
    """The doctor's selection: ids or areas, in report order; ``quick`` keeps the healthcheck's areas;
    ``opt_in`` adds flag-enabled checks (:data:`OPT_IN`), which nothing else selects."""
    healthcheck = set(QUICK_AREAS) | set(QUICK_CHECKS)
    pool = [c for c in CHECKS.ordered() if (not quick or {c.area, c.id} & healthcheck) and c.id not in OPT_IN]
    # Naming an opt-in check opts into it; a selection of nothing else runs just that check.
    named = [n for n in names if n not in OPT_IN]
    wanted = dict.fromkeys([*opt_in, *(n for n in names if n in OPT_IN)])
    try:
        chosen = CHECKS.select(named, within=pool, exclude=OPT_IN) if named or not names else []
        return chosen + [CHECKS[i] for i in wanted]
    except UnknownSelection as exc:
        if quick and str(exc).startswith("not available"):
            raise UnknownSelection(
                f"--quick runs only the {', '.join(QUICK_AREAS)} areas, not {str(exc).split(': ', 1)[1]}"
                f" (and {', '.join(QUICK_CHECKS)} of the other areas)"
            ) from None
        raise UnknownSelection(
            str(exc).replace("unknown check", "unknown check or area", 1) + "; see `envcheck doctor --list-checks`"
        ) from None
