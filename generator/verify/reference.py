"""TVM's host run of an imported model (a debugging aid), onnxruntime, and comparisons.

The judges of pemesh's numbers are the anchors (:mod:`generator.verify.anchors`): TFLite Micro,
onnxruntime, torch; :func:`run_reference` is TVM's own run of the import, used where no anchor
can run the model. :func:`make_inputs` makes
deterministic inputs, :func:`compare` applies the one tolerance the project uses
(:func:`tolerance`).
"""

from __future__ import annotations

import logging
import weakref
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from generator.errors import UnsupportedModelError, UsageError
from generator.types import ImportedModel, TensorSpec

log = logging.getLogger(__name__)

#: compiled Relax executables, one per ImportedModel object (compiling takes a while)
_EXECUTABLES: "weakref.WeakKeyDictionary[ImportedModel, Any]" = weakref.WeakKeyDictionary()


def _executable(model: ImportedModel) -> Any:
    ex = _EXECUTABLES.get(model)
    if ex is None:
        import tvm

        try:
            ex = tvm.compile(model.mod, target="llvm")
        except Exception as e:
            raise UnsupportedModelError(
                f"TVM could not compile model {model.name!r} for the host reference: "
                f"{type(e).__name__}: {str(e).strip().splitlines()[-1][:400] if str(e) else ''}",
                hint="the model imports but does not lower; simplify it or report it") from e
        _EXECUTABLES[model] = ex
    return ex


def _check_inputs(specs: Sequence[TensorSpec], inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    if len(inputs) != len(specs):
        raise UsageError(f"the model takes {len(specs)} input(s), got {len(inputs)}",
                         hint="inputs: " + ", ".join(f"{s.name} {list(s.shape)} {s.dtype}"
                                                     for s in specs))
    out = []
    for spec, arr in zip(specs, inputs):
        arr = np.asarray(arr)
        if tuple(arr.shape) != tuple(spec.shape):
            raise UsageError(f"input {spec.name!r} must have shape {list(spec.shape)}, got "
                             f"{list(arr.shape)}", hint="reshape the input array")
        if arr.dtype != np.dtype(spec.dtype):
            if arr.dtype.kind != np.dtype(spec.dtype).kind:
                raise UsageError(f"input {spec.name!r} must be {spec.dtype}, got {arr.dtype}",
                                 hint=f"convert it with arr.astype('{spec.dtype}')")
            arr = arr.astype(spec.dtype)
        out.append(np.array(arr, order="C"))
    return out


def run_reference(model: ImportedModel, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Run ``model`` on the host with TVM (``tvm.compile`` for llvm + Relax VM).

    ``inputs`` follow ``model.inputs`` (a dtype of the same kind is cast, e.g. float64 → float32).
    Returns one array per model output, in order.
    """
    import tvm
    from tvm import relax

    arrays = _check_inputs(model.inputs, inputs)
    vm = relax.VirtualMachine(_executable(model), tvm.cpu())
    result = vm["main"](*[tvm.runtime.tensor(a) for a in arrays])
    outs = [result] if isinstance(result, tvm.runtime.Tensor) else list(result)
    arrays_out = [np.asarray(o.numpy()) for o in outs]
    if len(arrays_out) != len(model.outputs):
        raise UnsupportedModelError(f"the reference returned {len(arrays_out)} outputs, the model "
                                    f"declares {len(model.outputs)}", hint="report this model")
    log.debug("reference run of %s: %s", model.name, [a.shape for a in arrays_out])
    return arrays_out


def run_onnxruntime(path: str | Path | Any, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Run an ONNX model (a path, serialized bytes or an ``onnx.ModelProto``) with onnxruntime.

    ``inputs`` follow the model's real inputs (initializers excluded), in graph order.
    """
    import onnxruntime as ort

    if isinstance(path, (str, Path)):
        source: Any = str(path)
    elif isinstance(path, (bytes, bytearray)):
        source = bytes(path)
    else:
        source = path.SerializeToString()
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(source, sess_options=opts, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    if len(names) != len(inputs):
        raise UsageError(f"onnxruntime: the model takes {len(names)} input(s), got {len(inputs)}",
                         hint="inputs: " + ", ".join(names))
    outs = sess.run(None, {n: np.array(a, order="C") for n, a in zip(names, inputs)})
    return [np.asarray(o) for o in outs]


def make_inputs(specs: Sequence[TensorSpec], seed: int = 0) -> list[np.ndarray]:
    """Deterministic random inputs, one per spec (same seed → same bytes).

    Floats are uniform in [-1, 1); int8/uint8 span their range; wider ints are in [0, 16) (safe as
    indices); bools are fair coin flips.
    """
    rng = np.random.default_rng(seed)
    out = []
    for spec in specs:
        dt = np.dtype(spec.dtype)
        shape = tuple(spec.shape)
        if dt.kind == "f":
            arr = rng.uniform(-1.0, 1.0, size=shape).astype(dt)
        elif dt == np.bool_:
            arr = rng.integers(0, 2, size=shape).astype(np.bool_)
        elif dt.itemsize == 1:
            info = np.iinfo(dt)
            arr = rng.integers(int(info.min), int(info.max) + 1, size=shape).astype(dt)
        elif dt.kind in "iu":
            arr = rng.integers(0, 16, size=shape).astype(dt)
        else:
            raise UsageError(f"cannot make inputs of dtype {spec.dtype} for {spec.name!r}")
        out.append(np.array(arr, dtype=dt, order="C"))
    return out


def tolerance(ref: np.ndarray) -> float:
    """The allowed max absolute error against ``ref``: ``1e-4 * (1 + max|ref|)``."""
    mags = np.abs(np.asarray(ref, dtype=np.float64))
    mags = mags[np.isfinite(mags)]
    peak = float(mags.max()) if mags.size else 0.0
    return 1e-4 * (1.0 + peak)


def compare(out: np.ndarray, ref: np.ndarray, int_steps: int = 0) -> tuple[bool, float]:
    """``(ok, max_abs_err)`` of ``out`` against ``ref``.

    Shapes must be equal (else ``(False, inf)``). Integer and bool outputs must match to within
    ``int_steps`` (exactly by default); floats within :func:`tolerance`. NaNs must sit at the
    same places in both.
    """
    out, ref = np.asarray(out), np.asarray(ref)
    if out.shape != ref.shape:
        return False, float("inf")
    if out.size == 0:
        return True, 0.0
    a, b = out.astype(np.float64), ref.astype(np.float64)
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    if not np.array_equal(nan_a, nan_b):
        return False, float("inf")
    keep = ~nan_b
    diff = np.abs(a[keep] - b[keep])
    err = float(diff.max()) if diff.size else 0.0
    if np.isinf(err) or np.isnan(err):
        same_inf = np.array_equal(a[keep], b[keep])
        return same_inf, 0.0 if same_inf else float("inf")
    exact = ref.dtype.kind in "iub" or out.dtype.kind in "iub"
    ok = err <= (int_steps if ref.dtype.kind in "iu" else 0) if exact else err <= tolerance(ref)
    return bool(ok), err
