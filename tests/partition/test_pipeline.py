"""Partitioner: exact on chains (vs exhaustive search), stages fit, and a model cut into stages
(and with a sharded layer) computes the same numbers as the whole model, stage by stage."""

from __future__ import annotations

import random

import numpy as np
import pytest

from generator.aot.stage import StepFacts, emit_stage, prepare_model, stage_io, step_facts, tensor_spec
from generator.aot.graph import Program, Step
from generator.errors import DoesNotFitError
from generator.frontend.importers import import_onnx
from generator.partition.pipeline import PeBudget, brute_force_partition, partition_pipeline
from generator.verify.reference import make_inputs, run_reference
from tests.host_harness import run_stage_on_host
from tests.model_zoo import ZOO


def _chain(rng: random.Random, n: int) -> tuple[Program, list[StepFacts]]:
    prog = Program()
    t = prog.add((rng.randint(1, 64),), "float32", "input", index=0)
    prog.inputs.append(t)
    facts = []
    for i in range(n):
        w = prog.add((rng.randint(1, 400),), "float32", "const", index=i, value=None)
        o = prog.add((rng.randint(1, 300),), "float32", "output" if i == n - 1 else "inter",
                     index=0 if i == n - 1 else -1)
        prog.steps.append(Step(f"f{i}", [t, w], [o]))
        facts.append(StepFacts(i, f"f{i}", macs=rng.randint(0, 5000),
                               weight_bytes=prog.tensors[w].nbytes, temp_bytes=rng.choice([0, 64]),
                               in_bytes=prog.tensors[t].nbytes, out_bytes=prog.tensors[o].nbytes,
                               code_bytes=rng.randint(100, 2000)))
        t = o
    prog.outputs.append(t)
    return prog, facts


@pytest.mark.parametrize("seed", range(30))
def test_dp_equals_exhaustive_search_on_chains(seed):
    rng = random.Random(seed)
    prog, facts = _chain(rng, rng.randint(2, 9))
    budget = PeBudget(ram_bytes=rng.randint(2500, 6000), flash_bytes=rng.randint(1500, 4000),
                      runtime_ram=512, runtime_flash=256)
    k = rng.randint(1, 6)
    brute = brute_force_partition(prog, facts, budget, k)
    if brute == float("inf"):
        with pytest.raises(DoesNotFitError):
            partition_pipeline(prog, facts, budget, k)
        return
    part = partition_pipeline(prog, facts, budget, k)
    assert part.bottleneck == pytest.approx(brute)
    assert all(s.fits for s in part.stages) and len(part.stages) <= k
    assert [s.start for s in part.stages][0] == 0 and part.stages[-1].stop == len(prog.steps)
    for a, b in zip(part.stages, part.stages[1:]):
        assert a.stop == b.start


def _run_pipeline(pm, ranges, model, inputs, tmp_path):
    """Run each stage's generated C on the host in turn, handing tensors on by id."""
    from generator.partition.plan import stage_defs

    defs = [(list(d.steps), list(d.inputs), list(d.outputs)) for d in stage_defs(pm, ranges)]
    values = {t: a for t, a in zip(pm.prog.inputs, inputs)}
    for s, (steps, ins, outs) in enumerate(defs):
        in_specs = [tensor_spec(pm, t, model.inputs, model.outputs) for t in ins]
        out_specs = [tensor_spec(pm, t, model.inputs, model.outputs) for t in outs]
        st = emit_stage(pm, f"st{s}", steps, ins, outs, in_specs, out_specs,
                        include_copies=(s == len(defs) - 1))
        got = run_stage_on_host(st, [values[t] for t in ins], tmp_path / f"s{s}")
        values.update(zip(outs, got))
    return [values[t] for t in pm.prog.outputs]


@pytest.mark.parametrize("name", ["tiny_cnn", "conv_bn_relu_pool", "mlp"])
def test_stages_compose_to_the_model(name, tmp_path):
    model = import_onnx(ZOO[name](), name=name)
    inputs = make_inputs(model.inputs, seed=3)
    ref = run_reference(model, inputs)
    pm = prepare_model(model.mod, name)
    facts = step_facts(pm)
    # a PE so small that the model needs several stages
    budget = PeBudget(ram_bytes=24 * 1024, flash_bytes=12 * 1024, runtime_ram=1024,
                      runtime_flash=1024)
    part = partition_pipeline(pm.prog, facts, budget, 8)
    assert len(part.stages) >= 2
    got = _run_pipeline(pm, part.ranges, model, inputs, tmp_path)
    for g, r in zip(got, ref):
        assert np.max(np.abs(g - r)) <= 1e-4 * (1 + np.max(np.abs(r)))


def test_sharded_dense_layer_matches(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from generator.partition.shard import shard_layers

    rng = np.random.default_rng(0)
    w = (rng.standard_normal((96, 128)) / 10).astype(np.float32)   # 48 KiB
    b = rng.standard_normal(96).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w", "b"], ["h"], transB=1),
         helper.make_node("Relu", ["h"], ["y"])], "big_dense",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 128])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 96])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = import_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]),
                        name="big_dense")
    inputs = make_inputs(model.inputs, seed=1)
    ref = run_reference(model, inputs)
    sharded, decisions = shard_layers(model.mod, weight_budget=16 * 1024)
    assert decisions and decisions[0].shards == 3
    pm = prepare_model(sharded, "big_dense")
    budget = PeBudget(ram_bytes=64 * 1024, flash_bytes=20 * 1024, runtime_ram=1024,
                      runtime_flash=1024)
    part = partition_pipeline(pm.prog, step_facts(pm), budget, 8)
    # each shard's weights alone fill a PE: one stage per shard, plus the gather
    assert len(part.stages) >= 3
    got = _run_pipeline(pm, part.ranges, model, inputs, tmp_path)
    assert np.max(np.abs(got[0] - ref[0])) <= 1e-4 * (1 + np.max(np.abs(ref[0])))


def test_single_step_too_big_names_the_step():
    rng = random.Random(0)
    prog, facts = _chain(rng, 3)
    budget = PeBudget(ram_bytes=100, flash_bytes=100, runtime_ram=0, runtime_flash=0)
    with pytest.raises(DoesNotFitError, match="step 0"):
        partition_pipeline(prog, facts, budget, 3)


def test_too_few_pes_says_how_many_are_needed():
    rng = random.Random(1)
    prog, facts = _chain(rng, 6)
    widest = max(f.weight_bytes + f.code_bytes // 4 for f in facts)
    budget = PeBudget(ram_bytes=100_000, flash_bytes=widest + 16, runtime_ram=0, runtime_flash=0)
    k_needed = None
    for k in range(1, 7):
        if brute_force_partition(prog, facts, budget, k) != float("inf"):
            k_needed = k
            break
    assert k_needed and k_needed > 1
    with pytest.raises(DoesNotFitError, match=f"needs at least {k_needed} PEs"):
        partition_pipeline(prog, facts, budget, k_needed - 1)
