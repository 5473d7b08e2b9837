"""The template driven the way tvmc and TVM 0.18's microTVM API drive it: every option value a
string, ``compile_definitions`` as a list, ``project_type=mlperftiny``, options given once to
generate_project and kept for build; the launcher that lets a client in another Python (one
without pemesh) reach the server; and the refusals (host_driven, an unknown board, use_fvp)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from generator.paths import templates_dir
from generator.project_api.client import GeneratedProject, TemplateProject
from generator.project_api.protocol import ServerError
from tests.hil.toy_mlf import make_toy_mlf

TEMPLATE = templates_dir() / "project_api"

#: what `tvmc micro create-project ... --project-option ...` sends: strings only
TVMC_OPTIONS = {
    "project_type": "mlperftiny", "board": "qemu_cortex_m3", "verbose": "true",
    "config_main_stack_size": "4096", "warning_as_error": "false",
    "compile_definitions": ["-DPEMESH_TEST_FOO=1", "PEMESH_TEST_BAR"],
    "build_backend": "host", "cmsis_path": "/opt/cmsis", "use_fvp": "false",
    "west_cmd": "python3 -m west",
}


@pytest.fixture
def template():
    with TemplateProject.from_directory(TEMPLATE) as t:
        t.client.reply_timeout = 120.0
        yield t


def _record(project: Path) -> dict:
    return json.loads((project / "build" / "microtvm_build.json").read_text())


@pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("arm-none-eabi-gcc") is None,
                    reason="needs gcc and arm-none-eabi-gcc")
def test_tvmc_style_generate_and_build(template, tmp_path, capsys):
    mlf = make_toy_mlf(tmp_path / "toy.tar")
    project = tmp_path / "proj"
    # the raw client sends exactly these options, as TVM's client does (no defaults filled in)
    template.client.generate_project(str(mlf), None, str(project), TVMC_OPTIONS)
    app = json.loads((project / "pemesh_app.json").read_text())
    assert app["host_protocol"] == "eembc"                    # mlperftiny
    assert app["defines"] == ["PEMESH_TEST_FOO=1", "PEMESH_TEST_BAR"]
    assert app["main_stack_size"] == 4096
    assert "CONFIG_PEMESH_HOST_PROTOCOL_EEMBC=y" in (project / "prj.conf").read_text()
    assert "CONFIG_MAIN_STACK_SIZE=4096" in (project / "prj.conf").read_text()
    assert (project / "src" / "pe_eembc.c").is_file()
    kept = json.loads((project / "microtvm_options.json").read_text())
    assert kept["build_backend"] == "host" and kept["verbose"] is True

    launcher = project / "launch_microtvm_api_server.sh"
    assert os.access(launcher, os.X_OK)
    with GeneratedProject.from_directory(project) as proj:
        proj.client.reply_timeout = 300.0
        proj.client.build({})                     # nothing given: generate's options hold
        assert _record(project)["backend"] == "host"
        proj.client.build({"build_backend": "baremetal", "verbose": "false"})
        assert _record(project)["backend"] == "baremetal"   # a value given now wins
        proj.options["build_backend"] = "auto"    # pemesh's client fills every default in
        proj.build()
        assert _record(project)["backend"] == "host"        # the default does not undo it
    commands = (project / "build" / "commands.txt").read_text()
    assert "-DPEMESH_TEST_FOO=1" in commands and "-DCONFIG_PEMESH_HOST_PROTOCOL_EEMBC=1" in commands
    # `micro run` speaks frames: it refuses an mlperftiny project instead of timing out
    from generator.cli import main
    capsys.readouterr()
    assert main(["micro", "run", str(project)]) != 0
    assert "is an mlperftiny project" in capsys.readouterr().err


def test_refusals(template, tmp_path):
    mlf = make_toy_mlf(tmp_path / "toy.tar")
    with pytest.raises(ServerError, match="host_driven needs TVM's RPC server") as exc:
        template.client.generate_project(str(mlf), None, str(tmp_path / "a"),
                                         {"project_type": "host_driven"})
    assert "aot_standalone_demo" in str(exc.value)
    with pytest.raises(ServerError, match="board 'nrf52840dk' is not a pemesh PE kind's board"):
        template.client.generate_project(str(mlf), None, str(tmp_path / "b"),
                                         {"board": "nrf52840dk"})
    with pytest.raises(ServerError, match="use_fvp=true"):
        template.client.generate_project(str(mlf), None, str(tmp_path / "c"), {"use_fvp": "true"})
    with pytest.raises(ServerError, match="'yes please' is not a bool"):
        template.client.generate_project(str(mlf), None, str(tmp_path / "d"),
                                         {"verbose": "yes please"})
    for name in "abcd":
        assert not (tmp_path / name).exists()
    # aot_standalone_demo is pemesh's own protocol; a PE kind name stands for its board
    template.client.generate_project(str(mlf), None, str(tmp_path / "e"),
                                     {"project_type": "aot_standalone_demo",
                                      "board": "qemu_cortex_m3_mac"})
    app = json.loads((tmp_path / "e" / "pemesh_app.json").read_text())
    assert app["host_protocol"] == "pemesh" and app["board"] == "qemu_cortex_m3"


_FOREIGN_CLIENT = r"""
import json, os, subprocess, sys
proj = sys.argv[1]
r1, w1 = os.pipe(); r2, w2 = os.pipe()
args = [os.path.join(proj, "launch_microtvm_api_server.sh"),
        os.path.join(proj, "microtvm_api_server.py"), "--read-fd", str(r1), "--write-fd", str(w2)]
