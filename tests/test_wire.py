"""The Python wire codec (generator/wire.py) against docs/CONTRACTS.md §1 and the shared
vectors in tests/vectors/frames.json (the C decoder is checked against the same file)."""

from __future__ import annotations

import json
import random
import struct
import zlib

import pytest

from tests import paths
from generator.wire import (
    HOST_ID, MAX_PAYLOAD, PE_CONFIG_MAGIC, Ack, ErrorInfo, Frame, FrameDecoder, FrameType,
    PeConfig, PongInfo, Stats, chunk_tensor, encode, pack_ack, pack_error, pack_pe_config,
    pack_pong, pack_ready, pack_stats, tensor_frames, unpack_ack, unpack_error, unpack_pe_config,
    unpack_pong, unpack_ready, unpack_stats)

from tests.wire_streams import random_stream, raw_frame

VECTORS = json.loads((paths.VECTORS / "frames.json").read_text())


def _frame(d: dict) -> Frame:
    return Frame(FrameType(d["type"]), d["src"], d["dst"], d["stream"], d["seq"], d["chunk"],
                 d["nchunks"], bytes.fromhex(d["payload"]))


def test_encode_matches_hand_packed_bytes():
    payload = b"\x01\x02\x03"
    body = struct.pack("<BBHHHHHHH", 1, 1, 0xFFFF, 7, 2, 0x1234, 1, 3, 3) + payload
    want = b"\xa5\x5a" + body + struct.pack("<I", zlib.crc32(body))
    got = encode(Frame(FrameType.TENSOR, HOST_ID, 7, stream=2, seq=0x1234, chunk=1, nchunks=3,
                       payload=payload))
    assert got == want
    assert len(got) == 22 + 3


def test_ping_is_22_bytes_and_crc_covers_header():
    raw = encode(Frame(FrameType.PING, HOST_ID, 0))
    assert len(raw) == 22
    assert raw[:2] == b"\xa5\x5a"
    assert struct.unpack("<I", raw[18:])[0] == zlib.crc32(raw[2:18])


@pytest.mark.parametrize("case", VECTORS["encode"], ids=lambda c: f"type{c['type']}")
def test_encode_vectors(case):
    assert encode(_frame(case)).hex() == case["hex"]


@pytest.mark.parametrize("case", VECTORS["decode"], ids=lambda c: c["name"])
def test_decode_vectors(case):
    data = bytes.fromhex(case["hex"])
    want = [_frame(f) for f in case["frames"]]
    # whole, byte by byte, and in random pieces: the same frames and counters
    rng = random.Random(case["name"])
    splits = [[data], [data[i:i + 1] for i in range(len(data))]]
    cuts = sorted(rng.sample(range(len(data) + 1), min(5, len(data) + 1)))
    splits.append([data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])])
    for pieces in splits:
        d = FrameDecoder()
        got = [f for p in pieces for f in d.feed(p)]
        assert got == want
        assert (d.rx_frames, d.bad_frames, d.skipped_bytes, d.pending) == (
            case["rx_frames"], case["bad_frames"], case["skipped_bytes"], case["pending"])
        # every byte is delivered, skipped, or pending
        delivered = sum(22 + len(f.payload) for f in got)
        assert delivered + d.skipped_bytes + d.pending == len(data)


def test_vectors_cover_the_corruption_cases():
    names = {c["name"] for c in VECTORS["decode"]}
    assert {"bad_crc", "bad_version_then_good", "too_long_then_good", "garbage_prefix",
            "fake_header_swallows_frame", "truncated", "only_garbage"} <= names
    bad = {c["name"]: c for c in VECTORS["decode"]}
    assert bad["bad_crc"]["frames"] == [] and bad["bad_crc"]["bad_frames"] == 1
    assert len(bad["fake_header_swallows_frame"]["frames"]) == 2
    # issue 13: chunk fields and truncated frames
    for name in ("chunk_count0_then_good", "chunk_index_eq_count_then_good",
                 "chunk_index_ffff_count1_then_good"):
        assert len(bad[name]["frames"]) == 1 and bad[name]["bad_frames"] == 1, name
    assert bad["chunk_count0_index0_header_only"]["frames"] == []
    for name in ("truncated_then_good", "truncated_then_longer_good", "truncated_twice_then_good",
                 "truncated_then_sync_garbage_then_good", "truncated_then_bad_crc_then_good"):
        assert len(bad[name]["frames"]) == 1 and bad[name]["pending"] == 0, name
    assert [f["type"] for f in bad["good_truncated_good_truncated"]["frames"]] == [3, 9]
    assert [f["type"] for f in bad["frame_inside_payload_cuts_it"]["frames"]] == [3]


