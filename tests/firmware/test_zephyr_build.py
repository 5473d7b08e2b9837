"""How pemesh builds a PE app where Zephyr is (generator/firmware/zephyr.py): ``west build
--no-sysbuild`` in a west workspace, with or without sysbuild, the ELF where Zephyr puts it,
``west_cmd`` as a command line; and CMake + Ninja for a bare ZEPHYR_BASE (no ``.west/``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from generator.errors import ToolchainError
from generator.firmware import zephyr
from generator.firmware.build import build_app
from generator.paths import runtime_dir
from tests.paths import FIXTURES

APP = FIXTURES / "build_demo" / "app"
RUNTIME = runtime_dir().resolve()


def _zephyr_tree(root: Path) -> Path:
    zb = root / "zephyr"
    (zb / "cmake").mkdir(parents=True)
    (zb / "VERSION").write_text("VERSION_MAJOR = 4\nVERSION_MINOR = 2\n")
    return zb


def test_west_command_without_sysbuild(tmp_path):
    cmd = zephyr.west_build_command(APP, tmp_path / "b", "qemu_cortex_m3", runtime=RUNTIME)
    assert cmd[:2] == ("west", "build")
    assert "--no-sysbuild" in cmd and "--sysbuild" not in cmd
    # west's own options come before the app, CMake's after "--"
    assert cmd.index("--no-sysbuild") < cmd.index(str(APP.resolve())) < cmd.index("--")
    assert cmd[-1] == f"-DZEPHYR_EXTRA_MODULES={RUNTIME}"
    assert zephyr.zephyr_elf(tmp_path / "b", APP) == (tmp_path / "b").resolve() / "zephyr" / "zephyr.elf"


def test_west_command_with_sysbuild(tmp_path):
    cmd = zephyr.west_build_command(APP, tmp_path / "b", "qemu_cortex_m3", runtime=RUNTIME,
                                    sysbuild=True)
    assert "--sysbuild" in cmd and "--no-sysbuild" not in cmd
    # sysbuild puts the app image under <build>/<app folder name>/zephyr/
    assert zephyr.zephyr_elf(tmp_path / "b", APP, sysbuild=True) == \
        (tmp_path / "b").resolve() / APP.name / "zephyr" / "zephyr.elf"


def test_west_cmd_is_a_command_line(tmp_path):
    cmd = zephyr.west_build_command(APP, tmp_path / "b", "qemu_cortex_m3", runtime=RUNTIME,
                                    west="python3 -m west")
    assert cmd[:4] == ("python3", "-m", "west", "build")
    assert zephyr.west_argv("'/opt/my tools/west'") == ("/opt/my tools/west",)
    with pytest.raises(ValueError):
        zephyr.west_argv("  ")


def test_workspace_found_above_zephyr_base(tmp_path):
    zb = _zephyr_tree(tmp_path)
    (tmp_path / ".west").mkdir()
    plan = zephyr.zephyr_build_plan(APP, tmp_path / "b", "qemu_cortex_m3", zephyr_base=zb,
                                    topdir=None, runtime=RUNTIME, west=("west",))
    assert plan.how == "west" and plan.cwd == tmp_path.resolve()
    assert plan.commands[0][:2] == ("west", "build") and "--no-sysbuild" in plan.commands[0]


def test_bare_zephyr_base_is_built_with_cmake(tmp_path):
    zb = _zephyr_tree(tmp_path)              # no .west/ anywhere above: a bare clone
    assert zephyr.west_topdir_of(zb) is None
    plan = zephyr.zephyr_build_plan(APP, tmp_path / "b", "qemu_cortex_m3", zephyr_base=zb,
                                    topdir=None, runtime=RUNTIME,
                                    env={"ZEPHYR_MODULES": "/m/cmsis_6"})
    assert plan.how == "cmake" and plan.cwd is None
    configure, build = plan.commands
    assert configure[:5] == ("cmake", "-S", str(APP.resolve()), "-B", str((tmp_path / "b").resolve()))
    assert ("-G", "Ninja") == configure[5:7]
    assert "-DBOARD=qemu_cortex_m3" in configure
    assert f"-DZEPHYR_EXTRA_MODULES={RUNTIME}" in configure
    assert "-DZEPHYR_MODULES=/m/cmsis_6" in configure
    assert build == ("ninja", "-C", str((tmp_path / "b").resolve()))
    assert plan.elf == (tmp_path / "b").resolve() / "zephyr" / "zephyr.elf"


def test_bare_zephyr_base_without_cmake_is_refused_with_a_hint(tmp_path):
    zb = _zephyr_tree(tmp_path)
    with pytest.raises(ToolchainError, match="bare Zephyr clone") as exc:
        build_app(APP, tmp_path / "b", "west", env={"ZEPHYR_BASE": str(zb), "PATH": str(tmp_path)})
    assert "west init" in exc.value.hint
