"""``--device``: parse what the user asked for, resolve it once into :class:`DeviceInfo` objects, and
refuse to start workers on a torch or a GPU that cannot run them. Used alike by ``bench``, ``burn`` and
``comm``.

Parsing is pure (testable without torch); resolution takes torch's inventory and NVML's view as data. A
device is resolved here once, in the parent, with its NVML identity (uuid, PCI bus id) and the memory it
may use, and every later step gets that object: nothing downstream parses ``"cuda:N"`` again. A request
that cannot be met is a :class:`DeviceError` whose message is one line and names what *is* available.

The parent never imports torch: :func:`from_probes` resolves the request from what the doctor's torch
child reported (each GPU's name, compute capability and UUID, and whether its test matmul ran) and NVML
(identity, memory), so the parent starts no CUDA context, which would hold memory on every GPU for the
whole run, and in exclusive-process compute mode would lock the workers out of their own GPU. The
description travels to the device's worker (pinned to its GPU by :func:`pin`), which adds only what the
process that runs the work can tell (:func:`measure_here`: torch's threads, the memory its CUDA context
leaves free, the L2 size, the SM count) and keeps the parent's label and identity.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from envcheck.core.errors import CommandError
from envcheck.core.exit import ExitCode
from envcheck.core.model import Status, available, first_line
from envcheck.devices.model import DeviceInfo
from envcheck.probes.visible import VISIBLE, device_order_note, parse_visible_devices

if TYPE_CHECKING:
    from envcheck.probes.nvml.inventory import GpuInfo, NvmlState
    from envcheck.probes.torch import TorchInfo

ACCEPTED = "auto, cpu, cuda, cuda:N or cuda:N,M,..."
#: What the probes behind device resolution (the torch child, NVML) may take together, for every command
#: that resolves devices this way. The torch child itself stops at 40 s (ENVCHECK_TORCH_TIMEOUT changes
#: that), so a hung import ends there.
PROBE_DEADLINE_S = 60.0
#: On top of twice the torch child's own limit for the same steps (importing torch, starting CUDA): what a
#: worker does before its first unit of work (measuring its device, building its cases). Twice, because
#: every worker of a node imports torch at the same time, sharing the disk (often a network filesystem)
#: and the CPUs.
STARTUP_EXTRA_S = 10.0

#: Probe data by name (``ProbeRunner.get``): ``"torch"``, ``"nvml"``; raises ProbeTimeout or ProbeFailed.
Probe = Callable[[str], Any]


class DeviceError(CommandError):
    """A ``--device`` that cannot be used. ``exit_code`` is USAGE for a malformed or unknown string and
    FAILED for a well-formed request the machine cannot meet (no GPU, a missing index)."""


@dataclass(frozen=True)
class Request:
    kind: str  # "auto", "cpu" or "cuda"
    indices: tuple[int, ...] | None = None  # None: every visible GPU

    @property
    def may_use_gpus(self) -> bool:
        return self.kind != "cpu"


_CUDA_LIST = re.compile(r"^cuda:(\d+)((?:,(?:cuda:)?\d+)*)$")


def parse(text: str) -> Request:
    """Parse ``--device``. Accepts ``cuda:0,1`` and ``cuda:0,cuda:1``; rejects anything else with USAGE."""
    spec = text.strip().lower()
    if spec in ("auto", "cpu", "cuda"):
        return Request(spec)
    match = _CUDA_LIST.match(spec.replace(" ", ""))
    if not match:
        raise DeviceError(f"unknown device {text!r}; use {ACCEPTED}", ExitCode.USAGE)
    rest = [r.removeprefix("cuda:") for r in match.group(2).split(",") if r]
    indices = tuple(int(i) for i in [match.group(1), *rest])
    if len(set(indices)) != len(indices):
        raise DeviceError(f"device {text!r} names a GPU twice", ExitCode.USAGE)
    return Request("cuda", indices)


@dataclass(frozen=True)
class Inventory:
    """The GPUs torch can see (in CUDA's numbering), and why there are none when there are none."""

    names: tuple[str, ...]
    why_none: str = ""

    def available(self) -> str:
        gpus = [f"cuda:{i} ({n})" for i, n in enumerate(self.names)]
        return ", ".join(["cpu", *gpus])


def resolve(request: Request, inv: Inventory, env: Mapping[str, str] | None = None) -> tuple[int, ...] | None:
    """The CUDA indices to benchmark, or None for the CPU; a :class:`DeviceError` names what is available."""
    env = os.environ if env is None else env
    count = len(inv.names)
    if request.kind == "cpu":
        return None
    if request.kind == "auto":
        return tuple(range(count)) or None
    if count == 0:
        raise DeviceError(f"no CUDA device is visible ({inv.why_none}); available: cpu", ExitCode.FAILED)
    if request.indices is None:
        return tuple(range(count))
    missing = [i for i in request.indices if i >= count]
    if missing:
        raise DeviceError(
            f"cuda:{missing[0]} does not exist: {count} GPU{'s' if count != 1 else ''} visible"
            f"{_visible_note(env)}; available: {inv.available()}",
            ExitCode.FAILED,
        )
    return request.indices


def _visible_note(env: Mapping[str, str]) -> str:
    visible = env.get(VISIBLE)
    return f" ({VISIBLE}={visible})" if visible is not None else ""


@dataclass(frozen=True)
class Identity:
    """Which physical GPU a CUDA index is, in NVML's terms; None where that cannot be told for sure."""

    uuid: str | None = None
    pci_bus_id: str | None = None


def _bare(uuid: str) -> str:
    """A UUID without its ``GPU-``/``MIG-`` prefix, lower case: torch prints the bare form, NVML the prefixed."""
    text = uuid.strip().lower()
    return text[4:] if text.startswith(("gpu-", "mig-")) else text


def identify(index: int, torch_uuid: str | None, nvml: NvmlState | None, env: Mapping[str, str]) -> Identity:
    """NVML's identity of CUDA device ``index``.

    torch's own UUID for the device settles it where torch reports one (any CUDA_DEVICE_ORDER, any
    CUDA_VISIBLE_DEVICES form). Otherwise CUDA_VISIBLE_DEVICES is read the way CUDA reads it (indices,
    GPU- UUID prefixes; envcheck.probes.visible): the Nth visible entry is CUDA device N. A MIG instance
    is named by its MIG- entry; its PCI bus is its parent's when only one GPU has MIG enabled. Where the
    order is uncertain (GPUs of different models and CUDA's fastest-first order), nothing is guessed.
    """
    gpus = nvml.gpus if nvml is not None and nvml.available else []
    if torch_uuid:
        for gpu in gpus:
            if available(gpu.uuid) and _bare(str(gpu.uuid)) == _bare(torch_uuid):
                return Identity(str(gpu.uuid), _pci(gpu))
    value = env.get(VISIBLE)
    visibility = parse_visible_devices(value, gpus)
    if visibility.indices is None:  # MIG instances
        entries = [e.strip() for e in (value or "").split(",")]
        entry = entries[index] if index < len(entries) and entries[index].startswith("MIG-") else None
        uuid = f"MIG-{_bare(torch_uuid)}" if torch_uuid else entry
        parents = [g for g in gpus if g.mig_mode_current is True]
        return Identity(uuid, _pci(parents[0]) if len(parents) == 1 else None)
    if index >= len(visibility.indices) or device_order_note(env, gpus) is not None:
        return Identity(f"GPU-{_bare(torch_uuid)}" if torch_uuid else None)
    gpu = gpus[visibility.indices[index]]
    return Identity(str(gpu.uuid) if available(gpu.uuid) else None, _pci(gpu))


def _pci(gpu: GpuInfo) -> str | None:
    return str(gpu.pci_bus_id) if available(gpu.pci_bus_id) else None


def visibility_problem(nvml: NvmlState | None, env: Mapping[str, str]) -> str | None:
    """Why CUDA_VISIBLE_DEVICES hides every GPU NVML sees *by mistake* (``garbage``, a GPU named twice, a
    UUID that matches none), or None. Hiding them on purpose (``""``, ``-1``) is not a problem."""
    gpus = nvml.gpus if nvml is not None and nvml.available else []
    if not gpus:
        return None
    visibility = parse_visible_devices(env.get(VISIBLE), gpus)
    failures = [sentence for status, sentence in visibility.problems if status is Status.FAIL]
    return failures[0] if failures else None


def from_probes(request: Request, probe: Probe, env: Mapping[str, str]) -> tuple[list[DeviceInfo], TorchInfo]:
    """The devices ``request`` names, resolved from the torch child's report and NVML's view (``probe``
    gives them by name; start both before calling, so they run at once), after making sure torch can run
    the workers there: one line and exit 1 when it cannot (:func:`torch_ready`, :func:`devices_ready`)."""
    torch = torch_from(probe)
    torch_ready(torch, gpus=request.may_use_gpus)
    nvml = nvml_from(probe) if request.may_use_gpus else None
    chosen = from_probe(request, torch, nvml=nvml, env=env)
    devices_ready(torch, chosen)
    return chosen, torch


def torch_from(probe: Probe) -> TorchInfo:
    """The torch child's report; a torch probe that hung past its deadline or broke is one line."""
    from envcheck.core.probing import ProbeFailed, ProbeTimeout

    try:
        info: TorchInfo = probe("torch")
    except (ProbeTimeout, ProbeFailed) as exc:
        raise DeviceError(f"torch could not be checked: {first_line(exc)}", ExitCode.FAILED) from None
    return info


#: What every command says when there is no torch to run its workers with.
TORCH_MISSING = "torch is not installed; `envcheck doctor` says which build to install"


def torch_installed() -> None:
    """Refuse at once where no torch is installed, for a run that starts its workers without asking the
    torch child first (comm's CPU ranks): the same words as :func:`torch_ready`."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        raise DeviceError(TORCH_MISSING, ExitCode.FAILED)


def torch_ready(info: TorchInfo, *, gpus: bool) -> None:
    """Refuse to start workers when importing torch in the child did not end well: one line naming what
    happened there (the exception, the signal, or the step that hung). After a clean import, a CUDA start
    that crashed or hung only matters to a run that would start CUDA too (``gpus``)."""
    if info.status == "ok":
        return
    if info.status == "not_installed":
        raise DeviceError(TORCH_MISSING, ExitCode.FAILED)
    imported = info.import_s is not None
    if imported and not gpus:
        return
    detail = first_line(info.error) if info.error else info.status
    if info.status != "import_error" and "child" not in detail:  # a crash or a hang: say it was not envcheck
        detail += ", in a child process"
    what = "used" if imported else "imported"
    raise DeviceError(f"torch cannot be {what} ({detail}); `envcheck doctor` says why", ExitCode.FAILED)


def devices_ready(info: TorchInfo, chosen: list[DeviceInfo]) -> None:
    """A chosen GPU on which the child's 64×64 test matmul raised (a bad PYTORCH_CUDA_ALLOC_CONF, a GPU
    in a bad state) would fail every unit of work there: say so once instead."""
    by_index = {d.index: d for d in info.devices}
    for dev in chosen:
        child = by_index.get(dev.index) if dev.is_cuda else None
        error = child and (child.error or child.matmul_error)
        if error:
            raise DeviceError(
                f"{dev.name} cannot run torch's test matmul ({first_line(error)}, in a child process); "
                "`envcheck doctor` says why",
                ExitCode.FAILED,
            )


def nvml_from(probe: Probe) -> NvmlState | None:
    """NVML's view, for the GPUs' identity; None where NVML does not answer (identity then unknown)."""
    from envcheck.core.probing import ProbeFailed, ProbeTimeout

    try:
        state: NvmlState = probe("nvml")
    except (ProbeTimeout, ProbeFailed):
        return None
    return state


def startup_deadline(env: Mapping[str, str]) -> float:
    """Seconds a worker may take to import torch, start CUDA and make its device ready. It follows
    ``ENVCHECK_TORCH_TIMEOUT``, the limit the doctor's torch child has for the same steps (40 s by
    default: 90 s here)."""
    from envcheck.probes.torch import child_timeout

    return 2 * child_timeout(env) + STARTUP_EXTRA_S


def measure_here(dev: DeviceInfo) -> DeviceInfo:
    """The parent's description of ``dev`` with what only the process that runs the work can tell: torch's
    thread count (a CPU), or, starting CUDA on the card, the memory this process's context leaves free, the
    L2 size and the SM count. Its label, model and identity stay the parent's: nothing is described again.
    A GPU that is counted but cannot be used (busy in exclusive mode, lost) is a :class:`DeviceError`."""
    import torch

    if not dev.is_cuda:
        return replace(dev, threads=torch.get_num_threads())
    try:
        props = torch.cuda.get_device_properties(dev.cuda_index)
        free, total = torch.cuda.mem_get_info(dev.cuda_index)
    except Exception as exc:  # noqa: BLE001 - counted but unusable: busy in exclusive mode, lost, a failed CUDA init
        raise DeviceError(
            f"{dev.name} is visible but cannot be used ({first_line(exc)}); `envcheck doctor` says why",
            ExitCode.FAILED,
        ) from None
    return replace(
        dev,
        capability=dev.capability or (props.major, props.minor),
        total_bytes=total,
        free_bytes=free,
        l2_bytes=getattr(props, "L2_cache_size", None),
        multiprocessors=props.multi_processor_count,
    )


def usable_memory() -> tuple[int, int]:
    """(total, still allocatable) bytes of RAM for this process: the host's, capped by the cgroup's limit
    when there is one (in a container or a Slurm job the limit is where the OOM killer strikes, with
    SIGKILL rather than an exception the bench could catch, so sizes must stay under it)."""
    from envcheck.probes.host import read_memory

    memory = read_memory()
    total, free = memory.total_bytes, memory.available_bytes
    if memory.cgroup_limit_bytes is not None:
        total = min(total, memory.cgroup_limit_bytes)
        free = min(free, max(0, memory.cgroup_limit_bytes - (memory.cgroup_used_bytes or 0)))
    return total, free


def from_probe(
    request: Request, torch: TorchInfo, *, nvml: NvmlState | None, env: Mapping[str, str]
) -> list[DeviceInfo]:
    """The devices to use, resolved without importing torch here: from the torch child's report (CUDA's
    numbering, each GPU's name, capability, UUID, L2 size and SM count) and NVML's view (identity, memory),
    so that every case is planned from the card's L2 here; the worker only reports what its own CUDA
    context leaves free (:func:`measure_here`).
    On a machine with NVIDIA GPUs, a request for GPUs under a CUDA_VISIBLE_DEVICES that hides all of them by
    mistake is an error naming the variable, not a silent fall-back to the CPU."""
    if not request.may_use_gpus:
        return [cpu_here()]
    problem = visibility_problem(nvml, env)
    if problem is not None:
        raise DeviceError(f"{problem}: no GPU to benchmark; fix {VISIBLE}, or use --device cpu", ExitCode.FAILED)
    indices = resolve(request, probed_inventory(torch, env), env)
    if indices is None:
        return [cpu_here()]
    by_index = {d.index: d for d in torch.devices}
    gpus = nvml.gpus if nvml is not None and nvml.available else []
    chosen = []
    for index in indices:
        child = by_index[index]
        identity = identify(index, child.uuid, nvml, env)
        card = next((g for g in gpus if identity.uuid and available(g.uuid) and str(g.uuid) == identity.uuid), None)
        total = _nvml_bytes(card.memory_total_bytes) if card is not None else None
        free = _nvml_bytes(card.memory_free_bytes) if card is not None else None
        chosen.append(
            DeviceInfo(
                f"cuda:{index}",
                "cuda",
                child.name or "unknown GPU",
                index=index,
                capability=child.capability,
                total_bytes=total,
                free_bytes=free,
                l2_bytes=child.l2_bytes,
                multiprocessors=child.multiprocessors,
                uuid=identity.uuid,
                pci_bus_id=identity.pci_bus_id,
            )
        )
    return chosen


def _nvml_bytes(value: object) -> int | None:
    return int(value) if available(value) and isinstance(value, int) else None


def probed_inventory(torch: TorchInfo, env: Mapping[str, str]) -> Inventory:
    """The GPUs torch sees, from the torch child's report, and why there are none when there are none."""
    if torch.cuda is None and torch.hip is None:
        return Inventory((), f"torch {torch.version} is a CPU-only build")
    if not torch.cuda_available or not torch.devices:
        if torch.cuda_init_error:
            return Inventory((), f"CUDA could not initialise: {first_line(torch.cuda_init_error)}")
        return Inventory(
            (),
            f"torch {torch.version} built for CUDA {torch.cuda} sees no GPU{_visible_note(env)}"
            "; `envcheck doctor` says why",
        )
    return Inventory(tuple(d.name or f"GPU {d.index}" for d in sorted(torch.devices, key=lambda d: d.index)))


