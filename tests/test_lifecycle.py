"""The conformance suite's lifecycle rules: revisions, compare-and-set, update_with, keyed create,
find_or_create, touch and expiry, run against every backend in the table."""

from __future__ import annotations

import json
from collections import Counter

import anyio
import anyio.lowlevel
import msgspec
import pytest

from greentic_session import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    ReplyScope,
    SessionData,
    SessionEntry,
    SessionStore,
    TenantCtx,
)
from greentic_session.mapping import telegram_update_to_session_key
from tests.conftest import Lifecycle, gather, make_data
from tests.identities import ALICE, NO_USER


def appended(data: SessionData, item: str) -> SessionData:
    """`data` whose context_json list has `item` appended."""
    items = json.loads(data.context_json)
    return msgspec.structs.replace(data, context_json=json.dumps([*items, item]))


# -- revisions and compare-and-set -----------------------------------------------------------


async def test_get_entry_carries_key_data_and_a_revision(store: SessionStore) -> None:
    """get_entry returns the key, the stored data and a non-empty str revision; None if absent."""
    data = make_data(ALICE)
    key = await store.create_session(ALICE, data)
    entry = await store.get_entry(key)
    assert entry is not None
    assert (entry.key, entry.data) == (key, data)
    assert isinstance(entry.revision, str)
    assert entry.revision
    assert await store.get_entry("no-such-session") is None


async def test_find_entry_agrees_with_find_by_user_and_get_entry(store: SessionStore) -> None:
    """find_entry returns what find_by_user finds, with the revision get_entry reports."""
    key = await store.create_session(ALICE, make_data(ALICE))
    found = await store.find_entry(ALICE, "alice")
    assert found == await store.get_entry(key)
    assert found is not None
    assert (found.key, found.data) == await store.find_by_user(ALICE, "alice")
    assert await store.find_entry(ALICE, "bob") is None


async def test_a_write_changes_the_revision(store: SessionStore) -> None:
    """Every update that changes the data gives the session a new revision."""
    key = await store.create_session(ALICE, make_data(ALICE, state="[]"))
    before = await store.get_entry(key)
    assert before is not None
    await store.update_session(key, make_data(ALICE, state='["a"]'))
    after = await store.get_entry(key)
    assert after is not None
    assert after.revision != before.revision


async def test_compare_and_set_writes_only_from_the_current_revision(store: SessionStore) -> None:
    """An update with the current revision lands; one with a stale revision is a conflict."""
    key = await store.create_session(ALICE, make_data(ALICE, state="[]"))
    first = await store.get_entry(key)
    assert first is not None
    one = make_data(ALICE, state='["one"]')
    await store.update_session(key, one, expected_revision=first.revision)
    with pytest.raises(ConflictError):
        await store.update_session(
            key, make_data(ALICE, state='["two"]'), expected_revision=first.revision
        )
    assert await store.get_session(key) == one


async def test_compare_and_set_of_a_missing_session_is_not_found(store: SessionStore) -> None:
    """A compare-and-set on a removed session is NotFound, and does not bring it back."""
    key = await store.create_session(ALICE, make_data(ALICE))
    entry = await store.get_entry(key)
    assert entry is not None
    await store.remove_session(key)
    with pytest.raises(NotFoundError):
        await store.update_session(key, make_data(ALICE), expected_revision=entry.revision)
    assert await store.get_session(key) is None


async def test_compare_and_set_keeps_the_fence(store: SessionStore) -> None:
    """A compare-and-set that would change the owner is refused like any update."""
    key = await store.create_session(ALICE, make_data(ALICE))
    entry = await store.get_entry(key)
    assert entry is not None
    bob = ALICE.with_user("bob")
    with pytest.raises(InvalidInputError):
        await store.update_session(key, make_data(bob), expected_revision=entry.revision)
    assert await store.get_entry(key) == entry


