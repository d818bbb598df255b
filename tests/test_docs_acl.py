"""The ACL line in docs/guides/redis-production.md is enough for the store's whole API, and minimal,
on Redis and on Valkey.

The line is read from the page itself, so the page and the store cannot drift apart: a new
command in the store's scripts or calls (or a new store method this file does not call) fails
these tests until the page says what the new calls need. Every store call runs under every store
option that changes which script paths run (no expiry, idle_ttl, max_lifetime, both; batched and
redis-py's pool; max_blob_bytes), and the scripts' sources are scanned for every command they
can run, on paths a test may not reach too.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import re
import shlex
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis
from redis.exceptions import NoPermissionError

from greentic_session import (
    DEFAULT_NAMESPACE,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    RedisSessionStore,
    ReplyScope,
    SessionCursor,
    SessionData,
    SessionError,
    SessionStore,
    TenantCtx,
)
from greentic_session.limits import DEFAULT_MAX_BLOB_BYTES
from greentic_session.mapping import telegram_update_to_session_key
from greentic_session.testing import RedisServer
from tests.servers import SERVER_PARAMS, server_binary

PAGE = Path(__file__).resolve().parents[1] / "docs" / "guides" / "redis-production.md"
PASSWORD = "acl-docs-Pa55-91c2"
PLACEHOLDER_PASSWORD = ">CHANGE-ME"


def documented_rules() -> tuple[str, list[str]]:
    """The user name and rules of the page's `ACL SETUSER` line, with the test's password."""
    found = re.findall(r"^ACL SETUSER (\S+) (.+)$", PAGE.read_text(encoding="utf-8"), re.M)
    assert len(found) == 1, "the page must hold exactly one ACL SETUSER line"
    name, rules = found[0]
    words = shlex.split(rules)
    assert PLACEHOLDER_PASSWORD in words
    return name, [f">{PASSWORD}" if word == PLACEHOLDER_PASSWORD else word for word in words]


def store_api() -> set[str]:
    """The public methods of the SessionStore interface: the calls the ACL must allow."""
    return {
        name
        for name, member in inspect.getmembers(SessionStore, inspect.isfunction)
        if not name.startswith("_")
    }


@pytest.fixture(scope="module", params=SERVER_PARAMS)
def server(request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    """A private server of each kind (Redis, Valkey): ACL users are server-wide; the page's line
    names the default namespace."""
    with RedisServer(binary=server_binary(request.param)) as private:
        yield private


@asynccontextmanager
async def admin_of(server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(server.url)
    try:
        yield client
    finally:
        await client.aclose()


@asynccontextmanager
async def store_as(server: RedisServer, name: str, rules: Sequence[str]) -> AsyncIterator[str]:
    """An ACL user `name` with exactly `rules`, on a cold script cache; yields its URL."""
    async with admin_of(server) as admin:
        await admin.execute_command("ACL", "DELUSER", name)  # type: ignore[no-untyped-call]
        await admin.execute_command("ACL", "SETUSER", name, *rules)  # type: ignore[no-untyped-call]
        await admin.script_flush()  # so the store's EVAL fallback runs too
        await admin.acl_log_reset()
        try:
            yield f"redis://{name}:{PASSWORD}@127.0.0.1:{server.port}/0"
        finally:
            await admin.execute_command("ACL", "DELUSER", name)  # type: ignore[no-untyped-call]
            keys = [k async for k in admin.scan_iter(match=f"{DEFAULT_NAMESPACE}:*")]
            if keys:
                await admin.delete(*keys)


def paused(ctx: TenantCtx, node: str = "node.wait") -> SessionData:
    return SessionData(
        tenant_ctx=ctx,
        flow_id="support.flow",
        cursor=SessionCursor(node_pointer=node),
        context_json='{"ticket":1}',
    )


# Commands redis-py's pool sends on connect and whose refusal it ignores (see the page).
OPTIONAL_COMMANDS = {"client|setinfo"}

SMALL_LIMIT = 2048  # a max_blob_bytes some configurations below set

# Store options that change which script paths run; every one runs the whole API.
STORE_OPTIONS: dict[str, dict[str, Any]] = {
    "no-expiry": {},
    "no-expiry-unbatched": {"batching": False},  # redis-py's pool sends the MULTI itself
    "idle_ttl": {"idle_ttl": 600, "max_blob_bytes": SMALL_LIMIT},
    "max_lifetime": {"max_lifetime": 3600},
    "both-expiries": {"idle_ttl": 600, "max_lifetime": 3600, "max_blob_bytes": None},
}


async def exercise(store: RedisSessionStore, admin: aioredis.Redis, *, limit: int | None) -> None:
    """Every store call, on every path through its scripts (`admin` plants what only another
    writer makes: a session without its meta key, a wait whose session vanished); `limit` is
    the store's max_blob_bytes."""
    ctx = TenantCtx.new("prod", "acme", team="support", user="user-1")
    key = await store.create_session(ctx, paused(ctx))
    assert await store.get_session(key) == paused(ctx)
    entry = await store.get_entry(key)
    assert entry is not None
    assert await store.find_by_user(ctx, "user-1") == (key, paused(ctx))
    assert await store.find_entry(ctx, "user-1") == entry
    await store.update_session(key, paused(ctx, "node.next"), expected_revision=entry.revision)
    with pytest.raises(ConflictError):  # the revision moved on
        await store.update_session(key, paused(ctx), expected_revision=entry.revision)
    with pytest.raises(InvalidInputError):  # update.lua's full-decode path, reporting the owner
        await store.update_session(key, paused(ctx.with_user("user-2")))
    with pytest.raises(NotFoundError):
        await store.update_session("missing", paused(ctx))
    await store.update_with(key, lambda data: msgspec.structs.replace(data, context_json="{}"))
    await exercise_update_with_conflict(store, key, ctx)
    await store.touch_session(key)
    with pytest.raises(NotFoundError):
        await store.touch_session("missing")
    await store.remove_session(key)
    with pytest.raises(NotFoundError):
        await store.remove_session(key)
    with pytest.raises(NotFoundError):
        await store.update_with(key, lambda data: data)
    # A caller-chosen key is taken once.
    fixed = telegram_update_to_session_key(1, 2, 3)
    await store.create_session(ctx, paused(ctx), key=fixed)
    with pytest.raises(ConflictError):
        await store.create_session(ctx, paused(ctx), key=fixed)
    await store.remove_session(fixed)
    # find_or_create builds the user's session once, then finds it.
    made, created = await store.find_or_create(ctx, "user-1", lambda: paused(ctx))
    found, created_again = await store.find_or_create(ctx, "user-1", lambda: paused(ctx))
    assert created
    assert not created_again
    assert found.key == made.key
    await store.remove_session(made.key)
    # A user-less session keeps its creator's pointer after removal; find_or_create replaces
    # that stale pointer, and find clears one.
    userless_ctx = TenantCtx.new("prod", "acme", team="support")
    userless = await store.create_session(ctx, paused(userless_ctx))
    await store.update_session(userless, paused(userless_ctx, "node.next"))
    await store.touch_session(userless)
    await store.remove_session(userless)
    made, created = await store.find_or_create(ctx, "user-1", lambda: paused(ctx))
    assert created
    await admin.delete(store.keys.session(made.key))
    assert await store.find_by_user(ctx, "user-1") is None
    # A session another runtime wrote (a plain SET: no meta key) is updated and touched.
    foreign = "written-by-rust"
    await admin.set(store.keys.session(foreign), msgspec.json.encode(paused(ctx)))
    await store.update_session(foreign, paused(ctx, "node.next"))
    await store.touch_session(foreign)
    await store.remove_session(foreign)
    # A blob over max_blob_bytes is refused before any command; without a limit it is stored.
    big = msgspec.structs.replace(paused(ctx), context_json=f'{{"x":"{"x" * SMALL_LIMIT}"}}')
    if limit == SMALL_LIMIT:
        with pytest.raises(InvalidInputError):
            await store.create_session(ctx, big)
    else:
        await store.remove_session(await store.create_session(ctx, big))
    await exercise_waits(store, admin, ctx)
    # erase_user: an operator (no user) erases one user's sessions and what names them.
    erased_user = ctx.with_user("user-9")
    await store.create_session(erased_user, paused(erased_user))
    assert await store.erase_user(TenantCtx.new("prod", "acme", team="support"), "user-9") == 1


