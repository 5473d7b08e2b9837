"""Write a TFLite flatbuffer from a list of tensors and operators, with the ``tflite``
package's generated builders (no TensorFlow). Used by the test model zoos."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass
class Tensor:
    name: str
    shape: list[int]
    ttype: str                       # FLOAT32 | INT8 | INT16 | INT32
    data: bytes | None = None
    scale: list[float] | None = None
    zero_point: list[int] | None = None
    qdim: int = 0


@dataclass
class Op:
    code: str
    inputs: list[int]
    outputs: list[int]
    options: tuple[str, dict] | None = None


def serialize(tensors: list[Tensor], ops: list[Op], inputs: list[int], outputs: list[int],
               description: str) -> bytes:
    import flatbuffers
    import tflite
    from tflite.BuiltinOperator import BuiltinOperator
    from tflite.BuiltinOptions import BuiltinOptions
    from tflite.TensorType import TensorType

    fb = flatbuffers.Builder(1 << 16)

    def vec(start: Callable, vals, prepend: str) -> int:
        start(fb, len(vals))
        for v in reversed(list(vals)):
            getattr(fb, prepend)(v)
        return fb.EndVector()

    buffers = [None]                       # buffer 0: the empty sentinel
    for t in tensors:
        buffers.append(t.data)
    buf_offs = []
    for data in buffers:
        dv = fb.CreateByteVector(data) if data else None
        tflite.BufferStart(fb)
        if dv is not None:
            tflite.BufferAddData(fb, dv)
        buf_offs.append(tflite.BufferEnd(fb))

    t_offs = []
    for i, t in enumerate(tensors):
        name = fb.CreateString(t.name)
        shape = vec(tflite.TensorStartShapeVector, t.shape, "PrependInt32")
        q = None
        if t.scale is not None:
            sv = vec(tflite.QuantizationParametersStartScaleVector, t.scale, "PrependFloat32")
            zv = vec(tflite.QuantizationParametersStartZeroPointVector, t.zero_point,
                     "PrependInt64")
            tflite.QuantizationParametersStart(fb)
            tflite.QuantizationParametersAddScale(fb, sv)
            tflite.QuantizationParametersAddZeroPoint(fb, zv)
            tflite.QuantizationParametersAddQuantizedDimension(fb, t.qdim)
            q = tflite.QuantizationParametersEnd(fb)
        tflite.TensorStart(fb)
        tflite.TensorAddShape(fb, shape)
        tflite.TensorAddType(fb, getattr(TensorType, t.ttype))
        tflite.TensorAddBuffer(fb, i + 1 if t.data else 0)
        tflite.TensorAddName(fb, name)
        if q is not None:
            tflite.TensorAddQuantization(fb, q)
        t_offs.append(tflite.TensorEnd(fb))

    codes = sorted({op.code for op in ops}, key=lambda c: getattr(BuiltinOperator, c))
    o_offs = []
    for op in ops:
        opts = None
        if op.options is not None:
            kind, d = op.options
            if kind == "ReshapeOptions":
                ns = vec(tflite.ReshapeOptionsStartNewShapeVector, d["new_shape"], "PrependInt32")
                tflite.ReshapeOptionsStart(fb)
                tflite.ReshapeOptionsAddNewShape(fb, ns)
                opts = tflite.ReshapeOptionsEnd(fb)
            elif kind == "FullyConnectedOptions":
                tflite.FullyConnectedOptionsStart(fb)
                tflite.FullyConnectedOptionsAddFusedActivationFunction(fb, d["act"])
                opts = tflite.FullyConnectedOptionsEnd(fb)
            else:
                getattr(tflite, f"{kind}Start")(fb)
                getattr(tflite, f"{kind}AddPadding")(fb, d["padding"])
                getattr(tflite, f"{kind}AddStrideW")(fb, d["stride_w"])
                getattr(tflite, f"{kind}AddStrideH")(fb, d["stride_h"])
                getattr(tflite, f"{kind}AddFusedActivationFunction")(fb, d["act"])
                getattr(tflite, f"{kind}AddDilationWFactor")(fb, 1)
                getattr(tflite, f"{kind}AddDilationHFactor")(fb, 1)
                if "depth_multiplier" in d:
                    getattr(tflite, f"{kind}AddDepthMultiplier")(fb, d["depth_multiplier"])
                opts = getattr(tflite, f"{kind}End")(fb)
        iv = vec(tflite.OperatorStartInputsVector, op.inputs, "PrependInt32")
        ov = vec(tflite.OperatorStartOutputsVector, op.outputs, "PrependInt32")
        tflite.OperatorStart(fb)
        tflite.OperatorAddOpcodeIndex(fb, codes.index(op.code))
        tflite.OperatorAddInputs(fb, iv)
        tflite.OperatorAddOutputs(fb, ov)
        if opts is not None:
            tflite.OperatorAddBuiltinOptionsType(fb, getattr(BuiltinOptions, op.options[0]))
            tflite.OperatorAddBuiltinOptions(fb, opts)
        o_offs.append(tflite.OperatorEnd(fb))

    tv = vec(tflite.SubGraphStartTensorsVector, t_offs, "PrependUOffsetTRelative")
    iv = vec(tflite.SubGraphStartInputsVector, inputs, "PrependInt32")
    ov = vec(tflite.SubGraphStartOutputsVector, outputs, "PrependInt32")
    opv = vec(tflite.SubGraphStartOperatorsVector, o_offs, "PrependUOffsetTRelative")
    sg_name = fb.CreateString("main")
    tflite.SubGraphStart(fb)
    tflite.SubGraphAddTensors(fb, tv)
    tflite.SubGraphAddInputs(fb, iv)
    tflite.SubGraphAddOutputs(fb, ov)
    tflite.SubGraphAddOperators(fb, opv)
    tflite.SubGraphAddName(fb, sg_name)
    subgraph = tflite.SubGraphEnd(fb)

    c_offs = []
    for c in codes:
        code = getattr(BuiltinOperator, c)
        tflite.OperatorCodeStart(fb)
        tflite.OperatorCodeAddDeprecatedBuiltinCode(fb, min(code, 127))
        tflite.OperatorCodeAddBuiltinCode(fb, code)
        tflite.OperatorCodeAddVersion(fb, 1)
        c_offs.append(tflite.OperatorCodeEnd(fb))
    codes_v = vec(tflite.ModelStartOperatorCodesVector, c_offs, "PrependUOffsetTRelative")
    subgraphs_v = vec(tflite.ModelStartSubgraphsVector, [subgraph], "PrependUOffsetTRelative")
    buffers_v = vec(tflite.ModelStartBuffersVector, buf_offs, "PrependUOffsetTRelative")
    desc = fb.CreateString(description)
    tflite.ModelStart(fb)
    tflite.ModelAddVersion(fb, 3)
    tflite.ModelAddOperatorCodes(fb, codes_v)
    tflite.ModelAddSubgraphs(fb, subgraphs_v)
    tflite.ModelAddDescription(fb, desc)
    tflite.ModelAddBuffers(fb, buffers_v)
    fb.Finish(tflite.ModelEnd(fb), file_identifier=b"TFL3")
    return bytes(fb.Output())
