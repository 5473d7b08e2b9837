#!/usr/bin/env python3
"""Single-PE figures per model (issue 2): compile seconds, text/data/bss of the built image,
arena vs its lower bound, and cycles per inference on QEMU (qemu_cortex_m3 = lm3s6965evb).

Prints one JSON document: {"models": {name: {...}}, "machine": {...}}.
Usage: python benchmarks/single_pe.py [MODEL ...]   (default: every zoo model)
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def measure(name: str, work: Path) -> dict:
    from generator.boards.catalog import load_pe_kind, single_pe_mesh
    from generator.commands.compile import compile_model
    from generator.firmware.images import build_mesh_report
    from generator.frontend.importers import import_onnx
    from generator.manifest import read_reference
    from generator.mesh.runner import MeshRunner, load_plan
    from tests.model_zoo import ZOO

    out = work / name
    model = import_onnx(ZOO[name](), name=name)
    t0 = time.perf_counter()
    manifest = compile_model(model, out, single_pe_mesh(load_pe_kind("qemu_cortex_m3")))
    compile_s = time.perf_counter() - t0
    stage = manifest.stages[0]
    t0 = time.perf_counter()
    result = build_mesh_report(out, "baremetal").images["pe0"].result
    build_s = time.perf_counter() - t0
    inputs = read_reference(out, manifest, "inputs")
    with MeshRunner(load_plan(out, manifest), timeout=120) as runner:
        first = runner.infer_many([inputs]).stats[0]
        second = runner.infer_many([inputs]).stats[0]
    sizes = result.sizes
    return {
        "compile_seconds": round(compile_s, 3), "build_seconds": round(build_s, 3),
        "text": sizes.text, "data": sizes.data, "bss": sizes.bss,
        "flash": sizes.flash, "ram": sizes.ram,
        "weights_bytes": stage.constants_size, "arena_bytes": stage.workspace_size,
        "arena_lower_bound": stage.arena_lower_bound,
        "arena_ratio": round(stage.workspace_size / stage.arena_lower_bound, 4)
        if stage.arena_lower_bound else 1.0,
        "macs": stage.macs,
        "cycles_per_inference": second.cycles,
        "cycles_first_inference": first.cycles,
    }


def main() -> int:
    from tests.model_zoo import ZOO

    names = sys.argv[1:] or sorted(ZOO)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            results[name] = measure(name, Path(tmp))
    print(json.dumps({"models": results,
                      "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                  "cycles": "SysTick ticks of the emulated 12 MHz core under "
                                            "QEMU icount (see generator/mesh/launch.py)"}},
                     indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
