// LaviModel: the whole graph on one backend — vision tower, projector, ViLN conditioners and the Qwen2 decoder —
// with a KV cache for generation. Mode 'lavi' feeds the image through the conditioners (the decoder's context
// stays text-only); mode 'concat' is the LLaVA-style baseline with the visual tokens prepended to the text.
//
//   const model = await LaviModel.load(dir, backend);
//   const logits = model.prefill(ids, pixels);     // logits of the last prompt token, [1, 1, V]
//   const next = model.decodeStep(id);              // one token through the cache, [1, 1, V]
//
// Tensors returned by prefill/decodeStep/extend are owned by the model and stay valid until its next call.
// Everything the model keeps across calls (weights, KV cache, per-image conditioner state) is protected from
// the caller's `tidy` scopes.

import type { Backend } from '../../core/backend.js';
import { costSection } from '../../core/cost.js';
import { ShapeError, ValueError, fmtShape } from '../../core/errors.js';
import { keep, tidy } from '../../core/scope.js';
import { Tensor } from '../../core/tensor.js';
import { concat, copy, reshape, sliceAxis, tensor } from '../../ops/index.js';
import type { PixelBatch } from '../image/preprocess.js';
import { readJsonFile } from '../loading/json-fields.js';
import type { Decoder } from '../qwen2/decoder.js';
import type { KVCache } from '../qwen2/kv-cache.js';
import { Qwen2CausalLM, type ModelStats } from '../qwen2/model.js';
import { VisionTower } from '../siglip/vision-tower.js';
import { ConditionerSet, visualNormHook, VisualContext } from './conditioner.js';
import { parseConfig, patchGrid, type ModelConfig } from './config.js';
import { Projector } from './projector.js';
import { declareLavi, loadWeights, ModelWeights, uploadWeights, type UploadOptions, type WeightSet } from './weights.js';

export type { ModelStats } from '../qwen2/model.js';

/** Projected visual tokens of one image (or a set of crops, or a video), ready for prefill. */
export class ImageEncoding {
  constructor(
    /** V: [1, N_v, d]. */
    readonly tokens: Tensor,
    /** The tower's output [B, N, Dv], when asked for (keepFeatures). */
    readonly features: Tensor | null,
  ) {
    keep(tokens);
    if (features) keep(features);
  }

  get numTokens(): number {
    return this.tokens.shape[1]!;
  }

  dispose(): void {
    this.tokens.dispose();
    this.features?.dispose();
  }
}

/** What prefill takes as the image: pixels (a backend tensor or host batch [B, 3, S, S]) or an encoding. */
export type ImageInput = Tensor | PixelBatch | ImageEncoding;

export interface ModelOptions extends UploadOptions {
  /** Initial KV-cache capacity in tokens (it grows as needed). Default 256. */
  kvCapacity?: number;
}

export interface PrefillOptions {
  /** Return logits for every prompt (text) token, [1, T, V], instead of the last one. */
  allLogits?: boolean;
  /** Keep the residual stream after the embedding and after every layer in `model.hidden`. */
  captureHidden?: boolean;
  /** Keep every conditioner's output [1, T, m·d] in `model.deltas`, by site ('0.input_layernorm', 'final.norm'). */
  captureDeltas?: boolean;
  /** Dispose a given ImageEncoding as soon as it has been used (one made here from pixels always is). */
  consumeImage?: boolean;
}

export class LaviModel {
  readonly vision: VisionTower;
  readonly projector: Projector;
  readonly conditioners: ConditionerSet;
  /** The Qwen2 decoder with its KV cache and sequence (the conditioners enter through its norm hook). */
  readonly lm: Qwen2CausalLM;
  /** With captureDeltas: conditioner outputs of the last call, by site. */
  deltas = new Map<string, Tensor>();
  private visual: VisualContext | null = null;
  private disposed = false;

  constructor(
    readonly config: ModelConfig,
    readonly weights: ModelWeights,
    readonly backend: Backend,
    opts: ModelOptions = {},
  ) {
    const table = declareLavi(config);
    this.vision = new VisionTower(config.vision_config, table.vision, weights);
    this.projector = new Projector(config, table.projector, weights);
    this.conditioners = new ConditionerSet(config, weights, table.conditioners, table.sharedKV);
    this.lm = new Qwen2CausalLM(config.text_config, table.decoder, weights, backend, opts);
  }

