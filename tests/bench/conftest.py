"""Shared fixtures: a fake clock and timer (the harness's lowest boundary), a CPU device, a CLI runner,
and a report made of hand-made results (what the renderers and the exit policy read)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from click.testing import CliRunner, Result

from envcheck.bench import execute, plan
from envcheck.bench.app import BenchReport, BenchRequest, Comparison
from envcheck.bench.case import BenchResult
from envcheck.bench.harness import Budget
from envcheck.bench.model import BenchSpec, Options
from envcheck.core.model import CheckResult
from envcheck.core.report import utc_now
from envcheck.devices.model import DeviceInfo
from envcheck.devices.resolve import Request
from envcheck.probes import contention


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeTimer:
    """Returns scripted per-step times and advances the fake clock by what it reports, like real time."""

    def __init__(self, clock: FakeClock, step_times: Callable[[int], float]) -> None:
        self.clock = clock
        self.step_times = step_times
        self.calls = 0
        self.steps_run = 0

    def time(self, fn: Callable[[], Any], n: int) -> float:
        total = 0.0
        for _ in range(n):
            fn()
            total += self.step_times(self.steps_run)
            self.steps_run += 1
        self.calls += 1
        self.clock.now += total
        return total


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_timer(fake_clock: FakeClock) -> Callable[[Callable[[int], float]], FakeTimer]:
    return lambda step_times: FakeTimer(fake_clock, step_times)


@pytest.fixture
def seeded_noise() -> Callable[[float, float], Callable[[int], float]]:
    """Step times around ``base`` with relative Gaussian noise ``spread``, from a fixed seed."""

    def make(base: float, spread: float) -> Callable[[int], float]:
        rng = random.Random(0)
        return lambda i: base * max(0.05, 1 + rng.gauss(0, spread))

    return make


@pytest.fixture
def cpu() -> DeviceInfo:
    return DeviceInfo("cpu", "cpu", "test cpu", threads=1)


@pytest.fixture
def invoke() -> Iterator[Callable[..., Result]]:
    from envcheck.cli import main

    runner = CliRunner()
    yield lambda *args: runner.invoke(main, ["bench", *args], catch_exceptions=False)


def run_here(
    specs: Sequence[BenchSpec],
    dev: DeviceInfo,
    opts: Options,
    *,
    budgets: dict[tuple[str, bool], Budget] | None = None,
    cpus: contention.Cpus | None = None,
) -> list[BenchResult]:
    """The product's path for one device, in this process: the parent plans its job (envcheck.bench.plan),
    the worker's step runs it (envcheck.bench.execute.run_job), and the results merge as the parent merges
    them."""
    jobs = plan.schedule(list(specs), [dev], opts, env={}, budgets=budgets)
    if not jobs:
        return []
    if cpus is None and not dev.is_cuda:
        cpus = contention.Cpus.here()
    cases, results = execute.run_job(jobs[0], dev, specs, cpus=cpus)
    return execute.merge([execute.Entry(c.position, c.spec.id, c.spec.best_of) for c in cases], results)


def make_report(
    devices: Sequence[DeviceInfo],
    results: Sequence[BenchResult],
    preflight: Sequence[CheckResult] = (),
    *,
    comparison: Comparison | None = None,
    verdicts: Sequence[Any] | None = None,
    interrupted: bool = False,
    planned: int | None = None,
) -> BenchReport:
    """A finished run made of the given pieces, as run_bench would return it."""
    return BenchReport(
        request=BenchRequest(Request("cuda" if any(d.is_cuda for d in devices) else "cpu"), ()),
        devices=tuple(devices),
        results=tuple(results),
        preflight=tuple(preflight),
        comparison=comparison,
        spec_verdicts=None if verdicts is None else tuple(verdicts),
        generated_at=utc_now(),
        duration_s=2.0,
        wall_s=1.0,
        planned=len(results) if planned is None else planned,
        interrupted=interrupted,
    )


class FakeCuda:
    """torch.cuda as the bench reads it (the lowest boundary below envcheck.devices.resolve): the GPUs a
    CUDA build of torch would list, with their properties and free memory."""

    def __init__(self, gpus: list[dict[str, Any]]) -> None:
        self.gpus = gpus

    def props(self, index: int) -> Any:
        from types import SimpleNamespace

        gpu = {"major": 9, "minor": 0, "multi_processor_count": 132, "L2_cache_size": 50 << 20, **self.gpus[index]}
        return SimpleNamespace(**gpu)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import contextlib

        import torch

        monkeypatch.setattr(torch.version, "cuda", "12.4")
        monkeypatch.setattr(torch.cuda, "is_available", lambda: bool(self.gpus))
        monkeypatch.setattr(torch.cuda, "device_count", lambda: len(self.gpus))
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: self.gpus[i]["name"])
        monkeypatch.setattr(torch.cuda, "get_device_properties", self.props)
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda i: (self.gpus[i]["free"], self.gpus[i]["total"]))
        monkeypatch.setattr(torch.cuda, "device", lambda i: contextlib.nullcontext())


def h100(**extra: Any) -> dict[str, Any]:
    return {"name": "NVIDIA H100 80GB HBM3", "total": 80 << 30, "free": 79 << 30, **extra}


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> Callable[[list[dict[str, Any]]], FakeCuda]:
    """``fake_cuda([h100(), h100()])``: torch in this process sees those GPUs."""

    def use(gpus: list[dict[str, Any]]) -> FakeCuda:
        cuda = FakeCuda(gpus)
        cuda.install(monkeypatch)
        return cuda

    return use
