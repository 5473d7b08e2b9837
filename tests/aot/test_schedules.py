"""Cortex-M schedules (generator/aot/schedules): each kernel is bit-exact with the unscheduled
qop on the host (gcc), the requantize epilogues equal their references (TFLite Micro's C for the
``tflm`` one), and a scheduled layer runs bit-exact on QEMU."""

from __future__ import annotations

import dataclasses
import re
import subprocess

import numpy as np
import pytest

from generator.aot.schedules import kernels, plan_schedules, requant
from generator.aot.stage import compile_stage, prepare_model
from generator.frontend import qops
from generator.types import TensorSpec
from tests.host_harness import run_stage_on_host
from tests.kernel_zoo import EXTRA, LAYERS, imported, layer, qop_input, qop_module

KINDS = LAYERS + EXTRA


def _io(q):
    return (TensorSpec("x", q.in_shape, q.in_dtype),), (TensorSpec("y", q.out_shape, q.out_dtype),)


def _compile(q, monkeypatch, on: bool, name="k"):
    monkeypatch.setenv("PEMESH_SCHEDULES", "1" if on else "0")
    ins, outs = _io(q)
    return compile_stage(qop_module(q), name, ins, outs)


@pytest.mark.parametrize("rounding", ["tflite", "half_up"])
@pytest.mark.parametrize("kind", KINDS)
def test_schedule_bit_exact_on_host(kind, rounding, tmp_path, monkeypatch):
    """TFLite models' qops (TFLite Micro's double rounding) and ONNX QDQ models' (one rounding,
    ties up) both keep their bits when scheduled."""
    q = dataclasses.replace(layer(kind), rounding=rounding)
    x = qop_input(q)
    plain = _compile(q, monkeypatch, False)
    fast = _compile(q, monkeypatch, True)
    to, tw = kernels.tile_of(q)
    tile = re.findall(r"int32_t acc_ptr\[(\d+)\];", fast.files["codegen/host/src/k_lib0.c"])
    assert tile == [str(to * tw)], "the scheduled kernel (register tile) was not used"
    assert "xp" not in plain.files["codegen/host/src/k_lib0.c"]
    a = run_stage_on_host(plain, [x], tmp_path / "plain")[0]
    b = run_stage_on_host(fast, [x], tmp_path / "fast")[0]
    assert np.array_equal(a, b)
    inner = (a > q.act_min) & (a < q.act_max)
    assert inner.mean() > 0.3, "the test input saturates: it would not see rounding errors"


def test_fast_requant_path_needs_large_shifts(monkeypatch):
    """Shifts below 33 keep the generic int64 epilogue (the fast one would be wrong there)."""
    import tvm  # noqa: F401

    q = dataclasses.replace(layer("dense"), rounding="half_up")      # an ONNX QDQ layer
    monkeypatch.setenv("PEMESH_SCHEDULES", "1")
    pm = prepare_model(qop_module(q), "k")
    st = pm.prog.steps[0]
    assert st.orig_args is not None and st.args[2] != st.orig_args[2]     # folded bias
    assert st.args[4] != st.orig_args[4]                                   # s - 32
    shifts = pm.prog.tensors[st.args[4]].value
    orig = pm.prog.tensors[st.orig_args[4]].value                       # the exponent e
    assert np.array_equal(shifts.astype(int), (31 - orig.astype(int)) - 32)


def test_fold_bias_is_exact():
    rng = np.random.default_rng(3)
    q = layer("conv3x3")
    w = rng.integers(-128, 128, (16, 16, 3, 3)).astype(np.int8)
    b = rng.integers(-1 << 20, 1 << 20, 16).astype(np.int32)
    x = rng.integers(-128, 128, (16, 3, 3)).astype(np.int64)
    folded = kernels.fold_bias(q, w, b)
    for o in range(16):
        ref = int(b[o]) + int(((x - q.in_zp) * w[o]).sum())
        assert int(folded[o]) + int((x * w[o]).sum()) == ref