def test_every_single_byte_corruption_is_never_delivered():
    frame = Frame(FrameType.TENSOR, HOST_ID, 3, stream=1, seq=5, payload=bytes(range(40)))
    raw = encode(frame)
    for i in range(len(raw)):
        for bit in (0x01, 0x80):
            bad = bytearray(raw)
            bad[i] ^= bit
            d = FrameDecoder()
            assert d.feed(bytes(bad)) == []
            # a good frame right after is still found (a corrupted length field may make the
            # decoder wait for up to one maximal frame of bytes before it gives up)
            assert d.feed(raw + bytes(22 + MAX_PAYLOAD)) == [frame]
            assert d.bad_frames >= (0 if i < 2 else 1)


def test_random_garbage_between_frames():
    rng = random.Random(7)
    frames = [Frame(FrameType.TENSOR, HOST_ID, 1, seq=i, chunk=i, nchunks=20,
                    payload=bytes(rng.randrange(256) for _ in range(rng.randrange(MAX_PAYLOAD + 1))))
              for i in range(20)]
    stream = b"".join(bytes(rng.randrange(256) for _ in range(rng.randrange(50))) + encode(f)
                      for f in frames)
    d = FrameDecoder()
    got = [f for i in range(0, len(stream), 13) for f in d.feed(stream[i:i + 13])]
    assert got == frames


@pytest.mark.parametrize("chunk, nchunks", [(0, 0), (1, 0), (1, 1), (2, 2), (3, 2),
                                            (0xFFFF, 1), (0xFFFF, 0xFFFF)])
def test_bad_chunk_fields_are_bad_frames(chunk, nchunks):
    """1 <= nchunks and chunk < nchunks, or the frame is dropped (even with a good CRC)."""
    ping = encode(Frame(FrameType.PING, HOST_ID, 0))
    bad = raw_frame(FrameType.TENSOR, chunk=chunk, nchunks=nchunks, payload=b"1234")
    d = FrameDecoder()
    assert d.feed(bad + ping) == [Frame(FrameType.PING, HOST_ID, 0)]
    assert (d.bad_frames, d.skipped_bytes, d.pending) == (1, len(bad), 0)
    with pytest.raises(ValueError, match="nchunks"):
        encode(Frame(FrameType.TENSOR, HOST_ID, 1, chunk=chunk, nchunks=nchunks))


def test_chunk_fields_at_the_limits_are_good():
    for chunk, nchunks in ((0, 1), (0xFFFE, 0xFFFF), (4, 5)):
        f = Frame(FrameType.TENSOR, HOST_ID, 1, chunk=chunk, nchunks=nchunks, payload=b"x")
        assert FrameDecoder().feed(encode(f)) == [f]


def test_truncated_frame_then_good_frame_is_delivered_at_once():
    """The good frame comes out as soon as its last byte is in: no byte timeout, no wait for
    the bytes the truncated header promised."""
    full = encode(Frame(FrameType.TENSOR, HOST_ID, 1, nchunks=2, payload=bytes(range(256))))
    ping = Frame(FrameType.PING, HOST_ID, 1, seq=7)
    for cut in (1, 2, 3, 17, 18, 19, 100, len(full) - 1):
        d = FrameDecoder()
        assert d.feed(full[:cut]) == []
        assert d.feed(encode(ping)) == [ping], cut
        assert d.pending == 0 and d.rx_frames == 1
        assert d.skipped_bytes == cut
        # and the link goes on
        assert d.feed(full) == [FrameDecoder().feed(full)[0]]


