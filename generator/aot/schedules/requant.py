"""Cheap requantization epilogues for the scheduled int8 kernels, and which one a qop needs.

The unscheduled qop (``frontend/qops.py``) requantizes with int64 arithmetic and variable
64-bit shifts (~29 instructions per output on a Cortex-M3). A scheduled kernel must give the
same bits, so the epilogue is chosen by *probing* the qop's own numpy reference
(``qops.requantize_ref``) on random accumulators and keeping the first candidate that matches it
exactly on every probe:

* ``half_up``: pemesh's single rounding ``(acc * M + 2^(s-1)) >> s`` with ``s`` the right shift.
  When every channel's ``s >= 33`` (scale < 1/4, the usual case) it is exactly
  ``(hi32(acc * M) + 2^(s-33)) >> (s-32)``: one SMULL, an add and an arithmetic shift. The
  kernel then takes ``s - 32`` in place of ``s`` (re-made per step at compile time).
* ``tflm``: TFLite Micro's ``MultiplyByQuantizedMultiplier(acc, M, e)`` (``e`` the signed
  exponent, left shift when positive): ``SaturatingRoundingDoublingHighMul`` then
  ``RoundingDivideByPOT``. With ``M`` in [2^30, 2^31) the high multiply never saturates, and
  ``trunc((p + nudge) / 2^31)`` equals ``floor((p + 2^30) / 2^31)`` for both signs of ``p``, so
  it is one SMLAL-style 64-bit add and a 31-bit shift; the divide keeps TFLite's
  round-half-away-from-zero with a mask and threshold, all in 32 bits.

Both are written as TIR expressions (strings for TVMScript); numpy models of each sit next to
them and are what the tests compare with TFLite Micro's C (ported in the tests).
"""

from __future__ import annotations

import numpy as np

#: epilogue names, in probe order
MODES = ("half_up", "tflm")


# --- numpy models ------------------------------------------------------------------------------

def half_up_fast_np(acc, mult, rshift32, zp, lo, hi):
    """The ``half_up`` fast path in numpy: ``rshift32 = s - 32`` (>= 1)."""
    p = acc.astype(np.int64) * mult.astype(np.int64)
    h = (p >> 32).astype(np.int64)
    v = (h + (np.int64(1) << (rshift32.astype(np.int64) - 1))) >> rshift32.astype(np.int64)
    return np.clip(v + zp, lo, hi)


def tflm_np(acc, mult, exponent, zp, lo, hi):
    """TFLite Micro's ``MultiplyByQuantizedMultiplier`` + zero point + clamp, in numpy (int64
    arithmetic that mirrors the C step by step; the tests also check it against the C)."""
    acc = acc.astype(np.int64)
    e = exponent.astype(np.int64)
    left = np.maximum(e, 0)
    right = np.maximum(-e, 0)
    a = ((acc << left) + (1 << 31)) % (1 << 32) - (1 << 31)        # int32 wrap, as in C
    ab = a * mult.astype(np.int64)
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    x = ab + nudge
    x = np.where(x >= 0, x >> 31, -((-x) >> 31))                   # C division truncates
    mask = (np.int64(1) << right) - 1
    rem = x & mask
    thr = (mask >> 1) + (x < 0)
    v = (x >> right) + (rem > thr)
    return np.clip(v + zp, lo, hi)


# --- TIR expressions (TVMScript text) -----------------------------------------------------------

def half_up_fast_tir(acc: str, o: str) -> str:
    """int32 result before the zero point; ``shift[o]`` holds ``s - 32``."""
    hi = f'T.Cast("int32", (T.Cast("int64", {acc}) * T.Cast("int64", mult[{o}])) >> T.int64(32))'
    rs = f'T.Cast("int32", shift[{o}])'
    return f"(({hi} + (T.int32(1) << ({rs} - 1))) >> {rs})"


def half_up_generic_tir(acc: str, o: str) -> str:
    """The qop's own single rounding (any ``s`` in 1..62), int64 as in ``qops.py``."""
    return (f'T.Cast("int32", (T.Cast("int64", {acc}) * T.Cast("int64", mult[{o}]) + '
            f'(T.int64(1) << T.Cast("int64", shift[{o}] - 1))) >> T.Cast("int64", shift[{o}]))')


def tflm_tir(acc: str, o: str, left: bool) -> str:
    """``MultiplyByQuantizedMultiplier``; ``left``: some exponent is positive (then
    ``acc * 2^max(e, 0)`` first, as TFLite does)."""
    e = f'T.Cast("int32", shift[{o}])'
    a = f"({acc} * (T.int32(1) << T.max({e}, 0)))" if left else acc   # as TFLite: x * 2^left
    x = (f'T.Cast("int32", (T.Cast("int64", {a}) * T.Cast("int64", mult[{o}]) + '
         f'T.int64(1073741824)) >> T.int64(31))')
    r = f"T.max(0 - {e}, 0)" if left else f"(0 - {e})"
    mask = f"((T.int32(1) << {r}) - 1)"
    thr = f"(T.shift_right({mask}, 1) + T.Cast(\"int32\", {x} < 0))"
    return f"(({x} >> {r}) + T.Cast(\"int32\", T.bitwise_and({x}, {mask}) > {thr}))"


def clamp_tir(v: str, q) -> str:
    return (f'T.Cast("{q.out_dtype}", T.max(T.min({v} + {q.out_zp}, {q.act_max}), '
            f'{q.act_min}))')


# --- which epilogue matches the unscheduled qop ------------------------------------------------

def _probe_inputs(seed: int, n: int = 4096):
    rng = np.random.default_rng(seed)
    acc = rng.integers(-(1 << 20), 1 << 20, n).astype(np.int32)
    acc[:64] = rng.integers(-(1 << 31), (1 << 31) - 1, 64)
    acc[64:128] = (rng.integers(-2000, 2000, 64) << rng.integers(1, 12, 64)).astype(np.int32)
    mult = rng.integers(1 << 30, (1 << 31) - 1, n).astype(np.int32)
    return acc, mult


def probe_mode(rounding: str = "tflite") -> str | None:
    """The epilogue whose arithmetic equals ``qops.requantize_ref`` for a qop of ``rounding``
    (None: neither). The qop's shift is TFLite's signed exponent ``e``; the ``half_up``
    epilogue takes the right shift ``s = 31 - e`` (see :func:`right_shift`)."""
    from generator.frontend import qops

    acc, mult = _probe_inputs(1)
    rng = np.random.default_rng(2)
    try:
        if rounding == "half_up":
            e = (-rng.integers(2, 19, acc.size)).astype(np.int8)        # s = 31 - e in 33..49
            ref = qops.requantize_ref(acc, mult, e, 3, -128, 127, rounding="half_up")
            fast = half_up_fast_np(acc, mult, (right_shift(e) - 32).astype(np.int8), 3, -128, 127)
            return "half_up" if np.array_equal(np.asarray(ref).astype(np.int64), fast) else None
        e = (-rng.integers(1, 18, acc.size)).astype(np.int8)
        ref = qops.requantize_ref(acc, mult, e, 3, -128, 127)
        if np.array_equal(np.asarray(ref).astype(np.int64), tflm_np(acc, mult, e, 3, -128, 127)):
            return "tflm"
    except Exception:  # noqa: BLE001 — a reference with another signature: do not schedule
        return None
    return None


def right_shift(exponent: np.ndarray) -> np.ndarray:
    """The ``half_up`` epilogue's right shift ``s`` for the qop's exponent ``e``: ``31 - e``."""
    return (31 - np.asarray(exponent).astype(np.int16)).astype(np.int16)
