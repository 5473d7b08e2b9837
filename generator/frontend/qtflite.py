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
- MEAN (micro/kernels/reduce_common.cc EvalMean, reference_ops::QuantizedMeanOrSumExtraArgs),
  also when input and output have the same scale and zero point (measured: the tflite-micro
  interpreter rounds that mean too, it does not take older TFLite's truncating
  reference_ops::Mean): the division by ``n`` folded into the
  multiplier: ``M, e = QuantizeMultiplier(s_in / s_out)``, ``k = min(msb(n), 32, 31 + e)``,
  ``M' = (M << k) / n``, ``e' = e - k``, ``y = clamp(z_out +
  MultiplyByQuantizedMultiplier(sum(x) - z_in * n, M', e'))``. The float import (dequantize,
  mean, quantize) was one step off on ~10% of the outputs of converter-made MEANs; so is the
  older float32 formula of TFLite's reference kernels.
- HARD_SWISH (micro/kernels/hard_swish_common.cc, reference_ops::HardSwish): 16-bit fixed point
  (a "hires" input scale ``s_in / 128``, a reluish multiplier to the scale where 3.0 is 32768,
  int16 SaturatingRoundingDoublingHighMul and a truncating doubling high multiply); the float
  import (x * relu6(x + 3) / 6, quantized) was one step off on some input values. An int8
  unary op's output depends on the input value alone, so the qop is a 256-entry table (``lut``)
  computed here with TFLite Micro's arithmetic.
- QUANTIZE of the model's float input (reference_ops::AffineQuantize): ``clamp(z +
  TfLiteRound(x / s))``, the division in float32, ties away from zero; TVM's quantize rounds
  ties to even on the host (LLVM), which was one step off on an image pixel whose x / s was
  exactly 104.5. The qop (``fquant``) takes the scale as a float32 constant (bit-exact in the C)
  and rounds half away from zero without ``round()``.

The Relax helpers (``op_name``, ``const``, ``dequant``) come from quantize.py as ``h``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from generator.frontend.qops import QOP_ATTR, _OPAQUE, QOp, _mbqm_lets, quantize_multiplier

KINDS = ("mul", "requant", "mean", "lut", "fquant")
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
    if _is_param(g, e) and str(e.ty.dtype) == "float32" and clamp == (-(1 << 31), 1 << 31):
        qop = QOp(kind="fquant", in_shape=_shape(e), out_shape=_shape(e), in_dtype="float32",
                  in_zp=0, out_dtype=out_dtype, out_zp=zy, act_min=qmin, act_max=qmax,
                  source=where)
        return qop, [e], [np.array([sy], np.float32)], (), "ANY"
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
    if name == "relax.divide" and (lo_f, hi_f) == (None, None):
        x = _hard_swish_source(g, e, h)
        side = _int_side(g, x, h) if x is not None else None
        if side is None or str(side[0].ty.dtype) != "int8" or out_dtype != "int8":
            return None
        src, sx, zx = side
        table = hard_swish_table(sx, zx, sy, zy)
        qop = QOp(kind="lut", in_shape=_shape(src), out_shape=_shape(src), in_dtype="int8",
                  in_zp=zx, **dict(common, act_min=qmin, act_max=qmax))
        return qop, [src], [np.clip(table, lo, hi).astype(np.int8)], (), "ANY"
    if name == "relax.mean" and (lo_f, hi_f) == (None, None):
        side = _int_side(g, e.args[0], h)
        if side is None or e.attrs.axis is None:
            return None
        x, sx, zx = side
        rank = len(_shape(x))
        axes = tuple(sorted({int(a) % rank for a in e.attrs.axis}))
        n = int(np.prod([_shape(x)[a] for a in axes]))
        m, sh = mean_multiplier(sx / sy, n, where)
        qop = QOp(kind="mean", in_shape=_shape(x), out_shape=_shape(e), in_dtype=str(x.ty.dtype),
                  in_zp=zx, axes=axes, kernel=(n, 1), **common)
        return qop, [x], [np.array([m, sh], np.int32)], (), "ANY"
    return None


def _is_param(g, e) -> bool:
    """Whether ``e`` is a parameter of ``main`` (a model input), not a bound value."""
    from tvm import relax

    return isinstance(e, relax.Var) and e not in g.bound


def _hard_swish_source(g, e, h: dict):
    """``D`` of ``divide(multiply(D, clip(add(D, 3), 0, 6)), 6)`` (TVM's HARD_SWISH), else None."""
    six = h["const"](g.value(e.args[1]))
    mul = g.value(e.args[0])
    if six is None or six.size != 1 or float(six.reshape(-1)[0]) != 6.0 or \
            h["op_name"](mul) != "relax.multiply":
        return None
    d, clip = mul.args[0], g.value(mul.args[1])
    if h["op_name"](clip) != "relax.clip" or (float(clip.args[1].value),
                                               float(clip.args[2].value)) != (0.0, 6.0):
        return None
    add = g.value(clip.args[0])
    three = h["const"](g.value(add.args[1])) if h["op_name"](add) == "relax.add" else None
    if three is None or three.size != 1 or float(three.reshape(-1)[0]) != 3.0 or \
            not add.args[0].same_as(d):
        return None
    return d


# --- TFLite Micro's HARD_SWISH, in numpy (16-bit fixed point) ---------------------------------------

def _i16(v):
    return np.clip(v, -32768, 32767).astype(np.int64)


