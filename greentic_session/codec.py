"""The one codec for `SessionData`: the exact bytes Rust's `serde_json::to_string` writes.

The encoder and decoder are built once at import and shared by every backend. Dict keys are
sorted (`order="deterministic"`) as serde writes a `BTreeMap`; Struct fields keep declaration
order.
"""

from __future__ import annotations

import msgspec

from .errors import InvalidInputError
from .schema import SessionData

__all__ = ["decode_session_data", "encode_session_data"]

_encoder = msgspec.json.Encoder(order="deterministic")
_decoder = msgspec.json.Decoder(SessionData)


def encode_session_data(data: SessionData) -> bytes:
    """Serialize `data` to the shared greentic-types JSON."""
    if not isinstance(data, SessionData):
        raise TypeError(f"expected SessionData, got {type(data).__name__}")
    return _encoder.encode(data)


def decode_session_data(raw: bytes | str) -> SessionData:
    """Parse greentic-types JSON; malformed or rule-breaking input raises `InvalidInputError`."""
    try:
        return _decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise InvalidInputError(f"invalid SessionData JSON: {exc}") from None
