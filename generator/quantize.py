"""int8 models: fold ONNX QDQ chains into integer operators (a Relax rewrite after import).

TVM's ONNX frontend imports a QDQ model literally: ``dequantize`` → float ``conv2d``/``matmul``
(+ bias, relu/clip) → ``quantize``. :func:`quantize_model` replaces every such chain by one
``call_tir`` into an integer PrimFunc (a *qop*) that computes

    acc[o]  = bias_q[o] + sum_k (x[k] - x_zp) * w[o, k]                 (int8 x int8 -> int32)
    y[o]    = clamp(y_zp + ((acc * M[o] + 2^(s[o]-1)) >> s[o]), lo, hi)  (int64 product)

with ``M[o]`` a Q31 fixed-point multiplier and ``s[o]`` a right shift such that
``M[o] * 2^-s[o] ≈ x_scale * w_scale[o] / y_scale``. Rounding: **round half up** (add half, then
an arithmetic shift: ties go toward +inf). onnxruntime rounds half to even in float; outputs of
the two differ by at most one quantization step. ``lo``/``hi`` fold a ReLU or Clip between the
op and the QuantizeLinear (quantize is monotonic, so that is exact).

Supported schemes: activations int8 or uint8 with any zero point, per-tensor; weights int8,
symmetric (zero point 0), per-tensor or per-output-channel; bias int32 (a DequantizeLinear with
scale ≈ x_scale·w_scale) or float. Everything else raises :class:`UnsupportedModelError` naming
the ONNX node (:func:`check_onnx_qdq`) or the Relax binding.

Each qop PrimFunc carries the attribute ``pemesh.qop`` (JSON: kind, geometry, zero points,
clamp) and ``op_pattern`` = opaque, so fusion keeps it one step: ``generator/accel.py`` reads the
attribute to offload the step. Its accumulator is a one-element buffer per output element (no
int32 temporary of the output size in the arena).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from typing import Any

import numpy as np

from .errors import UnsupportedModelError
from .spec import ImportedModel

log = logging.getLogger(__name__)

QOP_ATTR = "pemesh.qop"
_OPAQUE = 8  # relax OpPatternKind.kOpaque
_ACT_DTYPES = ("int8", "uint8")
_HINT = ("pemesh folds int8 QDQ with symmetric int8 weights (per-tensor or per-output-channel) "
         "and int8/uint8 activations; re-quantize the model with e.g. onnxruntime quantize_static"
         "(..., weight_type=QuantType.QInt8, per_channel=True)")


# --- the ONNX-level check (names the node) ------------------------------------------------------

def check_onnx_qdq(model: Any) -> None:
    """Reject QDQ schemes pemesh cannot run in integers, naming the ONNX node.

    int16/uint16/int4 quantization anywhere; weights (initializer inputs of DequantizeLinear that
    feed Conv/Gemm/MatMul) that are not int8 or have a non-zero zero point.
    """
    from onnx import TensorProto, numpy_helper

    g = model.graph
    inits = {t.name: t for t in g.initializer}
    consumers: dict[str, list[Any]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    ok_types = {TensorProto.INT8, TensorProto.UINT8, TensorProto.INT32}
    for idx, n in enumerate(g.node):
        label = f"node {n.name!r}" if n.name else f"node #{idx}"
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        zp_name = n.input[2] if len(n.input) > 2 and n.input[2] else ""
        q_name = n.output[0] if n.op_type == "QuantizeLinear" else n.input[0]
        elem = None
        if zp_name in inits:
            elem = inits[zp_name].data_type
        elif q_name in inits:
            elem = inits[q_name].data_type
        for attr in n.attribute:
            if attr.name == "output_dtype" and attr.i:
                elem = attr.i
        if elem is not None and elem not in ok_types:
            raise UnsupportedModelError(
                f"{label} ({n.op_type}) quantizes to {TensorProto.DataType.Name(elem)}; pemesh "
                "runs int8/uint8 quantization only", hint=_HINT)
        if n.op_type != "DequantizeLinear" or n.input[0] not in inits:
            continue
        feeds = [c.op_type for c in consumers.get(n.output[0], [])]
        w = numpy_helper.to_array(inits[n.input[0]])
        if w.dtype == np.int32:
            continue  # a bias
        if not any(f in ("Conv", "Gemm", "MatMul", "Transpose") for f in feeds):
            continue
        if w.dtype != np.int8:
            raise UnsupportedModelError(
                f"{label} (DequantizeLinear of weight {n.input[0]!r}) has {w.dtype} weights; "
                "pemesh needs int8 weights", hint=_HINT)
        if zp_name in inits and np.any(numpy_helper.to_array(inits[zp_name]) != 0):
            kind = "per-channel" if numpy_helper.to_array(inits[zp_name]).size > 1 else "per-tensor"
            raise UnsupportedModelError(
                f"{label} (DequantizeLinear of weight {n.input[0]!r}) has asymmetric {kind} "
                "weights (non-zero zero point); pemesh needs symmetric weights", hint=_HINT)


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


# --- matching the float chain in Relax ------------------------------------------------------------

class _Graph:
    def __init__(self, func):
        from tvm import relax
        self.bound: dict[Any, Any] = {}
        for block in func.body.blocks:
            for b in block.bindings:
                if isinstance(b, relax.VarBinding):
                    self.bound[b.var] = b.value

    def value(self, expr):
        from tvm import relax
        while isinstance(expr, relax.Var) and expr in self.bound:
            expr = self.bound[expr]
        return expr


def _op_name(call) -> str:
    from tvm import relax
    if isinstance(call, relax.Call) and hasattr(call.op, "name"):
        return str(call.op.name)
    return ""


def _const(expr) -> np.ndarray | None:
    from tvm.ir.expr import Constant
    if isinstance(expr, Constant):
        from .aot.graph import _const_value
        return np.asarray(_const_value(expr))
    return None


def _scalar(g: _Graph, expr) -> float | None:
    """A scalar constant, seeing through ``where(isnan(c), ±inf, c)`` of the Clip import."""
    e = g.value(expr)
    c = _const(e)
    if c is not None:
        return float(c.reshape(-1)[0]) if c.size == 1 else None
    if _op_name(e) == "relax.where":
        return _scalar(g, e.args[2])
    return None


def _var_name(var) -> str:
    for attr in ("name_hint", "name"):
        v = getattr(var, attr, None)
        if isinstance(v, str):
            return v
    return str(var)


def _call_tir_name(call) -> str:
    if _op_name(call) == "relax.call_tir":
        return _var_name(call.args[0])
    return ""


def _dequant(g: _Graph, expr):
    """``(source, scale, zero_point, axis)`` if ``expr`` is a ``dequantize``, else None."""
    e = g.value(expr)
    if _op_name(e) != "relax.dequantize":
        return None
    scale, zp = _const(e.args[1]), _const(e.args[2])
    if scale is None or zp is None:
        return None
    return e.args[0], scale.astype(np.float64), zp.astype(np.int64), int(e.attrs.axis)


class _Match:
    """A matched chain ``[act](add(op(dq(x), dq(W)), bias))`` feeding a quantize."""

    def __init__(self):
        self.lo: float | None = None
        self.hi: float | None = None
        self.bias = None
        self.op = None


def _match_chain(g: _Graph, expr) -> _Match | None:
    m = _Match()
    e = g.value(expr)
    for _ in range(3):  # activations: relu, clip, maximum/minimum (Clip's import)
        name, tir = _op_name(e), _call_tir_name(e)
        if name == "relax.nn.relu":
            m.lo = 0.0 if m.lo is None else max(m.lo, 0.0)
            e = g.value(e.args[0])
        elif name == "relax.clip":
            m.lo, m.hi = float(e.args[1].value), float(e.args[2].value)
            e = g.value(e.args[0])
        elif tir in ("maximum", "minimum") or name in ("relax.maximum", "relax.minimum"):
            args = list(e.args[1].fields) if tir else list(e.args)
            s = _scalar(g, args[1])
            if s is None:
                return None
            if "max" in (tir or name):
                m.lo = s if m.lo is None else max(m.lo, s)
            else:
                m.hi = s if m.hi is None else min(m.hi, s)
            e = g.value(args[0])
        else:
            break
    if _op_name(e) == "relax.add":
        a, b = e.args
        for op_side, bias_side in ((a, b), (b, a)):
            inner = g.value(op_side)
            if _op_name(inner) in ("relax.nn.conv2d", "relax.matmul"):
                m.bias, e = bias_side, inner
                break
        else:
            return None
    if _op_name(e) not in ("relax.nn.conv2d", "relax.matmul"):
        return None
    m.op = e
    return m


def _bias_values(g: _Graph, expr, n: int, acc_scale: np.ndarray, where: str) -> np.ndarray:
    """Bias in accumulator units (int32), from a dequantized int32 or a float constant."""
    if expr is None:
        return np.zeros(n, np.int32)
    e = g.value(expr)
    while _op_name(e) in ("relax.reshape", "relax.expand_dims"):
        e = g.value(e.args[0])
    dq = _dequant(g, e)
    if dq is not None:
        src, scale, zp, _axis = dq
        vals = _const(g.value(src))
        if vals is None or np.any(zp != 0):
            raise UnsupportedModelError(f"{where}: the bias is not a constant with zero point 0",
                                        hint=_HINT)
        real = vals.astype(np.float64).reshape(-1) * np.broadcast_to(scale.reshape(-1),
                                                                      (vals.size,))
    else:
        c = _const(e)
        if c is None:
            raise UnsupportedModelError(f"{where}: the bias is not a constant", hint=_HINT)
        real = c.astype(np.float64).reshape(-1)
    if real.size == 1:
        real = np.full(n, real[0])
    if real.size != n:
        raise UnsupportedModelError(f"{where}: bias has {real.size} values for {n} channels",
                                    hint=_HINT)
    q = np.round(real / acc_scale)
    if np.any(np.abs(q) >= 2 ** 31):
        raise UnsupportedModelError(f"{where}: the bias overflows int32 at the accumulator scale",
                                    hint=_HINT)
    return q.astype(np.int32)


def _weights(g: _Graph, expr, where: str):
    """``(int8 weights, per-channel scale, transposed)`` of a dequantized constant weight."""
    e = g.value(expr)
    transposed = False
    if _op_name(e) == "relax.permute_dims":
        axes = [int(a) for a in e.attrs.axes] if e.attrs.axes is not None else None
        if axes not in (None, [1, 0]):
            return None
        transposed, e = True, g.value(e.args[0])
    dq = _dequant(g, e)
    if dq is None:
        return None
    src, scale, zp, axis = dq
    w = _const(g.value(src))
    if w is None:
        return None
    if w.dtype != np.int8:
        raise UnsupportedModelError(f"{where}: weights are {w.dtype}, pemesh needs int8",
                                    hint=_HINT)
    if np.any(zp != 0):
        raise UnsupportedModelError(f"{where}: weights have a non-zero zero point (asymmetric)",
                                    hint=_HINT)
    return w, scale.reshape(-1), axis, transposed


def _build_qop(g: _Graph, m: _Match, q_call, where: str):
    """``(QOp, x_var, [w, bias, mult, shift] arrays)`` for a matched chain, or None."""
    op = m.op
    xdq = _dequant(g, op.args[0])
    if xdq is None:
        return None
    x, sx, zx, _ = xdq
    if str(x.ty.dtype) not in _ACT_DTYPES or sx.size != 1:
        return None
    wq = _weights(g, op.args[1], where)
    if wq is None:
        return None
    w, sw, waxis, transposed = wq
    sy, zy = _const(q_call.args[1]), _const(q_call.args[2])
    if sy is None or zy is None or sy.size != 1:
        raise UnsupportedModelError(f"{where}: per-channel output quantization is not supported",
                                    hint=_HINT)
    out_dtype = str(q_call.attrs.out_dtype)
    if out_dtype not in _ACT_DTYPES:
        raise UnsupportedModelError(f"{where}: quantizes to {out_dtype}; pemesh runs int8/uint8",
                                    hint=_HINT)
    sy, zy, sx, zx = float(sy.reshape(-1)[0]), int(zy.reshape(-1)[0]), float(sx.reshape(-1)[0]), int(zx.reshape(-1)[0])
    in_shape = tuple(int(d) for d in op.args[0].ty.shape.values)
    out_shape = tuple(int(d) for d in op.ty.shape.values)
    qmin, qmax = (-128, 127) if out_dtype == "int8" else (0, 255)
    lo = qmin if m.lo is None else max(qmin, int(np.round(m.lo / sy)) + zy)
    hi = qmax if m.hi is None else min(qmax, int(np.round(m.hi / sy)) + zy)
    common = dict(in_dtype=str(x.ty.dtype), out_dtype=out_dtype, in_zp=zx, out_zp=zy,
                  act_min=lo, act_max=hi, source=where)
    if _op_name(op) == "relax.nn.conv2d":
        a = op.attrs
        if (str(a.data_layout), str(a.kernel_layout)) != ("NCHW", "OIHW") or len(in_shape) != 4:
            return None
        nout = w.shape[0]
        if sw.size not in (1, nout) or (sw.size > 1 and waxis != 0):
            raise UnsupportedModelError(f"{where}: weight scales are not per output channel",
                                        hint=_HINT)
        pads = tuple(int(p) for p in a.padding)
        pads = pads * 2 if len(pads) == 2 else pads
        qop = QOp(kind="conv2d", in_shape=in_shape, out_shape=out_shape,
                  strides=tuple(int(s) for s in a.strides), pads=(pads[0], pads[1], pads[2], pads[3]),
                  dilation=tuple(int(d) for d in a.dilation), groups=int(a.groups),
                  kernel=(int(w.shape[2]), int(w.shape[3])), **common)
        wt = w
    else:
        if w.ndim != 2:
            return None
        wt = w if transposed else w.T          # → [N, K]
        nout = wt.shape[0]
        chan_axis = 0 if transposed else 1
        if sw.size not in (1, nout) or (sw.size > 1 and waxis != chan_axis):
            raise UnsupportedModelError(f"{where}: weight scales are not per output column",
                                        hint=_HINT)
        if len(in_shape) < 2 or in_shape[-1] != wt.shape[1]:
            return None
        qop = QOp(kind="dense", in_shape=in_shape, out_shape=out_shape, **common)
    acc_scale = sx * np.broadcast_to(sw, (nout,))
    bias = _bias_values(g, m.bias, nout, acc_scale, where)
    ms = [quantize_multiplier(float(s) / sy, where) for s in acc_scale]
    mult = np.array([v[0] for v in ms], np.int32)
    shift = np.array([v[1] for v in ms], np.int8)
    return qop, x, [np.ascontiguousarray(wt, np.int8), bias, mult, shift]


def rewrite_qdq(mod) -> tuple[Any, list[QOp]]:
    """Fold every ``dequantize → conv2d/matmul (+bias, relu/clip) → quantize`` chain of
    ``mod["main"]`` into a qop ``call_tir``. Returns the new module and the folded ops."""
    import tvm
    from tvm import relax
    from tvm.relax.expr_functor import PyExprMutator, mutator

    g = _Graph(mod["main"])
    folded: list[QOp] = []
    cache: dict[str, Any] = {}

    @mutator
    class _Rewriter(PyExprMutator):
        def visit_var_binding_(self, binding):  # noqa: N802 (TVM's visitor name)
            value = binding.value
            if _op_name(value) == "relax.quantize":
                where = f"binding {_var_name(binding.var)}"
                m = _match_chain(g, value.args[0])
                built = _build_qop(g, m, value, where) if m is not None else None
                if m is not None and built is None:
                    log.info("%s: %s chain not folded (layout/shape); computed in float",
                             where, _op_name(m.op))
                if built is not None:
                    qop, x, arrays = built
                    key = qop.to_json().replace(where, "") + str(arrays[0].shape)
                    if key not in cache:
                        func = qop_prim_func(qop, arrays[0].shape)
                        cache[key] = self.builder_.add_func(func, f"pemesh_q{qop.kind}_{len(cache)}")
                    args = [self.visit_expr(x)] + [relax.const(a) for a in arrays]
                    call = relax.call_tir(cache[key], args,
                                          relax.TensorType(qop.out_shape, qop.out_dtype))
                    new_var = self.builder_.emit(call, name_hint=_var_name(binding.var))
                    self.set_var_remap(binding.var, new_var)
                    folded.append(qop)
                    return
            super().visit_var_binding_(binding)

    rw = _Rewriter(mod)
    new_main = rw.visit_expr(mod["main"])
    out = rw.builder_.get()
    out["main"] = new_main
    out = relax.transform.DeadCodeElimination(["main"])(out)
    del tvm
    return out, folded


def is_qdq(mod) -> bool:
    """Whether ``mod["main"]`` contains ``quantize``/``dequantize`` ops."""
    text = mod["main"].script(show_meta=False)
    return "R.quantize(" in text or "R.dequantize(" in text


def quantize_model(model: ImportedModel, onnx_model: Any = None) -> ImportedModel:
    """The integer form of a QDQ model (unchanged if it has no QDQ). ``onnx_model`` (the
    ``ModelProto``) lets unsupported schemes be reported by ONNX node name."""
    if onnx_model is not None:
        check_onnx_qdq(onnx_model)
    if not is_qdq(model.mod):
        return model
    mod, folded = rewrite_qdq(model.mod)
    if is_qdq(mod):
        log.info("%s: quantize/dequantize left at float boundaries after folding %d op(s)",
                 model.name, len(folded))
    meta = dict(model.meta, quantized_ops=len(folded))
    log.info("%s: folded %d QDQ chain(s) into integer ops", model.name, len(folded))
    return dataclasses.replace(model, mod=mod, meta=meta)
