"""Every SessionStore rule, written once, run against every backend in the table."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from greentic_session import (
    ErrorCode,
    InvalidInputError,
    NotFoundError,
    SessionData,
    SessionStore,
    StoreClosedError,
    TenantCtx,
    UnavailableError,
)
from tests.conftest import gather, make_data
from tests.identities import ALICE, BOB, NO_USER

# (ALICE, a context in another env or tenant, the rule named): shared by both fence tables.
OTHER_ENV_OR_TENANT = [
    pytest.param(
        ALICE, TenantCtx.new(env, tenant, team="support", user="alice"), "env/tenant", id=id_
    )
    for env, tenant, id_ in [("prod", "tenant-42", "env"), ("dev", "tenant-43", "tenant")]
]


async def test_create_then_get_returns_an_equal_snapshot(store: SessionStore) -> None:
    """A created session reads back equal to what was stored, under a fresh non-empty key."""
    data = make_data(ALICE, state='{"ticket":123}')
    key = await store.create_session(ALICE, data)
    assert isinstance(key, str)
    assert key
    assert await store.get_session(key) == data


async def test_every_create_gets_its_own_key(store: SessionStore) -> None:
    """Two creates of identical data get distinct keys and both stay readable."""
    data = make_data(ALICE)
    first = await store.create_session(ALICE, data)
    second = await store.create_session(ALICE, data)
    assert first != second
    assert await store.get_session(first) == data
    assert await store.get_session(second) == data


async def test_get_of_an_unknown_key_is_none(store: SessionStore) -> None:
    """Reading a key that was never created returns None."""
    assert await store.get_session("no-such-session") is None


async def test_quickstart_flow_create_get_find_update_remove(store: SessionStore) -> None:
    """The Rust crate's end-to-end flow: create, get, find_by_user, update, remove."""
    ctx = TenantCtx.new("dev", "tenant-42", user="user-7")
    data = make_data(ctx, node="node.wait_input", state='{"ticket":123}')
    key = await store.create_session(ctx, data)
    assert await store.get_session(key) == data
    assert await store.find_by_user(ctx, "user-7") == (key, data)

    resumed = msgspec.structs.replace(data, context_json='{"ticket":123,"step":2}')
    await store.update_session(key, resumed)
    assert await store.get_session(key) == resumed
    assert await store.find_by_user(ctx, "user-7") == (key, resumed)

    await store.remove_session(key)
    assert await store.get_session(key) is None
    assert await store.find_by_user(ctx, "user-7") is None


# -- the create fence --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("caller", "owner", "rule"),
    [
        *OTHER_ENV_OR_TENANT,
        pytest.param(ALICE, ALICE.with_team("sales"), "team", id="team-mismatch"),
        pytest.param(ALICE, ALICE.with_team(None), "team", id="team-missing-in-data"),
        pytest.param(ALICE.with_team(None), ALICE, "team", id="team-missing-in-caller"),
        pytest.param(BOB, ALICE, "user", id="other-user"),
        pytest.param(NO_USER, ALICE, "user", id="caller-without-user"),
    ],
)
async def test_create_outside_the_fence_is_refused_and_writes_nothing(
    store: SessionStore, caller: TenantCtx, owner: TenantCtx, rule: str
) -> None:
    """A create whose data is not the caller's names the broken rule and stores nothing."""
    with pytest.raises(InvalidInputError, match=rf"\({rule}\)") as caught:
        await store.create_session(caller, make_data(owner))
    assert "alice" not in caught.value.message
    assert "bob" not in caught.value.message
    assert await store.find_by_user(owner, "alice") is None


async def test_team_absent_on_both_sides_is_equal(store: SessionStore) -> None:
    """A caller and data that both have no team agree on the team."""
    ctx = TenantCtx.new("dev", "tenant-42", user="alice")
    key = await store.create_session(ctx, make_data(ctx))
    assert await store.find_by_user(ctx, "alice") == (key, make_data(ctx))


