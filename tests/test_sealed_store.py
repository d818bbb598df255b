"""Sealing at rest on a real Redis: what the server holds, what it refuses, how a plaintext
namespace migrates, and how the scripts keep the tenant fence over blobs they cannot read.

The conformance suite runs whole on the sealed rows of the backend table (`memory-sealed`,
`redis-sealed`); these tests look at the raw keys and at hostile bytes, which it does not.
"""

from __future__ import annotations

import os
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from greentic_session import (
    InternalError,
    InvalidInputError,
    RedisSessionStore,
    ReplyScope,
    SessionData,
    SessionStore,
    TenantCtx,
)
from greentic_session.backends.redis.keys import RedisKeys
from greentic_session.fence import lookup_slot, scope_of
from greentic_session.sealing import Encryption, Sealer
from tests.conftest import drop_namespace, make_data
from tests.test_due_waits import shift_deadlines

pytestmark = pytest.mark.loops("asyncio", "uvloop")

# Identifiers no encoding could produce by chance: each must be absent from a sealed blob.
SECRET_USER = "user-q7zx41"
ALICE = TenantCtx.new("prod", "tenant-vk83", team="team-hw27", user=SECRET_USER)
BOB = ALICE.with_user("user-b0b55")
FLOW = "flow.secret-m9p2"
STATE_MARKER = "PLAINTEXT-MARKER-5d1c"
KEY_1, KEY_2 = os.urandom(32), os.urandom(32)
CHAT = ReplyScope(conversation="conv-1")


def ring(*, accept_plaintext: bool = False, **keys: bytes) -> Encryption:
    """A key ring of `keys` whose last key is the active one."""
    return Encryption(keys, list(keys)[-1], accept_plaintext=accept_plaintext)


def chat_history(size: int = 4096) -> str:
    """A realistic chat history as JSON text of about `size` bytes: ids, ISO timestamps, roles
    and varied sentences (a fixed seed: the same text every run)."""
    rng = random.Random(7)
    words = [
        "order",
        "refund",
        "delivery",
        "address",
        "account",
        "password",
        "invoice",
        "tracking",
        "parcel",
        "weekend",
        "please",
        "thanks",
        "agent",
        "customer",
        "question",
        "answer",
        "update",
        "status",
        "today",
        "tomorrow",
        "issue",
        "payment",
        "card",
        "billing",
        "shipping",
        "store",
        "return",
        "policy",
        "warranty",
        "support",
        "ticket",
    ]
    turns, text = [], ""
    while len(text) < size:
        sentence = " ".join(rng.choice(words) for _ in range(rng.randint(6, 18)))
        turns.append(
            f'{{"id":"m-{rng.getrandbits(48):012x}","ts":"2026-12-05T{rng.randint(0, 23):02d}:'
            f'{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z","role":'
            f'"{rng.choice(["user", "assistant"])}","text":"{sentence.capitalize()}."}}'
        )
        text = '{"history":[' + ",".join(turns) + "]}"
    return text


def secret_data(ctx: TenantCtx = ALICE, *, state: str | None = None) -> SessionData:
    return make_data(ctx, flow=FLOW, state=state or f'{{"note":"{STATE_MARKER}"}}')


class Bench:
    """Stores on one namespace of the run's private redis-server, and a raw client on it."""

    def __init__(self, url: str, namespace: str, raw: aioredis.Redis) -> None:
        self.url, self.namespace, self.raw = url, namespace, raw
        self.keys = RedisKeys(namespace)
        self._opened: list[SessionStore] = []

    def open(self, namespace: str | None = None, **options: Any) -> RedisSessionStore:
        store = RedisSessionStore.from_url(
            self.url, namespace=namespace or self.namespace, **options
        )
        self._opened.append(store)
        return store

    async def blob(self, key: str) -> bytes:
        raw = await self.raw.get(self.keys.session(key))
        assert isinstance(raw, bytes)
        return raw

    async def aclose(self) -> None:
        for store in self._opened:
            await store.aclose()


