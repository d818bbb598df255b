"""The operator CLI against real redis-servers: in process through `main(argv)`, and as
`python -m greentic_session` subprocesses."""

from __future__ import annotations

import asyncio
import io
import json
import os
import pty
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import hiredis
import pytest
import trustme

from greentic_session import RedisSessionStore, TenantCtx, encode_session_data
from greentic_session.cli import main, scripts
from greentic_session.cli.walk import Progress
from greentic_session.testing import RedisServer, TLSFiles

from .conftest import drop_namespace, make_data

# -- helpers ---------------------------------------------------------------------------------


@dataclass
class Run:
    code: int
    out: str
    err: str
    raw: bytes  # stdout as bytes (export writes bytes)

    @property
    def json(self) -> dict[str, object]:
        loaded: dict[str, object] = json.loads(self.out)
        return loaded


def cli(url: str, namespace: str, *argv: str, stdin: bytes = b"") -> Run:
    """Run the CLI in process with its own streams."""
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="utf-8", write_through=True)
    err = io.StringIO()
    code = main(
        ["--url", url, "--namespace", namespace, *argv],
        stdin=io.BytesIO(stdin),
        stdout=out,
        stderr=err,
    )
    out.flush()
    data = raw.getvalue()
    return Run(code, data.decode(), err.getvalue(), data)


def resp(*args: object) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def raw_commands(url: str, commands: list[tuple[object, ...]]) -> list[object]:
    """Send `commands` pipelined on a plain socket and return the replies (fast seeding and
    reading, independent of the code under test)."""
    parts = urlsplit(url)
    db = parts.path.lstrip("/") or "0"
    with socket.create_connection((parts.hostname, parts.port or 6379)) as sock:
        payload = [resp("SELECT", db)] + [resp(*command) for command in commands]
        sock.sendall(b"".join(payload))
        reader = hiredis.Reader()
        replies: list[object] = []
        while len(replies) < len(payload):
            chunk = sock.recv(1 << 20)
            assert chunk, "server closed the connection"
            reader.feed(chunk)
            while (reply := reader.gets()) is not False:
                replies.append(reply)
    return replies[1:]


def raw(url: str, *command: object) -> object:
    return raw_commands(url, [command])[0]


async def create(url: str, namespace: str, ctx: TenantCtx, state: str = "{}") -> str:
    store = RedisSessionStore.from_url(url, namespace=namespace)
    async with store:
        return await store.create_session(ctx, make_data(ctx, state=state))


def seed(url: str, namespace: str, *ctxs: TenantCtx) -> list[str]:
    async def go() -> list[str]:
        return [
            await create(url, namespace, ctx, state=f'{{"n":{i}}}') for i, ctx in enumerate(ctxs)
        ]

    return asyncio.run(go())


@pytest.fixture
def ns(redis_url: str, namespace: str) -> Iterator[str]:
    """A fresh namespace on the shared server, dropped afterwards."""
    yield namespace
    asyncio.run(drop_namespace(redis_url, namespace))


def blob_of(ctx: TenantCtx, state: str = "{}") -> bytes:
    return encode_session_data(make_data(ctx, state=state))


# -- get / find ------------------------------------------------------------------------------


def test_get_prints_the_session_and_exits_4_when_missing(redis_url: str, ns: str) -> None:
    """`get` shows a stored session's data, expiry and pointer; an unknown key exits 4."""
    ctx = TenantCtx.new("dev", "acme", team="support", user="u1")
    (key,) = seed(redis_url, ns, ctx)
    run = cli(redis_url, ns, "--json", "get", key)
    assert run.code == 0, run.err
    result = run.json
    assert result["key"] == key
    assert result["pttl"] is None
    assert result["data"] == json.loads(blob_of(ctx, '{"n":0}'))
    assert result["pointer"] == {"key": "user:dev:acme:support:u1", "points_here": True}
    table = cli(redis_url, ns, "get", key)
    assert table.code == 0
    assert "support.flow" in table.out
    missing = cli(redis_url, ns, "get", "no-such-key")
    assert missing.code == 4
    assert missing.err.strip() == "greentic-session: no session with that key"


