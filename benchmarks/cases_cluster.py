"""Issue 11: the store on a Redis Cluster beside the same store on one node, interleaved in one run.

`python -m benchmarks.cases_cluster [--quick]` starts a private single redis-server, a 1-master
and a 3-master cluster (`greentic_session.testing.LocalCluster`), and prints per operation:
- at concurrency 1, the mean latency on the 3-master cluster and on the single node, and their
  ratio (target: at most 1.15);
- at concurrency 64, ops/s on the 1-master and the 3-master cluster, and their ratio (the
  server side is what more masters add; on this 2-core machine the client and three servers
  share two cores, so the ratio says what that costs as much as what it gains).
Both transports' default (batched) store; 4 KiB payloads, 256 users. A report, never a test.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
import uuid
from collections.abc import Callable
from typing import Any

from greentic_session import SessionBackendConfig, create_session_store
from greentic_session.backends.redis.store import RedisSessionStore
from greentic_session.testing import LocalCluster, RedisServer

from .harness import Budget, Summary, gc_paused, rotations, run_concurrently
from .payloads import HEADLINE_SIZE, Population

OPS = ("get", "find_by_user", "update", "create")
USERS = 256
C1_TARGET = 1.15


class Store:
    """One store under test and the session keys it holds for the population."""

    def __init__(self, label: str, store: RedisSessionStore, pop: Population) -> None:
        self.label, self.store, self.pop = label, store, pop
        self.keys: list[str] = []

    async def populate(self) -> None:
        for ctx, data in zip(self.pop.ctxs, self.pop.datas, strict=True):
            self.keys.append(await self.store.create_session(ctx, data))

    def op(self, name: str) -> Callable[[int], Any]:
        store, pop, keys, n = self.store, self.pop, self.keys, self.pop.count
        if name == "get":
            return lambda i: store.get_session(keys[i % n])
        if name == "find_by_user":
            return lambda i: store.find_by_user(pop.ctxs[i % n], pop.users[i % n])
        if name == "update":
            return lambda i: store.update_session(keys[i % n], pop.datas[i % n])
        return lambda i: store.create_session(pop.ctxs[i % n], pop.datas[i % n])


def _open(config: SessionBackendConfig) -> RedisSessionStore:
    store = create_session_store(config)
    assert isinstance(store, RedisSessionStore)
    return store


async def _rates(
    stores: list[Store], op: str, concurrency: int, rounds: int, ops: int
) -> dict[str, float]:
    """Median ops/s of each store for `op` at `concurrency`, interleaved rounds."""
    rates: dict[str, list[float]] = {s.label: [] for s in stores}
    for s in stores:  # warm-up: connections open, scripts cached
        await run_concurrently(s.op(op), Budget(200, 30.0), concurrency)
    for order in rotations(stores, rounds):
        for s in order:
            with gc_paused():
                done, elapsed = await run_concurrently(s.op(op), Budget(ops, 2.0), concurrency)
            rates[s.label].append(done / (elapsed / 1e9))
    return {label: Summary.of(values).median for label, values in rates.items()}


async def measure(urls: dict[str, list[str]], rounds: int, ops: int) -> list[str]:
    pop = Population(HEADLINE_SIZE, USERS)
    namespace = f"bench-cluster-{uuid.uuid4().hex[:8]}:session"
    single = Store(
        "single node",
        _open(SessionBackendConfig.redis_url(urls["single"][0], namespace=namespace)),
        pop,
    )
    clusters = {
        label: Store(
            label, _open(SessionBackendConfig.redis_cluster(urls[label], namespace=namespace)), pop
        )
        for label in ("cluster, 1 master", "cluster, 3 masters")
    }
    three, one = clusters["cluster, 3 masters"], clusters["cluster, 1 master"]
    lines = [
        f"{'op':13} {'single c=1 us':>14} {'3 masters c=1 us':>17} {'ratio':>6} "
        f"{'1 master c=64/s':>16} {'3 masters c=64/s':>17} {'3/1':>5}"
    ]
    try:
        for s in (single, one, three):
            await s.populate()
        for op in OPS:
            c1 = await _rates([single, three], op, 1, rounds, ops // 4)
            c64 = await _rates([one, three], op, 64, rounds, ops)
            us_single, us_three = 1e6 / c1[single.label], 1e6 / c1[three.label]
            ratio = us_three / us_single
            mark = "met" if ratio <= C1_TARGET else "MISSED"
            lines.append(
                f"{op:13} {us_single:>14.1f} {us_three:>17.1f} {ratio:>6.2f} "
                f"{c64[one.label]:>16.0f} {c64[three.label]:>17.0f} "
                f"{c64[three.label] / c64[one.label]:>5.2f}  (c=1 target {C1_TARGET}: {mark})"
            )
            print(lines[-1], flush=True)
    finally:
        for s in (single, one, three):
            await s.store.aclose()
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cases_cluster", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rounds and calls")
    args = parser.parse_args(argv)
    gc.freeze()
    rounds, ops = (3, 2000) if args.quick else (5, 6000)
    started = time.monotonic()
    with (
        RedisServer() as server,
        LocalCluster(masters=1) as one,
        LocalCluster(masters=3) as three,
    ):
        urls = {
            "single": [server.url],
            "cluster, 1 master": one.startup_urls,
            "cluster, 3 masters": three.startup_urls,
        }
        print(f"{'':13} (4 KiB payloads, {USERS} users, {rounds} interleaved rounds)")
        lines = asyncio.run(measure(urls, rounds, ops))
    print(lines[0])
    print(f"done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
