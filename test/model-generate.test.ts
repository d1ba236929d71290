// Generation: greedy is deterministic and equals step-by-step full recomputation, the prompt is run once, seeded
// sampling reproduces, stop tokens / max tokens / streaming callback, and the sampler's top-k / top-p maths.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CpuBackend } from '../backends/cpu/index.js';
import { asConcat, tinyConfig, type ModelConfig } from '../models/lavi/config.js';
import { generate, sampleToken } from '../models/app/generate.js';
import { LaviModel } from '../models/lavi/model.js';
import { createRng } from '../core/rng.js';
import { randomWeights } from '../models/lavi/weights.js';

const cpu = new CpuBackend();
const PROMPT = [4, 8, 15, 16, 23, 42];

function setup(cfg: ModelConfig = tinyConfig({ eos_token_ids: [] }), seed = 1) {
  const model = LaviModel.fromWeights(cfg, randomWeights(cfg, { seed }), cpu);
  const S = cfg.vision_config.image_size;
  const image = { data: Float32Array.from({ length: 3 * S * S }, (_, i) => Math.sin(i * 0.11)), shape: [1, 3, S, S] as [number, number, number, number] };
  return { model, image };
}

function argmaxOf(x: Float32Array): number {
  let b = 0;
  for (let i = 1; i < x.length; i++) if (x[i]! > x[b]!) b = i;
  return b;
}

test('greedy generation is deterministic and equals argmax over full recomputation at every step', async () => {
  const { model, image } = setup();
  const r1 = await generate(model, PROMPT, { image, maxNewTokens: 12 });
  const r2 = await generate(model, PROMPT, { image, maxNewTokens: 12 });
  assert.is(r1.tokens.length, 12);
  assert.is(r1.finishReason, 'length');
  assert.equal(r1.tokens, r2.tokens);
  // Reference: no cache reuse, the whole sequence re-run for every token.
  const seq = [...PROMPT];
  const want: number[] = [];
  for (let i = 0; i < 12; i++) {
    model.prefill(seq, image);
    const next = argmaxOf(await model.readLogits());
    want.push(next);
    seq.push(next);
  }
  assert.equal(r1.tokens, want);
  model.dispose();
});

test('the prompt is run once: decoder tokens = prompt + generated − 1, one image preparation', async () => {
  const { model, image } = setup();
  const before = { ...model.stats };
  const r = await generate(model, PROMPT, { image, maxNewTokens: 9 });
  assert.is(model.stats.decoderTokens - before.decoderTokens, PROMPT.length + r.tokens.length - 1);
  assert.is(model.stats.prefills - before.prefills, 1);
  assert.is(model.stats.imagesPrepared - before.imagesPrepared, 1);
  assert.is(model.position, PROMPT.length + r.tokens.length - 1);
  // Concat baseline: the visual tokens are run once too.
  const c = setup(asConcat(tinyConfig({ eos_token_ids: [] })), 2);
  const b0 = c.model.stats.decoderTokens;
  const rc = await generate(c.model, PROMPT, { image: c.image, maxNewTokens: 5 });
  assert.is(c.model.stats.decoderTokens - b0, 16 + PROMPT.length + rc.tokens.length - 1);
  model.dispose();
  c.model.dispose();
});

test('seeded sampling is reproducible; different seeds give different continuations', async () => {
  const { model, image } = setup();
  const opts = { image, maxNewTokens: 16, temperature: 1.5, topK: 50, topP: 0.95 };
  const a = await generate(model, PROMPT, { ...opts, seed: 123 });
  const b = await generate(model, PROMPT, { ...opts, seed: 123 });
  assert.equal(a.tokens, b.tokens);
  const others = await Promise.all([1, 2, 3].map(async (s) => (await generate(model, PROMPT, { ...opts, seed: s })).tokens.join(',')));
  assert.ok(others.some((o) => o !== a.tokens.join(',')), 'another seed changes the sample');
  const greedy = await generate(model, PROMPT, { image, maxNewTokens: 16 });
  const k1 = await generate(model, PROMPT, { image, maxNewTokens: 16, temperature: 0.8, topK: 1, seed: 9 });
  assert.equal(k1.tokens, greedy.tokens, 'top-k 1 is greedy');
  model.dispose();
});

