"""Reply-scope waits on every backend in the table: the Rust crate's own wait tests ported, the
reference's section 8 behaviours, the safe side of each section 8.1 divergence, and this port's
decisions (see docs/concepts.md, "Waits")."""

from __future__ import annotations

import math
import uuid

import pytest

from greentic_session import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    ReplyScope,
    SessionData,
    SessionKey,
    SessionStore,
    TenantCtx,
)
from tests.conftest import Lifecycle, make_data
from tests.identities import WAITING_USER as USER

TEAM = TenantCtx.new("dev", "tenant-a").with_team("team-a").with_user("user-1")
CHAT_A = ReplyScope(conversation="telegram:chat-a")
CHAT_B = ReplyScope(conversation="telegram:chat-b")


def scope(conversation: str) -> ReplyScope:
    return ReplyScope(conversation=conversation)


def wait_key(store: SessionStore, name: str, ctx: TenantCtx = USER) -> SessionKey:
    """`name` as a session key of `ctx`'s user on `store`: unchanged on a single node, led by
    the user's hash tag on a Redis Cluster (which refuses a wait key without it)."""
    user = ctx.normalized_user
    assert user is not None
    return store.session_key_for(ctx, user, name)


async def register(
    store: SessionStore,
    key: str,
    where: ReplyScope = CHAT_A,
    ctx: TenantCtx = USER,
    *,
    ttl: float | None = None,
    node: str = "node.wait",
) -> SessionData:
    """Register `key` as `ctx`'s user's wait in `where`; return the data stored."""
    data = make_data(ctx, node=node)
    user = ctx.normalized_user
    assert user is not None
    await store.register_wait(ctx, user, where, key, data, ttl=ttl)
    return data


# -- the Rust crate's own tests (tests/inmemory_sessions.rs, context_fence.rs, redis_backend.rs) --


async def test_multiple_waits_are_indexed_and_routed_by_scope(store: SessionStore) -> None:
    """Two scopes of one user give two waits: both listed, each scope finds its own key."""
    a, b = wait_key(store, "wait-a"), wait_key(store, "wait-b")
    await register(store, a, CHAT_A)
    await register(store, b, CHAT_B)
    assert sorted(await store.list_waits_for_user(USER, "user-77")) == sorted([a, b])
    assert await store.find_wait_by_scope(USER, "user-77", CHAT_A) == a
    assert await store.find_wait_by_scope(USER, "user-77", CHAT_B) == b


async def test_expired_wait_is_not_resumed(lifecycle: Lifecycle) -> None:
    """A wait past its ttl is neither found by scope nor listed."""
    store = lifecycle.open()
    a = wait_key(store, "wait-a")
    await register(store, a, ttl=0.03)
    await lifecycle.advance(0.06)
    assert await store.find_wait_by_scope(USER, "user-77", CHAT_A) is None
    assert await store.list_waits_for_user(USER, "user-77") == []
    assert await store.get_session(a) is None


async def test_find_wait_enforces_team_and_user(store: SessionStore) -> None:
    """Another team or another user never finds the wait; its own ctx and user do."""
    where = scope("webhook:conversation-1")
    key = wait_key(store, "ctx-wait", TEAM)
    await register(store, key, where, TEAM)
    other_team = TEAM.with_team("team-b")
    assert await store.find_wait_by_scope(other_team, "user-1", where) is None
    other_user = TEAM.with_user("user-2")
    assert await store.find_wait_by_scope(other_user, "user-2", where) is None
    assert await store.find_wait_by_scope(TEAM, "user-1", where) == key


async def test_wait_crud_flow(store: SessionStore) -> None:
    """A wait's session reads, updates and removes like any session, and leaves no index."""
    where = scope("redis:conversation-1")
    key = wait_key(store, "redis-wait")
    data = await register(store, key, where)
    assert await store.get_session(key) == data
    updated = make_data(USER, node="node.next")
    await store.update_session(key, updated)
    assert await store.get_session(key) == updated
    assert await store.find_wait_by_scope(USER, "user-77", where) == key
    await store.remove_session(key)
    assert await store.get_session(key) is None
    assert await store.find_wait_by_scope(USER, "user-77", where) is None
    assert await store.list_waits_for_user(USER, "user-77") == []


