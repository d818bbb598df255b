"""The one mapping from redis-py failures to `SessionError`, used by every Redis code path.

Messages are scrubbed: redis-py prefixes pipeline errors with the failing command and its
arguments (keys holding user ids, blobs), and a password may appear in connection errors.
"""

from __future__ import annotations

import re

from redis import exceptions as redis_errors

from ...errors import (
    ErrorCode,
    InternalError,
    PoolExhaustedError,
    SessionError,
    UnavailableError,
    UnknownOutcomeError,
)

__all__ = ["is_pool_full", "to_session_error"]

_POOL_FULL_MESSAGES = ("Too many connections", "No connection available")
_PIPELINE_ECHO = re.compile(r"Command # \d+ \(.*\) of pipeline caused error: ", re.DOTALL)


def is_pool_full(exc: redis_errors.ConnectionError) -> bool:
    return any(text in str(exc) for text in _POOL_FULL_MESSAGES)


def _never_sent(exc: redis_errors.RedisError) -> bool:
    # redis-py's wording when the connection itself could not be made: nothing was sent.
    return "connecting to" in str(exc)


def scrub(text: str, secret: str | None) -> str:
    text = _PIPELINE_ECHO.sub("", text)
    return text.replace(secret, "***") if secret else text


def to_session_error(
    exc: redis_errors.RedisError | TimeoutError,
    *,
    write: bool,
    key: str | None,
    where: str,
    socket_timeout: float | None,
    secret: str | None,
) -> SessionError:
    """The `SessionError` for `exc`, raised by a call on `where` (a redacted address).

    `write` says whether the call could have changed data (a lost reply is then an unknown
    outcome), `key` names the session for data errors, `secret` is scrubbed from messages.
    """
    if isinstance(exc, TimeoutError):
        detail = f"no reply within socket_timeout={socket_timeout}s"
    else:
        detail = scrub(str(exc), secret)
    timed_out = isinstance(exc, TimeoutError | redis_errors.TimeoutError)
    if isinstance(exc, redis_errors.AuthenticationError):
        return UnavailableError(
            f"Redis at {where} rejected the credentials: {detail}",
            code=ErrorCode.UNAUTHENTICATED,
        )
    if isinstance(exc, redis_errors.NoPermissionError):
        return SessionError(
            f"Redis at {where} denied the command: {detail}", code=ErrorCode.PERMISSION_DENIED
        )
    if isinstance(exc, redis_errors.ConnectionError) and is_pool_full(exc):
        return PoolExhaustedError(f"Redis connection pool exhausted on {where}: {detail}")
    if timed_out or isinstance(exc, redis_errors.ConnectionError):
        code = ErrorCode.TIMEOUT if timed_out else ErrorCode.UNAVAILABLE
        if write and (isinstance(exc, TimeoutError) or not _never_sent(exc)):
            return UnknownOutcomeError(
                f"Redis at {where} failed during a write; the outcome is unknown: {detail}",
                code=code,
            )
        return UnavailableError(f"Redis at {where} is unavailable: {detail}", code=code)
    if "WRONGTYPE" in detail and key is not None:
        return InternalError(f"session {key!r}: a Redis key holds the wrong type of value")
    if "WRONGTYPE" in detail:
        return InternalError("a user pointer key holds the wrong type of value")
    return InternalError(f"Redis at {where} returned an error: {detail}")
