"""Run a compiled stage's C on the host: gcc + a small generated driver.

This checks the numeric path of the AOT emitter (TVM's C + our entry, plan and constants)
without firmware; the firmware path is checked by the QEMU tests.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from generator.aot.mlf import write_mlf
from generator.aot.stage import CompiledStage
from generator.aot.emit import io_names

CFLAGS = ["-O1", "-std=c99", "-Wall", "-Wextra", "-Werror", "-Wno-unused-variable",
          "-fsanitize=address,undefined", "-fno-sanitize-recover=all"]


def driver_source(stage: CompiledStage) -> str:
    name = stage.name
    ins, outs = io_names(stage.inputs), io_names(stage.outputs)
    lines = ["#include <stdio.h>", "#include <stdlib.h>", "#include <stdint.h>",
             f'#include "tvmgen_{name}.h"', ""]
    for kind, names, specs in (("in", ins, stage.inputs), ("out", outs, stage.outputs)):
        for n, s in zip(names, specs):
            lines.append(f"static uint8_t {kind}_{n}[{max(s.nbytes, 1)}] __attribute__((aligned(16)));")
    lines.append("int main(int argc, char **argv) {")
    lines.append(f"  if (argc != {1 + len(ins) + len(outs)}) return 2;")
    for i, n in enumerate(ins):
        lines.append(f'  {{ FILE *f = fopen(argv[{1 + i}], "rb"); if (!f) return 3;'
                     f" if (fread(in_{n}, 1, sizeof in_{n}, f) != sizeof in_{n}) return 4; fclose(f); }}")
    lines.append(f"  struct tvmgen_{name}_inputs i = {{ {', '.join('in_' + n for n in ins)} }};")
    lines.append(f"  struct tvmgen_{name}_outputs o = {{ {', '.join('out_' + n for n in outs)} }};")
    lines.append(f"  int32_t rc = tvmgen_{name}_run(&i, &o);")
    for j, n in enumerate(outs):
        lines.append(f'  {{ FILE *f = fopen(argv[{1 + len(ins) + j}], "wb"); if (!f) return 5;'
                     f" fwrite(out_{n}, 1, sizeof out_{n}, f); fclose(f); }}")
    lines += ["  return (int)rc;", "}", ""]
    return "\n".join(lines)


def run_stage_on_host(stage: CompiledStage, inputs: list[np.ndarray], workdir: Path) -> list[np.ndarray]:
    """Compile ``stage`` with host gcc (sanitizers on) and run it on ``inputs``."""
    workdir.mkdir(parents=True, exist_ok=True)
    model = workdir / "model"
    write_mlf(stage, workdir / "model.tar", model)
    drv = workdir / "driver.c"
    drv.write_text(driver_source(stage))
    exe = workdir / "driver"
    srcs = sorted(str(p) for p in (model / "codegen/host/src").glob("*.c"))
    subprocess.run(["gcc", *CFLAGS, "-I", str(model / "codegen/host/include"), str(drv), *srcs,
                    "-lm", "-o", str(exe)], check=True, capture_output=True, text=True)
    in_files, out_files = [], []
    for i, (a, s) in enumerate(zip(inputs, stage.inputs)):
        p = workdir / f"in{i}.bin"
        np.ascontiguousarray(a, dtype=s.dtype).tofile(p)
        in_files.append(str(p))
    for j in range(len(stage.outputs)):
        out_files.append(str(workdir / f"out{j}.bin"))
    proc = subprocess.run([str(exe), *in_files, *out_files], capture_output=True, text=True,
                          timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"driver failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return [np.fromfile(f, dtype=s.dtype).reshape(s.shape)
            for f, s in zip(out_files, stage.outputs)]
