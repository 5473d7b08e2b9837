"""MPI for a mesh bigger than one machine: who we are in the job, which PEs each rank owns, and
the rank-to-rank message channel (docs/ARCHITECTURE.md "Runs over MPI", CONTRACTS §6 "Sharded fabric").

pemesh does not start or place processes itself: ``mpirun -n R pemesh run OUT`` (Open MPI,
MPICH) or ``srun -n R pemesh run OUT`` (SLURM) starts R copies of the command, and
:func:`launcher_world` finds out from the launcher's environment that this process is one rank
of R. mpi4py (the optional extra ``pemesh[mpi]``) is imported only then, so a run on one machine
never needs MPI.

:func:`assign_blocks` gives each rank a block of the mesh: whole chips, consecutive along a
serpentine over the chip grid (neighbouring chips share a rank), balanced by PEs in use; a mesh
with fewer chips than ranks is cut into bands of PE rows instead. Rank 0 gets the first block
(chip 0, with the host-link PEs of the usual meshes).

:class:`Channel` carries every message between ranks: lists of Python tuples, pickled, over a
communicator of their own (``COMM_WORLD.Dup()``). One thread sends (it batches what is queued per
destination, so a burst of frames costs one MPI message; nothing is ever sent while a fabric lock
is held), one receives (``Iprobe`` with a short sleep when idle: Open MPI's blocking receive
would spin a core, and this machine shares two). Every message is also a heartbeat; the sender
sends an empty one every :data:`HEARTBEAT_S` so a rank that stops is noticed (:meth:`silent`).
"""

from __future__ import annotations

import logging
import os
import queue
import shutil
import socket
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from generator.boards.catalog import Mesh
from generator.errors import ToolchainError, UsageError

log = logging.getLogger(__name__)

#: seconds between heartbeats, and of silence after which a rank counts as gone
HEARTBEAT_S = 0.25
DEAD_AFTER_S = 5.0
INSTALL_HINT = ("install the MPI extra: pip install 'pemesh[mpi]' (mpi4py) and an MPI library "
                "with its launcher (Debian: apt-get install openmpi-bin libopenmpi-dev; "
                "scripts/setup.sh does both)")
_TAG = 14

#: (rank, size) variables of the launchers pemesh knows: Open MPI, MPICH/Hydra and PMI-2/PMIx
#: (srun --mpi=pmi2|pmix), SLURM itself
_ENV = (("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"), ("PMI_RANK", "PMI_SIZE"),
        ("PMIX_RANK", "PMIX_SIZE"), ("SLURM_PROCID", "SLURM_NTASKS"))


def launcher_world() -> tuple[int, int] | None:
    """(rank, size) when a launcher (mpirun, mpiexec, srun) started this process, else None."""
    for rk, sz in _ENV:
        if os.environ.get(rk, "").isdigit() and os.environ.get(sz, "").isdigit():
            if rk == "SLURM_PROCID" and "SLURM_STEP_ID" not in os.environ:
                continue                    # an sbatch script's shell, not an srun task
            return int(os.environ[rk]), int(os.environ[sz])
    return None


def import_mpi() -> Any:
    """mpi4py's ``MPI`` (initialised: MPI_THREAD_MULTIPLE, finalised by :func:`finalize`), or
    ToolchainError saying what to install."""
    try:
        import mpi4py
    except ImportError:
        raise ToolchainError("this run was started by an MPI launcher but mpi4py is not "
                             "installed", hint=INSTALL_HINT) from None
    mpi4py.rc.thread_level = "multiple"
    mpi4py.rc.finalize = False          # finalize() on a clean end; never wait on a dead rank
    try:
        from mpi4py import MPI
    except ImportError as err:          # mpi4py without its MPI library
        raise ToolchainError(f"mpi4py cannot load its MPI library: {err}",
                             hint=INSTALL_HINT) from None
    if MPI.Query_thread() < MPI.THREAD_MULTIPLE:
        raise ToolchainError(f"the MPI library ({MPI.Get_library_version().splitlines()[0]}) "
                             "does not support MPI_THREAD_MULTIPLE", hint="use Open MPI or MPICH")
    return MPI


