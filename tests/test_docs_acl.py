"""The ACL line in docs/guides/redis-production.md is enough for the store's whole API, and minimal.

The line is read from the page itself, so the page and the store cannot drift apart: a new
command in the store (or a new store method this file does not call) fails these tests until the
page says what the new calls need.
"""

from __future__ import annotations

import inspect
import re
import shlex
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import msgspec
import pytest
import redis.asyncio as aioredis

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
from greentic_session.mapping import telegram_update_to_session_key
from greentic_session.testing import RedisServer

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


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    """A private server: ACL users are server-wide; the page's line names the default namespace."""
    with RedisServer() as private:
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


async def exercise(store: SessionStore) -> None:
    """Every store call, on every path through its scripts."""
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
    await store.touch_session(key)
    with pytest.raises(NotFoundError):
        await store.touch_session("missing")
    await store.remove_session(key)
    with pytest.raises(NotFoundError):
        await store.remove_session(key)
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
    # A user-less session keeps its creator's pointer after removal; find clears it.
    userless = await store.create_session(
        ctx, paused(TenantCtx.new("prod", "acme", team="support"))
    )
    await store.remove_session(userless)
    assert await store.find_by_user(ctx, "user-1") is None
    await exercise_waits(store, ctx)


async def exercise_waits(store: SessionStore, ctx: TenantCtx) -> None:
    """Every wait call: register (new, superseding), find, list, clear, and a removed wait."""
    chat, thread = ReplyScope(conversation="chat-1"), ReplyScope(conversation="chat-2")
    assert store.session_key_for(ctx, "user-1", "wait-1") == "wait-1"  # no command on one node
    await store.register_wait(ctx, "user-1", chat, "wait-1", paused(ctx), ttl=60)
    await store.register_wait(ctx, "user-1", chat, "wait-2", paused(ctx))  # supersedes wait-1
    await store.register_wait(ctx, "user-1", thread, "wait-3", paused(ctx), ttl=30)
    assert await store.find_wait_by_scope(ctx, "user-1", chat) == "wait-2"
    assert sorted(await store.list_waits_for_user(ctx, "user-1")) == ["wait-2", "wait-3"]
    await store.update_session("wait-3", paused(ctx, "node.next"))
    await store.touch_session("wait-3")
    await store.clear_wait(ctx, "user-1", chat)
    await store.remove_session("wait-3")
    await store.remove_session("wait-1")
    assert await store.list_waits_for_user(ctx, "user-1") == []


async def run_whole_api(url: str) -> set[str]:
    """`exercise` on a store without expiry and on one with both expiry options; returns the
    SessionStore methods called."""
    async with RedisSessionStore.from_url(url) as plain:  # `aclose` on the way out
        await exercise(plain)
    async with RedisSessionStore.from_url(url, idle_ttl=600, max_lifetime=3600) as expiring:
        await exercise(expiring)
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
        "session_key_for",
        "aclose",
    }


async def test_documented_acl_runs_the_whole_store_api(server: RedisServer) -> None:
    """A user with exactly the page's ACL rules can make every store call, on every path."""
    name, rules = documented_rules()
    async with store_as(server, name, rules) as url:
        called = await run_whole_api(url)
    assert called == store_api(), "a store method is not exercised: call it in run_whole_api"


async def test_documented_acl_is_restricted_to_its_keys(server: RedisServer) -> None:
    """The page's user cannot read keys outside the namespace, nor run commands off the list."""
    name, rules = documented_rules()
    async with store_as(server, name, rules) as url, admin_of(server) as admin:
        await admin.set("elsewhere:key", "x")
        user = aioredis.Redis.from_url(url)
        try:
            with pytest.raises(aioredis.ResponseError, match="no permissions"):
                await user.get("elsewhere:key")
            with pytest.raises(aioredis.ResponseError, match="no permissions"):
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
    async with store_as(server, name, without(rules, command)) as url:
        with pytest.raises(SessionError):
            await run_whole_api(url)
        refused = await denied_commands(server)
    assert command.removeprefix("+") in refused
