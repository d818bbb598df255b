"""The redis-py -> SessionError mapping, pinned against real refusals of Redis and of Valkey.

Each refusal is produced by a real server of each kind (they word some refusals differently):
out of memory (`maxmemory` 1 under `noeviction`), a read-only replica, a replica whose primary is
down, too few replicas, a busy script, a dataset still loading, and ACL denials in every position
a store call can meet one (a direct command, a queued MULTI command, MULTI or EXEC themselves, a
`redis.call` inside a script, the EVAL after NOSCRIPT). Also: nothing reachable from an error
(its `__cause__` and `__context__` chain) holds a user id or a password, the operator log of a
lost connection, and the messages for a misdirected peer or a malformed URL.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ExecAbortError, NoPermissionError

from greentic_session import (
    ErrorCode,
    InvalidInputError,
    RedisSessionStore,
    SessionBackendConfig,
    SessionError,
    UnavailableError,
    UnknownOutcomeError,
)
from greentic_session.backends.redis.errors import cluster_redirect, to_session_error
from greentic_session.testing import Backend, RedisServer, free_port
from tests.conftest import drop_namespace
from tests.servers import SERVER_PARAMS, server_binary
from tests.test_redis_faults import (
    DEFAULT_TRANSPORT,
    TRANSPORTS,
    bounded,
    ctx_of,
    marked,
    open_store,
    raw_client,
)

USER = "user-9c41e7"  # a user id that must never show up in an error or a log
PASSWORD = "pw-Str0ng-61d0a4"


def reachable(error: BaseException) -> list[BaseException]:
    """`error` and every exception reachable from it through `__cause__` and `__context__`."""
    found: list[BaseException] = []
    todo: list[BaseException | None] = [error]
    while todo:
        seen = todo.pop()
        if seen is None or any(seen is known for known in found):
            continue
        found.append(seen)
        todo += [seen.__cause__, seen.__context__]
    return found


def assert_clean(error: BaseException, *secrets: str) -> None:
    """No text of `error` or of anything chained to it contains `secrets` (default: USER and
    PASSWORD): str, repr, args and the printed traceback."""
    secrets = secrets or (USER, PASSWORD)
    texts = ["".join(traceback.format_exception(error))]
    for seen in reachable(error):
        texts += [str(seen), repr(seen), repr(seen.args)]
    for text in texts:
        for secret in secrets:
            assert secret not in text, f"{secret!r} is reachable from the error: {text}"


async def namespace_keys(raw: aioredis.Redis, namespace: str) -> list[bytes]:
    return [key async for key in raw.scan_iter(match=f"{namespace}:*", count=500)]


@pytest.fixture(scope="module", params=SERVER_PARAMS)
def state_server(request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    """A private server of each kind (Redis, Valkey) whose state (memory limit, scripts,
    loading) the tests change."""
    binary = server_binary(request.param)
    with RedisServer(binary=binary, extra_args=["--enable-debug-command", "local"]) as server:
        yield server


@pytest.fixture
async def admin(state_server: RedisServer, namespace: str) -> AsyncIterator[aioredis.Redis]:
    async with raw_client(state_server.url) as client:
        yield client
    await drop_namespace(state_server.url, namespace)


@asynccontextmanager
async def acl_store(
    server: RedisServer, namespace: str, *rules: str, transport: Backend = DEFAULT_TRANSPORT
) -> AsyncIterator[RedisSessionStore]:
    """A store of `transport`'s row logged in as a fresh ACL user with `rules` (ACL SETUSER
    syntax)."""
    name = f"app-{namespace.split(':', maxsplit=1)[0]}"
    async with raw_client(server.url) as admin:
        await admin.execute_command("ACL", "SETUSER", name, "on", f">{PASSWORD}", *rules)
        try:
            url = f"redis://{name}:{PASSWORD}@127.0.0.1:{server.port}/0"
            async with open_store(url, namespace, transport) as store:
                yield store
        finally:
            await admin.acl_deluser(name)


def assert_refused(error: SessionError, reply_code: str) -> None:
    """`error` is a plain UnavailableError (nothing applied) naming the server's refusal."""
    assert type(error) is UnavailableError, repr(error)
    assert error.code is ErrorCode.UNAVAILABLE
    assert f"({reply_code})" in error.message
    assert_clean(error)


