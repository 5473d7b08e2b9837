"""Test helper: a valid OUT/mesh.json for hand-made PE apps (through generator.manifest)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from generator import __version__
from generator.manifest import (Manifest, ModelRecord, PeRecord, ReplicaRecord, StageRecord,
                                write_manifest)
from generator.types import AppSpec, Route

HOST = 0xFFFF


def write_test_manifest(out: Path, specs: Sequence[AppSpec], board: str = "qemu_cortex_m3",
                        model_source: str = "<test>") -> Manifest:
    """mesh.json for the apps ``specs`` (already rendered under OUT/pes/<pe>/): one stage per
    distinct ``spec.stage``, one replica whose entry/exit are the routes to and from the host
    (every input/output of a PE without routes)."""
    stage_names = list(dict.fromkeys(s.stage for s in specs))
    first = {}
    for s in specs:
        first.setdefault(s.stage, s)
    stages = tuple(StageRecord(name=n, index=i, steps=(0, 0), inputs=first[n].inputs,
                               outputs=first[n].outputs, input_tensors=(), output_tensors=(),
                               workspace_size=first[n].workspace_size, constants_size=0,
                               io_size=0, macs=0, arena_lower_bound=0, cost_cycles=0)
                   for i, n in enumerate(stage_names))
    pes, entry, exit_ = [], [], []
    for s in specs:
        routes = s.routes
        if not routes:
            routes = tuple(Route(Route.SOURCE, i, HOST, i) for i in range(len(s.inputs))) + \
                tuple(Route(Route.OUTPUT, j, HOST, j) for j in range(len(s.outputs)))
        for r in routes:
            if r.pe == HOST:
                (entry if r.kind == Route.SOURCE else exit_).append((s.pe_id, r.a, r.b))
        pes.append(PeRecord(name=s.pe_name, id=s.pe_id, coords=(s.pe_id, 0), chip=0,
                            stage=s.stage, stage_index=stage_names.index(s.stage), replica=0,
                            host_link=any(r.pe == HOST for r in routes), routes=routes))
    model = first[stage_names[0]]
    manifest = Manifest(
        generator=f"pemesh {__version__}",
        model=ModelRecord("test", model_source, "test", model.inputs, specs[-1].outputs),
        board=board, pe_kind=board, mesh={"name": "test", "num_pes": len(specs)},
        partition={}, stages=stages, pes=tuple(pes),
        replicas=(ReplicaRecord(0, tuple(entry), tuple(exit_)),),
        reference={"inputs": [f"reference/input_{i}.npy" for i in range(len(model.inputs))],
                   "outputs": [f"reference/output_{j}.npy"
                               for j in range(len(specs[-1].outputs))]})
    write_manifest(out, manifest)
    return manifest
