// Generated fused attention and rotary embedding.
//
// attention_rows(q, k, v, out, mask, scratch, B, Tq, S, Hq, Hkv, D, Dv, keyLength, qOffset, causal, scale,
//                ms0, ms1, ms2, ms3, r0, r1):
//   for output rows r0 ≤ r < r1 (r = (b·Tq + t)·Hq + h, the layout of out [B, Tq, Hq, Dv]):
//     scores_j = q·k_j · scale (+ mask[b·ms0 + h·ms1 + t·ms2 + j·ms3]) for the visible keys, four keys at a time
//     (four dot products, one transpose-add), into `scratch` (keyLength floats per thread);
//     softmax in place (vector exp); out = Σ_j p_j v_j, accumulated in registers 16 floats of Dv at a time.
//   Grouped-query heads: query head h reads kv head h / (Hq/Hkv). A row that sees no key is zeros.
// attention_heads(q, k, v, out, mask, scores, scratch, B, Tq, S, Hq, Hkv, D, Dv, keyLength, qOffset, causal,
//                 scale, ms0, ms1, ms2, ms3, u0, u1, tile):
//   the prefill form, for units u0 ≤ u < u1 (u = b·Hq + h): per tile of `tile` queries, scores = Q·Kᵀ and then
//   out = P·V with the packed GEMM (strided straight out of the token-major layout; `scratch` is the running
//   thread's GEMM scratch), scale/mask/causal applied to the score tile, softmax_rows in between. A causal tile
//   only multiplies against the keys its last query can see. `scores` holds tile·keyLength floats (per job).
// attention_groups(q, k, v, out, mask, scores, scratch, B, Tq, S, Hq, Hkv, D, Dv, keyLength, qOffset, causal,
//                  scale, ms0, ms1, ms2, ms3, u0, u1):
//   the decode form for grouped-query heads, for units u0 ≤ u < u1 (u = (b·Tq + t)·Hkv + kh): the query heads
//   that share kv head kh are adjacent rows in q and out, so scores = Q_group·Kᵀ and out = P·V are two small
//   packed GEMMs, and each key and value row is read once for the whole group instead of once per head.
// rope(x, out, cos, sin, rows, T, H, D, half, rotaryDim): rotate-half RoPE with cos/sin tables [T, half]
//   (angles computed on the host in float64); rows = B·T.

import { f32, f32x4, i32, i32x4, type Expr, type Local, type ModuleBuilder, v128 } from './emitter.js';
import { hsum, hsum4 } from './gen-gemv.js';
import { vexpNonPositive } from './gen-math.js';
import { rowLoop, softmaxTail } from './gen-norm.js';

