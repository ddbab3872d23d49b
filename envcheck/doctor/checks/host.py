"""Host checks: is the Python, OS, CPU, memory, disk, /dev/shm and limits fit for deep-learning work?

Each judges data from the ``host`` or ``disk`` probe (``envcheck.probes.host``). The thresholds are
the points where DL work visibly breaks or crawls, not general system-health advice.
"""

from __future__ import annotations

import math

from envcheck.core.model import Verdict, fail, ok, skip, warn
from envcheck.core.probing import Context
from envcheck.core.units import docker_size, human
from envcheck.doctor.areas import check
from envcheck.probes import host as host_probe
from envcheck.probes.host import DiskSpace, HostInfo, usable_cores, usable_ram

GiB = 1024**3
MiB = 1024**2

# Python: torch 2.5 dropped 3.8 and torch 2.9 dropped 3.9 (PyTorch release notes), so older Pythons
# get no current torch at all.
PYTHON_WARN_BELOW = (3, 10)
PYTHON_FAIL_BELOW = (3, 9)
# glibc: torch's Linux wheels are manylinux_2_28 since 2.6 (pytorch/pytorch#138732, #143423), i.e. they
# need glibc >= 2.28; before that they were manylinux2014 (glibc >= 2.17). Below 2.17 no torch wheel installs.
GLIBC_WARN_BELOW = (2, 28)
GLIBC_FAIL_BELOW = (2, 17)
CORES_WARN_BELOW = 4
MEMORY_WARN_AVAILABLE = 4 * GiB
MEMORY_WARN_FRACTION = 0.10
DISK_WARN_BELOW = 10 * GiB
DISK_FAIL_BELOW = 1 * GiB
# Docker gives containers a 64 MB /dev/shm; DataLoader workers pass each batch through it and die with
# "bus error" / "insufficient shared memory" long before 1 GiB.
SHM_WARN_BELOW = 1 * GiB
SHM_WARN_FREE_BELOW = 512 * MiB
# NCCL over InfiniBand/RoCE registers (pins) buffers with the NIC, which counts against RLIMIT_MEMLOCK;
# NVIDIA's NCCL troubleshooting guide asks for an unlimited memlock. cudaHostAlloc pinning does not.
MEMLOCK_WARN_BELOW = 64 * MiB
# Each DataLoader worker passes tensors as file descriptors (torch's file_descriptor sharing strategy);
# 1024, the usual default, runs out with several workers and prefetching.
NOFILE_WARN_BELOW = 4096
#: What to raise it to: enough for many DataLoader workers sharing tensors as file descriptors.
NOFILE_TARGET = 65536


def _host(ctx: Context) -> HostInfo:
    return ctx.probe("host")


def _version_tuple(text: str | None) -> tuple[int, ...] | None:
    try:
        return tuple(int(p) for p in (text or "").split(".")[:2])
    except ValueError:
        return None


@check("host.python", "Python")
def check_python(ctx: Context) -> Verdict:
    """Python is new enough for current torch releases, and where it runs (venv, conda or system)."""
    py = _host(ctx).python
    version = _version_tuple(py.version) or (0, 0)
    where = {"venv": "virtual environment", "conda": "conda environment", "system": "system Python"}[py.kind]
    summary = f"Python {py.version} ({py.implementation}), {where} at {py.prefix}"
    details = {"version": py.version, "implementation": py.implementation, "executable": py.executable,
               "prefix": py.prefix, "kind": py.kind, "conda_prefix": py.conda_prefix}  # fmt: skip
    fix = "Create an environment with a current Python (3.10 or newer), e.g. with uv or conda."
    command = "uv venv --python 3.12 .venv"
    if version < PYTHON_FAIL_BELOW:
        return fail(f"{summary}: too old for any supported torch", fix, command, **details)
    if version < PYTHON_WARN_BELOW:
        return warn(f"{summary}: current torch releases need Python 3.10 or newer", fix, command, **details)
    if py.kind == "system" and _host(ctx).container.kind is None:
        # Fine in a container image; on a shared machine, pip installs into the OS's Python clash with its packages.
        details["note"] = (
            "system Python outside a container: a venv or conda env keeps your packages apart from the OS's"
        )
    if py.conda_prefix and py.prefix != py.conda_prefix:
        # A conda env is active in the shell but another Python runs: packages land where the user
        # does not look (`pip install` into one, `python` from the other).
        details["note"] = f"conda env {py.conda_prefix} is active, but this Python is not from it"
    return ok(summary, **details)


