// LlavaOnevisionForConditionalGeneration for one image: SigLIP features at vision_feature_layer → projector
// (linear_1, GELU, linear_2) → pack_image_features (pack.ts semantics, run on the backend) → the features written
// over the `<image>` placeholder rows of the Qwen2 decoder's input embeddings. Built on the families:
// models/siglip (VisionTower), models/qwen2 (Qwen2CausalLM), and this folder's processor.ts for the pixels.
//
//   const m = await LlavaOnevisionModel.load(dir, backend);
//   const image = m.encodeImage(m.processImage(rgb));      // packed features [N, d] on the backend
//   m.prefill(m.expandImageTokens(ids, image.numTokens), image);
//   m.decodeStep(id) …                                      // CausalLM, as Qwen2CausalLM
//
// Weight names, declared once here (the tower's and decoder's through their families' tables), in both layouts in
// circulation: the published llava-hf files (transformers 4.45 save) and what transformers ≥ 4.52 saves.
//
//   llava-hf:  vision_tower.vision_model.*        multi_modal_projector.*        image_newline
//              language_model.model.*            language_model.lm_head.weight (untied only)
//   new:       model.vision_tower.vision_model.* model.multi_modal_projector.*  model.image_newline
//              model.language_model.*            lm_head.weight (untied only)

import { join } from 'node:path';
import type { Backend } from '../../core/backend.js';
import { ShapeError, UnsupportedError, ValueError } from '../../core/errors.js';
import { Checkpoint } from '../../core/safetensors/checkpoint.js';
import { keep, tidy } from '../../core/scope.js';
import type { Tensor } from '../../core/tensor.js';
import { concat, gelu, linear, reshape, tensor, writeSlice } from '../../ops/index.js';
import type { RGBImage } from '../image/preprocess.js';
import { packOnBackend } from './pack.js';
import { readJsonFile } from '../loading/json-fields.js';
import { loadSpecs, weightSpec, type ModelWeights, type UploadOptions, type WeightSpec } from '../loading/weights.js';
import { parseQwen2Config, type Qwen2Config } from '../qwen2/config.js';
import { Qwen2CausalLM, type CausalLM, type LMOptions, type RunOptions } from '../qwen2/model.js';
import { declareQwen2, qwen2Specs, qwen2Tolerated, type Qwen2Names, type Qwen2Weights } from '../qwen2/weights.js';
import { layersForFeatureLayer, parseVisionConfig, type VisionConfig } from '../siglip/config.js';
import { VisionTower } from '../siglip/vision-tower.js';
import { declareSiglip, siglipSpecs, siglipTolerated, type SiglipWeights } from '../siglip/weights.js';
import {
  loadPreprocessorConfig,
  parseImageModelConfig,
  checkConsistent,
  processImage,
  tokenLayout,
  type LlavaOnevisionImageInputs,
  type LlavaOnevisionImageModelConfig,
  type LlavaOnevisionPreprocessorConfig,
  type TokenLayout,
} from './processor.js';

type Json = Record<string, unknown>;

// ---------------------------------------------------------------------------------------------------------------
// config
// ---------------------------------------------------------------------------------------------------------------

export interface LlavaOnevisionConfig {
  text: Qwen2Config;
  /** The SigLIP tower as run: num_hidden_layers = the layers up to vision_feature_layer, no post-layernorm. */
  vision: VisionConfig;
  /** Encoder layers the config declares (vision_config.num_hidden_layers). */
  visionLayersDeclared: number;
  /** vision_feature_layer: an index into hidden_states (−1: the last layer's output). */
  featureLayer: number;
  image: LlavaOnevisionImageModelConfig;
  imageTokenId: number;
  projectorAct: 'gelu' | 'gelu_pytorch_tanh';
  projectorBias: boolean;
}

function isObj(v: unknown): v is Json {
  return !!v && typeof v === 'object' && !Array.isArray(v);
}

