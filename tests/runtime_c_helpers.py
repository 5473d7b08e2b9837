"""Shared by the tests of the C PE runtime (test_runtime_c.py: one PE; test_runtime_mesh.py:
role STAGE): compiler flags, the demo stage and its reference, the rendered demo app, a
self-contained host end of link 0, and process helpers."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections import deque
from pathlib import Path

import numpy as np
import pytest

from generator.wire import (HOST_ID, Frame, FrameDecoder, FrameType, PongInfo, Stats,
                                 encode, tensor_frames, unpack_error, unpack_pong, unpack_stats)
from generator.firmware.render import render_pe_app
from generator.types import AppSpec, TensorSpec
from tests.markers import needs_arm, needs_gcc, needs_qemu  # noqa: F401 (re-exported)

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = ROOT / "zephyr_app"
FIXTURES = Path(__file__).parent / "fixtures"
CORE = sorted((RUNTIME / "src").glob("*.c"))
HOST_PORT = sorted((RUNTIME / "ports" / "host").glob("*.c"))
WARN = ["-std=c11", "-Wall", "-Wextra", "-Werror"]
ARM = ["arm-none-eabi-gcc", "-mcpu=cortex-m3", "-mthumb"]
PE_ID = 3



def cc(args: list, timeout: float = 120) -> None:
    """Run a compiler command line; fail the test with its stderr."""
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, args))}\n{proc.stderr}"


def demo_spec(model_dir: str) -> AppSpec:
    """The demo stage (tests/fixtures/demo_model) as PE 3, role SINGLE."""
    return AppSpec(
        pe_name="pe3", pe_id=PE_ID, board="qemu_cortex_m3", stage="demo",
        inputs=(TensorSpec("x", (96,), "float32"), TensorSpec("bias", (4,), "float32")),
        outputs=(TensorSpec("out", (96,), "float32"), TensorSpec("total", (1,), "float32")),
        workspace_size=384, model_dir=model_dir)


def demo_reference(x: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What the demo stage computes, in numpy."""
    out = np.maximum(2 * x + np.tile(bias, 24), 0).astype(np.float32)
    return out, np.array([out.sum(dtype=np.float32)], dtype=np.float32)


@pytest.fixture(scope="module")
def demo_app(tmp_path_factory) -> Path:
    """The demo PE app rendered from an AppSpec, with a copy of the demo model beside it."""
    root = tmp_path_factory.mktemp("demo_app")
    shutil.copytree(FIXTURES / "demo_model", root / "stages" / "demo" / "model")
    app = root / "pes" / "pe3"
    render_pe_app(demo_spec("../../stages/demo/model"), app)
    return app


def app_sources(app: Path) -> tuple[list[Path], list[str]]:
    """The C sources (app, model, runtime core) and include flags of a rendered app."""
    spec = json.loads((app / "pemesh_app.json").read_text())
    model = app / spec["model_dir"] / "codegen" / "host"
    srcs = sorted((app / "src").glob("*.c")) + sorted((model / "src").glob("*.c")) + CORE
    incs = [f"-I{app / 'src'}", f"-I{model / 'include'}", f"-I{RUNTIME / 'include'}"]
    return srcs, incs


def inputs(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random demo inputs (x, bias)."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(96).astype(np.float32),
            rng.standard_normal(4).astype(np.float32))


def tensor_bytes(x: np.ndarray, bias: np.ndarray, first_seq: int,
                 dst: int = PE_ID) -> list[bytes]:
    """The encoded TENSOR frames of both demo inputs from the host, seq from ``first_seq``."""
    frames = tensor_frames(x.tobytes(), src=HOST_ID, dst=dst, stream=0, first_seq=first_seq)
    frames += tensor_frames(bias.tobytes(), src=HOST_ID, dst=dst, stream=1,
                            first_seq=first_seq + len(frames))
    return [encode(f) for f in frames]


