"""Model frontends: ONNX, TFLite and torch.export files → a validated Relax module.

``load_model`` picks the frontend by the file suffix and hands on an
:class:`~generator.types.ImportedModel`: a Relax ``main`` whose parameters are the model inputs
(weights bound as constants), static shapes only, and dtypes from ``spec.SUPPORTED_DTYPES``.
Problems a user can fix are reported before TVM sees the model (opset, dynamic dims, ops the Relax
frontend cannot convert, dtypes), each naming the input, node or tensor and saying what to try.

TVM, onnx, tflite and torch are imported inside functions: importing this module is cheap.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from generator.frontend.onnx_ops import _node_desc, check_onnx_ops
from generator.errors import UnsupportedModelError, UsageError
from generator.types import SUPPORTED_DTYPES, ImportedModel, TensorSpec, c_identifier

log = logging.getLogger(__name__)

#: ONNX default-domain opsets this frontend accepts
ONNX_OPSET_MIN, ONNX_OPSET_MAX = 13, 18

SUFFIXES = {".onnx": "onnx", ".tflite": "tflite", ".pt2": "torch"}

Shape = tuple[int, ...]


def load_model(path: str | Path, *, name: str | None = None,
               input_shapes: Mapping[str, Sequence[int]] | None = None) -> ImportedModel:
    """Import a model file (``.onnx``, ``.tflite`` or ``.pt2`` from ``torch.export.save``).

    ``name`` (default: the file stem) becomes the C identifier of the model. ``input_shapes``
    fixes the shape of inputs with dynamic dims (``{"input": (1, 3, 32, 32)}``).
    Raises :class:`UsageError` for a missing/unknown file, :class:`UnsupportedModelError` for a
    model pemesh cannot compile.
    """
    p = Path(path)
    if not p.exists():
        raise UsageError(f"model file not found: {p}", hint="check the path (pemesh reads .onnx, "
                         ".tflite and .pt2 files)")
    if not p.is_file():
        raise UsageError(f"model path is not a file: {p}", hint="pass the model file itself")
    fmt = SUFFIXES.get(p.suffix.lower())
    if fmt is None:
        raise UsageError(f"unknown model format {p.suffix or '(no suffix)'!r} of {p}",
                         hint="pemesh reads .onnx, .tflite, and .pt2 (a torch.export.save file); "
                              "convert the model to one of them")
    model_name = c_identifier(name if name else p.stem)
    shapes = _clean_shapes(input_shapes)
    if fmt == "onnx":
        return _load_onnx_file(p, model_name, shapes)
    if fmt == "tflite":
        return _load_tflite(p, model_name, shapes)
    return _load_torch(p, model_name, shapes)


def parse_input_shapes(items: Sequence[str]) -> dict[str, Shape]:
    """Parse CLI ``--input-shape NAME:D0,D1,..`` values into ``{name: shape}``."""
    out: dict[str, Shape] = {}
    for item in items:
        name, sep, dims = item.rpartition(":")
        try:
            shape = tuple(int(d) for d in dims.split(",") if d.strip())
        except ValueError:
            shape = ()
        if not sep or not name or not shape or any(d <= 0 for d in shape):
            raise UsageError(f"bad --input-shape {item!r}",
                             hint="write NAME:D0,D1,.. with positive dims, e.g. input:1,3,32,32")
        out[name] = shape
    return out


def _clean_shapes(shapes: Mapping[str, Sequence[int]] | None) -> dict[str, Shape]:
    out: dict[str, Shape] = {}
    for key, dims in (shapes or {}).items():
        shape = tuple(int(d) for d in dims)
        if not shape or any(d <= 0 for d in shape):
            raise UsageError(f"input shape for {key!r} must be positive dims, got {list(dims)}",
                             hint="e.g. --input-shape input:1,3,32,32")
        out[str(key)] = shape
    return out


def _dtype_error(tensor: str, dtype: str, where: str) -> UnsupportedModelError:
    return UnsupportedModelError(
        f"tensor {tensor!r} ({where}) has dtype {dtype}, which pemesh does not support",
        hint=f"supported dtypes: {', '.join(SUPPORTED_DTYPES)}; convert the model to float32 "
             "(or int8) before compiling")


def _resolve_shape(input_name: str, dims: Sequence[int | str | None],
                   fixed: dict[str, Shape]) -> Shape:
    """A static input shape: the model's own, or the user's fix for dynamic dims."""
    if input_name in fixed:
        shape = fixed[input_name]
        if len(shape) != len(dims):
            raise UsageError(f"--input-shape for {input_name!r} has rank {len(shape)}, the model "
                             f"input has rank {len(dims)} ({_fmt_dims(dims)})",
                             hint="give one value per dimension")
        for i, (want, have) in enumerate(zip(shape, dims)):
            if isinstance(have, int) and have > 0 and have != want:
                raise UsageError(f"--input-shape for {input_name!r} sets dim {i} to {want}, but "
                                 f"the model fixes it to {have} ({_fmt_dims(dims)})",
                                 hint="only dynamic dims can be changed")
        return shape
    for i, d in enumerate(dims):
        if not (isinstance(d, int) and d > 0):
            raise UnsupportedModelError(
                f"input {input_name!r} has a dynamic dim {i} ({d!r}) in shape {_fmt_dims(dims)}; "
                "pemesh needs static shapes",
                hint=f"fix it with --input-shape {input_name}:"
                     + ",".join(str(x) if isinstance(x, int) and x > 0 else "N" for x in dims)
                     + " (N = the size you want)")
    return tuple(int(d) for d in dims)


def _fmt_dims(dims: Sequence[Any]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence a TVM frontend: its warnings and prints (e.g. whole IR dumps) go to debug log."""
    buf = io.StringIO()
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(buf):
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for w in caught:
                log.debug("frontend warning: %s", w.message)
            if buf.getvalue().strip():
                log.debug("frontend output:\n%s", buf.getvalue()[:4000])


