"""The fleet's merge in-process, over hand-made digests (what each report's adapter takes of it): each
node's status and order, drift and the uniform stack, slow devices against their model's median, the
duplicates, and the fleet's status. Every expected figure is computed by hand in the test."""

from __future__ import annotations

import math
import re
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envcheck.core.model import Status
from envcheck.fleet.kinds import Digest, Group, Problem, Reading, ReportRef, pack
from envcheck.fleet.merge import DEFAULT_THRESHOLD, field_title, merge, merge_digests
from envcheck.fleet.read import NodeReport, Skipped

H100 = Group("matmul.bf16", "gpu", "NVIDIA H100", "TFLOP/s", False)


def _reading(value, index=0, *, uuid=None, group=H100, device=None, contended=False):
    device = device or f"cuda:{index}"
    bus = None if index is None else f"0000:{index:02x}:00.0"
    return Reading(group, uuid or device, group.device_kind, device, index, uuid, bus, value, contended)


def _digest(
    host, kind="doctor", status=Status.OK, *, problems=(), fields=(), readings=(), uuids=(), rank=0, source=None
):
    source = source or f"{host}/{kind}.json"
    ref = ReportRef(source, kind, status, 0 if status is Status.OK else 1, "2026-01-01T00:00:00+00:00")
    return Digest(source, kind, host, ref, tuple(problems), tuple(fields), pack(readings), frozenset(uuids), rank)


def _problem(status, summary="x", source="s"):
    return Problem(source, "doctor", "gpu.ecc", status, summary)


def test_nodes_fail_first_then_warn_then_by_name_with_their_own_problems_split():
    fail = _problem(Status.FAIL, "ECC")
    crash = _problem(Status.CRASH, "crashed")
    warn = _problem(Status.WARN, "hot")
    report = merge_digests(
        [
            _digest("b-ok"),
            _digest("a-warn", problems=[(None, warn)]),
            _digest("z-fail", status=Status.FAIL, problems=[(None, fail), (None, warn), (None, crash)]),
            # A comm report naming a rank on another host: that host is a node of its own.
            _digest("c-ok", "comm", problems=[("d-gone", _problem(Status.FAIL, "never joined"))]),
            _digest("c-ok"),
        ]
    )
    assert [(n.hostname, n.status) for n in report.nodes] == [
        ("d-gone", Status.FAIL), ("z-fail", Status.FAIL), ("a-warn", Status.WARN), ("b-ok", Status.OK),
        ("c-ok", Status.OK),
    ]  # fmt: skip
    z = report.nodes[1]
    assert (z.failing, z.warnings) == ((fail, crash), (warn,))
    assert [r.source for r in z.reports] == ["z-fail/doctor.json"] and report.nodes[0].reports == ()
    assert report.reports_read == 5 and int(report.exit_code) == 1


def test_a_nodes_status_is_the_worst_of_its_reports():
    report = merge_digests([_digest("n", "doctor", Status.OK), _digest("n", "bench", Status.WARN)])
    (node,) = report.nodes
    assert node.status is Status.WARN and len(node.reports) == 2
    assert (report.status, int(report.exit_code)) == (Status.WARN, 0)


def test_a_field_comes_from_the_report_that_sees_most_and_the_first_among_equals():
    report = merge_digests(
        [
            _digest("n1", "bench", fields=[("torch.version", "2.3")], rank=2),
            _digest("n1", "doctor", fields=[("torch.version", "2.4")], rank=0),
            _digest("n1", "burn", fields=[("torch.version", "2.5")], rank=0),
            _digest("n2", "doctor", fields=[("torch.version", "2.4")], rank=0),
        ]
    )
    assert report.uniform == (("torch.version", "2.4", 2),) and report.drift == ()


ACCELERATE = [("package.accelerate", "1")]


def test_drift_lists_each_field_in_report_order_its_values_majority_first_with_sorted_hosts():
    report = merge_digests(
        [
            _digest(h, fields=[("package.numpy", np), ("python", "3.11"), ("driver.version", drv), *ACCELERATE])
            for h, drv, np in (("n3", "550", "2.0"), ("n1", "535", "1.26"), ("n2", "550", "2.0"), ("n4", "535", "1.9"))
        ]
    )  # fmt: skip
    assert [(d.field, d.values) for d in report.drift] == [
        ("driver.version", (("535", ("n1", "n4")), ("550", ("n2", "n3")))),  # a tie: by value
        ("package.numpy", (("2.0", ("n2", "n3")), ("1.26", ("n1",)), ("1.9", ("n4",)))),
    ]
    assert [d.title for d in report.drift] == ["NVIDIA driver", "package numpy"]
    assert report.uniform == (("python", "3.11", 4), ("package.accelerate", "1", 4))
    assert report.status is Status.WARN and int(report.exit_code) == 0  # drift is called out, not a failure


def test_field_titles():
    assert field_title("torch.cudnn") == "cuDNN"
    assert field_title("package.flash-attn") == "package flash-attn"
    assert field_title("something.new") == "something.new"


def _compare(values, threshold=DEFAULT_THRESHOLD):
    """One H100 per host, host ``h{i}``, with ``values[i]``."""
    digests = [_digest(f"h{i}", "bench", readings=[_reading(v, uuid=f"GPU-{i}")]) for i, v in enumerate(values)]
    return merge_digests(digests, threshold=threshold)


