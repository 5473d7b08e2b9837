"""The hand-written PE runtime in C (zephyr_app/), one PE: compiled with host gcc and with
arm-none-eabi-gcc (-Wall -Wextra -Werror), run against the shared wire vectors, driven as a
PE through an in-memory port, as a Linux process (host port, over its pty), and on QEMU's
lm3s6965evb (bare-metal port). Role STAGE (the mesh) is tested in test_runtime_mesh.py."""

from __future__ import annotations

import errno
import json
import random
import shutil
import signal
import subprocess
from collections import deque
from pathlib import Path

import numpy as np
import pytest

from tests import paths
from generator.wire import (HOST_ID, MAX_PAYLOAD, Frame, FrameDecoder, FrameType, PongInfo,
                                 Stats, encode, unpack_ack, unpack_error, unpack_pong,
                                 unpack_stats)
from tests.runtime_c_helpers import (ARM, CORE, FIXTURES, HOST_PORT, PE_ID, RUNTIME, WARN,
                                     HostSide, app_sources, build_lm3s, cc, demo_app,  # noqa: F401
                                     demo_reference, inputs, needs_arm, needs_gcc, needs_qemu,
                                     stop_process, tensor_bytes, wait_for_line)

from tests.wire_streams import random_stream

VECTORS = json.loads((paths.VECTORS / "frames.json").read_text())


# --- compile checks ---------------------------------------------------------------------------


@needs_gcc
def test_core_and_host_port_compile_with_gcc(tmp_path):
    for src in CORE + HOST_PORT:
        cc(["gcc", *WARN, "-O2", f"-I{RUNTIME / 'include'}", "-c", src, "-o", tmp_path / "x.o"])


@needs_arm
def test_core_and_lm3s6965_port_compile_with_arm_gcc(tmp_path):
    for src in CORE + sorted((RUNTIME / "ports" / "lm3s6965").glob("*.c")):
        cc([*ARM, *WARN, "-O2", f"-I{RUNTIME / 'include'}", "-c", src, "-o", tmp_path / "x.o"])


# --- wire vectors -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vectors_exe(tmp_path_factory) -> Path:
    """tests/fixtures/runtime_c/vectors_main.c with frame.c, under ASan/UBSan."""
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc")
    exe = tmp_path_factory.mktemp("vectors") / "vectors"
    cc(["gcc", *WARN, "-O1", "-fsanitize=address,undefined", f"-I{RUNTIME / 'include'}",
         FIXTURES / "runtime_c" / "vectors_main.c", RUNTIME / "src" / "frame.c",
         RUNTIME / "src" / "crc32.c", RUNTIME / "src" / "config.c", "-o", exe])
    return exe


