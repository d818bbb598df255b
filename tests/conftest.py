"""Shared fixtures: the backend table, a private redis-server, a Sentinel topology, a Redis
Cluster, and data builders."""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest
import trustme

from greentic_session import SessionCursor, SessionData, SessionStore, TenantCtx
from greentic_session.testing import (
    BACKENDS,
    LOOP_KINDS,
    Backend,
    LocalCluster,
    RedisServer,
    SentinelCluster,
    TLSFiles,
    find_server,
    loop_factory,
)

# The backend table's cells: a row and one of its loops. An async test that takes the `backend`
# fixture (through `store`, `lifecycle`, or a suite's own fixture) runs once per cell: the row is
# the fixture's param, the loop is pytest-asyncio's loop factory (see the hooks below).
STORE_PARAMS = [pytest.param(backend, id=backend.id) for backend in BACKENDS]
# The rows that take a plain `redis_url` (the model test passes one): the sentinel row is the
# Redis store again, reached through Sentinel, which the conformance suite covers.
BACKEND_PARAMS = [param for param in STORE_PARAMS if param.values[0].topology != "sentinel"]
# (row, loop) pairs for tests that drive their own asyncio loop (`run_on`); trio has no asyncio
# loop, so its cells run only through pytest-asyncio (the in-memory row).
CELL_PARAMS = [
    pytest.param(param.values[0], loop, id=f"{loop}-{param.id}")
    for param in BACKEND_PARAMS
    for loop in param.values[0].loops
    if loop in LOOP_KINDS
]


def _trio_cell_loop() -> asyncio.AbstractEventLoop:
    """The trio cell's fixtures run on asyncio (the in-memory store binds to no loop); its test
    body runs under trio (`pytest_pyfunc_call` below)."""
    return asyncio.new_event_loop()


LOOP_FACTORIES: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    **{kind: loop_factory(kind) for kind in LOOP_KINDS},
    "trio": _trio_cell_loop,
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "loops(*kinds): run this async test on each of these event loops"
    )


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> Any:
    """Every loop for a test on the backend table (its rows keep theirs, and a `loops` mark
    narrows them, below); the loops a `loops` mark names; asyncio's own loop for any other."""
    if "backend" in getattr(item, "fixturenames", ()):
        return LOOP_FACTORIES
    marker = item.get_closest_marker("loops")
    if marker is not None:
        return {kind: LOOP_FACTORIES[kind] for kind in marker.args}
    return {"asyncio": LOOP_FACTORIES["asyncio"]}


def _cell_of(item: pytest.Item) -> tuple[Backend | None, str | None]:
    """The backend row and the loop an item runs on (None where it has none)."""
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return None, None
    values = list(callspec.params.values())
    row = next((value for value in values if isinstance(value, Backend)), None)
    loop = next(
        (kind for kind, factory in LOOP_FACTORIES.items() for v in values if v is factory), None
    )
    return row, loop


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A row runs only on its own loops (and, where a `loops` mark narrows them, on those): the
    other (row, loop) pairs are not cells."""
    kept = []
    for item in items:
        row, loop = _cell_of(item)
        marker = item.get_closest_marker("loops")
        if loop is not None and marker is not None and loop not in marker.args:
            continue
        if row is None or loop is None or loop in row.loops:
            kept.append(item)
    items[:] = kept


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """A trio cell's test body runs under trio (pytest-asyncio would run it on asyncio)."""
    if _cell_of(pyfuncitem)[1] != "trio":
        return None
    test = getattr(pyfuncitem.parent.obj, pyfuncitem.originalname)  # the coroutine function
    names = inspect.signature(test).parameters
    arguments = {name: pyfuncitem.funcargs[name] for name in names}
    anyio.run(functools.partial(test, **arguments), backend="trio")
    return True


T = TypeVar("T")


