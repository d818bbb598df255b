"""Case 10: sealed stores against plain ones. What encryption at rest (and zstd) costs a store's
`get_session` and `update_session`, and the bytes a session takes in Redis.

Per backend (Redis, batched as the tests open it, on the run's server; the in-memory store),
three stores of the same kind run interleaved on the same 64 sessions, each session a realistic
4 KiB chat history (`cases_sealing.chat_history_data`, the payload compression is judged on):

- plain:           neither option (the floor these rows are held to);
- encrypted:       `encryption=` a one-key ring (AES-256-GCM);
- encrypted+zstd:  `encryption=` and `compression="zstd"`.

Reported per (backend, op, mode): median latency at concurrency 1 (Redis: per call; memory:
per-call mean of batches, as case 3), ops/s at concurrency 64 (median over rounds) and client
CPU per call there. The verdict is on the cost ratio sealed/plain at both concurrencies (latency
medians; plain's ops/s over sealed's), target at most 1.15. The section runs twice the profile's
rounds: the ratios are what it is for, and it is short.

Bytes per session (Redis): for plain, zstd only, encrypted and encrypted+zstd, 64 sessions of the
chat history created through the store in their own namespace: the stored blob's length
(STRLEN) and `MEMORY USAGE` summed over every key the namespace holds (blob, user pointer, and a
sealing store's record key), per session.

Part of `python -m benchmarks` (section "sealing-store"); also runs alone, against a private
pinned redis-server: `python -m benchmarks.cases_sealing_store [--quick] [--redis-url URL]`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from typing import Any

from greentic_session import SessionKey, SessionStore, TenantCtx, encode_session_data
from greentic_session.backends.redis import RedisSessionStore
from greentic_session.sealing import Encryption
from greentic_session.testing import BACKENDS

from .cases_sealing import chat_history_data
from .harness import Contender, Summary, batched_async_latency, latency, rates
from .payloads import HEADLINE_SIZE, size_label
from .server import RedisTarget, run_alone
from .settings import Profile
from .stores import delete_namespace, open_redis_store

__all__ = [
    "SEALED_STORE_TARGET",
    "render_sealing_store_table",
    "run_sealing_store_cases",
    "sealing_store_ticks",
]

SECTION = "sealing-store"
BACKEND_NAMES = ("redis", "memory")
OPS = ("get", "update")
MODES = ("plain", "encrypted", "encrypted+zstd")
BYTES_MODES = ("plain", "zstd", "encrypted", "encrypted+zstd")
SEALED_STORE_TARGET = 1.15  # sealed cost / plain cost, per op and concurrency
USERS = 64
ROUNDS_FACTOR = 2


def sealing_store_ticks(profile: Profile) -> int:
    """Progress ticks: per backend and op, the c=1 rounds and the c=64 rounds; then bytes."""
    return len(BACKEND_NAMES) * len(OPS) * 2 * ROUNDS_FACTOR * profile.rounds + 1


def _options(mode: str, ring: Encryption) -> dict[str, Any]:
    options: dict[str, dict[str, Any]] = {
        "plain": {},
        "zstd": {"compression": "zstd"},
        "encrypted": {"encryption": ring},
        "encrypted+zstd": {"encryption": ring, "compression": "zstd"},
    }
    return options[mode]


def _open(backend: str, mode: str, ring: Encryption, url: str, namespace: str) -> SessionStore:
    options = _options(mode, ring)
    if backend == "redis":
        return open_redis_store(url, namespace, **options)
    row = next(b for b in BACKENDS if b.id == "memory")
    return row.open(namespace=namespace, **options)


class _Side:
    """One mode's store and its sessions."""

    def __init__(self, store: SessionStore, namespace: str) -> None:
        self.store, self.namespace = store, namespace
        self.ctxs = [TenantCtx.new("dev", "tenant-1", user=f"user-{i}") for i in range(USERS)]
        self.datas = [chat_history_data(HEADLINE_SIZE, f"user-{i}") for i in range(USERS)]
        self.ids: list[SessionKey] = []

    async def populate(self) -> None:
        for ctx, data in zip(self.ctxs, self.datas, strict=True):
            key = await self.store.create_session(ctx, data)
            if await self.store.get_session(key) != data:
                raise AssertionError("a sealed store does not read back what it wrote")
            self.ids.append(key)

    def contender(self, op: str, label: str) -> Contender:
        store, ids, datas = self.store, self.ids, self.datas

        async def get(i: int) -> None:
            await store.get_session(ids[i % USERS])

        async def update(i: int) -> None:
            j = i % USERS
            await store.update_session(ids[j], datas[j])

        return Contender(
            label, "floor" if label == "plain" else "ours", get if op == "get" else update
        )


