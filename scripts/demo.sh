#!/usr/bin/env bash
# The main job on the bundled example: compile a small CNN for one qemu_cortex_m3 PE, build the
# firmware, run it on QEMU and check the output against the TVM host reference.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
OUT="${1:-$ROOT/out/tiny_cnn}"
cd "$ROOT"
pemesh compile examples/tiny_cnn.onnx -o "$OUT" --board qemu_cortex_m3 --force
pemesh build "$OUT"
pemesh run "$OUT" --platform qemu --check --output "$OUT/output.npy"
