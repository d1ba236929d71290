// LaVi's weights: the SigLIP tower and the Qwen2 decoder under their Hugging Face names (declared by those
// families), plus what LaVi adds, all under the single prefix `lavi.` (declared here, once):
//   lavi.projector.linear_1.{weight,bias}  [d_llm, d_vis]      lavi.projector.linear_2.{weight,bias}  [d_llm, d_llm]
//   lavi.frame_embedding.weight             [max_frames, d_llm] (video only)
//   lavi.conditioners.{layer}.{norm}.ln_v.{weight,bias}        [d_llm]           (if conditioner_ln_v)
//   lavi.conditioners.{layer}.{norm}.{q,k,v}_proj.weight       [r, d_llm]  (+ .bias [r] if conditioner_bias)
//   lavi.conditioners.{layer}.{norm}.o_proj.{weight,bias}      [m·d_llm, r] where m = 2 for 'both', else 1
// with {norm} ∈ input_layernorm | post_attention_layernorm, {layer} the decoder layer index, or 'final.norm'.
// With lavi_config.shared_visual_kv the sites keep only q_proj and o_proj, and the visual side exists once:
//   lavi.shared_kv.ln_v.{weight,bias} [d_llm] (if conditioner_ln_v), lavi.shared_kv.{k,v}_proj.weight [r, d_llm] (+ .bias)
// With lavi_config.conditioner_per_layer a modulated layer has one conditioner for all its modulated norms, named
// without the norm (lavi.conditioners.{layer}.q_proj.weight ...), whose o_proj is [n·m·d_llm, r] for n norms: rows
// [k·m·d, (k+1)·m·d) are the k-th modulated norm's deltas in execution order; the final norm keeps its own.
// Also: validation and upload for a LaVi config, random weights and the checkpoint writer used by tests and benches.

import type { Backend } from '../../core/backend.js';
import { narrowFromF32, widenToF32 } from '../../core/dtype.js';
import type { HostTensor } from '../../core/safetensors/reader.js';
import { writeSafetensors } from '../../core/safetensors/writer.js';
import {
  allocateSpecs, flattenSpecs, loadSpecs, randomSpecs, uploadSpecs, validateSpecs, weightSpec,
  type ModelWeights, type SpecCheck, type UploadOptions, type ValidateOptions, type WeightSet, type WeightSpec,
} from '../loading/weights.js';
import { declareQwen2, qwen2Specs, qwen2Tolerated, type Qwen2Weights } from '../qwen2/weights.js';
import { declareSiglip, siglipSpecs, siglipTolerated, type SiglipWeights } from '../siglip/weights.js';
import { modulatedLayers, type ModelConfig, type ViLNNorm } from './config.js';
import { nodeFs, nodePath } from '../../core/platform.js';

export { ModelWeights, PACKABLE_KINDS, type UploadOptions, type ValidateOptions, type WeightKind, type WeightSet, type WeightSource, type WeightSpec } from '../loading/weights.js';

export interface ConditionerWeights {
  /** The site keys ('3.input_layernorm') this conditioner serves, in execution order: one, or with
   *  conditioner_per_layer every modulated norm of its layer; o_proj holds their m·d-row blocks in this order. */
  sites: string[];
  lnV: WeightSpec | null;
  lnVBias: WeightSpec | null;
  q: WeightSpec;
  qBias: WeightSpec | null;
  /** null with shared_visual_kv (the site uses LaviWeights.sharedKV). */
  k: WeightSpec | null;
  kBias: WeightSpec | null;
  v: WeightSpec | null;
  vBias: WeightSpec | null;
  o: WeightSpec;
  oBias: WeightSpec;
}

/** The visual side of the conditioners when shared_visual_kv: LN_v, k_proj, v_proj, once. */
export interface SharedKVWeights {
  lnV: WeightSpec | null;
  lnVBias: WeightSpec | null;
  k: WeightSpec;
  kBias: WeightSpec | null;
  v: WeightSpec;
  vBias: WeightSpec | null;
}

export interface ProjectorWeights {
  linear1: WeightSpec;
  linear1Bias: WeightSpec;
  linear2: WeightSpec;
  linear2Bias: WeightSpec;
  frameEmbedding: WeightSpec;
}