def test_half_up_fast_equals_qop_reference():
    acc, mult = requant._probe_inputs(7, 20000)
    e = (-np.random.default_rng(8).integers(2, 32, acc.size)).astype(np.int8)   # s = 31 - e
    ref = qops.requantize_ref(acc, mult, e, -4, -128, 127, rounding="half_up")
    rs = (requant.right_shift(e) - 32).astype(np.int8)
    got = requant.half_up_fast_np(acc, mult, rs, -4, -128, 127)
    assert np.array_equal(ref, got)
    assert requant.probe_mode("half_up") == "half_up" and requant.probe_mode("tflite") == "tflm"


TFLM_C = r"""
#include <stdint.h>
#include <stdio.h>
#include <limits.h>
/* TFLite Micro reference arithmetic (tensorflow/lite/kernels/internal/common.h, gemmlowp
   fixedpoint.h; the default double-rounding path), ported to C for this test */
static int32_t srdhm(int32_t a, int32_t b) {
  int overflow = a == b && a == INT32_MIN;
  int64_t ab = (int64_t)a * (int64_t)b;
  int32_t nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
  int32_t hi = (int32_t)((ab + nudge) / (1ll << 31));
  return overflow ? INT32_MAX : hi;
}
static int32_t rdbpot(int32_t x, int e) {
  int32_t mask = (int32_t)((1ll << e) - 1);
  int32_t rem = x & mask;
  int32_t thr = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> e) + (rem > thr ? 1 : 0);
}
static int32_t mbqm(int32_t x, int32_t m, int shift) {
  int left = shift > 0 ? shift : 0, right = shift > 0 ? 0 : -shift;
  return rdbpot(srdhm((int32_t)((uint32_t)x << left), m), right);
}
int main(void) {
  long acc, m, e;
  while (scanf("%ld %ld %ld", &acc, &m, &e) == 3) {
    int32_t v = mbqm((int32_t)acc, (int32_t)m, (int)e) + 3;
    v = v < -128 ? -128 : v > 127 ? 127 : v;
    printf("%d\n", v);
  }
  return 0;
}
"""


def test_tflm_epilogue_equals_tflite_micro_c(tmp_path):
    exe = tmp_path / "tflm"
    (tmp_path / "tflm.c").write_text(TFLM_C)
    subprocess.run(["gcc", "-O1", "-o", str(exe), str(tmp_path / "tflm.c")], check=True)
    acc, mult = requant._probe_inputs(11, 6000)
    rng = np.random.default_rng(12)
    e = (-rng.integers(0, 20, acc.size)).astype(np.int8)
    e[:200] = rng.integers(1, 4, 200)                              # some left shifts too
    acc[:200] = rng.integers(-(1 << 20), 1 << 20, 200)
    lines = "".join(f"{a} {m} {s}\n" for a, m, s in zip(acc, mult, e))
    out = subprocess.run([str(exe)], input=lines, capture_output=True, text=True, check=True)
    ref = np.array([int(v) for v in out.stdout.split()])
    assert np.array_equal(requant.tflm_np(acc, mult, e, 3, -128, 127), ref)


