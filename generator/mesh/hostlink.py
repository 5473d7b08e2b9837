"""The host side of a PE's host link (CONTRACTS §1, "One inference on the host link").

:class:`HostLink` speaks the pemesh frame protocol over any object with pyserial's
``read(n)`` / ``write(data)`` / ``timeout`` interface: a ``serial.Serial`` on a QEMU pty, a
host-process PE's pty or a real board's UART, or a test transport.

One inference: PING → PONG (sizes, window); every input as TENSOR frames in chunk order, never more
than ``rx_window`` unacknowledged (the PE ACKs each one it consumed); then the PE answers with every
output as TENSOR frames and one STATS frame. An ERROR frame, or silence past the timeout, raises
:class:`~generator.errors.RunError` naming the PE and what was awaited.

In a mesh (CONTRACTS §6) the host is one more sender into PEs on link 0: :class:`MeshPeLink`
keeps a TENSOR seq per destination PE (from 0; PING takes none and restarts it on the PE), at most
``rx_window`` unacknowledged TENSOR frames, and goes back N on an ACK timeout; :func:`ping_all`
PINGs many PEs at once. READY credits for entry inputs are honoured by the caller
(:mod:`generator.mesh.runner`), which reads the READY frames :meth:`MeshPeLink.receive` returns.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any, Protocol, Sequence

import numpy as np

from generator.errors import RunError, UsageError
from generator.wire import (HOST_ID, MAX_PAYLOAD, Frame, FrameDecoder, FrameType, PongInfo, Stats,
                        chunk_tensor, encode, unpack_ack, unpack_error, unpack_pong, unpack_stats)
from generator.types import TensorSpec

log = logging.getLogger(__name__)

#: seconds one ``read`` may block; the overall deadline is HostLink's ``timeout``
POLL_SECONDS = 0.05
#: seconds between repeated PINGs while a PE boots
PING_RETRY_SECONDS = 0.5


class SerialLike(Protocol):
    """What HostLink needs of a port (a subset of ``serial.Serial``)."""

    timeout: float | None

    def read(self, size: int = 1) -> bytes: ...

    def write(self, data: bytes) -> int | None: ...


def _unpack(func: Any, frame: Frame, pe_id: int) -> Any:
    """Decode a payload; a malformed one is the PE's fault (RunError)."""
    try:
        return func(frame.payload)
    except ValueError as err:
        raise RunError(f"PE {pe_id} sent a malformed {frame.type.name} frame: {err}",
                       hint="the PE runtime and pemesh disagree on the protocol; rebuild") \
            from None


def pe_error(frame: Frame, pe_id: int, who: str, hint: str, awaiting: str | None = None
             ) -> RunError:
    """The RunError for an ERROR frame from PE ``pe_id`` (named ``who`` in the message)."""
    err = _unpack(unpack_error, frame, pe_id)
    during = f" (while awaiting {awaiting})" if awaiting else ""
    return RunError(f"{who} reported error {err.code}: {err.message}{during}", hint=hint)


