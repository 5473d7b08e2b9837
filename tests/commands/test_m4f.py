"""The Cortex-M4F PE kind (qemu_mps2_an386): models run on QEMU's mps2-an386 with hardware
float and the int8 schedules, and a 2x2 mesh of them runs with the fabric."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from generator.boards.catalog import load_mesh, load_pe_kind, pe_kind_for_board
from generator.firmware.build import _port_cflags, qemu_port
from generator.frontend.importers import import_onnx
from generator.frontend.quantize import quantize_model
from generator.mesh.launch import qemu_command, qemu_machine, tick_ns
from tests import paths
from tests.kernel_zoo import run_on_qemu
from tests.quant_zoo import QZOO


def test_m4f_kind_machine_and_flags():
    kind = load_pe_kind("qemu_mps2_an386")
    assert (kind.cpu, kind.fpu, kind.ram_bytes, kind.qemu) == ("cortex-m4f", True, 128 * 1024,
                                                               "mps2-an386")
    assert pe_kind_for_board("mps2/an386").name == "qemu_mps2_an386"   # the app's board
    assert qemu_port("mps2/an386") == "mps2_an386"
    flags = _port_cflags("mps2_an386")
    assert "-mfloat-abi=hard" in flags and "-mcpu=cortex-m4" in flags
    assert not any(f == "-mcpu=cortex-m3" for f in flags)
    assert qemu_machine("mps2/an386") == "mps2-an386" and tick_ns("mps2/an386") == 40
    assert qemu_machine("qemu_cortex_m3") == "lm3s6965evb" and tick_ns("qemu_cortex_m3") == 80
    cmd = qemu_command("fw.elf", machine="mps2-an386")
    assert cmd[1:5] == ("-M", "mps2-an386", "-cpu", "cortex-m4")


@pytest.mark.qemu
def test_m4f_runs_fp32_model_with_hardware_float(tmp_path):
    model = import_onnx(onnx.load(str(paths.EXAMPLES / "tiny_cnn.onnx")), name="tiny_cnn")
    r = run_on_qemu(model, "qemu_mps2_an386", tmp_path / "out")
    # fp32 on the FPU: within 1e-5 of TVM's host reference
    from generator.manifest import read_manifest, read_reference
    refs = read_reference(tmp_path / "out", read_manifest(tmp_path / "out"), "outputs")
    assert np.allclose(r["outputs"][0], refs[0], rtol=1e-5, atol=1e-5)
    cmds = (tmp_path / "out" / "build" / "pe0" / "commands.txt").read_text()
    assert "-mfloat-abi=hard" in cmds and "-mcpu=cortex-m3" not in cmds


@pytest.mark.qemu
def test_m4f_runs_int8_model_bit_exact(tmp_path):
    model = quantize_model(import_onnx(QZOO["q_conv"](), name="q_conv"))
    r = run_on_qemu(model, "qemu_mps2_an386", tmp_path / "out")
    assert r["exact_vs_reference"]


@pytest.mark.qemu
def test_m4f_mesh_with_fabric(tmp_path):
    model = quantize_model(import_onnx(QZOO["ds_cnn"](), name="ds_cnn"))
    r = run_on_qemu(model, "qemu_mps2_an386", tmp_path / "out", mesh=load_mesh("qemu4_m4f"))
    assert r["pes"] > 1, "the model was not cut over several PEs: no fabric in this run"
    assert r["exact_vs_reference"]
