"""``envcheck explain``: from an error text to what it means and whether *this* machine shows its cause.

``explain(request) -> ExplainReport``: read the text (arguments, files, stdin; a wrapped command's output
is read by envcheck.explain.wrap as it runs), find the known signatures in it
(envcheck.doctor.signatures), and run just the doctor's checks those signatures name, through the same
``run_doctor`` as ``envcheck doctor CHECK_ID...`` (not the whole doctor). Each match is then one of:

* ``shown``: a check it names fails or warns here, for this cause (a check that judges several causes,
  ``kernel.events``, counts only with the signature's kind of event: ``Signature.requires``): this machine
  shows the cause (its verdict and fix);
* ``not_seen``: its checks pass or do not apply here: the cause lies on the machine, or in the job, where
  the error happened, and the signature says what to look at there;
* ``unknown``: a check it names crashed (envcheck's bug), so nothing is said either way.

Exit: 1 when this machine shows a cause, 0 when it does not or nothing matched, 2 on bad input (with
``--``, the wrapped command's own code instead).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

from envcheck.core.errors import CommandError
from envcheck.core.exit import ExitCode
from envcheck.core.model import CheckResult, Status
from envcheck.explain.scan import Hit, Line, Scanner

#: The doctor's whole-run deadline, as ``envcheck doctor``'s default.
DEFAULT_DEADLINE_S = 60.0
#: What a stdin argument is.
STDIN = "-"


@dataclass(frozen=True)
class ExplainRequest:
    """What to read: error text given as arguments, files (``-f``), stdin (``-`` among the arguments)."""

    texts: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    stdin: bool = False
    env: dict[str, str] | None = None
    deadline_s: float = DEFAULT_DEADLINE_S

    @classmethod
    def parse(cls, arguments: tuple[str, ...], files: tuple[str, ...], **kw: Any) -> ExplainRequest:
        """The request from the command line; nothing to read is a usage error."""
        texts = tuple(a for a in arguments if a != STDIN)
        request = cls(texts, tuple(files), STDIN in arguments, **kw)
        if not (request.texts or request.files or request.stdin):
            raise CommandError(
                "nothing to explain: give the error text, -f LOG, - to read stdin, or -- CMD to run a command",
                ExitCode.USAGE,
            )
        return request

    @property
    def file_argument(self) -> str | None:
        """The one text argument where it names an existing file (``envcheck explain job.log``): the file was
        surely meant (``-f``), though it is read as the words given, as asked."""
        if len(self.texts) == 1 and not self.files and not self.stdin and os.path.isfile(self.texts[0]):
            return self.texts[0]
        return None


@dataclass(frozen=True)
class Match:
    """One signature found, with the first lines that showed it and the verdicts of the checks it names."""

    hit: Hit
    results: tuple[CheckResult, ...]
    #: What the signature's ``analyse`` read from its first line (which package, which side); {} without one.
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def showing(self) -> list[CheckResult]:
        """The checks that show this cause here: failing or warning, with what the signature requires of
        their details (a kernel.events warning about an OOM kill does not show a peermem error)."""
        signature = self.hit.signature
        return [r for r in self.results if r.status in (Status.FAIL, Status.WARN) and signature.shows(r.id, r.details)]

    @property
    def verdict(self) -> str:
        if self.showing:
            return "shown"
        if any(r.status is Status.CRASH for r in self.results):
            return "unknown"
        return "not_seen"

    @property
    def lines(self) -> list[Line]:
        return self.hit.lines


@dataclass(frozen=True)
class ExplainReport:
    matches: tuple[Match, ...]
    sources: tuple[str, ...]
    bytes_read: int
    lines_read: int
    generated_at: datetime
    duration_s: float
    #: ``explain -- CMD``: the command and its exit status.
    command: tuple[str, ...] | None = None
    command_exit: int | None = None
    #: The one text argument, where it is an existing file: what to run instead is said (:meth:`read_instead`).
    file_argument: str | None = None

    @property
    def read_instead(self) -> str | None:
        """``envcheck explain -f PATH`` where the one argument given as text is a file."""
        if self.file_argument is None:
            return None
        import shlex

        return f"envcheck explain -f {shlex.quote(self.file_argument)}"

    @property
    def shown(self) -> list[Match]:
        return [m for m in self.matches if m.verdict == "shown"]

    @property
    def exit_code(self) -> int:
        if self.command_exit is not None:
            return self.command_exit
        return int(ExitCode.FAILED if self.shown else ExitCode.OK)


def read(request: ExplainRequest, stdin: IO[bytes] | None = None) -> Scanner:
    """Scan everything the request names, in order: the arguments, the files, stdin. A file that cannot be
    read is a usage error naming it (before anything is judged)."""
    from envcheck.core.files import path_shown

    scanner = Scanner()
    if request.texts:
        feed = scanner.source("arguments")
        feed.write(" ".join(request.texts).encode("utf-8", "surrogateescape"))
        feed.close()
    for path in request.files:
        try:
            with open(path, "rb") as stream:
                scanner.read(path_shown(path), stream)
        except IsADirectoryError:
            raise CommandError(f"cannot read {path_shown(path)}: it is a directory", ExitCode.USAGE) from None
        except OSError as exc:
            raise CommandError(f"cannot read {path_shown(path)}: {exc.strerror or exc}", ExitCode.USAGE) from None
    if request.stdin:
        scanner.read("stdin", stdin if stdin is not None else sys.stdin.buffer)
    return scanner


def judge(
    scanner: Scanner,
    *,
    env: dict[str, str] | None = None,
    deadline_s: float = DEFAULT_DEADLINE_S,
    started: float | None = None,
    command: tuple[str, ...] | None = None,
    command_exit: int | None = None,
    file_argument: str | None = None,
) -> ExplainReport:
    """Run the checks the found signatures name (each once, in the doctor's order) and pair each
    signature with its verdicts."""
    from envcheck.core.report import utc_now

    generated_at = utc_now()
    started = time.monotonic() if started is None else started
    hits = scanner.found()
    wanted = list(dict.fromkeys(c for h in hits for c in h.signature.checks))
    results: dict[str, CheckResult] = {}
    if wanted:
        env = dict(os.environ if env is None else env)
        if any(c.split(".")[0] == "torch" for c in wanted):
            # Importing torch (in a child) is the longest wait: start it before the doctor's modules load.
            from envcheck.probes.torch import start_early

            start_early(env, deadline_s)
        from envcheck.doctor.app import DoctorRequest, run_doctor

        doctor = run_doctor(DoctorRequest(tuple(wanted), env=env, deadline_s=deadline_s))
        results = {r.id: r for r in doctor.results}
    matches = tuple(
        Match(
            hit,
            tuple(results[c] for c in hit.signature.checks if c in results),
            _facts(hit),
        )
        for hit in hits
    )
    return ExplainReport(
        matches,
        tuple(scanner.sources),
        scanner.bytes,
        scanner.lines,
        generated_at,
        time.monotonic() - started,
        command,
        command_exit,
        file_argument,
    )


def _facts(hit: Hit) -> dict[str, Any]:
    """What the signature's own reading of its first line adds; a reading that fails costs only that."""
    analyse = hit.signature.analyse
    if analyse is None or not hit.lines:
        return {}
    try:
        return analyse(hit.lines[0].text)
    except Exception as exc:  # noqa: BLE001 - the match stands without the extra facts
        return {"error": f"{type(exc).__name__}: {exc}"}
