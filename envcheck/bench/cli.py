"""Placeholder: the bench command is being built (issue 3)."""

import click


@click.command()
def bench() -> None:
    """Benchmark the devices (work in progress)."""
    raise SystemExit(2)
