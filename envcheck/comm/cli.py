"""``envcheck comm``: the click command. It parses options into a request, runs this node's ranks (or
this process as one rank of a torchrun/srun world), and delivers rank 0's report through
envcheck.cli.terminal (redacted once, rendered by format, written atomically).

Importing this module must stay cheap (``envcheck --help`` imports it): torch is never imported here,
and the rest inside the command.
"""

from __future__ import annotations

from typing import Any

import click

from envcheck.cli.options import format_options, spec_option


@click.command()
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="auto: NCCL over every visible GPU, else gloo over CPU ranks.",
)
@click.option(
    "--nproc",
    type=click.IntRange(1, 4096),
    default=None,
    help="Ranks to start on this node (default: one per visible GPU; 2 on --device cpu). "
    "Not with torchrun/srun, whose world it joins.",
)
@click.option(
    "--timeout",
    default="60",
    show_default=True,
    metavar="SECONDS",
    help="Seconds any one step may block (joining, a barrier, one collective): past it the missing or "
    "stuck ranks are named and the run ends.",
)
@click.option(
    "--ops",
    "ops_text",
    metavar="OP,...",
    help="all_reduce, all_gather, reduce_scatter, broadcast, all_to_all, send_recv, p2p (the matrix); default all.",
)
@click.option("--min-size", metavar="SIZE", help="Smallest buffer (e.g. 32KiB; GPU default 32KiB, CPU 4KiB).")
@click.option("--max-size", metavar="SIZE", help="Largest buffer (e.g. 1GiB, the GPU default; capped by free memory).")
@click.option(
    "--iters",
    type=int,
    default=None,
    help="Timed runs per op and size (GPU 20, CPU 5), each of back-to-back calls timed together as nccl-tests "
    "times its iterations (up to 50 at small sizes on GPUs, one from 256 MiB; up to 4 on CPUs).",
)
@click.option("--warmup", type=int, default=None, help="Warm-up iterations, the verified one included (GPU 5, CPU 1).")
@format_options
@spec_option("whose [comm] minimum busbw each op must reach", found=False)
def comm(
    device: str,
    nproc: int | None,
    timeout: str,
    ops_text: str | None,
    min_size: str | None,
    max_size: str | None,
    iters: int | None,
    warmup: int | None,
    fmt: str | None,
    as_json: bool,
    output: str | None,
    spec_path: str | None,
) -> None:
    """Measure and verify the GPUs working together: collectives and send/recv over torch.distributed.

    Alone, it starts one rank per visible GPU on this node. Under torchrun or srun (RANK, WORLD_SIZE,
    MASTER_ADDR, MASTER_PORT set; under srun SLURM_PROCID and MASTER_ADDR/MASTER_PORT) each process is a
    rank of that world and rank 0 writes the one report. Figures are nccl-tests' algbw and busbw.

    Exit codes: 0 every collective ran and verified; 1 a wrong result, a rank that never joined, hung or
    died, or a figure below the --spec minimum; 2 a malformed option or spec; 74 the report could not be
    written; 130 stopped by Ctrl-C, 143 by SIGTERM, 129 by SIGHUP (the report holds the steps every rank
    finished: README, "Stopping a run").
    """
    import os
    import sys

    from envcheck.cli.options import resolve_formats
    from envcheck.comm.app import CommRequest, joined_world, run_as_rank, run_comm
    from envcheck.core import stop

    stdout_format, file_format = resolve_formats(fmt, as_json, output)
    request = CommRequest.parse(
        device=device,
        nproc=nproc,
        timeout=timeout,
        ops_text=ops_text,
        min_size=min_size,
        max_size=max_size,
        iters=iters,
        warmup=warmup,
        spec_path=spec_path,
    )
    world = joined_world(os.environ)

    progress, live = _progress(enabled=stdout_format == "text")

    def deliver(report: Any) -> int:
        live.stop()  # the report may come from the watchdog's thread while the display still runs
        return _deliver(report, stdout_format, file_format, output)

    if world is not None:
        with live:
            code = run_as_rank(request, world, progress=progress if world.rank == 0 else None, on_report=deliver)
        sys.exit(code)
    with stop.orderly():  # ranks of our own: README, "Stopping a run" (under torchrun, torchrun stops them)
        with live:
            report = run_comm(request, progress=progress)
        sys.exit(deliver(report))


def _deliver(report: Any, stdout_format: str, file_format: str | None, output: str | None) -> int:
    import sys

    from envcheck.cli.terminal import delivered
    from envcheck.comm.report import comm_document

    code = delivered(
        comm_document(report), report.exit_code, stdout_format=stdout_format, file_format=file_format, output=output
    )
    sys.stdout.flush()
    return code


def _progress(*, enabled: bool) -> tuple[Any, Any]:
    """On a terminal, one row of the live display (:class:`envcheck.render.live.Live`) that says which step
    rank 0 is at; nothing in pipes or JSON. Returns the rank's progress callback (None when nothing is
    shown) and the display, a context manager."""
    from envcheck.render.live import Live

    live = Live(enabled=enabled)
    if not live.terminal:
        return None, live

    def show(event: dict[str, Any]) -> None:
        if event.get("event") == "step":
            live.row("comm", f"envcheck comm: step {event['index'] + 1}/{event['total'] + 1}: {event['what']}")
        elif event.get("event") == "joining":
            live.row("comm", f"envcheck comm: waiting for {event['size']} ranks to join")

    return show, live
