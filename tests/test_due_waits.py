"""Durable deadlines on every backend in the table: register_wait's `due_in`, claim_due_waits,
settle_due and watch_due_waits (see greentic_session/deadlines.py).

Time moves without sleeping: the in-memory store's clock is the lifecycle's manual clock, and on
Redis `travel` moves every TTL (as `Lifecycle.advance`) and every deadline score and record time
under the test's namespace back by the same amount, which is what the server's clock moving
forward does to them.
"""

from __future__ import annotations

import math
import time

import anyio
import pytest

from greentic_session import (
    ConflictError,
    InvalidInputError,
    ReplyScope,
    SessionData,
    SessionKey,
    SessionStore,
    StoreClosedError,
    TenantCtx,
)
from greentic_session.deadlines import MAX_CLAIM_LIMIT, DueWait
from tests.conftest import Lifecycle, gather, make_data

USER = TenantCtx.new("dev", "tenant-a").with_user("user-77")
OTHER_TENANT = TenantCtx.new("dev", "tenant-b").with_team("team-x").with_user("user-9")
CHAT_A = ReplyScope(conversation="telegram:chat-a", thread="topic-9")
CHAT_B = ReplyScope(conversation="telegram:chat-b")


async def shift_deadlines(url: str, namespace: str, seconds: float) -> None:
    """Move every deadline and lease end under `namespace` `seconds` earlier (index scores and
    record times), as the server's clock moving forward would make them nearer."""
    import redis.asyncio as aioredis

    millis = round(seconds * 1000)
    for node_url in url.split(","):
        client = aioredis.Redis.from_url(node_url)
        try:
            async for name in client.scan_iter(match=f"{namespace}:dueidx*", count=500):
                scored = await client.zrange(name, 0, -1, withscores=True)
                if scored:
                    await client.zadd(name, {m: s - millis for m, s in scored}, xx=True)
            async for name in client.scan_iter(match=f"{namespace}:due:*", count=500):
                due, until = await client.hmget(name, "due", "until")
                await client.hset(name, "due", int(due) - millis)
                if until is not None:
                    await client.hset(name, "until", int(until) - millis)
        finally:
            await client.aclose()


async def travel(lifecycle: Lifecycle, seconds: float) -> None:
    """Let `seconds` pass for every store the lifecycle opened: clock, TTLs and deadlines."""
    await lifecycle.advance(seconds)
    if lifecycle.raw_url is not None:
        await shift_deadlines(lifecycle.raw_url, lifecycle.namespace, seconds)


def wait_key(store: SessionStore, name: str, ctx: TenantCtx = USER) -> SessionKey:
    user = ctx.normalized_user
    assert user is not None
    return store.session_key_for(ctx, user, name)


async def register(
    store: SessionStore,
    name: str,
    where: ReplyScope = CHAT_A,
    ctx: TenantCtx = USER,
    *,
    due_in: float | None = 5.0,
    ttl: float | None = None,
    node: str = "node.wait",
) -> tuple[SessionKey, SessionData]:
    """Register `name` as `ctx`'s user's wait in `where` with a deadline `due_in` from now."""
    key = wait_key(store, name, ctx)
    data = make_data(ctx, node=node)
    user = ctx.normalized_user
    assert user is not None
    await store.register_wait(ctx, user, where, key, data, ttl=ttl, due_in=due_in)
    return key, data


async def claim_all(store: SessionStore, *, lease: float = 30.0) -> list[DueWait]:
    """Every wait claimable now, claimed in batches until a claim comes back empty."""
    claimed: list[DueWait] = []
    while batch := await store.claim_due_waits(limit=100, lease=lease):
        claimed += batch
    return claimed


async def test_a_deadline_is_claimed_once_it_has_passed(lifecycle: Lifecycle) -> None:
    """Before its deadline a wait is not claimed; after it, the claim carries its key, user,
    scope, session and revision, attempt 1 and a lease id, and changes nothing stored."""
    store = lifecycle.open()
    key, data = await register(store, "w", due_in=5)
    await travel(lifecycle, 4)
    assert await store.claim_due_waits() == []
    before = await store.get_entry(key)
    await travel(lifecycle, 2)
    [due] = await store.claim_due_waits()
    assert (due.key, due.user_id, due.scope, due.attempt) == (key, "user-77", CHAT_A, 1)
    assert due.entry == before
    assert due.entry.data == data
    assert isinstance(due.lease_id, str)
    assert due.lease_id
    assert abs(due.due_at - time.time()) < 3600
    assert await store.get_entry(key) == before
    assert await store.find_wait_by_scope(USER, "user-77", CHAT_A) == key


