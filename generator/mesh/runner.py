"""Running the PEs of OUT/: ``pemesh run`` for one PE and for a mesh alike (CONTRACTS §6).

:class:`MeshRunner` launches every PE in parallel (QEMU: UART0 on a pty, UART1 on the PE's
fabric socket; host processes: ``--link1 unix:…``) and, when there is more than one PE, starts
the :class:`~generator.mesh.fabric.Fabric` between them (a single PE has nothing to route: its
routes all lead to the host). It opens every PE's host link (all of them: PEs report STATS there),
PINGs them all, then feeds inputs to the replicas' entry PEs round-robin — honouring the READY
credits of each entry stream — and collects the exit PEs' outputs in input order. Each replica is
a FIFO pipeline, so the j-th output of a replica's exit belongs to the j-th input fed to it.

Failure handling: a PE process that exits, closes its mesh link or reports ERROR, and a run that
makes no progress for ``timeout`` seconds, raise :class:`~generator.errors.RunError` naming the
PE (id, name, stage, replica, coords) and what the host awaited. :meth:`MeshRunner.close` (also
on Ctrl-C, via ``with``) stops every process and the fabric; it is idempotent.
"""

from __future__ import annotations

import concurrent.futures
import errno
import logging
import selectors
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from generator.boards.catalog import (LinkFigures, Mesh, load_mesh as load_board_mesh,
                                      load_pe_kind, mesh_from_json)
from generator.errors import BoardError, RunError, UsageError
from generator.firmware.build import BuildResult
from generator.firmware.images import load_build
from generator.manifest import (Manifest, PeRecord, PeRunRecord, ReplicaRecord, RunRecord,
                                read_manifest)
from generator.mesh.fabric import Fabric, FabricStats, Faults
from generator.mesh.hostlink import READY, MeshPeLink, _unpack, pe_error, ping_all
from generator.mesh.launch import (DEFAULT_ICOUNT_SHIFT, QEMU_MACHINES, QEMU_TICK_NS, PeProcess,
                                   launch,
                                   ticks_to_instructions)
from generator.mesh.trace import TraceRecorder
from generator.types import InputSlice, TensorSpec
from generator.wire import (HOST_ID, WAIT_CREDIT, WAIT_INPUT, Frame, FrameType, Stats, describe_wait,
                            ready_count, unpack_error, unpack_ready, unpack_stats)

log = logging.getLogger(__name__)

#: PEs started at once
LAUNCH_WORKERS = 16


@dataclass(frozen=True)
class MeshPe:
    """One PE of the manifest and the image it runs."""

    record: PeRecord
    image: BuildResult

    @property
    def id(self) -> int:
        return self.record.id

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def stage(self) -> str:
        return self.record.stage

    @property
    def replica(self) -> int:
        return self.record.replica

    @property
    def coords(self) -> tuple[int, int]:
        return self.record.coords

    def describe(self) -> str:
        return self.record.describe()


#: where one replica's model inputs enter and its model outputs leave
Replica = ReplicaRecord


@dataclass(frozen=True)
class RunPlan:
    """What :class:`MeshRunner` needs from OUT/mesh.json and OUT/build/build.json."""

    out: Path
    pes: dict[int, MeshPe]
    replicas: tuple[ReplicaRecord, ...]
    model_inputs: tuple[TensorSpec, ...]
    model_outputs: tuple[TensorSpec, ...]
    geometry: Mesh
    #: per program input (the entry streams' index): the rows of a model input it carries
    input_slices: tuple[InputSlice, ...] = ()


@dataclass(frozen=True)
class MeshRunResult:
    """Outputs (per input, in input order) and what the run measured."""

    outputs: list[list[np.ndarray]]
    stats: dict[int, Stats]                 # last STATS of each PE
    runs: dict[int, int]                    # STATS frames (= inferences run) per PE
    fabric: FabricStats
    seconds: float                          # first input sent .. last output received
    host_retransmissions: int

    @property
    def inferences_per_s(self) -> float:
        return len(self.outputs) / self.seconds if self.seconds > 0 else 0.0


