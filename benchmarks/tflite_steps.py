"""int8 steps from TFLite Micro and LiteRT, per converter-made model: a table on stdout.

For each model of tests/converter_zoo.py (full-integer int8 TFLite, made by TFLiteConverter and
cached), at the logits (the model cut at the tensor before its SOFTMAX; the autoencoder has none,
its logits are its output) and at the output: ``pemesh compile`` (``--board qemu_cortex_m3``, or
``--mesh qemu4`` when the model does not fit one PE), ``pemesh build --backend host``, ``pemesh
run --platform host --input x.npy -O y.npy`` for each of N smooth inputs, and the max difference
in int8 steps against TFLite Micro's host interpreter and LiteRT on the same int8 input (plus
LiteRT against TFLite Micro). ``--input-shape`` is passed from the flatbuffer's static shape.

    .venv/bin/python benchmarks/tflite_steps.py [--inputs N] [--json] [--keep DIR] [MODEL ...]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from generator.cli import main as pemesh  # noqa: E402
from tests import converter_zoo as cz  # noqa: E402
from tests import tflite_anchor as ta  # noqa: E402


def _pemesh(*argv: str) -> None:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        rc = pemesh(list(argv))
    if rc != 0:
        raise RuntimeError(f"pemesh {' '.join(argv)} failed ({rc}):\n{buf.getvalue()[-2000:]}")


def compile_and_build(model_path: Path, out: Path) -> str:
    """Compile on one PE if it fits, else on the smallest mesh it fits (qemu4, qemu16), else
    (pemesh cannot yet split it over Cortex-M3 PEs) on one host PE whose memory limits are
    lifted (``host-bigpe``: the same C, only the fit check differs); build for host PEs.
    Returns the target."""
    shapes = [f"{n}:{','.join(str(d) for d in s)}"
              for n, s in ta.input_shapes(model_path.read_bytes()).items()]
    flags = [a for s in shapes for a in ("--input-shape", s)]
    for where in ("qemu_cortex_m3", "qemu4", "qemu16"):
        target = ["--board", where] if where == "qemu_cortex_m3" else ["--mesh", where]
        try:
            _pemesh("compile", str(model_path), "-o", str(out), *target, "--force", *flags)
            break
        except RuntimeError as e:
            if "does not fit" not in str(e):
                raise
    else:
        where = "host-bigpe"
        _compile_big_pe(model_path, out)
    _pemesh("build", str(out), "--backend", "host")
    return where


def _compile_big_pe(model_path: Path, out: Path) -> None:
    import dataclasses
    import shutil

    from generator.boards.catalog import load_pe_kind, single_pe_mesh
    from generator.commands.compile import compile_model
    from generator.frontend.importers import load_model
    from generator.frontend.quantize import quantize_if_qdq

    pe = load_pe_kind("qemu_cortex_m3")
    pe = dataclasses.replace(pe, ram_bytes=64 << 20, flash_bytes=64 << 20)
    model = load_model(model_path, name=model_path.stem,
                       input_shapes=ta.input_shapes(model_path.read_bytes()))
    model = quantize_if_qdq(model, model_path)
    if out.exists():
        shutil.rmtree(out)
    compile_model(model, out, single_pe_mesh(pe))


def run_host(out: Path, x: np.ndarray, work: Path) -> np.ndarray:
    xi, yo = work / "x.npy", work / "y.npy"
    np.save(xi, x)
    _pemesh("run", str(out), "--platform", "host", "--input", str(xi), "-O", str(yo))
    return np.load(yo)


def measure(model: str, n_inputs: int, work: Path) -> dict:
    path = cz.path(f"{model}_int8.tflite")
    buf = path.read_bytes()
    logits = ta.logits_tensor(buf)
    variants = {"output": buf}
    if logits != int(ta._obj(buf).subgraphs[0].outputs[0]):
        variants["logits"] = ta.cut(buf, logits)
    xs = cz.smooth_inputs(model, n_inputs, seed=1234)
    res: dict = {"model": model}
    for where, vbuf in variants.items():
        vpath = work / f"{model}_{where}.tflite"
        vpath.write_bytes(vbuf)
        out = work / f"{model}_{where}"
        res["target"] = compile_and_build(vpath, out)
        d = {"pemesh_tflm": 0, "pemesh_litert": 0, "litert_tflm": 0}
        for i in range(n_inputs):
            xq = ta.quantize_input(buf, xs[i:i + 1])
            got = run_host(out, xq, work)
            t = ta.tflm(vbuf, [xq])[0]
            lr = ta.litert(vbuf, [xq])[0]
            d["pemesh_tflm"] = max(d["pemesh_tflm"], ta.steps(got, t))
            d["pemesh_litert"] = max(d["pemesh_litert"], ta.steps(got, lr))
            d["litert_tflm"] = max(d["litert_tflm"], ta.steps(lr, t))
        res[where] = d
    if "logits" not in res:
        res["logits"] = res["output"]
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", default=list(cz.MODELS))
    ap.add_argument("--inputs", type=int, default=3, help="smooth inputs per model")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--keep", default=None, help="keep the compiled folders here")
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as td:
        work = Path(args.keep) if args.keep else Path(td)
        work.mkdir(parents=True, exist_ok=True)
        for m in args.models:
            rows.append(measure(m, args.inputs, work))
            if not args.json:
                r = rows[-1]
                print(f"{m:12s} {r['target']:15s} logits: pemesh-TFLM {r['logits']['pemesh_tflm']:3d}"
                      f"  pemesh-LiteRT {r['logits']['pemesh_litert']:3d}"
                      f"  LiteRT-TFLM {r['logits']['litert_tflm']:3d}   output: pemesh-TFLM "
                      f"{r['output']['pemesh_tflm']:3d}  pemesh-LiteRT "
                      f"{r['output']['pemesh_litert']:3d}  LiteRT-TFLM "
                      f"{r['output']['litert_tflm']:3d}", flush=True)
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
