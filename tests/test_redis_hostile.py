"""Hostile stored data on Redis: whatever a pointer or blob key holds, every call answers with
`InternalError` (naming the session key where there is one) or the safe answer, never a raw
exception, and a write over unusable data is refused."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from greentic_session import (
    InternalError,
    InvalidInputError,
    NotFoundError,
    RedisSessionStore,
    SessionError,
    encode_session_data,
)
from greentic_session.fence import lookup_slot
from tests.conftest import drop_namespace, make_data
from tests.identities import ALICE

ALICE_SLOT = lookup_slot(ALICE, "alice")

BLOBS = {
    "not-utf8": b'{"tenant_ctx":{"env":"\xff\xfe"}}',
    "deep": b"[" * 100_000 + b"]" * 100_000,
    "not-json": b"{nope",
    "empty": b"",
    "wrong-shape": b'{"tenant_ctx":[1,2,3]}',
    "huge-int": encode_session_data(make_data(ALICE)).replace(
        b'"attempt":0', b'"attempt":1' + b"0" * 400
    ),
    "duplicate-owner": encode_session_data(make_data(ALICE)).replace(
        b'"user_id":"alice"', b'"user_id":"alice","user_id":"mallory"'
    ),
    "duplicate-owner-last-wins": encode_session_data(make_data(ALICE)).replace(
        b'"user_id":"alice"', b'"user_id":"mallory","user_id":"alice"'
    ),
    "escaped-owner-key": encode_session_data(make_data(ALICE)).replace(
        b'"user_id":"alice"', b'"user_id":"mallory","user\\u005fid":"alice"'
    ),
}
# Unusable for the decoder, yet with one unambiguous owner: an update by that owner may replace it.
REPAIRABLE = {"huge-int"}


@pytest.fixture
async def store(redis_url: str, namespace: str) -> AsyncIterator[RedisSessionStore]:
    async with RedisSessionStore.from_url(redis_url, namespace=namespace) as opened:
        yield opened
    await drop_namespace(redis_url, namespace)


@pytest.mark.parametrize("name", BLOBS)
async def test_a_hostile_blob_is_an_internal_error_naming_the_key(
    store: RedisSessionStore, name: str
) -> None:
    """get, get_entry and find raise InternalError naming the key; a write is refused unless the
    blob has one unambiguous owner, the writer's (then it repairs the blob)."""
    blob = BLOBS[name]
    await store.client.set(store.keys.session("bad"), blob)
    await store.client.set(store.keys.user(ALICE_SLOT), "bad")
    for call in (
        store.get_session("bad"),
        store.get_entry("bad"),
        store.find_by_user(ALICE, "alice"),
    ):
        with pytest.raises(InternalError, match="'bad'"):
            await call
    if name in REPAIRABLE:
        await store.update_session("bad", make_data(ALICE))
        assert await store.get_session("bad") == make_data(ALICE)
        return
    with pytest.raises((InternalError, InvalidInputError)):
        await store.update_session("bad", make_data(ALICE))
    entry_error = None
    try:
        await store.find_or_create(ALICE, "alice", lambda: make_data(ALICE))
    except SessionError as exc:
        entry_error = exc
    assert isinstance(entry_error, InternalError)
    assert await store.client.get(store.keys.session("bad")) == blob  # nothing overwrote it


ALICE_SLOT = __import__("greentic_session.fence", fromlist=["lookup_slot"]).lookup_slot(
    ALICE, "alice"
)


@pytest.mark.parametrize(
    "pointer",
    [b"\xff\xfe", b"", b"x" * 100_000, b"no-such-session"],
    ids=["not-utf8", "empty", "long", "dangling"],
)
async def test_a_hostile_pointer_is_safe(store: RedisSessionStore, pointer: bytes) -> None:
    """A pointer holding any bytes gives None (dangling, then cleared) or InternalError."""
    await store.client.set(store.keys.user(ALICE_SLOT), pointer)
    outcome: object
    try:
        outcome = await store.find_by_user(ALICE, "alice")
    except InternalError as exc:
        outcome = exc
    if isinstance(outcome, InternalError):
        assert "alice" not in outcome.message
    else:
        assert outcome is None


async def test_a_pointer_of_the_wrong_type_is_an_internal_error(store: RedisSessionStore) -> None:
    """A pointer key holding a list raises InternalError that names no user."""
    await store.client.rpush(store.keys.user(ALICE_SLOT), "x")
    for call in (
        store.find_by_user(ALICE, "alice"),
        store.find_or_create(ALICE, "alice", lambda: make_data(ALICE)),
    ):
        with pytest.raises(InternalError) as raised:
            await call
        assert "alice" not in raised.value.message


async def test_remove_of_a_hostile_blob_deletes_it_and_keeps_a_foreign_pointer(
    store: RedisSessionStore,
) -> None:
    """remove deletes an unusable blob; a pointer naming another session survives."""
    await store.client.set(store.keys.session("bad"), BLOBS["not-json"])
    await store.remove_session("bad")
    assert await store.client.exists(store.keys.session("bad")) == 0
    with pytest.raises(NotFoundError):
        await store.remove_session("bad")


async def test_the_lua_fast_path_and_the_decoder_agree_on_a_repeated_owner(
    store: RedisSessionStore,
) -> None:
    """A blob whose owner field repeats with another value is refused by reads and writes alike,
    whichever copy comes first: no script acts on an owner another reader would not see."""
    blob = BLOBS["duplicate-owner-last-wins"]
    json.loads(blob)  # valid JSON for lenient readers (Python keeps the last value)
    await store.client.set(store.keys.session("twice"), blob)
    with pytest.raises(InternalError):
        await store.get_session("twice")
    with pytest.raises((InternalError, InvalidInputError)):
        await store.update_session("twice", make_data(ALICE))
    assert await store.client.get(store.keys.session("twice")) == blob
