"""The HTML report's structure: legend, PEs, links with traffic as width, host link, memory bars,
cycles with the bottleneck, tables; and a 7,296-PE report drawn chip by chip and kept small."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from generator.report.html import render_html, use_chip_view
from generator.report.summary import collect, geometry, render_text, stage_summary
from generator.report.svg import stage_colors
from tests.report.page import Elements, svgs, text_of, with_class
from tests.report.synthetic import link_bytes, write_synthetic_out


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """qemu64 (2x2 chips of 4x4 PEs), 5 stages x 12 replicas, 4 positions free, with a run."""
    out = tmp_path_factory.mktemp("small")
    write_synthetic_out(out, "qemu64", stages=5, unused=4, slow_stage=3)
    data = collect(out)
    return data, render_html(data)


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """spinnaker2_board: all 7,296 PEs (48 chips of 152), 12 stages x 608 replicas, with a run
    (every PE's cycles, every link's bytes: the largest page)."""
    out = tmp_path_factory.mktemp("big")
    write_synthetic_out(out, "spinnaker2_board", stages=12)
    data = collect(out)
    return data, render_html(data)


def test_self_contained(small, big):
    for _, page in (small, big):
        assert page.startswith("<!DOCTYPE html>")
        # nothing is fetched when the page is viewed: no URL but the SVG namespace
        urls = set(re.findall(r"https?://[^\s\"'<>]+", page))
        assert urls <= {"http://www.w3.org/2000/svg"}, urls
        assert not re.search(r"<(link|img|iframe)\b|\bsrc=|@import|url\(", page)
        assert page.count("<style>") == 1


def test_legend_has_one_entry_per_stage(small):
    data, page = small
    items = Elements(page).by_class("legend-stage", "li")
    assert [i["attrs"]["data-stage"] for i in items] == [s["name"] for s in data["stages"]]
    marked = [i["attrs"]["data-stage"] for i in items if "bottleneck" in i["text"]]
    assert marked == ["net_s3"]
    assert all("12 PEs" in i["text"] for i in items)


def test_pes_drawn_labelled_and_coloured_by_stage(small):
    data, page = small
    mesh = svgs(page)["mesh"]
    colors = stage_colors(len(data["stages"]))
    idx = {s["name"]: i for i, s in enumerate(data["stages"])}
    pes = with_class(mesh, "pe")
    assert len(pes) == len(data["pes"]) == 60
    by_id = {int(g.get("data-pe")): g for g in pes}
    for p in data["pes"]:
        g = by_id[p["pe_id"]]
        assert g.find("{http://www.w3.org/2000/svg}rect").get("fill") == colors[idx[p["stage"]]]
        assert p["name"] in text_of(g)
    assert len(with_class(mesh, "pe-unused", "rect")) == 4
    chips = with_class(mesh, "chip")
    assert [c.get("data-chip") for c in chips] == ["0", "1", "2", "3"]
    # the bottleneck PE is marked on the mesh
    neck = with_class(mesh, "bottleneck")
    assert len(neck) == 1 and neck[0].get("data-stage") == "net_s3"


def test_one_line_per_used_link_wider_for_more_bytes(small):
    data, page = small
    mesh = svgs(page)["mesh"]
    links = with_class(mesh, "link")
    assert sorted(g.get("data-link") for g in links) == sorted(data["links"])
    widths = {}
    for g in links:
        lines = g.findall("{http://www.w3.org/2000/svg}line")
        assert len(lines) == 1
        widths[int(g.get("data-bytes"))] = float(lines[0].get("stroke-width"))
    assert int(links[0].get("data-bytes")) == data["links"][links[0].get("data-link")]
    by_bytes = sorted(widths.items())
    assert len(by_bytes) == 4            # stages 0..3 send 600, 1000, 1400, 1800 bytes
    assert [b for b, _ in by_bytes] == [link_bytes(s) for s in range(4)]
    assert all(w1 < w2 for (_, w1), (_, w2) in zip(by_bytes, by_bytes[1:]))


def test_host_and_its_link(small):
    _, page = small
    mesh = svgs(page)["mesh"]
    assert len(with_class(mesh, "host")) == 1
    links = with_class(mesh, "host-link")
    assert [g.get("data-pe-coords") for g in links] == ["0,0"]
    # entry and exit PEs of the 12 replicas carry the host badge
    assert len(with_class(mesh, "host-badge", "circle")) == 24


def test_memory_bars_per_pe_against_limits(small):
    data, page = small
    chart = svgs(page)["chart memory-chart"]
    for what in ("ram", "flash"):
        bars = with_class(chart, what)
        assert len(bars) == len(data["pes"])
        by_key = {b.get("data-key"): b for b in bars}
        for p in data["pes"]:
            b = by_key[p["name"]]
            assert int(b.get("data-planned")) == p[f"planned_{what}"]
            assert int(b.get("data-built")) == p[f"built_{what}"]
            assert int(b.get("data-limit")) == p[f"{what}_limit"]
            rects = {r.get("class"): float(r.get("width"))
                     for r in b.iter("{http://www.w3.org/2000/svg}rect")}
            assert 0 < rects["built"] < rects["planned"] < rects["track"]


def test_cycles_per_stage_with_the_bottleneck_marked(small):
    data, page = small
    chart = svgs(page)["chart cycles-chart"]
    rows = with_class(chart, "cyc-row")
    assert [r.get("data-stage") for r in rows] == [s["name"] for s in data["stages"]]
    neck = [r for r in rows if "bottleneck" in r.get("class").split()]
    assert [r.get("data-stage") for r in neck] == ["net_s3"]
    assert "bottleneck" in text_of(neck[0])
    measured = {r.get("data-stage"): float(with_class(r, "measured", "rect")[0].get("width"))
                for r in rows}
    assert max(measured, key=measured.get) == "net_s3"


def test_tables(small):
    data, page = small
    el = Elements(page)
    pe_rows = [e for e in el.found if e["tag"] == "tr"]
    assert any("pe39" in e["text"] for e in pe_rows)
    assert len(el.by_class("bottleneck", "tr")) == 3    # its stage (cycles, memory), its PE
    assert "Stages" in page and "Links" in page


def test_report_before_any_run(tmp_path):
    write_synthetic_out(tmp_path, "qemu16", stages=4, run=False, build=False, slow_stage=2)
    data = collect(tmp_path)
    page = render_html(data)
    chart = svgs(page)["chart cycles-chart"]
    neck = [r for r in with_class(chart, "cyc-row") if "bottleneck" in r.get("class").split()]
    assert [r.get("data-stage") for r in neck] == ["net_s2"]     # by the cycle model
    assert not with_class(svgs(page)["mesh"], "link")
    assert "not run" in page and "not built" in page


def test_7296_pes_aggregated_per_chip_and_small(big):
    data, page = big
    geo = geometry(data)
    assert len(data["pes"]) == 7296 and use_chip_view(geo)
    assert len(page) < 450_000, f"{len(page):,} bytes"
    mesh = svgs(page)["mesh"]
    assert not with_class(mesh, "pe")                        # no box per PE in the page
    cells = with_class(mesh, "chip-cell")
    assert len(cells) == 48
    assert sum(int(c.get("data-pes")) for c in cells) == 7296
    colors = stage_colors(12)
    idx = {s["name"]: i for i, s in enumerate(data["stages"])}
    per_chip: dict[int, Counter] = {}
    for p in data["pes"]:
        per_chip.setdefault(p["chip"], Counter())[p["stage"]] += 1
    for c in cells:
        count = per_chip[int(c.get("data-chip"))]
        top = max(count.values())
        dom = min((s for s, n in count.items() if n == top), key=idx.get)
        assert c.get("data-dominant") == dom
        assert c.find("{http://www.w3.org/2000/svg}rect").get("fill") == colors[idx[dom]]
        assert f"{sum(count.values())}/152 PEs" in text_of(c) and "12 stages" in text_of(c)
        assert f"{top} × s{idx[dom]}" in text_of(c)
    assert "holds the bottleneck PE" in "".join(
        text_of(c) for c in cells if "bottleneck" in c.get("class").split())
    # chip-to-chip traffic: one arrow per (from chip, to chip), wider for more bytes
    arrows = with_class(mesh, "chip-link")
    crossing = Counter()
    for key, nbytes in data["links"].items():
        a, b = (int(v) for v in key.split("->"))
        ca, cb = a // 152, b // 152
        if ca != cb:
            crossing[f"{ca}->{cb}"] += nbytes
    assert sorted(a.get("data-link") for a in arrows) == sorted(crossing)
    w = sorted((int(a.get("data-bytes")), float(a.find("{http://www.w3.org/2000/svg}line")
                                                  .get("stroke-width"))) for a in arrows)
    assert all(w1 <= w2 for (_, w1), (_, w2) in zip(w, w[1:]))
    assert w[0][1] < w[-1][1]
    # the details the script draws on click are in the page, per grid position
    doc = json.loads(re.search(r'id="pemesh-data">(.*?)</script>', page, re.S).group(1))
    assert len(doc["stage"]) == 64 * 114
    assert Counter(doc["stage"]) == {i: 608 for i in range(12)}
    assert doc["neck"] == data["throughput"]["slowest_stage"]["pe"]
    # memory and cycles: one row per stage, not per PE
    assert len(with_class(svgs(page)["chart memory-chart"], "ram")) == 12
    assert len(with_class(svgs(page)["chart cycles-chart"], "cyc-row")) == 12


def test_text_report_legend_and_stage_summary(small):
    data, _ = small
    text = render_text(data)
    assert "legend: 0 = net_s0 (12 PEs)" in text and ". = unused" in text
    lines = text.splitlines()
    per_stage = lines.index("per stage (largest over its PEs; cycles measured min/mean/max):")
    rows = lines[per_stage + 2:per_stage + 7]
    assert [r.split()[1] for r in rows] == [f"net_s{i}" for i in range(5)]
    assert [r for r in rows if r.endswith("<- bottleneck")] == [rows[3]]
    assert "bottleneck: net_s3 on pe" in text
    # the earlier content stays: per-PE rows, the glyph picture, links
    assert any(line.split()[:1] == ["pe39"] for line in lines)
    assert "mesh (stage of each PE, '.' unused):" in text and "links (bytes):" in text
    summary = stage_summary(data)
    assert [r["pes"] for r in summary] == [12] * 5


MESH_1024 = """mesh:
  name: grid1024
  description: "4x4 chips of 8x8 PEs: the largest grid drawn PE by PE"
  pe_kind: qemu_cortex_m3
  topology: {chips_x: 4, chips_y: 4, pes_x: 8, pes_y: 8}
  host_links:
    - pe 0 of chip (0,0)
  links:
    on_chip: {bytes_per_s: 1000000, latency_ns: 10000}
    chip_to_chip: {bytes_per_s: 250000, latency_ns: 40000}
"""


def test_largest_pe_view_stays_small(tmp_path):
    yaml = tmp_path / "grid1024.yaml"
    yaml.write_text(MESH_1024)
    write_synthetic_out(tmp_path / "out", str(yaml), stages=8)
    data = collect(tmp_path / "out")
    page = render_html(data)
    assert not use_chip_view(geometry(data))
    mesh = svgs(page)["mesh"]
    assert len(with_class(mesh, "pe")) == 1024
    assert len(with_class(mesh, "link")) == len(data["links"])
    assert len(page) < 550_000, f"{len(page):,} bytes"


def test_accelerator_columns_only_when_used(small, tmp_path):
    data, page = small
    assert "accel cycles" not in page
    write_synthetic_out(tmp_path, "qemu4", stages=2)
    data = collect(tmp_path)
    data["pes"][0].update(accel_cycles=1234, accel_calls=3)
    page = render_html(data)
    assert "accel cycles (model)" in page and "1,234" in page
