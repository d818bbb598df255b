"""The one codec for `SessionData`: the exact bytes Rust's `serde_json::to_string` writes.

The encoder and decoder are built once at import and shared by every backend. Dict keys are
sorted (`order="deterministic"`) as serde writes a `BTreeMap`; Struct fields keep declaration
order.
"""

from __future__ import annotations

import functools
import operator

import msgspec

from .errors import InvalidInputError
from .schema import OWNER_FIELDS, SessionData, TenantCtx, check_writable

__all__ = ["decode_session_data", "encode_session_data", "owner_prefix_length"]

_encoder = msgspec.json.Encoder(order="deterministic")
_decoder = msgspec.json.Decoder(SessionData)


def encode_session_data(data: SessionData) -> bytes:
    """Serialize `data` to the shared greentic-types JSON; a wrongly typed field or a string
    that is not valid Unicode raises `InvalidInputError` (see `check_writable`)."""
    check_writable(data)
    return _encoder.encode(data)


def decode_session_data(raw: bytes | str) -> SessionData:
    """Parse greentic-types JSON; malformed or rule-breaking input raises `InvalidInputError`."""
    try:
        return _decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise InvalidInputError(f"invalid SessionData JSON: {exc}") from None


_BLOB_HEAD = b'{"tenant_ctx":'
_OWNER_TAIL = b'"attempt":0}'


def owner_prefix_length(ctx: TenantCtx) -> int:
    """How many leading bytes of a blob encoded with `ctx` hold its owner fields.

    The owner fields (env, tenant, tenant_id, team, team_id, user, user_id) lead the encoding,
    so a stored blob whose first bytes equal the new blob's, with no further team/user field
    after them, has the same owner. The Redis update script uses this to skip a JSON decode.
    Computed by encoding the owner fields alone, so the layout stays this codec's alone; cached
    per owner, since a runner updates the same few owners over and over.
    """
    return _owner_prefix_length(_owner_fields(ctx))


_owner_fields = operator.attrgetter(*OWNER_FIELDS)


@functools.lru_cache(maxsize=4096)
def _owner_prefix_length(values: tuple[str | None, ...]) -> int:
    owner = TenantCtx(**dict(zip(OWNER_FIELDS, values, strict=True)), attempt=0)  # type: ignore[arg-type]
    return len(_BLOB_HEAD) + len(_encoder.encode(owner)) - len(_OWNER_TAIL)
