"""Inputs for ``pemesh run``: exactly as the model declares them, one item or a dataset.

An item is one list of arrays, one per model input, each with the input's shape and dtype. The
one allowance: a missing leading batch dimension of 1 (``[3, 32, 32]`` for ``[1, 3, 32, 32]``).
Anything else — another dtype, another shape, a flat array — is a UsageError naming both.

What ``--input`` may name:
- nothing: the stored reference input (one item);
- one ``.npy`` per model input (one item), or for a one-input model a ``.npy`` whose leading
  axis counts items (``[N, *shape]``, or ``[N, *shape[1:]]`` when the batch is 1): a dataset;
- one ``.npz`` whose keys are the model's input names (or their C names): one item, or a dataset
  when every array has one more leading axis (the same N for all);
- a folder of ``.npy`` (one-input model) or ``.npz`` files, in name order: a dataset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from generator.errors import UsageError
from generator.types import TensorSpec

#: what a dataset's arrays are read as, in one place for every error message
_HINT = ("give each input the model's shape and dtype (a missing leading batch dimension of 1 "
         "is fine), or a dataset with one more leading axis; see 'pemesh run --help'")


def _describe(a: np.ndarray) -> str:
    return f"{a.dtype}{list(a.shape)}"


def _want(spec: TensorSpec) -> str:
    return f"{spec.dtype}{list(spec.shape)}"


def _load(path: Path) -> np.ndarray | dict[str, np.ndarray]:
    try:
        loaded = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise UsageError(f"input {path} does not exist",
                         hint="pass a .npy per model input, an .npz, or a folder") from None
    except (OSError, ValueError) as err:
        raise UsageError(f"cannot read input {path}: {err}",
                         hint="inputs are NumPy .npy/.npz files (numpy.save / numpy.savez)") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            return {k: loaded[k] for k in loaded.files}
    return loaded


def fit_item(a: np.ndarray, spec: TensorSpec, what: str) -> np.ndarray:
    """``a`` as model input ``spec`` (adding a missing batch dimension of 1), or UsageError."""
    a = np.asarray(a)
    if a.dtype != np.dtype(spec.dtype):
        raise UsageError(f"{what} ({spec.name}) is {_describe(a)}, the model wants "
                         f"{_want(spec)}: the dtype differs",
                         hint=f"convert it, e.g. numpy.asarray(x, dtype='{spec.dtype}')")
    if tuple(a.shape) == spec.shape:
        return np.ascontiguousarray(a)
    if spec.shape[:1] == (1,) and tuple(a.shape) == spec.shape[1:]:
        return np.ascontiguousarray(a.reshape(spec.shape))
    raise UsageError(f"{what} ({spec.name}) is {_describe(a)}, the model wants {_want(spec)}",
                     hint=_HINT)


def _items_of(a: np.ndarray, spec: TensorSpec, what: str) -> list[np.ndarray]:
    """One array as a single item or as a dataset of items along its leading axis."""
    a = np.asarray(a)
    shape = tuple(a.shape)
    if shape == spec.shape or (spec.shape[:1] == (1,) and shape == spec.shape[1:]):
        return [fit_item(a, spec, what)]
    if len(shape) == len(spec.shape) + 1 and shape[1:] == spec.shape:
        return [fit_item(x, spec, f"{what} item {i}") for i, x in enumerate(a)]
    if spec.shape[:1] == (1,) and len(shape) == len(spec.shape) and shape[1:] == spec.shape[1:]:
        return [fit_item(x, spec, f"{what} item {i}") for i, x in enumerate(a)]
    return [fit_item(a, spec, what)]          # raises, naming both shapes


def _by_name(arrays: dict[str, np.ndarray], specs: Sequence[TensorSpec],
             where: str) -> list[np.ndarray]:
    out = []
    names = {s.name for s in specs} | {s.c_name for s in specs}
    unknown = sorted(set(arrays) - names)
    if unknown:
        raise UsageError(f"{where} has array(s) {unknown} that are not model inputs",
                         hint=f"the model's inputs are {[s.name for s in specs]}")
    for s in specs:
        key = s.name if s.name in arrays else s.c_name if s.c_name in arrays else None
        if key is None:
            raise UsageError(f"{where} has no array for model input '{s.name}'",
                             hint=f"numpy.savez(path, **{{'{s.name}': x, ...}})")
        out.append(arrays[key])
    return out


def _zip_items(per_input: list[list[np.ndarray]], specs: Sequence[TensorSpec],
               where: str) -> list[list[np.ndarray]]:
    counts = {len(items) for items in per_input}
    if len(counts) != 1:
        raise UsageError(f"{where}: the inputs hold different numbers of items "
                         f"({', '.join(f'{s.name}: {len(i)}' for s, i in zip(specs, per_input))})",
                         hint="give every input the same leading item axis")
    return [list(item) for item in zip(*per_input)]


def load_items(paths: Sequence[str], specs: Sequence[TensorSpec],
               default: Sequence[np.ndarray] = ()) -> list[list[np.ndarray]]:
    """The items ``--input`` names (see the module docstring); ``[default]`` when none."""
    if not paths:
        return [[fit_item(a, s, f"reference input {i}")
                 for i, (a, s) in enumerate(zip(default, specs))]]
    if len(paths) == 1 and Path(paths[0]).is_dir():
        folder = Path(paths[0])
        files = sorted(p for p in folder.iterdir() if p.suffix in (".npy", ".npz"))
        if not files:
            raise UsageError(f"input folder {folder} holds no .npy or .npz files",
                             hint="one file per item: .npy for a one-input model, else .npz")
        items = []
        for f in files:
            items.extend(_items_of_file(f, specs, one_item=True))
        return items
    if len(paths) == 1:
        return _items_of_file(Path(paths[0]), specs, one_item=False)
    if len(paths) != len(specs):
        raise UsageError(f"the model takes {len(specs)} input(s), got {len(paths)} files",
                         hint="pass one --input per model input, or one .npz")
    per_input = [_items_of(_npy(Path(p)), s, f"input {i}")
                 for i, (p, s) in enumerate(zip(paths, specs))]
    return _zip_items(per_input, specs, "--input")


def _npy(path: Path) -> np.ndarray:
    loaded = _load(path)
    if isinstance(loaded, dict):
        raise UsageError(f"{path} is an .npz; with several --input files each is one .npy",
                         hint="or pass the .npz alone")
    return loaded


def _items_of_file(path: Path, specs: Sequence[TensorSpec],
                   one_item: bool) -> list[list[np.ndarray]]:
    loaded = _load(path)
    if isinstance(loaded, dict):
        arrays = _by_name(loaded, specs, str(path))
        if one_item:
            return [[fit_item(a, s, f"{path} input {i}")
                     for i, (a, s) in enumerate(zip(arrays, specs))]]
        per_input = [_items_of(a, s, f"{path} input {i}")
                     for i, (a, s) in enumerate(zip(arrays, specs))]
        return _zip_items(per_input, specs, str(path))
    if len(specs) != 1:
        raise UsageError(f"the model takes {len(specs)} inputs and {path} is one array",
                         hint="pass one --input per model input, or an .npz by input name")
    if one_item:
        return [[fit_item(loaded, specs[0], str(path))]]
    return [[x] for x in _items_of(loaded, specs[0], str(path))]
