"""Deterministic session keys for connectors that carry no session id of their own.

Two kinds:

- `telegram_update_to_session_key` and `webhook_to_session_key`: lowercase hex SHA-256 of a
  prefixed, colon-joined text, identical to the Rust crate's helpers, so both runtimes derive the
  same key from the same payload. These keys are **not secret and do not hide the ids**: Telegram
  bot, chat and user ids are small integers and a webhook subject is often an email address, so
  anyone who sees a key can recover the ids by hashing candidates until one matches. The colon
  join is also ambiguous (`("a:b", "c")` and `("a", "b:c")` give one key).
- `keyed(secret)`: the same two methods as HMAC-SHA256 under a secret the caller supplies. Without
  the secret a key can be neither recomputed nor reversed, and the parts are length-prefixed, so
  no two inputs share a key. Use these unless a Rust runner must derive the same key.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import NoReturn

from .errors import InvalidInputError
from .schema import SessionKey, is_unicode

__all__ = [
    "MIN_SECRET_BYTES",
    "KeyedMapping",
    "keyed",
    "telegram_update_to_session_key",
    "webhook_to_session_key",
]

MIN_SECRET_BYTES = 16
"""The shortest secret `keyed` accepts: 128 bits, beyond any search of the key space (HMAC
hashes a longer key down to 32 bytes, so more than 64 bytes adds nothing)."""


def _part(value: str | int, what: str) -> bytes:
    # bool is an int subclass, but True/False are never ids.
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise TypeError(f"{what} must be str or int, not {type(value).__name__}")
    text: str | None
    try:
        text = str(value)
    except ValueError:  # an int past Python's int-to-str digit limit: no connector id
        text = None
    if text is None:
        raise InvalidInputError(f"{what} is too large an integer to be an id")
    if not is_unicode(text):  # a lone surrogate: Rust's &str cannot hold one
        raise InvalidInputError(f"{what} is not valid Unicode (a lone surrogate)")
    return text.encode("utf-8")


def _digest(prefix: bytes, *parts: bytes) -> SessionKey:
    return SessionKey(hashlib.sha256(b":".join((prefix, *parts))).hexdigest())


def telegram_update_to_session_key(
    bot_id: str | int, chat_id: str | int, user_id: str | int
) -> SessionKey:
    """`sha256("tg:{bot_id}:{chat_id}:{user_id}")` as lowercase hex, as Rust computes it.

    Not a secret: the ids can be recovered from the key by hashing candidates (see the module
    docstring); prefer `keyed(secret).telegram_update_to_session_key`.
    """
    return _digest(
        b"tg", _part(bot_id, "bot_id"), _part(chat_id, "chat_id"), _part(user_id, "user_id")
    )


def webhook_to_session_key(source: str | int, subject: str | int, id_hint: str | int) -> SessionKey:
    """`sha256("wh:{source}:{subject}:{id_hint}")` as lowercase hex, as Rust computes it.

    Not a secret: a guessable subject (an email, a ticket number) can be recovered from the key
    by hashing candidates; prefer `keyed(secret).webhook_to_session_key`.
    """
    return _digest(
        b"wh", _part(source, "source"), _part(subject, "subject"), _part(id_hint, "id_hint")
    )


class KeyedMapping:
    """Session keys as HMAC-SHA256 under a secret; build it with `keyed(secret)`.

    The message for `(prefix, parts...)` is the prefix (`tg` or `wh`), then for each part its
    UTF-8 byte length in decimal, ':' and its bytes, all joined by ':' (for example
    `tg:2:42:4:9001:1:5`), so every input has its own message. The key is the lowercase hex
    digest. The secret is held only inside an HMAC object: never in an attribute, repr, error
    or pickle.
    """

    __slots__ = ("_mac",)

    def __init__(self, secret: bytes | str) -> None:
        if isinstance(secret, str):
            if not is_unicode(secret):
                raise InvalidInputError("secret is not valid Unicode (a lone surrogate)")
            key = secret.encode("utf-8")
        elif isinstance(secret, bytes | bytearray | memoryview):
            key = bytes(secret)
        else:
            raise TypeError(f"secret must be bytes or str, not {type(secret).__name__}")
        if len(key) < MIN_SECRET_BYTES:
            raise InvalidInputError(f"secret must be at least {MIN_SECRET_BYTES} bytes long")
        self._mac = hmac.new(key, digestmod=hashlib.sha256)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(secret=<redacted>)"

    def __reduce__(self) -> NoReturn:
        raise TypeError(f"{type(self).__name__} holds a secret and cannot be pickled")

    def _key(self, prefix: bytes, *parts: bytes) -> SessionKey:
        mac = self._mac.copy()
        mac.update(b":".join((prefix, *(b"%d:%s" % (len(p), p) for p in parts))))
        return SessionKey(mac.hexdigest())

    def telegram_update_to_session_key(
        self, bot_id: str | int, chat_id: str | int, user_id: str | int
    ) -> SessionKey:
        """HMAC-SHA256 key for a Telegram update; not derivable without the secret."""
        return self._key(
            b"tg", _part(bot_id, "bot_id"), _part(chat_id, "chat_id"), _part(user_id, "user_id")
        )

    def webhook_to_session_key(
        self, source: str | int, subject: str | int, id_hint: str | int
    ) -> SessionKey:
        """HMAC-SHA256 key for a webhook event; not derivable without the secret."""
        return self._key(
            b"wh", _part(source, "source"), _part(subject, "subject"), _part(id_hint, "id_hint")
        )


def keyed(secret: bytes | str) -> KeyedMapping:
    """Mapping helpers keyed by `secret` (bytes, or str taken as UTF-8; at least
    `MIN_SECRET_BYTES` bytes). Keep the secret stable: a new secret gives every payload a new
    key, so sessions stored under the old keys are no longer found."""
    return KeyedMapping(secret)
