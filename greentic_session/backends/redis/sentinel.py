"""Redis Sentinel: the pool of the primary Sentinel names for one service, and its caller.

Through Sentinel (`PrimaryPool`), a `READONLY` reply means the primary this pool talks to was
demoted: every connection to it is dropped (idle ones at once, busy ones when released) so the
next call asks Sentinel for the new primary; the refused call raises `UnavailableError`, since
nothing was applied. Replicas are never read: a stale revision would break compare-and-set.
Calls go through `SentinelCaller`, the single-node caller (`caller.RedisCaller`: gate, time
limits, retries, error mapping) that also moves the sentinels' own pools to a new event loop.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.sentinel import (
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
)

from .caller import RedisCaller, cancel_idle
from .untyped import untyped


def _raise_if_stopped() -> None:
    """Raise `CancelledError` if the running task was asked to stop, even if the request was lost.

    On Python 3.11, redis-py's per-send `asyncio.wait_for` (any client with a socket_timeout,
    such as the sentinels') returns normally when a cancellation arrives just as the send
    completes (CPython issue 86296); the task's `cancelling()` count still shows the request.
    A loop that never ends on its own checks this, or it would run (and be awaited) forever.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


__all__ = ["PrimaryPool", "SentinelCaller"]

# How long the +switch-master listener waits for a message before it PINGs its sentinel, and
# then for the PONG before it moves to the next sentinel (a silently dead peer sends nothing).
_SENTINEL_QUIET = 30.0


class _PrimaryConnection(SentinelManagedConnection):
    """A connection to the service's primary that tells its pool when that primary is demoted.

    Unlike redis-py's SentinelManagedConnection, a `READONLY` reply stays a `ReadOnlyError` (a
    refusal: nothing was applied) instead of becoming a `ConnectionError` (which a write would
    have to report as an unknown outcome), and it drops every connection to the old primary, not
    only this one.
    """

    connection_pool: PrimaryPool
    generation = -1  # the pool's generation when this connection was opened

    async def connect_to(self, address: Any) -> None:
        self.generation = self.connection_pool.generation
        await untyped(super()).connect_to(address)

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            # Past SentinelManagedConnection's own READONLY handling, to the plain connection's.
            return await super(SentinelManagedConnection, self).read_response(*args, **kwargs)
        except redis_errors.ReadOnlyError:
            await self.connection_pool.forget_primary()
            raise


class _PrimarySSLConnection(_PrimaryConnection, SentinelManagedSSLConnection):
    pass


