"""Markers and their policy.

* ``qemu``: needs qemu-system-arm and arm-none-eabi-gcc. Skipped with a reason naming the missing
  tool on a developer machine; **never skipped in CI** (``CI`` set): there a missing tool fails.
* ``zephyr``: needs a Zephyr workspace (ZEPHYR_BASE or a west topdir) and west; skipped otherwise.
* ``hil``: needs real hardware (``--serial-port``); skipped otherwise.
"""

from __future__ import annotations

import os
import shutil

import pytest

APT_LINE = "apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pemesh-hil", "pemesh hardware-in-the-loop")
    group.addoption("--serial-port", default=None,
                    help="serial port of a real board's UART0 (runs the hil tests on it)")
    group.addoption("--board", default=None,
                    help="Zephyr board of the device (default qemu_cortex_m3, on QEMU)")
    group.addoption("--hil-backend", default="auto", choices=("auto", "west", "baremetal", "host"),
                    help="build backend for the device project (default auto)")


def _missing_qemu_tools() -> list[str]:
    return [t for t in ("qemu-system-arm", "arm-none-eabi-gcc") if shutil.which(t) is None]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    missing = _missing_qemu_tools()
    in_ci = bool(os.environ.get("CI"))
    serial = config.getoption("--serial-port") or os.environ.get("PEMESH_SERIAL_PORT")
    zephyr_reason = None
    try:
        from generator.firmware.toolchain import find_zephyr_workspace
        if find_zephyr_workspace() is None:
            zephyr_reason = "no Zephyr workspace (set ZEPHYR_BASE or run inside a west topdir)"
        elif shutil.which("west") is None:
            zephyr_reason = "west is not installed (pip install west)"
    except Exception as exc:  # noqa: BLE001
        zephyr_reason = f"cannot look for a Zephyr workspace: {exc}"
    for item in items:
        if "qemu" in item.keywords and missing and "hil" not in item.keywords:
            if not in_ci:  # in CI the test runs and fails, naming the missing tool
                item.add_marker(pytest.mark.skip(
                    reason=f"needs {', '.join(missing)} ({APT_LINE})"))
        if "zephyr" in item.keywords and zephyr_reason:
            item.add_marker(pytest.mark.skip(reason=zephyr_reason))
        if "hil" in item.keywords and not serial and "qemu" not in item.keywords:
            item.add_marker(pytest.mark.skip(reason="needs real hardware: pass --serial-port PORT"))
