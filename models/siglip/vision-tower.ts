// The vision tower: a SigLIP-style ViT (models/README.md, "Vision tower"). Pixels [B, 3, S, S] → features
// [B, N, Dv], N = (S/P)² tokens per image in row-major patch order. B is the number of crops/frames.

import { ShapeError, fmtShape } from '../../core/errors.js';
import { costSection } from '../../core/cost.js';
import { tidy } from '../../core/scope.js';
import type { Tensor } from '../../core/tensor.js';
import { add, attention, gelu, layerNorm, linear, patchEmbed, reshape, slice } from '../../ops/index.js';
import { patchGrid, visualTokensPerImage, type VisionConfig } from '../lavi/config.js';
import type { ModelWeights } from '../lavi/weights.js';

export class VisionTower {
  readonly tokensPerImage: number;

  constructor(
    readonly cfg: VisionConfig,
    private readonly w: ModelWeights,
  ) {
    this.tokensPerImage = visualTokensPerImage(cfg);
  }

  /** pixels [B, C, S, S] (already normalised, see image.ts) → features [B, N, Dv]. Cost section 'vision'. */
  forward(pixels: Tensor): Tensor {
    const c = this.cfg;
    const S = c.image_size;
    if (pixels.rank !== 4 || pixels.shape[1] !== c.num_channels || pixels.shape[2] !== S || pixels.shape[3] !== S) {
      throw new ShapeError(`vision tower: pixels must be [B, ${c.num_channels}, ${S}, ${S}], got ${fmtShape(pixels.shape)}`);
    }
    return costSection('vision', () => {
      const w = this.w;
      let h = tidy(() => {
        // A stride-P convolution over S pixels reads only the first ⌊S/P⌋·P of them (SigLIP: 378 of 384).
        const used = patchGrid(c) * c.patch_size;
        const px = used === S ? pixels : slice(pixels, [0, 0, 0, 0], [-1, -1, used, used]);
        const patches = patchEmbed(px, w.get('vision_model.embeddings.patch_embedding.weight'), w.get('vision_model.embeddings.patch_embedding.bias'), c.patch_size);
        return add(patches, w.get('vision_model.embeddings.position_embedding.weight'));
      });
      for (let i = 0; i < c.num_hidden_layers; i++) {
        const next = tidy(() => this.block(h, i));
        h.dispose();
        h = next;
      }
      if (c.use_post_layernorm) {
        const out = layerNorm(h, w.get('vision_model.post_layernorm.weight'), w.get('vision_model.post_layernorm.bias'), c.layer_norm_eps);
        h.dispose();
        h = out;
      }
      return h;
    });
  }

  private block(x: Tensor, i: number): Tensor {
    const c = this.cfg;
    const p = `vision_model.encoder.layers.${i}.`;
    const w = (n: string) => this.w.get(p + n);
    const [B, N, D] = x.shape as [number, number, number];
    const H = c.num_attention_heads;
    const Dh = D / H;
    const n1 = layerNorm(x, w('layer_norm1.weight'), w('layer_norm1.bias'), c.layer_norm_eps);
    const q = reshape(linear(n1, w('self_attn.q_proj.weight'), w('self_attn.q_proj.bias')), [B, N, H, Dh]);
    const k = reshape(linear(n1, w('self_attn.k_proj.weight'), w('self_attn.k_proj.bias')), [B, N, H, Dh]);
    const v = reshape(linear(n1, w('self_attn.v_proj.weight'), w('self_attn.v_proj.bias')), [B, N, H, Dh]);
    const a = reshape(attention(q, k, v, { causal: false, scale: 1 / Math.sqrt(Dh) }), [B, N, D]);
    const h = add(x, linear(a, w('self_attn.out_proj.weight'), w('self_attn.out_proj.bias')));
    const n2 = layerNorm(h, w('layer_norm2.weight'), w('layer_norm2.bias'), c.layer_norm_eps);
    const act = c.hidden_act === 'gelu_pytorch_tanh' ? 'tanh' : 'erf';
    const m = linear(gelu(linear(n2, w('mlp.fc1.weight'), w('mlp.fc1.bias')), act), w('mlp.fc2.weight'), w('mlp.fc2.bias'));
    return add(h, m);
  }
}
