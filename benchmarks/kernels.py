"""Instructions per MAC of the int8 kernels, scheduled vs unscheduled (issue 11): JSON on stdout.

Per layer kind and shape (tests/kernel_zoo.py: issue 11's table plus two more conv shapes) and
PE kind (``qemu_cortex_m3`` = lm3s6965evb; ``qemu_mps2_an386`` = Cortex-M4F when listed), the
single-layer model is compiled twice — ``PEMESH_SCHEDULES=0`` (the unscheduled auto-inline code)
and with the Cortex-M schedules (generator/aot/schedules) — built bare-metal and run twice on
QEMU under ``-icount shift=6``; the second inference's SysTick ticks are turned into guest
instructions (ticks per instruction per machine: launch.py) and divided by the layer's MACs. The
figure includes the runtime's fixed per-inference overhead (~112 instructions), which is below
0.004 per MAC for every layer here. Every scheduled output is compared bit for bit with the
unscheduled one on the same input (and both with the TVM host reference).

Whole models (``--models``): the int8 QDQ models of tests/quant_zoo.py by name, or paths of
converter-made full-integer ``.tflite`` files (MLPerf Tiny DS-CNN, ResNet-8), compiled for one PE
(or the ``qemu16`` mesh of the board's kind when a model does not fit one), instructions summed
over the PEs.

Usage: .venv/bin/python benchmarks/kernels.py [--boards B,..] [--layers L,..] [--models M,..]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from tests.kernel_zoo import (EXTRA, FP32_LAYERS, LAYERS, imported, layer,  # noqa: E402
                              run_on_qemu)

#: issue 11's table: CMSIS-NN on the same M3 machine, -O2 (instructions per MAC)
CMSIS_NN_M3 = {"conv3x3": 3.34, "depthwise3x3": 9.23, "pointwise": 3.11, "dense": 3.52}


def _instr(ticks: int, board: str) -> float:
    from generator.mesh.launch import DEFAULT_ICOUNT_SHIFT, tick_ns
    return ticks * tick_ns(board) / float(1 << DEFAULT_ICOUNT_SHIFT)


def _with_schedules(on: bool, fn, *a, **kw):
    old = os.environ.get("PEMESH_SCHEDULES")
    os.environ["PEMESH_SCHEDULES"] = "1" if on else "0"
    try:
        return fn(*a, **kw)
    finally:
        if old is None:
            os.environ.pop("PEMESH_SCHEDULES")
        else:
            os.environ["PEMESH_SCHEDULES"] = old


def fp32_figures(kind: str, board: str, work: Path) -> dict:
    from tests.kernel_zoo import fp32_layer

    runs = {}
    for on in (False, True):
        model, macs = fp32_layer(kind)
        runs[on] = _with_schedules(on, run_on_qemu, model, board,
                                   work / f"{kind}_{board}_{int(on)}")
    return {"layer": kind, "board": board, "dtype": "float32", "macs": macs,
            "instr_per_mac_unscheduled": round(_instr(runs[False]["ticks"], board) / macs, 3),
            "instr_per_mac_scheduled": round(_instr(runs[True]["ticks"], board) / macs, 3),
            "max_abs_diff_vs_unscheduled": float(max(np.max(np.abs(a - b)) for a, b in
                                                     zip(runs[False]["outputs"],
                                                         runs[True]["outputs"]))),
            "within_1e-5": all(np.allclose(a, b, rtol=1e-5, atol=1e-5) for a, b in
                               zip(runs[False]["outputs"], runs[True]["outputs"]))}


def layer_figures(kind: str, board: str, work: Path) -> dict:
    if kind.startswith("f32_"):
        return fp32_figures(kind, board, work)
    q = layer(kind)
    runs = {}
    for on in (False, True):
        runs[on] = _with_schedules(on, run_on_qemu, imported(q), board,
                                   work / f"{kind}_{board}_{int(on)}")
    macs = q.macs
    before = _instr(runs[False]["ticks"], board) / macs
    after = _instr(runs[True]["ticks"], board) / macs
    doc = {"layer": kind, "board": board, "in_shape": list(q.in_shape),
           "out_shape": list(q.out_shape), "kernel": list(q.kernel), "groups": q.groups,
           "macs": macs, "instr_per_mac_unscheduled": round(before, 3),
           "instr_per_mac_scheduled": round(after, 3),
           "bit_exact_vs_unscheduled": all(np.array_equal(a, b) for a, b in
                                           zip(runs[False]["outputs"], runs[True]["outputs"])),
           "exact_vs_tvm_reference": runs[True]["exact_vs_reference"]}
    if kind in CMSIS_NN_M3 and board == "qemu_cortex_m3":
        doc["cmsis_nn_m3_o2"] = CMSIS_NN_M3[kind]
    return doc


def _macs(model) -> int:
    from generator.aot.stage import prepare_model
    pm = prepare_model(model.mod, model.name)
    return sum(f.macs for f in (pm.funcs[s.func] for s in pm.prog.steps))


def model_figures(name: str, board: str, work: Path) -> dict:
    from generator.boards.catalog import load_mesh
    from generator.errors import DoesNotFitError
    from generator.frontend.importers import import_onnx
    from generator.frontend.quantize import quantize_model
    from tests.quant_zoo import QZOO, QZOO_BIG

    zoo = {**QZOO, **QZOO_BIG}
    out = {"model": name, "board": board}
    for on in (False, True):
        tag = "scheduled" if on else "unscheduled"
        if name.endswith(".tflite"):      # a converter-made full-integer TFLite model
            from generator.frontend.importers import load_model
            from generator.frontend.quantize import quantize_if_qdq
            model = quantize_if_qdq(load_model(name), Path(name))
            out["model"] = Path(name).stem
        else:
            model = quantize_model(import_onnx(zoo[name](), name=name))
        out["macs"] = _macs(model)
        try:
            r = _with_schedules(on, run_on_qemu, model, board, work / f"{name}_{board}_{int(on)}")
        except DoesNotFitError:
            mesh = load_mesh("qemu16" if board == "qemu_cortex_m3" else "qemu4_m4f")
            r = _with_schedules(on, run_on_qemu, model, board,
                                work / f"{name}_{board}_{int(on)}_mesh", mesh=mesh)
        out[f"instructions_{tag}"] = int(_instr(r["ticks"], board))
        out[f"instr_per_mac_{tag}"] = round(out[f"instructions_{tag}"] / out["macs"], 3)
        out[f"pes_{tag}"] = r["pes"]
        out[f"exact_vs_reference_{tag}"] = r["exact_vs_reference"]
        out[f"outputs_{tag}"] = r["outputs"]
    out["bit_exact_vs_unscheduled"] = all(np.array_equal(a, b) for a, b in
                                          zip(out.pop("outputs_unscheduled"),
                                              out.pop("outputs_scheduled")))
    return out


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--boards", default="qemu_cortex_m3")
    ap.add_argument("--layers", default=",".join(LAYERS + EXTRA + FP32_LAYERS))
    ap.add_argument("--models", default="")
    a = ap.parse_args(argv)
    docs = {"layers": [], "models": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for board in a.boards.split(","):
            for kind in filter(None, a.layers.split(",")):
                docs["layers"].append(layer_figures(kind, board, work))
                print(json.dumps(docs["layers"][-1]), file=sys.stderr)
            for name in filter(None, a.models.split(",")):
                docs["models"].append(model_figures(name, board, work))
                print(json.dumps(docs["models"][-1]), file=sys.stderr)
    docs["method"] = ("QEMU -icount shift=6; instructions = SysTick ticks x tick_ns(board) / 64; "
                      "second of two inferences; includes ~112 instructions of runtime overhead")
    print(json.dumps(docs, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