class PrimaryPool(SentinelConnectionPool):
    """The connection pool of the primary Sentinel names for one service (never a replica).

    Every connection records the pool's generation when it opens; `forget_primary` starts a new
    generation, so connections to the old primary are closed instead of reused (idle ones at
    once; busy ones, whose calls may still be reading replies, when they are released), and the
    next connection asks Sentinel where the primary is. A change of the address Sentinel reports
    does the same. Closing the pool closes the sentinels' connections too.
    """

    def __init__(
        self,
        service_name: str,
        sentinel: Sentinel,
        *,
        tls: bool,
        watch_switches: bool = True,
        **kwargs: Any,
    ):
        connection_class = _PrimarySSLConnection if tls else _PrimaryConnection
        untyped(super()).__init__(
            service_name,
            sentinel,
            is_master=True,
            connection_class=connection_class,
            **kwargs,
        )
        self.generation = 0
        self.watch_switches = watch_switches
        self._watcher: asyncio.Task[None] | None = None

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        if self.watch_switches and (self._watcher is None or self._watcher.done()):
            self._watcher = asyncio.create_task(self._watch_switches())
        return await untyped(super()).get_connection(*args, **kwargs)

    async def _watch_switches(self) -> None:
        """Forget the primary as soon as a sentinel announces `+switch-master` for this service.

        Without this, connections already open keep writing to the old primary, which
        acknowledges them, until Sentinel demotes it (about 10 s after the switch; its `READONLY`
        replies are the backstop), and everything it acknowledged meanwhile is lost. One
        sentinel's announcement is enough; when none can be reached, calls discover on their own.
        """
        service = self.service_name.encode()
        while True:
            for client in self.sentinel_manager.sentinels:
                _raise_if_stopped()
                pubsub = client.pubsub()
                try:
                    await pubsub.subscribe("+switch-master")
                    awaiting_pong = False
                    while True:
                        _raise_if_stopped()
                        message = await pubsub.get_message(
                            ignore_subscribe_messages=True, timeout=_SENTINEL_QUIET
                        )
                        if message is None:
                            if awaiting_pong:
                                break  # silent even to a PING: listen to the next sentinel
                            await pubsub.ping()
                            awaiting_pong = True
                            continue
                        awaiting_pong = False
                        await self._on_switch(service, message.get("data"))
                except (redis_errors.RedisError, OSError):
                    pass  # this sentinel is unreachable: listen to the next one
                finally:
                    await pubsub.aclose()
            await asyncio.sleep(1.0)  # none reachable: try again later, calls fail meanwhile

    async def _on_switch(self, service: bytes, data: object) -> None:
        """Forget the primary if `data` (a `+switch-master` message: "<service> <old ip> <old
        port> <new ip> <new port>") moves this service to an address the pool is not using."""
        if not isinstance(data, bytes):
            return
        fields = data.split(b" ")
        if len(fields) != 5 or fields[0] != service:
            return
        known = self.master_address
        if known is not None and (str(known[0]).encode(), str(known[1]).encode()) == (
            fields[3],
            fields[4],
        ):
            return  # a new connection already found the new primary
        await self.forget_primary()

    async def _stop_watching(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is None or watcher.done():
            return
        if watcher.get_loop() is not asyncio.get_running_loop():
            cancel_idle(watcher)
            return
        watcher.cancel()
        await asyncio.wait([watcher])  # let its pubsub close; our own cancellation propagates

    async def forget_primary(self) -> None:
        """Stop using the current primary: it was demoted (or Sentinel switched away from it)."""
        self.generation += 1
        self.master_address = None
        await super().disconnect(inuse_connections=False)

    async def get_master_address(self) -> Any:
        known = self.master_address
        address = await untyped(super()).get_master_address()
        if known is not None and address != known:
            # Sentinel moved the service: busy connections still talk to the old primary.
            self.generation += 1
        return address

    async def release(self, connection: Any) -> None:
        if getattr(connection, "generation", self.generation) != self.generation:
            await connection.disconnect()
        await super().release(connection)

    async def disconnect(self, inuse_connections: bool = True) -> None:
        if inuse_connections:  # closing (or leaving a loop): the watcher and sentinels too
            await self._stop_watching()
        await super().disconnect(inuse_connections)
        if inuse_connections:
            for client in self.sentinel_manager.sentinels:
                await client.connection_pool.disconnect()

    def reset(self) -> None:
        untyped(super()).reset()
        watcher = getattr(self, "_watcher", None)  # reset() runs inside __init__ too
        if watcher is not None:
            cancel_idle(watcher)
            self._watcher = None

    def loop_bound_pools(self) -> list[Any]:
        """The sentinels' own pools, bound to the event loop like this one."""
        return [client.connection_pool for client in self.sentinel_manager.sentinels]


class SentinelCaller(RedisCaller):
    """The caller of a store on a `PrimaryPool`: a single-node caller whose move to a new event
    loop also renews the sentinels' pools (bound to the loop like the primary's)."""

    def __init__(self, client: aioredis.Redis, **options: Any) -> None:
        super().__init__(client, **options)
        pool = client.connection_pool
        if not isinstance(pool, PrimaryPool):
            raise TypeError(f"SentinelCaller needs a PrimaryPool, not {type(pool).__name__}")
        self._primary = pool

    def _loop_bound_pools(self) -> list[Any]:
        return [self._primary, *self._primary.loop_bound_pools()]
