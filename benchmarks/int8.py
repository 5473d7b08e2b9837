"""int8 vs fp32 figures per model (issue 5): JSON on stdout.

For each model of tests/quant_zoo.py: the fp32 twin and the int8 QDQ model compiled as one stage
(weights bytes = the stage's flash constants, arena = its RAM plan, io bytes), the int8 stage
compiled for ``qemu_cortex_m3_mac`` (steps offloaded, re-laid-out weights), and the modeled
accelerator cycles (generator/accel.py's cost model: setup + padded MACs / macs_per_cycle).
Goals: int8 weights <= 0.26 x fp32, peak RAM (arena + io) <= 0.3 x fp32.

QEMU cycle counts (CPU-only vs offloaded, measured through STATS) need ``pemesh compile`` to run
the int8 rewrite and pass the accelerator; until then ``--qemu`` is not offered here.

Usage: .venv/bin/python benchmarks/int8.py [MODEL ...] > int8.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from generator.accel import accel_cycles, step_qop  # noqa: E402
from generator.aot import compile_stage, prepare_model  # noqa: E402
from generator.boards import load_pe_kind  # noqa: E402
from generator.frontend import import_onnx  # noqa: E402
from generator.quantize import quantize_model  # noqa: E402
from tests.quant_zoo import QZOO, fp32_twin  # noqa: E402


def figures(name: str) -> dict:
    accel = load_pe_kind("qemu_cortex_m3_mac").accelerator
    fp = import_onnx(fp32_twin(name), name=f"{name}_fp32")
    proto = QZOO[name]()
    q = quantize_model(import_onnx(proto, name=name), proto)
    s_fp = compile_stage(fp.mod, fp.name, fp.inputs, fp.outputs)
    s_q = compile_stage(q.mod, q.name, q.inputs, q.outputs)
    s_a = compile_stage(q.mod, q.name, q.inputs, q.outputs, accelerator=accel)
    pm = prepare_model(q.mod, q.name)
    modeled = sum(accel_cycles(step_qop(pm, d.step), accel) for d in s_a.offload if d.offloaded)

    def mem(s) -> dict:
        return {"weights_bytes": s.constants_size, "arena_bytes": s.workspace_size,
                "io_bytes": s.io_size, "peak_ram_bytes": s.workspace_size + s.io_size,
                "macs": s.macs}

    f, i = mem(s_fp), mem(s_q)
    return {
        "model": name, "fp32": f, "int8": i, "int8_offloaded": mem(s_a),
        "weights_ratio": round(i["weights_bytes"] / f["weights_bytes"], 4),
        "peak_ram_ratio": round(i["peak_ram_bytes"] / f["peak_ram_bytes"], 4),
        "arena_ratio": round(i["arena_bytes"] / max(f["arena_bytes"], 1), 4),
        "offload": [d.to_json() for d in s_a.offload],
        "offloaded_macs": sum(d.macs for d in s_a.offload if d.offloaded),
        "modeled_accel_cycles": modeled,
    }


def main(argv: list[str]) -> int:
    names = argv or sorted(QZOO)
    print(json.dumps([figures(n) for n in names], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
