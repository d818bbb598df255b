"""The schema's constructors, identifier rule and error model."""

from __future__ import annotations

import subprocess
import sys
import uuid
from typing import Any

import msgspec
import pytest

from greentic_session import (
    ConflictError,
    ErrorCode,
    Impersonation,
    InMemorySessionStore,
    InternalError,
    InvalidInputError,
    InvocationDeadline,
    NotFoundError,
    PoolExhaustedError,
    SessionBackendConfig,
    SessionCursor,
    SessionData,
    SessionError,
    TenantCtx,
    UnavailableError,
    UnknownOutcomeError,
    create_session_store,
)
from greentic_session.schema import OWNER_FIELDS, check_writable, new_session_key
from tests.conftest import make_data


def test_new_fills_both_spellings_of_tenant_team_and_user() -> None:
    """TenantCtx.new mirrors Rust's new().with_team().with_user()."""
    ctx = TenantCtx.new("dev", "acme", team="support", user="u1")
    assert (ctx.tenant, ctx.tenant_id) == ("acme", "acme")
    assert (ctx.team, ctx.team_id) == ("support", "support")
    assert (ctx.user, ctx.user_id) == ("u1", "u1")
    assert ctx.attempt == 0


def test_with_team_and_with_user_return_new_contexts() -> None:
    """with_team/with_user leave the original untouched and set both spellings."""
    ctx = TenantCtx.new("dev", "acme")
    teamed = ctx.with_team("ops").with_user("u2")
    assert (teamed.team, teamed.team_id, teamed.user, teamed.user_id) == ("ops", "ops", "u2", "u2")
    assert (ctx.team, ctx.user) == (None, None)


def test_normalized_team_and_user_prefer_the_id_fields() -> None:
    """normalized_* return the *_id field, else the plain one, else None."""
    ctx = TenantCtx(env="dev", tenant="t", tenant_id="t", team="a", user="x", attempt=0)
    assert (ctx.normalized_team, ctx.normalized_user) == ("a", "x")
    both = msgspec.structs.replace(ctx, team_id="b", user_id="y")
    assert (both.normalized_team, both.normalized_user) == ("b", "y")
    assert TenantCtx.new("dev", "t").normalized_team is None


def test_contexts_are_frozen() -> None:
    """A context cannot be changed in place."""
    ctx = TenantCtx.new("dev", "t")
    with pytest.raises(AttributeError):
        ctx.env = "prod"  # type: ignore[misc]


@pytest.mark.parametrize(
    "bad", ["", "has space", "colon:x", "ünïcode", "slash/x", "tab\t", "pipe|x", "|", "a||b"]
)
def test_bad_identifiers_fail_at_construction(bad: str) -> None:
    """Every identifier field refuses values outside [A-Za-z0-9._-]+, through new and with_*."""
    good = TenantCtx.new("dev", "t")
    attempts = [
        lambda: TenantCtx.new(bad, "t"),
        lambda: TenantCtx.new("dev", bad),
        lambda: TenantCtx.new("dev", "t", team=bad),
        lambda: TenantCtx.new("dev", "t", user=bad),
        lambda: good.with_team(bad),
        lambda: good.with_user(bad),
        lambda: make_data(good, flow=bad),
        lambda: msgspec.structs.replace(make_data(good), pack_id=bad),
        lambda: Impersonation(actor_id=bad),
    ]
    for attempt in attempts:
        with pytest.raises(InvalidInputError) as caught:
            attempt()
        assert not bad.strip() or bad not in caught.value.message


def test_identifiers_accept_the_full_allowed_alphabet() -> None:
    """Letters, digits, dot, underscore and dash are all accepted."""
    ctx = TenantCtx.new("Env-1", "ten_ant.2", team="t-3", user="U.s_e-r")
    assert make_data(ctx, flow="flow.v2-b_c").flow_id == "flow.v2-b_c"


def test_attempt_must_fit_u32() -> None:
    """attempt outside 0..2**32-1 is invalid input."""
    with pytest.raises(InvalidInputError):
        TenantCtx.new("dev", "t", attempt=2**32)
    assert TenantCtx.new("dev", "t", attempt=2**32 - 1).attempt == 2**32 - 1
    with pytest.raises(InvalidInputError):
        TenantCtx.new("dev", "t", attempt=True)  # JSON `true`, which Rust's u32 refuses


def test_identifiers_holding_the_join_separator_are_refused_in_any_field() -> None:
    """An id containing '|' is refused wherever it sits, also when every other id is fine
    (serde refuses it, so Python must never write it)."""
    fields = ("env", "tenant", "tenant_id", "team", "team_id", "user", "user_id")
    for field in fields:
        values: dict[str, Any] = dict.fromkeys(fields, "ok")
        values[field] = "a|b"
        with pytest.raises(InvalidInputError, match=field):
            TenantCtx(**values, attempt=0)
    with pytest.raises(InvalidInputError, match="flow_id"):
        make_data(TenantCtx.new("dev", "t"), flow="f|g")