# -- the server refusing work for its own state ------------------------------------------------


async def test_out_of_memory_is_unavailable_and_writes_nothing(
    state_server: RedisServer, admin: aioredis.Redis, namespace: str
) -> None:
    """Under maxmemory with noeviction, create (MULTI) and update (a script) raise a plain
    UnavailableError (code unavailable, not internal nor unknown outcome), and create leaves
    neither its blob nor its pointer behind."""
    async with open_store(state_server.url, namespace) as store:
        key = await store.create_session(ctx_of("other"), marked("other", "before"))
        before = set(await namespace_keys(admin, namespace))
        await admin.config_set("maxmemory-policy", "noeviction")
        await admin.config_set("maxmemory", "1")
        try:
            with pytest.raises(UnavailableError) as created:
                await bounded(store.create_session(ctx_of(USER), marked(USER, "x")))
            with pytest.raises(UnavailableError) as updated:
                await bounded(store.update_session(key, marked("other", "after")))
        finally:
            await admin.config_set("maxmemory", "0")
        assert_refused(created.value, "OOM")
        assert_refused(updated.value, "OOM")
        assert set(await namespace_keys(admin, namespace)) == before
        assert await store.find_by_user(ctx_of(USER), USER) is None
        stored = await store.get_session(key)
        assert stored == marked("other", "before")


async def test_exec_refused_for_memory_is_unavailable(
    state_server: RedisServer, admin: aioredis.Redis, namespace: str
) -> None:
    """An EXEC the server discards for memory after its commands were queued (EXECABORT naming
    OOM) maps to a plain UnavailableError, and the queued SET is not applied."""
    async with raw_client(state_server.url) as client:
        pipe = client.pipeline(transaction=True)
        pipe.set(f"{namespace}:session:queued", b"x")
        await admin.config_set("maxmemory-policy", "noeviction")
        # The commands are queued first, then memory runs out before EXEC: send them by hand.
        connection = await client.connection_pool.get_connection()
        try:
            await connection.send_command("MULTI")
            assert await connection.read_response() == b"OK"
            await connection.send_command("SET", f"{namespace}:session:queued", b"x")
            assert await connection.read_response() == b"QUEUED"
            await admin.config_set("maxmemory", "1")
            await connection.send_command("EXEC")
            with pytest.raises(ExecAbortError) as aborted:
                await connection.read_response()
        finally:
            await admin.config_set("maxmemory", "0")
            await client.connection_pool.release(connection)
    error = to_session_error(
        aborted.value, write=True, key=None, where="here", socket_timeout=None, secret=None
    )
    assert_refused(error, "OOM")
    assert await namespace_keys(admin, namespace) == []


@pytest.fixture
async def replica(
    state_server: RedisServer, admin: aioredis.Redis, namespace: str
) -> AsyncIterator[RedisServer]:
    """A read-only replica of `state_server`, in sync with it."""
    await admin.config_set("repl-diskless-sync-delay", "0")  # the default waits 5 s for more
    replica_of = ["--replicaof", "127.0.0.1", str(state_server.port)]
    with RedisServer(binary=state_server.binary, extra_args=replica_of) as server:
        # WAIT returns once the replica acknowledged every write so far: no polling needed.
        await admin.set(f"{namespace}:probe", b"1")
        assert await admin.execute_command("WAIT", 1, 20_000) == 1
        yield server


