"""What only Redis has in the lifecycle: revisions that see any writer, server-side TTLs on blob,
pointer and meta key, the Rust keyspace when no expiry is set, and one round trip per step."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
import pytest

from greentic_session import (
    ConflictError,
    RedisSessionStore,
    SessionData,
    TenantCtx,
    encode_session_data,
)
from tests.conftest import drop_namespace, make_data, shift_ttls
from tests.test_redis_layout import counting_round_trips

ALICE = TenantCtx.new("dev", "tenant-42", team="support", user="alice")
NO_USER = ALICE.with_user(None)
POINTER = "user:dev:tenant-42:support:alice"


@pytest.fixture
async def opened(redis_url: str, namespace: str) -> AsyncIterator[list[RedisSessionStore]]:
    """Stores opened by a test on the private server, closed and cleaned up after it."""
    stores: list[RedisSessionStore] = []
    yield stores
    for store in stores:
        await store.aclose()
    await drop_namespace(redis_url, namespace)


OpenStore = Callable[..., RedisSessionStore]


@pytest.fixture
def open_store(redis_url: str, namespace: str, opened: list[RedisSessionStore]) -> OpenStore:
    """Opens a store with the given options in the test's namespace."""

    def build(**options: Any) -> RedisSessionStore:
        store = RedisSessionStore.from_url(redis_url, namespace=namespace, **options)
        opened.append(store)
        return store

    return build


async def pttls(store: RedisSessionStore) -> dict[str, int]:
    """PTTL of every key under the store's namespace, by key without the namespace."""
    prefix = f"{store.keys.namespace}:"
    keys = [k async for k in store.client.scan_iter(match=f"{prefix}*")]
    return {k.decode().removeprefix(prefix): await store.client.pttl(k) for k in keys}


def near(value: int, expected_ms: int) -> bool:
    """A PTTL read just after it was set: at most a second below what was set, never above."""
    return expected_ms - 1000 <= value <= expected_ms


async def test_a_raw_set_between_read_and_compare_and_set_is_a_conflict(
    open_store: OpenStore,
) -> None:
    """A writer that knows nothing of revisions (a Rust runner's SET) makes the CAS fail."""
    store = open_store()
    key = await store.create_session(ALICE, make_data(ALICE, state="[1]"))
    entry = await store.get_entry(key)
    assert entry is not None
    rust_write = encode_session_data(make_data(ALICE, state="[2]"))
    await store.client.set(store.keys.session(key), rust_write)
    with pytest.raises(ConflictError):
        await store.update_session(
            key, make_data(ALICE, state="[3]"), expected_revision=entry.revision
        )
    assert await store.client.get(store.keys.session(key)) == rust_write


async def test_the_revision_is_the_sha1_of_the_stored_bytes(open_store: OpenStore) -> None:
    """Rewriting identical bytes keeps the revision: it names the content, not the writer."""
    import hashlib

    store = open_store()
    data = make_data(ALICE)
    key = await store.create_session(ALICE, data)
    entry = await store.get_entry(key)
    assert entry is not None
    blob = encode_session_data(data)
    assert entry.revision == hashlib.sha1(blob).hexdigest()
    await store.client.set(store.keys.session(key), blob)
    await store.update_session(key, data, expected_revision=entry.revision)


async def test_without_expiry_the_keyspace_is_exactly_rusts(open_store: OpenStore) -> None:
    """No expiry option: every new call leaves only blob and pointer keys, none with a TTL."""
    store = open_store()
    key = await store.create_session(ALICE, make_data(ALICE))
    entry = await store.get_entry(key)
    assert entry is not None
    await store.update_session(key, make_data(ALICE, state="[1]"), expected_revision=entry.revision)
    await store.update_with(key, lambda d: make_data(ALICE, state="[2]"))
    await store.touch_session(key)
    await store.create_session(NO_USER, make_data(NO_USER), key="chat-1")
    bob = ALICE.with_user("bob")
    await store.find_or_create(bob, "bob", lambda: make_data(bob))
    ttls = await pttls(store)
    assert set(ttls.values()) == {-1}
    assert sorted(k.split(":")[0] for k in ttls) == ["session"] * 3 + ["user"] * 2


