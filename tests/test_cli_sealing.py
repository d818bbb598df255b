"""The operator CLI on sealed stores (encryption and compression at rest), against a real
redis-server: key rings from a file or the environment only, every reading command opens sealed
blobs, and `reseal` rotates keys and compression without losing a session or a concurrent
update."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pytest

from greentic_session import RedisSessionStore, ReplyScope, TenantCtx, decode_session_data
from greentic_session.cli.context import Context
from greentic_session.cli.keyring import KEYS_VARIABLE, load_sealing
from greentic_session.cli.layout import Layout
from greentic_session.cli.reseal import reseal
from greentic_session.cli.walk import Progress, Stop, connect
from greentic_session.schema import SessionData
from greentic_session.sealing import Encryption, read_header

from .conftest import drop_namespace, make_data
from .test_cli import Run, cli, raw, raw_commands

if TYPE_CHECKING:
    from greentic_session.testing import LocalCluster

K1, K2 = os.urandom(32), os.urandom(32)
B1, B2 = base64.b64encode(K1).decode(), base64.b64encode(K2).decode()
ALICE = TenantCtx.new("dev", "acme", team="care", user="alice")
BOB = TenantCtx.new("dev", "acme", team="care", user="bob")
CAROL = TenantCtx.new("prod", "globex", user="carol")
PEOPLE = (ALICE, BOB, CAROL)


@pytest.fixture
def ns(redis_url: str, namespace: str) -> Iterator[str]:
    """A fresh namespace on the shared server, dropped afterwards."""
    yield namespace
    asyncio.run(drop_namespace(redis_url, namespace))


def ring_text(active: str, **keys: bytes) -> str:
    return json.dumps(
        {"active": active, "keys": {k: base64.b64encode(v).decode() for k, v in keys.items()}}
    )


def ring_file(tmp_path: Path, active: str, **keys: bytes) -> str:
    path = tmp_path / f"ring-{active}-{'-'.join(keys)}.json"
    path.write_text(ring_text(active, **keys))
    return str(path)


def store(
    url: str,
    ns: str,
    *,
    k1: bool = False,
    k2: bool = False,
    active: str | None = None,
    compression: Literal["zstd"] | None = None,
    idle_ttl: float | None = None,
) -> RedisSessionStore:
    """A store on `ns` sealing with a ring of the keys asked for (k1, k2), if any."""
    keys = {name: key for name, key, on in (("k1", K1, k1), ("k2", K2, k2)) if on}
    encryption = Encryption(keys, active or next(iter(keys))) if keys else None
    return RedisSessionStore.from_url(
        url, namespace=ns, encryption=encryption, compression=compression, idle_ttl=idle_ttl
    )


def seed(url: str, ns: str, **kw: Any) -> dict[str, SessionData]:
    """One session per person (with its user pointer) in a store made by `store(**kw)`."""

    async def go() -> dict[str, SessionData]:
        made = {}
        async with store(url, ns, **kw) as s:
            for i, ctx in enumerate(PEOPLE):
                data = make_data(ctx, state=f'{{"n":{i}}}')
                made[await s.create_session(ctx, data)] = data
        return made

    return asyncio.run(go())


def blobs(url: str, ns: str, keys: list[str]) -> list[bytes]:
    found = raw_commands(url, [("GET", f"{ns}:session:{key}") for key in keys])
    assert all(isinstance(b, bytes) for b in found)
    return found  # type: ignore[return-value]


def forms(url: str, ns: str, keys: list[str]) -> set[tuple[str, bool, bool] | None]:
    """The (key id, compressed, encrypted) of each stored blob; ("", False, False): plaintext."""
    out: set[tuple[str, bool, bool] | None] = set()
    for key, blob in zip(keys, blobs(url, ns, keys), strict=True):
        header = read_header(blob, session_key=key)
        out.add(None if header is None else (header.key_id, header.compressed, header.encrypted))
    return out


def read_all(url: str, ns: str, keys: list[str], **kw: Any) -> list[SessionData | None]:
    async def go() -> list[SessionData | None]:
        async with store(url, ns, **kw) as s:
            return [await s.get_session(key) for key in keys]

    return asyncio.run(go())


def snapshot(url: str, ns: str) -> dict[bytes, object]:
    names = raw(url, "KEYS", f"{ns}:*")
    assert isinstance(names, list)
    dumps = raw_commands(url, [("DUMP", n) for n in names])
    return dict(zip(names, dumps, strict=True))


def sealed_cli(url: str, ns: str, ring: str | None, *argv: str) -> Run:
    head = ["--keys-file", ring] if ring else []
    return cli(url, ns, *head, *argv)


# -- key rings -------------------------------------------------------------------------------


def test_bad_key_files_exit_2_and_never_show_the_key(
    redis_url: str, ns: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every malformed key ring exits 2 with one line that holds no byte of any key."""
    short = base64.b64encode(K1[:31]).decode()
    cases = {
        "short": json.dumps({"active": "k1", "keys": {"k1": short}}),
        "not-base64": json.dumps({"active": "k1", "keys": {"k1": B1[:-2] + "!!"}}),
        "swapped": json.dumps({"active": "k1", "keys": {B1: "k1"}}),
        "active-is-a-key": json.dumps({"active": B2, "keys": {"k1": B1}}),
        "broken-json": '{"active": "k1", "keys": {"k1": "' + B1 + '"',
        "extra-field": json.dumps({"active": "k1", "keys": {"k1": B1}, "k9": B2}),
    }
    secrets = {B1, B2, short, B1[:-2], B1[:12], B2[:12], short[:12]}
    for name, text in cases.items():
        path = tmp_path / f"{name}.json"
        path.write_text(text)
        run = sealed_cli(redis_url, ns, str(path), "stats")
        assert run.code == 2, (name, run.err)
        assert run.err.startswith("greentic-session: "), name
        assert not any(s in run.out + run.err for s in secrets), name
        monkeypatch.setenv(KEYS_VARIABLE, text)
        from_env = cli(redis_url, ns, "stats")
        monkeypatch.delenv(KEYS_VARIABLE)
        assert from_env.code == 2, (name, from_env.err)
        assert not any(s in from_env.out + from_env.err for s in secrets), name
    # A key pasted where the path goes is not echoed either.
    missing = sealed_cli(redis_url, ns, B1, "stats")
    assert missing.code == 2
    assert B1 not in missing.err
    assert not raw(redis_url, "KEYS", f"{ns}:*")


