"""Layer sharding: split layers whose weights cannot fit one PE into as many parts as memory needs,
and carry the parts through the following operators so that a split output feeds a split
consumer directly.

Done on the Relax graph (``main``'s bindings, in order) before fusion, so every later stage
(fusion, lowering, the pipeline DP, placement, routes) sees ordinary operators: each part is its
own program step and lands on its own PE, or shares one with neighbouring steps when they fit.

**The algorithm.** One pass over the bindings keeps, for each value, either the value itself or
a *split*: ``k`` part values along one axis, with their index ranges ``[a_i, b_i)``.

1. *Column split* (a split is made). ``matmul(x, W)`` with a constant ``W[K, N]`` of more than
   ``weight_budget`` bytes becomes ``k`` parts ``matmul(x, W[:, a_i:b_i])`` (dense/Gemm: rows of
   the ONNX weight, columns of the Relax one). The part width is the widest that fits the budget,
   rounded down to a multiple of the largest power of two dividing ``N`` (so parts align with
   attention heads); ``k = ceil(N / width)``, any number. ``conv2d(x, W[O, I, kh, kw])``
   (``groups == 1``, NCHW/OIHW) splits the same way by output channels (axis 1).
2. *Propagation* (a split stays split): an operator whose input is split and that can work on
   each part alone gives a split output with the same ranges, part by part:
   unary elementwise ops (relu, gelu, sigmoid, …); binary elementwise ops with a constant (bias
   add, scale: the constant is sliced where it varies along the split axis) or with an operand
   split the same way; ``reshape`` when the split axis is left alone or is split/merged whole
   (``[1,T,D] → [1,T,H,dh]`` with ranges on multiples of ``dh``: parts become head groups);
   ``permute_dims`` (the split axis moves); a batched ``matmul`` of two values split alike on a
   batch axis (attention per head: ``q·kᵀ``, ``p·v``); ``softmax``/``layer_norm`` over other axes.
3. *Row split* (a split ends in partial sums). ``matmul(x, W)`` with a constant ``W`` whose input
   ``x`` is split along ``K`` (the axis ``matmul`` reduces) becomes parts ``matmul(x_i, W[a_i:b_i])``,
   each a full-size partial sum (Megatron-style: matmul #1 by columns, matmul #2 by rows; attention
   by heads, then the output projection by the heads' rows). A convolution whose input is split by
   channels likewise becomes ``conv2d(x_i, W[:, a_i:b_i])``. A constant ``W`` whose single output
   column is over the budget is row-split after ``strided_slice``-ing its unsplit input.
4. *Reduction tree.* The partial sums are added in a tree over the parts themselves: part ``i``
   computes ``s_i = x_i·W_i + Σ s_c`` over its children ``c`` (heap order: children of ``i`` are
   ``F·i+1 … F·i+F``), so fusion makes one step per part (``fused_matmul_add…``) and no PE is
   an adder only. The fan-in ``F`` is the largest (≤ :data:`MAX_FAN_IN`) whose partial sums fit
   the PE's room next to the part's weights; the root's sum is the layer's output and takes the
   epilogue (bias, residual add, activation) that follows.
5. *Broadcast tree.* A value that parts read (the input of a column split; several splits of
   one value count together) is sent along a heap of arity :data:`FAN_OUT`: parts take, in
   order, the first *sender* with room (its producer first, then the parts in order), each
   sender feeding ``FAN_OUT`` other parts. A part that sends is given a *relay* step
   (``pemesh_relay``, a copy of what it received) emitted just before it, read by the part itself
   and kept on the part's PE by the pipeline DP (see plan.py); relays of parts that send to no
   one are dropped. So no PE sends one tensor to more than ``FAN_OUT`` parts, the tree has depth
   ~log_FAN_OUT(k), and every PE holding the value uses it. Model inputs are exempt: the host
   sends them to every entry PE itself.
6. *Materialization.* Any other consumer of a split value reads its concatenation: a tree of
   ``concat`` steps of fan-in ≤ :data:`MAX_FAN_IN` (the gather of a layer split for an operator
   that needs the whole tensor). The pass emits that concatenation for every split value; the ones
   no consumer reads are removed by dead-code elimination.
7. *Order.* The bindings are then reordered (any topological order is valid) so that a binding
   comes as soon as the value it reads latest is made: each part's chain (a head's projection →
   reshape → scores → softmax → context → its output-projection rows) is contiguous, and the
   pipeline DP, which cuts contiguous ranges, keeps a chain on one PE rather than one op of
   every head per PE.

Traffic per inference of a layer split ``k`` ways: the broadcast sends its input ``k`` times
(once per part, over relays), a column split's slices go part to part (``|out|`` in all), a row
split sends ``k - 1`` full-size partial sums up the tree. The number of parts is fixed by memory
(the fewest whose slices fit); choosing among splits by cycles and link bytes inside the
pipeline DP is not done here.

All parts compute exactly what the unsplit layer computes for their slice (column and
propagated splits: bit-identical), partial sums differ from the unsplit reduction only by the
order of fp32 additions (int32 accumulations are exact).
"""