def test_a_device_more_than_the_threshold_below_its_models_median_is_slow_and_fails_its_node():
    # Median of 100, 100, 80, 95, 89 is 95: 80 is 15.79 % below it, 89 is 6.32 % below.
    report = _compare([100.0, 100.0, 80.0, 95.0, 89.0])
    (comparison,) = report.comparisons
    assert (comparison.id, comparison.model, comparison.unit, comparison.median) == (
        "matmul.bf16", "NVIDIA H100", "TFLOP/s", 95.0,
    )  # fmt: skip
    assert [(f.hostname, f.value, f.shortfall, f.slow) for f in comparison.figures] == [
        ("h0", 100.0, round(1 - 100 / 95, 4), False),
        ("h1", 100.0, round(1 - 100 / 95, 4), False),
        ("h2", 80.0, 0.1579, True),
        ("h3", 95.0, 0.0, False),
        ("h4", 89.0, 0.0632, False),
    ]
    (slow,) = report.slow
    assert (slow.hostname, slow.uuid, slow.index, slow.pci_bus_id, slow.fleet_median) == (
        "h2", "GPU-2", 0, "0000:00:00.0", 95.0,
    )  # fmt: skip
    assert report.slow_gpus == [slow] and report.slow_cpus == []
    assert [(n.hostname, n.status, n.slow) for n in report.nodes][0] == ("h2", Status.FAIL, (slow,))
    assert int(report.exit_code) == 1


@pytest.mark.parametrize(
    ("threshold", "slow"),
    [(0.25, False), (0.2499, True)],  # 75 against a median of 100 is exactly 25 % below
)
def test_exactly_the_threshold_below_is_not_slow(threshold, slow):
    report = _compare([100.0, 100.0, 75.0], threshold)
    assert [f.slow for f in report.comparisons[0].figures] == [False, False, slow]
    assert report.threshold == threshold


def test_a_device_alone_is_never_slow_and_a_median_of_zero_has_no_shortfall():
    assert _compare([1.0]).comparisons[0].figures[0].slow is False
    (zeros,) = _compare([0.0, 0.0, 0.0]).comparisons
    assert [(f.shortfall, f.slow) for f in zeros.figures] == [(0.0, False)] * 3


def test_two_figures_near_the_float_maximum_take_the_lower_as_median():
    big = 1.7e308
    (c,) = _compare([big, big]).comparisons
    assert c.median == big and [f.shortfall for f in c.figures] == [0.0, 0.0]


def test_a_device_benchmarked_twice_counts_its_best_and_contended_figures_are_only_listed():
    quick = Group("matmul.bf16", "gpu", "NVIDIA H100", "TFLOP/s", True)
    cpu = Group("matmul.fp32", "cpu", "Xeon", "GFLOP/s", False)
    busy = _reading(1.0, 0, uuid="GPU-9", contended=True)
    first = [_reading(50.0, 1, uuid="GPU-1"), _reading(30.0, uuid="GPU-0")]
    second = [_reading(70.0, 1, uuid="GPU-1"), _reading(20.0, uuid="GPU-0")]
    report = merge_digests(
        [
            _digest("n1", "bench", readings=first, source="a"),
            _digest("n1", "bench", readings=second, source="b"),
            _digest("n2", "bench", readings=[busy, _reading(5.0, 0, uuid="GPU-5", group=quick)]),
            _digest("n2", "bench", readings=[_reading(9.0, None, group=cpu, device="cpu")], source="c"),
        ]
    )  # fmt: skip
    by_group = {(c.id, c.device_kind, c.quick): c for c in report.comparisons}
    full = by_group[("matmul.bf16", "gpu", False)]
    # Figures ordered by host, then index: n1's GPU 0 at its best (30, from a), GPU 1 at its best (70, from b).
    assert [(f.hostname, f.index, f.value, f.source) for f in full.figures] == [
        ("n1", 0, 30.0, "a"),
        ("n1", 1, 70.0, "b"),
    ]
    assert full.median == 50.0
    assert [(f.value, f.quick) for f in by_group[("matmul.bf16", "gpu", True)].figures] == [(5.0, True)]
    assert [(f.device, f.index, f.device_kind) for f in by_group[("matmul.fp32", "cpu", False)].figures] == [
        ("cpu", None, "cpu")
    ]
    assert report.contended == ((busy, "n2", "n2/bench.json"),)
    # n1 ran the bench twice: a duplicate report of one kind, called out.
    assert [(d.hostname, d.kind, d.sources) for d in report.duplicate_hosts] == [
        ("n1", "bench", ("a", "b")),
        ("n2", "bench", ("n2/bench.json", "c")),
    ]


def test_figures_of_one_host_are_ordered_by_index_with_no_index_first_then_device():
    group = Group("memory.h2d", "gpu", "NVIDIA H100", "GB/s", False)
    readings = [_reading(3.0, 1, group=group), _reading(1.0, None, group=group, device="b"),
                _reading(2.0, None, group=group, device="a")]  # fmt: skip
    (c,) = merge_digests([_digest("n", "bench", readings=readings)]).comparisons
    assert [(f.index, f.device) for f in c.figures] == [(None, "a"), (None, "b"), (1, "cuda:1")]


