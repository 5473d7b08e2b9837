"""How ``pemesh build`` scales with the mesh: one image per stage, every other PE stamped.

For meshes of 1, 4, 16, 64 and 7,296 PEs running a 4-stage pipeline of a small demo model
(tests/fixtures/demo_model renamed per stage; PE k runs stage k mod 4, role "stage" with routes
to its neighbours), renders every PE's app with ``render_pe_app``, runs the mesh build
(:func:`generator.firmware.images.build_mesh_report`) and prints one JSON document:
per mesh, the seconds spent rendering, building (compiles and links, in parallel) and stamping,
the images built vs PEs, and bytes written.

    .venv/bin/python benchmarks/build_scale.py [--backend baremetal|host] [-j N]
                                               [--sizes 1,4,16,64,7296] [--keep DIR]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from generator.firmware.images import build_mesh_report  # noqa: E402
from generator.firmware.render import render_pe_app  # noqa: E402
from generator.types import AppSpec, Route, TensorSpec  # noqa: E402
from tests.out_tree import write_test_manifest  # noqa: E402

DEMO_MODEL = ROOT / "tests" / "fixtures" / "demo_model"
STAGES = 4
HOST = 0xFFFF


def stage_model(out: Path, stage: str) -> None:
    """OUT/stages/<stage>/model: the demo model with its C names renamed to ``stage``."""
    for src in DEMO_MODEL.rglob("*"):
        if src.is_file():
            rel = src.relative_to(DEMO_MODEL)
            dst = out / "stages" / stage / "model" / rel.with_name(rel.name.replace("demo",
                                                                                  stage))
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_text(src.read_text().replace("tvmgen_demo", f"tvmgen_{stage}")
                           .replace("TVMGEN_DEMO", f"TVMGEN_{stage.upper()}"))


def pe_spec(k: int, n: int) -> AppSpec:
    """PE ``k`` of ``n``: stage k mod 4 of a pipeline; input 0 from the previous PE (the host
    for the first), output 0 to the next (the host for the last); input 1 (bias) from the host,
    output 1 (total) to the host."""
    stage = f"st{k % STAGES}"
    prev = k - 1 if k > 0 else HOST
    nxt = k + 1 if k + 1 < n else HOST
    routes = (Route(Route.SOURCE, 0, prev, 0), Route(Route.SOURCE, 1, HOST, 1),
              Route(Route.OUTPUT, 0, nxt, 0), Route(Route.OUTPUT, 1, HOST, 1))
    return AppSpec(
        pe_name=f"pe{k}", pe_id=k, board="qemu_cortex_m3", stage=stage,
        inputs=(TensorSpec("x", (96,), "float32"), TensorSpec("bias", (4,), "float32")),
        outputs=(TensorSpec("out", (96,), "float32"), TensorSpec("total", (1,), "float32")),
        workspace_size=384, model_dir=f"../../stages/{stage}/model", role="stage",
        routes=routes, flags=1 if nxt == HOST else 0)


def _render_range(out: Path, n: int, start: int, stop: int) -> None:
    for k in range(start, stop):
        render_pe_app(pe_spec(k, n), out / "pes" / f"pe{k}")


def make_out(out: Path, n: int, jobs: int | None = None) -> None:
    """Render an OUT/ of ``n`` PEs: mesh.json, the stages' models, one app per PE (rendering
    spread over ``jobs`` processes for big meshes)."""
    for s in range(min(n, STAGES)):
        stage_model(out, f"st{s}")
    jobs = max(1, jobs or os.cpu_count() or 1)
    if n < 256 or jobs == 1:
        _render_range(out, n, 0, n)
    else:
        step = -(-n // (4 * jobs))
        with concurrent.futures.ProcessPoolExecutor(max_workers=jobs) as pool:
            for f in [pool.submit(_render_range, out, n, a, min(n, a + step))
                      for a in range(0, n, step)]:
                f.result()
    write_test_manifest(out, [pe_spec(k, n) for k in range(n)])


def bench(root: Path, n: int, backend: str, jobs: int | None) -> dict:
    out = root / f"mesh{n}"
    t0 = time.monotonic()
    make_out(out, n, jobs)
    render = time.monotonic() - t0
    t0 = time.monotonic()
    report = build_mesh_report(out, backend, jobs=jobs)
    total = time.monotonic() - t0
    written = sum(img.result.image.stat().st_size + (img.result.bin.stat().st_size
                                                     if img.result.bin else 0)
                  for img in report.images.values())
    return {"pes": n, "stages": min(n, STAGES), "images_built": report.built,
            "images_stamped": report.stamped, "render_seconds": round(render, 2),
            "build_seconds": round(report.build_seconds, 2),
            "stamp_seconds": round(report.stamp_seconds, 2),
            "stamp_ms_per_pe": (round(1000 * report.stamp_seconds / report.stamped, 3)
                                if report.stamped else None),
            "build_total_seconds": round(total, 2), "bytes_written": written}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="baremetal", choices=("baremetal", "host"))
    ap.add_argument("-j", "--jobs", type=int, default=None, help="parallel jobs (default: cores)")
    ap.add_argument("--sizes", default="1,4,16,64,7296", help="comma-separated PE counts")
    ap.add_argument("--keep", type=Path, default=None, help="keep the OUT/ folders here")
    args = ap.parse_args(argv)
    root = args.keep or Path(tempfile.mkdtemp(prefix="pemesh-build-scale-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        results = [bench(root, int(n), args.backend, args.jobs) for n in args.sizes.split(",")]
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps({"benchmark": "build_scale", "backend": args.backend,
                      "jobs": args.jobs or os.cpu_count(), "cpus": os.cpu_count(),
                      "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
