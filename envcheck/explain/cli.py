"""``envcheck explain``: the click command. Reads the error text (or runs the command after ``--``),
explains it and delivers the envcheck.explain/1 document through envcheck.cli.terminal (redacted once,
rendered by format, written atomically).

Importing this module must stay cheap (``envcheck --help`` imports it): the rest is imported inside the
command.
"""

from __future__ import annotations

import click

from envcheck.cli.options import deadline_option, format_options


class _ExplainCommand(click.Command):
    """``envcheck explain [OPTIONS] -- CMD ARGS...``: everything after the first ``--`` is the command to
    run, taken before click parses (click would read it as more error text)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            split = args.index("--")
            ctx.meta["explain_command"] = tuple(args[split + 1 :])
            args = args[:split]
        return super().parse_args(ctx, args)


@click.command(cls=_ExplainCommand)
@click.argument("text", nargs=-1, metavar="[TEXT | -]...")
@click.option("-f", "--file", "files", multiple=True, metavar="LOG", help="Read the error text from LOG (repeatable).")
@format_options
@click.option("-v", "--verbose", is_flag=True, help="Show each check's details.")
@deadline_option("Seconds the checks behind the matches may take, as the doctor's --deadline.")
def explain(
    text: tuple[str, ...],
    files: tuple[str, ...],
    fmt: str | None,
    as_json: bool,
    output: str | None,
    verbose: bool,
    deadline: float,
) -> None:
    """Say what a pasted error means, and whether this machine shows its cause.

    Give the error as TEXT, from a file (-f LOG), from stdin (-), or run a command after -- (its output
    passes through unchanged; if it fails, what it printed is explained and envcheck exits with its code).
    Each known error runs only the doctor's checks that decide it, and says either "this machine shows the
    cause" (a check fails or warns: its verdict and fix) or "not seen here" (what to check where it
    happened). The text is redacted before it is printed or written.

    Exit codes: 0 no cause shown here (or nothing known in the text), 1 this machine shows a cause, 2 bad
    input; with --, the command's own exit code.
    """
    import os
    import sys
    import time

    from envcheck.cli.options import resolve_formats
    from envcheck.cli.terminal import finish
    from envcheck.core.errors import CommandError
    from envcheck.core.exit import ExitCode
    from envcheck.explain.app import ExplainRequest, judge, read
    from envcheck.explain.report import explain_document

    started = time.monotonic()
    stdout_format, file_format = resolve_formats(fmt, as_json, output)
    command = click.get_current_context().meta.get("explain_command")
    how = {"stdout_format": stdout_format, "file_format": file_format, "output": output, "verbose": verbose}
    if command is not None:
        if text or files:
            raise CommandError("give the error text or a command after --, not both", ExitCode.USAGE)
        if not command:
            raise CommandError("nothing to run after --", ExitCode.USAGE)
        from envcheck.explain.scan import Scanner
        from envcheck.explain.wrap import run_wrapped

        scanner = Scanner()
        code = run_wrapped(command, scanner)
        if code == 0:
            sys.exit(0)
        report = judge(scanner, deadline_s=deadline, started=started, command=command, command_exit=code)
        # The job's stdout stays the job's: the explanation goes to stderr.
        finish(explain_document(report), code, stream=sys.stderr, **how)
    request = ExplainRequest.parse(text, files, env=dict(os.environ), deadline_s=deadline)
    scanner = read(request)
    report = judge(scanner, env=request.env, deadline_s=deadline, started=started, file_argument=request.file_argument)
    if report.read_instead:
        from envcheck.core.files import path_shown

        click.echo(
            f"envcheck explain: {path_shown(report.file_argument or '')} is a file, read here as text; to read the "
            f"file, run `{report.read_instead}`",
            err=True,
        )
    finish(explain_document(report), report.exit_code, **how)
