"""Regenerate frames.json: python tests/vectors/make_vectors.py (from the repository root).

The vectors are the shared truth of the wire format for generator/wire.py and
zephyr_app/src/frame.c. They are produced with the Python codec and checked in; the Python
tests also check the codec against independently hand-packed bytes, and the C test checks
frame.c against this file. Regenerate only on a deliberate contract change.
"""

from __future__ import annotations

import json
import random
import struct
import zlib
from pathlib import Path

from generator.wire import (
    HOST_ID, ROLE_SINGLE, ROLE_STAGE, Frame, FrameDecoder, FrameType, PeConfig, encode,
    pack_pe_config, pack_ready)


def _frame_json(f: Frame) -> dict:
    return {"type": int(f.type), "src": f.src, "dst": f.dst, "stream": f.stream, "seq": f.seq,
            "chunk": f.chunk, "nchunks": f.nchunks, "payload": f.payload.hex()}


def _raw(ftype: int, src: int, dst: int, *, stream: int = 0, seq: int = 0, chunk: int = 0,
         nchunks: int = 1, payload: bytes = b"") -> bytes:
    """A frame with a good CRC packed by hand, whatever its fields (encode() refuses bad
    chunk fields)."""
    body = struct.pack("<BBHHHHHHH", 1, ftype, src, dst, stream, seq, chunk, nchunks,
                       len(payload)) + payload
    return b"\xa5\x5a" + body + struct.pack("<I", zlib.crc32(body))