async def gather(*calls: Awaitable[T]) -> list[T]:
    """Await `calls` concurrently and return their results in order, on any async library
    (anyio), so the in-memory contract tests run under trio as under asyncio."""
    results: list[Any] = [None] * len(calls)

    async def run(i: int, call: Awaitable[T]) -> None:
        results[i] = await call

    async with anyio.create_task_group() as group:
        for i, call in enumerate(calls):
            group.start_soon(run, i, call)
    return results


def make_data(
    ctx: TenantCtx, *, flow: str = "support.flow", node: str = "node.wait", state: str = "{}"
) -> SessionData:
    return SessionData(
        tenant_ctx=ctx,
        flow_id=flow,
        cursor=SessionCursor(node_pointer=node),
        context_json=state,
    )


def _server_binary(kind: str) -> str:
    """The binary of server engine `kind`; CI must have it, elsewhere its tests skip."""
    binary = find_server(kind)
    if binary is None:
        variable = "VALKEY_SERVER" if kind == "valkey" else "REDIS_SERVER"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the {kind} tests: install {kind}-server or set {variable}")
        pytest.skip(f"no {kind}-server on PATH or in ${variable}")
    return binary


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server for the whole run (skipped only when none can be had)."""
    with RedisServer(binary=_server_binary("redis")) as server:
        yield server


@pytest.fixture(scope="session")
def valkey_server() -> Iterator[RedisServer]:
    """A private valkey-server for the whole run (skipped only when none can be had)."""
    with RedisServer(binary=_server_binary("valkey")) as server:
        yield server


@pytest.fixture(scope="session")
def redis_url(request: pytest.FixtureRequest) -> str:
    """`$REDIS_URL` when set, else the private server's URL."""
    return server_url(request, "redis")


def server_url(request: pytest.FixtureRequest, kind: str) -> str:
    """The URL of the run's private server of engine `kind` (Redis: `$REDIS_URL` when set)."""
    explicit = os.environ.get("REDIS_URL")
    if kind == "redis" and explicit:
        return explicit
    server: RedisServer = request.getfixturevalue(f"{kind}_server")
    return server.url


@pytest.fixture(scope="session")
def sentinel_cluster() -> Iterator[SentinelCluster]:
    """A primary, a replica and three sentinels for the whole run (never failed over, so it
    need not wait for the sentinels to find each other)."""
    _server_binary("redis")
    with SentinelCluster(await_peers=False) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalCluster]:
    """A Redis Cluster of three masters (no replicas) for the whole run; tests share it, each in
    its own namespace, and never move its slots or fail it over (those tests start their own)."""
    _server_binary("redis")
    with LocalCluster(masters=3) as cluster:
        yield cluster


def backend_urls(request: pytest.FixtureRequest, backend: Backend) -> tuple[str | None, str | None]:
    """(the URL a store of `backend` opens, a plain URL of the server holding its keys)."""
    if backend.topology == "memory":
        return None, None
    if backend.topology == "sentinel":
        cluster: SentinelCluster = request.getfixturevalue("sentinel_cluster")
        return cluster.url, f"redis://127.0.0.1:{cluster.primary_port()}/0"
    if backend.topology == "cluster":
        nodes: LocalCluster = request.getfixturevalue("redis_cluster")
        masters = ",".join(f"redis://127.0.0.1:{port}/0" for port in nodes.master_ports())
        return masters, masters
    url = server_url(request, backend.server or "redis")
    return url, url


@pytest.fixture
def namespace() -> str:
    """A namespace no other test uses, so tests never see each other's keys."""
    return f"test-{uuid.uuid4().hex}:session"


async def drop_namespace(url: str, namespace: str) -> None:
    """Delete the keys under `namespace` on the server at `url` (or on each of a cluster's
    masters, comma-separated): tests may share a server, so only the test's own keys."""
    import redis.asyncio as aioredis

    for node_url in url.split(","):
        client = aioredis.Redis.from_url(node_url)
        try:
            keys = [key async for key in client.scan_iter(match=f"{namespace}:*", count=500)]
            for key in keys:  # one by one: a cluster node refuses a DEL across slots
                await client.delete(key)
        finally:
            await client.aclose()