def finalize() -> None:
    """MPI_Finalize, once every rank is done (a clean end of the job)."""
    from mpi4py import MPI
    if MPI.Is_initialized() and not MPI.Is_finalized():
        MPI.Finalize()


@dataclass(frozen=True)
class World:
    """This process's place in the job."""

    rank: int
    size: int
    host: str
    comm: Any                           # COMM_WORLD (collectives of the main thread)

    @classmethod
    def join(cls) -> "World":
        MPI = import_mpi()
        comm = MPI.COMM_WORLD
        return cls(comm.Get_rank(), comm.Get_size(), socket.gethostname(), comm)


def assign_blocks(mesh: Mesh, pes: Iterable[int], ranks: int) -> dict[int, int]:
    """PE id → rank for the PEs in use: whole chips per rank where there are at least as many
    chips in use as ranks (consecutive along a serpentine over the chip grid, balanced by PEs),
    else bands of PE rows (the PEs in row-major grid order, cut into ``ranks`` equal parts)."""
    pes = sorted(set(pes))
    if ranks < 1:
        raise UsageError(f"{ranks} ranks: need at least one", hint="mpirun -n R with R >= 1")
    if ranks > len(pes):
        raise UsageError(f"{ranks} ranks for {len(pes)} PEs: every rank needs a PE",
                         hint=f"run with at most {len(pes)} ranks")

    def serpentine(chip: int) -> tuple[int, int]:
        cx, cy = mesh.chip_coords(chip)
        return cy, (cx if cy % 2 == 0 else mesh.chips_x - 1 - cx)

    chips: dict[int, list[int]] = {}
    for pe in pes:
        chips.setdefault(mesh.chip_of(pe), []).append(pe)
    if len(chips) >= ranks:
        groups = [chips[c] for c in sorted(chips, key=serpentine)]
    else:
        groups = [[pe] for pe in sorted(pes, key=lambda p: mesh.coords(p)[::-1])]
    # cut the sequence of groups into `ranks` consecutive parts, each cut at the group
    # boundary nearest its share of the PEs
    cum = [0]
    for g in groups:
        cum.append(cum[-1] + len(g))
    cuts = [0]
    for k in range(1, ranks):
        lo, hi = cuts[-1] + 1, len(groups) - (ranks - k)
        target = cum[-1] * k / ranks
        cuts.append(min(range(lo, hi + 1), key=lambda i: (abs(cum[i] - target), i)))
    cuts.append(len(groups))
    return {pe: k for k in range(ranks) for g in groups[cuts[k]:cuts[k + 1]] for pe in g}


def describe_block(pes: Sequence[int], names: Callable[[int], str]) -> str:
    """'pe0, pe1 and pe4' / 'pe0 … pe63 (64 PEs)'."""
    ns = [names(p) for p in sorted(pes)]
    if len(ns) > 6:
        return f"{ns[0]} … {ns[-1]} ({len(ns)} PEs)"
    return ns[0] if len(ns) == 1 else ", ".join(ns[:-1]) + " and " + ns[-1]