def test_a_gpu_uuid_on_two_hosts_is_a_duplicate_naming_both_hosts_and_their_sources():
    report = merge_digests(
        [
            _digest("n2", uuids={"GPU-x", "GPU-y"}),
            _digest("n1", uuids={"GPU-x"}),
            _digest("n3", uuids={"GPU-z"}),
        ]
    )
    assert [(d.uuid, d.hosts, d.sources) for d in report.duplicate_gpus] == [
        ("GPU-x", ("n1", "n2"), ("n1/doctor.json", "n2/doctor.json"))
    ]
    assert report.duplicate_hosts == () and report.status is Status.WARN


def test_a_host_named_in_two_cases_or_with_a_trailing_dot_is_one_node():
    """Host names are case-insensitive: a bench report naming ``NODE-5`` beside a doctor report naming
    ``node-5`` is one node (not a phantom second one, each missing the other's report, their GPUs "seen on
    two hosts"), kept in its lower-case spelling; ``node-6.`` fully qualified is ``node-6``. Merged in batches
    or at once, alike."""
    digests = [
        _digest("node-5", "doctor", Status.WARN, problems=[(None, _problem(Status.WARN))], uuids={"GPU-a"}),
        _digest("NODE-5", "bench", readings=[_reading(10.0, 0, uuid="GPU-a")], uuids={"GPU-a"}),
        _digest("node-6.", "doctor", fields=[("driver", "550")], uuids={"GPU-b"}),
        _digest("node-6", "bench", readings=[_reading(10.0, 0, uuid="GPU-b")], uuids={"GPU-b"}),
        _digest("Node-7", "doctor"),
    ]
    for report in (merge_digests(digests), _merged_in_two(digests)):
        assert sorted(n.hostname for n in report.nodes) == ["Node-7", "node-5", "node-6"]
        assert {n.hostname: len(n.reports) for n in report.nodes} == {"node-5": 2, "node-6": 2, "Node-7": 1}
        assert report.duplicate_gpus == () and report.duplicate_hosts == ()
        # each half has the other's report: neither misses one (Node-7, alone, has no bench report)
        missing = {n.hostname for n in report.nodes for p in n.warnings if "no bench report" in p.summary}
        assert missing == {"Node-7"}
        (c,) = report.comparisons
        assert sorted(f.hostname for f in c.figures) == ["node-5", "node-6"]
        assert next(n for n in report.nodes if n.hostname == "node-5").status is Status.WARN


def test_a_card_in_both_spellings_reports_is_one_device_its_newer_figure_deciding():
    """node-3's older bench report (GPU 2 at half pace) names it node-3, its newer one (at pace) NODE-3: one
    node, whose GPU 2 is one device in the fleet's median, judged by its newer figure, as when both spellings
    agree. ``straße`` is not ``strasse`` (only ASCII letters have a case in a host name)."""

    def bench(host, value, when, uuid="GPU-3-2"):
        d = _digest(host, "bench", readings=[_reading(value, 2, uuid=uuid)], uuids={uuid}, source=f"{host}-{when}")
        return replace(d, ref=d.ref._replace(generated_at=f"2026-01-0{when}T00:00:00+00:00"))

    others = [bench(f"n{i}", 10.0, 1, uuid=f"GPU-{i}") for i in range(4)]
    for old, new in (("node-3", "NODE-3"), ("node-3", "node-3")):
        report = merge_digests([*others, bench(old, 5.0, 1), bench(new, 10.0, 2)])
        (c,) = report.comparisons
        assert len(c.figures) == 5 and not c.slow, (old, new)
        assert [n.hostname for n in report.nodes if n.hostname.lower() == "node-3"] == ["node-3"]
    report = merge_digests([bench("strasse", 10.0, 1, uuid="GPU-a"), bench("straße", 10.0, 1, uuid="GPU-b")])
    assert sorted(n.hostname for n in report.nodes) == ["strasse", "straße"]


def _merged_in_two(digests):
    """The digests merged as the command merges batches: two mergers, the second absorbed by the first."""
    from envcheck.fleet.merge import Merger

    first, second = Merger(), Merger()
    for d in digests[:2]:
        first.add(d)
    for d in digests[2:]:
        second.add(d)
    first.absorb(second)
    return first.finish()


def test_a_skipped_source_alone_warns_and_a_clean_fleet_is_ok():
    assert merge_digests([_digest("n")]).statuses() == [Status.OK]
    skipped = merge_digests([_digest("n")], [Skipped("bad.json", "not JSON")])
    assert skipped.statuses() == [Status.OK, Status.WARN] and skipped.skipped == (Skipped("bad.json", "not JSON"),)


def test_merge_reads_each_document_by_its_kinds_adapter_and_passes_the_threshold():
    doc = {
        "schema": "envcheck.doctor/1",
        "generated_at": "2026-01-01T00:00:00+00:00",
        "host": {"hostname": "n"},
        "checks": [{"id": "gpu.ecc", "status": "fail", "summary": "3 uncorrected"}],
        "exit_code": 1,
    }
    report = merge([NodeReport("n.json", "doctor", "n", doc)], threshold=0.3)
    (node,) = report.nodes
    assert (node.hostname, node.status, report.threshold) == ("n", Status.FAIL, 0.3)
    assert [(p.id, p.summary) for p in node.failing] == [("gpu.ecc", "3 uncorrected")]
    assert math.isclose(merge([]).threshold, DEFAULT_THRESHOLD)


