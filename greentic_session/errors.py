"""One shallow error hierarchy: every error the library raises is a `SessionError`.

`ErrorCode` values are the greentic-types serde names, so a code crosses the Rust/Python
boundary unchanged. Messages say what was wrong and never carry user ids or secrets.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "ConflictError",
    "ErrorCode",
    "InternalError",
    "InvalidInputError",
    "NotFoundError",
    "PoolExhaustedError",
    "SessionError",
    "StoreClosedError",
    "UnavailableError",
    "UnknownOutcomeError",
]


class ErrorCode(StrEnum):
    UNKNOWN = "unknown"
    INVALID_INPUT = "invalid_input"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    TIMEOUT = "timeout"
    UNAUTHENTICATED = "unauthenticated"
    PERMISSION_DENIED = "permission_denied"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"


class SessionError(Exception):
    """Base of every error raised by greentic_session."""

    code: ErrorCode = ErrorCode.UNKNOWN

    def __init__(self, message: str, *, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code.value!r}, message={self.message!r})"


class InvalidInputError(SessionError, ValueError):
    """The caller passed something the contract forbids; nothing was written."""

    code = ErrorCode.INVALID_INPUT


class NotFoundError(SessionError):
    """The session does not exist (or no longer does)."""

    code = ErrorCode.NOT_FOUND


class ConflictError(SessionError):
    """A concurrent writer kept changing the session; the call gave up without writing."""

    code = ErrorCode.CONFLICT


class UnavailableError(SessionError):
    """The backend could not be reached; `code` is `timeout` when a deadline ran out."""

    code = ErrorCode.UNAVAILABLE


class UnknownOutcomeError(UnavailableError):
    """A write was sent but its reply was lost: it may or may not have been applied."""


class PoolExhaustedError(UnavailableError):
    """No pooled connection became free within `pool_timeout`: the client is overloaded.

    Distinct from a server outage; the code is `rate_limited`.
    """

    code = ErrorCode.RATE_LIMITED


class InternalError(SessionError):
    """Stored data is unusable (undecodable blob, wrong key type); names the session key."""

    code = ErrorCode.INTERNAL


class StoreClosedError(SessionError):
    """The store was closed (`aclose`) and refuses every call.

    A bug in the caller's lifecycle, not an outage: retrying cannot help, so it is not an
    `UnavailableError`, and its code is `invalid_input` (the call breaks the store's contract:
    no call after `aclose`), which callers treat as "do not retry".
    """

    code = ErrorCode.INVALID_INPUT
