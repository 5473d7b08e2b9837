"""HostLink protocol tests against a fake PE (a test peer speaking CONTRACTS §1 over a socketpair
or a pty). The real PE runtime is exercised end to end in test_run.py."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time

import numpy as np
import pytest
import serial

from generator.errors import RunError, UsageError
from generator.mesh.hostlink import HostLink
from generator.wire import (HOST_ID, Ack, ErrorInfo, Frame, FrameDecoder, FrameType, PongInfo,
                                 Stats, chunk_tensor, encode, pack_ack, pack_error, pack_pong,
                                 pack_stats)
from generator.types import TensorSpec

pytestmark = pytest.mark.timeout(30)


class SocketPort:
    """pyserial's read/write/timeout over one end of a socketpair."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.timeout: float | None = 1.0

    def read(self, size: int = 1) -> bytes:
        self.sock.settimeout(self.timeout)
        try:
            return self.sock.recv(size)
        except socket.timeout:
            return b""

    def write(self, data: bytes) -> int:
        self.sock.sendall(data)
        return len(data)


class FakePE(threading.Thread):
    """A PE that sums/negates its inputs: out0 = in0 * 2 (float32), out1 = bytes of all inputs
    reversed. It ACKs lazily (only when the host's window is full or an input completes) so a host
    that overruns the window is caught (``violations``)."""

    def __init__(self, port, *, pe_id=3, window=2, in_bytes=(700, 8), mode="ok", garbage=b"",
                 max_payload=256):
        super().__init__(daemon=True)
        self.port, self.pe_id, self.window, self.mode = port, pe_id, window, mode
        self.in_bytes, self.garbage, self.max_payload = tuple(in_bytes), garbage, max_payload
        self.out_bytes = (in_bytes[0], sum(in_bytes))
        self.violations: list[str] = []
        self.max_outstanding = 0
        self.stop = threading.Event()
        self.seq = 0
        self.pings = 0

    def send(self, ftype, payload=b"", **kw):
        frame = Frame(ftype, self.pe_id, HOST_ID, seq=self.seq, payload=payload, **kw)
        self.seq = (self.seq + 1) & 0xFFFF
        self.port.write(self.garbage + encode(frame))

    def run(self):
        dec = FrameDecoder()
        bufs = [bytearray() for _ in self.in_bytes]
        unacked: list[int] = []
        self.port.timeout = 0.05
        while not self.stop.is_set():
            for f in dec.feed(self.port.read(4096)):
                if f.dst != self.pe_id:
                    continue
                if self.mode == "silent":
                    continue
                if f.type == FrameType.PING:
                    self.pings += 1
                    if self.mode == "ignore_first_ping" and self.pings == 1:
                        continue
                    if self.mode == "bad_pong":
                        self.send(FrameType.PONG, struct.pack("<H", 1))
                        continue
                    # noise a real PE may send: a LOG, and a frame for another PE
                    self.send(FrameType.LOG, b"booted")
                    self.port.write(encode(Frame(FrameType.PONG, self.pe_id + 1, HOST_ID)))
                    self.send(FrameType.PONG, pack_pong(PongInfo(
                        1, self.max_payload, self.window, self.pe_id, self.in_bytes,
                        self.out_bytes)))
                elif f.type == FrameType.TENSOR:
                    if self.mode == "error":
                        self.send(FrameType.ERROR, pack_error(ErrorInfo(-22, "bad tensor")))
                        continue
                    unacked.append(f.seq)
                    self.max_outstanding = max(self.max_outstanding, len(unacked))
                    if len(unacked) > self.window:
                        self.violations.append(f"{len(unacked)} frames outstanding")
                    if f.chunk == 0:
                        bufs[f.stream].clear()
                    bufs[f.stream] += f.payload
                    last = f.chunk == f.nchunks - 1
                    if len(unacked) >= self.window or last:
                        for s in unacked:   # one ACK per consumed frame
                            self.send(FrameType.ACK, pack_ack(Ack(s, 1)))
                        unacked.clear()
                    if all(len(b) == n for b, n in zip(bufs, self.in_bytes)):
                        if self.mode == "no_outputs":
                            continue
                        self.answer(bufs)
                        bufs = [bytearray() for _ in self.in_bytes]

    def answer(self, bufs):
        x = np.frombuffer(bytes(bufs[0]), dtype="<f4")
        outs = [(x * 2).astype("<f4").tobytes(), b"".join(bytes(b) for b in bufs)[::-1]]
        for i, blob in enumerate(outs):
            chunks = chunk_tensor(blob, self.max_payload)
            for c, piece in enumerate(chunks):
                self.send(FrameType.TENSOR, piece, stream=i, chunk=c, nchunks=len(chunks))
        self.send(FrameType.STATS, pack_stats(Stats(inferences=1, cycles=(5 << 32) + 7)))


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    peers = []

    def make(**kw):
        pe = FakePE(SocketPort(b), **kw)
        pe.start()
        peers.append(pe)
        return SocketPort(a), pe

    yield make
    for pe in peers:
        pe.stop.set()
        pe.join(2)
    a.close()
    b.close()