def test_a_figure_carries_its_benchmark_model_and_unit_and_two_devices_are_compared():
    # Two devices: the median is their mean, 75; 50 is a third below it.
    report = _compare([100.0, 50.0])
    assert [(f.id, f.model, f.unit, f.device_kind, f.device, f.slow) for f in report.comparisons[0].figures] == [
        ("matmul.bf16", "NVIDIA H100", "TFLOP/s", "gpu", "cuda:0", False),
        ("matmul.bf16", "NVIDIA H100", "TFLOP/s", "gpu", "cuda:0", True),
    ]
    assert report.comparisons[0].figures[1].shortfall == round(1 - 50 / 75, 4)


def test_figures_below_one_unit_are_judged_too():
    # Median of 0.5, 0.5, 0.2 is 0.5: 0.2 is 60 % below it.
    assert [f.slow for f in _compare([0.5, 0.5, 0.2]).comparisons[0].figures] == [False, False, True]


def test_figures_are_ordered_by_host_not_by_source_and_a_tie_keeps_the_first_reading():
    group = Group("memory.d2d", "gpu", "NVIDIA H100", "GB/s", False)
    report = merge_digests(
        [
            _digest("a", "bench", readings=[_reading(10.0, group=group)], source="z.json"),
            _digest("b", "bench", readings=[_reading(10.0, group=group)], source="y.json"),
            _digest("b", "bench", readings=[_reading(10.0, group=group)], source="x.json"),
        ]
    )
    assert [(f.hostname, f.source) for f in report.comparisons[0].figures] == [("a", "z.json"), ("b", "y.json")]


def test_devices_without_an_index_come_first_then_by_index_then_by_name():
    group = Group("memory.h2d", "gpu", "NVIDIA H100", "GB/s", False)
    readings = [_reading(4.0, 1, group=group), _reading(3.0, 0, group=group),
                _reading(2.0, None, group=group, device="y"), _reading(1.0, None, group=group, device="x")]  # fmt: skip
    (c,) = merge_digests([_digest("n", "bench", readings=readings)]).comparisons
    assert [(f.index, f.device) for f in c.figures] == [(None, "x"), (None, "y"), (0, "cuda:0"), (1, "cuda:1")]


def test_fields_follow_the_reports_order_not_the_alphabet_and_a_tie_is_broken_by_value():
    rows = (
        ("n1", "3.12", "H100", "2"),
        ("n2", "3.12", "H100", "2"),
        ("n3", "3.11", "A100", "1"),
        ("n4", "3.11", "A100", "1"),
    )
    fields = [[("package.zz", "1"), ("gpu.model", gpu), ("python", py), ("package.aa", aa)] for _, py, gpu, aa in rows]
    report = merge_digests([_digest(row[0], fields=f) for row, f in zip(rows, fields, strict=True)])
    assert [d.field for d in report.drift] == ["python", "gpu.model", "package.aa"]
    # 3.11 and 3.12 have two hosts each: 3.11 first by value, though its hosts (n3, n4) sort after 3.12's.
    assert report.drift[0].values == (("3.11", ("n3", "n4")), ("3.12", ("n1", "n2")))
    assert report.uniform == (("package.zz", "1", 4),)
    one = merge_digests(
        [_digest("n", fields=[("package.b", "1"), ("gpu.model", "H100"), ("python", "3.12"), ("package.a", "2")])]
    )
    assert [u[0] for u in one.uniform] == ["python", "gpu.model", "package.a", "package.b"]


def test_merge_keeps_the_skipped_sources_and_each_reports_source_and_kind():
    doc = {"schema": "envcheck.doctor/1", "host": {"hostname": "n"}, "checks": []}
    report = merge([NodeReport("n.json", "doctor", "n", doc)], [Skipped("x.json", "not JSON")])
    assert report.skipped == (Skipped("x.json", "not JSON"),)
    assert [(r.source, r.kind) for r in report.nodes[0].reports] == [("n.json", "doctor")]


def _fleet_digests():
    """Reports of four hosts in the order a job array leaves them, with what makes batches interact: a
    host whose bench ran twice (its best figure counts), a GPU UUID on two hosts, a field two reports of
    one node disagree on, problems, and a figure set apart."""
    other = Group("memory.d2d", "gpu", "NVIDIA H100", "GB/s", False)
    out = []
    for i in range(4):
        host = f"h{i}"
        readings = [_reading(100.0 + i, 0, uuid=f"GPU-{i}-0"), _reading(90.0 - i, 1, uuid=f"GPU-{i}-1", group=other)]
        warn = [(None, _problem(Status.WARN, f"w{i}"))]
        out.append(_digest(host, "doctor", problems=warn, fields=[("python", "3.11")]))
        uuids = {f"GPU-{i}-0"}
        out.append(_digest(host, "bench", readings=readings, fields=[("python", f"3.1{i}")], rank=1, uuids=uuids))
    out.append(_digest("h1", "bench", readings=[_reading(120.0, 0, uuid="GPU-1-0")], rank=1, source="h1/again.json"))
    out.append(_digest("h1", "bench", readings=[_reading(50.0, 0, uuid="GPU-1-0")], rank=1, source="h1/worse.json"))
    out.append(_digest("h3", "doctor", status=Status.FAIL, problems=[(None, _problem(Status.FAIL, "ecc"))],
                       uuids={"GPU-0-0"}, source="h3/doctor-2.json"))  # fmt: skip
    out.append(_digest("h2", "bench", readings=[_reading(1.0, 0, uuid="GPU-2-9", contended=True)], rank=1))
    return out