export function genAttention(m: ModuleBuilder): void {
  const P = Array(23).fill('i32') as 'i32'[];
  const params = [...P.slice(0, 16), 'f32', ...P.slice(0, 6)] as ('i32' | 'f32')[];
  m.func('attention_rows', params, [], (f, q, k, v, out, mask, scratch, B, Tq, S, Hq, Hkv, D, Dv, keyLength, qOffset, causal, scale, ms0, ms1, ms2, ms3, r0, r1) => {
    const row = f.local('i32'), h = f.local('i32'), t = f.local('i32'), b = f.local('i32'), kh = f.local('i32');
    const visible = f.local('i32'), j = f.local('i32'), d = f.local('i32'), vis4 = f.local('i32');
    const qp = f.local('i32'), op = f.local('i32'), mp = f.local('i32'), kp = f.local('i32'), vp = f.local('i32');
    const kStride = f.local('i32', i32.shl(i32.mul(Hkv, D), 2)); // bytes between consecutive keys
    const vStride = f.local('i32', i32.shl(i32.mul(Hkv, Dv), 2));
    const group = f.local('i32', i32.div_s(Hq, Hkv));
    const D4 = f.local('i32', i32.and(D, -4));
    const Dv4 = f.local('i32', i32.and(Dv, -4));
    const Dv16 = f.local('i32', i32.and(Dv, -16));
    const a0 = f.local('v128'), a1 = f.local('v128'), a2 = f.local('v128'), a3 = f.local('v128');
    const qv = f.local('v128'), t0 = f.local('v128'), t1 = f.local('v128'), pv = f.local('v128');
    const ms = f.local('f32'), ss = f.local('f32'), sum = f.local('v128'), mx = f.local('v128'), sc = f.local('f32');
    const i = f.local('i32'), n4 = f.local('i32');
    const scaleV = f.local('v128', f32x4.splat(scale));
    const accs = [a0, a1, a2, a3];

    f.for(row, r0, r1, 1, () => {
      f.set(h, i32.rem_u(row, Hq));
      f.set(t, i32.rem_u(i32.div_u(row, Hq), Tq));
      f.set(b, i32.div_u(row, i32.mul(Hq, Tq)));
      f.set(kh, i32.div_u(h, group));
      f.set(visible, keyLength);
      f.if(causal, () => f.set(visible, i32.min_s(keyLength, i32.add(i32.add(qOffset, t), 1))));
      f.set(qp, i32.add(q, i32.shl(i32.mul(row, D), 2)));
      f.set(op, i32.add(out, i32.shl(i32.mul(row, Dv), 2)));
      const kRow = (jj: Expr | number) => i32.add(k, i32.add(i32.mul(i32.add(i32.mul(b, S), jj), kStride), i32.shl(i32.mul(kh, D), 2)));
      const vRow = (jj: Expr | number) => i32.add(v, i32.add(i32.mul(i32.add(i32.mul(b, S), jj), vStride), i32.shl(i32.mul(kh, Dv), 2)));

      // 1. Scores.
      f.set(vis4, select4(visible, D, D4));
      f.for(j, 0, vis4, 4, () => {
        f.set(kp, kRow(j));
        for (const a of accs) f.set(a, v128.zero());
        f.for(d, 0, D4, 4, () => {
          const off = i32.shl(d, 2);
          f.set(qv, v128.load(i32.add(qp, off), 0, 0));
          for (let u = 0; u < 4; u++) {
            f.set(accs[u]!, f32x4.add(accs[u]!, f32x4.mul(qv, v128.load(i32.add(i32.add(kp, i32.mul(kStride, u)), off), 0, 0))));
          }
        });
        f.v128_store(i32.add(scratch, i32.shl(j, 2)), f32x4.mul(hsum4(a0, a1, a2, a3, [t0, t1])(f), scaleV), 0, 0);
      });
      f.for(j, vis4, visible, 1, () => {
        f.set(kp, kRow(j));
        f.set(a0, v128.zero());
        f.for(d, 0, D4, 4, () => {
          const off = i32.shl(d, 2);
          f.set(a0, f32x4.add(a0, f32x4.mul(v128.load(i32.add(qp, off), 0, 0), v128.load(i32.add(kp, off), 0, 0))));
        });
        f.set(sc, hsum(a0));
        f.for(d, D4, D, 1, () => f.set(sc, f32.add(sc, f32.mul(f32.load(i32.add(qp, i32.shl(d, 2))), f32.load(i32.add(kp, i32.shl(d, 2)))))));
        f.f32_store(i32.add(scratch, i32.shl(j, 2)), f32.mul(sc, scale));
      });
      f.if(i32.ne(mask, 0), () => {
        f.set(mp, i32.add(mask, i32.shl(i32.add(i32.add(i32.mul(b, ms0), i32.mul(h, ms1)), i32.mul(t, ms2)), 2)));
        f.for(j, 0, visible, 1, () => {
          const sp = i32.add(scratch, i32.shl(j, 2));
          f.f32_store(sp, f32.add(f32.load(sp), f32.load(i32.add(mp, i32.shl(i32.mul(j, ms3), 2)))));
        });
      });

      // 2. Softmax over the visible scores (an empty or all-masked row gives p = 0 → zeros below).
      f.set(n4, i32.and(visible, -4));
      f.set(mx, v128.constF32(-Infinity, -Infinity, -Infinity, -Infinity));
      rowLoop(f, i, visible, n4, (off, vec) => {
        const x = vec ? v128.load(i32.add(scratch, off), 0, 0) : f32x4.splat(f32.load(i32.add(scratch, off)));
        f.set(mx, f32x4.max(mx, x));
      });
      {
        const tt = f.local('v128', f32x4.max(mx, v128.shuffle32(mx, mx, [2, 3, 0, 1])));
        f.set(ms, f32.max(f32x4.extract_lane(tt, 0), f32x4.extract_lane(tt, 1)));
      }
      softmaxTail(f, scratch, visible, n4, i, ms, sum, ss);

      // 3. out = Σ p_j v_j: 16 floats of Dv in registers at a time, then 4, then scalars.
      f.for(d, 0, Dv16, 16, () => {
        for (const a of accs) f.set(a, v128.zero());
        f.set(vp, i32.add(vRow(0), i32.shl(d, 2)));
        f.for(j, 0, visible, 1, () => {
          f.set(pv, v128.load32_splat(i32.add(scratch, i32.shl(j, 2))));
          for (let u = 0; u < 4; u++) f.set(accs[u]!, f32x4.add(accs[u]!, f32x4.mul(pv, v128.load(vp, u * 16, 0))));
          f.inc(vp, vStride);
        });
        for (let u = 0; u < 4; u++) f.v128_store(i32.add(op, i32.shl(d, 2)), accs[u]!, u * 16, 0);
      });
      f.for(d, Dv16, Dv4, 4, () => {
        f.set(a0, v128.zero());
        f.set(vp, i32.add(vRow(0), i32.shl(d, 2)));
        f.for(j, 0, visible, 1, () => {
          f.set(a0, f32x4.add(a0, f32x4.mul(v128.load32_splat(i32.add(scratch, i32.shl(j, 2))), v128.load(vp, 0, 0))));
          f.inc(vp, vStride);
        });
        f.v128_store(i32.add(op, i32.shl(d, 2)), a0, 0, 0);
      });
      f.for(d, Dv4, Dv, 1, () => {
        f.set(sc, 0);
        f.set(vp, i32.add(vRow(0), i32.shl(d, 2)));
        f.for(j, 0, visible, 1, () => {
          f.set(sc, f32.add(sc, f32.mul(f32.load(i32.add(scratch, i32.shl(j, 2))), f32.load(vp))));
          f.inc(vp, vStride);
        });
        f.f32_store(i32.add(op, i32.shl(d, 2)), sc);
      });
      // A row with no visible key: zeros (the loops above did not run).
      f.if(i32.le_s(visible, 0), () => {
        f.for(d, 0, Dv, 1, () => f.f32_store(i32.add(op, i32.shl(d, 2)), 0));
      });
    });
  });

  genAttentionHeads(m);
  genAttentionGroups(m);

  m.func('rope', ['i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32'], [], (f, x, out, cos, sin, rows, T, H, D, half, rot) => {
    const r = f.local('i32'), hh = f.local('i32'), i = f.local('i32'), t = f.local('i32');
    const base = f.local('i32'), cp = f.local('i32'), sp = f.local('i32'), xp = f.local('i32'), op = f.local('i32');
    const h4 = f.local('i32', i32.and(half, -4));
    const halfB = f.local('i32', i32.shl(half, 2));
    const x1 = f.local('v128'), x2 = f.local('v128'), c = f.local('v128'), s = f.local('v128');
    f.for(r, 0, rows, 1, () => {
      f.set(t, i32.rem_u(r, T));
      f.set(cp, i32.add(cos, i32.shl(i32.mul(t, half), 2)));
      f.set(sp, i32.add(sin, i32.shl(i32.mul(t, half), 2)));
      f.for(hh, 0, H, 1, () => {
        f.set(base, i32.shl(i32.mul(i32.add(i32.mul(r, H), hh), D), 2));
        f.set(xp, i32.add(x, base));
        f.set(op, i32.add(out, base));
        rowLoop(f, i, half, h4, (off, vec) => {
          const ld = (p: Expr, o = 0) => (vec ? v128.load(i32.add(p, off), o, 0) : f32x4.splat(f32.load(i32.add(p, off), o)));
          f.set(x1, ld(xp));
          f.set(x2, ld(i32.add(xp, halfB)));
          f.set(c, ld(cp));
          f.set(s, ld(sp));
          const y1 = f32x4.sub(f32x4.mul(x1, c), f32x4.mul(x2, s));
          const y2 = f32x4.add(f32x4.mul(x2, c), f32x4.mul(x1, s));
          if (vec) {
            f.v128_store(i32.add(op, off), y1, 0, 0);
            f.v128_store(i32.add(i32.add(op, halfB), off), y2, 0, 0);
          } else {
            f.f32_store(i32.add(op, off), f32x4.extract_lane(y1, 0));
            f.f32_store(i32.add(i32.add(op, halfB), off), f32x4.extract_lane(y2, 0));
          }
        });
        f.for(i, rot, D, 1, () => f.f32_store(i32.add(op, i32.shl(i, 2)), f32.load(i32.add(xp, i32.shl(i, 2)))));
      });
    });
  });
}