class HostSide:
    """The host end of link 0, over a pyserial port (self-contained; generator/mesh/hostlink.py is the
    product's version)."""

    def __init__(self, port, pe_id: int = HOST_ID):
        self.port = port
        self.dec = FrameDecoder()
        self.queue: deque[Frame] = deque()
        self.seq = 0
        self.pe_id = pe_id

    def send(self, ftype: FrameType, payload: bytes = b"", **kw) -> None:
        self.port.write(encode(Frame(ftype, HOST_ID, self.pe_id, seq=self.seq, payload=payload,
                                     **kw)))
        self.seq = (self.seq + 1) & 0xFFFF

    def recv(self, timeout: float = 20.0) -> Frame:
        deadline = time.monotonic() + timeout
        while not self.queue:
            if time.monotonic() > deadline:
                raise TimeoutError("no frame from the PE")
            self.queue.extend(self.dec.feed(self.port.read(4096)))
        frame = self.queue.popleft()
        if frame.type == FrameType.ERROR:
            raise AssertionError(f"PE error: {unpack_error(frame.payload)}")
        return frame

    def ping(self) -> PongInfo:
        self.send(FrameType.PING)
        while True:
            f = self.recv()
            if f.type == FrameType.PONG:
                self.pe_id = f.src
                return unpack_pong(f.payload)

    def infer(self, inputs: list[bytes], window: int) -> tuple[list[bytes], Stats]:
        in_flight = 0
        outputs: dict[int, list[bytes]] = {}
        for stream, data in enumerate(inputs):
            for f in tensor_frames(data, src=HOST_ID, dst=self.pe_id, stream=stream,
                                   first_seq=self.seq):
                while in_flight >= window:
                    if self.recv().type == FrameType.ACK:
                        in_flight -= 1
                self.send(FrameType.TENSOR, f.payload, stream=stream, chunk=f.chunk,
                          nchunks=f.nchunks)
                in_flight += 1
        while True:
            f = self.recv()
            if f.type == FrameType.TENSOR:
                outputs.setdefault(f.stream, []).append(f.payload)
            elif f.type == FrameType.STATS:
                return [b"".join(outputs[i]) for i in sorted(outputs)], unpack_stats(f.payload)


def wait_for_line(proc: subprocess.Popen, pattern: str, timeout: float) -> re.Match:
    """Wait for ``pattern`` in a process's stdout (non-blocking reads); fail on timeout."""
    deadline = time.monotonic() + timeout
    seen = []
    os.set_blocking(proc.stdout.fileno(), False)
    buf = b""
    while time.monotonic() < deadline:
        chunk = proc.stdout.read() or b""
        buf += chunk
        m = re.search(pattern.encode(), buf)
        if m:
            return m
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    seen.append(buf.decode(errors="replace"))
    raise AssertionError(f"no '{pattern}' from {proc.args[0]}: {seen}")


def stop_process(proc: subprocess.Popen) -> None:
    """Terminate (then kill) a process; safe to call twice."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)




def build_lm3s(app: Path, out: Path) -> Path:
    """Build one PE app with the lm3s6965 port (as `pemesh build --backend baremetal` does)."""
    port_dir = RUNTIME / "ports" / "lm3s6965"
    flags = json.loads((port_dir / "port.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    srcs, incs = app_sources(app)
    objs = []
    for i, src in enumerate(srcs + sorted(port_dir.glob("*.c"))):
        obj = out / f"{i}_{src.stem}.o"
        cc([flags["cc"], *flags["cflags"], "-Wall", "-Wextra", "-Werror", *incs, "-c", src,
             "-o", obj])
        objs.append(obj)
    elf = out / "fw.elf"
    ldflags = [a if a != "lm3s6965.ld" else str(port_dir / a) for a in flags["ldflags"]]
    cc([flags["cc"], *ldflags, *objs, *flags["libs"], "-Wl,-Map," + str(out / "fw.map"),
         "-o", elf])
    return elf
