"""Build tests: tool discovery, backend choice, command formation, sizes, fit checks, and real
bare-metal and host builds of a small app (tests/fixtures/build_demo)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from tests import paths
from generator.commands.build import RichProgress
from generator.firmware import build, images
from generator.firmware.render import render_pe_app
from generator.manifest import read_manifest
from generator.types import AppSpec, Route
from tests.out_tree import write_test_manifest
from generator.firmware.build import (ARM_CFLAGS, Limits, app_sources, build_app, check_fits,
                             choose_backend, gcc_commands, west_build_command)
from generator.cli import main
from generator.errors import DoesNotFitError, ToolchainError, UsageError
from generator.paths import runtime_dir
from generator.firmware.toolchain import (APT_HINT, ImageSizes, elf_sizes, find_arm_toolchain, find_qemu,
                                 find_zephyr_workspace, parse_berkeley_size)
from tests.markers import needs_arm

FIXTURE = paths.FIXTURES / "build_demo"
APP = FIXTURE / "app"


@pytest.fixture(scope="module")
def baremetal(tmp_path_factory):
    return build_app(APP, tmp_path_factory.mktemp("bm"), "baremetal")


# --- tools ----------------------------------------------------------------------------------

def test_missing_arm_toolchain_names_the_apt_line(tmp_path):
    with pytest.raises(ToolchainError) as err:
        find_arm_toolchain(env={"PATH": str(tmp_path)})
    assert "arm-none-eabi-gcc" in str(err.value)
    assert err.value.hint == APT_HINT
    assert "apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm" in str(
        err.value)


def test_missing_qemu(tmp_path):
    with pytest.raises(ToolchainError, match="qemu-system-arm.*\n.*apt-get install"):
        find_qemu(env={"PATH": str(tmp_path)})


def _fake_zephyr(root: Path) -> Path:
    (root / "zephyr" / "cmake").mkdir(parents=True)
    (root / "zephyr" / "VERSION").write_text("VERSION_MAJOR = 4\n")
    return root / "zephyr"


def test_zephyr_workspace_from_zephyr_base(tmp_path):
    zb = _fake_zephyr(tmp_path)
    ws = find_zephyr_workspace(env={"ZEPHYR_BASE": str(zb), "PATH": ""})
    assert ws is not None and ws.zephyr_base == zb.resolve() and ws.how == "ZEPHYR_BASE"


def test_zephyr_workspace_from_west_topdir(tmp_path):
    _fake_zephyr(tmp_path)
    (tmp_path / ".west").mkdir()
    (tmp_path / ".west" / "config").write_text("[manifest]\npath = zephyr\n")
    (tmp_path / "app").mkdir()
    ws = find_zephyr_workspace(env={"PATH": "/usr/bin:/bin"}, cwd=tmp_path / "app")
    assert ws is not None and ws.topdir == tmp_path.resolve() and ws.how == "west topdir"
    assert find_zephyr_workspace(env={"PATH": "/usr/bin:/bin"}, cwd=Path("/")) is None


# --- backend choice -------------------------------------------------------------------------

def test_auto_backend(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ZEPHYR_BASE", raising=False)
    backend, reason = choose_backend("auto", "qemu_cortex_m3")
    assert backend == "baremetal" and "no Zephyr workspace" in reason
    with pytest.raises(ToolchainError, match="no bare-metal port"):
        choose_backend("auto", "spinnaker2_pe")
    monkeypatch.setenv("ZEPHYR_BASE", str(_fake_zephyr(tmp_path)))
    assert choose_backend("auto", "qemu_cortex_m3")[0] == "west"
    assert choose_backend("host", "qemu_cortex_m3") == ("host", "requested")
    with pytest.raises(UsageError):
        choose_backend("make", "qemu_cortex_m3")


def test_west_without_workspace_refuses(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ZEPHYR_BASE", raising=False)
    with pytest.raises(ToolchainError, match="no Zephyr workspace found"):
        build_app(APP, tmp_path / "b", "west")
    assert not (tmp_path / "b" / "zephyr").exists()


# --- command formation ----------------------------------------------------------------------

def test_west_command(tmp_path):
    cmd = west_build_command(APP, tmp_path / "b", "qemu_cortex_m3", west="west")
    assert cmd == ("west", "build", "-p", "auto", "-b", "qemu_cortex_m3", "-d",
                   str((tmp_path / "b").resolve()), "--no-sysbuild", str(APP.resolve()), "--",
                   f"-DZEPHYR_EXTRA_MODULES={runtime_dir().resolve()}")


def test_gcc_commands_baremetal(tmp_path):
    srcs = app_sources(APP, "lm3s6965")
    compiles, link = gcc_commands(srcs, tmp_path, cc="arm-none-eabi-gcc", cflags=ARM_CFLAGS,
                                  ldflags=build.ARM_LDFLAGS, output=tmp_path / "fw.elf")
    names = [Path(c[c.index("-c") + 1]).name for c in compiles]
    core = sorted(p.name for p in (runtime_dir() / "src").glob("*.c"))
    assert {"crc32.c", "frame.c", "pe.c", "ring.c"} <= set(core)
    assert names == ["main.c", "pe_config.c", "pe_model.c", "default_lib0.c", *core,
                     "port.c", "startup.c"]
    for c in compiles:
        for flag in ("-mcpu=cortex-m3", "-mthumb", "-Os", "-ffunction-sections",
                     "-fdata-sections", "--specs=nano.specs", "-Wall", "-Wextra"):
            assert flag in c
        assert f"-I{(FIXTURE / 'model/codegen/host/include').resolve()}" in c
        assert f"-I{runtime_dir().resolve() / 'include'}" in c
        # TVM's generated C is not held to -Werror; our own C is
        assert ("-Werror" in c) == ("default_lib0.c" not in c[c.index("-c") + 1])
    assert f"-T{runtime_dir().resolve() / 'ports/lm3s6965/lm3s6965.ld'}" in link
    assert "-Wl,--gc-sections" in link and "-nostartfiles" in link
    assert link[-3:] == ("-lm", "-o", str(tmp_path / "fw.elf"))
    assert len([a for a in link if a.endswith(".o")]) == len(compiles)


def test_gcc_commands_host_have_no_linker_script(tmp_path):
    srcs = app_sources(APP, "host")
    assert srcs.linker_script is None
    _, link = gcc_commands(srcs, tmp_path, cc="gcc", cflags=build.HOST_CFLAGS, ldflags=(),
                           output=tmp_path / "pe")
    assert not any(a.startswith("-T") for a in link)


# --- sizes and fit --------------------------------------------------------------------------

def test_parse_berkeley():
    out = ("   text\t   data\t    bss\t    dec\t    hex\tfilename\n"
           "   7184\t    100\t   4804\t  12088\t   2f38\tfw.elf\n")
    assert parse_berkeley_size(out) == ImageSizes(7184, 100, 4804)
    with pytest.raises(ToolchainError):
        parse_berkeley_size("garbage")


def test_check_fits_names_the_numbers():
    s = ImageSizes(text=200_000, data=70_000, bss=10)
    with pytest.raises(DoesNotFitError) as err:
        check_fits(s, "qemu_cortex_m3", "pe0")
    msg = str(err.value)
    assert "flash 270000 B > 262144 B" in msg and "RAM 70010 B > 65536 B" in msg
    check_fits(ImageSizes(1000, 10, 10), "qemu_cortex_m3", "pe0")
    with pytest.raises(DoesNotFitError, match="flash 1020 B > 1000 B"):
        check_fits(ImageSizes(1000, 20, 10), "unknown_board", "pe0", Limits(1000, 100))


@needs_arm
def test_baremetal_build(baremetal):
    r = baremetal
    assert r.backend == "baremetal" and r.image.name == "fw.elf" and r.bin.is_file()
    assert r.image.read_bytes()[:4] == b"\x7fELF"
    size = subprocess.run(["arm-none-eabi-size", "--format=berkeley", str(r.image)],
                          capture_output=True, text=True, check=True).stdout
    assert r.sizes == parse_berkeley_size(size) == elf_sizes(r.image)
    assert r.sizes.flash == r.sizes.text + r.sizes.data and r.sizes.ram == r.sizes.data + r.sizes.bss
    # the flash image holds exactly what flash holds
    assert r.bin.stat().st_size == r.sizes.flash
    assert r.commands[-1][1:3] == ("-O", "binary")
    assert (r.image.parent / "commands.txt").read_text().count("\n") == len(r.commands)


@needs_arm
def test_baremetal_too_big_raises(tmp_path):
    with pytest.raises(DoesNotFitError, match=r"flash \d+ B > 4096 B"):
        build_app(APP, tmp_path, "baremetal", limits=Limits(flash=4096, ram=64 * 1024))


def test_host_build(tmp_path):
    r = build_app(APP, tmp_path, "host")
    assert r.backend == "host" and r.bin is None and r.image.stat().st_mode & 0o111
    assert r.sizes.text > 0


def test_compile_error_is_a_build_error(tmp_path):
    app = tmp_path / "app"
    shutil.copytree(APP, app)
    (tmp_path / "model").symlink_to(FIXTURE / "model")
    (app / "src" / "broken.c").write_text("int broken(void) { return undefined_thing; }\n")
    from generator.errors import BuildError
    with pytest.raises(BuildError, match="broken.c"):
        build_app(app, tmp_path / "b", "host")


# --- pemesh build OUT -----------------------------------------------------------------------

def make_out(tmp_path: Path) -> Path:
    """An OUT/ folder with one PE app (the fixture) and its mesh.json."""
    out = tmp_path / "out"
    shutil.copytree(APP, out / "pes" / "pe0")
    shutil.copytree(FIXTURE / "model", out / "stages" / "demo" / "model")
    spec = json.loads((out / "pes/pe0/pemesh_app.json").read_text())
    spec["model_dir"] = "../../stages/demo/model"
    spec = AppSpec.from_json(spec)
    spec = replace(spec, role="stage", routes=(Route(Route.SOURCE, 0, 0xFFFF, 0),
                                               Route(Route.OUTPUT, 0, 0xFFFF, 0)))
    shutil.rmtree(out / "pes" / "pe0")
    render_pe_app(spec, out / "pes" / "pe0")
    write_test_manifest(out, [spec])
    return out


@needs_arm
def test_build_command(tmp_path, capsys):
    out = make_out(tmp_path)
    assert main(["build", str(out), "--backend", "baremetal", "-j", "2"]) == 0
    printed = capsys.readouterr().out
    assert "backend: baremetal" in printed and "pe0: build/pe0/fw.elf" in printed
    doc = json.loads((out / "build" / "build.json").read_text())
    img = doc["images"]["pe0"]
    assert doc["backend"] == "baremetal" and img["image"] == "build/pe0/fw.elf"
    assert img["sha256"] == hashlib.sha256((out / img["bin"]).read_bytes()).hexdigest()
    assert img["sizes"]["flash"] == img["sizes"]["text"] + img["sizes"]["data"]
    _, results = images.load_build(out)
    assert results["pe0"].image == (out / "build/pe0/fw.elf").resolve()


def test_build_command_without_compile(tmp_path):
    assert main(["build", str(tmp_path / "nothing")]) == UsageError.exit_code


# --- one image per stage, stamped per PE --------------------------------------------------------

def _mesh_out(tmp_path: Path, stages: int, per_stage: int) -> tuple[Path, list]:
    from tests.firmware.test_stamp import demo_spec, make_mesh_out
    specs = [demo_spec(f"pe{k * stages + s}", 10 * (k * stages + s) + 1, f"st{s}")
             for k in range(per_stage) for s in range(stages)]   # stages interleaved
    return make_mesh_out(tmp_path / "out", specs), specs


def test_plan_groups_by_stage(tmp_path):
    out, specs = _mesh_out(tmp_path, stages=3, per_stage=3)
    mesh = read_manifest(out)
    plans = images.plan_images(mesh, out, "baremetal")
    assert [p.name for p in plans] == ["pe0", "pe1", "pe2"]
    assert [p.pes for p in plans] == [("pe0", "pe3", "pe6"), ("pe1", "pe4", "pe7"),
                                      ("pe2", "pe5", "pe8")]
    assert len({p.key for p in plans}) == 3
    # without OUT: one image per PE (the old behaviour)
    assert [p.pes for p in images.plan_images(mesh)] == [(s.pe_name,) for s in specs]
    assert images.split_jobs(2, 4) == (2, 1) and images.split_jobs(8, 2) == (2, 4)
    assert images.split_jobs(None, 1)[0] == 1


@needs_arm
@pytest.mark.timeout(300)
def test_build_command_builds_each_stage_once(tmp_path, capsys):
    out, specs = _mesh_out(tmp_path, stages=4, per_stage=3)
    assert main(["build", str(out), "--backend", "baremetal", "-j", "2"]) == 0
    captured = capsys.readouterr()
    assert "4 image(s) built, 8 stamped (12 PEs" in captured.out
    assert "pe4: build/pe4/fw.elf" in captured.out and "(stamped from pe0)" in captured.out
    # not a terminal: plain progress lines on stderr
    assert "building 4 image(s), stamping 8 PE(s)" in captured.err
    assert "[4/4] built" in captured.err and "stamped 8/8" in captured.err
    doc = json.loads((out / "build" / "build.json").read_text())
    assert doc["totals"]["pes"] == 12 and doc["totals"]["images_built"] == 4
    assert doc["totals"]["images_stamped"] == 8
    assert [n for n, d in doc["images"].items() if d["how"] == "built"] == \
        ["pe0", "pe1", "pe2", "pe3"]
    for s in specs:
        img = doc["images"][s.pe_name]
        data = (out / img["bin"]).read_bytes()
        assert img["sha256"] == hashlib.sha256(data).hexdigest()
        assert img["from"] == f"pe{int(s.stage[2:])}"
        assert img["sizes"]["flash"] == len(data) == doc["images"][img["from"]]["sizes"]["flash"]
        assert img["app"] == f"pes/{s.pe_name}"
    # one stage's images differ from each other (stamped ids), so their hashes do
    assert len({d["sha256"] for d in doc["images"].values()}) == 12
    # build.json is deterministic: a rebuild writes the same document
    first = (out / "build" / "build.json").read_text()
    assert main(["build", str(out), "--backend", "baremetal"]) == 0
    assert (out / "build" / "build.json").read_text() == first


def test_build_failure_names_the_image(tmp_path):
    out, _ = _mesh_out(tmp_path, stages=2, per_stage=2)
    (out / "pes" / "pe1" / "src" / "broken.c").write_text("int broken(void) { return nope; }\n")
    from generator.errors import BuildError
    with pytest.raises(BuildError, match="broken.c"):
        images.build_mesh(out, "host", jobs=2)


def test_rich_progress_runs(capsys):
    bar = RichProgress()
    bar.begin(2, 3)
    for _ in range(2):
        bar.built(images.ImagePlan("pe0", "pes/pe0", ("pe0",)), 0.1)
    for pe in ("pe1", "pe2", "pe3"):
        bar.stamped(pe)
    assert bar.bar.tasks[0].completed == 2 and bar.bar.tasks[1].completed == 3
    bar.end()
