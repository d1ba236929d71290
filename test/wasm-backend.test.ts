// Targeted tests of the wasm backend beyond the conformance table: matmul at sizes that stress the edge handling
// of the packed GEMM and the GEMVs (1, 3, 17, 63, 129, 1000 in each of M/N/K, and sizes crossing the MC/KC/NC
// blocks), packed weights, bit-identical results for 1 and 2 threads, f16 special values, the allocator (reuse,
// coalescing, an oversize request), and that the workers never keep the process alive.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CpuBackend } from '../backends/cpu/index.js';
import { compare } from '../backends/conformance/index.js';
import { createWasmBackend, WasmBackend, WasmStorage } from '../backends/wasm/index.js';
import type { KernelContext } from '../backends/wasm/jobs.js';
import { BLOCKING } from '../backends/wasm/kernels.js';
import { attentionKV1D8Blocked, attentionKV1D8Contiguous, packKeyBlocked, WASM_VARIANT_KERNELS } from './bench/dev/wasm-variants.js';
import type { Backend } from '../core/backend.js';
import { bf16ToF32, type DType, f16ToF32, f32ToBf16, narrowFromF32 } from '../core/dtype.js';
import { BackendError } from '../core/errors.js';
import type { Tensor } from '../core/tensor.js';
import { tinyConfig } from '../models/lavi/config.js';
import { generate } from '../models/app/generate.js';
import { LaviModel } from '../models/lavi/model.js';
import { randomWeights } from '../models/lavi/weights.js';
import * as ops from '../ops/index.js';
import { randomFloats } from '../core/rng.js';
import { keep, tidy } from '../core/index.js';

const cpu = new CpuBackend();
const w1 = await createWasmBackend({ threads: 1 });
const w2 = await createWasmBackend({ threads: 2, splitSmallOps: true });

let seed = 12345;
const rand = (n: number, scale = 1): Float32Array => randomFloats(n, seed++, scale); // a new stream per call

/** Runs `fn` on each backend with the same host inputs and returns the outputs. */
async function onEach(backends: Backend[], inputs: { data: Float32Array | Int32Array; shape: number[]; dtype?: DType }[], fn: (ts: Tensor[]) => Tensor): Promise<(Float32Array | Int32Array)[]> {
  const outs: (Float32Array | Int32Array)[] = [];
  for (const b of backends) {
    const ts = inputs.map((i) => ops.tensor(b, i.data, i.shape, i.dtype));
    const y = fn(ts);
    outs.push(await y.read());
    y.dispose();
    for (const t of ts) t.dispose();
  }
  return outs;
}

function assertClose(got: ArrayLike<number>, want: ArrayLike<number>, what: string, nmse = 1e-9): void {
  const c = compare(got, want, { nmse });
  assert.ok(c.ok, `${what}: ${c.reason}`);
}

function assertIdentical(a: Float32Array | Int32Array, b: Float32Array | Int32Array, what: string): void {
  assert.is(a.length, b.length, `${what}: lengths`);
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length), ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) assert.unreachable(`${what}: 1 vs 2 threads differ at ${i}: ${a[i]} vs ${b[i]}`);
}

const DIMS = [1, 3, 17, 63, 129, 1000];
const SHAPES: [number, number, number][] = [];
for (const d of DIMS) SHAPES.push([d, 17, 63], [17, d, 63], [17, 63, d]);
// Across the blocking: more than MC rows, KC depth, NC columns (and the 4-row GEMV limit).
const { MC, KC, NC } = BLOCKING;
SHAPES.push([MC + 1, KC + 1, NC + 1], [2 * MC + 3, 2 * KC + 5, NC + 9], [4, 1000, 129], [5, 129, 1000]);

for (const transposeB of [false, true]) {
  test(`matmul ${transposeB ? 'x·Wᵀ' : 'a·b'} f32 + bias at edge sizes: matches the CPU, 1 thread = 2 threads`, async () => {
    for (const [M, K, N] of SHAPES) {
      const inputs = [
        { data: rand(M * K), shape: [M, K] },
        { data: rand(K * N), shape: transposeB ? [N, K] : [K, N] },
        { data: rand(N), shape: [N] },
      ];
      const [want, a, b] = await onEach([cpu, w1, w2], inputs, ([x, w, bias]) => ops.matmul(x!, w!, { transposeB, bias }));
      assertClose(a!, want!, `${M}x${K}x${N}`);
      assertIdentical(a!, b!, `${M}x${K}x${N}`);
    }
  });
}

for (const dtype of ['bf16', 'f16'] as const) {
  test(`matmul with packed ${dtype} weights (GEMV and GEMM paths, both layouts)`, async () => {
    for (const [M, K, N] of [[1, 1000, 63], [1, 63, 1000], [3, 129, 17], [4, 17, 129], [17, 129, 63], [129, 257, 65], [1, 7, 5]] as const) {
      for (const transposeB of [false, true]) {
        const inputs = [
          { data: rand(M * K), shape: [M, K] },
          { data: rand(K * N), shape: transposeB ? [N, K] : [K, N], dtype },
        ];
        const [want, a, b] = await onEach([cpu, w1, w2], inputs, ([x, w]) => ops.matmul(x!, w!, { transposeB }));
        assertClose(a!, want!, `${dtype} ${M}x${K}x${N} tB=${transposeB}`);
        assertIdentical(a!, b!, `${dtype} ${M}x${K}x${N} tB=${transposeB}`);
      }
    }
  });
}

