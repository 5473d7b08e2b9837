#!/usr/bin/env bash
# Prepare a machine for pemesh: Debian packages (as root, or print the apt line), a venv in
# .venv with pemesh installed. Sourced by scripts/demo.sh and scripts/test.sh.
#   PEMESH_EXTRAS=test   also install the test extras (pytest, torch if its CPU wheel is local,
#                        tflite + ai-edge-litert + tflite-micro + tensorflow-cpu: the
#                        TFLite anchors and the converter the tests use) and, as root,
#                        chromium for the report's browser test (~20 s with apt; if it
#                        cannot be installed, that test is skipped, setup goes on); and
#                        Open MPI + pemesh[mpi] (mpi4py) for the MPI tests
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
APT_PKGS="gcc gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm"
PYTHON="${PYTHON:-python3}"

need_apt=0
for tool in arm-none-eabi-gcc qemu-system-arm gcc; do
  command -v "$tool" >/dev/null 2>&1 || need_apt=1
done
[ -e /usr/lib/arm-none-eabi/newlib/thumb/v7-m/nofp/libc_nano.a ] || need_apt=1
if [ "$need_apt" = 1 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing Debian packages: $APT_PKGS"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq $APT_PKGS >/dev/null
  else
    echo "setup: missing Debian packages; run as root:" >&2
    echo "  sudo apt-get install -y $APT_PKGS" >&2
    exit 1
  fi
fi

if [ "${PEMESH_EXTRAS:-}" = "test" ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing chromium (headless browser for tests/report/test_browser.py)"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get install -y -qq chromium >/dev/null 2>&1 \
      || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }; } \
      || echo "setup: chromium did not install; the report's browser test will be skipped" >&2
  else
    echo "setup: no chromium; the report's browser test will be skipped" \
         "(sudo apt-get install -y chromium to run it)" >&2
  fi
fi

# MPI runs (tests/mesh/test_mpi.py: mpirun -n 2|3 on this machine): Open MPI's launcher and the
# headers mpi4py builds against (~30 s with apt)
if [ "${PEMESH_EXTRAS:-}" = "test" ] && ! command -v mpirun >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing Open MPI (openmpi-bin libopenmpi-dev) for the MPI tests"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq openmpi-bin libopenmpi-dev >/dev/null 2>&1 \
      || { apt-get update -qq && apt-get install -y -qq openmpi-bin libopenmpi-dev >/dev/null; }
  else
    echo "setup: no mpirun; the MPI tests will be skipped (fail in CI)" \
         "(sudo apt-get install -y openmpi-bin libopenmpi-dev to run them)" >&2
  fi
fi

if [ ! -x "$ROOT/.venv/bin/python" ]; then
  echo "setup: creating $ROOT/.venv"
  "$PYTHON" -m venv "$ROOT/.venv"
fi
VPY="$ROOT/.venv/bin/python"
"$VPY" -m pip install -q --upgrade pip >/dev/null
if [ "${PEMESH_EXTRAS:-}" = "test" ]; then
  "$VPY" -m pip install -q -e "$ROOT[test,tflite]"
  # pemesh[mpi] (mpi4py) where an MPI library is installed
  if command -v mpirun >/dev/null 2>&1 && ! "$VPY" -c "import mpi4py" >/dev/null 2>&1; then
    "$VPY" -m pip install -q -e "$ROOT[mpi]"
  fi
  # torch.export models: only the CPU wheel (never a multi-GB CUDA build from the registry)
  if ! "$VPY" -c "import torch" >/dev/null 2>&1; then
    wheel="$(ls /opt/wheels/torch-2.13.0+cpu-*.whl 2>/dev/null | head -n1 || true)"
    if [ -n "$wheel" ]; then
      "$VPY" -m pip install -q "$wheel"
    else
      echo "setup: no local CPU torch wheel; torch.export tests will be skipped" \
           "(pip install torch==2.13.0 to enable them)" >&2
    fi
  fi
else
  "$VPY" -m pip install -q "$ROOT"
fi
export PATH="$ROOT/.venv/bin:$PATH"
