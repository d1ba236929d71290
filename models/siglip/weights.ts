// The SigLIP vision tower's tensors, declared once (Hugging Face names under a layout-dependent prefix).

import { weightSpec, type WeightSpec } from '../loading/weights.js';
import { patchKernel, visualTokensPerImage, type VisionConfig } from './config.js';

/** SiglipVisionModel and LaVi: 'vision_model.'; LLaVA-OneVision: 'vision_tower.vision_model.' (published llava-hf
 *  files) or 'model.vision_tower.vision_model.' (newer transformers). */
export const SIGLIP_PREFIX = 'vision_model.';

export interface SiglipLayerWeights {
  norm1: WeightSpec;
  norm1Bias: WeightSpec;
  q: WeightSpec;
  qBias: WeightSpec;
  k: WeightSpec;
  kBias: WeightSpec;
  v: WeightSpec;
  vBias: WeightSpec;
  out: WeightSpec;
  outBias: WeightSpec;
  norm2: WeightSpec;
  norm2Bias: WeightSpec;
  fc1: WeightSpec;
  fc1Bias: WeightSpec;
  fc2: WeightSpec;
  fc2Bias: WeightSpec;
}

export interface SiglipWeights {
  /** The convolutional stem (VisionConfig.stem_channels; empty for SigLIP): 2×2 stride-2 kernels and biases. */
  stem: { weight: WeightSpec; bias: WeightSpec }[];
  patch: WeightSpec;
  patchBias: WeightSpec;
  position: WeightSpec;
  layers: SiglipLayerWeights[];
  /** null when the features are taken without the post-layernorm. */
  postNorm: WeightSpec | null;
  postNormBias: WeightSpec | null;
}

export function declareSiglip(cfg: VisionConfig, prefix = SIGLIP_PREFIX): SiglipWeights {
  const D = cfg.hidden_size;
  const I = cfg.intermediate_size;
  const layers: SiglipLayerWeights[] = [];
  for (let i = 0; i < cfg.num_hidden_layers; i++) {
    const p = `${prefix}encoder.layers.${i}.`;
    const m = (n: string, shape: number[]) => weightSpec(`${p}${n}.weight`, shape, 'matrix');
    const vec = (n: string, size: number, what = 'bias') => weightSpec(`${p}${n}.${what}`, [size], 'vector');
    layers.push({
      norm1: vec('layer_norm1', D, 'weight'), norm1Bias: vec('layer_norm1', D),
      q: m('self_attn.q_proj', [D, D]), qBias: vec('self_attn.q_proj', D),
      k: m('self_attn.k_proj', [D, D]), kBias: vec('self_attn.k_proj', D),
      v: m('self_attn.v_proj', [D, D]), vBias: vec('self_attn.v_proj', D),
      out: m('self_attn.out_proj', [D, D]), outBias: vec('self_attn.out_proj', D),
      norm2: vec('layer_norm2', D, 'weight'), norm2Bias: vec('layer_norm2', D),
      fc1: m('mlp.fc1', [I, D]), fc1Bias: vec('mlp.fc1', I),
      fc2: m('mlp.fc2', [D, I]), fc2Bias: vec('mlp.fc2', D),
    });
  }
  const post = cfg.use_post_layernorm;
  const chans = [cfg.num_channels, ...cfg.stem_channels];
  const stem = cfg.stem_channels.map((c, i) => ({
    weight: weightSpec(`${prefix}embeddings.stem.${i}.weight`, [c, chans[i]!, 2, 2], 'conv'),
    bias: weightSpec(`${prefix}embeddings.stem.${i}.bias`, [c], 'vector'),
  }));
  const pk = patchKernel(cfg);
  return {
    stem,
    patch: weightSpec(`${prefix}embeddings.patch_embedding.weight`, [D, chans[chans.length - 1]!, pk, pk], 'conv'),
    patchBias: weightSpec(`${prefix}embeddings.patch_embedding.bias`, [D], 'vector'),
    position: weightSpec(`${prefix}embeddings.position_embedding.weight`, [visualTokensPerImage(cfg), D], 'table'),
    layers,
    postNorm: post ? weightSpec(`${prefix}post_layernorm.weight`, [D], 'vector') : null,
    postNormBias: post ? weightSpec(`${prefix}post_layernorm.bias`, [D], 'vector') : null,
  };
}

/** All specs of the tower, in the order of the encoder. */
export function siglipSpecs(w: SiglipWeights): WeightSpec[] {
  const out: WeightSpec[] = [...w.stem.flatMap((s) => [s.weight, s.bias]), w.patch, w.patchBias, w.position];
  for (const l of w.layers) {
    out.push(l.norm1, l.norm1Bias, l.q, l.qBias, l.k, l.kBias, l.v, l.vBias, l.out, l.outBias, l.norm2, l.norm2Bias, l.fc1, l.fc1Bias, l.fc2, l.fc2Bias);
  }
  if (w.postNorm) out.push(w.postNorm, w.postNormBias!);
  return out;
}

/**
 * Names a SigLIP checkpoint may hold that the features do not use: encoder layers beyond the ones run
 * (LLaVA-OneVision's feature layer), an unused post_layernorm, and the attention-pooling head.
 */
export function siglipTolerated(cfg: VisionConfig, prefix = SIGLIP_PREFIX): ((n: string) => boolean)[] {
  const esc = prefix.replace(/\./g, '\\.');
  const layer = new RegExp(`^${esc}encoder\\.layers\\.(\\d+)\\.`);
  return [
    (n) => {
      const m = layer.exec(n);
      return m !== null && Number(m[1]) >= cfg.num_hidden_layers;
    },
    (n) => !cfg.use_post_layernorm && n.startsWith(`${prefix}post_layernorm.`),
    (n) => n.startsWith(`${prefix}head.`),
  ];
}