def _summary(report):
    return (
        [(n.hostname, n.status, [r.source for r in n.reports], n.failing, n.warnings, n.slow) for n in report.nodes],
        report.drift,
        report.uniform,
        [(c.id, c.model, c.median, c.figures) for c in report.comparisons],
        report.duplicate_hosts,
        report.duplicate_gpus,
        report.contended,
        report.problems,
        report.reports_read,
    )


@pytest.mark.parametrize("sent", [False, True], ids=["in-process", "pickled"])
@pytest.mark.parametrize("cuts", [(), (1,), (3, 8), (2, 5, 9), tuple(range(1, 12))])
def test_batches_merged_apart_and_absorbed_in_order_make_the_same_report(cuts, sent):
    """What a worker sends back is its batch's merger (pickled, as the pool sends it); the parent absorbs
    them in file order. Wherever the batches are cut (a node's reports split across two, a device
    benchmarked again in a later batch), the report is the one a single merger makes over every digest."""
    import pickle

    from envcheck.fleet.merge import Merger

    digests = _fleet_digests()
    whole = merge_digests(digests)
    merged = Merger()
    for start, end in zip((0, *cuts), (*cuts, len(digests)), strict=True):
        batch = Merger()
        for d in digests[start:end]:
            batch.add(d)
        merged.absorb(pickle.loads(pickle.dumps(batch)) if sent else batch)
    assert _summary(merged.finish()) == _summary(whole)
    # the device benchmarked three times keeps its best figure, from the report that gave it
    (figure,) = [f for c in whole.comparisons for f in c.figures if f.uuid == "GPU-1-0"]
    assert (figure.value, figure.source) == (120.0, "h1/again.json")


@pytest.mark.parametrize("cut", [None, 1, 2])
def test_a_slow_figure_keeps_the_names_its_own_report_gave_the_device(cut):
    """One card, named cuda:0 (index 0) by a burn pinned with CUDA_VISIBLE_DEVICES=3 and read first, and
    cuda:3 (index 3) by the bench that found it slow: the slow bench figure names it as the bench did,
    the burn's figure as the burn did, in one merger or absorbed across batches."""
    from envcheck.fleet.merge import Merger

    burn = Group("burn.bf16", "gpu", "NVIDIA H100", "TFLOP/s", False)
    digests = [
        _digest("n", "burn", readings=[_reading(500.0, 0, uuid="GPU-x", group=burn, device="cuda:0")], rank=2),
        _digest("n", "bench", readings=[_reading(50.0, 3, uuid="GPU-x", device="cuda:3")], rank=1),
        _digest("m", "bench", readings=[_reading(100.0, 0, uuid="GPU-y"), _reading(100.0, 1, uuid="GPU-z")], rank=1),
    ]
    if cut is None:
        report = merge_digests(digests)
    else:
        merged = Merger()
        for part in (digests[:cut], digests[cut:]):
            batch = Merger()
            for d in part:
                batch.add(d)
            merged.absorb(batch)
        report = merged.finish()
    (slow,) = report.slow
    assert (slow.uuid, slow.device, slow.index, slow.pci_bus_id) == ("GPU-x", "cuda:3", 3, "0000:03:00.0")
    (burned,) = [f for c in report.comparisons if c.id == "burn.bf16" for f in c.figures]
    assert (burned.device, burned.index) == ("cuda:0", 0)


def test_figures_columns_keep_a_devices_best_where_two_groups_of_a_benchmark_name_it():
    """A card whose model one report names and another does not is in two groups of one benchmark; the
    document's figures column for that benchmark keeps its best figure, not whichever group came last."""
    from envcheck.fleet.report import device_figures

    named = Group("matmul.bf16", "gpu", "NVIDIA H100", "TFLOP/s", False)
    unnamed = Group("matmul.bf16", "gpu", "unknown model", "TFLOP/s", False)
    report = merge_digests(
        [
            _digest("n", "bench", readings=[_reading(90.0, 0, uuid="GPU-x", group=named)], rank=1),
            _digest("n", "bench", readings=[_reading(40.0, 0, uuid="GPU-x", group=unnamed)], rank=1, source="b2"),
        ]
    )
    from envcheck.core.redact import remembered

    figures = device_figures(report.devices, report.comparisons, remembered(str))
    assert figures["devices"] == ["GPU-x"] and figures["values"]["matmul.bf16"] == [90.0]


def test_since_reads_a_hand_edited_previous_report_without_failing():
    """A previous fleet report edited by hand (a node's failing not a list, figures of another shape) is
    read for what it still holds: the node is there, nothing resolved or new, no figure compared."""
    from envcheck.fleet.since import changes

    previous = {"nodes": [{"hostname": "a", "failing": 5}, "x"], "figures": {"devices": "GPU-1", "values": []}}
    current = {"nodes": [{"hostname": "a", "failing": []}], "figures": {"devices": [], "hosts": [], "values": {}}}
    found = changes(previous, current, 0.1)
    assert [found[k] for k in ("new", "resolved", "appeared", "vanished", "slower")] == [[], [], [], [], []]


