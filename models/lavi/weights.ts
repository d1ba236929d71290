// Model weights: the list of tensors a config needs (names and shapes per models/README.md), validation of a
// checkpoint or an in-memory weight set against that list (one error naming every missing, unexpected,
// mis-shaped or unreadable tensor), upload to a backend, and helpers for tests and cost reports (random weights,
// uninitialised weights for the meta backend, writing a checkpoint).
//
// Storage dtypes: Linear weights and the token embedding table ('matrix' and 'embedding' kinds) may stay packed
// f16/bf16 (option keepPacked, default on): matmul and embedding widen them inside the kernel. Everything else
// (norm scales, biases, the patch-embedding convolution, position and frame embeddings) is widened to f32 at load,
// because the ops that consume them take f32.

import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Backend } from '../../core/backend.js';
import { narrowFromF32, widenToF32, type DType, type HostArray } from '../../core/dtype.js';
import { FormatError, ValueError, fmtShape } from '../../core/errors.js';
import { keep } from '../../core/scope.js';
import { Tensor } from '../../core/tensor.js';
import { Checkpoint } from '../../core/safetensors/checkpoint.js';
import type { HostTensor } from '../../core/safetensors/reader.js';
import { writeSafetensors } from '../../core/safetensors/writer.js';
import { tensor } from '../../ops/index.js';
import { modulatedLayers, visualTokensPerImage, type ModelConfig, type ViLNNorm } from './config.js';
import { createRng, hashString } from '../../core/rng.js';

/** matrix: a Linear weight [out, in]; embedding: the token table; vector: norm scale/shift or bias;
 *  conv: the patch-embedding kernel; table: a position/frame embedding added to activations. */
export type WeightKind = 'matrix' | 'embedding' | 'vector' | 'conv' | 'table';

export interface WeightSpec {
  name: string;
  shape: number[];
  kind: WeightKind;
  /** May be absent from a checkpoint (lavi.frame_embedding: only video needs it). */
  optional?: boolean;
}

/** Kinds that may stay packed f16/bf16 on the backend. */
export const PACKABLE_KINDS: readonly WeightKind[] = ['matrix', 'embedding'];

/** Name prefix of one conditioner: lavi.conditioners.{layer}.{norm}. or lavi.conditioners.final.norm. */
export function conditionerPrefix(layer: number | 'final', norm: ViLNNorm | 'norm'): string {
  return `lavi.conditioners.${layer}.${norm}.`;
}