export interface LaviWeights {
  vision: SiglipWeights;
  projector: ProjectorWeights;
  /** By conditioner: its name's key ('3.input_layernorm', 'final.norm'; '3' with conditioner_per_layer); empty in
   *  concat mode. */
  conditioners: Map<string, ConditionerWeights>;
  /** lavi.shared_kv.* (shared_visual_kv, lavi mode), else null. */
  sharedKV: SharedKVWeights | null;
  decoder: Qwen2Weights;
}

/** Name prefix of one conditioner: lavi.conditioners.{layer}.{norm}. or lavi.conditioners.final.norm. */
export function conditionerPrefix(layer: number | 'final', norm: ViLNNorm | 'norm'): string {
  return `lavi.conditioners.${layer}.${norm}.`;
}

/** The modulated norms of a config (empty in concat mode), in layer order, then the final norm. */
export function conditionerSites(cfg: ModelConfig): { layer: number | 'final'; norm: ViLNNorm | 'norm' }[] {
  if (cfg.lavi_config.mode !== 'lavi') return [];
  const sites: { layer: number | 'final'; norm: ViLNNorm | 'norm' }[] = [];
  const norms = (['input_layernorm', 'post_attention_layernorm'] as const).filter((n) => cfg.lavi_config.viln_norms.includes(n));
  for (const i of modulatedLayers(cfg)) for (const n of norms) sites.push({ layer: i, norm: n });
  if (cfg.lavi_config.modulate_final_norm) sites.push({ layer: 'final', norm: 'norm' });
  return sites;
}

/** LN_v, k_proj, v_proj under `prefix` (a site's own, or lavi.shared_kv.). */
function declareVisualKV(cfg: ModelConfig, prefix: string): SharedKVWeights {
  const l = cfg.lavi_config;
  const d = cfg.text_config.hidden_size;
  const r = l.conditioner_width;
  const bias = (n: string) => (l.conditioner_bias ? weightSpec(`${prefix}${n}.bias`, [r], 'vector') : null);
  return {
    lnV: l.conditioner_ln_v ? weightSpec(`${prefix}ln_v.weight`, [d], 'vector') : null,
    lnVBias: l.conditioner_ln_v ? weightSpec(`${prefix}ln_v.bias`, [d], 'vector') : null,
    k: weightSpec(`${prefix}k_proj.weight`, [r, d], 'matrix'),
    kBias: bias('k_proj'),
    v: weightSpec(`${prefix}v_proj.weight`, [r, d], 'matrix'),
    vBias: bias('v_proj'),
  };
}

/** The conditioners of a config: key (their names' part after lavi.conditioners.), name prefix and the sites each
 *  serves, in execution order. */
export function conditionerUnits(cfg: ModelConfig): { key: string; prefix: string; sites: string[] }[] {
  const sites = conditionerSites(cfg);
  if (!cfg.lavi_config.conditioner_per_layer) return sites.map((s) => ({ key: `${s.layer}.${s.norm}`, prefix: conditionerPrefix(s.layer, s.norm), sites: [`${s.layer}.${s.norm}`] }));
  const units: { key: string; prefix: string; sites: string[] }[] = [];
  for (const s of sites) {
    const key = s.layer === 'final' ? 'final.norm' : String(s.layer);
    const last = units[units.length - 1];
    if (last && last.key === key) last.sites.push(`${s.layer}.${s.norm}`);
    else units.push({ key, prefix: `lavi.conditioners.${key}.`, sites: [`${s.layer}.${s.norm}`] });
  }
  return units;
}

function declareConditioner(cfg: ModelConfig, prefix: string, sites: string[]): ConditionerWeights {
  const l = cfg.lavi_config;
  const d = cfg.text_config.hidden_size;
  const r = l.conditioner_width;
  const m = (l.modulate === 'both' ? 2 : 1) * sites.length;
  const own = l.shared_visual_kv ? null : declareVisualKV(cfg, prefix);
  return {
    sites,
    lnV: own?.lnV ?? null,
    lnVBias: own?.lnVBias ?? null,
    q: weightSpec(`${prefix}q_proj.weight`, [r, d], 'matrix'),
    qBias: l.conditioner_bias ? weightSpec(`${prefix}q_proj.bias`, [r], 'vector') : null,
    k: own?.k ?? null,
    kBias: own?.kBias ?? null,
    v: own?.v ?? null,
    vBias: own?.vBias ?? null,
    o: weightSpec(`${prefix}o_proj.weight`, [m * d, r], 'matrix'),
    oBias: weightSpec(`${prefix}o_proj.bias`, [m * d], 'vector'),
  };
}

