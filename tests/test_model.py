"""Random sequences of every store call, with and without expiry, on every backend, checked
against a plain model: create (random and caller keys), update, compare-and-set from fresh and
stale revisions, touch, remove, get, find, find_or_create, the reply-scope waits (register with
and without ttl, find by scope, list, clear; teams "-" and none sharing Redis keys), deadlines
(register with due_in, claim, settle, leases running out), and time passing."""

from __future__ import annotations

import asyncio
import itertools
import math
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from greentic_session import (
    ConflictError,
    DueWait,
    InvalidInputError,
    NotFoundError,
    ReplyScope,
    SessionData,
    SessionStore,
    TenantCtx,
)
from greentic_session.testing import Backend, loop_factory
from tests.conftest import (
    CELL_PARAMS,
    ManualClock,
    backend_urls,
    drop_namespace,
    make_data,
    shift_ttls,
)
from tests.test_due_waits import shift_deadlines

T = TypeVar("T")

ENVS = ["dev", "prod"]
TENANTS = ["t1", "t2", "t3"]
TEAMS = [None, "team-a", "team-b"]
USERS = [None, "u1", "u2", "u3"]

# Expiry in whole tens of seconds, with time moving in tens: the wall-clock time a run takes
# (Redis's TTLs keep running) stays far below the model's resolution.
IDLE_TTL, MAX_LIFETIME = 100, 250

contexts = st.builds(
    lambda env, tenant, team, user: TenantCtx.new(env, tenant, team=team, user=user),
    st.sampled_from(ENVS),
    st.sampled_from(TENANTS),
    st.sampled_from(TEAMS),
    st.sampled_from(USERS),
)
users = st.sampled_from([u for u in USERS if u is not None])
states = st.integers(0, 3)
# Waits: few tenants and a team "-" (its Redis keys coincide with no team's), so waits collide.
wait_contexts = st.builds(
    lambda tenant, team, user: TenantCtx.new("dev", tenant, team=team, user=user),
    st.sampled_from(TENANTS[:2]),
    st.sampled_from([None, "-", "team-a"]),
    st.sampled_from(USERS),
)
scopes = st.sampled_from(["chat-1", "chat-2"])
wait_ttls = st.sampled_from([None, 30, 150])
# Deadlines and leases off the tens time moves in, so none falls on a boundary; 45 is refused
# under a ttl of 30.
due_ins = st.sampled_from([None, 5, 15, 25, 45])
LEASE = 15

Owner = tuple[str, str, str | None, str | None]
Slot = tuple[str, str, str | None, str]
WaitAt = tuple[tuple[str, str, str, str], str]  # (env, tenant_id, team or "-", user), scope


def wait_segments(ctx: TenantCtx, user: str) -> tuple[str, str, str, str]:
    return (ctx.env, ctx.tenant_id, ctx.normalized_team or "-", user)


def owner_of(ctx: TenantCtx) -> Owner:
    return (ctx.env, ctx.tenant_id, ctx.normalized_team, ctx.normalized_user)


def may_create(caller: TenantCtx, owner: TenantCtx) -> bool:
    mine, theirs = owner_of(caller), owner_of(owner)
    return mine[:3] == theirs[:3] and (theirs[3] is None or theirs[3] == mine[3])


@dataclass
class Stored:
    data: SessionData
    created: float
    expires: float | None
    version: int  # new for every write, across keys: a key created anew has a new revision
    wait: WaitAt | None = None  # where it waits, while it is a wait
    wait_ttl: float | None = None  # its ttl (idle time under expiry options)
    due: float | None = None  # its deadline, while it is a wait with one
    attempt: int = 0  # claims of that deadline so far
    leased_until: float = -math.inf
    lease_id: str | None = None  # the current lease's

    def claimable(self, now: float) -> bool:
        return self.due is not None and self.due <= now and self.leased_until <= now


