"""RedisSessionStore: the production backend's calls, in the Rust greentic-session key layout.

Round trips per call: get 1, create 1 (MULTI SET blob + SET pointer EXEC), find_by_user 1 (a Lua
script follows the pointer; a stale pointer costs a second, compare-and-delete, trip), update 1 (a
Lua script checks existence and owner, then SETs), remove 1 (a Lua script reads the owner from the
blob's head, deletes the blob, and deletes the owner's pointer if it still names this session).
How calls are made (gate, time limit, retries, error mapping) lives in `client`.
"""

from __future__ import annotations

from typing import Any, Self, Unpack

try:
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "The Redis session backend needs the redis extra: pip install 'greentic-session[redis]'"
    ) from exc

from ...codec import decode_session_data, encode_session_data, owner_prefix_length
from ...errors import InternalError, InvalidInputError, NotFoundError, StoreClosedError
from ...fence import (
    Scope,
    check_create,
    check_key,
    check_update,
    lookup_slot,
    scope_of,
    visible_to,
)
from ...schema import SessionData, SessionKey, TenantCtx, new_session_key
from ...store import SessionStore
from . import scripts
from .client import RedisCaller
from .keys import RedisKeys
from .options import (
    DEFAULT_NAMESPACE,
    DEFAULT_POOL_TIMEOUT,
    RedisOptions,
    RedisPoolOptions,
    redact_url,
)

__all__ = ["RedisSessionStore"]


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
        self._owns_client = _owns_client
        self._closed = False
        self._where = _where or self._describe(client.connection_pool.connection_kwargs)
        self._redis = RedisCaller(
            client, where=self._where, pool_timeout=pool_timeout, socket_timeout=socket_timeout
        )

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
        except ValueError:  # RedisOptions checked the URL; redis-py refused an option's value
            raise InvalidInputError("malformed Redis URL: redis-py refused its options") from None
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
        await self._redis.call(pipe.execute, write=True, key=key)
        return key

    async def get_session(self, key: str) -> SessionData | None:
        self._check_open()
        check_key(key)
        raw = await self._redis.call(self.client.get, self.keys.session(key), key=key)
        return None if raw is None else self._decode(key, raw)

    async def update_session(self, key: str, data: SessionData) -> None:
        self._check_open()
        check_key(key)
        blob = encode_session_data(data)
        want = scope_of(data.tenant_ctx)
        prefix = owner_prefix_length(data.tenant_ctx)
        args = (want.env, want.tenant_id, want.team or "", want.user or "", blob, prefix)
        result = await self._redis.eval(
            scripts.UPDATE, (self.keys.session(key),), args, write=True, key=key
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
        removed = await self._redis.eval(
            scripts.REMOVE, (self.keys.session(key),), args, write=True, key=key
        )
        if removed != 1:
            raise NotFoundError(f"session {key!r} not found")

    async def find_by_user(
        self, ctx: TenantCtx, user: str
    ) -> tuple[SessionKey, SessionData] | None:
        self._check_open()
        slot = lookup_slot(ctx, user)
        pointer = self.keys.user(slot)
        found = await self._redis.eval(scripts.FIND, (pointer,), (self.keys.session_prefix,))
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
        await self._redis.eval(scripts.CLEAR_POINTER, (pointer,), (key,), write=True, key=key)
        return None

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            await self._redis.adopt_running_loop()  # never awaits another loop's connections
            await self.client.aclose(close_connection_pool=True)

    # -- plumbing ------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError("the session store is closed")

    def _decode(self, key: str, raw: bytes | str) -> SessionData:
        try:
            return decode_session_data(raw)
        except InvalidInputError as exc:
            raise self._corrupt(key, exc.message) from None

    @staticmethod
    def _corrupt(key: str, why: str) -> InternalError:
        return InternalError(f"session {key!r}: {why}")