async def test_of_100_racing_compare_and_sets_exactly_one_wins(store: SessionStore) -> None:
    """100 concurrent compare-and-sets from one revision: one lands, 99 raise ConflictError."""
    key = await store.create_session(ALICE, make_data(ALICE, state="[]"))
    entry = await store.get_entry(key)
    assert entry is not None

    async def write(i: int) -> str:
        try:
            data = make_data(ALICE, state=f'["{i}"]')
            await store.update_session(key, data, expected_revision=entry.revision)
        except ConflictError:
            return "conflict"
        return "won"

    outcomes = Counter(await gather(*(write(i) for i in range(100))))
    assert outcomes == {"won": 1, "conflict": 99}


# -- update_with -----------------------------------------------------------------------------


async def test_update_with_applies_the_change_and_returns_the_new_entry(
    store: SessionStore,
) -> None:
    """update_with writes change(data) and returns it with the revision the store now has."""
    key = await store.create_session(ALICE, make_data(ALICE, state="[]"))
    entry = await store.update_with(key, lambda data: appended(data, "hi"))
    assert isinstance(entry, SessionEntry)
    assert json.loads(entry.data.context_json) == ["hi"]
    assert await store.get_entry(key) == entry


async def test_update_with_takes_an_async_change(store: SessionStore) -> None:
    """An async change function is awaited."""
    key = await store.create_session(ALICE, make_data(ALICE, state="[]"))

    async def change(data: SessionData) -> SessionData:
        await anyio.lowlevel.checkpoint()
        return appended(data, "async")

    entry = await store.update_with(key, change)
    assert json.loads(entry.data.context_json) == ["async"]


async def test_concurrent_update_withs_lose_no_change(store: SessionStore) -> None:
    """50 concurrent update_with calls on one session all land (conflicts are retried)."""
    key = await store.create_session(ALICE, make_data(ALICE, state="[]"))

    async def change(data: SessionData, i: int) -> SessionData:
        await anyio.lowlevel.checkpoint()  # let the others read the same revision: force conflicts
        return appended(data, str(i))

    async def one(i: int) -> None:
        await store.update_with(key, lambda data: change(data, i), attempts=200)

    await gather(*(one(i) for i in range(50)))
    stored = await store.get_session(key)
    assert stored is not None
    assert sorted(json.loads(stored.context_json), key=int) == [str(i) for i in range(50)]


async def test_update_with_gives_up_after_its_attempts(store: SessionStore) -> None:
    """When every try conflicts, update_with raises ConflictError after exactly `attempts` tries."""
    key = await store.create_session(ALICE, make_data(ALICE, state="[]"))
    calls = 0

    async def meddling(data: SessionData) -> SessionData:
        nonlocal calls
        calls += 1
        await store.update_session(key, appended(data, f"other-{calls}"))  # a writer in between
        return appended(data, "mine")

    with pytest.raises(ConflictError):
        await store.update_with(key, meddling, attempts=3)
    assert calls == 3
    stored = await store.get_session(key)
    assert stored is not None
    assert "mine" not in json.loads(stored.context_json)


async def test_a_lost_update_with_names_the_revision_not_the_data(store: SessionStore) -> None:
    """The ConflictError of an update_with that lost its race names the revision it read, never
    the stored session's data or user."""
    key = await store.create_session(ALICE, make_data(ALICE, state='["private-note"]'))
    read = await store.get_entry(key)
    assert read is not None

    async def meddling(data: SessionData) -> SessionData:
        await store.update_session(key, appended(data, "other"))  # a writer in between
        return appended(data, "mine")

    with pytest.raises(ConflictError) as caught:
        await store.update_with(key, meddling, attempts=1)
    message = str(caught.value)
    assert read.revision in message
    assert "alice" not in message
    assert "private-note" not in message


async def test_update_with_on_a_missing_session_never_calls_change(store: SessionStore) -> None:
    """update_with on an unknown key raises NotFoundError without calling change."""

    def change(data: SessionData) -> SessionData:
        raise AssertionError("change must not be called")

    with pytest.raises(NotFoundError):
        await store.update_with("no-such-session", change)