async def test_a_wait_key_is_built_for_its_user(store: SessionStore) -> None:
    """session_key_for returns a key unchanged except on a Redis Cluster, where it leads it with
    the user's hash tag (once), and register_wait there refuses a key without that tag, storing
    nothing."""
    built = wait_key(store, "plain")
    assert wait_key(store, built) == built
    if getattr(store, "is_cluster", False):
        assert built.endswith("plain")
        assert built != "plain"
        for key in ("plain", wait_key(store, "plain", USER.with_user("user-78"))):
            with pytest.raises(InvalidInputError) as raised:
                await register(store, key)
            assert "hash tag" in raised.value.message
            assert "user-7" not in str(raised.value)
            assert await store.get_session(key) is None
        assert await store.find_wait_by_scope(USER, "user-77", CHAT_A) is None
        assert await store.list_waits_for_user(USER, "user-77") == []
    else:
        assert built == "plain"


# -- section 8 ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("caller", "user_id", "data_ctx", "rule"),
    [
        (USER, "user-77", TenantCtx.new("prod", "tenant-a").with_user("user-77"), "env/tenant"),
        (USER, "user-77", TenantCtx.new("dev", "tenant-b").with_user("user-77"), "env/tenant"),
        (USER, "user-77", USER.with_team("team-a"), "team"),
        (USER, "user-77", USER.with_user(None), "user"),
        (USER.with_user(None), "user-77", USER, "user"),
        (USER, "user-78", USER, "user"),
        (USER.with_user("user-78"), "user-78", USER, "user"),
        (USER, "user-77", USER.with_user("user-78"), "user"),
    ],
)
async def test_register_wait_refuses_a_misaligned_owner(
    store: SessionStore, caller: TenantCtx, user_id: str, data_ctx: TenantCtx, rule: str
) -> None:
    """env/tenant, team, a missing user or disagreeing users: InvalidInputError, nothing stored,
    and the message names no user."""
    # The key user_id's wait in the caller's tenant and team would have: only the fence refuses.
    key = wait_key(store, "k", caller.with_user(user_id))
    with pytest.raises(InvalidInputError) as raised:
        await store.register_wait(caller, user_id, CHAT_A, key, make_data(data_ctx))
    assert f"({rule})" in raised.value.message
    assert "user-7" not in str(raised.value)
    assert await store.get_session(key) is None
    assert await store.find_wait_by_scope(USER, "user-77", CHAT_A) is None


async def test_reregistering_a_scope_routes_to_the_new_key(store: SessionStore) -> None:
    """The scope finds the new key, the old one is no longer listed, its session stays."""
    old_key, new_key = wait_key(store, "wait-old"), wait_key(store, "wait-new")
    old = await register(store, old_key)
    await register(store, new_key)
    assert await store.find_wait_by_scope(USER, "user-77", CHAT_A) == new_key
    assert await store.list_waits_for_user(USER, "user-77") == [new_key]
    assert await store.get_session(old_key) == old


async def test_clear_wait_removes_session_and_indexes_and_is_idempotent(
    store: SessionStore,
) -> None:
    """clear_wait deletes the session and every index naming it; again, it does nothing."""
    a, b = wait_key(store, "wait-a"), wait_key(store, "wait-b")
    await register(store, a, CHAT_A)
    await register(store, b, CHAT_B)
    await store.clear_wait(USER, "user-77", CHAT_A)
    assert await store.get_session(a) is None
    assert await store.find_wait_by_scope(USER, "user-77", CHAT_A) is None
    assert await store.list_waits_for_user(USER, "user-77") == [b]
    await store.clear_wait(USER, "user-77", CHAT_A)
    await store.clear_wait(USER, "user-77", scope("never-registered"))
    assert await store.find_wait_by_scope(USER, "user-77", CHAT_B) == b


async def test_remove_session_drops_the_wait(store: SessionStore) -> None:
    """After remove_session the scope finds nothing and the list excludes the key; removing a
    missing key is NotFoundError."""
    a = wait_key(store, "wait-a")
    await register(store, a)
    await store.remove_session(a)
    assert await store.find_wait_by_scope(USER, "user-77", CHAT_A) is None
    assert await store.list_waits_for_user(USER, "user-77") == []
    with pytest.raises(NotFoundError):
        await store.remove_session(a)


