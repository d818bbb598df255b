"""The size limit on a stored session (`max_blob_bytes`), applied before anything is written.

A session whose encoded JSON is larger than the limit raises `InvalidInputError` before it is
sent, so a runaway payload cannot block the event loop while it is written, nor fill Redis.
Default 16 MiB; None turns it off. The Redis backend checks the bytes it is about to send; the
in-memory backend, which keeps objects rather than bytes, checks a cheap upper bound of the
encoded size and encodes only when that bound is over the limit.
"""

from __future__ import annotations

import msgspec

from .codec import encode_session_data
from .errors import InvalidInputError
from .schema import SessionData

__all__ = ["DEFAULT_MAX_BLOB_BYTES", "check_blob", "check_data", "check_max_blob_bytes"]

DEFAULT_MAX_BLOB_BYTES = 16 * 1024 * 1024

# JSON escapes a character in at most 6 bytes (\u001f); the field names and punctuation of
# SessionData itself take less than _FRAME bytes.
_ESCAPE = 6
_FRAME = 128
_encode = msgspec.json.Encoder().encode


def check_max_blob_bytes(value: object) -> int | None:
    """The option's value: a positive int, or None (no limit)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError("max_blob_bytes must be a positive int or None")
    return value


def _too_large(size: int, limit: int) -> InvalidInputError:
    return InvalidInputError(
        f"the encoded session is {size} bytes, over max_blob_bytes={limit}; nothing was written"
    )


def check_blob(blob: bytes, limit: int | None) -> None:
    """Refuse an encoded session over `limit` bytes."""
    if limit is not None and len(blob) > limit:
        raise _too_large(len(blob), limit)


def check_data(data: SessionData, limit: int | None) -> None:
    """Refuse `data` (already through `check_writable`) if it encodes to over `limit` bytes."""
    if limit is None:
        return
    # The bound encodes the small parts exactly and counts the free text at its worst escape:
    # a fraction of a full encode, whose cost is nearly all escaping context_json.
    texts = len(data.flow_id) + len(data.pack_id or "") + len(data.context_json)
    bound = _FRAME + len(_encode(data.tenant_ctx)) + len(_encode(data.cursor)) + _ESCAPE * texts
    if bound > limit:
        check_blob(encode_session_data(data), limit)
