// Matrix multiply and patch embedding.
//
// Two matmul kernels:
//   - naive: one output per thread, a K-long dot product (the gpu.js README kernel). Used in the cpu and
//     headlessgl modes, for M = 1 (GEMV), and as the benchmark baseline.
//   - blocked: a 2×2 output block per thread, returned as Array(4): per k step it loads 2 values of a and 2 of b
//     for 4 multiply-adds (the naive kernel: 2 loads per multiply-add). On webasm the 4 SIMD lanes of gpu.js's
//     vector body run 4 neighbouring threads (thread.x, adjacent column pairs) with the a values uniform across
//     them, so each k step is a 4×4 register block: 2 scalar loads + 2 four-lane gathers for 16 multiply-adds.
//     Its output is block-major; a second kernel (pure indexing) puts it in row-major order and adds the bias.
// Packed f16/bf16 weights are widened to f32 by a kernel first (gpu.js reads f32 only).

import type { MatmulAttrs, PatchEmbedAttrs } from '../../core/backend.js';
import type { Tensor } from '../../core/tensor.js';
import { decompose, lit, Src } from './codegen.js';
import { buf, type Env, release, tmp } from './env.js';
import { widen } from './ops-elementwise.js';
import type { GBuf } from './runtime.js';

export interface MatmulDims {
  Z: number; // batches
  M: number;
  K: number;
  N: number;
  bShared: boolean;
  transposeB: boolean;
  bias: boolean;
}

/** One output per thread. `twoD`: output [N, Z·M] (thread.x = column) instead of a flat [Z·M·N]. */
export function naiveMatmulSpec(d: MatmulDims, twoD: boolean): { source: string; output: number[] } {
  const { Z, M, K, N, bShared, transposeB, bias } = d;
  const s = new Src();
  let zm: string, n: string;
  if (twoD) {
    n = 'this.thread.x';
    zm = 'this.thread.y';
  } else {
    s.line('const i = this.thread.x;');
    [zm, n] = decompose(s, 'i', [Z * M, N]) as [string, string];
  }
  s.line(`const nn = ${n};`);
  s.line(`const zm = ${zm};`);
  s.line(`let ia = zm * ${lit(K)};`);
  // b's batch offset: z = ⌊zm / M⌋ (only when b has batch dims)
  let bz = '0.0';
  if (!bShared && Z > 1) {
    const [z] = decompose(s, 'zm', [Z, M]);
    bz = `${z} * ${lit(K * N)}`;
  }
  s.line(transposeB ? `let ib = ${bz} + nn * ${lit(K)};` : `let ib = ${bz} + nn;`);
  s.line('let acc = 0.0;');
  s.line(`for (let k = 0; k < ${K}; k++) {`);
  s.line('  acc += a[ia] * b[ib];');
  s.line('  ia = ia + 1.0;');
  s.line(`  ib = ib + ${transposeB ? '1.0' : lit(N)};`);
  s.line('}');
  s.line(bias ? 'return acc + bias[nn];' : 'return acc;');
  return { source: s.fn(bias ? ['a', 'b', 'bias'] : ['a', 'b']), output: twoD ? [N, Z * M] : [Z * M * N] };
}

/** 2×2 block per thread, Array(4) = [c(m0,n0), c(m0,n1), c(m1,n0), c(m1,n1)]; output [⌈N/2⌉, ⌈M/2⌉(, Z)], or with
 *  `rowsAcrossLanes` [⌈M/2⌉, ⌈N/2⌉(, Z)] (thread.x walks row pairs; see webasmRowsAcrossLanes).
 *  Odd edges clamp the second row/column (computed twice, dropped by the relayout). */