@check("host.os", "Operating system")
def check_os(ctx: Context) -> Verdict:
    """Linux is where NVIDIA's CUDA deep-learning stack (NCCL, containers, most wheels) is built first."""
    info = _host(ctx)
    name = info.distro or info.os_name
    summary = f"{name}, kernel {info.kernel}, {info.machine}"
    details = {"os": info.os_name, "distro": info.distro, "kernel": info.kernel, "machine": info.machine}
    if info.os_name != "Linux":
        return warn(
            f"{summary}: not Linux",
            "NVIDIA's CUDA deep-learning stack (NCCL, multi-GPU, containers, most prebuilt kernels) is Linux-first; "
            "use a Linux machine, or WSL2 on Windows, for GPU training.",
            **details,
        )
    if "microsoft" in info.kernel.lower():
        details["note"] = "WSL2: CUDA works through the Windows driver; install no Linux NVIDIA driver inside WSL"
        summary += " (WSL2)"
    return ok(summary, **details)


@check("host.glibc", "glibc")
def check_glibc(ctx: Context) -> Verdict:
    """glibc is new enough for torch's manylinux_2_28 wheels."""
    info = _host(ctx)
    if info.os_name != "Linux":
        return skip(f"not Linux ({info.os_name}): no glibc to judge")
    details = {"libc": info.libc, "version": info.libc_version}
    if info.libc != "glibc" or not info.libc_version:
        return warn(
            "not glibc (musl, e.g. Alpine?): torch publishes no wheels for this C library",
            "Use a glibc-based image (Debian, Ubuntu, RHEL/Rocky 8+) for deep-learning work.",
            "docker run … python:3.12-slim",
            **details,
        )
    version = _version_tuple(info.libc_version) or (0, 0)
    summary = f"glibc {info.libc_version}"
    fix = (
        "Upgrade the OS (or use a newer base image: Ubuntu 20.04+, Debian 10+, RHEL/Rocky 8+): torch's wheels are "
        "built as manylinux_2_28 since torch 2.6 (pytorch/pytorch#138732) and need glibc 2.28 or newer."
    )
    if version < GLIBC_FAIL_BELOW:
        return fail(f"{summary}: too old for any torch wheel (manylinux2014 needs 2.17)", fix, **details)
    if version < GLIBC_WARN_BELOW:
        return warn(f"{summary}: torch 2.6 and newer need glibc 2.28 (manylinux_2_28)", fix, **details)
    return ok(summary, **details)


@check("host.cpu", "CPU")
def check_cpu(ctx: Context) -> Verdict:
    """The CPU, and how many cores this process may really use (affinity, cgroup quota)."""
    cpu = _host(ctx).cpu
    usable = usable_cores(cpu)
    cores = f"{cpu.physical_cores or '?'} physical / {cpu.logical_cores or '?'} logical cores"
    summary = f"{cpu.model or 'unknown CPU'}, {cores}"
    details = {"model": cpu.model, "physical_cores": cpu.physical_cores, "logical_cores": cpu.logical_cores,
               "affinity_cores": cpu.affinity_cores, "cgroup_quota_cores": cpu.cgroup_quota_cores,
               "usable_cores": usable}  # fmt: skip
    restricted = usable is not None and cpu.logical_cores is not None and usable < cpu.logical_cores
    if restricted:
        summary += f", {usable} usable by this process"
    if restricted and usable is not None and usable < CORES_WARN_BELOW:
        return warn(
            f"{summary}: DataLoader workers and CPU-side preprocessing will starve",
            "This process is limited to few cores (CPU affinity or a container CPU quota). Give the job more: "
            "`docker run --cpus=N`, Slurm `--cpus-per-task=N`, or widen `taskset`.",
            **details,
        )
    return ok(summary, **details)