def _inputs():
    x = np.arange(175, dtype=np.float32) - 50.5       # 700 bytes: 3 chunks of <= 256
    y = np.array([1, 2], dtype=np.int32)              # 8 bytes
    return x, y


def test_ping_returns_pong(pair):
    port, pe = pair()
    link = HostLink(port, pe_id=3, timeout=5)
    pong = link.ping()
    assert pong.pe_id == 3 and pong.input_bytes == (700, 8) and pong.rx_window == 2


def test_ping_is_repeated_while_pe_boots(pair):
    port, pe = pair(mode="ignore_first_ping")
    pong = HostLink(port, pe_id=3, timeout=5).ping()
    assert pong.pe_id == 3 and pe.pings >= 2


@pytest.mark.parametrize("window", [1, 2, 5])
def test_infer_chunks_within_window_and_reassembles(pair, window):
    port, pe = pair(window=window, garbage=b"\x00\xa5junk")
    specs = [TensorSpec("out", (175,), "float32"), TensorSpec("raw", (708,), "uint8")]
    link = HostLink(port, pe_id=3, timeout=5, output_specs=specs)
    x, y = _inputs()
    for _ in range(2):
        (out, raw), stats = link.infer([x, y])
        np.testing.assert_array_equal(out, x * 2)
        assert raw.tobytes() == (x.tobytes() + y.tobytes())[::-1]
        assert stats.inferences == 1 and stats.cycles == (5 << 32) + 7
    assert pe.violations == []
    assert pe.max_outstanding == min(window, 3)   # input 0 is 3 chunks


def test_infer_without_specs_gives_bytes(pair):
    port, _ = pair()
    x, y = _inputs()
    (out, raw), _ = HostLink(port, pe_id=3, timeout=5).infer([x, y])
    assert out.dtype == np.uint8 and out.tobytes() == (x * 2).tobytes()


def test_wrong_input_size_is_refused(pair):
    port, _ = pair()
    x, y = _inputs()
    link = HostLink(port, pe_id=3, timeout=5)
    with pytest.raises(UsageError, match="input 1 has 12 bytes"):
        link.infer([x, np.zeros(3, np.int32)])
    with pytest.raises(UsageError, match="takes 2 input"):
        link.infer([x])


def test_error_frame_raises(pair):
    port, _ = pair(mode="error")
    x, y = _inputs()
    with pytest.raises(RunError, match=r"PE 3 reported error -22: bad tensor"):
        HostLink(port, pe_id=3, timeout=5).infer([x, y])


def test_silent_pe_times_out_naming_what_was_awaited(pair):
    port, _ = pair(mode="silent")
    t0 = time.monotonic()
    with pytest.raises(RunError, match=r"PE 3 did not answer within 0.8 s .*PONG"):
        HostLink(port, pe_id=3, timeout=0.8).ping()
    assert time.monotonic() - t0 < 3


def test_missing_outputs_time_out(pair):
    port, _ = pair(mode="no_outputs")
    x, y = _inputs()
    with pytest.raises(RunError, match=r"PE 3 did not answer .* output 0"):
        HostLink(port, pe_id=3, timeout=0.8).infer([x, y])


def test_wrong_pe_id_gets_no_answer(pair):
    port, _ = pair()
    with pytest.raises(RunError, match="PE 4 did not answer"):
        HostLink(port, pe_id=4, timeout=0.6).ping()


def test_over_a_pty_with_pyserial():
    """The same code over a real pty opened with pyserial, as used for QEMU and boards."""
    master, slave = os.openpty()
    import tty
    tty.setraw(slave)
    name = os.ttyname(slave)

    class MasterPort:
        timeout = 0.05

        def read(self, n=1):
            import select
            r, _, _ = select.select([master], [], [], self.timeout)
            return os.read(master, n) if r else b""

        def write(self, data):
            return os.write(master, data)

    pe = FakePE(MasterPort(), pe_id=0, window=3, in_bytes=(16, 4))
    pe.start()
    try:
        with serial.Serial(name, 115200, timeout=1) as port:
            link = HostLink(port, pe_id=0, timeout=5,
                            output_specs=[TensorSpec("o", (4,), "float32"),
                                          TensorSpec("r", (20,), "uint8")])
            x = np.array([1, -2, 3.5, 0], np.float32)
            (o, r), stats = link.infer([x, np.array([9], np.int32)])
            np.testing.assert_array_equal(o, 2 * x)
            assert stats.inferences == 1
    finally:
        pe.stop.set()
        pe.join(2)
        os.close(master)
        os.close(slave)


