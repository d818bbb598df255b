"""What only Redis has for waits: Rust's exact keys and bytes (tests/wire/wait_records.json),
interop with Rust's command sequence both ways, PTTLs of every key, one round trip per call,
pruning of provably dead entries, and the team '-' sharing no-team keys."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from greentic_session import (
    InternalError,
    RedisSessionStore,
    ReplyScope,
    TenantCtx,
    UnavailableError,
    decode_session_data,
    encode_session_data,
)
from greentic_session.testing import LOOP_KINDS, RedisServer
from tests.conftest import drop_namespace, make_data, shift_ttls
from tests.identities import WAITING_USER as USER
from tests.test_redis_layout import counting_round_trips

# Every test here runs on each event loop the Redis store supports.
pytestmark = pytest.mark.loops(*LOOP_KINDS)

VECTORS = json.loads(
    (Path(__file__).parent / "wire" / "wait_records.json").read_text(encoding="utf-8")
)["vectors"]
RUST_NS = "greentic:session"
CHAT_A = ReplyScope(conversation="telegram:chat-a")
CHAT_B = ReplyScope(conversation="telegram:chat-b")


@pytest.fixture
async def store(redis_url: str, namespace: str) -> AsyncIterator[RedisSessionStore]:
    """A Redis store in the test's own namespace, emptied afterwards."""
    async with RedisSessionStore.from_url(redis_url, namespace=namespace) as opened:
        yield opened
    await drop_namespace(redis_url, namespace)


async def dump(store: RedisSessionStore) -> dict[str, Any]:
    """Every key under the store's namespace (namespace stripped) with its value: bytes for a
    string, a sorted list for a SET."""
    prefix = f"{store.keys.namespace}:"
    found: dict[str, Any] = {}
    async for raw in store.client.scan_iter(match=f"{prefix}*"):
        name = raw.decode()
        if await store.client.type(raw) == b"set":
            found[name.removeprefix(prefix)] = sorted(await store.client.smembers(raw))
        else:
            found[name.removeprefix(prefix)] = await store.client.get(raw)
    return found


async def pttl(store: RedisSessionStore, suffix: str) -> int:
    return int(await store.client.pttl(f"{store.keys.namespace}:{suffix}"))


def near(value: int, expected_ms: int) -> bool:
    """A PTTL read just after it was set: at most a second below, never above."""
    return expected_ms - 1000 <= value <= expected_ms


def vector_inputs(vector: dict[str, Any]) -> tuple[TenantCtx, ReplyScope, bytes]:
    ctx = vector["ctx"]
    tenant_ctx = TenantCtx.new(ctx["env"], ctx["tenant"], team=ctx["team"], user=ctx["user"])
    scope = ReplyScope(**json.loads(vector["scope"]))
    return tenant_ctx, scope, vector["blob"].encode()


async def rust_register_wait(
    store: RedisSessionStore,
    ctx: TenantCtx,
    user_id: str,
    where: tuple[ReplyScope, str],
    blob: bytes,
    *,
    ttl_ms: int | None = None,
) -> None:
    """Rust 0.5's register_wait, command by command (reference section 3.4), with raw redis."""
    scope, key = where
    team = ctx.normalized_team or "-"
    tail = f"{ctx.env}:{ctx.tenant_id}:{team}:{user_id}"
    ns, client = store.keys.namespace, store.client
    blob_key = f"{ns}:session:{key}"
    user_set, scope_key = f"{ns}:waits:user:{tail}", f"{ns}:waits:scope:{tail}:{scope.scope_hash()}"
    await client.set(blob_key, blob)
    if ttl_ms is not None:
        await client.pexpire(blob_key, ttl_ms)
    await client.sadd(user_set, key)
    previous = await client.get(scope_key)
    await client.set(scope_key, key)
    if ttl_ms is not None:
        await client.pexpire(scope_key, ttl_ms)
    if previous is not None and previous != key.encode():
        await client.srem(user_set, previous)


# -- exact keys and bytes ---------------------------------------------------------------------


