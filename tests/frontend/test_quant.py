"""int8 QDQ models: the QDQ → integer rewrite (generator/frontend/quantize.py), on the host harness.

The integer graph's C must equal the TVM host reference of the *same integer graph* bit for bit;
that reference must be within one quantization step of onnxruntime's QDQ result (the rewrite
rounds half up in fixed point, onnxruntime rounds half to even in float).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from generator.aot.stage import compile_stage
from generator.errors import UnsupportedModelError
from generator.frontend.importers import import_onnx
from generator.frontend.quantize import quantize_model, quantize_multiplier, requantize_ref
from generator.verify.reference import make_inputs, run_onnxruntime, run_reference
from tests.host_harness import run_stage_on_host
from tests.quant_zoo import QZOO


def _out_scale(proto: onnx.ModelProto) -> float:
    """Scale of the final DequantizeLinear (one quantization step of the output)."""
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    last = [n for n in proto.graph.node if n.op_type == "DequantizeLinear"][-1]
    return float(inits[last.input[1]])


@pytest.mark.parametrize("name", sorted(QZOO))
def test_int8_model_bit_exact_on_host(name, tmp_path):
    proto = QZOO[name]()
    qmodel = quantize_model(import_onnx(proto, name=name), proto)
    assert qmodel.meta["quantized_ops"] >= 1
    stage = compile_stage(qmodel.mod, name, qmodel.inputs, qmodel.outputs)
    funcs = {op.relax_name for op in stage.ops}
    # the folded ops are integer qops: no float conv2d/matmul left in the stage
    assert any(f.startswith("pemesh_q") for f in funcs)
    assert not any("conv2d" in f and not f.startswith("pemesh_q") for f in funcs)
    assert not any("matmul" in f for f in funcs)
    inputs = make_inputs(qmodel.inputs, seed=3)
    ref = run_reference(qmodel, inputs)
    got = run_stage_on_host(stage, inputs, tmp_path)
    for g, r in zip(got, ref):
        assert np.array_equal(g, r), f"{name}: C differs from the TVM integer reference"
    ort = run_onnxruntime(proto, inputs)
    step = _out_scale(proto)
    for r, o in zip(ref, ort):
        assert np.max(np.abs(r.astype(np.float64) - o)) <= step * 1.0001, name


def test_requantize_is_tflites_fixed_point_and_matches_float():
    """TFLite's QuantizeMultiplier + MultiplyByQuantizedMultiplier: the doubling high multiply
    rounds ties up (its nudge), the rounding shift rounds ties away from zero."""
    mult, shift = quantize_multiplier(0.5)
    assert (mult, shift) == (1 << 30, 0)      # 0.5 = 2^30 * 2^(0 - 31)
    acc = np.array([-3, -1, 1, 3, 5], np.int32)
    got = requantize_ref(acc, np.full(5, mult), np.full(5, shift), 0, -128, 127)
    assert got.tolist() == [-1, 0, 1, 2, 3]   # x/2 in the high multiply: ties up (-1.5→-1)
    m4, s4 = quantize_multiplier(0.25)
    assert (m4, s4) == (1 << 30, -1)
    # the shift rounds: 0.25 * 6 = 1.5 → 2; 0.25 * -2 = -0.5 → -1; 0.25 * -6 = -1.5 → -2
    assert requantize_ref(np.array([6, -2, 2, -6]), np.full(4, m4), np.full(4, s4), 0, -128,
                          127).tolist() == [2, -1, 1, -2]
    m3, s3 = quantize_multiplier(3.0)          # a scale >= 1: a left shift
    assert (m3, s3) == (3 << 29, 2)
    assert requantize_ref(np.array([5, -7]), np.full(2, m3), np.full(2, s3), 0, -128,
                          127).tolist() == [15, -21]
    # ONNX QDQ models round once, ties up (closest to onnxruntime's float requantization)
    assert requantize_ref(np.array([6, -2, 2, -6]), np.full(4, m4), np.full(4, s4), 0, -128,
                          127, rounding="half_up").tolist() == [2, 0, 1, -1]
    rng = np.random.default_rng(0)
    for scale in rng.uniform(1e-5, 0.9, 50):
        m, s = quantize_multiplier(float(scale))
        assert abs(m * 2.0 ** (s - 31) - scale) <= scale * 2 ** -30


def test_tiny_and_huge_requantization_scales_follow_tflite():
    """TFLite's QuantizeMultiplier: an exponent below -31 gives multiplier 0 (the output is the
    zero point), e.g. the ~1e-10 scale of a channel whose weights are ~0; no error."""
    assert quantize_multiplier(2.2897e-10) == (0, 0)
    assert quantize_multiplier(0.0) == (0, 0)
    m, s = quantize_multiplier(2.0 ** -31)            # the smallest that still has a multiplier
    assert (m, s) == (1 << 30, -30)
    assert requantize_ref(np.array([1 << 30, -(1 << 30)]), np.full(2, m), np.full(2, s), 3,
                          -128, 127).tolist() == [3 + 1, 3 - 1]    # 2^30 * 2^-31 = 0.5 → ±1
    assert requantize_ref(np.array([123456789]), np.zeros(1), np.zeros(1), -5, -128,
                          127).tolist() == [-5]
    assert quantize_multiplier(2.0 ** 40) == ((1 << 31) - 1, 30)


def _qdq_conv(w_dtype=np.int8, w_zp=0, per_channel=False, q_elem=None) -> onnx.ModelProto:
    from onnx import TensorProto as TP
    co = 4
    w = np.ones((co, 2, 1, 1), w_dtype)
    zshape = (co,) if per_channel else ()
    inits = [numpy_helper.from_array(np.float32(0.1), "xs"),
             numpy_helper.from_array(np.int8(0), "xz"),
             numpy_helper.from_array(w, "w"),
             numpy_helper.from_array(np.full(zshape, 0.1, np.float32), "ws"),
             numpy_helper.from_array(np.full(zshape, w_zp, w_dtype), "wz"),
             numpy_helper.from_array(np.float32(0.2), "ys"),
             numpy_helper.from_array(np.int8(0), "yz")]
    if q_elem is not None:
        inits[1] = numpy_helper.from_array(np.int16(0), "xz")
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"], name="q_in"),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"], name="dq_in"),
             helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], name="dq_weight",
                              **({"axis": 0} if per_channel else {})),
             helper.make_node("Conv", ["xd", "wd"], ["c"], name="conv"),
             helper.make_node("QuantizeLinear", ["c", "ys", "yz"], ["yq"], name="q_out"),
             helper.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["y"], name="dq_out")]
    g = helper.make_graph(nodes, "bad", [helper.make_tensor_value_info("x", TP.FLOAT, [1, 2, 4, 4])],
                          [helper.make_tensor_value_info("y", TP.FLOAT, [1, co, 4, 4])],
                          initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


@pytest.mark.parametrize("kw, words", [
    (dict(w_dtype=np.uint8, w_zp=128), ["dq_weight", "uint8"]),
    (dict(w_zp=3, per_channel=True), ["dq_weight", "asymmetric per-channel"]),
    (dict(w_zp=3), ["dq_weight", "asymmetric per-tensor"]),
])
def test_unsupported_scheme_names_the_node(kw, words):
    proto = _qdq_conv(**kw)
    with pytest.raises(UnsupportedModelError) as exc:
        quantize_model(import_onnx(proto, name="bad"), proto)
    for w in words:
        assert w in str(exc.value)


def test_int16_quantization_is_rejected_by_node():
    from generator.frontend.quantize import check_onnx_qdq
    proto = _qdq_conv(q_elem="int16")
    with pytest.raises(UnsupportedModelError, match="q_in.*INT16"):
        check_onnx_qdq(proto)