/** Validates a LLaVA-OneVision config.json; every error names `where` and the field. */
export function parseLlavaOnevisionConfig(raw: unknown, where = 'config.json'): LlavaOnevisionConfig {
  if (!isObj(raw)) throw new ValueError(`${where}: not a JSON object`);
  if (raw.model_type !== undefined && raw.model_type !== 'llava_onevision') {
    throw new ValueError(`${where}: model_type is ${JSON.stringify(raw.model_type)}, not "llava_onevision"`);
  }
  if (!isObj(raw.text_config)) throw new ValueError(`${where}: field 'text_config' must be an object, got ${JSON.stringify(raw.text_config)}`);
  if (!isObj(raw.vision_config)) throw new ValueError(`${where}: field 'vision_config' must be an object, got ${JSON.stringify(raw.vision_config)}`);
  const tc = raw.text_config, vc = raw.vision_config;
  if (tc.model_type !== undefined && tc.model_type !== 'qwen2') {
    throw new UnsupportedError(`${where}: text_config.model_type is ${JSON.stringify(tc.model_type)}; only a Qwen2 decoder is implemented`);
  }
  if (vc.model_type !== undefined && vc.model_type !== 'siglip_vision_model') {
    throw new UnsupportedError(`${where}: vision_config.model_type is ${JSON.stringify(vc.model_type)}; only a SigLIP tower is implemented`);
  }
  const text = parseQwen2Config(tc, `${where} text_config`);
  const full = parseVisionConfig(vc, `${where} vision_config`, { postLayernorm: false });
  const fl = raw.vision_feature_layer ?? -1;
  if (Array.isArray(fl)) throw new UnsupportedError(`${where}: field 'vision_feature_layer' is a list ${JSON.stringify(fl)}; only one feature layer is implemented`);
  if (typeof fl !== 'number') throw new ValueError(`${where}: field 'vision_feature_layer' must be an integer, got ${JSON.stringify(fl)}`);
  const run = layersForFeatureLayer(fl, full.num_hidden_layers, where);
  // HF hidden_states[k] is the encoder output after k layers, without post_layernorm
  const vision: VisionConfig = { ...full, num_hidden_layers: run, use_post_layernorm: false };
  const image = parseImageModelConfig(raw, where);
  const act = raw.projector_hidden_act ?? 'gelu';
  if (act !== 'gelu' && act !== 'gelu_pytorch_tanh') {
    throw new UnsupportedError(`${where}: field 'projector_hidden_act' is ${JSON.stringify(act)}; supported: "gelu", "gelu_pytorch_tanh"`);
  }
  const bias = raw.multimodal_projector_bias ?? true;
  if (typeof bias !== 'boolean') throw new ValueError(`${where}: field 'multimodal_projector_bias' must be true or false, got ${JSON.stringify(bias)}`);
  const tokenKey = raw.image_token_index !== undefined ? 'image_token_index' : 'image_token_id';
  const tok = raw[tokenKey] ?? 151646;
  if (typeof tok !== 'number' || !Number.isInteger(tok) || tok < 0 || tok >= text.vocab_size) {
    throw new ValueError(`${where}: field '${tokenKey}' must be a token id in [0, ${text.vocab_size}), got ${JSON.stringify(raw[tokenKey])}`);
  }
  return { text, vision, visionLayersDeclared: full.num_hidden_layers, featureLayer: fl, image, imageTokenId: tok, projectorAct: act, projectorBias: bias };
}

// ---------------------------------------------------------------------------------------------------------------
// weights
// ---------------------------------------------------------------------------------------------------------------

export interface LlavaOnevisionNames {
  layout: 'llava-hf' | 'transformers';
  vision: string;
  projector: string;
  newline: string;
  text: Qwen2Names;
}

/** The published llava-hf checkpoints (transformers 4.45-era save). */
export const LLAVA_HF_NAMES: LlavaOnevisionNames = {
  layout: 'llava-hf',
  vision: 'vision_tower.vision_model.',
  projector: 'multi_modal_projector.',
  newline: 'image_newline',
  text: { body: 'language_model.model.', head: 'language_model.lm_head.weight' },
};

/** What transformers ≥ 4.52 saves. */
export const TRANSFORMERS_NAMES: LlavaOnevisionNames = {
  layout: 'transformers',
  vision: 'model.vision_tower.vision_model.',
  projector: 'model.multi_modal_projector.',
  newline: 'model.image_newline',
  text: { body: 'model.language_model.', head: 'lm_head.weight' },
};