async def exercise_update_with_conflict(store: SessionStore, key: str, ctx: TenantCtx) -> None:
    """update_with whose first compare-and-set loses to a write made meanwhile: it reads again
    and retries; with one attempt it raises ConflictError."""
    writes = 0

    async def racing(data: SessionData) -> SessionData:
        nonlocal writes
        if writes == 0:
            writes += 1
            await store.update_session(key, paused(ctx, "node.raced"))
        return msgspec.structs.replace(data, context_json='{"raced":true}')

    entry = await store.update_with(key, racing)
    assert entry.data.context_json == '{"raced":true}'
    writes = 0
    with pytest.raises(ConflictError):
        await store.update_with(key, racing, attempts=1)


async def exercise_waits(store: RedisSessionStore, admin: aioredis.Redis, ctx: TenantCtx) -> None:
    """Every wait call: register (new, superseding, on an existing session, with and without a
    TTL), find, list, update and touch a wait, clear, remove, and the pruning of waits whose
    session vanished."""
    chat, thread = ReplyScope(conversation="chat-1"), ReplyScope(conversation="chat-2")
    assert store.session_key_for(ctx, "user-1", "wait-1") == "wait-1"  # no command on one node
    await store.register_wait(ctx, "user-1", chat, "wait-1", paused(ctx), ttl=60)
    await store.register_wait(ctx, "user-1", chat, "wait-2", paused(ctx))  # supersedes wait-1
    await store.register_wait(ctx, "user-1", thread, "wait-3", paused(ctx), ttl=30)
    await store.register_wait(ctx, "user-1", thread, "wait-3", paused(ctx, "node.again"))
    assert await store.find_wait_by_scope(ctx, "user-1", chat) == "wait-2"
    assert sorted(await store.list_waits_for_user(ctx, "user-1")) == ["wait-2", "wait-3"]
    await store.update_session("wait-3", paused(ctx, "node.next"))
    await store.touch_session("wait-3")
    await store.clear_wait(ctx, "user-1", chat)
    await store.clear_wait(ctx, "user-1", chat)  # no such wait any more: nothing to do
    await store.remove_session("wait-3")
    await store.remove_session("wait-1")
    assert await store.list_waits_for_user(ctx, "user-1") == []
    # Waits whose session vanished (expired, or deleted by another runtime) are pruned.
    await store.register_wait(ctx, "user-1", chat, "wait-4", paused(ctx))
    await store.register_wait(ctx, "user-1", thread, "wait-5", paused(ctx))
    await admin.delete(store.keys.session("wait-4"), store.keys.session("wait-5"))
    assert await store.find_wait_by_scope(ctx, "user-1", chat) is None
    assert await store.list_waits_for_user(ctx, "user-1") == []
    await store.register_wait(ctx, "user-1", chat, "wait-6", paused(ctx))
    await admin.delete(store.keys.session("wait-6"))
    await store.register_wait(ctx, "user-1", thread, "wait-7", paused(ctx))  # prunes wait-6
    await store.clear_wait(ctx, "user-1", thread)
    assert await store.list_waits_for_user(ctx, "user-1") == []
    await exercise_deadlines(store, admin, ctx)


