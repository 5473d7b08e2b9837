"""Spatial band splits: run the high-resolution front of a CNN as horizontal bands of rows.

A layer whose *activations* do not fit one PE (fp32 ResNet-8's first conv writes 64 KiB; a
96×96×3 fp32 input alone is 108 KiB) cannot be helped by splitting its weights
(:mod:`generator.partition.shard`). Such layers sit at the front of a CNN, where the image is
large and the channels few; they are split by output rows, as in MCUNetV2's patch-based
inference: each band computes a horizontal stripe of a layer's output from the stripe of input
rows its receptive field needs (a *halo* of a few rows more than its share).

This module is the geometry and the choice, in plain Python (no TVM); :mod:`.bands_rewrite`
reads the Relax graph into it and writes the chosen split back.

**The graph.** ``ops`` is the model's operators in program order (the model input first, as op
0). A *spatial* op maps output rows to input rows by a :class:`RowMap` (conv/pool: kernel,
stride, top/bottom padding; elementwise: identity). The *region* is the longest prefix of ops
that are spatial and read only the input and earlier region ops. An *articulation* tensor of
the region is one through which everything later depends on the region (nothing before it is
read after it): the model input, the end of a residual block, the output of a plain layer.

**A segment** ``(p, q, K)`` runs the region ops between articulations ``a_p`` (exclusive) and
``a_q`` (inclusive) as ``K`` bands: band ``j`` computes rows ``[j·H/K, (j+1)·H/K)`` of ``a_q``.
Walking the segment backwards from those rows gives every tensor's needed rows (the hull over
its readers; conv/pool: ``[o0·s − pt, (o1−1)·s − pt + k)`` clipped to the tensor, the clipped
part becoming that band's own padding). A band's input rows of ``a_p`` come from the bands of
``a_p`` that overlap them — its own and, for the halo, its neighbours' (halo exchange between
neighbours only); rows of the model input are cut by the host, so no PE receives the whole image.

**Memory of a band op**: the rows it holds of each input plus its output rows, times each
tensor's bytes per row (plus its weights on a PE whose code and data share one SRAM); a segment fits with ``K`` bands if every band op and every band's input
assembly (halo rows + own rows, in and out) fits ``avail`` bytes.

**The choice** is a dynamic programme over articulations, exact for this cost model:
``best[q] = min over p < q of best[p] + cost(p, q, K_min(p, q))``, ``best[0] = 0``, where
``K_min`` is the fewest bands with which the segment fits (more bands only recompute more halo
rows) and ``cost`` = MACs of all band ops (halo recomputation included) × cycles per MAC + rows
received × bytes per row × cycles per link byte. The split ends at the articulation ``a_q`` that
minimises ``best[q]`` plus the cost of gathering ``a_q``, among those after which the rest of the
model runs unsplit: the gathered tensor (its bands in, the whole out) and every later op's
inputs and output fit a PE. The tests compare the programme with exhaustive search over every
set of cuts and band counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RowMap:
    """How output rows read input rows: row ``o`` reads ``[o·stride − pad_top, .. + kernel)``."""

    kernel: int = 1
    stride: int = 1
    pad_top: int = 0
    pad_bottom: int = 0

    def need(self, o0: int, o1: int, in_rows: int) -> tuple[int, int, int, int]:
        """Input rows ``[a, b)`` for output rows ``[o0, o1)``, and the band's top and bottom
        padding (the part of the window outside the tensor)."""
        a = o0 * self.stride - self.pad_top
        b = (o1 - 1) * self.stride - self.pad_top + self.kernel
        return max(a, 0), min(b, in_rows), max(0, -a), max(0, b - in_rows)


IDENTITY = RowMap()


@dataclass(frozen=True)
class SOp:
    """One operator of the graph as the band geometry sees it."""

    name: str
    rows: int                                   # output rows (the H of its output)
    row_bytes: int                              # output bytes per row
    macs_per_row: int = 0
    inputs: tuple[tuple[str, RowMap], ...] = ()  # spatial inputs (region ops) and their maps
    io_bytes: int = 0                           # unsplit: bytes of its inputs and output
    spatial: bool = True
    #: a global pool (sum/mean/max over all rows): as the last op of the split it runs as
    #: partial pools of its input's bands, combined after the gather
    reducible: bool = False
    weight_bytes: int = 0                       # its constants (count where code and data share)


@dataclass(frozen=True)
class Segment:
    """Region ops ``(articulation p, articulation q]`` run as ``bands`` bands of ``a_q``."""

    first: int                                  # op index of a_p (exclusive)
    last: int                                   # op index of a_q (inclusive)
    bands: int
    cost: float
    peak_bytes: int
    partial: bool = False                       # bands of a_q's input, pooled partially


@dataclass(frozen=True)
class BandChoice:
    segments: tuple[Segment, ...]
    cost: float                                 # of the banded front, gather included

    @property
    def cut(self) -> int:
        """Op index of the tensor gathered whole (the end of the split front)."""
        return self.segments[-1].last


@dataclass
class Geometry:
    """The region of ``ops`` and what its segments need."""

    ops: list[SOp]
    avail: int                                  # bytes a band op may hold on one PE
    cycles_per_mac: float = 10.0
    cycles_per_link_byte: float = 10.0
    max_bands: int = 64
    weights_in_room: bool = False               # one SRAM for code and data: weights count
    index: dict[str, int] = field(init=False)
    region: int = field(init=False)             # ops[0 .. region) are the region
    articulations: list[int] = field(init=False)

    def __post_init__(self) -> None:
        self.index = {op.name: i for i, op in enumerate(self.ops)}
        self.region = 1
        while (self.region < len(self.ops) and self.ops[self.region].spatial
               and self.ops[self.region].inputs
               and all(self.index.get(n, len(self.ops)) < self.region
                       for n, _ in self.ops[self.region].inputs)):
            self.region += 1
        self.articulations = self._articulations()
        self._walks: dict[tuple[int, int, int, bool], dict[int, tuple[int, int]]] = {}

    def _articulations(self) -> list[int]:
        last_read: dict[int, int] = {}
        for i, op in enumerate(self.ops):
            for n, _ in op.inputs:
                last_read[self.index[n]] = i
        out = []
        for i in range(self.region):
            # nothing produced at or before i (other than i) is read after i
            if all(last_read.get(k, -1) <= i for k in range(i)):
                out.append(i)
        return out

    # --- rows ---------------------------------------------------------------------------------

    def band_rows(self, q: int, k: int, partial: bool = False) -> list[tuple[int, int]]:
        h = self.ops[self._src(q)].rows if partial else self.ops[q].rows
        return [(j * h // k, (j + 1) * h // k) for j in range(k)]

    def _src(self, q: int) -> int:
        return self.index[self.ops[q].inputs[0][0]]

    def needs(self, p: int, q: int, r0: int, r1: int, partial: bool = False
              ) -> dict[int, tuple[int, int]]:
        """Needed rows of every tensor of segment ``(p, q]`` (and of ``a_p``) for rows
        ``[r0, r1)`` of ``a_q``. (``a_p`` is an articulation: the walk from ``a_q`` down to the
        input gives the same rows for ops ``≥ p``, so that walk is done once per band.)
        ``partial``: the rows are of ``a_q``'s input, pooled partially by ``a_q``."""
        full = self._walk(q, r0, r1, partial)
        return {i: v for i, v in full.items() if i >= p}

    def _walk(self, q: int, r0: int, r1: int, partial: bool = False
              ) -> dict[int, tuple[int, int]]:
        key = (q, r0, r1, partial)
        if key in self._walks:
            return self._walks[key]
        need: dict[int, tuple[int, int]] = {q: (r0, r1)}
        if partial:
            need = {q: (0, 1), self._src(q): (r0, r1)}
        for i in range(q, 0, -1):
            if i not in need or (partial and i == q):
                continue
            o0, o1 = need[i]
            for n, rm in self.ops[i].inputs:
                src = self.index[n]
                a, b, _, _ = rm.need(o0, o1, self.ops[src].rows)
                if src in need:
                    a, b = min(a, need[src][0]), max(b, need[src][1])
                need[src] = (a, b)
        self._walks[key] = need
        return need

    # --- one segment ----------------------------------------------------------------------------

    def segment(self, p: int, q: int, k: int, partial: bool = False) -> Segment | None:
        """The segment ``(p, q]`` with ``k`` bands, or None if a band op does not fit."""
        cost, peak = 0.0, 0
        for r0, r1 in self.band_rows(q, k, partial):
            if r1 <= r0:
                return None
            need = self._walk(q, r0, r1, partial)   # rows of ops >= p: those of (p, q]
            a, b = need[p]
            in_bytes = (b - a) * self.ops[p].row_bytes
            assemble = in_bytes if p == 0 else 2 * in_bytes     # host-cut, or halo concat
            peak = max(peak, assemble)
            if peak > self.avail:
                return None
            cost += in_bytes * self.cycles_per_link_byte
            for i in range(p + 1, q + 1):
                op = self.ops[i]
                o0, o1 = need[i]
                held = (o1 - o0) * op.row_bytes + (op.weight_bytes if self.weights_in_room else 0)
                for n, _ in op.inputs:
                    s = self.index[n]
                    held += (need[s][1] - need[s][0]) * self.ops[s].row_bytes
                if held > self.avail:
                    return None
                peak = max(peak, held)
                share = 1.0
                if partial and i == q:
                    share = (r1 - r0) / self.ops[self._src(q)].rows
                cost += (o1 - o0) * op.macs_per_row * self.cycles_per_mac * share
        if peak > self.avail:
            return None
        return Segment(p, q, k, cost, peak, partial)

    def fewest_bands(self, p: int, q: int, partial: bool = False) -> Segment | None:
        rows = self.ops[self._src(q)].rows if partial else self.ops[q].rows
        for k in range(1, min(rows, self.max_bands) + 1):
            s = self.segment(p, q, k, partial)
            if s is not None:
                return s
        return None

    def finals(self, p: int):
        """Segments from ``a_p`` that may end the split: (segment, q) with the rest fitting —
        the partial pool of a global pool among them."""
        for q in self.articulations:
            if q > p and self.ops[q].reducible and self.rest_fits(q):
                s = self.fewest_bands(p, q, partial=True)
                if s is not None:
                    yield s

    # --- the rest --------------------------------------------------------------------------------

    def rest_fits(self, q: int) -> bool:
        """After gathering ``a_q`` (its bands in, the whole tensor out), every later op runs
        unsplit on one PE."""
        whole = self.ops[q].rows * self.ops[q].row_bytes
        if q > 0 and 2 * whole > self.avail:
            return False
        return all(op.io_bytes <= self.avail for op in self.ops[q + 1:])

    def gather_cost(self, q: int) -> float:
        return self.ops[q].rows * self.ops[q].row_bytes * self.cycles_per_link_byte

    def needs_split(self) -> bool:
        return not self.rest_fits(0)


