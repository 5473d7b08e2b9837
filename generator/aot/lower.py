"""Relax → fused TIR → plain C operator functions (TVM's own C codegen, no packed API).

TVM 0.27 has no AOT executor. What it does have: Relax legalization and fusion, which leave a
``main`` that is a straight sequence of ``R.call_tir`` calls into TIR PrimFuncs, and a C code
generator that turns a *private* PrimFunc whose parameters are pointer handles into a plain C
function (PLATFORM.md). This module gets the model into that shape:

1. Relax pipeline: DecomposeOpsForInference → LegalizeOps → AnnotateTIROpPattern → FoldConstant
   → FuseOps → FuseTIR → DeadCodeElimination.
2. Per PrimFunc, an *auto-inline* schedule: inline every injective producer (padding, bias add,
   activation) into its consumer, and reverse-inline epilogues into their producer, so that a
   fused op keeps as few full-size temporaries as possible.
3. Per PrimFunc, a signature rewrite: Buffer parameters become pointer handles bound by
   ``DeclBuffer``; the root block's remaining ``alloc_buffers`` (op-internal temporaries) are
   *hoisted* into extra pointer parameters, so the AOT memory planner places them in the static
   arena (no stack arrays, no heap, and the RAM plan is complete).
4. ``tvm.tirx.build(target="c")`` and a textual clean-up that drops the TVM runtime includes.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from generator.errors import UnsupportedModelError
from generator.types import tensor_nbytes

log = logging.getLogger(__name__)

#: numpy dtype name → C element type used by TVM's C codegen for pointer parameters
C_TYPES = {
    "float32": "float", "float64": "double", "int8": "int8_t", "uint8": "uint8_t",
    "int16": "int16_t", "uint16": "uint16_t", "int32": "int32_t", "uint32": "uint32_t",
    "int64": "int64_t", "uint64": "uint64_t", "bool": "bool",
}


@dataclass(frozen=True)
class PrimParam:
    """One pointer parameter of a lowered operator function."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    hoisted: bool  # True for an op-internal temporary lifted out of the function

    @property
    def nbytes(self) -> int:
        return tensor_nbytes(self.shape, self.dtype)


@dataclass(frozen=True)
class LoweredFunc:
    """A fused operator as a plain C function: ``void <c_name>(T0* p0, T1* p1, ...)``."""

    relax_name: str                 # name of the PrimFunc in the Relax module
    c_name: str                     # C symbol
    params: tuple[PrimParam, ...]   # call args, then outputs, then hoisted temporaries
    num_call_args: int              # params[:num_call_args] are the call_tir args, then outputs
    num_outputs: int
    macs: int                       # multiply-accumulates (from reduction blocks), an estimate


def relax_pipeline(mod):
    """Legalize and fuse a Relax module so that ``main`` is a sequence of ``call_tir``."""
    import tvm
    from tvm import relax

    seq = tvm.transform.Sequential([
        relax.transform.DecomposeOpsForInference(),
        relax.transform.LegalizeOps(),
        relax.transform.AnnotateTIROpPattern(),
        relax.transform.FoldConstant(),
        relax.transform.FuseOps(),
        relax.transform.FuseTIR(),
        relax.transform.DeadCodeElimination(),
    ])
    with tvm.transform.PassContext(opt_level=3):
        return seq(mod)


def _root_blocks(sch):
    return sch.get_child_blocks(sch.get_sblock("root"))


def auto_inline(func):
    """Inline injective producers and epilogues until nothing more inlines.

    ``compute_inline`` folds a block into its consumers (padding, broadcasts, bias add);
    ``reverse_compute_inline`` folds an elementwise consumer into its producer. Reductions
    (conv, dense, pooling, softmax sums) stay; their outputs are the temporaries that remain.
    """
    import tvm
    import tvm.s_tir as s_tir

    sch = s_tir.Schedule(tvm.IRModule({"main": func}))
    changed = True
    while changed:
        changed = False
        output_blocks = {sch.get(b) for b in sch.get_output_blocks(sch.get_sblock("root"))}
        for block in _root_blocks(sch):
            attempts = (("reverse_compute_inline",) if sch.get(block) in output_blocks
                        else ("compute_inline", "reverse_compute_inline"))
            for prim in attempts:
                try:
                    getattr(sch, prim)(block)
                except Exception:  # noqa: BLE001 — TVM reports "cannot inline" as ScheduleError
                    continue
                changed = True
                break
            if changed:
                break
    accumulators = _epilogues_at_accumulator(sch)
    func = sch.mod["main"]
    return func.with_attr("pemesh.accumulators", accumulators) if accumulators else func


