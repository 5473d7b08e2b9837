"""The NoC model on the host: route frames between PEs' mesh links (docs/CONTRACTS.md §6 "Fabric").

Every PE's link 1 (UART1 under QEMU, ``--link1 unix:…`` for a host-process PE) connects to its own
listening unix stream socket, :meth:`Fabric.path`. One thread reads every connected PE, decodes
its frames (:class:`~generator.wire.FrameDecoder`) and routes each by ``dst`` along the XY
route of :class:`~generator.boards.catalog.Mesh` (counting hops and bytes per directed mesh link), after an
optional per-hop delay.

Into each PE the fabric is the sender of CONTRACTS §6 "Link reliability": frames for a PE leave in
arrival order; at most ``rx_window`` TENSOR frames are unacknowledged; the ACKs the PE returns
(``dst`` = the producer, ``acked_seq`` per (producer, PE) pair, cumulative) are consumed here and
never forwarded; when the oldest unacknowledged TENSOR frame is older than the retransmit timeout,
every unacknowledged TENSOR frame is sent again in order (go-back-N; the timeout doubles while no
ACK comes, up to :data:`MAX_RTO`). READY and other frames are small and need no window, but keep
their place in the queue behind TENSOR frames to the same PE.

Fault injection (:class:`Faults`), drawn from a seeded ``random.Random`` (the same seed and the
same traffic give the same faults): on the fabric→PE direction, garbage bytes between frames (sync
bytes included: the decoders resynchronise), single-bit flips in TENSOR frames (go-back-N repairs
them) and dropped frames of any type; on the PE→fabric direction, dropped frames of every type
but TENSOR (ACKs: go-back-N resends; READY: the consumer resends it while its input stays empty).
A TENSOR frame from a PE is dropped on its delivery leg instead, where the fabric keeps the copy
it resends — a PE keeps none of what it sent (its output FIFO is the reliable part of the link).
"""

from __future__ import annotations

import logging
import os
import random
import selectors
import shutil
import socket
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable, Mapping

from generator.boards.catalog import Mesh
from generator.errors import RunError
from generator.mesh.fabric_types import FabricStats, Faults, LinkTraffic
from generator.wire import HOST_ID, SYNC, Frame, FrameDecoder, FrameType, encode, unpack_ack

if TYPE_CHECKING:
    from generator.mesh.trace import TraceRecorder

log = logging.getLogger(__name__)

#: READY (CONTRACTS §6)
READY = int(FrameType.READY)
DEFAULT_RX_WINDOW = 3
#: seconds before unacknowledged TENSOR frames are sent again (doubled while no ACK comes)
DEFAULT_RTO = 0.5
MAX_RTO = 4.0
_POLL_S = 0.02


@dataclass
class _Out:
    """A frame queued for a PE."""

    frame: Frame
    wire: bytes
    due: float                      # not before (per-hop delay)
    sent_at: float = 0.0


@dataclass
class _Port:
    """One PE's endpoint: its listening socket, connection and sending state."""

    pe: int
    path: str
    listener: socket.socket
    window: int
    conn: socket.socket | None = None
    decoder: FrameDecoder = field(default_factory=FrameDecoder)
    txbuf: bytearray = field(default_factory=bytearray)
    queue: deque = field(default_factory=deque)          # _Out not yet sent
    inflight: list = field(default_factory=list)         # _Out TENSOR frames sent, unACKed
    rto: float = DEFAULT_RTO
    connects: int = 0
    closed_by_peer: bool = False
    last_rx: float = 0.0
    rx_frames: int = 0
    rx_bytes: int = 0
    tx_frames: int = 0
    tx_bytes: int = 0
    retransmissions: int = 0


