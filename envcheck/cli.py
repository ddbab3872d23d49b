"""The command line: thin click commands that parse options, call the runner, pick a renderer and
return the exit code (cf. hatch's cli). Heavy imports happen inside the commands so that
``envcheck --help`` and the healthcheck path stay fast."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from envcheck import __version__

if TYPE_CHECKING:
    from envcheck.core.registry import CheckSpec


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="envcheck")
def main() -> None:
    """Is this machine ready for deep-learning work? If not: what is wrong, and the exact fix."""


@main.command()
@click.argument("selection", nargs=-1, metavar="[CHECK_OR_AREA]...")
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object (envcheck.doctor/1) on stdout.")
@click.option("--quick", is_flag=True, help="Host, driver and GPU checks only; never imports torch (healthchecks).")
@click.option("--strict", is_flag=True, help="Treat warnings as failures (exit 1).")
@click.option("-v", "--verbose", is_flag=True, help="Show each check's details.")
@click.option("--list-checks", is_flag=True, help="List every check id with what it checks, and exit.")
@click.option(
    "--spec",
    "spec_path",
    type=click.Path(dir_okay=False),
    help="Lab spec (TOML) to enforce; else $ENVCHECK_SPEC, ./envcheck.toml, [tool.envcheck] in ./pyproject.toml "
    "or /etc/envcheck/lab.toml.",
)
@click.option(
    "--deadline",
    type=click.FloatRange(min=1.0, max=3600.0),
    default=60.0,
    show_default=True,
    envvar="ENVCHECK_DEADLINE",
    help="Seconds the whole doctor may take; a probe still running then is reported as hung.",
)
def doctor(
    selection: tuple[str, ...],
    as_json: bool,
    quick: bool,
    strict: bool,
    verbose: bool,
    list_checks: bool,
    spec_path: str | None,
    deadline: float,
) -> None:
    """Check this machine and say what to fix.

    Optionally name checks or areas to run only those, e.g. `envcheck doctor gpu torch.arch`.
    Exit codes: 0 no failure (warnings allowed), 1 at least one failure, 2 usage error.
    """
    import os

    if not (quick or list_checks) and (not selection or any(n.split(".")[0] == "torch" for n in selection)):
        # Importing torch (in a child process) is the doctor's longest wait: start it before anything else.
        from envcheck.probes.torch import start_early

        start_early(os.environ, deadline)
    import json
    import sys

    from envcheck.core import registry
    from envcheck.core.exit import exit_code_for
    from envcheck.render.text import TextRenderer, make_console
    from envcheck.render.text import list_checks as print_checks
    from envcheck.runner import run_checks

    try:
        specs = registry.select_checks(list(selection), quick=quick)
    except registry.UnknownSelection as exc:
        raise click.UsageError(str(exc)) from None
    specs += lab_spec_checks(spec_path)
    if list_checks:
        print_checks(make_console(), specs)
        return
    from envcheck.redact import scrub

    def clean(text: str) -> str:
        return scrub(text, os.environ)

    if as_json:
        report = run_checks(specs, deadline_s=deadline)
        from envcheck.render.json import doctor_document

        sys.stdout.write(clean(json.dumps(doctor_document(report), indent=2)) + "\n")
    else:
        renderer = TextRenderer(make_console(), verbose=verbose, clean=clean)
        report = run_checks(specs, deadline_s=deadline, on_result=renderer.result)
        renderer.summary(report.results, report.duration_s)
    sys.exit(int(exit_code_for([r.status for r in report.results], strict=strict)))


@main.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the spec here (default: stdout).")
@click.option("--force", is_flag=True, help="Overwrite the output file if it exists.")
@click.option("--package", "packages", multiple=True, metavar="NAME", help="Also pin this package (repeatable).")
@click.option("--with-bench", is_flag=True, help="Run the bench and record minimum figures per benchmark.")
@click.option(
    "--fraction",
    type=click.FloatRange(0.0, 1.0, min_open=True),
    default=0.9,
    show_default=True,
    help="With --with-bench: the share of this machine's figures that other machines must reach.",
)
@click.option("--device", default="auto", show_default=True, help="With --with-bench: devices to benchmark.")
def snapshot(
    output: str | None, force: bool, packages: tuple[str, ...], with_bench: bool, fraction: float, device: str
) -> None:
    """Describe this known-good machine as a lab spec (TOML) for other machines to match.

    Then check any machine with `envcheck doctor --spec lab.toml` (and `envcheck bench --spec lab.toml`).
    """
    import os
    import sys
    from pathlib import Path

    from envcheck.core.probing import ProbeFailed, ProbeTimeout
    from envcheck.runner import ProbeRunner
    from envcheck.spec.snapshot import Machine, render_snapshot

    if output and Path(output).exists() and not force:
        click.echo(f"envcheck: {output} exists; use --force to overwrite it", err=True)
        sys.exit(2)
    runner = ProbeRunner(dict(os.environ), 60.0)
    for name in ("host", "disk", "packages", "nvml"):
        runner.start(name)
    try:
        machine = Machine(runner.get("host"), runner.get("disk"), runner.get("packages"), runner.get("nvml"))
    except (ProbeTimeout, ProbeFailed) as exc:
        click.echo(f"envcheck: cannot describe this machine: {exc}", err=True)
        sys.exit(1)
    if with_bench:
        from envcheck.spec.bench import BenchRunFailed, bench_figures, run_bench_for_snapshot

        try:
            machine.bench = bench_figures(run_bench_for_snapshot(device))
        except BenchRunFailed as exc:
            click.echo(f"envcheck: cannot record bench figures: {exc}", err=True)
            sys.exit(1)
    text = render_snapshot(machine, extra_packages=packages, fraction=fraction)
    if output:
        try:
            Path(output).write_text(text, encoding="utf-8")
        except OSError as exc:
            click.echo(f"envcheck: cannot write {output}: {exc.strerror or exc}", err=True)
            sys.exit(1)
        click.echo(f"wrote {output}: check machines with `envcheck doctor --spec {output}`", err=True)
    else:
        sys.stdout.write(text)


class _HealthcheckCommand(click.Command):
    """Docker reads exit 2 as "reserved", so even a usage error must come out as unhealthy (1)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            ctx.meta["envcheck_usage_error"] = exc.format_message()
            ctx.params = {}
            return []