export function blockedMatmulSpec(d: MatmulDims, rowsAcrossLanes = false): { source: string; output: number[] } {
  const { Z, M, K, N, bShared, transposeB } = d;
  const [tn, tm] = rowsAcrossLanes ? ['this.thread.y', 'this.thread.x'] : ['this.thread.x', 'this.thread.y'];
  const s = new Src();
  s.line(`const n0 = ${tn} * 2.0;`);
  s.line(`let n1 = n0 + 1.0; if (n1 > ${lit(N - 1)}) { n1 = ${lit(N - 1)}; }`);
  s.line(`const m0 = ${tm} * 2.0;`);
  s.line(`let m1 = m0 + 1.0; if (m1 > ${lit(M - 1)}) { m1 = ${lit(M - 1)}; }`);
  const z = Z > 1 ? 'this.thread.z' : '0.0';
  s.line(`let ia0 = ${z} * ${lit(M * K)} + m0 * ${lit(K)};`);
  s.line(`let ia1 = ${z} * ${lit(M * K)} + m1 * ${lit(K)};`);
  const bz = !bShared && Z > 1 ? `${z} * ${lit(K * N)} + ` : '';
  if (transposeB) {
    s.line(`let ib0 = ${bz}n0 * ${lit(K)};`);
    s.line(`let ib1 = ${bz}n1 * ${lit(K)};`);
  } else {
    s.line(`let ib0 = ${bz}n0;`);
    s.line(`let ib1 = ${bz}n1;`);
  }
  const step = transposeB ? '1.0' : lit(N);
  s.line('let c00 = 0.0; let c01 = 0.0; let c10 = 0.0; let c11 = 0.0;');
  s.line(`for (let k = 0; k < ${K}; k++) {`);
  s.line('  const a0 = a[ia0]; const a1 = a[ia1];');
  s.line('  const b0 = b[ib0]; const b1 = b[ib1];');
  s.line('  c00 += a0 * b0; c01 += a0 * b1; c10 += a1 * b0; c11 += a1 * b1;');
  s.line(`  ia0 = ia0 + 1.0; ia1 = ia1 + 1.0; ib0 = ib0 + ${step}; ib1 = ib1 + ${step};`);
  s.line('}');
  s.line('return [c00, c01, c10, c11];');
  const Nb = Math.ceil(N / 2), Mb = Math.ceil(M / 2);
  const xy = rowsAcrossLanes ? [Mb, Nb] : [Nb, Mb];
  return { source: s.fn(['a', 'b']), output: Z > 1 ? [...xy, Z] : xy };
}

/**
 * Whether the webasm 2×2 kernel puts row pairs across thread.x (gpu.js's SIMD lanes) instead of column pairs.
 * Then `b` is the lane-uniform operand (2 scalar loads per k) and `a` the gathered one; measured at 1024³ on the
 * shared 2-core machine it ran at 2.3–3.7 GFLOP per CPU-second against 0.8–3.1 for column pairs (the gap widest
 * while other processes loaded the caches), and within ±5 % at 512. gpu.js runs its SIMD body only when the
 * output's x extent is a multiple of 4, so this layout is taken only when ⌈M/2⌉ is (M is a token count in the
 * model, often odd, while N is a model width).
 */
export function webasmRowsAcrossLanes(d: MatmulDims): boolean {
  return Math.ceil(d.M / 2) % 4 === 0;
}

/**
 * The 2×2 kernel of blockedMatmulSpec for webgpu, with every index an integer expression. gpu.js makes each
 * `let`/`const` local an f32 (loop counters excepted), so blockedMatmulSpec's running indices (`ia0 = ia0 + 1.0`)
 * become f32 additions plus an f32→i32 conversion per load in WGSL; lavapipe (llvmpipe) then cannot see the loads
 * as affine in k and pays for that on every one of them. Written inline in terms of `this.thread.*`, integer
 * literals and the loop counter, gpu.js keeps the index in i32 (`i32(threadGid.y)*2048 + user_k`), and the
 * 1024³ kernel runs about 2.3× faster per CPU-second on lavapipe (0.8 → 1.9 GFLOP/cpu-s). On webasm the same
 * rewrite is slower (gpu.js's SIMD body prefers the f32 form), so webasm keeps blockedMatmulSpec.
 *
 * The k loop is unrolled by `unroll` (a K % unroll tail loop follows): about 10–20 % on lavapipe at 512–1024.
 *
 * Same output layout as blockedMatmulSpec: Array(4) = [c(m0,n0), c(m0,n1), c(m1,n0), c(m1,n1)] per cell of
 * [⌈N/2⌉, ⌈M/2⌉(, Z)]. Odd edges are not clamped here (a clamp needs Math.min, which gpu.js types f32 and which
 * would put the index back into f32): the phantom row m = M / column n = N reads the next row/column, or past
 * the end of the buffer for the last one. WebGPU defines such reads (robust buffer access: a value from within
 * the bound buffer, or 0; Dawn clamps the index), and the relayout kernel drops those outputs.
 */
