"""The batching transport alone beside the raw redis-py pool.

Run: `python -m benchmarks.cases_transport` (`--help` for options).

Starts a private redis-server and runs GET and SET of a 4 KiB value and an EVALSHA (a script that
SETs a 4 KiB argument, like the store's update) at concurrency 1, 16, 64 and 256:

- transport: `BatchingPool` with `--connections` shared connections (default 2);
- redis-py:  `redis.asyncio.Redis` on its own pool with one connection per task (its best case),
             redis-py's retries off, as the store builds it.

Contenders run in interleaved rounds (order alternates each round), measured by `harness.rates`
as every concurrency sweep is. Reported per operation and concurrency: ops/s (median of rounds),
the transport's ratio to redis-py, client CPU per call (`time.process_time`), server CPU per call
(INFO used_cpu_*) and the transport's mean batch size (requests per socket write). The cyclic
collector is off inside timed loops.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from greentic_session.backends.redis.transport import BatchingPool
from greentic_session.testing import RedisServer

from .harness import Contender, Rates, rates
from .wire import server_cpu_seconds

VALUE = b"v" * 4096
KEYS = 64
SCRIPT = "redis.call('SET', KEYS[1], ARGV[1]) return 1"
CONCURRENCY = (1, 16, 64, 256)
OPS = ("get", "set", "evalsha")

Call = Callable[[int], Awaitable[Any]]


def calls(client: Any, op: str, sha: str, *, batched: bool) -> Call:
    keys = [f"bench:{i}" for i in range(KEYS)]
    if batched:
        pool: BatchingPool = client
        if op == "get":
            return lambda i: pool.execute("GET", keys[i % KEYS])
        if op == "set":
            return lambda i: pool.execute("SET", keys[i % KEYS], VALUE, write=True)
        return lambda i: pool.execute("EVALSHA", sha, 1, keys[i % KEYS], VALUE, write=True)
    redis: aioredis.Redis = client
    if op == "get":
        return lambda i: redis.execute_command("GET", keys[i % KEYS])  # type: ignore[no-untyped-call]
    if op == "set":
        return lambda i: redis.execute_command("SET", keys[i % KEYS], VALUE)  # type: ignore[no-untyped-call]
    return lambda i: redis.execute_command("EVALSHA", sha, 1, keys[i % KEYS], VALUE)  # type: ignore[no-untyped-call]


def _writes(pool: BatchingPool) -> Callable[[], tuple[int, int]]:
    def writes() -> tuple[int, int]:
        stats = pool.stats()
        return stats.batches, stats.requests

    return writes


async def bench(url: str, args: argparse.Namespace) -> dict[tuple[str, int], Rates]:
    """Per (operation, concurrency): both contenders' figures, one per round (`harness.rates`)."""
    admin = aioredis.Redis.from_url(url)
    sha: str = await admin.script_load(SCRIPT)
    await admin.mset({f"bench:{i}": VALUE for i in range(KEYS)})
    results: dict[tuple[str, int], Rates] = {}
    for concurrency in args.concurrency:
        pool = BatchingPool.from_url(url, connections=args.connections, socket_timeout=5.0)
        raw = aioredis.Redis.from_url(
            url, max_connections=concurrency, retry=Retry(NoBackoff(), 0), socket_timeout=None
        )
        ops = args.ops // 4 if concurrency == 1 else args.ops  # sequential calls: fewer suffice
        for op in args.ops_list:
            contenders = [
                Contender(
                    "transport", "ours", calls(pool, op, sha, batched=True), writes=_writes(pool)
                ),
                Contender("redis-py", "floor", calls(raw, op, sha, batched=False)),
            ]
            results[(op, concurrency)] = await rates(
                contenders,
                rounds=args.rounds,
                ops=max(ops, concurrency),
                seconds=60.0,
                concurrency=concurrency,
                warmup=max(concurrency, 200),
                server_cpu=functools.partial(server_cpu_seconds, admin),
            )
        await pool.aclose()
        await raw.aclose()
    await admin.aclose()
    return results


HUGE = b"h" * (8 * 1024 * 1024)
SLOW_SCRIPT = (
    "local t = redis.call('TIME') local stop = t[1] * 1e6 + t[2] + ARGV[1] "
    "repeat t = redis.call('TIME') until t[1] * 1e6 + t[2] >= stop return 1"
)


