"""Differential tests: each rule that lives twice, in Python and in the Redis Lua, gives the same
answer on every generated input.

Two twins: the wait verdict (fence.wait_verdict, lua/waits.lua's wait_verdict over the owner
owner_at reads from a stored blob) and the expiry rule (expiry.Expiry, lua/expiry.lua's
expiry_plan and expiry_apply). Each Lua side runs on a real server, as a small harness EVAL'd
over the very source scripts.load_script assembles for the store's scripts (checked to be their
prefix), so the shipped Lua is what is tested, not a copy.
"""

from __future__ import annotations

import itertools
import math
import string
import uuid
from collections.abc import Iterator
from typing import Any, NamedTuple

import msgspec
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from greentic_session import (
    InMemorySessionStore,
    InvalidInputError,
    RedisSessionStore,
    TenantCtx,
    decode_session_data,
    encode_session_data,
)
from greentic_session.backends.redis import scripts
from greentic_session.backends.redis.untyped import untyped
from greentic_session.expiry import MAX_SECONDS, Expiry
from greentic_session.fence import scope_of, wait_lookup_slot, wait_ttl_millis, wait_verdict
from greentic_session.testing import SERVER_KINDS
from tests.conftest import make_data, server_url

TWIN_SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


class Harness(NamedTuple):
    """A harness script loaded on one server, run over one connection."""

    client: redis.Redis
    sha: str
    scratch: str  # a key of the test's own, for a harness that must write one

    def run(self, keys: tuple[str, ...], args: tuple[str | bytes | int, ...]) -> Any:
        return untyped(self.client).evalsha(self.sha, len(keys), *keys, *args)


@pytest.fixture(scope="module", params=SERVER_KINDS)
def engine(request: pytest.FixtureRequest) -> Iterator[redis.Redis]:
    """One connection to the run's private server of each engine."""
    client = redis.Redis.from_url(server_url(request, request.param), single_connection_client=True)
    with client:
        yield client


def _harness(client: redis.Redis, source: bytes) -> Iterator[Harness]:
    scratch = f"lua-twins:{uuid.uuid4().hex}"
    yield Harness(client, untyped(client).script_load(source), scratch)
    client.delete(scratch)


# -- the wait verdict ----------------------------------------------------------------------------

# The shared functions find_wait.lua, list_waits.lua and clear_wait.lua are built on, as
# scripts.py assembles them (the test below checks they lead each shipped script).
WAIT_LOOKUP = scripts.load_script("get.lua", "owner.lua", "wait_keys.lua", "waits.lua")
# Store the blob, then judge it as the three wait scripts do: owner_at, then wait_verdict.
# KEYS[1] the blob key; ARGV[1] the blob; ARGV[2..5] the lookup's env, tenant_id, team ('' none),
# user (the store's _wait_lookup). Returns the verdict, or owner_at's 'corrupt'.
WAIT_VERDICT = (
    WAIT_LOOKUP.source
    + b"""
redis.call('SET', KEYS[1], ARGV[1])
local owner, state = owner_at(KEYS[1])
if not owner then return state end
return wait_verdict(owner, ARGV[2], ARGV[3], ARGV[4], ARGV[5])
"""
)


@pytest.fixture(scope="module")
def verdict_harness(engine: redis.Redis) -> Iterator[Harness]:
    yield from _harness(engine, WAIT_VERDICT)


def test_the_wait_harness_runs_the_shipped_lua() -> None:
    """The harness's Lua is, byte for byte, the head of every shipped wait lookup script."""
    for script in (scripts.FIND_WAIT, scripts.LIST_WAITS, scripts.CLEAR_WAIT):
        assert script.source.startswith(WAIT_LOOKUP.source + b"\n")


