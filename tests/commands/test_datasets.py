"""A dataset through `pemesh run`: one inference per item, each checked against the anchor;
`pemesh micro run --check` with your own input computes the anchor's output for it."""

from __future__ import annotations

import numpy as np
import pytest

from generator.cli import main
from generator.verify.reference import run_onnxruntime
from tests.model_zoo import ZOO, save


@pytest.mark.timeout(300)
def test_a_folder_dataset_is_run_and_checked_item_by_item(tmp_path, capsys):
    model = save(ZOO["conv2d_strided"](), tmp_path / "m.onnx")
    out = tmp_path / "out"
    assert main(["compile", str(model), "-o", str(out)]) == 0
    assert main(["build", str(out), "--backend", "host"]) == 0
    shape = tuple(np.load(out / "reference" / "input_0.npy").shape)
    folder = tmp_path / "data"
    folder.mkdir()
    t = np.linspace(0, 1, int(np.prod(shape)), dtype=np.float32).reshape(shape)
    xs = [np.sin(6.0 * t + k).astype(np.float32) for k in range(3)]
    for k, x in enumerate(xs):
        np.save(folder / f"{k:03d}.npy", x)
    y = tmp_path / "y.npy"
    capsys.readouterr()
    assert main(["run", str(out), "--platform", "host", "--input", str(folder), "--check",
                 "--count", "2", "--output", str(y)]) == 0
    printed = capsys.readouterr().out
    assert "check: OK (6 inference(s) match onnxruntime)" in printed
    got = np.load(y)
    want = np.stack([run_onnxruntime(model, [x])[0] for x in xs])
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.timeout(300)
def test_micro_run_checks_your_own_input_against_the_anchor(tmp_path, capsys):
    model = save(ZOO["conv2d_strided"](), tmp_path / "m.onnx")
    out, proj = tmp_path / "out", tmp_path / "proj"
    assert main(["compile", str(model), "-o", str(out)]) == 0
    mlf = out / "stages" / "m_s0" / "model.tar"
    assert main(["micro", "create-project", str(proj), str(mlf), "-x",
                 "build_backend=host"]) == 0
    assert (proj / "reference" / "model.json").is_file()
    assert main(["micro", "build", str(proj), "-x", "build_backend=host"]) == 0
    x = np.cos(np.linspace(0, 3, 3 * 16 * 16, dtype=np.float32)).reshape(
        np.load(out / "reference" / "input_0.npy").shape).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    capsys.readouterr()
    assert main(["micro", "run", str(proj), "--input", str(tmp_path / "x.npy"), "--check",
                 "-x", "build_backend=host"]) == 0
    assert "check: outputs match the reference" in capsys.readouterr().out
