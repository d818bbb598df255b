"""An auto-pipelining Redis client: a few shared `BatchedConnection`s, least-loaded choice.

`BatchingPool` is a drop-in for `client.execute_command(*args)` (`execute`) and for a MULTI/EXEC
pipeline (`transaction`). Many tasks' commands issued in one event-loop turn go out as one write
per connection and resolve in order (see `connection` for the cancellation and failure rules).

- URLs and options mean what they mean to redis-py: they go through redis-py's own
  `ConnectionPool.from_url` and connection classes, and the transport reads host, port, unix
  socket path, db, credentials, client name, timeouts and redis-py's TLS context from the
  connection object redis-py builds (it is never connected). The wire protocol is RESP2.
- Setup per connection, pipelined in one write: AUTH (username and password, or a redis-py
  credential provider), CLIENT SETNAME, SELECT. Connect, TLS handshake and setup share one
  `connect_timeout`. A wrong password raises redis-py's `AuthenticationError`; any other
  failure `ConnectError` (`ConnectTimeoutError` past the deadline), whatever raised it.
- Replies are raw RESP2 values (bytes, int, list, None): redis-py's response callbacks do not run
  (a SET answers b"OK", not True). Error replies raise redis-py's exception classes.
- Connections open lazily, one at a time, up to `connections`: a call opens a new one when every
  open one is busy; a dead connection is dropped and replaced on a later call.
- Backpressure: a connection takes at most `max_in_flight` unanswered requests and
  `max_in_flight_bytes` of unanswered request bytes (a bigger single request is let through on an
  idle connection). A call that finds every connection at its bound waits up to `queue_timeout`,
  then raises `PoolBusyError`.
- Least-loaded choice: load is unanswered requests plus one per 16 KiB of unanswered request
  bytes, so a huge value or a queue of slow scripts steers new calls to the other connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Self

import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.connection import AbstractConnection, SSLConnection, UnixDomainSocketConnection
from redis.credentials import UsernamePasswordCredentialProvider

from .connection import (
    BatchedConnection,
    ConnectError,
    ConnectionLostError,
    ConnectTimeoutError,
    NotSentError,
    PoolBusyError,
    ReplyTimeoutError,
    TransportError,
    WriteOutcomeUnknownError,
    pack,
)

__all__ = [
    "BatchingPool",
    "ConnectError",
    "ConnectTimeoutError",
    "ConnectionLostError",
    "NotSentError",
    "PoolBusyError",
    "PoolStats",
    "ReplyTimeoutError",
    "TransportError",
    "UnqueuedError",
    "WriteOutcomeUnknownError",
    "exec_result",
]

DEFAULT_CONNECTIONS = 2
DEFAULT_MAX_IN_FLIGHT = 4096
DEFAULT_MAX_IN_FLIGHT_BYTES = 32 * 1024 * 1024
DEFAULT_QUEUE_TIMEOUT = 2.0
_BYTES_PER_LOAD = 14  # log2 of the request bytes that weigh as much as one unanswered request

_MULTI = pack(("MULTI",))
_EXEC = pack(("EXEC",))
_ASKING = pack(("ASKING",))


class BatchingPool:
    """Up to `connections` auto-pipelined connections to one Redis server (module docstring).

    Build it with `from_url`; `template` is the redis-py connection object whose settings
    (address, TLS context, credentials, db, timeouts) every batched connection copies.
    """

    def __init__(
        self,
        template: AbstractConnection,
        *,
        connections: int = DEFAULT_CONNECTIONS,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        max_in_flight_bytes: int = DEFAULT_MAX_IN_FLIGHT_BYTES,
        queue_timeout: float = DEFAULT_QUEUE_TIMEOUT,
    ) -> None:
        if connections < 1 or max_in_flight < 1 or max_in_flight_bytes < 1:
            raise ValueError("connections, max_in_flight and max_in_flight_bytes must be >= 1")
        self._template = template
        self.where: str = template._host_error()  # host:port or socket path, no credentials
        self.connections = connections
        self.max_in_flight = max_in_flight
        self.max_in_flight_bytes = max_in_flight_bytes
        self.queue_timeout = queue_timeout
        self.socket_timeout: float | None = template.socket_timeout
        self.connect_timeout: float | None = template.socket_connect_timeout
        self._ssl: ssl.SSLContext | None = None
        if isinstance(template, SSLConnection):
            self._ssl = template.ssl_context.get()
        self._live: list[BatchedConnection] = []
        self._opening: asyncio.Task[BatchedConnection] | None = None
        self._waiters: list[asyncio.Future[None]] = []
        self._closed = False
        self._retired = [0, 0]  # batches and requests written by connections already dropped
        self._opened_count = 0

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        connections: int = DEFAULT_CONNECTIONS,
        connect_timeout: float | None = None,
        socket_timeout: float | None = None,
        ssl_ca_certs: str | None = None,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        max_in_flight_bytes: int = DEFAULT_MAX_IN_FLIGHT_BYTES,
        queue_timeout: float = DEFAULT_QUEUE_TIMEOUT,
        **redis_options: Any,
    ) -> Self:
        """A pool for `url` (`redis://`, `rediss://`, `unix://`), parsed by redis-py.

        `redis_options` are redis-py connection options (`username`, `password`, `db`,
        `client_name`, `credential_provider`, `ssl_*`...); as in redis-py, the URL's own query
        options win. `socket_timeout` None means no per-call limit.
        """
        if connect_timeout is not None:
            redis_options["socket_connect_timeout"] = connect_timeout
        if ssl_ca_certs is not None:
            redis_options["ssl_ca_certs"] = ssl_ca_certs
        redis_options["socket_timeout"] = socket_timeout
        parsed = aioredis.ConnectionPool.from_url(url, **redis_options)
        template = parsed.connection_class(**parsed.connection_kwargs)
        return cls(
            template,
            connections=connections,
            max_in_flight=max_in_flight,
            max_in_flight_bytes=max_in_flight_bytes,
            queue_timeout=queue_timeout,
        )

    def __repr__(self) -> str:
        return f"BatchingPool({self.where}, connections={len(self._live)}/{self.connections})"

    # -- calls ---------------------------------------------------------------------------------

    async def execute(self, *args: Any, write: bool = False) -> Any:
        """Send one command and return its raw reply; an error reply raises redis-py's class.

        `write` says whether the command may change data: a write whose reply is lost raises
        `WriteOutcomeUnknownError` (a read: `ConnectionLostError`, safe to retry).
        """
        payload = pack(args)
        connection = self._choose(len(payload))
        if connection is None:
            connection = await self._acquire(len(payload))
        return await connection.submit(payload, write=write)

    async def transaction(
        self, commands: Iterable[Sequence[Any]], *, write: bool = True
    ) -> list[Any]:
        """Run `commands` inside MULTI ... EXEC, written as one unit; returns EXEC's replies.

        What each outcome raises is `exec_result`'s.
        """
        packed = [pack(tuple(command)) for command in commands]
        payload = b"".join([_MULTI, *packed, _EXEC])
        connection = self._choose(len(payload))
        if connection is None:
            connection = await self._acquire(len(payload))
        replies: list[Any] = await connection.submit(payload, replies=len(packed) + 2, write=write)
        return exec_result(replies)

    async def execute_asking(self, *args: Any, write: bool = False) -> Any:
        """ASKING then one command, written as one unit (a cluster slot mid-migration: the
        target node serves the command only right after ASKING on the same connection)."""
        payload = _ASKING + pack(args)
        connection = self._choose(len(payload))
        if connection is None:
            connection = await self._acquire(len(payload))
        replies: list[Any] = await connection.submit(payload, replies=2, write=write)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies[1]

    # -- choosing a connection -----------------------------------------------------------------

    def _has_room(self, connection: BatchedConnection, size: int) -> bool:
        if connection.outstanding >= self.max_in_flight:
            return False
        queued = connection.queued_bytes
        return queued == 0 or queued + size <= self.max_in_flight_bytes

    def _choose(self, size: int) -> BatchedConnection | None:
        """The least-loaded live connection with room for `size` bytes, or None; opens another
        connection in the background when every live one is busy."""
        best: BatchedConnection | None = None
        best_load = 1 << 62
        dead = False
        for connection in self._live:
            if connection.closed:
                dead = True
                continue
            load = connection.outstanding + (connection.queued_bytes >> _BYTES_PER_LOAD)
            if load < best_load and self._has_room(connection, size):
                best, best_load = connection, load
                if load == 0:
                    break
        if dead:
            self._prune()
        if (
            best_load > 0
            and self._opening is None
            and len(self._live) < self.connections
            and not self._closed
        ):
            self._start_opening()
        return best

    async def _acquire(self, size: int) -> BatchedConnection:
        """A connection with room: opens one if none is open, else waits for room up to
        `queue_timeout` (then `PoolBusyError`)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.queue_timeout
        while True:
            if self._closed:
                raise NotSentError(f"the batching pool for {self.where} is closed")
            connection = self._choose(size)
            if connection is not None:
                return connection
            if self._opening is None and len(self._live) < self.connections:
                self._start_opening()
            opening = self._opening
            if opening is not None:
                try:
                    await asyncio.shield(opening)  # its failure is every waiter's error
                finally:
                    # Awaiting a finished task does not yield: account for it now, not in the
                    # done callback the loop has yet to run, or this loop would spin.
                    if opening.done():
                        self._opened(opening)
                continue
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter
            except TimeoutError:
                raise PoolBusyError(
                    f"No connection available: every connection to {self.where} stayed at its "
                    f"in-flight bound for queue_timeout={self.queue_timeout}s"
                ) from None
            finally:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)

    def _wake(self) -> None:
        """Replies freed room on some connection: let every waiter look again."""
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def _prune(self) -> None:
        kept = []
        for connection in self._live:
            if connection.closed:
                self._retired[0] += connection.batches
                self._retired[1] += connection.batched
            else:
                kept.append(connection)
        self._live = kept

    # -- opening -------------------------------------------------------------------------------

    def _start_opening(self) -> None:
        task = asyncio.get_running_loop().create_task(self._open())
        self._opening = task
        task.add_done_callback(self._opened)

    def _opened(self, task: asyncio.Task[BatchedConnection]) -> None:
        if self._opening is not task:
            return  # already accounted for (by _acquire or the done callback)
        self._opening = None
        if task.cancelled():
            return
        error = task.exception()  # retrieved here so a background open never logs it
        if error is None:
            connection = task.result()
            self._opened_count += 1
            if self._closed:
                connection.close()
            else:
                self._live.append(connection)
        self._wake()

    async def _open(self) -> BatchedConnection:
        """A connected, set-up connection, or an error within `connect_timeout` in all.

        TCP connect, TLS handshake, credentials, AUTH, CLIENT SETNAME and SELECT share one
        deadline, and whatever fails on the way (an exception in a protocol callback or a
        credential provider included) is `ConnectError`, except a refused password
        (`AuthenticationError`); the link is dropped either way.
        """
        template = self._template
        connection = BatchedConnection(
            where=self.where, socket_timeout=self.socket_timeout, on_capacity=self._wake
        )
        connected = False
        try:
            async with asyncio.timeout(self.connect_timeout):
                await self._connect(connection, template)
                connected = True
                await self._set_up(connection, template)
        except BaseException as exc:
            connection.abort()
            if isinstance(exc, redis_errors.AuthenticationError) or not isinstance(exc, Exception):
                raise
            error, cause = self._setup_error(exc, connection, connected=connected)
            raise error from cause
        return connection

    async def _connect(self, connection: BatchedConnection, template: AbstractConnection) -> None:
        """TCP (or unix socket) connect and TLS handshake; `_NotAttached` if the loop returned a
        transport whose `connection_made` failed (that transport is dropped here)."""
        loop = asyncio.get_running_loop()
        if isinstance(template, UnixDomainSocketConnection):
            link, _ = await loop.create_unix_connection(lambda: connection, template.path)
        else:
            host: str = getattr(template, "host", "localhost")
            port: int = getattr(template, "port", 6379)
            link, _ = await loop.create_connection(lambda: connection, host, port, ssl=self._ssl)
        if not connection.ready:
            with contextlib.suppress(Exception):  # any loop's transport: nothing more to do
                link.abort()
            raise _NotAttached

    def _setup_error(
        self, exc: Exception, connection: BatchedConnection, *, connected: bool
    ) -> tuple[ConnectError, BaseException | None]:
        """The `ConnectError` for a failed open, and what it chains: the cause lets the error
        mapping name a likely misconfiguration (an untrusted certificate, no TLS reply)."""
        if isinstance(exc, TimeoutError):
            stage = "setting up the connection to" if connected else "connecting to"
            return ConnectTimeoutError(f"Error {stage} {self.where}: timed out"), (
                None if connected else exc
            )
        if isinstance(exc, OSError):  # refused, unreachable, TLS (ssl.SSLError is an OSError)
            return ConnectError(f"Error connecting to {self.where}: {exc}"), exc
        if isinstance(exc, redis_errors.RedisError):  # a setup reply, or the link failed
            return ConnectError(f"Error setting up the connection to {self.where}: {exc}"), exc
        # A fault (a protocol callback or a credential provider raised): the type only, since
        # its text may hold what a message may not.
        if isinstance(exc, _NotAttached):
            fault = connection.fault  # None when connection_made itself raised to the loop
            what = (
                f"{type(fault).__name__} in connection_made" if fault else "connection_made raised"
            )
            return ConnectError(f"Error setting up the connection to {self.where}: {what}"), fault
        what = f"{type(exc).__name__} raised"
        return ConnectError(f"Error setting up the connection to {self.where}: {what}"), exc

    async def _set_up(self, connection: BatchedConnection, template: AbstractConnection) -> None:
        """AUTH, CLIENT SETNAME and SELECT, pipelined in one write, as redis-py sets up."""
        steps: list[asyncio.Future[Any]] = []
        provider = template.credential_provider
        if provider is None and (template.username or template.password):
            provider = UsernamePasswordCredentialProvider(template.username, template.password)
        if provider is not None:
            # get_credentials_async is redis-py >= 5.1; the extra allows 5.0.1.
            read_async = getattr(provider, "get_credentials_async", None)
            credentials = await read_async() if read_async else provider.get_credentials()
            steps.append(connection.submit(pack(("AUTH", *credentials)), write=False))
        if template.client_name:
            setname = ("CLIENT", "SETNAME", template.client_name)
            steps.append(connection.submit(pack(setname), write=False))
        if template.db:
            steps.append(connection.submit(pack(("SELECT", template.db)), write=False))
        for step in steps:  # a failed step fails the later ones too: nobody may miss them
            step.add_done_callback(_retrieve)
        for step in steps:
            await step

    # -- closing and stats ---------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close every connection: unwritten calls fail as not sent, written ones as lost."""
        self._closed = True
        opening = self._opening
        if opening is not None:
            opening.cancel()
            with contextlib.suppress(BaseException):
                await opening
        self._wake()
        live, self._live = self._live, []
        for connection in live:
            self._retired[0] += connection.batches
            self._retired[1] += connection.batched
            connection.close()
        for connection in live:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await connection.lost

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def busy_connections(self) -> int:
        """Open connections with requests awaiting replies."""
        return sum(
            1 for connection in self._live if connection.outstanding and not connection.closed
        )

    @property
    def in_flight(self) -> int:
        """Requests submitted on open connections and not yet answered."""
        return sum(c.outstanding for c in self._live if not c.closed)

    def stats(self) -> PoolStats:
        """Connections and writes since the pool was built (`written`: requests written by each
        live connection, in the order they opened)."""
        written = [connection.batched for connection in self._live]
        batches = self._retired[0] + sum(c.batches for c in self._live)
        requests = self._retired[1] + sum(written)
        return PoolStats(
            opened=self._opened_count,
            live=sum(not connection.closed for connection in self._live),
            batches=batches,
            requests=requests,
            written=written,
        )


