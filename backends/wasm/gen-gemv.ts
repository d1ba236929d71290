// Generated matrix-vector kernels for decode (M = 1, or a few rows): the weights are streamed from memory exactly
// once, so these are bound by memory bandwidth, not arithmetic. Packed bf16/f16 weights are widened in registers
// (bf16: one interleave with zeros; f16: a handful of integer ops), so a bf16 weight costs half the bytes.
//
//   gemv_t_<dt>  weights [N, K] (Linear layout): whole weight rows in address order, two rows per pass that lie
//                half a job apart (row i with row i + rows/2), four accumulators per row, x loaded once for both.
//   gemv_t_<dt>_d  the same for f32/f16 with x read in place instead of from prepare_x's reordered copy, and both
//                rows' horizontal sums in one vector: the dispatch's choice up to K = 1024 (same sums, bit for bit).
//   gemv_n_<dt>  weights [K, N]: y[j] += x[k]·B[k, j] over contiguous rows of B, four rows of B per pass over a
//                column chunk of y that stays in L1.

import { f32, f32x4, i32, i32x4, select, type Expr, type FnBuilder, type Local, type ModuleBuilder, v128 } from './emitter.js';
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
 * gemv_t_<dt>(x, ldx, xd, w, bias, y, ldy, rows, K, M): y[m, n] = Σ_k x[m, k]·w[n, k] (+ bias[n]) for n < rows,
 * m < M. w is [rows, K] contiguous; bias = 0 means none. xd is x prepared by `prepare_x` (rows of K floats).
 *
 * Measured from DRAM on this machine: the weight must be read in long sequential runs — short rows (K = 384) read
 * four at a time, or long rows split into k-chunks, present the prefetcher with new streams every few hundred
 * bytes and ran 2–4× slower. And the x operand must stay small or its loads slow the stream down (a dot product
 * against an 8 KiB x ran at a third of the speed of one against 256 B, and reading two rows per pass to halve
 * the x loads did not help when the two rows were adjacent). So rows are read whole and in address order, with four
 * accumulators (16 k per step); a row's result does not depend on how rows are split among threads or paired.
 * The default (far = true, R = 2) pairs row i with row i + rows/2 of the job: two long streams far apart, each x
 * vector loaded once for both, 1.13–1.30× faster than one row per pass (docs/perf-log.md, "Two far rows, exact"). x itself is read from a
 * copy whose 64-byte blocks are reordered so that consecutive k read every other block of the copy: a plain
 * sequential x beside the weight stream measured 13.5 GB/s from DRAM, this pattern 17.8 (the hardware stream
 * detection seems to get in the way when two sequential streams run together).
 */
