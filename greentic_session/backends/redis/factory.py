"""Every way to build a Redis store, and the one way into it.

Each builds a `Connection` (the caller the store talks through, the redis-py client when there is
one, a secret-free address, the key layout, and whether the store owns it) and hands it to
`RedisSessionStore.__init__`: `connect` for options (one server by URL, the primary of a Sentinel
service, a Redis Cluster), `around_client` for a caller's own `redis.asyncio.Redis`.
`from_options` builds the store options describe, and `from_config` the one a
`SessionBackendConfig` describes: `create_session_store` and every `RedisSessionStore.from_*`
constructor (`from_url`, `from_sentinel`, `from_cluster`, which describe theirs with the config's
classmethods) come through them, so options are parsed, checked and turned into a store in one
way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, Unpack

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff

from ...config import SessionBackendConfig
from ...errors import InvalidInputError
from ...store import StoreOptions
from .caller import Caller, RedisCaller
from .cluster import ClusterCaller, Node
from .options import RedisClusterOptions, RedisOptions, RedisSentinelOptions
from .sentinel import PrimaryPool, SentinelCaller
from .transport import BatchingPool
from .untyped import untyped
from .urls import redact_url

if TYPE_CHECKING:
    from .store import RedisSessionStore

__all__ = ["Connection", "around_client", "connect", "from_config", "from_options"]

Store = TypeVar("Store", bound="RedisSessionStore")


@dataclass(frozen=True, slots=True)
class Connection:
    """What a store talks to Redis through, as built here."""

    caller: Caller
    client: aioredis.Redis | None  # the redis-py client; None on a cluster (one per master)
    where: str  # a secret-free address, for reprs, errors and logs
    cluster: bool  # the cluster key layout (keys.py)
    owned: bool  # the store closes the caller when it closes


def from_config(cls: type[Store], config: SessionBackendConfig) -> Store:
    """A store of class `cls` as a Redis `config` describes: the path of every
    `RedisSessionStore.from_*` constructor, which describe theirs with
    `SessionBackendConfig.redis_url`, `redis_sentinel` or `redis_cluster`."""
    if config.redis is None:
        raise TypeError(f"not a Redis config: {config!r}")
    return from_options(cls, config.redis, **config.store)


def from_options(
    cls: type[Store],
    options: RedisOptions | RedisSentinelOptions | RedisClusterOptions,
    **store: Unpack[StoreOptions],
) -> Store:
    """A store of class `cls` that owns a new client and pool built from `options`."""
    return cls(connect(options), namespace=options.namespace, **store)


def connect(options: RedisOptions | RedisSentinelOptions | RedisClusterOptions) -> Connection:
    """The connection `options` describe; nothing connects until the first call."""
    if isinstance(options, RedisSentinelOptions):
        return _sentinel(options)
    if isinstance(options, RedisClusterOptions):
        return _cluster(options)
    client, batching = _client_parts(options)
    where = redact_url(options.url)
    caller = RedisCaller(
        client,
        where=where,
        pool_timeout=options.pool_timeout,
        socket_timeout=options.socket_timeout,
        batching=batching,
    )
    return Connection(caller, client, where, cluster=False, owned=True)


def around_client(
    client: object, *, pool_timeout: float, socket_timeout: float | None
) -> Connection:
    """The connection of a store around a caller's own client, which the store does not close."""
    if not isinstance(client, aioredis.Redis):
        raise TypeError(f"client must be redis.asyncio.Redis, not {type(client).__name__}")
    if _retries_of(client) != 0:
        raise InvalidInputError(
            "RedisSessionStore needs a client with redis-py retries off "
            "(Redis(..., retry=Retry(NoBackoff(), 0))): redis-py re-sends commands whose "
            "reply was lost, which could apply a write twice; the store retries reads itself"
        )
    pool = client.connection_pool
    where = _describe(pool)
    kind = SentinelCaller if isinstance(pool, PrimaryPool) else RedisCaller
    caller = kind(client, where=where, pool_timeout=pool_timeout, socket_timeout=socket_timeout)
    return Connection(caller, client, where, cluster=False, owned=False)


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
            socket_timeout=None,  # enforced per call by the caller (caller.py)
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


def _sentinel(options: RedisSentinelOptions) -> Connection:
    """One Sentinel and one primary pool, built once (redis-py's `master_for` builds a new pool
    per call)."""
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
        socket_timeout=None,  # enforced per call by the caller (caller.py)
        retry=Retry(NoBackoff(), 0),
        **node_tls,
    )
    client = aioredis.Redis(connection_pool=pool)
    caller = SentinelCaller(
        client,
        where=options.address,
        pool_timeout=options.pool_timeout,
        socket_timeout=options.socket_timeout,
    )
    return Connection(caller, client, options.address, cluster=False, owned=True)


def _cluster(options: RedisClusterOptions) -> Connection:
    """A caller routing each call to its slot's master (cluster.ClusterCaller), each master
    reached through its own caller built as a single-node store's."""

    def node(address: Node) -> RedisCaller:
        node_options = RedisOptions(
            url=options.node_url(*address), namespace=options.namespace, **options.pool_options()
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
    return Connection(caller, None, options.address, cluster=True, owned=True)
