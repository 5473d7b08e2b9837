"""``pemesh report OUT``: memory, flash and cycles per PE, and a picture of the mesh.

Reads what the other commands wrote: ``mesh.json`` (plan), ``build/build.json`` (sizes read from
the built ELFs) and, if a run happened, ``run.json`` (per-PE STATS, link traffic).
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


#: characters for stages in the text picture of the mesh
_GLYPHS = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_COLORS = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
           "#ff9da7", "#9c755f", "#bab0ac"]


@dataclass(frozen=True)
class PeRow:
    name: str
    pe_id: int
    coords: tuple[int, int]
    stage: str
    replica: int
    planned_ram: int
    planned_flash: int
    ram_limit: int
    flash_limit: int
    built_ram: int | None
    built_flash: int | None
    image: str | None
    cycles: int | None
    accel_cycles: int         # modeled accelerator cycles per inference (offloaded steps)
    accel_calls: int | None   # wrapper calls counted by the PE (STATS), when it ran

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__, coords=list(self.coords))


def collect(out: Path) -> dict[str, Any]:
    """Everything the report shows, as one JSON-able dict."""
    from generator.errors import UsageError
    from generator.manifest import read_build, read_manifest, read_run

    manifest = read_manifest(out)
    try:
        build = read_build(out)
    except UsageError:            # not built yet (or built for an earlier compile)
        build = None
    run = read_run(out)
    image_of = {name: img for name, img in (build.images.items() if build else ())}
    run_pes = run.pes if run else {}
    accel_by_stage = {s.name: sum(int(d.get("accel_cycles", 0)) for d in s.offload
                                  if isinstance(d, dict) and d.get("offloaded"))
                      for s in manifest.stages}
    rows = []
    for pe in manifest.pes:
        mem = pe.memory
        img = image_of.get(pe.name)
        stats = run_pes.get(pe.name)
        rows.append(PeRow(
            name=pe.name, pe_id=pe.id, coords=pe.coords, stage=pe.stage, replica=pe.replica,
            planned_ram=int(mem.get("ram_bytes", 0)), planned_flash=int(mem.get("flash_bytes", 0)),
            ram_limit=int(mem.get("ram_limit", 0)), flash_limit=int(mem.get("flash_limit", 0)),
            built_ram=img.sizes.get("ram") if img else None,
            built_flash=img.sizes.get("flash") if img else None,
            image=img.image if img else None, cycles=stats.cycles if stats else None,
            accel_cycles=accel_by_stage.get(pe.stage, 0),
            accel_calls=stats.accel_calls if stats else None))
    return {
        "model": manifest.model.name, "format": manifest.model.format,
        "board": manifest.board, "mesh": manifest.mesh,
        "backend": build.backend if build else None,
        "partition": manifest.partition,
        "stages": [{"name": s.name, "workspace_size": s.workspace_size,
                    "arena_lower_bound": s.arena_lower_bound, "constants_size": s.constants_size,
                    "io_size": s.io_size, "macs": s.macs, "cost_cycles": s.cost_cycles,
                    "ops": len(s.ops)} for s in manifest.stages],
        "pes": [r.to_json() for r in rows],
        "links": run.links if run else {},
        "throughput": run.throughput if run else None,
    }


def _grid(data: dict[str, Any]) -> tuple[int, int, dict[tuple[int, int], dict[str, Any]]]:
    shape = data["mesh"].get("shape") or [1, 1]
    cells = {tuple(p["coords"]): p for p in data["pes"]}
    w = max([shape[0]] + [x + 1 for x, _ in cells])
    h = max([shape[1]] + [y + 1 for _, y in cells])
    return w, h, cells


def render_text(data: dict[str, Any]) -> str:
    stage_idx = {s["name"]: i for i, s in enumerate(data["stages"])}
    part = data["partition"]
    lines = [f"model {data['model']} ({data['format']}) on {data['mesh'].get('name', '?')} "
             f"({data['board']}), backend {data['backend'] or 'not built'}",
             f"{part.get('stages')} stage(s) x {part.get('replicas', 1)} replica(s) = "
             f"{part.get('pes_used', len(data['pes']))} PE(s)", "", "stages:"]
    for s in data["stages"]:
        lines.append(f"  {s['name']}: {s['ops']} ops, weights {s['constants_size']} B, arena "
                     f"{s['workspace_size']} B (lower bound {s['arena_lower_bound']} B), io "
                     f"{s['io_size']} B, {s['macs']} MACs")
    lines += ["", f"{'pe':>7} {'coords':>9} {'stage':<20} {'rep':>3} {'ram plan/built/limit':>24} "
                  f"{'flash plan/built/limit':>26} {'cpu cycles':>11} {'accel cycles':>12}"]
    for p in data["pes"]:
        def trio(a, b, c):
            return f"{a}/{'-' if b is None else b}/{c}"
        lines.append(
            f"{p['name']:>7} {str(tuple(p['coords'])):>9} {p['stage'][:20]:<20} {p['replica']:>3} "
            f"{trio(p['planned_ram'], p['built_ram'], p['ram_limit']):>24} "
            f"{trio(p['planned_flash'], p['built_flash'], p['flash_limit']):>26} "
            f"{'-' if p['cycles'] is None else p['cycles']:>11} {p['accel_cycles'] or '-':>12}")
    w, h, cells = _grid(data)
    if w * h <= 20000:
        lines += ["", "mesh (stage of each PE, '.' unused):"]
        for y in range(h):
            row = []
            for x in range(w):
                p = cells.get((x, y))
                row.append(_GLYPHS[stage_idx.get(p["stage"], 0) % len(_GLYPHS)] if p else ".")
            lines.append("  " + "".join(row))
    if data.get("throughput"):
        lines += ["", f"throughput: {json.dumps(data['throughput'], sort_keys=True)}"]
    if data.get("links"):
        lines += ["", "links (bytes):"]
        for k, v in sorted(data["links"].items()):
            lines.append(f"  {k}: {v}")
    return "\n".join(lines) + "\n"


def render_html(data: dict[str, Any]) -> str:
    stage_idx = {s["name"]: i for i, s in enumerate(data["stages"])}
    w, h, cells = _grid(data)
    cell = max(4, min(24, 960 // max(w, 1)))
    rects = []
    for (x, y), p in sorted(cells.items()):
        color = _COLORS[stage_idx.get(p["stage"], 0) % len(_COLORS)]
        tip = html.escape(f"{p['name']} {tuple(p['coords'])} {p['stage']} replica {p['replica']}"
                          f" ram {p['built_ram'] or p['planned_ram']} B"
                          f" cycles {p['cycles'] if p['cycles'] is not None else '-'}")
        rects.append(f'<rect x="{x * cell}" y="{y * cell}" width="{cell - 1}" height="{cell - 1}" '
                     f'fill="{color}"><title>{tip}</title></rect>')
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{w * cell}" height="{h * cell}" '
           f'style="background:#eee">{"".join(rects)}</svg>')
    text = html.escape(render_text(data))
    return ("<!DOCTYPE html>\n<!-- generated by pemesh — do not edit -->\n<html><head>"
            f"<meta charset='utf-8'><title>pemesh report: {html.escape(data['model'])}</title>"
            "</head><body><h1>pemesh report</h1>" + svg + f"<pre>{text}</pre></body></html>\n")
