"""Redis Cluster: the store on a cluster beside the same store on one node, interleaved in one run.

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
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from greentic_session import SessionBackendConfig, create_session_store
from greentic_session.backends.redis.store import RedisSessionStore
from greentic_session.testing import LocalCluster, RedisServer

from .harness import Budget, Summary, gc_paused, rotations, run_concurrently
from .payloads import HEADLINE_SIZE, Population
from .wire import server_cpu_seconds

OPS = ("get", "find_by_user", "update", "create")
USERS = 256
C1_TARGET = 1.15
SINGLE, ONE_MASTER, THREE_MASTERS = "single node", "cluster, 1 master", "cluster, 3 masters"


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


def _pin_apart(servers: list[RedisServer]) -> str:
    """Pin this process to one CPU and every server (all its threads) to the others, as
    `server.pin_cpus` does for the bench's own server: servers started by a pinned process
    would otherwise share its one CPU, and unpinned ones wander (two latency levels)."""
    if not hasattr(os, "sched_setaffinity"):
        return "none (unsupported)"
    every = set(range(os.cpu_count() or 1))
    mine = min(os.sched_getaffinity(0))
    others = every - {mine}
    if not others:
        return "none (one CPU)"
    os.sched_setaffinity(0, {mine})
    for server in servers:
        if server.pid is not None:
            for task in Path(f"/proc/{server.pid}/task").iterdir():
                os.sched_setaffinity(int(task.name), others)
    return f"benchmark on CPU {mine}, redis-servers on CPUs {sorted(others)}"


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


async def measure(
    urls: dict[str, list[str]],
    rounds: int,
    ops: int,
    *,
    tick: Callable[[], None] = lambda: None,
) -> list[dict[str, Any]]:
    """One row per operation and store: c=1 rates of the single node and the 3-master cluster,
    c=64 rates of the 1-master and the 3-master cluster (`urls` keyed by LABELS)."""
    pop = Population(HEADLINE_SIZE, USERS)
    namespace = f"bench-cluster-{uuid.uuid4().hex[:8]}:session"
    single = Store(
        SINGLE, _open(SessionBackendConfig.redis_url(urls[SINGLE][0], namespace=namespace)), pop
    )
    one, three = (
        Store(
            label, _open(SessionBackendConfig.redis_cluster(urls[label], namespace=namespace)), pop
        )
        for label in (ONE_MASTER, THREE_MASTERS)
    )
    rows: list[dict[str, Any]] = []
    try:
        for s in (single, one, three):
            await s.populate()
        for op in OPS:
            for concurrency, stores in ((1, [single, three]), (64, [one, three])):
                n = ops // 4 if concurrency == 1 else ops
                measured = await _rates(stores, op, concurrency, rounds, n)
                busiest = {}
                if concurrency == 64:
                    for s in stores:
                        busiest[s.label] = await _busiest_master_us(s, urls[s.label], op, n)
                rows += [
                    {
                        "section": "cluster",
                        "op": op,
                        "size": HEADLINE_SIZE,
                        "label": label,
                        "concurrency": concurrency,
                        "ops_per_s": rate,
                        "busiest_master_cpu_us": busiest.get(label),
                    }
                    for label, rate in measured.items()
                ]
                tick()
    finally:
        for s in (single, one, three):
            await s.store.aclose()
    return rows


async def _busiest_master_us(store: Store, masters: list[str], op: str, ops: int) -> float:
    """Server CPU per call (µs) of the busiest master while `store` runs `op` at c=64: what
    bounds a cluster's throughput once the clients do not."""
    clients = [aioredis.Redis.from_url(url) for url in masters]
    try:
        before = [await server_cpu_seconds(client) for client in clients]
        done, _ = await run_concurrently(store.op(op), Budget(ops, 2.0), 64)
        after = [await server_cpu_seconds(client) for client in clients]
    finally:
        for client in clients:
            await client.aclose()
    return max(a - b for a, b in zip(after, before, strict=True)) / done * 1e6


def render_cluster_table(rows: list[dict[str, Any]]) -> str:
    """Per operation: c=1 latency on the 3-master cluster over the single node (target 1.15);
    c=64 throughput of 3 masters over 1, and the busiest master's CPU per call on each (what
    more masters divide)."""
    cluster_rows = [r for r in rows if r["section"] == "cluster"]
    rate = {(r["op"], r["label"], r["concurrency"]): r["ops_per_s"] for r in cluster_rows}
    busiest = {
        (r["op"], r["label"]): r.get("busiest_master_cpu_us")
        for r in cluster_rows
        if r["concurrency"] == 64
    }
    if not rate:
        return ""
    lines = [
        "Redis Cluster: c=1 latency, 3 masters vs a single node; c=64 ops/s, 1 vs 3,",
        "and the busiest master's server CPU per call (us) at c=64",
        f"  {'op':13} {'single us':>10} {'cluster us':>11} {'ratio':>6} {'target':>7} "
        f"{'1 master/s':>11} {'3 masters/s':>12} {'3/1':>5} {'cpu 1m':>7} {'cpu 3m':>7}",
    ]
    for op in OPS:
        us_single = 1e6 / rate[(op, SINGLE, 1)]
        us_three = 1e6 / rate[(op, THREE_MASTERS, 1)]
        ratio = us_three / us_single
        mark = "met" if ratio <= C1_TARGET else "MISSED"
        one, three = rate[(op, ONE_MASTER, 64)], rate[(op, THREE_MASTERS, 64)]
        cpu_one = busiest.get((op, ONE_MASTER)) or float("nan")
        cpu_three = busiest.get((op, THREE_MASTERS)) or float("nan")
        lines.append(
            f"  {op:13} {us_single:>10.1f} {us_three:>11.1f} {ratio:>6.2f} {mark:>7} "
            f"{one:>11.0f} {three:>12.0f} {three / one:>5.2f} {cpu_one:>7.1f} {cpu_three:>7.1f}"
        )
    return "\n".join(lines)


def cluster_ticks() -> int:
    return len(OPS) * 2


async def run_cluster_cases(
    rounds: int, ops: int, *, tick: Callable[[], None] = lambda: None
) -> list[dict[str, Any]]:
    """The cluster rows: a private single node and two private clusters, every server pinned
    apart from this process (`_pin_apart`), so the three differ only in being a cluster."""
    with (
        RedisServer() as single,
        LocalCluster(masters=1) as one,
        LocalCluster(masters=3) as three,
    ):
        _pin_apart([single, *one.nodes, *three.nodes])
        urls = {
            SINGLE: [single.url],
            ONE_MASTER: one.startup_urls,
            THREE_MASTERS: three.startup_urls,
        }
        return await measure(urls, rounds, ops, tick=tick)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cases_cluster", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rounds and calls")
    args = parser.parse_args(argv)
    gc.freeze()
    rounds, ops = (3, 2000) if args.quick else (5, 6000)
    started = time.monotonic()
    rows = asyncio.run(run_cluster_cases(rounds, ops))
    print(render_cluster_table(rows))
    print(f"done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
