"""``pemesh compile --mesh M``: shard → partition → place → emit stages → render every PE.

The model is prepared once (``aot.prepare_model``); the partitioner cuts its program of fused
operator calls into pipeline stages that fit one PE each; the mapper places stages (× replicas)
on the mesh; each stage's C is emitted once and every PE of it gets an app whose config carries
its identity and routes (docs/CONTRACTS.md §6).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from generator.errors import UsageError
from generator.types import AppSpec, ImportedModel, Route

log = logging.getLogger(__name__)

HOST = 0xFFFF
#: fp32 cost coefficients by core (cycles per multiply-accumulate; soft-float on a Cortex-M3)
CYCLES_PER_MAC = {"cortex-m3": 100.0, "cortex-m4f": 6.0, "cortex-m4": 60.0}
#: share of a PE's weight room one layer may take before it is sharded (room for code, others)
WEIGHT_SHARE = 0.7


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


def weight_budget(pe_kind) -> int:
    room = (pe_kind.ram_bytes - pe_kind.reserve_ram_bytes - pe_kind.reserve_flash_bytes
            if pe_kind.code_in_ram else pe_kind.flash_bytes - pe_kind.reserve_flash_bytes)
    return max(1024, int(room * WEIGHT_SHARE))


def accel_aware_facts(pm, facts, accel, budget):
    """With an accelerator, an offloadable step costs its modeled array cycles (setup + MACs /
    MACs per cycle) instead of CPU cycles per MAC: stages are balanced on what will run."""
    if accel is None:
        return facts
    from dataclasses import replace

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


def _replicas(arg: str | int | None) -> str | int:
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


def plan_mesh(model: ImportedModel, mesh, *, max_pes: int | None, replicas: str | int):
    """Shard, prepare and partition ``model`` for ``mesh``; returns the decisions."""
    from generator.aot import prepare_model, step_facts
    from generator.partition.placement import available_pes
    from generator.partition.pipeline import partition_pipeline
    from generator.partition.shard import shard_layers

    pe_kind = mesh.pe_kind
    sharded_mod, shards = shard_layers(model.mod, weight_budget(pe_kind))
    pm = prepare_model(sharded_mod, model.name)
    budget = pe_budget(pe_kind, mesh)
    facts = accel_aware_facts(pm, step_facts(pm), pe_kind.accelerator, budget)
    have = available_pes(mesh, max_pes)
    if replicas == "max":
        # the fewest stages that fit, then as many copies as the mesh holds
        part = None
        for k in range(1, min(have, len(facts)) + 1):
            try:
                part = partition_pipeline(pm.prog, facts, budget, k)
                break
            except Exception:  # noqa: BLE001 - DoesNotFitError for k stages: try k + 1
                if k == min(have, len(facts)):
                    raise
        assert part is not None
        n_rep = max(1, have // len(part.stages))
    else:
        n_rep = int(replicas)
        part = partition_pipeline(pm.prog, facts, budget, max(1, have // n_rep))
    return pm, facts, part, n_rep, shards, budget


def stage_tensor_io(pm, ranges):
    """Per stage: (steps, input tids, output tids), and which stages read each tensor."""
    from generator.aot import stage_io

    prog = pm.prog
    readers: dict[int, list[int]] = {}
    for s, (i, j) in enumerate(ranges):
        for si in range(i, j):
            for a in prog.steps[si].args:
                if prog.tensors[a].kind != "const":
                    readers.setdefault(a, [])
                    if s not in readers[a]:
                        readers[a].append(s)
    copy_srcs = [src for src, _ in prog.copies]
    for src in copy_srcs:
        readers.setdefault(src, [])
        if len(ranges) - 1 not in readers[src]:
            readers[src].append(len(ranges) - 1)
    out = []
    for s, (i, j) in enumerate(ranges):
        later = {t for t, rs in readers.items() if any(r > s for r in rs)}
        ins, outs = stage_io(pm, list(range(i, j)), later, include_copies=(s == len(ranges) - 1))
        out.append((list(range(i, j)), ins, outs))
    return out, readers


def compile_mesh(model: ImportedModel, out: Path, args) -> dict[str, Any]:
    """Compile ``model`` for the mesh named by ``args.mesh``; write OUT/ and return the manifest."""
    from generator.aot import emit_stage, tensor_spec, write_mlf
    from generator.boards.catalog import load_mesh
    from generator.commands.compile import (REFERENCE_SEED, copy_runtime, manifest_header, stage_memory_need,
                           write_manifest, write_reference, write_west_yml)
    from generator.errors import DoesNotFitError
    from generator.partition.placement import place
    from generator.verify.reference import make_inputs, run_reference
    from generator.firmware.render import render_pe_app
    from generator.firmware.templating import template_env

    t0 = time.perf_counter()
    mesh = load_mesh(args.mesh)
    pe_kind = mesh.pe_kind
    board = pe_kind.zephyr_board or pe_kind.name
    inputs = make_inputs(model.inputs, seed=REFERENCE_SEED)
    ref_outputs = run_reference(model, inputs)
    pm, facts, part, n_rep, shards, budget = plan_mesh(
        model, mesh, max_pes=args.max_pes, replicas=_replicas(getattr(args, "replicas", 1)))
    t_plan = time.perf_counter()

    ranges = part.ranges
    stage_defs, readers = stage_tensor_io(pm, ranges)
    prog = pm.prog
    stages, stage_json = [], []
    for s, (steps, ins, outs) in enumerate(stage_defs):
        name = f"{model.name}_s{s}"
        in_specs = [tensor_spec(pm, t, model.inputs, model.outputs) for t in ins]
        out_specs = [tensor_spec(pm, t, model.inputs, model.outputs) for t in outs]
        st = emit_stage(pm, name, steps, ins, outs, in_specs, out_specs,
                        include_copies=(s == len(stage_defs) - 1),
                        accelerator=pe_kind.accelerator)
        need = stage_memory_need(st, pe_kind)
        if not need.fits:
            raise DoesNotFitError(
                f"stage {name} does not fit a {pe_kind.name} PE: RAM {need.ram_bytes} B of "
                f"{need.ram_limit} B, flash {need.flash_bytes} B of {need.flash_limit} B",
                hint="the partitioner's arena estimate was too low; use a larger mesh")
        stage_dir = out / "stages" / name
        write_mlf(st, stage_dir / "model.tar", stage_dir / "model")
        stages.append(st)
        stage_json.append({
            "name": name, "index": s, "steps": [steps[0], steps[-1] + 1] if steps else [0, 0],
            "inputs": [t.to_json() for t in in_specs], "outputs": [t.to_json() for t in out_specs],
            "input_tensors": ins, "output_tensors": outs,
            "mlf": f"stages/{name}/model.tar", "model_dir": f"stages/{name}/model",
            "workspace_size": st.workspace_size, "constants_size": st.constants_size,
            "io_size": st.io_size, "macs": st.macs, "arena_lower_bound": st.plan.lower_bound,
            "cost_cycles": round(part.stages[s].cost), "memory": need.to_json(),
            "ops": [op.to_json() for op in st.ops],
            "offload": [d.to_json() for d in st.offload]})

    placement = place(mesh, [(st.name, 1) for st in stages], replicas=n_rep, max_pes=args.max_pes)
    # who produces each tensor: a stage (output index) or the host (model input index)
    producer: dict[int, tuple[int, int]] = {}
    for s, (_steps, _ins, outs) in enumerate(stage_defs):
        for j, t in enumerate(outs):
            producer[t] = (s, j)
    model_in_index = {t: i for i, t in enumerate(prog.inputs)}
    model_out_index = {t: j for j, t in enumerate(prog.outputs)}

    runtime_rel = copy_runtime(out)
    pes, replicas = [], []
    env = template_env()
    for r in range(n_rep):
        entry, exit_ = [], []
        for s, (_steps, ins, outs) in enumerate(stage_defs):
            pe = placement.pe_of(s, 0, r)
            routes: list[Route] = []
            for j, t in enumerate(outs):
                for s2, (_st2, ins2, _o2) in enumerate(stage_defs):
                    if s2 != s and t in ins2:
                        routes.append(Route(Route.OUTPUT, j, placement.pe_of(s2, 0, r),
                                            ins2.index(t)))
                if t in model_out_index:
                    routes.append(Route(Route.OUTPUT, j, HOST, model_out_index[t]))
                    exit_.append([pe, j, model_out_index[t]])
            for i, t in enumerate(ins):
                if t in producer:
                    ps, pj = producer[t]
                    routes.append(Route(Route.SOURCE, i, placement.pe_of(ps, 0, r), pj))
                else:
                    routes.append(Route(Route.SOURCE, i, HOST, model_in_index[t]))
                    entry.append([pe, i, model_in_index[t]])
            p = placement.placements[r * len(stages) + s]
            name = f"pe{pe}"
            spec = AppSpec(pe_name=name, pe_id=pe, board=board, stage=stages[s].name,
                           inputs=stages[s].inputs, outputs=stages[s].outputs,
                           workspace_size=stages[s].workspace_size,
                           model_dir=f"../../stages/{stages[s].name}/model", role="stage",
                           routes=tuple(routes))
            render_pe_app(spec, out / "pes" / name)
            pes.append({"name": name, "id": pe, "coords": list(p.coords), "chip": p.chip,
                        "stage": stages[s].name, "stage_index": s, "shard": 0, "replica": r,
                        "app": f"pes/{name}", "host_link": any(x.pe == HOST for x in routes),
                        "routes": [x.to_json() for x in routes], "role": "stage",
                        "memory": stage_json[s]["memory"]})
        replicas.append({"index": r, "entry": entry, "exit": exit_})
    reference = write_reference(out, inputs, ref_outputs)
    write_west_yml(out, env)
    manifest = {
        **manifest_header(model, board, pe_kind.name),
        "mesh": {**mesh.to_json(), "num_pes": mesh.num_pes,
                 "shape": [mesh.width, mesh.height]},
        "runtime": runtime_rel,
        "partition": {"stages": len(stages), "replicas": n_rep,
                      "pes_used": len(stages) * n_rep,
                      "bottleneck_cycles": round(part.bottleneck),
                      "sharded_layers": [d.__dict__ for d in shards],
                      "method": "exact DP over the program order (see generator/partition.py)"},
        "stages": stage_json, "pes": pes, "replicas": replicas, "reference": reference,
        "compile_seconds": round(time.perf_counter() - t0, 3),
        "plan_seconds": round(t_plan - t0, 3),
    }
    write_manifest(out, manifest)
    return manifest
