"""Random sequences of every store call, with and without expiry, on every backend, checked
against a plain model: create (random and caller keys), update, compare-and-set from fresh and
stale revisions, touch, remove, get, find, find_or_create, and time passing."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    rule,
    run_state_machine_as_test,
)

from greentic_session import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    SessionData,
    SessionStore,
    TenantCtx,
)
from greentic_session.testing import Backend
from tests.conftest import BACKEND_PARAMS, ManualClock, drop_namespace, make_data, shift_ttls

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

Owner = tuple[str, str, str | None, str | None]
Slot = tuple[str, str, str | None, str]


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


@dataclass
class Model:
    """What a correct store holds: live sessions by key and each user slot's newest key."""

    expiry: bool
    now: float = 0.0
    sessions: dict[str, Stored] = field(default_factory=dict)
    pointers: dict[Slot, str] = field(default_factory=dict)
    versions: itertools.count[int] = field(default_factory=itertools.count)

    def deadline(self, created: float) -> float | None:
        if not self.expiry:
            return None
        return min(self.now + IDLE_TTL, created + MAX_LIFETIME)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for key, stored in list(self.sessions.items()):
            if stored.expires is not None and stored.expires <= self.now:
                del self.sessions[key]

    def add(self, key: str, data: SessionData, slot: Slot | None) -> None:
        self.sessions[key] = Stored(data, self.now, self.deadline(self.now), next(self.versions))
        if slot is not None:
            self.pointers[slot] = key

    def write(self, key: str, data: SessionData) -> None:
        stored = self.sessions[key]
        stored.data, stored.version = data, next(self.versions)
        stored.expires = self.deadline(stored.created)

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
    backend: Backend, redis_url: str | None, expiry: bool
) -> type[RuleBasedStateMachine]:
    class StoreMachine(RuleBasedStateMachine):
        keys = Bundle("keys")
        revisions = Bundle("revisions")

        def __init__(self) -> None:
            super().__init__()
            self.runner = asyncio.Runner()
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

        def run(self, coro: Coroutine[Any, Any, T]) -> T:
            return self.runner.run(coro)

        def fresh(self, owner: TenantCtx, state: int, node: str = "node.wait") -> SessionData:
            # Every write stores bytes never stored before, so a revision names one write.
            return make_data(owner, node=node, state=f'{{"n":{state},"w":{next(self.writes)}}}')

        def teardown(self) -> None:
            self.run(self.store.aclose())
            if redis_url is not None:
                self.run(drop_namespace(redis_url, self.namespace))
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
            stored.expires = self.model.deadline(stored.created)

        @rule(key=consumes(keys))
        def remove(self, key: str) -> None:
            if key not in self.model.sessions:
                with pytest.raises(NotFoundError):
                    self.run(self.store.remove_session(key))
                return
            self.run(self.store.remove_session(key))
            del self.model.sessions[key]

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

        @rule(tens=st.integers(1, 6))
        def time_passes(self, tens: int) -> None:
            seconds = 10 * tens
            self.clock.now += seconds
            if redis_url is not None:
                self.run(shift_ttls(redis_url, self.namespace, seconds))
            self.model.advance(seconds)

        @invariant()
        def every_live_session_reads_back_and_no_other(self) -> None:
            # Every key the run has used: live ones read back as modelled, the rest as absent.
            for key in self.used:
                stored = self.model.sessions.get(key)
                got = self.run(self.store.get_session(key))
                assert got == (None if stored is None else stored.data)

    return StoreMachine


@pytest.mark.parametrize("expiry", [False, True], ids=["no-expiry", "expiry"])
@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_store_matches_the_model(
    backend: Backend, expiry: bool, request: pytest.FixtureRequest
) -> None:
    """Any sequence of operations leaves the store agreeing with the plain model."""
    url = request.getfixturevalue("redis_url") if backend.needs_redis else None
    machine = build_machine(backend, url, expiry)
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=50,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
