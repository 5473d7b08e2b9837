"""Memory and split figures of the partitioner (issue 10): JSON on stdout.

* ``memory``: the converter-made int8 TFLite models (tests/converter_zoo.py) compiled for one
  qemu_cortex_m3 PE where they fit (else qemu16): our arena against its lower bound (the
  planner's max live bytes, now without full-size accumulators) and TFLite Micro's own plan
  (``print_allocations``: the arena head is its activation plan, the total adds its runtime
  structures), PEs used.
* ``bands``: the fp32 ONNX twins (DS-CNN, ResNet-8, MobileNetV1-0.25 at 96×96×3), whose
  activations no 64 KiB PE holds, compiled for qemu16/qemu64 with band splits: the segments,
  PEs used, compile seconds, and, from one inference on host PEs (``run.json``), the bytes per
  link per inference: all links, the busiest link, and the bytes the band PEs receive (their
  rows of the input plus halos).
* ``board``: compile seconds of the fp32 models for spinnaker2_board (7,296 PEs).

Usage: .venv/bin/python benchmarks/partition.py [--no-run] [memory|bands|board ...] > p.json
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

INT8 = ("resnet8", "dscnn", "mobilenet", "autoencoder")
BANDS = {"dscnn": "qemu16", "resnet8": "qemu64", "mobilenet": "qemu64"}

_TFLM = r"""
import sys
from tflite_micro.python.tflite_micro import runtime
it = runtime.Interpreter.from_bytes(open(sys.argv[1], "rb").read(), arena_size=8 << 20)
it.print_allocations()
"""


def tflm_plan(path: Path) -> dict[str, int]:
    """TFLite Micro's arena (head: activations; total: with its runtime data)."""
    run = subprocess.run([sys.executable, "-c", _TFLM, str(path)], capture_output=True,
                         text=True, check=True)
    out = run.stdout + run.stderr
    got = dict(re.findall(r"Arena allocation (\w+) (\d+) bytes", out))
    return {k: int(v) for k, v in got.items()}


def _cli(*args: str) -> None:
    """A pemesh command, its printout on stderr (stdout is the JSON)."""
    from generator.cli import main

    with contextlib.redirect_stdout(sys.stderr):
        code = main(list(args))
    if code != 0:
        raise RuntimeError(f"pemesh {' '.join(args)}: exit {code}")


def memory() -> dict:
    from tests import converter_zoo as cz

    res = {}
    for name in INT8:
        path = cz.path(f"{name}_int8.tflite")
        with tempfile.TemporaryDirectory() as td:
            out = Path(td) / "out"
            target = ["--board", "qemu_cortex_m3"]
            try:
                _cli("compile", str(path), "-o", str(out), *target)
            except RuntimeError:
                target = ["--mesh", "qemu16"]
                _cli("compile", str(path), "-o", str(out), *target)
            m = json.loads((out / "mesh.json").read_text())
        stages = m["stages"]
        res[name] = {
            "target": target[1], "pes_used": m["partition"]["pes_used"],
            "arena_bytes": max(s["workspace_size"] for s in stages),
            "arena_lower_bound": max(s["arena_lower_bound"] for s in stages),
            "io_bytes": max(s["io_size"] for s in stages),
            "ram_bytes": max(s["memory"]["ram_bytes"] for s in stages),
        }
        plan = tflm_plan(path)
        res[name].update({"tflm_arena_head": plan.get("head"),
                          "tflm_arena_total": plan.get("total")})
        head = res[name]["tflm_arena_head"]
        if head:
            res[name]["arena_vs_tflm"] = round(res[name]["arena_bytes"] / head, 4)
    return res


def bands(run: bool = True) -> dict:
    from tests import converter_zoo as cz

    res = {}
    for name, mesh in BANDS.items():
        path = cz.path(f"{name}_f32.onnx")
        with tempfile.TemporaryDirectory() as td:
            out = Path(td) / "out"
            t0 = time.perf_counter()
            _cli("compile", str(path), "-o", str(out), "--mesh", mesh)
            seconds = time.perf_counter() - t0
            m = json.loads((out / "mesh.json").read_text())
            part = m["partition"]
            band_pes = _band_pes(m)
            fig = {"mesh": mesh, "compile_seconds": round(seconds, 2),
                   "pes_used": part["pes_used"], "stages": part["stages"],
                   "segments": [{"ops": [a + 1, b], "bands": k}
                                for a, b, k in part["band_split"]["segments"]],
                   "band_pes": len(band_pes),
                   "band_peak_bytes": part["band_split"]["peak_bytes"],
                   "input_bands": [[s["start"], s["stop"]] for s in part["input_slices"]],
                   "max_stage_ram_bytes": max(s["memory"]["ram_bytes"] for s in m["stages"])}
            if run:
                _cli("build", str(out), "--backend", "host")
                _cli("run", str(out), "--platform", "host", "--check")
                r = json.loads((out / "run.json").read_text())
                links = r["links"]
                fig.update({
                    "link_bytes_per_inference": sum(links.values()),
                    "busiest_link_bytes": max(links.values()),
                    "links_used": len(links),
                    "band_pe_received_bytes": _received(m, band_pes),
                    "check": "ok vs onnxruntime"})
        res[name] = fig
    return res


def _band_pes(m: dict) -> set[int]:
    """PEs of the band stages: up to the last stage with a concatenate (the gather of the
    bands; the halo concats come before it, the rest of these models has none)."""
    cut_stage = None
    for st in m["stages"]:
        if any("concatenate" in o.get("relax_name", "") for o in st["ops"]):
            cut_stage = st["index"]
    stages = {st["index"] for st in m["stages"] if cut_stage is None or st["index"] <= cut_stage}
    return {p["id"] for p in m["pes"] if p["stage_index"] in stages}


def _received(m: dict, pes: set[int]) -> int:
    """Bytes the band PEs receive per inference (their stage inputs)."""
    import numpy as np

    by_stage = {st["index"]: st for st in m["stages"]}
    total = 0
    for p in m["pes"]:
        if p["id"] in pes:
            for spec in by_stage[p["stage_index"]]["inputs"]:
                total += int(np.prod(spec["shape"])) * np.dtype(spec["dtype"]).itemsize
    return total


def board() -> dict:
    from tests import converter_zoo as cz

    res = {}
    for name in BANDS:
        with tempfile.TemporaryDirectory() as td:
            out = Path(td) / "out"
            t0 = time.perf_counter()
            try:
                _cli("compile", str(cz.path(f"{name}_f32.onnx")), "-o", str(out),
                     "--mesh", "spinnaker2_board")
                m = json.loads((out / "mesh.json").read_text())
                res[name] = {"compile_seconds": round(time.perf_counter() - t0, 2),
                             "pes_used": m["partition"]["pes_used"],
                             "band_split": "band_split" in m["partition"]}
            except RuntimeError as err:
                res[name] = {"error": str(err)}
    return res


def main(argv: list[str]) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    run = "--no-run" not in argv
    parts = [a for a in argv if not a.startswith("--")] or ["memory", "bands", "board"]
    out = {}
    for p in parts:
        out[p] = bands(run) if p == "bands" else {"memory": memory, "board": board}[p]()
    json.dump(out, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
