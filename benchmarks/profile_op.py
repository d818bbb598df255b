"""Profile one contender of one case with pyinstrument, to find where a missed target's time goes.

    python -m benchmarks.profile_op redis update                 # ours, 4 KiB, concurrency 1
    python -m benchmarks.profile_op redis get --concurrency 64
    python -m benchmarks.profile_op redis get --concurrency 64 --split   # CPU per call by part
    python -m benchmarks.profile_op memory create --label "floor: dict+encode"

Runs the same contenders as the benchmark (after a warm-up) under the sampling profiler and
prints the call tree. `--split` prints instead where one call's client CPU goes, by part of the
stack (transport, codec, fence, event loop...: the profile's samples outside the idle wait,
grouped by source file, scaled to the CPU per call of an unprofiled run of the same calls), and
the server's side of it (`INFO cpu` and `INFO commandstats` per call: the Lua scripts' time is
the `evalsha` row). A private redis-server is started (and pinned apart) unless --redis-url is
given.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Iterator, Sequence
from typing import Any

from pyinstrument import Profiler
from pyinstrument.frame import Frame

from .cases_memory import MEMORY_OPS, memory_contenders
from .cases_redis import BUILDERS, REDIS_OPS, Rig
from .harness import Budget, Contender, gc_paused, run_concurrently
from .payloads import HEADLINE_SIZE, Population
from .server import redis_target
from .wire import command_deltas, commandstats, server_cpu_seconds

# Parts of a call's client CPU, by the source file a sample's innermost Python frame is in (C
# code, hiredis or msgspec, counts where it is called from). The first part that matches wins.
# A coroutine's frame also costs self time each time a reply resumes the chain of awaits
# through it, so layers of `await` show up in the part that holds them.
PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("idle: waiting in epoll (not CPU)", ("/selectors.py",)),
    ("transport: batching + hiredis", ("redis/transport.py", "redis/connection.py")),
    ("transport: redis-py", ("site-packages/redis/",)),
    ("socket send/recv (asyncio)", ("asyncio/selector_events.py",)),
    ("event loop: tasks, futures", ("asyncio/",)),
    ("codec: msgspec + write check", ("greentic_session/codec.py", "greentic_session/schema.py")),
    ("fence", ("greentic_session/fence.py",)),
    (
        "caller: retries, gate, errors",
        ("redis/caller.py", "redis/errors.py", "redis/time_limits.py"),
    ),
    ("store: keys, scripts, calls", ("greentic_session/",)),
    ("benchmark loop", ("benchmarks/",)),
)
OTHER = "other"
IDLE = PARTS[0][0]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_op")
    parser.add_argument("backend", choices=["redis", "memory"])
    parser.add_argument("op", choices=sorted(set(REDIS_OPS) | set(MEMORY_OPS)))
    parser.add_argument("--label", default="ours", help="contender label (default: ours)")
    parser.add_argument("--size", type=int, default=HEADLINE_SIZE)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--redis-url", metavar="URL")
    parser.add_argument("--interval", type=float, default=0.0001, help="sampling interval, s")
    parser.add_argument(
        "--split", action="store_true", help="CPU per call by part of the stack (see module doc)"
    )
    return parser.parse_args(argv)


def _parts(frame: Frame, outer: str) -> Iterator[tuple[str, Frame]]:
    """Every real frame below `frame` with its part; a C function's (`<built-in>`) is its
    caller's."""
    part = outer if frame.file_path == "<built-in>" else _part(frame.file_path)
    yield part, frame
    for child in frame.children:
        if not child.is_synthetic:
            yield from _parts(child, part)


def _part(path: str | None) -> str:
    where = (path or "").replace("\\", "/")
    for name, needles in PARTS:
        if any(needle in where for needle in needles):
            return name
    return OTHER


def split_samples(root: Frame | None) -> dict[str, float]:
    """Seconds of self time per part of `PARTS` (and `OTHER`)."""
    out: dict[str, float] = {}
    if root is None:
        return out
    for part, frame in _parts(root, OTHER):
        out[part] = out.get(part, 0.0) + frame.total_self_time
    return out


