// The op-case table: every op at awkward sizes (1, 3, 17, 63, 129, 1000), with its error threshold from the op table
// (core/op-table.ts) and, for the
// fused ops, a slow composition of simpler ops that must agree with it (modulatedNorm vs norm·γ+β, attention vs
// matmul → softmax → matmul, ...). The harness runs each case on the CPU reference and on the backend under test.

import { opTolerance, type KernelAttrs, type OpName, type Tolerance } from '../../core/op-table.js';
import type { DType } from '../../core/dtype.js';
import type { Tensor } from '../../core/tensor.js';
import * as ops from '../../ops/index.js';

export type Fill = 'uniform' | 'ids' | 'large' | 'wide' | 'image';

export interface InputSpec {
  shape: number[];
  /** Storage dtype (f16/bf16 inputs are generated in f32 and narrowed). Default f32. */
  dtype?: DType;
  /** uniform: U[-1, 1]; wide: U[-10, 10]; large: 1e4 + U[-1, 1] (tests two-pass variance); ids: integers in [0, max). */
  fill?: Fill;
  max?: number;
}

export interface OpCase {
  /** The kernel under test (for filtering, --op, and its tolerance in core/op-table.ts). */
  op: OpName;
  /** Unique, descriptive name (shapes and attributes). */
  name: string;
  inputs: InputSpec[];
  /** The op under test. */
  run(ins: Tensor[]): Tensor;
  /** A slower composition of simpler ops computing the same thing (checked against `run`). */
  compose?(ins: Tensor[]): Tensor;
  /** The op table's tolerance for `op` (and `attrs`), unless a case needs its own (documented where it is set). */
  tol: Tolerance;
  /** Included in perf mode. */
  perf?: boolean;
}

const cases: OpCase[] = [];
/** Adds a case; its tolerance comes from the op table (attrs: the kernel attributes it depends on, e.g. unary's op). */
function add<K extends OpName>(c: Omit<OpCase, 'op' | 'tol'> & { op: K; tol?: Tolerance; attrs?: Partial<KernelAttrs<K>> }): void {
  const { attrs, ...rest } = c;
  cases.push({ ...rest, tol: c.tol ?? opTolerance(c.op, (attrs ?? {}) as KernelAttrs<K>) });
}

// ---- matmul ----
for (const [M, K, N] of [[1, 1, 1], [3, 17, 63], [17, 63, 129], [63, 129, 3], [1, 1000, 17], [129, 64, 129]] as const) {
  add({ op: 'matmul', name: `matmul ${M}x${K}·${K}x${N}`, inputs: [{ shape: [M, K] }, { shape: [K, N] }], run: ([a, b]) => ops.matmul(a!, b!) });
  add({
    op: 'matmul', name: `linear ${M}x${K}·[${N},${K}]ᵀ +bias`, inputs: [{ shape: [M, K] }, { shape: [N, K] }, { shape: [N] }],
    run: ([x, w, b]) => ops.linear(x!, w!, b!),
    compose: ([x, w, b]) => ops.add(ops.matmul(x!, ops.transpose(w!, [1, 0])), b!),
  });
}
add({ op: 'matmul', name: 'matmul batched 2x3x17·2x17x5', inputs: [{ shape: [2, 3, 17] }, { shape: [2, 17, 5] }], run: ([a, b]) => ops.matmul(a!, b!) });
add({ op: 'matmul', name: 'matmul batched shared-b 2x3x17·[5,17]ᵀ', inputs: [{ shape: [2, 3, 17] }, { shape: [5, 17] }], run: ([a, b]) => ops.matmul(a!, b!, { transposeB: true }) });
for (const dt of ['bf16', 'f16'] as const) {
  for (const [M, K, N] of [[1, 63, 17], [17, 129, 63], [1, 1000, 3]] as const) {
    add({
      op: 'matmul', name: `linear packed-${dt} ${M}x${K}·[${N},${K}]ᵀ`, inputs: [{ shape: [M, K] }, { shape: [N, K], dtype: dt }],
      run: ([x, w]) => ops.linear(x!, w!),
      compose: ([x, w]) => ops.linear(x!, ops.cast(w!, 'f32')),
    });
  }
}
add({ op: 'matmul', name: 'perf matmul 256x256·256x256', inputs: [{ shape: [256, 256] }, { shape: [256, 256] }], run: ([a, b]) => ops.matmul(a!, b!), perf: true });
add({ op: 'matmul', name: 'perf gemv 1x1024·[1024,1024]ᵀ', inputs: [{ shape: [1, 1024] }, { shape: [1024, 1024] }], run: ([a, b]) => ops.linear(a!, b!), perf: true });

