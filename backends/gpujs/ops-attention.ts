// Attention and rotary embedding.
//
// Attention is a composition of five gpu.js kernels (gpu.js has no workgroup memory, so a fused flash-style kernel
// would recompute each row's softmax statistics per output element):
//   1. scores[b,h,t,j] = q·k · scale + mask                       (one thread per score, a D-long dot product)
//   2. row max over the visible keys (j < keyLength, and j ≤ queryOffset + t when causal)
//   3. row Σ exp(score − max)
//   4. probabilities (0 for hidden keys, and for rows that see no key or only −∞)
//   5. out[b,t,h,e] = Σ_j p · v                                    (one thread per output, an S-long dot product)
// Grouped-query heads read kv head ⌊h / (Hq/Hkv)⌋. The key length and query offset are uniforms (see below).

import type { AttentionAttrs, RopeAttrs } from '../../core/backend.js';
import { broadcastStrides } from '../../core/shape.js';
import type { Tensor } from '../../core/tensor.js';
import { decompose, divmod, dot, lit, Src } from './codegen.js';
import { buf, type Env, release, tmp } from './env.js';
import { NEG_MAX } from './ops-norm.js';

export function attention(env: Env, out: Tensor, [q, k, v, mask]: [Tensor, Tensor, Tensor, Tensor | null], attrs: AttentionAttrs): void {
  if (out.size === 0) return;
  const { causal, queryOffset, keyLength: L, scale } = attrs;
  const [B, Tq, Hq, D] = q.shape as [number, number, number, number];
  const [, S, Hkv] = k.shape as [number, number, number];
  const Dv = v.shape[3]!;
  const group = Hq / Hkv;
  const rt = env.rt;
  const rows = B * Hq * Tq;
  if (L === 0) {
    // no key at all: zeros
    rt.run({ name: 'attention.zeros', source: 'function () {\n  return 0.0;\n}', output: [out.size] }, [], buf(out));
    return;
  }
  // keyLength (`len`), queryOffset (`off`) and the scale are uniforms and the intermediates are S (the cache's
  // capacity) wide, so decoding token after token through a KV cache reuses the same compiled kernels. A mask's
  // shape includes the key length, so masked calls are specialised on it.
  const W = S;
  /** Visible keys of query row t: emits `vis`. */
  const visible = (s: Src, t: string) => {
    if (causal) s.line(`let vis = off + ${t} + 1.0; if (vis > len) { vis = len; }`);
    else s.line('const vis = len;');
  };

  // 1. scores [B, Hq, Tq, W] (0 past the key length)
  let s = new Src();
  s.line('const i = this.thread.x;');
  const [b, h, t, j] = decompose(s, 'i', [B, Hq, Tq, W]);
  const kh = s.v('kh'), khr = s.v('khr');
  divmod(s, h!, group, kh, khr);
  s.line('let acc = 0.0;');
  s.line(`if (${j} < len) {`);
  s.line(`  let iq = ((${b} * ${lit(Tq)} + ${t}) * ${lit(Hq)} + ${h}) * ${lit(D)};`);
  s.line(`  let ik = ((${b} * ${lit(S)} + ${j}) * ${lit(Hkv)} + ${kh}) * ${lit(D)};`);
  s.line(`  for (let d = 0; d < ${D}; d++) { acc += q[iq] * k[ik]; iq = iq + 1.0; ik = ik + 1.0; }`);
  let maskExpr = '';
  if (mask) {
    const ms = broadcastStrides(mask.shape, [B, Hq, Tq, L]);
    maskExpr = ` + m[${dot([b!, h!, t!, j!], ms)}]`;
  }
  s.line(`  acc = acc * sc${maskExpr};`);
  s.line('}');
  s.line('return acc;');
  const scores = tmp(env, rows * W);
  rt.run(
    { name: 'attention.scores', source: s.fn(mask ? ['q', 'k', 'm', 'sc', 'len'] : ['q', 'k', 'sc', 'len']), output: [rows * W] },
    mask ? [buf(q), buf(k), buf(mask), scale, L] : [buf(q), buf(k), scale, L],
    scores,
  );

  // 2. row max over visible keys (≥ 1 of them: a causal query sees at least key 0)
  s = new Src();
  s.line('const r = this.thread.x;');
  const [, tr] = decompose(s, 'r', [B * Hq, Tq]);
  visible(s, tr!);
  s.line(`const base = r * ${lit(W)};`);
  s.line('let mx = sc[base];');
  s.line(`for (let j = 1; j < ${W}; j++) { if (j < vis) { const v = sc[base + j]; if (v > mx) { mx = v; } } }`);
  s.line('return mx;');
  const mx = tmp(env, rows);
  rt.run({ name: 'attention.max', source: s.fn(['sc', 'off', 'len']), output: [rows] }, [scores, queryOffset, L], mx);

  // 3. row Σ exp
  s = new Src();
  s.line('const r = this.thread.x;');
  const [, tr3] = decompose(s, 'r', [B * Hq, Tq]);
  visible(s, tr3!);
  s.line(`const base = r * ${lit(W)};`);
  s.line('const mv = mx[r];');
  s.line('let sum = 0.0;');
  s.line(`if (mv >= ${NEG_MAX}) { for (let j = 0; j < ${W}; j++) { if (j < vis) { sum += Math.exp(sc[base + j] - mv); } } }`);
  s.line('return sum;');
  const sm = tmp(env, rows);
  rt.run({ name: 'attention.sum', source: s.fn(['sc', 'mx', 'off', 'len']), output: [rows] }, [scores, mx, queryOffset, L], sm);

  // 4. probabilities (0 for hidden keys and for rows that see only −∞)
  s = new Src();
  s.line('const i = this.thread.x;');
  const [r4, j4] = decompose(s, 'i', [rows, W]);
  const [, t4] = decompose(s, r4!, [B * Hq, Tq]);
  visible(s, t4!);
  s.line(`const mv = mx[${r4}];`);
  s.line('let p = 0.0;');
  s.line(`if (${j4} < vis && mv >= ${NEG_MAX}) { p = Math.exp(sc[i] - mv) / sm[${r4}]; }`);
  s.line('return p;');
  const probs = tmp(env, rows * W);
  rt.run({ name: 'attention.probs', source: s.fn(['sc', 'mx', 'sm', 'off', 'len']), output: [rows * W] }, [scores, mx, sm, queryOffset, L], probs);

  // 5. out [B, Tq, Hq, Dv] = P · V over the key length
  s = new Src();
  s.line('const i = this.thread.x;');
  const [b5, t5, h5, e5] = decompose(s, 'i', [B, Tq, Hq, Dv]);
  const kh5 = s.v('kh'), khr5 = s.v('khr');
  divmod(s, h5!, group, kh5, khr5);
  s.line(`let ip = ((${b5} * ${lit(Hq)} + ${h5}) * ${lit(Tq)} + ${t5}) * ${lit(W)};`);
  s.line(`let iv = (${b5} * ${lit(S * Hkv)} + ${kh5}) * ${lit(Dv)} + ${e5};`);
  s.line('let acc = 0.0;');
  s.line(`for (let j = 0; j < ${W}; j++) { if (j < len) { acc += p[ip] * v[iv]; } ip = ip + 1.0; iv = iv + ${lit(Hkv * Dv)}; }`);
  s.line('return acc;');
  rt.run({ name: 'attention.pv', source: s.fn(['p', 'v', 'len']), output: [out.size] }, [probs, buf(v), L], buf(out));
  release(env, scores, mx, sm, probs);
}

