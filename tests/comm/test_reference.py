"""The reference figures beside ``envcheck comm``'s busbw: which fabric a node is on, and the fractions."""

from __future__ import annotations

from pathlib import Path

import pytest

from envcheck.comm.reference import LINKS, MODELS, TYPICAL, fabric_of, references, typical_for

README = Path(__file__).resolve().parents[2] / "README.md"


def test_an_8_gpu_h200_node_is_nvlink4_with_both_references():
    ref = references({"all_reduce": 456.0, "all_gather": 333.0}, ["NVIDIA H200"] * 8, hosts=1)
    assert ref is not None
    assert (ref["fabric"], ref["line_rate_gb_s"]) == ("nvlink4", 450.0)
    all_reduce, all_gather = ref["ops"]["all_reduce"], ref["ops"]["all_gather"]
    # NVLS accelerates all_reduce only: its typical figure is the higher one, and its busbw may pass the line rate
    assert (all_reduce["typical_gb_s"], all_reduce["typical_fraction"]) == (480.0, 0.95)
    assert all_reduce["line_rate_fraction"] == pytest.approx(456 / 450, abs=1e-4)
    assert (all_gather["typical_gb_s"], all_gather["typical_fraction"]) == (370.0, 0.9)
    assert "nccl-tests issue 212" in all_gather["typical_source"]


@pytest.mark.parametrize(
    ("models", "hosts"),
    [
        (["NVIDIA H200"] * 8, 2),  # across hosts the network decides, and its NIC count is not seen
        (["NVIDIA H200", "NVIDIA H100 80GB HBM3"], 1),  # a mixed node has no single fabric
        (["NVIDIA H100 PCIe"] * 2, 1),  # sold with and without NVLink bridges: not guessed
        (["cpu"] * 4, 1),
    ],
)
def test_no_fraction_where_the_fabric_is_not_known(models, hosts):
    assert fabric_of(models, hosts) is None
    assert references({"all_reduce": 1.0}, models, hosts) is None


def test_names_match_exactly_after_case_folding_and_trimming():
    assert fabric_of([" nvidia l40s "], 1) == LINKS["pcie4"]
    assert fabric_of(["NVIDIA H200 NVL"], 1) is None  # not an H200 SXM


def test_pcie_has_a_line_rate_but_no_typical_figure():
    ref = references({"send_recv": 25.2}, ["NVIDIA L40S"] * 8, hosts=1)
    assert ref is not None
    assert ref["ops"]["send_recv"] == {
        "busbw_gb_s": 25.2,
        "line_rate_fraction": 0.8,
        "typical_gb_s": None,
        "typical_fraction": None,
        "typical_source": None,
    }


def test_every_figure_names_its_source_and_every_model_a_known_link():
    assert all(link.source for link in LINKS.values())
    assert all(t.source and t.link in LINKS for t in TYPICAL)
    assert set(MODELS.values()) <= set(LINKS)
    assert typical_for("broadcast", LINKS["nvlink4"]).busbw_gb_s == 370.0


def test_the_reports_show_each_peak_against_the_references():
    from envcheck.comm.render import comm_markdown, reference_lines

    ref = references({"all_reduce": 456.0, "broadcast": 333.0}, ["NVIDIA H200"] * 8, hosts=1)
    assert reference_lines(ref) == [
        "NVLink 4 (NVSwitch): line rate 450.0 GB/s per direction "
        "(NVIDIA H100/H200 datasheets: NVLink 900 GB/s, both directions)",
        "  all_reduce: busbw 456.0 GB/s = 101% of line rate, 95% of the typical 480.0 GB/s",
        "  broadcast: busbw 333.0 GB/s = 74% of line rate, 90% of the typical 370.0 GB/s",
    ]
    assert reference_lines(None) == []
    markdown = comm_markdown({"world": {"size": 8, "ranks": []}, "reference": ref})
    assert "- broadcast: busbw 333.0 GB/s = 74% of line rate, 90% of the typical 370.0 GB/s" in markdown


def test_cpu_ranks_have_no_fabric():
    assert references({"all_reduce": 0.1}, [None, None], hosts=1) is None


def markdown_tables() -> str:
    """The reference tables as README.md shows them."""
    rows = ["| fabric | line rate per direction | GPUs | source |", "|---|---|---|---|"]
    for link in LINKS.values():
        models = ", ".join(f"`{m}`" for m, k in MODELS.items() if k == link.id) or "—"
        rows.append(f"| {link.title} | {link.line_rate_gb_s:g} GB/s | {models} | {link.source} |")
    rows += ["", "| fabric | ops | typical busbw | when | source |", "|---|---|---|---|---|"]
    for t in TYPICAL:
        ops = ", ".join("every other op" if op == "*" else f"`{op}`" for op in t.ops)
        rows.append(f"| {LINKS[t.link].title} | {ops} | {t.busbw_gb_s:g} GB/s | {t.what} | {t.source} |")
    return "\n".join(rows)


def test_the_readme_shows_the_reference_tables_as_they_are():
    assert markdown_tables() in README.read_text()