@dataclass(frozen=True)
class PoolStats:
    """What a `BatchingPool` has done; `mean_batch` is requests per socket write."""

    opened: int
    live: int
    batches: int
    requests: int
    written: list[int]

    @property
    def mean_batch(self) -> float:
        return self.requests / self.batches if self.batches else 0.0


class _NotAttached(Exception):
    """The loop returned a transport whose `connection_made` failed (`BatchedConnection.fault`
    says why, when the failure happened inside it)."""


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class UnqueuedError(redis_errors.RedisError):
    """The server refused MULTI, then ran the commands meant for the transaction one by one (a
    refused MULTI opens no transaction; the server runs what follows as it comes).

    `refusal` is MULTI's error reply; `applied` how many of the `sent` commands succeeded.
    """

    def __init__(
        self, message: str, refusal: BaseException | None = None, applied: int = 0, sent: int = 0
    ) -> None:
        super().__init__(message)
        self.refusal, self.applied, self.sent = refusal, applied, sent


def exec_result(replies: list[Any]) -> list[Any]:
    """EXEC's replies from the replies to MULTI, the commands and EXEC, or the error that
    stopped the transaction.

    - MULTI refused: the commands ran outside a transaction. If any of them succeeded,
      `UnqueuedError`; if every one was refused too, nothing was written: MULTI's refusal.
    - A command refused while queueing: its error (the first one, as redis-py; nothing ran).
    - EXEC refused, or the transaction aborted: EXEC's error, or `WatchError`.
    - A command that failed inside EXEC: its error, as redis-py's pipeline does.
    """
    opened, outcome, commands = replies[0], replies[-1], replies[1:-1]
    if isinstance(opened, Exception):
        applied = sum(not isinstance(reply, Exception) for reply in commands)
        if applied:
            raise UnqueuedError(
                "MULTI was refused and the server ran the transaction's commands one by one",
                opened,
                applied,
                len(commands),
            )
        raise opened
    if isinstance(outcome, Exception):
        queued = [reply for reply in commands if isinstance(reply, Exception)]
        raise queued[0] if queued else outcome
    if outcome is None:
        raise redis_errors.WatchError("the transaction was aborted")
    for reply in outcome:
        if isinstance(reply, Exception):
            raise reply
    result: list[Any] = outcome
    return result
