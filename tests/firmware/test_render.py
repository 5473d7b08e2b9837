"""render_pe_app: a real Zephyr application per PE from templates/pe_app/."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from tests import paths
from generator.errors import UsageError
from generator.firmware.render import GENERATED, render_pe_app
from generator.wire import HOST_ID, PeConfig, pack_pe_config
from generator.types import AppSpec, Route, TensorSpec

FIXTURES = paths.FIXTURES
RUNTIME = paths.RUNTIME
FILES = ["CMakeLists.txt", "prj.conf", "sample.yaml", "boards/qemu_cortex_m3.conf", "src/main.c",
         "src/pe_config.c", "src/pe_model.c", "pemesh_app.json"]


def spec(**kw) -> AppSpec:
    base = AppSpec(
        pe_name="pe3", pe_id=3, board="qemu_cortex_m3", stage="demo",
        inputs=(TensorSpec("x", (96,), "float32"), TensorSpec("bias", (4,), "float32")),
        outputs=(TensorSpec("out", (96,), "float32"), TensorSpec("total", (1,), "float32")),
        workspace_size=384, model_dir="../../stages/demo/model")
    return replace(base, **kw)


@pytest.fixture
def app(tmp_path) -> Path:
    shutil.copytree(FIXTURES / "demo_model", tmp_path / "stages" / "demo" / "model")
    out = tmp_path / "pes" / "pe3"
    render_pe_app(spec(), out)
    return out


def test_files_and_generated_header(app):
    assert sorted(str(p.relative_to(app)) for p in app.rglob("*") if p.is_file()) == sorted(FILES)
    for name in FILES:
        text = (app / name).read_text(encoding="utf-8")
        assert GENERATED in text.splitlines()[0 if not name.endswith(".json") else 1], name


def test_app_json_round_trips(app):
    data = json.loads((app / "pemesh_app.json").read_text(encoding="utf-8"))
    assert list(data) == sorted(data)
    data.pop("_comment")
    assert AppSpec.from_json(data) == spec()
    assert (app / data["model_dir"] / "codegen/host/include/tvmgen_demo.h").is_file()


def test_zephyr_files(app):
    cmake = (app / "CMakeLists.txt").read_text()
    assert "cmake_minimum_required(VERSION" in cmake
    assert "find_package(Zephyr REQUIRED HINTS $ENV{ZEPHYR_BASE})" in cmake
    assert "ZEPHYR_EXTRA_MODULES" in cmake
    assert "target_sources(app PRIVATE" in cmake
    assert "${CMAKE_CURRENT_SOURCE_DIR}/../../stages/demo/model" in cmake
    assert "/codegen/host/src/*.c" in cmake and "/codegen/host/include" in cmake
    conf = dict(line.split("=", 1) for line in (app / "prj.conf").read_text().splitlines()
                if line and not line.startswith("#"))
    assert conf["CONFIG_PEMESH"] == "y" and conf["CONFIG_SERIAL"] == "y"
    assert conf["CONFIG_UART_INTERRUPT_DRIVEN"] == "y" and conf["CONFIG_UART_CONSOLE"] == "n"
    assert conf["CONFIG_MAIN_STACK_SIZE"] == "2048"
    # every PEMESH symbol the app sets exists in the module's Kconfig
    kconfig = (RUNTIME / "Kconfig").read_text()
    for key in conf:
        if key.startswith("CONFIG_PEMESH"):
            name = key[len("CONFIG_"):]
            assert f"config {name}\n" in kconfig or f"menuconfig {name}\n" in kconfig, key
    assert "int main(void)" in (app / "src/main.c").read_text()
    assert "pemesh_pe_main()" in (app / "src/main.c").read_text()


def test_model_glue(app):
    model = (app / "src/pe_model.c").read_text()
    assert "static uint8_t pemesh_in_x[384] __attribute__((aligned(8)));" in model
    assert "static uint8_t pemesh_out_total[4] __attribute__((aligned(8)));" in model
    assert ".x = pemesh_in_x," in model and ".total = pemesh_out_total," in model
    assert "return tvmgen_demo_run(&inputs, &outputs);" in model
    cfg = (app / "src/pe_config.c").read_text()
    assert '__attribute__((section(".pemesh_config")' in cfg and ".pe_id = 3u," in cfg


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_generated_c_compiles(app, tmp_path):
    model = app / "../../stages/demo/model/codegen/host"
    for src in ("main.c", "pe_config.c", "pe_model.c"):
        proc = subprocess.run(
            ["gcc", "-std=c11", "-Wall", "-Wextra", "-Werror", f"-I{RUNTIME / 'include'}",
             f"-I{model / 'include'}", "-c", str(app / "src" / src), "-o", str(tmp_path / "x.o")],
            capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_size_mismatch_with_aot_module_is_a_compile_error(tmp_path):
    shutil.copytree(FIXTURES / "demo_model", tmp_path / "stages" / "demo" / "model")
    wrong = spec(inputs=(TensorSpec("x", (95,), "float32"), TensorSpec("bias", (4,), "float32")))
    render_pe_app(wrong, tmp_path / "pes" / "pe3")
    proc = subprocess.run(
        ["gcc", "-std=c11", f"-I{RUNTIME / 'include'}",
         f"-I{tmp_path / 'stages/demo/model/codegen/host/include'}", "-c",
         str(tmp_path / "pes/pe3/src/pe_model.c"), "-o", str(tmp_path / "x.o")],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "size differs from the AOT module" in proc.stderr


def test_deterministic_and_idempotent(tmp_path):
    render_pe_app(spec(), tmp_path / "a")
    render_pe_app(spec(), tmp_path / "b")
    render_pe_app(spec(), tmp_path / "b")
    for name in FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_other_board_has_no_board_conf(tmp_path):
    render_pe_app(spec(board="spinnaker2_pe"), tmp_path)
    assert not (tmp_path / "boards").exists()


@pytest.mark.parametrize("bad, words", [
    (dict(pe_id=0xFFFF), "pe_id"),
    (dict(stage="my-stage"), "C identifier"),
    (dict(role="router"), "role"),
    (dict(model_dir="/abs/model"), "relative"),
    (dict(inputs=()), "no inputs"),
    (dict(role="stage", routes=(Route(1, 0, 5, 0),) * 19), "at most 18"),
    (dict(role="stage", routes=(Route(3, 0, 5, 0),)), "unknown kind"),
    (dict(role="stage", routes=(Route(Route.OUTPUT, 2, 5, 0),)), "output 2"),
    (dict(role="stage", routes=(Route(Route.SOURCE, 0, 5, 0), Route(Route.SOURCE, 0, 6, 0))),
     "more than one SOURCE"),
    (dict(role="stage", routes=(Route(Route.OUTPUT, 0, 3, 0),)), "itself"),
    (dict(role="stage", routes=(Route(Route.OUTPUT, 0, 0x10000, 0),)), "16-bit"),
    (dict(inputs=(TensorSpec("a.1", (1,), "int8"), TensorSpec("a_1", (1,), "int8"))), "collide"),
])
def test_bad_specs_are_usage_errors(tmp_path, bad, words):
    with pytest.raises(UsageError, match=words) as exc:
        render_pe_app(spec(**bad), tmp_path)
    assert exc.value.hint
    assert not (tmp_path / "CMakeLists.txt").exists()


STAGE_ROUTES = (Route(Route.OUTPUT, 0, 5, 0), Route(Route.OUTPUT, 0, 6, 1),
                Route(Route.OUTPUT, 1, HOST_ID, 1), Route(Route.SOURCE, 0, HOST_ID, 0),
                Route(Route.SOURCE, 1, 0x0102, 0x0304))


def test_stage_config_routes(tmp_path):
    s = spec(role="stage", routes=STAGE_ROUTES, flags=1)
    render_pe_app(s, tmp_path)
    cfg = (tmp_path / "src/pe_config.c").read_text()
    assert ".role = 1u, /* stage */" in cfg and ".n_routes = 5u," in cfg
    assert ".flags = 0x00000001u," in cfg
    assert "0x01, 0x00, 0x06, 0x00, 0x01, 0x00, /* OUTPUT: output 0 -> PE 6 input 1 */" in cfg
    assert "0x02, 0x01, 0x02, 0x01, 0x04, 0x03, /* SOURCE: input 1 <- PE 258 output 772 */" in cfg
    # the bytes in the C file are exactly Python's config block
    values = [int(v, 16) for v in __import__("re").findall(r"0x([0-9a-f]{2}),", cfg)]
    raw = pack_pe_config(PeConfig(3, 1, tuple((r.kind, r.a, r.pe, r.b) for r in STAGE_ROUTES), 1))
    assert bytes(values) == raw[16:16 + 6 * 5]
    data = json.loads((tmp_path / "pemesh_app.json").read_text())
    data.pop("_comment")
    assert AppSpec.from_json(data) == s


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_stage_config_is_the_python_block(tmp_path):
    """Compile the generated pe_config.c and compare its 128 bytes with pack_pe_config."""
    routes = tuple(Route(Route.OUTPUT, i % 2, 10 + i, i) for i in range(16)) + STAGE_ROUTES[3:]
    s = spec(role="stage", routes=routes, flags=0x80000001)
    assert len(routes) == 18
    render_pe_app(s, tmp_path / "app")
    dump = tmp_path / "dump.c"
    dump.write_text('#include <stdio.h>\n#include <pemesh/config.h>\nint main(void) {\n'
                    '\tconst unsigned char *p = (const unsigned char *)&pemesh_pe_config;\n'
                    '\tfor (unsigned i = 0; i < sizeof(pemesh_pe_config); i++)\n'
                    '\t\tprintf("%02x", p[i]);\n\treturn pemesh_config_check('
                    '&pemesh_pe_config, NULL) != 0;\n}\n')
    exe = tmp_path / "dump"
    proc = subprocess.run(
        ["gcc", "-std=c11", "-Wall", "-Wextra", "-Werror", f"-I{RUNTIME / 'include'}",
         str(tmp_path / "app/src/pe_config.c"), str(RUNTIME / "src/config.c"), str(dump),
         "-o", str(exe)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = subprocess.run([str(exe)], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0
    routes = tuple((r.kind, r.a, r.pe, r.b) for r in s.routes)
    assert bytes.fromhex(out.stdout) == pack_pe_config(PeConfig(3, 1, routes, 0x80000001))
