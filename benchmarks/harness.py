"""Timing and statistics shared by every case.

Rules every measurement follows:
- `time.perf_counter_ns` only; warm-up calls before the first timed round.
- Contenders of one operation run in interleaved rounds (A B C, B C A, C A B, ...) so that
  machine drift and noisy neighbours hit all of them alike; samples are pooled over rounds.
- The cyclic garbage collector is off inside timed loops (a collection runs before each loop),
  so a collection triggered by one contender's garbage is never billed to another.
- Untimed `prepare`/`finish` hooks build and clean up each batch's state outside the clock.
"""

from __future__ import annotations

import asyncio
import gc
import math
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

__all__ = [
    "AsyncOp",
    "Budget",
    "Contender",
    "Latency",
    "Rates",
    "Role",
    "Summary",
    "SyncContender",
    "batched_async_latency",
    "batched_sync_latency",
    "latency",
    "rates",
    "rotations",
    "run_concurrently",
]

Role = Literal["ours", "floor", "peer", "seed"]
AsyncOp = Callable[[int], Awaitable[Any]]
T = TypeVar("T")


async def _nothing(_n: int = 0) -> None:
    return None


@dataclass
class Contender:
    """One implementation of one operation.

    `op(i)` is the timed call for index `i` of a batch; `prepare(n)` readies indices `0..n-1`
    (untimed) and `finish()` cleans up after the batch (untimed). `writes()`, for a contender on
    an auto-pipelining transport, returns its (socket writes, requests written) so far, from
    which `rates` reports the mean batch size.
    """

    label: str
    role: Role
    op: AsyncOp
    prepare: Callable[[int], Awaitable[None]] = _nothing
    finish: Callable[[], Awaitable[None]] = _nothing
    writes: Callable[[], tuple[int, int]] | None = None


@dataclass
class SyncContender:
    """A synchronous call timed in batches (codec cases)."""

    label: str
    role: Role
    op: Callable[[], Any]


@dataclass(frozen=True, slots=True)
class Summary:
    """Order statistics of a set of samples, in nanoseconds (or ops/s for throughput)."""

    n: int
    median: float
    p99: float
    mean: float
    minimum: float
    maximum: float

    @classmethod
    def of(cls, samples: Sequence[float]) -> Summary:
        if not samples:
            raise ValueError("no samples")
        ordered = sorted(samples)
        return cls(
            n=len(ordered),
            median=quantile(ordered, 0.5),
            p99=quantile(ordered, 0.99),
            mean=math.fsum(ordered) / len(ordered),
            minimum=ordered[0],
            maximum=ordered[-1],
        )

    def as_dict(self) -> dict[str, float]:
        return {
            "n": self.n,
            "median": self.median,
            "p99": self.p99,
            "mean": self.mean,
            "min": self.minimum,
            "max": self.maximum,
        }