def main() -> None:
    rng = random.Random(1234)
    ping = encode(Frame(FrameType.PING, HOST_ID, 0, seq=1))
    pong = encode(Frame(FrameType.PONG, 0, HOST_ID, seq=0,
                        payload=bytes.fromhex("0100000103000000010001008001000010000000")))
    full = encode(Frame(FrameType.TENSOR, HOST_ID, 7, stream=1, seq=42, chunk=3, nchunks=5,
                        payload=bytes(rng.randrange(256) for _ in range(256))))
    err = encode(Frame(FrameType.ERROR, 7, HOST_ID, seq=0xFFFF,
                       payload=b"\xea\xff\xff\xffbad chunk"))
    empty_log = encode(Frame(FrameType.LOG, 1, 2, seq=3))
    ack = encode(Frame(FrameType.ACK, 0x1C7F, HOST_ID, stream=2, seq=9, payload=b"\x2a\x00\x03\x00"))
    ready = encode(Frame(FrameType.READY, 4, 2, stream=1, seq=0x0102, payload=pack_ready(1)))
    sync_in_payload = encode(Frame(FrameType.TENSOR, HOST_ID, 0, payload=b"\xa5\x5a\x01\x01" * 8))

    bad_crc = bytearray(pong)
    bad_crc[-1] ^= 0x01
    bad_payload = bytearray(full)
    bad_payload[100] ^= 0x80
    bad_version = bytearray(ping)
    bad_version[2] = 2
    bad_type0 = bytearray(ping)
    bad_type0[3] = 0
    bad_type10 = bytearray(ping)
    bad_type10[3] = 10
    too_long = bytearray(ping)
    too_long[16:18] = (257).to_bytes(2, "little")
    # a fake header claiming 100 payload bytes that swallows a real frame
    fake = bytes.fromhex("a55a0101ffff0000000000000000010064 00".replace(" ", ""))
    garbage = bytes(rng.randrange(256) for _ in range(300))

    decode_cases = {
        "ping": ping,
        "pong": pong,
        "tensor_full_payload": full,
        "error_seq_ffff": err,
        "empty_log": empty_log,
        "ack": ack,
        "ready": ready,
        "ready_between_tensors": sync_in_payload + ready + full,
        "sync_inside_payload": sync_in_payload,
        "back_to_back": ping + pong + ack,
        "garbage_prefix": b"\x00\x11\xa5\x22\x5a\xff" + ping,
        "garbage_suffix": ping + b"\x01\x02\xa5",
        "double_sync_byte": b"\xa5" + ping,
        "truncated": full[:150],
        "header_only": ping[:10],
        "bad_crc": bytes(bad_crc),
        "bad_crc_then_good": bytes(bad_crc) + ping,
        "corrupt_payload_then_good": bytes(bad_payload) + ack,
        "bad_version_then_good": bytes(bad_version) + ping,
        "bad_type0_then_good": bytes(bad_type0) + err,
        "bad_type10_then_good": bytes(bad_type10) + err,
        "too_long_then_good": bytes(too_long) + ping,
        "fake_header_swallows_frame": fake + ping + bytes(90) + pong,
        "random_garbage_then_frames": garbage + full + garbage[:40] + ping,
        "only_garbage": garbage,
        # chunk fields: 1 <= nchunks and chunk < nchunks, else a bad frame (good CRC or not)
        "chunk_count0_then_good": _raw(1, HOST_ID, 3, nchunks=0, payload=b"abcd") + ping,
        "chunk_index_eq_count_then_good": _raw(1, HOST_ID, 3, chunk=2, nchunks=2,
                                                payload=b"abcd") + ping,
        "chunk_index_ffff_count1_then_good": _raw(5, 2, HOST_ID, chunk=0xFFFF) + ack,
        "chunk_count0_index0_header_only": _raw(3, HOST_ID, 0, nchunks=0),
        "chunk_last_of_ffff": _raw(2, 1, 2, chunk=0xFFFE, nchunks=0xFFFF, payload=b"x"),
        # truncated frames: the decoder resynchronises at the next whole frame
        "truncated_then_good": full[:150] + ping,
        "truncated_then_longer_good": full[:150] + full,
        "truncated_header_then_good": full[:10] + ping + pong,
        "truncated_twice_then_good": full[:150] + pong[:30] + ack,
        "truncated_then_sync_garbage_then_good": full[:100] + b"\xa5\x5a\xa5\x00\x5a" + ping,
        "good_truncated_good_truncated": ping + full[:200] + ready + pong[:25],
        "truncated_then_bad_crc_then_good": full[:150] + bytes(bad_crc) + ack,
        # the other face of resynchronising: a payload holding a whole frame cuts its frame
        "frame_inside_payload_cuts_it": encode(Frame(FrameType.LOG, 1, 2, seq=4,
                                                     payload=bytes(10) + ping + bytes(10))),
        "empty": b"",
    }
    decode = []
    for name, data in decode_cases.items():
        d = FrameDecoder()
        frames = d.feed(data)
        decode.append({"name": name, "hex": data.hex(), "frames": [_frame_json(f) for f in frames],
                       "rx_frames": d.rx_frames, "bad_frames": d.bad_frames,
                       "skipped_bytes": d.skipped_bytes, "pending": d.pending})

    encode_frames = [
        Frame(FrameType.PING, HOST_ID, 0, seq=1),
        Frame(FrameType.TENSOR, HOST_ID, 7, stream=1, seq=42, chunk=3, nchunks=5,
              payload=bytes(range(256))),
        Frame(FrameType.STATS, 3, HOST_ID, seq=0xFFFF, payload=bytes(range(48))),
        Frame(FrameType.CONFIG, 0x1C7F, 0, stream=0xFFFF, chunk=0xFFFE, nchunks=0xFFFF,
              payload=b"x"),
        Frame(FrameType.READY, 2, HOST_ID, stream=3, seq=7, payload=pack_ready(3)),
    ]
    # struct pemesh_pe_config blocks (CONTRACTS §1, §6): routes are (kind, a, pe, b)
    configs = [
        PeConfig(0, ROLE_SINGLE),
        PeConfig(5, ROLE_STAGE, ((1, 0, 6, 0), (1, 0, 7, 0), (1, 1, HOST_ID, 1),
                                 (2, 0, HOST_ID, 0), (2, 1, 0x0102, 0x0304)), flags=1),
        PeConfig(0xFFFE, ROLE_STAGE,
                 tuple((1 + i % 2, i, 0x1000 + i, 0xA0B0 + i) for i in range(18)),
                 flags=0x80000001),
    ]
    out = {
        "comment": "pemesh wire-format vectors (docs/CONTRACTS.md 1); generated by "
                   "tests/vectors/make_vectors.py",
        "max_payload": 256,
        "encode": [{**_frame_json(f), "hex": encode(f).hex()} for f in encode_frames],
        "decode": decode,
        "pe_config": [{"pe_id": c.pe_id, "role": c.role, "flags": c.flags,
                       "routes": [list(r) for r in c.routes], "hex": pack_pe_config(c).hex()}
                      for c in configs],
    }
    path = Path(__file__).with_name("frames.json")
    path.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
