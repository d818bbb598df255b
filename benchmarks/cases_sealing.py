"""Case 9: sealing (greentic_session.sealing). Client CPU to seal and to open one 4 KiB session
(the headline payload's encoded blob), and the bytes it is stored in.

Four modes, each a `Sealer` built once as a store would build it:

- plain:             neither option (the identity; the floor: what a store pays today);
- encrypted:         AES-256-GCM under a one-key ring;
- compressed:        zstd only;
- encrypted+zstd:    compressed, then encrypted.

Operations: `seal` (the owner's digest and the seal, as a write does both), `open` (with
`max_blob_bytes`' default limit) and `seal+open` (the target: at most 10 us of client CPU).
Calls run in batches of the codec profile's size; a sample is one batch's per-call CPU time
(`time.process_time_ns`) and wall time; modes interleave round by round. Stored bytes are
reported for the headline payload (whose padding compresses unusually well) and for a realistic
chat history of the same size (ids, ISO timestamps, roles, varied text).

Part of `python -m benchmarks` (section "sealing"); also runs alone:
`python -m benchmarks.cases_sealing [--quick]` (no Redis needed).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import sys
import time
from collections.abc import Callable
from typing import Any

from greentic_session import SessionCursor, SessionData, TenantCtx, encode_session_data
from greentic_session.fence import scope_of
from greentic_session.limits import DEFAULT_MAX_BLOB_BYTES
from greentic_session.sealing import Encryption, Sealer

from .harness import Summary, gc_paused, rotations
from .payloads import ENV, FLOW_ID, HEADLINE_SIZE, NODE, TENANT, Population, size_label
from .settings import FULL, QUICK, Profile

__all__ = [
    "SEALING_OPS",
    "TARGET_US",
    "chat_history_blob",
    "chat_history_data",
    "render_sealing_table",
    "run_sealing_cases",
    "sealing_ticks",
]

SEALING_OPS: tuple[str, ...] = ("seal", "open", "seal+open")
MODES: tuple[str, ...] = ("plain", "encrypted", "compressed", "encrypted+zstd")
# The libraries alone on the same bytes, what no sealing can go below: zstd as the compressed
# mode calls it (a reused compressor; a new decompressor per frame, as the API requires) and
# AES-256-GCM as the encrypted mode calls it (one cipher object, one call each way).
FLOORS: tuple[str, ...] = ("floor: zstd", "floor: AES-GCM")
TARGET_US = 10.0  # client CPU per seal+open of a 4 KiB session
NAMESPACE = "greentic:session"
SESSION_KEY = "2f6b3c1e-9a0d-4c55-8e21-7d9f0a3b6c42"


def sealing_ticks(profile: Profile) -> int:
    """Progress ticks this case makes (one per interleaved round)."""
    return len(SEALING_OPS) * profile.rounds


def _floor_calls(blob: bytes) -> dict[str, tuple[Callable[[], Any], ...]]:
    """Per floor, its (seal, open, seal+open) calls on `blob`, and its stored form's length."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if sys.version_info >= (3, 14):
        from compression.zstd import CompressionParameter, ZstdCompressor, ZstdDecompressor
    else:
        from backports.zstd import CompressionParameter, ZstdCompressor, ZstdDecompressor
    compressor = ZstdCompressor(
        options={CompressionParameter.compression_level: 1, CompressionParameter.checksum_flag: 1}
    )
    frame = compressor.compress(blob, mode=compressor.FLUSH_FRAME)
    aead, nonce = AESGCM(os.urandom(32)), os.urandom(12)
    associated = bytes(48 + 4 + len(NAMESPACE) + len(SESSION_KEY))  # the real one's length
    sealed = aead.encrypt(nonce, blob, associated)
    return {
        "floor: zstd": (
            lambda: compressor.compress(blob, mode=compressor.FLUSH_FRAME),
            lambda: ZstdDecompressor().decompress(frame),
            lambda: ZstdDecompressor().decompress(
                compressor.compress(blob, mode=compressor.FLUSH_FRAME)
            ),
        ),
        "floor: AES-GCM": (
            lambda: aead.encrypt(nonce, blob, associated),
            lambda: aead.decrypt(nonce, sealed, associated),
            lambda: aead.decrypt(nonce, aead.encrypt(nonce, blob, associated), associated),
        ),
    }


