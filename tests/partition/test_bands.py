"""Band splits (generator/partition/bands.py): the DP against exhaustive search, and every
split kind against the unsplit layer on TVM's host build (bit-exact; a partial average pool
within float rounding)."""

from __future__ import annotations

import numpy as np
import pytest

from generator.partition.bands import (IDENTITY, Geometry, RowMap, SOp, brute_force_bands,
                                       choose_bands)


def test_rowmap_need_clips_to_the_tensor_and_reports_the_band_padding():
    rm = RowMap(kernel=3, stride=2, pad_top=1, pad_bottom=1)
    assert rm.need(0, 2, 8) == (0, 4, 1, 0)          # rows -1..3: one row of top padding
    assert rm.need(3, 4, 8) == (5, 8, 0, 0)
    assert RowMap(kernel=3, stride=1, pad_top=1, pad_bottom=1).need(7, 8, 8) == (6, 8, 0, 1)


def _random_geometry(rng: np.random.Generator) -> Geometry:
    rows = int(rng.choice([16, 24, 32]))
    ops = [SOp("in", rows, int(rng.integers(8, 64)))]
    last = "in"
    while len(ops) < int(rng.integers(4, 11)):
        name = f"op{len(ops)}"
        if rng.random() < 0.25 and len(ops) > 2:        # a residual block: conv, conv, add
            a, b = f"{name}a", f"{name}b"
            rb = ops[-1].row_bytes
            ops.append(SOp(a, ops[-1].rows, rb, 50, ((last, RowMap(3, 1, 1, 1)),)))
            ops.append(SOp(b, ops[-1].rows, rb, 50, ((a, RowMap(3, 1, 1, 1)),)))
            ops.append(SOp(name, ops[-1].rows, rb, 1, ((b, IDENTITY), (last, IDENTITY))))
        else:
            k = int(rng.choice([1, 3, 5]))
            s = int(rng.choice([1, 1, 2])) if ops[-1].rows >= 8 else 1
            h = (ops[-1].rows + 2 * (k // 2) - k) // s + 1
            ops.append(SOp(name, h, int(rng.integers(8, 96)), int(rng.integers(1, 100)),
                           ((last, RowMap(k, s, k // 2, k // 2)),)))
        last = ops[-1].name
    if rng.random() < 0.5:                               # a global pool at the end
        src = ops[-1]
        ops.append(SOp("gap", 1, 4, src.row_bytes, ((last, RowMap(src.rows, 1, 0, 0)),),
                       reducible=True))
        last = "gap"
    ops.append(SOp("fc", 1, 40, 40, (), io_bytes=int(rng.integers(50, 400)), spatial=False))
    big = max(op.rows * op.row_bytes for op in ops)
    return Geometry(ops, avail=int(big * rng.uniform(0.2, 1.5)),
                    cycles_per_mac=float(rng.uniform(1, 20)),
                    cycles_per_link_byte=float(rng.uniform(1, 20)), max_bands=12)


@pytest.mark.parametrize("seed", range(40))
def test_band_dp_equals_exhaustive_search(seed):
    geo = _random_geometry(np.random.default_rng(seed))
    choice = choose_bands(geo)
    best = brute_force_bands(geo)
    if not geo.needs_split():
        assert choice is None
        return
    if choice is None:
        assert best == float("inf")
    else:
        assert choice.cost == pytest.approx(best)
        # the segments chain from the input to the cut, each fitting
        assert choice.segments[0].first == 0
        for a, b in zip(choice.segments, choice.segments[1:]):
            assert a.last == b.first and not a.partial
        assert all(s.peak_bytes <= geo.avail for s in choice.segments)


# --- every split kind against the unsplit layer ------------------------------------------------

def _onnx(kind: str):
    import onnx
    from onnx import helper, numpy_helper

    r = np.random.default_rng(7)
    F = onnx.TensorProto.FLOAT

    def w(name, shape):
        fan = int(np.prod(shape[1:]))
        return numpy_helper.from_array((r.standard_normal(shape) / np.sqrt(fan))
                                       .astype(np.float32), name)

    c, h = 4, 40
    nodes, inits = [], []
    x = "x"

    def conv(src, dst, cin, cout, k, s=1, pads=None, group=1, dil=1):
        inits.extend([w(f"{dst}_w", (cout, cin // group, k, k)),
                      numpy_helper.from_array((0.1 * r.standard_normal(cout))
                                              .astype(np.float32), f"{dst}_b")])
        p = k // 2 * dil
        nodes.append(helper.make_node(
            "Conv", [src, f"{dst}_w", f"{dst}_b"], [dst], kernel_shape=[k, k], strides=[s, s],
            pads=pads or [p, p, p, p], group=group, dilations=[dil, dil]))
        return dst

    if kind == "conv_stride_pad":
        y = conv(x, "a", c, 8, 3)
        nodes.append(helper.make_node("Relu", [y], ["ar"]))
        y = conv("ar", "b", 8, 8, 3, s=2, pads=[0, 1, 1, 0])
        y = conv(y, "c", 8, 8, 5, pads=[2, 1, 1, 2])
    elif kind == "dilated":
        y = conv(x, "a", c, 8, 3, dil=2)
        y = conv(y, "b", 8, 8, 3)
    elif kind == "depthwise_clip":
        y = conv(x, "a", c, 8, 3)
        y = conv(y, "b", 8, 8, 3, group=8)
        inits += [numpy_helper.from_array(np.float32(0.0), "lo"),
                  numpy_helper.from_array(np.float32(0.5), "hi")]
        nodes.append(helper.make_node("Clip", [y, "lo", "hi"], ["cl"]))
        y = conv("cl", "c", 8, 8, 1)
    elif kind == "maxpool":
        y = conv(x, "a", c, 8, 3)
        nodes.append(helper.make_node("MaxPool", [y], ["mp"], kernel_shape=[3, 3],
                                      strides=[2, 2], pads=[1, 1, 1, 1]))
        y = conv("mp", "b", 8, 8, 3)
    elif kind == "residual":
        y = conv(x, "a", c, 8, 3)
        nodes.append(helper.make_node("Relu", [y], ["ar"]))
        conv("ar", "b", 8, 8, 3)
        nodes.append(helper.make_node("Relu", ["b"], ["br"]))
        conv("br", "c", 8, 8, 3)
        nodes.append(helper.make_node("Add", ["c", "ar"], ["s"]))
        nodes.append(helper.make_node("Relu", ["s"], ["sr"]))
        y = conv("sr", "d", 8, 8, 3, s=2)
    elif kind in ("global_avg", "global_max"):
        y = conv(x, "a", c, 8, 3)
        y = conv(y, "b", 8, 8, 3)
        op = "GlobalAveragePool" if kind == "global_avg" else "GlobalMaxPool"
        nodes.append(helper.make_node(op, [y], ["g"]))
        nodes.append(helper.make_node("Flatten", ["g"], ["f"]))
        inits.append(w("fc", (8, 5)))
        nodes.append(helper.make_node("MatMul", ["f", "fc"], ["y"]))
        y = "y"
    if not kind.startswith("global"):     # a one-channel head: an output one PE can gather
        y = conv(y, "head", 8, 1, 1)
    out = helper.make_tensor_value_info(y, F, None)
    graph = helper.make_graph(nodes, kind, [helper.make_tensor_value_info(x, F, [1, c, h, h])],
                              [out], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return onnx.shape_inference.infer_shapes(model)


def _run(mod, args):
    import tvm
    from tvm import relax

    ex = tvm.compile(mod, target="llvm")
    vm = relax.VirtualMachine(ex, tvm.cpu())
    out = vm["main"](*[tvm.runtime.tensor(a) for a in args])
    return out.numpy() if hasattr(out, "numpy") else out[0].numpy()


KINDS = ["conv_stride_pad", "dilated", "depthwise_clip", "maxpool", "residual", "global_avg",
         "global_max"]


@pytest.mark.parametrize("kind", KINDS)
def test_band_split_equals_the_unsplit_layers(kind):
    from generator.frontend.importers import import_onnx
    from generator.partition.bands_rewrite import band_split

    model = import_onnx(_onnx(kind), name=kind)
    x = np.random.default_rng(3).standard_normal((1, 4, 40, 40)).astype(np.float32)
    ref = _run(model.mod, [x])
    new, split, slices = band_split(model.mod, avail=24_000, max_bands=16)
    assert split is not None, f"{kind}: not split"
    assert sum(k for *_, k in split.segments) > 1
    assert len(slices) > 1 and all(s.axis == 2 for s in slices)
    assert split.peak_bytes <= 24_000
    got = _run(new, [s.cut(x) for s in slices])
    if kind == "global_avg":      # a sum of band sums: float rounding, not bit-exact
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    else:
        assert np.array_equal(got, ref), f"{kind}: max |d| {np.abs(got - ref).max()}"


def test_no_split_when_the_activations_fit():
    from generator.frontend.importers import import_onnx
    from generator.partition.bands_rewrite import band_split

    model = import_onnx(_onnx("residual"), name="residual")
    _, split, slices = band_split(model.mod, avail=1 << 20)
    assert split is None and [s.axis for s in slices] == [None]
