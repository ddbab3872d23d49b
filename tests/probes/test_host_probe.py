"""The host and disk probes, against the real machine and against /proc, /sys and /etc trees built in tmp_path."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import pytest

from envcheck.probes import host
from envcheck.probes.host import HostInfo, probe_disk, probe_host, python_kind, temp_dir

MiB = 1024**2


@pytest.fixture
def fake_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty root: every file the host probe reads is looked for under it."""
    for name in ("proc", "sys", "etc", "usr/lib", "dev/shm", "run"):
        (tmp_path / name).mkdir(parents=True)
    monkeypatch.setattr(host, "PROC", tmp_path / "proc")
    monkeypatch.setattr(host, "SYS", tmp_path / "sys")
    monkeypatch.setattr(host, "ETC_OS_RELEASE", tmp_path / "etc" / "os-release")
    monkeypatch.setattr(host, "USR_OS_RELEASE", tmp_path / "usr" / "lib" / "os-release")
    monkeypatch.setattr(host, "DEV_SHM", tmp_path / "dev" / "shm")
    monkeypatch.setattr(host, "ROOT", tmp_path)
    return tmp_path


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_real_host_gives_plain_data():
    info = probe_host(dict(os.environ))
    assert isinstance(info, HostInfo)
    assert info.python.version == platform.python_version()
    assert info.python.kind in ("venv", "conda", "system")
    assert info.os_name == platform.system()
    assert info.memory.total_bytes > 0 and 0 < info.memory.available_bytes <= info.memory.total_bytes
    assert info.cpu.logical_cores and info.cpu.logical_cores >= 1
    if platform.system() == "Linux":
        assert info.libc in ("glibc", "musl", None)
        assert info.shm is None or info.shm.total_bytes >= info.shm.free_bytes


def test_bare_root_gives_nones_not_exceptions(fake_root: Path):
    (fake_root / "dev" / "shm").rmdir()
    info = probe_host({})
    assert info.distro is None
    assert info.shm is None
    assert info.cpu.cgroup_quota_cores is None
    assert info.memory.cgroup_limit_bytes is None
    assert info.container.kind is None and info.container.hints == []
    assert info.rdma_devices == []


def test_python_kind(tmp_path: Path):
    assert python_kind(str(tmp_path / "venv"), str(tmp_path / "base")) == "venv"
    conda = tmp_path / "miniforge" / "envs" / "train"
    (conda / "conda-meta").mkdir(parents=True)
    assert python_kind(str(conda), str(conda)) == "conda"
    assert python_kind("/usr", "/usr") == "system"


def test_conda_prefix_comes_from_the_given_environment(fake_root: Path):
    assert probe_host({"CONDA_PREFIX": "/opt/conda/envs/x"}).python.conda_prefix == "/opt/conda/envs/x"
    assert probe_host({}).python.conda_prefix is None


def test_distro_from_os_release(fake_root: Path):
    write(fake_root / "etc" / "os-release", 'NAME="Ubuntu"\nVERSION_ID="22.04"\nPRETTY_NAME="Ubuntu 22.04.4 LTS"\n')
    assert probe_host({}).distro == "Ubuntu 22.04.4 LTS"


def test_distro_falls_back_to_usr_lib_and_name_version(fake_root: Path):
    write(fake_root / "usr" / "lib" / "os-release", "NAME=Rocky\nVERSION_ID=8.9\n")
    assert probe_host({}).distro == "Rocky 8.9"


@pytest.mark.parametrize(
    "cpuinfo, model",
    [
        ("processor\t: 0\nmodel name\t: AMD EPYC 9654 96-Core Processor\n", "AMD EPYC 9654 96-Core Processor"),
        ("processor\t: 0\nBogoMIPS\t: 2000.00\n\nModel\t: NVIDIA Grace\n", "NVIDIA Grace"),
    ],
)
def test_cpu_model_from_proc_cpuinfo(fake_root: Path, cpuinfo: str, model: str):
    write(fake_root / "proc" / "cpuinfo", cpuinfo)
    assert probe_host({}).cpu.model == model


#: Real first-processor lines, shortened: a Sapphire Rapids Xeon (AMX), a Zen 4 EPYC (AVX-512 with BF16,
#: no AMX), a Haswell-era Xeon (AVX2 only) and a Grace (Neoverse V2: SVE2, bf16, i8mm).
SAPPHIRE_RAPIDS = (
    "flags\t\t: fpu vme sse sse2 avx fma avx2 avx512f avx512dq avx512cd avx512bw avx512vl avx512_bf16 "
    "avx512_vnni avx_vnni avx512_fp16 amx_bf16 amx_tile amx_int8 arch_lbr\n"
)
ZEN4 = "flags\t\t: fpu sse2 avx fma avx2 avx512f avx512dq avx512_bf16 avx512_vnni avx512_vbmi2\n"
HASWELL = "flags\t\t: fpu sse2 avx fma avx2 bmi2 erms\n"
GRACE = "Features\t: fp asimd evtstrm aes sha2 crc32 atomics asimddp sve sve2 svebf16 svei8mm i8mm bf16\n"