def _geometry(manifest: Manifest, coords: dict[int, tuple[int, int]]) -> Mesh:
    m = manifest.mesh
    if "topology" in m:
        keys = ("name", "description", "pe_kind", "topology", "host_links", "links")
        return mesh_from_json({k: m[k] for k in keys if k in m})
    name = m.get("name")
    if name:
        try:
            return load_board_mesh(name)
        except BoardError:
            log.debug("mesh %s is not in boards/mesh; using the PEs' coordinates", name)
    # one chip as large as the PEs' coordinates
    kind = load_pe_kind(manifest.pe_kind or manifest.board or "qemu_cortex_m3")
    w = max(x for x, _ in coords.values()) + 1
    h = max(y for _, y in coords.values()) + 1
    fig = LinkFigures(bytes_per_s=1_000_000, latency_ns=0)
    return Mesh(name="mesh", description="from mesh.json coordinates", pe_kind=kind, chips_x=1,
                chips_y=1, pes_x=w, pes_y=h, host_links=(0,), on_chip=fig, chip_to_chip=fig)


def load_plan(out: Path, manifest: Manifest | None = None) -> RunPlan:
    """Read the manifest and the build of OUT/ into a :class:`RunPlan`."""
    out = Path(out).resolve()
    manifest = manifest or read_manifest(out)
    _record, images = load_build(out)
    pes: dict[int, MeshPe] = {}
    for p in manifest.pes:
        if p.name not in images:
            raise UsageError(f"{out}/build/build.json has no image for {p.name}",
                             hint=f"run 'pemesh build {out}'")
        pes[p.id] = MeshPe(p, images[p.name])
    for r in manifest.replicas:
        for pe, *_ in (*r.entry, *r.exit):
            if pe not in pes:
                raise UsageError(f"replica {r.index} of {out}/mesh.json names PE {pe}, which "
                                 "is not in 'pes'", hint="re-run 'pemesh compile --force'")
    geometry = _geometry(manifest, {i: pe.coords for i, pe in pes.items()})
    slices = tuple(InputSlice.from_json(d) for d in manifest.partition.get("input_slices", ()))
    return RunPlan(out, pes, manifest.replicas, manifest.model.inputs, manifest.model.outputs,
                   geometry, slices)


@dataclass
class _Credit:
    """Flow control of one entry stream (host → PE): tensors sent, and the count of consumed
    tensors the PE's last READY named. One buffer per input: the host may send when the PE
    has consumed every tensor sent so far (a repeated or late READY changes nothing)."""

    sent: int = 0
    consumed: int = 0

    @property
    def free(self) -> bool:
        return (self.sent - self.consumed) & 0xFFFF == 0

    def ready(self, count: int | None) -> None:
        self.consumed = self.sent if count is None else count


@dataclass
class _Pending:
    """Reassembly of one output stream of one PE."""

    chunks: dict[int, bytes] = field(default_factory=dict)
    done: list[bytes] = field(default_factory=list)


