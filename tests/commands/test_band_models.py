"""fp32 MLPerf Tiny models whose activations no PE can hold run as row bands (issue 10).

fp32 DS-CNN (every layer writes 32 KB), ResNet-8 (its first layers 64 KiB) and MobileNetV1-0.25
on a 96×96×3 input (the input alone is 108 KiB) compile for meshes of 64 KiB qemu_cortex_m3 PEs
by splitting their front into bands of rows (generator/partition/bands.py), and match
onnxruntime on smooth inputs on QEMU PEs and host PEs. The models are the converter zoo's
(Keras models of the MLPerf Tiny shapes, written as ONNX); the reference is onnxruntime.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from generator.cli import main  # noqa: E402
from tests import converter_zoo as cz  # noqa: E402

#: model → the mesh it runs on
MESHES = {"dscnn": "qemu16", "resnet8": "qemu64", "mobilenet": "qemu64"}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """Each model compiled once; its OUT/ copied per backend."""
    done: dict[str, object] = {}

    def get(name: str, backend: str):
        key = (name, backend)
        if key not in done:
            root = tmp_path_factory.mktemp(name)
            base = root / "out"
            if name not in done:
                assert main(["compile", str(cz.path(f"{name}_f32.onnx")), "-o", str(base),
                             "--mesh", MESHES[name]]) == 0
                done[name] = base
            out = root / f"out_{backend}"
            shutil.copytree(done[name], out)
            assert main(["build", str(out), "--backend", backend]) == 0
            done[key] = out
        return done[key]

    return get


def _inputs(name: str, tmp_path, n: int = 2):
    x = cz.onnx_input(name, cz.smooth_inputs(name, n, seed=5)).astype(np.float32)
    path = tmp_path / "inputs.npy"
    np.save(path, x)
    return path


def _check(out, platform: str, inputs, capsys) -> dict:
    assert main(["run", str(out), "--platform", platform, "--input", str(inputs), "--check",
                 "--timeout", "240"]) == 0
    text = capsys.readouterr().out
    assert "check: OK" in text and "onnxruntime" in text
    return json.loads((out / "mesh.json").read_text())


@pytest.mark.parametrize("name", list(MESHES))
def test_band_split_fp32_model_on_host_pes(name, compiled, tmp_path, capsys):
    out = compiled(name, "host")
    manifest = _check(out, "host", _inputs(name, tmp_path), capsys)
    part = manifest["partition"]
    bands = part["band_split"]
    assert sum(k for *_, k in bands["segments"]) >= 2
    slices = part["input_slices"]
    assert len(slices) >= 2 and all(s["axis"] == 2 for s in slices)
    # no PE receives the whole input: each entry stream carries its band of rows
    whole = int(np.prod(manifest["model"]["inputs"][0]["shape"]))
    for st in manifest["stages"]:
        for spec in st["inputs"]:
            if spec["name"].startswith(manifest["model"]["inputs"][0]["name"] + "_rows"):
                assert int(np.prod(spec["shape"])) < whole
    for pe in manifest["pes"]:
        assert pe["memory"]["fits"], pe["name"]


@pytest.mark.qemu
@pytest.mark.parametrize("name", ["dscnn", "resnet8", "mobilenet"])
def test_band_split_fp32_model_on_qemu_pes(name, compiled, tmp_path, capsys):
    out = compiled(name, "baremetal")
    _check(out, "qemu", _inputs(name, tmp_path, n=1), capsys)
