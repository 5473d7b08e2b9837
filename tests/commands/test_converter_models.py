"""Converter-made models (tests/converter_zoo.py) against their anchors (issue 9).

TFLite full-integer models made by TFLiteConverter from Keras models of the four MLPerf Tiny
shapes: pemesh's int8 import must do TFLite Micro's fixed-point arithmetic, so every int8 op
equals TFLite Micro (its host interpreter, ``tflite-micro``) on the same input tensors, and the
whole model equals it at the logits (the tensor before SOFTMAX) and within one step at the
output. The per-layer tests each pin a divergence the import had (see the test docstrings):
each op is cut out of the converter's model alone (``tflite_anchor.single_op``) and fed the
tensors TFLite Micro computed before it.

pemesh's numbers come from the TVM host run of its integer graph, which ``run --check`` (and
test_tflite_int8/test_quant) hold the C to bit for bit; the host-PE and QEMU tests run the C.
Models are generated once and cached (``PEMESH_MODEL_CACHE``); the converters are test
dependencies: tensorflow-cpu, tflite-micro, ai-edge-litert.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("tflite_micro")

from tests import converter_zoo as cz  # noqa: E402
from tests import tflite_anchor as ta  # noqa: E402

INT8_OPS_EXACT = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "AVERAGE_POOL_2D",
                  "RESHAPE", "MAX_POOL_2D", "PAD")


def _model(name: str) -> bytes:
    return cz.path(f"{name}_int8.tflite").read_bytes()


def _input(buf: bytes, name: str, seed: int) -> np.ndarray:
    return ta.quantize_input(buf, cz.smooth_inputs(name, 1, seed=seed))


def _isolated(buf: bytes, k: int, tensors: dict[int, np.ndarray], xq: np.ndarray, tmp: Path,
              tag: str) -> tuple[np.ndarray, np.ndarray]:
    """(pemesh, TFLite Micro) outputs of op ``k`` alone, fed TFLite Micro's input tensors."""
    sub, ins = ta.single_op(buf, k)
    feed = [tensors[t] if t in tensors else xq for t in ins]
    got = ta.pemesh_reference(sub, feed, tmp, tag)[0]
    want = ta.tflm(sub, feed)[0]
    return got, want


def _ops_of(name: str, kind: str) -> list[int]:
    return [i for i, op, _, _ in ta.ops(_model(name)) if op == kind]


# --- the models are what they claim --------------------------------------------------------------

