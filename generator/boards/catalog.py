"""PE kinds and meshes: the YAML files under ``boards/`` and their loader.

A **PE kind** (``boards/pe/<name>.yaml``) says what one processing element is: CPU, memories, clock,
how it is built (Zephyr board, bare-metal port) and emulated (QEMU machine), its link ports and an
optional ML accelerator. A **mesh** (``boards/mesh/<name>.yaml``) is a 2D grid of chips, each a 2D
grid of PEs of one kind, with the PEs that talk to the host and per-hop link figures.

Every file is validated against a JSON Schema (``boards/schema/*.schema.yaml``); a problem raises
:class:`~generator.errors.BoardError` naming the file, the line, the field path (e.g.
``pe_kind.accelerator.mac_array[1]``) and what is wrong (the YAML reading is in
:mod:`generator.boards.schema`; ``pemesh boards`` is in :mod:`generator.commands.boards`).

PE ids count chip by chip (chip index ``cy * chips_x + cx``), then row by row inside a chip, so a
PE id, its chip and its global grid coordinates convert into each other in O(1). Routing is XY
(dimension order: first along x, then along y) on the global grid.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from generator.boards.schema import YamlDoc, quantity, read_yaml, validate
from generator.errors import BoardError
from generator.paths import boards_dir

log = logging.getLogger(__name__)

#: PE id of the host on the wire (docs/CONTRACTS.md); PE ids are 0 .. HOST_ID - 1
HOST_ID = 0xFFFF
DEFAULT_PE_KIND = "qemu_cortex_m3"

_RULE = re.compile(r"^\s*pe\s+([0-9]+)\s+of\s+"
                   r"(?:chip\s*\(\s*([0-9]+)\s*,\s*([0-9]+)\s*\)|every\s+chip)\s*$")


# ---- dataclasses -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Link:
    """One link port of a PE: ``id`` is the runtime's link number (0 = host link)."""

    id: int
    name: str
    kind: str                   # "host" | "mesh"
    uart: int | None = None     # the UART behind it, or None (a NoC port)


@dataclass(frozen=True)
class Accelerator:
    """An ML accelerator of a PE kind, driven through the ``pemesh_accel_*`` C wrappers."""

    name: str
    ops: tuple[str, ...]                # conv2d, depthwise_conv2d, dense, matmul
    dtypes: tuple[str, ...]             # operand dtypes, e.g. ("int8",)
    accumulator: str                    # "int32"
    mac_array: tuple[int, int]          # rows x columns, e.g. (4, 16)
    macs_per_cycle: int
    setup_cycles: int                   # fixed cost of one call
    align_bytes: int = 1
    align_in_channels: int = 1
    align_out_channels: int = 1
    activation_layout: str = "NHWC"
    weight_layout: str = "OHWI"
    fused: tuple[str, ...] = ()         # epilogues done in the same call: bias, requantize, ...
    description: str = ""

    def supports(self, op: str, dtype: str) -> bool:
        """Whether the accelerator runs ``op`` on operands of ``dtype``."""
        return op in self.ops and dtype in self.dtypes

    def estimate_cycles(self, macs: int) -> int:
        """Cycles for one call doing ``macs`` multiply-accumulates (setup + full-rate MACs)."""
        return self.setup_cycles + -(-int(macs) // self.macs_per_cycle)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name, "ops": list(self.ops), "dtypes": list(self.dtypes),
            "accumulator": self.accumulator, "mac_array": list(self.mac_array),
            "macs_per_cycle": self.macs_per_cycle, "setup_cycles": self.setup_cycles,
            "alignment": {"bytes": self.align_bytes, "input_channels": self.align_in_channels,
                          "output_channels": self.align_out_channels},
            "layout": {"activations": self.activation_layout, "weights": self.weight_layout},
            "fused": list(self.fused)}
        if self.description:
            d["description"] = self.description
        return d


