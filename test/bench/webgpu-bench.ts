// WebGPU backend benchmark, side by side with the CPU reference in one run:
//   matmul 1024³ (GFLOP/s), GEMV 1×4096·[4096,4096]ᵀ (GB/s of weights read; f32 and packed bf16/f16),
//   fused attention vs the unfused matmul → softmax → matmul at 1×1024 and 128×128 (query × key),
//   layerNorm / modulatedNorm / softmax.
// A timed run is the op encoded and executed to completion (backend.sync()); inputs are resident, the result is
// not read back (reads are measured separately for matmul). Prints a table and writes bench-results/webgpu.json.
//
//   node dist/test/bench/webgpu-bench.js [--runs 7] [--no-cpu] [--only matmul,gemv,attention,norm]
//
// This machine is shared and noisy: compare figures taken in the same run.

import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { CpuBackend } from '../../backends/cpu/index.js';
import { createWebGPUBackend, type WebGPUBackend, type WebGPUBackendOptions } from '../../backends/webgpu/index.js';
import type { Backend } from '../../core/backend.js';
import type { Tensor } from '../../core/tensor.js';
import * as ops from '../../ops/index.js';
import { randomFloats as random } from '../../core/rng.js';
import { unfusedAttentionFreshKV } from './attention-unfused.js';

interface Row {
  name: string;
  backend: string;
  medianMs: number;
  minMs: number;
  runs: number;
  /** Process CPU milliseconds per run (all threads). */
  cpuMs: number;
  /** GFLOP/s or GB/s, per `unit` (wall clock). */
  rate?: number;
  /** The same work per CPU-second of this process (all threads): what the kernels achieve per core they get —
   *  on a loaded shared machine the wall-clock rate mostly measures the other tenants. */
  ratePerCpuS?: number;
  unit?: string;
  note?: string;
}

const args = process.argv.slice(2);
const flag = (n: string): string | undefined => {
  const i = args.indexOf(`--${n}`);
  return i >= 0 ? args[i + 1] : undefined;
};
const RUNS = Number(flag('runs') ?? 7);
const NO_CPU = args.includes('--no-cpu');
const ONLY = flag('only')?.split(',');
const want = (s: string) => !ONLY || ONLY.includes(s);

/** Wall time per run (median, min) and process CPU time per run (all threads, lavapipe's included: on a shared,
 *  loaded machine it shows the work done independently of how much of the CPU we were given). */
async function time(b: Backend, runs: number, fn: () => Tensor): Promise<{ median: number; min: number; n: number; cpuMs: number }> {
  // Warm-up (compiles pipelines, fills pools).
  (fn()).dispose();
  await b.sync();
  const ts: number[] = [];
  const c0 = process.cpuUsage();
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    const out = fn();
    await b.sync();
    ts.push(performance.now() - t0);
    out.dispose();
  }
  const c = process.cpuUsage(c0);
  ts.sort((x, y) => x - y);
  return { median: ts[Math.floor(ts.length / 2)]!, min: ts[0]!, n: ts.length, cpuMs: (c.user + c.system) / 1000 / runs };
}

const rows: Row[] = [];
function report(r: Row): void {
  rows.push(r);
  const rate = r.rate !== undefined ? `${r.rate.toFixed(2)} ${r.unit}${r.ratePerCpuS !== undefined && Number.isFinite(r.ratePerCpuS) ? ` (${r.ratePerCpuS.toFixed(2)} per CPU-s)` : ''}` : '';
  console.log(`${r.name.padEnd(50)} ${r.backend.padEnd(7)} ${r.medianMs.toFixed(2).padStart(9)} ms (min ${r.minMs.toFixed(2)}, cpu ${r.cpuMs.toFixed(2)}, n=${r.runs})  ${rate}${r.note ? `  ${r.note}` : ''}`);
}