def _sealers() -> dict[str, Sealer]:
    ring = Encryption({"k1": os.urandom(32)}, "k1")
    return {
        "plain": Sealer(NAMESPACE),
        "encrypted": Sealer(NAMESPACE, encryption=ring),
        "compressed": Sealer(NAMESPACE, compression="zstd"),
        "encrypted+zstd": Sealer(NAMESPACE, encryption=ring, compression="zstd"),
    }


# Words the chat history's messages are drawn from.
VOCABULARY = (
    "order delivery refund account invoice tracking address payment card shipping warranty "
    "return store support agent thanks please when where why how today tomorrow the a my "
    "your is was will can could not yes no package item size colour email phone update help"
)


def chat_history_context(size: int) -> str:
    """A `context_json` holding a chat history: the encoded session is about `size` bytes."""
    rng = random.Random(7)
    words = VOCABULARY.split()
    history: list[dict[str, str]] = []
    second = 0
    while len(json.dumps(history)) < size - 120:
        second += rng.randint(3, 240)
        history.append(
            {
                "id": f"msg_{rng.getrandbits(48):012x}",
                "ts": f"2025-03-14T{9 + second // 3600:02d}:{second // 60 % 60:02d}:"
                f"{second % 60:02d}Z",
                "role": "user" if len(history) % 2 == 0 else "assistant",
                "text": " ".join(rng.choice(words) for _ in range(rng.randint(4, 22))),
            }
        )
    state = {"locale": "en-GB", "step": "collect_order_id", "history": history}
    return json.dumps(state, separators=(",", ":"))


def chat_history_data(size: int, user: str = "user-0") -> SessionData:
    """`user`'s session whose `context_json` is `chat_history_context(size)`."""
    return SessionData(
        tenant_ctx=TenantCtx.new(ENV, TENANT, user=user),
        flow_id=FLOW_ID,
        cursor=SessionCursor(node_pointer=NODE),
        context_json=chat_history_context(size),
    )


def chat_history_blob(size: int) -> bytes:
    """The encoded session whose `context_json` is a chat history of about `size` bytes."""
    return encode_session_data(chat_history_data(size))