@pytest.fixture
async def bench(redis_url: str, namespace: str) -> AsyncIterator[Bench]:
    raw = aioredis.Redis.from_url(redis_url)
    bench = Bench(redis_url, namespace, raw)
    try:
        yield bench
    finally:
        await bench.aclose()
        await drop_namespace(redis_url, namespace)
        await drop_namespace(redis_url, namespace + "-elsewhere")
        await raw.aclose()


def assert_clean(error: BaseException, *secrets: bytes) -> None:
    """`error` carries no chain, and neither its text nor its repr holds a user id, the
    plaintext marker or any of `secrets` (key material, in any spelling)."""
    assert error.__cause__ is None
    assert error.__context__ is None
    shown = f"{error} {error!r}"
    for word in (SECRET_USER, STATE_MARKER, FLOW):
        assert word not in shown
    for secret in secrets:
        for spelling in (secret.hex(), repr(secret), secret.decode("latin-1")):
            assert spelling not in shown


SEALINGS: list[Any] = [
    pytest.param({"encryption": ring(k1=KEY_1)}, id="encrypted"),
    pytest.param({"encryption": ring(k1=KEY_1), "compression": "zstd"}, id="encrypted+zstd"),
]


@pytest.mark.parametrize("options", SEALINGS)
async def test_a_sealed_blob_holds_no_owner_flow_or_state(
    bench: Bench, options: dict[str, Any]
) -> None:
    """On Redis, the raw bytes of a sealed session (and of a sealed wait) hold no plaintext
    marker, user id, tenant, team or flow id, and yet the store reads them back whole."""
    store = bench.open(**options)
    key = await store.create_session(ALICE, secret_data())
    wait = await store.create_session(ALICE, secret_data())
    await store.register_wait(ALICE, SECRET_USER, CHAT, wait, secret_data())
    for name in (key, wait):
        raw = await bench.blob(name)
        assert raw[0] == 0xC5
        for word in (SECRET_USER, "tenant-vk83", "team-hw27", FLOW, STATE_MARKER, "tenant_ctx"):
            assert word.encode() not in raw
        assert await store.get_session(name) == secret_data()


@pytest.mark.parametrize("options", SEALINGS)
async def test_a_blob_moved_under_another_key_or_namespace_is_refused(
    bench: Bench, options: dict[str, Any]
) -> None:
    """The same sealed bytes under another session key, or under the same key in another
    namespace, are refused with an InternalError naming the key, not a byte of plaintext."""
    store = bench.open(**options)
    key = await store.create_session(ALICE, secret_data())
    raw = await bench.blob(key)
    await bench.raw.set(bench.keys.session("moved"), raw)
    with pytest.raises(InternalError, match=r"'moved'.*moved from another session key") as moved:
        await store.get_session("moved")
    assert_clean(moved.value, KEY_1)
    elsewhere = bench.namespace + "-elsewhere"
    await bench.raw.set(RedisKeys(elsewhere).session(key), raw)
    with pytest.raises(InternalError, match="does not verify") as other:
        await bench.open(elsewhere, **options).get_session(key)
    assert_clean(other.value, KEY_1)


async def test_every_tampered_byte_is_refused(bench: Bench) -> None:
    """Flipping one bit anywhere in a sealed blob (magic, version, flags, owner digest, key id,
    salt, nonce, ciphertext, tag) makes every read refuse it with InternalError."""
    store = bench.open(encryption=ring(k1=KEY_1), compression="zstd")
    key = await store.create_session(ALICE, secret_data())
    raw = await bench.blob(key)
    positions = [*range(70), *range(70, len(raw), 37), len(raw) - 1]
    for position in positions:
        tampered = bytearray(raw)
        tampered[position] ^= 0x01
        await bench.raw.set(bench.keys.session(key), bytes(tampered))
        with pytest.raises(InternalError) as refused:
            await store.get_entry(key)
        assert_clean(refused.value, KEY_1)


