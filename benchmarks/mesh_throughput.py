"""Pipeline throughput of a 4-stage mesh on QEMU vs the bound its slowest stage sets.

Builds an MLP of 8 equal layers (deterministic weights), compiles it with ``pemesh compile --mesh
qemu4`` (one replica: the partitioner splits it into as many stages as the mesh has PEs), builds
the bare-metal images and runs them under QEMU with the fabric routing between the PEs. It
measures

- the latency of one inference alone (nothing else in flight),
- the wall-clock throughput of K pipelined inferences,
- every stage's cycles per inference (STATS: SysTick ticks, 80 virtual ns each under QEMU),
- the bound the slowest stage sets: in virtual time ``1 / (max cycles × 80 ns)``, and in wall
  time ``sum(cycles) / (latency × max(cycles))`` (each stage's share of the alone-latency taken
  as its wall time; transfers counted as compute, so the wall bound is an estimate),
- bytes per inference on every directed mesh link and on the host links,

and prints one JSON document.

    .venv/bin/python benchmarks/mesh_throughput.py [--count K] [--layers N] [--width W]
                                                   [--mesh qemu4] [--keep DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from generator.cli import main as pemesh  # noqa: E402
from generator.mesh.runner import MeshRunner, load_plan  # noqa: E402
from generator.mesh.launch import QEMU_TICK_NS  # noqa: E402


def mlp(path: Path, layers: int, width: int) -> Path:
    """An MLP of ``layers`` × (MatMul width×width + Add + Relu), fixed seed."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(5)
    nodes, inits, cur = [], [], "x"
    for i in range(layers):
        w = (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)
        b = (0.1 * rng.standard_normal(width)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        nodes += [helper.make_node("MatMul", [cur, f"w{i}"], [f"m{i}"]),
                  helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"]),
                  helper.make_node("Relu", [f"a{i}"], [f"h{i}"])]
        cur = f"h{i}"
    nodes.append(helper.make_node("Identity", [cur], ["y"]))
    graph = helper.make_graph(nodes, "mlp_bench",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, width])],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def measure(out: Path, count: int) -> dict:
    plan = load_plan(out)
    rng = np.random.default_rng(1)
    xs = [[rng.standard_normal(s.shape).astype(s.dtype) for s in plan.model_inputs]
          for _ in range(count + 1)]
    with MeshRunner(plan, timeout=60, log_dir=out / "run") as runner:
        t0 = time.monotonic()
        runner.infer_many(xs[:1])
        latency = time.monotonic() - t0
        before = runner.fabric.stats()
        host0 = {pe: (link.tx_bytes, link.rx_bytes) for pe, link in runner.links.items()}
        res = runner.infer_many(xs[1:])
        host1 = {pe: (link.tx_bytes, link.rx_bytes) for pe, link in runner.links.items()}
    cycles = {pe: res.stats[pe].cycles for pe in sorted(res.stats)}
    slow_pe = max(cycles, key=cycles.get)
    c_max, c_sum = cycles[slow_pe], sum(cycles.values())
    fab = res.fabric
    links = {}
    for (a, b), t in sorted(fab.mesh_links.items()):
        t0_ = before.mesh_links.get((a, b))
        links[f"{a}->{b}"] = (t.bytes - (t0_.bytes if t0_ else 0)) / count
    measured = res.inferences_per_s
    bound_wall = c_sum / (latency * c_max)
    # Each QEMU PE is a host process: with fewer host cores than busy stages, the stages share
    # the cores, and no pipeline can beat cores / (sum of stage times). That is the bound this
    # machine sets; the stage bound is what a mesh with one core per PE would allow.
    cores = os.cpu_count() or 1
    bound_cores = cores / latency if cores < len(cycles) else bound_wall
    bound_machine = min(bound_wall, bound_cores)
    return {
        "mesh": plan.geometry.name, "stages": len({pe.stage for pe in plan.pes.values()}),
        "replicas": len(plan.replicas), "pes": len(plan.pes), "inferences": count,
        "latency_alone_s": round(latency, 4),
        "throughput_inferences_per_s": round(measured, 3),
        "bound_inferences_per_s_wall_estimate": round(bound_wall, 3),
        "efficiency_vs_wall_bound": round(measured / bound_wall, 3),
        "host_cores": cores,
        "bound_inferences_per_s_host_cores": round(bound_cores, 3),
        "efficiency_vs_machine_bound": round(measured / bound_machine, 3),
        "speedup_vs_latency": round(measured * latency, 3),
        "stage_cycles": {plan.pes[pe].stage: c for pe, c in cycles.items()},
        "slowest_stage": {"pe": slow_pe, "stage": plan.pes[slow_pe].stage, "cycles": c_max},
        "bound_inferences_per_virtual_s": round(1e9 / (c_max * QEMU_TICK_NS), 3),
        "mesh_link_bytes_per_inference": links,
        "host_link_bytes_per_inference": {
            str(pe): {"to_pe": (host1[pe][0] - host0[pe][0]) / count,
                      "from_pe": (host1[pe][1] - host0[pe][1]) / count}
            for pe in sorted(host1) if host1[pe] != host0[pe]},
        "retransmissions": fab.retransmissions, "bad_frames": fab.bad_frames,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=16, help="pipelined inferences (default 16)")
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--width", type=int, default=96)
    ap.add_argument("--mesh", default="qemu4")
    ap.add_argument("--keep", default=None, help="build in this folder and keep it")
    args = ap.parse_args(argv)
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="pemesh-bench-"))
    try:
        work.mkdir(parents=True, exist_ok=True)
        model = mlp(work / "mlp.onnx", args.layers, args.width)
        out = work / "out"
        t0 = time.monotonic()
        with contextlib.redirect_stdout(sys.stderr):     # stdout: the JSON figures only
            if pemesh(["compile", str(model), "-o", str(out), "--mesh", args.mesh,
                       "--force"]) != 0:
                return 1
            if pemesh(["build", str(out), "--backend", "baremetal"]) != 0:
                return 1
        build_s = time.monotonic() - t0
        doc = measure(out, args.count)
        doc["compile_and_build_s"] = round(build_s, 2)
        print(json.dumps(doc, indent=2, sort_keys=True))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
