"""PE kinds and meshes: schema errors, shipped files, grid arithmetic, routes, ``pemesh boards``."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import pytest

from generator.boards import catalog as boards
from generator.boards.catalog import (HOST_ID, Mesh, list_boards, load_mesh, load_pe_kind,
                              mesh_from_json, resolve_target, single_pe_mesh)
from generator.cli import main
from generator.errors import BoardError
from generator.paths import boards_dir

GOOD_PE = """\
pe_kind:
  name: tiny
  description: a test PE
  cpu: cortex-m3
  fpu: false
  flash_bytes: 128 KiB
  ram_bytes: 32768
  clock_hz: 48 MHz
  zephyr_board: null
  qemu: null
  port: host
  runtime_reserve: {flash_bytes: 8 KiB, ram_bytes: 4 KiB}
  links:
    - {id: 0, name: host, kind: host, uart: 0}
    - {id: 1, name: mesh0, kind: mesh, uart: 1}
  accelerator:
    name: mac
    ops: [conv2d, dense]
    dtypes: [int8]
    accumulator: int32
    mac_array: [4, 16]
    macs_per_cycle: 64
    setup_cycles: 10
"""

GOOD_MESH = """\
mesh:
  name: small
  description: a test mesh
  pe_kind: {pe}
  topology: {{chips_x: 2, chips_y: 3, pes_x: 3, pes_y: 2}}
  host_links:
    - pe 1 of chip (1,0)
    - [0, 5]
  links:
    on_chip: {{bytes_per_s: 1000, latency_ns: 10}}
    chip_to_chip: {{bytes_per_s: 100, latency_ns: 100}}
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _error(loader, path: Path) -> str:
    with pytest.raises(BoardError) as info:
        loader(path)
    assert info.value.hint, "every BoardError carries a hint"
    return str(info.value)


# ------------------------------------------------------------------ schema and loader errors

def test_good_files_load(tmp_path):
    pe = load_pe_kind(_write(tmp_path, "tiny.yaml", GOOD_PE))
    assert (pe.flash_bytes, pe.ram_bytes, pe.clock_hz) == (131072, 32768, 48_000_000)
    assert (pe.reserve_flash_bytes, pe.reserve_ram_bytes) == (8192, 4096)
    assert pe.accelerator.mac_array == (4, 16) and pe.accelerator.supports("dense", "int8")
    assert not pe.accelerator.supports("matmul", "int8")
    assert pe.host_link.uart == 0 and [lk.name for lk in pe.mesh_links] == ["mesh0"]
    mesh = load_mesh(_write(tmp_path, "small.yaml", GOOD_MESH.format(pe="tiny.yaml")))
    assert mesh.pe_kind == pe and mesh.num_pes == 36
    # "pe 1 of chip (1,0)" is local (1, 0) of chip x=1 → global (4, 0); [0, 5] is global
    assert sorted(mesh.coords(h) for h in mesh.host_links) == [(0, 5), (4, 0)]


def test_host_link_rule_every_chip(tmp_path):
    _write(tmp_path, "tiny.yaml", GOOD_PE)
    text = GOOD_MESH.format(pe="tiny.yaml").replace("- [0, 5]", "- pe 5 of every chip")
    mesh = load_mesh(_write(tmp_path, "every.yaml", text))
    # local PE 5 of a 3 x 2 chip is (2, 1); 6 chips, plus pe 1 of chip (1,0)
    assert len(mesh.host_links) == 7
    assert {mesh.coords(h) for h in mesh.host_links} == {
        (cx * 3 + 2, cy * 2 + 1) for cx in range(2) for cy in range(3)} | {(4, 0)}
    assert mesh.nearest_host_link(mesh.pe_id(0, 5)) == mesh.pe_id(2, 5)