test('GEMV x·Wᵀ: a weight row gives the same bits whether it runs in a multi-row pass or as a leftover row', async () => {
  // The streaming GEMV reads several weight rows per pass and the rows left over one at a time; both must sum in
  // the same order, so results do not depend on N or on the split among threads. Rows 0..N−1 of W are shared.
  for (const dtype of ['f32', 'bf16', 'f16'] as const) {
    for (const K of [7, 16, 384, 1000]) {
      const M = 3, N = 13;
      const x = rand(M * K), wf = rand(N * K);
      const w = dtype === 'f32' ? wf : (narrowFromF32(wf, dtype) as unknown as Float32Array);
      const full = (await onEach([w1], [{ data: x, shape: [M, K] }, { data: w, shape: [N, K], dtype }], ([a, b]) => ops.linear(a!, b!)))[0]!;
      for (const n of [1, 2, 3, 5, 6, 7, 9]) {
        const part = (await onEach([w1], [{ data: x, shape: [M, K] }, { data: w.slice(0, n * K), shape: [n, K], dtype }], ([a, b]) => ops.linear(a!, b!)))[0]!;
        for (let m = 0; m < M; m++) {
          for (let j = 0; j < n; j++) assert.ok(Object.is(part[m * n + j], full[m * N + j]), `${dtype} K=${K} N=${n}: [${m}, ${j}] ${part[m * n + j]} vs ${full[m * N + j]}`);
        }
      }
    }
  }
});

test("GEMV: the default (two far rows per pass) gives the one-row variant '_r1' bit for bit, every dtype", async () => {
  const e1 = await createWasmBackend({ threads: 1, kernels: WASM_VARIANT_KERNELS, variants: { gemvT: '_r1' } });
  const e2 = await createWasmBackend({ threads: 2, splitSmallOps: true, kernels: WASM_VARIANT_KERNELS, variants: { gemvT: '_r1' } });
  // x in place at every K (the default does this up to K = 1024, so the shapes below test it both ways).
  const e3 = await createWasmBackend({ threads: 2, splitSmallOps: true, kernels: WASM_VARIANT_KERNELS, variants: { gemvT: '_d' } });
  try {
    for (const dtype of ['f32', 'bf16', 'f16'] as const) {
      // Past K = 1024 the prepared-x kernel runs (M > 1 and N = 1 included); M·K·4 > the GEMM scratch takes its own x buffer.
      for (const [M, K, N] of [[1, 1000, 63], [1, 4096, 37], [3, 129, 17], [8, 257, 65], [1, 7, 5], [2, 16, 4], [1, 17, 3], [1, 33, 1], [3, 2049, 17], [1, 1100, 1], [8, 32768, 3]] as const) {
        const wf = rand(K * N);
        const inputs = [
          { data: rand(M * K), shape: [M, K] },
          { data: dtype === 'f32' ? wf : (narrowFromF32(wf, dtype) as unknown as Float32Array), shape: [N, K], dtype },
          { data: rand(N), shape: [N] },
        ];
        const [d, a, b, e] = await onEach([w1, e1, e2, e3], inputs, ([x, w, bias]) => ops.linear(x!, w!, bias!));
        assertIdentical(d!, a!, `_r1 ${dtype} ${M}x${K}x${N} vs the default`);
        assertIdentical(a!, b!, `_r1 ${dtype} ${M}x${K}x${N}`);
        assertIdentical(e!, a!, `_d ${dtype} ${M}x${K}x${N} vs _r1`);
      }
    }
  } finally {
    await e1.destroy();
    await e2.destroy();
    await e3.destroy();
  }
});

test('benchmarking variant attention_kv1d8b (key-blocked K/U): the shipped head-major attention\'s output, 1 and 2 threads, partial last blocks', async () => {
  for (const threads of [1, 2]) {
    const b = await createWasmBackend({ threads, kernels: WASM_VARIANT_KERNELS });
    try {
      for (const N of [1, 5, 8, 9, 31, 729]) {
        const H = 8, kr = randomFloats(N * H * 8, 10 + N), ur = randomFloats(N * H * 8, 20 + N), qr = randomFloats(H * 8, 30 + N);
        const got = tidy(() => {
          const bf = (data: Float32Array, shape: number[]) => ops.cast(ops.tensor(b, data, shape), 'bf16');
          const kb = packKeyBlocked(kr, N, H), ub = packKeyBlocked(ur, N, H);
          const q = ops.tensor(b, qr, [1, 1, H, 8]);
          const blocked = attentionKV1D8Blocked(q, bf(kb.data, [1, H, kb.nb, 8, 8]), bf(ub.data, [1, H, ub.nb, 8, 8]), N, 0.35);
          const shipped = ops.attention(q, ops.transpose(bf(kr, [1, N, H, 8]), [0, 2, 1, 3]), ops.transpose(bf(ur, [1, N, H, 8]), [0, 2, 1, 3]), { kvHeadMajor: true, scale: 0.35 });
          return [keep(blocked), keep(shipped)];
        });
        const [x, y] = [await got[0]!.read(), await got[1]!.read()];
        got.forEach((t) => t.dispose());
        for (let i = 0; i < x.length; i++) assert.ok(Math.abs(x[i]! - y[i]!) <= 1e-5 * (1 + Math.abs(y[i]!)), `N=${N} threads=${threads} [${i}]: ${x[i]} vs ${y[i]}`);
      }
    } finally {
      await b.destroy();
    }
  }
});

test('benchmarking variant attention_kv1d8c (contiguous head-major K/U, eight keys a step): the shipped attention\'s output, 1 and 2 threads, every tail length', async () => {
  for (const threads of [1, 2]) {
    const b = await createWasmBackend({ threads, kernels: WASM_VARIANT_KERNELS });
    try {
      for (const N of [1, 5, 8, 9, 15, 64, 729]) {
        const H = 8, kr = randomFloats(N * H * 8, 40 + N), ur = randomFloats(N * H * 8, 50 + N), qr = randomFloats(H * 8, 60 + N);
        const got = tidy(() => {
          const hm = (data: Float32Array) => ops.transpose(ops.cast(ops.tensor(b, data, [1, N, H, 8]), 'bf16'), [0, 2, 1, 3]);
          const q = ops.tensor(b, qr, [1, 1, H, 8]);
          const [k, u] = [hm(kr), hm(ur)];
          return [keep(attentionKV1D8Contiguous(q, k, u, 0.35)), keep(ops.attention(q, k, u, { kvHeadMajor: true, scale: 0.35 }))];
        });
        const [x, y] = [await got[0]!.read(), await got[1]!.read()];
        got.forEach((t) => t.dispose());
        for (let i = 0; i < x.length; i++) assert.ok(Math.abs(x[i]! - y[i]!) <= 1e-5 * (1 + Math.abs(y[i]!)), `N=${N} threads=${threads} [${i}]: ${x[i]} vs ${y[i]}`);
      }
    } finally {
      await b.destroy();
    }
  }
});