def test_find_follows_the_user_pointer(redis_url: str, ns: str) -> None:
    """`find` resolves env/tenant/team/user through the pointer; none or an orphan exits 4."""
    with_team = TenantCtx.new("dev", "acme", team="support", user="u1")
    no_team = TenantCtx.new("dev", "acme", user="u1")
    key_team, key_plain = seed(redis_url, ns, with_team, no_team)
    found = cli(
        redis_url,
        ns,
        "--json",
        "find",
        "--env",
        "dev",
        "--tenant",
        "acme",
        "--team",
        "support",
        "--user",
        "u1",
    )
    assert found.code == 0, found.err
    assert found.json["key"] == key_team
    plain = cli(redis_url, ns, "--json", "find", "--env", "dev", "--tenant", "acme", "--user", "u1")
    assert plain.json["key"] == key_plain
    nobody = cli(redis_url, ns, "find", "--env", "dev", "--tenant", "acme", "--user", "u9")
    assert nobody.code == 4
    raw(redis_url, "DEL", f"{ns}:session:{key_plain}")
    orphan = cli(redis_url, ns, "find", "--env", "dev", "--tenant", "acme", "--user", "u1")
    assert orphan.code == 4
    assert "orphan" in orphan.err
    bad = cli(redis_url, ns, "find", "--env", "dev", "--tenant", "a:b", "--user", "u1")
    assert bad.code == 2
    assert bad.err.count("\n") == 1


# -- stats -----------------------------------------------------------------------------------


def test_stats_counts_owners_sizes_expiries_and_orphans(redis_url: str, ns: str) -> None:
    """`stats` counts sessions and pointers per env/tenant/team, sizes, expiries and orphans."""
    seed(
        redis_url,
        ns,
        TenantCtx.new("dev", "acme", user="u1"),
        TenantCtx.new("dev", "acme", user="u2"),
        TenantCtx.new("prod", "acme", team="ops", user="u3"),
    )
    big = blob_of(TenantCtx.new("dev", "acme"), state="x" * 5000)
    raw_commands(
        redis_url,
        [
            ("SET", f"{ns}:session:big", big, "PX", 90_000),
            ("SET", f"{ns}:user:dev:acme:-:ghost", "gone"),
            ("SET", f"{ns}:something:else", "1"),
        ],
    )
    run = cli(redis_url, ns, "--json", "stats")
    assert run.code == 0, run.err
    result = run.json
    assert result["kinds"] == {
        "session": 4,
        "meta": 0,
        "wait-hint": 0,
        "pointer": 4,
        "wait-scope": 0,
        "wait-set": 0,
        "other": 1,
    }
    owners = {
        (o["env"], o["tenant"], o["team"]): (o["sessions"], o["refs"]) for o in result["owners"]
    }
    assert owners == {("dev", "acme", "-"): (3, 3), ("prod", "acme", "ops"): (1, 1)}
    assert result["blob_sizes"] == {"<256B": 3, "<16KiB": 1}
    assert result["ttls"] == {"none": 3, "<10m": 1}
    assert result["orphans"] == 1
    table = cli(redis_url, ns, "stats")
    assert "orphan references  1" in table.out
    assert "\r" not in table.err  # stderr is no terminal: no progress line


# -- check / repair --------------------------------------------------------------------------


def plant_problems(url: str, ns: str) -> dict[str, str]:
    """A healthy session plus one of each problem; returns the healthy session's key."""
    healthy_ctx = TenantCtx.new("dev", "acme", user="ok")
    (healthy,) = seed(url, ns, healthy_ctx)
    raw_commands(
        url,
        [
            ("SET", f"{ns}:user:dev:acme:-:ghost", "gone-1"),  # orphan pointer
            ("SET", f"{ns}:waits:scope:dev:acme:-:ghost:h1", "gone-2"),  # orphan wait scope
            ("SADD", f"{ns}:waits:user:dev:acme:-:ok", healthy, "gone-3"),  # one dead member
            ("SET", f"{ns}:meta:gone-4", "dev:acme:-:ghost"),  # orphan meta
            ("SET", f"{ns}:session:broken", b'{"tenant_ctx":'),  # corrupt blob ...
            ("SET", f"{ns}:user:dev:acme:-:c", "broken"),  # ... its pointer
            ("SET", f"{ns}:meta:broken", "dev:acme:-:c"),  # ... and its meta
            ("HSET", f"{ns}:session:hashed", "a", "b"),  # wrong type blob
            ("RPUSH", f"{ns}:user:dev:acme:-:listed", "x"),  # wrong type pointer
        ],
    )
    return {"healthy": healthy}


