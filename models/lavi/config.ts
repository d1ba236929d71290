// LaVi model configuration: a Hugging Face style config.json. Every choice the paper leaves open (marked
// [chosen] in shared/design/lavi-spec.md) is a field here, so a future official checkpoint can be matched by
// editing JSON, not code.
//
// Weight names (see models/README.md): Hugging Face names for the pretrained parts (`vision_model.*` as in SigLIP,
// `model.*` and `lm_head.*` as in Qwen2), and everything LaVi adds under the single prefix `lavi.`:
//   lavi.projector.linear_1.{weight,bias}  [d_llm, d_vis]      lavi.projector.linear_2.{weight,bias}  [d_llm, d_llm]
//   lavi.frame_embedding.weight             [max_frames, d_llm] (video only)
//   lavi.conditioners.{layer}.{norm}.ln_v.{weight,bias}        [d_llm]           (if conditioner.ln_v)
//   lavi.conditioners.{layer}.{norm}.{q,k,v}_proj.weight       [r, d_llm]  (+ .bias [r] if conditioner.bias)
//   lavi.conditioners.{layer}.{norm}.o_proj.{weight,bias}      [m·d_llm, r] where m = 2 for 'both', else 1;
//                                                              rows [0, d) are Δγ, rows [d, 2d) are Δβ
// with {norm} ∈ input_layernorm | post_attention_layernorm, and {layer} the decoder layer index (conditioner_per_layer:
// one conditioner per layer, lavi.conditioners.{layer}.*, its o_proj the layer's norms' blocks stacked; weights.ts).

import { ValueError } from '../../core/errors.js';
import { bool, num, oneOf, readJsonFile, section, type Json } from '../loading/json-fields.js';
import { parseQwen2Config, type Qwen2Config } from '../qwen2/config.js';
import { parseVisionConfig, type VisionConfig } from '../siglip/config.js';
import { nodeFs, nodePath } from '../../core/platform.js';

/** The vision tower's config (SigLIP family) and the decoder's (Qwen2 family), under the names LaVi used first. */
export type { VisionConfig } from '../siglip/config.js';
export type TextConfig = Qwen2Config;

export type ViLNNorm = 'input_layernorm' | 'post_attention_layernorm';

export interface LaviConfig {
  /** 'lavi': vision enters through ViLN; 'concat': LLaVA-style visual tokens in the context (the baseline). */
  mode: 'lavi' | 'concat';
  /** [chosen] which per-layer norms become ViLN. */
  viln_norms: ViLNNorm[];
  /** [chosen] modulate layers whose index i satisfies i % every_k === 0. */
  every_k: number;
  /** [chosen] also modulate the final norm (model.norm); its conditioner is named lavi.conditioners.final.norm. */
  modulate_final_norm: boolean;
  /** [chosen] which affine parameters get deltas. */
  modulate: 'both' | 'scale' | 'shift';
  /** [chosen] conditioner width r and heads h_c (attention variant). */
  conditioner_width: number;
  conditioner_heads: number;
  /** [chosen] LayerNorm LN_v on the visual features before K/V projections. */
  conditioner_ln_v: boolean;
  conditioner_ln_eps: number;
  /** [chosen] biases on the conditioner's q/k/v projections (o_proj always has a bias). */
  conditioner_bias: boolean;
  /** Storage of the per-image conditioner state K/U: 'f32', or 'bf16' / 'f16' (the f32 projections rounded to
   *  nearest even once per image; attention reads them widened, so only the rounding differs). */
  kv_dtype: 'f32' | 'bf16' | 'f16';
  /** [chosen] the visual keys/values (LN_v, k_proj, v_proj) exist once, lavi.shared_kv.*, projected once per image
   *  and attended by every site with its own q_proj/o_proj; false: each site has its own (the paper's form). */
  shared_visual_kv: boolean;
  /** [chosen] one conditioner per modulated layer instead of one per norm: its query is the normalised input of the
   *  layer's first modulated norm, and its o_proj gives the deltas of all the layer's modulated norms at once (in
   *  decode: one q_proj and one attention over K/U per layer instead of two); the final norm keeps its own. */
  conditioner_per_layer: boolean;
}

