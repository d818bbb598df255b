"""Sealing (greentic_session.sealing): encryption bound to its session, key rotation,
compression bounded on read, plaintext migration, the owner digest, and no key material in
reprs or errors."""

from __future__ import annotations

import copy
import json
import os
import pickle
import random
import subprocess
import sys
import traceback
import tracemalloc
import warnings
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from greentic_session import (
    InternalError,
    InvalidInputError,
    SessionCursor,
    SessionData,
    TenantCtx,
    encode_session_data,
    sealing,
)
from greentic_session.fence import Scope
from greentic_session.sealing import (
    DIGEST_OFFSET,
    DIGEST_SIZE,
    FLAG_COMPRESSED,
    FLAG_ENCRYPTED,
    KEY_ID_LENGTH_OFFSET,
    MAGIC,
    Encryption,
    Sealer,
    read_header,
)

if sys.version_info >= (3, 14):
    from compression.zstd import CompressionParameter, ZstdCompressor, ZstdError, get_frame_info
else:
    from backports.zstd import CompressionParameter, ZstdCompressor, ZstdError, get_frame_info

K1, K2 = os.urandom(32), os.urandom(32)
NS = "greentic:session"
KEY = "2f6b3c1e-9a0d-4c55-8e21-7d9f0a3b6c42"
OWNER = Scope("prod", "tenant-acme", None, "user-4711")
MiB = 1 << 20


# Words the chat history's messages are drawn from.
VOCABULARY = (
    "order delivery refund account password invoice tracking address payment card shipping "
    "warranty return store support agent thanks please when where why how today tomorrow "
    "yesterday the a my your is was will can could would not yes no package box item size "
    "colour email phone number update change cancel help"
)


def chat_history(size: int = 4096) -> bytes:
    """A stored session (the codec's JSON) whose state is a chat history of about `size`
    bytes: messages with ids, ISO timestamps, roles and varied text."""
    rng = random.Random(20)
    words = VOCABULARY.split()
    messages: list[dict[str, object]] = []
    second = 0
    while len(json.dumps(messages)) < size - 600:
        second += rng.randint(3, 240)
        messages.append(
            {
                "id": f"msg_{rng.getrandbits(48):012x}",
                "ts": f"2025-03-14T{9 + second // 3600:02d}:{second // 60 % 60:02d}:"
                f"{second % 60:02d}.{rng.randint(0, 999):03d}Z",
                "role": "user" if len(messages) % 2 == 0 else "assistant",
                "text": " ".join(rng.choice(words) for _ in range(rng.randint(4, 22))).capitalize()
                + rng.choice(".?!"),
            }
        )
    state = {"locale": "en-GB", "step": "collect_order_id", "history": messages}
    data = SessionData(
        tenant_ctx=TenantCtx.new(OWNER.env, OWNER.tenant_id, user=OWNER.user),
        flow_id="support.returns",
        cursor=SessionCursor(node_pointer="await_reply"),
        context_json=json.dumps(state, separators=(",", ":")),
    )
    return encode_session_data(data)


PLAIN = chat_history()
RING = Encryption({"k1": K1}, "k1")
MODES = {
    "encrypted": {"encryption": RING},
    "compressed": {"compression": "zstd"},
    "both": {"encryption": RING, "compression": "zstd"},
}
ENCRYPTING = ("encrypted", "both")


def sealer(mode: str, namespace: str = NS) -> Sealer:
    return Sealer(namespace, **MODES[mode])


def seal_as(s: Sealer, plain: bytes, *, session_key: str = KEY, owner: Scope = OWNER) -> bytes:
    """`plain` sealed by `s` for `session_key`, with the digest of `owner`, as a store seals."""
    return s.seal(plain, session_key=session_key, owner_digest=s.owner_digest(owner))


def refusal(call: object, *args: object, **kwargs: object) -> InternalError:
    """The `InternalError` a call raises, checked to name the session key and to carry no
    exception chain."""
    assert callable(call)
    with pytest.raises(InternalError) as info:
        call(*args, **kwargs)
    error = info.value
    assert error.__cause__ is None
    assert error.__context__ is None
    return error


