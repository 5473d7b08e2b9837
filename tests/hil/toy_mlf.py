"""A tiny hand-written Model Library Format (v7) tar, for Project API tests without TVM.

Model ``toy``: inputs ``b`` float32[2,2] and ``a`` int8[3] (header order b, a — not sorted),
outputs ``y = b + 1`` float32[2,2] and ``z = 2 * a`` int8[3]. :func:`toy_reference` computes the
expected outputs with numpy.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np

HEADER = """\
#ifndef TVMGEN_TOY_H_
#define TVMGEN_TOY_H_
#include <stdint.h>
#define TVMGEN_TOY_B_SIZE 16
#define TVMGEN_TOY_A_SIZE 3
#define TVMGEN_TOY_Y_SIZE 16
#define TVMGEN_TOY_Z_SIZE 3
struct tvmgen_toy_inputs {
  void* b;
  void* a;
};
struct tvmgen_toy_outputs {
  void* y;
  void* z;
};
int32_t tvmgen_toy_run(struct tvmgen_toy_inputs* inputs, struct tvmgen_toy_outputs* outputs);
#endif
"""

SOURCE = """\
#include <stdint.h>
#include "tvmgen_toy.h"
int32_t tvmgen_toy_run(struct tvmgen_toy_inputs* inputs, struct tvmgen_toy_outputs* outputs) {
  const float* b = (const float*)inputs->b;
  const int8_t* a = (const int8_t*)inputs->a;
  float* y = (float*)outputs->y;
  int8_t* z = (int8_t*)outputs->z;
  for (int32_t i = 0; i < 4; ++i) { y[i] = b[i] + 1.0f; }
  for (int32_t i = 0; i < 3; ++i) { z[i] = (int8_t)(a[i] * 2); }
  return 0;
}
"""


def toy_metadata(with_shape: bool = True) -> dict:
    def t(size, dtype, shape):
        d = {"size": size, "dtype": dtype}
        if with_shape:
            d["shape"] = shape
        return d
    return {"version": 7, "modules": {"toy": {
        "model_name": "toy", "export_datetime": "1970-01-01 00:00:00Z", "target": ["c"],
        "executors": ["aot"], "style": "full-model",
        "memory": {"functions": {"main": [{
            "device": 1, "workspace_size_bytes": 0, "constants_size_bytes": 0,
            "io_size_bytes": 38,
            "inputs": {"a": t(3, "int8", [3]), "b": t(16, "float32", [2, 2])},
            "outputs": {"y": t(16, "float32", [2, 2]), "z": t(3, "int8", [3])}}],
            "operator_functions": []}}}}}


def make_toy_mlf(path: Path, *, with_shape: bool = True) -> Path:
    """Write the toy MLF tar to ``path`` and return it."""
    members = {
        "metadata.json": json.dumps(toy_metadata(with_shape), indent=2, sort_keys=True),
        "codegen/host/include/tvmgen_toy.h": HEADER,
        "codegen/host/src/toy_lib0.c": SOURCE,
    }
    path = Path(path)
    with tarfile.open(path, "w") as tar:
        for name, text in sorted(members.items()):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def toy_inputs(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((2, 2)).astype("float32"),
            rng.integers(-60, 60, size=3).astype("int8")]


def toy_reference(inputs: list[np.ndarray]) -> list[np.ndarray]:
    b, a = inputs
    return [b + np.float32(1.0), (a.astype(np.int16) * 2).astype(np.int8)]
