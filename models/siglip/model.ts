// SiglipVisionModel: a Hugging Face SigLIP vision tower folder (model_type "siglip_vision_model", or the vision
// half of a "siglip" checkpoint) → image features. `features` is Hugging Face's last_hidden_state: the encoder
// output after post_layernorm. The attention-pooling head (pooler_output) is not computed; its tensors are
// accepted and skipped.
//
//   const m = await SiglipVisionModel.load(dir, backend);
//   const f = m.features(pixels);        // [B, (S/P)², hidden]

import type { Backend } from '../../core/backend.js';
import type { Tensor } from '../../core/tensor.js';
import { tensor } from '../../ops/index.js';
import type { PixelBatch } from '../image/preprocess.js';
import { readJsonFile, type Json } from '../loading/json-fields.js';
import { loadSpecs, type ModelWeights, type UploadOptions } from '../loading/weights.js';
import { parseVisionConfig, type VisionConfig } from './config.js';
import { VisionTower } from './vision-tower.js';
import { declareSiglip, siglipSpecs, siglipTolerated } from './weights.js';

/** The vision section of a SigLIP config.json (a SiglipVisionModel's own fields, or a SiglipModel's vision_config). */
export function siglipVisionSection(raw: Json): Json {
  return raw.model_type === 'siglip' && raw.vision_config && typeof raw.vision_config === 'object' ? (raw.vision_config as Json) : raw;
}

/** Reads a SigLIP folder's vision config, with image_mean/std from its preprocessor_config.json when present. */
export async function readSiglipConfig(dir: string, opts: { postLayernorm?: boolean } = {}): Promise<VisionConfig> {
  const path = `${dir}/config.json`;
  const raw = await readJsonFile(path);
  const section = { ...siglipVisionSection(raw) };
  const pre = await readJsonFile(`${dir}/preprocessor_config.json`, { optional: true });
  if (pre) {
    if (pre.image_mean !== undefined) section.image_mean = pre.image_mean;
    if (pre.image_std !== undefined) section.image_std = pre.image_std;
  }
  return parseVisionConfig(section, path, { postLayernorm: opts.postLayernorm ?? true });
}

export class SiglipVisionModel {
  readonly tower: VisionTower;

  constructor(
    readonly config: VisionConfig,
    readonly weights: ModelWeights,
    readonly backend: Backend,
  ) {
    this.tower = new VisionTower(config, declareSiglip(config), weights);
  }

  static async load(dir: string, backend: Backend, opts: UploadOptions = {}): Promise<SiglipVisionModel> {
    const config = await readSiglipConfig(dir);
    const table = declareSiglip(config);
    const check = { specs: siglipSpecs(table), tolerated: siglipTolerated(config), describe: `SigLIP vision tower, ${config.num_hidden_layers} layers` };
    const weights = await loadSpecs([dir], check, backend, opts);
    return new SiglipVisionModel(config, weights, backend);
  }

  /** Normalised pixels [B, C, S, S] (a host batch or a tensor on this backend) → last_hidden_state [B, N, D]. */
  features(pixels: PixelBatch | Tensor): Tensor {
    const px = 'data' in pixels && !('backend' in pixels) ? tensor(this.backend, (pixels as PixelBatch).data, (pixels as PixelBatch).shape) : (pixels as Tensor);
    try {
      return this.tower.forward(px);
    } finally {
      if (px !== pixels) px.dispose();
    }
  }

  dispose(): void {
    this.weights.dispose();
  }
}