def test_check_finds_every_problem_and_repair_fixes_only_those(redis_url: str, ns: str) -> None:
    """`check` lists orphans, corrupt blobs and wrong-type keys (exit 1); `--repair` deletes
    exactly those, keeps the healthy session and its live wait member, and check is then clean."""
    planted = plant_problems(redis_url, ns)
    run = cli(redis_url, ns, "--json", "check")
    assert run.code == 1
    found = {(p["problem"], p["key"]) for p in run.json["problems"]}
    assert found == {
        ("orphan", "user:dev:acme:-:ghost"),
        ("orphan", "waits:scope:dev:acme:-:ghost:h1"),
        ("orphan", "waits:user:dev:acme:-:ok"),
        ("orphan", "meta:gone-4"),
        ("corrupt blob", "session:broken"),
        ("wrong type", "session:hashed"),
        ("wrong type", "user:dev:acme:-:listed"),
    }
    assert raw(redis_url, "EXISTS", f"{ns}:session:hashed") == 1  # check alone changes nothing
    for key in ("hashed", "broken"):
        shown = cli(redis_url, ns, "get", key)
        assert shown.code == 1, shown.err
        assert shown.err.count("\n") == 1
    repaired = cli(redis_url, ns, "--json", "check", "--repair")
    assert repaired.code == 0, repaired.out
    assert repaired.json["repaired"] == {"deleted": 7, "kept": 0, "gone": 0, "orphans_after": 1}
    healthy = planted["healthy"]
    assert raw(redis_url, "EXISTS", f"{ns}:session:{healthy}") == 1
    assert raw(redis_url, "GET", f"{ns}:user:dev:acme:-:ok") == healthy.encode()
    assert raw(redis_url, "SMEMBERS", f"{ns}:waits:user:dev:acme:-:ok") == [healthy.encode()]
    gone_keys = ("user:dev:acme:-:ghost", "session:broken", "user:dev:acme:-:c", "meta:gone-4")
    for gone in (*gone_keys, "meta:broken"):
        assert raw(redis_url, "EXISTS", f"{ns}:{gone}") == 0, gone
    clean = cli(redis_url, ns, "check")
    assert clean.code == 0
    assert clean.out.strip().endswith("0 problem(s) in 3 keys")


def test_repairs_compare_before_deleting(redis_url: str, ns: str) -> None:
    """A repair script deletes nothing that changed since the walk read it: a pointer now
    naming another session, a re-created session, a corrupt blob rewritten, a retyped key."""
    pointer, blob = f"{ns}:user:dev:acme:-:u", f"{ns}:session:k"
    raw(redis_url, "SET", pointer, "new-key")
    replies = raw_commands(
        redis_url,
        [
            ("EVAL", scripts.DELETE_ORPHAN, 2, pointer, blob, "k"),  # value changed
            ("SET", pointer, "k"),
            ("SET", blob, "recreated"),
            ("EVAL", scripts.DELETE_ORPHAN, 2, pointer, blob, "k"),  # session is back
            ("EVAL", scripts.DELETE_IF_VALUE, 1, blob, "old bytes"),  # blob rewritten
            ("EVAL", scripts.DELETE_IF_TYPE, 1, blob, "hash"),  # now a string
            ("SADD", f"{ns}:waits:user:dev:acme:-:u", "k"),
            ("EVAL", scripts.REMOVE_ORPHAN_MEMBER, 2, f"{ns}:waits:user:dev:acme:-:u", blob, "k"),
        ],
    )
    assert [replies[i] for i in (0, 3, 4, 5, 7)] == [0, 0, 0, 0, 0]
    assert raw(redis_url, "GET", pointer) == b"k"
    assert raw(redis_url, "GET", blob) == b"recreated"
    raw(redis_url, "DEL", blob)
    assert raw(redis_url, "EVAL", scripts.DELETE_ORPHAN, 2, pointer, blob, "k") == 1
    assert raw(redis_url, "EVAL", scripts.DELETE_ORPHAN, 2, pointer, blob, "k") == -1  # gone


# -- purge -----------------------------------------------------------------------------------


