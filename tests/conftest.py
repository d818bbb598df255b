"""Shared fixtures: the backend table, a private redis-server, and data builders."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from greentic_session import SessionCursor, SessionData, SessionStore, TenantCtx
from greentic_session.testing import BACKENDS, Backend, RedisServer, find_redis_server

BACKEND_PARAMS = [pytest.param(backend, id=backend.id) for backend in BACKENDS]


def make_data(
    ctx: TenantCtx, *, flow: str = "support.flow", node: str = "node.wait", state: str = "{}"
) -> SessionData:
    return SessionData(
        tenant_ctx=ctx,
        flow_id=flow,
        cursor=SessionCursor(node_pointer=node),
        context_json=state,
    )


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server for the whole run (skipped only when none can be had)."""
    if find_redis_server() is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run the Redis tests: install redis-server or set REDIS_SERVER")
        pytest.skip("no redis-server on PATH or in $REDIS_SERVER, and no REDIS_URL")
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def redis_url(request: pytest.FixtureRequest) -> str:
    """`$REDIS_URL` when set, else the private server's URL."""
    explicit = os.environ.get("REDIS_URL")
    if explicit:
        return explicit
    server: RedisServer = request.getfixturevalue("redis_server")
    return server.url


@pytest.fixture
def namespace() -> str:
    """A namespace no other test uses, so tests never see each other's keys."""
    return f"test-{uuid.uuid4().hex}:session"


async def drop_namespace(url: str, namespace: str) -> None:
    # Tests may run against a server they did not start: delete only this test's own keys.
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{namespace}:*", count=500)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture(params=BACKEND_PARAMS)
async def store(request: pytest.FixtureRequest, namespace: str) -> AsyncIterator[SessionStore]:
    """A fresh store of every backend in the table."""
    backend: Backend = request.param
    url = request.getfixturevalue("redis_url") if backend.needs_redis else None
    async with backend.open(redis_url=url, namespace=namespace) as opened:
        yield opened
    if url is not None:
        await drop_namespace(url, namespace)