@dataclass(frozen=True)
class PeKind:
    """One kind of PE. With ``code_in_ram`` there is no flash: the whole image counts as RAM."""

    name: str
    description: str
    cpu: str
    fpu: bool
    code_in_ram: bool
    flash_bytes: int
    ram_bytes: int
    clock_hz: int
    zephyr_board: str | None
    qemu: str | None
    port: str
    reserve_flash_bytes: int            # what the PE runtime itself needs (a default)
    reserve_ram_bytes: int
    links: tuple[Link, ...]
    accelerator: Accelerator | None = None
    source: str = field(default="", compare=False)

    @property
    def host_link(self) -> Link | None:
        return next((lk for lk in self.links if lk.kind == "host"), None)

    @property
    def mesh_links(self) -> tuple[Link, ...]:
        return tuple(lk for lk in self.links if lk.kind == "mesh")

    @property
    def flash_budget(self) -> int:
        """Flash left for a model after the runtime reserve (0 on a ``code_in_ram`` PE)."""
        return max(0, self.flash_bytes - self.reserve_flash_bytes)

    @property
    def ram_budget(self) -> int:
        """RAM left for a model after the runtime reserve (code too on a ``code_in_ram`` PE)."""
        return max(0, self.ram_bytes - self.reserve_ram_bytes)

    def fit_problems(self, flash_used: int, ram_used: int) -> tuple[str, ...]:
        """Why an image using ``flash_used`` / ``ram_used`` bytes does not fit (empty if it fits).

        ``flash_used`` is what a split-memory PE keeps in flash (code, constants, initial data);
        ``ram_used`` what it keeps in RAM. On a ``code_in_ram`` PE both are charged to RAM.
        """
        if self.code_in_ram:
            total = flash_used + ram_used
            if total > self.ram_bytes:
                return (f"code+data {total} B > {self.ram_bytes} B of SRAM on {self.name} "
                        f"(code {flash_used} B and data {ram_used} B share the SRAM)",)
            return ()
        problems = []
        if flash_used > self.flash_bytes:
            problems.append(f"flash {flash_used} B > {self.flash_bytes} B on {self.name}")
        if ram_used > self.ram_bytes:
            problems.append(f"RAM {ram_used} B > {self.ram_bytes} B on {self.name}")
        return tuple(problems)

    def to_json(self) -> dict[str, Any]:
        """The PE kind as the mapping under ``pe_kind:`` of its YAML (valid against the schema)."""
        d: dict[str, Any] = {
            "name": self.name, "description": self.description, "cpu": self.cpu,
            "fpu": self.fpu, "code_in_ram": self.code_in_ram, "flash_bytes": self.flash_bytes,
            "ram_bytes": self.ram_bytes, "clock_hz": self.clock_hz,
            "zephyr_board": self.zephyr_board, "qemu": self.qemu, "port": self.port,
            "runtime_reserve": {"flash_bytes": self.reserve_flash_bytes,
                                "ram_bytes": self.reserve_ram_bytes},
            "links": [{"id": lk.id, "name": lk.name, "kind": lk.kind, "uart": lk.uart}
                      for lk in self.links]}
        if self.accelerator is not None:
            d["accelerator"] = self.accelerator.to_json()
        return d


@dataclass(frozen=True)
class LinkFigures:
    """Per-hop figures of one class of link (a model for estimates and the fabric's delays)."""

    bytes_per_s: int
    latency_ns: int


