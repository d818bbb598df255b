"""Profile one contender of one case with pyinstrument, to find where a missed target's time goes.

    python -m benchmarks.profile_op redis update                 # ours, 4 KiB, concurrency 1
    python -m benchmarks.profile_op redis get --concurrency 64
    python -m benchmarks.profile_op memory create --label "floor: dict+encode"

Runs the same contenders as the benchmark (after a warm-up) under the sampling profiler and
prints the call tree. A private redis-server is started unless --redis-url is given.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence

from pyinstrument import Profiler

from greentic_session.testing import RedisServer

from .cases_memory import MEMORY_OPS, memory_contenders
from .cases_redis import BUILDERS, REDIS_OPS, Rig
from .harness import Budget, Contender, run_concurrently
from .payloads import HEADLINE_SIZE, Population
from .runner import pin_cpus


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
    return parser.parse_args(argv)


async def _profile(c: Contender, args: argparse.Namespace) -> None:
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
    print(profiler.output_text(unicode=False, color=False))


def _pick(contenders: list[Contender], label: str) -> Contender:
    for c in contenders:
        if c.label == label:
            return c
    raise SystemExit(f"no contender {label!r}; have: {', '.join(c.label for c in contenders)}")


async def _run(args: argparse.Namespace, url: str | None) -> None:
    pop = Population(args.size, 64)
    if args.backend == "memory":
        await _profile(_pick(await memory_contenders(args.op, pop), args.label), args)
        return
    assert url is not None
    rig = await Rig.open(url, f"bench:profile:{int(time.time())}:{args.op}", pop)
    try:
        await _profile(_pick(BUILDERS[args.op](rig), args.label), args)
    finally:
        await rig.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.backend == "memory" or args.redis_url:
        asyncio.run(_run(args, args.redis_url))
        return 0
    with RedisServer() as server:
        pin_cpus(server.pid)
        asyncio.run(_run(args, server.url))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
