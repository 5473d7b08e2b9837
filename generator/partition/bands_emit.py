"""Write a chosen band split (:mod:`.bands`) into a new Relax ``main``.

Emission order is program order, which the pipeline DP cuts into stages: segment by segment,
band by band, each band's ops followed by the halo slices its neighbours in the next segment
need from it (so a slice is cut on the PE that holds the band, and only the halo rows travel).
After the last segment its bands are concatenated into the gathered tensor and the rest of
``main`` follows unchanged.
"""

from __future__ import annotations

from typing import Any

from generator.partition.bands import BandChoice, Geometry


def _subst(expr, remap: dict):
    """``expr`` with Relax vars replaced by ``remap`` (calls, tuples, items rebuilt)."""
    from tvm import relax

    if isinstance(expr, relax.Var):
        return remap.get(expr, expr)
    if isinstance(expr, relax.Call):
        return relax.Call(expr.op, [_subst(a, remap) for a in expr.args], expr.attrs,
                          expr.ty_args)
    if isinstance(expr, relax.Tuple):
        return relax.Tuple([_subst(f, remap) for f in expr.fields])
    if isinstance(expr, relax.TupleGetItem):
        return relax.TupleGetItem(_subst(expr.tuple_value, remap), expr.index)
    return expr


def _slice(bb, var, axis: int, a: int, b: int, have: tuple[int, int]):
    """Rows ``[a, b)`` of ``var``, which holds rows ``have``; ``var`` itself if that is all."""
    from tvm import relax

    if (a, b) == have:
        return var
    return bb.emit(relax.op.strided_slice(var, [axis], [a - have[0]], [b - have[0]]))


#: TVM's kOpaque operator pattern: FuseOps leaves such a call a step of its own
OPAQUE = 8


def _halo(bb, var, axis: int, a: int, b: int, have: tuple[int, int]):
    """Rows ``[a, b)`` of a band for a neighbour, as a step of its own: fused into the
    neighbour's concat it would make that PE receive the whole band, not the halo rows."""
    from tvm import relax, topi

    if (a, b) == have:
        return var
    call = bb.emit_te(topi.strided_slice, var, [a - have[0]], [b - have[0]], strides=[1], axes=[axis],
                      primfunc_name_hint="pemesh_halo")
    gv = call.args[0] if isinstance(call, relax.Call) else bb.lookup_binding(call).args[0]
    bb.update_func(gv, bb.get()[gv].with_attr("op_pattern", OPAQUE))
    return call


def _opt(v):
    """An optional attribute: None where TVM holds an empty value."""
    return None if str(v) in ("", "None", "void") else str(v)


def _band_op(bb, reader, i: int, args: list, pads: tuple[int, int] | None):
    """Op ``i`` of the model on band arguments (conv/pool with the band's own padding)."""
    from tvm import relax

    value = reader.bindings[i - 1].value
    kind = reader.kind[i]
    at = value.attrs
    if kind[0] == "conv":
        pt, pb = pads
        return bb.emit(relax.op.nn.conv2d(
            args[0], value.args[1], strides=at.strides,
            padding=(pt, int(at.padding[1]), pb, int(at.padding[3])), dilation=at.dilation,
            groups=int(at.groups), data_layout=str(at.data_layout),
            kernel_layout=str(at.kernel_layout), out_layout=_opt(at.out_layout),
            out_dtype=_opt(at.out_dtype)))
    if kind[0] == "pool":
        pt, pb = pads
        fn = (relax.op.nn.max_pool2d if value.op.name == "relax.nn.max_pool2d"
              else relax.op.nn.avg_pool2d)
        return bb.emit(fn(args[0], pool_size=at.pool_size, strides=at.strides,
                          padding=(pt, int(at.padding[1]), pb, int(at.padding[3])),
                          dilation=at.dilation, ceil_mode=False,
                          count_include_pad=bool(at.count_include_pad), layout=str(at.layout),
                          out_layout=_opt(at.out_layout)))
    # elementwise: the same op, the band's tensors in place of the whole ones
    spatial = iter(args)
    src = list(value.args) if kind[0] == "ew" else list(value.args[1].fields)
    new = [next(spatial) if isinstance(a, relax.Var) else a for a in src]
    if kind[0] == "te":
        return bb.emit(getattr(relax.op, kind[1])(*new))
    return bb.emit(relax.Call(value.op, new, value.attrs, value.ty_args))


def _partial_pool(bb, reader, i: int, band):
    """A band's share of global pool ``i``: the sum (avg) or max over its rows and columns."""
    from tvm import relax

    _, how, wax = reader.kind[i]
    axes = [reader.haxis[reader.var_of[i]], wax]
    fn = relax.op.max if how == "max" else relax.op.sum
    return bb.emit(fn(band, axis=axes, keepdims=True))