@pytest.mark.parametrize("vector", [v for v in VECTORS if v["scope"]], ids=lambda v: v["name"])
async def test_register_wait_writes_rusts_exact_keys_and_bytes(
    redis_url: str, vector: dict[str, Any]
) -> None:
    """Under Rust's namespace the store writes exactly the vector's keys and values, plus only
    its own hint key, and nothing expires (no ttl, no expiry options)."""
    namespace = f"{RUST_NS}-{vector['session_key']}-vec"  # private, but same layout
    ctx, scope, blob = vector_inputs(vector)
    async with RedisSessionStore.from_url(redis_url, namespace=namespace) as store:
        try:
            data = decode_session_data(blob)
            assert encode_session_data(data) == blob
            await store.register_wait(ctx, vector["user_id"], scope, vector["session_key"], data)
            expected: dict[str, Any] = {}
            for name, value in vector["redis"].items():
                local = name.removeprefix(f"{RUST_NS}:")
                if isinstance(value, list):
                    expected[local] = sorted(v.encode() for v in value)
                else:
                    expected[local] = blob if value == "<blob>" else value.encode()
            written = await dump(store)
            hint = written.pop(f"waitof:{vector['session_key']}")
            assert written == expected
            scope_key = next(k for k in expected if k.startswith("waits:scope:"))
            assert hint == f":{scope_key.removeprefix('waits:scope:')}".encode()
            for name in [*expected, f"waitof:{vector['session_key']}"]:
                assert await pttl(store, name) == -1
        finally:
            await drop_namespace(redis_url, namespace)


# -- interop both ways --------------------------------------------------------------------------


async def test_waits_written_by_rust_are_found_listed_updated_and_cleared(
    store: RedisSessionStore,
) -> None:
    """Waits made by replaying Rust's commands are found, listed, updated and cleared here."""
    blob_a = encode_session_data(make_data(USER, node="node.wait.a"))
    blob_b = encode_session_data(make_data(USER, node="node.wait.b"))
    await rust_register_wait(store, USER, "user-77", (CHAT_A, "wait-a"), blob_a)
    await rust_register_wait(store, USER, "user-77", (CHAT_B, "wait-b"), blob_b, ttl_ms=60_000)
    assert await store.find_wait_by_scope(USER, "user-77", CHAT_A) == "wait-a"
    assert sorted(await store.list_waits_for_user(USER, "user-77")) == ["wait-a", "wait-b"]
    await store.update_session("wait-b", make_data(USER, node="node.next"))
    assert near(await pttl(store, "session:wait-b"), 60_000)  # kept, unlike Rust's update
    await store.clear_wait(USER, "user-77", CHAT_A)
    assert await store.get_session("wait-a") is None
    assert await store.find_wait_by_scope(USER, "user-77", CHAT_A) is None
    assert await store.list_waits_for_user(USER, "user-77") == ["wait-b"]
    await store.remove_session("wait-b")
    assert await store.list_waits_for_user(USER, "user-77") == []


async def test_what_the_store_writes_equals_rusts_replay(
    redis_url: str, store: RedisSessionStore
) -> None:
    """The store's register_wait and Rust's replayed commands leave the same Rust keys, values
    and TTLs (the store's hint key aside)."""
    data = make_data(USER, node="node.wait.a")
    async with RedisSessionStore.from_url(redis_url, namespace=store.keys.namespace + "-r") as rust:
        try:
            await rust_register_wait(
                rust, USER, "user-77", (CHAT_A, "wait-a"), encode_session_data(data), ttl_ms=60_000
            )
            await store.register_wait(USER, "user-77", CHAT_A, "wait-a", data, ttl=60)
            mine = await dump(store)
            mine.pop("waitof:wait-a")
            assert mine == await dump(rust)
            for name in mine:
                if not name.startswith("waits:user:"):
                    assert near(await pttl(store, name), 60_000)
                    assert near(await pttl(rust, name), 60_000)
        finally:
            await drop_namespace(redis_url, rust.keys.namespace)


# -- TTLs ---------------------------------------------------------------------------------------


