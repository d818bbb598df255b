"""Redis connection options, validated at construction, with the password kept out of reprs.

Redis-free on purpose: `SessionBackendConfig.redis_url(...)` builds these without the extra.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TypedDict
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit

from ...errors import InvalidInputError
from .keys import validate_namespace

__all__ = [
    "DEFAULT_NAMESPACE",
    "DEFAULT_POOL_TIMEOUT",
    "RedisOptions",
    "RedisPoolOptions",
    "redact_url",
]

DEFAULT_NAMESPACE = "greentic:session"
DEFAULT_POOL_TIMEOUT = 2.0
_SCHEMES = frozenset({"redis", "rediss", "unix"})


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
        _split(self.url)
        validate_namespace(self.namespace)
        if isinstance(self.max_connections, bool) or not isinstance(self.max_connections, int):
            raise InvalidInputError("max_connections must be an int")
        if self.max_connections < 1:
            raise InvalidInputError("max_connections must be at least 1")
        _positive(self.connect_timeout, "connect_timeout")
        _positive(self.socket_timeout, "socket_timeout")
        _positive(self.pool_timeout, "pool_timeout")
        if self.tls_ca_file is not None and not isinstance(self.tls_ca_file, str):
            raise InvalidInputError("tls_ca_file must be a path str")
        if not isinstance(self.batching, bool):
            raise InvalidInputError("batching must be a bool")

    def __repr__(self) -> str:
        return (
            f"RedisOptions(url={redact_url(self.url)!r}, namespace={self.namespace!r}, "
            f"max_connections={self.max_connections}, connect_timeout={self.connect_timeout}, "
            f"socket_timeout={self.socket_timeout}, pool_timeout={self.pool_timeout}, "
            f"tls_ca_file={self.tls_ca_file!r}, batching={self.batching})"
        )
