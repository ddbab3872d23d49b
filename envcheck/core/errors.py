"""The errors that cross layers. A command that cannot run as asked raises one :class:`CommandError`
(its one line and its exit code); the command line catches it in one place
(the command group, :mod:`envcheck.cli`) and says it as ``envcheck COMMAND: error: ...``, so no
command writes its own error path (cf. pip's ``base_command``: exception classes mapped to status codes
once)."""

from __future__ import annotations

from envcheck.core.exit import ExitCode


class CommandError(Exception):
    """A command that cannot run as asked: one line for the user, and the exit code that goes with it
    (USAGE for an option, device string, baseline or spec that cannot be used; FAILED for a machine that
    cannot meet a well-formed request: torch that does not import, a GPU that is not there)."""

    def __init__(self, message: str, exit_code: ExitCode = ExitCode.FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code