def _srdhm16(a, b):
    """gemmlowp's SaturatingRoundingDoublingHighMul on int16."""
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 14, 1 - (1 << 14))
    t = ab + nudge
    q = np.where(t >= 0, t >> 15, -((-t) >> 15))
    return np.where((a == -32768) & (b == -32768), 32767, q)


def _sdhm16(a, b):
    """reference_ops::SaturatingDoublingHighMul: truncating, no nudge."""
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    ab = a * b
    q = np.where(ab >= 0, ab >> 15, -((-ab) >> 15))
    return np.where((a == -32768) & (b == -32768), 32767, q)


def _down16(m32: int) -> int:
    """DownScaleInt32ToInt16Multiplier."""
    if m32 >= (1 << 31) - 1 - (1 << 15):
        return 32767
    return (m32 + (1 << 15)) >> 16


def hard_swish_table(sx: float, zx: int, sy: float, zy: int) -> np.ndarray:
    """TFLite Micro's int8 HARD_SWISH of every input -128..127 (int64 array of 256)."""
    from generator.frontend.qops import rounding_divide_by_pot

    f32 = np.float32
    hires = f32(f32(1.0 / 128.0) * f32(sx))
    om, oe = quantize_multiplier(float(f32(hires / f32(sy))))
    rm, re = quantize_multiplier(float(f32(hires / f32(f32(3.0) / f32(32768.0)))))
    om16, rm16 = _down16(om), _down16(rm)
    x = np.arange(-128, 128, dtype=np.int64) - zx
    hi = _i16(x * 128)
    pre = _srdhm16(hi, om16)
    r = hi
    if re > 0:
        r = _i16(r * (1 << (re - 1)))
    r = _srdhm16(r, rm16)
    if re > 0:
        r = _i16(r * 2)
    if re < 0:
        r = rounding_divide_by_pot(r, np.int64(-re))
    r = (r + (1 << 15)) >> 1
    out = rounding_divide_by_pot(_sdhm16(r, pre), np.int64(-oe)) + zy
    return np.clip(out, -128, 127)


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


def _lut_script(q: QOp) -> str:
    shape = q.out_shape
    r = len(shape)
    names, vs = [f"i{k}" for k in range(r)], [f"v{k}" for k in range(r)]
    idx = ", ".join(vs)
    return f'''
@T.prim_func(private=True, s_tir=True)
def qop(x: T.Buffer({shape}, "int8"), table: T.Buffer((256,), "int8"),
        y: T.Buffer({shape}, "int8")):
    T.func_attr({{"tirx.noalias": True}})
    for {", ".join(names)} in T.grid({", ".join(str(d) for d in shape)}):
        with T.sblock("qlut"):
            {idx} = T.axis.remap("{"S" * r}", [{", ".join(names)}])
            T.reads(x[{idx}], table[0:256])
            T.writes(y[{idx}])
            y[{idx}] = table[T.Cast("int32", x[{idx}]) + 128]
'''


def _fquant_script(q: QOp) -> str:
    shape = q.out_shape
    r = len(shape)
    names, vs = [f"i{k}" for k in range(r)], [f"v{k}" for k in range(r)]
    idx = ", ".join(vs)
    f32 = "T.float32"
    return f'''
@T.prim_func(private=True, s_tir=True)
def qop(x: T.Buffer({shape}, "float32"), scale: T.Buffer((1,), "float32"),
        y: T.Buffer({shape}, "{q.out_dtype}")):
    T.func_attr({{"tirx.noalias": True}})
    for {", ".join(names)} in T.grid({", ".join(str(d) for d in shape)}):
        with T.sblock("qfquant"):
            {idx} = T.axis.remap("{"S" * r}", [{", ".join(names)}])
            T.reads(x[{idx}], scale[0])
            T.writes(y[{idx}])
            f = T.sblock_alloc_buffer((3,), "float32")
            f[0] = T.max(T.min(x[{idx}] / scale[0], {f32}(1.0e6)), {f32}(-1.0e6))
            f[1] = T.floor(f[0])
            f[2] = f[0] - f[1]
            {_clamp_store(f"y[{idx}]", f"(T.Cast('int64', f[1]) + T.if_then_else(f[2] > {f32}(0.5) or (f[2] == {f32}(0.5) and f[0] > {f32}(0.0)), T.int64(1), T.int64(0)))", q)}
'''


def prim_func(q: QOp) -> Any:
    """The PrimFunc of a ``mul``/``requant``/``mean``/``lut``/``fquant`` qop, tagged like
    qops' own."""
    import tvm

    text = {"mul": _mul_script, "requant": _requant_script, "mean": _mean_script,
            "lut": _lut_script, "fquant": _fquant_script}[q.kind](q)
    func = tvm.script.from_source("# from tvm.script import tirx as T\n" + text)
    return func.with_attrs({QOP_ATTR: q.to_json(), "op_pattern": _OPAQUE})


# --- numpy references (the same arithmetic; for tests) -------------------------------------------

def mean_ref(x: np.ndarray, q: QOp, ms: np.ndarray) -> np.ndarray:
    """TFLite Micro's int8 MEAN of ``x`` (the qop's arithmetic) in numpy."""
    from generator.frontend.qops import multiply_by_quantized_multiplier

    s = np.sum(x.astype(np.int64), axis=q.axes, keepdims=len(q.out_shape) == len(q.in_shape))
    r = multiply_by_quantized_multiplier(s - q.in_zp * q.kernel[0], ms[0], ms[1])
    return np.clip(r + q.out_zp, q.act_min, q.act_max).reshape(q.out_shape)
