"""The keyed (HMAC) mapping helpers, and what the Rust-compatible ones do not protect."""

from __future__ import annotations

import copy
import hashlib
import hmac
import logging
import pickle

import pytest

from greentic_session import InvalidInputError, keyed, mapping
from greentic_session.mapping import MIN_SECRET_BYTES, KeyedMapping

SECRET = "s3cr3t-mapping-key-0123456789"


def test_keyed_keys_are_hmac_sha256_of_length_prefixed_parts() -> None:
    """The keyed key is HMAC-SHA256(secret, "tg:2:42:4:9001:1:5") as lowercase hex."""
    expected = hmac.new(SECRET.encode(), b"tg:2:42:4:9001:1:5", hashlib.sha256).hexdigest()
    assert keyed(SECRET).telegram_update_to_session_key(42, 9001, 5) == expected
    expected_wh = hmac.new(
        SECRET.encode(), b"wh:3:crm:13:a@example.com:2:42", hashlib.sha256
    ).hexdigest()
    assert keyed(SECRET).webhook_to_session_key("crm", "a@example.com", 42) == expected_wh


def test_keyed_keys_cannot_be_found_by_hashing_candidates() -> None:
    """The plain key of a small integer id is found by hashing candidates; the keyed key is
    not, and it depends on the secret."""
    plain = mapping.telegram_update_to_session_key(1, 77, 12345)
    found = [u for u in range(20000) if mapping.telegram_update_to_session_key(1, 77, u) == plain]
    assert found == [12345]
    secret_key = keyed(SECRET).telegram_update_to_session_key(1, 77, 12345)
    assert secret_key not in {
        mapping.telegram_update_to_session_key(1, 77, u) for u in range(20000)
    }
    assert secret_key != keyed(SECRET + "x").telegram_update_to_session_key(1, 77, 12345)
    assert secret_key == keyed(SECRET.encode()).telegram_update_to_session_key("1", "77", "12345")


def test_keyed_keys_do_not_collide_where_the_colon_join_does() -> None:
    """("a:b", "c") and ("a", "b:c") share a plain key but get distinct keyed keys."""
    assert mapping.webhook_to_session_key("src", "a:b", "c") == (
        mapping.webhook_to_session_key("src", "a", "b:c")
    )
    helpers = keyed(SECRET)
    assert helpers.webhook_to_session_key("src", "a:b", "c") != (
        helpers.webhook_to_session_key("src", "a", "b:c")
    )
    assert helpers.telegram_update_to_session_key(1, 2, 3) != (
        helpers.webhook_to_session_key(1, 2, 3)
    )


def test_secret_must_be_long_enough_bytes_or_str() -> None:
    """Secrets shorter than MIN_SECRET_BYTES (UTF-8 bytes for a str) or of another type are
    refused; the boundary length is accepted."""
    assert MIN_SECRET_BYTES == 16
    keyed(b"x" * 16)
    keyed("é" * 8)  # 16 bytes in UTF-8
    with pytest.raises(InvalidInputError, match="at least 16 bytes"):
        keyed(b"x" * 15)
    with pytest.raises(InvalidInputError):
        keyed("x" * 15)
    with pytest.raises(TypeError, match="bytes or str"):
        keyed(1234567890123456789)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="Unicode"):
        keyed("\udc80" + "x" * 20)


def test_the_secret_never_shows(caplog: pytest.LogCaptureFixture) -> None:
    """Neither repr, str, errors (and their chains), pickling nor logs reveal the secret."""
    caplog.set_level(logging.DEBUG)
    helpers = keyed(SECRET)
    assert SECRET not in repr(helpers)
    assert SECRET not in str(helpers)
    assert repr(helpers) == "KeyedMapping(secret=<redacted>)"
    assert not hasattr(helpers, "__dict__")
    errors: list[BaseException] = []
    for bad in (lambda: helpers.telegram_update_to_session_key(True, 1, 2),
                lambda: helpers.webhook_to_session_key("s", "\udc80", 1),
                lambda: pickle.dumps(helpers),
                lambda: copy.deepcopy(helpers),
                lambda: keyed(SECRET[:10]),
                lambda: keyed("\udc80" + SECRET)):  # fmt: skip
        with pytest.raises((TypeError, InvalidInputError)) as caught:
            bad()
        errors.append(caught.value)
    for error in errors:
        chain = [error, error.__cause__, error.__context__]
        assert all(SECRET[:10] not in repr(e) and SECRET[:10] not in str(e) for e in chain)
        assert error.__context__ is None
    assert SECRET[:10] not in caplog.text
    assert isinstance(helpers, KeyedMapping)


def test_parts_must_be_str_or_int_and_valid_unicode() -> None:
    """bool, float and bytes parts are TypeErrors; a lone surrogate or an int too large to
    print is InvalidInputError, for plain and keyed helpers alike."""
    helpers = keyed(SECRET)
    for helper in (mapping.telegram_update_to_session_key, helpers.telegram_update_to_session_key):
        with pytest.raises(TypeError):
            helper(False, 1, 2)
        with pytest.raises(TypeError):
            helper(1.5, 1, 2)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            helper(b"bot", 1, 2)  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError, match="chat_id"):
            helper(1, "\ud800", 2)
        with pytest.raises(InvalidInputError, match="user_id"):
            helper(1, 2, 10**5000)
