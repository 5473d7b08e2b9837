"""Real mesh runs (generator/mesh/runner.py): ``pemesh compile examples/tiny_cnn.onnx --mesh qemu4``
(two pipeline stages, two replicas), built and run on QEMU (and as host processes where the host
port has its mesh link), with the fabric routing between the PEs: outputs equal onnxruntime's and
come back in input order; injected garbage and bit flips are counted and do not corrupt outputs;
a killed or hung PE is named in bounded time and every process is gone afterwards."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from tests import paths
from generator.cli import main
from generator.errors import RunError
from generator.mesh.fabric import Faults
from generator.mesh.runner import MeshRunner, load_plan, summary
from tests.markers import needs_qemu

ROOT = paths.REPO
MODEL = ROOT / "examples" / "tiny_cnn.onnx"



def _compile(out: Path, backend: str, *extra: str, mesh: str = "qemu4") -> Path:
    assert main(["compile", str(MODEL), "-o", str(out), "--mesh", mesh, *extra]) == 0
    assert main(["build", str(out), "--backend", backend]) == 0
    return out


@pytest.fixture(scope="module")
def qemu_out(tmp_path_factory):
    return _compile(tmp_path_factory.mktemp("mesh") / "out", "baremetal", "--replicas", "2")


def _inputs(plan, k: int) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(11)
    return [[rng.standard_normal(s.shape).astype(s.dtype) for s in plan.model_inputs]
            for _ in range(k)]


def _expected(xs: list[np.ndarray]) -> list[np.ndarray]:
    from generator.verify.reference import run_onnxruntime
    return run_onnxruntime(MODEL, xs)


def _assert_outputs(res, inputs):
    assert len(res.outputs) == len(inputs)
    for outs, xs in zip(res.outputs, inputs):       # in input order, over both replicas
        for o, r in zip(outs, _expected(xs)):
            np.testing.assert_allclose(o, r, rtol=1e-4, atol=1e-5)


def _all_gone(runner: MeshRunner) -> bool:
    return all(p.proc.poll() is not None for p in runner.procs.values())


@needs_qemu
@pytest.mark.qemu
@pytest.mark.timeout(180)
def test_qemu_mesh_outputs_in_order_over_replicas(qemu_out):
    plan = load_plan(qemu_out)
    assert len(plan.replicas) == 2 and len(plan.pes) == 4
    inputs = _inputs(plan, 6)
    with MeshRunner(plan, timeout=30, log_dir=qemu_out / "run") as runner:
        res = runner.infer_many(inputs)
    assert _all_gone(runner)
    _assert_outputs(res, inputs)
    # every PE ran its share: 3 inferences per replica
    assert all(n == 3 for n in res.runs.values()), res.runs
    assert all(st.cycles > 0 and st.run_status == 0 for st in res.stats.values())
    fab = res.fabric
    assert fab.routed_frames > 0 and fab.retransmissions == 0 and fab.bad_frames == 0
    # stage 0 -> stage 1 of each replica is one hop; t3 is 4096 B = 16 TENSOR frames per input
    hops = {(a, b) for a, b in fab.mesh_links}
    assert hops == {(0, 1), (1, 0), (3, 2), (2, 3)}
    assert fab.mesh_links[(0, 1)].frames == 3 * 16 + 0 and fab.hops == fab.routed_frames
    doc = summary(plan, res, 6)
    assert doc["slowest_stage"]["cycles"] == max(st.cycles for st in res.stats.values())
    assert doc["bound_inferences_per_virtual_s"] > 0 and doc["inferences_per_s"] > 0


@needs_qemu
@pytest.mark.qemu
@pytest.mark.timeout(180)
def test_qemu_mesh_faults_are_counted_and_repaired(qemu_out):
    plan = load_plan(qemu_out)
    inputs = _inputs(plan, 4)
    faults = Faults(seed=3, garbage_rate=0.2, garbage_max=24, bitflip_rate=0.1)
    with MeshRunner(plan, timeout=30, faults=faults) as runner:
        res = runner.infer_many(inputs)
    _assert_outputs(res, inputs)
    fab = res.fabric
    assert fab.injected_bitflips > 0 and fab.injected_garbage_bytes > 0
    assert fab.retransmissions > 0
    # the stage-1 PEs' decoders saw the damage
    consumers = [pe for pe in plan.pes.values() if pe.stage.endswith("s1")]
    assert sum(res.stats[pe.id].rx_bad_frames + res.stats[pe.id].rx_skipped_bytes
               for pe in consumers) > 0


@needs_qemu
@pytest.mark.qemu
@pytest.mark.timeout(120)
def test_qemu_mesh_killed_pe_is_named(qemu_out):
    plan = load_plan(qemu_out)
    runner = MeshRunner(plan, timeout=10).start()
    try:
        runner.infer_many(_inputs(plan, 1))
        runner.procs[1].proc.kill()
        t0 = time.monotonic()
        with pytest.raises(RunError, match=r"PE 1 \(pe1, stage tiny_cnn_s1, replica 0, "
                                           r"coords \(1, 0\)\) (exited|closed its mesh link)"):
            runner.infer_many(_inputs(plan, 2))
        assert time.monotonic() - t0 < 10
    finally:
        runner.close()
    runner.close()                                     # idempotent
    assert _all_gone(runner) and not os.path.exists(runner.fabric.dir)


@needs_qemu
@pytest.mark.qemu
@pytest.mark.timeout(120)
def test_qemu_mesh_hung_pe_is_named_in_bounded_time(qemu_out):
    plan = load_plan(qemu_out)
    runner = MeshRunner(plan, timeout=3).start()
    try:
        os.kill(runner.procs[2].proc.pid, signal.SIGSTOP)   # replica 1's stage 1
        t0 = time.monotonic()
        with pytest.raises(RunError, match=r"PE 2 \(pe2, stage tiny_cnn_s1, replica 1.*"
                                           r"stopped the run: it does not answer"):
            runner.infer_many(_inputs(plan, 2))
        assert time.monotonic() - t0 < 3 + 3 + 2
    finally:
        runner.close()
    assert _all_gone(runner)


@needs_qemu
@pytest.mark.qemu
@pytest.mark.timeout(180)
def test_qemu_mesh_run_command(qemu_out, capsys):
    assert main(["run", str(qemu_out), "--check", "--count", "4", "--timeout", "30"]) == 0
    printed = capsys.readouterr().out
    assert "check: OK (4 inference(s)" in printed
    assert "link 0->1:" in printed and "slowest stage:" in printed
    assert "pe3 (PE 3, stage tiny_cnn_s0, replica 1, coords (1, 1)): 2 run(s)" in printed
    assert (qemu_out / "run" / "pe3.log").is_file()
    run = json.loads((qemu_out / "run.json").read_text())      # for 'pemesh report'
    assert run["pes"]["pe3"]["cycles"] > 0 and run["links"]["0->1"] > 0
    assert run["throughput"]["inferences"] == 4


@pytest.mark.timeout(180)
def test_host_mesh_run(tmp_path):
    out = _compile(tmp_path / "out", "host", "--replicas", "2")
    plan = load_plan(out)
    inputs = _inputs(plan, 4)
    faults = Faults(seed=5, garbage_rate=0.2, bitflip_rate=0.1)
    with MeshRunner(plan, timeout=30, faults=faults) as runner:
        res = runner.infer_many(inputs)
    assert _all_gone(runner)
    _assert_outputs(res, inputs)
    assert res.fabric.injected_bitflips > 0


@needs_qemu
@pytest.mark.qemu
@pytest.mark.slow
@pytest.mark.timeout(400)
def test_qemu_64_pes_on_a_small_machine(tmp_path):
    """64 QEMU PEs (qemu64, as many replicas as fit) boot, run and stop; idle PEs sleep in WFI
    (QEMU's icount sleep=on), so this works on 2 cores."""
    out = _compile(tmp_path / "out", "baremetal", "--replicas", "max", mesh="qemu64")
    plan = load_plan(out)
    assert len(plan.pes) == 64
    inputs = _inputs(plan, 64)
    with MeshRunner(plan, timeout=60, startup_timeout=60) as runner:
        res = runner.infer_many(inputs)
    assert _all_gone(runner)
    _assert_outputs(res, inputs)
    assert sum(res.runs.values()) == 64 * len({pe.stage for pe in plan.pes.values()})


@pytest.mark.timeout(120)
def test_sigterm_cleans_up_like_ctrl_c(tmp_path):
    """`pemesh run` stopped with SIGTERM leaves no PE process and no fabric socket folder."""
    import glob
    import signal
    import subprocess
    import sys

    from generator.cli import main as pemesh
    from tests.model_zoo import ZOO, save

    out = tmp_path / "out"
    assert pemesh(["compile", str(save(ZOO["mlp"](), tmp_path / "m.onnx")), "-o", str(out),
                   "--mesh", "qemu4", "--replicas", "2"]) == 0
    assert pemesh(["build", str(out), "--backend", "host"]) == 0
    before = set(glob.glob("/tmp/pemesh-noc-*"))
    proc = subprocess.Popen([sys.executable, "-m", "generator.cli", "run", str(out),
                             "--platform", "host", "--count", "100000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(6)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert set(glob.glob("/tmp/pemesh-noc-*")) <= before
    leftovers = subprocess.run(["pgrep", "-f", str(out / "build")], capture_output=True, text=True)
    assert leftovers.stdout.strip() == ""