async def test_the_server_refuses_an_update_over_another_owners_sealed_blob(
    bench: Bench,
) -> None:
    """An update without a revision reads nothing on the client, so the refusal of a sealed
    blob of another owner comes from the script comparing owner digests: the fence holds on the
    server, and the stored bytes stay as they were."""
    store = bench.open(encryption=ring(k1=KEY_1))
    key = await store.create_session(BOB, secret_data(BOB))
    before = await bench.blob(key)
    with pytest.raises(InvalidInputError, match=r"tenant fence \(user\)"):
        await store.update_session(key, secret_data(ALICE))
    assert await bench.blob(key) == before
    # A blob sealed for another namespace's owner digest is another owner too.
    foreign = Sealer(bench.namespace + "-elsewhere", encryption=ring(k1=KEY_1))
    plain = (await bench.raw.get(bench.keys.session(key))) or b""
    assert plain  # the blob is there
    json = Sealer(bench.namespace, encryption=ring(k1=KEY_1)).open(
        before, session_key=key, limit=None
    )
    forged = foreign.seal(
        json, session_key=key, owner_digest=foreign.owner_digest(scope_of(BOB.with_user(None)))
    )
    await bench.raw.set(bench.keys.session(key), forged)
    with pytest.raises(InvalidInputError, match="tenant fence"):
        await store.update_session(key, secret_data(BOB))
    assert await bench.blob(key) == forged


async def test_plaintext_is_refused_then_migrated_with_accept_plaintext(bench: Bench) -> None:
    """Plaintext written by a store without options is refused by an encrypting store; with
    accept_plaintext=True it is read, the next write seals it, and the sealed session then
    behaves fully for a strict store (its pointer is recorded: remove clears it)."""
    plain = bench.open()
    key = await plain.create_session(ALICE, secret_data())
    assert (await bench.blob(key)).startswith(b"{")
    strict = bench.open(encryption=ring(k1=KEY_1))
    with pytest.raises(InternalError, match="plaintext JSON") as refused:
        await strict.get_session(key)
    assert_clean(refused.value, KEY_1)
    with pytest.raises(InternalError, match="plaintext JSON"):
        await strict.find_by_user(ALICE, SECRET_USER)
    migrating = bench.open(encryption=ring(k1=KEY_1, accept_plaintext=True))
    entry = await migrating.find_entry(ALICE, SECRET_USER)
    assert entry is not None
    assert entry.data == secret_data()
    await migrating.update_with(key, lambda data: data)
    assert (await bench.blob(key))[0] == 0xC5
    assert await strict.get_session(key) == secret_data()
    await strict.remove_session(key)
    assert await strict.find_by_user(ALICE, SECRET_USER) is None
    assert await bench.raw.keys(f"{bench.namespace}:*") == []


async def test_a_migrated_wait_keeps_working_for_a_strict_store(bench: Bench) -> None:
    """A wait registered in plaintext and sealed by an update is found, listed and cleared by a
    strict encrypting store, whose scripts now judge it by its owner digest."""
    plain = bench.open()
    key = plain.session_key_for(ALICE, SECRET_USER, "the-wait")
    await plain.register_wait(ALICE, SECRET_USER, CHAT, key, secret_data())
    migrating = bench.open(encryption=ring(k1=KEY_1, accept_plaintext=True))
    await migrating.update_session(key, secret_data(state='{"step":2}'))
    strict = bench.open(encryption=ring(k1=KEY_1))
    assert await strict.find_wait_by_scope(ALICE, SECRET_USER, CHAT) == key
    assert await strict.list_waits_for_user(ALICE, SECRET_USER) == [key]
    assert await strict.find_wait_by_scope(BOB, "user-b0b55", CHAT) is None
    await strict.clear_wait(ALICE, SECRET_USER, CHAT)
    assert await strict.get_session(key) is None
    assert await bench.raw.keys(f"{bench.namespace}:*") == []


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"compression": "zstd"}, id="zstd"),
        pytest.param({"compression": "zstd", "encryption": ring(k1=KEY_1)}, id="encrypted+zstd"),
    ],
)
async def test_compression_at_least_halves_a_realistic_chat_history(
    bench: Bench, options: dict[str, Any]
) -> None:
    """A session holding a realistic 4 KiB chat history is stored in at most half the bytes of
    its plain JSON, and reads back equal."""
    data = secret_data(state=chat_history())
    plain_key = await bench.open().create_session(ALICE, data)
    store = bench.open(**options)
    key = await store.create_session(ALICE, data)
    plain_size, sealed_size = len(await bench.blob(plain_key)), len(await bench.blob(key))
    assert plain_size > 4096
    assert sealed_size * 2 <= plain_size, (sealed_size, plain_size)
    assert await store.get_session(key) == data


