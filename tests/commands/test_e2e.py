"""The main job, end to end through the CLI: compile → build → run --check, on host processes
and on QEMU's lm3s6965evb (the machine behind Zephyr's qemu_cortex_m3), for every zoo model plus
a TFLite and a torch.export model. Outputs must match the TVM reference (checked by
``pemesh run --check``) and, for ONNX, onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from generator.cli import main
from tests.model_zoo import ZOO, save

TOL = 1e-4


def _tol(ref: np.ndarray) -> float:
    return TOL * (1.0 + float(np.max(np.abs(ref)))) if ref.size else TOL


def _outputs(path: Path, names: list[str]) -> list[np.ndarray]:
    """`pemesh run --output`: one output → .npy; several → .npz keyed by output name."""
    from generator.types import c_identifier

    if len(names) == 1:
        return [np.load(path)]
    with np.load(path) as z:
        return [z[c_identifier(n)] for n in names]


def _compile_build_run(model_path: Path, out: Path, platform: str) -> list[np.ndarray]:
    assert main(["compile", str(model_path), "-o", str(out), "--force"]) == 0
    backend = "host" if platform == "host" else "baremetal"
    assert main(["build", str(out), "--backend", backend]) == 0
    import json
    names = [t["name"] for t in json.loads((out / "mesh.json").read_text())["model"]["outputs"]]
    result = out / ("y.npy" if len(names) == 1 else "y.npz")
    assert main(["run", str(out), "--platform", platform, "--check", "--output", str(result)]) == 0
    return _outputs(result, names)


def _reference_inputs(out: Path) -> list[np.ndarray]:
    ref = sorted((out / "reference").glob("input_*.npy"), key=lambda p: int(p.stem.split("_")[1]))
    return [np.load(p) for p in ref]


@pytest.mark.parametrize("platform", ["host", pytest.param("qemu", marks=pytest.mark.qemu)])
@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_model_end_to_end(name, platform, tmp_path):
    import onnxruntime as ort

    path = save(ZOO[name](), tmp_path / f"{name}.onnx")
    out = tmp_path / "out"
    got = _compile_build_run(path, out, platform)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {i.name: a for i, a in zip(sess.get_inputs(), _reference_inputs(out))}
    for g, o in zip(got, sess.run(None, feeds)):
        assert g.shape == o.shape
        assert float(np.max(np.abs(g.astype(np.float64) - o))) <= _tol(o), name


@pytest.mark.qemu
def test_tflite_model_on_qemu(tmp_path):
    from tests.model_zoo import tflite_dense_relu

    path = tmp_path / "dense_relu.tflite"
    path.write_bytes(tflite_dense_relu())
    _compile_build_run(path, tmp_path / "out", "qemu")


@pytest.mark.qemu
def test_torch_export_model_on_qemu(tmp_path):
    pytest.importorskip("torch", reason="torch is not installed (pip install torch==2.13.0)")
    from tests.model_zoo import save_torch_export

    path = save_torch_export(tmp_path / "small_cnn.pt2")
    _compile_build_run(path, tmp_path / "out", "qemu")


def test_model_too_big_for_one_pe_fails_with_numbers(tmp_path, capsys):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.zeros((512, 256), np.float32)  # 512 KiB of weights: twice the PE's flash
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "big",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 512])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 256])],
                          [numpy_helper.from_array(w, "w")])
    path = tmp_path / "big.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), path)
    assert main(["compile", str(path), "-o", str(tmp_path / "out")]) == 4
    err = capsys.readouterr().err
    assert "does not fit one qemu_cortex_m3 PE" in err and "KiB" in err and "--mesh" in err


def test_recompile_replaces_the_old_build(tmp_path, capsys):
    """A new compile into the same OUT must not leave the previous model's images to be run."""
    out = tmp_path / "out"
    first = save(ZOO["softmax"](), tmp_path / "a.onnx")
    second = save(ZOO["dense_gemm"](), tmp_path / "b.onnx")
    assert main(["compile", str(first), "-o", str(out)]) == 0
    assert main(["build", str(out), "--backend", "host"]) == 0
    assert main(["compile", str(second), "-o", str(out)]) == 2     # an earlier compile is there
    assert "--force" in capsys.readouterr().err
    assert main(["compile", str(second), "-o", str(out), "--force"]) == 0
    assert not (out / "build").exists()
    assert main(["run", str(out), "--platform", "host", "--check"]) == 2   # not built yet
    assert "pemesh build" in capsys.readouterr().err
    assert main(["build", str(out), "--backend", "host"]) == 0
    assert main(["run", str(out), "--platform", "host", "--check"]) == 0


def test_build_of_an_earlier_compile_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["compile", str(save(ZOO["softmax"](), tmp_path / "a.onnx")), "-o", str(out)]) == 0
    assert main(["build", str(out), "--backend", "host"]) == 0
    manifest = out / "mesh.json"
    manifest.write_text(manifest.read_text().replace('"schema_version": 1', '"schema_version":1'))
    assert main(["run", str(out), "--platform", "host"]) == 2
    assert "earlier compile" in capsys.readouterr().err


def test_failed_compile_keeps_the_previous_out(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    out = tmp_path / "out"
    assert main(["compile", str(save(ZOO["softmax"](), tmp_path / "a.onnx")), "-o", str(out)]) == 0
    before = (out / "mesh.json").read_text()
    w = np.zeros((512, 256), np.float32)
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "big",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 512])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 256])],
                          [numpy_helper.from_array(w, "w")])
    big = tmp_path / "big.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), big)
    assert main(["compile", str(big), "-o", str(out), "--force"]) == 4
    assert (out / "mesh.json").read_text() == before
    assert not (tmp_path / "out.pemesh-partial").exists()


def test_check_with_your_own_input_computes_its_reference(tmp_path, capsys):
    model = save(ZOO["conv2d_strided"](), tmp_path / "m.onnx")
    out = tmp_path / "out"
    assert main(["compile", str(model), "-o", str(out)]) == 0
    assert main(["build", str(out), "--backend", "host"]) == 0
    ref_in = np.load(out / "reference" / "input_0.npy")
    mine = tmp_path / "x.npy"
    np.save(mine, (ref_in * -3.0 + 0.5).astype(np.float32))
    assert main(["run", str(out), "--platform", "host", "--input", str(mine), "--check"]) == 0
    assert "check: OK" in capsys.readouterr().out
    model.unlink()                       # without the model there is nothing to compare with
    assert main(["run", str(out), "--platform", "host", "--input", str(mine), "--check"]) == 2
    assert "is gone" in capsys.readouterr().err