@pytest.mark.parametrize("attempts", [0, -1, True, 1.5])
async def test_update_with_refuses_a_bad_attempts_count(
    store: SessionStore, attempts: object
) -> None:
    """attempts must be an int of at least 1."""
    key = await store.create_session(ALICE, make_data(ALICE))
    with pytest.raises(InvalidInputError):
        await store.update_with(key, lambda data: data, attempts=attempts)  # type: ignore[arg-type]


# -- create with a caller's key --------------------------------------------------------------


async def test_create_with_a_mapping_key_creates_it_once(store: SessionStore) -> None:
    """A mapping helper's key can be created once; a second create conflicts and writes nothing."""
    key = telegram_update_to_session_key("bot", 42, 7)
    first = make_data(ALICE, state='["first"]')
    assert await store.create_session(ALICE, first, key=key) == key
    assert await store.get_session(key) == first
    assert await store.find_by_user(ALICE, "alice") == (key, first)
    with pytest.raises(ConflictError):
        await store.create_session(ALICE, make_data(ALICE, state='["second"]'), key=key)
    assert await store.get_session(key) == first


async def test_create_with_a_key_after_remove_succeeds(store: SessionStore) -> None:
    """A caller's key is free again once its session is removed."""
    await store.create_session(ALICE, make_data(ALICE), key="chat-1")
    await store.remove_session("chat-1")
    second = make_data(ALICE, state='["again"]')
    assert await store.create_session(ALICE, second, key="chat-1") == "chat-1"
    assert await store.get_session("chat-1") == second


@pytest.mark.parametrize("key", ["", 7])
async def test_create_with_a_bad_key_is_refused(store: SessionStore, key: object) -> None:
    """A key must be a non-empty str."""
    with pytest.raises((InvalidInputError, TypeError)):
        await store.create_session(ALICE, make_data(ALICE), key=key)  # type: ignore[arg-type]
    assert await store.find_by_user(ALICE, "alice") is None


async def test_racing_creates_of_one_key_make_one_session(store: SessionStore) -> None:
    """20 concurrent creates of one caller key: one succeeds, the rest conflict."""

    async def create(i: int) -> str:
        try:
            await store.create_session(ALICE, make_data(ALICE, state=f'["{i}"]'), key="race")
        except ConflictError:
            return "conflict"
        return "created"

    assert Counter(await gather(*(create(i) for i in range(20)))) == {
        "created": 1,
        "conflict": 19,
    }


# -- find_or_create --------------------------------------------------------------------------


async def test_find_or_create_creates_then_finds(store: SessionStore) -> None:
    """The first call builds and creates; the next finds it without calling build."""
    built = make_data(ALICE, state="[]")
    entry, created = await store.find_or_create(ALICE, "alice", lambda: built)
    assert created is True
    assert entry.data == built
    assert await store.get_entry(entry.key) == entry

    def never() -> SessionData:
        raise AssertionError("build must not be called when the session exists")

    again, created = await store.find_or_create(ALICE, "alice", never)
    assert (again, created) == (entry, False)
    assert await store.find_by_user(ALICE, "alice") == (entry.key, built)


async def test_find_or_create_takes_an_async_builder(store: SessionStore) -> None:
    """An async build function is awaited."""

    async def build() -> SessionData:
        await anyio.lowlevel.checkpoint()
        return make_data(ALICE, state='["built"]')

    entry, created = await store.find_or_create(ALICE, "alice", build)
    assert created
    assert entry.data.context_json == '["built"]'


async def test_concurrent_find_or_create_makes_exactly_one_session(store: SessionStore) -> None:
    """50 concurrent calls for one user create one session; all return its key."""

    async def build() -> SessionData:
        await anyio.lowlevel.checkpoint()  # every caller gets to look before anyone creates
        return make_data(ALICE, state="[]")

    results = await gather(*(store.find_or_create(ALICE, "alice", build) for _ in range(50)))
    assert len({entry.key for entry, _ in results}) == 1
    assert sum(created for _, created in results) == 1


