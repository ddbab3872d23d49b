"""Numbers that agree: the lab spec, ``host.*`` and ``snapshot`` show the same figure for the same
machine (binary units, readings rounded down, minimums rounded up), and a spec failure's fix names a
value that meets the spec, in a form the tool it names accepts, rounded up.

Every expected number is a literal: 1 GiB = 1 073 741 824 bytes, 1 GB = 1 000 000 000 bytes.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from envcheck.cli import main
from envcheck.core.model import CheckResult
from envcheck.core.units import docker_size, human, kubernetes_quantity, parse_size
from envcheck.doctor.runner import ProbeContext, ProbeRunner, run_check
from envcheck.probes.host import ContainerInfo, CpuInfo, DiskSpace, HostInfo, MemoryInfo, ShmInfo
from envcheck.probes.nvml.inventory import NvmlState
from envcheck.probes.packages import PackagesState
from envcheck.probes.registry import ProbeSpec
from envcheck.spec.checks import spec_checks
from envcheck.spec.parse import parse_spec_text
from envcheck.spec.snapshot import Machine, render_snapshot
from tests.doctor.checks.test_host_checks import healthy, judge

GiB, MiB = 1024**3, 1024**2
WORK = DiskSpace(["working directory"], "/data/project", 1000 * GiB, 2000 * GiB)


def spec_results(spec_text: str, host: HostInfo, disk: list[DiskSpace] | None = None) -> dict[str, CheckResult]:
    probes = {
        "host": ProbeSpec("host", lambda env: host, 1.0, "host information"),
        "disk": ProbeSpec("disk", lambda env: disk if disk is not None else [WORK], 1.0, "free disk space"),
    }
    ctx = ProbeContext(ProbeRunner({}, 5.0, probes=probes), {})
    return {c.id: run_check(c, ctx) for c in spec_checks(parse_spec_text(spec_text, "lab.toml"))}


@pytest.mark.parametrize(
    ("text", "size"),
    [("80GiB", 85_899_345_920), ("24 GB", 24_000_000_000), ("512MiB", 536_870_912), ("1.5 KiB", 1536),
     ("0.5 GiB", 536_870_912), ("16g", 16_000_000_000), (4096, 4096)],
)  # fmt: skip
def test_sizes_as_written(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["-5GiB", "1" + "0" * 400 + "GiB", "nan GiB", "inf", "9 EiB", -1, 2**63])
def test_sizes_out_of_range_are_refused(text):
    with pytest.raises(ValueError):
        parse_size(text)


@pytest.mark.parametrize(
    ("n", "down", "up"),
    [
        (68_719_476_735, "63.9 GiB", "64.0 GiB"),  # 64 GiB less one byte
        (68_719_476_736, "64.0 GiB", "64.0 GiB"),  # 64 GiB exactly
        (20_000_000_000, "18.6 GiB", "18.7 GiB"),  # 20 GB = 18.626 GiB
        (100_000_000, "95.3 MiB", "95.4 MiB"),  # 100 MB = 95.367 MiB
        (1536, "1.5 KiB", "1.5 KiB"),
        (1023, "1023 B", "1023 B"),
    ],
)
def test_readings_round_down_and_minimums_up(n, down, up):
    assert human(n) == down and human(n, up=True) == up


@pytest.mark.parametrize(
    ("n", "docker", "kubernetes"),
    [
        (17_179_869_184, "16g", "16Gi"),  # 16 GiB exactly
        (17_179_869_185, "17g", "17Gi"),  # one byte more: 16g would be too small
        (20_000_000_000, "19g", "19Gi"),  # 20 GB: 19 GiB = 20 401 094 656 bytes is the first whole GiB above
        (536_870_912, "512m", "512Mi"),
        (100_000_000, "96m", "96Mi"),  # 100 MB: 96 MiB = 100 663 296 bytes
        (1, "1m", "1Mi"),
    ],
)
def test_docker_and_kubernetes_sizes_round_up(n, docker, kubernetes):
    assert docker_size(n) == docker and kubernetes_quantity(n) == kubernetes


def test_ram_is_shown_alike_by_host_memory_and_the_spec():
    """64 GiB less 50 MiB: 63.95 GiB. Rounded to the nearest tenth both would say 64.0 GiB, and the spec
    would fail a machine it shows as having what it wants."""
    host = healthy(memory=MemoryInfo(68_667_047_936, 60 * GiB))
    assert judge("host.memory", host).summary == "60.0 GiB available of 63.9 GiB"
    ram = spec_results('[host]\nmin_ram = "64GiB"\n', host)["spec.host_ram"]
    assert ram.summary == "expected RAM ≥ 64.0 GiB, found 63.9 GiB"
    assert ram.fix.text.startswith("Use a machine with at least 64.0 GiB of RAM.")


def test_a_container_limit_counts_alike_for_host_memory_and_the_spec():
    host = healthy(memory=MemoryInfo(1024 * GiB, 900 * GiB, 8 * GiB, 1 * GiB), container=ContainerInfo("docker"))
    assert judge("host.memory", host).summary == "7.0 GiB available of 8.0 GiB (container limit)"
    results = spec_results('[host]\nmin_ram = "100GB"\n', host)
    ram = results["spec.host_ram"]
    assert ram.summary == "expected RAM ≥ 93.2 GiB, found 8.0 GiB"  # 100 GB = 93.13 GiB, rounded up
    # 94 GiB = 100 931 731 456 bytes ≥ 100 000 000 000; 93g would be 99 857 989 632, too small.
    assert "give the container at least that (`docker run --memory=94g`)" in ram.fix.text
    assert ram.fix.command == "docker run --memory=94g …"


@pytest.mark.parametrize(
    ("container", "command", "words"),
    [
        ("docker", "docker run --shm-size=19g …", "a /dev/shm of at least 18.7 GiB (`docker run --shm-size=19g`)"),
        (None, "sudo mount -o remount,size=19G /dev/shm", "Resize /dev/shm to at least 18.7 GiB"),
        ("kubernetes", None, "`sizeLimit: 19Gi` at /dev/shm (at least 18.7 GiB)"),
    ],
)
def test_the_shm_fix_names_a_size_that_meets_the_spec(container, command, words):
    """min_shm = "20GB" is 18.63 GiB: the fix asks for 19 GiB, never 18 (which would still fail)."""
    host = healthy(shm=ShmInfo("/dev/shm", 64 * MiB, 60 * MiB), container=ContainerInfo(container))
    shm = spec_results('[host]\nmin_shm = "20GB"\n', host)["spec.host_shm"]
    assert shm.summary == "expected /dev/shm ≥ 18.7 GiB, found 64.0 MiB"
    assert shm.fix.command == command and words in shm.fix.text


def test_the_disk_fix_names_how_much_to_free():
    work = DiskSpace(["working directory"], "/data/project", 95_026_151_424, 2000 * GiB)  # 88.5 GiB free
    disk = spec_results('[host]\nmin_free_disk = "100GiB"\n', healthy(), [work])["spec.host_free_disk"]
    assert disk.summary == "expected free disk in the working directory ≥ 100.0 GiB, found 88.5 GiB"
    assert disk.fix.text.startswith("Free at least 11.5 GiB more on the filesystem of /data/project")


def test_cores_are_counted_alike_by_host_cpu_and_the_spec():
    """192 logical cores, but `docker run --cpus=2.5`: two cores can work all the time."""
    host = healthy(cpu=CpuInfo("AMD EPYC 9654 96-Core Processor", 96, 192, 192, 2.5))
    assert "2 usable by this process" in judge("host.cpu", host).summary
    cpus = spec_results("[host]\nmin_cpus = 4\n", host)["spec.host_cpus"]
    assert cpus.summary == "expected usable CPU cores ≥ 4, found 2"
    assert "container `--cpus=4`, Slurm `--cpus-per-task=4`" in cpus.fix.text


def test_snapshot_writes_what_the_doctor_measures():
    """90 % of the 8 GiB container limit (7.2 GiB, down to 7), not of the host's 1024 GiB; 2 cores, not 192."""
    host = healthy(
        memory=MemoryInfo(1024 * GiB, 900 * GiB, 8 * GiB, 1 * GiB),
        cpu=CpuInfo("AMD EPYC 9654 96-Core Processor", 96, 192, 192, 2.5),
    )
    machine = Machine(host, [WORK], PackagesState(python="python", dists={}), NvmlState(status="no_library"))
    lines = render_snapshot(machine).splitlines()
    assert 'min_ram = "7GiB"  # 90% of its RAM (a container\'s limit)' in lines
    assert "min_cpus = 2  # usable by this process (affinity, container quota)" in lines
    assert 'min_free_disk = "500GiB"  # half of its free space' in lines
    results = spec_results(render_snapshot(machine), host)
    assert {r.status.value for r in results.values() if r.id.startswith("spec.host")} == {"ok"}


def test_gpu_memory_is_shown_to_a_tenth_rounded_down(tmp_path, nvml):
    """An "80GB" H100 has 81 559 MiB = 79.65 GiB: it does not meet 80 GiB, and must not be shown as 80."""
    lib = nvml("healthy_multi_gpu")
    lib.gpus[1].memory_total = 81_559 * MiB
    path = tmp_path / "lab.toml"
    path.write_text('[gpu]\nmin_memory = "80GiB"\n')
    result = CliRunner().invoke(main, ["doctor", "spec", "--json", "--spec", str(path)])
    checks = {c["id"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["spec.gpu_memory"]["summary"] == "expected GPUs with ≥ 80.0 GiB; GPU 1 has 79.6 GiB"
