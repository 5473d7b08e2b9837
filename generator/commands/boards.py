"""``pemesh boards``: list the shipped PE kinds and meshes as a text table or JSON."""

from __future__ import annotations

import argparse
import json

from generator.boards.catalog import BoardList, list_boards


def format_bytes(n: int) -> str:
    """``262144`` → ``256 KiB``."""
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % (size // 4) == 0:
            return f"{n / size:g} {unit}"
    return f"{n} B"


def format_hz(n: int) -> str:
    """``12000000`` → ``12 MHz``."""
    for unit, size in (("GHz", 10 ** 9), ("MHz", 10 ** 6), ("kHz", 10 ** 3)):
        if n >= size:
            return f"{n / size:g} {unit}"
    return f"{n} Hz"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [headers] + rows) for i in range(len(headers))]
    return "\n".join("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
                     for r in [headers] + rows)


def render_boards_text(boards: BoardList) -> str:
    """The text listing of ``pemesh boards``."""
    pe_rows = []
    for p in boards.pe_kinds:
        a = p.accelerator
        accel = (f"{a.name} {a.mac_array[0]}x{a.mac_array[1]} {'/'.join(a.dtypes)}"
                 if a else "-")
        pe_rows.append([p.name, p.cpu, "yes" if p.fpu else "no",
                        "(in RAM)" if p.code_in_ram else format_bytes(p.flash_bytes),
                        format_bytes(p.ram_bytes), format_hz(p.clock_hz), p.qemu or "-",
                        p.zephyr_board or "-", p.port, accel])
    mesh_rows = []
    for m in boards.meshes:
        hl = ", ".join(f"({x},{y})" for x, y in (m.coords(h) for h in m.host_links[:3]))
        if len(m.host_links) > 3:
            hl += f", ... ({len(m.host_links)})"
        mesh_rows.append([m.name, m.pe_kind.name, f"{m.chips_x}x{m.chips_y}",
                          f"{m.pes_x}x{m.pes_y}", f"{m.width}x{m.height}", str(m.num_pes), hl])
    return ("PE kinds\n"
            + _table(["name", "cpu", "fpu", "flash", "ram", "clock", "qemu", "zephyr board",
                      "port", "accelerator"], pe_rows)
            + "\n\nMeshes\n"
            + _table(["name", "pe kind", "chips", "PEs/chip", "grid", "PEs", "host links"],
                     mesh_rows)
            + "\n")


def boards_command(args: argparse.Namespace) -> int:
    """``pemesh boards [--format text|json]``: list PE kinds and meshes."""
    boards = list_boards()
    if getattr(args, "format", "text") == "json":
        print(json.dumps({"pe_kinds": [p.to_json() for p in boards.pe_kinds],
                          "meshes": [m.summary() for m in boards.meshes]},
                         indent=2, sort_keys=True))
    else:
        print(render_boards_text(boards), end="")
    return 0
