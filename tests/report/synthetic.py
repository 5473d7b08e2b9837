"""Test helper: a synthetic OUT/ (mesh.json, build/build.json, run.json) of any board mesh,
written through generator.manifest, for report tests without compiling or running anything.

The pipeline of ``stages`` stages is laid along a serpentine walk of the global PE grid (row by
row, alternating direction), replica after replica, so consecutive stages are neighbours and some
replicas cross chip boundaries; every link of a replica carries bytes growing with its stage, and
stage ``slow_stage`` is the slowest.
"""

from __future__ import annotations

from pathlib import Path

from generator import __version__
from generator.boards.catalog import load_mesh
from generator.manifest import (BuildRecord, ImageRecord, Manifest, ModelRecord, PeRecord,
                                PeRunRecord, ReplicaRecord, RunRecord, StageRecord, write_build,
                                write_manifest, write_run)
from generator.types import Route, TensorSpec

HOST = 0xFFFF
RAM_LIMIT, FLASH_LIMIT = 131072, 131072


def link_bytes(stage: int) -> int:
    """Bytes a link out of a PE of ``stage`` carried in the synthetic run."""
    return 600 + 400 * stage


def write_synthetic_out(out: Path, mesh_name: str = "spinnaker2_board", stages: int = 12,
                        unused: int = 0, slow_stage: int = 7, run: bool = True,
                        build: bool = True) -> Manifest:
    """Write OUT/ for ``mesh_name`` with as many whole replicas as fit, ``unused`` grid
    positions left free at the end of the walk. Returns the manifest."""
    mesh = load_mesh(mesh_name)
    walk = []
    for y in range(mesh.height):
        xs = range(mesh.width) if y % 2 == 0 else range(mesh.width - 1, -1, -1)
        walk += [mesh.pe_id(x, y) for x in xs]
    replicas = (len(walk) - unused) // stages
    walk = walk[:replicas * stages]
    spec = (TensorSpec("x", (1, 64), "float32"),)
    st_recs = tuple(
        StageRecord(name=f"net_s{i}", index=i, steps=(i, i + 1), inputs=spec, outputs=spec,
                    input_tensors=(i,), output_tensors=(i + 1,), workspace_size=1024 * (1 + i % 3),
                    constants_size=40000 + 1000 * i, io_size=512, macs=10000 + 100 * i,
                    arena_lower_bound=1024, cost_cycles=200000 + 5000 * i + 90000 * (i == slow_stage),
                    memory={})
        for i in range(stages))
    pes, reps, images, run_pes, links = [], [], {}, {}, {}
    for k, pid in enumerate(walk):
        s, r = k % stages, k // stages
        prev = walk[k - 1] if s > 0 else HOST
        nxt = walk[k + 1] if s < stages - 1 else HOST
        routes = (Route(Route.SOURCE, 0, prev, 0), Route(Route.OUTPUT, 0, nxt, 0))
        ram = 20000 + 1500 * s
        flash = 60000 + 1000 * s
        pes.append(PeRecord(
            name=f"pe{pid}", id=pid, coords=mesh.coords(pid), chip=mesh.chip_of(pid),
            stage=f"net_s{s}", stage_index=s, replica=r, host_link=s in (0, stages - 1),
            routes=routes, memory={"ram_bytes": ram, "flash_bytes": flash,
                                   "ram_limit": RAM_LIMIT, "flash_limit": FLASH_LIMIT}))
        if s == 0:
            reps.append(ReplicaRecord(r, ((pid, 0, 0),), ((walk[k + stages - 1], 0, 0),)))
        images[f"pe{pid}"] = ImageRecord(
            backend="host", board=mesh.pe_kind.name, app=f"pes/pe{pid}",
            image=f"build/pe{pid}/pe", bin=None,
            sizes={"text": flash - 9000, "data": 500, "bss": ram - 9000,
                   "flash": flash - 8500, "ram": ram - 8500},
            sha256="0" * 64, pes=(f"pe{pid}",), how="stamped" if r else "built",
            source=f"pe{walk[s]}")
        cycles = 100000 + 2000 * s + 80000 * (s == slow_stage) + (pid * 37) % 500
        run_pes[f"pe{pid}"] = PeRunRecord(id=pid, name=f"pe{pid}", stage=f"net_s{s}", replica=r,
                                          coords=mesh.coords(pid), inferences=1, cycles=cycles)
        if s < stages - 1:
            links[f"{pid}->{walk[k + 1]}"] = link_bytes(s)
    manifest = Manifest(
        generator=f"pemesh {__version__}",
        model=ModelRecord("net", "<synthetic>", "onnx", spec, spec), board=mesh.pe_kind.name,
        pe_kind=mesh.pe_kind.name,
        mesh={**mesh.to_json(), "num_pes": mesh.num_pes, "shape": [mesh.width, mesh.height]},
        partition={"stages": stages, "replicas": replicas, "pes_used": len(walk)},
        stages=st_recs, pes=tuple(pes), replicas=tuple(reps),
        reference={"inputs": ["reference/input_0.npy"], "outputs": ["reference/output_0.npy"]})
    write_manifest(out, manifest)
    if build:
        write_build(out, BuildRecord(backend="host", images=images))
    if run:
        slow = max(run_pes.values(), key=lambda p: (p.cycles, -p.id))
        write_run(out, RunRecord(
            platform="host", pes=run_pes, links=links,
            throughput={"inferences": replicas, "inferences_per_s": 1000.0,
                        "replicas": replicas, "seconds": 1.0,
                        "slowest_stage": {"cycles": slow.cycles, "pe": slow.id,
                                          "stage": slow.stage}}))
    return manifest