async def test_ttls_of_blob_pointer_hint_and_user_set(store: RedisSessionStore) -> None:
    """Blob, scope pointer and hint get the wait's ttl; the user SET covers its longest-lived
    member, and has no expiry while one member has none."""
    await store.register_wait(USER, "user-77", CHAT_A, "wait-a", make_data(USER), ttl=60)
    scope_a = f"waits:scope:dev:tenant-a:-:user-77:{CHAT_A.scope_hash()}"
    user_set = "waits:user:dev:tenant-a:-:user-77"
    for name in ("session:wait-a", "waitof:wait-a", scope_a, user_set):
        assert near(await pttl(store, name), 60_000), name
    await store.register_wait(USER, "user-77", CHAT_B, "wait-b", make_data(USER), ttl=120)
    assert near(await pttl(store, user_set), 120_000)
    await store.register_wait(
        USER, "user-77", ReplyScope(conversation="c"), "wait-c", make_data(USER)
    )
    assert await pttl(store, user_set) == -1
    await store.clear_wait(USER, "user-77", ReplyScope(conversation="c"))
    await store.list_waits_for_user(USER, "user-77")  # restores the cover
    assert near(await pttl(store, user_set), 120_000)


async def test_a_rust_writer_adding_a_member_is_covered_at_the_next_touch(
    store: RedisSessionStore,
) -> None:
    """A Rust register leaves the SET without a TTL; the next list restores the cover."""
    await store.register_wait(USER, "user-77", CHAT_A, "wait-a", make_data(USER), ttl=60)
    blob = encode_session_data(make_data(USER))
    await rust_register_wait(store, USER, "user-77", (CHAT_B, "wait-b"), blob, ttl_ms=30_000)
    user_set = "waits:user:dev:tenant-a:-:user-77"
    assert near(await pttl(store, user_set), 60_000)  # Rust's SADD kept it
    await store.client.persist(f"{store.keys.namespace}:{user_set}")
    assert sorted(await store.list_waits_for_user(USER, "user-77")) == ["wait-a", "wait-b"]
    assert near(await pttl(store, user_set), 60_000)


async def test_update_and_touch_under_idle_ttl_refresh_every_wait_key(
    redis_url: str, namespace: str
) -> None:
    """Under idle_ttl an update or touch gives the wait's blob, scope pointer, hint and SET the
    wait's own ttl again."""
    async with RedisSessionStore.from_url(redis_url, namespace=namespace, idle_ttl=5) as store:
        try:
            await store.register_wait(USER, "user-77", CHAT_A, "wait-a", make_data(USER), ttl=60)
            await shift_ttls(redis_url, namespace, 30)
            scope_a = f"waits:scope:dev:tenant-a:-:user-77:{CHAT_A.scope_hash()}"
            names = (
                "session:wait-a",
                "waitof:wait-a",
                scope_a,
                "waits:user:dev:tenant-a:-:user-77",
            )
            for name in names:
                assert near(await pttl(store, name), 30_000)
            await store.update_session("wait-a", make_data(USER, node="n"))
            for name in names:
                assert near(await pttl(store, name), 60_000), name
            await shift_ttls(redis_url, namespace, 30)
            await store.touch_session("wait-a")
            for name in names:
                assert near(await pttl(store, name), 60_000), name
        finally:
            await drop_namespace(redis_url, namespace)


# -- one round trip each ------------------------------------------------------------------------


async def test_each_wait_call_is_one_round_trip(store: RedisSessionStore) -> None:
    """register, find, list and clear each take one round trip (scripts already cached)."""
    data = make_data(USER)
    await store.register_wait(USER, "user-77", CHAT_B, "warm", data)
    await store.find_wait_by_scope(USER, "user-77", CHAT_B)
    await store.list_waits_for_user(USER, "user-77")
    await store.clear_wait(USER, "user-77", CHAT_B)
    counts = {}
    for name, call in [
        ("register", lambda: store.register_wait(USER, "user-77", CHAT_A, "wait-a", data)),
        ("find", lambda: store.find_wait_by_scope(USER, "user-77", CHAT_A)),
        ("list", lambda: store.list_waits_for_user(USER, "user-77")),
        ("clear", lambda: store.clear_wait(USER, "user-77", CHAT_A)),
    ]:
        with counting_round_trips() as sent:
            await call()  # type: ignore[no-untyped-call]
        counts[name] = sent[0]
    assert counts == {"register": 1, "find": 1, "list": 1, "clear": 1}


