"""Renderers are registered by (format, report kind), each where it belongs: a format declares itself in its
own module of envcheck.render, a kind's renderers live in ``envcheck.<kind>.render`` and are found from the
document's schema by convention. So a new kind of report is one module and no dispatcher edit, a schema in
a document can load nothing but a kind's render module, and ``--help`` lists the formats from the registry."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from io import StringIO
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

import envcheck
import envcheck.render as render_package
from envcheck.core.report import BENCH_SCHEMA, BURN_SCHEMA, COMM_SCHEMA, DOCTOR_SCHEMA, EXPLAIN_SCHEMA, FLEET_SCHEMA
from envcheck.render import RenderOptions, formats, make_console, render
from tests.test_layers import ROOT, imports, module_name

KINDS = (DOCTOR_SCHEMA, BENCH_SCHEMA, BURN_SCHEMA, COMM_SCHEMA, FLEET_SCHEMA, EXPLAIN_SCHEMA)


def rendered(doc: Any, fmt: str) -> str:
    buffer = StringIO()
    render(doc, fmt, make_console(buffer, for_file=True), RenderOptions())
    return buffer.getvalue()


@pytest.mark.parametrize("schema", KINDS)
def test_every_kind_brings_its_text_markdown_and_html_in_its_own_module(schema: str) -> None:
    kind = schema.split(".")[1].split("/")[0]
    assert render_package.kind_module(schema) == f"envcheck.{kind}.render"
    for fmt in ("text", "markdown", "html"):
        found = render_package.renderer_for({"schema": schema}, fmt)
        assert found.__module__ == f"envcheck.{kind}.render", (fmt, found)
    assert f'data-report="{kind}"' in rendered({"schema": schema}, "html")
    # json reads any document: no kind registers it
    assert json.loads(rendered({"schema": schema, "x": 1}, "json")) == {"schema": schema, "x": 1}


def test_every_renderer_is_registered_for_a_declared_format() -> None:
    for schema in KINDS:
        render_package.kind_module(schema)
    declared = {f.id for f in formats()}
    assert {fmt for fmt, _ in render_package.RENDERERS} <= declared
    assert (
        render_package.renderer_for({"schema": DOCTOR_SCHEMA}, "prometheus").__module__ == "envcheck.render.prometheus"
    )


def test_a_kind_without_a_renderer_in_a_format_is_an_error_not_another_kinds_report() -> None:
    with pytest.raises(ValueError, match=f"prometheus format has no report for {BENCH_SCHEMA}"):
        rendered({"schema": BENCH_SCHEMA}, "prometheus")


HOSTILE = [
    "envcheck.cli/1",
    "os/1",
    "envcheck.os/1",
    "envcheck.render/1",
    "envcheck.core/1",
    "envcheck.bench/1;os",
    7,
    None,
    ["envcheck.bench/1"],
]

PROBE = """
import json, sys
from io import StringIO
from envcheck.render import RenderOptions, make_console, render

def html(doc):
    buffer = StringIO()
    render(doc, "html", make_console(buffer, for_file=True), RenderOptions())
    return buffer.getvalue()

for fmt in ("text", "markdown", "html", "json"):  # what any document loads: the formats and the fallback kind
    render({"schema": "envcheck.doctor/1"}, fmt, make_console(StringIO(), for_file=True), RenderOptions())
before = set(sys.modules)
pages = []
for schema in json.loads(sys.argv[1]):
    for fmt in ("text", "markdown", "json"):
        render({"schema": schema}, fmt, make_console(StringIO(), for_file=True), RenderOptions())
    pages.append('data-report="doctor"' in html({"schema": schema}))