def test_purge_is_a_dry_run_unless_yes(redis_url: str, ns: str) -> None:
    """`purge --tenant` lists what it would delete and deletes nothing; with `--yes` it deletes
    that tenant's blobs, meta, pointers and waits, and nothing of another tenant."""
    gone_a, gone_b, kept = seed(
        redis_url,
        ns,
        TenantCtx.new("dev", "acme", user="u1"),
        TenantCtx.new("dev", "acme", team="ops", user="u2"),
        TenantCtx.new("dev", "other", user="u1"),
    )
    raw_commands(
        redis_url,
        [
            ("SET", f"{ns}:meta:{gone_a}", "dev:acme:-:u1"),
            ("SADD", f"{ns}:waits:user:dev:acme:-:u1", gone_a),
            ("SET", f"{ns}:waits:scope:dev:acme:ops:u2:h", gone_b),
        ],
    )
    before = sorted(raw(redis_url, "KEYS", f"{ns}:*"))
    dry = cli(redis_url, ns, "--json", "purge", "--tenant", "acme")
    assert dry.code == 0, dry.err
    assert dry.json["dry_run"] is True
    assert dry.json["selected"] == {"session": 2, "pointer": 2, "wait-scope": 1, "wait-set": 1}
    assert sorted(raw(redis_url, "KEYS", f"{ns}:*")) == before
    done = cli(redis_url, ns, "purge", "--tenant", "acme", "--yes")
    assert done.code == 0, done.err
    assert "deleted 6 key(s)" in done.out
    left = sorted(k.decode() for k in raw(redis_url, "KEYS", f"{ns}:*"))
    assert left == sorted([f"{ns}:session:{kept}", f"{ns}:user:dev:other:-:u1"])
    assert cli(redis_url, ns, "purge").code == 2  # no filter: refused


def test_purge_by_team_dash_selects_sessions_without_team(redis_url: str, ns: str) -> None:
    """`--team -` selects only sessions and pointers without a team."""
    no_team, with_team = seed(
        redis_url,
        ns,
        TenantCtx.new("dev", "acme", user="u1"),
        TenantCtx.new("dev", "acme", team="ops", user="u1"),
    )
    run = cli(redis_url, ns, "--json", "purge", "--team", "-", "--yes")
    assert run.code == 0
    assert sorted(run.json["keys"]) == sorted([f"session:{no_team}", "user:dev:acme:-:u1"])
    assert raw(redis_url, "EXISTS", f"{ns}:session:{with_team}") == 1


# -- export / import -------------------------------------------------------------------------


def test_export_skips_and_reports_corrupt_blobs(redis_url: str, ns: str) -> None:
    """A corrupt blob is named on stderr, left out of the output, and exits 1."""
    (key,) = seed(redis_url, ns, TenantCtx.new("dev", "acme", user="u1"))
    raw(redis_url, "SET", f"{ns}:session:bad", "not json")
    run = cli(redis_url, ns, "export")
    assert run.code == 1
    lines = run.raw.splitlines()
    assert [json.loads(line)["key"] for line in lines] == [key]
    assert "skipped corrupt blob session:bad" in run.err
    assert "exported 1 session(s); skipped 1" in run.err


def test_import_validates_everything_before_writing(redis_url: str, ns: str) -> None:
    """A bad line anywhere exits 2 naming the line, and nothing of the input is written."""
    ctx = TenantCtx.new("dev", "acme", user="u1")
    good = {
        "key": "k1",
        "pttl": None,
        "data": json.loads(blob_of(ctx)),
        "meta": None,
        "refs": [{"key": "user:dev:acme:-:u1", "pttl": None}],
    }
    cases = [
        {**good, "key": "k2", "data": {"flow_id": "f"}},  # not SessionData
        {**good, "key": "k2", "refs": [{"key": "user:dev:OTHER:-:u1", "pttl": None}]},
        {**good, "key": "k2", "refs": [{"key": "session:x", "pttl": None}]},
        {**good, "key": "k2", "pttl": 0},
        {**good, "key": "", "pttl": None},
        {**good, "surprise": 1},
    ]
    for bad in cases:
        stdin = (json.dumps(good) + "\n" + json.dumps(bad) + "\n").encode()
        run = cli(redis_url, ns, "import", stdin=stdin)
        assert run.code == 2, (bad, run.err)
        assert run.err.startswith("greentic-session: line 2: ")
        assert raw(redis_url, "KEYS", f"{ns}:*") == []
    ok = cli(redis_url, ns, "import", stdin=json.dumps(good).encode())
    assert ok.code == 0, ok.err
    assert raw(redis_url, "GET", f"{ns}:user:dev:acme:-:u1") == b"k1"


