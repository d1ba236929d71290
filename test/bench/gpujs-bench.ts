// gpu.js backend matmul benchmark: M×K·K×N (default 1024³) in every available gpu.js mode, the naive kernel (one
// output per thread, a K-long dot product: the gpu.js README kernel) side by side with the register-blocked one
// (2×2 outputs per thread). Inputs are uploaded once (resident where the mode keeps data resident); a timed run is
// the op plus reading the result back to the host, i.e. what a caller waits for. With --resident, a second figure
// issues `runs` ops back to back and reads only the last result (one readback amortised over the runs): the rate
// with data resident on the device, as a chain of kernels sees it. Prints a table and writes
// bench-results/gpujs.json.
//
//   node dist/test/bench/gpujs-bench.js [--modes webasm,webasm-threads,webgpu,cpu,headlessgl] [--size 1024]
//                                       [--runs 5] [--kernels naive,blocked] [--resident]
//
// This machine is shared and noisy: compare figures taken in the same run. Besides the wall-clock rate, each row
// gives GFLOP per CPU-second of the process (all its threads), which depends much less on the CPU share it got.

import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { createGpuJsBackend, type GpuJsBackend, type GpuJsBackendOptions } from '../../backends/gpujs/index.js';
import type { Tensor } from '../../core/tensor.js';
import * as ops from '../../ops/index.js';
import { randomFloats as random } from '../../core/rng.js';

interface Row {
  mode: string;
  kernel: 'naive' | 'blocked';
  ok: boolean;
  error?: string;
  firstMs?: number;
  medianMs?: number;
  minMs?: number;
  maxMs?: number;
  /** --resident: ms per op with `runs` ops issued back to back and one readback at the end. */
  residentMs?: number;
  residentGflops?: number;
  gflops?: number;
  maxRelErr?: number;
  runs?: number;
  /** CPU time of the whole process (all threads: lavapipe's, gpu.js's workers) per run, and GFLOP per CPU-second:
   *  on a shared machine the wall-clock rate depends on the CPU share the process got, this one much less. */
  cpuMsPerRun?: number;
  gflopsPerCpuSecond?: number;
  description?: string;
}

const MODES: Record<string, GpuJsBackendOptions> = {
  webasm: { mode: 'webasm' },
  'webasm-threads': { mode: 'webasm', threads: true },
  webgpu: { mode: 'webgpu' },
  cpu: { mode: 'cpu' },
  headlessgl: { mode: 'headlessgl' },
};

/** Largest relative error over sampled entries against a float64 dot product. */
function check(out: Float32Array, a: Float32Array, b: Float32Array, M: number, K: number, N: number): number {
  let worst = 0;
  for (let s = 0; s < 64; s++) {
    const m = (s * 7919) % M, n = (s * 104729) % N;
    let ref = 0, mag = 0;
    for (let k = 0; k < K; k++) {
      ref += a[m * K + k]! * b[k * N + n]!;
      mag += Math.abs(a[m * K + k]! * b[k * N + n]!);
    }
    worst = Math.max(worst, Math.abs(out[m * N + n]! - ref) / (mag || 1));
  }
  return worst;
}