@dataclass
class Model:
    """What a correct store holds: live sessions by key and each user slot's newest key."""

    expiry: bool
    now: float = 0.0
    sessions: dict[str, Stored] = field(default_factory=dict)
    pointers: dict[Slot, str] = field(default_factory=dict)
    waits: dict[WaitAt, str] = field(default_factory=dict)
    versions: itertools.count[int] = field(default_factory=itertools.count)

    def deadline(self, created: float) -> float | None:
        if not self.expiry:
            return None
        return min(self.now + IDLE_TTL, created + MAX_LIFETIME)

    def restarted(self, stored: Stored) -> float | None:
        """A stored session's deadline after a write or touch now."""
        if not self.expiry:
            return stored.expires  # kept as it is (a wait's)
        if stored.wait is None:
            return self.deadline(stored.created)
        idle = math.inf if stored.wait_ttl is None else stored.wait_ttl
        return min(self.now + idle, stored.created + MAX_LIFETIME)

    def drop(self, key: str) -> None:
        stored = self.sessions.pop(key)
        if stored.wait is not None and self.waits.get(stored.wait) == key:
            del self.waits[stored.wait]

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for key, stored in list(self.sessions.items()):
            if stored.expires is not None and stored.expires <= self.now:
                self.drop(key)

    def wait_at(self, at: WaitAt, team: str | None) -> str | None:
        """The key waiting at `at`, if a lookup by `team` may see it (team "-" is not none)."""
        key = self.waits.get(at)
        if key is None:
            return None
        return key if self.sessions[key].data.tenant_ctx.normalized_team == team else None

    def add(self, key: str, data: SessionData, slot: Slot | None) -> None:
        self.sessions[key] = Stored(data, self.now, self.deadline(self.now), next(self.versions))
        if slot is not None:
            self.pointers[slot] = key

    def write(self, key: str, data: SessionData) -> None:
        stored = self.sessions[key]
        stored.data, stored.version = data, next(self.versions)
        stored.expires = self.restarted(stored)

    def at(self, slot: Slot) -> str | None:
        """The live session `slot` points at, if the slot may see it."""
        key = self.pointers.get(slot)
        if key is None or key not in self.sessions:
            return None
        owner = owner_of(self.sessions[key].data.tenant_ctx)
        if owner[:3] != slot[:3] or owner[3] not in (None, slot[3]):
            return None
        return key