async def test_create_gives_blob_and_pointer_the_idle_ttl(open_store: OpenStore) -> None:
    """With idle_ttl, create sets the TTL on the blob and its pointer at once, and writes no meta
    key for a session whose own user names its pointer."""
    store = open_store(idle_ttl=300)
    key = await store.create_session(ALICE, make_data(ALICE))
    ttls = await pttls(store)
    assert set(ttls) == {f"session:{key}", POINTER}
    assert all(near(ttl, 300_000) for ttl in ttls.values()), ttls
    keyed = await store.create_session(NO_USER, make_data(NO_USER), key="chat-9")
    assert near(await store.client.pttl(store.keys.session(keyed)), 300_000)
    assert await store.client.exists(store.keys.meta(keyed)) == 0  # no user, no pointer


async def test_a_userless_session_with_a_pointer_gets_a_meta_key(open_store: OpenStore) -> None:
    """A user-less session created by a user keeps that pointer's suffix in its meta key."""
    store = open_store(idle_ttl=300)
    key = await store.create_session(ALICE, make_data(NO_USER))
    ttls = await pttls(store)
    assert set(ttls) == {f"session:{key}", POINTER, f"meta:{key}"}
    assert all(near(ttl, 300_000) for ttl in ttls.values()), ttls


@pytest.mark.parametrize("write", ["update", "compare_and_set", "touch"])
async def test_writes_restart_the_ttls_of_blob_pointer_and_meta(
    open_store: OpenStore, redis_url: str, namespace: str, write: str
) -> None:
    """update, compare-and-set and touch put every key of the session back to idle_ttl."""
    store = open_store(idle_ttl=300)
    key = await store.create_session(ALICE, make_data(ALICE))
    await shift_ttls(redis_url, namespace, 200)
    assert all(ttl <= 100_000 for ttl in (await pttls(store)).values())
    if write == "update":
        await store.update_session(key, make_data(ALICE, state="[1]"))
    elif write == "touch":
        await store.touch_session(key)
    else:
        entry = await store.get_entry(key)
        assert entry is not None
        await store.update_session(
            key, make_data(ALICE, state="[1]"), expected_revision=entry.revision
        )
    ttls = await pttls(store)
    assert all(near(ttl, 300_000) for ttl in ttls.values()), ttls


async def test_a_userless_sessions_pointer_ttl_follows_it(
    open_store: OpenStore, redis_url: str, namespace: str
) -> None:
    """The pointer a user-less session got from its creator is refreshed with it (via meta)."""
    store = open_store(idle_ttl=300)
    key = await store.create_session(ALICE, make_data(NO_USER))
    assert await store.client.get(store.keys.meta(key)) == b"dev:tenant-42:support:alice"
    await shift_ttls(redis_url, namespace, 200)
    await store.update_session(key, make_data(NO_USER, state="[1]"))
    assert near(await store.client.pttl(f"{namespace}:{POINTER}"), 300_000)
    await store.remove_session(key)
    assert await pttls(store) == {}


async def test_max_lifetime_caps_the_ttl(
    open_store: OpenStore, redis_url: str, namespace: str
) -> None:
    """A touch late in a session's life gets only what is left of max_lifetime, on every key."""
    store = open_store(idle_ttl=100, max_lifetime=150)
    key = await store.create_session(ALICE, make_data(ALICE))
    ttls = await pttls(store)
    assert near(ttls[f"meta:{key}"], 150_000)
    assert near(ttls[f"session:{key}"], 100_000)
    await shift_ttls(redis_url, namespace, 90)
    await store.touch_session(key)
    ttls = await pttls(store)
    assert near(ttls[f"session:{key}"], 60_000), ttls
    assert near(ttls[POINTER], 60_000), ttls
    assert near(ttls[f"meta:{key}"], 60_000), ttls


async def test_a_rust_blob_without_meta_starts_its_lifetime_at_our_first_write(
    open_store: OpenStore,
) -> None:
    """A blob another runtime wrote (no meta key, no TTL) gets a lifetime from our next write."""
    store = open_store(max_lifetime=120)
    data = make_data(ALICE)
    await store.client.set(store.keys.session("rust-1"), encode_session_data(data))
    await store.touch_session("rust-1")
    ttls = await pttls(store)
    assert near(ttls["session:rust-1"], 120_000)
    assert near(ttls["meta:rust-1"], 120_000)
    assert await store.client.get(store.keys.meta("rust-1")) == b"dev:tenant-42:support:alice"