@dataclass
class BigSet:
    url: str
    namespace: str
    sessions: int
    names: list[bytes]  # every key seeded, with what it holds and the expiry it was given
    values: list[object]  # bytes, or the sorted members of a set
    pttls: list[int]  # -1: none
    seeded_at: float


SESSIONS = 100_000


def seed_big(url: str, namespace: str) -> BigSet:
    """100,000 sessions (half expiring, some with meta, pointers, wait scopes and wait sets),
    written with raw pipelined commands."""
    templates = {
        team: blob_of(
            TenantCtx.new("dev", "tTENANT", team=team, user="uUSER"),
            state='{"n":"NUMBER","s":"\\u00e9\\n"}',
        )
        for team in (None, "ops")
    }
    big = BigSet(url, namespace, SESSIONS, [], [], [], 0.0)
    commands: list[tuple[object, ...]] = []

    def put(op: str, name: str, value: bytes, pttl: int = -1) -> None:
        full = f"{namespace}:{name}".encode()
        expiry = ("PX", pttl) if pttl > 0 else ()
        commands.append((op, full, value, *expiry))
        if op == "SADD":
            commands.append(("PEXPIRE", full, pttl))
        big.names.append(full)
        big.values.append([value] if op == "SADD" else value)
        big.pttls.append(pttl)

    for i in range(SESSIONS):
        key = f"{i:08x}-0000-4000-8000-{i:012x}"
        tenant, team = f"t{i % 7}", (None if i % 3 else "ops")
        number = str(i).encode()
        blob = templates[team].replace(b"TENANT", str(i % 7).encode())
        blob = blob.replace(b"USER", number).replace(b"NUMBER", number)
        slot = f"dev:{tenant}:{team or '-'}:u{i}"
        put("SET", f"session:{key}", blob, 3_600_000 + i if i % 2 else -1)
        if i % 2 == 0:
            put("SET", f"user:{slot}", key.encode())
        if i % 10 == 0:
            put("SET", f"meta:{key}", slot.encode(), 7_200_000 + i)
        if i % 100 == 0:
            put("SET", f"waits:scope:{slot}:h{i}", key.encode(), 600_000)
            put("SADD", f"waits:user:{slot}", key.encode(), 900_000)
    big.seeded_at = time.monotonic()
    for start in range(0, len(commands), 50_000):
        raw_commands(url, commands[start : start + 50_000])
    return big


@pytest.fixture(scope="module")
def big(redis_server: RedisServer) -> Iterator[BigSet]:
    """A private server holding the 100,000-session namespace (module-wide, read-only)."""
    _ = redis_server  # skips like the other Redis tests when no redis-server exists
    with RedisServer() as server:
        yield seed_big(server.url, "big:session")


def test_export_import_round_trip_of_100k_sessions(big: BigSet) -> None:
    """100,000 sessions exported and imported into another server keep every key, blob (byte
    for byte), meta, pointer and wait, and their remaining expiries (within the time taken)."""
    exported = cli(big.url, big.namespace, "export")
    assert exported.code == 0, exported.err
    assert exported.raw.count(b"\n") == big.sessions
    assert "0 orphan reference(s)" in exported.err
    with RedisServer() as target:
        imported = cli(target.url, big.namespace, "import", stdin=exported.raw)
        assert imported.code == 0, imported.err
        assert f"imported {big.sessions} of {big.sessions}" in imported.out
        assert raw(target.url, "DBSIZE") == len(big.names)
        commands: list[tuple[object, ...]] = []
        for name, value in zip(big.names, big.values, strict=True):
            commands.append(("SMEMBERS" if isinstance(value, list) else "GET", name))
            commands.append(("PTTL", name))
        replies = raw_commands(target.url, commands)
        elapsed_ms = (time.monotonic() - big.seeded_at) * 1000
    for index, (value, pttl) in enumerate(zip(big.values, big.pttls, strict=True)):
        got, got_pttl = replies[2 * index], replies[2 * index + 1]
        assert got == value, big.names[index]
        if pttl < 0:
            assert got_pttl == -1, big.names[index]
        else:  # it counted down since seeding, never up, and not by more than the time taken
            assert pttl - elapsed_ms - 1000 <= got_pttl <= pttl, big.names[index]


