"""The doctor's reports (``envcheck.doctor/1``, written by doctor and healthcheck): text, Markdown and the
HTML page's sections, each registered for the doctor's schema. The Prometheus textfile is
envcheck.render.prometheus (a format that exists for this one kind).

Every renderer reads the document defensively: a document that names no kind envcheck knows is rendered
as the doctor's (envcheck.render), so these are also what a hand-made or truncated report gets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from envcheck.core.report import DOCTOR_SCHEMA
from envcheck.core.units import human
from envcheck.render import RenderOptions, html, renders
from envcheck.render.common import CheckLines, cell, code, escape, icon, write_lines
from envcheck.render.safe import inert
from envcheck.render.svg import finite

if TYPE_CHECKING:
    from rich.console import Console

# -- text ------------------------------------------------------------------------------------------------

VERDICT_STYLE = {
    "ready": "bold green",
    "ready_cpu": "bold green",
    "warnings": "bold yellow",
    "not_ready": "bold red",
    "nothing_checked": "bold yellow",
}


@renders("text", DOCTOR_SCHEMA)
def render_text(doc: dict[str, Any], console: Console, options: RenderOptions) -> None:
    DoctorText(console, verbose=options.verbose).report(doc)


@renders("markdown", DOCTOR_SCHEMA)
def render_markdown(doc: dict[str, Any], console: Console, options: RenderOptions) -> None:
    write_lines(console, doctor_markdown(doc))


@renders("html", DOCTOR_SCHEMA)
def render_html(doc: dict[str, Any], console: Console, options: RenderOptions) -> None:
    html.write_page(console, doc, "doctor", doctor_header, DOCTOR_SECTIONS)


class DoctorText(CheckLines):
    """The doctor's text report: a heading per area, a line per check (a run of checks skipped for one
    reason folded into one line unless ``-v``), the verdict and the time it took."""

    def report(self, doc: dict[str, Any]) -> None:
        areas: dict[str, str] = doc.get("areas", {})
        area = None
        skipped: list[dict[str, Any]] = []
        # One heading per area, whatever order the checks came in (--require-gpu adds a GPU check at the
        # end); no empty line before the first, so that `envcheck doctor | head -1` shows a heading.
        grouped: dict[str, list[dict[str, Any]]] = {}
        for result in doc.get("checks", []):
            grouped.setdefault(str(result.get("id", "")).split(".", 1)[0], []).append(result)
        for result in (r for group in grouped.values() for r in group):
            this_area = result["id"].split(".", 1)[0]
            if this_area != area:
                self._skipped(skipped)
                skipped = []
                gap = "" if area is None else "\n"
                area = this_area
                self.console.print(f"{gap}[bold]{escape(areas.get(area, area))}[/]")
            # Checks skipped for one shared reason (no NVML: every GPU check) read better as one line.
            if result["status"] == "skip" and not self.verbose:
                if skipped and skipped[0]["summary"] != result["summary"]:
                    self._skipped(skipped)
                    skipped = []
                skipped.append(result)
                continue
            self._skipped(skipped)
            skipped = []
            self.result(result)
        self._skipped(skipped)
        self.nics(doc)
        self.console.print()
        summary = doc.get("summary") or {"verdict": "ready", "text": ""}
        head, _, rest = summary["text"].partition(": ")
        style = VERDICT_STYLE.get(summary["verdict"], "bold")
        line = f"[{style}]{escape(head)}[/]" + (f": {escape(rest)}" if rest else "")
        self.console.print(f"{line}  [dim]({doc.get('duration_s', 0.0):.1f} s)[/]")

    def nics(self, doc: dict[str, Any]) -> None:
        """The fabric's GPU <-> NIC table under the checks, columns aligned; nothing where there is no NIC."""
        rows = nic_rows(doc)
        if not rows:
            return
        widths = [max(len(row[i]) for row in [NIC_COLUMNS, *rows]) for i in range(len(NIC_COLUMNS) - 1)]
        self.console.print(f"\n[bold]{escape(NIC_TITLE)}[/]")
        for row in [NIC_COLUMNS, *rows]:
            text = "  ".join([*(v.ljust(w) for v, w in zip(row, widths, strict=False)), row[-1]])
            self.console.print("  " + escape(text), style="dim" if row is NIC_COLUMNS else None, soft_wrap=True)

    def _skipped(self, skipped: list[dict[str, Any]]) -> None:
        if len(skipped) == 1:
            self.result(skipped[0])
        elif skipped:
            title = f"{len(skipped)} checks skipped"
            used = len(f"  - {title}: {skipped[0]['summary']}  ")
            self.line("skip", title, skipped[0]["summary"], _ids(self.console, skipped, used))


