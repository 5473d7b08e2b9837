"""Where pemesh's data trees live, in a source checkout and in an installed wheel."""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent


def data_dir(tree: str) -> Path:
    """Return the directory of a data tree: ``templates``, ``boards`` or ``zephyr_app``.

    An installed wheel carries them under ``generator/_data/``; a source checkout (or an
    editable install) has them at the repository's top level.
    """
    installed = _PKG / "_data" / tree
    if installed.is_dir():
        return installed
    checkout = _PKG.parent / tree
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(
        f"pemesh data folder '{tree}' not found under {installed} or {checkout}; "
        "reinstall pemesh (pip install .)")


def templates_dir() -> Path:
    return data_dir("templates")


def boards_dir() -> Path:
    return data_dir("boards")


def runtime_dir() -> Path:
    """The hand-written PE runtime laid out as a Zephyr module (zephyr_app/)."""
    return data_dir("zephyr_app")


#: trees of the kernel's, not for files
_NOT_FOR_FILES = ("/proc", "/sys", "/dev")


def unwritable_reason(path: Path, *, make_parents: bool = False) -> str | None:
    """Why a file or folder cannot be made at ``path`` (None when it can, as far as a check
    before writing can tell): its folder is missing (unless ``make_parents``: then the nearest
    existing ancestor must be a writable folder), not writable, or a kernel tree."""
    import os

    path = Path(path)
    resolved = path.resolve()
    if any(resolved == Path(t) or Path(t) in resolved.parents for t in _NOT_FOR_FILES):
        return f"{resolved.parts[1]}/ is not a place for files"
    parent = resolved.parent
    if make_parents:
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
    if not parent.is_dir():
        return (f"{parent} is a file, not a folder" if parent.exists()
                else f"the folder {parent} does not exist")
    target = resolved if resolved.exists() else parent
    if not os.access(target, os.W_OK):
        return f"{target} is not writable"
    return None
