// Op benchmarks, side by side on every requested backend in one run (this machine is shared and noisy, so only
// ratios measured together mean anything). Prints a table and writes bench-results/ops.json.
//
//   node dist/test/bench/ops-bench.js [--backend cpu,webgpu] [--seconds 2] [--quick]
//
// Figures: matmul/attention in GFLOP/s, GEMV in GB/s of weight bytes, norms/softmax in GB/s of bytes moved.

import { mkdirSync, writeFileSync } from 'node:fs';
import '../../backends/index.js';
import type { Backend } from '../../core/backend.js';
import { CostRecorder, withCost } from '../../core/cost.js';
import { getBackend, listBackends, releaseAllBackends } from '../../core/registry.js';
import { tidy } from '../../core/scope.js';
import type { Tensor } from '../../core/tensor.js';
import * as ops from '../../ops/index.js';
import { randomFloats as random } from '../../core/rng.js';

interface Shape {
  name: string;
  unit: 'GFLOP/s' | 'GB/s';
  inputs: { shape: number[]; dtype?: 'f32' | 'bf16' | 'f16' }[];
  run: (ins: Tensor[]) => Tensor;
  /** For GEMV: count only the weight bytes as "bytes moved". */
  weightBytesOnly?: boolean;
}

const SHAPES: Shape[] = [
  { name: 'matmul 1024x1024·1024x1024', unit: 'GFLOP/s', inputs: [{ shape: [1024, 1024] }, { shape: [1024, 1024] }], run: ([a, b]) => ops.matmul(a!, b!) },
  { name: 'linear 128x896·[4864,896]ᵀ (prefill)', unit: 'GFLOP/s', inputs: [{ shape: [128, 896] }, { shape: [4864, 896] }], run: ([a, b]) => ops.linear(a!, b!) },
  { name: 'gemv 1x4096·[4096,4096]ᵀ f32', unit: 'GB/s', inputs: [{ shape: [1, 4096] }, { shape: [4096, 4096] }], run: ([a, b]) => ops.linear(a!, b!), weightBytesOnly: true },
  { name: 'gemv 1x4096·[4096,4096]ᵀ bf16', unit: 'GB/s', inputs: [{ shape: [1, 4096] }, { shape: [4096, 4096], dtype: 'bf16' }], run: ([a, b]) => ops.linear(a!, b!), weightBytesOnly: true },
  { name: 'rmsNorm 128x4096', unit: 'GB/s', inputs: [{ shape: [128, 4096] }, { shape: [4096] }], run: ([x, g]) => ops.rmsNorm(x!, g!, 1e-6) },
  { name: 'layerNorm 128x4096', unit: 'GB/s', inputs: [{ shape: [128, 4096] }, { shape: [4096] }, { shape: [4096] }], run: ([x, g, b]) => ops.layerNorm(x!, g!, b!, 1e-6) },
  { name: 'modulatedNorm rms 128x4096', unit: 'GB/s', inputs: [{ shape: [128, 4096] }, { shape: [4096] }, { shape: [128, 4096] }, { shape: [128, 4096] }], run: ([x, g, dg, db]) => ops.modulatedNorm(x!, g!, { kind: 'rms', eps: 1e-6, dGamma: dg!, dBeta: db! }) },
  { name: 'softmax 32x128x128', unit: 'GB/s', inputs: [{ shape: [32, 128, 128] }], run: ([x]) => ops.softmax(x!) },
  { name: 'attention decode q1 kv1024 H14/2 D64', unit: 'GFLOP/s', inputs: [{ shape: [1, 1, 14, 64] }, { shape: [1, 1024, 2, 64] }, { shape: [1, 1024, 2, 64] }], run: ([q, k, v]) => ops.attention(q!, k!, v!, { causal: true, queryOffset: 1023 }) },
  { name: 'attention prefill q128 kv128 H14/2 D64', unit: 'GFLOP/s', inputs: [{ shape: [1, 128, 14, 64] }, { shape: [1, 128, 2, 64] }, { shape: [1, 128, 2, 64] }], run: ([q, k, v]) => ops.attention(q!, k!, v!, { causal: true }) },
];

