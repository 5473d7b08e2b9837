"""The ``pemesh`` command line.

Commands are small classes with two hooks, ``add_arguments`` and ``run``, listed in one table
(``COMMANDS``). The stage modules are imported only when a command runs, so ``pemesh --help`` and
``pemesh boards`` stay fast (importing TVM takes seconds). Only :func:`main` turns
:class:`~generator.errors.PemeshError` into an exit code; library code never exits.

The names and meanings of commands and options are a contract (DESIGN.md, "CLI contract"):
others script against them.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Callable, Sequence

from generator import __version__
from generator.errors import PemeshError

log = logging.getLogger("pemesh")


def _checked(convert, ok, what: str):
    """An argparse type: ``convert(text)``, refused unless ``ok(value)``, naming ``what``."""
    def parse(text: str):
        try:
            v = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not ok(v):
            raise argparse.ArgumentTypeError(f"{text} is not {what}")
        return v
    parse.__name__ = what.replace(" ", "_")
    return parse


#: argparse types of the options with a range
_positive_int = _checked(int, lambda v: v >= 1, "a whole number of at least 1")
_rate = _checked(float, lambda v: 0.0 <= v <= 1.0, "a rate between 0 and 1")
_seconds = _checked(float, lambda v: v >= 0, "a duration (>= 0 s)")
_positive_seconds = _checked(float, lambda v: v > 0, "a duration > 0 s")


class Command:
    """One ``pemesh`` subcommand: its parser and the stage function that runs it."""

    name: str = ""
    help: str = ""
    #: "module:function" run with the parsed arguments; returns an exit code (0 on success)
    target: str = ""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add this command's options to its parser."""

    def run(self, args: argparse.Namespace) -> int:
        module_name, func_name = self.target.split(":")
        func: Callable[[argparse.Namespace], int] = getattr(
            importlib.import_module(module_name), func_name)
        return int(func(args) or 0)


class CompileCmd(Command):
    name = "compile"
    help = "compile a model (ONNX, TFLite, torch.export) for a board or mesh into OUT/"
    target = "generator.commands.compile:compile_command"

    def add_arguments(self, p):
        p.add_argument("model", help="model file: .onnx, .tflite, or .pt2 (torch.export)")
        p.add_argument("-o", "--out", required=True, help="output folder (a west workspace)")
        where = p.add_mutually_exclusive_group()
        where.add_argument("--board", default=None,
                           help="PE kind for a single-PE build (default: qemu_cortex_m3)")
        where.add_argument("--mesh", default=None,
                           help="mesh: a name from 'pemesh boards' or a mesh YAML file")
        p.add_argument("--max-pes", type=int, default=None, help="use at most N PEs")
        p.add_argument("--replicas", default="1",
                       help="copies of the pipeline over spare PEs: a number or 'max'")
        p.add_argument("--name", default=None,
                       help="C identifier for the model (default: from the file name)")
        p.add_argument("--input-shape", action="append", default=[], metavar="NAME:D0,D1,..",
                       help="fix the shape of a model input (for dynamic dims)")
        p.add_argument("--force", "-f", action="store_true", help="overwrite OUT if it exists")
        p.add_argument("--host-protocol", choices=["pemesh", "eembc"], default="pemesh",
                       help="what UART0 speaks: pemesh frames (pemesh run) or the EEMBC / "
                            "MLPerf Tiny DUT text protocol (on each replica's entry PE; talk "
                            "to it via 'pemesh serve')")


class BuildCmd(Command):
    name = "build"
    help = "build every PE image of OUT/"
    target = "generator.commands.build:build_command"

    def add_arguments(self, p):
        p.add_argument("out", help="folder written by 'pemesh compile'")
        p.add_argument("--backend", choices=["auto", "west", "baremetal", "host"], default="auto",
                       help="auto: west when a Zephyr workspace is found, else baremetal for "
                            "QEMU boards")
        p.add_argument("-j", "--jobs", type=_positive_int, default=None, help="parallel builds")


