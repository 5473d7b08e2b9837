"""Stamping a PE's identity into a built image (docs/CONTRACTS.md §1 and §6).

PEs of one stage run one firmware image; only ``struct pemesh_pe_config`` (128 bytes in the flash
section ``.pemesh_config``, ``include/pemesh/config.h``) differs per PE. So ``pemesh build``
links one image per stage and, for every other PE of the stage, copies the ELF (and its flash
``.bin``) and overwrites those 128 bytes with the PE's own block — checked here and packed by
:func:`generator.wire.pack_pe_config` from the PE's :class:`~generator.types.AppSpec`, byte
for byte what the generated ``src/pe_config.c`` compiles to (tests/firmware/test_stamp.py checks that
against arm-none-eabi-gcc and gcc).

Layout (little-endian): 0 u32 magic ``0x434D4550`` ("PEMC"), 4 u16 version 1, 6 u16 pe_id,
8 u8 role, 9 u8 n_routes, 10 u16 reserved, 12 u32 flags, 16 routes[112]: ``n_routes`` entries of
6 bytes ``u8 kind, u8 a, u16 pe, u16 b``, zero after them.

The ELF is read with ``struct`` (ELF32 and ELF64, either endianness): the section's file offset,
size and load address (LMA, through the program header that holds it). The ``.bin`` that
``objcopy -O binary`` writes starts at the lowest LMA of the loadable sections, so the block sits
at ``LMA - that base`` in it.

Building one image per stage and stamping the other PEs is :mod:`generator.firmware.images`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from generator import wire as messaging
from generator.firmware.elf import SHF_ALLOC, SHT_NOBITS, Section, Segment, read_elf
from generator.errors import BuildError, UsageError
from generator.types import AppSpec, Route

log = logging.getLogger(__name__)

SECTION = ".pemesh_config"
#: the block's layout lives in generator.wire (the one packer); these are its names here
MAGIC = messaging.PE_CONFIG_MAGIC       # PEMESH_PE_CONFIG_MAGIC ("PEMC")
VERSION = messaging.PE_CONFIG_VERSION   # PEMESH_PE_CONFIG_VERSION
SIZE = messaging.PE_CONFIG_SIZE         # PEMESH_PE_CONFIG_SIZE
ROUTE_BYTES = messaging.ROUTE_BYTES     # PEMESH_PE_CONFIG_ROUTE_BYTES
ROUTE_SIZE = messaging.ROUTE_SIZE       # u8 kind, u8 a, u16 pe, u16 b
MAX_ROUTES = messaging.MAX_ROUTES       # 18
HOST_ID = messaging.HOST_ID

#: AppSpec.role → pemesh_pe_config.role (CONTRACTS §6: 0 SINGLE, 1 STAGE)
ROLE_VALUES = messaging.ROLE_VALUES

_HINT_REBUILD = ("rebuild the image from a rendered app ('pemesh compile --force', then "
                 "'pemesh build'); its src/pe_config.c places struct pemesh_pe_config in "
                 f"{SECTION}")


# --- the 128 bytes ---------------------------------------------------------------------------

@dataclass(frozen=True)
class PeConfig:
    """A decoded ``struct pemesh_pe_config``."""

    magic: int
    version: int
    pe_id: int
    role: int
    flags: int
    routes: tuple[Route, ...]


def _check_routes(routes: tuple[Route, ...] | list[Route]) -> None:
    if len(routes) > MAX_ROUTES:
        raise UsageError(f"{len(routes)} routes do not fit pemesh_pe_config (at most "
                         f"{MAX_ROUTES})", hint="place the stage so that it has fewer links")
    for r in routes:
        if not (0 <= r.kind <= 0xFF and 0 <= r.a <= 0xFF and 0 <= r.pe <= 0xFFFF
                and 0 <= r.b <= 0xFFFF):
            raise UsageError(f"route {r} is out of range (u8 kind, u8 a, u16 pe, u16 b)",
                             hint="check the placement's routes")


def pack_routes(routes: tuple[Route, ...] | list[Route]) -> bytes:
    """The 112-byte routes field: 6-byte entries, zero-filled (UsageError if they do not fit)."""
    _check_routes(routes)
    return messaging.pack_routes([(r.kind, r.a, r.pe, r.b) for r in routes])


def pack_pe_config(spec: AppSpec) -> bytes:
    """The 128 bytes of ``struct pemesh_pe_config`` for one PE, as its ``pe_config.c`` holds
    them. Raises UsageError for an id, role, flag or route that does not fit."""
    if not 0 <= spec.pe_id < HOST_ID:
        raise UsageError(f"PE '{spec.pe_name}': pe_id {spec.pe_id} is outside 0..{HOST_ID - 1}",
                         hint="0xFFFF is reserved for the host; renumber the PEs")
    if spec.role not in ROLE_VALUES:
        raise UsageError(f"PE '{spec.pe_name}': unknown role '{spec.role}'",
                         hint=f"known roles: {', '.join(sorted(ROLE_VALUES))}")
    if not 0 <= spec.flags <= 0xFFFFFFFF:
        raise UsageError(f"PE '{spec.pe_name}': flags {spec.flags:#x} do not fit in u32",
                         hint="see CONTRACTS §6 for the flag bits")
    _check_routes(spec.routes)
    return messaging.pack_pe_config(messaging.PeConfig(
        spec.pe_id, ROLE_VALUES[spec.role], tuple((r.kind, r.a, r.pe, r.b) for r in spec.routes),
        spec.flags))


def unpack_pe_config(raw: bytes) -> PeConfig:
    """Decode 128 bytes of ``struct pemesh_pe_config`` (BuildError if they are not one)."""
    try:
        cfg = messaging.unpack_pe_config(raw)
    except ValueError as err:
        raise BuildError(str(err), hint=_HINT_REBUILD) from None
    return PeConfig(MAGIC, VERSION, cfg.pe_id, cfg.role, cfg.flags,
                    tuple(Route(*r) for r in cfg.routes))


# --- finding the section -----------------------------------------------------------------------

@dataclass(frozen=True)
class ConfigLocation:
    """Where ``.pemesh_config`` sits in an ELF and in its flash ``.bin``."""

    offset: int                 # file offset in the ELF
    size: int                   # section size (must be SIZE)
    address: int                # VMA
    lma: int                    # load address (== address unless it loads elsewhere)
    bin_offset: int | None      # offset in `objcopy -O binary` output; None if not loadable


def _lma(sec: Section, segments: list[Segment]) -> int:
    """A section's load address: through the PT_LOAD segment whose file bytes hold it."""
    for seg in segments:
        if seg.offset <= sec.offset and sec.offset + sec.size <= seg.offset + seg.filesz:
            return seg.paddr + (sec.offset - seg.offset)
    return sec.addr


