"""The shared wire vectors: exact greentic-types JSON and Rust mapping keys, both directions;
ReplyScope and wait-record vectors; the decoder on hostile stored bytes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from greentic_session import (
    InvalidInputError,
    ReplyScope,
    SessionCursor,
    SessionData,
    TenantCtx,
    decode_session_data,
    encode_session_data,
    mapping,
)

# The vectors' home is ../shared/wire beside the checkout; tests/wire is a copy for checkouts
# without it, kept identical by test_vendored_vectors_match_shared.
SHARED_WIRE = Path(__file__).resolve().parents[2] / "shared" / "wire"
VENDORED_WIRE = Path(__file__).resolve().parent / "wire"
WIRE = SHARED_WIRE if SHARED_WIRE.is_dir() else VENDORED_WIRE


def _vectors(name: str) -> list[dict[str, Any]]:
    loaded: list[dict[str, Any]] = json.loads((WIRE / name).read_text(encoding="utf-8"))
    return loaded


SESSION_VECTORS = [pytest.param(v, id=v["name"]) for v in _vectors("session_data.json")]
MAPPING_VECTORS = [
    pytest.param(v, id=f"{v['helper']}-{'-'.join(v['args'])}") for v in _vectors("mapping.json")
]


@pytest.mark.parametrize("vector", SESSION_VECTORS)
def test_decode_then_encode_gives_the_exact_rust_bytes(vector: dict[str, Any]) -> None:
    """Each vector decodes and re-encodes to exactly the bytes serde_json writes."""
    data = decode_session_data(vector["json"])
    assert encode_session_data(data) == vector["json"].encode("utf-8")
    assert decode_session_data(vector["json"].encode("utf-8")) == data


def test_quickstart_vector_equals_the_object_built_in_python() -> None:
    """The Python-built quickstart snapshot encodes to the Rust bytes and decodes back equal."""
    data = SessionData(
        tenant_ctx=TenantCtx.new("dev", "tenant-42", user="user-7"),
        flow_id="support.flow",
        cursor=SessionCursor(node_pointer="node.wait_input"),
        context_json='{"ticket":123}',
    )
    (vector,) = [v for v in _vectors("session_data.json") if v["name"] == "quickstart"]
    assert encode_session_data(data) == vector["json"].encode("utf-8")
    assert decode_session_data(vector["json"]) == data


def test_team_without_user_vector_matches_tenantctx_new() -> None:
    """TenantCtx.new(..., team=...) fills team and team_id and writes attempt 0."""
    data = SessionData(
        tenant_ctx=TenantCtx.new("prod", "acme", team="support"),
        flow_id="billing.flow",
        cursor=SessionCursor(node_pointer="node.start"),
        context_json="{}",
    )
    (vector,) = [v for v in _vectors("session_data.json") if v["name"] == "team_no_user"]
    assert encode_session_data(data) == vector["json"].encode("utf-8")


def test_attributes_are_sorted_and_omitted_when_empty() -> None:
    """attributes is written with sorted keys, and left out entirely when empty."""
    ctx = TenantCtx.new("dev", "t", attributes={"b": "2", "a": "1"})
    data = SessionData(
        tenant_ctx=ctx, flow_id="f", cursor=SessionCursor(node_pointer="n"), context_json=""
    )
    assert b'"attributes":{"a":"1","b":"2"},"attempt":0' in encode_session_data(data)
    bare = SessionData(
        tenant_ctx=TenantCtx.new("dev", "t"),
        flow_id="f",
        cursor=SessionCursor(node_pointer="n"),
        context_json="",
    )
    assert b"attributes" not in encode_session_data(bare)


def test_strings_escape_like_serde_json() -> None:
    """Quotes, backslashes and control characters are escaped; non-ASCII stays raw UTF-8."""
    data = SessionData(
        tenant_ctx=TenantCtx.new("dev", "t"),
        flow_id="f",
        cursor=SessionCursor(node_pointer="n"),
        context_json='"\\\n\t\r\b\f\x01\x1f\x7fé€',
    )
    expected = '"context_json":"\\"\\\\\\n\\t\\r\\b\\f\\u0001\\u001f\x7fé€"'
    assert expected.encode("utf-8") in encode_session_data(data)


def test_attempt_is_required_on_decode() -> None:
    """A tenant_ctx without attempt is refused, as Rust's serde refuses it."""
    raw = (
        '{"tenant_ctx":{"env":"dev","tenant":"t","tenant_id":"t"},"flow_id":"f",'
        '"cursor":{"node_pointer":"n"},"context_json":"{}"}'
    )
    with pytest.raises(InvalidInputError, match="attempt"):
        decode_session_data(raw)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("not json", id="not-json"),
        pytest.param("[]", id="wrong-shape"),
        pytest.param(
            '{"tenant_ctx":{"env":"d e v","tenant":"t","tenant_id":"t","attempt":0},'
            '"flow_id":"f","cursor":{"node_pointer":"n"},"context_json":"{}"}',
            id="bad-identifier",
        ),
        pytest.param(
            '{"tenant_ctx":{"env":"dev","tenant":"t","tenant_id":"t","attempt":-1},'
            '"flow_id":"f","cursor":{"node_pointer":"n"},"context_json":"{}"}',
            id="negative-attempt",
        ),
    ],
)
def test_invalid_json_is_invalid_input(raw: str) -> None:
    """Malformed or rule-breaking JSON raises InvalidInputError."""
    with pytest.raises(InvalidInputError):
        decode_session_data(raw)