test('an unknown GEMV variant name is refused (it would silently time the default against itself)', async () => {
  let err: unknown;
  try {
    const b = await createWasmBackend({ threads: 1, kernels: WASM_VARIANT_KERNELS, variants: { gemvT: '_p2e' } });
    await b.destroy();
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof Error && /no GEMV variant '_p2e'/.test(err.message), String(err));
});

test('benchmarking variants (GEMV rows per pass / accumulators, FMA [K,N] GEMV, GEMM blockings): match the CPU, 1 thread = 2 threads', async () => {
  const variants = [
    { gemvT: '_r2a4', gemvN: '_fma', gemm: '_k512' },
    { gemvT: '_r4a2', gemm: '_k384', gemvUnitBytes: 4, gemvParBytes: 1 << 16 },
    { gemvT: '_r2a2', gemm: '_m64' },
    { gemvT: '_r4a1', gemm: '_p' },
    { gemvT: '_p2f' },
    { gemvT: '_d' },
  ];
  for (const v of variants) {
    const v1 = await createWasmBackend({ threads: 1, kernels: WASM_VARIANT_KERNELS, variants: v });
    const v2 = await createWasmBackend({ threads: 2, splitSmallOps: true, kernels: WASM_VARIANT_KERNELS, variants: v });
    try {
      for (const dtype of ['f32', 'bf16', 'f16'] as const) {
        for (const [M, K, N] of [[1, 1000, 63], [1, 63, 1000], [3, 129, 17], [8, 257, 65], [1, 7, 5], [MC + 1, KC + 1, NC + 1], [17, 2 * KC + 5, 129]] as const) {
          for (const transposeB of [false, true]) {
            const wf = rand(K * N);
            const inputs = [
              { data: rand(M * K), shape: [M, K] },
              { data: dtype === 'f32' ? wf : (narrowFromF32(wf, dtype) as unknown as Float32Array), shape: transposeB ? [N, K] : [K, N], dtype },
              { data: rand(N), shape: [N] },
            ];
            const what = `${JSON.stringify(v)} ${dtype} ${M}x${K}x${N} tB=${transposeB}`;
            const [want, a, b] = await onEach([cpu, v1, v2], inputs, ([x, w, bias]) => ops.matmul(x!, w!, { transposeB, bias }));
            assertClose(a!, want!, what);
            assertIdentical(a!, b!, what);
          }
        }
      }
    } finally {
      await v1.destroy();
      await v2.destroy();
    }
  }
});

test('bf16Activations: bf16-weight matmuls use bf16(x) (GEMV and GEMM, both layouts, bias, batches); 1 thread = 2 threads; other dtypes unchanged', async () => {
  const b1 = await createWasmBackend({ threads: 1, bf16Activations: true });
  const b2 = await createWasmBackend({ threads: 2, splitSmallOps: true, bf16Activations: true });
  // The benchmarking variant of the option's GEMV (one row per pass): same semantics, 1 thread = 2 threads.
  const p1 = await createWasmBackend({ threads: 1, bf16Activations: true, kernels: WASM_VARIANT_KERNELS, variants: { gemvT: '_r1' } });
  const p2 = await createWasmBackend({ threads: 2, splitSmallOps: true, bf16Activations: true, kernels: WASM_VARIANT_KERNELS, variants: { gemvT: '_r1' } });
  try {
    let worst = 0;
    for (const [M, K, N] of [[1, 1000, 63], [1, 4096, 37], [1, 63, 1000], [3, 129, 17], [8, 257, 65], [9, 257, 65], [1, 7, 5], [2, 16, 4], [1, 17, 3], [17, 129, 63], [MC + 1, KC + 1, NC + 1]] as const) {
      for (const transposeB of [false, true]) {
        const x = rand(M * K, 3), wb = narrowFromF32(rand(K * N), 'bf16'), bias = rand(N);
        const inputs = [
          { data: x, shape: [M, K] },
          { data: wb as unknown as Float32Array, shape: transposeB ? [N, K] : [K, N], dtype: 'bf16' as const },
          { data: bias, shape: [N] },
        ];
        const what = `${M}x${K}x${N} tB=${transposeB}`;
        const [ref, a, b, c1, c2] = await onEach([cpu, b1, b2, p1, p2], inputs, ([t, w, bb]) => ops.matmul(t!, w!, { transposeB, bias: bb }));
        assertIdentical(a!, b!, what);
        assertIdentical(c1!, c2!, `${what} _r1`); // (its own summation order: not the default's bits)
        // Exact semantics: Σ bf16(x)·w + bias in float64; only the f32 accumulation may differ.
        const want = new Float64Array(M * N);
        for (let m = 0; m < M; m++) {
          for (let n = 0; n < N; n++) {
            let s = bias[n]!;
            for (let k = 0; k < K; k++) s += bf16ToF32(f32ToBf16(x[m * K + k]!)) * bf16ToF32(wb[transposeB ? n * K + k : k * N + n]!);
            want[m * N + n] = s;
          }
        }
        assertClose(a!, want, `${what} vs float64 of bf16(x)`, 1e-11);
        assertClose(c1!, want, `${what} _r1 vs float64 of bf16(x)`, 1e-11);
        // Against the CPU reference (f32 x): the error the rounding adds stays within the GEMM NMSE tolerance. (Not
        // element by element: at K = 1000 with |x| ≤ 3 an output near 0 is off by ~0.1, against an atol of 1e-3.)
        const c = compare(a!, ref!, { nmse: 5e-4, atol: Infinity });
        assert.ok(c.ok, `${what} vs CPU: ${c.reason}`);
        worst = Math.max(worst, c.nmse);
      }
    }
    console.log(`NOTE: bf16Activations vs the CPU reference (f32 x), worst NMSE over the matmul shapes: ${worst.toExponential(2)}`);
    // f32 and f16 weights: bit for bit the default backend.
    for (const dtype of ['f32', 'f16'] as const) {
      const wf = rand(129 * 65);
      const inputs = [{ data: rand(3 * 129), shape: [3, 129] }, { data: dtype === 'f32' ? wf : (narrowFromF32(wf, dtype) as unknown as Float32Array), shape: [65, 129], dtype }];
      const [d, o] = await onEach([w1, b1], inputs, ([t, w]) => ops.linear(t!, w!));
      assertIdentical(d!, o!, `${dtype} weights with and without the option`);
    }
    // The rounding kernel itself, bit for bit against core/dtype's f32ToBf16: ties to even, overflow to Inf, NaN
    // quieted, subnormals, −0; packed (for the GEMV) and as f32 (for the other paths); SIMD body and scalar tail.
    const specials = [1 + 2 ** -8, 1 + 3 * 2 ** -8, -(1 + 2 ** -8), 3.3895313892515355e38, 3.4028234663852886e38, -3.4028234663852886e38, Infinity, -Infinity, NaN, -0, 0, 1e-40, -1e-45, 1.1754942e-38, 65504.5, 0.1];
    const bitsNaN = new Float32Array(new Uint32Array([0x7f800001, 0xff812345, 0x7fc00000]).buffer);
    const xs = Float32Array.from([...specials, ...bitsNaN, ...rand(61, 1e3)]);
    const k = (b1 as unknown as { cx: KernelContext }).cx;
    const src = ops.tensor(b1, xs, [xs.length]);
    const packed = ops.zeros(b1, [xs.length], 'bf16'), wide = ops.zeros(b1, [xs.length], 'f32');
    const p = (t: Tensor) => (t.storage as WasmStorage).ptr;
    k.fns[k.fn('round_bf16')]!(p(src), p(packed), xs.length, 1);
    k.fns[k.fn('round_bf16')]!(p(src), p(wide), xs.length, 0);
    const gotP = (await packed.readRaw()) as Uint16Array, gotW = new Uint32Array(((await wide.read()) as Float32Array).buffer);
    for (let i = 0; i < xs.length; i++) {
      const want = f32ToBf16(xs[i]!);
      assert.is(gotP[i], want, `round_bf16 packed ${xs[i]} (${i})`);
      assert.is(gotW[i], (want << 16) >>> 0, `round_bf16 as f32 ${xs[i]} (${i})`);
    }
    for (const t of [src, packed, wide]) t.dispose();
  } finally {
    for (const b of [b1, b2, p1, p2]) await b.destroy();
  }
});

