"""pemesh's microTVM Project API server: template project and, copied in, generated project.

A client (pemesh's ``generator.project_api.client``, or TVM ≤0.18's ``tvm.micro`` / ``tvmc micro``)
starts this script as ``python microtvm_api_server.py --read-fd R --write-fd W`` with cwd = this
directory. It is a template while no ``model.tar`` sits beside it; ``generate_project`` makes a
project folder holding the MLF (``model.tar``, unpacked into ``model/``), the PE app rendered by
``generator.firmware.render.render_pe_app`` (one PE, host-link framing of docs/CONTRACTS.md §1) and a copy
of this script, which then serves build / flash / open_transport for that project.

This script imports the protocol and the build/run stages from the ``generator`` package, so it
needs pemesh importable by the Python that runs it (pemesh's client puts its own checkout on
PYTHONPATH; any other client needs ``pip install pemesh`` in the same environment). It does no work
at import time beyond those imports and logs to stderr only.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

try:
    from generator.project_api.protocol import (IoTimeoutError, ProjectOption, ServerError,
                                                ServerInfo, TransportClosedError,
                                                TransportTimeouts, UnsupportedTVMVersionError,
                                                check_option_value, coerce_option_value)
    from generator.project_api.server import ProjectAPIHandler, main
except ImportError as _exc:  # pragma: no cover - depends on the environment
    sys.stderr.write(
        f"microtvm_api_server.py: cannot import pemesh's 'generator' package ({_exc}).\n"
        f"  hint: run this server with the Python where pemesh is installed "
        f"(pip install pemesh), or put the pemesh checkout on PYTHONPATH.\n")
    sys.exit(2)

log = logging.getLogger("pemesh.project_api.template")

SERVER_DIR = Path(__file__).resolve().parent
MODEL_TAR = "model.tar"
MODEL_DIR = "model"
BUILD_DIR = "build"
BUILD_RECORD = "microtvm_build.json"
#: the options generate_project was given, kept for every later call (build, flash, …)
OPTIONS_RECORD = "microtvm_options.json"
LAUNCHER = "launch_microtvm_api_server.sh"
PLATFORM_NAME = "pemesh"
#: the oldest TVM with the Project API (protocol 1)
MIN_TVM_VERSION = (0, 8)

_ALL = ("generate_project", "build", "flash", "open_transport")

#: project_type → the PE's host protocol (None: refused, see _HOST_DRIVEN)
PROJECT_TYPES = ("pe_app", "aot_standalone_demo", "mlperftiny", "host_driven")
_HOST_PROTOCOL = {"pe_app": "pemesh", "aot_standalone_demo": "pemesh", "mlperftiny": "eembc"}
_HOST_DRIVEN = ("project_type host_driven needs TVM's RPC server and C runtime (CRT) on the "
                "device, and a pemesh PE has neither (TVM >= 0.19 has no CRT at all): use "
                "project_type=aot_standalone_demo (or pe_app) and run inferences with 'pemesh "
                "micro run' / generator.project_api.inference.run_inference, or "
                "project_type=mlperftiny for the MLPerf Tiny runner")

PROJECT_OPTIONS: tuple[ProjectOption, ...] = (
    ProjectOption("project_type", "str", default="pe_app", choices=PROJECT_TYPES,
                  required=("generate_project",),
                  help="Kind of project: 'pe_app' or 'aot_standalone_demo' = one pemesh PE "
                       "app speaking pemesh's host-link frames on UART0; 'mlperftiny' = the "
                       "same app speaking the EEMBC / MLPerf Tiny DUT protocol (the MLPerf Tiny "
                       "runner drives it); 'host_driven' is refused (no TVM RPC/CRT on a PE)."),
    ProjectOption("board", "str", default="qemu_cortex_m3", required=("generate_project",),
                  help="Zephyr board of the PE (qemu_cortex_m3 runs on QEMU without Zephyr)."),
    ProjectOption("build_backend", "str", default="auto",
                  choices=("auto", "west", "baremetal", "host"),
                  optional=("build",),
                  help="auto: west when a Zephyr workspace is found, else baremetal for QEMU "
                       "boards; host builds the PE as a Linux process."),
    ProjectOption("west_cmd", "str", default="west", optional=("build", "flash"),
                  help="The west command line, split like a shell ('west', "
                       "'python3 -m west', a path)."),
    ProjectOption("zephyr_base", "str", default=os.environ.get("ZEPHYR_BASE"),
                  optional=("build", "flash"),
                  help="Path to the zephyr tree (default: $ZEPHYR_BASE)."),
    ProjectOption("config_main_stack_size", "int", default=2048, optional=("generate_project",),
                  help="Main thread stack size in bytes (CONFIG_MAIN_STACK_SIZE)."),
    ProjectOption("workspace_size_bytes", "int", default=None, optional=("generate_project",),
                  help="Arena bytes for the model; default and minimum: what the MLF's "
                       "metadata.json asks for."),
    ProjectOption("serial_port", "str", default=None, optional=("flash", "open_transport"),
                  help="Serial port of a real board's UART0 (e.g. /dev/ttyACM0); unset for QEMU."),
    ProjectOption("serial_number", "str", default=None, optional=("flash",),
                  help="Probe serial number passed to 'west flash --dev-id'."),
    ProjectOption("extra_files_tar", "str", default=None, optional=("generate_project",),
                  help="A tar unpacked into the project after it is generated."),
    ProjectOption("compile_definitions", "str", default=None, optional=("generate_project",),
                  help="extra C definitions for every source of the project, NAME or "
                       "NAME=VALUE separated by commas or spaces (-D optional), or a list of "
                       "them as upstream's examples pass"),
    ProjectOption("cmsis_path", "str", default=None, optional=("generate_project", "build"),
                  help="Path to CMSIS: accepted for tvmc compatibility and ignored (pemesh's "
                       "kernels are TVM-generated C and the pemesh_accel_* wrappers)."),
    ProjectOption("arm_fvp_path", "str", default=None, optional=("build", "open_transport"),
                  help="Path to Arm's FVP: accepted for tvmc compatibility and ignored "
                       "(qemu_cortex_m3 runs on QEMU)."),
    ProjectOption("use_fvp", "bool", default=False, optional=_ALL,
                  help="Run on Arm's FVP: accepted for tvmc compatibility; pemesh boards run on "
                       "QEMU, so true is refused."),
    ProjectOption("gdbserver_port", "int", default=None, optional=("open_transport",),
                  help="QEMU boards: serve QEMU's gdb stub on this localhost TCP port while the "
                       "transport is open (target remote :PORT)"),
    ProjectOption("verbose", "bool", default=False, optional=("generate_project", "build", "flash"),
                  help="Log every step and command line (DEBUG)."),
    ProjectOption("warning_as_error", "bool", default=False, optional=("generate_project",),
                  help="Fail generate_project on any warning (e.g. MLF tensors without shape)."),
)

#: (retry, start, established) seconds reported by open_transport
QEMU_TIMEOUTS = TransportTimeouts(2.0, 10.0, 10.0)
SERIAL_TIMEOUTS = TransportTimeouts(2.0, 5.0, 5.0)


def _tvm_version_tuple(version: str) -> tuple[int, int] | None:
    m = re.match(r"^\s*v?(\d+)\.(\d+)", version)
    return (int(m.group(1)), int(m.group(2))) if m else None


def read_mlf_io(model_dir: Path) -> dict[str, Any]:
    """Model name, workspace and I/O TensorSpecs from an unpacked MLF v7 (PROJECT_API.md).

    Returns ``{"name", "workspace", "inputs", "outputs", "warnings"}``. Tensors without ``shape``
    (as TVM wrote them) become 1-D of ``size / itemsize`` elements, with a warning.
    """
    import numpy as np

    from generator.types import TensorSpec

    meta_path = model_dir / "metadata.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise ServerError(f"generate_project: cannot read {meta_path}: {exc}") from None
    warnings: list[str] = []
    if meta.get("version") != 7:
        warnings.append(f"MLF version {meta.get('version')!r}, this server knows 7")
    modules = meta.get("modules") or {}
    if len(modules) != 1:
        raise ServerError(f"generate_project: the MLF holds {len(modules)} modules "
                          f"({', '.join(modules)}); want exactly one")
    (mod_name, mod), = modules.items()
    try:
        main_fn = mod["memory"]["functions"]["main"][0]
    except (KeyError, IndexError, TypeError):
        raise ServerError("generate_project: metadata.json has no memory.functions.main[0]") \
            from None

    def tensors(kind: str) -> tuple[TensorSpec, ...]:
        out = []
        for name, t in (main_fn.get(kind) or {}).items():
            dtype = str(t["dtype"])
            if "shape" in t:
                shape = tuple(int(d) for d in t["shape"])
            else:
                shape = (int(t["size"]) // np.dtype(dtype).itemsize,)
                warnings.append(f"{kind[:-1]} {name} has no shape; using {shape}")
            spec = TensorSpec(name, shape, dtype)
            if "size" in t and int(t["size"]) != spec.nbytes:
                raise ServerError(f"generate_project: {kind[:-1]} {name}: size {t['size']} != "
                                  f"shape {shape} x {dtype}")
            out.append(spec)
        return tuple(out)

    name = mod.get("model_name", mod_name)
    order = mod.get("pemesh") or {}

    def ordered(kind: str) -> tuple[TensorSpec, ...]:
        specs = tensors(kind)
        names = order.get(f"{kind[:-1]}_order")        # pemesh's MLF records the stream order
        if names and sorted(names) == sorted(s.name for s in specs):
            by_name = {s.name: s for s in specs}
            return tuple(by_name[n] for n in names)
        return _header_order(model_dir, name, kind, specs, warnings)

    inputs, outputs = ordered("inputs"), ordered("outputs")
    return {"name": name, "workspace": int(main_fn.get("workspace_size_bytes", 0)),
            "inputs": inputs, "outputs": outputs, "warnings": warnings}


def _header_order(model_dir: Path, name: str, kind: str, specs: tuple, warnings: list[str]):
    """``specs`` in the field order of ``struct tvmgen_<name>_<kind>`` (metadata.json's dicts
    are written with sorted keys, so only the AOT header knows the real order)."""
    header = model_dir / "codegen" / "host" / "include" / f"tvmgen_{name}.h"
    try:
        text = header.read_text()
    except OSError:
        warnings.append(f"{header.name} not found; {kind} kept in metadata.json order")
        return specs
    m = re.search(rf"struct\s+tvmgen_{re.escape(name)}_{kind}\s*{{(.*?)}}", text, re.S)
    fields = re.findall(r"void\s*\*\s*(\w+)\s*;", m.group(1)) if m else []
    by_c = {s.c_name: s for s in specs}
    if sorted(fields) != sorted(by_c):
        warnings.append(f"{header.name}: struct tvmgen_{name}_{kind} fields {fields} do not match "
                        f"metadata.json {sorted(by_c)}; kept metadata.json order")
        return specs
    return tuple(by_c[f] for f in fields)


def _west_argv(west_cmd: str) -> tuple[str, ...]:
    """The west_cmd option as argv (a command line, split like a shell, as upstream does)."""
    from generator.firmware.zephyr import west_argv

    try:
        return west_argv(west_cmd)
    except ValueError as exc:
        raise ServerError(f"west_cmd {west_cmd!r}: {exc}") from None


def _check_board(board: str) -> str:
    """The Zephyr board for ``board``: a PE kind's Zephyr board (or a PE kind's name, which
    stands for its board). ServerError naming the boards pemesh has PE kinds for otherwise."""
    from generator.boards.catalog import list_boards

    kinds = list_boards().pe_kinds
    boards = sorted({k.zephyr_board for k in kinds if k.zephyr_board})
    if board in boards:
        return board
    for kind in kinds:
        if kind.name == board and kind.zephyr_board:
            return kind.zephyr_board
    raise ServerError(f"generate_project: board {board!r} is not a pemesh PE kind's board; "
                      f"known: {', '.join(boards)} (PE kinds: "
                      f"{', '.join(k.name for k in kinds)}). Add boards/pe/<kind>.yaml for a new "
                      "board")


def write_launcher(path: Path) -> None:
    """``launch_microtvm_api_server.sh``: runs the project's server with the Python (and the
    pemesh checkout on PYTHONPATH) that generated it, so a client in another Python — TVM
    0.18's client runs ``launch_microtvm_api_server.sh microtvm_api_server.py --read-fd R
    --write-fd W`` when the script exists — still reaches a server that can import pemesh.
    ``PEMESH_PYTHON`` overrides the interpreter."""
    import shlex

    import generator

    root = Path(generator.__file__).resolve().parent.parent
    path.write_text(
        "#!/bin/sh\n"
        "# generated by pemesh — do not edit\n"
        "# Starts microtvm_api_server.py with the Python that has pemesh: the Project API\n"
        "# client runs: launch_microtvm_api_server.sh microtvm_api_server.py --read-fd R "
        "--write-fd W\n"
        f"PEMESH_PYTHON=\"${{PEMESH_PYTHON:-{shlex.quote(sys.executable)}}}\"\n"
        f"PYTHONPATH={shlex.quote(str(root))}${{PYTHONPATH:+:$PYTHONPATH}}\n"
        "export PYTHONPATH\n"
        'exec "$PEMESH_PYTHON" "$@"\n', encoding="utf-8")
    path.chmod(0o755)


class PemeshProjectHandler(ProjectAPIHandler):
    """Serves the project (or template) in ``project_dir`` (default: this script's folder)."""

    def __init__(self, project_dir: Path | None = None):
        self.project_dir = Path(project_dir or SERVER_DIR).resolve()
        self._serial: Any = None       # serial.Serial while the transport is open
        self._process: Any = None      # generator.mesh.launch.PeProcess for QEMU / host PEs

    # --- helpers --------------------------------------------------------------------------
    @property
    def is_template(self) -> bool:
        return not (self.project_dir / MODEL_TAR).is_file()

    def _stored_options(self) -> dict[str, Any]:
        """What generate_project was given (empty in a template or an older project)."""
        try:
            return json.loads((self.project_dir / OPTIONS_RECORD).read_text())
        except (OSError, ValueError):
            return {}

    def _options(self, method: str, given: dict[str, Any]) -> dict[str, Any]:
        """Defaults filled in, values converted to their declared types (tvmc passes strings),
        required ones present (an old client may send few).

        A generated project keeps the options generate_project was given: a later call's value
        wins unless it equals the option's default (clients such as pemesh's fill every option
        with its default), so ``create-project -x build_backend=west`` builds with west.
        """
        by_name = {o.name: o for o in PROJECT_OPTIONS}
        unknown = sorted(set(given) - set(by_name))
        if unknown:
            raise ServerError(f"{method}: unknown option(s) {', '.join(unknown)}; "
                              f"known: {', '.join(sorted(by_name))}")
        stored = {} if self.is_template else self._stored_options()
        out = {}
        for name, opt in by_name.items():
            value = given.get(name, opt.default)
            if name in stored and (name not in given or value == opt.default):
                value = stored[name]
            if name == "compile_definitions" and isinstance(value, (list, tuple)):
                value = " ".join(str(v) for v in value)
            if value is not None:
                try:
                    value = coerce_option_value(opt, value)
                    check_option_value(opt, value)
                except ValueError as exc:
                    raise ServerError(f"{method}: {exc}") from None
            elif method in (opt.required or ()):
                raise ServerError(f"{method}: option {name} is required ({opt.help})")
            out[name] = value
        if out["verbose"]:
            logging.getLogger("generator").setLevel(logging.DEBUG)
            log.setLevel(logging.DEBUG)
        self._notes(method, out)
        return out

    @staticmethod
    def _notes(method: str, opts: dict[str, Any]) -> None:
        """Options accepted for compatibility that pemesh does not use."""
        if opts["use_fvp"]:
            raise ServerError(f"{method}: use_fvp=true: pemesh runs its boards on QEMU, not on "
                              "Arm's FVP; leave use_fvp false (qemu_cortex_m3 needs no FVP)")
        for name in ("cmsis_path", "arm_fvp_path"):
            if opts[name]:
                log.info("%s: option %s=%s is ignored (%s)", method, name, opts[name],
                         "pemesh needs no CMSIS" if name == "cmsis_path" else "no FVP is used")

    def _build_result(self, method: str):
        from generator.firmware.build import BuildResult

        record = self.project_dir / BUILD_DIR / BUILD_RECORD
        if self.is_template:
            raise ServerError(f"{method}: this is the template, not a generated project")
        try:
            return BuildResult.from_json(json.loads(record.read_text()), self.project_dir)
        except FileNotFoundError:
            raise ServerError(f"{method}: the project is not built ({record} is missing); "
                              "call build first") from None

    # --- methods --------------------------------------------------------------------------
    def server_info_query(self, tvm_version: str) -> ServerInfo:
        version = _tvm_version_tuple(tvm_version)
        if version is not None and version < MIN_TVM_VERSION:
            raise UnsupportedTVMVersionError(
                f"TVM {tvm_version} predates the Project API (need >= 0.8)")
        mlf = "" if self.is_template else str(self.project_dir / MODEL_TAR)
        return ServerInfo(PLATFORM_NAME, self.is_template, mlf, PROJECT_OPTIONS)

    def generate_project(self, model_library_format_path: Path, standalone_crt_dir: Path | None,
                         project_dir: Path, options: dict) -> None:
        opts = self._options("generate_project", options)
        if opts["project_type"] == "host_driven":
            raise ServerError(f"generate_project: {_HOST_DRIVEN}")
        opts["board"] = _check_board(opts["board"])
        project_dir = project_dir.resolve()
        if project_dir.exists():
            raise ServerError(f"generate_project: {project_dir} already exists; "
                              "give a new directory")
        if not model_library_format_path.is_file():
            raise ServerError(f"generate_project: no MLF tar at {model_library_format_path}")
        if standalone_crt_dir is not None:
            log.debug("standalone_crt_dir %s ignored: pemesh apps need no CRT", standalone_crt_dir)
        project_dir.mkdir(parents=True)
        try:
            self._generate(model_library_format_path, project_dir, opts)
        except BaseException:
            shutil.rmtree(project_dir, ignore_errors=True)
            raise
        log.info("generated %s", project_dir)

    def _generate(self, mlf: Path, project_dir: Path, opts: dict[str, Any]) -> None:
        from generator.firmware.render import render_pe_app
        from generator.types import AppSpec

        shutil.copy2(mlf, project_dir / MODEL_TAR)
        model_dir = project_dir / MODEL_DIR
        with tarfile.open(project_dir / MODEL_TAR) as tar:
            tar.extractall(model_dir, filter="data")
        io = read_mlf_io(model_dir)
        workspace = io["workspace"]
        if opts["workspace_size_bytes"] is not None:
            if opts["workspace_size_bytes"] < workspace:
                raise ServerError(f"generate_project: workspace_size_bytes "
                                  f"{opts['workspace_size_bytes']} < {workspace} bytes the model "
                                  "needs (metadata.json)")
            workspace = opts["workspace_size_bytes"]
        for warning in io["warnings"]:
            if opts["warning_as_error"]:
                raise ServerError(f"generate_project: {warning} (warning_as_error is set)")
            log.warning("%s", warning)
        defines = tuple(d for d in re.split(r"[\s,;]+", opts["compile_definitions"] or "") if d)
        defines = tuple(d[2:] if d.startswith("-D") else d for d in defines)
        spec = AppSpec(pe_name=project_dir.name, pe_id=0, board=opts["board"], stage=io["name"],
                       inputs=io["inputs"], outputs=io["outputs"], workspace_size=workspace,
                       model_dir=MODEL_DIR, main_stack_size=opts["config_main_stack_size"],
                       defines=defines, host_protocol=_HOST_PROTOCOL[opts["project_type"]],
                       model_name=io["name"])
        render_pe_app(spec, project_dir)
        if opts["extra_files_tar"]:
            with tarfile.open(opts["extra_files_tar"]) as tar:
                tar.extractall(project_dir, filter="data")
        shutil.copy2(Path(__file__).resolve(), project_dir / "microtvm_api_server.py")
        write_launcher(project_dir / LAUNCHER)
        kept = {k: v for k, v in opts.items() if v is not None}
        (project_dir / OPTIONS_RECORD).write_text(json.dumps(kept, indent=2, sort_keys=True)
                                                  + "\n")

    def build(self, options: dict) -> None:
        from generator.firmware.build import build_app

        opts = self._options("build", options)
        if self.is_template:
            raise ServerError("build: this is the template; call generate_project first")
        result = build_app(self.project_dir, self.project_dir / BUILD_DIR, opts["build_backend"],
                           env=self._env(opts), west_cmd=_west_argv(opts["west_cmd"]))
        record = self.project_dir / BUILD_DIR / BUILD_RECORD
        record.write_text(json.dumps(result.to_json(self.project_dir), indent=2,
                                     sort_keys=True) + "\n")

    @staticmethod
    def _env(opts: dict[str, Any]) -> dict[str, str]:
        env = dict(os.environ)
        if opts["zephyr_base"]:
            env["ZEPHYR_BASE"] = opts["zephyr_base"]
        return env

    def flash(self, options: dict) -> None:
        from generator.firmware.build import QEMU_BOARD_PORTS
        from generator.firmware.toolchain import find_qemu

        opts = self._options("flash", options)
        result = self._build_result("flash")
        if not result.image.is_file():
            raise ServerError(f"flash: the image {result.image} is missing; build again")
        if result.backend == "host":
            return
        if result.board in QEMU_BOARD_PORTS or result.board.startswith("qemu_"):
            find_qemu()     # raises with the apt line if QEMU is missing
            return
        cmd = [*_west_argv(opts["west_cmd"]), "flash", "-d", str(self.project_dir / BUILD_DIR)]
        if opts["serial_number"]:
            cmd += ["--dev-id", opts["serial_number"]]
        log.info("flash: %s", " ".join(cmd))
        proc = subprocess.run(cmd, cwd=self.project_dir, env=self._env(opts),
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise ServerError(f"flash: {' '.join(cmd)} failed (exit {proc.returncode}): "
                              f"{(proc.stdout + proc.stderr).strip()[-2000:]}")

    def open_transport(self, options: dict) -> TransportTimeouts:
        import serial

        opts = self._options("open_transport", options)
        self.close_transport()
        if opts["serial_port"]:
            port, timeouts = opts["serial_port"], SERIAL_TIMEOUTS
        else:
            from generator.mesh.launch import launch

            result = self._build_result("open_transport")
            if not (result.runs_on_qemu or result.backend == "host"):
                raise ServerError(f"open_transport: board {result.board} is real hardware; "
                                  "set the serial_port option")
            gdb = opts.get("gdbserver_port")
            if gdb is not None and not result.runs_on_qemu:
                raise ServerError("open_transport: gdbserver_port is for QEMU boards; attach "
                                  "your debugger to the board's own probe")
            self._process = launch(result, log_dir=self.project_dir / BUILD_DIR / "logs",
                                   gdb_port=gdb)
            port, timeouts = str(self._process.serial_path), QEMU_TIMEOUTS
        try:
            self._serial = serial.Serial(port, baudrate=115200, timeout=0)
        except (serial.SerialException, OSError) as exc:
            self.close_transport()
            raise ServerError(f"open_transport: cannot open {port}: {exc}") from None
        log.info("transport open on %s", port)
        return timeouts

    def close_transport(self) -> None:
        ser, proc = self._serial, self._process
        self._serial = self._process = None
        if ser is not None:
            try:
                ser.close()
            except Exception:  # noqa: BLE001 - closing anyway
                log.debug("closing the serial port failed", exc_info=True)
        if proc is not None:
            proc.close()

    def _port(self, method: str) -> Any:
        if self._serial is None:
            raise TransportClosedError(f"{method}: the transport is not open")
        return self._serial

    def _alive(self) -> bool:
        proc = self._process
        if proc is None:
            return True
        return bool(getattr(proc, "running", True))

    def read_transport(self, n: int, timeout_sec: float | None) -> bytes:
        import serial

        port = self._port("read_transport")
        try:
            port.timeout = timeout_sec
            data = port.read(1)
            if data and n > 1:
                waiting = port.in_waiting
                if waiting:
                    data += port.read(min(n - 1, waiting))
        except (serial.SerialException, OSError) as exc:
            self.close_transport()
            raise TransportClosedError(f"read_transport: {exc}") from None
        if not data:
            if not self._alive():
                self.close_transport()
                raise TransportClosedError("read_transport: the PE process exited")
            raise IoTimeoutError(f"read_transport: no data within {timeout_sec} s")
        return data

    def write_transport(self, data: bytes, timeout_sec: float | None) -> None:
        import serial

        port = self._port("write_transport")
        try:
            port.write_timeout = timeout_sec
            written = port.write(data)
            port.flush()
        except serial.SerialTimeoutException:
            raise IoTimeoutError(f"write_transport: {len(data)} bytes not written within "
                                 f"{timeout_sec} s") from None
        except (serial.SerialException, OSError) as exc:
            self.close_transport()
            raise TransportClosedError(f"write_transport: {exc}") from None
        if written is not None and written != len(data):
            raise IoTimeoutError(f"write_transport: wrote {written} of {len(data)} bytes")


if __name__ == "__main__":
    sys.exit(main(PemeshProjectHandler))