async def test_read_only_replica_is_unavailable_and_writes_nothing(
    state_server: RedisServer, admin: aioredis.Redis, replica: RedisServer, namespace: str
) -> None:
    """On a read-only replica reads work and create, update and remove raise a plain
    UnavailableError naming READONLY, with nothing written."""
    async with open_store(state_server.url, namespace) as primary:
        key = await primary.create_session(ctx_of("other"), marked("other", "v1"))
    # WAIT covers this client's writes; the replication stream is ordered, so once the replica
    # acknowledges this later write it also holds the session.
    await admin.set(f"{namespace}:probe", b"2")
    assert await admin.execute_command("WAIT", 1, 20_000) == 1
    async with open_store(replica.url, namespace) as store:
        assert await store.get_session(key) == marked("other", "v1")
        calls = {
            "create": store.create_session(ctx_of(USER), marked(USER, "x")),
            "update": store.update_session(key, marked("other", "v2")),
            "remove": store.remove_session(key),
        }
        for name, call in calls.items():
            with pytest.raises(UnavailableError) as raised:
                await bounded(call)
            assert_refused(raised.value, "READONLY")
            assert "READONLY" in raised.value.message, name
        assert await store.get_session(key) == marked("other", "v1")
    assert len(await namespace_keys(admin, namespace)) == 3  # the probe, the blob, other's pointer


async def test_busy_script_is_unavailable(
    state_server: RedisServer, admin: aioredis.Redis, namespace: str
) -> None:
    """While another client's script runs past busy-reply-threshold, a read and a write raise a
    plain UnavailableError naming BUSY (the write is known not to have run)."""
    await admin.config_set("busy-reply-threshold", "20")
    async with (
        raw_client(state_server.url) as busy_client,
        open_store(state_server.url, namespace) as store,
    ):
        key = await store.create_session(ctx_of("other"), marked("other", "v1"))
        busy = asyncio.create_task(busy_client.eval("while true do end", 0))
        try:
            for _ in range(10_000):  # until the script has started: each call returns at once
                try:
                    await bounded(store.get_session(key))
                except UnavailableError as error:
                    refused = error
                    break
            else:
                pytest.fail("the busy script never made the server reply BUSY")
            with pytest.raises(UnavailableError) as written:
                await bounded(store.update_session(key, marked("other", "v2")))
        finally:
            async with raw_client(state_server.url) as killer:
                await killer.script_kill()
            with pytest.raises(aioredis.ResponseError):
                await busy
            await admin.config_set("busy-reply-threshold", "5000")
        assert_refused(refused, "BUSY")
        assert_refused(written.value, "BUSY")
        assert await store.get_session(key) == marked("other", "v1")


async def test_loading_dataset_is_unavailable_and_writes_nothing(
    state_server: RedisServer, admin: aioredis.Redis, namespace: str
) -> None:
    """While the server loads its dataset, a read (after its retries) and a create raise a plain
    UnavailableError naming LOADING, and the create wrote nothing."""
    await admin.execute_command("DEBUG", "POPULATE", 4000, f"{namespace}:filler")
    await admin.config_set("key-load-delay", "250")  # microseconds per key: about 1 s to load
    await admin.config_set("loading-process-events-interval-bytes", "1024")
    async with (
        raw_client(state_server.url) as reloader,
        open_store(state_server.url, namespace) as store,
    ):
        reload = asyncio.create_task(reloader.execute_command("DEBUG", "RELOAD"))
        try:
            for _ in range(10_000):  # until the reload has begun: each call returns at once
                try:
                    await bounded(store.get_session("no-such-session"))
                except UnavailableError as error:
                    refused = error
                    break
            else:
                pytest.fail("the server never replied LOADING")
            with pytest.raises(UnavailableError) as created:
                await bounded(store.create_session(ctx_of(USER), marked(USER, "x")))
        finally:
            await reload
            await admin.config_set("key-load-delay", "0")
        assert_refused(refused, "LOADING")
        assert_refused(created.value, "LOADING")
        assert await store.find_by_user(ctx_of(USER), USER) is None


async def test_too_few_replicas_is_unavailable_and_writes_nothing(
    state_server: RedisServer, admin: aioredis.Redis, namespace: str
) -> None:
    """With min-replicas-to-write 1 and no replica, create (MULTI) and update (a script) raise a
    plain UnavailableError naming NOREPLICAS, and nothing is written."""
    async with open_store(state_server.url, namespace) as store:
        key = await store.create_session(ctx_of("other"), marked("other", "v1"))
        before = set(await namespace_keys(admin, namespace))
        await admin.config_set("min-replicas-to-write", "1")
        try:
            with pytest.raises(UnavailableError) as created:
                await bounded(store.create_session(ctx_of(USER), marked(USER, "x")))
            with pytest.raises(UnavailableError) as updated:
                await bounded(store.update_session(key, marked("other", "v2")))
        finally:
            await admin.config_set("min-replicas-to-write", "0")
        assert_refused(created.value, "NOREPLICAS")
        assert_refused(updated.value, "NOREPLICAS")
        assert set(await namespace_keys(admin, namespace)) == before
        assert await store.get_session(key) == marked("other", "v1")