export function genGemvT(m: ModuleBuilder, dt: StoreDType, fma = false, R = 1, ACC = 4, name = `gemv_t_${dt}`, far = false, direct = false): string {
  const madd = (a: Expr, b: Expr, acc: Expr) => (fma ? f32x4.relaxed_madd(a, b, acc) : f32x4.add(acc, f32x4.mul(a, b)));
  const eb = ELEM_BYTES[dt];
  if (![1, 2, 4].includes(ACC) || R < 1) throw new Error(`gemv_t: bad blocking R=${R} ACC=${ACC}`);
  m.func(name, ['i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32'], [], (f, x, ldx, xd, w, bias, y, ldy, rows, K, M) => {
    const n = f.local('i32'), mm = f.local('i32'), k = f.local('i32');
    const xp = f.local('i32'), xdp = f.local('i32');
    // One weight-row pointer and ACC accumulators per row of the pass; two x vectors shared by the R rows.
    const wps = Array.from({ length: R }, () => f.local('i32'));
    const acc = Array.from({ length: R }, () => Array.from({ length: ACC }, () => f.local('v128')));
    const xv = [f.local('v128'), f.local('v128')];
    const s = f.local('f32');
    const rowBytes = f.local('i32', i32.mul(K, eb));
    const ldxb = f.local('i32', i32.shl(ldx, 2)), ldyb = f.local('i32', i32.shl(ldy, 2));
    const k16 = f.local('i32', i32.and(K, -16)), k4 = f.local('i32', i32.and(K, -4));
    const kHalf = f.local('i32', i32.shl(i32.shr_u(i32.add(i32.shr_u(k16, 4), 1), 1), 4)); // 16·⌈blocks/2⌉
    const rowsR = f.local('i32', R > 1 ? i32.sub(rows, i32.rem_u(rows, R)) : rows);
    // far (R = 2 only): a pass reads rows n and n + half (two streams far apart) instead of n and n + 1.
    if (far && R !== 2) throw new Error('gemv_t: far pairs need R = 2');
    if (direct && dt === 'bf16') throw new Error('gemv_t: bf16 reads x split into even/odd elements (xd)');
    const half = f.local('i32', i32.shr_u(rows, 1));
    const rowOf = (r: number): Expr => (far && r === 1 ? i32.add(n, half) : i32.add(n, r));
    const biasOf = (row: Expr) => f32.load(i32.add(bias, i32.shl(row, 2)));
    /** Σ x·w over [from, K) for one row: groups of four, then scalars. */
    const tail = (row: Local, from: Expr, a: Local, sum: Local) => {
      f.for(k, from, k4, 4, () => f.set(a, madd(load4(f, i32.add(row, i32.mul(k, eb)), dt), v128.load(i32.add(xp, i32.shl(k, 2)), 0, 0), a)));
      f.set(sum, hsum(a));
      f.for(k, k4, K, 1, () => f.set(sum, f32.add(sum, f32.mul(f32.load(i32.add(xp, i32.shl(k, 2))), load1(f, i32.add(row, i32.mul(k, eb)), dt)))));
    };
    const store = (row: Expr, sum: Local) => {
      f.if(i32.ne(bias, 0), () => f.set(sum, f32.add(sum, biasOf(row))));
      f.f32_store(i32.add(y, i32.add(i32.mul(mm, ldyb), i32.shl(row, 2))), sum);
    };
    /**
     * A pass over `count` consecutive rows from n. Per block of 16 k the x block is four vectors v = 0..3 (for
     * bf16 weights: the even and odd elements of each eight), and vector v goes into accumulator v mod ACC of every
     * row — the same order whatever `count` is, so a row's sum does not depend on how rows are grouped or split.
     */
    const pass = (count: number) => {
      for (let r = 0; r < count; r++) f.set(wps[r]!, i32.add(w, i32.mul(rowOf(r), rowBytes)));
      f.for(mm, 0, M, 1, () => {
        f.set(xp, i32.add(x, i32.mul(mm, ldxb)));
        f.set(xdp, i32.add(xd, i32.mul(mm, ldxb)));
        for (let r = 0; r < count; r++) for (const a of acc[r]!) f.set(a, v128.zero());
        const block = (xa: Expr) => {
          for (let h = 0; h < 2; h++) {
            // Eight weights per row against two x vectors (read once for all rows of the pass).
            const xa0 = count > 1 ? (f.set(xv[0]!, v128.load(xa, 32 * h, 0)), xv[0]!) : null;
            const xa1 = count > 1 ? (f.set(xv[1]!, v128.load(xa, 32 * h + 16, 0)), xv[1]!) : null;
            const X0 = () => xa0 ?? v128.load(xa, 32 * h, 0);
            const X1 = () => xa1 ?? v128.load(xa, 32 * h + 16, 0);
            for (let r = 0; r < count; r++) {
              const wa = i32.add(wps[r]!, i32.mul(k, eb));
              const lo = acc[r]![(2 * h) % ACC]!, hi = acc[r]![(2 * h + 1) % ACC]!;
              if (dt === 'bf16') {
                // A 32-bit lane holds two bf16 (even element low, odd high): even = lane << 16, odd = lane & ~0xffff,
                // against x split the same way: two integer ops per eight weights instead of two unpacks.
                const raw = f.local('v128', v128.load(wa, 16 * h, 0));
                f.set(lo, madd(i32x4.shl(raw, 16), X0(), lo));
                f.set(hi, madd(v128.and(raw, v128.constI32(-65536, -65536, -65536, -65536)), X1(), hi));
              } else if (dt === 'f32') {
                f.set(lo, madd(v128.load(wa, 32 * h, 0), X0(), lo));
                f.set(hi, madd(v128.load(wa, 32 * h + 16, 0), X1(), hi));
              } else {
                const [wl, wh] = load8x16(f, v128.load(wa, 16 * h, 0), dt);
                f.set(lo, madd(wl, X0(), lo));
                f.set(hi, madd(wh, X1(), hi));
              }
            }
          }
        };
        // Blocks of 16 k: the weights in order; x from xd, where (f32/f16) block b sits at 2b (first half of the
        // blocks) or 2(b − half) + 1 (second half), so x is read with a two-block stride (see prepare_x).
        if (direct) {
          // x read in place (xd unused): one loop, no prepared copy. The same x values meet the same weights in
          // the same order, so the sums are the reordered kernel's bit for bit.
          f.for(k, 0, k16, 16, () => block(i32.add(xp, i32.shl(k, 2))));
        } else if (dt === 'bf16') {
          // bf16: x split into even/odd elements, in order (the reordering measured no gain here).
          f.for(k, 0, k16, 16, () => block(i32.add(xdp, i32.shl(k, 2))));
        } else {
          f.for(k, 0, kHalf, 16, () => block(i32.add(xdp, i32.shl(k, 3))));
          f.for(k, kHalf, k16, 16, () => block(i32.add(xdp, i32.add(i32.shl(i32.sub(k, kHalf), 3), 64))));
        }
        for (let r = 0; r < count; r++) {
          const a = acc[r]!;
          const a0 = a[0]!;
          if (ACC === 4) f.set(a0, f32x4.add(f32x4.add(a0, a[1]!), f32x4.add(a[2]!, a[3]!)));
          else if (ACC === 2) f.set(a0, f32x4.add(a0, a[1]!));
          if (!direct || count !== 2) {
            tail(wps[r]!, k16, a0, s);
            store(rowOf(r), s);
          } else f.for(k, k16, k4, 4, () => f.set(a0, madd(load4(f, i32.add(wps[r]!, i32.mul(k, eb)), dt), v128.load(i32.add(xp, i32.shl(k, 2)), 0, 0), a0)));
        }
        if (direct && count === 2) {
          // Both rows' horizontal sums at once: (a0 + a2) + (a1 + a3) per row, the additions hsum makes, in one
          // vector (lanes: row 0's a0+a2, a1+a3, row 1's). Then each row's scalar tail, bias and store.
          const a = acc[0]![0]!, b = acc[1]![0]!;
          f.set(a, f32x4.add(v128.shuffle32(a, b, [0, 1, 4, 5]), v128.shuffle32(a, b, [2, 3, 6, 7])));
          for (let r = 0; r < 2; r++) {
            f.set(s, f32.add(f32x4.extract_lane(a, 2 * r), f32x4.extract_lane(a, 2 * r + 1)));
            f.for(k, k4, K, 1, () => f.set(s, f32.add(s, f32.mul(f32.load(i32.add(xp, i32.shl(k, 2))), load1(f, i32.add(wps[r]!, i32.mul(k, eb)), dt)))));
            store(rowOf(r), s);
          }
        }
      });
    };
    if (far) {
      f.for(n, 0, half, 1, () => pass(2));
      f.for(n, i32.shl(half, 1), rows, 1, () => pass(1));
    } else if (R > 1) {
      f.for(n, 0, rowsR, R, () => pass(R));
      f.for(n, rowsR, rows, 1, () => pass(1));
    } else f.for(n, 0, rows, 1, () => pass(1));
  });
  return name;
}

