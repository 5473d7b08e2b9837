"""Building PE apps (CONTRACTS §5): ``west`` (Zephyr), ``baremetal`` (lm3s6965 port) or ``host``.

An app folder ``pes/<pe>/`` (written by ``render_pe_app``) describes itself in
``pemesh_app.json``. Its sources are ``src/*.c`` + ``<model_dir>/codegen/host/src/*.c`` + the
runtime core ``zephyr_app/src/*.c`` + one port ``zephyr_app/ports/<port>/*.c``; its include dirs
are ``src``, ``<model_dir>/codegen/host/include`` and ``zephyr_app/include``.

- ``baremetal`` compiles them with arm-none-eabi-gcc for a Cortex-M3 and links with the
  lm3s6965 port's linker script: the image QEMU's ``lm3s6965evb`` (Zephyr's qemu_cortex_m3) runs.
- ``host`` compiles them with the host gcc and the ``host`` port: a PE as a Linux process.
- ``west`` runs ``west build`` on the same app with the runtime as an extra Zephyr module; only
  where a Zephyr workspace exists.

Sizes come from the built ELF (see :mod:`generator.firmware.toolchain`), never from estimates.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from generator.errors import BuildError, DoesNotFitError, PemeshError, ToolchainError, UsageError
from generator.paths import runtime_dir as default_runtime_dir
from generator.types import AppSpec
from generator.firmware import zephyr
from generator.firmware.toolchain import (ImageSizes, elf_sizes, find_arm_toolchain, find_host_cc, find_west,
                        find_zephyr_workspace)

log = logging.getLogger(__name__)

BACKENDS = ("west", "baremetal", "host")
APP_JSON = "pemesh_app.json"
BUILD_JSON = "build.json"

#: boards QEMU emulates, and the bare-metal port that runs on QEMU's machine for them (used when
#: boards/pe/<board>.yaml does not say; see :func:`qemu_port`)
QEMU_BOARD_PORTS = {"qemu_cortex_m3": "lm3s6965", "qemu_mps2_an386": "mps2_an386"}
#: CPU flags per bare-metal port (replace ARM_CFLAGS' -mcpu): the M4F port uses the FPU
PORT_CPU_FLAGS = {"mps2_an386": ("-mcpu=cortex-m4", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16")}

ARM_CFLAGS = ("-mcpu=cortex-m3", "-mthumb", "-Os", "-g", "-ffunction-sections",
              "-fdata-sections", "--specs=nano.specs")
ARM_LDFLAGS = ("-nostartfiles", "-Wl,--gc-sections")
HOST_CFLAGS = ("-O2", "-g")
#: the model's C (TVM's operator loops, the entry, constants) is built at -O2 on every backend:
#: gcc 12 at -Os spills inside register-blocked loops (KERNELS.md); runtime and glue stay -Os
MODEL_OPT_FLAGS = ("-O2",)
#: no build-id note: it hashes the whole file, so a stamped copy would differ from a direct build
HOST_LDFLAGS = ("-Wl,--build-id=none",)
#: warnings for our own C (runtime, port, generated glue); TVM's generated C gets WARN only
WARN_FLAGS = ("-Wall", "-Wextra")
STRICT_FLAGS = ("-Werror",)
LIBS = ("-lm",)


@dataclass(frozen=True)
class Limits:
    """Flash and RAM of a PE, in bytes."""

    flash: int
    ram: int


#: qemu_cortex_m3 = lm3s6965: 256 KiB flash, 64 KiB SRAM
DEFAULT_LIMITS = Limits(flash=256 * 1024, ram=64 * 1024)
BOARD_LIMITS = {"qemu_cortex_m3": DEFAULT_LIMITS}


@dataclass(frozen=True)
class BuildResult:
    """One built PE image."""

    backend: str                            # "west" | "baremetal" | "host"
    app_dir: Path
    image: Path                             # ELF (west/baremetal) or host executable
    bin: Path | None                        # flash image (west/baremetal)
    sizes: ImageSizes
    commands: tuple[tuple[str, ...], ...]   # every command line run, in order
    board: str = "qemu_cortex_m3"

    def to_json(self, base: Path | None = None) -> dict[str, Any]:
        """JSON form; paths relative to ``base`` when given (build.json stores them so)."""
        def rel(p: Path | None) -> str | None:
            if p is None:
                return None
            return os.path.relpath(p, base) if base is not None else str(p)
        return {"backend": self.backend, "board": self.board, "app": rel(self.app_dir),
                "image": rel(self.image), "bin": rel(self.bin), "sizes": self.sizes.to_json()}

    @classmethod
    def from_json(cls, d: Mapping[str, Any], base: Path | None = None) -> "BuildResult":
        def path(p: str | None) -> Path | None:
            if p is None:
                return None
            return (base / p).resolve() if base is not None else Path(p)
        s = d["sizes"]
        return cls(backend=d["backend"], app_dir=path(d["app"]), image=path(d["image"]),
                   bin=path(d.get("bin")), sizes=ImageSizes(s["text"], s["data"], s["bss"]),
                   commands=(), board=d.get("board", "qemu_cortex_m3"))

    @property
    def runs_on_qemu(self) -> bool:
        return self.backend in ("baremetal", "west")


def _pe_kind(board: str) -> Any:
    """The PE kind ``boards/pe/<board>.yaml`` (generator.boards.catalog), or None if there is none."""
    try:
        from generator.boards.catalog import pe_kind_for_board
        return pe_kind_for_board(board)
    except (ImportError, PemeshError, OSError) as err:
        log.debug("no PE kind for board %s: %s", board, err)
        return None


def qemu_port(board: str) -> str | None:
    """The bare-metal port that runs ``board`` on QEMU, or None if QEMU does not emulate it."""
    kind = _pe_kind(board)
    if kind is not None:
        return kind.port if kind.qemu and kind.port not in ("zephyr", "host") else None
    return QEMU_BOARD_PORTS.get(board)


def fit_problems(sizes: ImageSizes, board: str, limits: Limits | None = None) -> list[str]:
    """Why an image does not fit its PE (empty if it fits or nothing is known of the board).

    ``limits`` wins; else the PE kind from boards/ (which knows code-in-RAM PEs); else the
    built-in table (qemu_cortex_m3: 256 KiB flash, 64 KiB RAM).
    """
    if limits is None:
        kind = _pe_kind(board)
        if kind is not None:
            return list(kind.fit_problems(sizes.flash, sizes.ram))
        limits = BOARD_LIMITS.get(board)
        if limits is None:
            log.warning("no flash/RAM limits known for board %s; not checking the image size",
                        board)
            return []
    over = []
    if sizes.flash > limits.flash:
        over.append(f"flash {sizes.flash} B > {limits.flash} B "
                    f"(text {sizes.text} + data {sizes.data})")
    if sizes.ram > limits.ram:
        over.append(f"RAM {sizes.ram} B > {limits.ram} B (data {sizes.data} + bss {sizes.bss})")
    return over


# --- app description -----------------------------------------------------------------------

def _read_json(path: Path, missing: str, missing_hint: str, bad_hint: str) -> Any:
    """The JSON document at ``path``; UsageError ``missing`` (a suffix to "PATH not found")
    when it is absent, or naming the parse error when it is not JSON."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{path} not found{missing}", hint=missing_hint) from None
    except ValueError as err:
        raise UsageError(f"{path} is not valid JSON: {err}", hint=bad_hint) from None


