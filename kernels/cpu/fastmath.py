"""Vectorisable float32 exp, sigmoid, silu, tanh, erf, gelu and log for the Numba kernels.

Numba has no vector math library here: ``np.exp`` / ``math.erf`` / ``np.tanh`` in a loop are scalar
libm calls, so an activation loop ran one element at a time. These are straight-line float32
arithmetic (range reduction, a polynomial, an exponent built from integer bits, ``min`` / ``max`` /
selects for the ranges) that LLVM's loop vectoriser turns into zmm code, with no call left:
``tools/fastmath_accuracy.py --asm`` prints the instruction counts of a loop over each (compiled
uncached), ``vrndscaleps`` / ``vcvttps2dq`` / ``vpslld`` / ``vfmadd*ps`` on zmm.

How they are written, and why:
  - exp: ``x = n ln2 + r`` with ``n = floor(x log2e + 1/2)`` and ``ln2`` split Cody-Waite style into a
    9-bit ``LN2_HI`` (``n * LN2_HI`` is exact) and ``LN2_LO``; ``exp(r) = 1 + r + r^2 P(r)`` on
    |r| <= ln2 / 2 with P of degree 4; ``2^n`` from the bits ``(n + 127) << 23``. x is clamped to
    [-87, 88] so 2^n stays a normal number (exp(-87) = 1.6e-38, exp(88) = 1.7e38).
  - sigmoid ``1 / (1 + exp(-x))`` and silu ``x / (1 + exp(-x))``: relative accuracy on both tails.
  - tanh: ``s + s^3 P(s^2)`` for |x| < 0.625 (where ``1 - 2 / (exp(2|x|) + 1)`` would cancel),
    that formula above, the sign put back; both computed, one selected (a branch would stop the
    vectoriser).
  - erf: ``z P(z^2)`` for z < 0.9; beyond, ``1 - erfc(z)`` with ``erfc(z) = exp(g(1/z) - z^2) / z``
    and ``g(u) = log(z erfcx(z))`` a degree-9 polynomial in u on [1/9.5, 1/0.9] (flat: -0.89 to
    -0.57). gelu ``x (1 + erf(x / sqrt 2)) / 2`` takes ``erfc`` itself for x < 0 (no cancellation:
    relative accuracy down to gelu(-13) ~ 1e-38).
  - gelu_tanh ``x (1 + tanh(u)) / 2 = x sigmoid(2u)`` (again no cancellation for x < 0).
  - log: ``x = 2^e m`` with m in [sqrt(1/2), sqrt 2) from the bits, ``log(m) = 2 atanh(f)``,
    ``f = (m - 1) / (m + 1)``, an odd polynomial in f (LRN's power: ``b^-beta = exp(-beta log b)``).
The polynomials are least-squares fits on 4000 Chebyshev nodes in float64 (near-minimax), rounded to
float32; ``python tools/fastmath_accuracy.py --fit`` recomputes them.

Compile flags: ``FAST`` leaves out ``reassoc`` (and ``afn`` / ``arcp``). With ``fastmath=True`` (the
kernels' flags) LLVM re-associated ``x - n * LN2_HI - n * LN2_LO`` into ``x - n * ln2``, and exp of
x ~ 87 came out 4.5 ulp off instead of 1. The functions are inlined at Numba's IR level, where they
take the flags of the function they are inlined into, so only functions compiled with ``FAST`` call
them: ``common.act_span`` (an activation over a run of floats; its per-activation loops vectorise)
and ``common.act_scalar``. (Left to LLVM's inliner instead, gelu grew past its threshold and its loop
stayed a scalar call.) ``error_model="numpy"``: a float division by zero is IEEE, not a raised
ZeroDivisionError, whose check would keep the loop scalar.

Measured max error against float64 (``python tools/fastmath_accuracy.py``, every float32 in each range
or 4M points): exp 1.0 ulp on [-87, 88]; sigmoid 2.5 ulp, silu 2.4 ulp, tanh 1.3 ulp, erf 2.4 ulp
on [-30, 30]; gelu 2.4 ulp on [-6, 30] (relative 1.4e-5 below, where the float32 rounding of z^2
reaches the exponent), gelu_tanh 2.5 ulp; log 1.0 ulp on [1e-30, 1e30].
"""

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