export interface LlavaOnevisionWeights {
  vision: SiglipWeights;
  linear1: WeightSpec;
  linear1Bias: WeightSpec | null;
  linear2: WeightSpec;
  linear2Bias: WeightSpec | null;
  newline: WeightSpec;
  text: Qwen2Weights;
}

export function declareLlavaOnevision(cfg: LlavaOnevisionConfig, names: LlavaOnevisionNames): LlavaOnevisionWeights {
  const Hv = cfg.vision.hidden_size, Ht = cfg.text.hidden_size;
  const p = names.projector;
  return {
    vision: declareSiglip(cfg.vision, names.vision),
    linear1: weightSpec(`${p}linear_1.weight`, [Ht, Hv], 'matrix'),
    linear1Bias: cfg.projectorBias ? weightSpec(`${p}linear_1.bias`, [Ht], 'vector') : null,
    linear2: weightSpec(`${p}linear_2.weight`, [Ht, Ht], 'matrix'),
    linear2Bias: cfg.projectorBias ? weightSpec(`${p}linear_2.bias`, [Ht], 'vector') : null,
    newline: weightSpec(names.newline, [Ht], 'vector'),
    text: declareQwen2(cfg.text, names.text),
  };
}

export function llavaOnevisionSpecs(w: LlavaOnevisionWeights): WeightSpec[] {
  const out = siglipSpecs(w.vision);
  out.push(w.linear1);
  if (w.linear1Bias) out.push(w.linear1Bias);
  out.push(w.linear2);
  if (w.linear2Bias) out.push(w.linear2Bias);
  out.push(w.newline, ...qwen2Specs(w.text));
  return out;
}

/** Picks the naming convention from the tensor names a checkpoint holds. */
export function namesFor(tensorNames: readonly string[], source: string): LlavaOnevisionNames {
  const set = new Set(tensorNames);
  if (set.has(LLAVA_HF_NAMES.newline)) return LLAVA_HF_NAMES;
  if (set.has(TRANSFORMERS_NAMES.newline)) return TRANSFORMERS_NAMES;
  throw new ValueError(`${source}: no 'image_newline' or 'model.image_newline' tensor; not a LLaVA-OneVision checkpoint in either naming (llava-hf: vision_tower.*, multi_modal_projector.*, language_model.*; transformers ≥ 4.52: model.vision_tower.*, …)`);
}

// ---------------------------------------------------------------------------------------------------------------
// the model
// ---------------------------------------------------------------------------------------------------------------

export interface LlavaOnevisionLoadOptions extends UploadOptions, LMOptions {
  /** Tiles run through the vision tower at once (memory: attention is [B, heads, n², n²]); default 4. */
  visionBatch?: number;
}

/** An image encoded for the decoder: packed features [N, d] on the backend. */
export class LlavaImageEncoding {
  private disposed = false;
  constructor(
    readonly features: Tensor,
    readonly imageSize: [number, number],
    readonly layout: TokenLayout,
  ) {}
  get numTokens(): number {
    return this.layout.numTokens;
  }
  get isDisposed(): boolean {
    return this.disposed;
  }
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.features.dispose();
  }
}

export class LlavaOnevisionModel implements CausalLM {
  readonly lm: Qwen2CausalLM;
  readonly tower: VisionTower;
  readonly stats = { imagesEncoded: 0 };
  private readonly newlineHost: Float32Array;
  private readonly visionBatch: number;

  constructor(
    readonly config: LlavaOnevisionConfig,
    readonly preprocessor: LlavaOnevisionPreprocessorConfig,
    readonly names: LlavaOnevisionNames,
    readonly table: LlavaOnevisionWeights,
    readonly weights: ModelWeights,
    readonly backend: Backend,
    newline: Float32Array,
    opts: LlavaOnevisionLoadOptions = {},
  ) {
    checkConsistent(preprocessor, config.image);
    this.tower = new VisionTower(config.vision, table.vision, weights);
    this.lm = new Qwen2CausalLM(config.text, table.text, weights, backend, opts);
    this.newlineHost = newline;
    const vb = opts.visionBatch ?? 4;
    if (!Number.isInteger(vb) || vb < 1) throw new ValueError(`visionBatch must be a positive integer, got ${vb}`);
    this.visionBatch = vb;
  }

