// Generated matrix-vector kernels for decode (M = 1, or a few rows): the weights are streamed from memory exactly
// once, so these are bound by memory bandwidth, not arithmetic. Packed bf16/f16 weights are widened in registers
// (bf16: one interleave with zeros; f16: a handful of integer ops), so a bf16 weight costs half the bytes.
//
//   gemv_t_<dt>  weights [N, K] (Linear layout): four weight rows at a time, dot products against each x row, the
//                four sums reduced across lanes with one 4×4 transpose-add.
//   gemv_n_<dt>  weights [K, N]: y[j] += x[k]·B[k, j] over contiguous rows of B, four rows of B per pass over a
//                column chunk of y that stays in L1.

import { f32, f32x4, i32, i32x4, type Expr, type FnBuilder, type Local, type ModuleBuilder, v128 } from './emitter.js';
import { ELEM_BYTES, type StoreDType, f16AnySpecial, f16x8ToF32x4, load1, load4 } from './gen-gemm.js';

/** Eight consecutive 16-bit floats at addr → [low four, high four] as f32x4. */
function load8x16(f: FnBuilder, rawE: Expr, dtype: 'bf16' | 'f16'): [Expr, Expr] {
  const raw = f.local('v128', rawE);
  if (dtype === 'bf16') {
    const z = v128.zero();
    return [
      v128.shuffle(z, raw, [0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23]),
      v128.shuffle(z, raw, [8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31]),
    ];
  }
  const special = f.local('i32', f16AnySpecial(raw));
  return [f16x8ToF32x4(f, raw, special, 0), f16x8ToF32x4(f, raw, special, 1)];
}

/** (Σ lanes of a, Σ b, Σ c, Σ d) as one vector. */
export function hsum4(a: Expr, b: Expr, c: Expr, d: Expr, tmp: [Local, Local]): (f: FnBuilder) => Expr {
  return (f) => {
    f.set(tmp[0], f32x4.add(v128.shuffle32(a, b, [0, 4, 1, 5]), v128.shuffle32(a, b, [2, 6, 3, 7]))); // a02 b02 a13 b13
    f.set(tmp[1], f32x4.add(v128.shuffle32(c, d, [0, 4, 1, 5]), v128.shuffle32(c, d, [2, 6, 3, 7])));
    return f32x4.add(v128.shuffle32(tmp[0], tmp[1], [0, 1, 4, 5]), v128.shuffle32(tmp[0], tmp[1], [2, 3, 6, 7]));
  };
}

/** Σ of the four lanes. */
export function hsum(a: Expr): Expr {
  const t = f32x4.add(a, v128.shuffle32(a, a, [2, 3, 0, 1]));
  return f32.add(f32x4.extract_lane(t, 0), f32x4.extract_lane(t, 1));
}

/**
 * Elements of k per pass of gemv_t. Measured here: splitting long rows into k-chunks (so x stays small) makes
 * the weight stream jump at every chunk and runs 2–3× slower from DRAM than reading whole rows in order, so rows
 * are never split (the chunk loop is kept for very long rows only).
 */
const GEMV_KB = 1 << 20;

/**
 * gemv_t_<dt>(x, ldx, xd, w, bias, y, ldy, rows, K, M): y[m, n] = Σ_k x[m, k]·w[n, k] (+ bias[n]) for n < rows,
 * m < M. w is [rows, K] contiguous; bias = 0 means none. xd (bf16 only) is x with each group of eight split into
 * its even and odd elements (see `deinterleave8`), rows of K floats.
 *
 * The weight is read strictly in address order, one row after the other: short rows (K = 384: 1.5 KiB) read four
 * at a time would present the prefetcher with four new streams every few hundred bytes, which measured 2–3× slower
 * from DRAM than one sequential stream. Four accumulators per row hide the add latency.
 */
