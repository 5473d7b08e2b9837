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


def _mpi_missing() -> list[str]:
    import importlib.util
    missing = [t for t in ("mpirun",) if shutil.which(t) is None]
    if importlib.util.find_spec("mpi4py") is None:
        missing.append("mpi4py")
    return missing


#: MPI runs (tests/mesh/test_mpi.py): Open MPI's mpirun and mpi4py (scripts/setup.sh installs
#: both when PEMESH_EXTRAS=test); in CI a missing one fails the test
needs_mpi = pytest.mark.skipif(bool(_mpi_missing()) and not IN_CI,
                               reason=f"needs {', '.join(_mpi_missing())} (scripts/setup.sh "
                                      "installs openmpi-bin and pemesh[mpi])")