@pytest.fixture(params=STORE_PARAMS)
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each row of the backend table (each on its loops: see the hooks above)."""
    row: Backend = request.param
    return row


@pytest.fixture
async def store(
    request: pytest.FixtureRequest, backend: Backend, namespace: str
) -> AsyncIterator[SessionStore]:
    """A fresh store of every backend in the table."""
    url, raw_url = backend_urls(request, backend)
    async with backend.open(redis_url=url, namespace=namespace) as opened:
        yield opened
    if raw_url is not None:
        await drop_namespace(raw_url, namespace)


class ManualClock:
    """A clock for the in-memory store that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


async def shift_ttls(url: str, namespace: str, seconds: float) -> None:
    """Let `seconds` pass for every TTL under `namespace`, as Redis's clock would.

    Redis has no clock to move, but its expiry is only each key's remaining PTTL: shortening
    each by `seconds` (deleting keys it would have expired) is what time passing does to them.
    """
    import redis.asyncio as aioredis

    for node_url in url.split(","):  # a cluster's masters, comma-separated
        client = aioredis.Redis.from_url(node_url)
        try:
            async for key in client.scan_iter(match=f"{namespace}:*", count=500):
                left = await client.pttl(key)
                if left < 0:
                    continue  # no TTL (-1), or gone meanwhile (-2)
                remaining = left - round(seconds * 1000)
                if remaining <= 0:
                    await client.delete(key)
                else:
                    await client.pexpire(key, remaining)
        finally:
            await client.aclose()


class Lifecycle:
    """Opens stores of one backend with expiry options, and moves their time forward."""

    def __init__(
        self, backend: Backend, redis_url: str | None, namespace: str, raw_url: str | None = None
    ) -> None:
        self.backend = backend
        self.redis_url = redis_url
        self.raw_url = raw_url or redis_url  # a plain URL of the server holding the keys
        self.namespace = namespace
        self.clock = ManualClock()
        self.opened: list[SessionStore] = []

    def open(self, **options: Any) -> SessionStore:
        clock = None if self.backend.needs_redis else self.clock
        store = self.backend.open(
            redis_url=self.redis_url, namespace=self.namespace, clock=clock, **options
        )
        self.opened.append(store)
        return store

    async def advance(self, seconds: float) -> None:
        """Let `seconds` pass for every store this opened."""
        self.clock.now += seconds
        if self.raw_url is not None:
            await shift_ttls(self.raw_url, self.namespace, seconds)


@pytest.fixture
async def lifecycle(
    request: pytest.FixtureRequest, backend: Backend, namespace: str
) -> AsyncIterator[Lifecycle]:
    """Stores of every backend in the table with expiry options of the test's choosing."""
    url, raw_url = backend_urls(request, backend)
    opened = Lifecycle(backend, url, namespace, raw_url)
    yield opened
    for store in opened.opened:
        await store.aclose()
    if raw_url is not None:
        await drop_namespace(raw_url, namespace)


# -- TLS: one throwaway CA and a TLS-only private redis-server, shared by the TLS tests ---------


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def tls_dir(tmp_path_factory: pytest.TempPathFactory, tls_ca: trustme.CA) -> Path:
    """A throwaway CA's certificate and a server certificate it signed, for 127.0.0.1, plus
    another CA's certificate (`other-ca.pem`) that does not trust it."""
    folder = tmp_path_factory.mktemp("tls")
    issued = tls_ca.issue_cert("127.0.0.1", "localhost")
    issued.private_key_pem.write_to_path(str(folder / "server.key"))
    issued.cert_chain_pems[0].write_to_path(str(folder / "server.pem"))
    tls_ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    trustme.CA().cert_pem.write_to_path(str(folder / "other-ca.pem"))
    return folder


@pytest.fixture(scope="session")
def tls_server(tls_dir: Path) -> Iterator[RedisServer]:
    """A private redis-server listening with TLS only."""
    files = TLSFiles(
        str(tls_dir / "server.pem"), str(tls_dir / "server.key"), str(tls_dir / "ca.pem")
    )
    with RedisServer(tls=files) as server:
        yield server
