"""A CPU bench on a busy CPU: the preflight measures other processes' CPU use and warns, and each figure
taken under contention is marked. psutil's counters are faked at their functions (the lowest boundary);
one test spins real busy loops and reads the real counters."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from collections import namedtuple

import pytest

from envcheck.bench import case
from envcheck.bench.harness import Budget
from envcheck.bench.model import BENCHMARKS, Options
from envcheck.core.model import Status
from envcheck.devices.model import DeviceInfo
from envcheck.probes import contention
from envcheck.probes.contention import Contention, Cpus
from tests.bench.conftest import run_here

CpuTimes = namedtuple("CpuTimes", "user nice system idle iowait irq softirq steal guest guest_nice")
ProcTimes = namedtuple("ProcTimes", "user system children_user children_system")
TWO_CORES = Cpus((0, 1), 2.0)


class FakeCounters:
    """psutil.cpu_times(percpu=True) and psutil.Process().cpu_times(), advanced by hand: ``busy`` seconds
    per CPU and ``own`` seconds for this process between one sample and the next."""

    def __init__(self, cpus: int) -> None:
        self.per_cpu = [[0.0] * 10 for _ in range(cpus)]
        self.own = 0.0

    def advance(self, busy: list[float], own: float = 0.0, field: str = "user") -> None:
        column = CpuTimes._fields.index(field)
        for cpu, seconds in enumerate(busy):
            self.per_cpu[cpu][column] += seconds
        self.own += own

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(contention.psutil, "cpu_times", lambda percpu=False: [CpuTimes(*c) for c in self.per_cpu])
        counters = self

        class Process:
            def cpu_times(self) -> ProcTimes:
                return ProcTimes(counters.own, 0.0, 0.0, 0.0)

        monkeypatch.setattr(contention.psutil, "Process", Process)


def measured(monkeypatch, cpus: Cpus, busy: list[float], own: float = 0.0, field: str = "user") -> Contention:
    """What the preflight's sample finds when, during its (0.5 s) sleep, the counters move by this much."""
    counters = FakeCounters(len(busy))
    counters.install(monkeypatch)
    monkeypatch.setattr(contention, "load_average", lambda: 1.7)
    return contention.measure(cpus, 0.5, sleep=lambda s: (time.sleep(s), counters.advance(busy, own, field)))


def test_a_neighbour_on_one_of_two_cores_is_contention(monkeypatch):
    found = measured(monkeypatch, TWO_CORES, [0.5, 0.0])  # one core busy for the whole 0.5 s sample
    assert found.others_cores == pytest.approx(1.0, rel=0.1)  # the sleep lasts a little over 0.5 s
    assert found.share == pytest.approx(0.5, rel=0.1) and found.contended


def test_this_processs_own_work_is_not_contention(monkeypatch):
    found = measured(monkeypatch, TWO_CORES, [0.5, 0.45], own=0.9)  # 0.95 s busy, 0.9 s of it ours
    assert found.others_cores == pytest.approx(0.1, rel=0.1) and not found.contended


def test_time_stolen_by_the_hypervisor_is_contention(monkeypatch):
    assert measured(monkeypatch, TWO_CORES, [0.25, 0.25], field="steal").contended


def test_only_what_others_take_beyond_the_spare_cpus_competes():
    """--cpus=2 on 16 CPUs: the others may use 14 CPUs without taking anything from the bench."""
    quota = Cpus(tuple(range(16)), 2.0)
    assert quota.spare_cores == 14.0
    assert not contention.between(sample(0, 0), sample(1, 13.9), quota).contended
    busier = contention.between(sample(0, 0), sample(1, 14.6), quota)
    assert busier.share == pytest.approx(0.3) and busier.contended


def sample(at: float, busy: float, own: float = 0.0) -> contention.Sample:
    return contention.Sample(at, busy, own)


@pytest.mark.parametrize(("others", "contended"), [(0.49, False), (0.5, True)])
def test_the_threshold_is_a_quarter_of_the_usable_cores(others, contended):
    """Literal numbers: on 2 usable cores, 0.5 of a core taken by others is 25 %."""
    assert contention.between(sample(0, 0), sample(1, others), TWO_CORES).contended is contended


