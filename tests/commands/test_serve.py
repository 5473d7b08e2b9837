"""``pemesh serve`` end to end on QEMU: a client that plays the MLPerf Tiny runner
(tests/eembc_client.py, written from mlcommons/tiny's runner) talks to the served pty of an app
compiled with ``--host-protocol eembc``; and HostLink talks frames to a served pemesh app.
Results must equal the model's output as TVM computes it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from generator.cli import main
from tests.eembc_client import EembcDut, laps_us, parse_results
from tests.paths import EXAMPLES

MODEL = EXAMPLES / "tiny_cnn.onnx"
LINK_RE = re.compile(r"^host link (\S+): (/dev/\S+) \(PE (\d+), stage (\S+), (\S+), "
                     r"protocol (\S+)\)$")
#: m-results prints 3 decimals (as the reference submissions): half a unit of the last digit
RESULT_TOL = 5e-4 + 1e-6


def _images(out: Path) -> list[str]:
    return [str(p.resolve()) for pat in ("*/fw.elf", "*/pe") for p in (out / "build").glob(pat)]


def _pe_running(images: list[str]) -> list[int]:
    """PIDs of QEMU processes running one of ``images``, or of host PE executables."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if cmd and (cmd[0] in images or (cmd[0].endswith("qemu-system-arm")
                                          and any(i in cmd for i in images))):
            pids.append(int(proc.name))
    return pids


@contextmanager
def serving(out: Path, *extra: str):
    """Run ``pemesh serve OUT`` as a process; yield its host links; SIGTERM it at the end and
    check that it stopped cleanly and left no PE behind."""
    code = "import sys; from generator.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", code, "serve", str(out), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    links = {}
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, f"pemesh serve ended early: {proc.stderr.read()}"
            m = LINK_RE.match(line.strip())
            if m:
                links[m.group(1)] = {"pty": m.group(2), "id": int(m.group(3)),
                                     "role": m.group(5), "protocol": m.group(6)}
            if line.startswith("pemesh serve:"):
                break
        assert links, "pemesh serve printed no host link"
        assert len(_pe_running(_images(out))) == len(links), "the PE processes are not seen"
        yield links
    finally:
        proc.send_signal(signal.SIGTERM)
        rest, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "pemesh serve: stopped" in rest
    assert not _pe_running(_images(out)), "a PE process outlived pemesh serve"