/** Rounds x > 0 to `bits` significant bits (so products with another ≤ 24 − bits-bit number are exact in f32). */
function roundBits(x: number, bits: number): number {
  if (x === 0) return 0;
  const unit = 2 ** (Math.floor(Math.log2(Math.abs(x))) - (bits - 1));
  return Math.round(x / unit) * unit;
}

/** Rotate-half rotary embedding.
 *
 *  The frequency ladder θ^(−2i/rotaryDim) (rotaryDim/2 numbers, the same for every element) is computed on the host
 *  in float64 like the reference and passed as a small table: an in-kernel f32 pow is off by ~1e-6 relative, i.e.
 *  milliradians at position 1000. Angles are reduced to [−π, π] inside the kernel before sin/cos, exactly enough
 *  not to grow with the position: with g = freq/2π split into 12-bit pieces g1 + g2 (+ a tail g3) and the position
 *  into 12-bit pieces p1 + p0, every product p·g1, p·g2 is exact in f32, so the fractional turns are exact and
 *  only their sum rounds (~1e-7 turns). A plain f32 angle would be off by ½ ulp(pos·freq), 2.4e-4 rad at
 *  position 5000, and GPU sin/cos are often inaccurate for large arguments. Small angles (< 2π) use the plain
 *  product, which is more accurate there. The position offset is a uniform. */
export function rope(env: Env, out: Tensor, [x]: [Tensor], { theta, offset, rotaryDim }: RopeAttrs): void {
  if (out.size === 0) return;
  const [B, T, H, D] = x.shape as [number, number, number, number];
  const half = rotaryDim / 2;
  const table = new Float32Array(4 * half);
  for (let i = 0; i < half; i++) {
    const f = Math.pow(theta, (-2 * i) / rotaryDim);
    const g = f / (2 * Math.PI);
    const g1 = roundBits(g, 12);
    const g2 = roundBits(g - g1, 12);
    table.set([f, g1, g2, g - g1 - g2], 4 * i);
  }
  const s = new Src();
  s.line('const i = this.thread.x;');
  const [, t, , d] = decompose(s, 'i', [B, T, H, D]);
  s.line('const xv = x[i];');
  s.line('let o = xv;');
  s.line(`if (${d} < ${lit(rotaryDim)}) {`);
  s.line(`  let p = ${d};`);
  s.line(`  if (${d} >= ${lit(half)}) { p = ${d} - ${lit(half)}; }`);
  s.line(`  const pos = off + ${t};`);
  s.line('  const tb = p * 4.0;');
  s.line('  let ang = pos * f[tb];');
  s.line('  if (ang > 6.283185307179586) {');
  s.line('    const p1 = Math.floor(pos / 4096.0) * 4096.0;');
  s.line('    const p0 = pos - p1;');
  s.line('    const g1 = f[tb + 1.0];');
  s.line('    const g2 = f[tb + 2.0];');
  s.line('    const x1 = p1 * g1; const x2 = p1 * g2; const x3 = p0 * g1; const x4 = p0 * g2;');
  s.line('    let tr = (x1 - Math.floor(x1)) + (x2 - Math.floor(x2)) + (x3 - Math.floor(x3)) + (x4 - Math.floor(x4)) + pos * f[tb + 3.0];');
  s.line('    tr = tr - Math.floor(tr + 0.5);');
  s.line('    ang = tr * 6.283185307179586;');
  s.line('  }');
  s.line('  const cs = Math.cos(ang);');
  s.line('  const sn = Math.sin(ang);');
  s.line(`  if (${d} < ${lit(half)}) { o = xv * cs - x[i + ${lit(half)}] * sn; } else { o = xv * cs + x[i - ${lit(half)}] * sn; }`);
  s.line('}');
  s.line('return o;');
  env.rt.run({ name: 'rope', source: s.fn(['x', 'f', 'off']), output: [out.size] }, [buf(x), table, offset], buf(out));
}
