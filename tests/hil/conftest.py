"""HIL fixtures: a ``device`` transport over the Project API — QEMU by default, a real board
with ``--serial-port PORT --board BOARD``.

The options are registered in ``tests/conftest.py`` (``pytest --serial-port /dev/ttyACM0
--board nrf52840dk``); the environment variables ``PEMESH_SERIAL_PORT``, ``PEMESH_BOARD`` and
``PEMESH_HIL_BACKEND`` serve as fallbacks. The tests here are marked ``hil``
when they need real hardware and ``qemu`` when they run on the emulator; a missing piece (QEMU,
the ARM toolchain, a Zephyr workspace for a real board, pemesh's render stage) skips them with a
reason naming it.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

from .toy_mlf import make_toy_mlf, toy_inputs, toy_reference

QEMU_BOARD = "qemu_cortex_m3"


# The --serial-port/--board/--hil-backend options are registered in tests/conftest.py.


@dataclass
class DeviceConfig:
    board: str
    serial_port: str | None
    backend: str

    @property
    def real_hardware(self) -> bool:
        return self.serial_port is not None


def _missing(cfg: DeviceConfig) -> str | None:
    """What is missing to run on ``cfg`` (None when everything is there)."""
    try:
        import generator.firmware.render  # noqa: F401
    except ImportError as exc:
        return f"generator.firmware.render is not importable yet ({exc})"
    if cfg.real_hardware or cfg.backend == "west":
        from generator.firmware.toolchain import find_zephyr_workspace
        if find_zephyr_workspace() is None:
            return "no Zephyr workspace (ZEPHYR_BASE or a west topdir) to build for real hardware"
        if not Path(cfg.serial_port or "").exists() and cfg.real_hardware:
            return f"serial port {cfg.serial_port} does not exist"
        return None
    if cfg.backend == "host":
        return None if shutil.which("gcc") else "gcc (apt-get install gcc)"
    for tool in ("qemu-system-arm", "arm-none-eabi-gcc"):
        if shutil.which(tool) is None:
            return f"{tool} (apt-get install qemu-system-arm gcc-arm-none-eabi)"
    return None


@pytest.fixture(scope="session")
def device_config(request: pytest.FixtureRequest) -> DeviceConfig:
    def opt(name: str, env: str, default: str | None) -> str | None:
        value = request.config.getoption(name, default=None)
        return value if value not in (None, "auto") else os.environ.get(env) or value or default

    port = opt("--serial-port", "PEMESH_SERIAL_PORT", None)
    board = opt("--board", "PEMESH_BOARD", QEMU_BOARD) or QEMU_BOARD
    backend = opt("--hil-backend", "PEMESH_HIL_BACKEND", "auto") or "auto"
    if port is not None and backend == "auto":
        backend = "west"
    return DeviceConfig(board=board, serial_port=port, backend=backend)


@pytest.fixture(scope="session")
def device_project(device_config: DeviceConfig, tmp_path_factory) -> Iterator[Any]:
    """The toy model generated from pemesh's template, built and flashed (once per session)."""
    why = _missing(device_config)
    if why:
        pytest.skip(f"device: missing {why}")
    from generator.paths import templates_dir
    from generator.project_api.client import TemplateProject

    work = tmp_path_factory.mktemp("device")
    mlf = make_toy_mlf(work / "toy.tar")
    options = {"board": device_config.board, "build_backend": device_config.backend,
               "serial_port": device_config.serial_port}
    with TemplateProject.from_directory(templates_dir() / "project_api", options) as template:
        project = template.generate_project(mlf, work / "project")
    try:
        project.build()
        project.flash()
        yield project
    finally:
        project.close()


@pytest.fixture
def device(device_project) -> Iterator[Any]:
    """An open :class:`~generator.project_api.client.ProjectTransport` to the device; closed
    (and the emulator stopped) after the test."""
    transport = device_project.transport()
    transport.open()
    try:
        yield transport
    finally:
        transport.close()
        transport.close()


@pytest.fixture
def toy_io():
    """(inputs, expected outputs) of the toy model."""
    inputs = toy_inputs(1)
    return inputs, toy_reference(inputs)