  /** Loads a LlavaOnevisionForConditionalGeneration folder (config.json, preprocessor_config.json, safetensors). */
  static async load(dir: string, backend: Backend, opts: LlavaOnevisionLoadOptions = {}): Promise<LlavaOnevisionModel> {
    const configPath = join(dir, 'config.json');
    const config = parseLlavaOnevisionConfig(await readJsonFile(configPath), configPath);
    const pre = await loadPreprocessorConfig(join(dir, 'preprocessor_config.json'));
    checkConsistent(pre, config.image, join(dir, 'preprocessor_config.json'), configPath);
    const ck = await Checkpoint.open(dir);
    let names: LlavaOnevisionNames;
    try {
      names = namesFor(ck.names(), `checkpoint ${dir}`);
    } finally {
      await ck.close();
    }
    const table = declareLlavaOnevision(config, names);
    const check = {
      specs: llavaOnevisionSpecs(table),
      tolerated: [...siglipTolerated(config.vision, names.vision), ...qwen2Tolerated(config.text, names.text)],
      describe: `LLaVA-OneVision (${names.layout} names): SigLIP ${config.vision.num_hidden_layers} of ${config.visionLayersDeclared} layers, Qwen2 ${config.text.num_hidden_layers} layers, ${config.text.tie_word_embeddings ? 'tied' : 'untied'} head`,
    };
    const weights = await loadSpecs([dir], check, backend, opts);
    try {
      const nl = (await weights.get(table.newline.name).read()) as Float32Array;
      return new LlavaOnevisionModel(config, pre, names, table, weights, backend, Float32Array.from(nl), opts);
    } catch (e) {
      weights.dispose();
      throw e;
    }
  }

  // ---- CausalLM, through the decoder ----
  get position(): number {
    return this.lm.position;
  }
  get maxContext(): number {
    return this.lm.maxContext;
  }
  get vocabSize(): number {
    return this.lm.vocabSize;
  }
  get logits(): Tensor | null {
    return this.lm.logits;
  }
  get imageTokenId(): number {
    return this.config.imageTokenId;
  }
  readLogits(): Promise<Float32Array> {
    return this.lm.readLogits();
  }
  decodeStep(id: number): Tensor {
    return this.lm.decodeStep(id);
  }
  reset(): void {
    this.lm.reset();
  }
  dispose(): void {
    this.lm.dispose(); // disposes the shared weights
  }

  // ---- images ----

  /** The Hugging Face image processor on one RGB(A) image (processor.ts). */
  processImage(img: RGBImage): LlavaOnevisionImageInputs {
    return processImage(img, this.preprocessor, this.config.image);
  }

  /** Tokens an image of `height`×`width` becomes. */
  imageTokens(height: number, width: number): number {
    return tokenLayout(height, width, this.config.image).numTokens;
  }

  /** Projected features [1 + tiles, n², d] of a processed image (vision tower in chunks of visionBatch tiles). */
  projectedFeatures(inputs: Pick<LlavaOnevisionImageInputs, 'pixelValues' | 'shape'>): Tensor {
    const [T, C, S, S2] = inputs.shape;
    const v = this.config.vision;
    if (C !== v.num_channels || S !== v.image_size || S2 !== v.image_size || inputs.pixelValues.length !== T * C * S * S) {
      throw new ShapeError(`llava-onevision: pixel_values must be [T, ${v.num_channels}, ${v.image_size}, ${v.image_size}], got [${inputs.shape.join(', ')}] with ${inputs.pixelValues.length} values`);
    }
    const t = this.table;
    const w = (s: WeightSpec | null) => (s ? this.weights.get(s.name) : null);
    const parts: Tensor[] = [];
    try {
      for (let b = 0; b < T; b += this.visionBatch) {
        const n = Math.min(this.visionBatch, T - b);
        parts.push(
          tidy(() => {
            const px = tensor(this.backend, inputs.pixelValues.subarray(b * C * S * S, (b + n) * C * S * S), [n, C, S, S]);
            const f = this.tower.forward(px);
            const h = gelu(linear(f, w(t.linear1)!, w(t.linear1Bias)), this.config.projectorAct === 'gelu' ? 'erf' : 'tanh');
            return linear(h, w(t.linear2)!, w(t.linear2Bias));
          }),
        );
      }
      return parts.length === 1 ? parts.pop()! : concat(parts, 0);
    } finally {
      for (const p of parts) p.dispose();
    }
  }