class RunCmd(Command):
    name = "run"
    help = "run the built mesh on QEMU or host processes, feed inputs, check outputs"
    target = "generator.commands.run:run_command"

    def add_arguments(self, p):
        p.add_argument("out", help="folder written by 'pemesh compile' and built")
        p.add_argument("--input", "-i", action="append", default=[],
                       help="input .npy (repeat for several model inputs), an .npz (by input "
                            "name), or a dataset: a folder of .npy files or an .npz/.npy with "
                            "a leading item axis (one inference per item); default: the "
                            "stored reference input")
        p.add_argument("--output", "-O", default=None,
                       help="write the output(s) of the last inference here (.npy/.npz; "
                            "a dataset's outputs stack along a leading axis)")
        p.add_argument("--platform", choices=["qemu", "host"], default="qemu")
        p.add_argument("--check", action="store_true",
                       help="compare with the anchor's output (TFLite Micro, onnxruntime or "
                            "torch; TVM only for a model made in memory); exit non-zero on "
                            "mismatch")
        p.add_argument("--count", type=_positive_int, default=1,
                       help="run K inferences (each input K times)")
        p.add_argument("--timeout", type=_positive_seconds, default=60.0,
                       help="seconds to wait for a PE before declaring it unresponsive")
        # mesh runs only (the fabric between the PEs)
        p.add_argument("--hop-delay", type=_seconds, default=0.0,
                       help="mesh: seconds the fabric delays a frame per hop")
        p.add_argument("--garbage-rate", type=_rate, default=0.0,
                       help="mesh: chance per frame of garbage bytes injected into a PE's link")
        p.add_argument("--bitflip-rate", type=_rate, default=0.0,
                       help="mesh: chance per TENSOR frame of a flipped bit on a PE's link")
        p.add_argument("--drop-rate", type=_rate, default=0.0,
                       help="mesh: chance per frame (any type, READY included) that the fabric "
                            "drops it")
        p.add_argument("--fault-seed", type=int, default=0,
                       help="mesh: seed of the injected faults")
        p.add_argument("--ranks", type=_positive_int, default=None, metavar="R",
                       help="split the mesh over R MPI ranks on this machine (starts mpirun; "
                            "on a cluster run 'mpirun -n R pemesh run' or 'srun' instead)")
        p.add_argument("--trace", default=None, metavar="T.json",
                       help="write a Chrome Trace Event file (open in Perfetto or "
                            "chrome://tracing): compute per PE, frames per link")


class ServeCmd(Command):
    name = "serve"
    help = "boot the PE or mesh of OUT/, print each host link's pty, run until Ctrl-C/SIGTERM"
    target = "generator.commands.serve:serve_command"

    def add_arguments(self, p):
        p.add_argument("out", help="folder written by 'pemesh compile' and built")
        p.add_argument("--platform", choices=["qemu", "host"], default="qemu")
        p.add_argument("--startup-timeout", type=float, default=30.0,
                       help="seconds to wait for every PE to open its links")
        p.add_argument("--no-icount", action="store_true",
                       help="QEMU: run without -icount (virtual time follows the host clock)")


class ReportCmd(Command):
    name = "report"
    help = "memory, flash and cycles per PE, and a picture of the mesh"
    target = "generator.commands.report:report_command"

    def add_arguments(self, p):
        p.add_argument("out")
        p.add_argument("--format", choices=["text", "json", "html"], default="text")


class BoardsCmd(Command):
    name = "boards"
    help = "list PE kinds and meshes"
    target = "generator.commands.boards:boards_command"

    def add_arguments(self, p):
        p.add_argument("--format", choices=["text", "json"], default="text")