/** Every LaVi tensor, declared once (vision, projector, conditioners, decoder). */
export function declareLavi(cfg: ModelConfig): LaviWeights {
  const d = cfg.text_config.hidden_size;
  const Dv = cfg.vision_config.hidden_size;
  const conditioners = new Map<string, ConditionerWeights>();
  for (const u of conditionerUnits(cfg)) conditioners.set(u.key, declareConditioner(cfg, u.prefix, u.sites));
  return {
    vision: declareSiglip(cfg.vision_config),
    projector: {
      linear1: weightSpec('lavi.projector.linear_1.weight', [d, Dv], 'matrix'),
      linear1Bias: weightSpec('lavi.projector.linear_1.bias', [d], 'vector'),
      linear2: weightSpec('lavi.projector.linear_2.weight', [d, d], 'matrix'),
      linear2Bias: weightSpec('lavi.projector.linear_2.bias', [d], 'vector'),
      frameEmbedding: weightSpec('lavi.frame_embedding.weight', [cfg.video_config.max_frames, d], 'table', true),
    },
    conditioners,
    sharedKV: conditioners.size && cfg.lavi_config.shared_visual_kv ? declareVisualKV(cfg, 'lavi.shared_kv.') : null,
    decoder: declareQwen2(cfg.text_config),
  };
}

/** Every tensor a config needs, in a stable order (vision, projector, conditioners, decoder). */
export function expectedWeights(cfg: ModelConfig): WeightSpec[] {
  const w = declareLavi(cfg);
  const p = w.projector;
  return [
    ...siglipSpecs(w.vision),
    p.linear1, p.linear1Bias, p.linear2, p.linear2Bias, p.frameEmbedding,
    ...flattenSpecs(w.sharedKV ? [w.sharedKV.lnV, w.sharedKV.lnVBias, w.sharedKV.k, w.sharedKV.kBias, w.sharedKV.v, w.sharedKV.vBias] : []),
    ...flattenSpecs([...w.conditioners.values()].map((c) => [c.lnV, c.lnVBias, c.q, c.qBias, c.k, c.kBias, c.v, c.vBias, c.o, c.oBias])),
    ...qwen2Specs(w.decoder),
  ];
}

/** Names a checkpoint may hold that this graph does not use, accepted and skipped (see the families). */
export function toleratedExtras(cfg: ModelConfig): ((name: string) => boolean)[] {
  return [...siglipTolerated(cfg.vision_config), ...qwen2Tolerated(cfg.text_config)];
}

/** The weights a LaVi config needs, as loadSpecs checks them. */
export function laviCheck(cfg: ModelConfig): SpecCheck {
  return {
    specs: expectedWeights(cfg),
    tolerated: toleratedExtras(cfg),
    describe: `mode '${cfg.lavi_config.mode}', ${cfg.text_config.num_hidden_layers} decoder layers, ${cfg.vision_config.num_hidden_layers} vision layers`,
    hints: (missing, unexpected) => {
      const out: string[] = [];
      if (cfg.lavi_config.mode === 'concat' && unexpected.some((u) => u.startsWith('lavi.conditioners.'))) {
        out.push('a concat-mode config takes no lavi.conditioners.*: is this a LaVi checkpoint? set lavi_config.mode = "lavi"');
      }
      if (cfg.lavi_config.mode === 'lavi' && missing.length && missing.every((m) => m.startsWith('lavi.conditioners.'))) {
        out.push('no conditioners found: is this a concat-baseline checkpoint? set lavi_config.mode = "concat"');
      }
      return out;
    },
  };
}

/** Checks `available` against the config; throws one FormatError listing every problem. Returns skipped names. */
export function validateWeights(cfg: ModelConfig, available: ReadonlyMap<string, { shape: readonly number[]; dtype: string }>, source: string, opts: ValidateOptions = {}): string[] {
  return validateSpecs(laviCheck(cfg), available, source, opts);
}

/** Loads a checkpoint (model.safetensors or a sharded index, in each of `dirs`) onto `backend`, validated first.
 *  Several directories: a LaVi assembled from a Hugging Face SigLIP folder, a Qwen2 folder and its own tensors. */
export async function loadWeights(dirs: string | readonly string[], cfg: ModelConfig, backend: Backend, opts: UploadOptions = {}): Promise<ModelWeights> {
  return loadSpecs(typeof dirs === 'string' ? [dirs] : dirs, laviCheck(cfg), backend, opts);
}