@main.command(cls=_HealthcheckCommand)
@click.option(
    "--deadline",
    type=click.FloatRange(min=1.0, max=300.0),
    default=8.0,
    show_default=True,
    help="Seconds the check may take; keep it well inside the HEALTHCHECK --timeout.",
)
@click.option("--require-gpu", is_flag=True, help="Unhealthy when no GPU answers (a GPU image run without --gpus).")
def healthcheck(deadline: float = 8.0, require_gpu: bool = False) -> None:
    """One line and exit 0 (healthy) or 1 (unhealthy), for a Docker HEALTHCHECK.

    Runs the quick doctor (host, driver, GPUs; never torch) and the lab spec in force ($ENVCHECK_SPEC,
    ./envcheck.toml, ./pyproject.toml, /etc/envcheck/lab.toml). Warnings stay healthy. Never exits with
    any other code.
    """
    import os
    import sys

    usage_error = click.get_current_context().meta.get("envcheck_usage_error")
    if usage_error:
        click.echo(f"unhealthy: envcheck healthcheck was called wrongly: {usage_error}")
        sys.exit(1)
    try:
        from envcheck.health import healthcheck_line

        healthy, line = healthcheck_line(deadline, require_gpu=require_gpu)
    except Exception as exc:  # noqa: BLE001 - a crash must read as unhealthy, in one line
        healthy, line = False, f"unhealthy: envcheck crashed: {type(exc).__name__}: {exc}"
    from envcheck.redact import scrub

    # `docker inspect` shows this line to anyone who can see the container: no secrets in it.
    click.echo(" ".join(scrub(line, os.environ).split()))
    sys.exit(0 if healthy else 1)


def lab_spec_checks(spec_path: str | None) -> list[CheckSpec]:
    """The checks of the lab spec in force, if any; a broken spec is one line on stderr and exit 2."""
    import os
    import sys

    from envcheck.spec import SpecError, find_spec

    try:
        lab = find_spec(spec_path, os.environ)
    except SpecError as exc:
        click.echo(f"envcheck: {exc}", err=True)
        sys.exit(2)
    if lab is None:
        return []
    from envcheck.spec.checks import spec_checks

    return spec_checks(lab)


def _register_subcommands() -> None:
    from envcheck.bench.cli import bench

    main.add_command(bench)


_register_subcommands()