  /**
   * Loads a LaVi directory: `dir/config.json` (unless opts.config is given) and the checkpoint in `dir`, plus the
   * checkpoints of the folders the config references (opts.weightDirs, see models/loader.ts).
   */
  static async load(dir: string, backend: Backend, opts: ModelOptions & { config?: ModelConfig; weightDirs?: readonly string[] } = {}): Promise<LaviModel> {
    const config = opts.config ?? parseConfig(await readJsonFile(`${dir}/config.json`), `${dir}/config.json`);
    const weights = await loadWeights(opts.weightDirs ?? [dir], config, backend, opts);
    return new LaviModel(config, weights, backend, opts);
  }

  /** A model from in-memory weights (host tensors or tensors on `backend`), validated like a checkpoint. */
  static fromWeights(config: ModelConfig, weights: WeightSet, backend: Backend, opts: ModelOptions = {}): LaviModel {
    return new LaviModel(config, uploadWeights(config, weights, backend, opts), backend, opts);
  }

  get decoder(): Decoder {
    return this.lm.decoder;
  }

  get cache(): KVCache {
    return this.lm.cache;
  }

  get stats(): ModelStats {
    return this.lm.stats;
  }

  /** With captureHidden: [embeddings, after layer 0, …, after layer L−1, final norm output], each [1, T, d] (T
   *  includes visual tokens in concat mode). Replaced by the next prefill. */
  get hidden(): Tensor[] {
    return this.lm.hidden;
  }

  get maxContext(): number {
    return this.lm.maxContext;
  }

  get vocabSize(): number {
    return this.lm.vocabSize;
  }

  get mode(): 'lavi' | 'concat' {
    return this.config.lavi_config.mode;
  }

  /** Tokens in the KV cache (the position the next token gets). */
  get position(): number {
    return this.lm.position;
  }

  /** The logits of the last call, or null. */
  get logits(): Tensor | null {
    return this.lm.logits;
  }

  /** The per-image conditioner state (K/U) of the current sequence, or null. */
  get visualState(): VisualContext | null {
    return this.visual;
  }

  /** Whether the current sequence has an image (LaVi: its conditioner state is cached). */
  get hasImage(): boolean {
    return this.visual !== null;
  }

  /** Reads the last position's logits of the last call. */
  readLogits(): Promise<Float32Array> {
    return this.lm.readLogits();
  }

  private pixelsTensor(pixels: Tensor | PixelBatch): Tensor {
    if (pixels instanceof Tensor) return pixels;
    return tensor(this.backend, pixels.data, pixels.shape);
  }

  /**
   * Vision tower + projector: pixels [B, 3, S, S] (B crops, tokens concatenated in crop order) → V [1, B·N, d].
   * `maxTokens` keeps only the first tokens (for cost studies with a token count that is not a multiple of N).
   */
  encodeImage(pixels: Tensor | PixelBatch, opts: { keepFeatures?: boolean; maxTokens?: number } = {}): ImageEncoding {
    this.assertAlive();
    const px = this.pixelsTensor(pixels);
    try {
      const features = this.vision.forward(px);
      const out = tidy(() => {
        const [B, N] = features.shape as [number, number];
        let v = reshape(this.projector.forward(features), [1, B * N, this.config.text_config.hidden_size]);
        if (opts.maxTokens !== undefined && opts.maxTokens < B * N) v = sliceAxis(v, 1, 0, opts.maxTokens);
        return v;
      });
      if (!opts.keepFeatures) features.dispose();
      return new ImageEncoding(out, opts.keepFeatures ? features : null);
    } finally {
      if (px !== pixels) px.dispose();
    }
  }