async def test_due_at_follows_the_deadline(lifecycle: Lifecycle) -> None:
    """Two waits registered together 5 s apart in due_in are due 5 s apart."""
    store = lifecycle.open()
    early, _ = await register(store, "early", CHAT_A, due_in=5)
    late, _ = await register(store, "late", CHAT_B, due_in=10)
    await travel(lifecycle, 11)
    claimed = {due.key: due.due_at for due in await store.claim_due_waits()}
    assert math.isclose(claimed[late] - claimed[early], 5, abs_tol=0.5)


async def test_a_leased_wait_is_not_claimed_again_until_the_lease_ends(
    lifecycle: Lifecycle,
) -> None:
    """Within its lease no claim returns a wait; after the lease ran out it comes back with
    attempt 2 and a new lease id, and only that lease settles it."""
    store = lifecycle.open()
    key, _ = await register(store, "w", due_in=1)
    await travel(lifecycle, 2)
    [first] = await store.claim_due_waits(lease=10)
    await travel(lifecycle, 9)
    assert await store.claim_due_waits(lease=10) == []
    await travel(lifecycle, 2)
    [second] = await store.claim_due_waits(lease=10)
    assert (second.key, second.attempt) == (key, 2)
    assert second.lease_id != first.lease_id
    assert await store.settle_due(first) is False
    assert await store.settle_due(second) is True
    await travel(lifecycle, 100)
    assert await store.claim_due_waits() == []
    assert await store.settle_due(second) is False


async def test_a_lease_that_ran_out_still_settles_while_nobody_took_it(
    lifecycle: Lifecycle,
) -> None:
    """settle_due succeeds after the lease ended when no other claim took the wait since."""
    store = lifecycle.open()
    await register(store, "w", due_in=1)
    await travel(lifecycle, 2)
    [due] = await store.claim_due_waits(lease=1)
    await travel(lifecycle, 5)
    assert await store.settle_due(due) is True
    assert await store.claim_due_waits() == []


async def test_a_claim_returns_at_most_limit_waits(lifecycle: Lifecycle) -> None:
    """Seven due waits, limit 3: 3, 3, 1, then none; each exactly once."""
    store = lifecycle.open()
    keys = {
        (await register(store, f"w{i}", ReplyScope(conversation=f"c{i}"), due_in=1))[0]
        for i in range(7)
    }
    await travel(lifecycle, 2)
    sizes, seen = [], []
    for _ in range(4):
        batch = await store.claim_due_waits(limit=3)
        sizes.append(len(batch))
        seen += [due.key for due in batch]
    assert sizes == [3, 3, 1, 0]
    assert sorted(seen) == sorted(keys)


async def test_a_claim_spans_tenants(lifecycle: Lifecycle) -> None:
    """One claim returns the due waits of every tenant and team of the store, each with its
    own user."""
    store = lifecycle.open()
    a, _ = await register(store, "a", CHAT_A, USER, due_in=1)
    b, _ = await register(store, "b", CHAT_A, OTHER_TENANT, due_in=1)
    await travel(lifecycle, 2)
    claimed = {due.key: due.user_id for due in await claim_all(store)}
    assert claimed == {a: "user-77", b: "user-9"}


async def test_registering_again_replaces_the_deadline(lifecycle: Lifecycle) -> None:
    """A second register_wait of the key gives a new deadline (the old lease no longer
    settles; attempts count from 1 again); due_in=None removes it."""
    store = lifecycle.open()
    key, _ = await register(store, "w", due_in=1)
    await travel(lifecycle, 2)
    [old] = await store.claim_due_waits()
    await register(store, "w", due_in=10)
    assert await store.settle_due(old) is False
    await travel(lifecycle, 5)
    assert await store.claim_due_waits() == []
    await travel(lifecycle, 6)
    [new] = await store.claim_due_waits()
    assert (new.key, new.attempt) == (key, 1)
    await register(store, "w", due_in=None)
    await travel(lifecycle, 100)
    assert await store.claim_due_waits() == []
    assert await store.settle_due(new) is False


async def test_a_superseded_wait_loses_its_deadline(lifecycle: Lifecycle) -> None:
    """When another key registers the same scope, the old wait's deadline goes with its wait."""
    store = lifecycle.open()
    await register(store, "old", due_in=1)
    new, _ = await register(store, "new", due_in=None)
    await travel(lifecycle, 2)
    assert await store.claim_due_waits() == []
    assert await store.find_wait_by_scope(USER, "user-77", CHAT_A) == new


async def test_a_key_moved_to_another_scope_keeps_one_deadline(lifecycle: Lifecycle) -> None:
    """Registering a key in a new scope replaces its deadline: claimed once, with the new
    scope."""
    store = lifecycle.open()
    key, _ = await register(store, "w", CHAT_A, due_in=1)
    await register(store, "w", CHAT_B, due_in=1)
    await travel(lifecycle, 2)
    [due] = await claim_all(store)
    assert (due.key, due.scope) == (key, CHAT_B)


