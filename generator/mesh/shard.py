"""A mesh run over MPI ranks: each rank runs its block's PEs and a shard of the fabric
(docs/ARCHITECTURE.md "Runs over MPI", CONTRACTS §6 "Sharded fabric").

Rank 0 runs :class:`MpiMeshRunner`, the :class:`~generator.mesh.runner.MeshRunner` of a
single-machine run with two things swapped: its fabric is a :class:`ShardedFabric` (rank 0's own
:class:`~generator.mesh.fabric.Fabric` shard plus the other shards' state, as the runner asks for
it), and a PE of another rank is a :class:`RemotePe`, whose host link is relayed over MPI
(:class:`RelayPort`). So the host side — inputs, outputs, credits, checks, stalls, trace,
run.json — is the single-machine code. Every other rank runs :class:`BlockServer`: it launches
its PEs, routes among them with its shard, relays their host links to rank 0 and reports their
state (connected, closed, exited, frames waiting) every heartbeat.

A frame whose XY route reaches a PE of another rank goes to that rank (``("frame", …)``), whose
shard goes on routing it from there: per-link counters are kept by the shard of the PE a link
leaves, go-back-N and fault injection by the shard of the PE a frame enters; at the end rank 0
gathers every shard's counters (:meth:`FabricStats.merge`).

Messages (tuples; rank 0 ↔ rank r): ``frame`` (Frame, wire, at, delay_s) either way; ``host``
(pe, bytes) either way; ``window`` (pe, rx_window), ``stats?`` (n), ``ping``, ``stop`` 0 → r; ``hello``
(host, {pe: pid}, error, fabric socket folder), ``status`` (…), ``stats`` (n, FabricStats,
crossed out, crossed in), ``pong``, ``term`` (interrupted), ``bye`` r → 0.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import selectors
import shutil
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from generator.errors import PemeshError, RunError
from generator.mesh.fabric import Fabric
from generator.mesh.fabric_types import FabricStats, Faults
from generator.mesh.launch import launch
from generator.mesh.mpi import DEAD_AFTER_S, HEARTBEAT_S, Channel, World, describe_block
from generator.mesh.runner import LAUNCH_WORKERS, MeshPe, MeshRunner, RunPlan
from generator.mesh.trace import TraceRecorder
from generator.wire import Frame

log = logging.getLogger(__name__)


@dataclass
class RankState:
    """What rank 0 knows about one rank."""

    rank: int
    host: str = "?"
    hello: threading.Event = field(default_factory=threading.Event)
    error: str | None = None
    pids: dict[int, int] = field(default_factory=dict)
    connected: frozenset = frozenset()
    closed: frozenset = frozenset()
    exited: dict[int, tuple[int | None, str]] = field(default_factory=dict)
    pending: dict[int, tuple[int, int]] = field(default_factory=dict)
    fabric_error: str | None = None
    stats: dict[int, tuple] = field(default_factory=dict)
    got_stats: threading.Condition = field(default_factory=threading.Condition)
    bye: threading.Event = field(default_factory=threading.Event)
    term: bool = False
    pong: float = 0.0
    sock_dir: str = ""


class RelayPort:
    """Rank 0's end of a remote PE's host link: bytes the runner writes go to the PE's rank;
    bytes from there come out of :meth:`read` (a socketpair makes it selectable)."""

    def __init__(self, pe: int, rank: int, channel: Channel):
        self.pe, self.rank, self.channel = pe, rank, channel
        self._in, self._out = socket.socketpair()
        self._out.setblocking(False)
        self.timeout: float | None = 0

    def feed(self, data: bytes) -> None:
        try:
            self._in.sendall(data)
        except OSError:                     # closed: the run is over
            pass

    def read(self, size: int = 1) -> bytes:
        try:
            return self._out.recv(size)
        except (BlockingIOError, InterruptedError):
            return b""

    def write(self, data: bytes) -> int:
        self.channel.send(self.rank, ("host", self.pe, bytes(data)))
        return len(data)

    def fileno(self) -> int:
        return self._out.fileno()

    def close(self) -> None:
        self._in.close()
        self._out.close()


class _RemoteProc:
    """The bit of ``subprocess.Popen`` the runner reads: poll() and returncode."""

    def __init__(self, pe: "RemotePe"):
        self._pe = pe

    @property
    def returncode(self) -> int | None:
        st = self._pe.state
        return st.exited[self._pe.id][0] if self._pe.id in st.exited else (
            None if self._pe.fabric.rank_alive(st.rank) else -9)

    def poll(self) -> int | None:
        return None if self._pe.running else self.returncode


class RemotePe:
    """A PE another rank runs, as the runner sees a :class:`~generator.mesh.launch.PeProcess`."""

    def __init__(self, fabric: "ShardedFabric", pe: MeshPe, rank: int):
        self.fabric, self.id, self.name = fabric, pe.id, pe.name
        self.state = fabric.ranks[rank]
        self.proc = _RemoteProc(self)

    def wait_ready(self, timeout: float | None = None) -> None:
        st = self.state
        deadline = time.monotonic() + (timeout or 30.0)
        while not st.hello.wait(0.1):
            if not self.fabric.rank_alive(st.rank):
                raise RunError(f"rank {st.rank} stopped before starting its PEs",
                               hint="see the launcher's output (mpirun/srun)")
            if time.monotonic() > deadline:
                raise RunError(f"rank {st.rank} did not start its PEs within {timeout:g} s",
                               hint="is every rank running 'pemesh run' on the same OUT?")
        if st.error:
            raise RunError(f"rank {st.rank} (host {st.host}): {st.error}",
                           hint="the rank's PE logs are in OUT/run/ on that host")

    def open_serial(self, timeout: float = 1.0, *, raw: bool = True) -> RelayPort:
        return self.fabric.relay(self.id)

    @property
    def running(self) -> bool:
        return self.id not in self.state.exited and self.fabric.rank_alive(self.state.rank)

    def output_tail(self) -> str:
        return self.state.exited.get(self.id, (None, "(no output)"))[1]

    def close(self) -> None:
        """Its rank stops it (on ``stop``, or when rank 0 goes silent)."""


class _CrossRank:
    """Frames between this rank's fabric shard and another rank's, counted per rank (the
    ``ranks`` of run.json). Rank 0's :class:`ShardedFabric` and the other ranks'
    :class:`BlockServer` both are one end."""

    channel: Channel
    crossed_out: dict[int, int]
    crossed_in: dict[int, int]

    def _forward(self, rank: int, frame: Frame, wire: bytes, at: int, delay_s: float) -> None:
        self.crossed_out[rank] = self.crossed_out.get(rank, 0) + 1
        self.channel.send(rank, ("frame", frame, wire, at, delay_s))

    def _arrived(self, src: int, m: tuple, shard: Fabric) -> None:
        """A ``("frame", frame, wire, at, delay_s)`` message from rank ``src``: route it on."""
        self.crossed_in[src] = self.crossed_in.get(src, 0) + 1
        shard.deliver(m[1], m[2], m[3], m[4])


class ShardedFabric(_CrossRank):
    """Rank 0's fabric: its own shard, the other shards' reported state, and the channel."""

    def __init__(self, world: World, plan: RunPlan, owner: dict[int, int], *,
                 hop_delay_s: float = 0.0, faults: Faults | None = None,
                 trace: TraceRecorder | None = None):
        self.world, self.plan, self.owner = world, plan, owner
        self.ranks = {r: RankState(r) for r in range(1, world.size)}
        self.relays: dict[int, RelayPort] = {}
        self.crossed_out: dict[int, int] = {}
        self.crossed_in: dict[int, int] = {}
        self.channel = Channel(world, self._on_message, heartbeat_to=tuple(self.ranks))
        self.local = Fabric(plan.geometry, [p for p, r in owner.items() if r == 0],
                            hop_delay_s=hop_delay_s, faults=faults, trace=trace,
                            remote={p: r for p, r in owner.items() if r != 0},
                            forward=self._forward, shard=0)
        self._stats_n = 0
        self._stopped = False
        #: ranks found dead
        self.gone: set[int] = set()

    # --- the Fabric API the runner uses ---------------------------------------------------

    @property
    def error(self) -> BaseException | None:
        for st in self.ranks.values():
            if st.fabric_error:
                return RuntimeError(f"rank {st.rank}'s fabric shard: {st.fabric_error}")
        return self.local.error or self.channel.error

    def start(self) -> "ShardedFabric":
        self.channel.start()
        self.local.start()
        return self

    def path(self, pe: int) -> str:
        return self.local.path(pe)

    def set_window(self, pe: int, window: int) -> None:
        if self.owner[pe] == 0:
            self.local.set_window(pe, window)
        else:
            self.channel.send(self.owner[pe], ("window", pe, int(window)))

    def connected(self, pe: int) -> bool:
        r = self.owner[pe]
        return self.local.connected(pe) if r == 0 else pe in self.ranks[r].connected

    def wait_connected(self, pes: Any, timeout: float) -> list[int]:
        deadline = time.monotonic() + timeout
        pes = list(pes)
        while True:
            missing = [p for p in pes if not self.connected(p)]
            if not missing or time.monotonic() >= deadline:
                return missing
            time.sleep(0.02)

    def disconnected(self) -> list[int]:
        gone = set(self.local.disconnected())
        for st in self.ranks.values():
            gone |= st.closed
        return sorted(gone)

    def pending(self, pe: int) -> tuple[int, int]:
        r = self.owner[pe]
        return self.local.pending(pe) if r == 0 else self.ranks[r].pending.get(pe, (0, 0))

    def stats(self, timeout: float = 10.0) -> FabricStats:
        """Every shard's counters, merged (each rank answers ``stats?``)."""
        self._stats_n += 1
        n = self._stats_n
        for r in self.ranks:
            self.channel.send(r, ("stats?", n))
        parts = [self.local.stats()]
        deadline = time.monotonic() + timeout
        for st in self.ranks.values():
            with st.got_stats:
                while n not in st.stats and time.monotonic() < deadline and self.rank_alive(
                        st.rank):
                    st.got_stats.wait(0.1)
            if n in st.stats:
                parts.append(st.stats[n][0])
            else:
                log.warning("rank %d sent no fabric counters", st.rank)
        return FabricStats.merge(parts)

    def crossings(self) -> dict[int, dict[str, int]]:
        """Per rank: frames its shard handed to other ranks and took from them (latest
        ``stats?`` answer for the other ranks)."""
        doc = {0: {"frames_out": sum(self.crossed_out.values()),
                   "frames_in": sum(self.crossed_in.values())}}
        for r, st in self.ranks.items():
            last = st.stats[max(st.stats)] if st.stats else (None, {}, {})
            doc[r] = {"frames_out": sum(last[1].values()), "frames_in": sum(last[2].values())}
        return doc

    def stop(self) -> None:
        """Ask every rank to stop its PEs and shard; wait for them; stop ours. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        for r in self.ranks:
            self.channel.send(r, ("stop",))
        self.local.stop()                   # ours first: a launcher may kill us any moment
        deadline = time.monotonic() + 10.0
        for st in self.ranks.values():
            while not st.bye.wait(0.1) and self.rank_alive(st.rank) \
                    and time.monotonic() < deadline:
                pass
        self.channel.close()
        for relay in self.relays.values():
            relay.close()

    def give_up(self, ranks: list[int]) -> None:
        """Count ``ranks`` as dead from now on (found by elimination: waiting for them is vain)."""
        for r in ranks:
            self._bury(r)

    def _bury(self, rank: int) -> None:
        """A dead rank: never wait for it again; on this host, remove the socket folder its
        fabric shard could not."""
        if rank in self.gone:
            return
        self.gone.add(rank)
        st = self.ranks[rank]
        if st.host == self.world.host and st.sock_dir:
            shutil.rmtree(st.sock_dir, ignore_errors=True)

    # --- ranks ----------------------------------------------------------------------------------

    def rank_alive(self, rank: int) -> bool:
        if rank == 0:
            return True
        if rank in self.gone or self.ranks[rank].bye.is_set():
            return False
        if rank in self.channel.silent(DEAD_AFTER_S):
            self._bury(rank)
            return False
        return True

    def dead_ranks(self) -> list[int]:
        return [r for r in self.ranks if not self.rank_alive(r)]

    def relay(self, pe: int) -> RelayPort:
        if pe not in self.relays:
            self.relays[pe] = RelayPort(pe, self.owner[pe], self.channel)
        return self.relays[pe]

    def _on_message(self, src: int, m: tuple) -> None:
        kind = m[0]
        if kind == "frame":
            self._arrived(src, m, self.local)
            return
        if kind == "host":
            relay = self.relays.get(m[1])
            if relay is not None:
                relay.feed(m[2])
            return
        st = self.ranks[src]
        if kind == "hello":
            st.host, st.pids, st.error, st.sock_dir = m[1], m[2], m[3], m[4]
            st.hello.set()
        elif kind == "status":
            st.connected, st.closed, st.exited, st.pending, st.fabric_error = m[1:6]
        elif kind == "stats":
            with st.got_stats:
                st.stats[m[1]] = tuple(m[2:5])
                st.got_stats.notify_all()
        elif kind == "term":
            st.term = True
        elif kind == "pong":
            st.pong = time.monotonic()
        elif kind == "bye":
            st.bye.set()


@dataclass(frozen=True)
class _PlacedPe(MeshPe):
    """A PE whose description (in every error the runner raises) says where it runs."""

    where: Any = None

    def describe(self) -> str:
        return f"{self.record.describe()} on {self.where(self.id)}"


class MpiMeshRunner(MeshRunner):
    """Rank 0's :class:`MeshRunner`: PEs of other ranks are :class:`RemotePe`, the fabric a
    :class:`ShardedFabric`."""

    def __init__(self, plan: RunPlan, world: World, owner: dict[int, int], **kw: Any):
        self.world, self.owner = world, owner
        pes = {i: _PlacedPe(pe.record, pe.image, self._where) for i, pe in plan.pes.items()}
        super().__init__(dataclasses.replace(plan, pes=pes), **kw)
        if self.fabric is None:             # a mesh of one PE has nothing to shard
            raise RunError("a single PE cannot be split over MPI ranks",
                           hint="run it without mpirun")

    def _make_fabric(self, hop_delay_s: float, faults: Faults | None,
                     trace: TraceRecorder | None) -> ShardedFabric:
        return ShardedFabric(self.world, self.plan, self.owner, hop_delay_s=hop_delay_s,
                             faults=faults, trace=trace)

    def _launch(self, pe: MeshPe) -> Any:
        rank = self.owner[pe.id]
        return super()._launch(pe) if rank == 0 else RemotePe(self.fabric, pe, rank)

    def _check_alive(self, results: list, streams: dict) -> None:
        dead = self.fabric.dead_ranks()
        if dead:
            raise self.rank_failure(dead, f"the host awaited {self._awaited(results, streams)}")
        super()._check_alive(results, streams)

    def rank_failure(self, ranks: list[int], while_: str) -> RunError:
        """A RunError naming the ranks that died, their hosts and PEs."""
        parts = []
        for r in ranks:
            st = self.fabric.ranks[r]
            pes = [p for p, o in self.owner.items() if o == r]
            parts.append(f"rank {r} on host {st.host} (running "
                         f"{describe_block(pes, lambda p: self.plan.pes[p].name)}) stopped "
                         f"answering")
        return RunError("; ".join(parts) + f" while {while_}",
                        hint="see the launcher's output for why the rank ended (killed, out of "
                             "memory, node failure); its PE processes were stopped with it")

    def _where(self, pe: int) -> str:
        r = self.owner[pe]
        host = self.world.host if r == 0 else self.fabric.ranks[r].host
        return f"rank {r} (host {host})"

    def placement(self) -> dict[int, tuple[int, str]]:
        """PE id → (rank, host) it ran on."""
        hosts = {0: self.world.host, **{r: st.host for r, st in self.fabric.ranks.items()}}
        return {p: (r, hosts[r]) for p, r in self.owner.items()}


class BlockServer(_CrossRank):
    """A rank other than 0: run the block's PEs and fabric shard until rank 0 says stop."""

    def __init__(self, world: World, plan: RunPlan, owner: dict[int, int], *, platform: str,
                 icount_shift: int | None, hop_delay_s: float = 0.0,
                 faults: Faults | None = None, log_dir: Any = None,
                 startup_timeout: float = 30.0):
        self.world, self.plan, self.owner = world, plan, owner
        self.platform, self.icount_shift = platform, icount_shift
        self.log_dir, self.startup_timeout = log_dir, startup_timeout
        self.block = sorted(p for p, r in owner.items() if r == world.rank)
        self.crossed_out: dict[int, int] = {}
        self.crossed_in: dict[int, int] = {}
        self.channel = Channel(world, self._on_message, heartbeat_to=(0,))
        self.fabric = Fabric(plan.geometry, self.block, hop_delay_s=hop_delay_s, faults=faults,
                             remote={p: r for p, r in owner.items() if r != world.rank},
                             forward=self._forward, shard=world.rank)
        self.procs: dict[int, Any] = {}
        self.ports: dict[int, Any] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> int:
        """Serve until ``stop`` (0) or until rank 0 goes silent (RunError's exit code)."""
        self.channel.start()
        self.fabric.start()
        code = 0
        try:
            try:
                self._start_pes()
            except PemeshError as err:
                self.channel.send(0, ("hello", self.world.host, {}, str(err), self.fabric.dir))
                self._wait_stop()
                return err.exit_code
            self.channel.send(0, ("hello", self.world.host,
                                  {p: pr.proc.pid for p, pr in self.procs.items()}, None,
                                  self.fabric.dir))
            code = self._serve()
        except KeyboardInterrupt:
            self.channel.send(0, ("term",))
            code = 130
        finally:
            self._close()
        return code

    def _start_pes(self) -> None:
        for pe_id in self.block:
            pe = self.plan.pes[pe_id]
            self.procs[pe_id] = launch(pe.image, platform=self.platform,
                                       icount_shift=self.icount_shift, log_dir=self.log_dir,
                                       name=pe.name, startup_timeout=self.startup_timeout,
                                       link1=self.fabric.path(pe_id), wait=False)
        deadline = time.monotonic() + self.startup_timeout
        for pe_id in self.block:
            self.procs[pe_id].wait_ready(max(0.5, deadline - time.monotonic()))
        with self._lock:
            for pe_id in self.block:
                self.ports[pe_id] = self.procs[pe_id].open_serial(raw=True)
                self.ports[pe_id].timeout = 0

    def _wait_stop(self) -> None:
        while not self._stop.wait(0.1) and 0 not in self.channel.silent(DEAD_AFTER_S):
            pass

    def _serve(self) -> int:
        sel = selectors.DefaultSelector()
        for pe_id, port in self.ports.items():
            sel.register(port.fileno(), selectors.EVENT_READ, pe_id)
        next_status = 0.0
        try:
            while not self._stop.is_set():
                for key, _ in sel.select(0.02):
                    try:
                        data = self.ports[key.data].read(65536)
                    except OSError:
                        data = b""
                    if data:
                        self.channel.send(0, ("host", key.data, data))
                now = time.monotonic()
                if now >= next_status:
                    self._send_status()
                    next_status = now + HEARTBEAT_S
                if 0 in self.channel.silent(DEAD_AFTER_S):
                    log.error("rank %d: rank 0 went silent; stopping this block's PEs",
                              self.world.rank)
                    return RunError.exit_code
        finally:
            sel.close()
        return 0

    def _send_status(self) -> None:
        f = self.fabric
        connected = frozenset(p for p in self.block if f.connected(p))
        exited = {p: (pr.proc.returncode, pr.output_tail())
                  for p, pr in self.procs.items() if not pr.running}
        pending = {p: f.pending(p) for p in self.block}
        self.channel.send(0, ("status", connected, frozenset(f.disconnected()), exited, pending,
                              str(f.error) if f.error else None))

    def _close(self) -> None:
        with self._lock:
            for port in self.ports.values():
                try:
                    port.close()
                except Exception:  # pragma: no cover - already gone
                    pass
            self.ports.clear()
        with concurrent.futures.ThreadPoolExecutor(LAUNCH_WORKERS) as pool:
            list(pool.map(lambda p: p.close(), list(self.procs.values())))
        stats = self.fabric.stats()
        self.fabric.stop()
        self.channel.send(0, ("bye", stats))
        self.channel.close()

    def _on_message(self, src: int, m: tuple) -> None:
        kind = m[0]
        if kind == "frame":
            self._arrived(src, m, self.fabric)
        elif kind == "host":
            with self._lock:
                port = self.ports.get(m[1])
                if port is not None:
                    port.write(m[2])
        elif kind == "window":
            self.fabric.set_window(m[1], m[2])
        elif kind == "stats?":
            self.channel.send(0, ("stats", m[1], self.fabric.stats(), dict(self.crossed_out),
                                  dict(self.crossed_in)))
        elif kind == "ping":
            self.channel.send(0, ("pong",))
        elif kind == "stop":
            self._stop.set()


__all__ = ["ShardedFabric", "MpiMeshRunner", "BlockServer", "RemotePe", "RelayPort"]
