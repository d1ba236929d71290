// Qwen2ForCausalLM: the decoder, its KV cache and the sequence being generated. Text-only models use it as it is;
// LaVi (a norm hook) and LLaVA-OneVision (image features spliced into the input embeddings) build on it.
//
//   const lm = new Qwen2CausalLM(config, table, weights, backend);
//   lm.prefill(ids);            // logits of the last prompt token, [1, 1, V]
//   lm.decodeStep(id);          // one token through the cache
//
// Tensors returned by prefill/decodeStep/extend are owned by the model and stay valid until its next call.

import type { Backend } from '../../core/backend.js';
import { ValueError } from '../../core/errors.js';
import { keep } from '../../core/scope.js';
import type { Tensor } from '../../core/tensor.js';
import { tensor } from '../../ops/index.js';
import type { ModelWeights } from '../loading/weights.js';
import type { Qwen2Config } from './config.js';
import { Decoder, type NormHook } from './decoder.js';
import { KVCache } from './kv-cache.js';
import type { Qwen2Weights } from './weights.js';

export interface LMOptions {
  /** Initial KV-cache capacity in tokens (it grows as needed). */
  kvCapacity?: number;
}

export interface RunOptions {
  /** Return logits for the last `textTokens` positions, [1, T, V], instead of the last one. */
  allLogits?: boolean;
  /** Keep the residual stream after the embedding and after every layer in `hidden`. */
  captureHidden?: boolean;
}

export interface ModelStats {
  /** Tokens run through the decoder since the model was made (visual tokens included when in the context). */
  decoderTokens: number;
  /** Calls of prefill / decodeStep / extend. */
  prefills: number;
  steps: number;
  /** Images whose per-image state was computed. */
  imagesPrepared: number;
}

/** What a generation loop needs from a model (models/app/generate.ts). */
export interface CausalLM {
  /** Tokens in the KV cache (the position the next token gets). */
  readonly position: number;
  /** The context length (max_position_embeddings). */
  readonly maxContext: number;
  readonly vocabSize: number;
  /** Logits of the last call [1, T, V], or null. */
  readonly logits: Tensor | null;
  readLogits(): Promise<Float32Array>;
  decodeStep(id: number): Tensor;
  reset(): void;
}

export class Qwen2CausalLM implements CausalLM {
  readonly decoder: Decoder;
  readonly cache: KVCache;
  readonly stats: ModelStats = { decoderTokens: 0, prefills: 0, steps: 0, imagesPrepared: 0 };
  /** With captureHidden: [embeddings, after layer 0, …, after layer L−1, final norm output]. */
  hidden: Tensor[] = [];
  /** The norm hook of the current sequence (LaVi's conditioners), or null: plain RMSNorm. */
  normHook: NormHook | null = null;
  private lastLogits: Tensor | null = null;
  private disposed = false;

  constructor(
    readonly config: Qwen2Config,
    readonly table: Qwen2Weights,
    readonly weights: ModelWeights,
    readonly backend: Backend,
    opts: LMOptions = {},
  ) {
    this.decoder = new Decoder(config, table, weights);
    const c = config;
    this.cache = new KVCache(backend, c.num_hidden_layers, c.num_key_value_heads, c.hidden_size / c.num_attention_heads, c.max_position_embeddings, opts.kvCapacity ?? 0);
  }

  get position(): number {
    return this.cache.length;
  }

  get maxContext(): number {
    return this.config.max_position_embeddings;
  }

  get vocabSize(): number {
    return this.config.vocab_size;
  }

  get logits(): Tensor | null {
    return this.lastLogits;
  }

  /** Reads the last position's logits of the last call. */
  async readLogits(): Promise<Float32Array> {
    const l = this.lastLogits;
    if (!l) throw new ValueError('readLogits: no logits yet (call prefill first)');
    const all = (await l.read()) as Float32Array;
    const V = l.shape[2]!;
    return all.subarray(all.length - V);
  }

  /** Token ids → i32 [1, T] on the backend; every id must be in the vocabulary. */
  idsTensor(ids: readonly number[] | Int32Array): Tensor {
    const V = this.config.vocab_size;
    if (ids.length === 0) throw new ValueError('prompt: no token ids');
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      if (!Number.isInteger(id) || id < 0 || id >= V) throw new ValueError(`token id ${id} at position ${i} is outside the vocabulary [0, ${V})`);
    }
    return tensor(this.backend, Int32Array.from(ids), [1, ids.length], 'i32');
  }

  /** Embeddings [1, T, d] of token ids. */
  embedIds(ids: readonly number[] | Int32Array): Tensor {
    const t = this.idsTensor(ids);
    try {
      return this.decoder.embed(t);
    } finally {
      t.dispose();
    }
  }

  /** Forgets the sequence: KV cache and captured states (the norm hook is the owner's to clear). */
  clearSequence(): void {
    for (const h of this.hidden) h.dispose();
    this.hidden = [];
    this.cache.reset();
  }

  /** Starts a new text-only sequence. Returns the last prompt token's logits [1, 1, V]. */
  prefill(ids: readonly number[] | Int32Array, opts: RunOptions = {}): Tensor {
    this.assertAlive();
    this.clearSequence();
    this.normHook = null;
    this.stats.prefills++;
    return this.run(this.embedIds(ids), ids.length, opts);
  }

  /**
   * Runs input embeddings h [1, T', d] (consumed) through the decoder at the current position; logits for the last
   * `textTokens` positions with allLogits, else the last one.
   */
  run(h: Tensor, textTokens: number, opts: RunOptions = {}): Tensor {
    this.assertAlive();
    const Ttot = h.shape[1]!;
    const capture = opts.captureHidden ? ([] as Tensor[]) : undefined;
    try {
      const out = this.decoder.forward(h, this.cache, this.normHook, { capture });
      this.stats.decoderTokens += Ttot;
      let logits: Tensor;
      try {
        logits = this.decoder.logits(out, this.normHook, opts.allLogits ? textTokens : 1);
        if (capture) capture.push(out, this.decoder.finalNorm(out, this.normHook));
      } finally {
        if (!capture) out.dispose();
      }
      if (capture) {
        for (const c of this.hidden) c.dispose();
        this.hidden = capture.map((c) => keep(c));
      }
      this.lastLogits?.dispose();
      this.lastLogits = keep(logits);
      return logits;
    } catch (e) {
      for (const c of capture ?? []) c.dispose();
      throw e;
    }
  }

  /** Runs more tokens through the cache (continuing the sequence). */
  extend(ids: readonly number[] | Int32Array, opts: RunOptions = {}): Tensor {
    this.assertAlive();
    return this.run(this.embedIds(ids), ids.length, opts);
  }

  /** One generated token through the cache → its logits [1, 1, V]. */
  decodeStep(id: number): Tensor {
    this.stats.steps++;
    return this.extend([id]);
  }

  /** Forgets the sequence and the logits; keeps the weights. */
  reset(): void {
    this.clearSequence();
    this.normHook = null;
    this.lastLogits?.dispose();
    this.lastLogits = null;
  }

  /** Frees everything on the backend, weights included. */
  dispose(): void {
    if (this.disposed) return;
    this.reset();
    this.cache.dispose();
    this.weights.dispose();
    this.disposed = true;
  }

  assertAlive(): void {
    if (this.disposed) throw new ValueError('model used after dispose()');
  }
}
