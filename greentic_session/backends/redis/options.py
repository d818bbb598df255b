"""Redis connection options, validated at construction, with the password kept out of reprs.

Redis-free on purpose: `SessionBackendConfig.redis_url(...)` builds these without the extra.
URLs are parsed and redacted in `urls` (`redact_url`, `is_sentinel_url` and
`DEFAULT_SENTINEL_PORT` are importable from here too).
`RedisOptions` reaches one server by URL; `RedisSentinelOptions` reaches the primary of a
Sentinel-monitored service (see `RedisSentinelOptions.from_url` for its URL form);
`RedisClusterOptions` reaches a Redis Cluster through one or more of its nodes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypedDict, Unpack
from urllib.parse import urlsplit

from ...errors import InvalidInputError
from .keys import validate_namespace
from .urls import (
    DEFAULT_SENTINEL_PORT,
    check_service_name,
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
    "RedisClusterOptions",
    "RedisOptions",
    "RedisPoolOptions",
    "RedisSentinelOptions",
    "is_sentinel_url",
    "redact_url",
]

DEFAULT_NAMESPACE = "greentic:session"
DEFAULT_POOL_TIMEOUT = 2.0


def _positive(value: float, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInputError(f"{what} must be a finite number")
    if value <= 0:
        raise InvalidInputError(f"{what} must be positive")


def _check_pool_options(
    options: RedisOptions | RedisSentinelOptions | RedisClusterOptions,
) -> None:
    """The checks every Redis options kind shares: namespace, pool size, timeouts, CA file."""
    validate_namespace(options.namespace, cluster=isinstance(options, RedisClusterOptions))
    if isinstance(options.max_connections, bool) or not isinstance(options.max_connections, int):
        raise InvalidInputError("max_connections must be an int")
    if options.max_connections < 1:
        raise InvalidInputError("max_connections must be at least 1")
    _positive(options.connect_timeout, "connect_timeout")
    _positive(options.socket_timeout, "socket_timeout")
    _positive(options.pool_timeout, "pool_timeout")
    if options.tls_ca_file is not None and not isinstance(options.tls_ca_file, str):
        raise InvalidInputError("tls_ca_file must be a path str")


class RedisPoolOptions(TypedDict, total=False):
    """The tunable `RedisOptions` fields, for `**options` signatures."""

    max_connections: int
    connect_timeout: float
    socket_timeout: float
    pool_timeout: float
    tls_ca_file: str | None
    batching: bool


@dataclass(frozen=True, slots=True)
class RedisOptions:
    """How to reach Redis. Timeouts are seconds.

    `connect_timeout` bounds opening a TCP connection, `socket_timeout` one Redis call from send
    to reply (handshake of a new connection included), `pool_timeout` the wait for a free
    connection when `max_connections` are busy. `batching` (the default) sends concurrent calls
    as one write on a few shared connections (`transport.BatchingPool`): `max_connections` then
    bounds nothing, `pool_timeout` bounds the wait for room in the connections' in-flight
    queues. `batching=False` uses redis-py's pool of up to `max_connections` connections.
    """

    url: str = field(repr=False)
    namespace: str = DEFAULT_NAMESPACE
    max_connections: int = 64
    connect_timeout: float = 2.0
    socket_timeout: float = 2.0
    pool_timeout: float = DEFAULT_POOL_TIMEOUT
    tls_ca_file: str | None = None
    batching: bool = True

    def __post_init__(self) -> None:
        if is_sentinel_url(self.url):
            raise InvalidInputError(
                "a redis+sentinel:// URL names a Sentinel service: build it with "
                "RedisSentinelOptions.from_url (SessionBackendConfig.redis_url does)"
            )
        split_url(self.url)
        _check_pool_options(self)
        if not isinstance(self.batching, bool):
            raise InvalidInputError("batching must be a bool")

    def __repr__(self) -> str:
        return (
            f"RedisOptions(url={redact_url(self.url)!r}, namespace={self.namespace!r}, "
            f"max_connections={self.max_connections}, connect_timeout={self.connect_timeout}, "
            f"socket_timeout={self.socket_timeout}, pool_timeout={self.pool_timeout}, "
            f"tls_ca_file={self.tls_ca_file!r}, batching={self.batching})"
        )


# -- Redis Sentinel ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RedisSentinelOptions:
    """How to reach the primary of a Sentinel-monitored service. Timeouts are seconds.

    `sentinels` are the sentinels' (host, port) pairs; `sentinel_username`/`sentinel_password`
    authenticate to them, `username`/`password` to the data nodes. `tls` applies to both, and
    `tls_ca_file` is the CA both are checked against. Pool options as in `RedisOptions`. Build
    with `from_url` or `from_sentinel_urls`.
    """

    sentinels: tuple[tuple[str, int], ...]
    service_name: str
    db: int = 0
    tls: bool = False
    sentinel_username: str | None = field(default=None, repr=False)
    sentinel_password: str | None = field(default=None, repr=False)
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    namespace: str = DEFAULT_NAMESPACE
    max_connections: int = 64
    connect_timeout: float = 2.0
    socket_timeout: float = 2.0
    pool_timeout: float = DEFAULT_POOL_TIMEOUT
    tls_ca_file: str | None = None
    # The batching transport does not follow a Sentinel failover: Sentinel stores use redis-py.
    batching: bool = False

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
        _check_pool_options(self)
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
            f"RedisSentinelOptions(address={self.address!r}, namespace={self.namespace!r}, "
            f"max_connections={self.max_connections}, connect_timeout={self.connect_timeout}, "
            f"socket_timeout={self.socket_timeout}, pool_timeout={self.pool_timeout}, "
            f"tls_ca_file={self.tls_ca_file!r})"
        )


# -- Redis Cluster -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RedisClusterOptions:
    """How to reach a Redis Cluster. Timeouts are seconds.

    `startup_urls` are `redis://` (or `rediss://`) URLs of one or more nodes, all with the same
    scheme and credentials (user info or `?username=&password=`): the store asks any of them for
    the slot map and reaches every master the same way. Pool options as in `RedisOptions`, per
    master (with `batching`, each master gets its own batching connections). A cluster has only
    database 0, and the namespace may not hold `{` or `}` (keys.py).
    """

    startup_urls: tuple[str, ...] = field(repr=False)
    namespace: str = DEFAULT_NAMESPACE
    max_connections: int = 64
    connect_timeout: float = 2.0
    socket_timeout: float = 2.0
    pool_timeout: float = DEFAULT_POOL_TIMEOUT
    tls_ca_file: str | None = None
    batching: bool = True

    def __post_init__(self) -> None:
        urls: object = self.startup_urls
        if isinstance(urls, str) or not isinstance(urls, tuple | list) or not urls:
            raise InvalidInputError("startup_urls must be a non-empty sequence of redis:// URLs")
        object.__setattr__(self, "startup_urls", tuple(urls))
        schemes, credentials = set(), set()
        for number, url in enumerate(self.startup_urls, 1):
            parts = split_url(url)
            if parts.scheme == "unix":
                raise url_error(f"startup URL #{number}: a cluster node needs a host and port")
            if parts.path.strip("/") not in ("", "0"):
                raise url_error(f"startup URL #{number}: a Redis Cluster has only database 0")
            schemes.add(parts.scheme)
            credentials.add((parts.username, parts.password, parts.query))
        if len(schemes) > 1 or len(credentials) > 1:
            raise InvalidInputError(
                "every startup URL of a Redis Cluster must use the same scheme and credentials"
            )
        _check_pool_options(self)
        if not isinstance(self.batching, bool):
            raise InvalidInputError("batching must be a bool")

    @property
    def startup_nodes(self) -> tuple[tuple[str, int], ...]:
        nodes = []
        for url in self.startup_urls:
            parts = urlsplit(url)
            assert parts.hostname is not None  # checked
            assert parts.port is not None
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
        return (
            f"RedisClusterOptions(address={self.address!r}, namespace={self.namespace!r}, "
            f"max_connections={self.max_connections}, connect_timeout={self.connect_timeout}, "
            f"socket_timeout={self.socket_timeout}, pool_timeout={self.pool_timeout}, "
            f"tls_ca_file={self.tls_ca_file!r}, batching={self.batching})"
        )