def test_keys_cannot_be_given_on_the_command_line(redis_url: str, ns: str) -> None:
    """No option takes a key (no abbreviation of --keys-file either), and the refused value
    is not echoed."""
    for argv in (["--keys", B1], ["--key", B1], [f"--keys={B1}"], ["--keys-fil", B1]):
        run = cli(redis_url, ns, *argv, "stats")
        assert run.code == 2, argv
        assert B1 not in run.err, argv
        assert B1[:12] not in run.err, argv
    after = cli(redis_url, ns, "stats", "--key", B1)
    assert after.code == 2
    assert B1 not in after.err


def test_ring_from_the_environment(
    redis_url: str, ns: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """$GREENTIC_SESSION_KEYS holds the ring's JSON; without a ring an encrypted blob does not
    open and `get` says so (exit 1) without its content."""
    made = seed(redis_url, ns, k1=True)
    key, data = next(iter(made.items()))
    without = cli(redis_url, ns, "--json", "get", key)
    assert without.code == 1
    assert without.json["does_not_open"]
    assert "data" not in without.json
    assert "support.flow" not in without.out + without.err
    monkeypatch.setenv(KEYS_VARIABLE, ring_text("k1", k1=K1))
    run = cli(redis_url, ns, "--json", "get", key)
    assert run.code == 0, run.err
    assert decode_session_data(json.dumps(run.json["data"]).encode()) == data
    assert run.json["sealed"] == {"key_id": "k1", "compressed": False, "encrypted": True}


# -- reading commands on a sealed store ------------------------------------------------------


def test_get_find_stats_check_on_a_sealed_store(redis_url: str, ns: str, tmp_path: Path) -> None:
    """With the keys, get/find show the data, stats counts blobs per sealed form, check is
    clean; a tampered, a moved and a foreign-key blob are problems naming their key, never
    repaired."""
    made = seed(redis_url, ns, k1=True, compression="zstd")
    keys = list(made)
    ring = ring_file(tmp_path, "k1", k1=K1)
    got = sealed_cli(redis_url, ns, ring, "--json", "get", keys[0])
    assert got.code == 0, got.err
    assert got.json["data"]["context_json"] == '{"n":0}'
    found = sealed_cli(
        redis_url, ns, ring, "--json", "find", "--env", "dev", "--tenant", "acme",
        "--team", "care", "--user", "bob",
    )  # fmt: skip
    assert found.code == 0, found.err
    assert found.json["key"] == keys[1]
    stats = sealed_cli(redis_url, ns, ring, "--json", "stats")
    assert stats.code == 0
    assert stats.json["sealed"] == 3
    assert stats.json["plaintext"] == 0
    form = {"key_id": "k1", "compressed": True, "encrypted": True}
    assert [(e["form"], e["blobs"]) for e in stats.json["sealing"]] == [(form, 3)]
    assert stats.json["sealing"][0]["bytes"] == sum(map(len, blobs(redis_url, ns, keys)))
    assert sealed_cli(redis_url, ns, ring, "check").code == 0

    # Tamper with one blob, move another under a new key, seal a third under an unknown key.
    tampered = bytearray(blobs(redis_url, ns, keys[:1])[0])
    tampered[-1] ^= 1
    raw(redis_url, "SET", f"{ns}:session:{keys[0]}", bytes(tampered))
    raw(redis_url, "SET", f"{ns}:session:moved-here", blobs(redis_url, ns, keys[1:2])[0])
    stranger = asyncio.run(_seal_with(redis_url, ns, "stranger", k2=True))
    check = sealed_cli(redis_url, ns, ring, "--json", "check", "--repair")
    assert check.code == 1
    problems = {p["key"]: p for p in check.json["problems"]}
    assert {f"session:{keys[0]}", "session:moved-here"} <= set(problems)
    assert all(p["problem"] == "does not open" for p in problems.values())
    assert "k2" in problems[f"session:{stranger}"]["detail"]
    assert "support.flow" not in check.out
    assert '"n"' not in check.out
    assert raw(redis_url, "EXISTS", f"{ns}:session:moved-here") == 1  # never repaired
    assert raw(redis_url, "GET", f"{ns}:session:{keys[0]}") == bytes(tampered)
    stats = sealed_cli(redis_url, ns, ring, "--json", "stats")
    assert stats.json["does_not_open"] == 3


async def _seal_with(url: str, ns: str, user: str, **kw: Any) -> str:
    ctx = ALICE.with_user(user)
    async with store(url, ns, **kw) as s:
        return await s.create_session(ctx, make_data(ctx))


def test_export_opens_and_import_seals(
    redis_url: str, ns: str, namespace: str, tmp_path: Path
) -> None:
    """Export with the keys writes the opened JSON; import with keys seals each record under
    the active key for its namespace, with the meta key's pointer record, and a store with the
    ring reads, removes and finds them."""
    made = seed(redis_url, ns, k1=True)
    ring = ring_file(tmp_path, "k1", k1=K1)
    exported = sealed_cli(redis_url, ns, ring, "export")
    assert exported.code == 0, exported.err
    records = [json.loads(line) for line in exported.out.splitlines()]
    assert {r["key"] for r in records} == set(made)
    for record in records:
        assert decode_session_data(json.dumps(record["data"]).encode()) == made[record["key"]]
    assert sealed_cli(redis_url, ns, None, "export").code == 1  # no keys: skipped, named

    other = namespace
    try:
        ring2 = ring_file(tmp_path, "k2", k1=K1, k2=K2)
        imported = cli(
            redis_url, other, "--keys-file", ring2, "--compression", "zstd", "import",
            stdin=exported.raw,
        )  # fmt: skip
        assert imported.code == 0, imported.err
        keys = list(made)
        assert forms(redis_url, other, keys) == {("k2", True, True)}
        assert read_all(redis_url, other, keys, k2=True) == list(made.values())
        for key, data in made.items():
            user = data.tenant_ctx.normalized_user
            team = data.tenant_ctx.normalized_team or "-"
            suffix = f"{data.tenant_ctx.env}:{data.tenant_ctx.tenant_id}:{team}:{user}"
            assert raw(redis_url, "GET", f"{other}:meta:{key}") == suffix.encode()

        async def remove_and_find() -> object:
            async with store(redis_url, other, k2=True) as s:
                await s.remove_session(keys[0])
                return await s.find_by_user(ALICE, "alice")

        assert asyncio.run(remove_and_find()) is None
        assert raw(redis_url, "EXISTS", f"{other}:user:dev:acme:care:alice") == 0
    finally:
        asyncio.run(drop_namespace(redis_url, other))


# -- reseal ----------------------------------------------------------------------------------


def test_rotation_k1_to_k2_loses_no_session(redis_url: str, ns: str, tmp_path: Path) -> None:
    """k1 -> {k1, k2} active k2 -> reseal --yes -> {k2} alone: every session reads by key and
    by user through a store holding only k2, and a second run reseals nothing."""
    made = seed(redis_url, ns, k1=True)
    keys = list(made)
    both = ring_file(tmp_path, "k2", k1=K1, k2=K2)
    run = sealed_cli(redis_url, ns, both, "--json", "reseal", "--yes")
    assert run.code == 0, run.err
    assert run.json["resealed"] == 3
    assert run.json["already_current"] == 0
    assert forms(redis_url, ns, keys) == {("k2", False, True)}
    assert "reseal: 3/3 sessions" in run.err  # plain progress lines without a terminal
    assert not any(key in run.out + run.err for key in keys)
    assert read_all(redis_url, ns, keys, k2=True) == list(made.values())

    async def finds() -> list[object]:
        async with store(redis_url, ns, k2=True) as s:
            return [await s.find_by_user(ctx, ctx.normalized_user or "") for ctx in PEOPLE]

    assert [f[0] for f in asyncio.run(finds()) if f] == keys  # type: ignore[index]
    only_k2 = ring_file(tmp_path, "k2", k2=K2)
    found = sealed_cli(
        redis_url, ns, only_k2, "--json", "find", "--env", "prod", "--tenant", "globex",
        "--user", "carol",
    )  # fmt: skip
    assert found.code == 0
    assert found.json["data"]["context_json"] == '{"n":2}'
    again = sealed_cli(redis_url, ns, only_k2, "--json", "reseal", "--yes")
    assert (again.json["resealed"], again.json["already_current"]) == (0, 3)


def test_reseal_dry_run_writes_nothing(redis_url: str, ns: str, tmp_path: Path) -> None:
    """Without --yes reseal counts what would change and leaves every key as it was."""
    seed(redis_url, ns, k1=True)
    before = snapshot(redis_url, ns)
    run = sealed_cli(redis_url, ns, ring_file(tmp_path, "k2", k1=K1, k2=K2), "--json", "reseal")
    assert run.code == 0, run.err
    assert run.json["dry_run"] is True
    assert run.json["resealed"] == 3
    assert snapshot(redis_url, ns) == before


def test_reseal_refuses_what_does_not_open(redis_url: str, ns: str, tmp_path: Path) -> None:
    """A blob under a key the ring lacks, or one that opens but does not decode, is refused
    and left byte for byte; the others are resealed."""
    made = seed(redis_url, ns, k1=True)
    stranger = asyncio.run(_seal_with(redis_url, ns, "stranger", k2=True))
    raw(redis_url, "SET", f"{ns}:session:junk", b'{"not": "a session"}')
    before = blobs(redis_url, ns, [stranger, "junk"])
    ring = ring_file(tmp_path, "k3", k1=K1, k3=os.urandom(32))
    run = sealed_cli(redis_url, ns, ring, "--accept-plaintext", "--json", "reseal", "--yes")
    assert run.code == 1
    assert run.json["resealed"] == len(made)
    assert run.json["refused"] == 2
    assert blobs(redis_url, ns, [stranger, "junk"]) == before


def test_plaintext_store_resealed_keeps_pointers_working(
    redis_url: str, ns: str, tmp_path: Path
) -> None:
    """Sealing a plaintext store with reseal writes every blob's pointer record into its meta
    key, so a sealing store's remove clears the user pointer and touch refreshes it."""
    made = seed(redis_url, ns, idle_ttl=600.0)
    keys = list(made)
    assert not raw(redis_url, "EXISTS", *[f"{ns}:meta:{key}" for key in keys])
    ring = ring_file(tmp_path, "k1", k1=K1)
    refused = sealed_cli(redis_url, ns, ring, "--json", "reseal", "--yes")
    assert (refused.code, refused.json["refused"]) == (1, 3)  # plaintext needs the flag
    run = sealed_cli(redis_url, ns, ring, "--accept-plaintext", "--json", "reseal", "--yes")
    assert run.code == 0, run.err
    assert forms(redis_url, ns, keys) == {("k1", False, True)}
    metas = raw_commands(redis_url, [("PTTL", f"{ns}:meta:{key}") for key in keys])
    assert all(isinstance(left, int) and 0 < left <= 600_000 for left in metas)
    alice_ptr, bob_ptr = f"{ns}:user:dev:acme:care:alice", f"{ns}:user:dev:acme:care:bob"
    raw(redis_url, "PEXPIRE", bob_ptr, 5000)

    async def remove_and_touch() -> None:
        async with store(redis_url, ns, k1=True, idle_ttl=600.0) as s:
            await s.remove_session(keys[0])
            await s.touch_session(keys[1])

    asyncio.run(remove_and_touch())
    assert raw(redis_url, "EXISTS", alice_ptr) == 0
    left = raw(redis_url, "PTTL", bob_ptr)
    assert isinstance(left, int)
    assert left > 500_000


def test_compression_on_and_off_through_reseal(redis_url: str, ns: str, tmp_path: Path) -> None:
    """reseal --compression zstd compresses every blob and --compression none undoes it, with
    or without a key ring, and every session still reads."""
    made = seed(redis_url, ns)
    keys = list(made)
    on = cli(redis_url, ns, "--compression", "zstd", "--json", "reseal", "--yes")
    assert (on.code, on.json["resealed"]) == (0, 3)
    assert forms(redis_url, ns, keys) == {("", True, False)}
    assert read_all(redis_url, ns, keys) == list(made.values())
    ring = ring_file(tmp_path, "k1", k1=K1)
    both = sealed_cli(redis_url, ns, ring, "--compression", "zstd", "--accept-plaintext",
                      "reseal", "--yes")  # fmt: skip
    assert both.code == 0, both.err
    assert forms(redis_url, ns, keys) == {("k1", True, True)}
    off = sealed_cli(redis_url, ns, ring, "--json", "reseal", "--yes")
    assert (off.code, off.json["resealed"]) == (0, 3)
    assert forms(redis_url, ns, keys) == {("k1", False, True)}
    assert read_all(redis_url, ns, keys, k1=True) == list(made.values())


@pytest.mark.parametrize("writer", ["current", "old"])
async def test_an_update_during_reseal_is_kept(
    redis_url: str, ns: str, tmp_path: Path, writer: str
) -> None:
    """An update landing between reseal's read and its compare-and-set is kept: written by a
    store with the new settings it is skipped as current, with the old ones it is resealed."""
    async with store(redis_url, ns, k1=True) as s:
        key = await s.create_session(ALICE, make_data(ALICE, state='{"v":1}'))
        other = await s.create_session(BOB, make_data(BOB))
    newer = make_data(ALICE, state='{"v":2}')
    writes: list[str] = []

    async def before_write(session_key: str) -> None:
        if session_key == key and not writes:
            writes.append(session_key)
            current = writer == "current"
            async with store(
                redis_url, ns, k1=True, k2=current, active="k2" if current else "k1"
            ) as w:
                await w.update_session(key, newer)

    sealing = load_sealing(
        ns,
        keys_file=ring_file(tmp_path, "k2", k1=K1, k2=K2),
        compression=None,
        accept_plaintext=False,
    )
    conn = connect(redis_url, timeout=5.0)
    ctx = Context(conn, Layout(ns), Stop(), Progress(io.StringIO()), sealing)
    try:
        report = await reseal(ctx, yes=True, before_write=before_write)
    finally:
        await conn.aclose()
    assert writes == [key]
    assert report.result["conflicts_retried"] == 1
    assert report.result["gave_up"] == 0
    expected = (1, 1) if writer == "current" else (2, 0)  # (resealed, already current)
    assert (report.result["resealed"], report.result["already_current"]) == expected
    assert forms(redis_url, ns, [key, other]) == {("k2", False, True)}
    async with store(redis_url, ns, k2=True) as s:
        assert await s.get_session(key) == newer


# -- copy-to-cluster -------------------------------------------------------------------------


def test_copy_to_cluster_reseals_a_rekeyed_sealed_wait(
    redis_url: str, ns: str, redis_cluster: LocalCluster, tmp_path: Path
) -> None:
    """A sealed session keeping its key is copied byte for byte; a sealed wait, bound to its
    old key, is skipped (named) without the keys and resealed under its tagged key with them,
    and a second run finds it already copied."""
    waiter = ALICE.with_user("waiter")
    scope = ReplyScope(conversation="chat-1")

    async def seed_source() -> str:
        async with store(redis_url, ns, k1=True) as s:
            plain = await s.create_session(BOB, make_data(BOB))
            await s.register_wait(waiter, "waiter", scope, "wait-1", make_data(waiter))
        return plain

    plain = asyncio.run(seed_source())
    masters = ",".join(f"redis://127.0.0.1:{port}/0" for port in redis_cluster.master_ports())
    ring = ring_file(tmp_path, "k1", k1=K1)
    try:
        bare = cli(redis_url, ns, "--json", "copy-to-cluster", "--to", masters, "--yes")
        assert bare.code == 1
        assert bare.json["copied"] == 1
        assert [line.split(":")[0] for line in bare.json["skipped"]] == ["wait-1"]
        assert "give the keys" in bare.json["skipped"][0]
        run = sealed_cli(redis_url, ns, ring, "--json", "copy-to-cluster", "--to", masters, "--yes")
        assert run.code == 0, run.out + run.err
        assert (run.json["copied"], run.json["already_there"]) == (1, 1)
        (tagged,) = run.json["rekeyed"].values()
        again = sealed_cli(redis_url, ns, ring, "--json", "copy-to-cluster", "--to", masters)
        assert again.code == 0, again.out
        assert (again.json["copied"], again.json["already_there"]) == (0, 2)

        async def read_cluster() -> tuple[object, ...]:
            target = RedisSessionStore.from_cluster(
                [f"redis://127.0.0.1:{p}/0" for p in redis_cluster.master_ports()],
                namespace=ns,
                encryption=Encryption({"k1": K1}, "k1"),
            )
            async with target:
                return (
                    await target.get_session(plain),
                    await target.find_wait_by_scope(waiter, "waiter", scope),
                    await target.get_session(tagged),
                )

        bob, found, wait = asyncio.run(read_cluster())
        assert bob == make_data(BOB)
        assert found is not None
        assert wait == make_data(waiter)
    finally:
        asyncio.run(drop_namespace(masters, ns))


def test_max_blob_bytes_bounds_what_a_compressed_blob_may_open_to(redis_url: str, ns: str) -> None:
    """--max-blob-bytes is the limit a compressed blob opens within: below the session's size
    get refuses it (exit 1, no content), at the default it opens."""
    made = seed(redis_url, ns, compression="zstd")
    key = next(iter(made))
    small = cli(redis_url, ns, "--max-blob-bytes", "64", "--json", "get", key)
    assert small.code == 1
    assert small.json["does_not_open"]
    assert "support.flow" not in small.out + small.err
    assert cli(redis_url, ns, "--json", "get", key).code == 0
    assert cli(redis_url, ns, "--max-blob-bytes", "0", "get", key).code == 2