async def test_replica_without_its_primary_is_unavailable(
    state_server: RedisServer, namespace: str
) -> None:
    """A replica that lost its primary and must not serve stale data refuses every call with a
    plain UnavailableError: reads and scripts name MASTERDOWN, create's SET (a write command,
    checked first) READONLY."""
    stale = ["--replicaof", "127.0.0.1", str(free_port()), "--replica-serve-stale-data", "no"]
    with RedisServer(binary=state_server.binary, extra_args=stale) as replica:
        async with open_store(replica.url, namespace) as store:
            calls = {
                "get": (lambda: store.get_session("some-key"), "MASTERDOWN"),
                "find": (lambda: store.find_by_user(ctx_of(USER), USER), "MASTERDOWN"),
                "update": (lambda: store.update_session("k", marked(USER, "y")), "MASTERDOWN"),
                "create": (
                    lambda: store.create_session(ctx_of(USER), marked(USER, "x")),
                    "READONLY",
                ),
            }
            for name, (call, reply_code) in calls.items():
                with pytest.raises(UnavailableError) as raised:
                    await bounded(call())
                assert f"({reply_code})" in raised.value.message, name
                assert_refused(raised.value, reply_code)


# -- ACL denials, wherever they happen -----------------------------------------------------------


async def test_acl_denial_in_a_multi_is_permission_denied_and_writes_nothing(
    state_server: RedisServer, admin: aioredis.Redis, namespace: str
) -> None:
    """A create whose pointer SET the ACL denies (the EXEC then fails with EXECABORT) raises
    permission_denied, leaves no blob behind, and nothing chained to it names the user."""
    async with acl_store(state_server, namespace, f"~{namespace}:session:*", "+@all") as store:
        with pytest.raises(SessionError) as raised:
            await bounded(store.create_session(ctx_of(USER), marked(USER, "x")))
    assert raised.value.code is ErrorCode.PERMISSION_DENIED
    assert not isinstance(raised.value, UnavailableError)
    assert isinstance(raised.value.__cause__, NoPermissionError)  # a useful, sanitized cause
    assert raised.value.__context__ is None
    assert_clean(raised.value)
    assert await namespace_keys(admin, namespace) == []


async def test_acl_denial_inside_a_script_is_permission_denied(
    state_server: RedisServer, namespace: str
) -> None:
    """A `redis.call` the ACL denies inside a script, on a key the script derives (both servers
    reply ERR there, not NOPERM, each with a lead of its own), maps to permission_denied with a
    clean chain."""
    async with acl_store(state_server, namespace, f"~{namespace}:session:*", "+@all") as store:
        denied_key = f"{namespace}:user:{USER}"
        with pytest.raises(aioredis.ResponseError) as replied:
            await store.client.eval(
                "return redis.call('GET', ARGV[1])", 1, f"{namespace}:session:k", denied_key
            )
    error = to_session_error(
        replied.value, write=True, key=None, where="here", socket_timeout=None, secret=None
    )
    assert error.code is ErrorCode.PERMISSION_DENIED, repr(error)
    assert not isinstance(error, UnavailableError)
    assert_clean(error)


async def test_acl_denied_remove_is_permission_denied(
    state_server: RedisServer, namespace: str
) -> None:
    """Remove by a user the ACL keeps off the session's pointer raises permission_denied, and
    nothing chained to it names the user."""
    async with open_store(state_server.url, namespace) as owner:
        key = await owner.create_session(ctx_of(USER), marked(USER, "x"))
    async with acl_store(state_server, namespace, f"~{namespace}:session:*", "+@all") as store:
        with pytest.raises(SessionError) as raised:
            await bounded(store.remove_session(key))
    assert raised.value.code is ErrorCode.PERMISSION_DENIED, repr(raised.value)
    assert not isinstance(raised.value, UnavailableError)
    assert_clean(raised.value)
    async with open_store(state_server.url, namespace) as owner:  # the refused read came first
        assert await owner.get_session(key) == marked(USER, "x")


