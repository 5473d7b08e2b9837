"""A 256-PE mesh of host PEs run in one process and over 2 and 4 MPI ranks on this machine.

Two workloads on a 16×16 mesh (4×4 chips of 4×4 PEs), host-process PEs:

- ``tiny_cnn_x128``: examples/tiny_cnn.onnx with 128 replicas of two pipeline stages: all 256
  PEs. Each replica's two PEs sit on one chip and a rank owns whole chips, so no frame needs to
  cross ranks: what the block assignment is for.
- ``autoencoder_x25``: the MLP autoencoder of tests/mesh_zoo.py (1.25 MiB of weights, ten
  stages) with as many replicas as fit: 25 × 10 = 250 PEs. Its pipelines snake across chips,
  so frames cross ranks.

Each is run with ``pemesh run OUT --platform host --count K``: once as one process and once
under ``mpirun -n R`` (Open MPI on shared memory + loopback) for each R. The script reports
inferences/s (the run's own figure: first input sent .. last output received), the wall time of
the whole command (start-up and teardown of every PE included), the frames that crossed ranks
and the fabric's routed frames and mesh-link bytes (which R should not change, but for READY
frames a PE resends on its own timer), and prints one JSON document.

All ranks share this machine's cores, so more ranks do not add compute here: the figures show
what the sharding costs (or saves: R fabric shards route in parallel) on one host, not the
speed-up of a cluster.

    .venv/bin/python benchmarks/mpi_ranks.py [--ranks 1 2 4] [--count K] [--keep DIR]
                                             [--workload tiny_cnn_x128 autoencoder_x25]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from generator.cli import main as pemesh  # noqa: E402

MESH = """mesh:
  name: host256
  description: "16x16 PEs: 4x4 chips of 4x4 PEs (benchmarks/mpi_ranks.py)"
  pe_kind: qemu_cortex_m3
  topology: {chips_x: 4, chips_y: 4, pes_x: 4, pes_y: 4}
  host_links:
    - pe 0 of chip (0,0)
  links:
    on_chip: {bytes_per_s: 1000000, latency_ns: 10000}
    chip_to_chip: {bytes_per_s: 250000, latency_ns: 40000}
"""
#: name → (model, --replicas)
WORKLOADS = {"tiny_cnn_x128": (str(ROOT / "examples" / "tiny_cnn.onnx"), "128"),
             "autoencoder_x25": ("autoencoder", "max")}
MPIRUN = ["mpirun", "--oversubscribe", "--mca", "btl", "self,vader", "--mca",
          "oob_tcp_if_include", "lo"]


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    return env


def run(out: Path, ranks: int, count: int) -> dict:
    cmd = [sys.executable, "-m", "generator.cli", "run", str(out), "--platform", "host",
           "--count", str(count), "--timeout", "120"]
    if ranks > 1:
        cmd = [*MPIRUN, "-n", str(ranks), *cmd]
    t0 = time.monotonic()
    res = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=1800)
    wall = time.monotonic() - t0
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stderr[-3000:]}")
    doc = json.loads((out / "run.json").read_text())
    ranks_doc = doc.get("ranks", [])
    return {
        "ranks": ranks,
        "inferences": doc["throughput"]["inferences"],
        "inferences_per_s": doc["throughput"]["inferences_per_s"],
        "run_seconds": doc["throughput"]["seconds"],
        "command_seconds": round(wall, 2),
        "cross_rank_frames": sum(r["frames_out"] for r in ranks_doc),
        "per_rank": [{"rank": r["rank"], "pes": len(r["pes"]), "frames_out": r["frames_out"],
                      "frames_in": r["frames_in"]} for r in ranks_doc],
        "routed_frames": doc["fabric"]["routed_frames"],
        "retransmissions": doc["fabric"]["retransmissions"],
        "mesh_link_bytes": sum(doc["links"].values()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--count", type=int, default=1024, help="inferences per run")
    ap.add_argument("--keep", default=None, help="build in this folder and keep it")
    ap.add_argument("--workload", nargs="+", choices=sorted(WORKLOADS),
                    default=list(WORKLOADS))
    args = ap.parse_args()
    if shutil.which("mpirun") is None and any(r > 1 for r in args.ranks):
        raise SystemExit("needs mpirun: apt-get install openmpi-bin libopenmpi-dev; "
                         "pip install 'pemesh[mpi]'")
    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="pemesh-mpi-bench-"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        (tmp / "mesh256.yaml").write_text(MESH)
        docs = []
        for name in args.workload:
            model, replicas = WORKLOADS[name]
            if model == "autoencoder":
                import onnx
                from tests.mesh_zoo import mlp_autoencoder
                model = tmp / "autoencoder.onnx"
                onnx.save(mlp_autoencoder(), model)
            out = tmp / name
            with contextlib.redirect_stdout(sys.stderr):        # stdout: the JSON only
                assert pemesh(["compile", str(model), "-o", str(out), "--mesh",
                               str(tmp / "mesh256.yaml"), "--replicas", replicas,
                               "--force"]) == 0
                assert pemesh(["build", str(out), "--backend", "host"]) == 0
            pes = len(json.loads((out / "mesh.json").read_text())["pes"])
            docs.append({"workload": name, "pes": pes, "replicas": replicas,
                         "runs": [run(out, r, args.count) for r in args.ranks]})
        print(json.dumps({"benchmark": "mpi_ranks", "mesh": "16x16 (4x4 chips of 4x4 PEs)",
                          "platform": "host", "count": args.count, "cores": os.cpu_count(),
                          "workloads": docs}, indent=2))
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