# Identifiers as the schema allows them ([A-Za-z0-9._-]+), mostly from a small pool so that
# owners and lookups often share a segment; "-" is the team that shares no team's wait keys.
_identifier = st.one_of(
    st.sampled_from(["-", "a", "b", "a.b", "_", "A"]),
    st.text(string.ascii_letters + string.digits + "._-", min_size=1, max_size=8),
)
_team = st.one_of(st.sampled_from([None, "-"]), _identifier)
_maybe_identifier = st.one_of(st.none(), _identifier)
# How an owner's field relates to the lookup's: the same (most often), none, "-", any other, or
# (a team) across the line between no team and "-", which share wait keys.
_nearness = st.sampled_from(["same", "same", "none", "dash", "other"])
_env_nearness = st.sampled_from(["same", "same", "same", "same", "other"])
_team_nearness = st.sampled_from(["same", "same", "across", "none", "dash", "other"])
# Which of a TenantCtx's field / field_id pair carry a value (the other: None or a decoy).
_spellings = st.sampled_from(["both", "id", "plain", "decoy"])


def _near(
    value: str | None, draw: st.DrawFn, nearness: st.SearchStrategy[str] = _nearness
) -> str | None:
    """`value`, often; else no value, "-", or any identifier (as `nearness` picks)."""
    how = draw(nearness)
    if how == "other":
        return draw(_identifier)
    across = "-" if value is None else None if value == "-" else value
    return {"same": value, "none": None, "dash": "-", "across": across}[how]


def _spelled(value: str | None, draw: st.DrawFn) -> tuple[str | None, str | None]:
    """`value` as a TenantCtx's (`team`, `team_id`) or (`user`, `user_id`) may carry it: any
    spelling whose normalized value (`*_id` first) is `value`, the other field None or a decoy."""
    if value is None:
        return None, None
    how = draw(_spellings)
    plain = {"both": value, "id": None, "plain": value, "decoy": draw(_maybe_identifier)}[how]
    return plain, None if how == "plain" else value


def _reordered(blob: bytes) -> bytes:
    """The same document with the tenant_ctx fields reversed and moved last, as another writer
    might order them (owner_at then reads the owner by decoding the whole blob)."""
    fields = msgspec.json.decode(blob)
    ctx = dict(reversed(fields.pop("tenant_ctx").items()))
    return msgspec.json.encode({**fields, "tenant_ctx": ctx})


class WaitCase(NamedTuple):
    caller: TenantCtx
    user_id: str
    blob: bytes


@st.composite
def wait_cases(draw: st.DrawFn) -> WaitCase:
    """A lookup (caller with or without a user, and the user_id it looks up) and the blob a wait
    index entry names, whose owner is often close to the lookup."""
    env, tenant_id, user_id = draw(_identifier), draw(_identifier), draw(_identifier)
    team = draw(_team)
    caller_team, caller_team_id = _spelled(team, draw)
    caller_user, caller_user_id = _spelled(user_id if draw(st.booleans()) else None, draw)
    caller = TenantCtx(
        env=env,
        tenant=draw(_identifier),
        tenant_id=tenant_id,
        team=caller_team,
        team_id=caller_team_id,
        user=caller_user,
        user_id=caller_user_id,
        attempt=0,
    )
    owner_team, owner_team_id = _spelled(_near(team, draw, _team_nearness), draw)
    owner_user, owner_user_id = _spelled(_near(user_id, draw), draw)
    owner = TenantCtx(
        env=_near(env, draw, _env_nearness) or env,
        tenant=draw(_identifier),
        tenant_id=_near(tenant_id, draw, _env_nearness) or tenant_id,
        team=owner_team,
        team_id=owner_team_id,
        user=owner_user,
        user_id=owner_user_id,
        # Attributes named like owner fields: the head reader must not take them for the owner.
        attributes=[{}, {"team": "-"}, {"user_id": user_id}][draw(st.integers(0, 2))],
        attempt=0,
    )
    blob = encode_session_data(make_data(owner))
    return WaitCase(caller, user_id, _reordered(blob) if draw(st.booleans()) else blob)


def _verdicts(harness: Harness, case: WaitCase) -> tuple[str, str]:
    """(the fence's verdict, the Lua's) on `case`."""
    slot = wait_lookup_slot(case.caller, case.user_id)
    expected = wait_verdict(slot, scope_of(decode_session_data(case.blob).tenant_ctx))
    lookup = (slot.env, slot.tenant_id, slot.team or "", slot.user)  # the store's _wait_lookup
    got = harness.run((harness.scratch,), (case.blob, *lookup))
    return expected, got.decode()


