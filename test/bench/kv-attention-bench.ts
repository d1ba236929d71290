// LaVi's conditioner attention over K/U in decode vs the GEMV, as streaming bandwidth on the wasm backend (issue 17:
// "the conditioner attention over K/U streams at ≥ 80% of the GEMV's bandwidth in the same run").
//
//   npx tsc -p tsconfig.json && flock /tmp/lavi-bench.lock node dist/test/bench/kv-attention-bench.js [--keys 729,2916]
//     [--threads 2] [--heads 8 --head-dim 64] [--reuse 12]
//
// Shapes of lavi-0.5b with the paper's conditioner (r 512: --heads 8 --head-dim 64, the default; the preset's r 64 is
// --heads 8 --head-dim 8 --reuse 48): one token's q [1, 1, H, D] over K/U [1, N, H, D] per site. Every variant rotates over enough
// distinct tensors (≥ 128 MiB) that each call reads from DRAM, as a decode step does (48 sites' K/U, 24 layers'
// weights). GEMV: x [1, 896] · W [4864, 896]ᵀ bf16 (the MLP's up/gate projection). Attention variants:
//   rows f32      the row kernel (attention_rows; forced here by a zero mask): one head at a time, before this issue
//   kv1 f32       attention_kv1_f32: keys in order, each key's heads as one run
//   kv1 bf16      attention_kv1_bf16: the same over packed bf16 K/U (half the bytes)
//   kv1 bf16 hm, K/U reused  head-major bf16, each K/U attended --reuse times in a row (shared_visual_kv: a decode
//                 step's sites read one K/U, so all but the first read it from cache)
//   kv1 bf16/f32 head-major  K/U stored [1, H, N, D] (kvHeadMajor: each head's keys one run), as LaVi keeps them on wasm
//   generic kv1 …  (--head-dim 8 only) the head-major bf16 rows through attention_kv1 instead of attention_kv1d8
// Two GEMVs: the MLP's [4864, 896] and one reading as many bytes per call as the bf16 attention does.
// Bandwidth = bytes of K and U read / time (GEMV: weight bytes / time). Interleaved rounds, medians.

import { WasmBackend } from '../../backends/wasm/index.js';
import type { Tensor } from '../../core/tensor.js';
import { attention, cast, linear, tensor, transpose } from '../../ops/index.js';
import { randomFloats as random } from '../../core/rng.js';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : dflt;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

