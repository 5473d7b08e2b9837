"""pemesh report: reads the plan, the built sizes and shows the mesh."""

import json

from generator.cli import main
from tests.model_zoo import ZOO, save


def test_report_formats(tmp_path, capsys):
    model = save(ZOO["dense_gemm"](), tmp_path / "m.onnx")
    out = tmp_path / "out"
    assert main(["compile", str(model), "-o", str(out)]) == 0
    assert main(["report", str(out)]) == 0
    text = capsys.readouterr().out
    assert "backend not built" in text and "model m (onnx)" in text
    assert main(["build", str(out), "--backend", "host"]) == 0
    capsys.readouterr()
    assert main(["report", str(out), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    pe = data["pes"][0]
    assert data["backend"] == "host" and pe["built_ram"] > 0 and pe["built_flash"] > 0
    assert pe["planned_ram"] <= pe["ram_limit"]
    assert main(["report", str(out), "--format", "html"]) == 0
    page = capsys.readouterr().out
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "pe0" in page


def test_report_on_missing_folder(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "pemesh compile" in capsys.readouterr().err
