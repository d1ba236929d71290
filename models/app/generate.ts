// Text generation: one prefill (image + prompt), then one decodeStep per new token through the KV cache — the
// prompt is never recomputed. Greedy decoding (temperature 0, the default) picks the argmax on the backend and
// reads back one integer; sampling reads the logits and draws with a seeded generator, so a seed reproduces
// a continuation exactly.

import { ValueError } from '../../core/errors.js';
import { argmax } from '../../ops/index.js';
import type { ImageInput, LaviModel } from '../lavi/model.js';
import type { CausalLM } from '../qwen2/model.js';
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
  /** Hugging Face's repetition_penalty (1 = off). */
  repetitionPenalty?: number;
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
  const r = o.repetitionPenalty ?? 1;
  if (!(typeof r === 'number' && r > 0 && Number.isFinite(r))) throw new ValueError(`generate: repetitionPenalty must be a number > 0, got ${r}`);
}

/** Hugging Face's repetition penalty: each id seen so far has its logit divided by p when positive, times p when
 *  negative. In place. */
export function applyRepetitionPenalty(logits: Float32Array, seen: Iterable<number>, p: number): void {
  if (p === 1) return;
  for (const id of new Set(seen)) {
    const v = logits[id]!;
    logits[id] = v > 0 ? v / p : v * p;
  }
}

/** Chooses the next token from the model's current logits: argmax on the backend when greedy without a penalty. */
async function pick(model: CausalLM, opts: SamplingOptions & { repetitionPenalty?: number }, rng: Rng, seen: readonly number[]): Promise<number> {
  const penalty = opts.repetitionPenalty ?? 1;
  if ((opts.temperature ?? 0) === 0 && penalty === 1) {
    const am = argmax(model.logits!);
    try {
      const r = await am.read();
      return r[r.length - 1]!;
    } finally {
      am.dispose();
    }
  }
  const logits = Float32Array.from(await model.readLogits());
  applyRepetitionPenalty(logits, seen, penalty);
  return sampleToken(logits, opts, rng);
}

/** Lets timers and I/O (an abort, another request) run between tokens, also on synchronous backends. */
// Node: setImmediate; a browser (no setImmediate): a MessageChannel message, which unlike setTimeout(0) is not
// clamped to 4 ms after a few nested calls.
const yieldToEventLoop = (): Promise<void> =>
  typeof setImmediate === 'function'
    ? new Promise((resolve) => setImmediate(resolve))
    : new Promise((resolve) => {
        const ch = new MessageChannel();
        const port = ch.port1 as unknown as { onmessage: (() => void) | null; close(): void };
        port.onmessage = () => {
          port.close();
          resolve();
        };
        ch.port2.postMessage(null);
      });

export type FinishReason = 'stop' | 'length' | 'context' | 'aborted' | 'callback';

export interface DecodeLoopOptions extends SamplingOptions {
  maxNewTokens: number;
  stopTokens: ReadonlySet<number>;
  /** HF repetition_penalty over the prompt and the tokens generated so far (1 = off). */
  repetitionPenalty?: number;
  /** Called for each new token as soon as it is chosen; return false to stop after it. */
  onToken?: (id: number, index: number) => void | boolean | Promise<void | boolean>;
  /** Checked between tokens: the loop ends with 'aborted'. */
  signal?: AbortSignal;
  /** Yield to the event loop between tokens (servers; default false). */
  yieldBetween?: boolean;
  /** Wraps each decode step (the runtime's FLOP recorder). */
  measure?: <T>(fn: () => T) => T;
}

export interface DecodeLoopResult {
  tokens: number[];
  finishReason: FinishReason;
  /** Milliseconds from the call until the first token was chosen, and of the decode steps after it. */
  firstTokenMs: number;
  decodeMs: number;
}

/**
 * The generation loop, after a prefill: picks a token from the current logits, reports it, stops at a stop token
 * (included in `tokens`), the token budget, the context's end, the callback or the signal; else runs it through
 * the cache and repeats. The one loop behind generate(), the runtime, the CLI and the servers.
 */
export async function decodeLoop(model: CausalLM, prompt: readonly number[], opts: DecodeLoopOptions): Promise<DecodeLoopResult> {
  const t0 = performance.now();
  const rng = createRng(opts.seed ?? 0);
  const seen = opts.repetitionPenalty && opts.repetitionPenalty !== 1 ? [...prompt] : [];
  const tokens: number[] = [];
  let finishReason: FinishReason = 'length';
  if (opts.maxNewTokens === 0) return { tokens, finishReason, firstTokenMs: 0, decodeMs: 0 };
  let id = await pick(model, opts, rng, seen);
  const tFirst = performance.now();
  for (;;) {
    tokens.push(id);
    if (seen.length || opts.repetitionPenalty) seen.push(id);
    const cont = opts.onToken ? await opts.onToken(id, tokens.length - 1) : undefined;
    if (opts.stopTokens.has(id)) {
      finishReason = 'stop';
      break;
    }
    if (cont === false) {
      finishReason = 'callback';
      break;
    }
    if (tokens.length >= opts.maxNewTokens) break;
    if (model.position >= model.maxContext) {
      finishReason = 'context';
      break;
    }
    if (opts.yieldBetween) await yieldToEventLoop();
    if (opts.signal?.aborted) {
      finishReason = 'aborted';
      break;
    }
    if (opts.measure) opts.measure(() => model.decodeStep(id));
    else model.decodeStep(id);
    id = await pick(model, opts, rng, seen);
  }
  const end = performance.now();
  return { tokens, finishReason, firstTokenMs: tFirst - t0, decodeMs: end - tFirst };
}

/** Generates up to maxNewTokens tokens after `prompt` (and the image, if given). */
export async function generate(model: LaviModel, prompt: readonly number[], opts: GenerateOptions = {}): Promise<GenerateResult> {
  checkOptions(opts);
  const maxNew = opts.maxNewTokens ?? 32;
  const t0 = performance.now();
  if (maxNew === 0) {
    return { tokens: [], finishReason: 'length', promptTokens: prompt.length, timings: { prefillMs: 0, ttftMs: 0, decodeMs: 0, totalMs: 0 } };
  }
  model.prefill(prompt, opts.image ?? null);
  const r = await decodeLoop(model, prompt, { ...opts, maxNewTokens: maxNew, stopTokens: new Set(opts.stopTokens ?? model.config.eos_token_ids) });
  const ttftMs = performance.now() - t0 - r.decodeMs;
  const finishReason = r.finishReason === 'context' ? 'length' : (r.finishReason as GenerateResult['finishReason']);
  return { tokens: r.tokens, finishReason, promptTokens: prompt.length, timings: { prefillMs: ttftMs, ttftMs, decodeMs: r.decodeMs, totalMs: performance.now() - t0 } };
}