def test_truncated_frames_byte_by_byte():
    """Fed one byte at a time, the good frame is delivered exactly at its last byte."""
    full = encode(Frame(FrameType.TENSOR, HOST_ID, 1, payload=bytes(200)))
    ack = encode(Frame(FrameType.ACK, 1, HOST_ID, payload=pack_ack(Ack(3, 3))))
    stream = full[:60] + full[:90] + ack
    d = FrameDecoder()
    got = [(i, f) for i in range(len(stream)) for f in d.feed(stream[i:i + 1])]
    assert [(i, f.type) for i, f in got] == [(len(stream) - 1, FrameType.ACK)]
    assert d.bad_frames == 2 and d.pending == 0


def test_random_truncations_lose_no_good_frame():
    """Seeded random streams (good, truncated, garbage, bad chunk fields, bit flips): every good
    frame is delivered, in order, whatever the split into feed() calls; every byte is
    accounted for."""
    rng = random.Random(13)
    for case in range(400):
        data, good = random_stream(rng)
        results = []
        for pieces in ([data], [data[i:i + 1] for i in range(len(data))],
                       [data[i:i + 7] for i in range(0, len(data), 7)]):
            d = FrameDecoder()
            got = [f for p in pieces for f in d.feed(p)]
            assert got == good, case
            delivered = sum(22 + len(f.payload) for f in got)
            assert delivered + d.skipped_bytes + d.pending == len(data)
            results.append((d.rx_frames, d.bad_frames, d.skipped_bytes, d.pending))
        assert results[0] == results[1] == results[2], case


def test_encode_rejects_bad_frames():
    with pytest.raises(ValueError):
        encode(Frame(FrameType.LOG, 0, 1, payload=bytes(MAX_PAYLOAD + 1)))
    with pytest.raises(ValueError):
        encode(Frame(FrameType.LOG, 0, 1, nchunks=0))
    with pytest.raises(ValueError):
        encode(Frame(FrameType.LOG, 0, 0x10000))
    with pytest.raises(ValueError):
        encode(Frame(10, 0, 1))  # type: ignore[arg-type]


def test_chunk_tensor():
    assert chunk_tensor(b"") == [b""]
    assert chunk_tensor(bytes(256)) == [bytes(256)]
    chunks = chunk_tensor(bytes(range(256)) * 2 + b"xy")
    assert [len(c) for c in chunks] == [256, 256, 2]
    assert b"".join(chunks) == bytes(range(256)) * 2 + b"xy"
    frames = tensor_frames(bytes(600), src=HOST_ID, dst=4, stream=1, first_seq=0xFFFF)
    assert [(f.seq, f.chunk, f.nchunks) for f in frames] == [(0xFFFF, 0, 3), (0, 1, 3), (1, 2, 3)]


def test_payload_round_trips():
    pong = PongInfo(1, 256, 3, 7, (384, 16), (384, 4))
    raw = pack_pong(pong)
    assert len(raw) == 12 + 16
    assert unpack_pong(raw) == pong
    assert unpack_ack(pack_ack(Ack(0x1234, 3))) == Ack(0x1234, 3)
    stats = Stats(inferences=2, cycles=(5 << 32) + 7, rx_frames=9, rx_bad_frames=1,
                  rx_skipped_bytes=33, tx_frames=12, run_status=-5, accel_calls=4,
                  accel_macs=(1 << 40) + 3, rx_duplicates=5, rx_gaps=6, rx_dropped=7,
                  ready_sent=8, ready_received=9, credit_stalls=10, rx_wrong_source=11,
                  ready_resent=12, ready_stale=13, waiting=(2 << 24) | (1 << 16) | 7)
    raw = pack_stats(stats)
    assert struct.unpack_from("<HH", raw) == (21, 0)
    assert struct.unpack_from("<10I", raw, 4 + 4 * 11) == (5, 6, 7, 8, 9, 10, 11, 12, 13,
                                                          (2 << 24) | (1 << 16) | 7)
    assert unpack_stats(raw) == stats
    err = ErrorInfo(-22, "bad chunk — ü")
    assert unpack_error(pack_error(err)) == err


