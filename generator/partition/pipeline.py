"""Partition a prepared model into pipeline stages that each fit one PE.

The unit of partitioning is a *step* of the fused program (``aot.graph.Program``): one fused
operator call. A stage is a contiguous range of steps in program order (a topological order).

* **Fit.** A stage fits a PE if RAM = arena + io buffers + runtime reserve ≤ RAM and flash =
  weights + operator code + runtime reserve ≤ flash (or, on a PE with one SRAM for code and data,
  their sum ≤ that SRAM), it has at most ``max_tensors`` inputs and outputs each, and its routes
  (one per input, one per outside reader step of each output) fit the routing table. The arena is estimated by its lower bound (max live bytes; the planner
  reaches it on chains) and re-checked with the real plan when the stage is emitted.
* **Objective.** Among the splits in which every stage fits and that use at most ``max_stages``
  PEs, minimise the slowest stage's cost (cycles); among equally slow splits, use fewest stages.
* **Chains: exact.** Dynamic programming over (stages used, steps covered):
  ``best[k][j] = min over i of max(best[k-1][i], cost(i, j))`` for fitting ranges ``[i, j)``.
  The tests compare it with exhaustive search on small cases.
* **DAGs.** The same DP over the program's fixed topological order; a tensor read by a later,
  non-adjacent stage (a residual skip) is sent by its producer directly to every consumer stage
  (the fabric routes it), so no intermediate PE stores or forwards it. This is exact for the
  given order, a heuristic over all orders.
* **Cost model.** cycles(step) = MACs × cycles_per_mac + touched bytes × cycles_per_byte, plus,
  per stage, received bytes × cycles_per_link_byte. Coefficients come from the PE kind.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from generator.errors import DoesNotFitError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PeBudget:
    """What one PE offers a stage."""

    ram_bytes: int
    flash_bytes: int
    runtime_ram: int
    runtime_flash: int
    unified: bool = False          # one SRAM for code and data
    cycles_per_mac: float = 10.0
    cycles_per_byte: float = 2.0
    cycles_per_link_byte: float = 10.0
    code_factor: float = 0.25      # built bytes per byte of op C source (measured ~0.2–0.3)
    max_tensors: int = 8           # io tensors per direction (CONFIG_PEMESH_MAX_TENSORS default)
    max_routes: int = 18           # routing table entries (pemesh_pe_config, CONTRACTS §6)


@dataclass(frozen=True)
class StageFacts:
    """Facts of one candidate stage (a step range)."""

    start: int
    stop: int                      # exclusive
    cost: float
    ram: int
    flash: int
    weight_bytes: int
    io_bytes: int
    arena_bytes: int
    fits: bool


@dataclass(frozen=True)
class Partition:
    stages: tuple[StageFacts, ...]
    bottleneck: float

    @property
    def ranges(self) -> list[tuple[int, int]]:
        return [(s.start, s.stop) for s in self.stages]


class RangeModel:
    """Memory and cost of any step range ``[i, j)`` of a program, from step facts."""

    def __init__(self, prog, facts, budget: PeBudget):
        self.prog, self.facts, self.budget = prog, facts, budget
        n = len(prog.steps)
        self.n = n
        self.producer: dict[int, int] = {}
        self.readers: dict[int, list[int]] = {}
        for si, st in enumerate(prog.steps):
            for o in st.outs:
                self.producer[o] = si
            for a in st.args:
                if prog.tensors[a].kind != "const":
                    self.readers.setdefault(a, []).append(si)
        self.copy_srcs = {s for s, _d in prog.copies}
        self._cache: dict[tuple[int, int], StageFacts] = {}
        self._received: dict[tuple[int, int], int] = {}

    def _links(self, i: int, j: int) -> tuple[int, int, int]:
        """(input tensors, output tensors, routes) of the range ``[i, j)``: routes = one SOURCE
        per input + one OUTPUT per reader step outside the range (an upper bound: readers may
        share a stage) + one per model output."""
        prog, tensors = self.prog, self.prog.tensors
        ins, outs, routes = set(), 0, 0
        for si in range(i, j):
            st = prog.steps[si]
            for a in st.args:
                if tensors[a].kind != "const" and not (i <= self.producer.get(a, -1) < j):
                    ins.add(a)
            for o in st.outs:
                later = {r for r in self.readers.get(o, []) if r >= j}
                host = tensors[o].kind == "output" or o in self.copy_srcs
                if later or host:
                    outs += 1
                    routes += len(later) + int(host)
        return len(ins), outs, routes + len(ins)

    def _io_and_arena(self, i: int, j: int) -> tuple[int, int, int]:
        prog = self.prog
        tensors = prog.tensors
        io_in, io_out = set(), set()
        live_at = [0] * (j - i)
        for local, si in enumerate(range(i, j)):
            st = prog.steps[si]
            for a in st.args:
                if tensors[a].kind != "const" and not (i <= self.producer.get(a, -1) < j):
                    io_in.add(a)
            for o in st.outs:
                rs = self.readers.get(o, [])
                is_out = (tensors[o].kind == "output" or o in self.copy_srcs
                          or any(r >= j for r in rs))
                if is_out:
                    io_out.add(o)
                    continue
                last = max([r for r in rs if r < j], default=si)
                for k in range(local, last - i + 1):
                    live_at[k] += _align(tensors[o].nbytes)
            live_at[local] += _align(self.facts[si].temp_bytes)
        io_bytes = sum(tensors[t].nbytes for t in io_in | io_out)
        received = sum(tensors[t].nbytes for t in io_in)
        return io_bytes, max(live_at, default=0), received

    def received(self, i: int, j: int) -> int:
        """Bytes range ``[i, j)`` receives (inputs made before ``i``): monotone in ``j``."""
        self.stage(i, j)
        return self._received[(i, j)]

    def stage(self, i: int, j: int) -> StageFacts:
        key = (i, j)
        if key in self._cache:
            return self._cache[key]
        b = self.budget
        fs = self.facts[i:j]
        io_bytes, arena, received = self._io_and_arena(i, j)
        self._received[key] = received
        weights = sum(f.weight_bytes for f in fs)
        code = int(sum(f.code_bytes for f in fs) * b.code_factor)
        ram = arena + io_bytes + b.runtime_ram
        flash = weights + code + b.runtime_flash
        if b.unified:
            fits = ram + flash <= b.ram_bytes
        else:
            fits = ram <= b.ram_bytes and flash <= b.flash_bytes
        n_in, n_out, routes = self._links(i, j)
        fits = (fits and n_in <= b.max_tensors and n_out <= b.max_tensors
                and routes <= b.max_routes)
        cost = sum(f.macs * b.cycles_per_mac + (f.in_bytes + f.out_bytes) * b.cycles_per_byte
                   for f in fs) + received * b.cycles_per_link_byte
        facts = StageFacts(i, j, cost, ram, flash, weights, io_bytes, arena, fits)
        self._cache[key] = facts
        return facts


def _align(n: int, a: int = 16) -> int:
    return (n + a - 1) // a * a


def partition_pipeline(prog, facts, budget: PeBudget, max_stages: int,
                       glued: frozenset[int] = frozenset()) -> Partition:
    """Exact bottleneck-minimising split of the step chain into ≤ ``max_stages`` fitting stages.
    ``glued``: steps that stay in one stage with the step after them (no cut right after them:
    a broadcast relay and the layer part it feeds, partition/shard.py)."""
    rm = RangeModel(prog, facts, budget)
    n = rm.n
    if n == 0:
        raise DoesNotFitError("the model has no operators to place")
    for si in range(n):
        s = rm.stage(si, si + 1)
        if not s.fits:
            raise DoesNotFitError(
                f"step {si} ({facts[si].func}) alone does not fit one PE: needs RAM {s.ram} B of "
                f"{budget.ram_bytes} B, flash {s.flash} B of {budget.flash_bytes} B "
                f"(weights {s.weight_bytes} B, arena {s.arena_bytes} B, io {s.io_bytes} B; "
                f"inputs, outputs, routes {rm._links(si, si + 1)} of at most "
                f"{budget.max_tensors}, {budget.max_tensors}, {budget.max_routes})",
                hint="the layer must be sharded across PEs (pemesh shards dense/conv layers "
                     "whose weights are too big), or choose a PE kind with more memory")
    inf = float("inf")
    max_stages = max(1, min(max_stages, n))
    # fitting ranges: for each start, extend while it fits (fit is monotone in practice; we
    # still check every range up to the first non-fitting one)
    ends: list[list[int]] = []
    for i in range(n):
        row = []
        for j in range(i + 1, n + 1):
            if j - 1 in glued and j < n:
                continue
            if rm.stage(i, j).fits:
                row.append(j)
            elif (rm.stage(i, j).weight_bytes > budget.flash_bytes + budget.ram_bytes
                  or rm.received(i, j) + budget.runtime_ram > budget.ram_bytes):
                break    # weights and received inputs only grow with j: nothing longer fits
        ends.append(row)
    best = [[inf] * (n + 1) for _ in range(max_stages + 1)]
    back = [[-1] * (n + 1) for _ in range(max_stages + 1)]
    best[0][0] = 0.0
    for k in range(1, max_stages + 1):
        prev, cur, bk = best[k - 1], best[k], back[k]
        for i in range(n):
            if prev[i] == inf:
                continue
            for j in ends[i]:
                v = max(prev[i], rm.stage(i, j).cost)
                if v < cur[j] or (v == cur[j] and i > bk[j]):
                    cur[j], bk[j] = v, i
    best_k, best_v = -1, inf
    for k in range(1, max_stages + 1):
        if best[k][n] < best_v - 1e-9:
            best_k, best_v = k, best[k][n]
    if best_k < 0:
        need = min_stages(rm)
        raise DoesNotFitError(
            f"the model does not fit {max_stages} PE(s): it needs at least {need} PEs of this "
            f"kind (RAM {budget.ram_bytes} B, flash {budget.flash_bytes} B each), one per "
            "pipeline stage",
            hint=f"use a mesh with at least {need} PEs (and --max-pes >= {need}), or fewer "
                 "replicas")
    stages = []
    j, k = n, best_k
    while k > 0:
        i = back[k][j]
        stages.append(rm.stage(i, j))
        j, k = i, k - 1
    stages.reverse()
    log.info("partition: %d stage(s), slowest %.0f cycles", len(stages), best_v)
    return Partition(tuple(stages), best_v)


def min_stages(rm: RangeModel) -> int:
    """The fewest fitting stages: greedily extend each stage while it fits (optimal for
    contiguous splits when a sub-range of a fitting range fits too)."""
    i, count = 0, 0
    while i < rm.n:
        j = i + 1
        while j < rm.n and rm.stage(i, j + 1).fits:
            j += 1
        i, count = j, count + 1
    return count


def brute_force_partition(prog, facts, budget: PeBudget, max_stages: int) -> float:
    """Exhaustive search (for tests): the minimal bottleneck over all compositions."""
    rm = RangeModel(prog, facts, budget)
    n = rm.n
    best = float("inf")

    def rec(i: int, k: int, worst: float) -> None:
        nonlocal best
        if i == n:
            best = min(best, worst)
            return
        if k == max_stages:
            return
        for j in range(i + 1, n + 1):
            s = rm.stage(i, j)
            if s.fits:
                rec(j, k + 1, max(worst, s.cost))

    rec(0, 0, 0.0)
    return best