async def test_clear_wait_and_remove_session_remove_the_deadline(lifecycle: Lifecycle) -> None:
    """A cleared or removed wait is never claimed, and a lease taken before it went no longer
    settles."""
    store = lifecycle.open()
    await register(store, "cleared", CHAT_A, due_in=1)
    removed, _ = await register(store, "removed", CHAT_B, due_in=1)
    await travel(lifecycle, 2)
    leased = await store.claim_due_waits(lease=1)
    assert len(leased) == 2
    await store.clear_wait(USER, "user-77", CHAT_A)
    await store.remove_session(removed)
    await travel(lifecycle, 5)
    assert await store.claim_due_waits() == []
    assert [await store.settle_due(due) for due in leased] == [False, False]


async def test_updates_and_touches_keep_the_deadline(lifecycle: Lifecycle) -> None:
    """update_session, update_with and touch_session keep the deadline; the claim carries the
    session as it is at the claim."""
    store = lifecycle.open(idle_ttl=600)
    key, _ = await register(store, "w", due_in=5)
    await store.update_session(key, make_data(USER, node="node.updated"))
    await store.update_with(key, lambda data: make_data(USER, node="node.changed"))
    await store.touch_session(key)
    await travel(lifecycle, 6)
    [due] = await store.claim_due_waits()
    assert due.entry.data.cursor.node_pointer == "node.changed"
    assert due.entry == await store.get_entry(key)


async def test_an_expired_wait_is_never_delivered(lifecycle: Lifecycle) -> None:
    """A wait whose ttl ran out before anyone claimed its deadline is dropped, not delivered."""
    store = lifecycle.open()
    await register(store, "w", due_in=5, ttl=10)
    await travel(lifecycle, 11)
    assert await store.claim_due_waits() == []


async def test_the_runner_protocol_resumes_once(lifecycle: Lifecycle) -> None:
    """Claim, update from the claimed revision, settle: the flow resumes and the deadline is
    done; a second claimer (after the lease) is refused the update as a conflict."""
    store = lifecycle.open()
    key, _ = await register(store, "w", due_in=1)
    await travel(lifecycle, 2)
    [due] = await store.claim_due_waits(lease=5)
    await store.update_session(
        key, make_data(USER, node="node.timed-out"), expected_revision=due.entry.revision
    )
    with pytest.raises(ConflictError):
        await store.update_session(
            key, make_data(USER, node="node.twice"), expected_revision=due.entry.revision
        )
    assert await store.settle_due(due) is True
    stored = await store.get_session(key)
    assert stored is not None
    assert stored.cursor.node_pointer == "node.timed-out"


async def test_a_reply_and_a_timeout_racing_from_one_revision_have_one_winner(
    lifecycle: Lifecycle,
) -> None:
    """40 times: a reply (found by scope) and a timeout (claimed) update from the same revision
    at once, on two stores (one in memory, where stores share nothing): exactly one update wins
    each time."""
    replies = lifecycle.open()
    timeouts = lifecycle.open() if lifecycle.backend.needs_redis else replies

    async def attempt(store: SessionStore, key: SessionKey, revision: str, node: str) -> bool:
        try:
            await store.update_session(key, make_data(USER, node=node), expected_revision=revision)
        except ConflictError:
            return False
        return True

    winners = []
    for round_ in range(40):
        where = ReplyScope(conversation=f"race-{round_}")
        key, _ = await register(replies, f"race-{round_}", where, due_in=1)
        await travel(lifecycle, 2)
        found = await replies.find_wait_by_scope(USER, "user-77", where)
        assert found == key
        entry = await replies.get_entry(key)
        [due] = await timeouts.claim_due_waits()
        assert entry is not None
        assert due.entry.revision == entry.revision
        won = await gather(
            attempt(replies, key, entry.revision, "node.replied"),
            attempt(timeouts, key, due.entry.revision, "node.timed-out"),
        )
        winners.append(won)
        await timeouts.settle_due(due)
    assert all(sum(won) == 1 for won in winners)


@pytest.mark.parametrize("due_in", [0, -1, math.nan, math.inf, True, "5", 60, 61])
async def test_a_bad_due_in_is_refused_and_nothing_is_written(
    lifecycle: Lifecycle, due_in: object
) -> None:
    """due_in must be finite seconds above zero and shorter than the ttl: else
    InvalidInputError, and neither the wait nor a deadline is written."""
    store = lifecycle.open()
    key = wait_key(store, "w")
    with pytest.raises(InvalidInputError):
        await store.register_wait(
            USER,
            "user-77",
            CHAT_A,
            key,
            make_data(USER),
            ttl=60,
            due_in=due_in,  # type: ignore[arg-type]
        )
    assert await store.get_session(key) is None
    assert await store.find_wait_by_scope(USER, "user-77", CHAT_A) is None
    await travel(lifecycle, 100)
    assert await store.claim_due_waits() == []