@pytest.fixture(scope="module")
def eembc_out(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("serve") / "eembc"
    assert main(["compile", str(MODEL), "-o", str(out), "--host-protocol", "eembc"]) == 0
    assert main(["build", str(out), "--backend", "baremetal"]) == 0
    return out


def _tvm_output(x: np.ndarray) -> np.ndarray:
    from generator.frontend.importers import load_model
    from generator.verify.reference import run_reference

    return run_reference(load_model(MODEL), [x])[0]


@pytest.mark.qemu
def test_mlperf_tiny_runner_talks_to_served_qemu_pe(eembc_out):
    ref_in = np.load(eembc_out / "reference" / "input_0.npy")
    ref_out = np.load(eembc_out / "reference" / "output_0.npy")
    other = np.random.default_rng(7).standard_normal(ref_in.shape).astype(np.float32)
    with serving(eembc_out) as links:
        assert list(links) == ["pe0"] and links["pe0"]["protocol"] == "eembc"
        dut = EembcDut(links["pe0"]["pty"])
        try:
            dut.flush()
            assert dut.name() == "tiny_cnn"
            profile = dut.command("profile")
            assert "m-model-[tiny_cnn]" in profile and profile[-1] == "m-ready"
            assert dut.command(f"db load {ref_in.nbytes}")[0] == f"m-[Expecting {ref_in.nbytes} bytes]"
            reply = dut.load(ref_in.tobytes())
            assert reply == ["m-load-done", "m-ready"]
            head = dut.command("db print 4 0")
            assert head[0] == "m-buffer-" + "-".join(f"{b:02x}" for b in ref_in.tobytes()[:4])
            reply = dut.infer(1, 0)
            assert reply[:3] == ["m-warmup-start-0", "m-warmup-done", "m-infer-start-1"]
            assert reply[-3:-1] == ["m-infer-done", reply[-2]] and reply[-1] == "m-ready"
            t0, t1 = laps_us(reply)
            assert t1 > t0
            got = np.array(parse_results(reply), dtype=np.float32)
            np.testing.assert_allclose(got, ref_out.reshape(-1), rtol=0, atol=RESULT_TOL)
            # another input: the PE computes, it does not echo a stored answer
            dut.load(other.tobytes())
            got2 = np.array(parse_results(dut.infer(2, 1)), dtype=np.float32)
            np.testing.assert_allclose(got2, _tvm_output(other).reshape(-1), rtol=0,
                                       atol=RESULT_TOL)
            assert not np.allclose(got2, got, atol=1e-3)
            assert parse_results(dut.command("results")) == list(got2)
            # errors the runner can meet, each answered and followed by m-ready
            assert dut.command("db load 5")[0].startswith("e-[db load: the model's inputs take")
            assert dut.command("infer 0 0")[0] == "e-[Inference iterations must be >0]"
            assert dut.command("frobnicate")[0] == "e-[Unknown command: frobnicate]"
            assert dut.command("db zz")[0] == "e-[Invalid hex digit 'zz']"
            assert dut.command("infer 1 0")[-1] == "m-ready"  # still alive
        finally:
            dut.close()


@pytest.mark.qemu
def test_serve_frames_protocol_with_hostlink(tmp_path):
    """A served pemesh-protocol PE answers HostLink on its pty like a board would."""
    import serial

    from generator.mesh.hostlink import HostLink
    from generator.types import TensorSpec

    out = tmp_path / "frames"
    assert main(["compile", str(MODEL), "-o", str(out)]) == 0
    assert main(["build", str(out), "--backend", "baremetal"]) == 0
    x = np.load(out / "reference" / "input_0.npy")
    with serving(out) as links:
        assert links["pe0"]["protocol"] == "pemesh" and links["pe0"]["role"] == "entry+exit"
        with serial.Serial(links["pe0"]["pty"], 115200, timeout=1.0) as port:
            link = HostLink(port)
            link.ping()
            outputs, stats = link.infer([x], [TensorSpec("y", (1, 10), "float32")])
    np.testing.assert_allclose(outputs[0].reshape(-1),
                               np.load(out / "reference" / "output_0.npy").reshape(-1),
                               rtol=1e-5, atol=1e-5)
    assert stats.inferences == 1


def _infer_on_served_host_pe(out: Path, x: np.ndarray) -> list[float]:
    """`pemesh serve OUT --platform host`: load ``x`` into pe0 with `db` and parse the
    m-results of `infer 1 0`."""
    with serving(out, "--platform", "host") as links:
        dut = EembcDut(links["pe0"]["pty"])
        try:
            dut.flush()
            dut.load(x.tobytes())
            return parse_results(dut.infer(1, 0))
        finally:
            dut.close()


@pytest.mark.skipif(not __import__("shutil").which("gcc"), reason="needs gcc")
def test_serve_host_processes_speak_eembc(tmp_path):
    """The same protocol from a PE built as a Linux process (`serve --platform host`)."""
    out = tmp_path / "host"
    assert main(["compile", str(MODEL), "-o", str(out), "--host-protocol", "eembc"]) == 0
    assert main(["build", str(out), "--backend", "host"]) == 0
    x = np.load(out / "reference" / "input_0.npy")
    got = np.array(_infer_on_served_host_pe(out, x), dtype=np.float32)
    np.testing.assert_allclose(got, np.load(out / "reference" / "output_0.npy").reshape(-1),
                               rtol=0, atol=RESULT_TOL)
    # pemesh run speaks frames: it refuses an EEMBC build at once, saying what to use
    assert main(["run", str(out), "--platform", "host"]) == 2


@pytest.fixture(scope="module")
def eembc_mesh_out(tmp_path_factory) -> Path:
    """multi_output_mlp on qemu16 with the EEMBC protocol: 5 PEs; output 0 leaves the entry PE
    itself, outputs 1 and 2 two other PEs (their routes now lead to the entry PE)."""
    from tests.mesh_zoo import multi_output_mlp
    from tests.model_zoo import save

    root = tmp_path_factory.mktemp("serve_mesh")
    model = save(multi_output_mlp(), root / "mo.onnx")
    out = root / "out"
    assert main(["compile", str(model), "-o", str(out), "--mesh", "qemu16",
                 "--host-protocol", "eembc"]) == 0
    assert main(["build", str(out), "--backend", "baremetal"]) == 0
    return out


def _reference_outputs(out: Path) -> np.ndarray:
    files = sorted((out / "reference").glob("output_*.npy"), key=lambda p: int(p.stem[7:]))
    return np.concatenate([np.load(f).reshape(-1) for f in files])


@pytest.mark.qemu
def test_mlperf_tiny_runner_talks_to_a_served_qemu_mesh(eembc_mesh_out):
    import json

    from generator.frontend.importers import load_model
    from generator.verify.reference import run_reference

    out = eembc_mesh_out
    doc = json.loads((out / "mesh.json").read_text())
    assert len(doc["pes"]) > 2
    x = np.load(out / "reference" / "input_0.npy")
    other = np.random.default_rng(3).standard_normal(x.shape).astype(np.float32)
    with serving(out) as links:
        assert len(links) == len(doc["pes"])
        eembc = [name for name, link in links.items() if link["protocol"] == "eembc"]
        assert eembc == ["pe0"] and links["pe0"]["role"].startswith("entry")
        dut = EembcDut(links["pe0"]["pty"], timeout=60)
        try:
            dut.flush()
            assert dut.name() == "mo"
            assert dut.load(x.tobytes())[0] == "m-load-done"
            reply = dut.infer(1, 0)
            assert reply[:3] == ["m-warmup-start-0", "m-warmup-done", "m-infer-start-1"]
            got = np.array(parse_results(reply), dtype=np.float32)
            np.testing.assert_allclose(got, _reference_outputs(out), rtol=0, atol=RESULT_TOL)
            # the pipeline runs again (READY credits came back) on new data
            dut.load(other.tobytes())
            got2 = np.array(parse_results(dut.infer(2, 1)), dtype=np.float32)
            want2 = run_reference(load_model(out.parent / "mo.onnx"), [other])
            np.testing.assert_allclose(got2, np.concatenate([w.reshape(-1) for w in want2]),
                                       rtol=0, atol=RESULT_TOL)
        finally:
            dut.close()


def test_host_protocol_routes():
    """eembc on a mesh: exit PEs' routes to the host lead to the entry PE as result streams;
    the entry PE keeps its own (it holds those outputs itself); pemesh changes nothing."""
    from types import SimpleNamespace as NS

    from generator.errors import UsageError
    from generator.firmware.render import EEMBC_RESULT_STREAM, host_protocol_specs
    from generator.types import Route, TensorSpec

    host = 0xFFFF
    pes = [NS(id=0, routes=(Route(1, 0, 1, 0), Route(1, 0, host, 0), Route(2, 0, host, 0))),
           NS(id=1, routes=(Route(1, 0, host, 1), Route(2, 0, 0, 0)))]
    reps = [NS(index=0, entry=[(0, 0, 0)], exit=[(0, 0, 0), (1, 0, 1)])]
    outs = (TensorSpec("a", (2,), "float32"), TensorSpec("b", (3,), "float32"))
    same = host_protocol_specs(pes, reps, outs, "pemesh")
    assert all(v["host_protocol"] == "pemesh" and v["routes"] == pes[i].routes
               for i, v in same.items())
    got = host_protocol_specs(pes, reps, outs, "eembc")
    assert got[0] == {"host_protocol": "eembc", "routes": pes[0].routes, "eembc_results": outs}
    assert got[1] == {"host_protocol": "pemesh",
                      "routes": (Route(1, 0, 0, EEMBC_RESULT_STREAM | 1), Route(2, 0, 0, 0))}
    one = host_protocol_specs(pes[:1], reps, outs, "eembc")
    assert one[0]["host_protocol"] == "eembc" and "eembc_results" not in one[0]
    sharded = [NS(index=0, entry=[(0, 0, 0), (1, 0, 0)], exit=[(1, 0, 0)])]
    with pytest.raises(UsageError, match="the model's input goes to 2 PEs"):
        host_protocol_specs(pes, sharded, outs, "eembc")
    with pytest.raises(UsageError, match="unknown host protocol"):
        host_protocol_specs(pes, reps, outs, "uart")


def test_eembc_replicas_each_return_to_their_own_entry(tmp_path):
    """With --replicas 2 every replica's entry PE speaks EEMBC and its exits report to it."""
    import json

    from tests.mesh_zoo import multi_output_mlp
    from tests.model_zoo import save

    model = save(multi_output_mlp(), tmp_path / "mo.onnx")
    out = tmp_path / "out"
    assert main(["compile", str(model), "-o", str(out), "--mesh", "qemu16", "--replicas", "2",
                 "--host-protocol", "eembc"]) == 0
    doc = json.loads((out / "mesh.json").read_text())
    apps = {p["id"]: json.loads((out / p["app"] / "pemesh_app.json").read_text())
            for p in doc["pes"]}
    assert len(doc["replicas"]) == 2
    for rep in doc["replicas"]:
        (entry,) = {e[0] for e in rep["entry"]}
        assert apps[entry]["host_protocol"] == "eembc"
        assert [t["name"] for t in apps[entry]["eembc_results"]] == \
            [t["name"] for t in doc["model"]["outputs"]]
        for pe, _a, j in rep["exit"]:
            if pe == entry:
                continue
            outs = [r for r in apps[pe]["routes"] if r[0] == 1]
            assert outs == [[1, 0, entry, 0x8000 | j]], (pe, outs)
    others = [a for i, a in apps.items() if all(i != e[0] for r in doc["replicas"]
                                                  for e in r["entry"])]
    assert others and all(a["host_protocol"] == "pemesh" and not a["eembc_results"]
                          for a in others)


@pytest.mark.skipif(not __import__("shutil").which("gcc"), reason="needs gcc")
def test_int8_outputs_are_dequantized_in_m_results(tmp_path):
    """A full-integer TFLite model (int8 output): m-results-[...] prints the dequantized
    output, (q - zero point) * scale with the model's own output quantization, as the MLPerf
    Tiny runner expects; the int8 values are TFLite Micro's."""
    pytest.importorskip("tflite_micro", reason="tflite-micro is not installed")
    from tests import tflite_int8_zoo as tz
    from generator.frontend.importers import load_model
    from generator.verify.anchors import run_anchor

    path = tz.make("tfl_small_int8_io", tmp_path)
    out = tmp_path / "out"
    assert main(["compile", str(path), "-o", str(out), "--host-protocol", "eembc"]) == 0
    assert main(["build", str(out), "--backend", "host"]) == 0
    model = load_model(path)
    (scale, zp), = model.meta["output_quant"].values()
    assert scale != 1.0
    x = np.load(out / "reference" / "input_0.npy")
    want_q = run_anchor(model, [x]).outputs[0].reshape(-1)
    got = np.array(_infer_on_served_host_pe(out, x), dtype=np.float64)
    want = (want_q.astype(np.float64) - zp) * scale
    np.testing.assert_allclose(got, want, rtol=0, atol=5e-4 * max(1.0, float(np.abs(want).max())))
