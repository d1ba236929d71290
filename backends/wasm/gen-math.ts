// Vectorised transcendental functions for the generated kernels (f32x4 in, f32x4 out). Each helper writes its
// intermediates into fresh locals (an Expr used twice would be emitted twice) and returns the local holding the
// result. Accuracy, measured against float64 over the ranges the kernels see, is in test/wasm-backend.test.ts.
//
// exp:  Cody–Waite reduction x = n·ln2 + r (|r| ≤ ln2/2, n = round(x·log2 e) via the 1.5·2^23 trick), a degree-5
//       minimax polynomial for e^r (the classic Cephes expf coefficients, ≈1 ulp), then scaling by 2^n as two
//       exponent-field multiplies so that results from 2^-150 (subnormal) up to overflow (+Inf) come out right.
//       x is clamped to [-104, 89] with pmin/pmax ordered so NaN passes through.
// tanh: odd polynomial for |x| < 0.625 (Cephes tanhf), else 1 − 2/(e^{2|x|} + 1) with x's sign.
// gelu (tanh form): x / (1 + e^{−2u}), u = √(2/π)(x + 0.044715x³) — the same function, one exp and one divide.
// silu: x / (1 + e^{−x}).
// gelu (erf form): 0.5·x·erfc(−x/√2), with erfc from the Chebyshev-fitted formula in Numerical Recipes (relative
//       error < 1.2e-7 everywhere), so large negative x keeps its (tiny) value instead of cancelling to 0.

import { f32x4, i32x4, type Expr, type FnBuilder, type Local, v128 } from './emitter.js';

const splat = (x: number) => v128.constF32(x, x, x, x);
const splatI = (x: number) => v128.constI32(x, x, x, x);

/** e^r ≈ 1 + r + r²·P(r) on |r| ≤ ln2/2: P's coefficients (Cephes expf), highest power first. */
const EXP_POLY = [1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1];
/** ln 2 split for Cody–Waite (ln 2 = LN2_HI + LN2_LO): x − n·ln2 = x − n·LN2_HI − n·LN2_LO, the first product exact. */
const LN2_HI = 0.693359375, LN2_LO = -2.12194440e-4;

/** Horner evaluation of Σ c[i]·x^(n−1−i) (coefficients highest power first). */
function horner(x: Expr, coeffs: readonly number[]): Expr {
  let acc: Expr = splat(coeffs[0]!);
  for (let i = 1; i < coeffs.length; i++) acc = f32x4.add(f32x4.mul(acc, x), splat(coeffs[i]!));
  return acc;
}

export function vexp(f: FnBuilder, x: Expr): Local {
  const MAGIC = 12582912; // 1.5·2^23: adding it rounds to an integer held in the low mantissa bits
  const xc = f.local('v128', f32x4.pmin(f32x4.pmax(x, splat(-104)), splat(89)));
  const t = f.local('v128', f32x4.add(f32x4.mul(xc, splat(Math.LOG2E)), splat(MAGIC)));
  const n = f.local('v128', f32x4.sub(t, splat(MAGIC)));
  const r = f.local('v128', f32x4.sub(f32x4.sub(xc, f32x4.mul(n, splat(LN2_HI))), f32x4.mul(n, splat(LN2_LO))));
  const p = horner(r, EXP_POLY);
  const er = f.local('v128', f32x4.add(f32x4.add(f32x4.mul(f32x4.mul(p, r), r), r), splat(1)));
  const ni = f.local('v128', i32x4.sub(t, splatI(0x4b400000))); // integer n
  const h = f.local('v128', i32x4.shr_s(ni, 1));
  const s1 = i32x4.shl(i32x4.add(h, splatI(127)), 23);
  const s2 = i32x4.shl(i32x4.add(i32x4.sub(ni, h), splatI(127)), 23);
  return f.local('v128', f32x4.mul(f32x4.mul(er, s1), s2));
}

/**
 * e^x for x ≤ 0 only (a softmax's scores minus their max), about half of vexp's instructions: the same reduction
 * and polynomial, but with FMA (relaxed, when `fma`), x clamped below at −87.3 so that 2^n is one normal exponent
 * field (results under 2^−126 ≈ 1.2e-38 come out as that, not smaller: nothing next to the max's e^0 = 1), NaN
 * passing through. Positive x up to 88 still come out right; beyond, wrong: callers must subtract the max.
 */