async function measure(backend: Backend, s: Shape, seconds: number): Promise<{ ms: number; rate: number; runs: number }> {
  const ins = s.inputs.map((spec, i) => ops.tensor(backend, random(spec.shape.reduce((a, b) => a * b, 1), 17 + i), spec.shape, spec.dtype ?? 'f32'));
  try {
    const rec = new CostRecorder();
    const warm = withCost(rec, () => tidy(() => s.run(ins)));
    await warm.read();
    warm.dispose();
    const cost = rec.total();
    const bytes = s.weightBytesOnly ? ins[1]!.size * (ins[1]!.dtype === 'f32' ? 4 : 2) : cost.bytesRead + cost.bytesWritten;
    const times: number[] = [];
    const t0 = performance.now();
    while (times.length < 5 || (performance.now() - t0 < seconds * 1000 && times.length < 101)) {
      const a = performance.now();
      const out = tidy(() => s.run(ins));
      await out.read(); // what a user waits for: the result back on the host
      times.push(performance.now() - a);
      out.dispose();
    }
    times.sort((x, y) => x - y);
    const ms = times[Math.floor(times.length / 2)]!;
    return { ms, rate: s.unit === 'GFLOP/s' ? cost.flops / ms / 1e6 : bytes / ms / 1e6, runs: times.length };
  } finally {
    for (const t of ins) t.dispose();
  }
}

const USAGE = `usage: node dist/test/bench/ops-bench.js [--backend cpu,wasm,webgpu] [--seconds 2] [--quick]

Op throughput side by side on each backend (matmul/attention GFLOP/s, GEMV GB/s of weights, norms/softmax GB/s);
writes bench-results/ops.json. A family name (gpujs) stands for all its modes.
  --backend LIST   comma-separated backends (default: every registered one)
  --seconds S      time per cell (default 2)
  --quick          skip the largest shapes`;

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args.includes('--help') || args.includes('-h')) {
    console.log(USAGE);
    return;
  }
  const known = new Set(['--backend', '--seconds', '--quick']);
  const unknown = args.find((a, i) => a.startsWith('-') && !known.has(a) && !(i > 0 && (args[i - 1] === '--backend' || args[i - 1] === '--seconds')));
  if (unknown) {
    console.error(`ops-bench: unknown option ${unknown}\n\n${USAGE}`);
    process.exitCode = 2;
    return;
  }
  const flag = (k: string) => {
    const i = args.indexOf(`--${k}`);
    return i >= 0 ? args[i + 1] : undefined;
  };
  // A family name ('gpujs') stands for every registered backend of that family ('gpujs-webgpu', 'gpujs-webasm', …).
  const registered = listBackends().map((b) => b.name).filter((n) => n !== 'meta');
  const names = (flag('backend') ?? registered.join(','))
    .split(',')
    .flatMap((n) => (registered.includes(n) ? [n] : registered.filter((r) => r.startsWith(`${n}-`)).length ? registered.filter((r) => r.startsWith(`${n}-`)) : [n]));
  const seconds = Number(flag('seconds') ?? 2);
  const backends: Backend[] = [];
  for (const n of names) {
    try {
      backends.push(await getBackend(n));
    } catch (e) {
      console.log(`(skipping backend ${n}: ${(e as Error).message})`);
    }
  }
  const results: Record<string, Record<string, { ms: number; rate: number; runs: number } | { error: string }>> = {};
  const header = `${'op'.padEnd(42)}${backends.map((b) => b.name.padStart(24)).join('')}`;
  console.log(`median time and rate; ${seconds}s per cell\n${header}`);
  for (const s of SHAPES) {
    if (args.includes('--quick') && /1024x1024|4864/.test(s.name)) continue;
    let line = s.name.padEnd(42);
    for (const b of backends) {
      let cell: string;
      try {
        const r = await measure(b, s, seconds);
        (results[s.name] ??= {})[b.name] = r;
        cell = `${r.ms.toFixed(2)} ms ${r.rate.toFixed(2)} ${s.unit === 'GB/s' ? 'GB/s' : 'GF/s'}`;
      } catch (e) {
        (results[s.name] ??= {})[b.name] = { error: (e as Error).message };
        cell = 'error';
      }
      line += cell.padStart(24);
    }
    console.log(line);
  }
  mkdirSync('bench-results', { recursive: true });
  writeFileSync('bench-results/ops.json', JSON.stringify({ date: new Date().toISOString(), backends: backends.map((b) => b.info()), results }, null, 1));
  console.log('\nwritten: bench-results/ops.json');
  await releaseAllBackends();
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
