"""``envcheck burn``: the click command. It parses options into a request, calls ``run_burn`` with a live
display on stderr, and delivers the report through envcheck.cli.terminal (redacted once, rendered by format, written
atomically).

Importing this module must stay cheap (``envcheck --help`` imports it): torch, rich and the run are imported
inside the command.
"""

from __future__ import annotations

import click

from envcheck.cli.options import device_option, format_options, spec_option


@click.command()
@device_option("burn (all at once)")
@click.option(
    "--duration",
    default="10m",
    show_default=True,
    metavar="DURATION",
    help="How long to load every device: 10m, 90s, 1h or a number of seconds; honoured within a few seconds.",
)
@click.option(
    "--dtype",
    metavar="bf16|fp16|tf32|fp32",
    help="What the matmuls compute in (default bf16 on a GPU, fp32 on the CPU).",
)
@format_options
@spec_option("whose [burn] requirements (min_duration, allow_throttle, min_sustained) the run must meet", found=False)
def burn(
    device: str,
    duration: str,
    dtype: str | None,
    fmt: str | None,
    as_json: bool,
    output: str | None,
    spec_path: str | None,
) -> None:
    """Burn the GPUs in: a sustained matmul load on every device at once, its results checked against the
    first, while NVML watches clocks, power, temperatures, slowdown reasons, ECC, row remapping and Xids.

    Fails a GPU that computes a wrong result, reports a new uncorrected ECC error, an Xid or a pending row
    remap, slows down for heat or power, or falls 10 % behind its siblings; warns when throughput decays
    over the run or a GPU runs within 5 °C of its slowdown threshold.

    Exit codes: 0 passed (warnings allowed); 1 a failure; 2 a malformed option or spec; 74 the report
    could not be written; 130 stopped by Ctrl-C, 143 by SIGTERM, 129 by SIGHUP (the report covers what
    ran: README, "Stopping a run").
    """
    import sys

    from envcheck.burn.app import BurnRequest, run_burn
    from envcheck.burn.render import display
    from envcheck.burn.report import burn_document
    from envcheck.cli.options import resolve_formats
    from envcheck.cli.terminal import finish
    from envcheck.core import stop

    stdout_format, file_format = resolve_formats(fmt, as_json, output)
    request = BurnRequest.parse(device=device, duration=duration, dtype=dtype, spec_path=spec_path)
    watch, live = display(sys.stderr)
    with stop.orderly():
        with live:
            report = run_burn(request, watch=watch)
        finish(
            burn_document(report), report.exit_code, stdout_format=stdout_format, file_format=file_format, output=output
        )
