"""``envcheck bench``: the click command. It parses options into a request, calls ``run_bench``, and
delivers the report through envcheck.cli.terminal (redacted once, rendered by format, written atomically).

Importing this module must stay cheap (``envcheck --help`` imports it): torch, rich and the benchmark
modules are imported inside the command.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from envcheck.cli.options import device_option, format_options, spec_option

if TYPE_CHECKING:
    from envcheck.bench.model import BenchSpec


@click.command()
@device_option("benchmark")
@click.option("--only", metavar="ID,...", help="Benchmark ids or families to run (see --list).")
@click.option("--dtype", metavar="DTYPE,...", help="Restrict dtype-specific cases to these: fp32,tf32,bf16,fp16,fp8.")
@click.option("--quick", is_flag=True, help="A short pass (well under a minute per GPU).")
@format_options
@click.option(
    "--save", metavar="FILE", help="Also write the JSON report to FILE, atomically (a baseline for --compare)."
)
@click.option("--compare", "baseline", metavar="FILE", help="Flag every figure that dropped against a saved run.")
@click.option(
    "--threshold",
    default=0.10,
    show_default=True,
    type=float,
    help="With --compare: the drop (a fraction) that counts as a regression.",
)
@spec_option("whose [bench] minimums every device must reach", found=False)
@click.option(
    "--serial",
    is_flag=True,
    help="Benchmark one device after another instead of every GPU at once (one worker process each).",
)
@click.option("--list", "list_only", is_flag=True, help="List the benchmarks and what each measures.")
def bench(
    device: str,
    only: str | None,
    dtype: str | None,
    quick: bool,
    fmt: str | None,
    as_json: bool,
    output: str | None,
    save: str | None,
    baseline: str | None,
    threshold: float,
    spec_path: str | None,
    serial: bool,
    list_only: bool,
) -> None:
    """Prove each device computes correct results, and measure it against its datasheet.

    Every GPU is benchmarked at the same time, each by its own worker process (--serial: one after
    another), so siblings are compared under the same power and thermal conditions.

    Exit codes: 0 all figures verified; 1 a wrong result, a crashed case, a GPU slower than its
    siblings, a regression against --compare, a failed preflight check, a figure below the --spec
    minimum, a requested GPU that is not there, or a torch that cannot be imported; 2 a malformed
    option, device string, baseline or spec; 74 the report could not be written; 130 stopped by
    Ctrl-C, 143 by SIGTERM, 129 by SIGHUP (what was measured so far is still printed and saved: README,
    "Stopping a run").
    """
    import sys

    from envcheck.bench.app import BenchRequest, run_bench, select_specs
    from envcheck.bench.report import bench_document
    from envcheck.cli.options import resolve_formats
    from envcheck.cli.terminal import finish
    from envcheck.core import stop

    stdout_format, file_format = resolve_formats(fmt, as_json, output)
    if list_only:
        _list(select_specs(only), as_json=stdout_format == "json")
        return
    request = BenchRequest.parse(
        device=device,
        only=only,
        dtype=dtype,
        quick=quick,
        baseline_path=baseline,
        threshold=threshold,
        spec_path=spec_path,
        serial=serial,
    )
    from envcheck.bench.render import progress

    callbacks, live = progress(stream=sys.stderr)
    with stop.orderly():
        with live:
            report = run_bench(request, progress=callbacks)
        finish(
            bench_document(report),
            report.exit_code,
            stdout_format=stdout_format,
            file_format=file_format,
            output=output,
            save=save,
        )


def _list(specs: list[BenchSpec], *, as_json: bool) -> None:
    from envcheck.bench.render import list_benchmarks
    from envcheck.render import make_console
    from envcheck.render.json import dumps

    if as_json:
        click.echo(dumps([{"id": s.id, "title": s.title, "measures": s.measures} for s in specs]))
    else:
        list_benchmarks(specs, make_console())
