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


def _load_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def collect(out: Path) -> dict[str, Any]:
    """Everything the report shows, as one JSON-able dict."""
    from generator.firmware.build import load_mesh

    manifest = load_mesh(out)
    build = _load_json(out / "build" / "build.json") or {}
    run = _load_json(out / "run.json") or {}
    image_of: dict[str, tuple[str, dict[str, int]]] = {}
    for key, img in (build.get("images") or {}).items():
        for pe in img.get("pes", [key]):
            image_of[pe] = (img.get("image", ""), img.get("sizes", {}))
    for pe, entry in (build.get("pes") or {}).items():   # per-PE records (stamped builds)
        if isinstance(entry, dict) and "sizes" in entry:
            image_of[pe] = (entry.get("image", ""), entry["sizes"])
    run_pes = run.get("pes", {})
    accel_by_stage = {s["name"]: sum(int(d.get("accel_cycles", 0)) for d in s.get("offload", [])
                                     if isinstance(d, dict) and d.get("offloaded"))
                      for s in manifest["stages"]}
    rows = []
    for pe in manifest["pes"]:
        mem = pe.get("memory", {})
        img = image_of.get(pe["name"])
        stats = run_pes.get(pe["name"]) or run_pes.get(str(pe["id"])) or {}
        rows.append(PeRow(
            name=pe["name"], pe_id=int(pe["id"]), coords=tuple(pe.get("coords", [0, 0])),
            stage=pe["stage"], replica=int(pe.get("replica", 0)),
            planned_ram=int(mem.get("ram_bytes", 0)), planned_flash=int(mem.get("flash_bytes", 0)),
            ram_limit=int(mem.get("ram_limit", 0)), flash_limit=int(mem.get("flash_limit", 0)),
            built_ram=img[1].get("ram") if img else None,
            built_flash=img[1].get("flash") if img else None,
            image=img[0] if img else None, cycles=stats.get("cycles"),
            accel_cycles=accel_by_stage.get(pe["stage"], 0),
            accel_calls=stats.get("accel_calls")))
    return {
        "model": manifest["model"]["name"], "format": manifest["model"].get("format"),
        "board": manifest.get("board"), "mesh": manifest.get("mesh", {}),
        "backend": build.get("backend"),
        "partition": manifest.get("partition", {"stages": len(manifest["stages"]),
                                                 "replicas": 1, "pes_used": len(rows)}),
        "stages": [{k: s.get(k) for k in ("name", "workspace_size", "arena_lower_bound",
                                          "constants_size", "io_size", "macs", "cost_cycles")}
                   | {"ops": len(s.get("ops", []))} for s in manifest["stages"]],
        "pes": [r.to_json() for r in rows],
        "links": run.get("links", {}),
        "throughput": run.get("throughput"),
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


def report_command(args) -> int:
    """CLI: ``pemesh report OUT [--format text|json|html]``."""
    data = collect(Path(args.out))
    if args.format == "json":
        print(json.dumps(data, indent=2, sort_keys=True))
    elif args.format == "html":
        print(render_html(data), end="")
    else:
        print(render_text(data), end="")
    return 0
