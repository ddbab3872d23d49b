"""Turn every requirement of a lab spec into a doctor check with id ``spec.<name>``.

The checks read the same probes as the rest of the doctor (host, disk, packages metadata, NVML) and
never the torch child, so a spec can be enforced by the ``--quick`` healthcheck too. Each failure says
what the spec expected, what this machine has, and what to do.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable

from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from envcheck.core.model import Verdict, available, fail, ok
from envcheck.core.probing import Context
from envcheck.core.registry import CheckSpec
from envcheck.core.units import docker_size, human, kubernetes_quantity
from envcheck.doctor.reading import nvml_state
from envcheck.probes import host as _host_probe  # noqa: F401 - registers "host" and "disk"
from envcheck.probes import net as _net_probe  # noqa: F401 - registers "net"
from envcheck.probes import packages as _packages_probe  # noqa: F401 - registers "packages"
from envcheck.probes.host import usable_cores, usable_ram
from envcheck.probes.net import fabric_ports
from envcheck.probes.nvml import inventory as _nvml_probe  # noqa: F401 - registers "nvml"
from envcheck.probes.nvml.inventory import GpuInfo
from envcheck.spec import LabSpec

SPEC_FIX = "(Lab spec: {path}; change the spec instead if the lab's standard has moved.)"


def spec_checks(spec: LabSpec) -> list[CheckSpec]:
    """One check per requirement present in ``spec``, in the order the README documents them."""
    made: list[CheckSpec] = []

    def add(name: str, title: str, fn: Callable[[Context], Verdict]) -> None:
        made.append(CheckSpec(f"spec.{name}", title, fn, title))

    python = spec.get("python", "version")
    if python:
        add("python", "Lab spec: Python", lambda c: _python(c, spec, python))
    torch_version = spec.get("torch", "version")
    if torch_version:
        add("torch_version", "Lab spec: torch version", lambda c: _torch_version(c, spec, torch_version))
    torch_cuda = spec.get("torch", "cuda")
    if torch_cuda:
        add("torch_cuda", "Lab spec: torch build", lambda c: _torch_cuda(c, spec, torch_cuda))
    driver = spec.get("driver", "min_version")
    if driver:
        add("driver", "Lab spec: driver version", lambda c: _driver(c, spec, driver))
    gpu = spec.sections.get("gpu", {})
    if "name" in gpu:
        add("gpu_name", "Lab spec: GPU model", lambda c: _gpu_name(c, spec, gpu["name"]))
    if "count" in gpu or "min_count" in gpu:
        add(
            "gpu_count",
            "Lab spec: GPU count",
            lambda c: _gpu_count(c, spec, gpu.get("count"), gpu.get("min_count")),
        )
    if "min_memory" in gpu:
        add("gpu_memory", "Lab spec: GPU memory", lambda c: _gpu_memory(c, spec, gpu["min_memory"]))
    if "min_compute_capability" in gpu:
        need = gpu["min_compute_capability"]
        add("gpu_compute_capability", "Lab spec: compute capability", lambda c: _gpu_cc(c, spec, need))
    for name, specifier in spec.packages.items():
        add(
            f"package.{canonicalize_name(name)}",
            f"Lab spec: {name}",
            lambda c, n=name, s=specifier: _package(c, spec, n, s),
        )
    host = spec.sections.get("host", {})
    for key in HOST_MINIMUMS:
        if key in host:
            title = f"Lab spec: {HOST_TITLES[key]}"
            add(f"host_{key[4:]}", title, lambda c, k=key: _host(c, spec, k, host[k]))
    net = spec.sections.get("net", {})
    if "ports" in net:
        add("net_ports", "Lab spec: network ports", lambda c: _net_ports(c, spec, net["ports"], net.get("rate_gbps")))
    if "rate_gbps" in net:
        add("net_rate", "Lab spec: network port rate", lambda c: _net_rate(c, spec, net["rate_gbps"]))
    return made


def _fix(spec: LabSpec, text: str, command: str | None = None) -> tuple[str, str | None]:
    return f"{text} {SPEC_FIX.format(path=spec.path)}", command


def _python(ctx: Context, spec: LabSpec, wanted: str) -> Verdict:
    found = ctx.probe("host").python.version
    if SpecifierSet(wanted).contains(found, prereleases=True):
        return ok(f"Python {found} matches {wanted}")
    text, cmd = _fix(spec, f"Use a Python matching {wanted} (a venv or conda env made with that interpreter).")
    return fail(f"expected Python {wanted}, found {found}", text, cmd, expected=wanted, found=found)


def _torch(ctx: Context):  # noqa: ANN202 - TorchBuild | None
    return ctx.probe("packages").torch


def _torch_version(ctx: Context, spec: LabSpec, wanted: str) -> Verdict:
    torch = _torch(ctx)
    if torch is None:
        text, cmd = _fix(spec, "Install the lab's torch.", f'pip install "torch{wanted}"')
        return fail(f"expected torch {wanted}, found none installed", text, cmd, expected=wanted, found=None)
    if SpecifierSet(wanted).contains(torch.version, prereleases=True):
        return ok(f"torch {torch.version} matches {wanted}")
    text, cmd = _fix(
        spec, "Install the lab's torch version (with the CUDA variant the spec names).", f'pip install "torch{wanted}"'
    )
    return fail(f"expected torch {wanted}, found {torch.version}", text, cmd, expected=wanted, found=torch.version)


def _flavour_matches(torch: object, wanted: str) -> bool:
    kind, version = getattr(torch, "kind", None), getattr(torch, "accelerator_version", None)
    w = wanted.lower()
    if w == "cpu":
        return kind == "cpu"
    if w.startswith("rocm"):
        return kind == "rocm" and (w == "rocm" or version == w[4:])
    return kind == "cuda" and version == wanted


def _torch_cuda(ctx: Context, spec: LabSpec, wanted: str) -> Verdict:
    torch = _torch(ctx)
    label = "CPU-only" if wanted.lower() == "cpu" else wanted if wanted.lower().startswith("rocm") else f"CUDA {wanted}"
    if torch is not None and _flavour_matches(torch, wanted):
        return ok(f"torch build {torch.flavour} matches")
    found = torch.flavour if torch is not None else "no torch"
    text, cmd = _fix(spec, f"Install the torch build for {label} (PyTorch's install selector names the variant).")
    return fail(f"expected a torch build for {label}, found {found}", text, cmd, expected=wanted, found=found)


def _gpus(ctx: Context) -> list[GpuInfo]:
    state = nvml_state(ctx, started=False)
    return [g for g in state.gpus if not g.lost] if state.available else []


def _no_gpus(ctx: Context) -> str:
    state = nvml_state(ctx, started=False)
    return "no GPUs answer" if state.available else f"no GPUs (NVML: {state.status.replace('_', ' ')})"


def _driver(ctx: Context, spec: LabSpec, wanted: str) -> Verdict:
    state = nvml_state(ctx, started=False)
    if not state.available or not state.driver_version:
        text, cmd = _fix(spec, f"Install NVIDIA driver {wanted} or newer (see driver.nvml for what is wrong).")
        return fail(f"expected NVIDIA driver ≥ {wanted}, found none ({state.status.replace('_', ' ')})", text, cmd)
    try:
        good = Version(state.driver_version) >= Version(wanted)
    except InvalidVersion:
        good = False
    if good:
        return ok(f"driver {state.driver_version} ≥ {wanted}")
    text, cmd = _fix(spec, f"Upgrade the NVIDIA driver to {wanted} or newer, then reboot.")
    return fail(f"expected NVIDIA driver ≥ {wanted}, found {state.driver_version}", text, cmd,
                expected=wanted, found=state.driver_version)  # fmt: skip


def _each_gpu(
    ctx: Context,
    spec: LabSpec,
    expected: str,
    good: Callable[[GpuInfo], bool],
    shown: Callable[[GpuInfo], str],
    advice: str,
) -> Verdict:
    """A requirement every working GPU must meet: fails naming each GPU that does not, and how it differs."""
    gpus = _gpus(ctx)
    if not gpus:
        text, cmd = _fix(spec, f"This machine needs {expected}.")
        return fail(f"expected {expected}, found {_no_gpus(ctx)}", text, cmd)
    bad = [g for g in gpus if not good(g)]
    if not bad:
        return ok(f"all {len(gpus)} GPUs: {expected}")
    found = ", ".join(f"GPU {g.index} {shown(g)}" for g in bad)
    text, cmd = _fix(spec, advice)
    return fail(f"expected {expected}; {found}", text, cmd)


def _gpu_name(ctx: Context, spec: LabSpec, pattern: str) -> Verdict:
    return _each_gpu(
        ctx,
        spec,
        f"GPUs matching {pattern!r}",
        lambda g: fnmatch.fnmatch(str(g.name).lower(), pattern.lower()),
        lambda g: f"is {g.name}",
        "This machine has other GPUs than the lab's: schedule the work elsewhere.",
    )


def _gpu_memory(ctx: Context, spec: LabSpec, minimum: int) -> Verdict:
    return _each_gpu(
        ctx,
        spec,
        f"GPUs with ≥ {human(minimum, up=True)}",
        lambda g: available(g.memory_total_bytes) and g.memory_total_bytes >= minimum,
        lambda g: f"has {human(g.memory_total_bytes) if available(g.memory_total_bytes) else 'unknown memory'}",
        "These GPUs have less memory than the lab's jobs need.",
    )


def _gpu_cc(ctx: Context, spec: LabSpec, minimum: str) -> Verdict:
    need = tuple(int(x) for x in minimum.split("."))
    return _each_gpu(
        ctx,
        spec,
        f"GPUs of compute capability ≥ {minimum}",
        lambda g: available(g.compute_capability) and tuple(g.compute_capability) >= need,
        lambda g: "is " + (".".join(map(str, g.compute_capability)) if available(g.compute_capability) else "?"),
        "These GPUs are older than the lab's kernels target (e.g. FlashAttention, fp8 need newer).",
    )


def _gpu_count(ctx: Context, spec: LabSpec, exact: int | None, minimum: int | None) -> Verdict:
    found = len(_gpus(ctx))
    wanted = f"{exact}" if exact is not None else f"at least {minimum}"
    if (exact is not None and found == exact) or (minimum is not None and found >= minimum):
        return ok(f"{found} GPUs, spec wants {wanted}")
    text, cmd = _fix(
        spec,
        "Check that every GPU is seated and answers (`nvidia-smi -L`), and in a container that all are passed "
        "in (`--gpus all`).",
        "nvidia-smi -L",
    )
    why = f"{found} GPUs" if found else _no_gpus(ctx)
    return fail(
        f"expected {wanted} GPUs, found {why}", text, cmd, expected=exact if exact is not None else minimum, found=found
    )


def _package(ctx: Context, spec: LabSpec, name: str, wanted: str) -> Verdict:
    dist = ctx.probe("packages").dists.get(canonicalize_name(name))
    command = f'pip install "{name}{wanted}"'
    if dist is None:
        text, cmd = _fix(spec, f"Install {name}.", command)
        return fail(f"expected {name} {wanted}, found none installed", text, cmd, expected=wanted, found=None)
    if SpecifierSet(wanted).contains(dist.version, prereleases=True):
        return ok(f"{name} {dist.version} matches {wanted}")
    text, cmd = _fix(spec, f"Install the lab's {name}.", command)
    return fail(f"expected {name} {wanted}, found {dist.version}", text, cmd, expected=wanted, found=dist.version)


def _ram(ctx: Context) -> int | None:
    return usable_ram(ctx.probe("host").memory)  # as host.memory shows it


def _shm(ctx: Context) -> int | None:
    shm = ctx.probe("host").shm
    return shm.total_bytes if shm else None


def _work_disk(ctx: Context):  # noqa: ANN202 - DiskSpace | None
    disks = ctx.probe("disk")
    return next((d for d in disks if "working directory" in d.labels), disks[0] if disks else None)


def _free_disk(ctx: Context) -> int | None:
    work = _work_disk(ctx)
    return work.free_bytes if work else None


def _cpus(ctx: Context) -> int | None:
    return usable_cores(ctx.probe("host").cpu)  # as host.cpu counts them


def _container(ctx: Context) -> str | None:
    return ctx.probe("host").container.kind


# Each fix names a value that meets the spec, rounded up: a fix that rounds down leaves the machine failing.
def _ram_fix(ctx: Context, minimum: int, found: int | None) -> tuple[str, str | None]:
    text = f"Use a machine with at least {human(minimum, up=True)} of RAM"
    if _container(ctx) is None:
        return text + ".", None
    option = f"--memory={docker_size(minimum)}"
    return f"{text}, and give the container at least that (`docker run {option}`).", f"docker run {option} …"


def _shm_fix(ctx: Context, minimum: int, found: int | None) -> tuple[str, str | None]:
    size = human(minimum, up=True)
    kind = _container(ctx)
    if kind == "kubernetes":
        return (
            f"Mount an emptyDir with `medium: Memory` and `sizeLimit: {kubernetes_quantity(minimum)}` at /dev/shm "
            f"(at least {size}).",
            None,
        )
    if kind is None:  # the host's own tmpfs: resize it (and in /etc/fstab, to keep it)
        command = f"sudo mount -o remount,size={docker_size(minimum).upper()} /dev/shm"
        return f"Resize /dev/shm to at least {size} (`{command}`, and in /etc/fstab to keep it).", command
    option = f"--shm-size={docker_size(minimum)}"
    return (
        f"Start the container with a /dev/shm of at least {size} (`docker run {option}`), or share the host's "
        "(`--ipc=host`) if that is big enough.",
        f"docker run {option} …",
    )


def _disk_fix(ctx: Context, minimum: int, found: int | None) -> tuple[str, str | None]:
    work = _work_disk(ctx)
    where = f"the filesystem of {work.path}" if work else "the working directory's filesystem"
    if found is None:
        return f"Make at least {human(minimum, up=True)} free on {where}, or work on a bigger volume.", None
    return (
        f"Free at least {human(minimum - found, up=True)} more on {where} (the spec wants {human(minimum, up=True)} "
        "free), or work on a bigger volume.",
        None,
    )


def _cpus_fix(ctx: Context, minimum: int, found: int | None) -> tuple[str, str | None]:
    return (
        f"Give the job at least {minimum} cores (container `--cpus={minimum}`, Slurm `--cpus-per-task={minimum}`, "
        "a wider `taskset`), or use a machine with that many.",
        None,
    )


Reading = Callable[[Context], "int | None"]
Advice = Callable[[Context, int, "int | None"], "tuple[str, str | None]"]
HOST_TITLES = {"min_ram": "RAM", "min_shm": "/dev/shm", "min_free_disk": "free disk", "min_cpus": "CPU cores"}
#: key -> (reading, what it is, how to show a reading, how to show the minimum, what to do).
HOST_MINIMUMS: dict[str, tuple[Reading, str, Callable[[int], str], Callable[[int], str], Advice]] = {
    "min_ram": (_ram, "RAM", human, lambda n: human(n, up=True), _ram_fix),
    "min_shm": (_shm, "/dev/shm", human, lambda n: human(n, up=True), _shm_fix),
    "min_free_disk": (
        _free_disk, "free disk in the working directory", human, lambda n: human(n, up=True), _disk_fix
    ),
    "min_cpus": (_cpus, "usable CPU cores", str, str, _cpus_fix),
}  # fmt: skip


def _host(ctx: Context, spec: LabSpec, key: str, minimum: int) -> Verdict:
    reading, what, show, show_minimum, advice = HOST_MINIMUMS[key]
    found = reading(ctx)
    if found is not None and found >= minimum:
        return ok(f"{what} {show(found)} ≥ {show_minimum(minimum)}")
    text, cmd = _fix(spec, *advice(ctx, minimum, found))
    shown = show(found) if found is not None else "unknown"
    return fail(f"expected {what} ≥ {show_minimum(minimum)}, found {shown}", text, cmd, expected=minimum, found=found)


def _net_ports(ctx: Context, spec: LabSpec, wanted: int, rate: float | None) -> Verdict:
    """The lab's count of the compute fabric's InfiniBand/RoCE ports, counting those up: a port down is one NCCL
    cannot use. The compute fabric is the ports alike (envcheck.probes.net.fabric_ports) at the spec's rate, or
    the fastest: a management or storage NIC of another board is not counted."""
    ports = fabric_ports(ctx.probe("net").ports, rate)
    up = [f"{hca.name}/{port.number}" for hca, port in ports if port.up]
    if len(up) >= wanted:
        return ok(f"{len(up)} ports up, spec wants {wanted}")
    down = [f"{hca.name} port {port.number}" for hca, port in ports if not port.up]
    found = f"{len(up)} up" + (f" ({', '.join(down)} down)" if down else "")
    text, cmd = _fix(
        spec,
        "Bring the ports up (net.ports says which is down and why) and check every HCA is seated and, in a "
        "container, visible (`ibstat`).",
        "ibstat",
    )
    return fail(f"expected {wanted} InfiniBand/RoCE ports up, found {found}", text, cmd, expected=wanted,
                found=len(up))  # fmt: skip


def _net_rate(ctx: Context, spec: LabSpec, wanted: float) -> Verdict:
    """Every port of the compute fabric that is up runs at the lab's rate (a cable that trained at 200 among
    400 Gb/s ports fails); a 25 GbE management NIC of another board is not the fabric (fabric_ports)."""
    ports = [(hca, port) for hca, port in fabric_ports(ctx.probe("net").ports, wanted) if port.up]
    if not ports:
        text, cmd = _fix(spec, "This machine needs InfiniBand/RoCE ports up (see net.ports).", "ibstat")
        return fail(f"expected ports at {wanted:g} Gb/s, found none up", text, cmd, expected=wanted, found=None)
    slow = [f"{hca.name} port {port.number} at {port.rate or '?'}" for hca, port in ports
            if port.rate_gbps is None or port.rate_gbps < wanted]  # fmt: skip
    if not slow:
        return ok(f"{len(ports)} ports up at ≥ {wanted:g} Gb/s")
    text, cmd = _fix(
        spec, "A port below its rate negotiated down: reseat or replace its cable or transceiver.", "ibstat"
    )
    return fail(f"expected {wanted:g} Gb/s on every port; {', '.join(slow)}", text, cmd, expected=wanted,
                found=slow)  # fmt: skip