export function genGemvT(m: ModuleBuilder, dt: StoreDType, fma = false): string {
  const madd = (a: Expr, b: Expr, acc: Expr) => (fma ? f32x4.relaxed_madd(a, b, acc) : f32x4.add(acc, f32x4.mul(a, b)));
  const name = `gemv_t_${dt}`;
  const eb = ELEM_BYTES[dt];
  m.func(name, ['i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32'], [], (f, x, ldx, xd, w, bias, y, ldy, rows, K, M) => {
    const n = f.local('i32'), mm = f.local('i32'), k = f.local('i32'), kc = f.local('i32'), kend = f.local('i32');
    const xp = f.local('i32'), xdp = f.local('i32'), wp = f.local('i32'), yp = f.local('i32');
    const a0 = f.local('v128'), a1 = f.local('v128'), a2 = f.local('v128'), a3 = f.local('v128');
    const s = f.local('f32');
    const k16 = f.local('i32'), k4 = f.local('i32');
    const rowBytes = f.local('i32', i32.mul(K, eb));
    const ldxb = f.local('i32', i32.shl(ldx, 2)), ldyb = f.local('i32', i32.shl(ldy, 2));
    // Chunks of k (one chunk unless K > GEMV_KB); rows are read whole and in address order.
    f.for(kc, 0, K, GEMV_KB, () => {
      f.set(kend, i32.min_s(K, i32.add(kc, GEMV_KB)));
      f.set(k16, i32.add(kc, i32.and(i32.sub(kend, kc), -16)));
      f.set(k4, i32.add(kc, i32.and(i32.sub(kend, kc), -4)));
      f.for(n, 0, rows, 1, () => {
        f.set(wp, i32.add(w, i32.mul(n, rowBytes)));
        f.for(mm, 0, M, 1, () => {
          f.set(xp, i32.add(x, i32.mul(mm, ldxb)));
          f.set(xdp, i32.add(xd, i32.mul(mm, ldxb)));
          for (const a of [a0, a1, a2, a3]) f.set(a, v128.zero());
          f.for(k, kc, k16, 16, () => {
            const xa = i32.add(xp, i32.shl(k, 2));
            const wa = i32.add(wp, i32.mul(k, eb));
            if (dt === 'f32') {
              [a0, a1, a2, a3].forEach((a, q) => f.set(a, madd(v128.load(wa, 16 * q, 0), v128.load(xa, 16 * q, 0), a)));
            } else if (dt === 'bf16') {
              // A 32-bit lane holds two bf16 (even element low, odd high): even = lane << 16, odd = lane & ~0xffff,
              // against x split the same way (xd) — two integer ops per eight weights instead of two unpacks.
              const xda = i32.add(xdp, i32.shl(k, 2));
              for (let h = 0; h < 2; h++) {
                const raw = f.local('v128', v128.load(wa, 16 * h, 0));
                const even = i32x4.shl(raw, 16);
                const odd = v128.and(raw, v128.constI32(-65536, -65536, -65536, -65536));
                const [ae, ao] = h === 0 ? [a0, a1] : [a2, a3];
                f.set(ae, madd(even, v128.load(xda, 32 * h, 0), ae));
                f.set(ao, madd(odd, v128.load(xda, 32 * h + 16, 0), ao));
              }
            } else {
              for (let h = 0; h < 2; h++) {
                const [lo, hi] = load8x16(f, v128.load(wa, 16 * h, 0), dt);
                const [al, ah] = h === 0 ? [a0, a1] : [a2, a3];
                f.set(al, madd(lo, v128.load(xa, 32 * h, 0), al));
                f.set(ah, madd(hi, v128.load(xa, 32 * h + 16, 0), ah));
              }
            }
          });
          f.for(k, k16, k4, 4, () => {
            f.set(a0, f32x4.add(a0, f32x4.mul(load4(f, i32.add(wp, i32.mul(k, eb)), dt), v128.load(i32.add(xp, i32.shl(k, 2)), 0, 0))));
          });
          f.set(s, hsum(f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3))));
          f.for(k, k4, kend, 1, () => f.set(s, f32.add(s, f32.mul(f32.load(i32.add(xp, i32.shl(k, 2))), load1(f, i32.add(wp, i32.mul(k, eb)), dt)))));
          f.set(yp, i32.add(y, i32.add(i32.mul(mm, ldyb), i32.shl(n, 2))));
          f.if(i32.ne(kc, 0), () => f.set(s, f32.add(f32.load(yp), s)));
          f.if(i32.and(i32.eq(kend, K), i32.ne(bias, 0)), () => f.set(s, f32.add(s, f32.load(i32.add(bias, i32.shl(n, 2))))));
          f.f32_store(yp, s);
        });
      });
    });
  });
  return name;
}

/** deinterleave8(x, dst, K): each group of eight floats (x0..x7) → (x0 x2 x4 x6, x1 x3 x5 x7); a tail < 8 is copied. */
export function genDeinterleave(m: ModuleBuilder): string {
  m.func('deinterleave8', ['i32', 'i32', 'i32'], [], (f, x, dst, K) => {
    const k = f.local('i32');
    const lo = f.local('v128'), hi = f.local('v128');
    const k8 = f.local('i32', i32.and(K, -8));
    f.for(k, 0, k8, 8, () => {
      const a = i32.add(x, i32.shl(k, 2));
      f.set(lo, v128.load(a, 0, 0));
      f.set(hi, v128.load(a, 16, 0));
      f.v128_store(i32.add(dst, i32.shl(k, 2)), v128.shuffle32(lo, hi, [0, 2, 4, 6]), 0, 0);
      f.v128_store(i32.add(dst, i32.shl(k, 2)), v128.shuffle32(lo, hi, [1, 3, 5, 7]), 16, 0);
    });
    f.for(k, k8, K, 1, () => f.f32_store(i32.add(dst, i32.shl(k, 2)), f32.load(i32.add(x, i32.shl(k, 2)))));
  });
  return 'deinterleave8';
}

