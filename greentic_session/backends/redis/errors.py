"""The one mapping from redis-py failures to `SessionError`, used by every Redis code path.

Classification reads redis-py's exception types and the structure of the server's error reply,
never its English wording: the code (the reply's first word: OOM, READONLY, NOPERM, ...), and
where a reply wraps another one, the wrapped reply's code at the place the server puts it (see
`reply_code`, which lists what Redis 7.0 and Valkey 8 send). So:
- the server refusing work for its own state (out of memory, read-only replica, loading, busy
  script, ...) is `UnavailableError` (code `unavailable`): it refused before applying anything;
- an ACL denial is code `permission_denied` wherever it happens: a direct command, a queued
  command of a MULTI (the EXEC then fails with EXECABORT), EXEC itself, or a `redis.call` inside
  a script; a refused MULTI after which the server ran the transaction's commands one by one
  (`transport.UnqueuedError`) is an `UnknownOutcomeError` carrying the refusal's code;
- a key of the wrong type is `InternalError` naming the session; `internal` otherwise stays for
  replies the store cannot use (a script's own Lua error among them, whatever words it holds).

Messages are scrubbed: redis-py prefixes pipeline errors with the failing command and its
arguments (keys holding user ids, blobs), and a password may appear in connection errors. The
returned error's `__cause__` is a sanitized copy of redis-py's exception (same type, scrubbed
text, no chain of its own), so nothing reachable from the error carries what the message may not.
"""

from __future__ import annotations

import ast
import re
import socket
import ssl

from redis import exceptions as redis_errors

from ...errors import (
    ErrorCode,
    InternalError,
    PoolExhaustedError,
    SessionError,
    UnavailableError,
    UnknownOutcomeError,
)
from .connection import NotSentError
from .transport import UnqueuedError

__all__ = [
    "ClusterRedirect",
    "cluster_redirect",
    "is_connection_failure",
    "is_pool_full",
    "reply_code",
    "to_session_error",
]

# redis-py < 8 has no MaxConnectionsError; its wording is the only sign of a full pool there.
_MAX_CONNECTIONS: type[Exception] | None = getattr(redis_errors, "MaxConnectionsError", None)
_POOL_FULL_MESSAGES = ("Too many connections", "No connection available")
_PIPELINE_ECHO = re.compile(r"Command # \d+ \(.*\) of pipeline caused error: ", re.DOTALL)
# The server's own echo, e.g. "unknown command 'x', with args beginning with: 'key' ...".
_ARGUMENTS_ECHO = re.compile(r"(with args beginning with:).*", re.DOTALL)

# Error codes of a server refusing work for its own state. Each refuses before the command (or
# the script's first write) is applied, so even a refused write wrote nothing.
SERVER_STATE_CODES = frozenset(
    {
        "OOM",  # maxmemory reached under noeviction
        "READONLY",  # a replica
        "LOADING",  # still loading its dataset
        "BUSY",  # a script or function is running past busy-reply-threshold
        "MASTERDOWN",  # a replica lost its primary (replica-serve-stale-data no)
        "MISCONF",  # writes stopped after a failed RDB save
        "NOREPLICAS",  # min-replicas-to-write not met
        "TRYAGAIN",  # cluster resharding
        "CLUSTERDOWN",
    }
)
_DENIED_CODES = frozenset({"NOPERM"})
_AUTH_CODES = frozenset({"NOAUTH", "WRONGPASS"})

# redis-py strips the code from replies it maps to an exception class; recover it from the class.
# Most specific first (MasterDownError is a ClusterDownError).
_CODE_OF_CLASS: tuple[tuple[type[Exception], str], ...] = (
    (redis_errors.OutOfMemoryError, "OOM"),
    (redis_errors.ReadOnlyError, "READONLY"),
    (redis_errors.BusyLoadingError, "LOADING"),
    (redis_errors.NoPermissionError, "NOPERM"),
    (redis_errors.ExecAbortError, "EXECABORT"),
    (redis_errors.NoScriptError, "NOSCRIPT"),
    (redis_errors.MasterDownError, "MASTERDOWN"),
    (redis_errors.TryAgainError, "TRYAGAIN"),
    (redis_errors.ClusterDownError, "CLUSTERDOWN"),
)
# An error code as redis-py recognizes one (its parser's pattern): a reply's first word in caps.
_CODE_WORD = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
# Fixed leads of an ERR reply that stand for another code. The server words these failures as
# ERR plus a lead of its own (and the denial's text), not as NOPERM; matched at the start of the
# reply only, where a script's own Lua error (which starts "user_script:<line>:") never is.
_ERR_LEADS: tuple[tuple[str, str], ...] = (
    ("ACL failure in script: ", "NOPERM"),  # Valkey 8: a `redis.call` the ACL denies
    ("The user executing the script can't ", "NOPERM"),  # Redis 6.x and 7.0: the same
)
_ERR_LEAD_TEXTS = tuple(lead for lead, _ in _ERR_LEADS)
# Redis < 7 wraps the error of a failed `redis.call` in its own ERR reply, the inner reply after
# the call's position ("@user_script: <line>: "); a Lua error's position is "user_script:<line>:".
_WRAPPED_SCRIPT_ERROR = re.compile(
    r"Error running script \(call to f_[0-9a-f]+\): @user_script:\d+: @user_script: \d+: -?"
)
# A script touched a key of a slot this cluster node does not serve (a slot on the move): the
# script failed at that read, before its first write (every script reads first), so nothing was
# written. Each server's fixed lead after ERR:
_SCRIPT_SLOT_LEADS = (
    "Script attempted to access a non local key",  # Redis 7.0
    "Script attempted to access a slot not served",  # Valkey 8
)