# -- round trips -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_round_trip(mode: str) -> None:
    """Each mode opens what it sealed, byte for byte, and the sealed form starts with the magic."""
    s = sealer(mode)
    sealed = seal_as(s, PLAIN)
    assert sealed[0] == MAGIC
    assert sealed != PLAIN
    assert s.open(sealed, session_key=KEY, limit=MiB) == PLAIN


def test_neither_option_is_the_identity() -> None:
    """Without encryption or compression, seal and open return their input: Rust's bytes."""
    s = Sealer(NS)
    assert s.identity
    assert seal_as(s, PLAIN) is PLAIN
    assert s.open(PLAIN, session_key=KEY, limit=16) is PLAIN


@pytest.mark.parametrize("mode", MODES)
def test_a_sealed_blob_is_never_json(mode: str) -> None:
    """A sealed blob is not even UTF-8, so no JSON reader (cjson, serde, msgspec) takes it."""
    sealed = seal_as(sealer(mode), PLAIN)
    with pytest.raises(UnicodeDecodeError):
        sealed.decode("utf-8")


def test_a_store_without_options_refuses_a_sealed_blob() -> None:
    """A store configured with neither option refuses a sealed blob rather than pass it on."""
    sealed = seal_as(sealer("both"), PLAIN)
    error = refusal(Sealer(NS).open, sealed, session_key=KEY, limit=None)
    assert KEY in str(error)
    assert "no key ring" in str(error)


@pytest.mark.parametrize("mode", ENCRYPTING)
def test_an_encrypted_blob_hides_owner_and_state(mode: str) -> None:
    """No user id, tenant, flow id, node or word of the state is readable in an encrypted blob."""
    sealed = seal_as(sealer(mode), PLAIN)
    for marker in (b"user-4711", b"tenant-acme", b"prod", b"support.returns", b"await_reply"):
        assert marker in PLAIN
        assert marker not in sealed
    assert b"history" not in sealed
    assert b"order" not in sealed


def test_seals_of_the_same_bytes_differ() -> None:
    """Two seals of the same session differ (a fresh nonce each) and both open."""
    s = sealer("encrypted")
    a, b = (seal_as(s, PLAIN) for _ in range(2))
    assert a != b
    assert s.open(a, session_key=KEY, limit=None) == s.open(b, session_key=KEY, limit=None)


@settings(max_examples=200, deadline=None)
@given(
    plain=st.binary(max_size=2000),
    key=st.text(min_size=1, max_size=40),
    namespace=st.text(min_size=1, max_size=20),
    mode=st.sampled_from(sorted(MODES)),
)
def test_any_bytes_under_any_key_round_trip(
    plain: bytes, key: str, namespace: str, mode: str
) -> None:
    """Any bytes under any session key and namespace (lone surrogates included) round-trip."""
    s = sealer(mode, namespace)
    assert s.open(seal_as(s, plain, session_key=key), session_key=key, limit=None) == plain


# -- bound to the session, tamper-evident -------------------------------------------------------


@pytest.mark.parametrize("mode", ENCRYPTING)
def test_a_blob_moved_under_another_session_key_is_refused(mode: str) -> None:
    """The same bytes stored under another session key do not open."""
    s = sealer(mode)
    sealed = seal_as(s, PLAIN)
    error = refusal(s.open, sealed, session_key="another-session", limit=None)
    assert "'another-session'" in str(error)
    assert "does not verify" in str(error)


@pytest.mark.parametrize("mode", ENCRYPTING)
def test_a_blob_moved_to_another_namespace_is_refused(mode: str) -> None:
    """The same bytes under the same session key in another namespace do not open."""
    sealed = seal_as(sealer(mode), PLAIN)
    refusal(sealer(mode, "other:session").open, sealed, session_key=KEY, limit=None)


@pytest.mark.parametrize("accept_plaintext", [False, True])
@pytest.mark.parametrize("compression", [None, "zstd"])
def test_every_altered_byte_is_refused(compression: str | None, accept_plaintext: bool) -> None:
    """Flipping any bit pattern of any byte (header, digest, key id, salt, nonce, ciphertext,
    tag) is refused, also when plaintext is accepted: a failed seal never reads as plaintext."""
    ring = Encryption({"k1": K1}, "k1", accept_plaintext=accept_plaintext)
    s = Sealer(NS, encryption=ring, compression=compression)
    sealed = seal_as(s, b'{"small":"session"}')
    for i in range(len(sealed)):
        for mask in (0x01, 0x80, 0xFF):
            altered = bytearray(sealed)
            altered[i] ^= mask
            refusal(s.open, bytes(altered), session_key=KEY, limit=None)


