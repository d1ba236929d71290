// Generated row kernels: the fused (modulated) layer/RMS norm and softmax.
//
// norm_<kind>(x, out, d, rows, eps, gamma, beta, dGamma, dgStride, dBeta, dbStride):
//   out = (gamma + dGamma_row) ⊙ norm(x_row) + (beta + dBeta_row), one pass to reduce and one to write.
//   Absent γ/β/Δγ/Δβ are passed as pointers to constant ones/zeros (Δ strides 0), so one kernel serves
//   layerNorm, rmsNorm and the ViLN modulated norm. Layer norm subtracts a pivot (the row's first value) before
//   summing, so rows far from zero (values ≈ 1e4) keep their precision in f32 (the reference is two-pass float64).
// softmax_rows(x, out, n, rows, mask, table, maskStride): max-subtracted softmax of each row, with an optional
//   additive mask row (table[r] = its element offset; maskStride 1 = contiguous, 0 = one broadcast value).
//   A row whose values are all −∞ becomes zeros.

import { f32, f32x4, i32, type Expr, type FnBuilder, type Local, type ModuleBuilder, v128 } from './emitter.js';
import { hsum } from './gen-gemv.js';
import { vexp } from './gen-math.js';

/** Runs `body(off, vec)` over [0, n) in steps of 4, then over the tail with splatted scalars (`vec = false`). */
export function rowLoop(f: FnBuilder, i: Local, n: Expr, n4: Local, body: (off: Expr, vec: boolean) => void): void {
  f.for(i, 0, n4, 4, () => body(i32.shl(i, 2), true));
  f.for(i, n4, n, 1, () => body(i32.shl(i, 2), false));
}

const ld = (p: Expr, off: Expr, vec: boolean): Expr => (vec ? v128.load(i32.add(p, off), 0, 0) : f32x4.splat(f32.load(i32.add(p, off))));

/** Horizontal max of the four lanes. */
function hmax(a: Expr, f: FnBuilder): Expr {
  const t = f.local('v128', f32x4.max(a, v128.shuffle32(a, a, [2, 3, 0, 1])));
  return f32.max(f32x4.extract_lane(t, 0), f32x4.extract_lane(t, 1));
}

