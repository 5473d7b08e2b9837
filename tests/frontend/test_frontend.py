"""Frontends: every zoo model imports; the errors users can hit name the input/node/tensor."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tests import paths
from generator.errors import UnsupportedModelError, UsageError
from generator.frontend.importers import import_onnx, load_model, parse_input_shapes
from tests import model_zoo
from tests.model_zoo import ZOO, input_shapes

REPO = paths.REPO


def _save(model: onnx.ModelProto, tmp_path: Path, name: str = "m.onnx") -> Path:
    return model_zoo.save(model, tmp_path / name)


def _raw_model(nodes, inputs, outputs, inits=(), opset=13) -> onnx.ModelProto:
    """A model built without the zoo's checker call (for deliberately bad models)."""
    graph = helper.make_graph(nodes, "bad", inputs, outputs, initializer=list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_model_imports(name, tmp_path):
    proto = ZOO[name]()
    model = load_model(_save(proto, tmp_path, f"{name}.onnx"))
    assert model.format == "onnx" and model.name == name
    assert {t.name: t.shape for t in model.inputs} == input_shapes(proto)
    assert [t.name for t in model.outputs] == [o.name for o in proto.graph.output]
    for spec, vi in zip(model.outputs, proto.graph.output):
        assert spec.shape == tuple(d.dim_value for d in vi.type.tensor_type.shape.dim)
        assert spec.dtype == "float32"
    assert 13 <= model.meta["opset"] <= 18
    assert len(model.mod["main"].params) == len(model.inputs)  # weights are constants


def test_zoo_covers_opsets_and_fits_a_pe():
    opsets, wbytes = set(), {}
    for name, build in ZOO.items():
        proto = build()
        opsets.add(proto.opset_import[0].version)
        wbytes[name] = sum(np.prod(t.dims) * 4 for t in proto.graph.initializer)
    assert opsets == set(range(13, 19))
    assert max(wbytes.values()) <= 150 * 1024


def test_name_from_argument_or_stem(tmp_path):
    path = _save(ZOO["softmax"](), tmp_path, "my-net.v2.onnx")
    assert load_model(path).name == "my_net_v2"
    assert load_model(path, name="9lives").name == "t_9lives"


def test_multiple_outputs_keep_order(tmp_path):
    model = load_model(_save(ZOO["activations"](), tmp_path))
    assert [t.name for t in model.outputs] == ["relu", "sigmoid", "tanh", "clip"]
    from tvm import relax
    assert isinstance(model.mod["main"].ret_ty, relax.TupleType)


def _dynamic_cnn() -> onnx.ModelProto:
    proto = ZOO["tiny_cnn"]()
    proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    proto.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    return proto


def test_dynamic_dim_is_an_error_naming_input_and_dim(tmp_path):
    path = _save(_dynamic_cnn(), tmp_path)
    with pytest.raises(UnsupportedModelError) as err:
        load_model(path)
    msg = str(err.value)
    assert "'input'" in msg and "dim 0" in msg and "batch" in msg
    assert "--input-shape input:N,3,16,16" in msg


def test_dynamic_dim_fixed_by_input_shape(tmp_path):
    path = _save(_dynamic_cnn(), tmp_path)
    model = load_model(path, input_shapes={"input": (1, 3, 16, 16)})
    assert model.inputs[0].shape == (1, 3, 16, 16)
    assert model.outputs[0].shape == (1, 10)
    # the CLI spelling goes through parse_input_shapes
    model2 = load_model(path, input_shapes=parse_input_shapes(["input:1,3,16,16"]))
    assert model2.inputs == model.inputs


def test_input_shape_errors(tmp_path):
    path = _save(_dynamic_cnn(), tmp_path)
    with pytest.raises(UsageError, match="unknown input.*nope"):
        load_model(path, input_shapes={"nope": (1, 3, 16, 16)})
    with pytest.raises(UsageError, match="rank 3"):
        load_model(path, input_shapes={"input": (1, 3, 16)})
    with pytest.raises(UsageError, match="dim 1 to 4"):
        load_model(path, input_shapes={"input": (1, 4, 16, 16)})
    with pytest.raises(UsageError):
        load_model(path, input_shapes={"input": (1, 0, 16, 16)})


@pytest.mark.parametrize("text", ["input", "input:", ":1,2", "input:1,x", "input:1,-3"])
def test_parse_input_shapes_rejects(text):
    with pytest.raises(UsageError, match="NAME:D0,D1"):
        parse_input_shapes([text])


def test_parse_input_shapes_accepts_colons_in_names():
    assert parse_input_shapes(["a:b:1,2", "x:4"]) == {"a:b": (1, 2), "x": (4,)}


def test_unsupported_op_names_node_and_op(tmp_path):
    proto = _raw_model(
        [helper.make_node("Relu", ["x"], ["r"], name="ok_relu"),
         helper.make_node("Det", ["r"], ["y"], name="the_det")],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    with pytest.raises(UnsupportedModelError) as err:
        load_model(_save(proto, tmp_path))
    assert "'the_det'" in str(err.value) and "op Det" in str(err.value)
    assert "ok_relu" not in str(err.value)


def test_custom_domain_op_names_node(tmp_path):
    proto = _raw_model(
        [helper.make_node("FusedThing", ["x"], ["y"], name="vendor_op", domain="com.vendor")],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])])
    proto.opset_import.append(helper.make_opsetid("com.vendor", 1))
    with pytest.raises(UnsupportedModelError, match="'vendor_op'.*FusedThing.*com.vendor"):
        import_onnx(proto)


