"""Launching PEs and ``pemesh run``: command lines, process handling, and end to end runs of a
real PE (the runtime in zephyr_app/ with the build_demo model) as a host process and on QEMU."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from generator.firmware.build import build_app
from generator.firmware.images import build_mesh
from generator.cli import main
from generator.errors import CheckError, RunError, UsageError
from generator.mesh.hostlink import HostLink
from generator.mesh.launch import (HOST_PTY_RE, QEMU_PTY_RE, PeProcess, launch, qemu_command,
                           ticks_to_instructions)
from generator.types import TensorSpec

from tests.firmware.test_build import APP, FIXTURE, make_out  # noqa: E402
from tests.markers import needs_qemu

Y_SPEC = [TensorSpec("y", (1, 70), "float32")]


def demo_reference(x: np.ndarray) -> np.ndarray:
    """What tests/fixtures/build_demo's model computes."""
    x = x.reshape(-1).astype(np.float32)
    return (np.tanh(x[:70] + x[30:100]) * 0.5 + 0.25 * np.arange(70)).reshape(1, 70)


# --- command lines and process handling ------------------------------------------------------

def test_qemu_command():
    assert qemu_command(Path("/x/fw.elf"), qemu="qemu-system-arm", icount_shift=6) == (
        "qemu-system-arm", "-M", "lm3s6965evb", "-cpu", "cortex-m3", "-display", "none",
        "-monitor", "none", "-serial", "pty", "-kernel", "/x/fw.elf",
        "-icount", "shift=6,align=off,sleep=on")
    assert "-icount" not in qemu_command(Path("fw.elf"), icount_shift=None)
    # a mesh PE: UART0 on a pty, UART1 on the fabric's socket
    cmd = qemu_command(Path("fw.elf"), qemu="q", icount_shift=None, link1="/tmp/n/pe3.sock")
    assert cmd[cmd.index("-chardev") + 1] == "socket,id=noc,path=/tmp/n/pe3.sock"
    serials = [cmd[i + 1] for i, a in enumerate(cmd) if a == "-serial"]
    assert serials == ["pty", "chardev:noc"]


def test_pty_patterns():
    assert QEMU_PTY_RE.search("char device redirected to /dev/pts/7 (label serial0)").group(1) \
        == "/dev/pts/7"
    assert HOST_PTY_RE.search("pemesh: link0 on /dev/pts/12").group(1) == "/dev/pts/12"


def test_ticks_to_instructions():
    # 80 ns per SysTick tick on QEMU's lm3s6965evb; 2^shift ns per instruction
    assert ticks_to_instructions(64, 6) == 80
    assert ticks_to_instructions(1000, 0) == 80_000


def test_check_outputs_tolerance_nan_and_integers(tmp_path, capsys):
    from generator.verify.check import check_outputs

    ref = np.array([0.0, 100.0])
    check_outputs([[ref + 0.005]], [[ref]], tmp_path)            # within 1e-4 * 101
    with pytest.raises(CheckError):
        check_outputs([[ref + 0.02]], [[ref]], tmp_path)
    nan = np.array([np.nan, 1.0], np.float32)
    check_outputs([[nan.copy()]], [[nan]], tmp_path)              # NaN where the reference has it
    ints = np.array([100000, 2], np.int32)
    with pytest.raises(CheckError):                            # integers must match exactly
        check_outputs([[ints + 1]], [[ints]], tmp_path)
    with pytest.raises(CheckError, match="shape"):
        check_outputs([[np.zeros(3)]], [[np.zeros(2)]], tmp_path)
    assert "check: OK" in capsys.readouterr().out


@pytest.mark.timeout(30)
def test_process_announcing_on_stderr_is_found_and_closed(tmp_path):
    cmd = ["sh", "-c", "echo 'char device redirected to /dev/pts/99 (label serial0)' >&2; "
                       "exec sleep 30"]
    proc = PeProcess(cmd, name="fake", pty_re=QEMU_PTY_RE, log_path=tmp_path / "fake.log")
    assert proc.serial_path == "/dev/pts/99" and proc.running
    proc.close()
    proc.close()   # idempotent
    assert not proc.running
    assert "redirected" in (tmp_path / "fake.log").read_text()


@pytest.mark.timeout(30)
def test_process_that_dies_is_a_run_error():
    with pytest.raises(RunError, match=r"exited \(code 3\).*\n.*boom"):
        PeProcess(["sh", "-c", "echo boom; exit 3"], name="fake", pty_re=HOST_PTY_RE)


@pytest.mark.timeout(30)
def test_process_that_never_announces_is_killed():
    with pytest.raises(RunError, match="did not announce"):
        PeProcess(["sleep", "30"], name="fake", pty_re=HOST_PTY_RE, startup_timeout=0.5)


def test_platform_mismatch(tmp_path):
    r = build_app(APP, tmp_path, "host")
    with pytest.raises(UsageError, match="built for the host"):
        launch(r, platform="qemu")


# --- a real PE -------------------------------------------------------------------------------