def mpirun_command(ranks: int, argv: Sequence[str]) -> list[str]:
    """The ``mpirun`` line ``pemesh run --ranks R`` starts on this machine: R copies of
    ``pemesh run`` (this interpreter), MPI kept on shared memory and loopback."""
    exe = shutil.which("mpirun") or shutil.which("mpiexec")
    if exe is None:
        raise ToolchainError("--ranks needs mpirun (or mpiexec) on PATH", hint=INSTALL_HINT)
    import subprocess
    try:
        version = subprocess.run([exe, "--version"], capture_output=True, text=True,
                                 timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        version = ""
    cmd = [exe, "-n", str(int(ranks))]
    if "Open MPI" in version or "OpenRTE" in version:
        cmd += ["--oversubscribe", "--mca", "btl", "self,vader", "--mca", "oob_tcp_if_include",
                "lo"]
        if os.geteuid() == 0:
            cmd.append("--allow-run-as-root")
    return cmd + [sys.executable, "-m", "generator.cli", *argv]


class Channel:
    """Messages (tuples) between ranks; ``handler(source_rank, message)`` runs on the receiving
    thread for each one. :meth:`send` only queues, never blocks."""

    def __init__(self, world: World, handler: Callable[[int, tuple], None],
                 heartbeat_to: Sequence[int] = ()):
        MPI = import_mpi()
        self._MPI = MPI
        self.world = world
        self.comm = world.comm.Dup()
        self.handler = handler
        self.heartbeat_to = tuple(heartbeat_to)
        self._out: "queue.Queue[tuple[int, tuple] | None]" = queue.Queue()
        self._stop = threading.Event()
        now = time.monotonic()
        self.last_seen = {r: now for r in range(world.size) if r != world.rank}
        #: messages sent to and received from each rank (frames that crossed ranks are counted
        #: by the shards themselves)
        self.sent = 0
        self.received = 0
        self.error: BaseException | None = None
        self._threads = [threading.Thread(target=self._send_loop, name="pemesh-mpi-tx",
                                          daemon=True),
                         threading.Thread(target=self._recv_loop, name="pemesh-mpi-rx",
                                          daemon=True)]

    def start(self) -> "Channel":
        for t in self._threads:
            t.start()
        return self

    def send(self, dest: int, message: tuple) -> None:
        self._out.put((dest, message))

    def silent(self, after: float = DEAD_AFTER_S) -> list[int]:
        """Ranks not heard from for ``after`` seconds."""
        now = time.monotonic()
        return sorted(r for r, t in self.last_seen.items() if now - t > after)

    def close(self, drain: float = 2.0) -> None:
        """Send what is queued (for at most ``drain`` seconds), then stop both threads."""
        self._out.put(None)
        self._threads[0].join(drain)
        self._stop.set()
        self._threads[1].join(2.0)

    def _send_loop(self) -> None:
        last_hb = 0.0
        try:
            while True:
                try:
                    item = self._out.get(timeout=HEARTBEAT_S)
                except queue.Empty:
                    item = ()
                batch: dict[int, list[tuple]] = {}
                end = item is None
                while item is not None:
                    if item:
                        batch.setdefault(item[0], []).append(item[1])
                    try:
                        item = self._out.get_nowait()
                    except queue.Empty:
                        break
                    end = end or item is None
                now = time.monotonic()
                if now - last_hb >= HEARTBEAT_S:
                    for r in self.heartbeat_to:
                        batch.setdefault(r, [])
                    last_hb = now
                for dest, msgs in batch.items():
                    self.comm.send(msgs, dest=dest, tag=_TAG)
                    self.sent += len(msgs)
                if end:
                    return
        except BaseException as err:  # pragma: no cover - reported by the owner
            self.error = err
            log.exception("MPI send thread failed")

    def _recv_loop(self) -> None:
        MPI = self._MPI
        status = MPI.Status()
        idle = 0
        try:
            while not self._stop.is_set():
                if not self.comm.Iprobe(source=MPI.ANY_SOURCE, tag=_TAG, status=status):
                    idle += 1
                    time.sleep(0.0002 if idle < 50 else 0.002)
                    continue
                idle = 0
                src = status.Get_source()
                msgs = self.comm.recv(source=src, tag=_TAG)
                self.last_seen[src] = time.monotonic()
                self.received += len(msgs)
                for m in msgs:
                    self.handler(src, m)
        except BaseException as err:  # pragma: no cover - reported by the owner
            self.error = err
            log.exception("MPI receive thread failed")


__all__ = ["World", "Channel", "launcher_world", "import_mpi", "finalize", "assign_blocks",
           "describe_block", "mpirun_command", "HEARTBEAT_S", "DEAD_AFTER_S", "INSTALL_HINT"]
