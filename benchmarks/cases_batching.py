"""Issue 13: the store with batching on, beside the same store without it and the raw redis-py
pool, at several concurrencies, interleaved in one run.

`python -m benchmarks.cases_batching [--quick]` starts a private redis-server (pinned apart from
this process, as the main runner does) and prints, per operation and concurrency, ops/s of
each contender, the cost ratios ours/floor (floor ops/s over ours: below 1 ours is cheaper),
client CPU per call and the transport's mean batch size. A report, never a test.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

from greentic_session.backends.redis.store import RedisSessionStore
from greentic_session.fence import lookup_slot
from greentic_session.testing import BACKENDS, RedisServer

from .harness import Budget, Contender, Summary, gc_paused, rotations, run_concurrently
from .payloads import HEADLINE_SIZE, Population
from .runner import pin_cpus

OPS = ("get", "find_by_user", "update", "create")
USERS = 256


def _open(url: str, namespace: str, backend_id: str) -> RedisSessionStore:
    backend = next(b for b in BACKENDS if b.id == backend_id)
    store = backend.open(redis_url=url, namespace=namespace, max_connections=256)
    assert isinstance(store, RedisSessionStore)
    return store


class Rig:
    def __init__(self, url: str, pop: Population) -> None:
        namespace = f"bench-batching-{uuid.uuid4().hex}"
        self.pop = pop
        self.batched = _open(url, namespace, "redis")
        self.plain = _open(url, namespace, "redis-unbatched")
        self.raw = aioredis.Redis.from_url(url, max_connections=256)
        self.keys: list[str] = []
        self.blob_keys: list[str] = []
        self.pointers: list[str] = []

    async def populate(self) -> None:
        for ctx, data, user in zip(self.pop.ctxs, self.pop.datas, self.pop.users, strict=True):
            key = await self.plain.create_session(ctx, data)
            self.keys.append(key)
            self.blob_keys.append(self.plain.keys.session(key))
            self.pointers.append(self.plain.keys.user(lookup_slot(ctx, user)))

    def contenders(self, op: str) -> list[Contender]:
        pop, n = self.pop, self.pop.count

        def ours(store: RedisSessionStore) -> Callable[[int], Any]:
            if op == "get":
                return lambda i: store.get_session(self.keys[i % n])
            if op == "find_by_user":
                return lambda i: store.find_by_user(pop.ctxs[i % n], pop.users[i % n])
            if op == "update":
                return lambda i: store.update_session(self.keys[i % n], pop.datas[i % n])
            return lambda i: store.create_session(pop.ctxs[i % n], pop.datas[i % n])

        raw = self.raw

        async def floor(i: int) -> None:
            j = i % n
            if op in ("get", "find_by_user"):
                await raw.get(self.blob_keys[j])
            elif op == "update":
                await raw.set(self.blob_keys[j], pop.blobs[j])
            else:
                pipe = raw.pipeline(transaction=True)
                pipe.set(f"{self.plain.keys.session_prefix}{uuid.uuid4()}", pop.blobs[j])
                pipe.set(self.pointers[j], "x")
                await pipe.execute()

        label = {"get": "GET", "find_by_user": "GET", "update": "SET", "create": "MULTI SET+SET"}
        return [
            Contender("ours batched", "ours", ours(self.batched)),
            Contender("ours unbatched", "peer", ours(self.plain)),
            Contender(f"floor: redis-py pool {label[op]}", "floor", floor),
        ]

    async def close(self) -> None:
        for store in (self.batched, self.plain):
            await store.aclose()
        await self.raw.aclose()


async def measure(url: str, rounds: int, ops: int, concurrencies: tuple[int, ...]) -> None:
    pop = Population(HEADLINE_SIZE, USERS)
    rig = Rig(url, pop)
    await rig.populate()
    print(f"{'op':13} {'c':>4} {'contender':34} {'ops/s':>9} {'cpu us':>7} {'ratio':>6}")
    try:
        for op in OPS:
            contenders = rig.contenders(op)
            for concurrency in concurrencies:
                rates: dict[str, list[float]] = {c.label: [] for c in contenders}
                cpu: dict[str, list[float]] = {c.label: [] for c in contenders}
                for c in contenders:  # warm-up: pools and batch connections full
                    await run_concurrently(c.op, Budget(200, 30.0), concurrency)
                for order in rotations(contenders, rounds):
                    for c in order:
                        with gc_paused():
                            started = time.process_time()
                            done, elapsed = await run_concurrently(
                                c.op, Budget(ops, 2.0), concurrency
                            )
                            cpu[c.label].append((time.process_time() - started) / done * 1e6)
                        rates[c.label].append(done / (elapsed / 1e9))
                floor = Summary.of(rates[contenders[-1].label]).median
                for c in contenders:
                    rate = Summary.of(rates[c.label]).median
                    print(
                        f"{op:13} {concurrency:>4} {c.label:34} {rate:>9.0f} "
                        f"{Summary.of(cpu[c.label]).median:>7.1f} {floor / rate:>6.2f}"
                    )
        batch = rig.batched._redis.batch
        if batch is not None:
            stats = batch.stats()
            print(f"batched store transport: {stats}")
    finally:
        await rig.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.cases_batching", description=__doc__
    )
    parser.add_argument("--quick", action="store_true", help="fewer rounds and calls")
    args = parser.parse_args(argv)
    gc.freeze()
    rounds, ops = (3, 1500) if args.quick else (6, 4000)
    with RedisServer() as server:
        print(pin_cpus(server.pid))
        asyncio.run(measure(server.url, rounds, ops, (1, 16, 64, 256)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
