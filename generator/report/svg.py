"""The mesh drawn as inline SVG for the HTML report.

Two views of the same data: :func:`pe_view` (every PE a labelled box coloured by its stage, chips
as framed groups, one arrow per used mesh link with its width growing with the bytes it carried,
the host and its link) for meshes up to a few thousand grid positions, and :func:`chip_view`
(one cell per chip, coloured by its dominant stage, with counts and a stage-mix bar; chip-to-chip
traffic as arrows) for bigger ones. The page's script draws one chip's PEs on demand from the
data :func:`chip_view` leaves in the page (see :mod:`generator.report.html`).

Every fragment is well-formed XML (the tests parse it with ``xml.etree``).
"""

from __future__ import annotations

import colorsys
import math
from html import escape
from typing import Any, Iterable

from generator.report.summary import Geometry, bottleneck, used_links

SVG_NS = "http://www.w3.org/2000/svg"
#: Tableau 10: distinct, colour-blind-friendlier; more stages get golden-angle hues
_BASE_COLORS = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
                "#ff9da7", "#9c755f", "#bab0ac"]
BOTTLENECK = "#d62728"
HOST_COLOR = "#333333"
#: the largest grid (positions) drawn PE by PE; bigger meshes are drawn chip by chip
MAX_PE_VIEW = 1024
#: past this many PEs, a PE's tooltip is one line (its memory is in the charts and tables)
BRIEF_TIPS = 256


def stage_colors(n: int) -> list[str]:
    """``n`` distinct fill colours, one per stage."""
    out = list(_BASE_COLORS[:n])
    for i in range(len(out), n):
        h = (i * 0.618033988749895) % 1.0
        l, s = (0.55, 0.55) if i % 2 else (0.68, 0.45)
        r, g, b = colorsys.hls_to_rgb(h, l, s)
        out.append(f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}")
    return out


def ink(fill: str) -> str:
    """Black or white text, whichever reads better on ``fill`` (#rrggbb)."""
    r, g, b = (int(fill[i:i + 2], 16) / 255 for i in (1, 3, 5))
    return "#111" if 0.299 * r + 0.587 * g + 0.114 * b > 0.55 else "#fff"


def human_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def link_width(nbytes: int, most: int, lo: float = 1.5, hi: float = 10.0) -> float:
    """Stroke width of a link: ``lo`` plus a part of ``hi - lo`` proportional to the bytes it
    carried, ``hi`` for the busiest link (so a quiet link stays visible)."""
    if most <= 0:
        return lo
    return round(lo + (hi - lo) * max(0, nbytes) / most, 2)


def attrs(**kw: Any) -> str:
    return " ".join(f'{k.rstrip("_").replace("_", "-")}="{escape(str(v), quote=True)}"'
                    for k, v in kw.items() if v is not None)


def title(text: str) -> str:
    return f"<title>{escape(text, quote=False)}</title>"


def svg_open(width: float, height: float, cls: str, label: str) -> str:
    return (f'<svg xmlns="{SVG_NS}" class="{cls}" viewBox="0 0 {width:.0f} {height:.0f}" '
            f'width="{width:.0f}" height="{height:.0f}" style="max-width:{width:.0f}px" role="img" '
            f'aria-label="{escape(label, quote=True)}">')


def _arrow(x1: float, y1: float, x2: float, y2: float, width: float, offset: float,
           shorten: float, **kw: Any) -> str:
    """A line from (x1, y1) towards (x2, y2), moved ``offset`` to its right (so the two
    directions of a link sit side by side), ``shorten`` off both ends, with an arrow head."""
    dx, dy = x2 - x1, y2 - y1
    d = math.hypot(dx, dy) or 1.0
    ux, uy = dx / d, dy / d
    nx, ny = -uy, ux
    head = min(16.0, max(5.0, width * 1.3))
    sx, sy = x1 + ux * shorten + nx * offset, y1 + uy * shorten + ny * offset
    ex, ey = x2 - ux * shorten + nx * offset, y2 - uy * shorten + ny * offset
    bx, by = ex - ux * head, ey - uy * head          # base of the head
    pts = (f"{ex:.1f},{ey:.1f} {bx + nx * head * 0.6:.1f},{by + ny * head * 0.6:.1f} "
           f"{bx - nx * head * 0.6:.1f},{by - ny * head * 0.6:.1f}")
    tip = kw.pop("tip", "")
    return (f'<g {attrs(**kw)}><line x1="{sx:.1f}" y1="{sy:.1f}" x2="{bx:.1f}" y2="{by:.1f}" '
            f'stroke-width="{width}"/><polygon points="{pts}"/>{title(tip)}</g>')


