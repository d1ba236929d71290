// SigLIP vision tower configuration: a Hugging Face config.json of model_type "siglip_vision_model" (or the
// vision_config section of a "siglip", LaVi or LLaVA-OneVision config), plus the image normalisation from
// preprocessor_config.json.

import { ValueError } from '../../core/errors.js';
import { requireResample } from '../image/resample.js';
import { bool, num, oneOf, type Json } from '../loading/json-fields.js';

export interface VisionConfig {
  image_size: number;
  patch_size: number;
  num_channels: number;
  hidden_size: number;
  /** Encoder layers that are run (LLaVA-OneVision keeps 26 of SigLIP's 27). */
  num_hidden_layers: number;
  num_attention_heads: number;
  intermediate_size: number;
  layer_norm_eps: number;
  /** 'gelu_pytorch_tanh' (SigLIP) or 'gelu' (erf). */
  hidden_act: 'gelu_pytorch_tanh' | 'gelu';
  /** Apply vision_model.post_layernorm to the selected features (SiglipVisionModel does; LLaVA-OneVision does not). */
  use_post_layernorm: boolean;
  image_mean: [number, number, number];
  image_std: [number, number, number];
  /**
   * [ours, not SigLIP] output channels of a convolutional stem run before the patch embedding: each entry is a 2×2
   * stride-2 convolution followed by hidden_act (weights `embeddings.stem.{i}`), so the patch embedding's kernel is
   * patch_size / 2^stem_channels.length. Empty (every real SigLIP checkpoint): no stem.
   */
  stem_channels: number[];
  /**
   * [ours, not SigLIP's config.json] how a picture is resized to image_size: a PIL filter number, as `resample` in a
   * Hugging Face preprocessor_config.json (1 lanczos, 2 bilinear, 3 bicubic, 4 box, 5 hamming; antialiased, bit
   * exact with Pillow, to 8 bits). Absent: bilinear with half-pixel centres and no antialiasing, in float (PyTorch
   * F.interpolate), which the bundled checkpoints were trained on.
   */
  resample?: number;
}

export interface SiglipParseOptions {
  /** Default of use_post_layernorm when the object has no such field. */
  postLayernorm?: boolean;
}

/** Validates a SigLIP vision config object; `where` names the file and section in errors. */
export function parseVisionConfig(vj: Json, where: string, opts: SiglipParseOptions = {}): VisionConfig {
  const w = where;
  const vision: VisionConfig = {
    image_size: num(vj, 'image_size', w, { int: true, min: 1 }),
    patch_size: num(vj, 'patch_size', w, { int: true, min: 1 }),
    num_channels: num(vj, 'num_channels', w, { int: true, min: 1, default: 3 }),
    hidden_size: num(vj, 'hidden_size', w, { int: true, min: 1 }),
    num_hidden_layers: num(vj, 'num_hidden_layers', w, { int: true, min: 0 }),
    num_attention_heads: num(vj, 'num_attention_heads', w, { int: true, min: 1 }),
    intermediate_size: num(vj, 'intermediate_size', w, { int: true, min: 1 }),
    layer_norm_eps: num(vj, 'layer_norm_eps', w, { min: 0, default: 1e-6 }),
    hidden_act: oneOf(vj, 'hidden_act', ['gelu_pytorch_tanh', 'gelu'] as const, w, 'gelu_pytorch_tanh'),
    use_post_layernorm: bool(vj, 'use_post_layernorm', w, opts.postLayernorm ?? false),
    image_mean: (vj.image_mean as [number, number, number]) ?? [0.5, 0.5, 0.5],
    image_std: (vj.image_std as [number, number, number]) ?? [0.5, 0.5, 0.5],
    stem_channels: stemChannels(vj.stem_channels, w),
  };
  if (vj.resample !== undefined && vj.resample !== null) vision.resample = requireResample(vj.resample, `${w}: resample`);
  // image_size need not be a multiple of patch_size: SigLIP-so400m-patch14-384 runs its stride-14 convolution on
  // 384 pixels, which reads the first 27·14 = 378 and drops the rest.
  if (vision.image_size < vision.patch_size) throw new ValueError(`${w}: image_size ${vision.image_size} is smaller than patch_size ${vision.patch_size}`);
  if (vision.hidden_size % vision.num_attention_heads) throw new ValueError(`${w}: hidden_size ${vision.hidden_size} is not divisible by num_attention_heads ${vision.num_attention_heads}`);
  for (const k of ['image_mean', 'image_std'] as const) {
    const a = vision[k];
    if (!Array.isArray(a) || a.length !== vision.num_channels || a.some((x) => typeof x !== 'number' || !Number.isFinite(x))) {
      throw new ValueError(`${w}: ${k} must be ${vision.num_channels} numbers, got ${JSON.stringify(a)}`);
    }
  }
  const k = vision.stem_channels.length;
  if (k > 0 && vision.patch_size % 2 ** k) {
    throw new ValueError(`${w}: patch_size ${vision.patch_size} is not divisible by 2^${k} (stem_channels ${JSON.stringify(vision.stem_channels)})`);
  }
  if (vision.image_std.some((s) => s === 0)) throw new ValueError(`${w}: image_std must not contain 0, got ${JSON.stringify(vision.image_std)}`);
  return vision;
}

function stemChannels(v: unknown, where: string): number[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || v.length > 8 || v.some((c) => !Number.isInteger(c) || c < 1 || c > 65536)) {
    throw new ValueError(`${where}: stem_channels must be a list of at most 8 positive integers, got ${JSON.stringify(v)?.slice(0, 80)}`);
  }
  return [...(v as number[])];
}

/** Kernel (= stride) of the patch embedding: patch_size, or patch_size / 2^k after a k-layer stem. */
export function patchKernel(v: VisionConfig): number {
  return v.patch_size / 2 ** v.stem_channels.length;
}

/** Patches per side: ⌊image_size / patch_size⌋ (a stride-P convolution drops a remainder, as SigLIP's 384/14 does). */
export function patchGrid(v: VisionConfig): number {
  return Math.floor(v.image_size / v.patch_size);
}

/** Number of visual tokens one image produces: ⌊image_size / patch_size⌋² (729 for SigLIP-so400m-patch14-384). */
export function visualTokensPerImage(v: VisionConfig): number {
  return patchGrid(v) ** 2;
}

/**
 * Hugging Face's vision_feature_layer (an index into hidden_states = [embeddings, after layer 1, …, after layer L])
 * → the number of encoder layers to run. -1 is the last layer's output.
 */
export function layersForFeatureLayer(featureLayer: number, totalLayers: number, where: string): number {
  const n = featureLayer < 0 ? totalLayers + 1 + featureLayer : featureLayer;
  if (!Number.isInteger(featureLayer) || n < 0 || n > totalLayers) {
    throw new ValueError(`${where}: vision_feature_layer ${JSON.stringify(featureLayer)} is outside the tower's hidden states (${totalLayers} layers: -${totalLayers + 1} .. ${totalLayers})`);
  }
  return n;
}