async def test_wrong_team_or_user_lookups_see_nothing(store: SessionStore) -> None:
    """Lookups by another team or user find and list nothing, and leave the wait intact."""
    a = wait_key(store, "wait-a")
    await register(store, a)
    other_team = USER.with_team("team-x")
    other_user = USER.with_user("user-99")
    assert await store.list_waits_for_user(other_team, "user-77") == []
    assert await store.list_waits_for_user(other_user, "user-99") == []
    assert await store.find_wait_by_scope(other_user, "user-99", CHAT_A) is None
    await store.clear_wait(other_user, "user-99", CHAT_A)
    assert await store.find_wait_by_scope(USER, "user-77", CHAT_A) == a


async def test_update_of_a_wait_keeps_the_owner_fence(store: SessionStore) -> None:
    """update_session on a missing key is NotFoundError; changing team or user of a wait is
    InvalidInputError."""
    with pytest.raises(NotFoundError):
        await store.update_session(wait_key(store, "missing"), make_data(USER))
    a = wait_key(store, "wait-a")
    await register(store, a)
    with pytest.raises(InvalidInputError):
        await store.update_session(a, make_data(USER.with_team("team-x")))
    with pytest.raises(InvalidInputError):
        await store.update_session(a, make_data(USER.with_user("user-78")))


async def test_create_session_makes_no_wait(store: SessionStore) -> None:
    """create_session issues a UUIDv4 key and is not a wait; register_wait never moves the user
    pointer create_session wrote (find_by_user keeps the seed's meaning)."""
    key = await store.create_session(USER, make_data(USER))
    # On a cluster the store leads the UUID with its user's hash tag, as session_key_for does.
    tag = wait_key(store, "x")[:-1]
    assert key.startswith(tag)
    assert uuid.UUID(key[len(tag) :]).version == 4
    assert await store.list_waits_for_user(USER, "user-77") == []
    await register(store, wait_key(store, "wait-a"))
    found = await store.find_by_user(USER, "user-77")
    assert found is not None
    assert found[0] == key


# -- the safe side of each section 8.1 divergence -------------------------------------------------


async def test_an_update_keeps_the_waits_expiry(lifecycle: Lifecycle) -> None:
    """(a) Without expiry options an update neither drops nor restarts a wait's ttl."""
    store = lifecycle.open()
    a = wait_key(store, "wait-a")
    await register(store, a, ttl=10)
    await lifecycle.advance(6)
    await store.update_session(a, make_data(USER, node="node.next"))
    await lifecycle.advance(5)
    assert await store.get_session(a) is None
    assert await store.find_wait_by_scope(USER, "user-77", CHAT_A) is None
    assert await store.list_waits_for_user(USER, "user-77") == []


async def test_moving_a_key_to_another_scope_drops_its_old_pointer(store: SessionStore) -> None:
    """(b) Re-registering a key under a new scope leaves nothing at the old scope."""
    a = wait_key(store, "wait-a")
    await register(store, a, CHAT_A)
    await register(store, a, CHAT_B)
    assert await store.find_wait_by_scope(USER, "user-77", CHAT_A) is None
    assert await store.find_wait_by_scope(USER, "user-77", CHAT_B) == a
    assert await store.list_waits_for_user(USER, "user-77") == [a]


async def test_registering_over_another_owners_session_is_refused(store: SessionStore) -> None:
    """(c) A key holding another user's session cannot be registered over; it stays intact."""
    theirs = USER.with_user("user-78")
    taken = wait_key(store, "taken", theirs)
    data = await register(store, taken, ctx=theirs)
    with pytest.raises(InvalidInputError) as raised:
        await register(store, taken, ctx=USER)
    if getattr(store, "is_cluster", False):
        # Their key carries their hash tag, not ours: refused before any owner is read.
        assert "hash tag" in raised.value.message
    assert "user-7" not in str(raised.value)
    assert await store.get_session(taken) == data
    assert await store.find_wait_by_scope(theirs, "user-78", CHAT_A) == taken
    assert await store.find_wait_by_scope(USER, "user-77", CHAT_A) is None


async def test_removing_a_superseded_session_keeps_the_newer_wait(store: SessionStore) -> None:
    """(d) Removing the session a newer wait superseded leaves the newer wait routed."""
    old_key, new_key = wait_key(store, "wait-old"), wait_key(store, "wait-new")
    await register(store, old_key)
    await register(store, new_key)
    await store.remove_session(old_key)
    assert await store.find_wait_by_scope(USER, "user-77", CHAT_A) == new_key
    assert await store.list_waits_for_user(USER, "user-77") == [new_key]


