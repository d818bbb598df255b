"""What every command shares: the `Context` it runs in (the connection, the key layout, Ctrl-C
and the progress line), the `Report` it returns (an exit code, a JSON-able result, the lines of
its table, and an optional one-line message for stderr; printing is `app`'s business), the exit
codes, and the helpers that build a report.

The commands: `inspection` (get, find, stats), `maintenance` (check, repair, purge), `transfer`
(export, import), `copy` (copy-to-cluster) and `reseal`.

Every blob's content is read through `Context.open`: the run's `Sealer` (keyring.py) opens it,
then the codec decodes it. The two failures stay apart: a blob that does not open (encrypted
without the key, another key, altered, moved, plaintext an encrypting ring refuses) is never
repaired, since the data may be fine; one that opens but does not decode is corrupt.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, NamedTuple

from ..codec import decode_session_data
from ..errors import InternalError, InvalidInputError, NotFoundError, SessionError, UnavailableError
from ..fence import team_segment
from ..schema import SessionData
from .keyring import Sealing
from .layout import Layout
from .walk import Connection, Progress, Stop, Walker

__all__ = [
    "BATCH",
    "Context",
    "ExitCode",
    "Opened",
    "Report",
    "chunks",
    "finish",
    "session_error_code",
    "table",
    "team_label",
    "try_decode",
    "walk_summary",
]


class ExitCode(IntEnum):
    """The exit codes a script can test (documented in `--help` and docs/cli.md)."""

    OK = 0
    PROBLEMS = 1  # check found problems; records skipped; deletions refused (changed meanwhile)
    USAGE = 2  # bad arguments or bad input; nothing was written
    UNAVAILABLE = 3  # cannot connect, authenticate, or Redis failed mid-way
    NOT_FOUND = 4  # get/find: no such session
    INTERRUPTED = 130  # Ctrl-C: the summary so far was printed


@dataclass
class Report:
    code: int
    result: dict[str, Any]
    lines: list[str] = field(default_factory=list)
    message: str | None = None  # one line for stderr


class Opened(NamedTuple):
    """A stored blob's content: its data and JSON, or None and why not (naming no content)."""

    data: SessionData | None
    plain: bytes | None  # the codec's JSON, when the blob opened
    problem: str | None
    sealed: bool = False  # the problem is that it does not open (never a repair's business)


@dataclass
class Context:
    conn: Connection
    layout: Layout
    stop: Stop
    progress: Progress
    sealing: Sealing

    def walker(self, label: str) -> Walker:
        return Walker(self.conn, self.layout, stop=self.stop, progress=self.progress, label=label)

    def open(self, key: str, raw: bytes) -> Opened:
        """Session `key`'s stored `raw` bytes, opened with this run's sealer and decoded."""
        problem: str | None = None
        plain = b""
        try:
            plain = self.sealing.sealer.open(raw, session_key=key, limit=self.sealing.limit)
        except InternalError as exc:
            problem = exc.message
        if problem is not None:
            # The sealer names the key first; callers show the key in a column of its own.
            head = f"session {key!r}: "
            return Opened(None, None, problem.removeprefix(head), sealed=True)
        data, problem = try_decode(plain)
        return Opened(data, plain if data is not None else None, problem)


BATCH = 1000


def table(headers: list[str], rows: Iterable[Iterable[object]]) -> list[str]:
    cells = [headers, *([str(cell) for cell in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in cells
    ]


def team_label(team: str | None) -> str:
    """How a report shows a team: "-" for none, as in the key layout."""
    return team_segment(team)


def try_decode(blob: bytes) -> tuple[SessionData | None, str | None]:
    """A stored blob's data, or None and why it is corrupt."""
    try:
        return decode_session_data(blob), None
    except InvalidInputError as exc:
        return None, exc.message


def chunks(items: list[Any], size: int = BATCH) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def walk_summary(walker: Walker) -> dict[str, Any]:
    return {
        "scanned": walker.scanned,
        "vanished": walker.vanished,
        "interrupted": walker.interrupted,
    }


def finish(report: Report, walker: Walker) -> Report:
    """`report`, marked interrupted if Ctrl-C ended its walk early."""
    if walker.interrupted:
        report.lines.append("(interrupted: the figures cover the keys walked so far)")
        report.code = ExitCode.INTERRUPTED
        report.message = "interrupted"
    return report


def session_error_code(exc: SessionError) -> int:
    """The exit code for a command that failed with `exc`."""
    if isinstance(exc, InvalidInputError):
        return ExitCode.USAGE
    if isinstance(exc, NotFoundError):
        return ExitCode.NOT_FOUND
    if isinstance(exc, UnavailableError) or exc.code.value in ("permission_denied",):
        return ExitCode.UNAVAILABLE
    return ExitCode.PROBLEMS