async function main(): Promise<void> {
  const threads = Number(arg('threads', '2'));
  const keys = arg('keys', '729,2916').split(',').map(Number);
  const rounds = Number(arg('rounds', '5'));
  const be = await WasmBackend.create({ threads });
  const H = Number(arg('heads', '8')), D = Number(arg('head-dim', '64')), reuse = Number(arg('reuse', '12'));
  for (const [n, v] of [['heads', H], ['head-dim', D], ['reuse', reuse], ['threads', threads], ['rounds', rounds]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`kv-attention-bench: --${n} must be a positive integer, got ${v}`);
  }
  const MiB = 2 ** 20;
  const sync = async (t: Tensor) => {
    await t.read();
    t.dispose();
  };
  // GEMV weights: 16 × 8.3 MiB.
  const Ws: Tensor[] = [];
  for (let i = 0; i < 16; i++) {
    const w = tensor(be, random(4864 * 896, 100 + i), [4864, 896]);
    Ws.push(cast(w, 'bf16'));
    w.dispose();
  }
  const beG = D === 8 ? await WasmBackend.create({ threads, variants: { attentionKV1: 'generic' } }) : null;
  const x = tensor(be, random(896, 7), [1, 896]);
  const q = tensor(be, random(H * D, 8), [1, 1, H, D]);
  console.log(`kv-attention-bench: K/U heads ${H} × dim ${D}, reused ${reuse}×; wasm ${threads} threads (${be.info().description}); load ${(await import('node:os')).loadavg()[0]!.toFixed(2)}`);
  for (const N of keys) {
    const bytesF32 = 2 * N * H * D * 4;
    const sets = Math.max(2, Math.ceil((128 * MiB) / bytesF32));
    const kf: Tensor[] = [], uf: Tensor[] = [], kb: Tensor[] = [], ub: Tensor[] = [];
    for (let s = 0; s < sets; s++) {
      kf.push(tensor(be, random(N * H * D, 1000 + s), [1, N, H, D]));
      uf.push(tensor(be, random(N * H * D, 2000 + s), [1, N, H, D]));
      kb.push(cast(kf[s]!, 'bf16'));
      ub.push(cast(uf[s]!, 'bf16'));
    }
    // Head-major K/U ([1, H, N, D]: each head's keys contiguous; kvHeadMajor), as LaVi stores them on wasm.
    const khm: Tensor[] = [], uhm: Tensor[] = [];
    for (let s = 0; s < sets; s++) {
      for (const [list, src] of [[khm, kb[s]!], [uhm, ub[s]!]] as const) list.push(transpose(src, [0, 2, 1, 3]));
    }
    const kf32hm = kf.map((t) => transpose(t, [0, 2, 1, 3])), uf32hm = uf.map((t) => transpose(t, [0, 2, 1, 3]));
    const mask = tensor(be, new Float32Array(N), [1, N]);
    const reps = sets * 2;
    const time = async (fn: (i: number) => Tensor) => {
      await sync(fn(0));
      const t0 = performance.now();
      let last: Tensor | null = null;
      for (let i = 0; i < reps; i++) {
        last?.dispose();
        last = fn(i);
      }
      await sync(last!);
      return (performance.now() - t0) / reps;
    };
    // A GEMV reading as many bytes per call as the bf16 attention (K and U), rotated the same way.
    const rowsSame = Math.round((N * H * D * 2) / 896);
    const Wsame: Tensor[] = [];
    for (let s = 0; s < Math.max(2, Math.ceil((128 * MiB) / (rowsSame * 896 * 2))); s++) {
      const w = tensor(be, random(rowsSame * 896, 3000 + s), [rowsSame, 896]);
      Wsame.push(cast(w, 'bf16'));
      w.dispose();
    }
    // Heads of 8: the same head-major bf16 K/U on a second backend that runs them through the generic attention_kv1
    // instead of attention_kv1d8 (variants.attentionKV1), so the two kernels are timed in the same rounds.
    const khmG: Tensor[] = [], uhmG: Tensor[] = [], qG = beG ? tensor(beG, await q.read(), q.shape) : null;
    if (beG) {
      for (const [dst, src] of [[khmG, khm], [uhmG, uhm]] as const) {
        for (const t of src) {
          const w = tensor(beG, await t.read(), t.shape);
          dst.push(cast(w, 'bf16'));
          w.dispose();
        }
      }
    }
    const variants: [string, number, (i: number) => Tensor][] = [
      ['GEMV bf16 [4864, 896]', 4864 * 896 * 2, (i) => linear(x, Ws[i % Ws.length]!)],
      [`GEMV bf16 [${rowsSame}, 896]`, rowsSame * 896 * 2, (i) => linear(x, Wsame[i % Wsame.length]!)],
      ['attention rows f32', bytesF32, (i) => attention(q, kf[i % sets]!, uf[i % sets]!, { mask })],
      ['attention kv1 f32', bytesF32, (i) => attention(q, kf[i % sets]!, uf[i % sets]!)],
      ['attention kv1 bf16', bytesF32 / 2, (i) => attention(q, kb[i % sets]!, ub[i % sets]!)],
      ['kv1 bf16 head-major', bytesF32 / 2, (i) => attention(q, khm[i % sets]!, uhm[i % sets]!, { kvHeadMajor: true })],
      ['kv1 f32 head-major', bytesF32, (i) => attention(q, kf32hm[i % sets]!, uf32hm[i % sets]!, { kvHeadMajor: true })],
      // shared_visual_kv: every site of a decode step attends over the same K/U, so after the first it is in cache
      ['kv1 bf16 hm, K/U reused', bytesF32 / 2, (i) => attention(q, khm[Math.floor(i / reuse) % sets]!, uhm[Math.floor(i / reuse) % sets]!, { kvHeadMajor: true })],
    ];
    if (qG) {
      variants.push(['generic kv1 bf16 hm', bytesF32 / 2, (i) => attention(qG, khmG[i % sets]!, uhmG[i % sets]!, { kvHeadMajor: true })]);
      variants.push(['generic kv1 hm, reused', bytesF32 / 2, (i) => attention(qG, khmG[Math.floor(i / reuse) % sets]!, uhmG[Math.floor(i / reuse) % sets]!, { kvHeadMajor: true })]);
    }
    const ms = new Map<string, number[]>();
    for (let r = 0; r < rounds; r++) {
      for (const [name, , fn] of r % 2 ? [...variants].reverse() : variants) {
        const t = await time(fn);
        ms.set(name, [...(ms.get(name) ?? []), t]);
      }
    }
    const gemv = variants[0]![1] / median(ms.get(variants[0]![0])!) / 1e6;
    console.log(`\nN = ${N} keys, K/U ${((bytesF32 / MiB) * 1).toFixed(2)} MiB f32 per site, ${sets} sets rotated`);
    for (const [name, bytes] of variants) {
      const t = median(ms.get(name)!);
      const gbs = bytes / t / 1e6;
      console.log(`  ${name.padEnd(24)} ${t.toFixed(3).padStart(7)} ms  ${gbs.toFixed(1).padStart(5)} GB/s  ${(gbs / gemv * 100).toFixed(0).padStart(4)}% of GEMV`);
    }
    for (const t of [...kf, ...uf, ...kb, ...ub, ...Wsame, ...khm, ...uhm, ...kf32hm, ...uf32hm, mask, ...khmG, ...uhmG]) t.dispose();
    qG?.dispose();
  }
  await be.destroy();
  await beG?.destroy();
}

main().catch((e: Error) => {
  console.error(e.message);
  process.exit(2);
});