async def test_find_or_create_for_a_userless_caller_points_the_user_at_it(
    store: SessionStore,
) -> None:
    """A caller without a user may find_or_create for `user`; the session is found by it."""
    entry, created = await store.find_or_create(NO_USER, "alice", lambda: make_data(NO_USER))
    assert created
    assert await store.find_by_user(NO_USER, "alice") == (entry.key, entry.data)


async def test_find_or_create_refuses_another_users_caller(store: SessionStore) -> None:
    """A caller whose ctx names another user cannot find_or_create for `user`."""
    with pytest.raises(InvalidInputError):
        await store.find_or_create(ALICE, "bob", lambda: make_data(ALICE.with_user("bob")))
    assert await store.find_by_user(ALICE, "bob") is None


@pytest.mark.parametrize(
    "owner",
    [
        pytest.param(TenantCtx.new("dev", "tenant-43", team="support", user="alice"), id="tenant"),
        pytest.param(TenantCtx.new("dev", "tenant-42", team="sales", user="alice"), id="team"),
        pytest.param(TenantCtx.new("dev", "tenant-42", team="support", user="bob"), id="user"),
    ],
)
async def test_find_or_create_fences_what_build_returns(
    store: SessionStore, owner: TenantCtx
) -> None:
    """Built data outside the caller's tenant, team or user is refused and nothing is created."""
    with pytest.raises(InvalidInputError):
        await store.find_or_create(NO_USER, "alice", lambda: make_data(owner))
    assert await store.find_by_user(NO_USER, "alice") is None


async def test_find_or_create_never_returns_a_foreign_session(store: SessionStore) -> None:
    """A pointer naming a session the user may not see is replaced by a new session."""
    # A user-less session in the team points its creator's slot at it; find_or_create for
    # that user in another team must not see it.
    other_team = TenantCtx.new("dev", "tenant-42", team="sales", user="alice")
    foreign = await store.create_session(other_team, make_data(other_team))
    entry, created = await store.find_or_create(ALICE, "alice", lambda: make_data(ALICE))
    assert created
    assert entry.key != foreign


async def test_a_failing_builder_creates_nothing(store: SessionStore) -> None:
    """An exception from build propagates and leaves the user without a session."""

    def build() -> SessionData:
        raise RuntimeError("builder failed")

    with pytest.raises(RuntimeError, match="builder failed"):
        await store.find_or_create(ALICE, "alice", build)
    assert await store.find_by_user(ALICE, "alice") is None


async def test_a_cancelled_find_or_create_does_not_block_the_user(store: SessionStore) -> None:
    """Cancelling a call while its builder waits leaves the slot free for the next call."""
    started = anyio.Event()

    async def stuck() -> SessionData:
        started.set()
        await anyio.Event().wait()
        raise AssertionError("unreachable")

    async with anyio.create_task_group() as group:
        group.start_soon(store.find_or_create, ALICE, "alice", stuck)
        await started.wait()
        group.cancel_scope.cancel()
    entry, created = await store.find_or_create(ALICE, "alice", lambda: make_data(ALICE))
    assert created
    assert await store.get_session(entry.key) == entry.data


# -- touch -------------------------------------------------------------------------------------


async def test_touch_of_a_missing_session_is_not_found(store: SessionStore) -> None:
    """touch_session on an unknown key raises NotFoundError."""
    with pytest.raises(NotFoundError):
        await store.touch_session("no-such-session")


async def test_touch_changes_neither_data_nor_revision(store: SessionStore) -> None:
    """A touch keeps the data and the revision as they are."""
    key = await store.create_session(ALICE, make_data(ALICE))
    before = await store.get_entry(key)
    await store.touch_session(key)
    assert await store.get_entry(key) == before


# -- the size limit ----------------------------------------------------------------------------


