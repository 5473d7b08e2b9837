#!/usr/bin/env bash
# The test suite: installs what it needs, then runs pytest (QEMU tests included).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PEMESH_EXTRAS=test source "$ROOT/scripts/setup.sh"
cd "$ROOT"
exec python -m pytest -q -p no:cacheprovider "$@"