async def test_expiry_of_a_superseded_session_keeps_the_newer_wait(lifecycle: Lifecycle) -> None:
    """(d) The superseded session expires on its own ttl; the newer wait stays routed."""
    store = lifecycle.open()
    old_key, new_key = wait_key(store, "wait-old"), wait_key(store, "wait-new")
    await register(store, old_key, ttl=5)
    await register(store, new_key)
    assert await store.get_session(old_key) is not None  # still a session, no longer a wait
    await lifecycle.advance(6)
    assert await store.get_session(old_key) is None
    assert await store.find_wait_by_scope(USER, "user-77", CHAT_A) == new_key
    assert await store.list_waits_for_user(USER, "user-77") == [new_key]


async def test_an_expired_wait_is_not_found_for_update_or_remove(lifecycle: Lifecycle) -> None:
    """(e) update_session, touch_session and remove_session on an expired wait: NotFoundError."""
    store = lifecycle.open()
    a = wait_key(store, "wait-a")
    await register(store, a, ttl=1)
    await lifecycle.advance(2)
    with pytest.raises(NotFoundError):
        await store.update_session(a, make_data(USER))
    with pytest.raises(NotFoundError):
        await store.touch_session(a)
    with pytest.raises(NotFoundError):
        await store.remove_session(a)


# -- this port's own decisions ------------------------------------------------------------------


async def test_lookups_require_the_callers_user_to_be_user_id(store: SessionStore) -> None:
    """find, list and clear by a caller whose user differs from user_id: InvalidInputError."""
    a = wait_key(store, "wait-a")
    await register(store, a)
    other = USER.with_user("user-78")
    for call in (
        store.find_wait_by_scope(other, "user-77", CHAT_A),
        store.list_waits_for_user(other, "user-77"),
        store.clear_wait(other, "user-77", CHAT_A),
    ):
        with pytest.raises(InvalidInputError) as raised:
            await call
        assert "user-7" not in str(raised.value)
    assert await store.get_session(a) is not None


async def test_a_caller_without_user_may_look_up_any_users_waits(store: SessionStore) -> None:
    """A ctx without a user finds, lists and clears `user_id`'s waits in its tenant and team."""
    a = wait_key(store, "wait-a")
    await register(store, a)
    service = USER.with_user(None)
    assert await store.find_wait_by_scope(service, "user-77", CHAT_A) == a
    assert await store.list_waits_for_user(service, "user-77") == [a]
    await store.clear_wait(service, "user-77", CHAT_A)
    assert await store.get_session(a) is None


async def test_team_dash_and_no_team_never_see_or_delete_each_other(store: SessionStore) -> None:
    """A team named '-' shares wait keys with no team: neither's lookups return or delete the
    other's live wait."""
    dash = USER.with_team("-")
    dash_wait, dash_b = wait_key(store, "dash-wait", dash), wait_key(store, "dash-b", dash)
    await register(store, dash_wait, CHAT_A, dash)
    await register(store, dash_b, CHAT_B, dash)
    assert await store.find_wait_by_scope(USER, "user-77", CHAT_A) is None
    assert await store.list_waits_for_user(USER, "user-77") == []
    await store.clear_wait(USER, "user-77", CHAT_A)
    assert await store.find_wait_by_scope(dash, "user-77", CHAT_A) == dash_wait
    assert sorted(await store.list_waits_for_user(dash, "user-77")) == sorted([dash_b, dash_wait])
    assert await store.get_session(dash_wait) is not None


@pytest.mark.parametrize("ttl", [0, -1, True, "5", math.nan, math.inf])
async def test_bad_ttls_are_refused(store: SessionStore, ttl: object) -> None:
    """A ttl that is not a finite number of seconds above zero: InvalidInputError."""
    key = wait_key(store, "k")
    with pytest.raises(InvalidInputError):
        await store.register_wait(USER, "user-77", CHAT_A, key, make_data(USER), ttl=ttl)  # type: ignore[arg-type]
    assert await store.get_session(key) is None


async def test_a_sub_millisecond_ttl_rounds_up(lifecycle: Lifecycle) -> None:
    """A ttl below a millisecond is a millisecond: the wait exists, then expires."""
    store = lifecycle.open()
    await register(store, wait_key(store, "wait-a"), ttl=0.0001)
    await lifecycle.advance(0.002)
    assert await store.find_wait_by_scope(USER, "user-77", CHAT_A) is None


