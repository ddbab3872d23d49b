"""Host checks, fed with probe data for named situations (docker_default_shm, pinned_to_two_cores, …)."""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import pytest

from envcheck.core.model import CheckResult, Status
from envcheck.doctor.areas import CHECKS
from envcheck.doctor.checks import host as _host_checks  # noqa: F401 - registers the host checks
from envcheck.doctor.runner import ProbeContext as Context
from envcheck.doctor.runner import ProbeRunner, run_check
from envcheck.probes.host import (
    ContainerInfo,
    CpuInfo,
    DiskSpace,
    HostInfo,
    Limits,
    MemoryInfo,
    PythonInfo,
    ShmInfo,
)
from envcheck.probes.registry import ProbeSpec

GiB, MiB = 1024**3, 1024**2


def judge(check_id: str, host: HostInfo | None = None, disk: list[DiskSpace] | None = None) -> CheckResult:
    probes = {
        "host": ProbeSpec("host", lambda env: host or healthy(), 1.0, "host information"),
        "disk": ProbeSpec("disk", lambda env: disk if disk is not None else [], 1.0, "free disk space"),
    }
    return run_check(CHECKS[check_id], Context(ProbeRunner({}, 5.0, probes=probes), {}))


def healthy(**changes: Any) -> HostInfo:
    """A well-set-up Linux training box; tests change one thing at a time."""
    info = HostInfo(
        python=PythonInfo("3.12.4", "CPython", "/srv/.venv/bin/python", "/srv/.venv", "venv"),
        os_name="Linux",
        kernel="6.8.0-45-generic",
        machine="x86_64",
        distro="Ubuntu 24.04.1 LTS",
        libc="glibc",
        libc_version="2.39",
        cpu=CpuInfo("AMD EPYC 9654 96-Core Processor", 96, 192, 192, None),
        memory=MemoryInfo(1024 * GiB, 900 * GiB),
        shm=ShmInfo("/dev/shm", 512 * GiB, 500 * GiB),
        limits=Limits(None, None, 1048576, 1048576),
        container=ContainerInfo(None),
    )
    return dataclasses.replace(info, **changes)


@pytest.mark.parametrize(
    "check_id", ["host.python", "host.os", "host.glibc", "host.cpu", "host.memory", "host.shm", "host.ulimits",
                 "host.container"],
)  # fmt: skip
def test_healthy_host_is_ok(check_id):
    assert judge(check_id).status is Status.OK


@pytest.mark.parametrize(
    "version, status", [("3.12.4", Status.OK), ("3.10.0", Status.OK), ("3.9.18", Status.WARN), ("3.8.10", Status.FAIL)]
)
def test_python_version(version, status):
    py = dataclasses.replace(healthy().python, version=version)
    result = judge("host.python", healthy(python=py))
    assert result.status is status
    assert version in result.summary
    if status is not Status.OK:
        assert "3.10" in result.fix.text


def test_python_says_where_it_runs():
    system = PythonInfo("3.11.9", "CPython", "/usr/bin/python3", "/usr", "system")
    result = judge("host.python", healthy(python=system))
    assert result.status is Status.OK and "system Python" in result.summary and result.details["kind"] == "system"
    assert "venv" in result.details["note"]
    # In a container image the system Python is the normal place for packages: no note.
    in_docker = judge("host.python", healthy(python=system, container=ContainerInfo("docker", ["/.dockerenv exists"])))
    assert "note" not in in_docker.details


def test_python_notes_another_conda_env_than_the_one_active():
    # `conda activate train`, then a Python (a Jupyter kernel, a full path) from another conda env.
    py = PythonInfo("3.12.4", "CPython", "/opt/conda/envs/eval/bin/python", "/opt/conda/envs/eval", "conda",
                    conda_prefix="/opt/conda/envs/train")  # fmt: skip
    result = judge("host.python", healthy(python=py))
    assert result.status is Status.OK and "/opt/conda/envs/train" in result.details["note"]
    same = dataclasses.replace(py, conda_prefix="/opt/conda/envs/eval")
    assert "note" not in judge("host.python", healthy(python=same)).details