/** Keys handled four at a time: all visible keys rounded down to 4 when D is a multiple of 4, else none. */
function select4(visible: Local, D: Local, D4: Local): Expr {
  return i32.and(i32.and(visible, -4), i32.sub(0, i32.eq(D, D4)));
}

function genAttentionHeads(m: ModuleBuilder): void {
  const gemm = m.indexOf('gemm');
  const softmax = m.indexOf('softmax_rows');
  const P = Array(26).fill('i32') as ('i32' | 'f32')[];
  P[17] = 'f32';
  m.func('attention_heads', P, [], (f, q, k, v, out, mask, scores, scratch, B, Tq, S, Hq, Hkv, D, Dv, keyLength, qOffset, causal, scale, ms0, ms1, ms2, ms3, u0, u1, tile) => {
    const u = f.local('i32'), b = f.local('i32'), h = f.local('i32'), kh = f.local('i32'), t0 = f.local('i32'), tn = f.local('i32');
    const t = f.local('i32'), j = f.local('i32'), row = f.local('i32'), mp = f.local('i32'), lim = f.local('i32');
    const group = f.local('i32', i32.div_s(Hq, Hkv));
    const scaleV = f.local('v128', f32x4.splat(scale));
    const n4 = f.local('i32'), kv = f.local('i32');
    const qBase = f.local('i32'), kBase = f.local('i32'), vBase = f.local('i32'), oBase = f.local('i32');
    f.for(u, u0, u1, 1, () => {
      f.set(b, i32.div_u(u, Hq));
      f.set(h, i32.rem_u(u, Hq));
      f.set(kh, i32.div_u(h, group));
      f.set(kBase, i32.add(k, i32.shl(i32.add(i32.mul(i32.mul(b, S), i32.mul(Hkv, D)), i32.mul(kh, D)), 2)));
      f.set(vBase, i32.add(v, i32.shl(i32.add(i32.mul(i32.mul(b, S), i32.mul(Hkv, Dv)), i32.mul(kh, Dv)), 2)));
      f.set(t0, 0);
      f.while(() => i32.lt_s(t0, Tq), () => {
        f.set(tn, i32.min_s(tile, i32.sub(Tq, t0)));
        f.set(qBase, i32.add(q, i32.shl(i32.add(i32.mul(i32.add(i32.mul(b, Tq), t0), i32.mul(Hq, D)), i32.mul(h, D)), 2)));
        f.set(oBase, i32.add(out, i32.shl(i32.add(i32.mul(i32.add(i32.mul(b, Tq), t0), i32.mul(Hq, Dv)), i32.mul(h, Dv)), 2)));
        // Keys this tile can see: all, or (causal) up to the last query's position.
        f.set(kv, keyLength);
        f.if(causal, () => f.set(kv, i32.min_s(keyLength, i32.add(qOffset, i32.add(t0, tn)))));
        f.set(n4, i32.and(kv, -4));
        // scores[tn, kv] = Q_tile · Kᵀ (zeros when D = 0: the GEMM needs K ≥ 1).
        f.if(
          i32.gt_s(D, 0),
          () => f.call(gemm, [qBase, i32.mul(Hq, D), kBase, i32.mul(Hkv, D), 1, 0, scores, kv, 0, tn, kv, D, scratch]),
          () => f.for(j, 0, i32.mul(tn, kv), 1, () => f.f32_store(i32.add(scores, i32.shl(j, 2)), 0)),
        );
        // Scale, mask, causal limit.
        f.for(t, 0, tn, 1, () => {
          f.set(row, i32.add(scores, i32.shl(i32.mul(t, kv), 2)));
          f.for(j, 0, n4, 4, () => {
            const a = i32.add(row, i32.shl(j, 2));
            f.v128_store(a, f32x4.mul(v128.load(a, 0, 0), scaleV), 0, 0);
          });
          f.for(j, n4, kv, 1, () => {
            const a = i32.add(row, i32.shl(j, 2));
            f.f32_store(a, f32.mul(f32.load(a), scale));
          });
          f.if(i32.ne(mask, 0), () => {
            f.set(mp, i32.add(mask, i32.shl(i32.add(i32.add(i32.mul(b, ms0), i32.mul(h, ms1)), i32.mul(i32.add(t0, t), ms2)), 2)));
            f.for(j, 0, kv, 1, () => {
              const a = i32.add(row, i32.shl(j, 2));
              f.f32_store(a, f32.add(f32.load(a), f32.load(i32.add(mp, i32.shl(i32.mul(j, ms3), 2)))));
            });
          });
          f.if(causal, () => {
            f.set(lim, i32.add(i32.add(qOffset, i32.add(t0, t)), 1));
            f.for(j, lim, kv, 1, () => f.f32_store(i32.add(row, i32.shl(j, 2)), f32.const(-Infinity)));
          });
        });
        f.call(softmax, [scores, scores, kv, tn, 0, 0, 0]);
        // out_tile = P · V (zeros when there are no keys).
        f.if(
          i32.gt_s(kv, 0),
          () => f.call(gemm, [scores, kv, vBase, i32.mul(Hkv, Dv), 0, 0, oBase, i32.mul(Hq, Dv), 0, tn, Dv, kv, scratch]),
          () => {
            f.for(t, 0, tn, 1, () => {
              f.for(j, 0, Dv, 1, () => f.f32_store(i32.add(oBase, i32.shl(i32.add(i32.mul(t, i32.mul(Hq, Dv)), j), 2)), 0));
            });
          },
        );
        f.inc(t0, tile);
      });
    });
  });
}

