"""The AOT stage: a Relax (sub)graph → plain C with a static memory plan → MLF.

Entry point: :func:`compile_stage`. See ``lower.py`` (Relax → plain-C operator functions),
``graph.py`` (main as a program of calls), ``planner.py`` (arena plan), ``emit.py`` (C files) and
``mlf.py`` (Model Library Format v7).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from ..spec import TensorSpec
from .mlf import read_mlf_metadata, write_mlf  # noqa: F401  (re-exported API)
from .planner import Buffer, MemoryPlan, plan_memory

log = logging.getLogger(__name__)

DEFAULT_TARGET = "c -keys=arm_cpu,cpu -mcpu=cortex-m3"


@dataclass(frozen=True)
class OpInfo:
    """One operator call of a stage, for reports and the MLF."""

    c_name: str
    relax_name: str
    macs: int
    temp_bytes: int       # op-internal temporaries placed in the arena
    weight_bytes: int     # constants this call reads
    act_in_bytes: int
    act_out_bytes: int

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True, eq=False)
class CompiledStage:
    """A stage compiled to C: files in MLF ``codegen/host`` layout and its facts."""

    name: str
    target: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    files: dict[str, str]          # MLF member path → text
    ops: tuple[OpInfo, ...]
    plan: MemoryPlan
    constants_size: int
    relax_text: str
    compile_seconds: float

    @property
    def workspace_size(self) -> int:
        return self.plan.arena_size

    @property
    def io_size(self) -> int:
        return sum(t.nbytes for t in self.inputs + self.outputs)

    @property
    def macs(self) -> int:
        return sum(op.macs for op in self.ops)


def compile_stage(mod, name: str, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...],
                  *, alignment: int = 16, target: str = DEFAULT_TARGET) -> CompiledStage:
    """Compile a Relax module whose ``main`` takes ``inputs`` and returns ``outputs``.

    ``name`` becomes the C prefix: ``tvmgen_<name>_run`` and ``tvmgen_<name>.h``.
    """
    from . import emit
    from .graph import build_program
    from .lower import lower_prim_funcs, relax_pipeline

    t0 = time.perf_counter()
    fused = relax_pipeline(mod)
    prog = build_program(fused)
    _check_io(prog, inputs, outputs, name)
    used = sorted({s.func for s in prog.steps})
    funcs, ops_src = lower_prim_funcs(fused, used, f"tvmgen_{name}")

    buffers: list[Buffer] = []
    last_use: dict[int, int] = {}
    first_def: dict[int, int] = {}
    for si, step in enumerate(prog.steps):
        for tid in step.args:
            last_use[tid] = si
        for tid in step.outs:
            first_def.setdefault(tid, si)
            last_use.setdefault(tid, si)
    for src, _dst in prog.copies:
        last_use[src] = len(prog.steps)
    for t in prog.tensors:
        if t.kind == "inter":
            buffers.append(Buffer(f"t{t.tid}", t.nbytes, first_def[t.tid],
                                  max(last_use[t.tid], first_def[t.tid])))
    ops = []
    for si, step in enumerate(prog.steps):
        f = funcs[step.func]
        n_bound = len(step.args) + len(step.outs)
        if n_bound > len(f.params):
            raise AssertionError(f"{step.func}: {n_bound} call args for {len(f.params)} params")
        temps = f.params[n_bound:]
        for p in temps:
            buffers.append(Buffer(f"s{si}.{p.name}", p.nbytes, si, si))
        ops.append(OpInfo(
            c_name=f.c_name, relax_name=step.func, macs=f.macs,
            temp_bytes=sum(p.nbytes for p in temps),
            weight_bytes=sum(prog.tensors[a].nbytes for a in step.args
                             if prog.tensors[a].kind == "const"),
            act_in_bytes=sum(prog.tensors[a].nbytes for a in step.args
                             if prog.tensors[a].kind != "const"),
            act_out_bytes=sum(prog.tensors[o].nbytes for o in step.outs)))
    plan = plan_memory(buffers, alignment)
    constants_size = sum(t.nbytes for t in prog.tensors if t.kind == "const")

    files = {
        f"codegen/host/include/tvmgen_{name}.h":
            emit.emit_header(name, inputs, outputs, plan.arena_size, constants_size),
        f"codegen/host/src/{name}_lib0.c": emit.emit_ops(ops_src),
        f"codegen/host/src/{name}_lib1.c":
            emit.emit_entry(name, prog, funcs, plan, inputs, outputs),
        f"codegen/host/src/{name}_lib2.c": emit.emit_constants(name, prog),
    }
    seconds = time.perf_counter() - t0
    log.info("stage %s: %d ops, arena %d B (lower bound %d, ratio %.3f), constants %d B, %.1f s",
             name, len(ops), plan.arena_size, plan.lower_bound, plan.ratio, constants_size, seconds)
    return CompiledStage(name=name, target=target, inputs=tuple(inputs), outputs=tuple(outputs),
                         files=files, ops=tuple(ops), plan=plan, constants_size=constants_size,
                         relax_text=fused.script(show_meta=False), compile_seconds=seconds)


def _check_io(prog, inputs, outputs, name: str) -> None:
    from ..errors import UnsupportedModelError

    got_in = [(prog.tensors[t].shape, prog.tensors[t].dtype) for t in prog.inputs]
    got_out = [(prog.tensors[t].shape, prog.tensors[t].dtype) for t in prog.outputs]
    want_in = [(tuple(s.shape), s.dtype) for s in inputs]
    want_out = [(tuple(s.shape), s.dtype) for s in outputs]
    if got_in != want_in or got_out != want_out:
        raise UnsupportedModelError(
            f"stage {name}: the compiled graph's io {got_in} -> {got_out} does not match the "
            f"declared io {want_in} -> {want_out}")
