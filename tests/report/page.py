"""Test helpers: read a report page back (its SVG drawings as XML trees, its HTML elements) and
decode a PNG screenshot (no Pillow here: zlib and numpy)."""

from __future__ import annotations

import re
import struct
import xml.etree.ElementTree as ET
import zlib
from html.parser import HTMLParser
from pathlib import Path

import numpy as np

SVG = "{http://www.w3.org/2000/svg}"


def svgs(page: str) -> dict[str, ET.Element]:
    """The page's SVG drawings, parsed as XML, by their class attribute and by each of its
    class names (the first drawing with that name)."""
    out: dict[str, ET.Element] = {}
    for m in re.finditer(r'<svg xmlns="http://www.w3.org/2000/svg" class="([^"]*)".*?</svg>',
                         page, re.S):
        tree = ET.fromstring(m.group(0))
        for key in [m.group(1)] + m.group(1).split():
            out.setdefault(key, tree)
    return out


def with_class(root: ET.Element, cls: str, tag: str = "g") -> list[ET.Element]:
    """Elements ``tag`` under ``root`` whose class list holds ``cls``."""
    return [e for e in root.iter(SVG + tag) if cls in (e.get("class") or "").split()]


def text_of(e: ET.Element) -> str:
    return "".join(e.itertext())


class Elements(HTMLParser):
    """Every start tag of an HTML page with its attributes and the text inside it (flat)."""

    VOID = {"meta", "br", "img", "input", "link", "hr"}

    def __init__(self, page: str):
        super().__init__()
        self.found: list[dict] = []
        self._open: list[dict] = []
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        e = {"tag": tag, "attrs": dict(attrs), "text": ""}
        self.found.append(e)
        if tag not in self.VOID:
            self._open.append(e)

    def handle_endtag(self, tag):
        for i in range(len(self._open) - 1, -1, -1):
            if self._open[i]["tag"] == tag:
                del self._open[i:]
                break

    def handle_data(self, data):
        for e in self._open:
            e["text"] += data

    def by_class(self, cls: str, tag: str | None = None) -> list[dict]:
        return [e for e in self.found if cls in (e["attrs"].get("class") or "").split()
                and (tag is None or e["tag"] == tag)]


def read_png(path: Path) -> np.ndarray:
    """An 8-bit RGB or RGBA, non-interlaced PNG as an (h, w, 3) uint8 array."""
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, hdr = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    w, h, depth, ctype, _, _, interlace = hdr
    assert depth == 8 and ctype in (2, 6) and not interlace, hdr
    bpp = 3 if ctype == 2 else 4
    raw = zlib.decompress(idat)
    stride = w * bpp
    out = bytearray(h * stride)
    prev = bytearray(stride)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)]
        if f == 0:
            cur = bytearray(line)
        elif f == 2:
            cur = bytearray(((np.frombuffer(line, np.uint8).astype(np.int32)
                              + np.frombuffer(bytes(prev), np.uint8)) & 0xFF).astype(np.uint8))
        elif f == 1:                # Sub: a running sum per channel
            a = np.frombuffer(line, np.uint8).reshape(w, bpp).astype(np.int64)
            cur = bytearray((np.cumsum(a, axis=0) & 0xFF).astype(np.uint8).tobytes())
        else:                       # Average, Paeth: byte by byte
            cur = bytearray(stride)
            for i in range(stride):
                a = cur[i - bpp] if i >= bpp else 0
                b = prev[i]
                if f == 3:
                    pred = (a + b) >> 1
                else:
                    c = prev[i - bpp] if i >= bpp else 0
                    pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                    pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                cur[i] = (line[i] + pred) & 0xFF
        out[y * stride:(y + 1) * stride] = cur
        prev = cur
    return np.frombuffer(bytes(out), np.uint8).reshape(h, w, bpp)[:, :, :3]


def has_color(img: np.ndarray, hex_color: str, tol: int = 6) -> int:
    """How many pixels of ``img`` are within ``tol`` of ``hex_color`` on every channel."""
    rgb = np.array([int(hex_color[i:i + 2], 16) for i in (1, 3, 5)], dtype=np.int32)
    return int((np.abs(img.astype(np.int32) - rgb) <= tol).all(axis=2).sum())