def test_since_matches_hosts_as_the_merge_does_and_a_copied_slow_card_moved_nowhere():
    """A previous report that named a node NODE-1 (written before hosts were matched case-insensitively)
    compares with this run's node-1: nothing appeared, vanished or moved. A slow card whose report was copied
    to a second node is slow on both: it did not move (the duplicate GPU says the rest); one slow on one node
    then and on another now did."""
    from envcheck.fleet.since import changes

    def slow(device):
        return {"device": "cuda:2", "index": 2, "uuid": device}

    def doc(*nodes):
        hosts = [{"hostname": h, "failing": [], "slow": [slow(d) for d in ds], "reports": []} for h, ds in nodes]
        return {"nodes": hosts, "figures": {"devices": [], "hosts": [], "values": {}}}

    found = changes(doc(("NODE-1", ["GPU-a"]), ("n2", [])), doc(("node-1", ["GPU-a"]), ("n2", [])), 0.1)
    assert [found[k] for k in ("new", "resolved", "appeared", "vanished", "moved")] == [[], [], [], [], []]
    found = changes(doc(("node-1", ["GPU-a"]), ("n2", [])), doc(("node-1", ["GPU-a"]), ("n2", ["GPU-a"])), 0.1)
    assert found["moved"] == [] and found["appeared"] == []
    found = changes(doc(("node-1", ["GPU-a"]), ("n2", [])), doc(("node-1", []), ("n2", ["GPU-a"])), 0.1)
    assert found["moved"] == [{"device": "GPU-a", "previous_hostname": "node-1", "hostname": "n2"}]
    assert found["new"] == [] and found["resolved"] == []  # the same card: neither


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.floats(min_value=1e-300, max_value=1e300), min_size=1, max_size=30),
    st.floats(min_value=0.01, max_value=0.99),
)
def test_the_slow_figures_are_every_figure_more_than_the_threshold_below_the_median(values, threshold):
    """Whatever the figures (ties, one far below, all alike, huge and tiny), a figure is slow exactly when
    1 - value / median > threshold, the median being statistics.median's (median_low where the mean of
    the two middle figures overflows)."""
    import statistics

    readings = [_reading(v, i, uuid=f"GPU-{i}") for i, v in enumerate(values)]
    (c,) = merge_digests([_digest("n", "bench", readings=readings)], threshold=threshold).comparisons
    median = statistics.median(values)
    if not math.isfinite(median):
        median = statistics.median_low(values)
    assert c.median == median
    expected = sorted(
        f"GPU-{i}" for i, v in enumerate(values) if len(values) > 1 and v < median and 1.0 - v / median > threshold
    )
    assert sorted(f.uuid for f in c.slow) == expected


_DEVICES = st.sampled_from(
    [
        {"index": 0, "uuid": "GPU-a"},
        {"index": 3, "uuid": "GPU-a", "device": "cuda:0"},  # the same card named otherwise
        {"index": 1, "uuid": "GPU-b"},
        {"index": None, "device": "cpu"},
    ]
)
_GROUPS = st.sampled_from([H100, Group("memory.d2d", "gpu", "NVIDIA H100", "GB/s", False)])
_READINGS = st.lists(
    st.tuples(_DEVICES, _GROUPS, st.floats(1.0, 500.0), st.booleans()).map(
        lambda t: _reading(t[2], group=t[1], contended=t[3], **t[0])
    ),
    max_size=10,
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_READINGS, min_size=1, max_size=3))
def test_a_report_packs_its_figures_and_merges_as_each_figure_alone(reports):
    """A report's figures go to the merge packed (envcheck.fleet.kinds.Figures: each device once, each
    group's figures together, put in whole where the devices are new). Whatever they hold (a device twice,
    one card under two names, figures set apart), the fleet compares what one digest per figure gives."""
    packed = [_digest("n", "bench", readings=r, rank=1, source=f"r{i}") for i, r in enumerate(reports)]
    alone = [_digest("n", "bench", readings=[x], rank=1, source=f"r{i}") for i, r in enumerate(reports) for x in r]
    one, other = merge_digests(packed), merge_digests(alone)
    compared = [[(c.id, c.unit, c.figures) for c in r.comparisons] for r in (one, other)]
    assert compared[0] == compared[1]
    assert one.contended == other.contended


# --- words that differ in numbers alone, said as one (kinds.spanned) -----------------------------------------

#: Numbers of one kind a slot of words holds: integers, decimals of two places, versions of three parts, and
#: numbers of one dot and any places (3.9, 3.10: decimals or versions, which no span may order).
_SLOTS = {
    "int": st.integers(0, 10**6).map(str),
    "dec": st.tuples(st.integers(0, 999), st.integers(0, 99)).map(lambda t: f"{t[0]}.{t[1]:02d}"),
    "ver": st.tuples(*[st.integers(0, 20)] * 3).map(lambda t: "{}.{}.{}".format(*t)),
    "dot": st.tuples(st.integers(0, 9), st.integers(0, 120)).map(lambda t: f"{t[0]}.{t[1]}"),
}


