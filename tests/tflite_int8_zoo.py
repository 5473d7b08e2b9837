"""Full-integer (int8) TFLite test models, written with the ``tflite`` package's flatbuffer
builders (no TensorFlow): what the TFLite converter's full-integer quantization writes, in
miniature.

Conventions of the TFLite int8 spec: activations int8 per-tensor (any zero point); CONV_2D weights
``[O, KH, KW, I]`` int8 symmetric per-channel (quantized_dimension 0); DEPTHWISE_CONV_2D weights
``[1, KH, KW, C]`` per-channel on dimension 3; FULLY_CONNECTED weights ``[N, K]`` per-tensor (or
per-channel); biases int32 with scale ``x_scale * w_scale[o]``, zero point 0; fused RELU/RELU6.
Activation scales are calibrated by a float forward pass in numpy on seeded random inputs.

``TFZOO`` maps a name to a builder returning the flatbuffer bytes; ``make(name, tmp)`` writes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from tests.tflite_writer import Op, Tensor, serialize

NONE, RELU, RELU6 = 0, 1, 3          # tflite.ActivationFunctionType
SAME, VALID = 0, 1                   # tflite.Padding


@dataclass
class TFLiteInt8Builder:
    """Grows a TFLite graph of int8 ops; keeps the float activations of a calibration batch."""

    seed: int
    tensors: list[Tensor] = field(default_factory=list)
    ops: list[Op] = field(default_factory=list)

    def __post_init__(self):
        self.r = np.random.default_rng(self.seed)
        self.model_input = 0

    def tensor(self, name, shape, ttype, data=None, scale=None, zp=None, qdim=0) -> int:
        self.tensors.append(Tensor(name, list(shape), ttype, data,
                                    None if scale is None else [float(s) for s in scale],
                                    None if zp is None else [int(z) for z in zp], qdim))
        return len(self.tensors) - 1

    # --- float helpers (calibration) ----------------------------------------------------------
    @staticmethod
    def _pads(size: int, k: int, s: int, padding: int) -> tuple[int, int, int]:
        if padding == VALID:
            return (size - k) // s + 1, 0, 0
        out = -(-size // s)
        total = max((out - 1) * s + k - size, 0)
        return out, total // 2, total - total // 2

    def _conv_f(self, x, w, stride, padding, depthwise):
        n, h, wd, c = x.shape
        kh, kw = w.shape[1], w.shape[2]
        oh, pt, pb = self._pads(h, kh, stride, padding)
        ow, pl, pr = self._pads(wd, kw, stride, padding)
        xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
        out = np.zeros((n, oh, ow, w.shape[3] if depthwise else w.shape[0]))
        for ky in range(kh):
            for kx in range(kw):
                patch = xp[:, ky:ky + stride * oh:stride, kx:kx + stride * ow:stride, :]
                out += patch * w[0, ky, kx, :] if depthwise else patch @ w[:, ky, kx, :].T
        return out

    @staticmethod
    def _act_f(y, act):
        if act == RELU:
            return np.maximum(y, 0)
        if act == RELU6:
            return np.clip(y, 0, 6)
        return y

    # --- quantization --------------------------------------------------------------------------
    def _act_params(self, y: np.ndarray, act: int, zp_shift: int = 0) -> tuple[float, int]:
        """(scale, zero point) covering the calibration range of ``y``."""
        lo, hi = min(float(y.min()), 0.0), max(float(y.max()), 0.0)
        if act != NONE:
            lo = 0.0
        scale = max(hi - lo, 1e-3) / 255.0
        zp = int(np.clip(round(-128 - lo / scale) + zp_shift, -128, 127))
        return scale, zp

    def _weights(self, shape, axis: int, per_channel: bool):
        wf = self.r.standard_normal(shape) / np.sqrt(np.prod(shape) / shape[axis])
        red = tuple(i for i in range(len(shape)) if i != axis)
        amax = np.max(np.abs(wf), axis=red) if per_channel else np.array([np.max(np.abs(wf))])
        scale = (amax / 127.0).astype(np.float32)
        bshape = [1] * len(shape)
        bshape[axis] = -1
        sb = scale.reshape(bshape) if per_channel else scale[0]
        wq = np.clip(np.round(wf / sb), -127, 127).astype(np.int8)
        return wq, scale, wq.astype(np.float64) * sb

    def input(self, name: str, shape, x_scale: float, x_zp: int, int8_io: bool):
        """The model input (float + QUANTIZE, or int8) and its calibration batch."""
        xf = self.r.uniform(-1.0, 1.0, (8,) + tuple(shape[1:]))
        if int8_io:
            self.model_input = self.tensor(name, shape, "INT8", scale=[x_scale], zp=[x_zp])
            return self.model_input, xf, (x_scale, x_zp)
        xi = self.model_input = self.tensor(name, shape, "FLOAT32")
        xq = self.tensor(f"{name}_q", shape, "INT8", scale=[x_scale], zp=[x_zp])
        self.ops.append(Op("QUANTIZE", [xi], [xq]))
        return xq, xf, (x_scale, x_zp)

    def conv(self, x: int, xf, xq, cout: int, k: int, stride=1, padding=SAME, act=NONE,
             depthwise=False, per_channel=True, zp_shift=0, wtype="INT8"):
        """CONV_2D / DEPTHWISE_CONV_2D (int8, per-channel weights, int32 bias, fused act)."""
        sx, _ = xq
        cin = self.tensors[x].shape[3]
        wshape = (1, k, k, cin) if depthwise else (cout, k, k, cin)
        wq, ws, wf = self._weights(wshape, 3 if depthwise else 0, per_channel)
        nout = cin if depthwise else cout
        bscale = (np.float32(sx) * np.broadcast_to(ws, (nout,))).astype(np.float32)
        bq = self.r.integers(-400, 400, nout).astype(np.int32)
        y = self._act_f(self._conv_f(xf, wf, stride, padding, depthwise) + bq * bscale, act)
        sy, zy = self._act_params(y, act, zp_shift)
        n = len(self.ops)
        w = self.tensor(f"w{n}", wshape, wtype, wq.tobytes(), ws, [0] * ws.size,
                        3 if depthwise else 0)
        b = self.tensor(f"b{n}", [nout], "INT32", bq.tobytes(), bscale, [0] * nout, 0)
        out = self.tensor(f"{'dw' if depthwise else 'conv'}{n}", [1] + list(y.shape[1:]), "INT8",
                          scale=[sy], zp=[zy])
        opts = dict(padding=padding, stride_w=stride, stride_h=stride, act=act)
        if depthwise:
            opts["depth_multiplier"] = 1
        self.ops.append(Op("DEPTHWISE_CONV_2D" if depthwise else "CONV_2D", [x, w, b], [out],
                            ("DepthwiseConv2DOptions" if depthwise else "Conv2DOptions", opts)))
        return out, y, (sy, zy)

    def flatten(self, x: int, xf, xq):
        shape = [1, int(np.prod(self.tensors[x].shape[1:]))]
        s = self.tensor(f"shape{len(self.ops)}", [2], "INT32",
                        np.array(shape, np.int32).tobytes())
        out = self.tensor(f"flat{len(self.ops)}", shape, "INT8", scale=[xq[0]], zp=[xq[1]])
        self.ops.append(Op("RESHAPE", [x, s], [out], ("ReshapeOptions", dict(new_shape=shape))))
        return out, xf.reshape(xf.shape[0], -1), xq

    def dense(self, x: int, xf, xq, nout: int, act=NONE, per_channel=False):
        """FULLY_CONNECTED (int8 [N, K] weights, int32 bias, fused act)."""
        sx, _ = xq
        k = self.tensors[x].shape[-1]
        wq, ws, wf = self._weights((nout, k), 0, per_channel)
        bscale = (np.float32(sx) * np.broadcast_to(ws, (nout,))).astype(np.float32)
        bq = self.r.integers(-400, 400, nout).astype(np.int32)
        y = self._act_f(xf @ wf.T + bq * bscale, act)
        sy, zy = self._act_params(y, act)
        n = len(self.ops)
        w = self.tensor(f"fc_w{n}", [nout, k], "INT8", wq.tobytes(), ws, [0] * ws.size, 0)
        b = self.tensor(f"fc_b{n}", [nout], "INT32", bq.tobytes(), bscale if per_channel
                        else bscale[:1], [0] * (nout if per_channel else 1), 0)
        out = self.tensor(f"fc{n}", [1, nout], "INT8", scale=[sy], zp=[zy])
        self.ops.append(Op("FULLY_CONNECTED", [x, w, b], [out],
                            ("FullyConnectedOptions", dict(act=act))))
        return out, y, (sy, zy)

    def output(self, x: int, int8_io: bool) -> int:
        if int8_io:
            return x
        out = self.tensor("y", self.tensors[x].shape, "FLOAT32")
        self.ops.append(Op("DEQUANTIZE", [x], [out]))
        return out

    # --- serialization -------------------------------------------------------------------------
    def finish(self, inputs: list[int], outputs: list[int], description: str) -> bytes:
        return serialize(self.tensors, self.ops, inputs, outputs, description)


# --- the models ---------------------------------------------------------------------------------

def tfl_small(int8_io: bool = False) -> bytes:
    """conv 3→16 (3x3, stride 2, SAME, RELU, per-channel) → depthwise 3x3 (RELU6, per-channel)
    → conv 1x1 16→8 (no act, asymmetric output) → flatten → FC 128→10 (per-tensor)."""
    b = TFLiteInt8Builder(31)
    x, xf, xq = b.input("x", [1, 8, 8, 3], 2.0 / 255, -1, int8_io)
    x, xf, xq = b.conv(x, xf, xq, 16, 3, stride=2, act=RELU)
    x, xf, xq = b.conv(x, xf, xq, 16, 3, act=RELU6, depthwise=True)
    x, xf, xq = b.conv(x, xf, xq, 8, 1, zp_shift=9)
    x, xf, xq = b.flatten(x, xf, xq)
    x, xf, xq = b.dense(x, xf, xq, 10)
    return b.finish([b.model_input], [b.output(x, int8_io)], "pemesh tflite int8 zoo: small")


def tfl_small_int8_io() -> bytes:
    """:func:`tfl_small` with int8 input and output tensors (no QUANTIZE/DEQUANTIZE)."""
    return tfl_small(int8_io=True)


def tfl_dense(int8_io: bool = False) -> bytes:
    """FC 32→24 (RELU, per-channel weights) → FC 24→6 (per-tensor)."""
    b = TFLiteInt8Builder(32)
    x, xf, xq = b.input("x", [1, 32], 1.0 / 128, 3, int8_io)
    x, xf, xq = b.dense(x, xf, xq, 24, act=RELU, per_channel=True)
    x, xf, xq = b.dense(x, xf, xq, 6)
    return b.finish([b.model_input], [b.output(x, int8_io)], "pemesh tflite int8 zoo: dense")


def tfl_bad(kind: str) -> bytes:
    """A one-conv model with an unsupported scheme: ``int16`` activations or ``asym`` weights."""
    b = TFLiteInt8Builder(33)
    x, xf, xq = b.input("x", [1, 4, 4, 2], 1.0 / 128, 0, False)
    x, xf, xq = b.conv(x, xf, xq, 4, 1, per_channel=False)
    if kind == "int16":
        for t in b.tensors:
            if t.ttype == "INT8" and t.data is None:
                t.ttype, t.zero_point = "INT16", [0]
            if t.ttype == "INT32" and t.data:
                t.ttype = "INT64"
                t.data = np.frombuffer(t.data, np.int32).astype(np.int64).tobytes()
    elif kind == "asym":
        w = next(t for t in b.tensors if t.name.startswith("w"))
        w.zero_point = [5]
    return b.finish([0], [b.output(x, False)], f"pemesh tflite int8 zoo: bad {kind}")


TFZOO: dict[str, Callable[[], bytes]] = {
    "tfl_small": tfl_small, "tfl_small_int8_io": tfl_small_int8_io, "tfl_dense": tfl_dense,
}


def make(name: str, folder: Path) -> Path:
    """Write model ``name`` of :data:`TFZOO` as ``folder/name.tflite``."""
    path = Path(folder) / f"{name}.tflite"
    path.write_bytes(TFZOO[name]())
    return path


def out_scale(buf: bytes) -> float:
    """Scale of the int8 tensor that feeds the model output (one quantization step)."""
    import tflite

    m = tflite.Model.GetRootAsModel(buf, 0)
    sg = m.Subgraphs(0)
    out = int(sg.OutputsAsNumpy()[0])
    for i in range(sg.OperatorsLength()):
        op = sg.Operators(i)
        q = sg.Tensors(out).Quantization()
        if int(op.OutputsAsNumpy()[0]) == out and (q is None or q.ScaleLength() == 0):
            out = int(op.InputsAsNumpy()[0])     # the DEQUANTIZE's int8 input
    return float(sg.Tensors(out).Quantization().ScaleAsNumpy()[0])
