"""``pemesh run --trace T.json``: what happened in a run, as Chrome Trace Event JSON.

The file opens in Perfetto (ui.perfetto.dev, "Open trace file") and chrome://tracing. Tracks:

- process "PEs": a thread per PE with a complete event ("ph": "X") per inference, the PE's
  compute: it ends where the PE's first output of that run leaves it and lasts the run's
  cycles on the PE's own clock (SysTick ticks of 80 ns under QEMU, nanoseconds on a host PE);
- process "mesh links": a thread per directed link with an "X" event per frame crossing it
  (its duration the frame's bytes at the link's modeled rate); retransmissions and injected
  drops on a PE's link are instant events ("ph": "i") on that PE's track;
- process "host links": a thread per PE's link 0 with the host's sends and receives.

Timestamps are microseconds of host time since the run began (the PEs' clocks are emulated;
their spans are placed on host time by their output frames). Recording is cheap: an append of a
tuple per frame, from the fabric's thread and the runner's.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Mapping

from generator.wire import FrameType

#: UART baud of the host links (bits per byte with start and stop bits: 10)
HOST_LINK_BYTES_PER_S = 115200 / 10


def _type_name(t: int) -> str:
    try:
        return FrameType(int(t)).name
    except ValueError:
        return "READY" if int(t) == 9 else f"type {int(t)}"


class TraceRecorder:
    """Collects frame events during a run; :meth:`to_chrome` turns them into a trace."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.events: list[tuple[Any, ...]] = []

    def _us(self, t: float | None = None) -> float:
        return round(((time.monotonic() if t is None else t) - self.t0) * 1e6, 1)

    # hooks (called by the fabric and the runner) --------------------------------------------
    def routed(self, frame: Any, nbytes: int, path: tuple[tuple[int, int], ...]) -> None:
        """A frame the fabric routes from ``frame.src`` to ``frame.dst`` over ``path``."""
        self.events.append(("route", self._us(), frame.src, frame.dst, int(frame.type),
                            frame.stream, frame.chunk, nbytes, path))

    def fault(self, what: str, pe: int, frame: Any | None = None, count: int = 1) -> None:
        """A retransmission (``count`` frames) or an injected drop on PE ``pe``'s link 1."""
        self.events.append((what, self._us(), pe,
                            _type_name(frame.type) if frame is not None else "TENSOR", count))

    def host(self, direction: str, pe: int, frame: Any, nbytes: int) -> None:
        """A frame on PE ``pe``'s host link: ``"tx"`` (host → PE) or ``"rx"``."""
        self.events.append(("host_" + direction, self._us(), pe, int(frame.type),
                            frame.stream, frame.chunk, nbytes))

    # output ---------------------------------------------------------------------------------
    def to_chrome(self, pes: Mapping[int, Any], cycles: Mapping[int, int | None],
                  seconds_per_cycle: float, link_bytes_per_s: float) -> dict[str, Any]:
        """The trace: ``pes`` id → PE (``.name``, ``.stage``, ``.record.routes``),
        ``cycles`` id → cycles of a run, the PEs' clock and the mesh links' rate."""
        out: list[dict[str, Any]] = []
        meta = [("PEs", 1), ("mesh links", 2), ("host links", 3)]
        for name, pid in meta:
            out.append({"name": "process_name", "ph": "M", "pid": pid, "tid": 0,
                        "args": {"name": name}})
        for pe_id, pe in sorted(pes.items()):
            out.append({"name": "thread_name", "ph": "M", "pid": 1, "tid": pe_id,
                        "args": {"name": f"{pe.name} ({pe.stage})"}})
            out.append({"name": "thread_name", "ph": "M", "pid": 3, "tid": pe_id,
                        "args": {"name": f"{pe.name} link 0"}})
        link_tid: dict[tuple[int, int], int] = {}
        first_out = {pe_id: next(((r.pe, r.b) for r in pe.record.routes if r.kind == 1), None)
                     for pe_id, pe in pes.items()}
        for ev in self.events:
            kind, ts = ev[0], ev[1]
            if kind == "route":
                _, _, src, dst, ftype, stream, chunk, nbytes, path = ev
                for hop in path:
                    tid = link_tid.setdefault(hop, len(link_tid) + 1)
                    out.append({"name": _type_name(ftype), "ph": "X", "pid": 2, "tid": tid,
                                "ts": ts, "dur": round(nbytes / link_bytes_per_s * 1e6, 1),
                                "args": {"src": src, "dst": dst, "stream": stream,
                                         "chunk": chunk, "bytes": nbytes}})
                self._compute(out, pes, cycles, first_out, seconds_per_cycle, src, dst, stream,
                              ftype, chunk, ts)
            elif kind in ("retransmit", "drop"):
                _, _, pe, tname, count = ev
                out.append({"name": f"{kind} {tname}", "ph": "i", "s": "t", "pid": 3 if pe
                            not in pes else 1, "tid": pe, "ts": ts, "args": {"frames": count}})
            elif kind in ("host_tx", "host_rx"):
                _, _, pe, ftype, stream, chunk, nbytes = ev
                out.append({"name": f"{'→' if kind == 'host_tx' else '←'} {_type_name(ftype)}",
                            "ph": "X", "pid": 3, "tid": pe, "ts": ts,
                            "dur": round(nbytes / HOST_LINK_BYTES_PER_S * 1e6, 1),
                            "args": {"stream": stream, "chunk": chunk, "bytes": nbytes}})
                if kind == "host_rx":
                    self._compute(out, pes, cycles, first_out, seconds_per_cycle, pe, 0xFFFF,
                                  stream, ftype, chunk, ts)
        for (a, b), tid in link_tid.items():
            out.append({"name": "thread_name", "ph": "M", "pid": 2, "tid": tid,
                        "args": {"name": f"link {a}->{b}"}})
        return {"traceEvents": out, "displayTimeUnit": "ms",
                "otherData": {"generator": "pemesh", "clock": "host microseconds"}}

    @staticmethod
    def _compute(out, pes, cycles, first_out, seconds_per_cycle, src, dst, stream, ftype,
                 chunk, ts) -> None:
        """A compute span for ``src`` when this frame is the first chunk of its first output."""
        if src not in pes or int(ftype) != int(FrameType.TENSOR) or chunk != 0:
            return
        if first_out.get(src) != (dst, stream) or not cycles.get(src):
            return
        dur = round(cycles[src] * seconds_per_cycle * 1e6, 1)
        out.append({"name": "compute", "ph": "X", "pid": 1, "tid": src,
                    "ts": max(0.0, round(ts - dur, 1)), "dur": dur,
                    "args": {"cycles": cycles[src]}})

    def write(self, path: Path, doc: dict[str, Any]) -> None:
        Path(path).write_text(json.dumps(doc, separators=(",", ":")) + "\n")