# -- pruning ------------------------------------------------------------------------------------


async def test_lookups_prune_entries_whose_blob_is_gone(store: RedisSessionStore) -> None:
    """A blob deleted behind the store's back: find drops its scope pointer, SET member and
    hint; list drops the member."""
    await store.register_wait(USER, "user-77", CHAT_A, "wait-a", make_data(USER))
    await store.register_wait(USER, "user-77", CHAT_B, "wait-b", make_data(USER))
    await store.client.delete(store.keys.session("wait-a"), store.keys.session("wait-b"))
    assert await store.find_wait_by_scope(USER, "user-77", CHAT_A) is None
    assert await store.list_waits_for_user(USER, "user-77") == []
    left = await dump(store)
    assert list(left) == [f"waits:scope:dev:tenant-a:-:user-77:{CHAT_B.scope_hash()}"]


async def test_lookups_prune_entries_owned_by_another_user(store: RedisSessionStore) -> None:
    """A blob rewritten (by a raw SET) with another user's owner is provably not this user's
    wait: find prunes the pointer and member; clear deletes only the stale pointer, never the
    other user's session."""
    await store.register_wait(USER, "user-77", CHAT_A, "wait-a", make_data(USER))
    await store.register_wait(USER, "user-77", CHAT_B, "wait-b", make_data(USER))
    theirs = encode_session_data(make_data(USER.with_user("user-78")))
    await store.client.set(store.keys.session("wait-a"), theirs)
    await store.client.set(store.keys.session("wait-b"), theirs)
    assert await store.find_wait_by_scope(USER, "user-77", CHAT_A) is None
    await store.clear_wait(USER, "user-77", CHAT_B)
    assert await store.client.get(store.keys.session("wait-b")) == theirs
    assert await store.list_waits_for_user(USER, "user-77") == []
    assert not [k for k in await dump(store) if k.startswith("waits:")]


async def test_team_dash_shares_keys_with_no_team_and_nothing_is_deleted(
    store: RedisSessionStore,
) -> None:
    """The team '-' wait lives at no-team's keys; no-team lookups and clears leave every one of
    its keys in place."""
    dash = USER.with_team("-")
    await store.register_wait(dash, "user-77", CHAT_A, "dash-wait", make_data(dash))
    before = await dump(store)
    assert f"waits:scope:dev:tenant-a:-:user-77:{CHAT_A.scope_hash()}" in before
    assert await store.find_wait_by_scope(USER, "user-77", CHAT_A) is None
    assert await store.list_waits_for_user(USER, "user-77") == []
    await store.clear_wait(USER, "user-77", CHAT_A)
    assert await dump(store) == before


async def test_remove_drops_the_scope_pointer_hint_and_member(store: RedisSessionStore) -> None:
    """remove_session of a wait leaves no key behind."""
    await store.register_wait(USER, "user-77", CHAT_A, "wait-a", make_data(USER), ttl=60)
    await store.remove_session("wait-a")
    assert await dump(store) == {}


async def test_superseding_keeps_the_old_session_but_not_its_hint(
    store: RedisSessionStore,
) -> None:
    """The superseded session keeps its blob and TTL; its hint and SET member go."""
    await store.register_wait(USER, "user-77", CHAT_A, "wait-old", make_data(USER), ttl=60)
    await store.register_wait(USER, "user-77", CHAT_A, "wait-new", make_data(USER))
    left = await dump(store)
    assert "waitof:wait-old" not in left
    assert left["waits:user:dev:tenant-a:-:user-77"] == [b"wait-new"]
    assert near(await pttl(store, "session:wait-old"), 60_000)


async def test_a_corrupt_blob_behind_a_wait_is_an_internal_error(store: RedisSessionStore) -> None:
    """A scope pointer naming a blob that is not SessionData: InternalError, nothing deleted."""
    await store.register_wait(USER, "user-77", CHAT_A, "wait-a", make_data(USER))
    await store.client.set(store.keys.session("wait-a"), b"not json")
    before = await dump(store)
    for call in (
        store.find_wait_by_scope(USER, "user-77", CHAT_A),
        store.list_waits_for_user(USER, "user-77"),
        store.clear_wait(USER, "user-77", CHAT_A),
        store.register_wait(USER, "user-77", CHAT_A, "wait-a", make_data(USER)),
    ):
        with pytest.raises(InternalError):
            await call
    assert await dump(store) == before


