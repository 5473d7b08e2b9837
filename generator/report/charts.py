"""Bar charts for the HTML report, as inline SVG: RAM and flash against their limits (planned
and built), and cycles per stage with the bottleneck marked.

Every fragment is well-formed XML (the tests parse it with ``xml.etree``).
"""

from __future__ import annotations

from html import escape
from typing import Any

from generator.report.svg import BOTTLENECK, human_bytes, svg_open, title

#: memory bars PE by PE up to this many PEs; beyond, one row per stage (its PEs run one image)
MAX_PE_BARS = 64

_LABEL_W = 150.0
_BAR_W = 300.0
_ROW_H = 20.0
_GAP = 150.0            # between the RAM and the flash column (room for the numbers)


def memory_rows(data: dict[str, Any], summary: list[dict[str, Any]]) -> tuple[str, list[dict]]:
    """What the memory chart shows: ("pe", one row per PE) for small meshes, otherwise
    ("stage", one row per stage with the largest values among its PEs)."""
    stage_no = {s["name"]: i for i, s in enumerate(data["stages"])}
    if len(data["pes"]) <= MAX_PE_BARS:
        rows = [{"label": p["name"], "key": p["name"], "stage": stage_no.get(p["stage"], 0),
                 "note": f"{p['stage']}, replica {p['replica']}",
                 **{k: p[k] for k in ("planned_ram", "built_ram", "ram_limit", "planned_flash",
                                      "built_flash", "flash_limit")}}
                for p in sorted(data["pes"], key=lambda p: p["pe_id"])]
        return "pe", rows
    rows = [{"label": f"s{r['index']} ({r['pes']} PEs)", "key": r["name"], "stage": r["index"],
             "note": f"{r['name']}: largest of its {r['pes']} PEs",
             **{k: r[k] for k in ("planned_ram", "built_ram", "ram_limit", "planned_flash",
                                  "built_flash", "flash_limit")}}
            for r in summary if r["pes"]]
    return "stage", rows


def _bar(x: float, y: float, planned: int, built: int | None, limit: int, fill: str,
         what: str, key: str) -> str:
    """One bar: the limit as the track, planned as a light bar, built as a solid inner bar."""
    lim = max(limit, 1)
    most = max(planned, built or 0, lim)
    scale = _BAR_W / most                   # an over-limit bar still fits; the limit line moves
    h = _ROW_H - 6
    over = planned > limit or (built or 0) > limit
    out = [f'<g class="bar {what}{" over" if over else ""}" data-key="{escape(key)}" '
           f'data-planned="{planned}" data-built="{"" if built is None else built}" '
           f'data-limit="{limit}">',
           f'<rect class="track" x="{x:.1f}" y="{y:.1f}" width="{lim * scale:.1f}" height="{h}"/>',
           f'<rect class="planned" x="{x:.1f}" y="{y:.1f}" width="{planned * scale:.1f}" '
           f'height="{h}" fill="{fill}"/>']
    if built is not None:
        out.append(f'<rect class="built" x="{x:.1f}" y="{y + 3:.1f}" width="{built * scale:.1f}" '
                   f'height="{h - 6}" fill="{fill}"/>')
    out.append(f'<line class="limit" x1="{x + lim * scale:.1f}" y1="{y - 2:.1f}" '
               f'x2="{x + lim * scale:.1f}" y2="{y + h + 2:.1f}"/>')
    pct = f"{100 * (built if built is not None else planned) / lim:.0f}%"
    out.append(f'<text class="num" x="{x + _BAR_W + 6:.1f}" y="{y + h - 3:.1f}">'
               f'{human_bytes(built if built is not None else planned)} · {pct}</text>')
    out.append(title(f"{what}: planned {planned:,} B, built "
                     f"{'-' if built is None else f'{built:,}'} B, limit {limit:,} B"
                     + (" — OVER THE LIMIT" if over else "")) + "</g>")
    return "".join(out)


def memory_chart(data: dict[str, Any], summary: list[dict[str, Any]],
                 colors: list[str]) -> tuple[str, str]:
    """(the chart's SVG, "pe" or "stage": what one row is)."""
    kind, rows = memory_rows(data, summary)
    top = 30.0
    width = _LABEL_W + 2 * _BAR_W + _GAP + 110
    height = top + _ROW_H * len(rows) + 8
    x_ram, x_flash = _LABEL_W, _LABEL_W + _BAR_W + _GAP
    out = [svg_open(width, height, "chart memory-chart", "RAM and flash against their limits"),
           f'<text class="col" x="{x_ram}" y="16">RAM (limit {human_bytes(rows[0]["ram_limit"])})'
           f'</text>' if rows else "",
           f'<text class="col" x="{x_flash}" y="16">flash (limit '
           f'{human_bytes(rows[0]["flash_limit"])})</text>' if rows else ""]
    for i, r in enumerate(rows):
        y = top + i * _ROW_H
        fill = colors[r["stage"] % len(colors)]
        out.append(f'<g class="mem-row" data-row="{escape(r["key"])}">'
                   f'<rect class="swatch" x="0" y="{y + 2:.1f}" width="10" height="10" '
                   f'fill="{fill}"/><text class="row-label" x="16" y="{y + 11:.1f}">'
                   f'{escape(r["label"])}{title(r["note"])}</text>')
        out.append(_bar(x_ram, y, r["planned_ram"], r["built_ram"], r["ram_limit"], fill,
                        "ram", r["key"]))
        out.append(_bar(x_flash, y, r["planned_flash"], r["built_flash"], r["flash_limit"],
                        fill, "flash", r["key"]))
        out.append("</g>")
    out.append("</svg>")
    return "".join(out), kind


