"""The CSS and the small script inlined into the HTML report (no network, no libraries).

The script only adds interaction: zoom (wheel, buttons) and pan (drag) on the mesh, a chip's PEs
drawn on click in the chip view (from the JSON the page carries in ``#pemesh-data``), and the
full PE table of a big mesh on demand. Without it the page still shows everything else, and the
SVG ``<title>``s still give the hover details.
"""

CSS = """
:root { --ink:#1d2330; --muted:#5b6475; --line:#d6dae2; --bg:#f6f7f9; --neck:#d62728; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
  background: var(--bg); margin: 0; padding: 16px 24px 40px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 0 0 8px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px;
  margin: 14px 0; }
.facts { display: flex; flex-wrap: wrap; gap: 4px 22px; margin: 6px 0 0; color: var(--muted); }
.facts b { color: var(--ink); font-weight: 600; }
.note { color: var(--muted); font-size: 12.5px; margin: 4px 0 8px; }
ul.legend { list-style: none; padding: 0; margin: 0 0 8px; display: flex; flex-wrap: wrap;
  gap: 4px 16px; }
ul.legend li { display: flex; align-items: center; gap: 6px; white-space: nowrap; }
.sw { display: inline-block; width: 14px; height: 14px; border-radius: 3px;
  border: 1px solid rgba(0,0,0,.25); }
.sw.unused { background: #fff; border: 1px dashed #aab; }
.sw.hostb { border-radius: 50%; background: #fff; border: 2px solid #333; width: 11px;
  height: 11px; }
.sw.neck { background: #fff; border: 3px solid var(--neck); }
.legend .neck-flag { color: var(--neck); font-weight: 600; }
.keys { display: flex; flex-wrap: wrap; align-items: center; gap: 4px 18px; color: var(--muted);
  font-size: 12.5px; margin-bottom: 6px; }
.zoom-box { position: relative; overflow: hidden; border: 1px solid var(--line);
  border-radius: 6px; background: #fbfbfc; }
.zoom-box svg.zoomable { display: block; width: 100%; height: auto; cursor: grab;
  touch-action: none; margin: 0 auto; }
svg.width-key { vertical-align: middle; }
.zoom-tools { display: flex; gap: 4px; justify-content: flex-end; align-items: center;
  padding: 4px 6px; border-bottom: 1px solid var(--line); background: #fff; }
.zoom-tools span { color: var(--muted); font-size: 12px; margin-right: auto; }
.zoom-tools button, button.more { font: inherit; font-size: 12px; padding: 2px 9px;
  border: 1px solid var(--line); background: #fff; border-radius: 4px; cursor: pointer; }
svg text { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
.chip-frame { fill: #eef1f6; stroke: #9aa3b5; stroke-width: 1.2; }
.chip-label { font-size: 12px; fill: var(--muted); }
.pe rect { stroke: rgba(0,0,0,.35); stroke-width: 1; }
.pe.bottleneck rect, .chip-cell.bottleneck > rect:first-of-type {
  stroke: var(--neck); stroke-width: 3.5; }
.pe-label { text-anchor: middle; font-weight: 600; pointer-events: none; }
.pe-sub { text-anchor: middle; opacity: .85; pointer-events: none; }
.pe-unused { fill: #fff; stroke: #c4c9d4; stroke-dasharray: 3 2; }
.pe:hover rect, .chip-cell:hover > rect:first-of-type { filter: brightness(1.12); }
.host-badge { fill: #fff; stroke: #333; stroke-width: 1.6; }
.links line { stroke: #222b3a; stroke-opacity: .78; stroke-linecap: round; }
.links polygon { fill: #222b3a; fill-opacity: .85; }
.links g:hover line { stroke: #0b63ce; stroke-opacity: 1; }
.links g:hover polygon { fill: #0b63ce; }
.host rect { fill: #333; } .host text { fill: #fff; text-anchor: middle; font-weight: 600;
  font-size: 14px; }
.host-link path { fill: none; stroke: #333; stroke-width: 3; stroke-dasharray: 7 4; }
.chip-cell { cursor: pointer; }
.chip-cell > rect:first-of-type { stroke: rgba(0,0,0,.35); stroke-width: 1; }
.chip-cell.selected > rect:first-of-type { stroke: #0b63ce; stroke-width: 4; }
.chip-cell.bottleneck.selected > rect:first-of-type { stroke: var(--neck); stroke-width: 5; }
.chip-title { font-weight: 700; font-size: 13px; }
.chip-count, .chip-dom, .chip-cyc { font-size: 12px; }
.mix-frame { fill: #fff; stroke: rgba(0,0,0,.45); }
.width-key line { stroke: #222b3a; stroke-opacity: .78; }
.width-key text { font-size: 11px; fill: var(--muted); }
.chart .col { font-size: 12px; font-weight: 600; fill: var(--muted); }
.chart .row-label { font-size: 12px; fill: var(--ink); }
.chart .num { font-size: 11px; fill: var(--muted); }
.bar .track { fill: #f0f1f4; stroke: #c9ced8; }
.bar .planned { opacity: .38; }
.bar .built { opacity: 1; }
.bar .limit { stroke: #555; stroke-width: 1.5; }
.bar.over .track { stroke: var(--neck); }
.bar.over .num { fill: var(--neck); font-weight: 600; }
.cyc-row .neck { stroke: var(--neck); stroke-width: 2.5; }
.cyc-row.bottleneck .row-label { fill: var(--neck); font-weight: 700; }
.neck-mark { font-size: 12px; font-weight: 700; }
.whisker { stroke: #222; stroke-width: 1.3; } .mean { stroke: #222; stroke-width: 2; }
.chip-panel { display: flex; gap: 22px; align-items: flex-start; margin-top: 12px; }
#chip-detail svg { display: block; width: 100%; height: auto; border: 1px solid var(--line);
  border-radius: 6px; background: #fbfbfc; }
#chip-detail .empty { color: var(--muted); padding: 20px 6px; }
#chip-info h3 { margin: 0 0 6px; font-size: 15px; }
#chip-info p { margin: 6px 0; }
ul.legend.col { flex-direction: column; }
table { border-collapse: collapse; font-size: 12.5px; margin: 6px 0 12px; }
th, td { border-bottom: 1px solid var(--line); padding: 3px 9px; text-align: right;
  white-space: nowrap; }
th { background: #f0f2f6; position: sticky; top: 0; }
td.l, th.l { text-align: left; }
tr.bottleneck td { color: var(--neck); font-weight: 600; }
.tablewrap { max-height: 560px; overflow: auto; border: 1px solid var(--line); border-radius: 6px;
  display: inline-block; max-width: 100%; }
"""