async function bench(label: string, opts: GpuJsBackendOptions, kernel: 'naive' | 'blocked', size: number, runs: number, resident: boolean): Promise<Row> {
  const M = size, K = size, N = size;
  let backend: GpuJsBackend;
  try {
    backend = await createGpuJsBackend({ ...opts, matmul: kernel });
  } catch (e) {
    return { mode: label, kernel, ok: false, error: (e as Error).message };
  }
  const a = random(M * K, 1), b = random(K * N, 2);
  const ta: Tensor = ops.tensor(backend, a, [M, K]);
  const tb: Tensor = ops.tensor(backend, b, [K, N]);
  try {
    await backend.sync();
    let t0 = performance.now();
    const first = ops.matmul(ta, tb);
    const firstOut = (await first.read()) as Float32Array;
    const firstMs = performance.now() - t0;
    first.dispose();
    const maxRelErr = check(firstOut, a, b, M, K, N);
    const times: number[] = [];
    const cpu0 = process.cpuUsage();
    for (let r = 0; r < runs; r++) {
      t0 = performance.now();
      const out = ops.matmul(ta, tb);
      await out.read();
      times.push(performance.now() - t0);
      out.dispose();
    }
    const cpu = process.cpuUsage(cpu0);
    const cpuMsPerRun = (cpu.user + cpu.system) / 1000 / runs;
    times.sort((x, y) => x - y);
    const medianMs = times[Math.floor(times.length / 2)]!;
    let residentMs: number | undefined;
    if (resident) {
      // ops issued back to back (async modes queue them), every result but the last dropped unread
      t0 = performance.now();
      let last: Tensor | null = null;
      for (let r = 0; r < runs; r++) {
        last?.dispose();
        last = ops.matmul(ta, tb);
      }
      await last!.read();
      residentMs = (performance.now() - t0) / runs;
      last!.dispose();
    }
    return {
      mode: label, kernel, ok: true, firstMs, medianMs, minMs: times[0]!, maxMs: times[times.length - 1]!, gflops: (2 * M * N * K) / medianMs / 1e6, maxRelErr, runs,
      ...(residentMs !== undefined ? { residentMs, residentGflops: (2 * M * N * K) / residentMs / 1e6 } : {}),
      cpuMsPerRun, gflopsPerCpuSecond: (2 * M * N * K) / cpuMsPerRun / 1e6,
      description: backend.info().description,
    };
  } catch (e) {
    return { mode: label, kernel, ok: false, error: (e as Error).message };
  } finally {
    ta.dispose();
    tb.dispose();
    await backend.destroy();
  }
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const flag = (k: string) => {
    const i = args.indexOf(`--${k}`);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const modes = (flag('modes') ?? 'webasm,webasm-threads,webgpu,cpu,headlessgl').split(',');
  const kernels = (flag('kernels') ?? 'naive,blocked').split(',') as ('naive' | 'blocked')[];
  const size = Number(flag('size') ?? 1024);
  const runs = Number(flag('runs') ?? 3);
  const resident = args.includes('--resident');
  const rows: Row[] = [];
  console.log(`gpu.js matmul ${size}×${size}·${size}×${size}, ${runs} timed runs each (op + readback), ${cpus().length} CPUs`);
  console.log(
    `${'mode'.padEnd(16)}${'kernel'.padEnd(9)}${'median ms'.padStart(11)}${'min–max ms'.padStart(14)}${'GFLOP/s'.padStart(9)}${'cpu ms'.padStart(9)}${'GFLOP/cpu-s'.padStart(13)}` +
      `${resident ? `${'resident ms'.padStart(13)}${'GFLOP/s'.padStart(9)}` : ''}${'first ms'.padStart(10)}${'max rel err'.padStart(13)}`,
  );
  for (const m of modes) {
    const opts = MODES[m];
    if (!opts) throw new Error(`unknown mode ${m} (modes: ${Object.keys(MODES).join(', ')})`);
    for (const k of kernels) {
      // the cpu and headlessgl modes have only the naive kernel
      if (k === 'blocked' && (opts.mode === 'cpu' || opts.mode === 'headlessgl')) continue;
      const r = await bench(m, opts, k, size, runs, resident);
      rows.push(r);
      if (!r.ok) console.log(`${m.padEnd(16)}${k.padEnd(9)} unavailable: ${r.error}`);
      else {
        console.log(
          `${m.padEnd(16)}${k.padEnd(9)}${r.medianMs!.toFixed(0).padStart(11)}${`${r.minMs!.toFixed(0)}–${r.maxMs!.toFixed(0)}`.padStart(14)}${r.gflops!.toFixed(2).padStart(9)}` +
            `${r.cpuMsPerRun!.toFixed(0).padStart(9)}${r.gflopsPerCpuSecond!.toFixed(2).padStart(13)}` +
            `${r.residentMs !== undefined ? `${r.residentMs.toFixed(0).padStart(13)}${r.residentGflops!.toFixed(2).padStart(9)}` : ''}` +
            `${r.firstMs!.toFixed(0).padStart(10)}${r.maxRelErr!.toExponential(1).padStart(13)}`,
        );
      }
    }
    const naive = rows.find((r) => r.mode === m && r.kernel === 'naive' && r.ok);
    const blocked = rows.find((r) => r.mode === m && r.kernel === 'blocked' && r.ok);
    if (naive && blocked) {
      console.log(`${''.padEnd(16)}blocked / naive: ${(blocked.gflops! / naive.gflops!).toFixed(2)}× wall, ${(blocked.gflopsPerCpuSecond! / naive.gflopsPerCpuSecond!).toFixed(2)}× per CPU-second`);
    }
  }
  mkdirSync('bench-results', { recursive: true });
  writeFileSync('bench-results/gpujs.json', JSON.stringify({ date: new Date().toISOString(), node: process.version, cpus: cpus().length, size, runs, resident, rows }, null, 2) + '\n');
  console.log('wrote bench-results/gpujs.json');
}

await main();