class MicroCmd(Command):
    name = "micro"
    help = "the microTVM Project API flow: create-project, build, flash, run (tvmc micro style)"
    target = "generator.commands.micro:micro_command"

    def add_arguments(self, p):
        sub = p.add_subparsers(dest="micro_action", required=True, metavar="ACTION")
        opt_help = "project option NAME=VALUE (repeatable); see server_info_query"

        c = sub.add_parser("create-project", help="generate a project from an MLF tar")
        c.add_argument("project_dir")
        c.add_argument("mlf", help="Model Library Format tar (e.g. OUT/stages/<stage>/model.tar)")
        c.add_argument("--template-dir", default=None,
                       help="template project (default: pemesh's templates/project_api)")
        c.add_argument("--project-option", "-x", action="append", default=[], help=opt_help)
        c.add_argument("--force", "-f", action="store_true")

        for action, text in (("build", "build the project"), ("flash", "flash the project")):
            a = sub.add_parser(action, help=text)
            a.add_argument("project_dir")
            a.add_argument("--project-option", "-x", action="append", default=[], help=opt_help)

        r = sub.add_parser("run", help="open the transport and run inference(s)")
        r.add_argument("project_dir")
        r.add_argument("--input", "-i", action="append", default=[])
        r.add_argument("--output", "-O", default=None)
        r.add_argument("--check", action="store_true",
                       help="compare with the reference stored beside the MLF")
        r.add_argument("--reference", default=None,
                       help="folder with reference input/output .npy (default: from the project)")
        r.add_argument("--project-option", "-x", action="append", default=[], help=opt_help)


COMMANDS: tuple[Command, ...] = (
    CompileCmd(), BuildCmd(), RunCmd(), ServeCmd(), ReportCmd(), BoardsCmd(), MicroCmd(),
)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pemesh",
        description="Compile a neural network with Apache TVM for a mesh of PEs, "
                    "build one Zephyr app per PE, and run it on QEMU.")
    parser.add_argument("--version", action="version", version=f"pemesh {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more output (-v info, -vv debug)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for cmd in COMMANDS:
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        p.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                       help="more output")
        cmd.add_arguments(p)
        p.set_defaults(_command=cmd)
    return parser


def setup_logging(verbosity: int) -> None:
    """Warnings only by default; ``-v`` shows what each stage decides, ``-vv`` every command line."""
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    fmt = "%(levelname)s %(name)s: %(message)s" if verbosity >= 2 else "%(levelname)s: %(message)s"
    logging.basicConfig(level=logging.WARNING, format=fmt, stream=sys.stderr)
    for name in ("pemesh", "generator"):
        logging.getLogger(name).setLevel(level)


#: exit codes beside PemeshError's (errors.py): the README lists them all
EXIT_OS_ERROR = 10
EXIT_INTERNAL = 70
EXIT_BROKEN_PIPE = 141


def _silence_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so the interpreter's final flush is quiet."""
    import os
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # pragma: no cover - no real stdout (captured)
        pass


def _terminate_as_interrupt(signum, frame) -> None:  # noqa: ARG001 (signal handler API)
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    args._argv = list(sys.argv[1:] if argv is None else argv)
    setup_logging(args.verbose)
    # SIGTERM (a job runner's stop, `timeout`) cleans up like Ctrl-C: emulators, PE processes
    # and the fabric's socket folder go away in the commands' finally blocks
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    try:
        code = args._command.run(args)
        sys.stdout.flush()              # a closed pipe shows here, where it is handled
        return code
    except PemeshError as err:
        print(f"pemesh {args.command}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"pemesh {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`pemesh build OUT | head`): stop quietly, as other tools do
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except OSError as err:
        where = f" ({err.filename})" if getattr(err, "filename", None) else ""
        print(f"pemesh {args.command}: error: {err.strerror or err}{where}\n"
              "  hint: check the path and its permissions", file=sys.stderr)
        return EXIT_OS_ERROR
    except Exception as err:  # noqa: BLE001 - a pemesh bug: say so, without a wall of text
        if args.verbose >= 2:
            raise
        print(f"pemesh {args.command}: internal error: {type(err).__name__}: {err}\n"
              "  hint: a pemesh bug; re-run with -vv for the traceback and report it",
              file=sys.stderr)
        return EXIT_INTERNAL
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
