"""The pemesh_accel_* wrappers in C (zephyr_app/src/accel_*.c): compile cleanly for both
backends and both compilers, compute the documented integer arithmetic, validate, count."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from tests import paths
from generator.frontend.quantize import quantize_multiplier, requantize_ref

RUNTIME = paths.RUNTIME
SRCS = [RUNTIME / "src" / "accel_sw.c", RUNTIME / "src" / "accel_hw_stub.c"]
WARN = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-O2", f"-I{RUNTIME / 'include'}"]


def _cc(args) -> None:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("cc", [["gcc"], ["arm-none-eabi-gcc", "-mcpu=cortex-m3", "-mthumb"]])
@pytest.mark.parametrize("backend", [[], ["-DCONFIG_PEMESH_ACCEL_SW=1"],
                                     ["-DCONFIG_PEMESH_ACCEL_DRIVER=1"]])
def test_wrappers_compile(cc, backend, tmp_path):
    if shutil.which(cc[0]) is None:
        pytest.skip(f"needs {cc[0]}")
    for src in SRCS:
        _cc([*cc, *WARN, *backend, "-c", src, "-o", tmp_path / "x.o"])


CHECK = r"""
#include <errno.h>
#include <stdio.h>
#include <pemesh/accel.h>
#include <pemesh/pe.h>
#include "case.h"
int main(void) {
  static int8_t out[OUT_N];
  struct pemesh_accel_counters c;
  int rc = pemesh_accel_conv2d(&P, IN, out);
  if (rc != 0) return 10;
  for (int i = 0; i < OUT_N; i++) printf("%d\n", out[i]);
  /* validation: misaligned weights, a bad shift, NULL */
  struct pemesh_accel_conv2d_params bad = P;
  bad.weights = W + 1;
  if (pemesh_accel_conv2d(&bad, IN, out) != -EFAULT) return 11;
  bad = P; bad.k_padded = 3;
  if (pemesh_accel_conv2d(&bad, IN, out) != -EINVAL) return 12;
  if (pemesh_accel_conv2d(NULL, IN, out) != -EINVAL) return 13;
  pemesh_accel_get_counters(&c);
  fprintf(stderr, "%u %llu %u %u\n", c.calls[0] + c.calls[1], (unsigned long long)(c.macs[0] + c.macs[1]),
          c.errors, c.calls[2]);
  { uint32_t calls; uint64_t macs; pemesh_pe_accel_counters(&calls, &macs);
    if (calls != 1u || macs != c.macs[0] + c.macs[1]) return 14; }
  pemesh_accel_reset_counters();
  pemesh_accel_get_counters(&c);
  return (c.calls[0] || c.errors) ? 15 : 0;
}
"""


def _c_array(ctype, name, a, extra=""):
    return (f"static const {ctype} {name}[{a.size}] {extra}= "
            f"{{{', '.join(str(int(v)) for v in a.reshape(-1))}}};\n")


@pytest.mark.parametrize("depthwise", [False, True])
def test_sw_conv_matches_numpy(depthwise, tmp_path):
    rng = np.random.default_rng(7 + depthwise)
    c, h, w, o, k, stride, pad = (8, 7, 6, 8, 3, 2, 1) if depthwise else (5, 7, 6, 10, 3, 2, 1)
    zx, zy = -3, 4
    x = rng.integers(-128, 128, (1, c, h, w)).astype(np.int8)
    cin_g = 1 if depthwise else c
    wt = rng.integers(-127, 128, (o, cin_g, k, k)).astype(np.int8)
    bias = rng.integers(-500, 500, o).astype(np.int32)
    ms = [quantize_multiplier(s) for s in rng.uniform(0.002, 0.02, o)]
    mult = np.array([m for m, _ in ms], np.int32)
    shift = np.array([s for _, s in ms], np.int32)
    oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    xp = np.pad(x.astype(np.int64) - zx, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    acc = np.zeros((o, oh, ow), np.int64)
    for oc in range(o):
        for ci in range(cin_g):
            src = oc if depthwise else ci
            for ky in range(k):
                for kx in range(k):
                    acc[oc] += xp[0, src, ky:ky + stride * oh:stride, kx:kx + stride * ow:stride] \
                        * int(wt[oc, ci, ky, kx])
    acc += bias[:, None, None]
    want = requantize_ref(acc, mult[:, None, None], shift[:, None, None], zy, -128, 100)
    o_pad, kk = -(-o // 16) * 16, k * k * cin_g
    k_pad = -(-kk // 4) * 4
    wl = np.zeros((o_pad, k_pad), np.int8)
    wl[:o, :kk] = np.transpose(wt, (0, 2, 3, 1)).reshape(o, -1)
    pad_v = lambda v, dt: np.concatenate([v, np.zeros(o_pad - o, v.dtype)]).astype(dt)  # noqa: E731
    hdr = (_c_array("int8_t", "IN", x) + _c_array("int8_t", "W", wl, "__attribute__((aligned(4))) ")
           + _c_array("int32_t", "B", pad_v(bias, np.int32))
           + _c_array("int32_t", "M", pad_v(mult, np.int32))
           + _c_array("int8_t", "S", pad_v(shift, np.int8))
           + f"#define OUT_N {o * oh * ow}\n"
           f"static const struct pemesh_accel_conv2d_params P = {{ .batch = 1, .in_c = {c}, "
           f".in_h = {h}, .in_w = {w}, .out_c = {o}, .out_h = {oh}, .out_w = {ow}, "
           f".kernel_h = {k}, .kernel_w = {k}, .stride_h = {stride}, .stride_w = {stride}, "
           f".dilation_h = 1, .dilation_w = 1, .pad_top = {pad}, .pad_left = {pad}, "
           f".depthwise = {int(depthwise)}, .k_padded = {k_pad}, .out_padded = {o_pad}, "
           f".weights = W, .rq = {{ .input_zero_point = {zx}, .output_zero_point = {zy}, "
           f".act_min = -128, .act_max = 100, .bias = B, .multiplier = M, .shift = S }} }};\n")
    (tmp_path / "case.h").write_text(hdr)
    (tmp_path / "check.c").write_text(CHECK)
    exe = tmp_path / "check"
    _cc(["gcc", *WARN, "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
         f"-I{tmp_path}", tmp_path / "check.c", SRCS[0], "-o", exe])
    proc = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    got = np.array([int(v) for v in proc.stdout.split()]).reshape(o, oh, ow)
    assert np.array_equal(got, want)
    calls, macs, errors, dense_calls = (int(v) for v in proc.stderr.split())
    assert (calls, macs, errors, dense_calls) == (1, o * oh * ow * kk, 3, 0)
