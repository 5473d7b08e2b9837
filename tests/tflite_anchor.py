"""The anchors of TFLite models: TFLite Micro's host interpreter and LiteRT, on whole models,
on models cut after an operator, and on every intermediate tensor; pemesh's side of the same.

``cut(buf, tensor)`` makes the subgraph's only output ``tensor`` (and drops the operators after
its producer), so pemesh, TFLite Micro and LiteRT can all be compared at the logits (the input of
the final SOFTMAX) or after any layer. ``tflm_tensors`` runs TFLite Micro keeping every tensor
(``kPreserveAllTensors``) for a layer-by-layer diff.

Needs: tflite-micro, ai-edge-litert, tensorflow (its ``flatbuffer_utils`` edits the flatbuffer).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def _obj(buf: bytes):
    from tensorflow.lite.tools import flatbuffer_utils as fu
    return fu.convert_bytearray_to_object(bytearray(buf))


def ops(buf: bytes) -> list[tuple[int, str, list[int], list[int]]]:
    """``[(index, opcode name, inputs, outputs)]`` of subgraph 0, in execution order."""
    from tensorflow.lite.tools import flatbuffer_utils as fu

    m = _obj(buf)
    out = []
    for i, op in enumerate(m.subgraphs[0].operators):
        name = fu.opcode_to_name(m, op.opcodeIndex)
        out.append((i, str(name), [int(t) for t in op.inputs], [int(t) for t in op.outputs]))
    return out


def tensor_name(buf: bytes, idx: int) -> str:
    m = _obj(buf)
    n = m.subgraphs[0].tensors[idx].name
    return n.decode() if isinstance(n, bytes) else str(n)


def logits_tensor(buf: bytes) -> int:
    """The tensor before the final SOFTMAX (or the model's output if it has none)."""
    listing = ops(buf)
    m = _obj(buf)
    out = int(m.subgraphs[0].outputs[0])
    for _i, name, ins, outs in reversed(listing):
        if out in outs and name == "SOFTMAX":
            return ins[0]
    return out


def cut(buf: bytes, tensor: int) -> bytes:
    """The model with ``tensor`` as its only output and the operators after its producer gone."""
    from tensorflow.lite.tools import flatbuffer_utils as fu

    m = _obj(buf)
    sg = m.subgraphs[0]
    last = max(i for i, op in enumerate(sg.operators) if tensor in list(op.outputs))
    sg.operators = sg.operators[:last + 1]
    sg.outputs = np.array([tensor], np.int32)
    return bytes(fu.convert_object_to_bytearray(m))


def quant_params(buf: bytes, tensor: int) -> tuple[float, int]:
    m = _obj(buf)
    q = m.subgraphs[0].tensors[tensor].quantization
    return float(q.scale[0]), int(q.zeroPoint[0])


def input_params(buf: bytes) -> tuple[float, int]:
    return quant_params(buf, int(_obj(buf).subgraphs[0].inputs[0]))


def quantize_input(buf: bytes, x: np.ndarray) -> np.ndarray:
    """A float input as the int8 model input (TFLite's QUANTIZE: round half away from zero)."""
    s, z = input_params(buf)
    q = np.round(x.astype(np.float64) / s) + z      # numpy rounds half to even; ties are rare
    return np.clip(q, -128, 127).astype(np.int8)


def _buf(model: bytes | str | Path) -> bytes:
    return model if isinstance(model, (bytes, bytearray)) else Path(model).read_bytes()


def tflm(model: bytes | str | Path, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Run TFLite Micro's host interpreter; returns every model output."""
    from tflite_micro.python.tflite_micro import runtime

    buf = _buf(model)
    it = runtime.Interpreter.from_bytes(buf, arena_size=max(4 << 20, 10 * len(buf)))
    for i, a in enumerate(inputs):
        it.set_input(np.ascontiguousarray(a), i)
    it.invoke()
    n = len(_obj(buf).subgraphs[0].outputs)
    return [np.array(it.get_output(i)) for i in range(n)]


def tflm_tensors(model: bytes | str | Path, inputs: Sequence[np.ndarray]
                 ) -> dict[int, np.ndarray]:
    """Every operator output tensor after one TFLite Micro run (``kPreserveAllTensors``)."""
    from tflite_micro.python.tflite_micro import runtime

    buf = _buf(model)
    it = runtime.Interpreter.from_bytes(
        buf, arena_size=max(8 << 20, 20 * len(buf)),
        intrepreter_config=runtime.InterpreterConfig.kPreserveAllTensors)
    for i, a in enumerate(inputs):
        it.set_input(np.ascontiguousarray(a), i)
    it.invoke()
    out = {}
    for _i, _name, _ins, outs in ops(buf):
        for t in outs:
            d = it.GetTensor(t, 0)      # {"tensor_data", "shape", "dtype"}
            out[t] = np.array(d["tensor_data"]).reshape(tuple(d["shape"]))
    return out


def litert(model: bytes | str | Path, inputs: Sequence[np.ndarray],
           all_tensors: bool = False) -> list[np.ndarray] | dict[int, np.ndarray]:
    """Run LiteRT (ai-edge-litert); with ``all_tensors`` every operator output tensor."""
    from ai_edge_litert.interpreter import Interpreter

    buf = _buf(model)
    it = Interpreter(model_content=buf, experimental_preserve_all_tensors=all_tensors,
                     num_threads=1)
    it.allocate_tensors()
    for d, a in zip(it.get_input_details(), inputs):
        it.set_tensor(d["index"], np.ascontiguousarray(a).astype(d["dtype"]))
    it.invoke()
    if all_tensors:
        return {t: np.array(it.get_tensor(t)) for _i, _n, _in, outs in ops(buf) for t in outs}
    return [np.array(it.get_tensor(d["index"])) for d in it.get_output_details()]


def input_shapes(buf: bytes) -> dict[str, tuple[int, ...]]:
    """``{input name: shape}`` from the flatbuffer's static ``shape`` (what ``--input-shape``
    would say for a model whose shape_signature has -1)."""
    m = _obj(buf)
    sg = m.subgraphs[0]
    out = {}
    for i in sg.inputs:
        t = sg.tensors[int(i)]
        n = t.name.decode() if isinstance(t.name, bytes) else str(t.name)
        out[n] = tuple(int(d) for d in t.shape)
    return out


def pemesh_model(model: bytes | str | Path, folder: Path, name: str = "m",
                 fix_shapes: bool = True):
    """pemesh's import of a TFLite model (frontend + int8 folding), as ``pemesh compile`` does;
    ``fix_shapes``: pass the static shapes as ``--input-shape`` would."""
    from generator.frontend.quantize import quantize_if_qdq
    from generator.frontend.importers import load_model

    if isinstance(model, (bytes, bytearray)):
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.tflite"
        path.write_bytes(model)
    else:
        path = Path(model)
    shapes = input_shapes(path.read_bytes()) if fix_shapes else None
    return quantize_if_qdq(load_model(path, name=name, input_shapes=shapes), path)


def pemesh_reference(model: bytes | str | Path, inputs: Sequence[np.ndarray], folder: Path,
                     name: str = "m") -> list[np.ndarray]:
    """pemesh's numbers without building firmware: the TVM host run of pemesh's integer graph
    (``run --check`` holds the C to it bit for bit)."""
    from generator.verify.reference import run_reference

    m = pemesh_model(model, folder, name)
    return run_reference(m, [np.asarray(a).reshape(s.shape) for a, s in zip(inputs, m.inputs)])


def steps(a: np.ndarray, b: np.ndarray) -> int:
    """Max difference in quantization steps of two integer arrays (same number of elements)."""
    a = np.asarray(a).astype(np.int64).reshape(-1)
    b = np.asarray(b).astype(np.int64).reshape(-1)
    return int(np.max(np.abs(a - b))) if a.size else 0


def single_op(buf: bytes, k: int) -> tuple[bytes, list[int]]:
    """A model of operator ``k`` alone: its non-constant inputs become the model inputs, its
    outputs the model outputs. Returns the bytes and the input tensor indices (to feed it the
    tensors another run computed: each op compared on identical inputs)."""
    from tensorflow.lite.tools import flatbuffer_utils as fu

    m = _obj(buf)
    sg = m.subgraphs[0]
    op = sg.operators[k]
    ins = [int(t) for t in op.inputs
           if t >= 0 and not (m.buffers[sg.tensors[int(t)].buffer].data is not None
                              and len(m.buffers[sg.tensors[int(t)].buffer].data))]
    sg.operators = [op]
    sg.inputs = np.array(ins, np.int32)
    sg.outputs = np.array([int(t) for t in op.outputs], np.int32)
    return bytes(fu.convert_object_to_bytearray(m)), ins