class HostLink:
    """Talk to one PE over its host link.

    ``timeout`` bounds every wait for the PE (seconds). ``output_specs`` (shape and dtype of each
    output) lets :meth:`infer` return shaped arrays; without it outputs are flat ``uint8``.
    """

    def __init__(self, port: SerialLike, *, pe_id: int = 0, timeout: float = 10.0,
                 output_specs: Sequence[TensorSpec] | None = None):
        self.port = port
        self.pe_id = pe_id
        self.timeout = timeout
        self.output_specs = tuple(output_specs) if output_specs is not None else None
        self.decoder = FrameDecoder()
        self.pong: PongInfo | None = None
        self._seq = 0
        self._pending: deque[Frame] = deque()
        try:
            self.port.timeout = POLL_SECONDS
        except (AttributeError, TypeError, ValueError):  # pragma: no cover - read-only timeout
            pass

    # --- frames ---------------------------------------------------------------------------

    def _send(self, ftype: FrameType, payload: bytes = b"", *, stream: int = 0, chunk: int = 0,
              nchunks: int = 1) -> int:
        seq = self._seq
        if ftype == FrameType.TENSOR:       # seq counts TENSOR frames per (host, PE) pair
            self._seq = (self._seq + 1) & 0xFFFF
        frame = Frame(type=ftype, src=HOST_ID, dst=self.pe_id, stream=stream, seq=seq,
                      chunk=chunk, nchunks=nchunks, payload=bytes(payload))
        self.port.write(encode(frame, max(MAX_PAYLOAD, len(frame.payload))))
        return seq

    def _next_frame(self, deadline: float, awaiting: str, *, quiet: bool = False) -> Any:
        """The next frame from this PE to the host; LOG frames are logged, ERROR raises.

        At the deadline: RunError naming what was awaited, or None when ``quiet``.
        """
        while True:
            while self._pending:
                frame = self._pending.popleft()
                if frame.dst != HOST_ID or frame.src != self.pe_id:
                    log.debug("PE %d link: ignoring frame %s from %d to %d", self.pe_id,
                              frame.type, frame.src, frame.dst)
                    continue
                if frame.type == FrameType.LOG:
                    log.info("PE %d: %s", self.pe_id,
                             frame.payload.decode("utf-8", "replace").rstrip())
                    continue
                if frame.type == FrameType.ERROR:
                    raise pe_error(frame, self.pe_id, f"PE {self.pe_id}",
                                   "check the inputs' sizes and the PE's log", awaiting)
                return frame
            if time.monotonic() >= deadline:
                if quiet:
                    return None
                raise RunError(
                    f"PE {self.pe_id} did not answer within {self.timeout:g} s "
                    f"while the host awaited {awaiting}",
                    hint="check that the PE is running (QEMU/host process log) and that the "
                         "serial port is the PE's host link; raise --timeout for slow models")
            data = self.port.read(1)
            if data:
                waiting = getattr(self.port, "in_waiting", 0) or 0
                if waiting:
                    data += self.port.read(waiting)
                self._pending.extend(self.decoder.feed(data))

    # --- requests -------------------------------------------------------------------------

    def ping(self) -> PongInfo:
        """PING the PE (repeated every second while it boots) and return its PONG."""
        deadline = time.monotonic() + self.timeout
        while True:
            self._send(FrameType.PING)
            retry = min(deadline, time.monotonic() + PING_RETRY_SECONDS)
            while True:
                frame = self._next_frame(retry, "PONG (to PING)", quiet=retry < deadline)
                if frame is None:
                    break                       # resend the PING
                if frame.type == FrameType.PONG:
                    self.pong = _unpack(unpack_pong, frame, self.pe_id)
                    log.debug("PE %d PONG: %s", self.pe_id, self.pong)
                    return self.pong
                log.debug("PE %d: ignoring %s while awaiting PONG", self.pe_id, frame.type)

    def infer(self, inputs: Sequence[np.ndarray],
              output_specs: Sequence[TensorSpec] | None = None) -> tuple[list[np.ndarray], Stats]:
        """Run one inference: send ``inputs``, return the outputs and the PE's STATS."""
        pong = self.pong or self.ping()
        specs = tuple(output_specs) if output_specs is not None else self.output_specs
        blobs = self._input_bytes(inputs, pong)
        max_payload = int(pong.max_payload) or MAX_PAYLOAD
        window = max(1, int(pong.rx_window))
        unacked: deque[int] = deque()
        outputs: dict[int, dict[int, bytes]] = {}
        out_chunks: dict[int, int] = {}
        stats: Stats | None = None

        def handle(frame: Frame) -> None:
            nonlocal stats
            if frame.type == FrameType.ACK:
                acked = _unpack(unpack_ack, frame, self.pe_id).acked_seq
                if acked in unacked:           # cumulative: everything up to acked_seq
                    while unacked and unacked.popleft() != acked:
                        pass
            elif frame.type == FrameType.TENSOR:
                outputs.setdefault(frame.stream, {})[frame.chunk] = frame.payload
                out_chunks[frame.stream] = frame.nchunks
            elif frame.type == FrameType.STATS:
                stats = _unpack(unpack_stats, frame, self.pe_id)
            else:
                log.debug("PE %d: ignoring %s during inference", self.pe_id, frame.type)

        for index, blob in enumerate(blobs):
            chunks = list(chunk_tensor(blob, max_payload))
            for c, piece in enumerate(chunks):
                deadline = time.monotonic() + self.timeout
                while len(unacked) >= window:
                    handle(self._next_frame(deadline, f"ACK for input {index} chunk {c}"))
                unacked.append(self._send(FrameType.TENSOR, piece, stream=index, chunk=c,
                                          nchunks=len(chunks)))
        n_out = len(pong.output_bytes)
        deadline = time.monotonic() + self.timeout
        while stats is None:
            missing = [i for i in range(n_out)
                       if i not in out_chunks or len(outputs[i]) < out_chunks[i]]
            what = (f"output {missing[0]} (TENSOR)" if missing else "STATS")
            handle(self._next_frame(deadline, what))
        result = self._assemble(outputs, out_chunks, pong, specs)
        return result, stats

    # --- helpers --------------------------------------------------------------------------

    def _input_bytes(self, inputs: Sequence[np.ndarray], pong: PongInfo) -> list[bytes]:
        expected = list(pong.input_bytes)
        if len(inputs) != len(expected):
            raise UsageError(f"PE {self.pe_id} takes {len(expected)} input(s), got {len(inputs)}",
                             hint="pass one --input per model input")
        blobs = []
        for i, (arr, nbytes) in enumerate(zip(inputs, expected)):
            a = np.asarray(arr)
            if a.dtype.byteorder == ">":
                a = a.astype(a.dtype.newbyteorder("<"))
            blob = np.ascontiguousarray(a).tobytes()
            if len(blob) != nbytes:
                raise UsageError(
                    f"input {i} has {len(blob)} bytes ({a.dtype} {list(a.shape)}); "
                    f"PE {self.pe_id} expects {nbytes}",
                    hint="check the input's shape and dtype against the model's")
            blobs.append(blob)
        return blobs

    def _assemble(self, outputs: dict[int, dict[int, bytes]], out_chunks: dict[int, int],
                  pong: PongInfo, specs: Sequence[TensorSpec] | None) -> list[np.ndarray]:
        result = []
        for i, nbytes in enumerate(pong.output_bytes):
            parts = outputs.get(i, {})
            n = out_chunks.get(i, 0)
            if n == 0 or len(parts) < n:
                raise RunError(f"PE {self.pe_id} sent STATS before all of output {i} "
                               f"({len(parts)}/{n} chunks)", hint="check the PE's log")
            blob = b"".join(parts[c] for c in range(n))
            if len(blob) != nbytes:
                raise RunError(f"PE {self.pe_id} output {i} has {len(blob)} bytes, PONG said "
                               f"{nbytes}", hint="rebuild the image")
            if specs is not None and i < len(specs):
                spec = specs[i]
                arr: Any = np.frombuffer(blob, dtype=np.dtype(spec.dtype).newbyteorder("<"))
                if arr.nbytes != nbytes or arr.size != spec.num_elements:
                    raise RunError(f"PE {self.pe_id} output {i}: {nbytes} bytes do not make "
                                   f"{spec.dtype}{list(spec.shape)}",
                                   hint="the image and mesh.json disagree; rebuild")
                result.append(arr.reshape(spec.shape).astype(spec.dtype))
            else:
                result.append(np.frombuffer(blob, dtype=np.uint8).copy())
        return result