// ---- elementwise ----
for (const n of [1, 17, 1000]) {
  for (const op of ['add', 'sub', 'mul', 'div'] as const) {
    add({ op: 'binary', name: `${op} [${n}]`, inputs: [{ shape: [n] }, { shape: [n] }], run: ([a, b]) => ops[op](a!, b!) });
  }
}
add({ op: 'binary', name: 'add broadcast [3,17,63]+[63]', inputs: [{ shape: [3, 17, 63] }, { shape: [63] }], run: ([a, b]) => ops.add(a!, b!) });
add({ op: 'binary', name: 'mul broadcast [17,1]*[1,63]', inputs: [{ shape: [17, 1] }, { shape: [1, 63] }], run: ([a, b]) => ops.mul(a!, b!) });
add({ op: 'binary', name: 'sub broadcast [2,3,1,5]-[3,4,1]', inputs: [{ shape: [2, 3, 1, 5] }, { shape: [3, 4, 1] }], run: ([a, b]) => ops.sub(a!, b!) });
for (const n of [3, 1000]) {
  add({ op: 'unary', name: `gelu_tanh [${n}]`, inputs: [{ shape: [n], fill: 'wide' }], attrs: { op: 'gelu_tanh' }, run: ([x]) => ops.gelu(x!, 'tanh') });
  add({ op: 'unary', name: `gelu_erf [${n}]`, inputs: [{ shape: [n], fill: 'wide' }], attrs: { op: 'gelu_erf' }, run: ([x]) => ops.gelu(x!, 'erf') });
  add({ op: 'unary', name: `silu [${n}]`, inputs: [{ shape: [n], fill: 'wide' }], attrs: { op: 'silu' }, run: ([x]) => ops.silu(x!) });
  add({ op: 'unary', name: `relu [${n}]`, inputs: [{ shape: [n] }], attrs: { op: 'relu' }, run: ([x]) => ops.relu(x!) });
  for (const u of ['tanh', 'exp', 'neg'] as const) add({ op: 'unary', name: `${u} [${n}]`, inputs: [{ shape: [n] }], attrs: { op: u }, run: ([x]) => ops.unary(u, x!) });
  add({ op: 'scale', name: `scale [${n}] ×0.125 +0.5`, inputs: [{ shape: [n] }], run: ([x]) => ops.scale(x!, 0.125, 0.5) });
  add({
    op: 'swiglu', name: `swiglu [${n}]`, inputs: [{ shape: [n], fill: 'wide' }, { shape: [n] }],
    run: ([g, u]) => ops.swiglu(g!, u!), compose: ([g, u]) => ops.mul(ops.silu(g!), u!),
  });
}

// ---- softmax ----
for (const shape of [[1, 1], [3, 17], [17, 129], [2, 1000]]) {
  add({ op: 'softmax', name: `softmax [${shape}]`, inputs: [{ shape, fill: 'wide' }], run: ([x]) => ops.softmax(x!) });
}
add({ op: 'softmax', name: 'softmax [2,3,17,63] + mask [17,63]', inputs: [{ shape: [2, 3, 17, 63] }, { shape: [17, 63], fill: 'wide' }], run: ([x, m]) => ops.softmax(x!, m!), compose: ([x, m]) => ops.softmax(ops.add(x!, m!)) });