def _epilogues_at_accumulator(sch) -> list[str]:
    """Run each reduction's elementwise epilogue (bias, batch norm, activation, clip) per
    output element: ``reverse_compute_at`` the epilogue under the reduction's spatial loops
    and leave the reduction's output allocated in the op (not hoisted into the arena): TVM's
    lowering moves it under that loop and compacts it to the one accumulator the epilogue
    reads — no full-size pre-activation temporary. Returns the names of those buffers."""
    names = []
    for block in _root_blocks(sch):
        b = sch.get(block)
        kinds = [int(iv.iter_type) for iv in b.iter_vars]
        if 2 not in kinds or len(b.writes) != 1:            # 2: CommReduce
            continue
        n_spatial = kinds.index(2)
        if any(k != 2 for k in kinds[n_spatial:]) or n_spatial == 0:
            continue
        loops = sch.get_loops(block)
        consumers = sch.get_consumers(block)
        if len(loops) != len(kinds) or len(consumers) != 1:
            continue
        try:
            sch.reverse_compute_at(consumers[0], loops[n_spatial - 1], preserve_unit_loops=True)
        except Exception:  # noqa: BLE001 — the epilogue does not read one element per output
            continue
        try:   # the accumulator's init before the reduction loops, not a branch inside them
            sch.decompose_reduction(block, sch.get_loops(block)[n_spatial])
        except Exception:  # noqa: BLE001
            pass
        names.append(str(b.writes[0].source.name))
    return names


def _static_shape(buf, where: str) -> tuple[int, ...]:
    import tvm
    shape = []
    for dim in buf.ty.shape:
        if not isinstance(dim, tvm.tirx.IntImm):
            raise UnsupportedModelError(
                f"{where}: buffer '{buf.name}' has a dynamic dimension {dim}",
                hint="give static input shapes (pemesh compile --input-shape NAME:D0,D1,..)")
        shape.append(int(dim.value))
    return tuple(shape)


def _count_macs(func) -> int:
    """Multiply-accumulates of a PrimFunc: for each reduction block, the product of its loop
    extents (each reduction iteration is one multiply-add in conv/dense/matmul)."""
    import tvm
    import tvm.s_tir as s_tir

    total = 0

    def visit(node, extents):
        if isinstance(node, tvm.tirx.For):
            ext = node.extent.value if isinstance(node.extent, tvm.tirx.IntImm) else 1
            visit(node.body, extents * ext)
        elif isinstance(node, s_tir.SBlockRealize):
            blk = node.block
            nonlocal total
            if blk.init is not None and blk.name_hint != "root":
                total += extents
            visit(blk.body, extents)
        elif isinstance(node, tvm.tirx.SeqStmt):
            for s in node.seq:
                visit(s, extents)
        elif hasattr(node, "body") and isinstance(getattr(node, "body"), tvm.tirx.Stmt):
            visit(node.body, extents)

    visit(func.body, 1)
    return total