async def test_a_session_over_max_blob_bytes_is_refused_before_writing(
    lifecycle: Lifecycle,
) -> None:
    """Create and update of a session that encodes to more than max_blob_bytes write nothing."""
    store = lifecycle.open(max_blob_bytes=4096)
    small = make_data(ALICE, state="[]")
    big = make_data(ALICE, state=json.dumps(["x" * 5000]))
    with pytest.raises(InvalidInputError, match="max_blob_bytes"):
        await store.create_session(ALICE, big)
    assert await store.find_by_user(ALICE, "alice") is None
    key = await store.create_session(ALICE, small)
    with pytest.raises(InvalidInputError, match="max_blob_bytes"):
        await store.update_session(key, big)
    # Escapes count: 1,000 control characters are 6,000 encoded bytes.
    with pytest.raises(InvalidInputError, match="max_blob_bytes"):
        await store.update_session(key, make_data(ALICE, state="\x01" * 1000))
    assert await store.get_session(key) == small


async def test_max_blob_bytes_none_lifts_the_limit(lifecycle: Lifecycle) -> None:
    """With max_blob_bytes=None a session larger than the default limit's small cousin is stored."""
    store = lifecycle.open(max_blob_bytes=None)
    big = make_data(ALICE, state=json.dumps(["x" * 100_000]))
    key = await store.create_session(ALICE, big)
    assert await store.get_session(key) == big


@pytest.mark.parametrize("value", [0, -5, 1.5, "16MiB", True])
async def test_a_bad_max_blob_bytes_is_refused(lifecycle: Lifecycle, value: object) -> None:
    """max_blob_bytes must be a positive int or None."""
    with pytest.raises(InvalidInputError):
        lifecycle.open(max_blob_bytes=value)


# -- expiry ------------------------------------------------------------------------------------


async def test_an_idle_session_expires_and_is_absent_everywhere(lifecycle: Lifecycle) -> None:
    """After idle_ttl without writes a session reads as absent through every call."""
    store = lifecycle.open(idle_ttl=60)
    key = await store.create_session(ALICE, make_data(ALICE))
    await lifecycle.advance(59)
    assert await store.get_session(key) is not None
    await lifecycle.advance(2)
    assert await store.get_session(key) is None
    assert await store.get_entry(key) is None
    assert await store.find_by_user(ALICE, "alice") is None
    assert await store.find_entry(ALICE, "alice") is None
    for call in (
        store.update_session(key, make_data(ALICE)),
        store.touch_session(key),
        store.remove_session(key),
    ):
        with pytest.raises(NotFoundError):
            await call
    entry, created = await store.find_or_create(ALICE, "alice", lambda: make_data(ALICE))
    assert created
    assert entry.key != key


async def test_reads_do_not_extend_a_session(lifecycle: Lifecycle) -> None:
    """get, get_entry, find and a finding find_or_create leave the idle clock alone."""
    store = lifecycle.open(idle_ttl=60)
    key = await store.create_session(ALICE, make_data(ALICE))
    for _ in range(3):
        await lifecycle.advance(20)
        await store.get_session(key)
        await store.get_entry(key)
        await store.find_by_user(ALICE, "alice")
        await store.find_or_create(ALICE, "alice", lambda: make_data(ALICE))
    assert await store.get_session(key) is None


@pytest.mark.parametrize("write", ["update", "compare_and_set", "touch", "update_with"])
async def test_writes_and_touch_restart_the_idle_clock(lifecycle: Lifecycle, write: str) -> None:
    """An update, a compare-and-set, update_with or a touch restarts idle_ttl, pointer included."""
    store = lifecycle.open(idle_ttl=60)
    key = await store.create_session(ALICE, make_data(ALICE))
    for _ in range(3):
        await lifecycle.advance(40)
        if write == "update":
            await store.update_session(key, make_data(ALICE, state='{"n":1}'))
        elif write == "compare_and_set":
            entry = await store.get_entry(key)
            assert entry is not None
            data = make_data(ALICE, state=entry.data.context_json + " ")
            await store.update_session(key, data, expected_revision=entry.revision)
        elif write == "touch":
            await store.touch_session(key)
        else:
            await store.update_with(key, lambda d: make_data(ALICE, state=d.context_json + " "))
    await lifecycle.advance(40)
    assert await store.get_session(key) is not None
    found = await store.find_by_user(ALICE, "alice")
    assert found is not None
    assert found[0] == key
    await lifecycle.advance(21)
    assert await store.get_session(key) is None