async def test_bad_arguments_are_refused(store: SessionStore) -> None:
    """A scope that is not a ReplyScope, an empty key or a bad user_id write nothing."""
    data = make_data(USER)
    key = wait_key(store, "k")
    with pytest.raises(TypeError):
        await store.register_wait(USER, "user-77", "chat", key, data)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        await store.register_wait(USER, "user-77", CHAT_A, "", data)
    with pytest.raises(InvalidInputError):
        await store.find_wait_by_scope(USER, "user:77", CHAT_A)
    assert await store.get_session(key) is None


async def test_idle_ttl_is_a_waits_default_and_updates_restart_it(lifecycle: Lifecycle) -> None:
    """With idle_ttl and no ttl a wait lives idle_ttl; an update or touch restarts it, indexes
    included."""
    store = lifecycle.open(idle_ttl=10)
    a = wait_key(store, "wait-a")
    await register(store, a)
    await lifecycle.advance(8)
    await store.update_session(a, make_data(USER, node="node.next"))
    await lifecycle.advance(8)
    await store.touch_session(a)
    await lifecycle.advance(8)
    assert await store.find_wait_by_scope(USER, "user-77", CHAT_A) == a
    assert await store.list_waits_for_user(USER, "user-77") == [a]
    await lifecycle.advance(3)
    assert await store.find_wait_by_scope(USER, "user-77", CHAT_A) is None


async def test_a_waits_own_ttl_stands_in_for_idle_ttl(lifecycle: Lifecycle) -> None:
    """Under idle_ttl a wait's own ttl is its idle time: updates restart that, not idle_ttl."""
    store = lifecycle.open(idle_ttl=5)
    a = wait_key(store, "wait-a")
    await register(store, a, ttl=30)
    await lifecycle.advance(20)
    await store.update_session(a, make_data(USER, node="node.next"))
    await lifecycle.advance(20)
    assert await store.find_wait_by_scope(USER, "user-77", CHAT_A) == a
    await lifecycle.advance(11)
    assert await store.get_session(a) is None


async def test_max_lifetime_caps_a_wait(lifecycle: Lifecycle) -> None:
    """A wait never outlives the store's max_lifetime, whatever its ttl or updates."""
    store = lifecycle.open(max_lifetime=10)
    a = wait_key(store, "wait-a")
    await register(store, a, ttl=100)
    await lifecycle.advance(6)
    await store.update_session(a, make_data(USER, node="node.next"))
    await register(store, a, ttl=100)
    await lifecycle.advance(5)
    assert await store.get_session(a) is None
    assert await store.find_wait_by_scope(USER, "user-77", CHAT_A) is None


async def test_revisions_and_update_with_work_on_waits(store: SessionStore) -> None:
    """A wait's session has revisions: a stale one conflicts; update_with applies a change."""
    a = wait_key(store, "wait-a")
    await register(store, a)
    entry = await store.get_entry(a)
    assert entry is not None
    await store.update_session(a, make_data(USER, node="n1"))
    with pytest.raises(ConflictError):
        await store.update_session(a, make_data(USER), expected_revision=entry.revision)
    changed = await store.update_with(a, lambda d: make_data(USER, node="n2"))
    assert changed.data.cursor.node_pointer == "n2"
    assert await store.find_wait_by_scope(USER, "user-77", CHAT_A) == a


async def test_reregistering_without_ttl_makes_a_wait_persistent(lifecycle: Lifecycle) -> None:
    """Re-registering a wait without ttl (and no idle_ttl) drops its expiry, as Rust does."""
    store = lifecycle.open()
    a = wait_key(store, "wait-a")
    await register(store, a, ttl=5)
    await register(store, a)
    await lifecycle.advance(6)
    assert await store.find_wait_by_scope(USER, "user-77", CHAT_A) == a


async def test_a_session_made_a_wait_keeps_its_user_pointer_in_step(lifecycle: Lifecycle) -> None:
    """Registering a create_session session as a wait keeps its user pointer, which expires with
    it under a ttl and stays while a re-registration without ttl makes it persistent."""
    store = lifecycle.open()
    key = await store.create_session(USER, make_data(USER))
    await register(store, key, ttl=5)
    await register(store, key)
    await lifecycle.advance(6)
    found = await store.find_by_user(USER, "user-77")
    assert found is not None
    assert found[0] == key
    await register(store, key, ttl=5)
    await lifecycle.advance(6)
    assert await store.find_by_user(USER, "user-77") is None
    assert await store.get_session(key) is None
