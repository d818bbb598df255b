"""Redis connection options, validated at construction, with the password kept out of reprs.

Redis-free on purpose: `SessionBackendConfig.redis_url(...)` builds these without the extra.
`RedisOptions` reaches one server by URL; `RedisSentinelOptions` reaches the primary of a
Sentinel-monitored service (see `RedisSentinelOptions.from_url` for its URL form);
`RedisClusterOptions` reaches a Redis Cluster through one or more of its nodes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypedDict, Unpack
from urllib.parse import SplitResult, parse_qsl, unquote, urlencode, urlsplit

from ...errors import InvalidInputError
from .keys import validate_namespace

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
DEFAULT_SENTINEL_PORT = 26379
_SCHEMES = frozenset({"redis", "rediss", "unix"})
# A sentinel URL's scheme, and whether it means TLS (to the sentinels and the data nodes alike).
_SENTINEL_SCHEMES = {"redis+sentinel": False, "rediss+sentinel": True}


# Query options a Redis URL may carry, by kind of value (what redis-py's from_url understands and
# passes on to its connections). Anything else would reach redis-py's connection class as an
# unexpected keyword, failing only at the first call.
_NUMBER_OPTIONS = frozenset(
    {"socket_timeout", "socket_connect_timeout", "timeout", "health_check_interval"}
)
_INT_OPTIONS = frozenset({"db", "socket_read_size", "max_connections", "protocol"})
_BOOL_OPTIONS = frozenset({"socket_keepalive", "retry_on_timeout", "ssl_check_hostname"})
_TEXT_OPTIONS = frozenset(
    {
        "password",
        "username",
        "client_name",
        "ssl_cert_reqs",
        "ssl_ca_certs",
        "ssl_ca_path",
        "ssl_certfile",
        "ssl_keyfile",
    }
)
_QUERY_OPTIONS = _NUMBER_OPTIONS | _INT_OPTIONS | _BOOL_OPTIONS | _TEXT_OPTIONS
_BOOLS = frozenset({"", "0", "1", "true", "false", "yes", "no", "t", "f", "y", "n"})


def _url_error(what: str, parts: SplitResult | None = None, raw: str = "") -> InvalidInputError:
    """InvalidInputError for a malformed URL; the URL itself (which may hold a password) is never
    part of the message."""
    if parts is not None and "@" not in parts.netloc:
        raw = f"{parts.path}?{parts.query}#{parts.fragment}"
    if "@" in raw:
        what += (
            " (an unescaped '/', '?', '#' or '@' in the user name or password ends the address "
            "early: those characters must be percent-encoded)"
        )
    return InvalidInputError(f"malformed Redis URL: {what}")


def _check_query(query: str) -> None:
    for position, (name, value) in enumerate(parse_qsl(query, keep_blank_values=True), 1):
        if name not in _QUERY_OPTIONS:
            # Named by position only: after a password holding an unescaped '&', the "name" is
            # the rest of the password.
            supported = ", ".join(sorted(_QUERY_OPTIONS))
            raise _url_error(f"query option #{position} is not supported (supported: {supported})")
        if name in _NUMBER_OPTIONS | _INT_OPTIONS:
            try:
                number = int(value) if name in _INT_OPTIONS else float(value)
            except ValueError:
                number = None
            if number is None or not math.isfinite(number) or number < 0:
                kind = "a whole number" if name in _INT_OPTIONS else "a number of seconds"
                raise _url_error(f"query option {name!r} must be {kind}")
        elif name in _BOOL_OPTIONS and value.lower() not in _BOOLS:
            raise _url_error(f"query option {name!r} must be true or false")


def _split(url: object) -> SplitResult:
    if not isinstance(url, str):
        raise InvalidInputError(f"Redis URL must be a str, not {type(url).__name__}")
    try:
        parts = urlsplit(url)
    except ValueError:
        # urlsplit refuses only a malformed host: an unbalanced IPv6 bracket, or characters that
        # change under NFKC normalization.
        raise _url_error("the host is not valid (an IPv6 address needs [brackets])") from None
    if parts.scheme not in _SCHEMES:
        scheme = f"{parts.scheme}://" if parts.scheme else "none"
        raise _url_error(f"the scheme must be redis://, rediss:// or unix://, not {scheme}")
    if parts.scheme == "unix":
        if not parts.path:
            raise _url_error("unix:// needs a socket path", parts)
    else:
        try:
            port = parts.port
        except ValueError:
            port = 0
        if port == 0:
            raise _url_error("the port must be a number from 1 to 65535", parts)
        if not parts.hostname:
            raise _url_error("the host is missing", parts)
        db = parts.path.lstrip("/")
        if db and not db.isdigit():
            raise _url_error("the path must be a database number, such as /0", parts)
    _check_query(parts.query)
    return parts


def redact_url(url: str) -> str:
    """`url` with any password (userinfo or `?password=`) replaced by `***`."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<unparsable url>"
    if password is None and "password" not in parts.query:
        return url
    if password is not None:
        user = parts.username or ""
        host = parts.netloc.rpartition("@")[2]
        parts = parts._replace(netloc=f"{user}:***@{host}")
    if "password" in parts.query:
        pairs = [
            (name, "***" if name == "password" else value)
            for name, value in parse_qsl(parts.query, keep_blank_values=True)
        ]
        parts = parts._replace(query=urlencode(pairs, safe="*"))
    # Rebuilt by hand: SplitResult.geturl() drops the '//' of unix:// URLs (empty host).
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme}://{parts.netloc}{parts.path}{query}"


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
        _split(self.url)
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

