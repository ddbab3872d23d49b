"""Options defined once for every command that has them: ``--format``/``--json``/``--output``,
``--spec``, and the check that a float option is finite (cf. pip's cmdoptions)."""

from __future__ import annotations

import math
from typing import Any

import click

#: The formats every reporting command has. A format for one kind of report (``prometheus``: the doctor's
#: node health) is added by the commands it applies to (``format_options(extra=...)``); elsewhere it is
#: not offered, and a file suffix that asks for it (``bench -o x.prom``) is a usage error.
COMMON_FORMATS = ("text", "json", "markdown", "html")
FORMAT_HELP = {
    "text": "text (for people)",
    "json": "json (one object)",
    "markdown": "markdown (to paste into an issue)",
    "html": "html (one self-contained page with charts)",
    "prometheus": "prometheus (node_exporter's textfile collector)",
}
SUFFIX_HELP = {"json": ".json", "markdown": ".md", "html": ".html", "prometheus": ".prom"}


def format_options(fn: Any = None, *, extra: tuple[str, ...] = ()) -> Any:
    """``--format``, ``--json`` (its alias) and ``--output``, the same on every command that reports;
    ``@format_options`` or, with formats only some commands have, ``@format_options(extra=("prometheus",))``."""
    if fn is None:
        return lambda f: format_options(f, extra=extra)
    formats = COMMON_FORMATS + extra
    suffixes = ", ".join(SUFFIX_HELP[f] for f in formats if f in SUFFIX_HELP)
    fn = click.option(
        "--output",
        "-o",
        "output",
        type=click.Path(dir_okay=False, writable=True),
        help=f"Also write the report to FILE (atomically), in --format or the format its suffix names "
        f"({suffixes}); the terminal still shows the text report.",
    )(fn)
    fn = click.option("--json", "as_json", is_flag=True, help="Same as --format json.")(fn)
    fn = click.option(
        "--format",
        "fmt",
        type=click.Choice(list(formats)),
        default=None,
        help="Report format: " + ", ".join(FORMAT_HELP[f] for f in formats) + ".",
    )(fn)
    return fn


def resolve_formats(
    fmt: str | None, as_json: bool, output: str | None, *, extra: tuple[str, ...] = ()
) -> tuple[str, str | None]:
    """(what stdout shows, what the --output file gets). With --output the terminal keeps the text report.
    ``extra``: the formats beyond the common ones that this command has (as given to format_options)."""
    from envcheck.render import format_for_path

    if as_json and fmt not in (None, "json"):
        raise click.UsageError(f"--json and --format {fmt} disagree; use one")
    chosen = "json" if as_json else fmt
    if output is None:
        return chosen or "text", None
    file_format = chosen or format_for_path(output) or "text"
    if file_format not in COMMON_FORMATS + extra:
        command = click.get_current_context(silent=True)
        name = f"envcheck {command.info_name}" if command is not None else "this command"
        raise click.UsageError(
            f"{output} names the {file_format} format, which {name} does not write "
            f"(it writes {', '.join(COMMON_FORMATS + extra)}); name the file differently or pass --format"
        )
    return "text", file_format


#: ``--spec``, the same wherever a lab spec is enforced.
spec_option = click.option(
    "--spec",
    "spec_path",
    metavar="FILE",
    help="Lab spec (TOML) to enforce; else $ENVCHECK_SPEC, ./envcheck.toml, [tool.envcheck] in ./pyproject.toml "
    "or /etc/envcheck/lab.toml.",
)


def finite(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """click's FloatRange lets ``nan`` through (every comparison with NaN is false): refuse it here."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number")
    return value