/**
 * sum_partials(p, stride, count, n, bias, y): y[j] = (bias[j] or 0) + p[0·stride + j] + p[1·stride + j] + … in that
 * order (the k-chunked GEMV's reduction: fixed by K, not by the thread count).
 */
export function genSumPartials(m: ModuleBuilder): string {
  m.func('sum_partials', ['i32', 'i32', 'i32', 'i32', 'i32', 'i32'], [], (f, p, stride, count, n, bias, y) => {
    const j = f.local('i32'), c = f.local('i32'), acc = f.local('v128');
    const strideB = f.local('i32', i32.shl(stride, 2));
    const n4 = f.local('i32', i32.and(n, -4));
    const body = (vec: boolean) => {
      const off = i32.shl(j, 2);
      const ld = (addr: Expr) => (vec ? v128.load(addr, 0, 0) : f32x4.splat(f32.load(addr)));
      f.set(acc, v128.zero());
      f.if(i32.ne(bias, 0), () => f.set(acc, ld(i32.add(bias, off))));
      f.for(c, 0, count, 1, () => f.set(acc, f32x4.add(acc, ld(i32.add(p, i32.add(i32.mul(c, strideB), off))))));
      if (vec) f.v128_store(i32.add(y, off), acc, 0, 0);
      else f.f32_store(i32.add(y, off), f32x4.extract_lane(acc, 0));
    };
    f.for(j, 0, n4, 4, () => body(true));
    f.for(j, n4, n, 1, () => body(false));
  });
  return 'sum_partials';
}

