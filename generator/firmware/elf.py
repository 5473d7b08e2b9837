"""The few ELF facts pemesh needs, read with ``struct`` (ELF32 and ELF64, either endianness).

Section headers (name, type, flags, address, file offset, size) serve the image sizes
(:func:`generator.firmware.toolchain.elf_sizes`) and locating ``.pemesh_config``
(:func:`generator.firmware.stamp.find_config`); the PT_LOAD program headers give load addresses. A file
that is not ELF or is cut short raises ValueError; the callers turn it into their own error.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

SHT_NOBITS = 8
SHF_WRITE = 0x1
SHF_ALLOC = 0x2
PT_LOAD = 1


@dataclass(frozen=True)
class Section:
    """One section header."""

    name: str
    type: int
    flags: int
    addr: int
    offset: int
    size: int


@dataclass(frozen=True)
class Segment:
    """One PT_LOAD program header."""

    offset: int
    vaddr: int
    paddr: int
    filesz: int


def is_elf(raw: bytes) -> bool:
    """Whether ``raw`` starts like an ELF32/ELF64 file of either endianness."""
    return raw[:4] == b"\x7fELF" and len(raw) > 5 and raw[4] in (1, 2) and raw[5] in (1, 2)


def read_elf(raw: bytes) -> tuple[list[Section], list[Segment]]:
    """The sections and PT_LOAD segments of the ELF bytes ``raw``.

    Raises ValueError saying what is wrong as a predicate ("is not an ELF file", "has no section
    headers", "is a truncated or malformed ELF file (...)"): callers prefix the file's name.
    """
    if not is_elf(raw):
        raise ValueError("is not an ELF file")
    try:
        heads, shstrndx, segments = _headers(raw)
    except struct.error as err:
        raise ValueError(f"is a truncated or malformed ELF file ({err})") from None
    if not heads or shstrndx >= len(heads):
        raise ValueError("has no section headers")
    str_off, str_size = heads[shstrndx][4], heads[shstrndx][5]
    names = raw[str_off:str_off + str_size]
    sections = []
    for name_off, sh_type, flags, addr, off, size in heads:
        end = names.find(b"\0", name_off)
        if end < 0:
            raise ValueError("is a truncated or malformed ELF file (a section name lies past its "
                             "table)")
        sections.append(Section(names[name_off:end].decode("ascii", "replace"), sh_type, flags,
                                addr, off, size))
    return sections, segments


def _headers(raw: bytes) -> tuple[list[tuple], int, list[Segment]]:
    """Raw section headers, the index of the section-name table, and the PT_LOAD segments."""
    is64 = raw[4] == 2
    e = "<" if raw[5] == 1 else ">"
    if is64:
        phoff, shoff = struct.unpack_from(e + "QQ", raw, 0x20)
        phentsize, phnum, shentsize, shnum, shstrndx = struct.unpack_from(e + "HHHHH", raw, 0x36)
        sh_fmt, ph_fmt = e + "IIQQQQ", e + "IIQQQQQQ"
    else:
        phoff, shoff = struct.unpack_from(e + "II", raw, 0x1C)
        phentsize, phnum, shentsize, shnum, shstrndx = struct.unpack_from(e + "HHHHH", raw, 0x2A)
        sh_fmt, ph_fmt = e + "IIIIII", e + "IIIIIIII"
    heads = [struct.unpack_from(sh_fmt, raw, shoff + i * shentsize) for i in range(shnum)]
    segments = []
    for i in range(phnum):
        ph = struct.unpack_from(ph_fmt, raw, phoff + i * phentsize)
        if is64:   # type, flags, offset, vaddr, paddr, filesz, memsz, align
            p_type, _, p_off, p_vaddr, p_paddr, p_filesz, _, _ = ph
        else:      # type, offset, vaddr, paddr, filesz, memsz, flags, align
            p_type, p_off, p_vaddr, p_paddr, p_filesz, _, _, _ = ph
        if p_type == PT_LOAD:
            segments.append(Segment(p_off, p_vaddr, p_paddr, p_filesz))
    return heads, shstrndx, segments