function genAttentionGroups(m: ModuleBuilder): void {
  const gemm = m.indexOf('gemm');
  const softmax = m.indexOf('softmax_rows');
  const P = Array(25).fill('i32') as ('i32' | 'f32')[];
  P[17] = 'f32';
  m.func('attention_groups', P, [], (f, q, k, v, out, mask, scores, scratch, B, Tq, S, Hq, Hkv, D, Dv, keyLength, qOffset, causal, scale, ms0, ms1, ms2, ms3, u0, u1) => {
    const u = f.local('i32'), b = f.local('i32'), t = f.local('i32'), kh = f.local('i32'), i = f.local('i32'), j = f.local('i32');
    const row = f.local('i32'), mp = f.local('i32'), kv = f.local('i32'), n4 = f.local('i32');
    const group = f.local('i32', i32.div_s(Hq, Hkv));
    const scaleV = f.local('v128', f32x4.splat(scale));
    const qBase = f.local('i32'), kBase = f.local('i32'), vBase = f.local('i32'), oBase = f.local('i32');
    f.for(u, u0, u1, 1, () => {
      f.set(kh, i32.rem_u(u, Hkv));
      f.set(t, i32.rem_u(i32.div_u(u, Hkv), Tq));
      f.set(b, i32.div_u(u, i32.mul(Hkv, Tq)));
      // Rows of this group: heads kh·group … kh·group + group − 1 at query t.
      const headRow = i32.add(i32.mul(i32.add(i32.mul(b, Tq), t), Hq), i32.mul(kh, group));
      f.set(qBase, i32.add(q, i32.shl(i32.mul(headRow, D), 2)));
      f.set(oBase, i32.add(out, i32.shl(i32.mul(headRow, Dv), 2)));
      f.set(kBase, i32.add(k, i32.shl(i32.add(i32.mul(i32.mul(b, S), i32.mul(Hkv, D)), i32.mul(kh, D)), 2)));
      f.set(vBase, i32.add(v, i32.shl(i32.add(i32.mul(i32.mul(b, S), i32.mul(Hkv, Dv)), i32.mul(kh, Dv)), 2)));
      f.set(kv, keyLength);
      f.if(causal, () => f.set(kv, i32.min_s(keyLength, i32.add(i32.add(qOffset, t), 1))));
      f.set(n4, i32.and(kv, -4));
      f.if(
        i32.gt_s(D, 0),
        () => f.call(gemm, [qBase, D, kBase, i32.mul(Hkv, D), 1, 0, scores, kv, 0, group, kv, D, scratch]),
        () => f.for(j, 0, i32.mul(group, kv), 1, () => f.f32_store(i32.add(scores, i32.shl(j, 2)), 0)),
      );
      f.for(i, 0, group, 1, () => {
        f.set(row, i32.add(scores, i32.shl(i32.mul(i, kv), 2)));
        f.for(j, 0, n4, 4, () => {
          const a = i32.add(row, i32.shl(j, 2));
          f.v128_store(a, f32x4.mul(v128.load(a, 0, 0), scaleV), 0, 0);
        });
        f.for(j, n4, kv, 1, () => {
          const a = i32.add(row, i32.shl(j, 2));
          f.f32_store(a, f32.mul(f32.load(a), scale));
        });
        f.if(i32.ne(mask, 0), () => {
          const h = i32.add(i32.mul(kh, group), i);
          f.set(mp, i32.add(mask, i32.shl(i32.add(i32.add(i32.mul(b, ms0), i32.mul(h, ms1)), i32.mul(t, ms2)), 2)));
          f.for(j, 0, kv, 1, () => {
            const a = i32.add(row, i32.shl(j, 2));
            f.f32_store(a, f32.add(f32.load(a), f32.load(i32.add(mp, i32.shl(i32.mul(j, ms3), 2)))));
          });
        });
      });
      f.call(softmax, [scores, scores, kv, group, 0, 0, 0]);
      f.if(
        i32.gt_s(kv, 0),
        () => f.call(gemm, [scores, kv, vBase, i32.mul(Hkv, Dv), 0, 0, oBase, Dv, 0, group, Dv, kv, scratch]),
        () => f.for(j, 0, i32.mul(group, Dv), 1, () => f.f32_store(i32.add(oBase, i32.shl(j, 2)), 0)),
      );
    });
  });
}

