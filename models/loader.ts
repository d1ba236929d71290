// One loader for every model folder: reads config.json once, picks the family from `model_type` and
// `architectures`, and refuses anything else with a message that lists what is supported.
//
//   qwen2            Qwen2ForCausalLM (Qwen2, Qwen2.5): text generation            models/qwen2/
//   siglip           SiglipVisionModel (siglip_vision_model, or siglip's tower): image features   models/siglip/
//   llava-onevision  LlavaOnevisionForConditionalGeneration, single image          models/llava-onevision/
//   lavi             LaVi (ours), plain or assembled from Hugging Face folders      models/lavi/
//
// A LaVi config.json may name the folders it is assembled from: "text_model" (a Qwen2 folder) and "vision_model"
// (a SigLIP folder), paths relative to the LaVi folder. Their config.json give text_config / vision_config (the
// LaVi config's own vision_config then only overrides fields, e.g. num_hidden_layers or use_post_layernorm), and
// their checkpoints are loaded with the LaVi folder's own (projector and conditioners): no dummy tensors.

import { existsSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import type { Backend } from '../core/backend.js';
import { ValueError } from '../core/errors.js';
import { readJsonFile, type Json } from './loading/json-fields.js';
import { loadSpecs, type UploadOptions } from './loading/weights.js';
import { parseConfig, type ModelConfig } from './lavi/config.js';
import { parseQwen2Config, parseTokenIds, type Qwen2Config } from './qwen2/config.js';
import { Qwen2CausalLM, type LMOptions } from './qwen2/model.js';
import { declareQwen2, qwen2Specs, qwen2Tolerated } from './qwen2/weights.js';
import { siglipVisionSection } from './siglip/model.js';

export type Family = 'qwen2' | 'siglip' | 'llava-onevision' | 'lavi';

export const SUPPORTED_FAMILIES =
  'Qwen2ForCausalLM (model_type "qwen2": Qwen2, Qwen2.5), SiglipVisionModel (model_type "siglip_vision_model" or "siglip"), ' +
  'LlavaOnevisionForConditionalGeneration (model_type "llava_onevision"), LaVi (model_type "lavi")';

export interface ModelFolder {
  dir: string;
  family: Family;
  /** config.json as parsed JSON. */
  raw: Json;
  /** Path of config.json, for messages. */
  configPath: string;
}

/** Reads DIR/config.json and decides the family; refuses an unknown model_type/architecture. */
export async function inspectModelDir(dir: string): Promise<ModelFolder> {
  const configPath = join(dir, 'config.json');
  const raw = await readJsonFile(configPath);
  return { dir, family: familyOf(raw, configPath), raw, configPath };
}

export function familyOf(raw: Json, where: string): Family {
  const mt = raw.model_type;
  const arch = Array.isArray(raw.architectures) ? (raw.architectures as unknown[]) : [];
  const refuse = (what: string): never => {
    throw new ValueError(`${where}: ${what} is not supported; supported: ${SUPPORTED_FAMILIES}`);
  };
  switch (mt) {
    case 'qwen2':
      if (arch.length && !arch.includes('Qwen2ForCausalLM')) refuse(`architectures ${JSON.stringify(arch)} (model_type "qwen2")`);
      return 'qwen2';
    case 'siglip_vision_model':
    case 'siglip':
      return 'siglip';
    case 'llava_onevision':
      return 'llava-onevision';
    case 'lavi':
      return 'lavi';
    default:
      // Only a config without model_type is recognised by its architectures; a model_type we do not know is refused
      // even when architectures says otherwise (Hugging Face picks the config class by model_type).
      if (mt === undefined && arch.includes('Qwen2ForCausalLM')) return 'qwen2';
      return refuse(`model_type ${JSON.stringify(mt)}${arch.length ? ` (architectures ${JSON.stringify(arch)})` : ''}`);
  }
}

// ---- generation_config.json ----------------------------------------------------------------------------------

/** What Hugging Face's generation_config.json says about stopping and default sampling. */
export interface GenerationDefaults {
  eosTokenIds: number[];
  bosTokenId: number | null;
  /** Sampling defaults (used by chat, and by generate with --sample): do_sample false means greedy. */
  doSample: boolean;
  temperature: number;
  topP: number;
  topK: number;
  repetitionPenalty: number;
}

/** generation_config.json of DIR (absent: the config's own ids, greedy). */
export async function readGenerationConfig(dir: string, fallback: { bos_token_id: number | null; eos_token_ids: number[] }, vocab: number): Promise<GenerationDefaults> {
  const path = join(dir, 'generation_config.json');
  const g = await readJsonFile(path, { optional: true });
  const ids = g ? parseTokenIds(g, path, vocab) : { bos_token_id: null, eos_token_ids: [] };
  const numOr = (k: string, d: number, ok: (v: number) => boolean): number => {
    const v = g?.[k];
    if (v === undefined || v === null) return d;
    if (typeof v !== 'number' || !ok(v)) throw new ValueError(`${path}: field '${k}' has an unusable value ${JSON.stringify(v)}`);
    return v;
  };
  const doSample = g?.do_sample ?? false;
  if (typeof doSample !== 'boolean') throw new ValueError(`${path}: field 'do_sample' must be true or false, got ${JSON.stringify(doSample)}`);
  return {
    eosTokenIds: ids.eos_token_ids.length ? ids.eos_token_ids : fallback.eos_token_ids,
    bosTokenId: ids.bos_token_id ?? fallback.bos_token_id,
    doSample,
    temperature: numOr('temperature', 1, (v) => v >= 0),
    topP: numOr('top_p', 1, (v) => v > 0 && v <= 1),
    topK: numOr('top_k', 0, (v) => Number.isInteger(v) && v >= 0),
    repetitionPenalty: numOr('repetition_penalty', 1, (v) => v > 0),
  };
}

// ---- Qwen2 -------------------------------------------------------------------------------------------------

export interface LoadedQwen2 {
  family: 'qwen2';
  lm: Qwen2CausalLM;
  generation: GenerationDefaults;
}

export async function loadQwen2(folder: ModelFolder, backend: Backend, opts: UploadOptions & LMOptions = {}): Promise<LoadedQwen2> {
  const cfg: Qwen2Config = parseQwen2Config(folder.raw, folder.configPath);
  const table = declareQwen2(cfg);
  const check = { specs: qwen2Specs(table), tolerated: qwen2Tolerated(cfg), describe: `Qwen2, ${cfg.num_hidden_layers} layers, ${cfg.tie_word_embeddings ? 'tied' : 'untied'} head` };
  const weights = await loadSpecs([folder.dir], check, backend, opts);
  const generation = await readGenerationConfig(folder.dir, parseTokenIds(folder.raw, folder.configPath, cfg.vocab_size), cfg.vocab_size);
  return { family: 'qwen2', lm: new Qwen2CausalLM(cfg, table, weights, backend, opts), generation };
}

// ---- LaVi --------------------------------------------------------------------------------------------------

export interface LaviFolder {
  config: ModelConfig;
  /** Checkpoint directories: the LaVi folder first, then the folders it is assembled from. */
  weightDirs: string[];
  /** Where tokenizer.json / tokenizer_config.json / generation_config.json are looked for, in order. */
  textDirs: string[];
}

/** A LaVi config.json, resolving "text_model" / "vision_model" references to Hugging Face folders. */
export async function readLaviFolder(folder: ModelFolder): Promise<LaviFolder> {
  const j = folder.raw;
  const where = folder.configPath;
  const ref = (key: string): string | null => {
    const v = j[key];
    if (v === undefined || v === null) return null;
    if (typeof v !== 'string' || v === '') throw new ValueError(`${where}: field '${key}' must be the path of a model folder, got ${JSON.stringify(v)}`);
    const p = isAbsolute(v) ? v : resolve(folder.dir, v);
    if (!existsSync(join(p, 'config.json'))) throw new ValueError(`${where}: field '${key}' names ${p}, which has no config.json`);
    return p;
  };
  const textDir = ref('text_model');
  const visionDir = ref('vision_model');
  const parts: { text?: Json; vision?: Json } = {};
  const raw: Json = { ...j };
  if (textDir) {
    const tp = join(textDir, 'config.json');
    const t = await readJsonFile(tp);
    if (familyOf(t, tp) !== 'qwen2') throw new ValueError(`${where}: text_model ${textDir} is not a Qwen2 folder`);
    parseQwen2Config(t, tp); // errors name the referenced file
    parts.text = t;
    if (raw.eos_token_id === undefined && raw.eos_token_ids === undefined) raw.eos_token_id = t.eos_token_id ?? null;
    if (raw.bos_token_id === undefined) raw.bos_token_id = t.bos_token_id ?? null;
  }
  if (visionDir) {
    const vp = join(visionDir, 'config.json');
    const v = await readJsonFile(vp);
    if (familyOf(v, vp) !== 'siglip') throw new ValueError(`${where}: vision_model ${visionDir} is not a SigLIP folder`);
    const pre = await readJsonFile(join(visionDir, 'preprocessor_config.json'), { optional: true });
    const overrides = (j.vision_config && typeof j.vision_config === 'object' ? j.vision_config : {}) as Json;
    parts.vision = {
      use_post_layernorm: true, // SiglipVisionModel's features; a LaVi may turn it off in its vision_config
      ...siglipVisionSection(v),
      ...(pre?.image_mean !== undefined ? { image_mean: pre.image_mean } : {}),
      ...(pre?.image_std !== undefined ? { image_std: pre.image_std } : {}),
      ...overrides,
    };
  }
  const config = parseConfig(raw, where, parts);
  const weightDirs = [folder.dir, ...(visionDir ? [visionDir] : []), ...(textDir ? [textDir] : [])];
  return { config, weightDirs, textDirs: [folder.dir, ...(textDir ? [textDir] : [])] };
}

/** The first of `dirs` that holds `file`, or null. */
export function firstWith(dirs: readonly string[], file: string): string | null {
  for (const d of dirs) if (existsSync(join(d, file))) return d;
  return null;
}
