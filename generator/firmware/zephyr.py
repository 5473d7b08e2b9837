"""How a PE app is built where Zephyr is: the command lines, and where the ELF lands.

Read against Zephyr's and west's sources (no Zephyr workspace exists on pemesh's CI machines):

- In a west workspace (a folder with ``.west/`` above ZEPHYR_BASE, or what ``west topdir``
  names) the app is built with ``west build -p auto -b BOARD -d BUILD --no-sysbuild APP --
  -DZEPHYR_EXTRA_MODULES=<runtime>``, run from the workspace's top folder. ``--no-sysbuild``:
  where sysbuild is on (NCS's default, or ``west config build.sysbuild true``) the app's ELF
  would land under ``BUILD/<app folder name>/zephyr/`` and the image pemesh runs is one app
  anyway. ``west_cmd`` is a command line (``west``, ``python3 -m west``), split like a shell.
- A bare ZEPHYR_BASE (a Zephyr clone with no ``.west/`` above it) is no west workspace: ``west
  build`` is not even a command there. Zephyr's CMake package works without west, so the app
  is configured with ``cmake -S APP -B BUILD -G Ninja -DBOARD=BOARD
  -DZEPHYR_EXTRA_MODULES=<runtime>`` (plus ``-DZEPHYR_MODULES=…`` from the environment, which a
  bare clone needs for the board's HAL, e.g. cmsis_6) and built with ``ninja -C BUILD``.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

#: west's marker of a workspace's top folder
WEST_DIR = ".west"


def west_argv(west_cmd: str | Sequence[str]) -> tuple[str, ...]:
    """``west_cmd`` as argv: a string is split like a shell (``"python3 -m west"``)."""
    argv = tuple(shlex.split(west_cmd)) if isinstance(west_cmd, str) else tuple(west_cmd)
    if not argv:
        raise ValueError("the west command is empty")
    return argv


def west_topdir_of(zephyr_base: Path) -> Path | None:
    """The west workspace holding ``zephyr_base`` (the nearest parent with ``.west/``), or None
    for a bare clone. west itself finds its topdir the same way, from the current folder."""
    for folder in (Path(zephyr_base).resolve(), *Path(zephyr_base).resolve().parents):
        if (folder / WEST_DIR).is_dir():
            return folder
    return None


def west_build_command(app_dir: Path, build_dir: Path, board: str, *,
                       west: str | Sequence[str] = "west", runtime: Path,
                       sysbuild: bool = False) -> tuple[str, ...]:
    """The ``west build`` line for one app; the runtime comes in as an extra Zephyr module.

    ``sysbuild=False`` (pemesh's choice) passes ``--no-sysbuild`` so a workspace that turns
    sysbuild on still builds the plain app; ``sysbuild=True`` passes ``--sysbuild``.
    """
    return (*west_argv(west), "build", "-p", "auto", "-b", board,
            "-d", str(Path(build_dir).resolve()),
            "--sysbuild" if sysbuild else "--no-sysbuild",
            str(Path(app_dir).resolve()), "--", f"-DZEPHYR_EXTRA_MODULES={Path(runtime).resolve()}")


def cmake_build_commands(app_dir: Path, build_dir: Path, board: str, *, runtime: Path,
                         env: Mapping[str, str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``cmake`` configure + ``ninja`` build lines for a bare ZEPHYR_BASE (no west)."""
    configure = ["cmake", "-S", str(Path(app_dir).resolve()), "-B", str(Path(build_dir).resolve()),
                 "-G", "Ninja", f"-DBOARD={board}",
                 f"-DZEPHYR_EXTRA_MODULES={Path(runtime).resolve()}"]
    if env.get("ZEPHYR_MODULES"):
        configure.append(f"-DZEPHYR_MODULES={env['ZEPHYR_MODULES']}")
    return tuple(configure), ("ninja", "-C", str(Path(build_dir).resolve()))


@dataclass(frozen=True)
class ZephyrBuildPlan:
    """What to run for one app, from where, and where its ELF will be."""

    how: str                                  # "west" or "cmake"
    commands: tuple[tuple[str, ...], ...]
    cwd: Path | None                          # the west topdir for west builds
    elf: Path


def zephyr_elf(build_dir: Path, app_dir: Path, *, sysbuild: bool = False) -> Path:
    """Where Zephyr writes the app's ELF: ``BUILD/zephyr/zephyr.elf``, or with sysbuild
    ``BUILD/<app folder name>/zephyr/zephyr.elf`` (the app is a sysbuild image)."""
    build_dir = Path(build_dir).resolve()
    if sysbuild:
        return build_dir / Path(app_dir).resolve().name / "zephyr" / "zephyr.elf"
    return build_dir / "zephyr" / "zephyr.elf"


def zephyr_build_plan(app_dir: Path, build_dir: Path, board: str, *, zephyr_base: Path,
                      topdir: Path | None, runtime: Path, west: str | Sequence[str] = "west",
                      env: Mapping[str, str] | None = None,
                      sysbuild: bool = False) -> ZephyrBuildPlan:
    """West in a workspace (``topdir`` given or found above ``zephyr_base``), else CMake + Ninja."""
    topdir = topdir or west_topdir_of(zephyr_base)
    if topdir is not None:
        cmd = west_build_command(app_dir, build_dir, board, west=west, runtime=runtime,
                                 sysbuild=sysbuild)
        return ZephyrBuildPlan("west", (cmd,), Path(topdir),
                               zephyr_elf(build_dir, app_dir, sysbuild=sysbuild))
    configure, build = cmake_build_commands(app_dir, build_dir, board, runtime=runtime,
                                            env=dict(env or {}))
    return ZephyrBuildPlan("cmake", (configure, build), None, zephyr_elf(build_dir, app_dir))
