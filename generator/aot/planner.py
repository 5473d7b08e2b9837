"""Static memory planner for a stage's arena: intermediates and op-internal temporaries.

Algorithm (written down, as the brief asks):

* Every buffer has a size and a lifetime ``[first, last]`` in step indices (an intermediate lives
  from the step that writes it to the last step that reads it; an op-internal temporary lives
  only during its step).
* **Greedy by size** (the TFLite Micro ``GreedyMemoryPlanner`` idea): take buffers largest first;
  place each at the lowest aligned offset where it overlaps, in address, no already-placed buffer
  whose lifetime overlaps its own. Ties break on first use, then on buffer id, so the plan is
  deterministic.
* Greedy-by-size is a heuristic; for some lifetime patterns another order packs tighter. We run
  the same placement over a few orders (size, first use, longest lifetime, size×lifetime) and keep
  the smallest arena (first in that list on ties). Still deterministic.
* Greedy orders fail on the commonest shape of all, a chain whose tensor sizes alternate (a CNN):
  the optimum puts consecutive tensors at opposite ends of the arena. So a second strategy,
  **two-sided search**, fixes a target arena size ``A`` (the lower bound, then a few percent more,
  up to the best greedy size) and places buffers in first-use order, each at the lowest or the
  highest free aligned offset of a gap below ``A``, backtracking depth-first within a node budget.
  The first ``A`` that admits a placement wins if it beats the greedy plans.
* **Lower bound**: the maximum over steps of the total (aligned) size of buffers live at that
  step. No plan can be smaller; the tests check ``lower_bound <= arena`` and report the ratio.
* **Checker**: :func:`check_plan` verifies alignment and that no two buffers with overlapping
  lifetimes overlap in memory. Tests run it on every plan.

No buffer is ever moved at run time; the arena is one static array in the stage's C.
"""

from __future__ import annotations

from dataclasses import dataclass


def align_up(x: int, a: int) -> int:
    return (x + a - 1) // a * a


@dataclass(frozen=True)
class Buffer:
    """A buffer to place: ``name`` for reports, lifetime ``[first, last]`` inclusive."""

    name: str
    size: int
    first: int
    last: int

    def lives_with(self, other: "Buffer") -> bool:
        return self.first <= other.last and other.first <= self.last


@dataclass(frozen=True)
class Placement:
    buffer: Buffer
    offset: int


@dataclass(frozen=True)
class MemoryPlan:
    placements: tuple[Placement, ...]
    arena_size: int
    lower_bound: int
    alignment: int
    strategy: str

    @property
    def ratio(self) -> float:
        return self.arena_size / self.lower_bound if self.lower_bound else 1.0

    def offset_of(self, name: str) -> int:
        for p in self.placements:
            if p.buffer.name == name:
                return p.offset
        raise KeyError(name)

    def to_json(self) -> dict:
        return {
            "arena_size": self.arena_size, "lower_bound": self.lower_bound,
            "alignment": self.alignment, "strategy": self.strategy,
            "buffers": [{"name": p.buffer.name, "offset": p.offset, "size": p.buffer.size,
                         "first": p.buffer.first, "last": p.buffer.last} for p in self.placements],
        }

    def describe(self) -> str:
        """A plan printer: one line per buffer, by offset."""
        lines = [f"arena {self.arena_size} B (lower bound {self.lower_bound} B, "
                 f"ratio {self.ratio:.3f}, {self.strategy})"]
        for p in sorted(self.placements, key=lambda p: (p.offset, p.buffer.name)):
            b = p.buffer
            lines.append(f"  [{p.offset:7d}, {p.offset + b.size:7d})  steps {b.first:3d}..{b.last:3d}"
                         f"  {b.name}")
        return "\n".join(lines)


def lower_bound(buffers: list[Buffer], alignment: int = 16) -> int:
    if not buffers:
        return 0
    last_step = max(b.last for b in buffers)
    best = 0
    for step in range(last_step + 1):
        live = sum(align_up(b.size, alignment) for b in buffers if b.first <= step <= b.last)
        best = max(best, live)
    return best


def _place(order: list[Buffer], alignment: int) -> list[Placement]:
    placed: list[Placement] = []
    for buf in order:
        conflicts = sorted((p for p in placed if p.buffer.lives_with(buf)), key=lambda p: p.offset)
        offset = 0
        for p in conflicts:
            if offset + buf.size <= p.offset:
                break
            offset = max(offset, align_up(p.offset + p.buffer.size, alignment))
        placed.append(Placement(buf, offset))
    return placed