def test_malformed_pong_is_a_run_error(pair):
    """A malformed payload from the PE is reported as a RunError, not a crash."""
    port, _ = pair(mode="bad_pong")
    with pytest.raises(RunError, match="PE 3 sent a malformed PONG"):
        HostLink(port, pe_id=3, timeout=5).ping()


# --- the host in a mesh: MeshPeLink (go-back-N on link 0) ---------------------------------------

from generator.mesh.hostlink import READY, MeshPeLink, ping_all  # noqa: E402


class FilePort(SocketPort):
    """SocketPort with fileno() (what MeshPeLink/ping_all select on)."""

    def fileno(self) -> int:
        return self.sock.fileno()


class GbnPE(threading.Thread):
    """A mesh PE's link 0 as CONTRACTS §6 says: TENSOR frames only in seq order (duplicates are
    re-ACKed, gaps dropped), PONG to PING (which restarts the sender's seq at 0)."""

    def __init__(self, port, *, pe_id=5, window=2, drop=lambda f, copy: False, silent=False):
        super().__init__(daemon=True)
        self.port, self.pe_id, self.window, self.drop, self.silent = (port, pe_id, window, drop,
                                                                       silent)
        self.accepted: list[Frame] = []
        self.others: list[Frame] = []
        self.copies: dict[int, int] = {}
        self.expect = 0
        self.max_seen_unacked = 0
        self.stop = threading.Event()

    def send(self, ftype, payload=b""):
        self.port.write(encode(Frame(ftype, self.pe_id, HOST_ID, payload=payload)))

    def run(self):
        dec = FrameDecoder()
        self.port.timeout = 0.05
        while not self.stop.is_set():
            for f in dec.feed(self.port.read(4096)):
                if self.silent:
                    continue
                if f.type == FrameType.PING:
                    self.expect = 0
                    self.send(FrameType.PONG, pack_pong(PongInfo(1, 256, self.window,
                                                                 self.pe_id, (1000,), ())))
                elif f.type == FrameType.TENSOR:
                    self.copies[f.seq] = self.copies.get(f.seq, 0) + 1
                    if self.drop(f, self.copies[f.seq]):
                        continue
                    if f.seq == self.expect:
                        self.expect += 1
                        self.accepted.append(f)
                    elif f.seq > self.expect:
                        continue                    # a gap: no ACK
                    self.send(FrameType.ACK, pack_ack(Ack(f.seq, self.window)))
                else:
                    self.others.append(f)


@pytest.fixture
def gbn():
    made = []

    def make(**kw):
        a, b = socket.socketpair()
        pe = GbnPE(SocketPort(b), **kw)
        pe.start()
        made.append((pe, a, b))
        return FilePort(a), pe

    yield make
    for pe, a, b in made:
        pe.stop.set()
        pe.join(2)
        a.close()
        b.close()


def _drive(link, until, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "timed out"
        link.pump()
        link.receive()
        time.sleep(0.005)


def test_mesh_link_go_back_n_repairs_a_lost_frame(gbn):
    port, pe = gbn(drop=lambda f, copy: f.seq == 1 and copy == 1)
    link = MeshPeLink(port, 5, rto=0.1)
    pongs = ping_all([link], 5)
    assert pongs[5].rx_window == 2 and link.window == 2
    data = bytes(range(256)) * 3 + b"tail"            # 4 chunks
    link.send_tensor(0, data)
    _drive(link, lambda: not link.busy)
    assert [f.seq for f in pe.accepted] == [0, 1, 2, 3]
    assert b"".join(f.payload for f in pe.accepted) == data
    assert [f.chunk for f in pe.accepted] == [0, 1, 2, 3] and link.retransmissions >= 1
    # seq continues per (host, PE) pair; a control frame takes none
    link.send_control(READY, (0).to_bytes(2, "little"))
    link.send_tensor(0, b"x" * 1000)
    _drive(link, lambda: not link.busy)
    assert [f.seq for f in pe.accepted][4:] == [4, 5, 6, 7]
    assert wait_until(lambda: any(int(f.type) == READY for f in pe.others))


def test_mesh_link_keeps_the_window(gbn):
    port, pe = gbn(window=1)
    link = MeshPeLink(port, 5, rto=5.0)
    ping_all([link], 5)
    link.send_tensor(0, b"y" * 1000)
    link.pump()
    link.pump()
    assert len(link._inflight) == 1 and link.busy    # one unACKed at a time
    _drive(link, lambda: not link.busy)
    assert len(pe.accepted) == 4 and link.retransmissions == 0


def test_ping_all_names_the_silent_pe(gbn):
    port, _ = gbn(silent=True)
    port2, _ = gbn(pe_id=6)
    links = [MeshPeLink(port, 5), MeshPeLink(port2, 6)]
    with pytest.raises(RunError, match=r"PE\(s\) \[5\] did not answer PING"):
        ping_all(links, 1.0)


def wait_until(cond, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not cond():
        time.sleep(0.01)
    return cond()
