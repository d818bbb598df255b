"""The Sentinel store's +switch-master listener ends when it is told to, even when a cancellation
is lost on the way.

On Python 3.11, redis-py wraps each send to a sentinel (a client with a socket_timeout) in
`asyncio.wait_for`, which returns normally when a cancellation arrives just as the send completes
(CPython issue 86296). The listener then went on listening, and closing the store, which waits
for it, hung. That race needs a cancellation to land within one event-loop turn, which no server
can arrange, so these tests drop one cancellation exactly as `wait_for` does, against real
sentinels and a data node that refuses the password (the failing run's last warning).
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from redis.asyncio.connection import Connection

from greentic_session import RedisSessionStore, UnavailableError
from greentic_session.backends.redis.sentinel import PrimaryPool
from greentic_session.testing import SentinelCluster

PASSWORD = "n0de-Pa55-7d41"

# Far above a healthy close (milliseconds) and far below the listener's 30 s wait for a message.
BOUND = 5.0


class DroppedCancellation:
    """Makes the listener's first SUBSCRIBE send swallow one cancellation, as 3.11's `wait_for`
    does when the send it wraps has just completed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.reached = asyncio.Event()
        self.dropped = False
        send = Connection.send_command

        async def send_command(connection: Connection, *args: Any, **kwargs: Any) -> None:
            await send(connection, *args, **kwargs)
            if args[:1] == ("SUBSCRIBE",) and not self.reached.is_set():
                self.reached.set()
                try:
                    await asyncio.get_running_loop().create_future()  # until cancelled
                except asyncio.CancelledError:
                    self.dropped = True  # wait_for's `if fut.done(): return fut.result()`

        monkeypatch.setattr(Connection, "send_command", send_command)


@pytest.fixture(scope="module")
def guarded_cluster() -> Iterator[SentinelCluster]:
    """Sentinels in front of data nodes that require a password."""
    with SentinelCluster(password=PASSWORD, await_peers=False) as cluster:
        yield cluster


def refused_store(cluster: SentinelCluster) -> RedisSessionStore:
    """A store whose calls reach the primary through the sentinels, which refuses its password."""
    return RedisSessionStore.from_sentinel(
        cluster.sentinel_urls,
        cluster.service_name,
        password="nope",
        namespace=f"test-{uuid.uuid4().hex}:session",
    )


async def start_listener(store: RedisSessionStore, drop: DroppedCancellation) -> asyncio.Task[None]:
    """A refused call (which starts the listener), then the listener parked where it drops."""
    with pytest.raises(UnavailableError):
        await store.get_session("k1")
    async with asyncio.timeout(BOUND):
        await drop.reached.wait()
    assert store.client is not None
    pool = store.client.connection_pool
    assert isinstance(pool, PrimaryPool)
    assert pool._watcher is not None
    return pool._watcher


async def test_closing_ends_the_listener_though_its_cancellation_is_lost(
    guarded_cluster: SentinelCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Closing a Sentinel store ends its +switch-master listener within seconds even when the
    listener's SUBSCRIBE send swallows the cancellation that stops it."""
    drop = DroppedCancellation(monkeypatch)
    store = refused_store(guarded_cluster)
    listener = await start_listener(store, drop)
    async with asyncio.timeout(BOUND):
        await store.aclose()
    assert drop.dropped
    assert listener.done()


def test_loop_shutdown_ends_the_listener_though_its_cancellation_is_lost(
    guarded_cluster: SentinelCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`asyncio.run`, which cancels each leftover task once on the way out, returns within seconds
    though the listener of a store left open swallows that one cancellation."""
    drop = DroppedCancellation(monkeypatch)
    store = refused_store(guarded_cluster)

    async def leave_the_store_open() -> None:
        await start_listener(store, drop)

    # asyncio.run blocks its thread: a listener that outlives the shutdown keeps the thread alive.
    runner = threading.Thread(target=asyncio.run, args=(leave_the_store_open(),), daemon=True)
    runner.start()
    runner.join(BOUND)
    assert not runner.is_alive()
    assert drop.dropped