async def test_team_id_and_team_normalize_to_one_team(store: SessionStore) -> None:
    """`team_id` wins over `team` on both sides, so equal normalized teams pass the fence."""
    caller = msgspec.structs.replace(ALICE, team="display-name", team_id="support")
    key = await store.create_session(caller, make_data(ALICE))
    assert await store.find_by_user(caller, "alice") == (key, make_data(ALICE))


async def test_userless_data_is_found_by_the_creating_callers_user(store: SessionStore) -> None:
    """Data without a user is pointed to from the caller's user, and the data stays user-less."""
    data = make_data(NO_USER)
    key = await store.create_session(ALICE, data)
    assert await store.find_by_user(ALICE, "alice") == (key, data)
    assert await store.find_by_user(ALICE, "bob") is None


async def test_no_user_anywhere_creates_no_pointer(store: SessionStore) -> None:
    """With no user on data or caller the session exists but no user lookup finds it."""
    key = await store.create_session(NO_USER, make_data(NO_USER))
    assert await store.get_session(key) == make_data(NO_USER)
    assert await store.find_by_user(NO_USER, "alice") is None


# -- the update fence --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stored", "changed", "rule"),
    [
        *OTHER_ENV_OR_TENANT,
        pytest.param(ALICE, ALICE.with_team("sales"), "team", id="team"),
        pytest.param(ALICE, ALICE.with_team(None), "team", id="team-dropped"),
        pytest.param(ALICE, BOB, "user", id="user-changed"),
        pytest.param(ALICE, NO_USER, "user", id="user-dropped"),
        pytest.param(NO_USER, ALICE, "user", id="user-introduced"),
    ],
)
async def test_update_cannot_change_the_owner(
    store: SessionStore, stored: TenantCtx, changed: TenantCtx, rule: str
) -> None:
    """An update that changes env, tenant, team or user names the rule and leaves the data as is."""
    original = make_data(stored)
    key = await store.create_session(ALICE, original)
    with pytest.raises(InvalidInputError, match=rf"\({rule}\)"):
        await store.update_session(key, make_data(changed, node="node.moved"))
    assert await store.get_session(key) == original


async def test_update_may_change_everything_but_the_owner(store: SessionStore) -> None:
    """Flow, cursor, state and non-owner context fields are all replaceable."""
    key = await store.create_session(ALICE, make_data(ALICE))
    richer = msgspec.structs.replace(ALICE, attempt=3, trace_id="t-1", attributes={"k": "v"})
    replacement = make_data(richer, flow="other.flow", node="node.done", state='{"x":1}')
    await store.update_session(key, replacement)
    assert await store.get_session(key) == replacement


async def test_update_of_a_missing_session_is_not_found(store: SessionStore) -> None:
    """Updating a key that does not exist raises NotFoundError and creates nothing."""
    with pytest.raises(NotFoundError):
        await store.update_session("no-such-session", make_data(ALICE))
    assert await store.get_session("no-such-session") is None


async def test_update_after_remove_does_not_resurrect(store: SessionStore) -> None:
    """Once removed, a session cannot be brought back by an update."""
    key = await store.create_session(ALICE, make_data(ALICE))
    await store.remove_session(key)
    with pytest.raises(NotFoundError):
        await store.update_session(key, make_data(ALICE))
    assert await store.get_session(key) is None


# -- remove and the user pointer ---------------------------------------------------------------


async def test_remove_of_a_missing_session_is_not_found(store: SessionStore) -> None:
    """Removing an unknown key, or the same key twice, raises NotFoundError."""
    with pytest.raises(NotFoundError):
        await store.remove_session("no-such-session")
    key = await store.create_session(ALICE, make_data(ALICE))
    await store.remove_session(key)
    with pytest.raises(NotFoundError):
        await store.remove_session(key)


async def test_newest_session_of_a_user_wins_the_pointer(store: SessionStore) -> None:
    """find_by_user returns the user's most recently created session."""
    await store.create_session(ALICE, make_data(ALICE, node="first"))
    newest = await store.create_session(ALICE, make_data(ALICE, node="second"))
    assert await store.find_by_user(ALICE, "alice") == (newest, make_data(ALICE, node="second"))


