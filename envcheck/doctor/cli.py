"""``envcheck doctor`` and ``envcheck healthcheck``: the doctor's two commands. Thin click commands that
parse options, run the doctor, deliver its report and exit; heavy imports happen inside them so that the
healthcheck path stays fast."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import click

from envcheck.cli import STARTED
from envcheck.cli.options import deadline_option, format_options, spec_option

if TYPE_CHECKING:
    from envcheck.core.registry import CheckSpec
    from envcheck.doctor.app import Running
    from envcheck.doctor.health import Health


#: The doctor's report is the node's health: it alone also renders for Prometheus (node_exporter's textfile).
DOCTOR_EXTRA_FORMATS = ("prometheus",)


@click.command()
@click.argument("selection", nargs=-1, metavar="[CHECK_OR_AREA]...")
@format_options(extra=DOCTOR_EXTRA_FORMATS)
@click.option("--quick", is_flag=True, help="Host, driver and GPU checks only; never imports torch (healthchecks).")
@click.option("--strict", is_flag=True, help="Treat warnings as failures (exit 1).")
@click.option("--require-gpu", is_flag=True, help="Fail when no NVIDIA GPU answers (check gpu.required).")
@click.option("-v", "--verbose", is_flag=True, help="Show each check's details.")
@click.option(
    "--list-checks", is_flag=True, help="List every check id with what it checks (--json: as JSON), and exit."
)
@spec_option()
@deadline_option(
    "Seconds the whole doctor may take; a probe still running then is a verdict naming it "
    "(torch still importing: not judged, a warning; hung only past ENVCHECK_TORCH_TIMEOUT)."
)
def doctor(
    selection: tuple[str, ...],
    fmt: str | None,
    as_json: bool,
    output: str | None,
    quick: bool,
    strict: bool,
    require_gpu: bool,
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
    from envcheck.cli.options import resolve_formats
    from envcheck.cli.terminal import finish
    from envcheck.doctor import areas
    from envcheck.doctor.app import DoctorRequest

    stdout_format, file_format = resolve_formats(fmt, as_json, output, extra=DOCTOR_EXTRA_FORMATS)
    request = DoctorRequest(
        tuple(selection),
        quick=quick,
        opt_in=areas.OPT_IN if (require_gpu or list_checks) else (),
        env=dict(os.environ),
        deadline_s=deadline,
        progress=lambda running: _progress(running, enabled=stdout_format == "text"),
    )
    try:
        request.checks()  # a wrong selection is a usage error before the lab spec is even read
    except areas.UnknownSelection as exc:
        raise click.UsageError(str(exc)) from None
    request = replace(request, extra=_lab_or_exit(spec_path)[1])
    if list_checks:
        _list_checks(request.checks(), as_json=stdout_format == "json")
        return
    from envcheck.doctor.app import run_doctor
    from envcheck.doctor.report import doctor_document

    report = run_doctor(request)
    document = doctor_document(report, wall_s=time.monotonic() - STARTED, strict=strict, require_gpu=require_gpu)
    finish(
        document,
        document["exit_code"],
        stdout_format=stdout_format,
        file_format=file_format,
        output=output,
        verbose=verbose,
    )


def _list_checks(specs: list[CheckSpec], *, as_json: bool) -> None:
    from envcheck.doctor.areas import AREAS

    listing = [
        {"id": s.id, "area": s.area, "area_title": AREAS.get(s.area, s.area), "title": s.title, "doc": s.doc}
        for s in specs
    ]
    if as_json:
        from envcheck.render.json import dumps

        sys.stdout.write(dumps(listing) + "\n")
        return
    from envcheck.doctor.render import list_checks
    from envcheck.render import make_console

    list_checks(make_console(), listing)


def _progress(running: Callable[[], Running], *, enabled: bool) -> Any:
    """While probes run, a terminal shows which are still running and for how long (one row of the live
    display, :class:`envcheck.render.live.Live`, gone when the report prints). Nothing of this in pipes,
    files or JSON."""
    from envcheck.render.live import Live

    def waiting(live: Live) -> None:
        still = sorted(running(), key=lambda r: -r[2])
        words = ", ".join(f"{what} {took:.1f} s" for _, what, took in still)
        live.row("probes", f"waiting for {words}" if still else "judging ...")

    return Live(enabled=enabled and sys.stdout.isatty(), poll=waiting)


class _HealthcheckCommand(click.Command):
    """A usage error is still said in the watcher's dialect: Docker reads exit 2 as "reserved" (so it is
    unhealthy, 1), node-problem-detector reads 2 as unknown, Slurm's Prolog drains on any non-zero exit (so
    it is exit 0, "could not judge", with the error on stderr)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # click's parser consumes the list it is given: decide the dialect first.
        mode = "npd" if "--npd" in args else "slurm" if "--slurm" in args else "docker"
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            ctx.meta["envcheck_usage_error"] = exc.format_message()
            ctx.meta["envcheck_mode"] = mode
            ctx.params = {}
            return []


