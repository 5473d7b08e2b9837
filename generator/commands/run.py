"""``pemesh run OUT``: start the PEs of OUT/ (one or many), feed inputs, collect, check.

One path for a single PE and a mesh: :class:`generator.mesh.runner.MeshRunner` launches the PEs
(and the fabric when there is more than one), the outputs of every inference are checked against
the anchor's reference with ``--check``, and OUT/run.json records what each PE measured
(:mod:`generator.commands.run_steps`). Started by an MPI launcher (``mpirun``/``srun``, or
``--ranks R``), the same run is split over the ranks (:mod:`generator.commands.run_mpi`).
"""

from __future__ import annotations

import argparse

from generator.commands.run_steps import (Progress, finish_run, output_path, prepare_run,
                                          runner_options, save_outputs)
from generator.mesh.runner import MeshRunner


def run_command(args: argparse.Namespace) -> int:
    """``pemesh run OUT [--input X] [--output Y] [--platform qemu|host] [--check] [--count K]
    [--trace T.json] [--ranks R]``, for any number of PEs: every item of the input K times;
    over MPI ranks when started by mpirun/srun (or with --ranks)."""
    from generator.mesh.mpi import launcher_world

    world = launcher_world()
    if getattr(args, "ranks", None) and world is None:
        from generator.commands.run_mpi import start_local_mpirun
        return start_local_mpirun(args)
    if world is not None and world[1] > 1:
        from generator.commands.run_mpi import run_ranked
        return run_ranked(args)
    s = prepare_run(args)
    progress = Progress(len(s.feed))
    try:
        with MeshRunner(s.plan, **runner_options(args, s), on_output=progress) as runner:
            res = runner.infer_many(s.feed)
    finally:
        progress.close()
    return finish_run(args, s, res)


__all__ = ["run_command", "output_path", "save_outputs"]
