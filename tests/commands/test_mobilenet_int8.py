"""The converter-made int8 MobileNetV1-0.25 (96×96×3, visual wake words) equals TFLite Micro
at the logits: on one 128 KiB Cortex-M4F QEMU PE (mps2-an386) and over a qemu16 mesh of 64 KiB
Cortex-M3 PEs, on host PEs and QEMU PEs (issue 9: all four shapes, single PE and mesh)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("tflite_micro")

from generator.cli import main  # noqa: E402
from tests import converter_zoo as cz  # noqa: E402
from tests import tflite_anchor as ta  # noqa: E402


@pytest.fixture(scope="module")
def logits(tmp_path_factory):
    buf = cz.path("mobilenet_int8.tflite").read_bytes()
    path = tmp_path_factory.mktemp("mnv1") / "mobilenet_logits.tflite"
    path.write_bytes(ta.cut(buf, ta.logits_tensor(buf)))
    return path


def _run(model, target, platform, tmp_path, seed):
    buf = model.read_bytes()
    xq = ta.quantize_input(buf, cz.smooth_inputs("mobilenet", 1, seed=seed))
    out = tmp_path / "out"
    assert main(["compile", str(model), "-o", str(out), *target]) == 0
    assert main(["build", str(out), "--backend",
                 "host" if platform == "host" else "baremetal"]) == 0
    xi, yo = tmp_path / "x.npy", tmp_path / "y.npy"
    np.save(xi, xq)
    assert main(["run", str(out), "--platform", platform, "--input", str(xi), "-O",
                 str(yo), "--check"]) == 0
    return np.load(yo), ta.tflm(buf, [xq])[0]


@pytest.mark.parametrize("platform", ["host", pytest.param("qemu", marks=pytest.mark.qemu)])
def test_mobilenet_int8_over_a_qemu16_mesh(logits, platform, tmp_path):
    got, want = _run(logits, ["--mesh", "qemu16"], platform, tmp_path, seed=91)
    assert ta.steps(got, want) == 0


@pytest.mark.qemu
def test_mobilenet_int8_on_one_m4f_qemu_pe(logits, tmp_path):
    got, want = _run(logits, ["--board", "qemu_mps2_an386"], "qemu", tmp_path, seed=92)
    assert ta.steps(got, want) == 0