async def test_webhook_scenario_leaves_no_orphan_key(open_store: OpenStore) -> None:
    """200 racing messages from 20 users leave exactly 20 blobs and 20 pointers, nothing else."""
    store = open_store()

    async def handle(user: str, message: str) -> None:
        ctx = ALICE.with_user(user)
        entry, _ = await store.find_or_create(ctx, user, lambda: make_data(ctx, state="[]"))

        def record(data: SessionData) -> SessionData:
            items = [*json.loads(data.context_json), message]
            return msgspec.structs.replace(data, context_json=json.dumps(items))

        await store.update_with(entry.key, record, attempts=100)

    users = [f"user-{u}" for u in range(20)]
    await asyncio.gather(*(handle(u, f"{u}-{m}") for m in range(10) for u in users))
    ttls = await pttls(store)
    kinds = sorted(k.split(":")[0] for k in ttls)
    assert kinds == ["session"] * 20 + ["user"] * 20
    total = 0
    for key, _ in ttls.items():
        if key.startswith("session:"):
            blob = await store.client.get(f"{store.keys.namespace}:{key}")
            total += len(json.loads(json.loads(blob)["context_json"]))
    assert total == 200


@pytest.mark.parametrize("batching", [False, True], ids=["redis-py", "batched"])
async def test_round_trips_of_the_lifecycle_calls(open_store: OpenStore, batching: bool) -> None:
    """CAS, touch and keyed create take 1 trip; find_or_create 1 or 2; update_with 2."""
    store = open_store(idle_ttl=600, batching=batching)
    data = make_data(ALICE)
    key = await store.create_session(ALICE, data)  # connect and load every script once
    entry = await store.get_entry(key)
    assert entry is not None
    await store.update_session(key, data, expected_revision=entry.revision)
    await store.touch_session(key)
    await store.create_session(ALICE, data, key="warm")
    bob = ALICE.with_user("bob")
    await store.find_or_create(bob, "bob", lambda: make_data(bob))
    await store.update_with(key, lambda d: d)

    carol = ALICE.with_user("carol")
    counts: dict[str, int] = {}
    for name, call in [
        ("cas", lambda: store.update_session(key, data, expected_revision=entry.revision)),
        ("touch", lambda: store.touch_session(key)),
        ("create_keyed", lambda: store.create_session(ALICE, data, key="keyed")),
        ("find_or_create_found", lambda: store.find_or_create(ALICE, "alice", lambda: data)),
        (
            "find_or_create_new",
            lambda: store.find_or_create(carol, "carol", lambda: make_data(carol)),
        ),
        ("update_with", lambda: store.update_with(key, lambda d: d)),
    ]:
        with counting_round_trips() as sent:
            await call()
        counts[name] = sent[0]
    assert counts == {
        "cas": 1,
        "touch": 1,
        "create_keyed": 1,
        "find_or_create_found": 1,
        "find_or_create_new": 2,
        "update_with": 2,
    }


async def test_operator_logs_name_no_user_and_no_key(
    open_store: OpenStore, caplog: pytest.LogCaptureFixture
) -> None:
    """A repaired pointer and a corrupt blob are logged, without the user id or session key."""
    import logging

    from greentic_session import InternalError

    store = open_store()
    caplog.set_level(logging.INFO, logger="greentic_session")
    key = await store.create_session(ALICE, make_data(ALICE))
    await store.client.delete(store.keys.session(key))  # the pointer is now stale
    assert await store.find_by_user(ALICE, "alice") is None
    await store.client.set(store.keys.session("broken"), b"{not json")
    with pytest.raises(InternalError):
        await store.get_session("broken")
    messages = [record.getMessage() for record in caplog.records]
    assert any("pointer" in m for m in messages), messages
    assert any("does not decode" in m for m in messages), messages
    assert not any("alice" in m or key in m or "broken" in m for m in messages), messages


async def test_update_with_sees_a_raw_write_between_its_read_and_write(
    open_store: OpenStore,
) -> None:
    """A Rust-style plain SET during update_with's change makes that try conflict; the next try
    applies the change on top of the raw write."""
    store = open_store()
    key = await store.create_session(ALICE, make_data(ALICE, state="[]"))
    calls = 0

    async def change(data: SessionData) -> SessionData:
        nonlocal calls
        calls += 1
        if calls == 1:
            rust = make_data(ALICE, state='["rust"]')
            await store.client.set(store.keys.session(key), encode_session_data(rust))
        items = [*json.loads(data.context_json), "python"]
        return msgspec.structs.replace(data, context_json=json.dumps(items))

    entry = await store.update_with(key, change)
    assert calls == 2
    assert json.loads(entry.data.context_json) == ["rust", "python"]
    assert await store.get_entry(key) == entry