@pytest.mark.parametrize("old,new,path,problem", [
    ("mac_array: [4, 16]", "mac_array: [4, 0]", "pe_kind.accelerator.mac_array[1]", "minimum"),
    ("mac_array: [4, 16]", "mac_array: [4]", "pe_kind.accelerator.mac_array", "too short"),
    ("cpu: cortex-m3", "cpu: pentium", "pe_kind.cpu", "'pentium' is not one of"),
    ("ram_bytes: 32768", "ram_bytes: lots", "pe_kind.ram_bytes", "byte count"),
    ("clock_hz: 48 MHz", "clock_hz: 48 MB", "pe_kind.clock_hz", "frequency"),
    ("  fpu: false\n", "", "pe_kind", "'fpu' is a required property"),
    ("  port: host\n", "  port: host\n  colour: red\n", "pe_kind", "'colour' was unexpected"),
    ("ops: [conv2d, dense]", "ops: [conv2d, softmax]", "pe_kind.accelerator.ops[1]", "softmax"),
    ("{id: 1, name: mesh0", "{id: 2, name: mesh0", "pe_kind.links[1].id", "in order"),
    ("name: mesh0", "name: host", "pe_kind.links[1].name", "used twice"),
    ("macs_per_cycle: 64", "macs_per_cycle: 65", "pe_kind.accelerator.macs_per_cycle", "4x16"),
    ("ram_bytes: 4 KiB", "ram_bytes: 64 KiB", "pe_kind.runtime_reserve.ram_bytes", "more than"),
    ("  fpu: false\n", "  fpu: false\n  code_in_ram: true\n", "pe_kind.flash_bytes",
     "code_in_ram"),
])
def test_pe_kind_errors_name_the_field(tmp_path, old, new, path, problem):
    assert old in GOOD_PE
    f = _write(tmp_path, "bad.yaml", GOOD_PE.replace(old, new))
    msg = _error(load_pe_kind, f)
    assert str(f) in msg and path + ":" in msg and problem in msg, msg


def test_error_gives_the_line(tmp_path):
    f = _write(tmp_path, "bad.yaml", GOOD_PE.replace("mac_array: [4, 16]", "mac_array: [4, 0]"))
    line = 1 + GOOD_PE.splitlines().index("    mac_array: [4, 16]")
    assert f"{f}:{line}:" in _error(load_pe_kind, f)


def test_several_errors_are_all_reported(tmp_path):
    f = _write(tmp_path, "bad.yaml",
               GOOD_PE.replace("cpu: cortex-m3", "cpu: 386").replace("fpu: false", "fpu: 1"))
    msg = _error(load_pe_kind, f)
    assert "pe_kind.cpu:" in msg and "pe_kind.fpu:" in msg


def test_malformed_yaml_has_line_and_column(tmp_path):
    f = _write(tmp_path, "bad.yaml", "pe_kind:\n  name: x\n  description: a: b\n")
    msg = _error(load_pe_kind, f)
    assert f"{f}:3:" in msg and "malformed YAML" in msg
    f2 = _write(tmp_path, "bad2.yaml", "pe_kind:\n  links: [1, 2\n")
    assert f"{f2}:" in _error(load_pe_kind, f2)


def test_duplicate_key_is_an_error(tmp_path):
    dup = GOOD_PE.replace("  fpu: false\n", "  fpu: false\n  fpu: true\n")
    f = _write(tmp_path, "dup.yaml", dup)
    assert "pe_kind.fpu: key appears twice" in _error(load_pe_kind, f)