def quantile(ordered: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile of already sorted samples."""
    pos = (len(ordered) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def rotations(items: Sequence[T], rounds: int) -> Iterator[list[T]]:
    """`rounds` orderings of `items`, each rotated one further: ABC, BCA, CAB, ABC, ..."""
    k = len(items)
    for r in range(rounds):
        s = r % k
        yield [*items[s:], *items[:s]]


@contextmanager
def gc_paused() -> Iterator[None]:
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@dataclass
class Budget:
    ops: int
    seconds: float
    deadline_ns: int = field(init=False, default=0)

    def start(self) -> None:
        self.deadline_ns = time.perf_counter_ns() + int(self.seconds * 1e9)


async def _warm(contenders: Sequence[Contender], warmup: int) -> None:
    for c in contenders:
        await c.prepare(warmup)
        for i in range(warmup):
            await c.op(i)
        await c.finish()


@dataclass
class Latency:
    """Per-call samples (ns) per contender, and CPU per call over all timed calls."""

    samples: dict[str, list[int]]
    client_cpu_ns: dict[str, float]  # this process's CPU time per call
    server_cpu_ns: dict[str, float | None]  # the server's, when a probe is given


async def latency(
    contenders: Sequence[Contender],
    *,
    rounds: int,
    ops: int,
    seconds: float,
    warmup: int,
    server_cpu: Callable[[], Awaitable[float]] | None = None,
    tick: Callable[[], None] = lambda: None,
) -> Latency:
    """Per-call latency at concurrency 1: each call timed on its own.

    Each round gives every contender up to `ops` calls or `seconds`, whichever ends first.
    `server_cpu()` (seconds of server CPU so far) is read before and after each timed loop, so
    the server's CPU per call is known too (it includes the one probe call per loop).
    """
    await _warm(contenders, warmup)
    samples: dict[str, list[int]] = {c.label: [] for c in contenders}
    cpu: dict[str, int] = dict.fromkeys(samples, 0)
    srv: dict[str, float] = dict.fromkeys(samples, 0.0)
    clock, cpu_clock = time.perf_counter_ns, time.process_time_ns
    for order in rotations(contenders, rounds):
        for c in order:
            await c.prepare(ops)
            out = samples[c.label]
            op = c.op
            srv0 = await server_cpu() if server_cpu else 0.0
            with gc_paused():
                cpu0 = cpu_clock()
                deadline = clock() + int(seconds * 1e9)
                for i in range(ops):
                    t0 = clock()
                    await op(i)
                    t1 = clock()
                    out.append(t1 - t0)
                    if t1 > deadline:
                        break
                cpu[c.label] += cpu_clock() - cpu0
            if server_cpu:
                srv[c.label] += await server_cpu() - srv0
            await c.finish()
        tick()
    return Latency(
        samples,
        {k: cpu[k] / len(v) for k, v in samples.items()},
        {k: (srv[k] * 1e9 / len(v) if server_cpu else None) for k, v in samples.items()},
    )


async def batched_async_latency(
    contenders: Sequence[Contender],
    *,
    rounds: int,
    batches: int,
    batch: int,
    seconds: float,
    warmup: int,
    tick: Callable[[], None] = lambda: None,
) -> dict[str, list[float]]:
    """Per-call latency of sub-microsecond-to-microsecond coroutines, timed `batch` calls at a time.

    A sample is one batch's elapsed time divided by `batch`, so the timer's own cost is spread
    over the batch; median and p99 are over those per-batch means. Each round gives every
    contender up to `batches` batches or `seconds`, whichever ends first.
    """
    await _warm(contenders, warmup)
    samples: dict[str, list[float]] = {c.label: [] for c in contenders}
    clock = time.perf_counter_ns
    for order in rotations(contenders, rounds):
        for c in order:
            await c.prepare(batches * batch)
            out = samples[c.label]
            op = c.op
            with gc_paused():
                deadline = clock() + int(seconds * 1e9)
                i = 0
                for _ in range(batches):
                    t0 = clock()
                    for j in range(i, i + batch):
                        await op(j)
                    t1 = clock()
                    out.append((t1 - t0) / batch)
                    i += batch
                    if t1 > deadline:
                        break
            await c.finish()
        tick()
    return samples


def batched_sync_latency(
    contenders: Sequence[SyncContender],
    *,
    rounds: int,
    batches: int,
    batch: int,
    seconds: float,
    warmup: int,
    tick: Callable[[], None] = lambda: None,
) -> dict[str, list[float]]:
    """Like `batched_async_latency`, for plain functions."""
    for c in contenders:
        for _ in range(warmup):
            c.op()
    samples: dict[str, list[float]] = {c.label: [] for c in contenders}
    clock = time.perf_counter_ns
    for order in rotations(contenders, rounds):
        for c in order:
            out = samples[c.label]
            op = c.op
            with gc_paused():
                deadline = clock() + int(seconds * 1e9)
                for _ in range(batches):
                    t0 = clock()
                    for _ in range(batch):
                        op()
                    t1 = clock()
                    out.append((t1 - t0) / batch)
                    if t1 > deadline:
                        break
        tick()
    return samples


async def run_concurrently(op: AsyncOp, budget: Budget, concurrency: int) -> tuple[int, int]:
    """Run up to `budget.ops` calls of `op` on `concurrency` tasks; (calls done, elapsed ns)."""
    next_index = 0
    clock = time.perf_counter_ns

    async def worker() -> None:
        nonlocal next_index
        while next_index < budget.ops and clock() < budget.deadline_ns:
            i = next_index
            next_index += 1
            await op(i)

    budget.start()
    t0 = clock()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = clock() - t0
    return next_index, elapsed


@dataclass
class Rates:
    """Per contender, one figure per round: ops/s, this process's CPU per call (ns), the server's
    CPU per call (ns, when a probe was given) and requests per socket write (contenders with
    `writes` only)."""

    ops_per_s: dict[str, list[float]]
    client_cpu_ns: dict[str, list[float]]
    server_cpu_ns: dict[str, list[float]]
    batch: dict[str, list[float]]


async def rates(
    contenders: Sequence[Contender],
    *,
    rounds: int,
    ops: int,
    seconds: float,
    concurrency: int,
    warmup: int,
    server_cpu: Callable[[], Awaitable[float]] | None = None,
    tick: Callable[[], None] = lambda: None,
) -> Rates:
    """`concurrency` tasks share each contender for up to `ops` calls or `seconds` a round.

    The warm-up runs at full concurrency too, so connection pools are full before timing.
    Client CPU is `time.process_time_ns` around the timed loop (the whole process: event loop,
    transport, codec); `server_cpu()` (seconds of server CPU so far) is read just before and
    after it, so the server's figure includes one probe call per round.
    """
    for c in contenders:
        await c.prepare(warmup)
        await run_concurrently(c.op, Budget(warmup, 60.0), concurrency)
        await c.finish()
    labels = [c.label for c in contenders]
    out = Rates(*({label: list[float]() for label in labels} for _ in range(4)))
    for order in rotations(contenders, rounds):
        for c in order:
            await c.prepare(ops)
            srv0 = await server_cpu() if server_cpu else 0.0
            writes0 = c.writes() if c.writes else (0, 0)
            with gc_paused():
                cpu0 = time.process_time_ns()
                done, elapsed = await run_concurrently(c.op, Budget(ops, seconds), concurrency)
                cpu = time.process_time_ns() - cpu0
            if server_cpu:
                out.server_cpu_ns[c.label].append((await server_cpu() - srv0) * 1e9 / done)
            if c.writes:
                writes, requests = (b - a for a, b in zip(writes0, c.writes(), strict=True))
                out.batch[c.label].append(requests / writes if writes else 0.0)
            await c.finish()
            out.ops_per_s[c.label].append(done / (elapsed / 1e9))
            out.client_cpu_ns[c.label].append(cpu / done)
        tick()
    return out


def latency_rows(
    section: str,
    op: str,
    *,
    size: int,
    blob_bytes: int,
    contenders: Sequence[Contender | SyncContender],
    lat: dict[str, list[float]],
) -> list[dict[str, Any]]:
    """One result row per contender for a latency-only case (in-memory and codec sections)."""
    return [
        {
            "section": section,
            "op": op,
            "size": size,
            "blob_bytes": blob_bytes,
            "label": c.label,
            "role": c.role,
            "latency_ns": Summary.of(lat[c.label]).as_dict(),
        }
        for c in contenders
    ]
