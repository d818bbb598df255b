"""RedisSessionStore: the production backend on `redis.asyncio`; the only module importing redis.

Round trips per call: get 1, create 1 (MULTI SET blob + SET pointer EXEC), find_by_user 1 (a Lua
script follows the pointer; a stale pointer costs a second, compare-and-delete, trip), update 1 (a
Lua script checks existence and owner, then SETs), remove 1 (a Lua script reads the owner from the
blob's head, deletes the blob, and deletes the owner's pointer if it still names this session).

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
import hashlib
import re
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any, NamedTuple, NoReturn, Self, TypeVar, Unpack

try:
    import redis.asyncio as aioredis
    from redis import exceptions as redis_errors
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "The Redis session backend needs the redis extra: pip install 'greentic-session[redis]'"
    ) from exc

from ..codec import decode_session_data, encode_session_data, owner_prefix_length
from ..errors import (
    ErrorCode,
    InternalError,
    InvalidInputError,
    NotFoundError,
    PoolExhaustedError,
    SessionError,
    UnavailableError,
    UnknownOutcomeError,
)
from ..fence import (
    Scope,
    check_create,
    check_key,
    check_update,
    lookup_slot,
    scope_of,
    visible_to,
)
from ..schema import SessionData, SessionKey, TenantCtx, new_session_key
from ..store import SessionStore
from .deadlines import Deadlines
from .keys import RedisKeys
from .options import (
    DEFAULT_NAMESPACE,
    DEFAULT_POOL_TIMEOUT,
    RedisOptions,
    RedisPoolOptions,
    redact_url,
)

__all__ = ["RedisSessionStore"]

T = TypeVar("T")

# Pauses before the 2nd and 3rd attempt of a read whose connection failed.
_READ_BACKOFF = (0.02, 0.1)


class _Script(NamedTuple):
    source: bytes
    sha: str


def _load_script(*names: str) -> _Script:
    """A script from package data files, concatenated (shared Lua functions come first)."""
    lua = resources.files(__package__).joinpath("lua")
    source = "\n".join(lua.joinpath(name).read_text(encoding="utf-8") for name in names).encode()
    return _Script(source, hashlib.sha1(source, usedforsecurity=False).hexdigest())


_UPDATE = _load_script("owner.lua", "update.lua")
_REMOVE = _load_script("owner.lua", "remove.lua")
_FIND = _load_script("find.lua")
_CLEAR_POINTER = _load_script("clear_pointer.lua")

_POOL_FULL_MESSAGES = ("Too many connections", "No connection available")
# redis-py prefixes pipeline errors with the failing command, arguments (keys with user ids,
# blobs) included: never let that into a message.
_PIPELINE_ECHO = re.compile(r"Command # \d+ \(.*\) of pipeline caused error: ", re.DOTALL)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _retries_of(client: aioredis.Redis) -> int:
    """How often redis-py itself would re-send a command on this client's connections."""
    kwargs = client.connection_pool.connection_kwargs
    retry = kwargs.get("retry")
    if retry is not None:
        retries: int = retry.get_retries()
        return retries
    # redis-py turns retry_on_error/retry_on_timeout without a Retry into one retry.
    return 1 if kwargs.get("retry_on_error") or kwargs.get("retry_on_timeout") else 0