@check("host.memory", "Memory")
def check_memory(ctx: Context) -> Verdict:
    """Enough RAM is free to load data and checkpoints; a container limit counts, not the host's RAM."""
    mem = _host(ctx).memory
    total, available = usable_ram(mem), mem.available_bytes
    limited = total < mem.total_bytes
    if mem.cgroup_limit_bytes is not None:
        available = min(available, max(0, mem.cgroup_limit_bytes - (mem.cgroup_used_bytes or 0)))
    scope = " (container limit)" if limited else ""
    summary = f"{human(available)} available of {human(total)}{scope}"
    details = {"total_bytes": total, "available_bytes": available, "host_total_bytes": mem.total_bytes,
               "cgroup_limit_bytes": mem.cgroup_limit_bytes}  # fmt: skip
    if available < MEMORY_WARN_AVAILABLE or available < MEMORY_WARN_FRACTION * total:
        # A limit under which what is held now leaves both thresholds free: held + 4 GiB, and held / 0.9.
        held = total - available
        wanted = max(held + MEMORY_WARN_AVAILABLE, math.ceil(held / (1 - MEMORY_WARN_FRACTION)))
        raise_limit = f"raise the container's memory limit (`docker run --memory={docker_size(wanted)}` or more)"
        return warn(
            f"{summary}: little memory left — data loading and checkpoint loading may be OOM-killed",
            f"Stop what holds the memory (see `top`/`ps`){', or ' + raise_limit if limited else ''}.",
            "ps aux --sort=-rss | head",
            **details,
        )
    return ok(summary, **details)


@check("host.disk", "Disk space")
def check_disk(ctx: Context) -> Verdict:
    """Free disk where the user works and in the temp dir (checkpoints, datasets, compile caches, pip)."""
    places: list[DiskSpace] = ctx.probe("disk")
    parts, worst, details = [], None, []
    for place in places:
        label = " and ".join(place.labels)
        details.append({"labels": place.labels, "path": place.path, "free_bytes": place.free_bytes,
                        "total_bytes": place.total_bytes, "error": place.error})  # fmt: skip
        if place.free_bytes is None:
            parts.append(f"{label}: unreadable ({place.error})")
            continue
        parts.append(f"{label} {place.path}: {human(place.free_bytes)} free")
        if worst is None or place.free_bytes < (worst.free_bytes or 0):
            worst = place
    summary = "; ".join(parts) or "no paths to check"
    if worst is not None and (worst.free_bytes or 0) < DISK_WARN_BELOW:
        fix = (f"Free space on the filesystem of {worst.path} (old checkpoints, ~/.cache/pip, ~/.cache/huggingface), "
               "or point TMPDIR / the cache directories at a bigger disk.")  # fmt: skip
        verdict = fail if (worst.free_bytes or 0) < DISK_FAIL_BELOW else warn
        return verdict(summary, fix, f"du -sh {worst.path}/* ~/.cache/* 2>/dev/null | sort -h | tail", places=details)
    return ok(summary, places=details)


@check("host.shm", "Shared memory (/dev/shm)")
def check_shm(ctx: Context) -> Verdict:
    """/dev/shm is big enough for DataLoader workers (Docker's default of 64 MB is not)."""
    info = _host(ctx)
    shm = info.shm
    if shm is None:
        return skip(f"no {host_probe.DEV_SHM} on this system")
    summary = f"{shm.path}: {human(shm.total_bytes)} ({human(shm.free_bytes)} free)"
    details = {"path": shm.path, "total_bytes": shm.total_bytes, "free_bytes": shm.free_bytes}
    kube = info.container.kind == "kubernetes"
    where = (
        "In Kubernetes, mount an emptyDir with `medium: Memory` (and a sizeLimit) at /dev/shm."
        if kube
        else "Start the container with a bigger /dev/shm (`docker run --shm-size=16g …`) or share the host's "
        "(`docker run --ipc=host …`); in Kubernetes, mount an emptyDir with `medium: Memory` at /dev/shm."
    )
    if shm.total_bytes < SHM_WARN_BELOW:
        return warn(
            f"{summary}: too small — DataLoader workers crash with 'bus error' or 'insufficient shared memory'",
            where,
            None if kube else "docker run --shm-size=16g …",
            **details,
        )
    if shm.free_bytes < SHM_WARN_FREE_BELOW:
        return warn(
            f"{summary}: nearly full — DataLoader workers will crash",
            "Look for leftovers of crashed jobs in /dev/shm (torch_*, psm_*, nccl-*) and remove those no process uses.",
            "ls -la /dev/shm",
            **details,
        )
    return ok(summary, **details)