export function blockedMatmulSpecInt(d: MatmulDims, unroll = 4): { source: string; output: number[] } {
  const { Z, M, K, N, bShared, transposeB } = d;
  const U = Math.max(1, Math.min(unroll, K));
  const zA = Z > 1 ? `this.thread.z * ${M * K} + ` : '';
  const zB = !bShared && Z > 1 ? `this.thread.z * ${K * N} + ` : '';
  // index expressions of a(m0, k), a(m1, k), b(k, n0), b(k, n1) for a k expression (all integer arithmetic)
  const idx = (k: string) => ({
    a0: `${zA}this.thread.y * ${2 * K} + ${k}`,
    a1: `${zA}this.thread.y * ${2 * K} + ${K} + ${k}`,
    b0: transposeB ? `${zB}this.thread.x * ${2 * K} + ${k}` : `${zB}(${k}) * ${N} + this.thread.x * 2`,
    b1: transposeB ? `${zB}this.thread.x * ${2 * K} + ${K} + ${k}` : `${zB}(${k}) * ${N} + this.thread.x * 2 + 1`,
  });
  const step = (k: string) => {
    const i = idx(k);
    // a block statement per step, so the unrolled copies can reuse the local names
    return `{ const a0 = a[${i.a0}]; const a1 = a[${i.a1}]; const b0 = b[${i.b0}]; const b1 = b[${i.b1}]; ` +
      'c00 += a0 * b0; c01 += a0 * b1; c10 += a1 * b0; c11 += a1 * b1; }';
  };
  const s = new Src();
  s.line('let c00 = 0.0; let c01 = 0.0; let c10 = 0.0; let c11 = 0.0;');
  unrolledK(s, K, U, step);
  s.line('return [c00, c01, c10, c11];');
  const Nb = Math.ceil(N / 2), Mb = Math.ceil(M / 2);
  return { source: s.fn(['a', 'b']), output: Z > 1 ? [Nb, Mb, Z] : [Nb, Mb] };
}

/**
 * The k loop of the integer-index kernels, unrolled by U: `body(k)` is one step's statement for the index expression
 * k. gpu.js keeps a loop counter an integer but makes every other variable an f32, so the index expressions are
 * built from the counter and literals (`k * U + u`), never from a running variable; K mod U steps follow.
 */
function unrolledK(s: Src, K: number, U: number, body: (k: string) => string): void {
  const main = Math.floor(K / U), tail = K - main * U;
  if (main > 0) {
    s.line(`for (let k = 0; k < ${main}; k++) {`);
    for (let u = 0; u < U; u++) s.line('  ' + body(U === 1 ? 'k' : u === 0 ? `k * ${U}` : `k * ${U} + ${u}`));
    s.line('}');
  }
  if (tail > 0) s.line(`for (let kt = 0; kt < ${tail}; kt++) { ${body(`kt + ${main * U}`)} }`);
}

/**
 * GEMV (M = 1) for webgpu: one output per thread like naiveMatmulSpec, but with integer index expressions (see
 * blockedMatmulSpecInt) and k unrolled by 4. With Z = 1 the index of `a` is the loop counter alone, uniform
 * across the invocations, which lavapipe loads once per SIMD group. Output [N, Z] (thread.y = batch).
 */