__all__ = ["FAST", "exp_f32", "sigmoid_f32", "silu_f32", "tanh_f32", "erf_f32", "gelu_f32", "gelu_tanh_f32",
           "log_f32"]

# fastmath without reassoc / afn / arcp (see the docstring); nnan / ninf / nsz let min/max be vminps/vmaxps
FAST = dict(fastmath={"nnan", "ninf", "nsz", "contract"}, error_model="numpy", cache=True, nogil=True)

_f = np.float32
ONE, HALF, TWO = _f(1.0), _f(0.5), _f(2.0)


@intrinsic
def _bits_to_f32(typingctx, bits):
    """The float32 whose bits are the low 32 bits of the integer ``bits`` (a bitcast: vector code)."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        v = args[0]
        if v.type.width > 32:
            v = builder.trunc(v, ir.IntType(32))
        return builder.bitcast(v, ir.FloatType())

    return types.float32(bits), codegen


@intrinsic
def _f32_to_bits(typingctx, x):
    """The bits of float32 ``x`` as an int32."""
    if x != types.float32:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.int32(x), codegen


# ---------------------------------------------------------------- exp
LOG2E = _f(1.4426950408889634)
LN2_HI = _f(0.693359375)                 # 355 / 512: n * LN2_HI is exact for |n| < 2^15
LN2_LO = _f(-2.1219444005469057e-4)      # ln 2 - LN2_HI
E0, E1, E2, E3, E4 = (_f(c) for c in (0.49999988079071045, 0.166665181517601, 0.04166953265666962,
                                      0.008368915878236294, 0.0013751407386735082))


@njit(inline="always", **FAST)
def exp_f32(x):
    x = min(max(x, _f(-87.0)), _f(88.0))
    n = np.floor(x * LOG2E + HALF)
    r = x - n * LN2_HI
    r = r - n * LN2_LO
    p = E4
    p = p * r + E3
    p = p * r + E2
    p = p * r + E1
    p = p * r + E0
    p = p * (r * r) + r
    return (p + ONE) * _bits_to_f32((np.int32(n) + np.int32(127)) << np.int32(23))


@njit(inline="always", **FAST)
def sigmoid_f32(x):
    return ONE / (ONE + exp_f32(-x))


@njit(inline="always", **FAST)
def silu_f32(x):
    return x / (ONE + exp_f32(-x))


# ---------------------------------------------------------------- tanh
TANH_SMALL = _f(0.625)
T0, T1, T2, T3, T4, T5 = (_f(c) for c in (-0.3333333134651184, 0.13333211839199066, -0.05394745618104935,
                                          0.02170400321483612, -0.00818466953933239, 0.002148990985006094))


@njit(inline="always", **FAST)
def tanh_f32(x):
    a = min(abs(x), _f(10.0))               # tanh(10) is 1.0 in float32
    s = min(a, TANH_SMALL)
    s2 = s * s
    p = T5
    p = p * s2 + T4
    p = p * s2 + T3
    p = p * s2 + T2
    p = p * s2 + T1
    p = p * s2 + T0
    small = s + s * s2 * p
    big = ONE - TWO / (exp_f32(a + a) + ONE)
    t = small if a < TANH_SMALL else big
    return t if x >= _f(0.0) else -t


# ---------------------------------------------------------------- erf, gelu
ERF_SMALL = _f(0.9)
ERFC_LAST = _f(9.5)                       # erfc(9.5) = 7e-41: zero beyond
R0, R1, R2, R3, R4, R5, R6 = (_f(c) for c in (1.128379225730896, -0.37612634897232056, 0.1128372922539711,
                                              -0.02686120755970478, 0.005205425899475813, -0.000819211476482451,
                                              8.578744746046141e-05))
U_MID = _f(0.6081871345029239)            # middle of [1/9.5, 1/0.9]
G0, G1, G2, G3, G4, G5, G6, G7, G8, G9 = (_f(c) for c in (
    -0.7084457874298096, -0.34824538230895996, -0.07092726230621338, 0.13965968787670135, -0.1171044409275055,
    0.06456032395362854, -0.00724375806748867, -0.04996655881404877, 0.0856352224946022, -0.05289015918970108))


@njit(inline="always", **FAST)
def _erf_small(z):
    """erf(z) for 0 <= z <= 0.9."""
    z2 = z * z
    p = R6
    p = p * z2 + R5
    p = p * z2 + R4
    p = p * z2 + R3
    p = p * z2 + R2
    p = p * z2 + R1
    p = p * z2 + R0
    return z * p


@njit(inline="always", **FAST)
def _erfc_tail(z, z2):
    """erfc(z) for z >= 0.9, given z2 = z^2 (gelu has it with one rounding less); z is clamped to
    [0.9, 9.5] first, so any z is safe; 0 past 9.5."""
    zc = min(max(z, ERF_SMALL), ERFC_LAST)
    z2c = min(max(z2, ERF_SMALL * ERF_SMALL), ERFC_LAST * ERFC_LAST)
    u = ONE / zc
    t = u - U_MID
    q = G9
    q = q * t + G8
    q = q * t + G7
    q = q * t + G6
    q = q * t + G5
    q = q * t + G4
    q = q * t + G3
    q = q * t + G2
    q = q * t + G1
    q = q * t + G0
    e = exp_f32(q - z2c) * u
    return e if z <= ERFC_LAST else _f(0.0)


@njit(inline="always", **FAST)
def erf_f32(x):
    a = abs(x)
    small = _erf_small(min(a, ERF_SMALL))
    big = ONE - _erfc_tail(a, a * a)
    e = small if a < ERF_SMALL else big
    return e if x >= _f(0.0) else -e


@njit(inline="always", **FAST)
def gelu_f32(x):
    z = abs(x) * _f(0.7071067811865476)
    small = _erf_small(min(z, ERF_SMALL))
    tail = _erfc_tail(z, x * x * HALF)
    # 1 + erf(x / sqrt 2): 2 - erfc for x >= 0, erfc itself for x < 0 (no cancellation)
    pos = (ONE + small) if z < ERF_SMALL else (TWO - tail)
    neg = (ONE - small) if z < ERF_SMALL else tail
    return HALF * x * (pos if x >= _f(0.0) else neg)


@njit(inline="always", **FAST)
def gelu_tanh_f32(x):
    u = _f(0.7978845608028654) * (x + _f(0.044715) * x * x * x)
    return x / (ONE + exp_f32(-(u + u)))


# ---------------------------------------------------------------- log
L1, L3, L5, L7, L9 = (_f(c) for c in (2.0, 0.6666666269302368, 0.4000038802623749, 0.2853493392467499,
                                      0.23618349432945251))
LN2 = _f(0.6931471805599453)


@njit(inline="always", **FAST)
def log_f32(x):
    """Natural log of a positive normal float32 (LRN's power); 0 and denormals are not handled."""
    bits = _f32_to_bits(x)
    # m in [sqrt(1/2), sqrt(2)): shift the exponent so that the mantissa's top lands there
    k = ((bits - np.int32(0x3F3504F3)) >> np.int32(23))
    m = _bits_to_f32(bits - (k << np.int32(23)))
    f = (m - ONE) / (m + ONE)
    f2 = f * f
    p = L9
    p = p * f2 + L7
    p = p * f2 + L5
    p = p * f2 + L3
    p = p * f2 + L1
    return f * p + np.float32(k) * LN2