@pytest.mark.parametrize("bad", ["a/b", "a:b", "", "a|b"])
def test_copies_keep_the_identifier_rule_in_every_identifier_field(bad: str) -> None:
    """A copy cannot carry an identifier its constructor refuses: with_team, with_user and
    msgspec.structs.replace (what update_with callbacks use) re-run the rule on every field."""
    ctx = TenantCtx.new("dev", "tenant", team="t", user="u")
    data = make_data(ctx)
    copies = [
        lambda: TenantCtx.new("dev", "tenant").with_team(bad),
        lambda: ctx.with_user(bad),
        *(lambda f=field: msgspec.structs.replace(ctx, **{f: bad}) for field in OWNER_FIELDS),
        lambda: msgspec.structs.replace(data, flow_id=bad),
        lambda: msgspec.structs.replace(data, pack_id=bad),
        lambda: msgspec.structs.replace(Impersonation(actor_id="a"), actor_id=bad),
    ]
    for make_copy in copies:
        with pytest.raises(InvalidInputError):
            make_copy()


def test_unix_millis_must_fit_i128() -> None:
    """deadline.unix_millis outside Rust's i128 is refused at construction and by the write
    check; both limits themselves are accepted."""
    for good in (2**127 - 1, -(2**127)):
        assert InvocationDeadline(unix_millis=good).unix_millis == good
    for bad in (2**127, -(2**127) - 1, 10**60):
        with pytest.raises(InvalidInputError, match="unix_millis"):
            InvocationDeadline(unix_millis=bad)
    deadline = InvocationDeadline(unix_millis=1)
    msgspec.structs.force_setattr(deadline, "unix_millis", 2**127)  # bypass construction
    data = make_data(TenantCtx.new("dev", "t", deadline=deadline))
    with pytest.raises(InvalidInputError, match="unix_millis"):
        check_writable(data)
    ctx = TenantCtx.new("dev", "t")
    msgspec.structs.force_setattr(ctx, "attempt", 2**32)
    with pytest.raises(InvalidInputError, match="attempt"):
        check_writable(make_data(ctx))


def _full_data() -> SessionData:
    """SessionData with every optional field set, nested Structs included."""
    ctx = TenantCtx.new(
        "dev", "t", team="tm", user="u", session_id="s", flow_id="f", node_id="n",
        provider_id="p", trace_id="tr", i18n_id="en", correlation_id="c",
        attributes={"k": "v"}, deadline=InvocationDeadline(unix_millis=1),
        idempotency_key="i", impersonation=Impersonation(actor_id="a", reason="r"),
    )  # fmt: skip
    cursor = SessionCursor(node_pointer="n", wait_reason="w", outbox_marker="o")
    return SessionData(tenant_ctx=ctx, flow_id="f", pack_id="p", cursor=cursor, context_json="{}")