export interface VideoConfig {
  /** [chosen] frames sampled uniformly. */
  num_frames: number;
  /** [chosen] each frame's token grid is bilinearly pooled by this factor (2: 27×27 → 14×14). */
  pool: number;
  /** [chosen] add lavi.frame_embedding[f] to frame f's tokens. */
  frame_embedding: boolean;
  max_frames: number;
}

export interface ModelConfig {
  model_type: 'lavi';
  vision_config: VisionConfig;
  text_config: TextConfig;
  lavi_config: LaviConfig;
  video_config: VideoConfig;
  /** Token ids: generation stops at any of eos_token_ids. */
  bos_token_id: number | null;
  eos_token_ids: number[];
  /** dtype the weights are stored in (informational; each tensor's own dtype is what loads). */
  torch_dtype?: 'float32' | 'float16' | 'bfloat16';
}

const SIGLIP_SO400M: VisionConfig = {
  image_size: 384, patch_size: 14, num_channels: 3, hidden_size: 1152, num_hidden_layers: 26, num_attention_heads: 16,
  intermediate_size: 4304, layer_norm_eps: 1e-6, hidden_act: 'gelu_pytorch_tanh', use_post_layernorm: false,
  image_mean: [0.5, 0.5, 0.5], image_std: [0.5, 0.5, 0.5], stem_channels: [],
};

/** The paper's conditioner (spec §3): a config.json's lavi_config defaults. */
export const DEFAULT_LAVI: LaviConfig = {
  mode: 'lavi', viln_norms: ['input_layernorm', 'post_attention_layernorm'], every_k: 1, modulate_final_norm: false,
  modulate: 'both', conditioner_width: 512, conditioner_heads: 8, conditioner_ln_v: true, conditioner_ln_eps: 1e-6,
  conditioner_bias: true, kv_dtype: 'f32', shared_visual_kv: false, conditioner_per_layer: false,
};

/**
 * The presets' conditioner (issue 17, models/COST.md "Ablation"): both norms of every layer modulated, as the paper,
 * with one LN_v/k_proj/v_proj shared by all sites (K/U projected once per image, kept in bf16), r = d/14 with head
 * dim 8, and one conditioner per layer for its two norms (conditioner_per_layer: one q_proj and one attention over
 * K/U per layer and decoded token). It scored 99.2% on the synthetic task's held-out split (the paper design 98.4%)
 * and decodes level with or faster than concat at lavi-0.5b; a config.json without these fields still gets
 * DEFAULT_LAVI (the paper's per-site f32 K/U, r 512).
 */
function presetLavi(conditionerWidth: number): LaviConfig {
  return { ...DEFAULT_LAVI, conditioner_width: conditionerWidth, conditioner_heads: conditionerWidth / 8, kv_dtype: 'bf16', shared_visual_kv: true, conditioner_per_layer: true };
}

const DEFAULT_VIDEO: VideoConfig = { num_frames: 8, pool: 2, frame_embedding: true, max_frames: 64 };

/** Built-in presets, usable without weights (e.g. for `lavi cost`). */
export const PRESETS: Record<string, ModelConfig> = {
  /** The paper's setting: SigLIP-so400m (26 layers kept) + Qwen2-7B. */
  'lavi-7b': {
    model_type: 'lavi',
    vision_config: SIGLIP_SO400M,
    text_config: {
      vocab_size: 152064, hidden_size: 3584, intermediate_size: 18944, num_hidden_layers: 28, num_attention_heads: 28,
      num_key_value_heads: 4, rms_norm_eps: 1e-6, rope_theta: 1e6, max_position_embeddings: 32768,
      tie_word_embeddings: false, attention_bias: true,
    },
    lavi_config: presetLavi(256),
    video_config: DEFAULT_VIDEO,
    bos_token_id: null,
    eos_token_ids: [151645, 151643],
  },
  /** SigLIP-so400m + Qwen2-0.5B. */
  'lavi-0.5b': {
    model_type: 'lavi',
    vision_config: SIGLIP_SO400M,
    text_config: {
      vocab_size: 151936, hidden_size: 896, intermediate_size: 4864, num_hidden_layers: 24, num_attention_heads: 14,
      num_key_value_heads: 2, rms_norm_eps: 1e-6, rope_theta: 1e6, max_position_embeddings: 32768,
      tie_word_embeddings: true, attention_bias: true,
    },
    lavi_config: presetLavi(64),
    video_config: DEFAULT_VIDEO,
    bos_token_id: null,
    eos_token_ids: [151645, 151643],
  },
};

