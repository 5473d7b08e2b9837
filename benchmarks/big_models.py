#!/usr/bin/env python3
"""Big models on the 7,296-PE spinnaker2_board (issue 10): a 16 MiB MLP (four 1024×1024 Gemm) and
a 12 MiB stack of four transformer blocks (D=256), split over hundreds of PEs.

Per model, one JSON object per line: ``compile_seconds`` (``pemesh compile`` for the board),
``pes_used``, the split layers (kind, parts, reduction fan-in), and the planned traffic per
inference: ``pe_to_pe_bytes`` (every PE-to-PE route × its tensor's bytes), ``host_bytes`` (host
link, in and out), ``split_layers_bytes`` (the routes whose tensor is made or read by a split
layer's part), ``max_link_bytes`` / ``mean_link_bytes`` over directed mesh links the XY routes
use (a route of h hops loads h links), and ``links_used``. With ``--run``: also build the host
images and run one inference on host PEs (``build_seconds``, ``run_seconds``,
``max_rel_error`` vs onnxruntime, ``measured_link_bytes`` from run.json).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _traffic(manifest: dict, mesh) -> dict:
    stages = manifest["stages"]
    out_bytes = {}
    for st in stages:
        for j, t in enumerate(st["outputs"]):
            out_bytes[(st["index"], j)] = _nbytes(t)
    pe_to_pe = host = split = 0
    links: dict[tuple[int, int], int] = {}
    for pe in manifest["pes"]:
        st = stages[pe["stage_index"]]
        split_pe = any(op["relax_name"].startswith(("fused_matmul", "matmul", "pemesh_relay",
                                                    "fused_conv2d", "conv2d"))
                       for op in st["ops"])
        for kind, a, dst, b in pe["routes"]:
            if kind == 2:
                if dst == 0xFFFF:
                    host += _nbytes(st["inputs"][a])
                continue
            n = out_bytes[(pe["stage_index"], a)]
            if dst == 0xFFFF:
                host += n
                continue
            pe_to_pe += n
            if split_pe:
                split += n
            path = (pe["id"],) + tuple(mesh.route(pe["id"], dst))
            for u, v in zip(path, path[1:]):
                links[(u, v)] = links.get((u, v), 0) + n
    return {"pe_to_pe_bytes": pe_to_pe, "host_bytes": host, "split_layers_bytes": split,
            "links_used": len(links), "max_link_bytes": max(links.values(), default=0),
            "mean_link_bytes": round(sum(links.values()) / max(1, len(links)), 1)}


def _nbytes(spec: dict) -> int:
    import numpy as np

    n = 1
    for d in spec["shape"]:
        n *= int(d)
    return n * np.dtype(spec["dtype"]).itemsize


def _pemesh(*args: str) -> None:
    subprocess.run([sys.executable, "-c", "import sys; from generator.cli import main; "
                    "sys.exit(main(sys.argv[1:]))", *args], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL)


def measure(name: str, proto, shape, work: Path, run: bool) -> dict:
    import numpy as np

    from generator.boards.catalog import load_mesh
    from tests.bigmodel_zoo import weight_bytes
    from tests.model_zoo import save

    path = save(proto, work / f"{name}.onnx")
    out = work / name
    t0 = time.perf_counter()
    _pemesh("compile", str(path), "-o", str(out), "--mesh", "spinnaker2_board", "--force")
    compile_s = time.perf_counter() - t0
    manifest = json.loads((out / "mesh.json").read_text())
    mesh = load_mesh("spinnaker2_board")
    res = {"model": name, "weight_bytes": weight_bytes(proto),
           "compile_seconds": round(compile_s, 2),
           "manifest_compile_seconds": manifest["compile_seconds"],
           "pes_used": manifest["partition"]["pes_used"],
           "split_layers": [{k: d[k] for k in ("op", "kind", "shards", "fan_in")}
                            for d in manifest["partition"]["sharded_layers"]],
           **_traffic(manifest, mesh)}
    if run:
        import onnxruntime as ort

        t0 = time.perf_counter()
        _pemesh("build", str(out), "--backend", "host", "-j", "2")
        res["build_seconds"] = round(time.perf_counter() - t0, 1)
        x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
        np.save(work / f"{name}_x.npy", x)
        t0 = time.perf_counter()
        _pemesh("run", str(out), "--platform", "host", "--input", str(work / f"{name}_x.npy"),
                "--output", str(work / f"{name}_y.npy"), "--timeout", "120")
        res["run_seconds"] = round(time.perf_counter() - t0, 1)
        ref = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
            None, {"x": x})[0]
        got = np.load(work / f"{name}_y.npy").reshape(ref.shape)
        res["max_rel_error"] = float(np.abs(got - ref).max() / np.abs(ref).max())
        links = json.loads((out / "run.json").read_text()).get("links", {})
        vals = [v if isinstance(v, int) else v.get("bytes", 0) for v in links.values()]
        res["measured_link_bytes"] = {"links": len(vals), "max": max(vals, default=0),
                                      "total": sum(vals)}
    return res


def main() -> int:
    from tests.bigmodel_zoo import big_mlp, transformer_stack

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--run", action="store_true", help="also build and run on host PEs")
    ap.add_argument("--model", choices=("mlp", "transformer"), action="append")
    args = ap.parse_args()
    models = {"mlp": ("mlp_16mib", big_mlp, (1, 1024)),
              "transformer": ("transformer_12mib", transformer_stack, (1, 8, 256))}
    with tempfile.TemporaryDirectory(prefix="pemesh-big-") as tmp:
        for key in args.model or list(models):
            name, make, shape = models[key]
            print(json.dumps(measure(name, make(), shape, Path(tmp), args.run)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
