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

from envcheck.core import files
from envcheck.core.errors import CommandError
from envcheck.core.exit import ExitCode
from envcheck.core.files import path_shown, shown

SCHEMA = "envcheck.bench/1"
DEFAULT_THRESHOLD = 0.10


class BaselineError(CommandError, ValueError):
    """A baseline that cannot be used (missing, not JSON, another schema, nothing in common): exit 2."""

    def __init__(self, message: str) -> None:
        super().__init__(message, ExitCode.USAGE)


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


#: A saved run keeps every case's raw samples: 17 benchmarks, up to about 100 cases per device, at most
#: 500 samples each at about 30 bytes as ``--save`` indents them, is some 1.5 MB per device and 12 MB for
#: eight GPUs. 32 MiB is more than twice that, and ``json.loads`` reads it in one or two seconds.
BASELINE_MAX_BYTES = 32 * 1024**2
#: Digits an integer may have: more would not fit a float (10**308 is the largest), so it is no figure.
_MAX_DIGITS = 300


@dataclass(frozen=True)
class _NotFinite:
    """Where the file holds a number JSON cannot (``NaN``, ``Infinity``, a 5000-digit integer): kept as
    this marker while parsing, so that the error can name the key that holds it."""

    text: str


def _parse(text: str) -> tuple[Any, bool]:
    """The document, and whether it holds a number JSON cannot (then it must be searched for the key).

    Python's json reads ``NaN`` and ``Infinity`` (not JSON) and stops at the int-str limit (4300 digits)
    with a ValueError that names no line: those go through hooks. It also turns ``1e400`` into infinity;
    a hook on every float would triple the time to read a big baseline, so a figure's value is checked
    for that where it is used (:func:`_malformed`).
    """
    suspect = [False]

    def constant(name: str) -> _NotFinite:
        suspect[0] = True
        return _NotFinite(name)

    def integer(literal: str) -> int | _NotFinite:
        digits = len(literal.lstrip("-"))
        if digits <= _MAX_DIGITS:
            return int(literal)
        suspect[0] = True
        return _NotFinite(f"a {digits}-digit number")

    return json.loads(text, parse_constant=constant, parse_int=integer), suspect[0]


def _first_not_finite(data: Any) -> tuple[str, str] | None:
    """The key path (``results[2].value``) and the words for the first number JSON cannot hold, if any."""
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, _NotFinite):
            return where or "the top", value.text
        if isinstance(value, dict):
            items = [(f"{where}.{_name(k)}" if where else _name(k), v) for k, v in value.items()]
        elif isinstance(value, list):
            items = [(f"{where}[{i}]", v) for i, v in enumerate(value)]
        else:
            continue
        stack.extend(reversed(items))
    return None


def _name(key: str) -> str:
    return key if key.isidentifier() else shown(key)


def load_baseline(path: str | Path) -> dict[str, Any]:
    """Read and validate a saved run; every problem is one line in a :class:`BaselineError` naming the
    file and the key (or line). Read like a lab spec (:mod:`envcheck.core.files`): only a regular file,
    at most :data:`BASELINE_MAX_BYTES`, within a few seconds."""
    where = f"baseline {path_shown(path)}"
    try:
        raw = files.within(files.READ_TIMEOUT_S, lambda: files.read_regular(path, BASELINE_MAX_BYTES))
        text = files.decode(raw)
    except files.FileRefused as exc:
        raise BaselineError(f"{where} {exc}") from None
    try:
        data, suspect = _parse(text)
    except json.JSONDecodeError as exc:
        raise BaselineError(f"{where} is not JSON (line {exc.lineno}: {exc.msg})") from None
    except RecursionError:
        line = files.deep_line(text)
        at = f" (line {line})" if line else ""
        raise BaselineError(f"{where} is nested too deeply to be a saved run{at}") from None
    found = _first_not_finite(data) if suspect else None
    if found is not None:
        key, words = found
        raise BaselineError(f"{where} holds {words} at {key}: JSON numbers are finite (not written by --save)")
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        schema = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise BaselineError(
            f"{where} is not an `envcheck bench --save` file (schema {shown(schema)}, expected {SCHEMA!r})"
        )
    results = data.get("results")
    if not isinstance(results, list):
        what = "missing" if results is None else "not a list"
        raise BaselineError(f"{where} has a malformed results list: results is {what}")
    for i, r in enumerate(results):
        problem = _malformed(r, f"results[{i}]")
        if problem:
            raise BaselineError(f"{where} has a malformed results list: {problem}")
    return data


