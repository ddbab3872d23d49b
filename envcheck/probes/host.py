"""Probe the host: Python, OS, glibc, CPU, memory, /dev/shm, resource limits, container hints — and,
separately, free disk space.

Disk space is its own probe because ``statvfs`` on a hung network mount (NFS, a FUSE bucket mount)
blocks in the kernel forever; as a separate probe it times out alone and the other host readings
still arrive.

Every file this module reads is named by a module-level path (``PROC``, ``SYS``, ``ETC_OS_RELEASE``,
``DEV_SHM``, ``ROOT``) so tests can point it at a directory they built. A reading that is missing
(no ``/proc`` on macOS, no cgroup limit) is ``None``, never an exception.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from envcheck.core.model import Fix
from envcheck.probes.registry import probe

PROC = Path("/proc")
SYS = Path("/sys")
ETC_OS_RELEASE = Path("/etc/os-release")
USR_OS_RELEASE = Path("/usr/lib/os-release")
DEV_SHM = Path("/dev/shm")
#: Where container marker files (``/.dockerenv``, ``/run/.containerenv``) are looked for.
ROOT = Path("/")


@dataclass
class PythonInfo:
    version: str
    implementation: str
    executable: str
    prefix: str
    #: ``venv``, ``conda`` or ``system``.
    kind: str
    #: The conda env active in the shell (``CONDA_PREFIX``), which may differ from the Python running.
    conda_prefix: str | None = None


@dataclass
class CpuInfo:
    model: str | None
    physical_cores: int | None
    logical_cores: int | None
    #: Cores this process may run on (``sched_getaffinity``: taskset, Slurm, ``docker --cpuset-cpus``).
    affinity_cores: int | None
    #: CPU time the cgroup allows, in cores (``docker --cpus=4`` → 4.0); None when unlimited or unknown.
    cgroup_quota_cores: float | None
    #: Which of :data:`DL_ISA_FLAGS` the CPU has, in that order; None when the kernel does not say.
    isa_flags: list[str] | None = None


@dataclass
class MemoryInfo:
    total_bytes: int
    available_bytes: int
    #: The container's memory limit (cgroup), which psutil's host-wide numbers do not show.
    cgroup_limit_bytes: int | None = None
    cgroup_used_bytes: int | None = None


@dataclass
class ShmInfo:
    path: str
    total_bytes: int
    free_bytes: int


@dataclass
class Limits:
    """Soft and hard resource limits; None means unlimited."""

    memlock_soft: int | None
    memlock_hard: int | None
    nofile_soft: int | None
    nofile_hard: int | None


@dataclass
class ContainerInfo:
    #: ``docker``, ``podman``, ``kubernetes``, another runtime's name, or None on bare metal / a VM.
    kind: str | None
    #: What gave it away, for the report (``/.dockerenv exists``, ``KUBERNETES_SERVICE_HOST is set``).
    hints: list[str] = field(default_factory=list)


@dataclass
class HostInfo:
    python: PythonInfo
    os_name: str
    kernel: str
    machine: str
    distro: str | None
    libc: str | None
    libc_version: str | None
    cpu: CpuInfo
    memory: MemoryInfo
    shm: ShmInfo | None
    #: None where the platform has no rlimits (Windows).
    limits: Limits | None
    container: ContainerInfo
    #: RDMA devices (InfiniBand / RoCE NICs) under /sys/class/infiniband: they make the memlock limit matter.
    rdma_devices: list[str] = field(default_factory=list)


@probe("host", timeout_s=10.0, what="host information (/proc, /sys, psutil)")
def probe_host(env: Mapping[str, str]) -> HostInfo:
    libc, libc_version = read_libc()
    return HostInfo(
        python=read_python(env),
        os_name=platform.system(),
        kernel=platform.release(),
        machine=platform.machine(),
        distro=read_distro(),
        libc=libc,
        libc_version=libc_version,
        cpu=read_cpu(),
        memory=read_memory(),
        shm=read_shm(),
        limits=read_limits(),
        container=read_container(env),
        rdma_devices=_listdir(SYS / "class" / "infiniband"),
    )


def read_python(env: Mapping[str, str]) -> PythonInfo:
    return PythonInfo(
        version=platform.python_version(),
        implementation=platform.python_implementation(),
        executable=sys.executable,
        prefix=sys.prefix,
        kind=python_kind(sys.prefix, sys.base_prefix),
        conda_prefix=env.get("CONDA_PREFIX") or None,
    )


def python_kind(prefix: str, base_prefix: str) -> str:
    """``venv`` when sys.prefix differs from the base (venv, virtualenv, uv, pipx), ``conda`` when the
    prefix is a conda environment (it has ``conda-meta/``), else ``system``."""
    if os.path.realpath(prefix) != os.path.realpath(base_prefix):
        return "venv"
    if (Path(prefix) / "conda-meta").is_dir():
        return "conda"
    return "system"


def read_distro() -> str | None:
    """PRETTY_NAME from os-release (freedesktop.org's os-release(5)), falling back to NAME VERSION_ID."""
    for path in (ETC_OS_RELEASE, USR_OS_RELEASE):
        text = _read(path)
        if text is None:
            continue
        fields = {}
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                fields[key.strip()] = value.strip().strip("\"'")
        name = fields.get("PRETTY_NAME") or " ".join(filter(None, (fields.get("NAME"), fields.get("VERSION_ID"))))
        return name or None
    return None


def read_libc() -> tuple[str | None, str | None]:
    """(``glibc``, ``2.36``) from the C library actually loaded, or platform's guess from the binary."""
    try:
        name, _, version = (os.confstr("CS_GNU_LIBC_VERSION") or "").partition(" ")
        if name and version:
            return name, version
    except (AttributeError, ValueError, OSError):
        pass  # not glibc (musl, macOS) or no confstr on this platform
    name, version = platform.libc_ver()
    return (name or None), (version or None)


#: CPU features that decide which kernels torch's CPU paths use, as /proc/cpuinfo names them. x86:
#: ATen's CPU dispatch picks its AVX2 or AVX-512 kernels (``torch.backends.cpu.get_cpu_capability()``),
#: oneDNN uses AVX512_BF16, AVX512_FP16, VNNI and AMX for bf16/fp16/int8 matmuls and convolutions (AMX
#: needs all of amx_tile and amx_bf16 or amx_int8). Arm: NEON (asimd), SVE and the bf16/i8mm dot products
#: that oneDNN and ACL use. What ``python -m torch.utils.collect_env`` shows in its lscpu block, kept short.
DL_ISA_FLAGS = (
    "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni",
    "amx_tile", "amx_bf16", "amx_int8", "amx_fp16",
    "asimd", "sve", "sve2", "bf16", "i8mm",
)  # fmt: skip


def read_cpu() -> CpuInfo:
    try:
        affinity: int | None = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None  # macOS has no sched_getaffinity
    cpuinfo = _read(PROC / "cpuinfo")
    return CpuInfo(
        model=_cpu_model(cpuinfo),
        physical_cores=psutil.cpu_count(logical=False),
        logical_cores=psutil.cpu_count(logical=True),
        affinity_cores=affinity,
        cgroup_quota_cores=_cgroup_cpu_quota(),
        isa_flags=isa_flags(cpuinfo),
    )


def isa_flags(cpuinfo: str | None) -> list[str] | None:
    """The :data:`DL_ISA_FLAGS` in the first processor's ``flags`` (x86) or ``Features`` (Arm) line."""
    for line in (cpuinfo or "").splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip() in ("flags", "Features"):
            present = set(value.split())
            return [flag for flag in DL_ISA_FLAGS if flag in present]
    return None


def cpu_model() -> str:
    """The CPU's model name, never empty: what a CPU device is called in the bench's and the burn's reports."""
    return _cpu_model(_read(PROC / "cpuinfo")) or platform.machine() or "cpu"


def _cpu_model(text: str | None) -> str | None:
    if text is not None:
        # x86 says "model name"; some ARM kernels only say "Model" or nothing usable.
        for key in ("model name", "Model", "cpu model", "Processor"):
            for line in text.splitlines():
                name, sep, value = line.partition(":")
                if sep and name.strip() == key and value.strip():
                    return value.strip()
    return platform.processor() or None


def _cgroup_cpu_quota() -> float | None:
    """The tightest CPU quota on this process's cgroup or an ancestor: v2 ``cpu.max`` ("200000 100000" =
    2 cores) or v1 ``cfs_quota_us``/``cfs_period_us``."""
    v2, v1 = _cgroup_dirs("cpu")
    quotas = [_ratio(_read(d / "cpu.cfs_quota_us"), _read(d / "cpu.cfs_period_us")) for d in v1]
    for d in v2:
        quota, _, period = (_read(d / "cpu.max") or "").strip().partition(" ")
        quotas.append(_ratio(quota, period))
    return min((q for q in quotas if q is not None), default=None)


def _ratio(quota: str | None, period: str | None) -> float | None:
    try:
        q, p = int(quota or ""), int(period or "")
    except ValueError:
        return None  # "max", "-1" or missing: unlimited
    return q / p if q > 0 and p > 0 else None


def read_memory() -> MemoryInfo:
    vm = psutil.virtual_memory()
    v2, v1 = _cgroup_dirs("memory")
    # The tightest limit on this cgroup or an ancestor (Slurm limits job_N; the process runs in job_N/step_M/...).
    # cgroup v1 says "no limit" with a huge number (PAGE_COUNTER_MAX pages); anything above the host's RAM is none.
    limits = [
        (limit, where, usage_file)
        for dirs, limit_file, usage_file in ((v2, "memory.max", "memory.current"),
                                             (v1, "memory.limit_in_bytes", "memory.usage_in_bytes"))
        for where in dirs
        if (limit := _int(_read(where / limit_file))) is not None and limit < vm.total
    ]  # fmt: skip
    if not limits:
        return MemoryInfo(vm.total, vm.available)
    limit, where, usage_file = min(limits, key=lambda entry: entry[0])
    used = _int(_read(where / usage_file))
    if used is not None:
        # Usage counts the page cache, which the kernel reclaims before OOM-killing; like `docker stats`,
        # leave out the inactive file pages.
        stat = _read(where / "memory.stat") or ""
        fields = dict(line.split(" ", 1) for line in stat.splitlines() if " " in line)
        inactive = _int(fields.get("inactive_file", fields.get("total_inactive_file")))
        used = max(0, used - (inactive or 0))
    return MemoryInfo(vm.total, vm.available, limit, used)


def _cgroup_dirs(v1_controller: str) -> tuple[list[Path], list[Path]]:
    """This process's cgroup directories, its own first and then each ancestor up to the mount: (cgroup v2's,
    and v1's for ``v1_controller``). A limit set on any of them applies.

    ``/proc/self/cgroup`` names the cgroup (``0::/path`` for v2, ``4:memory:/path`` for v1). In a container
    with its own cgroup namespace that is ``/``, the mount itself; in a Slurm job or a systemd unit it is a
    directory below. Where that directory is not mounted here (Docker on cgroup v1 mounts the container's
    own cgroup as the root), the mount itself is all there is.
    """
    root = SYS / "fs" / "cgroup"
    own = {"": "/", v1_controller: "/"}  # "" is cgroup v2's unnamed hierarchy
    for line in (_read(PROC / "self" / "cgroup") or "").splitlines():
        fields = line.split(":", 2)
        for name in fields[1].split(",") if len(fields) == 3 else []:
            if name in own:
                own[name] = fields[2].strip()
    return _up_to_mount(root, own[""]), _up_to_mount(root / v1_controller, own[v1_controller])


def _up_to_mount(mount: Path, path: str) -> list[Path]:
    relative = Path(path.strip("/"))
    if ".." in relative.parts or not (mount / relative).is_dir():  # ".." when the cgroup is outside our namespace
        return [mount]
    return [mount / relative, *(mount / parent for parent in relative.parents)]


def read_shm() -> ShmInfo | None:
    """Size of the POSIX shared-memory mount; DataLoader workers pass every batch through it."""
    try:
        usage = shutil.disk_usage(DEV_SHM)
    except OSError:
        return None
    return ShmInfo(str(DEV_SHM), usage.total, usage.free)


def read_limits() -> Limits | None:
    try:
        import resource
    except ImportError:
        return None  # Windows

    def get(which: int) -> tuple[int | None, int | None]:
        soft, hard = resource.getrlimit(which)
        return (None if soft == resource.RLIM_INFINITY else soft), (None if hard == resource.RLIM_INFINITY else hard)

    memlock = get(resource.RLIMIT_MEMLOCK)
    nofile = get(resource.RLIMIT_NOFILE)
    return Limits(*memlock, *nofile)


#: cgroup path fragments that name the runtime that created the cgroup.
_CGROUP_RUNTIMES = (("kubepods", "kubernetes"), ("docker", "docker"), ("libpod", "podman"), ("lxc", "lxc"),
                    ("containerd", "containerd"), ("garden", "garden"))  # fmt: skip


def read_container(env: Mapping[str, str]) -> ContainerInfo:
    """Guess whether we run in a container, from the markers runtimes leave behind.

    Kubernetes wins over the runtime underneath it because its fixes (pod spec) differ from Docker's
    (``docker run`` flags).
    """
    hints: list[str] = []
    kinds: list[str] = []
    if env.get("KUBERNETES_SERVICE_HOST"):
        hints.append("KUBERNETES_SERVICE_HOST is set")
        kinds.append("kubernetes")
    if (ROOT / ".dockerenv").exists():
        hints.append("/.dockerenv exists")
        kinds.append("docker")
    if (ROOT / "run" / ".containerenv").exists():
        hints.append("/run/.containerenv exists")
        kinds.append("podman")
    if env.get("container"):
        # systemd-nspawn, podman and others set container=<name> for PID 1.
        hints.append(f"container={env['container']}")
        kinds.append(env["container"])
    cgroup = _read(PROC / "1" / "cgroup") or ""
    for fragment, kind in _CGROUP_RUNTIMES:
        if fragment in cgroup:
            hints.append(f"/proc/1/cgroup mentions {fragment}")
            kinds.append(kind)
            break
    return ContainerInfo(kinds[0] if kinds else None, hints)


# ---------------------------------------------------------------------------------------------------------------
# Disk: a probe of its own (see the module docstring).


@dataclass
class DiskSpace:
    #: What the path is to the user: ``working directory`` or ``temp directory``.
    labels: list[str]
    path: str
    free_bytes: int | None
    total_bytes: int | None
    error: str | None = None


@probe(
    "disk",
    timeout_s=10.0,
    what="free disk space (statvfs on the working and temp directories)",
    hang_fix=Fix(
        "A filesystem under the working or temp directory is not answering, usually a network mount (NFS, "
        "a FUSE filesystem) whose server is gone: find it, and ask its owner or unmount it.",
        "mount | grep -E 'nfs|fuse|cifs'",
    ),
)
def probe_disk(env: Mapping[str, str]) -> list[DiskSpace]:
    """Free space where the user works and in the temp dir (torch.compile, datasets and pip unpack there).

    Two paths on the same filesystem are reported once, with both labels.
    """
    try:
        cwd: str | None = os.getcwd()
    except OSError:
        cwd = None  # the working directory was deleted under us
    places = [("working directory", cwd), ("temp directory", temp_dir(env))]
    result: list[DiskSpace] = []
    by_device: dict[int, DiskSpace] = {}
    for label, path in places:
        if path is None:
            result.append(DiskSpace([label], "", None, None, "does not exist"))
            continue
        try:
            device = os.stat(path).st_dev
            if device in by_device:
                by_device[device].labels.append(label)
                continue
            usage = shutil.disk_usage(path)  # statvfs on Unix: free is what an unprivileged user may use
        except OSError as exc:
            result.append(DiskSpace([label], path, None, None, exc.strerror or str(exc)))
            continue
        space = DiskSpace([label], path, usage.free, usage.total)
        by_device[device] = space
        result.append(space)
    return result


def temp_dir(env: Mapping[str, str]) -> str:
    """The temp dir Python would use for this environment: TMPDIR, TEMP, TMP, then the platform default."""
    for name in ("TMPDIR", "TEMP", "TMP"):
        path = env.get(name)
        if path and os.path.isdir(path):
            return path
    return tempfile.gettempdir()


# ---------------------------------------------------------------------------------------------------------------


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


def _int(text: str | None) -> int | None:
    try:
        return int((text or "").strip())
    except ValueError:
        return None


def _listdir(path: Path) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


# --- what the doctor's host checks, the lab spec and snapshot all judge ----------------------------


def usable_ram(mem: MemoryInfo) -> int:
    """The RAM this process may use: the host's, or a container's memory limit where that is lower.
    ``host.memory``, the lab spec's ``min_ram`` and ``snapshot`` all judge this one number."""
    limit = mem.cgroup_limit_bytes
    return min(mem.total_bytes, limit) if limit is not None else mem.total_bytes


def usable_cores(cpu: CpuInfo) -> int | None:
    """The cores this process may use: the fewest of the logical cores, its CPU affinity (taskset, Slurm,
    ``--cpuset-cpus``) and a cgroup quota (``docker --cpus``), which is CPU time in cores, so a quota
    of 2.5 lets 2 cores work all the time. ``host.cpu``, the spec's ``min_cpus`` and ``snapshot`` share it."""
    counts = [n for n in (cpu.logical_cores, cpu.affinity_cores) if n]
    if cpu.cgroup_quota_cores:
        counts.append(max(1, int(cpu.cgroup_quota_cores)))
    return min(counts) if counts else None


def seconds_since_boot() -> float | None:
    """How long this machine has been up (None where psutil cannot tell): a state that is normal just after
    boot (the NVSwitch fabric still being trained) is a fault an hour later."""
    import time

    try:
        return max(0.0, time.time() - psutil.boot_time())
    except (OSError, RuntimeError, AttributeError):
        return None
