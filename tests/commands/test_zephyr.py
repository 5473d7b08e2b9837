"""The Zephyr backend for real: ``west build -b qemu_cortex_m3`` of a generated PE app, then the
same QEMU run and check. Needs a Zephyr workspace (ZEPHYR_BASE or a west topdir) with a
toolchain; skipped with that reason elsewhere (never faked)."""

from __future__ import annotations

import json

import pytest

from generator.cli import main
from tests.model_zoo import ZOO, save

pytestmark = [pytest.mark.zephyr, pytest.mark.qemu, pytest.mark.timeout(1200)]


def test_west_build_and_run_on_qemu(tmp_path, capsys):
    model = save(ZOO["tiny_cnn"](), tmp_path / "tiny_cnn.onnx")
    out = tmp_path / "out"
    assert main(["compile", str(model), "-o", str(out)]) == 0
    assert main(["build", str(out), "--backend", "west"]) == 0
    build = json.loads((out / "build" / "build.json").read_text())
    assert build["backend"] == "west"
    assert "backend: west" in capsys.readouterr().out
    assert main(["run", str(out), "--platform", "qemu", "--check"]) == 0
    assert "check: OK" in capsys.readouterr().out
