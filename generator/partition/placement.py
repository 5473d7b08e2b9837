"""Place pipeline parts on a mesh (DESIGN.md, "map").

A model is cut into stages (a pipeline), a stage may be split into shards (by output channels),
and the whole pipeline may be copied R times (replicas). The parts, in order

    replica 0: stage 0 shard 0, stage 0 shard 1, ..., stage 1 shard 0, ...; replica 1: ...

are laid along a **serpentine walk** of the mesh: chips are visited row by row, alternating
direction (a boustrophedon over the chip grid), and inside each chip the PEs are visited by one of
eight snakes (rows or columns, from any corner) chosen by a small dynamic program so that the walk
steps from each PE to a grid neighbour, chip boundaries included, wherever the grid allows. So
consecutive parts sit one hop apart, and a pipeline crosses from chip to chip as rarely as the
chip-by-chip order allows.

Every placed part gets its routes (XY routing, see :class:`generator.boards.catalog.Mesh`) to the parts it
sends to: the shards of the next stage of its replica, and the host (through the host-link PE
nearest to the replica's first part). Everything here is O(number of PEs): a 7,296-PE mesh maps
in milliseconds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from itertools import accumulate
from typing import Any, Sequence

from generator.boards.catalog import HOST_ID, Mesh
from generator.errors import DoesNotFitError, UsageError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageShards:
    """A pipeline stage and how many shards (PEs) it is split into."""

    name: str
    shards: int = 1


@dataclass(frozen=True)
class Route:
    """How a PE reaches one destination under XY routing.

    ``dst`` is a PE id, or ``HOST_ID`` for the host; frames for the host leave the mesh at the
    host-link PE ``via`` (for a PE destination ``via == dst``).
    """

    dst: int
    via: int
    next_hop: int       # the first PE on the way to ``via`` (the PE itself when it is ``via``)
    hops: int
    chip_hops: int      # hops that cross from one chip to another

    def to_json(self) -> dict[str, int]:
        return {"dst": self.dst, "via": self.via, "next_hop": self.next_hop, "hops": self.hops,
                "chip_hops": self.chip_hops}


@dataclass(frozen=True)
class Placement:
    """One part (stage shard of one replica) on one PE, with its routes."""

    part: int                       # index in the walk order
    stage: int                      # stage index
    stage_name: str
    shard: int
    replica: int
    pe_id: int
    coords: tuple[int, int]         # global grid (x, y)
    chip: int
    host_link: int                  # the host-link PE this replica talks to the host through
    inputs_from: tuple[int, ...]    # PE ids of the previous stage's shards, or (HOST_ID,)
    outputs_to: tuple[int, ...]     # PE ids of the next stage's shards, or (HOST_ID,)
    routes: tuple[Route, ...]       # one per distinct destination in outputs_to, then the host

    def route_to(self, dst: int) -> Route:
        """The route to ``dst`` (a PE id or ``HOST_ID``)."""
        for r in self.routes:
            if r.dst == dst:
                return r
        raise KeyError(f"PE {self.pe_id} has no route to {dst}")

    def to_json(self) -> dict[str, Any]:
        return {"part": self.part, "pe": self.pe_id, "coords": list(self.coords),
                "chip": self.chip, "stage": self.stage_name, "stage_index": self.stage,
                "shard": self.shard, "replica": self.replica, "host_link": self.host_link,
                "inputs_from": list(self.inputs_from), "outputs_to": list(self.outputs_to),
                "routes": [r.to_json() for r in self.routes]}


@dataclass(frozen=True)
class MeshPlacement:
    """All parts of a model placed on a mesh."""

    mesh: Mesh
    stages: tuple[StageShards, ...]
    replicas: int
    placements: tuple[Placement, ...]   # in part order

    @property
    def parts_per_replica(self) -> int:
        return sum(s.shards for s in self.stages)

    @property
    def num_pes_used(self) -> int:
        return len(self.placements)

    def pe_of(self, stage: int, shard: int = 0, replica: int = 0) -> int:
        """The PE id running ``shard`` of ``stage`` in ``replica``."""
        if not (0 <= stage < len(self.stages) and 0 <= shard < self.stages[stage].shards
                and 0 <= replica < self.replicas):
            raise IndexError(f"no part stage={stage} shard={shard} replica={replica}")
        offset = sum(s.shards for s in self.stages[:stage]) + shard
        return self.placements[replica * self.parts_per_replica + offset].pe_id

    def consecutive_hops(self) -> tuple[int, ...]:
        """Hops between each part and the next in part order (for checks and reports)."""
        p = self.placements
        return tuple(self.mesh.hops(a.pe_id, b.pe_id) for a, b in zip(p, p[1:]))

    def to_json(self) -> dict[str, Any]:
        return {"mesh": self.mesh.name, "replicas": self.replicas,
                "stages": [{"name": s.name, "shards": s.shards} for s in self.stages],
                "placements": [p.to_json() for p in self.placements]}


# --------------------------------------------------------------------------------------------
# the serpentine walk

def _chip_snakes(px: int, py: int) -> list[list[tuple[int, int]]]:
    """The distinct row and column snakes over a px × py chip, from each corner (local coords)."""
    snakes: list[list[tuple[int, int]]] = []
    for sx in sorted({0, px - 1}):
        for sy in sorted({0, py - 1}):
            xs = list(range(px)) if sx == 0 else list(range(px - 1, -1, -1))
            ys = list(range(py)) if sy == 0 else list(range(py - 1, -1, -1))
            rows = [(x, y) for i, y in enumerate(ys) for x in (xs if i % 2 == 0 else xs[::-1])]
            cols = [(x, y) for i, x in enumerate(xs) for y in (ys if i % 2 == 0 else ys[::-1])]
            for s in (rows, cols):
                if s not in snakes:
                    snakes.append(s)
    return snakes


def _step_cost(hops: int) -> int:
    """Cost of a step of the walk between chips: free when 1 hop, steeply worse beyond."""
    return 0 if hops <= 1 else 1000 * (hops - 1) ** 3


def _chip_walk(mesh: Mesh, chips: list[tuple[int, int]]) -> list[int]:
    """Walk ``chips`` in the given order, choosing a snake per chip by dynamic programming so
    that the steps between chips are as short as possible."""
    px, py, ppc = mesh.pes_x, mesh.pes_y, mesh.pes_per_chip
    snakes = _chip_snakes(px, py)
    ends = [(s[0], s[-1]) for s in snakes]
    hx, hy = mesh.coords(mesh.host_links[0])

    def glob(chip: tuple[int, int], local: tuple[int, int]) -> tuple[int, int]:
        return chip[0] * px + local[0], chip[1] * py + local[1]

    def dist(a: tuple[int, int], b: tuple[int, int]) -> int:
        return abs(a[0] - b[0]) + abs(a[1] - b[1])

    # cost[k]: best cost of a walk over the chips so far whose last chip uses snake k;
    # the walk starts as close to the first host link as the first chip allows
    cost = [dist(glob(chips[0], s), (hx, hy)) for s, _ in ends]
    back: list[list[int]] = []
    for prev, chip in zip(chips, chips[1:]):
        choice, new = [], []
        for s, _ in ends:
            start = glob(chip, s)
            steps = [cost[j] + _step_cost(dist(glob(prev, ends[j][1]), start))
                     for j in range(len(ends))]
            k = min(range(len(ends)), key=lambda j: (steps[j], j))
            choice.append(k)
            new.append(steps[k])
        back.append(choice)
        cost = new
    k = min(range(len(ends)), key=lambda j: (cost[j], j))
    picks = [k]
    for choice in reversed(back):
        k = choice[k]
        picks.append(k)
    picks.reverse()
    local_ids = [[y * px + x for x, y in s] for s in snakes]
    walk: list[int] = []
    for (cx, cy), k in zip(chips, picks):
        base = (cy * mesh.chips_x + cx) * ppc
        walk.extend(base + i for i in local_ids[k])
    return walk


def _walk_score(mesh: Mesh, walk: Sequence[int]) -> tuple[int, int]:
    """(longest step, chip changes) of a walk: lower is better."""
    ppc, longest, changes = mesh.pes_per_chip, 0, 0
    for a, b in zip(walk, walk[1:]):
        if a // ppc != b // ppc:
            changes += 1
            longest = max(longest, mesh.hops(a, b))
    return longest if len(walk) > 1 else 0, changes


def serpentine(mesh: Mesh) -> tuple[int, ...]:
    """Every PE id of ``mesh`` once, in serpentine order starting near the first host link.

    Chips are visited row by row (or column by column, whichever steps shorter), alternating
    direction; inside a chip a snake is chosen per chip (dynamic programming over the chips) so
    that every step of the walk is one hop long wherever the chip shape allows it. When no
    chip-by-chip order manages that (some odd chip shapes), the walk is a plain boustrophedon
    over the global grid rows: still one hop per step, but crossing chips more often.
    """
    cx, cy = mesh.chips_x, mesh.chips_y
    by_rows = [(x if y % 2 == 0 else cx - 1 - x, y) for y in range(cy) for x in range(cx)]
    by_cols = [(x, y if x % 2 == 0 else cy - 1 - y) for x in range(cx) for y in range(cy)]
    best = min((_chip_walk(mesh, by_rows), _chip_walk(mesh, by_cols)),
               key=lambda w: _walk_score(mesh, w))
    if _walk_score(mesh, best)[0] > 1:
        w = mesh.width
        best = [mesh.pe_id(x if y % 2 == 0 else w - 1 - x, y)
                for y in range(mesh.height) for x in range(w)]
    return tuple(best)


# --------------------------------------------------------------------------------------------
# placement

def _stages(stages: Sequence[StageShards | tuple[str, int] | int]) -> tuple[StageShards, ...]:
    out = []
    for i, s in enumerate(stages):
        if isinstance(s, StageShards):
            out.append(s)
        elif isinstance(s, int):
            out.append(StageShards(f"stage{i}", s))
        else:
            out.append(StageShards(str(s[0]), int(s[1])))
    if not out:
        raise UsageError("nothing to place: the model has no stages",
                         "check the partition step's output")
    for s in out:
        if s.shards < 1:
            raise UsageError(f"stage {s.name} has {s.shards} shards; it needs at least 1",
                             "check the partition step's output")
    return tuple(out)


def available_pes(mesh: Mesh, max_pes: int | None = None) -> int:
    """PEs that may be used: the mesh's, or fewer with ``--max-pes``."""
    if max_pes is not None and max_pes < 1:
        raise UsageError(f"--max-pes {max_pes}: needs at least 1 PE", "give --max-pes N >= 1")
    return mesh.num_pes if max_pes is None else min(mesh.num_pes, max_pes)


