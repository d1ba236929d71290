// One request's second half, shared by the Node runtime (runtime.ts) and the browser runtime (web-runtime.ts):
// prefill (the encoded image consumed), the decode loop with streaming text, the answer decoded, the sequence
// forgotten, and the timings from the request's start.

import type { Engine, EncodedImage } from './engine.js';
import { decodeLoop, type SamplingOptions } from './generate.js';
import type { StopReason, TextTokenizer, Timings } from './runtime-types.js';

export interface AnswerOptions extends SamplingOptions {
  maxNewTokens: number;
  stopTokens: ReadonlySet<number>;
  signal?: AbortSignal;
  /** Each answer token's text (the stop token is not reported) and id. */
  onToken?: (text: string, id: number) => void;
  /** Wraps the prefill and each decode step (the runtime's FLOP recorder). */
  measure?: <T>(fn: () => T) => T;
  /** Called right after the prefill (e.g. to read the recorder's prefill FLOPs). */
  afterPrefill?: () => void;
}

export interface Answer {
  answer: string;
  tokens: number[];
  stopReason: StopReason;
  /** Tokens in the decoder's context after prefill. */
  contextTokens: number;
  timings: Omit<Timings, 'imageMs' | 'encodeMs'>;
}

/** Safe-to-print text per token: the tokenizer's stream decoder, or re-decoding the answer so far and holding
 *  back a trailing incomplete UTF-8 character (U+FFFD). No tokenizer: no text. */
export function textStream(tok: TextTokenizer | null): (id: number) => string {
  if (!tok) return () => '';
  if (tok.createStreamDecoder) {
    const d = tok.createStreamDecoder({ skipSpecialTokens: true });
    return (id) => d.push(id);
  }
  const ids: number[] = [];
  let emitted = 0;
  return (id) => {
    ids.push(id);
    let text = tok.decode(ids, { skipSpecialTokens: true });
    if (text.endsWith('\uFFFD')) text = text.slice(0, -1);
    if (text.length <= emitted) return '';
    const delta = text.slice(emitted);
    emitted = text.length;
    return delta;
  };
}

/** Prefill `ids` with `image` (consumed, also on error), generate, decode the answer. `t0`: the request's start. */
export async function prefillAndAnswer(engine: Engine, tok: TextTokenizer | null, ids: readonly number[], image: EncodedImage | null, o: AnswerOptions, t0: number): Promise<Answer> {
  const measure = o.measure ?? (<T>(fn: () => T): T => fn());
  const tp = performance.now();
  try {
    measure(() => engine.prefill(ids, image));
  } finally {
    image?.dispose(); // consumed by prefill (disposing twice is a no-op), also when it throws
  }
  o.afterPrefill?.();
  const contextTokens = engine.lm.position;
  const stream = textStream(tok);
  const loop = await decodeLoop(engine.lm, ids, {
    ...o,
    yieldBetween: true,
    measure: o.measure,
    onToken: (id) => {
      if (!o.stopTokens.has(id)) o.onToken?.(stream(id), id);
    },
  });
  const end = performance.now();
  const tokens = loop.tokens;
  const stopReason: StopReason = loop.finishReason === 'callback' ? 'stop' : loop.finishReason;
  const answerIds = stopReason === 'stop' ? tokens.slice(0, -1) : tokens;
  const answer = tok ? tok.decode(answerIds, { skipSpecialTokens: true }).trim() : '';
  engine.lm.reset(); // frees the cache's sequence state and the logits; weights stay
  const tFirst = end - loop.decodeMs;
  return {
    answer,
    tokens,
    stopReason,
    contextTokens,
    timings: {
      prefillMs: tFirst - tp,
      ttftMs: tFirst - t0,
      decodeMs: loop.decodeMs,
      totalMs: end - t0,
      tokensPerSecond: tokens.length > 1 && loop.decodeMs > 0 ? ((tokens.length - 1) * 1000) / loop.decodeMs : 0,
    },
  };
}