def _check_unknown_inputs(fixed: dict[str, Shape], names: Sequence[str]) -> None:
    unknown = sorted(set(fixed) - set(names))
    if unknown:
        raise UsageError(f"--input-shape names unknown input(s) {', '.join(unknown)}",
                         hint=f"the model inputs are: {', '.join(names) or '(none)'}")


# --- ONNX ----------------------------------------------------------------------------------------

def _load_onnx_file(path: Path, name: str, fixed: dict[str, Shape]) -> ImportedModel:
    import onnx

    try:
        model = onnx.load(str(path))
    except Exception as e:  # protobuf DecodeError, external data errors, ...
        raise UsageError(f"cannot read ONNX model {path}: {e}",
                         hint="is the file a complete .onnx model?") from e
    return import_onnx(model, name=name, input_shapes=fixed, source=str(path))


def import_onnx(model: Any, *, name: str = "model",
                input_shapes: Mapping[str, Sequence[int]] | None = None,
                source: str = "<memory>") -> ImportedModel:
    """Import an in-memory ``onnx.ModelProto`` (what ``load_model`` does after reading a file)."""
    import onnx

    fixed = _clean_shapes(input_shapes)
    opset = _onnx_opset(model)
    check_onnx_ops(model.graph)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        raise UnsupportedModelError(f"the ONNX checker rejects the model: {_first_line(e)}",
                                    hint="re-export the model, or repair it with onnx tools") \
            from e
    _check_onnx_dtypes(model.graph)

    inits = {t.name for t in model.graph.initializer}
    real_inputs = [vi for vi in model.graph.input if vi.name not in inits]
    _check_unknown_inputs(fixed, [vi.name for vi in real_inputs])
    shape_dict: dict[str, Shape] = {}
    dtype_dict: dict[str, str] = {}
    for vi in real_inputs:
        tt = vi.type.tensor_type
        if not tt.HasField("shape"):
            dims: list[int | str | None] = []
            if vi.name not in fixed:
                raise UnsupportedModelError(f"input {vi.name!r} has an unknown rank",
                                            hint=f"fix it with --input-shape {vi.name}:D0,D1,..")
            dims = [None] * len(fixed[vi.name])
        else:
            dims = [d.dim_value if d.HasField("dim_value") else
                    (d.dim_param or None) for d in tt.shape.dim]
        shape_dict[vi.name] = _resolve_shape(vi.name, dims, fixed)
        dtype_dict[vi.name] = _onnx_np_dtype(tt.elem_type, vi.name, "model input")

    mod = _convert_onnx(model, shape_dict, dtype_dict)
    in_types, out_types = _check_main(mod, n_inputs=len(real_inputs))
    inputs = tuple(TensorSpec(vi.name, shape, dtype)
                   for vi, (shape, dtype) in zip(real_inputs, in_types))
    out_names = [o.name for o in model.graph.output]
    if len(out_names) != len(out_types):
        raise UnsupportedModelError(
            f"the ONNX model has {len(out_names)} outputs but TVM's module returns "
            f"{len(out_types)}", hint="report this model to the pemesh developers")
    outputs = tuple(TensorSpec(n, shape, dtype) for n, (shape, dtype) in zip(out_names, out_types))
    meta = {"opset": opset, "ir_version": int(model.ir_version),
            "producer": f"{model.producer_name} {model.producer_version}".strip(),
            "nodes": tuple((n.name, n.op_type) for n in model.graph.node)}
    log.info("imported ONNX model %s (opset %d): %d input(s), %d output(s)", source, opset,
             len(inputs), len(outputs))
    return ImportedModel(name=c_identifier(name), source=source, format="onnx", mod=mod,
                         inputs=inputs, outputs=outputs, meta=meta)