def _infer_and_check(result, **launch_kw):
    rng = np.random.default_rng(1)
    with launch(result, **launch_kw) as proc, proc.open_serial() as port:
        link = HostLink(port, pe_id=0, timeout=20, output_specs=Y_SPEC)
        pong = link.ping()
        assert pong.input_bytes == (400,) and pong.output_bytes == (280,)
        for k in range(2):
            x = rng.standard_normal((1, 100)).astype(np.float32)
            (y,), stats = link.infer([x])
            np.testing.assert_allclose(y, demo_reference(x), rtol=1e-5, atol=1e-5)
            assert stats.inferences == k + 1 and stats.run_status == 0 and stats.cycles > 0
    assert not proc.running
    return stats


@pytest.mark.timeout(120)
def test_host_pe_end_to_end(tmp_path):
    _infer_and_check(build_app(APP, tmp_path, "host"), log_dir=tmp_path)
    assert (tmp_path / "app.log").read_text().startswith("pemesh: link0 on /dev/pts/")


@needs_qemu
@pytest.mark.qemu
@pytest.mark.timeout(180)
def test_qemu_pe_end_to_end(tmp_path):
    result = build_app(APP, tmp_path, "baremetal")
    s6 = _infer_and_check(result, icount_shift=6)
    s0 = _infer_and_check(result, icount_shift=0)
    # SysTick counts virtual time: with icount every instruction takes 2^shift ns, so the same
    # deterministic run takes 64x the ticks at shift 6 as at shift 0
    assert s6.cycles / s0.cycles == pytest.approx(64, rel=0.01)


# --- pemesh run ------------------------------------------------------------------------------

def _out_with_reference(tmp_path: Path, backend: str) -> Path:
    out = make_out(tmp_path)
    build_mesh(out, backend)
    x = np.random.default_rng(2).standard_normal((1, 100)).astype(np.float32)
    (out / "reference").mkdir()
    np.save(out / "reference" / "input_0.npy", x)
    np.save(out / "reference" / "output_0.npy", demo_reference(x))
    return out


@pytest.mark.timeout(120)
def test_run_command_host_check(tmp_path, capsys):
    out = _out_with_reference(tmp_path, "host")
    y = tmp_path / "y.npy"
    assert main(["run", str(out), "--platform", "host", "--check", "--count", "2",
                 "--output", str(y)]) == 0
    printed = capsys.readouterr().out
    assert "pe0 (PE 0, stage demo, replica 0, coords (0, 0)): 2 run(s)" in printed
    assert "check: OK" in printed and "max |error|" in printed
    np.testing.assert_allclose(np.load(y), np.load(out / "reference/output_0.npy"), atol=1e-5)
    # a wrong reference makes --check fail with its exit code
    np.save(out / "reference" / "output_0.npy", np.load(y) + 1.0)
    assert main(["run", str(out), "--platform", "host", "--check"]) == CheckError.exit_code
    # a wrong-shaped input is refused before anything runs
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((3, 3), np.float32))
    assert main(["run", str(out), "--platform", "host", "--input", str(bad)]) == \
        UsageError.exit_code


@needs_qemu
@pytest.mark.qemu
@pytest.mark.timeout(180)
def test_run_command_qemu_check(tmp_path, capsys):
    out = _out_with_reference(tmp_path, "baremetal")
    assert main(["run", str(out), "--check"]) == 0
    printed = capsys.readouterr().out
    assert "cycles (SysTick)" in printed and "instructions (QEMU icount shift=6)" in printed
    assert "check: OK" in printed
    assert (out / "run" / "pe0.log").is_file()


# --- with the renderer (generator/firmware/render.py) and the demo model ------------------------------

@pytest.mark.timeout(180)
@pytest.mark.parametrize("backend", ["host", pytest.param("baremetal", marks=[needs_qemu,
                                                                           pytest.mark.qemu])])
def test_rendered_demo_app(tmp_path, backend):
    from generator.firmware import render
    from generator.types import AppSpec
    model = tmp_path / "model"
    shutil.copytree(FIXTURE.parent / "demo_model", model)
    spec = AppSpec(
        pe_name="pe0", pe_id=0, board="qemu_cortex_m3", stage="demo",
        inputs=(TensorSpec("x", (1, 96), "float32"), TensorSpec("bias", (4,), "float32")),
        outputs=(TensorSpec("out", (1, 96), "float32"), TensorSpec("total", (1,), "float32")),
        workspace_size=384, model_dir="../model")
    app = tmp_path / "app"
    render.render_pe_app(spec, app)
    assert json.loads((app / "pemesh_app.json").read_text())["stage"] == "demo"
    result = build_app(app, tmp_path / "build", backend)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 96)).astype(np.float32)
    bias = rng.standard_normal(4).astype(np.float32)
    want = np.maximum(2 * x + np.tile(bias, 24), 0)
    with launch(result) as proc, proc.open_serial() as port:
        (out, total), stats = HostLink(port, timeout=20, output_specs=spec.outputs).infer(
            [x, bias])
    np.testing.assert_allclose(out, want, rtol=1e-6)
    np.testing.assert_allclose(total, [want.sum()], rtol=1e-5)
    assert stats.inferences == 1