def test_python_notes_an_active_conda_env_that_is_not_the_running_python():
    py = dataclasses.replace(healthy().python, conda_prefix="/opt/conda/envs/train")
    result = judge("host.python", healthy(python=py))
    assert result.status is Status.OK and "/opt/conda/envs/train" in result.details["note"]


def test_not_linux_warns():
    result = judge("host.os", healthy(os_name="Darwin", kernel="23.5.0", machine="arm64", distro=None, libc=None))
    assert result.status is Status.WARN and "Linux-first" in result.fix.text


def test_wsl2_is_ok_with_a_note():
    result = judge("host.os", healthy(kernel="5.15.153.1-microsoft-standard-WSL2"))
    assert result.status is Status.OK and "WSL2" in result.summary and "Windows driver" in result.details["note"]


@pytest.mark.parametrize(
    "libc, version, status",
    [("glibc", "2.39", Status.OK), ("glibc", "2.28", Status.OK), ("glibc", "2.17", Status.WARN),
     ("glibc", "2.12", Status.FAIL), (None, None, Status.WARN)],
    ids=["ubuntu24", "rhel8", "centos7", "centos6", "musl"],
)  # fmt: skip
def test_glibc(libc, version, status):
    result = judge("host.glibc", healthy(libc=libc, libc_version=version))
    assert result.status is status
    if status is Status.WARN and libc:
        assert "manylinux_2_28" in result.summary and "2.28" in result.fix.text


def test_glibc_is_skipped_off_linux():
    assert judge("host.glibc", healthy(os_name="Darwin")).status is Status.SKIP


def test_pinned_to_two_cores_warns():
    result = judge("host.cpu", healthy(cpu=CpuInfo("Intel Xeon", 32, 64, 2, None)))
    assert result.status is Status.WARN
    assert "2 usable" in result.summary and "--cpus-per-task" in result.fix.text
    assert result.details["usable_cores"] == 2


def test_container_cpu_quota_counts_as_a_restriction():
    result = judge("host.cpu", healthy(cpu=CpuInfo("Intel Xeon", 32, 64, 64, 1.5)))
    assert (
        result.status is Status.WARN and result.details["usable_cores"] == 1 and "docker run --cpus" in result.fix.text
    )


def test_small_machine_that_is_not_restricted_is_ok():
    assert judge("host.cpu", healthy(cpu=CpuInfo(None, 2, 2, 2, None))).status is Status.OK


def test_low_available_memory_warns():
    result = judge("host.memory", healthy(memory=MemoryInfo(64 * GiB, 2 * GiB)))
    assert result.status is Status.WARN and "2.0 GiB available of 64.0 GiB" in result.summary
    assert result.fix.text == "Stop what holds the memory (see `top`/`ps`)."  # no container limit to raise


def test_a_container_limit_above_the_hosts_ram_is_not_the_ram():
    """A cgroup limit of 2 TiB on a 64 GiB machine limits nothing: the RAM is the machine's."""
    result = judge("host.memory", healthy(memory=MemoryInfo(64 * GiB, 40 * GiB, 2048 * GiB, 20 * GiB)))
    assert result.summary == "40.0 GiB available of 64.0 GiB"


def test_memory_is_shown_rounded_down():
    """64 GiB less 1 byte is not "64.0 GiB": that is what the lab spec's 64 GiB minimum would fail."""
    result = judge("host.memory", healthy(memory=MemoryInfo(68_719_476_735, 32 * GiB)))
    assert result.summary == "32.0 GiB available of 63.9 GiB"


def test_container_memory_limit_is_judged_not_the_hosts_ram():
    result = judge("host.memory", healthy(memory=MemoryInfo(1024 * GiB, 900 * GiB, 8 * GiB, int(7.5 * GiB))))
    assert result.status is Status.WARN
    assert "of 8.0 GiB (container limit)" in result.summary
    # 7.5 GiB held: a limit of 7.5 + 4 = 11.5 GiB leaves the 4 GiB free that the warning wants; docker takes 12g.
    assert result.fix.text == (
        "Stop what holds the memory (see `top`/`ps`), or raise the container's memory limit "
        "(`docker run --memory=12g` or more)."
    )


