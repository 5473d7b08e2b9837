"""The AOT stage: a Relax (sub)graph → plain C with a static memory plan → MLF.

Entry point: :func:`compile_stage`. See ``lower.py`` (Relax → plain-C operator functions),
``graph.py`` (main as a program of calls), ``planner.py`` (arena plan), ``emit.py`` (C files) and
``mlf.py`` (Model Library Format v7).
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import Any

from generator.types import TensorSpec

from generator.aot.planner import Buffer, MemoryPlan, plan_memory

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
    backend: str = "tvm"  # "tvm", or "accel:<kind>" for a step offloaded to the accelerator

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
    offload: tuple = ()            # accel.OffloadDecision per step, when compiled for an accelerator

    @property
    def workspace_size(self) -> int:
        return self.plan.arena_size

    @property
    def io_size(self) -> int:
        return sum(t.nbytes for t in self.inputs + self.outputs)

    @property
    def macs(self) -> int:
        return sum(op.macs for op in self.ops)


@dataclass(frozen=True, eq=False)
class PreparedModel:
    """A model legalized, fused and lowered once; stages are emitted from it."""

    name: str
    fused: Any                          # the fused Relax IRModule
    prog: Any                           # graph.Program
    funcs: dict[str, Any]               # Relax name → lower.LoweredFunc
    prelude: str                        # includes and libm declarations of the op C
    func_src: dict[str, str]            # C name → C definition
    relax_text: str
    seconds: float


@dataclass(frozen=True)
class StepFacts:
    """Cost and memory facts of one program step, for the partitioner."""

    index: int
    func: str
    macs: int
    weight_bytes: int        # constants read by this step
    temp_bytes: int          # op-internal temporaries
    in_bytes: int            # non-constant inputs
    out_bytes: int
    code_bytes: int          # size of the op's C source, a proxy until the build measures


def prepare_model(mod, name: str, *, cpu: str | None = None) -> PreparedModel:
    """Legalize, fuse and lower every operator of ``mod`` once (the expensive part).
    ``cpu`` (the PE kind's) selects CPU-specific schedules (the M4's SMLAD kernels)."""
    from generator.aot.graph import build_program
    from generator.aot.lower import lower_prim_funcs, relax_pipeline, split_functions
    from generator.aot.schedules import plan_schedules

    t0 = time.perf_counter()
    fused = relax_pipeline(mod)
    prog = build_program(fused)
    used = sorted({s.func for s in prog.steps})
    overrides = plan_schedules(fused, prog, cpu=cpu)
    funcs, ops_src = (lower_prim_funcs(fused, used, f"tvmgen_{name}", overrides) if used
                      else ({}, ""))
    prelude, func_src = split_functions(ops_src)
    if any("pemesh_smlad" in src for src in func_src.values()):
        from generator.aot.schedules.kernels import SMLAD_PRELUDE
        prelude = re.sub(r"^.*\bpemesh_smlad\(.*\);\n", "", prelude, flags=re.M) + SMLAD_PRELUDE
    return PreparedModel(name, fused, prog, funcs, prelude, func_src,
                         fused.script(show_meta=False), time.perf_counter() - t0)


def step_facts(pm: PreparedModel) -> list[StepFacts]:
    facts = []
    for si, step in enumerate(pm.prog.steps):
        f = pm.funcs[step.func]
        n_bound = len(step.args) + len(step.outs)
        tensors = pm.prog.tensors
        facts.append(StepFacts(
            index=si, func=step.func, macs=f.macs,
            weight_bytes=sum(tensors[a].nbytes for a in step.args if tensors[a].kind == "const"),
            temp_bytes=sum(p.nbytes for p in f.params[n_bound:]),
            in_bytes=sum(tensors[a].nbytes for a in step.args if tensors[a].kind != "const"),
            out_bytes=sum(tensors[o].nbytes for o in step.outs),
            code_bytes=len(pm.func_src.get(f.c_name, ""))))
    return facts


def tensor_spec(pm: PreparedModel, tid: int, model_inputs, model_outputs) -> TensorSpec:
    """The TensorSpec of a program tensor: model io keep their names, others are ``t<id>``."""
    t = pm.prog.tensors[tid]
    if t.kind == "input":
        return model_inputs[t.index]
    if t.kind == "output":
        return model_outputs[t.index]
    return TensorSpec(f"t{tid}", t.shape, t.dtype)


def stage_io(pm: PreparedModel, steps: list[int], later_needs: set[int],
             include_copies: bool) -> tuple[list[int], list[int]]:
    """Tensor ids a stage made of ``steps`` reads from outside and must hand on.

    ``later_needs``: tensors read by later stages. Model outputs produced here are outputs.
    """
    prog = pm.prog
    produced, inputs, outputs = set(), [], []
    for si in steps:
        st = prog.steps[si]
        for a in st.args:
            if prog.tensors[a].kind != "const" and a not in produced and a not in inputs:
                inputs.append(a)
        produced.update(st.outs)
    if include_copies:
        for src, _dst in prog.copies:
            if prog.tensors[src].kind != "const" and src not in produced and src not in inputs:
                inputs.append(src)
    for si in steps:
        for o in prog.steps[si].outs:
            if prog.tensors[o].kind == "output" or o in later_needs:
                outputs.append(o)
    if include_copies:
        outputs += [dst for _src, dst in prog.copies]
    return inputs, outputs


def emit_stage(pm: PreparedModel, stage_name: str, steps: list[int], input_tids: list[int],
               output_tids: list[int], input_specs, output_specs, *, include_copies: bool = True,
               alignment: int = 16, target: str = DEFAULT_TARGET,
               accelerator=None) -> CompiledStage:
    """Emit the C of one stage: the program steps ``steps`` (ascending), reading
    ``input_tids`` and writing ``output_tids`` (with the given io TensorSpecs).

    ``accelerator`` (a ``boards.Accelerator``): int8 steps it supports call the
    ``pemesh_accel_*`` wrappers instead of TVM code (``generator/aot/accel.py``)."""
    from generator.aot import emit

    decisions = ()
    offloaded: set[int] = set()
    if accelerator is not None:
        from generator.aot.accel import plan_offload
        decisions = tuple(plan_offload(pm, steps, accelerator))
        offloaded = {d.step for d in decisions if d.offloaded}

    t0 = time.perf_counter()
    prog = pm.prog
    roles: dict[int, tuple[str, int]] = {}
    for i, tid in enumerate(input_tids):
        roles[tid] = ("input", i)
    for j, tid in enumerate(output_tids):
        roles[tid] = ("output", j)

    buffers: list[Buffer] = []
    first_def: dict[int, int] = {}
    last_use: dict[int, int] = {}
    for local, si in enumerate(steps):
        st = prog.steps[si]
        for a in st.args:
            last_use[a] = local
        for o in st.outs:
            first_def.setdefault(o, local)
            last_use.setdefault(o, local)
    copies = [(s, d) for s, d in prog.copies] if include_copies else []
    for src, _dst in copies:
        last_use[src] = len(steps)
    ops, temps_of = [], {}
    for tid in sorted(first_def):
        if tid not in roles:
            t = prog.tensors[tid]
            roles[tid] = ("inter", 0)
            buffers.append(Buffer(f"t{tid}", t.nbytes, first_def[tid],
                                  max(last_use.get(tid, first_def[tid]), first_def[tid])))
    for local, si in enumerate(steps):
        st = prog.steps[si]
        f = pm.funcs[st.func]
        n_bound = len(st.args) + len(st.outs)
        temps = f.params[n_bound:]
        temps_of[si] = [f"s{si}.{p.name}" for p in temps]
        for p, bname in zip(temps, temps_of[si]):
            buffers.append(Buffer(bname, p.nbytes, local, local))
        ops.append(OpInfo(
            c_name=f.c_name, relax_name=st.func, macs=f.macs,
            temp_bytes=sum(p.nbytes for p in temps),
            weight_bytes=sum(prog.tensors[a].nbytes for a in st.args
                             if prog.tensors[a].kind == "const"),
            act_in_bytes=sum(prog.tensors[a].nbytes for a in st.args
                             if prog.tensors[a].kind != "const"),
            act_out_bytes=sum(prog.tensors[o].nbytes for o in st.outs),
            backend=(f"accel:{next(d.kind for d in decisions if d.step == si)}"
                     if si in offloaded else "tvm")))
    plan = plan_memory(buffers, alignment)
    tvm_steps = [si for si in steps if si not in offloaded]
    const_tids = sorted({a for si in tvm_steps for a in prog.steps[si].args
                         if prog.tensors[a].kind == "const"})
    constants_size = sum(prog.tensors[t].nbytes for t in const_tids)
    used_funcs = sorted({pm.funcs[prog.steps[si].func].c_name for si in tvm_steps})
    accel_calls = {}
    if offloaded:
        from generator.aot.accel import make_call, step_qop
        for d in decisions:
            if d.offloaded:
                accel_calls[d.step] = make_call(pm, d.step, step_qop(pm, d.step), d.kind,
                                                accelerator, f"tvmgen_{stage_name}_a{d.step}")
        constants_size += sum(c.const_bytes for c in accel_calls.values())
    ops_src = pm.prelude + "\n".join(pm.func_src[c] for c in used_funcs)
    files = {
        f"codegen/host/include/tvmgen_{stage_name}.h":
            emit.emit_header(stage_name, input_specs, output_specs, plan.arena_size,
                             constants_size),
        f"codegen/host/src/{stage_name}_lib0.c": ops_src,
        f"codegen/host/src/{stage_name}_lib1.c":
            emit.emit_entry(stage_name, pm.name, prog, steps, pm.funcs, plan, roles, temps_of,
                            copies, input_specs, output_specs, const_tids,
                            accel_calls=accel_calls),
        f"codegen/host/src/{stage_name}_lib2.c": emit.emit_constants(pm.name, prog, const_tids),
    }
    seconds = time.perf_counter() - t0
    log.info("stage %s: %d ops, arena %d B (lower bound %d, ratio %.3f), constants %d B",
             stage_name, len(ops), plan.arena_size, plan.lower_bound, plan.ratio, constants_size)
    return CompiledStage(name=stage_name, target=target, inputs=tuple(input_specs),
                         outputs=tuple(output_specs), files=files, ops=tuple(ops), plan=plan,
                         constants_size=constants_size, relax_text=pm.relax_text,
                         compile_seconds=seconds, offload=decisions)


def compile_stage(mod, name: str, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...],
                  *, alignment: int = 16, target: str = DEFAULT_TARGET,
                  accelerator=None, cpu: str | None = None) -> CompiledStage:
    """Compile a Relax module whose ``main`` takes ``inputs`` and returns ``outputs`` as one
    stage. ``name`` becomes the C prefix: ``tvmgen_<name>_run`` and ``tvmgen_<name>.h``.
    ``accelerator``: offload supported int8 steps to it (see :func:`emit_stage`)."""
    pm = prepare_model(mod, name, cpu=cpu)
    _check_io(pm.prog, inputs, outputs, name)
    steps = list(range(len(pm.prog.steps)))
    stage = emit_stage(pm, name, steps, list(pm.prog.inputs), list(pm.prog.outputs),
                       inputs, outputs, alignment=alignment, target=target,
                       accelerator=accelerator)
    return stage


def _check_io(prog, inputs, outputs, name: str) -> None:
    from generator.errors import UnsupportedModelError

    got_in = [(prog.tensors[t].shape, prog.tensors[t].dtype) for t in prog.inputs]
    got_out = [(prog.tensors[t].shape, prog.tensors[t].dtype) for t in prog.outputs]
    want_in = [(tuple(s.shape), s.dtype) for s in inputs]
    want_out = [(tuple(s.shape), s.dtype) for s in outputs]
    if got_in != want_in or got_out != want_out:
        raise UnsupportedModelError(
            f"stage {name}: the compiled graph's io {got_in} -> {got_out} does not match the "
            f"declared io {want_in} -> {want_out}")
