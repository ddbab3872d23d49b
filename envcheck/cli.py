"""The command line: thin click commands that parse options, call the runner, pick a renderer and
return the exit code (cf. hatch's cli). Heavy imports happen inside the commands."""

from __future__ import annotations

import click

from envcheck import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="envcheck")
def main() -> None:
    """Is this machine ready for deep-learning work? If not: what is wrong, and the exact fix."""


def _register_subcommands() -> None:
    from envcheck.bench.cli import bench

    main.add_command(bench)


_register_subcommands()