async def test_acl_denied_blob_read_in_find_is_permission_denied(
    state_server: RedisServer, namespace: str
) -> None:
    """find_by_user by a user the ACL lets read pointers but not blobs raises permission_denied,
    not the 'wrong type' InternalError a swallowed script error would give."""
    async with open_store(state_server.url, namespace) as owner:
        await owner.create_session(ctx_of(USER), marked(USER, "x"))
    async with acl_store(state_server, namespace, f"~{namespace}:user:*", "+@all") as store:
        with pytest.raises(SessionError) as raised:
            await bounded(store.find_by_user(ctx_of(USER), USER))
    assert raised.value.code is ErrorCode.PERMISSION_DENIED, repr(raised.value)
    assert_clean(raised.value)


async def test_acl_denial_of_the_eval_after_noscript_is_permission_denied(
    state_server: RedisServer, admin: aioredis.Redis, namespace: str
) -> None:
    """When the script cache is empty and the ACL allows EVALSHA but not EVAL, update raises
    permission_denied whose cause is the denial, not the NOSCRIPT reply before it."""
    async with open_store(state_server.url, namespace) as owner:
        key = await owner.create_session(ctx_of(USER), marked(USER, "x"))
    await admin.script_flush()
    rules = (f"~{namespace}:*", "+@all", "-eval")
    async with acl_store(state_server, namespace, *rules) as store:
        with pytest.raises(SessionError) as raised:
            await bounded(store.update_session(key, marked(USER, "y")))
    assert raised.value.code is ErrorCode.PERMISSION_DENIED, repr(raised.value)
    assert [type(seen) for seen in reachable(raised.value)[1:]] == [NoPermissionError]
    assert_clean(raised.value)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_refused_multi_is_an_unknown_outcome_never_a_plain_refusal(
    state_server: RedisServer, admin: aioredis.Redis, namespace: str, transport: Backend
) -> None:
    """When the ACL refuses MULTI, the server runs create's SETs at once, one by one: create
    raises UnknownOutcomeError (code permission_denied, caused by the denial), on both
    transports, never an error saying nothing was written."""
    rules = (f"~{namespace}:*", "+@all", "-multi")
    async with acl_store(state_server, namespace, *rules, transport=transport) as store:
        with pytest.raises(SessionError) as raised:
            await bounded(store.create_session(ctx_of(USER), marked(USER, "x")))
    error = raised.value
    assert isinstance(error, UnknownOutcomeError), repr(error)
    assert error.code is ErrorCode.PERMISSION_DENIED
    assert "MULTI" in error.message
    writes = 3 if transport.sealed else 2  # blob, pointer (and a sealing store's meta key)
    assert f"({writes} of {writes} applied)" in error.message
    assert isinstance(error.__cause__, NoPermissionError)
    assert_clean(error)
    assert len(await namespace_keys(admin, namespace)) == writes  # each of them: written


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_refused_multi_and_refused_writes_are_permission_denied_and_write_nothing(
    state_server: RedisServer, admin: aioredis.Redis, namespace: str, transport: Backend
) -> None:
    """When the ACL refuses MULTI and every key create writes, no command ran: create raises a
    plain permission_denied (not an unknown outcome) and nothing is written."""
    rules = (f"~{namespace}:elsewhere:*", "+@all", "-multi")
    async with acl_store(state_server, namespace, *rules, transport=transport) as store:
        with pytest.raises(SessionError) as raised:
            await bounded(store.create_session(ctx_of(USER), marked(USER, "x")))
    assert raised.value.code is ErrorCode.PERMISSION_DENIED, repr(raised.value)
    assert not isinstance(raised.value, UnavailableError)
    assert_clean(raised.value)
    assert await namespace_keys(admin, namespace) == []


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_refused_exec_is_permission_denied_writes_nothing_and_closes_the_transaction(
    state_server: RedisServer, admin: aioredis.Redis, namespace: str, transport: Backend
) -> None:
    """When the ACL refuses EXEC (EXECABORT naming NOPERM), create raises permission_denied,
    nothing is written, and the connection is not left inside MULTI: later calls on it run."""
    rules = (f"~{namespace}:*", "+@all", "-exec")
    async with acl_store(state_server, namespace, *rules, transport=transport) as store:
        for _ in range(2):
            with pytest.raises(SessionError) as raised:
                await bounded(store.create_session(ctx_of(USER), marked(USER, "x")))
            assert raised.value.code is ErrorCode.PERMISSION_DENIED, repr(raised.value)
            assert not isinstance(raised.value, UnavailableError)
            assert_clean(raised.value)
            assert await bounded(store.get_session("no-such-session")) is None
        assert await bounded(store.find_by_user(ctx_of(USER), USER)) is None
    assert await namespace_keys(admin, namespace) == []


