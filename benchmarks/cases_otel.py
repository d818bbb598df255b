"""Case 5: what the OpenTelemetry instrumentation costs a call, with the SDK and no exporter.

The SDK is configured as a service that installed it but exports nothing would have it: a
`TracerProvider` with no span processor (spans are still sampled, built and ended) and a
`MeterProvider` with no reader. For `get_session` and `update_session` on the in-memory and the
Redis store, four contenders run the same call in interleaved rounds:

- plain:         the store's own methods (`uninstrument()` before the batch);
- instrumented:  the same calls after `SessionStoreInstrumentor().instrument(...)`;
- floor:         the plain call inside the least the SDK work can be: one span started with the
                 same attributes and ended, one histogram record. What `instrumented` costs
                 beyond it is the wrapper's own share (context switch-over, suppression check,
                 error handling); the rest is the SDK's;
- sampled:       instrumented, with the SDK's `ParentBased(TraceIdRatioBased(0.01))` sampler
                 (what a production service usually runs): unsampled spans cost far less.

Switching happens in the untimed `prepare`/`finish` hooks. Reported: the medians, the ratio
instrumented / plain (the target: at most 1.05) and the sampled one, the microseconds
added per call, and
the microseconds the wrapper adds beyond the SDK floor; for Redis also the client CPU time
added per call (steadier than latency on a busy machine).
In-memory calls are timed in batches (about a microsecond each), Redis calls one by one at
concurrency 1 against the run's redis-server.

Part of `python -m benchmarks`; also runs alone: `python -m benchmarks.cases_otel [--quick]
[--redis-url URL]` (a private redis-server unless a URL is given).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ParentBased, Sampler, TraceIdRatioBased
from opentelemetry.trace import SpanKind

from greentic_session import SessionKey, SessionStore
from greentic_session.backends.redis.store import RedisSessionStore
from greentic_session.otel import SessionStoreInstrumentor, _memory_calls, _redis_calls
from greentic_session.testing import BACKENDS

from .cases_redis import delete_namespace, open_redis_store
from .harness import Contender, Summary, batched_async_latency, latency
from .payloads import HEADLINE_SIZE, Population, size_label
from .settings import Profile

__all__ = ["OTEL_OPS", "TARGET", "otel_ticks", "render_otel_table", "run_otel_cases"]

OTEL_OPS: tuple[str, ...] = ("get", "update")
BACKEND_IDS: tuple[str, ...] = ("memory", "redis")
TARGET = 1.05  # instrumented / plain, median latency
USERS = 64
SAMPLED = "instrumented, 1% sampled"


def otel_ticks(profile: Profile) -> int:
    """Progress ticks this case makes (one per interleaved round)."""
    return len(BACKEND_IDS) * len(OTEL_OPS) * profile.rounds


def _switches(
    instrumented: bool, sampler: Sampler | None = None
) -> tuple[Callable[[int], Any], Callable[[], Any]]:
    """`prepare`/`finish` hooks that switch the instrumentation for one contender's batch."""
    instrumentor = SessionStoreInstrumentor()
    # No span processor, no metric reader: the SDK does all its work and exports nothing.
    tracer_provider, meter_provider = TracerProvider(sampler=sampler), MeterProvider()

    async def prepare(_n: int) -> None:
        if instrumented:
            instrumentor.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
        else:
            instrumentor.uninstrument()

    async def finish() -> None:
        instrumentor.uninstrument()

    return prepare, finish


def _contenders(
    store: SessionStore, op: str, ids: list[SessionKey], pop: Population
) -> list[Contender]:
    n = len(ids)
    if op == "get":

        async def call(i: int) -> Any:
            return await store.get_session(ids[i % n])

    else:

        async def call(i: int) -> Any:
            j = i % n
            await store.update_session(ids[j], pop.datas[j])

    plain_prepare, plain_finish = _switches(False)
    inst_prepare, inst_finish = _switches(True)
    sampled_prepare, sampled_finish = _switches(True, ParentBased(TraceIdRatioBased(0.01)))
    # The floor: the same span attributes the instrumentation would use, hand-applied.
    operation = "get_session" if op == "get" else "update_session"
    calls_of = _redis_calls if isinstance(store, RedisSessionStore) else _memory_calls
    target = calls_of(store)[operation]
    name, attributes = target.span_name, target.attributes
    tracer = TracerProvider().get_tracer("bench")
    record = MeterProvider().get_meter("bench").create_histogram("d", unit="s").record
    clock, client = time.perf_counter, SpanKind.CLIENT

    async def floor(i: int) -> Any:
        span = tracer.start_span(name, kind=client, attributes=attributes)
        start = clock()
        try:
            return await call(i)
        finally:
            span.end()
            record(clock() - start, attributes)

    return [
        Contender("plain", "floor", call, plain_prepare, plain_finish),
        Contender("instrumented", "ours", call, inst_prepare, inst_finish),
        Contender("floor: SDK span+record", "floor", floor, plain_prepare, plain_finish),
        Contender(SAMPLED, "ours", call, sampled_prepare, sampled_finish),
    ]


