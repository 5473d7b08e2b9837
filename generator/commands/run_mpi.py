"""``pemesh run`` over MPI ranks: ``mpirun -n R pemesh run OUT …``, ``srun -n R pemesh run OUT …``
or ``pemesh run OUT --ranks R`` (which starts a local ``mpirun`` for you).

Every rank runs the same command. Each loads the plan, computes the same blocks
(:func:`generator.mesh.mpi.assign_blocks`) and checks that its block fits its host (memory, open
files: :func:`generator.mesh.launch.check_capacity`); rank 0 also reads the inputs and checks
every option. The results are gathered before anything starts, so a block that does not fit, a
bad option or a missing file stops every rank with one error that names the rank and host.
Then rank 0 runs the host side (:class:`generator.mesh.shard.MpiMeshRunner`) and the other
ranks serve their blocks (:class:`generator.mesh.shard.BlockServer`) until rank 0 is done.

A rank that dies: rank 0 notices it by its silence (heartbeats) or — when the launcher kills
the job because one rank died, which is Open MPI's default — by elimination when its own
SIGTERM comes: it asks every rank for a sign of life and names those that give none. Either way
it prints the error naming the ranks, hosts and PEs, stops what is left, and exits with
RunError's code without MPI_Finalize (which would wait for the dead).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from generator import errors
from generator.errors import PemeshError, RunError, ToolchainError
from generator.mesh.launch import check_capacity
from generator.mesh.mpi import (INSTALL_HINT, World, assign_blocks, finalize, launcher_world,
                                mpirun_command)

#: rank 0 writes its exit code here (``pemesh run --ranks``: mpirun's own code says less)
STATUS_ENV = "PEMESH_MPI_STATUS"
#: seconds rank 0 waits for signs of life after a SIGTERM before it names the silent ranks
ELIMINATION_S = 0.5


def _strip_ranks(argv: list[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--ranks":
            skip = True
        elif not a.startswith("--ranks="):
            out.append(a)
    return out


def start_local_mpirun(args: argparse.Namespace) -> int:
    """``pemesh run … --ranks R``: the same command under ``mpirun -n R`` on this machine."""
    try:
        import mpi4py  # noqa: F401 - only looked for here (MPI starts in the ranks)
    except ImportError:
        raise ToolchainError("--ranks needs mpi4py, which is not installed",
                             hint=INSTALL_HINT) from None
    argv = _strip_ranks(list(getattr(args, "_argv", None) or sys.argv[1:]))
    cmd = mpirun_command(int(args.ranks), argv)
    fd, status = tempfile.mkstemp(prefix="pemesh-mpi-", suffix=".status")
    os.close(fd)
    env = dict(os.environ, **{STATUS_ENV: status})
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(Path(__file__).resolve().parents[2]),
                                                    os.environ.get("PYTHONPATH")) if p)
    proc = subprocess.Popen(cmd, env=env)
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        proc.terminate()                # mpirun passes it on to every rank
        try:
            code = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        raise
    finally:
        try:
            text = Path(status).read_text().strip()
            os.unlink(status)
        except OSError:
            text = ""
    return int(text) if text.lstrip("-").isdigit() else (code if code >= 0 else 128 - code)


def _write_status(code: int) -> None:
    path = os.environ.get(STATUS_ENV)
    if path:
        try:
            Path(path).write_text(f"{code}\n")
        except OSError:
            pass


def _error_like(exit_code: int, message: str) -> PemeshError:
    for cls in (errors.UsageError, errors.UnsupportedModelError, errors.DoesNotFitError,
                errors.BoardError, errors.ToolchainError, errors.BuildError, errors.RunError,
                errors.CheckError):
        if cls.exit_code == exit_code:
            return cls(message)
    return PemeshError(message)


def _die(err: PemeshError, cleanup: Any = None) -> None:
    """Print the error as ``pemesh run`` does, stop what is left, exit without MPI_Finalize."""
    print(f"pemesh run: error: {err}", file=sys.stderr, flush=True)
    _write_status(err.exit_code)
    if cleanup is not None:
        try:
            cleanup()
        except BaseException:  # noqa: BLE001 - exiting anyway
            pass
    sys.stdout.flush()
    os._exit(err.exit_code)


def run_ranked(args: argparse.Namespace) -> int:
    """This process is one rank of an MPI job running ``pemesh run``."""
    from generator.commands.run_steps import prepare_run
    from generator.mesh.runner import load_plan

    env_rank = (launcher_world() or (0, 1))[0]
    try:
        world = World.join()
    except PemeshError as err:
        if env_rank != 0:               # one rank says it
            os._exit(err.exit_code)
        _write_status(err.exit_code)
        raise
    setup, err = None, None
    try:
        if world.rank == 0:
            setup = prepare_run(args, capacity=False)
            plan = setup.plan
        else:
            plan = load_plan(Path(args.out).resolve())
        if len(plan.pes) < 2:
            raise errors.UsageError(f"{plan.out} has one PE: nothing to split over "
                                    f"{world.size} ranks", hint="run it without mpirun")
        owner = assign_blocks(plan.geometry, plan.pes, world.size)
        block = [p for p, r in owner.items() if r == world.rank]
        try:
            check_capacity(len(block), args.platform)
        except errors.DoesNotFitError as fit:
            raise errors.DoesNotFitError(f"rank {world.rank} on host {world.host}: the block of "
                                         f"{len(block)} PEs does not fit: {fit.args[0]}",
                                         hint="run with more ranks (hosts), or on host PEs "
                                              "(--platform host)") from None
    except PemeshError as e:
        err = e
    gathered = world.comm.allgather(
        None if err is None else (err.exit_code, str(err).split("\n  hint: ")[0], err.hint))
    failed = [(r, g) for r, g in enumerate(gathered) if g is not None]
    if failed:
        if world.rank != 0:
            finalize()
            return failed[0][1][0] if any(r == world.rank for r, _ in failed) else 0
        finalize()
        if err is not None:
            _write_status(err.exit_code)
            raise err
        r, (code, msg, hint) = failed[0]
        e = _error_like(code, msg)
        e.hint = hint
        _write_status(code)
        raise e
    if world.rank != 0:
        return _serve_block(args, world, plan, owner)
    return _run_rank0(args, world, setup, owner)


def _serve_block(args: argparse.Namespace, world: World, plan: Any, owner: dict[int, int]) -> int:
    from generator.manifest import OutTree
    from generator.mesh.launch import DEFAULT_ICOUNT_SHIFT
    from generator.mesh.shard import BlockServer
    from generator.commands.run_steps import _faults

    server = BlockServer(world, plan, owner, platform=args.platform,
                         icount_shift=DEFAULT_ICOUNT_SHIFT if args.platform == "qemu" else None,
                         hop_delay_s=float(getattr(args, "hop_delay", 0) or 0),
                         faults=_faults(args), log_dir=OutTree(plan.out).run_dir)
    code = server.run()
    if code != 0:
        sys.stdout.flush()
        os._exit(code)                  # never wait on a dead rank in MPI_Finalize
    finalize()
    return 0


def _silent_ranks(runner: Any) -> list[int]:
    """After a SIGTERM: ranks that give no sign of life within :data:`ELIMINATION_S`."""
    fab = runner.fabric
    t0 = time.monotonic()
    for r in fab.ranks:
        fab.channel.send(r, ("ping",))
    while time.monotonic() - t0 < ELIMINATION_S:
        if all(st.pong >= t0 or st.term or st.bye.is_set() for st in fab.ranks.values()):
            break
        time.sleep(0.02)
    return [r for r, st in fab.ranks.items() if not (st.pong >= t0 or st.term or st.bye.is_set())]


def _run_rank0(args: argparse.Namespace, world: World, setup: Any, owner: dict[int, int]) -> int:
    from generator.commands.run_steps import Progress, finish_run, runner_options
    from generator.mesh.shard import MpiMeshRunner

    progress = Progress(len(setup.feed))
    runner = MpiMeshRunner(setup.plan, world, owner, **runner_options(args, setup),
                           on_output=progress)
    try:
        runner.start()
        res = runner.infer_many(setup.feed)
        crossings = runner.fabric.crossings()
        placement = runner.placement()
    except KeyboardInterrupt:
        progress.close()
        dead = _silent_ranks(runner)
        if dead:
            runner.fabric.give_up(dead)
            _die(runner.rank_failure(dead, "the run went on (the launcher then stopped the "
                                           "job)"), runner.close)
        runner.close()
        _write_status(130)
        raise
    except PemeshError as err:
        progress.close()
        dead = runner.fabric.dead_ranks() if runner.fabric is not None else []
        if dead:
            _die(err if isinstance(err, RunError) and "stopped answering" in str(err)
                 else runner.rank_failure(dead, f"the run failed: {err}"), runner.close)
        runner.close()
        finalize()
        _write_status(err.exit_code)
        raise
    progress.close()
    runner.close()
    ranks = []
    for r in range(world.size):
        pes = sorted(p for p, o in owner.items() if o == r)
        host = placement[pes[0]][1]
        ranks.append({"rank": r, "host": host, "pes": [setup.plan.pes[p].name for p in pes],
                      **crossings.get(r, {"frames_out": 0, "frames_in": 0})})
    extra = {"pes": {p: {"rank": r, "host": h} for p, (r, h) in placement.items()},
             "ranks": ranks}
    try:
        code = finish_run(args, setup, res, extra)
    except PemeshError as err:
        finalize()
        _write_status(err.exit_code)
        raise
    finalize()
    _write_status(code)
    return code
