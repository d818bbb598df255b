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


def _split(url: object) -> SplitResult:
    if not isinstance(url, str):
        raise InvalidInputError(f"Redis URL must be a str, not {type(url).__name__}")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise InvalidInputError("malformed Redis URL") from None
    if parts.scheme not in _SCHEMES:
        raise InvalidInputError("Redis URL scheme must be redis://, rediss:// or unix://")
    if parts.scheme == "unix":
        if not parts.path:
            raise InvalidInputError("unix:// Redis URL needs a socket path")
    else:
        if not parts.hostname:
            raise InvalidInputError("Redis URL needs a host")
        db = parts.path.lstrip("/")
        if db and not db.isdigit():
            raise InvalidInputError("Redis URL path must be a database number")
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


@dataclass(frozen=True, slots=True)
class RedisOptions:
    """How to reach Redis. Timeouts are seconds.

    `connect_timeout` bounds opening a TCP connection, `socket_timeout` one Redis call from send
    to reply (handshake of a new connection included), `pool_timeout` the wait for a free
    connection when `max_connections` are busy.
    """

    url: str = field(repr=False)
    namespace: str = DEFAULT_NAMESPACE
    max_connections: int = 64
    connect_timeout: float = 2.0
    socket_timeout: float = 2.0
    pool_timeout: float = DEFAULT_POOL_TIMEOUT
    tls_ca_file: str | None = None

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

    def __repr__(self) -> str:
        return (
            f"RedisOptions(url={redact_url(self.url)!r}, namespace={self.namespace!r}, "
            f"max_connections={self.max_connections}, connect_timeout={self.connect_timeout}, "
            f"socket_timeout={self.socket_timeout}, pool_timeout={self.pool_timeout}, "
            f"tls_ca_file={self.tls_ca_file!r})"
        )
