"""``pemesh compile``: model → plan → per-stage C → per-PE apps, written as OUT/ (a west workspace).

One path for every target: ``--board K`` is a 1×1 mesh of PE kind K (``boards.resolve_target``),
so a single PE and a mesh of 7,296 go through the same stages —

    frontend.load_model → frontend.quantize_if_qdq → verify.reference (the anchor's output)
      → partition.plan_mesh (shard, prepare, cut, place, route)
      → aot.emit_stage per stage → MLF → firmware.render_pe_app per PE → manifest

— and give the same OUT layout (stages ``<name>_s<i>``, apps ``pes/pe<id>``) and firmware.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from generator import __version__
from generator.errors import DoesNotFitError, UnsupportedModelError, UsageError
from generator.manifest import (Manifest, ModelRecord, OutTree, PeRecord, ReplicaRecord,
                                StageRecord, write_manifest, write_reference)
from generator.types import AppSpec, ImportedModel
from generator.verify.check import ANCHOR_NAMES

log = logging.getLogger(__name__)

#: seed of the reference input stored in OUT/reference
REFERENCE_SEED = 0


def parse_input_shapes(items: list[str]) -> dict[str, tuple[int, ...]]:
    """``["x:1,3,32,32"]`` → ``{"x": (1, 3, 32, 32)}`` (split at the last ':')."""
    shapes = {}
    for item in items:
        name, sep, dims = item.rpartition(":")
        try:
            if not sep or not name:
                raise ValueError
            shapes[name] = tuple(int(d) for d in dims.split(","))
        except ValueError:
            raise UsageError(f"--input-shape '{item}' is not NAME:D0,D1,..",
                             hint="for example --input-shape input:1,3,32,32") from None
    return shapes


def _named_by_source(err: UnsupportedModelError, model: ImportedModel) -> UnsupportedModelError:
    """``err`` about a Relax operator, naming the model's own node(s) it came from."""
    import re

    from generator.frontend.onnx_ops import onnx_nodes_of_relax_op

    m = re.search(r"operator (relax\.[\w.]+)", str(err.args[0]))
    nodes = onnx_nodes_of_relax_op(model, m.group(1)) if m else []
    if not nodes:
        return err
    more = f" (and {len(nodes) - 1} more)" if len(nodes) > 1 else ""
    return UnsupportedModelError(f"{nodes[0]}{more}: {err.args[0]}", hint=err.hint)