def _onnx_opset(model: Any) -> int:
    opset = None
    for op in model.opset_import:
        if op.domain in ("", "ai.onnx"):
            opset = int(op.version)
    if opset is None:
        raise UnsupportedModelError("the ONNX model imports no default-domain (ai.onnx) opset",
                                    hint="re-export the model with a standard opset (13..18)")
    if not ONNX_OPSET_MIN <= opset <= ONNX_OPSET_MAX:
        target = ONNX_OPSET_MAX if opset > ONNX_OPSET_MAX else ONNX_OPSET_MIN
        raise UnsupportedModelError(
            f"ONNX opset {opset} is not supported (pemesh supports opsets "
            f"{ONNX_OPSET_MIN}..{ONNX_OPSET_MAX})",
            hint=f"convert it: onnx.save(onnx.version_converter.convert_version("
                 f"onnx.load(path), {target}), new_path), or re-export with opset {target}")
    return opset


def _onnx_np_dtype(elem_type: int, tensor: str, where: str) -> str:
    from onnx import TensorProto, helper

    type_name = TensorProto.DataType.Name(elem_type) if elem_type in \
        TensorProto.DataType.values() else f"unknown ({elem_type})"
    try:
        np_name = np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).name
    except Exception:
        np_name = ""
    if np_name not in SUPPORTED_DTYPES or elem_type == TensorProto.UNDEFINED:
        raise _dtype_error(tensor, f"{type_name} (ONNX)", where)
    return np_name


def _check_onnx_dtypes(graph: Any) -> None:
    from onnx import TensorProto

    for vi in graph.input:
        _onnx_np_dtype(vi.type.tensor_type.elem_type, vi.name, "model input")
    for vi in graph.output:
        if vi.type.tensor_type.elem_type != TensorProto.UNDEFINED:
            _onnx_np_dtype(vi.type.tensor_type.elem_type, vi.name, "model output")
    for vi in graph.value_info:
        if vi.type.tensor_type.elem_type != TensorProto.UNDEFINED:
            _onnx_np_dtype(vi.type.tensor_type.elem_type, vi.name, "intermediate")
    for t in graph.initializer:
        _onnx_np_dtype(t.data_type, t.name, "initializer")
    for i, node in enumerate(graph.node):
        for attr in node.attribute:
            if node.op_type == "Cast" and attr.name == "to":
                _onnx_np_dtype(attr.i, node.output[0], f"output of {_node_desc(node, i)}")
            if node.op_type == "Constant" and attr.HasField("t"):
                _onnx_np_dtype(attr.t.data_type, node.output[0],
                               f"output of {_node_desc(node, i)}")