@pytest.mark.parametrize(
    ("script", "code"),
    [
        pytest.param("error('NOPERM OOM READONLY BUSY')", ErrorCode.INTERNAL, id="codes-in-words"),
        pytest.param("error('ACL failure in script: x')", ErrorCode.INTERNAL, id="lead-in-words"),
        pytest.param("return redis.call('NOSUCHCOMMAND')", ErrorCode.INTERNAL, id="bad-command"),
        pytest.param("return redis.call('GET', KEYS[1])", ErrorCode.INTERNAL, id="wrongtype"),
        pytest.param(
            "return redis.call('GET', 'elsewhere:k')", ErrorCode.PERMISSION_DENIED, id="acl"
        ),
    ],
)
async def test_a_script_error_is_classified_by_where_the_server_puts_the_code(
    state_server: RedisServer, admin: aioredis.Redis, namespace: str, script: str, code: ErrorCode
) -> None:
    """A script's reply maps by its code, or the lead the server puts first: a Lua error whose
    words hold codes or a lead stays internal, a key of the wrong type too, and an ACL denial
    is permission_denied, on both servers (EVALSHA, as the store sends it)."""
    typed = f"{namespace}:session:a-set"
    await admin.sadd(typed, "member")
    async with acl_store(state_server, namespace, f"~{namespace}:*", "+@all") as store:
        sha = await store.client.script_load(script)
        with pytest.raises(aioredis.ResponseError) as replied:
            await store.client.evalsha(sha, 1, typed)
    error = to_session_error(
        replied.value, write=True, key=None, where="here", socket_timeout=None, secret=None
    )
    assert error.code is code, repr(error)
    assert not isinstance(error, UnavailableError)
    if script.endswith("KEYS[1])"):
        assert "wrong type" in error.message