def cpu_here() -> DeviceInfo:
    """The CPU as the parent knows it without torch (its worker adds torch's thread count)."""
    from envcheck.probes.host import cpu_model

    total, free = usable_memory()
    return DeviceInfo("cpu", "cpu", cpu_model(), total_bytes=total, free_bytes=free)


def pin(dev: DeviceInfo, env: Mapping[str, str]) -> str:
    """The ``CUDA_VISIBLE_DEVICES`` under which a worker sees ``dev`` alone, as cuda:0 (:meth:`DeviceInfo.pinned`).

    By UUID where one is known (NVML's ``GPU-``/``MIG-`` form, or torch's own): it names the card
    whatever the numbering. Else CUDA's index, read through the user's own ``CUDA_VISIBLE_DEVICES``: its
    Nth entry is CUDA device N (under the same CUDA_DEVICE_ORDER, which the worker inherits). A CPU's
    worker sees no GPU at all: a CPU bench never starts CUDA, so a wedged driver cannot hold it up.
    """
    if not dev.is_cuda or dev.index is None:
        return ""
    if dev.uuid:
        return dev.uuid
    entries = [e.strip() for e in env[VISIBLE].split(",")] if env.get(VISIBLE) else None
    if entries is not None and dev.index < len(entries):
        return entries[dev.index]
    return str(dev.index)