@click.command(cls=_HealthcheckCommand)
@click.option(
    "--deadline",
    type=click.FloatRange(min=1.0, max=300.0),
    default=8.0,
    show_default=True,
    help="Seconds the check may take; keep it well inside the HEALTHCHECK --timeout (with --slurm: at most 30).",
)
@click.option("--require-gpu", is_flag=True, help="Unhealthy when no GPU answers (a GPU image run without --gpus).")
@spec_option()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["line", "prometheus", "json"]),
    default="line",
    show_default=True,
    help="What stdout gets: the one line, or the quick doctor's report for node_exporter's textfile "
    "collector (prometheus) or as JSON.",
)
@click.option(
    "-o",
    "--output",
    metavar="FILE",
    help="Also write the report to FILE atomically, as its suffix names (.prom, .json) or as --format "
    "names; stdout keeps the line, and the exit code stays the verdict's even when FILE cannot be written "
    "(e.g. envcheck.prom in node_exporter's textfile directory).",
)
@click.option(
    "--npd",
    is_flag=True,
    help="Kubernetes node-problem-detector custom plugin: exit 0 OK, 1 a check failed, 2 unknown "
    "(envcheck could not judge); a message of at most 80 bytes.",
)
@click.option(
    "--slurm",
    is_flag=True,
    help="Slurm HealthCheckProgram or Prolog: exit 1 only when a check failed on this node; envcheck's own "
    "trouble is said but exits 0. Bounded well inside Slurm's 60 s.",
)
@click.option(
    "--drain",
    is_flag=True,
    help="With --slurm: on a failed check, drain this node (scontrol update nodename=$SLURMD_NODENAME "
    "state=drain reason='envcheck: CHECK: ...').",
)
def healthcheck(
    deadline: float = 8.0,
    require_gpu: bool = False,
    spec_path: str | None = None,
    fmt: str = "line",
    output: str | None = None,
    npd: bool = False,
    slurm: bool = False,
    drain: bool = False,
) -> None:
    """The node's health in one line, in the dialect of whoever asks.

    Runs the quick doctor (host, driver, GPUs; never torch) and the lab spec in force (--spec, else
    $ENVCHECK_SPEC, ./envcheck.toml, ./pyproject.toml, /etc/envcheck/lab.toml). Warnings stay healthy.

    \b
    Docker HEALTHCHECK (default): exit 0 healthy, 1 unhealthy, never anything else.
    --npd: node-problem-detector's plugin protocol, 0 OK, 1 problem, 2 unknown.
    --slurm [--drain]: 0 healthy (or not judged), 1 a check failed; --drain drains the node.
    """
    import os

    from envcheck.core.exit import ExitCode
    from envcheck.core.model import one_line
    from envcheck.doctor.health import docker_line, drain_node, npd_verdict, slurm_verdict

    meta = click.get_current_context().meta
    mode = meta.get("envcheck_mode") or ("npd" if npd else "slurm" if slurm else "docker")
    usage_error = meta.get("envcheck_usage_error")
    if usage_error is None:
        usage_error = _healthcheck_usage(deadline, fmt, output, npd=npd, slurm=slurm, drain=drain)
    if usage_error is not None:
        from envcheck.core.redact import scrub

        usage_error = scrub(usage_error, os.environ)  # a path quoted in it is printed where watchers show it
        said = f"envcheck healthcheck was called wrongly: {usage_error}"
        if mode == "npd":
            from envcheck.doctor.health import NPD_MAX_OUTPUT, NPD_UNKNOWN, fit_bytes

            # NPD keeps 80 bytes: the shorter lead-in leaves room for what is wrong.
            click.echo(fit_bytes(f"unknown: envcheck called wrongly: {usage_error}", NPD_MAX_OUTPUT))
            sys.exit(NPD_UNKNOWN)
        if mode == "slurm":
            # A Prolog or HealthCheckProgram exiting non-zero drains the node: a typo in slurm.conf must not
            # drain the cluster. Said as every own trouble is (stdout, exit 0), and loudly on stderr too.
            click.echo(f"envcheck: error: {said.rstrip('.')}: this node is not judged and not drained", err=True)
            click.echo(one_line(f"envcheck could not judge this node: {said}"))
            sys.exit(int(ExitCode.OK))
        click.echo(f"unhealthy: {said}")
        sys.exit(ExitCode.USAGE.for_docker())

    health = _assess(deadline, require_gpu=require_gpu, spec_path=spec_path)
    if mode == "docker" and fmt != "line" and output is None and health.document is not None:
        from envcheck.cli.terminal import deliver

        # The report instead of the line: deliver() redacts it, its one redaction.
        deliver(health.document, stdout_format=fmt, file_format=None, output=None, verbose=False)
        healthy, _ = docker_line(health)
        sys.exit((ExitCode.OK if healthy else ExitCode.FAILED).for_docker())
    # The one redaction of every other answer: `docker inspect`, `kubectl describe node` and `sinfo -R`
    # show these lines (and scontrol's drain reason) to anyone who can see the node.
    health = health.redacted(os.environ)
    if output is not None and health.document is not None:
        _write_health_file(health.document, output, fmt)
    if mode == "npd":
        code, message = npd_verdict(health)
        click.echo(message)
        sys.exit(code)
    if mode == "slurm":
        verdict = slurm_verdict(health)
        line = verdict.line
        if drain and verdict.drain_reason is not None:
            _, what = drain_node(verdict.drain_reason, os.environ)
            line += f"; {what}"
        click.echo(one_line(line))
        sys.exit(verdict.exit_code)
    healthy, line = docker_line(health)
    click.echo(line)
    sys.exit((ExitCode.OK if healthy else ExitCode.FAILED).for_docker())


