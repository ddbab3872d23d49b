"""``envcheck snapshot``: describe this known-good machine as a lab spec for other machines to match."""

from __future__ import annotations

import sys
from typing import Any

import click

from envcheck.cli.options import finite

#: What a snapshot describes, in :class:`envcheck.spec.snapshot.Machine`'s order: the probes behind the
#: lab spec's checks.
MACHINE_PROBES = ("host", "disk", "packages", "nvml")


@click.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the spec here (default: stdout).")
@click.option("--force", is_flag=True, help="Overwrite the output file if it exists.")
@click.option("--package", "packages", multiple=True, metavar="NAME", help="Also pin this package (repeatable).")
@click.option("--with-bench", is_flag=True, help="Run the bench and record minimum figures per benchmark.")
@click.option(
    "--fraction",
    type=click.FloatRange(0.0, 1.0, min_open=True),
    callback=finite,
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
    from pathlib import Path

    from envcheck.core.exit import ExitCode
    from envcheck.core.probing import ProbeFailed, ProbeTimeout
    from envcheck.doctor.app import DoctorRequest, run_doctor
    from envcheck.render import write_text_atomically
    from envcheck.spec.snapshot import Machine, render_snapshot

    if output and Path(output).exists() and not force:
        click.echo(f"envcheck: {output} exists; use --force to overwrite it", err=True)
        sys.exit(int(ExitCode.USAGE))
    # No check: the doctor's probes describe the machine, run as the doctor runs them (at once, bounded).
    probed = run_doctor(DoctorRequest(selection=None, probes=MACHINE_PROBES, env=dict(os.environ))).probed
    try:
        machine = Machine(*(probed.require(name) for name in MACHINE_PROBES))
    except (ProbeTimeout, ProbeFailed) as exc:
        click.echo(f"envcheck: cannot describe this machine: {exc}", err=True)
        sys.exit(int(ExitCode.FAILED))
    if with_bench:
        from envcheck.core import stop
        from envcheck.core.errors import CommandError
        from envcheck.spec.bench import bench_figures, contended_ids

        try:
            with stop.orderly() as stopping:  # README, "Stopping a run"
                measured = run_bench_for_snapshot(device)
                machine.bench = bench_figures(measured)
            if stopping.signum is not None:  # came once the bench was over: a stop all the same
                click.echo(f"envcheck: snapshot stopped by {stopping.stopped_by}: nothing written", err=True)
                sys.exit(stopping.exit_code(0))
            left_out = contended_ids(measured)
            if left_out:
                # A figure taken while other work held the CPUs is no minimum for other machines.
                click.echo(
                    f"envcheck: not recorded, measured while other work held the CPUs: {', '.join(left_out)}; "
                    "run the snapshot again on a quiet machine to record them",
                    err=True,
                )
        except BenchStopped as exc:
            click.echo(f"envcheck: snapshot stopped by {exc}: half a suite is no reference; nothing written", err=True)
            sys.exit(exc.code)
        except CommandError as exc:
            click.echo(f"envcheck: cannot record bench figures: {exc}", err=True)
            sys.exit(int(ExitCode.FAILED))
    text = render_snapshot(machine, extra_packages=packages, fraction=fraction)
    if output:
        try:
            write_text_atomically(output, text)
        except OSError as exc:
            click.echo(f"envcheck: cannot write {output}: {exc.strerror or exc}", err=True)
            sys.exit(int(ExitCode.OUTPUT_ERROR))
        click.echo(f"wrote {output}: check machines with `envcheck doctor --spec {output}`", err=True)
    else:
        sys.stdout.write(text)


class BenchStopped(Exception):
    """The snapshot's bench was stopped by a signal (its name, or Ctrl-C) before it finished."""

    def __init__(self, stopped_by: str | None) -> None:
        from envcheck.core.exit import exit_code_for
        from envcheck.core.stop import stopped_words

        super().__init__(stopped_words(stopped_by))
        self.code = int(exit_code_for([], interrupted=True, stopped_by=stopped_by))


def run_bench_for_snapshot(device: str, *, only: str | None = None, quick: bool = False) -> dict[str, Any]:
    """Run the bench (by default the whole default suite) on ``device`` in-process, through the same
    ``run_bench`` the bench command calls; its envcheck.bench/1 document. A signal ends the snapshot
    (:class:`BenchStopped`, exit 130/143/129): half a suite is no reference for other machines."""
    from envcheck.bench.app import BenchRequest, run_bench
    from envcheck.bench.render import progress
    from envcheck.bench.report import bench_document
    from envcheck.core.errors import CommandError

    # the bench takes a minute or more: its progress on stderr, as `envcheck bench` shows it
    callbacks, live = progress(stream=sys.stderr)
    with live:
        report = run_bench(BenchRequest.parse(device=device, only=only, quick=quick), progress=callbacks)
    if report.interrupted:
        raise BenchStopped(report.stopped_by)
    if report.exit_code:
        raise CommandError(
            "the bench found problems on this machine (wrong results or failed preflight checks); "
            "a machine that fails its own bench is not a reference — run `envcheck bench` to see them"
        )
    return bench_document(report)
