"""The timing harness against a fake clock: exact sample counts, budget, warm-up, statistics, noise."""

from __future__ import annotations

import pytest

from envcheck.bench.harness import Budget, CpuTimer, Measurement, measure, quantile

STEP = 1 / 64  # binary-exact, so budget arithmetic on the fake clock is exact


def test_budget_decides_how_many_samples(fake_clock, make_timer):
    timer = make_timer(lambda i: STEP)
    m = measure(lambda: None, timer, Budget(measure_s=0.25, warmup_s=0.0, sample_s=STEP), clock=fake_clock)
    assert m.steps_per_sample == 1
    assert len(m.samples_s) == 16  # 0.25 s of 1/64 s samples
    assert m.median_s == STEP and m.iqr_s == 0 and not m.noisy


def test_warmup_is_spent_first_and_never_kept(fake_clock, make_timer):
    # The first call "autotunes" for a whole second; it must not reach the samples.
    timer = make_timer(lambda i: 1.0 if i == 0 else STEP)
    m = measure(lambda: None, timer, Budget(measure_s=0.25, warmup_s=0.1, sample_s=STEP), clock=fake_clock)
    assert m.warmup_steps >= 2
    assert max(m.samples_s) == STEP


def test_short_steps_are_batched_into_samples(fake_clock, make_timer):
    timer = make_timer(lambda i: 0.001)
    m = measure(lambda: None, timer, Budget(measure_s=0.1, warmup_s=0.0, sample_s=0.01), clock=fake_clock)
    assert m.steps_per_sample == 10
    assert m.median_s == pytest.approx(0.001)
    assert timer.steps_run - m.warmup_steps == len(m.samples_s) * 10  # every timed step is in a sample


def test_min_samples_even_when_one_step_exceeds_the_budget(fake_clock, make_timer):
    timer = make_timer(lambda i: 2.0)
    m = measure(lambda: None, timer, Budget(measure_s=0.5, warmup_s=0.0, min_samples=5), clock=fake_clock)
    assert len(m.samples_s) == 5


def test_max_samples_caps_the_loop(fake_clock, make_timer):
    timer = make_timer(lambda i: STEP)
    m = measure(lambda: None, timer, Budget(measure_s=100, warmup_s=0, max_samples=7, sample_s=STEP), clock=fake_clock)
    assert len(m.samples_s) == 7


def test_statistics_are_derived_from_the_raw_samples():
    m = Measurement((5.0, 1.0, 4.0, 2.0, 3.0), 1, 2, "fake")
    assert m.median_s == 3.0
    assert (m.q1_s, m.q3_s, m.iqr_s) == (2.0, 4.0, 2.0)
    assert m.relative_iqr == pytest.approx(2 / 3)
    assert m.noisy
    data = m.to_json()
    assert data["samples_s"] == [5.0, 1.0, 4.0, 2.0, 3.0]  # raw, in the order measured
    assert data["median_s"] == 3.0 and data["iqr_s"] == 2.0 and data["samples"] == 5


def test_quantile_matches_linear_interpolation():
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert quantile([1.0], 0.25) == 1.0
    with pytest.raises(ValueError):
        quantile([], 0.5)


@pytest.mark.parametrize(("spread", "noisy"), [(0.01, False), (0.4, True)])
def test_noisy_marking_with_a_seeded_fake_timer(fake_clock, make_timer, seeded_noise, spread, noisy):
    timer = make_timer(seeded_noise(0.01, spread))
    m = measure(lambda: None, timer, Budget(measure_s=1.0, warmup_s=0.0, sample_s=0.01), clock=fake_clock)
    assert m.noisy is noisy
    assert m.median_s == pytest.approx(0.01, rel=0.2)


def test_cpu_timer_runs_the_step_n_times():
    calls = []
    ticks = iter([10.0, 10.5])
    elapsed = CpuTimer(clock=lambda: next(ticks)).time(lambda: calls.append(1), 4)
    assert elapsed == 0.5 and len(calls) == 4


class FakeCuda:
    """torch.cuda as the event timer uses it, on a machine whose current GPU is cuda:0."""

    def __init__(self) -> None:
        self.recorded: list[str] = []
        self.synchronized: list[str] = []
        cuda = self

        class Event:
            def __init__(self, enable_timing: bool = False) -> None:
                pass

            def record(self, stream: str | None = None) -> None:
                cuda.recorded.append(stream or "stream of the current GPU, cuda:0")

            def synchronize(self) -> None:
                pass

            def elapsed_time(self, end: object) -> float:
                return 2.0

        self.Event = Event

    def current_stream(self, device: str | None = None) -> str:
        return f"stream of {device or 'cuda:0'}"

    def synchronize(self, device: str | None = None) -> None:
        self.synchronized.append(device or "cuda:0")


def test_cuda_events_go_on_the_timed_devices_stream_whatever_gpu_is_current():
    from types import SimpleNamespace

    from envcheck.bench.harness import CudaEventTimer

    timer = CudaEventTimer("cuda:1")
    fake = FakeCuda()
    timer.torch = SimpleNamespace(cuda=fake)
    assert timer.time(lambda: None, 4) == 0.002
    assert fake.recorded == ["stream of cuda:1", "stream of cuda:1"]
    assert fake.synchronized == ["cuda:1"]
