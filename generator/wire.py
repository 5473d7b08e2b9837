"""The pemesh wire format in Python, byte-compatible with ``zephyr_app/src/frame.c``.

docs/CONTRACTS.md §1 is the specification. All integers are little-endian::

    sync A5 5A | ver | type | src | dst | stream | seq | chunk | nchunks | len | payload | crc32

The CRC is zlib's CRC-32 over everything after the sync up to the end of the payload.
:class:`FrameDecoder` follows the C decoder step by step (same counters), so both sides agree
on the shared vectors in ``tests/vectors/frames.json``.
"""

from __future__ import annotations

import struct
import time
import zlib
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Sequence

SYNC = b"\xA5\x5A"
PROTO_VERSION = 1
HEADER_SIZE = 18
FRAME_OVERHEAD = 22
HOST_ID = 0xFFFF
MAX_PAYLOAD = 256

_HEADER = struct.Struct("<2sBBHHHHHHH")  # sync, ver, type, src, dst, stream, seq, chunk, nchunks, len
_CRC = struct.Struct("<I")


class FrameType(IntEnum):
    """Frame types (CONTRACTS §1)."""

    TENSOR = 1
    CONFIG = 2
    PING = 3
    PONG = 4
    STATS = 5
    LOG = 6
    ERROR = 7
    ACK = 8
    READY = 9


_MAX_TYPE = max(FrameType)


@dataclass(frozen=True)
class Frame:
    """One frame. ``payload`` is at most ``max_payload`` bytes."""

    type: FrameType
    src: int
    dst: int
    stream: int = 0
    seq: int = 0
    chunk: int = 0
    nchunks: int = 1
    payload: bytes = b""


def encode(frame: Frame, max_payload: int = MAX_PAYLOAD) -> bytes:
    """Encode a frame to its wire bytes.

    Raises ValueError on a payload longer than ``max_payload``, a chunk count of 0, a chunk
    index not below the count, or a field that does not fit 16 bits.
    """
    if len(frame.payload) > max_payload:
        raise ValueError(f"payload of {len(frame.payload)} bytes exceeds max_payload {max_payload}")
    if frame.nchunks < 1:
        raise ValueError("nchunks must be >= 1")
    if not 0 <= frame.chunk < frame.nchunks:
        raise ValueError(f"chunk {frame.chunk} is not below nchunks {frame.nchunks}")
    FrameType(frame.type)  # raises ValueError on an unknown type
    try:
        header = _HEADER.pack(SYNC, PROTO_VERSION, int(frame.type), frame.src, frame.dst,
                              frame.stream, frame.seq & 0xFFFF, frame.chunk, frame.nchunks,
                              len(frame.payload))
    except struct.error as exc:
        raise ValueError(f"frame field out of range: {exc}") from exc
    body = header + bytes(frame.payload)
    return body + _CRC.pack(zlib.crc32(body[2:]) & 0xFFFFFFFF)


#: seconds without a byte after which a partly received frame is abandoned (the PEs' default
#: CONFIG_PEMESH_BYTE_TIMEOUT_MS)
BYTE_TIMEOUT_S = 0.1


