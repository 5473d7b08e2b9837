"""Models too big for one qemu_cortex_m3 PE (256 KiB flash, 64 KiB SRAM), for the mesh tests."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _w(rng, shape, fan_in):
    return (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)


def mlp_autoencoder() -> onnx.ModelProto:
    """512→256→128→256→512 MLP autoencoder: 327,040 parameters (1.25 MiB of fp32 weights, five
    PEs' worth of flash); its 512 KiB layers must be sharded."""
    rng = np.random.default_rng(7)
    dims = [512, 256, 128, 256, 512]
    nodes, inits, prev = [], [], "x"
    for i, (a, b) in enumerate(zip(dims, dims[1:])):
        inits += [numpy_helper.from_array(_w(rng, (b, a), a), f"w{i}"),
                  numpy_helper.from_array((rng.standard_normal(b) * 0.1).astype(np.float32), f"b{i}")]
        nodes.append(helper.make_node("Gemm", [prev, f"w{i}", f"b{i}"], [f"g{i}"], transB=1))
        act = "Sigmoid" if i == len(dims) - 2 else "Relu"
        nodes.append(helper.make_node(act, [f"g{i}"], [f"h{i}" if i < len(dims) - 2 else "y"]))
        prev = f"h{i}"
    g = helper.make_graph(nodes, "mlp_autoencoder",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 512])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 512])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def residual_cnn() -> onnx.ModelProto:
    """A residual CNN with 306 KiB of weights: stem conv 16→64, a residual block of two 64→64 3×3
    convs (144 KiB each) with a skip connection, global pooling and a classifier."""
    rng = np.random.default_rng(11)
    c = 64

    def conv(name, cin, cout, inp, out):
        inits.extend([numpy_helper.from_array(_w(rng, (cout, cin, 3, 3), cin * 9), f"{name}_w"),
                      numpy_helper.from_array((rng.standard_normal(cout) * 0.1).astype(np.float32),
                                              f"{name}_b")])
        nodes.append(helper.make_node("Conv", [inp, f"{name}_w", f"{name}_b"], [out],
                                      pads=[1, 1, 1, 1]))

    nodes: list = []
    inits: list = []
    conv("stem", 16, c, "x", "s")
    nodes.append(helper.make_node("Relu", ["s"], ["s_r"]))
    conv("c1", c, c, "s_r", "c1")
    nodes.append(helper.make_node("Relu", ["c1"], ["c1_r"]))
    conv("c2", c, c, "c1_r", "c2")
    nodes.append(helper.make_node("Add", ["c2", "s_r"], ["res"]))
    nodes.append(helper.make_node("Relu", ["res"], ["res_r"]))
    nodes.append(helper.make_node("GlobalAveragePool", ["res_r"], ["gap"]))
    nodes.append(helper.make_node("Flatten", ["gap"], ["flat"]))
    inits += [numpy_helper.from_array(_w(rng, (10, c), c), "fc_w"),
              numpy_helper.from_array(np.zeros(10, np.float32), "fc_b")]
    nodes.append(helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["y"], transB=1))
    g = helper.make_graph(nodes, "residual_cnn",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 6, 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def multi_output_mlp() -> onnx.ModelProto:
    """Outputs [h1, y1, y2]: h1 is an intermediate that later layers also read, y1 comes from the
    end of a long branch and y2 from a short one, so the stage that produces a model output does
    not produce it as its own output 0 (a mesh run must key host streams by model output)."""
    rng = np.random.default_rng(5)
    d = 192
    nodes, inits = [], []

    def gemm(name, inp, out):
        inits.extend([numpy_helper.from_array(_w(rng, (d, d), d), f"{name}_w"),
                      numpy_helper.from_array(np.zeros(d, np.float32), f"{name}_b")])
        nodes.append(helper.make_node("Gemm", [inp, f"{name}_w", f"{name}_b"], [out], transB=1))

    gemm("g0", "x", "h1")
    gemm("g1", "h1", "a")
    gemm("g2", "a", "b")
    gemm("g3", "b", "y1")
    gemm("g4", "h1", "y2")
    vi = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, d]) for n in ("h1", "y1", "y2")]
    g = helper.make_graph(nodes, "multi_output_mlp",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, d])], vi, inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
