// The vision tower: a SigLIP ViT (models/README.md, "Vision tower"). Pixels [B, 3, S, S] → features [B, N, Dv],
// N = (S/P)² tokens per image in row-major patch order. B is the number of crops/frames. Tensors are looked up
// through the family's declaration (weights.ts), whatever prefix the checkpoint layout gives them.

import { ShapeError, fmtShape } from '../../core/errors.js';
import { costSection } from '../../core/cost.js';
import { tidy } from '../../core/scope.js';
import type { Tensor } from '../../core/tensor.js';
import { add, attention, gelu, layerNorm, linear, patchEmbed, reshape, slice, transpose } from '../../ops/index.js';
import type { ModelWeights } from '../loading/weights.js';
import { patchGrid, patchKernel, visualTokensPerImage, type VisionConfig } from './config.js';
import type { SiglipWeights } from './weights.js';

export class VisionTower {
  readonly tokensPerImage: number;

  constructor(
    readonly cfg: VisionConfig,
    readonly table: SiglipWeights,
    private readonly w: ModelWeights,
  ) {
    this.tokensPerImage = visualTokensPerImage(cfg);
  }

  /** The tower's GELU (the MLPs' and the stem's). */
  private get act(): 'tanh' | 'erf' {
    return this.cfg.hidden_act === 'gelu_pytorch_tanh' ? 'tanh' : 'erf';
  }

  /** pixels [B, C, S, S] (already normalised, see image.ts) → features [B, N, Dv]. Cost section 'vision'. */
  forward(pixels: Tensor): Tensor {
    const c = this.cfg;
    const S = c.image_size;
    if (pixels.rank !== 4 || pixels.shape[1] !== c.num_channels || pixels.shape[2] !== S || pixels.shape[3] !== S) {
      throw new ShapeError(`vision tower: pixels must be [B, ${c.num_channels}, ${S}, ${S}], got ${fmtShape(pixels.shape)}`);
    }
    return costSection('vision', () => {
      const g = (spec: { name: string }) => this.w.get(spec.name);
      const t = this.table;
      let h = tidy(() => {
        // A stride-P convolution over S pixels reads only the first ⌊S/P⌋·P of them (SigLIP: 378 of 384).
        const used = patchGrid(c) * c.patch_size;
        let px = used === S ? pixels : slice(pixels, [0, 0, 0, 0], [-1, -1, used, used]);
        // The stem (ours; none for SigLIP): 2×2 stride-2 convolutions + activation, each a patch embedding whose
        // tokens [B, h·w, C] are put back in image layout [B, C, h, w] for the next.
        let side = used;
        for (const s of t.stem) {
          side /= 2;
          const y = gelu(patchEmbed(px, g(s.weight), g(s.bias), 2), this.act);
          px = reshape(transpose(y, [0, 2, 1]), [px.shape[0]!, s.weight.shape[0]!, side, side]);
        }
        const patches = patchEmbed(px, g(t.patch), g(t.patchBias), patchKernel(c));
        return add(patches, g(t.position));
      });
      for (let i = 0; i < c.num_hidden_layers; i++) {
        const next = tidy(() => this.block(h, i));
        h.dispose();
        h = next;
      }
      if (t.postNorm) {
        const out = layerNorm(h, g(t.postNorm), g(t.postNormBias!), c.layer_norm_eps);
        h.dispose();
        h = out;
      }
      return h;
    });
  }

  private block(x: Tensor, i: number): Tensor {
    const c = this.cfg;
    const l = this.table.layers[i]!;
    const w = (spec: { name: string }) => this.w.get(spec.name);
    const [B, N, D] = x.shape as [number, number, number];
    const H = c.num_attention_heads;
    const Dh = D / H;
    const n1 = layerNorm(x, w(l.norm1), w(l.norm1Bias), c.layer_norm_eps);
    const q = reshape(linear(n1, w(l.q), w(l.qBias)), [B, N, H, Dh]);
    const k = reshape(linear(n1, w(l.k), w(l.kBias)), [B, N, H, Dh]);
    const v = reshape(linear(n1, w(l.v), w(l.vBias)), [B, N, H, Dh]);
    const a = reshape(attention(q, k, v, { causal: false, scale: 1 / Math.sqrt(Dh) }), [B, N, D]);
    const h = add(x, linear(a, w(l.out), w(l.outBias)));
    const n2 = layerNorm(h, w(l.norm2), w(l.norm2Bias), c.layer_norm_eps);
    const m = linear(gelu(linear(n2, w(l.fc1), w(l.fc1Bias)), this.act), w(l.fc2), w(l.fc2Bias));
    return add(h, m);
  }
}
