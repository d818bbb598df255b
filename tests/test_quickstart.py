"""The documented quickstart runs and prints its walk-through, in memory and on Redis."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

QUICKSTART = Path(__file__).resolve().parents[1] / "docs" / "examples" / "quickstart.py"
STEPS = ("create:", "get:", "find:", "update:", "remove:")


def run_quickstart(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(QUICKSTART), *args], capture_output=True, text=True, check=True
    )
    return done.stdout


def test_quickstart_prints_every_step_in_memory() -> None:
    """The in-memory walk-through prints create, get, find, update and remove in order."""
    out = run_quickstart()
    positions = [out.index(step) for step in STEPS]
    assert positions == sorted(positions)
    assert "InMemorySessionStore" in out


def test_quickstart_runs_against_redis(redis_url: str, namespace: str) -> None:
    """`--redis-url` runs the same walk-through on Redis."""
    out = run_quickstart("--redis-url", redis_url, "--namespace", namespace)
    assert all(step in out for step in STEPS)
    assert "RedisSessionStore" in out