async def test_removing_an_older_session_keeps_the_pointer_to_the_newer(
    store: SessionStore,
) -> None:
    """Remove clears the pointer only when it points at the removed session."""
    older = await store.create_session(ALICE, make_data(ALICE, node="first"))
    newer = await store.create_session(ALICE, make_data(ALICE, node="second"))
    await store.remove_session(older)
    assert await store.find_by_user(ALICE, "alice") == (newer, make_data(ALICE, node="second"))


async def test_after_removal_find_falls_back_to_none(store: SessionStore) -> None:
    """Removing the session a pointer leads to makes find_by_user return None, even user-less."""
    with_user = await store.create_session(ALICE, make_data(ALICE))
    await store.remove_session(with_user)
    assert await store.find_by_user(ALICE, "alice") is None
    userless = await store.create_session(BOB, make_data(NO_USER))
    await store.remove_session(userless)
    assert await store.find_by_user(BOB, "bob") is None


# -- find_by_user across the fence ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("finder", "user"),
    [
        pytest.param(ALICE.with_team("sales"), "alice", id="wrong-team"),
        pytest.param(ALICE.with_team(None), "alice", id="no-team"),
        pytest.param(ALICE, "bob", id="wrong-user"),
        pytest.param(TenantCtx.new("dev", "tenant-43", team="support"), "alice", id="wrong-tenant"),
        pytest.param(TenantCtx.new("prod", "tenant-42", team="support"), "alice", id="wrong-env"),
    ],
)
async def test_find_by_user_never_crosses_the_fence(
    store: SessionStore, finder: TenantCtx, user: str
) -> None:
    """A lookup from another env, tenant, team or for another user finds nothing."""
    key = await store.create_session(ALICE, make_data(ALICE))
    assert await store.find_by_user(finder, user) is None
    assert await store.find_by_user(ALICE, "alice") == (key, make_data(ALICE))


async def test_find_by_user_ignores_the_callers_own_user(store: SessionStore) -> None:
    """The `user` argument, not ctx.user, selects the pointer."""
    key = await store.create_session(ALICE, make_data(ALICE))
    assert await store.find_by_user(BOB, "alice") == (key, make_data(ALICE))


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["get_session", "remove_session"])
async def test_an_empty_key_is_invalid_input(store: SessionStore, method: str) -> None:
    """Empty keys are refused with InvalidInputError."""
    with pytest.raises(InvalidInputError):
        await getattr(store, method)("")