async def _open(backend_id: str, url: str, namespace: str) -> SessionStore:
    if backend_id == "redis":
        return open_redis_store(url, namespace)
    return next(b for b in BACKENDS if b.id == backend_id).open(namespace=namespace)


async def run_otel_cases(
    url: str, profile: Profile, *, tick: Callable[[], None] = lambda: None
) -> list[dict[str, Any]]:
    """One row per (backend, operation, contender), section "otel", at the headline payload."""
    pop = Population(HEADLINE_SIZE, USERS)
    rows: list[dict[str, Any]] = []
    for backend_id in BACKEND_IDS:
        namespace = f"bench:otel-{uuid.uuid4().hex[:8]}:session"
        store = await _open(backend_id, url, namespace)
        try:
            ids = [
                await store.create_session(c, d) for c, d in zip(pop.ctxs, pop.datas, strict=True)
            ]
            for op in OTEL_OPS:
                contenders = _contenders(store, op, ids, pop)
                lat: dict[str, list[float]]
                cpu: dict[str, float | None] = {c.label: None for c in contenders}
                if backend_id == "memory":
                    lat = await batched_async_latency(
                        contenders,
                        rounds=profile.rounds,
                        batches=profile.memory_batches,
                        batch=profile.memory_batch,
                        seconds=profile.memory_seconds,
                        warmup=200,
                        tick=tick,
                    )
                else:
                    measured = await latency(
                        contenders,
                        rounds=profile.rounds,
                        ops=profile.redis_latency_ops,
                        seconds=profile.redis_latency_seconds,
                        warmup=profile.redis_warmup,
                        tick=tick,
                    )
                    lat = {k: [float(v) for v in vs] for k, vs in measured.samples.items()}
                    cpu = dict(measured.client_cpu_ns)
                rows += [
                    {
                        "section": "otel",
                        "backend": backend_id,
                        "op": op,
                        "size": HEADLINE_SIZE,
                        "blob_bytes": pop.blob_size,
                        "label": c.label,
                        "role": c.role,
                        "latency_ns": Summary.of(lat[c.label]).as_dict(),
                        "client_cpu_ns": cpu[c.label],
                    }
                    for c in contenders
                ]
        finally:
            SessionStoreInstrumentor().uninstrument()
            if backend_id == "redis":
                client = getattr(store, "client", None)
                if client is not None:
                    await delete_namespace(client, namespace)
            await store.aclose()
    return rows


def render_otel_table(rows: list[dict[str, Any]]) -> str:
    """The overhead table: medians, the ratio against the target, microseconds added."""
    otel = [r for r in rows if r["section"] == "otel"]
    if not otel:
        return ""
    lines = [
        "",
        f"OpenTelemetry overhead, SDK without exporter, payload {size_label(HEADLINE_SIZE)} "
        f"(target: instrumented/plain <= {TARGET:.2f})",
        f"{'backend':<8} {'op':<8} {'plain us':>9} {'instr. us':>9} {'ratio':>6} "
        f"{'added us':>8} {'SDK us':>7} {'wrapper us':>10} {'added cpu us':>12} "
        f"{'ratio 1%':>8}  verdict",
    ]
    for backend_id in BACKEND_IDS:
        for op in OTEL_OPS:
            group = {r["label"]: r for r in otel if r["backend"] == backend_id and r["op"] == op}
            if len(group) != 4:
                continue
            plain = group["plain"]["latency_ns"]["median"]
            inst = group["instrumented"]["latency_ns"]["median"]
            floor = group["floor: SDK span+record"]["latency_ns"]["median"]
            ratio = inst / plain
            cpu_plain, cpu_inst = (group[k]["client_cpu_ns"] for k in ("plain", "instrumented"))
            added_cpu = "" if cpu_plain is None else f"{(cpu_inst - cpu_plain) / 1e3:.2f}"
            lines.append(
                f"{backend_id:<8} {op:<8} {plain / 1e3:>9.2f} {inst / 1e3:>9.2f} {ratio:>6.3f} "
                f"{(inst - plain) / 1e3:>8.2f} {(floor - plain) / 1e3:>7.2f} "
                f"{(inst - floor) / 1e3:>10.2f} {added_cpu:>12} "
                f"{group[SAMPLED]['latency_ns']['median'] / plain:>8.3f}  "
                f"{'met' if ratio <= TARGET else 'MISSED'}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from .server import run_alone  # here: the runner (which imports this module) uses it too

    return run_alone(
        argv,
        prog="python -m benchmarks.cases_otel",
        doc=__doc__,
        run=lambda target, profile: run_otel_cases(target.url, profile),
        render=render_otel_table,
    )


if __name__ == "__main__":
    raise SystemExit(main())