def compile_model(model: ImportedModel, out: Path, mesh, *, max_pes: int | None = None,
                  replicas: str | int = 1, host_protocol: str = "pemesh") -> Manifest:
    """Compile ``model`` for ``mesh`` (a 1-PE mesh for ``--board``); write OUT/ and return the
    manifest. DoesNotFitError when a PE's plan does not fit its memory."""
    from generator.aot.mlf import write_mlf
    from generator.aot.stage import emit_stage, tensor_spec
    from generator.firmware.render import host_protocol_specs, render_pe_app, render_workspace
    from generator.partition.plan import plan_mesh, stage_memory_need
    from generator.verify.anchors import run_anchor
    from generator.verify.reference import make_inputs

    t0 = time.perf_counter()
    tree = OutTree(Path(out))
    pe_kind = mesh.pe_kind
    board = pe_kind.zephyr_board or pe_kind.name
    inputs = make_inputs(model.inputs, seed=REFERENCE_SEED)
    anchor = run_anchor(model, inputs)
    try:
        plan = plan_mesh(model, mesh, max_pes=max_pes, replicas=replicas)
    except UnsupportedModelError as err:
        raise _named_by_source(err, model) from None
    t_plan = time.perf_counter()
    if plan.bands is not None and host_protocol != "pemesh":
        raise UsageError(
            f"--host-protocol {host_protocol}: the model's input is cut into "
            f"{len(plan.input_slices)} bands of rows for its first PEs (its activations do not "
            "fit one PE), and that protocol sends the whole input to one PE",
            hint="run it with the pemesh host protocol, or on a PE kind with more RAM")
    protocol = host_protocol_specs(plan.pes, plan.replicas, model.outputs, host_protocol)
    #: how a quantized model output is dequantized (m-results of the EEMBC protocol)
    dequant = tuple((n, sc, zp) for n, (sc, zp) in sorted(model.meta.get("output_quant",
                                                                         {}).items()))

    pm = plan.prepared
    last = len(plan.stages) - 1
    #: the program's inputs: the model's, or the row bands of it a band split feeds its PEs
    prog_inputs = [sl.spec(model.inputs[sl.model_input]) for sl in plan.input_slices] \
        or list(model.inputs)
    emitted, records = [], []
    for sd in plan.stages:
        name = f"{model.name}_s{sd.index}"
        in_specs = [tensor_spec(pm, t, prog_inputs, model.outputs) for t in sd.inputs]
        out_specs = [tensor_spec(pm, t, prog_inputs, model.outputs) for t in sd.outputs]
        st = emit_stage(pm, name, list(sd.steps), list(sd.inputs), list(sd.outputs), in_specs,
                        out_specs, include_copies=(sd.index == last),
                        accelerator=pe_kind.accelerator)
        need = stage_memory_need(st, pe_kind)
        if not need.fits:
            raise DoesNotFitError(
                f"stage {name} does not fit a {pe_kind.name} PE: RAM {need.ram_bytes} B of "
                f"{need.ram_limit} B, flash {need.flash_bytes} B of {need.flash_limit} B",
                hint="the partitioner's arena estimate was too low; use a larger mesh")
        rec = StageRecord(
            name=name, index=sd.index, steps=sd.step_range, inputs=tuple(in_specs),
            outputs=tuple(out_specs), input_tensors=sd.inputs, output_tensors=sd.outputs,
            workspace_size=st.workspace_size, constants_size=st.constants_size,
            io_size=st.io_size, macs=st.macs, arena_lower_bound=st.plan.lower_bound,
            cost_cycles=round(plan.stage_costs[sd.index]), memory=need.to_json(),
            ops=tuple(op.to_json() for op in st.ops),
            offload=tuple(d.to_json() for d in st.offload))
        write_mlf(st, tree.root / rec.mlf, tree.root / rec.model_dir)
        emitted.append(st)
        records.append(rec)

    pes = []
    for p in plan.pes:
        st, rec = emitted[p.stage], records[p.stage]
        app = PeRecord(name=p.name, id=p.id, coords=p.coords, chip=p.chip, stage=st.name,
                       stage_index=p.stage, replica=p.replica, host_link=p.host_link,
                       routes=p.routes, memory=rec.memory)
        spec = AppSpec(pe_name=p.name, pe_id=p.id, board=board, stage=st.name,
                       inputs=st.inputs, outputs=st.outputs, workspace_size=st.workspace_size,
                       model_dir=f"../../{rec.model_dir}", role="stage",
                       model_name=model.name, dequant=dequant if host_protocol == "eembc" else (),
                       **protocol[p.id])
        render_pe_app(spec, tree.pe_app_dir(app.name))
        pes.append(app)
    render_workspace(tree.west_yml, tree.runtime_dir)
    reference = write_reference(tree.root, inputs, anchor.outputs, anchor.anchor, anchor.note)
    manifest = Manifest(
        generator=f"pemesh {__version__}",
        model=ModelRecord(model.name, model.source, model.format, model.inputs, model.outputs),
        board=board, pe_kind=pe_kind.name,
        mesh={**mesh.to_json(), "num_pes": mesh.num_pes, "shape": [mesh.width, mesh.height]},
        partition={"stages": len(plan.stages), "replicas": len(plan.replicas),
                   "pes_used": len(plan.pes), "bottleneck_cycles": round(plan.bottleneck_cycles),
                   "sharded_layers": [d.__dict__ for d in plan.shards],
                   **({"band_split": plan.bands.to_json(),
                       "input_slices": [sl.to_json() for sl in plan.input_slices]}
                      if plan.bands is not None else {}),
                   "method": "exact DP over the program order (see generator/partition/pipeline.py)"},
        stages=tuple(records), pes=tuple(pes),
        replicas=tuple(ReplicaRecord(r.index, r.entry, r.exit) for r in plan.replicas),
        reference=reference, compile_seconds=round(time.perf_counter() - t0, 3),
        plan_seconds=round(t_plan - t0, 3), host_protocol=host_protocol)
    write_manifest(tree.root, manifest)
    return manifest


