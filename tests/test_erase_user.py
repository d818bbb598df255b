"""`erase_user` on every backend in the table: the user's sessions, waits, deadlines and expiry
meta go; another tenant's same user id, another user and user-less sessions stay; the fence
refuses a caller acting for someone else."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from greentic_session import InvalidInputError, ReplyScope, SessionStore, TenantCtx
from tests.conftest import STORE_PARAMS, Backend, Lifecycle, backend_urls, make_data

USER = "erin"
ERIN = TenantCtx.new("dev", "tenant-e", team="care", user=USER)
OPERATOR = ERIN.with_user(None)
FRANK = ERIN.with_user("frank")
ERIN_ELSEWHERE = TenantCtx.new("dev", "tenant-other", team="care", user=USER)
ERIN_OTHER_TEAM = ERIN.with_team("billing")
CHAT = ReplyScope(conversation="chat-1")
LATER = ReplyScope(conversation="chat-2")


async def populate(store: SessionStore, ctx: TenantCtx) -> list[str]:
    """Give `ctx`'s user two store-minted sessions, a caller-keyed one, a wait and a wait with
    a deadline; return every key."""
    user = ctx.normalized_user
    assert user is not None
    where = f"{ctx.tenant_id}.{ctx.normalized_team}.{user}"  # caller keys are store-wide
    first = await store.create_session(ctx, make_data(ctx))
    second = await store.create_session(ctx, make_data(ctx, node="node.two"))  # first: unnamed
    chosen = store.session_key_for(ctx, user, f"chosen-{where}")
    await store.create_session(ctx, make_data(ctx), key=chosen)
    waiting = store.session_key_for(ctx, user, f"wait-{where}")
    await store.register_wait(ctx, user, CHAT, waiting, make_data(ctx))
    due = store.session_key_for(ctx, user, f"due-{where}")
    await store.register_wait(ctx, user, LATER, due, make_data(ctx), ttl=60, due_in=0.001)
    return [first, second, chosen, waiting, due]


async def assert_intact(store: SessionStore, ctx: TenantCtx, keys: list[str]) -> None:
    user = ctx.normalized_user
    assert user is not None
    for key in keys:
        assert await store.get_session(key) is not None
    assert await store.find_by_user(ctx, user) is not None
    assert len(await store.list_waits_for_user(ctx, user)) == 2


async def test_erase_removes_every_session_wait_and_deadline_of_the_user(
    store: SessionStore,
) -> None:
    """Every session of the user (pointed at or not, minted or caller-keyed, waits and their
    deadlines) is gone after erase, and the count says how many."""
    keys = await populate(store, ERIN)
    assert await store.erase_user(OPERATOR, USER) == len(keys)
    for key in keys:
        assert await store.get_session(key) is None
    assert await store.find_by_user(ERIN, USER) is None
    assert await store.list_waits_for_user(ERIN, USER) == []
    assert await store.find_wait_by_scope(ERIN, USER, CHAT) is None
    assert await store.claim_due_waits(limit=10) == []


async def test_erase_leaves_other_tenants_teams_users_and_userless_sessions(
    store: SessionStore,
) -> None:
    """The same user id in another tenant or team, another user of the tenant and a user-less
    session are all untouched."""
    elsewhere = await populate(store, ERIN_ELSEWHERE)
    other_team = await populate(store, ERIN_OTHER_TEAM)
    frank = await populate(store, FRANK)
    userless = await store.create_session(OPERATOR, make_data(OPERATOR))
    mine = await populate(store, ERIN)
    assert await store.erase_user(ERIN, USER) == len(mine)  # a user may erase itself
    await assert_intact(store, ERIN_ELSEWHERE, elsewhere)
    await assert_intact(store, ERIN_OTHER_TEAM, other_team)
    await assert_intact(store, FRANK, frank)
    assert await store.get_session(userless) is not None


async def test_erasing_twice_erases_nothing_the_second_time(store: SessionStore) -> None:
    """A second erase finds nothing left and returns 0; a user with nothing returns 0."""
    await populate(store, ERIN)
    assert await store.erase_user(OPERATOR, USER) == 5
    assert await store.erase_user(OPERATOR, USER) == 0
    assert await store.erase_user(OPERATOR, "nobody") == 0


async def test_a_caller_with_another_user_is_refused(store: SessionStore) -> None:
    """A context with a user cannot erase another user: the fence's InvalidInputError, and
    nothing is deleted."""
    keys = await populate(store, ERIN)
    with pytest.raises(InvalidInputError, match="tenant fence"):
        await store.erase_user(FRANK, USER)
    with pytest.raises(InvalidInputError):
        await store.erase_user(OPERATOR, "not a valid id!")
    await assert_intact(store, ERIN, keys)


async def test_erase_removes_sessions_under_expiry_options(lifecycle: Lifecycle) -> None:
    """With idle_ttl and max_lifetime (expiry meta keys on Redis) the user's sessions go too,
    and the store still works for the user afterwards."""
    store = lifecycle.open(idle_ttl=300, max_lifetime=3600)
    keys = await populate(store, ERIN)
    assert await store.erase_user(OPERATOR, USER) == len(keys)
    for key in keys:
        assert await store.get_session(key) is None
    again = await store.create_session(ERIN, make_data(ERIN))
    assert (await store.find_by_user(ERIN, USER) or ("",))[0] == again


async def raw_names(url: str, namespace: str) -> list[str]:
    """Every key name under `namespace` on the server(s) at `url` (comma-separated masters)."""
    names: list[str] = []
    for node_url in url.split(","):
        client = aioredis.Redis.from_url(node_url)
        try:
            names += [n.decode() async for n in client.scan_iter(match=f"{namespace}:*")]
        finally:
            await client.aclose()
    return names


@pytest.mark.parametrize(
    "backend", [param for param in STORE_PARAMS if param.values[0].needs_redis]
)
async def test_on_redis_no_key_names_the_erased_user_in_that_tenant(
    request: pytest.FixtureRequest, backend: Backend, lifecycle: Lifecycle
) -> None:
    """After erase, a raw SCAN finds no key of the namespace naming the user in that tenant
    (nor any session, meta, hint or deadline key of theirs), while the other tenant's stay."""
    _, raw_url = backend_urls(request, backend)
    assert raw_url is not None
    store = lifecycle.open(idle_ttl=300, max_lifetime=3600)
    keys = await populate(store, ERIN)
    await populate(store, ERIN_ELSEWHERE)
    before = await raw_names(raw_url, lifecycle.namespace)
    assert any(f":{ERIN.tenant_id}:" in name and USER in name for name in before)
    await store.erase_user(OPERATOR, USER)
    after = await raw_names(raw_url, lifecycle.namespace)
    assert [n for n in after if f":{ERIN.tenant_id}:" in n and USER in n] == []
    assert [n for n in after if any(n.endswith(key) for key in keys)] == []
    assert any(f":{ERIN_ELSEWHERE.tenant_id}:" in n for n in after)