/**
 * prepare_x(x, dst, K, bf16): the x operand of gemv_t, in 16-float blocks (the K mod 16 tail is not copied: the
 * kernel reads it from x itself). For f32/f16 weights block b goes to block 2b (b < half) or 2(b − half) + 1,
 * half = ⌈blocks/2⌉; for bf16 weights blocks stay in order and each group of eight floats x0..x7 is stored as
 * (x0 x2 x4 x6, x1 x3 x5 x7), matching the even/odd halves of the packed weights.
 */
export function genPrepareX(m: ModuleBuilder): string {
  m.func('prepare_x', ['i32', 'i32', 'i32', 'i32'], [], (f, x, dst, K, deint) => {
    const b = f.local('i32'), src = f.local('i32'), to = f.local('i32');
    const lo = f.local('v128'), hi = f.local('v128');
    const blocks = f.local('i32', i32.shr_u(K, 4));
    const half = f.local('i32', i32.shr_u(i32.add(blocks, 1), 1));
    f.for(b, 0, blocks, 1, () => {
      f.set(src, i32.add(x, i32.shl(b, 6)));
      const reordered = select(i32.shl(b, 1), i32.add(i32.shl(i32.sub(b, half), 1), 1), i32.lt_s(b, half));
      f.set(to, i32.add(dst, i32.shl(select(b, reordered, deint), 6)));
      for (let g = 0; g < 2; g++) {
        f.set(lo, v128.load(src, 32 * g, 0));
        f.set(hi, v128.load(src, 32 * g + 16, 0));
        f.if(
          deint,
          () => {
            f.v128_store(to, v128.shuffle32(lo, hi, [0, 2, 4, 6]), 32 * g, 0);
            f.v128_store(to, v128.shuffle32(lo, hi, [1, 3, 5, 7]), 32 * g + 16, 0);
          },
          () => {
            f.v128_store(to, lo, 32 * g, 0);
            f.v128_store(to, hi, 32 * g + 16, 0);
          },
        );
      }
    });
  });
  return 'prepare_x';
}

/**
 * gemv_n_<dt>(x, b, ldb, bias, y, cols, K): y[j] = Σ_k x[k]·b[k·ldb + j] (+ bias[j]) for j < cols.
 * Columns are processed in chunks of CH (32 KiB of y: long runs of each row of b measured faster than an
 * L1-sized chunk); within a chunk, four rows of b per pass.
 */
export function genGemvN(m: ModuleBuilder, dt: StoreDType, fma = false, name = `gemv_n_${dt}`): string {
  // With FMA: one fused multiply-add per four weights instead of a multiply and an add (fewer µops per byte).
  const madd = (a: Expr, b: Expr, acc: Expr) => (fma ? f32x4.relaxed_madd(a, b, acc) : f32x4.add(acc, f32x4.mul(a, b)));
  const eb = ELEM_BYTES[dt];
  const CH = 8192;
  m.func(name, ['i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32'], [], (f, x, b, ldb, bias, y, cols, K) => {
    const jc = f.local('i32'), j = f.local('i32'), k = f.local('i32'), w = f.local('i32'), w4 = f.local('i32');
    const p0 = f.local('i32'), p1 = f.local('i32'), p2 = f.local('i32'), p3 = f.local('i32'), yp = f.local('i32');
    const s0 = f.local('v128'), s1 = f.local('v128'), s2 = f.local('v128'), s3 = f.local('v128');
    // Four rows of b per pass over the y chunk, except for narrow b (≤ 2048 columns), where one row per pass keeps
    // the read sequential (measured 1.4× faster at 384×1024). Both give the same sums in the same order.
    const k4 = f.local('i32', select(i32.and(K, -4), 0, i32.gt_s(cols, 2048)));
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
          for (let q = 0; q < 4; q++) sum = madd(ss[q]!, load4(f, i32.add(ps[q]!, i32.mul(j, eb)), dt), sum);
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
          f.v128_store(ya, madd(s0, load4(f, i32.add(p0, i32.mul(j, eb)), dt), v128.load(ya, 0, 0)), 0, 0);
        });
        f.for(j, w4, w, 1, () => {
          const ya = i32.add(yp, i32.shl(j, 2));
          f.f32_store(ya, f32.add(f32.load(ya), f32.mul(f32x4.extract_lane(s0, 0), load1(f, i32.add(p0, i32.mul(j, eb)), dt))));
        });
      });
    });
  });
  return name;
}