# Sentinel's master names are free text; these are the characters a URL path segment carries
# unescaped, enough for the usual names (mymaster, redis-prod, sessions.eu-1).
_SERVICE_NAME = re.compile(r"[A-Za-z0-9._:-]{1,200}")
# The query options a sentinel URL may carry: the data nodes' credentials (the sentinels' own
# credentials are the URL's user info).
_SENTINEL_QUERY_OPTIONS = ("username", "password")


def is_sentinel_url(url: object) -> bool:
    """True for a `redis+sentinel://` or `rediss+sentinel://` URL."""
    return isinstance(url, str) and url.partition("://")[0].lower() in _SENTINEL_SCHEMES


def _sentinel_error(what: str) -> InvalidInputError:
    """InvalidInputError naming the wrong part of a sentinel address, never the address itself."""
    return InvalidInputError(f"malformed Redis Sentinel address: {what}")


def _credentials(userinfo: str, what: str) -> tuple[str | None, str | None]:
    """(username, password) from a URL's user info; empty parts are None."""
    if not userinfo:
        return None, None
    user, colon, password = userinfo.partition(":")
    if not colon:
        # `secret@host`: a user name to urllib and redis-py, a password to other clients; a
        # password taken for a user name would then show in reprs, so it is refused.
        raise _sentinel_error(f"{what}: the user info must be user:password or :password")
    return unquote(user) or None, unquote(password) or None


def _host_port(text: str, what: str) -> tuple[str, int]:
    """`host[:port]` (IPv6 in brackets); the port defaults to Sentinel's 26379."""
    try:
        parts = urlsplit(f"//{text}")
        port = parts.port
    except ValueError:
        raise _sentinel_error(
            f"{what}: the port must be a number from 1 to 65535 (an IPv6 host needs [brackets])"
        ) from None
    if not parts.hostname or parts.path or parts.query or parts.fragment or "@" in parts.netloc:
        raise _sentinel_error(f"{what}: expected host or host:port")
    if port == 0:
        raise _sentinel_error(f"{what}: the port must be a number from 1 to 65535")
    return parts.hostname, port or DEFAULT_SENTINEL_PORT


def _check_service_name(name: object) -> str:
    if not isinstance(name, str):
        raise InvalidInputError(f"service_name must be a str, not {type(name).__name__}")
    if not _SERVICE_NAME.fullmatch(name):
        raise InvalidInputError(
            "service_name must be 1 to 200 letters, digits or '.', '_', ':', '-' "
            "(the name Sentinel monitors the primary under)"
        )
    return name


