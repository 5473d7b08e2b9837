"""int8 steps from TFLite Micro and LiteRT, per converter-made model: a table on stdout.

For each model of tests/converter_zoo.py and tests/op_zoo.py (full-integer int8 TFLite, made by
TFLiteConverter and cached; ``senet_fio``/``gated_fio``: float input and output around the int8
model, their differences counted in steps of the output's quantization), at the logits (the model cut at the tensor before its SOFTMAX; the autoencoder has none,
its logits are its output) and at the output: ``pemesh compile`` (``--board qemu_cortex_m3``, or
``--mesh qemu4`` when the model does not fit one PE), ``pemesh build --backend host``, ``pemesh
run --platform host --input x.npy -O y.npy`` for each of N smooth inputs, and the max difference
in int8 steps against TFLite Micro's host interpreter and LiteRT on the same int8 input (plus
LiteRT against TFLite Micro). ``--input-shape`` is passed from the flatbuffer's static shape.
``--per-op``: instead, every operator of each model alone (pemesh's import run by TVM on the
host, which run --check holds the C to), fed the tensors TFLite Micro computed before it, against
TFLite Micro, and LiteRT's against TFLite Micro: the max steps per op kind.

    .venv/bin/python benchmarks/tflite_steps.py [--inputs N] [--json] [--keep DIR] [--per-op]
                                                [MODEL ...]
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
from tests import op_zoo as oz  # noqa: E402
from tests import tflite_anchor as ta  # noqa: E402

MODELS = list(cz.MODELS) + list(oz.MODELS) + [f"{m}_fio" for m in oz.MODELS]


def source(model: str) -> tuple[Path, bool]:
    """``(the cached .tflite, float I/O?)`` of a model name of MODELS."""
    base, _, kind = model.partition("_")
    if base in oz.MODELS:
        return oz.path(f"{base}_{kind or 'int8'}.tflite"), kind == "fio"
    return cz.path(f"{model}_int8.tflite"), False


def inputs(model: str, n: int, seed: int) -> np.ndarray:
    base = model.partition("_")[0]
    return (oz.smooth_inputs if base in oz.MODELS else cz.smooth_inputs)(base, n, seed=seed)


def _steps(buf: bytes, a: np.ndarray, b: np.ndarray) -> int:
    """Integer steps; float outputs (a DEQUANTIZE) in steps of the dequantized tensor."""
    if np.asarray(b).dtype.kind != "f":
        return ta.steps(a, b)
    (_i, _n, ins, _o) = [o for o in ta.ops(buf) if o[1] == "DEQUANTIZE"][-1]
    scale = ta.quant_params(buf, ins[0])[0]
    d = np.abs(np.asarray(a, np.float64).reshape(-1) - np.asarray(b, np.float64).reshape(-1))
    return int(np.round(np.max(d) / scale)) if d.size else 0


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


def _logits(buf: bytes) -> int:
    """The tensor before the final SOFTMAX, also under a float output's DEQUANTIZE."""
    listing = ta.ops(buf)
    if listing and listing[-1][1] == "DEQUANTIZE":
        for _i, name, ins, outs in listing:
            if name == "SOFTMAX" and listing[-1][2][0] in outs:
                return ins[0]
    return ta.logits_tensor(buf)


def measure(model: str, n_inputs: int, work: Path) -> dict:
    path, fio = source(model)
    buf = path.read_bytes()
    logits = _logits(buf)
    variants = {"output": buf}
    if logits != int(ta._obj(buf).subgraphs[0].outputs[0]):
        variants["logits"] = ta.cut(buf, logits)
    xs = inputs(model, n_inputs, seed=1234)
    res: dict = {"model": model}
    for where, vbuf in variants.items():
        vpath = work / f"{model}_{where}.tflite"
        vpath.write_bytes(vbuf)
        out = work / f"{model}_{where}"
        res["target"] = compile_and_build(vpath, out)
        d = {"pemesh_tflm": 0, "pemesh_litert": 0, "litert_tflm": 0}
        for i in range(n_inputs):
            xq = xs[i:i + 1] if fio else ta.quantize_input(buf, xs[i:i + 1])
            got = run_host(out, xq, work)
            t = ta.tflm(vbuf, [xq])[0]
            lr = ta.litert(vbuf, [xq])[0]
            d["pemesh_tflm"] = max(d["pemesh_tflm"], _steps(vbuf, got, t))
            d["pemesh_litert"] = max(d["pemesh_litert"], _steps(vbuf, got, lr))
            d["litert_tflm"] = max(d["litert_tflm"], _steps(vbuf, lr, t))
        res[where] = d
    if "logits" not in res:
        res["logits"] = res["output"]
    return res


def per_op(model: str, n_inputs: int, work: Path) -> dict:
    """``{op kind: {"pemesh_tflm": steps, "litert_tflm": steps}}``: each op alone on TFLite
    Micro's input tensors (max over the model's ops of that kind and ``n_inputs`` inputs)."""
    from generator.verify.reference import run_reference

    path, fio = source(model)
    buf = path.read_bytes()
    xs = inputs(model, n_inputs, seed=4321)
    feeds = []
    for i in range(n_inputs):
        x = xs[i:i + 1] if fio else ta.quantize_input(buf, xs[i:i + 1])
        feeds.append((x, ta.tflm_tensors(buf, [x])))
    res: dict = {}
    for k, op, _ins, outs in ta.ops(buf):
        sub, ins = ta.single_op(buf, k)
        m = ta.pemesh_model(sub, work, f"{model}_op{k}")
        r = res.setdefault(op, {"pemesh_tflm": 0, "litert_tflm": 0, "count": 0})
        r["count"] += 1
        for x, tensors in feeds:
            feed = [tensors[t] if t in tensors else x for t in ins]
            got = run_reference(m, [np.asarray(a).reshape(s.shape)
                                    for a, s in zip(feed, m.inputs)])[0]
            want = ta.tflm(sub, feed)[0]
            lr = ta.litert(sub, feed)[0]
            if want.dtype.kind == "f":
                scale = ta.quant_params(sub, ins[0])[0]
                dp = np.max(np.abs(got.reshape(-1) - want.reshape(-1))) / scale
                dl = np.max(np.abs(lr.reshape(-1) - want.reshape(-1))) / scale
                dp, dl = int(np.round(dp)), int(np.round(dl))
            else:
                dp, dl = ta.steps(got, want), ta.steps(lr, want)
            r["pemesh_tflm"] = max(r["pemesh_tflm"], dp)
            r["litert_tflm"] = max(r["litert_tflm"], dl)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", default=MODELS)
    ap.add_argument("--inputs", type=int, default=3, help="smooth inputs per model")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--keep", default=None, help="keep the compiled folders here")
    ap.add_argument("--per-op", action="store_true",
                    help="each operator alone against TFLite Micro (steps per op kind)")
    args = ap.parse_args(argv)
    rows = []
    if args.per_op:
        with tempfile.TemporaryDirectory() as td:
            for m in args.models:
                ops = per_op(m, args.inputs, Path(td))
                rows.append({"model": m, "ops": ops})
                if not args.json:
                    cells = "  ".join(f"{op} {v['pemesh_tflm']}/{v['litert_tflm']}"
                                      for op, v in sorted(ops.items()))
                    print(f"{m:12s} op: pemesh-TFLM/LiteRT-TFLM steps  {cells}", flush=True)
        if args.json:
            print(json.dumps(rows, indent=2))
        return 0
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