test('batched matmul with per-batch b, and K = 0', async () => {
  const inputs = [{ data: rand(3 * 17 * 63), shape: [3, 17, 63] }, { data: rand(3 * 63 * 129), shape: [3, 63, 129] }];
  const [want, a, b] = await onEach([cpu, w1, w2], inputs, ([x, w]) => ops.matmul(x!, w!));
  assertClose(a!, want!, 'batched');
  assertIdentical(a!, b!, 'batched');
  const z = await onEach([cpu, w1], [{ data: new Float32Array(0), shape: [3, 0] }, { data: new Float32Array(0), shape: [0, 5] }, { data: rand(5), shape: [5] }], ([x, w, bias]) => ops.matmul(x!, w!, { bias }));
  assert.equal(Array.from(z[1]!), Array.from(z[0]!));
});

test('f16 weights with ±Inf, NaN, subnormals and −0 widen exactly (GEMV, GEMM, cast, embedding)', async () => {
  const K = 16, N = 8;
  const vals = new Float32Array(K * N).fill(0.5);
  const specials = [Infinity, -Infinity, NaN, 5.960464477539063e-8, -3.0517578125e-5, -0, 65504, 6.103515625e-5];
  specials.forEach((v, i) => (vals[i * K + i] = v));
  const bits = narrowFromF32(vals, 'f16');
  for (const M of [1, 9]) {
    const x = new Float32Array(M * K).fill(1);
    const [want, got] = await onEach([cpu, w1], [{ data: x, shape: [M, K] }, { data: bits as unknown as Float32Array, shape: [N, K], dtype: 'f16' }], ([a, w]) => ops.linear(a!, w!));
    for (let i = 0; i < want!.length; i++) assert.ok(Object.is(want![i], got![i]) || Math.abs(want![i]! - got![i]!) <= 1e-5 * Math.abs(want![i]!), `M=${M} [${i}]: ${got![i]} vs ${want![i]}`);
  }
  const castBack = await onEach([w1], [{ data: bits as unknown as Float32Array, shape: [K * N], dtype: 'f16' }], ([w]) => ops.cast(w!, 'f32'));
  for (let i = 0; i < bits.length; i++) assert.ok(Object.is(castBack[0]![i], f16ToF32(bits[i]!)), `cast ${i}`);
  const emb = await onEach([cpu, w1], [{ data: bits as unknown as Float32Array, shape: [N, K], dtype: 'f16' }, { data: Int32Array.from([0, 2, 7, -1, 8]), shape: [5] }], ([t, ids]) => ops.embedding(t!, ids!));
  for (let i = 0; i < emb[0]!.length; i++) assert.ok(Object.is(emb[0]![i], emb[1]![i]), `embedding ${i}`);
});

