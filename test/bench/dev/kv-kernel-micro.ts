// Dev micro-benchmark (issue 17): the attention_kv1d8 kernel called directly on the calling thread, over one
// cached K/U, against the whole attention op (dispatch, jobs, allocation) on the same data. Separates the kernel's
// own time from the op's overhead.
//   npx tsc -p tsconfig.json && flock /tmp/lavi-bench.lock node dist/test/bench/dev/kv-kernel-micro.js [--keys 729,2916] [--threads 2]
import { WasmBackend } from '../../../backends/wasm/index.js';
import type { KernelContext } from '../../../backends/wasm/jobs.js';
import { ptr } from '../../../backends/wasm/jobs.js';
import { randomFloats as random } from '../../../core/rng.js';
import type { Tensor } from '../../../core/tensor.js';
import { attention, cast, linear, tensor, transpose } from '../../../ops/index.js';
import { WASM_VARIANT_KERNELS } from './wasm-variants.js';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : dflt;
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

async function main(): Promise<void> {
  const threads = Number(arg('threads', '2')), H = 8;
  const names = arg('kernels', 'attention_kv1d8_bf16,attention_kv1d8c_bf16').split(',');
  const keyCounts = arg('keys', '729,2916').split(',').map(Number);
  for (const [n, v] of [['threads', threads], ...keyCounts.map((k) => ['keys', k] as const)] as const) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`kv-kernel-micro: --${n} must be a positive integer, got ${v}`);
  }
  const be = await WasmBackend.create({ threads, kernels: WASM_VARIANT_KERNELS });
  const kernel = (name: string) => (cx as unknown as { fns: ((...a: number[]) => void)[] }).fns[cx.fn(name)]!;
  const cx = (be as unknown as { cx: KernelContext }).cx;
  const q = tensor(be, random(H * 8, 8), [1, 1, H, 8]);
  const x = tensor(be, random(896, 7), [1, 896]);
  console.log(`kv-kernel-micro: ${H} heads of 8, wasm ${threads} threads; load ${(await import('node:os')).loadavg()[0]!.toFixed(2)}`);
  for (const N of keyCounts) {
    const mk = (seed: number) => {
      const t = tensor(be, random(N * H * 8, seed), [1, N, H, 8]);
      const c = cast(t, 'bf16');
      const hm = transpose(c, [0, 2, 1, 3]);
      t.dispose(); c.dispose();
      return hm;
    };
    const k = mk(1), u = mk(2);
    const rows = Math.round((N * H * 8 * 2 * 2) / 2 / 896);
    const wt = tensor(be, random(rows * 896, 3), [rows, 896]);
    const w = cast(wt, 'bf16');
    const out = tensor(be, new Float32Array(H * 8), [1, 1, H, 8]);
    const scratch = cx.heap.alloc((N + 8) * 4 * H);
    const reps = 2000;
    const kStride = 16, hStride = N * 16;
    const timeIt = (fn: () => void) => {
      for (let i = 0; i < 50; i++) fn();
      const t0 = performance.now();
      for (let i = 0; i < reps; i++) fn();
      return ((performance.now() - t0) / reps) * 1000;
    };
    const timeAsync = async (fn: () => Tensor) => {
      const first = fn();
      await first.read();
      first.dispose();
      const t0 = performance.now();
      let last: Tensor | null = null;
      for (let i = 0; i < reps; i++) { last?.dispose(); last = fn(); }
      await last!.read(); last!.dispose();
      return ((performance.now() - t0) / reps) * 1000;
    };
    // every kernel agrees with the attention op
    const refT = attention(q, k, u, { kvHeadMajor: true, scale: 0.35 });
    const ref = await refT.read();
    refT.dispose();
    for (const name of names) {
      kernel(name)(ptr(q), ptr(k), ptr(u), ptr(out), scratch, N, kStride, kStride, 0.35, 0, H, hStride, hStride);
      const got = await out.read();
      let d = 0;
      for (let i = 0; i < ref.length; i++) d = Math.max(d, Math.abs(ref[i]! - got[i]!));
      if (!(d < 1e-5)) throw new Error(`kv-kernel-micro: ${name} disagrees with the attention op at N = ${N}: max |Δ| ${d}`);
    }
    const res = new Map<string, number[]>();
    for (let r = 0; r < 5; r++) {
      for (const name of names) {
        const f = kernel(name);
        const t = timeIt(() => f(ptr(q), ptr(k), ptr(u), ptr(out), scratch, N, kStride, kStride, 0.35, 0, H, hStride, hStride));
        res.set(`${name} direct, 1 thread`, [...(res.get(`${name} direct, 1 thread`) ?? []), t]);
      }
      if (threads > 1) {
        const fnI = cx.fn(names[0]!);
        const per = (N + 8) * 4 * 4;
        const jobs = [0, 1].map((t) => ({ fn: fnI, args: [ptr(q), ptr(k), ptr(u), ptr(out), scratch + t * per, N, kStride, kStride, 0.35, 4 * t, 4 * t + 4, hStride, hStride] }));
        const tj = timeIt(() => cx.runJobs(jobs));
        res.set(`${names[0]} as 2 pool jobs of 4 heads`, [...(res.get(`${names[0]} as 2 pool jobs of 4 heads`) ?? []), tj]);
      }
      const t2 = await timeAsync(() => attention(q, k, u, { kvHeadMajor: true, scale: 0.35 }));
      res.set('attention op', [...(res.get('attention op') ?? []), t2]);
      const t3 = await timeAsync(() => linear(x, w));
      res.set(`GEMV [${rows}, 896] op (same bytes, cached)`, [...(res.get(`GEMV [${rows}, 896] op (same bytes, cached)`) ?? []), t3]);
    }
    const bytes = N * H * 8 * 2 * 2;
    console.log(`N = ${N}: K/U ${(bytes / 1024).toFixed(0)} KiB bf16 (cached)`);
    for (const [name, ts] of res) {
      const t = median(ts);
      console.log(`  ${name.padEnd(44)} ${t.toFixed(2).padStart(7)} µs  ${(bytes / t / 1e3).toFixed(1).padStart(5)} GB/s  ${((t * 1000) / (N * H)).toFixed(2)} ns per key-head`);
    }
    cx.heap.free(scratch, (N + 8) * 4 * H);
    for (const t of [k, u, wt, w, out]) t.dispose();
  }
  await be.destroy();
}
main().catch((e: Error) => { console.error(e.message); process.exit(2); });