// ---- norms ----
for (const [rows, d] of [[1, 1], [3, 17], [17, 63], [5, 1000], [2, 129]] as const) {
  add({
    op: 'layerNorm', name: `layerNorm [${rows},${d}] γ β`, inputs: [{ shape: [rows, d] }, { shape: [d] }, { shape: [d] }],
    run: ([x, g, b]) => ops.layerNorm(x!, g!, b!, 1e-5),
    compose: ([x, g, b]) => ops.add(ops.mul(ops.layerNorm(x!, null, null, 1e-5), g!), b!),
  });
  add({
    op: 'rmsNorm', name: `rmsNorm [${rows},${d}] γ`, inputs: [{ shape: [rows, d] }, { shape: [d] }],
    run: ([x, g]) => ops.rmsNorm(x!, g!, 1e-6),
    compose: ([x, g]) => ops.mul(ops.rmsNorm(x!, null, 1e-6), g!),
  });
  for (const kind of ['layer', 'rms'] as const) {
    add({
      op: 'modulatedNorm', name: `modulatedNorm ${kind} [${rows},${d}] γ β Δγ Δβ`,
      inputs: [{ shape: [rows, d] }, { shape: [d] }, { shape: [d] }, { shape: [rows, d] }, { shape: [rows, d] }],
      run: ([x, g, b, dg, db]) => ops.modulatedNorm(x!, g!, { kind, eps: 1e-6, beta: b!, dGamma: dg!, dBeta: db! }),
      compose: ([x, g, b, dg, db]) => {
        const n = kind === 'layer' ? ops.layerNorm(x!, null, null, 1e-6) : ops.rmsNorm(x!, null, 1e-6);
        return ops.add(ops.add(ops.mul(ops.add(dg!, g!), n), b!), db!);
      },
    });
  }
}
add({
  op: 'layerNorm', name: 'layerNorm [4,129] values near 1e4 (two-pass variance)', inputs: [{ shape: [4, 129], fill: 'large' }],
  // Values near 1e4 lose ~1e4·2^-24 per element in an f32 input/output round trip: a looser NMSE than T.norm.
  run: ([x]) => ops.layerNorm(x!, null, null, 1e-5), tol: { nmse: 1e-5 },
});
add({
  op: 'modulatedNorm', name: 'modulatedNorm rms [2,3,64] Δγ only', inputs: [{ shape: [2, 3, 64] }, { shape: [64] }, { shape: [2, 3, 64] }],
  run: ([x, g, dg]) => ops.modulatedNorm(x!, g!, { kind: 'rms', eps: 1e-6, dGamma: dg! }),
  compose: ([x, g, dg]) => ops.mul(ops.rmsNorm(x!, null, 1e-6), ops.add(dg!, g!)),
});
add({ op: 'modulatedNorm', name: 'perf modulatedNorm rms [128,896]', inputs: [{ shape: [128, 896] }, { shape: [896] }, { shape: [896] }, { shape: [128, 896] }, { shape: [128, 896] }], run: ([x, g, b, dg, db]) => ops.modulatedNorm(x!, g!, { kind: 'rms', eps: 1e-6, beta: b!, dGamma: dg!, dBeta: db! }), perf: true });

// ---- rope ----
for (const [B, T, H, D, offset, rot] of [[1, 1, 1, 2, 0, 2], [1, 17, 3, 64, 0, 64], [2, 3, 2, 64, 1000, 64], [1, 5, 2, 32, 7, 16]] as const) {
  add({ op: 'rope', name: `rope [${B},${T},${H},${D}] offset ${offset} rotaryDim ${rot}`, inputs: [{ shape: [B, T, H, D] }], run: ([x]) => ops.rope(x!, { theta: 1e6, offset, rotaryDim: rot }) });
}