def find_config(raw: bytes, what: str = "image") -> ConfigLocation:
    """Locate ``.pemesh_config`` in the ELF bytes ``raw`` (BuildError if absent or not 128 B)."""
    try:
        sections, segments = read_elf(raw)
    except ValueError as err:
        raise BuildError(f"{what} {err}", hint=_HINT_REBUILD) from None
    found = [s for s in sections if s.name == SECTION]
    if not found:
        raise BuildError(f"{what} has no {SECTION} section: cannot stamp a PE identity into it",
                         hint=_HINT_REBUILD)
    sec = found[0]
    if sec.type == SHT_NOBITS or sec.size != SIZE:
        raise BuildError(f"{what}: section {SECTION} is {sec.size} bytes"
                         f"{' without contents' if sec.type == SHT_NOBITS else ''}, not the "
                         f"{SIZE} of struct pemesh_pe_config", hint=_HINT_REBUILD)
    if sec.offset + sec.size > len(raw):
        raise BuildError(f"{what} is truncated: {SECTION} lies past its end", hint=_HINT_REBUILD)
    bin_offset = None
    lma = sec.addr
    if sec.flags & SHF_ALLOC and segments:
        lma = _lma(sec, segments)
        loadable = [_lma(s, segments) for s in sections
                    if s.flags & SHF_ALLOC and s.type != SHT_NOBITS and s.size > 0]
        bin_offset = lma - min(loadable)
    return ConfigLocation(sec.offset, sec.size, sec.addr, lma, bin_offset)