@pytest.mark.parametrize("name", cz.MODELS)
def test_zoo_models_are_converter_made_and_realistic(name):
    buf = _model(name)
    kinds = [op for _, op, _, _ in ta.ops(buf)]
    want = {"resnet8": {"CONV_2D", "ADD", "AVERAGE_POOL_2D", "FULLY_CONNECTED", "SOFTMAX"},
            "dscnn": {"CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "FULLY_CONNECTED",
                      "SOFTMAX"},
            "mobilenet": {"CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "FULLY_CONNECTED",
                          "SOFTMAX"},
            "autoencoder": {"FULLY_CONNECTED"}}[name]
    assert want <= set(kinds), kinds
    assert b"TFL3" == buf[4:8]
    # realistic activations: every op output uses a good part of its int8 range and no tensor
    # is constant, on a smooth input
    xq = _input(buf, name, seed=3)
    tensors = ta.tflm_tensors(buf, [xq])
    for i, op, _, outs in ta.ops(buf):
        t = tensors[outs[0]].astype(np.int64)
        assert len(np.unique(t)) >= min(8, max(1, t.size // 2)), f"{name} #{i} {op}: constant"
    # different inputs give different logits
    a = ta.tflm(ta.cut(buf, ta.logits_tensor(buf)), [xq])[0]
    b = ta.tflm(ta.cut(buf, ta.logits_tensor(buf)), [_input(buf, name, seed=4)])[0]
    assert not np.array_equal(a, b)


# --- per layer: each int8 op equals TFLite Micro --------------------------------------------------

@pytest.mark.parametrize("name", cz.MODELS)
def test_every_int8_op_equals_tflite_micro(name, tmp_path):
    """Each op of the model alone, on TFLite Micro's input tensors: equal (SOFTMAX, computed in
    float by pemesh, within one step)."""
    buf = _model(name)
    xq = _input(buf, name, seed=11)
    tensors = ta.tflm_tensors(buf, [xq])
    bad = []
    for i, op, _, _ in ta.ops(buf):
        got, want = _isolated(buf, i, tensors, xq, tmp_path, f"{name}_op{i}")
        d = ta.steps(got, want)
        if d > (0 if op in INT8_OPS_EXACT else 1):
            bad.append(f"#{i} {op}: {d} steps, {np.mean(got.reshape(-1) != want.reshape(-1)):.1%}")
    assert not bad, f"{name}: ops that differ from TFLite Micro: {bad}"


def test_conv_requantization_is_tflites_double_rounding(tmp_path):
    """Divergence 1: pemesh requantized with one rounding (half up) of acc * M * 2^-s; TFLite
    Micro rounds twice (SaturatingRoundingDoublingHighMul, then RoundingDivideByPOT half away
    from zero), so ~0.1-3% of a conv's outputs were one step off, from the very first conv."""
    for name, kind in (("resnet8", "CONV_2D"), ("dscnn", "DEPTHWISE_CONV_2D"),
                       ("dscnn", "CONV_2D")):
        buf = _model(name)
        for seed in (21, 22):
            xq = _input(buf, name, seed)
            tensors = ta.tflm_tensors(buf, [xq])
            for k in _ops_of(name, kind)[:2]:
                got, want = _isolated(buf, k, tensors, xq, tmp_path, f"{name}_{k}_{seed}")
                assert np.array_equal(got, want), f"{name} #{k} {kind}: {ta.steps(got, want)}"


def test_add_is_tflites_two_input_rescale(tmp_path):
    """Divergence 2: pemesh computed ADD as dequantize + float add + quantize; TFLite Micro
    rescales both inputs to a common scale (left shift 20, per-input multipliers) and then the
    sum to the output in fixed point, rounding ties as its shifts do. Every pair of int8 inputs
    (65,536, in chunks of the tensor's size) through each of the ResNet-8's ADDs, with their
    converter-made scales (where float and fixed point rarely disagree) and with input scales
    half the output's (every other sum is a tie)."""
    from tensorflow.lite.tools import flatbuffer_utils as fu

    conv = _model("resnet8")
    m = ta._obj(conv)
    sg = m.subgraphs[0]
    k0 = _ops_of("resnet8", "ADD")[0]
    op = sg.operators[k0]
    sy = float(sg.tensors[op.outputs[0]].quantization.scale[0])
    for t in op.inputs:
        sg.tensors[t].quantization.scale = np.array([sy / 2], np.float32)
    ties = bytes(fu.convert_object_to_bytearray(m))
    for buf in (conv, ties):
        _check_add_pairs(buf, tmp_path)


def _check_add_pairs(buf: bytes, tmp_path: Path) -> None:
    pairs = np.stack(np.meshgrid(np.arange(-128, 128), np.arange(-128, 128), indexing="ij"),
                     -1).reshape(-1, 2).astype(np.int8)
    for k in _ops_of("resnet8", "ADD"):
        sub, ins = ta.single_op(buf, k)
        shape = tuple(ta._obj(sub).subgraphs[0].tensors[ins[0]].shape)
        n = int(np.prod(shape))
        for start in range(0, len(pairs), n):
            chunk = np.resize(pairs[start:start + n], (n, 2))
            feed = [chunk[:, 0].reshape(shape), chunk[:, 1].reshape(shape)]
            got = ta.pemesh_reference(sub, feed, tmp_path, f"add{k}_{start}")[0]
            want = ta.tflm(sub, feed)[0]
            assert np.array_equal(got, want), \
                f"ADD #{k}: {ta.steps(got, want)} steps on {np.sum(got != want)} pairs"


def test_average_pool_rounds_half_away_from_zero(tmp_path):
    """Divergence 3: TVM's integer avg_pool2d truncates the mean; TFLite Micro rounds it half
    away from zero ((sum ± count/2) / count): about half of the pooled values were one low."""
    for name in ("resnet8", "dscnn", "mobilenet"):
        buf = _model(name)
        xq = _input(buf, name, seed=41)
        tensors = ta.tflm_tensors(buf, [xq])
        (k,) = _ops_of(name, "AVERAGE_POOL_2D")
        got, want = _isolated(buf, k, tensors, xq, tmp_path, f"{name}_pool")
        assert np.array_equal(got, want), f"{name}: {ta.steps(got, want)} steps"


def test_tiny_requantization_scale_follows_tflite_micro(tmp_path):
    """Divergence 4: a channel whose weights are ~0 has a requantization scale ~1e-10 (below
    2^-32): pemesh refused the model ("out of the fixed-point range"); TFLite's
    QuantizeMultiplier gives multiplier 0 there (that channel outputs the zero point plus
    nothing). The converter's MobileNet has such a depthwise channel; this conv has one whose
    weight scale is set to 1e-12."""
    from tensorflow.lite.tools import flatbuffer_utils as fu

    buf = _model("resnet8")
    m = ta._obj(buf)
    sg = m.subgraphs[0]
    k = _ops_of("resnet8", "CONV_2D")[1]
    op = sg.operators[k]
    w = sg.tensors[op.inputs[1]]
    scales = np.array(w.quantization.scale, np.float32)
    scales[3] = 1e-12                          # weights ~1e-12 * int8: a scale ~1e-13 / y
    w.quantization.scale = scales
    bias = sg.tensors[op.inputs[2]]
    bscale = np.array(bias.quantization.scale, np.float32)
    bscale[3] = np.float32(sg.tensors[op.inputs[0]].quantization.scale[0]) * np.float32(1e-12)
    bias.quantization.scale = bscale
    tiny = bytes(fu.convert_object_to_bytearray(m))
    xq = _input(tiny, "resnet8", seed=51)
    tensors = ta.tflm_tensors(tiny, [xq])
    got, want = _isolated(tiny, k, tensors, xq, tmp_path, "tiny")
    assert np.array_equal(got, want), ta.steps(got, want)
    # and the whole model cut after that conv
    cut = ta.cut(tiny, int(op.outputs[0]))
    assert np.array_equal(ta.pemesh_reference(cut, [xq], tmp_path, "tinycut")[0],
                          ta.tflm(cut, [xq])[0])


# --- whole models ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", cz.MODELS)
def test_whole_model_equals_tflite_micro_at_logits_and_output(name, tmp_path):
    buf = _model(name)
    logits = ta.cut(buf, ta.logits_tensor(buf))
    for seed in (61, 62):
        xq = _input(buf, name, seed)
        got = ta.pemesh_reference(logits, [xq], tmp_path, f"{name}_l{seed}")[0]
        assert ta.steps(got, ta.tflm(logits, [xq])[0]) == 0, f"{name} logits"
        out = ta.pemesh_reference(buf, [xq], tmp_path, f"{name}_o{seed}")[0]
        assert ta.steps(out, ta.tflm(buf, [xq])[0]) <= 1, f"{name} output"


def _compile_run(model: Path, out: Path, x: np.ndarray, target: list[str], platform: str,
                 tmp: Path) -> np.ndarray:
    from generator.cli import main

    shapes = [f"{n}:{','.join(map(str, s))}" for n, s in
              ta.input_shapes(model.read_bytes()).items()]
    flags = [a for s in shapes for a in ("--input-shape", s)]
    assert main(["compile", str(model), "-o", str(out), *target, *flags]) == 0
    backend = "host" if platform == "host" else "baremetal"
    assert main(["build", str(out), "--backend", backend]) == 0
    xi, yo = tmp / "x.npy", tmp / "y.npy"
    np.save(xi, x)
    assert main(["run", str(out), "--platform", platform, "--input", str(xi), "-O",
                 str(yo)]) == 0
    return np.load(yo)


@pytest.mark.parametrize("name,target", [("dscnn", ["--board", "qemu_cortex_m3"]),
                                         ("autoencoder", ["--mesh", "qemu4"])])
def test_c_on_host_pes_equals_tflite_micro(name, target, tmp_path):
    """The C on host PEs (single PE and a mesh), at the logits."""
    buf = _model(name)
    logits = tmp_path / f"{name}_logits.tflite"
    logits.write_bytes(ta.cut(buf, ta.logits_tensor(buf)))
    xq = _input(buf, name, seed=71)
    got = _compile_run(logits, tmp_path / "out", xq, target, "host", tmp_path)
    assert ta.steps(got, ta.tflm(logits, [xq])[0]) == 0


@pytest.mark.qemu
def test_c_on_qemu_equals_tflite_micro(tmp_path):
    """The DS-CNN keyword spotter on one QEMU Cortex-M3 PE, at the logits."""
    buf = _model("dscnn")
    logits = tmp_path / "dscnn_logits.tflite"
    logits.write_bytes(ta.cut(buf, ta.logits_tensor(buf)))
    xq = _input(buf, "dscnn", seed=81)
    got = _compile_run(logits, tmp_path / "out", xq, ["--board", "qemu_cortex_m3"], "qemu",
                       tmp_path)
    assert ta.steps(got, ta.tflm(logits, [xq])[0]) == 0


@pytest.mark.qemu
@pytest.mark.timeout(600)
def test_resnet8_fits_one_qemu_pe_and_equals_tflite_micro(tmp_path, capsys):
    """The int8 ResNet-8 image classifier on one 64 KiB QEMU Cortex-M3 PE (arena 48 KiB + io
    3 KiB + the measured 10 KiB runtime), checked by run --check against TFLite Micro, and at
    the logits for a smooth input of its own."""
    from generator.cli import main

    buf = _model("resnet8")
    model = tmp_path / "resnet8.tflite"
    model.write_bytes(buf)
    out = tmp_path / "out"
    assert main(["compile", str(model), "-o", str(out), "--board", "qemu_cortex_m3"]) == 0
    assert main(["build", str(out), "--backend", "baremetal"]) == 0
    capsys.readouterr()
    assert main(["run", str(out), "--check"]) == 0
    assert "match TFLite Micro" in capsys.readouterr().out
    logits = tmp_path / "resnet8_logits.tflite"
    logits.write_bytes(ta.cut(buf, ta.logits_tensor(buf)))
    xq = _input(buf, "resnet8", seed=91)
    got = _compile_run(logits, tmp_path / "out_l", xq, ["--board", "qemu_cortex_m3"], "qemu",
                       tmp_path)
    assert ta.steps(got, ta.tflm(logits, [xq])[0]) == 0


# --- models as shipped: shape_signature -1, hybrid weights, fp32 ---------------------------------

def test_shape_signature_minus_one_compiles_with_static_shape(tmp_path, caplog):
    """The autoencoder's input has shape_signature [-1, 640] and shape [1, 640] (Keras 3 +
    TFLiteConverter): compiled with the static shape, and said so; --input-shape (a name with
    ':' in it, parsed from the right) still works."""
    import logging

    from generator.cli import main
    from generator.frontend.importers import load_model, parse_input_shapes

    path = cz.path("autoencoder_int8.tflite")
    m = ta._obj(path.read_bytes())
    t = m.subgraphs[0].tensors[m.subgraphs[0].inputs[0]]
    assert list(t.shapeSignature) == [-1, 640] and list(t.shape) == [1, 640]
    name = ta.tensor_name(path.read_bytes(), int(m.subgraphs[0].inputs[0]))
    assert ":" in name
    with caplog.at_level(logging.INFO, logger="generator.frontend.tflite_shipped"):
        model = load_model(path)
    assert model.inputs[0].shape == (1, 640)
    assert "shape_signature" in caplog.text and "static shape [1, 640]" in caplog.text
    shapes = parse_input_shapes([f"{name}:1,640"])
    assert shapes == {name: (1, 640)}
    assert load_model(path, input_shapes=shapes).inputs[0].shape == (1, 640)
    assert main(["compile", str(path), "-o", str(tmp_path / "out"), "--mesh", "qemu4"]) == 0


@pytest.mark.parametrize("name", cz.MODELS)
def test_hybrid_model_is_dequantized_and_computed_in_fp32(name, tmp_path):
    """Dynamic-range models (int8 weights, float activations), which TVM's frontend refuses:
    the weights are dequantized at import and the model computed in float32. Reference: the
    same model with those weights dequantized into float32 buffers, run by LiteRT (1e-4
    relative); LiteRT's own hybrid kernels (which quantize activations on the fly) are close."""
    from tensorflow.lite.tools import flatbuffer_utils as fu

    from generator.frontend.importers import load_model
    from generator.frontend.tflite_shipped import hybrid_weights
    from generator.verify.reference import compare, run_reference

    path = cz.path(f"{name}_hybrid.tflite")
    model = load_model(path)
    assert model.meta["hybrid_weights_dequantized"] >= 1
    text = model.mod["main"].script(show_meta=False)
    assert "R.dequantize(" not in text and "R.quantize(" not in text
    import tflite
    buf = path.read_bytes()
    weights = hybrid_weights(tflite.Model.GetRootAsModel(buf, 0))
    m = ta._obj(buf)
    sg = m.subgraphs[0]
    for idx, w in weights.items():
        t = sg.tensors[idx]
        m.buffers[t.buffer].data = np.frombuffer(w.astype(np.float32).tobytes(), np.uint8)
        t.type = 0                                   # FLOAT32
        t.quantization = None
    f32 = bytes(fu.convert_object_to_bytearray(m))
    for seed in (91, 92):
        x = cz.smooth_inputs(name, 1, seed=seed)
        got = run_reference(model, [x.reshape(model.inputs[0].shape)])[0]
        want = ta.litert(f32, [x])[0]
        ok, err = compare(got.reshape(want.shape), want)
        assert ok, f"{name}: {err} from the dequantized float model"
        hyb = ta.litert(buf, [x])[0]
        assert np.max(np.abs(got.reshape(hyb.shape) - hyb)) <= 0.05 * (1 + np.ptp(hyb))


@pytest.mark.parametrize("name", cz.MODELS)
def test_fp32_tflite_and_onnx_match_their_interpreters(name):
    """fp32 TFLite (LiteRT) and fp32 ONNX (onnxruntime) within 1e-4 relative."""
    from generator.frontend.importers import load_model
    from generator.verify.reference import compare, run_onnxruntime, run_reference

    x = cz.smooth_inputs(name, 1, seed=95)
    tfl = cz.path(f"{name}_f32.tflite")
    model = load_model(tfl)
    got = run_reference(model, [x.reshape(model.inputs[0].shape)])[0]
    want = ta.litert(tfl, [x])[0]
    assert compare(got.reshape(want.shape), want)[0]
    onx = cz.path(f"{name}_f32.onnx")
    model = load_model(onx)
    xo = cz.onnx_input(name, x)
    assert compare(run_reference(model, [xo])[0], run_onnxruntime(onx, [xo])[0])[0]


@pytest.mark.parametrize("name", cz.MODELS)
def test_onnx_qdq_models_fold_to_int8_and_stay_near_onnxruntime(name):
    """onnxruntime quantize_static QDQ models of the same networks: every Conv/Gemm folds into
    an integer qop, and the output stays within 2 steps of onnxruntime (measured: <= 2; ONNX
    models keep one half-up rounding and float Add, onnxruntime requantizes in float and rounds
    half to even, and 1-step differences compound over the layers; not yet bit-exact)."""
    import onnx

    from generator.frontend.quantize import quantize_if_qdq
    from generator.frontend.importers import load_model
    from generator.verify.reference import run_onnxruntime, run_reference

    path = cz.path(f"{name}_qdq.onnx")
    proto = onnx.load(str(path))
    n_ops = sum(n.op_type in ("Conv", "Gemm") for n in proto.graph.node)
    model = quantize_if_qdq(load_model(path), path)
    assert model.meta["quantized_ops"] == n_ops
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    last = [n for n in proto.graph.node if n.op_type == "DequantizeLinear"][-1]
    step = float(inits[last.input[1]])
    x = cz.onnx_input(name, cz.smooth_inputs(name, 1, seed=97))
    got = run_reference(model, [x])[0]
    want = run_onnxruntime(path, [x])[0]
    assert np.max(np.abs(got - want)) <= 2 * step * 1.0001


@pytest.mark.qemu
def test_c_on_a_qemu_mesh_equals_tflite_micro(tmp_path):
    """The FC autoencoder over a qemu4 mesh of Cortex-M3 PEs, at its output."""
    buf = _model("autoencoder")
    path = cz.path("autoencoder_int8.tflite")
    xq = _input(buf, "autoencoder", seed=83)
    got = _compile_run(path, tmp_path / "out", xq, ["--mesh", "qemu4"], "qemu", tmp_path)
    assert ta.steps(got, ta.tflm(buf, [xq])[0]) == 0