// ---- attention ----
/** Unfused reference: expand kv heads for GQA, scores = q·kᵀ·scale + mask, softmax, ·v. */
function composeAttention(q: Tensor, k: Tensor, v: Tensor, causal: boolean, queryOffset: number, keyLength: number): Tensor {
  const [B, Tq, Hq, D] = q.shape as [number, number, number, number];
  const Hkv = k.shape[2]!;
  const group = Hq / Hkv;
  const kk = ops.sliceAxis(k, 1, 0, keyLength);
  const vv = ops.sliceAxis(v, 1, 0, keyLength);
  const expand = (t: Tensor) => (group === 1 ? t : ops.concat(Array.from({ length: Hq }, (_, h) => ops.sliceAxis(t, 2, Math.floor(h / group), Math.floor(h / group) + 1)), 2));
  const qh = ops.transpose(q, [0, 2, 1, 3]); // [B, Hq, Tq, D]
  const kh = ops.transpose(expand(kk), [0, 2, 3, 1]); // [B, Hq, D, S]
  const vh = ops.transpose(expand(vv), [0, 2, 1, 3]); // [B, Hq, S, Dv]
  const scores = ops.scale(ops.matmul(qh, kh), 1 / Math.sqrt(D));
  let mask: Tensor | null = null;
  if (causal) {
    const m = new Float32Array(Tq * keyLength);
    for (let t = 0; t < Tq; t++) for (let j = 0; j < keyLength; j++) m[t * keyLength + j] = j <= queryOffset + t ? 0 : -Infinity;
    mask = ops.tensor(q.backend, m, [Tq, keyLength]);
  }
  const p = ops.softmax(scores, mask);
  void B;
  return ops.transpose(ops.matmul(p, vh), [0, 2, 1, 3]);
}

for (const [B, Tq, S, Hq, Hkv, D, causal, off, keyLength] of [
  [1, 1, 1, 1, 1, 8, false, 0, 1],
  [1, 17, 17, 4, 4, 16, true, 0, 17],
  [2, 3, 63, 4, 2, 32, false, 0, 63],
  [1, 1, 129, 14, 2, 64, true, 128, 129],
  [1, 5, 40, 4, 2, 16, true, 20, 25],
  [1, 17, 3, 6, 3, 8, false, 0, 3],
] as const) {
  add({
    op: 'attention',
    name: `attention B${B} Tq${Tq} S${S} H${Hq}/${Hkv} D${D}${causal ? ' causal' : ''} off${off} len${keyLength}`,
    inputs: [{ shape: [B, Tq, Hq, D] }, { shape: [B, S, Hkv, D] }, { shape: [B, S, Hkv, D] }],
    run: ([q, k, v]) => ops.attention(q!, k!, v!, { causal, queryOffset: off, keyLength }),
    compose: ([q, k, v]) => composeAttention(q!, k!, v!, causal, off, keyLength),
  });
}
add({
  op: 'attention', name: 'attention B1 Tq3 S17 H2/2 D8 + mask [3,17]', inputs: [{ shape: [1, 3, 2, 8] }, { shape: [1, 17, 2, 8] }, { shape: [1, 17, 2, 8] }, { shape: [3, 17], fill: 'wide' }],
  run: ([q, k, v, m]) => ops.attention(q!, k!, v!, { mask: m! }),
});
add({ op: 'attention', name: 'perf attention decode Tq1 S1024 H14/2 D64', inputs: [{ shape: [1, 1, 14, 64] }, { shape: [1, 1024, 2, 64] }, { shape: [1, 1024, 2, 64] }], run: ([q, k, v]) => ops.attention(q!, k!, v!, { causal: true, queryOffset: 1023 }), perf: true });
add({ op: 'attention', name: 'perf attention prefill Tq128 S128 H14/2 D64', inputs: [{ shape: [1, 128, 14, 64] }, { shape: [1, 128, 2, 64] }, { shape: [1, 128, 2, 64] }], run: ([q, k, v]) => ops.attention(q!, k!, v!, { causal: true }), perf: true });