def to_plain_c_signature(func, relax_name: str):
    """Rewrite a Relax-produced PrimFunc to pointer-handle parameters, hoisting the root block's
    temporaries into extra parameters. Returns ``(new_func, params)``."""
    import tvm
    import tvm.s_tir as s_tir
    from tvm import ir, tirx

    body = func.body
    hoisted = []
    if isinstance(body, s_tir.SBlockRealize) and body.block.name_hint == "root":
        blk = body.block
        # a per-element accumulator (auto_inline: TVM compacts it) stays in the op
        acc = {str(n) for n in (func.attrs or {}).get("pemesh.accumulators", ())}
        hoisted = [b for b in blk.alloc_buffers if b.name not in acc]
        kept = [b for b in blk.alloc_buffers if b.name in acc]
        new_blk = s_tir.SBlock(blk.iter_vars, blk.reads, blk.writes, blk.name_hint, blk.body,
                               blk.init, kept, blk.match_buffers, blk.annotations)
        body = s_tir.SBlockRealize(body.iter_values, body.predicate, new_blk)
    params, decls, infos = [], [], []
    for i, buf in enumerate(list(func.params) + hoisted):
        dtype = str(buf.ty.dtype)
        if dtype not in C_TYPES:
            raise UnsupportedModelError(
                f"operator '{relax_name}': tensor '{buf.name}' has dtype {dtype}, which the "
                "C emitter does not support", hint=f"use one of {sorted(C_TYPES)}")
        handle = ir.expr.Var(f"p{i}", ir.PointerType(buf.ty.dtype))
        params.append(handle)
        decls.append(tirx.DeclBuffer(buf, data=handle))
        infos.append(PrimParam(buf.name, _static_shape(buf, relax_name), dtype,
                               hoisted=i >= len(func.params)))
    new_func = tirx.PrimFunc(params, tirx.SeqStmt(decls + [body]), attrs=func.attrs)
    return new_func, tuple(infos)


_TVM_INCLUDE = re.compile(r'^#include "tvm/.*"\n', re.M)


def clean_c_source(src: str) -> str:
    """Drop what ties TVM's C output to the TVM runtime; the code itself needs only libc/libm."""
    src = _TVM_INCLUDE.sub("", src)
    src = src.replace("#define TVM_EXPORTS\n", "")
    src = src.replace("void* __tvm_ffi__library_ctx = NULL;\n", "")
    src = re.sub(r"^// tvm target: .*\n", "", src, flags=re.M)
    src = src.replace("TVM_DLL ", "")
    src = re.sub(r'#ifdef __cplusplus\nextern "C"\n#endif\n', "", src)
    return src


_DEF = re.compile(r"^void (\w+)\(([^)]*)\) \{\n.*?^\}\n", re.M | re.S)


def split_functions(src: str) -> tuple[str, dict[str, str]]:
    """Split cleaned C codegen output into a prelude (includes, libm declarations) and one
    definition per function, so that a stage's C carries only the functions it calls."""
    defs = {m.group(1): m.group(0) for m in _DEF.finditer(src)}
    first = _DEF.search(src)
    head = src[:first.start()] if first else src
    prelude_lines = []
    for line in head.splitlines():
        if line.startswith("void ") and line.endswith(");"):
            continue  # forward declarations of our own functions: re-made per stage
        if line not in prelude_lines:
            prelude_lines.append(line)
    return "\n".join(prelude_lines) + "\n", defs


#: TIR intrinsics that TVM's C codegen leaves unresolved, and the libm function per dtype
_C_INTRINSICS = {"tirx.fabs": {"float32": "fabsf", "float64": "fabs"}}
_intrinsics_registered = False


def register_c_intrinsics() -> None:
    """Teach the ``c`` target the libm calls for intrinsics it has no rule for (once per
    process): ``tirx.fabs`` (Abs, Softsign, Softplus) → ``fabsf``."""
    global _intrinsics_registered
    if _intrinsics_registered:
        return
    from tvm import tirx

    for op_name, by_dtype in _C_INTRINSICS.items():
        def lower(call, by_dtype=by_dtype):
            dtype = str(getattr(call, "dtype", None) or call.ty)
            if dtype not in by_dtype:
                return call
            return tirx.call_pure_extern(dtype, by_dtype[dtype], *call.args)

        tirx.op.register_intrin_lowering(op_name, "c", f=lower, level=99)
    _intrinsics_registered = True


_FLOAT_LITERAL = re.compile(r"(?<![\w.])(\d\.\d{6}e[+-]\d{2,3})f\b")


_SCRIPT_F32 = re.compile(r"T\.float32\((-?[0-9.eE+-]+|-?inf|nan)\)")


def float32_constants(funcs) -> set[float]:
    """Every float32 immediate in the TIR of ``funcs`` (absolute values), read from TVMScript,
    which prints them in full (TVM 0.27 has no Python TIR visitor)."""
    found: set[float] = set()
    for f in funcs:
        for text in _SCRIPT_F32.findall(f.script()):
            try:
                found.add(abs(float(text)))
            except ValueError:
                continue
    return found


