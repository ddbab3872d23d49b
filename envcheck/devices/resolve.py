"""``--device``: parse what the user asked for, then resolve it once into :class:`DeviceInfo` objects.

Parsing is pure (testable without torch); resolution takes torch's inventory and NVML's view as data;
only :func:`inventory`, :func:`describe_gpu` and :func:`describe_cpu` read the machine. A device is
resolved here once, with its NVML identity (uuid, PCI bus id) and the memory it may use, and every
later step gets that object: nothing downstream parses ``"cuda:N"`` again. A request that cannot be
met is a :class:`DeviceError` whose message is one line and names what *is* available.

Two places resolve. ``envcheck bench`` itself never imports torch: :func:`from_probe` resolves the
request from what the doctor's torch child reported (each GPU's name, compute capability and UUID) and
NVML (identity, memory), so the parent starts no CUDA context, which would hold memory on every GPU for
the whole run, and in exclusive-process compute mode would lock the workers out of their own GPU. Each
bench worker then describes its one device with torch (:func:`describe_gpu`, :func:`describe_cpu`: free
memory as CUDA reports it, L2 size, SM count, threads) under the ``CUDA_VISIBLE_DEVICES`` that
:func:`pin` gives it. :func:`resolve_devices` does both in one process, for tools that run there
(benchmarks/bench_vs_raw.py).
"""

from __future__ import annotations

import os
import platform
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from envcheck.bench.model import BenchError, DeviceInfo
from envcheck.core.exit import ExitCode
from envcheck.core.model import Status, available, first_line

if TYPE_CHECKING:
    from envcheck.probes.nvml.inventory import GpuInfo, NvmlState
    from envcheck.probes.torch import TorchInfo

ACCEPTED = "auto, cpu, cuda, cuda:N or cuda:N,M,..."
#: The variable is envcheck.probes.visible's, which reads it the way CUDA does and is imported only where
#: it is read: importing it loads every doctor check, a quarter of a second in each bench worker.
VISIBLE = "CUDA_VISIBLE_DEVICES"


class DeviceError(BenchError):
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
    from envcheck.probes.visible import device_order_note, parse_visible_devices

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
    from envcheck.probes.visible import parse_visible_devices

    visibility = parse_visible_devices(env.get(VISIBLE), gpus)
    failures = [sentence for status, sentence in visibility.problems if status is Status.FAIL]
    return failures[0] if failures else None


def inventory(env: Mapping[str, str] | None = None) -> Inventory:
    """Ask torch which GPUs it sees; the reason for none names the likely cause."""
    import torch

    env = os.environ if env is None else env
    if torch.version.cuda is None and getattr(torch.version, "hip", None) is None:
        return Inventory((), f"torch {torch.__version__} is a CPU-only build")
    try:
        count = torch.cuda.device_count()
    except Exception as exc:  # noqa: BLE001 - a broken driver makes device_count raise in some torch versions
        return Inventory((), f"CUDA could not initialise: {first_line(exc)}")
    if count == 0:
        return Inventory(
            (),
            f"torch {torch.__version__} built for CUDA {torch.version.cuda} sees no GPU{_visible_note(env)}"
            "; `envcheck doctor` says why",
        )
    return Inventory(tuple(torch.cuda.get_device_name(i) for i in range(count)))


def describe_gpu(
    index: int,
    nvml: NvmlState | None,
    env: Mapping[str, str],
    *,
    shown_as: str | None = None,
    known: Identity | None = None,
) -> DeviceInfo:
    """Probe CUDA device ``index``: model, compute capability, free memory, L2 size (they size problems
    and pick the datasheet peak), and its NVML identity. ``shown_as``: the name the user knows the
    device by, for the error (a bench worker sees its GPU as cuda:0 whichever it is); ``known``: its
    identity, where the caller has it already (a bench worker has it from its parent)."""
    import torch

    name = f"cuda:{index}"
    try:
        props = torch.cuda.get_device_properties(index)
        free, total = torch.cuda.mem_get_info(index)
    except Exception as exc:  # noqa: BLE001 - counted but unusable: busy in exclusive mode, lost, a failed CUDA init
        raise DeviceError(
            f"{shown_as or name} is visible but cannot be used ({first_line(exc)}); `envcheck doctor` says why",
            ExitCode.FAILED,
        ) from None
    torch_uuid = getattr(props, "uuid", None)
    identity = known or identify(index, str(torch_uuid) if torch_uuid is not None else None, nvml, env)
    return DeviceInfo(
        name,
        "cuda",
        props.name,
        index=index,
        capability=(props.major, props.minor),
        total_bytes=total,
        free_bytes=free,
        l2_bytes=getattr(props, "L2_cache_size", None),
        multiprocessors=props.multi_processor_count,
        uuid=identity.uuid,
        pci_bus_id=identity.pci_bus_id,
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


def describe_cpu() -> DeviceInfo:
    """The CPU: its model, torch's thread count, and the memory this process may really use."""
    import torch

    return replace(cpu_here(), threads=torch.get_num_threads())


def resolve_devices(request: Request, *, nvml: NvmlState | None, env: Mapping[str, str]) -> list[DeviceInfo]:
    """The devices to benchmark, each described once. On a machine with NVIDIA GPUs, a request for GPUs
    under a CUDA_VISIBLE_DEVICES that hides all of them by mistake is an error naming the variable, not
    a silent fall-back to the CPU."""
    if not request.may_use_gpus:
        return [describe_cpu()]
    problem = visibility_problem(nvml, env)
    if problem is not None:
        raise DeviceError(f"{problem}: no GPU to benchmark; fix {VISIBLE}, or use --device cpu", ExitCode.FAILED)
    indices = resolve(request, inventory(env), env)
    if indices is None:
        return [describe_cpu()]
    return [describe_gpu(i, nvml, env) for i in indices]


def from_probe(
    request: Request, torch: TorchInfo, *, nvml: NvmlState | None, env: Mapping[str, str]
) -> list[DeviceInfo]:
    """The devices to benchmark, resolved without importing torch here: from the torch child's report
    (CUDA's numbering, each GPU's name, capability and UUID) and NVML's view (identity, memory). What
    only CUDA can tell (L2 size, SM count, the memory a context leaves free) the bench worker adds."""
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
                uuid=identity.uuid,
                pci_bus_id=identity.pci_bus_id,
            )
        )
    return chosen


def _nvml_bytes(value: object) -> int | None:
    return int(value) if available(value) and isinstance(value, int) else None


def probed_inventory(torch: TorchInfo, env: Mapping[str, str]) -> Inventory:
    """:func:`inventory`'s answer, from the torch child's report instead of torch in this process."""
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
    total, free = usable_memory()
    return DeviceInfo("cpu", "cpu", cpu_model(), total_bytes=total, free_bytes=free)


def pin(dev: DeviceInfo, env: Mapping[str, str]) -> str:
    """The ``CUDA_VISIBLE_DEVICES`` under which a bench worker sees ``dev`` alone, as cuda:0.

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


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what platform knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"
