"""--input exactly as the model declares it: one item, several inputs, .npz by name, datasets."""

from __future__ import annotations

import numpy as np
import pytest

from generator.errors import UsageError
from generator.types import TensorSpec
from generator.verify.inputs import load_items

X = TensorSpec("x", (1, 3, 4, 4), "float32")
B = TensorSpec("bias", (4,), "int8")


def _npy(tmp_path, name, a):
    p = tmp_path / name
    np.save(p, a)
    return str(p)


def test_one_item_and_the_batch_allowance(tmp_path):
    a = np.arange(48, dtype=np.float32).reshape(1, 3, 4, 4)
    (item,) = load_items([_npy(tmp_path, "a.npy", a)], [X])
    np.testing.assert_array_equal(item[0], a)
    (item,) = load_items([_npy(tmp_path, "b.npy", a[0])], [X])      # no batch dim: added
    assert item[0].shape == X.shape


@pytest.mark.parametrize("shape, dtype, says", [
    ((1, 4, 4, 3), np.float32, "is float32[1, 4, 4, 3], the model wants float32[1, 3, 4, 4]"),
    ((48,), np.float32, "is float32[48]"), ((1, 3, 4, 4), np.float64, "the dtype differs"),
    ((1, 3, 4, 4), np.int32, "the dtype differs")])
def test_anything_else_is_refused(tmp_path, shape, dtype, says):
    with pytest.raises(UsageError, match=r".*" + says.replace("[", r"\[").replace("]", r"\]")):
        load_items([_npy(tmp_path, "a.npy", np.zeros(shape, dtype))], [X])


def test_datasets_from_an_array_a_folder_and_an_npz(tmp_path):
    data = np.random.default_rng(0).standard_normal((5, 1, 3, 4, 4)).astype(np.float32)
    items = load_items([_npy(tmp_path, "d.npy", data)], [X])           # [N, *shape]
    assert len(items) == 5 and all(i[0].shape == X.shape for i in items)
    items = load_items([_npy(tmp_path, "e.npy", data[:, 0])], [X])     # [N, *shape[1:]]
    np.testing.assert_array_equal(items[3][0], data[3])
    folder = tmp_path / "set"
    folder.mkdir()
    for k in range(3):
        np.save(folder / f"item{k}.npy", data[k])
    items = load_items([str(folder)], [X])
    assert [float(i[0].sum()) for i in items] == [float(data[k].sum()) for k in range(3)]
    z = tmp_path / "two.npz"
    np.savez(z, x=data[:, 0], bias=np.ones((5, 4), np.int8))
    items = load_items([str(z)], [X, B])
    assert len(items) == 5 and items[2][1].dtype == np.int8


def test_npz_names_and_counts(tmp_path):
    z = tmp_path / "a.npz"
    np.savez(z, x=np.zeros((1, 3, 4, 4), np.float32))
    with pytest.raises(UsageError, match="no array for model input 'bias'"):
        load_items([str(z)], [X, B])
    np.savez(z, x=np.zeros((1, 3, 4, 4), np.float32), bias=np.zeros(4, np.int8), extra=np.zeros(1))
    with pytest.raises(UsageError, match=r"\['extra'\] that are not model inputs"):
        load_items([str(z)], [X, B])
    np.savez(z, x=np.zeros((2, 1, 3, 4, 4), np.float32), bias=np.zeros((3, 4), np.int8))
    with pytest.raises(UsageError, match="different numbers of items"):
        load_items([str(z)], [X, B])
    with pytest.raises(UsageError, match="takes 2 input"):
        load_items([_npy(tmp_path, "x.npy", np.zeros((1, 3, 4, 4), np.float32))] * 3, [X, B])
    with pytest.raises(UsageError, match="does not exist"):
        load_items([str(tmp_path / "nope.npy")], [X])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="holds no .npy"):
        load_items([str(tmp_path / "empty")], [X])