class RedisSessionStore(SessionStore):
    """Sessions in Redis, in the key layout the Rust greentic-session uses.

    Build it with `from_url(...)`, `create_session_store(SessionBackendConfig.redis_url(...))`, or
    around your own `redis.asyncio.Redis` (created with `retry=Retry(NoBackoff(), 0)`; the store
    does not close a client it was given). `socket_timeout` bounds each call; with None, only the
    client's own redis-py timeouts apply.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        pool_timeout: float = DEFAULT_POOL_TIMEOUT,
        socket_timeout: float | None = None,
        _owns_client: bool = False,
        _where: str | None = None,
    ) -> None:
        if not isinstance(client, aioredis.Redis):
            raise TypeError(f"client must be redis.asyncio.Redis, not {type(client).__name__}")
        if _retries_of(client) != 0:
            raise InvalidInputError(
                "RedisSessionStore needs a client with redis-py retries off "
                "(Redis(..., retry=Retry(NoBackoff(), 0))): redis-py re-sends commands whose "
                "reply was lost, which could apply a write twice; the store retries reads itself"
            )
        self.client = client
        self.keys = RedisKeys(namespace)
        pool = client.connection_pool
        self._pool_timeout = pool_timeout
        self._socket_timeout = socket_timeout
        self._deadlines = None if socket_timeout is None else Deadlines(socket_timeout)
        self._gate = asyncio.Semaphore(min(getattr(pool, "max_connections", 2**31), 2**31))
        self._owns_client = _owns_client
        self._closed = False
        self._where = _where or self._describe(pool.connection_kwargs)
        password = pool.connection_kwargs.get("password")
        self._password: str | None = password if isinstance(password, str) and password else None

    @staticmethod
    def _describe(kwargs: dict[str, Any]) -> str:
        if "path" in kwargs:
            return f"unix://{kwargs['path']}"
        return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"

    @classmethod
    def from_options(cls, options: RedisOptions) -> Self:
        """A store that owns a new client and pool built from `options`."""
        extra: dict[str, Any] = {}
        if options.tls_ca_file is not None:
            extra["ssl_ca_certs"] = options.tls_ca_file
        try:
            pool = aioredis.ConnectionPool.from_url(
                options.url,
                max_connections=options.max_connections,
                socket_connect_timeout=options.connect_timeout,
                socket_timeout=None,  # enforced per call by the store, see the module docstring
                retry=Retry(NoBackoff(), 0),
                **extra,
            )
        except ValueError:
            raise InvalidInputError("malformed Redis URL") from None
        client = aioredis.Redis(connection_pool=pool)
        return cls(
            client,
            namespace=options.namespace,
            pool_timeout=options.pool_timeout,
            socket_timeout=options.socket_timeout,
            _owns_client=True,
            _where=redact_url(options.url),
        )

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        **options: Unpack[RedisPoolOptions],
    ) -> Self:
        """A store for `url` (`redis://`, `rediss://`, `unix://`; credentials may be in it)."""
        return cls.from_options(RedisOptions(url=url, namespace=namespace, **options))

    def __repr__(self) -> str:
        return f"RedisSessionStore(url={self._where!r}, namespace={self.keys.namespace!r})"

    # -- the SessionStore API ------------------------------------------------------------------

    async def create_session(self, ctx: TenantCtx, data: SessionData) -> SessionKey:
        self._check_open()
        blob = encode_session_data(data)  # first: the fence reads fields this checks
        _, slot = check_create(ctx, data)
        key = new_session_key()
        pipe = self.client.pipeline(transaction=True)
        pipe.set(self.keys.session(key), blob)
        if slot is not None:
            pipe.set(self.keys.user(slot), key)
        await self._call(pipe.execute, write=True, key=key)
        return key

    async def get_session(self, key: str) -> SessionData | None:
        self._check_open()
        check_key(key)
        raw = await self._call(self.client.get, self.keys.session(key), key=key)
        return None if raw is None else self._decode(key, raw)

    async def update_session(self, key: str, data: SessionData) -> None:
        self._check_open()
        check_key(key)
        blob = encode_session_data(data)
        want = scope_of(data.tenant_ctx)
        prefix = owner_prefix_length(data.tenant_ctx)
        args = (want.env, want.tenant_id, want.team or "", want.user or "", blob, prefix)
        result = await self._call(
            self._eval, _UPDATE, self.keys.session(key), args, write=True, key=key
        )
        if result == 1:
            return
        if result == 0:
            raise NotFoundError(f"session {key!r} not found")
        if result == -1:
            raise self._corrupt(key, "stored blob is not SessionData JSON")
        env, tenant_id, team, user = (_text(part) for part in result)
        check_update(Scope(env, tenant_id, team or None, user or None), data)
        raise InternalError(f"session {key!r}: the owner check disagreed with the tenant fence")

    async def remove_session(self, key: str) -> None:
        self._check_open()
        check_key(key)
        args = (key, self.keys.user_prefix)
        removed = await self._call(
            self._eval, _REMOVE, self.keys.session(key), args, write=True, key=key
        )
        if removed != 1:
            raise NotFoundError(f"session {key!r} not found")

    async def find_by_user(
        self, ctx: TenantCtx, user: str
    ) -> tuple[SessionKey, SessionData] | None:
        self._check_open()
        slot = lookup_slot(ctx, user)
        pointer = self.keys.user(slot)
        found = await self._call(self._eval, _FIND, pointer, (self.keys.session_prefix,))
        if found is None:
            return None
        key, raw = _text(found[0]), found[1]
        if raw == 0:
            raise self._corrupt(key, "blob key holds a non-string Redis value")
        if raw is not None:
            data = self._decode(key, raw)
            if visible_to(slot, scope_of(data.tenant_ctx)):
                return SessionKey(key), data
        # Missing or foreign blob: drop the pointer, but only if nobody re-pointed it meanwhile.
        await self._call(self._eval, _CLEAR_POINTER, pointer, (key,), write=True, key=key)
        return None

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            await self.client.aclose(close_connection_pool=True)

    # -- plumbing ------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise UnavailableError("the session store is closed")

    def _decode(self, key: str, raw: bytes | str) -> SessionData:
        try:
            return decode_session_data(raw)
        except InvalidInputError as exc:
            raise self._corrupt(key, exc.message) from None

    @staticmethod
    def _corrupt(key: str, why: str) -> InternalError:
        return InternalError(f"session {key!r}: {why}")

    async def _eval(self, script: _Script, key: str, args: tuple[str | bytes | int, ...]) -> Any:
        """Run `script` on one key: EVALSHA, or EVAL (which also caches it) if the server lacks it.

        Called directly rather than through redis-py's Script object, whose per-call work costs
        a visible share of a call. A NOSCRIPT reply means nothing ran, so the retry is safe.
        """
        try:
            return await self.client.execute_command(  # type: ignore[no-untyped-call]
                "EVALSHA", script.sha, 1, key, *args
            )
        except redis_errors.NoScriptError:
            return await self.client.execute_command(  # type: ignore[no-untyped-call]
                "EVAL", script.source, 1, key, *args
            )

    async def _call(
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
                self._raise(exc, write=write, key=key)
            except redis_errors.ConnectionError as exc:
                retryable = not (
                    write
                    or attempt >= len(_READ_BACKOFF)
                    or isinstance(exc, redis_errors.AuthenticationError)
                    or self._pool_full(exc)
                )
                if not retryable:
                    self._raise(exc, write=write, key=key)
            except redis_errors.RedisError as exc:
                self._raise(exc, write=write, key=key)
            finally:
                self._gate.release()
            await asyncio.sleep(_READ_BACKOFF[attempt])
            attempt += 1

    async def _enter_gate(self) -> None:
        if not self._gate.locked():
            await self._gate.acquire()  # a free permit: returns without suspending
            return
        try:
            async with asyncio.timeout(self._pool_timeout):
                await self._gate.acquire()
        except TimeoutError:
            raise PoolExhaustedError(
                f"no Redis connection became free within {self._pool_timeout}s "
                f"(max_connections reached on {self._where})"
            ) from None

    @staticmethod
    def _pool_full(exc: redis_errors.ConnectionError) -> bool:
        return any(text in str(exc) for text in _POOL_FULL_MESSAGES)

    def _scrub(self, text: str) -> str:
        text = _PIPELINE_ECHO.sub("", text)
        return text.replace(self._password, "***") if self._password else text

    @staticmethod
    def _never_sent(exc: redis_errors.RedisError) -> bool:
        # redis-py's wording when the connection itself could not be made: nothing was sent.
        return "connecting to" in str(exc)

    def _raise(
        self, exc: redis_errors.RedisError | TimeoutError, *, write: bool, key: str | None
    ) -> NoReturn:
        if isinstance(exc, TimeoutError):
            detail = f"no reply within socket_timeout={self._socket_timeout}s"
        else:
            detail = self._scrub(str(exc))
        where = self._where
        timed_out = isinstance(exc, TimeoutError | redis_errors.TimeoutError)
        error: SessionError
        if isinstance(exc, redis_errors.AuthenticationError):
            error = UnavailableError(
                f"Redis at {where} rejected the credentials: {detail}",
                code=ErrorCode.UNAUTHENTICATED,
            )
        elif isinstance(exc, redis_errors.NoPermissionError):
            error = SessionError(
                f"Redis at {where} denied the command: {detail}",
                code=ErrorCode.PERMISSION_DENIED,
            )
        elif isinstance(exc, redis_errors.ConnectionError) and self._pool_full(exc):
            error = PoolExhaustedError(f"Redis connection pool exhausted on {where}: {detail}")
        elif timed_out or isinstance(exc, redis_errors.ConnectionError):
            code = ErrorCode.TIMEOUT if timed_out else ErrorCode.UNAVAILABLE
            if write and (isinstance(exc, TimeoutError) or not self._never_sent(exc)):
                error = UnknownOutcomeError(
                    f"Redis at {where} failed during a write; the outcome is unknown: {detail}",
                    code=code,
                )
            else:
                error = UnavailableError(f"Redis at {where} is unavailable: {detail}", code=code)
        elif "WRONGTYPE" in detail and key is not None:
            error = InternalError(f"session {key!r}: a Redis key holds the wrong type of value")
        elif "WRONGTYPE" in detail:
            error = InternalError("a user pointer key holds the wrong type of value")
        else:
            error = InternalError(f"Redis at {where} returned an error: {detail}")
        raise error from exc
