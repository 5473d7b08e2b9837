"""AOT emitter: every zoo model's generated C, run on the host, matches TVM and onnxruntime."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from generator.aot.stage import compile_stage
from generator.aot.planner import check_plan
from generator.frontend.importers import import_onnx
from generator.verify.reference import make_inputs, run_reference
from tests.host_harness import run_stage_on_host
from tests.model_zoo import ZOO

RATIOS: dict[str, float] = {}


def _tol(ref: np.ndarray) -> float:
    return 1e-4 * (1.0 + float(np.max(np.abs(ref)))) if ref.size else 1e-4


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_model_on_host_matches_tvm_and_onnxruntime(name, tmp_path):
    proto = ZOO[name]()
    model = import_onnx(proto, name=name)
    inputs = make_inputs(model.inputs, seed=1)
    ref = run_reference(model, inputs)
    stage = compile_stage(model.mod, name, model.inputs, model.outputs)
    check_plan(stage.plan)
    assert stage.plan.arena_size >= stage.plan.lower_bound
    RATIOS[name] = stage.plan.ratio
    got = run_stage_on_host(stage, inputs, tmp_path)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {i.name: a for i, a in zip(sess.get_inputs(), inputs)}
    ort_out = sess.run(None, feeds)
    assert len(got) == len(ref) == len(ort_out)
    for g, r, o in zip(got, ref, ort_out):
        assert g.shape == r.shape
        assert np.max(np.abs(g.astype(np.float64) - r)) <= _tol(r), f"{name}: C vs TVM"
        assert np.max(np.abs(g.astype(np.float64) - o)) <= _tol(o), f"{name}: C vs onnxruntime"
    # the plan is near-optimal on the test models (the target: ≤ 1.05 × lower bound)
    assert stage.plan.ratio <= 1.05, stage.plan.describe()


def test_weights_are_const_and_exact(tmp_path):
    model = import_onnx(ZOO["dense_gemm"](), name="dense_gemm")
    stage = compile_stage(model.mod, "dense_gemm", model.inputs, model.outputs)
    consts = stage.files["codegen/host/src/dense_gemm_lib2.c"]
    assert "const float tvmgen_dense_gemm_c0" in consts
    assert "aligned(16)" in consts
    # no TVM runtime left in the generated C
    for text in stage.files.values():
        assert "tvm/" not in text and "TVMFFI" not in text and "TVM_DLL" not in text


def test_header_has_microtvm_names():
    model = import_onnx(ZOO["softmax"](), name="sm")
    stage = compile_stage(model.mod, "sm", model.inputs, model.outputs)
    h = stage.files["codegen/host/include/tvmgen_sm.h"]
    assert "struct tvmgen_sm_inputs" in h and "struct tvmgen_sm_outputs" in h
    assert "int32_t tvmgen_sm_run(struct tvmgen_sm_inputs* inputs," in h
    assert f"#define TVMGEN_SM_{stage.inputs[0].c_name.upper()}_SIZE {stage.inputs[0].nbytes}" in h


def test_float_immediates_are_exact_in_c(tmp_path):
    """TVM prints float32 immediates with 7 digits; pemesh restores the exact values, so the C is
    bit-exact with the TVM reference even for constants that need 9 digits."""
    from onnx import TensorProto, helper, numpy_helper

    lo, hi = np.float32(-0.123456789), np.float32(0.987654321)
    nodes = [helper.make_node("LeakyRelu", ["x"], ["l"], alpha=0.0123456789),
             helper.make_node("Clip", ["l", "lo", "hi"], ["y"])]
    g = helper.make_graph(nodes, "imm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [64])],
                          [numpy_helper.from_array(np.array(lo), "lo"),
                           numpy_helper.from_array(np.array(hi), "hi")])
    model = import_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]),
                        name="imm")
    x = np.linspace(-2, 2, 64, dtype=np.float32)
    ref = run_reference(model, [x])
    stage = compile_stage(model.mod, "imm", model.inputs, model.outputs)
    ops_c = stage.files["codegen/host/src/imm_lib0.c"]
    alpha = float(np.float32(0.0123456789))   # printed as 1.234568e-02f it would read back wrong
    assert float.hex(alpha) + "f" in ops_c
    got = run_stage_on_host(stage, [x], tmp_path)
    assert np.array_equal(got[0], ref[0])
    assert got[0].max() == hi


@pytest.mark.parametrize("op", ["Abs", "Softsign", "Softplus"])
def test_fabs_intrinsic_lowers_to_libm(op, tmp_path):
    """TVM's C target has no rule for tirx.fabs; pemesh maps it to fabsf."""
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node(op, ["x"], ["y"])], op,
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [32])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [32])])
    model = import_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]),
                        name=op.lower())
    x = np.linspace(-3, 3, 32, dtype=np.float32)
    ref = run_reference(model, [x])
    stage = compile_stage(model.mod, op.lower(), model.inputs, model.outputs)
    assert "fabsf(" in stage.files[f"codegen/host/src/{op.lower()}_lib0.c"]
    got = run_stage_on_host(stage, [x], tmp_path)
    assert np.array_equal(got[0], ref[0])