async function bench(name: string, backends: Backend[], runs: number, make: (b: Backend) => () => Tensor, rate?: (ms: number) => [number, string], note?: string): Promise<void> {
  for (const b of backends) {
    const fn = make(b);
    const r = runs > 0 ? await time(b, b.name === 'cpu' ? Math.min(runs, 3) : runs, fn) : null;
    if (!r) continue;
    const [v, unit] = rate ? rate(r.median) : [undefined, undefined];
    const perCpu = rate ? rate(r.cpuMs)[0] : undefined;
    report({ name, backend: b.name, medianMs: r.median, minMs: r.min, runs: r.n, cpuMs: r.cpuMs, rate: v, ratePerCpuS: perCpu, unit, note });
  }
}

async function main(): Promise<void> {
  let gpu: WebGPUBackend;
  try {
    gpu = await createWebGPUBackend();
  } catch (e) {
    console.log(`NOTE: WebGPU unavailable (${(e as Error).message}); nothing to benchmark`);
    return;
  }
  const cpu = new CpuBackend();
  const info = gpu.info();
  console.log(`WebGPU: ${info.description}${info.software ? ' (software)' : ''}`);
  console.log(`host: ${cpus().length} CPUs, load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}\n`);
  const both: Backend[] = NO_CPU ? [gpu] : [gpu, cpu];
  const keep: Tensor[] = [];
  const up = (b: Backend, data: Float32Array, shape: number[], dtype: 'f32' | 'f16' | 'bf16' = 'f32') => {
    const t = ops.tensor(b, data, shape, dtype);
    keep.push(t);
    return t;
  };

  try {
    if (want('matmul')) {
      const n = 1024;
      const A = random(n * n, 1), B = random(n * n, 2);
      const flops = (ms: number): [number, string] => [(2 * n * n * n) / ms / 1e6, 'GFLOP/s'];
      await bench('matmul 1024x1024·1024x1024', both, RUNS, (b) => {
        const a = up(b, A, [n, n]), w = up(b, B, [n, n]);
        return () => ops.matmul(a, w);
      }, flops);
      await bench('matmul 1024x1024·[1024,1024]ᵀ (linear)', [gpu], RUNS, (b) => {
        const a = up(b, A, [n, n]), w = up(b, B, [n, n]);
        return () => ops.linear(a, w);
      }, flops);
      await bench('matmul 128x896·[4864,896]ᵀ (Qwen MLP prefill)', both, RUNS, (b) => {
        const a = up(b, random(128 * 896, 3), [128, 896]), w = up(b, random(4864 * 896, 4), [4864, 896]);
        return () => ops.linear(a, w);
      }, (ms) => [(2 * 128 * 896 * 4864) / ms / 1e6, 'GFLOP/s']);
      // Including the upload of a and the readback of the result (what a one-shot caller waits for).
      {
        const w = up(gpu, B, [n, n]);
        const ts: number[] = [];
        for (let i = 0; i < Math.max(3, Math.floor(RUNS / 2)); i++) {
          const t0 = performance.now();
          const a = ops.tensor(gpu, A, [n, n]);
          const o = ops.matmul(a, w);
          await o.read();
          ts.push(performance.now() - t0);
          a.dispose();
          o.dispose();
        }
        ts.sort((x, y) => x - y);
        const med = ts[Math.floor(ts.length / 2)]!;
        report({ name: 'matmul 1024³ incl. upload a + readback', backend: gpu.name, medianMs: med, minMs: ts[0]!, runs: ts.length, cpuMs: NaN, rate: flops(med)[0], unit: 'GFLOP/s' });
      }
    }

    if (want('gemv')) {
      const K = 4096, N = 4096;
      const X = random(K, 5), W = random(N * K, 6);
      // The storage-buffer kernel on the same device, for the ratio (textureWeightBytes 0: no texture copies).
      const plain = await createWebGPUBackend({ context: gpu.ctx, textureWeightBytes: 0, name: 'webgpu-buf' } as WebGPUBackendOptions);
      try {
        for (const dt of ['f32', 'bf16', 'f16'] as const) {
          const bytes = N * K * (dt === 'f32' ? 4 : 2);
          const note = dt === 'f32' ? '64 MiB of weights' : '32 MiB of packed weights';
          const k0 = keep.length;
          await bench(`gemv 1x4096·[4096,4096]ᵀ ${dt} weights`, dt === 'f32' ? both : [gpu], RUNS * 2, (b) => {
            const x = up(b, X, [1, K]), w = up(b, W, [N, K], dt);
            return () => ops.linear(x, w);
          }, (ms) => [bytes / ms / 1e6, 'GB/s'], note);
          await bench(`gemv 1x4096·[4096,4096]ᵀ ${dt} weights, storage-buffer kernel`, [plain], RUNS * 2, (b) => {
            const x = up(b, X, [1, K]), w = up(b, W, [N, K], dt);
            return () => ops.linear(x, w);
          }, (ms) => [bytes / ms / 1e6, 'GB/s'], note);
          for (const t of keep.splice(k0)) t.dispose();
        }
      } finally {
        await plain.destroy();
      }
      console.log(`  (webgpu rows: GEMV weights read from texture copies when the backend keeps them — textureWeightBytes, default on software adapters; webgpu-buf rows: textureWeightBytes 0)`);
    }

    if (want('attention')) {
      // Qwen2-0.5B-like heads: 14 query heads over 2 kv heads, head dim 64.
      const Hq = 14, Hkv = 2, D = 64, g = Hq / Hkv;
      for (const [Tq, S] of [[1, 1024], [128, 128]] as const) {
        const Q = random(Tq * Hq * D, 7), Kd = random(S * Hkv * D, 8), Vd = random(S * Hkv * D, 9);
        const scale = 1 / Math.sqrt(D);
        await bench(`attention fused ${Tq}x${S} (14q/2kv heads, D 64)`, both, RUNS * 2, (b) => {
          const q = up(b, Q, [1, Tq, Hq, D]), k = up(b, Kd, [1, S, Hkv, D]), v = up(b, Vd, [1, S, Hkv, D]);
          return () => ops.attention(q, k, v, { causal: false, scale });
        });
        // Unfused from the same token-major tensors, as a model without the fused kernel runs it: move heads to
        // the front (transposes), scale, q·kᵀ, softmax, ·v, and move heads back.
        await bench(`attention unfused incl. layout transposes ${Tq}x${S}`, [gpu], RUNS * 2, (b) => {
          const q = up(b, Q, [1, Tq, Hkv, g, D]), k = up(b, Kd, [S, Hkv, D]), v = up(b, Vd, [S, Hkv, D]);
          return () => {
            const qh = ops.transpose(q, [0, 2, 1, 3, 4]);
            const qs = ops.scale(qh, scale);
            const kh = ops.transpose(k, [1, 0, 2]);
            const vh = ops.transpose(v, [1, 0, 2]);
            const s = ops.matmul(ops.reshape(qs, [Hkv, Tq * g, D]), kh, { transposeB: true });
            const p = ops.softmax(s);
            const o = ops.matmul(p, vh);
            const out = ops.transpose(ops.reshape(o, [Hkv, Tq, g, D]), [1, 0, 2, 3]);
            for (const t of [qh, qs, kh, vh, s, p, o]) t.dispose();
            return out;
          };
        });
        /** Head-major tensors prepared outside the timing: [Hkv, Tq·g, D] queries (scale folded in), [Hkv, S, D] keys, values. */
        const headMajor = (b: Backend) => {
          const q = ops.tensor(b, Q, [1, Tq, Hkv, g, D]);
          const qh = ops.reshape(ops.scale(ops.transpose(q, [0, 2, 1, 3, 4]), scale), [Hkv, Tq * g, D]);
          const kh = ops.transpose(ops.tensor(b, Kd, [S, Hkv, D]), [1, 0, 2]);
          const vh = ops.transpose(ops.tensor(b, Vd, [S, Hkv, D]), [1, 0, 2]);
          keep.push(q, qh, kh, vh);
          return { qh, kh, vh };
        };
        // Unfused on head-major tensors prepared outside the timing: [Hkv, Tq·g, D] queries (scale folded in),
        // [Hkv, S, D] keys and values → scores [Hkv, Tq·g, S] → softmax → · V.
        await bench(`attention unfused, head-major inputs given ${Tq}x${S}`, [gpu], RUNS * 2, (b) => {
          const { qh, kh, vh } = headMajor(b);
          return () => {
            const s = ops.matmul(qh, kh, { transposeB: true });
            const p = ops.softmax(s);
            const o = ops.matmul(p, vh);
            s.dispose();
            p.dispose();
            return o;
          };
        });
        // As in a real prefill, K and V are new tensors at every call (here: copies), so any per-call preparation
        // of K/V (the fused kernel's texture copies on software adapters) is timed too; both rows pay the copies.
        await bench(`attention fused, K/V written each call ${Tq}x${S}`, [gpu], RUNS * 2, (b) => {
          const q = up(b, Q, [1, Tq, Hq, D]), k = up(b, Kd, [1, S, Hkv, D]), v = up(b, Vd, [1, S, Hkv, D]);
          return () => {
            const k2 = ops.copy(k), v2 = ops.copy(v);
            const o = ops.attention(q, k2, v2, { causal: false, scale });
            k2.dispose();
            v2.dispose();
            return o;
          };
        });
        await bench(`attention unfused head-major, K/V written each call ${Tq}x${S}`, [gpu], RUNS * 2, (b) => {
          const { qh, kh, vh } = headMajor(b);
          return unfusedAttentionFreshKV(ops, qh, kh, vh);
        });
      }
    }

    if (want('norm')) {
      await bench('layerNorm [128,4096] γ β', both, RUNS * 2, (b) => {
        const x = up(b, random(128 * 4096, 10), [128, 4096]), ga = up(b, random(4096, 11), [4096]), be = up(b, random(4096, 12), [4096]);
        return () => ops.layerNorm(x, ga, be);
      }, (ms) => [(2 * 128 * 4096 * 4) / ms / 1e6, 'GB/s']);
      await bench('modulatedNorm rms [128,896] γ β Δγ Δβ', both, RUNS * 2, (b) => {
        const x = up(b, random(128 * 896, 13), [128, 896]), ga = up(b, random(896, 14), [896]), be = up(b, random(896, 15), [896]);
        const dg = up(b, random(128 * 896, 16), [128, 896]), db = up(b, random(128 * 896, 17), [128, 896]);
        return () => ops.modulatedNorm(x, ga, { kind: 'rms', eps: 1e-6, beta: be, dGamma: dg, dBeta: db });
      }, (ms) => [(4 * 128 * 896 * 4) / ms / 1e6, 'GB/s']);
      await bench('softmax [32,128,128]', both, RUNS * 2, (b) => {
        const x = up(b, random(32 * 128 * 128, 18), [32, 128, 128]);
        return () => ops.softmax(x);
      }, (ms) => [(2 * 32 * 128 * 128 * 4) / ms / 1e6, 'GB/s']);
      await bench('rmsNorm [1,896] (decode-size op: dispatch overhead)', [gpu], RUNS * 4, (b) => {
        const x = up(b, random(896, 19), [1, 896]), ga = up(b, random(896, 20), [896]);
        return () => ops.rmsNorm(x, ga);
      });
    }
  } finally {
    for (const t of keep) t.dispose();
    const stats = { ...gpu.rt.stats };
    await gpu.destroy();
    mkdirSync('bench-results', { recursive: true });
    const out = { date: new Date().toISOString(), device: info, host: { cpus: cpus().length, loadavg: loadavg() }, stats, rows };
    writeFileSync('bench-results/webgpu.json', JSON.stringify(out, null, 1));
    console.log(`\nwrote bench-results/webgpu.json (${rows.length} rows); kernels compiled: ${stats.pipelines}, submits: ${stats.submits}, dispatches: ${stats.dispatches}`);
  }
}

await main();