def _combine_pools(bb, reader, i: int, parts):
    """Global pool ``i`` from its bands' partial pools (concatenated along the rows)."""
    from tvm import relax

    _, how, wax = reader.kind[i]
    ax = reader.haxis[reader.var_of[i]]
    if how == "max":
        return bb.emit(relax.op.max(parts, axis=[ax], keepdims=True))
    shape = [int(d.value) for d in reader.bindings[i - 1].value.args[0].ty.shape.values]
    total = bb.emit(relax.op.sum(parts, axis=[ax], keepdims=True))
    if how == "sum":
        return total
    count = float(shape[ax] * shape[wax])
    return bb.emit(relax.op.divide(total, relax.const(count, str(parts.ty.dtype))))


def emit_bands(mod, reader, geo: Geometry, choice: BandChoice) -> tuple[Any, tuple]:
    """The module with ``main`` rewritten to ``choice``, and the program inputs' row slices."""
    import tvm
    from tvm import relax

    from generator.types import InputSlice

    ops = geo.ops
    var_of = reader.var_of
    axis_of = {v: reader.haxis[v] for v in var_of if v in reader.haxis}
    segs = choice.segments
    # the rows every band of every segment needs
    needs = [[geo.needs(s.first, s.last, r0, r1, s.partial)
              for r0, r1 in geo.band_rows(s.last, s.bands, s.partial)] for s in segs]
    param = reader.main.params[0]
    pshape, pdtype = [int(d.value) for d in param.ty.shape.values], str(param.ty.dtype)
    ax0 = axis_of[param]
    params, slices = [], []
    for j, need in enumerate(needs[0]):
        a, b = need[0]
        shape = list(pshape)
        shape[ax0] = b - a
        params.append(relax.Var(f"{param}_rows{a}_{b}", relax.TensorType(shape, pdtype)))
        slices.append(InputSlice(0, ax0, a, b))

    bb = relax.BlockBuilder(mod)
    with bb.function("pemesh_bands", params):
        with bb.dataflow():
            # per segment: band j's held var and rows of each op, and its a_q output
            prev: list[tuple[tuple[int, int], Any]] = []   # bands of a_p: (rows, var)
            halo: dict[tuple[int, int], list[tuple[tuple[int, int], Any]]] = {}
            for si, seg in enumerate(segs):
                p, q = seg.first, seg.last
                outs = []
                for j, need in enumerate(needs[si]):
                    held: dict[int, tuple[tuple[int, int], Any]] = {}
                    if si == 0:
                        held[p] = (need[p], params[j])
                    else:
                        parts = sorted(halo.pop((si, j)), key=lambda rv: rv[0])
                        v = (parts[0][1] if len(parts) == 1 else
                             bb.emit(relax.op.concat([pv for _, pv in parts],
                                                     axis=axis_of[var_of[p]])))
                        held[p] = (need[p], v)
                    for i in range(p + 1, q + 1):
                        if i not in need:
                            continue
                        o0, o1 = need[i]
                        if seg.partial and i == q:          # a partial global pool
                            s = geo.index[ops[i].inputs[0][0]]
                            rows, v = held[s]
                            held[i] = ((0, 1), _partial_pool(
                                bb, reader, i, _slice(bb, v, axis_of[var_of[s]], *need[s], rows)))
                            continue
                        args, pads = [], None
                        for n, rm in ops[i].inputs:
                            s = geo.index[n]
                            a, b, pt, pb = rm.need(o0, o1, ops[s].rows)
                            rows, v = held[s]
                            args.append(_slice(bb, v, axis_of[var_of[s]], a, b, rows))
                            pads = (pt, pb)
                        held[i] = ((o0, o1), _band_op(bb, reader, i, args, pads))
                    rows, v = held[q]
                    outs.append((rows, v))
                    if si + 1 < len(segs):                  # halos for the next segment
                        for k, nneed in enumerate(needs[si + 1]):
                            a, b = nneed[q]
                            lo, hi = max(a, rows[0]), min(b, rows[1])
                            if lo < hi:
                                halo.setdefault((si + 1, k), []).append(
                                    ((lo, hi), _halo(bb, v, axis_of[var_of[q]], lo, hi, rows)))
                prev = outs
            cut = segs[-1].last
            whole = bb.emit(relax.op.concat([v for _, v in prev], axis=axis_of[var_of[cut]]))
            if segs[-1].partial:
                whole = _combine_pools(bb, reader, cut, whole)
            remap = {var_of[cut]: whole}
            for b in reader.bindings[cut:]:
                remap[b.var] = bb.emit(_subst(b.value, remap))
            out = bb.emit_output(_subst(reader.main.body.body, remap))
        bb.emit_func_output(out)
    built = bb.get()
    fn = built["pemesh_bands"]
    fn = fn.with_attr("global_symbol", "main")
    if reader.main.attrs is not None and "num_input" in reader.main.attrs:
        fn = fn.with_attr("num_input", len(params))
    funcs = {gv: f for gv, f in built.functions.items()
             if gv.name_hint not in ("main", "pemesh_bands")}
    new = tvm.IRModule(funcs, attrs=mod.attrs)
    new["main"] = fn
    return relax.transform.DeadCodeElimination()(new), tuple(slices)