test('decode GEMVs above the split thresholds (no forced split) run on both threads, bit for bit as on one', async () => {
  // The thresholds themselves (ops-matmul.ts: jobs of 256 KiB of weights, 64 KiB for rows of ≤ 128, so a split
  // from two jobs' worth), not splitSmallOps.
  // Backends of its own: the allocator test below expects w1's heap as the earlier tests leave it.
  const d1 = await createWasmBackend({ threads: 1 }), d2 = await createWasmBackend({ threads: 2 });
  try {
    const cx = (d2 as unknown as { cx: KernelContext }).cx;
    const jobsSeen: number[] = [];
    const run = cx.runJobs.bind(cx);
    cx.runJobs = (jobs) => (jobsSeen.push(jobs.length), run(jobs));
    // [N, K, weight dtype, jobs expected]: a Qwen2-0.5B q_proj, LaVi's o_proj (3 jobs' worth: rounded to 2), each
    // threshold from just under and at it, short f32 rows up to the cap of 4 jobs per thread.
    const cases: [number, number, 'bf16' | 'f32', number][] = [
      [896, 896, 'bf16', 6], [1792, 64, 'bf16', 2], [252, 1024, 'bf16', 1], [256, 1024, 'bf16', 2],
      [1020, 64, 'bf16', 1], [1024, 64, 'bf16', 2], [1024, 128, 'f32', 8],
    ];
    for (const [N, K, dt, want] of cases) {
      for (const M of [1, 3]) {
        // Its own seeds: the shared stream (`rand`) feeds the later tests the inputs their bounds were set on.
        const x = randomFloats(M * K, 9000 + N + M), w = randomFloats(N * K, 9100 + N + K, 0.1);
        jobsSeen.length = 0;
        const [a, b, c] = await onEach([d1, d2, cpu], [{ data: x, shape: [1, M, K] }, { data: w, shape: [N, K] }], ([xt, wt]) => {
          const wc = dt === 'f32' ? wt! : ops.cast(wt!, dt);
          const y = ops.linear(xt!, wc);
          if (wc !== wt) wc.dispose();
          return y;
        });
        assert.equal(jobsSeen.filter((n) => n > 1).length ? Math.max(...jobsSeen) : 1, want, `[${N}, ${K}] ${dt}, M ${M}: jobs`);
        assertIdentical(a as Float32Array, b as Float32Array, `[${N}, ${K}] ${dt}, M ${M}`);
        assertClose(b!, c!, `[${N}, ${K}] ${dt}, M ${M} vs the CPU`);
      }
    }
  } finally {
    await d1.destroy();
    await d2.destroy();
  }
});

test('1 thread = 2 threads bit for bit: attention, norms, softmax, elementwise, rope', async () => {
  const x = { data: rand(37 * 1000, 3), shape: [37, 1000] };
  const g = { data: rand(1000), shape: [1000] };
  const cases: [string, { data: Float32Array; shape: number[] }[], (t: Tensor[]) => Tensor][] = [
    ['layerNorm', [x, g, g], ([a, b, c]) => ops.layerNorm(a!, b!, c!, 1e-5)],
    ['rmsNorm', [x, g], ([a, b]) => ops.rmsNorm(a!, b!, 1e-6)],
    ['modulatedNorm', [x, g, g, x, x], ([a, b, c, d, e]) => ops.modulatedNorm(a!, b!, { kind: 'layer', eps: 1e-6, beta: c!, dGamma: d!, dBeta: e! })],
    ['softmax', [x], ([a]) => ops.softmax(a!)],
    ['gelu', [x], ([a]) => ops.gelu(a!)],
    ['swiglu', [x, x], ([a, b]) => ops.swiglu(a!, b!)],
    ['add bcast', [x, g], ([a, b]) => ops.add(a!, b!)],
    ['rope', [{ data: rand(2 * 37 * 3 * 64), shape: [2, 37, 3, 64] }], ([a]) => ops.rope(a!, { theta: 1e4, offset: 5, rotaryDim: 64 })],
    [
      'attention',
      [{ data: rand(1 * 33 * 14 * 64), shape: [1, 33, 14, 64] }, { data: rand(1 * 300 * 2 * 64), shape: [1, 300, 2, 64] }, { data: rand(1 * 300 * 2 * 64), shape: [1, 300, 2, 64] }],
      ([q, k, v]) => ops.attention(q!, k!, v!, { causal: true, queryOffset: 200, keyLength: 250 }),
    ],
    [
      'attention as per-head GEMMs (prefill) + mask',
      [{ data: rand(2 * 40 * 4 * 24), shape: [2, 40, 4, 24] }, { data: rand(2 * 70 * 2 * 24), shape: [2, 70, 2, 24] }, { data: rand(2 * 70 * 2 * 24), shape: [2, 70, 2, 24] }, { data: rand(40 * 66, 3), shape: [40, 66] }],
      ([q, k, v, m]) => ops.attention(q!, k!, v!, { keyLength: 66, mask: m! }),
    ],
    [
      'attention as per-head GEMMs (causal prefill)',
      [{ data: rand(1 * 150 * 6 * 32), shape: [1, 150, 6, 32] }, { data: rand(1 * 160 * 2 * 32), shape: [1, 160, 2, 32] }, { data: rand(1 * 160 * 2 * 32), shape: [1, 160, 2, 32] }],
      ([q, k, v]) => ops.attention(q!, k!, v!, { causal: true, queryOffset: 5, keyLength: 158 }),
    ],
  ];
  for (const [name, inputs, fn] of cases) {
    const [want, a, b] = await onEach([cpu, w1, w2], inputs, fn);
    assertClose(a!, want!, name, 1e-7);
    assertIdentical(a!, b!, name);
  }
});

