"""int8 models through the CLI: a DS-CNN-like QDQ net compiled, built and run on QEMU, CPU-only
and with the PE kind's accelerator (the wrappers' counters prove the offload ran)."""

from __future__ import annotations

import json

import pytest

from generator.cli import main
from tests.model_zoo import save
from tests.quant_zoo import QZOO


def _run(tmp_path, board: str, platform: str) -> dict:
    path = save(QZOO["ds_cnn"](), tmp_path / "ds_cnn.onnx")
    out = tmp_path / f"out_{board}_{platform}"
    assert main(["compile", str(path), "-o", str(out), "--board", board]) == 0
    backend = "host" if platform == "host" else "baremetal"
    assert main(["build", str(out), "--backend", backend]) == 0
    assert main(["run", str(out), "--platform", platform, "--check",
                 "--output", str(out / "y.npy")]) == 0
    return json.loads((out / "mesh.json").read_text())


@pytest.mark.parametrize("platform", ["host", pytest.param("qemu", marks=pytest.mark.qemu)])
def test_int8_dscnn_cpu_only(tmp_path, platform, capsys):
    manifest = _run(tmp_path, "qemu_cortex_m3", platform)
    ops = manifest["stages"][0]["ops"]
    assert all(op.get("backend", "tvm") == "tvm" for op in ops)
    out = capsys.readouterr().out
    assert "check: OK" in out and "accelerator wrappers" not in out


@pytest.mark.parametrize("platform", ["host", pytest.param("qemu", marks=pytest.mark.qemu)])
def test_int8_dscnn_offloaded(tmp_path, platform, capsys):
    manifest = _run(tmp_path, "qemu_cortex_m3_mac", platform)
    ops = manifest["stages"][0]["ops"]
    offloaded = [op for op in ops if op.get("backend", "tvm").startswith("accel:")]
    assert offloaded, ops
    out = capsys.readouterr().out
    assert "check: OK" in out
    assert "offloaded" in out
    # the PE's STATS counters: the wrappers really ran, one call per offloaded step
    line = next(ln for ln in out.splitlines() if "accelerator wrappers:" in ln)
    assert f"{len(offloaded)} call(s)" in line
    # the report shows modeled accelerator cycles beside the measured CPU cycles per PE
    from generator.report.summary import collect

    pe = collect(tmp_path / f"out_qemu_cortex_m3_mac_{platform}")["pes"][0]
    assert pe["accel_cycles"] > 0 and pe["cycles"] > 0 and pe["accel_calls"] == len(offloaded)


def test_int8_weights_are_int8_in_flash(tmp_path):
    path = save(QZOO["ds_cnn"](), tmp_path / "ds_cnn.onnx")
    out = tmp_path / "out"
    assert main(["compile", str(path), "-o", str(out)]) == 0
    consts = next((out / "stages").glob("*/model/codegen/host/src/*_lib2.c")).read_text()
    assert "const int8_t" in consts


@pytest.mark.qemu
@pytest.mark.parametrize("mesh", ["qemu4", "qemu4_mac"])
def test_int8_dscnn_on_a_qemu_mesh(tmp_path, mesh, capsys):
    path = save(QZOO["ds_cnn"](), tmp_path / "ds_cnn.onnx")
    out = tmp_path / "out"
    # at most 3 PEs: the pipeline really crosses PEs
    assert main(["compile", str(path), "-o", str(out), "--mesh", mesh, "--max-pes", "3"]) == 0
    manifest = json.loads((out / "mesh.json").read_text())
    assert manifest["partition"]["stages"] >= 2
    assert main(["build", str(out)]) == 0
    assert main(["run", str(out), "--platform", "qemu", "--check", "--count", "2"]) == 0
    assert "check: OK" in capsys.readouterr().out
    offloaded = [op for s in manifest["stages"] for op in s["ops"]
                 if op.get("backend", "tvm").startswith("accel:")]
    assert bool(offloaded) == (mesh == "qemu4_mac")
