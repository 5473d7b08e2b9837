"""Full-integer TFLite models as int8 compute (issue 5).

TVM's Relax TFLite frontend imports a quantized model as dequantize → float op → quantize (→ an
integer clip for a fused RELU/RELU6), NHWC; ``generator/frontend/quantize.py`` folds those chains into the
same integer qops as ONNX QDQ (NCHW, transposes only where the graph leaves the qops). Checks:
the C equals the TVM reference of the integer graph bit for bit (CPU-only and offloaded), and
that reference is within one output quantization step of the TFLite interpreter (ai-edge-litert).
Rounding: pemesh requantizes as TFLite Micro does (QuantizeMultiplier, then
SaturatingRoundingDoublingHighMul and RoundingDivideByPOT); LiteRT's optimized kernels round
once, so they differ from it near ties (tests/test_converter_models.py compares with TFLite
Micro itself, bit for bit).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from generator.aot.stage import compile_stage
from generator.cli import main
from generator.frontend.quantize import quantize_if_qdq
from generator.errors import UnsupportedModelError
from generator.frontend.importers import load_model
from generator.verify.reference import make_inputs, run_reference
from tests.host_harness import run_stage_on_host
from tests.aot.test_accel import ACCEL, run_with_accel
from tests.tflite_int8_zoo import TFZOO, make, out_scale, tfl_bad


def _interpreter(path, inputs: list[np.ndarray]) -> list[np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    for d, a in zip(it.get_input_details(), inputs):
        it.set_tensor(d["index"], a.astype(d["dtype"]))
    it.invoke()
    return [it.get_tensor(d["index"]) for d in it.get_output_details()]


def _import(name, tmp_path):
    path = make(name, tmp_path)
    model = quantize_if_qdq(load_model(path), path)
    return path, model


@pytest.mark.parametrize("name", sorted(TFZOO))
def test_tflite_int8_bit_exact_and_matches_tflite(name, tmp_path):
    path, model = _import(name, tmp_path)
    # the conv/dense chains, plus the QUANTIZE of a float input (qtflite's fquant)
    fquant = int(model.inputs[0].dtype == "float32")
    assert model.meta["quantized_ops"] == (2 if name == "tfl_dense" else 4) + fquant
    text = model.mod["main"].script(show_meta=False)
    assert "R.nn.conv2d" not in text and "R.matmul" not in text
    assert text.count("R.permute_dims") <= 2      # in and out of the conv chain, not between
    stage = compile_stage(model.mod, name, model.inputs, model.outputs)
    inputs = make_inputs(model.inputs, seed=3)
    ref = run_reference(model, inputs)
    got = run_stage_on_host(stage, inputs, tmp_path)
    for g, r in zip(got, ref):
        assert np.array_equal(g, r), f"{name}: C differs from the TVM integer reference"
    tfl = _interpreter(path, inputs)
    step = 1.0 if ref[0].dtype == np.int8 else out_scale(path.read_bytes())
    for r, t in zip(ref, tfl):
        diff = np.abs(r.astype(np.float64) - t.astype(np.float64))
        assert np.max(diff) <= step * 1.0001, f"{name}: {np.max(diff) / step} steps from TFLite"


@pytest.mark.parametrize("name", ["tfl_small", "tfl_dense"])
def test_tflite_int8_offloaded_bit_exact(name, tmp_path):
    _, model = _import(name, tmp_path)
    stage = compile_stage(model.mod, name, model.inputs, model.outputs, accelerator=ACCEL)
    off = [d for d in stage.offload if d.offloaded]
    kinds = sorted({d.kind for d in off})
    assert kinds == (["dense"] if name == "tfl_dense" else
                     ["conv2d", "dense", "depthwise_conv2d"]), stage.offload
    inputs = make_inputs(model.inputs, seed=5)
    ref = run_reference(model, inputs)
    got, counters, errors = run_with_accel(stage, inputs, tmp_path)
    assert errors == 0
    for g, r in zip(got, ref):
        assert np.array_equal(g, r), f"{name}: offloaded C differs from the TVM reference"
    assert sum(c[0] for c in counters.values()) == len(off)


@pytest.mark.parametrize("kind, words", [
    ("int16", ["operator #", "INT16", "int8/uint8"]),
    ("asym", ["operator #1 (CONV_2D)", "asymmetric per-tensor weights"]),
])
def test_unsupported_tflite_quantization_names_the_op(kind, words, tmp_path):
    path = tmp_path / f"bad_{kind}.tflite"
    path.write_bytes(tfl_bad(kind))
    with pytest.raises(UnsupportedModelError) as exc:
        load_model(path)
    for w in words:
        assert w in str(exc.value), str(exc.value)


@pytest.mark.qemu
@pytest.mark.timeout(600)
@pytest.mark.parametrize("board", ["qemu_cortex_m3", "qemu_cortex_m3_mac"])
def test_tflite_int8_cli_on_qemu(board, tmp_path, capsys):
    path = make("tfl_small", tmp_path)
    out = tmp_path / f"out_{board}"
    assert main(["compile", str(path), "-o", str(out), "--board", board]) == 0
    assert main(["build", str(out), "--backend", "baremetal"]) == 0
    assert main(["run", str(out), "--platform", "qemu", "--check",
                 "--output", str(out / "y.npy")]) == 0
    text = capsys.readouterr().out
    assert "check: OK" in text
    manifest = json.loads((out / "mesh.json").read_text())
    offloaded = [op for op in manifest["stages"][0]["ops"]
                 if op.get("backend", "tvm").startswith("accel:")]
    if board == "qemu_cortex_m3_mac":
        assert len(offloaded) == 4, manifest["stages"][0]["ops"]
        line = next(ln for ln in text.splitlines() if "accelerator wrappers:" in ln)
        assert f"{len(offloaded)} call(s)" in line
    else:
        assert not offloaded and "accelerator wrappers" not in text
    # the PE's output is within one step of the TFLite interpreter too
    ref_in = [np.load(out / p) for p in manifest["reference"]["inputs"]]
    y = np.load(out / "y.npy")
    tfl = _interpreter(path, ref_in)[0]
    assert np.max(np.abs(y - tfl)) <= out_scale(path.read_bytes()) * 1.0001
