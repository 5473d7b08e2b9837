"""pemesh's template project (templates/project_api/microtvm_api_server.py) over a real subprocess,
and the end-to-end flow: template → generate → build → flash → open → inference → close."""

from __future__ import annotations

import importlib.util
import json
import tarfile

import numpy as np
import pytest

from generator.errors import UsageError
from generator.paths import templates_dir
from generator.project_api.client import (GeneratedProject, TemplateProject,
                                          TemplateProjectError, launch_server)
from generator.commands.micro import parse_project_options
from generator.project_api.inference import run_inference
from generator.project_api.protocol import (ServerError, TransportClosedError,
                                            UnsupportedTVMVersionError)
from generator.types import TensorSpec
from tests.hil.toy_mlf import make_toy_mlf, toy_inputs, toy_reference

TEMPLATE = templates_dir() / "project_api"


def _template_module():
    spec = importlib.util.spec_from_file_location("pemesh_template_server",
                                                  TEMPLATE / "microtvm_api_server.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def template():
    with TemplateProject.from_directory(TEMPLATE) as t:
        t.client.reply_timeout = 60.0
        yield t


def test_template_info(template):
    info = template.info
    assert info["is_template"] is True and info["model_library_format_path"] == ""
    assert info["platform_name"] == "pemesh" and info["protocol_version"] == 1
    names = {o.name for o in template.project_options}
    assert {"board", "project_type", "build_backend", "west_cmd", "zephyr_base",
            "config_main_stack_size", "workspace_size_bytes", "serial_port", "verbose",
            "warning_as_error"} <= names
    backend = next(o for o in template.project_options if o.name == "build_backend")
    assert set(backend.choices) == {"auto", "west", "baremetal", "host"}
    assert template.options["board"] == "qemu_cortex_m3"


def test_template_refuses(template, tmp_path):
    client = template.client
    with pytest.raises(UnsupportedTVMVersionError):
        client.server_info_query("0.7.0")
    with pytest.raises(ServerError, match="already exists"):
        client.generate_project(str(make_toy_mlf(tmp_path / "m.tar")), None, str(tmp_path), {})
    with pytest.raises(ServerError, match="no MLF tar"):
        client.generate_project(str(tmp_path / "none.tar"), None, str(tmp_path / "p"), {})
    with pytest.raises(ServerError, match="unknown option"):
        client.build({"bored": 1})
    with pytest.raises(ServerError, match="'big' is not an int"):
        client.generate_project(str(tmp_path / "m.tar"), None, str(tmp_path / "p"),
                                {"config_main_stack_size": "big"})
    with pytest.raises(ServerError, match="template"):
        client.build({})
    with pytest.raises(ServerError, match="template"):
        client.flash({})
    with pytest.raises(TransportClosedError):
        client.read_transport(4, 0.1)
    with pytest.raises(TransportClosedError):
        client.write_transport(b"abc", 0.1)
    client.close_transport()
    client.close_transport()
    assert not (tmp_path / "p").exists()


def test_template_is_not_a_generated_project():
    with pytest.raises(TemplateProjectError):
        GeneratedProject.from_directory(TEMPLATE).close()


def test_read_mlf_io_uses_header_order(tmp_path):
    mod = _template_module()
    for with_shape in (True, False):
        d = tmp_path / f"m{with_shape}"
        with tarfile.open(make_toy_mlf(tmp_path / f"m{with_shape}.tar",
                                       with_shape=with_shape)) as tar:
            tar.extractall(d, filter="data")
        io = mod.read_mlf_io(d)
        assert io["name"] == "toy"
        assert [t.name for t in io["inputs"]] == ["b", "a"]        # not metadata's sorted a, b
        assert [t.name for t in io["outputs"]] == ["y", "z"]
        assert io["inputs"][1] == TensorSpec("a", (3,), "int8")
        if with_shape:
            assert io["inputs"][0].shape == (2, 2) and io["warnings"] == []
        else:
            assert io["inputs"][0].shape == (4,) and any("no shape" in w for w in io["warnings"])
    meta = json.loads((d / "metadata.json").read_text())
    meta["modules"]["toy"]["memory"]["functions"]["main"][0]["inputs"]["a"]["size"] = 5
    meta["modules"]["toy"]["memory"]["functions"]["main"][0]["inputs"]["a"]["shape"] = [3]
    (d / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ServerError, match="size 5"):
        mod.read_mlf_io(d)


def test_parse_project_options(template):
    opts = parse_project_options(template.project_options, [
        "board=qemu_cortex_m3", "verbose=yes", "config_main_stack_size=0x1000"])
    assert opts == {"board": "qemu_cortex_m3", "verbose": True, "config_main_stack_size": 4096}
    with pytest.raises(UsageError, match="unknown project option"):
        parse_project_options(template.project_options, ["colour=red"])
    with pytest.raises(UsageError, match="not a bool"):
        parse_project_options(template.project_options, ["verbose=maybe"])
    with pytest.raises(UsageError, match="not one of"):
        parse_project_options(template.project_options, ["build_backend=make"])
    with pytest.raises(UsageError, match="NAME=VALUE"):
        parse_project_options(template.project_options, ["verbose"])


# --- end to end ----------------------------------------------------------------------------------

TOY_OUTPUTS = (TensorSpec("y", (2, 2), "float32"), TensorSpec("z", (3,), "int8"))


def _e2e(tmp_path, backend: str) -> None:
    mlf = make_toy_mlf(tmp_path / "toy.tar")
    with TemplateProject.from_directory(TEMPLATE, {"build_backend": backend}) as template:
        project = template.generate_project(mlf, tmp_path / "proj")
    with project:
        assert project.model_library_format_path == str(tmp_path / "proj" / "model.tar")
        assert (tmp_path / "proj" / "microtvm_api_server.py").is_file()
        project.build()
        project.flash()
        transport = project.transport()
        transport.open()
        try:
            assert transport.timeouts().session_start_timeout_sec > 0
            server_pid = project.client.process.pid
            for seed in (1, 2):
                inputs = toy_inputs(seed)
                outputs, _stats = run_inference(transport, inputs, output_specs=TOY_OUTPUTS)
                for got, want in zip(outputs, toy_reference(inputs)):
                    np.testing.assert_array_equal(got, want)
        finally:
            transport.close()
        transport.close()
        with pytest.raises(TransportClosedError):
            transport.read(1, 0.1)
        # the whole flow again through run_inference(project): opens and closes the transport
        outputs, _ = run_inference(project, toy_inputs(3), output_specs=TOY_OUTPUTS)
        np.testing.assert_array_equal(outputs[1], toy_reference(toy_inputs(3))[1])
    assert project.client.process.returncode == 0
    _assert_no_children(server_pid)


def _assert_no_children(pid: int) -> None:
    """No process whose parent was the (now gone) server is left (QEMU / host PE)."""
    import os
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            assert ppid != pid, f"process {entry} of the server {pid} is still running"


@pytest.mark.timeout(300)
def test_end_to_end_host(tmp_path):
    _e2e(tmp_path, "host")


@pytest.mark.qemu
@pytest.mark.timeout(600)
def test_end_to_end_qemu(tmp_path):
    for tool in ("qemu-system-arm", "arm-none-eabi-gcc"):
        import shutil
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} missing (apt-get install qemu-system-arm gcc-arm-none-eabi)")
    _e2e(tmp_path, "baremetal")


def test_launch_server_without_server(tmp_path):
    from generator.project_api.client import ServerNotFoundError
    with pytest.raises(ServerNotFoundError):
        launch_server(tmp_path)