def run_sealing_cases(
    profile: Profile, *, tick: Callable[[], None] = lambda: None
) -> list[dict[str, Any]]:
    """One row per (operation, mode) with CPU and wall time per call, section "sealing"."""
    data = Population(HEADLINE_SIZE, 1).datas[0]
    blob = encode_session_data(data)
    owner = scope_of(data.tenant_ctx)
    chat = chat_history_blob(HEADLINE_SIZE)
    sealers = _sealers()
    limit = DEFAULT_MAX_BLOB_BYTES

    def sealing_of(s: Sealer) -> Callable[[bytes], bytes]:
        """A write's sealing, as a store will do it: the owner's digest (which the write's
        script needs too), then the seal; the identity store does neither."""
        if s.identity:
            return lambda plain: plain
        return lambda plain: s.seal(
            plain, session_key=SESSION_KEY, owner_digest=s.owner_digest(owner)
        )

    seal_with = {mode: sealing_of(s) for mode, s in sealers.items()}
    stored = {mode: seal(blob) for mode, seal in seal_with.items()}
    chat_stored = {mode: len(seal(chat)) for mode, seal in seal_with.items()}

    floors = _floor_calls(blob)

    def call(op: str, mode: str) -> Callable[[], Any]:
        if mode in floors:
            return floors[mode][SEALING_OPS.index(op)]
        s, sealed, seal = sealers[mode], stored[mode], seal_with[mode]
        if op == "seal":
            return lambda: seal(blob)
        if op == "open":
            return lambda: s.open(sealed, session_key=SESSION_KEY, limit=limit)
        return lambda: s.open(seal(blob), session_key=SESSION_KEY, limit=limit)

    rows: list[dict[str, Any]] = []
    labels = MODES + FLOORS
    for op in SEALING_OPS:
        calls = {mode: call(op, mode) for mode in labels}
        for fn in calls.values():
            if op != "seal" and fn() != blob:
                raise AssertionError(f"sealing {op} does not round-trip")
            for _ in range(200):
                fn()
        cpu: dict[str, list[float]] = {mode: [] for mode in labels}
        wall: dict[str, list[float]] = {mode: [] for mode in labels}
        for order in rotations(labels, profile.rounds):
            for mode in order:
                fn, batch = calls[mode], profile.codec_batch
                with gc_paused():
                    deadline = time.perf_counter_ns() + int(profile.codec_seconds * 1e9)
                    for _ in range(profile.codec_batches):
                        c0, t0 = time.process_time_ns(), time.perf_counter_ns()
                        for _ in range(batch):
                            fn()
                        t1, c1 = time.perf_counter_ns(), time.process_time_ns()
                        cpu[mode].append((c1 - c0) / batch)
                        wall[mode].append((t1 - t0) / batch)
                        if t1 > deadline:
                            break
            tick()
        rows += [
            {
                "section": "sealing",
                "op": op,
                "size": HEADLINE_SIZE,
                "blob_bytes": len(blob),
                "label": mode,
                "role": "ours" if mode in MODES[1:] else "floor",
                "stored_bytes": len(stored[mode]) if mode in stored else None,
                "chat_blob_bytes": len(chat),
                "chat_stored_bytes": chat_stored.get(mode),
                "client_cpu_ns": Summary.of(cpu[mode]).as_dict(),
                "latency_ns": Summary.of(wall[mode]).as_dict(),
            }
            for mode in labels
        ]
    return rows


def render_sealing_table(rows: list[dict[str, Any]]) -> str:
    """Client CPU per call (median) by mode, the verdict on seal+open, and the stored bytes."""
    sealing = {(r["op"], r["label"]): r for r in rows if r["section"] == "sealing"}
    if not sealing:
        return ""
    first = next(iter(sealing.values()))
    lines = [
        "",
        f"Sealing, one {size_label(HEADLINE_SIZE)} session (blob {first['blob_bytes']:,} B; "
        f"chat history {first['chat_blob_bytes']:,} B): client CPU per call, median "
        f"(target: seal+open <= {TARGET_US:.0f} us)",
        f"{'mode':<15} {'seal us':>8} {'open us':>8} {'both us':>8} {'p99 us':>7} "
        f"{'stored B':>9} {'chat B':>7} {'chat %':>6}  verdict",
    ]
    for mode in MODES + FLOORS:
        group = [sealing.get((op, mode)) for op in SEALING_OPS]
        if any(r is None for r in group):
            continue
        seal, open_, both = (r["client_cpu_ns"] for r in group if r is not None)
        row = group[2]
        assert row is not None
        verdict = "met" if both["median"] / 1e3 <= TARGET_US else "MISSED"
        stored = "" if row["stored_bytes"] is None else f"{row['stored_bytes']:>9,}"
        chat = "" if row["chat_stored_bytes"] is None else f"{row['chat_stored_bytes']:>7,}"
        share = (
            ""
            if row["chat_stored_bytes"] is None
            else f"{100 * row['chat_stored_bytes'] / row['chat_blob_bytes']:>5.0f}%"
        )
        lines.append(
            f"{mode:<15} {seal['median'] / 1e3:>8.2f} {open_['median'] / 1e3:>8.2f} "
            f"{both['median'] / 1e3:>8.2f} {both['p99'] / 1e3:>7.2f} {stored:>9} "
            f"{chat:>7} {share:>6}  {verdict if row['role'] == 'ours' else ''}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.cases_sealing", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="the short profile")
    args = parser.parse_args(argv)
    gc.collect()
    gc.freeze()  # as the runner does: the imports' objects are never garbage
    print(render_sealing_table(run_sealing_cases(QUICK if args.quick else FULL)).lstrip("\n"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
