"""The command line: a group of thin click commands, each loaded only when it is run (cf. hatch's and
pip's lazy command tables), so that ``envcheck --help`` and the healthcheck path import neither rich,
pynvml nor torch.

Adding a command is one package with a ``cli.py`` and one line in :data:`COMMANDS`.
"""

from __future__ import annotations

import importlib
import time
from typing import Any

import click

from envcheck import __version__
from envcheck.core.errors import CommandError

#: name -> ("module:attribute" of its click command, its one line in ``envcheck --help``). The line is
#: here so that listing the commands imports none of them; tests/test_cli.py keeps it equal to the start of
#: the command's own help. Adding a command is one line here.
#: When envcheck started (this module is the command line's first): every report's footer and ``duration_s``
#: say the wait the user saw from here, imports included, not only the command's own part of the run.
STARTED = time.monotonic()

COMMANDS = {
    "doctor": ("envcheck.doctor.cli:doctor", "Check this machine and say what to fix."),
    "snapshot": (
        "envcheck.spec.cli:snapshot",
        "Describe this known-good machine as a lab spec (TOML) for other machines to match.",
    ),
    "healthcheck": (
        "envcheck.doctor.cli:healthcheck",
        "The node's health in one line, in the dialect of whoever asks.",
    ),
    "bench": (
        "envcheck.bench.cli:bench",
        "Prove each device computes correct results, and measure it against its datasheet.",
    ),
    "comm": (
        "envcheck.comm.cli:comm",
        "Measure and verify the GPUs working together: collectives and send/recv over torch.distributed.",
    ),
    "burn": ("envcheck.burn.cli:burn", "Burn the GPUs in: a sustained matmul load on every device at once."),
    "fleet": ("envcheck.fleet.cli:fleet", "Merge many nodes' envcheck reports into one fleet report."),
    "explain": (
        "envcheck.explain.cli:explain",
        "Say what a pasted error means, and whether this machine shows its cause.",
    ),
}


class _Commands(click.Group):
    """The command group: commands load on first use, and the whole run is guarded so that a closed
    pipe, a full disk or an output encoding that cannot hold a character is an exit code and at most one
    line, never a traceback (see :mod:`envcheck.cli.terminal`)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, _, attribute = COMMANDS[cmd_name][0].partition(":")
        return getattr(importlib.import_module(module), attribute)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # As click's own listing does, without importing the commands to ask for their help; each line
        # whole (wrapped under its command), not cut to one row as click would.
        with formatter.section("Commands"):
            formatter.write_dl([(name, COMMANDS[name][1]) for name in self.list_commands(ctx)])

    def invoke(self, ctx: click.Context) -> Any:
        """A command that cannot run as asked raises :class:`CommandError`; it is said here, once, for every
        command: ``envcheck COMMAND: error: ...`` on stderr and the error's exit code."""
        try:
            return super().invoke(ctx)
        except CommandError as exc:
            from envcheck.cli.terminal import fail

            fail(ctx.invoked_subcommand or "envcheck", str(exc), exc.exit_code)
        except OSError as exc:
            from envcheck.cli.terminal import ReaderGone, reader_gone, stdout_reader_gone

            if reader_gone(exc):
                if stdout_reader_gone():
                    raise ReaderGone from exc
                # another pipe (a child's stdin a command forgot to guard): a bug to report, not exit 1
                raise RuntimeError(f"a pipe closed under the command: {exc}") from exc
            raise

    def main(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        from envcheck.cli.terminal import run_guarded

        return run_guarded(lambda **kw: super(_Commands, self).main(*args, **{**kwargs, **kw}))


@click.group(cls=_Commands, invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="envcheck")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Is this machine ready for deep-learning work? If not: what is wrong, and the exact fix."""
    if ctx.invoked_subcommand is None:  # `envcheck` alone: what a new user types first is help, not an error
        click.echo(ctx.get_help())
