"""Other async libraries: the in-memory store works under trio as under asyncio (it awaits only
anyio primitives), and the Redis store, which redis-py ties to asyncio, says so clearly.

The whole contract runs on trio through the backend table (the in-memory row's `trio` loop)."""

from __future__ import annotations

import json

import anyio
import anyio.lowlevel
import msgspec
import pytest

from greentic_session import (
    ConflictError,
    InMemorySessionStore,
    InvalidInputError,
    RedisSessionStore,
    SessionData,
)
from tests.conftest import ManualClock, make_data
from tests.identities import ALICE


async def memory_flow() -> None:
    clock = ManualClock()
    async with InMemorySessionStore(idle_ttl=60, clock=clock) as store:

        async def build() -> SessionData:
            await anyio.lowlevel.checkpoint()
            return make_data(ALICE, state="[]")

        def add(n: int):  # type: ignore[no-untyped-def]
            def change(data: SessionData) -> SessionData:
                items = [*json.loads(data.context_json), n]
                return msgspec.structs.replace(data, context_json=json.dumps(items))

            return change

        async def message(n: int) -> None:
            entry, _ = await store.find_or_create(ALICE, "alice", build)
            await anyio.lowlevel.checkpoint()
            await store.update_with(entry.key, add(n), attempts=100)

        async with anyio.create_task_group() as group:
            for n in range(20):
                group.start_soon(message, n)
        found = await store.find_entry(ALICE, "alice")
        assert found is not None
        assert sorted(json.loads(found.data.context_json)) == list(range(20))
        with pytest.raises(ConflictError):
            await store.create_session(ALICE, make_data(ALICE), key=found.key)
        clock.now += 61
        assert await store.get_session(found.key) is None


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_memory_store_runs_under_asyncio_and_trio(backend: str) -> None:
    """20 racing messages through find_or_create + update_with all land, under either library."""
    anyio.run(memory_flow, backend=backend)


def test_the_redis_store_under_trio_says_it_needs_asyncio(redis_url: str, namespace: str) -> None:
    """A Redis store called from trio raises InvalidInputError naming asyncio, not RuntimeError."""

    async def call() -> None:
        store = RedisSessionStore.from_url(redis_url, namespace=namespace)
        with pytest.raises(InvalidInputError, match="asyncio only"):
            await store.get_session("any")

    anyio.run(call, backend="trio")
