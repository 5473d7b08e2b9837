"""Models of tens of MiB for the 7,296-PE spinnaker2_board (issue 10, "big models"), built with
onnx.helper as an exporter writes them, with deterministic weights.

* ``big_mlp()``: four 1024×1024 Gemm (transB=1, as torch.onnx.export writes nn.Linear) with
  ReLUs between them — 16 MiB of fp32 weights.
* ``transformer_stack()``: four pre-LayerNorm transformer blocks, D=256, 4 heads, MLP 1024,
  T tokens: LayerNormalization, MatMul+Add projections, Reshape/Transpose to heads, scaled
  MatMul, Softmax, MatMul, Transpose/Reshape back, output projection, residual Adds, MLP with
  Relu — 12 MiB of fp32 weights.
* ``small_mlp()`` / ``small_transformer()``: the same graphs at sizes a test on a few PEs of a
  tiny PE kind can run quickly.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

_F = TensorProto.FLOAT


def _arr(rng, shape, fan_in):
    return (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)


def _finish(name, nodes, inits, x_shape, y_shape) -> onnx.ModelProto:
    g = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", _F, list(x_shape))],
                          [helper.make_tensor_value_info("y", _F, list(y_shape))], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8,
                              producer_name="pemesh-bigmodel-zoo")
    onnx.checker.check_model(model)
    return model


def mlp(width: int = 1024, layers: int = 4, seed: int = 10) -> onnx.ModelProto:
    """``layers`` Gemm of ``width``×``width`` (nn.Linear export form) with ReLUs between."""
    rng = np.random.default_rng(seed)
    nodes, inits, prev = [], [], "x"
    for i in range(layers):
        inits += [numpy_helper.from_array(_arr(rng, (width, width), width), f"fc{i}.weight"),
                  numpy_helper.from_array((rng.standard_normal(width) * 0.1).astype(np.float32),
                                          f"fc{i}.bias")]
        out = "y" if i == layers - 1 else f"g{i}"
        nodes.append(helper.make_node("Gemm", [prev, f"fc{i}.weight", f"fc{i}.bias"], [out],
                                      transB=1, name=f"/fc{i}/Gemm"))
        if i < layers - 1:
            nodes.append(helper.make_node("Relu", [out], [f"h{i}"], name=f"/act{i}/Relu"))
            prev = f"h{i}"
    return _finish(f"mlp{width}x{layers}", nodes, inits, (1, width), (1, width))


def big_mlp() -> onnx.ModelProto:
    """16 MiB: four 1024×1024 Gemm."""
    return mlp(1024, 4)


def transformer(d: int = 256, heads: int = 4, hidden: int = 1024, blocks: int = 4,
                tokens: int = 8, seed: int = 20) -> onnx.ModelProto:
    """``blocks`` pre-LN transformer encoder blocks on ``[1, tokens, d]``."""
    rng = np.random.default_rng(seed)
    dh = d // heads
    nodes, inits = [], []

    def const(name, arr, dtype=np.float32):
        inits.append(numpy_helper.from_array(np.asarray(arr, dtype=dtype), name))
        return name

    def node(op, ins, out, **kw):
        nodes.append(helper.make_node(op, ins, [out], name=f"/{out}/{op}", **kw))
        return out

    def linear(x, name, k, n):
        w = const(f"{name}.weight_t", _arr(rng, (k, n), k))
        b = const(f"{name}.bias", rng.standard_normal(n) * 0.05)
        return node("Add", [node("MatMul", [x, w], f"{name}_mm"), b], f"{name}_out")

    heads_shape = const("heads_shape", [1, tokens, heads, dh], np.int64)
    flat_shape = const("flat_shape", [1, tokens, d], np.int64)
    scale = const("scale", np.float32(1.0 / np.sqrt(dh)))
    x = "x"
    for b in range(blocks):
        p = f"b{b}"
        g1 = const(f"{p}.ln1.weight", 1.0 + 0.1 * rng.standard_normal(d))
        b1 = const(f"{p}.ln1.bias", 0.1 * rng.standard_normal(d))
        ln1 = node("LayerNormalization", [x, g1, b1], f"{p}_ln1", axis=-1, epsilon=1e-5)
        q = node("Reshape", [linear(ln1, f"{p}.q", d, d), heads_shape], f"{p}_q4")
        k = node("Reshape", [linear(ln1, f"{p}.k", d, d), heads_shape], f"{p}_k4")
        v = node("Reshape", [linear(ln1, f"{p}.v", d, d), heads_shape], f"{p}_v4")
        q = node("Transpose", [q], f"{p}_qh", perm=[0, 2, 1, 3])
        k = node("Transpose", [k], f"{p}_kh", perm=[0, 2, 3, 1])
        v = node("Transpose", [v], f"{p}_vh", perm=[0, 2, 1, 3])
        s = node("Mul", [node("MatMul", [q, k], f"{p}_qk"), scale], f"{p}_scores")
        a = node("MatMul", [node("Softmax", [s], f"{p}_probs", axis=-1), v], f"{p}_ctx")
        a = node("Reshape", [node("Transpose", [a], f"{p}_ctx_t", perm=[0, 2, 1, 3]), flat_shape],
                 f"{p}_ctx_flat")
        x = node("Add", [x, linear(a, f"{p}.o", d, d)], f"{p}_res1")
        g2 = const(f"{p}.ln2.weight", 1.0 + 0.1 * rng.standard_normal(d))
        b2 = const(f"{p}.ln2.bias", 0.1 * rng.standard_normal(d))
        ln2 = node("LayerNormalization", [x, g2, b2], f"{p}_ln2", axis=-1, epsilon=1e-5)
        h = node("Relu", [linear(ln2, f"{p}.fc1", d, hidden)], f"{p}_act")
        x = node("Add", [x, linear(h, f"{p}.fc2", hidden, d)],
                 "y" if b == blocks - 1 else f"{p}_res2")
    return _finish(f"transformer{d}x{blocks}", nodes, inits, (1, tokens, d), (1, tokens, d))


def transformer_stack() -> onnx.ModelProto:
    """12 MiB: four blocks, D=256, 4 heads, MLP 1024, 8 tokens."""
    return transformer()


def weight_bytes(model: onnx.ModelProto) -> int:
    return sum(numpy_helper.to_array(t).nbytes for t in model.graph.initializer
               if t.data_type == _F)