  /** pack_image_features on the backend (pack.ts). */
  pack(projected: Tensor, imageSize: readonly [number, number]): { features: Tensor; layout: TokenLayout } {
    return packOnBackend(projected, imageSize, this.config.image, this.newlineHost);
  }

  /** Processed image → packed features on the backend. */
  encodeImage(inputs: LlavaOnevisionImageInputs): LlavaImageEncoding {
    const proj = this.projectedFeatures(inputs);
    try {
      const { features, layout } = this.pack(proj, inputs.imageSize);
      if (layout.numTokens !== inputs.numImageTokens && inputs.numImageTokens !== null) {
        features.dispose();
        throw new ValueError(`llava-onevision: packed ${layout.numTokens} features, the processor counted ${inputs.numImageTokens}`);
      }
      this.stats.imagesEncoded++;
      return new LlavaImageEncoding(keep(features), [inputs.imageSize[0], inputs.imageSize[1]], layout);
    } finally {
      proj.dispose();
    }
  }

  /**
   * The processor's placeholder expansion: one image token becomes `numTokens` copies; ids that already hold
   * exactly `numTokens` image tokens in one run (expanded by Hugging Face's processor) are returned as they are.
   */
  expandImageTokens(ids: readonly number[], numTokens: number): number[] {
    const tok = this.config.imageTokenId;
    const at: number[] = [];
    for (let i = 0; i < ids.length; i++) if (ids[i] === tok) at.push(i);
    if (at.length === 1) return [...ids.slice(0, at[0]!), ...new Array<number>(numTokens).fill(tok), ...ids.slice(at[0]! + 1)];
    if (at.length === numTokens && at[at.length - 1]! - at[0]! === numTokens - 1) return [...ids];
    throw new ValueError(`prompt: the image needs one image token (id ${tok}) or ${numTokens} in one run, found ${at.length}`);
  }

  /**
   * Starts a sequence: ids (with the image's tokens already expanded, see expandImageTokens) embedded, the image's
   * features written over the image-token rows, run through the decoder. Logits of the last token [1, 1, V].
   * With no image, image-token ids are embedded like any other token (Hugging Face without pixel_values).
   */
  prefill(ids: readonly number[], image: LlavaImageEncoding | null, opts: RunOptions & { consumeImage?: boolean } = {}): Tensor {
    this.lm.assertAlive();
    const tok = this.config.imageTokenId;
    const at: number[] = [];
    for (let i = 0; i < ids.length; i++) if (ids[i] === tok) at.push(i);
    if (image) {
      if (image.isDisposed) throw new ValueError('prefill: the image encoding has been disposed');
      const N = image.numTokens;
      if (at.length !== N || at[at.length - 1]! - at[0]! !== N - 1) {
        throw new ValueError(`prefill: the image has ${N} features but the prompt holds ${at.length} image tokens (id ${tok})${at.length === 1 ? '; expand them with expandImageTokens' : ''}`);
      }
    }
    // without an image, image tokens are embedded as ordinary tokens (as in Hugging Face without pixel_values)
    this.lm.clearSequence();
    this.lm.normHook = null;
    this.lm.stats.prefills++;
    try {
      let h = this.lm.embedIds(ids);
      if (image) {
        const d = this.config.text.hidden_size;
        const fv = reshape(image.features, [1, image.numTokens, d]);
        try {
          h = writeSlice(h, fv, 1, at[0]!);
        } finally {
          fv.dispose();
        }
      }
      return this.lm.run(h, ids.length, opts);
    } finally {
      if (image && opts.consumeImage) image.dispose();
    }
  }
}