@pytest.mark.parametrize("old,new,path,problem", [
    ("chips_x: 2", "chips_x: 0", "mesh.topology.chips_x", "minimum"),
    ("- [0, 5]", "- [0, 6]", "mesh.host_links[1]", "outside"),
    ("- [0, 5]", "- [0]", "mesh.host_links[1]", "coordinates [x, y], or a rule"),
    ("- [0, 5]", "- first one", "mesh.host_links[1]", "rule"),
    ("pe 1 of chip (1,0)", "pe 6 of chip (1,0)", "mesh.host_links[0]", "only 6 PEs"),
    ("pe 1 of chip (1,0)", "pe 1 of chip (2,0)", "mesh.host_links[0]", "outside"),
    ("latency_ns: 100", "latency_ns: -1", "mesh.links.chip_to_chip.latency_ns", "minimum"),
    ("pes_y: 2", "pes_y: 4000", "mesh.topology", "16-bit"),
    ("pe_kind: tiny.yaml", "pe_kind: no_such_pe", "mesh.pe_kind", "unknown PE kind"),
])
def test_mesh_errors_name_the_field(tmp_path, old, new, path, problem):
    _write(tmp_path, "tiny.yaml", GOOD_PE)
    text = GOOD_MESH.format(pe="tiny.yaml")
    assert old in text
    f = _write(tmp_path, "bad.yaml", text.replace(old, new))
    msg = _error(load_mesh, f)
    assert str(f) in msg and path + ":" in msg and problem in msg, msg


def test_inline_pe_kind_and_its_errors(tmp_path):
    inline = "\n".join("    " + ln for ln in GOOD_PE.splitlines()[1:])
    text = GOOD_MESH.format(pe="\n" + inline)
    mesh = load_mesh(_write(tmp_path, "inline.yaml", text))
    assert mesh.pe_kind.name == "tiny" and mesh.pe_kind.accelerator.macs_per_cycle == 64
    bad = _write(tmp_path, "bad.yaml", text.replace("macs_per_cycle: 64", "macs_per_cycle: x"))
    assert "mesh.pe_kind.accelerator.macs_per_cycle:" in _error(load_mesh, bad)


def test_schemas_are_valid_json_schemas():
    import jsonschema
    import yaml

    for f in sorted((boards_dir() / "schema").glob("*.schema.yaml")):
        jsonschema.Draft202012Validator.check_schema(yaml.safe_load(f.read_text()))


def test_unknown_names_and_paths():
    with pytest.raises(BoardError, match="unknown mesh 'nope'.*qemu4"):
        load_mesh("nope")
    with pytest.raises(BoardError, match="unknown PE kind"):
        load_pe_kind("nope")
    with pytest.raises(BoardError, match="cannot read"):
        load_mesh("/no/such/mesh.yaml")


# ------------------------------------------------------------------ shipped boards

def test_all_shipped_boards_load_and_match_their_file_names():
    listing = list_boards()
    assert {p.name for p in listing.pe_kinds} >= {"qemu_cortex_m3", "spinnaker2_pe"}
    assert {m.name for m in listing.meshes} >= {"qemu1", "qemu4", "qemu16", "qemu64",
                                                 "qemu7296", "spinnaker2_board"}
    for p in listing.pe_kinds:
        assert Path(p.source).stem == p.name
    for m in listing.meshes:
        assert Path(m.source).stem == m.name
        assert m.host_links and all(0 <= h < m.num_pes for h in m.host_links)


def test_shipped_figures():
    m3 = load_pe_kind("qemu_cortex_m3")
    assert (m3.cpu, m3.fpu, m3.flash_bytes, m3.ram_bytes, m3.clock_hz) == (
        "cortex-m3", False, 256 * 1024, 64 * 1024, 12_000_000)
    assert (m3.qemu, m3.zephyr_board, m3.port, m3.code_in_ram) == (
        "lm3s6965evb", "qemu_cortex_m3", "lm3s6965", False)
    assert [(lk.id, lk.kind, lk.uart) for lk in m3.links] == [
        (0, "host", 0), (1, "mesh", 1), (2, "mesh", 2)]
    assert m3.accelerator is None

    s2 = load_pe_kind("spinnaker2_pe")
    assert (s2.cpu, s2.fpu, s2.code_in_ram, s2.flash_bytes, s2.ram_bytes) == (
        "cortex-m4f", True, True, 0, 128 * 1024)
    assert 100_000_000 <= s2.clock_hz <= 300_000_000
    a = s2.accelerator
    assert (a.mac_array, a.dtypes, a.accumulator, a.macs_per_cycle) == ((4, 16), ("int8",),
                                                                         "int32", 64)
    assert a.estimate_cycles(64 * 10) == a.setup_cycles + 10
    # code and data share the 128 KiB: 100 KiB of code + 40 KiB of data do not fit
    assert s2.fit_problems(100 * 1024, 40 * 1024) and not s2.fit_problems(60 * 1024, 40 * 1024)
    assert m3.fit_problems(100 * 1024, 40 * 1024) == ()
    assert len(m3.fit_problems(300 * 1024, 70 * 1024)) == 2

    sizes = {n: load_mesh(n).num_pes for n in ("qemu1", "qemu4", "qemu16", "qemu64",
                                                "qemu7296", "spinnaker2_board")}
    assert sizes == {"qemu1": 1, "qemu4": 4, "qemu16": 16, "qemu64": 64, "qemu7296": 7296,
                     "spinnaker2_board": 7296}
    board = load_mesh("spinnaker2_board")
    assert board.num_chips == 48 and board.pes_per_chip == 152
    assert board.pe_kind == s2 and load_mesh("qemu7296").pe_kind == m3