@pytest.mark.parametrize("kind", SERVER_PARAMS)
async def test_a_script_meeting_a_slot_the_node_does_not_serve_is_a_busy_redirect(
    kind: str,
) -> None:
    """A script that reads a key of a slot its cluster node does not serve (a slot on the move)
    is a "busy" redirect, which the cluster store waits out, on both servers (they word it
    differently)."""
    bus, config = free_port(), "nodes.conf"
    args = ["--cluster-enabled", "yes", "--cluster-port", str(bus)]
    args += ["--cluster-config-file", config, "--cluster-require-full-coverage", "no"]
    with RedisServer(binary=server_binary(kind), extra_args=args) as node:
        async with raw_client(node.url) as client:
            await client.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 8000)
            # A master accepts commands about 2 s after it started (the cluster's writable delay).
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20
            while b"cluster_state:ok" not in await client.execute_command("CLUSTER", "INFO"):
                assert loop.time() < deadline, "the one-node cluster never came up"
                await asyncio.sleep(0.05)
            # "b" is in slot 3300 (served), "a" in slot 15495 (not served).
            with pytest.raises(aioredis.ResponseError) as replied:
                await client.eval("return redis.call('GET', ARGV[1])", 1, "b", "a")
    redirect = cluster_redirect(replied.value)
    assert redirect is not None
    assert redirect.kind == "busy"


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        pytest.param(
            "Error running script (call to f_0123): @user_script:1: @user_script: 1: "
            "-NOPERM this user has no permissions to access one of the keys used as arguments",
            ErrorCode.PERMISSION_DENIED,
            id="nested-noperm",
        ),
        pytest.param(
            "Error running script (call to f_0123): @user_script:1: @user_script: 1: The user "
            "executing the script can't access at least one of the keys mentioned in the "
            "command arguments",
            ErrorCode.PERMISSION_DENIED,
            id="nested-acl-text",
        ),
        pytest.param(
            "Error running script (call to f_0123): @user_script:1: @user_script: 1: "
            "-OOM command not allowed when used memory > 'maxmemory'.",
            ErrorCode.UNAVAILABLE,
            id="nested-oom",
        ),
        pytest.param(
            "Error running script (call to f_0123): @user_script:1: user_script:1: "
            "attempt to compare nil with number",
            ErrorCode.INTERNAL,
            id="script-bug",
        ),
    ],
)
def test_script_errors_wrapped_by_older_servers_keep_their_code(
    reply: str, code: ErrorCode
) -> None:
    """Redis before 7 wraps a failed `redis.call` as `ERR Error running script ...` with the
    inner reply after it (CI's 7.0.15 does not, so these are literal replies): the inner code
    still decides, and a plain script error stays internal."""
    error = to_session_error(
        aioredis.ResponseError(reply),
        write=True,
        key=None,
        where="here",
        socket_timeout=None,
        secret=None,
    )
    assert error.code is code, repr(error)
    assert not isinstance(error, UnknownOutcomeError)


# -- nothing reachable from an error leaks --------------------------------------------------------


@pytest.mark.parametrize("kind", SERVER_PARAMS)
async def test_the_servers_echo_of_refused_arguments_is_not_shown(
    kind: str, namespace: str
) -> None:
    """On a server of each kind without EVALSHA (renamed away), find_by_user fails with an error
    whose chain does not repeat the server's echo of the arguments (the user pointer key)."""
    renamed = ["--rename-command", "EVALSHA", ""]
    with RedisServer(binary=server_binary(kind), extra_args=renamed) as server:
        async with open_store(server.url, namespace) as store:
            with pytest.raises(SessionError) as raised:
                await bounded(store.find_by_user(ctx_of(USER), USER))
    assert raised.value.code is ErrorCode.INTERNAL
    assert "unknown command" in raised.value.message
    assert "(not shown)" in raised.value.message
    assert_clean(raised.value)


async def test_connection_errors_chain_nothing_secret(namespace: str) -> None:
    """A write to an unreachable password-protected URL raises an error from whose chain no
    user id or password can be read, with a sanitized cause of redis-py's type."""
    url = f"redis://app:{PASSWORD}@127.0.0.1:{free_port()}/0"
    async with open_store(url, namespace) as store:
        for call in (
            store.create_session(ctx_of(USER), marked(USER, "x")),
            store.find_by_user(ctx_of(USER), USER),
        ):
            with pytest.raises(UnavailableError) as raised:
                await bounded(call)
            assert raised.value.__cause__ is not None
            assert raised.value.__cause__.__cause__ is None
            assert raised.value.__cause__.__context__ is None
            assert_clean(raised.value)


# -- a misdirected peer, a malformed URL ---------------------------------------------------------


