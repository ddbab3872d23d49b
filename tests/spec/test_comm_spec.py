"""The ``[comm]`` section of a lab spec: parsing every way a user writes a bandwidth, refusing every
way they get it wrong (one line, exit 2 through the installed parser), and judging a comm run."""

from __future__ import annotations

import pytest

from envcheck.core.units import parse_rate
from envcheck.spec.comm import judge_comm
from envcheck.spec.parse import CommMinimum, SpecError, parse_spec_text


@pytest.mark.parametrize(
    ("text", "gb_s"),
    [
        ("400 GB/s", 400.0),
        ("400GB/s", 400.0),
        ("400 Gb/s", 50.0),  # an NDR InfiniBand port, quoted in bits
        ("400 Gbit/s", 50.0),
        ("1.5 TB/s", 1500.0),
        ("900 MB/s", 0.9),
        ("1 GiB/s", 1024**3 / 1e9),
        (12, 12.0),
        (12.5, 12.5),
    ],
)
def test_rates_are_read_in_gb_per_second(text, gb_s):
    assert parse_rate(text) == pytest.approx(gb_s)


@pytest.mark.parametrize("text", ["fast", "400", "400 gB/s", "400 GB", "-3 GB/s", "0 GB/s", 0, -1, float("nan"), True])
def test_what_is_not_a_rate_is_refused(text):
    with pytest.raises(ValueError, match="not a bandwidth"):
        parse_rate(text)


def test_a_comm_section_parses_every_op_it_names():
    spec = parse_spec_text(
        '[comm]\n"all_reduce" = { min_busbw = "400 GB/s" }\nsend_recv = { min_busbw = "400 Gb/s" }\n'
        "broadcast = { min_busbw = 12 }\n",
        "lab.toml",
    )
    assert spec.comm == [
        CommMinimum("all_reduce", 400.0),
        CommMinimum("send_recv", 50.0),
        CommMinimum("broadcast", 12.0),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[comm]\nall_reduce = 400\n", "[comm] all_reduce: must be a table { min_busbw = '<rate>' }, got 400"),
        (
            "[comm]\nall_reduce = { min = 400 }\n",
            "[comm] all_reduce: must be a table { min_busbw = '<rate>' }, got {'min': 400}",
        ),
        (
            "[comm]\nallreduce = { min_busbw = 1 }\n",
            "[comm]: unknown operation 'allreduce' (known: all_reduce, all_gather, reduce_scatter, broadcast, "
            "all_to_all, send_recv)",
        ),
        (
            '[comm]\nall_reduce = { min_busbw = "fast" }\n',
            "[comm] all_reduce.min_busbw must be a bandwidth above 0 like '400 GB/s' (or a number of GB/s), got 'fast'",
        ),
        (
            "[comm]\nall_reduce = { min_busbw = nan }\n",
            "[comm] all_reduce.min_busbw must be a bandwidth above 0 like '400 GB/s' (or a number of GB/s), got nan",
        ),
        (
            "[comm]\nall_reduce = { min_busbw = 0 }\n",
            "[comm] all_reduce.min_busbw must be a bandwidth above 0 like '400 GB/s' (or a number of GB/s), got 0",
        ),
        (
            "[comm]\nall_reduce = { min_busbw = " + "9" * 400 + " }\n",
            "[comm] all_reduce.min_busbw must be a bandwidth above 0 like '400 GB/s' (or a number of GB/s), got ",
        ),
    ],
)
def test_a_malformed_comm_section_is_one_line_naming_the_key(text, message):
    with pytest.raises(SpecError) as caught:
        parse_spec_text(text, "lab.toml")
    assert str(caught.value).startswith(f"lab.toml: {message}")
    assert "\n" not in str(caught.value)


def _result(op: str, busbw: float, verified: bool = True) -> dict:
    return {"op": op, "size_bytes": 1 << 20, "busbw_gb_s": busbw, "verified": verified}


def test_each_op_is_judged_by_its_best_verified_size():
    spec = parse_spec_text(
        "[comm]\nall_reduce = { min_busbw = 100 }\nall_gather = { min_busbw = 100 }\nbroadcast = { min_busbw = 100 }\n",
        "lab.toml",
    )
    results = [
        _result("all_reduce", 20.0),
        _result("all_reduce", 120.0),  # the peak passes
        _result("all_gather", 90.0),
        _result("all_gather", 500.0, verified=False),  # a fast wrong answer is no figure
    ]
    verdicts = {v.op: v for v in judge_comm(spec, results)}
    assert (verdicts["all_reduce"].passed, verdicts["all_reduce"].value_gb_s) == (True, 120.0)
    assert (verdicts["all_gather"].passed, verdicts["all_gather"].value_gb_s) == (False, 90.0)
    assert verdicts["all_gather"].words == "busbw 90 GB/s < spec minimum 100 GB/s"
    assert verdicts["broadcast"].passed is None
    assert verdicts["broadcast"].to_json()["summary"] == "not measured in this run"


def test_send_recv_is_held_to_its_slowest_pair():
    spec = parse_spec_text("[comm]\nsend_recv = { min_busbw = 100 }\n", "lab.toml")
    p2p = {
        "ranks": [{"rank": 0}, {"rank": 1}, {"rank": 2}],
        "matrix": [[None, 150.0, 140.0], [150.0, None, 40.0], [145.0, 150.0, None]],
    }
    (verdict,) = judge_comm(spec, [_result("send_recv", 150.0)], p2p)
    assert verdict.passed is False
    assert verdict.value_gb_s == 40.0
    assert "rank 1 → rank 2" in verdict.words