def exact_float_literals(src: str, values: set[float]) -> str:
    """TVM's C codegen prints float32 immediates with 7 significant digits (``%.6e``), which
    changes constants that need 9. Put back the exact value as a C99 hex float wherever the
    printed text identifies exactly one TIR constant and does not already read back exactly."""
    import numpy as np

    by_text: dict[str, set[float]] = {}
    for v in values:
        by_text.setdefault(f"{v:.6e}", set()).add(v)

    def repl(m: re.Match) -> str:
        cands = by_text.get(m.group(1))
        if not cands or len(cands) != 1:
            return m.group(0)
        v = next(iter(cands))
        if float(np.float32(float(m.group(1)))) == float(np.float32(v)):
            return m.group(0)
        return float.hex(float(np.float32(v))) + "f"

    return _FLOAT_LITERAL.sub(repl, src)


def lower_prim_funcs(mod, names: list[str], prefix: str,
                     overrides: dict | None = None) -> tuple[dict[str, LoweredFunc], str]:
    """Schedule, rewrite and C-generate the PrimFuncs ``names`` of ``mod``.

    ``overrides``: already scheduled PrimFuncs by name (``aot.schedules``), used instead of the
    auto-inline schedule.

    Returns the per-function descriptions (keyed by Relax name) and one C source text.
    """
    import tvm

    new_funcs, lowered = {}, {}
    for name in names:
        func = mod[name]
        overridden = bool(overrides) and name in overrides
        scheduled = overrides[name] if overridden else auto_inline(func)
        # an override's blocks are opaque (no reduction init left): count on the original
        macs = _count_macs(func if overridden else scheduled)
        if func.attrs is not None and "pemesh.qop" in func.attrs:  # int8 qop (quantize.py)
            from generator.frontend.quantize import QOp
            macs = QOp.from_json(str(func.attrs["pemesh.qop"])).macs
        plain, params = to_plain_c_signature(scheduled, name)
        c_name = f"{prefix}_{name}"
        new_funcs[c_name] = plain
        lowered[name] = LoweredFunc(name, c_name, params, 0, 0, macs)
    # A module with a single private function is treated as an entry function and then needs a
    # global symbol; a second, empty private function keeps every function plain C.
    if len(new_funcs) == 1:
        from tvm.script import tirx as T

        @T.prim_func(private=True)
        def _pemesh_unused():
            T.evaluate(0)

        new_funcs[f"{prefix}__unused"] = _pemesh_unused
    register_c_intrinsics()
    try:
        with tvm.transform.PassContext(opt_level=3, config={"tirx.disable_assert": True}):
            lib = tvm.tirx.build(tvm.IRModule(new_funcs), target="c")
    except (tvm.error.InternalError, tvm.error.OpError, RuntimeError) as err:
        first = str(err).strip().splitlines()[-1][:300]
        raise UnsupportedModelError(
            f"TVM's C code generator cannot lower the operator(s) {', '.join(sorted(names))}: "
            f"{first}",
            hint="replace the op in the model, or report it so pemesh can map it to C") from None
    src = exact_float_literals(clean_c_source(lib.inspect_source()),
                               float32_constants(new_funcs.values()))

    if f"{prefix}__unused" in new_funcs:
        src = re.sub(rf"void {prefix}__unused\(\)[^;]*?\{{.*?\n\}}\n", "", src, flags=re.S)
        src = src.replace(f"void {prefix}__unused();\n", "")
    if "TVM" in src or "tvm_ffi" in src:
        leftover = sorted(set(re.findall(r"\b\w*(?:TVM|tvm_ffi)\w*\b", src)))
        raise UnsupportedModelError(
            f"TVM's C codegen emitted runtime calls ({', '.join(leftover[:5])}) for an operator",
            hint="this operator needs the TVM runtime; report the model so the emitter can learn it")
    src = ("/* generated by pemesh — do not edit */\n"
           "/* operator functions: TVM C codegen (tvm.tirx.build target=c) */\n"
           "#include <stdint.h>\n" + src)
    return lowered, src
