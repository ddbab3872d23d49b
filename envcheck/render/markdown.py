"""``--format markdown``: what a user pastes into a GitHub issue. A heading per area, a table per area,
the fixes, and a versions block (what PyTorch's bug template asks for, from the same report)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from envcheck.core.report import BENCH_SCHEMA, BURN_SCHEMA, COMM_SCHEMA, FLEET_SCHEMA
from envcheck.render import RenderOptions, renderer

if TYPE_CHECKING:
    from rich.console import Console

ICONS = {"ok": "✅ ok", "warn": "⚠️ warn", "fail": "❌ fail", "skip": "➖ skip", "crash": "💥 crash"}


def cell(value: Any) -> str:
    """A table cell: pipes escaped, newlines as <br>, so one value never breaks the table."""
    if value is None:
        return ""
    text = str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\r", "")
    return "<br>".join(part.strip() for part in text.split("\n"))


def code(value: Any) -> str:
    """Inline code that survives backticks inside it."""
    text = str(value).replace("\n", " ")
    fence = "``" if "`" in text else "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


@renderer("markdown", "Markdown to paste into an issue: a table per area, the fixes, versions", suffixes=(".md",))
def render_markdown(document: dict[str, Any], console: Console, options: RenderOptions) -> None:
    if document.get("schema") == COMM_SCHEMA:
        from envcheck.comm.render import comm_markdown

        lines = comm_markdown(document)
    elif document.get("schema") == BURN_SCHEMA:
        from envcheck.burn.render import burn_markdown

        lines = burn_markdown(document)
    elif document.get("schema") == FLEET_SCHEMA:
        from envcheck.fleet.render import fleet_markdown

        lines = fleet_markdown(document)
    else:
        lines = bench_markdown(document) if document.get("schema") == BENCH_SCHEMA else doctor_markdown(document)
    console.file.write("\n".join(lines) + "\n")


def doctor_markdown(doc: dict[str, Any]) -> list[str]:
    summary = doc.get("summary", {})
    host = doc.get("host", {})
    lines = [
        f"## envcheck doctor: {summary.get('text', doc.get('status', ''))}",
        "",
        f"`{cell(host.get('hostname'))}` · {doc.get('generated_at', '')} · envcheck {doc.get('envcheck_version', '')}"
        f" · {doc.get('duration_s', 0):.1f} s",
    ]
    areas: dict[str, str] = doc.get("areas", {})
    by_area: dict[str, list[dict[str, Any]]] = {}
    for result in doc.get("checks", []):
        by_area.setdefault(result["id"].split(".", 1)[0], []).append(result)
    for area, results in by_area.items():
        lines += ["", f"### {areas.get(area, area)}", "", "| | check | result | id |", "|---|---|---|---|"]
        for r in results:
            icon = ICONS.get(r["status"], r["status"])
            lines.append(f"| {icon} | {cell(r['title'])} | {cell(r['summary'])} | {code(r['id'])} |")
    fixes = [r for r in doc.get("checks", []) if r.get("fix") and r["status"] in ("warn", "fail", "crash")]
    if fixes:
        lines += ["", "### Fixes", ""]
        for r in fixes:
            lines.append(f"- **{code(r['id'])}** ({r['status']}): {cell(r['fix']['text'])}")
            if r["fix"].get("command"):
                lines += ["  ```sh", f"  {r['fix']['command']}", "  ```"]
    lines += ["", "### Versions", "", "```", *versions_block(doc), "```"]
    return lines


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


def bench_markdown(doc: dict[str, Any]) -> list[str]:
    devices = doc.get("devices", [])
    names = [d.get("name") for d in devices]
    summary = doc.get("summary", {})
    verdict = "interrupted" if doc.get("interrupted") else ("problems found" if doc.get("exit_code") else "verified")
    lines = [
        f"## envcheck bench: {verdict}",
        "",
        f"`{cell(doc.get('host', {}).get('hostname'))}` · {doc.get('generated_at', '')} · "
        f"envcheck {doc.get('envcheck_version', '')} · {doc.get('wall_s', 0):.0f} s",
        "",
        "| device | model | uuid | PCI bus |",
        "|---|---|---|---|",
    ]
    for d in devices:
        lines.append(
            f"| {code(d.get('name'))} | {cell(d.get('model'))} | {cell(d.get('uuid'))} | {cell(d.get('pci_bus_id'))} |"
        )
    if doc.get("preflight"):
        lines += ["", "### Preflight", "", "| | check | result | id |", "|---|---|---|---|"]
        for c in doc["preflight"]:
            icon = ICONS.get(c["status"], c["status"])
            lines.append(f"| {icon} | {cell(c.get('title'))} | {cell(c.get('summary'))} | {code(c['id'])} |")
    lines += [
        "",
        "| benchmark | case | " + " | ".join(cell(n) for n in names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    rows: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for r in doc.get("results", []):
        rows.setdefault((r["id"], r.get("label") or r.get("case")), {})[r.get("device")] = r
    for (bench_id, case), by_device in rows.items():
        cells = [_bench_cell(by_device.get(n)) for n in names]
        lines.append(f"| {code(bench_id)} | {cell(case)} | " + " | ".join(cells) + " |")
    lines += peak_table(doc)
    problems = [r for r in doc.get("results", []) if r.get("status") in ("fail", "crash")]
    if problems:
        lines += ["", "### Problems", ""]
        lines += [f"- {code(r['id'])} on {code(r.get('device'))}: {cell(r.get('reason'))}" for r in problems]
    comparison = doc.get("comparison") or {}
    if comparison.get("note"):
        lines += ["", f"Comparison with {code(comparison.get('baseline'))}: {cell(comparison['note'])}"]
    if summary:
        lines += ["", "Summary: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in summary.items() if v)]
    return lines


def peak_table(doc: dict[str, Any]) -> list[str]:
    """What the HTML report's throughput chart shows, as a table: each figure of a card whose datasheet
    peak envcheck knows, next to that peak and its share of it (nothing on a CPU, or a card not in the table)."""
    rows = [
        r
        for r in doc.get("results") or []
        if isinstance(r, dict) and isinstance(r.get("value"), (int, float)) and isinstance(r.get("peak"), (int, float))
    ]
    if not rows:
        return []
    lines = [
        "",
        "### Against the datasheet peak",
        "",
        "| device | benchmark | case | measured | peak | of peak |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        unit = cell(r.get("unit") or "")
        fraction = r.get("peak_fraction")
        share = f"{fraction:.0%}" if isinstance(fraction, (int, float)) else ""
        lines.append(
            f"| {code(r.get('device'))} | {code(r.get('id'))} | {cell(r.get('label') or r.get('case'))} "
            f"| {r['value']:.4g} {unit} | {r['peak']:.4g} {unit} | {share} |"
        )
    return lines


def _bench_cell(r: dict[str, Any] | None) -> str:
    if r is None:
        return ""
    if r.get("value") is None:
        return cell(f"{r.get('status')}: {r.get('reason') or ''}".strip(": "))
    text = f"{r['value']:.4g} {r.get('unit') or ''}".strip()
    if r.get("peak_fraction") is not None:
        text += f" ({r['peak_fraction']:.0%} of peak)"
    if r.get("contended"):
        text += " (contended)"
    if r.get("noisy"):
        text += " (noisy)"
    if r.get("status") != "ok":
        text = f"**{r.get('status')}** {text}"
    return cell(text)