def _ids(console: Console, skipped: list[dict[str, Any]], used: int) -> str:
    """The folded line's ids; on a terminal as many as fit in what is left of the line (``used``
    columns are taken) with the count of the rest, so that the folded line stays one line (``-v``
    lists every skipped check)."""
    ids = [r["id"] for r in skipped]
    if not console.is_terminal:
        return ", ".join(ids)
    room = console.width - used - 1
    shown: list[str] = []
    for i, item in enumerate(ids):
        rest = len(ids) - i - 1
        candidate = ", ".join([*shown, item]) + (f", … +{rest}" if rest else "")
        if len(candidate) > room:
            if shown:
                return ", ".join(shown) + f", … +{len(ids) - len(shown)}"
            areas = {i.split(".", 1)[0] for i in ids}
            return f"{areas.pop()}.*" if len(areas) == 1 else f"+{len(ids)}"
        shown.append(item)
    return ", ".join(shown)


def list_checks(console: Console, checks: list[dict[str, Any]]) -> None:
    """``doctor --list-checks``: every check's id and what it checks, under its area."""
    area = None
    for spec in checks:
        if spec["area"] != area:
            gap = "" if area is None else "\n"
            area = spec["area"]
            console.print(f"{gap}[bold]{escape(spec['area_title'])}[/] ({area})")
        # a check's docstring marks code as reStructuredText does (``pynvml``); a terminal shows it plain
        console.print(f"  {spec['id']:<28} {escape(spec['doc'].replace('``', ''))}")


# -- markdown --------------------------------------------------------------------------------------------


def doctor_markdown(doc: dict[str, Any]) -> list[str]:
    summary = doc.get("summary", {})
    host = doc.get("host", {})
    lines = [
        f"## envcheck doctor: {cell(summary.get('text', doc.get('status', '')))}",
        "",
        f"{code(host.get('hostname') or '')} · {cell(doc.get('generated_at', ''))} · "
        f"envcheck {cell(doc.get('envcheck_version', ''))} · {doc.get('duration_s', 0):.1f} s",
    ]
    lines += inventory_markdown(doc)
    areas: dict[str, str] = doc.get("areas", {})
    by_area: dict[str, list[dict[str, Any]]] = {}
    for result in doc.get("checks", []):
        by_area.setdefault(result["id"].split(".", 1)[0], []).append(result)
    for area, results in by_area.items():
        lines += ["", f"### {cell(areas.get(area, area))}", "", "| | check | result | id |", "|---|---|---|---|"]
        for r in results:
            lines.append(f"| {icon(r['status'])} | {cell(r['title'])} | {cell(r['summary'])} | {code(r['id'])} |")
    fixes = [r for r in doc.get("checks", []) if r.get("fix") and r["status"] in ("warn", "fail", "crash")]
    if fixes:
        lines += ["", "### Fixes", ""]
        for r in fixes:
            lines.append(f"- **{code(r['id'])}** ({cell(r['status'])}): {cell(r['fix']['text'])}")
            if r["fix"].get("command"):
                # One line in the block (inert): a newline in it could close the fence and start Markdown.
                lines += ["  ```sh", f"  {inert(r['fix']['command'])}", "  ```"]
    lines += fabric_markdown(doc)
    lines += ["", "### Versions", "", "```", *(inert(line) for line in versions_block(doc)), "```"]
    return lines


# -- what the Markdown and the HTML reports share ---------------------------------------------------------

#: The GPU inventory's columns, in the Markdown and the HTML report alike.
INVENTORY_COLUMNS = ("GPU", "name", "PCI bus", "memory used", "°C", "power W", "util %")


@dataclass(frozen=True)
class Cells:
    """How one format writes the inventory's cells: text and code from the machine (escaped its way), a
    reading, a size in bytes, and the mark of a lost GPU."""

    text: Callable[[Any], str]
    code: Callable[[Any], str]
    number: Callable[[Any], str]
    size: Callable[[Any], str]
    lost: str


def driver_words(driver: dict[str, Any], text: Callable[[Any], str]) -> str:
    """The driver above the inventory: its version, the newest CUDA it supports, NVML's version."""
    return (
        f"NVIDIA driver {text(driver.get('version') or '-')}, CUDA ≤ {text(driver.get('cuda_version') or '-')}, "
        f"NVML {text(driver.get('nvml_version') or '-')}"
    )