def choose_bands(geo: Geometry) -> BandChoice | None:
    """The cheapest split of the region into segments (module docstring), or None if the
    model runs unsplit or no split makes it fit."""
    if not geo.needs_split():
        return None
    arts = geo.articulations
    inf = float("inf")
    best: dict[int, float] = {0: 0.0}
    back: dict[int, Segment] = {}
    for qi in range(1, len(arts)):
        q = arts[qi]
        for pi in range(qi):
            p = arts[pi]
            if best.get(p, inf) == inf:
                continue
            s = geo.fewest_bands(p, q)
            if s is None:
                continue
            v = best[p] + s.cost
            if v < best.get(q, inf):
                best[q], back[q] = v, s
    ends = [(best[q] + geo.gather_cost(q), q, None) for q in arts[1:]
            if q in best and geo.rest_fits(q)]
    for p in list(best):
        for s in geo.finals(p):
            ends.append((best[p] + s.cost + geo.gather_cost(s.last), s.last, s))
    if not ends:
        return None
    total, q, last = min(ends, key=lambda e: (e[0], e[1]))
    segs = []
    if last is not None:
        segs.append(last)
        q = last.first
    while q != 0:
        segs.append(back[q])
        q = back[q].first
    return BandChoice(tuple(reversed(segs)), total)


def brute_force_bands(geo: Geometry) -> float:
    """Exhaustive search (for tests): every set of cuts (each segment with its fewest bands)."""
    arts = geo.articulations
    best = float("inf")

    def rec(pi: int, acc: float) -> None:
        nonlocal best
        p = arts[pi]
        if pi > 0 and geo.rest_fits(p):
            best = min(best, acc + geo.gather_cost(p))
        for s in geo.finals(p):
            best = min(best, acc + s.cost + geo.gather_cost(s.last))
        for qi in range(pi + 1, len(arts)):
            q = arts[qi]
            s = geo.fewest_bands(p, q)
            if s is not None:
                rec(qi, acc + s.cost)

    rec(0, 0.0)
    return best