class MeshRunner:
    """Run the PEs of a :class:`RunPlan` (a context manager; :meth:`close` stops everything)."""

    def __init__(self, plan: RunPlan, *, platform: str | None = None,
                 icount_shift: int | None = DEFAULT_ICOUNT_SHIFT, timeout: float = 60.0,
                 startup_timeout: float = 30.0, hop_delay_s: float = 0.0,
                 faults: Faults | None = None, log_dir: Path | None = None,
                 trace: TraceRecorder | None = None,
                 on_output: Callable[[int, int], None] | None = None):
        self.plan = plan
        self.timeout = timeout
        self.startup_timeout = startup_timeout
        any_image = next(iter(plan.pes.values())).image
        self.platform = platform or ("qemu" if any_image.runs_on_qemu else "host")
        self.icount_shift = icount_shift if self.platform == "qemu" else None
        self.log_dir = log_dir
        # one PE: no fabric (its routes all lead to the host on link 0)
        self.fabric: Fabric | Any = (self._make_fabric(hop_delay_s, faults, trace)
                                     if len(plan.pes) > 1 else None)
        self.trace = trace
        #: called with (outputs done, outputs wanted) as each inference completes
        self.on_output = on_output
        self.procs: dict[int, PeProcess] = {}
        self.links: dict[int, MeshPeLink] = {}
        self._ports: list[Any] = []
        self._sel: selectors.BaseSelector | None = None
        self.stats: dict[int, Stats] = {}
        self.runs: dict[int, int] = {pe: 0 for pe in plan.pes}
        #: per entry stream (pe, stream): the host's READY credit state (kept across calls)
        self._entry = {(pe, s): _Credit() for r in plan.replicas for pe, s, _ in r.entry}
        #: (pe, message) of every frame a PE rejected as not from its input's SOURCE
        self.rejections: list[tuple[int, str]] = []
        self._closed = False

    # --- start / stop ---------------------------------------------------------------------------

    def start(self) -> "MeshRunner":
        """Start the fabric and every PE; PING them; size the fabric's windows from PONGs."""
        try:
            if self.fabric is not None:
                self.fabric.start()
            pes = list(self.plan.pes.values())
            # started from this thread (the parent-death signal follows the forking thread),
            # all at once; then wait for every pty
            for pe in pes:
                self.procs[pe.id] = self._launch(pe)
            deadline = time.monotonic() + self.startup_timeout
            for pe in pes:
                self.procs[pe.id].wait_ready(max(0.5, deadline - time.monotonic()))
            for pe in pes:
                port = self.procs[pe.id].open_serial(raw=True)
                self._ports.append(port)
                self.links[pe.id] = MeshPeLink(port, pe.id)
            pongs = ping_all(list(self.links.values()), self.startup_timeout)
            missing = []
            if self.fabric is not None:
                for pe_id, pong in pongs.items():
                    self.fabric.set_window(pe_id, pong.rx_window)
                missing = self.fabric.wait_connected(self.plan.pes, self.startup_timeout)
            if missing:
                raise RunError(
                    f"{self.plan.pes[missing[0]].describe()} did not connect its mesh link "
                    f"(UART1) to the fabric within {self.startup_timeout:g} s"
                    + (f" ({len(missing)} PEs missing)" if len(missing) > 1 else ""),
                    hint="check that the image was built with the mesh runtime (see its log)")
            self._sel = selectors.DefaultSelector()
            for link in self.links.values():
                self._sel.register(link.fileno(), selectors.EVENT_READ, link)
            log.info("mesh: %d PEs running (%s)", len(pes), self.platform)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop every PE process and the fabric. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._sel is not None:
            self._sel.close()
        for port in self._ports:
            try:
                port.close()
            except Exception:  # pragma: no cover - already gone
                pass
        with concurrent.futures.ThreadPoolExecutor(LAUNCH_WORKERS) as pool:
            list(pool.map(lambda p: p.close(), list(self.procs.values())))
        if self.fabric is not None:
            self.fabric.stop()

    def _make_fabric(self, hop_delay_s: float, faults: Faults | None,
                     trace: TraceRecorder | None) -> Any:
        """The fabric between the PEs (one process; a sharded one over MPI overrides this)."""
        return Fabric(self.plan.geometry, list(self.plan.pes), hop_delay_s=hop_delay_s,
                      faults=faults, trace=trace)

    def _launch(self, pe: MeshPe) -> Any:
        """Start one PE (not waiting for its pty)."""
        return launch(pe.image, platform=self.platform, icount_shift=self.icount_shift,
                      log_dir=self.log_dir, name=pe.name, startup_timeout=self.startup_timeout,
                      link1=self._link1(pe.id), wait=False)

    def _link1(self, pe_id: int) -> str | None:
        """The fabric socket of a PE's mesh link, or None when there is no fabric."""
        return self.fabric.path(pe_id) if self.fabric is not None else None

    def fabric_stats(self) -> FabricStats:
        return self.fabric.stats() if self.fabric is not None else FabricStats.empty()

    def __enter__(self) -> "MeshRunner":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- running --------------------------------------------------------------------------------

    def infer_many(self, inputs: Sequence[Sequence[np.ndarray]]) -> MeshRunResult:
        """Run one inference per element of ``inputs`` (each a list of model inputs), spread
        round-robin over the replicas; return the outputs in input order."""
        plan = self.plan
        n_rep = len(plan.replicas)
        blobs = [self._program_inputs(xs) for xs in inputs]
        credits = self._entry
        next_k = {r: r for r in range(n_rep)}           # next input index per replica
        streams: dict[tuple[int, int], _Pending] = {}
        results: list[list[np.ndarray] | None] = [None] * len(inputs)
        done = 0
        t0 = time.monotonic()
        last_progress = t0
        while done < len(inputs):
            now = time.monotonic()
            for r, rep in enumerate(plan.replicas):       # feed every replica that has credit
                k = next_k[r]
                if k < len(inputs) and all(credits[(pe, s)].free for pe, s, _ in rep.entry):
                    for pe, s, mi in rep.entry:
                        credits[(pe, s)].sent += 1
                        self.links[pe].send_tensor(s, blobs[k][mi])
                        if self.trace is not None:
                            self.trace.host("tx", pe, Frame(FrameType.TENSOR, HOST_ID, pe, s,
                                                            0, 0, 1, b""), len(blobs[k][mi]))
                    next_k[r] = k + n_rep
                    last_progress = now
            for link in self.links.values():
                link.pump(now)
            assert self._sel is not None
            for key, _ in self._sel.select(0.02):
                link = key.data
                try:
                    frames = link.receive()
                except OSError:
                    frames = []
                for frame in frames:
                    self._on_frame(link, frame, credits, streams)
            for k in range(len(inputs)):
                if results[k] is None:
                    outs = self._collect(k, streams)
                    if outs is None:
                        break                             # outputs arrive in input order
                    results[k] = outs
                    done += 1
                    last_progress = time.monotonic()
                    if self.on_output is not None:
                        self.on_output(done, len(inputs))
            self._check_alive(results, streams)
            if time.monotonic() - last_progress > self.timeout:
                raise self._stalled(results, streams)
        seconds = time.monotonic() - t0
        self.request_stats()
        return MeshRunResult([r for r in results if r is not None], dict(self.stats),
                             dict(self.runs), self.fabric_stats(), seconds,
                             sum(link.retransmissions for link in self.links.values()))

    def _program_inputs(self, xs: Sequence[np.ndarray]) -> list[bytes]:
        """The bytes of each program input (the entry streams' index) for model inputs ``xs``:
        each input in its declared shape and dtype, cut into row bands where the plan says."""
        arrays = []
        for i, x in enumerate(xs):
            a = np.asarray(x)
            if i < len(self.plan.model_inputs):
                spec = self.plan.model_inputs[i]
                a = a.reshape(spec.shape).astype(np.dtype(spec.dtype).newbyteorder("<"))
            arrays.append(a)
        if self.plan.input_slices:
            arrays = [sl.cut(arrays[sl.model_input]) for sl in self.plan.input_slices]
        return [np.ascontiguousarray(a).tobytes() for a in arrays]

    def _on_frame(self, link: MeshPeLink, frame: Frame, credits: dict[tuple[int, int], _Credit],
                  streams: dict[tuple[int, int], _Pending]) -> None:
        pe = self.plan.pes[link.pe_id]
        if self.trace is not None:
            self.trace.host("rx", pe.id, frame, len(frame.payload) + 26)
        if int(frame.type) == READY:
            # READY names the consumer's input stream (the SOURCE route's ``a``) and how many
            # tensors it has consumed there: a credit only for the tensor the host sends next
            stream = unpack_ready(frame.payload) if len(frame.payload) >= 2 else frame.stream
            credit = credits.get((pe.id, stream))
            if credit is None:
                log.debug("%s: READY(%d) for no entry stream", pe.describe(), stream)
            else:
                credit.ready(ready_count(frame.payload))
        elif frame.type == FrameType.TENSOR:
            p = streams.setdefault((pe.id, frame.stream), _Pending())
            if frame.chunk == 0:
                p.chunks.clear()
            p.chunks[frame.chunk] = frame.payload
            if len(p.chunks) == frame.nchunks:      # routes to the host need no READY
                p.done.append(b"".join(p.chunks[c] for c in range(frame.nchunks)))
                p.chunks.clear()
        elif frame.type == FrameType.STATS:
            self.stats[pe.id] = _unpack(unpack_stats, frame, pe.id)
            self.runs[pe.id] = self.stats[pe.id].inferences
        elif frame.type == FrameType.ERROR:
            err = _unpack(unpack_error, frame, pe.id)
            if err.code == -errno.EPERM and "(from PE" in err.message:
                # a frame from a PE that is not this input's SOURCE: dropped and counted by the
                # PE (STATS rx_wrong_source); the run goes on
                self.rejections.append((pe.id, err.message))
                log.warning("%s rejected a frame: %s", pe.describe(), err.message)
                return
            raise pe_error(frame, pe.id, pe.describe(),
                           f"see the PE logs in {self.log_dir or 'the run folder'}")
        elif frame.type == FrameType.LOG:
            log.info("%s: %s", pe.name, frame.payload.decode("utf-8", "replace").rstrip())
        else:
            log.debug("%s: ignoring %s on the host link", pe.name, frame.type)

    def _collect(self, k: int, streams: dict[tuple[int, int], _Pending]) -> list[np.ndarray] | None:
        rep = self.plan.replicas[k % len(self.plan.replicas)]
        j = k // len(self.plan.replicas)
        outs: dict[int, np.ndarray] = {}
        for pe, oi, mo in rep.exit:
            # a PE sends an output to the host on stream = its OUTPUT route's b, which is the
            # model output index (CONTRACTS §6), not the stage's output index
            p = streams.get((pe, mo))
            if p is None or len(p.done) <= j:
                return None
            blob = p.done[j]
            if mo < len(self.plan.model_outputs):
                spec = self.plan.model_outputs[mo]
                arr = np.frombuffer(blob, dtype=np.dtype(spec.dtype).newbyteorder("<"))
                if arr.size != spec.num_elements:
                    raise RunError(f"{self.plan.pes[pe].describe()} output {oi} has {len(blob)} "
                                   f"bytes, not {spec.dtype}{list(spec.shape)}",
                                   hint="the images and mesh.json disagree; rebuild")
                outs[mo] = arr.reshape(spec.shape).astype(spec.dtype)
            else:
                outs[mo] = np.frombuffer(blob, dtype=np.uint8).copy()
        return [outs[i] for i in sorted(outs)]

    def _awaited(self, results: list, streams: dict[tuple[int, int], _Pending]) -> str:
        k = next((i for i, r in enumerate(results) if r is None), None)
        if k is None:
            return "nothing"
        rep = self.plan.replicas[k % len(self.plan.replicas)]
        j = k // len(self.plan.replicas)
        for pe, oi, mo in rep.exit:
            p = streams.get((pe, mo))
            if p is None or len(p.done) <= j:
                return (f"output {oi} of PE {pe} (model output {mo}) for input {k} "
                        f"(replica {rep.index})")
        return f"the outputs of input {k}"

    def _check_alive(self, results: list, streams: dict[tuple[int, int], _Pending]) -> None:
        if self.fabric is not None and self.fabric.error is not None:
            raise RunError(f"the fabric failed: {self.fabric.error}", hint="a pemesh bug; "
                           "re-run with -v and report it")
        for pe_id, proc in self.procs.items():
            if not proc.running:
                pe = self.plan.pes[pe_id]
                raise RunError(f"{pe.describe()} exited (code {proc.proc.returncode}) while "
                               f"the host awaited {self._awaited(results, streams)}:\n"
                               f"{proc.output_tail()}", hint="see the PE's log")
        gone = self.fabric.disconnected() if self.fabric is not None else []
        if gone:
            raise RunError(f"{self.plan.pes[gone[0]].describe()} closed its mesh link while the "
                           f"host awaited {self._awaited(results, streams)}",
                           hint="see the PE's log")

    def _stalled(self, results: list, streams: dict[tuple[int, int], _Pending]) -> RunError:
        """Name the PE that is stuck and what it waits for: one that does not answer a STATS
        request; else one whose link does not ACK; else, from the PEs' own STATS, the first PE
        of the waiting replica (in pipeline order) that waits for a credit, then for input."""
        awaited = self._awaited(results, streams)
        k = next((i for i, r in enumerate(results) if r is None), 0)
        r = k % len(self.plan.replicas)
        _, silent = self.request_stats(timeout=min(3.0, self.timeout))
        pe_id, why = None, ""
        if silent:
            silent.sort(key=lambda pe: (self.plan.pes[pe].replica != r, pe))
            pe_id, why = silent[0], "does not answer (no STATS to a STATS request)"
        if pe_id is None:
            for cand in sorted(self.plan.pes):
                link = self.links.get(cand)
                if (self.fabric is not None and self.fabric.pending(cand)[1]) or (
                        link is not None and link.oldest_unacked_age > 1.0):
                    pe_id, why = cand, "does not acknowledge the frames sent to it"
                    break
        if pe_id is None:
            order = sorted((pe for pe in self.plan.pes.values() if pe.replica == r),
                           key=lambda pe: (pe.record.stage_index, pe.id))
            waits = [(pe, self.stats[pe.id].waiting) for pe in order if pe.id in self.stats]
            for kind in (WAIT_CREDIT, WAIT_INPUT):
                hit = next(((pe, w) for pe, w in waits if w >> 24 == kind), None)
                if hit is not None:
                    pe_id, why = hit[0].id, describe_wait(hit[1])
                    break
        if pe_id is None:
            members = sorted((pe for pe in self.plan.pes.values() if pe.replica == r),
                             key=lambda pe: (self.runs[pe.id], pe.id))
            pe_id = members[0].id if members else min(self.plan.pes)
            why = f"ran only {self.runs[pe_id]} inference(s) and waits for nothing"
        pe = self.plan.pes[pe_id]
        return RunError(f"{pe.describe()} stopped the run: it {why}; the host awaited "
                        f"{awaited} for {self.timeout:g} s",
                        hint="see the PE logs; raise --timeout for slow models")

    def request_stats(self, timeout: float = 3.0) -> tuple[dict[int, Stats], list[int]]:
        """Ask every PE for its STATS (a STATS frame from the host) and wait for the answers.

        Returns the latest STATS per PE and the PEs that did not answer within ``timeout``."""
        assert self._sel is not None
        for link in self.links.values():
            link.send_control(FrameType.STATS)
        asked = time.monotonic()
        fresh: set[int] = set()
        deadline = asked + timeout
        while len(fresh) < len(self.links) and time.monotonic() < deadline:
            for key, _ in self._sel.select(0.02):
                link = key.data
                for frame in link.receive():
                    if frame.type == FrameType.STATS:
                        self.stats[link.pe_id] = _unpack(unpack_stats, frame, link.pe_id)
                        self.runs[link.pe_id] = self.stats[link.pe_id].inferences
                        fresh.add(link.pe_id)
                    else:       # READY credits, LOG, ...: not lost for the next inferences
                        self._on_frame(link, frame, self._entry, {})
        missing = sorted(set(self.links) - fresh)
        if missing:
            log.warning("no STATS from PE(s) %s within %g s", missing, timeout)
        return dict(self.stats), missing


