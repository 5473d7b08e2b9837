"""Every bad input a user can reach gets a pemesh error: a message, a hint, an exit code — never
a traceback (issue 13's list, one case each)."""

from __future__ import annotations

import subprocess
import sys
import tarfile

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from generator.cli import EXIT_BROKEN_PIPE, main
from generator.errors import DoesNotFitError, UnsupportedModelError, UsageError
from tests import paths

MODEL = paths.EXAMPLES / "tiny_cnn.onnx"


def _err(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("built") / "out"
    assert main(["compile", str(MODEL), "-o", str(out)]) == 0
    assert main(["build", str(out), "--backend", "host"]) == 0
    return out


def test_out_is_a_file(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["compile", str(MODEL), "-o", str(f)]) == UsageError.exit_code
    assert "is a file" in _err(capsys)


@pytest.mark.parametrize("where, says", [("file/out", "is a file, not a folder"),
                                         ("file/a/b", "is a file, not a folder"),
                                         ("/proc/pemesh-out", "not a place for files")])
def test_out_cannot_be_made(tmp_path, capsys, where, says):
    (tmp_path / "file").write_text("x")
    target = where if where.startswith("/") else str(tmp_path / where)
    assert main(["compile", str(MODEL), "-o", target]) == UsageError.exit_code
    assert says in _err(capsys)


def test_out_parents_are_made(tmp_path, capsys):
    assert main(["compile", str(MODEL), "-o", str(tmp_path / "a" / "b" / "out")]) == 0
    assert (tmp_path / "a" / "b" / "out" / "mesh.json").is_file()


def test_recompile_needs_force(built, capsys):
    assert main(["compile", str(MODEL), "-o", str(built)]) == UsageError.exit_code
    assert "already holds a compile" in _err(capsys)


@pytest.mark.parametrize("output, says", [
    ("out.txt", "must end in .npy or .npz"), ("/proc/y.npy", "not a place for files"),
    ("nodir/y.npy", "does not exist")])
def test_run_output_is_checked_before_the_run(built, tmp_path, capsys, output, says):
    target = output if output.startswith("/") else str(tmp_path / output)
    assert main(["run", str(built), "--platform", "host", "--output", target]) == \
        UsageError.exit_code
    captured = capsys.readouterr()
    assert says in captured.err and "Traceback" not in captured.err
    assert "run(s)" not in captured.out                 # refused before any inference


@pytest.mark.parametrize("arg", [["--garbage-rate", "2"], ["--bitflip-rate", "-0.1"],
                                 ["--drop-rate", "nan"], ["--count", "0"],
                                 ["--timeout", "0"], ["--hop-delay", "-1"]])
def test_bad_run_options_are_refused(built, capsys, arg):
    with pytest.raises(SystemExit) as exc:
        main(["run", str(built), "--platform", "host", *arg])
    assert exc.value.code == 2
    assert "error: argument" in _err(capsys)


@pytest.mark.parametrize("array, says", [
    (np.zeros((1, 3, 16, 16), np.int32), "the dtype differs"),
    (np.zeros(3 * 16 * 16, np.float32), "the model wants float32[1, 3, 16, 16]"),
    (np.zeros((1, 16, 16, 3), np.float32), "is float32[1, 16, 16, 3]")])
def test_run_input_must_be_as_declared(built, tmp_path, capsys, array, says):
    x = tmp_path / "x.npy"
    np.save(x, array)
    assert main(["run", str(built), "--platform", "host", "--input", str(x)]) == \
        UsageError.exit_code
    assert says in _err(capsys)


def test_run_npz_names_must_match(built, tmp_path, capsys):
    z = tmp_path / "x.npz"
    np.savez(z, nope=np.zeros((1, 3, 16, 16), np.float32))
    assert main(["run", str(built), "--platform", "host", "--input", str(z)]) == \
        UsageError.exit_code
    assert "not model inputs" in _err(capsys)


def test_micro_create_project_with_a_non_tar(tmp_path, capsys):
    bad = tmp_path / "model.tar"
    bad.write_text("not a tar")
    assert main(["micro", "create-project", str(tmp_path / "p"), str(bad)]) == \
        UsageError.exit_code
    assert "not a Model Library Format tar" in _err(capsys)
    good = tmp_path / "ok.tar"
    with tarfile.open(good, "w"):
        pass
    assert tarfile.is_tarfile(good)


def _onnx(tmp_path, node, outs, inits=()):
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                      [1, 8])], outs, list(inits))
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


@pytest.mark.parametrize("op", ["NonZero", "Unique"])
def test_data_dependent_shapes_are_named(tmp_path, capsys, op):
    path = _onnx(tmp_path, helper.make_node(op, ["x"], ["y"], name="the_op"),
                 [helper.make_tensor_value_info("y", TensorProto.INT64 if op == "NonZero"
                                                else TensorProto.FLOAT, [1, 8])])
    assert main(["compile", str(path), "-o", str(tmp_path / "o")]) == \
        UnsupportedModelError.exit_code
    err = _err(capsys)
    assert f"node 'the_op' (op {op})" in err and "depends on the input data" in err
    assert "--input-shape" not in err


def test_topk_is_named_by_its_onnx_node(tmp_path, capsys):
    path = _onnx(tmp_path, helper.make_node("TopK", ["x", "k"], ["v", "i"], name="my_topk", axis=1),
                 [helper.make_tensor_value_info("v", TensorProto.FLOAT, [1, 3]),
                  helper.make_tensor_value_info("i", TensorProto.INT64, [1, 3])],
                 [numpy_helper.from_array(np.array([3], np.int64), "k")])
    assert main(["compile", str(path), "-o", str(tmp_path / "o")]) == \
        UnsupportedModelError.exit_code
    assert "node 'my_topk' (op TopK)" in _err(capsys)


def test_a_closed_pipe_ends_quietly(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "generator.cli", "boards"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=paths.REPO)
    proc.stdout.close()                      # the reader is gone before anything is written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == EXIT_BROKEN_PIPE
    assert "Traceback" not in err and "BrokenPipe" not in err


def test_too_many_pes_for_this_machine(monkeypatch):
    from generator.mesh import launch
    monkeypatch.setattr(launch, "available_memory", lambda: 1 << 30)
    with pytest.raises(DoesNotFitError, match=r"7296 qemu PEs need about 285.0 GiB"):
        launch.check_capacity(7296, "qemu")
    launch.check_capacity(100, "host")       # 300 MiB: fits