def test_the_preflight_warns_with_the_numbers_and_a_fix(monkeypatch):
    monkeypatch.setattr(contention, "measure", lambda cpus, seconds: Contention(1.2, 2.0, 0.0, 0.5, 2.3))
    check = contention.preflight(TWO_CORES)
    assert (check.id, check.status) == ("bench.cpu_contention", Status.WARN)
    assert check.summary == (
        "other processes used 1.2 of the 2 CPU cores this benchmark may use (60%) over 0.5 s, load average 2.3: "
        "CPU figures will be low and noisy; those taken under contention are marked"
    )
    assert check.fix is not None and "idle" in check.fix.text and check.fix.command.startswith("top")
    assert check.details["share"] == 0.6


def test_an_idle_machine_passes_the_preflight(monkeypatch):
    monkeypatch.setattr(contention, "measure", lambda cpus, seconds: Contention(0.1, 2.0, 0.0, 0.5, 0.2))
    check = contention.preflight(TWO_CORES)
    assert check.status is Status.OK and check.fix is None and "0.1 of the 2 CPU cores" in check.summary


def test_every_cpu_figure_taken_under_contention_is_marked(monkeypatch):
    """The counters jump by 100 CPU-seconds of others' work between any two samples: whatever a case's
    real duration, others took every core. Skipped cases are not figures and carry no mark."""
    counters = FakeCounters(2)
    counters.install(monkeypatch)
    real_sample = contention.sample

    def busy_sample(cpus, clock=time.monotonic):
        counters.advance([50.0, 50.0])
        return real_sample(cpus, clock)

    monkeypatch.setattr(contention, "sample", busy_sample)
    BENCHMARKS.load()
    cpu = DeviceInfo("cpu", "cpu", "test cpu", threads=1)
    tiny = {("cpu", True): Budget(measure_s=0.01, warmup_s=0.0, min_samples=2, min_warmup=1)}
    specs = [BENCHMARKS["memory.d2d"], BENCHMARKS["memory.h2d_pinned"]]
    copy, skipped = run_here(specs, cpu, Options(quick=True), budgets=tiny, cpus=TWO_CORES)
    assert copy.status is Status.OK and copy.contended is True and copy.contention.share == 1.0
    assert skipped.status is Status.SKIP and skipped.contended is None
    assert copy.to_json()["contended"] is True and copy.to_json()["contention"]["usable_cores"] == 2.0


def test_gpu_figures_carry_no_cpu_contention_mark():
    result = case.BenchResult("matmul.bf16", "bf16", "bf16", "cuda:0", "H100", "bf16", Status.OK, 700.0, "TFLOP/s")
    assert result.contended is None and result.to_json()["contended"] is None


def test_real_busy_loops_make_the_preflight_warn():
    """Busy loops on more than half of the cores this process may use (they inherit its affinity): the
    real counters must show it. Other load on the machine only adds to what is measured."""
    cpus = Cpus.here()
    if cpus.spare_cores:
        pytest.skip(
            "a CPU quota below the CPUs: loops in this cgroup share its quota, which the sample credits as spare"
        )
    loops = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(max(1, math.ceil(cpus.usable_cores * 0.6)))
    ]
    try:
        time.sleep(0.3)  # let them start spinning
        check = contention.preflight(cpus, seconds=1.0)
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()
    assert check.status is Status.WARN, check.summary
    assert check.details["share"] >= contention.CONTENDED_SHARE


def test_a_sample_with_children_counts_their_cpu_time_as_its_own():
    """A burn's load runs in its workers: their CPU time is the burn's own, not other processes' use."""
    cpus = Cpus.here()
    before = contention.sample(cpus, with_children=True)
    child = subprocess.run(
        [sys.executable, "-c", "import time\nend = time.process_time() + 0.5\nwhile time.process_time() < end: pass"],
        timeout=60,
    )
    assert child.returncode == 0
    after, alone = contention.sample(cpus, with_children=True), contention.sample(cpus)
    assert after.own_s - before.own_s >= 0.45  # the child's half second of CPU (its start-up adds a little)
    assert after.own_s - alone.own_s >= 0.45  # and it is the children's share that carries it
