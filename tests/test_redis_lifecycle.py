"""What only Redis has in the lifecycle: revisions that see any writer, server-side TTLs on blob,
pointer and meta key, the Rust keyspace when no expiry is set, and one round trip per step."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import msgspec
import pytest

from greentic_session import (
    ConflictError,
    NotFoundError,
    RedisSessionStore,
    SessionData,
    encode_session_data,
)
from greentic_session.backends.redis.untyped import untyped
from greentic_session.testing import SERVER_KINDS, Backend, RedisServer, find_server
from tests import stores
from tests.conftest import drop_namespace, make_data, shift_ttls
from tests.identities import ALICE, NO_USER
from tests.test_lifecycle import LIFETIME_WRITES, write_once
from tests.test_redis_layout import counting_round_trips

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
    """Opens a store of a row (batched unless told) with the given options on the private server,
    in the test's namespace, for the test to close (`opened`)."""

    def build(transport: Backend | None = None, **options: Any) -> RedisSessionStore:
        store = stores.open_store(redis_url, namespace, transport, **options)
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


# -- max_lifetime holds to the millisecond -------------------------------------------------------


@pytest.fixture(scope="module", params=SERVER_KINDS)
def engine_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of a private server of each engine (Redis 7.0 reads its clock afresh for each
    command a script runs, Valkey 8 once per script: the cap must hold on both)."""
    binary = find_server(request.param)
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the Redis tests on {request.param}: install its server")
        pytest.skip(f"no {request.param} server on PATH")
    with RedisServer(binary=binary) as server:
        yield server.url


@pytest.fixture
async def engine_store(engine_url: str, namespace: str) -> AsyncIterator[OpenStore]:
    """Opens stores with the given options on `engine_url`, in the test's namespace."""
    opened: list[RedisSessionStore] = []

    def build(**options: Any) -> RedisSessionStore:
        store = stores.open_store(engine_url, namespace, **options)
        opened.append(store)
        return store

    yield build
    for store in opened:
        await store.aclose()
    await drop_namespace(engine_url, namespace)


async def expire_time(store: RedisSessionStore, key: str) -> int:
    """PEXPIRETIME of `key`: when it expires, in the server's absolute milliseconds."""
    return int(await untyped(store.client).execute_command("PEXPIRETIME", key))


@pytest.mark.parametrize("write", LIFETIME_WRITES)
async def test_a_blob_whose_meta_key_is_gone_keeps_its_expiry_as_the_cap(
    engine_store: OpenStore, write: str
) -> None:
    """A write to a blob found without its meta key but with an expiry of its own (the meta key
    expired a moment before it) never moves that expiry later: it cannot restart the lifetime."""
    store = engine_store(idle_ttl=60, max_lifetime=100)
    key = await store.create_session(ALICE, make_data(ALICE))
    blob, meta = store.keys.session(key), store.keys.meta(key)
    await store.client.delete(meta)
    await store.client.pexpire(blob, 10_000)  # what the meta key held: 10 s of lifetime left
    due = await expire_time(store, blob)
    await write_once(store, key, write)
    assert 0 < await expire_time(store, blob) <= due
    assert 0 < await expire_time(store, meta) <= due  # the lifetime is recorded again, unmoved
    assert await store.client.pttl(f"{store.keys.namespace}:{POINTER}") <= 10_000


@pytest.mark.parametrize("write", LIFETIME_WRITES)
async def test_a_write_leaves_the_blob_no_later_than_its_meta_key(
    engine_store: OpenStore, write: str
) -> None:
    """Late in a session's life every write gives the blob at most the meta key's own expiry,
    to the millisecond: the blob can never be found without its lifetime record."""
    store = engine_store(idle_ttl=60, max_lifetime=100)
    key = await store.create_session(ALICE, make_data(ALICE))
    blob, meta = store.keys.session(key), store.keys.meta(key)
    await store.client.pexpire(meta, 30_000)  # 30 s of lifetime left: less than idle_ttl
    await store.client.pexpire(blob, 20_000)
    ends = await expire_time(store, meta)
    for _ in range(100):
        await write_once(store, key, write)
        assert await expire_time(store, meta) == ends
        assert ends - 1000 < await expire_time(store, blob) <= ends


@pytest.mark.parametrize("write", LIFETIME_WRITES)
async def test_every_write_starts_the_lifetime_of_a_blob_without_meta_or_expiry(
    engine_store: OpenStore, write: str
) -> None:
    """A blob a Rust runner wrote (no meta key, no expiry) gets max_lifetime from our first
    write of any kind, recorded in a new meta key."""
    store = engine_store(max_lifetime=120)
    await store.client.set(store.keys.session("rust-1"), encode_session_data(make_data(ALICE)))
    await write_once(store, "rust-1", write)
    assert near(await store.client.pttl(store.keys.session("rust-1")), 120_000)
    assert near(await store.client.pttl(store.keys.meta("rust-1")), 120_000)
    assert await expire_time(store, store.keys.session("rust-1")) <= await expire_time(
        store, store.keys.meta("rust-1")
    )


async def test_writes_racing_the_cap_never_keep_the_session(
    engine_store: OpenStore,
) -> None:
    """The issue's scenario, bounded: touches and updates sent back to back across the end of
    a 0.3 s lifetime either land before it or find the session gone; none restarts it."""
    store = engine_store(idle_ttl=0.2, max_lifetime=0.3)
    key = await store.create_session(ALICE, make_data(ALICE))
    created_by = time.monotonic()  # the server created it before this
    landed = 0
    while time.monotonic() < created_by + 0.4:  # 0.1 s past the cap, on the same machine's clock
        try:
            await write_once(store, key, "touch" if landed % 2 else "update")
            landed += 1
        except NotFoundError:
            pass
    assert landed > 0
    assert await store.get_session(key) is None
    assert await store.client.exists(store.keys.session(key), store.keys.meta(key)) == 0


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


@pytest.mark.parametrize(
    "transport", [stores.UNBATCHED, stores.BATCHED], ids=["redis-py", "batched"]
)
async def test_round_trips_of_the_lifecycle_calls(
    open_store: OpenStore, transport: Backend
) -> None:
    """CAS, touch and keyed create take 1 trip; find_or_create 1 or 2; update_with 2."""
    store = open_store(transport, idle_ttl=600)
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