def load_app_spec(app_dir: Path) -> AppSpec:
    """Read ``pemesh_app.json`` of an app folder."""
    path = Path(app_dir) / APP_JSON
    rerender = "re-render the app with 'pemesh compile --force'"
    doc = _read_json(path, f": {app_dir} is not a rendered pemesh app",
                     "run 'pemesh compile' to write OUT/pes/<pe>/", rerender)
    try:
        return AppSpec.from_json(doc)
    except (KeyError, ValueError, TypeError) as err:
        raise UsageError(f"{path} is malformed: {err}", hint=rerender) from None


@dataclass(frozen=True)
class SourceSet:
    """The C sources of one app for one port, grouped (the group names the object folder)."""

    groups: tuple[tuple[str, tuple[Path, ...]], ...]   # (group, sources), group order fixed
    include_dirs: tuple[Path, ...]
    linker_script: Path | None

    def all_sources(self) -> list[tuple[str, Path]]:
        return [(g, s) for g, srcs in self.groups for s in srcs]


def app_sources(app_dir: Path, port: str, *, runtime: Path | None = None) -> SourceSet:
    """Collect the sources, include dirs and (bare-metal) linker script of an app (CONTRACTS §5)."""
    app_dir = Path(app_dir).resolve()
    runtime = Path(runtime or default_runtime_dir()).resolve()
    spec = load_app_spec(app_dir)
    model = (app_dir / spec.model_dir).resolve()
    port_dir = runtime / "ports" / port
    groups = (
        ("app", tuple(sorted((app_dir / "src").glob("*.c")))),
        ("model", tuple(sorted((model / "codegen" / "host" / "src").glob("*.c")))),
        ("core", tuple(sorted((runtime / "src").glob("*.c")))),
        ("port", tuple(sorted(port_dir.glob("*.c")))),
    )
    for name, srcs in groups:
        if not srcs:
            where = {"app": app_dir / "src", "model": model / "codegen/host/src",
                     "core": runtime / "src", "port": port_dir}[name]
            raise BuildError(f"no C sources in {where} ({name} of {app_dir.name})",
                             hint="re-render the app ('pemesh compile --force') or check the "
                                  "pemesh installation")
    includes = (app_dir / "src", model / "codegen" / "host" / "include", runtime / "include",
                port_dir)
    ld = None
    if port != "host":
        lds = sorted(port_dir.glob("*.ld"))
        if not lds:
            raise BuildError(f"no linker script in {port_dir}", hint="check the pemesh installation")
        ld = lds[0]
    return SourceSet(groups, includes, ld)