class FrameDecoder:
    """Robust stream decoder: feed bytes, get whole CRC-checked frames.

    A bad version, type, length or chunk field (``nchunks`` 0, ``chunk >= nchunks``), or a bad
    CRC counts one bad frame, drops **one** byte and rescans. A frame whose claimed extent holds
    a whole good frame that starts after its sync and ends before it (a truncated frame followed
    by a real one) is a bad frame as soon as that inner frame is complete: the decoder
    resynchronises there instead of waiting for the missing bytes. Every byte fed ends up in a
    delivered frame, in ``skipped_bytes``, or still buffered (``pending``); the result does not
    depend on how the bytes are split into :meth:`feed` calls. Step by step the same as the C
    decoder (``zephyr_app/src/frame.c``).
    """

    def __init__(self, max_payload: int = MAX_PAYLOAD):
        self.max_payload = max_payload
        self._buf = bytearray()
        self._look = 0      # where the scan for a frame inside the one at buf[0] resumes
        self.rx_frames = 0
        self.bad_frames = 0
        self.skipped_bytes = 0
        self.last_rx = 0.0  # time.monotonic() of the last byte fed

    @property
    def pending(self) -> int:
        """Bytes buffered but not yet decided."""
        return len(self._buf)

    def abandon(self) -> bool:
        """Give up the pending bytes (a frame that stopped arriving): one bad frame, skipped
        bytes; True when there were any. The C decoder's pemesh_decoder_abandon()."""
        if not self._buf:
            return False
        self.bad_frames += 1
        self.skipped_bytes += len(self._buf)
        self._buf.clear()
        self._look = 0
        return True

    def expire(self, now: float, timeout: float = BYTE_TIMEOUT_S) -> bool:
        """Abandon a partly received frame when no byte came for ``timeout`` seconds."""
        return bool(self._buf) and now - self.last_rx >= timeout and self.abandon()

    def feed(self, data: bytes) -> list[Frame]:
        """Add received bytes; return every frame they complete, in order."""
        if data:
            self.last_rx = time.monotonic()
        self._buf.extend(data)
        frames: list[Frame] = []
        while True:
            frame = self._next()
            if frame is None:
                return frames
            frames.append(frame)

    def _drop(self, n: int) -> None:
        del self._buf[:n]
        self._look = 0
        self.skipped_bytes += n

    def _header_ok(self, at: int) -> bool:
        """The 18 header bytes at ``at`` are plausible (version, type, length, chunk fields)."""
        (_, ver, ftype, _src, _dst, _stream, _seq, chunk, nchunks,
         n) = _HEADER.unpack_from(self._buf, at)
        return (ver == PROTO_VERSION and FrameType.TENSOR <= ftype <= _MAX_TYPE
                and n <= self.max_payload and chunk < nchunks)

    def _crc_ok(self, at: int, n: int) -> bool:
        buf = self._buf
        (crc,) = _CRC.unpack_from(buf, at + HEADER_SIZE + n)
        return zlib.crc32(bytes(buf[at + 2:at + HEADER_SIZE + n])) == crc

    def _inner(self, end: int) -> bool:
        """True when a sync inside the frame at buf[0] (claiming ``end`` bytes) starts a whole
        good frame that ends before ``end`` (the C decoder's pemesh_decoder_inner)."""
        buf = self._buf
        size = len(buf)
        lim = min(size, end - FRAME_OVERHEAD)
        undecided = 0
        p = max(self._look, 1)
        while p < lim:
            p = buf.find(SYNC[0], p, lim)
            if p < 0:
                p = lim
                break
            if p + 1 >= size:
                undecided = undecided or p
                break
            if buf[p + 1] != SYNC[1]:
                p += 1
                continue
            if p + HEADER_SIZE > size:
                undecided = undecided or p
                break
            if self._header_ok(p):
                n = int.from_bytes(buf[p + 16:p + 18], "little")
                yend = p + FRAME_OVERHEAD + n
                if yend < end:
                    if yend > size:
                        undecided = undecided or p
                    elif self._crc_ok(p, n):
                        return True
            p += 1
        self._look = undecided or p
        return False

    def _next(self) -> Frame | None:
        buf = self._buf
        while buf:
            if buf[0] != SYNC[0]:
                i = buf.find(SYNC[0], 1)
                self._drop(len(buf) if i < 0 else i)
                continue
            if len(buf) < 2:
                return None
            if buf[1] != SYNC[1]:
                self._drop(1)
                continue
            if len(buf) < HEADER_SIZE:
                return None
            (_, _ver, ftype, src, dst, stream, seq, chunk, nchunks,
             n) = _HEADER.unpack_from(buf)
            total = FRAME_OVERHEAD + n
            if not self._header_ok(0) or self._inner(total):
                self.bad_frames += 1
                self._drop(1)
                continue
            if len(buf) < total:
                return None
            if not self._crc_ok(0, n):
                self.bad_frames += 1
                self._drop(1)
                continue
            frame = Frame(FrameType(ftype), src, dst, stream, seq, chunk, nchunks,
                          bytes(buf[HEADER_SIZE:HEADER_SIZE + n]))
            del buf[:total]
            self._look = 0
            self.rx_frames += 1
            return frame
        return None


