"""``pemesh report OUT``: memory, flash and cycles per PE, and a picture of the mesh.

Reads what the other commands wrote: ``mesh.json`` (plan), ``build/build.json`` (sizes read from
the built ELFs) and, if a run happened, ``run.json`` (per-PE STATS, link traffic). :func:`collect`
turns them into one JSON-able dict; :func:`stage_summary`, :func:`bottleneck`, :func:`used_links`
and :func:`geometry` derive what both renderings show; :func:`render_text` is the text report
(the HTML page is :mod:`generator.report.html`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


#: characters for stages in the text picture of the mesh
_GLYPHS = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True)
class PeRow:
    name: str
    pe_id: int
    coords: tuple[int, int]
    chip: int
    host_link: bool           # takes model inputs or gives outputs over its host link
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
            name=pe.name, pe_id=pe.id, coords=pe.coords, chip=pe.chip,
            host_link=pe.host_link, stage=pe.stage, replica=pe.replica,
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
        "platform": run.platform if run else None,
    }


@dataclass(frozen=True)
class Geometry:
    """How the PEs of a report sit: chips of ``pes_x`` × ``pes_y`` PEs in a ``chips_x`` ×
    ``chips_y`` grid; ``width`` × ``height`` global PE coordinates."""

    chips_x: int
    chips_y: int
    pes_x: int
    pes_y: int
    width: int
    height: int
    host_links: tuple[tuple[int, int], ...]     # coords of the board's host-link PEs
    has_topology: bool = True                   # False: one chip spanning the PEs' coordinates

    @property
    def num_chips(self) -> int:
        return self.chips_x * self.chips_y

    def chip_at(self, x: int, y: int) -> int:
        """The chip index (``cy * chips_x + cx``) of global coordinates ``(x, y)``."""
        return (y // self.pes_y) * self.chips_x + x // self.pes_x

    def coords_of(self, pe_id: int) -> tuple[int, int]:
        """Global coordinates of a PE id under the mesh's numbering (chip by chip, then row by
        row inside a chip; see boards.catalog.Mesh): also for PEs no stage runs on, which the
        fabric may still route through."""
        chip, local = divmod(pe_id, self.pes_x * self.pes_y)
        cy, cx = divmod(chip, self.chips_x)
        ly, lx = divmod(local, self.pes_x)
        return cx * self.pes_x + lx, cy * self.pes_y + ly


def geometry(data: dict[str, Any]) -> Geometry:
    """The chip grid of the report's mesh (one chip spanning the PEs' coordinates when mesh.json
    has no topology)."""
    mesh = data["mesh"]
    xs = [p["coords"][0] for p in data["pes"]] or [0]
    ys = [p["coords"][1] for p in data["pes"]] or [0]
    topo = mesh.get("topology") or {}
    known = all(k in topo for k in ("chips_x", "chips_y", "pes_x", "pes_y"))
    if known:
        cx, cy, px, py = (max(1, int(topo[k])) for k in ("chips_x", "chips_y", "pes_x", "pes_y"))
    else:
        shape = mesh.get("shape") or [max(xs) + 1, max(ys) + 1]
        cx, cy, px, py = 1, 1, max(int(shape[0]), max(xs) + 1), max(int(shape[1]), max(ys) + 1)
    w, h = max(cx * px, max(xs) + 1), max(cy * py, max(ys) + 1)
    cx, cy = -(-w // px), -(-h // py)
    hosts = tuple((int(c[0]), int(c[1])) for c in mesh.get("host_links") or ()
                  if isinstance(c, (list, tuple)) and len(c) == 2)
    return Geometry(cx, cy, px, py, w, h, hosts, known)


def used_links(data: dict[str, Any]) -> list[tuple[int, int, int]]:
    """The directed mesh links that carried bytes in the run: ``(from PE id, to PE id, bytes)``."""
    out = []
    for key, nbytes in (data.get("links") or {}).items():
        a, sep, b = str(key).partition("->")
        if sep and a.strip().isdigit() and b.strip().isdigit() and int(nbytes) > 0:
            out.append((int(a), int(b), int(nbytes)))
    return sorted(out)


def _max(values: list[int | None]) -> int | None:
    vals = [v for v in values if v is not None]
    return max(vals) if vals else None


def stage_summary(data: dict[str, Any]) -> list[dict[str, Any]]:
    """One dict per stage, in pipeline order: its PEs, the largest planned/built memory among
    them, its modelled cycles and the cycles its PEs measured (min/mean/max), and whether it is
    the bottleneck (see :func:`bottleneck`)."""
    by_stage: dict[str, list[dict[str, Any]]] = {}
    for p in data["pes"]:
        by_stage.setdefault(p["stage"], []).append(p)
    slow = bottleneck(data)
    rows = []
    for i, s in enumerate(data["stages"]):
        pes = by_stage.get(s["name"], [])
        cyc = [p["cycles"] for p in pes if p["cycles"] is not None]
        rows.append({
            "name": s["name"], "index": i, "glyph": glyph(i), "pes": len(pes),
            "replicas": len({p["replica"] for p in pes}),
            "planned_ram": _max([p["planned_ram"] for p in pes]) or 0,
            "planned_flash": _max([p["planned_flash"] for p in pes]) or 0,
            "built_ram": _max([p["built_ram"] for p in pes]),
            "built_flash": _max([p["built_flash"] for p in pes]),
            "ram_limit": _max([p["ram_limit"] for p in pes]) or 0,
            "flash_limit": _max([p["flash_limit"] for p in pes]) or 0,
            "cost_cycles": int(s.get("cost_cycles") or 0),
            "cycles_min": min(cyc) if cyc else None, "cycles_max": max(cyc) if cyc else None,
            "cycles_mean": round(sum(cyc) / len(cyc)) if cyc else None, "ran": len(cyc),
            "bottleneck": slow is not None and slow["stage"] == s["name"]})
    return rows


def bottleneck(data: dict[str, Any]) -> dict[str, Any] | None:
    """The slowest stage: by the cycles its PEs measured when a run happened ("measured"),
    otherwise by the partitioner's cycle model ("planned"). None when nothing is known."""
    ran = [p for p in data["pes"] if p["cycles"] is not None]
    if ran:
        p = max(ran, key=lambda p: (p["cycles"], -p["pe_id"]))
        return {"stage": p["stage"], "by": "measured", "cycles": p["cycles"], "pe": p["name"]}
    stages = [s for s in data["stages"] if s.get("cost_cycles")]
    if stages:
        s = max(stages, key=lambda s: s["cost_cycles"])
        return {"stage": s["name"], "by": "planned", "cycles": s["cost_cycles"], "pe": None}
    return None