def _within(kind: str, low: str, value: str, high: str) -> bool:
    """Whether ``value`` lies in the span low–high, by its kind's order (a span of another kind's: no)."""
    try:
        order = (lambda v: tuple(map(float, v.split(".")))) if kind == "ver" else (lambda v: (float(v),))
        return order(low) <= order(value) <= order(high)
    except ValueError:
        return False


@settings(max_examples=300, deadline=None)
@given(
    between=st.lists(st.text(alphabet="abc:;()GiB%_ ", min_size=1, max_size=6), min_size=2, max_size=4),
    data=st.data(),
)
def test_words_said_as_one_are_true_of_each_wording(between: list[str], data: st.DataObject) -> None:
    """Whatever the numbers, the words said for many wordings say each wording's every number: as it is, or
    within a span by its kind's order, or counted past the few listed; and they keep every word the
    wordings share. (Numbers of one dot that read as decimals or versions alike: the cases below.)"""
    from envcheck.fleet.kinds import spanned

    slots = len(between) - 1
    kinds = [data.draw(st.sampled_from(sorted(_SLOTS))) for _ in range(slots)]
    rows = data.draw(st.lists(st.tuples(*(_SLOTS[k] for k in kinds)), min_size=2, max_size=9))
    texts = ["".join(b + (row[i] if i < slots else "") for i, b in enumerate(between)) for row in rows]
    said = spanned(texts)
    listed = set(re.findall(r"\d+(?:\.\d+)*", said))
    spans = re.findall(r"(\d+(?:\.\d+)*)–[A-Za-z_]*(\d+(?:\.\d+)*)", said)
    for i, kind in enumerate(kinds):
        for row in rows:
            value = row[i]
            inside = [(low, high) for low, high in spans if _within(kind, low, value, high)]
            # past a few values listed, the rest are counted ("or 2 other values")
            assert value in listed or inside or "other values" in said, (value, said)
    # the words every wording shares are all there, in order (a word that differs is said in its place with
    # each of its values: listed whole where it holds several numbers, 0000:17:00.0)
    split = [re.split(r"\s+", t) for t in texts]
    shared = [w for i, w in enumerate(split[0]) if all(s[i] == w for s in split)]
    tokens = iter(re.split(r"\s+", said))
    assert all(any(t == w for t in tokens) for w in shared), (shared, said)


@settings(max_examples=300, deadline=None)
@given(
    between=st.lists(st.text(alphabet="-,.:=(x\u00b2\u0663 ", min_size=1, max_size=4), min_size=2, max_size=4),
    data=st.data(),
)
def test_words_said_as_one_never_break_on_odd_words(between: list[str], data: st.DataObject) -> None:
    """Signs, commas, dots, letters glued to numbers, digits that are not ASCII, numbers of any length: a
    report's words are whatever its node wrote, and one odd wording must not take the fleet report down.
    The words every wording shares are kept, in order."""
    from envcheck.fleet.kinds import spanned

    number = st.one_of(st.integers(0, 10**4).map(str), st.text(alphabet="0123456789", min_size=1, max_size=60))
    slots = len(between) - 1
    rows = data.draw(st.lists(st.tuples(*[number] * slots), min_size=2, max_size=9))
    texts = ["".join(b + (row[i] if i < slots else "") for i, b in enumerate(between)) for row in rows]
    said = spanned(texts)
    split = [re.split(r"\s+", t) for t in texts]
    if len({len(s) for s in split}) == 1:
        shared = [w for i, w in enumerate(split[0]) if all(s[i] == w for s in split)]
        tokens = iter(re.split(r"\s+", said))
        assert all(any(t == w for t in tokens) for w in shared), (shared, said)


def test_words_said_as_one_fall_back_to_the_first_where_they_are_not_alike() -> None:
    from envcheck.fleet.kinds import spanned

    assert spanned(["GPU 0: 3 errors", "GPU 0: 4 faults"]) == "GPU 0: 3 errors"
    assert spanned(["torch 2.3.0 does not match 2.4.0", "torch 2.2.0 does not match 2.4.0"]) == (
        "torch 2.2.0 or 2.3.0 does not match 2.4.0"
    )
    # a version by its parts, not as a decimal: 2.10 is past 2.9
    assert spanned([f"driver 2.{n}.0 is old" for n in (9, 10, 8, 11)]) == "driver 2.8.0–2.11.0 is old"
    assert spanned(["load 0.75", "load 0.8", "load 0.75"]) == "load 0.8 or 0.75"  # (as versions are read)
    assert spanned([f"link eth{n} is down" for n in (1, 0)]) == "link eth0 or eth1 is down"
    assert spanned([f"node-{n} is down" for n in (12, 13)]) == "node-12 or node-13 is down"
    # one dot, places that differ: decimals or versions? listed as versions are read, never spanned
    assert spanned([f"Python 3.{n}" for n in (10, 8, 11, 9)]) == "Python 3.8, 3.9, 3.10 or 3.11"
    assert spanned([f"Python 3.{n}" for n in range(5, 13)]) == "Python 3.5, 3.6, 3.7, 3.8, 3.9 or 3 other values"


