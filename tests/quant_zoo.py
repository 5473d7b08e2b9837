"""int8 QDQ test models built in code (what onnxruntime's quantize_static writes, in miniature).

Every model takes a float input, quantizes it (QuantizeLinear), runs Conv/Gemm/MatMul on
DequantizeLinear'd int8 activations and int8 symmetric weights (per-tensor or per-channel), with
int32 biases, ReLU/Clip before the QuantizeLinear, and dequantizes the output. ``QZOO`` maps a
name to a builder; ``fp32_twin(name)`` gives the same network in float32 (for size comparisons).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

IR_VERSION = 8


class QBuilder:
    """Grows a QDQ graph; ``float_mode`` builds the float twin with the same float weights."""

    def __init__(self, seed: int, float_mode: bool = False):
        self.r = np.random.default_rng(seed)
        self.nodes: list = []
        self.inits: list = []
        self.n = 0
        self.float_mode = float_mode

    def _name(self, base: str) -> str:
        self.n += 1
        return f"{base}{self.n}"

    def _init(self, base: str, arr) -> str:
        name = self._name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def q(self, x: str, scale: float, zp: int) -> str:
        """QuantizeLinear + DequantizeLinear of a float tensor (an activation)."""
        if self.float_mode:
            return x
        s, z = self._init("s", np.float32(scale)), self._init("z", np.int8(zp))
        xq, xd = self._name("q"), self._name("dq")
        self.nodes += [helper.make_node("QuantizeLinear", [x, s, z], [xq], name=self._name("Q")),
                       helper.make_node("DequantizeLinear", [xq, s, z], [xd],
                                        name=self._name("DQ"))]
        return xd

    def _weight(self, shape, axis: int, per_channel: bool) -> tuple[str, np.ndarray]:
        wf = (self.r.standard_normal(shape) / np.sqrt(np.prod(shape) / shape[axis])).astype(
            np.float32)
        red = tuple(i for i in range(len(shape)) if i != axis)
        amax = np.max(np.abs(wf), axis=red) if per_channel else np.array(np.max(np.abs(wf)))
        scale = (amax / 127.0).astype(np.float32)
        bshape = [1] * len(shape)
        bshape[axis] = -1
        wq = np.clip(np.round(wf / (scale.reshape(bshape) if per_channel else scale)),
                     -127, 127).astype(np.int8)
        deq = (wq.astype(np.float32) * (scale.reshape(bshape) if per_channel else scale))
        if self.float_mode:
            return self._init("w", deq.astype(np.float32)), scale
        wname = self._init("wq", wq)
        s = self._init("ws", scale)
        z = self._init("wz", np.zeros(scale.shape, np.int8))
        out = self._name("wd")
        self.nodes.append(helper.make_node("DequantizeLinear", [wname, s, z], [out],
                                           name=self._name("DQw"),
                                           **({"axis": axis} if per_channel else {})))
        return out, scale

    def _bias(self, n: int, x_scale: float, w_scale: np.ndarray) -> str:
        bs = (np.float32(x_scale) * np.broadcast_to(w_scale, (n,))).astype(np.float32)
        bq = self.r.integers(-300, 300, n).astype(np.int32)
        if self.float_mode:
            return self._init("b", (bq * bs).astype(np.float32))
        bname, s = self._init("bq", bq), self._init("bs", bs)
        z = self._init("bz", np.zeros(n, np.int32))
        out = self._name("bd")
        self.nodes.append(helper.make_node("DequantizeLinear", [bname, s, z], [out], axis=0,
                                           name=self._name("DQb")))
        return out

    def _act(self, y: str, act: str | None) -> str:
        if act == "relu":
            out = self._name("relu")
            self.nodes.append(helper.make_node("Relu", [y], [out], name=out))
            return out
        if act == "relu6":
            lo, hi, out = self._init("lo", np.float32(0)), self._init("hi", np.float32(6)), \
                self._name("clip")
            self.nodes.append(helper.make_node("Clip", [y, lo, hi], [out], name=out))
            return out
        return y

    def conv(self, x: str, cin: int, cout: int, k: int, x_scale: float, y_scale: float,
             y_zp: int, stride: int = 1, pad: int = 0, group: int = 1, act: str | None = None,
             per_channel: bool = True) -> str:
        w, ws = self._weight((cout, cin // group, k, k), 0, per_channel)
        b = self._bias(cout, x_scale, ws)
        y = self._name("conv")
        self.nodes.append(helper.make_node("Conv", [x, w, b], [y], name=y, group=group,
                                           kernel_shape=[k, k], strides=[stride, stride],
                                           pads=[pad] * 4))
        return self.q(self._act(y, act), y_scale, y_zp)

    def gemm(self, x: str, k: int, n: int, x_scale: float, y_scale: float, y_zp: int,
             act: str | None = None, per_channel: bool = False) -> str:
        w, ws = self._weight((n, k), 0, per_channel)
        b = self._bias(n, x_scale, ws)
        y = self._name("gemm")
        self.nodes.append(helper.make_node("Gemm", [x, w, b], [y], name=y, transB=1))
        return self.q(self._act(y, act), y_scale, y_zp)

    def matmul(self, x: str, k: int, n: int, y_scale: float, y_zp: int,
               per_channel: bool = True) -> str:
        w, _ = self._weight((k, n), 1, per_channel)
        y = self._name("matmul")
        self.nodes.append(helper.make_node("MatMul", [x, w], [y], name=y))
        return self.q(y, y_scale, y_zp)

    def op(self, op_type: str, inputs: list[str], **attrs) -> str:
        y = self._name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [y], name=y, **attrs))
        return y

    def model(self, name: str, x_shape, out: str, out_shape, opset: int = 13) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
            [helper.make_tensor_value_info(out, TensorProto.FLOAT, out_shape)],
            initializer=self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              ir_version=IR_VERSION, producer_name="pemesh-quant-zoo")
        onnx.checker.check_model(m)
        return m


def q_conv(float_mode: bool = False) -> onnx.ModelProto:
    """int8 Conv 3→16, 3x3, pad 1, per-channel weights, ReLU; asymmetric activations."""
    b = QBuilder(11, float_mode)
    x = b.q("x", 0.02, 3)
    y = b.conv(x, 3, 16, 3, 0.02, 0.05, -20, pad=1, act="relu")
    return b.model("q_conv", [1, 3, 12, 12], y, [1, 16, 12, 12])


def q_conv_odd(float_mode: bool = False) -> onnx.ModelProto:
    """int8 Conv 5→10 (channels not multiples of 4/16), stride 2, per-tensor weights, no act."""
    b = QBuilder(12, float_mode)
    x = b.q("x", 0.03, -7)
    y = b.conv(x, 5, 10, 3, 0.03, 0.04, 5, stride=2, pad=1, per_channel=False)
    return b.model("q_conv_odd", [1, 5, 11, 11], y, [1, 10, 6, 6])


def q_depthwise(float_mode: bool = False) -> onnx.ModelProto:
    """int8 depthwise Conv (group 16), 3x3, pad 1, ReLU6, then a pointwise Conv 16→8."""
    b = QBuilder(13, float_mode)
    x = b.q("x", 0.02, 0)
    y = b.conv(x, 16, 16, 3, 0.02, 0.03, -128, pad=1, group=16, act="relu6")
    y = b.conv(y, 16, 8, 1, 0.03, 0.05, 2)
    return b.model("q_depthwise", [1, 16, 8, 8], y, [1, 8, 8, 8])


def q_dense(float_mode: bool = False) -> onnx.ModelProto:
    """int8 Gemm 64→32 (transB, ReLU) then Gemm 32→10 (per-channel)."""
    b = QBuilder(14, float_mode)
    x = b.q("x", 0.02, 1)
    y = b.gemm(x, 64, 32, 0.02, 0.04, -10, act="relu")
    y = b.gemm(y, 32, 10, 0.04, 0.06, 3, per_channel=True)
    return b.model("q_dense", [1, 64], y, [1, 10])


def q_matmul(float_mode: bool = False) -> onnx.ModelProto:
    """int8 batched MatMul [2,6,24] x const [24,20] (per-column scales)."""
    b = QBuilder(15, float_mode)
    x = b.q("x", 0.02, 0)
    y = b.matmul(x, 24, 20, 0.05, 0)
    return b.model("q_matmul", [2, 6, 24], y, [2, 6, 20])


def ds_cnn(float_mode: bool = False) -> onnx.ModelProto:
    """A DS-CNN-like keyword-spotting net on a 1x1x24x12 "spectrogram": conv 1→32 (stride 2),
    two depthwise-separable blocks, global average pool, a dense classifier (12 classes)."""
    b = QBuilder(21, float_mode)
    x = b.q("x", 0.02, 0)
    y = b.conv(x, 1, 32, 3, 0.02, 0.04, -128, stride=2, pad=1, act="relu")
    s = 0.04
    for _ in range(2):
        y = b.conv(y, 32, 32, 3, s, 0.04, -128, pad=1, group=32, act="relu")
        y = b.conv(y, 32, 32, 1, 0.04, 0.04, -128, act="relu")
    y = b.op("GlobalAveragePool", [y])
    y = b.op("Flatten", [y])
    y = b.q(y, 0.02, -128)
    y = b.gemm(y, 32, 12, 0.02, 0.1, 0)
    return b.model("ds_cnn", [1, 1, 24, 12], y, [1, 12])


def resnet8(float_mode: bool = False) -> onnx.ModelProto:
    """A ResNet-8-like image net (tinyMLPerf's, on a 1x3x24x24 input so the int8 build fits one
    qemu_cortex_m3 PE): conv 3→16, three residual stacks 16/32/64 (3x3 convs, 1x1 stride-2
    shortcuts, int8 Add+ReLU), global average pool, dense 64→10. ~78k weights: the per-channel
    overheads (bias, multiplier, shift: 9 B per output channel) are small next to the 3x3 convs.
    Its fp32 twin (~310 KiB of weights) does not fit the PE's 256 KiB flash."""
    b = QBuilder(22, float_mode)
    x = b.q("x", 0.02, 0)
    y = b.conv(x, 3, 16, 3, 0.02, 0.04, -128, pad=1, act="relu")
    cin = 16
    for cout, stride in ((16, 1), (32, 2), (64, 2)):
        t = b.conv(y, cin, cout, 3, 0.04, 0.04, -128, stride=stride, pad=1, act="relu")
        t = b.conv(t, cout, cout, 3, 0.04, 0.05, 0, pad=1)
        s = y if stride == 1 else b.conv(y, cin, cout, 1, 0.04, 0.05, 0, stride=stride)
        y = b.q(b.op("Relu", [b.op("Add", [s, t])]), 0.04, -128)
        cin = cout
    y = b.op("GlobalAveragePool", [y])
    y = b.op("Flatten", [y])
    y = b.q(y, 0.02, -128)
    y = b.gemm(y, 64, 10, 0.02, 0.1, 0)
    return b.model("resnet8", [1, 3, 24, 24], y, [1, 10])


QZOO: dict[str, Callable[..., onnx.ModelProto]] = {
    "q_conv": q_conv, "q_conv_odd": q_conv_odd, "q_depthwise": q_depthwise,
    "q_dense": q_dense, "q_matmul": q_matmul, "ds_cnn": ds_cnn,
}


#: bigger models for benchmarks/int8.py (not in QZOO: the per-model unit tests stay quick)
QZOO_BIG: dict[str, Callable[..., onnx.ModelProto]] = {"resnet8": resnet8}


def fp32_twin(name: str) -> onnx.ModelProto:
    """The float32 network with the same (dequantized) weights and no QDQ nodes."""
    return {**QZOO, **QZOO_BIG}[name](float_mode=True)