async def _profile(c: Contender, args: argparse.Namespace) -> Profiler:
    await c.prepare(1000)
    await run_concurrently(c.op, Budget(1000, 60.0), args.concurrency)
    await c.finish()
    await c.prepare(args.calls)
    profiler = Profiler(interval=args.interval, async_mode="disabled")
    profiler.start()
    done, elapsed = await run_concurrently(c.op, Budget(args.calls, 120.0), args.concurrency)
    profiler.stop()
    await c.finish()
    print(
        f"{args.backend} {args.op} [{c.label}] {args.size} B, concurrency {args.concurrency}: "
        f"{done} calls, {elapsed / done / 1000:.1f} us per call under the profiler"
    )
    return profiler


async def _unprofiled(c: Contender, args: argparse.Namespace, rig: Rig) -> dict[str, Any]:
    """Client CPU, server CPU and server command time per call, without the profiler."""
    await c.prepare(args.calls)
    srv0, stats0 = await server_cpu_seconds(rig.client), await commandstats(rig.client)
    with gc_paused():
        cpu0 = time.process_time()
        done, elapsed = await run_concurrently(c.op, Budget(args.calls, 120.0), args.concurrency)
        cpu = time.process_time() - cpu0
    srv, stats = await server_cpu_seconds(rig.client), await commandstats(rig.client)
    await c.finish()
    calls, usec = command_deltas(stats0, stats, done)
    return {
        "calls": done,
        "ops_per_s": done / (elapsed / 1e9),
        "client_us": cpu / done * 1e6,
        "server_us": (srv - srv0) / done * 1e6,
        "commands": calls,
        "command_us": usec,
    }


def print_split(profiler: Profiler, measured: dict[str, Any]) -> None:
    parts = split_samples(profiler.last_session.root_frame() if profiler.last_session else None)
    busy = sum(seconds for part, seconds in parts.items() if part != IDLE)
    client = measured["client_us"]
    print(
        f"unprofiled: {measured['ops_per_s']:,.0f} ops/s; client CPU {client:.1f} us per call, "
        f"server CPU {measured['server_us']:.1f} us per call"
    )
    print(f"{'part of the client':<36} {'share':>6} {'us/call':>8}")
    for part in [*(name for name, _ in PARTS[1:]), OTHER]:
        seconds = parts.get(part, 0.0)
        if seconds:
            share = seconds / busy
            print(f"{part:<36} {share:>6.1%} {share * client:>8.1f}")
    idle = parts.get(IDLE, 0.0)
    print(f"({IDLE}: {idle / (busy + idle):.0%} of the profiled wall time)")
    print(
        "server, per call: "
        + ", ".join(
            f"{name} x{count:g} {measured['command_us'][name]:.1f} us"
            for name, count in measured["commands"].items()
        )
    )


def _pick(contenders: list[Contender], label: str) -> Contender:
    for c in contenders:
        if c.label == label:
            return c
    raise SystemExit(f"no contender {label!r}; have: {', '.join(c.label for c in contenders)}")


async def _run(args: argparse.Namespace, url: str | None) -> None:
    pop = Population(args.size, 64)
    if args.backend == "memory":
        profiler = await _profile(_pick(await memory_contenders(args.op, pop), args.label), args)
        print(profiler.output_text(unicode=False, color=False))
        return
    assert url is not None
    pool = max(64, args.concurrency)
    namespace = f"bench:profile:{int(time.time())}:{args.op}"
    rig = await Rig.open(url, namespace, pop, max_connections=pool)
    try:
        contender = _pick(BUILDERS[args.op](rig), args.label)
        profiler = await _profile(contender, args)
        if args.split:
            print_split(profiler, await _unprofiled(contender, args, rig))
        else:
            print(profiler.output_text(unicode=False, color=False))
    finally:
        await rig.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.backend == "memory":
        asyncio.run(_run(args, None))
        return 0
    with redis_target(args.redis_url, pin=True) as target:
        asyncio.run(_run(args, target.url))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
