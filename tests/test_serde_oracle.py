"""Differential tests: the Python codec against the real serde_json (the oracle in tests/oracle).

The oracle re-declares the greentic-types structs with their upstream serde attributes and runs
as one long-lived process; every case is a line on its stdin. Each test compares what Python
writes, reads and refuses with what serde does for the same bytes. The differences that remain
on purpose are listed in docs/wire.md; every other difference fails here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from greentic_session import (
    Impersonation,
    InvalidInputError,
    InvocationDeadline,
    ReplyScope,
    SessionCursor,
    SessionData,
    TenantCtx,
    decode_session_data,
    encode_session_data,
    mapping,
)

ORACLE_DIR = Path(__file__).resolve().parent / "oracle"
# Where the Debian librust-*-dev packages put the crate sources (see tests/oracle/.cargo).
CRATE_REGISTRY = Path("/usr/share/cargo/registry")
CRATES = ("serde-1", "serde_derive-1", "serde_json-1", "sha2-0.10", "hex-0.4")

# A modest budget: the whole module stays well under 30 s on a busy 2-core machine.
ORACLE_SETTINGS = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class Oracle:
    """A client for the oracle process: one request line out, one answer line back."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self._process = process

    def _ask(self, op: str, *args: bytes) -> tuple[bool, str]:
        stdin, stdout = self._process.stdin, self._process.stdout
        assert stdin is not None
        assert stdout is not None
        stdin.write(" ".join([op, *(a.hex() for a in args)]).encode("ascii") + b"\n")
        stdin.flush()
        answer = stdout.readline().decode("utf-8").rstrip("\n")
        verdict, _, rest = answer.partition(" ")
        assert verdict in ("ok", "err"), f"oracle answered {answer!r}"
        return verdict == "ok", rest

    def session(self, raw: bytes) -> bytes | None:
        """serde_json's re-encoding of a SessionData document, or None when serde refuses it."""
        ok, rest = self._ask("session", raw)
        return bytes.fromhex(rest) if ok else None

    def scope(self, raw: bytes) -> tuple[bytes, str] | None:
        """serde_json's re-encoding of a ReplyScope document and its scope_hash, or None."""
        ok, rest = self._ask("scope", raw)
        if not ok:
            return None
        encoded, digest = rest.split(" ")
        return bytes.fromhex(encoded), digest

    def mapping_key(self, prefix: str, *parts: bytes) -> str | None:
        """The Rust mapping helper's key (`tg` or `wh`), or None when a part is not UTF-8."""
        ok, rest = self._ask(prefix, *parts)
        return rest if ok else None


def _cargo() -> str | None:
    found = shutil.which("cargo")
    fallback = Path.home() / ".cargo" / "bin" / "cargo"
    return found or (str(fallback) if fallback.exists() else None)


def _missing_crates() -> list[str]:
    present = [p.name for p in CRATE_REGISTRY.iterdir()] if CRATE_REGISTRY.is_dir() else []
    return [c for c in CRATES if not any(name.startswith(c) for name in present)]


