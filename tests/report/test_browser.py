"""The HTML report in a real browser: headless Chromium loads the page from a file (no network),
runs its script and takes a screenshot; the pixels show the stage colours and the bottleneck.

Skipped when Chromium is not installed (``apt-get install chromium``; scripts/setup.sh installs it
with the test extras). Set PEMESH_SCREENSHOTS=DIR to keep the screenshots for a look.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from generator.report.html import render_html
from generator.report.summary import collect
from generator.report.svg import BOTTLENECK, stage_colors
from tests.report.page import has_color, read_png
from tests.report.synthetic import write_synthetic_out
from tests.report.test_html import MESH_1024

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(n)), None)

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs headless Chromium: apt-get install -y chromium "
                             "(scripts/setup.sh does it for the test extras as root)")


def chromium(page: Path, *args: str, timeout: float = 120,
             fragment: str = "") -> subprocess.CompletedProcess:
    """Run headless Chromium on ``page`` (``#fragment``) with a throw-away profile and no
    network services."""
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", "--disable-extensions", f"--user-data-dir={profile}",
             *args, page.resolve().as_uri() + (f"#{fragment}" if fragment else "")],
            capture_output=True, text=True, timeout=timeout)


def screenshot(page: Path, png: Path, size: str = "1400,1000") -> Path:
    r = chromium(page, f"--screenshot={png}", f"--window-size={size}",
                 "--hide-scrollbars")
    assert png.is_file() and png.stat().st_size > 10_000, (r.returncode, r.stderr[-2000:])
    keep = os.environ.get("PEMESH_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(png, Path(keep) / png.name)
        shutil.copy(page, Path(keep) / page.name)
    return png


def _page(tmp_path: Path, name: str, **kw) -> tuple[dict, Path]:
    out = tmp_path / name
    write_synthetic_out(out, **kw)
    data = collect(out)
    page = tmp_path / f"{name}.html"
    page.write_text(render_html(data))
    return data, page


def test_small_mesh_in_chromium(tmp_path):
    data, page = _page(tmp_path, "report_qemu16", mesh_name="qemu16", stages=5, slow_stage=3)
    img = read_png(screenshot(page, tmp_path / "report_qemu16.png"))
    # every stage's colour is on screen (its PE boxes, legend swatch), and the bottleneck's red
    for color in stage_colors(5):
        assert has_color(img, color) > 400, color
    assert has_color(img, BOTTLENECK, tol=10) > 200
    # the script ran without an error: the DOM after it is complete
    r = chromium(page, "--dump-dom", "--enable-logging=stderr", "--v=0")
    assert "</svg>" in r.stdout and 'class="chart cycles-chart"' in r.stdout
    assert "Uncaught" not in r.stderr, r.stderr[-2000:]


def test_7296_pes_in_chromium(tmp_path):
    data, page = _page(tmp_path, "report_spinnaker2", mesh_name="spinnaker2_board", stages=12)
    img = read_png(screenshot(page, tmp_path / "report_spinnaker2.png", "1400,1800"))
    assert img.shape[:2] == (1800, 1400)
    colors = stage_colors(12)
    assert has_color(img, colors[0]) > 5000            # chip cells of the dominant stage s0
    assert sum(has_color(img, c) > 50 for c in colors) == 12   # every stage: mix bars, detail
    # the script drew the chip holding the bottleneck PE, PE by PE, with its summary
    r = chromium(page, "--dump-dom", "--enable-logging=stderr", "--v=0")
    assert "Uncaught" not in r.stderr, r.stderr[-2000:]
    slow = data["throughput"]["slowest_stage"]["pe"]
    assert 'class="chip-detail"' in r.stdout and f"slowest PE: pe{slow}," in r.stdout
    # report.html#chip=40 opens on chip 40 (0,5)
    r = chromium(page, "--dump-dom", fragment="chip=40")
    assert "<h3>chip 40 (0,5)</h3>" in r.stdout and "pe6080" in r.stdout


#: appended to a copy of the page: wheel-zoom the mesh, click chip 5, show all PEs; the results
#: land in attributes of <body> that --dump-dom shows
_DRIVE = """<script>
(function () {
  var svg = document.querySelector("svg.zoomable"), r = svg.getBoundingClientRect();
  var before = svg.getAttribute("viewBox");
  for (var i = 0; i < 3; i++)
    svg.dispatchEvent(new WheelEvent("wheel", {deltaY: -100, clientX: r.left + r.width * 0.3,
      clientY: r.top + r.height * 0.3, ctrlKey: true, bubbles: true, cancelable: true}));
  document.body.setAttribute("data-before", before);
  document.body.setAttribute("data-after", svg.getAttribute("viewBox"));
  var cell = document.querySelector('.chip-cell[data-chip="5"]');
  if (cell) cell.dispatchEvent(new MouseEvent("click", {bubbles: true}));
  var more = document.getElementById("all-pes");
  if (more) more.click();
  document.body.setAttribute("data-rows",
    document.querySelectorAll("#pe-table tbody tr").length);
})();
</script></body>"""


def test_zoom_click_and_pe_table_in_chromium(tmp_path):
    data, page = _page(tmp_path, "report_drive", mesh_name="spinnaker2_board", stages=12)
    driven = tmp_path / "report_drive_zoomed.html"
    driven.write_text(page.read_text().replace("</body>", _DRIVE))
    r = chromium(driven, "--dump-dom", "--enable-logging=stderr", "--v=0")
    assert "Uncaught" not in r.stderr, r.stderr[-2000:]
    before = [float(v) for v in re.search(r'data-before="([^"]+)"', r.stdout).group(1).split()]
    after = [float(v) for v in re.search(r'data-after="([^"]+)"', r.stdout).group(1).split()]
    assert after[2] < before[2] * 0.6 and after[3] < before[3] * 0.6     # zoomed in
    assert after[0] > before[0] and after[1] > before[1]                # around the pointer
    assert "<h3>chip 5 (5,0)</h3>" in r.stdout                         # the click drew chip 5
    assert re.search(r'data-rows="(\d+)"', r.stdout).group(1) == "7296"  # every PE in the table
    screenshot(driven, tmp_path / "report_drive_zoomed.png", "1400,1000")



_ZOOM = """<script>
(function () {
  var svg = document.querySelector("svg.zoomable"), r = svg.getBoundingClientRect();
  document.body.setAttribute("data-labels-before", svg.querySelectorAll("g.pe text").length);
  for (var i = 0; i < 4; i++)
    svg.dispatchEvent(new WheelEvent("wheel", {deltaY: -100, clientX: r.left + 200,
      clientY: r.top + 150, ctrlKey: true, bubbles: true, cancelable: true}));
  document.body.setAttribute("data-labels-after", svg.querySelectorAll("g.pe text").length);
})();
</script></body>"""


def test_pe_names_appear_on_zoom_in_chromium(tmp_path):
    yaml = tmp_path / "grid1024.yaml"
    yaml.write_text(MESH_1024)
    _, page = _page(tmp_path, "report_grid1024", mesh_name=str(yaml), stages=8)
    driven = tmp_path / "report_grid1024_zoomed.html"
    driven.write_text(page.read_text().replace("</body>", _ZOOM))
    r = chromium(driven, "--dump-dom", "--enable-logging=stderr", "--v=0",
                 "--window-size=1400,1000")
    assert "Uncaught" not in r.stderr, r.stderr[-2000:]
    assert re.search(r'data-labels-before="(\d+)"', r.stdout).group(1) == "0"
    assert re.search(r'data-labels-after="(\d+)"', r.stdout).group(1) == "1024"
    assert '<text class="pe-label"' in r.stdout and ">pe0</text>" in r.stdout
    screenshot(driven, tmp_path / "report_grid1024_zoomed.png")