async def _close(sides: dict[str, _Side]) -> None:
    for side in sides.values():
        store = side.store
        if isinstance(store, RedisSessionStore) and store.client is not None:
            await delete_namespace(store.client, side.namespace)
        await store.aclose()


async def _timed(
    backend: str,
    url: str,
    ring: Encryption,
    profile: Profile,
    tick: Callable[[], None],
) -> list[dict[str, Any]]:
    run = uuid.uuid4().hex[:8]
    sides = {
        mode: _Side(
            _open(backend, mode, ring, url, f"bench:{run}:{mode.replace('+', '-')}"),
            f"bench:{run}:{mode.replace('+', '-')}",
        )
        for mode in MODES
    }
    rounds = ROUNDS_FACTOR * profile.rounds
    rows: list[dict[str, Any]] = []
    try:
        for side in sides.values():
            await side.populate()
        blob_bytes = len(encode_session_data(sides["plain"].datas[0]))
        for op in OPS:
            contenders = [side.contender(op, mode) for mode, side in sides.items()]
            if backend == "redis":
                lat = await latency(
                    contenders,
                    rounds=rounds,
                    ops=profile.redis_latency_ops,
                    seconds=profile.redis_latency_seconds,
                    warmup=profile.redis_warmup,
                    tick=tick,
                )
                c1 = {label: [float(x) for x in xs] for label, xs in lat.samples.items()}
                tput_ops, tput_seconds = (
                    profile.redis_throughput_ops,
                    profile.redis_throughput_seconds,
                )
            else:
                c1 = await batched_async_latency(
                    contenders,
                    rounds=rounds,
                    batches=profile.memory_batches,
                    batch=profile.memory_batch,
                    seconds=profile.memory_seconds,
                    warmup=200,
                    tick=tick,
                )
                tput_ops = profile.memory_batches * profile.memory_batch
                tput_seconds = profile.memory_seconds
            tput = await rates(
                contenders,
                rounds=rounds,
                ops=tput_ops,
                seconds=tput_seconds,
                concurrency=profile.concurrency,
                warmup=profile.redis_warmup,
                tick=tick,
            )
            rows += [
                {
                    "section": SECTION,
                    "backend": backend,
                    "op": op,
                    "size": HEADLINE_SIZE,
                    "blob_bytes": blob_bytes,
                    "label": c.label,
                    "role": c.role,
                    "concurrency": profile.concurrency,
                    "latency_ns": Summary.of(c1[c.label]).as_dict(),
                    "ops_per_s": Summary.of(tput.ops_per_s[c.label]).as_dict(),
                    "client_cpu_ns": Summary.of(tput.client_cpu_ns[c.label]).as_dict(),
                }
                for c in contenders
            ]
    finally:
        await _close(sides)
    return rows


async def _bytes(url: str, ring: Encryption) -> list[dict[str, Any]]:
    """Per mode: the stored blob's length and Redis's bytes per session over all its keys."""
    run = uuid.uuid4().hex[:8]
    rows: list[dict[str, Any]] = []
    for mode in BYTES_MODES:
        namespace = f"bench:{run}:bytes:{mode.replace('+', '-')}"
        store = _open("redis", mode, ring, url, namespace)
        assert isinstance(store, RedisSessionStore)
        side = _Side(store, namespace)
        client = store.client
        assert client is not None  # a single-node store has one
        try:
            await side.populate()
            value = await client.strlen(store.keys.session(side.ids[0]))
            total = keys = 0
            async for key in client.scan_iter(match=f"{namespace}:*", count=1000):
                total += await client.memory_usage(key, samples=0) or 0
                keys += 1
            rows.append(
                {
                    "section": SECTION,
                    "backend": "redis",
                    "op": "bytes",
                    "size": HEADLINE_SIZE,
                    "label": mode,
                    "role": "floor" if mode == "plain" else "ours",
                    "plain_blob_bytes": len(encode_session_data(side.datas[0])),
                    "stored_blob_bytes": int(value),
                    "keys_per_session": keys / USERS,
                    "redis_bytes_per_session": total / USERS,
                }
            )
        finally:
            await delete_namespace(client, namespace)
            await store.aclose()
    return rows