def test_every_truncation_and_extension_is_refused() -> None:
    """A sealed blob cut at any length, or with a byte appended, is refused."""
    s = sealer("both")
    sealed = seal_as(s, PLAIN)
    for n in range(1, len(sealed)):
        refusal(s.open, sealed[:n], session_key=KEY, limit=None)
    refusal(s.open, sealed + b"\x00", session_key=KEY, limit=None)


def test_a_swapped_owner_digest_is_refused() -> None:
    """Another owner's digest pasted into a blob's header does not open: the header is bound."""
    s = sealer("encrypted")
    mine = seal_as(s, PLAIN)
    theirs = seal_as(s, PLAIN, owner=OWNER._replace(user="user-1"))
    end = DIGEST_OFFSET + DIGEST_SIZE
    forged = mine[:DIGEST_OFFSET] + theirs[DIGEST_OFFSET:end] + mine[end:]
    refusal(s.open, forged, session_key=KEY, limit=None)


# -- rotation ----------------------------------------------------------------------------------


def test_rotation_reads_old_blobs_and_writes_under_the_active_key() -> None:
    """k1 -> {k1, k2} -> {k2}: every step reads what the last wrote, new seals name the active
    key, and a blob under a dropped key is refused, naming only its key id."""
    first = Sealer(NS, encryption=Encryption({"k1": K1}, "k1"))
    old = seal_as(first, PLAIN)
    both = Sealer(NS, encryption=Encryption({"k1": K1, "k2": K2}, "k2"), compression="zstd")
    assert both.open(old, session_key=KEY, limit=None) == PLAIN
    assert not both.is_current(old)
    new = seal_as(both, PLAIN)
    assert read_header(new, session_key=KEY) is not None
    assert read_header(new, session_key=KEY).key_id == "k2"
    assert both.is_current(new)
    last = Sealer(NS, encryption=Encryption({"k2": K2}, "k2"), compression="zstd")
    assert last.open(new, session_key=KEY, limit=None) == PLAIN
    error = refusal(last.open, old, session_key=KEY, limit=None)
    assert "key id 'k1'" in str(error)


def test_a_new_epoch_salt_after_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """After its seal budget an Encryption draws a new salt, and blobs of every epoch open."""
    monkeypatch.setattr(sealing, "_EPOCH_SEALS", 3)
    s = Sealer(NS, encryption=Encryption({"k1": K1}, "k1"))
    blobs = [seal_as(s, PLAIN) for _ in range(7)]
    salt_at = KEY_ID_LENGTH_OFFSET + 1 + len("k1")
    salts = [b[salt_at : salt_at + 16] for b in blobs]
    assert salts[0] == salts[2] != salts[3] == salts[5] != salts[6]
    assert all(s.open(b, session_key=KEY, limit=None) == PLAIN for b in blobs)


def test_a_forked_child_seals_under_its_own_salt() -> None:
    """A forked child draws a new epoch salt, so parent and child never share a nonce budget."""
    s = Sealer(NS, encryption=Encryption({"k1": K1}, "k1"))
    salt_at = KEY_ID_LENGTH_OFFSET + 1 + len("k1")
    parent = seal_as(s, PLAIN)[salt_at : salt_at + 16]
    read, write = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork with threads
        pid = os.fork()
    if pid == 0:  # the child: report its salt and leave at once
        try:
            os.write(write, seal_as(s, PLAIN)[salt_at : salt_at + 16])
        finally:
            os._exit(0)
    os.close(write)
    child = os.read(read, 16)
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child) == 16
    assert child != parent


# -- the owner digest --------------------------------------------------------------------------


