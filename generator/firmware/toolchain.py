"""Finding the tools a build or a run needs: compilers, QEMU, west and a Zephyr workspace.

Every finder either returns a path or raises :class:`~generator.errors.ToolchainError` naming
the missing tool and the exact command that installs it. Nothing is searched at import time.

Image sizes are read from the built ELF's section headers (a few lines of ``struct``, no
pyelftools): allocated sections are classified the way ``size --format=berkeley`` does —
``text`` = allocated read-only sections (code, rodata, vectors), ``data`` = allocated writable
sections with contents, ``bss`` = allocated sections without contents (SHT_NOBITS: .bss, stack,
heap reservations). Flash = text + data (data's load image sits in flash), RAM = data + bss.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from generator.firmware.elf import SHF_ALLOC, SHF_WRITE, SHT_NOBITS, read_elf
from generator.errors import ToolchainError

log = logging.getLogger(__name__)

#: the Debian packages that provide the bare-metal toolchain and the emulator
APT_PACKAGES = ("gcc-arm-none-eabi", "libnewlib-arm-none-eabi", "qemu-system-arm")
APT_HINT = "apt-get install " + " ".join(APT_PACKAGES)

_TOOL_HINTS = {
    "arm-none-eabi-gcc": APT_HINT,
    "arm-none-eabi-objcopy": APT_HINT,
    "arm-none-eabi-size": APT_HINT,
    "qemu-system-arm": APT_HINT,
    "gcc": "apt-get install gcc",
    "west": "pip install west",
}


def find_tool(name: str, *, env: Mapping[str, str] | None = None) -> Path:
    """Return the full path of the executable ``name``.

    Looks on ``PATH`` (of ``env`` if given), then beside the running Python interpreter (a
    virtualenv's ``bin/``, where ``pip install west`` puts ``west``).
    Raises ToolchainError with the install command when it is not found.
    """
    path_var = (env if env is not None else os.environ).get("PATH", os.defpath)
    found = shutil.which(name, path=path_var)
    if found is None:
        beside = Path(sys.executable).parent / name
        if beside.is_file() and os.access(beside, os.X_OK):
            found = str(beside)
    if found is None:
        hint = _TOOL_HINTS.get(name, f"install {name} and put it on PATH")
        raise ToolchainError(f"'{name}' not found on PATH", hint=hint)
    return Path(found)


@dataclass(frozen=True)
class ArmToolchain:
    """The GNU Arm Embedded tools the bare-metal backend runs."""

    gcc: Path
    objcopy: Path
    size: Path


def find_arm_toolchain(*, env: Mapping[str, str] | None = None) -> ArmToolchain:
    """Find arm-none-eabi-gcc, -objcopy and -size (ToolchainError with the apt line if not)."""
    tools = ArmToolchain(
        gcc=find_tool("arm-none-eabi-gcc", env=env),
        objcopy=find_tool("arm-none-eabi-objcopy", env=env),
        size=find_tool("arm-none-eabi-size", env=env),
    )
    return tools


def find_host_cc(*, env: Mapping[str, str] | None = None) -> Path:
    """The host C compiler: ``$CC`` when set, else ``gcc``."""
    environ = env if env is not None else os.environ
    cc = environ.get("CC")
    if cc:
        return find_tool(shlex.split(cc)[0], env=env)
    return find_tool("gcc", env=env)


def find_qemu(*, env: Mapping[str, str] | None = None) -> Path:
    """qemu-system-arm (ToolchainError with the apt line if missing)."""
    return find_tool("qemu-system-arm", env=env)


def find_west(*, env: Mapping[str, str] | None = None) -> Path:
    """The west meta-tool (ToolchainError saying ``pip install west`` if missing)."""
    return find_tool("west", env=env)


@dataclass(frozen=True)
class ZephyrWorkspace:
    """A Zephyr workspace: the zephyr tree and, when known, the west topdir around it."""

    zephyr_base: Path
    topdir: Path | None
    how: str  # "ZEPHYR_BASE" or "west topdir"


def find_zephyr_workspace(*, env: Mapping[str, str] | None = None,
                          cwd: Path | None = None) -> ZephyrWorkspace | None:
    """Find a Zephyr workspace, or return None when there is none.

    ``ZEPHYR_BASE`` wins when it names a folder holding a Zephyr tree (``VERSION`` and
    ``cmake/``); otherwise ``west topdir`` is asked (run in ``cwd``) and its ``zephyr/`` folder is
    used. A missing west simply means no workspace.
    """
    environ = dict(env if env is not None else os.environ)
    base = environ.get("ZEPHYR_BASE")
    if base:
        zb = Path(base).expanduser()
        if _is_zephyr_tree(zb):
            return ZephyrWorkspace(zb.resolve(), None, "ZEPHYR_BASE")
        log.warning("ZEPHYR_BASE=%s does not hold a Zephyr tree (no VERSION/cmake); ignoring it",
                    base)
    try:
        west = find_west(env=environ)
    except ToolchainError:
        return None
    try:
        proc = subprocess.run([str(west), "topdir"], cwd=str(cwd) if cwd else None, env=environ,
                              capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        log.debug("west topdir failed: %s", err)
        return None
    if proc.returncode != 0:
        log.debug("west topdir: %s", proc.stderr.strip())
        return None
    topdir = Path(proc.stdout.strip())
    zb = topdir / "zephyr"
    if _is_zephyr_tree(zb):
        return ZephyrWorkspace(zb.resolve(), topdir.resolve(), "west topdir")
    log.debug("west topdir %s has no zephyr/ tree", topdir)
    return None


def _is_zephyr_tree(path: Path) -> bool:
    return (path / "VERSION").is_file() and (path / "cmake").is_dir()


# --- ELF sizes ------------------------------------------------------------------------------

@dataclass(frozen=True)
class ImageSizes:
    """Section sizes of a built image, in bytes (see the module docstring for the classes)."""

    text: int
    data: int
    bss: int

    @property
    def flash(self) -> int:
        return self.text + self.data

    @property
    def ram(self) -> int:
        return self.data + self.bss

    def to_json(self) -> dict[str, int]:
        return {"text": self.text, "data": self.data, "bss": self.bss,
                "flash": self.flash, "ram": self.ram}

    def __getitem__(self, key: str) -> int:
        return self.to_json()[key]


def elf_sizes(path: Path) -> ImageSizes:
    """Read text/data/bss from an ELF file's section headers (32/64-bit, either endianness)."""
    try:
        sections, _ = read_elf(Path(path).read_bytes())
    except ValueError as err:
        raise ToolchainError(f"{path} {err}", hint="rebuild the image") from None
    text = data = bss = 0
    for sec in sections:
        if not sec.flags & SHF_ALLOC:
            continue
        if sec.type == SHT_NOBITS:
            bss += sec.size
        elif sec.flags & SHF_WRITE:
            data += sec.size
        else:
            text += sec.size
    return ImageSizes(text, data, bss)


def parse_berkeley_size(output: str) -> ImageSizes:
    """Parse the output of ``size --format=berkeley ONE_FILE`` (a cross-check of elf_sizes)."""
    lines = [ln.split() for ln in output.strip().splitlines() if ln.strip()]
    if len(lines) < 2 or lines[0][:3] != ["text", "data", "bss"]:
        raise ToolchainError(f"unexpected 'size' output: {output!r}",
                             hint="run size --format=berkeley by hand to see what it says")
    text, data, bss = (int(x) for x in lines[1][:3])
    return ImageSizes(text, data, bss)
