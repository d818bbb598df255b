"""The Redis server a run measures (a private, pinned `redis-server`, or one given by URL), and
running one case module alone against it."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from greentic_session.testing import RedisServer

from .settings import FULL, QUICK, Profile

__all__ = ["RedisTarget", "pin_cpus", "redis_target", "run_alone"]

Rows = list[dict[str, Any]]


@dataclass(frozen=True)
class RedisTarget:
    url: str
    private: bool
    pinning: str
    pid: int | None  # the private server's


@contextmanager
def redis_target(url: str | None, *, pin: bool) -> Iterator[RedisTarget]:
    """The given server, or a private one for the length of the run."""
    if url is not None:
        yield RedisTarget(url, False, "none (server given by --redis-url)", None)
        return
    with RedisServer() as server:
        pinning = pin_cpus(server.pid) if pin else "none (--no-pin)"
        yield RedisTarget(server.url, True, pinning, server.pid)


def pin_cpus(server_pid: int | None) -> str:
    """Pin this process to one CPU and the private redis-server (all its threads) to another.

    Unpinned, the scheduler moves the two between cores and a call's latency flips between two
    levels (on the 2-core reference machine: about 95 and 125 us for the same GET), which no
    amount of interleaving fully evens out. Pinned, each contender sees the same placement.
    """
    if server_pid is None or not hasattr(os, "sched_setaffinity"):
        return "none (unsupported)"
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return "none (one CPU)"
    mine, theirs = cpus[0], cpus[1]
    os.sched_setaffinity(0, {mine})
    for task in Path(f"/proc/{server_pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), {theirs})
    return f"benchmark on CPU {mine}, redis-server on CPU {theirs}"


def run_alone(
    argv: list[str] | None,
    *,
    prog: str,
    doc: str,
    run: Callable[[RedisTarget, Profile], Awaitable[Rows]],
    render: Callable[[Rows], str],
) -> int:
    """`python -m benchmarks.<case> [--quick] [--redis-url URL]`: one case module on its own,
    against a private pinned server unless a URL is given, its table printed."""
    parser = argparse.ArgumentParser(prog=prog, description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the short profile")
    parser.add_argument("--redis-url", metavar="URL", help="use this Redis (own namespace only)")
    args = parser.parse_args(argv)
    profile = QUICK if args.quick else FULL
    gc.collect()
    gc.freeze()  # as the runner does: the imports' objects are never garbage
    with redis_target(args.redis_url, pin=True) as target:
        print(f"pinning: {target.pinning}")
        rows = asyncio.run(run(target, profile))
    print(render(rows).lstrip("\n"))
    return 0