def test_tflm_epilogue_in_a_scheduled_kernel(tmp_path, monkeypatch):
    """The ``tflm`` TIR epilogue, compiled by TVM's C codegen inside a scheduled dense kernel,
    equals TFLite Micro's arithmetic (numpy model checked against the C above)."""
    import tvm
    from tvm import relax

    from generator.aot.lower import lower_prim_funcs  # noqa: F401

    q = layer("dense")
    rng = np.random.default_rng(5)
    w = rng.integers(-127, 128, (128, 256)).astype(np.int8)
    bias = rng.integers(-20000, 20000, 128).astype(np.int32)
    mult = rng.integers(1 << 30, (1 << 31) - 1, 128).astype(np.int32)
    e = (-rng.integers(8, 14, 128)).astype(np.int8)
    e[:4] = 1                                                      # a left shift
    func = kernels.scheduled_func(q, (128, 256), "tflm", False, True)
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(q.in_shape, q.in_dtype))
    with bb.function("main", [x]):
        gv = bb.add_func(func, "qop_tflm")
        with bb.dataflow():
            y = bb.emit(relax.call_tir(gv, [x] + [relax.const(a) for a in (w, bias, mult, e)],
                                       relax.TensorType(q.out_shape, q.out_dtype)))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    monkeypatch.setenv("PEMESH_SCHEDULES", "0")   # lower this function as it is
    ins, outs = _io(q)
    stage = compile_stage(bb.get(), "t", ins, outs)
    xin = qop_input(q)
    got = run_stage_on_host(stage, [xin], tmp_path)[0]
    acc = (xin.astype(np.int64) @ w.T.astype(np.int64) + bias).astype(np.int32).reshape(-1)
    want = requant.tflm_np(acc, mult, e, q.out_zp, q.act_min, q.act_max)
    assert np.array_equal(got.reshape(-1), want)
    assert tvm is not None


def test_schedules_off_switch(monkeypatch):
    q = layer("pointwise")
    monkeypatch.setenv("PEMESH_SCHEDULES", "0")
    pm = prepare_model(qop_module(q), "k")
    assert all(s.orig_args is None for s in pm.prog.steps)
    monkeypatch.setenv("PEMESH_SCHEDULES", "1")
    from generator.aot.lower import relax_pipeline
    from generator.aot.graph import build_program
    fused = relax_pipeline(qop_module(q))
    assert len(plan_schedules(fused, build_program(fused))) == 1


@pytest.mark.qemu
def test_scheduled_depthwise_bit_exact_on_qemu(tmp_path, monkeypatch):
    from tests.kernel_zoo import run_on_qemu

    q = layer("depthwise3x3")
    monkeypatch.setenv("PEMESH_SCHEDULES", "0")
    a = run_on_qemu(imported(q), "qemu_cortex_m3", tmp_path / "plain")
    monkeypatch.setenv("PEMESH_SCHEDULES", "1")
    b = run_on_qemu(imported(q), "qemu_cortex_m3", tmp_path / "fast")
    assert a["exact_vs_reference"] and b["exact_vs_reference"]
    assert np.array_equal(a["outputs"][0], b["outputs"][0])
    assert b["ticks"] < a["ticks"]   # the scheduled code ran (not a timing claim: 2.5x fewer)


# --- float32 ------------------------------------------------------------------------------------

def _fp32_pair(model, monkeypatch, tmp_path):
    rng = np.random.default_rng(0)
    x = [rng.standard_normal(s.shape).astype(s.dtype) for s in model.inputs]
    outs, srcs = {}, {}
    for on in (False, True):
        monkeypatch.setenv("PEMESH_SCHEDULES", "1" if on else "0")
        st = compile_stage(model.mod, "f", model.inputs, model.outputs)
        srcs[on] = st.files["codegen/host/src/f_lib0.c"]
        outs[on] = run_stage_on_host(st, x, tmp_path / str(on))
    return outs, srcs


@pytest.mark.parametrize("kind", ["f32_conv3x3", "f32_dense"])
def test_fp32_schedule_within_1e5(kind, tmp_path, monkeypatch):
    from tests.kernel_zoo import fp32_layer

    model, _ = fp32_layer(kind)
    outs, srcs = _fp32_pair(model, monkeypatch, tmp_path)
    tiles = {on: [int(n) for n in re.findall(r"float \w+_ptr\[(\d+)\];", srcs[on])]
             for on in (False, True)}
    assert any(n > 1 for n in tiles[True]), "no register tile: not scheduled"
    # unscheduled: at most the one-element accumulator of the epilogue-at-accumulator rule
    assert all(n == 1 for n in tiles[False]), tiles[False]
    for a, b in zip(outs[False], outs[True]):
        assert np.allclose(a, b, rtol=1e-5, atol=1e-5)
        assert np.count_nonzero(a) > a.size // 4


