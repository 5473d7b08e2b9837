"""Single-qop Relax modules for the schedule tests and benchmarks/kernels.py.

``qop_module(q, seed)`` is ``main(x) = qop(x, W, bias, mult, shift)`` with random int8 weights,
per-channel multipliers/shifts in pemesh's encoding (``qops.quantize_multiplier``) and a bias of
realistic size: the same call a folded QDQ layer becomes.
"""

from __future__ import annotations

import numpy as np

from generator.frontend.qops import QOp, qop_prim_func, quantize_multiplier

#: the layer shapes of issue 11's table (name → QOp)
def layer(kind: str) -> QOp:
    if kind == "conv3x3":
        return QOp("conv2d", (1, 16, 32, 32), (1, 16, 32, 32), "int8", "int8", -7, 3, -128, 127,
                   (1, 1), (1, 1, 1, 1), (1, 1), 1, (3, 3), "conv3x3")
    if kind == "depthwise3x3":
        return QOp("conv2d", (1, 64, 25, 5), (1, 64, 25, 5), "int8", "int8", 5, -2, -128, 127,
                   (1, 1), (1, 1, 1, 1), (1, 1), 64, (3, 3), "depthwise3x3")
    if kind == "pointwise":
        return QOp("conv2d", (1, 64, 25, 5), (1, 64, 25, 5), "int8", "int8", -1, 4, 0, 127,
                   (1, 1), (0, 0, 0, 0), (1, 1), 1, (1, 1), "pointwise")
    if kind == "dense":
        return QOp("dense", (1, 256), (1, 128), "int8", "int8", 9, -5, -128, 127,
                   source="dense")
    if kind == "conv3x3_s2":
        return QOp("conv2d", (1, 16, 32, 32), (1, 32, 16, 16), "int8", "int8", 2, 0, -128, 127,
                   (2, 2), (0, 0, 1, 1), (1, 1), 1, (3, 3), "conv3x3_s2")
    if kind == "conv10x4_s2":   # DS-CNN's first layer
        return QOp("conv2d", (1, 1, 49, 10), (1, 64, 25, 5), "int8", "int8", -20, -128, -128, 127,
                   (2, 2), (4, 1, 5, 2), (1, 1), 1, (10, 4), "conv10x4_s2")
    raise KeyError(kind)


LAYERS = ("conv3x3", "depthwise3x3", "pointwise", "dense")
EXTRA = ("conv3x3_s2", "conv10x4_s2")


def weight_shape(q: QOp) -> tuple[int, ...]:
    if q.kind == "dense":
        return (q.out_shape[-1], q.in_shape[-1])
    return (q.out_shape[1], q.in_shape[1] // q.groups, *q.kernel)


def qop_module(q: QOp, seed: int = 0):
    import tvm
    from tvm import relax

    rng = np.random.default_rng(seed)
    wshape = weight_shape(q)
    w = rng.integers(-127, 128, wshape).astype(np.int8)
    o = wshape[0]
    k = int(np.prod(wshape[1:]))
    bias = rng.integers(-40 * k, 40 * k, o).astype(np.int32)
    scales = rng.uniform(0.3, 1.0, o) / (k * 40.0)
    ms = [quantize_multiplier(float(s)) for s in scales]
    mult = np.array([m for m, _ in ms], np.int32)
    shift = np.array([s for _, s in ms], np.int8)
    func = qop_prim_func(q, wshape)
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(q.in_shape, q.in_dtype))
    with bb.function("main", [x]):
        gv = bb.add_func(func, "qop_" + (q.source or q.kind))
        with bb.dataflow():
            y = bb.emit(relax.call_tir(
                gv, [x] + [relax.const(a) for a in (w, bias, mult, shift)],
                relax.TensorType(q.out_shape, q.out_dtype)))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    return bb.get()


def qop_input(q: QOp, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    info = np.iinfo(q.in_dtype)
    return rng.integers(info.min, info.max + 1, q.in_shape).astype(q.in_dtype)


def imported(q: QOp, seed: int = 0):
    """The single-qop module as an ImportedModel (what ``compile_model`` takes)."""
    from generator.types import ImportedModel, TensorSpec

    return ImportedModel(name=f"k_{q.source or q.kind}", source="<memory>", format="onnx",
                         mod=qop_module(q, seed),
                         inputs=(TensorSpec("x", q.in_shape, q.in_dtype),),
                         outputs=(TensorSpec("y", q.out_shape, q.out_dtype),))


def run_on_qemu(model, board: str, work, *, mesh=None, max_pes=None) -> dict:
    """Compile ``model`` for one ``board`` PE (or ``mesh``), build bare-metal, run two
    inferences on QEMU. Returns outputs of the second, SysTick ticks summed over the PEs for
    it, and whether it equals the compile's TVM host reference."""
    from pathlib import Path

    from generator.boards.catalog import load_pe_kind, single_pe_mesh
    from generator.commands.compile import compile_model
    from generator.firmware.images import build_mesh_report
    from generator.manifest import read_reference
    from generator.mesh.runner import MeshRunner, load_plan

    out = Path(work)
    manifest = compile_model(model, out, mesh or single_pe_mesh(load_pe_kind(board)),
                             max_pes=max_pes)
    report = build_mesh_report(out, "baremetal")
    inputs = read_reference(out, manifest, "inputs")
    refs = read_reference(out, manifest, "outputs")
    with MeshRunner(load_plan(out, manifest), timeout=600, startup_timeout=180) as runner:
        res = runner.infer_many([inputs, inputs])
    outputs = [np.asarray(o).reshape(r.shape) for o, r in zip(res.outputs[-1], refs)]
    return {"outputs": outputs, "ticks": sum(int(s.cycles) for s in res.stats.values()),
            "pes": len(res.stats), "stages": len(report.images),
            "exact_vs_reference": all(np.array_equal(o, r) for o, r in zip(outputs, refs))}


#: float32 layers (ONNX) for the fp32 schedules: name → (builder kwargs)
FP32_LAYERS = ("f32_conv3x3", "f32_dense")


def fp32_layer(kind: str, seed: int = 0):
    """An fp32 ONNX model of one layer (+ bias, ReLU) as an ImportedModel."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from generator.frontend.importers import import_onnx

    rng = np.random.default_rng(seed)
    if kind == "f32_conv3x3":       # 16 -> 16, 16x16, pad 1 (fits 128 KiB with its io)
        w = (rng.standard_normal((16, 16, 3, 3)) * 0.1).astype(np.float32)
        b = rng.standard_normal(16).astype(np.float32) * 0.1
        nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
                 helper.make_node("Relu", ["c"], ["y"])]
        xs, ys = [1, 16, 16, 16], [1, 16, 16, 16]
        macs = 16 * 16 * 16 * 16 * 9
    elif kind == "f32_dense":       # 256 -> 128
        w = (rng.standard_normal((256, 128)) * 0.1).astype(np.float32)
        b = rng.standard_normal(128).astype(np.float32) * 0.1
        nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]),
                 helper.make_node("Add", ["m", "b"], ["c"]),
                 helper.make_node("Relu", ["c"], ["y"])]
        xs, ys = [1, 256], [1, 128]
        macs = 256 * 128
    else:
        raise KeyError(kind)
    g = helper.make_graph(nodes, kind, [helper.make_tensor_value_info("x", TensorProto.FLOAT, xs)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ys)],
                          [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    return import_onnx(model, name=kind), macs