def test_the_header_carries_the_owner_digest_at_a_fixed_offset() -> None:
    """The stored digest at DIGEST_OFFSET is the one `owner_digests` gives for the stored key
    id, for every key of a rotating ring, and it is the same from any process with the ring."""
    old = seal_as(Sealer(NS, encryption=Encryption({"k1": K1}, "k1")), PLAIN)
    s = Sealer(NS, encryption=Encryption({"k1": K1, "k2": K2}, "k2"))
    new = seal_as(s, PLAIN)
    digests = s.owner_digests(OWNER)
    assert set(digests) == {"k1", "k2"}
    assert s.owner_digest(OWNER) == digests["k2"]
    end = DIGEST_OFFSET + DIGEST_SIZE
    for blob, kid in ((old, "k1"), (new, "k2")):
        assert blob[DIGEST_OFFSET:end] == digests[kid]
        n = blob[KEY_ID_LENGTH_OFFSET]
        assert blob[KEY_ID_LENGTH_OFFSET + 1 : KEY_ID_LENGTH_OFFSET + 1 + n] == kid.encode()
    again = Sealer(NS, encryption=Encryption({"k1": K1, "k2": K2}, "k1")).owner_digests(OWNER)
    assert again == digests


def test_owner_digests_tell_owners_apart() -> None:
    """Different owners, no team against a team named "-", no user against a user, and the same
    owner in another namespace or under another key all give different digests."""
    s = sealer("encrypted")
    owners = [
        OWNER,
        OWNER._replace(user="user-4712"),
        OWNER._replace(user=None),
        OWNER._replace(team="-"),
        OWNER._replace(team="support"),
        OWNER._replace(tenant_id="tenant-other"),
        OWNER._replace(env="dev"),
    ]
    digests = [s.owner_digests(owner)["k1"] for owner in owners]
    digests.append(sealer("encrypted", "other:session").owner_digests(OWNER)["k1"])
    digests.append(Sealer(NS, encryption=Encryption({"k1": K2}, "k1")).owner_digests(OWNER)["k1"])
    assert len(set(digests)) == len(digests)
    assert all(len(d) == DIGEST_SIZE for d in digests)


def test_kept_owner_digests_stay_right_past_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """A sealer keeps owners' digests for reuse: past its bound it starts over, every digest it
    gives equals a fresh sealer's, and altering a returned mapping changes nothing kept."""
    monkeypatch.setattr(sealing, "_OWNERS_KEPT", 3)
    ring = Encryption({"k1": K1, "k2": K2}, "k2", accept_plaintext=True)
    s = Sealer(NS, encryption=ring)
    owners = [OWNER._replace(user=f"user-{i}") for i in range(10)]
    for _ in range(2):
        for owner in owners:
            fresh = Sealer(NS, encryption=ring).owner_digests(owner)
            given = s.owner_digests(owner)
            assert given == fresh
            assert s.owner_digest(owner) == fresh["k2"]
            given["k2"] = bytes(DIGEST_SIZE)
            assert s.owner_digests(owner) == fresh
    assert len(s._owners) <= 3


def test_unencrypted_blobs_carry_the_unkeyed_digest() -> None:
    """A compressed-only blob names no key and carries the unkeyed digest (key id "")."""
    s = sealer("compressed")
    sealed = seal_as(s, PLAIN)
    assert sealed[2] == FLAG_COMPRESSED
    assert sealed[KEY_ID_LENGTH_OFFSET] == 0
    assert sealed[DIGEST_OFFSET : DIGEST_OFFSET + DIGEST_SIZE] == s.owner_digests(OWNER)[""]
    accepting = Sealer(NS, encryption=Encryption({"k1": K1}, "k1", accept_plaintext=True))
    assert set(accepting.owner_digests(OWNER)) == {"k1", ""}
    assert accepting.owner_digests(OWNER)[""] == s.owner_digests(OWNER)[""] == s.owner_digest(OWNER)


def test_read_header() -> None:
    """`read_header` reads flags and key id without a key, None for JSON, and refuses a
    malformed header naming the session key."""
    header = read_header(seal_as(sealer("both"), PLAIN), session_key=KEY)
    assert header is not None
    assert (header.encrypted, header.compressed, header.key_id) == (True, True, "k1")
    assert read_header(PLAIN, session_key=KEY) is None
    bad = bytes((MAGIC, 9, FLAG_ENCRYPTED)) + bytes(40)
    error = refusal(read_header, bad, session_key=KEY)
    assert KEY in str(error)
    assert "format version 9" in str(error)