@TWIN_SETTINGS
@given(case=wait_cases())
def test_wait_verdict_twins_agree(verdict_harness: Harness, case: WaitCase) -> None:
    """For any lookup and stored owner, spelled any way the schema allows, the Lua wait verdict
    (live, foreign or shared) is the fence's."""
    expected, got = _verdicts(verdict_harness, case)
    assert got == expected


def test_wait_verdict_twins_agree_on_every_equality_pattern(verdict_harness: Harness) -> None:
    """The verdict depends only on which segments are equal and on none vs "-": over every such
    pattern (a user-less caller's lookup; the owner's env, tenant, team and user the lookup's,
    another, none or "-") the two twins agree, and each verdict occurs."""
    seen: dict[str, int] = {}
    for team in (None, "-", "t"):
        caller = TenantCtx.new("e", "n", team=team)
        for env, tenant, owner_team, user in itertools.product(
            ("e", "x"), ("n", "x"), (None, "-", "t", "x"), (None, "u", "x", "-")
        ):
            owner = TenantCtx.new(env, tenant, team=owner_team, user=user)
            case = WaitCase(caller, "u", encode_session_data(make_data(owner)))
            expected, got = _verdicts(verdict_harness, case)
            assert got == expected, case
            seen[got] = seen.get(got, 0) + 1
    assert set(seen) == {"live", "foreign", "shared"}


# -- the expiry rule -----------------------------------------------------------------------------

# The functions update.lua, touch.lua and register_wait.lua compute and apply a session's expiry
# with, as scripts.py assembles them (checked below to lead those shipped scripts).
EXPIRY = scripts.load_script("get.lua", "owner.lua", "expiry.lua")
# The harness stands in for the server's keyspace and clock: a local `redis` whose call answers
# TIME, GET and PTTL from the case (ARGV[1], JSON) and records every write, each argument as the
# server receives it (through ECHO: Lua numbers become text the server's way). The shipped
# functions below it see this `redis`; everything else is the real one's. Then it runs what
# touch.lua and update.lua run: expiry_plan, the blob's expiry, expiry_apply.
# KEYS[1] meta key; KEYS[2] blob key. Returns 'none' (no expiry options), 'expired', or
# {blob's PXAT, {writes...}}.
EXPIRY_PLAN = (
    b"""
local case = cjson.decode(ARGV[1])
local server = redis
local writes = {}
local redis = setmetatable({}, {__index = server})
function redis.call(command, key, ...)
  if command == 'TIME' then return case.time end
  if command == 'GET' then return case.values[key] or false end
  if command == 'PTTL' then return case.pttls[key] or -2 end
  local seen = {command, key}
  for _, argument in ipairs({...}) do table.insert(seen, server.call('ECHO', argument)) end
  table.insert(writes, seen)
  return 1
end
"""
    + EXPIRY.source
    + b"""
local plan = expiry_plan(KEYS[1], KEYS[2], case.fallback, case.idle, case.life, case.user_prefix,
                         case.session_key)
if not plan then return 'none' end
if plan.expired then return 'expired' end
local at = server.call('ECHO', plan.at)
expiry_apply(plan, KEYS[1], case.user_prefix)
return {at, writes}
"""
)

META, BLOB, SESSION_KEY, USER_PREFIX = "ns:meta:s1", "ns:session:s1", "s1", "ns:user:"
OWN_SUFFIX, CREATOR_SUFFIX = "dev:t:-:alice", "dev:t:-:creator"


@pytest.fixture(scope="module")
def expiry_harness(engine: redis.Redis) -> Iterator[Harness]:
    yield from _harness(engine, EXPIRY_PLAN)


def test_the_expiry_harness_runs_the_shipped_lua() -> None:
    """The harness's Lua holds, byte for byte, the head of the shipped update, touch and
    register_wait scripts."""
    for script in (scripts.UPDATE, scripts.TOUCH, scripts.REGISTER_WAIT):
        assert script.source.startswith(EXPIRY.source + b"\n")


class Key(NamedTuple):
    """A key's value and expiry: `at` absolute ms, None for none (PTTL -1)."""

    value: str
    at: int | None


_NO_WAIT = "not a wait"