/**
 * attention_kv1_<f32|bf16>(q, k, v, out, scratch, keyLength, D, Dv, kStride, vStride, scale, h0, h1, kHStride, vHStride):
 *   the decode form for one query row over many keys with as many kv heads as query heads (LaVi's conditioners:
 *   one token's q over an image's K/U), for heads h0 ≤ h < h1. q points at the row [H, D] (f32), out at [H, Dv];
 *   k and v at key 0 of head 0 in f32 or bf16, kStride/vStride bytes between keys and kHStride/vHStride between
 *   heads: token-major [keys, H, D] (stride D, head stride D·bytes) or head-major [H, keys, D] (key stride D·bytes,
 *   head stride keys·D·bytes: each head's keys one contiguous run, which streams from DRAM about twice as fast).
 *   Every loop walks the keys in order and reads each key's heads h0..h1 as one contiguous run, so K and U stream
 *   like a GEMV's weight rows (the row kernel walks one head at a time, 64 bytes per 2 KiB stride, ~10 GB/s).
 *   bf16 is widened in registers as the bf16 GEMV does: shl 16 gives the even elements, and 0xffff0000 the odd,
 *   so q is split even/odd once (into scratch), P·V accumulates even/odd in `out` and is interleaved at the end.
 *   1. scores over four keys at a time (scratch[(h − h0)·kl + j], kl = keyLength rounded up to 4), scaled;
 *   2. softmax per head; 3. out = Σ_j p_j v_j, four keys per pass, accumulated in `out` (L1).
 *   D and Dv must be multiples of 8. `scratch` holds (h1 − h0)·(kl + D) floats.
 */
