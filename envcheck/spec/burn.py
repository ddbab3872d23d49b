"""A lab spec's ``[burn]`` requirements held against what ``envcheck burn`` saw: so that onboarding can
require a burn-in of a given length, without slowdowns, at a given throughput.

* ``min_duration``: every device was loaded at least this long, and the run was not interrupted (a burn
  shorter than the lab asks for proves less than it asks for);
* ``allow_throttle = false``: no thermal or hardware slowdown (the ``burn.throttle`` verdict) on any GPU;
  ``true`` tolerates one (the burn's own ``burn.throttle`` then only warns: envcheck.burn.app);
* ``min_sustained``: each device's steady-state throughput (the median over the run's last minute) reaches
  the minimum for the run's dtype.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from envcheck.spec.parse import LabSpec

#: A worker stops at its duration within one batch of matmuls: a run this much short still counts as full.
DURATION_SLACK_S = 1.0


@dataclass(frozen=True)
class BurnVerdict:
    """One ``[burn]`` requirement against this run, for one device or the run (``device`` None). ``passed``
    is None when the run cannot tell (a CPU burn has no slowdown reasons; a device that never loaded)."""

    requirement: str
    device: str | None
    minimum: float | None
    value: float | None
    passed: bool | None
    words: str

    def to_json(self) -> dict[str, Any]:
        return {
            # what a fleet merge names the requirement by (spec.burn.min_duration ...)
            "id": f"burn.{self.requirement}",
            "requirement": self.requirement,
            "device": self.device,
            "minimum": self.minimum,
            "value": self.value,
            "passed": self.passed,
            "summary": self.words,
        }


def judge_burn(
    spec: LabSpec,
    *,
    dtype: str,
    interrupted: bool,
    load_s: Mapping[str, float | None],
    sustained: Mapping[str, float | None],
    throttle: Mapping[str, Any] | None,
    contended: Collection[str] = (),
) -> list[BurnVerdict]:
    """Each ``[burn]`` requirement of ``spec`` against the run: ``load_s`` and ``sustained`` (steady TFLOP/s)
    by device name, ``throttle`` the run's ``burn.throttle`` result (its JSON); ``contended``: the devices whose
    figure was taken while other work held the CPUs."""
    need = spec.burn
    if need is None:
        return []
    verdicts: list[BurnVerdict] = []
    if need.min_duration_s is not None:
        verdicts.append(_duration(need.min_duration_s, interrupted, load_s))
    if need.allow_throttle is False:
        verdicts.append(_throttle(throttle))
    minimum = need.min_sustained.get(dtype, need.min_sustained.get(None))
    if minimum is not None:
        verdicts += _sustained(minimum, dtype, sustained, contended)
    return verdicts


def _duration(minimum: float, interrupted: bool, load_s: Mapping[str, float | None]) -> BurnVerdict:
    from envcheck.core.units import duration_text

    loaded = [v for v in load_s.values() if v is not None]
    shortest = min(loaded) if len(loaded) == len(load_s) and loaded else None
    if interrupted:
        words = "the run was interrupted"
        passed = False
    elif shortest is None:
        words, passed = "a device was never loaded", False
    else:
        passed = shortest + DURATION_SLACK_S >= minimum
        sign = "≥" if passed else "<"
        words = f"every device loaded for {duration_text(round(shortest))} {sign} spec minimum {duration_text(minimum)}"
    if interrupted and shortest is not None:
        words += f" after {duration_text(round(shortest))} (spec minimum {duration_text(minimum)})"
    return BurnVerdict("min_duration", None, minimum, shortest, passed, words)


def _throttle(throttle: Mapping[str, Any] | None) -> BurnVerdict:
    status = (throttle or {}).get("status")
    if status in (None, "skip", "crash"):
        return BurnVerdict("throttle", None, None, None, None, "slowdowns not watched (no GPU telemetry)")
    if status == "ok":
        return BurnVerdict("throttle", None, None, None, True, "no thermal or hardware slowdown, as the spec requires")
    return BurnVerdict("throttle", None, None, None, False, f"the spec allows no slowdown: {throttle['summary']}")


def _sustained(
    minimum: float, dtype: str, sustained: Mapping[str, float | None], contended: Collection[str] = ()
) -> Sequence[BurnVerdict]:
    """A figure taken under contention is low because of the sharing: it can still show the minimum is met
    (contention only lowers it), never that it is missed."""
    verdicts = []
    for device, value in sustained.items():
        if value is None:
            verdicts.append(BurnVerdict("min_sustained", device, minimum, None, None, "no throughput was measured"))
            continue
        passed: bool | None = value >= minimum
        sign = "≥" if passed else "<"
        words = f"{dtype} sustained {value:.4g} TFLOP/s {sign} spec minimum {minimum:.4g} TFLOP/s"
        if not passed and device in contended:
            passed = None
            words += ", taken while other work held the CPUs: not judged (burn.contention)"
        verdicts.append(BurnVerdict("min_sustained", device, minimum, value, passed, words))
    return verdicts