class ClusterRedirect(Exception):
    """A cluster node's answer that a call ran nowhere and where to take it instead.

    `kind` is "moved" (the slot lives at `address` now), "ask" (the slot is migrating and the key
    is at `address`: ask there once), "busy" (the slot is mid-migration: TRYAGAIN, or a script
    met a key that already moved; try again shortly) or "down" (CLUSTERDOWN: try again
    shortly). Internal: `cluster.ClusterCaller` catches it; it carries no key and no reply text.
    """

    __slots__ = ("address", "kind", "slot")

    def __init__(self, kind: str, slot: int = -1, address: tuple[str, int] | None = None) -> None:
        super().__init__(kind, slot)
        self.kind, self.slot, self.address = kind, slot, address


def cluster_redirect(exc: BaseException) -> ClusterRedirect | None:
    """The redirect `exc` stands for, if it is one (nothing was executed), else None."""
    if isinstance(exc, redis_errors.AskError):  # MovedError is an AskError
        kind = "moved" if isinstance(exc, redis_errors.MovedError) else "ask"
        return ClusterRedirect(kind, exc.slot_id, (exc.host, exc.port))
    if isinstance(exc, redis_errors.TryAgainError):
        return ClusterRedirect("busy")
    if isinstance(exc, redis_errors.ClusterDownError) and not isinstance(
        exc, redis_errors.MasterDownError
    ):
        # The cluster state is `fail` for a moment (a failover's switch, a master lost until a
        # replica takes over): refused before running, so it is waited out like a migration.
        return ClusterRedirect("down")
    if isinstance(exc, redis_errors.ResponseError):
        code, body = _code_and_body(exc, reply_text(exc))
        if code == "ERR" and body.startswith(_SCRIPT_SLOT_LEADS):
            return ClusterRedirect("busy")
    return None


def is_pool_full(exc: redis_errors.ConnectionError) -> bool:
    if _MAX_CONNECTIONS is not None and isinstance(exc, _MAX_CONNECTIONS):
        return True
    return any(text in str(exc) for text in _POOL_FULL_MESSAGES)


def is_connection_failure(exc: BaseException) -> bool:
    """True for a failure to talk to the server at all (not a refusal the server replied with)."""
    if isinstance(exc, redis_errors.BusyLoadingError):  # a reply, though redis-py files it here
        return False
    return isinstance(
        exc, TimeoutError | redis_errors.ConnectionError | redis_errors.TimeoutError
    ) and not (isinstance(exc, redis_errors.ConnectionError) and is_pool_full(exc))


def reply_text(exc: BaseException) -> str:
    """The server's (or redis-py's) own text of `exc`, without redis-py's pipeline echo."""
    text = str(exc.args[0]) if exc.args else ""
    echo = _PIPELINE_ECHO.match(text)
    if echo is None:
        return text
    rest = text[echo.end() :]
    # redis-py >= 6 appends the repr of the original args tuple; older releases the plain text.
    try:
        value = ast.literal_eval(rest)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return rest
    if isinstance(value, tuple) and value:
        value = value[0]
    return str(value)


def _split_code(text: str) -> tuple[str | None, str]:
    """A reply text's leading code and the rest, or (None, text) if it leads with no code."""
    first, _, rest = text.partition(" ")
    return (first, rest) if _CODE_WORD.fullmatch(first) else (None, text)