test('vector exp/tanh/gelu/silu/softmax: accurate over the whole f32 range, including ±Inf, NaN and subnormal results', async () => {
  const specials = [-Infinity, -1e30, -200, -104, -103.5, -100, -88, -87.5, -50, -10, -3, -1e-3, -1e-30, -0, 0, 1e-30, 1e-3, 0.5, 0.625, 1, 3, 10, 50, 88, 88.7, 88.8, 89, 100, 1e30, Infinity, NaN];
  const xs = Float32Array.from([...specials, ...rand(4000, 30)]);
  for (const op of ['exp', 'tanh', 'gelu_tanh', 'gelu_erf', 'silu'] as const) {
    const [want, got] = await onEach([cpu, w1], [{ data: xs, shape: [xs.length] }], ([x]) => ops.unary(op, x!));
    for (let i = 0; i < xs.length; i++) {
      const w = want![i]!, g = got![i]!;
      if (Number.isNaN(w) || !Number.isFinite(w)) {
        assert.ok(Object.is(w, g) || (Number.isNaN(w) && Number.isNaN(g)), `${op}(${xs[i]}): got ${g}, want ${w}`);
        continue;
      }
      // A few ulp relative, growing in the tails where exp's argument is large (an f32 argument carries a relative
      // error of |arg|·2^-24 into the result, in the reference's f32 input as much as ours), with an absolute
      // floor of float64 rounding (the reference's 0.5x(1 + tanh u) cancels to 0 where the true value is ~1e-22).
      assert.ok(Math.abs(g - w) <= (4e-7 + 1e-7 * Math.min(xs[i]! * xs[i]!, 1e4)) * Math.abs(w) + 1e-15 * Math.max(1, Math.abs(xs[i]!)), `${op}(${xs[i]}): got ${g}, want ${w} (rel ${Math.abs(g - w) / Math.abs(w)})`);
    }
  }
  // Softmax rows with −∞ entries, a fully masked row, and a huge spread.
  const rows = Float32Array.from([-Infinity, 0, 1, -Infinity, -Infinity, -Infinity, -Infinity, -Infinity, 1e4, -1e4, 0, 3]);
  const [want, got] = await onEach([cpu, w1], [{ data: rows, shape: [3, 4] }], ([x]) => ops.softmax(x!));
  for (let i = 0; i < rows.length; i++) assert.ok(Math.abs(got![i]! - want![i]!) <= 1e-7 * Math.abs(want![i]!) + 1e-38, `softmax[${i}]: ${got![i]} vs ${want![i]}`);
});

test('attention over heads of 8 (attention_kv1d8 and its exp for x ≤ 0): within f32 rounding of the CPU reference, 1 = 2 threads', async () => {
  // K/U f32 and bf16, head-major and token-major, key counts with a tail of 1, all split over 2 threads; q at two scales. Scores of a few
  // units: the error is the exp's and the sums' own (bound 2e-6 relative). Scores of tens (the exp's whole range,
  // its clamp included): each score's f32 rounding, up to ~2^-24 per term of Σ|q_i·k_i|·scale, passes into e^score
  // as relative error, in any f32 kernel, so the bound is 16·2^-24 times the largest such sum. Errors are relative
  // to each output's Σ p_j·|v_j| / Σ p_j (float64 from the inputs): the size of what its sum adds up, which an exp
  // error scales and f32 summation rounds, however much of it cancels (an output near zero is still a sum of
  // terms of that size). Measured worst: 3–6e-8 at scores of a few units, 0.9–1.5e-6 at tens. The exp polynomial
  // itself (shared with vexp) is held tighter by the vector exp test: its 1/6 coefficient off in the 3rd digit
  // fails that test and the tiny-LaVi one, while here it gives 3–6e-7.
  for (const qScale of [1, 30]) {
    for (const [N, dt, headMajor] of [[2917, 'bf16', true], [729, 'f32', true], [1101, 'f32', false]] as const) {
      const kv = headMajor ? [1, 8, N, 8] : [1, N, 8, 8];
      const narrow = (x: Float32Array) => (dt === 'bf16' ? (narrowFromF32(x, 'bf16') as unknown as Float32Array) : x);
      const q = rand(64, qScale), k = narrow(rand(N * 64)), v = narrow(rand(N * 64));
      const inputs = [{ data: q, shape: [1, 1, 8, 8] }, { data: k, shape: kv, dtype: dt }, { data: v, shape: kv, dtype: dt }];
      const [want, a, b] = await onEach([cpu, w1, w2], inputs, ([q, k, v]) => ops.attention(q!, k!, v!, { kvHeadMajor: headMajor }));
      const widen = async (x: Float32Array) => (dt === 'bf16' ? (await onEach([cpu], [{ data: x, shape: [N * 64], dtype: dt }], ([t]) => ops.cast(t!, 'f32')))[0]! : x);
      const kf = await widen(k), vf = await widen(v);
      const at = (h: number, j: number, i: number) => (headMajor ? (h * N + j) * 8 + i : (j * 8 + h) * 8 + i);
      let sumAbs = 0;
      const mag = new Float64Array(64); // per output (h, d): Σ p_j |v_jd| / Σ p_j
      for (let h = 0; h < 8; h++) {
        const sc = new Float64Array(N);
        for (let j = 0; j < N; j++) {
          let s = 0, dot = 0;
          for (let i = 0; i < 8; i++) s += Math.abs(q[h * 8 + i]! * kf[at(h, j, i)]!), (dot += q[h * 8 + i]! * kf[at(h, j, i)]!);
          sumAbs = Math.max(sumAbs, s / Math.sqrt(8));
          sc[j] = dot / Math.sqrt(8);
        }
        const m = Math.max(...sc);
        let z = 0;
        for (let j = 0; j < N; j++) {
          const p = Math.exp(sc[j]! - m);
          z += p;
          for (let d = 0; d < 8; d++) mag[h * 8 + d] += p * Math.abs(vf[at(h, j, d)]!);
        }
        for (let d = 0; d < 8; d++) mag[h * 8 + d] /= z;
      }
      const bound = Math.max(2e-6, 16 * 2 ** -24 * sumAbs);
      let worst = 0;
      for (let i = 0; i < want!.length; i++) worst = Math.max(worst, Math.abs(a![i]! - want![i]!) / mag[i]!);
      assert.ok(worst <= bound, `q ×${qScale}, N ${N} ${dt}${headMajor ? ' head-major' : ''}: worst relative error ${worst} > ${bound}`);
      assertIdentical(a!, b!, `attention_kv1d8 N ${N}`);
    }
  }
});