# --- command formation -----------------------------------------------------------------------

def spec_defines(spec: AppSpec) -> tuple[str, ...]:
    """The -D flags a bare-metal or host build takes from the app (what Kconfig sets from
    prj.conf in a Zephyr build): the host protocol and the app's compile definitions."""
    proto = ("-DCONFIG_PEMESH_HOST_PROTOCOL_EEMBC=1",) if spec.host_protocol == "eembc" else ()
    return (*proto, *(f"-D{d}" for d in spec.defines))


def reproducible_flags(app_dir: Path) -> tuple[str, ...]:
    """Flags that keep the app's own folder out of the objects (debug info, ``__FILE__``).

    Compiles run in the app folder and map it to ``.``, so PEs of one stage (apps
    ``pes/<pe>/`` that differ only in ``src/pe_config.c``'s data) give byte-identical images
    apart from ``.pemesh_config`` — what stamping relies on. Debuggers find the app's sources
    relative to the app folder; model and runtime paths stay absolute (shared by the stage).
    """
    return (f"-ffile-prefix-map={Path(app_dir).resolve()}=.",)


def _object_path(build_dir: Path, group: str, src: Path) -> Path:
    return build_dir / "obj" / group / (src.stem + ".o")


def gcc_commands(sources: SourceSet, build_dir: Path, *, cc: str, cflags: Sequence[str],
                 ldflags: Sequence[str], output: Path,
                 defines: Sequence[str] = ()) -> tuple[list[tuple[str, ...]], tuple[str, ...]]:
    """Form the compile command of every source and the link command (not run here)."""
    inc = [f"-I{d}" for d in sources.include_dirs]
    compiles = []
    objects = []
    for group, src in sources.all_sources():
        obj = _object_path(build_dir, group, src)
        warn = list(WARN_FLAGS) + ([] if group == "model" else list(STRICT_FLAGS))
        opt = list(MODEL_OPT_FLAGS) if group == "model" else []   # after cflags: it wins
        compiles.append((cc, *cflags, *opt, *warn, *defines, *inc, "-c", str(src), "-o",
                         str(obj)))
        objects.append(str(obj))
    ld = [f"-T{sources.linker_script}"] if sources.linker_script else []
    link = (cc, *cflags, *ld, *ldflags, f"-Wl,-Map={output.with_suffix('.map')}",
            *objects, *LIBS, "-o", str(output))
    return compiles, link