@pytest.mark.parametrize("vector", MAPPING_VECTORS)
def test_mapping_helpers_match_the_rust_keys(vector: dict[str, Any]) -> None:
    """The deterministic key helpers give the Rust crate's lowercase hex SHA-256."""
    helper = getattr(mapping, vector["helper"])
    assert helper(*vector["args"]) == vector["key"]


def test_mapping_accepts_integer_ids_in_decimal() -> None:
    """Integer ids hash as their decimal text; bools and other types are refused."""
    assert mapping.telegram_update_to_session_key(42, 9001, 5) == (
        mapping.telegram_update_to_session_key("42", "9001", "5")
    )
    assert mapping.webhook_to_session_key("crm", "ticket", 1234) == (
        "9b744e82260643d9883d5baffece87e0243b5379d61f4b9c28cc65fc1c19dea3"
    )
    with pytest.raises(TypeError):
        mapping.telegram_update_to_session_key(True, 1, 2)
    with pytest.raises(TypeError):
        mapping.webhook_to_session_key("crm", 1.5, "x")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["session_data.json", "mapping.json"])
def test_vendored_vectors_match_shared(name: str) -> None:
    """The vendored copy of a vector file equals the shared original whenever both exist."""
    vendored = (VENDORED_WIRE / name).read_bytes()
    if SHARED_WIRE.is_dir():
        assert vendored == (SHARED_WIRE / name).read_bytes()
    assert json.loads(vendored)


# -- ReplyScope and wait records (Rust greentic-session 0.5; vendored only, not in ../shared) ------


def _vendored(name: str) -> list[dict[str, Any]]:
    loaded: list[dict[str, Any]] = json.loads((VENDORED_WIRE / name).read_text("utf-8"))["vectors"]
    return loaded


SCOPE_VECTORS = [pytest.param(v, id=v["name"]) for v in _vendored("reply_scope.json")]
WAIT_VECTORS = [pytest.param(v, id=v["name"]) for v in _vendored("wait_records.json")]


@pytest.mark.parametrize("vector", SCOPE_VECTORS)
def test_reply_scope_vectors_both_directions(vector: dict[str, Any]) -> None:
    """Each ReplyScope vector decodes, hashes to Rust's scope_hash and re-encodes to its bytes;
    the same scope built in Python gives the same bytes and hash."""
    scope = msgspec.json.decode(vector["json"], type=ReplyScope)
    assert scope.scope_hash() == vector["scope_hash"]
    assert msgspec.json.encode(scope) == vector["json"].encode("utf-8")
    built = ReplyScope(**json.loads(vector["json"]))
    assert built == scope
    assert built.scope_hash() == vector["scope_hash"]


def test_reply_scope_hash_treats_none_as_empty_and_sees_every_field() -> None:
    """None and "" hash alike (as in Rust); changing any one field changes the hash."""
    full = ReplyScope(conversation="c", thread="t", reply_to="r", correlation="x")
    assert (
        ReplyScope(conversation="c").scope_hash()
        == ReplyScope(conversation="c", thread="", reply_to="", correlation="").scope_hash()
    )
    hashes = {
        full.scope_hash(),
        *(
            msgspec.structs.replace(full, **{f: "other"}).scope_hash()
            for f in full.__struct_fields__
        ),
    }
    assert len(hashes) == 5