/**
 * round_bf16(src, dst, n, packed): the f32 values src[0..n) rounded to bf16, round-to-nearest-even, NaN kept as a
 * quiet NaN (bit for bit what core/dtype f32ToBf16 gives). packed = 1: dst receives the n 16-bit patterns;
 * packed = 0: dst receives n f32 whose low 16 bits are zero (the same values, widened). Used by the backend's
 * `bf16Activations` option: a matmul with bf16 weights rounds its activations once per call.
 */
export function genRoundBf16(m: ModuleBuilder): string {
  m.func('round_bf16', ['i32', 'i32', 'i32', 'i32'], [], (f, src, dst, n, packed) => {
    const i = f.local('i32'), b = f.local('i32');
    const v = [f.local('v128'), f.local('v128')];
    const n8 = f.local('i32', i32.and(n, -8));
    const splat = (c: number) => v128.constI32(c, c, c, c);
    /** Rounded bits (bf16 in the high half, low half zero) of the f32 lanes in `x`. */
    const roundV = (x: Local): Expr => {
      const rne = i32x4.add(i32x4.add(x, splat(0x7fff)), v128.and(i32x4.shr_u(x, 16), splat(1)));
      const isNan = i32x4.gt_s(v128.and(x, splat(0x7fffffff)), splat(0x7f800000)); // both sides ≥ 0: signed compare is exact
      return v128.and(v128.bitselect(v128.or(x, splat(0x00400000)), rne, isNan), splat(-65536));
    };
    f.for(i, 0, n8, 8, () => {
      for (let h = 0; h < 2; h++) {
        f.set(v[h]!, v128.load(i32.add(src, i32.shl(i, 2)), 16 * h, 0));
        f.set(v[h]!, roundV(v[h]!));
      }
      f.if(
        packed,
        // The high halves of the eight lanes, in order: bytes 2–3 of each 32-bit lane.
        () => f.v128_store(i32.add(dst, i32.shl(i, 1)), v128.shuffle(v[0]!, v[1]!, [2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31]), 0, 0),
        () => {
          f.v128_store(i32.add(dst, i32.shl(i, 2)), v[0]!, 0, 0);
          f.v128_store(i32.add(dst, i32.shl(i, 2)), v[1]!, 16, 0);
        },
      );
    });
    f.for(i, n8, n, 1, () => {
      f.set(b, i32.load(i32.add(src, i32.shl(i, 2))));
      f.set(
        b,
        select(
          i32.or(b, 0x00400000),
          i32.add(i32.add(b, 0x7fff), i32.and(i32.shr_u(b, 16), 1)),
          i32.gt_s(i32.and(b, 0x7fffffff), 0x7f800000),
        ),
      );
      f.if(
        packed,
        () => f.i32_store16(i32.add(dst, i32.shl(i, 1)), i32.shr_u(b, 16)),
        () => f.i32_store(i32.add(dst, i32.shl(i, 2)), i32.and(b, -65536)),
      );
    });
  });
  return 'round_bf16';
}

/**
 * gemv_t_bf16_xb (same arguments as gemv_t; the `bf16Activations` option): bf16 [N, K] weights against x already
 * rounded to bf16 by round_bf16 (packed, row m of x at xd + m·ldx·2; `x` itself is not read). Both operands are
 * widened in registers the same way (even element = lane << 16, odd = lane & ~0xffff) and accumulated in f32 — the
 * semantics of ggml's bf16 dot product and of a bf16 PyTorch model. Why: x is 8 KiB at K = 4096 instead of 16 KiB,
 * one x line per weight line instead of two (the f32 x is what holds the bf16 stream back, see docs/perf-log.md). A
 * bf16·bf16 product is exact in f32 (8 + 8 significant bits), so fused and unfused multiply-add give the same sums.
 * far = true (the option's kernel): row i with row i + ⌊rows/2⌋ per pass (two streams far apart), x loaded and
 * widened once for both rows, two accumulators per row (8 k per step); a leftover row alone, in the same order.
 * far = false (benchmarking variant `_r1`): the one-row f32-x kernel's structure (variant `_r1` there too), four
 * accumulators (16 k per step). Either way a row's sum does not depend on the split among threads or on its
 * partner. Measured under the bench lock (docs/perf-log.md): pairs cost ~25% less CPU per call than one row, on 1 thread
 * 2.0–2.2× the calls per CPU-second of the f32 GEMV, against 1.5–1.8 for one row.
 */