def test_large_mesh_loads_fast():
    t0 = time.perf_counter()
    m = load_mesh("spinnaker2_board")
    last = m.num_pes - 1
    ids = [m.pe_id(*m.coords(i)) for i in range(m.num_pes)]
    hops = m.hops(0, last)
    print(f"\nspinnaker2_board: load + {m.num_pes} coords round trips in "
          f"{time.perf_counter() - t0:.3f} s; hops(0, {last}) = {hops}")
    assert ids == list(range(m.num_pes))
    assert hops == m.width - 1 + m.height - 1


def test_json_round_trip():
    for name in ("qemu64", "spinnaker2_board"):
        m = load_mesh(name)
        back = mesh_from_json(json.loads(json.dumps(m.to_json())))
        assert back == m


def test_single_pe_mesh_and_resolve_target():
    pe = load_pe_kind("qemu_cortex_m3")
    m = single_pe_mesh(pe)
    assert (m.num_pes, m.host_links, m.coords(0), m.name) == (1, (0,), (0, 0), pe.name)
    assert resolve_target() == m
    assert resolve_target(board="spinnaker2_pe").pe_kind.name == "spinnaker2_pe"
    assert resolve_target(mesh="qemu4").num_pes == 4


# ------------------------------------------------------------------ grid arithmetic, routes

def _meshes() -> list[Mesh]:
    base = load_mesh("qemu64")
    return [replace(base, chips_x=cx, chips_y=cy, pes_x=px, pes_y=py, host_links=(0,))
            for cx, cy, px, py in [(1, 1, 1, 1), (1, 1, 4, 4), (2, 2, 4, 4), (3, 2, 2, 3),
                                   (2, 3, 3, 1), (1, 4, 5, 2)]]


@pytest.mark.parametrize("mesh", _meshes(), ids=lambda m: f"{m.chips_x}x{m.chips_y}/"
                                                          f"{m.pes_x}x{m.pes_y}")