def _convert_onnx(model: Any, shape_dict: dict[str, Shape], dtype_dict: dict[str, str]) -> Any:
    from tvm.relax.frontend.onnx import from_onnx

    try:
        with _quiet():
            return from_onnx(model, shape_dict={k: list(v) for k, v in shape_dict.items()},
                             dtype_dict=dtype_dict, keep_params_in_input=False)
    except Exception as e:
        node = _failing_onnx_node(e)
        where = f" at {node}" if node else ""
        raise UnsupportedModelError(
            f"TVM's ONNX frontend failed{where}: {type(e).__name__}: {_first_line(e)}",
            hint="simplify the model (onnx-simplifier, constant shapes), or replace that node") \
            from e


def _failing_onnx_node(exc: BaseException) -> str | None:
    """The node the Relax ONNX importer was converting when ``exc`` was raised, if known."""
    tb = exc.__traceback__
    found = None
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == "_construct_nodes" and "node" in frame.f_locals:
            node = frame.f_locals["node"]
            if hasattr(node, "op_type"):
                found = f"node {node.name!r} (op {node.op_type})" if node.name \
                    else f"an unnamed {node.op_type} node"
        tb = tb.tb_next
    return found


def _first_line(exc: BaseException, limit: int = 400) -> str:
    text = str(exc).strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    first = lines[-1] if lines and lines[0].startswith("Traceback") else (lines[0] if lines
                                                                           else type(exc).__name__)
    return first[:limit]


# --- checks on the Relax module -----------------------------------------------------------------

def _static_tensor(ty: Any, what: str) -> tuple[Shape, str]:
    """(shape, dtype) of a Relax tensor type that must be static with a supported dtype."""
    from tvm import relax, tirx

    if not isinstance(ty, relax.TensorType):
        raise UnsupportedModelError(f"{what} is not a tensor (it is {ty})",
                                    hint="pemesh compiles models whose inputs/outputs are tensors")
    dtype = str(ty.dtype)
    if ty.shape is None or not isinstance(ty.shape, relax.ShapeExpr):
        raise UnsupportedModelError(f"{what} has an unknown shape after import",
                                    hint="fix the input shapes with --input-shape")
    dims = []
    for v in ty.shape.values:
        if not isinstance(v, tirx.IntImm):
            raise UnsupportedModelError(
                f"{what} has a dynamic shape {ty.shape} after import",
                hint="fix every dynamic input dim with --input-shape NAME:D0,D1,..")
        dims.append(int(v.value))
    if dtype not in SUPPORTED_DTYPES:
        raise _dtype_error(what, dtype, "after import")
    return tuple(dims), dtype


def _check_main(mod: Any, n_inputs: int) -> tuple[list[tuple[Shape, str]],
                                                   list[tuple[Shape, str]]]:
    """Check ``main``: static tensor params (exactly the model inputs) and a static return."""
    from tvm import relax

    if "main" not in [gv.name_hint for gv in mod.get_global_vars()]:
        raise UnsupportedModelError("the imported module has no 'main' function",
                                    hint="report this model to the pemesh developers")
    main = mod["main"]
    params = list(main.params)
    if len(params) != n_inputs:
        raise UnsupportedModelError(
            f"TVM's main takes {len(params)} parameters, the model has {n_inputs} inputs",
            hint="weights must be constants; report this model to the pemesh developers")
    in_types = [_static_tensor(p.ty, f"input {p.name!r}") for p in params]
    ret = main.ret_ty
    if isinstance(ret, relax.TupleType):
        out_types = [_static_tensor(f, f"output {i}") for i, f in enumerate(ret.fields)]
    else:
        out_types = [_static_tensor(ret, "output 0")]
    return in_types, out_types


