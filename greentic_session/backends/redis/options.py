"""Redis connection options, validated at construction, with the password kept out of reprs.

Redis-free on purpose: `SessionBackendConfig.redis_url(...)` builds these without the extra.
`PoolOptions` holds what every kind shares (the namespace and the pool, with their defaults);
`RedisOptions` reaches one server by URL; `RedisSentinelOptions` reaches the primary of a
Sentinel-monitored service (see `RedisSentinelOptions.from_url` for its URL form);
`RedisClusterOptions` reaches a Redis Cluster through one or more of its nodes (see
`RedisClusterOptions.from_url`). `options_for_url` picks the kind a URL names. The keyword
options every Redis store and config takes are `RedisStoreOptions`. URLs are parsed and
redacted in `urls` (`redact_url`, `is_sentinel_url` and `DEFAULT_SENTINEL_PORT` are importable
from here too).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import ClassVar, TypedDict, Unpack, cast
from urllib.parse import urlsplit

from ...errors import InvalidInputError
from ...store import StoreOptions
from .keys import validate_namespace
from .urls import (
    DEFAULT_SENTINEL_PORT,
    check_service_name,
    cluster_startup_urls,
    is_cluster_url,
    is_sentinel_url,
    parse_sentinel_url,
    parse_sentinel_urls,
    redact_url,
    split_url,
    url_error,
)

__all__ = [
    "DEFAULT_NAMESPACE",
    "DEFAULT_POOL_TIMEOUT",
    "DEFAULT_SENTINEL_PORT",
    "PoolOptions",
    "RedisClusterOptions",
    "RedisOptions",
    "RedisPoolOptions",
    "RedisSentinelOptions",
    "RedisStoreOptions",
    "is_sentinel_url",
    "options_for_url",
    "redact_url",
    "split_store_options",
]

DEFAULT_NAMESPACE = "greentic:session"
DEFAULT_POOL_TIMEOUT = 2.0


class RedisPoolOptions(TypedDict, total=False):
    """The pool fields of `PoolOptions` (their defaults are there), for `**options` signatures."""

    max_connections: int
    connect_timeout: float
    socket_timeout: float
    pool_timeout: float
    tls_ca_file: str | None
    batching: bool


class RedisStoreOptions(RedisPoolOptions, StoreOptions, total=False):
    """Every keyword option of a Redis store or config besides its address: the `namespace`,
    the pool's (`RedisPoolOptions`), and the `StoreOptions` every backend takes (`idle_ttl`,
    `max_lifetime`, `max_blob_bytes`, `encryption`, `compression`)."""

    namespace: str


_STORE_OPTIONS = tuple(StoreOptions.__annotations__)


def split_store_options(options: RedisStoreOptions) -> tuple[str, RedisPoolOptions, StoreOptions]:
    """(namespace, pool options, store options) from one set of keyword options. Names that are
    none of them stay with the pool options, whose class then refuses them (TypeError, as for
    any unknown keyword argument)."""
    rest = dict(options)
    namespace = cast(str, rest.pop("namespace", DEFAULT_NAMESPACE))
    store = {name: rest.pop(name) for name in _STORE_OPTIONS if name in rest}
    return namespace, cast(RedisPoolOptions, rest), cast(StoreOptions, store)


def _positive(value: float, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInputError(f"{what} must be a finite number")
    if value <= 0:
        raise InvalidInputError(f"{what} must be positive")


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolOptions:
    """What every Redis options kind shares: the key namespace and the connection pool.
    Timeouts are seconds; every field is keyword-only.

    `connect_timeout` bounds opening a TCP connection, `socket_timeout` one Redis call from send
    to reply (handshake of a new connection included), `pool_timeout` the wait for a free
    connection when `max_connections` are busy. `batching` (the default) sends concurrent calls
    as one write on a few shared connections (`transport.BatchingPool`): `max_connections` then
    bounds nothing, `pool_timeout` bounds the wait for room in the connections' in-flight
    queues. `batching=False` uses redis-py's pool of up to `max_connections` connections.
    """

    # Whether the kind uses the cluster key layout (its namespace may hold no brace).
    _CLUSTER_LAYOUT: ClassVar[bool] = False

    namespace: str = DEFAULT_NAMESPACE
    max_connections: int = 64
    connect_timeout: float = 2.0
    socket_timeout: float = 2.0
    pool_timeout: float = DEFAULT_POOL_TIMEOUT
    tls_ca_file: str | None = None
    batching: bool = True

    def pool_options(self) -> RedisPoolOptions:
        """The pool fields, as keyword options (a cluster's masters get its own)."""
        return cast(RedisPoolOptions, {name: getattr(self, name) for name in _POOL_FIELDS})

    def _check_pool(self) -> None:
        """The checks every kind shares: namespace, pool size, timeouts, CA file."""
        validate_namespace(self.namespace, cluster=self._CLUSTER_LAYOUT)
        if isinstance(self.max_connections, bool) or not isinstance(self.max_connections, int):
            raise InvalidInputError("max_connections must be an int")
        if self.max_connections < 1:
            raise InvalidInputError("max_connections must be at least 1")
        _positive(self.connect_timeout, "connect_timeout")
        _positive(self.socket_timeout, "socket_timeout")
        _positive(self.pool_timeout, "pool_timeout")
        if self.tls_ca_file is not None and not isinstance(self.tls_ca_file, str):
            raise InvalidInputError("tls_ca_file must be a path str")

    def _check_batching(self) -> None:
        if not isinstance(self.batching, bool):
            raise InvalidInputError("batching must be a bool")

    def _repr_fields(self, *, batching: bool = True) -> str:
        """The shared fields of a repr, after the kind's (secret-free) address."""
        tail = f", batching={self.batching}" if batching else ""
        return (
            f"namespace={self.namespace!r}, max_connections={self.max_connections}, "
            f"connect_timeout={self.connect_timeout}, socket_timeout={self.socket_timeout}, "
            f"pool_timeout={self.pool_timeout}, tls_ca_file={self.tls_ca_file!r}{tail}"
        )


# The pool fields: every shared field but the namespace (RedisPoolOptions names the same).
_POOL_FIELDS = tuple(f.name for f in fields(PoolOptions) if f.name != "namespace")


def options_for_url(
    url: str, *, namespace: str = DEFAULT_NAMESPACE, **options: Unpack[RedisPoolOptions]
) -> RedisOptions | RedisSentinelOptions | RedisClusterOptions:
    """The options a URL names: `redis+sentinel://` (`RedisSentinelOptions.from_url`),
    `redis+cluster://` (`RedisClusterOptions.from_url`), or one server (`RedisOptions`)."""
    if is_sentinel_url(url):
        return RedisSentinelOptions.from_url(url, namespace=namespace, **options)
    if is_cluster_url(url):
        return RedisClusterOptions.from_url(url, namespace=namespace, **options)
    return RedisOptions(url=url, namespace=namespace, **options)


@dataclass(frozen=True, slots=True)
class RedisOptions(PoolOptions):
    """How to reach one Redis server by URL (`redis://`, `rediss://`, `unix://`; credentials may
    be in it). Pool options as in `PoolOptions`."""

    url: str = field(repr=False)

    def __post_init__(self) -> None:
        if is_sentinel_url(self.url):
            raise InvalidInputError(
                "a redis+sentinel:// URL names a Sentinel service: build it with "
                "RedisSentinelOptions.from_url (SessionBackendConfig.redis_url does)"
            )
        if is_cluster_url(self.url):
            raise InvalidInputError(
                "a redis+cluster:// URL names a Redis Cluster: build it with "
                "RedisClusterOptions.from_url (SessionBackendConfig.redis_url does)"
            )
        split_url(self.url)
        self._check_pool()
        self._check_batching()

    def __repr__(self) -> str:
        return f"RedisOptions(url={redact_url(self.url)!r}, {self._repr_fields()})"


# -- Redis Sentinel ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RedisSentinelOptions(PoolOptions):
    """How to reach the primary of a Sentinel-monitored service. Timeouts are seconds.

    `sentinels` are the sentinels' (host, port) pairs; `sentinel_username`/`sentinel_password`
    authenticate to them, `username`/`password` to the data nodes. `tls` applies to both, and
    `tls_ca_file` is the CA both are checked against. Pool options as in `PoolOptions`, but
    `batching` is off. Build with `from_url` or `from_sentinel_urls`.
    """

    sentinels: tuple[tuple[str, int], ...]
    service_name: str
    db: int = 0
    tls: bool = False
    sentinel_username: str | None = field(default=None, repr=False)
    sentinel_password: str | None = field(default=None, repr=False)
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    # The batching transport does not follow a Sentinel failover: Sentinel stores use redis-py.
    batching: bool = field(default=False, kw_only=True)

    def __post_init__(self) -> None:
        if not self.sentinels:
            raise InvalidInputError("at least one sentinel address is needed")
        for host, port in self.sentinels:
            if not isinstance(host, str) or not host or isinstance(port, bool):
                raise InvalidInputError("each sentinel must be a (host, port) pair")
            if not isinstance(port, int) or not 1 <= port <= 65535:
                raise InvalidInputError("a sentinel port must be a number from 1 to 65535")
        check_service_name(self.service_name)
        if isinstance(self.db, bool) or not isinstance(self.db, int) or self.db < 0:
            raise InvalidInputError("db must be a database number (an int >= 0)")
        for name in ("sentinel_username", "sentinel_password", "username", "password"):
            if not isinstance(getattr(self, name), str | None):
                raise InvalidInputError(f"{name} must be a str or None")
        self._check_pool()
        if self.batching is not False:
            raise InvalidInputError(
                "batching is not available through Sentinel (the batching transport does not "
                "follow a failover): leave it off"
            )
        if self.tls_ca_file is not None and not self.tls:
            raise InvalidInputError(
                "tls_ca_file needs TLS: use rediss:// sentinel URLs (or rediss+sentinel://)"
            )

    @classmethod
    def from_url(
        cls, url: str, *, namespace: str = DEFAULT_NAMESPACE, **options: Unpack[RedisPoolOptions]
    ) -> RedisSentinelOptions:
        """Options from `redis+sentinel://[user:password@]host1[:port],host2[:port]/service[/db]`.

        The user info authenticates to the sentinels; `?username=...&password=...` to the data
        nodes. `rediss+sentinel://` uses TLS for both. A port defaults to 26379.
        """
        return cls(**parse_sentinel_url(url)._asdict(), namespace=namespace, **options)

    @classmethod
    def from_sentinel_urls(
        cls,
        sentinel_urls: Sequence[str],
        service_name: str,
        *,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        namespace: str = DEFAULT_NAMESPACE,
        **options: Unpack[RedisPoolOptions],
    ) -> RedisSentinelOptions:
        """Options from one `redis://[user:password@]host[:port]` URL per sentinel (`rediss://`
        for TLS to sentinels and data nodes); `username`/`password` authenticate to the data
        nodes."""
        sentinels, tls, sentinel_username, sentinel_password = parse_sentinel_urls(sentinel_urls)
        return cls(
            sentinels=sentinels,
            service_name=service_name,
            db=db,
            tls=tls,
            sentinel_username=sentinel_username,
            sentinel_password=sentinel_password,
            username=username,
            password=password,
            namespace=namespace,
            **options,
        )

    @property
    def address(self) -> str:
        """The service as a secret-free sentinel URL, for reprs, errors and logs."""
        scheme = "rediss+sentinel" if self.tls else "redis+sentinel"
        hosts = ",".join(
            f"[{host}]:{port}" if ":" in host else f"{host}:{port}" for host, port in self.sentinels
        )
        return f"{scheme}://{hosts}/{self.service_name}/{self.db}"

    def __repr__(self) -> str:
        return (
            f"RedisSentinelOptions(address={self.address!r}, {self._repr_fields(batching=False)})"
        )


# -- Redis Cluster -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RedisClusterOptions(PoolOptions):
    """How to reach a Redis Cluster. Timeouts are seconds.

    `startup_urls` are `redis://` (or `rediss://`) URLs of one or more nodes, all with the same
    scheme and credentials (user info or `?username=&password=`): the store asks any of them for
    the slot map and reaches every master the same way. Pool options as in `PoolOptions`, per
    master (with `batching`, each master gets its own batching connections). A cluster has only
    database 0, and the namespace may not hold `{` or `}` (keys.py). Build from one URL with
    `from_url`.
    """

    _CLUSTER_LAYOUT: ClassVar[bool] = True

    startup_urls: tuple[str, ...] = field(repr=False)

    def __post_init__(self) -> None:
        urls: object = self.startup_urls
        if isinstance(urls, str) or not isinstance(urls, tuple | list) or not urls:
            raise InvalidInputError("startup_urls must be a non-empty sequence of redis:// URLs")
        object.__setattr__(self, "startup_urls", tuple(urls))
        schemes, credentials = set(), set()
        for number, url in enumerate(self.startup_urls, 1):
            parts = split_url(url)
            if parts.scheme == "unix" or parts.port is None:
                raise url_error(f"startup URL #{number}: a cluster node needs a host and port")
            if parts.path.strip("/") not in ("", "0"):
                raise url_error(f"startup URL #{number}: a Redis Cluster has only database 0")
            schemes.add(parts.scheme)
            credentials.add((parts.username, parts.password, parts.query))
        if len(schemes) > 1 or len(credentials) > 1:
            raise InvalidInputError(
                "every startup URL of a Redis Cluster must use the same scheme and credentials"
            )
        self._check_pool()
        self._check_batching()

    @classmethod
    def from_url(
        cls, url: str, *, namespace: str = DEFAULT_NAMESPACE, **options: Unpack[RedisPoolOptions]
    ) -> RedisClusterOptions:
        """Options from `redis+cluster://[user:password@]host1:port,host2:port[/0][?query]`.

        Each host is a startup node, reached with the URL's credentials and query options (as
        a `redis://` URL's); `rediss+cluster://` uses TLS.
        """
        return cls(cluster_startup_urls(url), namespace=namespace, **options)

    @property
    def startup_nodes(self) -> tuple[tuple[str, int], ...]:
        nodes = []
        for url in self.startup_urls:
            parts = urlsplit(url)
            assert parts.hostname is not None  # checked
            assert parts.port is not None  # checked
            nodes.append((parts.hostname, parts.port))
        return tuple(nodes)

    def node_url(self, host: str, port: int) -> str:
        """The URL of the node at `host:port`: the first startup URL's scheme, credentials and
        options, pointed at that node."""
        parts = urlsplit(self.startup_urls[0])
        userinfo = parts.netloc.rpartition("@")[0]
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        netloc = f"{userinfo}@{address}" if userinfo else address
        query = f"?{parts.query}" if parts.query else ""
        return f"{parts.scheme}://{netloc}/0{query}"

    @property
    def address(self) -> str:
        """The cluster as secret-free text, for reprs, errors and logs."""
        scheme = urlsplit(self.startup_urls[0]).scheme
        hosts = ",".join(
            f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            for host, port in self.startup_nodes
        )
        return f"{scheme}+cluster://{hosts}"

    def __repr__(self) -> str:
        return f"RedisClusterOptions(address={self.address!r}, {self._repr_fields()})"