# -- plaintext, migration ----------------------------------------------------------------------


def test_plaintext_is_refused_in_an_encrypting_store() -> None:
    """Plain JSON, and a compressed-only blob, are refused by a store that encrypts."""
    s = sealer("encrypted")
    assert "plaintext JSON" in str(refusal(s.open, PLAIN, session_key=KEY, limit=None))
    compressed = seal_as(sealer("compressed"), PLAIN)
    assert "not encrypted" in str(refusal(s.open, compressed, session_key=KEY, limit=None))


def test_plaintext_is_read_with_accept_plaintext_and_the_next_seal_encrypts() -> None:
    """With accept_plaintext, JSON and compressed-only blobs are read, and sealing encrypts."""
    s = Sealer(NS, encryption=Encryption({"k1": K1}, "k1", accept_plaintext=True))
    assert s.open(PLAIN, session_key=KEY, limit=None) == PLAIN
    compressed = seal_as(sealer("compressed"), PLAIN)
    assert s.open(compressed, session_key=KEY, limit=None) == PLAIN
    assert not s.is_current(PLAIN)
    assert not s.is_current(compressed)
    resealed = seal_as(s, PLAIN)
    assert resealed[2] == FLAG_ENCRYPTED
    assert s.is_current(resealed)


@pytest.mark.parametrize("junk", [b"", b" {}", b"\x00\x01", b"[1]", b"garbage"])
def test_only_a_json_object_counts_as_plaintext(junk: bytes) -> None:
    """Bytes that are neither sealed nor start with '{' are refused even with accept_plaintext."""
    s = Sealer(NS, encryption=Encryption({"k1": K1}, "k1", accept_plaintext=True))
    refusal(s.open, junk, session_key=KEY, limit=None)


def test_a_compressing_store_reads_plain_json_and_refuses_encrypted_blobs() -> None:
    """Turning compression on needs no migration flag; an encrypted blob needs the key ring."""
    s = sealer("compressed")
    assert s.open(PLAIN, session_key=KEY, limit=None) is PLAIN
    encrypted = seal_as(sealer("encrypted"), PLAIN)
    assert "no key ring" in str(refusal(s.open, encrypted, session_key=KEY, limit=None))


def test_turning_compression_off_still_reads_compressed_blobs() -> None:
    """Reads follow the blob's header: a store that stopped compressing opens compressed blobs
    (and an identity store opens a compressed-only one)."""
    both = seal_as(sealer("both"), PLAIN)
    assert sealer("encrypted").open(both, session_key=KEY, limit=None) == PLAIN
    compressed = seal_as(sealer("compressed"), PLAIN)
    assert Sealer(NS).open(compressed, session_key=KEY, limit=None) == PLAIN


# -- compression -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["compressed", "both"])
def test_compression_at_least_halves_a_chat_history(mode: str) -> None:
    """A realistic 4 KiB chat history is stored in at most half its bytes, header included."""
    assert 4096 <= len(PLAIN) <= 5000
    sealed = seal_as(sealer(mode), PLAIN)
    assert 2 * len(sealed) <= len(PLAIN)


def frame_of_zeros(size: int, *, declared: bool, window_log: int | None = None) -> bytes:
    """A zstd frame of `size` zero bytes, built in 1 MiB steps; with its size in the header
    when `declared`."""
    options = {CompressionParameter.compression_level: 3}
    if window_log is not None:
        options[CompressionParameter.window_log] = window_log
    compressor = ZstdCompressor(options=options)
    if declared:
        compressor.set_pledged_input_size(size)
    chunk = bytes(min(size, MiB))
    parts = [compressor.compress(chunk[: min(MiB, size - i)]) for i in range(0, size, MiB)]
    return b"".join(parts) + compressor.flush()


def compressed_blob(frame: bytes) -> bytes:
    """`frame` as the body of a compressed-only sealed blob."""
    header = seal_as(sealer("compressed"), b"{}")[: KEY_ID_LENGTH_OFFSET + 1]
    return header + frame


def peak_of_refusal(s: Sealer, blob: bytes, limit: int) -> tuple[InternalError, int]:
    """The refusal of `blob` and the peak of Python allocations while it was refused."""
    tracemalloc.start()
    try:
        error = refusal(s.open, blob, session_key=KEY, limit=limit)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return error, peak