export function genAttentionKV1(m: ModuleBuilder, dt: 'f32' | 'bf16', fma: boolean): void {
  const madd = (a: Expr, b: Expr, acc: Expr) => (fma ? f32x4.relaxed_madd(a, b, acc) : f32x4.add(acc, f32x4.mul(a, b)));
  const eb = dt === 'bf16' ? 2 : 4;
  const params = ['i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'f32', 'i32', 'i32', 'i32', 'i32'] as ('i32' | 'f32')[];
  m.func(`attention_kv1_${dt}`, params, [], (f, q, k, v, out, scratch, keyLength, D, Dv, kStride, vStride, scale, h0, h1, kHStride, vHStride) => {
    const h = f.local('i32'), j = f.local('i32'), d = f.local('i32'), i = f.local('i32'), n4 = f.local('i32');
    const kl = f.local('i32', i32.and(i32.add(keyLength, 3), -4));
    const kl4 = f.local('i32', i32.and(keyLength, -4));
    const nh = f.local('i32', i32.sub(h1, h0));
    const qs = f.local('i32', i32.add(scratch, i32.shl(i32.mul(nh, kl), 2))); // q (even/odd split for bf16)
    const kp = f.local('i32'), vp = f.local('i32'), sp = f.local('i32'), op = f.local('i32'), kh = f.local('i32');
    const a0 = f.local('v128'), a1 = f.local('v128'), a2 = f.local('v128'), a3 = f.local('v128');
    const t0 = f.local('v128'), t1 = f.local('v128'), qe = f.local('v128'), qo = f.local('v128');
    const r0 = f.local('v128'), r1 = f.local('v128'), p0 = f.local('v128'), p1 = f.local('v128');
    const ms = f.local('f32'), ss = f.local('f32'), sum = f.local('v128'), mx = f.local('v128');
    const scaleV = f.local('v128', f32x4.splat(scale));
    const HI = v128.constI32(-65536, -65536, -65536, -65536);
    const accs = [a0, a1, a2, a3];
    // Second accumulators (odd / upper halves), so the score loop keeps eight independent FMA chains in flight.
    const b0 = f.local('v128'), b1 = f.local('v128'), b2 = f.local('v128'), b3 = f.local('v128');
    const accs2 = [b0, b1, b2, b3];
    // Widened 8 values at `addr`: [even, odd] for bf16, [first 4, last 4] for f32.
    const lo = (raw: Expr) => (dt === 'bf16' ? i32x4.shl(raw, 16) : raw);
    const hi = (raw: Expr) => (dt === 'bf16' ? v128.and(raw, HI) : raw);

    // 0. q rows h0..h1 into scratch (bf16: per 8 values, the 4 even then the 4 odd).
    f.for(h, 0, nh, 1, () => {
      f.for(d, 0, D, 8, () => {
        const src = i32.add(q, i32.shl(i32.add(i32.mul(i32.add(h0, h), D), d), 2));
        const dst = i32.add(qs, i32.shl(i32.add(i32.mul(h, D), d), 2));
        f.set(r0, v128.load(src, 0, 0));
        f.set(r1, v128.load(src, 16, 0));
        if (dt === 'bf16') {
          f.v128_store(dst, v128.shuffle32(r0, r1, [0, 2, 4, 6]), 0, 0);
          f.v128_store(dst, v128.shuffle32(r0, r1, [1, 3, 5, 7]), 16, 0);
        } else {
          f.v128_store(dst, r0, 0, 0);
          f.v128_store(dst, r1, 16, 0);
        }
      });
    });

    // 1. Scores, four keys at a time: each key's heads h0..h1 are one contiguous run.
    const kS2 = f.local('i32', i32.shl(kStride, 1)), kS3 = f.local('i32', i32.mul(kStride, 3));
    const kOff = [null, kStride, kS2, kS3];
    const kd = f.local('i32'), qd = f.local('i32'), qEnd = f.local('i32');
    const score1 = (nk: number) => {
      f.set(sp, i32.add(scratch, i32.shl(j, 2)));
      f.set(kh, i32.add(kp, i32.mul(h0, kHStride)));
      f.set(qd, qs);
      f.for(h, 0, nh, 1, () => {
        for (let u = 0; u < nk; u++) f.set(accs[u]!, v128.zero()), f.set(accs2[u]!, v128.zero());
        f.set(kd, kh);
        f.set(qEnd, i32.add(qd, i32.shl(D, 2)));
        f.loop(() => {
          f.set(qe, v128.load(qd, 0, 0));
          f.set(qo, v128.load(qd, 16, 0));
          for (let u = 0; u < nk; u++) {
            const addr = u === 0 ? kd : i32.add(kd, kOff[u]!);
            if (dt === 'bf16') {
              f.set(r0, v128.load(addr, 0, 0));
              f.set(accs[u]!, madd(lo(r0), qe, accs[u]!));
              f.set(accs2[u]!, madd(hi(r0), qo, accs2[u]!));
            } else {
              f.set(accs[u]!, madd(v128.load(addr, 0, 0), qe, accs[u]!));
              f.set(accs2[u]!, madd(v128.load(addr, 16, 0), qo, accs2[u]!));
            }
          }
          f.inc(kd, 8 * eb);
          f.inc(qd, 32);
          f.brIf(0, i32.lt_u(qd, qEnd));
        });
        f.set(kh, i32.add(kh, kHStride));
        for (let u = 0; u < nk; u++) f.set(accs[u]!, f32x4.add(accs[u]!, accs2[u]!));
        if (nk === 4) f.v128_store(sp, f32x4.mul(hsum4(a0, a1, a2, a3, [t0, t1])(f), scaleV), 0, 0);
        else f.f32_store(sp, f32.mul(hsum(a0), scale));
        f.inc(sp, i32.shl(kl, 2));
      });
    };
    f.set(kp, k);
    f.for(j, 0, kl4, 4, () => {
      score1(4);
      f.inc(kp, i32.shl(kStride, 2));
    });
    f.for(j, kl4, keyLength, 1, () => {
      score1(1);
      f.inc(kp, kStride);
    });

    // 2. Softmax of each head's scores.
    f.set(n4, kl4);
    f.for(h, 0, nh, 1, () => {
      f.set(sp, i32.add(scratch, i32.shl(i32.mul(h, kl), 2)));
      f.set(mx, v128.constF32(-Infinity, -Infinity, -Infinity, -Infinity));
      rowLoop(f, i, keyLength, n4, (off, vec) => {
        const x = vec ? v128.load(i32.add(sp, off), 0, 0) : f32x4.splat(f32.load(i32.add(sp, off)));
        f.set(mx, f32x4.max(mx, x));
      });
      f.set(t0, f32x4.max(mx, v128.shuffle32(mx, mx, [2, 3, 0, 1])));
      f.set(ms, f32.max(f32x4.extract_lane(t0, 0), f32x4.extract_lane(t0, 1)));
      softmaxTail(f, sp, keyLength, n4, i, ms, sum, ss);
    });

    // 3. out = Σ_j p_j v_j, four keys per pass, accumulated in out (even/odd for bf16).
    f.for(h, 0, nh, 1, () => {
      f.set(op, i32.add(out, i32.shl(i32.mul(i32.add(h0, h), Dv), 2)));
      f.for(d, 0, Dv, 4, () => f.v128_store(i32.add(op, i32.shl(d, 2)), v128.zero(), 0, 0));
    });
    const vd = f.local('i32'), vEnd = f.local('i32');
    const p2 = f.local('v128'), p3 = f.local('v128'), r2 = f.local('v128'), r3 = f.local('v128');
    const vS2 = f.local('i32', i32.shl(vStride, 1)), vS3 = f.local('i32', i32.mul(vStride, 3));
    const ps = [p0, p1, p2, p3], rs = [r0, r1, r2, r3], vOff = [null, vStride, vS2, vS3];
    const pv = (nk: number) => {
      f.set(sp, i32.add(scratch, i32.shl(j, 2)));
      f.set(kh, i32.add(vp, i32.mul(h0, vHStride)));
      f.set(op, i32.add(out, i32.shl(i32.mul(h0, Dv), 2)));
      f.for(h, 0, nh, 1, () => {
        for (let u = 0; u < nk; u++) f.set(ps[u]!, v128.load32_splat(sp, 4 * u, 0));
        f.set(vd, kh);
        f.set(vEnd, i32.add(op, i32.shl(Dv, 2)));
        f.loop(() => {
          const o = op;
          const at = (u: number) => (u === 0 ? vd : i32.add(vd, vOff[u]!));
          if (dt === 'bf16') {
            for (let u = 0; u < nk; u++) f.set(rs[u]!, v128.load(at(u), 0, 0));
            let e = v128.load(o, 0, 0);
            for (let u = 0; u < nk; u++) e = madd(lo(rs[u]!), ps[u]!, e);
            f.v128_store(o, e, 0, 0);
            let od = v128.load(o, 16, 0);
            for (let u = 0; u < nk; u++) od = madd(hi(rs[u]!), ps[u]!, od);
            f.v128_store(o, od, 16, 0);
          } else {
            let e = v128.load(o, 0, 0);
            for (let u = 0; u < nk; u++) e = madd(v128.load(at(u), 0, 0), ps[u]!, e);
            f.v128_store(o, e, 0, 0);
            let od = v128.load(o, 16, 0);
            for (let u = 0; u < nk; u++) od = madd(v128.load(at(u), 16, 0), ps[u]!, od);
            f.v128_store(o, od, 16, 0);
          }
          f.inc(vd, 8 * eb);
          f.inc(op, 32);
          f.brIf(0, i32.lt_u(op, vEnd));
        });
        f.set(kh, i32.add(kh, vHStride));
        f.inc(sp, i32.shl(kl, 2));
      });
    };
    f.set(vp, v);
    f.for(j, 0, kl4, 4, () => {
      pv(4);
      f.inc(vp, i32.shl(vStride, 2));
    });
    f.for(j, kl4, keyLength, 1, () => {
      pv(1);
      f.inc(vp, vStride);
    });

    // bf16: interleave the even/odd halves of every 8 outputs back into order.
    if (dt === 'bf16') {
      f.for(h, 0, nh, 1, () => {
        f.set(op, i32.add(out, i32.shl(i32.mul(i32.add(h0, h), Dv), 2)));
        f.for(d, 0, Dv, 8, () => {
          const o = i32.add(op, i32.shl(d, 2));
          f.set(r0, v128.load(o, 0, 0));
          f.set(r1, v128.load(o, 16, 0));
          f.v128_store(o, v128.shuffle32(r0, r1, [0, 4, 1, 5]), 0, 0);
          f.v128_store(o, v128.shuffle32(r0, r1, [2, 6, 3, 7]), 16, 0);
        });
      });
    }
  });
}

/**
 * attention_kv1d8_<f32|bf16>(q, k, v, out, scratch, keyLength, kStride, vStride, scale, h0, h1, kHStride, vHStride):
 *   attention_kv1 for heads of 8 (D = Dv = 8: the presets' conditioners, r/H = 8), same arguments less D and Dv.
 *   A key of one head is 8 values (one v128 of bf16, two of f32), so the generic kernel's per-(key block, head)
 *   loop set-up, its `out` reloads and its separate softmax passes cost more than the arithmetic. Here each head
 *   runs alone: q (pre-scaled) stays in two registers; pass 1 writes four scores per step (hsum4) and keeps their
 *   running max; pass 2 takes exp of four scores at a time, sums them and accumulates p·v in four registers
 *   (two chains), normalising once at the end. `scratch` holds (keyLength rounded up to 4) floats.
 */
export function genAttentionKV1D8(m: ModuleBuilder, dt: 'f32' | 'bf16', fma: boolean): void {
  const madd = (a: Expr, b: Expr, acc: Expr) => (fma ? f32x4.relaxed_madd(a, b, acc) : f32x4.add(acc, f32x4.mul(a, b)));
  const params = ['i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'f32', 'i32', 'i32', 'i32', 'i32'] as ('i32' | 'f32')[];
  m.func(`attention_kv1d8_${dt}`, params, [], (f, q, k, v, out, scratch, keyLength, kStride, vStride, scale, h0, h1, kHStride, vHStride) => {
    const h = f.local('i32'), j = f.local('i32'), kp = f.local('i32'), vp = f.local('i32'), sp = f.local('i32');
    const kl4 = f.local('i32', i32.and(keyLength, -4));
    const qe = f.local('v128'), qo = f.local('v128'), mx = f.local('v128'), sum = f.local('v128'), msv = f.local('v128');
    const r = [f.local('v128'), f.local('v128'), f.local('v128'), f.local('v128')];
    const a = [f.local('v128'), f.local('v128'), f.local('v128'), f.local('v128')];
    const t0 = f.local('v128'), t1 = f.local('v128'), s = f.local('v128');
    const e0 = f.local('v128'), o0 = f.local('v128'), e1 = f.local('v128'), o1 = f.local('v128');
    const ms = f.local('f32'), ss = f.local('f32'), inv = f.local('v128');
    const scaleV = f.local('v128', f32x4.splat(scale));
    const HI = v128.constI32(-65536, -65536, -65536, -65536);
    const kS2 = f.local('i32', i32.shl(kStride, 1)), kS3 = f.local('i32', i32.mul(kStride, 3));
    const vS2 = f.local('i32', i32.shl(vStride, 1)), vS3 = f.local('i32', i32.mul(vStride, 3));
    const at = (p: Local, u: number, s1: Local, s2: Local, s3: Local) => (u === 0 ? p : i32.add(p, [s1, s1, s2, s3][u]!));
    // One key's 8 values at addr as two vectors: bf16 [even, odd] (widened in registers), f32 [first 4, last 4].
    const lo = (addr: Expr, raw: Local) => (dt === 'bf16' ? (f.set(raw, v128.load(addr, 0, 0)), i32x4.shl(raw, 16)) : v128.load(addr, 0, 0));
    const hi = (addr: Expr, raw: Local) => (dt === 'bf16' ? v128.and(raw, HI) : v128.load(addr, 16, 0));
    const dot = (addr: Expr, u: number) => {
      const l = lo(addr, r[u]!);
      return madd(hi(addr, r[u]!), qo, f32x4.mul(l, qe));
    };
    const pu = f.local('v128');
    const pv = (addr: Expr, u: number, p: Expr, ev: Local, od: Local) => {
      f.set(pu, p); // p's lane u broadcast once for both halves
      const l = lo(addr, r[u]!);
      f.set(ev, madd(l, pu, ev));
      f.set(od, madd(hi(addr, r[u]!), pu, od));
    };

    f.for(h, h0, h1, 1, () => {
      // q of head h, scaled, split as the keys are.
      f.set(t0, f32x4.mul(v128.load(i32.add(q, i32.shl(h, 5)), 0, 0), scaleV));
      f.set(t1, f32x4.mul(v128.load(i32.add(q, i32.shl(h, 5)), 16, 0), scaleV));
      f.set(qe, dt === 'bf16' ? v128.shuffle32(t0, t1, [0, 2, 4, 6]) : t0);
      f.set(qo, dt === 'bf16' ? v128.shuffle32(t0, t1, [1, 3, 5, 7]) : t1);

      // 1. Scores and their running max.
      f.set(kp, i32.add(k, i32.mul(h, kHStride)));
      f.set(sp, scratch);
      f.set(mx, v128.constF32(-Infinity, -Infinity, -Infinity, -Infinity));
      f.for(j, 0, kl4, 4, () => {
        for (let u = 0; u < 4; u++) f.set(a[u]!, dot(at(kp, u, kStride, kS2, kS3), u));
        f.set(s, hsum4(a[0]!, a[1]!, a[2]!, a[3]!, [t0, t1])(f));
        f.v128_store(sp, s, 0, 0);
        f.set(mx, f32x4.max(mx, s));
        f.inc(sp, 16);
        f.set(kp, i32.add(kp, i32.shl(kStride, 2)));
      });
      f.for(j, kl4, keyLength, 1, () => {
        f.set(a[0]!, dot(kp, 0));
        f.set(s, f32x4.splat(hsum(a[0]!)));
        f.f32_store(sp, f32x4.extract_lane(s, 0));
        f.set(mx, f32x4.max(mx, s));
        f.inc(sp, 4);
        f.set(kp, i32.add(kp, kStride));
      });
      f.set(t0, f32x4.max(mx, v128.shuffle32(mx, mx, [2, 3, 0, 1])));
      f.set(ms, f32.max(f32x4.extract_lane(t0, 0), f32x4.extract_lane(t0, 1)));
      f.set(msv, f32x4.splat(ms));

      // 2. p = exp(score − max), Σp and Σ p·v in one pass; normalised at the end.
      for (const x of [e0, o0, e1, o1, sum]) f.set(x, v128.zero());
      f.set(ss, 0);
      f.set(vp, i32.add(v, i32.mul(h, vHStride)));
      f.set(sp, scratch);
      f.for(j, 0, kl4, 4, () => {
        const p = vexpNonPositive(f, f32x4.sub(v128.load(sp, 0, 0), msv), fma);
        f.set(sum, f32x4.add(sum, p));
        for (let u = 0; u < 4; u++) pv(at(vp, u, vStride, vS2, vS3), u, v128.shuffle32(p, p, [u, u, u, u]), u & 1 ? e1 : e0, u & 1 ? o1 : o0);
        f.inc(sp, 16);
        f.set(vp, i32.add(vp, i32.shl(vStride, 2)));
      });
      f.for(j, kl4, keyLength, 1, () => {
        const p = vexpNonPositive(f, f32x4.sub(f32x4.splat(f32.load(sp)), msv), fma);
        f.set(ss, f32.add(ss, f32x4.extract_lane(p, 0)));
        pv(vp, 0, p, e0, o0);
        f.inc(sp, 4);
        f.set(vp, i32.add(vp, vStride));
      });
      f.set(inv, f32x4.splat(f32.div(f32.const(1), f32.add(hsum(sum), ss))));
      f.set(e0, f32x4.mul(f32x4.add(e0, e1), inv));
      f.set(o0, f32x4.mul(f32x4.add(o0, o1), inv));
      const op = i32.add(out, i32.shl(h, 5));
      f.v128_store(op, dt === 'bf16' ? v128.shuffle32(e0, o0, [0, 4, 1, 5]) : e0, 0, 0);
      f.v128_store(op, dt === 'bf16' ? v128.shuffle32(e0, o0, [2, 6, 3, 7]) : o0, 16, 0);
    });
  });
}