// Packed (f16/bf16) keys and values, and the one-row decode form over many keys with one kv head per query head
// (LaVi's conditioners; wasm's attention_kv1: tails of 1-3 keys, 2 threads splitting the heads); then the same
// over head-major K/V ([B, Hkv, S, D], kvHeadMajor): wasm's attention_kv1 reads each head's keys as one run, its
// other paths and backends without headMajorKV attend over token-major copies. The composition reads the keys
// and values widened (and token-major).
for (const [dt, Tq, S, Hq, Hkv, D, causal, headMajor] of [
  ['f32', 1, 37, 3, 3, 16, false, false],
  ['f32', 1, 729, 8, 8, 64, false, false],
  ['bf16', 1, 37, 3, 3, 16, false, false],
  ['bf16', 1, 730, 8, 8, 64, false, false],
  ['bf16', 1, 19, 2, 2, 24, true, false],
  ['bf16', 3, 33, 2, 2, 16, false, false],
  ['bf16', 1, 40, 4, 2, 16, false, false],
  ['f16', 1, 37, 3, 3, 16, false, false],
  ['f16', 4, 17, 2, 1, 8, false, false],
  ['f32', 1, 37, 3, 3, 16, false, true],
  ['bf16', 1, 730, 8, 8, 64, false, true],
  ['bf16', 1, 19, 2, 2, 24, true, true],
  ['bf16', 3, 33, 4, 2, 16, true, true],
  ['f32', 5, 40, 4, 2, 16, false, true],
  ['f16', 1, 37, 3, 3, 16, false, true],
  // heads of 8 (the presets' conditioners; wasm's attention_kv1d8): token-major, head-major, tails of 1 and 3 keys
  ['f32', 1, 37, 3, 3, 8, false, false],
  ['bf16', 1, 730, 8, 8, 8, false, false],
  ['f32', 1, 729, 8, 8, 8, false, true],
  ['bf16', 1, 2917, 8, 8, 8, false, true],
  ['bf16', 1, 19, 2, 2, 8, true, true],
  // head-major below 16 keys (the bundled model's 9 visual tokens): attention_kv1 on wasm, no copies
  ['f32', 1, 9, 4, 4, 16, false, true],
  ['bf16', 1, 3, 2, 2, 8, false, true],
] as const) {
  const off = causal ? S - Tq : 0;
  const kv = headMajor ? [1, Hkv, S, D] : [1, S, Hkv, D];
  const f32 = (t: Tensor) => (dt === 'f32' ? t : ops.cast(t, 'f32'));
  const tokenMajor = (t: Tensor) => (headMajor ? ops.transpose(f32(t), [0, 2, 1, 3]) : f32(t));
  add({
    op: 'attention',
    name: `attention ${headMajor ? 'head-major ' : ''}K/V ${dt} Tq${Tq} S${S} H${Hq}/${Hkv} D${D}${causal ? ' causal' : ''}`,
    inputs: [{ shape: [1, Tq, Hq, D] }, { shape: kv, dtype: dt }, { shape: kv, dtype: dt }],
    run: ([q, k, v]) => ops.attention(q!, k!, v!, { causal, queryOffset: off, kvHeadMajor: headMajor }),
    compose: ([q, k, v]) => composeAttention(q!, tokenMajor(k!), tokenMajor(v!), causal, off, S),
  });
}
add({ op: 'attention', name: 'perf attention K/V bf16 decode Tq1 S2916 H8/8 D64', inputs: [{ shape: [1, 1, 8, 64] }, { shape: [1, 2916, 8, 64], dtype: 'bf16' }, { shape: [1, 2916, 8, 64], dtype: 'bf16' }], run: ([q, k, v]) => ops.attention(q!, k!, v!), perf: true });
add({ op: 'attention', name: 'perf attention head-major K/V bf16 decode Tq1 S2916 H8/8 D8', inputs: [{ shape: [1, 1, 8, 8] }, { shape: [1, 8, 2916, 8], dtype: 'bf16' }, { shape: [1, 8, 2916, 8], dtype: 'bf16' }], run: ([q, k, v]) => ops.attention(q!, k!, v!, { kvHeadMajor: true }), perf: true });
add({ op: 'attention', name: 'perf attention K/V f32 decode Tq1 S2916 H8/8 D64', inputs: [{ shape: [1, 1, 8, 64] }, { shape: [1, 2916, 8, 64] }, { shape: [1, 2916, 8, 64] }], run: ([q, k, v]) => ops.attention(q!, k!, v!), perf: true });