async def test_max_blob_bytes_counts_the_uncompressed_encoding(bench: Bench) -> None:
    """A session whose JSON is over max_blob_bytes is refused though it would compress far
    below it, and nothing is written."""
    store = bench.open(compression="zstd", max_blob_bytes=2048)
    with pytest.raises(InvalidInputError, match="max_blob_bytes=2048"):
        await store.create_session(ALICE, secret_data(state='{"pad":"' + "a" * 4096 + '"}'))
    assert await bench.raw.keys(f"{bench.namespace}:*") == []


async def test_rotation_reads_old_keys_and_writes_the_active_one(bench: Bench) -> None:
    """Ring k1 writes; ring {k1, k2 active} reads those blobs and writes under k2; ring {k2}
    then reads what was rewritten and refuses, naming k1, what was not."""
    first = bench.open(encryption=ring(k1=KEY_1))
    rewritten = await first.create_session(ALICE, secret_data())
    left = await first.create_session(BOB, secret_data(BOB))
    both = bench.open(encryption=ring(k1=KEY_1, k2=KEY_2))
    assert await both.get_session(left) == secret_data(BOB)
    await both.update_with(rewritten, lambda data: data)
    assert b"\x02k2" in (await bench.blob(rewritten))[19:22]
    second = bench.open(encryption=ring(k2=KEY_2))
    assert await second.get_session(rewritten) == secret_data()
    with pytest.raises(InternalError, match="key id 'k1', which is not in the key ring") as old:
        await second.get_session(left)
    assert_clean(old.value, KEY_1, KEY_2)


async def test_a_ring_with_another_key_under_the_same_id_is_refused(bench: Bench) -> None:
    """A blob sealed under k1 is refused by a ring whose k1 is another key, and the error shows
    neither key."""
    key = await bench.open(encryption=ring(k1=KEY_1)).create_session(ALICE, secret_data())
    impostor = bench.open(encryption=ring(k1=KEY_2))
    with pytest.raises(InternalError, match="does not verify") as refused:
        await impostor.get_session(key)
    assert_clean(refused.value, KEY_1, KEY_2)


async def test_a_store_without_options_refuses_to_overwrite_a_sealed_blob(bench: Bench) -> None:
    """A plain store (Rust's bytes) neither reads an encrypted blob nor writes over it: both are
    InternalError and the sealed bytes stay."""
    key = await bench.open(encryption=ring(k1=KEY_1)).create_session(ALICE, secret_data())
    before = await bench.blob(key)
    plain = bench.open()
    with pytest.raises(InternalError, match="no key ring"):
        await plain.get_session(key)
    with pytest.raises(InternalError, match=r"sealed \(encrypted or compressed\)"):
        await plain.update_session(key, secret_data())
    assert await bench.blob(key) == before


def test_the_store_repr_shows_key_ids_never_keys() -> None:
    """repr of a sealing store names its key ids and options, never a key in any spelling."""
    store = RedisSessionStore.from_url(
        "redis://127.0.0.1:1/0", encryption=ring(k1=KEY_1, k2=KEY_2), compression="zstd"
    )
    shown = repr(store)
    assert "'k1'" in shown
    assert "'k2'" in shown
    assert "zstd" in shown
    for secret in (KEY_1, KEY_2):
        assert secret.hex() not in shown
        assert repr(secret) not in shown


