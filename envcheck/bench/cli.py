"""``envcheck bench``: the click command. It only parses options; app.py does the work.

Importing this module must stay cheap (``envcheck --help`` imports it): torch, rich and the benchmark
modules are imported inside the command.
"""

from __future__ import annotations

import click


@click.command()
@click.option(
    "--device",
    default="auto",
    show_default=True,
    metavar="auto|cpu|cuda|cuda:N[,M...]",
    help="What to benchmark: auto = every visible GPU, else the CPU; cuda = every visible GPU.",
)
@click.option("--only", metavar="ID,...", help="Benchmark ids or families to run (see --list).")
@click.option("--dtype", metavar="DTYPE,...", help="Restrict dtype-specific cases to these: fp32,tf32,bf16,fp16,fp8.")
@click.option("--quick", is_flag=True, help="A short pass (well under a minute per GPU).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (schema envcheck.bench/1).")
@click.option("--save", metavar="FILE", help="Also write the JSON to FILE (a baseline for --compare).")
@click.option("--compare", "baseline", metavar="FILE", help="Flag every figure that dropped against a saved run.")
@click.option(
    "--threshold",
    default=0.10,
    show_default=True,
    type=float,
    help="With --compare: the drop (a fraction) that counts as a regression.",
)
@click.option(
    "--spec", "spec_path", metavar="FILE", help="Lab spec (TOML) whose [bench] minimums every device must reach."
)
@click.option("--list", "list_only", is_flag=True, help="List the benchmarks and what each measures.")
def bench(
    device: str,
    only: str | None,
    dtype: str | None,
    quick: bool,
    as_json: bool,
    save: str | None,
    baseline: str | None,
    threshold: float,
    spec_path: str | None,
    list_only: bool,
) -> None:
    """Prove each device computes correct results, and measure it against its datasheet.

    Exit codes: 0 all figures verified; 1 a wrong result, a crashed case, a GPU slower than its
    siblings, a regression against --compare, a failed preflight check, a figure below the --spec
    minimum, or a requested GPU that is not there; 2 a malformed option, device string, baseline or spec.
    """
    from envcheck.bench import app

    code = app.main(
        device=device,
        only=only,
        dtype=dtype,
        quick=quick,
        as_json=as_json,
        save=save,
        baseline_path=baseline,
        threshold=threshold,
        spec_path=spec_path,
        list_only=list_only,
    )
    raise SystemExit(code)
