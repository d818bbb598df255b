"""Deterministic session keys for connectors that carry no session id of their own.

Lowercase hex SHA-256 of a prefixed, colon-joined text, identical to the Rust crate's helpers, so
both runtimes derive the same key from the same payload without storing the raw ids.
"""

from __future__ import annotations

import hashlib

from .schema import SessionKey

__all__ = ["telegram_update_to_session_key", "webhook_to_session_key"]


def _part(value: str | int, what: str) -> str:
    # bool is an int subclass, but True/False are never ids.
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise TypeError(f"{what} must be str or int, not {type(value).__name__}")
    return str(value)


def _digest(prefix: str, *parts: str) -> SessionKey:
    text = ":".join((prefix, *parts))
    return SessionKey(hashlib.sha256(text.encode("utf-8")).hexdigest())


def telegram_update_to_session_key(
    bot_id: str | int, chat_id: str | int, user_id: str | int
) -> SessionKey:
    """`sha256("tg:{bot_id}:{chat_id}:{user_id}")` as lowercase hex."""
    return _digest(
        "tg", _part(bot_id, "bot_id"), _part(chat_id, "chat_id"), _part(user_id, "user_id")
    )


def webhook_to_session_key(source: str | int, subject: str | int, id_hint: str | int) -> SessionKey:
    """`sha256("wh:{source}:{subject}:{id_hint}")` as lowercase hex."""
    return _digest(
        "wh", _part(source, "source"), _part(subject, "subject"), _part(id_hint, "id_hint")
    )
