"""One path: ``--board K`` is a 1×1 mesh of PE kind K, through the same compile, build and run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests import paths
from generator.cli import main
from tests.markers import needs_arm

ROOT = paths.REPO
MODEL = ROOT / "examples" / "tiny_cnn.onnx"


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


@needs_arm
@pytest.mark.timeout(600)
def test_board_and_mesh_of_one_give_the_same_out_and_firmware(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["compile", str(MODEL), "-o", str(a), "--board", "qemu_cortex_m3"]) == 0
    assert main(["compile", str(MODEL), "-o", str(b), "--mesh", "qemu1"]) == 0
    ta, tb = _tree(a), _tree(b)
    assert sorted(ta) == sorted(tb)
    assert "stages/tiny_cnn_s0/model.tar" in ta and "pes/pe0/pemesh_app.json" in ta
    # every generated file but the manifest (which names the target) is the same, byte for byte
    differ = [p for p in ta if p != "mesh.json" and ta[p] != tb[p]]
    assert not differ, differ
    ma, mb = (json.loads(t["mesh.json"]) for t in (ta, tb))
    for key in ("stages", "pes", "replicas", "reference", "model", "board", "pe_kind"):
        if key == "stages":   # the modeled link cost may differ; the decisions may not
            for sa, sb in zip(ma[key], mb[key]):
                sa.pop("cost_cycles"), sb.pop("cost_cycles")
        assert ma[key] == mb[key], key
    for out in (a, b):
        assert main(["build", str(out), "--backend", "baremetal"]) == 0
    ia, ib = (json.loads((o / "build" / "build.json").read_text())["images"] for o in (a, b))
    assert sorted(ia) == sorted(ib) == ["pe0"]
    assert ia["pe0"]["sha256"] == ib["pe0"]["sha256"]
    assert (a / ia["pe0"]["bin"]).read_bytes() == (b / ib["pe0"]["bin"]).read_bytes()
    capsys.readouterr()


@pytest.mark.timeout(600)
def test_single_pe_runs_through_the_mesh_runner_without_a_fabric(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["compile", str(MODEL), "-o", str(out)]) == 0
    assert main(["build", str(out), "--backend", "host"]) == 0
    capsys.readouterr()
    assert main(["run", str(out), "--platform", "host", "--check", "--count", "2"]) == 0
    printed = capsys.readouterr().out
    assert "pe0 (PE 0, stage tiny_cnn_s0, replica 0, coords (0, 0)): 2 run(s)" in printed
    assert "fabric:" not in printed and "check: OK (2 inference(s)" in printed
    run = json.loads((out / "run.json").read_text())
    assert run["platform"] == "host" and run["pes"]["pe0"]["inferences"] == 2
    assert run["links"] == {} and run["fabric"]["routed_frames"] == 0
