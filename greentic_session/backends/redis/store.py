"""RedisSessionStore: the production backend's calls, in the Rust greentic-session key layout.

Round trips per call: get/get_entry 1; create 1 (MULTI SET blob + SET pointer EXEC; create.lua
for a caller's key or with expiry); find_by_user/find_entry 1 (find.lua follows the pointer; a stale
pointer costs a second, compare-and-delete, trip); update 1 (update.lua checks existence, owner and
the expected revision, then SETs); touch 1; remove 1 (remove.lua deletes the blob, its meta key and
the pointer if it still names this session); find_or_create 1 when it finds, 2 when it creates
(create_for_user.lua creates unless a session appeared meanwhile); update_with 2 per try;
register_wait, find_wait_by_scope, list_waits_for_user and clear_wait 1 each (one Lua script
each, in Rust's wait keys plus our hint key: see keys.py and docs/concepts.md, "Waits").

A revision is the SHA-1 of the stored bytes (`revision_of`, and `redis.sha1hex` in update.lua), so a
write by any client, a Rust runner's plain SET included, changes it. Expiry is server-side only:
the scripts give the blob, its pointer and its meta key their TTLs in the step that writes them.
How calls are made (gate, time limit, retries, error mapping) lives in `client`.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple, Self, TypeVar, Unpack, cast

try:
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
    from redis.backoff import NoBackoff
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "The Redis session backend needs the redis extra: pip install 'greentic-session[redis]'"
    ) from exc

from ...codec import decode_session_data, encode_session_data, owner_prefix_length
from ...errors import (
    ConflictError,
    InternalError,
    InvalidInputError,
    NotFoundError,
    SessionError,
    StoreClosedError,
    UnavailableError,
    UnknownOutcomeError,
)
from ...expiry import Expiry
from ...fence import (
    Scope,
    UserSlot,
    check_create,
    check_find_or_create,
    check_key,
    check_register_wait,
    check_update,
    lookup_slot,
    own_slot,
    owner_slot,
    scope_hash_of,
    scope_of,
    visible_to,
    wait_lookup_slot,
    wait_ttl_millis,
)
from ...limits import DEFAULT_MAX_BLOB_BYTES, check_max_blob_bytes
from ...schema import ReplyScope, SessionData, SessionKey, TenantCtx
from ...store import SessionBuilder, SessionEntry, SessionStore, StoreOptions, resolve
from . import scripts
from .client import PrimaryPool, RedisCaller
from .cluster import ClusterCaller, Node
from .errors import ClusterRedirect
from .keys import RedisKeys
from .options import (
    DEFAULT_NAMESPACE,
    DEFAULT_POOL_TIMEOUT,
    RedisClusterOptions,
    RedisOptions,
    RedisPoolOptions,
    RedisSentinelOptions,
    is_sentinel_url,
    redact_url,
)
from .transport import BatchingPool
from .untyped import untyped

__all__ = ["RedisSessionStore", "revision_of"]

T = TypeVar("T")

# Operator events only, never a user id, session key, payload or secret (see client.py too).
_log = logging.getLogger("greentic_session.redis")

# find_or_create's create step retries when the user's pointer names a foreign session that is
# replaced meanwhile; more than a couple of rounds means the slot is being fought over.
_CREATE_ATTEMPTS = 5


def _unawaited(task: asyncio.Future[Any]) -> None:
    """Mark a finished two-step task's failure as retrieved: its caller got it, or was cancelled
    and left (then asyncio would only log it, with its chain, at garbage collection)."""
    if not task.cancelled():
        task.exception()


def revision_of(blob: bytes) -> str:
    """A stored blob's revision: the SHA-1 hex of its bytes, as update.lua's `redis.sha1hex`."""
    return hashlib.sha1(blob, usedforsecurity=False).hexdigest()


def _text(value: bytes | str) -> str:
    """A string a script returned; stored bytes that are not UTF-8 are unusable data."""
    if not isinstance(value, bytes):
        return value
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise InternalError("a stored key or owner field is not UTF-8 text") from None


def _retries_of(client: aioredis.Redis) -> int:
    """How often redis-py itself would re-send a command on this client's connections."""
    kwargs = client.connection_pool.connection_kwargs
    retry = kwargs.get("retry")
    if retry is not None:
        # Retry.get_retries() is redis-py 6+; 5.x keeps the count in `_retries`.
        getter = getattr(retry, "get_retries", None)
        retries: int = getter() if getter is not None else retry._retries
        return retries
    # redis-py turns retry_on_error/retry_on_timeout without a Retry into one retry.
    return 1 if kwargs.get("retry_on_error") or kwargs.get("retry_on_timeout") else 0


