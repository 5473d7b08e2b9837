"""TFLite's int8 ADD and AVERAGE_POOL_2D as TVM's TFLite frontend imports them, matched in Relax
and built into integer qops with TFLite Micro's arithmetic (used by ``quantize.rewrite_qdq``
for TFLite models); MUL, requantizing QUANTIZE and MEAN are qtflite.py's.

- ADD: ``quantize([relu|clip](add(dequantize(a), dequantize(b))))``; TFLite Micro
  (micro/kernels/add_common.cc, reference_integer_ops/add.h) rescales both inputs to a common
  scale with a left shift of 20 and per-input multipliers, adds, and rescales the sum to the
  output; float dequantize/add/quantize rounds ties differently.
- AVERAGE_POOL_2D: ``astype(avg_pool2d(astype(x, int32)), int8)``; TVM's integer avg_pool2d
  truncates the mean, TFLite rounds it half away from zero over the in-bounds window.

The Relax helpers (``op_name``, ``const``, ``dequant``) come from quantize.py as ``h``, so this
module imports nothing from it.
"""

from __future__ import annotations

import numpy as np

from generator.frontend import qtflite
from generator.frontend.qops import QOp, qop_prim_func, quantize_multiplier, tflite_round

_ACT_DTYPES = ("int8", "uint8")


class _Acts:
    """The float bounds of a ReLU/Clip before a quantize."""

    def __init__(self):
        self.lo: float | None = None
        self.hi: float | None = None


def act_bounds(lo_f: float | None, hi_f: float | None, sy: float, zy: int, qmin: int,
               qmax: int) -> tuple[int, int]:
    """The integer clamp of a ReLU/Clip before the quantize: TFLite's
    CalculateActivationRangeQuantized (``zp + TfLiteRound(f / scale)`` in float32)."""
    def q(f: float) -> int:
        return zy + tflite_round(float(np.float32(f) / np.float32(sy)))
    lo = qmin if lo_f is None else max(qmin, q(lo_f))
    hi = qmax if hi_f is None else min(qmax, q(hi_f))
    return lo, hi


def match_add(g, expr, h: dict):
    """``(match, a, b, (sa, za), (sb, zb))`` for ``[act](add(dequantize(a), dequantize(b)))``
    (TFLite's quantized ADD as TVM imports it) with two non-constant int8/uint8 tensors of the
    output's shape and per-tensor scales, else None."""
    m = _Acts()
    e = g.value(expr)
    for _ in range(3):
        name = h["op_name"](e)
        if name == "relax.nn.relu":
            m.lo = 0.0 if m.lo is None else max(m.lo, 0.0)
        elif name == "relax.clip":
            m.lo, m.hi = float(e.args[1].value), float(e.args[2].value)
        else:
            break
        e = g.value(e.args[0])
    if h["op_name"](e) != "relax.add":
        return None
    sides = []
    for arg in e.args:
        dq = h["dequant"](g, arg)
        if dq is None:
            return None
        src, scale, zp, _ = dq
        if h["const"](g.value(src)) is not None or scale.size != 1 or zp.size != 1 or \
                str(src.ty.dtype) not in _ACT_DTYPES:
            return None
        sides.append((src, float(scale.reshape(-1)[0]), int(zp.reshape(-1)[0])))
    (a, sa, za), (b, sb, zb) = sides
    out_shape = tuple(int(d) for d in e.ty.shape.values)
    for src in (a, b):
        if tuple(int(d) for d in src.ty.shape.values) != out_shape:
            return None                   # broadcasting ADD: left in float
    if str(a.ty.dtype) != str(b.ty.dtype):
        return None
    return m, a, b, (sa, za), (sb, zb)