def test_ready_counts_and_waits():
    from generator.wire import describe_wait, pack_ready, ready_count, unpack_ready
    assert unpack_ready(pack_ready(3, 70000)) == 3 and ready_count(pack_ready(3, 70000)) == 4464
    assert ready_count(pack_ready(3)) is None
    assert describe_wait((2 << 24) | (1 << 16) | 7) == \
        "waits for a READY credit from PE 7 to send output 1"
    assert describe_wait((1 << 24) | 0xFFFF) == "waits for the rest of input 0 from the host"
    assert describe_wait(0) == "waits for nothing (idle)"


def test_stats_from_an_older_or_newer_pe():
    older = struct.pack("<HH3I", 3, 0, 1, 10, 0)
    assert unpack_stats(older) == Stats(inferences=1, cycles=10)
    newer = pack_stats(Stats(inferences=1, extra=(99,)))
    assert unpack_stats(newer).extra == (99,)
    with pytest.raises(ValueError):
        unpack_stats(struct.pack("<HH", 2, 0) + b"\0\0\0\0")
    with pytest.raises(ValueError):
        unpack_pong(b"\x01\x00")


def test_ready_frames():
    assert FrameType.READY == 9
    assert pack_ready(0x0102) == b"\x02\x01"
    assert unpack_ready(pack_ready(7)) == 7
    with pytest.raises(ValueError):
        unpack_ready(b"\x01")
    names = {c["name"]: c for c in VECTORS["decode"]}
    assert [f["type"] for f in names["ready_between_tensors"]["frames"]] == [1, 9, 1]
    assert names["bad_type10_then_good"]["bad_frames"] == 1


@pytest.mark.parametrize("case", VECTORS["pe_config"], ids=lambda c: f"pe{c['pe_id']}")
def test_pe_config_vectors(case):
    cfg = PeConfig(case["pe_id"], case["role"], tuple(tuple(r) for r in case["routes"]),
                   case["flags"])
    raw = pack_pe_config(cfg)
    assert raw.hex() == case["hex"] and len(raw) == 128
    assert unpack_pe_config(raw) == cfg


def test_pe_config_layout_by_hand():
    raw = pack_pe_config(PeConfig(5, 1, ((1, 2, 0x0304, 0x0506), (2, 0, 0xFFFF, 1)), flags=1))
    assert struct.unpack_from("<IHHBBHI", raw) == (PE_CONFIG_MAGIC, 1, 5, 1, 2, 0, 1)
    assert raw[16:28] == bytes([1, 2, 4, 3, 6, 5, 2, 0, 0xFF, 0xFF, 1, 0])
    assert raw[28:] == bytes(100)
    with pytest.raises(ValueError, match="at most 18"):
        pack_pe_config(PeConfig(0, 1, ((1, 0, 1, 0),) * 19))
    with pytest.raises(ValueError):
        pack_pe_config(PeConfig(0, 1, ((1, 256, 1, 0),)))
    with pytest.raises(ValueError):
        unpack_pe_config(raw[:-1])


def test_a_frame_that_stops_arriving_is_abandoned():
    from generator.wire import BYTE_TIMEOUT_S, FrameDecoder
    good = encode(Frame(FrameType.PING, HOST_ID, 1, 0, 0, 0, 1, b""))
    part = encode(Frame(FrameType.TENSOR, HOST_ID, 1, 0, 1, 0, 1, bytes(200)))[:40]
    dec = FrameDecoder()
    assert dec.feed(part) == [] and dec.pending == 40
    assert not dec.expire(dec.last_rx + BYTE_TIMEOUT_S / 2)      # still arriving
    assert dec.expire(dec.last_rx + BYTE_TIMEOUT_S * 1.01)       # given up
    assert (dec.pending, dec.bad_frames, dec.skipped_bytes) == (0, 1, 40)
    assert [f.type for f in dec.feed(good)] == [FrameType.PING]
    assert not dec.expire(dec.last_rx + 10)                     # nothing pending
