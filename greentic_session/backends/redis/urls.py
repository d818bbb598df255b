"""Redis URLs: parsing and checking (`split_url`), redaction (`redact_url`), the Sentinel address
forms (`parse_sentinel_url`, `parse_sentinel_urls`) and the Redis Cluster one
(`cluster_startup_urls`): one URL form reaches every topology.

Redis-free, as `options` (which builds on these). Errors name the wrong part of a URL, never the
URL itself, which may hold a password.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import NamedTuple
from urllib.parse import SplitResult, parse_qsl, unquote, urlencode, urlsplit

from ...errors import InvalidInputError

__all__ = [
    "DEFAULT_SENTINEL_PORT",
    "SentinelAddress",
    "check_service_name",
    "cluster_startup_urls",
    "is_cluster_url",
    "is_sentinel_url",
    "parse_sentinel_url",
    "parse_sentinel_urls",
    "redact_url",
    "split_url",
    "url_error",
]

DEFAULT_SENTINEL_PORT = 26379
_SCHEMES = frozenset({"redis", "rediss", "unix"})
# A sentinel URL's scheme, and whether it means TLS (to the sentinels and the data nodes alike).
_SENTINEL_SCHEMES = {"redis+sentinel": False, "rediss+sentinel": True}
# A cluster URL's scheme, and the scheme of the node URLs it stands for.
_CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


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


def url_error(what: str, parts: SplitResult | None = None, raw: str = "") -> InvalidInputError:
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
            raise url_error(f"query option #{position} is not supported (supported: {supported})")
        if name in _NUMBER_OPTIONS | _INT_OPTIONS:
            try:
                number = int(value) if name in _INT_OPTIONS else float(value)
            except ValueError:
                number = None
            if number is None or not math.isfinite(number) or number < 0:
                kind = "a whole number" if name in _INT_OPTIONS else "a number of seconds"
                raise url_error(f"query option {name!r} must be {kind}")
        elif name in _BOOL_OPTIONS and value.lower() not in _BOOLS:
            raise url_error(f"query option {name!r} must be true or false")


def split_url(url: object) -> SplitResult:
    """`url` split, once checked: scheme, host and port (or socket path), database, query."""
    if not isinstance(url, str):
        raise InvalidInputError(f"Redis URL must be a str, not {type(url).__name__}")
    try:
        parts = urlsplit(url)
    except ValueError:
        # urlsplit refuses only a malformed host: an unbalanced IPv6 bracket, or characters that
        # change under NFKC normalization.
        raise url_error("the host is not valid (an IPv6 address needs [brackets])") from None
    if parts.scheme not in _SCHEMES:
        scheme = f"{parts.scheme}://" if parts.scheme else "none"
        raise url_error(f"the scheme must be redis://, rediss:// or unix://, not {scheme}")
    if parts.scheme == "unix":
        if not parts.path:
            raise url_error("unix:// needs a socket path", parts)
    else:
        try:
            port = parts.port
        except ValueError:
            port = 0
        if port == 0:
            raise url_error("the port must be a number from 1 to 65535", parts)
        if not parts.hostname:
            raise url_error("the host is missing", parts)
        db = parts.path.lstrip("/")
        if db and not db.isdigit():
            raise url_error("the path must be a database number, such as /0", parts)
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


def check_service_name(name: object) -> str:
    if not isinstance(name, str):
        raise InvalidInputError(f"service_name must be a str, not {type(name).__name__}")
    if not _SERVICE_NAME.fullmatch(name):
        raise InvalidInputError(
            "service_name must be 1 to 200 letters, digits or '.', '_', ':', '-' "
            "(the name Sentinel monitors the primary under)"
        )
    return name


def parse_sentinel_urls(
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


class SentinelAddress(NamedTuple):
    """What a `redis+sentinel://` URL names (`RedisSentinelOptions` fields)."""

    sentinels: tuple[tuple[str, int], ...]
    service_name: str
    db: int
    tls: bool
    sentinel_username: str | None
    sentinel_password: str | None
    username: str | None
    password: str | None


def _multi_host_parts(
    url: str, error: Callable[[str], InvalidInputError]
) -> tuple[str, str, str, str, str | None, str]:
    """A `scheme://[userinfo@]host1,host2[/path][?query]` URL's (scheme, userinfo, "@" or "",
    hosts, path or None when there is no "/", query); `error` names what is wrong. A '#' or '@'
    after the hosts means an unescaped character in the user info ended the address early."""
    scheme, _, rest = url.partition("://")
    rest, _, fragment = rest.partition("#")
    rest, _, query = rest.partition("?")
    netloc, slash, path = rest.partition("/")
    if fragment or ("@" in path) or ("@" in query and "@" not in netloc):
        raise error(
            "unexpected '#' or '@' after the hosts (an unescaped '/', '?', '#' or '@' in "
            "the user name or password ends the address early: percent-encode them)"
        )
    userinfo, at, hosts = netloc.rpartition("@")
    return scheme, userinfo, at, hosts, (path if slash else None), query


def parse_sentinel_url(url: str) -> SentinelAddress:
    """`redis+sentinel://[user:password@]host1[:port],host2[:port]/service[/db]`, parsed.

    The user info authenticates to the sentinels; `?username=...&password=...` to the data
    nodes. `rediss+sentinel://` uses TLS for both. A port defaults to 26379.
    """
    if not is_sentinel_url(url):
        raise _sentinel_error("the scheme must be redis+sentinel:// or rediss+sentinel://")
    scheme, userinfo, _, hosts, path, query = _multi_host_parts(url, _sentinel_error)
    sentinel_username, sentinel_password = _credentials(userinfo, "the sentinels' user info")
    if not hosts:
        raise _sentinel_error("no sentinel host (expected host1:port,host2:port after //)")
    sentinels = tuple(
        _host_port(host, f"sentinel host #{number}")
        for number, host in enumerate(hosts.split(","), 1)
    )
    service, _, db_text = (path or "").partition("/")
    if not service:
        raise _sentinel_error("the path must name the service: /service_name[/db]")
    service = unquote(service)
    check_service_name(service)
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
    return SentinelAddress(
        sentinels=sentinels,
        service_name=service,
        db=int(db_text or 0),
        tls=_SENTINEL_SCHEMES[scheme.lower()],
        sentinel_username=sentinel_username,
        sentinel_password=sentinel_password,
        username=node.get("username") or None,
        password=node.get("password") or None,
    )


# -- Redis Cluster -------------------------------------------------------------------------------


def is_cluster_url(url: object) -> bool:
    """True for a `redis+cluster://` or `rediss+cluster://` URL."""
    return isinstance(url, str) and url.partition("://")[0].lower() in _CLUSTER_SCHEMES


def _cluster_error(what: str) -> InvalidInputError:
    """InvalidInputError naming the wrong part of a cluster address, never the address itself."""
    return InvalidInputError(f"malformed Redis Cluster address: {what}")


def cluster_startup_urls(url: str) -> tuple[str, ...]:
    """`redis+cluster://[user:password@]host1:port,host2:port[/0][?query]` as one `redis://`
    startup URL per host (`rediss://` for `rediss+cluster://`), each with the URL's user info,
    database and query; `RedisClusterOptions` checks them as it checks startup URLs."""
    if not is_cluster_url(url):
        raise _cluster_error("the scheme must be redis+cluster:// or rediss+cluster://")
    scheme, userinfo, at, hosts, path, query = _multi_host_parts(url, _cluster_error)
    slash, path = ("/", path) if path is not None else ("", "")
    if not hosts:
        raise _cluster_error("no cluster host (expected host1:port,host2:port after //)")
    urls = []
    for number, host in enumerate(hosts.split(","), 1):
        what = f"cluster host #{number}"
        try:
            parts = urlsplit(f"//{host}")
            port = parts.port
        except ValueError:
            raise _cluster_error(
                f"{what}: the port must be a number from 1 to 65535 (an IPv6 host needs [brackets])"
            ) from None
        if not parts.hostname or port is None or "@" in parts.netloc:
            raise _cluster_error(f"{what}: expected host:port")
        if port == 0:
            raise _cluster_error(f"{what}: the port must be a number from 1 to 65535")
        tail = f"?{query}" if query else ""
        urls.append(f"{_CLUSTER_SCHEMES[scheme.lower()]}://{userinfo}{at}{host}{slash}{path}{tail}")
    return tuple(urls)
