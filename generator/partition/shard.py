"""Layer sharding: split a layer whose weights cannot fit one PE by output channels.

Done on the Relax graph before fusion, so every later stage (fusion, lowering, partitioning,
placement) sees ordinary operators:

* ``R.matmul(x, W)`` with a constant ``W[..., K, N]`` → ``concat([matmul(x, W[..., :, a:b]) ...],
  axis=-1)`` (dense/Gemm: rows of the ONNX weight, columns of the Relax one);
* ``R.nn.conv2d(x, W)`` with a constant ``W[O, I, kh, kw]``, ``groups == 1``, NCHW/OIHW →
  ``concat([conv2d(x, W[a:b]) ...], axis=1)``.

Each slice becomes its own program step reading the same input (scattered to every shard's PE by
its producer) and the ``concat`` a gather step; bias and activation stay after the gather. The
number of shards is the smallest that brings each slice under the weight budget.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from generator.aot.graph import const_value
from generator.errors import DoesNotFitError

log = logging.getLogger(__name__)

#: at most this many shards per layer (the gather PE tracks one input stream per shard)
MAX_SHARDS = 8


@dataclass(frozen=True)
class ShardDecision:
    op: str
    weight_bytes: int
    shards: int
    axis_size: int


def _const_array(expr) -> np.ndarray | None:
    from tvm.ir.expr import Constant

    if not isinstance(expr, Constant):
        return None
    return const_value(expr)


def shard_layers(mod, weight_budget: int) -> tuple[object, list[ShardDecision]]:
    """Split matmul/conv2d layers whose constant weights exceed ``weight_budget`` bytes."""
    import tvm
    from tvm import relax
    from tvm.relax.expr_functor import PyExprMutator, mutator

    decisions: list[ShardDecision] = []
    mod = relax.transform.FoldConstant()(mod)

    def pieces(n_axis: int, nbytes: int, what: str) -> int:
        k = max(1, math.ceil(nbytes / weight_budget))
        if k > MAX_SHARDS or k > n_axis:
            raise DoesNotFitError(
                f"{what}: {nbytes} B of weights would need {k} shards of at most "
                f"{weight_budget} B; pemesh shards a layer {min(MAX_SHARDS, n_axis)} ways at most",
                hint="use a PE kind with more memory, or quantize the model to int8")
        return k

    @mutator
    class Sharder(PyExprMutator):
        def visit_call_(self, call):  # noqa: N802 (TVM's visitor naming)
            call = super().visit_call_(call)
            name = getattr(call.op, "name", "")
            if name == "relax.matmul" and len(call.args) == 2:
                w = _const_array(call.args[1])
                if w is not None and w.nbytes > weight_budget and w.ndim >= 2:
                    n = w.shape[-1]
                    k = pieces(n, w.nbytes, f"matmul with weight {w.shape}")
                    step = math.ceil(n / k)
                    parts = [self.builder_.emit(relax.op.matmul(
                        call.args[0], relax.const(np.ascontiguousarray(w[..., a:a + step]))))
                        for a in range(0, n, step)]
                    decisions.append(ShardDecision("matmul", w.nbytes, len(parts), n))
                    return relax.op.concat(parts, axis=-1)
            if name == "relax.nn.conv2d":
                w = _const_array(call.args[1])
                attrs = call.attrs
                if (w is not None and w.nbytes > weight_budget and int(attrs.groups) == 1
                        and str(attrs.data_layout) == "NCHW" and str(attrs.kernel_layout) == "OIHW"):
                    n = w.shape[0]
                    k = pieces(n, w.nbytes, f"conv2d with weight {w.shape}")
                    step = math.ceil(n / k)
                    parts = []
                    for a in range(0, n, step):
                        parts.append(self.builder_.emit(relax.op.nn.conv2d(
                            call.args[0], relax.const(np.ascontiguousarray(w[a:a + step])),
                            strides=attrs.strides, padding=attrs.padding,
                            dilation=attrs.dilation, groups=1, data_layout="NCHW",
                            kernel_layout="OIHW", out_layout=str(attrs.out_layout),
                            out_dtype=attrs.out_dtype)))
                    decisions.append(ShardDecision("conv2d", w.nbytes, len(parts), n))
                    return relax.op.concat(parts, axis=1)
            return call

    sharder = Sharder(mod)
    for gv, func in mod.functions.items():
        if isinstance(func, relax.Function):
            sharder.builder_.update_func(gv, sharder.visit_expr(func))
    new_mod = sharder.builder_.get()
    new_mod = relax.transform.DeadCodeElimination()(new_mod) if decisions else mod
    for d in decisions:
        log.info("sharded %s (%d B of weights) into %d slices", d.op, d.weight_bytes, d.shards)
    del tvm
    return new_mod, decisions
