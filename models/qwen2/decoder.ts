// The Qwen2 decoder (models/README.md, "Decoder"). Batch size 1, token-major activations [1, T, d]. Each call
// processes T new tokens at positions cache.length .. cache.length+T-1, writing their keys/values into the KV
// cache, so prefill (T = prompt) and decode (T = 1) are the same code.
//
// Every norm goes through an optional NormHook: without one it is the plain RMSNorm; LaVi passes a hook that turns
// the modulated norms into ViLN (models/lavi/conditioner.ts). The decoder knows nothing about images.

import { costSection } from '../../core/cost.js';
import { tidy } from '../../core/scope.js';
import type { Tensor } from '../../core/tensor.js';
import { add, attention, embedding, linear, reshape, rmsNorm, rope, sliceAxis, swiglu } from '../../ops/index.js';
import type { ModelWeights } from '../loading/weights.js';
import type { Qwen2Config } from './config.js';
import type { KVCache } from './kv-cache.js';
import type { Qwen2Weights } from './weights.js';

export type NormName = 'input_layernorm' | 'post_attention_layernorm' | 'norm';

/** One norm of the decoder: layer index (or 'final' for model.norm), which norm, and its key '3.input_layernorm'. */
export interface NormSite {
  layer: number | 'final';
  norm: NormName;
  key: string;
}

export function normSiteKey(layer: number | 'final', norm: NormName): string {
  return `${layer}.${norm}`;
}

/** Replaces a norm: x [1, T, d] → normalised and scaled [1, T, d]. Return null to run the plain RMSNorm. */
export type NormHook = (x: Tensor, site: NormSite, gamma: Tensor, eps: number) => Tensor | null;

export interface DecoderRunOptions {
  /** When given, receives the residual stream after each layer (caller owns and disposes them). */
  capture?: Tensor[];
}

/** One decoder layer's tensors, looked up once (a lookup per token was a visible share of a small model's step). */
interface LayerTensors {
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

const FINAL_SITE: NormSite = { layer: 'final', norm: 'norm', key: normSiteKey('final', 'norm') };

export class Decoder {
  readonly d: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly headDim: number;
  private readonly layerTensors: LayerTensors[] = [];
  private readonly sites: { input: NormSite; post: NormSite }[] = [];

  constructor(
    readonly cfg: Qwen2Config,
    readonly table: Qwen2Weights,
    private readonly w: ModelWeights,
  ) {
    this.d = cfg.hidden_size;
    this.heads = cfg.num_attention_heads;
    this.kvHeads = cfg.num_key_value_heads;
    this.headDim = cfg.hidden_size / cfg.num_attention_heads;
    for (let i = 0; i < cfg.num_hidden_layers; i++) {
      this.sites.push({
        input: { layer: i, norm: 'input_layernorm', key: normSiteKey(i, 'input_layernorm') },
        post: { layer: i, norm: 'post_attention_layernorm', key: normSiteKey(i, 'post_attention_layernorm') },
      });
    }
  }

  /** Layer i's tensors, resolved on first use (the weights are fixed for the model's life). */
  private tensorsOf(i: number): LayerTensors {
    let lt = this.layerTensors[i];
    if (!lt) {
      const s = this.table.layers[i]!;
      const g = (spec: { name: string } | null) => (spec ? this.w.get(spec.name) : null);
      lt = {
        inputNorm: g(s.inputNorm)!, postNorm: g(s.postNorm)!, q: g(s.q)!, k: g(s.k)!, v: g(s.v)!,
        qBias: g(s.qBias), kBias: g(s.kBias), vBias: g(s.vBias), o: g(s.o)!, gate: g(s.gate)!, up: g(s.up)!, down: g(s.down)!,
      };
      this.layerTensors[i] = lt;
    }
    return lt;
  }

  /** ids (i32 [1, T]) → embeddings [1, T, d]. */
  embed(ids: Tensor): Tensor {
    return costSection('llm', () => embedding(this.w.get(this.table.embed.name), ids));
  }

  /**
   * Runs every layer on h [1, T, d] (consumed: disposed here, unless captured) at the cache's current position,
   * appends the T tokens to the cache, and returns the last layer's output (before the final norm).
   */
  forward(h: Tensor, cache: KVCache, hook: NormHook | null, opts: DecoderRunOptions = {}): Tensor {
    const T = h.shape[1]!;
    const L = this.cfg.num_hidden_layers;
    cache.reserve(cache.length + T);
    const out = costSection('llm', () => {
      for (let i = 0; i < L; i++) {
        const next = tidy(() => this.layer(h, i, cache, hook));
        if (opts.capture) opts.capture.push(h);
        else h.dispose();
        h = next;
      }
      return h;
    });
    cache.advance(T);
    return out;
  }

  private norm(x: Tensor, site: NormSite, gamma: Tensor, hook: NormHook | null): Tensor {
    const eps = this.cfg.rms_norm_eps;
    return (hook && hook(x, site, gamma, eps)) ?? rmsNorm(x, gamma, eps);
  }

  private layer(x: Tensor, i: number, cache: KVCache, hook: NormHook | null): Tensor {
    const t = this.cfg;
    const lt = this.tensorsOf(i);
    const site = this.sites[i]!;
    const T = x.shape[1]!;
    const pos = cache.length;
    const Dh = this.headDim;

    const n1 = this.norm(x, site.input, lt.inputNorm, hook);
    const q = rope(reshape(linear(n1, lt.q, lt.qBias), [1, T, this.heads, Dh]), { theta: t.rope_theta, offset: pos });
    const k = rope(reshape(linear(n1, lt.k, lt.kBias), [1, T, this.kvHeads, Dh]), { theta: t.rope_theta, offset: pos });
    const v = reshape(linear(n1, lt.v, lt.vBias), [1, T, this.kvHeads, Dh]);
    const kv = cache.write(i, k, v);
    const a = attention(q, kv.k, kv.v, { causal: true, queryOffset: pos, keyLength: pos + T, scale: 1 / Math.sqrt(Dh) });
    const h = add(x, linear(reshape(a, [1, T, this.heads * Dh]), lt.o));

    const n2 = this.norm(h, site.post, lt.postNorm, hook);
    const m = linear(swiglu(linear(n2, lt.gate), linear(n2, lt.up)), lt.down);
    return add(h, m);
  }

  /** Final norm and lm_head: h [1, T, d] → logits [1, T', V] for the last `lastN` tokens (all when lastN ≥ T).
   *  h is not consumed. */
  logits(h: Tensor, hook: NormHook | null, lastN = 1): Tensor {
    const T = h.shape[1]!;
    return costSection('llm', () =>
      tidy(() => {
        const x = lastN >= T ? h : sliceAxis(h, 1, T - lastN, T);
        return linear(this.finalNorm(x, hook), this.w.get(this.table.head.name));
      }),
    );
  }

  /** The final norm (model.norm, through the hook): h [1, T, d] → [1, T, d]. */
  finalNorm(h: Tensor, hook: NormHook | null): Tensor {
    return this.norm(h, FINAL_SITE, this.w.get(this.table.norm.name), hook);
  }
}
