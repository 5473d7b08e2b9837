"""Role STAGE of the C PE runtime (docs/CONTRACTS.md §6): one STAGE PE against scripted peers
on its two links (tests/fixtures/runtime_c/mesh_port.c), then a live two-PE pipeline joined on
link 1 by a tiny relay, as Linux processes (host port) and on two QEMU lm3s6965evb machines."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
from collections import deque
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from generator.wire import (FLAG_HOST_OUTPUTS, HOST_ID, Frame, FrameDecoder, FrameType,
                                 PongInfo, Stats, encode, pack_ready, tensor_frames, unpack_ack,
                                 unpack_error, unpack_pong, unpack_ready, unpack_stats,
                                 ready_count)
from generator.firmware.render import render_pe_app
from generator.types import AppSpec, Route
from tests.runtime_c_helpers import (FIXTURES, HOST_PORT, PE_ID, WARN, HostSide, app_sources,
                                     build_lm3s, cc, demo_app, demo_reference,  # noqa: F401
                                     demo_spec, inputs, needs_arm, needs_gcc, needs_qemu,
                                     stop_process, tensor_bytes, wait_for_line)


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
    cc(["gcc", *WARN, "-O1", "-g", "-fsanitize=address,undefined", *incs, *srcs,
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


def _kinds(frames: list[tuple[int, Frame]]) -> list[tuple]:
    return [(link, f.type.name, f.dst, f.stream) for link, f in frames]


@needs_gcc
def test_stage_routes_credits_and_seq_order(demo_app, tmp_path):
    root = demo_app.parent.parent
    exe = build_scripted_pe(root, stage_spec("../../stages/demo/model", A_ID, A_ROUTES),
                            tmp_path / "pe_a")
    runs = [inputs(s) for s in (11, 12, 13)]
    r1 = tensor_bytes(*runs[0], 0, dst=A_ID)      # seq 0, 1, 2
    segments = [
        (0, _from(HOST_ID, HOST_ID, FrameType.PING)),                          # 0
        (0, r1[0] + r1[0] + r1[2] + r1[1] + r1[2]),                            # 1: dup, gap
        (0, b"".join(tensor_bytes(*runs[1], 3, dst=A_ID))),                   # 2: run 2
        (0, b"".join(tensor_bytes(*runs[2], 6, dst=A_ID))),                   # 3: stalls
        (1, _from(9, A_ID, FrameType.READY, payload=pack_ready(0))              # 4: unknown PE
         + _from(B_ID, A_ID, FrameType.READY, payload=pack_ready(1))           #    wrong stream
         + _from(B_ID, 7, FrameType.TENSOR, payload=bytes(4))                  #    not for A
         + _from(B_ID, A_ID, FrameType.READY, payload=pack_ready(0, 0))       #    stale count
         + _from(B_ID, A_ID, FrameType.READY, payload=pack_ready(0, 1))),      #    credit for B
        (1, _from(C_ID, A_ID, FrameType.READY, payload=pack_ready(1, 1))),     # 5: credit for C
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
        counts = {ready_count(f.payload) for _, f in rest[:2]}     # tensors consumed so far
        assert len(counts) == 1 and counts.pop() >= 1
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
    # READY from an unknown PE / for the wrong stream / a frame for PE 7 / for the tensor A
    # already sent (count 0: B has had one): nothing; then B's credit (count 1) releases run
    # 2's output 0 to B only (C still has none: no run 3 yet)
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
    assert stats.ready_stale == 1 and stats.ready_resent == 0    # scripted time: no resends
    assert stats.tx_frames == sum(1 for e in events if e[0] == "W") - 1


#: PE B: input 0 ("x") from PE A's output 0 over the mesh link, input 1 ("bias") from the host;
#: both outputs to the host through flag bit 0 (no OUTPUT routes)
B_ROUTES = (Route(Route.SOURCE, 0, A_ID, 0), Route(Route.SOURCE, 1, HOST_ID, 1))


@needs_gcc
def test_stage_consumer_acks_on_the_arrival_link(demo_app, tmp_path):
    root = demo_app.parent.parent
    exe = build_scripted_pe(root, stage_spec("../../stages/demo/model", B_ID, B_ROUTES,
                                             flags=FLAG_HOST_OUTPUTS), tmp_path / "pe_b")
    x, b = inputs(21)
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
def test_stage_accepts_inputs_only_from_their_source(demo_app, tmp_path):
    """PE B's input 0 comes from PE A, input 1 from the host (B_ROUTES). TENSOR frames for an
    input from anyone else are ACKed (the link goes on), not stored, counted in STATS
    (rx_wrong_source) and reported to the host; any PE-to-PE rejection reaches the host."""
    root = demo_app.parent.parent
    exe = build_scripted_pe(root, stage_spec("../../stages/demo/model", B_ID, B_ROUTES,
                                             flags=FLAG_HOST_OUTPUTS), tmp_path / "pe_b")
    x, b = inputs(22)
    xs = [encode(f) for f in tensor_frames(x.tobytes(), src=A_ID, dst=B_ID, stream=0,
                                           first_seq=1)]
    junk = bytes([0xFF]) * 256            # would be NaN inputs if it were stored
    from_c = _from(C_ID, B_ID, FrameType.TENSOR, 0, junk, stream=0, chunk=0, nchunks=2)
    segments = [
        (1, _from(A_ID, B_ID, FrameType.TENSOR, 0, bytes(128), stream=0, chunk=1,
                  nchunks=2)),                                                # 0: EPROTO
        (1, xs[0] + xs[1]),                                                   # 1: x, in order
        (1, from_c + from_c),                                                 # 2: wrong PE, dup
        (0, _from(HOST_ID, B_ID, FrameType.TENSOR, 0, junk, stream=0, chunk=0,
                  nchunks=2)),                                                # 3: wrong: host
        (0, encode(tensor_frames(b.tobytes(), src=HOST_ID, dst=B_ID, stream=1,
                                 first_seq=1)[0])),                           # 4: run
    ]
    events = run_scripted(exe, segments)
    seen = {i: between(events, i) for i in range(len(segments))}

    def errors(frames):
        return [(link, f.dst, unpack_error(f.payload)) for link, f in frames
                if f.type == FrameType.ERROR]

    # 0: out of order from PE A: ERROR to A and the same ERROR to the host, then the ACK
    assert _kinds(seen[0]) == [(1, "ERROR", A_ID, 0), (0, "ERROR", HOST_ID, 0),
                               (1, "ACK", A_ID, 0)]
    (_, _, to_a), (_, _, to_host) = errors(seen[0])
    assert to_a == to_host and to_host.code == -errno.EPROTO
    assert to_host.message == ("TENSOR chunk out of order (from PE 1, stream 0, chunk 1/2, "
                               "seq 0)")
    assert [unpack_ack(f.payload).acked_seq for _, f in seen[1]] == [1, 2]
    # 2: PE C is not input 0's SOURCE: ERROR to C and to the host, ACK; its duplicate: ACK only
    assert _kinds(seen[2]) == [(1, "ERROR", C_ID, 0), (0, "ERROR", HOST_ID, 0),
                               (1, "ACK", C_ID, 0), (1, "ACK", C_ID, 0)]
    for _, _, err in errors(seen[2]):
        assert err.code == -errno.EPERM
        assert err.message == ("TENSOR from a PE that is not the SOURCE of this input "
                               "(from PE 4, stream 0, chunk 0/2, seq 0)")
    # 3: the host is not input 0's SOURCE either: one ERROR (the host is the sender), ACK
    assert _kinds(seen[3]) == [(0, "ERROR", HOST_ID, 0), (0, "ACK", HOST_ID, 0)]
    assert errors(seen[3])[0][2].message.endswith("(from the host, stream 0, chunk 0/2, seq 0)")
    # 4: x from A was kept intact: the run uses it
    frames = seen[4]
    assert _kinds(frames) == [(0, "ACK", HOST_ID, 1), (1, "READY", A_ID, 0),
                              (0, "READY", HOST_ID, 1), (0, "TENSOR", HOST_ID, 0),
                              (0, "TENSOR", HOST_ID, 0), (0, "TENSOR", HOST_ID, 1),
                              (0, "STATS", HOST_ID, 0)]
    want_out, _ = demo_reference(x, b)
    np.testing.assert_allclose(np.frombuffer(frames[3][1].payload + frames[4][1].payload,
                                             np.float32), want_out, rtol=1e-6)
    stats = unpack_stats(frames[-1][1].payload)
    assert (stats.inferences, stats.rx_wrong_source, stats.rx_duplicates, stats.rx_gaps,
            stats.rx_dropped) == (1, 2, 1, 0, 0)


@needs_gcc
def test_single_role_ignores_the_mesh_link(demo_app, tmp_path):
    exe = build_scripted_pe(demo_app.parent.parent, demo_spec("../../stages/demo/model"),
                            tmp_path / "pe_single")
    x, b = inputs(5)
    segments = [(1, _from(HOST_ID, PE_ID, FrameType.PING)),
                (0, b"".join(tensor_bytes(x, b, 40)))]
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
    import serial
    with serial.Serial(pty_a, 115200, timeout=0.05) as pa, \
            serial.Serial(pty_b, 115200, timeout=0.05) as pb:
        host_a, host_b = StageHost(pa, A_ID), StageHost(pb, B_ID)
        assert host_a.ping().pe_id == A_ID and host_b.ping().pe_id == B_ID
        stats = []
        for run, seed in enumerate((31, 32, 33)):
            (xa, ba), (_, bb) = inputs(seed), inputs(seed + 100)
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
        cc(["gcc", *WARN, "-O2", *incs, *srcs,
             *HOST_PORT, "-lm", "-o", exes[spec.pe_id]])
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
            m = wait_for_line(proc, r"pemesh: link0 on (/dev/pts/\d+)\n"
                                     r"pemesh: link1 on unix:", 10)
            ptys.append(m.group(1).decode())
        stats = _pipeline_talk(*ptys)
        assert [s.inferences for s in stats] == [1, 2, 3]
        assert stats[-1].ready_sent == 6 and stats[-1].rx_gaps == 0
        kinds = [(f.src, f.dst, f.type.name) for f in relay.forwarded]
        assert kinds.count((A_ID, B_ID, "TENSOR")) == 6   # 3 runs x 2 chunks
        readies = kinds.count((B_ID, A_ID, "READY"))   # one per run, plus any B resent idle
        assert readies >= 3 and readies - 3 >= stats[-1].ready_resent
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=5) == 0
    finally:
        for proc in procs:
            stop_process(proc)
        relay.close()


@pytest.mark.qemu
@pytest.mark.timeout(180)
@needs_arm
@needs_qemu
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
            m = wait_for_line(proc, r"char device redirected to (/dev/pts/\d+)", 20)
            ptys.append(m.group(1).decode())
        stats = _pipeline_talk(*ptys)
        assert [s.inferences for s in stats] == [1, 2, 3]
        assert all(s.cycles > 0 for s in stats)
        kinds = [(f.src, f.dst, f.type.name) for f in relay.forwarded]
        assert kinds.count((A_ID, B_ID, "TENSOR")) == 6
        readies = kinds.count((B_ID, A_ID, "READY"))   # one per run, plus any B resent idle
        assert readies >= 3 and readies - 3 >= stats[-1].ready_resent
    finally:
        for proc in procs:
            stop_process(proc)
        relay.close()