export function genGemvTBf16x(m: ModuleBuilder, fma: boolean, far = true, name = `gemv_t_bf16_xb${far ? '' : '_r1'}`): string {
  const madd = (a: Expr, b: Expr, acc: Expr) => (fma ? f32x4.relaxed_madd(a, b, acc) : f32x4.add(acc, f32x4.mul(a, b)));
  const R = far ? 2 : 1, ACC = far ? 2 : 4, STEP = far ? 8 : 16;
  m.func(name, ['i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32'], [], (f, _x, ldx, xd, w, bias, y, ldy, rows, K, M) => {
    const i = f.local('i32'), mm = f.local('i32'), k = f.local('i32');
    const xdp = f.local('i32');
    const rowIx = Array.from({ length: R }, () => f.local('i32'));
    const wps = Array.from({ length: R }, () => f.local('i32'));
    const acc = Array.from({ length: R }, () => Array.from({ length: ACC }, () => f.local('v128')));
    const xe = f.local('v128'), xo = f.local('v128');
    const s = f.local('f32');
    const rowBytes = f.local('i32', i32.shl(K, 1));
    const ldxb = f.local('i32', i32.shl(ldx, 1)), ldyb = f.local('i32', i32.shl(ldy, 2));
    const k16 = f.local('i32', i32.and(K, -16)), k4 = f.local('i32', i32.and(K, -4));
    const half = f.local('i32', far ? i32.shr_u(rows, 1) : rows); // passes over R rows
    const mask = v128.constI32(-65536, -65536, -65536, -65536);
    const pass = (count: number) => {
      for (let r = 0; r < count; r++) f.set(wps[r]!, i32.add(w, i32.mul(rowIx[r]!, rowBytes)));
      f.for(mm, 0, M, 1, () => {
        f.set(xdp, i32.add(xd, i32.mul(mm, ldxb)));
        for (let r = 0; r < count; r++) for (const a of acc[r]!) f.set(a, v128.zero());
        f.for(k, 0, k16, STEP, () => {
          for (let h = 0; h < STEP / 8; h++) {
            // Eight k: x widened once (even/odd elements), then each row's eight weights.
            const xr = f.local('v128', v128.load(i32.add(xdp, i32.shl(k, 1)), 16 * h, 0));
            f.set(xe, i32x4.shl(xr, 16));
            f.set(xo, v128.and(xr, mask));
            for (let r = 0; r < count; r++) {
              const raw = f.local('v128', v128.load(i32.add(wps[r]!, i32.shl(k, 1)), 16 * h, 0));
              const lo = acc[r]![(2 * h) % ACC]!, hi = acc[r]![(2 * h + 1) % ACC]!;
              f.set(lo, madd(i32x4.shl(raw, 16), xe, lo));
              f.set(hi, madd(v128.and(raw, mask), xo, hi));
            }
          }
        });
        for (let r = 0; r < count; r++) {
          const a = acc[r]!, a0 = a[0]!, wp = wps[r]!;
          f.set(a0, ACC === 4 ? f32x4.add(f32x4.add(a0, a[1]!), f32x4.add(a[2]!, a[3]!)) : f32x4.add(a0, a[1]!));
          f.for(k, k16, k4, 4, () => f.set(a0, madd(load4(f, i32.add(wp, i32.shl(k, 1)), 'bf16'), load4(f, i32.add(xdp, i32.shl(k, 1)), 'bf16'), a0)));
          f.set(s, hsum(a0));
          f.for(k, k4, K, 1, () => f.set(s, f32.add(s, f32.mul(load1(f, i32.add(xdp, i32.shl(k, 1)), 'bf16'), load1(f, i32.add(wp, i32.shl(k, 1)), 'bf16')))));
          f.if(i32.ne(bias, 0), () => f.set(s, f32.add(s, f32.load(i32.add(bias, i32.shl(rowIx[r]!, 2))))));
          f.f32_store(i32.add(y, i32.add(i32.mul(mm, ldyb), i32.shl(rowIx[r]!, 2))), s);
        }
      });
    };
    f.for(i, 0, half, 1, () => {
      f.set(rowIx[0]!, i);
      if (far) f.set(rowIx[1]!, i32.add(i, half));
      pass(R);
    });
    if (far) {
      f.for(i, i32.mul(half, 2), rows, 1, () => {
        f.set(rowIx[0]!, i);
        pass(1);
      });
    }
  });
  return name;
}