async def run_sealing_store_cases(
    url: str, profile: Profile, *, tick: Callable[[], None] = lambda: None
) -> list[dict[str, Any]]:
    """The section's rows: timed rows per (backend, op, mode), then bytes rows per mode."""
    ring = Encryption({"bench-1": os.urandom(32)}, "bench-1")
    rows: list[dict[str, Any]] = []
    for backend in BACKEND_NAMES:
        rows += await _timed(backend, url, ring, profile, tick)
    rows += await _bytes(url, ring)
    tick()
    return rows


def sealed_ratios(rows: list[dict[str, Any]]) -> list[tuple[str, str, str, float, float]]:
    """(backend, op, mode, c=1 ratio, c=64 ratio) for every sealed mode: its cost over plain's."""
    timed = {
        (r["backend"], r["op"], r["label"]): r
        for r in rows
        if r["section"] == SECTION and r["op"] in OPS
    }
    out = []
    for (backend, op, mode), row in timed.items():
        plain = timed.get((backend, op, "plain"))
        if mode == "plain" or plain is None:
            continue
        c1 = row["latency_ns"]["median"] / plain["latency_ns"]["median"]
        c64 = plain["ops_per_s"]["median"] / row["ops_per_s"]["median"]
        out.append((backend, op, mode, c1, c64))
    return out


def render_sealing_store_table(rows: list[dict[str, Any]]) -> str:
    """The timed rows with their ratios and verdicts, then bytes per session."""
    timed = [r for r in rows if r["section"] == SECTION and r["op"] in OPS]
    if not timed:
        return ""
    ratios = {(b, op, m): (c1, c64) for b, op, m, c1, c64 in sealed_ratios(rows)}
    limit = SEALED_STORE_TARGET
    lines = [
        "",
        f"Sealed stores, {size_label(HEADLINE_SIZE)} chat history: get and update, sealed/plain "
        f"cost ratios at c=1 (median latency) and c={timed[0]['concurrency']} (ops/s) "
        f"(target: <= {limit:.2f})",
        f"{'backend':<7} {'op':<6} {'mode':<15} {'c=1 us':>8} {'ratio':>6} {'c=64 ops/s':>10} "
        f"{'ratio':>6} {'cpu us':>7}  verdict",
    ]
    for row in timed:
        key = (row["backend"], row["op"], row["label"])
        c1, c64 = ratios.get(key, (None, None))
        verdict = ""
        if c1 is not None and c64 is not None:
            verdict = "met" if max(c1, c64) <= limit else "MISSED"
        lines.append(
            f"{row['backend']:<7} {row['op']:<6} {row['label']:<15} "
            f"{row['latency_ns']['median'] / 1e3:>8.1f} {'' if c1 is None else f'{c1:.2f}':>6} "
            f"{row['ops_per_s']['median']:>10,.0f} {'' if c64 is None else f'{c64:.2f}':>6} "
            f"{row['client_cpu_ns']['median'] / 1e3:>7.1f}  {verdict}"
        )
    stored = [r for r in rows if r["section"] == SECTION and r["op"] == "bytes"]
    if stored:
        plain = next((r for r in stored if r["label"] == "plain"), stored[0])
        lines += [
            "",
            "Bytes per session in Redis (64 sessions of the chat history): the stored blob, and "
            "MEMORY USAGE over all its keys",
            f"{'mode':<15} {'blob B':>7} {'of plain':>8} {'keys':>5} {'Redis B':>8} "
            f"{'of plain':>8}",
        ]
        for r in stored:
            lines.append(
                f"{r['label']:<15} {r['stored_blob_bytes']:>7,} "
                f"{100 * r['stored_blob_bytes'] / plain['stored_blob_bytes']:>7.0f}% "
                f"{r['keys_per_session']:>5.1f} {r['redis_bytes_per_session']:>8,.0f} "
                f"{100 * r['redis_bytes_per_session'] / plain['redis_bytes_per_session']:>7.0f}%"
            )
    return "\n".join(lines)


async def _run(target: RedisTarget, profile: Profile) -> list[dict[str, Any]]:
    return await run_sealing_store_cases(target.url, profile)


def main(argv: list[str] | None = None) -> int:
    return run_alone(
        argv,
        prog="python -m benchmarks.cases_sealing_store",
        doc=__doc__ or "",
        run=_run,
        render=render_sealing_store_table,
    )


if __name__ == "__main__":
    raise SystemExit(main())