// ---- gather, argmax, cast ----
for (const dt of ['f32', 'bf16', 'f16'] as const) {
  add({
    op: 'embedding', name: `embedding ${dt} [1000,17] ids [3,5]`, inputs: [{ shape: [1000, 17], dtype: dt }, { shape: [3, 5], dtype: 'i32', fill: 'ids', max: 1000 }],
    run: ([t, i]) => ops.embedding(t!, i!),
  });
}
for (const shape of [[1], [3, 17], [5, 1000]]) add({ op: 'argmax', name: `argmax [${shape}]`, inputs: [{ shape }], run: ([x]) => ops.argmax(x!) });
for (const dt of ['f16', 'bf16', 'i32'] as const) {
  add({ op: 'cast', name: `cast f32→${dt} [129]`, inputs: [{ shape: [129], fill: 'wide' }], run: ([x]) => ops.cast(x!, dt) });
}
add({ op: 'cast', name: 'cast bf16→f32 [63]', inputs: [{ shape: [63], dtype: 'bf16' }], run: ([x]) => ops.cast(x!, 'f32') });

// ---- layout ----
add({ op: 'transpose', name: 'transpose [3,17,5] → (2,0,1)', inputs: [{ shape: [3, 17, 5] }], run: ([x]) => ops.transpose(x!, [2, 0, 1]) });
add({ op: 'transpose', name: 'transpose [63,129] → (1,0)', inputs: [{ shape: [63, 129] }], run: ([x]) => ops.transpose(x!, [1, 0]) });
add({ op: 'slice', name: 'slice [5,17,3] [1:4, 2:17, 0:2]', inputs: [{ shape: [5, 17, 3] }], run: ([x]) => ops.slice(x!, [1, 2, 0], [3, 15, 2]) });
add({ op: 'concat', name: 'concat axis 1 [2,3,4]+[2,1,4]+[2,5,4]', inputs: [{ shape: [2, 3, 4] }, { shape: [2, 1, 4] }, { shape: [2, 5, 4] }], run: (xs) => ops.concat(xs, 1) });
add({
  op: 'writeSlice', name: 'writeSlice [2,17,3] ← [2,4,3] at 5', inputs: [{ shape: [2, 17, 3] }, { shape: [2, 4, 3] }],
  run: ([d, s]) => ops.writeSlice(ops.copy(d!), s!, 1, 5),
  compose: ([d, s]) => ops.concat([ops.sliceAxis(d!, 1, 0, 5), s!, ops.sliceAxis(d!, 1, 9, 17)], 1),
});
add({ op: 'copy', name: 'copy [1000]', inputs: [{ shape: [1000] }], run: ([x]) => ops.copy(x!) });

// ---- vision ----
add({ op: 'patchEmbed', name: 'patchEmbed [1,3,28,28] P14 D17', inputs: [{ shape: [1, 3, 28, 28] }, { shape: [17, 3, 14, 14] }, { shape: [17] }], run: ([x, w, b]) => ops.patchEmbed(x!, w!, b!, 14) });
add({ op: 'patchEmbed', name: 'patchEmbed [2,3,15,10] P5 D3', inputs: [{ shape: [2, 3, 15, 10] }, { shape: [3, 3, 5, 5] }], run: ([x, w]) => ops.patchEmbed(x!, w!, null, 5) });
add({ op: 'resizeGrid', name: 'downsample2x 27×27 → 14×14 D17', inputs: [{ shape: [1, 729, 17] }], run: ([x]) => ops.downsample2x(x!, 27, 27) });
add({ op: 'resizeGrid', name: 'resizeGrid 5×7 → 3×4 D3 B2', inputs: [{ shape: [2, 35, 3] }], run: ([x]) => ops.resizeGrid(x!, 5, 7, 3, 4) });

export const OP_CASES: readonly OpCase[] = cases;
