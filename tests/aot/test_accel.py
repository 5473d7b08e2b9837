"""Accelerator offload (generator/aot/accel.py): int8 steps call the pemesh_accel_* wrappers.

Stages compiled for ``qemu_cortex_m3_mac`` run on the host harness with the runtime's
``accel_sw.c``; outputs equal the TVM integer reference bit for bit, and the wrapper's counters
prove the offloaded steps ran on the wrapper path.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests import paths
from generator.aot.accel import accel_cycles, decide, padded_macs, relayout_weights
from generator.aot.mlf import write_mlf
from generator.aot.stage import compile_stage
from generator.boards.catalog import load_pe_kind
from generator.frontend.importers import import_onnx
from generator.frontend.quantize import QOp, quantize_model
from generator.verify.reference import make_inputs, run_reference
from tests.host_harness import CFLAGS, driver_source
from tests.quant_zoo import QZOO

RUNTIME = paths.RUNTIME
ACCEL = load_pe_kind("qemu_cortex_m3_mac").accelerator

COUNTER_DUMP = r"""
#include <stdio.h>
#include <stdlib.h>
#include <pemesh/accel.h>
__attribute__((destructor)) static void dump_counters(void) {
  struct pemesh_accel_counters c;
  const char *path = getenv("ACCEL_COUNTERS");
  FILE *f;
  pemesh_accel_get_counters(&c);
  if (path == NULL || (f = fopen(path, "w")) == NULL) return;
  for (int k = 0; k < PEMESH_ACCEL_N_KINDS; k++)
    fprintf(f, "%u %llu\n", c.calls[k], (unsigned long long)c.macs[k]);
  fprintf(f, "%u\n", c.errors);
  fclose(f);
}
"""


def run_with_accel(stage, inputs, workdir: Path):
    """Like tests.host_harness.run_stage_on_host, plus the wrappers and a counter dump."""
    workdir.mkdir(parents=True, exist_ok=True)
    model = workdir / "model"
    write_mlf(stage, workdir / "model.tar", model)
    (workdir / "driver.c").write_text(driver_source(stage))
    (workdir / "dump.c").write_text(COUNTER_DUMP)
    exe = workdir / "driver"
    srcs = sorted(str(p) for p in (model / "codegen/host/src").glob("*.c"))
    srcs += [str(RUNTIME / "src" / "accel_sw.c"), str(workdir / "dump.c")]
    subprocess.run(["gcc", *CFLAGS, "-I", str(model / "codegen/host/include"),
                    "-I", str(RUNTIME / "include"), str(workdir / "driver.c"), *srcs, "-lm",
                    "-o", str(exe)], check=True, capture_output=True, text=True)
    ins = []
    for i, (a, s) in enumerate(zip(inputs, stage.inputs)):
        p = workdir / f"in{i}.bin"
        np.ascontiguousarray(a, dtype=s.dtype).tofile(p)
        ins.append(str(p))
    outs = [str(workdir / f"out{j}.bin") for j in range(len(stage.outputs))]
    counters = workdir / "counters.txt"
    proc = subprocess.run([str(exe), *ins, *outs], capture_output=True, text=True, timeout=120,
                          env={"ACCEL_COUNTERS": str(counters)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = counters.read_text().split("\n")
    per_kind = {k: tuple(int(v) for v in lines[i].split())
                for i, k in enumerate(("conv2d", "depthwise_conv2d", "dense"))}
    got = [np.fromfile(f, dtype=s.dtype).reshape(s.shape) for f, s in zip(outs, stage.outputs)]
    return got, per_kind, int(lines[3])


@pytest.mark.parametrize("name", sorted(QZOO))
def test_offloaded_model_bit_exact_and_counted(name, tmp_path):
    proto = QZOO[name]()
    qmodel = quantize_model(import_onnx(proto, name=name), proto)
    stage = compile_stage(qmodel.mod, name, qmodel.inputs, qmodel.outputs, accelerator=ACCEL)
    off = [d for d in stage.offload if d.offloaded]
    assert off, f"{name}: nothing offloaded: {stage.offload}"
    lib0 = stage.files[f"codegen/host/src/{name}_lib0.c"]
    for d in off:   # the TVM function of an offloaded step is not in the stage
        assert f"_{d.func}(" not in lib0
    inputs = make_inputs(qmodel.inputs, seed=5)
    ref = run_reference(qmodel, inputs)
    got, counters, errors = run_with_accel(stage, inputs, tmp_path)
    for g, r in zip(got, ref):
        assert np.array_equal(g, r), f"{name}: offloaded C differs from the TVM reference"
    assert errors == 0
    for kind in ("conv2d", "depthwise_conv2d", "dense"):
        want = [d for d in off if d.kind == kind]
        assert counters[kind] == (len(want), sum(d.macs for d in want)), kind


def test_compile_report_says_why_steps_fall_back():
    proto = QZOO["q_conv"]()
    qmodel = quantize_model(import_onnx(proto, name="qc"), proto)
    stage = compile_stage(qmodel.mod, "qc", qmodel.inputs, qmodel.outputs, accelerator=ACCEL)
    reasons = {d.func: d.reason for d in stage.offload}
    assert reasons["pemesh_qconv2d_0"] == "offloaded"
    assert "not an int8 conv/dense" in reasons["quantize"]
    assert [op.backend for op in stage.ops] == ["tvm", "accel:conv2d", "tvm"]
    # without an accelerator, nothing is offloaded and the plain stage has no accel include
    plain = compile_stage(qmodel.mod, "qc", qmodel.inputs, qmodel.outputs)
    assert plain.offload == () and "pemesh/accel.h" not in plain.files["codegen/host/src/qc_lib1.c"]


def _q(**kw) -> QOp:
    base = dict(kind="conv2d", in_shape=(1, 8, 6, 6), out_shape=(1, 8, 6, 6), in_dtype="int8",
                out_dtype="int8", in_zp=0, out_zp=0, act_min=-128, act_max=127, pads=(1, 1, 1, 1),
                kernel=(3, 3))
    base.update(kw)
    return QOp(**base)


def test_decisions_fallbacks():
    assert decide(_q(), ACCEL)[:2] == (True, "conv2d")
    assert decide(_q(groups=8), ACCEL)[:2] == (True, "depthwise_conv2d")
    ok, kind, why = decide(_q(groups=2), ACCEL)
    assert not ok and kind == "grouped_conv2d" and "groups=2" in why
    ok, _, why = decide(_q(in_dtype="uint8"), ACCEL)
    assert not ok and "uint8" in why
    assert decide(_q(), None)[0] is False


def test_weight_relayout_and_cycles():
    q = _q(in_shape=(1, 3, 6, 6), out_shape=(1, 10, 6, 6))
    w = np.arange(10 * 3 * 3 * 3).reshape(10, 3, 3, 3).astype(np.int8)
    wl = relayout_weights(q, w, ACCEL)
    assert wl.shape == (16, 28)                      # 10 → 16 columns, K 27 → 28
    assert wl[1, (1 * 3 + 2) * 3 + 0] == w[1, 0, 1, 2]  # OHWI: k = (ky*kw + kx)*cin + ci
    assert not wl[10:].any() and not wl[:, 27].any()
    assert padded_macs(q, ACCEL) == 36 * 16 * 28
    assert accel_cycles(q, ACCEL) == 32 + 36 * 16 * 28 // 64