class ExpiryCase(NamedTuple):
    idle_ttl: float | None  # the store's options, seconds
    max_lifetime: float | None
    wait_ttl: float | str | None  # register_wait's ttl, or _NO_WAIT
    now: int  # the server clock, ms
    micros: int  # and the microseconds past `now` the clock also shows
    fallback: str  # the session's own user's pointer suffix ('' for none)
    user_prefix: str  # '' when the pointer lives in another cluster slot
    keys: dict[str, Key]  # the blob, meta key and pointers before the write

    def pttl(self, key: str) -> int:
        found = self.keys[key]
        return -1 if found.at is None else found.at - self.now


# Seconds: mostly a few ms to a few s (so options and the TTLs keys have meet and tie), now and
# then any the options allow (sub-ms ones round up to 1 ms; the longest ones must stay exact).
_seconds = st.one_of(
    st.integers(1, 4).map(lambda ms: ms / 1000),
    st.integers(1, 3000).map(lambda ms: ms / 1000),
    st.sampled_from([0.0015, 1.0, 2.5, MAX_SECONDS]),
    st.floats(min_value=1e-9, max_value=MAX_SECONDS),
)


@st.composite
def expiry_cases(draw: st.DrawFn) -> ExpiryCase:
    """A store's options, a write at `now` (a wait's or not), and the expiry state of the
    session's blob, meta key and pointers (each PTTL -1, or 0 up to a little past the options;
    small values often, so that they tie with the options and with each other)."""
    now = draw(st.integers(10**12, 4 * 10**12))
    remaining = st.one_of(st.none(), st.integers(0, 4), st.integers(0, 4000))

    def key(value: str) -> Key:
        left = draw(remaining)
        return Key(value, None if left is None else now + left)

    keys = {BLOB: key("{}")}
    fallback = draw(st.sampled_from(["", OWN_SUFFIX]))
    meta_value = draw(st.sampled_from([None, "", fallback, CREATOR_SUFFIX]))
    if meta_value is not None:
        keys[META] = key(meta_value)
    user_prefix = draw(st.sampled_from([USER_PREFIX, USER_PREFIX, ""]))
    for suffix in {fallback, meta_value or ""} - {""}:
        if draw(st.booleans()):
            keys[user_prefix + suffix] = key(draw(st.sampled_from([SESSION_KEY, "s2"])))
    return ExpiryCase(
        idle_ttl=draw(st.one_of(st.none(), _seconds)),
        max_lifetime=draw(st.one_of(st.none(), _seconds)),
        wait_ttl=draw(st.one_of(st.just(_NO_WAIT), st.none(), _seconds)),
        now=now,
        micros=draw(st.integers(0, 999)),
        fallback=fallback,
        user_prefix=user_prefix,
        keys=keys,
    )


def _idle_millis(case: ExpiryCase) -> str:
    """The idle time (ms, '' for none) a write restarts: the store's idle_ttl, or a wait's own
    ttl (what register_wait put in its hint, which update.lua and touch.lua then pass)."""
    store_idle, _ = Expiry(case.idle_ttl, case.max_lifetime).as_millis()
    if case.wait_ttl == _NO_WAIT:
        return store_idle
    assert not isinstance(case.wait_ttl, str)
    ttl = wait_ttl_millis(case.wait_ttl, case.idle_ttl)
    return "" if ttl is None else str(ttl)


def _in_millis(idle: str, life: str) -> Expiry:
    """The Expiry rule over as_millis's whole ms ('' for off), set as __post_init__ sets them:
    its check is in seconds, and the longest options are past its bound once counted in ms."""
    rule = Expiry()
    object.__setattr__(rule, "idle_ttl", int(idle) if idle else None)
    object.__setattr__(rule, "max_lifetime", int(life) if life else None)
    return rule


