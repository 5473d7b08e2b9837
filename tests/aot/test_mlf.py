"""Model Library Format: v7 fields, deterministic tar, io order kept through the Project API."""

from __future__ import annotations

import json
import tarfile

import numpy as np
from onnx import TensorProto, helper

from generator.aot.mlf import read_mlf_metadata, write_mlf
from generator.aot.stage import compile_stage
from generator.frontend.importers import import_onnx


def _two_input_stage():
    # inputs deliberately not in alphabetical order: "z" is stream 0, "a" stream 1
    g = helper.make_graph([helper.make_node("Sub", ["z", "a"], ["y"])], "sub",
                          [helper.make_tensor_value_info("z", TensorProto.FLOAT, [4]),
                           helper.make_tensor_value_info("a", TensorProto.FLOAT, [4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])])
    model = import_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]),
                        name="sub")
    return compile_stage(model.mod, "sub", model.inputs, model.outputs)


def test_metadata_v7_and_order(tmp_path):
    stage = _two_input_stage()
    write_mlf(stage, tmp_path / "model.tar")
    meta = read_mlf_metadata(tmp_path / "model.tar")
    assert meta["version"] == 7
    mod = meta["modules"]["sub"]
    main = mod["memory"]["functions"]["main"][0]
    assert set(main) >= {"device", "workspace_size_bytes", "constants_size_bytes",
                         "io_size_bytes", "inputs", "outputs"}
    assert main["inputs"]["z"] == {"size": 16, "dtype": "float32", "shape": [4]}
    assert mod["executors"] == ["aot"] and mod["style"] == "full-model"
    assert mod["pemesh"]["input_order"] == ["z", "a"]
    names = tarfile.open(tmp_path / "model.tar").getnames()
    assert "codegen/host/include/tvmgen_sub.h" in names
    assert any(n.startswith("codegen/host/src/sub_lib") for n in names)


def test_tar_is_deterministic(tmp_path):
    stage = _two_input_stage()
    write_mlf(stage, tmp_path / "a.tar")
    write_mlf(_two_input_stage(), tmp_path / "b.tar")
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()


def test_generated_project_keeps_stream_order(tmp_path):
    from generator.paths import templates_dir
    from generator.project_api.client import TemplateProject

    stage = _two_input_stage()
    write_mlf(stage, tmp_path / "model.tar")
    with TemplateProject.from_directory(templates_dir() / "project_api") as tmpl:
        tmpl.generate_project(tmp_path / "model.tar", tmp_path / "proj",
                              {"board": "qemu_cortex_m3", "build_backend": "host"})
    app = json.loads((tmp_path / "proj" / "pemesh_app.json").read_text())
    assert [t["name"] for t in app["inputs"]] == ["z", "a"]
    assert np.dtype(app["outputs"][0]["dtype"]) == np.float32


def test_compile_definitions_and_gdbserver_options(tmp_path):
    """The old Zephyr template's compile_definitions and gdbserver_port options, kept by name."""
    import socket

    from generator.paths import templates_dir
    from generator.project_api.client import GeneratedProject, TemplateProject

    stage = _two_input_stage()
    write_mlf(stage, tmp_path / "model.tar")
    with TemplateProject.from_directory(templates_dir() / "project_api") as tmpl:
        names = {o["name"] for o in tmpl.info["project_options"]}
        assert {"compile_definitions", "gdbserver_port"} <= names
        tmpl.generate_project(tmp_path / "model.tar", tmp_path / "proj",
                              {"board": "qemu_cortex_m3", "build_backend": "host",
                               "compile_definitions": "-DPEMESH_TEST_FLAG=7, OTHER"})
    app = json.loads((tmp_path / "proj" / "pemesh_app.json").read_text())
    assert app["defines"] == ["PEMESH_TEST_FLAG=7", "OTHER"]
    cmake = (tmp_path / "proj" / "CMakeLists.txt").read_text()
    assert "target_compile_definitions(app PRIVATE PEMESH_TEST_FLAG=7 OTHER)" in cmake
    with GeneratedProject.from_directory(tmp_path / "proj", {"build_backend": "host"}) as proj:
        proj.build()
    cmds = (tmp_path / "proj" / "build" / "commands.txt").read_text()
    assert "-DPEMESH_TEST_FLAG=7" in cmds and "-DOTHER" in cmds
    from generator.mesh.launch import qemu_command
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert "-gdb" in qemu_command(tmp_path / "fw.elf", gdb_port=port)
