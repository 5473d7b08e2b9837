"""Read the fused Relax ``main`` as a straight-line program of operator calls.

After :func:`~generator.aot.lower.relax_pipeline`, ``main`` is a sequence of bindings, each a
``R.call_tir(func, (args...), out_sinfo)``, plus tuple plumbing. This module turns it into
:class:`Program`: numbered tensors (model inputs, constants, intermediates, model outputs) and
steps that call an operator function on them. Anything else in ``main`` is an op with no C
lowering, reported with its name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from generator.errors import UnsupportedModelError
from generator.types import SUPPORTED_DTYPES, tensor_nbytes


@dataclass
class Tensor:
    """A tensor of the program. ``kind``: input | output | const | inter."""

    tid: int
    shape: tuple[int, ...]
    dtype: str
    kind: str
    index: int = -1                  # input/output index, or constant index
    value: np.ndarray | None = None  # constants only

    @property
    def nbytes(self) -> int:
        return tensor_nbytes(self.shape, self.dtype)


@dataclass
class Step:
    """One operator call: ``func(*args, *outs)`` (hoisted temporaries are added at emit time)."""

    func: str                 # Relax name of the PrimFunc
    args: list[int]           # tensor ids
    outs: list[int]
    #: the args before ``schedules.plan_schedules`` re-made constants for a scheduled kernel
    orig_args: list[int] | None = None


@dataclass
class Program:
    tensors: list[Tensor] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    inputs: list[int] = field(default_factory=list)
    outputs: list[int] = field(default_factory=list)       # tensor ids of the model outputs
    copies: list[tuple[int, int]] = field(default_factory=list)  # (src, dst) memcpy at the end

    def add(self, shape, dtype, kind, index=-1, value=None) -> int:
        t = Tensor(len(self.tensors), tuple(int(d) for d in shape), str(dtype), kind, index, value)
        self.tensors.append(t)
        return t.tid


def _tensor_sinfo(sinfo, what: str) -> tuple[tuple[int, ...], str]:
    from tvm import relax

    if not isinstance(sinfo, relax.TensorType):
        raise UnsupportedModelError(f"{what}: expected a tensor, found {sinfo}")
    if sinfo.shape is None or not isinstance(sinfo.shape, relax.ShapeExpr):
        raise UnsupportedModelError(f"{what}: tensor shape is not static ({sinfo})",
                                    hint="fix dynamic dims with --input-shape NAME:D0,D1,..")
    dims = []
    for d in sinfo.shape.values:
        if not hasattr(d, "value"):
            raise UnsupportedModelError(f"{what}: dimension {d} is not static",
                                        hint="fix dynamic dims with --input-shape NAME:D0,D1,..")
        dims.append(int(d.value))
    dtype = str(sinfo.dtype)
    if dtype not in SUPPORTED_DTYPES:
        raise UnsupportedModelError(f"{what}: dtype {dtype} is not supported",
                                    hint=f"supported: {', '.join(SUPPORTED_DTYPES)}")
    return tuple(dims), dtype


def const_value(expr) -> np.ndarray:
    """The numpy value of a TVM constant expression (relax or tir)."""
    data = getattr(expr, "data", None)
    if data is None:
        data = expr.value
    return data.numpy() if hasattr(data, "numpy") else np.asarray(data)


#: the former name, still imported by generator/frontend/quantize.py
_const_value = const_value


def _name(obj) -> str:
    for attr in ("name_hint", "name"):
        v = getattr(obj, attr, None)
        if isinstance(v, str):
            return v
    return str(obj)


def build_program(mod) -> Program:
    """Walk ``mod["main"]`` (after the Relax pipeline) into a :class:`Program`."""
    import tvm
    from tvm import relax
    from tvm.ir.expr import Constant

    main = mod["main"]
    prog = Program()
    env: dict = {}                       # relax Var → tensor id or tuple of ids
    consts: dict = {}                    # id(Constant) → tensor id
    call_tir = tvm.ir.Op.get("relax.call_tir")

    for i, param in enumerate(main.params):
        shape, dtype = _tensor_sinfo(param.ty, f"model input {i}")
        env[param] = prog.add(shape, dtype, "input", index=i)
        prog.inputs.append(env[param])

    def ref(expr, where):
        if isinstance(expr, Constant):
            if expr in consts:
                return consts[expr]
            value = const_value(expr)
            tid = prog.add(value.shape, value.dtype, "const",
                           index=sum(t.kind == "const" for t in prog.tensors), value=value)
            consts[expr] = tid
            return tid
        if isinstance(expr, relax.Var):
            if expr not in env:
                raise UnsupportedModelError(f"{where}: unknown variable {expr}")
            return env[expr]
        if isinstance(expr, relax.Tuple):
            return tuple(ref(f, where) for f in expr.fields)
        raise UnsupportedModelError(f"{where}: unsupported argument {type(expr).__name__}")

    body = main.body
    for block in body.blocks:
        for binding in block.bindings:
            value = binding.value
            where = f"binding {_name(binding.var)}"
            if isinstance(value, relax.Call) and value.op.same_as(call_tir):
                gv, args = value.args[0], value.args[1]
                arg_ids = [ref(a, where) for a in args.fields]
                if any(isinstance(a, tuple) for a in arg_ids):
                    raise UnsupportedModelError(f"{where}: tuple argument to {_name(gv)}")
                sinfo = value.ty_args[0]
                out_infos = list(sinfo.fields) if isinstance(sinfo, relax.TupleType) else [sinfo]
                outs = []
                for k, o in enumerate(out_infos):
                    shape, dtype = _tensor_sinfo(o, f"{where} output {k}")
                    outs.append(prog.add(shape, dtype, "inter"))
                prog.steps.append(Step(_name(gv), arg_ids, outs))
                env[binding.var] = outs[0] if not isinstance(sinfo, relax.TupleType) else tuple(outs)
            elif isinstance(value, (relax.Var, relax.Tuple, Constant)):
                env[binding.var] = ref(value, where)
            elif isinstance(value, relax.TupleGetItem):
                tup = ref(value.tuple_value, where)
                env[binding.var] = tup[value.index]
            elif isinstance(value, relax.Call):
                op_name = _name(value.op)
                raise UnsupportedModelError(
                    f"operator {op_name} ({where}) has no C lowering in TVM's legalization",
                    hint="replace the op in the model, or report it so pemesh can learn it")
            else:
                raise UnsupportedModelError(f"{where}: unsupported binding {type(value).__name__}")

    result = ref(body.body, "model output")
    results = list(result) if isinstance(result, tuple) else [result]
    producers = {o for s in prog.steps for o in s.outs}
    for j, tid in enumerate(results):
        t = prog.tensors[tid]
        if t.kind == "inter" and tid in producers and tid not in prog.outputs:
            t.kind, t.index = "output", j
            prog.outputs.append(tid)
        else:  # an input, a constant, or a tensor already used as another output: copy it
            out = prog.add(t.shape, t.dtype, "output", index=j)
            prog.copies.append((tid, out))
            prog.outputs.append(out)
    return prog