def chunk_tensor(data: bytes, max_payload: int = MAX_PAYLOAD) -> list[bytes]:
    """Split tensor bytes into TENSOR payloads: all but the last exactly ``max_payload``.

    An empty tensor is one empty chunk (``nchunks`` is always at least 1).
    """
    data = bytes(data)
    if not data:
        return [b""]
    return [data[i:i + max_payload] for i in range(0, len(data), max_payload)]


def tensor_frames(data: bytes, *, src: int, dst: int, stream: int, first_seq: int = 0,
                  max_payload: int = MAX_PAYLOAD) -> list[Frame]:
    """The TENSOR frames carrying one tensor (seq numbers from ``first_seq``, wrapping)."""
    chunks = chunk_tensor(data, max_payload)
    return [Frame(FrameType.TENSOR, src, dst, stream, (first_seq + i) & 0xFFFF, i, len(chunks), c)
            for i, c in enumerate(chunks)]


# --- payloads ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PongInfo:
    """PONG payload: what a PE tells the host about itself."""

    proto_version: int
    max_payload: int
    rx_window: int
    pe_id: int
    input_bytes: tuple[int, ...]
    output_bytes: tuple[int, ...]


def pack_pong(info: PongInfo) -> bytes:
    """Encode a PONG payload."""
    return (struct.pack("<6H", info.proto_version, info.max_payload, info.rx_window, info.pe_id,
                        len(info.input_bytes), len(info.output_bytes))
            + struct.pack(f"<{len(info.input_bytes)}I", *info.input_bytes)
            + struct.pack(f"<{len(info.output_bytes)}I", *info.output_bytes))


def unpack_pong(payload: bytes) -> PongInfo:
    """Decode a PONG payload (ValueError when it is too short)."""
    if len(payload) < 12:
        raise ValueError(f"PONG payload of {len(payload)} bytes is shorter than 12")
    ver, maxp, window, pe_id, ni, no = struct.unpack_from("<6H", payload)
    if len(payload) < 12 + 4 * (ni + no):
        raise ValueError(f"PONG payload of {len(payload)} bytes too short for {ni}+{no} tensors")
    sizes = struct.unpack_from(f"<{ni + no}I", payload, 12)
    return PongInfo(ver, maxp, window, pe_id, tuple(sizes[:ni]), tuple(sizes[ni:]))


@dataclass(frozen=True)
class Ack:
    """ACK payload: the receiver consumed TENSOR frame ``acked_seq``."""

    acked_seq: int
    credits: int


def pack_ack(ack: Ack) -> bytes:
    """Encode an ACK payload."""
    return struct.pack("<HH", ack.acked_seq & 0xFFFF, ack.credits)


def unpack_ack(payload: bytes) -> Ack:
    """Decode an ACK payload."""
    if len(payload) < 4:
        raise ValueError(f"ACK payload of {len(payload)} bytes is shorter than 4")
    return Ack(*struct.unpack_from("<HH", payload))


def pack_ready(stream: int, count: int | None = None) -> bytes:
    """Encode a READY payload: the consumer's input ``stream`` is free again, having consumed
    ``count`` tensors (mod 2^16; CONTRACTS §6). Without ``count``, the 2-byte form that
    always gives the credit."""
    if count is None:
        return struct.pack("<H", stream)
    return struct.pack("<HH", stream, count & 0xFFFF)


def unpack_ready(payload: bytes) -> int:
    """Decode a READY payload: the input stream that is free again."""
    if len(payload) < 2:
        raise ValueError(f"READY payload of {len(payload)} bytes is shorter than 2")
    return struct.unpack_from("<H", payload)[0]


def ready_count(payload: bytes) -> int | None:
    """The consumed-tensor count of a READY payload (None for the 2-byte form)."""
    return struct.unpack_from("<H", payload, 2)[0] if len(payload) >= 4 else None


#: PEMESH_STAT_WAITING kinds (bits 31..24 of Stats.waiting)
WAIT_NONE, WAIT_INPUT, WAIT_CREDIT = 0, 1, 2


def describe_wait(waiting: int) -> str:
    """Stats.waiting in words: what a STAGE PE waits for."""
    kind, tensor, pe = waiting >> 24, (waiting >> 16) & 0xFF, waiting & 0xFFFF
    who = "the host" if pe == HOST_ID else f"PE {pe}"
    if kind == WAIT_INPUT:
        return f"waits for the rest of input {tensor} from {who}"
    if kind == WAIT_CREDIT:
        return f"waits for a READY credit from {who} to send output {tensor}"
    return "waits for nothing (idle)"


