"""torch.export programs of the MLPerf Tiny shapes (tests/torch_zoo.py) against torch, their
anchor (issue 9): fp32 within 1e-4 relative at the logits and the output.

Where they fit (measured with pemesh compile): DS-CNN (97 KiB of weights, a 94 KiB arena) fits
one qemu_mps2_an386 PE (Cortex-M4F, 128 KiB RAM) and qemu4_m4f, not a 64 KiB qemu_cortex_m3
PE nor qemu4/qemu16 (one step after its first conv has 64,000 B of fp32 input + output); the FC
autoencoder (1 MiB of weights) runs over qemu4_m4f or qemu16 (not qemu4: it needs 6 M3 PEs);
the fp32 ResNet-8 fits no PE kind and no mesh here (a ReLU step on its 32x32x16 fp32 tensors
needs 128 KiB of input + output, more than even the M4F PE has, and pemesh's partitioner does
not split that step), so its C is run on one host PE with the memory limits lifted.

Needs torch (the CPU wheel; scripts/setup.sh installs it with the test extras).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from tests import torch_zoo as tz  # noqa: E402

NAMES = ("resnet8", "resnet8_logits", "dscnn", "dscnn_logits", "autoencoder")


def _x(name: str, seed: int) -> np.ndarray:
    return tz.smooth_inputs(name.split("_")[0], 1, seed=seed)


def _torch(name: str, x: np.ndarray) -> np.ndarray:
    from generator.verify.anchors import _torch as run

    return run(tz.path(name), [x])[0]


def _close(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want| relative to max |want|."""
    got = np.asarray(got).reshape(want.shape)
    return float(np.max(np.abs(got - want)) / max(float(np.max(np.abs(want))), 1e-30))


@pytest.mark.parametrize("name", NAMES)
def test_import_matches_torch(name):
    """pemesh's import of the .pt2 (the TVM host run of it) within 1e-4 relative of torch."""
    from generator.frontend.importers import load_model
    from generator.verify.reference import run_reference

    model = load_model(tz.path(name))
    assert model.format == "torch"
    for seed in (1, 2):
        x = _x(name, seed)
        assert _close(run_reference(model, [x])[0], _torch(name, x)) <= 1e-4


def _run(out: Path, x: np.ndarray, platform: str, tmp: Path, capsys) -> np.ndarray:
    from generator.cli import main

    assert main(["build", str(out), "--backend",
                 "host" if platform == "host" else "baremetal"]) == 0
    xi, yo = tmp / "x.npy", tmp / "y.npy"
    np.save(xi, x)
    capsys.readouterr()
    assert main(["run", str(out), "--platform", platform, "--input", str(xi), "-O", str(yo),
                 "--check"]) == 0
    assert "match torch" in capsys.readouterr().out
    return np.load(yo)


@pytest.mark.parametrize("name,target", [("dscnn_logits", ["--board", "qemu_mps2_an386"]),
                                         ("autoencoder", ["--mesh", "qemu4_m4f"])])
def test_c_on_host_pes_matches_torch(name, target, tmp_path, capsys):
    """The C on host PEs (one M4F PE; a 2x2 M4F mesh), checked by run --check against torch
    on a smooth input of its own, and within 1e-4 relative."""
    from generator.cli import main

    out = tmp_path / "out"
    assert main(["compile", str(tz.path(name)), "-o", str(out), *target]) == 0
    x = _x(name, 71)
    assert _close(_run(out, x, "host", tmp_path, capsys), _torch(name, x)) <= 1e-4


def test_resnet8_c_on_a_host_pe_without_memory_limits_matches_torch(tmp_path, capsys):
    """The fp32 ResNet-8 fits no PE kind here (see the module docstring): its C on one host PE
    of the Cortex-M3 kind with the memory limits lifted, at the logits."""
    from generator.boards.catalog import load_pe_kind, single_pe_mesh
    from generator.commands.compile import compile_model
    from generator.frontend.importers import load_model

    pe = dataclasses.replace(load_pe_kind("qemu_cortex_m3"), ram_bytes=64 << 20,
                             flash_bytes=64 << 20)
    model = load_model(tz.path("resnet8_logits"))
    out = tmp_path / "out"
    compile_model(model, out, single_pe_mesh(pe))
    x = _x("resnet8", 72)
    assert _close(_run(out, x, "host", tmp_path, capsys), _torch("resnet8_logits", x)) <= 1e-4


@pytest.mark.qemu
def test_dscnn_on_a_qemu_m4f_pe_matches_torch(tmp_path, capsys):
    """The fp32 DS-CNN on one QEMU Cortex-M4F PE (mps2-an386, hardware float), at the
    logits."""
    from generator.cli import main

    out = tmp_path / "out"
    assert main(["compile", str(tz.path("dscnn_logits")), "-o", str(out), "--board",
                 "qemu_mps2_an386"]) == 0
    x = _x("dscnn", 81)
    assert _close(_run(out, x, "qemu", tmp_path, capsys), _torch("dscnn_logits", x)) <= 1e-4