@dataclass(frozen=True)
class Mesh:
    """A 2D grid of ``chips_x`` × ``chips_y`` chips, each a grid of ``pes_x`` × ``pes_y`` PEs.

    Every helper is O(1) except :meth:`route` (O(hops)).
    """

    name: str
    description: str
    pe_kind: PeKind
    chips_x: int
    chips_y: int
    pes_x: int
    pes_y: int
    host_links: tuple[int, ...]         # PE ids with a host link, ascending
    on_chip: LinkFigures
    chip_to_chip: LinkFigures
    source: str = field(default="", compare=False)

    @property
    def width(self) -> int:
        """Columns of the global PE grid."""
        return self.chips_x * self.pes_x

    @property
    def height(self) -> int:
        """Rows of the global PE grid."""
        return self.chips_y * self.pes_y

    @property
    def pes_per_chip(self) -> int:
        return self.pes_x * self.pes_y

    @property
    def num_chips(self) -> int:
        return self.chips_x * self.chips_y

    @property
    def num_pes(self) -> int:
        return self.num_chips * self.pes_per_chip

    def _check(self, pe_id: int) -> None:
        if not 0 <= pe_id < self.num_pes:
            raise ValueError(f"PE id {pe_id} is outside mesh {self.name} (0..{self.num_pes - 1})")

    def coords(self, pe_id: int) -> tuple[int, int]:
        """Global grid coordinates ``(x, y)`` of a PE."""
        self._check(pe_id)
        chip, local = divmod(pe_id, self.pes_per_chip)
        cy, cx = divmod(chip, self.chips_x)
        ly, lx = divmod(local, self.pes_x)
        return cx * self.pes_x + lx, cy * self.pes_y + ly

    def pe_id(self, x: int, y: int) -> int:
        """The PE at global grid coordinates ``(x, y)``."""
        if not (0 <= x < self.width and 0 <= y < self.height):
            raise ValueError(f"({x}, {y}) is outside mesh {self.name} "
                             f"({self.width} x {self.height} PEs)")
        cx, lx = divmod(x, self.pes_x)
        cy, ly = divmod(y, self.pes_y)
        return (cy * self.chips_x + cx) * self.pes_per_chip + ly * self.pes_x + lx

    def chip_of(self, pe_id: int) -> int:
        """The chip index (``cy * chips_x + cx``) holding a PE."""
        self._check(pe_id)
        return pe_id // self.pes_per_chip

    def chip_coords(self, chip: int) -> tuple[int, int]:
        """Chip grid coordinates ``(cx, cy)`` of a chip index."""
        if not 0 <= chip < self.num_chips:
            raise ValueError(f"chip {chip} is outside mesh {self.name} (0..{self.num_chips - 1})")
        cy, cx = divmod(chip, self.chips_x)
        return cx, cy

    def hops(self, a: int, b: int) -> int:
        """Hops from PE ``a`` to PE ``b`` under XY routing (the Manhattan distance)."""
        (ax, ay), (bx, by) = self.coords(a), self.coords(b)
        return abs(ax - bx) + abs(ay - by)

    def chip_hops(self, a: int, b: int) -> int:
        """How many of the XY hops from ``a`` to ``b`` cross from one chip to another."""
        (ax, ay), (bx, by) = self.coords(a), self.coords(b)
        return (abs(ax // self.pes_x - bx // self.pes_x)
                + abs(ay // self.pes_y - by // self.pes_y))

    def next_hop(self, a: int, b: int) -> int:
        """The first PE after ``a`` on the XY route to ``b`` (``a`` itself when ``a == b``)."""
        (ax, ay), (bx, by) = self.coords(a), self.coords(b)
        if ax != bx:
            return self.pe_id(ax + (1 if bx > ax else -1), ay)
        if ay != by:
            return self.pe_id(ax, ay + (1 if by > ay else -1))
        return a

    def route(self, a: int, b: int) -> tuple[int, ...]:
        """The PEs an XY-routed frame visits after ``a``, ending with ``b`` (empty if a == b)."""
        (ax, ay), (bx, by) = self.coords(a), self.coords(b)
        sx = 1 if bx > ax else -1
        sy = 1 if by > ay else -1
        path = [self.pe_id(x, ay) for x in range(ax + sx, bx + sx, sx)] if ax != bx else []
        if ay != by:
            path += [self.pe_id(bx, y) for y in range(ay + sy, by + sy, sy)]
        return tuple(path)

    def transfer_ns(self, a: int, b: int, nbytes: int) -> int:
        """Model time for ``nbytes`` from ``a`` to ``b``: per-hop latencies plus serialisation on
        the slowest link of the route (wormhole switching)."""
        hops, chip = self.hops(a, b), self.chip_hops(a, b)
        if hops == 0:
            return 0
        latency = (hops - chip) * self.on_chip.latency_ns + chip * self.chip_to_chip.latency_ns
        slowest = min(([self.on_chip.bytes_per_s] if hops > chip else [])
                      + ([self.chip_to_chip.bytes_per_s] if chip else []))
        return latency + -(-int(nbytes) * 1_000_000_000 // slowest)

    def nearest_host_link(self, pe_id: int) -> int:
        """The host-link PE fewest hops from ``pe_id`` (lowest id on a tie)."""
        return min(self.host_links, key=lambda h: (self.hops(pe_id, h), h))

    def to_json(self) -> dict[str, Any]:
        """The mesh as the mapping under ``mesh:`` of its YAML, PE kind inline (schema-valid)."""
        return {
            "name": self.name, "description": self.description,
            "pe_kind": self.pe_kind.to_json(),
            "topology": {"chips_x": self.chips_x, "chips_y": self.chips_y,
                         "pes_x": self.pes_x, "pes_y": self.pes_y},
            "host_links": [list(self.coords(h)) for h in self.host_links],
            "links": {k: {"bytes_per_s": f.bytes_per_s, "latency_ns": f.latency_ns}
                      for k, f in (("on_chip", self.on_chip), ("chip_to_chip", self.chip_to_chip))}}

    def summary(self) -> dict[str, Any]:
        """A short description for listings (``pemesh boards --format json``)."""
        return {"name": self.name, "description": self.description,
                "pe_kind": self.pe_kind.name, "chips": [self.chips_x, self.chips_y],
                "pes_per_chip": [self.pes_x, self.pes_y], "grid": [self.width, self.height],
                "num_pes": self.num_pes,
                "host_links": [list(self.coords(h)) for h in self.host_links]}


# ---- building dataclasses --------------------------------------------------------------------
def _build_pe_kind(doc: YamlDoc, d: dict[str, Any], at: tuple[Any, ...]) -> PeKind:
    """A PeKind from a schema-valid mapping found at field path ``at`` in ``doc``."""
    links = tuple(Link(int(x["id"]), x["name"], x["kind"], x.get("uart")) for x in d["links"])
    for i, lk in enumerate(links):
        if lk.id != i:
            raise doc.error(at + ("links", i, "id"), f"link ids must be 0, 1, 2, ... in order; "
                            f"found {lk.id} at position {i}")
        if lk.kind == "host" and lk.id != 0:
            raise doc.error(at + ("links", i, "kind"),
                            "the host link must be link 0 (docs/CONTRACTS.md, ports)")
    names = [lk.name for lk in links]
    for i, n in enumerate(names):
        if names.index(n) != i:
            raise doc.error(at + ("links", i, "name"), f"link name '{n}' is used twice")
    code_in_ram = bool(d.get("code_in_ram", False))
    flash, ram = quantity(d["flash_bytes"]), quantity(d["ram_bytes"])
    res = d["runtime_reserve"]
    res_flash, res_ram = quantity(res["flash_bytes"]), quantity(res["ram_bytes"])
    if code_in_ram and (flash or res_flash):
        bad = ("flash_bytes",) if flash else ("runtime_reserve", "flash_bytes")
        raise doc.error(at + bad, "must be 0 when code_in_ram is true (code counts as RAM)")
    if not code_in_ram and flash == 0:
        raise doc.error(at + ("flash_bytes",), "is 0 but code_in_ram is false",
                        "give the flash size, or set code_in_ram: true")
    if res_flash > flash:
        raise doc.error(at + ("runtime_reserve", "flash_bytes"),
                        f"{res_flash} B is more than the {flash} B of flash")
    if res_ram > ram:
        raise doc.error(at + ("runtime_reserve", "ram_bytes"),
                        f"{res_ram} B is more than the {ram} B of RAM")
    accel = None
    if "accelerator" in d:
        a = d["accelerator"]
        rows, cols = a["mac_array"]
        if a["macs_per_cycle"] > rows * cols:
            raise doc.error(at + ("accelerator", "macs_per_cycle"),
                            f"{a['macs_per_cycle']} is more than the {rows}x{cols} MAC array holds")
        align, layout = a.get("alignment", {}), a.get("layout", {})
        accel = Accelerator(
            name=a["name"], ops=tuple(a["ops"]), dtypes=tuple(a["dtypes"]),
            accumulator=a["accumulator"], mac_array=(rows, cols),
            macs_per_cycle=a["macs_per_cycle"], setup_cycles=a["setup_cycles"],
            align_bytes=align.get("bytes", 1), align_in_channels=align.get("input_channels", 1),
            align_out_channels=align.get("output_channels", 1),
            activation_layout=layout.get("activations", "NHWC"),
            weight_layout=layout.get("weights", "OHWI"), fused=tuple(a.get("fused", ())),
            description=a.get("description", ""))
    return PeKind(
        name=d["name"], description=d["description"], cpu=d["cpu"], fpu=d["fpu"],
        code_in_ram=code_in_ram, flash_bytes=flash, ram_bytes=ram,
        clock_hz=quantity(d["clock_hz"]), zephyr_board=d["zephyr_board"], qemu=d["qemu"],
        port=d["port"], reserve_flash_bytes=res_flash, reserve_ram_bytes=res_ram, links=links,
        accelerator=accel, source=doc.source)


def _host_links(doc: YamlDoc, entries: list[Any], cx: int, cy: int, px: int, py: int,
                make_id) -> tuple[int, ...]:
    ids: set[int] = set()
    at = ("mesh", "host_links")
    for i, e in enumerate(entries):
        if isinstance(e, list):
            x, y = e
            if x >= cx * px or y >= cy * py:
                raise doc.error(at + (i,), f"({x}, {y}) is outside the {cx * px} x {cy * py} "
                                "PE grid", "give global grid coordinates [x, y] inside the mesh")
            ids.add(make_id(x, y))
            continue
        m = _RULE.match(e)
        assert m is not None, e
        local = int(m.group(1))
        if local >= px * py:
            raise doc.error(at + (i,), f"a chip has only {px * py} PEs (0..{px * py - 1})")
        ly, lx = divmod(local, px)
        if m.group(2) is None:
            chips = [(a, b) for b in range(cy) for a in range(cx)]
        else:
            chips = [(int(m.group(2)), int(m.group(3)))]
            if chips[0][0] >= cx or chips[0][1] >= cy:
                raise doc.error(at + (i,), f"chip {chips[0]} is outside the {cx} x {cy} chip grid")
        ids.update(make_id(a * px + lx, b * py + ly) for a, b in chips)
    return tuple(sorted(ids))


def _build_mesh(doc: YamlDoc, base: Path | None) -> Mesh:
    validate(doc, "mesh", doc.data)
    d = doc.data["mesh"]
    pk = d["pe_kind"]
    if isinstance(pk, dict):
        validate(doc, "pe_kind", {"pe_kind": pk}, ("mesh",))
        pe_kind = _build_pe_kind(doc, pk, ("mesh", "pe_kind"))
    elif pk.endswith((".yaml", ".yml")) or "/" in pk:
        pe_kind = load_pe_kind((base / pk) if base is not None else Path(pk))
    elif (boards_dir() / "pe" / f"{pk}.yaml").is_file():
        pe_kind = load_pe_kind(pk)
    else:
        raise doc.error(("mesh", "pe_kind"), f"unknown PE kind '{pk}' (known: "
                        f"{', '.join(_names('pe'))})",
                        "use a name from 'pemesh boards' or a path to a PE kind YAML")
    t = d["topology"]
    cx, cy, px, py = t["chips_x"], t["chips_y"], t["pes_x"], t["pes_y"]
    if cx * cy * px * py >= HOST_ID:
        raise doc.error(("mesh", "topology"), f"{cx * cy * px * py} PEs; PE ids are 16-bit and "
                        f"0x{HOST_ID:X} is the host, so at most {HOST_ID} PEs")

    def make_id(x: int, y: int) -> int:
        return ((y // py) * cx + x // px) * px * py + (y % py) * px + x % px

    figures = {k: LinkFigures(v["bytes_per_s"], v["latency_ns"]) for k, v in d["links"].items()}
    return Mesh(name=d["name"], description=d["description"], pe_kind=pe_kind, chips_x=cx,
                chips_y=cy, pes_x=px, pes_y=py,
                host_links=_host_links(doc, d["host_links"], cx, cy, px, py, make_id),
                on_chip=figures["on_chip"], chip_to_chip=figures["chip_to_chip"],
                source=doc.source)


# ---- public loaders --------------------------------------------------------------------------
def _names(sub: str) -> list[str]:
    return sorted(p.stem for p in (boards_dir() / sub).glob("*.yaml"))


def _resolve(name_or_path: str | Path, sub: str, what: str) -> tuple[Path, str | None]:
    """A file path, and the name it must carry when it was given by name."""
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or text.endswith((".yaml", ".yml")) or "/" in text:
        return Path(name_or_path), None
    path = boards_dir() / sub / f"{text}.yaml"
    if not path.is_file():
        raise BoardError(f"unknown {what} '{text}' (known: {', '.join(_names(sub)) or 'none'})",
                         f"run 'pemesh boards' to list them, or give a path to a {what} YAML")
    return path, text


def load_pe_kind(name_or_path: str | Path) -> PeKind:
    """Load and validate a PE kind: a name from ``boards/pe/`` or a path to a YAML file."""
    path, name = _resolve(name_or_path, "pe", "PE kind")
    doc = read_yaml(path)
    validate(doc, "pe_kind", doc.data)
    pe = _build_pe_kind(doc, doc.data["pe_kind"], ("pe_kind",))
    if name is not None and pe.name != name:
        raise doc.error(("pe_kind", "name"), f"'{pe.name}' differs from the file name '{name}'",
                        "rename the file or the PE kind so that they match")
    log.debug("loaded PE kind %s from %s", pe.name, path)
    return pe


def pe_kind_for_board(board: str) -> PeKind:
    """The PE kind named ``board``, or the one whose Zephyr board is ``board`` (an app's board
    is its PE kind's Zephyr board, e.g. ``mps2/an386`` for ``qemu_mps2_an386``)."""
    try:
        return load_pe_kind(board)
    except BoardError:
        for name in _names("pe"):
            kind = load_pe_kind(name)
            if kind.zephyr_board == board:
                return kind
        raise


def load_mesh(name_or_path: str | Path) -> Mesh:
    """Load and validate a mesh: a name from ``boards/mesh/`` or a path to a YAML file."""
    path, name = _resolve(name_or_path, "mesh", "mesh")
    doc = read_yaml(path)
    mesh = _build_mesh(doc, path.parent)
    if name is not None and mesh.name != name:
        raise doc.error(("mesh", "name"), f"'{mesh.name}' differs from the file name '{name}'",
                        "rename the file or the mesh so that they match")
    log.debug("loaded mesh %s (%d PEs) from %s", mesh.name, mesh.num_pes, path)
    return mesh


def mesh_from_json(d: dict[str, Any], source: str = "<mesh.json>") -> Mesh:
    """Rebuild a mesh from :meth:`Mesh.to_json` (e.g. out of a manifest), validating it again."""
    return _build_mesh(YamlDoc(source, {"mesh": d}, None), None)


def single_pe_mesh(pe_kind: PeKind) -> Mesh:
    """A one-PE "mesh" for ``--board B``: the PE is its own host-link PE."""
    loopback = LinkFigures(bytes_per_s=1_000_000_000, latency_ns=0)
    return Mesh(name=pe_kind.name, description=f"a single {pe_kind.name} PE", pe_kind=pe_kind,
                chips_x=1, chips_y=1, pes_x=1, pes_y=1, host_links=(0,), on_chip=loopback,
                chip_to_chip=loopback, source=pe_kind.source)


def resolve_target(board: str | None = None, mesh: str | None = None) -> Mesh:
    """The mesh for ``pemesh compile``: ``--mesh M``, else one PE of ``--board B`` (default
    ``qemu_cortex_m3``)."""
    if mesh is not None:
        return load_mesh(mesh)
    return single_pe_mesh(load_pe_kind(board or DEFAULT_PE_KIND))


@dataclass(frozen=True)
class BoardList:
    """Every shipped PE kind (by name) and mesh (by size, then name)."""

    pe_kinds: tuple[PeKind, ...]
    meshes: tuple[Mesh, ...]


def list_boards() -> BoardList:
    """Load and validate every file under ``boards/pe`` and ``boards/mesh``."""
    meshes = sorted((load_mesh(n) for n in _names("mesh")), key=lambda m: (m.num_pes, m.name))
    return BoardList(tuple(load_pe_kind(n) for n in _names("pe")), tuple(meshes))
