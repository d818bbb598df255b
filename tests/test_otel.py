"""The OpenTelemetry instrumentation, read through the SDK's in-memory exporters, both backends."""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind, StatusCode

from greentic_session import (
    ConflictError,
    InMemorySessionStore,
    InvalidInputError,
    NotFoundError,
    SessionError,
    SessionStore,
    TenantCtx,
)
from greentic_session import otel as otel_module
from greentic_session.backends.redis.store import RedisSessionStore
from greentic_session.otel import OPERATIONS, SessionStoreInstrumentor
from greentic_session.testing import BACKENDS
from tests.conftest import drop_namespace, make_data

USER = "alice-7f3a"
CTX = TenantCtx.new("dev", "tenant-42", team="support", user=USER)
PAYLOAD = '{"secret_answer":"hunter2-payload"}'


@dataclass
class Recorded:
    """What the instrumentation recorded, read through the SDK's in-memory exporters."""

    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def points(self, metric: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        found: list[Any] = []
        if data is None:
            return found
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for m in scope.metrics:
                    if m.name == metric:
                        found += list(m.data.data_points)
        return found


def _providers(**tracer_kwargs: Any) -> tuple[Recorded, MeterProvider]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider(**tracer_kwargs)
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    return Recorded(exporter, reader, tracer_provider), MeterProvider(metric_readers=[reader])


@pytest.fixture
def recorded() -> Iterator[Recorded]:
    """Instrumentation on, into fresh SDK providers with in-memory exporters; off afterwards."""
    rec, meter_provider = _providers()
    instrumentor = SessionStoreInstrumentor()
    instrumentor.instrument(tracer_provider=rec.tracer_provider, meter_provider=meter_provider)
    yield rec
    instrumentor.uninstrument()
    meter_provider.shutdown()


def _system(store: SessionStore) -> str:
    return "memory" if isinstance(store, InMemorySessionStore) else "redis"


def _expected_base(store: SessionStore, operation: str) -> dict[str, Any]:
    base: dict[str, Any] = {"db.system.name": _system(store), "db.operation.name": operation}
    if isinstance(store, RedisSessionStore):
        # A cluster's nodes, like a Sentinel primary, are found at run time: no address.
        kwargs = {} if store.client is None else store.client.connection_pool.connection_kwargs
        base["db.namespace"] = f"{kwargs.get('db', 0)}|{store.keys.namespace}"
        if "host" in kwargs:  # a Sentinel-managed pool finds its primary at run time: no address
            base["server.address"] = kwargs["host"]
            base["server.port"] = kwargs["port"]
    return base


async def test_each_call_is_one_client_span_with_database_attributes(
    recorded: Recorded, store: SessionStore
) -> None:
    """Every store call ends one CLIENT span named after its operation, with the semconv
    database attributes and an UNSET status, and returns what the plain call returns."""
    data = make_data(CTX, state=PAYLOAD)
    key = await store.create_session(CTX, data)
    assert await store.get_session(key) == data  # the wrapper hands results through unchanged
    assert await store.find_by_user(CTX, USER) == (key, data)
    await store.update_session(key, data)
    await store.remove_session(key)
    assert await store.get_session(key) is None

    spans = recorded.spans()[:-1]  # the last get_session is checked by the other tests
    operations = ["create_session", "get_session", "find_by_user", "update_session"]
    operations.append("remove_session")
    assert [s.attributes["db.operation.name"] for s in spans if s.attributes] == operations
    for span, operation in zip(spans, operations, strict=True):
        expected = _expected_base(store, operation)
        assert dict(span.attributes or {}) == expected
        namespace = expected.get("db.namespace")
        assert span.name == (operation if namespace is None else f"{operation} {namespace}")
        assert span.kind is SpanKind.CLIENT
        assert span.status.status_code is StatusCode.UNSET
        assert span.instrumentation_scope is not None
        assert span.instrumentation_scope.name == "greentic_session"


async def test_not_found_keeps_the_span_unset_and_carries_the_code(
    recorded: Recorded, store: SessionStore
) -> None:
    """A NotFoundError is an answer, not a failure: status UNSET, no error.type, but the code is
    on the span, the duration point and the errors counter."""
    with pytest.raises(NotFoundError):
        await store.update_session("no-such-session", make_data(CTX))
    (span,) = recorded.spans()
    assert span.status.status_code is StatusCode.UNSET
    assert span.attributes is not None
    assert span.attributes["greentic_session.error.code"] == "not_found"
    assert "error.type" not in span.attributes

    (errors,) = recorded.points("greentic_session.client.errors")
    assert errors.value == 1
    assert errors.attributes["greentic_session.error.code"] == "not_found"
    assert errors.attributes["db.operation.name"] == "update_session"
    (duration,) = recorded.points("db.client.operation.duration")
    assert duration.attributes["greentic_session.error.code"] == "not_found"
    assert "error.type" not in duration.attributes


def test_a_conflict_keeps_the_span_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """A ConflictError (a compare-and-set lost to another writer) is an answer too: status
    UNSET, code `conflict`, no error.type."""

    class Contended(InMemorySessionStore):
        async def get_session(self, key: str) -> Any:
            raise ConflictError("another writer got there first")

    monkeypatch.setattr(
        otel_module, "_store_classes", lambda: [(Contended, otel_module._memory_calls)]
    )
    rec, meter_provider = _providers()
    instrumentor = SessionStoreInstrumentor()
    instrumentor.instrument(tracer_provider=rec.tracer_provider, meter_provider=meter_provider)
    try:
        with pytest.raises(ConflictError):
            asyncio.run(Contended().get_session("k"))
    finally:
        instrumentor.uninstrument()
    (span,) = rec.spans()
    assert span.status.status_code is StatusCode.UNSET
    assert span.attributes is not None
    assert span.attributes["greentic_session.error.code"] == "conflict"
    assert "error.type" not in span.attributes


async def test_a_failed_call_is_an_error_span_with_type_and_code(
    recorded: Recorded, store: SessionStore
) -> None:
    """Invalid input and a closed store end ERROR spans with error.type and our error code, and
    each counts once in the errors counter under that type and code."""
    with pytest.raises(InvalidInputError) as invalid_input:
        await store.get_session("")
    await store.aclose()
    with pytest.raises(SessionError) as closed_store:  # the store's own error for a closed store
        await store.get_session("some-key")

    failures = [
        (type(raised.value).__qualname__, raised.value.code.value)
        for raised in (invalid_input, closed_store)
    ]
    for span, (error_type, code) in zip(recorded.spans(), failures, strict=True):
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description is None  # messages may name a session key
        assert span.attributes is not None
        assert span.attributes["error.type"] == error_type
        assert span.attributes["greentic_session.error.code"] == code
        assert not span.events  # no exception event: its message could name a session key
    counted = {
        (p.attributes["error.type"], p.attributes["greentic_session.error.code"]): p.value
        for p in recorded.points("greentic_session.client.errors")
    }
    assert counted == dict.fromkeys(failures, 1)


async def test_duration_histogram_by_operation_and_outcome(
    recorded: Recorded, store: SessionStore
) -> None:
    """`db.client.operation.duration` (seconds) gets one series per operation and outcome, with
    a count per call and a positive sum."""
    key = await store.create_session(CTX, make_data(CTX))
    for _ in range(3):
        await store.get_session(key)
    with pytest.raises(NotFoundError):
        await store.remove_session("no-such-session")

    series = {
        (
            p.attributes["db.operation.name"],
            p.attributes.get("greentic_session.error.code", "ok"),
        ): p
        for p in recorded.points("db.client.operation.duration")
    }
    assert set(series) == {
        ("create_session", "ok"),
        ("get_session", "ok"),
        ("remove_session", "not_found"),
    }
    assert series[("get_session", "ok")].count == 3
    assert all(0 < p.sum < 5 for p in series.values())
    assert dict(series[("get_session", "ok")].attributes) == _expected_base(store, "get_session")


async def test_no_user_id_session_key_or_payload_is_recorded(
    recorded: Recorded, store: SessionStore
) -> None:
    """No span name, span attribute or metric attribute holds a user id, session key or
    payload, on success or failure (the errors' messages do name session keys)."""
    key = await store.create_session(CTX, make_data(CTX, state=PAYLOAD))
    await store.get_session(key)
    await store.find_by_user(CTX, USER)
    with pytest.raises(NotFoundError):
        await store.update_session(f"{key}-gone", make_data(CTX, state=PAYLOAD))
    with pytest.raises(InvalidInputError):
        await store.find_by_user(CTX, "bad user!")

    recorded_text: list[str] = []
    for span in recorded.spans():
        recorded_text += [span.name, *map(str, (span.attributes or {}).values())]
        recorded_text += [str(span.status.description)]
    for metric in ("db.client.operation.duration", "greentic_session.client.errors"):
        for point in recorded.points(metric):
            recorded_text += map(str, point.attributes.values())
    for secret in (USER, key, "hunter2", "bad user"):
        assert not [text for text in recorded_text if secret in text], secret


async def test_the_span_is_current_during_the_call(recorded: Recorded, store: SessionStore) -> None:
    """A store call under an application span is its child, and the context is restored after."""
    tracer = recorded.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("handle message") as parent:
        await store.get_session("some-key")
        assert trace.get_current_span() is parent
    child, app = recorded.spans()
    assert app.name == "handle message"
    assert child.parent is not None
    assert child.parent.span_id == app.context.span_id


def test_work_inside_a_call_sees_the_call_span_as_current(monkeypatch: pytest.MonkeyPatch) -> None:
    """While the plain method runs, the store call's span is the current span, so spans of an
    instrumented driver nest under it."""
    seen: list[trace.Span] = []

    class Probe(InMemorySessionStore):
        async def get_session(self, key: str) -> Any:
            seen.append(trace.get_current_span())
            return await super().get_session(key)

    monkeypatch.setattr(otel_module, "_store_classes", lambda: [(Probe, otel_module._memory_calls)])
    rec, meter_provider = _providers()
    instrumentor = SessionStoreInstrumentor()
    instrumentor.instrument(tracer_provider=rec.tracer_provider, meter_provider=meter_provider)
    try:
        asyncio.run(Probe().get_session("k"))
    finally:
        instrumentor.uninstrument()
    (span,) = rec.spans()
    (current,) = seen
    assert current.get_span_context().span_id == span.context.span_id


async def test_suppressed_calls_record_nothing(recorded: Recorded, store: SessionStore) -> None:
    """Under OpenTelemetry's suppression key a call runs plainly: no span, no metric."""
    token = otel_context.attach(otel_context.set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
    try:
        key = await store.create_session(CTX, make_data(CTX))
        assert await store.get_session(key) is not None
    finally:
        otel_context.detach(token)
    assert recorded.spans() == []
    assert recorded.points("db.client.operation.duration") == []


async def test_an_unsampled_call_still_counts_in_metrics(store: SessionStore) -> None:
    """With a sampler that records nothing, calls and failures still reach the metrics."""
    rec, meter_provider = _providers(sampler=ALWAYS_OFF)
    instrumentor = SessionStoreInstrumentor()
    instrumentor.instrument(tracer_provider=rec.tracer_provider, meter_provider=meter_provider)
    try:
        await store.get_session("some-key")
        with pytest.raises(InvalidInputError):
            await store.get_session("")
    finally:
        instrumentor.uninstrument()
    assert rec.spans() == []
    (errors,) = rec.points("greentic_session.client.errors")
    assert errors.attributes["error.type"] == "InvalidInputError"
    assert sum(p.count for p in rec.points("db.client.operation.duration")) == 2


async def test_redis_connections_in_use_are_observed(
    recorded: Recorded, redis_url: str, namespace: str
) -> None:
    """`db.client.connection.count` (state used) counts the Redis store's connections awaiting
    replies: one while a call is in flight, none once it returned."""
    backend = next(b for b in BACKENDS if b.needs_redis)
    store = backend.open(redis_url=redis_url, namespace=namespace)
    assert isinstance(store, RedisSessionStore)
    try:
        await store.get_session("warm-up")  # the store is observed from its first call on
        call = asyncio.create_task(store.get_session("in-flight"))
        # One loop turn runs the task to its first suspension, the reply: its request is queued
        # on the connection without suspending, so the connection is busy (deterministic).
        await asyncio.sleep(0)
        (during,) = recorded.points("db.client.connection.count")
        await call
        (after,) = recorded.points("db.client.connection.count")
    finally:
        await store.aclose()
        await drop_namespace(redis_url, namespace)
    kwargs = store.client.connection_pool.connection_kwargs
    pool_name = f"{kwargs['host']}:{kwargs['port']}/{kwargs.get('db', 0)}"
    assert dict(during.attributes) == {
        "db.client.connection.state": "used",
        "db.client.connection.pool.name": pool_name,
    }
    assert (during.value, after.value) == (1, 0)


def test_instrumentor_is_a_singleton_and_both_switches_are_idempotent() -> None:
    """Every SessionStoreInstrumentor() is the same object; a second instrument() does not wrap
    twice, and a second uninstrument() changes nothing."""
    assert SessionStoreInstrumentor() is SessionStoreInstrumentor()
    rec, meter_provider = _providers()
    instrumentor = SessionStoreInstrumentor()
    instrumentor.instrument(tracer_provider=rec.tracer_provider, meter_provider=meter_provider)
    try:
        wrapped = InMemorySessionStore.get_session
        instrumentor.instrument(tracer_provider=rec.tracer_provider, meter_provider=meter_provider)
        assert InMemorySessionStore.get_session is wrapped
        assert instrumentor.is_instrumented_by_opentelemetry
        asyncio.run(InMemorySessionStore().get_session("k"))
    finally:
        instrumentor.uninstrument()
    assert len(rec.spans()) == 1
    restored = InMemorySessionStore.get_session
    instrumentor.uninstrument()
    assert InMemorySessionStore.get_session is restored
    assert not instrumentor.is_instrumented_by_opentelemetry


def _own_methods(cls: type) -> dict[str, Any]:
    return {name: cls.__dict__[name] for name in OPERATIONS if name in cls.__dict__}


def test_uninstrument_restores_the_original_functions_exactly() -> None:
    """After uninstrument every patched class holds the very function objects it had before."""
    classes = (InMemorySessionStore, RedisSessionStore)
    before = {cls: _own_methods(cls) for cls in classes}
    instrumentor = SessionStoreInstrumentor()
    instrumentor.instrument(tracer_provider=TracerProvider(), meter_provider=MeterProvider())
    try:
        for cls in classes:
            patched = _own_methods(cls)
            assert set(patched) >= set(before[cls])
            for name, function in patched.items():
                assert function is not before[cls].get(name)
                assert function.__wrapped__ is before[cls].get(name, getattr(SessionStore, name))
    finally:
        instrumentor.uninstrument()
    for cls in classes:
        after = _own_methods(cls)
        assert after.keys() == before[cls].keys()
        assert all(after[name] is before[cls][name] for name in after)


def test_inherited_methods_are_inherited_again_after_uninstrument(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A class that inherits an operation gets its own wrapper, which uninstrument deletes, and
    an attribute of an operation's name that is not a coroutine is left alone."""

    class Child(InMemorySessionStore):
        find_entry = "not a coroutine"

    monkeypatch.setattr(otel_module, "_store_classes", lambda: [(Child, otel_module._memory_calls)])
    rec, meter_provider = _providers()
    instrumentor = SessionStoreInstrumentor()
    instrumentor.instrument(tracer_provider=rec.tracer_provider, meter_provider=meter_provider)
    try:
        assert "get_session" in Child.__dict__
        assert Child.__dict__["find_entry"] == "not a coroutine"
        assert InMemorySessionStore.__dict__["get_session"] is not Child.get_session
        asyncio.run(Child().get_session("k"))
    finally:
        instrumentor.uninstrument()
    assert [s.name for s in rec.spans()] == ["get_session"]
    assert "get_session" not in Child.__dict__
    assert Child.get_session is InMemorySessionStore.get_session
    assert Child.__dict__["find_entry"] == "not a coroutine"


def test_every_public_store_coroutine_is_in_the_list() -> None:
    """Each public coroutine method of the store classes is named in OPERATIONS, so a method
    added later cannot go untraced unnoticed."""
    lifecycle = {"aclose"}
    for cls in (SessionStore, InMemorySessionStore, RedisSessionStore):
        public = {
            name
            for name, member in inspect.getmembers(cls, inspect.iscoroutinefunction)
            if not name.startswith("_") and name not in lifecycle
        }
        assert public <= set(OPERATIONS), public - set(OPERATIONS)


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_nothing_is_imported_until_asked_and_the_extra_is_named_when_absent() -> None:
    """Using the library imports neither OpenTelemetry nor this module, and without the extra
    importing greentic_session.otel raises an ImportError naming `greentic-session[otel]`."""
    result = _run_python(
        """
        import asyncio, sys
        import greentic_session
        from greentic_session import *
        asyncio.run(greentic_session.InMemorySessionStore().get_session("k"))
        prefixes = ("opentelemetry", "greentic_session.otel")
        loaded = sorted(m for m in sys.modules if m.startswith(prefixes))
        assert not loaded, loaded
        sys.modules["opentelemetry"] = None  # as if the extra were not installed
        try:
            import greentic_session.otel
        except ImportError as exc:
            print(exc)
        """
    )
    assert result.returncode == 0, result.stderr
    assert "pip install 'greentic-session[otel]'" in result.stdout


def test_instrument_without_providers_uses_the_global_ones() -> None:
    """instrument() with no arguments records into the globally set tracer and meter providers."""
    result = _run_python(
        """
        import asyncio
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from greentic_session import InMemorySessionStore
        from greentic_session.otel import SessionStoreInstrumentor

        SessionStoreInstrumentor().instrument()  # before the globals exist: proxies resolve later
        exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        asyncio.run(InMemorySessionStore().get_session("k"))
        print([s.name for s in exporter.get_finished_spans()])
        names = [m.name for r in reader.get_metrics_data().resource_metrics
                 for s in r.scope_metrics for m in s.metrics]
        print(names)
        """
    )
    assert result.returncode == 0, result.stderr
    spans, names = result.stdout.splitlines()
    assert spans == "['get_session']"
    assert "db.client.operation.duration" in names
