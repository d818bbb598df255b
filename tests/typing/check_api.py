"""Typed usage of the public API, checked by `mypy --strict` (nox -s typecheck); never run."""

from __future__ import annotations

from typing import assert_type

from greentic_session import (
    DueWait,
    Encryption,
    ErrorCode,
    InMemorySessionStore,
    RedisSessionStore,
    ReplyScope,
    SessionBackendConfig,
    SessionData,
    SessionError,
    SessionKey,
    SessionStore,
    TenantCtx,
    create_session_store,
    decode_session_data,
    encode_session_data,
    keyed,
)
from greentic_session.mapping import (
    KeyedMapping,
    telegram_update_to_session_key,
    webhook_to_session_key,
)


async def tour(data: SessionData) -> None:
    ctx = TenantCtx.new("dev", "tenant", team="ops", user="u1")
    assert_type(ctx, TenantCtx)
    assert_type(ctx.with_user("u2"), TenantCtx)
    assert_type(ctx.normalized_team, str | None)

    store = create_session_store(SessionBackendConfig.in_memory())
    assert_type(store, SessionStore)
    async with InMemorySessionStore() as memory:
        assert_type(memory, InMemorySessionStore)
        key = await memory.create_session(ctx, data)
        assert_type(key, SessionKey)
        assert_type(await memory.get_session(key), SessionData | None)
        assert_type(await memory.find_by_user(ctx, "u1"), tuple[SessionKey, SessionData] | None)
        assert_type(await memory.update_session(key, data), None)

    redis_store = RedisSessionStore.from_url("redis://localhost:6379/0", max_connections=8)
    assert_type(redis_store, RedisSessionStore)
    config = SessionBackendConfig.redis_url("redis://localhost", pool_timeout=1.5)
    assert_type(config, SessionBackendConfig)

    ring = Encryption({"k1": bytes(32)}, "k1")
    assert_type(ring.key_ids, tuple[str, ...])
    sealed = SessionBackendConfig.redis_url("redis://h", encryption=ring, compression="zstd")
    assert_type(sealed, SessionBackendConfig)
    assert_type(InMemorySessionStore(encryption=ring, compression=None), InMemorySessionStore)
    SessionBackendConfig.in_memory(compression="gzip")  # type: ignore[arg-type]

    assert_type(encode_session_data(data), bytes)
    assert_type(decode_session_data(b"{}"), SessionData)
    assert_type(telegram_update_to_session_key(1, "chat", 3), SessionKey)
    assert_type(webhook_to_session_key("crm", "ticket", 7), SessionKey)
    helpers = keyed(b"0123456789abcdef")
    assert_type(helpers, KeyedMapping)
    assert_type(keyed("a str secret of 16+ bytes"), KeyedMapping)
    assert_type(helpers.telegram_update_to_session_key(1, "chat", 3), SessionKey)
    assert_type(helpers.webhook_to_session_key("crm", "ticket", 7), SessionKey)

    scope = ReplyScope(conversation="telegram:chat-1", thread=None, correlation="cid")
    assert_type(scope, ReplyScope)
    assert_type(scope.thread, str | None)
    assert_type(scope.scope_hash(), str)

    await store.register_wait(ctx, "u1", scope, key, data, ttl=60, due_in=30.0)
    claimed = await store.claim_due_waits(limit=10, lease=5.0)
    assert_type(claimed, list[DueWait])
    for due in claimed:
        assert_type(due.scope, ReplyScope)
        assert_type(due.attempt, int)
        assert_type(await store.settle_due(due), bool)
    async for due in store.watch_due_waits(poll=0.5):
        assert_type(due.entry.revision, str)
        break

    try:
        await store.remove_session(key)
    except SessionError as exc:
        assert_type(exc.code, ErrorCode)