def test_words_said_as_one_read_each_word_whole() -> None:
    """A number grouped in thousands is one number, a minus its sign, and a word holding several numbers (a
    PCI bus id, a hex address, a fraction) is listed as it is: a span inside one said what no node had
    ("1,234 or 567 errors", "0000:17 or 18:00.0")."""
    from envcheck.fleet.kinds import spanned

    assert spanned(["1,234 errors", "1,567 errors"]) == "1,234 or 1,567 errors"
    # (listed, never spanned: 100,200 may be a hundred thousand or two numbers)
    assert (
        spanned([f"{n} errors" for n in ("1,234", "1,567", "2,001", "1,100")]) == "1,100, 1,234, 1,567 or 2,001 errors"
    )
    assert spanned(["addr 0x1f0 bad", "addr 0x2f0 bad", "addr 0x9f0 bad"]) == "addr 0x1f0, 0x2f0 or 0x9f0 bad"
    assert spanned(["GPU 0000:17:00.0 is at Gen3", "GPU 0000:18:00.0 is at Gen3"]) == (
        "GPU 0000:17:00.0 or 0000:18:00.0 is at Gen3"
    )
    assert spanned(["used 12/16 GB", "used 10/16 GB"]) == "used 10/16 or 12/16 GB"
    # a minus alone before a number is its sign (a span of negatives is said with "to"); a name's hyphen is not
    assert spanned([f"offset {n} C" for n in (-5, -12, -3, -7)]) == "offset -12 to -3 C"
    assert spanned(["offset -5 C", "offset -12 C"]) == "offset -12 or -5 C"
    assert spanned([f"node-{n} is down" for n in (14, 12, 15, 13)]) == "node-12–node-15 is down"
    assert spanned([f"x=-{n}" for n in (5, 7, 9, 1)]) == "x=-9 to -1"
    assert spanned([f"--{n}" for n in (12, 3, 5, 7)]) == "--3–12"  # two hyphens: an option, not a sign
    # numbers of any size ordered exactly (a float put a 400-digit number below 5), and a word of digits that
    # are not ASCII, or of thousands of digits, listed as it is (int() refused both, and the fleet with it)
    huge = "9" * 400
    assert spanned([f"e {n}" for n in (huge, "1" * 400, "5", "7")]) == f"e 5–{huge}"
    assert spanned(["0x1\u00b2 bad", "0x2\u00b2 bad"]) == "0x1\u00b2 or 0x2\u00b2 bad"
    long = "1" * 5000
    assert spanned([f"{long}x2", f"{long}x1"]) == f"{long}x1 or {long}x2"
    # a number is read whole for what words say (numberless): its decimals, thousands and sign, not a name's
    # hyphen; so "0.5 GiB" and "12 GiB", "-15 MHz" and "4 MHz", "-1,500" and "15" are one wording each
    from envcheck.fleet.kinds import numberless

    assert numberless("free 0.5 GiB") == numberless("free 12 GiB") == "free # GiB"
    assert numberless("offset -15 MHz") == numberless("offset 4 MHz") and numberless("x=-1,500") == "x=#"
    assert numberless("node-12") == "node-#" and numberless("--3") == "--#"
    assert spanned([f"offset {n} MHz" for n in (-15, 4, -3, 12)]) == "offset -15 to 12 MHz"
    assert spanned(["free 0.5 GiB", "free 12 GiB"]) == "free 0.5 or 12 GiB"
    assert spanned([f"replay {n}/s" for n in ("0.5", "12.25", "-0.75", "3")]) == "replay -0.75, 0.5, 3 or 12.25/s"
    assert spanned(["replay 1,024.5/s", "replay 3/s"]) == "replay 3 or 1,024.5/s"
    # words that differ beyond their numbers are not alike: the first, as it is
    assert spanned(["GPU 0: 3 errors", "GPU 0: 3  errors"]) == "GPU 0: 3 errors"


def test_torch_fields_are_read_as_stated_nccl_in_words_and_none_where_not_carried() -> None:
    """NCCL's version is written as a list ([2, 21, 5]): it is compared as "2.21.5", as the other fields are
    (a list is no field's value, and was left out). A report whose torch does not carry cuDNN or NCCL (a burn
    report's names its version and CUDA only) states neither: "not known" is no value, so no drift."""
    from envcheck.core.report import BURN_SCHEMA, DOCTOR_SCHEMA
    from envcheck.fleet.kinds import ADAPTERS

    torch = {"version": "2.4.0", "cuda": "12.4", "cudnn_version": 90100, "nccl_version": [2, 21, 5]}
    fields = ADAPTERS.get(DOCTOR_SCHEMA).fields({"torch": torch})
    assert fields["torch.nccl"] == "2.21.5" and fields["torch.cudnn"] == 90100
    fields = ADAPTERS.get(BURN_SCHEMA).fields({"torch": {"version": "2.4.0", "cuda": "12.4"}})
    assert fields["torch.version"] == "2.4.0" and "torch.cudnn" not in fields and "torch.nccl" not in fields
    odd = ADAPTERS.get(DOCTOR_SCHEMA).fields({"torch": {**torch, "nccl_version": [2, True]}})
    assert odd["torch.nccl"] == [2, True]  # not a version: as it is (and, not a plain value, never compared)
