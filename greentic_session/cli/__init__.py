"""The `greentic-session` operator CLI (`python -m greentic_session`); see docs/cli.md."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import IO, TextIO

__all__ = ["main"]


def main(
    argv: Sequence[str] | None = None,
    *,
    stdin: IO[bytes] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run the CLI with `argv` (default: the process's); returns the exit code."""
    try:
        from .app import main as run
    except ModuleNotFoundError as exc:  # redis-py is an extra: say so instead of a traceback
        if exc.name is None or exc.name.partition(".")[0] != "redis":
            raise
        (stderr or sys.stderr).write(
            "greentic-session: the CLI needs redis-py: pip install 'greentic-session[redis]'\n"
        )
        return 2
    return run(argv, stdin=stdin, stdout=stdout, stderr=stderr)
