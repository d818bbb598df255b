"""`greentic-session erase-user` against a real redis-server: a dry run counts and writes
nothing; `--yes` erases one user's sessions, pointers and waits in one env/tenant/team only; the
user id never appears in the output; bad arguments exit 2."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator

import pytest

from greentic_session import RedisSessionStore, ReplyScope, TenantCtx
from greentic_session.cli import main

from .conftest import drop_namespace, make_data
from .test_cli import cli, raw, raw_commands

USER = "erin-q7z3"  # distinctive: any trace of it in the output is a leak
ERIN = TenantCtx.new("dev", "acme", team="care", user=USER)
ERIN_ELSEWHERE = TenantCtx.new("dev", "other", team="care", user=USER)
ERIN_NO_TEAM = TenantCtx.new("dev", "acme", user=USER)
FRANK = ERIN.with_user("frank")
ERASE = ["erase-user", "--env", "dev", "--tenant", "acme", "--team", "care", "--user", USER]


@pytest.fixture
def ns(redis_url: str, namespace: str) -> Iterator[str]:
    """A fresh namespace on the shared server, dropped afterwards."""
    yield namespace
    asyncio.run(drop_namespace(redis_url, namespace))


async def _populate(store: RedisSessionStore, ctx: TenantCtx) -> list[str]:
    """Two plain sessions and a wait for `ctx`'s user; their keys."""
    user = ctx.normalized_user
    assert user is not None
    first = await store.create_session(ctx, make_data(ctx))
    second = await store.create_session(ctx, make_data(ctx, node="node.two"))
    waiting = store.session_key_for(ctx, user, f"wait-{ctx.tenant_id}-{ctx.normalized_team}-{user}")
    await store.register_wait(ctx, user, ReplyScope(conversation="c1"), waiting, make_data(ctx))
    return [first, second, waiting]


def seed(url: str, namespace: str) -> dict[str, list[str]]:
    """Erin in acme/care (to erase), and Erin elsewhere, Erin without a team and Frank (kept)."""

    async def go() -> dict[str, list[str]]:
        async with RedisSessionStore.from_url(url, namespace=namespace) as store:
            return {
                "erin": await _populate(store, ERIN),
                "elsewhere": await _populate(store, ERIN_ELSEWHERE),
                "no_team": await _populate(store, ERIN_NO_TEAM),
                "frank": await _populate(store, FRANK),
            }

    return asyncio.run(go())


def names_in(url: str, ns: str) -> list[str]:
    names = raw(url, "KEYS", f"{ns}:*")
    assert isinstance(names, list)
    return sorted(name.decode() for name in names)


def snapshot(url: str, ns: str) -> dict[str, tuple[object, bool]]:
    """Every key of the namespace with its serialized value (DUMP) and whether it expires."""
    names = names_in(url, ns)
    replies = raw_commands(url, [c for n in names for c in (("DUMP", n), ("PTTL", n))])
    return {n: (replies[2 * i], replies[2 * i + 1] != -1) for i, n in enumerate(names)}


async def _intact(url: str, ns: str, ctx: TenantCtx, keys: list[str]) -> bool:
    user = ctx.normalized_user
    assert user is not None
    async with RedisSessionStore.from_url(url, namespace=ns) as store:
        sessions = [await store.get_session(key) for key in keys]
        pointer = await store.find_by_user(ctx, user)
        waits = await store.list_waits_for_user(ctx, user)
    return all(s is not None for s in sessions) and pointer is not None and len(waits) == 1


def test_dry_run_counts_and_writes_nothing(
    redis_url: str, ns: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --yes, erase-user (URL from the environment) reports the user's 3 sessions and
    their pointer/wait keys, leaves every key byte for byte, and never prints the user id."""
    seed(redis_url, ns)
    before = snapshot(redis_url, ns)
    monkeypatch.setenv("GREENTIC_SESSION_REDIS_URL", redis_url)
    out, err = io.StringIO(), io.StringIO()
    code = main(["--namespace", ns, "--json", *ERASE], stdout=out, stderr=err)
    assert code == 0, err.getvalue()
    assert USER not in out.getvalue() + err.getvalue()
    assert '"dry_run": true' in out.getvalue()
    assert '"sessions": 3' in out.getvalue()
    assert '"index_keys": 3' in out.getvalue()  # user pointer, wait scope, wait set
    table = cli(redis_url, ns, *ERASE)
    assert table.code == 0, table.err
    assert "dry run: 3 session(s)" in table.out
    assert "tenant acme" in table.out
    assert USER not in table.out + table.err
    assert snapshot(redis_url, ns) == before


def test_yes_erases_only_that_user_in_that_tenant_and_team(redis_url: str, ns: str) -> None:
    """With --yes the user's sessions, pointer and waits in acme/care are gone and counted;
    the same user in another tenant or without a team, and another user, are untouched; the
    output names the count and the tenant, never the user id."""
    keys = seed(redis_url, ns)
    done = cli(redis_url, ns, *ERASE, "--yes")
    assert done.code == 0, done.err
    assert "erased 3 session(s)" in done.out
    assert "tenant acme" in done.out
    assert USER not in done.out + done.err
    left = names_in(redis_url, ns)
    for key in keys["erin"]:
        assert not any(key in name for name in left)
    assert not any(":acme:care:" + USER in name for name in left)
    for who, ctx in (("elsewhere", ERIN_ELSEWHERE), ("no_team", ERIN_NO_TEAM), ("frank", FRANK)):
        assert asyncio.run(_intact(redis_url, ns, ctx, keys[who])), who
    again = cli(redis_url, ns, "--json", *ERASE, "--yes")
    assert again.code == 0, again.err
    assert again.json["erased"] == 0
    assert again.json["tenant"] == "acme"
    assert USER not in again.out + again.err


@pytest.mark.parametrize(
    "argv",
    [
        ["erase-user", "--env", "dev", "--tenant", "acme"],  # no --user
        ["erase-user", "--env", "dev", "--user", USER],  # no --tenant
        ["erase-user", "--tenant", "acme", "--user", USER],  # no --env
        [*ERASE[:-1], f"{USER} bad!"],  # not an identifier
        [*ERASE, "--force"],  # unknown option
    ],
)
def test_bad_arguments_exit_2_without_the_user_id(redis_url: str, ns: str, argv: list[str]) -> None:
    """Missing, malformed or unknown arguments exit 2 with a usage line, write nothing and
    never echo the user id."""
    seed(redis_url, ns)
    before = snapshot(redis_url, ns)
    run = cli(redis_url, ns, *argv, "--yes")
    assert run.code == 2
    assert "Traceback" not in run.err
    assert USER not in run.out + run.err
    assert snapshot(redis_url, ns) == before
