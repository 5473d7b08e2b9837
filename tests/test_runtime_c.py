"""The hand-written PE runtime in C (zephyr_app/): compiled with host gcc and with
arm-none-eabi-gcc (-Wall -Wextra -Werror), run against the shared wire vectors, driven as a
PE through an in-memory port, as a Linux process (host port, over its pty), and on QEMU's
lm3s6965evb (bare-metal port)."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections import deque
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from generator.messaging import (
    FLAG_HOST_OUTPUTS, HOST_ID, MAX_PAYLOAD, Frame, FrameDecoder, FrameType, PongInfo, Stats,
    encode, pack_ready, tensor_frames, unpack_ack, unpack_error, unpack_pong, unpack_ready,
    unpack_stats)
from generator.render import render_pe_app
from generator.spec import AppSpec, Route, TensorSpec

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = ROOT / "zephyr_app"
FIXTURES = Path(__file__).parent / "fixtures"
VECTORS = json.loads((Path(__file__).parent / "vectors" / "frames.json").read_text())
CORE = sorted((RUNTIME / "src").glob("*.c"))
WARN = ["-std=c11", "-Wall", "-Wextra", "-Werror"]
ARM = ["arm-none-eabi-gcc", "-mcpu=cortex-m3", "-mthumb"]
PE_ID = 3

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
needs_arm = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None,
                               reason="needs arm-none-eabi-gcc")


def _cc(args: list, timeout: float = 120) -> None:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, args))}\n{proc.stderr}"


def demo_spec(model_dir: str) -> AppSpec:
    return AppSpec(
        pe_name="pe3", pe_id=PE_ID, board="qemu_cortex_m3", stage="demo",
        inputs=(TensorSpec("x", (96,), "float32"), TensorSpec("bias", (4,), "float32")),
        outputs=(TensorSpec("out", (96,), "float32"), TensorSpec("total", (1,), "float32")),
        workspace_size=384, model_dir=model_dir)


def demo_reference(x: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    out = np.maximum(2 * x + np.tile(bias, 24), 0).astype(np.float32)
    return out, np.array([out.sum(dtype=np.float32)], dtype=np.float32)


@pytest.fixture(scope="module")
def demo_app(tmp_path_factory) -> Path:
    """The demo PE app rendered from an AppSpec, with a copy of the demo model beside it."""
    root = tmp_path_factory.mktemp("demo_app")
    shutil.copytree(FIXTURES / "demo_model", root / "stages" / "demo" / "model")
    app = root / "pes" / "pe3"
    render_pe_app(demo_spec("../../stages/demo/model"), app)
    return app


def app_sources(app: Path) -> tuple[list[Path], list[str]]:
    spec = json.loads((app / "pemesh_app.json").read_text())
    model = app / spec["model_dir"] / "codegen" / "host"
    srcs = sorted((app / "src").glob("*.c")) + sorted((model / "src").glob("*.c")) + CORE
    incs = [f"-I{app / 'src'}", f"-I{model / 'include'}", f"-I{RUNTIME / 'include'}"]
    return srcs, incs


# --- compile checks ---------------------------------------------------------------------------


@needs_gcc
def test_core_and_host_port_compile_with_gcc(tmp_path):
    for src in CORE + sorted((RUNTIME / "ports" / "host").glob("*.c")):
        _cc(["gcc", *WARN, "-O2", f"-I{RUNTIME / 'include'}", "-c", src, "-o", tmp_path / "x.o"])


@needs_arm
def test_core_and_lm3s6965_port_compile_with_arm_gcc(tmp_path):
    for src in CORE + sorted((RUNTIME / "ports" / "lm3s6965").glob("*.c")):
        _cc([*ARM, *WARN, "-O2", f"-I{RUNTIME / 'include'}", "-c", src, "-o", tmp_path / "x.o"])


# --- wire vectors -----------------------------------------------------------------------------


@needs_gcc
def test_c_codec_matches_vectors(tmp_path):
    exe = tmp_path / "vectors"
    _cc(["gcc", *WARN, "-O1", "-fsanitize=address,undefined", f"-I{RUNTIME / 'include'}",
         FIXTURES / "runtime_c" / "vectors_main.c", RUNTIME / "src" / "frame.c",
         RUNTIME / "src" / "crc32.c", RUNTIME / "src" / "config.c", "-o", exe])
    lines = [f"D {c['hex']}" for c in VECTORS["decode"]]
    lines += [f"E {e['type']} {e['src']} {e['dst']} {e['stream']} {e['seq']} {e['chunk']} "
              f"{e['nchunks']} {e['payload'] or '-'}" for e in VECTORS["encode"]]
    lines += ["E 10 0 0 0 0 0 1 -", "E 1 0 0 0 0 0 0 -"]  # bad type, nchunks 0 → -EINVAL
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
    assert out.popleft() == f"H ERR {-errno.EINVAL}"
    assert out.popleft() == f"H ERR {-errno.EINVAL}"
    for cfg in VECTORS["pe_config"]:
        assert out.popleft() == (f"R 0 {cfg['pe_id']} {cfg['role']} {len(cfg['routes'])} "
                                 f"{cfg['flags']}")
        for route in cfg["routes"]:
            assert out.popleft() == "r " + " ".join(map(str, route))
    assert out.popleft() == f"R {-errno.EINVAL} 5 1 5 1"
    assert [out.popleft()[0] for _ in range(5)] == ["r"] * 5
    assert not out


# --- the PE main loop with an in-memory port ----------------------------------------------------


def _host(ftype: FrameType, seq: int, payload: bytes = b"", **kw) -> bytes:
    return encode(Frame(ftype, HOST_ID, kw.pop("dst", PE_ID), seq=seq, payload=payload, **kw))


def _inputs(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(96).astype(np.float32),
            rng.standard_normal(4).astype(np.float32))


def _tensor_bytes(x: np.ndarray, bias: np.ndarray, first_seq: int) -> list[bytes]:
    frames = tensor_frames(x.tobytes(), src=HOST_ID, dst=PE_ID, stream=0, first_seq=first_seq)
    frames += tensor_frames(bias.tobytes(), src=HOST_ID, dst=PE_ID, stream=1,
                            first_seq=first_seq + len(frames))
    return [encode(f) for f in frames]


@needs_gcc
def test_pe_main_loop_in_memory(demo_app, tmp_path):
    srcs, incs = app_sources(demo_app)
    exe = tmp_path / "pe"
    _cc(["gcc", *WARN, "-O1", "-g", "-fsanitize=address,undefined", *incs, *srcs,
         FIXTURES / "runtime_c" / "test_port.c", "-lm", "-o", exe])

    x1, b1 = _inputs(1)
    x2, b2 = _inputs(2)
    t1 = _tensor_bytes(x1, b1, 10)
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
               + b"".join(_tensor_bytes(x2, b2, 30)))
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


# --- a live PE: host port (Linux process) and lm3s6965 port (QEMU) ------------------------------


class HostSide:
    """The host end of link 0, over a pyserial port (self-contained; generator/hostlink.py is the
    product's version)."""

    def __init__(self, port, pe_id: int = HOST_ID):
        self.port = port
        self.dec = FrameDecoder()
        self.queue: deque[Frame] = deque()
        self.seq = 0
        self.pe_id = pe_id

    def send(self, ftype: FrameType, payload: bytes = b"", **kw) -> None:
        self.port.write(encode(Frame(ftype, HOST_ID, self.pe_id, seq=self.seq, payload=payload,
                                     **kw)))
        self.seq = (self.seq + 1) & 0xFFFF

    def recv(self, timeout: float = 20.0) -> Frame:
        deadline = time.monotonic() + timeout
        while not self.queue:
            if time.monotonic() > deadline:
                raise TimeoutError("no frame from the PE")
            self.queue.extend(self.dec.feed(self.port.read(4096)))
        frame = self.queue.popleft()
        if frame.type == FrameType.ERROR:
            raise AssertionError(f"PE error: {unpack_error(frame.payload)}")
        return frame

    def ping(self) -> PongInfo:
        self.send(FrameType.PING)
        while True:
            f = self.recv()
            if f.type == FrameType.PONG:
                self.pe_id = f.src
                return unpack_pong(f.payload)

    def infer(self, inputs: list[bytes], window: int) -> tuple[list[bytes], Stats]:
        in_flight = 0
        outputs: dict[int, list[bytes]] = {}
        for stream, data in enumerate(inputs):
            for f in tensor_frames(data, src=HOST_ID, dst=self.pe_id, stream=stream,
                                   first_seq=self.seq):
                while in_flight >= window:
                    if self.recv().type == FrameType.ACK:
                        in_flight -= 1
                self.send(FrameType.TENSOR, f.payload, stream=stream, chunk=f.chunk,
                          nchunks=f.nchunks)
                in_flight += 1
        while True:
            f = self.recv()
            if f.type == FrameType.TENSOR:
                outputs.setdefault(f.stream, []).append(f.payload)
            elif f.type == FrameType.STATS:
                return [b"".join(outputs[i]) for i in sorted(outputs)], unpack_stats(f.payload)


def _talk(serial_path: str) -> list[Stats]:
    serial = pytest.importorskip("serial")
    with serial.Serial(serial_path, 115200, timeout=0.05) as port:
        port.reset_input_buffer()
        link = HostSide(port)
        pong = link.ping()
        assert pong.pe_id == PE_ID and pong.input_bytes == (384, 16)
        assert pong.rx_window >= 1
        port.write(b"\x55garbage\xa5\x5a\x01")  # the PE must shrug this off
        stats = []
        for seed in (3, 4):
            x, b = _inputs(seed)
            outs, st = link.infer([x.tobytes(), b.tobytes()], pong.rx_window)
            want_out, want_total = demo_reference(x, b)
            np.testing.assert_allclose(np.frombuffer(outs[0], np.float32), want_out, rtol=1e-6)
            np.testing.assert_allclose(np.frombuffer(outs[1], np.float32), want_total, rtol=1e-5)
            stats.append(st)
        assert [s.inferences for s in stats] == [1, 2]
        assert stats[1].rx_skipped_bytes > 0 or stats[1].rx_bad_frames > 0
        return stats


def _wait_for_line(proc: subprocess.Popen, pattern: str, timeout: float) -> re.Match:
    deadline = time.monotonic() + timeout
    seen = []
    os.set_blocking(proc.stdout.fileno(), False)
    buf = b""
    while time.monotonic() < deadline:
        chunk = proc.stdout.read() or b""
        buf += chunk
        m = re.search(pattern.encode(), buf)
        if m:
            return m
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    seen.append(buf.decode(errors="replace"))
    raise AssertionError(f"no '{pattern}' from {proc.args[0]}: {seen}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@needs_gcc
def test_host_port_process_over_pty(demo_app, tmp_path):
    srcs, incs = app_sources(demo_app)
    exe = tmp_path / "pe_host"
    _cc(["gcc", *WARN, "-O2", *incs, *srcs, *sorted((RUNTIME / "ports" / "host").glob("*.c")),
         "-lm", "-o", exe])
    proc = subprocess.Popen([exe], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        m = _wait_for_line(proc, r"pemesh: link0 on (/dev/pts/\d+)\n", 10)
        stats = _talk(m.group(1).decode())
        assert stats[0].cycles > 0  # nanoseconds on the host port
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def lm3s_firmware(demo_app, tmp_path_factory) -> Path:
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("needs arm-none-eabi-gcc")
    return build_lm3s(demo_app, tmp_path_factory.mktemp("fw"))


def build_lm3s(app: Path, out: Path) -> Path:
    """Build one PE app with the lm3s6965 port (as `pemesh build --backend baremetal` does)."""
    port_dir = RUNTIME / "ports" / "lm3s6965"
    flags = json.loads((port_dir / "port.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    srcs, incs = app_sources(app)
    objs = []
    for i, src in enumerate(srcs + sorted(port_dir.glob("*.c"))):
        obj = out / f"{i}_{src.stem}.o"
        _cc([flags["cc"], *flags["cflags"], "-Wall", "-Wextra", "-Werror", *incs, "-c", src,
             "-o", obj])
        objs.append(obj)
    elf = out / "fw.elf"
    ldflags = [a if a != "lm3s6965.ld" else str(port_dir / a) for a in flags["ldflags"]]
    _cc([flags["cc"], *ldflags, *objs, *flags["libs"], "-Wl,-Map," + str(out / "fw.map"),
         "-o", elf])
    return elf


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
@pytest.mark.skipif(shutil.which("qemu-system-arm") is None, reason="needs qemu-system-arm")
def test_lm3s6965_on_qemu(lm3s_firmware):
    proc = subprocess.Popen(
        ["qemu-system-arm", "-M", "lm3s6965evb", "-display", "none", "-monitor", "none",
         "-serial", "pty", "-serial", "null", "-serial", "null", "-kernel", str(lm3s_firmware)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        m = _wait_for_line(proc, r"char device redirected to (/dev/pts/\d+)", 20)
        stats = _talk(m.group(1).decode())
        assert all(s.cycles > 0 for s in stats)  # SysTick-based
    finally:
        _stop(proc)


# --- role STAGE (docs/CONTRACTS.md §6): one PE under test, scripted peers ------------------------

A_ID, B_ID, C_ID = 1, 2, 4  # the PE under test (a demo stage) and two consumers of its output 0


def stage_spec(model_dir: str, pe_id: int, routes: tuple[Route, ...], flags: int = 0) -> AppSpec:
    return replace(demo_spec(model_dir), pe_name=f"pe{pe_id}", pe_id=pe_id, role="stage",
                   routes=routes, flags=flags)


#: PE A: x and bias from the host; output 0 to PEs B and C (both as their input 0... and 1),
#: output 1 ("total") to the host
A_ROUTES = (Route(Route.OUTPUT, 0, B_ID, 0), Route(Route.OUTPUT, 0, C_ID, 1),
            Route(Route.OUTPUT, 1, HOST_ID, 1),
            Route(Route.SOURCE, 0, HOST_ID, 0), Route(Route.SOURCE, 1, HOST_ID, 1))


def build_scripted_pe(root: Path, spec: AppSpec, out: Path) -> Path:
    app = root / "pes" / spec.pe_name
    render_pe_app(spec, app)
    srcs, incs = app_sources(app)
    _cc(["gcc", *WARN, "-O1", "-g", "-fsanitize=address,undefined", *incs, *srcs,
         FIXTURES / "runtime_c" / "mesh_port.c", "-lm", "-o", out])
    return out


def run_scripted(exe: Path, segments: list[tuple[int, bytes]]) -> list[tuple]:
    """Run a PE on scripted link segments; events: ("W", link, Frame) / ("M"|"S", index)."""
    script = "".join(f"L {link} {data.hex()}\n" for link, data in segments)
    proc = subprocess.run([exe], input=script, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    decoders = {0: FrameDecoder(), 1: FrameDecoder()}
    events: list[tuple] = []
    for line in proc.stdout.splitlines():
        tag, arg, *rest = line.split(" ")
        if tag == "W":
            frames = decoders[int(arg)].feed(bytes.fromhex(rest[0]))
            events += [("W", int(arg), f) for f in frames]
        else:
            events.append((tag, int(arg)))
    assert all(d.pending == 0 and d.bad_frames == 0 for d in decoders.values())
    return events


def between(events: list[tuple], index: int) -> list[tuple[int, Frame]]:
    """The frames the PE wrote while handling segment ``index``."""
    marks = {e[1]: i for i, e in enumerate(events) if e[0] in ("M", "S")}
    start = 0 if index == 0 else marks[index - 1] + 1
    end = marks[index]
    return [(e[1], e[2]) for e in events[start:end]]


def _from(src: int, dst: int, ftype: FrameType, seq: int = 0, payload: bytes = b"",
          **kw) -> bytes:
    return encode(Frame(ftype, src, dst, seq=seq, payload=payload, **kw))


def _inputs_from_host(x: np.ndarray, b: np.ndarray, dst: int, first_seq: int) -> list[bytes]:
    frames = tensor_frames(x.tobytes(), src=HOST_ID, dst=dst, stream=0, first_seq=first_seq)
    frames += tensor_frames(b.tobytes(), src=HOST_ID, dst=dst, stream=1,
                            first_seq=first_seq + len(frames))
    return [encode(f) for f in frames]


def _kinds(frames: list[tuple[int, Frame]]) -> list[tuple]:
    return [(link, f.type.name, f.dst, f.stream) for link, f in frames]


@needs_gcc
def test_stage_routes_credits_and_seq_order(demo_app, tmp_path):
    root = demo_app.parent.parent
    exe = build_scripted_pe(root, stage_spec("../../stages/demo/model", A_ID, A_ROUTES),
                            tmp_path / "pe_a")
    runs = [_inputs(s) for s in (11, 12, 13)]
    r1 = _inputs_from_host(*runs[0], A_ID, 0)      # seq 0, 1, 2
    segments = [
        (0, _from(HOST_ID, HOST_ID, FrameType.PING)),                          # 0
        (0, r1[0] + r1[0] + r1[2] + r1[1] + r1[2]),                            # 1: dup, gap
        (0, b"".join(_inputs_from_host(*runs[1], A_ID, 3))),                   # 2: run 2
        (0, b"".join(_inputs_from_host(*runs[2], A_ID, 6))),                   # 3: stalls
        (1, _from(9, A_ID, FrameType.READY, payload=pack_ready(0))              # 4: unknown PE
         + _from(B_ID, A_ID, FrameType.READY, payload=pack_ready(1))           #    wrong stream
         + _from(B_ID, 7, FrameType.TENSOR, payload=bytes(4))                  #    not for A
         + _from(B_ID, A_ID, FrameType.READY, payload=pack_ready(0))),         #    credit for B
        (1, _from(C_ID, A_ID, FrameType.READY, payload=pack_ready(1))),        # 5: credit for C
        (0, _from(HOST_ID, A_ID, FrameType.STATS)),                            # 6: STATS request
    ]
    events = run_scripted(exe, segments)
    assert [e for e in events if e[0] != "W"] == [("M", i) for i in range(len(segments))]
    seen = {i: between(events, i) for i in range(len(segments))}

    pong = seen[0]
    assert _kinds(pong) == [(0, "PONG", HOST_ID, 0)]
    assert unpack_pong(pong[0][1].payload).pe_id == A_ID

    def acks(frames):
        return [unpack_ack(f.payload).acked_seq for link, f in frames
                if f.type == FrameType.ACK and link == 0 and f.dst == HOST_ID]

    def run_outputs(frames, x, b, to):
        """Check one run's frames: READY x2 to the host, then output 0 to each of `to`,
        total to the host, STATS; returns the TENSOR seqs per destination."""
        want_out, want_total = demo_reference(x, b)
        rest = [(link, f) for link, f in frames if f.type != FrameType.ACK]
        want = [(0, "READY", HOST_ID, 0), (0, "READY", HOST_ID, 1)]
        for dst, stream in to:
            want += [(1, "TENSOR", dst, stream)] * 2
        want += [(0, "TENSOR", HOST_ID, 1), (0, "STATS", HOST_ID, 0)]
        assert _kinds(rest) == want
        assert [unpack_ready(f.payload) for _, f in rest[:2]] == [0, 1]
        seqs = {}
        for i, (dst, _) in enumerate(to):
            chunks = [f for _, f in rest[2 + 2 * i:4 + 2 * i]]
            np.testing.assert_allclose(
                np.frombuffer(b"".join(f.payload for f in chunks), np.float32), want_out,
                rtol=1e-6)
            assert all(f.src == A_ID for f in chunks)
            seqs[dst] = [f.seq for f in chunks]
        total = rest[-2][1]
        np.testing.assert_allclose(np.frombuffer(total.payload, np.float32), want_total,
                                   rtol=1e-5)
        return seqs, total.seq, unpack_stats(rest[-1][1].payload)

    # run 1: duplicate of seq 0 re-ACKed, seq 2 before seq 1 dropped without ACK
    assert acks(seen[1]) == [0, 0, 1, 2]
    seqs, total_seq, stats = run_outputs(seen[1], *runs[0], to=[(B_ID, 0), (C_ID, 1)])
    assert seqs == {B_ID: [0, 1], C_ID: [0, 1]} and total_seq == 0
    assert (stats.inferences, stats.rx_duplicates, stats.rx_gaps) == (1, 1, 1)
    # run 2: the outputs were free, so it runs; output 0 waits for B's and C's READY
    assert acks(seen[2]) == [3, 4, 5]
    _, total_seq, stats = run_outputs(seen[2], *runs[1], to=[])
    assert total_seq == 1 and stats.inferences == 2
    # run 3's inputs arrive, are ACKed, but the PE does not run (its outputs are busy)
    assert acks(seen[3]) == [6, 7, 8]
    assert _kinds(seen[3]) == [(0, "ACK", HOST_ID, s) for s in (0, 0, 1)]
    # READY from an unknown PE / for the wrong stream / a frame for PE 7: nothing; then B's
    # credit releases run 2's output 0 to B only (C still has none: no run 3 yet)
    out2, _ = demo_reference(*runs[1])
    assert _kinds(seen[4]) == [(1, "TENSOR", B_ID, 0)] * 2
    assert [f.seq for _, f in seen[4]] == [2, 3]
    np.testing.assert_allclose(np.frombuffer(b"".join(f.payload for _, f in seen[4]),
                                             np.float32), out2, rtol=1e-6)
    # C's credit: run 2's output 0 to C, then run 3 at last
    frames = seen[5]
    assert _kinds(frames[:2]) == [(1, "TENSOR", C_ID, 1)] * 2
    assert [f.seq for _, f in frames[:2]] == [2, 3]
    _, total_seq, stats = run_outputs(frames[2:], *runs[2], to=[])
    assert total_seq == 2 and stats.inferences == 3
    # the STATS request
    assert _kinds(seen[6]) == [(0, "STATS", HOST_ID, 0)]
    stats = unpack_stats(seen[6][0][1].payload)
    assert (stats.inferences, stats.rx_duplicates, stats.rx_gaps, stats.ready_sent,
            stats.ready_received, stats.credit_stalls, stats.rx_dropped) == (3, 1, 1, 6, 2, 1, 3)
    assert stats.tx_frames == sum(1 for e in events if e[0] == "W") - 1


#: PE B: input 0 ("x") from PE A's output 0 over the mesh link, input 1 ("bias") from the host;
#: both outputs to the host through flag bit 0 (no OUTPUT routes)
B_ROUTES = (Route(Route.SOURCE, 0, A_ID, 0), Route(Route.SOURCE, 1, HOST_ID, 1))


@needs_gcc
def test_stage_consumer_acks_on_the_arrival_link(demo_app, tmp_path):
    root = demo_app.parent.parent
    exe = build_scripted_pe(root, stage_spec("../../stages/demo/model", B_ID, B_ROUTES,
                                             flags=FLAG_HOST_OUTPUTS), tmp_path / "pe_b")
    x, b = _inputs(21)
    xs = [encode(f) for f in tensor_frames(x.tobytes(), src=A_ID, dst=B_ID, stream=0)]
    bias = encode(tensor_frames(b.tobytes(), src=HOST_ID, dst=B_ID, stream=1)[0])
    segments = [(1, xs[1]),                   # 0: a gap (seq 1 before 0): dropped, no ACK
                (1, xs[0] + xs[1] + xs[0]),   # 1: in order, then a duplicate
                (0, bias)]                    # 2: complete: run
    events = run_scripted(exe, segments)
    seen = {i: between(events, i) for i in range(len(segments))}
    assert seen[0] == []
    assert _kinds(seen[1]) == [(1, "ACK", A_ID, 0)] * 3
    assert [unpack_ack(f.payload).acked_seq for _, f in seen[1]] == [0, 1, 0]
    frames = seen[2]
    assert _kinds(frames) == [(0, "ACK", HOST_ID, 1), (1, "READY", A_ID, 0),
                              (0, "READY", HOST_ID, 1), (0, "TENSOR", HOST_ID, 0),
                              (0, "TENSOR", HOST_ID, 0), (0, "TENSOR", HOST_ID, 1),
                              (0, "STATS", HOST_ID, 0)]
    want_out, want_total = demo_reference(x, b)
    np.testing.assert_allclose(np.frombuffer(frames[3][1].payload + frames[4][1].payload,
                                             np.float32), want_out, rtol=1e-6)
    assert [f.seq for _, f in frames[3:6]] == [0, 1, 2]  # per (B, host) pair
    stats = unpack_stats(frames[-1][1].payload)
    assert (stats.inferences, stats.rx_gaps, stats.rx_duplicates, stats.ready_sent) == (1, 1, 1, 2)


@needs_gcc
def test_single_role_ignores_the_mesh_link(demo_app, tmp_path):
    exe = build_scripted_pe(demo_app.parent.parent, demo_spec("../../stages/demo/model"),
                            tmp_path / "pe_single")
    x, b = _inputs(5)
    segments = [(1, _from(HOST_ID, PE_ID, FrameType.PING)),
                (0, b"".join(_tensor_bytes(x, b, 40)))]
    events = run_scripted(exe, segments)
    assert events[0] == ("S", 0)
    frames = between(events, 1)
    assert all(link == 0 for link, _ in frames)
    assert [f.type.name for _, f in frames] == ["ACK"] * 3 + ["TENSOR"] * 3 + ["STATS"]
    assert [f.seq for _, f in frames] == list(range(7))  # one counter for all frames


# --- live two-PE pipeline: PE A → PE B over link 1 through a tiny relay (a stand-in fabric) -----

LIVE_A = stage_spec("../../stages/demo/model", A_ID,
                    (Route(Route.OUTPUT, 0, B_ID, 0),
                     Route(Route.SOURCE, 0, HOST_ID, 0), Route(Route.SOURCE, 1, HOST_ID, 1)))
LIVE_B = stage_spec("../../stages/demo/model", B_ID, B_ROUTES, flags=FLAG_HOST_OUTPUTS)


class Relay:
    """Listens on one unix socket per PE, decodes every frame and forwards it to the PE named
    by its dst; ACKs are link-level and consumed (CONTRACTS §6). No loss, so no resending."""

    def __init__(self, paths: dict[int, Path]):
        import socket
        import threading
        self.listeners = {}
        for pe, path in paths.items():
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(str(path))
            s.listen(1)
            self.listeners[pe] = s
        self.conns: dict = {}
        self.forwarded: list[Frame] = []
        self.stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        import select
        decoders = {pe: FrameDecoder() for pe in self.listeners}
        while not self.stop:
            socks = list(self.listeners.values()) + list(self.conns.values())
            ready, _, _ = select.select(socks, [], [], 0.1)
            for s in ready:
                pe = next((p for p, l in self.listeners.items() if l is s), None)
                if pe is not None:
                    self.conns[pe] = s.accept()[0]
                    continue
                pe = next((p for p, c in self.conns.items() if c is s), None)
                try:
                    data = s.recv(4096) if pe is not None else b""
                    for f in decoders[pe].feed(data) if data else ():
                        if f.type != FrameType.ACK and f.dst in self.conns:
                            self.forwarded.append(f)
                            self.conns[f.dst].sendall(encode(f))
                except OSError:  # a PE went away (the test is ending)
                    data = b""
                if not data and pe is not None:
                    del self.conns[pe]

    def close(self) -> None:
        self.stop = True
        self.thread.join(timeout=5)
        for s in [*self.listeners.values(), *self.conns.values()]:
            s.close()


class StageHost:
    """The host end of one STAGE PE's link 0: TENSOR seq per (host, PE) from 0 after PING."""

    def __init__(self, port, pe_id: int):
        self.link = HostSide(port, pe_id)
        self.tensor_seq = 0
        self.readies: deque[int] = deque()
        self.frames: deque[Frame] = deque()

    def ping(self) -> PongInfo:
        pong = self.link.ping()
        self.tensor_seq = 0
        return pong

    def recv(self, timeout: float = 20.0) -> Frame:
        f = self.link.recv(timeout)
        if f.type == FrameType.READY:
            self.readies.append(unpack_ready(f.payload))
        return f

    def send_input(self, stream: int, data: bytes) -> None:
        for f in tensor_frames(data, src=HOST_ID, dst=self.link.pe_id, stream=stream,
                               first_seq=self.tensor_seq):
            self.link.port.write(encode(f))
            self.tensor_seq += 1
            while self.recv().type != FrameType.ACK:  # window 1 keeps the test simple
                pass

    def wait_ready(self, stream: int) -> None:
        while stream not in self.readies:
            self.recv()
        self.readies.remove(stream)


def _pipeline_talk(pty_a: str, pty_b: str) -> list[Stats]:
    serial = pytest.importorskip("serial")
    with serial.Serial(pty_a, 115200, timeout=0.05) as pa, \
            serial.Serial(pty_b, 115200, timeout=0.05) as pb:
        host_a, host_b = StageHost(pa, A_ID), StageHost(pb, B_ID)
        assert host_a.ping().pe_id == A_ID and host_b.ping().pe_id == B_ID
        stats = []
        for run, seed in enumerate((31, 32, 33)):
            (xa, ba), (_, bb) = _inputs(seed), _inputs(seed + 100)
            if run > 0:  # the credits for the host's inputs come back as READY
                for stream in (0, 1):
                    host_a.wait_ready(stream)
                host_b.wait_ready(1)
            host_a.send_input(0, xa.tobytes())
            host_a.send_input(1, ba.tobytes())
            host_b.send_input(1, bb.tobytes())
            outputs: dict[int, list[bytes]] = {}
            while True:
                f = host_b.recv()
                if f.type == FrameType.TENSOR:
                    outputs.setdefault(f.stream, []).append(f.payload)
                elif f.type == FrameType.STATS:
                    stats.append(unpack_stats(f.payload))
                    break
            mid, _ = demo_reference(xa, ba)
            want_out, want_total = demo_reference(mid, bb)
            np.testing.assert_allclose(np.frombuffer(b"".join(outputs[0]), np.float32),
                                       want_out, rtol=1e-5)
            np.testing.assert_allclose(np.frombuffer(b"".join(outputs[1]), np.float32),
                                       want_total, rtol=1e-4)
        return stats


@pytest.fixture(scope="module")
def pipeline_root(demo_app) -> Path:
    root = demo_app.parent.parent
    for spec in (LIVE_A, LIVE_B):
        render_pe_app(spec, root / "pes" / spec.pe_name)
    return root


@needs_gcc
@pytest.mark.timeout(120)
def test_two_host_pes_pipeline_over_unix_sockets(pipeline_root, tmp_path):
    exes = {}
    for spec in (LIVE_A, LIVE_B):
        srcs, incs = app_sources(pipeline_root / "pes" / spec.pe_name)
        exes[spec.pe_id] = tmp_path / f"pe{spec.pe_id}"
        _cc(["gcc", *WARN, "-O2", *incs, *srcs,
             *sorted((RUNTIME / "ports" / "host").glob("*.c")), "-lm", "-o", exes[spec.pe_id]])
    socks = {pe: tmp_path / f"noc{pe}.sock" for pe in exes}
    relay = Relay(socks)
    procs = []
    try:
        # PE A gets its socket on the command line, PE B through the environment
        procs.append(subprocess.Popen([exes[A_ID], "--link1", f"unix:{socks[A_ID]}"],
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
        procs.append(subprocess.Popen([exes[B_ID]], stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT,
                                      env={**os.environ, "PEMESH_LINK1": f"unix:{socks[B_ID]}"}))
        ptys = []
        for proc in procs:
            m = _wait_for_line(proc, r"pemesh: link0 on (/dev/pts/\d+)\n"
                                     r"pemesh: link1 on unix:", 10)
            ptys.append(m.group(1).decode())
        stats = _pipeline_talk(*ptys)
        assert [s.inferences for s in stats] == [1, 2, 3]
        assert stats[-1].ready_sent == 6 and stats[-1].rx_gaps == 0
        kinds = [(f.src, f.dst, f.type.name) for f in relay.forwarded]
        assert kinds.count((A_ID, B_ID, "TENSOR")) == 6   # 3 runs x 2 chunks
        assert kinds.count((B_ID, A_ID, "READY")) == 3
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=5) == 0
    finally:
        for proc in procs:
            _stop(proc)
        relay.close()


@pytest.mark.qemu
@pytest.mark.timeout(180)
@needs_arm
@pytest.mark.skipif(shutil.which("qemu-system-arm") is None, reason="needs qemu-system-arm")
def test_two_lm3s6965_pes_pipeline_on_qemu(pipeline_root, tmp_path):
    """The same pipeline on two QEMU lm3s6965evb machines: link 1 is UART1 (the second
    -serial), connected to the relay as a unix-socket chardev."""
    images = {spec.pe_id: build_lm3s(pipeline_root / "pes" / spec.pe_name,
                                     tmp_path / spec.pe_name) for spec in (LIVE_A, LIVE_B)}
    socks = {pe: tmp_path / f"noc{pe}.sock" for pe in images}
    relay = Relay(socks)
    procs = []
    try:
        ptys = []
        for pe, image in images.items():
            proc = subprocess.Popen(
                ["qemu-system-arm", "-M", "lm3s6965evb", "-display", "none", "-monitor", "none",
                 "-serial", "pty", "-chardev", f"socket,id=noc,path={socks[pe]}",
                 "-serial", "chardev:noc", "-serial", "null", "-kernel", str(image)],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            procs.append(proc)
            m = _wait_for_line(proc, r"char device redirected to (/dev/pts/\d+)", 20)
            ptys.append(m.group(1).decode())
        stats = _pipeline_talk(*ptys)
        assert [s.inferences for s in stats] == [1, 2, 3]
        assert all(s.cycles > 0 for s in stats)
        kinds = [(f.src, f.dst, f.type.name) for f in relay.forwarded]
        assert kinds.count((A_ID, B_ID, "TENSOR")) == 6
        assert kinds.count((B_ID, A_ID, "READY")) == 3
    finally:
        for proc in procs:
            _stop(proc)
        relay.close()
