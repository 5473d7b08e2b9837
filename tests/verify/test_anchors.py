"""The anchors judge pemesh's numbers: TFLite Micro for TFLite, onnxruntime for ONNX, torch for
torch.export; TVM's own run of the import only where no anchor can run the model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from generator.cli import main
from generator.frontend.importers import import_onnx, load_model
from generator.frontend.quantize import quantize_if_qdq
from generator.verify.anchors import INT_STEPS, run_anchor
from generator.verify.reference import compare, make_inputs, run_onnxruntime
from tests import paths
from tests.model_zoo import ZOO, save


def test_onnx_is_judged_by_onnxruntime(tmp_path, capsys):
    path = save(ZOO["conv2d_strided"](), tmp_path / "m.onnx")
    model = load_model(path)
    x = make_inputs(model.inputs, seed=3)
    run = run_anchor(model, x)
    assert run.anchor == "onnxruntime" and not run.note
    np.testing.assert_array_equal(run.outputs[0], run_onnxruntime(path, x)[0])
    out = tmp_path / "out"
    assert main(["compile", str(path), "-o", str(out)]) == 0
    assert "reference output: onnxruntime" in capsys.readouterr().out
    ref = json.loads((out / "mesh.json").read_text())["reference"]
    assert ref["anchor"] == "onnxruntime"
    stored = np.load(out / ref["outputs"][0])
    np.testing.assert_array_equal(stored, run_onnxruntime(path, [np.load(out /
                                                                         ref["inputs"][0])])[0])
    assert main(["build", str(out), "--backend", "host"]) == 0
    capsys.readouterr()
    assert main(["run", str(out), "--platform", "host", "--check"]) == 0
    assert "match onnxruntime" in capsys.readouterr().out


def test_tflite_is_judged_by_tflite_micro(tmp_path):
    pytest.importorskip("tflite_micro", reason="tflite-micro is not installed "
                                               "(pip install 'pemesh[tflite]')")
    from tests import tflite_int8_zoo as tz

    path = tz.make("tfl_small_int8_io", tmp_path)
    model = quantize_if_qdq(load_model(path), path)
    x = make_inputs(model.inputs, seed=1)
    run = run_anchor(model, x)
    assert run.anchor == "tflite-micro" and INT_STEPS["tflite-micro"] == 0
    from tflite_micro.python.tflite_micro import runtime
    it = runtime.Interpreter.from_file(str(path), arena_size=1 << 20)
    it.set_input(x[0], 0)
    it.invoke()
    np.testing.assert_array_equal(run.outputs[0], np.asarray(it.get_output(0)).reshape(
        run.outputs[0].shape))


def test_torch_export_is_judged_by_torch(tmp_path):
    pytest.importorskip("torch", reason="torch is not installed (pip install torch==2.13.0)")
    from tests.model_zoo import save_torch_export

    path = save_torch_export(tmp_path / "m.pt2")
    model = load_model(path)
    run = run_anchor(model, make_inputs(model.inputs, seed=2))
    assert run.anchor == "torch"


def test_a_model_in_memory_falls_back_to_tvm_and_says_why():
    model = import_onnx(ZOO["softmax"](), name="softmax")
    run = run_anchor(model, make_inputs(model.inputs))
    assert run.anchor == "tvm" and "not a file" in run.note


def test_integer_steps_are_the_anchors():
    ref = np.array([10, -3], np.int8)
    assert compare(ref + np.int8(2), ref, int_steps=2)[0]
    assert not compare(ref + np.int8(3), ref, int_steps=2)[0]
    assert not compare(ref + np.int8(1), ref)[0]              # exact by default
    assert paths.EXAMPLES.is_dir()
