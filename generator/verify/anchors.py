"""The anchors: the runtime each model format is judged by (DESIGN.md, "Checking").

- TFLite: TFLite Micro's host interpreter (pip ``tflite-micro``) — what runs on MCUs; LiteRT
  (``ai-edge-litert``) when TFLite Micro is not installed;
- ONNX: onnxruntime;
- torch.export (``.pt2``): torch, running the exported program.

TVM's own run of the imported model (:func:`generator.verify.reference.run_reference`) is a
debugging aid and the last resort: it is used only when the anchor cannot run the model (a model
built in memory, an anchor that is not installed, or one that refuses the model or its inputs,
e.g. shapes fixed with ``--input-shape`` that a TFLite file does not declare), and the manifest
then says so.

Integer outputs must equal the anchor's, up to :data:`INT_STEPS` quantization steps: 0 for
TFLite Micro (pemesh does its fixed-point arithmetic); 2 for LiteRT (it rounds requantization
once, TFLite Micro twice) and for onnxruntime on QDQ models (it computes them in float with its
own rounding). Floats are always within :func:`generator.verify.reference.tolerance`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from generator.types import ImportedModel

log = logging.getLogger(__name__)

#: quantization steps an integer output may differ from each anchor
INT_STEPS = {"tflite-micro": 0, "litert": 2, "onnxruntime": 2, "torch": 0, "tvm": 0}


@dataclass(frozen=True)
class AnchorRun:
    """The anchor's outputs for one input, and which anchor gave them (and why, if TVM)."""

    outputs: list[np.ndarray]
    anchor: str
    note: str = ""


def _file(model: ImportedModel) -> Path | None:
    p = Path(model.source)
    return p if model.source and not model.source.startswith("<") and p.is_file() else None


def _tflite_micro(path: Path, inputs: Sequence[np.ndarray], n_outputs: int) -> list[np.ndarray]:
    from tflite_micro.python.tflite_micro import runtime

    buf = path.read_bytes()
    it = runtime.Interpreter.from_bytes(buf, arena_size=max(4 << 20, 10 * len(buf)))
    for i, a in enumerate(inputs):
        it.set_input(np.ascontiguousarray(a), i)
    it.invoke()
    return [np.array(it.get_output(i)) for i in range(n_outputs)]


def _litert(path: Path, inputs: Sequence[np.ndarray], n_outputs: int) -> list[np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    for d, a in zip(it.get_input_details(), inputs):
        it.set_tensor(d["index"], np.ascontiguousarray(a).astype(d["dtype"]))
    it.invoke()
    return [np.array(it.get_tensor(d["index"])) for d in it.get_output_details()]


def _torch(path: Path, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    import torch

    program = torch.export.load(str(path))
    with torch.no_grad():
        result = program.module()(*[torch.from_numpy(np.ascontiguousarray(a)) for a in inputs])
    if isinstance(result, torch.Tensor):
        result = (result,)
    return [r.detach().numpy() for r in result]


def run_anchor(model: ImportedModel, inputs: Sequence[np.ndarray]) -> AnchorRun:
    """The anchor's outputs of ``model`` (imported from ``model.source``) for ``inputs``."""
    from generator.verify.reference import run_onnxruntime, run_reference

    path = _file(model)
    tried: list[str] = []
    if path is not None and model.format == "tflite":
        for name, fn, pkg in (("tflite-micro", _tflite_micro, "tflite-micro"),
                              ("litert", _litert, "ai-edge-litert")):
            try:
                outs = fn(path, inputs, len(model.outputs))
            except ImportError:
                tried.append(f"{pkg} is not installed")
                continue
            except Exception as err:  # noqa: BLE001 - the interpreter's own error: say it, go on
                tried.append(f"{name} could not run it ({type(err).__name__}: "
                             f"{str(err).strip()[:200]})")
                continue
            if len(outs) == len(model.outputs):
                return AnchorRun(_shaped(outs, model), name)
            tried.append(f"{name} gave {len(outs)} outputs for {len(model.outputs)}")
    elif path is not None and model.format == "onnx":
        try:
            return AnchorRun(_shaped(run_onnxruntime(path, inputs), model), "onnxruntime")
        except Exception as err:  # noqa: BLE001 - onnxruntime refuses the model: say it, go on
            tried.append(f"onnxruntime could not run it ({type(err).__name__}: "
                         f"{str(err).strip()[:200]})")
    elif path is not None and model.format == "torch":
        try:
            return AnchorRun(_shaped(_torch(path, inputs), model), "torch")
        except ImportError:
            tried.append("torch is not installed")
        except Exception as err:  # noqa: BLE001 - torch cannot run the program: say it, go on
            tried.append(f"torch could not run it ({type(err).__name__}: {str(err).strip()[:200]})")
    else:
        tried.append("the model is not a file pemesh can hand to its runtime")
    note = "; ".join(tried)
    log.info("the reference of %s is TVM's own run of the import (%s)", model.name, note)
    return AnchorRun(run_reference(model, inputs), "tvm", note)


def _shaped(outs: list[np.ndarray], model: ImportedModel) -> list[np.ndarray]:
    """The anchor's outputs in the model's declared shapes and dtypes (same element count)."""
    res = []
    for o, spec in zip(outs, model.outputs):
        o = np.asarray(o)
        if o.size == spec.num_elements and tuple(o.shape) != spec.shape:
            o = o.reshape(spec.shape)
        res.append(o.astype(spec.dtype, copy=False) if o.dtype.kind == np.dtype(spec.dtype).kind
                   else o)
    return res


__all__ = ["AnchorRun", "INT_STEPS", "run_anchor"]