/** Validates and uploads in-memory weights (host tensors are copied; backend tensors are used as they are). */
export function uploadWeights(cfg: ModelConfig, weights: WeightSet, backend: Backend, opts: UploadOptions = {}): ModelWeights {
  return uploadSpecs(laviCheck(cfg), weights, backend, opts);
}

/** Uninitialised weights of the right shapes, for the meta backend. */
export function allocateWeights(cfg: ModelConfig, backend: Backend, opts: { matrixDType?: 'f32' | 'f16' | 'bf16' } = {}): ModelWeights {
  return allocateSpecs(expectedWeights(cfg), backend, opts);
}

/** Parameter counts per part, from the config alone. */
export function countParameters(cfg: ModelConfig): { vision: number; projector: number; conditioners: number; llm: number; total: number } {
  const c = { vision: 0, projector: 0, conditioners: 0, llm: 0, total: 0 };
  const w = declareLavi(cfg);
  const size = (s: WeightSpec) => (s.optional ? 0 : s.shape.reduce((a, b) => a * b, 1));
  const sum = (specs: WeightSpec[]) => specs.reduce((a, s) => a + size(s), 0);
  c.vision = sum(siglipSpecs(w.vision));
  c.projector = sum(flattenSpecs(w.projector));
  c.conditioners = sum(flattenSpecs([...w.conditioners.values()])) + sum(flattenSpecs(w.sharedKV));
  c.llm = sum(qwen2Specs(w.decoder));
  c.total = c.vision + c.projector + c.conditioners + c.llm;
  return c;
}

export interface RandomWeightOptions {
  seed?: number;
  /** Zero every conditioner o_proj (weight and bias), as at the start of training: LaVi then equals its base LLM. */
  zeroConditioners?: boolean;
  /** Include lavi.frame_embedding.weight (default true). */
  frameEmbedding?: boolean;
  /** Stored dtype (values are drawn in f32, then rounded). Default f32. */
  dtype?: 'f32' | 'f16' | 'bf16';
  /** Scale of the conditioner output (o_proj) relative to 1/√r; default 1. */
  conditionerScale?: number;
}

/** Random weights for a config, deterministic in (seed, name) (see loading/weights.ts randomSpecs). */
export function randomWeights(cfg: ModelConfig, opts: RandomWeightOptions = {}): Map<string, HostTensor> {
  return randomSpecs(expectedWeights(cfg), {
    seed: opts.seed,
    dtype: opts.dtype,
    skipOptional: opts.frameEmbedding === false,
    scale: (name) => (name.startsWith('lavi.conditioners.') && name.includes('.o_proj.') ? (opts.zeroConditioners ? 0 : opts.conditionerScale ?? 1) : 1),
  });
}

/**
 * Writes `dir/config.json` and `dir/model.safetensors`. Float tensors are stored in `dtype` when given (f32 values
 * rounded to f16/bf16), else as they are.
 */
export async function saveCheckpoint(dir: string, cfg: ModelConfig, weights: ReadonlyMap<string, HostTensor>, opts: { dtype?: 'f32' | 'f16' | 'bf16' } = {}): Promise<void> {
  await nodeFs().promises.mkdir(dir, { recursive: true });
  const tensors = new Map<string, HostTensor>();
  for (const [name, h] of weights) {
    let t = h;
    if (opts.dtype && h.dtype !== opts.dtype && h.dtype !== 'i32') {
      const f = h.dtype === 'f32' ? (h.data as Float32Array) : widenToF32(h.data as Uint16Array, h.dtype as 'f16' | 'bf16');
      t = { dtype: opts.dtype, shape: h.shape, data: opts.dtype === 'f32' ? f : narrowFromF32(f, opts.dtype) };
    }
    tensors.set(name, t);
  }
  const torchDType = { f32: 'float32', f16: 'float16', bf16: 'bfloat16' } as const;
  const floats = new Set([...tensors.values()].map((t) => t.dtype).filter((d) => d !== 'i32'));
  const stored = opts.dtype ?? (floats.size === 1 ? ([...floats][0] as 'f32' | 'f16' | 'bf16') : undefined);
  const config = { ...cfg, ...(stored ? { torch_dtype: torchDType[stored] } : {}) };
  await nodeFs().promises.writeFile(nodePath().join(dir, 'config.json'), JSON.stringify(config, null, 2) + '\n');
  await writeSafetensors(nodePath().join(dir, 'model.safetensors'), tensors, { format: 'pt' });
}