async def test_a_non_redis_peer_is_named_as_the_likely_cause(namespace: str) -> None:
    """A URL pointing at an HTTP server raises UnavailableError (not internal, and not an
    unknown outcome: the peer never spoke Redis) saying the peer does not speak Redis."""

    async def answer_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer_http, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with open_store(f"redis://127.0.0.1:{port}/0", namespace) as store:
            for call in (
                store.get_session("k"),
                store.create_session(ctx_of(USER), marked(USER, "x")),
            ):
                with pytest.raises(UnavailableError) as raised:
                    await bounded(call)
                assert type(raised.value) is UnavailableError
                assert raised.value.code is ErrorCode.UNAVAILABLE
                assert "does not speak the Redis protocol" in raised.value.message
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    ("url", "names"),
    [
        pytest.param(f"http://app:{PASSWORD}@127.0.0.1:6379/0", "scheme", id="scheme"),
        pytest.param(f"redis://app:{PASSWORD}@:6379/0", "host", id="no-host"),
        pytest.param(f"redis://app:{PASSWORD}@127.0.0.1:63x9/0", "port", id="port-not-a-number"),
        pytest.param(f"redis://app:{PASSWORD}@127.0.0.1:70000/0", "port", id="port-too-big"),
        pytest.param(f"redis://app:{PASSWORD}@127.0.0.1:6379/zero", "database", id="db-path"),
        pytest.param(f"redis://app:{PASSWORD}@[::1:6379/0", "host", id="ipv6-bracket"),
        pytest.param(
            f"redis://127.0.0.1:6379/0?password={PASSWORD}&sockettimeout=1",
            "query option #2",
            id="unknown-query-option",
        ),
        pytest.param(
            f"redis://127.0.0.1:6379/0?password={PASSWORD}&socket_timeout=soon",
            "'socket_timeout'",
            id="query-option-value",
        ),
        pytest.param("redis://app:pa/ss@127.0.0.1:6379/0", "percent-encoded", id="raw-slash"),
        pytest.param(
            "redis://127.0.0.1:6379/0?password=pa&ss", "query option #2", id="raw-ampersand"
        ),
    ],
)
def test_a_malformed_url_names_the_wrong_part_never_the_password(url: str, names: str) -> None:
    """A malformed Redis URL raises InvalidInputError naming the part that is wrong, and neither
    the message nor anything chained to it shows the password."""
    with pytest.raises(InvalidInputError) as raised:
        SessionBackendConfig.redis_url(url)
    assert names in raised.value.message, raised.value.message
    assert_clean(raised.value, PASSWORD, "pa/ss", "ss'")


# -- the operators' log ----------------------------------------------------------------------------


async def test_lost_and_regained_connection_is_logged_once_without_secrets(
    namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A WARNING is logged once when the connection is lost (however many calls fail) and an
    INFO once when it is back, under greentic_session.redis; no record holds a user id or a
    password at any level."""
    caplog.set_level(logging.DEBUG)
    with RedisServer(extra_args=["--requirepass", PASSWORD]) as server:
        url = f"redis://:{PASSWORD}@127.0.0.1:{server.port}/0"
        async with open_store(url, namespace) as store:
            key = await store.create_session(ctx_of(USER), marked(USER, "x"))
            assert [r for r in caplog.records if r.name.startswith("greentic_session")] == []
            server.stop()
            for _ in range(3):
                with pytest.raises(UnavailableError):
                    await bounded(store.find_by_user(ctx_of(USER), USER))
                with pytest.raises(UnavailableError):
                    await bounded(store.update_session(key, marked(USER, "y")))
            server.start()
            assert await store.find_by_user(ctx_of(USER), USER) is None  # a fresh server
            assert await store.get_session(key) is None
    ours = [r for r in caplog.records if r.name.startswith("greentic_session")]
    assert [(r.name, r.levelno) for r in ours] == [
        ("greentic_session.redis", logging.WARNING),
        ("greentic_session.redis", logging.INFO),
    ]
    assert f"127.0.0.1:{server.port}" in ours[0].getMessage()
    assert "lost" in ours[0].getMessage()
    for text in [caplog.text, *(r.getMessage() for r in caplog.records)]:
        for secret in (USER, PASSWORD, key):
            assert secret not in text, f"{secret!r} was logged: {text}"


async def test_a_server_never_reached_is_logged_once(
    namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A store whose server cannot be reached logs one WARNING saying so, however many calls
    fail."""
    caplog.set_level(logging.DEBUG, logger="greentic_session")
    async with open_store(f"redis://127.0.0.1:{free_port()}/0", namespace) as store:
        for _ in range(3):
            with pytest.raises(UnavailableError):
                await bounded(store.get_session("k"))
    ours = [r for r in caplog.records if r.name.startswith("greentic_session")]
    assert [r.levelno for r in ours] == [logging.WARNING]
    assert "cannot reach" in ours[0].getMessage()
