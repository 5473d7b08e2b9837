"""The mesh plan: shard → prepare → partition into pipeline stages → place → routes.

``plan_mesh`` makes every decision of ``pemesh compile`` that is not code generation, for any
mesh — a single PE (``--board K``) is a 1×1 mesh of kind K and takes the same path. The model is
sharded on Relax where a layer's weights do not fit a PE, prepared once (``aot.stage.
prepare_model``: legalize, fuse), its program of fused calls cut into stages that fit one PE each
(exact DP, generator/partition/pipeline.py), the stages × replicas placed along a serpentine walk
(placement.py), and each PE given its routing table (docs/CONTRACTS.md §6).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

from generator.errors import DoesNotFitError, UsageError
from generator.types import ImportedModel, InputSlice, Route

log = logging.getLogger(__name__)

HOST = 0xFFFF
#: fp32 cost coefficients by core (cycles per multiply-accumulate; soft-float on a Cortex-M3)
CYCLES_PER_MAC = {"cortex-m3": 100.0, "cortex-m4f": 6.0, "cortex-m4": 60.0}
#: share of a PE's weight room one layer may take before it is sharded (room for code, others)
WEIGHT_SHARE = 0.7
#: shares of a PE's free RAM one band op may hold (generator/partition/bands.py), tried in turn
BAND_SHARES = (0.85, 0.55, 0.35)


@dataclass(frozen=True)
class MemoryNeed:
    """Planned memory of one PE: what the plan needs against what the PE has."""

    ram_bytes: int
    flash_bytes: int
    ram_limit: int
    flash_limit: int
    detail: dict[str, int]

    @property
    def fits(self) -> bool:
        return self.ram_bytes <= self.ram_limit and self.flash_bytes <= self.flash_limit

    def to_json(self) -> dict[str, Any]:
        return {"ram_bytes": self.ram_bytes, "flash_bytes": self.flash_bytes,
                "ram_limit": self.ram_limit, "flash_limit": self.flash_limit,
                "fits": self.fits, "detail": dict(sorted(self.detail.items()))}


def stage_memory_need(stage, pe_kind) -> MemoryNeed:
    """RAM/flash a PE needs for ``stage``: arena + io + runtime reserve (RAM), constants +
    runtime reserve (flash). Code size of the operators is known only after the build, which
    checks the real ELF against the same limits."""
    ram = {"arena": stage.workspace_size, "io": stage.io_size,
           "runtime": pe_kind.reserve_ram_bytes}
    flash = {"constants": stage.constants_size, "runtime": pe_kind.reserve_flash_bytes}
    ram_total, flash_total = sum(ram.values()), sum(flash.values())
    if pe_kind.code_in_ram:
        # one SRAM for code and data (SpiNNaker2-like PE): everything counts against it
        ram_total = flash_total = ram_total + flash_total
    flash_limit = pe_kind.ram_bytes if pe_kind.code_in_ram else pe_kind.flash_bytes
    return MemoryNeed(ram_total, flash_total, pe_kind.ram_bytes, flash_limit,
                      {**{f"ram_{k}": v for k, v in ram.items()},
                       **{f"flash_{k}": v for k, v in flash.items()}})


def pe_budget(pe_kind, mesh):
    from generator.partition.pipeline import PeBudget

    bytes_per_s = max(1, int(getattr(mesh.on_chip, "bytes_per_s", 1_000_000)))
    return PeBudget(
        ram_bytes=pe_kind.ram_bytes,
        flash_bytes=pe_kind.ram_bytes if pe_kind.code_in_ram else pe_kind.flash_bytes,
        runtime_ram=pe_kind.reserve_ram_bytes, runtime_flash=pe_kind.reserve_flash_bytes,
        unified=pe_kind.code_in_ram,
        cycles_per_mac=CYCLES_PER_MAC.get(pe_kind.cpu, 50.0),
        cycles_per_link_byte=pe_kind.clock_hz / bytes_per_s)


def band_room(pe_kind, share: float = BAND_SHARES[0]) -> int:
    """Bytes one band op may hold (its input and output rows): a PE's RAM after the runtime,
    with a margin for the op's scratch and the stage's other tensors."""
    room = pe_kind.ram_bytes - pe_kind.reserve_ram_bytes
    if pe_kind.code_in_ram:
        room -= pe_kind.reserve_flash_bytes
    return max(1024, int(room * share))


def weight_budget(pe_kind) -> int:
    room = (pe_kind.ram_bytes - pe_kind.reserve_ram_bytes - pe_kind.reserve_flash_bytes
            if pe_kind.code_in_ram else pe_kind.flash_bytes - pe_kind.reserve_flash_bytes)
    return max(1024, int(room * WEIGHT_SHARE))


def accel_aware_facts(pm, facts, accel, budget):
    """With an accelerator, an offloadable step costs its modeled array cycles (setup + MACs /
    MACs per cycle) instead of CPU cycles per MAC: stages are balanced on what will run."""
    if accel is None:
        return facts
    from generator.aot.accel import accel_cycles, decide, step_qop

    out = []
    for f in facts:
        q = step_qop(pm, f.index)
        ok, _kind, _why = decide(q, accel)
        if ok:
            cycles = accel_cycles(q, accel)
            f = replace(f, macs=int(round(cycles / budget.cycles_per_mac)))
        out.append(f)
    return out


def parse_replicas(arg: str | int | None) -> str | int:
    """``--replicas``: a count ≥ 1 or ``max``."""
    if arg is None:
        return 1
    if str(arg) == "max":
        return "max"
    try:
        r = int(arg)
    except ValueError:
        raise UsageError(f"--replicas {arg}: not a number or 'max'",
                         hint="--replicas 2, or --replicas max") from None
    if r < 1:
        raise UsageError(f"--replicas {r}: needs at least 1", hint="--replicas 1")
    return r


@dataclass(frozen=True)
class StageDef:
    """One pipeline stage of the program: its steps and the tensors it takes and gives."""

    index: int
    steps: tuple[int, ...]
    inputs: tuple[int, ...]             # tensor ids, in stream order
    outputs: tuple[int, ...]

    @property
    def step_range(self) -> tuple[int, int]:
        return (self.steps[0], self.steps[-1] + 1) if self.steps else (0, 0)


@dataclass(frozen=True)
class PePlan:
    """One placed PE: which stage and replica it runs, where, and its routing table."""

    id: int
    coords: tuple[int, int]
    chip: int
    stage: int
    replica: int
    routes: tuple[Route, ...]

    @property
    def name(self) -> str:
        return f"pe{self.id}"

    @property
    def host_link(self) -> bool:
        return any(r.pe == HOST for r in self.routes)


@dataclass(frozen=True)
class ReplicaPlan:
    """Where one copy of the pipeline takes model inputs and gives model outputs."""

    index: int
    entry: tuple[tuple[int, int, int], ...]     # (pe, input stream, model input index)
    exit: tuple[tuple[int, int, int], ...]      # (pe, stage output index, model output index)


@dataclass(frozen=True)
class MeshPlan:
    """Every decision of a compile but the code: what ``aot`` emits and ``render`` writes."""

    prepared: Any                       # aot.stage.PreparedModel of the sharded model
    stages: tuple[StageDef, ...]
    stage_costs: tuple[float, ...]      # modeled cycles per stage
    pes: tuple[PePlan, ...]             # replica-major, stage order
    replicas: tuple[ReplicaPlan, ...]
    shards: tuple[Any, ...]             # partition.shard decisions (sharded layers)
    bottleneck_cycles: float
    #: per program input: the rows of a model input it carries (a band split cuts the input)
    input_slices: tuple[InputSlice, ...] = ()
    bands: Any = None                   # partition.bands_rewrite.BandSplit, or None


def _fmt_kib(n: int) -> str:
    return f"{n / 1024:.1f} KiB"


def _one_pe_error(model: ImportedModel, mesh, pm, facts, budget) -> DoesNotFitError:
    """The error for a model that does not fit the only PE of a 1-PE target, with its numbers."""
    from generator.partition.pipeline import RangeModel

    rm = RangeModel(pm.prog, facts, budget)
    s = rm.stage(0, rm.n)
    kind = mesh.pe_kind
    return DoesNotFitError(
        f"model '{model.name}' does not fit one {kind.name} PE: needs RAM {_fmt_kib(s.ram)} of "
        f"{_fmt_kib(budget.ram_bytes)} (arena {_fmt_kib(s.arena_bytes)}, io "
        f"{_fmt_kib(s.io_bytes)}, runtime {_fmt_kib(kind.reserve_ram_bytes)}), flash "
        f"{_fmt_kib(s.flash)} of {_fmt_kib(budget.flash_bytes)} (weights "
        f"{_fmt_kib(s.weight_bytes)})",
        hint="compile for a mesh (--mesh qemu4, qemu16, ...) so the model is split over PEs")


def _partition(model, mesh, pm, facts, budget, have: int, replicas: str | int):
    from generator.partition.pipeline import partition_pipeline as _pp
    from generator.partition.shard import RELAY

    glued = frozenset(i for i, st in enumerate(pm.prog.steps) if st.func.startswith(RELAY))

    def partition_pipeline(prog, facts, budget, k):
        return _pp(prog, facts, budget, k, glued)

    if replicas == "max":
        # the fewest stages that fit, then as many copies as the mesh holds
        top = min(have, len(facts))
        for k in range(1, top + 1):
            try:
                part = partition_pipeline(pm.prog, facts, budget, k)
                break
            except DoesNotFitError:
                if k == top:
                    raise
        return part, max(1, have // len(part.stages))
    n_rep = int(replicas)
    return partition_pipeline(pm.prog, facts, budget, max(1, have // n_rep)), n_rep


def stage_defs(pm, ranges: list[tuple[int, int]]) -> tuple[StageDef, ...]:
    """Per stage: its steps, input and output tensor ids (a tensor a later stage reads is an
    output of its producer's stage; the model's output copies go into the last stage)."""
    from generator.aot.stage import stage_io

    prog = pm.prog
    readers: dict[int, list[int]] = {}
    for s, (i, j) in enumerate(ranges):
        for si in range(i, j):
            for a in prog.steps[si].args:
                if prog.tensors[a].kind != "const":
                    readers.setdefault(a, [])
                    if s not in readers[a]:
                        readers[a].append(s)
    for src, _ in prog.copies:
        readers.setdefault(src, [])
        if len(ranges) - 1 not in readers[src]:
            readers[src].append(len(ranges) - 1)
    out = []
    for s, (i, j) in enumerate(ranges):
        later = {t for t, rs in readers.items() if any(r > s for r in rs)}
        ins, outs = stage_io(pm, list(range(i, j)), later, include_copies=(s == len(ranges) - 1))
        out.append(StageDef(s, tuple(range(i, j)), tuple(ins), tuple(outs)))
    return tuple(out)


def assign_routes(stages: tuple[StageDef, ...], placement, prog,
                  n_rep: int) -> tuple[tuple[PePlan, ...], tuple[ReplicaPlan, ...]]:
    """Every PE's routing table, and each replica's entry and exit PEs (CONTRACTS §6).

    Output ``j`` of a stage goes to every later stage that reads the tensor (straight to it: a
    skip tensor is sent, not forwarded) and, if it is a model output, to the host; input ``i``
    comes from the stage that produces the tensor, or from the host for a model input."""
    producer: dict[int, tuple[int, int]] = {}
    for st in stages:
        for j, t in enumerate(st.outputs):
            producer[t] = (st.index, j)
    model_in = {t: i for i, t in enumerate(prog.inputs)}
    model_out = {t: j for j, t in enumerate(prog.outputs)}
    pes, replicas = [], []
    for r in range(n_rep):
        entry, exit_ = [], []
        for st in stages:
            pe = placement.pe_of(st.index, 0, r)
            routes: list[Route] = []
            for j, t in enumerate(st.outputs):
                for st2 in stages:
                    if st2.index != st.index and t in st2.inputs:
                        routes.append(Route(Route.OUTPUT, j, placement.pe_of(st2.index, 0, r),
                                            st2.inputs.index(t)))
                if t in model_out:
                    routes.append(Route(Route.OUTPUT, j, HOST, model_out[t]))
                    exit_.append((pe, j, model_out[t]))
            for i, t in enumerate(st.inputs):
                if t in producer:
                    ps, pj = producer[t]
                    routes.append(Route(Route.SOURCE, i, placement.pe_of(ps, 0, r), pj))
                else:
                    routes.append(Route(Route.SOURCE, i, HOST, model_in[t]))
                    entry.append((pe, i, model_in[t]))
            p = placement.placements[r * len(stages) + st.index]
            pes.append(PePlan(pe, tuple(p.coords), p.chip, st.index, r, tuple(routes)))
        replicas.append(ReplicaPlan(r, tuple(entry), tuple(exit_)))
    return tuple(pes), tuple(replicas)


def plan_mesh(model: ImportedModel, mesh, *, max_pes: int | None = None,
              replicas: str | int = 1) -> MeshPlan:
    """Shard, prepare, partition and place ``model`` on ``mesh`` (any size, one PE included)."""
    from generator.aot.stage import prepare_model, step_facts
    from generator.partition.placement import available_pes, place
    from generator.partition.bands_rewrite import band_split
    from generator.partition.shard import shard_layers

    pe_kind = mesh.pe_kind
    ram_room = pe_kind.ram_bytes - pe_kind.reserve_ram_bytes - (
        pe_kind.reserve_flash_bytes if pe_kind.code_in_ram else 0)
    budget = pe_budget(pe_kind, mesh)
    have = available_pes(mesh, max_pes)
    slices = tuple(InputSlice(i) for i in range(len(model.inputs)))
    # with a band split, fewer rows per band let several band ops share a PE: try smaller
    # bands when the pipeline needs more PEs than the mesh has
    folded = model.mod
    if have > 1:
        from tvm import relax
        folded = relax.transform.FoldConstant()(model.mod)
    first_error: DoesNotFitError | None = None
    for attempt, share in enumerate(BAND_SHARES):
        mod, bands = folded, None
        if have > 1:
            mod, bands, slices = band_split(mod, avail=band_room(pe_kind, share),
                                            cycles_per_mac=budget.cycles_per_mac,
                                            cycles_per_link_byte=budget.cycles_per_link_byte,
                                            max_bands=have,
                                            weights_in_room=pe_kind.code_in_ram)
        sharded_mod, shards = shard_layers(mod, weight_budget(pe_kind), room=ram_room,
                                           weights_in_room=pe_kind.code_in_ram)
        pm = prepare_model(sharded_mod, model.name, cpu=pe_kind.cpu)
        facts = accel_aware_facts(pm, step_facts(pm), pe_kind.accelerator, budget)
        try:
            part, n_rep = _partition(model, mesh, pm, facts, budget, have, replicas)
            break
        except DoesNotFitError as err:
            if have == 1 and facts:
                raise _one_pe_error(model, mesh, pm, facts, budget) from None
            if first_error is not None and bands is None:
                raise first_error from None       # smaller bands found no split at all
            first_error = first_error or err
            if bands is None or attempt == len(BAND_SHARES) - 1:
                raise first_error from None
            log.info("band split with %.0f%% of a PE per band op does not fit %d PEs; "
                     "trying smaller bands", share * 100, have)
    stages = stage_defs(pm, part.ranges)
    placement = place(mesh, [(f"{model.name}_s{st.index}", 1) for st in stages],
                      replicas=n_rep, max_pes=max_pes)
    pes, reps = assign_routes(stages, placement, pm.prog, n_rep)
    log.info("plan: %d stage(s) x %d replica(s) on %d of %d PEs", len(stages), n_rep, len(pes),
             mesh.num_pes)
    return MeshPlan(pm, stages, tuple(s.cost for s in part.stages), pes, reps, tuple(shards),
                    part.bottleneck, slices, bands)
