"""The fabric (generator/mesh/fabric.py) against small Python test peers over real unix sockets: XY
routing and per-link counters, ACKs consumed as credits, the rx_window, go-back-N retransmission,
order of control frames behind TENSOR frames, fault injection, per-hop delay and a clean stop.

The peers implement the receiving rule of CONTRACTS §6 (accept TENSOR frames from a source only in
seq order; re-ACK duplicates; drop gaps unACKed) — they are test peers, not the PE runtime (which
tests/mesh/test_runner.py runs for real)."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from generator.boards.catalog import load_mesh
from generator.mesh.fabric import Fabric, Faults
from generator.wire import (HOST_ID, Ack, Frame, FrameDecoder, FrameType, encode, pack_ack,
                                 unpack_ack)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def mesh4():
    return load_mesh("qemu4")        # 2x2: ids 0 (0,0), 1 (1,0), 2 (0,1), 3 (1,1)


class Peer(threading.Thread):
    """A PE's link 1: connects to the fabric, records what it accepts, ACKs per CONTRACTS §6.

    ``drop(frame, copy)`` → True makes the peer treat that delivery as lost (no ACK, no accept);
    ``ack`` False makes it never ACK (to observe the window)."""

    def __init__(self, fabric: Fabric, pe: int, *, drop=None, ack=True):
        super().__init__(daemon=True)
        self.pe, self.drop, self.ack = pe, drop, ack
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(fabric.path(pe))
        self.sock.settimeout(0.05)
        self.decoder = FrameDecoder()
        self.accepted: list[Frame] = []
        self.control: list[Frame] = []
        self.order: list[Frame] = []          # every accepted frame, TENSOR or not
        self.raw = bytearray()
        self.expected: dict[int, int] = {}
        self.copies: dict[tuple[int, int], int] = {}
        self.dups = 0
        self.gaps = 0
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.start()

    def send(self, frame: Frame) -> None:
        self.sock.sendall(encode(frame))

    def tensor(self, dst: int, seq: int, payload: bytes = b"x", stream: int = 0) -> None:
        self.send(Frame(FrameType.TENSOR, self.pe, dst, stream, seq, 0, 1, payload))

    def run(self):
        while not self.stop.is_set():
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            if not data:
                return
            with self.lock:
                self.raw += data
                for f in self.decoder.feed(data):
                    self._on(f)

    def _on(self, f: Frame) -> None:
        if f.type != FrameType.TENSOR:
            self.control.append(f)
            self.order.append(f)
            return
        key = (f.src, f.seq)
        self.copies[key] = self.copies.get(key, 0) + 1
        if self.drop and self.drop(f, self.copies[key]):
            return
        want = self.expected.get(f.src, 0)
        if f.seq == want:
            self.expected[f.src] = (want + 1) & 0xFFFF
            self.accepted.append(f)
            self.order.append(f)
        elif ((want - f.seq) & 0xFFFF) < 0x8000:
            self.dups += 1
        else:
            self.gaps += 1
            return
        if self.ack:
            self.send(Frame(FrameType.ACK, self.pe, f.src, payload=pack_ack(Ack(f.seq, 3))))

    def close(self):
        self.stop.set()
        self.join(2)
        self.sock.close()


def wait_for(cond, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


@pytest.fixture
def net(mesh4):
    made = []

    def make(endpoints=(0, 1, 2, 3), peers=(0, 3), peer_kw=None, **kw):
        fab = Fabric(mesh4, endpoints, **kw).start()
        ps = {pe: Peer(fab, pe, **(peer_kw or {}).get(pe, {})) for pe in peers}
        made.append((fab, ps))
        assert fab.wait_connected(peers, 5) == []
        return fab, ps

    yield make
    for fab, ps in made:
        for p in ps.values():
            p.close()
        fab.stop()


def test_xy_route_hops_and_link_counters(net):
    fab, p = net()
    p[0].tensor(3, 0, b"hello")
    assert wait_for(lambda: len(p[3].accepted) == 1)
    f = p[3].accepted[0]
    assert (f.src, f.dst, f.payload) == (0, 3, b"hello")
    n = len(encode(f))
    assert wait_for(lambda: fab.stats().acks == 1)
    s = fab.stats()
    # x first: (0,0) -> (1,0) = PE 1, then y: (1,1) = PE 3
    assert set(s.mesh_links) == {(0, 1), (1, 3)}
    assert all((t.frames, t.bytes) == (1, n) for t in s.mesh_links.values())
    assert (s.routed_frames, s.routed_bytes, s.hops) == (1, n, 2)
    assert s.from_pe[0].bytes == n and s.to_pe[3].bytes == n
    assert s.retransmissions == 0 and s.bad_frames == 0
    # the ACK is link-level: consumed by the fabric, never forwarded to PE 0
    time.sleep(0.1)
    assert p[0].control == [] and fab.pending(3) == (0, 0)
    # back from 3 to 0: x first again, (1,1) -> (0,1) = PE 2, then y to PE 0
    p[3].tensor(0, 0, b"back")
    assert wait_for(lambda: len(p[0].accepted) == 1)
    assert set(fab.stats().mesh_links) == {(0, 1), (1, 3), (3, 2), (2, 0)}


def test_window_limits_unacked_tensor_frames(net):
    fab, p = net(peer_kw={3: {"ack": False}})
    fab.set_window(3, 2)
    for seq in range(6):
        p[0].tensor(3, seq, bytes([seq]))
    assert wait_for(lambda: len(p[3].accepted) == 2)
    time.sleep(0.2)
    assert len(p[3].accepted) == 2 and fab.pending(3) == (4, 2)
    # one cumulative ACK of seq 1 frees both slots
    p[3].send(Frame(FrameType.ACK, 3, 0, payload=pack_ack(Ack(1, 2))))
    assert wait_for(lambda: len(p[3].accepted) == 4)
    assert [f.seq for f in p[3].accepted] == [0, 1, 2, 3]


def test_go_back_n_repairs_a_lost_frame(net):
    # the first delivery of seq 1 is lost: the peer drops 2 as a gap; after the timeout the fabric
    # sends 1 and 2 again, in order
    fab, p = net(peer_kw={3: {"drop": lambda f, copy: f.seq == 1 and copy == 1}}, rto=0.2)
    for seq in range(5):
        p[0].tensor(3, seq, bytes([seq]) * 10)
    assert wait_for(lambda: len(p[3].accepted) == 5, 10)
    assert [f.seq for f in p[3].accepted] == list(range(5))
    assert [f.payload[0] for f in p[3].accepted] == list(range(5))
    s = fab.stats()
    assert s.retransmissions >= 2 and s.retransmissions_to[3] == s.retransmissions
    assert p[3].gaps >= 1
    assert wait_for(lambda: fab.pending(3) == (0, 0))


def test_acks_are_per_source(net):
    fab, p = net(peers=(0, 1, 3), rto=5.0)
    p[0].tensor(3, 0, b"a")
    p[1].tensor(3, 0, b"b")       # same seq number, another (src, dst) pair
    assert wait_for(lambda: len(p[3].accepted) == 2)
    assert wait_for(lambda: fab.pending(3) == (0, 0))
    assert sorted((f.src, f.seq) for f in p[3].accepted) == [(0, 0), (1, 0)]


def test_control_frames_keep_their_place_behind_tensor_frames(net):
    fab, p = net(peer_kw={3: {"ack": False}})
    fab.set_window(3, 1)
    p[0].tensor(3, 0, b"t0")
    p[0].tensor(3, 1, b"t1")
    p[0].send(Frame(FrameType.LOG, 0, 3, payload=b"after t1"))
    assert wait_for(lambda: len(p[3].order) == 1)
    time.sleep(0.15)
    assert [f.payload for f in p[3].order] == [b"t0"]       # LOG waits behind t1
    p[3].send(Frame(FrameType.ACK, 3, 0, payload=pack_ack(Ack(0, 1))))
    # t1 takes the window's slot; the LOG needs none and follows it at once
    assert wait_for(lambda: len(p[3].order) == 3)
    assert [f.payload for f in p[3].order] == [b"t0", b"t1", b"after t1"]
    assert p[3].order[2].type == FrameType.LOG and fab.pending(3) == (0, 1)


def test_ready_is_forwarded_without_window(net):
    fab, p = net(peer_kw={3: {"ack": False}})
    fab.set_window(3, 1)
    p[0].send(Frame(FrameType.READY, 0, 3, payload=(0).to_bytes(2, "little")))
    p[0].send(Frame(FrameType.READY, 0, 3, payload=(1).to_bytes(2, "little")))
    assert wait_for(lambda: len(p[3].control) == 2)


def test_fault_injection_is_counted_and_repaired(net):
    faults = Faults(seed=7, pes=(3,), garbage_rate=0.5, garbage_max=20, bitflip_rate=0.3)
    fab, p = net(faults=faults, rto=0.1)
    payloads = [bytes([i]) * (50 + i) for i in range(20)]
    for seq, pl in enumerate(payloads):
        p[0].tensor(3, seq, pl)
    assert wait_for(lambda: len(p[3].accepted) == 20, 30)
    assert [f.payload for f in p[3].accepted] == payloads
    s = fab.stats()
    assert s.injected_bitflips > 0 and s.injected_garbage_bytes > 0
    dec = p[3].decoder
    # every flipped frame was rejected by the receiver (as a bad frame): CRC or header
    assert dec.bad_frames >= s.injected_bitflips > 0
    assert dec.skipped_bytes >= s.injected_garbage_bytes
    assert s.retransmissions > 0
    # PE 0's link was not disturbed
    assert s.to_pe[0].bytes == 0


def test_fault_injection_is_deterministic(mesh4):
    def raw(seed):
        with Fabric(mesh4, (0, 3), faults=Faults(seed=seed, garbage_rate=0.7)) as fab:
            p0, p3 = Peer(fab, 0), Peer(fab, 3)
            try:
                for seq in range(8):
                    p0.tensor(3, seq, bytes([seq]) * 30)
                assert wait_for(lambda: len(p3.accepted) == 8)
                time.sleep(0.05)
                return bytes(p3.raw), fab.stats().injected_garbage_bytes
            finally:
                p0.close()
                p3.close()
    (a, na), (b, nb), (c, _) = raw(1), raw(1), raw(2)
    assert a == b and na == nb > 0 and a != c
    frames = b"".join(encode(Frame(FrameType.TENSOR, 0, 3, 0, seq, 0, 1, bytes([seq]) * 30))
                      for seq in range(8))
    assert a.count(0xA5) > frames.count(0xA5)           # garbage holds sync bytes too


def test_hop_delay(net):
    fab, p = net(hop_delay_s=0.15)
    t0 = time.monotonic()
    p[0].tensor(3, 0)              # 2 hops
    assert wait_for(lambda: len(p[3].accepted) == 1)
    assert time.monotonic() - t0 >= 0.28


def test_frames_for_the_host_and_unknown_pes(mesh4):
    got = []
    with Fabric(mesh4, (0, 3), on_host_frame=lambda src, f: got.append((src, f.type))) as fab:
        p0 = Peer(fab, 0)
        try:
            p0.send(Frame(FrameType.LOG, 0, HOST_ID, payload=b"hi"))
            p0.tensor(2, 0)            # PE 2 has no endpoint
            assert wait_for(lambda: got == [(0, FrameType.LOG)] and fab.stats().undeliverable)
        finally:
            p0.close()


def test_frames_wait_for_a_pe_that_connects_late(net):
    fab, p = net(peers=(0,))
    p[0].tensor(3, 0, b"early")
    time.sleep(0.1)
    assert fab.pending(3) == (1, 0)
    late = Peer(fab, 3)
    try:
        assert wait_for(lambda: len(late.accepted) == 1)
    finally:
        late.close()


def test_bad_bytes_from_a_pe_are_counted(net):
    fab, p = net()
    p[0].sock.sendall(b"\x00\x01\xA5\x5A\x07" + b"\0" * 30)
    p[0].tensor(3, 0, b"ok")
    assert wait_for(lambda: len(p[3].accepted) == 1)
    s = fab.stats()
    assert s.bad_frames == 1 and s.skipped_bytes > 0


def test_disconnect_is_reported(net):
    fab, p = net()
    p[3].close()
    assert wait_for(lambda: fab.disconnected() == [3])


def test_stop_is_clean_and_idempotent(mesh4):
    before = threading.active_count()
    fab = Fabric(mesh4, range(4)).start()
    paths = [fab.path(pe) for pe in range(4)]
    assert all(os.path.exists(x) for x in paths) and all(len(x) < 100 for x in paths)
    peer = Peer(fab, 1)
    peer.close()
    fab.stop()
    fab.stop()
    assert not any(os.path.exists(x) for x in paths) and not os.path.exists(fab.dir)
    assert wait_for(lambda: threading.active_count() == before)


def test_pe_outside_the_mesh_is_refused(mesh4):
    with pytest.raises(ValueError):
        Fabric(mesh4, (0, 9))


def test_unpack_ack_roundtrip():
    assert unpack_ack(pack_ack(Ack(0xFFFF, 3))) == Ack(0xFFFF, 3)