# --- the host in a mesh (CONTRACTS §6) ------------------------------------------------------------

#: READY (CONTRACTS §6)
READY = int(FrameType.READY)
#: seconds before the host sends unacknowledged TENSOR frames again (doubled while no ACK comes)
MESH_RTO = 0.5
MESH_MAX_RTO = 4.0


class MeshPeLink:
    """The host's side of one PE's link 0 in a mesh.

    The host is a sender into the PE like the fabric is on link 1: TENSOR frames carry a seq that
    counts per (host, PE) pair from 0, at most ``window`` are unacknowledged, and when the oldest
    has waited ``rto`` seconds every unacknowledged one is sent again in order (go-back-N). ACKs
    are consumed here; :meth:`receive` returns every other frame from the PE.
    """

    def __init__(self, port: SerialLike, pe_id: int, *, window: int = 3, rto: float = MESH_RTO):
        self.port = port
        self.pe_id = pe_id
        self.window = max(1, window)
        self.base_rto = rto
        self.rto = rto
        self.decoder = FrameDecoder()
        self.pong: PongInfo | None = None
        self.max_payload = MAX_PAYLOAD
        self._seq = 0
        self._queue: deque[Frame] = deque()
        self._inflight: list[tuple[Frame, float]] = []
        self.retransmissions = 0
        self.tx_bytes = 0
        self.rx_bytes = 0
        try:
            self.port.timeout = 0
        except (AttributeError, TypeError, ValueError):  # pragma: no cover
            pass

    def fileno(self) -> int:
        return self.port.fileno()  # type: ignore[attr-defined]

    @property
    def busy(self) -> bool:
        """True while frames wait to be sent or acknowledged."""
        return bool(self._queue or self._inflight)

    @property
    def oldest_unacked_age(self) -> float:
        """Seconds the oldest unacknowledged TENSOR frame has waited (0 when none)."""
        return time.monotonic() - self._inflight[0][1] if self._inflight else 0.0

    def send_control(self, ftype: int, payload: bytes = b"", *, stream: int = 0) -> None:
        """Write a control frame (PING, READY, ...) at once, outside the window."""
        frame = Frame(FrameType(ftype), HOST_ID, self.pe_id, stream, self._seq, 0, 1,
                      bytes(payload))
        self._write(encode(frame, max(MAX_PAYLOAD, len(frame.payload))))

    def send_tensor(self, stream: int, data: bytes) -> None:
        """Queue one tensor as TENSOR frames (sent by :meth:`pump` within the window)."""
        chunks = chunk_tensor(data, self.max_payload)
        for c, piece in enumerate(chunks):
            self._queue.append(Frame(FrameType.TENSOR, HOST_ID, self.pe_id, stream, self._seq, c,
                                     len(chunks), piece))
            self._seq = (self._seq + 1) & 0xFFFF

    def pump(self, now: float | None = None) -> None:
        """Send what the window allows; go back N on an ACK timeout."""
        now = time.monotonic() if now is None else now
        if self._inflight and now - self._inflight[0][1] >= self.rto:
            log.debug("PE %d link 0: no ACK in %.2f s, resending %d frame(s)", self.pe_id,
                      self.rto, len(self._inflight))
            self.retransmissions += len(self._inflight)
            self._inflight = [(f, now) for f, _ in self._inflight]
            for f, _ in self._inflight:
                self._write(encode(f, max(MAX_PAYLOAD, len(f.payload))))
            self.rto = min(MESH_MAX_RTO, self.rto * 2)
        while self._queue and len(self._inflight) < self.window:
            f = self._queue.popleft()
            self._inflight.append((f, now))
            self._write(encode(f, max(MAX_PAYLOAD, len(f.payload))))

    def receive(self) -> list[Frame]:
        """Read what the PE sent (without blocking); consume ACKs; return the other frames
        addressed to the host by this PE."""
        try:
            data = self.port.read(65536)
        except BlockingIOError:
            data = b""
        if not data:
            return []
        self.rx_bytes += len(data)
        result = []
        for frame in self.decoder.feed(data):
            if frame.src != self.pe_id or frame.dst != HOST_ID:
                log.debug("PE %d link 0: ignoring frame %s from %d to %d", self.pe_id,
                          frame.type, frame.src, frame.dst)
                continue
            if frame.type == FrameType.ACK:
                self._on_ack(_unpack(unpack_ack, frame, self.pe_id).acked_seq)
                continue
            result.append(frame)
        return result

    def _on_ack(self, acked: int) -> None:
        for i, (f, _) in enumerate(self._inflight):
            if f.seq == acked:
                del self._inflight[:i + 1]      # cumulative
                self.rto = self.base_rto
                return

    def _write(self, data: bytes) -> None:
        self.tx_bytes += len(data)
        self.port.write(data)