export function genNorms(m: ModuleBuilder): void {
  for (const kind of ['layer', 'rms'] as const) {
    m.func(
      `norm_${kind}`,
      ['i32', 'i32', 'i32', 'i32', 'f32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32'],
      [],
      (f, x, out, d, rows, eps, gamma, beta, dGamma, dgStride, dBeta, dbStride) => {
        const r = f.local('i32'), i = f.local('i32');
        const xp = f.local('i32'), op = f.local('i32'), dg = f.local('i32'), db = f.local('i32');
        const n4 = f.local('i32', i32.and(d, -4));
        const acc = f.local('v128'), pivot = f.local('v128'), mean = f.local('v128'), inv = f.local('v128');
        const s = f.local('f32');
        const df = f.local('f32', f32.convert_i32_s(d));
        f.for(r, 0, rows, 1, () => {
          f.set(xp, i32.add(x, i32.shl(i32.mul(r, d), 2)));
          f.set(op, i32.add(out, i32.shl(i32.mul(r, d), 2)));
          f.set(dg, i32.add(dGamma, i32.shl(i32.mul(r, dgStride), 2)));
          f.set(db, i32.add(dBeta, i32.shl(i32.mul(r, dbStride), 2)));
          if (kind === 'layer') {
            f.set(pivot, f32x4.splat(f32.load(xp)));
            f.set(acc, v128.zero());
            f.set(s, 0);
            f.for(i, 0, n4, 4, () => f.set(acc, f32x4.add(acc, f32x4.sub(v128.load(i32.add(xp, i32.shl(i, 2)), 0, 0), pivot))));
            f.for(i, n4, d, 1, () => f.set(s, f32.add(s, f32.sub(f32.load(i32.add(xp, i32.shl(i, 2))), f32x4.extract_lane(pivot, 0)))));
            f.set(mean, f32x4.splat(f32.div(f32.add(hsum(acc), s), df))); // mean − pivot
            f.set(acc, v128.zero());
            f.set(s, 0);
            f.for(i, 0, n4, 4, () => {
              const c = f.local('v128', f32x4.sub(f32x4.sub(v128.load(i32.add(xp, i32.shl(i, 2)), 0, 0), pivot), mean));
              f.set(acc, f32x4.add(acc, f32x4.mul(c, c)));
            });
            f.for(i, n4, d, 1, () => {
              const c = f.local('f32', f32.sub(f32.sub(f32.load(i32.add(xp, i32.shl(i, 2))), f32x4.extract_lane(pivot, 0)), f32x4.extract_lane(mean, 0)));
              f.set(s, f32.add(s, f32.mul(c, c)));
            });
          } else {
            f.set(acc, v128.zero());
            f.set(s, 0);
            f.for(i, 0, n4, 4, () => {
              const v = f.local('v128', v128.load(i32.add(xp, i32.shl(i, 2)), 0, 0));
              f.set(acc, f32x4.add(acc, f32x4.mul(v, v)));
            });
            f.for(i, n4, d, 1, () => {
              const v = f.local('f32', f32.load(i32.add(xp, i32.shl(i, 2))));
              f.set(s, f32.add(s, f32.mul(v, v)));
            });
          }
          const variance = f32.div(f32.add(hsum(acc), s), df);
          f.set(inv, f32x4.splat(f32.div(f32.const(1), f32.sqrt(f32.add(variance, eps)))));
          rowLoop(f, i, d, n4, (off, vec) => {
            let c = ld(xp, off, vec);
            if (kind === 'layer') c = f32x4.sub(f32x4.sub(c, pivot), mean);
            const g = f32x4.add(ld(gamma, off, vec), ld(dg, off, vec));
            const b = f32x4.add(ld(beta, off, vec), ld(db, off, vec));
            const y = f32x4.add(f32x4.mul(g, f32x4.mul(c, inv)), b);
            if (vec) f.v128_store(i32.add(op, off), y, 0, 0);
            else f.f32_store(i32.add(op, off), f32x4.extract_lane(y, 0));
          });
        });
      },
    );
  }

  m.func('softmax_rows', ['i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32'], [], (f, x, out, n, rows, mask, table, maskStride) => {
    const r = f.local('i32'), i = f.local('i32');
    const xp = f.local('i32'), op = f.local('i32'), mp = f.local('i32');
    const n4 = f.local('i32', i32.and(n, -4));
    const mx = f.local('v128'), sum = f.local('v128'), mv = f.local('v128');
    const ms = f.local('f32'), ss = f.local('f32');
    f.for(r, 0, rows, 1, () => {
      f.set(xp, i32.add(x, i32.shl(i32.mul(r, n), 2)));
      f.set(op, i32.add(out, i32.shl(i32.mul(r, n), 2)));
      // Scores (x + mask) into out, and their max.
      f.set(mx, v128.constF32(-Infinity, -Infinity, -Infinity, -Infinity));
      f.if(
        i32.ne(mask, 0),
        () => {
          f.set(mp, i32.add(mask, i32.shl(i32.load(i32.add(table, i32.shl(r, 2))), 2)));
          f.if(
            maskStride,
            () =>
              rowLoop(f, i, n, n4, (off, vec) => {
                const sc = f.local('v128', f32x4.add(ld(xp, off, vec), ld(mp, off, vec)));
                if (vec) f.v128_store(i32.add(op, off), sc, 0, 0);
                else f.f32_store(i32.add(op, off), f32x4.extract_lane(sc, 0));
                f.set(mx, f32x4.max(mx, sc));
              }),
            () => {
              f.set(mv, f32x4.splat(f32.load(mp)));
              rowLoop(f, i, n, n4, (off, vec) => {
                const sc = f.local('v128', f32x4.add(ld(xp, off, vec), mv));
                if (vec) f.v128_store(i32.add(op, off), sc, 0, 0);
                else f.f32_store(i32.add(op, off), f32x4.extract_lane(sc, 0));
                f.set(mx, f32x4.max(mx, sc));
              });
            },
          );
        },
        () =>
          rowLoop(f, i, n, n4, (off, vec) => {
            const sc = f.local('v128', ld(xp, off, vec));
            if (vec) f.v128_store(i32.add(op, off), sc, 0, 0);
            else f.f32_store(i32.add(op, off), f32x4.extract_lane(sc, 0));
            f.set(mx, f32x4.max(mx, sc));
          }),
      );
      f.set(ms, hmax(mx, f));
      softmaxTail(f, op, n, n4, i, ms, sum, ss);
    });
  });
}

/**
 * In place over scores at `p` (n values, max `ms` already known): all −∞ → zeros; else exp(s − max), then divide
 * by the sum. Shared with attention.
 */
export function softmaxTail(f: FnBuilder, p: Local, n: Expr, n4: Local, i: Local, ms: Local, sum: Local, ss: Local): void {
  f.if(
    f32.eq(ms, f32.const(-Infinity)),
    () => rowLoop(f, i, n, n4, (off, vec) => (vec ? f.v128_store(i32.add(p, off), v128.zero(), 0, 0) : f.f32_store(i32.add(p, off), 0))),
    () => {
      const mv = f.local('v128', f32x4.splat(ms));
      f.set(sum, v128.zero());
      f.set(ss, 0);
      rowLoop(f, i, n, n4, (off, vec) => {
        const e = vexp(f, f32x4.sub(ld(p, off, vec), mv));
        if (vec) {
          f.v128_store(i32.add(p, off), e, 0, 0);
          f.set(sum, f32x4.add(sum, e));
        } else {
          const es = f32x4.extract_lane(e, 0);
          const l = f.local('f32', es);
          f.f32_store(i32.add(p, off), l);
          f.set(ss, f32.add(ss, l));
        }
      });
      const inv = f.local('v128', f32x4.splat(f32.div(f32.const(1), f32.add(hsum(sum), ss))));
      rowLoop(f, i, n, n4, (off, vec) => {
        if (vec) f.v128_store(i32.add(p, off), f32x4.mul(v128.load(i32.add(p, off), 0, 0), inv), 0, 0);
        else f.f32_store(i32.add(p, off), f32.mul(f32.load(i32.add(p, off)), f32x4.extract_lane(inv, 0)));
      });
    },
  );
}