def test_coords_ids_chips_hops_routes_brute_force(mesh):
    seen = {}
    for pe in range(mesh.num_pes):
        x, y = mesh.coords(pe)
        assert mesh.pe_id(x, y) == pe
        assert (x, y) not in seen
        seen[(x, y)] = pe
        assert mesh.chip_coords(mesh.chip_of(pe)) == (x // mesh.pes_x, y // mesh.pes_y)
    assert len(seen) == mesh.width * mesh.height == mesh.num_pes
    # PE ids count chip by chip
    for pe in range(mesh.num_pes):
        assert mesh.chip_of(pe) == pe // mesh.pes_per_chip

    # hops: breadth-first search on the grid graph
    def neighbours(p):
        x, y = mesh.coords(p)
        for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            if 0 <= x + dx < mesh.width and 0 <= y + dy < mesh.height:
                yield mesh.pe_id(x + dx, y + dy)

    for a in range(mesh.num_pes):
        dist = {a: 0}
        frontier = [a]
        while frontier:
            nxt = []
            for p in frontier:
                for q in neighbours(p):
                    if q not in dist:
                        dist[q] = dist[p] + 1
                        nxt.append(q)
            frontier = nxt
        for b in range(mesh.num_pes):
            assert mesh.hops(a, b) == dist[b]
            route = mesh.route(a, b)
            assert len(route) == dist[b] and (not route or route[-1] == b)
            steps = (a,) + route
            assert all(q in set(neighbours(p)) for p, q in zip(steps, steps[1:]))
            # XY: all x moves come before any y move
            ys = [mesh.coords(p)[1] for p in steps]
            first_y_move = next((i for i in range(1, len(ys)) if ys[i] != ys[i - 1]), len(ys))
            assert all(mesh.coords(p)[0] == mesh.coords(b)[0] for p in steps[first_y_move:])
            assert mesh.next_hop(a, b) == (route[0] if route else a)
            crossings = sum(mesh.chip_of(p) != mesh.chip_of(q) for p, q in zip(steps, steps[1:]))
            assert mesh.chip_hops(a, b) == crossings


def test_out_of_range_ids_raise():
    m = load_mesh("qemu4")
    for bad in (-1, 4):
        with pytest.raises(ValueError):
            m.coords(bad)
    with pytest.raises(ValueError):
        m.pe_id(2, 0)


def test_transfer_time_model():
    m = load_mesh("qemu64")
    assert m.transfer_ns(0, 0, 100) == 0
    a, b = m.pe_id(0, 0), m.pe_id(5, 0)            # 5 hops, 1 of them chip-to-chip
    assert m.chip_hops(a, b) == 1
    expect = 4 * m.on_chip.latency_ns + m.chip_to_chip.latency_ns + \
        -(-1000 * 10 ** 9 // m.chip_to_chip.bytes_per_s)
    assert m.transfer_ns(a, b, 1000) == expect
    assert m.nearest_host_link(b) == 0 and HOST_ID == 0xFFFF


# ------------------------------------------------------------------ pemesh boards

def test_pemesh_boards_text(capsys):
    assert main(["boards"]) == 0
    out = capsys.readouterr().out
    assert "PE kinds" in out and "Meshes" in out
    row = next(ln for ln in out.splitlines() if ln.split()[:1] == ["spinnaker2_board"])
    assert row.split()[1:6] == ["spinnaker2_pe", "8x6", "8x19", "64x114", "7296"]
    row = next(ln for ln in out.splitlines() if ln.split()[:1] == ["qemu_cortex_m3"])
    assert "256 KiB" in row and "64 KiB" in row and "12 MHz" in row and "lm3s6965evb" in row
    assert main(["boards"]) == 0
    assert capsys.readouterr().out == out            # deterministic


def test_pemesh_boards_json(capsys):
    assert main(["boards", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    meshes = {m["name"]: m for m in data["meshes"]}
    assert meshes["qemu16"]["num_pes"] == 16 and meshes["qemu16"]["grid"] == [4, 4]
    kinds = {p["name"]: p for p in data["pe_kinds"]}
    assert kinds["spinnaker2_pe"]["accelerator"]["mac_array"] == [4, 16]
    assert kinds["qemu_cortex_m3"]["ram_bytes"] == 65536


def test_pemesh_boards_reports_a_bad_file(tmp_path, monkeypatch, capsys):
    """A broken file under boards/ makes ``pemesh boards`` fail with the BoardError exit code."""
    root = tmp_path / "boards"
    for sub in ("pe", "mesh", "schema"):
        (root / sub).mkdir(parents=True)
        for f in (boards_dir() / sub).glob("*.yaml"):
            (root / sub / f.name).write_text(f.read_text())
    (root / "mesh" / "broken.yaml").write_text("mesh:\n  name: broken\n")
    monkeypatch.setattr(boards, "boards_dir", lambda: root)
    assert main(["boards"]) == BoardError.exit_code
    err = capsys.readouterr().err
    assert "broken.yaml" in err and "'description' is a required property" in err