export function gemvSpecInt(d: MatmulDims, unroll = 4): { source: string; output: number[] } {
  const { Z, M, K, N, bShared, transposeB, bias } = d;
  if (M !== 1) throw new Error('gemvSpecInt: M must be 1');
  const U = Math.max(1, Math.min(unroll, K));
  const zA = Z > 1 ? `this.thread.y * ${K} + ` : '';
  const zB = !bShared && Z > 1 ? `this.thread.y * ${K * N} + ` : '';
  const term = (k: string) =>
    `acc += a[${zA}${k}] * b[${transposeB ? `${zB}this.thread.x * ${K} + ${k}` : `${zB}(${k}) * ${N} + this.thread.x`}];`;
  const s = new Src();
  s.line('let acc = 0.0;');
  unrolledK(s, K, U, term);
  s.line(bias ? 'return acc + bias[this.thread.x];' : 'return acc;');
  return { source: s.fn(bias ? ['a', 'b', 'bias'] : ['a', 'b']), output: [N, Z] };
}

/**
 * b [(Z,) N, K] → [(Z,) K, N], integer indices throughout. For webgpu matmuls with transposeB whose K is a multiple
 * of 1024: the rows of b are then 4 KiB apart, so the 2×2 kernel's 16 concurrent b streams of one SIMD group (and
 * a's two) fall into the same L1 set on the CPUs lavapipe runs on, and the transposed-b kernel ran at half the
 * rate of the plain one (1024×1024·[1024,1024]ᵀ: 0.92–0.98 against 1.8–2.0 GFLOP per CPU-second; K = 256, 512,
 * 768: no difference). Transposing first costs ~20 ms for 1024² and pays for itself from M ≈ 20 rows.
 */
export function transposeBSpec(d: MatmulDims): { source: string; output: number[] } {
  const { Z, K, N, bShared } = d;
  const batched = !bShared && Z > 1;
  const src = `function (b) {\n  return b[${batched ? `this.thread.z * ${K * N} + ` : ''}this.thread.x * ${K} + this.thread.y];\n}`;
  return { source: src, output: batched ? [N, K, Z] : [N, K] };
}

/** Row-major [Z, M, N] from the block-major Array(4) output (+ bias). */
export function relayoutSpec(d: MatmulDims, rowsAcrossLanes = false): { source: string; output: number[] } {
  const { Z, M, N, bias } = d;
  const Nb = Math.ceil(N / 2), Mb = Math.ceil(M / 2);
  const s = new Src();
  s.line('const i = this.thread.x;');
  const [z, m, n] = decompose(s, 'i', [Z, M, N]);
  s.line(`const mb = Math.floor(${m} * 0.5);`);
  s.line(`const nb = Math.floor(${n} * 0.5);`);
  const cell = rowsAcrossLanes ? `(${z} * ${lit(Nb)} + nb) * ${lit(Mb)} + mb` : `(${z} * ${lit(Mb)} + mb) * ${lit(Nb)} + nb`;
  s.line(`const src = (${cell}) * 4.0 + (${m} - mb * 2.0) * 2.0 + (${n} - nb * 2.0);`);
  s.line(bias ? `return r[src] + bias[${n}];` : 'return r[src];');
  return { source: s.fn(bias ? ['r', 'bias'] : ['r']), output: [Z * M * N] };
}

/** Rows of a (Z·M) from which a webgpu matmul with transposeB and K % 1024 = 0 transposes b first. */
export const TRANSPOSE_B_MIN_ROWS = 64;