def _c_decode(exe: Path, streams: list[bytes], mode: str = "D"
              ) -> list[tuple[list[dict], list[int]]]:
    """Decode each stream with the C decoder (mode "D": fed one byte at a time, "B": in writes
    of 1..97 bytes): its frames (as in frames.json) and counters [rx_frames, bad_frames,
    skipped_bytes, pending]."""
    proc = subprocess.run([exe], input="".join(f"{mode} {s.hex()}\n" for s in streams),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    out = deque(proc.stdout.splitlines())
    results = []
    for _ in streams:
        frames = []
        while out[0].startswith("F "):
            t, src, dst, stream, seq, chunk, nchunks, *payload = out.popleft().split(" ")[1:]
            frames.append({"type": int(t), "src": int(src), "dst": int(dst),
                           "stream": int(stream), "seq": int(seq), "chunk": int(chunk),
                           "nchunks": int(nchunks), "payload": payload[0] if payload else ""})
        results.append((frames, [int(v) for v in out.popleft().split()[1:]]))
    assert not out
    return results


def test_c_codec_matches_vectors(vectors_exe):
    exe = vectors_exe
    lines = [f"D {c['hex']}" for c in VECTORS["decode"]]
    lines += [f"E {e['type']} {e['src']} {e['dst']} {e['stream']} {e['seq']} {e['chunk']} "
              f"{e['nchunks']} {e['payload'] or '-'}" for e in VECTORS["encode"]]
    # bad type, nchunks 0, chunk == nchunks, chunk > nchunks → -EINVAL
    lines += ["E 10 0 0 0 0 0 1 -", "E 1 0 0 0 0 0 0 -", "E 1 0 0 0 0 2 2 -",
              "E 1 0 0 0 0 65535 1 -"]
    lines += [f"R {c['hex']}" for c in VECTORS["pe_config"]]
    bad = bytearray.fromhex(VECTORS["pe_config"][1]["hex"])
    bad[16] = 3  # an unknown route kind
    lines += [f"R {bad.hex()}"]
    proc = subprocess.run([exe], input="\n".join(lines) + "\n", capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = deque(proc.stdout.splitlines())
    for case in VECTORS["decode"]:
        frames = []
        while out[0].startswith("F "):
            t, src, dst, stream, seq, chunk, nchunks, *payload = out.popleft().split(" ")[1:]
            frames.append({"type": int(t), "src": int(src), "dst": int(dst),
                           "stream": int(stream), "seq": int(seq), "chunk": int(chunk),
                           "nchunks": int(nchunks), "payload": payload[0] if payload else ""})
        assert frames == case["frames"], case["name"]
        counters = [int(v) for v in out.popleft().split()[1:]]
        assert counters == [case["rx_frames"], case["bad_frames"], case["skipped_bytes"],
                            case["pending"]], case["name"]
    for enc in VECTORS["encode"]:
        assert out.popleft() == f"H {enc['hex']}"
    for _ in range(4):
        assert out.popleft() == f"H ERR {-errno.EINVAL}"
    for cfg in VECTORS["pe_config"]:
        assert out.popleft() == (f"R 0 {cfg['pe_id']} {cfg['role']} {len(cfg['routes'])} "
                                 f"{cfg['flags']}")
        for route in cfg["routes"]:
            assert out.popleft() == "r " + " ".join(map(str, route))
    assert out.popleft() == f"R {-errno.EINVAL} 5 1 5 1"
    assert [out.popleft()[0] for _ in range(5)] == ["r"] * 5
    assert not out


@pytest.mark.timeout(300)
def test_c_decoder_matches_python_on_random_streams(vectors_exe):
    """Differential: seeded random streams of good, truncated, garbage (with syncs and fake
    headers), bad-chunk-field and bit-flipped frames; the C decoder fed byte by byte and in
    writes of 1..97 bytes and the Python one fed whole deliver the same frames with the same
    counters, and none loses a good frame."""
    rng = random.Random(1313)
    cases = [random_stream(rng, segments=rng.randrange(1, 12)) for _ in range(1500)]
    streams = [data for data, _ in cases]
    for i, (by_byte, by_block, (data, good)) in enumerate(
            zip(_c_decode(vectors_exe, streams), _c_decode(vectors_exe, streams, "B"), cases)):
        d = FrameDecoder()
        want = d.feed(data)
        assert want == good, i
        for frames, counters in (by_byte, by_block):
            assert frames == [_frame_json(f) for f in want], i
            assert counters == [d.rx_frames, d.bad_frames, d.skipped_bytes, d.pending], i


def _frame_json(f: Frame) -> dict:
    return {"type": int(f.type), "src": f.src, "dst": f.dst, "stream": f.stream, "seq": f.seq,
            "chunk": f.chunk, "nchunks": f.nchunks, "payload": f.payload.hex()}


# --- the PE main loop with an in-memory port ----------------------------------------------------


def _host(ftype: FrameType, seq: int, payload: bytes = b"", **kw) -> bytes:
    return encode(Frame(ftype, HOST_ID, kw.pop("dst", PE_ID), seq=seq, payload=payload, **kw))



@needs_gcc
def test_pe_main_loop_in_memory(demo_app, tmp_path):
    srcs, incs = app_sources(demo_app)
    exe = tmp_path / "pe"
    cc(["gcc", *WARN, "-O1", "-g", "-fsanitize=address,undefined", *incs, *srcs,
         FIXTURES / "runtime_c" / "test_port.c", "-lm", "-o", exe])

    x1, b1 = inputs(1)
    x2, b2 = inputs(2)
    t1 = tensor_bytes(x1, b1, 10)
    corrupt = bytearray(t1[1])
    corrupt[40] ^= 0xFF
    stream = (b"\x00\xa5\x13garbage"              # garbage before anything
              + _host(FrameType.PING, 1, dst=HOST_ID)  # 0xFFFF: whoever is on the link
              + t1[0] + bytes(corrupt) + t1[1] + t1[2])
    first_stats_at = len(stream)
    stream += (_host(FrameType.PING, 2, dst=9)        # another PE's: ignored
               + _host(FrameType.TENSOR, 20, bytes(8), stream=5)          # no such input
               + _host(FrameType.TENSOR, 21, bytes(256), chunk=1, nchunks=2)  # out of order
               + _host(FrameType.TENSOR, 22, bytes(16), stream=1, nchunks=2)  # bad count
               + _host(FrameType.TENSOR, 23, bytes(15), stream=1)         # bad length
               + b"".join(tensor_bytes(x2, b2, 30)))
    proc = subprocess.run([exe], input=stream.hex() + "\n", capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    dec = FrameDecoder()
    got = deque(dec.feed(bytes.fromhex(proc.stdout.strip())))
    assert dec.bad_frames == 0 and dec.skipped_bytes == 0 and dec.pending == 0
    assert all(f.src == PE_ID and f.dst == HOST_ID for f in got)
    assert [f.seq for f in got] == list(range(len(got)))  # one seq per frame sent

    pong = got.popleft()
    assert pong.type == FrameType.PONG
    window = 1024 // (22 + MAX_PAYLOAD)
    assert unpack_pong(pong.payload) == PongInfo(1, MAX_PAYLOAD, window, PE_ID, (384, 16), (384, 4))

    def expect_acks(seqs):
        for seq in seqs:
            f = got.popleft()
            assert f.type == FrameType.ACK, f
            ack = unpack_ack(f.payload)
            assert (ack.acked_seq, ack.credits) == (seq, window)

    def expect_outputs(x, b):
        want_out, want_total = demo_reference(x, b)
        chunks = [got.popleft() for _ in range(3)]
        assert [(f.type, f.stream, f.chunk, f.nchunks, len(f.payload)) for f in chunks] == [
            (FrameType.TENSOR, 0, 0, 2, 256), (FrameType.TENSOR, 0, 1, 2, 128),
            (FrameType.TENSOR, 1, 0, 1, 4)]
        out = np.frombuffer(chunks[0].payload + chunks[1].payload, dtype=np.float32)
        np.testing.assert_allclose(out, want_out, rtol=1e-6)
        np.testing.assert_allclose(np.frombuffer(chunks[2].payload, np.float32), want_total,
                                   rtol=1e-5)
        f = got.popleft()
        assert f.type == FrameType.STATS
        return unpack_stats(f.payload)

    expect_acks([10, 11, 12])
    stats = expect_outputs(x1, b1)
    ref = FrameDecoder()
    ref.feed(stream[:first_stats_at])
    assert stats == Stats(inferences=1, cycles=1000, rx_frames=ref.rx_frames,
                          rx_bad_frames=1, rx_skipped_bytes=ref.skipped_bytes, tx_frames=7)
    assert ref.bad_frames == 1

    for seq, code in ((20, errno.EINVAL), (21, errno.EPROTO), (22, errno.EMSGSIZE),
                      (23, errno.EMSGSIZE)):
        f = got.popleft()
        assert f.type == FrameType.ERROR
        err = unpack_error(f.payload)
        assert err.code == -code and err.message.startswith("TENSOR"), err
        expect_acks([seq])
    expect_acks([30, 31, 32])
    stats = expect_outputs(x2, b2)
    assert stats.inferences == 2 and stats.run_status == 0
    assert not got


@needs_gcc
def test_single_pe_ignores_retransmitted_chunks(demo_app, tmp_path):
    """Role SINGLE: a TENSOR frame whose seq is not newer than the last accepted one (a
    go-back-N retransmission after a lost ACK) is re-ACKed and ignored, never an EPROTO
    ERROR and never a restarted input; a PING starts a new session (seq may start over)."""
    srcs, incs = app_sources(demo_app)
    exe = tmp_path / "pe"
    cc(["gcc", *WARN, "-O1", "-g", "-fsanitize=address,undefined", *incs, *srcs,
         FIXTURES / "runtime_c" / "test_port.c", "-lm", "-o", exe])
    x1, b1 = inputs(7)
    x2, b2 = inputs(8)
    t1 = tensor_bytes(x1, b1, 10)        # seq 10, 11 (x chunks 0, 1), 12 (bias)
    t2 = tensor_bytes(x2, b2, 0)         # a new session numbers from 0 again (HostLink does)
    stream = (_host(FrameType.PING, 1)
              + t1[0] + t1[1] + t1[1]    # chunk 1 again: was EPROTO
              + t1[0]                    # chunk 0 again: restarted input 0
              + t1[2]                    # complete: run 1
              + t1[2]                    # after the run: was a restarted input 1
              + _host(FrameType.PING, 0) + b"".join(t2))
    proc = subprocess.run([exe], input=stream.hex() + "\n", capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    got = FrameDecoder().feed(bytes.fromhex(proc.stdout.strip()))
    assert not [unpack_error(f.payload) for f in got if f.type == FrameType.ERROR]
    kinds = [(f.type.name, unpack_ack(f.payload).acked_seq if f.type == FrameType.ACK else None)
             for f in got]
    assert kinds == ([("PONG", None), ("ACK", 10), ("ACK", 11), ("ACK", 11), ("ACK", 10),
                      ("ACK", 12)] + [("TENSOR", None)] * 3 + [("STATS", None), ("ACK", 12),
                                                               ("PONG", None), ("ACK", 0),
                                                               ("ACK", 1), ("ACK", 2)]
                     + [("TENSOR", None)] * 3 + [("STATS", None)])
    for i, (x, b) in ((6, (x1, b1)), (15, (x2, b2))):
        want_out, want_total = demo_reference(x, b)
        out = np.frombuffer(got[i].payload + got[i + 1].payload, np.float32)
        np.testing.assert_allclose(out, want_out, rtol=1e-6)
        np.testing.assert_allclose(np.frombuffer(got[i + 2].payload, np.float32), want_total,
                                   rtol=1e-5)
    s1, s2 = unpack_stats(got[9].payload), unpack_stats(got[18].payload)
    assert (s1.inferences, s1.rx_duplicates) == (1, 2)
    assert (s2.inferences, s2.rx_duplicates, s2.run_status) == (2, 3, 0)


# --- a live PE: host port (Linux process) and lm3s6965 port (QEMU) ------------------------------


def _talk(serial_path: str) -> list[Stats]:
    import serial
    with serial.Serial(serial_path, 115200, timeout=0.05) as port:
        port.reset_input_buffer()
        link = HostSide(port)
        pong = link.ping()
        assert pong.pe_id == PE_ID and pong.input_bytes == (384, 16)
        assert pong.rx_window >= 1
        port.write(b"\x55garbage\xa5\x5a\x01")  # the PE must shrug this off
        stats = []
        for seed in (3, 4):
            x, b = inputs(seed)
            outs, st = link.infer([x.tobytes(), b.tobytes()], pong.rx_window)
            want_out, want_total = demo_reference(x, b)
            np.testing.assert_allclose(np.frombuffer(outs[0], np.float32), want_out, rtol=1e-6)
            np.testing.assert_allclose(np.frombuffer(outs[1], np.float32), want_total, rtol=1e-5)
            stats.append(st)
        assert [s.inferences for s in stats] == [1, 2]
        assert stats[1].rx_skipped_bytes > 0 or stats[1].rx_bad_frames > 0
        return stats


@needs_gcc
def test_host_port_process_over_pty(demo_app, tmp_path):
    srcs, incs = app_sources(demo_app)
    exe = tmp_path / "pe_host"
    cc(["gcc", *WARN, "-O2", *incs, *srcs, *HOST_PORT,
         "-lm", "-o", exe])
    proc = subprocess.Popen([exe], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        m = wait_for_line(proc, r"pemesh: link0 on (/dev/pts/\d+)\n", 10)
        stats = _talk(m.group(1).decode())
        assert stats[0].cycles > 0  # nanoseconds on the host port
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        stop_process(proc)


@pytest.fixture(scope="module")
def lm3s_firmware(demo_app, tmp_path_factory) -> Path:
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("needs arm-none-eabi-gcc")
    return build_lm3s(demo_app, tmp_path_factory.mktemp("fw"))


@needs_arm
def test_lm3s6965_image_layout(lm3s_firmware):
    nm = subprocess.run(["arm-none-eabi-nm", lm3s_firmware], capture_output=True, text=True,
                        check=True).stdout
    syms = {line.split()[2]: int(line.split()[0], 16) for line in nm.splitlines()
            if len(line.split()) == 3}
    assert syms["pemesh_lm3s_vectors"] == 0
    assert syms["pemesh_pe_config"] < 0x40000  # in flash
    assert syms["__pemesh_config_end"] - syms["__pemesh_config_start"] == 128
    assert 0x20000000 <= syms["__bss_end"] <= 0x20010000
    objdump = subprocess.run(["arm-none-eabi-objdump", "-h", lm3s_firmware], capture_output=True,
                             text=True, check=True).stdout
    assert ".pemesh_config" in objdump


@pytest.mark.qemu
@pytest.mark.timeout(120)
@needs_arm
@needs_qemu
def test_lm3s6965_on_qemu(lm3s_firmware):
    proc = subprocess.Popen(
        ["qemu-system-arm", "-M", "lm3s6965evb", "-display", "none", "-monitor", "none",
         "-serial", "pty", "-serial", "null", "-serial", "null", "-kernel", str(lm3s_firmware)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        m = wait_for_line(proc, r"char device redirected to (/dev/pts/\d+)", 20)
        stats = _talk(m.group(1).decode())
        assert all(s.cycles > 0 for s in stats)  # SysTick-based
    finally:
        stop_process(proc)