def test_fp32_schedule_tiny_cnn(tmp_path, monkeypatch):
    import onnx

    from generator.frontend.importers import import_onnx
    from tests import paths

    model = import_onnx(onnx.load(str(paths.EXAMPLES / "tiny_cnn.onnx")), name="tiny_cnn")
    outs, srcs = _fp32_pair(model, monkeypatch, tmp_path)
    assert srcs[True].count("_ptr[") > srcs[False].count("_ptr[")
    for a, b in zip(outs[False], outs[True]):
        assert np.allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.qemu
def test_fp32_conv_schedule_on_m4f_qemu(tmp_path, monkeypatch):
    from tests.kernel_zoo import fp32_layer, run_on_qemu

    res = {}
    for on in (False, True):
        monkeypatch.setenv("PEMESH_SCHEDULES", "1" if on else "0")
        model, _ = fp32_layer("f32_conv3x3")
        res[on] = run_on_qemu(model, "qemu_mps2_an386", tmp_path / str(on))
    assert np.allclose(res[False]["outputs"][0], res[True]["outputs"][0], rtol=1e-5, atol=1e-5)
    assert res[True]["ticks"] < res[False]["ticks"]


# --- the DSP dual MAC (SMLAD) -------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["pointwise", "dense"])
def test_smlad_kernels_bit_exact_on_host(kind, tmp_path, monkeypatch):
    """On a DSP cpu, dense/pointwise take int16-pair packed weights and pemesh_smlad (here its
    portable C fallback, as the host has no SMLAD)."""
    q = layer(kind)
    x = qop_input(q)
    monkeypatch.setenv("PEMESH_SCHEDULES", "0")
    ins, outs = _io(q)
    plain = compile_stage(qop_module(q), "k", ins, outs)
    monkeypatch.setenv("PEMESH_SCHEDULES", "1")
    dsp = compile_stage(qop_module(q), "k", ins, outs, cpu="cortex-m4f")
    src = dsp.files["codegen/host/src/k_lib0.c"]
    assert "pemesh_smlad(" in src and "__smlad" in src
    m3 = compile_stage(qop_module(q), "k", ins, outs, cpu="cortex-m3")
    assert "pemesh_smlad" not in m3.files["codegen/host/src/k_lib0.c"]
    a = run_stage_on_host(plain, [x], tmp_path / "plain")[0]
    b = run_stage_on_host(dsp, [x], tmp_path / "dsp")[0]
    assert np.array_equal(a, b)


def test_pack_pairs_layout():
    w = np.array([[1, -2, -128, 127]], np.int8)
    p = kernels.pack_pairs(w).view(np.uint32)
    assert p.tolist() == [[(0xFFFE << 16) | 1, (127 << 16) | 0xFF80]]


@pytest.mark.qemu
def test_smlad_pointwise_bit_exact_on_m4f_qemu(tmp_path, monkeypatch):
    from tests.kernel_zoo import run_on_qemu

    q = layer("pointwise")
    monkeypatch.setenv("PEMESH_SCHEDULES", "0")
    a = run_on_qemu(imported(q), "qemu_mps2_an386", tmp_path / "plain")
    monkeypatch.setenv("PEMESH_SCHEDULES", "1")
    b = run_on_qemu(imported(q), "qemu_mps2_an386", tmp_path / "dsp")
    assert b["exact_vs_reference"] and np.array_equal(a["outputs"][0], b["outputs"][0])
    src = next((tmp_path / "dsp" / "stages").glob("*/model/codegen/host/src/*_lib0.c")).read_text()
    assert "pemesh_smlad(" in src
