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
