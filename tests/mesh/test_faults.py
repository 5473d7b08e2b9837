"""Runs that survive frame loss: READY credits that heal, --drop-rate, stalls named right.

A 12-stage MLP on qemu16 (one Dense layer per PE) is the mesh: every inference crosses 11 PE-to-PE
links, so every frame type of the mesh protocol (TENSOR, ACK, READY) is exposed to the faults.
Outputs are checked against onnxruntime (the model's anchor), input by input.
"""

from __future__ import annotations


import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from generator.cli import main
from generator.mesh.fabric import READY, Faults
from generator.mesh.runner import MeshRunner, load_plan
from tests.markers import needs_qemu

LAYERS = 12
WIDTH = 48


def deep_mlp() -> onnx.ModelProto:
    rng = np.random.default_rng(5)
    nodes, inits, cur = [], [], "x"
    for i in range(LAYERS):
        w = (rng.standard_normal((WIDTH, WIDTH)) / np.sqrt(WIDTH)).astype(np.float32)
        b = (0.1 * rng.standard_normal(WIDTH)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        nodes += [helper.make_node("Gemm", [cur, f"w{i}", f"b{i}"], [f"g{i}"], name=f"fc{i}"),
                  helper.make_node("Tanh", [f"g{i}"], [f"t{i}"], name=f"tanh{i}")]
        cur = f"t{i}"
    g = helper.make_graph(nodes, "deep_mlp",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, WIDTH])],
                          [helper.make_tensor_value_info(cur, TensorProto.FLOAT, [1, WIDTH])],
                          inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def smooth_inputs(n: int) -> list[np.ndarray]:
    t = np.linspace(0, 2 * np.pi, WIDTH, dtype=np.float32)
    return [np.sin(t * (1 + k % 5) + k).astype(np.float32)[None, :] for k in range(n)]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("faults") / "deep_mlp.onnx"
    onnx.save(deep_mlp(), path)
    return path


def _anchor(path, xs):
    import onnxruntime as ort
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return [sess.run(None, {name: x})[0] for x in xs]


def _out(tmp_path, model_path, backend):
    out = tmp_path / "out"
    assert main(["compile", str(model_path), "-o", str(out), "--mesh", "qemu16"]) == 0
    assert main(["build", str(out), "--backend", backend]) == 0
    return out


def _run_checked(out, model_path, faults, n, platform):
    plan = load_plan(out)
    assert len(plan.pes) >= 10
    xs = smooth_inputs(n)
    with MeshRunner(plan, platform=platform, faults=faults, timeout=60,
                    startup_timeout=60) as runner:
        res = runner.infer_many([[x] for x in xs])
    for k, (got, want) in enumerate(zip(res.outputs, _anchor(model_path, xs))):
        np.testing.assert_allclose(got[0], want, rtol=1e-4, atol=1e-5, err_msg=f"input {k}")
    return res


@pytest.mark.timeout(600)
def test_lost_ready_frames_heal_on_host_pes(tmp_path, model_path):
    out = _out(tmp_path, model_path, "host")
    # the first six READY frames of the mesh are dropped, whichever way they go
    res = _run_checked(out, model_path, Faults(seed=1, drop_types=(READY,), max_faults=6), 6,
                       "host")
    assert res.fabric.injected_drops == 6
    assert sum(st.ready_resent for st in res.stats.values()) >= 1


@pytest.mark.timeout(600)
def test_drop_rate_on_host_pes(tmp_path, model_path):
    out = _out(tmp_path, model_path, "host")
    res = _run_checked(out, model_path, Faults(seed=3, drop_rate=0.02), 20, "host")
    assert res.fabric.injected_drops > 0 and res.fabric.retransmissions > 0


@needs_qemu
@pytest.mark.qemu
@pytest.mark.timeout(900)
def test_drop_rate_and_lost_readies_on_qemu_pes(tmp_path, model_path):
    out = _out(tmp_path, model_path, "baremetal")
    res = _run_checked(out, model_path, Faults(seed=4, drop_rate=0.02), 20, "qemu")
    assert res.fabric.injected_drops > 0
    res = _run_checked(out, model_path, Faults(seed=5, drop_types=(READY,), max_faults=4), 4,
                       "qemu")
    assert res.fabric.injected_drops == 4
    assert sum(st.ready_resent for st in res.stats.values()) >= 1


@pytest.mark.timeout(300)
def test_drop_rate_through_the_cli(tmp_path, model_path, capsys):
    out = _out(tmp_path, model_path, "host")
    capsys.readouterr()
    assert main(["run", str(out), "--platform", "host", "--drop-rate", "0.03", "--count", "3",
                 "--check", "--fault-seed", "2"]) == 0
    printed = capsys.readouterr().out
    assert "check: OK (3 inference(s)" in printed and "dropped frames" in printed
