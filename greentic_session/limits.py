"""The size limit on a stored session (`max_blob_bytes`), applied before anything is written.

A session whose encoded JSON is larger than the limit raises `InvalidInputError` before it is
sent, so a runaway payload cannot block the event loop while it is written, nor fill Redis.
Default 16 MiB; None turns it off. The Redis backend encodes with `max_bytes` (a payload with
more characters than the limit is refused before it is encoded) and checks the result; the
in-memory backend, which keeps objects rather than bytes, checks an upper bound of the encoded
size from the character count `check_writable` already took, and encodes only when that bound
is over the limit. The refusal itself lives in the codec (`encode_session_data(max_bytes=)`),
which imports nothing from here.
"""

from __future__ import annotations

from .codec import encode_session_data
from .errors import InvalidInputError
from .schema import SessionData

__all__ = ["DEFAULT_MAX_BLOB_BYTES", "check_data", "check_max_blob_bytes"]

DEFAULT_MAX_BLOB_BYTES = 16 * 1024 * 1024

# JSON escapes a character in at most 6 bytes (\u001f); field names, punctuation and integers of
# every Struct in a SessionData take less than _FRAME bytes, and an attributes entry adds its
# quotes, colon and comma.
_ESCAPE = 6
_FRAME = 1024
_PER_ATTRIBUTE = 6


def check_max_blob_bytes(value: object) -> int | None:
    """The option's value: a positive int, or None (no limit)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError("max_blob_bytes must be a positive int or None")
    return value


def check_data(data: SessionData, limit: int | None, chars: int | None) -> None:
    """Refuse `data` if it encodes to over `limit` bytes. `chars` is what `check_writable`
    returned for it: with it a bound settles nearly every call without encoding."""
    if limit is None:
        return
    if chars is not None:
        attributes = len(data.tenant_ctx.attributes)
        if _FRAME + _ESCAPE * chars + _PER_ATTRIBUTE * attributes <= limit:
            return
    encode_session_data(data, max_bytes=limit)