def inventory_rows(gpus: list[dict[str, Any]], cells: Cells) -> list[list[str]]:
    """A row of :data:`INVENTORY_COLUMNS` per GPU, each cell written by the format's :class:`Cells`: the
    Markdown and the HTML report build the same rows from the same fields."""
    rows = []
    for g in gpus:
        used, total = finite(g.get("memory_used_bytes")), finite(g.get("memory_total_bytes"))
        rows.append(
            [
                cells.text(g.get("index")),
                cells.text(g.get("name")) + (cells.lost if g.get("lost") is True else ""),
                cells.code(g.get("pci_bus_id")),
                f"{cells.size(used)} of {cells.size(total)}" if total is not None else "-",
                cells.number(g.get("temperature_c")),
                f"{cells.number(g.get('power_draw_w'))} / {cells.number(g.get('power_limit_w'))}",
                cells.number(g.get("utilization_gpu_pct")),
            ]
        )
    return rows


def _number(value: Any, digits: int = 0) -> str:
    number = finite(value)
    return "-" if number is None else f"{number:.{digits}f}"


MARKDOWN_CELLS = Cells(
    text=cell,
    code=lambda value: code(value or ""),
    number=_number,
    size=lambda value: "-" if value is None else human(value),
    lost=" (lost)",
)


def inventory_markdown(doc: dict[str, Any]) -> list[str]:
    """The GPU inventory, as the HTML report's: the driver, then a row per GPU."""
    driver = doc.get("driver") if isinstance(doc.get("driver"), dict) else {}
    gpus = [g for g in doc.get("gpus") or [] if isinstance(g, dict)]
    if not gpus and not driver:
        return []
    lines = ["", "### GPU inventory", ""]
    if driver:
        lines += [driver_words(driver, cell), ""]
    if gpus:
        lines += ["| " + " | ".join(INVENTORY_COLUMNS) + " |", "|" + "---|" * len(INVENTORY_COLUMNS)]
        lines += ["| " + " | ".join(row) + " |" for row in inventory_rows(gpus, MARKDOWN_CELLS)]
    return lines


def fabric_markdown(doc: dict[str, Any]) -> list[str]:
    """The GPU fabric, as the HTML report's: the topology matrix (``nvidia-smi topo -m``'s letters), then each
    GPU's nearest NIC where the node has NICs."""
    fabric = doc.get("fabric") if isinstance(doc.get("fabric"), dict) else {}
    gpus = fabric.get("gpus") if isinstance(fabric.get("gpus"), list) else []
    topology = [row for row in fabric.get("topology") or [] if isinstance(row, list)]
    lines = []
    if gpus and topology:
        lines += ["", "| | " + " | ".join(f"GPU {cell(g)}" for g in gpus) + " |", "|---|" + "---|" * len(gpus)]
        for gpu, row in zip(gpus, topology, strict=False):
            lines.append(f"| GPU {cell(gpu)} | " + " | ".join(cell(v) for v in row) + " |")
    nics = nic_rows(doc)
    if nics:
        lines += ["", f"{cell(NIC_TITLE)}:", "", "| " + " | ".join(NIC_COLUMNS) + " |", "|" + "---|" * len(NIC_COLUMNS)]
        lines += [f"| {cell(gpu)} | {code(bus)} | {code(nic)} | {cell(near)} |" for gpu, bus, nic, near in nics]
    return ["", "### GPU fabric", *lines] if lines else []


#: The fabric's GPU <-> NIC table (net.affinity's placing, carried in the report's ``fabric.nic_affinity``), in
#: every format: its title and columns.
NIC_TITLE = "Nearest NIC per GPU"
NIC_COLUMNS = ("GPU", "PCI bus", "nearest NIC", "how near")


