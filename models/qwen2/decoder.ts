// The Qwen2 decoder with ViLN in the configured norms (models/README.md, "Decoder"). Batch size 1, token-major
// activations [1, T, d]. Each call processes T new tokens at positions cache.length .. cache.length+T-1, writing
// their keys/values into the KV cache, so prefill (T = prompt) and decode (T = 1) are the same code.

import { costSection } from '../../core/cost.js';
import { tidy } from '../../core/scope.js';
import type { Tensor } from '../../core/tensor.js';
import { add, attention, embedding, linear, reshape, rope, sliceAxis, swiglu } from '../../ops/index.js';
import { type ConditionerSet, decoderNorm, siteKey, type VisualContext } from '../lavi/conditioner.js';
import type { ModelConfig } from '../lavi/config.js';
import type { KVCache } from './kv-cache.js';
import type { ModelWeights } from '../lavi/weights.js';

const FINAL_SITE = siteKey('final', 'norm');

export interface DecoderRunOptions {
  /** When given, receives the residual stream after each layer (caller owns and disposes them). */
  capture?: Tensor[];
}

/** One decoder layer's tensors, looked up by name once (a lookup builds and hashes the name: per token it was
 *  a visible share of a small model's decode step). */
interface LayerWeights {
  inputNorm: Tensor;
  postNorm: Tensor;
  q: Tensor;
  k: Tensor;
  v: Tensor;
  qBias: Tensor | null;
  kBias: Tensor | null;
  vBias: Tensor | null;
  o: Tensor;
  gate: Tensor;
  up: Tensor;
  down: Tensor;
}

export class Decoder {
  readonly d: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly headDim: number;
  /** When set, receives every conditioner's output [1, T, m·d] by site key ('3.input_layernorm', 'final.norm');
   *  it must copy what it keeps. For tests against reference implementations. */
  deltaSink: ((site: string, delta: Tensor) => void) | null = null;
  private readonly layerWeights: LayerWeights[] = [];
  private readonly sites: { input: string; post: string }[] = [];

  constructor(
    readonly cfg: ModelConfig,
    private readonly w: ModelWeights,
    private readonly conditioners: ConditionerSet,
  ) {
    const t = cfg.text_config;
    this.d = t.hidden_size;
    this.heads = t.num_attention_heads;
    this.kvHeads = t.num_key_value_heads;
    this.headDim = t.hidden_size / t.num_attention_heads;
    for (let i = 0; i < t.num_hidden_layers; i++) this.sites.push({ input: siteKey(i, 'input_layernorm'), post: siteKey(i, 'post_attention_layernorm') });
  }

  /** Layer i's tensors, resolved on first use (the weights are fixed for the model's life). */
  private weightsOf(i: number): LayerWeights {
    let lw = this.layerWeights[i];
    if (!lw) {
      const p = `model.layers.${i}.`;
      const w = (n: string) => this.w.get(p + n);
      const b = (n: string) => (this.cfg.text_config.attention_bias ? this.w.get(p + n) : null);
      lw = {
        inputNorm: w('input_layernorm.weight'),
        postNorm: w('post_attention_layernorm.weight'),
        q: w('self_attn.q_proj.weight'),
        k: w('self_attn.k_proj.weight'),
        v: w('self_attn.v_proj.weight'),
        qBias: b('self_attn.q_proj.bias'),
        kBias: b('self_attn.k_proj.bias'),
        vBias: b('self_attn.v_proj.bias'),
        o: w('self_attn.o_proj.weight'),
        gate: w('mlp.gate_proj.weight'),
        up: w('mlp.up_proj.weight'),
        down: w('mlp.down_proj.weight'),
      };
      this.layerWeights[i] = lw;
    }
    return lw;
  }

  /** ids (i32 [1, T]) → embeddings [1, T, d]. */
  embed(ids: Tensor): Tensor {
    return costSection('llm', () => embedding(this.w.get('model.embed_tokens.weight'), ids));
  }

  /**
   * Runs every layer on h [1, T, d] (consumed: disposed here, unless captured) at the cache's current position,
   * appends the T tokens to the cache, and returns the last layer's output (before the final norm).
   */
  forward(h: Tensor, cache: KVCache, visual: VisualContext | null, opts: DecoderRunOptions = {}): Tensor {
    const T = h.shape[1]!;
    const L = this.cfg.text_config.num_hidden_layers;
    cache.reserve(cache.length + T);
    const out = costSection('llm', () => {
      for (let i = 0; i < L; i++) {
        const next = tidy(() => this.layer(h, i, cache, visual));
        if (opts.capture) opts.capture.push(h);
        else h.dispose();
        h = next;
      }
      return h;
    });
    cache.advance(T);
    return out;
  }

  /** `key` is siteKey(layer, norm), made once per layer. */
  private norm(x: Tensor, key: string, gamma: Tensor, visual: VisualContext | null): Tensor {
    const eps = this.cfg.text_config.rms_norm_eps;
    const cond = visual ? this.conditioners.bySite(key) : undefined;
    const sink = this.deltaSink;
    return decoderNorm(x, gamma, eps, cond, cond ? visual!.get(key) : undefined, sink ? (t) => sink(key, t) : undefined);
  }

  private layer(x: Tensor, i: number, cache: KVCache, visual: VisualContext | null): Tensor {
    const t = this.cfg.text_config;
    const lw = this.weightsOf(i);
    const site = this.sites[i]!;
    const T = x.shape[1]!;
    const pos = cache.length;
    const Dh = this.headDim;

    const n1 = this.norm(x, site.input, lw.inputNorm, visual);
    const q = rope(reshape(linear(n1, lw.q, lw.qBias), [1, T, this.heads, Dh]), { theta: t.rope_theta, offset: pos });
    const k = rope(reshape(linear(n1, lw.k, lw.kBias), [1, T, this.kvHeads, Dh]), { theta: t.rope_theta, offset: pos });
    const v = reshape(linear(n1, lw.v, lw.vBias), [1, T, this.kvHeads, Dh]);
    const kv = cache.write(i, k, v);
    const a = attention(q, kv.k, kv.v, { causal: true, queryOffset: pos, keyLength: pos + T, scale: 1 / Math.sqrt(Dh) });
    const h = add(x, linear(reshape(a, [1, T, this.heads * Dh]), lw.o));

    const n2 = this.norm(h, site.post, lw.postNorm, visual);
    const m = linear(swiglu(linear(n2, lw.gate), linear(n2, lw.up)), lw.down);
    return add(h, m);
  }

  /**
   * Final norm and lm_head: h [1, T, d] → logits [1, T', V] for the last `lastN` tokens (all when lastN ≥ T).
   * h is not consumed.
   */
  logits(h: Tensor, visual: VisualContext | null, lastN = 1): Tensor {
    const t = this.cfg.text_config;
    const T = h.shape[1]!;
    return costSection('llm', () =>
      tidy(() => {
        const x = lastN >= T ? h : sliceAxis(h, 1, T - lastN, T);
        const n = this.finalNorm(x, visual);
        const head = t.tie_word_embeddings ? this.w.get('model.embed_tokens.weight') : this.w.get('lm_head.weight');
        return linear(n, head);
      }),
    );
  }

  /** The final norm (ViLN when modulate_final_norm and an image is present): h [1, T, d] → [1, T, d]. */
  finalNorm(h: Tensor, visual: VisualContext | null): Tensor {
    return this.norm(h, FINAL_SITE, this.w.get('model.norm.weight'), visual);
  }
}