_ORDERS = {
    "greedy-by-size": lambda b: (-b.size, b.first, b.name),
    "first-use": lambda b: (b.first, -b.size, b.name),
    "longest-lifetime": lambda b: (-(b.last - b.first), -b.size, b.name),
    "size-x-lifetime": lambda b: (-b.size * (b.last - b.first + 1), b.first, b.name),
}


def _candidates(buf: Buffer, conflicts: list[Placement], arena: int, alignment: int) -> list[int]:
    """Lowest and highest aligned offsets of each free gap below ``arena`` that holds ``buf``."""
    out: list[int] = []
    start = 0
    for p in sorted(conflicts, key=lambda p: p.offset) + [None]:
        end = arena if p is None else p.offset
        low = align_up(start, alignment)
        if low + buf.size <= end:
            out.append(low)
            high = (end - buf.size) // alignment * alignment
            if high > low:
                out.append(high)
        if p is not None:
            start = max(start, p.offset + p.buffer.size)
    return out


def _two_sided(buffers: list[Buffer], arena: int, alignment: int,
               budget: int) -> list[Placement] | None:
    order = sorted(buffers, key=lambda b: (b.first, -b.size, b.name))
    placed: list[Placement] = []
    nodes = 0

    def rec(i: int) -> bool:
        nonlocal nodes
        if i == len(order):
            return True
        nodes += 1
        if nodes > budget:
            return False
        buf = order[i]
        conflicts = [p for p in placed if p.buffer.lives_with(buf)]
        for off in _candidates(buf, conflicts, arena, alignment):
            placed.append(Placement(buf, off))
            if rec(i + 1):
                return True
            placed.pop()
            if nodes > budget:
                return False
        return False

    return placed if rec(0) else None


def plan_memory(buffers: list[Buffer], alignment: int = 16, budget: int = 4000) -> MemoryPlan:
    """Place ``buffers`` in one arena; see the module docstring for the algorithm."""
    names = [b.name for b in buffers]
    if len(set(names)) != len(names):
        raise ValueError("buffer names must be unique")
    lb = lower_bound(buffers, alignment)
    best: MemoryPlan | None = None
    for strategy, key in _ORDERS.items():
        placements = _place(sorted(buffers, key=key), alignment)
        size = align_up(max((p.offset + p.buffer.size for p in placements), default=0), alignment)
        if best is None or size < best.arena_size:
            ordered = tuple(sorted(placements, key=lambda p: p.buffer.name))
            best = MemoryPlan(ordered, size, lb, alignment, strategy)
    assert best is not None
    if best.arena_size > lb:
        for factor in (1.0, 1.01, 1.02, 1.03, 1.05, 1.08, 1.12):
            target = align_up(int(lb * factor), alignment)
            if target >= best.arena_size:
                break
            placements = _two_sided(buffers, target, alignment, budget)
            if placements is not None:
                size = align_up(max((p.offset + p.buffer.size for p in placements), default=0),
                                alignment)
                best = MemoryPlan(tuple(sorted(placements, key=lambda p: p.buffer.name)), size,
                                  lb, alignment, "two-sided-search")
                break
    check_plan(best)
    return best


def check_plan(plan: MemoryPlan) -> None:
    """Raise AssertionError if two simultaneously live buffers overlap or one is misaligned."""
    ps = list(plan.placements)
    for p in ps:
        if p.offset % plan.alignment:
            raise AssertionError(f"{p.buffer.name} at {p.offset} is not {plan.alignment}-aligned")
        if p.offset + p.buffer.size > plan.arena_size:
            raise AssertionError(f"{p.buffer.name} ends past the arena ({plan.arena_size} B)")
    for i, a in enumerate(ps):
        for b in ps[i + 1:]:
            if a.buffer.lives_with(b.buffer) and a.offset < b.offset + b.buffer.size \
                    and b.offset < a.offset + a.buffer.size:
                raise AssertionError(
                    f"{a.buffer.name} [{a.offset}, {a.offset + a.buffer.size}) overlaps "
                    f"{b.buffer.name} [{b.offset}, {b.offset + b.buffer.size}) while both live")