async def test_due_in_must_be_shorter_than_the_stores_idle_ttl(lifecycle: Lifecycle) -> None:
    """Without a ttl of its own a wait lives for the store's idle_ttl: due_in must be shorter;
    without either, any due_in goes."""
    bounded = lifecycle.open(idle_ttl=30)
    with pytest.raises(InvalidInputError):
        await register(bounded, "w", due_in=30)
    await register(bounded, "w", due_in=29)
    unbounded = lifecycle.open()
    await register(unbounded, "far", CHAT_B, due_in=10 * 365 * 86400)


@pytest.mark.parametrize(
    ("limit", "lease"),
    [
        (0, 30),
        (-1, 30),
        (True, 30),
        (1.5, 30),
        (MAX_CLAIM_LIMIT + 1, 30),
        (1, 0),
        (1, math.nan),
        (1, "30"),
    ],
)
async def test_a_bad_claim_is_refused(lifecycle: Lifecycle, limit: object, lease: object) -> None:
    """limit must be an int from 1 to MAX_CLAIM_LIMIT, lease finite seconds above zero; a bad
    one is InvalidInputError and claims nothing."""
    store = lifecycle.open()
    await register(store, "w", due_in=1)
    await travel(lifecycle, 2)
    with pytest.raises(InvalidInputError):
        await store.claim_due_waits(limit=limit, lease=lease)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        store.watch_due_waits(limit=limit, lease=lease)  # type: ignore[arg-type]
    assert len(await store.claim_due_waits()) == 1


@pytest.mark.parametrize("due", [None, "lease", object()])
async def test_settle_refuses_what_no_claim_returned(lifecycle: Lifecycle, due: object) -> None:
    """settle_due takes only a DueWait: anything else is InvalidInputError."""
    store = lifecycle.open()
    with pytest.raises(InvalidInputError):
        await store.settle_due(due)  # type: ignore[arg-type]


async def test_settle_of_a_forged_lease_is_false(lifecycle: Lifecycle) -> None:
    """A DueWait with a lease id no claim gave settles nothing: False, the deadline stays."""
    store = lifecycle.open()
    await register(store, "w", due_in=1)
    await travel(lifecycle, 2)
    [due] = await store.claim_due_waits(lease=1)
    forged = DueWait(due.key, due.user_id, due.scope, due.entry, due.due_at, 1, "not-a-lease")
    assert await store.settle_due(forged) is False
    await travel(lifecycle, 2)
    assert [again.attempt for again in await store.claim_due_waits()] == [2]


async def test_watch_hands_out_due_waits_and_ends_on_aclose(lifecycle: Lifecycle) -> None:
    """watch_due_waits yields every due wait (a full batch is followed at once by the next
    claim), then, polling, one that comes due later; aclose ends it."""
    store = lifecycle.open()
    first = {
        (await register(store, f"w{i}", ReplyScope(conversation=f"c{i}"), due_in=1))[0]
        for i in range(3)
    }
    await travel(lifecycle, 2)
    watcher = store.watch_due_waits(limit=2, poll=0.01)
    with anyio.fail_after(10):
        got = {(await watcher.__anext__()).key for _ in range(3)}
    assert got == first
    later, _ = await register(store, "later", CHAT_B, due_in=1)
    await travel(lifecycle, 2)
    with anyio.fail_after(10):
        assert (await watcher.__anext__()).key == later
    await watcher.aclose()
    with pytest.raises(StopAsyncIteration):
        await watcher.__anext__()


async def test_watch_refuses_a_bad_poll(lifecycle: Lifecycle) -> None:
    """poll must be finite seconds above zero, checked when the watcher is made."""
    store = lifecycle.open()
    for poll in (0, -1, math.inf, math.nan, None):
        with pytest.raises(InvalidInputError):
            store.watch_due_waits(poll=poll)  # type: ignore[arg-type]


async def test_a_closed_store_claims_nothing(lifecycle: Lifecycle) -> None:
    """After aclose, claim_due_waits and settle_due raise StoreClosedError."""
    store = lifecycle.open()
    await register(store, "w", due_in=1)
    await travel(lifecycle, 2)
    [due] = await store.claim_due_waits()
    await store.aclose()
    with pytest.raises(StoreClosedError):
        await store.claim_due_waits()
    with pytest.raises(StoreClosedError):
        await store.settle_due(due)