@pytest.mark.parametrize(
    "cpuinfo, flags",
    [
        (SAPPHIRE_RAPIDS, ["avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni",
                           "amx_tile", "amx_bf16", "amx_int8"]),
        (ZEN4, ["avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16"]),
        (HASWELL, ["avx2", "fma"]),
        (GRACE, ["asimd", "sve", "sve2", "bf16", "i8mm"]),
        ("processor\t: 0\nflags\t\t: fpu sse sse2\n", []),
        ("processor\t: 0\nmodel name\t: a CPU whose kernel lists no flags\n", None),
    ],
    ids=["sapphire_rapids_amx", "zen4_avx512_bf16", "haswell_avx2", "grace_sve2", "sse_only", "no_flags_line"],
)  # fmt: skip
def test_deep_learning_isa_flags_from_proc_cpuinfo(fake_root: Path, cpuinfo: str, flags: list[str] | None):
    """What collect_env's lscpu block shows, reduced to the flags that pick torch's CPU kernels."""
    write(fake_root / "proc" / "cpuinfo", "processor\t: 0\n" + cpuinfo)
    assert probe_host({}).cpu.isa_flags == flags


def test_no_proc_cpuinfo_means_unknown_isa_flags(fake_root: Path):
    assert probe_host({}).cpu.isa_flags is None


@pytest.mark.parametrize(
    "files, cores",
    [
        ({"fs/cgroup/cpu.max": "200000 100000\n"}, 2.0),
        ({"fs/cgroup/cpu.max": "max 100000\n"}, None),
        ({"fs/cgroup/cpu/cpu.cfs_quota_us": "150000\n", "fs/cgroup/cpu/cpu.cfs_period_us": "100000\n"}, 1.5),
        ({"fs/cgroup/cpu/cpu.cfs_quota_us": "-1\n", "fs/cgroup/cpu/cpu.cfs_period_us": "100000\n"}, None),
    ],
    ids=["v2_two_cores", "v2_unlimited", "v1_one_and_a_half", "v1_unlimited"],
)
def test_cgroup_cpu_quota(fake_root: Path, files: dict[str, str], cores: float | None):
    for rel, text in files.items():
        write(fake_root / "sys" / rel, text)
    assert probe_host({}).cpu.cgroup_quota_cores == cores


def test_container_memory_limit_is_read(fake_root: Path):
    write(fake_root / "sys" / "fs" / "cgroup" / "memory.max", f"{512 * MiB}\n")
    write(fake_root / "sys" / "fs" / "cgroup" / "memory.current", f"{100 * MiB}\n")
    mem = probe_host({}).memory
    assert mem.cgroup_limit_bytes == 512 * MiB and mem.cgroup_used_bytes == 100 * MiB


def test_container_memory_use_leaves_out_reclaimable_page_cache(fake_root: Path):
    cgroup = fake_root / "sys" / "fs" / "cgroup"
    write(cgroup / "memory.max", f"{512 * MiB}\n")  # limits are kept only below the host's RAM: keep them small
    write(cgroup / "memory.current", f"{384 * MiB}\n")
    write(cgroup / "memory.stat", f"anon {128 * MiB}\ninactive_file {256 * MiB}\nactive_file 0\n")
    assert probe_host({}).memory.cgroup_used_bytes == 128 * MiB


def test_unlimited_cgroup_memory_is_no_limit(fake_root: Path):
    write(fake_root / "sys" / "fs" / "cgroup" / "memory.max", "max\n")
    # cgroup v1 writes "no limit" as a huge number.
    write(fake_root / "sys" / "fs" / "cgroup" / "memory" / "memory.limit_in_bytes", "9223372036854771712\n")
    assert probe_host({}).memory.cgroup_limit_bytes is None


