"""The integer operators of int8 models (*qops*): their description, TIR and requantization.

A conv/dense qop computes ``acc = bias + sum (x - x_zp) * w`` (int8 x int8 -> int32) and
requantizes it exactly as TFLite (Micro) does: a Q31 multiplier and an exponent from TFLite's
QuantizeMultiplier, then MultiplyByQuantizedMultiplier (a rounding doubling high multiply and a
rounding right shift, both half away from zero). An ``add`` qop is TFLite's int8 ADD (two-input
rescale with left shift 20), an ``avgpool`` qop TFLite's int8 AVERAGE_POOL_2D (sum over the
in-bounds window, divided rounding half away from zero). See ``generator/frontend/quantize.py``, which
builds qops from QDQ chains, and ``generator/aot/accel.py``, which offloads conv/dense qops. Split
out of ``quantize.py``; import these names from there.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import numpy as np

from generator.errors import UnsupportedModelError

QOP_ATTR = "pemesh.qop"
_OPAQUE = 8  # relax OpPatternKind.kOpaque
_HINT = ("pemesh folds int8 QDQ with symmetric int8 weights (per-tensor or per-output-channel) "
         "and int8/uint8 activations; re-quantize the model with e.g. onnxruntime quantize_static"
         "(..., weight_type=QuantType.QInt8, per_channel=True)")


# --- fixed-point requantization (TFLite's arithmetic) ---------------------------------------------
#
# The facts, from TFLite Micro's kernels (tensorflow/lite/kernels/internal/quantization_util.cc
# QuantizeMultiplier, .../internal/common.h MultiplyByQuantizedMultiplier; TFLite Micro builds
# without TFLITE_SINGLE_ROUNDING, so it rounds twice):
#
#   QuantizeMultiplier(s):  q, e = frexp(s); M = round_half_away(q * 2^31); M == 2^31 → M/2, e+1;
#                           e < -31 → (M, e) = (0, 0)   [a tiny scale: the output is the zero point]
#   MultiplyByQuantizedMultiplier(x, M, e):
#       x' = x * 2^max(e, 0)                                   (int32, wraps)
#       h  = SaturatingRoundingDoublingHighMul(x', M)          = (x'*M + nudge) / 2^31, truncating,
#                                                                nudge = 2^30 (>= 0) or 1 - 2^30
#       y  = RoundingDivideByPOT(h, max(-e, 0))                (half away from zero)

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def quantize_multiplier(scale: float, where: str = "") -> tuple[int, int]:
    """TFLite's ``QuantizeMultiplier``: ``(M, e)`` with ``M`` a Q31 int in [2^30, 2^31) and
    ``scale ≈ M * 2^(e - 31)`` (``e`` > 0: a left shift, < 0: a right shift). A scale below
    2^-32 gives ``(0, 0)`` (TFLite's rule: the result is the zero point); a scale of 2^30 or
    more saturates to ``(2^31 - 1, 30)`` (TFLite's single-rounding rule; such a scale makes
    no sense in a model). Zero gives ``(0, 0)``."""
    if scale == 0.0:
        return 0, 0
    if not (scale > 0.0 and math.isfinite(scale)):
        raise UnsupportedModelError(f"{where}: requantization scale {scale} is not positive",
                                    hint=_HINT)
    q, e = math.frexp(scale)
    mult = math.floor(q * (1 << 31) + 0.5)          # TfLiteRound: half away from zero (q > 0)
    if mult == 1 << 31:
        mult //= 2
        e += 1
    if e < -31:
        return 0, 0
    if e > 30:
        return INT32_MAX, 30
    return int(mult), int(e)


def multipliers(x_scale: float, w_scales: np.ndarray, y_scale: float, where: str = "",
                float_product: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-channel ``(M int32, e int8)`` as TFLite Micro computes them: QuantizeMultiplier
    of ``double(x_scale) * double(w_scale[o]) / double(y_scale)`` (PopulateConvolution-
    QuantizationParams), or with ``float_product`` (a per-tensor FULLY_CONNECTED:
    GetQuantizedConvolutionMultipler) of ``double(float32(x_scale * w_scale)) / y_scale``."""
    ws = np.asarray(w_scales, np.float64).reshape(-1)
    if float_product:
        real = [float(np.float32(x_scale) * np.float32(w)) / y_scale for w in ws]
    else:
        real = [x_scale * float(w) / y_scale for w in ws]
    ms = [quantize_multiplier(r, where) for r in real]
    return np.array([m for m, _ in ms], np.int32), np.array([e for _, e in ms], np.int8)


def _wrap32(v: np.ndarray) -> np.ndarray:
    return ((v + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def srdhm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """TFLite's ``SaturatingRoundingDoublingHighMul`` on int32 values (int64 arrays)."""
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    ab = a * b
    t = ab + np.where(ab >= 0, np.int64(1 << 30), np.int64(1 - (1 << 30)))
    q = np.where(t >= 0, t >> 31, -((-t) >> 31))           # C division: toward zero
    return np.where((a == INT32_MIN) & (b == INT32_MIN), np.int64(INT32_MAX), q)


def rounding_divide_by_pot(x: np.ndarray, e: np.ndarray) -> np.ndarray:
    """TFLite's ``RoundingDivideByPOT``: ``x / 2^e`` rounded half away from zero."""
    x, e = np.asarray(x, np.int64), np.asarray(e, np.int64)
    mask = (np.int64(1) << e) - 1
    thr = (mask >> 1) + (x < 0)
    return (x >> e) + ((x & mask) > thr)


def multiply_by_quantized_multiplier(x: np.ndarray, mult: np.ndarray, shift: np.ndarray
                                     ) -> np.ndarray:
    """TFLite's ``MultiplyByQuantizedMultiplier`` (double rounding), elementwise."""
    x, shift = np.asarray(x, np.int64), np.asarray(shift, np.int64)
    xs = _wrap32(x << np.maximum(shift, 0))
    return rounding_divide_by_pot(srdhm(xs, mult), np.maximum(-shift, 0))


def requantize_ref(acc: np.ndarray, mult: np.ndarray, shift: np.ndarray, zp: int, lo: int,
                   hi: int, rounding: str = "tflite") -> np.ndarray:
    """The requantization of a qop in numpy (the same integer arithmetic as the C).
    ``rounding``: "tflite" (MultiplyByQuantizedMultiplier) or "half_up" (ONNX models: one
    rounding of ``acc * M * 2^(e-31)``, ties up, close to onnxruntime's float requantization:
    ``(acc * M + 2^(30-e)) >> (31-e)``)."""
    if rounding == "half_up":
        a = np.asarray(acc, np.int64) * np.asarray(mult, np.int64)
        sh = 31 - np.asarray(shift, np.int64)
        return np.clip(((a + (np.int64(1) << (sh - 1))) >> sh) + zp, lo, hi)
    return np.clip(multiply_by_quantized_multiplier(acc, mult, shift) + zp, lo, hi)


def tflite_round(v: float) -> int:
    """``TfLiteRound``/``std::round``: half away from zero."""
    return int(math.copysign(math.floor(abs(v) + 0.5), v))


def _mbqm_lets(x: str, m: str, e: str, tag: str, indent: str) -> tuple[str, str]:
    """TVMScript lines computing ``MultiplyByQuantizedMultiplier(x, m, e)`` in int64 (``x``,
    ``m``, ``e`` are int64 expressions) into a local 8-slot buffer ``tag`` (TIR let-bindings do
    not lower in pemesh's plain-C path: "Unknown device id"); returns (lines, the result)."""
    t = tag
    lines = [
        f"{t} = T.sblock_alloc_buffer((8,), \"int64\")",
        f"{t}[0] = T.max({e}, T.int64(0))",                                   # left shift
        f"{t}[1] = T.max(T.int64(0) - {e}, T.int64(0))",                      # right shift
        f"{t}[2] = T.Cast(\"int64\", T.Cast(\"int32\", ({x}) * (T.int64(1) << {t}[0])))",
        # ^ x * 2^left (a multiply: << of a negative value is undefined in C), wrapped to int32
        f"{t}[3] = {t}[2] * {m}",
        f"{t}[4] = {t}[3] + T.if_then_else({t}[3] >= T.int64(0), T.int64({1 << 30}), "
        f"T.int64({1 - (1 << 30)}))",
        f"{t}[5] = T.if_then_else({t}[4] >= T.int64(0), {t}[4] >> T.int64(31), "
        f"T.int64(0) - ((T.int64(0) - {t}[4]) >> T.int64(31)))",             # srdhm
        f"{t}[6] = (T.int64(1) << {t}[1]) - T.int64(1)",                       # mask
        f"{t}[7] = ({t}[5] >> {t}[1]) + T.if_then_else(({t}[5] & {t}[6]) > ({t}[6] >> "
        f"T.int64(1)) + T.if_then_else({t}[5] < T.int64(0), T.int64(1), T.int64(0)), "
        f"T.int64(1), T.int64(0))",                                           # rdbpot
    ]
    return "".join(indent + ln + "\n" for ln in lines), f"{t}[7]"


# --- the qop description and its TIR -----------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class QOp:
    """One folded integer operator (geometry and scalar parameters; constants are call args)."""

    kind: str                       # "conv2d" | "dense" | "add" | "avgpool" | "mul" | "requant"
                                    # | "mean" | "lut" | "fquant" (the last five: qtflite.py)
    in_shape: tuple[int, ...]       # conv, avgpool: NCHW; dense: (..., K); add: any (= out)
    out_shape: tuple[int, ...]
    in_dtype: str                   # int8 | uint8
    out_dtype: str                  # int8 | uint8
    in_zp: int
    out_zp: int
    act_min: int
    act_max: int
    strides: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)   # top, left, bottom, right
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    kernel: tuple[int, int] = (1, 1)                 # conv kernel / pool window
    in2_zp: int = 0                 # add, mul: the second input's zero point
    in2_shape: tuple[int, ...] = ()  # mul: the second input's shape (broadcast to out_shape)
    axes: tuple[int, ...] = ()      # mean: the reduced axes of in_shape
    rounding: str = "tflite"        # "tflite" (TFLite models) | "half_up" (ONNX QDQ models)
    source: str = ""                # the Relax binding it replaces (for reports)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @staticmethod
    def from_json(text: str) -> "QOp":
        d = json.loads(text)
        for k in ("in_shape", "out_shape", "strides", "pads", "dilation", "kernel",
                  "in2_shape", "axes"):
            if k in d:
                d[k] = tuple(d[k])
        return QOp(**d)

    @property
    def macs(self) -> int:
        if self.kind in ("add", "mul", "requant", "lut", "fquant"):
            return 0
        if self.kind == "mean":
            return int(np.prod(self.in_shape))
        if self.kind == "avgpool":
            return int(np.prod(self.out_shape)) * self.kernel[0] * self.kernel[1]
        if self.kind == "conv2d":
            n, o, oh, ow = self.out_shape
            cin_g = self.in_shape[1] // self.groups
            return n * o * oh * ow * cin_g * self.kernel[0] * self.kernel[1]
        return int(np.prod(self.out_shape)) * self.in_shape[-1]


def _requant(acc: str, o: str, q: QOp, y: str, indent: str) -> str:
    """Lines that requantize ``acc`` (int32) with ``mult[o]``/``shift[o]`` and store into ``y``
    (``q.rounding``: see :func:`requantize_ref`)."""
    if q.rounding == "half_up":
        sh = f"(T.int64(31) - T.Cast(\"int64\", shift[{o}]))"
        v = (f"((T.Cast(\"int64\", {acc}) * T.Cast(\"int64\", mult[{o}]) + (T.int64(1) << "
             f"({sh} - T.int64(1)))) >> {sh})")
        return (f"{indent}{y} = T.Cast(\"{q.out_dtype}\", T.max(T.min({v} + T.int64({q.out_zp}), "
                f"T.int64({q.act_max})), T.int64({q.act_min})))\n")
    lets, r = _mbqm_lets(f"T.Cast(\"int64\", {acc})", f"T.Cast(\"int64\", mult[{o}])",
                         f"T.Cast(\"int64\", shift[{o}])", "rq", indent)
    return lets + (f"{indent}{y} = T.Cast(\"{q.out_dtype}\", T.max(T.min({r} + "
                   f"T.int64({q.out_zp}), T.int64({q.act_max})), T.int64({q.act_min})))\n")


def _conv_script(q: QOp, wshape: tuple[int, ...]) -> str:
    n, c, h, w = q.in_shape
    _, o, oh, ow = q.out_shape
    kh, kw = q.kernel
    sh, sw = q.strides
    dh, dw = q.dilation
    pt, pl = q.pads[0], q.pads[1]
    cig, cog = c // q.groups, o // q.groups
    ih = f"vh * {sh} + ky * {dh} - {pt}"
    iw = f"vw * {sw} + kx * {dw} - {pl}"
    cin = f"(vo // {cog}) * {cig} + ci"
    return f'''
@T.prim_func(private=True, s_tir=True)
def qop(x: T.Buffer({q.in_shape}, "{q.in_dtype}"), wt: T.Buffer({wshape}, "int8"),
        bias: T.Buffer(({o},), "int32"), mult: T.Buffer(({o},), "int32"),
        shift: T.Buffer(({o},), "int8"), y: T.Buffer({q.out_shape}, "{q.out_dtype}")):
    T.func_attr({{"tirx.noalias": True}})
    for bn, bo, bh, bw in T.grid({n}, {o}, {oh}, {ow}):
        with T.sblock("qconv"):
            vn, vo, vh, vw = T.axis.remap("SSSS", [bn, bo, bh, bw])
            T.reads(x[vn, 0:{c}, 0:{h}, 0:{w}], wt[vo, 0:{cig}, 0:{kh}, 0:{kw}], bias[vo],
                    mult[vo], shift[vo])
            T.writes(y[vn, vo, vh, vw])
            acc = T.sblock_alloc_buffer((1,), "int32")
            acc[0] = bias[vo]
            for ci, ky, kx in T.grid({cig}, {kh}, {kw}):
                if {ih} >= 0 and {ih} < {h} and {iw} >= 0 and {iw} < {w}:
                    acc[0] = acc[0] + (T.Cast("int32", x[vn, {cin}, {ih}, {iw}]) - {q.in_zp}) * T.Cast("int32", wt[vo, ci, ky, kx])
{_requant("acc[0]", "vo", q, "y[vn, vo, vh, vw]", " " * 12)}'''


def _dense_script(q: QOp) -> str:
    lead = q.in_shape[:-1]
    k, nout = q.in_shape[-1], q.out_shape[-1]
    names = [f"l{i}" for i in range(len(lead))]
    vnames = [f"v{i}" for i in range(len(lead))]
    grid = ", ".join(names + ["bo"])
    ext = ", ".join(str(d) for d in lead + (nout,))
    remap = '"' + "S" * (len(lead) + 1) + '"'
    lv = ", ".join(vnames)
    x_reads = f"x[{lv}, 0:{k}]"
    return f'''
@T.prim_func(private=True, s_tir=True)
def qop(x: T.Buffer({q.in_shape}, "{q.in_dtype}"), wt: T.Buffer(({nout}, {k}), "int8"),
        bias: T.Buffer(({nout},), "int32"), mult: T.Buffer(({nout},), "int32"),
        shift: T.Buffer(({nout},), "int8"), y: T.Buffer({q.out_shape}, "{q.out_dtype}")):
    T.func_attr({{"tirx.noalias": True}})
    for {grid} in T.grid({ext}):
        with T.sblock("qdense"):
            {lv}, vo = T.axis.remap({remap}, [{grid}])
            T.reads({x_reads}, wt[vo, 0:{k}], bias[vo], mult[vo], shift[vo])
            T.writes(y[{lv}, vo])
            acc = T.sblock_alloc_buffer((1,), "int32")
            acc[0] = bias[vo]
            for kk in range({k}):
                acc[0] = acc[0] + (T.Cast("int32", x[{lv}, kk]) - {q.in_zp}) * T.Cast("int32", wt[vo, kk])
{_requant("acc[0]", "vo", q, f"y[{lv}, vo]", " " * 12)}'''


def _add_script(q: QOp) -> str:
    """TFLite's int8 ADD (reference_integer_ops/add.h): both inputs rescaled to a common scale
    with a left shift of ``strides[0]`` (20) and per-input multipliers, summed, then rescaled to
    the output. ``mult``/``shift``: [input 1, input 2, output]."""
    shape = q.out_shape
    names = [f"i{k}" for k in range(len(shape))]
    vnames = [f"v{k}" for k in range(len(shape))]
    idx = ", ".join(vnames)
    ls = q.strides[0]
    ind = " " * 12
    l1, r1 = _mbqm_lets(f"(T.Cast(\"int64\", a[{idx}]) - T.int64({q.in_zp})) * T.int64({1 << ls})",
                        "T.Cast(\"int64\", mult[0])", "T.Cast(\"int64\", shift[0])", "a1", ind)
    l2, r2 = _mbqm_lets(f"(T.Cast(\"int64\", b[{idx}]) - T.int64({q.in2_zp})) * T.int64({1 << ls})",
                        "T.Cast(\"int64\", mult[1])", "T.Cast(\"int64\", shift[1])", "a2", ind)
    l3, r3 = _mbqm_lets(f"{r1} + {r2}", "T.Cast(\"int64\", mult[2])",
                        "T.Cast(\"int64\", shift[2])", "ao", ind)
    return f'''
@T.prim_func(private=True, s_tir=True)
def qop(a: T.Buffer({shape}, "{q.in_dtype}"), b: T.Buffer({shape}, "{q.in_dtype}"),
        mult: T.Buffer((3,), "int32"), shift: T.Buffer((3,), "int8"),
        y: T.Buffer({shape}, "{q.out_dtype}")):
    T.func_attr({{"tirx.noalias": True}})
    for {", ".join(names)} in T.grid({", ".join(str(d) for d in shape)}):
        with T.sblock("qadd"):
            {idx} = T.axis.remap("{"S" * len(shape)}", [{", ".join(names)}])
            T.reads(a[{idx}], b[{idx}], mult[0:3], shift[0:3])
            T.writes(y[{idx}])
{l1}{l2}{l3}            y[{idx}] = T.Cast("{q.out_dtype}", T.max(T.min({r3} + T.int64({q.out_zp}), T.int64({q.act_max})), T.int64({q.act_min})))
'''


def _avgpool_script(q: QOp) -> str:
    """TFLite's int8 AVERAGE_POOL_2D (reference_integer_ops/pooling.h): the sum over the window's
    in-bounds elements (padding not counted), divided by their count rounding half away from
    zero, clamped. NCHW."""
    n, c, h, w = q.in_shape
    _, _, oh, ow = q.out_shape
    kh, kw = q.kernel
    sh, sw = q.strides
    pt, pl = q.pads[0], q.pads[1]
    ih, iw = f"vh * {sh} + ky - {pt}", f"vw * {sw} + kx - {pl}"
    return f'''
@T.prim_func(private=True, s_tir=True)
def qop(x: T.Buffer({q.in_shape}, "{q.in_dtype}"), y: T.Buffer({q.out_shape}, "{q.out_dtype}")):
    T.func_attr({{"tirx.noalias": True}})
    for bn, bc, bh, bw in T.grid({n}, {c}, {oh}, {ow}):
        with T.sblock("qavgpool"):
            vn, vc, vh, vw = T.axis.remap("SSSS", [bn, bc, bh, bw])
            T.reads(x[vn, vc, 0:{h}, 0:{w}])
            T.writes(y[vn, vc, vh, vw])
            acc = T.sblock_alloc_buffer((2,), "int32")
            acc[0] = 0
            acc[1] = 0
            for ky, kx in T.grid({kh}, {kw}):
                if {ih} >= 0 and {ih} < {h} and {iw} >= 0 and {iw} < {w}:
                    acc[0] = acc[0] + T.Cast("int32", x[vn, vc, {ih}, {iw}])
                    acc[1] = acc[1] + 1
            y[vn, vc, vh, vw] = T.Cast("{q.out_dtype}", T.max(T.min(T.if_then_else(acc[0] > 0, T.truncdiv(acc[0] + T.truncdiv(acc[1], 2), T.max(acc[1], 1)), T.truncdiv(acc[0] - T.truncdiv(acc[1], 2), T.max(acc[1], 1))), {q.act_max}), {q.act_min}))
'''


def qop_prim_func(q: QOp, wshape: tuple[int, ...] = ()) -> Any:
    """The integer PrimFunc of ``q`` (TVMScript text → PrimFunc), tagged for accel.py."""
    import tvm

    scripts = {"conv2d": lambda: _conv_script(q, wshape), "dense": lambda: _dense_script(q),
               "add": lambda: _add_script(q), "avgpool": lambda: _avgpool_script(q)}
    text = scripts[q.kind]()
    text = "# from tvm.script import tirx as T\n" + text
    func = tvm.script.from_source(text)
    return func.with_attrs({QOP_ATTR: q.to_json(), "op_pattern": _OPAQUE})
