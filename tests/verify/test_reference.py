"""The TVM host reference agrees with onnxruntime / the TFLite interpreter / torch eager."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from generator.errors import UsageError
from generator.frontend.importers import import_onnx, load_model
from generator.verify.reference import compare, make_inputs, run_onnxruntime, run_reference, tolerance
from generator.types import TensorSpec
from tests import model_zoo
from tests.model_zoo import ZOO


@pytest.mark.parametrize("name", sorted(ZOO))
def test_reference_matches_onnxruntime(name):
    proto = ZOO[name]()
    model = import_onnx(proto, name=name)
    for seed in (0, 1):
        inputs = make_inputs(model.inputs, seed=seed)
        ref = run_reference(model, inputs)
        ort = run_onnxruntime(proto, inputs)
        assert len(ref) == len(ort) == len(model.outputs)
        for spec, r, o in zip(model.outputs, ref, ort):
            assert r.shape == spec.shape and str(r.dtype) == spec.dtype
            ok, err = compare(r, o)
            assert ok, f"{name} output {spec.name}: max abs err {err} > {tolerance(o)}"


def test_onnxruntime_from_path_and_dynamic_fix(tmp_path):
    proto = ZOO["tiny_cnn"]()
    proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    path = model_zoo.save(proto, tmp_path / "dyn.onnx")
    model = load_model(path, input_shapes={"input": (2, 3, 16, 16)})
    inputs = make_inputs(model.inputs, seed=3)
    ok, err = compare(run_reference(model, inputs)[0], run_onnxruntime(path, inputs)[0])
    assert ok and model.outputs[0].shape == (2, 10)


def test_reference_detects_a_wrong_model():
    """The comparison can fail: a model with other weights disagrees."""
    model = import_onnx(ZOO["dense_gemm"](), name="dense_gemm")
    other = ZOO["dense_gemm"]()
    w = other.graph.initializer[0]
    arr = np.frombuffer(w.raw_data, np.float32).copy()
    arr[0] += 0.5
    w.raw_data = arr.tobytes()
    inputs = make_inputs(model.inputs, seed=0)
    inputs[0][0, 0] = 1.0
    ok, err = compare(run_reference(model, inputs)[0], run_onnxruntime(other, inputs)[0])
    assert not ok and err > 0.1


def test_make_inputs_is_deterministic():
    specs = [TensorSpec("f", (2, 3), "float32"), TensorSpec("i8", (5,), "int8"),
             TensorSpec("u8", (5,), "uint8"), TensorSpec("i64", (4,), "int64"),
             TensorSpec("b", (3,), "bool"), TensorSpec("s", (), "float32")]
    a, b, c = make_inputs(specs, 7), make_inputs(specs, 7), make_inputs(specs, 8)
    for x, y, spec in zip(a, b, specs):
        assert x.tobytes() == y.tobytes()
        assert x.shape == spec.shape and str(x.dtype) == spec.dtype
    assert a[0].tobytes() != c[0].tobytes()
    assert np.all(np.abs(a[0]) <= 1.0) and np.all((a[3] >= 0) & (a[3] < 16))


def test_tolerance_and_compare():
    ref = np.array([1.0, -3.0, 2.0], np.float32)
    assert tolerance(ref) == pytest.approx(4e-4)
    assert compare(ref + 3e-4, ref) == (True, pytest.approx(3e-4, rel=1e-3))
    ok, err = compare(ref + 5e-4, ref)
    assert not ok and err == pytest.approx(5e-4, rel=1e-3)
    assert compare(ref[:2], ref) == (False, float("inf"))
    assert compare(np.array([1, 2], np.int8), np.array([1, 2], np.int8)) == (True, 0.0)
    assert compare(np.array([1, 3], np.int32), np.array([1, 2], np.int32))[0] is False
    nan = np.array([np.nan, 1.0])
    assert compare(nan, nan) == (True, 0.0)
    assert compare(np.array([0.0, 1.0]), nan)[0] is False


def test_run_reference_checks_inputs():
    model = import_onnx(ZOO["matmul_batched"](), name="mm")
    good = make_inputs(model.inputs, 0)
    with pytest.raises(UsageError, match="2 input"):
        run_reference(model, good[:1])
    with pytest.raises(UsageError, match="'a'.*shape"):
        run_reference(model, [good[0][:1], good[1]])
    with pytest.raises(UsageError, match="'a'.*float32"):
        run_reference(model, [good[0].astype(np.int32), good[1]])
    # float64 is cast to float32 (same kind)
    out64 = run_reference(model, [good[0].astype(np.float64), good[1]])[0]
    assert compare(out64, run_reference(model, good)[0]) == (True, 0.0)


def _tflite_interpreter(content: bytes):
    for mod in ("ai_edge_litert.interpreter", "tflite_runtime.interpreter"):
        if importlib.util.find_spec(mod.split(".")[0]) is not None:
            return importlib.import_module(mod).Interpreter(model_content=content)
    if importlib.util.find_spec("tensorflow") is not None:
        import tensorflow as tf
        return tf.lite.Interpreter(model_content=content)
    pytest.skip("needs a TFLite interpreter (pip install ai-edge-litert)")


def test_tflite_reference_matches_interpreter(tmp_path):
    if importlib.util.find_spec("tflite") is None:
        pytest.skip("needs the 'tflite' package (pip install tflite)")
    content = model_zoo.tflite_dense_relu()
    path = tmp_path / "dense_relu.tflite"
    path.write_bytes(content)
    model = load_model(path)
    interp = _tflite_interpreter(content)
    interp.allocate_tensors()
    (din,), (dout,) = interp.get_input_details(), interp.get_output_details()
    assert din["name"] == model.inputs[0].name and dout["name"] == model.outputs[0].name
    for seed in (0, 1, 2):
        (x,) = make_inputs(model.inputs, seed)
        interp.set_tensor(din["index"], x)
        interp.invoke()
        want = interp.get_tensor(dout["index"])
        got = run_reference(model, [x])[0]
        ok, err = compare(got, want)
        assert ok, err
        assert np.any(want == 0.0) and np.any(want > 0.0)  # the RELU did something


def test_torch_reference_matches_eager(tmp_path):
    if importlib.util.find_spec("torch") is None:
        pytest.skip("needs the 'torch' package (pip install torch==2.13.0)")
    import torch

    path = model_zoo.save_torch_export(tmp_path / "small_cnn.pt2")
    model = load_model(path)
    module, _ = model_zoo.torch_small_cnn()
    for seed in (0, 1):
        inputs = make_inputs(model.inputs, seed)
        with torch.no_grad():
            want = module(*[torch.from_numpy(x) for x in inputs]).numpy()
        ok, err = compare(run_reference(model, inputs)[0], want)
        assert ok, err
