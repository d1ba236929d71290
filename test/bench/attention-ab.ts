// Interleaved A/B timing of WebGPU attention across builds: each round times every (build, case) once, so load
// swings on a shared machine hit all variants alike (webgpu-bench runs its rows one after another). Builds are
// dist trees (this one, or e.g. `git archive <rev> | tar -x -C /tmp/base && (cd /tmp/base && npx tsc)`), each
// with its own backend on one shared device.
//
//   flock /tmp/lavi-bench.lock node dist/test/bench/attention-ab.js [--rounds 60] \
//     [--builds new=dist,base=/tmp/base/dist] [--cases fresh128,same128,unf128,fresh1,unf1]
//
// Cases (14 query / 2 kv heads, D 64, as webgpu-bench): fused<T> with K/V written each call (`fresh`) or the same
// K/V (`same`); `unf<T>`: unfused matmul·softmax·matmul on head-major inputs with K/V written each call. <T> is
// 128 (128 queries × 128 keys) or 1 (1 query × 1024 keys). Prints wall-clock min/p10/p25/median per variant.

import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { WebGPUBackend, WebGPUBackendOptions } from '../../backends/webgpu/index.js';
import type { Tensor } from '../../core/tensor.js';
import { randomFloats as random } from '../../core/rng.js';
import { unfusedAttentionFreshKV } from './attention-unfused.js';

type Ops = typeof import('../../ops/index.js');

const args = process.argv.slice(2);
const flag = (n: string, d: string): string => {
  const i = args.indexOf(`--${n}`);
  return i >= 0 ? args[i + 1]! : d;
};
const ROUNDS = Number(flag('rounds', '60'));
const here = resolve(import.meta.dirname, '../..');
const builds = flag('builds', `new=${here}`).split(',').map((x) => x.split('=') as [string, string]);
const cases = flag('cases', 'fresh128,same128,unf128,fresh1,unf1').split(',');

interface Variant {
  name: string;
  b: WebGPUBackend;
  f: () => Tensor;
  ts: number[];
}

const Hq = 14, Hkv = 2, D = 64, g = Hq / Hkv, scale = 1 / Math.sqrt(D);
const variants: Variant[] = [];
const backends: WebGPUBackend[] = [];
let ctx: WebGPUBackend['ctx'] | null = null;
for (const [label, dir] of builds) {
  const url = (p: string) => pathToFileURL(resolve(dir, p)).href;
  const { createWebGPUBackend } = (await import(url('backends/webgpu/index.js'))) as typeof import('../../backends/webgpu/index.js');
  const ops = (await import(url('ops/index.js'))) as Ops;
  const b = await createWebGPUBackend((ctx ? { context: ctx, name: label } : { name: label }) as WebGPUBackendOptions);
  ctx ??= b.ctx;
  backends.push(b);
  for (const c of cases) {
    const Tq = c.endsWith('128') ? 128 : 1;
    const S = Tq === 1 ? 1024 : 128;
    const Q = random(Tq * Hq * D, 7), Kd = random(S * Hkv * D, 8), Vd = random(S * Hkv * D, 9);
    let f: () => Tensor;
    if (c.startsWith('unf')) {
      const qq = ops.tensor(b, Q, [1, Tq, Hkv, g, D]);
      const qh = ops.reshape(ops.scale(ops.transpose(qq, [0, 2, 1, 3, 4]), scale), [Hkv, Tq * g, D]);
      const kh = ops.transpose(ops.tensor(b, Kd, [S, Hkv, D]), [1, 0, 2]);
      const vh = ops.transpose(ops.tensor(b, Vd, [S, Hkv, D]), [1, 0, 2]);
      f = unfusedAttentionFreshKV(ops, qh, kh, vh);
    } else {
      const q = ops.tensor(b, Q, [1, Tq, Hq, D]), k = ops.tensor(b, Kd, [1, S, Hkv, D]), v = ops.tensor(b, Vd, [1, S, Hkv, D]);
      if (c.startsWith('same')) {
        f = () => ops.attention(q, k, v, { causal: false, scale });
      } else if (c.startsWith('fresh')) {
        f = () => {
          const k2 = ops.copy(k), v2 = ops.copy(v);
          const o = ops.attention(q, k2, v2, { causal: false, scale });
          k2.dispose();
          v2.dispose();
          return o;
        };
      } else {
        throw new Error(`unknown case '${c}'`);
      }
    }
    variants.push({ name: `${label}:${c}`, b, f, ts: [] });
  }
}
// Warm-up: compiles pipelines, fills pools.
for (const x of variants) {
  for (let i = 0; i < 2; i++) {
    x.f().dispose();
    await x.b.sync();
  }
}
for (let r = 0; r < ROUNDS; r++) {
  for (const x of variants) {
    const t0 = performance.now();
    const o = x.f();
    await x.b.sync();
    x.ts.push(performance.now() - t0);
    o.dispose();
  }
}
for (const x of variants) {
  const a = x.ts.sort((p, q) => p - q);
  const at = (p: number) => a[Math.floor(p * (a.length - 1))]!.toFixed(3);
  console.log(`${x.name.padEnd(24)} min ${at(0)}  p10 ${at(0.1)}  p25 ${at(0.25)}  median ${at(0.5)} ms  (n=${a.length})`);
}
for (const b of backends.reverse()) await b.destroy();
