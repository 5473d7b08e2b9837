"""Scheduled int8 kernels (Cortex-M): TIR compute per qop kind + a ``tvm.s_tir`` schedule.

The compute is the unscheduled qop's (``frontend/qops.py``) restated so that a schedule can make
it fast, with the same integer result:

* **padding out of the reduction**: a ``pad`` block copies the input once into an arena buffer
  padded with the *input zero point*; the reduction then has no bounds tests.
* **zero point folded into the bias**: the reduction is ``sum x * w`` on raw int8 and the bias
  constant is re-made per step at compile time as ``bias - zp * sum w`` (exact, since padded
  taps hold ``zp``): ``fold_bias``.
* **register tile**: output columns and output channels are split, the split-off loops go under
  the reduction and are unrolled (an ``acc`` tile that C keeps in registers),
  the kernel taps are unrolled, and the requantize block is attached at the tile
  (``reverse_compute_at``) after ``decompose_reduction``.

Layout: activations stay NCHW, weights OIHW. With the taps fully unrolled the reduction's inner
addresses are constant offsets from two pointers (LDRSB with an immediate), so the reduction is
as cheap as an NHWC/OHWI one on the M3 and no layout change is needed at the model boundary.
"""

from __future__ import annotations

import re

import numpy as np

from generator.aot.schedules import requant

KINDS = ("conv2d", "depthwise_conv2d", "pointwise_conv2d", "dense")


def qop_kind(q) -> str:
    if q.kind != "conv2d":
        return q.kind                 # dense; add, avgpool, mul, requant, mean: not scheduled
    if q.groups == 1:
        return "pointwise_conv2d" if tuple(q.kernel) == (1, 1) else "conv2d"
    if q.groups == q.in_shape[1]:
        return "depthwise_conv2d"
    return "grouped_conv2d"