def test_slurm_job_limits_are_read_from_the_jobs_cgroup(fake_root: Path):
    # cgroup v2 without a namespace: the root has no limits; Slurm sets them on job_N, the task runs below it.
    write(fake_root / "proc" / "self" / "cgroup", "0::/system.slice/slurmstepd.scope/job_42/step_0/user/task_0\n")
    job = fake_root / "sys" / "fs" / "cgroup" / "system.slice" / "slurmstepd.scope" / "job_42"
    write(job / "memory.max", f"{512 * MiB}\n")
    write(job / "memory.current", f"{100 * MiB}\n")
    write(job / "cpu.max", "400000 100000\n")
    write(job / "step_0" / "user" / "task_0" / "memory.max", "max\n")
    write(job / "step_0" / "user" / "task_0" / "cpu.max", "max 100000\n")
    info = probe_host({})
    assert info.memory.cgroup_limit_bytes == 512 * MiB and info.memory.cgroup_used_bytes == 100 * MiB
    assert info.cpu.cgroup_quota_cores == 4.0


def test_the_tightest_limit_of_a_cgroup_and_its_ancestors_wins(fake_root: Path):
    write(fake_root / "proc" / "self" / "cgroup", "0::/outer/inner\n")
    cgroup = fake_root / "sys" / "fs" / "cgroup"
    write(cgroup / "outer" / "memory.max", f"{256 * MiB}\n")
    write(cgroup / "outer" / "inner" / "memory.max", f"{512 * MiB}\n")
    write(cgroup / "outer" / "cpu.max", "800000 100000\n")
    write(cgroup / "outer" / "inner" / "cpu.max", "200000 100000\n")
    info = probe_host({})
    assert info.memory.cgroup_limit_bytes == 256 * MiB
    assert info.cpu.cgroup_quota_cores == 2.0


def test_docker_on_cgroup_v1_reads_the_mount_root(fake_root: Path):
    # /proc/self/cgroup names the host's path, but the container sees its own cgroup mounted as the root.
    write(fake_root / "proc" / "self" / "cgroup", "4:memory:/docker/abc123\n2:cpu,cpuacct:/docker/abc123\n")
    write(fake_root / "sys" / "fs" / "cgroup" / "memory" / "memory.limit_in_bytes", f"{512 * MiB}\n")
    write(fake_root / "sys" / "fs" / "cgroup" / "cpu" / "cpu.cfs_quota_us", "300000\n")
    write(fake_root / "sys" / "fs" / "cgroup" / "cpu" / "cpu.cfs_period_us", "100000\n")
    info = probe_host({})
    assert info.memory.cgroup_limit_bytes == 512 * MiB
    assert info.cpu.cgroup_quota_cores == 3.0


def test_shm_is_measured_where_pointed(fake_root: Path):
    shm = probe_host({}).shm
    assert shm is not None and shm.path == str(fake_root / "dev" / "shm") and shm.total_bytes > 0


@pytest.mark.parametrize(
    "setup, env, kind",
    [
        (lambda root: write(root / ".dockerenv", ""), {}, "docker"),
        (lambda root: write(root / "run" / ".containerenv", ""), {}, "podman"),
        (lambda root: write(root / ".dockerenv", ""), {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, "kubernetes"),
        (lambda root: write(root / "proc" / "1" / "cgroup", "0::/kubepods/burstable/pod1/abc\n"), {}, "kubernetes"),
        (lambda root: None, {"container": "systemd-nspawn"}, "systemd-nspawn"),
        (lambda root: None, {}, None),
    ],
    ids=["docker", "podman", "kubernetes_env", "kubernetes_cgroup", "nspawn", "bare_metal"],
)
def test_container_detection(fake_root: Path, setup, env: dict[str, str], kind: str | None):
    setup(fake_root)
    container = probe_host(env).container
    assert container.kind == kind
    assert bool(container.hints) == (kind is not None)


def test_rdma_devices_are_listed(fake_root: Path):
    (fake_root / "sys" / "class" / "infiniband" / "mlx5_0").mkdir(parents=True)
    assert probe_host({}).rdma_devices == ["mlx5_0"]


def test_disk_reports_working_and_temp_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    places = probe_disk({"TMPDIR": str(tmp_path)})
    # Same filesystem: one entry carrying both labels.
    assert len(places) == 1
    assert places[0].labels == ["working directory", "temp directory"]
    assert places[0].free_bytes is not None and places[0].total_bytes >= places[0].free_bytes


def test_temp_dir_follows_the_given_environment(tmp_path: Path):
    assert temp_dir({"TMPDIR": str(tmp_path)}) == str(tmp_path)
    assert temp_dir({"TMPDIR": str(tmp_path / "gone"), "TMP": str(tmp_path)}) == str(tmp_path)
    assert os.path.isdir(temp_dir({"TMPDIR": str(tmp_path / "gone")}))


def test_disk_probe_survives_a_deleted_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    places = probe_disk({"TMPDIR": str(tmp_path)})
    cwd = next(p for p in places if "working directory" in p.labels)
    assert cwd.free_bytes is None and cwd.error
    assert any("temp directory" in p.labels and p.free_bytes is not None for p in places)