from __future__ import annotations

import heapq
import logging
import math
from dataclasses import dataclass

import numpy as np

from generator.aot.graph import const_value
from generator.errors import DoesNotFitError

log = logging.getLogger(__name__)

#: most PEs one relay (or the producer) sends a broadcast value to
FAN_OUT = 4
#: most partial sums one part adds / parts one concat step gathers
MAX_FAN_IN = 4
#: name hint of the broadcast relay's PrimFunc (plan.py keeps a relay with the step after it)
RELAY = "pemesh_relay"
#: room a part leaves beside its weights and io for code and the arena's temporaries
_SLACK = 12 * 1024

_UNARY = {"relax.nn.relu", "relax.nn.gelu", "relax.nn.gelu_tanh", "relax.nn.silu",
          "relax.sigmoid", "relax.tanh", "relax.exp", "relax.erf", "relax.sqrt", "relax.rsqrt",
          "relax.negative", "relax.abs", "relax.clip", "relax.nn.leakyrelu", "relax.square",
          "relax.log", "relax.astype", "relax.round", "relax.floor", "relax.ceil"}
_BINARY = {"relax.add", "relax.subtract", "relax.multiply", "relax.divide", "relax.maximum",
           "relax.minimum", "relax.power"}


@dataclass(frozen=True)
class ShardDecision:
    op: str
    weight_bytes: int
    shards: int
    axis_size: int
    kind: str = "columns"          # columns | rows | conv_out | conv_in
    fan_in: int = 0                # reduction tree arity (rows, conv_in)


@dataclass(frozen=True)
class _Split:
    axis: int                                  # non-negative
    bounds: tuple[tuple[int, int], ...]
    parts: tuple                               # relax values, one per range


def _const_array(expr) -> np.ndarray | None:
    from tvm.ir.expr import Constant

    if not isinstance(expr, Constant):
        return None
    return const_value(expr)


def _shape(expr) -> tuple[int, ...]:
    return tuple(int(d.value) for d in expr.ty.shape.values)