def place(free: int | None, path: str = "/home/me/project", error: str | None = None) -> DiskSpace:
    return DiskSpace(["working directory"], path, free, None if free is None else 2000 * GiB, error)


@pytest.mark.parametrize(
    "free, status",
    [(500 * GiB, Status.OK), (5 * GiB, Status.WARN), (300 * MiB, Status.FAIL)],
    ids=["plenty", "low", "full"],
)
def test_disk_space(free, status):
    result = judge("host.disk", disk=[place(free), DiskSpace(["temp directory"], "/tmp", 100 * GiB, 200 * GiB)])
    assert result.status is status
    assert "working directory /home/me/project" in result.summary and "temp directory /tmp" in result.summary
    if status is not Status.OK:
        assert "/home/me/project" in result.fix.text and "TMPDIR" in result.fix.text


def test_unreadable_disk_is_said_not_raised():
    result = judge("host.disk", disk=[place(None, error="Permission denied")])
    assert result.status is Status.OK and "unreadable (Permission denied)" in result.summary


def test_hung_network_mount_times_out_alone():
    """statvfs on a dead NFS mount hangs: the disk check says so, the other host checks still answer."""
    release = threading.Event()
    probes = {
        "host": ProbeSpec("host", lambda env: healthy(), 1.0, "host information"),
        "disk": ProbeSpec("disk", lambda env: release.wait(60), 0.2, "free disk space (statvfs)"),
    }
    ctx = Context(ProbeRunner({}, 5.0, probes=probes), {})
    try:
        disk = run_check(CHECKS["host.disk"], ctx)
        memory = run_check(CHECKS["host.memory"], ctx)
    finally:
        release.set()
    assert disk.status is Status.FAIL and "free disk space (statvfs) hung" in disk.summary
    assert memory.status is Status.OK


def test_docker_default_shm_warns_with_the_docker_fix():
    result = judge("host.shm", healthy(shm=ShmInfo("/dev/shm", 64 * MiB, 64 * MiB), container=ContainerInfo("docker")))
    assert result.status is Status.WARN
    assert "64.0 MiB" in result.summary and "bus error" in result.summary
    assert "--shm-size" in result.fix.text and "--ipc=host" in result.fix.text
    assert result.fix.command == "docker run --shm-size=16g …"


def test_kubernetes_small_shm_gets_the_pod_spec_fix():
    small = ShmInfo("/dev/shm", 64 * MiB, 60 * MiB)
    result = judge("host.shm", healthy(shm=small, container=ContainerInfo("kubernetes", ["KUBERNETES_SERVICE_HOST"])))
    assert result.status is Status.WARN and "emptyDir" in result.fix.text and "medium: Memory" in result.fix.text


def test_nearly_full_shm_warns():
    result = judge("host.shm", healthy(shm=ShmInfo("/dev/shm", 16 * GiB, 100 * MiB)))
    assert result.status is Status.WARN and "nearly full" in result.summary and result.fix.command == "ls -la /dev/shm"


def test_no_shm_is_skipped():
    assert judge("host.shm", healthy(shm=None)).status is Status.SKIP


@pytest.mark.parametrize(
    ("hard", "command"),
    [
        (None, "ulimit -l unlimited"),  # an ordinary user may raise the soft limit to an unlimited hard one
        (1024 * MiB, "ulimit -l 1048576"),  # ulimit -l counts KiB
        (64 * 1024, None),  # the hard limit itself is too low: only root (limits.conf, docker) can help
    ],
)
def test_low_memlock_with_infiniband_warns(hard, command):
    host = healthy(limits=Limits(64 * 1024, hard, 1048576, 1048576), rdma_devices=["mlx5_0", "mlx5_1"])
    result = judge("host.ulimits", host)
    assert result.status is Status.WARN
    assert "mlx5_0" in result.summary and "memlock=-1" in result.fix.text and "limits.conf" in result.fix.text
    assert result.fix.command == command