def ping_all(links: Sequence[MeshPeLink], timeout: float) -> dict[int, PongInfo]:
    """PING every PE (again every :data:`PING_RETRY_SECONDS` while it boots) until all answer.

    Sets each link's window and max payload from its PONG. RunError names the PEs that did not
    answer within ``timeout``.
    """
    import selectors
    pongs: dict[int, PongInfo] = {}
    deadline = time.monotonic() + timeout
    next_ping = 0.0
    with selectors.DefaultSelector() as sel:
        for link in links:
            sel.register(link.fileno(), selectors.EVENT_READ, link)
        while len(pongs) < len(links):
            now = time.monotonic()
            if now >= deadline:
                missing = [link.pe_id for link in links if link.pe_id not in pongs]
                raise RunError(f"PE(s) {missing} did not answer PING within {timeout:g} s",
                               hint="check that the PEs started (see their logs); a PE "
                                    "compiled with --host-protocol eembc speaks text, not "
                                    "frames: talk to it through 'pemesh serve'")
            if now >= next_ping:
                for link in links:
                    if link.pe_id not in pongs:
                        link.send_control(FrameType.PING)
                next_ping = now + PING_RETRY_SECONDS
            for key, _ in sel.select(min(0.05, max(0.0, deadline - now))):
                link = key.data
                for frame in link.receive():
                    if frame.type == FrameType.PONG and link.pe_id not in pongs:
                        pong = _unpack(unpack_pong, frame, link.pe_id)
                        link.pong = pong
                        link.window = max(1, int(pong.rx_window))
                        link.max_payload = int(pong.max_payload) or MAX_PAYLOAD
                        pongs[link.pe_id] = pong
                    elif frame.type == FrameType.ERROR:
                        raise pe_error(frame, link.pe_id, f"PE {link.pe_id}",
                                       "check the PE's log", "PONG")
    return pongs
