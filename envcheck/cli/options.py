"""Options defined once for every command that has them: ``--format``/``--json``/``--output``,
``--spec``, and the check that a float option is finite (cf. pip's cmdoptions)."""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from envcheck.render import Format


def _formats(extra: tuple[str, ...] = ()) -> list[Format]:
    """The formats a command offers: every common one (text, json, markdown, html) and, for a format that
    belongs to one kind of report (``prometheus``: the doctor's node health), those the command names in
    ``format_options(extra=...)``; elsewhere it is not offered, and a file suffix that asks for it
    (``bench -o x.prom``) is a usage error. Each format's words and suffixes are its own module's
    (envcheck.render); loading them imports neither rich nor anything heavy."""
    from envcheck.render import formats

    return [f for f in formats() if f.common] + [f for f in formats() if not f.common and f.id in extra]


def format_options(fn: Any = None, *, extra: tuple[str, ...] = ()) -> Any:
    """``--format``, ``--json`` (its alias) and ``--output``, the same on every command that reports;
    ``@format_options`` or, with formats only some commands have, ``@format_options(extra=("prometheus",))``."""
    if fn is None:
        return lambda f: format_options(f, extra=extra)
    offered = _formats(extra)
    suffixes = ", ".join(f.suffixes[0] for f in offered if f.suffixes)
    fn = click.option(
        "--output",
        "-o",
        "output",
        metavar="FILE",
        help=f"Also write the report to FILE (atomically), in --format or the format its suffix names "
        f"({suffixes}); stdout still shows the report, in --format (text unless --format or --json says "
        "otherwise): -o report.html alone prints text and writes HTML.",
    )(fn)
    fn = click.option("--json", "as_json", is_flag=True, help="Same as --format json.")(fn)
    fn = click.option(
        "--format",
        "fmt",
        type=click.Choice([f.id for f in offered]),
        default=None,
        help="Report format: " + ", ".join(f"{f.id} ({f.description})" for f in offered) + ".",
    )(fn)
    return fn


#: Suffixes of document and data formats envcheck does not write: ``-o report.pdf`` gets the text report
#: and a word on stderr. Any other suffix is a name, not a format (``-o gpu01.cluster``, ``-o doctor.log``,
#: ``-o run.2026-12-07``), and gets the text report without a word.
OTHER_FORMATS = frozenset(
    ".pdf .doc .docx .odt .rtf .xml .yaml .yml .toml .ini .csv .tsv .xls .xlsx .jsonl .ndjson .rst .adoc "
    ".tex .png .svg .jpg .jpeg .gif .xhtml .mhtml .mdx .org".split()
)


def resolve_formats(
    fmt: str | None, as_json: bool, output: str | None, *, extra: tuple[str, ...] = ()
) -> tuple[str, str | None]:
    """(what stdout shows, what the --output file gets), by one rule: ``--format``/``--json`` decide stdout
    (text when neither is given), and ``--output`` gets the format its suffix names, or ``--format`` when
    the suffix names none. So ``--json -o run.md`` prints JSON and writes Markdown, and stdout under
    ``--json`` is always exactly one JSON object. ``extra``: the formats beyond the common ones that this
    command has (as given to format_options)."""
    from envcheck.render import DEFAULT_FORMAT, format_for_path

    if as_json and fmt not in (None, "json"):
        raise click.UsageError(f"--json and --format {fmt} disagree; use one")
    chosen = "json" if as_json else fmt
    if output is None:
        return chosen or DEFAULT_FORMAT, None
    named = format_for_path(output)
    suffix = os.path.splitext(output)[1]
    if (
        named is None
        and chosen is None
        and suffix.lower() in OTHER_FORMATS
        and not os.path.isdir(os.path.realpath(output))  # refused as a directory: that is the one word
    ):
        # -o report.pdf: a suffix that names no format envcheck writes gets the text report, said so once
        from envcheck.cli.terminal import error

        error(f"{output}: {suffix} names no format envcheck writes; writing the text report (or pass --format)")
    file_format = named or chosen or DEFAULT_FORMAT
    offered = [f.id for f in _formats(extra)]
    if file_format not in offered:
        command = click.get_current_context(silent=True)
        name = f"envcheck {command.info_name}" if command is not None else "this command"
        raise click.UsageError(
            f"{output} names the {file_format} format, which {name} does not write "
            f"(it writes {', '.join(offered)}); name the file with one of their suffixes, or with none and "
            "pass --format"
        )
    return chosen or DEFAULT_FORMAT, file_format


def spec_option(what: str = "to enforce", *, found: bool = True) -> Any:
    """``--spec FILE``: the lab spec; ``what`` says which part of it this command enforces, ``found`` whether
    the command also looks for one when none is named (the doctor and the healthcheck do; a measuring
    command only judges against a spec it was given)."""
    where = (
        "; else $ENVCHECK_SPEC, ./envcheck.toml, [tool.envcheck] in ./pyproject.toml or /etc/envcheck/lab.toml"
        if found
        else ""
    )
    return click.option("--spec", "spec_path", metavar="FILE", help=f"Lab spec (TOML) {what}{where}.")


def device_option(what: str, default: str = "auto") -> Any:
    """``--device``: which devices a command uses, parsed by :mod:`envcheck.devices.resolve` for every
    command alike; ``what`` completes "What to ...:" in the help."""
    return click.option(
        "--device",
        default=default,
        show_default=True,
        metavar="auto|cpu|cuda|cuda:N[,M...]",
        help=f"What to {what}: auto = every visible GPU, else the CPU; cuda = every visible GPU.",
    )


def deadline_option(help: str) -> Any:
    """``--deadline``: seconds the command's checks may take (1 s to an hour, 60 by default, or
    ``ENVCHECK_DEADLINE``); shared so that the doctor and the commands that run its checks bound them alike."""
    return click.option(
        "--deadline",
        type=click.FloatRange(min=1.0, max=3600.0),
        default=60.0,
        show_default=True,
        envvar="ENVCHECK_DEADLINE",
        callback=finite,
        help=help,
    )


def finite(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """click's FloatRange lets ``nan`` through (every comparison with NaN is false): refuse it here."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number")
    return value