# --- TFLite --------------------------------------------------------------------------------------

_TFLITE_DTYPES = {"FLOAT32": "float32", "INT8": "int8", "UINT8": "uint8", "INT16": "int16",
                  "INT32": "int32", "INT64": "int64", "BOOL": "bool"}


def _load_tflite(path: Path, name: str, fixed: dict[str, Shape]) -> ImportedModel:
    try:
        import tflite
        from tflite.TensorType import TensorType
    except ImportError as e:
        raise UnsupportedModelError("reading .tflite models needs the 'tflite' package",
                                    hint="pip install 'tflite>=2.10'  (or pip install "
                                         "'pemesh[tflite]')") from e
    from tvm.relax.frontend.tflite import from_tflite

    from generator.frontend.tflite_shipped import hybrid_import_args, static_input_dims

    buf = path.read_bytes()
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise UsageError(f"{path} is not a TFLite flatbuffer (no 'TFL3' identifier)",
                         hint="pass a .tflite file written by the TFLite converter")
    model = tflite.Model.GetRootAsModel(buf, 0)
    if model.SubgraphsLength() < 1:
        raise UnsupportedModelError(f"{path} has no subgraph", hint="re-export the model")
    sg = model.Subgraphs(0)
    type_names = {v: k for k, v in vars(TensorType).items() if not k.startswith("_")}

    def tensor_info(idx: int, where: str) -> tuple[str, list[int], str]:
        t = sg.Tensors(idx)
        tname = t.Name().decode("utf-8")
        tdtype = _TFLITE_DTYPES.get(type_names.get(t.Type(), ""), "")
        if not tdtype:
            raise _dtype_error(tname, f"{type_names.get(t.Type(), t.Type())} (TFLite)", where)
        dims = [int(d) for d in t.ShapeAsNumpy()] if t.ShapeLength() else []
        if t.ShapeSignatureLength():
            dims = [d if s >= 0 else None for d, s in zip(dims, t.ShapeSignatureAsNumpy())]
        return tname, dims, tdtype

    check_tflite_quant(model)
    for i in range(sg.TensorsLength()):
        tensor_info(i, "tensor")
    in_names, shape_dict, dtype_dict = [], {}, {}
    for idx in sg.InputsAsNumpy():
        tname, dims, tdtype = tensor_info(int(idx), "model input")
        in_names.append(tname)
        if tname not in fixed:                      # shape_signature -1, static shape
            dims = static_input_dims(sg.Tensors(int(idx)), tname, dims)
        shape_dict[tname] = _resolve_shape(tname, dims, fixed)
        dtype_dict[tname] = tdtype
    _check_unknown_inputs(fixed, in_names)
    out_names = [tensor_info(int(idx), "model output")[0] for idx in sg.OutputsAsNumpy()]

    kwargs, n_hybrid = hybrid_import_args(model, path)     # dynamic-range weights → float32
    try:
        with _quiet():
            mod = from_tflite(model, shape_dict=shape_dict, dtype_dict=dtype_dict, **kwargs)
    except Exception as e:
        raise UnsupportedModelError(
            f"TVM's TFLite frontend failed: {type(e).__name__}: {_first_line(e)}",
            hint="check the ops against tvm.relax.frontend.tflite; simplify the model") from e
    mod = _strip_params_attr(mod)
    in_types, out_types = _check_main(mod, n_inputs=len(in_names))
    if len(out_types) != len(out_names):
        raise UnsupportedModelError(f"TFLite model has {len(out_names)} outputs, TVM returns "
                                    f"{len(out_types)}", hint="report this model")
    log.info("imported TFLite model %s: %d input(s), %d output(s)", path, len(in_names),
             len(out_names))
    return ImportedModel(
        name=name, source=str(path), format="tflite", mod=mod,
        inputs=tuple(TensorSpec(n, s, d) for n, (s, d) in zip(in_names, in_types)),
        outputs=tuple(TensorSpec(n, s, d) for n, (s, d) in zip(out_names, out_types)),
        meta={"tflite_schema_version": int(model.Version()),
              "output_quant": _output_quant(sg, out_names),
              **({"hybrid_weights_dequantized": n_hybrid} if n_hybrid else {})})