def west_build_command(app_dir: Path, build_dir: Path, board: str, *,
                       west: str | Sequence[str] = "west", runtime: Path | None = None,
                       sysbuild: bool = False) -> tuple[str, ...]:
    """The ``west build`` line for one app (:func:`generator.firmware.zephyr.west_build_command`:
    ``--no-sysbuild``, the runtime as an extra Zephyr module)."""
    return zephyr.west_build_command(app_dir, build_dir, board, west=west,
                                     runtime=Path(runtime or default_runtime_dir()),
                                     sysbuild=sysbuild)


# --- running commands ------------------------------------------------------------------------

def _run(cmd: Sequence[str], *, cwd: Path | None = None, what: str) -> None:
    log.debug("run: %s", shlex.join(cmd))
    try:
        proc = subprocess.run(list(cmd), cwd=str(cwd) if cwd else None, capture_output=True,
                              text=True, check=False)
    except OSError as err:
        raise ToolchainError(f"cannot run {cmd[0]}: {err}", hint="check the toolchain") from None
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
        raise BuildError(f"{what} failed (exit {proc.returncode}):\n  {shlex.join(cmd)}\n{tail}",
                         hint="rerun with -vv to see every command line")
    if proc.stderr.strip():
        log.debug("%s: %s", what, proc.stderr.strip())


def _run_parallel(cmds: Sequence[Sequence[str]], jobs: int | None, what: str,
                  cwd: Path | None = None) -> None:
    jobs = max(1, jobs or os.cpu_count() or 1)
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(_run, c, cwd=cwd,
                               what=f"{what} {Path(c[c.index('-c') + 1]).name}")
                   for c in cmds]
        errors = []
        for fut in futures:
            try:
                fut.result()
            except BuildError as err:
                errors.append(err)
        if errors:
            raise errors[0]


def check_fits(sizes: ImageSizes, board: str, what: str, limits: Limits | None = None) -> None:
    """Raise DoesNotFitError (with the numbers) when an image exceeds its PE's flash or RAM."""
    over = fit_problems(sizes, board, limits)
    if over:
        raise DoesNotFitError(f"{what} does not fit: " + "; ".join(over),
                              hint="split the model over more PEs (--max-pes) or use a bigger PE")


# --- backends --------------------------------------------------------------------------------

