// Model benchmark: a ~20M-parameter random LaVi (and its concat baseline) on every registered backend that can be
// created (the meta backend computes nothing and is skipped). Prints, does not assert; writes
// bench-results/model.json.
//
//   node dist/test/bench/model-bench.js [--backend cpu,webgpu] [--prompt 64] [--new 32] [--repeat 3] [--bf16]
//
// Figures (median over --repeat runs):
//   encode      vision tower + projector for one image (ms)
//   prefill     prompt tokens / s for a text-only prefill (the LLM alone)
//   prefill+img prompt tokens / s for a prefill with the image (LaVi: + conditioner K/U; concat: + visual tokens)
//   TTFT        time to first token: image encoding + prefill + choosing the first token (ms)
//   decode      generated tokens / s after the prefill (greedy, KV cache)

import { mkdirSync, writeFileSync } from 'node:fs';
import '../../backends/index.js';
import type { Backend } from '../../core/backend.js';
import { getBackend, listBackends, releaseAllBackends } from '../../core/registry.js';
import { asConcat, type ModelConfig } from '../../models/lavi/config.js';
import { generate } from '../../models/app/generate.js';
import { LaviModel } from '../../models/lavi/model.js';
import { createRng } from '../../core/rng.js';
import { countParameters, randomWeights } from '../../models/lavi/weights.js';
import { benchConfig } from './bench-config.js';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : dflt;
}
const flag = (name: string) => process.argv.includes(`--${name}`);


function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

interface Row {
  backend: string;
  mode: string;
  weights: string;
  encodeMs: number;
  prefillTokS: number;
  prefillImgTokS: number;
  ttftMs: number;
  decodeTokS: number;
}

async function benchModel(backend: Backend, cfg: ModelConfig, label: string, opts: { prompt: number; newTokens: number; repeat: number; bf16: boolean }): Promise<Row> {
  const model = LaviModel.fromWeights(cfg, randomWeights(cfg, { seed: 1, dtype: opts.bf16 ? 'bf16' : 'f32' }), backend, { kvCapacity: 512 });
  const S = cfg.vision_config.image_size;
  const rng = createRng(2);
  const image = { data: Float32Array.from({ length: 3 * S * S }, () => rng.next() * 2 - 1), shape: [1, 3, S, S] as [number, number, number, number] };
  const prompt = Array.from({ length: opts.prompt }, (_, i) => (i * 7919 + 13) % cfg.text_config.vocab_size);
  const enc: number[] = [], pre: number[] = [], preImg: number[] = [], ttft: number[] = [], dec: number[] = [];
  // Warm-up (JIT, pools).
  await generate(model, prompt.slice(0, 8), { image, maxNewTokens: 2 });
  for (let r = 0; r < opts.repeat; r++) {
    let t = performance.now();
    const e = model.encodeImage(image);
    await e.tokens.read();
    enc.push(performance.now() - t);
    t = performance.now();
    model.prefill(prompt, e);
    await model.readLogits();
    preImg.push(performance.now() - t);
    e.dispose();
    t = performance.now();
    model.prefill(prompt, null);
    await model.readLogits();
    pre.push(performance.now() - t);
    const g = await generate(model, prompt, { image, maxNewTokens: opts.newTokens });
    ttft.push(g.timings.ttftMs);
    dec.push(((g.tokens.length - 1) / g.timings.decodeMs) * 1000);
  }
  model.dispose();
  return {
    backend: backend.name,
    mode: label,
    weights: opts.bf16 ? 'bf16' : 'f32',
    encodeMs: median(enc),
    prefillTokS: (opts.prompt / median(pre)) * 1000,
    prefillImgTokS: (opts.prompt / median(preImg)) * 1000,
    ttftMs: median(ttft),
    decodeTokS: median(dec),
  };
}

async function main(): Promise<void> {
  const opts = { prompt: Number(arg('prompt', '64')), newTokens: Number(arg('new', '32')), repeat: Number(arg('repeat', '3')), bf16: flag('bf16') };
  const wanted = arg('backend', '').split(',').filter(Boolean);
  const cfg = benchConfig();
  const p = countParameters(cfg);
  console.log(
    `model bench: random LaVi, ${(p.total / 1e6).toFixed(1)}M parameters (vision ${(p.vision / 1e6).toFixed(1)}M, LLM ${(p.llm / 1e6).toFixed(1)}M, ` +
      `conditioners ${(p.conditioners / 1e6).toFixed(1)}M, projector ${(p.projector / 1e6).toFixed(2)}M); ` +
      `${cfg.vision_config.image_size}-px image = 64 visual tokens; prompt ${opts.prompt} tokens, ${opts.newTokens} generated; median of ${opts.repeat}`,
  );
  const rows: Row[] = [];
  for (const reg of listBackends()) {
    if (wanted.length && !wanted.includes(reg.name)) continue;
    let backend: Backend;
    try {
      backend = await getBackend(reg.name);
    } catch (e) {
      console.log(`skip ${reg.name}: cannot create (${(e as Error).message.split('\n')[0]})`);
      continue;
    }
    const info = backend.info();
    if (info.device === 'none') continue;
    for (const [label, c] of [['lavi', cfg], ['concat', asConcat(cfg)]] as const) {
      try {
        const row = await benchModel(backend, c, label, opts);
        rows.push(row);
        console.log(
          `${reg.name.padEnd(8)} ${label.padEnd(7)} ${row.weights}  encode ${row.encodeMs.toFixed(0).padStart(6)} ms  ` +
            `prefill ${row.prefillTokS.toFixed(1).padStart(7)} tok/s  prefill+img ${row.prefillImgTokS.toFixed(1).padStart(7)} tok/s  ` +
            `TTFT ${row.ttftMs.toFixed(0).padStart(6)} ms  decode ${row.decodeTokS.toFixed(2).padStart(7)} tok/s` +
            (info.software ? '  (software GPU)' : ''),
        );
      } catch (e) {
        console.log(`skip ${reg.name} ${label}: ${(e as Error).message.split('\n')[0]}`);
      }
    }
  }
  mkdirSync('bench-results', { recursive: true });
  writeFileSync('bench-results/model.json', JSON.stringify({ date: new Date().toISOString(), params: p, opts, rows }, null, 2));
  await releaseAllBackends();
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
