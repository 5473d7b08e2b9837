"""Small test models built in code, with deterministic weights.

Every ONNX builder returns an ``onnx.ModelProto`` small enough for one 64 KiB-RAM / 256 KiB-flash
PE in fp32 (weights well under 150 KiB, every activation under 16 KiB) and quick under QEMU. The
opsets vary over 13..18. ``ZOO`` maps a stable name to its builder; ``input_shapes(model)`` gives
the shapes of a model's real inputs (initializers excluded).

Besides ONNX: ``tflite_dense_relu()`` writes a TFLite flatbuffer with the ``tflite`` package's
generated builder functions (no TensorFlow needed), and ``torch_small_cnn()`` /
``save_torch_export()`` make a ``torch.export`` program (needs torch).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

#: IR version written into every model: new enough for opset 18, old enough for any onnxruntime
IR_VERSION = 8

_F = TensorProto.FLOAT


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _w(rng: np.random.Generator, name: str, shape: tuple[int, ...], scale: float | None = None
       ) -> onnx.TensorProto:
    """A float32 initializer; default scale ~ 1/sqrt(fan_in) keeps activations O(1)."""
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else int(shape[0])
    s = scale if scale is not None else 1.0 / np.sqrt(max(fan_in, 1))
    arr = (rng.standard_normal(shape) * s).astype(np.float32)
    return numpy_helper.from_array(arr, name)


def _const(name: str, arr: Any, dtype: Any = np.float32) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(arr, dtype=dtype), name)


def _vi(name: str, shape: tuple[int | str, ...], elem: int = _F) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, list(shape))


def _model(name: str, nodes: list, inputs: list, outputs: list, inits: list, opset: int
           ) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              ir_version=IR_VERSION, producer_name="pemesh-model-zoo")
    onnx.checker.check_model(model)
    return model


# --- single-op models -----------------------------------------------------------------------

def conv2d_strided() -> onnx.ModelProto:
    """Conv 3→8, 3x3, stride 2, pad 1, with bias (opset 13)."""
    r = _rng(1)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv_s2",
                              kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])]
    return _model("conv2d_strided", nodes, [_vi("x", (1, 3, 16, 16))], [_vi("y", (1, 8, 8, 8))],
                  [_w(r, "w", (8, 3, 3, 3)), _w(r, "b", (8,), 0.1)], 13)


def conv2d_padded() -> onnx.ModelProto:
    """Conv 4→8, 5x5 with asymmetric padding, no bias (opset 14)."""
    r = _rng(2)
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="conv_pad",
                              kernel_shape=[5, 5], pads=[1, 2, 3, 2])]
    return _model("conv2d_padded", nodes, [_vi("x", (1, 4, 12, 12))], [_vi("y", (1, 8, 12, 12))],
                  [_w(r, "w", (8, 4, 5, 5))], 14)


def conv2d_depthwise() -> onnx.ModelProto:
    """Depthwise conv (group = channels = 8), 3x3, pad 1, then ReLU (opset 15)."""
    r = _rng(3)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv_dw", group=8,
                              kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["y"], name="relu")]
    return _model("conv2d_depthwise", nodes, [_vi("x", (1, 8, 12, 12))],
                  [_vi("y", (1, 8, 12, 12))], [_w(r, "w", (8, 1, 3, 3)), _w(r, "b", (8,), 0.1)], 15)


def conv2d_grouped() -> onnx.ModelProto:
    """Grouped conv (2 groups) 8→8, 3x3, no padding, dilation 1 (opset 16)."""
    r = _rng(4)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv_g2", group=2,
                              kernel_shape=[3, 3])]
    return _model("conv2d_grouped", nodes, [_vi("x", (1, 8, 10, 10))], [_vi("y", (1, 8, 8, 8))],
                  [_w(r, "w", (8, 4, 3, 3)), _w(r, "b", (8,), 0.1)], 16)


def dense_gemm() -> onnx.ModelProto:
    """Gemm 64→32 with transB and bias (opset 13)."""
    r = _rng(5)
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["y"], name="fc", transB=1)]
    return _model("dense_gemm", nodes, [_vi("x", (1, 64))], [_vi("y", (1, 32))],
                  [_w(r, "w", (32, 64)), _w(r, "b", (32,), 0.1)], 13)


def matmul_batched() -> onnx.ModelProto:
    """Batched MatMul of two inputs, [2,8,16] x [2,16,12] (opset 14)."""
    nodes = [helper.make_node("MatMul", ["a", "b"], ["y"], name="bmm")]
    return _model("matmul_batched", nodes, [_vi("a", (2, 8, 16)), _vi("b", (2, 16, 12))],
                  [_vi("y", (2, 8, 12))], [], 14)


def broadcast_add_mul() -> onnx.ModelProto:
    """(x + y) * c with y [1,4,1,1] (an input) and c [1,1,8,1] (a constant) (opset 15)."""
    r = _rng(6)
    nodes = [helper.make_node("Add", ["x", "y"], ["s"], name="add"),
             helper.make_node("Mul", ["s", "c"], ["z"], name="mul")]
    return _model("broadcast_add_mul", nodes, [_vi("x", (1, 4, 8, 8)), _vi("y", (1, 4, 1, 1))],
                  [_vi("z", (1, 4, 8, 8))], [_w(r, "c", (1, 1, 8, 1), 1.0)], 15)


def activations() -> onnx.ModelProto:
    """Relu, Sigmoid, Tanh and Clip of one input: four outputs, in that order (opset 13)."""
    nodes = [helper.make_node("Relu", ["x"], ["relu"], name="relu"),
             helper.make_node("Sigmoid", ["x"], ["sigmoid"], name="sigmoid"),
             helper.make_node("Tanh", ["x"], ["tanh"], name="tanh"),
             helper.make_node("Clip", ["x", "lo", "hi"], ["clip"], name="clip")]
    outs = [_vi(n, (1, 64)) for n in ("relu", "sigmoid", "tanh", "clip")]
    return _model("activations", nodes, [_vi("x", (1, 64))], outs,
                  [_const("lo", -0.5), _const("hi", 0.5)], 13)


def softmax() -> onnx.ModelProto:
    """Softmax over the last axis of [2,10] (opset 13)."""
    nodes = [helper.make_node("Softmax", ["x"], ["y"], name="softmax", axis=-1)]
    return _model("softmax", nodes, [_vi("x", (2, 10))], [_vi("y", (2, 10))], [], 13)


def pool_max_avg() -> onnx.ModelProto:
    """MaxPool 2x2/2 then AveragePool 3x3/1 pad 1 (count_include_pad=0) (opset 16)."""
    nodes = [helper.make_node("MaxPool", ["x"], ["m"], name="maxpool", kernel_shape=[2, 2],
                              strides=[2, 2]),
             helper.make_node("AveragePool", ["m"], ["y"], name="avgpool", kernel_shape=[3, 3],
                              strides=[1, 1], pads=[1, 1, 1, 1], count_include_pad=0)]
    return _model("pool_max_avg", nodes, [_vi("x", (1, 4, 16, 16))], [_vi("y", (1, 4, 8, 8))],
                  [], 16)


def global_pool() -> onnx.ModelProto:
    """GlobalAveragePool and GlobalMaxPool: two outputs (opset 17)."""
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["avg"], name="gap"),
             helper.make_node("GlobalMaxPool", ["x"], ["max"], name="gmp")]
    return _model("global_pool", nodes, [_vi("x", (1, 8, 8, 8))],
                  [_vi("avg", (1, 8, 1, 1)), _vi("max", (1, 8, 1, 1))], [], 17)


def batchnorm() -> onnx.ModelProto:
    """Inference BatchNormalization over 6 channels (opset 15)."""
    r = _rng(7)
    inits = [_const("scale", 1.0 + 0.2 * r.standard_normal(6)),
             _const("bias", 0.1 * r.standard_normal(6)),
             _const("mean", 0.1 * r.standard_normal(6)),
             _const("var", 0.5 + r.random(6))]
    nodes = [helper.make_node("BatchNormalization", ["x", "scale", "bias", "mean", "var"], ["y"],
                              name="bn", epsilon=1e-5)]
    return _model("batchnorm", nodes, [_vi("x", (1, 6, 8, 8))], [_vi("y", (1, 6, 8, 8))],
                  inits, 15)


def concat() -> onnx.ModelProto:
    """Concat of two inputs and a constant along channels (opset 13)."""
    r = _rng(8)
    nodes = [helper.make_node("Concat", ["a", "b", "c"], ["y"], name="concat", axis=1)]
    return _model("concat", nodes, [_vi("a", (1, 4, 6, 6)), _vi("b", (1, 2, 6, 6))],
                  [_vi("y", (1, 7, 6, 6))], [_w(r, "c", (1, 1, 6, 6), 1.0)], 13)


def reshape_flatten_transpose() -> onnx.ModelProto:
    """Transpose NCHW→NHWC, Reshape to [1,36,4], Flatten to [1,144] (opset 14)."""
    nodes = [helper.make_node("Transpose", ["x"], ["t"], name="nhwc", perm=[0, 2, 3, 1]),
             helper.make_node("Reshape", ["t", "shape"], ["r"], name="reshape"),
             helper.make_node("Flatten", ["r"], ["y"], name="flatten", axis=1)]
    return _model("reshape_flatten_transpose", nodes, [_vi("x", (1, 4, 6, 6))],
                  [_vi("y", (1, 144))], [_const("shape", [1, 36, 4], np.int64)], 14)


def layernorm() -> onnx.ModelProto:
    """LayerNormalization over the last axis of [1,8,32] (opset 17)."""
    r = _rng(9)
    nodes = [helper.make_node("LayerNormalization", ["x", "gamma", "beta"], ["y"], name="ln",
                              axis=-1, epsilon=1e-5)]
    return _model("layernorm", nodes, [_vi("x", (1, 8, 32))], [_vi("y", (1, 8, 32))],
                  [_const("gamma", 1.0 + 0.1 * r.standard_normal(32)),
                   _const("beta", 0.1 * r.standard_normal(32))], 17)


def reduce_mean() -> onnx.ModelProto:
    """ReduceMean with axes as an input (the opset-18 form), keepdims=0 (opset 18)."""
    nodes = [helper.make_node("ReduceMean", ["x", "axes"], ["y"], name="mean", keepdims=0)]
    return _model("reduce_mean", nodes, [_vi("x", (1, 4, 8, 8))], [_vi("y", (1, 4))],
                  [_const("axes", [2, 3], np.int64)], 18)


# --- small composite nets -------------------------------------------------------------------

def tiny_cnn() -> onnx.ModelProto:
    """A tiny image classifier: 2x (conv3x3 + relu + maxpool) + flatten + gemm + softmax.

    Input ``input`` [1,3,16,16] fp32, output ``probs`` [1,10]; about 7 KB of weights (opset 13).
    """
    r = _rng(10)
    inits = [_w(r, "conv1_w", (4, 3, 3, 3)), _w(r, "conv1_b", (4,), 0.1),
             _w(r, "conv2_w", (8, 4, 3, 3)), _w(r, "conv2_b", (8,), 0.1),
             _w(r, "fc_w", (10, 128)), _w(r, "fc_b", (10,), 0.1)]
    nodes = [
        helper.make_node("Conv", ["input", "conv1_w", "conv1_b"], ["c1"], name="conv1",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2],
                         strides=[2, 2]),
        helper.make_node("Conv", ["p1", "conv2_w", "conv2_b"], ["c2"], name="conv2",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("MaxPool", ["r2"], ["p2"], name="pool2", kernel_shape=[2, 2],
                         strides=[2, 2]),
        helper.make_node("Flatten", ["p2"], ["f"], name="flatten", axis=1),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["logits"], name="fc", transB=1),
        helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=-1),
    ]
    return _model("tiny_cnn", nodes, [_vi("input", (1, 3, 16, 16))], [_vi("probs", (1, 10))],
                  inits, 13)


def mlp() -> onnx.ModelProto:
    """An MLP 32→64→32→10 with ReLUs, MatMul+Add form (opset 18); about 17 KB of weights."""
    r = _rng(11)
    dims = [32, 64, 32, 10]
    nodes, inits = [], []
    cur = "x"
    for i in range(3):
        inits += [_w(r, f"w{i}", (dims[i], dims[i + 1]), 1.0 / np.sqrt(dims[i])),
                  _w(r, f"b{i}", (dims[i + 1],), 0.1)]
        nodes += [helper.make_node("MatMul", [cur, f"w{i}"], [f"mm{i}"], name=f"fc{i}_matmul"),
                  helper.make_node("Add", [f"mm{i}", f"b{i}"], [f"a{i}"], name=f"fc{i}_add")]
        cur = f"a{i}"
        if i < 2:
            nodes.append(helper.make_node("Relu", [cur], [f"h{i}"], name=f"relu{i}"))
            cur = f"h{i}"
    nodes.append(helper.make_node("Identity", [cur], ["y"], name="out"))
    return _model("mlp", nodes, [_vi("x", (1, 32))], [_vi("y", (1, 10))], inits, 18)


def conv_bn_relu_pool() -> onnx.ModelProto:
    """Conv + BatchNorm + Relu + GlobalAveragePool + Reshape + Gemm (opset 16)."""
    r = _rng(12)
    inits = [_w(r, "w", (8, 2, 3, 3)),
             _const("bn_s", 1.0 + 0.1 * r.standard_normal(8)),
             _const("bn_b", 0.1 * r.standard_normal(8)),
             _const("bn_m", 0.1 * r.standard_normal(8)),
             _const("bn_v", 0.5 + r.random(8)),
             _const("shape", [1, 8], np.int64),
             _w(r, "fc_w", (8, 4)), _w(r, "fc_b", (4,), 0.1)]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[3, 3],
                         strides=[1, 1], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "bn_s", "bn_b", "bn_m", "bn_v"], ["n"],
                         name="bn"),
        helper.make_node("Relu", ["n"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["g"], name="gap"),
        helper.make_node("Reshape", ["g", "shape"], ["f"], name="reshape"),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["y"], name="fc"),
    ]
    return _model("conv_bn_relu_pool", nodes, [_vi("x", (1, 2, 12, 12))], [_vi("y", (1, 4))],
                  inits, 16)


ZOO: dict[str, Callable[[], onnx.ModelProto]] = {
    "conv2d_strided": conv2d_strided,
    "conv2d_padded": conv2d_padded,
    "conv2d_depthwise": conv2d_depthwise,
    "conv2d_grouped": conv2d_grouped,
    "dense_gemm": dense_gemm,
    "matmul_batched": matmul_batched,
    "broadcast_add_mul": broadcast_add_mul,
    "activations": activations,
    "softmax": softmax,
    "pool_max_avg": pool_max_avg,
    "global_pool": global_pool,
    "batchnorm": batchnorm,
    "concat": concat,
    "reshape_flatten_transpose": reshape_flatten_transpose,
    "layernorm": layernorm,
    "reduce_mean": reduce_mean,
    "tiny_cnn": tiny_cnn,
    "mlp": mlp,
    "conv_bn_relu_pool": conv_bn_relu_pool,
}


def input_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """Static shapes of a model's real inputs (graph inputs that are not initializers), in order."""
    inits = {t.name for t in model.graph.initializer}
    out: dict[str, tuple[int, ...]] = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        out[vi.name] = tuple(int(d.dim_value) for d in vi.type.tensor_type.shape.dim)
    return out