test('16-bit and i32 tensors through the layout ops, argmax and casts; masks that broadcast over keys', async () => {
  const bits = narrowFromF32(rand(3 * 17 * 5, 4), 'bf16') as unknown as Float32Array;
  const halves = narrowFromF32(rand(3 * 17 * 5, 4), 'f16') as unknown as Float32Array;
  const ints = Int32Array.from({ length: 3 * 17 * 5 }, (_, i) => (i * 7919) % 1000 - 500);
  const cases: [string, { data: Float32Array | Int32Array; shape: number[]; dtype?: DType }[], (t: Tensor[]) => Tensor][] = [
    ['transpose bf16', [{ data: bits, shape: [3, 17, 5], dtype: 'bf16' }], ([x]) => ops.cast(ops.transpose(x!, [2, 0, 1]), 'f32')],
    ['slice f16', [{ data: halves, shape: [3, 17, 5], dtype: 'f16' }], ([x]) => ops.cast(ops.slice(x!, [1, 2, 1], [2, 9, 3]), 'f32')],
    ['concat i32', [{ data: ints, shape: [3, 17, 5] }, { data: ints, shape: [3, 17, 5] }], ([a, b]) => ops.cast(ops.concat([a!, b!], 1), 'f32')],
    ['transpose i32', [{ data: ints, shape: [3, 17, 5] }], ([x]) => ops.cast(ops.transpose(x!, [1, 2, 0]), 'f32')],
    ['argmax bf16', [{ data: bits, shape: [15, 17], dtype: 'bf16' }], ([x]) => ops.cast(ops.argmax(x!), 'f32')],
    ['cast f16→bf16→f32', [{ data: halves, shape: [255], dtype: 'f16' }], ([x]) => ops.cast(ops.cast(x!, 'bf16'), 'f32')],
    ['cast i32→f32', [{ data: ints, shape: [255] }], ([x]) => ops.cast(x!, 'f32')],
    ['softmax, mask [37,1]', [{ data: rand(37 * 63, 3), shape: [37, 63] }, { data: rand(37, 3), shape: [37, 1] }], ([x, m]) => ops.softmax(x!, m!)],
    [
      'attention rows, mask [1,1,3,1]',
      [{ data: rand(3 * 4 * 16), shape: [1, 3, 4, 16] }, { data: rand(20 * 2 * 16), shape: [1, 20, 2, 16] }, { data: rand(20 * 2 * 16), shape: [1, 20, 2, 16] }, { data: rand(3, 3), shape: [1, 1, 3, 1] }],
      ([q, k, v, m]) => ops.attention(q!, k!, v!, { mask: m! }),
    ],
    [
      'attention per kv-head group (decode), mask [1,8,2,1]',
      [{ data: rand(2 * 8 * 32), shape: [1, 2, 8, 32] }, { data: rand(300 * 2 * 32), shape: [1, 300, 2, 32] }, { data: rand(300 * 2 * 32), shape: [1, 300, 2, 32] }, { data: rand(16, 3), shape: [1, 8, 2, 1] }],
      ([q, k, v, m]) => ops.attention(q!, k!, v!, { causal: true, queryOffset: 200, keyLength: 290, mask: m! }),
    ],
    [
      'attention GEMMs, mask [1,4,40,1]',
      [{ data: rand(40 * 4 * 16), shape: [1, 40, 4, 16] }, { data: rand(50 * 2 * 16), shape: [1, 50, 2, 16] }, { data: rand(50 * 2 * 16), shape: [1, 50, 2, 16] }, { data: rand(160, 3), shape: [1, 4, 40, 1] }],
      ([q, k, v, m]) => ops.attention(q!, k!, v!, { mask: m! }),
    ],
  ];
  for (const [name, inputs, fn] of cases) {
    const [want, a, b] = await onEach([cpu, w1, w2], inputs, fn);
    assertClose(a!, want!, name, 1e-7);
    assertIdentical(a!, b!, name);
  }
});

test('allocator: freed blocks are reused, large extents coalesce, live bytes return to baseline', () => {
  const b = w1;
  const base = b.memoryStats().liveBytes;
  const s1 = b.alloc(1000, 'f32');
  const p1 = s1.ptr;
  b.free(s1);
  const s2 = b.alloc(1000, 'f32');
  assert.is(s2.ptr, p1, 'same size class reuses the freed block');
  const s3 = b.alloc(900, 'f32'); // same class (≤ 25% rounding) → a different live block
  assert.is.not(s3.ptr, s2.ptr);
  b.free(s2);
  b.free(s3);
  // Two adjacent large blocks, freed, merge into one extent that fits a request of their combined size.
  const big = 3 << 20;
  const l1 = b.alloc(big / 4, 'f32'), l2 = b.alloc(big / 4, 'f32'), guard = b.alloc(big / 4, 'f32');
  b.free(l1);
  b.free(l2);
  const l3 = b.alloc(big / 2, 'f32');
  assert.is(l3.ptr, l1.ptr, 'coalesced extent reused');
  b.free(l3);
  b.free(guard);
  assert.is(b.memoryStats().liveBytes, base);
  // Tensors round-trip through the memory.
  const data = rand(12345);
  const t = ops.tensor(b, data, [12345]);
  assert.equal(Array.from(t.readSync()), Array.from(data));
  t.dispose();
  assert.is(b.memoryStats().liveBytes, base);
});

test('an allocation larger than the memory limit fails with a clear error, and the backend keeps working', async () => {
  const b = await createWasmBackend({ threads: 1, maxMemoryBytes: 64 * 2 ** 20 });
  try {
    assert.throws(() => b.alloc(100 * 2 ** 20 / 4, 'f32'), (e: Error) => e instanceof BackendError && /memory limit/.test(e.message));
    const held: unknown[] = [];
    assert.throws(() => {
      for (let i = 0; i < 100; i++) held.push(b.alloc(8 * 2 ** 20 / 4, 'f32'));
    }, (e: Error) => e instanceof BackendError && /out of memory/.test(e.message));
    for (const h of held) b.free(h);
    const x = ops.tensor(b, rand(64), [8, 8]);
    const y = await ops.matmul(x, x).read();
    assert.is(y.length, 64);
    x.dispose();
  } finally {
    await b.destroy();
  }
});

test('info, threads option, destroyed backend refuses work', async () => {
  const i = w2.info();
  assert.is(i.device, 'cpu');
  assert.match(i.description, /SIMD128/);
  assert.match(i.description, /2 threads/);
  assert.is(w1.threads, 1);
  const b = await createWasmBackend({ threads: 2 });
  const t = ops.tensor(b, rand(4), [4]);
  await b.destroy();
  assert.throws(() => ops.add(t, t), /destroyed/);
  assert.ok(b instanceof WasmBackend);
});