  /** Video [chosen]: frames [F, 3, S, S] → pooled, frame-embedded tokens [1, F·⌈g/pool⌉², d]. */
  encodeVideo(frames: Tensor | PixelBatch, opts: { keepFeatures?: boolean } = {}): ImageEncoding {
    this.assertAlive();
    const px = this.pixelsTensor(frames);
    try {
      const features = this.vision.forward(px);
      const g = patchGrid(this.config.vision_config);
      const out = tidy(() => this.projector.poolFrames(this.projector.forward(features), g, g));
      if (!opts.keepFeatures) features.dispose();
      return new ImageEncoding(out, opts.keepFeatures ? features : null);
    } finally {
      if (px !== frames) px.dispose();
    }
  }

  private clearSequence(): void {
    this.lm.clearSequence();
    this.lm.normHook = null;
    this.visual?.dispose();
    this.visual = null;
    for (const t of this.deltas.values()) t.dispose();
    this.deltas.clear();
  }

  /**
   * Starts a new sequence: encodes the image (if any), caches what generation needs from it, and runs the
   * prompt. LaVi: the conditioners' K/U are computed here, once; concat: the visual tokens go first in the
   * context. Returns the last prompt token's logits [1, 1, V] (all prompt tokens' with allLogits).
   */
  prefill(ids: readonly number[] | Int32Array, image?: ImageInput | null, opts: PrefillOptions = {}): Tensor {
    this.assertAlive();
    this.clearSequence();
    this.stats.prefills++;
    const idT = this.lm.idsTensor(ids);
    const T = ids.length;
    let enc: ImageEncoding | null = null;
    let ownEnc = false;
    try {
      if (image) {
        if (image instanceof ImageEncoding) (enc = image), (ownEnc = opts.consumeImage ?? false);
        else (enc = this.encodeImage(image)), (ownEnc = true);
        const d = this.config.text_config.hidden_size;
        if (enc.tokens.rank !== 3 || enc.tokens.shape[0] !== 1 || enc.tokens.shape[2] !== d) {
          throw new ShapeError(`prefill: visual tokens must be [1, N_v, ${d}], got ${fmtShape(enc.tokens.shape)}`);
        }
      }
      let h: Tensor;
      if (enc && this.mode === 'lavi') {
        this.visual = this.conditioners.prepare(enc.tokens);
        this.stats.imagesPrepared++;
        this.lm.normHook = visualNormHook(this.conditioners, this.visual, opts.captureDeltas ? (site, t) => this.captureDelta(site, t) : undefined);
        h = this.decoder.embed(idT);
      } else if (enc) {
        h = tidy(() => {
          const text = this.decoder.embed(idT);
          return costSection('llm', () => concat([enc!.tokens, text], 1));
        });
      } else {
        h = this.decoder.embed(idT);
      }
      // V is no longer needed (LaVi keeps only K/U; concat copied it into the context).
      if (ownEnc) enc!.dispose(), (ownEnc = false);
      return this.run(h, T, opts);
    } finally {
      idT.dispose();
      if (ownEnc) enc!.dispose();
    }
  }

  private captureDelta(site: string, t: Tensor): void {
    this.deltas.get(site)?.dispose();
    this.deltas.set(site, keep(copy(t)));
  }

  /** Runs h [1, T', d] through the decoder at the current position; logits for the last `textTokens`. */
  private run(h: Tensor, textTokens: number, opts: PrefillOptions): Tensor {
    return this.lm.run(h, textTokens, opts);
  }

  /** Runs more tokens through the cache (continuing the sequence; the image state stays). */
  extend(ids: readonly number[] | Int32Array, opts: PrefillOptions = {}): Tensor {
    this.assertAlive();
    return this.lm.extend(ids, opts);
  }

  /** One generated token through the cache → its logits [1, 1, V]. */
  decodeStep(id: number): Tensor {
    this.stats.steps++;
    return this.extend([id]);
  }

  /** Forgets the sequence (cache, image state, captured states); keeps the weights. */
  reset(): void {
    this.clearSequence();
    this.lm.reset();
  }

  /** Frees everything on the backend, weights included. */
  dispose(): void {
    if (this.disposed) return;
    this.reset();
    this.lm.dispose();
    this.disposed = true;
  }

  private assertAlive(): void {
    if (this.disposed) throw new ValueError('LaviModel: used after dispose()');
  }
}