async def exercise_deadlines(
    store: RedisSessionStore, admin: aioredis.Redis, ctx: TenantCtx
) -> None:
    """Every deadline call: register with due_in (again, without it, superseded), claim, settle,
    watch, a deadline cleared or removed with its wait, and one whose session vanished."""
    chat, thread = ReplyScope(conversation="chat-1"), ReplyScope(conversation="chat-2")
    await store.register_wait(ctx, "user-1", chat, "due-1", paused(ctx), due_in=0.001)
    await store.register_wait(ctx, "user-1", chat, "due-1", paused(ctx), due_in=0.001)
    await store.register_wait(ctx, "user-1", thread, "due-2", paused(ctx), due_in=0.001)
    await store.register_wait(ctx, "user-1", thread, "due-2", paused(ctx))  # removes its deadline
    await store.register_wait(ctx, "user-1", thread, "due-3", paused(ctx), due_in=0.001)
    await admin.delete(store.keys.session("due-3"))  # vanished: its deadline is pruned
    claimed: list[str] = []
    async with asyncio.timeout(10):
        async with contextlib.aclosing(store.watch_due_waits(poll=0.005)) as watcher:
            async for due in watcher:
                claimed.append(due.key)
                assert await store.settle_due(due)
                break
    assert claimed == ["due-1"]
    async with asyncio.timeout(10):  # until due-3 is due (the server's clock) and pruned
        while await admin.exists(store.keys.due("due-3")):
            assert await store.claim_due_waits() == []
    await store.register_wait(ctx, "user-1", chat, "due-4", paused(ctx), due_in=60)
    await store.register_wait(ctx, "user-1", chat, "due-5", paused(ctx), due_in=60)  # supersedes
    await store.clear_wait(ctx, "user-1", chat)
    await store.register_wait(ctx, "user-1", chat, "due-6", paused(ctx), due_in=60)
    await store.remove_session("due-6")
    for key in ("due-1", "due-2", "due-4"):
        await store.remove_session(key)
    assert [key async for key in admin.scan_iter(match=f"{DEFAULT_NAMESPACE}:due*")] == []


