"""Cortex-M schedules for the int8 operators (qops), applied before C codegen.

The one hook: :func:`plan_schedules` runs in ``stage.prepare_model`` between building the program
and lowering. float32 conv2d/matmul PrimFuncs get ``fp32.schedule`` (no constants change). For
every qop PrimFunc it can schedule (``kernels.KINDS``) it

* re-makes the step constants the scheduled kernel takes (folded bias; on the fast ``half_up``
  requantize path, the shift minus 32; on a DSP ``cpu``, int16-pair packed weights for the SMLAD
  dense/pointwise kernels), as new constant tensors of the program, keeping the
  originals in ``Step.orig_args`` for the accelerator path (``accel.py``), and
* returns ``{relax name: scheduled PrimFunc}`` for ``lower.lower_prim_funcs`` to use instead of
  its auto-inline schedule.

A function is scheduled only when every step calling it can be, and only when the requantize
arithmetic of the unscheduled qop is one this package reproduces exactly (``requant.probe_mode``);
otherwise it keeps the unscheduled code. ``PEMESH_SCHEDULES=0`` turns the schedules off (the
unscheduled code, for comparisons).
"""

from __future__ import annotations

import logging
import os

import numpy as np

log = logging.getLogger(__name__)


def enabled() -> bool:
    return os.environ.get("PEMESH_SCHEDULES", "1") not in ("0", "off", "no")


def _qop_of(func):
    from generator.frontend.qops import QOP_ATTR, QOp

    attrs = getattr(func, "attrs", None)
    if attrs is None or QOP_ATTR not in attrs:
        return None
    return QOp.from_json(str(attrs[QOP_ATTR]))


def plan_schedules(fused, prog, *, enable: bool | None = None, cpu: str | None = None) -> dict:
    """Scheduled PrimFuncs by Relax name; rewrites the constants of their steps in ``prog``."""
    from generator.aot.schedules import kernels, requant

    if not (enabled() if enable is None else enable):
        return {}
    by_func: dict[str, list[int]] = {}
    for si, st in enumerate(prog.steps):
        by_func.setdefault(st.func, []).append(si)
    modes: dict[str, str] = {}
    out = {}
    for name, steps in sorted(by_func.items()):
        q = _qop_of(fused[name])
        if q is None:
            f32 = _fp32(fused[name], name)
            if f32 is not None:
                out[name] = f32
            continue
        if kernels.qop_kind(q) not in kernels.KINDS:
            continue
        if q.rounding not in modes:
            modes[q.rounding] = requant.probe_mode(q.rounding) or ""
        mode = modes[q.rounding]
        if not mode:
            log.info("schedules: the qop requantization matches no scheduled epilogue; "
                     "keeping the unscheduled int8 code")
            continue
        consts = []
        for si in steps:
            args = prog.steps[si].args
            if len(args) < 5 or any(prog.tensors[a].kind != "const" for a in args[1:5]):
                break
            consts.append([np.asarray(prog.tensors[a].value) for a in args[1:5]])
        else:
            shifts = np.concatenate([c[3].reshape(-1).astype(np.int64) for c in consts])
            if mode == "half_up":
                shifts = requant.right_shift(shifts).astype(np.int64)   # s = 31 - e
            fast = mode == "half_up" and bool(np.all(shifts >= 33))
            left = mode == "tflm" and bool(np.any(shifts > 0))
            wshape = consts[0][0].shape
            pairs = cpu in kernels.DSP_CPUS and kernels.pairs_ok(q)
            try:
                func = kernels.scheduled_func(q, wshape, mode, fast, left, pairs)
            except Exception as err:  # noqa: BLE001 — a shape the schedule does not cover
                log.info("schedules: %s (%s) kept unscheduled: %s", name, q.kind, err)
                continue
            for si, (w, bias, _mult, shift) in zip(steps, consts):
                st = prog.steps[si]
                st.orig_args = list(st.args)
                st.args[2] = _add_const(prog, kernels.fold_bias(q, w, bias))
                if pairs:
                    st.args[1] = _add_const(prog, kernels.pack_pairs(w))
                if mode == "half_up":       # the epilogue takes s = 31 - e (fast: s - 32)
                    rs = requant.right_shift(shift) - (32 if fast else 0)
                    st.args[4] = _add_const(prog, rs.astype(np.int8))
            out[name] = func.with_attrs(dict(fused[name].attrs))
            log.info("schedules: %s → %s tile %s, requantize %s%s%s", name,
                     kernels.qop_kind(q), kernels.tile_of(q, pairs), mode, " (fast)" if fast else "",
                     ", SMLAD pairs" if pairs else "")
    return out


def _fp32(func, name: str):
    from generator.aot.schedules import fp32

    try:
        f = fp32.schedule(func)
    except Exception as err:  # noqa: BLE001 — a shape the recipe does not cover
        log.info("schedules: %s kept unscheduled: %s", name, str(err).splitlines()[-1][:200])
        return None
    if f is not None:
        log.info("schedules: %s → fp32 tile", name)
        return f.with_attrs(dict(func.attrs)) if func.attrs is not None else f
    return None


def _add_const(prog, value: np.ndarray) -> int:
    return prog.add(value.shape, value.dtype, "const",
                    index=sum(t.kind == "const" for t in prog.tensors), value=value)