def _output_quant(sg: Any, names: Sequence[str]) -> dict[str, tuple[float, int]]:
    """``{output name: (scale, zero point)}`` of the model's per-tensor quantized outputs (what
    dequantizes them, e.g. for the MLPerf Tiny runner's m-results)."""
    out = {}
    for name, idx in zip(names, sg.OutputsAsNumpy()):
        q = sg.Tensors(int(idx)).Quantization()
        if q is not None and q.ScaleLength() == 1 and q.ZeroPointLength() == 1:
            out[name] = (float(q.Scale(0)), int(q.ZeroPoint(0)))
    return out


_Q_ACT = {"INT8": "int8", "UINT8": "uint8"}
_Q_WEIGHT_OPS = {"CONV_2D": 0, "DEPTHWISE_CONV_2D": 3, "FULLY_CONNECTED": 0}
_Q_HINT = ("pemesh runs full-integer TFLite models: int8 (or uint8) per-tensor activations, "
           "int8 symmetric weights (per-tensor or per-output-channel), int32 biases; convert with "
           "converter.optimizations = [tf.lite.Optimize.DEFAULT], a representative dataset and "
           "target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]")


def check_tflite_quant(model: Any) -> None:
    """Reject quantization schemes pemesh cannot run in integers, naming the operator.

    Quantized activations must be int8/uint8 and per-tensor (so int16x8 models are refused);
    CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED weights int8 with zero point 0, per-tensor or
    per output channel (dimension 0; 3 for depthwise), biases int32.
    """
    from tflite.BuiltinOperator import BuiltinOperator
    from tflite.TensorType import TensorType

    sg = model.Subgraphs(0)
    op_names = {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_")}
    type_names = {v: k for k, v in vars(TensorType).items() if not k.startswith("_")}
    for i in range(sg.OperatorsLength()):
        op = sg.Operators(i)
        oc = model.OperatorCodes(op.OpcodeIndex())
        code = op_names.get(max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode()), "CUSTOM")
        ins = [int(t) for t in op.InputsAsNumpy()] if op.InputsLength() else []
        outs = [int(t) for t in op.OutputsAsNumpy()] if op.OutputsLength() else []
        for role, idx in [("input", t) for t in ins] + [("output", t) for t in outs]:
            if idx < 0:
                continue
            t = sg.Tensors(idx)
            q = t.Quantization()
            if q is None or q.ScaleLength() == 0:
                continue
            tname, ttype = t.Name().decode("utf-8"), type_names.get(t.Type(), str(t.Type()))
            label = f"operator #{i} ({code}), {role} tensor {tname!r}"
            k = ins.index(idx) if role == "input" and idx in ins else -1
            if code in _Q_WEIGHT_OPS and k == 1:        # the weights
                zps = q.ZeroPointAsNumpy() if q.ZeroPointLength() else np.zeros(1)
                if ttype != "INT8":
                    raise UnsupportedModelError(f"{label}: weights are {ttype}; pemesh needs "
                                                "int8 weights", hint=_Q_HINT)
                if np.any(np.asarray(zps) != 0):
                    kind = "per-channel" if q.ScaleLength() > 1 else "per-tensor"
                    raise UnsupportedModelError(
                        f"{label}: asymmetric {kind} weights (zero point "
                        f"{int(np.asarray(zps).reshape(-1)[0])}); pemesh needs symmetric "
                        "weights", hint=_Q_HINT)
                if q.ScaleLength() > 1 and q.QuantizedDimension() != _Q_WEIGHT_OPS[code]:
                    raise UnsupportedModelError(
                        f"{label}: weights are quantized per dimension "
                        f"{q.QuantizedDimension()}, not per output channel", hint=_Q_HINT)
            elif code in _Q_WEIGHT_OPS and k == 2:      # the bias
                if ttype != "INT32":
                    raise UnsupportedModelError(
                        f"{label}: {ttype} bias (an int16-activation scheme); pemesh runs int8 "
                        "activations with int32 biases", hint=_Q_HINT)
            elif ttype not in _Q_ACT:
                raise UnsupportedModelError(
                    f"{label}: {ttype} quantized activations; pemesh runs int8/uint8 "
                    "quantization only", hint=_Q_HINT)
            elif q.ScaleLength() > 1:
                raise UnsupportedModelError(f"{label}: per-channel activation quantization is "
                                            "not supported", hint=_Q_HINT)


