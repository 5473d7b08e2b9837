"""Schedules for the float32 conv2d (NCHW, groups 1) and matmul/dense operators that Relax
legalizes (TOPI's ``pad_temp`` → ``conv2d_nchw`` → bias/activation blocks; ``matmul`` →
``T_add``), for FPU PEs (the M4F: one VFMA per MAC once the loop is tiled).

The same recipe as the int8 kernels: padding made as a band per output row (an arena temporary,
moved back to the root for ``lower.py`` to hoist), a register tile of output channels x columns
under the reduction, unrolled taps, the elementwise epilogue (bias, ReLU, ...) inlined into one
block attached at the tile. The reduction order of every output (input channel, ky, kx) is the
unscheduled one, so results differ only by FMA contraction (checked within 1e-5).
"""

from __future__ import annotations

from generator.aot.schedules.kernels import BAND_LIMIT, _divisor

_REDUCTIONS = ("conv2d_nchw", "matmul", "T_matmul_NT", "NT_matmul")


def _ext(sch, loop) -> int:
    return int(sch.get(loop).extent)


def _inline_epilogue(sch, red):
    """Inline every block but the reduction, the padding and the output block."""
    import tvm  # noqa: F401

    changed = True
    while changed:
        changed = False
        root = sch.get_sblock("root")
        outs = {sch.get(b).name_hint for b in sch.get_output_blocks(root)}
        for b in sch.get_child_blocks(root):
            name = sch.get(b).name_hint
            if name in outs or name == sch.get(red).name_hint or name == "pad_temp":
                continue
            try:
                sch.compute_inline(b)
                changed = True
                break
            except Exception:  # noqa: BLE001 — not inlinable: keep it
                continue


def schedule(func):
    """The scheduled PrimFunc, or None when ``func`` is not a conv/matmul this recipe covers."""
    import tvm
    import tvm.s_tir as s_tir
    import tvm.s_tir.transform as stx

    sch = s_tir.Schedule(tvm.IRModule({"main": func}))
    root = sch.get_sblock("root")
    blocks = {sch.get(b).name_hint: b for b in sch.get_child_blocks(root)}
    red_name = next((n for n in blocks if n in _REDUCTIONS), None)
    if red_name is None or any(str(b.ty.dtype) != "float32" for b in func.params):
        return None
    red = blocks[red_name]
    _inline_epilogue(sch, red)
    root = sch.get_sblock("root")
    outs = sch.get_output_blocks(root)
    epi = None
    if not any(sch.get(o).name_hint == red_name for o in outs):
        if len(outs) != 1:
            return None
        epi = outs[0]
    loops = sch.get_loops(red)
    if red_name == "conv2d_nchw":
        if len(loops) != 7:
            return None
        n, o, h, w, ci, ky, kx = loops
        to, tw = _divisor(_ext(sch, o), 4), _divisor(_ext(sch, w), 2)
        oo, oi = sch.split(o, [None, to])
        wo, wi = sch.split(w, [None, tw])
        sch.reorder(n, h, oo, wo, ci, ky, kx, oi, wi)
        if epi is not None:
            sch.reverse_compute_at(epi, wo)
        sch.decompose_reduction(red, ci)
        for lp in (ky, kx, oi, wi):
            sch.unroll(lp)
        anchor = wo
        if "pad_temp" in blocks:
            pad = sch.get_sblock("pad_temp")
            shape = [int(r.extent) for r in sch.get(pad).writes[0].region]
            band = shape[1] * _ext(sch, ky) * shape[3] * 4
            if band <= BAND_LIMIT:
                sch.compute_at(pad, h)
    else:
        if len(loops) < 2:
            return None
        *lead, o, k = loops
        to = _divisor(_ext(sch, o), 4)
        oo, oi = sch.split(o, [None, to])
        ko, ki = sch.split(k, [None, _divisor(_ext(sch, k), 4)])
        sch.reorder(*lead, oo, ko, ki, oi)
        if epi is not None:
            sch.reverse_compute_at(epi, oo)
        sch.decompose_reduction(red, ko)
        for lp in (ki, oi):
            sch.unroll(lp)
        anchor = oo
    init = sch.get_sblock(red_name + "_init")
    for blk in [init] + ([epi] if epi is not None else []):
        bl = sch.get_loops(blk)
        idx = [i for i, lp in enumerate(bl) if sch.get(lp).same_as(sch.get(anchor))][0]
        for lp in bl[idx + 1:]:
            sch.unroll(lp)
    mod = sch.mod
    for p in (stx.ConvertBlocksToOpaque(), stx.PlanAndUpdateBufferAllocationLocation(),
              stx.CompactBufferAllocation()):
        mod = p(mod)
    from generator.aot.schedules.kernels import _band_to_root
    return _band_to_root(mod["main"], "pad_temp")
