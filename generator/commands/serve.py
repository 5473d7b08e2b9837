"""``pemesh serve OUT``: boot the PE (or the mesh) of OUT/ and keep it running for outside tools.

Prints one line per PE with its host link's serial device (a pty), then waits until Ctrl-C or
SIGTERM and stops every PE process and the fabric (as ``pemesh run`` does on exit). Any serial
tool then talks to the emulated PE exactly as to a board on /dev/ttyACM0 — the MLPerf Tiny
runner for an app compiled with ``--host-protocol eembc``, pemesh's HostLink for frames.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path

from generator.errors import RunError
from generator.manifest import OutTree
from generator.mesh.launch import DEFAULT_ICOUNT_SHIFT
from generator.mesh.runner import load_plan
from generator.mesh.serve import MeshServer

log = logging.getLogger(__name__)

#: seconds between checks that every PE process is still alive
POLL_S = 0.5


def serve(out: Path, *, platform: str = "qemu", icount_shift: int | None = DEFAULT_ICOUNT_SHIFT,
          startup_timeout: float = 30.0, stop: threading.Event | None = None) -> int:
    """Serve OUT/'s PEs until ``stop`` is set (by SIGINT/SIGTERM from :func:`serve_command`).

    RunError when a PE does not start or exits while served.
    """
    stop = stop or threading.Event()
    plan = load_plan(out)
    server = MeshServer(plan, platform=platform, icount_shift=icount_shift,
                        startup_timeout=startup_timeout,
                        log_dir=OutTree(Path(out)).root / "run")
    with server:
        for link in server.links:
            print(link.describe(), flush=True)
        fabric = " and the fabric" if server.fabric is not None else ""
        print(f"pemesh serve: {len(server.links)} PE(s){fabric} running on {server.platform}; "
              "Ctrl-C or SIGTERM stops them", flush=True)
        while not stop.wait(POLL_S):
            dead = server.dead()
            if dead:
                raise RunError("; ".join(dead), hint="see the PE logs under OUT/run/")
    print("pemesh serve: stopped", flush=True)
    return 0


def serve_command(args) -> int:
    """CLI: ``pemesh serve OUT [--platform qemu|host]``."""
    from generator.mesh.mpi import launcher_world

    world = launcher_world()
    if world is not None and world[1] > 1:
        from generator.errors import UsageError
        raise UsageError(f"pemesh serve runs on one machine, not over {world[1]} MPI ranks",
                         hint="start it without mpirun/srun; 'pemesh run' runs over ranks")
    stop = threading.Event()

    def on_signal(signum, _frame) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return serve(Path(args.out), platform=args.platform,
                     icount_shift=None if args.no_icount else DEFAULT_ICOUNT_SHIFT,
                     startup_timeout=args.startup_timeout, stop=stop)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        sys.stdout.flush()
