"""Redis security: ACL-restricted users, wrong credentials, TLS, and keeping secrets out of text.

Tests that need a server get a private one: ACL users and TLS listeners are server-wide. The ACL
tests run on Redis and on Valkey.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoPermissionError

from greentic_session import (
    ErrorCode,
    RedisSessionStore,
    SessionBackendConfig,
    SessionError,
    UnavailableError,
    UnknownOutcomeError,
)
from greentic_session.backends.redis.options import RedisOptions
from greentic_session.testing import LOOP_KINDS, Backend, RedisServer, free_port
from tests.servers import SERVER_PARAMS, server_binary
from tests.test_redis_faults import (
    TRANSPORTS,
    assert_store_works,
    bounded,
    ctx_of,
    marked,
    open_store,
    raw_client,
)

# Every test here runs on each event loop the Redis store supports.
pytestmark = pytest.mark.loops(*LOOP_KINDS)

PASSWORD = "s3cr3t-Pa55-7f3a9c"
WRONG_PASSWORD = "wr0ng-Pa55-5e1d2b"
SECRETS = (PASSWORD, WRONG_PASSWORD)
USER = "user-4d81b7"  # a user id that must never show up in an error message


def texts_of(error: BaseException) -> list[str]:
    """Every text an error shows: str, repr and traceback of it and of each chained error."""
    texts = ["".join(traceback.format_exception(error))]
    seen: BaseException | None = error
    while seen is not None:
        texts += [str(seen), repr(seen), repr(seen.args)]
        seen = seen.__cause__ or seen.__context__
    return texts


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"a password leaked into: {text}"


def store_calls(store: RedisSessionStore) -> dict[str, Callable[[], Awaitable[object]]]:
    """One call of each kind, for checking how each fails."""
    return {
        "create": lambda: store.create_session(ctx_of(USER), marked(USER, "x")),
        "get": lambda: store.get_session("some-key"),
        "find": lambda: store.find_by_user(ctx_of(USER), USER),
        "update": lambda: store.update_session("some-key", marked(USER, "y")),
        "remove": lambda: store.remove_session("some-key"),
    }


# -- ACL -------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=SERVER_PARAMS)
def acl_server(request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    """A private server of each kind (Redis, Valkey), which word their ACL denials differently."""
    with RedisServer(binary=server_binary(request.param)) as server:
        yield server


@asynccontextmanager
async def acl_user(server: RedisServer, name: str, keys: str) -> AsyncIterator[str]:
    """An ACL user allowed every command on keys matching `keys`; yields its URL."""
    async with raw_client(server.url) as admin:
        await admin.acl_setuser(
            name, enabled=True, passwords=[f"+{PASSWORD}"], keys=[keys], categories=["+@all"]
        )
        try:
            yield f"redis://{name}:{PASSWORD}@127.0.0.1:{server.port}/0"
        finally:
            await admin.acl_deluser(name)


@pytest.fixture
async def app_url(acl_server: RedisServer, namespace: str) -> AsyncIterator[str]:
    """Credentials of an ACL user that may touch only `{namespace}:*` keys."""
    async with acl_user(acl_server, "app", f"{namespace}:*") as url:
        yield url


async def test_acl_user_limited_to_the_namespace_runs_the_full_flow(
    app_url: str, namespace: str
) -> None:
    """A user allowed only `~{namespace}:*` can create, get, find, update and remove."""
    async with raw_client(app_url) as app:
        with pytest.raises(NoPermissionError):  # the restriction is real
            await app.get("elsewhere:key")
    async with open_store(app_url, namespace) as store:
        await assert_store_works(store, USER)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_acl_user_outside_its_namespace_is_permission_denied(
    app_url: str, transport: Backend
) -> None:
    """Every call of a store whose namespace the ACL user may not touch raises SessionError
    with code permission_denied, not unavailable, on both transports, and the message never
    names the user."""
    async with open_store(app_url, "forbidden:session", transport) as store:
        for name, call in store_calls(store).items():
            with pytest.raises(SessionError) as raised:
                await bounded(call())
            assert raised.value.code is ErrorCode.PERMISSION_DENIED, f"{name}: {raised.value!r}"
            assert not isinstance(raised.value, UnavailableError)
            assert USER not in str(raised.value), f"{name} named the user: {raised.value}"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_acl_denying_only_user_pointers_never_names_the_user(
    acl_server: RedisServer, namespace: str, transport: Backend
) -> None:
    """When only the user-pointer keys are forbidden, create raises permission_denied whose
    message does not contain the user id (it is in the pointer key's name), on both
    transports."""
    async with (
        acl_user(acl_server, "blobs-only", f"{namespace}:session:*") as url,
        open_store(url, namespace, transport) as store,
    ):
        with pytest.raises(SessionError) as raised:
            await bounded(store.create_session(ctx_of(USER), marked(USER, "x")))
    assert raised.value.code is ErrorCode.PERMISSION_DENIED
    assert USER not in str(raised.value), f"the error names the user: {raised.value}"
    assert USER not in repr(raised.value)


# -- credentials never leak ----------------------------------------------------------------------


async def test_wrong_password_is_unauthenticated_and_never_leaks(
    app_url: str, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A wrong password gives UnavailableError with code unauthenticated for every call, reads
    and writes alike, and the password shows in no error text, repr or log record."""
    caplog.set_level(logging.DEBUG)
    url = app_url.replace(PASSWORD, WRONG_PASSWORD)
    async with open_store(url, namespace) as store:
        for name, call in store_calls(store).items():
            with pytest.raises(UnavailableError) as raised:
                await bounded(call())
            assert raised.value.code is ErrorCode.UNAUTHENTICATED, f"{name}: {raised.value!r}"
            assert not isinstance(raised.value, UnknownOutcomeError), "nothing was sent"
            assert_no_secret(*texts_of(raised.value))
        assert_no_secret(repr(store), str(store))
    assert_no_secret(*(record.getMessage() for record in caplog.records))
    assert_no_secret(caplog.text)


async def test_unreachable_server_error_never_shows_the_password(
    namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """When a password-protected URL cannot be reached, errors and logs name the server with
    the password masked."""
    caplog.set_level(logging.DEBUG)
    port = free_port()
    async with open_store(f"redis://app:{PASSWORD}@127.0.0.1:{port}/0", namespace) as store:
        for call in store_calls(store).values():
            with pytest.raises(UnavailableError) as raised:
                await bounded(call())
            assert f"app:***@127.0.0.1:{port}" in str(raised.value)
            assert_no_secret(*texts_of(raised.value))
    assert_no_secret(caplog.text)


@pytest.mark.parametrize(
    "url",
    [
        pytest.param(f"redis://app:{PASSWORD}@127.0.0.1:6390/0", id="user-and-password"),
        pytest.param(f"redis://:{PASSWORD}@127.0.0.1:6390/0", id="password-only"),
        pytest.param(f"rediss://127.0.0.1:6390/0?password={PASSWORD}", id="query-password"),
    ],
)
async def test_reprs_never_show_the_password(url: str) -> None:
    """The config, its options and the store show the URL with the password masked."""
    config = SessionBackendConfig.redis_url(url)
    assert config.redis is not None
    async with RedisSessionStore.from_options(config.redis) as store:
        shown = [repr(config), str(config), repr(config.redis), repr(store), str(store)]
    assert_no_secret(*shown)
    assert "***" in repr(store)
    assert "***" in repr(RedisOptions(url=url))


async def test_store_around_a_callers_client_never_shows_its_password() -> None:
    """A store built around a password-carrying client shows only host, port and db."""
    client = aioredis.Redis(
        host="127.0.0.1", port=6390, password=PASSWORD, retry=Retry(NoBackoff(), 0)
    )
    try:
        shown = repr(RedisSessionStore(client))
        assert "127.0.0.1:6390" in shown
        assert_no_secret(shown)
    finally:
        await client.aclose()


# -- TLS -----------------------------------------------------------------------------------------


async def test_tls_with_the_ca_runs_the_full_flow(
    tls_server: RedisServer, tls_dir: Path, namespace: str
) -> None:
    """A rediss:// store that trusts the throwaway CA does the whole flow over TLS."""
    assert tls_server.url.startswith("rediss://")
    async with open_store(tls_server.url, namespace, tls_ca_file=str(tls_dir / "ca.pem")) as store:
        await assert_store_works(store, USER)


@pytest.mark.parametrize(
    ("client", "likely_cause"),
    [
        ("system-trust", "certificate is not trusted"),
        ("other-ca", "certificate is not trusted"),
        ("plaintext", "a TLS port reached with redis://"),
    ],
)
async def test_tls_client_that_cannot_verify_the_server_is_unavailable(
    client: str, likely_cause: str, tls_server: RedisServer, tls_dir: Path, namespace: str
) -> None:
    """A client that does not trust the server's CA, or speaks plaintext to the TLS port,
    fails with UnavailableError (code unavailable) naming the likely cause, instead of hanging
    or talking in clear."""
    url, ca_file = tls_server.url, None
    if client == "other-ca":
        ca_file = str(tls_dir / "other-ca.pem")
    elif client == "plaintext":
        url = url.replace("rediss://", "redis://")
    async with open_store(url, namespace, tls_ca_file=ca_file) as store:
        for call in store_calls(store).values():
            with pytest.raises(UnavailableError) as raised:
                await bounded(call())
            assert raised.value.code is ErrorCode.UNAVAILABLE
            assert likely_cause in raised.value.message, raised.value.message


async def test_rediss_to_a_plain_text_port_names_the_likely_cause(
    acl_server: RedisServer, namespace: str
) -> None:
    """A rediss:// URL for a plain-text Redis port fails every call with UnavailableError that
    suggests the port does not speak TLS, within the connect timeout."""
    url = acl_server.url.replace("redis://", "rediss://")
    async with open_store(url, namespace, connect_timeout=0.2) as store:
        for call in store_calls(store).values():
            with pytest.raises(UnavailableError) as raised:
                await bounded(call())
            assert not isinstance(raised.value, UnknownOutcomeError), "nothing was sent"
            assert "a plain-text port reached with rediss://" in raised.value.message
