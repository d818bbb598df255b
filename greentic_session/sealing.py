"""Sealing: encryption at rest and compression of a stored session blob; bytes in, bytes out.

No I/O here. A `Sealer`, built once per store from its namespace, an `Encryption` key ring and
a compression setting, turns the codec's JSON into the stored bytes (`seal`) and back (`open`).
With neither option both are the identity: the stored bytes stay exactly Rust's JSON.

Sealed layout (format version 1). Offsets are 0-based; Lua's `string.sub` is 1-based, so the
owner digest is `string.sub(raw, 4, 19)`, the key id length `string.byte(raw, 20)`::

    offset   size  field
    0        1     magic 0xC5: never the first byte of JSON, and not valid UTF-8 before the
                   version byte, so a sealed blob is never mistaken for a document
    1        1     format version, 1
    2        1     flags: 0x01 zstd-compressed, 0x02 AES-256-GCM-encrypted; at least one is set,
                   no other bit is
    3        16    owner digest (below)
    19       1     key id length n: 0 when not encrypted, else 1..32
    20       n     key id, ASCII letters, digits, '.', '_', '-'
    -- encrypted --
    20+n     16    epoch salt (below)
    36+n     12    nonce, random
    48+n     ...   AES-256-GCM ciphertext of the body, then its 16-byte tag
    -- not encrypted --
    20+n     ...   the body

The body is the zstd frame of the JSON when compressed, else the JSON: compression comes
before encryption. The associated data is the whole header (bytes 0 to 48+n: magic to nonce),
then the namespace's UTF-8 length as 4 bytes big-endian, the namespace, and the session key
(UTF-8). So a sealed blob moved under another session key or namespace, a header edited in any
byte (an owner digest copied from another blob included), and any altered ciphertext or tag all
fail the tag check. A failed check is always a refusal, never a fallback to plaintext.

Owner digest: BLAKE2b with a 16-byte digest and personalization "gs-owner-v1" (a PRF built
for keying, about half an HMAC-SHA256's cost here), over the namespace (as in the associated
data: 4-byte length, UTF-8) and then the owner's env, tenant_id, team and user, each "-" for
None or "<length>:<text>" (self-delimiting, so no two owners share an input). None is not "-":
the fence keeps no team apart from a team named "-" (`fence.wait_verdict`), so the digests do
too. Encrypted blobs key it with HKDF-SHA256(ring key, info "greentic-session sealing v1: owner
digest key") of the ring key the blob names; compressed-only blobs, which hide nothing anyway,
use it unkeyed (key id ""). A sealer keeps the digests of the last 1024 owners it computed
(owners repeat call after call: a write needs its owner's for its script and for `seal`).
Scripts never compute one: the client sends the digests of the owners a call may see
(`owner_digests`: per key id of the ring), and the script compares 16 bytes, so the tenant
fence holds on the server, atomically, without the server seeing an owner. For `visible_to`
that is the slot's owner with its user and without a user; for `wait_verdict`
also both with the team swapped between None and "-". Equal digests do show that two blobs
under one key share an owner: a server-side equality test cannot hide that.

Why the digest follows the blob's key rather than one stable fence key: no second secret to
keep, back up and rotate beside the ring (the API stays `Encryption(keys, active)`); retiring a
key retires its digests, so an old leaked key cannot confirm who owns a live blob; and rotation
is one step, as `reseal` rewrites body and digest together under compare-and-set. The price:
while a ring holds several keys the client computes one digest per ring key (about a
microsecond each) and the script picks the one for the key id the stored header names.

Nonce budget. AES-GCM with random 96-bit nonces is safe for at most 2**32 messages per key
(NIST SP 800-38D). No ring key encrypts directly: each `Encryption` draws a random 128-bit epoch
salt and encrypts with HKDF-SHA256(ring key, salt); it counts its seals and draws a new salt
after 2**30 (collision chance per derived key at most 2**-37), and a forked child draws its own.
Every derived key is written by one process and retired far below the bound, with no
coordination between writers and no ceiling on the writes under one ring key. Readers derive the
key a blob's salt names and keep the last 1024 derived keys.

Decompression is bounded: a frame declaring more than the limit (`max_blob_bytes`, which counts
the uncompressed encoding; the size is read from the frame header as RFC 8878 lays it out, as
zstd reads it) is refused before it is decompressed, the decompressor stops one byte past the
limit whatever the frame declares, and the window a frame may ask the decoder to reserve is
capped at the larger of the limit and 8 MiB. A refused frame costs at most about
twice the limit in memory (the output, then its copy), never what it would inflate to.

Compression before encryption shows, through the stored length, how well a session compresses:
where text an attacker chooses shares a session with a secret and the attacker can watch the
blob's size, keep compression off.

Refusals are `InternalError` naming the session key, with no plaintext, no key material and no
exception chain; bad options are `InvalidInputError`. `cryptography` (extra `encryption`) and
zstd (extra `compression`: Python 3.14's `compression.zstd`, `backports.zstd` before) are
imported only when a ring or compression is built, so `import greentic_session` needs neither.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import sys
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, NamedTuple, NoReturn

from .errors import InternalError, InvalidInputError
from .fence import Scope

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "COMPRESSIONS",
    "DIGEST_OFFSET",
    "DIGEST_SIZE",
    "FLAG_COMPRESSED",
    "FLAG_ENCRYPTED",
    "FORMAT_VERSION",
    "KEY_ID_LENGTH_OFFSET",
    "MAGIC",
    "Encryption",
    "SealedHeader",
    "Sealer",
    "check_sealing",
    "read_header",
]

MAGIC: Final = 0xC5
FORMAT_VERSION: Final = 1
FLAG_COMPRESSED: Final = 0x01
FLAG_ENCRYPTED: Final = 0x02
DIGEST_OFFSET: Final = 3
DIGEST_SIZE: Final = 16
KEY_ID_LENGTH_OFFSET: Final = DIGEST_OFFSET + DIGEST_SIZE
COMPRESSIONS: Final = ("zstd",)

_KEY_ID_OFFSET = KEY_ID_LENGTH_OFFSET + 1
_KEY_SIZE = 32
_SALT_SIZE = 16
_NONCE_SIZE = 12
_TAG_SIZE = 16
_KEY_ID_PATTERN = "[A-Za-z0-9._-]{1,32}"
_KEY_ID = re.compile(_KEY_ID_PATTERN)
_STORED_KEY_ID = re.compile(_KEY_ID_PATTERN.encode())  # the same rule, on the stored bytes
_KEY_ID_RULE = "key ids must be 1 to 32 ASCII letters, digits, '.', '_' or '-'"
_EPOCH_SEALS = 1 << 30  # seals under one derived key before a new salt (bound: 2**32)
_READ_KEYS = 1024  # derived keys a reader keeps
_OWNERS_KEPT = 1024  # owners whose digests a sealer keeps (about 300 bytes each)
_DATA_KEY_INFO = b"greentic-session sealing v1: data key"
_DIGEST_KEY_INFO = b"greentic-session sealing v1: owner digest key"
_DIGEST_PERSON = b"gs-owner-v1"
# On a 4.5 KB chat history, level 1 stores within 2% of level 3 (zstd's default) for 4/5 of its CPU.
_ZSTD_LEVEL = 1
# Decoding windows: at least 8 MiB (the largest any zstd level up to 19 writes without long mode),
# at most 128 MiB (zstd's default limit), else the limit's size.
_WINDOW_LOG_MIN, _WINDOW_LOG_MAX = 23, 27


def _require_cryptography() -> None:
    """`InvalidInputError` naming the extra when `cryptography` is not installed."""
    try:
        import cryptography.hazmat.primitives.ciphers.aead  # noqa: F401
    except ImportError:
        missing = True
    else:
        missing = False
    if missing:  # raised here, not in the except: no chain
        raise InvalidInputError(
            "encryption needs the 'cryptography' package: "
            "pip install 'greentic-session[encryption]'"
        )


class _Zstd:
    """zstd (Python 3.14's `compression.zstd`, or its backport), imported when a store is built;
    `ImportError` when neither is installed."""

    __slots__ = ("Decompressor", "Error", "compressor", "window_log_max")

    def __init__(self, *, compress: bool, checksum: bool) -> None:
        if sys.version_info >= (3, 14):
            from compression.zstd import (
                CompressionParameter,
                DecompressionParameter,
                ZstdCompressor,
                ZstdDecompressor,
                ZstdError,
            )
        else:
            from backports.zstd import (
                CompressionParameter,
                DecompressionParameter,
                ZstdCompressor,
                ZstdDecompressor,
                ZstdError,
            )
        self.compressor = (
            ZstdCompressor(
                options={
                    CompressionParameter.compression_level: _ZSTD_LEVEL,
                    CompressionParameter.checksum_flag: int(checksum),
                }
            )
            if compress
            else None
        )
        self.Decompressor = ZstdDecompressor
        self.Error = ZstdError
        self.window_log_max = DecompressionParameter.window_log_max


def _derive(key: bytes, salt: bytes | None, info: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=_KEY_SIZE, salt=salt, info=info).derive(key)


class _Secret:
    """Key material that no repr, pickle or copy shows."""

    __slots__ = ("material",)

    def __init__(self, material: bytes) -> None:
        self.material = material

    def __repr__(self) -> str:
        return "<secret>"

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        raise TypeError("key material cannot be pickled")


class _Epoch(NamedTuple):
    """The derived key new seals use, and how many seals it has made."""

    named: bytes  # the header bytes naming it: key id length, key id, salt
    aead: AESGCM
    seals: itertools.count[int]


# Every key ring alive, so that a forked child stops sharing its parent's epoch keys.
_RINGS: weakref.WeakSet[Encryption] = weakref.WeakSet()


def _new_epochs_after_fork() -> None:
    for ring in list(_RINGS):
        ring._new_epoch()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_epochs_after_fork)


class Encryption:
    """AES-256-GCM over a key ring: key id -> 32 random bytes. New seals use `active`; a read
    uses the key its blob names. `accept_plaintext=True` reads JSON (and compressed-only) blobs
    in an encrypting store, for migration; the next write seals them.

    Its repr names the key ids, never the keys; it cannot be pickled, and `copy` returns it.
    """

    __slots__ = (
        "__weakref__",
        "_accept_plaintext",
        "_active",
        "_active_field",
        "_ciphers",
        "_digest_macs",
        "_epoch",
        "_invalid_tag",
        "_keys",
    )

    def __init__(
        self, keys: Mapping[str, bytes], active: str, *, accept_plaintext: bool = False
    ) -> None:
        if not isinstance(keys, Mapping):
            raise InvalidInputError("keys must be a mapping of key id to 32 bytes")
        ring: dict[str, _Secret] = {}
        for kid, key in keys.items():
            # Neither the id nor the key is shown: a swapped mapping would put a key here.
            if not isinstance(kid, str) or _KEY_ID.fullmatch(kid) is None:
                raise InvalidInputError(_KEY_ID_RULE)
            if not isinstance(key, bytes | bytearray | memoryview):
                raise InvalidInputError(
                    f"key {kid!r} must be {_KEY_SIZE} bytes, not {type(key).__name__}"
                )
            material = bytes(key)
            if len(material) != _KEY_SIZE:
                raise InvalidInputError(
                    f"key {kid!r} must be {_KEY_SIZE} bytes, not {len(material)}"
                )
            ring[kid] = _Secret(material)
        if not ring:
            raise InvalidInputError("keys must hold at least one key")
        if not isinstance(active, str) or active not in ring:
            shown = (
                f" ({active!r} is not)"
                if isinstance(active, str) and _KEY_ID.fullmatch(active)
                else ""
            )
            raise InvalidInputError(f"active must be the id of a key in keys{shown}")
        if not isinstance(accept_plaintext, bool):
            raise InvalidInputError("accept_plaintext must be a bool")
        _require_cryptography()
        from cryptography.exceptions import InvalidTag

        self._invalid_tag = InvalidTag
        self._keys = ring
        self._active_field = bytes((len(active),)) + active.encode("ascii")
        self._active = active
        self._accept_plaintext = accept_plaintext
        self._digest_macs = {
            kid: hashlib.blake2b(
                key=_derive(secret.material, None, _DIGEST_KEY_INFO),
                digest_size=DIGEST_SIZE,
                person=_DIGEST_PERSON,
            )
            for kid, secret in ring.items()
        }
        # Derived-key ciphers by the stored bytes naming them: key id length, key id, salt.
        self._ciphers: dict[bytes, AESGCM] = {}
        self._new_epoch()
        _RINGS.add(self)

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    @property
    def active(self) -> str:
        return self._active

    @property
    def accept_plaintext(self) -> bool:
        return self._accept_plaintext

    def __repr__(self) -> str:
        return (
            f"Encryption(keys={list(self._keys)!r}, active={self._active!r}, "
            f"accept_plaintext={self._accept_plaintext!r})"
        )

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        raise TypeError("Encryption holds keys and cannot be pickled")

    def __copy__(self) -> Encryption:
        return self

    def __deepcopy__(self, memo: object) -> Encryption:
        return self

    def _new_epoch(self) -> _Epoch:
        named = self._active_field + os.urandom(_SALT_SIZE)
        aead = self._cipher(named)
        assert aead is not None
        epoch = _Epoch(named, aead, itertools.count())
        self._epoch = epoch
        return epoch

    def _cipher(self, named: bytes) -> AESGCM | None:
        """The cipher of the key derived from the ring key and salt that `named` (a stored key
        id field, then a salt) names; None when the key id is not in the ring. Cached."""
        cache = self._ciphers
        aead = cache.get(named)
        if aead is None:
            secret = self._keys.get(named[1:-_SALT_SIZE].decode("ascii"))
            if secret is None:
                return None
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            aead = AESGCM(_derive(secret.material, named[-_SALT_SIZE:], _DATA_KEY_INFO))
            if len(cache) >= _READ_KEYS:
                del cache[next(iter(cache))]
            cache[named] = aead
        return aead

    def _sealing_epoch(self) -> _Epoch:
        epoch = self._epoch
        if next(epoch.seals) >= _EPOCH_SEALS:
            epoch = self._new_epoch()
            next(epoch.seals)  # this seal is its first
        return epoch


class SealedHeader(NamedTuple):
    """The readable part of a sealed blob (`read_header`)."""

    version: int
    compressed: bool
    encrypted: bool
    owner_digest: bytes
    key_id: str  # "" when not encrypted
    body_offset: int  # where the nonce (encrypted) or the body starts


def read_header(stored: bytes, *, session_key: str) -> SealedHeader | None:
    """The header of a sealed blob, None for any other bytes (JSON); `InternalError` naming
    `session_key` when it is malformed. Reads no key: for `stats`, `check` and `reseal`."""
    parsed = _parse(stored)
    if isinstance(parsed, str):
        raise InternalError(f"session {session_key!r}: the sealed blob {parsed}")
    if parsed is None:
        return None
    flags, kid, end = parsed
    return SealedHeader(
        FORMAT_VERSION,
        bool(flags & FLAG_COMPRESSED),
        bool(flags & FLAG_ENCRYPTED),
        stored[DIGEST_OFFSET:KEY_ID_LENGTH_OFFSET],
        kid.decode("ascii"),
        end,
    )


def _parse(stored: bytes) -> tuple[int, bytes, int] | str | None:
    """A sealed blob's flags, key id (b"" when not encrypted) and the offset after it; None for
    other bytes; what is wrong when it is malformed. Checks every length the layout needs."""
    if not stored or stored[0] != MAGIC:
        return None
    if len(stored) < _KEY_ID_OFFSET:
        return "is truncated"
    if stored[1] != FORMAT_VERSION:
        return f"has format version {stored[1]}, which this version cannot read"
    flags = stored[2]
    if not flags or flags & ~(FLAG_COMPRESSED | FLAG_ENCRYPTED):
        return "has unknown flags"
    end = _KEY_ID_OFFSET + stored[KEY_ID_LENGTH_OFFSET]
    if not flags & FLAG_ENCRYPTED:
        return "names a key but is not encrypted" if end > _KEY_ID_OFFSET else (flags, b"", end)
    if len(stored) < end + _SALT_SIZE + _NONCE_SIZE + _TAG_SIZE:
        return "is truncated"
    kid = stored[_KEY_ID_OFFSET:end]
    if _STORED_KEY_ID.fullmatch(kid) is None:
        return "names no valid key id"
    return flags, kid, end


_ZSTD_MAGIC = (0xFD2FB528).to_bytes(4, "little")
_DICT_ID_SIZES = (0, 1, 2, 4)  # by the descriptor's low two bits
_CONTENT_SIZE_SIZES = (0, 2, 4, 8)  # by its top two; 0 is 1 byte in a single-segment frame


def _declared_size(frame: bytes) -> int | None:
    """The content size a zstd frame's header declares (RFC 8878, 3.1.1.1); None when it
    declares none or is not a frame header at all (the decoder refuses those, or the limit
    cuts them). What `get_frame_info` reads, without building its object on every read."""
    if len(frame) < 6 or not frame.startswith(_ZSTD_MAGIC):
        return None
    descriptor = frame[4]
    if descriptor & 0x08:  # the reserved bit: not a frame any zstd reads
        return None
    size_flag = descriptor >> 6
    single_segment = descriptor & 0x20
    at = (5 if single_segment else 6) + _DICT_ID_SIZES[descriptor & 0x03]
    width = 1 if single_segment and not size_flag else _CONTENT_SIZE_SIZES[size_flag]
    if not width or len(frame) < at + width:
        return None
    size = int.from_bytes(frame[at : at + width], "little")
    return size + 256 if width == 2 else size


def check_sealing(encryption: object, compression: object) -> None:
    """`InvalidInputError` unless `encryption` is an `Encryption` or None and `compression` one
    of `COMPRESSIONS` or None: the store options' check, where a config is written."""
    if encryption is not None and not isinstance(encryption, Encryption):
        raise InvalidInputError(
            f"encryption must be an Encryption or None, not {type(encryption).__name__}"
        )
    if compression is not None and compression not in COMPRESSIONS:
        raise InvalidInputError(f"compression must be one of {list(COMPRESSIONS)} or None")


class Sealer:
    """Seals and opens one store's blobs: built once from the store's namespace, its
    `Encryption` (or None) and its compression ("zstd" or None).

    Writes follow the configuration; reads follow each blob's own header, so a store reads what
    it wrote under earlier settings: any ring key, compressed or not. In an encrypting store an
    unencrypted blob (JSON, or compressed only) is refused unless `accept_plaintext`, and JSON
    must then start with '{': bytes that fail as a sealed blob are never read as plaintext.
    """

    __slots__ = (
        "_active_kid",
        "_context",
        "_digest_macs",
        "_encryption",
        "_flags",
        "_namespace",
        "_owners",
        "_prefix",
        "_unkeyed_mac",
        "_window_options",
        "_zstd",
    )

    def __init__(
        self,
        namespace: str,
        *,
        encryption: Encryption | None = None,
        compression: str | None = None,
    ) -> None:
        if not isinstance(namespace, str) or not namespace:
            raise InvalidInputError("namespace must be a non-empty str")
        check_sealing(encryption, compression)
        self._namespace = namespace
        self._encryption = encryption
        # zstd is loaded here when this store compresses, else on the first compressed read.
        self._zstd: _Zstd | None = None
        if compression is not None:
            self._zstd = self._load_zstd(compress=True)
            if self._zstd is None:
                raise InvalidInputError(
                    "compression='zstd' needs zstd: pip install 'greentic-session[compression]'"
                )
        self._flags = (FLAG_COMPRESSED if compression else 0) | (
            FLAG_ENCRYPTED if encryption else 0
        )
        ns = namespace.encode("utf-8", "surrogatepass")
        self._context = len(ns).to_bytes(4, "big") + ns
        self._prefix = bytes((MAGIC, FORMAT_VERSION, self._flags))
        # Per key id ("" unkeyed, for unencrypted blobs this store reads), a MAC that has been
        # fed the namespace: a digest is then one copy, one update, one digest.
        # The unkeyed one is kept whether or not this store reads such blobs: an erasure judges
        # them all the same (`erase_digests`).
        macs = {} if encryption is None else dict(encryption._digest_macs)
        self._unkeyed_mac = hashlib.blake2b(digest_size=DIGEST_SIZE, person=_DIGEST_PERSON)
        if encryption is None or encryption.accept_plaintext:
            macs[""] = self._unkeyed_mac
        self._digest_macs = {kid: mac.copy() for kid, mac in macs.items()}
        for mac in (*self._digest_macs.values(), self._unkeyed_mac):
            mac.update(self._context)
        self._active_kid = "" if encryption is None else encryption.active
        # Owner -> its digest per key id: a write needs its owner's twice (script and seal),
        # and the owners a store serves repeat call after call.
        self._owners: dict[Scope, dict[str, bytes]] = {}
        self._window_options: dict[int | None, dict[Any, int]] = {}

    def _load_zstd(self, *, compress: bool) -> _Zstd | None:
        try:
            # A checksum where no tag guards the frame: corruption is refused, not misread.
            return _Zstd(compress=compress, checksum=self._encryption is None)
        except ImportError:
            return None

    def __repr__(self) -> str:
        compression = "zstd" if self._flags & FLAG_COMPRESSED else None
        return (
            f"Sealer(namespace={self._namespace!r}, encryption={self._encryption!r}, "
            f"compression={compression!r})"
        )

    @property
    def identity(self) -> bool:
        """Neither option: `seal` returns its input, and so does `open` for anything unsealed."""
        return not self._flags

    # -- the owner digest --------------------------------------------------------------------

    @staticmethod
    def _owner_text(owner: Scope) -> bytes:
        """The owner's env, tenant_id, team and user, each "-" for None or a netstring-like
        "<length>:<text>" (self-delimiting, so no two owners share a text), as UTF-8."""
        env, tenant_id, team, user = owner
        text = (
            f"{len(env)}:{env}{len(tenant_id)}:{tenant_id}"
            + ("-" if team is None else f"{len(team)}:{team}")
            + ("-" if user is None else f"{len(user)}:{user}")
        )
        return text.encode("utf-8", "surrogatepass")

    @staticmethod
    def _digest(fed: hashlib.blake2b, text: bytes) -> bytes:
        """`text`'s digest under `fed`, a MAC already keyed and fed the namespace."""
        mac = fed.copy()
        mac.update(text)
        return mac.digest()

    def _digests_of(self, owner: Scope) -> dict[str, bytes]:
        """`owner`'s digest per key id, kept for the last `_OWNERS_KEPT` owners (never handed
        out: callers get copies or single digests)."""
        owners = self._owners
        digests = owners.get(owner)
        if digests is None:
            text = self._owner_text(owner)
            digests = {kid: self._digest(mac, text) for kid, mac in self._digest_macs.items()}
            if len(owners) >= _OWNERS_KEPT:
                owners.clear()  # one atomic step, safe under threads; the busy owners return
            owners[owner] = digests
        return digests

    def owner_digest(self, owner: Scope) -> bytes:
        """The digest `seal` stores for `owner`: under the active key, or unkeyed when this store
        does not encrypt."""
        return self._digests_of(owner)[self._active_kid]

    def owner_digests(self, owner: Scope) -> dict[str, bytes]:
        """The digest of `owner` for each key id a blob this store reads may name ("" for
        unencrypted blobs, when it reads them): what a script compares with the stored digest
        (at `DIGEST_OFFSET`) after looking up the stored key id."""
        return dict(self._digests_of(owner))

    def erase_digests(self, owner: Scope) -> dict[str, bytes]:
        """`owner_digests`, with the unkeyed digest of compressed-only blobs even where this
        store does not read them: an erasure judges every form it can (such a blob hides
        nothing, so judging it needs no key)."""
        digests = self.owner_digests(owner)
        if "" not in digests:
            digests[""] = self._digest(self._unkeyed_mac, self._owner_text(owner))
        return digests

    # -- seal ----------------------------------------------------------------------------------

    def seal(self, plain: bytes, *, session_key: str, owner_digest: bytes) -> bytes:
        """The stored form of `plain` (the codec's JSON) for `session_key`; `owner_digest` is
        this sealer's `owner_digest` of the session's owner (which a write's script needs too,
        so it is computed once). Without options, `plain` itself."""
        flags = self._flags
        if not flags:
            return plain
        if not isinstance(owner_digest, bytes) or len(owner_digest) != DIGEST_SIZE:
            raise InvalidInputError(f"owner_digest must be {DIGEST_SIZE} bytes from owner_digest()")
        body = plain
        if flags & FLAG_COMPRESSED:
            assert self._zstd is not None
            assert self._zstd.compressor is not None
            compressor = self._zstd.compressor
            body = compressor.compress(plain, mode=compressor.FLUSH_FRAME)
        enc = self._encryption
        if enc is None:
            return b"".join((self._prefix, owner_digest, b"\x00", body))
        epoch = enc._sealing_epoch()
        nonce = os.urandom(_NONCE_SIZE)
        header = b"".join((self._prefix, owner_digest, epoch.named, nonce))
        associated = b"".join((header, self._context, session_key.encode("utf-8", "surrogatepass")))
        return header + epoch.aead.encrypt(nonce, body, associated)

    # -- open ----------------------------------------------------------------------------------

    def open(self, stored: bytes, *, session_key: str, limit: int | None) -> bytes:
        """The codec's JSON from `stored`; `limit` (`max_blob_bytes`, None for none) bounds what
        decompression may produce. `InternalError` naming `session_key` when the blob cannot be
        trusted or read under this store's settings."""
        if not self._flags and (not stored or stored[0] != MAGIC):
            return stored
        result = self._open(stored, session_key, limit)
        if isinstance(result, str):
            raise InternalError(f"session {session_key!r}: {result}")
        return result

    def _open(self, stored: bytes, session_key: str, limit: int | None) -> bytes | str:
        parsed = _parse(stored)
        if parsed is None:
            return self._unsealed(stored)
        if isinstance(parsed, str):
            return f"the sealed blob {parsed}"
        flags, kid, end = parsed
        enc = self._encryption
        body: bytes
        if flags & FLAG_ENCRYPTED:
            if enc is None:
                return "the blob is encrypted and this store has no key ring"
            nonce_at = end + _SALT_SIZE
            body_at = nonce_at + _NONCE_SIZE
            named = stored[KEY_ID_LENGTH_OFFSET:nonce_at]
            aead = enc._ciphers.get(named) or enc._cipher(named)  # a call only when not cached
            if aead is None:
                return (
                    f"the blob is sealed under key id {kid.decode()!r}, which is not in the "
                    "key ring"
                )
            associated = b"".join(
                (stored[:body_at], self._context, session_key.encode("utf-8", "surrogatepass"))
            )
            opened: bytes | None
            try:
                opened = aead.decrypt(stored[nonce_at:body_at], stored[body_at:], associated)
            except enc._invalid_tag:
                opened = None  # refused below, outside the except: no chain
            if opened is None:
                return (
                    "the sealed blob does not verify (altered, or moved from another session key "
                    "or namespace)"
                )
            body = opened
        else:
            if enc is not None and not enc._accept_plaintext:
                return "the blob is not encrypted, and this store accepts only encrypted blobs"
            body = stored[end:]
        if flags & FLAG_COMPRESSED:
            return self._decompress(body, limit)
        return body

    def _unsealed(self, stored: bytes) -> bytes | str:
        enc = self._encryption
        if enc is None:
            return stored  # JSON, or bytes the codec refuses with its own reason
        if not stored.startswith(b"{"):
            return "the blob is neither sealed nor a JSON object"
        if not enc._accept_plaintext:
            return "the blob is plaintext JSON, and this store accepts only encrypted blobs"
        return stored

    def _decompress(self, frame: bytes, limit: int | None) -> bytes | str:
        zstd = self._zstd
        if zstd is None:
            zstd = self._zstd = self._load_zstd(compress=False)
        if zstd is None:
            return "the blob is zstd-compressed: pip install 'greentic-session[compression]'"
        corrupt = "the blob's zstd frame is corrupt"
        declared = _declared_size(frame)
        if limit is not None and declared is not None and declared > limit:
            return f"the blob declares {declared} bytes uncompressed, over max_blob_bytes={limit}"
        decompressor = zstd.Decompressor(options=self._window(zstd, limit))
        out: bytes | None = None
        try:
            # One byte past the limit shows it is exceeded; nothing beyond is ever produced.
            out = decompressor.decompress(frame, max_length=-1 if limit is None else limit + 1)
        except zstd.Error:
            return corrupt
        if limit is not None and len(out) > limit:
            return f"the blob decompresses past max_blob_bytes={limit}"
        if not decompressor.eof or decompressor.unused_data:
            return corrupt
        return out

    def _window(self, zstd: _Zstd, limit: int | None) -> dict[Any, int]:
        """Decompressor options capping the window at the limit's size, but not below 8 MiB:
        a frame from any usual zstd writer opens, and a hostile one cannot make the decoder
        reserve more than the larger of the two (zstd's own default would be 128 MiB)."""
        options = self._window_options.get(limit)
        if options is None:
            log = _WINDOW_LOG_MAX
            if limit is not None:
                log = min(_WINDOW_LOG_MAX, max(_WINDOW_LOG_MIN, limit.bit_length()))
            if len(self._window_options) >= 16:  # a store reads under one or two limits
                self._window_options.clear()
            options = self._window_options[limit] = {zstd.window_log_max: log}
        return options

    def lacks_key(self, stored: bytes) -> bool:
        """Whether `stored` is sealed under a key id this store's ring lacks: unreadable here,
        not corrupt (another process may hold the key)."""
        parsed = _parse(stored)
        if parsed is None or isinstance(parsed, str) or not parsed[0] & FLAG_ENCRYPTED:
            return False
        enc = self._encryption
        return enc is None or parsed[1].decode("ascii") not in enc._keys

    def is_current(self, stored: bytes) -> bool:
        """Whether `stored` is as this store writes now (encrypted under the active key, and
        compressed as configured), so that `reseal` can skip it. False for malformed blobs."""
        parsed = _parse(stored)
        if parsed is None:
            return not self._flags
        if isinstance(parsed, str):
            return False
        flags, kid, _ = parsed
        enc = self._encryption
        return flags == self._flags and (enc is None or kid == enc._active.encode())