/** A preset with mode switched to the LLaVA-style concat baseline. */
export function asConcat(cfg: ModelConfig): ModelConfig {
  return { ...cfg, lavi_config: { ...cfg.lavi_config, mode: 'concat' } };
}

export { patchGrid, visualTokensPerImage } from '../siglip/config.js';

/** Decoder layer indices whose norms are modulated. */
export function modulatedLayers(cfg: ModelConfig): number[] {
  if (cfg.lavi_config.mode !== 'lavi') return [];
  const out: number[] = [];
  for (let i = 0; i < cfg.text_config.num_hidden_layers; i++) if (i % cfg.lavi_config.every_k === 0) out.push(i);
  return out;
}

// ---- parsing and validation -------------------------------------------------------------------------------

/**
 * Validates a parsed config.json. Missing LaVi/video fields take the [chosen] defaults; the vision and text
 * sections follow the SigLIP and Qwen2 families' rules (Hugging Face defaults for absent optional fields).
 * `parts` supplies those sections when they come from elsewhere (a LaVi assembled from Hugging Face folders).
 * `where` names the file in errors.
 */
export function parseConfig(raw: unknown, where = 'config.json', parts: { vision?: Json; text?: Json } = {}): ModelConfig {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new ValueError(`${where}: not a JSON object`);
  const j = raw as Json;
  if (j.model_type !== 'lavi') throw new ValueError(`${where}: model_type must be "lavi", got ${JSON.stringify(j.model_type)}`);
  const vision = parseVisionConfig(parts.vision ?? section(j, 'vision_config', where), `${where} vision_config`);
  const text = parseQwen2Config(parts.text ?? section(j, 'text_config', where), `${where} text_config`);

  const lj = { ...DEFAULT_LAVI, ...((j.lavi_config as Json | undefined) ?? {}) } as Json;
  const l = `${where} lavi_config`;
  const norms = lj.viln_norms;
  if (!Array.isArray(norms) || norms.some((n) => n !== 'input_layernorm' && n !== 'post_attention_layernorm')) {
    throw new ValueError(`${l}: viln_norms must be a list of 'input_layernorm' / 'post_attention_layernorm', got ${JSON.stringify(norms)}`);
  }
  const lavi: LaviConfig = {
    mode: oneOf(lj, 'mode', ['lavi', 'concat'] as const, l),
    viln_norms: [...new Set(norms as ViLNNorm[])],
    every_k: num(lj, 'every_k', l, { int: true, min: 1 }),
    modulate_final_norm: bool(lj, 'modulate_final_norm', l),
    modulate: oneOf(lj, 'modulate', ['both', 'scale', 'shift'] as const, l),
    conditioner_width: num(lj, 'conditioner_width', l, { int: true, min: 1 }),
    conditioner_heads: num(lj, 'conditioner_heads', l, { int: true, min: 1 }),
    conditioner_ln_v: bool(lj, 'conditioner_ln_v', l),
    conditioner_ln_eps: num(lj, 'conditioner_ln_eps', l, { min: 0 }),
    conditioner_bias: bool(lj, 'conditioner_bias', l),
    kv_dtype: oneOf(lj, 'kv_dtype', ['f32', 'bf16', 'f16'] as const, l),
    shared_visual_kv: bool(lj, 'shared_visual_kv', l),
    conditioner_per_layer: bool(lj, 'conditioner_per_layer', l),
  };
  if (lavi.conditioner_width % lavi.conditioner_heads) {
    throw new ValueError(`${l}: conditioner_width ${lavi.conditioner_width} is not divisible by conditioner_heads ${lavi.conditioner_heads}`);
  }
  const vdj = { ...DEFAULT_VIDEO, ...((j.video_config as Json | undefined) ?? {}) } as Json;
  const vd = `${where} video_config`;
  const video: VideoConfig = {
    num_frames: num(vdj, 'num_frames', vd, { int: true, min: 1 }),
    pool: num(vdj, 'pool', vd, { int: true, min: 1 }),
    frame_embedding: bool(vdj, 'frame_embedding', vd),
    max_frames: num(vdj, 'max_frames', vd, { int: true, min: 1 }),
  };
  const eos = j.eos_token_ids ?? (j.eos_token_id === undefined ? [] : [j.eos_token_id].flat());
  if (!Array.isArray(eos) || eos.some((e) => !Number.isInteger(e) || e < 0 || e >= text.vocab_size)) {
    throw new ValueError(`${where}: eos_token_ids must be token ids below vocab_size ${text.vocab_size}, got ${JSON.stringify(eos)}`);
  }
  const bos = j.bos_token_id ?? null;
  if (bos !== null && (!Number.isInteger(bos) || (bos as number) < 0 || (bos as number) >= text.vocab_size)) {
    throw new ValueError(`${where}: bos_token_id must be null or a token id below ${text.vocab_size}, got ${JSON.stringify(bos)}`);
  }
  return {
    model_type: 'lavi',
    vision_config: vision,
    text_config: text,
    lavi_config: lavi,
    video_config: video,
    bos_token_id: bos as number | null,
    eos_token_ids: eos as number[],
    torch_dtype: j.torch_dtype as ModelConfig['torch_dtype'],
  };
}

