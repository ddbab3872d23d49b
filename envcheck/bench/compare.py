"""``--compare``: hold this run against a saved one and name every figure that dropped.

Works on the JSON form of both runs, so a baseline saved by any earlier envcheck with the same schema
compares the same way as the current run. Figures are matched on (benchmark id, case, device): the
case names the size, so a figure is only held against the same problem on the same device.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = "envcheck.bench/1"
DEFAULT_THRESHOLD = 0.10


class BaselineError(ValueError):
    """A baseline that cannot be used (missing, not JSON, another schema, nothing in common): exit 2."""


@dataclass(frozen=True)
class Delta:
    id: str
    case: str
    device: str
    unit: str
    before: float
    after: float
    threshold: float

    @property
    def change(self) -> float:
        """Relative change: -0.15 is 15 % slower than the baseline (every figure is higher-is-better)."""
        return self.after / self.before - 1.0

    @property
    def regressed(self) -> bool:
        return self.change < -self.threshold

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "case": self.case,
            "device": self.device,
            "unit": self.unit,
            "before": self.before,
            "after": self.after,
            "change": round(self.change, 4),
            "regressed": self.regressed,
        }


def load_baseline(path: str | Path) -> dict[str, Any]:
    """Read and validate a saved run; every problem is one line in a :class:`BaselineError`."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BaselineError(f"baseline {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BaselineError(f"baseline {path} cannot be read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise BaselineError(f"baseline {path} is not JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise BaselineError(
            f"baseline {path} is not an `envcheck bench --save` file (schema {found!r}, expected {SCHEMA!r})"
        )
    results = data.get("results")
    if not isinstance(results, list) or not all(_well_formed(r) for r in results):
        raise BaselineError(f"baseline {path} has a malformed results list")
    return data


def _well_formed(r: object) -> bool:
    """A saved figure as ``--save`` writes it: text keys, and a finite number or null for the value (a NaN
    or Infinity, which Python's json accepts, would compare as never regressed or always regressed)."""
    if not isinstance(r, dict) or not {"id", "case", "device", "value", "unit"} <= r.keys():
        return False
    value, unit = r["value"], r["unit"]
    return (
        all(isinstance(r[k], str) for k in ("id", "case", "device"))
        and (unit is None or isinstance(unit, str))
        and (
            value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value))
        )
    )


def _key(r: dict[str, Any]) -> tuple[str, str, str]:
    return (r["id"], r["case"], r["device"])


def compare(
    current: list[dict[str, Any]],
    baseline: dict[str, Any],
    threshold: float = DEFAULT_THRESHOLD,
    *,
    path: str = "baseline",
) -> list[Delta]:
    """Deltas for every figure present (with a value, in the same unit) in both runs.

    A baseline that shares no figure with this run is a mismatch (another machine's device names,
    another selection), reported as a :class:`BaselineError` rather than as "no regressions".
    """
    before = {_key(r): r for r in baseline["results"] if isinstance(r.get("value"), (int, float))}
    deltas = []
    for r in current:
        old = before.get(_key(r))
        if old is None or r.get("value") is None or old["unit"] != r.get("unit") or old["value"] <= 0:
            continue
        deltas.append(
            Delta(r["id"], r["case"], r["device"], r["unit"], float(old["value"]), float(r["value"]), threshold)
        )
    if not deltas:
        measured = sorted({f"{r['id']} on {r['device']}" for r in baseline["results"]})[:4]
        raise BaselineError(
            f"baseline {path} shares no figure with this run (it holds {', '.join(measured) or 'no figures'}"
            f"{', ...' if len(baseline['results']) > 4 else ''})"
        )
    return deltas


def precheck(baseline: dict[str, Any], ids: list[str], devices: list[str], *, path: str = "baseline") -> None:
    """Fail before a minute of benchmarking when the baseline cannot share a figure with this run."""
    if not any(r["id"] in ids and r["device"] in devices for r in baseline["results"]):
        held = sorted({r["device"] for r in baseline["results"]})
        raise BaselineError(
            f"baseline {path} has no figure for the selected benchmarks on {', '.join(devices)} "
            f"(it holds devices: {', '.join(held) or 'none'})"
        )
