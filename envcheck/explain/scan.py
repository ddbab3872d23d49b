"""Reading an error text for known signatures, in bounded time and memory however long it is.

The text arrives as bytes from wherever it comes (arguments, a file, stdin, a wrapped command's two
pipes) and is searched a block at a time: each block ends at a line boundary, is decoded once and searched
once per signature, so the work is a few passes of the regular-expression engine over the text, in C, not
a Python loop per line. Only the first :data:`KEEP_LINES` lines that matched a signature are kept (each cut
to :data:`LINE_CHARS` around the match), and a count of the rest: a 200 MB log holding the same error a
million times costs the memory of one block (benchmarks/explain_scan.py, benchmarks/RESULTS.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO

from envcheck.doctor.signatures import SIGNATURES, Signature, needle

#: The triggering lines kept per signature.
KEEP_LINES = 3
#: The most of one triggering line kept (around the match): a minified blob on one line stays short.
LINE_CHARS = 400
#: Bytes searched at a time. Large enough that the per-block cost (a search per signature) is small
#: against the engine's pass over the text; small enough to be nothing in memory.
BLOCK = 1 << 20
#: A line longer than this is searched in pieces (a match straddling a cut is lost, never the memory).
MAX_LINE = 8 * BLOCK


@dataclass(frozen=True)
class Line:
    """One line that matched: where it came from (``arguments``, ``stdin``, a file, ``stdout`` or
    ``stderr`` of a wrapped command), its number there (from 1) and its text (cut around the match)."""

    source: str
    number: int
    text: str

    def to_json(self) -> dict[str, object]:
        return {"source": self.source, "line": self.number, "text": self.text}


@dataclass
class Hit:
    """A signature found: the first lines that matched and how many times it matched in all."""

    signature: Signature
    lines: list[Line] = field(default_factory=list)
    count: int = 0


class Scanner:
    """The signatures found so far, over every source fed to it (:meth:`source`)."""

    def __init__(self, signatures: Iterable[Signature] = SIGNATURES, keep: int = KEEP_LINES) -> None:
        self.signatures = tuple(signatures)
        self.keep = keep
        #: Each signature with its patterns and their literals; the literals, each tested once per block.
        self._gated = [(s, [(p, needle(p).encode()) for p in s.patterns]) for s in self.signatures]
        self._needles = list(dict.fromkeys(n for _, gated in self._gated for _, n in gated))
        self.hits: dict[str, Hit] = {}
        #: Bytes and lines read, and the sources in the order they were first fed.
        self.bytes = 0
        self.lines = 0
        self.sources: list[str] = []

    def source(self, name: str) -> Feed:
        """A feed for one source: write its bytes as they come, then close it."""
        if name not in self.sources:
            self.sources.append(name)
        return Feed(self, name)

    def read(self, name: str, stream: IO[bytes]) -> None:
        """Feed a whole binary stream (a file, stdin) to its end."""
        feed = self.source(name)
        while chunk := stream.read(BLOCK):
            feed.write(chunk)
        feed.close()

    def found(self) -> list[Hit]:
        """The hits in the order of the table (the more specific signatures first)."""
        order = {s.id: i for i, s in enumerate(self.signatures)}
        return sorted(self.hits.values(), key=lambda h: order[h.signature.id])

    def search(self, source: str, data: bytes, first_line: int) -> None:
        """Search one block of whole lines, the first of them numbered ``first_line``: only the patterns
        whose literal (:func:`~envcheck.doctor.signatures.needle`) the block holds are run, over the
        block decoded once, when the first of them is."""
        present = {n: n in data for n in self._needles}
        text: str | None = None
        for signature, gated in self._gated:
            found = [p for p, n in gated if present[n]]
            if not found:
                continue
            text = data.decode("utf-8", "replace") if text is None else text
            found = [p for p in found if p.search(text) is not None]
            if not found:
                continue
            hit = self.hits.setdefault(signature.id, Hit(signature))
            if len(hit.lines) >= self.keep:
                hit.count += sum(1 for p in found for _ in p.finditer(text))
                continue
            spans = sorted(m.span() for p in found for m in p.finditer(text))
            hit.count += len(spans)
            for start, end in spans:
                if len(hit.lines) >= self.keep:
                    break
                line = _line_at(source, text, start, end, first_line)
                if all((kept.source, kept.number) != (source, line.number) for kept in hit.lines):
                    hit.lines.append(line)


class Feed:
    """One source's bytes on their way to the scanner, held until a block of whole lines is there."""

    def __init__(self, scanner: Scanner, name: str) -> None:
        self.scanner = scanner
        self.name = name
        self._pending: list[bytes] = []
        self._size = 0
        self._next_line = 1

    def write(self, data: bytes) -> None:
        if not data:
            return
        self._pending.append(data)
        self._size += len(data)
        self.scanner.bytes += len(data)
        if self._size >= BLOCK:
            self._flush(final=False)

    def close(self) -> None:
        self._flush(final=True)

    def _flush(self, *, final: bool) -> None:
        data = b"".join(self._pending)
        rest = b""
        if not final:
            cut = data.rfind(b"\n") + 1
            if cut == 0 and len(data) < MAX_LINE:
                self._pending = [data]  # one long line still growing: wait for its end
                return
            cut = cut or len(data)
            data, rest = data[:cut], data[cut:]
        self._pending, self._size = ([rest], len(rest)) if rest else ([], 0)
        if not data:
            return
        self.scanner.search(self.name, data, self._next_line)
        newlines = data.count(b"\n")
        self._next_line += newlines
        self.scanner.lines += newlines + (1 if final and not data.endswith(b"\n") else 0)


def _line_at(source: str, text: str, start: int, end: int, first_line: int) -> Line:
    """The line around a match, cut to :data:`LINE_CHARS` around it where it is longer."""
    begin = text.rfind("\n", 0, start) + 1
    finish = text.find("\n", end)
    finish = len(text) if finish == -1 else finish
    number = first_line + text.count("\n", 0, begin)
    line = text[begin:finish].rstrip("\r")
    if len(line) > LINE_CHARS:
        middle = (start - begin + end - begin) // 2
        low = max(0, min(middle - LINE_CHARS // 2, len(line) - LINE_CHARS))
        line = ("…" if low else "") + line[low : low + LINE_CHARS] + ("…" if low + LINE_CHARS < len(line) else "")
    return Line(source, number, line)