async def test_a_claim_drops_a_sealed_wait_whose_blob_another_owner_holds(
    bench: Bench, redis_url: str
) -> None:
    """A claim cannot read a sealed blob's owner: it hands the wait to the client, which
    opens it, finds another owner's session under the wait's key, and drops the deadline
    instead of returning it; a sealed wait of its own owner is returned whole."""
    enc = ring(k1=KEY_1)
    store = bench.open(encryption=enc)
    ours = store.session_key_for(ALICE, SECRET_USER, "ours")
    hijacked = store.session_key_for(ALICE, SECRET_USER, "hijacked")
    for key in (ours, hijacked):
        await store.register_wait(
            ALICE, SECRET_USER, ReplyScope(conversation=key), key, secret_data(), due_in=60
        )
    sealer = Sealer(bench.namespace, encryption=enc)
    other = make_data(BOB)
    from greentic_session.codec import encode_session_data

    forged = sealer.seal(
        encode_session_data(other),
        session_key=hijacked,
        owner_digest=sealer.owner_digest(scope_of(BOB)),
    )
    await bench.raw.set(bench.keys.session(hijacked), forged, keepttl=True)
    await shift_deadlines(redis_url, bench.namespace, 120)
    claimed = await store.claim_due_waits()
    assert [due.key for due in claimed] == [ours]
    assert claimed[0].entry.data == secret_data()
    assert await store.claim_due_waits() == []
    assert not await bench.raw.exists(bench.keys.due(hijacked))


async def test_a_claimer_lacking_the_key_leaves_the_wait_leased_not_dropped(
    bench: Bench, redis_url: str
) -> None:
    """A deadline claimer whose ring lacks the key a wait is sealed under (a rotation under
    way) neither returns nor drops it: the wait stays leased and, once the lease ends, a
    claimer holding the key gets it, on attempt 2."""
    holder = bench.open(encryption=ring(k1=KEY_1))
    key = holder.session_key_for(ALICE, SECRET_USER, "rotating")
    await holder.register_wait(ALICE, SECRET_USER, CHAT, key, secret_data(), due_in=60)
    await shift_deadlines(redis_url, bench.namespace, 120)
    lacking = bench.open(encryption=ring(k2=KEY_2))
    assert await lacking.claim_due_waits(lease=30) == []
    assert await bench.raw.exists(bench.keys.due(key))
    assert await holder.claim_due_waits() == []  # leased meanwhile
    await shift_deadlines(redis_url, bench.namespace, 60)
    [due] = await holder.claim_due_waits()
    assert (due.key, due.attempt) == (key, 2)
    assert due.entry.data == secret_data()


async def test_erase_reports_sealed_sessions_it_cannot_judge(bench: Bench) -> None:
    """An erasure by a store whose ring lacks a key erases what it can judge, leaves a session
    sealed under the missing key, and raises InternalError saying how many and under which key
    id (never looking complete); a store holding the key then erases it."""
    old = bench.open(encryption=ring(k1=KEY_1))
    hidden = await old.create_session(ALICE, secret_data())
    new = bench.open(encryption=ring(k2=KEY_2))
    seen = await new.create_session(ALICE, secret_data())
    operator = ALICE.with_user(None)
    with pytest.raises(InternalError, match=r"erased 1 session.*judge 1 sealed.*'k1'") as raised:
        await new.erase_user(operator, SECRET_USER)
    assert_clean(raised.value, KEY_1, KEY_2)
    assert await new.get_session(seen) is None
    assert await old.get_session(hidden) == secret_data()
    both = bench.open(encryption=ring(k1=KEY_1, k2=KEY_2))
    assert await both.erase_user(operator, SECRET_USER) == 1
    assert await bench.raw.keys(f"{bench.namespace}:*") == []


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({}, id="plain"),
        pytest.param({"encryption": ring(k1=KEY_1)}, id="strict-encrypted"),
    ],
)
async def test_erase_judges_compressed_only_blobs_in_any_store(
    bench: Bench, options: dict[str, Any]
) -> None:
    """A compressed-only session (which hides nothing) is erased by a store that does not read
    that form, a plain one or a strictly encrypting one, and another user's stays."""
    compressed = bench.open(compression="zstd")
    mine = await compressed.create_session(ALICE, secret_data())
    theirs = await compressed.create_session(BOB, secret_data(BOB))
    assert await bench.open(**options).erase_user(ALICE.with_user(None), SECRET_USER) == 1
    assert await compressed.get_session(mine) is None
    assert await compressed.get_session(theirs) == secret_data(BOB)