/** A preset by name, or throws listing the presets. */
export function preset(name: string): ModelConfig {
  const p = PRESETS[name];
  if (!p) throw new ValueError(`unknown preset '${name}' (presets: ${Object.keys(PRESETS).join(', ')})`);
  return structuredClone(p);
}

/** Reads and validates a LaVi config.json file; errors name the file and the offending field. */
export async function loadConfigFile(path: string): Promise<ModelConfig> {
  return parseConfig(await readJsonFile(path), path);
}

/** `--config` argument: a preset name, or the path of a config.json (or of a directory holding one). */
export async function resolveConfig(arg: string): Promise<ModelConfig> {
  if (PRESETS[arg]) return preset(arg);
  const { stat } = nodeFs('--config').promises;
  const { join } = nodePath();
  const st = await stat(arg).catch(() => null);
  if (!st) throw new ValueError(`--config: '${arg}' is neither a preset (${Object.keys(PRESETS).join(', ')}) nor an existing file`);
  return loadConfigFile(st.isDirectory() ? join(arg, 'config.json') : arg);
}

/** Partial overrides of a config, section by section (for tests and benchmarks). */
export interface ConfigOverrides {
  vision_config?: Partial<VisionConfig>;
  text_config?: Partial<TextConfig>;
  lavi_config?: Partial<LaviConfig>;
  video_config?: Partial<VideoConfig>;
  eos_token_ids?: number[];
  bos_token_id?: number | null;
}

/**
 * A tiny but structurally complete config (every feature on: GQA, q/k/v bias, both norms modulated, untied
 * head), validated by parseConfig after applying `overrides`. Used by tests and benchmarks with random weights.
 */
export function tinyConfig(overrides: ConfigOverrides = {}): ModelConfig {
  const base: ModelConfig = {
    model_type: 'lavi',
    vision_config: {
      image_size: 28, patch_size: 7, num_channels: 3, hidden_size: 24, num_hidden_layers: 2, num_attention_heads: 2,
      intermediate_size: 48, layer_norm_eps: 1e-6, hidden_act: 'gelu_pytorch_tanh', use_post_layernorm: false,
      image_mean: [0.5, 0.5, 0.5], image_std: [0.5, 0.5, 0.5], stem_channels: [],
    },
    text_config: {
      vocab_size: 97, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 3, num_attention_heads: 4,
      num_key_value_heads: 2, rms_norm_eps: 1e-6, rope_theta: 10000, max_position_embeddings: 256,
      tie_word_embeddings: false, attention_bias: true,
    },
    lavi_config: { ...DEFAULT_LAVI, conditioner_width: 16, conditioner_heads: 2 },
    video_config: { ...DEFAULT_VIDEO, max_frames: 8 },
    bos_token_id: null,
    eos_token_ids: [96],
  };
  const merged = {
    ...base,
    ...(overrides.eos_token_ids ? { eos_token_ids: overrides.eos_token_ids } : {}),
    ...(overrides.bos_token_id !== undefined ? { bos_token_id: overrides.bos_token_id } : {}),
    vision_config: { ...base.vision_config, ...overrides.vision_config },
    text_config: { ...base.text_config, ...overrides.text_config },
    lavi_config: { ...base.lavi_config, ...overrides.lavi_config },
    video_config: { ...base.video_config, ...overrides.video_config },
  };
  return parseConfig(merged, 'tinyConfig');
}