def _client_parts(
    options: RedisOptions,
) -> tuple[aioredis.Redis, Callable[[], BatchingPool] | None]:
    """The redis-py client (pool) `options` describe, and the batching pool factory (one per
    event loop, built on first use there) when `options.batching`."""
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

    def batching() -> BatchingPool:
        return BatchingPool.from_url(
            options.url,
            connect_timeout=options.connect_timeout,
            socket_timeout=options.socket_timeout,
            ssl_ca_certs=options.tls_ca_file,
            queue_timeout=options.pool_timeout,
        )

    return aioredis.Redis(connection_pool=pool), batching if options.batching else None


class _SeenBytes(NamedTuple):
    """The stored bytes update_with read: its compare-and-set token."""

    raw: bytes


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
        idle_ttl: float | None = None,
        max_lifetime: float | None = None,
        max_blob_bytes: int | None = DEFAULT_MAX_BLOB_BYTES,
        _owns_client: bool = False,
        _where: str | None = None,
        _batching: Callable[[], BatchingPool] | None = None,
    ) -> None:
        if not isinstance(client, aioredis.Redis):
            raise TypeError(f"client must be redis.asyncio.Redis, not {type(client).__name__}")
        if _retries_of(client) != 0:
            raise InvalidInputError(
                "RedisSessionStore needs a client with redis-py retries off "
                "(Redis(..., retry=Retry(NoBackoff(), 0))): redis-py re-sends commands whose "
                "reply was lost, which could apply a write twice; the store retries reads itself"
            )
        where = _where or self._describe(client.connection_pool)
        caller = RedisCaller(
            client,
            where=where,
            pool_timeout=pool_timeout,
            socket_timeout=socket_timeout,
            batching=_batching,
        )
        self._setup(
            caller,
            RedisKeys(namespace),
            where=where,
            owns=_owns_client,
            idle_ttl=idle_ttl,
            max_lifetime=max_lifetime,
            max_blob_bytes=max_blob_bytes,
        )
        self.client: aioredis.Redis | None = client

    def _setup(
        self,
        caller: RedisCaller | ClusterCaller,
        keys: RedisKeys,
        *,
        where: str,
        owns: bool,
        idle_ttl: float | None,
        max_lifetime: float | None,
        max_blob_bytes: int | None,
    ) -> None:
        self._expiry = Expiry(idle_ttl, max_lifetime)
        self._ttl_args = self._expiry.as_millis()
        # The pointer's TTL when a cluster create writes it in a step of its own.
        self._pointer_ttl = self._expiry.first_ttl_millis()
        self._max_blob_bytes = check_max_blob_bytes(max_blob_bytes)
        self.keys = keys
        self._scripts = scripts.CLUSTER if keys.cluster else scripts.SINGLE_NODE
        # On a cluster, find.lua and create_for_user.lua get the pointer's tag (see keys.py).
        self._owns_client = owns
        self._closed = False
        self._where = where
        self._redis: RedisCaller | ClusterCaller = caller

    @staticmethod
    def _describe(pool: Any) -> str:
        """A secret-free address for a client built elsewhere (reprs, errors, logs)."""
        kwargs = pool.connection_kwargs
        if isinstance(pool, SentinelConnectionPool):
            hosts = ",".join(
                f"{sentinel.connection_pool.connection_kwargs.get('host', '?')}:"
                f"{sentinel.connection_pool.connection_kwargs.get('port', '?')}"
                for sentinel in pool.sentinel_manager.sentinels
            )
            return f"redis+sentinel://{hosts}/{pool.service_name}/{kwargs.get('db', 0)}"
        if "path" in kwargs:
            return f"unix://{kwargs['path']}"
        return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"

    @classmethod
    def from_options(
        cls,
        options: RedisOptions | RedisSentinelOptions | RedisClusterOptions,
        **store: Unpack[StoreOptions],
    ) -> Self:
        """A store that owns a new client and pool built from `options`."""
        if isinstance(options, RedisSentinelOptions):
            return cls._from_sentinel_options(options, **store)
        if isinstance(options, RedisClusterOptions):
            return cls._from_cluster_options(options, **store)
        client, batching = _client_parts(options)
        return cls(
            client,
            namespace=options.namespace,
            pool_timeout=options.pool_timeout,
            socket_timeout=options.socket_timeout,
            _owns_client=True,
            _where=redact_url(options.url),
            _batching=batching,
            **store,
        )

    @classmethod
    def from_cluster(
        cls,
        startup_urls: Sequence[str],
        *,
        namespace: str = DEFAULT_NAMESPACE,
        idle_ttl: float | None = None,
        max_lifetime: float | None = None,
        max_blob_bytes: int | None = DEFAULT_MAX_BLOB_BYTES,
        **options: Unpack[RedisPoolOptions],
    ) -> Self:
        """A store on the Redis Cluster one of `startup_urls` (`redis://` or `rediss://` node
        URLs, same credentials) belongs to; see `SessionBackendConfig.redis_cluster`."""
        parsed = RedisClusterOptions(tuple(startup_urls), namespace=namespace, **options)
        return cls._from_cluster_options(
            parsed, idle_ttl=idle_ttl, max_lifetime=max_lifetime, max_blob_bytes=max_blob_bytes
        )

    @classmethod
    def _from_cluster_options(
        cls, options: RedisClusterOptions, **store: Unpack[StoreOptions]
    ) -> Self:
        """A store routing each call to its slot's master (cluster.ClusterCaller), each master
        reached through its own caller built as a single-node store's; connected lazily."""

        def node(address: Node) -> RedisCaller:
            node_options = RedisOptions(
                url=options.node_url(*address),
                namespace=options.namespace,
                max_connections=options.max_connections,
                connect_timeout=options.connect_timeout,
                socket_timeout=options.socket_timeout,
                pool_timeout=options.pool_timeout,
                tls_ca_file=options.tls_ca_file,
                batching=options.batching,
            )
            client, batching = _client_parts(node_options)
            return RedisCaller(
                client,
                where=f"{address[0]}:{address[1]}",
                pool_timeout=options.pool_timeout,
                socket_timeout=options.socket_timeout,
                batching=batching,
                cluster=True,
            )

        caller = ClusterCaller(
            options.startup_nodes,
            node,
            where=options.address,
            busy_timeout=options.socket_timeout,
        )
        self = cls.__new__(cls)
        self._setup(
            caller,
            RedisKeys(options.namespace, cluster=True),
            where=options.address,
            owns=True,
            idle_ttl=store.get("idle_ttl"),
            max_lifetime=store.get("max_lifetime"),
            max_blob_bytes=store.get("max_blob_bytes", DEFAULT_MAX_BLOB_BYTES),
        )
        self.client = None
        return self

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        idle_ttl: float | None = None,
        max_lifetime: float | None = None,
        max_blob_bytes: int | None = DEFAULT_MAX_BLOB_BYTES,
        **options: Unpack[RedisPoolOptions],
    ) -> Self:
        """A store for `url` (`redis://`, `rediss://`, `unix://`; credentials may be in it), or
        for the primary of a Sentinel service (`redis+sentinel://`, see `from_sentinel`).

        `options` are the pool's (`RedisPoolOptions`); `idle_ttl`, `max_lifetime` (seconds) and
        `max_blob_bytes` the `StoreOptions` every backend takes.
        """
        parsed = (
            RedisSentinelOptions.from_url(url, namespace=namespace, **options)
            if is_sentinel_url(url)
            else RedisOptions(url=url, namespace=namespace, **options)
        )
        return cls.from_options(
            parsed,
            idle_ttl=idle_ttl,
            max_lifetime=max_lifetime,
            max_blob_bytes=max_blob_bytes,
        )

    @classmethod
    def from_sentinel(
        cls,
        sentinel_urls: Sequence[str],
        service_name: str,
        *,
        db: int = 0,
        namespace: str = DEFAULT_NAMESPACE,
        username: str | None = None,
        password: str | None = None,
        idle_ttl: float | None = None,
        max_lifetime: float | None = None,
        max_blob_bytes: int | None = DEFAULT_MAX_BLOB_BYTES,
        **options: Unpack[RedisPoolOptions],
    ) -> Self:
        """A store on the primary Sentinel monitors as `service_name` (see
        `SessionBackendConfig.redis_sentinel`); a `redis+sentinel://` URL works with `from_url`."""
        return cls._from_sentinel_options(
            RedisSentinelOptions.from_sentinel_urls(
                sentinel_urls,
                service_name,
                db=db,
                username=username,
                password=password,
                namespace=namespace,
                **options,
            ),
            idle_ttl=idle_ttl,
            max_lifetime=max_lifetime,
            max_blob_bytes=max_blob_bytes,
        )

    @classmethod
    def _from_sentinel_options(
        cls, options: RedisSentinelOptions, **store: Unpack[StoreOptions]
    ) -> Self:
        """One Sentinel and one primary pool, built once (redis-py's `master_for` builds a new
        pool per call); nothing connects until the first call."""
        tls: dict[str, Any] = {}
        if options.tls:
            tls["ssl"] = True
            if options.tls_ca_file is not None:
                tls["ssl_ca_certs"] = options.tls_ca_file
        sentinel = untyped(Sentinel)(
            list(options.sentinels),
            sentinel_kwargs={
                "username": options.sentinel_username,
                "password": options.sentinel_password,
                "socket_connect_timeout": options.connect_timeout,
                "socket_timeout": options.socket_timeout,
                # A dead sentinel is skipped for the next one; redis-py's default retries with
                # backoff would spend the call's whole time limit on it.
                "retry": Retry(NoBackoff(), 0),
                **tls,
            },
        )
        node_tls = {key: value for key, value in tls.items() if key != "ssl"}
        pool = PrimaryPool(
            options.service_name,
            sentinel,
            tls=options.tls,
            db=options.db,
            username=options.username,
            password=options.password,
            max_connections=options.max_connections,
            socket_connect_timeout=options.connect_timeout,
            socket_timeout=None,  # enforced per call by the store, see the module docstring
            retry=Retry(NoBackoff(), 0),
            **node_tls,
        )
        return cls(
            aioredis.Redis(connection_pool=pool),
            namespace=options.namespace,
            pool_timeout=options.pool_timeout,
            socket_timeout=options.socket_timeout,
            _owns_client=True,
            _where=options.address,
            **store,
        )

    def __repr__(self) -> str:
        return f"RedisSessionStore(url={self._where!r}, namespace={self.keys.namespace!r})"

    @property
    def is_cluster(self) -> bool:
        """Whether this store talks to a Redis Cluster (and uses its tagged key layout)."""
        return self.keys.cluster

    # -- the SessionStore API ------------------------------------------------------------------

    async def create_session(
        self, ctx: TenantCtx, data: SessionData, *, key: str | None = None
    ) -> SessionKey:
        self._check_open()
        if key is not None:
            check_key(key)
        blob = self._encode(data)  # first: the fence reads fields this checks
        _, slot = check_create(ctx, data)
        new_key = self.keys.mint(slot) if key is None else SessionKey(key)
        # On a cluster, a caller's untagged key may hash to another slot than its pointer: the
        # pointer is then written in a second step, after the session exists.
        split = slot is not None and key is not None and self.keys.local_only(key)
        if (
            slot is not None
            and key is not None
            and not split
            and not key.startswith(self.keys.tag(slot))
        ):
            raise InvalidInputError(
                "this session key carries another user's cluster hash tag: build it with "
                "session_key_for(ctx, user_id, key)"
            )
        if key is None and not self._expiry.enabled:
            # A fresh random key cannot be taken: a plain MULTI is enough (and cheapest).
            writes: list[tuple[str, str, bytes | str]] = [("SET", self.keys.session(new_key), blob)]
            if slot is not None:
                writes.append(("SET", self.keys.user(slot), new_key))
            await self._redis.transaction(writes, key=new_key)
            return new_key
        keys: tuple[str, ...] = (self.keys.session(new_key), self.keys.meta(new_key))
        suffix = ""
        if slot is not None:
            suffix = self.keys.slot_suffix(slot)
            if not split:
                keys = (*keys, self.keys.user(slot))
        userless = "1" if data.tenant_ctx.normalized_user is None else "0"
        args = (blob, new_key, suffix, *self._ttl_args, userless)
        step = self._redis.eval(self._scripts.CREATE, keys, args, write=True, key=new_key)
        if split:
            assert slot is not None
            step = self._in_order(step, functools.partial(self._point, slot, new_key))
        if await step != 1:
            raise ConflictError(f"a session with key {new_key!r} already exists")
        return new_key

    async def _point(self, slot: UserSlot, key: str, created: object) -> None:
        """A split create's second step: the user pointer, once the session exists."""
        if created == 1:
            ttl = ("PX", self._pointer_ttl) if self._pointer_ttl else ()
            step = self._redis.execute("SET", self.keys.user(slot), key, *ttl, write=True)
            await self._second_step("created", key, step)

    @staticmethod
    async def _in_order(first: Awaitable[T], then: Callable[[T], Awaitable[None]]) -> T:
        """A split call's session step, then (given its result) its index step, run as one task
        that a cancelled caller does not stop half way: the index step always follows a session
        step that ran (the caller still sees its cancellation)."""

        async def both() -> T:
            result = await first
            await then(result)
            return result

        task = asyncio.ensure_future(both())
        task.add_done_callback(_unawaited)
        return await asyncio.shield(task)

    async def _second_step(self, done: str, key: str, step: Awaitable[object]) -> None:
        """The index step of a call on a cluster whose key lives in another slot than its
        user's indexes, after the session step succeeded: a failure here is an unknown outcome
        for the call as a whole (the session was `done`), never a plain refusal."""
        failure: SessionError | None = None
        try:
            await step
        except SessionError as exc:
            failure = exc
        if failure is not None:
            raise UnknownOutcomeError(
                f"session {key!r} was {done}, but updating its user pointer in another cluster "
                f"slot failed ({failure.code.value}); the pointer may be missing or outdated"
            )

    def session_key_for(self, ctx: TenantCtx, user_id: str, key: str) -> SessionKey:
        """`key` for a session of `user_id` (in `ctx`'s env, tenant and team): on a Redis
        Cluster led by the user's hash tag, so the session and its pointer and waits share one
        slot and every call on it is one atomic script; unchanged on a single node."""
        check_key(key)
        return self.keys.tagged_key(lookup_slot(ctx, user_id), key)

    async def get_session(self, key: str) -> SessionData | None:
        raw = await self._get_raw(key)
        return None if raw is None else self._decode(key, raw)

    async def get_entry(self, key: str) -> SessionEntry | None:
        raw = await self._get_raw(key)
        if raw is None:
            return None
        return SessionEntry(SessionKey(key), self._decode(key, raw), revision_of(raw))

    async def _get_raw(self, key: str) -> bytes | None:
        """The stored blob (GET): the client returns bytes (it never decodes responses)."""
        self._check_open()
        check_key(key)
        raw = await self._redis.execute("GET", self.keys.session(key), key=key)
        return cast(bytes | None, raw)

    async def update_session(
        self, key: str, data: SessionData, *, expected_revision: str | None = None
    ) -> None:
        await self._write(key, data, expected_revision)

    async def _read_for_update(self, key: str) -> tuple[SessionEntry, object] | None:
        # The bytes read are the token: update.lua compares them with the stored bytes, which
        # is cheaper on the server than hashing the stored blob for a revision.
        raw = await self._get_raw(key)
        if raw is None:
            return None
        entry = SessionEntry(SessionKey(key), self._decode(key, raw), revision_of(raw))
        return entry, _SeenBytes(raw)

    async def _compare_and_set(self, key: str, data: SessionData, token: object) -> str:
        assert isinstance(token, _SeenBytes | str)
        return revision_of(await self._write(key, data, token))

    async def _write(self, key: str, data: SessionData, expected: str | _SeenBytes | None) -> bytes:
        """Run update.lua; return the blob written. `expected` is a revision, the bytes
        `_read_for_update` saw, or None (write whatever is stored)."""
        self._check_open()
        check_key(key)
        check: str | bytes
        if isinstance(expected, _SeenBytes):
            check, mode = expected.raw, "bytes"
        elif expected is None:
            check, mode = "", "sha1"
        elif isinstance(expected, str) and expected:
            check, mode = expected, "sha1"
        else:
            raise InvalidInputError("expected_revision must be a revision str from get_entry")
        blob = self._encode(data)
        want = scope_of(data.tenant_ctx)
        prefix = owner_prefix_length(data.tenant_ctx)
        slot = owner_slot(want) if self._expiry.enabled else None
        split = self.keys.local_only(key)
        user_prefix, scope_prefix, set_prefix = self._index_prefixes(split)
        args = (
            *(want.env, want.tenant_id, want.team or "", want.user or "", blob, prefix),
            check,
            *self._ttl_args,
            *(user_prefix, key, "" if slot is None else self.keys.slot_suffix(slot)),
            mode,
            *(scope_prefix, set_prefix),
        )
        keys = (self.keys.session(key), self.keys.meta(key), self.keys.wait_hint(key))
        step = self._redis.eval(self._scripts.UPDATE, keys, args, write=True, key=key)
        if split:
            step = self._in_order(step, functools.partial(self._refresh_pointer, key, "written"))
        result = await step
        if result == 1 or (split and isinstance(result, list) and len(result) == 2):
            return blob
        if result == 0:
            raise NotFoundError(f"session {key!r} not found")
        if result == -1:
            raise self._corrupt(key, "stored blob is not SessionData JSON")
        if result == -2:
            raise ConflictError(f"session {key!r} changed since revision {expected!r}")
        env, tenant_id, team, user = (_text(part) for part in result)
        check_update(Scope(env, tenant_id, team or None, user or None), data)
        raise InternalError(f"session {key!r}: the owner check disagreed with the tenant fence")

    async def touch_session(self, key: str) -> None:
        self._check_open()
        check_key(key)
        split = self.keys.local_only(key)
        user_prefix, scope_prefix, set_prefix = self._index_prefixes(split)
        keys = (self.keys.session(key), self.keys.meta(key), self.keys.wait_hint(key))
        args = (*self._ttl_args, user_prefix, key, scope_prefix, set_prefix)
        step = self._redis.eval(self._scripts.TOUCH, keys, args, write=True, key=key)
        if split:
            step = self._in_order(step, functools.partial(self._refresh_pointer, key, "touched"))
        result = await step
        if result != 1 and not (split and isinstance(result, list)):
            raise NotFoundError(f"session {key!r} not found")

    def _index_prefixes(self, split: bool) -> tuple[str, str, str]:
        """The user pointer, scope pointer and user SET prefixes update.lua, touch.lua and
        remove.lua read and write; '' for a key whose indexes live in another cluster slot."""
        if split:
            return "", "", ""
        return self.keys.user_prefix, self.keys.wait_scope_prefix, self.keys.wait_user_prefix

    async def _refresh_pointer(self, key: str, done: str, plan: object) -> None:
        """The second step of an update or touch of a key whose pointer lives in another cluster
        slot: the pointer gets the session's new TTL if it still names the session (`plan` is
        the first step's {pointer suffix, TTL}, or its refusal code)."""
        if not (isinstance(plan, list) and len(plan) == 2 and isinstance(plan[0], bytes)):
            return
        suffix, ttl = _text(plan[0]), plan[1]
        if suffix and isinstance(ttl, int) and ttl > 0:
            pointer = self.keys.user_of_suffix(suffix)
            step = self._redis.eval(
                self._scripts.REFRESH_POINTER, (pointer,), (key, ttl), write=True, key=key
            )
            await self._second_step(done, key, step)

    async def remove_session(self, key: str) -> None:
        self._check_open()
        check_key(key)
        split = self.keys.local_only(key)
        keys = (self.keys.session(key), self.keys.meta(key), self.keys.wait_hint(key))
        args = (key, *self._index_prefixes(split))
        removed = await self._redis.eval(self._scripts.REMOVE, keys, args, write=True, key=key)
        if split and isinstance(removed, bytes):
            # The session is gone; its user pointer, in another slot, is left for the next lookup
            # to clear (find's stale-pointer repair): deleting it here by name could delete the
            # pointer of a session re-created under this key meanwhile.
            return
        if removed != 1:
            raise NotFoundError(f"session {key!r} not found")

    async def find_by_user(
        self, ctx: TenantCtx, user: str
    ) -> tuple[SessionKey, SessionData] | None:
        self._check_open()
        found = await self._find(lookup_slot(ctx, user))
        return None if found is None else (found[0], found[2])

    async def find_entry(self, ctx: TenantCtx, user: str) -> SessionEntry | None:
        self._check_open()
        found = await self._find(lookup_slot(ctx, user))
        return None if found is None else SessionEntry(found[0], found[2], revision_of(found[1]))

    async def _follow(
        self, script: scripts.Script, slot: UserSlot, keys: tuple[str, ...], args: tuple[Any, ...]
    ) -> Any:
        """Run find.lua or create_for_user.lua; a session they name in another cluster slot
        (their -2) is read there, as a second step: the reply then holds its blob."""
        redis = self._redis
        if isinstance(redis, ClusterCaller):
            args = (*args, self.keys.tag(slot))
            if script is self._scripts.FIND:
                try:
                    found = await redis.eval(script, keys, args, moving="raise")
                except ClusterRedirect:
                    # The slot is mid-migration: a script could see half its keys. Single-key
                    # reads follow the keys wherever they are (ASK), so read one by one.
                    found = await redis.execute("GET", keys[0])
                    found = None if found is None else [found, -2]
            else:
                found = await redis.eval(script, keys, args, write=True)
        else:
            write = script is self._scripts.CREATE_FOR_USER
            found = await redis.eval(script, keys, args, write=write)
        if isinstance(found, list) and found[1] == -2:
            key = _text(found[0])
            found[1] = await self._redis.execute("GET", self.keys.session(key), key=key)
        return found

    async def _find(self, slot: UserSlot) -> tuple[SessionKey, bytes, SessionData] | None:
        """Follow `slot`'s pointer (find.lua); a stale pointer costs a compare-and-delete trip."""
        pointer = self.keys.user(slot)
        found = await self._follow(
            self._scripts.FIND, slot, (pointer,), (self.keys.session_prefix,)
        )
        if found is None:
            return None
        key, raw = SessionKey(_text(found[0])), found[1]
        data = self._visible(slot, key, raw)
        if data is not None:
            return key, raw, data
        # Missing or foreign blob: drop the pointer, but only if nobody re-pointed it meanwhile.
        clear = self._redis.eval(
            self._scripts.CLEAR_POINTER, (pointer,), (key,), write=True, key=key
        )
        if not self.keys.cluster:
            await clear
        else:
            # A slot stuck mid-migration must not fail a read: the next lookup clears it.
            try:
                await clear
            except UnavailableError:
                return None
        _log.info("cleared a user pointer that named a missing or foreign session")
        return None

    async def find_or_create(
        self, ctx: TenantCtx, user: str, build: SessionBuilder
    ) -> tuple[SessionEntry, bool]:
        self._check_open()
        slot = own_slot(ctx, user)
        pointer = self.keys.user(slot)
        found = await self._follow(
            self._scripts.FIND, slot, (pointer,), (self.keys.session_prefix,)
        )
        seen, foreign = "", False
        if found is not None:
            key, raw = SessionKey(_text(found[0])), found[1]
            data = self._visible(slot, key, raw)
            if data is not None:
                return SessionEntry(key, data, revision_of(raw)), False
            # (A key in another cluster slot cannot be re-checked by the create step: replaceable.)
            seen, foreign = key, raw is not None or self.keys.local_only(key)
        data = await resolve(build())
        blob = self._encode(data)
        check_find_or_create(ctx, slot, data)
        key = self.keys.mint(slot)
        keys = (pointer, self.keys.session(key), self.keys.meta(key))
        suffix = self.keys.slot_suffix(slot)
        userless = "1" if data.tenant_ctx.normalized_user is None else "0"
        for _ in range(_CREATE_ATTEMPTS):
            args = (seen, "1" if foreign else "0", blob, key, suffix, *self._ttl_args)
            result = await self._follow(
                self._scripts.CREATE_FOR_USER,
                slot,
                keys,
                (*args, self.keys.session_prefix, userless),
            )
            if result == 1:
                return SessionEntry(key, data, revision_of(blob)), True
            other, raw = SessionKey(_text(result[0])), result[1]
            found_data = self._visible(slot, other, raw)
            if found_data is not None:  # another call created it meanwhile
                return SessionEntry(other, found_data, revision_of(raw)), False
            seen, foreign = other, True
        raise ConflictError("the user's session slot kept changing; nothing was created")

    # -- reply-scope waits (Rust's keys and values; one script, one round trip each) -------------

    async def register_wait(
        self,
        ctx: TenantCtx,
        user_id: str,
        scope: ReplyScope,
        session_key: str,
        data: SessionData,
        *,
        ttl: float | None = None,
    ) -> None:
        self._check_open()
        key = check_key(session_key)
        scope_hash = scope_hash_of(scope)
        blob = self._encode(data)  # first: the fence reads fields this checks
        owner, slot = check_register_wait(ctx, user_id, data)
        if self.keys.cluster and not key.startswith(self.keys.tag(slot)):
            raise InvalidInputError(
                "on a Redis Cluster a wait's session key must carry its user's hash tag, so that "
                "the wait's keys share one slot: build it with session_key_for(ctx, user_id, key)"
            )
        ttl_ms = wait_ttl_millis(ttl, self._expiry.idle_ttl)
        suffix = self.keys.slot_suffix(slot)
        hint = f"{'' if ttl_ms is None else ttl_ms}:{suffix}:{scope_hash}"
        keys = (
            *(self.keys.session(key), self.keys.meta(key), self.keys.wait_hint(key)),
            *(self.keys.wait_scope(slot, scope_hash), self.keys.wait_user(slot)),
        )
        args = (
            *(owner.env, owner.tenant_id, owner.team or "", owner.user or "", blob, key),
            *(self._ttl_args[1], hint, suffix, self.keys.session_prefix),
            *(self.keys.wait_hint_prefix, self.keys.wait_scope_prefix, self.keys.user_prefix),
        )
        script = self._scripts.REGISTER_WAIT
        result = await self._redis.eval(script, keys, args, write=True, key=key)
        if result == 1:
            return
        if result == -1:
            raise self._corrupt(key, "stored blob is not SessionData JSON")
        if result == -3:
            raise InternalError("a wait index key holds a value of another Redis type")
        env, tenant_id, team, user = (_text(part) for part in result)
        check_update(Scope(env, tenant_id, team or None, user or None), data)
        raise InternalError(f"session {key!r}: the owner check disagreed with the tenant fence")

    def _wait_lookup(self, slot: UserSlot) -> tuple[str, ...]:
        """The lookup's part of the wait scripts' arguments (waits.lua's wait_verdict)."""
        return (self.keys.session_prefix, slot.env, slot.tenant_id, slot.team or "", slot.user)

    async def find_wait_by_scope(
        self, ctx: TenantCtx, user_id: str, scope: ReplyScope
    ) -> SessionKey | None:
        self._check_open()
        slot = wait_lookup_slot(ctx, user_id)
        scope_hash = scope_hash_of(scope)
        keys = (self.keys.wait_scope(slot, scope_hash), self.keys.wait_user(slot))
        args = (
            *self._wait_lookup(slot),
            *(self.keys.wait_hint_prefix, f"{self.keys.slot_suffix(slot)}:{scope_hash}"),
        )
        found = await self._redis.eval(self._scripts.FIND_WAIT, keys, args)
        if found is None:
            return None
        if found == -1:
            raise InternalError("a wait names a session that is not SessionData JSON")
        return SessionKey(_text(found))

    async def list_waits_for_user(self, ctx: TenantCtx, user_id: str) -> list[SessionKey]:
        self._check_open()
        slot = wait_lookup_slot(ctx, user_id)
        args = (
            *self._wait_lookup(slot),
            *(self.keys.wait_hint_prefix, self.keys.slot_suffix(slot)),
        )
        found = await self._redis.eval(self._scripts.LIST_WAITS, (self.keys.wait_user(slot),), args)
        if found == -1:
            raise InternalError("a wait names a session that is not SessionData JSON")
        if found == -3:
            raise InternalError("a wait index key holds a value of another Redis type")
        return [SessionKey(_text(key)) for key in found]

    async def clear_wait(self, ctx: TenantCtx, user_id: str, scope: ReplyScope) -> None:
        self._check_open()
        slot = wait_lookup_slot(ctx, user_id)
        scope_hash = scope_hash_of(scope)
        keys = (self.keys.wait_scope(slot, scope_hash), self.keys.wait_user(slot))
        args = (
            *self._wait_lookup(slot),
            *(self.keys.wait_hint_prefix, f"{self.keys.slot_suffix(slot)}:{scope_hash}"),
            *(self.keys.meta_prefix, self.keys.user_prefix, self.keys.wait_scope_prefix),
        )
        if await self._redis.eval(self._scripts.CLEAR_WAIT, keys, args, write=True) == -1:
            raise InternalError("a wait names a session that is not SessionData JSON")

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            await self._redis.aclose()

    # -- plumbing ------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError("the session store is closed")

    def _encode(self, data: SessionData) -> bytes:
        return encode_session_data(data, max_bytes=self._max_blob_bytes)

    def _visible(self, slot: UserSlot, key: str, raw: bytes | int | None) -> SessionData | None:
        """The data of a blob found through `slot`'s pointer if the slot may see it, else None
        (missing or foreign); a blob key of the wrong type (find.lua's 0) is an error."""
        if raw == 0:
            raise self._corrupt(key, "blob key holds a non-string Redis value")
        if raw is None:
            return None
        assert isinstance(raw, bytes)
        data = self._decode(key, raw)
        return data if visible_to(slot, scope_of(data.tenant_ctx)) else None

    def _decode(self, key: str, raw: bytes | str) -> SessionData:
        try:
            return decode_session_data(raw)
        except InvalidInputError as exc:
            _log.warning("met a stored session that does not decode (raised InternalError)")
            raise self._corrupt(key, exc.message) from None

    @staticmethod
    def _corrupt(key: str, why: str) -> InternalError:
        return InternalError(f"session {key!r}: {why}")
