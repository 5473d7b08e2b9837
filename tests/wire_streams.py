"""Seeded random byte streams for the frame decoders (tests/test_wire.py checks the Python
decoder on them, tests/test_runtime_c.py checks the C decoder against the Python one): good
frames mixed with truncated frames, garbage (sync bytes and fake headers included), frames
with bad chunk fields and frames with flipped bits."""

from __future__ import annotations

import random
import struct
import zlib

from generator.wire import HOST_ID, MAX_PAYLOAD, SYNC, Frame, FrameType, encode


def random_frame(rng: random.Random) -> Frame:
    """A valid frame; its payload may hold sync bytes but never a whole frame."""
    n = rng.choice((0, 1, 4, rng.randrange(MAX_PAYLOAD + 1), MAX_PAYLOAD))
    payload = bytearray(rng.randrange(256) for _ in range(n))
    for _ in range(rng.randrange(3)):        # sync bytes inside the payload
        if n >= 2:
            i = rng.randrange(n - 1)
            payload[i:i + 2] = SYNC
    nchunks = rng.randrange(1, 6)
    return Frame(FrameType(rng.randrange(1, 10)), rng.choice((HOST_ID, rng.randrange(16))),
                 rng.choice((HOST_ID, rng.randrange(16))), stream=rng.randrange(4),
                 seq=rng.randrange(0x10000), chunk=rng.randrange(nchunks), nchunks=nchunks,
                 payload=bytes(payload))


def raw_frame(ftype: int, *, chunk: int, nchunks: int, payload: bytes = b"") -> bytes:
    """A frame with a good CRC whatever its chunk fields (encode() refuses bad ones)."""
    body = struct.pack("<BBHHHHHHH", 1, ftype, HOST_ID, 1, 0, 0, chunk, nchunks,
                       len(payload)) + payload
    return SYNC + body + struct.pack("<I", zlib.crc32(body))


def garbage(rng: random.Random) -> bytes:
    """Random bytes, sometimes with syncs and plausible fake headers in them."""
    out = bytearray(rng.randrange(256) for _ in range(rng.randrange(40)))
    for _ in range(rng.randrange(3)):
        i = rng.randrange(len(out) + 1)
        kind = rng.randrange(3)
        if kind == 0:
            piece = SYNC
        elif kind == 1:                      # a fake header (no valid CRC follows)
            piece = SYNC + struct.pack("<BBHHHHHHH", 1, rng.randrange(1, 10), 0, 0, 0, 0, 0, 1,
                                       rng.randrange(MAX_PAYLOAD + 1))
        else:
            piece = b"\xa5"
        out[i:i] = piece
    return bytes(out)


def random_stream(rng: random.Random, segments: int = 8) -> tuple[bytes, list[Frame]]:
    """A stream and the good frames in it, in order (every one must be delivered)."""
    data = bytearray()
    good: list[Frame] = []
    for _ in range(segments):
        kind = rng.randrange(10)
        if kind < 4:                         # a good frame
            f = random_frame(rng)
            good.append(f)
            data += encode(f)
        elif kind < 6:                       # a truncated frame, its CRC at least missing
            raw = encode(random_frame(rng))  # (a shorter cut could be completed by chance)
            data += raw[:rng.randrange(1, len(raw) - 3)]
        elif kind < 8:
            data += garbage(rng)
        elif kind == 8:                      # bad chunk fields, good CRC
            nchunks = rng.choice((0, 1, 2))
            chunk = rng.choice((nchunks, nchunks + rng.randrange(1, 100), 0xFFFF))
            if nchunks == 0:
                chunk = rng.choice((0, chunk))
            data += raw_frame(rng.randrange(1, 10), chunk=chunk, nchunks=nchunks,
                              payload=bytes(rng.randrange(256) for _ in range(rng.randrange(9))))
        else:                                # a bit flip after the sync
            raw = bytearray(encode(random_frame(rng)))
            raw[rng.randrange(2, len(raw))] ^= 1 << rng.randrange(8)
            data += raw
    return bytes(data), good