def glyph(stage_index: int) -> str:
    """The character of a stage in the text picture of the mesh."""
    return _GLYPHS[stage_index % len(_GLYPHS)]


def _opt(v: Any) -> str:
    return "-" if v is None else str(v)


def _wrap(head: str, items: list[str], width: int = 100) -> list[str]:
    lines, cur = [], head
    for it in items:
        if len(cur) + len(it) + 3 > width and cur.strip():
            lines.append(cur.rstrip(", "))
            cur = " " * len(head)
        cur += it + ", "
    return lines + [cur.rstrip(", ")]


def render_text(data: dict[str, Any]) -> str:
    stage_idx = {s["name"]: i for i, s in enumerate(data["stages"])}
    part = data["partition"]
    summary = stage_summary(data)
    slow = bottleneck(data)
    lines = [f"model {data['model']} ({data['format']}) on {data['mesh'].get('name', '?')} "
             f"({data['board']}), backend {data['backend'] or 'not built'}",
             f"{part.get('stages')} stage(s) x {part.get('replicas', 1)} replica(s) = "
             f"{part.get('pes_used', len(data['pes']))} PE(s)", "", "stages:"]
    for s in data["stages"]:
        lines.append(f"  {s['name']}: {s['ops']} ops, weights {s['constants_size']} B, arena "
                     f"{s['workspace_size']} B (lower bound {s['arena_lower_bound']} B), io "
                     f"{s['io_size']} B, {s['macs']} MACs")
    lines += ["", "per stage (largest over its PEs; cycles measured min/mean/max):",
              f"  {'':1} {'stage':<20} {'PEs':>5} {'ram plan/built/limit':>24} "
              f"{'flash plan/built/limit':>26} {'model cycles':>12} {'measured cycles':>24}"]
    for r in summary:
        measured = ("-" if r["cycles_max"] is None else
                    f"{r['cycles_min']}/{r['cycles_mean']}/{r['cycles_max']}")
        ram = f"{r['planned_ram']}/{_opt(r['built_ram'])}/{r['ram_limit']}"
        flash = f"{r['planned_flash']}/{_opt(r['built_flash'])}/{r['flash_limit']}"
        lines.append(f"  {r['glyph']:1} {r['name'][:20]:<20} {r['pes']:>5} {ram:>24} {flash:>26} "
                     f"{r['cost_cycles'] or '-':>12} {measured:>24}"
                     + ("  <- bottleneck" if r["bottleneck"] else ""))
    if slow:
        where = f" on {slow['pe']}" if slow["pe"] else ""
        lines.append(f"  bottleneck: {slow['stage']}{where}, {slow['cycles']} cycles per "
                     f"inference ({slow['by']})")
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
    geo = geometry(data)
    cells = {tuple(p["coords"]): p for p in data["pes"]}
    if geo.width * geo.height <= 20000:
        lines += ["", "mesh (stage of each PE, '.' unused):"]
        for y in range(geo.height):
            row = []
            for x in range(geo.width):
                p = cells.get((x, y))
                row.append(glyph(stage_idx.get(p["stage"], 0)) if p else ".")
            lines.append("  " + "".join(row))
        lines += _wrap("legend: ", [f"{r['glyph']} = {r['name']} ({r['pes']} PE"
                                    f"{'' if r['pes'] == 1 else 's'})" for r in summary]
                       + [". = unused"])
    if data.get("throughput"):
        lines += ["", f"throughput: {json.dumps(data['throughput'], sort_keys=True)}"]
    if data.get("links"):
        lines += ["", "links (bytes):"]
        for k, v in sorted(data["links"].items()):
            lines.append(f"  {k}: {v}")
    return "\n".join(lines) + "\n"
