// What one LaVi conditioner site costs per decoded token on the wasm backend, op by op, against the plain RMSNorm
// that concat runs at the same place (issue 17: where LaVi's decode time goes at lavi-0.5b's shapes).
//
//   npx tsc -p tsconfig.json && flock /tmp/lavi-bench.lock node dist/test/bench/conditioner-site-bench.js
//     [--width 64] [--heads 8] [--keys 729,2916] [--threads 2] [--rounds 3] [--cold]
//
// Beside them, the attention concat runs once per layer over its cache (N + 64 keys), the cost a LaVi layer's two
// sites replace. d = 896 (Qwen2-0.5B); q_proj [r, d] and o_proj [2d, r] in bf16; K/U [1, H, N, r/H] bf16 head-major (one set,
// shared by every site, so it stays in cache across a decode step as here). Each row: mean over 2,000 calls,
// one round per line (the rounds show the noise). --cold: before each (timed) call, an untimed GEMV streams 23.4 MiB
// of other weights, as a decoder layer does between two sites, so weights and K/U come from L3 or DRAM as in
// the model (300 calls per figure).

import { WasmBackend } from '../../backends/wasm/index.js';
import { tidy } from '../../core/index.js';
import { randomFloats as random } from '../../core/rng.js';
import type { Tensor } from '../../core/tensor.js';
import { attention, cast, linear, modulatedNorm, reshape, rmsNorm, sliceAxis, tensor, transpose } from '../../ops/index.js';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : dflt;
}

async function main(): Promise<void> {
  const threads = Number(arg('threads', '2')), r = Number(arg('width', '64')), H = Number(arg('heads', '8'));
  const cold = process.argv.includes('--cold');
  const rounds = Number(arg('rounds', '3')), reps = cold ? 300 : 2000, d = 896, dh = r / H;
  for (const [n, v] of [['width', r], ['heads', H], ['threads', threads], ['rounds', rounds], ['head dim (width / heads)', dh]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`conditioner-site-bench: ${n} must be a positive integer, got ${v}`);
  }
  const be = await WasmBackend.create({ threads });
  const bf16 = (shape: number[], seed: number) => {
    const t = tensor(be, random(shape.reduce((a, b) => a * b), seed), shape);
    const c = cast(t, 'bf16');
    t.dispose();
    return c;
  };
  const x = tensor(be, random(d, 1), [1, 1, d]);
  const gamma = tensor(be, random(d, 2), [d]);
  const Wq = bf16([r, d], 3), bq = tensor(be, random(r, 4), [r]);
  const Wo = bf16([2 * d, r], 5), bo = tensor(be, random(2 * d, 6), [2 * d]);
  // --cold: a layer's worth of other weights (23.4 MiB bf16), streamed before each timed call.
  const evictW = cold ? bf16([13696, 896], 9) : null, evictX = cold ? tensor(be, random(896, 10), [1, 1, 896]) : null;
  const evict = () => (evictW ? linear(evictX!, evictW).dispose() : undefined);
  console.log(`conditioner-site-bench: r ${r}, ${H} heads of ${dh}; wasm ${threads} threads; ${cold ? 'cold (23.4 MiB streamed before each call)' : 'cache-hot'}; load ${(await import('node:os')).loadavg()[0]!.toFixed(2)}`);
  const keyCounts = arg('keys', '729,2916').split(',').map(Number);
  if (keyCounts.some((n) => !Number.isInteger(n) || n < 1)) throw new Error(`conditioner-site-bench: --keys must be positive integers, got ${arg('keys', '')}`);
  for (const N of keyCounts) {
    const K = transpose(bf16([1, N, H, dh], 7), [0, 2, 1, 3]), U = transpose(bf16([1, N, H, dh], 8), [0, 2, 1, 3]);
    const opts = { causal: false, scale: 1 / Math.sqrt(dh), kvHeadMajor: true };
    const xhat = rmsNorm(x, null, 1e-6);
    const q = reshape(linear(xhat, Wq, bq), [1, 1, H, dh]);
    const a = reshape(attention(q, K, U, opts), [1, 1, r]);
    const delta = linear(a, Wo, bo);
    const dG = sliceAxis(delta, 2, 0, d), dB = sliceAxis(delta, 2, d, 2 * d);
    // What concat runs per layer instead of two sites: its decode attention over the visual tokens and 64 text
    // tokens (Qwen2-0.5B: 14 query heads, 2 KV heads of 64, f32 cache), the newest position attending.
    const S = N + 64;
    const cq = tensor(be, random(14 * 64, 11), [1, 1, 14, 64]);
    const ck = tensor(be, random(S * 128, 12), [1, S, 2, 64]), cv = tensor(be, random(S * 128, 13), [1, S, 2, 64]);
    const copts = { causal: true, queryOffset: S - 1, keyLength: S, scale: 1 / 8 };
    const steps: [string, () => Tensor][] = [
      [`concat attention (${S} keys)`, () => attention(cq, ck, cv, copts)],
      ['rmsNorm (concat)', () => rmsNorm(x, gamma, 1e-6)],
      ['x̂', () => rmsNorm(x, null, 1e-6)],
      ['q_proj', () => linear(xhat, Wq, bq)],
      ['attention', () => attention(q, K, U, opts)],
      ['o_proj', () => linear(a, Wo, bo)],
      ['slices', () => tidy(() => (sliceAxis(delta, 2, d, 2 * d), sliceAxis(delta, 2, 0, d)))],
      ['modulatedNorm', () => modulatedNorm(x, gamma, { kind: 'rms', eps: 1e-6, dGamma: dG, dBeta: dB })],
      ['whole site', () => tidy(() => {
        const qq = reshape(linear(rmsNorm(x, null, 1e-6), Wq, bq), [1, 1, H, dh]);
        const de = linear(reshape(attention(qq, K, U, opts), [1, 1, r]), Wo, bo);
        return modulatedNorm(x, gamma, { kind: 'rms', eps: 1e-6, dGamma: sliceAxis(de, 2, 0, d), dBeta: sliceAxis(de, 2, d, 2 * d) });
      })],
    ];
    console.log(`\nN = ${N} visual tokens (µs per call)`);
    console.log(steps.map(([n]) => n).join(' | '));
    for (let round = 0; round < rounds; round++) {
      const row: string[] = [];
      for (const [, fn] of steps) {
        await fn().read();
        let spent = 0;
        let last: Tensor | null = null;
        if (cold) {
          for (let i = 0; i < reps; i++) {
            last?.dispose();
            evict();
            const t0 = performance.now(); // wasm kernels run synchronously: the call is done when it returns
            last = fn();
            spent += performance.now() - t0;
          }
        } else {
          const t0 = performance.now();
          for (let i = 0; i < reps; i++) {
            last?.dispose();
            last = fn();
          }
          await last!.read();
          spent = performance.now() - t0;
        }
        await last!.read();
        last!.dispose();
        row.push(((spent / reps) * 1000).toFixed(1));
      }
      console.log(row.join(' | '));
    }
    for (const t of [K, U, xhat, q, a, delta, dG, dB, cq, ck, cv]) t.dispose();
  }
  evictW?.dispose(), evictX?.dispose();
  await be.destroy();
}

main().catch((e: Error) => {
  console.error(e.message);
  process.exit(2);
});