def _print_summary(manifest: Manifest, out: Path) -> None:
    print(f"compiled {manifest.model.name} ({manifest.model.format}) into {out}: "
          f"{len(manifest.stages)} stage(s), {len(manifest.pes)} PE(s), board {manifest.board}")
    anchor = manifest.reference.get("anchor", "tvm")
    print(f"  reference output: {ANCHOR_NAMES.get(anchor, anchor)}"
          + (f" ({manifest.reference['note']})" if manifest.reference.get("note") else ""))
    for s in manifest.stages:
        print(f"  stage {s.name}: {len(s.ops)} ops, weights {s.constants_size} B, "
              f"arena {s.workspace_size} B (lower bound {s.arena_lower_bound} B), "
              f"io {s.io_size} B, {s.macs} MACs")
        for op in s.ops:
            if op.get("backend", "tvm") != "tvm":
                print(f"    {op['relax_name']}: offloaded ({op['backend']})")
        for d in s.offload:
            if isinstance(d, dict) and d.get("kind") and not d.get("offloaded"):
                print(f"    step {d['step']} ({d['func']}): on the CPU ({d['reason']})")


def check_out_folder(out: Path, *, force: bool) -> None:
    """Refuse, before any work, an ``-o`` that cannot become OUT: a file, a folder that holds
    something (an earlier compile included) without ``--force``, a place that is not writable."""
    from generator.paths import unwritable_reason

    if out.exists() and not out.is_dir():
        raise UsageError(f"-o {out} is a file, not a folder", hint="choose a folder for OUT")
    if out.is_dir() and any(out.iterdir()) and not force:
        if OutTree(out).is_pemesh_out():
            raise UsageError(f"{out} already holds a compile",
                             hint="pass --force to replace it, or choose another -o folder")
        raise UsageError(f"{out} exists and is not a pemesh output folder",
                         hint="choose another -o folder, or pass --force")
    why = unwritable_reason(out, make_parents=True)
    partial = OutTree(out).partial_path()
    why = why or unwritable_reason(partial, make_parents=True)
    if why is not None:
        raise UsageError(f"-o {out}: {why}", hint="choose a folder you can write to (pemesh "
                                                  f"compiles into {partial.name} beside it first)")


def compile_command(args) -> int:
    """CLI: ``pemesh compile MODEL -o OUT [--board B | --mesh M] ...``."""
    from generator.boards.catalog import resolve_target
    from generator.frontend.importers import load_model
    from generator.frontend.quantize import quantize_if_qdq
    from generator.partition.plan import parse_replicas

    out = Path(args.out).resolve()       # "-o ." and "-o .." name real folders
    check_out_folder(out, force=args.force)
    mesh = resolve_target(board=args.board, mesh=args.mesh)
    replicas = parse_replicas(getattr(args, "replicas", 1))
    model = load_model(Path(args.model), name=args.name,
                       input_shapes=parse_input_shapes(args.input_shape) or None)
    model = quantize_if_qdq(model, Path(args.model))
    tree = OutTree(out)
    partial = tree.partial()
    try:
        manifest = compile_model(model, partial.root, mesh, max_pes=args.max_pes,
                                 replicas=replicas,
                                 host_protocol=getattr(args, "host_protocol", "pemesh"))
        tree.adopt(partial)
    finally:
        shutil.rmtree(partial.root, ignore_errors=True)
    _print_summary(manifest, out)
    return 0