def _malformed(r: object, where: str) -> str | None:
    """What is wrong with a saved figure, or None. As ``--save`` writes it: text keys, a unit or null,
    and a finite number ≥ 0 or null for the value (a negative figure was never measured)."""
    if not isinstance(r, dict):
        return f"{where} must be an object, got {shown(r)}"
    missing = [k for k in ("id", "case", "device", "value", "unit") if k not in r]
    if missing:
        return f"{where} has no {', '.join(missing)}"
    for key in ("id", "case", "device"):
        if not isinstance(r[key], str):
            return f"{where}.{key} must be text, got {shown(r[key])}"
    if r["unit"] is not None and not isinstance(r["unit"], str):
        return f"{where}.unit must be text or null, got {shown(r['unit'])}"
    value = r["value"]
    number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if value is not None and (not number or value < 0):
        return f"{where}.value must be a finite number ≥ 0 or null, got {shown(value)}"
    return None


def _key(r: dict[str, Any]) -> tuple[str, str, str]:
    return (r["id"], r["case"], r["device"])


def _judges(r: dict[str, Any]) -> bool:
    """Whether a figure may judge another: not one whose answer failed its check (or whose case failed). A
    wrong answer is fast for no good reason: as a baseline it would make a healthy run a regression, and as
    this run's figure it would make a wrong kernel "no regression". A result without these fields (a
    hand-written or older baseline) is taken as it is."""
    return r.get("status", "ok") == "ok" and r.get("verified") is not False


def compare(
    current: list[dict[str, Any]],
    baseline: dict[str, Any],
    threshold: float = DEFAULT_THRESHOLD,
    *,
    path: str = "baseline",
    quick: bool | None = None,
) -> list[Delta]:
    """Deltas for every figure present (with a value, in the same unit) in both runs. ``quick``: whether
    this run is a ``--quick`` one, to say why a baseline of the other kind shares no figure.

    A baseline that shares no figure with this run is a mismatch (another machine's device names,
    another selection), reported as a :class:`BaselineError` rather than as "no regressions".
    """
    before = {_key(r): r for r in baseline["results"] if isinstance(r.get("value"), (int, float)) and _judges(r)}
    deltas = []
    for r in current:
        old = before.get(_key(r))
        if old is None or r.get("value") is None or not _judges(r) or old["unit"] != r.get("unit") or old["value"] <= 0:
            continue
        deltas.append(
            Delta(r["id"], r["case"], r["device"], r["unit"], float(old["value"]), float(r["value"]), threshold)
        )
    if not deltas:
        measured = sorted({f"{r['id']} on {r['device']}" for r in baseline["results"]})[:4]
        options = baseline.get("options") if isinstance(baseline.get("options"), dict) else {}
        saved_quick = options.get("quick") if isinstance(options.get("quick"), bool) else None
        why = ""
        if quick is not None and saved_quick is not None and saved_quick != quick:
            # --quick runs smaller cases: their figures have other case names, and are never compared
            made, this = ("a --quick run", "a full one") if saved_quick else ("a full run", "a --quick one")
            again = "--quick" if saved_quick else "without --quick"
            why = f": it was saved by {made} (other cases) and this is {this}; run the bench {again} to compare"
        raise BaselineError(
            f"baseline {path} shares no figure with this run (it holds {', '.join(measured) or 'no figures'}"
            f"{', ...' if len(baseline['results']) > 4 else ''}){why}"
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