@check("host.ulimits", "Resource limits")
def check_ulimits(ctx: Context) -> Verdict:
    """Locked-memory (RDMA/NCCL over InfiniBand) and open-file (DataLoader workers) limits are high enough."""
    info = _host(ctx)
    lim = info.limits
    if lim is None:
        return skip(f"no resource limits on {info.os_name}")
    memlock = "unlimited" if lim.memlock_soft is None else human(lim.memlock_soft)
    summary = f"memlock {memlock}, open files {lim.nofile_soft or 'unlimited'}"
    details = {"memlock_soft_bytes": lim.memlock_soft, "memlock_hard_bytes": lim.memlock_hard,
               "nofile_soft": lim.nofile_soft, "nofile_hard": lim.nofile_hard,
               "rdma_devices": info.rdma_devices}  # fmt: skip
    problems, fixes, commands = [], [], []
    low_memlock = lim.memlock_soft is not None and lim.memlock_soft < MEMLOCK_WARN_BELOW
    if low_memlock and info.rdma_devices:
        problems.append(f"memlock {memlock} with RDMA devices ({', '.join(info.rdma_devices)})")
        fixes.append(
            "NCCL over InfiniBand/RoCE pins its buffers and fails to register memory with a low memlock limit: "
            "raise it (`memlock unlimited` in /etc/security/limits.conf, `docker run --ulimit memlock=-1`)."
        )
        # An ordinary user may raise the soft limit only up to the hard one: suggest what will work.
        if lim.memlock_hard is None:
            commands.append("ulimit -l unlimited")
        elif lim.memlock_hard >= MEMLOCK_WARN_BELOW:
            commands.append(f"ulimit -l {lim.memlock_hard // 1024}")
    elif low_memlock:
        details["note"] = "memlock is low, but it only matters for RDMA (InfiniBand/RoCE) and none was found"
    if lim.nofile_soft is not None and lim.nofile_soft < NOFILE_WARN_BELOW:
        problems.append(f"open files {lim.nofile_soft}")
        hard = "unlimited" if lim.nofile_hard is None else lim.nofile_hard
        fixes.append(
            f"DataLoader workers share tensors as file descriptors and hit 'Too many open files' at this limit: raise "
            f"it (hard limit here {hard}; `nofile 65536` in /etc/security/limits.conf, "
            "`docker run --ulimit nofile=65536:65536`)."
        )
        if lim.nofile_hard is None or lim.nofile_hard >= NOFILE_TARGET:
            commands.append(f"ulimit -n {NOFILE_TARGET}")
        elif lim.nofile_hard > lim.nofile_soft:
            commands.append(f"ulimit -n {lim.nofile_hard}")  # as far as an ordinary user may go
    if problems:
        command = " && ".join(commands) or None
        return warn(f"{summary}: too low ({'; '.join(problems)})", " ".join(fixes), command, **details)
    return ok(summary, **details)


@check("host.container", "Container")
def check_container(ctx: Context) -> Verdict:
    """Whether envcheck runs in a container (Docker, Podman, Kubernetes): it changes which fixes apply."""
    container = _host(ctx).container
    if container.kind is None:
        return ok("not in a container (bare metal or VM)", kind=None, hints=[])
    return ok(f"in a container: {container.kind} ({'; '.join(container.hints)})", kind=container.kind,
              hints=container.hints)  # fmt: skip
