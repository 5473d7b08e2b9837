"""``pemesh run OUT``: start the PEs of OUT/ (one or many), feed inputs, collect, check.

One path for a single PE and a mesh: :class:`generator.mesh.runner.MeshRunner` launches the PEs
(and the fabric when there is more than one), the outputs of every inference are checked against
the anchor's reference with ``--check``, and OUT/run.json records what each PE measured.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from generator.errors import UsageError
from generator.manifest import OutTree, read_manifest, read_reference, write_run
from generator.mesh.fabric import Faults
from generator.mesh.launch import DEFAULT_ICOUNT_SHIFT
from generator.mesh.runner import MeshRunner, load_plan, run_record, summary
from generator.types import TensorSpec

log = logging.getLogger(__name__)


def load_inputs(paths: Sequence[str], specs: Sequence[TensorSpec],
                default: Sequence[np.ndarray] = ()) -> list[np.ndarray]:
    """Inputs from .npy files (one per model input) or one .npz; ``default`` when none given."""
    if not paths:
        arrays = list(default)
    else:
        arrays = []
        for p in paths:
            try:
                loaded = np.load(p, allow_pickle=False)
            except (OSError, ValueError) as err:
                raise UsageError(f"cannot read input {p}: {err}",
                                 hint="pass a .npy per model input (or one .npz)") from None
            if isinstance(loaded, np.lib.npyio.NpzFile):
                arrays.extend(loaded[k] for k in loaded.files)
            else:
                arrays.append(loaded)
    if len(arrays) != len(specs):
        raise UsageError(f"the model takes {len(specs)} input(s), got {len(arrays)}",
                         hint="pass one --input per model input")
    result = []
    for i, (a, spec) in enumerate(zip(arrays, specs)):
        if tuple(a.shape) != spec.shape or a.dtype != np.dtype(spec.dtype):
            if a.size == spec.num_elements and np.can_cast(a.dtype, spec.dtype, "same_kind"):
                a = a.reshape(spec.shape).astype(spec.dtype)
            else:
                raise UsageError(f"input {i} ({spec.name}) is {a.dtype}{list(a.shape)}, the model "
                                 f"wants {spec.dtype}{list(spec.shape)}",
                                 hint="convert the input to the model's shape and dtype")
        result.append(np.ascontiguousarray(a))
    return result


def save_outputs(path: str, outputs: Sequence[np.ndarray], specs: Sequence[TensorSpec]) -> None:
    """One output → .npy; several → .npz keyed by output name."""
    if len(outputs) == 1 and not path.endswith(".npz"):
        np.save(path, outputs[0])
    else:
        np.savez(path, **{s.c_name: o for s, o in zip(specs, outputs)})


def _faults(args: argparse.Namespace) -> Faults | None:
    if getattr(args, "garbage_rate", 0) or getattr(args, "bitflip_rate", 0):
        return Faults(seed=int(getattr(args, "fault_seed", 0) or 0),
                      garbage_rate=float(getattr(args, "garbage_rate", 0) or 0),
                      bitflip_rate=float(getattr(args, "bitflip_rate", 0) or 0))
    return None


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
        print(f"faults injected: {fab.injected_bitflips} bit flips, "
              f"{fab.injected_garbage_bytes} garbage bytes; PEs counted {seen} bad frames")
    print(f"throughput: {doc['inferences']} inference(s) in {doc['seconds']:.3f} s = "
          f"{doc['inferences_per_s']:.2f} inferences/s over {doc['replicas']} replica(s)")
    if "slowest_stage" in doc and len(doc["pes"]) > 1:
        s = doc["slowest_stage"]
        print(f"slowest stage: {s['stage']} on PE {s['pe']}: {s['cycles']} cycles per inference")


def run_command(args: argparse.Namespace) -> int:
    """``pemesh run OUT [--input X.npy] [--output Y.npy] [--platform qemu|host] [--check]
    [--count K]``, for any number of PEs."""
    from generator.verify.check import check_outputs, expected_outputs

    out = Path(args.out).resolve()
    tree = OutTree(out)
    manifest = read_manifest(out)
    plan = load_plan(out, manifest)
    stored = read_reference(out, manifest, "inputs") if not args.input else ()
    inputs = load_inputs(args.input, plan.model_inputs, stored)
    count = max(1, int(getattr(args, "count", 1) or 1))
    timeout = float(getattr(args, "timeout", 60.0) or 60.0)
    faults = _faults(args)
    shift = DEFAULT_ICOUNT_SHIFT if args.platform == "qemu" else None
    with MeshRunner(plan, platform=args.platform, icount_shift=shift, timeout=timeout,
                    hop_delay_s=float(getattr(args, "hop_delay", 0) or 0), faults=faults,
                    log_dir=tree.run_dir) as runner:
        res = runner.infer_many([inputs] * count)
    doc = summary(plan, res, shift)
    write_run(out, run_record(doc, args.platform))
    _print_run(doc, shift, faults, res)
    if args.output:
        save_outputs(args.output, res.outputs[-1], plan.model_outputs)
        print(f"output written to {args.output}")
    if args.check:
        refs = expected_outputs(out, manifest, inputs, user_inputs=bool(args.input))
        check_outputs(res.outputs, refs, tree.run_dir)
    return 0