def nic_rows(doc: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """A row of :data:`NIC_COLUMNS` per GPU, plain text (each format escapes it its way): the NIC's ports as NCCL
    names them (``mlx5_0:1``), how near as net.affinity says it with ``nvidia-smi topo -m``'s letters. Empty
    where the report has no NIC (a laptop): the table is then left out, not drawn empty."""
    fabric = doc.get("fabric") if isinstance(doc.get("fabric"), dict) else {}
    entries = fabric.get("nic_affinity") if isinstance(fabric.get("nic_affinity"), list) else []
    rows = []
    for entry in (e for e in entries if isinstance(e, dict)):
        nics = [n for n in entry.get("nics") or [] if isinstance(n, dict)]
        down = [n for n in entry.get("down_nics") or [] if isinstance(n, dict)]
        label = f" ({entry['label']})" if entry.get("label") else ""
        near = f"{entry.get('nearness') or '-'}{label}"
        shown = ", ".join(_ports(nics)) or "-"
        if down:
            shown += f" (own NIC {', '.join(_ports(down))} down)"
        rows.append((f"GPU {entry.get('gpu')}", str(entry.get("pci_bus_id") or "-"), shown, near))
    return rows


def _ports(nics: list[dict[str, Any]]) -> list[str]:
    """The NICs' ports as NCCL names them (``mlx5_0:1``); a NIC's name where its ports are not listed."""
    return [str(p) for n in nics for p in (n.get("ports") if isinstance(n.get("ports"), list) else [n.get("hca")])]


def versions_block(doc: dict[str, Any]) -> list[str]:
    """``name: value`` lines for what a bug report needs; a value that was not found is left out. Read
    defensively (the HTML report uses it too, on documents that may be hand-edited)."""

    def part(value: Any) -> dict[str, Any]:
        return value if isinstance(value, dict) else {}

    def words(*values: Any) -> str:
        return " ".join(str(v) for v in values if v not in (None, "", [], {}))

    def joined(values: Any, sep: str = " ") -> str | None:
        return sep.join(str(v) for v in values) or None if isinstance(values, list) else None

    host = part(doc.get("host"))
    torch = part(doc.get("torch"))
    driver = part(doc.get("driver"))
    python = part(host.get("python_details"))
    cpu = part(host.get("cpu"))
    pairs: list[tuple[str, Any]] = [
        ("envcheck", doc.get("envcheck_version")),
        ("OS", words(host.get("distro"), host.get("os"), host.get("kernel"), host.get("machine"))),
        ("container", host.get("container")),
        ("Python", words(host.get("python"), python.get("implementation"), python.get("kind"))),
        ("libc", words(host.get("libc"), host.get("libc_version"))),
        ("CPU", cpu.get("model")),
        ("CPU flags", joined(cpu.get("isa_flags"), ", ")),
    ]
    for tool, version in part(host.get("build_tools")).items():
        pairs.append((tool, version))
    pairs += [
        ("NVIDIA driver", driver.get("version")),
        ("driver CUDA", driver.get("cuda_version")),
    ]
    for gpu in doc.get("gpus") if isinstance(doc.get("gpus"), list) else []:
        gpu = part(gpu)
        cc = gpu.get("compute_capability")
        cc_text = f" (cc {cc[0]}.{cc[1]})" if isinstance(cc, list) and len(cc) == 2 else ""
        pairs.append((f"GPU {gpu.get('index')}", f"{gpu.get('name')}{cc_text} {gpu.get('pci_bus_id') or ''}".strip()))
    pairs += [
        ("torch", torch.get("version")),
        ("torch CUDA build", torch.get("cuda")),
        ("CUDA runtime loaded", torch.get("cuda_runtime_version")),
        ("CUDA runtime library", torch.get("cuda_runtime_library")),
        ("triton", torch.get("triton_version")),
        ("torch debug build", torch.get("debug")),
        ("cuDNN", torch.get("cudnn_version")),
        ("NCCL", joined(torch.get("nccl_version"), ".")),
        ("arch list", joined(torch.get("arch_list"))),
    ]
    wheels = {**part(doc.get("packages")), **part(torch.get("cuda_wheels"))}
    for name, version in sorted(wheels.items()):
        if name != "torch" and not (name == "triton" and torch.get("triton_version")):
            pairs.append((name, version))
    return [f"{name}: {value}" for name, value in pairs if value not in (None, "", [])]


# -- html ------------------------------------------------------------------------------------------------


def doctor_header(doc: dict[str, Any]) -> tuple[str, str]:
    summary = html.dct(doc.get("summary"))
    counts = html.dct(doc.get("counts"))
    tally = ", ".join(f"{v} {k}" for k, v in counts.items() if isinstance(v, int) and v)
    return html.header(
        "doctor", str(summary.get("text") or doc.get("status") or "no verdict"), doc.get("status"), doc, tally
    )


HTML_CELLS = Cells(
    text=html.e,
    code=html.code,
    number=html.num,
    size=html.size_text,
    lost=' <span class="badge s-fail">✗ lost</span>',
)


def doctor_gpus(doc: dict[str, Any]) -> str:
    driver = html.dct(doc.get("driver"))
    gpus = html.items(doc.get("gpus"))
    if not gpus and not driver:
        return ""
    lead = f"<p>{driver_words(driver, html.e)}</p>" if driver else ""
    rows = inventory_rows(gpus, HTML_CELLS)
    grid = html.table(INVENTORY_COLUMNS, rows, (3, 4, 5, 6)) if rows else ""
    return html.section("GPU inventory", lead, grid, collapsed=True)


def doctor_areas(doc: dict[str, Any]) -> str:
    areas = html.dct(doc.get("areas"))
    by_area: dict[str, list[dict[str, Any]]] = {}
    for r in html.items(doc.get("checks")):
        by_area.setdefault(str(r.get("id") or "?").split(".", 1)[0], []).append(r)
    return "\n".join(
        html.section(str(areas.get(area) or area), html.checks_table(rs), anchor=f"area-{area}", collapsed=True)
        for area, rs in by_area.items()
    )


def doctor_fixes(doc: dict[str, Any]) -> str:
    """Every check that did not pass, the most severe first, with its fix where it has one: the first
    thing on the page under the verdict."""
    problems = [r for r in html.items(doc.get("checks")) if r.get("status") in ("warn", "fail", "crash")]
    return html.section("Fixes", html.problem_items(problems), anchor="fixes")


def doctor_fabric(doc: dict[str, Any]) -> str:
    """NVLink topology (nvidia-smi topo -m's letters), each GPU's links (a link down stands out) and each GPU's
    nearest NIC where there are NICs."""
    fabric = html.dct(doc.get("fabric"))
    gpus = html.lst(fabric.get("gpus"))
    parts = []
    topology = [html.lst(row) for row in html.lst(fabric.get("topology"))]
    if gpus and topology:
        counts: dict[str, int] = {}
        for row in topology:
            for v in row:
                if v != "X":
                    counts[str(v)] = counts.get(str(v), 0) + 1
        common = max(counts, key=lambda k: counts[k]) if counts else None
        rows = []
        for gpu, row in zip(gpus, topology, strict=False):  # a short row is drawn short
            cells: list[Any] = [f"GPU {html.e(gpu)}"]
            for v in row:
                odd = v != "X" and str(v) != common
                cells.append(("odd", html.e(v) + " !") if odd else html.e(v))
            rows.append(cells)
        parts.append("<h3>Topology</h3>")
        if common:
            parts.append(f'<p class="muted">Most pairs: {html.e(common)}; a pair marked "!" differs.</p>')
        parts.append(html.table(["", *(f"GPU {html.e(g)}" for g in gpus)], rows))
    nvlink = html.dct(fabric.get("nvlink"))
    if nvlink:
        rows = []
        for index, entry in nvlink.items():
            entry = html.dct(entry)
            links = html.items(entry.get("links"))
            down = [str(link.get("link")) for link in links if link.get("active") is False]
            up, total = entry.get("links_up"), entry.get("links_total")
            state = html.badge("ok") if up == total else html.badge("fail")
            rows.append(
                [
                    f"GPU {html.e(index)}",
                    html.code(entry.get("pci_bus_id")),
                    state,
                    f"{html.e(up)} of {html.e(total)}",
                    html.e(entry.get("version")),
                    html.e(", ".join(down)) if down else "-",
                ]
            )
        parts += [
            "<h3>NVLink</h3>",
            html.table(["GPU", "PCI bus", "state", "links up", "version", "links down"], rows, (3,)),
        ]
    nics = nic_rows(doc)
    if nics:
        rows = [[html.e(gpu), html.code(bus), html.code(nic), html.e(near)] for gpu, bus, nic, near in nics]
        parts += [f"<h3>{html.e(NIC_TITLE)}</h3>", html.table(NIC_COLUMNS, rows)]
    return html.section("GPU fabric", *parts, collapsed=True)


def doctor_versions(doc: dict[str, Any]) -> str:
    return html.section("Versions", f"<pre>{html.e(chr(10).join(versions_block(doc)))}</pre>", collapsed=True)


#: What to act on first (the fixes); then, collapsed, the inventory, every check by area, the fabric's
#: tables and the versions.
DOCTOR_SECTIONS = (doctor_fixes, doctor_gpus, doctor_areas, doctor_fabric, doctor_versions)