# --- PE by PE --------------------------------------------------------------------------------

class _PeLayout:
    """Where each PE's box sits in the PE view."""

    HOST_W = 64

    def __init__(self, geo: Geometry):
        self.geo = geo
        cols = geo.width + (geo.chips_x - 1) * 0.5
        self.pitch = max(18.0, min(130.0, 960.0 / max(cols, 1.0)))
        self.box = round(self.pitch * 0.66, 1)
        self.chip_gap = max(10.0, self.pitch * 0.5)
        self.label_h = 18.0
        self.x0 = self.HOST_W + 48.0
        self.y0 = 8.0 + self.label_h

    def chip_origin(self, cx: int, cy: int) -> tuple[float, float]:
        g = self.geo
        return (self.x0 + cx * (g.pes_x * self.pitch + self.chip_gap),
                self.y0 + cy * (g.pes_y * self.pitch + self.chip_gap + self.label_h))

    def cell(self, x: int, y: int) -> tuple[float, float]:
        """Top-left corner of PE (x, y)'s box."""
        g = self.geo
        ox, oy = self.chip_origin(x // g.pes_x, y // g.pes_y)
        m = (self.pitch - self.box) / 2
        return ox + (x % g.pes_x) * self.pitch + m, oy + (y % g.pes_y) * self.pitch + m

    def centre(self, x: int, y: int) -> tuple[float, float]:
        cx, cy = self.cell(x, y)
        return cx + self.box / 2, cy + self.box / 2

    @property
    def size(self) -> tuple[float, float]:
        g = self.geo
        w, h = self.chip_origin(g.chips_x, g.chips_y)
        return w - self.chip_gap + 8, h - self.chip_gap - self.label_h + 8


def _pe_tip(p: dict[str, Any], stage_no: int, brief: bool = False) -> str:
    cyc = "-" if p["cycles"] is None else f"{p['cycles']:,}"
    if brief:                       # many PEs: the memory is in the charts and tables
        return (f"{p['name']} {tuple(p['coords'])}: {p['stage']} (s{stage_no}) r{p['replica']}, "
                f"{cyc} cycles" + (", host" if p["host_link"] else ""))
    return (f"{p['name']} (PE {p['pe_id']}) at {tuple(p['coords'])}, chip {p['chip']}\n"
            f"stage {p['stage']} (#{stage_no}), replica {p['replica']}\n"
            f"RAM planned {p['planned_ram']:,} B, built {_n(p['built_ram'])} B, "
            f"limit {p['ram_limit']:,} B\n"
            f"flash planned {p['planned_flash']:,} B, built {_n(p['built_flash'])} B, "
            f"limit {p['flash_limit']:,} B\ncycles per inference {cyc}"
            + ("\nexchanges tensors with the host" if p["host_link"] else ""))


def _n(v: int | None) -> str:
    return "-" if v is None else f"{v:,}"


def pe_coords(data: dict[str, Any], geo: Geometry) -> dict[int, tuple[int, int]]:
    """PE id → coordinates of the manifest's PEs (:func:`_where` adds, with a topology, the ids
    no stage runs on that the fabric routed through)."""
    return {p["pe_id"]: tuple(p["coords"]) for p in data["pes"]}


def _where(pe_id: int, known: dict[int, tuple[int, int]], geo: Geometry) -> tuple[int, int] | None:
    if pe_id in known:
        return known[pe_id]
    if geo.has_topology and 0 <= pe_id < geo.num_chips * geo.pes_x * geo.pes_y:
        return geo.coords_of(pe_id)
    return None


def pe_view(data: dict[str, Any], geo: Geometry, colors: list[str]) -> str:
    """Every PE drawn: chips, PEs (labelled, coloured by stage), used links, the host."""
    lay = _PeLayout(geo)
    stage_no = {s["name"]: i for i, s in enumerate(data["stages"])}
    slow = bottleneck(data)
    slow_pe = slow["pe"] if slow and slow["by"] == "measured" else None
    cells = {tuple(p["coords"]): p for p in data["pes"]}
    w, h = lay.size
    out = [svg_open(w, h, "mesh pe-view zoomable", "the mesh, PE by PE")]
    # chips and PEs
    font = max(7.0, min(13.0, lay.box * 0.24))
    brief = len(data["pes"]) > BRIEF_TIPS
    for cy in range(geo.chips_y):
        for cx in range(geo.chips_x):
            chip = cy * geo.chips_x + cx
            ox, oy = lay.chip_origin(cx, cy)
            cw, ch = geo.pes_x * lay.pitch, geo.pes_y * lay.pitch
            n = sum(1 for (x, y) in cells if geo.chip_at(x, y) == chip)
            out.append(f'<g class="chip" data-chip="{chip}">'
                       f'<rect class="chip-frame" x="{ox:.1f}" y="{oy:.1f}" width="{cw:.1f}" '
                       f'height="{ch:.1f}" rx="6"/>'
                       f'<text class="chip-label" x="{ox + 2:.1f}" y="{oy - 5:.1f}">chip {chip} '
                       f'({cx},{cy}) · {n} PE{"" if n == 1 else "s"}</text>')
            for ly in range(geo.pes_y):
                for lx in range(geo.pes_x):
                    x, y = cx * geo.pes_x + lx, cy * geo.pes_y + ly
                    if x >= geo.width or y >= geo.height:
                        continue
                    out.append(_pe_box(lay, x, y, cells.get((x, y)), stage_no, colors, font,
                                       slow_pe, brief))
            out.append("</g>")
    out.append(_links(data, geo, lay))
    out.append(_host(geo, lay, h))
    out.append("</svg>")
    return "".join(out)


def _pe_box(lay: _PeLayout, x: int, y: int, p: dict[str, Any] | None, stage_no: dict[str, int],
            colors: list[str], font: float, slow_pe: str | None, brief: bool) -> str:
    bx, by = lay.cell(x, y)
    b = lay.box
    if p is None:
        return (f'<rect class="pe-unused" x="{bx:.1f}" y="{by:.1f}" width="{b}" height="{b}" '
                f'rx="3">{title(f"({x}, {y}): no stage")}</rect>')
    i = stage_no.get(p["stage"], 0)
    fill = colors[i % len(colors)]
    cls = "pe bottleneck" if p["name"] == slow_pe else "pe"
    parts = [f'<g class="{cls}" data-pe="{p["pe_id"]}" data-stage="{escape(p["stage"])}">',
             f'<rect x="{bx:.1f}" y="{by:.1f}" width="{b}" height="{b}" rx="4" fill="{fill}"/>']
    if b >= 24:
        t = ink(fill)
        parts.append(f'<text class="pe-label" x="{bx + b / 2:.1f}" y="{by + b / 2 - 1:.1f}" '
                     f'font-size="{font:.1f}" fill="{t}">{escape(p["name"])}</text>')
        if b >= 34:
            parts.append(f'<text class="pe-sub" x="{bx + b / 2:.1f}" '
                         f'y="{by + b / 2 + font:.1f}" font-size="{font * 0.8:.1f}" '
                         f'fill="{t}">s{i} r{p["replica"]}</text>')
    if p["host_link"]:
        r = max(3.0, b * 0.11)
        parts.append(f'<circle class="host-badge" cx="{bx + b - r - 1:.1f}" '
                     f'cy="{by + r + 1:.1f}" r="{r:.1f}"/>')
    parts.append(title(_pe_tip(p, i, brief)) + "</g>")
    return "".join(parts)


def _links(data: dict[str, Any], geo: Geometry, lay: _PeLayout) -> str:
    links = used_links(data)
    if not links:
        return '<g class="links"/>'
    known = pe_coords(data, geo)
    most = max(b for _, _, b in links)
    out = ['<g class="links">']
    for a, b, nbytes in links:
        pa, pb = _where(a, known, geo), _where(b, known, geo)
        if pa is None or pb is None:
            continue
        (x1, y1), (x2, y2) = lay.centre(*pa), lay.centre(*pb)
        wdt = link_width(nbytes, most, hi=min(10.0, lay.box * 0.22))
        out.append(_arrow(x1, y1, x2, y2, wdt, offset=lay.box * 0.2, shorten=lay.box / 2 + 1,
                          class_="link", data_link=f"{a}->{b}", data_bytes=nbytes,
                          tip=f"PE {a} → PE {b}: {nbytes:,} bytes"))
    out.append("</g>")
    return "".join(out)


def _host(geo: Geometry, lay: _PeLayout, height: float) -> str:
    """The host, left of the mesh, and a line to each of the board's host-link PEs."""
    hosts = [c for c in geo.host_links if c[0] < geo.width and c[1] < geo.height] or [(0, 0)]
    ys = [lay.centre(*c)[1] for c in hosts]
    hy = min(max(sum(ys) / len(ys) - 22, 4), max(4, height - 48))
    out = [f'<g class="host"><rect x="4" y="{hy:.1f}" width="{lay.HOST_W}" height="44" rx="6"/>'
           f'<text x="{4 + lay.HOST_W / 2}" y="{hy + 27:.1f}">host</text>'
           f'{title("the host running pemesh: sends model inputs, receives outputs and STATS")}'
           f'</g>']
    for c in hosts:
        x2, y2 = lay.cell(*c)
        y2 += lay.box / 2
        out.append(f'<g class="host-link" data-pe-coords="{c[0]},{c[1]}"><path d="M{4 + lay.HOST_W},'
                   f'{hy + 22:.1f} C{x2 - 30:.1f},{hy + 22:.1f} {x2 - 30:.1f},{y2:.1f} '
                   f'{x2 - 1:.1f},{y2:.1f}"/>{title(f"host link of the board: PE at {c}")}</g>')
    return "".join(out)


# --- chip by chip ----------------------------------------------------------------------------

CHIP_W, CHIP_H, CHIP_GAP = 150.0, 112.0, 30.0


def chip_stats(data: dict[str, Any], geo: Geometry) -> list[dict[str, Any]]:
    """Per chip: its PEs per stage, the dominant stage, the largest RAM/flash and cycles, the
    bytes its on-chip links carried, whether it holds the bottleneck PE or a host link."""
    stage_no = {s["name"]: i for i, s in enumerate(data["stages"])}
    slow = bottleneck(data)
    chips = [{"chip": c, "coords": (c % geo.chips_x, c // geo.chips_x), "pes": 0, "stages": {},
              "ram": None, "flash": None, "cycles": None, "on_chip_bytes": 0,
              "bottleneck": False, "host_link": False, "host_pes": 0}
             for c in range(geo.num_chips)]
    for p in data["pes"]:
        c = chips[geo.chip_at(*p["coords"])]
        c["pes"] += 1
        i = stage_no.get(p["stage"], 0)
        c["stages"][i] = c["stages"].get(i, 0) + 1
        ram = p["built_ram"] if p["built_ram"] is not None else p["planned_ram"]
        flash = p["built_flash"] if p["built_flash"] is not None else p["planned_flash"]
        c["ram"] = max(c["ram"] or 0, ram)
        c["flash"] = max(c["flash"] or 0, flash)
        if p["cycles"] is not None:
            c["cycles"] = max(c["cycles"] or 0, p["cycles"])
        if slow and slow["by"] == "measured" and p["name"] == slow["pe"]:
            c["bottleneck"] = True
        c["host_pes"] += int(p["host_link"])
    for x, y in geo.host_links:
        if x < geo.width and y < geo.height:
            chips[geo.chip_at(x, y)]["host_link"] = True
    known = pe_coords(data, geo)
    for a, b, nbytes in used_links(data):
        pa, pb = _where(a, known, geo), _where(b, known, geo)
        if pa and pb and geo.chip_at(*pa) == geo.chip_at(*pb):
            chips[geo.chip_at(*pa)]["on_chip_bytes"] += nbytes
    for c in chips:
        c["dominant"] = (max(c["stages"].items(), key=lambda kv: (kv[1], -kv[0]))[0]
                         if c["stages"] else None)
    return chips


def chip_links(data: dict[str, Any], geo: Geometry) -> dict[tuple[int, int], int]:
    """Bytes that crossed from one chip to a neighbouring chip, by (from chip, to chip)."""
    known = pe_coords(data, geo)
    out: dict[tuple[int, int], int] = {}
    for a, b, nbytes in used_links(data):
        pa, pb = _where(a, known, geo), _where(b, known, geo)
        if pa and pb:
            ca, cb = geo.chip_at(*pa), geo.chip_at(*pb)
            if ca != cb:
                out[(ca, cb)] = out.get((ca, cb), 0) + nbytes
    return out


def _chip_xy(geo: Geometry, chip: int) -> tuple[float, float]:
    cy, cx = divmod(chip, geo.chips_x)
    return (_PeLayout.HOST_W + 48 + cx * (CHIP_W + CHIP_GAP), 8 + cy * (CHIP_H + CHIP_GAP))


def chip_view(data: dict[str, Any], geo: Geometry, colors: list[str]) -> str:
    """One cell per chip (dominant stage, counts, stage mix), chip-to-chip traffic, the host."""
    stats = chip_stats(data, geo)
    names = [s["name"] for s in data["stages"]]
    w = _PeLayout.HOST_W + 48 + geo.chips_x * (CHIP_W + CHIP_GAP) - CHIP_GAP + 8
    h = 8 + geo.chips_y * (CHIP_H + CHIP_GAP) - CHIP_GAP + 8
    out = [svg_open(w, h, "mesh chip-view zoomable", "the mesh, chip by chip")]
    for c in stats:
        out.append(_chip_cell(c, geo, colors, names))
    out.append(_chip_arrows(data, geo))
    out.append(_chip_host(stats, geo, h))
    out.append("</svg>")
    return "".join(out)


def _chip_cell(c: dict[str, Any], geo: Geometry, colors: list[str], names: list[str]) -> str:
    x, y = _chip_xy(geo, c["chip"])
    per_chip = geo.pes_x * geo.pes_y
    dom = c["dominant"]
    fill = colors[dom % len(colors)] if dom is not None else "#f3f3f3"
    t = ink(fill) if dom is not None else "#777"
    cls = "chip-cell bottleneck" if c["bottleneck"] else "chip-cell"
    tied = (sum(1 for n in c["stages"].values() if n == c["stages"][dom]) - 1
            if dom is not None else 0)
    dname = "" if dom is None else (names[dom] if dom < len(names) else str(dom))
    lines = [f"chip {c['chip']} at {c['coords']}: {c['pes']} of {per_chip} PEs used"]
    if dom is not None:
        lines.append(f"dominant stage {dname}: {c['stages'][dom]} PEs"
                     + (f" (tied with {tied} other stage{'' if tied == 1 else 's'}; the "
                        "earliest is shown)" if tied else ""))
    lines += [f"  {names[i] if i < len(names) else i}: {n} PE{'' if n == 1 else 's'}"
              for i, n in sorted(c["stages"].items(), key=lambda kv: (-kv[1], kv[0]))]
    lines += [f"largest RAM {human_bytes(c['ram'])}, flash {human_bytes(c['flash'])}",
              f"slowest PE: {_n(c['cycles'])} cycles per inference",
              f"on-chip links carried {c['on_chip_bytes']:,} bytes"]
    if c["bottleneck"]:
        lines.append("holds the bottleneck PE")
    if c["host_link"]:
        lines.append("holds the board's host link")
    n_st = len(c["stages"])
    out = [f'<g class="{cls}" data-chip="{c["chip"]}" data-pes="{c["pes"]}" '
           f'data-dominant="{escape(dname)}" tabindex="0">'
           f'<rect x="{x:.1f}" y="{y:.1f}" width="{CHIP_W}" height="{CHIP_H}" '
           f'rx="8" fill="{fill}"/>',
           f'<text class="chip-title" x="{x + 8:.1f}" y="{y + 18:.1f}" fill="{t}">chip {c["chip"]}'
           f' ({c["coords"][0]},{c["coords"][1]})</text>',
           f'<text class="chip-count" x="{x + 8:.1f}" y="{y + 35:.1f}" fill="{t}">'
           f'{c["pes"]}/{per_chip} PEs</text>']
    if dom is not None:
        out.append(f'<text class="chip-count" x="{x + 8:.1f}" y="{y + 50:.1f}" fill="{t}">'
                   f'{n_st} stage{"" if n_st == 1 else "s"}</text>'
                   f'<text class="chip-dom" x="{x + 8:.1f}" y="{y + 65:.1f}" fill="{t}">'
                   f'{c["stages"][dom]} × s{dom}{f" +{tied} tied" if tied else ""}</text>')
        if c["cycles"] is not None:
            out.append(f'<text class="chip-cyc" x="{x + 8:.1f}" y="{y + 80:.1f}" fill="{t}">'
                       f'max {c["cycles"]:,} cyc</text>')
        # the stage mix: one segment per stage, width by PE count
        bx, bw = x + 8, CHIP_W - 16
        out.append(f'<rect class="mix-frame" x="{bx:.1f}" y="{y + CHIP_H - 20:.1f}" '
                   f'width="{bw:.1f}" height="11"/>')
        at = bx
        for i, n in sorted(c["stages"].items()):
            sw = bw * n / max(c["pes"], 1)
            out.append(f'<rect class="mix" x="{at:.2f}" y="{y + CHIP_H - 20:.1f}" '
                       f'width="{sw:.2f}" height="11" fill="{colors[i % len(colors)]}"/>')
            at += sw
    if c["host_link"]:
        out.append(f'<circle class="host-badge" cx="{x + CHIP_W - 12:.1f}" cy="{y + 13:.1f}" '
                   f'r="5"/>')
    out.append(title("\n".join(lines)) + "</g>")
    return "".join(out)


def _chip_arrows(data: dict[str, Any], geo: Geometry) -> str:
    links = chip_links(data, geo)
    if not links:
        return '<g class="links"/>'
    most = max(links.values())
    out = ['<g class="links">']
    for (ca, cb), nbytes in sorted(links.items()):
        xa, ya = _chip_xy(geo, ca)
        xb, yb = _chip_xy(geo, cb)
        ax, ay, bx, by = xa + CHIP_W / 2, ya + CHIP_H / 2, xb + CHIP_W / 2, yb + CHIP_H / 2
        horizontal = abs(bx - ax) >= abs(by - ay)
        shorten = (CHIP_W if horizontal else CHIP_H) / 2 - 2
        out.append(_arrow(ax, ay, bx, by, link_width(nbytes, most, hi=12.0), offset=14.0,
                          shorten=shorten, class_="link chip-link", data_link=f"{ca}->{cb}",
                          data_bytes=nbytes,
                          tip=f"chip {ca} → chip {cb}: {nbytes:,} bytes over chip-to-chip links"))
    out.append("</g>")
    return "".join(out)


def _chip_host(stats: list[dict[str, Any]], geo: Geometry, height: float) -> str:
    chips = [c["chip"] for c in stats if c["host_link"]] or [0]
    ys = [_chip_xy(geo, c)[1] + CHIP_H / 2 for c in chips]
    hy = min(max(sum(ys) / len(ys) - 22, 4), max(4, height - 48))
    hw = _PeLayout.HOST_W
    out = [f'<g class="host"><rect x="4" y="{hy:.1f}" width="{hw}" height="44" rx="6"/>'
           f'<text x="{4 + hw / 2}" y="{hy + 27:.1f}">host</text>'
           f'{title("the host running pemesh: sends model inputs, receives outputs and STATS")}'
           f'</g>']
    for c in chips:
        x2, y2 = _chip_xy(geo, c)
        y2 += CHIP_H / 2
        out.append(f'<g class="host-link" data-chip="{c}"><path d="M{4 + hw},{hy + 22:.1f} '
                   f'C{x2 - 24:.1f},{hy + 22:.1f} {x2 - 24:.1f},{y2:.1f} {x2 - 1:.1f},{y2:.1f}"/>'
                   f'{title(f"host link of the board, on chip {c}")}</g>')
    return "".join(out)


def width_key(values: list[int]) -> str:
    """A small SVG: what link widths mean (the least, the median and the most bytes a drawn
    link carried, at their widths)."""
    values = sorted(v for v in values if v > 0)
    if not values:
        return ""
    most = values[-1]
    samples = [values[0], values[len(values) // 2], most]
    out = [svg_open(330, 22, "width-key", "link width key")]
    x = 4.0
    for s in _dedupe(samples):
        wdt = link_width(s, most)
        out.append(f'<line x1="{x:.0f}" y1="11" x2="{x + 36:.0f}" y2="11" stroke-width="{wdt}"/>'
                   f'<text x="{x + 42:.0f}" y="15">{human_bytes(s)}</text>')
        x += 108
    out.append("</svg>")
    return "".join(out)


def _dedupe(xs: Iterable[int]) -> list[int]:
    seen: list[int] = []
    for x in xs:
        if x not in seen:
            seen.append(x)
    return seen