def build_add(matched, q_call, where: str, clamp, h: dict):
    """``(QOp, mult[3], shift[3])`` of TFLite Micro's int8 ADD (add_common.cc
    CalculateOpDataAdd: left shift 20, ``twice_max = 2 * max(s1, s2)``, input multipliers
    ``s_i / twice_max``, output multiplier ``twice_max / (2^20 * s_out)``)."""
    m, a, b, (sa, za), (sb, zb) = matched
    sy, zy = h["const"](q_call.args[1]), h["const"](q_call.args[2])
    out_dtype = str(q_call.attrs.out_dtype)
    if sy is None or zy is None or sy.size != 1 or out_dtype not in _ACT_DTYPES:
        return None
    sy, zy = float(sy.reshape(-1)[0]), int(zy.reshape(-1)[0])
    qmin, qmax = (-128, 127) if out_dtype == "int8" else (0, 255)
    lo, hi = act_bounds(m.lo, m.hi, sy, zy, qmin, qmax)
    lo, hi = max(lo, clamp[0]), min(hi, clamp[1])
    left_shift = 20
    twice_max = 2.0 * max(sa, sb)
    reals = [sa / twice_max, sb / twice_max, twice_max / ((1 << left_shift) * sy)]
    ms = [quantize_multiplier(r, where) for r in reals]
    shape = tuple(int(d) for d in a.ty.shape.values)
    qop = QOp(kind="add", in_shape=shape, out_shape=shape, in_dtype=str(a.ty.dtype),
              out_dtype=out_dtype, in_zp=za, in2_zp=zb, out_zp=zy, act_min=lo, act_max=hi,
              strides=(left_shift, left_shift), source=where)
    return qop, np.array([v[0] for v in ms], np.int32), np.array([v[1] for v in ms], np.int8)


def match_avgpool(g, value, where: str, h: dict):
    """``(QOp, x, layout)`` for ``astype(avg_pool2d(astype(x, int32)), int8|uint8)`` (TFLite's
    quantized AVERAGE_POOL_2D as TVM imports it: input and output share scale and zero point),
    else None. TVM's integer avg_pool2d does not round as TFLite does (it truncates)."""
    if h["op_name"](value) != "relax.astype":
        return None
    out_dtype = str(value.attrs.dtype)
    pool = g.value(value.args[0])
    if out_dtype not in _ACT_DTYPES or h["op_name"](pool) != "relax.nn.avg_pool2d":
        return None
    cast = g.value(pool.args[0])
    if h["op_name"](cast) != "relax.astype" or str(cast.attrs.dtype) != "int32":
        return None
    x = cast.args[0]
    if str(x.ty.dtype) != out_dtype:
        return None
    a = pool.attrs
    layout = str(a.layout)
    if layout not in ("NHWC", "NCHW") or str(a.out_layout) not in ("", layout) or \
            bool(a.ceil_mode) or any(int(d) != 1 for d in a.dilation):
        return None
    in_shape = tuple(int(d) for d in x.ty.shape.values)
    out_shape = tuple(int(d) for d in pool.ty.shape.values)
    if layout == "NHWC":
        in_shape = tuple(in_shape[i] for i in (0, 3, 1, 2))
        out_shape = tuple(out_shape[i] for i in (0, 3, 1, 2))
    pads = tuple(int(p) for p in a.padding)
    pads = pads * 2 if len(pads) == 2 else pads
    qmin, qmax = (-128, 127) if out_dtype == "int8" else (0, 255)
    qop = QOp(kind="avgpool", in_shape=in_shape, out_shape=out_shape, in_dtype=out_dtype,
              out_dtype=out_dtype, in_zp=0, out_zp=0, act_min=qmin, act_max=qmax,
              strides=tuple(int(v) for v in a.strides), pads=pads[:4],
              kernel=tuple(int(v) for v in a.pool_size), source=where)
    return qop, x, layout


def match_tflite_op(g, value, q_call, where: str, clamp, h: dict, pool: bool):
    """``(qop, source vars, constant arrays, weight shape, layout)`` of a TFLite int8
    AVERAGE_POOL_2D (``pool``: ``value`` is its final astype) or ADD (``q_call``: its quantize),
    else None. An ADD is elementwise: the caller runs it on NCHW when both inputs have one."""
    if pool:
        built = match_avgpool(g, value, where, h)
        return None if built is None else (built[0], [built[1]], [], (), built[2])
    added = match_add(g, q_call.args[0], h)
    built = build_add(added, q_call, where, clamp, h) if added is not None else None
    if built is None:       # MUL, requantizing QUANTIZE, MEAN (qtflite.py), or nothing
        return qtflite.match(g, q_call, where, clamp, h, act_bounds)
    return built[0], list(added[1:3]), list(built[1:]), (), "NHWC"


def qop_func(q: QOp, wshape: tuple[int, ...] = ()):
    """The integer PrimFunc of any qop (qops.py's kinds and qtflite.py's)."""
    return qtflite.prim_func(q) if q.kind in qtflite.KINDS else qop_prim_func(q, wshape)
