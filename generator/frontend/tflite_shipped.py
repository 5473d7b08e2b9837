"""TFLite models as the converter ships them, before TVM's TFLite frontend sees them.

- An input whose ``shape_signature`` has -1 (TFLiteConverter writes it for a batch-None Keras
  model) while its ``shape`` is static: compiled with ``shape``, which is what TFLite Micro (and
  LiteRT, unresized) runs with; logged; ``--input-shape`` still overrides.
- Dynamic-range ("hybrid") models, int8 weights with float activations, which TVM's frontend
  refuses (OpNotImplemented): the int8 weights are dequantized at import and the model is
  computed in float32, logged. (TFLite's hybrid kernels quantize activations on the fly; the
  float32 result differs from theirs by that quantization, not by pemesh.)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def static_input_dims(tensor: Any, name: str, dims: list[int | None]) -> list[int | None]:
    """``dims`` (None for a -1 of the shape_signature), or the tensor's static ``shape`` when
    the signature is dynamic but the shape is not."""
    static = [int(d) for d in tensor.ShapeAsNumpy()] if tensor.ShapeLength() else []
    if None not in dims or len(static) != len(dims) or not all(d > 0 for d in static):
        return dims
    sig = "[" + ", ".join("-1" if d is None else str(d) for d in dims) + "]"
    log.info("input %r: shape_signature %s has dynamic dims; compiling with its static shape %s "
             "(as TFLite Micro does; --input-shape %s:D0,D1,.. overrides)", name, sig, static,
             name)
    return static


def pemesh_converter() -> Any:
    """TVM's TFLite OperatorConverter, with quantized PAD/PADV2 allowed: its ``convert_pad``
    already pads an int8 tensor with the zero point in the integer domain (TFLite Micro's
    PAD: micro/kernels/pad.cc pads with the output zero point), but TVM's list of quantized
    ops it may convert leaves PAD out, so every int8 model with a PAD was refused."""
    from tvm.relax.frontend.tflite.tflite_frontend import OperatorConverter

    class _Pemesh(OperatorConverter):
        _SUPPORTED_QUANTIZED_OPS = OperatorConverter._SUPPORTED_QUANTIZED_OPS | {"PAD", "PADV2"}

    return _Pemesh


def hybrid_import_args(model: Any, path: Path | str) -> tuple[dict[str, Any], int]:
    """``(extra from_tflite arguments, number of dequantized weights)``: pemesh's
    ``op_converter`` (:func:`pemesh_converter`), for a hybrid model one that also sees its
    int8 weights as float32 constants."""
    weights = hybrid_weights(model)
    if not weights:
        return {"op_converter": pemesh_converter()}, 0
    log.info("%s: a dynamic-range (hybrid) model: %d int8 weight tensor(s) with float "
             "activations; dequantizing them at import and compiling in float32", path,
             len(weights))
    return {"op_converter": _hybrid_converter(weights)}, len(weights)


def hybrid_weights(model: Any) -> dict[int, np.ndarray]:
    """``{tensor index: float32 weights}`` of a dynamic-range ("hybrid") model: constant int8
    tensors with quantization parameters read by an operator whose activation input (input 0)
    is float32. Dequantized as ``(q - zero_point) * scale``, per channel along the
    quantized dimension."""
    from tflite.TensorType import TensorType

    sg = model.Subgraphs(0)
    out: dict[int, np.ndarray] = {}
    for i in range(sg.OperatorsLength()):
        op = sg.Operators(i)
        ins = [int(t) for t in op.InputsAsNumpy()] if op.InputsLength() else []
        if not ins or ins[0] < 0 or sg.Tensors(ins[0]).Type() != TensorType.FLOAT32:
            continue
        for idx in ins[1:]:
            if idx < 0 or idx in out:
                continue
            t = sg.Tensors(idx)
            q = t.Quantization()
            buf = model.Buffers(t.Buffer())
            if t.Type() != TensorType.INT8 or q is None or q.ScaleLength() == 0 or \
                    buf is None or buf.DataLength() == 0:
                continue
            shape = [int(d) for d in t.ShapeAsNumpy()] if t.ShapeLength() else []
            w = np.frombuffer(buf.DataAsNumpy().tobytes(), np.int8).reshape(shape)
            scale = np.asarray(q.ScaleAsNumpy(), np.float32).reshape(-1)
            zp = (np.asarray(q.ZeroPointAsNumpy(), np.float32).reshape(-1)
                  if q.ZeroPointLength() else np.zeros(1, np.float32))
            bshape = [1] * len(shape)
            if scale.size > 1:
                bshape[q.QuantizedDimension()] = -1
            out[idx] = ((w.astype(np.float32) - zp.reshape(bshape if zp.size > 1 else [1]))
                        * scale.reshape(bshape)).astype(np.float32)
    return out


class _FloatTensor:
    """A TFLite tensor seen as float32 without quantization (its data: ``_FloatBuffer``)."""

    def __init__(self, tensor: Any):
        self._t = tensor

    def Type(self) -> int:  # noqa: N802 (the tflite package's API)
        from tflite.TensorType import TensorType
        return TensorType.FLOAT32

    def Quantization(self) -> None:  # noqa: N802
        return None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._t, name)


class _FloatBuffer:
    def __init__(self, values: np.ndarray):
        self._bytes = np.frombuffer(np.ascontiguousarray(values, np.float32).tobytes(), np.uint8)

    def DataAsNumpy(self) -> np.ndarray:  # noqa: N802 (the tflite package's API)
        return self._bytes

    def DataLength(self) -> int:  # noqa: N802
        return int(self._bytes.size)


def _hybrid_converter(weights: dict[int, np.ndarray]) -> Any:
    """TVM's TFLite OperatorConverter that sees the hybrid weights ``weights`` as float32
    constants (so the model imports as a float model)."""
    from tvm.relax.frontend.tflite.tflite_frontend import TensorWrapper

    class _HybridAsFloat(pemesh_converter()):
        def get_tensors(self, tensors_idx_list):
            out = []
            for tw in super().get_tensors(tensors_idx_list):
                if tw.tensor_idx in weights:
                    tw = TensorWrapper(tw.tensor_idx, _FloatTensor(tw.tensor),
                                       _FloatBuffer(weights[tw.tensor_idx]), None)
                out.append(tw)
            return out

    return _HybridAsFloat
