// Decode A/B at real scale, in one process: the lavi-0.5b preset's LaVi, the same with other lavi_config fields
// (`--lavi`, as `lavi bench --lavi`), and concat, on shared random bf16 weights and one encoded image; decode in
// 4-token blocks rotating among the three, so the machine's drift (±20% over minutes here) hits all of them.
// With `--gemv-par-bytes B`, every block is run once more with the wasm GEMV job size set to B for every GEMV
// (variants.gemvParBytes, which replaces both of ops-matmul.ts's sizes), to A/B a dispatch setting on the same
// models.
//
//   npx tsc -p tsconfig.json && flock /tmp/lavi-bench.lock node dist/test/bench/decode-ab-bench.js
//     [--lavi modulate=shift] [--image-tokens 729] [--blocks 48] [--gemv-par-bytes 1048576]
//
// Prints medians of ms per token per model (and setting) and the per-block ratios' medians. Does not assert.

import { loadavg } from 'node:os';
import { WasmBackend } from '../../backends/wasm/index.js';
import type { Variants } from '../../backends/wasm/ops-matmul.js';
import type { Tensor } from '../../core/tensor.js';
import { resolveConfig, type ModelConfig } from '../../models/lavi/config.js';
import { LaviModel } from '../../models/lavi/model.js';
import { applyLaviOverrides } from '../../models/lavi/overrides.js';
import { expectedWeights } from '../../models/lavi/weights.js';
import { nextToken as next, randomTensorOn } from '../../models/app/commands/bench.js';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : dflt;
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

async function main(): Promise<void> {
  const N = Number(arg('image-tokens', '729')), blocks = Number(arg('blocks', '48'));
  const parBytes = process.argv.includes('--gemv-par-bytes') ? Number(arg('gemv-par-bytes', 'NaN')) : null;
  for (const [n, v] of [['image-tokens', N], ['blocks', blocks], ['gemv-par-bytes', parBytes ?? 1]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`decode-ab-bench: --${n} must be a positive integer, got ${v}`);
  }
  const variants: Variants = {};
  const backend = await WasmBackend.create({ threads: 2, variants });
  const base = await resolveConfig('lavi-0.5b');
  const withMode = (c: ModelConfig, mode: 'lavi' | 'concat'): ModelConfig => ({ ...c, lavi_config: { ...c.lavi_config, mode } });
  const alt = arg('lavi', '');
  const cfgs: Record<string, ModelConfig> = { preset: withMode(base, 'lavi'), concat: withMode(base, 'concat') };
  if (alt) cfgs[alt] = withMode(applyLaviOverrides(base, alt), 'lavi');
  // One tensor per (name, shape): the designs share every weight whose shape they share.
  const pool = new Map<string, Tensor>();
  const weightsFor = (cfg: ModelConfig): Map<string, Tensor> => {
    const m = new Map<string, Tensor>();
    for (const spec of expectedWeights(cfg)) {
      if (spec.optional) continue;
      const key = `${spec.name}:${spec.shape.join('x')}`;
      if (!pool.has(key)) pool.set(key, randomTensorOn(backend, spec, 'bf16'));
      m.set(spec.name, pool.get(key)!);
    }
    return m;
  };
  const settings = parBytes === null ? [null] : [null, parBytes];
  const T = 64, room = blocks * 4 * settings.length + 8;
  const names = Object.keys(cfgs);
  const models = new Map(names.map((k) => [k, LaviModel.fromWeights(cfgs[k]!, weightsFor(cfgs[k]!), backend, { kvCapacity: T + room + (k === 'concat' ? N : 0) })]));
  const S = base.vision_config.image_size, crops = Math.ceil(N / 729);
  const px = new Float32Array(crops * 3 * S * S).map((_, i) => Math.sin(i));
  const ids = Array.from({ length: T }, (_, i) => (i * 7919 + 17) % base.text_config.vocab_size);
  const enc = models.get('preset')!.encodeImage({ data: px, shape: [crops, 3, S, S] }, { maxTokens: N });
  const tok = new Map<string, number>();
  // concat last: its prefill consumes the encoded image.
  for (const k of [...names.filter((n) => n !== 'concat'), 'concat']) tok.set(k, await next(models.get(k)!.prefill(ids, enc, { consumeImage: k === 'concat' })));
  for (const k of names) tok.set(k, await next(models.get(k)!.decodeStep(tok.get(k)!))); // untimed first step
  const label = (k: string, s: number | null) => (s === null ? k : `${k} @ GEMV jobs of ${s} B`);
  const ms = new Map<string, number[]>();
  for (let b = 0; b < blocks; b++) {
    for (const s of b % 2 ? [...settings].reverse() : settings) {
      if (s === null) delete variants.gemvParBytes;
      else variants.gemvParBytes = s;
      for (let i = 0; i < names.length; i++) {
        const k = names[(b + i) % names.length]!;
        const t0 = performance.now();
        for (let j = 0; j < 4; j++) tok.set(k, await next(models.get(k)!.decodeStep(tok.get(k)!)));
        const key = label(k, s);
        ms.set(key, [...(ms.get(key) ?? []), (performance.now() - t0) / 4]);
      }
    }
  }
  console.log(`decode-ab-bench: lavi-0.5b bf16, ${N} visual tokens, ${blocks} blocks of 4 tokens per model and setting; wasm 2 threads; load ${loadavg()[0]!.toFixed(2)}`);
  for (const [k, v] of ms) console.log(`  ${k.padEnd(44)} ${median(v).toFixed(2)} ms/token`);
  const ratio = (a: string, b: string) => median(ms.get(b)!.map((x, i) => x / ms.get(a)![i]!)).toFixed(3);
  for (const s of settings) {
    for (const k of names.filter((n) => n !== 'concat')) console.log(`  decode ${label(k, s)} vs concat: ${ratio(label(k, s), label('concat', s))}× (median per block; > 1: LaVi faster)`);
    if (alt) console.log(`  decode ${label(alt, s)} vs the preset: ${ratio(label(alt, s), label('preset', s))}× (> 1: ${alt} faster)`);
  }
  if (parBytes !== null) for (const k of names) console.log(`  ${k}: default vs GEMV jobs of ${parBytes} B: ${ratio(label(k, null), label(k, parBytes))}× (> 1: the default faster)`);
}

main().then(
  () => process.exit(0),
  (e: Error) => {
    console.error(e.message);
    process.exit(2);
  },
);