async def test_a_userless_sessions_pointer_is_refreshed_too(lifecycle: Lifecycle) -> None:
    """Touching a user-less session keeps the pointer its creator's user got alive."""
    store = lifecycle.open(idle_ttl=60)
    key = await store.create_session(ALICE, make_data(NO_USER))
    await lifecycle.advance(40)
    await store.touch_session(key)
    await lifecycle.advance(40)
    assert await store.find_by_user(ALICE, "alice") == (key, make_data(NO_USER))


async def test_max_lifetime_caps_every_extension(lifecycle: Lifecycle) -> None:
    """Nothing keeps a session past max_lifetime from its creation, however often it is written."""
    store = lifecycle.open(idle_ttl=60, max_lifetime=100)
    key = await store.create_session(ALICE, make_data(ALICE))
    await lifecycle.advance(50)
    await store.touch_session(key)
    await lifecycle.advance(40)
    await store.update_session(key, make_data(ALICE, state='{"n":2}'))
    await lifecycle.advance(9)
    assert await store.get_session(key) is not None
    await lifecycle.advance(2)
    assert await store.get_session(key) is None
    assert await store.find_by_user(ALICE, "alice") is None


async def test_max_lifetime_alone_expires_without_writes(lifecycle: Lifecycle) -> None:
    """With only max_lifetime a session lives exactly that long, written or not."""
    store = lifecycle.open(max_lifetime=30)
    key = await store.create_session(ALICE, make_data(ALICE))
    await lifecycle.advance(20)
    await store.update_session(key, make_data(ALICE, state='{"n":1}'))
    await lifecycle.advance(9)
    assert await store.get_session(key) is not None
    await lifecycle.advance(2)
    assert await store.get_session(key) is None


LIFETIME_WRITES = ["touch", "update", "compare_and_set", "update_with", "register_wait"]


async def write_once(store: SessionStore, key: str, write: str) -> None:
    """One write of kind `write` (LIFETIME_WRITES) to ALICE's session at `key`."""
    data = make_data(ALICE, state='{"n":1}')
    if write == "touch":
        await store.touch_session(key)
    elif write == "update":
        await store.update_session(key, data)
    elif write == "compare_and_set":
        entry = await store.get_entry(key)
        if entry is None:
            raise NotFoundError("gone")
        await store.update_session(key, data, expected_revision=entry.revision)
    elif write == "update_with":
        await store.update_with(key, lambda _: data)
    else:
        await store.register_wait(ALICE, "alice", ReplyScope(conversation="chat-1"), key, data)


@pytest.mark.parametrize("write", LIFETIME_WRITES)
async def test_a_write_just_before_the_cap_ends_with_the_lifetime(
    lifecycle: Lifecycle, write: str
) -> None:
    """The issue's scenario (idle_ttl 40, max_lifetime 60, touched at 20 and 40): a write half a
    second before the cap lands, and the session is still gone once the cap has passed."""
    store = lifecycle.open(idle_ttl=40, max_lifetime=60)
    key = await store.create_session(ALICE, make_data(ALICE))
    for _ in range(2):
        await lifecycle.advance(20)
        await store.touch_session(key)
    await lifecycle.advance(19.5)
    await write_once(store, key, write)
    landed = await store.get_session(key)
    assert landed is not None
    assert landed.context_json == ("{}" if write == "touch" else '{"n":1}')
    await lifecycle.advance(0.6)
    assert await store.get_session(key) is None
    assert await store.find_by_user(ALICE, "alice") is None
    assert await store.find_wait_by_scope(ALICE, "alice", ReplyScope(conversation="chat-1")) is None