@pytest.fixture(scope="session")
def oracle() -> Iterator[Oracle]:
    """The built oracle, running. In CI ($CI set) a missing toolchain fails loudly; elsewhere it
    skips with the reason. A build that starts and fails is always a failure."""
    cargo, missing = _cargo(), _missing_crates()
    if cargo is None or missing:
        reason = (
            "cargo is not installed"
            if cargo is None
            else f"Debian crate packages missing from {CRATE_REGISTRY}: {', '.join(missing)} "
            "(apt-get install librust-serde-json-dev librust-serde-derive-dev "
            "librust-serde-dev librust-sha2-dev librust-hex-dev)"
        )
        if os.environ.get("CI"):  # as tests/conftest.py decides for redis-server
            pytest.fail(f"the serde oracle cannot be built in CI: {reason}")
        pytest.skip(f"serde oracle not built: {reason}")
    build = subprocess.run(
        [cargo, "build", "--offline", "--release", "--quiet"],
        cwd=ORACLE_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    if build.returncode != 0:
        pytest.fail(f"building the serde oracle failed:\n{build.stderr}")
    binary = ORACLE_DIR / "target" / "release" / "greentic-serde-oracle"
    process = subprocess.Popen([binary], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        yield Oracle(process)
    finally:
        assert process.stdin is not None
        assert process.stdout is not None
        process.stdin.close()  # end of input: the oracle exits
        process.wait(timeout=10)
        process.stdout.close()


def _python_verdict(raw: bytes) -> bytes | None:
    """What Python makes of `raw`: its re-encoding, or None when it refuses it (typed)."""
    try:
        return encode_session_data(decode_session_data(raw))
    except InvalidInputError:
        return None


# -- strategies ------------------------------------------------------------------------------------

EDGE_TEXTS = [
    "", '"', "\\", '\\"', "\x00", "\x1f", "\x7f", "\n\r\t\b\f", "\u2028\u2029", "é", "€",
    "\U0001f600", "\U0010ffff", "\ufeff", "\ud7ff\ue000", "/", "</script>", "\\u0041", "a" * 5000,
]  # fmt: skip
any_text = st.one_of(st.sampled_from(EDGE_TEXTS), st.text(max_size=40))
identifiers = st.from_regex(r"[A-Za-z0-9._-]{1,12}", fullmatch=True)

tenant_ctxs = st.builds(
    TenantCtx,
    env=identifiers,
    tenant=identifiers,
    tenant_id=identifiers,
    team=st.none() | identifiers,
    team_id=st.none() | identifiers,
    user=st.none() | identifiers,
    user_id=st.none() | identifiers,
    session_id=st.none() | any_text,
    flow_id=st.none() | any_text,
    node_id=st.none() | any_text,
    provider_id=st.none() | any_text,
    trace_id=st.none() | any_text,
    i18n_id=st.none() | any_text,
    correlation_id=st.none() | any_text,
    attributes=st.dictionaries(any_text, any_text, max_size=4),
    deadline=st.none()
    | st.builds(
        InvocationDeadline,
        unix_millis=st.one_of(
            st.sampled_from([0, -1, 2**63, 2**64, 2**127 - 1, -(2**127)]),
            st.integers(-(2**127), 2**127 - 1),
        ),
    ),
    attempt=st.one_of(st.sampled_from([0, 2**32 - 1]), st.integers(0, 2**32 - 1)),
    idempotency_key=st.none() | any_text,
    impersonation=st.none()
    | st.builds(Impersonation, actor_id=identifiers, reason=st.none() | any_text),
)
session_datas = st.builds(
    SessionData,
    tenant_ctx=tenant_ctxs,
    flow_id=identifiers,
    pack_id=st.none() | identifiers,
    cursor=st.builds(
        SessionCursor,
        node_pointer=any_text,
        wait_reason=st.none() | any_text,
        outbox_marker=st.none() | any_text,
    ),
    context_json=any_text,
)


@dataclass(frozen=True)
class Token:
    """JSON text written as is (a number spelling such as `-0` or `1e3`)."""

    text: str


# A document is built from pairs lists, so it can repeat a key.
Pairs = list[tuple[str, Any]]

BAD_IDENTIFIERS = ["", "a|b", "a b", "a:b", "é", "a\x00", "a/b", "\U0001f600", "-", "."]
INT_EDGES = [
    0, 1, -1, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1, 2**64,
    2**127 - 1, 2**127, -(2**127), -(2**127) - 1, 10**40,
]  # fmt: skip
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from(INT_EDGES),
    st.integers(),
    st.sampled_from([Token("-0"), Token("1.0"), Token("1e3"), Token("-0.0"), Token("1E400")]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(BAD_IDENTIFIERS),
    identifiers,
    any_text,
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.lists(st.tuples(any_text, inner), max_size=3).map(lambda pairs: ("obj", pairs))
    ),
    max_leaves=8,
)

STRUCT_FIELDS = {
    "data": ["tenant_ctx", "flow_id", "pack_id", "cursor", "context_json"],
    "tenant_ctx": list(TenantCtx.__struct_fields__),
    "cursor": list(SessionCursor.__struct_fields__),
    "deadline": ["unix_millis"],
    "impersonation": ["actor_id", "reason"],
    "attributes": ["a", "b"],
}


def _to_pairs(node: Any) -> Any:
    """Parsed JSON (dicts) to the document model (pairs lists tagged "obj")."""
    if isinstance(node, dict):
        return ("obj", [(k, _to_pairs(v)) for k, v in node.items()])
    if isinstance(node, list):
        return [_to_pairs(v) for v in node]
    return node


def _dump(node: Any, style: dict[str, bool]) -> str:
    """Write the document model as JSON; `style` picks escaped keys, ASCII escapes, spacing."""
    comma, colon = (", ", ": ") if style["spaced"] else (",", ":")
    if isinstance(node, tuple):
        items = []
        for key, value in node[1]:
            written = (
                '"' + "".join(f"\\u{ord(c):04x}" if ord(c) < 0x10000 else c for c in key) + '"'
                if style["escape_keys"]
                else json.dumps(key, ensure_ascii=style["ascii"])
            )
            items.append(written + colon + _dump(value, style))
        return "{" + comma.join(items) + "}"
    if isinstance(node, list):
        return "[" + comma.join(_dump(v, style) for v in node) + "]"
    if isinstance(node, Token):
        return node.text
    return json.dumps(node, ensure_ascii=style["ascii"])


def _objects(node: Any, path: str = "data") -> list[tuple[str, Pairs]]:
    """Every object in the document with the name of what it is (its field name)."""
    found: list[tuple[str, Pairs]] = []
    if isinstance(node, tuple):
        found.append((path, node[1]))
        for key, value in node[1]:
            found += _objects(value, key)
    return found


@st.composite
def documents(draw: st.DrawFn) -> bytes:
    """A valid document, then a few mutations: a field set to an edge value, a repeated key,
    a dropped key, an unknown field; written with or without escapes and spaces."""
    data = draw(session_datas)
    tree = _to_pairs(json.loads(encode_session_data(data)))
    for _ in range(draw(st.integers(1, 3))):
        name, pairs = draw(st.sampled_from(_objects(tree)))
        known = STRUCT_FIELDS.get(name, ["x"])
        action = draw(st.sampled_from(["set", "repeat", "drop", "unknown"]))
        if action == "set":
            key = draw(st.sampled_from(known))
            pairs[:] = [(k, v) for k, v in pairs if k != key]
            pairs.append((key, draw(json_values)))
        elif action == "repeat" and pairs:
            key, value = draw(st.sampled_from(pairs))
            pairs.insert(draw(st.integers(0, len(pairs))), (key, draw(st.just(value) | scalars)))
        elif action == "drop" and pairs:
            del pairs[draw(st.integers(0, len(pairs) - 1))]
        else:
            pairs.append((draw(any_text), draw(json_values)))
    style = {
        "spaced": draw(st.booleans()),
        "ascii": draw(st.booleans()),
        "escape_keys": draw(st.booleans()),
    }
    text = _dump(tree, style)
    return text.encode("utf-8", "surrogatepass")


# -- the differential tests ------------------------------------------------------------------------


@ORACLE_SETTINGS
@given(data=session_datas)
def test_serde_reads_what_python_writes_and_writes_the_same_bytes(
    oracle: Oracle, data: SessionData
) -> None:
    """Python's bytes are read by serde and re-encoded identically; Python decodes them back."""
    written = encode_session_data(data)
    assert oracle.session(written) == written
    assert decode_session_data(written) == data


loose_ids = st.sampled_from(BAD_IDENTIFIERS) | any_text
# Around each limit (u32 attempt, i128 unix_millis): the last good value and the first bad one.
loose_ints = st.sampled_from([-1, 2**32 - 1, 2**32, 2**127 - 1, 2**127, -(2**127), -(2**127) - 1])
LOOSE_FIELDS = [
    "env", "tenant", "tenant_id", "team", "user_id", "actor_id", "flow_id", "pack_id",
    "attempt", "unix_millis",
]  # fmt: skip


@st.composite
def loose_session_datas(draw: st.DrawFn) -> SessionData:
    """SessionData with one id or integer field drawn outside the rules (construction may
    refuse it), the others valid."""
    broken = draw(st.sampled_from(LOOSE_FIELDS))

    def pick(field: str, valid: st.SearchStrategy[Any]) -> Any:
        if field != broken:
            return draw(valid)
        return draw(loose_ints if field in ("attempt", "unix_millis") else loose_ids)

    ctx = TenantCtx(
        env=pick("env", identifiers),
        tenant=pick("tenant", identifiers),
        tenant_id=pick("tenant_id", identifiers),
        team=pick("team", identifiers),
        user_id=pick("user_id", identifiers),
        deadline=InvocationDeadline(unix_millis=pick("unix_millis", st.integers(0, 2**60))),
        attempt=pick("attempt", st.integers(0, 9)),
        impersonation=Impersonation(actor_id=pick("actor_id", identifiers)),
    )
    return SessionData(
        tenant_ctx=ctx,
        flow_id=pick("flow_id", identifiers),
        pack_id=pick("pack_id", identifiers),
        cursor=SessionCursor(node_pointer=draw(any_text)),
        context_json=draw(any_text),
    )


@ORACLE_SETTINGS
@given(build=st.data())
def test_python_never_writes_what_serde_refuses(oracle: Oracle, build: st.DataObject) -> None:
    """Whatever ids and integers a caller tries, Python either refuses (InvalidInputError) or
    writes bytes that serde reads and re-encodes unchanged."""
    try:
        written = encode_session_data(build.draw(loose_session_datas()))
    except InvalidInputError:
        return
    assert oracle.session(written) == written


@ORACLE_SETTINGS
@given(raw=documents())
def test_python_and_serde_accept_and_refuse_the_same_documents(oracle: Oracle, raw: bytes) -> None:
    """For mutated documents (edge values, repeated keys, escapes, unknown fields), Python
    refuses exactly what serde refuses, and what both accept re-encodes to the same bytes."""
    assert _python_verdict(raw) == oracle.session(raw), raw


@ORACLE_SETTINGS
@given(raw=st.binary(max_size=300))
def test_arbitrary_bytes_get_the_same_verdict_and_only_typed_errors(
    oracle: Oracle, raw: bytes
) -> None:
    """Any bytes at all: Python raises only InvalidInputError, and agrees with serde."""
    assert _python_verdict(raw) == oracle.session(raw)


TARGETED = {
    "repeated-user_id": b',"user_id":"a","user_id":"b"',
    "repeated-escaped-user_id": b',"user_id":"a","user\\u005fid":"b"',
    "repeated-unix_millis": b',"deadline":{"unix_millis":1,"unix_millis":1}',
    "repeated-actor": b',"impersonation":{"actor_id":"a","actor_id":"a"}',
    "pipe-in-user": b',"user_id":"a|b"',
    "attempt-minus-zero": b',"attempt":-0',
    "millis-minus-zero": b',"deadline":{"unix_millis":-0}',
    "millis-i128-max": b',"deadline":{"unix_millis":170141183460469231731687303715884105727}',
    "millis-past-i128": b',"deadline":{"unix_millis":170141183460469231731687303715884105728}',
    "millis-below-i128": b',"deadline":{"unix_millis":-170141183460469231731687303715884105729}',
    "lone-surrogate-escape": b',"trace_id":"\\ud800"',
    "surrogate-pair-escape": b',"trace_id":"\\ud83d\\ude00"',
    "raw-control": b',"trace_id":"\x01"',
    "not-utf8": b',"trace_id":"\xff"',
    "overlong-utf8": b',"trace_id":"\xc0\xaf"',
    "encoded-surrogate": b',"trace_id":"\xed\xa0\x80"',
    "null-attributes": b',"attributes":null',
    "nested-unknown-200": b',"x":' + b"[" * 200 + b"]" * 200,
    "nested-unknown-objects-500": b',"x":' + b'{"a":' * 500 + b"0" + b"}" * 500,
    "nested-unknown-repeated-keys": b',"x":{"user_id":1,"user_id":{"user_id":2,"user_id":3}}',
    "huge-unknown-number": b',"x":' + b"9" * 5000,
}


@pytest.mark.parametrize("extra", TARGETED.values(), ids=list(TARGETED))
def test_targeted_documents_get_the_same_verdict(oracle: Oracle, extra: bytes) -> None:
    """Named edge cases (repeated owner fields, integer limits, bad UTF-8) agree with serde."""
    head = b'{"tenant_ctx":{"env":"dev","tenant":"t","tenant_id":"t","user_id":"u","attempt":0'
    tail = b'},"flow_id":"f","cursor":{"node_pointer":"n"},"context_json":"{}"}'
    if extra.startswith(b',"attempt"'):
        head = head.removesuffix(b',"attempt":0')
    raw = head + extra + tail
    assert _python_verdict(raw) == oracle.session(raw)


def test_the_documented_differences_are_still_the_only_ones(oracle: Oracle) -> None:
    """docs/wire.md's list: serde accepts these, Python refuses them (each never written)."""
    base = b'"flow_id":"f","cursor":{"node_pointer":"n"},"context_json":"{}"'
    ctx = b'{"env":"dev","tenant":"t","tenant_id":"t","attempt":0}'
    deep = b'{"tenant_ctx":' + ctx + b',"x":' + b"[" * 100_000 + b"]" * 100_000 + b"," + base + b"}"
    as_array = (  # every struct as a JSON array of its fields in order
        b'[["dev","t","t",null,null,null,null,null,null,null,null,null,null,null,{},null,0,'
        b'null,null],"f",null,["n",null,null],"{}"]'
    )
    for raw in (deep, as_array):
        assert oracle.session(raw) is not None
        with pytest.raises(InvalidInputError):
            decode_session_data(raw)


@ORACLE_SETTINGS
@given(
    scope=st.builds(
        ReplyScope,
        conversation=any_text,
        thread=st.none() | any_text,
        reply_to=st.none() | any_text,
        correlation=st.none() | any_text,
    )
)
def test_reply_scope_json_and_hash_match_serde(oracle: Oracle, scope: ReplyScope) -> None:
    """ReplyScope encodes to serde's bytes, decodes back equal, and scope_hash is Rust's."""
    written = msgspec.json.encode(scope)
    assert oracle.scope(written) == (written, scope.scope_hash())
    assert msgspec.json.decode(written, type=ReplyScope) == scope


@ORACLE_SETTINGS
@given(
    prefix=st.sampled_from(["tg", "wh"]),
    parts=st.tuples(any_text | st.integers(), any_text | st.integers(), any_text | st.integers()),
)
def test_mapping_helpers_give_the_rust_keys(
    oracle: Oracle, prefix: str, parts: tuple[str | int, str | int, str | int]
) -> None:
    """telegram/webhook helpers compute the same key as the Rust helpers for any text or int."""
    helper = (
        mapping.telegram_update_to_session_key if prefix == "tg" else mapping.webhook_to_session_key
    )
    expected = oracle.mapping_key(prefix, *(str(p).encode("utf-8") for p in parts))
    assert helper(*parts) == expected
