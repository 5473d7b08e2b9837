"""Skips for missing tools, in one place. In CI (``CI`` set) none of them skips: the tools are
installed by scripts/setup.sh, so a missing one must fail the test, not hide it (conftest.py)."""

from __future__ import annotations

import os
import shutil

import pytest

IN_CI = bool(os.environ.get("CI"))


def _needs(*tools: str) -> pytest.MarkDecorator:
    missing = [t for t in tools if shutil.which(t) is None]
    return pytest.mark.skipif(bool(missing) and not IN_CI,
                              reason=f"needs {', '.join(missing)} (scripts/setup.sh installs it)")


needs_gcc = _needs("gcc")
needs_arm = _needs("arm-none-eabi-gcc")
needs_qemu = _needs("qemu-system-arm", "arm-none-eabi-gcc")
