"""OpenTelemetry spans and metrics for every store call (the `otel` extra).

    from greentic_session.otel import SessionStoreInstrumentor

    SessionStoreInstrumentor().instrument()  # the global tracer and meter providers
    ...
    SessionStoreInstrumentor().uninstrument()  # the plain methods again, exactly

`instrument()` replaces the public coroutine methods named in `OPERATIONS` on
`InMemorySessionStore` and, when redis-py is installed, `RedisSessionStore` (each only if the
class has it) with wrappers; `uninstrument()` puts the original functions back. Until then, and
after, nothing here runs: importing this module patches nothing, and `import greentic_session`
never imports this module or OpenTelemetry.

What a call records, after the OpenTelemetry database semantic conventions (schema 1.33):

- A CLIENT span, current while the call runs (so spans of instrumented drivers nest under it),
  named `{db.operation.name} {db.namespace}` (`get_session 0|greentic:session`), or just the
  operation for the in-memory store, which has no namespace. Attributes: `db.system.name`
  (`redis`, or `memory` for the in-memory store: no registered value fits, and `memory` is the
  backend's id everywhere else in the library), `db.operation.name` (the method name),
  `db.namespace` (Redis only: database index and key namespace joined by `|`, the conventions'
  way of naming nested namespaces), `server.address` and `server.port` (Redis only).
- On an exception: `greentic_session.error.code` (a `SessionError`'s code) and, when the call
  failed, `error.type` (the exception's class name) and status ERROR. `NotFoundError` and
  `ConflictError` are answers about the data, not failures of the call (a runner handles them
  in its normal flow, by recreating or retrying), so they keep status UNSET and get no
  `error.type`, as database instrumentations leave a "no rows" or a write conflict. Any other
  exception, cancellation included (as OpenTelemetry's own `use_span` treats it), is a failure.
- Never a user id, session key or payload: the library's messages name session keys, so no
  exception event is recorded and the status carries no description.
- Metrics: `db.client.operation.duration` (histogram, seconds) with the span's attributes plus
  the outcome (`greentic_session.error.code`, and `error.type` when failed; neither on
  success); `greentic_session.client.errors` (counter) of every call that raised, by
  operation and code; `db.client.connection.count` with state `used` (an observable
  up-down counter, the conventions' instrument for it) per Redis server, read from each store's
  connection gate (the permits of calls holding a connection).

OpenTelemetry's suppression key is honoured: inside `suppress_instrumentation()` a call runs
the plain method. No dependency on `opentelemetry-instrumentation`: all this module would take
from it is `BaseInstrumentor`'s singleton and on/off bookkeeping (a few lines here), at the price
of `wrapt`, `packaging` and the semantic-conventions package in every deployment.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import inspect
import threading
import time
import weakref
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final

try:
    from opentelemetry import context as otel_context
    from opentelemetry import metrics, trace
    from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY
    from opentelemetry.metrics import (
        CallbackOptions,
        Counter,
        Histogram,
        MeterProvider,
        Observation,
    )
    from opentelemetry.trace import Span, SpanKind, StatusCode, Tracer, TracerProvider
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "greentic_session.otel needs the otel extra: pip install 'greentic-session[otel]'"
    ) from exc

from .backends.memory import InMemorySessionStore
from .errors import ConflictError, NotFoundError, SessionError
from .store import SessionStore

__all__ = ["OPERATIONS", "SessionStoreInstrumentor"]

# Every public coroutine of the store API; a class lacking one of them is left alone.
OPERATIONS: Final[tuple[str, ...]] = (
    "create_session",
    "get_session",
    "update_session",
    "remove_session",
    "find_by_user",
    "get_entry",
    "find_entry",
    "update_with",
    "find_or_create",
    "touch_session",
    "register_wait",
    "find_wait_by_scope",
    "list_waits_for_user",
    "clear_wait",
    "claim_due_waits",
    "settle_due",
    "erase_user",
)

SCOPE_NAME: Final = "greentic_session"
SCHEMA_URL: Final = "https://opentelemetry.io/schemas/1.33.0"

# Semantic-convention attribute and metric names (spelled out: the semconv package is not a
# dependency of the api).
DB_SYSTEM_NAME: Final = "db.system.name"
DB_OPERATION_NAME: Final = "db.operation.name"
DB_NAMESPACE: Final = "db.namespace"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
ERROR_TYPE: Final = "error.type"
ERROR_CODE: Final = "greentic_session.error.code"
POOL_NAME: Final = "db.client.connection.pool.name"
CONNECTION_STATE: Final = "db.client.connection.state"

DURATION_METRIC: Final = "db.client.operation.duration"
ERRORS_METRIC: Final = "greentic_session.client.errors"
CONNECTIONS_METRIC: Final = "db.client.connection.count"
# The conventions' advised buckets for db.client.operation.duration.
DURATION_BUCKETS: Final = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)

# Outcomes that are answers about the data rather than failed calls (see the module docstring).
_EXPECTED: Final = (NotFoundError, ConflictError)

Attributes = Mapping[str, str | int]
StoreMethod = Callable[..., Coroutine[Any, Any, Any]]


@dataclass(frozen=True, slots=True)
class _Call:
    """What is constant about one operation on one store: the span name and its attributes."""

    span_name: str
    attributes: dict[str, str | int]


def _calls(system: str, namespace: str | None, extra: Attributes) -> dict[str, _Call]:
    calls = {}
    for operation in OPERATIONS:
        attributes: dict[str, str | int] = {DB_SYSTEM_NAME: system, DB_OPERATION_NAME: operation}
        if namespace is not None:
            attributes[DB_NAMESPACE] = namespace
        attributes.update(extra)
        name = operation if namespace is None else f"{operation} {namespace}"
        calls[operation] = _Call(name, attributes)
    return calls


_MEMORY_CALLS: Final = _calls("memory", None, {})


def _memory_calls(_store: Any) -> dict[str, _Call]:
    return _MEMORY_CALLS


@dataclass(frozen=True, slots=True)
class _RedisTarget:
    calls: dict[str, _Call]
    pool_name: str  # the server (address:port/db), for db.client.connection.count


# Live Redis stores that made an instrumented call, with their (constant) span attributes.
_redis_targets: weakref.WeakKeyDictionary[Any, _RedisTarget] = weakref.WeakKeyDictionary()


def _redis_calls(store: Any) -> dict[str, _Call]:
    try:
        return _redis_targets[store].calls
    except KeyError:
        pass
    client = store.client
    kwargs: dict[str, Any] = {} if client is None else client.connection_pool.connection_kwargs
    db = kwargs.get("db", 0)
    server: dict[str, str | int] = {}
    if "path" in kwargs:
        server[SERVER_ADDRESS] = str(kwargs["path"])
        pool_name = f"{kwargs['path']}/{db}"
    elif "host" in kwargs:
        host, port = str(kwargs["host"]), int(kwargs.get("port", 6379))
        server[SERVER_ADDRESS], server[SERVER_PORT] = host, port
        pool_name = f"{host}:{port}/{db}"
    else:  # Sentinel or a cluster: the nodes are found at run time, so no fixed address
        pool_name = f"{store!r}/{db}"
    target = _RedisTarget(_calls("redis", f"{db}|{store.keys.namespace}", server), pool_name)
    _redis_targets[store] = target
    return target.calls


def _connections_in_use(store: Any) -> int | None:
    """Connections of `store` in use (`RedisSessionStore.pool_stats().in_use`)."""
    pool_stats = getattr(store, "pool_stats", None)
    return None if pool_stats is None else int(pool_stats().in_use)


class _Telemetry:
    """The tracer and instruments one `instrument()` call records into."""

    def __init__(
        self, tracer_provider: TracerProvider | None, meter_provider: MeterProvider | None
    ):
        version = _package_version()
        self.tracer: Tracer = trace.get_tracer(
            SCOPE_NAME, version, tracer_provider, schema_url=SCHEMA_URL
        )
        self.meter_provider = meter_provider or metrics.get_meter_provider()
        meter = self.meter_provider.get_meter(SCOPE_NAME, version, schema_url=SCHEMA_URL)
        self.duration: Histogram = meter.create_histogram(
            DURATION_METRIC,
            unit="s",
            description="Duration of session store operations.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.errors: Counter = meter.create_counter(
            ERRORS_METRIC,
            unit="{error}",
            description="Session store calls that raised, by operation and error code.",
        )
        # A meter keeps an observable instrument (and its first callback) for good, so the
        # callback asks the instrumentor whether this meter provider is still the active one.
        provider = self.meter_provider
        meter.create_observable_up_down_counter(
            CONNECTIONS_METRIC,
            callbacks=[lambda options: _observe_connections(options, provider)],
            unit="{connection}",
            description="Redis connections in use by session store calls.",
        )

    def failed(self, span: Span, call: _Call, exc: BaseException, seconds: float) -> None:
        """Record a call that raised `exc` (see the module docstring for what counts)."""
        outcome: dict[str, str | int] = {}
        if isinstance(exc, SessionError):
            outcome[ERROR_CODE] = exc.code.value
        if not isinstance(exc, _EXPECTED):
            outcome[ERROR_TYPE] = type(exc).__qualname__
        if span.is_recording():
            span.set_attributes(outcome)
            if ERROR_TYPE in outcome:
                span.set_status(StatusCode.ERROR)
        attributes = call.attributes | outcome
        self.duration.record(seconds, attributes)
        self.errors.add(1, attributes)


def _package_version() -> str | None:
    try:
        return importlib.metadata.version("greentic-session")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - run from a checkout
        return None


def _observe_connections(
    _options: CallbackOptions, provider: MeterProvider
) -> Iterable[Observation]:
    instrumentor = SessionStoreInstrumentor._instance  # no lock: collection runs on its own
    telemetry = None if instrumentor is None else instrumentor._telemetry
    if telemetry is None or telemetry.meter_provider is not provider:
        return []
    in_use: dict[str, int] = {}
    for store, target in list(_redis_targets.items()):
        used = _connections_in_use(store)
        if used is not None:
            in_use[target.pool_name] = in_use.get(target.pool_name, 0) + used
    return [
        Observation(used, {CONNECTION_STATE: "used", POOL_NAME: pool_name})
        for pool_name, used in in_use.items()
    ]


def _traced(
    original: StoreMethod,
    operation: str,
    calls_of: Callable[[Any], dict[str, _Call]],
    telemetry: _Telemetry,
) -> StoreMethod:
    """`original` inside a span, its duration and errors recorded."""
    get_value, attach, detach = otel_context.get_value, otel_context.attach, otel_context.detach
    in_context, start_span = trace.set_span_in_context, telemetry.tracer.start_span
    record, clock, client = telemetry.duration.record, time.perf_counter, SpanKind.CLIENT

    @functools.wraps(original)
    async def traced(self: Any, /, *args: Any, **kwargs: Any) -> Any:
        if get_value(_SUPPRESS_INSTRUMENTATION_KEY):
            return await original(self, *args, **kwargs)
        call = calls_of(self)[operation]
        span = start_span(call.span_name, kind=client, attributes=call.attributes)
        token = attach(in_context(span))
        start = clock()
        try:
            result = await original(self, *args, **kwargs)
        except BaseException as exc:
            telemetry.failed(span, call, exc, clock() - start)
            raise
        finally:
            detach(token)
            span.end()
        record(clock() - start, call.attributes)
        return result

    return traced


_INHERITED: Final = object()  # marks a patched method the class did not define itself


def _store_classes() -> list[tuple[type[SessionStore], Callable[[Any], dict[str, _Call]]]]:
    """The classes to patch; the Redis one only if redis-py is installed (imported lazily)."""
    classes: list[tuple[type[SessionStore], Callable[[Any], dict[str, _Call]]]] = [
        (InMemorySessionStore, _memory_calls)
    ]
    if importlib.util.find_spec("redis") is not None:
        from .backends.redis.store import RedisSessionStore

        classes.append((RedisSessionStore, _redis_calls))
    return classes


class SessionStoreInstrumentor:
    """Switches the instrumentation on and off; one instance per process, like OpenTelemetry's
    `BaseInstrumentor`. Both calls are idempotent."""

    _instance: ClassVar[SessionStoreInstrumentor | None] = None
    _lock: ClassVar[threading.Lock] = threading.Lock()
    _telemetry: _Telemetry | None
    _patched: list[tuple[type, str, object]]

    def __new__(cls) -> SessionStoreInstrumentor:
        with cls._lock:
            if cls._instance is None:
                instance = super().__new__(cls)
                instance._telemetry = None
                instance._patched = []
                cls._instance = instance
            return cls._instance

    @property
    def is_instrumented_by_opentelemetry(self) -> bool:
        return self._telemetry is not None

    def instrument(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        """Wrap every store operation; the providers default to the global ones."""
        with self._lock:
            if self._telemetry is not None:
                return
            telemetry = _Telemetry(tracer_provider, meter_provider)
            for cls, calls_of in _store_classes():
                for name in OPERATIONS:
                    original = getattr(cls, name, None)
                    if original is None or not inspect.iscoroutinefunction(original):
                        continue
                    self._patched.append((cls, name, cls.__dict__.get(name, _INHERITED)))
                    setattr(cls, name, _traced(original, name, calls_of, telemetry))
            self._telemetry = telemetry

    def uninstrument(self) -> None:
        """Put every original method back (a method the class inherited is inherited again)."""
        with self._lock:
            for cls, name, original in reversed(self._patched):
                if original is _INHERITED:
                    delattr(cls, name)
                else:
                    setattr(cls, name, original)
            self._patched.clear()
            self._telemetry = None
            _redis_targets.clear()