def _leaves(obj: msgspec.Struct, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for name in obj.__struct_fields__:
        value = getattr(obj, name)
        if isinstance(value, msgspec.Struct):
            out += _leaves(value, (*path, name))
        else:
            out.append((*path, name))
    return out


def _with(obj: msgspec.Struct, path: tuple[str, ...], value: object) -> Any:
    head, *rest = path
    new = _with(getattr(obj, head), tuple(rest), value) if rest else value
    return msgspec.structs.replace(obj, **{head: new})


def test_check_writable_names_every_field_of_the_schema() -> None:
    """Any field, at any depth, holding a value of the wrong type is refused by name."""
    data = _full_data()
    check_writable(data)
    leaves = _leaves(data)
    for path in leaves:
        # Refused either on construction (identifiers, attempt) or by the write check.
        with pytest.raises(InvalidInputError, match=path[-1]):
            check_writable(_with(data, path, 3.5))


def test_check_writable_refuses_lone_surrogates_anywhere() -> None:
    """A string that is not valid Unicode cannot be encoded as UTF-8 JSON and is refused."""
    data = _full_data()
    for path in _leaves(data):
        if path[-1] not in ("attributes", "attempt", "unix_millis"):
            with pytest.raises(InvalidInputError, match=path[-1]):
                check_writable(_with(data, path, "ok\udc80"))
    bad_key = _with(data, ("tenant_ctx", "attributes"), {"\udc80": "v"})
    with pytest.raises(InvalidInputError, match="attributes key"):
        check_writable(bad_key)


def test_error_codes_are_the_greentic_serde_names() -> None:
    """ErrorCode values and each error's code match greentic-types."""
    assert [c.value for c in ErrorCode] == [
        "unknown", "invalid_input", "not_found", "conflict", "timeout", "unauthenticated",
        "permission_denied", "rate_limited", "unavailable", "internal",
    ]  # fmt: skip
    assert InvalidInputError("x").code is ErrorCode.INVALID_INPUT
    assert NotFoundError("x").code is ErrorCode.NOT_FOUND
    assert ConflictError("x").code is ErrorCode.CONFLICT
    assert UnavailableError("x").code is ErrorCode.UNAVAILABLE
    assert UnavailableError("x", code=ErrorCode.TIMEOUT).code is ErrorCode.TIMEOUT
    assert InternalError("x").code is ErrorCode.INTERNAL
    assert issubclass(InvalidInputError, ValueError)
    assert issubclass(UnknownOutcomeError, UnavailableError)
    assert issubclass(PoolExhaustedError, UnavailableError)
    for cls in (InvalidInputError, NotFoundError, ConflictError, UnavailableError, InternalError):
        assert issubclass(cls, SessionError)
    error = NotFoundError("session 'k' not found")
    assert (error.message, str(error)) == ("session 'k' not found", "session 'k' not found")


def test_factory_builds_the_in_memory_store() -> None:
    """create_session_store(SessionBackendConfig.in_memory()) gives an InMemorySessionStore."""
    assert isinstance(create_session_store(SessionBackendConfig.in_memory()), InMemorySessionStore)


def test_factory_refuses_a_config_it_does_not_know() -> None:
    """A hand-built config with no Redis options is a TypeError, not a silent default."""
    with pytest.raises(TypeError):
        create_session_store(SessionBackendConfig("redis"))


@pytest.mark.parametrize(
    ("url", "namespace"),
    [
        ("http://localhost:6379", "ns"),
        ("redis://", "ns"),
        ("redis://localhost:notaport", "ns"),
        ("redis://localhost/abc", "ns"),
        ("unix://", "ns"),
        ("redis://localhost", ""),
        ("redis://localhost", "has space"),
        ("redis://localhost", "glob*"),
        ("redis://localhost", "trailing:"),
    ],
)
def test_redis_config_rejects_bad_urls_and_namespaces(url: str, namespace: str) -> None:
    """A malformed URL or namespace raises InvalidInputError when the config is built."""
    with pytest.raises(InvalidInputError):
        SessionBackendConfig.redis_url(url, namespace=namespace)


def test_redis_config_repr_hides_the_password() -> None:
    """Neither a userinfo password nor a ?password= query shows in the config's repr."""
    config = SessionBackendConfig.redis_url("redis://app:hunter2-secret@localhost:6379/0")
    assert "hunter2-secret" not in repr(config)
    assert "app:***@localhost:6379" in repr(config)
    unix = SessionBackendConfig.redis_url("unix:///run/redis.sock?password=hunter2-secret&db=1")
    assert "hunter2-secret" not in repr(unix)


def test_import_and_memory_store_work_without_redis() -> None:
    """With redis unimportable the package and memory store work, and Redis names the extra."""
    script = """
import asyncio, sys
sys.modules["redis"] = None
import greentic_session as gs
from greentic_session import *
assert "redis" not in [m.split(".")[0] for m in sys.modules if sys.modules[m] is not None]
async def main():
    ctx = gs.TenantCtx.new("dev", "t", user="u")
    data = gs.SessionData(tenant_ctx=ctx, flow_id="f",
                          cursor=gs.SessionCursor(node_pointer="n"), context_json="{}")
    async with gs.create_session_store(gs.SessionBackendConfig.in_memory()) as store:
        key = await store.create_session(ctx, data)
        assert await store.find_by_user(ctx, "u") == (key, data)
asyncio.run(main())
config = gs.SessionBackendConfig.redis_url("redis://localhost:6379")
try:
    gs.create_session_store(config)
except ImportError as exc:
    print(exc)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert "pip install 'greentic-session[redis]'" in done.stdout


def test_session_data_equality_is_by_value() -> None:
    """Two snapshots built alike compare equal (what the stores' round trips rely on)."""
    ctx = TenantCtx.new("dev", "t", user="u")
    assert make_data(ctx) == make_data(ctx)
    assert make_data(ctx) != make_data(ctx, node="other")
    assert isinstance(make_data(ctx), SessionData)


def test_new_session_keys_are_distinct_version_4_uuids() -> None:
    """Generated keys parse as RFC 4122 version-4 UUIDs in canonical text and do not repeat."""
    keys = [new_session_key() for _ in range(2000)]
    assert len(set(keys)) == len(keys)
    for key in keys[:200]:
        parsed = uuid.UUID(key)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, key)
