"""How a store's calls reach Redis: the `Caller` protocol every topology's caller implements
(`RedisCaller` here for one node, `sentinel.SentinelCaller`, `cluster.ClusterCaller`), what a
store can learn about its connections (`ConnectionStats`), and the single-node caller: the
connection gate, the per-call time limit, read retries, script calls, and errors mapped to
`SessionError` (see `errors`).

Two transports: by default (`batching`) commands go through `transport.BatchingPool`, whose
connections carry the calls of many tasks in one write and handle cancellation, lost replies and
time limits themselves (see docs/transport.md); the gate and the per-call limit below then stand
aside. With `batching=False` they go through redis-py's pool, under these rules:
- redis-py's own retries are off: they re-send commands whose replies were lost, which could apply
  a write twice. Reads are retried here with a short bounded backoff; a write whose reply was lost
  raises `UnknownOutcomeError`.
- redis-py closes a connection whenever a call is interrupted mid-reply (cancellation included),
  so a cancelled call never leaves a reply behind for the next user of that connection.
- A gate of `max_connections` permits bounds in-flight calls, so a saturated pool waits at most
  `pool_timeout` and then raises `PoolExhaustedError`, distinct from "server down".
- `socket_timeout` bounds each call here (`deadlines.Deadlines`) rather than in redis-py, whose
  per-send `asyncio.wait_for` (a new task on Python 3.11) and per-read timeout cost about a
  quarter of a GET's client CPU. On expiry redis-py drops the interrupted connection, as for any
  cancellation.
- Errors are mapped by `errors.to_session_error` and raised outside any `except` block, so
  nothing redis-py raised (its text may echo keys with user ids) hangs off them.
- Operators get one WARNING on `greentic_session.redis` when the connection is lost and one INFO
  when it is back (the redacted address and the kind of failure only).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, NamedTuple, Protocol, TypeVar

import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from ...errors import InvalidInputError, PoolExhaustedError, SessionError
from .errors import cluster_redirect, is_connection_failure, is_pool_full, to_session_error
from .scripts import Script
from .time_limits import Deadlines
from .transport import BatchingPool, ConnectTimeoutError, exec_result
from .untyped import untyped

__all__ = ["Caller", "ConnectionStats", "Moving", "RedisCaller", "cancel_idle"]

T = TypeVar("T")

Moving = Literal["wait", "raise"]
"""What a script call does while its cluster slot is mid-migration (see `Caller.eval`)."""


@dataclass(frozen=True, slots=True)
class ConnectionStats:
    """A store's connections now (`RedisSessionStore.pool_stats()`), summed over a cluster's
    masters, which `nodes` lists one by one ("host:port"; empty on one node).

    `in_use`: connections with a call under way (batched: awaiting replies; unbatched: the calls
    holding one of the gate's `max_connections` permits); `idle`: open connections with none;
    `in_flight`: batched calls written and awaiting their replies (0 unbatched); `batches` and
    `requests`: the batching transport's socket writes and the calls they carried, since it was
    built on the current event loop (0 unbatched).
    """

    in_use: int = 0
    idle: int = 0
    in_flight: int = 0
    batches: int = 0
    requests: int = 0
    nodes: Mapping[str, ConnectionStats] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def total(cls, nodes: Mapping[str, ConnectionStats]) -> ConnectionStats:
        """The sum of `nodes` (a cluster's masters), listing them."""
        values = nodes.values()
        return cls(
            in_use=sum(node.in_use for node in values),
            idle=sum(node.idle for node in values),
            in_flight=sum(node.in_flight for node in values),
            batches=sum(node.batches for node in values),
            requests=sum(node.requests for node in values),
            nodes=MappingProxyType(dict(nodes)),
        )


class Caller(Protocol):
    """How a store's calls reach Redis, whatever the topology: each call is one command, one
    script or one MULTI unit, with `SessionError`s for failures (`UnknownOutcomeError` for a
    write whose reply was lost). `key` names the session for error messages."""

    async def eval(
        self,
        script: Script,
        keys: tuple[str, ...],
        args: tuple[str | bytes | int, ...],
        *,
        write: bool = False,
        key: str | None = None,
        moving: Moving = "wait",
    ) -> Any:
        """Run `script` (EVALSHA, else EVAL). On a cluster, every key shares `keys[0]`'s slot;
        while that slot is mid-migration the call waits for it to settle, or, with
        `moving="raise"` (a read the caller can do key by key instead), raises
        `errors.ClusterRedirect` at once. One node has no slots: `moving` changes nothing."""
        ...

    async def execute(self, *args: Any, write: bool = False, key: str | None = None) -> Any:
        """One command; on a cluster `args[1]` is its key and routes it."""
        ...

    async def transaction(
        self, commands: Sequence[tuple[Any, ...]], *, key: str | None = None
    ) -> list[Any]:
        """MULTI, `commands`, EXEC as one unit (a write); on a cluster all share one slot."""
        ...

    def pool_stats(self) -> ConnectionStats:
        """The connections now (see `ConnectionStats`)."""
        ...

    async def aclose(self) -> None:
        """Close every connection this caller opened."""
        ...


# Pauses before the 2nd and 3rd attempt of a read whose connection failed.
_READ_BACKOFF = (0.02, 0.1)

# Operators' view of the connection: WARNING when it is lost, INFO when it is back. Records name
# only the redacted address and the kind of failure, never a key, user id, payload or secret.
log = logging.getLogger("greentic_session.redis")


def _renew_loop_bound_locks(pool: object) -> None:
    """Give `pool` fresh asyncio locks: one that ever made a caller wait is bound to that loop.

    redis-py (6.x holds its pool lock while connecting) has no public way to do this; the
    attributes are replaced only when they hold what this expects, on a loop switch only.
    """
    for name in ("_lock", "_condition"):
        primitive = getattr(pool, name, None)
        if type(primitive) is asyncio.Lock:
            setattr(pool, name, asyncio.Lock())
        elif type(primitive) is asyncio.Condition:
            setattr(pool, name, asyncio.Condition())


class _Closing(NamedTuple):
    """A batching pool left on an old loop: its watcher closes it like a redis-py connection."""

    batch: BatchingPool

    async def disconnect(self) -> None:
        await self.batch.aclose()


def _running_loop() -> asyncio.AbstractEventLoop:
    """The running asyncio loop; called from another async library, a clear error instead."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        pass
    raise InvalidInputError(
        "the Redis backend runs on asyncio only (redis-py is built on asyncio) and was called "
        "from another async library (trio?); run it under asyncio, or use the in-memory backend"
    )


def _retryable(exc: BaseException, write: bool) -> bool:
    """Whether a failed call may be tried again: a read whose connection failed, unless the
    server refused the credentials, no connection had room or a new connection timed out (a
    retry would only wait again)."""
    return (
        not write
        and isinstance(exc, redis_errors.ConnectionError)
        and not isinstance(exc, redis_errors.AuthenticationError | ConnectTimeoutError)
        and not is_pool_full(exc)
    )


def _loop_or_none() -> asyncio.AbstractEventLoop | None:
    """The running asyncio loop, or None (then `call` says what is wrong)."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def cancel_idle(task: asyncio.Task[None]) -> None:
    """Cancel a task of a loop that is not running (RedisCaller checks): it resumes, and closes
    its connections, if that loop runs again; a closed loop dropped it already."""
    if not task.get_loop().is_closed():
        task.cancel()


class RedisCaller:
    """The `Caller` of one node: runs calls on one `redis.asyncio.Redis` client under the rules
    in the module docstring (a cluster's `ClusterCaller` has one per master).

    Event loops: redis-py connections and the gate belong to the loop that made them. Each call
    checks that the running loop is the one the caller last ran on (one identity check); on a
    new loop it takes a fresh gate and drops the old loop's connections, which a watcher closes
    while the old loop shuts down (`asyncio.run` and `asyncio.Runner` close async generators
    before closing the loop). Using one store from two loops at once (two threads) is refused
    with `InvalidInputError`; the store stays usable from whichever loop calls next.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        where: str,
        pool_timeout: float,
        socket_timeout: float | None,
        batching: Callable[[], BatchingPool] | None = None,
        cluster: bool = False,
    ) -> None:
        self.client = client
        # A cluster node's caller raises `errors.ClusterRedirect` for MOVED, ASK and TRYAGAIN
        # replies, for `cluster.ClusterCaller` to act on, instead of mapping them.
        self._cluster = cluster
        self.where = where
        self.pool_timeout = pool_timeout
        self.socket_timeout = socket_timeout
        # With batching, calls share auto-pipelined connections (transport.BatchingPool), whose
        # own in-flight bounds give backpressure and whose per-connection watchdog bounds every
        # written call: no gate of max_connections permits, no per-call time limit.
        self._new_batch = batching
        self.batch: BatchingPool | None = None
        self._deadlines = None
        if socket_timeout is not None and batching is None:
            self._deadlines = Deadlines(socket_timeout)
        pool = client.connection_pool
        self._permits = min(getattr(pool, "max_connections", 2**31), 2**31)
        if batching is not None:
            self._permits = 2**31
        self.gate = asyncio.Semaphore(self._permits)
        self._loop: asyncio.AbstractEventLoop | None = None
        # Each loop's watcher, kept alive until it ran (or its loop closed without running it).
        self._watches: list[tuple[asyncio.AbstractEventLoop, AsyncIterator[None]]] = []
        self._left_behind: list[Any] = []  # connections the current loop's watcher closes
        kwargs = pool.connection_kwargs
        password = kwargs.get("password")
        self._secret: str | None = password if isinstance(password, str) and password else None
        connection_class = getattr(pool, "connection_class", None)
        self._tls = isinstance(connection_class, type) and issubclass(
            connection_class, aioredis.SSLConnection
        )
        # Connection health, for operators' log and for hints in error messages: `_healthy` is
        # the hot-path flag (False until the first reply and after a lost connection).
        self._healthy = False
        self._reached = False  # any reply since the store opened
        self._warned = False  # a WARNING went out and no INFO yet

    def pool_stats(self) -> ConnectionStats:
        batch = self.batch
        if batch is not None:
            busy, written = batch.busy_connections, batch.stats()
            return ConnectionStats(
                in_use=busy,
                idle=max(0, written.live - busy),
                in_flight=batch.in_flight,
                batches=written.batches,
                requests=written.requests,
            )
        pool = self.client.connection_pool
        return ConnectionStats(
            # The calls holding a connection: the gate's taken permits (asyncio.Semaphore's
            # `_value` is its free ones).
            in_use=max(0, self._permits - self.gate._value),
            idle=len(getattr(pool, "_available_connections", ())),
        )

    async def eval(
        self,
        script: Script,
        keys: tuple[str, ...],
        args: tuple[str | bytes | int, ...],
        *,
        write: bool = False,
        key: str | None = None,
        moving: Moving = "wait",
    ) -> Any:
        """Run `script` through `call` (`key` names the session for error messages); one node
        has no slot to move, so `moving` changes nothing (see `Caller.eval`)."""
        batch = self.batch
        if batch is not None and _loop_or_none() is self._loop:
            # The batched fast path (see `_fast_failure`): EVALSHA straight to the transport.
            failure: BaseException
            try:
                result = await batch.execute(
                    "EVALSHA", script.sha, len(keys), *keys, *args, write=write
                )
            except redis_errors.RedisError as exc:
                failure = exc
            else:
                if not self._healthy:
                    self._replied()
                return result
            if self._fast_failure(failure, write):
                raise self._raised(failure, write=write, key=key)
            if isinstance(failure, redis_errors.NoScriptError):  # EVAL (which also caches it)
                source = ("EVAL", script.source, len(keys), *keys, *args)
                return await self.call(self._send, write, *source, write=write, key=key)
            await asyncio.sleep(_READ_BACKOFF[0])
            return await self.call(
                self._evalsha, script, keys, args, write, write=write, key=key, retry=1
            )
        return await self.call(self._evalsha, script, keys, args, write, write=write, key=key)

    async def _evalsha(
        self,
        script: Script,
        keys: tuple[str, ...],
        args: tuple[str | bytes | int, ...],
        write: bool,
    ) -> Any:
        """EVALSHA, or EVAL (which also caches it) if the server lacks the script.

        Called directly rather than through redis-py's Script object, whose per-call work costs
        a visible share of a call. A NOSCRIPT reply means nothing ran, so the retry is safe.
        """
        try:
            return await self._send(write, "EVALSHA", script.sha, len(keys), *keys, *args)
        except redis_errors.NoScriptError:
            pass
        # Outside the except block, so an EVAL failure does not chain the NOSCRIPT reply.
        return await self._send(write, "EVAL", script.source, len(keys), *keys, *args)

    async def execute(
        self, *args: Any, write: bool = False, key: str | None = None, asking: bool = False
    ) -> Any:
        """One command through `call` (`key` names the session for error messages); `asking`
        sends ASKING first on the same connection (a cluster slot mid-migration)."""
        batch = self.batch
        if batch is not None and not asking and _loop_or_none() is self._loop:
            # The batched fast path (see `_fast_failure`): straight to the transport.
            failure: BaseException
            try:
                result = await batch.execute(*args, write=write)
            except redis_errors.RedisError as exc:
                failure = exc
            else:
                if not self._healthy:
                    self._replied()
                return result
            if self._fast_failure(failure, write):
                raise self._raised(failure, write=write, key=key)
            await asyncio.sleep(_READ_BACKOFF[0])
            return await self.call(self._send, write, *args, write=write, key=key, retry=1)
        op = self._send_asking if asking else self._send
        return await self.call(op, write, *args, write=write, key=key)

    @staticmethod
    def _fast_failure(exc: BaseException, write: bool) -> bool:
        """Whether a batched fast-path call that failed with `exc` fails as it is.

        With batching the gate and the per-call limit stand aside (the transport bounds both), so
        `execute` and `eval` skip `call`'s layers: about 2 us of a 20 us call at c=64. What needs
        those layers goes through `call` again: a read whose connection failed (its retries) and
        a script the server lacks (NOSCRIPT: EVAL next). Both ran nowhere, so a second try is safe.
        """
        return not (isinstance(exc, redis_errors.NoScriptError) or _retryable(exc, write))

    async def transaction(
        self, commands: Sequence[tuple[Any, ...]], *, key: str | None = None
    ) -> list[Any]:
        """MULTI, `commands`, EXEC as one unit through `call`: a write."""
        return await self.call(self._multi, commands, write=True, key=key)

    async def _send(self, write: bool, *args: Any) -> Any:
        batch = self.batch
        if batch is not None:
            return await batch.execute(*args, write=write)
        return await untyped(self.client).execute_command(*args)

    async def _send_asking(self, write: bool, *args: Any) -> Any:
        batch = self.batch
        if batch is not None:
            return await batch.execute_asking(*args, write=write)
        pipe = self.client.pipeline(transaction=False)
        pipe.execute_command("ASKING")
        pipe.execute_command(*args)
        return (await pipe.execute())[1]

    async def _multi(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """MULTI, `commands`, EXEC in one write; every reply is read, then `exec_result` says
        what happened. A server that refuses MULTI runs the commands at once: MULTI's reply
        must be read, which redis-py's transaction pipeline does not do (it would report the
        EXEC's "without MULTI" error, as if nothing had been written)."""
        batch = self.batch
        if batch is not None:
            return await batch.transaction(commands, write=True)
        pipe = self.client.pipeline(transaction=False)
        pipe.execute_command("MULTI")
        for command in commands:
            pipe.execute_command(*command)
        pipe.execute_command("EXEC")
        return exec_result(await pipe.execute(raise_on_error=False))

    async def call(
        self,
        op: Callable[..., Awaitable[T]],
        *args: Any,
        write: bool = False,
        key: str | None = None,
        retry: int = 0,
    ) -> T:
        """Run one Redis call through the gate, mapping redis-py errors to SessionErrors.

        Reads whose connection failed are retried after `_READ_BACKOFF` pauses; writes never are.
        `retry` > 0 continues a read that already failed that many times, after its pause (the
        batched fast path).
        The error is raised outside any `except` block, so its `__context__` is not redis-py's
        exception (whose text may hold keys or a password); see `errors.to_session_error`.
        """
        if _running_loop() is not self._loop:
            await self._adopt_running_loop()
        attempt = retry
        while True:
            failure: BaseException | None = None
            await self._enter_gate()
            try:
                if self._deadlines is None:
                    result = await op(*args)
                else:
                    result = await self._deadlines.run(op, *args)
            except TimeoutError as exc:  # our socket_timeout (redis-py's own is a RedisError)
                failure = exc
            except redis_errors.ConnectionError as exc:
                if attempt >= len(_READ_BACKOFF) or not _retryable(exc, write):
                    failure = exc
            except redis_errors.RedisError as exc:
                failure = exc
            else:
                if not self._healthy:
                    self._replied()
                return result
            finally:
                self.gate.release()
            if failure is not None:
                raise self._raised(failure, write=write, key=key)
            await asyncio.sleep(_READ_BACKOFF[attempt])
            attempt += 1

    def _raised(self, exc: BaseException, *, write: bool, key: str | None) -> Exception:
        """What a failed call raises: a cluster node's redirect (`ClusterRedirect`, which
        carries no reply text), or the `SessionError` `exc` maps to."""
        if self._cluster:
            redirect = cluster_redirect(exc)
            if redirect is not None:
                if not self._healthy:
                    self._replied()
                return redirect
        return self._error(exc, write=write, key=key)

    def _error(self, exc: BaseException, *, write: bool, key: str | None) -> SessionError:
        if is_connection_failure(exc):
            self._lost(exc)
        elif not self._healthy and isinstance(exc, redis_errors.ResponseError):
            self._replied()  # the server answered, if only with an error
        return to_session_error(
            exc,
            write=write,
            key=key,
            where=self.where,
            socket_timeout=self.socket_timeout,
            secret=self._secret,
            tls=self._tls,
            ever_reached=self._reached,
        )

    async def aclose(self) -> None:
        """Close the client and its connections (the running loop's; never another loop's)."""
        await self.adopt_running_loop()
        if self.batch is not None:
            await self.batch.aclose()
        await self.client.aclose(close_connection_pool=True)

    # -- connection health, for operators ---------------------------------------------------------

    def _replied(self) -> None:
        self._healthy = self._reached = True
        if self._warned:
            self._warned = False
            log.info("connection to Redis at %s is back", self.where)

    def _lost(self, exc: BaseException) -> None:
        self._healthy = False
        if self._warned:
            return
        self._warned = True
        what = "lost the connection to" if self._reached else "cannot reach"
        log.warning(
            "%s Redis at %s (%s); calls fail until it is back",
            what,
            self.where,
            type(exc).__name__,
        )

    # -- event loops -------------------------------------------------------------------------------

    async def adopt_running_loop(self) -> None:
        """Make the running loop this caller's loop, if it is not yet (see the class docstring)."""
        if asyncio.get_running_loop() is not self._loop:
            await self._adopt_running_loop()

    async def _adopt_running_loop(self) -> None:
        loop = asyncio.get_running_loop()
        old = self._loop
        if old is not None and old.is_running():
            raise InvalidInputError(
                "this Redis session store is in use on another running event loop (another "
                "thread); open one store per event loop"
            )
        self._loop = loop
        self.gate = asyncio.Semaphore(self._permits)
        stale_batch, self.batch = self.batch, None if self._new_batch is None else self._new_batch()
        if stale_batch is not None and old is not None and not old.is_closed():
            self._left_behind.append(_Closing(stale_batch))
        if old is not None:
            # Connections made on the old loop can be neither used nor awaited from this one:
            # the pool forgets them, and the old loop's watcher closes them if that loop runs
            # again or shuts down (if it is closed already, its watcher closed them then).
            for pool in self._loop_bound_pools():
                stale = [
                    *getattr(pool, "_available_connections", ()),
                    *getattr(pool, "_in_use_connections", ()),
                ]
                pool.reset()
                _renew_loop_bound_locks(pool)
                if not old.is_closed():
                    self._left_behind.extend(stale)
        self._left_behind = left_behind = list[Any]()
        watch = self._watch_loop(loop, left_behind)
        await watch.__anext__()  # registers it with this loop's async-generator shutdown
        self._watches = [(seen, w) for seen, w in self._watches if not seen.is_closed()]
        self._watches.append((loop, watch))

    def _loop_bound_pools(self) -> list[Any]:
        """The redis-py pools whose connections and locks belong to the loop (sentinel.py adds
        the sentinels' own)."""
        return [self.client.connection_pool]

    async def _watch_loop(
        self, loop: asyncio.AbstractEventLoop, left_behind: list[Any]
    ) -> AsyncIterator[None]:
        """Closes `loop`'s connections when the loop shuts its async generators down."""
        try:
            yield
        finally:
            if self._loop is loop:  # stays set: the next loop's first call renews the pool
                await self.client.connection_pool.disconnect()
                if self.batch is not None:
                    await self.batch.aclose()
            for connection in left_behind:
                await connection.disconnect()
            self._watches = [(seen, w) for seen, w in self._watches if seen is not loop]

    async def _enter_gate(self) -> None:
        if not self.gate.locked():
            await self.gate.acquire()  # a free permit: returns without suspending
            return
        try:
            async with asyncio.timeout(self.pool_timeout):
                await self.gate.acquire()
        except TimeoutError:
            raise PoolExhaustedError(
                f"no Redis connection became free within {self.pool_timeout}s "
                f"(max_connections reached on {self.where})"
            ) from None