def cycles_chart(summary: list[dict[str, Any]], slow: dict[str, Any] | None,
                 colors: list[str]) -> str:
    """Per stage: the partitioner's modelled cycles and the cycles its PEs measured (max bar,
    min..max whisker, mean tick), each column on its own scale; the bottleneck in red."""
    rows = list(summary)
    top = 30.0
    width = _LABEL_W + 2 * _BAR_W + _GAP + 210
    height = top + _ROW_H * len(rows) + 8
    x_model, x_meas = _LABEL_W, _LABEL_W + _BAR_W + _GAP
    most_model = max([r["cost_cycles"] for r in rows] + [1])
    most_meas = max([r["cycles_max"] or 0 for r in rows] + [1])
    measured = any(r["cycles_max"] is not None for r in rows)
    out = [svg_open(width, height, "chart cycles-chart", "cycles per stage"),
           f'<text class="col" x="{x_model}" y="16">modelled cycles (partitioner)</text>',
           f'<text class="col" x="{x_meas}" y="16">'
           f'{"measured cycles per inference (max; whisker min..max)" if measured else "not run yet"}'
           f'</text>']
    h = _ROW_H - 6
    for i, r in enumerate(rows):
        y = top + i * _ROW_H
        fill = colors[r["index"] % len(colors)]
        neck = r["bottleneck"]
        cls = "cyc-row bottleneck" if neck else "cyc-row"
        out.append(f'<g class="{cls}" data-stage="{escape(r["name"])}">'
                   f'<rect class="swatch" x="0" y="{y + 2:.1f}" width="10" height="10" '
                   f'fill="{fill}"/><text class="row-label" x="16" y="{y + 11:.1f}">'
                   f'{escape(r["name"][:20])}</text>')
        mw = _BAR_W * r["cost_cycles"] / most_model
        model_neck = neck and slow is not None and slow["by"] == "planned"
        out.append(f'<rect class="model{" neck" if model_neck else ""}" x="{x_model}" '
                   f'y="{y:.1f}" width="{mw:.1f}" height="{h}" fill="{fill}">'
                   f'{title(r["name"] + ": " + format(r["cost_cycles"], ",") + " modelled cycles")}</rect>'
                   f'<text class="num" x="{x_model + mw + 6:.1f}" y="{y + h - 3:.1f}">'
                   f'{r["cost_cycles"]:,}</text>')
        if r["cycles_max"] is not None:
            xw = _BAR_W * r["cycles_max"] / most_meas
            lo = _BAR_W * r["cycles_min"] / most_meas
            mean = _BAR_W * r["cycles_mean"] / most_meas
            out.append(f'<rect class="measured{" neck" if neck else ""}" x="{x_meas}" '
                       f'y="{y:.1f}" width="{xw:.1f}" height="{h}" fill="{fill}">'
                       f'{title(_cyc_tip(r))}</rect>')
            if r["ran"] > 1:
                out.append(f'<line class="whisker" x1="{x_meas + lo:.1f}" y1="{y + h / 2:.1f}" '
                           f'x2="{x_meas + xw:.1f}" y2="{y + h / 2:.1f}"/>'
                           f'<line class="mean" x1="{x_meas + mean:.1f}" y1="{y:.1f}" '
                           f'x2="{x_meas + mean:.1f}" y2="{y + h:.1f}"/>')
            out.append(f'<text class="num" x="{x_meas + xw + 6:.1f}" y="{y + h - 3:.1f}">'
                       f'{r["cycles_max"]:,}</text>')
        if neck:
            at = (x_meas + _BAR_W * (r["cycles_max"] or 0) / most_meas if not model_neck
                  else x_model + mw)
            tx = at + 6 + 7.2 * len(f"{(r['cycles_max'] if not model_neck else r['cost_cycles']):,}")
            out.append(f'<text class="neck-mark" x="{tx + 8:.1f}" y="{y + h - 3:.1f}" '
                       f'fill="{BOTTLENECK}">◀ bottleneck</text>')
        out.append("</g>")
    out.append("</svg>")
    return "".join(out)


def _cyc_tip(r: dict[str, Any]) -> str:
    return (f"{r['name']}: {r['ran']} PE(s) ran; cycles per inference min {r['cycles_min']:,}, "
            f"mean {r['cycles_mean']:,}, max {r['cycles_max']:,}"
            + (" — the bottleneck" if r["bottleneck"] else ""))