@pytest.mark.parametrize("opset", [12, 19])
def test_bad_opset(opset, tmp_path):
    proto = _raw_model([helper.make_node("Relu", ["x"], ["y"], name="r")],
                       [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], opset=opset)
    with pytest.raises(UnsupportedModelError) as err:
        load_model(_save(proto, tmp_path))
    assert f"opset {opset}" in str(err.value) and "13..18" in str(err.value)
    assert "version_converter" in str(err.value)


def test_unsupported_input_dtype_names_tensor(tmp_path):
    proto = _raw_model([helper.make_node("Relu", ["x64"], ["y"], name="r")],
                       [helper.make_tensor_value_info("x64", TensorProto.DOUBLE, [4])],
                       [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [4])])
    with pytest.raises(UnsupportedModelError, match="'x64'.*DOUBLE"):
        load_model(_save(proto, tmp_path))


def test_unsupported_initializer_and_cast_dtype(tmp_path):
    half = helper.make_tensor("w16", TensorProto.FLOAT16, [4], np.ones(4, np.float16).view(
        np.uint16).tolist())
    proto = _raw_model([helper.make_node("Cast", ["w16"], ["w"], name="c", to=TensorProto.FLOAT),
                        helper.make_node("Add", ["x", "w"], ["y"], name="a")],
                       [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], [half])
    with pytest.raises(UnsupportedModelError, match="'w16'.*FLOAT16"):
        import_onnx(proto)
    cast = _raw_model([helper.make_node("Cast", ["x"], ["h"], name="to_half",
                                        to=TensorProto.FLOAT16),
                       helper.make_node("Cast", ["h"], ["y"], name="back", to=TensorProto.FLOAT)],
                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])])
    with pytest.raises(UnsupportedModelError, match="'h'.*to_half.*Cast.*FLOAT16"):
        import_onnx(cast)


def test_file_errors(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        load_model(tmp_path / "missing.onnx")
    (tmp_path / "model.txt").write_text("hello")
    with pytest.raises(UsageError, match="unknown model format '.txt'") as err:
        load_model(tmp_path / "model.txt")
    assert ".pt2" in err.value.hint
    (tmp_path / "garbage.onnx").write_bytes(b"\xff\x00not a model" * 10)
    with pytest.raises((UsageError, UnsupportedModelError)):
        load_model(tmp_path / "garbage.onnx")
    (tmp_path / "garbage.tflite").write_bytes(b"\x00" * 64)
    with pytest.raises(UsageError, match="TFL3"):
        load_model(tmp_path / "garbage.tflite")
    with pytest.raises(UsageError, match="not a file"):
        load_model(tmp_path)


def test_importing_frontend_does_not_import_tvm():
    code = ("import sys, generator.frontend.importers, generator.verify.reference; "
            "bad = [m for m in ('tvm', 'onnx', 'torch', 'tflite') if m in sys.modules]; "
            "sys.exit(1 if bad else 0)")
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


def _skip_without(module: str, pip: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"needs the '{module}' package ({pip})")


def test_tflite_model_imports(tmp_path):
    _skip_without("tflite", "pip install tflite")
    path = tmp_path / "dense_relu.tflite"
    path.write_bytes(model_zoo.tflite_dense_relu())
    model = load_model(path)
    assert model.format == "tflite" and model.name == "dense_relu"
    assert [(t.name, t.shape, t.dtype) for t in model.inputs] == [("x", (1, 16), "float32")]
    assert [(t.name, t.shape, t.dtype) for t in model.outputs] == [("y", (1, 8), "float32")]


def test_torch_export_model_imports(tmp_path):
    _skip_without("torch", "pip install torch==2.13.0")
    path = model_zoo.save_torch_export(tmp_path / "small_cnn.pt2")
    model = load_model(path)
    assert model.format == "torch" and model.name == "small_cnn"
    assert [(t.name, t.shape, t.dtype) for t in model.inputs] == [("x", (1, 2, 8, 8), "float32")]
    assert [(t.shape, t.dtype) for t in model.outputs] == [((1, 6), "float32")]
    with pytest.raises(UsageError, match="cannot change"):
        load_model(path, input_shapes={"x": (2, 2, 8, 8)})
    (tmp_path / "bad.pt2").write_bytes(b"nope")
    with pytest.raises(UsageError, match="torch.export"):
        load_model(tmp_path / "bad.pt2")


def test_bundled_example_is_up_to_date():
    res = subprocess.run([sys.executable, str(REPO / "examples" / "make_examples.py"), "--check"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    model = load_model(REPO / "examples" / "tiny_cnn.onnx")
    assert model.inputs[0].shape == (1, 3, 16, 16) and model.outputs[0].shape == (1, 10)


def test_conversion_failure_names_the_node():
    """A node TVM has a converter for but cannot convert (a runtime Reshape target)."""
    proto = _raw_model([helper.make_node("Relu", ["x"], ["r"], name="relu"),
                        helper.make_node("Reshape", ["r", "s"], ["y"], name="runtime_reshape")],
                       [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4]),
                        helper.make_tensor_value_info("s", TensorProto.INT64, [2])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])])
    with pytest.raises(UnsupportedModelError, match="'runtime_reshape' \\(op Reshape\\)") as err:
        import_onnx(proto)
    assert err.value.hint