def max_replicas(mesh: Mesh, stages: Sequence[StageShards | tuple[str, int] | int],
                 max_pes: int | None = None) -> int:
    """How many copies of the pipeline fit (``--replicas max``); 0 if not even one."""
    return available_pes(mesh, max_pes) // sum(s.shards for s in _stages(stages))


def place(mesh: Mesh, stages: Sequence[StageShards | tuple[str, int] | int], *,
          replicas: int = 1, max_pes: int | None = None) -> MeshPlacement:
    """Place ``replicas`` copies of a pipeline of ``stages`` on ``mesh`` along its serpentine.

    ``stages`` holds :class:`StageShards`, ``(name, shards)`` pairs or plain shard counts.
    Raises :class:`DoesNotFitError` when the parts need more PEs than the mesh (or ``max_pes``)
    offers.
    """
    st = _stages(stages)
    if replicas < 1:
        raise UsageError(f"--replicas {replicas}: needs at least 1", "give --replicas R >= 1")
    per = sum(s.shards for s in st)
    need, have = per * replicas, available_pes(mesh, max_pes)
    if need > have:
        shards = " + ".join(str(s.shards) for s in st)
        limit = f" (--max-pes {max_pes})" if max_pes is not None and max_pes < mesh.num_pes else ""
        raise DoesNotFitError(
            f"the model needs {need} PEs ({len(st)} stages, {shards} = {per} shards per replica "
            f"x {replicas} replicas) but mesh {mesh.name} offers {have}{limit}",
            "use a larger mesh (--mesh), fewer replicas, or fewer shards/stages"
            + ("" if not limit else ", or raise --max-pes"))
    walk = serpentine(mesh)[:need]
    starts = [0, *accumulate(s.shards for s in st)][:-1]
    placements = []
    for r in range(replicas):
        base = r * per
        host_link = mesh.nearest_host_link(walk[base])
        for i, s in enumerate(st):
            prev = (tuple(walk[base + starts[i - 1] + j] for j in range(st[i - 1].shards))
                    if i > 0 else (HOST_ID,))
            nxt = (tuple(walk[base + starts[i + 1] + j] for j in range(st[i + 1].shards))
                   if i + 1 < len(st) else (HOST_ID,))
            for shard in range(s.shards):
                part = base + starts[i] + shard
                pe = walk[part]
                routes = [_route(mesh, pe, d, d) for d in nxt if d != HOST_ID]
                routes.append(_route(mesh, pe, HOST_ID, host_link))
                placements.append(Placement(
                    part=part, stage=i, stage_name=s.name, shard=shard, replica=r, pe_id=pe,
                    coords=mesh.coords(pe), chip=mesh.chip_of(pe), host_link=host_link,
                    inputs_from=prev, outputs_to=nxt, routes=tuple(routes)))
    result = MeshPlacement(mesh, st, replicas, tuple(placements))
    log.info("placed %d parts (%d stages x %d replicas) on %s: %d of %d PEs", need, len(st),
             replicas, mesh.name, need, mesh.num_pes)
    return result


def _route(mesh: Mesh, src: int, dst: int, via: int) -> Route:
    return Route(dst=dst, via=via, next_hop=mesh.next_hop(src, via), hops=mesh.hops(src, via),
                 chip_hops=mesh.chip_hops(src, via))
