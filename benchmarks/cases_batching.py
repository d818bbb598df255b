"""Case 6, batching: the batched store at concurrency 1 to 256 beside redis-py and aiogram.

The store with batching on, beside itself unbatched, the raw redis-py pool and aiogram,
interleaved in one run.

For get, update, find_by_user and create, 4 KiB payload, 256 users, at every concurrency of
the profile (the full run: 1, 16, 64 and 256), these contenders run in interleaved rounds (the
case's contenders are `cases_redis.BUILDERS`', so every row means what it means there):

- ours:            the store as the backend table's `redis` row opens it (batched, the default);
- ours unbatched:  the `redis-unbatched` row, redis-py's pool (`batching=False`);
- floor:           raw redis-py on the store's own pool (GET, SET, MULTI SET+SET), payload
                   pre-encoded; at concurrency 1 update and create also run `floor: GET`,
                   which the batching targets hold every operation to there;
- aiogram:         aiogram 3's `RedisStorage` (`get_data` / `set_data`).

Every redis-py pool (the floor's, the unbatched store's, aiogram's) has as many connections as
the largest concurrency, so no task waits for one; the batched store ignores `max_connections`
and writes on its own two shared connections.

Reported per contender and concurrency: ops/s (median of rounds) and the cost ratio ours / x
(x's ops/s over ours: below 1 ours is cheaper), this process's CPU per call
(`time.process_time`), the redis-server's CPU per call (`INFO cpu` used_cpu_user+sys, before
and after each timed loop) and, for ours, the mean batch (requests per socket write,
`BatchingPool.stats()`).

Part of `python -m benchmarks`; also runs alone: `python -m benchmarks.cases_batching [--quick]
[--redis-url URL]` (a private, pinned redis-server unless a URL is given).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

from .cases_redis import BUILDERS, Rig, open_redis_store
from .harness import Contender, Summary, rates
from .payloads import HEADLINE_SIZE, Population, size_label
from .settings import Profile
from .wire import server_cpu_seconds

__all__ = ["SWEEP_OPS", "batching_ticks", "render_batching_table", "run_batching_cases"]

SWEEP_OPS: tuple[str, ...] = ("get", "update", "find_by_user", "create")
USERS = 256
OURS = "ours"
UNBATCHED = "ours unbatched"
GET_FLOOR = "floor: GET"


def batching_ticks(profile: Profile) -> int:
    return len(SWEEP_OPS) * (len(profile.sweep_concurrency) * profile.sweep_rounds + 1)


def _writes(rig: Rig) -> Callable[[], tuple[int, int]]:
    """The batched store's (socket writes, requests written) so far."""

    def writes() -> tuple[int, int]:
        stats = rig.store.pool_stats()
        return stats.batches, stats.requests

    return writes


def sweep_contenders(rig: Rig, unbatched: Rig, op: str, concurrency: int) -> list[Contender]:
    """Ours (batched), ours unbatched, the floor and aiogram for `op`; at concurrency 1 also the
    raw GET every operation is held to there."""
    ours, floor, peer = (c for c in BUILDERS[op](rig) if c.role != "seed")
    plain = BUILDERS[op](unbatched)[0]
    out = [
        dataclasses.replace(ours, writes=_writes(rig)),
        dataclasses.replace(plain, label=UNBATCHED, role="peer"),
        floor,
        peer,
    ]
    if concurrency == 1 and floor.label != GET_FLOOR:
        out.append(next(c for c in BUILDERS["get"](rig) if c.label == GET_FLOOR))
    return out