#: STATS value names in wire order (append only); *_lo/*_hi pairs become one 64-bit field
STATS_FIELDS = ("inferences", "cycles_lo", "cycles_hi", "rx_frames", "rx_bad_frames",
                "rx_skipped_bytes", "tx_frames", "run_status", "accel_calls", "accel_macs_lo",
                "accel_macs_hi", "rx_duplicates", "rx_gaps", "rx_dropped", "ready_sent",
                "ready_received", "credit_stalls", "rx_wrong_source", "ready_resent",
                "ready_stale", "waiting")
#: the plain counters after the first eleven values, in wire order
_STATS_TAIL = STATS_FIELDS[11:]


@dataclass(frozen=True)
class Stats:
    """STATS payload with the lo/hi pairs combined; values a PE did not send are 0."""

    inferences: int = 0
    cycles: int = 0
    rx_frames: int = 0
    rx_bad_frames: int = 0
    rx_skipped_bytes: int = 0
    tx_frames: int = 0
    run_status: int = 0
    accel_calls: int = 0
    accel_macs: int = 0
    rx_duplicates: int = 0      # TENSOR frames older than expected: re-ACKed, ignored
    rx_gaps: int = 0            # TENSOR frames newer than expected: dropped unACKed
    rx_dropped: int = 0         # good frames not for this PE or not handled
    ready_sent: int = 0         # READY frames sent
    ready_received: int = 0     # READY frames that gave a credit back
    credit_stalls: int = 0      # runs delayed because an output waited for a credit
    rx_wrong_source: int = 0    # STAGE: TENSOR frames from a PE not the input's SOURCE
    ready_resent: int = 0       # STAGE: READY frames sent again for a still-empty input
    ready_stale: int = 0        # STAGE: READY frames for a tensor already sent (ignored)
    waiting: int = 0            # STAGE: what the PE waits for (describe_wait)
    extra: tuple[int, ...] = field(default=())  # values appended by a newer PE


def pack_stats(stats: Stats) -> bytes:
    """Encode a STATS payload (all known values plus ``extra``)."""
    values = [stats.inferences, stats.cycles & 0xFFFFFFFF, stats.cycles >> 32, stats.rx_frames,
              stats.rx_bad_frames, stats.rx_skipped_bytes, stats.tx_frames,
              stats.run_status & 0xFFFFFFFF, stats.accel_calls, stats.accel_macs & 0xFFFFFFFF,
              stats.accel_macs >> 32, *(getattr(stats, n) for n in _STATS_TAIL), *stats.extra]
    return struct.pack(f"<HH{len(values)}I", len(values), 0, *values)


def unpack_stats(payload: bytes) -> Stats:
    """Decode a STATS payload (shorter lists from older PEs are padded with 0)."""
    if len(payload) < 4:
        raise ValueError(f"STATS payload of {len(payload)} bytes is shorter than 4")
    (n, _reserved) = struct.unpack_from("<HH", payload)
    if len(payload) < 4 + 4 * n:
        raise ValueError(f"STATS payload of {len(payload)} bytes too short for {n} values")
    values = list(struct.unpack_from(f"<{n}I", payload, 4))
    known = dict(zip(STATS_FIELDS, values + [0] * (len(STATS_FIELDS) - len(values))))
    status = known["run_status"]
    return Stats(
        inferences=known["inferences"], cycles=known["cycles_lo"] | known["cycles_hi"] << 32,
        rx_frames=known["rx_frames"], rx_bad_frames=known["rx_bad_frames"],
        rx_skipped_bytes=known["rx_skipped_bytes"], tx_frames=known["tx_frames"],
        run_status=status - (1 << 32) if status & 0x80000000 else status,
        accel_calls=known["accel_calls"],
        accel_macs=known["accel_macs_lo"] | known["accel_macs_hi"] << 32,
        **{n: known[n] for n in _STATS_TAIL},
        extra=tuple(values[len(STATS_FIELDS):]))


@dataclass(frozen=True)
class ErrorInfo:
    """ERROR payload: a negative errno (or a model status) and a message."""

    code: int
    message: str


