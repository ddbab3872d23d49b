"""A lab spec's ``[comm]`` minimums held against what ``envcheck comm`` measured.

The figure judged is nccl-tests' bus bandwidth (busbw), because it is the one that does not depend on
the number of ranks: a lab can write one minimum for ``all_reduce`` and hold every node to it. Each
operation is judged by its best verified size (bandwidth grows with the message size until the links
are full, so the peak is what the fabric can do); ``send_recv`` is judged by its *slowest* pair of the
point-to-point matrix when there is one, because one slow link is exactly what a lab wants found.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from envcheck.spec.parse import LabSpec


@dataclass(frozen=True)
class CommVerdict:
    """One ``[comm]`` minimum against this run. ``passed`` is None when the run did not measure the
    operation (``--ops`` left it out, or no result of it verified): neither passed nor failed."""

    op: str
    minimum_gb_s: float
    value_gb_s: float | None
    passed: bool | None
    words: str

    def to_json(self) -> dict[str, Any]:
        return {
            "op": self.op,
            "min_busbw_gb_s": self.minimum_gb_s,
            "busbw_gb_s": self.value_gb_s,
            "passed": self.passed,
            "summary": self.words,
        }


def peak_busbw(results: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """The best bus bandwidth of each operation over its verified results; an unverified figure is not
    a figure (a fast wrong answer proves nothing)."""
    best: dict[str, float] = {}
    for r in results:
        value = r.get("busbw_gb_s")
        if r.get("verified") is True and isinstance(value, (int, float)):
            best[r["op"]] = max(best.get(r["op"], 0.0), float(value))
    return best


def slowest_pair(p2p: Mapping[str, Any] | None) -> tuple[float, int, int] | None:
    """The slowest measured link of a point-to-point matrix (GB/s, sender, receiver); None without one."""
    from envcheck.core.report import p2p_nodes

    worst: tuple[float, int, int] | None = None
    for node in p2p_nodes(p2p):
        ranks = list(node.get("ranks") or [])
        for i, row in enumerate(node.get("matrix") or []):
            for j, value in enumerate(row or []):
                if isinstance(value, (int, float)) and (worst is None or value < worst[0]):
                    worst = (float(value), _rank(ranks, i), _rank(ranks, j))
    return worst


def _rank(ranks: list[Any], i: int) -> int:
    entry = ranks[i] if i < len(ranks) else i
    return int(entry["rank"]) if isinstance(entry, Mapping) else int(entry)


def judge_comm(
    spec: LabSpec, results: Sequence[Mapping[str, Any]], p2p: Mapping[str, Any] | None = None
) -> list[CommVerdict]:
    """Each ``[comm]`` minimum of ``spec`` against ``results`` (the envcheck.comm/1 ``results`` entries)
    and, for ``send_recv``, the slowest pair of ``p2p`` (the document's matrix) when it has one."""
    best = peak_busbw(results)
    worst = slowest_pair(p2p)
    verdicts = []
    for need in spec.comm:
        where = ""
        if need.op == "send_recv" and worst is not None:
            value: float | None = worst[0]
            where = f" (slowest pair: rank {worst[1]} → rank {worst[2]})"
        else:
            value = best.get(need.op)
        if value is None:
            verdicts.append(CommVerdict(need.op, need.min_busbw_gb_s, None, None, "not measured in this run"))
            continue
        passed = value >= need.min_busbw_gb_s
        sign = "≥" if passed else "<"
        words = f"busbw {value:.4g} GB/s{where} {sign} spec minimum {need.min_busbw_gb_s:.4g} GB/s"
        verdicts.append(CommVerdict(need.op, need.min_busbw_gb_s, value, passed, words))
    return verdicts