def test_a_frame_declaring_too_much_is_refused_before_decompressing() -> None:
    """A small frame declaring 64 MiB is refused against a 1 MiB limit with nothing inflated."""
    frame = frame_of_zeros(64 * MiB, declared=True)
    assert len(frame) < 64 * 1024
    error, peak = peak_of_refusal(sealer("compressed"), compressed_blob(frame), MiB)
    assert "declares 67108864 bytes" in str(error)
    assert peak < 64 * 1024


def test_a_frame_hiding_its_size_is_cut_at_the_limit() -> None:
    """A frame with no declared size that inflates to 64 MiB stops one byte past a 1 MiB limit."""
    frame = frame_of_zeros(64 * MiB, declared=False)
    error, peak = peak_of_refusal(sealer("compressed"), compressed_blob(frame), MiB)
    assert "decompresses past max_blob_bytes=1048576" in str(error)
    assert peak < 3 * MiB


def test_a_frame_lying_about_its_size_is_refused() -> None:
    """A frame whose header declares 1000 bytes but holds 64 MiB is refused without inflating."""
    frame = bytearray(frame_of_zeros(64 * MiB, declared=True))
    descriptor = frame[4]
    assert descriptor >> 6 == 2  # a 4-byte content size field...
    at = 5 + (0 if descriptor & 0x20 else 1)  # ...after the window byte, unless single-segment
    frame[at : at + 4] = (1000).to_bytes(4, "little")
    _error, peak = peak_of_refusal(sealer("compressed"), compressed_blob(bytes(frame)), MiB)
    assert peak < 3 * MiB


def test_the_window_is_capped_by_the_limit() -> None:
    """A tiny frame asking for a 128 MiB window is refused under a 1 MiB limit (the decoder
    would reserve the window), and read with no limit."""
    frame = frame_of_zeros(1000, declared=False, window_log=27)
    s = sealer("compressed")
    refusal(s.open, compressed_blob(frame), session_key=KEY, limit=MiB)
    assert s.open(compressed_blob(frame), session_key=KEY, limit=None) == bytes(1000)


@pytest.mark.parametrize("declared", [True, False])
def test_the_limit_is_inclusive(declared: bool) -> None:
    """A frame of exactly `limit` bytes opens; one byte less of limit refuses it."""
    blob = compressed_blob(frame_of_zeros(5000, declared=declared))
    s = sealer("compressed")
    assert s.open(blob, session_key=KEY, limit=5000) == bytes(5000)
    refusal(s.open, blob, session_key=KEY, limit=4999)


def test_an_encrypted_session_over_the_limit_is_refused() -> None:
    """max_blob_bytes counts the uncompressed encoding of an encrypted, compressed blob."""
    s = sealer("both")
    big = b'{"pad":"' + b"x" * (2 * MiB) + b'"}'
    sealed = seal_as(s, big)
    assert len(sealed) < 8 * 1024
    assert "max_blob_bytes=1048576" in str(refusal(s.open, sealed, session_key=KEY, limit=MiB))
    assert s.open(sealed, session_key=KEY, limit=len(big)) == big


@settings(max_examples=300, deadline=None)
@given(
    size=st.sampled_from([0, 1, 255, 256, 257, 4513, 65535, 65791, 65792, 70000, 1 << 20]),
    level=st.sampled_from([-5, 1, 3]),
    checksum=st.booleans(),
    content_size=st.booleans(),
    window_log=st.one_of(st.none(), st.integers(min_value=10, max_value=27)),
    how=st.sampled_from(["one-shot", "pledged", "streamed"]),
)
def test_the_declared_size_is_what_zstd_reads(
    *,
    size: int,
    level: int,
    checksum: bool,
    content_size: bool,
    window_log: int | None,
    how: str,
) -> None:
    """The content size the sealer reads from a frame's header is zstd's own reading, for
    frames of every header shape (single segment or not, each size field width, none)."""
    options: dict[int, int] = {
        CompressionParameter.compression_level: level,
        CompressionParameter.checksum_flag: int(checksum),
        CompressionParameter.content_size_flag: int(content_size),
    }
    if window_log is not None:
        options[CompressionParameter.window_log] = window_log
    compressor = ZstdCompressor(options=options)
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    if how == "one-shot":
        frame = compressor.compress(data, mode=compressor.FLUSH_FRAME)
    else:
        if how == "pledged":
            compressor.set_pledged_input_size(size)
        frame = compressor.compress(data) + compressor.flush()
    assert sealing._declared_size(frame) == get_frame_info(frame).decompressed_size