def build_machine(
    backend: Backend,
    redis_url: str | None,
    expiry: bool,
    raw_url: str | None = None,
    loop: str = "asyncio",
) -> type[RuleBasedStateMachine]:
    """The state machine for stores of `backend` opened on `redis_url`, run on event loop `loop`;
    `raw_url` is a plain URL of the server holding their keys (a cluster's masters,
    comma-separated), default `redis_url`."""
    raw_url = raw_url or redis_url

    class StoreMachine(RuleBasedStateMachine):
        keys = Bundle("keys")
        revisions = Bundle("revisions")
        dues = Bundle("dues")

        def __init__(self) -> None:
            super().__init__()
            self.runner = asyncio.Runner(loop_factory=loop_factory(loop))
            self.namespace = f"model-{uuid.uuid4().hex}"
            self.clock = ManualClock()
            options: dict[str, Any] = {}
            if expiry:
                options = {"idle_ttl": IDLE_TTL, "max_lifetime": MAX_LIFETIME}
            self.store: SessionStore = backend.open(
                redis_url=redis_url,
                namespace=self.namespace,
                clock=None if backend.needs_redis else self.clock,
                **options,
            )
            self.model = Model(expiry)
            self.writes = itertools.count()
            self.used: set[str] = set()
            self.waited: list[tuple[TenantCtx, str, str]] = []  # registered (ctx, user, scope)

        def run(self, coro: Coroutine[Any, Any, T]) -> T:
            return self.runner.run(coro)

        def fresh(self, owner: TenantCtx, state: int, node: str = "node.wait") -> SessionData:
            # Every write stores bytes never stored before, so a revision names one write.
            return make_data(owner, node=node, state=f'{{"n":{state},"w":{next(self.writes)}}}')

        def teardown(self) -> None:
            self.run(self.store.aclose())
            if raw_url is not None:
                self.run(drop_namespace(raw_url, self.namespace))
            self.runner.close()

        @rule(
            target=keys,
            caller=contexts,
            owner=contexts,
            same=st.booleans(),
            state=states,
            named=st.sampled_from([None, "chat-1", "chat-2"]),
        )
        def create(
            self, caller: TenantCtx, owner: TenantCtx, same: bool, state: int, named: str | None
        ) -> str:
            # Half the time the data is the caller's own (maybe user-less): creates often succeed.
            if same:
                owner = caller if owner.user is None else caller.with_user(None)
            data = self.fresh(owner, state)
            if not may_create(caller, owner):
                with pytest.raises(InvalidInputError):
                    self.run(self.store.create_session(caller, data, key=named))
                return "never-created"
            if named is not None and named in self.model.sessions:
                with pytest.raises(ConflictError):
                    self.run(self.store.create_session(caller, data, key=named))
                return named
            key = self.run(self.store.create_session(caller, data, key=named))
            theirs, mine = owner_of(owner), owner_of(caller)
            user = theirs[3] or mine[3]
            slot = None if user is None else (theirs[0], theirs[1], theirs[2], user)
            self.model.add(key, data, slot)
            self.used.add(key)
            return key

        def _expect_write(self, key: str, owner: TenantCtx, version: int | None) -> type | None:
            """The error a write of data owned by `owner` should raise, or None."""
            stored = self.model.sessions.get(key)
            if stored is None:
                return NotFoundError
            if version is not None and stored.version != version:
                return ConflictError
            if owner_of(stored.data.tenant_ctx) != owner_of(owner):
                return InvalidInputError
            return None

        def _owner_for(self, key: str, owner: TenantCtx) -> TenantCtx:
            stored = self.model.sessions.get(key)
            if stored is not None and owner.normalized_user is None:
                return stored.data.tenant_ctx  # often keep the owner, so writes succeed often
            return owner

        @rule(key=keys, owner=contexts, state=states)
        def update(self, key: str, owner: TenantCtx, state: int) -> None:
            owner = self._owner_for(key, owner)
            data = self.fresh(owner, state, node="node.updated")
            error = self._expect_write(key, owner, None)
            if error is not None:
                with pytest.raises(error):
                    self.run(self.store.update_session(key, data))
                return
            self.run(self.store.update_session(key, data))
            self.model.write(key, data)

        @rule(target=revisions, key=keys)
        def snapshot(self, key: str) -> tuple[str, str, int]:
            entry = self.run(self.store.get_entry(key))
            stored = self.model.sessions.get(key)
            if stored is None:
                assert entry is None
                return (key, "no-such-revision", -1)
            assert entry is not None
            assert entry.data == stored.data
            return (key, entry.revision, stored.version)

        @rule(seen=revisions, owner=contexts, state=states)
        def compare_and_set(self, seen: tuple[str, str, int], owner: TenantCtx, state: int) -> None:
            key, revision, version = seen
            owner = self._owner_for(key, owner)
            data = self.fresh(owner, state, node="node.cas")
            error = self._expect_write(key, owner, version)
            write = self.store.update_session(key, data, expected_revision=revision)
            if error is not None:
                with pytest.raises(error):
                    self.run(write)
                return
            self.run(write)
            self.model.write(key, data)

        @rule(key=keys)
        def touch(self, key: str) -> None:
            if key not in self.model.sessions:
                with pytest.raises(NotFoundError):
                    self.run(self.store.touch_session(key))
                return
            self.run(self.store.touch_session(key))
            stored = self.model.sessions[key]
            stored.expires = self.model.restarted(stored)

        @rule(key=consumes(keys))
        def remove(self, key: str) -> None:
            if key not in self.model.sessions:
                with pytest.raises(NotFoundError):
                    self.run(self.store.remove_session(key))
                return
            self.run(self.store.remove_session(key))
            self.model.drop(key)

        @rule(key=keys)
        def get(self, key: str) -> None:
            stored = self.model.sessions.get(key)
            assert self.run(self.store.get_session(key)) == (stored and stored.data)

        @rule(ctx=contexts, user=users)
        def find(self, ctx: TenantCtx, user: str) -> None:
            slot = (ctx.env, ctx.tenant_id, ctx.normalized_team, user)
            key = self.model.at(slot)
            expected = None if key is None else (key, self.model.sessions[key].data)
            assert self.run(self.store.find_by_user(ctx, user)) == expected

        @rule(target=keys, ctx=contexts, user=users, owner_user=st.booleans(), state=states)
        def find_or_create(self, ctx: TenantCtx, user: str, owner_user: bool, state: int) -> str:
            slot = (ctx.env, ctx.tenant_id, ctx.normalized_team, user)
            built = self.fresh(ctx.with_user(user if owner_user else None), state)
            call = self.store.find_or_create(ctx, user, lambda: built)
            if ctx.normalized_user not in (None, user):
                with pytest.raises(InvalidInputError):
                    self.run(call)
                return "never-created"
            existing = self.model.at(slot)
            entry, created = self.run(call)
            if existing is not None:
                assert (entry.key, entry.data, created) == (
                    existing,
                    self.model.sessions[existing].data,
                    False,
                )
                return existing
            assert created
            assert entry.data == built
            self.model.add(entry.key, built, slot)
            self.used.add(entry.key)
            return entry.key

        # -- reply-scope waits ----------------------------------------------------------------

        @rule(
            target=keys,
            ctx=wait_contexts,
            user=users,
            aligned=st.sampled_from([True, True, True, False]),
            owner=wait_contexts,
            where=scopes,
            named=st.sampled_from(["w1", "w2", "w3"]),
            ttl=wait_ttls,
            due_in=due_ins,
            state=states,
        )
        def register_wait(
            self,
            *,
            ctx: TenantCtx,
            user: str,
            aligned: bool,
            owner: TenantCtx,
            where: str,
            named: str,
            ttl: int | None,
            due_in: int | None,
            state: int,
        ) -> str:
            if aligned:  # most registrations are well-formed, so waits pile up
                ctx = owner = ctx.with_user(user)
            data = self.fresh(owner, state, node="node.wait")
            # The key of `user`'s session in the caller's tenant and team (on a cluster led by
            # that user's hash tag, which a wait's key must carry); `named` elsewhere.
            key = self.store.session_key_for(ctx, user, named)
            call = self.store.register_wait(
                ctx, user, ReplyScope(conversation=where), key, data, ttl=ttl, due_in=due_in
            )
            mine, theirs = owner_of(ctx), owner_of(owner)
            existing = self.model.sessions.get(key)
            wait_ttl: float | None = ttl if ttl is not None else (IDLE_TTL if expiry else None)
            if (
                mine[:3] != theirs[:3]
                or not mine[3] == theirs[3] == user
                or (existing is not None and owner_of(existing.data.tenant_ctx) != theirs)
                or (due_in is not None and wait_ttl is not None and due_in >= wait_ttl)
            ):
                with pytest.raises(InvalidInputError):
                    self.run(call)
                return key
            self.run(call)
            model = self.model
            at = (wait_segments(ctx, user), where)
            if existing is not None and existing.wait not in (None, at):
                assert existing.wait is not None
                if model.waits.get(existing.wait) == key:
                    del model.waits[existing.wait]
            previous = model.waits.get(at)
            if previous is not None and previous != key:
                # Superseded: a session, not a wait, and so without a deadline.
                model.sessions[previous].wait = None
                model.sessions[previous].due = None
            created = model.now if existing is None else existing.created
            expires = None if wait_ttl is None else model.now + wait_ttl
            if expiry:
                assert expires is not None
                expires = min(expires, created + MAX_LIFETIME)
            model.sessions[key] = Stored(
                data,
                created,
                expires,
                next(model.versions),
                at,
                wait_ttl,
                None if due_in is None else model.now + due_in,
            )
            model.waits[at] = key
            self.used.add(key)
            self.waited.append((ctx, user, where))
            return key

        @rule(
            target=keys,
            ctx=wait_contexts,
            user=users,
            where=scopes,
            n=st.integers(1, 2),
            ttl=wait_ttls,
            due_in=st.sampled_from([5, 15, 25]),
            state=states,
        )
        def register_due_wait(
            self,
            *,
            ctx: TenantCtx,
            user: str,
            where: str,
            n: int,
            ttl: int | None,
            due_in: int,
            state: int,
        ) -> str:
            """A well-formed registration with a deadline (its key the user's own), so that
            deadlines pile up."""
            ctx = ctx.with_user(user)
            return self.register_wait(
                ctx=ctx,
                user=user,
                aligned=True,
                owner=ctx,
                where=where,
                named=f"d{n}-{user}",
                ttl=ttl,
                due_in=due_in,
                state=state,
            )

        def _lookup(
            self, ctx: TenantCtx, user: str, where: str, pick: int | None, swap: bool
        ) -> tuple[TenantCtx, str, str]:
            """Usually a registered wait's own (ctx, user, scope), maybe with its team swapped
            between none and "-" (same Redis keys, other owner); else the drawn ones."""
            if pick is None or not self.waited:
                return ctx, user, where
            ctx, user, where = self.waited[pick % len(self.waited)]
            if swap and ctx.normalized_team in (None, "-"):
                ctx = ctx.with_team("-" if ctx.normalized_team is None else None)
            return ctx, user, where

        def _refused(self, call: Coroutine[Any, Any, Any], ctx: TenantCtx, user: str) -> bool:
            """Run a wait lookup the store must refuse (ctx names another user); True if so."""
            if ctx.normalized_user in (None, user):
                return False
            with pytest.raises(InvalidInputError):
                self.run(call)
            return True

        @rule(
            ctx=wait_contexts,
            user=users,
            where=scopes,
            pick=st.none() | st.integers(0, 50),
            swap=st.booleans(),
        )
        def find_wait(
            self, ctx: TenantCtx, user: str, where: str, pick: int | None, swap: bool
        ) -> None:
            ctx, user, where = self._lookup(ctx, user, where, pick, swap)
            call = self.store.find_wait_by_scope(ctx, user, ReplyScope(conversation=where))
            if self._refused(call, ctx, user):
                return
            at = (wait_segments(ctx, user), where)
            assert self.run(call) == self.model.wait_at(at, ctx.normalized_team)

        @rule(
            ctx=wait_contexts, user=users, pick=st.none() | st.integers(0, 50), swap=st.booleans()
        )
        def list_waits(self, ctx: TenantCtx, user: str, pick: int | None, swap: bool) -> None:
            ctx, user, _ = self._lookup(ctx, user, "", pick, swap)
            call = self.store.list_waits_for_user(ctx, user)
            if self._refused(call, ctx, user):
                return
            segments = wait_segments(ctx, user)
            expected = [
                key
                for at in self.model.waits
                if at[0] == segments
                and (key := self.model.wait_at(at, ctx.normalized_team)) is not None
            ]
            assert sorted(self.run(call)) == sorted(expected)

        @rule(
            ctx=wait_contexts,
            user=users,
            where=scopes,
            pick=st.none() | st.integers(0, 50),
            swap=st.booleans(),
        )
        def clear_wait(
            self, ctx: TenantCtx, user: str, where: str, pick: int | None, swap: bool
        ) -> None:
            ctx, user, where = self._lookup(ctx, user, where, pick, swap)
            call = self.store.clear_wait(ctx, user, ReplyScope(conversation=where))
            if self._refused(call, ctx, user):
                return
            self.run(call)
            key = self.model.wait_at((wait_segments(ctx, user), where), ctx.normalized_team)
            if key is not None:
                self.model.drop(key)

        # -- deadlines ----------------------------------------------------------------------

        @rule(
            target=dues, limit=st.sampled_from([1, 2, 100]), tens=st.sampled_from([0, 1, 2, 3, 6])
        )
        def claim_due(self, limit: int, tens: int) -> Any:
            self._advance(10 * tens)  # deadlines come due: claims after time passed find some
            claimed = self.run(self.store.claim_due_waits(limit=limit, lease=LEASE))
            model = self.model
            due_now = {key for key, stored in model.sessions.items() if stored.claimable(model.now)}
            assert len(claimed) == min(limit, len(due_now))
            event("claim: some" if claimed else "claim: none")
            assert len({due.key for due in claimed}) == len(claimed)
            for due in claimed:
                assert due.key in due_now
                stored = model.sessions[due.key]
                assert stored.wait is not None
                assert (due.scope, due.user_id) == (
                    ReplyScope(conversation=stored.wait[1]),
                    stored.wait[0][3],
                )
                assert due.entry.data == stored.data
                assert due.attempt == stored.attempt + 1
                stored.attempt, stored.lease_id = due.attempt, due.lease_id
                stored.leased_until = model.now + LEASE
            return multiple(*claimed)

        @rule(due=dues)
        def settle_due(self, due: DueWait) -> None:
            stored = self.model.sessions.get(due.key)
            current = stored is not None and stored.due is not None
            current = current and stored is not None and stored.lease_id == due.lease_id
            assert self.run(self.store.settle_due(due)) == current
            event(f"settle: {current}")
            if current and stored is not None:
                stored.due, stored.attempt, stored.lease_id = None, 0, None

        @rule(tens=st.integers(1, 6))
        def time_passes(self, tens: int) -> None:
            self._advance(10 * tens)

        def _advance(self, seconds: int) -> None:
            if not seconds:
                return
            self.clock.now += seconds
            if raw_url is not None:
                self.run(shift_ttls(raw_url, self.namespace, seconds))
                self.run(shift_deadlines(raw_url, self.namespace, seconds))
            self.model.advance(seconds)

        @invariant()
        def every_live_session_reads_back_and_no_other(self) -> None:
            # Every key the run has used: live ones read back as modelled, the rest as absent.
            for key in self.used:
                stored = self.model.sessions.get(key)
                got = self.run(self.store.get_session(key))
                assert got == (None if stored is None else stored.data)

    return StoreMachine


# Every cell on Redis's engine (the model's rules are the engine's Lua, which the conformance
# suites run on Valkey too).
MODEL_CELLS = [cell for cell in CELL_PARAMS if cell.values[0].server != "valkey"]


@pytest.mark.slow
@pytest.mark.parametrize("expiry", [False, True], ids=["no-expiry", "expiry"])
@pytest.mark.parametrize(("backend", "loop"), MODEL_CELLS)
def test_store_matches_the_model(
    backend: Backend, loop: str, expiry: bool, request: pytest.FixtureRequest
) -> None:
    """Any sequence of operations leaves the store agreeing with the plain model, on every loop."""
    url, raw_url = backend_urls(request, backend)
    machine = build_machine(backend, url, expiry, raw_url, loop)
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=50,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