def save(model: onnx.ModelProto, path: Path | str) -> Path:
    """Write ``model`` to ``path`` (deterministic bytes) and return the path."""
    path = Path(path)
    path.write_bytes(model.SerializeToString(deterministic=True))
    return path


# --- TFLite (no TensorFlow: the flatbuffer is written with the tflite package's builders) -----

def tflite_dense_relu() -> bytes:
    """A TFLite model: FULLY_CONNECTED 16→8 (with bias) + RELU, fp32, input ``x`` [1,16].

    Returns the flatbuffer bytes. Weights are deterministic (seed 13).
    """
    from tests.tflite_writer import Op, Tensor, serialize

    r = _rng(13)
    w = (r.standard_normal((8, 16)) / 4.0).astype(np.float32)   # TFLite FC weights: [out, in]
    b = (0.1 * r.standard_normal(8)).astype(np.float32)
    tensors = [Tensor("x", [1, 16], "FLOAT32"), Tensor("fc_w", [8, 16], "FLOAT32", w.tobytes()),
               Tensor("fc_b", [8], "FLOAT32", b.tobytes()), Tensor("fc_out", [1, 8], "FLOAT32"),
               Tensor("y", [1, 8], "FLOAT32")]
    ops = [Op("FULLY_CONNECTED", [0, 1, 2], [3], ("FullyConnectedOptions", {"act": 0})),
           Op("RELU", [3], [4])]
    return serialize(tensors, ops, [0], [4], "pemesh model zoo: dense+relu")


# --- torch.export ----------------------------------------------------------------------------

def torch_small_cnn() -> tuple[Any, tuple[Any, ...]]:
    """A small ``torch.nn.Module`` (conv + relu + pool + linear) and an example input tuple.

    Weights are deterministic (``torch.manual_seed(14)``). Needs torch.
    """
    import torch
    from torch import nn

    class SmallCnn(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 4, 3, padding=1)
            self.pool = nn.MaxPool2d(2)
            self.fc = nn.Linear(4 * 4 * 4, 6)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.pool(torch.relu(self.conv(x)))
            return torch.sigmoid(self.fc(torch.flatten(y, 1)))

    torch.manual_seed(14)
    module = SmallCnn().eval()
    example = (torch.randn(1, 2, 8, 8),)
    return module, example


def save_torch_export(path: Path | str) -> Path:
    """Export ``torch_small_cnn`` with ``torch.export`` and save it as a ``.pt2`` file."""
    import torch

    module, example = torch_small_cnn()
    with torch.no_grad():
        program = torch.export.export(module, example)
    path = Path(path)
    torch.export.save(program, str(path))
    return path