def test_import_twice_leaves_the_same_state(redis_url: str, ns: str) -> None:
    """Importing one file twice (blobs, meta, pointers, wait scopes and sets, with and without
    expiry) leaves every key, value and expiry as the first import did."""
    ctx = TenantCtx.new("dev", "acme", team="ops", user="u1")
    other = TenantCtx.new("dev", "acme", team="ops", user="u2")
    lines = [
        {
            "key": "k1",
            "pttl": 500_000,
            "data": json.loads(blob_of(ctx)),
            "meta": {"value": "dev:acme:ops:u1", "pttl": 600_000},
            "refs": [
                {"key": "user:dev:acme:ops:u1", "pttl": None},
                {"key": "waits:scope:dev:acme:ops:u1:h", "pttl": 400_000},
                {"key": "waits:user:dev:acme:ops:u1", "pttl": 700_000},
            ],
        },
        {
            "key": "k2",
            "pttl": None,
            "data": json.loads(blob_of(other)),
            "meta": None,
            "refs": [{"key": "waits:user:dev:acme:ops:u1", "pttl": 700_000}],
        },
    ]
    stdin = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    states = []
    for _ in range(2):
        run = cli(redis_url, ns, "import", stdin=stdin)
        assert run.code == 0, run.err
        names = sorted(raw(redis_url, "KEYS", f"{ns}:*"))
        commands: list[tuple[object, ...]] = []
        for name in names:
            commands += [("TYPE", name), ("DUMP", name), ("PTTL", name)]
        replies = raw_commands(redis_url, commands)
        states.append(
            [
                (n, replies[3 * i], replies[3 * i + 1], replies[3 * i + 2])
                for i, n in enumerate(names)
            ]
        )
    assert len(states[0]) == 6
    # Same keys, types and values, and the same expiries give or take the time between the two
    # reads (compared with a tolerance: 10 s buckets failed when a read fell on a bucket edge).
    assert [s[:3] for s in states[0]] == [s[:3] for s in states[1]]
    for (_, _, _, first), (_, _, _, second) in zip(states[0], states[1], strict=True):
        assert (first < 0) == (second < 0)
        assert abs(first - second) < 5_000, (first, second)
    assert raw(redis_url, "SMEMBERS", f"{ns}:waits:user:dev:acme:ops:u1") in (
        [b"k1", b"k2"],
        [b"k2", b"k1"],
    )


def test_ctrl_c_ends_a_walk_and_prints_the_summary_so_far(big: BigSet) -> None:
    """SIGINT during `stats` stops the walk after its batch, prints the partial table and exits
    130; the progress line appears because stderr is a terminal."""
    controller, terminal = pty.openpty()
    env = {**os.environ, "GREENTIC_SESSION_REDIS_URL": big.url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "greentic_session", "--namespace", big.namespace, "stats"],
        stdout=subprocess.PIPE,
        stderr=terminal,
        env=env,
    )
    os.close(terminal)
    seen = b""
    try:
        while b"stats: keys:" not in seen:
            ready, _, _ = select.select([controller], [], [], 30)
            assert ready, "no progress line within 30 s"
            seen += os.read(controller, 4096)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(controller)
    assert proc.returncode == 130
    text = out.decode()
    assert "interrupted: the figures cover the keys walked so far" in text
    assert "session" in text


# -- subprocess, usage, secrets --------------------------------------------------------------