def test_low_memlock_without_rdma_is_only_noted():
    result = judge("host.ulimits", healthy(limits=Limits(8 * MiB, 8 * MiB, 1048576, 1048576)))
    assert result.status is Status.OK and "RDMA" in result.details["note"]


def test_no_rlimits_on_windows_is_skipped():
    assert judge("host.ulimits", healthy(os_name="Windows", limits=None)).status is Status.SKIP


@pytest.mark.parametrize(
    ("hard", "command"),
    [(None, "ulimit -n 65536"), (1048576, "ulimit -n 65536"), (4096, "ulimit -n 4096"), (1024, None)],
)
def test_low_open_files_limit_warns_with_a_command_that_works_without_root(hard, command):
    result = judge("host.ulimits", healthy(limits=Limits(None, None, 1024, hard)))
    assert result.status is Status.WARN
    assert "open files 1024" in result.summary and "Too many open files" in result.fix.text
    assert "nofile=65536:65536" in result.fix.text
    assert result.fix.command == command


@pytest.mark.parametrize("kind, words", [(None, "not in a container"), ("docker", "in a container: docker")])
def test_container_is_reported(kind, words):
    result = judge("host.container", healthy(container=ContainerInfo(kind, ["/.dockerenv exists"] if kind else [])))
    assert result.status is Status.OK and words in result.summary


# -- each of two thresholds alone ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total_gib", "available_gib", "status"),
    [
        (16, 3, Status.WARN),  # under 4 GiB, though 3 GiB is 19 % of 16: the absolute threshold alone
        (1024, 50, Status.WARN),  # 50 GiB is plenty, but under 10 % of 1 TiB: the fractional threshold alone
        (16, 4, Status.OK),  # exactly 4 GiB (25 %): neither
        (1000, 100, Status.OK),  # exactly 10 % (100 GiB): neither
        (1000, 99, Status.WARN),
    ],
)
def test_memory_each_threshold_fires_alone(total_gib, available_gib, status):
    result = judge("host.memory", healthy(memory=MemoryInfo(total_gib * GiB, available_gib * GiB)))
    assert result.status is status, result.summary
    assert result.details["available_bytes"] == available_gib * GiB


def test_a_container_limit_to_raise_is_worked_out_from_the_threshold_that_binds():
    # 100 GiB limit, 95 GiB used: 5 GiB free is over 4 GiB but under 10 %. Leaving 10 % free with 95 GiB held
    # takes 95 / 0.9 = 105.6 GiB, more than 95 + 4 = 99: docker's whole GiB above that is 106g.
    result = judge("host.memory", healthy(memory=MemoryInfo(1024 * GiB, 900 * GiB, 100 * GiB, 95 * GiB)))
    assert result.status is Status.WARN and "(`docker run --memory=106g` or more)" in result.fix.text
    # 20 GiB limit, 17 GiB used: 3 GiB free is 15 %, under 4 GiB alone; 17 + 4 = 21 GiB beats 17 / 0.9 = 18.9.
    result = judge("host.memory", healthy(memory=MemoryInfo(1024 * GiB, 900 * GiB, 20 * GiB, 17 * GiB)))
    assert result.status is Status.WARN and "(`docker run --memory=21g` or more)" in result.fix.text


@pytest.mark.parametrize(
    ("total", "free", "words"),
    [
        (1 * GiB, 512 * MiB, None),  # exactly at both thresholds: fine
        (1 * GiB - 1, 1 * GiB - 1, "too small"),  # size alone
        (1 * GiB, 512 * MiB - 1, "nearly full"),  # free space alone
    ],
)
def test_shm_each_threshold_fires_alone(total, free, words):
    result = judge("host.shm", healthy(shm=ShmInfo("/dev/shm", total, free)))
    assert result.status is (Status.OK if words is None else Status.WARN)
    assert words is None or words in result.summary
