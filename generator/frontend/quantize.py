"""int8 models: fold QDQ chains into integer operators (a Relax rewrite after import).

TVM's ONNX frontend imports a QDQ model literally, and its TFLite frontend imports a
full-integer model the same way (NHWC, the fused RELU/RELU6 as an integer ``clip`` after the
``quantize``, FC weights as ``dequantize(permute_dims(W))``): ``dequantize`` → float ``conv2d``/``matmul``
(+ bias, relu/clip) → ``quantize``. :func:`quantize_model` replaces every such chain by one
``call_tir`` into an integer PrimFunc (a *qop*) that computes

    acc[o]  = bias_q[o] + sum_k (x[k] - x_zp) * w[o, k]                 (int8 x int8 -> int32)
    y[o]    = clamp(y_zp + requant(acc, M[o], e[o]), lo, hi)

with TFLite's QuantizeMultiplier/MultiplyByQuantizedMultiplier for TFLite models (bit-exact with
TFLite Micro; also its int8 ADD and AVERAGE_POOL_2D: qpatterns.py), one rounding half up for ONNX
(closest to onnxruntime); see qops.py. ``lo``/``hi`` fold a ReLU or Clip (exact).

Supported schemes: activations int8 or uint8 with any zero point, per-tensor; weights int8,
symmetric (zero point 0), per-tensor or per-output-channel; bias int32 (a DequantizeLinear with
scale ≈ x_scale·w_scale) or float. Everything else raises :class:`UnsupportedModelError` naming
the ONNX node (:func:`check_onnx_qdq`) or the Relax binding.

Each qop PrimFunc carries the attribute ``pemesh.qop`` (JSON: kind, geometry, zero points,
clamp) and ``op_pattern`` = opaque, so fusion keeps it one step: ``generator/aot/accel.py`` reads the
attribute to offload the step. Its accumulator is a one-element buffer per output element (no
int32 temporary of the output size in the arena). NHWC convs become NCHW qops with a
``permute_dims`` where the graph enters/leaves a run of qops. The qop TIR and the fixed-point
helpers live in ``generator/frontend/qops.py`` (re-exported here).

Scales left at float boundaries are snapped to C-exact float32 (:func:`snap_scales`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from generator.errors import UnsupportedModelError
from generator.frontend.qops import QOP_ATTR, QOp, multipliers, qop_prim_func, quantize_multiplier  # noqa: F401
from generator.frontend.qops import requantize_ref  # noqa: F401 (re-export)
from generator.frontend.qpatterns import act_bounds, match_tflite_op, qop_func
from generator.types import ImportedModel

log = logging.getLogger(__name__)

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
        data = getattr(expr, "data", None)
        data = expr.value if data is None else data
        return np.asarray(data.numpy() if hasattr(data, "numpy") else data)
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


def _fold(g: _Graph, expr) -> np.ndarray | None:
    """A constant, or a product of constants (TFLite's ``x_scale * w_scale`` bias scale)."""
    e = g.value(expr)
    c = _const(e)
    if c is None and _op_name(e) == "relax.multiply":
        a, b = _fold(g, e.args[0]), _fold(g, e.args[1])
        if a is not None and b is not None:
            c = (a.astype(np.float32) * b.astype(np.float32)).astype(np.float32)
    return c


def _dequant(g: _Graph, expr):
    """``(source, scale, zero_point, axis)`` if ``expr`` is a ``dequantize``, else None."""
    e = g.value(expr)
    if _op_name(e) != "relax.dequantize":
        return None
    scale, zp = _fold(g, e.args[1]), _fold(g, e.args[2])
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
        bscale = np.broadcast_to(scale.reshape(-1), (vals.size,))
        if vals.dtype == np.int32 and vals.size in (1, n) and np.allclose(  # accumulator units:
                bscale, np.broadcast_to(acc_scale, bscale.shape), rtol=1e-5):  # used as is
            return np.ascontiguousarray(np.broadcast_to(vals.reshape(-1), (n,)), np.int32)
        real = vals.astype(np.float64).reshape(-1) * bscale
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


_LAYOUT_OPS = ("relax.permute_dims", "relax.reshape")


def _relayout(arrs: list[np.ndarray], call) -> list[np.ndarray]:
    """Apply a ``permute_dims``/``reshape`` call to numpy arrays."""
    if _op_name(call) == "relax.reshape":
        shape = tuple(int(d) for d in call.ty.shape.values)
        return [a.reshape(shape) for a in arrs]
    axes = [int(a) for a in call.attrs.axes] if call.attrs.axes is not None else None
    return [np.transpose(a, axes) for a in arrs]


def _weights(g: _Graph, expr, where: str):
    """``(int8 weights, channel index per weight, scales)`` of a constant weight, in the layout
    the op sees: a ``dequantize`` of a constant, each side possibly permuted/reshaped (ONNX
    Gemm transposes the float weight; TFLite transposes the int8 FC weight and reshapes the
    depthwise one). None if ``expr`` is not such a chain."""
    outer, e = [], g.value(expr)
    while _op_name(e) in _LAYOUT_OPS:
        outer.append(e)
        e = g.value(e.args[0])
    dq = _dequant(g, e)
    if dq is None:
        return None
    src, scale, zp, axis = dq
    inner, e = [], g.value(src)
    while _op_name(e) in _LAYOUT_OPS:
        inner.append(e)
        e = g.value(e.args[0])
    w = _const(e)
    if w is None:
        return None
    if w.dtype != np.int8:
        raise UnsupportedModelError(f"{where}: weights are {w.dtype}, pemesh needs int8",
                                    hint=_HINT)
    if np.any(zp != 0):
        raise UnsupportedModelError(f"{where}: weights have a non-zero zero point (asymmetric)",
                                    hint=_HINT)
    for call in reversed(inner):
        w = _relayout([w], call)[0]
    ch = np.zeros(w.shape, np.int64)
    if scale.size > 1:
        shape = [1] * w.ndim
        shape[axis] = -1
        ch = ch + np.arange(w.shape[axis]).reshape(shape)
    for call in reversed(outer):
        w, ch = _relayout([w, ch], call)
    return w, ch, scale.reshape(-1)


def _out_scales(ch: np.ndarray, scale: np.ndarray, where: str) -> np.ndarray:
    """Per-output-channel weight scales (output channels on axis 0 of ``ch``)."""
    chm = ch.reshape(ch.shape[0], -1)
    if np.any(chm != chm[:, :1]):
        raise UnsupportedModelError(f"{where}: weight scales are not per output channel",
                                    hint=_HINT)
    return scale[chm[:, 0]]


def _build_qop(g: _Graph, m: _Match, q_call, where: str, clamp=(-(1 << 31), 1 << 31),
               tflite: bool = False):
    """``(QOp, x_var, [w, bias, mult, shift] arrays, layout)`` for a matched chain, or None.
    ``clamp``: an integer clip applied after the quantize (TFLite's fused activations). An NHWC
    conv becomes an NCHW qop (``layout`` "NHWC": the caller transposes its input and output).
    ``tflite``: TFLite Micro's multipliers and rounding (qops.multipliers); else (ONNX QDQ) one
    rounding half up, which stays closest to onnxruntime's float requantization."""
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
    w, ch, scales = wq
    sy, zy = _const(q_call.args[1]), _const(q_call.args[2])
    if sy is None or zy is None or sy.size != 1:
        raise UnsupportedModelError(f"{where}: per-channel output quantization is not supported",
                                    hint=_HINT)
    out_dtype = str(q_call.attrs.out_dtype)
    if out_dtype not in _ACT_DTYPES:
        raise UnsupportedModelError(f"{where}: quantizes to {out_dtype}; pemesh runs int8/uint8",
                                    hint=_HINT)
    sy, zy = float(sy.reshape(-1)[0]), int(zy.reshape(-1)[0])
    sx, zx = float(sx.reshape(-1)[0]), int(zx.reshape(-1)[0])
    in_shape = tuple(int(d) for d in op.args[0].ty.shape.values)
    out_shape = tuple(int(d) for d in op.ty.shape.values)
    qmin, qmax = (-128, 127) if out_dtype == "int8" else (0, 255)
    lo, hi = act_bounds(m.lo, m.hi, sy, zy, qmin, qmax)
    lo, hi = max(lo, clamp[0]), min(hi, clamp[1])
    common = dict(in_dtype=str(x.ty.dtype), out_dtype=out_dtype, in_zp=zx, out_zp=zy,
                  act_min=lo, act_max=hi, source=where,
                  rounding="tflite" if tflite else "half_up")
    layout = "NCHW"
    if _op_name(op) == "relax.nn.conv2d":
        a = op.attrs
        layout, klayout = str(a.data_layout), str(a.kernel_layout)
        if layout not in ("NCHW", "NHWC") or str(a.out_layout) not in ("", layout) or \
                sorted(klayout) != sorted("OIHW") or len(in_shape) != 4:
            return None
        if layout == "NHWC":
            in_shape = tuple(in_shape[i] for i in (0, 3, 1, 2))
            out_shape = tuple(out_shape[i] for i in (0, 3, 1, 2))
        perm = [klayout.index(c) for c in "OIHW"]
        wt, ch = np.transpose(w, perm), np.transpose(ch, perm)
        pads = tuple(int(p) for p in a.padding)
        pads = pads * 2 if len(pads) == 2 else pads
        qop = QOp(kind="conv2d", in_shape=in_shape, out_shape=out_shape,
                  strides=tuple(int(v) for v in a.strides), pads=pads[:4],
                  dilation=tuple(int(d) for d in a.dilation), groups=int(a.groups),
                  kernel=(int(wt.shape[2]), int(wt.shape[3])), **common)
    else:
        if w.ndim != 2:
            return None
        wt, ch = w.T, ch.T                     # matmul's [K, N] → [N, K]
        if len(in_shape) < 2 or in_shape[-1] != wt.shape[1]:
            return None
        qop = QOp(kind="dense", in_shape=in_shape, out_shape=out_shape, **common)
    nout = wt.shape[0]
    acc_scale = sx * _out_scales(ch, scales, where)
    bias = _bias_values(g, m.bias, nout, acc_scale, where)
    mult, shift = multipliers(sx, _out_scales(ch, scales, where), sy, where,
                              float_product=tflite and qop.kind == "dense" and scales.size == 1)
    return qop, x, [np.ascontiguousarray(wt, np.int8), bias, mult, shift], layout


_HELPERS = {"op_name": _op_name, "const": _const, "dequant": _dequant}


def _int_bound(v, up: bool) -> int:
    """A clip bound (PrimValue/FloatImm/IntImm) as an int (rounded inward)."""
    while hasattr(v, "value"):
        v = v.value
    return int(math.floor(float(v))) if up else int(math.ceil(float(v)))


def _clipped_quantizes(func) -> dict[Any, Any]:
    """``{quantize var: clip binding}`` where a ``quantize``'s only use is an integer ``clip``
    (TFLite's fused activation on a quantized output): the pair folds into one qop."""
    from tvm import relax

    uses: dict[Any, int] = {}
    clips: dict[Any, Any] = {}
    bound: dict[Any, Any] = {}
    for block in func.body.blocks:
        for b in block.bindings:
            bound[b.var] = b.value
            for v in relax.analysis.free_vars(b.value):
                uses[v] = uses.get(v, 0) + 1
            if _op_name(b.value) == "relax.clip" and isinstance(b.value.args[0], relax.Var):
                clips[b.value.args[0]] = b
    for v in relax.analysis.free_vars(func.body.body):
        uses[v] = uses.get(v, 0) + 1
    return {v: c for v, c in clips.items()
            if uses.get(v) == 1 and _op_name(bound.get(v)) == "relax.quantize"}


def rewrite_qdq(mod, tflite: bool = False) -> tuple[Any, list[QOp]]:
    """Fold every ``dequantize → conv2d/matmul (+bias, relu/clip) → quantize [→ int clip]``
    chain of ``mod["main"]`` into a qop ``call_tir``; with ``tflite`` (TFLite Micro's
    arithmetic, see _build_qop) also TFLite's int8 ADD and AVERAGE_POOL_2D (qpatterns.py; ONNX
    keeps ADD in float, as onnxruntime's QLinearAdd). Returns the new module and the folded ops.
    NHWC convs and pools (TFLite) become NCHW qops between ``permute_dims``; a qop that reads
    another one's output takes its NCHW tensor directly, so chains of qops have no transposes."""
    from tvm import relax
    from tvm.relax.expr_functor import PyExprMutator, mutator

    g = _Graph(mod["main"])
    clipped = _clipped_quantizes(mod["main"])
    clip_vars = {c.var: v for v, c in clipped.items()}
    folded: list[QOp] = []
    cache: dict[str, Any] = {}
    nchw: dict[Any, Any] = {}      # NHWC var (after rewrite) -> the qop's NCHW output

    @mutator
    class _Rewriter(PyExprMutator):
        def _emit(self, binding, qop, ins, consts, wshape, nhwc: bool) -> None:
            """Emit the call; ``nhwc``: its NCHW output is transposed back (and kept)."""
            where = f"binding {_var_name(binding.var)}"
            key = qop.to_json().replace(where, "") + str(wshape)
            if key not in cache:
                func = qop_func(qop, wshape)
                cache[key] = self.builder_.add_func(func, f"pemesh_q{qop.kind}_{len(cache)}")
            call = relax.call_tir(cache[key], list(ins) + [relax.const(a) for a in consts],
                                  relax.TensorType(qop.out_shape, qop.out_dtype))
            is_out = not isinstance(binding.var, relax.DataflowVar)
            emit = self.builder_.emit_output if is_out and not nhwc else self.builder_.emit
            new_var = emit(call, name_hint=_var_name(binding.var))
            if nhwc:
                back = relax.op.permute_dims(new_var, [0, 2, 3, 1])
                y = (self.builder_.emit_output if is_out else self.builder_.emit)(
                    back, name_hint=_var_name(binding.var))
                nchw[y], new_var = new_var, y
            self.set_var_remap(binding.var, new_var)
            folded.append(qop)

        def _fold(self, binding, q_call, clamp, pool: bool = False) -> bool:
            where = f"binding {_var_name(binding.var)}"
            tfl = match_tflite_op(g, binding.value, q_call, where, clamp, _HELPERS, pool) \
                if tflite or pool else None
            if tfl is not None:
                qop, srcs, consts, wshape, layout = tfl
            elif pool:
                return False
            else:
                m = _match_chain(g, q_call.args[0])
                built = _build_qop(g, m, q_call, where, clamp, tflite) if m is not None else None
                if m is not None and built is None:
                    log.info("%s: %s chain not folded (layout/shape); computed in float",
                             where, _op_name(m.op))
                if built is None:
                    return False
                qop, x, consts, layout = built
                srcs, wshape = [x], consts[0].shape
            ins = [self.visit_expr(x) for x in srcs]
            nhwc = layout == "NHWC" and (qop.kind != "add" or all(v in nchw for v in ins))
            if nhwc:
                ins = [nchw[v] if v in nchw else self.builder_.emit(relax.op.permute_dims(
                    v, [0, 3, 1, 2]), name_hint="nchw") for v in ins]
            if nhwc and qop.kind == "add":
                shape = tuple(int(d) for d in ins[0].ty.shape.values)
                qop = dataclasses.replace(qop, in_shape=shape, out_shape=shape)
            self._emit(binding, qop, ins, consts, wshape, nhwc)
            return True

        def visit_var_binding_(self, binding):  # noqa: N802 (TVM's visitor name)
            value = binding.value
            if _op_name(value) == "relax.quantize" and binding.var not in clipped:
                if self._fold(binding, value, (-(1 << 31), 1 << 31)):
                    return
            elif binding.var in clip_vars:
                clamp = (_int_bound(value.args[1], False), _int_bound(value.args[2], True))
                if self._fold(binding, g.value(value.args[0]), clamp):
                    return
            elif _op_name(value) == "relax.astype":
                if self._fold(binding, None, None, pool=True):
                    return
            super().visit_var_binding_(binding)

    rw = _Rewriter(mod)
    new_main = rw.visit_expr(mod["main"])
    out = rw.builder_.get()
    out["main"] = new_main
    out = relax.transform.DeadCodeElimination(["main"])(out)
    return out, folded


def _c_exact(scale: float) -> float:
    """The float32 that TVM's C codegen prints as ``%.6e`` and the C compiler reads back."""
    return float(np.float32(float(f"{np.float32(scale):.6e}")))


def snap_scales(mod) -> tuple[Any, int]:
    """Round the scalar scales of the ``quantize``/``dequantize`` ops left in ``main`` to the
    float32 that TVM's C codegen prints exactly (it writes float immediates as ``%.6e``, so an
    arbitrary scale, e.g. a calibrated TFLite one, would differ by an ulp between the C and the
    TVM reference). The change is below 1e-6 relative: far inside one quantization step."""
    from tvm import relax
    from tvm.relax.expr_functor import PyExprMutator, mutator

    changed = [0]

    @mutator
    class _Snap(PyExprMutator):
        def visit_call_(self, call):  # noqa: N802 (TVM's visitor name)
            call = super().visit_call_(call)
            name = _op_name(call)
            if name in ("relax.quantize", "relax.dequantize"):
                sc = _const(call.args[1])
                if sc is not None and sc.size == 1 and _c_exact(float(sc)) != float(sc):
                    changed[0] += 1
                    fn = relax.op.quantize if name == "relax.quantize" else relax.op.dequantize
                    return fn(call.args[0], relax.const(_c_exact(float(sc)), "float32"),
                              call.args[2], axis=int(call.attrs.axis),
                              out_dtype=str(call.attrs.out_dtype))
            return call

    rw = _Snap(mod)
    new_main = rw.visit_expr(mod["main"])
    out = rw.builder_.get()
    out["main"] = new_main
    return out, changed[0]


def is_qdq(mod) -> bool:
    """Whether ``mod["main"]`` contains ``quantize``/``dequantize`` ops."""
    text = mod["main"].script(show_meta=False)
    return "R.quantize(" in text or "R.dequantize(" in text


def quantize_model(model: ImportedModel, onnx_model: Any = None) -> ImportedModel:
    """The integer form of a QDQ model (unchanged if it has no QDQ). ``onnx_model`` (the
    ``ModelProto``) lets unsupported schemes be reported by ONNX node name."""
    if onnx_model is not None:
        check_onnx_qdq(onnx_model)
    had_qdq = is_qdq(model.mod)
    if not had_qdq and "R.nn.avg_pool2d(" not in model.mod["main"].script(show_meta=False):
        return model
    mod, folded = rewrite_qdq(model.mod, tflite=model.format == "tflite")
    if not folded and not had_qdq:
        return model                  # a float model with an average pool
    mod, snapped = snap_scales(mod)
    if snapped:
        log.info("%s: %d boundary scale(s) rounded to C-exact float32", model.name, snapped)
    if is_qdq(mod):
        log.info("%s: quantize/dequantize left at float boundaries after folding %d op(s)",
                 model.name, len(folded))
    meta = dict(model.meta, quantized_ops=len(folded))
    log.info("%s: folded %d QDQ chain(s) into integer ops", model.name, len(folded))
    return dataclasses.replace(model, mod=mod, meta=meta)


def quantize_if_qdq(model: ImportedModel, path: Path) -> ImportedModel:
    """Fold the dequantize→op→quantize chains of an ONNX QDQ model or of a full-integer TFLite
    model (which TVM's TFLite frontend imports as such chains) into integer ops (int8 compute);
    other models pass unchanged. The TVM reference is then the integer graph's."""
    if model.format == "tflite":
        return quantize_model(model)   # schemes were checked by the frontend, per operator
    if model.format != "onnx":
        return model
    import onnx

    return quantize_model(model, onnx.load(str(path)))