@pytest.mark.parametrize("write", [w for w in LIFETIME_WRITES if w != "register_wait"])
async def test_at_the_cap_a_write_finds_the_session_gone(lifecycle: Lifecycle, write: str) -> None:
    """At the very end of its lifetime (touched at 20 and 40 of 60) a session is expired: a write
    raises NotFoundError and brings nothing back."""
    store = lifecycle.open(idle_ttl=40, max_lifetime=60)
    key = await store.create_session(ALICE, make_data(ALICE))
    for _ in range(2):
        await lifecycle.advance(20)
        await store.touch_session(key)
    await lifecycle.advance(20)
    with pytest.raises(NotFoundError):
        await write_once(store, key, write)
    await lifecycle.advance(15)
    assert await store.get_session(key) is None
    assert await store.find_by_user(ALICE, "alice") is None


async def test_register_wait_at_the_cap_makes_a_new_session(lifecycle: Lifecycle) -> None:
    """register_wait on a key whose session just reached max_lifetime stores a new session with
    a lifetime of its own, not the old one carried on: the old data does not come back."""
    store = lifecycle.open(idle_ttl=40, max_lifetime=60)
    key = await store.create_session(ALICE, make_data(ALICE, state='{"old":1}'))
    await lifecycle.advance(30)
    await store.touch_session(key)
    await lifecycle.advance(30)
    assert await store.get_session(key) is None
    fresh = make_data(ALICE, state='{"new":1}')
    await store.register_wait(ALICE, "alice", ReplyScope(conversation="chat-1"), key, fresh)
    await lifecycle.advance(39)
    assert await store.get_session(key) == fresh
    await lifecycle.advance(2)
    assert await store.get_session(key) is None


async def test_a_newer_sessions_pointer_keeps_its_own_expiry(lifecycle: Lifecycle) -> None:
    """Touching an older session never extends the pointer that now names a newer one."""
    store = lifecycle.open(idle_ttl=60)
    old = await store.create_session(ALICE, make_data(ALICE, state='{"v":"old"}'))
    await lifecycle.advance(30)
    new = await store.create_session(ALICE, make_data(ALICE, state='{"v":"new"}'))
    await lifecycle.advance(25)
    await store.touch_session(old)  # the pointer names `new`: its expiry must not move
    await lifecycle.advance(40)
    assert await store.get_session(old) is not None
    assert await store.get_session(new) is None
    assert await store.find_by_user(ALICE, "alice") is None


@pytest.mark.parametrize(
    "options",
    [{"idle_ttl": 0}, {"idle_ttl": -1}, {"max_lifetime": float("inf")}, {"idle_ttl": "60"}],
)
async def test_bad_expiry_options_are_refused(
    lifecycle: Lifecycle, options: dict[str, object]
) -> None:
    """idle_ttl and max_lifetime must be finite numbers of seconds greater than zero."""
    with pytest.raises(InvalidInputError):
        lifecycle.open(**options)


# -- the webhook scenario ----------------------------------------------------------------------


async def test_200_concurrent_messages_from_20_users_all_land(store: SessionStore) -> None:
    """find_or_create + update_with: every message of 20 racing users lands in one session each."""

    async def handle(user: str, message: str) -> None:
        ctx = ALICE.with_user(user)
        entry, _ = await store.find_or_create(ctx, user, lambda: make_data(ctx, state="[]"))
        await anyio.lowlevel.checkpoint()  # a handler awaits other work between read and write

        def record(data: SessionData) -> SessionData:
            return appended(data, message)

        await store.update_with(entry.key, record, attempts=100)

    users = [f"user-{u}" for u in range(20)]
    messages = [(user, f"{user}-msg-{m}") for m in range(10) for user in users]
    await gather(*(handle(user, message) for user, message in messages))
    for user in users:
        ctx = ALICE.with_user(user)
        found = await store.find_by_user(ctx, user)
        assert found is not None
        got = sorted(json.loads(found[1].context_json))
        assert got == sorted(f"{user}-msg-{m}" for m in range(10))


async def test_the_default_limit_refuses_a_runaway_payload(store: SessionStore) -> None:
    """With the default 16 MiB limit a 20 MB payload is refused and nothing is written."""
    with pytest.raises(InvalidInputError, match="max_blob_bytes"):
        await store.create_session(ALICE, make_data(ALICE, state="x" * 20_000_000))
    assert await store.find_by_user(ALICE, "alice") is None