test('stop tokens end generation (the stop token is included); config eos is the default', async () => {
  const { model, image } = setup();
  const free = await generate(model, PROMPT, { image, maxNewTokens: 10 });
  const stopAt = free.tokens[3]!;
  const firstIdx = free.tokens.indexOf(stopAt);
  const r = await generate(model, PROMPT, { image, maxNewTokens: 10, stopTokens: [stopAt] });
  assert.is(r.finishReason, 'stop');
  assert.equal(r.tokens, free.tokens.slice(0, firstIdx + 1));
  model.dispose();
  const cfg = tinyConfig({ eos_token_ids: [stopAt] });
  const m2 = LaviModel.fromWeights(cfg, randomWeights(cfg, { seed: 1 }), cpu);
  const r2 = await generate(m2, PROMPT, { image, maxNewTokens: 10 });
  assert.equal(r2.tokens, r.tokens);
  assert.is(r2.finishReason, 'stop');
  m2.dispose();
});

test('streaming callback sees each token in order as it is produced, and can stop generation', async () => {
  const { model, image } = setup();
  const seen: [number, number][] = [];
  const r = await generate(model, PROMPT, { image, maxNewTokens: 7, onToken: (id, i) => void seen.push([id, i]) });
  assert.equal(seen, r.tokens.map((t, i) => [t, i]));
  let steps = 0;
  const r2 = await generate(model, PROMPT, { image, maxNewTokens: 7, onToken: () => ++steps < 3 });
  assert.is(r2.finishReason, 'callback');
  assert.equal(r2.tokens, r.tokens.slice(0, 3));
  const r0 = await generate(model, PROMPT, { image, maxNewTokens: 0 });
  assert.equal(r0.tokens, []);
  assert.ok(r.timings.ttftMs > 0 && r.timings.totalMs >= r.timings.ttftMs);
  model.dispose();
});

test('bad generation options are rejected', async () => {
  const { model } = setup();
  for (const [o, re] of [
    [{ temperature: -1 }, /temperature must be ≥ 0/],
    [{ topK: 1.5 }, /topK must be a non-negative integer/],
    [{ topP: 0 }, /topP must be in \(0, 1\]/],
    [{ maxNewTokens: -2 }, /maxNewTokens must be a non-negative integer/],
  ] as const) {
    let msg = '';
    await generate(model, PROMPT, o).catch((e: Error) => (msg = e.message));
    assert.match(msg, re);
  }
  model.dispose();
});

test('sampler: temperature, top-k and top-p select and weight the right tokens', () => {
  const logits = Float32Array.from([Math.log(0.5), Math.log(0.3), Math.log(0.15), Math.log(0.05)]);
  const count = (opts: Parameters<typeof sampleToken>[1], n = 20000) => {
    const rng = createRng(7);
    const c = [0, 0, 0, 0];
    for (let i = 0; i < n; i++) c[sampleToken(logits, opts, rng)]!++;
    return c.map((x) => x / n);
  };
  const plain = count({ temperature: 1 });
  [0.5, 0.3, 0.15, 0.05].forEach((p, i) => assert.ok(Math.abs(plain[i]! - p) < 0.015, `p[${i}] = ${plain[i]}`));
  const k2 = count({ temperature: 1, topK: 2 });
  assert.equal(k2.slice(2), [0, 0]);
  assert.ok(Math.abs(k2[0]! - 0.625) < 0.015, `top-k renormalises: ${k2[0]}`);
  const p = count({ temperature: 1, topP: 0.85 }); // 0.5 + 0.3 < 0.85 ≤ 0.95: three tokens
  assert.is(p[3], 0);
  assert.ok(p[2]! > 0.1);
  const p2 = count({ temperature: 1, topP: 0.5 }); // the first token alone reaches 0.5
  assert.equal(p2, [1, 0, 0, 0]);
  const cold = count({ temperature: 0.05 });
  assert.ok(cold[0]! > 0.999, 'a low temperature concentrates on the argmax');
  const hot = count({ temperature: 100 });
  assert.ok(hot.every((x) => Math.abs(x - 0.25) < 0.02), 'a high temperature flattens');
  assert.is(sampleToken(logits, {}, createRng(0)), 0, 'temperature 0 is argmax');
});

test.run();
