"""The steps of ``pemesh run OUT`` that a one-process run and an MPI job share: read and check
OUT/, the inputs and every option before anything starts (:func:`prepare_run`); write run.json,
print per-PE cycles and per-link traffic, write the trace and ``--output``, and ``--check`` the
outputs against the anchor's reference (:func:`finish_run`).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from generator.errors import UsageError
from generator.manifest import OutTree, read_manifest, read_reference, write_run
from generator.paths import unwritable_reason
from generator.mesh.fabric import Faults
from generator.mesh.launch import DEFAULT_ICOUNT_SHIFT, check_capacity
from generator.mesh.runner import load_plan, plan_tick_ns, run_record, summary
from generator.mesh.trace import TraceRecorder
from generator.types import TensorSpec

log = logging.getLogger(__name__)


def output_path(path: str, n_outputs: int) -> Path:
    """Check ``--output`` before anything runs: a writable file path ending in .npy (one
    output) or .npz; UsageError naming the problem otherwise."""
    out = Path(path)
    if out.suffix not in (".npy", ".npz"):
        raise UsageError(f"--output {path}: the name must end in .npy or .npz",
                         hint=f"e.g. --output {out.with_suffix('.npz' if n_outputs > 1 else '.npy')}")
    if out.suffix == ".npy" and n_outputs > 1:
        raise UsageError(f"--output {path}: the model has {n_outputs} outputs; one .npy holds one",
                         hint=f"use --output {out.with_suffix('.npz')}")
    if out.is_dir():
        raise UsageError(f"--output {path} is a folder", hint="name a file in it")
    why = unwritable_reason(out)
    if why is not None:
        raise UsageError(f"--output {path}: {why}", hint="write to a folder you own")
    return out


def save_outputs(path: Path, outputs: Sequence[np.ndarray], specs: Sequence[TensorSpec]) -> None:
    """One output → ``path`` (.npy); several → .npz keyed by output name; written to exactly
    ``path`` (numpy would append a suffix)."""
    try:
        with open(path, "wb") as f:
            if path.suffix == ".npy":
                np.save(f, outputs[0])
            else:
                np.savez(f, **{s.c_name: o for s, o in zip(specs, outputs)})
    except OSError as err:
        raise UsageError(f"cannot write --output {path}: {err.strerror or err}",
                         hint="write to a folder you own") from None


def _faults(args: argparse.Namespace) -> Faults | None:
    rates = {k: float(getattr(args, k, 0) or 0)
             for k in ("garbage_rate", "bitflip_rate", "drop_rate")}
    if any(rates.values()):
        return Faults(seed=int(getattr(args, "fault_seed", 0) or 0), **rates)
    return None


class Progress:
    """Inferences done, rate and ETA while a long run goes: a rich bar on a terminal, else a
    plain line on stderr about every 10 %. Quiet for a single inference."""

    def __init__(self, total: int):
        self.total, self.t0, self.last = total, time.monotonic(), -1
        self.bar = None
        if total > 1 and sys.stderr.isatty():
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress as Bar,
                                       TimeElapsedColumn, TimeRemainingColumn)
            self.bar = Bar("inferences", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                           TimeRemainingColumn(), transient=True)
            self.task = self.bar.add_task("run", total=total)
            self.bar.start()

    def __call__(self, done: int, total: int) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=done)
            return
        step = max(1, total // 10)
        if total > 1 and (done % step == 0 or done == total) and done != self.last:
            self.last = done
            dt = time.monotonic() - self.t0
            rate = done / dt if dt > 0 else 0.0
            eta = (total - done) / rate if rate > 0 else 0.0
            print(f"run: {done}/{total} inferences, {rate:.2f}/s, ETA {eta:.0f} s",
                  file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _print_run(doc: dict, shift: int | None, faults: Faults | None, res) -> None:
    for p in doc["pes"]:
        if p["cycles"] is None:
            cyc = "n/a"
        elif shift is not None:
            cyc = (f"{p['cycles']} cycles (SysTick) = {p['instructions']} instructions "
                   f"(QEMU icount shift={shift})")
        else:
            cyc = f"{p['cycles']} cycles (host clock)"
        print(f"{p['name']} (PE {p['id']}, stage {p['stage']}, replica {p['replica']}, "
              f"coords {tuple(p['coords'])}): {p['inferences']} run(s), last {cyc}")
        if p.get("accel_calls"):
            print(f"{p['name']}: accelerator wrappers: {p['accel_calls']} call(s), "
                  f"{p['accel_macs']} MACs")
    fab = res.fabric
    for (a, b), t in sorted(fab.mesh_links.items()):
        print(f"link {a}->{b}: {t.frames} frames, {t.bytes} bytes")
    if len(doc["pes"]) > 1:
        print(f"fabric: {fab.routed_frames} frames routed, {fab.hops} hops, "
              f"{fab.retransmissions} retransmissions, {fab.bad_frames} bad frames from PEs")
    if faults is not None:
        seen = sum(st.rx_bad_frames for st in res.stats.values())
        resent = sum(st.ready_resent for st in res.stats.values())
        print(f"faults injected: {fab.injected_bitflips} bit flips, "
              f"{fab.injected_garbage_bytes} garbage bytes, {fab.injected_drops} dropped frames; "
              f"PEs counted {seen} bad frames and resent {resent} READY credits")
    for r in doc.get("ranks", ()):
        print(f"rank {r['rank']} (host {r['host']}): {len(r['pes'])} PEs, {r['frames_out']} frames "
              f"to other ranks, {r['frames_in']} from them")
    print(f"throughput: {doc['inferences']} inference(s) in {doc['seconds']:.3f} s = "
          f"{doc['inferences_per_s']:.2f} inferences/s over {doc['replicas']} replica(s)")
    if "slowest_stage" in doc and len(doc["pes"]) > 1:
        s = doc["slowest_stage"]
        print(f"slowest stage: {s['stage']} on PE {s['pe']}: {s['cycles']} cycles per inference")


@dataclass
class RunSetup:
    """What ``pemesh run`` checked and prepared before anything starts."""

    out: Path
    tree: OutTree
    manifest: Any
    plan: Any
    items: list
    output: Path | None
    trace_path: Path | None
    count: int
    faults: Faults | None
    shift: int | None
    trace: TraceRecorder | None
    feed: list


def prepare_run(args: argparse.Namespace, *, capacity: bool = True) -> RunSetup:
    """Read OUT/, the inputs and every option; refuse what cannot run (``capacity``: this
    machine's memory and file descriptors for all the PEs)."""
    from generator.verify.inputs import load_items

    out = Path(args.out).resolve()
    tree = OutTree(out)
    manifest = read_manifest(out)
    if manifest.host_protocol != "pemesh":
        raise UsageError(f"{out} was compiled with --host-protocol {manifest.host_protocol}: its "
                         "host link speaks the MLPerf Tiny (EEMBC) text protocol, not pemesh frames",
                         hint=f"run 'pemesh serve {out}' and drive the printed serial device with "
                              "the MLPerf Tiny runner, or recompile without --host-protocol")
    plan = load_plan(out, manifest)
    stored = read_reference(out, manifest, "inputs") if not args.input else ()
    items = load_items(args.input, plan.model_inputs, stored)
    output = output_path(args.output, len(plan.model_outputs)) if args.output else None
    trace_path = Path(args.trace) if getattr(args, "trace", None) else None
    why = unwritable_reason(trace_path) if trace_path is not None else None
    if why is not None:
        raise UsageError(f"--trace {trace_path}: {why}", hint="write the trace to a folder you own")
    count = max(1, int(getattr(args, "count", 1) or 1))
    if capacity:
        check_capacity(len(plan.pes), args.platform)
    shift = DEFAULT_ICOUNT_SHIFT if args.platform == "qemu" else None
    trace = TraceRecorder() if trace_path is not None else None
    feed = [item for item in items for _ in range(count)]
    return RunSetup(out, tree, manifest, plan, items, output, trace_path, count, _faults(args),
                    shift, trace, feed)


def runner_options(args: argparse.Namespace, s: RunSetup) -> dict[str, Any]:
    """The MeshRunner keywords of a run."""
    return dict(platform=args.platform, icount_shift=s.shift,
                timeout=float(getattr(args, "timeout", 60.0) or 60.0),
                hop_delay_s=float(getattr(args, "hop_delay", 0) or 0), faults=s.faults,
                log_dir=s.tree.run_dir, trace=s.trace)


def finish_run(args: argparse.Namespace, s: RunSetup, res: Any,
               extra: dict[str, Any] | None = None) -> int:
    """run.json, the printout, the trace, --output and --check of a finished run. ``extra``
    (MPI runs): per-PE ``rank``/``host`` (``pes``: id → dict) and the ``ranks`` list."""
    from generator.verify.check import check_outputs, expected_outputs_for

    plan, shift, trace, count, items = s.plan, s.shift, s.trace, s.count, s.items
    doc = summary(plan, res, shift)
    if extra:
        for p in doc["pes"]:
            p.update(extra["pes"].get(p["id"], {}))
        doc["ranks"] = extra["ranks"]
    write_run(s.out, run_record(doc, args.platform))
    _print_run(doc, shift, s.faults, res)
    if trace is not None:
        seconds_per_cycle = plan_tick_ns(plan) * 1e-9 if shift is not None else 1e-9
        trace.write(s.trace_path, trace.to_chrome(
            plan.pes, {i: st.cycles for i, st in res.stats.items()}, seconds_per_cycle,
            float(plan.geometry.on_chip.bytes_per_s)))
        print(f"trace written to {s.trace_path} (open it in ui.perfetto.dev or chrome://tracing)")
    if s.output is not None:
        last = res.outputs[-len(items) * count:][count - 1::count]    # the last run of each item
        outs = last[0] if len(items) == 1 else [np.stack(o) for o in zip(*last)]
        save_outputs(s.output, outs, plan.model_outputs)
        print(f"output written to {s.output}"
              + (f" ({len(items)} items along the first axis)" if len(items) > 1 else ""))
    if args.check:
        refs, anchor = expected_outputs_for(s.out, s.manifest, items, user_inputs=bool(args.input))
        check_outputs(res.outputs, [refs[k // count] for k in range(len(s.feed))], s.tree.run_dir,
                      anchor=anchor)
    return 0
