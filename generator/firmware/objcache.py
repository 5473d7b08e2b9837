"""Reuse the runtime's objects across the images of one process's builds.

Every PE image compiles the same runtime (``zephyr_app/src``) and port sources with the same
flags; only the app and model sources differ. The runtime and port sources include only the
runtime's and the port's headers, so an object is fully determined by its compile command
without the app's and model's include folders and output path, the source's bytes and those
headers' bytes. The first build of such a key compiles and keeps a copy of the object in a folder of this
process's own (removed at exit: a build folder may be rebuilt for another backend); later builds
copy that object
(``-ffile-prefix-map`` maps each app folder to ``.``, so the copy is the same bytes a compile
would give). A mesh of 256 stages then compiles the runtime once, not 256 times.
"""

from __future__ import annotations

import atexit
import hashlib
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Sequence

#: object groups (build_dir/obj/<group>/) whose sources see only runtime and port headers
SHARED_GROUPS = ("core", "port")

_lock = threading.Lock()
_objects: dict[str, Path] = {}
_store: Path | None = None


def _store_dir() -> Path:
    global _store
    if _store is None:
        _store = Path(tempfile.mkdtemp(prefix="pemesh-objects-"))
        atexit.register(shutil.rmtree, _store, True)
    return _store
_headers: dict[Path, tuple[float, str]] = {}


def _dir_hash(d: Path) -> str:
    """Hash of the headers under ``d`` (cached by the folder's newest mtime)."""
    files = sorted(p for p in d.rglob("*.h") if p.is_file())
    stamp = max((p.stat().st_mtime for p in files), default=0.0)
    hit = _headers.get(d)
    if hit and hit[0] == stamp:
        return hit[1]
    h = hashlib.sha256()
    for p in files:
        h.update(str(p.relative_to(d)).encode())
        h.update(p.read_bytes())
    _headers[d] = (stamp, h.hexdigest())
    return _headers[d][1]


def key(cmd: Sequence[str], cwd: Path | None) -> str | None:
    """The cache key of a compile command of a shared group, or None (not shareable)."""
    out = Path(cmd[-1])
    if out.parent.name not in SHARED_GROUPS:
        return None
    src = Path(cmd[cmd.index("-c") + 1])
    h = hashlib.sha256(src.read_bytes())
    cwd_s = str(Path(cwd).resolve()) if cwd else None
    for arg in cmd[:-1]:
        if arg.startswith("-I"):
            d = Path(arg[2:])
            if (cwd_s and arg[2:].startswith(cwd_s)) or d.parts[-3:] == ("codegen", "host",
                                                                         "include"):
                continue                      # the app's and the model's: never included
            h.update(arg.encode())
            if d.is_dir():
                h.update(_dir_hash(d).encode())
        elif arg.startswith("-ffile-prefix-map="):
            continue                          # names the app folder; maps it to "."
        else:
            h.update(arg.encode())
        h.update(b"\0")
    return h.hexdigest()


def split(cmds: Sequence[Sequence[str]], cwd: Path | None
          ) -> tuple[list[Sequence[str]], list[tuple[str, Sequence[str]]]]:
    """(commands to run, (key, command) of those that fill the cache); copies every object
    already in the cache into place."""
    run, fill = [], []
    for c in cmds:
        k = key(c, cwd)
        if k is None:
            run.append(c)
            continue
        with _lock:
            have = _objects.get(k)
        if have is not None and have.is_file():
            shutil.copyfile(have, c[-1])
            continue
        run.append(c)
        fill.append((k, c))
    return run, fill


def remember(fill: Sequence[tuple[str, Sequence[str]]]) -> None:
    """Keep a copy of each object just compiled, under its key."""
    with _lock:
        store = _store_dir()
        for k, c in fill:
            kept = store / f"{k}.o"
            shutil.copyfile(c[-1], kept)
            _objects[k] = kept