def read_config(elf: Path) -> bytes:
    """The 128 bytes of ``.pemesh_config`` in an ELF file (object, executable or firmware)."""
    raw = Path(elf).read_bytes()
    loc = find_config(raw, str(elf))
    return raw[loc.offset:loc.offset + SIZE]


# --- stamping ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class StampSource:
    """A built image (ELF and optional flash .bin) read once, ready to stamp many copies."""

    elf_path: Path
    bin_path: Path | None
    elf: bytes
    bin: bytes | None
    location: ConfigLocation
    mode: int                   # the ELF's permission bits (host executables stay executable)

    @property
    def config(self) -> bytes:
        """The identity block the image was built with."""
        return self.elf[self.location.offset:self.location.offset + SIZE]


def load_stamp_source(elf: Path, bin_path: Path | None = None) -> StampSource:
    """Read a built image and check that it can be stamped: ``.pemesh_config`` present, 128
    bytes, holding a pemesh_pe_config of this version, and (with a .bin) the same bytes at the
    .bin offset. Raises BuildError naming what is wrong."""
    elf = Path(elf)
    raw = elf.read_bytes()
    loc = find_config(raw, str(elf))
    unpack_pe_config(raw[loc.offset:loc.offset + SIZE])      # magic and version
    bin_raw = None
    if bin_path is not None:
        bin_raw = Path(bin_path).read_bytes()
        if loc.bin_offset is None:
            raise BuildError(f"{elf}: {SECTION} is not loaded into flash, but a .bin was given",
                             hint=_HINT_REBUILD)
        inside = bin_raw[loc.bin_offset:loc.bin_offset + SIZE]
        if inside != raw[loc.offset:loc.offset + SIZE]:
            raise BuildError(f"{bin_path} does not hold {elf}'s {SECTION} at offset "
                             f"{loc.bin_offset:#x} (is it the objcopy of that ELF?)",
                             hint="rebuild the image; the .bin must be 'objcopy -O binary' of "
                                  "the ELF")
    return StampSource(elf, Path(bin_path) if bin_path else None, raw, bin_raw, loc,
                       elf.stat().st_mode & 0o777)


def _patch(data: bytes, offset: int, config: bytes) -> bytes:
    return b"".join((data[:offset], config, data[offset + SIZE:]))


def stamp(source: StampSource, config: bytes, elf_out: Path,
          bin_out: Path | None = None) -> tuple[bytes, bytes | None]:
    """Write a copy of ``source`` with ``config`` (128 bytes, see :func:`pack_pe_config`) in
    ``.pemesh_config``: the ELF to ``elf_out`` and, if the source has one, the .bin to
    ``bin_out``. Returns the bytes written (ELF, bin)."""
    if len(config) != SIZE:
        raise BuildError(f"a pemesh_pe_config is {SIZE} bytes, not {len(config)}",
                         hint="pack it with generator.firmware.stamp.pack_pe_config")
    unpack_pe_config(config)
    elf_out = Path(elf_out)
    elf_out.parent.mkdir(parents=True, exist_ok=True)
    new_elf = _patch(source.elf, source.location.offset, config)
    elf_out.write_bytes(new_elf)
    os.chmod(elf_out, source.mode)
    new_bin = None
    if source.bin is not None:
        if bin_out is None:
            raise UsageError("the image has a .bin; give the path of its stamped copy",
                             hint="pass bin_out")
        new_bin = _patch(source.bin, source.location.bin_offset, config)
        Path(bin_out).write_bytes(new_bin)
    return new_elf, new_bin


def stamp_image(elf: Path, bin_path: Path | None, spec: AppSpec, elf_out: Path,
                bin_out: Path | None = None) -> tuple[bytes, bytes | None]:
    """Copy a built image (ELF and optional .bin) to ``elf_out``/``bin_out`` with the identity
    block of ``spec`` stamped in. BuildError if the image cannot be stamped."""
    return stamp(load_stamp_source(elf, bin_path), pack_pe_config(spec), elf_out, bin_out)


__all__ = ["SECTION", "SIZE", "MAX_ROUTES", "ROLE_VALUES", "PeConfig", "ConfigLocation",
           "StampSource", "pack_pe_config", "pack_routes", "unpack_pe_config", "find_config",
           "read_config", "load_stamp_source", "stamp", "stamp_image"]