def _parse_sentinel_urls(
    urls: Sequence[str],
) -> tuple[tuple[tuple[str, int], ...], bool, str | None, str | None]:
    """(addresses, tls, username, password) from `redis://`/`rediss://` sentinel URLs.

    redis-py's Sentinel opens every sentinel with the same options, so all of them must agree on
    TLS and credentials.
    """
    if isinstance(urls, str) or not isinstance(urls, Sequence) or not urls:
        raise InvalidInputError(
            "sentinel_urls must be a non-empty list of redis:// or rediss:// URLs"
        )
    addresses: list[tuple[str, int]] = []
    seen: set[tuple[bool, str | None, str | None]] = set()
    for number, url in enumerate(urls, 1):
        what = f"sentinel URL #{number}"
        if not isinstance(url, str):
            raise _sentinel_error(f"{what} must be a str, not {type(url).__name__}")
        scheme, sep, rest = url.partition("://")
        if not sep or scheme.lower() not in ("redis", "rediss"):
            raise _sentinel_error(f"{what}: the scheme must be redis:// or rediss://")
        netloc, _, tail = rest.partition("/")
        if tail or any(mark in netloc for mark in "?#"):
            raise _sentinel_error(
                f"{what}: a sentinel URL is only [user:password@]host[:port] (the service name "
                "and database are separate options; an unescaped '/', '?', '#' or '@' in the "
                "password must be percent-encoded)"
            )
        userinfo, _, host = netloc.rpartition("@")
        username, password = _credentials(userinfo, what)
        addresses.append(_host_port(host, what))
        seen.add((scheme.lower() == "rediss", username, password))
    if len(seen) > 1:
        raise _sentinel_error(
            "all sentinel URLs must use the same scheme and the same credentials "
            "(redis-py opens every sentinel with one set of options)"
        )
    tls, username, password = seen.pop()
    return tuple(addresses), tls, username, password


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
        _check_service_name(self.service_name)
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
        if not is_sentinel_url(url):
            raise _sentinel_error("the scheme must be redis+sentinel:// or rediss+sentinel://")
        scheme, _, rest = url.partition("://")
        rest, _, fragment = rest.partition("#")
        rest, _, query = rest.partition("?")
        netloc, _, path = rest.partition("/")
        if fragment or ("@" in path) or ("@" in query and "@" not in netloc):
            raise _sentinel_error(
                "unexpected '#' or '@' after the hosts (an unescaped '/', '?', '#' or '@' in "
                "the user name or password ends the address early: percent-encode them)"
            )
        userinfo, _, hosts = netloc.rpartition("@")
        sentinel_username, sentinel_password = _credentials(userinfo, "the sentinels' user info")
        if not hosts:
            raise _sentinel_error("no sentinel host (expected host1:port,host2:port after //)")
        sentinels = tuple(
            _host_port(host, f"sentinel host #{number}")
            for number, host in enumerate(hosts.split(","), 1)
        )
        service, _, db_text = path.partition("/")
        if not service:
            raise _sentinel_error("the path must name the service: /service_name[/db]")
        service = unquote(service)
        _check_service_name(service)
        db_text = db_text.rstrip("/")
        if db_text and not db_text.isdigit():
            raise _sentinel_error("the database after the service name must be a number, e.g. /0")
        node: dict[str, str] = {}
        for position, (name, value) in enumerate(parse_qsl(query, keep_blank_values=True), 1):
            if name not in _SENTINEL_QUERY_OPTIONS:
                raise _sentinel_error(
                    f"query option #{position} is not supported (supported: username, password; "
                    "pool options are keyword options)"
                )
            node[name] = value
        return cls(
            sentinels=sentinels,
            service_name=service,
            db=int(db_text or 0),
            tls=_SENTINEL_SCHEMES[scheme.lower()],
            sentinel_username=sentinel_username,
            sentinel_password=sentinel_password,
            username=node.get("username") or None,
            password=node.get("password") or None,
            namespace=namespace,
            **options,
        )

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
        sentinels, tls, sentinel_username, sentinel_password = _parse_sentinel_urls(sentinel_urls)
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
            parts = _split(url)
            if parts.scheme == "unix":
                raise _url_error(f"startup URL #{number}: a cluster node needs a host and port")
            if parts.path.strip("/") not in ("", "0"):
                raise _url_error(f"startup URL #{number}: a Redis Cluster has only database 0")
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