async def test_a_wait_sealing_a_plaintext_session_records_its_pointer(bench: Bench) -> None:
    """register_wait by a migrating store over a plaintext session with a pointer (no expiry
    options) records the pointer as it seals the blob, so remove later clears the pointer."""
    key = await bench.open().create_session(ALICE, secret_data())
    migrating = bench.open(encryption=ring(k1=KEY_1, accept_plaintext=True))
    await migrating.register_wait(ALICE, SECRET_USER, CHAT, key, secret_data())
    assert (await bench.blob(key))[0] == 0xC5
    await migrating.remove_session(key)
    assert await bench.raw.keys(f"{bench.namespace}:*") == []


@pytest.mark.parametrize(
    "expiry",
    [pytest.param({"idle_ttl": 60}, id="idle"), pytest.param({"max_lifetime": 600}, id="lifetime")],
)
async def test_a_lost_pointer_record_is_repaired_by_the_next_write(
    bench: Bench, expiry: dict[str, Any]
) -> None:
    """When a sealed session's meta key is lost (evicted), a touch cannot rebuild it (the owner
    is hidden), but the next update writes it from the owner's suffix again, so a remove then
    leaves no pointer behind."""
    store = bench.open(encryption=ring(k1=KEY_1), **expiry)
    key = await store.create_session(ALICE, secret_data())
    await bench.raw.delete(bench.keys.meta(key))
    await store.touch_session(key)
    await store.update_session(key, secret_data(state='{"step":2}'))
    assert await bench.raw.get(bench.keys.meta(key)) not in (None, b"")
    await store.remove_session(key)
    assert await bench.raw.keys(f"{bench.namespace}:*") == []


async def test_a_plain_store_says_a_compressed_blob_is_sealed(bench: Bench) -> None:
    """A store without options reads a compressed-only blob, but its scripts cannot judge one:
    an update or a wait over it is an InternalError saying the blob is sealed and what to do,
    and the stored bytes stay."""
    key = await bench.open(compression="zstd").create_session(ALICE, secret_data())
    before = await bench.blob(key)
    plain = bench.open()
    assert await plain.get_session(key) == secret_data()
    with pytest.raises(InternalError, match=r"sealed .* neither option"):
        await plain.update_session(key, secret_data())
    with pytest.raises(InternalError, match=r"sealed .* neither option"):
        await plain.register_wait(ALICE, SECRET_USER, CHAT, key, secret_data())
    assert await bench.blob(key) == before


# -- hostile sealed bytes --------------------------------------------------------------------

HOSTILE_RING = ring(k1=KEY_1)
_HEADER = bytes((0xC5, 1, 0x03))  # magic, version 1, compressed and encrypted
_ANY_DIGEST = bytes(16)


def hostile_blobs(namespace: str) -> dict[str, bytes]:
    """Bytes that look sealed to a script or a reader but cannot be trusted, by what is wrong."""
    sealer = Sealer(namespace, encryption=HOSTILE_RING)
    alice = sealer.owner_digest(scope_of(ALICE))
    body = os.urandom(64)
    return {
        "truncated": _HEADER + bytes(5),
        "future-version": bytes((0xC5, 2, 0x03)) + alice + b"\x02k1" + body,
        "unknown-flags": bytes((0xC5, 1, 0x83)) + alice + b"\x02k1" + body,
        "key-id-past-the-end": _HEADER + alice + b"\xff" + b"k1",
        "invalid-key-id": _HEADER + alice + b"\x03k 1" + body,
        "unknown-key-id": _HEADER + alice + b"\x02zz" + body,
        "key-id-but-not-encrypted": bytes((0xC5, 1, 0x01)) + alice + b"\x02k1" + body,
        "encrypted-without-key-id": _HEADER + alice + b"\x00" + body,
        "foreign-digest": _HEADER + _ANY_DIGEST + b"\x02k1" + body,
        # Alice's digest (a script judges it hers) over a body no key opens.
        "forged-body": _HEADER + alice + b"\x02k1" + body,
    }