export function vexpNonPositive(f: FnBuilder, x: Expr, fma: boolean): Local {
  const madd = (a: Expr, b: Expr, acc: Expr) => (fma ? f32x4.relaxed_madd(a, b, acc) : f32x4.add(f32x4.mul(a, b), acc));
  const MAGIC = 12582912;
  const xc = f.local('v128', f32x4.pmax(x, splat(-87.33654)));
  const t = f.local('v128', madd(xc, splat(Math.LOG2E), splat(MAGIC)));
  const n = f.local('v128', f32x4.sub(t, splat(MAGIC)));
  const r = f.local('v128', madd(n, splat(-LN2_LO), madd(n, splat(-LN2_HI), xc)));
  let p: Expr = splat(EXP_POLY[0]!);
  for (const c of EXP_POLY.slice(1)) p = madd(p, r, splat(c));
  const er = f32x4.add(madd(f32x4.mul(p, r), r, r), splat(1));
  const scale = i32x4.shl(i32x4.sub(t, splatI(0x4b400000 - 127)), 23);
  return f.local('v128', f32x4.mul(er, scale));
}

export function vtanh(f: FnBuilder, x: Expr): Local {
  const xl = f.local('v128', x);
  const ax = f.local('v128', f32x4.abs(xl));
  const e = vexp(f, f32x4.add(ax, ax));
  const big = f32x4.sub(splat(1), f32x4.div(splat(2), f32x4.add(e, splat(1))));
  const signed = v128.or(big, v128.and(xl, splatI(0x80000000 | 0)));
  const z = f.local('v128', f32x4.mul(xl, xl));
  const p = horner(z, [-5.70498872745e-3, 2.06390887954e-2, -5.37397155531e-2, 1.33314422036e-1, -3.33332819422e-1]);
  const small = f32x4.add(xl, f32x4.mul(f32x4.mul(xl, z), p));
  return f.local('v128', v128.bitselect(small, signed, f32x4.lt(ax, splat(0.625))));
}

/** x / (1 + e^{k·x'}) helper: returns x / (1 + exp(arg)). */
function xOverOnePlusExp(f: FnBuilder, x: Local, arg: Expr): Local {
  const e = vexp(f, arg);
  return f.local('v128', f32x4.div(x, f32x4.add(splat(1), e)));
}

export function vsilu(f: FnBuilder, x: Expr): Local {
  const xl = f.local('v128', x);
  return xOverOnePlusExp(f, xl, f32x4.neg(xl));
}

export function vgeluTanh(f: FnBuilder, x: Expr): Local {
  const xl = f.local('v128', x);
  const c = Math.sqrt(2 / Math.PI);
  const x3 = f32x4.mul(f32x4.mul(xl, xl), xl);
  const u = f32x4.mul(splat(c), f32x4.add(xl, f32x4.mul(splat(0.044715), x3)));
  return xOverOnePlusExp(f, xl, f32x4.mul(splat(-2), u));
}

export function vgeluErf(f: FnBuilder, x: Expr): Local {
  const xl = f.local('v128', x);
  const z = f.local('v128', f32x4.mul(f32x4.abs(xl), splat(Math.SQRT1_2)));
  const t = f.local('v128', f32x4.div(splat(1), f32x4.add(splat(1), f32x4.mul(splat(0.5), z))));
  const poly = horner(t, [0.17087277, -0.82215223, 1.48851587, -1.13520398, 0.27886807, -0.18628806, 0.09678418, 0.37409196, 1.00002368, -1.26551223]);
  const e = vexp(f, f32x4.add(f32x4.neg(f32x4.mul(z, z)), poly));
  const half = f.local('v128', f32x4.mul(f32x4.mul(t, e), splat(0.5))); // 0.5·erfc(|x|/√2)
  // x ≥ 0: x·(1 − half); x < 0: x·half.
  const neg = f32x4.lt(xl, v128.zero());
  return f.local('v128', f32x4.mul(xl, v128.bitselect(half, f32x4.sub(splat(1), half), neg)));
}
