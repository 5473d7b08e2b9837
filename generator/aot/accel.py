"""Accelerator offload: which int8 steps run on a PE's MAC array, and the C that calls it.

A step is offloadable when its PrimFunc is a qop of ``generator/frontend/quantize.py`` (attribute
``pemesh.qop``) and the PE kind's :class:`~generator.boards.catalog.Accelerator` supports it:

* kinds: ``conv2d`` (groups 1), ``depthwise_conv2d`` (groups = in_c = out_c), ``dense``
  (Gemm, or MatMul by a constant; leading dims become rows); grouped convs fall back;
* int8 activations in and out (uint8 falls back), ``bias`` and ``requantize`` in ``fused``
  (and ``relu``/``clip`` when the step clamps tighter than int8);
* dims that fit the parameter struct (``uint16``/``uint8`` fields).

Weight layout (fixed here, documented in ``include/pemesh/accel.h``): ``[out_padded][k_padded]``
int8, K in OHWI order ``k = (ky*kw + kx)*cin_g + ci``, out channels padded with zeros to the array
columns (``mac_array[1]``, 16) and K to its rows (``mac_array[0]``, 4); bias/multiplier/shift
padded the same way. Activations stay NCHW (the array's input stage gathers the im2col column).

An offloaded step becomes, in ``<stage>_lib1.c``, a ``pemesh_accel_conv2d``/``_dense`` call
with a ``static const struct pemesh_accel_*_params`` and its re-laid-out arrays (flash); the
step's TVM function and its original weight constants are left out of the stage.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from generator.frontend.quantize import QOP_ATTR, QOp

log = logging.getLogger(__name__)

_U8, _U16 = 255, 65535


@dataclass(frozen=True)
class OffloadDecision:
    """Per step of a stage: offloaded or not, and why (for the compile report)."""

    step: int
    func: str
    kind: str            # conv2d | depthwise_conv2d | dense | "" (not a qop)
    offloaded: bool
    reason: str
    macs: int
    accel_cycles: int    # modeled cycles on the array (0 when not offloaded)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class AccelCall:
    """The C of one offloaded step: definitions (file scope) and the call statement."""

    step: int
    kind: str
    definitions: str
    call: str
    const_bytes: int     # bytes of the re-laid-out arrays (flash)


def _ceil(a: int, b: int) -> int:
    return -(-a // b) * b


def step_qop(pm, si: int) -> QOp | None:
    """The qop description of step ``si`` of a PreparedModel, or None."""
    func = pm.fused[pm.prog.steps[si].func]
    attrs = getattr(func, "attrs", None)
    if attrs is None or QOP_ATTR not in attrs:
        return None
    return QOp.from_json(str(attrs[QOP_ATTR]))


def qop_kind(q: QOp) -> str:
    if q.kind != "conv2d":
        return q.kind
    c = q.in_shape[1]
    if q.groups == 1:
        return "conv2d"
    if q.groups == c and q.out_shape[1] == c:
        return "depthwise_conv2d"
    return "grouped_conv2d"


def padded_macs(q: QOp, accel) -> int:
    """MAC slots the array spends on ``q`` (output channels and K padded to the array)."""
    rows, cols = accel.mac_array
    kind = qop_kind(q)
    if kind == "dense":
        m = int(np.prod(q.in_shape[:-1]))
        return m * _ceil(q.out_shape[-1], cols) * _ceil(q.in_shape[-1], rows)
    n, o, oh, ow = q.out_shape
    cin_g = 1 if kind == "depthwise_conv2d" else q.in_shape[1] // q.groups
    k = q.kernel[0] * q.kernel[1] * cin_g
    return n * oh * ow * _ceil(o, cols) * _ceil(k, rows)


def accel_cycles(step, accel) -> int:
    """Modeled accelerator cycles of one step: ``setup + MACs / macs_per_cycle``.

    ``step`` is a :class:`QOp` (then the padded MAC count is used: channels and K rounded up to
    the array) or anything with a ``macs`` attribute (a StepFacts/OpInfo: plain MACs).
    """
    macs = padded_macs(step, accel) if isinstance(step, QOp) else int(step.macs)
    return accel.estimate_cycles(macs)


def decide(q: QOp | None, accel) -> tuple[bool, str, str]:
    """``(offload?, kind, reason)`` for one step."""
    if accel is None:
        return False, "", "no accelerator on this PE kind"
    if q is None or q.kind not in ("conv2d", "dense"):
        return False, "", "not an int8 conv/dense step"
    kind = qop_kind(q)
    if kind == "grouped_conv2d":
        return False, kind, f"grouped conv (groups={q.groups}) is not supported by the array"
    op_ok = accel.supports(kind, "int8") or (kind == "dense" and accel.supports("matmul", "int8"))
    if not op_ok:
        return False, kind, f"{accel.name} does not list {kind} on int8"
    if q.in_dtype != "int8" or q.out_dtype != "int8":
        return False, kind, f"activations are {q.in_dtype}->{q.out_dtype}; the array takes int8"
    need = {"bias", "requantize"}
    if (q.act_min, q.act_max) != (-128, 127):
        need.add("relu" if q.act_max == 127 else "clip")
    missing = sorted(need - set(accel.fused))
    if missing:
        return False, kind, f"{accel.name} cannot fuse {', '.join(missing)}"
    rows, cols = accel.mac_array
    if kind == "dense":
        k, n = q.in_shape[-1], q.out_shape[-1]
        if _ceil(k, rows) > _U16 or _ceil(n, cols) > _U16:
            return False, kind, "dense dims exceed the driver's 16-bit fields"
        return True, kind, "offloaded"
    n, c, h, w = q.in_shape
    _, o, oh, ow = q.out_shape
    cin_g = 1 if kind == "depthwise_conv2d" else c
    if max(n, c, h, w, oh, ow, _ceil(o, cols), _ceil(q.kernel[0] * q.kernel[1] * cin_g, rows)) \
            > _U16 or max(*q.kernel, *q.strides, *q.dilation, q.pads[0], q.pads[1]) > _U8:
        return False, kind, "conv dims exceed the driver's fields"
    return True, kind, "offloaded"


def relayout_weights(q: QOp, w: np.ndarray, accel) -> np.ndarray:
    """Weights of the qop (conv OIHW, dense [N, K]) → ``[out_padded][k_padded]`` int8."""
    rows, cols = accel.mac_array
    if q.kind == "dense":
        mat = w.reshape(w.shape[0], -1)
    else:
        mat = np.transpose(w, (0, 2, 3, 1)).reshape(w.shape[0], -1)  # OIHW → OHWI → [O, K]
    out = np.zeros((_ceil(mat.shape[0], cols), _ceil(mat.shape[1], rows)), np.int8)
    out[:mat.shape[0], :mat.shape[1]] = mat
    return out


def _pad_vec(v: np.ndarray, n: int, dtype) -> np.ndarray:
    out = np.zeros(n, dtype)
    out[:v.size] = v.reshape(-1)
    return out


def _arr(ctype: str, name: str, a: np.ndarray) -> str:
    items = ", ".join(str(int(x)) for x in a.reshape(-1).tolist())
    return (f"static const {ctype} {name}[{a.size}] __attribute__((aligned(4))) = "
            f"{{{items}}};")


IN, OUT = "@IN@", "@OUT@"   # placeholders of the call, filled by the emitter


def make_call(pm, si: int, q: QOp, kind: str, accel, prefix: str) -> AccelCall:
    """The C definitions and call of offloaded step ``si`` (``prefix``: a unique C name).
    The call has :data:`IN`/:data:`OUT` where the emitter puts the tensor expressions."""
    in_expr, out_expr = IN, OUT
    step = pm.prog.steps[si]
    w, bias, mult, shift = (pm.prog.tensors[t].value for t in (step.orig_args or step.args)[1:5])
    wl = relayout_weights(q, np.asarray(w), accel)
    n_pad, k_pad = wl.shape
    b = _pad_vec(np.asarray(bias), n_pad, np.int32)
    m = _pad_vec(np.asarray(mult), n_pad, np.int32)
    s = _pad_vec(np.asarray(shift), n_pad, np.int8)
    defs = [f"/* step {si}: {q.source or step.func} -> {kind} on {accel.name} */",
            _arr("int8_t", f"{prefix}_w", wl), _arr("int32_t", f"{prefix}_bias", b),
            _arr("int32_t", f"{prefix}_mult", m), _arr("int8_t", f"{prefix}_shift", s)]
    rq = (f".rq = {{ .input_zero_point = {q.in_zp}, .output_zero_point = {q.out_zp}, "
          f".act_min = {q.act_min}, .act_max = {q.act_max}, .bias = {prefix}_bias, "
          f".multiplier = {prefix}_mult, .shift = {prefix}_shift, "
          f".rounding = {1 if q.rounding == 'half_up' else 0} }}")
    if kind == "dense":
        rows_ = int(np.prod(q.in_shape[:-1]))
        defs.append(
            f"static const struct pemesh_accel_dense_params {prefix}_p = {{ .rows = {rows_}u, "
            f".in_features = {q.in_shape[-1]}u, .out_features = {q.out_shape[-1]}u, "
            f".k_padded = {k_pad}u, .out_padded = {n_pad}u, .weights = {prefix}_w, {rq} }};")
        call = f"pemesh_accel_dense(&{prefix}_p, (const int8_t*){in_expr}, (int8_t*){out_expr})"
    else:
        n, c, h, wd = q.in_shape
        _, o, oh, ow = q.out_shape
        defs.append(
            f"static const struct pemesh_accel_conv2d_params {prefix}_p = {{ .batch = {n}u, "
            f".in_c = {c}u, .in_h = {h}u, .in_w = {wd}u, .out_c = {o}u, .out_h = {oh}u, "
            f".out_w = {ow}u, .kernel_h = {q.kernel[0]}u, .kernel_w = {q.kernel[1]}u, "
            f".stride_h = {q.strides[0]}u, .stride_w = {q.strides[1]}u, "
            f".dilation_h = {q.dilation[0]}u, .dilation_w = {q.dilation[1]}u, "
            f".pad_top = {q.pads[0]}u, .pad_left = {q.pads[1]}u, "
            f".depthwise = {1 if kind == 'depthwise_conv2d' else 0}u, .reserved = 0u, "
            f".k_padded = {k_pad}u, .out_padded = {n_pad}u, .weights = {prefix}_w, {rq} }};")
        call = f"pemesh_accel_conv2d(&{prefix}_p, (const int8_t*){in_expr}, (int8_t*){out_expr})"
    const_bytes = wl.nbytes + b.nbytes + m.nbytes + s.nbytes
    return AccelCall(si, kind, "\n".join(defs) + "\n", call, const_bytes)


def plan_offload(pm, steps: list[int], accel) -> list[OffloadDecision]:
    """The offload decision of every step of a stage (in ``steps`` order)."""
    out = []
    for si in steps:
        q = step_qop(pm, si)
        ok, kind, reason = decide(q, accel)
        macs = q.macs if q is not None else pm.funcs[pm.prog.steps[si].func].macs
        cycles = accel_cycles(q, accel) if ok and q is not None else 0
        out.append(OffloadDecision(si, pm.prog.steps[si].func, kind, ok, reason, macs, cycles))
        if q is not None:
            log.info("step %d (%s, %s): %s", si, pm.prog.steps[si].func, kind, reason)
    return out
