// What the runtime drives, whatever the family: a causal LM, maybe with a way for images to enter. One adapter
// per generative family (LaVi: conditioners; Qwen2: text only; LLaVA-OneVision: features at the image token).

import type { Backend } from '../../core/backend.js';
import { ValueError } from '../../core/errors.js';
import type { PixelBatch, RGBImage } from '../image/preprocess.js';
import { preprocessImage } from '../image/preprocess.js';
import { countParameters } from '../lavi/weights.js';
import type { ImageEncoding, LaviModel } from '../lavi/model.js';
import type { ModelWeights } from '../loading/weights.js';
import type { LlavaImageEncoding, LlavaOnevisionModel } from '../llava-onevision/model.js';
import type { LlavaOnevisionImageInputs } from '../llava-onevision/processor.js';
import type { Family, GenerationDefaults } from '../loader.js';
import type { CausalLM, Qwen2CausalLM } from '../qwen2/model.js';
import { visualTokensPerImage } from '../siglip/config.js';

/** An image on its way into the model: preprocessed pixels, then encoded once. */
export interface EncodedImage {
  /** Visual tokens the image produced. */
  readonly numTokens: number;
  dispose(): void;
}

export interface EngineDescription {
  family: Family;
  /** 'lavi' | 'concat' for LaVi checkpoints; the family otherwise. */
  mode: string;
  layers: number;
  width: number;
  vocabSize: number;
  maxPositionEmbeddings: number;
  parameters: Record<string, number> & { total: number };
  vision: { imageSize: number; patchSize: number; visualTokensPerImage: number; layers: number; width: number } | null;
}

export interface Engine {
  readonly family: Family;
  readonly lm: CausalLM;
  readonly backend: Backend;
  readonly weights: ModelWeights;
  readonly generation: GenerationDefaults;
  /** Whether images are accepted (false: text-only). */
  readonly acceptsImages: boolean;
  /** The token id that marks where an image goes in the prompt (LLaVA-OneVision), or null. */
  readonly imageTokenId: number | null;
  /** Decoded pixels → what encode() takes (normalised pixels; for anyres families the tiles too). */
  preprocess(img: RGBImage): unknown;
  encode(prepared: unknown): EncodedImage;
  /** Tokens an image adds to the decoder's context besides the prompt ids (concat-style families). */
  contextTokens(image: EncodedImage | null, ids: readonly number[]): number;
  /** Starts a sequence (the image, if any, is consumed). */
  prefill(ids: readonly number[], image: EncodedImage | null): void;
  describe(): EngineDescription;
  dispose(): void;
}

/** What every adapter shares: the model it wraps (weights, backend, sequence) and its generation defaults. */
abstract class ModelEngine<M extends CausalLM & { readonly backend: Backend; readonly weights: ModelWeights; dispose(): void }> {
  constructor(
    readonly model: M,
    readonly generation: GenerationDefaults,
  ) {}
  get lm(): CausalLM {
    return this.model;
  }
  get backend(): Backend {
    return this.model.backend;
  }
  get weights(): ModelWeights {
    return this.model.weights;
  }
  dispose(): void {
    this.model.dispose();
  }
}

export class LaviEngine extends ModelEngine<LaviModel> implements Engine {
  readonly family = 'lavi' as const;
  readonly acceptsImages = true;
  readonly imageTokenId = null;
  preprocess(img: RGBImage): PixelBatch {
    return preprocessImage(img, this.model.config.vision_config);
  }
  encode(pixels: unknown): EncodedImage {
    return this.model.encodeImage(pixels as PixelBatch);
  }
  contextTokens(image: EncodedImage | null): number {
    return image && this.model.mode === 'concat' ? image.numTokens : 0;
  }
  prefill(ids: readonly number[], image: EncodedImage | null): void {
    this.model.prefill(ids, (image as ImageEncoding | null) ?? null, { consumeImage: true });
  }
  describe(): EngineDescription {
    const c = this.model.config;
    const v = c.vision_config, t = c.text_config;
    return {
      family: 'lavi',
      mode: c.lavi_config.mode,
      layers: t.num_hidden_layers,
      width: t.hidden_size,
      vocabSize: t.vocab_size,
      maxPositionEmbeddings: t.max_position_embeddings,
      parameters: countParameters(c),
      vision: { imageSize: v.image_size, patchSize: v.patch_size, visualTokensPerImage: visualTokensPerImage(v), layers: v.num_hidden_layers, width: v.hidden_size },
    };
  }
}

export class TextEngine extends ModelEngine<Qwen2CausalLM> implements Engine {
  readonly family = 'qwen2' as const;
  readonly acceptsImages = false;
  readonly imageTokenId = null;
  preprocess(): PixelBatch {
    throw new ValueError('this model is text-only (Qwen2ForCausalLM): it takes no image');
  }
  encode(): EncodedImage {
    throw new ValueError('this model is text-only (Qwen2ForCausalLM): it takes no image');
  }
  contextTokens(): number {
    return 0;
  }
  prefill(ids: readonly number[], image: EncodedImage | null): void {
    if (image) throw new ValueError('this model is text-only (Qwen2ForCausalLM): it takes no image');
    this.model.prefill(ids);
  }
  describe(): EngineDescription {
    const c = this.model.config;
    const n = this.model.weights.parameterCount();
    return {
      family: 'qwen2',
      mode: 'qwen2',
      layers: c.num_hidden_layers,
      width: c.hidden_size,
      vocabSize: c.vocab_size,
      maxPositionEmbeddings: c.max_position_embeddings,
      parameters: { llm: n, total: n },
      vision: null,
    };
  }
}

/** LLaVA-OneVision: the image's packed features take the place of its token in the prompt (the processor's
 *  expansion of one `<image>` into as many tokens as the image has features). */
export class LlavaEngine extends ModelEngine<LlavaOnevisionModel> implements Engine {
  readonly family = 'llava-onevision' as const;
  readonly acceptsImages = true;
  get imageTokenId(): number {
    return this.model.imageTokenId;
  }
  preprocess(img: RGBImage): LlavaOnevisionImageInputs {
    return this.model.processImage(img);
  }
  encode(prepared: unknown): EncodedImage {
    return this.model.encodeImage(prepared as LlavaOnevisionImageInputs);
  }
  contextTokens(image: EncodedImage | null, ids: readonly number[]): number {
    if (!image) return 0;
    const n = ids.reduce((a, id) => a + (id === this.imageTokenId ? 1 : 0), 0);
    return n === 1 ? image.numTokens - 1 : 0;
  }
  prefill(ids: readonly number[], image: EncodedImage | null): void {
    if (!image) {
      this.model.prefill(ids, null);
      return;
    }
    const img = image as LlavaImageEncoding;
    this.model.prefill(this.model.expandImageTokens(ids, img.numTokens), img, { consumeImage: true });
  }
  describe(): EngineDescription {
    const c = this.model.config;
    const v = c.vision, t = c.text;
    const n = this.model.weights.parameterCount();
    return {
      family: 'llava-onevision',
      mode: 'llava-onevision',
      layers: t.num_hidden_layers,
      width: t.hidden_size,
      vocabSize: t.vocab_size,
      maxPositionEmbeddings: t.max_position_embeddings,
      parameters: { total: n },
      vision: { imageSize: v.image_size, patchSize: v.patch_size, visualTokensPerImage: visualTokensPerImage(v), layers: v.num_hidden_layers, width: v.hidden_size },
    };
  }
}