def python_plan(case: ExpiryCase) -> str | dict[str, Key]:
    """The Python twin's answer, as the harness gives it: 'none', 'expired', or every key's value
    and expiry after the write. The rule is Expiry.deadline, run in whole ms (the units
    Expiry.as_millis hands the scripts) from the lifetime's end the keys record: the meta key's
    expiry, else (no meta key, or one without expiry: no recorded creation) now + max_lifetime,
    but no later than the blob's own expiry (expiry.py's docstring). The meta key keeps the
    lifetime's end; the user pointer, when it names the session, shares its expiry."""
    store = Expiry(case.idle_ttl, case.max_lifetime)
    if not store.enabled:
        return "none"
    idle = _idle_millis(case)
    life = store.as_millis()[1]
    now, keys = case.now, dict(case.keys)
    meta = keys.get(META)
    ends = None  # the lifetime's end, under max_lifetime
    if life:
        if meta is not None and meta.at is not None:
            ends = meta.at
        else:
            blob_at = keys[BLOB].at
            ends = now + int(life) if blob_at is None else min(now + int(life), blob_at)
    created = now if ends is None else ends - int(life)
    deadline = _in_millis(idle, life).deadline(created=created, now=now)
    assert deadline is not None
    assert deadline == math.floor(deadline)  # whole ms in, whole ms out
    at = int(deadline)
    if at <= now:
        return "expired"
    keys[BLOB] = Key(keys[BLOB].value, at)
    # The pointer suffix: the meta key's (the creator's, for a session without a user) when it is
    # read (under max_lifetime, or for a session without a user), else the session's own.
    suffix = case.fallback
    if meta is not None and (ends is not None or case.fallback == ""):
        suffix = meta.value
    if ends is not None:
        keys[META] = Key(suffix, ends)
    elif meta is not None and case.fallback == "":
        keys[META] = Key(meta.value, at)
    pointer = case.user_prefix + suffix
    if suffix and case.user_prefix and pointer in keys and keys[pointer].value == SESSION_KEY:
        keys[pointer] = Key(SESSION_KEY, at)
    return keys


def lua_plan(harness: Harness, case: ExpiryCase) -> str | dict[str, Key]:
    """The Lua twin's answer on `case`, in python_plan's shape: its writes applied to the keys."""
    idle = _idle_millis(case)
    life = Expiry(case.idle_ttl, case.max_lifetime).as_millis()[1]
    state = {
        "time": [str(case.now // 1000), str(case.now % 1000 * 1000 + case.micros)],
        "values": {name: key.value for name, key in case.keys.items()},
        "pttls": {name: case.pttl(name) for name in case.keys},
        "fallback": case.fallback,
        # update.lua and touch.lua look a wait up (for its ttl) only under expiry options.
        "idle": idle if Expiry(case.idle_ttl, case.max_lifetime).enabled else "",
        "life": life,
        "user_prefix": case.user_prefix,
        "session_key": SESSION_KEY,
    }
    answer = harness.run((META, BLOB), (msgspec.json.encode(state),))
    if isinstance(answer, bytes):
        return answer.decode()
    at, writes = answer
    keys = dict(case.keys)
    keys[BLOB] = Key(keys[BLOB].value, int(at))
    for command, name, *args in ((part.decode() for part in write) for write in writes):
        if command == "SET" and args[1] == "PXAT":
            keys[name] = Key(args[0], int(args[2]))
        elif command == "PEXPIRE":
            keys[name] = Key(keys[name].value, case.now + int(args[0]))
        else:
            raise AssertionError(f"unexpected write {command} {name} {args}")
    return keys


@TWIN_SETTINGS
@given(case=expiry_cases())
def test_expiry_twins_agree(expiry_harness: Harness, case: ExpiryCase) -> None:
    """For any options, wait ttl, clock and key expiries, the Lua expiry plan (every key's new
    expiry, or 'expired', or no expiry at all) is the Python rule's."""
    assert lua_plan(expiry_harness, case) == python_plan(case)


@pytest.mark.parametrize("seconds", [MAX_SECONDS * 1.000001, 10**13, 10**400])
def test_options_past_what_redis_counts_exactly_are_refused_by_both_backends(
    seconds: float,
) -> None:
    """An option or wait ttl past MAX_SECONDS (whose deadlines Redis's Lua could not count to the
    millisecond, or at all) is InvalidInputError in both backends, before any write."""
    url = "redis://127.0.0.1:1/0"  # never reached: the options are checked first
    for idle, life in ((seconds, None), (None, seconds)):
        with pytest.raises(InvalidInputError):
            InMemorySessionStore(idle_ttl=idle, max_lifetime=life)
        with pytest.raises(InvalidInputError):
            RedisSessionStore.from_url(url, idle_ttl=idle, max_lifetime=life)
    with pytest.raises(InvalidInputError):
        wait_ttl_millis(seconds, None)