@settings(max_examples=500, deadline=None)
@given(header=st.binary(max_size=18))
def test_the_declared_size_of_any_header_zstd_reads_is_zstd_s(header: bytes) -> None:
    """For any bytes after zstd's magic that zstd reads as a frame header, the sealer reads the
    same declared size (for the rest, it declares nothing and the bounded decoder decides)."""
    frame = (0xFD2FB528).to_bytes(4, "little") + header
    try:
        expected = get_frame_info(frame).decompressed_size
    except ZstdError:
        return
    assert sealing._declared_size(frame) == expected


def test_a_sealer_still_works_after_refusing_frames() -> None:
    """The compressor a sealer reuses, and the sealer itself, seal and open as before after
    refusing a frame too large, one cut at the limit, a corrupt one and a tiny limit's."""
    s = sealer("compressed")
    refusal(
        s.open, compressed_blob(frame_of_zeros(64 * MiB, declared=True)), session_key=KEY, limit=MiB
    )
    refusal(
        s.open, compressed_blob(frame_of_zeros(2 * MiB, declared=False)), session_key=KEY, limit=MiB
    )
    broken = bytearray(seal_as(s, PLAIN))
    broken[-6] ^= 0x40
    refusal(s.open, bytes(broken), session_key=KEY, limit=None)
    for small in range(1, 40):  # more limits than the sealer keeps decoder options for
        refusal(s.open, seal_as(s, PLAIN), session_key=KEY, limit=small)
    for limit in (None, MiB, len(PLAIN)):
        assert s.open(seal_as(s, PLAIN), session_key=KEY, limit=limit) == PLAIN


def test_a_corrupt_compressed_only_frame_is_refused() -> None:
    """A compressed-only blob with a damaged frame is refused (its checksum or its structure)."""
    s = sealer("compressed")
    sealed = bytearray(seal_as(s, PLAIN))
    sealed[-6] ^= 0x40
    assert "corrupt" in str(refusal(s.open, bytes(sealed), session_key=KEY, limit=None))


# -- options -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keys", "active"),
    [
        ({"k1": os.urandom(31)}, "k1"),
        ({"k1": os.urandom(33)}, "k1"),
        ({"k1": "a" * 32}, "k1"),
        ({"k1": K1}, "k2"),
        ({}, "k1"),
        ({"": K1}, ""),
        ({"has space": K1}, "has space"),
        ({"k" * 33: K1}, "k" * 33),
        ({"ünï": K1}, "ünï"),
        ({K1: "k1"}, "k1"),
        ([("k1", K1)], "k1"),
    ],
)
def test_bad_key_rings_are_refused(keys: object, active: object) -> None:
    """A key that is not 32 bytes, an unknown active key, a bad key id or an empty ring is
    `InvalidInputError`, whose message shows no key."""
    with pytest.raises(InvalidInputError) as info:
        Encryption(keys, active)
    assert_no_key_material(info.value)


def test_bad_sealer_options_are_refused() -> None:
    """An unknown compression, a non-Encryption, an empty namespace, a non-bool
    accept_plaintext or an owner digest of the wrong size is `InvalidInputError`."""
    for make in (
        lambda: Sealer(NS, compression="gzip"),
        lambda: Sealer(NS, encryption={"k1": K1}),
        lambda: Sealer(""),
        lambda: Encryption({"k1": K1}, "k1", accept_plaintext=1),
        lambda: sealer("encrypted").seal(PLAIN, session_key=KEY, owner_digest=b"short"),
    ):
        with pytest.raises(InvalidInputError):
            make()