def choose_backend(requested: str, board: str, *,
                   env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """Return (backend, reason). ``auto``: west when a Zephyr workspace exists, else baremetal
    for QEMU boards."""
    if requested != "auto":
        if requested not in BACKENDS:
            raise UsageError(f"unknown backend '{requested}'",
                             hint=f"use one of auto, {', '.join(BACKENDS)}")
        return requested, "requested"
    ws = find_zephyr_workspace(env=env)
    if ws is not None:
        return "west", f"Zephyr workspace {ws.zephyr_base} (from {ws.how})"
    port = qemu_port(board)
    if port is not None:
        return "baremetal", (f"no Zephyr workspace found (ZEPHYR_BASE unset, no west topdir); "
                             f"{board} runs on QEMU through the {port} port")
    raise ToolchainError(
        f"no Zephyr workspace found, and board '{board}' has no bare-metal port",
        hint="set ZEPHYR_BASE or run inside a west workspace, or use --backend host")


def resolve_backend(requested: str, board: str, *, env: Mapping[str, str] | None = None) -> str:
    """The backend ``requested`` stands for (see :func:`choose_backend`); logs the choice."""
    backend, reason = choose_backend(requested, board, env=env)
    log.info("build backend: %s (%s)", backend, reason)
    return backend


def build_app(app_dir: Path, build_dir: Path, backend: str, *, jobs: int | None = None,
              limits: Limits | None = None, runtime: Path | None = None,
              env: Mapping[str, str] | None = None,
              west_cmd: str | Sequence[str] | None = None) -> BuildResult:
    """Build one PE app into ``build_dir`` and return its image, sizes and command lines.

    ``west_cmd``: the west command line for the west backend (default: west on PATH).

    ``limits`` defaults to the board's known flash/RAM (qemu_cortex_m3: 256 KiB / 64 KiB);
    exceeding them raises DoesNotFitError. The host backend has no limits.
    """
    app_dir = Path(app_dir).resolve()
    build_dir = Path(build_dir).resolve()
    spec = load_app_spec(app_dir)
    backend = resolve_backend(backend, spec.board, env=env)
    build_dir.mkdir(parents=True, exist_ok=True)
    if backend == "west":
        result = _build_west(app_dir, build_dir, spec, runtime, env, west_cmd)
    elif backend == "baremetal":
        result = _build_baremetal(app_dir, build_dir, spec, runtime, jobs, env)
    else:
        result = _build_host(app_dir, build_dir, spec, runtime, jobs, env)
    (build_dir / "commands.txt").write_text(
        "".join(shlex.join(c) + "\n" for c in result.commands))
    if backend != "host":
        check_fits(result.sizes, spec.board, f"image of {spec.pe_name} ({spec.board})", limits)
    log.info("built %s: %s (flash %d B, ram %d B)", spec.pe_name, result.image,
             result.sizes.flash, result.sizes.ram)
    return result


def _build_baremetal(app_dir: Path, build_dir: Path, spec: AppSpec, runtime: Path | None,
                     jobs: int | None, env: Mapping[str, str] | None) -> BuildResult:
    tools = find_arm_toolchain(env=env)
    port = qemu_port(spec.board)
    if port is None:
        port = "lm3s6965"
        log.warning("board %s is not emulated by QEMU; building it with the %s port (the "
                    "image runs on QEMU's lm3s6965evb)", spec.board, port)
    sources = app_sources(app_dir, port, runtime=runtime)
    elf = build_dir / "fw.elf"
    binf = build_dir / "fw.bin"
    compiles, link = gcc_commands(sources, build_dir, cc=str(tools.gcc),
                                  cflags=(*_port_cflags(port), *reproducible_flags(app_dir)),
                                  ldflags=ARM_LDFLAGS, output=elf,
                                  defines=(f"-DPEMESH_PORT_{port.upper()}=1",
                                           *spec_defines(spec)))
    _compile_and_link(compiles, link, jobs, cwd=app_dir)
    objcopy = (str(tools.objcopy), "-O", "binary", str(elf), str(binf))
    _run(objcopy, what="objcopy")
    return BuildResult("baremetal", app_dir, elf, binf, elf_sizes(elf),
                       (*compiles, link, objcopy), spec.board)


def _port_cflags(port: str) -> tuple[str, ...]:
    cpu = PORT_CPU_FLAGS.get(port)
    if cpu is None:
        return ARM_CFLAGS
    return (*cpu, *(f for f in ARM_CFLAGS if not f.startswith("-mcpu=")))


def _build_host(app_dir: Path, build_dir: Path, spec: AppSpec, runtime: Path | None,
                jobs: int | None, env: Mapping[str, str] | None) -> BuildResult:
    cc = find_host_cc(env=env)
    sources = app_sources(app_dir, "host", runtime=runtime)
    exe = build_dir / "pe"
    compiles, link = gcc_commands(sources, build_dir, cc=str(cc),
                                  cflags=(*HOST_CFLAGS, *reproducible_flags(app_dir)),
                                  ldflags=HOST_LDFLAGS, output=exe,
                                  defines=("-DPEMESH_PORT_HOST=1", *spec_defines(spec)))
    _compile_and_link(compiles, link, jobs, cwd=app_dir)
    return BuildResult("host", app_dir, exe, None, elf_sizes(exe), (*compiles, link), spec.board)


def _compile_and_link(compiles: list[tuple[str, ...]], link: tuple[str, ...],
                      jobs: int | None, cwd: Path | None = None) -> None:
    from generator.firmware import objcache

    for c in compiles:
        Path(c[-1]).parent.mkdir(parents=True, exist_ok=True)
    run, fill = objcache.split(compiles, cwd)
    _run_parallel(run, jobs, "compile", cwd=cwd)
    objcache.remember(fill)
    _run(link, cwd=cwd, what="link")


def _build_west(app_dir: Path, build_dir: Path, spec: AppSpec, runtime: Path | None,
                env: Mapping[str, str] | None,
                west_cmd: str | Sequence[str] | None = None) -> BuildResult:
    """West in a west workspace; CMake + Ninja for a bare ZEPHYR_BASE (generator.firmware.zephyr)."""
    ws = find_zephyr_workspace(env=env)
    if ws is None:
        raise ToolchainError(
            "no Zephyr workspace found (ZEPHYR_BASE unset or not a Zephyr tree, and "
            "'west topdir' found none): cannot run west build",
            hint="set ZEPHYR_BASE to a Zephyr tree, or use --backend baremetal or host")
    run_env = dict(env if env is not None else os.environ)
    run_env.setdefault("ZEPHYR_BASE", str(ws.zephyr_base))
    topdir = ws.topdir or zephyr.west_topdir_of(ws.zephyr_base)
    if west_cmd:
        west: str | Sequence[str] = west_cmd
    else:  # west is only run in a workspace; a bare ZEPHYR_BASE needs none
        west = (str(find_west(env=env)),) if topdir else ("west",)
    plan = zephyr.zephyr_build_plan(app_dir, build_dir, spec.board, zephyr_base=ws.zephyr_base,
                                    topdir=topdir,
                                    runtime=Path(runtime or default_runtime_dir()),
                                    west=west, env=run_env)
    if plan.how == "cmake":
        missing = [t for t in ("cmake", "ninja") if shutil.which(t, path=run_env.get("PATH"))
                   is None]
        if missing:
            raise ToolchainError(
                f"ZEPHYR_BASE={ws.zephyr_base} is a bare Zephyr clone (no west workspace "
                f"around it) and {', '.join(missing)} is missing to build it with CMake",
                hint="install cmake and ninja-build, or make a west workspace "
                     "('west init -l zephyr && west update'), or use --backend baremetal")
        log.info("ZEPHYR_BASE %s has no west workspace: building with cmake + ninja",
                 ws.zephyr_base)
    for cmd in plan.commands:
        log.debug("run: %s", shlex.join(cmd))
        try:
            proc = subprocess.run(list(cmd), env=run_env, capture_output=True, text=True,
                                  check=False, cwd=str(plan.cwd) if plan.cwd else None)
        except OSError as err:
            raise ToolchainError(f"cannot run {cmd[0]}: {err}",
                                 hint="check west_cmd / PATH") from None
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-40:])
            raise BuildError(f"{plan.how} build of {spec.pe_name} failed (exit "
                             f"{proc.returncode}):\n{tail}",
                             hint=f"rerun by hand: {shlex.join(cmd)}")
    elf = plan.elf
    if not elf.is_file():
        sysbuild_elf = zephyr.zephyr_elf(build_dir, app_dir, sysbuild=True)
        if sysbuild_elf.is_file():
            elf = sysbuild_elf  # a sysbuild that ignored --no-sysbuild (an old west)
        else:
            raise BuildError(f"{plan.how} build succeeded but {elf} is missing",
                             hint="check the app's CMakeLists.txt")
    binf = elf.with_suffix(".bin")
    return BuildResult("west", app_dir, elf, binf if binf.is_file() else None, elf_sizes(elf),
                       plan.commands, spec.board)
