"""How every Redis call is made: the connection gate, the per-call time limit, read retries,
script calls, and errors mapped to `SessionError` (see `errors`).

Failure rules:
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
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from ...errors import PoolExhaustedError
from .deadlines import Deadlines
from .errors import is_pool_full, to_session_error
from .scripts import Script

__all__ = ["RedisCaller"]

T = TypeVar("T")

# Pauses before the 2nd and 3rd attempt of a read whose connection failed.
_READ_BACKOFF = (0.02, 0.1)


class RedisCaller:
    """Runs calls on one `redis.asyncio.Redis` client under the rules in the module docstring."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        where: str,
        pool_timeout: float,
        socket_timeout: float | None,
    ) -> None:
        self.client = client
        self.where = where
        self.pool_timeout = pool_timeout
        self.socket_timeout = socket_timeout
        self._deadlines = None if socket_timeout is None else Deadlines(socket_timeout)
        pool = client.connection_pool
        self.gate = asyncio.Semaphore(min(getattr(pool, "max_connections", 2**31), 2**31))
        password = pool.connection_kwargs.get("password")
        self._secret: str | None = password if isinstance(password, str) and password else None

    async def eval(
        self,
        script: Script,
        keys: tuple[str, ...],
        args: tuple[str | bytes | int, ...],
        *,
        write: bool = False,
        key: str | None = None,
    ) -> Any:
        """Run `script` through `call` (`key` names the session for error messages)."""
        return await self.call(self._evalsha, script, keys, args, write=write, key=key)

    async def _evalsha(
        self, script: Script, keys: tuple[str, ...], args: tuple[str | bytes | int, ...]
    ) -> Any:
        """EVALSHA, or EVAL (which also caches it) if the server lacks the script.

        Called directly rather than through redis-py's Script object, whose per-call work costs
        a visible share of a call. A NOSCRIPT reply means nothing ran, so the retry is safe.
        """
        try:
            return await self.client.execute_command(  # type: ignore[no-untyped-call]
                "EVALSHA", script.sha, len(keys), *keys, *args
            )
        except redis_errors.NoScriptError:
            return await self.client.execute_command(  # type: ignore[no-untyped-call]
                "EVAL", script.source, len(keys), *keys, *args
            )

    async def call(
        self,
        op: Callable[..., Awaitable[T]],
        *args: Any,
        write: bool = False,
        key: str | None = None,
    ) -> T:
        """Run one Redis call through the gate, mapping redis-py errors to SessionErrors.

        Reads whose connection failed are retried after `_READ_BACKOFF` pauses; writes never are.
        """
        attempt = 0
        while True:
            await self._enter_gate()
            try:
                if self._deadlines is None:
                    return await op(*args)
                return await self._deadlines.run(op, *args)
            except TimeoutError as exc:  # our socket_timeout (redis-py's own is a RedisError)
                raise self._error(exc, write=write, key=key) from exc
            except redis_errors.ConnectionError as exc:
                retryable = not (
                    write
                    or attempt >= len(_READ_BACKOFF)
                    or isinstance(exc, redis_errors.AuthenticationError)
                    or is_pool_full(exc)
                )
                if not retryable:
                    raise self._error(exc, write=write, key=key) from exc
            except redis_errors.RedisError as exc:
                raise self._error(exc, write=write, key=key) from exc
            finally:
                self.gate.release()
            await asyncio.sleep(_READ_BACKOFF[attempt])
            attempt += 1

    def _error(
        self, exc: redis_errors.RedisError | TimeoutError, *, write: bool, key: str | None
    ) -> Exception:
        return to_session_error(
            exc,
            write=write,
            key=key,
            where=self.where,
            socket_timeout=self.socket_timeout,
            secret=self._secret,
        )

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
