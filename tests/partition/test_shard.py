"""Layer splits (generator/partition/shard.py) against the unsplit layer: every split kind
computes what the unsplit graph computes (fp32: within rounding; int8/int32: bit-exact), splits
take any number of parts, a split output feeds its split consumer directly, and broadcasts fan
out at most FAN_OUT ways."""

from __future__ import annotations

import numpy as np
import pytest

from generator.partition.shard import (FAN_OUT, MAX_FAN_IN, RELAY, heap_children, part_width,
                                       shard_layers)

tvm = pytest.importorskip("tvm")
from tvm import relax  # noqa: E402


def _run(mod, *xs):
    ex = tvm.compile(mod, target="llvm")
    vm = relax.VirtualMachine(ex, tvm.cpu())
    return vm["main"](*[tvm.runtime.tensor(x) for x in xs]).numpy()


def _build(params, body):
    """A Relax module: ``body(bb, *vars)`` emits into main's dataflow block."""
    bb = relax.BlockBuilder()
    vs = [relax.Var(n, relax.TensorType(s, d)) for n, s, d in params]
    with bb.function("main", vs):
        with bb.dataflow():
            out = bb.emit_output(body(bb, *vs))
        bb.emit_func_output(out)
    return bb.get()


def _steps(mod):
    from generator.aot.graph import build_program
    from generator.aot.lower import relax_pipeline

    return build_program(relax_pipeline(mod))


def _rng(seed=0):
    return np.random.default_rng(seed)


def _w(shape, seed, dtype="float32"):
    return (_rng(seed).standard_normal(shape) / np.sqrt(shape[0])).astype(dtype)


def _close(a, b):
    assert a.shape == b.shape
    rel = np.abs(a - b).max() / max(1e-30, np.abs(b).max())
    assert rel < 1e-5, rel


def test_part_width_aligns_to_powers_of_two():
    assert part_width(256, 72) == 64            # heads of 64
    assert part_width(1024, 18) == 16
    assert part_width(100, 30) == 28            # 100 = 4·25: multiples of 4
    assert part_width(7, 3) == 3                # odd: any width
    assert part_width(64, 100) == 64
    assert heap_children(0, 10, 3) == [1, 2, 3] and heap_children(3, 10, 3) == []


def mlp_pair(width, hidden, seed=1):
    w1, b1, w2 = _w((width, hidden), seed), _w((hidden,), seed + 1), _w((hidden, width), seed + 2)

    def body(bb, x):
        h = bb.emit(relax.op.nn.relu(bb.emit(relax.op.add(
            bb.emit(relax.op.matmul(x, relax.const(w1))), relax.const(b1)))))
        return relax.op.matmul(h, relax.const(w2))
    return _build([("x", (1, width), "float32")], body)