def fold_bias(q, w: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """``bias - in_zp * sum(w)`` per output channel (int32, wrapping like the C)."""
    s = w.reshape(w.shape[0], -1).astype(np.int64).sum(axis=1)
    v = bias.astype(np.int64) - int(q.in_zp) * s
    return ((v + (1 << 31)) % (1 << 32) - (1 << 31)).astype(np.int32)


def _divisor(n: int, limit: int) -> int:
    for d in range(min(limit, n), 0, -1):
        if n % d == 0:
            return d
    return 1


def tile_of(q, pairs: bool = False) -> tuple[int, int]:
    """(output-channel tile, output-column tile) of the register block."""
    kind = qop_kind(q)
    if pairs:       # SMLAD, mps2-an386: pointwise (2,5) 2.93, (4,1) 2.06, (8,1) 1.74
        return _divisor(q.out_shape[-1] if kind == "dense" else q.out_shape[1], 8), 1
    if kind == "dense":
        return _divisor(q.out_shape[-1], 4), 1
    ow, o = q.out_shape[3], q.out_shape[1]
    if kind == "depthwise_conv2d":
        return 1, _divisor(ow, 5)
    # measured on lm3s6965evb (instructions per MAC): conv 3x3 16->16 32x32: (1,4) 2.13,
    # (2,2) 2.21, (4,2) 1.99, (4,4) 2.95 (spills); pointwise 64->64 25x5: (4,1) 2.79, (1,5) 2.68,
    # (2,5) 2.46; 8 to 10 accumulators is what gcc keeps in registers next to the loads
    # conv 10x4 1->64 on 25x5 (DS-CNN's first): (4,1) 3.85, (8,1) 3.61, (2,5) 3.31
    if ow % 2 == 0:
        return _divisor(o, 4), 2
    tw = _divisor(ow, 5)
    return (_divisor(o, 2) if tw >= 4 else _divisor(o, 4)), tw


def _epilogue(q, mode: str, fast: bool, left: bool, acc: str) -> str:
    if mode == "tflm":
        v = requant.tflm_tir(acc, "vo", left)
    else:
        f = requant.half_up_fast_tir if fast else requant.half_up_generic_tir
        v = f(acc, "vo")
    return requant.clamp_tir(v, q)


def conv_script(q, wshape, mode: str, fast: bool, left: bool) -> str:
    n, c, h, w = q.in_shape
    _, o, oh, ow = q.out_shape
    kh, kw = q.kernel
    sh, sw = q.strides
    dh, dw = q.dilation
    pt, pl = q.pads[0], q.pads[1]
    cig, cog = c // q.groups, o // q.groups
    hp = (oh - 1) * sh + (kh - 1) * dh + 1
    wp = (ow - 1) * sw + (kw - 1) * dw + 1
    padded = pt or pl or hp > h or wp > w
    cin = "vc" if q.groups == 1 else (f"vo // {cog} * {cig} + vc" if cig > 1 else
                                      (f"vo // {cog}" if cog > 1 else "vo"))
    src = "xp" if padded else "x"
    pad = ""
    if padded:
        pad = f'''
    xp = T.sblock_alloc_buffer(({n}, {c}, {hp}, {wp}), "{q.in_dtype}")
    for a0, a1, a2, a3 in T.grid({n}, {c}, {hp}, {wp}):
        with T.sblock("pad"):
            pn, pc, ph, pw = T.axis.remap("SSSS", [a0, a1, a2, a3])
            xp[pn, pc, ph, pw] = T.if_then_else(ph >= {pt} and ph < {pt + h} and pw >= {pl} and pw < {pl + w}, x[pn, pc, T.min(T.max(ph - {pt}, 0), {h - 1}), T.min(T.max(pw - {pl}, 0), {w - 1})], T.{q.in_dtype}({q.in_zp}))'''
    to, tw = tile_of(q)
    return f'''
@T.prim_func(private=True, s_tir=True)
def qop(x: T.Buffer({tuple(q.in_shape)}, "{q.in_dtype}"), wt: T.Buffer({tuple(wshape)}, "int8"),
        bias: T.Buffer(({o},), "int32"), mult: T.Buffer(({o},), "int32"),
        shift: T.Buffer(({o},), "int8"), y: T.Buffer({tuple(q.out_shape)}, "{q.out_dtype}")):
    T.func_attr({{"tirx.noalias": True}}){pad}
    acc = T.sblock_alloc_buffer(({n}, {o}, {oh}, {ow}), "int32")
    for b0, b1, b2, b3, r0, r1, r2 in T.grid({n}, {o}, {oh}, {ow}, {cig}, {kh}, {kw}):
        with T.sblock("conv"):
            vn, vo, vh, vw, vc, vky, vkx = T.axis.remap("SSSSRRR", [b0, b1, b2, b3, r0, r1, r2])
            with T.init():
                acc[vn, vo, vh, vw] = bias[vo]
            acc[vn, vo, vh, vw] = acc[vn, vo, vh, vw] + T.Cast("int32", {src}[vn, {cin}, vh * {sh} + vky * {dh}, vw * {sw} + vkx * {dw}]) * T.Cast("int32", wt[vo, vc, vky, vkx])
    for c0, c1, c2, c3 in T.grid({n}, {o}, {oh}, {ow}):
        with T.sblock("requant"):
            vn, vo, vh, vw = T.axis.remap("SSSS", [c0, c1, c2, c3])
            y[vn, vo, vh, vw] = {_epilogue(q, mode, fast, left, f"acc[vn, vo, vh, vw]")}
'''


def dense_script(q, mode: str, fast: bool, left: bool) -> str:
    lead = tuple(q.in_shape[:-1])
    k, nout = q.in_shape[-1], q.out_shape[-1]
    ls = [f"l{i}" for i in range(len(lead))]
    vs = [f"vl{i}" for i in range(len(lead))]
    lv = ", ".join(vs)
    spatial = '"' + "S" * (len(lead) + 1)
    to = tile_of(q)[0]
    return f'''
@T.prim_func(private=True, s_tir=True)
def qop(x: T.Buffer({tuple(q.in_shape)}, "{q.in_dtype}"), wt: T.Buffer(({nout}, {k}), "int8"),
        bias: T.Buffer(({nout},), "int32"), mult: T.Buffer(({nout},), "int32"),
        shift: T.Buffer(({nout},), "int8"), y: T.Buffer({tuple(q.out_shape)}, "{q.out_dtype}")):
    T.func_attr({{"tirx.noalias": True}})
    acc = T.sblock_alloc_buffer({lead + (nout,)}, "int32")
    for {", ".join(ls)}, b1, r0 in T.grid({", ".join(map(str, lead))}, {nout}, {k}):
        with T.sblock("conv"):
            {lv}, vo, vk = T.axis.remap({spatial}R", [{", ".join(ls)}, b1, r0])
            with T.init():
                acc[{lv}, vo] = bias[vo]
            acc[{lv}, vo] = acc[{lv}, vo] + T.Cast("int32", x[{lv}, vk]) * T.Cast("int32", wt[vo, vk])
    for {", ".join(ls)}, c1 in T.grid({", ".join(map(str, lead))}, {nout}):
        with T.sblock("requant"):
            {lv}, vo = T.axis.remap({spatial}", [{", ".join(ls)}, c1])
            y[{lv}, vo] = {_epilogue(q, mode, fast, left, f"acc[{lv}, vo]")}
'''


#: input channels unrolled per pointwise reduction step
POINTWISE_CI_UNROLL = 4

#: largest padded band (bytes) per output row; above it the whole padded input is the temporary
BAND_LIMIT = 8192


def _band_bytes(q) -> int | None:
    """Bytes of the padded band of one output row, when the kernel pads and it is small."""
    if q.kind == "dense":
        return None
    n, c, h, w = q.in_shape
    oh, ow = q.out_shape[2], q.out_shape[3]
    kh = (q.kernel[0] - 1) * q.dilation[0] + 1
    wp = (ow - 1) * q.strides[1] + (q.kernel[1] - 1) * q.dilation[1] + 1
    hp = (oh - 1) * q.strides[0] + kh
    if not (q.pads[0] or q.pads[1] or hp > h or wp > w):
        return None
    if qop_kind(q) == "depthwise_conv2d":
        band = hp * wp          # one padded channel plane, made once per channel
    else:
        band = c // q.groups * kh * wp      # the rows of one output row, all channels
    return band if band <= BAND_LIMIT else None


# --- the DSP dual MAC (Cortex-M4/M7: SMLAD on int16 pairs) ------------------------------------

#: CPUs with the DSP extension (SMLAD); pemesh_smlad falls back to plain C elsewhere
DSP_CPUS = ("cortex-m4", "cortex-m4f", "cortex-m7")

#: the C of ``pemesh_smlad`` (put in front of the operator C when a kernel calls it)
SMLAD_PRELUDE = """#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#include <arm_acle.h>
#define pemesh_smlad(a, b, c) __smlad((a), (b), (c))
#else
static inline int32_t pemesh_smlad(int32_t a, int32_t b, int32_t c) {
  return c + (int32_t)(int16_t)(a & 0xFFFF) * (int16_t)(b & 0xFFFF) + (a >> 16) * (b >> 16);
}
#endif
"""


def pairs_ok(q) -> bool:
    """Dense and unpadded 1x1 convs with an even reduction take the SMLAD kernel."""
    kind = qop_kind(q)
    if kind == "dense":
        return q.in_shape[-1] % 2 == 0
    return (kind == "pointwise_conv2d" and not any(q.pads) and q.in_shape[1] % 2 == 0)


def pack_pairs(w: np.ndarray) -> np.ndarray:
    """int8 weights [O, K...] → int32 [O, K/2]: (w[2k] as int16) | (w[2k+1] << 16)."""
    m = w.reshape(w.shape[0], -1).astype(np.int32)
    lo = m[:, 0::2] & 0xFFFF
    hi = m[:, 1::2].astype(np.int64) << 16
    return ((lo + hi + (1 << 31)) % (1 << 32) - (1 << 31)).astype(np.int32)


def _xpair(x0: str, x1: str) -> str:
    return (f'T.bitwise_or(T.bitwise_and(T.Cast("int32", {x0}), 65535), '
            f'T.Cast("int32", {x1}) * 65536)')


def pairs_script(q, mode: str, fast: bool, left: bool) -> str:
    """``acc = smlad(x pair, w pair, acc)`` over K/2 pairs (dense, or 1x1 conv over channels)."""
    if q.kind == "dense":
        lead = tuple(q.in_shape[:-1])
        k, nout = q.in_shape[-1], q.out_shape[-1]
        ls = [f"l{i}" for i in range(len(lead))]
        vs = [f"vl{i}" for i in range(len(lead))]
        lv = ", ".join(vs)
        sp = '"' + "S" * (len(lead) + 1)
        to = tile_of(q, True)[0]  # noqa: F841 (the tile is the schedule's)
        x0, x1 = f"x[{lv}, vk * 2]", f"x[{lv}, vk * 2 + 1]"
        return f'''
@T.prim_func(private=True, s_tir=True)
def qop(x: T.Buffer({tuple(q.in_shape)}, "{q.in_dtype}"), wt: T.Buffer(({nout}, {k // 2}), "int32"),
        bias: T.Buffer(({nout},), "int32"), mult: T.Buffer(({nout},), "int32"),
        shift: T.Buffer(({nout},), "int8"), y: T.Buffer({tuple(q.out_shape)}, "{q.out_dtype}")):
    T.func_attr({{"tirx.noalias": True}})
    acc = T.sblock_alloc_buffer({lead + (nout,)}, "int32")
    for {", ".join(ls)}, b1, r0 in T.grid({", ".join(map(str, lead))}, {nout}, {k // 2}):
        with T.sblock("conv"):
            {lv}, vo, vk = T.axis.remap({sp}R", [{", ".join(ls)}, b1, r0])
            with T.init():
                acc[{lv}, vo] = bias[vo]
            acc[{lv}, vo] = T.call_pure_extern("int32", "pemesh_smlad", {_xpair(x0, x1)}, wt[vo, vk], acc[{lv}, vo])
    for {", ".join(ls)}, c1 in T.grid({", ".join(map(str, lead))}, {nout}):
        with T.sblock("requant"):
            {lv}, vo = T.axis.remap({sp}", [{", ".join(ls)}, c1])
            y[{lv}, vo] = {_epilogue(q, mode, fast, left, f"acc[{lv}, vo]")}
'''
    n, c, h, w = q.in_shape
    _, o, oh, ow = q.out_shape
    sh, sw = q.strides
    x0 = f"x[vn, vc * 2, vh * {sh}, vw * {sw}]"
    x1 = f"x[vn, vc * 2 + 1, vh * {sh}, vw * {sw}]"
    return f'''
@T.prim_func(private=True, s_tir=True)
def qop(x: T.Buffer({tuple(q.in_shape)}, "{q.in_dtype}"), wt: T.Buffer(({o}, {c // 2}), "int32"),
        bias: T.Buffer(({o},), "int32"), mult: T.Buffer(({o},), "int32"),
        shift: T.Buffer(({o},), "int8"), y: T.Buffer({tuple(q.out_shape)}, "{q.out_dtype}")):
    T.func_attr({{"tirx.noalias": True}})
    acc = T.sblock_alloc_buffer(({n}, {o}, {oh}, {ow}), "int32")
    for b0, b1, b2, b3, r0, r1, r2 in T.grid({n}, {o}, {oh}, {ow}, {c // 2}, 1, 1):
        with T.sblock("conv"):
            vn, vo, vh, vw, vc, vky, vkx = T.axis.remap("SSSSRRR", [b0, b1, b2, b3, r0, r1, r2])
            with T.init():
                acc[vn, vo, vh, vw] = bias[vo]
            acc[vn, vo, vh, vw] = T.call_pure_extern("int32", "pemesh_smlad", {_xpair(x0, x1)}, wt[vo, vc], acc[vn, vo, vh, vw])
    for c0, c1, c2, c3 in T.grid({n}, {o}, {oh}, {ow}):
        with T.sblock("requant"):
            vn, vo, vh, vw = T.axis.remap("SSSS", [c0, c1, c2, c3])
            y[vn, vo, vh, vw] = {_epilogue(q, mode, fast, left, "acc[vn, vo, vh, vw]")}
'''


def _schedule(func, q, pairs: bool = False):
    import tvm
    import tvm.s_tir as s_tir

    sch = s_tir.Schedule(tvm.IRModule({"main": func}))
    conv = sch.get_sblock("conv")
    rq = sch.get_sblock("requant")
    to, tw = tile_of(q, pairs)
    if q.kind == "dense":
        *lead, o, k = sch.get_loops(conv)
        oo, oi = sch.split(o, [None, to])
        tk = _divisor(q.in_shape[-1] // 2, 2) if pairs else _divisor(q.in_shape[-1], 4)
        ko, ki = sch.split(k, [None, tk])
        sch.reorder(*lead, oo, ko, ki, oi)
        sch.reverse_compute_at(rq, oo)
        sch.decompose_reduction(conv, ko)
        for lp in (ki, oi):
            sch.unroll(lp)
        anchor = oo
    else:
        n, o, h, w, ci, ky, kx = sch.get_loops(conv)
        oo, oi = sch.split(o, [None, to])
        wo, wi = sch.split(w, [None, tw])
        inner = [ky, kx, oi, wi]
        # rows outermost for a full conv (the padded band of one output row is made once and
        # read by every output channel); channel outermost for depthwise (its band is 1 channel)
        outer = [n, oo, h] if qop_kind(q) == "depthwise_conv2d" else [n, h, oo]
        if qop_kind(q) == "pointwise_conv2d":
            cext = q.in_shape[1] // q.groups // (2 if pairs else 1)
            cio, cii = sch.split(ci, [None, _divisor(cext, 2 if pairs else POINTWISE_CI_UNROLL)])
            sch.reorder(*outer, wo, cio, cii, ky, kx, oi, wi)
            inner = [cii] + inner
            red = cio
        else:
            sch.reorder(*outer, wo, ci, ky, kx, oi, wi)
            red = ci
        sch.reverse_compute_at(rq, wo)
        sch.decompose_reduction(conv, red)
        if _band_bytes(q) is not None:
            # the padded input as a band of the rows one output row reads, made under the row
            # loop: a small arena temporary instead of a padded copy of the whole input
            sch.compute_at(sch.get_sblock("pad"),
                           oo if qop_kind(q) == "depthwise_conv2d" else h)
        for lp in inner:
            sch.unroll(lp)
        anchor = wo
    # unroll the tile loops of the init and of the requantize block (those under the anchor)
    for blk in (sch.get_sblock("conv_init"), rq):
        loops = sch.get_loops(blk)
        idx = [i for i, lp in enumerate(loops) if sch.get(lp).same_as(sch.get(anchor))][0]
        for lp in loops[idx + 1:]:
            sch.unroll(lp)
    # the accumulator goes where its accesses are and shrinks to the register tile, so that
    # only the padded input stays a root temporary (which lower.py hoists into the arena)
    import tvm.s_tir.transform as stx

    mod = sch.mod
    for p in (stx.ConvertBlocksToOpaque(), stx.PlanAndUpdateBufferAllocationLocation(),
              stx.CompactBufferAllocation()):
        mod = p(mod)
    return _band_to_root(mod["main"])


def _band_to_root(func, name: str = "xp"):
    """Move the (compacted) padded band back to the root block, so that ``lower.py`` hoists it
    into the arena like any temporary (TVM 0.27 has no Python TIR mutator: via TVMScript)."""
    import tvm

    text = func.script()
    m = re.search(rf"^( +)({name} = T\.sblock_alloc_buffer\(.*\))\n", text, re.M)
    if m is None or len(m.group(1)) == 4:
        return func
    text = text[:m.start()] + text[m.end():]
    at = re.search(r"^    T\.func_attr\(.*\)\n", text, re.M)
    text = text[:at.end()] + "    " + m.group(2) + "\n" + text[at.end():]
    return tvm.script.from_source(text)


def scheduled_func(q, wshape, mode: str, fast: bool, left: bool, pairs: bool = False):
    """The scheduled PrimFunc of qop ``q`` (same parameters as the unscheduled one, with the
    bias folded and, on the fast ``half_up`` path, ``shift`` holding ``s - 32``; with ``pairs``
    the weights are ``pack_pairs``'d int32 and the reduction is SMLAD on int16 pairs)."""
    import tvm

    if pairs:
        text = pairs_script(q, mode, fast, left)
    else:
        text = dense_script(q, mode, fast, left) if q.kind == "dense" else \
            conv_script(q, wshape, mode, fast, left)
    func = tvm.script.from_source("# from tvm.script import tirx as T\n" + text)
    return _schedule(func, q, pairs)