def test_reply_scope_json_omits_unset_fields_and_reads_nulls() -> None:
    """Unset optional fields are left out; null or missing ones read as None; unknown ignored."""
    assert msgspec.json.encode(ReplyScope(conversation="c", correlation="x")) == (
        b'{"conversation":"c","correlation":"x"}'
    )
    decoded = msgspec.json.decode(b'{"conversation":"c","thread":null,"extra":1}', type=ReplyScope)
    assert decoded == ReplyScope(conversation="c")
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"thread":"t"}', type=ReplyScope)


@pytest.mark.parametrize(
    "fields",
    [{"conversation": 5}, {"conversation": "c", "thread": b"t"}, {"conversation": "\udc80"}],
    ids=["int", "bytes", "lone-surrogate"],
)
def test_reply_scope_refuses_fields_it_could_not_encode_or_hash(fields: dict[str, Any]) -> None:
    """A non-str field or a lone surrogate is refused at construction, naming the field."""
    with pytest.raises(InvalidInputError, match="scope"):
        ReplyScope(**fields)


@pytest.mark.parametrize("vector", WAIT_VECTORS)
def test_wait_record_blobs_both_directions(vector: dict[str, Any]) -> None:
    """The Rust register_wait blobs decode, re-encode to the same bytes, and equal the data
    built in Python; the scope key ends with the scope's hash."""
    blob = vector["blob"]
    data = decode_session_data(blob)
    assert encode_session_data(data) == blob.encode("utf-8")
    who = vector["ctx"]
    ctx = TenantCtx.new(who["env"], who["tenant"], team=who["team"], user=who["user"])
    assert data.tenant_ctx == ctx
    assert data.tenant_ctx.normalized_user == vector["user_id"]
    rebuilt = SessionData(
        tenant_ctx=ctx,
        flow_id=data.flow_id,
        pack_id=data.pack_id,
        cursor=data.cursor,
        context_json=data.context_json,
    )
    assert encode_session_data(rebuilt) == blob.encode("utf-8")
    if vector["scope"] is not None:
        scope_hash = msgspec.json.decode(vector["scope"], type=ReplyScope).scope_hash()
        (scope_key,) = [k for k in vector["redis"] if ":waits:scope:" in k]
        assert scope_key.endswith(":" + scope_hash)
        assert vector["redis"][scope_key] == vector["session_key"]


# -- hostile stored data: the decoder raises InvalidInputError and nothing else ------------------

_GOOD = (
    b'{"tenant_ctx":{"env":"dev","tenant":"t","tenant_id":"t","user_id":"user-secret-7",'
    b'"attempt":0},"flow_id":"f","cursor":{"node_pointer":"n"},"context_json":"{}"}'
)
DEEP = 100_000
HOSTILE = {
    "not-utf8": _GOOD.replace(b'"{}"', b'"\xff\xfe"'),
    "not-utf8-in-unknown-field": _GOOD.replace(b'"attempt"', b'"x":"\xff","attempt"'),
    "not-utf8-unknown-key": _GOOD.replace(b'"attempt"', b'"\xed\xa0\x80":1,"attempt"'),
    "not-utf8-raw": _GOOD.replace(b'"n"', b'"\xc3\x28"'),
    "deep-arrays": b"[" * DEEP + b"]" * DEEP,
    "deep-objects": b'{"a":' * DEEP + b"1" + b"}" * DEEP,
    "deep-unknown-field": _GOOD.replace(
        b'{"env"', b'{"x":' + b"[" * DEEP + b"]" * DEEP + b',"env"'
    ),
    "deep-context": _GOOD.replace(b'"context_json":"{}"', b'"context_json":' + b"[" * DEEP),
    "repeated-user_id": _GOOD.replace(b'"attempt"', b'"user_id":"other-user","attempt"'),
    "repeated-escaped-user_id": _GOOD.replace(b'"attempt"', b'"user\\u005fid":"x","attempt"'),
    "repeated-tenant_ctx": _GOOD.replace(b'"flow_id"', b'"tenant_ctx":{},"flow_id"'),
    "repeated-node_pointer": _GOOD.replace(b'"n"}', b'"n","node_pointer":"m"}'),
    "wrong-type-ctx": _GOOD.replace(b'"tenant_ctx":{', b'"tenant_ctx":[{').replace(b"0},", b"0}],"),
    "attempt-string": _GOOD.replace(b'"attempt":0', b'"attempt":"0"'),
    "attempt-huge": _GOOD.replace(b'"attempt":0', b'"attempt":' + b"9" * 5000),
    "attempt-minus-zero": _GOOD.replace(b'"attempt":0', b'"attempt":-0'),
    "millis-huge": _GOOD.replace(
        b'"attempt"', b'"deadline":{"unix_millis":1' + b"0" * 60 + b'},"attempt"'
    ),
    "lone-surrogate": _GOOD.replace(b'"{}"', b'"\\udc80"'),
    "empty": b"",
    "nul": b"\x00",
    "pointer-not-json": b"8f0f1f7e-1111-4222-8333-944444444444",
}