async def test_a_wait_index_of_another_type_is_reported_or_left_alone(
    store: RedisSessionStore,
) -> None:
    """A user SET key holding a string: register and list raise InternalError and write
    nothing; find, clear and remove, which only drop a member, leave that key alone."""
    await store.register_wait(USER, "user-77", CHAT_A, "wait-a", make_data(USER))
    user_set = f"{store.keys.namespace}:waits:user:dev:tenant-a:-:user-77"
    await store.client.delete(user_set)
    await store.client.set(user_set, b"not a set")
    before = await dump(store)
    for call in (
        store.register_wait(USER, "user-77", CHAT_B, "wait-b", make_data(USER)),
        store.list_waits_for_user(USER, "user-77"),
    ):
        with pytest.raises(InternalError):
            await call
    assert await dump(store) == before
    await store.client.delete(store.keys.session("wait-a"))
    assert await store.find_wait_by_scope(USER, "user-77", CHAT_A) is None  # pruned the pointer
    await store.register_wait(
        USER.with_user("user-9"), "user-9", CHAT_A, "k9", make_data(USER.with_user("user-9"))
    )
    await store.clear_wait(USER.with_user("user-9"), "user-9", CHAT_A)
    assert await store.client.get(user_set) == b"not a set"


# -- a crash in the middle of concurrent registers and clears -----------------------------------


async def assert_wait_indexes_whole(store: RedisSessionStore) -> None:
    """No scope pointer, SET member or hint names a missing blob; every hinted wait whose scope
    pointer names it is in its user's SET."""
    ns = f"{store.keys.namespace}:"
    keys = [k.decode() async for k in store.client.scan_iter(match=f"{ns}*", count=1000)]
    blobs = {
        k.removeprefix(store.keys.session_prefix) for k in keys if k.startswith(ns + "session:")
    }
    for name in keys:
        if name.startswith(store.keys.wait_scope_prefix):
            target = await store.client.get(name)
            assert isinstance(target, bytes)
            assert target.decode() in blobs, f"{name} names a missing session"
        elif name.startswith(store.keys.wait_user_prefix):
            for member in await store.client.smembers(name):
                assert isinstance(member, bytes)
                assert member.decode() in blobs, f"{name} lists a missing session"
        elif name.startswith(store.keys.wait_hint_prefix):
            key = name.removeprefix(store.keys.wait_hint_prefix)
            assert key in blobs, f"hint of the missing session {key}"
            hint = await store.client.get(name)
            assert isinstance(hint, bytes)
            scope_suffix = hint.decode().split(":", 1)[1]
            pointer = store.keys.wait_scope_prefix + scope_suffix
            if await store.client.get(pointer) == key.encode():
                slot_suffix = scope_suffix.rsplit(":", 1)[0]
                user_set = store.keys.wait_user_prefix + slot_suffix
                assert await store.client.sismember(user_set, key), f"{key} is not listed"