def pack_error(err: ErrorInfo) -> bytes:
    """Encode an ERROR payload."""
    return struct.pack("<i", err.code) + err.message.encode("utf-8")


def unpack_error(payload: bytes) -> ErrorInfo:
    """Decode an ERROR payload (invalid UTF-8 is replaced, never raised)."""
    if len(payload) < 4:
        raise ValueError(f"ERROR payload of {len(payload)} bytes is shorter than 4")
    (code,) = struct.unpack_from("<i", payload)
    return ErrorInfo(code, payload[4:].decode("utf-8", errors="replace"))


# --- the per-PE identity block (struct pemesh_pe_config, CONTRACTS §1 and §6) -------------------

PE_CONFIG_MAGIC = 0x434D4550       # "PEMC"
PE_CONFIG_VERSION = 1
PE_CONFIG_SIZE = 128
ROUTE_BYTES = 112
ROUTE_SIZE = 6
MAX_ROUTES = ROUTE_BYTES // ROUTE_SIZE   # 18
ROLE_SINGLE = 0
ROLE_STAGE = 1
#: AppSpec.role → pemesh_pe_config.role (include/pemesh/config.h, enum pemesh_role)
ROLE_VALUES = {"single": ROLE_SINGLE, "stage": ROLE_STAGE}
ROUTE_OUTPUT = 1
ROUTE_SOURCE = 2
FLAG_HOST_OUTPUTS = 1 << 0
_PE_CONFIG = struct.Struct("<IHHBBHI")  # magic, version, pe_id, role, n_routes, reserved, flags
_ROUTE = struct.Struct("<BBHH")         # kind, a, pe, b


@dataclass(frozen=True)
class PeConfig:
    """A decoded ``struct pemesh_pe_config``; ``routes`` are ``(kind, a, pe, b)`` tuples."""

    pe_id: int
    role: int = ROLE_SINGLE
    routes: tuple[tuple[int, int, int, int], ...] = ()
    flags: int = 0


def pack_routes(routes: Sequence[Sequence[int]]) -> bytes:
    """The 112-byte routes field: ``(kind, a, pe, b)`` as 6-byte entries, zero after them
    (ValueError on more than 18 routes or a field out of range)."""
    if len(routes) > MAX_ROUTES:
        raise ValueError(f"{len(routes)} routes do not fit the config block (at most "
                         f"{MAX_ROUTES})")
    try:
        packed = b"".join(_ROUTE.pack(*r) for r in routes)
    except struct.error as exc:
        raise ValueError(f"config field out of range: {exc}") from exc
    return packed + bytes(ROUTE_BYTES - len(packed))


def pack_pe_config(cfg: PeConfig) -> bytes:
    """The 128 little-endian bytes of a config block (ValueError on more than 18 routes or a
    field out of range)."""
    routes = pack_routes(cfg.routes)
    try:
        head = _PE_CONFIG.pack(PE_CONFIG_MAGIC, PE_CONFIG_VERSION, cfg.pe_id, cfg.role,
                               len(cfg.routes), 0, cfg.flags)
    except struct.error as exc:
        raise ValueError(f"config field out of range: {exc}") from exc
    return head + routes


def unpack_pe_config(raw: bytes) -> PeConfig:
    """Decode a config block (ValueError on a bad size, magic, version or route count)."""
    if len(raw) != PE_CONFIG_SIZE:
        raise ValueError(f"a pemesh_pe_config is {PE_CONFIG_SIZE} bytes, not {len(raw)}")
    magic, version, pe_id, role, n, _reserved, flags = _PE_CONFIG.unpack_from(raw)
    if magic != PE_CONFIG_MAGIC or version != PE_CONFIG_VERSION:
        raise ValueError(f"not a pemesh_pe_config v{PE_CONFIG_VERSION}: magic {magic:#010x} "
                         f"(expected {PE_CONFIG_MAGIC:#010x}), version {version}")
    if n > MAX_ROUTES:
        raise ValueError(f"pemesh_pe_config claims {n} routes (at most {MAX_ROUTES})")
    routes = tuple(_ROUTE.unpack_from(raw, _PE_CONFIG.size + ROUTE_SIZE * i) for i in range(n))
    return PeConfig(pe_id, role, routes, flags)