async def head_of_line(url: str, connections: int, load: str, seconds: float) -> list[float]:
    """Latencies (ms) of sequential small GETs while another task keeps `load` running:
    "none", "huge" (SET of an 8 MiB value, back to back) or "slow" (a 20 ms script)."""
    latencies: list[float] = []
    async with BatchingPool.from_url(url, connections=connections, socket_timeout=10.0) as pool:
        await asyncio.gather(*(pool.execute("PING") for _ in range(8)))  # open every connection
        stop = asyncio.Event()

        async def background() -> None:
            while not stop.is_set():
                if load == "huge":
                    await pool.execute("SET", "bench:huge", HUGE, write=True)
                elif load == "slow":
                    await pool.execute("EVAL", SLOW_SCRIPT, 0, 20_000)
                else:
                    return

        loader = asyncio.create_task(background())
        await asyncio.sleep(0.05)  # let the load start
        loop = asyncio.get_running_loop()
        until = loop.time() + seconds
        while loop.time() < until:
            started = time.perf_counter()
            await pool.execute("GET", "bench:0")
            latencies.append((time.perf_counter() - started) * 1e3)
        stop.set()
        await loader
    return latencies


async def head_of_line_report(url: str, seconds: float) -> str:
    lines = [
        "",
        "Small GET latency (ms) while another task loads the same pool:",
        "",
        "| load | connections | GETs | p50 | p99 | max |",
        "|---|---|---|---|---|---|",
    ]
    for load in ("none", "huge", "slow"):
        for connections in (1, 2):
            got = sorted(await head_of_line(url, connections, load, seconds))
            p50 = got[len(got) // 2]
            p99 = got[min(len(got) - 1, int(len(got) * 0.99))]
            lines.append(
                f"| {load} | {connections} | {len(got)} | {p50:.2f} | {p99:.2f} | {got[-1]:.2f} |"
            )
    return "\n".join(lines)


def report(results: dict[tuple[str, int], Rates], args: argparse.Namespace) -> str:
    lines = [
        f"transport (connections={args.connections}) vs redis-py pool (one connection per task),"
        f" 4 KiB values, {args.rounds} interleaved rounds, medians",
        "",
        "| op | c | transport ops/s | redis-py ops/s | ratio | client CPU/call us (t / r) "
        "| server CPU/call us (t / r) | mean batch |",
        "|---|---|---|---|---|---|---|---|",
    ]
    med = statistics.median
    for op in args.ops_list:
        for concurrency in args.concurrency:
            got = results[(op, concurrency)]
            ours_ops, raw_ops = (med(got.ops_per_s[k]) for k in ("transport", "redis-py"))
            cpu_t, cpu_r = (med(got.client_cpu_ns[k]) / 1e3 for k in ("transport", "redis-py"))
            srv_t, srv_r = (med(got.server_cpu_ns[k]) / 1e3 for k in ("transport", "redis-py"))
            lines.append(
                f"| {op} | {concurrency} | {ours_ops:,.0f} | {raw_ops:,.0f} "
                f"| {ours_ops / raw_ops:.2f}x | {cpu_t:.1f} / {cpu_r:.1f} "
                f"| {srv_t:.1f} / {srv_r:.1f} | {med(got.batch['transport']):.1f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ops", type=int, default=8192, help="calls per round and contender")
    parser.add_argument("--concurrency", type=int, nargs="+", default=list(CONCURRENCY))
    parser.add_argument("--op", dest="ops_list", nargs="+", default=list(OPS), choices=OPS)
    parser.add_argument("--redis-url", help="an existing server (default: start a private one)")
    parser.add_argument(
        "--head-of-line", type=float, default=1.0, help="seconds per head-of-line case (0: skip)"
    )
    args = parser.parse_args(argv)

    async def run(url: str) -> str:
        text = report(await bench(url, args), args)
        if args.head_of_line > 0:
            text += "\n" + await head_of_line_report(url, args.head_of_line)
        return text

    if args.redis_url:
        print(asyncio.run(run(args.redis_url)))
    else:
        with RedisServer() as server:
            print(asyncio.run(run(server.url)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
