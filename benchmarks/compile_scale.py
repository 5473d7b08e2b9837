#!/usr/bin/env python3
"""Compile + generate seconds for meshes of 1 … 7,296 PEs (issue 3; goal: the 7,296-PE board in
under 60 s on 2 cores). The model is replicated over the whole mesh (--replicas max), so every
PE gets an app: this measures partition + placement + per-PE app rendering at scale.

Prints JSON: {"runs": [{mesh, pes, stages, replicas, pes_used, seconds, plan_seconds}, ...]}.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MESHES = ("qemu1", "qemu4", "qemu16", "qemu64", "qemu7296", "spinnaker2_board")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default=str(ROOT / "examples" / "tiny_cnn.onnx"))
    ap.add_argument("--mesh", action="append", default=None)
    args = ap.parse_args()
    from generator.cli import main as pemesh

    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for mesh in args.mesh or MESHES:
            out = Path(tmp) / mesh
            t0 = time.perf_counter()
            with contextlib.redirect_stdout(sys.stderr):     # stdout: the JSON figures only
                rc = pemesh(["compile", args.model, "-o", str(out), "--mesh", mesh,
                             "--replicas", "max", "--force"])
            seconds = time.perf_counter() - t0
            if rc != 0:
                runs.append({"mesh": mesh, "error": rc})
                continue
            m = json.loads((out / "mesh.json").read_text())
            runs.append({"mesh": mesh, "pes": m["mesh"]["num_pes"],
                         "stages": m["partition"]["stages"],
                         "replicas": m["partition"]["replicas"],
                         "pes_used": m["partition"]["pes_used"],
                         "apps_rendered": len(m["pes"]),
                         "seconds": round(seconds, 2), "plan_seconds": m["plan_seconds"]})
            shutil.rmtree(out)
    print(json.dumps({"model": args.model, "runs": runs}, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