def test_subprocess_export_piped_into_import(redis_url: str, ns: str, namespace: str) -> None:
    """`python -m greentic_session export | ... import` copies a namespace to another one,
    with the URL taken from $GREENTIC_SESSION_REDIS_URL."""
    keys = seed(
        redis_url,
        ns,
        TenantCtx.new("dev", "acme", user="u1"),
        TenantCtx.new("dev", "acme", team="ops", user="u2"),
    )
    target = f"{ns}-copy"
    env = {**os.environ, "GREENTIC_SESSION_REDIS_URL": redis_url}
    command = [sys.executable, "-m", "greentic_session"]
    exported = subprocess.run(
        [*command, "--namespace", ns, "export"],
        env=env,
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert exported.returncode == 0, exported.stderr
    imported = subprocess.run(
        [*command, "--namespace", target, "--json", "import"],
        env=env,
        input=exported.stdout,
        capture_output=True,
        check=False,
        timeout=60,
    )
    try:
        assert imported.returncode == 0, imported.stderr
        assert json.loads(imported.stdout)["imported"] == 2
        for key in keys:
            assert raw(redis_url, "GET", f"{target}:session:{key}") == raw(
                redis_url, "GET", f"{ns}:session:{key}"
            )
        assert raw(redis_url, "GET", f"{target}:user:dev:acme:ops:u2") == keys[1].encode()
    finally:
        asyncio.run(drop_namespace(redis_url, target))


def test_usage_errors_exit_2_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing URL, an unknown command or a bad namespace exit 2 without a traceback."""
    monkeypatch.delenv("GREENTIC_SESSION_REDIS_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    err = io.StringIO()
    assert main(["stats"], stderr=err) == 2
    assert "set GREENTIC_SESSION_REDIS_URL or pass --url" in err.getvalue()
    err = io.StringIO()
    assert main(["--url", "redis://127.0.0.1:1/0", "frobnicate"], stderr=err) == 2
    assert "invalid choice" in err.getvalue()
    err = io.StringIO()
    assert main(["--url", "redis://127.0.0.1:1/0", "--namespace", "a*", "stats"], stderr=err) == 2
    assert err.getvalue().count("\n") == 1
    assert "Traceback" not in err.getvalue()
    err = io.StringIO()
    argv = ["--url", "redis://127.0.0.1:1/0", "--tls-ca-file", "ca.pem", "stats"]
    assert main(argv, stderr=err) == 2
    assert err.getvalue() == "greentic-session: --tls-ca-file needs a rediss:// URL\n"


def test_password_is_never_printed() -> None:
    """Connection and authentication failures exit 3 with one line that hides the password."""
    with RedisServer(extra_args=["--requirepass", "right-one"]) as server:
        port = server.port
        wrong = cli(f"redis://:hunter2-secret@127.0.0.1:{port}/0", "x:session", "stats")
        assert wrong.code == 3
        assert "hunter2-secret" not in wrong.err
        assert wrong.err.count("\n") == 1
        ok = cli(f"redis://:right-one@127.0.0.1:{port}/0", "x:session", "--json", "stats")
        assert ok.code == 0, ok.err
        assert "right-one" not in ok.out + ok.err
    refused = cli(f"redis://user:hunter2-secret@127.0.0.1:{port}/0", "x:session", "stats")
    assert refused.code == 3
    assert "hunter2-secret" not in refused.err
    assert "***" in refused.err


def test_progress_line_only_on_a_terminal() -> None:
    """The progress line is drawn on a terminal and never written to a pipe or file."""

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal, pipe = Terminal(), io.StringIO()
    for stream in (terminal, pipe):
        progress = Progress(stream)
        progress.update("keys", 1000, 0.5)
        progress.finish()
    assert "\rkeys: 1,000 [" in terminal.getvalue()
    assert "~50%" in terminal.getvalue()
    assert pipe.getvalue() == ""


async def test_walk_dedupes_names_and_skips_deleted_keys(redis_url: str, ns: str) -> None:
    """A name SCAN returns again is not read twice, and a key deleted before the read is
    skipped and counted as vanished."""
    from greentic_session.cli.layout import Layout
    from greentic_session.cli.walk import Stop, Walker, connect

    raw_commands(redis_url, [("SET", f"{ns}:user:dev:acme:-:u{i}", f"k{i}") for i in range(5)])
    conn = connect(redis_url, timeout=5)
    try:
        layout = Layout(ns)
        walker = Walker(conn, layout, stop=Stop(), progress=Progress(io.StringIO()))
        seen: set[bytes] = set()
        cursor, first = await walker._step(0, seen, None, layout.match)
        while cursor != 0:  # the rest of the keyspace, so every one of ours was returned
            cursor, more = await walker._step(cursor, seen, None, layout.match)
            first += more
        assert sorted(e.name for e in first) == [f"user:dev:acme:-:u{i}" for i in range(5)]
        _, again = await walker._step(0, seen, None, layout.match)
        assert again == []  # the same names from a restarted cursor: already seen
        raw(redis_url, "DEL", f"{ns}:user:dev:acme:-:u0")
        entries = await walker._fetch([(e.name, e.parsed) for e in first])
        assert len(entries) == 4
        assert walker.vanished == 1
    finally:
        await conn.aclose()


def test_import_counts_records_it_could_not_write(redis_url: str, ns: str) -> None:
    """A record whose wait-set key holds another type in the target is written not at all,
    the others are (exit 1)."""
    ctx = TenantCtx.new("dev", "acme", user="u1")
    record = {
        "key": "k1",
        "pttl": None,
        "data": json.loads(blob_of(ctx)),
        "meta": None,
        "refs": [{"key": "waits:user:dev:acme:-:u1", "pttl": None}],
    }
    other = {**record, "key": "k2", "refs": []}
    raw(redis_url, "SET", f"{ns}:waits:user:dev:acme:-:u1", "a string")
    stdin = (json.dumps(record) + "\n" + json.dumps(other) + "\n").encode()
    run = cli(redis_url, ns, "--json", "import", stdin=stdin)
    assert run.code == 1
    assert run.json == {"records": 2, "imported": 1, "failed": 1, "interrupted": False}
    assert raw(redis_url, "EXISTS", f"{ns}:session:k2") == 1
    assert raw(redis_url, "EXISTS", f"{ns}:session:k1") == 0
    assert raw(redis_url, "GET", f"{ns}:waits:user:dev:acme:-:u1") == b"a string"


def test_tls_with_a_private_ca(redis_server: RedisServer, tmp_path: Path) -> None:
    """`rediss://` with `--tls-ca-file` reaches a TLS server; an unknown CA exits 3."""
    _ = redis_server  # skips like the other Redis tests when no redis-server exists
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1")
    issued.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    issued.cert_chain_pems[0].write_to_path(str(tmp_path / "server.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    trustme.CA().cert_pem.write_to_path(str(tmp_path / "other.pem"))
    files = TLSFiles(
        str(tmp_path / "server.pem"), str(tmp_path / "server.key"), str(tmp_path / "ca.pem")
    )
    with RedisServer(tls=files) as server:
        trusted = cli(server.url, "x:session", "--tls-ca-file", str(tmp_path / "ca.pem"), "stats")
        assert trusted.code == 0, trusted.err
        stranger = cli(
            server.url, "x:session", "--tls-ca-file", str(tmp_path / "other.pem"), "stats"
        )
        assert stranger.code == 3
        assert stranger.err.count("\n") == 1


# -- wait sessions -----------------------------------------------------------------------------


def test_a_wait_sessions_hint_travels_with_it(redis_url: str, ns: str, namespace: str) -> None:
    """Export carries a wait session's `waitof:` hint; import restores it with its expiry; purge
    deletes it with its session, leaving no key of that session behind."""
    from greentic_session import ReplyScope

    ctx = TenantCtx.new("dev", "acme", user="u1")

    async def register() -> None:
        async with RedisSessionStore.from_url(redis_url, namespace=ns) as store:
            scope = ReplyScope(conversation="chat-1")
            await store.register_wait(ctx, "u1", scope, "wait-1", make_data(ctx), ttl=600)

    asyncio.run(register())
    hint = f"{ns}:waitof:wait-1"
    value = raw(redis_url, "GET", hint)
    assert value  # the store wrote one
    exported = cli(redis_url, ns, "export")
    assert exported.code == 0, exported.err
    (record,) = [json.loads(line) for line in exported.out.splitlines()]
    assert record["wait_hint"]["value"] == value.decode()
    copy = f"copy-{namespace}"
    try:
        imported = cli(redis_url, copy, "import", stdin=exported.raw)
        assert imported.code == 0, imported.err
        assert raw(redis_url, "GET", f"{copy}:waitof:wait-1") == value
        assert 0 < raw(redis_url, "PTTL", f"{copy}:waitof:wait-1") <= 600_000
    finally:
        asyncio.run(drop_namespace(redis_url, copy))
    done = cli(redis_url, ns, "purge", "--tenant", "acme", "--yes")
    assert done.code == 0, done.err
    assert raw(redis_url, "KEYS", f"{ns}:*") == []
