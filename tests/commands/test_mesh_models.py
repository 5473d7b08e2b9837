"""Models too big for one PE run on a mesh and match the TVM reference (issue 3's done-means):
a 327k-parameter MLP autoencoder (1.25 MiB of weights, sharded layers) and a residual CNN with
327 KiB of weights (a skip connection across stages), on QEMU and on host processes."""

from __future__ import annotations

import json

import pytest

from generator.cli import main
from tests.mesh_zoo import mlp_autoencoder, residual_cnn
from tests.model_zoo import save

PLATFORMS = ["host", pytest.param("qemu", marks=pytest.mark.qemu)]


def _mesh_run(tmp_path, proto, name, platform, count=2):
    path = save(proto, tmp_path / f"{name}.onnx")
    out = tmp_path / "out"
    assert main(["compile", str(path), "-o", str(out), "--mesh", "qemu16"]) == 0
    assert main(["build", str(out), "--backend",
                 "host" if platform == "host" else "baremetal"]) == 0
    assert main(["run", str(out), "--platform", platform, "--check", "--count", str(count),
                 "--timeout", "120"]) == 0
    return json.loads((out / "mesh.json").read_text()), out


@pytest.mark.parametrize("platform", PLATFORMS)
def test_mlp_autoencoder_sharded_over_the_mesh(tmp_path, platform, capsys):
    manifest, out = _mesh_run(tmp_path, mlp_autoencoder(), "mlp_ae", platform)
    part = manifest["partition"]
    # 1.25 MiB of weights cannot fit fewer than 5 PEs of 256 KiB flash; two layers are sharded
    # by columns, and the layer after the first reads its slices as row parts (partial sums)
    assert part["pes_used"] >= 6
    cols = [d for d in part["sharded_layers"] if d["kind"] == "columns"]
    assert len(cols) == 2 and all(d["shards"] >= 2 for d in part["sharded_layers"])
    assert sum(s["constants_size"] for s in manifest["stages"]) >= 327_000 * 4
    for pe in manifest["pes"]:
        assert pe["memory"]["fits"]
    assert "check: OK" in capsys.readouterr().out
    run = json.loads((out / "run.json").read_text())
    assert run["pes"]


@pytest.mark.parametrize("platform", PLATFORMS)
def test_residual_cnn_over_256k_of_weights(tmp_path, platform, capsys):
    manifest, _out = _mesh_run(tmp_path, residual_cnn(), "rescnn", platform)
    assert sum(s["constants_size"] for s in manifest["stages"]) > 256 * 1024
    assert manifest["partition"]["stages"] >= 3
    # the skip tensor goes from its producer straight to a stage two steps later
    first = next(p for p in manifest["pes"] if p["stage_index"] == 0)
    later = {p["id"]: p["stage_index"] for p in manifest["pes"]}
    dests = [later[r[2]] for r in first["routes"] if r[0] == 1 and r[2] != 0xFFFF]
    assert max(dests) >= 2
    assert "check: OK" in capsys.readouterr().out


def test_multi_output_model_on_a_mesh(tmp_path, capsys):
    from tests.mesh_zoo import multi_output_mlp

    manifest, _out = _mesh_run(tmp_path, multi_output_mlp(), "multi_out", "host", count=3)
    exits = manifest["replicas"][0]["exit"]
    assert sorted(e[2] for e in exits) == [0, 1, 2]
    assert any(e[1] != e[2] for e in exits)      # a stage output index differs from its model index
    assert "check: OK" in capsys.readouterr().out