class Fabric:
    """Route frames between PEs over unix sockets. Use as a context manager or call
    :meth:`start` / :meth:`stop`.

    ``endpoints``: the PE ids (their rx_window is then :data:`DEFAULT_RX_WINDOW`) or a mapping
    PE id → rx_window. ``on_host_frame`` receives frames a PE addressed to the host on its mesh
    link (they are counted as undeliverable otherwise).
    """

    def __init__(self, mesh: Mesh, endpoints: Iterable[int] | Mapping[int, int], *,
                 hop_delay_s: float = 0.0, faults: Faults | None = None,
                 rto: float = DEFAULT_RTO, sock_dir: str | None = None,
                 on_host_frame: Callable[[int, Frame], None] | None = None,
                 trace: "TraceRecorder | None" = None, remote: Mapping[int, int] | None = None,
                 forward: "Callable[[int, Frame, bytes, int, float], None] | None" = None,
                 shard: int = 0):
        self.mesh = mesh
        #: a shard of a sharded fabric (generator/mesh/shard.py): the PEs other shards own
        #: (PE → shard) and ``forward(shard, frame, wire, at, delay_s)``, which hands a frame
        #: whose next hop ``at`` is such a PE to its shard (see :meth:`deliver`)
        self.remote = dict(remote or {})
        self.forward = forward
        self.trace = trace
        windows = (dict(endpoints) if isinstance(endpoints, Mapping)
                   else {int(p): DEFAULT_RX_WINDOW for p in endpoints})
        for pe in windows:
            mesh.coords(pe)                 # ValueError for a PE outside the mesh
        self.hop_delay_s = float(hop_delay_s)
        self.faults = faults
        self.base_rto = float(rto)
        self.on_host_frame = on_host_frame
        # each shard draws its own faults (shard 0, or one fabric: the seed itself)
        self._rng = random.Random((faults.seed if faults else 0) + 1_000_003 * shard)
        self._own_dir = sock_dir is None
        self.dir = sock_dir or tempfile.mkdtemp(prefix="pemesh-noc-")
        self._lock = threading.RLock()
        self._sel = selectors.DefaultSelector()
        self._ports: dict[int, _Port] = {}
        self._links: dict[tuple[int, int], list[int]] = {}
        self._routed = [0, 0, 0]            # frames, bytes, hops
        self._acks = 0
        self._undeliverable = 0
        self._garbage = 0
        self._flips = 0
        self._drops = 0
        self._faults = 0
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._stopped = False
        self.error: BaseException | None = None
        try:
            for pe, window in sorted(windows.items()):
                self._add_port(pe, max(1, int(window)))
        except BaseException:
            self.stop()
            raise
        self._sel.register(self._wake_r, selectors.EVENT_READ, ("wake", None))

    def _add_port(self, pe: int, window: int) -> None:
        path = os.path.join(self.dir, f"pe{pe}.sock")
        if len(path.encode()) >= 104:
            raise RunError(f"unix socket path {path} is too long for the PE {pe} endpoint",
                           hint="set TMPDIR to a short directory")
        if os.path.exists(path):
            os.unlink(path)
        lst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        lst.bind(path)
        lst.listen(4)
        lst.setblocking(False)
        self._ports[pe] = _Port(pe, path, lst, window)
        self._sel.register(lst, selectors.EVENT_READ, ("accept", pe))

    # --- public API ---------------------------------------------------------------------------

    def path(self, pe: int) -> str:
        """The unix socket a PE's link 1 connects to."""
        return self._ports[pe].path

    def set_window(self, pe: int, window: int) -> None:
        """Use the rx_window a PE announced (PONG)."""
        with self._lock:
            self._ports[pe].window = max(1, int(window))

    def connected(self, pe: int) -> bool:
        """True while PE ``pe`` has its link 1 connected."""
        with self._lock:
            return self._ports[pe].conn is not None

    def wait_connected(self, pes: Iterable[int], timeout: float) -> list[int]:
        """Wait until the PEs are connected; returns those still not connected at the end."""
        deadline = time.monotonic() + timeout
        pes = list(pes)
        while True:
            missing = [p for p in pes if not self.connected(p)]
            if not missing or time.monotonic() >= deadline:
                return missing
            time.sleep(_POLL_S)

    def disconnected(self) -> list[int]:
        """PEs whose link 1 was connected and then closed by the PE."""
        with self._lock:
            return sorted(p.pe for p in self._ports.values() if p.closed_by_peer)

    def pending(self, pe: int) -> tuple[int, int]:
        """(frames queued, TENSOR frames unacknowledged) towards PE ``pe``."""
        with self._lock:
            port = self._ports[pe]
            return len(port.queue), len(port.inflight)

    def deliver(self, frame: Frame, wire: bytes, at: int, delay_s: float) -> None:
        """Go on routing a frame another shard handed over: its XY route has reached PE ``at``
        (one of ours); ``delay_s`` is its whole route's hop delay, applied where it leaves."""
        with self._lock:
            self._route(frame, wire, time.monotonic(), at=at, delay_s=delay_s)
        self._wake()

    def send(self, frame: Frame) -> None:
        """Inject a frame as if a PE had sent it (routed from ``frame.src``; for tests/tools)."""
        with self._lock:
            self._route(frame, encode(frame, max(256, len(frame.payload))), time.monotonic())
        self._wake()

    def stats(self) -> FabricStats:
        """A consistent snapshot of every counter."""
        with self._lock:
            ports = self._ports.values()
            return FabricStats(
                routed_frames=self._routed[0], routed_bytes=self._routed[1],
                hops=self._routed[2],
                mesh_links={k: LinkTraffic(v[0], v[1]) for k, v in self._links.items()},
                from_pe={p.pe: LinkTraffic(p.rx_frames, p.rx_bytes) for p in ports},
                to_pe={p.pe: LinkTraffic(p.tx_frames, p.tx_bytes) for p in ports},
                retransmissions=sum(p.retransmissions for p in ports),
                retransmissions_to={p.pe: p.retransmissions for p in ports},
                acks=self._acks,
                bad_frames=sum(p.decoder.bad_frames for p in ports),
                skipped_bytes=sum(p.decoder.skipped_bytes for p in ports),
                undeliverable=self._undeliverable, injected_garbage_bytes=self._garbage,
                injected_bitflips=self._flips, injected_drops=self._drops)

    def start(self) -> "Fabric":
        """Start the routing thread (idempotent)."""
        if self._thread is None and not self._stopped:
            self._thread = threading.Thread(target=self._main, name="pemesh-fabric", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread, close every socket and remove the socket files. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self._stopping.set()
        self._wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5.0)
        with self._lock:
            for port in self._ports.values():
                for s in (port.conn, port.listener):
                    if s is not None:
                        s.close()
                port.conn = None
                try:
                    os.unlink(port.path)
                except OSError:
                    pass
            self._sel.close()
            self._wake_r.close()
            self._wake_w.close()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "Fabric":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the routing thread -----------------------------------------------------------------

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass

    def _main(self) -> None:
        try:
            while not self._stopping.is_set():
                for key, mask in self._sel.select(self._next_timeout()):
                    kind, pe = key.data
                    if kind == "wake":
                        try:
                            self._wake_r.recv(4096)
                        except OSError:
                            pass
                    elif kind == "accept":
                        self._accept(self._ports[pe])
                    else:
                        port = self._ports[pe]
                        if mask & selectors.EVENT_READ:
                            self._read(port)
                        if mask & selectors.EVENT_WRITE and port.conn is not None:
                            self._flush(port)
                with self._lock:
                    self._pump(time.monotonic())
        except BaseException as err:  # pragma: no cover - reported to the runner
            if not self._stopping.is_set():
                log.exception("fabric thread failed")
                self.error = err

    def _next_timeout(self) -> float:
        with self._lock:
            now = time.monotonic()
            t = 0.25
            for port in self._ports.values():
                if port.inflight:
                    t = min(t, port.inflight[0].sent_at + port.rto - now)
                if port.queue and port.conn is not None and port.queue[0].due > now:
                    t = min(t, port.queue[0].due - now)
            return max(0.0, t)

    def _accept(self, port: _Port) -> None:
        try:
            conn, _ = port.listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        conn.setblocking(False)
        with self._lock:
            if port.conn is not None:          # a reconnect replaces the old connection
                self._sel.unregister(port.conn)
                port.conn.close()
            port.conn = conn
            port.connects += 1
            port.closed_by_peer = False
            port.txbuf.clear()
            port.decoder = FrameDecoder(port.decoder.max_payload)
            # whatever was in flight on the old connection is sent again
            for out in reversed(port.inflight):
                port.queue.appendleft(out)
            port.inflight.clear()
            self._sel.register(conn, selectors.EVENT_READ, ("conn", port.pe))
        log.debug("fabric: PE %d connected (%s)", port.pe, port.path)

    def _read(self, port: _Port) -> None:
        conn = port.conn
        if conn is None:
            return
        try:
            data = conn.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        with self._lock:
            if not data:
                log.debug("fabric: PE %d closed its link", port.pe)
                self._sel.unregister(conn)
                conn.close()
                port.conn = None
                port.closed_by_peer = True
                return
            now = time.monotonic()
            port.last_rx = now
            port.rx_bytes += len(data)
            for frame in port.decoder.feed(data):
                port.rx_frames += 1
                self._on_frame(port, frame, now)

    def _on_frame(self, port: _Port, frame: Frame, now: float) -> None:
        if frame.type != FrameType.TENSOR and self._drop(port.pe, frame):
            return                          # lost on the PE → fabric leg
        if frame.type == FrameType.ACK:
            self._acks += 1
            try:
                ack = unpack_ack(frame.payload)
            except ValueError:
                log.warning("fabric: malformed ACK from PE %d", port.pe)
                return
            self._on_ack(port, frame.dst, ack.acked_seq)
            return
        if frame.src != port.pe and frame.src != HOST_ID:
            log.debug("fabric: PE %d sent a frame with src %d", port.pe, frame.src)
        self._route(frame, encode(frame, max(256, len(frame.payload))), now, origin=port.pe)

    def _drop(self, pe: int, frame: Frame) -> bool:
        """Whether the fault injector drops ``frame`` on PE ``pe``'s link (and counts it)."""
        f = self.faults
        if f is None or not f.applies_to(pe) or not self._may_fault():
            return False
        if int(frame.type) in f.drop_types or (f.drop_rate and self._rng.random() < f.drop_rate):
            self._drops += 1
            self._faults += 1
            if self.trace is not None:
                self.trace.fault("drop", pe, frame)
            log.debug("fabric: dropped %s %d->%d seq %d", frame.type, frame.src, frame.dst,
                      frame.seq)
            return True
        return False

    def _on_ack(self, port: _Port, producer: int, acked: int) -> None:
        """Cumulative ACK of the (producer → port.pe) TENSOR frames up to ``acked``."""
        hit = None
        for i, out in enumerate(port.inflight):
            if out.frame.src == producer and out.frame.seq == acked:
                hit = i
        if hit is None:
            return                          # a duplicate or stale ACK
        keep = [o for i, o in enumerate(port.inflight)
                if i > hit or o.frame.src != producer]
        port.inflight = keep
        port.rto = self.base_rto            # progress: back to the base timeout

    def _route(self, frame: Frame, wire: bytes, now: float, origin: int | None = None,
               at: int | None = None, delay_s: float = 0.0) -> None:
        """Route a frame from its origin (or, handed over by another shard, on from PE ``at``)
        hop by hop along the XY route: each directed link is counted by the shard of the PE it
        leaves; the frame goes to the shard of its next hop when that PE is not ours."""
        dst = frame.dst
        if at is None:
            src = origin if origin is not None else frame.src
            if dst == HOST_ID or (dst not in self._ports and dst not in self.remote):
                if dst == HOST_ID and self.on_host_frame is not None:
                    self.on_host_frame(src, frame)
                else:
                    self._undeliverable += 1
                    log.warning("fabric: dropping %s frame from %d to %d (no such endpoint)",
                                frame.type.name if isinstance(frame.type, FrameType)
                                else frame.type, src, dst)
                return
            known = src in self._ports or src in self.remote
            path = self.mesh.route(src, dst) if known else ()
            if self.trace is not None:
                self.trace.routed(frame, len(wire), tuple(zip((src, *path), path)))
            self._routed[0] += 1
            self._routed[1] += len(wire)
            self._routed[2] += len(path)
            delay_s = self.hop_delay_s * len(path)
            at = src if known else dst
        else:
            path = self.mesh.route(at, dst)
        prev = at
        for nxt in (at, *path):
            if nxt != prev:
                c = self._links.setdefault((prev, nxt), [0, 0])
                c[0] += 1
                c[1] += len(wire)
                prev = nxt
            owner = self.remote.get(nxt)
            if owner is not None:
                if self.forward is None:
                    self._undeliverable += 1
                else:
                    self.forward(owner, frame, wire, nxt, delay_s)
                return
        self._ports[dst].queue.append(_Out(frame, wire, now + delay_s))

    def _pump(self, now: float) -> None:
        for port in self._ports.values():
            if port.conn is None:
                continue
            if port.inflight and now - port.inflight[0].sent_at >= port.rto:
                port.retransmissions += len(port.inflight)
                if self.trace is not None:
                    self.trace.fault("retransmit", port.pe, count=len(port.inflight))
                log.debug("fabric: PE %d: no ACK in %.2f s, resending %d frame(s)", port.pe,
                          port.rto, len(port.inflight))
                for out in port.inflight:
                    out.sent_at = now
                    self._write(port, out)
                port.rto = min(MAX_RTO, port.rto * 2)
            while port.queue:
                head = port.queue[0]
                if head.due > now:
                    break
                is_tensor = head.frame.type == FrameType.TENSOR
                if is_tensor and len(port.inflight) >= port.window:
                    break
                port.queue.popleft()
                head.sent_at = now
                if is_tensor:
                    port.inflight.append(head)
                self._write(port, head)
            if port.txbuf:
                self._flush(port)

    def _write(self, port: _Port, out: _Out) -> None:
        wire = out.wire
        f = self.faults
        if self._drop(port.pe, out.frame):
            return                          # lost on the fabric → PE leg (TENSOR: resent)
        if f is not None and f.applies_to(port.pe) and self._may_fault():
            if f.garbage_rate and self._rng.random() < f.garbage_rate:
                n = self._rng.randint(1, max(1, f.garbage_max))
                junk = self._rng.randbytes(n)
                if n >= 2 and self._rng.random() < 0.25:
                    junk = junk[:n - 2] + SYNC      # a sync the decoder must see through
                port.txbuf += junk
                port.tx_bytes += n
                self._garbage += n
                self._faults += 1
            if (f.bitflip_rate and out.frame.type == FrameType.TENSOR and self._may_fault()
                    and self._rng.random() < f.bitflip_rate):
                bit = self._rng.randrange(16, len(wire) * 8)
                flipped = bytearray(wire)
                flipped[bit // 8] ^= 1 << (bit % 8)
                wire = bytes(flipped)
                self._flips += 1
                self._faults += 1
        port.txbuf += wire
        port.tx_frames += 1
        port.tx_bytes += len(wire)

    def _may_fault(self) -> bool:
        f = self.faults
        return f is not None and (f.max_faults is None or self._faults < f.max_faults)

    def _flush(self, port: _Port) -> None:
        conn = port.conn
        if conn is None:
            return
        with self._lock:
            try:
                n = conn.send(port.txbuf) if port.txbuf else 0
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError as err:
                log.debug("fabric: write to PE %d failed: %s", port.pe, err)
                n = len(port.txbuf)
            del port.txbuf[:n]
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if port.txbuf else 0)
            try:
                self._sel.modify(conn, events, ("conn", port.pe))
            except (KeyError, ValueError):
                pass


__all__ = ["Fabric", "FabricStats", "Faults", "LinkTraffic", "READY", "DEFAULT_RX_WINDOW"]
