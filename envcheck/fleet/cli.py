"""``envcheck fleet``: the click command. It reads the sources, merges them and delivers the
envcheck.fleet/1 document through envcheck.cli.terminal (redacted once, rendered by format, written atomically).

Importing this module must stay cheap (``envcheck --help`` imports it): the rest is imported inside the
command.
"""

from __future__ import annotations

import math

import click

from envcheck.cli.options import format_options

#: Skipped sources named on stderr before the rest are only counted (every one is in the report).
SHOWN_SKIPS = 20


def _threshold(ctx: click.Context, param: click.Parameter, value: float) -> float:
    """A share strictly between 0 and 1; NaN and infinities are refused too (every comparison with NaN is
    false, so it would silently find nothing slow)."""
    if not math.isfinite(value) or not 0.0 < value < 1.0:
        raise click.BadParameter(f"{value} is not a share between 0 and 1 (0.1 is 10 %)")
    return value


@click.command()
@click.argument("sources", nargs=-1, required=True, metavar="REPORT...")
@click.option(
    "--threshold",
    type=float,
    default=0.10,
    show_default=True,
    callback=_threshold,
    help="A GPU (or CPU) this share below the fleet median of its model for a benchmark is slow.",
)
@click.option(
    "--since",
    "previous_path",
    metavar="PREVIOUS.json",
    help="A previous fleet report (--json): also say which failures are new or resolved, which nodes "
    "appeared or vanished, and which devices (by GPU UUID) fell by more than --threshold since it.",
)
@format_options
def fleet(
    sources: tuple[str, ...],
    threshold: float,
    previous_path: str | None,
    fmt: str | None,
    as_json: bool,
    output: str | None,
) -> None:
    """Merge many nodes' envcheck reports into one fleet report.

    REPORT is a JSON report of `envcheck doctor`, `bench`, `comm` or `burn` (--json or --output x.json;
    another envcheck command's report counts by its envelope: host, GPUs, status), a directory of them
    (walked for *.json, links to directories followed, each directory once; one that cannot be listed
    is named among the skipped), or - for a stream on stdin (JSON lines, or documents one after another). Run
    envcheck on the nodes with what the lab already has (Slurm, Kubernetes, torchrun) and merge what
    they wrote.

    The report says which nodes fail and why, which fields drift (driver, torch and its CUDA, cuDNN,
    NCCL, Python, GPU model and count, the lab spec's packages), which GPUs are slower than the same
    model elsewhere, by host, index, UUID and PCI bus id (CPUs by CPU model the same way), and any GPU
    UUID or host seen twice. A source that is not an envcheck report, is truncated or has an unknown
    schema version is named and skipped.

    The report starts with the verdict and the problems, each once across the fleet with the nodes
    that have it and its fix, the worst and most common first; each node's own list follows.

    Exit codes: 0 no node fails and no device is slow; 1 a node fails or a device is slow; 2 bad
    input (no readable report, a bad option, a --since file that is not a fleet report this envcheck
    reads); 74 the report could not be written.
    """
    import gc
    import sys
    import time

    from envcheck.cli import STARTED
    from envcheck.cli.options import resolve_formats
    from envcheck.cli.terminal import error, finish
    from envcheck.core.exit import ExitCode
    from envcheck.core.report import utc_now
    from envcheck.fleet.app import merge_sources
    from envcheck.fleet.read import STDIN, Skipped
    from envcheck.fleet.report import BUILT_AS_JSON, fleet_document

    generated_at = utc_now()
    stdout_format, file_format = resolve_formats(fmt, as_json, output)
    previous = None
    if previous_path is not None:
        from envcheck.core.files import FileRefused, read_regular
        from envcheck.fleet.read import MAX_BYTES
        from envcheck.fleet.since import PreviousError, check_previous

        try:
            # read as a source is: a regular file of a bounded size (a FIFO would wait for a writer
            # forever, /dev/zero fill the memory)
            previous = check_previous(read_regular(previous_path, MAX_BYTES), previous_path)
        except FileRefused as exc:
            error(f"fleet: cannot read --since {previous_path}: it {exc}")
            sys.exit(int(ExitCode.USAGE))
        except OSError as exc:
            error(f"fleet: cannot read --since {previous_path}: {exc.strerror or exc}")
            sys.exit(int(ExitCode.USAGE))
        except PreviousError as exc:
            error(f"fleet: --since: {exc}")
            sys.exit(int(ExitCode.USAGE))
    stdin = sys.stdin.buffer if STDIN in sources else None
    skipped = 0

    def warn(skip: Skipped) -> None:
        nonlocal skipped
        skipped += 1
        if skipped <= SHOWN_SKIPS:
            error(f"fleet: skipped {skip.source}: {skip.reason}")

    # The merge pauses the cyclic collector (envcheck.fleet.app.collector_paused); so does the rest, which
    # builds, redacts and writes a document of millions of values once and exits.
    gc.disable()
    report = merge_sources(sources, stdin, threshold=threshold, on_skip=warn)
    if skipped > SHOWN_SKIPS:
        error(f"fleet: skipped {skipped - SHOWN_SKIPS} more sources (the report lists them all)")
    if not report.reports_read:
        error(f"fleet: no envcheck report could be read ({skipped} skipped)")
        sys.exit(int(ExitCode.USAGE))
    document = fleet_document(
        report,
        generated_at=generated_at,
        duration_s=time.monotonic() - STARTED,
        previous=previous,
        previous_source=previous_path,
    )
    exit_code = report.exit_code
    del report  # the document holds what is written: the merge's state goes before the output is made
    finish(
        document,
        exit_code,
        stdout_format=stdout_format,
        file_format=file_format,
        output=output,
        redacted_parts=BUILT_AS_JSON,  # redacted as fleet_document built them
    )
