"""The cache of generated test models (converter_zoo, op_zoo, torch_zoo): one folder per hash
of the generating module and its converter's version, a file made once and reused."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable, Sequence


def source_hash(source: str | Path, package: str, prefix: str = "") -> str:
    """Hash of ``source`` (the generator module) and ``package``'s installed version."""
    h = hashlib.sha256(Path(source).read_bytes())
    try:
        from importlib.metadata import version
        h.update(version(package).encode())
    except Exception:  # noqa: BLE001 (converter not installed: the cache may still be full)
        pass
    return prefix + h.hexdigest()[:16]


def cached_path(folder: Path, name: str, models: Sequence[str],
                generate: Callable[[str, Path], None]) -> Path:
    """The cached file ``name`` (``<model>_<kind>.<ext>``) in ``folder``, generated with
    ``generate(model, folder)`` if the model's files are not all there."""
    p = folder / name
    model = name.split("_")[0]
    if model not in models:
        raise KeyError(name)
    if not (folder / f"{model}.done").exists() or not p.exists():
        generate(model, folder)
    if not p.exists():
        raise FileNotFoundError(p)
    return p


def fill(argv: Sequence[str], models: Sequence[str], path: Callable[[str], Path],
         folder: Callable[[], Path]) -> int:
    """``python -m tests.<zoo> [MODEL ...]``: make the models' files (all by default)."""
    for model in argv or models:
        path(f"{model}_int8.tflite")
        print(f"{model}: {folder()}")
    return 0
