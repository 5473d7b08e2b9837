"""``pemesh compile``: model → stages → per-PE apps, written as OUT/ (a west workspace).

This module orchestrates the stages (frontend → partition → map → aot → render); each stage's
work lives in its own module. The manifest ``OUT/mesh.json`` records what was decided.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from generator import __version__
from generator.errors import DoesNotFitError, UsageError
from generator.types import AppSpec, ImportedModel, TensorSpec

log = logging.getLogger(__name__)

MANIFEST_VERSION = 1
DEFAULT_BOARD = "qemu_cortex_m3"
REFERENCE_SEED = 0


@dataclass(frozen=True)
class MemoryNeed:
    """Planned memory of one PE: what the plan needs against what the PE has."""

    ram_bytes: int
    flash_bytes: int
    ram_limit: int
    flash_limit: int
    detail: dict[str, int]

    @property
    def fits(self) -> bool:
        return self.ram_bytes <= self.ram_limit and self.flash_bytes <= self.flash_limit

    def to_json(self) -> dict[str, Any]:
        return {"ram_bytes": self.ram_bytes, "flash_bytes": self.flash_bytes,
                "ram_limit": self.ram_limit, "flash_limit": self.flash_limit,
                "fits": self.fits, "detail": dict(sorted(self.detail.items()))}


def parse_input_shapes(items: list[str]) -> dict[str, tuple[int, ...]]:
    """``["x:1,3,32,32"]`` → ``{"x": (1, 3, 32, 32)}``."""
    shapes = {}
    for item in items:
        name, sep, dims = item.rpartition(":")
        try:
            if not sep or not name:
                raise ValueError
            shapes[name] = tuple(int(d) for d in dims.split(","))
        except ValueError:
            raise UsageError(f"--input-shape '{item}' is not NAME:D0,D1,..",
                             hint="for example --input-shape input:1,3,32,32") from None
    return shapes


def stage_memory_need(stage, pe_kind) -> MemoryNeed:
    """RAM/flash a PE needs for ``stage``: arena + io + runtime reserve (RAM), constants +
    runtime reserve (flash). Code size of the operators is known only after the build, which
    checks the real ELF against the same limits."""
    ram = {"arena": stage.workspace_size, "io": stage.io_size,
           "runtime": pe_kind.reserve_ram_bytes}
    flash = {"constants": stage.constants_size, "runtime": pe_kind.reserve_flash_bytes}
    ram_total, flash_total = sum(ram.values()), sum(flash.values())
    if pe_kind.code_in_ram:
        # one SRAM for code and data (SpiNNaker2-like PE): everything counts against it
        ram_total = flash_total = ram_total + flash_total
    flash_limit = pe_kind.ram_bytes if pe_kind.code_in_ram else pe_kind.flash_bytes
    return MemoryNeed(ram_total, flash_total, pe_kind.ram_bytes, flash_limit,
                      {**{f"ram_{k}": v for k, v in ram.items()},
                       **{f"flash_{k}": v for k, v in flash.items()}})


def _fmt_kib(n: int) -> str:
    return f"{n / 1024:.1f} KiB"


def write_reference(out: Path, inputs: list[np.ndarray], outputs: list[np.ndarray]) -> dict:
    ref = out / "reference"
    ref.mkdir(parents=True, exist_ok=True)
    entry: dict[str, list[str]] = {"inputs": [], "outputs": []}
    for kind, arrays in (("input", inputs), ("output", outputs)):
        for i, a in enumerate(arrays):
            rel = f"reference/{kind}_{i}.npy"
            np.save(out / rel, a)
            entry[kind + "s"].append(rel)
    return entry


def write_west_yml(out: Path, template_env) -> None:
    text = template_env.get_template("workspace/west.yml.j2").render(
        zephyr_revision="v4.2.0", generator=f"pemesh {__version__}")
    (out / "west.yml").write_text(text)


def copy_runtime(out: Path) -> str:
    """Vendor the PE runtime module into OUT/modules/pemesh so OUT is self-contained."""
    from generator.paths import runtime_dir

    dest = out / "modules" / "pemesh"
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(runtime_dir(), dest, ignore=shutil.ignore_patterns("__pycache__", "build"))
    return "modules/pemesh"


def compile_single_pe(model: ImportedModel, out: Path, pe_kind) -> dict[str, Any]:
    """Compile ``model`` as one stage on one PE; write OUT/ and return the manifest."""
    from generator.aot import compile_stage, write_mlf
    from generator.verify.reference import make_inputs, run_reference
    from generator.firmware.render import render_pe_app
    from generator.firmware.templating import template_env

    t0 = time.perf_counter()
    inputs = make_inputs(model.inputs, seed=REFERENCE_SEED)
    ref_outputs = run_reference(model, inputs)
    stage = compile_stage(model.mod, model.name, model.inputs, model.outputs,
                          accelerator=pe_kind.accelerator)
    need = stage_memory_need(stage, pe_kind)
    if not need.fits:
        raise DoesNotFitError(
            f"model '{model.name}' does not fit one {pe_kind.name} PE: needs RAM "
            f"{_fmt_kib(need.ram_bytes)} of {_fmt_kib(need.ram_limit)} (arena "
            f"{_fmt_kib(stage.workspace_size)}, io {_fmt_kib(stage.io_size)}, runtime "
            f"{_fmt_kib(pe_kind.reserve_ram_bytes)}), flash {_fmt_kib(need.flash_bytes)} "
            f"of {_fmt_kib(need.flash_limit)} (weights {_fmt_kib(stage.constants_size)})",
            hint="compile for a mesh (--mesh qemu4, qemu16, ...) so the model is split over PEs")

    out.mkdir(parents=True, exist_ok=True)
    stage_dir = out / "stages" / stage.name
    write_mlf(stage, stage_dir / "model.tar", stage_dir / "model")
    reference = write_reference(out, inputs, ref_outputs)
    runtime_rel = copy_runtime(out)
    app_rel = "pes/pe0"
    spec = AppSpec(pe_name="pe0", pe_id=0, board=pe_kind.zephyr_board, stage=stage.name,
                   inputs=stage.inputs, outputs=stage.outputs,
                   workspace_size=stage.workspace_size,
                   model_dir=f"../../stages/{stage.name}/model")
    render_pe_app(spec, out / app_rel)
    write_west_yml(out, template_env())

    manifest = {
        **manifest_header(model, pe_kind.zephyr_board, pe_kind.name),
        "mesh": {"name": "single", "num_pes": 1, "shape": [1, 1]},
        "runtime": runtime_rel,
        "stages": [{
            "name": stage.name, "inputs": [t.to_json() for t in stage.inputs],
            "outputs": [t.to_json() for t in stage.outputs],
            "mlf": f"stages/{stage.name}/model.tar", "model_dir": f"stages/{stage.name}/model",
            "workspace_size": stage.workspace_size, "constants_size": stage.constants_size,
            "io_size": stage.io_size, "macs": stage.macs,
            "arena_lower_bound": stage.plan.lower_bound,
            "ops": [op.to_json() for op in stage.ops],
            "offload": [d.to_json() if hasattr(d, "to_json") else str(d) for d in stage.offload],
        }],
        "pes": [{"name": "pe0", "id": 0, "coords": [0, 0], "stage": stage.name, "shard": 0,
                 "replica": 0, "app": app_rel, "host_link": True, "routes": [],
                 "memory": need.to_json()}],
        "reference": reference,
        "compile_seconds": round(time.perf_counter() - t0, 3),
    }
    write_manifest(out, manifest)
    return manifest


def manifest_header(model: ImportedModel, board: str, pe_kind: str) -> dict[str, Any]:
    """The fields every ``mesh.json`` starts with: schema, generator, model io, board."""
    return {
        "schema_version": MANIFEST_VERSION,
        "generator": f"pemesh {__version__}",
        "model": {"name": model.name, "source": model.source, "format": model.format,
                  "inputs": [t.to_json() for t in model.inputs],
                  "outputs": [t.to_json() for t in model.outputs]},
        "board": board, "pe_kind": pe_kind,
    }


def write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    (out / "mesh.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def quantize_if_qdq(model: ImportedModel, path: Path) -> ImportedModel:
    """Fold the dequantize→op→quantize chains of an ONNX QDQ model or of a full-integer TFLite
    model (which TVM's TFLite frontend imports as such chains) into integer ops (int8 compute);
    other models pass unchanged. The TVM reference is then the integer graph's."""
    from generator.frontend.quantize import quantize_model

    if model.format == "tflite":
        return quantize_model(model)   # schemes were checked by the frontend, per operator
    if model.format != "onnx":
        return model
    import onnx

    return quantize_model(model, onnx.load(str(path)))


#: what `pemesh compile`, `build` and `run` write into OUT; a new compile replaces all of it, so
#: that no app, stage or image of an earlier compile survives beside the new ones
GENERATED_ENTRIES = ("mesh.json", "west.yml", "run.json", "stages", "pes", "reference",
                     "modules", "build", "run")


def clear_generated(out: Path) -> None:
    """Remove what an earlier compile/build/run wrote into OUT (only pemesh's own entries)."""
    for name in GENERATED_ENTRIES:
        p = out / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()


def compile_command(args) -> int:
    """CLI: ``pemesh compile MODEL -o OUT [--board B | --mesh M] ...``."""
    from generator.boards.catalog import load_pe_kind
    from generator.frontend.importers import load_model

    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.force:
        if not (out / "mesh.json").is_file():
            raise UsageError(f"{out} exists and is not a pemesh output folder",
                             hint="choose another -o folder, or pass --force")
    model = load_model(Path(args.model), name=args.name,
                       input_shapes=parse_input_shapes(args.input_shape) or None)
    model = quantize_if_qdq(model, Path(args.model))
    # compile into a sibling folder; replace OUT's generated entries only when it succeeded, so
    # a failed compile loses nothing and a good one leaves nothing stale behind
    partial = out.with_name(out.name + ".pemesh-partial")
    if partial.exists():
        shutil.rmtree(partial)
    try:
        if args.mesh:
            from generator.partition.plan import compile_mesh  # the mesh path (partition + map)
            manifest = compile_mesh(model, partial, args)
        else:
            pe_kind = load_pe_kind(args.board or DEFAULT_BOARD)
            manifest = compile_single_pe(model, partial, pe_kind)
        out.mkdir(parents=True, exist_ok=True)
        clear_generated(out)
        for entry in sorted(partial.iterdir()):
            shutil.move(str(entry), str(out / entry.name))
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    st = manifest["stages"]
    print(f"compiled {manifest['model']['name']} ({manifest['model']['format']}) into {out}: "
          f"{len(st)} stage(s), {len(manifest['pes'])} PE(s), board {manifest['board']}")
    for s in st:
        print(f"  stage {s['name']}: {len(s['ops'])} ops, weights {s['constants_size']} B, "
              f"arena {s['workspace_size']} B (lower bound {s['arena_lower_bound']} B), "
              f"io {s['io_size']} B, {s['macs']} MACs")
        for op in s["ops"]:
            if op.get("backend", "tvm") != "tvm":
                print(f"    {op['relax_name']}: offloaded ({op['backend']})")
        for d in s.get("offload", []):
            if isinstance(d, dict) and d.get("kind") and not d.get("offloaded"):
                print(f"    step {d['step']} ({d['func']}): on the CPU ({d['reason']})")
    return 0


__all__ = ["compile_command", "compile_single_pe", "write_manifest",
           "TensorSpec", "stage_memory_need", "parse_input_shapes"]