test('a kernel that traps (on the caller or a worker) becomes an exception, and the backend keeps working', async () => {
  const b = await createWasmBackend({ threads: 2, splitSmallOps: true });
  try {
    const internals = (b as unknown as { cx: KernelContext }).cx;
    const fn = internals.fn('scale');
    const good = b.alloc(64, 'f32') as { ptr: number };
    for (let trial = 0; trial < 20; trial++) {
      // Job 1 writes far outside the memory: whichever thread claims it traps.
      assert.throws(() => internals.runJobs([{ fn, args: [good.ptr, good.ptr, 16, 1, 0] }, { fn, args: [0xfffffff0, good.ptr, 1024, 1, 0] }]));
    }
    b.free(good);
    const x = ops.tensor(b, rand(4096), [64, 64]);
    const [want, got] = [await ops.matmul(x, x).read(), await ops.matmul(x, x).read()];
    assert.equal(Array.from(got), Array.from(want));
    x.dispose();
  } finally {
    await b.destroy();
  }
});

test('a tiny LaVi (vision tower, conditioners, decoder with KV cache) on wasm: same greedy tokens as the CPU, logits within 1e-5, 1 thread = 2 threads bit for bit', async () => {
  const cfg = tinyConfig({ eos_token_ids: [] });
  const S = cfg.vision_config.image_size;
  const image = { data: Float32Array.from({ length: 3 * S * S }, (_, i) => Math.sin(i * 0.37)), shape: [1, 3, S, S] as [number, number, number, number] };
  for (const dtype of ['f32', 'bf16'] as const) {
    const weights = randomWeights(cfg, { seed: 3, dtype });
    const runs: { tokens: number[]; logits: Float32Array }[] = [];
    for (const b of [cpu, w1, w2]) {
      const model = LaviModel.fromWeights(cfg, weights, b, { kvCapacity: 128 });
      const g = await generate(model, [1, 5, 9, 13, 2, 7], { image, maxNewTokens: 16 });
      runs.push({ tokens: g.tokens, logits: await model.readLogits() });
      model.dispose();
    }
    const [ref, a, b] = runs as [(typeof runs)[0], (typeof runs)[0], (typeof runs)[0]];
    assert.equal(a.tokens, ref.tokens, `${dtype}: greedy tokens`);
    assertClose(a.logits, ref.logits, `${dtype}: logits`, 1e-9);
    for (let i = 0; i < a.logits.length; i++) assert.ok(Math.abs(a.logits[i]! - ref.logits[i]!) < 1e-5, `${dtype}: logit ${i}`);
    assert.equal(b.tokens, a.tokens);
    assertIdentical(a.logits, b.logits, `${dtype}: logits`);
  }
});

test('a tiny LaVi with bf16 weights under bf16Activations: 1 thread = 2 threads bit for bit, logits near the CPU reference', async () => {
  const cfg = tinyConfig({ eos_token_ids: [] });
  const S = cfg.vision_config.image_size;
  const image = { data: Float32Array.from({ length: 3 * S * S }, (_, i) => Math.sin(i * 0.37)), shape: [1, 3, S, S] as [number, number, number, number] };
  const weights = randomWeights(cfg, { seed: 3, dtype: 'bf16' });
  const b1 = await createWasmBackend({ threads: 1, bf16Activations: true });
  const b2 = await createWasmBackend({ threads: 2, splitSmallOps: true, bf16Activations: true });
  try {
    const runs: { tokens: number[]; logits: Float32Array }[] = [];
    for (const b of [cpu, b1, b2]) {
      const model = LaviModel.fromWeights(cfg, weights, b, { kvCapacity: 128 });
      const g = await generate(model, [1, 5, 9, 13, 2, 7], { image, maxNewTokens: 16 });
      runs.push({ tokens: g.tokens, logits: await model.readLogits() });
      model.dispose();
    }
    const [ref, a, b] = runs as [(typeof runs)[0], (typeof runs)[0], (typeof runs)[0]];
    assert.equal(b.tokens, a.tokens);
    assertIdentical(a.logits, b.logits, 'bf16Activations logits');
    // Different arithmetic from the reference (bf16 activations in every bf16 matmul): close, not equal.
    const c = compare(a.logits, ref.logits, { nmse: 1e-3, atol: Infinity });
    assert.ok(c.ok, `bf16Activations logits vs CPU: ${c.reason}`);
    console.log(`NOTE: tiny LaVi, bf16 weights, bf16Activations vs the CPU reference: last logits NMSE ${c.nmse.toExponential(2)}; greedy tokens ${a.tokens.join(',') === ref.tokens.join(',') ? 'equal' : 'differ'}`);
  } finally {
    await b1.destroy();
    await b2.destroy();
  }
});

test('workers never keep the process alive (with and without destroy)', () => {
  const index = fileURLToPath(new URL('../backends/wasm/index.js', import.meta.url));
  const opsPath = fileURLToPath(new URL('../ops/index.js', import.meta.url));
  for (const destroy of [true, false]) {
    const script = `
      const { createWasmBackend } = await import(${JSON.stringify(index)});
      const ops = await import(${JSON.stringify(opsPath)});
      const b = await createWasmBackend({ threads: 2, splitSmallOps: true });
      const x = ops.tensor(b, new Float32Array(256 * 256).fill(1), [256, 256]);
      const y = ops.matmul(x, x).readSync();
      if (y[0] !== 256) throw new Error('bad result ' + y[0]);
      ${destroy ? 'await b.destroy();' : ''}
      console.log('done');`;
    const t0 = Date.now();
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30000 });
    assert.is(r.signal, null, `child ${destroy ? 'with' : 'without'} destroy() did not exit by itself (killed by ${r.signal})`);
    assert.is(r.status, 0, r.stderr);
    assert.match(r.stdout, /done/);
    assert.ok(Date.now() - t0 < 30000);
  }
});

test.after(async () => {
  await w1.destroy();
  await w2.destroy();
});

test.run();
