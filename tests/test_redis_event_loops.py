"""One RedisSessionStore across event loops: successive `asyncio.run()` loops, a loop other than
the one that created it, and a second loop running at the same time in another thread.

These tests are synchronous on purpose: each drives its own event loops. With warnings as errors
(pyproject), a connection left open on a dead loop would fail them as a ResourceWarning.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from greentic_session import InvalidInputError, RedisSessionStore, SessionKey
from tests.test_redis_faults import bounded, ctx_of, marked, pool_counts


async def burst(store: RedisSessionStore, tag: str, count: int = 20) -> list[SessionKey]:
    """`count` concurrent create+get calls, more than the pool holds, so the gate makes callers
    wait (binding it to the running loop); returns the keys created."""

    async def one(n: int) -> SessionKey:
        user = f"{tag}-{n}"
        key = await store.create_session(ctx_of(user), marked(user, tag))
        assert await store.get_session(key) == marked(user, tag)
        return key

    return list(await bounded(asyncio.gather(*(one(n) for n in range(count)))))


def test_one_store_serves_successive_asyncio_run_loops(redis_url: str, namespace: str) -> None:
    """A store built outside any loop serves three successive asyncio.run() loops, each
    saturating its pool, sees the first loop's sessions from the last, and closes from yet
    another loop without error or leaked connection."""
    store = RedisSessionStore.from_url(
        redis_url, namespace=namespace, max_connections=2, pool_timeout=5.0
    )
    created = [asyncio.run(burst(store, f"run{n}")) for n in range(3)]

    async def read_first_run() -> None:
        for n, key in enumerate(created[0]):
            assert await store.get_session(key) == marked(f"run0-{n}", "run0")
        for key in created[0]:
            await store.remove_session(key)

    asyncio.run(read_first_run())
    asyncio.run(store.aclose())
    in_use, _ = pool_counts(store)
    assert in_use == 0
    assert not any(
        connection.is_connected
        for connection in store.client.connection_pool._available_connections
    )


def test_a_store_moves_from_a_loop_that_is_still_open(redis_url: str, namespace: str) -> None:
    """A store used on a loop that is open but idle (run_until_complete, not asyncio.run) works
    on a new loop, and the old loop closes the connections it left behind when it shuts down."""
    old_loop = asyncio.new_event_loop()
    # redis-py's pool: its connections are what this test follows (batching has its own pool)
    store = RedisSessionStore.from_url(
        redis_url, namespace=namespace, max_connections=2, batching=False
    )
    try:
        old_keys = old_loop.run_until_complete(burst(store, "old"))
        left_behind = list(store.client.connection_pool._available_connections)
        assert any(connection.is_connected for connection in left_behind)
        new_keys = asyncio.run(burst(store, "new"))
        assert set(old_keys).isdisjoint(new_keys)
    finally:
        old_loop.run_until_complete(old_loop.shutdown_asyncgens())
        old_loop.close()
    assert not any(connection.is_connected for connection in left_behind)
    asyncio.run(store.aclose())


def test_a_second_running_loop_is_refused_and_the_store_stays_usable(
    redis_url: str, namespace: str
) -> None:
    """While a store is in use on a loop running in another thread, a call from a second loop
    raises InvalidInputError naming the misuse, the first loop's calls keep working, and once
    that loop ends the store serves the next one."""
    store = RedisSessionStore.from_url(redis_url, namespace=namespace)
    in_use, release = threading.Event(), threading.Event()
    results: list[object] = []

    async def hold() -> None:
        results.extend(await burst(store, "held", count=2))
        in_use.set()
        await asyncio.to_thread(release.wait)
        results.extend(await burst(store, "after", count=2))  # still works on its own loop

    holder = threading.Thread(target=asyncio.run, args=(hold(),))
    holder.start()
    try:
        assert in_use.wait(30)
        with pytest.raises(InvalidInputError, match="another running event loop"):
            asyncio.run(store.get_session("any"))
    finally:
        release.set()
        holder.join(30)
    assert not holder.is_alive()
    assert len(results) == 4
    asyncio.run(burst(store, "next", count=4))
    asyncio.run(store.aclose())