def _strip_params_attr(mod: Any) -> Any:
    """The TFLite frontend leaves a ``params`` attr on main (a list of the weights of a
    quantized model, empty for a float one); the weights are bound as constants."""
    main = mod["main"]
    if main.attrs is not None and "params" in main.attrs:
        mod["main"] = main.without_attr("params")
    return mod


# --- torch.export --------------------------------------------------------------------------------

def _load_torch(path: Path, name: str, fixed: dict[str, Shape]) -> ImportedModel:
    try:
        import torch
    except ImportError as e:
        raise UnsupportedModelError("reading .pt2 (torch.export) models needs PyTorch",
                                    hint="pip install torch==2.13.0  (the CPU wheel; or pip "
                                         "install 'pemesh[torch]')") from e
    from tvm.relax.frontend.torch import from_exported_program

    try:
        program = torch.export.load(str(path))
    except Exception as e:
        raise UsageError(f"cannot load {path} as a torch.export program: {_first_line(e)}",
                         hint="save it with torch.export.save(torch.export.export(m, args), "
                              "'model.pt2')") from e
    sig = program.graph_signature
    user_inputs = list(sig.user_inputs)
    out_names = [str(o) for o in sig.user_outputs]
    _check_unknown_inputs(fixed, [str(n) for n in user_inputs])
    placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    for in_name in user_inputs:
        val = placeholders[in_name].meta.get("val") if in_name in placeholders else None
        if val is None or not hasattr(val, "shape"):
            raise UnsupportedModelError(f"input {in_name!r} is not a tensor",
                                        hint="export with tensor arguments only")
        dims = [int(d) if isinstance(d, int) else str(d) for d in val.shape]
        shape = _resolve_shape(in_name, dims, {})  # re-export to change shapes
        if in_name in fixed and fixed[in_name] != shape:
            raise UsageError(f"--input-shape cannot change input {in_name!r} of a .pt2 "
                             f"(exported as {list(shape)})",
                             hint="re-export with torch.export.export(...) for that shape")
        dtype = str(val.dtype).replace("torch.", "")
        if dtype not in SUPPORTED_DTYPES:
            raise _dtype_error(in_name, f"{dtype} (torch)", "model input")
    try:
        with _quiet():
            mod = from_exported_program(program, keep_params_as_input=False,
                                        unwrap_unit_return_tuple=True)
    except Exception as e:
        raise UnsupportedModelError(
            f"TVM's torch.export frontend failed: {type(e).__name__}: {_first_line(e)}",
            hint="check the ops against tvm.relax.frontend.torch; simplify the module") from e
    in_types, out_types = _check_main(mod, n_inputs=len(user_inputs))
    if len(out_types) != len(out_names):
        raise UnsupportedModelError(f"the program has {len(out_names)} outputs, TVM returns "
                                    f"{len(out_types)}", hint="return tensors only")
    log.info("imported torch.export model %s: %d input(s), %d output(s)", path, len(user_inputs),
             len(out_names))
    return ImportedModel(
        name=name, source=str(path), format="torch", mod=mod,
        inputs=tuple(TensorSpec(str(n), s, d) for n, (s, d) in zip(user_inputs, in_types)),
        outputs=tuple(TensorSpec(n, s, d) for n, (s, d) in zip(out_names, out_types)),
        meta={"torch_version": str(torch.__version__)})