p = subprocess.Popen(args, cwd=proj, pass_fds=(r1, w2))
os.close(r1); os.close(w2)
out = os.fdopen(w1, "wb", buffering=0); inp = os.fdopen(r2, "rb")
req = {"jsonrpc": "2.0", "id": 1, "method": "server_info_query", "params": {"tvm_version": "0.18.0"}}
out.write((json.dumps(req) + "\n").encode())
print(inp.readline().decode().strip())
out.close(); p.wait(timeout=30)
"""


@pytest.mark.skipif(not Path("/usr/bin/python3").is_file(), reason="needs a system python3")
@pytest.mark.parametrize("where", ["template", "project"])
def test_launcher_serves_a_client_in_another_python(template, tmp_path, where):
    """TVM 0.18's client runs launch_microtvm_api_server.sh when it exists; from a Python that
    cannot import pemesh (here the system python3, isolated) the server still answers."""
    if where == "template":
        folder = TEMPLATE
    else:
        folder = tmp_path / "proj"
        template.client.generate_project(str(make_toy_mlf(tmp_path / "t.tar")), None,
                                         str(folder), {})
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PEMESH_PYTHON", "VIRTUAL_ENV")}
    env["PATH"] = "/usr/bin:/bin"
    probe = subprocess.run(["/usr/bin/python3", "-I", "-c", "import generator"],
                           capture_output=True, env=env)
    assert probe.returncode != 0, "the system python3 imports pemesh: not a foreign client"
    proc = subprocess.run(["/usr/bin/python3", "-I", "-c", _FOREIGN_CLIENT, str(folder)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    reply = json.loads(proc.stdout.strip().splitlines()[-1])
    assert reply["result"]["platform_name"] == "pemesh", reply
    assert reply["result"]["is_template"] is (where == "template")
    assert sys.executable  # the generated launcher names this interpreter
    if where == "project":
        assert sys.executable in (folder / "launch_microtvm_api_server.sh").read_text()


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_micro_create_project_keeps_its_options(tmp_path, capsys):
    """`pemesh micro create-project -x build_backend=host` then a bare `pemesh micro build`
    builds for the host (the option was kept); an unknown board fails at create-project."""
    from generator.cli import main

    mlf = make_toy_mlf(tmp_path / "toy.tar")
    proj = tmp_path / "proj"
    assert main(["micro", "create-project", str(proj), str(mlf), "-x", "build_backend=host",
                 "-x", "config_main_stack_size=3072"]) == 0
    assert main(["micro", "build", str(proj)]) == 0
    assert _record(proj)["backend"] == "host"
    assert json.loads((proj / "pemesh_app.json").read_text())["main_stack_size"] == 3072
    assert main(["micro", "create-project", str(tmp_path / "bad"), str(mlf),
                 "-x", "board=nrf52840dk"]) != 0
    assert "not a pemesh PE kind's board" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