def part_width(n: int, max_width: int) -> int:
    """The widest part ``≤ max_width`` that is a multiple of the largest power of two dividing
    ``n`` and not above ``max_width`` (parts of a 256-wide layer for a 72-wide budget: 64)."""
    if max_width >= n:
        return n
    g = 1
    while g * 2 <= max_width and n % (g * 2) == 0:
        g *= 2
    return max(1, max_width // g * g)


def _ranges(n: int, width: int) -> tuple[tuple[int, int], ...]:
    return tuple((a, min(n, a + width)) for a in range(0, n, width))


def heap_children(i: int, k: int, fan: int) -> list[int]:
    """Children of node ``i`` of ``k`` in a heap of arity ``fan`` (node 0 the root)."""
    return [c for c in range(fan * i + 1, fan * i + fan + 1) if c < k]


def _relay_source(value):
    """The value a relay binding copies, or None for any other binding."""
    from tvm import relax

    if (isinstance(value, relax.Call) and getattr(value.op, "name", "") == "relax.call_tir"
            and str(value.args[0].name_hint).startswith(RELAY)):
        return value.args[1].fields[0]
    return None


def _drop_lone_relays(bindings, result):
    """Remove relays read by one binding only (their part): that part reads the relay's source."""
    from tvm import relax

    uses: dict = {}
    for b in bindings:
        for v in relax.analysis.free_vars(b.value):
            uses[v] = uses.get(v, 0) + 1
    for v in relax.analysis.free_vars(result):
        uses[v] = uses.get(v, 0) + 1
    src = {b.var: _relay_source(b.value) for b in bindings}
    lone = {v: s for v, s in src.items() if s is not None and uses.get(v, 0) <= 1}
    if not lone:
        return bindings
    out = []
    for b in bindings:
        if b.var in lone:
            continue
        value = b.value
        if isinstance(value, relax.Call) and any(a in lone for a in value.args
                                                 if isinstance(a, relax.Var)):
            value = relax.Call(value.op, [lone.get(a, a) if isinstance(a, relax.Var) else a
                                          for a in value.args], value.attrs, value.ty_args)
            b = relax.VarBinding(b.var, value)
        out.append(b)
    return out


def _chains_first(mod, deferred=frozenset()):
    """Reorder ``main``'s dataflow bindings so that each part's chain of operators comes out
    together (a binding is taken as soon as the value it reads latest is made; ties keep the
    order): the pipeline DP cuts contiguous ranges, so a part's reshape → attention → ... stay
    on one PE instead of one op of every head per PE. Any topological order is valid.
    ``deferred`` (the partial sums) come only when nothing else is ready, in their order: with
    every product of a tree made first, fusion makes one ``fused_matmul_add`` step per part."""
    from tvm import relax

    main_gv = mod.get_global_var("main")
    func = mod[main_gv]
    body = func.body
    blocks = []
    for block in body.blocks:
        if not isinstance(block, relax.DataflowBlock):
            blocks.append(block)
            continue
        bindings = _drop_lone_relays(list(block.bindings), body.body)
        made = {b.var: i for i, b in enumerate(bindings)}
        deps = [[made[v] for v in relax.analysis.free_vars(b.value) if v in made]
                for b in bindings]
        pos: dict[int, int] = {}
        users: dict[int, list[int]] = {}
        waiting = [len(set(d)) for d in deps]
        for i, d in enumerate(deps):
            for j in set(d):
                users.setdefault(j, []).append(i)
        ready = [(0, i) for i, w in enumerate(waiting) if w == 0]
        heapq.heapify(ready)
        order = []
        while ready:
            _, i = heapq.heappop(ready)
            pos[i] = len(order)
            order.append(i)
            for u in users.get(i, []):
                waiting[u] -= 1
                if waiting[u] == 0:
                    latest = max(pos[j] for j in deps[u])
                    key = 1 if bindings[u].var in deferred else -latest
                    heapq.heappush(ready, (key, u))
        if len(order) != len(bindings):  # pragma: no cover - not a DAG: keep it as it was
            blocks.append(block)
            continue
        blocks.append(relax.DataflowBlock([bindings[i] for i in order]))
    new = relax.Function(func.params, relax.SeqExpr(blocks, body.body), func.ret_ty,
                         func.is_pure, func.attrs)
    out = mod.__class__(dict(mod.functions))
    out[main_gv] = new
    return out


def shard_layers(mod, weight_budget: int, *, room: int | None = None,
                 weights_in_room: bool = True) -> tuple[object, list[ShardDecision]]:
    """Split layers whose constant weights exceed ``weight_budget`` bytes (module docstring).
    ``room``: the RAM bytes a PE has for one part's io and temporaries — and its weights when
    ``weights_in_room`` (one SRAM for code and data); sizes the reduction fan-in (default: the
    budget / 0.7)."""
    from tvm import relax, te
    from tvm.relax.expr_functor import PyExprMutator, mutator

    room = int(room if room is not None else weight_budget / 0.7)
    decisions: list[ShardDecision] = []
    mod = relax.transform.FoldConstant()(mod)

    def width_for(n: int, bytes_per_col: int, what: str) -> int:
        w = part_width(n, weight_budget // max(1, bytes_per_col))
        if bytes_per_col > weight_budget:
            raise DoesNotFitError(
                f"{what}: one output channel has {bytes_per_col} B of weights, more than the "
                f"{weight_budget} B a PE holds for one layer part",
                hint="use a PE kind with more memory, or quantize the model to int8")
        return w

    @mutator
    class Sharder(PyExprMutator):
        def __init__(self, mod):
            super().__init__(mod)
            self.splits: dict = {}        # new Var -> _Split
            self.pending: _Split | None = None
            self.bcast: dict = {}         # value -> [[sender, readers it has room for], ...]
            self.deferred: set = set()    # partial-sum vars (ordered last, see _chains_first)
            self.root_pending = False

        # --- bookkeeping -------------------------------------------------------------------
        def visit_var_binding_(self, binding):  # noqa: N802 (TVM's visitor naming)
            self.pending = None
            super().visit_var_binding_(binding)
            if self.pending is not None:
                self.splits[self.get_var_remap(binding.var)] = self.pending
                self.pending = None
            if self.root_pending:
                self.deferred.add(self.get_var_remap(binding.var))
                self.root_pending = False

        def split_of(self, arg) -> _Split | None:
            return self.splits.get(arg) if isinstance(arg, relax.Var) else None

        def emit(self, expr):
            return self.builder_.emit(expr)

        def give_split(self, axis, bounds, parts):
            """Record the split and return its materialization (a concat tree)."""
            self.pending = _Split(axis, tuple(bounds), tuple(parts))
            level = list(parts)
            while len(level) > MAX_FAN_IN:
                level = [self.opaque_concat(level[g:g + MAX_FAN_IN], axis)
                         if len(level[g:g + MAX_FAN_IN]) > 1 else level[g]
                         for g in range(0, len(level), MAX_FAN_IN)]
            return relax.op.concat(level, axis=axis) if len(level) > 1 else level[0]

        def opaque_concat(self, values, axis):
            """An inner node of a concat tree: a PrimFunc marked opaque, so fusion does not
            merge the tree back into one step with every part as its input."""
            from tvm import topi

            expr = self.builder_.call_te(topi.concatenate, values, axis,
                                         primfunc_name_hint="pemesh_gather")
            gv = expr.args[0]
            func = self.builder_.get()[gv]
            self.builder_.update_func(gv, func.with_attr("op_pattern", 8))   # kOpaque
            return self.emit(expr)

        def is_param(self, x) -> bool:
            return any(x.same_as(p) for p in self.params)

        def parts_reading(self, x, k: int, make):
            """Emit ``make(i, r_i)`` for i in 0..k-1: part ``i`` reads its own relay ``r_i`` of
            ``x``, a copy of what the first sender with room (the producer or an earlier relay,
            FAN_OUT remote readers each, over every split that reads ``x``) sends. Relays
            nobody else reads are dropped again by :func:`_chains_first`."""
            if not isinstance(x, relax.Var) or self.is_param(x):
                return [self.emit(make(i, x)) for i in range(k)]
            senders = self.bcast.setdefault(x, [[x, FAN_OUT]])
            out = []
            for i in range(k):
                slot = next(s for s in senders if s[1] > 0)      # breadth first: a heap
                slot[1] -= 1
                relay = self.emit(self.builder_.call_te(
                    lambda t: te.compute(t.shape, lambda *ix: t(*ix), name="relay"),
                    slot[0], primfunc_name_hint=RELAY))
                senders.append([relay, FAN_OUT])
                out.append(self.emit(make(i, relay)))
            return out

        def reduce_tree(self, k: int, out_bytes: int, part_weight: int, in_bytes: int, make):
            """Emit the partial-sum tree; return the root sum's expression (unemitted)."""
            # F: the largest fan-in whose partial sums fit beside the part's weights, input and
            # output, keeping one more full-size operand for the root's epilogue (a residual)
            free = (room - (part_weight if weights_in_room else 0) - 2 * out_bytes - in_bytes
                    - _SLACK)
            fan = max(1, min(MAX_FAN_IN, free // max(1, out_bytes)))
            # all products first, then the sums (this order lets fusion make one
            # fused_matmul_add step per part; interleaved, it fuses every add into the root)
            prods = {i: self.emit(make(i)) for i in reversed(range(k))}
            sums: dict[int, object] = {}
            for i in reversed(range(k)):
                s = prods[i]
                for c in heap_children(i, k, fan):
                    if not isinstance(s, relax.Var):
                        s = self.emit(s)
                        self.deferred.add(s)
                    s = relax.op.add(s, sums[c])
                if i and not isinstance(s, relax.Var):
                    s = self.emit(s)
                    self.deferred.add(s)
                sums[i] = s
            self.root_pending = not isinstance(sums[0], relax.Var)
            return sums[0], fan

        # --- rules -------------------------------------------------------------------------
        def visit_call_(self, call):  # noqa: N802
            call = super().visit_call_(call)
            name = getattr(call.op, "name", "")
            args = list(call.args)
            if name == "relax.matmul" and len(args) == 2:
                return self.matmul(call, args)
            if name == "relax.nn.conv2d":
                return self.conv2d(call, args)
            split = [self.split_of(a) for a in args]
            if not any(split):
                return call
            if name in _UNARY and len(args) == 1:
                s = split[0]
                return self.give_split(s.axis, s.bounds, [
                    self.emit(relax.Call(call.op, [p], call.attrs, call.ty_args))
                    for p in s.parts])
            if name in _BINARY and len(args) == 2:
                return self.binary(call, args, split)
            if name == "relax.reshape" and split[0] is not None:
                return self.reshape(call, args[0], split[0])
            if name == "relax.permute_dims" and split[0] is not None:
                return self.permute(call, args[0], split[0])
            if name in ("relax.nn.softmax", "relax.nn.layer_norm") and split[0] is not None:
                return self.per_part_norm(call, args, split[0])
            return call                    # reads the materialized (concatenated) value

        def binary(self, call, args, split):
            out_nd = len(_shape(call))
            if split[0] is not None and split[1] is not None:
                a, b = split
                if (a.bounds != b.bounds or a.axis != b.axis
                        or len(_shape(args[0])) != len(_shape(args[1]))):
                    return call
                return self.give_split(a.axis, a.bounds, [
                    self.emit(relax.Call(call.op, [p, q], call.attrs, call.ty_args))
                    for p, q in zip(a.parts, b.parts)])
            si = 0 if split[0] is not None else 1
            s, other = split[si], args[1 - si]
            c = _const_array(other)
            if c is None:
                return call
            d = s.axis - (out_nd - c.ndim)
            parts = []
            for (lo, hi), p in zip(s.bounds, s.parts):
                cc = other
                if d >= 0 and c.shape[d] > 1:
                    cc = relax.const(np.ascontiguousarray(np.take(c, range(lo, hi), axis=d)))
                pair = [p, cc] if si == 0 else [cc, p]
                parts.append(self.emit(relax.Call(call.op, pair, call.attrs, call.ty_args)))
            return self.give_split(s.axis, s.bounds, parts)

        def reshape(self, call, x, s):
            src, dst = _shape(x), _shape(call)
            p = 0
            while p < min(len(src), len(dst)) and src[p] == dst[p]:
                p += 1
            q = 0
            while (q < min(len(src), len(dst)) - p and src[len(src) - 1 - q] == dst[len(dst) - 1 - q]):
                q += 1
            a = s.axis
            if a < p or a >= len(src) - q:         # the split axis is untouched
                na = a if a < p else a - len(src) + len(dst)
                scale_num, scale_den = 1, 1
            elif a == p and len(src) - q - p == 1:  # one axis split into several
                na, scale_num, scale_den = p, 1, math.prod(dst[p + 1:len(dst) - q])
            elif a == p and len(dst) - q - p == 1:  # several axes merged into one
                na, scale_num, scale_den = p, math.prod(src[p + 1:len(src) - q]), 1
            else:
                return call
            bounds = []
            for lo, hi in s.bounds:
                if (lo * scale_num) % scale_den or (hi * scale_num) % scale_den:
                    return call
                bounds.append((lo * scale_num // scale_den, hi * scale_num // scale_den))
            parts = []
            for (lo, hi), part in zip(bounds, s.parts):
                shape = list(dst)
                shape[na] = hi - lo
                parts.append(self.emit(relax.op.reshape(part, shape)))
            return self.give_split(na, bounds, parts)

        def permute(self, call, x, s):
            nd = len(_shape(x))
            axes = ([int(v) for v in call.attrs.axes] if call.attrs.axes is not None
                    else list(reversed(range(nd))))
            axes = [v % nd for v in axes]
            return self.give_split(axes.index(s.axis), s.bounds, [
                self.emit(relax.op.permute_dims(p, axes)) for p in s.parts])

        def per_part_norm(self, call, args, s):
            nd = len(_shape(args[0]))
            if call.op.name == "relax.nn.softmax":
                over = [int(call.attrs.axis) % nd]
            else:
                over = [int(v) % nd for v in call.attrs.axes]
            if s.axis in over:
                return call
            return self.give_split(s.axis, s.bounds, [
                self.emit(relax.Call(call.op, [p] + args[1:], call.attrs, call.ty_args))
                for p in s.parts])

        def matmul(self, call, args):
            x, wexpr = args
            sx, sw = self.split_of(x), self.split_of(wexpr)
            w = _const_array(wexpr)
            if w is None:
                # activation × activation (attention): per part when both split alike on a
                # batch axis
                if sx is None or sw is None:
                    return call
                nd = len(_shape(call))
                if (sx.axis != sw.axis or sx.bounds != sw.bounds or sx.axis >= nd - 2
                        or len(_shape(x)) != nd or len(_shape(wexpr)) != nd):
                    return call
                return self.give_split(sx.axis, sx.bounds, [
                    self.emit(relax.op.matmul(p, q, out_dtype=call.attrs.out_dtype))
                    for p, q in zip(sx.parts, sw.parts)])
            if w.ndim != 2:
                return call
            kdim, n = w.shape
            xnd = len(_shape(x))
            item = w.dtype.itemsize
            out_dtype = call.attrs.out_dtype
            if sx is not None and sx.axis == xnd - 1:
                return self.row_split("matmul", w, sx, call, lambda p, ws: relax.op.matmul(
                    p, relax.const(ws), out_dtype=out_dtype), lambda a, b: w[a:b])
            if w.nbytes <= weight_budget:
                return call
            if kdim * item > weight_budget:
                # one output column is over the budget: split the reduced axis instead
                rows = part_width(kdim, max(1, weight_budget // (n * item)))
                bounds = _ranges(kdim, rows)
                slices = self.parts_reading(x, len(bounds), lambda i, src: relax.op.strided_slice(
                    src, axes=[xnd - 1], begin=[bounds[i][0]], end=[bounds[i][1]]))
                return self.row_split("matmul", w, _Split(xnd - 1, bounds, tuple(slices)), call,
                                      lambda p, ws: relax.op.matmul(p, relax.const(ws),
                                                                    out_dtype=out_dtype),
                                      lambda a, b: w[a:b])
            width = width_for(n, kdim * item, f"matmul with weight {w.shape}")
            bounds = _ranges(n, width)
            decisions.append(ShardDecision("matmul", w.nbytes, len(bounds), n, "columns"))
            parts = self.parts_reading(x, len(bounds), lambda i, src: relax.op.matmul(
                src, relax.const(np.ascontiguousarray(w[:, bounds[i][0]:bounds[i][1]])),
                out_dtype=out_dtype))
            return self.give_split(len(_shape(call)) - 1, bounds, parts)

        def conv2d(self, call, args):
            x, wexpr = args
            w = _const_array(wexpr)
            attrs = call.attrs
            if (w is None or int(attrs.groups) != 1 or str(attrs.data_layout) != "NCHW"
                    or str(attrs.kernel_layout) != "OIHW"):
                return call

            def conv(p, ws):
                return relax.op.nn.conv2d(
                    p, relax.const(np.ascontiguousarray(ws)), strides=attrs.strides,
                    padding=attrs.padding, dilation=attrs.dilation, groups=1,
                    data_layout="NCHW", kernel_layout="OIHW", out_layout=str(attrs.out_layout),
                    out_dtype=attrs.out_dtype)

            sx = self.split_of(x)
            if sx is not None and sx.axis == 1:
                return self.row_split("conv2d", w, sx, call, conv, lambda a, b: w[:, a:b])
            if w.nbytes <= weight_budget:
                return call
            o = w.shape[0]
            width = width_for(o, w[0].nbytes, f"conv2d with weight {w.shape}")
            bounds = _ranges(o, width)
            decisions.append(ShardDecision("conv2d", w.nbytes, len(bounds), o, "conv_out"))
            parts = self.parts_reading(x, len(bounds), lambda i, src: conv(
                src, w[bounds[i][0]:bounds[i][1]]))
            return self.give_split(1, bounds, parts)

        def row_split(self, op, w, sx, call, make, slice_w):
            """Parts over the reduced axis, each a partial sum; the reduction tree."""
            k = len(sx.bounds)
            out_bytes = math.prod(_shape(call)) * np.dtype(str(call.ty.dtype)).itemsize
            part_w = max(slice_w(a, b).nbytes for a, b in sx.bounds)
            in_bytes = max(math.prod(_shape(p)) * np.dtype(str(p.ty.dtype)).itemsize
                           for p in sx.parts)
            root, fan = self.reduce_tree(
                k, out_bytes, part_w, in_bytes,
                lambda i: make(sx.parts[i], np.ascontiguousarray(slice_w(*sx.bounds[i]))))
            decisions.append(ShardDecision(op, w.nbytes, k, w.shape[0 if op == "matmul" else 1],
                                           "rows" if op == "matmul" else "conv_in", fan))
            return root

    sharder = Sharder(mod)
    for gv, func in mod.functions.items():
        if isinstance(func, relax.Function):
            sharder.params = list(func.params)
            sharder.builder_.update_func(gv, sharder.visit_expr(func))
    new_mod = sharder.builder_.get()
    if decisions:
        new_mod = relax.transform.DeadCodeElimination()(new_mod)
        new_mod = _chains_first(new_mod, frozenset(sharder.deferred))
    for d in decisions:
        log.info("sharded %s (%d B of weights) into %d %s parts", d.op, d.weight_bytes, d.shards,
                 d.kind)
    return new_mod, decisions