# The owner digest is the writer's: the script lets Alice's update replace the unreadable body.
REPLACEABLE = {"forged-body"}
HOSTILE_NAMES = list(hostile_blobs("x"))


@pytest.mark.parametrize("name", HOSTILE_NAMES)
async def test_hostile_sealed_bytes_are_typed_errors_and_stay_unless_replaced(
    bench: Bench, name: str
) -> None:
    """Whatever sealed-looking bytes a blob key holds, every call of an encrypting store answers
    with InternalError (naming the key, holding no plaintext or key) or the safe answer, never
    a raw exception; no write replaces them, except an update by the owner their digest names."""
    store = bench.open(encryption=HOSTILE_RING, compression="zstd")
    blob = hostile_blobs(bench.namespace)[name]
    alice_slot = lookup_slot(ALICE, SECRET_USER)
    await bench.raw.set(bench.keys.session("bad"), blob)
    await bench.raw.set(store.keys.user(alice_slot), "bad")
    await bench.raw.set(store.keys.wait_scope(alice_slot, CHAT.scope_hash()), "bad")
    await bench.raw.sadd(store.keys.wait_user(alice_slot), "bad")
    for read in (store.get_session("bad"), store.get_entry("bad")):
        with pytest.raises(InternalError, match="'bad'") as refused:
            await read
        assert_clean(refused.value, KEY_1)
    with pytest.raises(InternalError):
        await store.find_by_user(ALICE, SECRET_USER)
    with pytest.raises(InternalError):
        await store.find_or_create(ALICE, SECRET_USER, secret_data)
    for lookup in (
        store.find_wait_by_scope(ALICE, SECRET_USER, CHAT),
        store.list_waits_for_user(ALICE, SECRET_USER),
    ):
        try:
            found = await lookup
        except InternalError as exc:
            assert_clean(exc, KEY_1)
        else:  # judged: another owner's (pruned), or Alice's by its digest
            assert found in (None, [], "bad", ["bad"])
    try:
        await store.erase_user(BOB.with_user(None), "user-b0b55")
    except InternalError as exc:
        assert_clean(exc, KEY_1)
    assert await bench.blob("bad") == blob
    if name in REPLACEABLE:
        await store.update_session("bad", secret_data())
        assert await store.get_session("bad") == secret_data()
        return
    with pytest.raises((InternalError, InvalidInputError)) as refused_write:
        await store.update_session("bad", secret_data())
    assert_clean(refused_write.value, KEY_1)
    with pytest.raises((InternalError, InvalidInputError)):
        await store.register_wait(ALICE, SECRET_USER, CHAT, "bad", secret_data())
    assert await bench.blob("bad") == blob
    await store.remove_session("bad")
    assert not await bench.raw.exists(bench.keys.session("bad"))


async def test_a_compression_bomb_is_refused_without_being_inflated(bench: Bench) -> None:
    """A compressed-only blob whose zstd frame inflates to 64 MiB is refused by a store whose
    max_blob_bytes is 1 MiB, as over the limit, before more than the limit is produced."""
    from backports import zstd  # the extra the store itself needs

    frame = zstd.compress(b"{" + b" " * (64 << 20))
    sealer = Sealer(bench.namespace, compression="zstd")
    stored = sealer.seal(frame, session_key="bomb", owner_digest=_ANY_DIGEST)
    # `seal` compressed the frame again; store the bomb's own frame under a real header.
    bomb = stored[:20] + frame
    await bench.raw.set(bench.keys.session("bomb"), bomb)
    store = bench.open(compression="zstd", max_blob_bytes=1 << 20)
    with pytest.raises(InternalError, match="max_blob_bytes=1048576") as refused:
        await store.get_session("bomb")
    assert_clean(refused.value)
