"""The runtime's objects are compiled once per process and copied into later images
(generator/firmware/objcache.py): the images are the bytes a build without the cache gives."""

from __future__ import annotations

import hashlib
import shutil

import pytest

from generator.cli import main
from generator.firmware import objcache
from tests.firmware.test_build import _mesh_out
from tests.markers import needs_arm, needs_gcc


def _digests(out):
    return {f"{p.parent.name}/{p.name}": hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((out / "build").glob("pe*/*")) if p.name in ("pe", "fw.elf", "fw.bin")}


@pytest.mark.parametrize("backend", [pytest.param("baremetal", marks=needs_arm),
                                     pytest.param("host", marks=needs_gcc)])
def test_cached_runtime_objects_give_the_same_images(tmp_path, backend, monkeypatch):
    out, _specs = _mesh_out(tmp_path, stages=3, per_stage=1)
    monkeypatch.setattr(objcache, "_objects", {})
    compiled = []
    real = objcache.remember
    monkeypatch.setattr(objcache, "remember", lambda fill: (compiled.extend(fill), real(fill)))
    assert main(["build", str(out), "--backend", backend, "-j", "1"]) == 0
    # the runtime and port were compiled for the first image only
    per_image = {k for k, _ in compiled}
    assert compiled and len(compiled) == len(per_image)
    cached = _digests(out)
    objcache._objects.clear()
    monkeypatch.setattr(objcache, "split", lambda cmds, cwd: (list(cmds), []))  # no cache
    shutil.rmtree(out / "build")     # the same OUT/ (its paths are in the debug info)
    assert main(["build", str(out), "--backend", backend, "-j", "1"]) == 0
    assert _digests(out) == cached and len(cached) >= 3