async def test_a_crash_mid_register_and_clear_leaves_every_acknowledged_wait_whole(
    namespace: str,
) -> None:
    """Redis killed while workers register and clear waits: after a restart every acknowledged
    wait is found by its scope and listed, and no index names a missing blob."""
    scopes = [ReplyScope(conversation=f"chat-{n}") for n in range(3)]
    with RedisServer(extra_args=["--appendonly", "yes", "--appendfsync", "always"]) as server:
        async with RedisSessionStore.from_url(
            server.url, namespace=namespace, connect_timeout=1, socket_timeout=1
        ) as store:
            # Per worker (one user each): the acknowledged state of each scope, and the scope
            # whose call was in flight at the crash (its outcome is unknown).
            acked: list[dict[int, str | None]] = [{} for _ in range(4)]
            unknown: list[int | None] = [None] * 4
            done = asyncio.Event()
            ops = [0]

            async def worker(w: int) -> None:
                rng, ctx, user = random.Random(w), USER.with_user(f"u{w}"), f"u{w}"
                for i in range(100_000):
                    n = rng.randrange(3)
                    unknown[w] = n
                    try:
                        if rng.random() < 0.7:
                            key = f"{user}-{i}"
                            ttl = rng.choice([None, 600])
                            data = make_data(ctx)
                            await store.register_wait(ctx, user, scopes[n], key, data, ttl=ttl)
                            acked[w][n] = key
                        else:
                            await store.clear_wait(ctx, user, scopes[n])
                            acked[w][n] = None
                    except UnavailableError:
                        return
                    unknown[w] = None
                    ops[0] += 1
                    if ops[0] >= 200:
                        done.set()

            tasks = [asyncio.create_task(worker(w)) for w in range(4)]
            async with asyncio.timeout(30):
                await done.wait()
                await asyncio.to_thread(server.stop)  # SIGKILL with calls in flight
                await asyncio.gather(*tasks)
                # Every worker stopped on the crash, with a call in flight.
                assert all(n is not None for n in unknown)
                await asyncio.to_thread(server.start)
                for w in range(4):
                    ctx, user = USER.with_user(f"u{w}"), f"u{w}"
                    listed = set(await store.list_waits_for_user(ctx, user))
                    for n, key in acked[w].items():
                        if n == unknown[w]:
                            continue
                        assert await store.find_wait_by_scope(ctx, user, scopes[n]) == key
                        if key is not None:
                            assert key in listed
                await assert_wait_indexes_whole(store)


async def test_owner_is_read_from_the_head_or_else_the_whole_blob(store: RedisSessionStore) -> None:
    """A large blob is judged from its head; a blob whose owner fields are not at the head (keys
    in another order, as another JSON writer may emit) is decoded whole: both are live waits,
    and a reordered blob of another user is still pruned."""
    big = make_data(USER, state=json.dumps({"pad": "x" * 100_000}))
    await store.register_wait(USER, "user-77", CHAT_A, "big", big)
    await store.register_wait(USER, "user-77", CHAT_B, "shuffled", make_data(USER))
    assert await store.find_wait_by_scope(USER, "user-77", CHAT_A) == "big"
    reordered = json.loads(encode_session_data(make_data(USER)))
    reordered["tenant_ctx"] = dict(reversed(list(reordered["tenant_ctx"].items())))
    await store.client.set(store.keys.session("shuffled"), json.dumps(reordered))
    assert await store.find_wait_by_scope(USER, "user-77", CHAT_B) == "shuffled"
    assert sorted(await store.list_waits_for_user(USER, "user-77")) == ["big", "shuffled"]
    reordered["tenant_ctx"]["user_id"] = "user-78"
    await store.client.set(store.keys.session("shuffled"), json.dumps(reordered))
    assert await store.find_wait_by_scope(USER, "user-77", CHAT_B) is None
    assert await store.list_waits_for_user(USER, "user-77") == ["big"]


async def test_updating_a_rust_wait_keeps_its_user_set_covering_it(
    redis_url: str, namespace: str
) -> None:
    """Under idle_ttl an update or touch of a wait a Rust writer registered (no hint) extends the
    user SET to cover the blob's new TTL; its scope pointer keeps Rust's TTL."""
    async with RedisSessionStore.from_url(redis_url, namespace=namespace, idle_ttl=900) as store:
        try:
            await store.register_wait(USER, "user-77", CHAT_A, "ours", make_data(USER), ttl=60)
            blob = encode_session_data(make_data(USER))
            await rust_register_wait(store, USER, "user-77", (CHAT_B, "rust"), blob, ttl_ms=30_000)
            user_set = "waits:user:dev:tenant-a:-:user-77"
            assert near(await pttl(store, user_set), 60_000)
            await store.update_session("rust", make_data(USER, node="n"))
            assert near(await pttl(store, "session:rust"), 900_000)
            assert near(await pttl(store, user_set), 900_000)
            scope_b = f"waits:scope:dev:tenant-a:-:user-77:{CHAT_B.scope_hash()}"
            assert near(await pttl(store, scope_b), 30_000)
            await store.client.pexpire(f"{namespace}:{user_set}", 1000)
            await store.touch_session("rust")
            assert near(await pttl(store, user_set), 900_000)
        finally:
            await drop_namespace(redis_url, namespace)