@pytest.mark.parametrize("budget", [64 * 1024, 16 * 1024, 4 * 1024])
def test_columns_then_rows_match_the_unsplit_mlp(budget):
    mod = mlp_pair(128, 256)
    x = _rng(3).standard_normal((1, 128)).astype("float32")
    split, dec = shard_layers(mod, budget)
    kinds = [(d.kind, d.shards) for d in dec]
    assert kinds[0][0] == "columns" and kinds[1][0] == "rows" and kinds[0][1] == kinds[1][1]
    assert kinds[0][1] == -(-128 * 256 * 4 // budget)        # as many parts as memory needs
    _close(_run(split, x), _run(mod, x))
    prog = _steps(split)
    # no gather: nothing concatenates the hidden slices; each row part reads one slice
    assert not any("concat" in s.func for s in prog.steps)


def test_reduction_tree_fan_in_and_one_step_per_part():
    mod = mlp_pair(64, 512)
    split, dec = shard_layers(mod, 8 * 1024)
    rows = next(d for d in dec if d.kind == "rows")
    assert rows.shards == 16 and 1 <= rows.fan_in <= MAX_FAN_IN
    prog = _steps(split)
    parts = [s for s in prog.steps if s.func.startswith(("fused_matmul", "matmul"))
             and len(s.outs) == 1 and prog.tensors[s.outs[0]].shape == (1, 64)]
    assert len(parts) == 16                        # every row part is one step, no adder steps
    for s in parts:
        partial_inputs = [a for a in s.args if prog.tensors[a].shape == (1, 64)]
        assert len(partial_inputs) <= rows.fan_in


def test_int8_columns_and_rows_are_bit_exact():
    r = _rng(5)
    w1 = r.integers(-128, 128, (64, 96), dtype=np.int8)
    w2 = r.integers(-128, 128, (96, 32), dtype=np.int32)

    def body(bb, x):
        h = bb.emit(relax.op.matmul(x, relax.const(w1), out_dtype="int32"))
        h = bb.emit(relax.op.nn.relu(h))
        return relax.op.matmul(h, relax.const(w2), out_dtype="int32")
    mod = _build([("x", (1, 64), "int8")], body)
    x = r.integers(-128, 128, (1, 64), dtype=np.int8)
    split, dec = shard_layers(mod, 1024)
    assert [d.kind for d in dec] == ["columns", "rows"] and dec[0].shards == 6   # 16-wide parts
    np.testing.assert_array_equal(_run(split, x), _run(mod, x))


def test_one_column_over_budget_splits_the_reduced_axis():
    w = _w((2048, 8), 7)
    mod = _build([("x", (1, 2048), "float32")], lambda bb, x: relax.op.matmul(x, relax.const(w)))
    x = _rng(8).standard_normal((1, 2048)).astype("float32")
    split, dec = shard_layers(mod, 4096)              # one column: 8 KiB
    assert dec[0].kind == "rows" and dec[0].shards >= 16
    _close(_run(split, x), _run(mod, x))


def test_broadcast_goes_through_relays_at_most_fan_out_ways():
    w1 = _w((32, 256), 2)

    def body(bb, x):
        h = bb.emit(relax.op.nn.relu(x))                      # not a model input
        return relax.op.matmul(h, relax.const(w1))
    mod = _build([("x", (1, 32), "float32")], body)
    x = _rng(2).standard_normal((1, 32)).astype("float32")
    split, dec = shard_layers(mod, 1024)                         # 32 columns → 32 parts
    assert dec[-1].shards == 32
    _close(_run(split, x), _run(mod, x))
    prog = _steps(split)
    relays = [s for s in prog.steps if s.func.startswith(RELAY)]
    assert relays
    readers: dict[int, int] = {}
    for s in prog.steps:
        for a in s.args:
            if prog.tensors[a].kind == "inter":
                readers[a] = readers.get(a, 0) + 1
    for t, n in readers.items():
        # a sender feeds ≤ FAN_OUT parts, plus the relay copy made on the last of them and
        # the concatenation tree's first-level steps (the model output)
        assert n <= FAN_OUT + 2, (t, n)


def test_conv_out_then_in_channels_match():
    w1 = (_rng(1).standard_normal((32, 8, 3, 3)) / 8).astype("float32")
    w2 = (_rng(2).standard_normal((16, 32, 3, 3)) / 16).astype("float32")
    b1 = (_rng(3).standard_normal((1, 32, 1, 1)) * 0.1).astype("float32")

    def body(bb, x):
        h = bb.emit(relax.op.nn.conv2d(x, relax.const(w1), padding=[1, 1, 1, 1]))
        h = bb.emit(relax.op.nn.relu(bb.emit(relax.op.add(h, relax.const(b1)))))
        return relax.op.nn.conv2d(h, relax.const(w2), padding=[1, 1, 1, 1])
    mod = _build([("x", (1, 8, 6, 6), "float32")], body)
    x = _rng(4).standard_normal((1, 8, 6, 6)).astype("float32")
    split, dec = shard_layers(mod, 2 * 1024)
    assert [d.kind for d in dec] == ["conv_out", "conv_in"]
    _close(_run(split, x), _run(mod, x))


def test_attention_splits_by_heads_and_the_output_projection_by_rows():
    from generator.frontend.importers import import_onnx
    from tests.bigmodel_zoo import transformer

    proto = transformer(d=64, heads=4, hidden=128, blocks=1, tokens=4)
    model = import_onnx(proto, name="tf")
    split, dec = shard_layers(model.mod, 4096)          # 64×64 weight: 16 KiB → 4 heads
    kinds = [(d.kind, d.shards) for d in dec]
    assert kinds[:4] == [("columns", 4)] * 3 + [("rows", 4)]
    x = _rng(6).standard_normal((1, 4, 64)).astype("float32")
    _close(_run(split, x), _run(model.mod, x))
    prog = _steps(split)
    # attention ran per head: the score matmuls are [1, 1, T, T], never all heads at once
    shapes = {prog.tensors[o].shape for s in prog.steps for o in s.outs}
    assert (1, 1, 4, 4) in shapes and (1, 4, 4, 4) not in shapes


def test_unsplittable_consumer_reads_the_concatenation():
    w = _w((16, 64), 3)

    def body(bb, x):
        h = bb.emit(relax.op.matmul(x, relax.const(w)))
        return relax.op.sum(h, axis=[1], keepdims=True)          # needs the whole tensor
    mod = _build([("x", (1, 16), "float32")], body)
    x = _rng(1).standard_normal((1, 16)).astype("float32")
    split, dec = shard_layers(mod, 512)
    assert dec[0].shards == 8
    _close(_run(split, x), _run(mod, x))
    concats = [s for s in _steps(split).steps if "concat" in s.func]
    assert concats and all(len(s.args) <= MAX_FAN_IN for s in concats)


def test_small_weights_are_left_alone():
    mod = mlp_pair(16, 16)
    split, dec = shard_layers(mod, 1 << 20)
    assert dec == [] and split is not None