def test_the_key_ring_is_copied() -> None:
    """Changing the caller's mapping or buffer after construction changes nothing."""
    buffer = bytearray(K1)
    keys = {"k1": buffer}
    ring = Encryption(keys, "k1")
    sealed = seal_as(Sealer(NS, encryption=ring), PLAIN)
    buffer[:] = bytes(32)
    keys["k2"] = bytearray(K2)
    assert ring.key_ids == ("k1",)
    assert Sealer(NS, encryption=ring).open(sealed, session_key=KEY, limit=None) == PLAIN


# -- no key material ---------------------------------------------------------------------------


def key_spellings() -> Iterator[str]:
    for key in (K1, K2):
        yield key.hex()
        yield repr(key)
        yield key.decode("latin-1")


def assert_no_key_material(error: BaseException) -> None:
    text = "".join(traceback.format_exception(error)) + repr(error) + str(error)
    for spelling in key_spellings():
        assert spelling not in text


def test_reprs_show_no_key_material() -> None:
    """The reprs of a ring and a sealer name key ids only; a ring has no __dict__, refuses
    pickling, and copies to itself."""
    ring = Encryption({"k1": K1, "k2": K2}, "k2")
    s = Sealer(NS, encryption=ring, compression="zstd")
    for text in (repr(ring), repr(s), str(ring), repr(ring._keys)):
        assert "k1" in text or "secret" in text
        assert all(spelling not in text for spelling in key_spellings())
    with pytest.raises(TypeError):
        vars(ring)
    with pytest.raises(TypeError) as info:
        pickle.dumps(ring)
    assert_no_key_material(info.value)
    with pytest.raises(TypeError):
        pickle.dumps(ring._keys)
    assert copy.copy(ring) is ring
    assert copy.deepcopy(ring) is ring


def test_refusals_carry_no_key_material_and_no_plaintext() -> None:
    """A refused open names the session key, and neither its message nor its traceback holds a
    key, a plaintext fragment or an exception chain."""
    s = Sealer(NS, encryption=Encryption({"k1": K1, "k2": K2}, "k1"), compression="zstd")
    sealed = bytearray(seal_as(s, PLAIN))
    sealed[-1] ^= 1
    errors = [
        refusal(s.open, bytes(sealed), session_key=KEY, limit=None),
        refusal(s.open, PLAIN, session_key=KEY, limit=None),
        refusal(s.open, bytes(sealed), session_key="elsewhere", limit=None),
    ]
    for error in errors:
        assert_no_key_material(error)
        assert b"user-4711".decode() not in "".join(traceback.format_exception(error))
        assert "history" not in str(error)


# -- without the extras ------------------------------------------------------------------------

_WITHOUT_EXTRAS = """
import sys
sys.modules["cryptography"] = None
sys.modules["backports.zstd"] = None
sys.modules["compression"] = None
import greentic_session, greentic_session.sealing as sealing
for make in (
    lambda: sealing.Encryption({"k1": bytes(32)}, "k1"),
    lambda: sealing.Sealer("ns", compression="zstd"),
):
    try:
        make()
    except greentic_session.InvalidInputError as error:
        print(error)
try:
    sealing.Sealer("ns").open(bytes.fromhex(sys.argv[1]), session_key="k", limit=None)
except greentic_session.InternalError as error:
    print(error)
print(sealing.Sealer("ns").seal(b"{}", session_key="k", owner_digest=bytes(16)))
"""


def test_without_the_extras_import_works_and_errors_name_the_extra() -> None:
    """Without cryptography and zstd, the package imports, and building a ring or compression
    (or reading a compressed blob) says which extra to install."""
    compressed = seal_as(sealer("compressed"), PLAIN)
    out = subprocess.run(
        [sys.executable, "-c", _WITHOUT_EXTRAS, compressed.hex()],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.splitlines()
    assert "greentic-session[encryption]" in out[0]
    assert "greentic-session[compression]" in out[1]
    assert "session 'k'" in out[2]
    assert "greentic-session[compression]" in out[2]
    assert out[3] == "b'{}'"


def test_importing_the_package_imports_neither_extra() -> None:
    """`import greentic_session.sealing`, and a store without options, load neither
    cryptography nor zstd."""
    code = (
        "import sys, greentic_session, greentic_session.sealing; "
        "greentic_session.sealing.Sealer('ns').open(b'{}', session_key='k', limit=None); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('cryptography', 'backports', 'compression')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