@pytest.mark.parametrize("raw", HOSTILE.values(), ids=list(HOSTILE))
def test_hostile_blobs_raise_only_invalid_input_without_values_or_chain(raw: bytes) -> None:
    """Non-UTF-8 bytes, 100,000-deep nesting, repeated (owner) fields, wrong types and huge
    numbers raise InvalidInputError, whose message names no stored value and which chains no
    parser exception (the store turns it into InternalError naming the key)."""
    with pytest.raises(InvalidInputError) as caught:
        decode_session_data(raw)
    error = caught.value
    assert "user-secret-7" not in str(error)
    assert "other-user" not in str(error)
    assert error.__cause__ is None
    assert error.__context__ is None


def test_str_input_with_a_lone_surrogate_is_invalid_input() -> None:
    """A str blob that cannot be UTF-8 at all is refused like any other bad blob."""
    with pytest.raises(InvalidInputError):
        decode_session_data(_GOOD.decode("utf-8").replace("{}", "\udc80"))


def test_repeated_owner_fields_are_refused_whatever_the_values() -> None:
    """Any TenantCtx owner field given twice is refused, even with the same value (serde
    refuses a repeated field before it looks at values)."""
    for field, value in [
        ("env", "dev"), ("tenant", "t"), ("tenant_id", "t"), ("team", "a"), ("team_id", "a"),
        ("user", "u"), ("user_id", "user-secret-7"),
    ]:  # fmt: skip
        raw = _GOOD.replace(b'"attempt"', f'"{field}":"{value}","attempt"'.encode())
        if field in ("team", "team_id", "user"):  # present once first, then again
            raw = raw.replace(b'"attempt"', f'"{field}":"{value}","attempt"'.encode())
        with pytest.raises(InvalidInputError, match=f"repeats {field}"):
            decode_session_data(raw)


def test_an_unknown_field_may_repeat_and_other_spellings_are_read() -> None:
    """What serde accepts stays accepted: repeated unknown fields, spaces, escapes, other
    field order, explicit nulls."""
    spaced = (
        b' { "context_json" : "{}" , "cursor" : { "node_pointer" : "n" , "wait_reason" : null } ,'
        b' "flow_id" : "\\u0066" , "tenant_ctx" : { "attempt" : 0 , "env" : "dev" , "tenant" :'
        b' "t" , "tenant_id" : "t" , "user_id" : "user-secret-7" , "x" : 1e999999 ,'
        b' "x" : [ 2 ] } } '
    )
    assert decode_session_data(spaced) == decode_session_data(_GOOD)


@settings(max_examples=300, deadline=None)
@given(
    raw=st.binary(max_size=200)
    | st.builds(lambda a, b: a + b, st.just(_GOOD[:80]), st.binary(max_size=120))
)
def test_arbitrary_bytes_decode_or_raise_invalid_input(raw: bytes) -> None:
    """Any bytes at all either decode to SessionData or raise InvalidInputError, unchained."""
    error: InvalidInputError | None = None
    try:
        decoded: object = decode_session_data(raw)
    except InvalidInputError as caught:
        error, decoded = caught, None
    if error is None:
        assert isinstance(decoded, SessionData)
    else:
        assert error.__context__ is None
