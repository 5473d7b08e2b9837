"""``pemesh run --check``: compare outputs with the anchor's reference (TFLite Micro,
onnxruntime, torch).

With the stored reference input, the stored reference output is the expectation. With the
user's own ``--input``, the reference is computed for that input: the model is imported again
from the path recorded in ``mesh.json`` (with the same shapes and quantization) and run on the
Relax VM. Comparison is :func:`generator.verify.reference.compare`: shapes must match, integers
exactly, floats within 1e-4 × (1 + max|ref|), NaNs at the same places.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from generator.errors import CheckError, UsageError
from generator.manifest import Manifest, ModelRecord, read_reference

log = logging.getLogger(__name__)


def expected_outputs_for(out: Path, manifest: Manifest,
                         items: Sequence[Sequence[np.ndarray]],
                         user_inputs: bool) -> tuple[list[list[np.ndarray]], str]:
    """The reference outputs of every input item and the anchor that computed them (the
    stored ones for the stored input; for the user's own inputs, the model imported once and
    its anchor run per item)."""
    if not user_inputs:
        return ([read_reference(out, manifest, "outputs")],
                str(manifest.reference.get("anchor", "tvm")))
    from generator.verify.anchors import run_anchor

    model = load_recorded_model(manifest.model)
    runs = [run_anchor(model, list(item)) for item in items]
    return [r.outputs for r in runs], runs[0].anchor


def load_recorded_model(rec: ModelRecord):
    """The model a compile recorded (its file, name and input shapes), imported again as the
    compile did, to run its anchor on the user's own inputs."""
    from generator.frontend.importers import load_model
    from generator.frontend.quantize import quantize_if_qdq

    source = Path(rec.source)
    if not source.is_file():
        raise UsageError(f"--check with your own --input needs the model to compute the "
                         f"reference, and {source} (recorded at compile time) is gone",
                         hint="run without --input to check against the stored reference, or "
                              "put the model back")
    model = load_model(source, name=rec.name, input_shapes={t.name: t.shape for t in rec.inputs})
    log.info("computing the reference for the given input(s) from %s", source)
    return quantize_if_qdq(model, source)


def check_outputs(runs: Sequence[Sequence[np.ndarray]], refs: Sequence[Sequence[np.ndarray]],
                  log_dir: Path, anchor: str = "tvm") -> None:
    """Print per-output errors of the first run; raise CheckError if any run differs from its
    reference outputs (``refs[k]`` for run ``k``) by more than ``anchor`` allows."""
    from generator.verify.anchors import INT_STEPS
    from generator.verify.reference import compare

    steps = INT_STEPS.get(anchor, 0)
    judge = ANCHOR_NAMES.get(anchor, anchor)

    if len(refs) != len(runs):
        raise ValueError(f"{len(runs)} runs but {len(refs)} reference lists")
    bad = []
    for k, outs in enumerate(runs):
        for i, (o, r) in enumerate(zip(outs, refs[k])):
            ok, err = compare(o, r, steps)
            if np.shape(o) != np.shape(r):
                bad.append(f"input {k} output {i}: shape {np.shape(o)} != reference "
                           f"{np.shape(r)}")
            elif not ok:
                bad.append(f"input {k} output {i}: max |error| {err:.3g} > "
                           f"{_allowed(r, steps)}")
            elif k == 0:
                print(f"output {i}: max |error| {err:.3g} (tolerance {_allowed(r, steps)})")
    if bad:
        raise CheckError(f"outputs differ from {judge}: " + "; ".join(bad[:5]),
                         hint=f"see the PE log(s) in {log_dir}")
    print(f"check: OK ({len(runs)} inference(s) match {judge})")


#: how the check names its judge
ANCHOR_NAMES = {"tflite-micro": "TFLite Micro", "litert": "LiteRT", "onnxruntime": "onnxruntime",
                "torch": "torch", "tvm": "the TVM host reference"}


def _allowed(ref: np.ndarray, steps: int) -> str:
    from generator.verify.reference import tolerance

    if np.asarray(ref).dtype.kind in "iub":
        return f"{steps} step(s)"
    return f"{tolerance(np.asarray(ref)):.3g}"