def _code_and_body(exc: BaseException, text: str) -> tuple[str, str]:
    """The code of the reply behind `exc` (`text` is its `reply_text`) and the text after it.

    redis-py drops the code from the text of the replies it maps to an exception class (and of
    ERR replies); it keeps an unmapped code (WRONGTYPE, BUSY, ...) in the text. Its
    `status_code` (newer releases) names the code either way; older ones leave the class, or the
    text's first word when it is a code: an ERR reply's text (code dropped) starting with a
    capitalized word is taken for ERR only if it starts with one of the known ERR leads.
    """
    code = next((code for cls, code in _CODE_OF_CLASS if isinstance(exc, cls)), None)
    if code is not None:
        return code, text
    status = getattr(exc, "status_code", None)
    lead, rest = _split_code(text)
    if isinstance(status, str) and status:
        return status, rest if lead == status else text
    if lead is None or text.startswith(_ERR_LEAD_TEXTS):
        return "ERR", text
    return lead, rest


def _unwrapped(code: str, body: str) -> str:
    """The code that decides a reply with `code` and text `body`: the wrapped reply's code where
    the server wraps one, else `code` itself.

    What the servers send (probed on Redis 7.0.15 and Valkey 8.0.1):
    - a script whose `redis.call` failed: the command's own reply, code first, then
      " script: <sha>, on @user_script:<line>." (WRONGTYPE, OOM, READONLY, NOREPLICAS...), so
      the first word decides, as for a direct command;
    - a `redis.call` the ACL denies: ERR and a lead (`_ERR_LEADS`), then the denial's text;
      Redis < 7 wraps every failed call (`_WRAPPED_SCRIPT_ERROR`), the inner reply after it;
    - EXEC refused (an ACL without it, or memory ran out between the queueing and EXEC):
      "EXECABORT <lead>: <the refusal's reply>"; refused queued commands: "EXECABORT <lead>."
      with no reply in it (each refusal came back on its own command).
    """
    if code == "EXECABORT":
        _, colon, inner = body.partition(": ")
        inner_code, inner_body = _split_code(inner)
        if colon and inner_code is not None:
            return _unwrapped(inner_code, inner_body)
    elif code == "ERR":
        for lead, meaning in _ERR_LEADS:
            if body.startswith(lead):
                return meaning
        wrapped = _WRAPPED_SCRIPT_ERROR.match(body)
        if wrapped is not None:
            inner_code, inner_body = _split_code(body[wrapped.end() :])
            return _unwrapped(inner_code or "ERR", inner_body)
    return code


def reply_code(exc: BaseException, text: str) -> str | None:
    """The Redis error code that decides `exc` (`text` is its `reply_text`), or None if `exc`
    is not a server's reply; see `_unwrapped` for the replies that wrap another one."""
    if not isinstance(exc, redis_errors.ResponseError | redis_errors.BusyLoadingError):
        return None
    return _unwrapped(*_code_and_body(exc, text))


def scrub(text: str, secret: str | None) -> str:
    """`text` without redis-py's pipeline echo, the server's echo of a refused command's
    arguments (keys holding user ids), or `secret`."""
    text = _PIPELINE_ECHO.sub("", text)
    text = _ARGUMENTS_ECHO.sub(r"\1 (not shown)", text)
    return text.replace(secret, "***") if secret else text


def _never_sent(exc: BaseException) -> bool:
    """True when the connection itself could not be made, so no command was sent."""
    if isinstance(exc, NotSentError):  # the batching transport knows it for certain
        return True
    chained = exc.__cause__ or exc.__context__
    if isinstance(chained, ConnectionRefusedError | socket.gaierror | ssl.SSLError):
        return True
    if isinstance(exc, redis_errors.AuthenticationError):
        return True
    # redis-py wraps other connect failures (e.g. its connect timeout) with this wording only.
    return "connecting to" in str(exc)


def _unparsable(exc: BaseException) -> bool:
    """The peer sent what is not RESP (redis-py raises it; the batching transport chains it)."""
    return isinstance(exc, redis_errors.InvalidResponse) or isinstance(
        exc.__cause__, redis_errors.InvalidResponse
    )


def _likely_cause(exc: BaseException, *, tls: bool, ever_reached: bool) -> str:
    """A hint at a misconfiguration the failure points to, or ''."""
    chained = exc.__cause__ or exc.__context__
    if isinstance(chained, ssl.SSLCertVerificationError):
        return " (the server's TLS certificate is not trusted: set tls_ca_file to its CA)"
    if isinstance(chained, ssl.SSLError):
        return " (the TLS handshake failed: a plain-text port reached with rediss://?)"
    if _unparsable(exc):
        return (
            " (the peer does not speak the Redis protocol: another service on that port, "
            "such as an HTTP server?)"
        )
    if ever_reached:
        return ""
    if tls and isinstance(exc, TimeoutError | redis_errors.TimeoutError):
        return " (no TLS handshake reply: a plain-text port reached with rediss://?)"
    if tls and isinstance(chained, TimeoutError):  # the batching transport's connect timeout
        return " (no TLS handshake reply: a plain-text port reached with rediss://?)"
    if not tls and isinstance(chained, ConnectionResetError | BrokenPipeError):
        return " (the server dropped the connection unanswered: a TLS port reached with redis://?)"
    return ""


