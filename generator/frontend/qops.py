"""The integer operators of int8 models (*qops*): their description, TIR and requantization.

A qop computes ``acc = bias + sum (x - x_zp) * w`` (int8 x int8 -> int32) and requantizes with a
Q31 multiplier and a right shift, rounding half up (see ``generator/quantize.py``, which builds
qops from QDQ chains, and ``generator/accel.py``, which offloads them). Split out of
``quantize.py``; import these names from there.
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


# --- fixed-point requantization ------------------------------------------------------------------

def quantize_multiplier(scale: float, where: str = "") -> tuple[int, int]:
    """``(M, s)`` with ``M`` a Q31 int in [2^30, 2^31) and ``scale ≈ M * 2^-s``, 1 <= s <= 62."""
    if scale == 0.0:
        return 0, 1
    if not (scale > 0.0 and math.isfinite(scale)):
        raise UnsupportedModelError(f"{where}: requantization scale {scale} is not positive",
                                    hint=_HINT)
    m, e = math.frexp(scale)
    mult = int(round(m * (1 << 31)))
    if mult == 1 << 31:
        mult //= 2
        e += 1
    shift = 31 - e
    if not 1 <= shift <= 62:
        raise UnsupportedModelError(f"{where}: requantization scale {scale:g} is out of the "
                                    "fixed-point range (2^-31 .. 2^30)", hint=_HINT)
    return mult, shift


def requantize_ref(acc: np.ndarray, mult: np.ndarray, shift: np.ndarray, zp: int, lo: int,
                   hi: int) -> np.ndarray:
    """The requantization of a qop in numpy (the same integer arithmetic as the C)."""
    a = acc.astype(np.int64) * mult.astype(np.int64)
    sh = shift.astype(np.int64)
    v = (a + (np.int64(1) << (sh - 1))) >> sh
    return np.clip(v + zp, lo, hi)


# --- the qop description and its TIR -----------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class QOp:
    """One folded integer operator (geometry and scalar parameters; constants are call args)."""

    kind: str                       # "conv2d" | "dense"
    in_shape: tuple[int, ...]       # conv: NCHW; dense: (..., K)
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
    kernel: tuple[int, int] = (1, 1)
    source: str = ""                # the Relax binding it replaces (for reports)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @staticmethod
    def from_json(text: str) -> "QOp":
        d = json.loads(text)
        for k in ("in_shape", "out_shape", "strides", "pads", "dilation", "kernel"):
            d[k] = tuple(d[k])
        return QOp(**d)

    @property
    def macs(self) -> int:
        if self.kind == "conv2d":
            n, o, oh, ow = self.out_shape
            cin_g = self.in_shape[1] // self.groups
            return n * o * oh * ow * cin_g * self.kernel[0] * self.kernel[1]
        return int(np.prod(self.out_shape)) * self.in_shape[-1]


def _requant_expr(acc: str, o: str, q: QOp) -> str:
    v = (f"((T.Cast(\"int64\", {acc}) * T.Cast(\"int64\", mult[{o}]) + (T.int64(1) << "
         f"T.Cast(\"int64\", shift[{o}] - 1))) >> T.Cast(\"int64\", shift[{o}]))")
    return (f"T.Cast(\"{q.out_dtype}\", T.max(T.min({v} + T.int64({q.out_zp}), "
            f"T.int64({q.act_max})), T.int64({q.act_min})))")


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
            y[vn, vo, vh, vw] = {_requant_expr("acc[0]", "vo", q)}
'''


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
            y[{lv}, vo] = {_requant_expr("acc[0]", "vo", q)}
'''


def qop_prim_func(q: QOp, wshape: tuple[int, ...]) -> Any:
    """The integer PrimFunc of ``q`` (TVMScript text → PrimFunc), tagged for accel.py."""
    import tvm

    text = _conv_script(q, wshape) if q.kind == "conv2d" else _dense_script(q)
    text = "# from tvm.script import tirx as T\n" + text
    func = tvm.script.from_source(text)
    return func.with_attrs({QOP_ATTR: q.to_json(), "op_pattern": _OPAQUE})