export function matmul(env: Env, out: Tensor, [a, b, bias]: [Tensor, Tensor, Tensor | null], { transposeB }: MatmulAttrs): void {
  if (out.size === 0) return;
  const M = a.shape[a.rank - 2]!;
  const K = a.shape[a.rank - 1]!;
  const N = out.shape[out.rank - 1]!;
  const Z = out.size / (M * N);
  const d: MatmulDims = { Z, M, K, N, bShared: b.rank === 2, transposeB, bias: !!bias };
  if (K === 0) {
    // An empty sum: zeros (+ bias), written by the naive kernel (its loop runs zero times).
    runNaive(env, d, buf(a), buf(b), bias, buf(out));
    return;
  }
  let bb = buf(b);
  let widened: GBuf | null = null;
  if (b.dtype === 'f16' || b.dtype === 'bf16') {
    widened = tmp(env, b.size);
    widen(env, b, widened);
    bb = widened;
  }
  const rt = env.rt;
  const blockedOk = rt.mode === 'webasm' || rt.mode === 'webgpu';
  if (env.blockedMatmul && blockedOk && M >= 2) {
    let dk = d;
    let bt: GBuf | null = null;
    if (rt.mode === 'webgpu' && transposeB && K % 1024 === 0 && Z * M >= TRANSPOSE_B_MIN_ROWS) {
      // see transposeBSpec: 4 KiB-strided rows of b; one transpose kernel first, then the plain kernel
      bt = tmp(env, b.size);
      rt.run({ name: 'matmul.transposeB', ...transposeBSpec(d) }, [bb], bt);
      bb = bt;
      dk = { ...d, transposeB: false };
    }
    const rows = rt.mode === 'webasm' && webasmRowsAcrossLanes(dk);
    const blk = rt.mode === 'webgpu' ? blockedMatmulSpecInt(dk) : blockedMatmulSpec(dk, rows);
    const cells = blk.output.reduce((x, y) => x * y, 1);
    const r = tmp(env, cells * 4);
    rt.run({ name: 'matmul.blocked', ...blk, vec4: true }, [buf(a), bb], r);
    if (bt) release(env, bt);
    const rl = relayoutSpec(d, rows);
    rt.run({ name: 'matmul.relayout', ...rl }, bias ? [r, buf(bias)] : [r], buf(out));
    release(env, r);
  } else if (env.blockedMatmul && rt.mode === 'webgpu' && M === 1) {
    const g = gemvSpecInt(d);
    rt.run({ name: 'matmul.gemv', ...g }, bias ? [buf(a), bb, buf(bias)] : [buf(a), bb], buf(out));
  } else {
    runNaive(env, d, buf(a), bb, bias, buf(out));
  }
  if (widened) release(env, widened);
}

function runNaive(env: Env, d: MatmulDims, a: GBuf, b: GBuf, bias: Tensor | null, out: GBuf): void {
  const twoD = env.rt.mode === 'webasm' || env.rt.mode === 'webgpu';
  const spec = naiveMatmulSpec(d, twoD);
  env.rt.run({ name: 'matmul.naive', ...spec }, bias ? [a, b, buf(bias)] : [a, b], out);
}

/** Convolution with stride = kernel = patch: one output (token, channel) per thread, a C·P·P dot product. */
export function patchEmbed(env: Env, out: Tensor, [image, weight, bias]: [Tensor, Tensor, Tensor | null], { patch: P }: PatchEmbedAttrs): void {
  if (out.size === 0) return;
  const [, C, H, W] = image.shape as [number, number, number, number];
  const D = weight.shape[0]!;
  const gh = H / P, gw = W / P;
  const B = image.shape[0]!;
  const s = new Src();
  s.line('const i = this.thread.x;');
  const [b, p, dd] = decompose(s, 'i', [B, gh * gw, D]);
  const [py, px] = decompose(s, p!, [gh, gw]);
  s.line(bias ? `let acc = bias[${dd}];` : 'let acc = 0.0;');
  s.line(`let xc = (${b} * ${lit(C)} * ${lit(H)} + ${py} * ${lit(P)}) * ${lit(W)} + ${px} * ${lit(P)};`);
  s.line(`let wc = ${dd} * ${lit(C * P * P)};`);
  s.line(`for (let c = 0; c < ${C}; c++) {`);
  s.line('  let xr = xc; let wr = wc;');
  s.line(`  for (let ii = 0; ii < ${P}; ii++) {`);
  s.line(`    for (let jj = 0; jj < ${P}; jj++) { acc += x[xr + jj] * w[wr + jj]; }`);
  s.line(`    xr = xr + ${lit(W)}; wr = wr + ${lit(P)};`);
  s.line('  }');
  s.line(`  xc = xc + ${lit(H * W)}; wc = wc + ${lit(P * P)};`);
  s.line('}');
  s.line('return acc;');
  env.rt.run({ name: 'patchEmbed', source: s.fn(bias ? ['x', 'w', 'bias'] : ['x', 'w']), output: [out.size] }, bias ? [buf(image), buf(weight), buf(bias)] : [buf(image), buf(weight)], buf(out));
}
