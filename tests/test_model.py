"""Random create/update/remove/find/get sequences on every backend, checked against a model."""

from __future__ import annotations

import asyncio
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
    InvalidInputError,
    NotFoundError,
    SessionData,
    SessionStore,
    TenantCtx,
)
from greentic_session.testing import Backend
from tests.conftest import BACKEND_PARAMS, drop_namespace, make_data

T = TypeVar("T")

ENVS = ["dev", "prod"]
TENANTS = ["t1", "t2", "t3"]
TEAMS = [None, "team-a", "team-b"]
USERS = [None, "u1", "u2", "u3"]

contexts = st.builds(
    lambda env, tenant, team, user: TenantCtx.new(env, tenant, team=team, user=user),
    st.sampled_from(ENVS),
    st.sampled_from(TENANTS),
    st.sampled_from(TEAMS),
    st.sampled_from(USERS),
)
users = st.sampled_from([u for u in USERS if u is not None])
states = st.integers(0, 3).map(lambda n: f'{{"n":{n}}}')

Owner = tuple[str, str, str | None, str | None]


def owner_of(ctx: TenantCtx) -> Owner:
    return (ctx.env, ctx.tenant_id, ctx.normalized_team, ctx.normalized_user)


@dataclass
class Model:
    """What a correct store holds: snapshots by key, and each user slot's newest key."""

    sessions: dict[str, SessionData] = field(default_factory=dict)
    pointers: dict[tuple[str, str, str | None, str], str] = field(default_factory=dict)


def build_machine(backend: Backend, redis_url: str | None) -> type[RuleBasedStateMachine]:
    class StoreMachine(RuleBasedStateMachine):
        keys = Bundle("keys")

        def __init__(self) -> None:
            super().__init__()
            self.runner = asyncio.Runner()
            self.namespace = f"model-{uuid.uuid4().hex}"
            self.store: SessionStore = backend.open(redis_url=redis_url, namespace=self.namespace)
            self.model = Model()

        def run(self, coro: Coroutine[Any, Any, T]) -> T:
            return self.runner.run(coro)

        def teardown(self) -> None:
            self.run(self.store.aclose())
            if redis_url is not None:
                self.run(drop_namespace(redis_url, self.namespace))
            self.runner.close()

        @rule(target=keys, caller=contexts, owner=contexts, same=st.booleans(), state=states)
        def create(self, caller: TenantCtx, owner: TenantCtx, same: bool, state: str) -> str:
            # Half the time the data is the caller's own (maybe user-less): creates often succeed.
            if same:
                owner = caller if owner.user is None else caller.with_user(None)
            data = make_data(owner, state=state)
            mine, theirs = owner_of(caller), owner_of(owner)
            allowed = mine[:3] == theirs[:3] and (theirs[3] is None or theirs[3] == mine[3])
            if not allowed:
                with pytest.raises(InvalidInputError):
                    self.run(self.store.create_session(caller, data))
                return "never-created"
            key = self.run(self.store.create_session(caller, data))
            self.model.sessions[key] = data
            user = theirs[3] or mine[3]
            if user is not None:
                self.model.pointers[(theirs[0], theirs[1], theirs[2], user)] = key
            return key

        @rule(key=keys, owner=contexts, state=states)
        def update(self, key: str, owner: TenantCtx, state: str) -> None:
            stored = self.model.sessions.get(key)
            if stored is not None and owner.normalized_user is None:
                owner = stored.tenant_ctx  # often keep the owner, so updates succeed often
            data = make_data(owner, node="node.updated", state=state)
            if stored is None:
                with pytest.raises(NotFoundError):
                    self.run(self.store.update_session(key, data))
            elif owner_of(stored.tenant_ctx) != owner_of(owner):
                with pytest.raises(InvalidInputError):
                    self.run(self.store.update_session(key, data))
            else:
                self.run(self.store.update_session(key, data))
                self.model.sessions[key] = data

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
            assert self.run(self.store.get_session(key)) == self.model.sessions.get(key)

        @rule(ctx=contexts, user=users)
        def find(self, ctx: TenantCtx, user: str) -> None:
            slot = (ctx.env, ctx.tenant_id, ctx.normalized_team, user)
            key = self.model.pointers.get(slot)
            expected = None
            if key is not None and key in self.model.sessions:
                expected = (key, self.model.sessions[key])
            found = self.run(self.store.find_by_user(ctx, user))
            assert found == expected
            if found is not None:
                owner = owner_of(found[1].tenant_ctx)
                assert owner[:3] == slot[:3]
                assert owner[3] in (None, user)

        @invariant()
        def model_keys_are_all_readable(self) -> None:
            # Cheap spot check: the newest session in the model reads back as modelled.
            if self.model.sessions:
                key = next(reversed(self.model.sessions))
                assert self.run(self.store.get_session(key)) == self.model.sessions[key]

    return StoreMachine


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_store_matches_the_model(backend: Backend, request: pytest.FixtureRequest) -> None:
    """Any sequence of operations leaves the store agreeing with the plain model."""
    url = request.getfixturevalue("redis_url") if backend.needs_redis else None
    machine = build_machine(backend, url)
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=60,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