print(json.dumps({"new": sorted(set(sys.modules) - before), "doctor_pages": pages}))
"""


def test_a_hostile_schema_imports_nothing_and_still_renders_as_the_doctors_report() -> None:
    """Only ``envcheck.<kind>.render`` of a kind that has one is ever imported from a schema: a document
    naming ``envcheck.cli/1`` or ``os/1`` (or a list) loads no module, and still gets a report."""
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(HOSTILE)], capture_output=True, text=True, timeout=120, check=True
    )
    out = json.loads(proc.stdout)
    assert out["new"] == []
    assert out["doctor_pages"] == [True] * len(HOSTILE)


KIND_MODULE = '''
"""A report kind envcheck does not have: its renderers, registered where they are written."""
from envcheck.render import html, renders
from envcheck.render.common import cell, write_lines

SCHEMA = "envcheck.storage/1"


@renders("text", SCHEMA)
def text(doc, console, options):
    console.print(f"storage: {doc['verdict']}")


@renders("markdown", SCHEMA)
def markdown(doc, console, options):
    write_lines(console, ["## envcheck storage", "", f"| verdict | {cell(doc['verdict'])} |"])


def disks(doc):
    return html.section("Disks", html.table(["disk"], [[html.e(d)] for d in doc["disks"]]))


@renders("html", SCHEMA)
def page(doc, console, options):
    html.write_page(console, doc, "storage", lambda d: html.header("storage", d["verdict"], "ok", d), [disks])
'''


def test_a_new_kind_gets_every_format_by_registering_in_its_own_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Proof by construction: a package ``envcheck.storage`` with a ``render`` module is rendered in text,
    Markdown and HTML through :func:`envcheck.render.render`, and as JSON, with no other file edited."""
    (tmp_path / "storage").mkdir()
    (tmp_path / "storage" / "__init__.py").write_text("")
    (tmp_path / "storage" / "render.py").write_text(KIND_MODULE)
    monkeypatch.setattr(envcheck, "__path__", [*envcheck.__path__, str(tmp_path)])
    monkeypatch.setattr(render_package, "RENDERERS", dict(render_package.RENDERERS))
    for name in ("envcheck.storage", "envcheck.storage.render"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    doc = {"schema": "envcheck.storage/1", "verdict": "healthy|fast", "disks": ["nvme0n1", "<sda>"]}
    try:
        assert rendered(doc, "text") == "storage: healthy|fast\n"
        assert "| verdict | healthy\\|fast |" in rendered(doc, "markdown")
        page = rendered(doc, "html")
        assert 'data-report="storage"' in page and "<h2>Disks</h2>" in page and "&lt;sda&gt;" in page
        assert json.loads(rendered(doc, "json")) == doc
        with pytest.raises(ValueError, match="no report for envcheck.storage/1"):
            rendered(doc, "prometheus")
    finally:
        for name in ("envcheck.storage.render", "envcheck.storage"):
            sys.modules.pop(name, None)


def test_the_format_options_read_each_formats_words_and_suffixes_from_its_module(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A format declared in one module is offered by every reporting command, with its own words in
    ``--help`` and its suffix in ``--output``'s; a format for one kind only where a command names it."""
    from envcheck.cli.options import format_options, resolve_formats
    from envcheck.render import FORMATS, Format

    def command(**extra: Any) -> click.Command:
        @click.command()
        @format_options(**extra)
        def report(fmt: str | None, as_json: bool, output: str | None) -> None:
            click.echo(repr(resolve_formats(fmt, as_json, output, **extra)))

        return report

    FORMATS.load()
    monkeypatch.setitem(FORMATS._items, "yaml", Format("yaml", "for YAML readers", (".yaml", ".yml")))
    helped = " ".join(CliRunner().invoke(command(), ["--help"]).output.split())
    for f in formats():
        if f.common:
            assert f"{f.id} ({f.description})" in helped
            assert f.suffixes[0] in helped
    assert "yaml (for YAML readers)" in helped and ".yaml" in helped
    assert "prometheus" not in helped and ".prom" not in helped
    assert "('text', 'yaml')" in CliRunner().invoke(command(), ["-o", "r.yml"]).output
    refused = CliRunner().invoke(command(), ["-o", "r.prom"])
    assert refused.exit_code == 2 and "names the prometheus format" in refused.output
    doctor_like = command(extra=("prometheus",))
    assert "prometheus (node_exporter's textfile collector)" in " ".join(
        CliRunner().invoke(doctor_like, ["--help"]).output.split()
    )
    assert "('text', 'prometheus')" in CliRunner().invoke(doctor_like, ["-o", "r.prom"]).output


def test_listing_the_formats_imports_no_rich() -> None:
    """Every command's ``--help`` builds its --format help from the registry: loading it stays light."""
    code = "import sys, envcheck.doctor.cli, envcheck.bench.cli; print(sorted(m for m in sys.modules if 'rich' in m))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert proc.stdout.strip() == "[]"


def _schema_names(node: ast.AST) -> bool:
    return (isinstance(node, ast.Name) and node.id.endswith("_SCHEMA")) or (
        isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("envcheck.")
    )


def test_no_renderer_switches_over_kinds_or_reaches_into_a_kind() -> None:
    """envcheck/render/ compares no schema with a kind's name (no ``if schema ==``, no table keyed by
    kinds) and imports no command; a kind's render module imports its own package, the shared render
    modules and what lies below the commands (core, probes: NVML's constants), never another kind's."""
    said = []
    for path in sorted((ROOT / "render").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare) and any(_schema_names(n) for n in [node.left, *node.comparators]):
                said.append(f"{path.name}:{node.lineno}: compares with a schema")
            if isinstance(node, ast.Dict) and any(k is not None and _schema_names(k) for k in node.keys):
                said.append(f"{path.name}:{node.lineno}: a table keyed by schema")
            if isinstance(node, ast.Match):
                said.append(f"{path.name}:{node.lineno}: a match statement")
        for line, target in imports(path):
            if target != "envcheck" and target.split(".")[1] not in ("core", "probes", "render"):
                said.append(f"{path.name}:{line}: imports {target}")
    for path in sorted(ROOT.glob("*/render.py")):
        own = module_name(path).split(".")[1]
        for line, target in imports(path):
            parts = target.split(".")
            if len(parts) > 1 and parts[1] not in ("core", "probes", "render", own):
                said.append(f"{path.relative_to(ROOT)}:{line}: imports {target}")
    assert said == []