async def run_batching_cases(
    url: str, profile: Profile, *, run_id: str = "alone", tick: Callable[[], None] = lambda: None
) -> list[dict[str, Any]]:
    """Every operation of `SWEEP_OPS` at every concurrency of the profile; a row per contender
    and concurrency."""
    rows: list[dict[str, Any]] = []
    pop = Population(HEADLINE_SIZE, USERS)
    pool_size = max(profile.sweep_concurrency)
    for op in SWEEP_OPS:
        namespace = f"bench:{run_id}:batching:{op}"
        rig = await Rig.open(url, namespace, pop, max_connections=pool_size)
        plain = open_redis_store(url, namespace, "redis-unbatched", max_connections=pool_size)
        tick()
        try:
            for concurrency in profile.sweep_concurrency:
                contenders = sweep_contenders(
                    rig, dataclasses.replace(rig, store=plain), op, concurrency
                )
                measured = await rates(
                    contenders,
                    rounds=profile.sweep_rounds,
                    ops=profile.sweep_ops,
                    seconds=profile.sweep_seconds,
                    concurrency=concurrency,
                    warmup=max(profile.redis_warmup, 2 * concurrency),
                    server_cpu=functools.partial(server_cpu_seconds, rig.client),
                    tick=tick,
                )
                rows += [
                    {
                        "section": "batching",
                        "op": op,
                        "size": HEADLINE_SIZE,
                        "blob_bytes": pop.blob_size,
                        "label": c.label,
                        "role": c.role,
                        "concurrency": concurrency,
                        "pool_size": pool_size,
                        "ops_per_s": Summary.of(measured.ops_per_s[c.label]).as_dict(),
                        "client_cpu_ns": Summary.of(measured.client_cpu_ns[c.label]).median,
                        "server_cpu_ns": Summary.of(measured.server_cpu_ns[c.label]).median,
                        "mean_batch": (
                            Summary.of(measured.batch[c.label]).median
                            if measured.batch[c.label]
                            else None
                        ),
                    }
                    for c in contenders
                ]
        finally:
            await plain.aclose()
            await rig.close()
    return rows


def sweep_row(
    rows: list[dict[str, Any]], op: str, concurrency: int, label: str
) -> dict[str, Any] | None:
    for row in rows:
        if row["section"] == "batching" and (row["op"], row["concurrency"], row["label"]) == (
            op,
            concurrency,
            label,
        ):
            return row
    return None


def cost(ours: dict[str, Any], other: dict[str, Any]) -> float:
    """Their ops/s over ours: time per operation, ours / theirs (below 1 ours is cheaper)."""
    return float(other["ops_per_s"]["median"]) / float(ours["ops_per_s"]["median"])


def render_batching_table(rows: list[dict[str, Any]]) -> str:
    """Per operation and concurrency: every contender's ops/s, ours/x, CPU per call, batch."""
    sweep = [r for r in rows if r["section"] == "batching"]
    if not sweep:
        return ""
    lines = [
        "",
        f"Batching, payload {size_label(HEADLINE_SIZE)}: ops/s with c tasks; ours/x ="
        " x's ops/s over ours (below 1.00 ours is cheaper); cpu/srv us = client/server CPU per "
        f"call; batch = requests per socket write; redis-py pools of {sweep[0]['pool_size']}",
        f"{'op':<13} {'c':>4} {'contender':<22} {'ops/s':>9} {'ours/x':>7} {'cpu us':>7} "
        f"{'srv us':>7} {'batch':>6}",
    ]
    for op in SWEEP_OPS:
        for concurrency in sorted({r["concurrency"] for r in sweep if r["op"] == op}):
            ours = sweep_row(sweep, op, concurrency, OURS)
            group = [r for r in sweep if r["op"] == op and r["concurrency"] == concurrency]
            if ours is None:
                continue
            for i, row in enumerate(group):
                ratio = "" if row is ours else f"{cost(ours, row):.2f}"
                batch = "" if row["mean_batch"] is None else f"{row['mean_batch']:.1f}"
                lines.append(
                    f"{op if i == 0 else '':<13} {concurrency if i == 0 else '':>4} "
                    f"{row['label']:<22} {row['ops_per_s']['median']:>9,.0f} {ratio:>7} "
                    f"{row['client_cpu_ns'] / 1e3:>7.1f} {row['server_cpu_ns'] / 1e3:>7.1f} "
                    f"{batch:>6}"
                )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from .server import run_alone  # here: the runner (which imports this module) uses it too

    return run_alone(
        argv,
        prog="python -m benchmarks.cases_batching",
        doc=__doc__,
        run=lambda target, profile: run_batching_cases(target.url, profile),
        render=render_batching_table,
    )


if __name__ == "__main__":
    raise SystemExit(main())