/**
 * gemv_n_<dt>(x, b, ldb, bias, y, cols, K): y[j] = Σ_k x[k]·b[k·ldb + j] (+ bias[j]) for j < cols.
 * Columns are processed in chunks of CH (y chunk in L1); within a chunk, four rows of b per pass.
 */
export function genGemvN(m: ModuleBuilder, dt: StoreDType): string {
  const name = `gemv_n_${dt}`;
  const eb = ELEM_BYTES[dt];
  const CH = 2048;
  m.func(name, ['i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32'], [], (f, x, b, ldb, bias, y, cols, K) => {
    const jc = f.local('i32'), j = f.local('i32'), k = f.local('i32'), w = f.local('i32'), w4 = f.local('i32');
    const p0 = f.local('i32'), p1 = f.local('i32'), p2 = f.local('i32'), p3 = f.local('i32'), yp = f.local('i32');
    const s0 = f.local('v128'), s1 = f.local('v128'), s2 = f.local('v128'), s3 = f.local('v128');
    const ldbb = f.local('i32', i32.mul(ldb, eb));
    const k4 = f.local('i32', i32.and(K, -4));
    const ps = [p0, p1, p2, p3];
    const ss = [s0, s1, s2, s3];
    f.for(jc, 0, cols, CH, () => {
      f.set(w, i32.min_s(CH, i32.sub(cols, jc)));
      f.set(w4, i32.and(w, -4));
      f.set(yp, i32.add(y, i32.shl(jc, 2)));
      // y chunk = bias or 0.
      f.for(j, 0, w, 1, () => {
        f.f32_store(i32.add(yp, i32.shl(j, 2)), f32.const(0));
      });
      f.if(i32.ne(bias, 0), () => {
        f.for(j, 0, w, 1, () => f.f32_store(i32.add(yp, i32.shl(j, 2)), f32.load(i32.add(bias, i32.shl(i32.add(jc, j), 2)))));
      });
      f.for(k, 0, k4, 4, () => {
        for (let q = 0; q < 4; q++) {
          f.set(ps[q]!, i32.add(b, i32.mul(i32.add(i32.mul(i32.add(k, q), ldb), jc), eb)));
          f.set(ss[q]!, f32x4.splat(f32.load(i32.add(x, i32.shl(i32.add(k, q), 2)))));
        }
        f.for(j, 0, w4, 4, () => {
          const ya = i32.add(yp, i32.shl(j, 2));
          let sum: Expr = v128.load(ya, 0, 0);
          for (let q = 0; q < 4; q++) sum = f32x4.add(sum, f32x4.mul(ss[q]!, load4(f, i32.add(ps[q]!, i32.mul(j, eb)), dt)));
          f.v128_store(ya, sum, 0, 0);
        });
        f.for(j, w4, w, 1, () => {
          const ya = i32.add(yp, i32.shl(j, 2));
          let sum: Expr = f32.load(ya);
          for (let q = 0; q < 4; q++) sum = f32.add(sum, f32.mul(f32x4.extract_lane(ss[q]!, 0), load1(f, i32.add(ps[q]!, i32.mul(j, eb)), dt)));
          f.f32_store(ya, sum);
        });
      });
      f.for(k, k4, K, 1, () => {
        f.set(p0, i32.add(b, i32.mul(i32.add(i32.mul(k, ldb), jc), eb)));
        f.set(s0, f32x4.splat(f32.load(i32.add(x, i32.shl(k, 2)))));
        f.for(j, 0, w4, 4, () => {
          const ya = i32.add(yp, i32.shl(j, 2));
          f.v128_store(ya, f32x4.add(v128.load(ya, 0, 0), f32x4.mul(s0, load4(f, i32.add(p0, i32.mul(j, eb)), dt))), 0, 0);
        });
        f.for(j, w4, w, 1, () => {
          const ya = i32.add(yp, i32.shl(j, 2));
          f.f32_store(ya, f32.add(f32.load(ya), f32.mul(f32x4.extract_lane(s0, 0), load1(f, i32.add(p0, i32.mul(j, eb)), dt))));
        });
      });
    });
    void ldbb;
  });
  return name;
}
