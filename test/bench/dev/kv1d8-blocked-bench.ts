// Dev benchmark (issue 17): attention over heads of 8 with K/U in a key-blocked layout (the benchmarking variant
// attention_kv1d8b_bf16, test/bench/dev/wasm-variants.ts) against the shipped attention_kv1d8 over head-major K/U,
// and a GEMV reading the same bytes, in the same rounds. Checks the variant's output against the shipped kernel's.
//
//   npx tsc -p tsconfig.json && flock /tmp/lavi-bench.lock node dist/test/bench/dev/kv1d8-blocked-bench.js
//     [--keys 729,2916] [--heads 8] [--threads 2] [--rounds 5] [--reuse 48]
//
// Cold: every call reads another of ≥ 128 MiB of K/U sets (DRAM, as a decode step's first site); reused: each set is
// attended --reuse times in a row (shared_visual_kv: a decode step's sites read one K/U).

import { WasmBackend } from '../../../backends/wasm/index.js';
import type { Tensor } from '../../../core/tensor.js';
import { randomFloats as random } from '../../../core/rng.js';
import { attention, cast, linear, tensor, transpose } from '../../../ops/index.js';
import { attentionKV1D8Blocked, packKeyBlocked, WASM_VARIANT_KERNELS } from './wasm-variants.js';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : dflt;
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

async function main(): Promise<void> {
  const threads = Number(arg('threads', '2')), H = Number(arg('heads', '8')), rounds = Number(arg('rounds', '5'));
  const reuse = Number(arg('reuse', '48'));
  const keys = arg('keys', '729,2916').split(',').map(Number);
  for (const [n, v] of [['threads', threads], ['heads', H], ['rounds', rounds], ['reuse', reuse], ...keys.map((k) => ['keys', k] as const)] as const) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`kv1d8-blocked-bench: --${n} must be a positive integer, got ${v}`);
  }
  const be = await WasmBackend.create({ threads, kernels: WASM_VARIANT_KERNELS });
  const MiB = 2 ** 20, scale = 1 / Math.sqrt(8);
  const bf16 = (data: Float32Array, shape: number[]) => {
    const t = tensor(be, data, shape);
    const c = cast(t, 'bf16');
    t.dispose();
    return c;
  };
  const q = tensor(be, random(H * 8, 8), [1, 1, H, 8]);
  const x = tensor(be, random(896, 7), [1, 896]);
  console.log(`kv1d8-blocked-bench: ${H} heads of 8, wasm ${threads} threads; load ${(await import('node:os')).loadavg()[0]!.toFixed(2)}`);
  for (const N of keys) {
    const bytes = 2 * N * H * 8 * 2;
    const sets = Math.max(2, Math.ceil((128 * MiB) / bytes));
    const khm: Tensor[] = [], uhm: Tensor[] = [], kbl: Tensor[] = [], ubl: Tensor[] = [];
    for (let s = 0; s < sets; s++) {
      const kr = random(N * H * 8, 1000 + s), ur = random(N * H * 8, 2000 + s);
      for (const [hm, bl, raw] of [[khm, kbl, kr], [uhm, ubl, ur]] as const) {
        const t = bf16(raw, [1, N, H, 8]);
        hm.push(transpose(t, [0, 2, 1, 3]));
        t.dispose();
        const b = packKeyBlocked(raw, N, H);
        bl.push(bf16(b.data, [1, H, b.nb, 8, 8]));
      }
    }
    const rowsSame = Math.round(bytes / 2 / 896);
    const W: Tensor[] = [];
    for (let s = 0; s < Math.max(2, Math.ceil((128 * MiB) / (rowsSame * 896 * 2))); s++) W.push(bf16(random(rowsSame * 896, 3000 + s), [rowsSame, 896]));
    const blockedAttention = (k: Tensor, u: Tensor): Tensor => attentionKV1D8Blocked(q, k, u, N, scale);
    // agreement with the shipped kernel
    const ref = await attention(q, khm[0]!, uhm[0]!, { kvHeadMajor: true, scale }).read();
    const got = await blockedAttention(kbl[0]!, ubl[0]!).read();
    let maxAbs = 0;
    for (let i = 0; i < ref.length; i++) maxAbs = Math.max(maxAbs, Math.abs(ref[i]! - got[i]!));
    if (!(maxAbs < 1e-5)) throw new Error(`kv1d8-blocked-bench: the blocked kernel disagrees with attention_kv1d8 at N = ${N}: max |Δ| ${maxAbs}`);
    const reps = sets * 2;
    const time = async (call: (i: number) => Tensor) => {
      (await call(0).read());
      const t0 = performance.now();
      let last: Tensor | null = null;
      for (let i = 0; i < reps; i++) {
        last?.dispose();
        last = call(i);
      }
      await last!.read();
      last!.dispose();
      return (performance.now() - t0) / reps;
    };
    const variants: [string, (i: number) => Tensor][] = [
      [`GEMV bf16 [${rowsSame}, 896]`, (i) => linear(x, W[i % W.length]!)],
      ['kv1d8 head-major, cold', (i) => attention(q, khm[i % sets]!, uhm[i % sets]!, { kvHeadMajor: true, scale })],
      ['kv1d8 blocked, cold', (i) => blockedAttention(kbl[i % sets]!, ubl[i % sets]!)],
      ['kv1d8 head-major, reused', (i) => attention(q, khm[Math.floor(i / reuse) % sets]!, uhm[Math.floor(i / reuse) % sets]!, { kvHeadMajor: true, scale })],
      ['kv1d8 blocked, reused', (i) => blockedAttention(kbl[Math.floor(i / reuse) % sets]!, ubl[Math.floor(i / reuse) % sets]!)],
    ];
    const ms = new Map<string, number[]>();
    for (let r = 0; r < rounds; r++) {
      for (const [name, call] of r % 2 ? [...variants].reverse() : variants) ms.set(name, [...(ms.get(name) ?? []), await time(call)]);
    }
    const gemv = bytes / median(ms.get(variants[0]![0])!) / 1e6;
    console.log(`\nN = ${N}: K/U ${(bytes / 1024).toFixed(0)} KiB bf16, ${sets} sets; blocked agrees to ${maxAbs.toExponential(1)}`);
    for (const [name] of variants) {
      const t = median(ms.get(name)!), gbs = bytes / t / 1e6;
      console.log(`  ${name.padEnd(26)} ${(t * 1000).toFixed(1).padStart(7)} µs  ${gbs.toFixed(1).padStart(5)} GB/s  ${((gbs / gemv) * 100).toFixed(0).padStart(4)}% of GEMV`);
    }
    for (const t of [...khm, ...uhm, ...kbl, ...ubl, ...W]) t.dispose();
  }
  await be.destroy();
}

main().catch((e: Error) => {
  console.error(e.message);
  process.exit(2);
});