/** Every tensor a config needs, in a stable order (vision, projector, conditioners, decoder). */
export function expectedWeights(cfg: ModelConfig): WeightSpec[] {
  const out: WeightSpec[] = [];
  const add = (name: string, shape: number[], kind: WeightKind, optional = false) => out.push({ name, shape, kind, ...(optional ? { optional } : {}) });
  const v = cfg.vision_config;
  const Dv = v.hidden_size;
  const N = visualTokensPerImage(v);
  add('vision_model.embeddings.patch_embedding.weight', [Dv, v.num_channels, v.patch_size, v.patch_size], 'conv');
  add('vision_model.embeddings.patch_embedding.bias', [Dv], 'vector');
  add('vision_model.embeddings.position_embedding.weight', [N, Dv], 'table');
  for (let i = 0; i < v.num_hidden_layers; i++) {
    const p = `vision_model.encoder.layers.${i}.`;
    for (const ln of ['layer_norm1', 'layer_norm2']) {
      add(`${p}${ln}.weight`, [Dv], 'vector');
      add(`${p}${ln}.bias`, [Dv], 'vector');
    }
    for (const proj of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) {
      add(`${p}self_attn.${proj}.weight`, [Dv, Dv], 'matrix');
      add(`${p}self_attn.${proj}.bias`, [Dv], 'vector');
    }
    add(`${p}mlp.fc1.weight`, [v.intermediate_size, Dv], 'matrix');
    add(`${p}mlp.fc1.bias`, [v.intermediate_size], 'vector');
    add(`${p}mlp.fc2.weight`, [Dv, v.intermediate_size], 'matrix');
    add(`${p}mlp.fc2.bias`, [Dv], 'vector');
  }
  if (v.use_post_layernorm) {
    add('vision_model.post_layernorm.weight', [Dv], 'vector');
    add('vision_model.post_layernorm.bias', [Dv], 'vector');
  }

  const t = cfg.text_config;
  const d = t.hidden_size;
  add('lavi.projector.linear_1.weight', [d, Dv], 'matrix');
  add('lavi.projector.linear_1.bias', [d], 'vector');
  add('lavi.projector.linear_2.weight', [d, d], 'matrix');
  add('lavi.projector.linear_2.bias', [d], 'vector');
  add('lavi.frame_embedding.weight', [cfg.video_config.max_frames, d], 'table', true);

  for (const c of conditionerSites(cfg)) {
    const p = conditionerPrefix(c.layer, c.norm);
    const l = cfg.lavi_config;
    const r = l.conditioner_width;
    if (l.conditioner_ln_v) {
      add(`${p}ln_v.weight`, [d], 'vector');
      add(`${p}ln_v.bias`, [d], 'vector');
    }
    for (const proj of ['q_proj', 'k_proj', 'v_proj']) {
      add(`${p}${proj}.weight`, [r, d], 'matrix');
      if (l.conditioner_bias) add(`${p}${proj}.bias`, [r], 'vector');
    }
    const m = l.modulate === 'both' ? 2 : 1;
    add(`${p}o_proj.weight`, [m * d, r], 'matrix');
    add(`${p}o_proj.bias`, [m * d], 'vector');
  }

  const Dh = d / t.num_attention_heads;
  const qOut = t.num_attention_heads * Dh;
  const kvOut = t.num_key_value_heads * Dh;
  add('model.embed_tokens.weight', [t.vocab_size, d], 'embedding');
  for (let i = 0; i < t.num_hidden_layers; i++) {
    const p = `model.layers.${i}.`;
    add(`${p}input_layernorm.weight`, [d], 'vector');
    add(`${p}self_attn.q_proj.weight`, [qOut, d], 'matrix');
    add(`${p}self_attn.k_proj.weight`, [kvOut, d], 'matrix');
    add(`${p}self_attn.v_proj.weight`, [kvOut, d], 'matrix');
    if (t.attention_bias) {
      add(`${p}self_attn.q_proj.bias`, [qOut], 'vector');
      add(`${p}self_attn.k_proj.bias`, [kvOut], 'vector');
      add(`${p}self_attn.v_proj.bias`, [kvOut], 'vector');
    }
    add(`${p}self_attn.o_proj.weight`, [d, qOut], 'matrix');
    add(`${p}post_attention_layernorm.weight`, [d], 'vector');
    add(`${p}mlp.gate_proj.weight`, [t.intermediate_size, d], 'matrix');
    add(`${p}mlp.up_proj.weight`, [t.intermediate_size, d], 'matrix');
    add(`${p}mlp.down_proj.weight`, [d, t.intermediate_size], 'matrix');
  }
  add('model.norm.weight', [d], 'vector');
  if (!t.tie_word_embeddings) add('lm_head.weight', [t.vocab_size, d], 'matrix');
  return out;
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

/**
 * Names a checkpoint may hold that this graph does not use, accepted and skipped: SigLIP encoder layers beyond
 * the ones run (LLaVA-OneVision drops SigLIP's last layer), an unused post_layernorm, SigLIP's pooling head, a
 * stored lm_head.weight when embeddings are tied, and rotary inv_freq buffers.
 */
export function toleratedExtras(cfg: ModelConfig): ((name: string) => boolean)[] {
  const nv = cfg.vision_config.num_hidden_layers;
  return [
    (n) => {
      const m = /^vision_model\.encoder\.layers\.(\d+)\./.exec(n);
      return m !== null && Number(m[1]) >= nv;
    },
    (n) => !cfg.vision_config.use_post_layernorm && n.startsWith('vision_model.post_layernorm.'),
    (n) => n.startsWith('vision_model.head.'),
    (n) => cfg.text_config.tie_word_embeddings && n === 'lm_head.weight',
    (n) => n.endsWith('.rotary_emb.inv_freq'),
  ];
}

export interface ValidateOptions {
  /** Further names to accept and skip. */
  ignore?: (RegExp | ((name: string) => boolean))[];
}

interface Available {
  shape: readonly number[];
  /** Engine or safetensors dtype string. */
  dtype: string;
}

const FLOAT_DTYPES = new Set(['f32', 'f16', 'bf16', 'F32', 'F16', 'BF16']);

/** Checks `available` against the config; throws one FormatError listing every problem. Returns skipped names. */
export function validateWeights(cfg: ModelConfig, available: ReadonlyMap<string, Available>, source: string, opts: ValidateOptions = {}): string[] {
  const specs = expectedWeights(cfg);
  const expected = new Map(specs.map((s) => [s.name, s]));
  const missing: string[] = [];
  const misShaped: string[] = [];
  const badDType: string[] = [];
  const unexpected: string[] = [];
  const ignored: string[] = [];
  for (const s of specs) {
    const a = available.get(s.name);
    if (!a) {
      if (!s.optional) missing.push(`${s.name} ${fmtShape(s.shape)}`);
      continue;
    }
    if (a.shape.length !== s.shape.length || a.shape.some((x, i) => x !== s.shape[i])) {
      misShaped.push(`${s.name}: ${fmtShape(a.shape)}, expected ${fmtShape(s.shape)}`);
    }
    if (!FLOAT_DTYPES.has(a.dtype)) badDType.push(`${s.name}: ${a.dtype} (need F32, F16 or BF16)`);
  }
  const ignore = [
    ...toleratedExtras(cfg),
    ...(opts.ignore ?? []).map((p) => (p instanceof RegExp ? (n: string) => p.test(n) : p)),
  ];
  for (const [name, a] of available) {
    if (expected.has(name)) continue;
    if (ignore.some((f) => f(name))) ignored.push(name);
    else unexpected.push(`${name} ${fmtShape(a.shape)}`);
  }
  const problems = missing.length + misShaped.length + badDType.length + unexpected.length;
  if (problems) {
    const lines = [
      `${source}: ${problems} problem${problems > 1 ? 's' : ''} with the weights for this config ` +
        `(mode '${cfg.lavi_config.mode}', ${cfg.text_config.num_hidden_layers} decoder layers, ${cfg.vision_config.num_hidden_layers} vision layers):`,
    ];
    const section = (title: string, items: string[]) => {
      if (items.length) lines.push(`  ${title} (${items.length}):`, ...items.map((s) => `    ${s}`));
    };
    section('missing', missing);
    section('unexpected', unexpected);
    section('wrong shape', misShaped);
    section('unsupported dtype', badDType);
    if (cfg.lavi_config.mode === 'concat' && unexpected.some((u) => u.startsWith('lavi.conditioners.'))) {
      lines.push(`  (a concat-mode config takes no lavi.conditioners.*: is this a LaVi checkpoint? set lavi_config.mode = "lavi")`);
    }
    if (cfg.lavi_config.mode === 'lavi' && missing.length && missing.every((m) => m.startsWith('lavi.conditioners.'))) {
      lines.push(`  (no conditioners found: is this a concat-baseline checkpoint? set lavi_config.mode = "concat")`);
    }
    throw new FormatError(lines.join('\n'));
  }
  return ignored;
}

// ---- weights on a backend --------------------------------------------------------------------------------

/** The model's tensors on one backend, by name. */
export class ModelWeights {
  private readonly map: Map<string, Tensor>;
  /** Checkpoint names accepted but not loaded (see toleratedExtras). */
  readonly ignored: readonly string[];

  constructor(map: Map<string, Tensor>, ignored: readonly string[] = []) {
    this.map = map;
    this.ignored = ignored;
    for (const t of map.values()) keep(t);
  }

  get(name: string): Tensor {
    const t = this.map.get(name);
    if (!t) throw new ValueError(`weights: no tensor named '${name}'`);
    return t;
  }

  /** The tensor, or null when it is absent (optional weights). */
  maybe(name: string): Tensor | null {
    return this.map.get(name) ?? null;
  }

  has(name: string): boolean {
    return this.map.has(name);
  }

  names(): string[] {
    return [...this.map.keys()];
  }

  /** Bytes held on the backend, by storage dtype. */
  bytes(): number {
    let n = 0;
    for (const t of this.map.values()) n += t.size * (t.dtype === 'f16' || t.dtype === 'bf16' ? 2 : 4);
    return n;
  }

  parameterCount(): number {
    let n = 0;
    for (const t of this.map.values()) n += t.size;
    return n;
  }

  dispose(): void {
    for (const t of this.map.values()) t.dispose();
    this.map.clear();
  }
}

export interface UploadOptions extends ValidateOptions {
  /** Keep f16/bf16 Linear weights and the embedding table packed (default true); false widens all to f32. */
  keepPacked?: boolean;
}

function storageDType(kind: WeightKind, stored: DType, keepPacked: boolean): DType {
  return keepPacked && PACKABLE_KINDS.includes(kind) && (stored === 'f16' || stored === 'bf16') ? stored : 'f32';
}

function hostToBackend(backend: Backend, h: HostTensor, want: DType): Tensor {
  let data: HostArray = h.data;
  if (want === 'f32' && (h.dtype === 'f16' || h.dtype === 'bf16')) data = widenToF32(h.data as Uint16Array, h.dtype);
  return tensor(backend, data, h.shape, want);
}

/** Loads a checkpoint (model.safetensors or a sharded index, under `dir`) onto `backend`, validating it first. */
export async function loadWeights(dir: string, cfg: ModelConfig, backend: Backend, opts: UploadOptions = {}): Promise<ModelWeights> {
  const keepPacked = opts.keepPacked ?? true;
  const ckpt = await Checkpoint.open(dir);
  try {
    const available = new Map<string, Available>();
    for (const name of ckpt.names()) {
      const e = ckpt.entry(name);
      available.set(name, { shape: e.shape, dtype: e.dtype });
    }
    const ignored = validateWeights(cfg, available, `checkpoint ${dir}`, opts);
    const map = new Map<string, Tensor>();
    try {
      for (const spec of expectedWeights(cfg)) {
        if (!ckpt.has(spec.name)) continue;
        const e = ckpt.entry(spec.name);
        const packable = keepPacked && PACKABLE_KINDS.includes(spec.kind) && (e.dtype === 'F16' || e.dtype === 'BF16');
        const h = await ckpt.read(spec.name, { keepPacked: packable });
        map.set(spec.name, hostToBackend(backend, h, packable ? h.dtype : 'f32'));
      }
    } catch (err) {
      for (const t of map.values()) t.dispose();
      throw err;
    }
    return new ModelWeights(map, ignored);
  } finally {
    await ckpt.close();
  }
}

/** A weight given in memory: host data, or a tensor already on the target backend. */
export type WeightSource = HostTensor | Tensor;
export type WeightSet = ReadonlyMap<string, WeightSource> | Readonly<Record<string, WeightSource>>;

function entriesOf(w: WeightSet): [string, WeightSource][] {
  return w instanceof Map ? [...(w as ReadonlyMap<string, WeightSource>).entries()] : Object.entries(w as Record<string, WeightSource>);
}

/** Validates and uploads in-memory weights (host tensors are copied; backend tensors are used as they are). */
export function uploadWeights(cfg: ModelConfig, weights: WeightSet, backend: Backend, opts: UploadOptions = {}): ModelWeights {
  const keepPacked = opts.keepPacked ?? true;
  const entries = new Map(entriesOf(weights));
  const available = new Map<string, Available>();
  for (const [name, w] of entries) available.set(name, { shape: w.shape, dtype: w.dtype });
  const ignored = validateWeights(cfg, available, 'weights', opts);
  const map = new Map<string, Tensor>();
  try {
    for (const spec of expectedWeights(cfg)) {
      const w = entries.get(spec.name);
      if (!w) continue;
      const want = storageDType(spec.kind, w.dtype, keepPacked);
      if (w instanceof Tensor) {
        if (w.backend !== backend) throw new ValueError(`weights: tensor '${spec.name}' lives on backend '${w.backend.name}', not '${backend.name}'`);
        if (w.dtype !== want) throw new ValueError(`weights: tensor '${spec.name}' is ${w.dtype}; this weight must be ${want} on the backend`);
        map.set(spec.name, w);
      } else {
        map.set(spec.name, hostToBackend(backend, w, want));
      }
    }
  } catch (err) {
    for (const [name, t] of map) if (!(entries.get(name) instanceof Tensor)) t.dispose();
    throw err;
  }
  return new ModelWeights(map, ignored);
}

/**
 * Uninitialised weights of the right shapes (contents unspecified): for the meta backend, where a 7B model costs
 * nothing to "load". Packable kinds get `matrixDType` (default bf16, as the checkpoints ship), others f32.
 */
export function allocateWeights(cfg: ModelConfig, backend: Backend, opts: { matrixDType?: 'f32' | 'f16' | 'bf16' } = {}): ModelWeights {
  const md = opts.matrixDType ?? 'bf16';
  const map = new Map<string, Tensor>();
  for (const s of expectedWeights(cfg)) {
    if (s.optional) continue;
    const dt: DType = PACKABLE_KINDS.includes(s.kind) ? md : 'f32';
    const size = s.shape.reduce((a, b) => a * b, 1);
    map.set(s.name, Tensor.fromStorage(backend, s.shape, dt, backend.alloc(size, dt)));
  }
  return new ModelWeights(map);
}

/** Parameter counts per part, from the config alone. */
export function countParameters(cfg: ModelConfig): { vision: number; projector: number; conditioners: number; llm: number; total: number } {
  const c = { vision: 0, projector: 0, conditioners: 0, llm: 0, total: 0 };
  for (const s of expectedWeights(cfg)) {
    if (s.optional) continue;
    const n = s.shape.reduce((a, b) => a * b, 1);
    if (s.name.startsWith('vision_model.')) c.vision += n;
    else if (s.name.startsWith('lavi.projector.')) c.projector += n;
    else if (s.name.startsWith('lavi.conditioners.')) c.conditioners += n;
    else c.llm += n;
    c.total += n;
  }
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

/**
 * Random weights for a config, deterministic in (seed, name): Linear weights ~ N(0, 1/fan_in), embeddings
 * ~ N(0, 1), norm scales 1 + N(0, 0.1²), biases N(0, 0.02²)·…, so activations stay O(1) at any width.
 */
export function randomWeights(cfg: ModelConfig, opts: RandomWeightOptions = {}): Map<string, HostTensor> {
  const seed = opts.seed ?? 0;
  const out = new Map<string, HostTensor>();
  for (const s of expectedWeights(cfg)) {
    if (s.optional && opts.frameEmbedding === false) continue;
    const n = s.shape.reduce((a, b) => a * b, 1);
    const rng = createRng((hashString(s.name) ^ Math.imul(seed, 0x2545f491)) >>> 0);
    const data = new Float32Array(n);
    const isConditionerOut = s.name.startsWith('lavi.conditioners.') && s.name.includes('.o_proj.');
    const isNormScale = s.kind === 'vector' && /(norm[12]?|layernorm|ln_v)\.weight$/.test(s.name);
    let std: number;
    let mean = 0;
    if (isNormScale) (mean = 1), (std = 0.1);
    else if (s.kind === 'vector') std = 0.05;
    else if (s.kind === 'embedding' || s.kind === 'table') std = s.name.includes('position') || s.name.includes('frame') ? 0.2 : 1;
    else std = 1 / Math.sqrt(s.shape.slice(1).reduce((a, b) => a * b, 1));
    if (isConditionerOut) std *= opts.conditionerScale ?? 1;
    if (!(isConditionerOut && opts.zeroConditioners)) for (let i = 0; i < n; i++) data[i] = mean + std * rng.normal();
    const dtype = opts.dtype ?? 'f32';
    out.set(s.name, dtype === 'f32' ? { dtype, shape: [...s.shape], data } : { dtype, shape: [...s.shape], data: narrowFromF32(data, dtype) });
  }
  return out;
}

/**
 * Writes `dir/config.json` and `dir/model.safetensors`. Float tensors are stored in `dtype` when given (f32 values
 * rounded to f16/bf16), else as they are.
 */
export async function saveCheckpoint(dir: string, cfg: ModelConfig, weights: ReadonlyMap<string, HostTensor>, opts: { dtype?: 'f32' | 'f16' | 'bf16' } = {}): Promise<void> {
  await mkdir(dir, { recursive: true });
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
  await writeFile(join(dir, 'config.json'), JSON.stringify(config, null, 2) + '\n');
  await writeSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt' });
}
