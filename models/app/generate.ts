// Text generation: one prefill (image + prompt), then one decodeStep per new token through the KV cache — the
// prompt is never recomputed. Greedy decoding (temperature 0, the default) picks the argmax on the backend and
// reads back one integer; sampling reads the logits and draws with a seeded generator, so a seed reproduces
// a continuation exactly.

import { ValueError } from '../../core/errors.js';
import { argmax } from '../../ops/index.js';
import type { ImageInput, LaviModel } from '../lavi/model.js';
import { createRng, type Rng } from '../../core/rng.js';

export interface SamplingOptions {
  /** 0 (default) = greedy. Logits are divided by the temperature before softmax. */
  temperature?: number;
  /** Keep only the k most likely tokens (0 = off). */
  topK?: number;
  /** Keep the smallest set of most likely tokens whose probability reaches p (1 = off). */
  topP?: number;
  /** Seed of the sampling generator (default 0). */
  seed?: number;
}

export interface GenerateOptions extends SamplingOptions {
  image?: ImageInput | null;
  /** Tokens to generate at most (default 32). */
  maxNewTokens?: number;
  /** Generation ends after producing one of these (it is included in the output). Default: config.eos_token_ids. */
  stopTokens?: readonly number[];
  /** Called for each new token as soon as it is chosen; return false to stop after it. */
  onToken?: (id: number, index: number) => void | boolean | Promise<void | boolean>;
}

export interface GenerateResult {
  tokens: number[];
  finishReason: 'stop' | 'length' | 'callback';
  promptTokens: number;
  /** Milliseconds: prefill (until its logits are read), time to first token, all decode steps. */
  timings: { prefillMs: number; ttftMs: number; decodeMs: number; totalMs: number };
}

/** Picks a token from logits: argmax when temperature is 0, else a seeded draw after top-k / top-p. */
export function sampleToken(logits: Float32Array, opts: SamplingOptions, rng: Rng): number {
  const temperature = opts.temperature ?? 0;
  if (temperature === 0) {
    let best = 0;
    for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]! || Number.isNaN(logits[i]!)) best = i;
    return best;
  }
  const n = logits.length;
  let idx = Array.from({ length: n }, (_, i) => i);
  idx.sort((a, b) => logits[b]! - logits[a]! || a - b);
  const topK = opts.topK ?? 0;
  if (topK > 0 && topK < n) idx = idx.slice(0, topK);
  const max = logits[idx[0]!]! / temperature;
  const probs = idx.map((i) => Math.exp(logits[i]! / temperature - max));
  let sum = probs.reduce((a, b) => a + b, 0);
  const topP = opts.topP ?? 1;
  if (topP < 1) {
    let acc = 0;
    let keepN = probs.length;
    for (let j = 0; j < probs.length; j++) {
      acc += probs[j]! / sum;
      if (acc >= topP) {
        keepN = j + 1;
        break;
      }
    }
    probs.length = keepN;
    idx.length = keepN;
    sum = probs.reduce((a, b) => a + b, 0);
  }
  let u = rng.next() * sum;
  for (let j = 0; j < probs.length; j++) {
    u -= probs[j]!;
    if (u < 0) return idx[j]!;
  }
  return idx[probs.length - 1]!;
}

function checkOptions(o: GenerateOptions): void {
  const t = o.temperature ?? 0;
  if (!Number.isFinite(t) || t < 0) throw new ValueError(`generate: temperature must be ≥ 0, got ${t}`);
  const k = o.topK ?? 0;
  if (!Number.isInteger(k) || k < 0) throw new ValueError(`generate: topK must be a non-negative integer, got ${k}`);
  const p = o.topP ?? 1;
  if (!(p > 0 && p <= 1)) throw new ValueError(`generate: topP must be in (0, 1], got ${p}`);
  const m = o.maxNewTokens ?? 32;
  if (!Number.isInteger(m) || m < 0) throw new ValueError(`generate: maxNewTokens must be a non-negative integer, got ${m}`);
}

/** Chooses the next token from the model's current logits. */
async function pick(model: LaviModel, opts: SamplingOptions, rng: Rng): Promise<number> {
  if ((opts.temperature ?? 0) === 0) {
    const am = argmax(model.logits!);
    try {
      const r = await am.read();
      return r[r.length - 1]!;
    } finally {
      am.dispose();
    }
  }
  return sampleToken(await model.readLogits(), opts, rng);
}

/** Generates up to maxNewTokens tokens after `prompt` (and the image, if given). */
export async function generate(model: LaviModel, prompt: readonly number[], opts: GenerateOptions = {}): Promise<GenerateResult> {
  checkOptions(opts);
  const maxNew = opts.maxNewTokens ?? 32;
  const stop = new Set(opts.stopTokens ?? model.config.eos_token_ids);
  const rng = createRng(opts.seed ?? 0);
  const t0 = performance.now();
  const tokens: number[] = [];
  let finishReason: GenerateResult['finishReason'] = 'length';
  let prefillMs = 0, ttftMs = 0;
  if (maxNew === 0) {
    return { tokens, finishReason, promptTokens: prompt.length, timings: { prefillMs, ttftMs, decodeMs: 0, totalMs: 0 } };
  }
  model.prefill(prompt, opts.image ?? null);
  let id = await pick(model, opts, rng);
  prefillMs = ttftMs = performance.now() - t0;
  const tDecode = performance.now();
  for (;;) {
    tokens.push(id);
    const cont = opts.onToken ? await opts.onToken(id, tokens.length - 1) : undefined;
    if (stop.has(id)) {
      finishReason = 'stop';
      break;
    }
    if (cont === false) {
      finishReason = 'callback';
      break;
    }
    if (tokens.length >= maxNew || model.position >= model.config.text_config.max_position_embeddings) break;
    model.decodeStep(id);
    id = await pick(model, opts, rng);
  }
  const end = performance.now();
  return { tokens, finishReason, promptTokens: prompt.length, timings: { prefillMs, ttftMs, decodeMs: end - tDecode, totalMs: end - t0 } };
}