def _assess(deadline: float, *, require_gpu: bool, spec_path: str | None) -> Health:
    """The quick doctor and the lab spec in force. A spec that cannot be read, or envcheck crashing while
    reading it, is a :class:`Health` that says so (each dialect decides what that means for its watcher)."""
    from envcheck.doctor.health import Health, assess
    from envcheck.spec import SpecError

    try:
        path, checks = _lab(spec_path)
    except SpecError as exc:
        return Health(None, error=f"lab spec unusable: {exc}")
    except Exception as exc:  # noqa: BLE001 - a crash is a verdict of its own, never a traceback
        return Health.crashed(exc)
    return assess(deadline, require_gpu=require_gpu, lab_checks=checks, spec_path=path, started=STARTED)


def _healthcheck_usage(
    deadline: float, fmt: str, output: str | None, *, npd: bool, slurm: bool, drain: bool
) -> str | None:
    """What is wrong with this combination of the healthcheck's options, in words; None when nothing is."""
    from envcheck.doctor.health import SLURM_MAX_DEADLINE_S

    if not math.isfinite(deadline):
        return f"--deadline {deadline} is not a number"
    if npd and slurm:
        return "--npd or --slurm, not both"
    if drain and not slurm:
        return "--drain drains a Slurm node: it needs --slurm"
    if slurm and deadline > SLURM_MAX_DEADLINE_S:
        return f"--deadline {deadline:g} with --slurm: at most {SLURM_MAX_DEADLINE_S:g} s (Slurm kills it at 60 s)"
    if (npd or slurm) and fmt != "line" and output is None:
        return f"--format {fmt} would replace the line {'NPD' if npd else 'Slurm'} reads; write it with --output"
    if output is not None:
        from envcheck.core.files import path_shown
        from envcheck.render import format_for_path

        file_format = fmt if fmt != "line" else format_for_path(output)
        if file_format not in ("prometheus", "json"):
            return f"--output {path_shown(output)}: name a .prom or .json file, or pass --format prometheus or json"
    return None


def _write_health_file(document: dict[str, Any], output: str, fmt: str) -> None:
    """The healthcheck's --output file (from the redacted Health). A path that cannot be written (a
    read-only textfile directory, a directory, a socket, a FIFO nobody reads: the writer's rules,
    :func:`envcheck.render.write_text_atomically`) is envcheck's own trouble, not the node's: one line on
    stderr, and every dialect's verdict on stdout and its exit code stay what they are. Docker stays on its
    health, NPD keeps its verdict (the node was judged; only the copy for node_exporter is missing),
    Slurm never drains for it. node_exporter notices the stale file by envcheck_last_run_timestamp_seconds."""
    from envcheck.cli.terminal import error
    from envcheck.core.files import path_shown
    from envcheck.render import format_for_path, write_atomically

    try:
        write_atomically(output, document, fmt if fmt != "line" else format_for_path(output) or "prometheus")
    except OSError as exc:
        error(f"cannot write {path_shown(output)}: {exc.strerror or exc}")


def _lab(spec_path: str | None) -> tuple[str | None, tuple[CheckSpec, ...]]:
    """The lab spec in force (``--spec``, else $ENVCHECK_SPEC and the usual places) as (its path, its
    checks); (None, ()) where there is none. A spec that cannot be read is :class:`~envcheck.spec.SpecError`."""
    import os

    from envcheck.spec import find_spec

    lab = find_spec(spec_path, os.environ)
    if lab is None:
        return None, ()
    from envcheck.spec.checks import spec_checks

    return lab.path, tuple(spec_checks(lab))


def _lab_or_exit(spec_path: str | None) -> tuple[str | None, tuple[CheckSpec, ...]]:
    """:func:`_lab` for the doctor: a broken spec is one line on stderr and exit 2."""
    from envcheck.core.exit import ExitCode
    from envcheck.spec import SpecError

    try:
        return _lab(spec_path)
    except SpecError as exc:
        click.echo(f"envcheck: {exc}", err=True)
        sys.exit(int(ExitCode.USAGE))
