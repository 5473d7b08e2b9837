"""generator.manifest: OUT/'s layout and records, read and written in one place."""

from __future__ import annotations

import json

import numpy as np
import pytest

from generator.errors import UsageError
from generator.manifest import (BuildRecord, ImageRecord, Manifest, OutTree, PeRunRecord,
                                RunRecord, read_build, read_manifest, read_reference, read_run,
                                write_build, write_reference, write_run)
from generator.types import AppSpec, Route, TensorSpec
from tests.out_tree import write_test_manifest

X = TensorSpec("x", (1, 4), "float32")
Y = TensorSpec("y", (1, 2), "int8")


def _spec(name: str, pe_id: int, stage: str) -> AppSpec:
    return AppSpec(pe_name=name, pe_id=pe_id, board="qemu_cortex_m3", stage=stage, inputs=(X,),
                   outputs=(Y,), workspace_size=64, model_dir=f"../../stages/{stage}/model",
                   role="stage", routes=(Route(Route.SOURCE, 0, 0xFFFF, 0),
                                         Route(Route.OUTPUT, 0, 0xFFFF, 0)))


def test_manifest_round_trips(tmp_path):
    m = write_test_manifest(tmp_path, [_spec("pe0", 0, "a_s0"), _spec("pe1", 1, "a_s1")])
    doc = json.loads((tmp_path / "mesh.json").read_text())
    assert Manifest.from_json(doc).to_json() == doc
    back = read_manifest(tmp_path)
    assert back == m
    assert back.pe("pe1").routes[1] == Route(Route.OUTPUT, 0, 0xFFFF, 0)
    assert back.stage("a_s1").mlf == "stages/a_s1/model.tar" and back.pes[0].app == "pes/pe0"
    assert back.replicas[0].entry == ((0, 0, 0), (1, 0, 0))
    with pytest.raises(UsageError, match="no PE 'pe7'"):
        back.pe("pe7")


@pytest.mark.parametrize("text, match", [
    (None, "not found"), ("{", "not valid JSON"), ('{"pes": []}', "malformed"),
])
def test_bad_manifests_name_the_problem(tmp_path, text, match):
    if text is not None:
        (tmp_path / "mesh.json").write_text(text)
    with pytest.raises(UsageError, match=match) as err:
        read_manifest(tmp_path)
    assert "pemesh compile" in err.value.hint


def test_manifest_of_another_schema_is_refused(tmp_path):
    write_test_manifest(tmp_path, [_spec("pe0", 0, "a_s0")])
    doc = json.loads((tmp_path / "mesh.json").read_text())
    doc["schema_version"] = 99
    (tmp_path / "mesh.json").write_text(json.dumps(doc))
    with pytest.raises(UsageError, match="schema version 99"):
        read_manifest(tmp_path)


def test_build_record_belongs_to_its_compile(tmp_path):
    write_test_manifest(tmp_path, [_spec("pe0", 0, "a_s0")])
    img = ImageRecord("host", "qemu_cortex_m3", "pes/pe0", "build/pe0/pe", None,
                      {"text": 1, "data": 2, "bss": 3}, "ab" * 32, ("pe0",))
    write_build(tmp_path, BuildRecord("host", {"pe0": img}, {"pes": 1}))
    rec = read_build(tmp_path)
    assert rec.images["pe0"] == img and rec.mesh_sha256
    assert BuildRecord.from_json(rec.to_json()) == rec
    # a new compile (another mesh.json) makes the build stale
    write_test_manifest(tmp_path, [_spec("pe0", 0, "b_s0")])
    with pytest.raises(UsageError, match="earlier compile"):
        read_build(tmp_path)


def test_run_record_and_reference(tmp_path):
    assert read_run(tmp_path) is None
    rec = RunRecord("qemu", {"pe0": PeRunRecord(0, "pe0", "a_s0", 0, (0, 0), 2, 1234,
                                                instructions=987)}, {"0->1": 5})
    write_run(tmp_path, rec)
    assert read_run(tmp_path) == rec
    m = write_test_manifest(tmp_path, [_spec("pe0", 0, "a_s0")])
    with pytest.raises(UsageError, match="no reference inputs"):
        read_reference(tmp_path, m, "inputs")
    x, y = np.arange(4, dtype=np.float32).reshape(1, 4), np.ones((1, 2), np.int8)
    assert write_reference(tmp_path, [x], [y]) == m.reference
    np.testing.assert_array_equal(read_reference(tmp_path, m, "outputs")[0], y)


def test_adopt_replaces_only_generated_entries(tmp_path):
    out = OutTree(tmp_path / "out")
    (out.root / "pes" / "old").mkdir(parents=True)
    (out.root / "notes.txt").write_text("mine")
    part = out.partial()
    (part.root / "pes" / "pe0").mkdir(parents=True)
    (part.root / "mesh.json").write_text("{}")
    out.adopt(part)
    assert sorted(p.name for p in out.root.iterdir()) == ["mesh.json", "notes.txt", "pes"]
    assert [p.name for p in (out.root / "pes").iterdir()] == ["pe0"]
    assert not part.root.exists()


def test_of_stage_mlf(tmp_path):
    write_test_manifest(tmp_path, [_spec("pe0", 0, "a_s0")])
    assert OutTree.of_stage_mlf(tmp_path / "stages" / "a_s0" / "model.tar") == \
        (OutTree(tmp_path.resolve()), "a_s0")
    assert OutTree.of_stage_mlf(tmp_path / "elsewhere" / "model.tar") is None