async def run_whole_api(url: str, admin: aioredis.Redis) -> set[str]:
    """`exercise` on a store of each of `STORE_OPTIONS`; returns the SessionStore methods
    called."""
    for options in STORE_OPTIONS.values():
        async with RedisSessionStore.from_url(url, **options) as store:  # `aclose` on the way out
            limit = options.get("max_blob_bytes", DEFAULT_MAX_BLOB_BYTES)
            await exercise(store, admin, limit=limit)
    return {
        "create_session",
        "get_session",
        "get_entry",
        "find_by_user",
        "find_entry",
        "find_or_create",
        "update_session",
        "update_with",
        "touch_session",
        "remove_session",
        "register_wait",
        "find_wait_by_scope",
        "list_waits_for_user",
        "clear_wait",
        "erase_user",
        "claim_due_waits",
        "settle_due",
        "watch_due_waits",
        "session_key_for",
        "aclose",
    }


async def test_documented_acl_runs_the_whole_store_api(server: RedisServer) -> None:
    """A user with exactly the page's ACL rules can make every store call, on every path, under
    every store option; the server logs no refusal."""
    name, rules = documented_rules()
    async with store_as(server, name, rules) as url, admin_of(server) as admin:
        called = await run_whole_api(url, admin)
        refused = await denied_commands(server)
    assert called == store_api(), "a store method is not exercised: call it in run_whole_api"
    assert refused <= OPTIONAL_COMMANDS, f"the page's ACL misses {refused - OPTIONAL_COMMANDS}"


def script_commands() -> set[str]:
    """Every command the store's Lua scripts can run, read from their sources: `redis.call` and
    `redis.pcall` with a literal command, and the helpers that pass one on (wait_keys.lua's
    `read_typed`)."""
    lua = resources.files("greentic_session.backends.redis").joinpath("lua")
    found: set[str] = set()
    for file in lua.iterdir():
        source = file.read_text(encoding="utf-8")
        # `redis.call('GET', ...)`, `pcall(redis.call, 'GET', ...)`, `read_typed('SMEMBERS', ...)`
        calls = re.findall(r"redis\.p?call\s*[(,]\s*([^,)]+)", source)
        calls += re.findall(r"read_typed\s*\(\s*([^,)]+)", source)
        for first in calls:
            literal = re.fullmatch(r"'([A-Za-z|]+)'", first.strip())
            if literal is None:
                # A command passed on from a helper's parameter (read_typed's `command`).
                assert first.strip() == "command", f"{file.name}: unscanned command {first!r}"
                continue
            found.add(literal.group(1).lower())
    return found


def test_the_page_lists_every_command_the_scripts_can_run() -> None:
    """Each command in any of the store's scripts, on any path, is in the page's ACL line, with
    the commands the store sends itself (GET, SET, MULTI, EXEC, EVALSHA, EVAL, and erase_user's
    SCAN)."""
    allowed = {rule.removeprefix("+") for rule in documented_rules()[1] if rule.startswith("+")}
    sent_directly = {"get", "set", "multi", "exec", "evalsha", "eval", "scan"}
    needed = script_commands() | sent_directly
    assert {"getrange", "smembers", "sismember"} <= script_commands()  # helpers' calls seen
    assert needed - allowed == set(), "the page's ACL misses commands the store runs"
    assert allowed - needed == set(), "the page's ACL allows commands the store never runs"


async def test_documented_acl_is_restricted_to_its_keys(server: RedisServer) -> None:
    """The page's user cannot read keys outside the namespace, nor run commands off the list."""
    name, rules = documented_rules()
    async with store_as(server, name, rules) as url, admin_of(server) as admin:
        await admin.set("elsewhere:key", "x")
        user = aioredis.Redis.from_url(url)
        try:
            with pytest.raises(NoPermissionError):
                await user.get("elsewhere:key")
            with pytest.raises(NoPermissionError):
                await user.keys("*")
        finally:
            await user.aclose()
            await admin.delete("elsewhere:key")


def without(rules: list[str], command: str) -> list[str]:
    return [rule for rule in rules if rule != command]


async def denied_commands(server: RedisServer) -> set[str]:
    """The commands the server's ACL log says it refused since the user was made."""
    async with admin_of(server) as admin:
        entries = await admin.acl_log()
    return {entry["object"] for entry in entries if entry["reason"] == "command"}


@pytest.mark.parametrize(
    "command", [rule for rule in documented_rules()[1] if rule.startswith("+")]
)
async def test_every_documented_command_is_needed(server: RedisServer, command: str) -> None:
    """Without any one of the page's commands, the server refuses it during some store call."""
    name, rules = documented_rules()
    async with store_as(server, name, without(rules, command)) as url, admin_of(server) as admin:
        with pytest.raises(SessionError):
            await run_whole_api(url, admin)
        refused = await denied_commands(server)
    assert command.removeprefix("+") in refused
