// Qwen2 / Qwen2.5 decoder configuration, read from a Hugging Face config.json (model_type "qwen2"), or from the
// text_config section of a LaVi or LLaVA-OneVision config. Features this engine does not implement (sliding-window
// attention turned on, rope_scaling, another activation) are refused with a message saying so, never ignored.

import { ValueError } from '../../core/errors.js';
import { bool, num, tokenIds, type Json } from '../loading/json-fields.js';

export interface Qwen2Config {
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  rms_norm_eps: number;
  rope_theta: number;
  max_position_embeddings: number;
  tie_word_embeddings: boolean;
  /** Qwen2 has biases on q/k/v only (always, in Hugging Face's Qwen2Attention). */
  attention_bias: boolean;
}

/** Token ids a Qwen2 config.json names (generation_config.json, when present, takes precedence for eos). */
export interface Qwen2TokenIds {
  bos_token_id: number | null;
  eos_token_ids: number[];
}

/**
 * Validates a Qwen2 config object. `where` names the file (and section) in errors. Hugging Face defaults apply to
 * absent optional fields (num_key_value_heads = num_attention_heads, rope_theta 10000, tie_word_embeddings false).
 */
export function parseQwen2Config(j: Json, where: string): Qwen2Config {
  const heads = num(j, 'num_attention_heads', where, { int: true, min: 1 });
  const cfg: Qwen2Config = {
    vocab_size: num(j, 'vocab_size', where, { int: true, min: 1 }),
    hidden_size: num(j, 'hidden_size', where, { int: true, min: 1 }),
    intermediate_size: num(j, 'intermediate_size', where, { int: true, min: 1 }),
    num_hidden_layers: num(j, 'num_hidden_layers', where, { int: true, min: 1 }),
    num_attention_heads: heads,
    num_key_value_heads: num(j, 'num_key_value_heads', where, { int: true, min: 1, default: heads }),
    rms_norm_eps: num(j, 'rms_norm_eps', where, { min: 0, default: 1e-6 }),
    rope_theta: num(j, 'rope_theta', where, { min: 1, default: 10000 }),
    max_position_embeddings: num(j, 'max_position_embeddings', where, { int: true, min: 1, default: 32768 }),
    tie_word_embeddings: bool(j, 'tie_word_embeddings', where, false),
    attention_bias: bool(j, 'attention_bias', where, true),
  };
  if (cfg.hidden_size % cfg.num_attention_heads) throw new ValueError(`${where}: hidden_size ${cfg.hidden_size} is not divisible by num_attention_heads ${cfg.num_attention_heads}`);
  if (cfg.num_attention_heads % cfg.num_key_value_heads) throw new ValueError(`${where}: num_attention_heads ${cfg.num_attention_heads} is not a multiple of num_key_value_heads ${cfg.num_key_value_heads}`);
  const headDim = cfg.hidden_size / cfg.num_attention_heads;
  if (headDim % 2) throw new ValueError(`${where}: head dim ${headDim} must be even for RoPE`);
  if (j.head_dim !== undefined && j.head_dim !== null && j.head_dim !== headDim) {
    throw new ValueError(`${where}: field 'head_dim' is ${JSON.stringify(j.head_dim)}, but this engine runs Qwen2 with head_dim = hidden_size / num_attention_heads = ${headDim}`);
  }
  if (j.hidden_act !== undefined && j.hidden_act !== 'silu') {
    throw new ValueError(`${where}: field 'hidden_act' is ${JSON.stringify(j.hidden_act)}; Qwen2 here supports only "silu"`);
  }
  if (j.use_sliding_window === true) {
    throw new ValueError(`${where}: field 'use_sliding_window' is true: sliding-window attention is not implemented (set it to false to run with full attention, as Qwen2 checkpoints ship)`);
  }
  const rs = j.rope_scaling as Json | null | undefined;
  if (rs !== undefined && rs !== null) {
    const type = rs.rope_type ?? rs.type;
    if (type !== 'default') throw new ValueError(`${where}: field 'rope_scaling' is ${JSON.stringify(rs)}: RoPE scaling (YaRN, dynamic, linear) is not implemented; only plain RoPE (rope_scaling null)`);
  }
  return cfg;
}

/** bos/eos ids of a config object (eos_token_id may be one id or a list). */
export function parseTokenIds(j: Json, where: string, vocab: number): Qwen2TokenIds {
  const bos = tokenIds(j, 'bos_token_id', where, vocab);
  const eos = j.eos_token_ids !== undefined ? tokenIds(j, 'eos_token_ids', where, vocab) : tokenIds(j, 'eos_token_id', where, vocab);
  return { bos_token_id: bos[0] ?? null, eos_token_ids: eos };
}

export function headDim(cfg: Qwen2Config): number {
  return cfg.hidden_size / cfg.num_attention_heads;
}
