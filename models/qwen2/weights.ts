// The Qwen2 decoder's tensors, declared once: names (Hugging Face's, under a prefix that depends on the checkpoint
// layout) and shapes. The decoder looks tensors up through this table only.

import { weightSpec, type WeightSpec } from '../loading/weights.js';
import type { Qwen2Config } from './config.js';

/** Where a checkpoint keeps the decoder: `body` prefixes model.* ('model.' in Qwen2ForCausalLM), `head` names the
 *  untied lm_head weight. */
export interface Qwen2Names {
  body: string;
  head: string;
}

/** Qwen2ForCausalLM (and LaVi, which references the Qwen2 tensors by these names). */
export const QWEN2_NAMES: Qwen2Names = { body: 'model.', head: 'lm_head.weight' };

export interface Qwen2LayerWeights {
  inputNorm: WeightSpec;
  q: WeightSpec;
  k: WeightSpec;
  v: WeightSpec;
  qBias: WeightSpec | null;
  kBias: WeightSpec | null;
  vBias: WeightSpec | null;
  o: WeightSpec;
  postNorm: WeightSpec;
  gate: WeightSpec;
  up: WeightSpec;
  down: WeightSpec;
}

export interface Qwen2Weights {
  embed: WeightSpec;
  layers: Qwen2LayerWeights[];
  norm: WeightSpec;
  /** The output projection: lm_head, or the embedding table when tied. */
  head: WeightSpec;
  /** The untied lm_head spec, or null (tied). */
  lmHead: WeightSpec | null;
}

export function declareQwen2(cfg: Qwen2Config, names: Qwen2Names = QWEN2_NAMES): Qwen2Weights {
  const d = cfg.hidden_size;
  const Dh = d / cfg.num_attention_heads;
  const qOut = cfg.num_attention_heads * Dh;
  const kvOut = cfg.num_key_value_heads * Dh;
  const b = names.body;
  const embed = weightSpec(`${b}embed_tokens.weight`, [cfg.vocab_size, d], 'embedding');
  const layers: Qwen2LayerWeights[] = [];
  for (let i = 0; i < cfg.num_hidden_layers; i++) {
    const p = `${b}layers.${i}.`;
    const bias = (n: string, size: number) => (cfg.attention_bias ? weightSpec(`${p}self_attn.${n}.bias`, [size], 'vector') : null);
    layers.push({
      inputNorm: weightSpec(`${p}input_layernorm.weight`, [d], 'vector'),
      q: weightSpec(`${p}self_attn.q_proj.weight`, [qOut, d], 'matrix'),
      k: weightSpec(`${p}self_attn.k_proj.weight`, [kvOut, d], 'matrix'),
      v: weightSpec(`${p}self_attn.v_proj.weight`, [kvOut, d], 'matrix'),
      qBias: bias('q_proj', qOut),
      kBias: bias('k_proj', kvOut),
      vBias: bias('v_proj', kvOut),
      o: weightSpec(`${p}self_attn.o_proj.weight`, [d, qOut], 'matrix'),
      postNorm: weightSpec(`${p}post_attention_layernorm.weight`, [d], 'vector'),
      gate: weightSpec(`${p}mlp.gate_proj.weight`, [cfg.intermediate_size, d], 'matrix'),
      up: weightSpec(`${p}mlp.up_proj.weight`, [cfg.intermediate_size, d], 'matrix'),
      down: weightSpec(`${p}mlp.down_proj.weight`, [d, cfg.intermediate_size], 'matrix'),
    });
  }
  const lmHead = cfg.tie_word_embeddings ? null : weightSpec(names.head, [cfg.vocab_size, d], 'matrix');
  return { embed, layers, norm: weightSpec(`${b}norm.weight`, [d], 'vector'), head: lmHead ?? embed, lmHead };
}

/** All specs of the decoder in order (the tied head is not listed twice). */
export function qwen2Specs(w: Qwen2Weights): WeightSpec[] {
  const out: WeightSpec[] = [w.embed];
  for (const l of w.layers) {
    out.push(l.inputNorm, l.q, l.k, l.v);
    for (const bias of [l.qBias, l.kBias, l.vBias]) if (bias) out.push(bias);
    out.push(l.o, l.postNorm, l.gate, l.up, l.down);
  }
  out.push(w.norm);
  if (w.lmHead) out.push(w.lmHead);
  return out;
}

/** Names a Qwen2 checkpoint may hold that the graph does not use: a stored lm_head when tied, rotary buffers. */
export function qwen2Tolerated(cfg: Qwen2Config, names: Qwen2Names = QWEN2_NAMES): ((n: string) => boolean)[] {
  return [(n) => cfg.tie_word_embeddings && n === names.head, (n) => n.endsWith('.rotary_emb.inv_freq')];
}
