"""The key ring and compression setting of one CLI run: one `Encryption` and one `Sealer`.

Keys never come from the command line (other users of the machine see it in `ps`): a key ring
is a JSON document read from `--keys-file PATH` or, without that option, from the environment
variable `GREENTIC_SESSION_KEYS` (the document itself, not a path)::

    {"active": "k2", "keys": {"k1": "<base64 of 32 bytes>", "k2": "<base64 of 32 bytes>"}}

Key ids as `sealing.Encryption` takes them (1 to 32 ASCII letters, digits, '.', '_', '-'); each
key standard base64 (RFC 4648, with padding) of exactly 32 random bytes, e.g. from
`head -c 32 /dev/urandom | base64`. `active` names the key new seals use; the others are read
only. Any other field is refused, so a misspelt one never goes unnoticed.

A bad ring is an `InvalidInputError` (exit 2) that says what is wrong and where, never a byte of
a key: no value from the document is shown except a valid key id, and every error is raised
outside the `except` that caught the parser's, so no exception chain holds the text either.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from ..errors import InvalidInputError
from ..limits import DEFAULT_MAX_BLOB_BYTES, check_max_blob_bytes
from ..sealing import Encryption, Sealer

__all__ = ["KEYS_VARIABLE", "Sealing", "load_sealing", "parse_key_ring"]

KEYS_VARIABLE = "GREENTIC_SESSION_KEYS"
_FIELDS = frozenset({"active", "keys"})


@dataclass(frozen=True)
class Sealing:
    """How this run opens blobs and seals what it writes: the store options (`encryption`,
    `compression`) and the `Sealer` they make for the namespace."""

    encryption: Encryption | None
    compression: Literal["zstd"] | None
    sealer: Sealer
    limit: int = DEFAULT_MAX_BLOB_BYTES  # what a compressed blob may open to

    @property
    def keyed(self) -> bool:
        return self.encryption is not None

    def for_namespace(self, namespace: str) -> Sealer:
        """A sealer with these settings for another namespace (copy-to-cluster's target)."""
        return Sealer(namespace, encryption=self.encryption, compression=self.compression)


def parse_key_ring(text: str | bytes, *, source: str, accept_plaintext: bool) -> Encryption:
    """The `Encryption` the JSON document `text` describes; `source` names where it came from
    in errors ("the key file", "$GREENTIC_SESSION_KEYS")."""
    document: object = None
    where: str | None = None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"  # a position, never the text
    except (UnicodeDecodeError, RecursionError):
        where = "undecodable"
    if where is not None:
        raise InvalidInputError(f"{source} is not valid JSON ({where})")
    if not isinstance(document, dict):
        raise InvalidInputError(f'{source} must be a JSON object {{"active": ..., "keys": ...}}')
    if set(document) - _FIELDS:
        raise InvalidInputError(f'{source} may hold only the fields "active" and "keys"')
    active, encoded = document.get("active"), document.get("keys")
    if not isinstance(active, str):
        raise InvalidInputError(f'{source}: "active" must be the id (a string) of one of "keys"')
    if not isinstance(encoded, dict) or not encoded:
        raise InvalidInputError(f'{source}: "keys" must be an object of key id to base64 key')
    keys: dict[str, bytes] = {}
    for number, (kid, value) in enumerate(encoded.items(), start=1):
        # The n-th key, not its id: an id is shown only once Encryption has found it valid.
        if not isinstance(value, str):
            raise InvalidInputError(f'{source}: key number {number} of "keys" must be a string')
        material: bytes | None = None
        # Refused below, outside the except: no exception chain holds the value.
        with contextlib.suppress(binascii.Error, UnicodeEncodeError):
            material = base64.b64decode(value.encode("ascii"), validate=True)
        if material is None:
            raise InvalidInputError(
                f'{source}: key number {number} of "keys" is not standard base64 (with padding)'
            )
        keys[kid] = material
    return Encryption(keys, active, accept_plaintext=accept_plaintext)


def _read_key_file(path: str) -> bytes:
    problem: str | None = None
    data = b""
    try:
        with open(path, "rb") as file:
            data = file.read(1 << 20)
    except OSError as exc:
        # The path is not shown: a key pasted where the path goes must not be echoed.
        problem = exc.strerror or type(exc).__name__
    if problem is not None:
        raise InvalidInputError(f"cannot read the key file (--keys-file): {problem}")
    return data


def load_sealing(
    namespace: str,
    *,
    keys_file: str | None,
    compression: str | None,
    accept_plaintext: bool,
    limit: int = DEFAULT_MAX_BLOB_BYTES,
    environ: Mapping[str, str] | None = None,
) -> Sealing:
    """This run's `Sealing`: the ring from `keys_file`, else from $GREENTIC_SESSION_KEYS, else
    none; `compression` "zstd" or None; `limit` what a compressed blob may open to (the stores'
    max_blob_bytes). `InvalidInputError` for a bad ring or option."""
    env = os.environ if environ is None else environ
    encryption: Encryption | None = None
    if keys_file is not None:
        encryption = parse_key_ring(
            _read_key_file(keys_file), source="the key file", accept_plaintext=accept_plaintext
        )
    elif env.get(KEYS_VARIABLE):
        encryption = parse_key_ring(
            env[KEYS_VARIABLE], source=f"${KEYS_VARIABLE}", accept_plaintext=accept_plaintext
        )
    elif accept_plaintext:
        raise InvalidInputError(
            f"--accept-plaintext needs a key ring (--keys-file or ${KEYS_VARIABLE})"
        )
    chosen: Literal["zstd"] | None = "zstd" if compression == "zstd" else None
    sealer = Sealer(namespace, encryption=encryption, compression=chosen)
    checked = check_max_blob_bytes(limit)  # a positive int
    return Sealing(
        encryption, chosen, sealer, DEFAULT_MAX_BLOB_BYTES if checked is None else checked
    )