def _sanitized_cause(exc: BaseException, text: str) -> BaseException:
    """A fresh exception of `exc`'s type holding only `text`: no echo, no chain, no traceback."""
    try:
        return type(exc)(text)
    except Exception:  # a type whose constructor parses its text (e.g. redis-py's AskError)
        return redis_errors.RedisError(text)


def to_session_error(
    exc: BaseException,
    *,
    write: bool,
    key: str | None,
    where: str,
    socket_timeout: float | None,
    secret: str | None,
    tls: bool = False,
    ever_reached: bool = True,
) -> SessionError:
    """The `SessionError` for `exc`, raised by a call on `where` (a redacted address).

    `write` says whether the call could have changed data (a lost reply is then an unknown
    outcome), `key` names the session for data errors, `secret` is scrubbed from messages;
    `tls` and `ever_reached` (did any call on this store get a reply yet) shape the hint at a
    likely misconfiguration. The result's `__cause__` is a sanitized copy of `exc`.
    """
    unqueued: UnqueuedError | None = None
    if isinstance(exc, UnqueuedError) and exc.refusal is not None:
        # MULTI's refusal decides the code and is the useful cause.
        unqueued, exc = exc, exc.refusal
    error = _classify(
        exc,
        write=write,
        key=key,
        where=where,
        socket_timeout=socket_timeout,
        secret=secret,
        tls=tls,
        ever_reached=ever_reached,
    )
    if unqueued is not None:
        error = UnknownOutcomeError(
            f"{error.message}; that was MULTI, so the server ran the transaction's commands one "
            f"by one ({unqueued.applied} of {unqueued.sent} applied): the outcome is unknown",
            code=error.code,
        )
    if isinstance(exc, TimeoutError):  # our own deadline: its text is in the message already
        error.__cause__ = TimeoutError(f"no reply within socket_timeout={socket_timeout}s")
    else:
        error.__cause__ = _sanitized_cause(exc, scrub(reply_text(exc), secret))
    error.__suppress_context__ = True
    return error


def _classify(
    exc: BaseException,
    *,
    write: bool,
    key: str | None,
    where: str,
    socket_timeout: float | None,
    secret: str | None,
    tls: bool,
    ever_reached: bool,
) -> SessionError:
    if isinstance(exc, TimeoutError):
        detail = f"no reply within socket_timeout={socket_timeout}s"
    else:
        detail = scrub(reply_text(exc), secret)
    code = reply_code(exc, detail)
    if isinstance(exc, redis_errors.AuthenticationError) or code in _AUTH_CODES:
        return UnavailableError(
            f"Redis at {where} rejected the credentials: {detail}",
            code=ErrorCode.UNAUTHENTICATED,
        )
    if code in _DENIED_CODES:
        return SessionError(
            f"Redis at {where} denied the command (ACL): {detail}",
            code=ErrorCode.PERMISSION_DENIED,
        )
    if code in SERVER_STATE_CODES:
        return UnavailableError(f"Redis at {where} refused the call ({code}): {detail}")
    if code == "EXECABORT":
        return UnavailableError(
            f"Redis at {where} discarded the transaction, nothing was written: {detail}"
        )
    if code == "WRONGTYPE":
        if key is not None:
            return InternalError(f"session {key!r}: a Redis key holds the wrong type of value")
        return InternalError("a user pointer key holds the wrong type of value")
    if isinstance(exc, redis_errors.ConnectionError) and is_pool_full(exc):
        return PoolExhaustedError(f"Redis connection pool exhausted on {where}: {detail}")
    hint = _likely_cause(exc, tls=tls, ever_reached=ever_reached)
    if _unparsable(exc) and not ever_reached:
        # The peer never once spoke Redis, so it applied nothing.
        return UnavailableError(f"Redis at {where} is unavailable: {detail}{hint}")
    if is_connection_failure(exc) or isinstance(exc, redis_errors.InvalidResponse):
        timed_out = isinstance(exc, TimeoutError | redis_errors.TimeoutError)
        error_code = ErrorCode.TIMEOUT if timed_out else ErrorCode.UNAVAILABLE
        if write and (isinstance(exc, TimeoutError) or not _never_sent(exc)):
            return UnknownOutcomeError(
                f"Redis at {where} failed during a write; the outcome is unknown: {detail}{hint}",
                code=error_code,
            )
        return UnavailableError(f"Redis at {where} is unavailable: {detail}{hint}", code=error_code)
    return InternalError(f"Redis at {where} returned an error: {detail}")