JS = r"""
(function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";
  function ink(c) { var r = parseInt(c.substr(1, 2), 16), g = parseInt(c.substr(3, 2), 16),
    b = parseInt(c.substr(5, 2), 16); return (0.299 * r + 0.587 * g + 0.114 * b) / 255 > 0.55
    ? "#111" : "#fff"; }
  function label(svg) {      // details on zoom: name the PEs once their boxes are big enough
    if (svg.dataset.labelled || !svg.classList.contains("pe-view")) return;
    var pes = svg.querySelectorAll("g.pe");
    if (!pes.length || pes[0].querySelector("text")) { svg.dataset.labelled = "1"; return; }
    var r = svg.getBoundingClientRect(), v = vb(svg);
    var b = Number(pes[0].querySelector("rect").getAttribute("width"));
    if (b * r.width / v[2] < 30) return;
    svg.dataset.labelled = "1";
    pes.forEach(function (g) { var q = g.querySelector("rect"), t = g.querySelector("title");
      var x = Number(q.getAttribute("x")) + b / 2, y = Number(q.getAttribute("y")) + b / 2;
      var e = document.createElementNS(NS, "text");
      e.setAttribute("class", "pe-label"); e.setAttribute("x", x); e.setAttribute("y", y + b * 0.1);
      e.setAttribute("font-size", (b * 0.27).toFixed(1));
      e.setAttribute("fill", ink(q.getAttribute("fill")));
      e.textContent = t ? t.textContent.split(" ")[0] : "PE " + g.dataset.pe;
      g.insertBefore(e, t); }); }
  function vb(svg) { return svg.getAttribute("viewBox").split(/\s+/).map(Number); }
  function setVb(svg, v) { svg.setAttribute("viewBox", v.map(function (n) {
    return n.toFixed(1); }).join(" ")); }
  function zoomable(box) {
    var svg = box.querySelector("svg.zoomable"); if (!svg) return;
    var home = vb(svg), drag = null;
    function zoom(f, px, py) {
      var v = vb(svg), w = Math.min(home[2], Math.max(home[2] / 40, v[2] * f));
      var h = w * home[3] / home[2]; f = w / v[2];
      var x = px - (px - v[0]) * f, y = py - (py - v[1]) * f;
      x = Math.min(Math.max(x, home[0]), home[0] + home[2] - w);
      y = Math.min(Math.max(y, home[1]), home[1] + home[3] - h);
      setVb(svg, [x, y, w, h]); label(svg);
    }
    function at(e) { var r = svg.getBoundingClientRect(), v = vb(svg);
      return [v[0] + (e.clientX - r.left) / r.width * v[2],
              v[1] + (e.clientY - r.top) / r.height * v[3]]; }
    svg.addEventListener("wheel", function (e) {    // ctrl/cmd + wheel; a plain wheel scrolls
      if (!e.ctrlKey && !e.metaKey) return;
      e.preventDefault(); var p = at(e);
      zoom(e.deltaY < 0 ? 0.8 : 1.25, p[0], p[1]); }, {passive: false});
    svg.addEventListener("pointerdown", function (e) {
      drag = {x: e.clientX, y: e.clientY, v: vb(svg), moved: false}; });
    window.addEventListener("pointermove", function (e) { if (!drag) return;
      var r = svg.getBoundingClientRect(), v = drag.v;
      var dx = (e.clientX - drag.x) / r.width * v[2], dy = (e.clientY - drag.y) / r.height * v[3];
      if (Math.abs(e.clientX - drag.x) + Math.abs(e.clientY - drag.y) > 3) drag.moved = true;
      var x = Math.min(Math.max(v[0] - dx, home[0]), home[0] + home[2] - v[2]);
      var y = Math.min(Math.max(v[1] - dy, home[1]), home[1] + home[3] - v[3]);
      setVb(svg, [x, y, v[2], v[3]]); });
    window.addEventListener("pointerup", function () {
      if (drag && drag.moved) svg.dataset.dragged = "1"; drag = null; });
    svg.addEventListener("dblclick", function () { setVb(svg, home); });
    box.querySelectorAll("[data-zoom]").forEach(function (b) {
      b.addEventListener("click", function () { var v = vb(svg), k = b.dataset.zoom;
        if (k === "reset") { setVb(svg, home); return; }
        zoom(k === "in" ? 0.66 : 1.5, v[0] + v[2] / 2, v[1] + v[3] / 2); }); });
  }
  document.querySelectorAll(".zoom-box").forEach(zoomable);

  var node = document.getElementById("pemesh-data");
  if (!node) return;
  var D = JSON.parse(node.textContent), i, prev = 0;
  if (!D.id) { D.id = D.stage.map(function (s, gi) {     // the mesh's numbering
    var x = gi % D.W, y = Math.floor(gi / D.W);
    var chip = Math.floor(y / D.py) * D.chips_x + Math.floor(x / D.px);
    return chip * D.px * D.py + (y % D.py) * D.px + x % D.px; }); }
  D.cyc = D.cyc.map(function (c, gi) { return c < 0 ? -1 : c + D.cycBase[D.stage[gi]]; });
  for (i = 0; i < D.links.length; i += 3) {             // (da, b - a, bytes) -> (a, b, bytes)
    D.links[i] += prev; prev = D.links[i]; D.links[i + 1] += D.links[i]; }
  var byId = {};
  D.id.forEach(function (id, gi) { if (id >= 0) byId[id] = gi; });
  function el(tag, a, text) { var e = document.createElementNS(NS, tag);
    for (var k in a) e.setAttribute(k, a[k]); if (text !== undefined) e.textContent = text;
    return e; }
  function fmt(n) { return n < 0 ? "-" : n.toLocaleString("en-US"); }
  function tip(gi) { var s = D.stage[gi], m = D.profiles[D.mem[gi]] || [];
    return "pe" + D.id[gi] + " at (" + (gi % D.W) + ", " + Math.floor(gi / D.W) + ")\nstage " +
      D.stages[s] + " (#" + s + "), replica " + D.rep[gi] + "\nRAM planned " + fmt(m[0]) +
      " B, built " + fmt(m[1]) + " B, limit " + fmt(m[2]) + " B\nflash planned " + fmt(m[3]) +
      " B, built " + fmt(m[4]) + " B, limit " + fmt(m[5]) + " B\ncycles per inference " +
      fmt(D.cyc[gi]) + (D.host.indexOf(gi) >= 0 ? "\nexchanges tensors with the host" : ""); }
  function drawChip(chip) {
    var out = document.getElementById("chip-detail"); if (!out) return;
    var cx = chip % D.chips_x, cy = Math.floor(chip / D.chips_x), P = 60, B = 46, M = 6;
    var w = D.px * P + 2 * M, h = D.py * P + 2 * M + 22;
    var svg = el("svg", {xmlns: NS, viewBox: "0 0 " + w + " " + h, "class": "chip-detail",
      width: w, height: h, style: "max-width:" + w + "px"});
    var count = {}, slow = -1, hosts = 0, onChip = 0, into = 0, outOf = 0, used = 0;
    svg.appendChild(el("text", {x: M, y: 15, "class": "chip-label"},
      "chip " + chip + " (" + cx + "," + cy + "): PE by PE"));
    function centre(gi) { var x = gi % D.W - cx * D.px, y = Math.floor(gi / D.W) - cy * D.py;
      return [M + x * P + P / 2, 22 + M + y * P + P / 2]; }
    function inside(gi) { var x = gi % D.W, y = Math.floor(gi / D.W);
      return Math.floor(x / D.px) === cx && Math.floor(y / D.py) === cy; }
    for (var ly = 0; ly < D.py; ly++) for (var lx = 0; lx < D.px; lx++) {
      var gx = cx * D.px + lx, gy = cy * D.py + ly; if (gx >= D.W || gy >= D.H) continue;
      var gi = gy * D.W + gx, s = D.stage[gi], c = centre(gi);
      var g = el("g", {"class": s < 0 ? "" : (D.id[gi] === D.neck ? "pe bottleneck" : "pe")});
      if (s < 0) { g.appendChild(el("rect", {x: c[0] - B / 2, y: c[1] - B / 2, width: B,
        height: B, rx: 3, "class": "pe-unused"})); svg.appendChild(g); continue; }
      var fill = D.colors[s % D.colors.length];
      count[s] = (count[s] || 0) + 1; used++;
      if (D.cyc[gi] >= 0 && (slow < 0 || D.cyc[gi] > D.cyc[slow])) slow = gi;
      if (D.host.indexOf(gi) >= 0) hosts++;
      g.appendChild(el("rect", {x: c[0] - B / 2, y: c[1] - B / 2, width: B, height: B, rx: 4,
        fill: fill}));
      g.appendChild(el("text", {x: c[0], y: c[1] - 1, "class": "pe-label", "font-size": 9.5,
        fill: ink(fill)}, "pe" + D.id[gi]));
      g.appendChild(el("text", {x: c[0], y: c[1] + 9, "class": "pe-sub", "font-size": 8.5,
        fill: ink(fill)}, "s" + s + " r" + D.rep[gi]));
      g.appendChild(el("title", {}, tip(gi)));
      svg.appendChild(g);
    }
    var links = el("g", {"class": "links"});
    for (i = 0; i < D.links.length; i += 3) {
      var a = byId[D.links[i]], b = byId[D.links[i + 1]], n = D.links[i + 2];
      if (a === undefined || b === undefined || !(inside(a) || inside(b))) continue;
      if (inside(a) && inside(b)) onChip += n; else if (inside(a)) outOf += n; else into += n;
      var p = centre(a), q = centre(b), dx = q[0] - p[0], dy = q[1] - p[1];
      var d = Math.hypot(dx, dy) || 1, ux = dx / d, uy = dy / d, o = 4, s0 = B / 2 + 1;
      var wd = 1.2 + 3.5 * n / D.maxLink, hd = Math.min(7, Math.max(4, wd * 1.3));
      var ex = q[0] - ux * s0 - uy * o, ey = q[1] - uy * s0 + ux * o;
      var bx = ex - ux * hd, by = ey - uy * hd;
      var lg = el("g", {"class": "link"});
      lg.appendChild(el("line", {x1: p[0] + ux * s0 - uy * o, y1: p[1] + uy * s0 + ux * o,
        x2: bx, y2: by, "stroke-width": wd.toFixed(2)}));
      lg.appendChild(el("polygon", {points: ex + "," + ey + " " + (bx - uy * hd * .6) + "," +
        (by + ux * hd * .6) + " " + (bx + uy * hd * .6) + "," + (by - ux * hd * .6)}));
      lg.appendChild(el("title", {}, "link PE " + D.links[i] + " \u2192 PE " +
        D.links[i + 1] + ": " + fmt(n) + " bytes"));
      links.appendChild(lg);
    }
    svg.appendChild(links);
    out.innerHTML = ""; out.appendChild(svg);
    var info = document.getElementById("chip-info");
    if (info) {
      var rows = Object.keys(count).map(Number).sort(function (a, b) {
        return count[b] - count[a] || a - b; }).map(function (s) {
        return '<li><span class="sw" style="background:' + D.colors[s % D.colors.length] +
          '"></span>s' + s + " " + D.stages[s] + ": " + count[s] + " PE" +
          (count[s] === 1 ? "" : "s") + "</li>"; });
      info.innerHTML = "<h3>chip " + chip + " (" + cx + "," + cy + ")</h3><p>" + used + " of " +
        D.px * D.py + " PEs used; " + hosts + " exchange tensors with the host</p>" +
        '<ul class="legend col">' + rows.join("") + "</ul><p>" +
        (slow >= 0 ? "slowest PE: pe" + D.id[slow] + ", " + fmt(D.cyc[slow]) +
         " cycles per inference<br>" : "") + "bytes on on-chip links: " + fmt(onChip) +
        "<br>bytes leaving the chip: " + fmt(outOf) + "<br>bytes entering the chip: " +
        fmt(into) + '</p><p class="note">hover a PE for its memory and cycles; click another ' +
        "chip above to draw it</p>";
    }
    document.querySelectorAll(".chip-cell.selected").forEach(function (c) {
      c.classList.remove("selected"); });
    var cell = document.querySelector('.chip-cell[data-chip="' + chip + '"]');
    if (cell) cell.classList.add("selected");
  }
  document.querySelectorAll(".chip-cell").forEach(function (cell) {
    var svg = cell.ownerSVGElement;
    cell.addEventListener("click", function () {
      if (svg.dataset.dragged) { delete svg.dataset.dragged; return; }
      drawChip(Number(cell.dataset.chip)); });
    cell.addEventListener("keydown", function (e) {
      if (e.key === "Enter") drawChip(Number(cell.dataset.chip)); });
  });
  function fromHash() { var m = /chip=(\d+)/.exec(location.hash);
    var c = m ? Number(m[1]) : D.firstChip;
    if (c >= 0 && c < D.chips_x * Math.ceil(D.H / D.py)) drawChip(c); }
  window.addEventListener("hashchange", fromHash);
  fromHash();                  // report.html#chip=12 opens on chip 12
  var more = document.getElementById("all-pes");
  if (more) more.addEventListener("click", function () {
    var body = document.querySelector("#pe-table tbody"), rows = [];
    var order = Object.keys(byId).map(Number).sort(function (a, b) { return a - b; });
    order.forEach(function (id) { var gi = byId[id], s = D.stage[gi]; if (s < 0) return;
      var m = D.profiles[D.mem[gi]];
      rows.push("<tr><td class=l>pe" + id + "</td><td>(" + (gi % D.W) + ", " +
        Math.floor(gi / D.W) + ")</td><td class=l>" + D.stages[s] + "</td><td>" + D.rep[gi] +
        "</td><td>" + fmt(m[0]) + "</td><td>" + fmt(m[1]) + "</td><td>" + fmt(m[2]) +
        "</td><td>" + fmt(m[3]) + "</td><td>" + fmt(m[4]) + "</td><td>" + fmt(m[5]) +
        "</td><td>" + fmt(D.cyc[gi]) + "</td></tr>"); });
    body.innerHTML = rows.join(""); more.remove();
  });
})();
"""