async def test_key_and_data_types_are_checked_before_writing(store: SessionStore) -> None:
    """Wrong argument types raise TypeError, an empty key InvalidInputError; nothing changes."""
    key = await store.create_session(ALICE, make_data(ALICE))
    with pytest.raises(InvalidInputError):
        await store.update_session("", make_data(ALICE))
    with pytest.raises(TypeError):
        await store.get_session(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await store.update_session(key, {"flow_id": "x"})  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await store.create_session({"env": "dev"}, make_data(ALICE))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await store.create_session(ALICE, "not data")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await store.find_by_user("dev", "alice")  # type: ignore[arg-type]
    assert await store.get_session(key) == make_data(ALICE)
    assert await store.find_by_user(ALICE, "alice") == (key, make_data(ALICE))


# Fields msgspec does not type-check on construction, each with a value no runner could read.
UNWRITABLE = [
    pytest.param({"context_json": ["not", "a", "str"]}, "context_json", id="list-body"),
    pytest.param({"context_json": "\ud800"}, "context_json", id="lone-surrogate"),
    pytest.param({"cursor": "node.wait"}, "cursor", id="cursor-str"),
    pytest.param({"attributes": {"lang": 1}}, "attributes", id="attribute-int"),
    pytest.param({"trace_id": b"t"}, "trace_id", id="trace-bytes"),
    pytest.param({"deadline": {"unix_millis": 1}}, "deadline", id="deadline-dict"),
    pytest.param({"tenant_ctx": "alice"}, "tenant_ctx", id="ctx-str"),
]


def _unwritable(change: dict[str, Any]) -> SessionData:
    ctx_change = {k: v for k, v in change.items() if k in TenantCtx.__struct_fields__}
    ctx = msgspec.structs.replace(ALICE, **ctx_change)
    rest = {"tenant_ctx": ctx} | {k: v for k, v in change.items() if k not in ctx_change}
    return msgspec.structs.replace(make_data(ALICE), **rest)


@pytest.mark.parametrize(("change", "field"), UNWRITABLE)
async def test_unwritable_fields_are_refused_and_nothing_is_written(
    store: SessionStore, change: dict[str, object], field: str
) -> None:
    """Data whose fields break the schema is refused with InvalidInputError on create and update."""
    key = await store.create_session(ALICE, make_data(ALICE))
    bad = _unwritable(change)
    with pytest.raises(InvalidInputError, match=field):
        await store.create_session(ALICE, bad)
    with pytest.raises(InvalidInputError, match=field):
        await store.update_session(key, bad)
    assert await store.get_session(key) == make_data(ALICE)
    assert await store.find_by_user(ALICE, "alice") == (key, make_data(ALICE))


@pytest.mark.parametrize("user", ["", "al ice", "alice:x", "ålice", "a/b"])
async def test_find_by_user_rejects_invalid_user_ids(store: SessionStore, user: str) -> None:
    """A user id that breaks the identifier rule raises InvalidInputError without echoing it."""
    with pytest.raises(InvalidInputError) as caught:
        await store.find_by_user(ALICE, user)
    assert not user or user not in caught.value.message


# -- isolation of caller-held objects ----------------------------------------------------------


async def test_caller_mutations_never_reach_stored_state(store: SessionStore) -> None:
    """Mutating the dict inside a passed or returned snapshot leaves the stored snapshot alone."""
    ctx = msgspec.structs.replace(ALICE, attributes={"lang": "en"})
    data = make_data(ctx)
    key = await store.create_session(ALICE, data)
    data.tenant_ctx.attributes["lang"] = "fr"
    returned = await store.get_session(key)
    assert returned is not None
    assert returned.tenant_ctx.attributes == {"lang": "en"}
    returned.tenant_ctx.attributes["lang"] = "de"
    found = await store.find_by_user(ALICE, "alice")
    assert found is not None
    assert found[1].tenant_ctx.attributes == {"lang": "en"}


# -- lifecycle and concurrency -----------------------------------------------------------------


async def test_a_closed_store_refuses_calls(store: SessionStore) -> None:
    """After aclose every call raises StoreClosedError (code invalid_input, not a retryable
    UnavailableError); closing twice is harmless."""
    await store.aclose()
    await store.aclose()
    with pytest.raises(StoreClosedError, match="closed") as raised:
        await store.get_session("any")
    assert raised.value.code is ErrorCode.INVALID_INPUT
    assert not isinstance(raised.value, UnavailableError)
    with pytest.raises(StoreClosedError, match="closed"):
        await store.create_session(ALICE, make_data(ALICE))


async def test_thousand_concurrent_tasks_lose_nothing(store: SessionStore) -> None:
    """1,000 concurrent create-update-find tasks on one store all land, each on its own session."""

    async def one(i: int) -> tuple[str, SessionData]:
        ctx = ALICE.with_user(f"user-{i}")
        key = await store.create_session(ctx, make_data(ctx, state=f'{{"i":{i}}}'))
        final = make_data(ctx, node="node.next", state=f'{{"i":{i},"step":2}}')
        await store.update_session(key, final)
        assert await store.find_by_user(ctx, f"user-{i}") == (key, final)
        return key, final

    results = await gather(*(one(i) for i in range(1000)))
    assert len({key for key, _ in results}) == 1000
    stored = await gather(*(store.get_session(key) for key, _ in results))
    assert stored == [final for _, final in results]
