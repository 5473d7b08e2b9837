"""What a Zephyr user meets in a rendered PE app: Twister metadata in every app (sample.yaml for
qemu_cortex_m3, build only), the module fallback of the app's CMakeLists.txt (run by CMake
itself up to find_package), the EEMBC host protocol's files, and that every PE app of a
compiled OUT has all of them."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from generator.firmware.render import render_pe_app
from generator.types import AppSpec, TensorSpec
from tests import paths

needs_cmake = pytest.mark.skipif(shutil.which("cmake") is None, reason="needs cmake")


def _spec(**kw) -> AppSpec:
    base = AppSpec(pe_name="pe3", pe_id=3, board="qemu_cortex_m3", stage="demo",
                   inputs=(TensorSpec("x", (96,), "float32"), TensorSpec("bias", (4,), "float32")),
                   outputs=(TensorSpec("out", (96,), "float32"),
                            TensorSpec("total", (1,), "float32")),
                   workspace_size=384, model_dir="../../stages/demo/model")
    return replace(base, **kw)


def _out_tree(tmp_path: Path, vendored: bool = True, **kw) -> Path:
    shutil.copytree(paths.FIXTURES / "demo_model", tmp_path / "stages" / "demo" / "model")
    if vendored:
        shutil.copytree(paths.RUNTIME, tmp_path / "modules" / "pemesh")
    app = tmp_path / "pes" / "pe3"
    render_pe_app(_spec(**kw), app)
    return app


def _sample(app: Path) -> dict:
    return yaml.safe_load((app / "sample.yaml").read_text())


def test_twister_metadata(tmp_path):
    doc = _sample(_out_tree(tmp_path))
    assert doc["sample"]["name"]
    common = doc["common"]
    assert common["platform_allow"] == ["qemu_cortex_m3"]
    assert common["integration_platforms"] == ["qemu_cortex_m3"]
    assert common["build_only"] is True
    assert "pemesh" in common["tags"]
    (name, test), = doc["tests"].items()
    assert name == "pemesh.pe3.demo" and "." in name


def test_every_pe_app_of_a_mesh_has_twister_metadata(tmp_path):
    """`pemesh compile` on a 4-PE mesh: each PE app has a sample.yaml naming qemu_cortex_m3 and
    a test id of its own (Twister rejects duplicates)."""
    from generator.cli import main

    model = paths.EXAMPLES / "tiny_cnn.onnx"
    out = tmp_path / "out"
    assert main(["compile", str(model), "-o", str(out), "--mesh", "qemu4", "--replicas", "max"]) == 0
    apps = sorted((out / "pes").iterdir())
    assert len(apps) > 1
    ids = []
    for app in apps:
        doc = _sample(app)
        assert doc["common"]["platform_allow"] == ["qemu_cortex_m3"], app
        assert doc["common"]["integration_platforms"] == ["qemu_cortex_m3"], app
        ids += list(doc["tests"])
    assert len(ids) == len(set(ids)) == len(apps)


def _modules(app: Path, *defines: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the app's CMakeLists.txt up to find_package(Zephyr) with CMake; print the modules."""
    text = (app / "CMakeLists.txt").read_text()
    head = text[:text.index("find_package(Zephyr")]
    script = app / "modules_probe.cmake"
    script.write_text(head + 'message(STATUS "MODULES=${ZEPHYR_EXTRA_MODULES}")\n')
    import os
    run_env = {k: v for k, v in os.environ.items() if k != "PEMESH_RUNTIME_DIR"}
    run_env.update(env or {})
    return subprocess.run(["cmake", *defines, "-P", str(script)], cwd=app, capture_output=True,
                          text=True, timeout=60, env=run_env)


def _listed(proc: subprocess.CompletedProcess) -> list[str]:
    line, = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "MODULES=" in ln]
    return [m for m in line.split("MODULES=", 1)[1].split(";") if m]


@needs_cmake
def test_module_fallback_vendored_copy(tmp_path):
    app = _out_tree(tmp_path)
    proc = _modules(app)
    assert proc.returncode == 0, proc.stderr
    assert _listed(proc) == [str((tmp_path / "modules" / "pemesh").resolve())]


@needs_cmake
def test_module_fallback_is_appended_to_other_modules(tmp_path):
    other = tmp_path / "other_module"
    (other / "zephyr").mkdir(parents=True)
    (other / "zephyr" / "module.yml").write_text("name: other\n")
    app = _out_tree(tmp_path)
    proc = _modules(app, f"-DZEPHYR_EXTRA_MODULES={other}")
    assert proc.returncode == 0, proc.stderr
    assert _listed(proc) == [str(other), str((tmp_path / "modules" / "pemesh").resolve())]


@needs_cmake
def test_module_given_is_not_doubled(tmp_path):
    app = _out_tree(tmp_path)
    proc = _modules(app, f"-DZEPHYR_EXTRA_MODULES={paths.RUNTIME}")
    assert proc.returncode == 0, proc.stderr
    assert _listed(proc) == [str(paths.RUNTIME)]


@needs_cmake
def test_module_missing_is_our_error_before_find_package(tmp_path):
    app = _out_tree(tmp_path, vendored=False)
    proc = _modules(app)
    assert proc.returncode != 0
    assert "pemesh: no runtime module at" in proc.stderr
    proc = _modules(app, env={"PEMESH_RUNTIME_DIR": str(paths.RUNTIME)})
    assert proc.returncode == 0 and _listed(proc) == [str(paths.RUNTIME)]


def test_eembc_app_files(tmp_path):
    app = _out_tree(tmp_path, host_protocol="eembc", model_name="demo_model")
    assert "CONFIG_PEMESH_HOST_PROTOCOL_EEMBC=y" in (app / "prj.conf").read_text()
    assert "src/pe_eembc.c" in (app / "CMakeLists.txt").read_text()
    c = (app / "src" / "pe_eembc.c").read_text()
    assert '.name = "demo_model"' in c and "{ PEMESH_EEMBC_F32, 96u, 1.000000000e+00f, 0 }" in c
    # re-rendered for the frame protocol: the EEMBC glue goes away
    render_pe_app(_spec(), app)
    assert not (app / "src" / "pe_eembc.c").exists()
    assert "EEMBC" not in (app / "prj.conf").read_text()
    assert "pe_eembc" not in (app / "CMakeLists.txt").read_text()
