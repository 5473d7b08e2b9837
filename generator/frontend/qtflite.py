"""TFLite's int8 MUL, QUANTIZE (int8 → int8 requantization) and MEAN as TVM's TFLite frontend
imports them (dequantize → float op → quantize), matched in Relax and built into integer qops
with TFLite Micro's arithmetic (used through ``qpatterns.match_tflite_op``).

The facts, from TFLite Micro's kernels:

- MUL (micro/kernels/mul_common.cc, reference_integer_ops/mul.h): ``M, e =
  QuantizeMultiplier(double(s1) * double(s2) / double(s_out))``; ``y = clamp(z_out +
  MultiplyByQuantizedMultiplier((a - z1) * (b - z2), M, e), act)``, numpy broadcasting
  (BroadcastMul4DSlow). The float import rounds the product once, in float.
- QUANTIZE of an int8 tensor (micro/kernels/quantize_common.cc, reference_ops::Requantize):
  ``M, e = QuantizeMultiplier(double(s_in) / double(s_out))``; ``y = clamp(z_out +
  MultiplyByQuantizedMultiplier(x - z_in, M, e))``. The converter puts one in front of a
  CONCATENATION whose inputs have other scales than its output.
- MEAN (micro/kernels/reduce_common.cc EvalMean, reference_ops::QuantizedMeanOrSumExtraArgs):
  with input and output of the same scale and zero point the truncating integer division
  ``sum(x) / n`` (reference_ops::Mean); else the division by ``n`` folded into the
  multiplier: ``M, e = QuantizeMultiplier(s_in / s_out)``, ``k = min(msb(n), 32, 31 + e)``,
  ``M' = (M << k) / n``, ``e' = e - k``, ``y = clamp(z_out +
  MultiplyByQuantizedMultiplier(sum(x) - z_in * n, M', e'))``. The float import (dequantize,
  mean, quantize) was one step off on ~10% of the outputs of a converter-made
  GlobalAveragePooling2D; so is the older float32 formula of TFLite's reference kernels.

The Relax helpers (``op_name``, ``const``, ``dequant``) come from quantize.py as ``h``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from generator.frontend.qops import QOP_ATTR, _OPAQUE, QOp, _mbqm_lets, quantize_multiplier

KINDS = ("mul", "requant", "mean")
_ACT_DTYPES = ("int8", "uint8")


def mean_multiplier(scale: float, n: int, where: str = "") -> tuple[int, int]:
    """TFLite's int8 MEAN multiplier: QuantizeMultiplier(scale) with the division by the
    ``n`` reduced elements folded in (QuantizedMeanOrSumExtraArgs)."""
    m, e = quantize_multiplier(scale, where)
    k = min(int(n).bit_length() - 1, 32, 31 + e)
    return int((m << k) // n), e - k


def _qrange(dtype: str) -> tuple[int, int]:
    return (-128, 127) if dtype == "int8" else (0, 255)


def _shape(expr) -> tuple[int, ...]:
    return tuple(int(d) for d in expr.ty.shape.values)


def _out_q(q_call, h: dict):
    """``(scale, zero point, dtype)`` of a per-tensor int8/uint8 quantize, else None."""
    sy, zy = h["const"](q_call.args[1]), h["const"](q_call.args[2])
    out_dtype = str(q_call.attrs.out_dtype)
    if sy is None or zy is None or sy.size != 1 or zy.size != 1 or out_dtype not in _ACT_DTYPES:
        return None
    return float(sy.reshape(-1)[0]), int(zy.reshape(-1)[0]), out_dtype


def _int_side(g, arg, h: dict):
    """``(source, scale, zero point)`` of ``dequantize(source)`` (per-tensor int8/uint8)."""
    dq = h["dequant"](g, arg)
    if dq is None:
        return None
    src, scale, zp, _ = dq
    if scale.size != 1 or zp.size != 1 or str(src.ty.dtype) not in _ACT_DTYPES:
        return None
    return src, float(scale.reshape(-1)[0]), int(zp.reshape(-1)[0])


def match(g, q_call, where: str, clamp, h: dict, act_bounds):
    """``(qop, source vars, constant arrays, (), layout)`` for a TFLite int8 MUL, requantizing
    QUANTIZE or MEAN ending in ``q_call`` (a quantize), else None. ``act_bounds``: qpatterns'
    fused-activation clamp."""
    out = _out_q(q_call, h)
    if out is None:
        return None
    sy, zy, out_dtype = out
    qmin, qmax = _qrange(out_dtype)
    e = g.value(q_call.args[0])
    lo_f = hi_f = None
    for _ in range(2):                          # MUL's fused RELU / RELU6 (float clip)
        if h["op_name"](e) == "relax.nn.relu":
            lo_f = 0.0
        elif h["op_name"](e) == "relax.clip":
            lo_f, hi_f = float(e.args[1].value), float(e.args[2].value)
        else:
            break
        e = g.value(e.args[0])
    lo, hi = act_bounds(lo_f, hi_f, sy, zy, qmin, qmax)
    lo, hi = max(lo, clamp[0]), min(hi, clamp[1])
    name = h["op_name"](e)
    common = dict(out_dtype=out_dtype, out_zp=zy, act_min=lo, act_max=hi, source=where)
    if name == "relax.multiply":
        sides = [_int_side(g, a, h) for a in e.args]
        if None in sides or str(sides[0][0].ty.dtype) != str(sides[1][0].ty.dtype):
            return None
        (a, sa, za), (b, sb, zb) = sides
        m, s = quantize_multiplier(sa * sb / sy, where)
        qop = QOp(kind="mul", in_shape=_shape(a), in2_shape=_shape(b), out_shape=_shape(e),
                  in_dtype=str(a.ty.dtype), in_zp=za, in2_zp=zb, **common)
        return qop, [a, b], [np.array([m], np.int32), np.array([s], np.int8)], (), "ANY"
    if name == "relax.dequantize" and (lo_f, hi_f) == (None, None):
        side = _int_side(g, e, h)
        if side is None or h["const"](g.value(side[0])) is not None:
            return None
        x, sx, zx = side
        m, s = quantize_multiplier(sx / sy, where)
        qop = QOp(kind="requant", in_shape=_shape(x), out_shape=_shape(x),
                  in_dtype=str(x.ty.dtype), in_zp=zx, **common)
        return qop, [x], [np.array([m], np.int32), np.array([s], np.int8)], (), "ANY"
    if name == "relax.mean" and (lo_f, hi_f) == (None, None):
        side = _int_side(g, e.args[0], h)
        if side is None or e.attrs.axis is None:
            return None
        x, sx, zx = side
        rank = len(_shape(x))
        axes = tuple(sorted({int(a) % rank for a in e.attrs.axis}))
        n = int(np.prod([_shape(x)[a] for a in axes]))
        same = np.float32(sx) == np.float32(sy) and zx == zy
        m, sh = mean_multiplier(sx / sy, n, where)
        qop = QOp(kind="mean", in_shape=_shape(x), out_shape=_shape(e), in_dtype=str(x.ty.dtype),
                  in_zp=zx, axes=axes, kernel=(n, 1), rounding="same" if same else "tflite",
                  **common)
        return qop, [x], [np.array([m, sh], np.int32)], (), "ANY"
    return None


# --- the TIR --------------------------------------------------------------------------------------

def _idx(vs: list[str], shape: tuple[int, ...], out_rank: int) -> str:
    """The index of a numpy-broadcast operand of ``shape`` at output index ``vs``."""
    lead = out_rank - len(shape)
    return ", ".join("0" if d == 1 else vs[lead + k] for k, d in enumerate(shape))


def _clamp_store(y: str, r: str, q: QOp) -> str:
    return (f"{y} = T.Cast(\"{q.out_dtype}\", T.max(T.min({r} + T.int64({q.out_zp}), "
            f"T.int64({q.act_max})), T.int64({q.act_min})))")


def _mul_script(q: QOp) -> str:
    shape = q.out_shape
    r = len(shape)
    names, vs = [f"i{k}" for k in range(r)], [f"v{k}" for k in range(r)]
    ia, ib = _idx(vs, q.in_shape, r), _idx(vs, q.in2_shape, r)
    ind = " " * 12
    lets, res = _mbqm_lets(f"(T.Cast(\"int64\", a[{ia}]) - T.int64({q.in_zp})) * "
                           f"(T.Cast(\"int64\", b[{ib}]) - T.int64({q.in2_zp}))",
                           "T.Cast(\"int64\", mult[0])", "T.Cast(\"int64\", shift[0])", "mq", ind)
    return f'''
@T.prim_func(private=True, s_tir=True)
def qop(a: T.Buffer({q.in_shape}, "{q.in_dtype}"), b: T.Buffer({q.in2_shape}, "{q.in_dtype}"),
        mult: T.Buffer((1,), "int32"), shift: T.Buffer((1,), "int8"),
        y: T.Buffer({shape}, "{q.out_dtype}")):
    T.func_attr({{"tirx.noalias": True}})
    for {", ".join(names)} in T.grid({", ".join(str(d) for d in shape)}):
        with T.sblock("qmul"):
            {", ".join(vs)} = T.axis.remap("{"S" * r}", [{", ".join(names)}])
            T.reads(a[{ia}], b[{ib}], mult[0], shift[0])
            T.writes(y[{", ".join(vs)}])
{lets}{ind}{_clamp_store(f"y[{', '.join(vs)}]", res, q)}
'''


def _requant_script(q: QOp) -> str:
    shape = q.out_shape
    r = len(shape)
    names, vs = [f"i{k}" for k in range(r)], [f"v{k}" for k in range(r)]
    idx = ", ".join(vs)
    ind = " " * 12
    lets, res = _mbqm_lets(f"T.Cast(\"int64\", x[{idx}]) - T.int64({q.in_zp})",
                           "T.Cast(\"int64\", mult[0])", "T.Cast(\"int64\", shift[0])", "rq", ind)
    return f'''
@T.prim_func(private=True, s_tir=True)
def qop(x: T.Buffer({shape}, "{q.in_dtype}"), mult: T.Buffer((1,), "int32"),
        shift: T.Buffer((1,), "int8"), y: T.Buffer({shape}, "{q.out_dtype}")):
    T.func_attr({{"tirx.noalias": True}})
    for {", ".join(names)} in T.grid({", ".join(str(d) for d in shape)}):
        with T.sblock("qrequant"):
            {idx} = T.axis.remap("{"S" * r}", [{", ".join(names)}])
            T.reads(x[{idx}], mult[0], shift[0])
            T.writes(y[{idx}])
{lets}{ind}{_clamp_store(f"y[{idx}]", res, q)}
'''


def _mean_script(q: QOp) -> str:
    ishape, oshape = q.in_shape, q.out_shape
    keep = len(oshape) == len(ishape)
    kept = [k for k in range(len(ishape)) if k not in q.axes]
    ro = len(oshape)
    names, vs = [f"i{k}" for k in range(ro)], [f"v{k}" for k in range(ro)]
    xi = []
    for k in range(len(ishape)):
        if k in q.axes:
            xi.append(f"r{k}")
        else:
            xi.append(vs[k] if keep else vs[kept.index(k)])
    red = [f"r{k}" for k in q.axes]
    n = q.kernel[0]
    if q.rounding == "same":          # reference_ops::Mean: truncating integer division
        tail, res = "", f"T.Cast(\"int64\", T.truncdiv(acc[0], {n}))"
    else:                             # QuantizedMeanOrSumExtraArgs
        tail, res = _mbqm_lets(f"T.Cast(\"int64\", acc[0]) - T.int64({q.in_zp * n})",
                               "T.Cast(\"int64\", ms[0])", "T.Cast(\"int64\", ms[1])", "mq",
                               " " * 12)
    ind = " " * 12
    return f'''
@T.prim_func(private=True, s_tir=True)
def qop(x: T.Buffer({ishape}, "{q.in_dtype}"), ms: T.Buffer((2,), "int32"),
        y: T.Buffer({oshape}, "{q.out_dtype}")):
    T.func_attr({{"tirx.noalias": True}})
    for {", ".join(names)} in T.grid({", ".join(str(d) for d in oshape)}):
        with T.sblock("qmean"):
            {", ".join(vs)} = T.axis.remap("{"S" * ro}", [{", ".join(names)}])
            T.reads(x[{", ".join("0:" + str(d) for d in ishape)}], ms[0:2])
            T.writes(y[{", ".join(vs)}])
            acc = T.sblock_alloc_buffer((1,), "int32")
            acc[0] = 0
            for {", ".join(red)} in T.grid({", ".join(str(ishape[k]) for k in q.axes)}):
                acc[0] = acc[0] + T.Cast("int32", x[{", ".join(xi)}])
{tail}{ind}{_clamp_store(f"y[{', '.join(vs)}]", res, q)}
'''


def prim_func(q: QOp) -> Any:
    """The integer PrimFunc of a ``mul``/``requant``/``mean`` qop, tagged like qops' own."""
    import tvm

    text = {"mul": _mul_script, "requant": _requant_script, "mean": _mean_script}[q.kind](q)
    func = tvm.script.from_source("# from tvm.script import tirx as T\n" + text)
    return func.with_attrs({QOP_ATTR: q.to_json(), "op_pattern": _OPAQUE})


# --- numpy references (the same arithmetic; for tests) -------------------------------------------

def mean_ref(x: np.ndarray, q: QOp, ms: np.ndarray) -> np.ndarray:
    """TFLite Micro's int8 MEAN of ``x`` (the qop's arithmetic) in numpy."""
    from generator.frontend.qops import multiply_by_quantized_multiplier

    s = np.sum(x.astype(np.int64), axis=q.axes, keepdims=len(q.out_shape) == len(q.in_shape))
    n = q.kernel[0]
    if q.rounding == "same":
        r = np.where(s >= 0, s // n, -((-s) // n))
    else:
        r = multiply_by_quantized_multiplier(s - q.in_zp * n, ms[0], ms[1])
    return np.clip(r + q.out_zp, q.act_min, q.act_max).reshape(q.out_shape)