# --- what a run measured ------------------------------------------------------------------

def plan_tick_ns(plan: RunPlan) -> int:
    """Virtual ns per SysTick tick of the plan's PEs under QEMU (80 on the M3, 40 on the M4F)."""
    kind = getattr(plan.geometry, "pe_kind", None)
    return QEMU_MACHINES.get(getattr(kind, "qemu", None), (None, QEMU_TICK_NS))[1]


def summary(plan: RunPlan, res: MeshRunResult, icount_shift: int | None) -> dict[str, Any]:
    """A JSON-able summary: per-PE cycles, per-link traffic, hops, throughput."""
    pes = []
    tick = plan_tick_ns(plan)
    for pe_id, pe in sorted(plan.pes.items()):
        st = res.stats.get(pe_id)
        d: dict[str, Any] = {"id": pe_id, "name": pe.name, "stage": pe.stage,
                             "replica": pe.replica, "coords": list(pe.coords),
                             "inferences": res.runs.get(pe_id, 0),
                             "cycles": st.cycles if st else None}
        if st and icount_shift is not None:
            d["instructions"] = round(ticks_to_instructions(st.cycles, icount_shift, tick))
        if st:
            d.update(accel_calls=st.accel_calls, accel_macs=st.accel_macs,
                     rx_bad_frames=st.rx_bad_frames, rx_duplicates=st.rx_duplicates)
        pes.append(d)
    cyc = [p for p in pes if p["cycles"]]
    slowest = max(cyc, key=lambda p: p["cycles"]) if cyc else None
    n = max(1, len(res.outputs))
    doc: dict[str, Any] = {
        "inferences": len(res.outputs), "seconds": round(res.seconds, 4),
        "inferences_per_s": round(res.inferences_per_s, 3), "replicas": len(plan.replicas),
        "pes": pes, "fabric": res.fabric.to_json(),
        "hops_per_inference": res.fabric.hops / n,
        "mesh_link_bytes_per_inference": {f"{a}->{b}": t.bytes / n for (a, b), t
                                          in sorted(res.fabric.mesh_links.items())},
        "host_retransmissions": res.host_retransmissions,
    }
    if slowest is not None:
        doc["slowest_stage"] = {"pe": slowest["id"], "stage": slowest["stage"],
                                "cycles": slowest["cycles"]}
        if icount_shift is not None:
            # SysTick ticks of 80 (M3) / 40 (M4F) virtual ns: the pipeline bound in virtual time
            doc["bound_inferences_per_virtual_s"] = round(
                len(plan.replicas) * 1e9 / (slowest["cycles"] * tick), 3)
    return doc


#: the summary's figures that run.json keeps under "throughput"
THROUGHPUT_KEYS = ("inferences", "seconds", "inferences_per_s", "replicas", "slowest_stage",
                   "bound_inferences_per_virtual_s")


def run_record(doc: dict[str, Any], platform: str) -> RunRecord:
    """OUT/run.json's record of a :func:`summary`: per-PE STATS by PE name, bytes per directed
    mesh link, throughput and the fabric's counters."""
    return RunRecord(
        platform=platform, pes={p["name"]: PeRunRecord.from_json(p) for p in doc["pes"]},
        links={k: t["bytes"] for k, t in doc["fabric"]["mesh_links"].items()},
        throughput={k: doc[k] for k in THROUGHPUT_KEYS if k in doc}, fabric=doc["fabric"],
        hops_per_inference=doc["hops_per_inference"],
        host_retransmissions=doc["host_retransmissions"], ranks=doc.get("ranks", []))


__all__ = ["MeshPe", "RunPlan", "MeshRunResult", "MeshRunner", "Replica", "load_plan",
           "plan_tick_ns", "summary", "run_record"]
