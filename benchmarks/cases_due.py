"""Deadlines on Redis: what `due_in` adds to register_wait, and how fast due waits come out.

`python -m benchmarks.cases_due [--quick] [--redis-url URL]` (a private pinned redis-server
unless a URL is given) prints four rows, the store opened from the backend table's batched row:
- register_wait at concurrency 1 with `due_in` beside the same call without it (interleaved
  rounds; target: with at most 1.10x without), 4 KiB payloads, users re-registering their wait;
- due waits delivered per second by one process with `claim_due_waits(limit=100)`, claims only,
  and claims each followed by its settles (sent together), over a backlog of due waits, at 256 B
  and 4 KiB payloads;
- the server's CPU per claimed wait (the same claim-only run);
- the delay from `due_at` to delivery (p50, p99) under `watch_due_waits(poll=0.1)`, for waits
  coming due at a steady rate (the server's clock and this machine's are the same clock here).
A report, never a test.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
import uuid
from typing import Any

import redis.asyncio as aioredis

from greentic_session import ReplyScope, SessionKey
from greentic_session.backends.redis.store import RedisSessionStore

from .cases_redis import delete_namespace, open_redis_store
from .harness import Contender, Summary, latency
from .payloads import HEADLINE_SIZE, Population, size_label
from .server import RedisTarget, run_alone
from .settings import Profile
from .wire import server_cpu_seconds

__all__ = ["render_due_table", "run_due_cases"]

USERS = 64
DELIVERY_SIZES = (256, HEADLINE_SIZE)  # the claim's reply carries every claimed session
REGISTER_TARGET = 1.10
SCOPE = ReplyScope(conversation="bench:chat")
Rows = list[dict[str, Any]]


async def _register_rows(url: str, profile: Profile) -> Rows:
    pop = Population(HEADLINE_SIZE, USERS)
    namespace = f"bench-due:{uuid.uuid4().hex[:8]}"
    store = open_redis_store(url, namespace)
    raw = aioredis.Redis.from_url(url)
    keys = [SessionKey(f"wait-{user}") for user in pop.users]

    def register(due_in: float | None) -> Any:
        def op(i: int) -> Any:
            n = i % USERS
            return store.register_wait(
                pop.ctxs[n], pop.users[n], SCOPE, keys[n], pop.datas[n], due_in=due_in
            )

        return op

    try:
        measured = await latency(
            [
                Contender("without due_in", "ours", register(None)),
                Contender("with due_in", "ours", register(3600.0)),
            ],
            rounds=profile.rounds * 2,
            ops=profile.redis_latency_ops,
            seconds=profile.redis_latency_seconds,
            warmup=profile.redis_warmup,
            server_cpu=lambda: server_cpu_seconds(raw),
        )
    finally:
        await store.aclose()
        await delete_namespace(raw, namespace)
        await raw.aclose()
    rows = []
    for label, samples in measured.samples.items():
        summary = Summary.of(samples)
        rows.append(
            {
                "case": f"register_wait c=1, {label}",
                "mean_us": summary.mean / 1000,
                "p50_us": summary.median / 1000,
                "p99_us": summary.p99 / 1000,
                "server_cpu_us": (measured.server_cpu_ns[label] or 0) / 1000,
            }
        )
    rows[1]["ratio"] = rows[1]["mean_us"] / rows[0]["mean_us"]
    return rows


async def _backlog(store: RedisSessionStore, pop: Population, count: int, tag: str) -> None:
    """`count` waits due (almost) now, in chunks of concurrent registrations."""

    async def one(i: int) -> None:
        n = i % USERS
        scope = ReplyScope(conversation=f"bench:{tag}:{i}")
        key = SessionKey(f"{tag}-{i}")
        await store.register_wait(pop.ctxs[n], pop.users[n], scope, key, pop.datas[n], due_in=0.001)

    for at in range(0, count, 500):
        await asyncio.gather(*(one(i) for i in range(at, min(count, at + 500))))


async def _delivery_rows(url: str, profile: Profile) -> Rows:
    backlog = 5_000 if profile.name == "quick" else 20_000
    rows = []
    for size, settle in itertools.product(DELIVERY_SIZES, (False, True)):
        pop = Population(size, USERS)
        namespace = f"bench-due:{uuid.uuid4().hex[:8]}"
        store = open_redis_store(url, namespace)
        raw = aioredis.Redis.from_url(url)
        try:
            await _backlog(store, pop, backlog, "b")
            await asyncio.sleep(0.01)  # let every deadline pass by the server's clock
            cpu0, t0, delivered = await server_cpu_seconds(raw), time.perf_counter(), 0
            while batch := await store.claim_due_waits(limit=100, lease=300):
                delivered += len(batch)
                if settle:
                    await asyncio.gather(*(store.settle_due(due) for due in batch))
            elapsed = time.perf_counter() - t0
            cpu = await server_cpu_seconds(raw) - cpu0
        finally:
            await store.aclose()
            await delete_namespace(raw, namespace)
            await raw.aclose()
        rows.append(
            {
                "case": ("claim + settle" if settle else "claim only")
                + f", limit=100, {size_label(size)}",
                "delivered": delivered,
                "per_second": delivered / elapsed,
                "server_cpu_us_per_wait": cpu * 1e6 / delivered,
            }
        )
    return rows


async def _delay_rows(url: str, profile: Profile) -> Rows:
    """Waits come due at a steady rate over a window; one watcher (poll 0.1 s) delivers them."""
    pop = Population(HEADLINE_SIZE, USERS)
    count, window = (300, 3.0) if profile.name == "quick" else (1_000, 10.0)
    namespace = f"bench-due:{uuid.uuid4().hex[:8]}"
    store = open_redis_store(url, namespace)
    raw = aioredis.Redis.from_url(url)
    delays: list[float] = []
    try:

        async def one(i: int) -> None:
            n = i % USERS
            scope = ReplyScope(conversation=f"bench:delay:{i}")
            await store.register_wait(
                pop.ctxs[n],
                pop.users[n],
                scope,
                SessionKey(f"delay-{i}"),
                pop.datas[n],
                due_in=0.5 + window * i / count,
            )

        await asyncio.gather(*(one(i) for i in range(count)))
        watcher = store.watch_due_waits(limit=100, lease=30, poll=0.1)
        try:
            async with asyncio.timeout(window + 30):
                async for due in watcher:
                    delays.append(time.time() - due.due_at)
                    await store.settle_due(due)
                    if len(delays) == count:
                        break
        finally:
            await watcher.aclose()
    finally:
        await store.aclose()
        await delete_namespace(raw, namespace)
        await raw.aclose()
    summary = Summary.of(delays)
    return [
        {
            "case": "due_at to delivery, watch_due_waits(poll=0.1)",
            "delivered": count,
            "p50_ms": summary.median * 1000,
            "p99_ms": summary.p99 * 1000,
        }
    ]


async def run_due_cases(target: RedisTarget, profile: Profile) -> Rows:
    rows = await _register_rows(target.url, profile)
    rows += await _delivery_rows(target.url, profile)
    rows += await _delay_rows(target.url, profile)
    return rows


def render_due_table(rows: Rows) -> str:
    lines = ["", "Deadlines (Redis, batched transport; 4 KiB payloads unless said)"]
    for row in rows:
        case = row["case"]
        if "mean_us" in row:
            ratio = f", {row['ratio']:.2f}x without" if "ratio" in row else ""
            lines.append(
                f"  {case}: mean {row['mean_us']:.1f} us, p50 {row['p50_us']:.1f} us, "
                f"p99 {row['p99_us']:.1f} us, server CPU {row['server_cpu_us']:.1f} us{ratio}"
                + (f" (target <= {REGISTER_TARGET:.2f}x)" if "ratio" in row else "")
            )
        elif "per_second" in row:
            lines.append(
                f"  {case}: {row['per_second']:,.0f} waits/s over {row['delivered']:,}, "
                f"server CPU {row['server_cpu_us_per_wait']:.1f} us per wait"
            )
        else:
            lines.append(
                f"  {case}: p50 {row['p50_ms']:.0f} ms, p99 {row['p99_ms']:.0f} ms "
                f"over {row['delivered']:,} waits"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    return run_alone(
        argv,
        prog="python -m benchmarks.cases_due",
        doc=__doc__ or "",
        run=run_due_cases,
        render=render_due_table,
    )


if __name__ == "__main__":
    sys.exit(main())
