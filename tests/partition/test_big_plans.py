"""The big models of issue 10 planned for the 7,296-PE spinnaker2_board: a 16 MiB MLP and a
12 MiB stack of transformer blocks split over hundreds of PEs. Every stage's memory plan passes
the overlap checker and fits its PE, every PE's routing table and tensor counts fit the runtime,
and no PE receives a tensor it does not read (no gather of split layers)."""

from __future__ import annotations

from generator.aot.planner import check_plan
from generator.aot.stage import emit_stage, tensor_spec
from generator.boards.catalog import load_mesh
from generator.frontend.importers import import_onnx
from generator.partition.pipeline import PeBudget
from generator.partition.plan import HOST, plan_mesh, stage_memory_need
from generator.partition.shard import FAN_OUT, RELAY
from generator.wire import MAX_ROUTES
from tests.bigmodel_zoo import big_mlp, transformer_stack, weight_bytes

MAX_TENSORS = PeBudget(0, 0, 0, 0).max_tensors


def _check(proto, name, min_pes):
    assert weight_bytes(proto) > 12 * 2**20 - 2**20
    mesh = load_mesh("spinnaker2_board")
    model = import_onnx(proto, name=name)
    plan = plan_mesh(model, mesh)
    pm = plan.prepared
    assert len(plan.pes) >= min_pes
    last = len(plan.stages) - 1
    for sd in plan.stages:
        ins = [tensor_spec(pm, t, model.inputs, model.outputs) for t in sd.inputs]
        outs = [tensor_spec(pm, t, model.inputs, model.outputs) for t in sd.outputs]
        st = emit_stage(pm, f"{name}_s{sd.index}", list(sd.steps), list(sd.inputs),
                        list(sd.outputs), ins, outs, include_copies=(sd.index == last),
                        accelerator=mesh.pe_kind.accelerator)
        check_plan(st.plan)                                    # the overlap checker
        assert stage_memory_need(st, mesh.pe_kind).fits, sd
        assert len(sd.inputs) <= MAX_TENSORS and len(sd.outputs) <= MAX_TENSORS
        read = {a for si in sd.steps for a in pm.prog.steps[si].args}
        assert set(sd.inputs) <= read                          # every received tensor is used
    stage_of = {si: sd.index for sd in plan.stages for si in sd.steps}
    relays = [si for si, st in enumerate(pm.prog.steps) if st.func.startswith(RELAY)]
    for si in relays:                                          # a relay stays with its part
        assert stage_of[si] == stage_of[si + 1]
    for pe in plan.pes:
        assert len(pe.routes) <= MAX_ROUTES, pe
        dests: dict[int, int] = {}
        for r in pe.routes:
            if r.kind == r.OUTPUT and r.pe != HOST:
                dests[r.a] = dests.get(r.a, 0) + 1
        # a broadcast reaches at most FAN_OUT parts per sender, + a relay and a skip
        assert max(dests.values(), default=0) <= FAN_OUT + 2, pe
    return plan, relays


def test_16_mib_mlp_is_split_over_hundreds_of_pes():
    plan, relays = _check(big_mlp(), "big_mlp", 200)
    assert len(relays) >= 64 // FAN_OUT - 1           # layer 3's input reaches 64 parts
    kinds = [(d.kind, d.shards) for d in plan.shards]
    assert kinds == [("columns", 64), ("rows", 64)] * 2


def test_12_mib_transformer_stack_is_split_over_hundreds_of_pes():
    plan, _ = _check(transformer_stack(), "tf", 150)
    kinds = {d.kind for d in plan.shards}
    assert kinds == {"columns", "rows"} and len(plan.shards) == 4 * 6
