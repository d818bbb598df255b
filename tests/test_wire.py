"""The shared wire vectors: exact greentic-types JSON and Rust mapping keys, both directions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from greentic_session import (
    InvalidInputError,
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
