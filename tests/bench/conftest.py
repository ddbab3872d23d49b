"""Shared fixtures: a fake clock and timer (the harness's lowest boundary), a CPU device, a CLI runner."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from click.testing import CliRunner, Result

from envcheck.bench.registry import DeviceInfo


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
