// The projector (models/README.md, "Projector"): V = linear_2(GELU_erf(linear_1(features))), and the video
// token pooling with frame embeddings.

import { ShapeError, ValueError, fmtShape } from '../../core/errors.js';
import { costSection } from '../../core/cost.js';
import { tidy } from '../../core/scope.js';
import type { Tensor } from '../../core/tensor.js';
import { add, gelu, linear, reshape, resizeGrid, sliceAxis } from '../../ops/index.js';
import type { ModelConfig } from './config.js';
import type { ModelWeights } from '../loading/weights.js';
import type { ProjectorWeights } from './weights.js';

export class Projector {
  constructor(
    readonly cfg: ModelConfig,
    readonly table: ProjectorWeights,
    private readonly w: ModelWeights,
  ) {}

  /** features [B, N, Dv] → [B, N, d] (per token; B crops/frames stay separate). Cost section 'projector'. */
  forward(features: Tensor): Tensor {
    if (features.rank !== 3 || features.shape[2] !== this.cfg.vision_config.hidden_size) {
      throw new ShapeError(`projector: features must be [B, N, ${this.cfg.vision_config.hidden_size}], got ${fmtShape(features.shape)}`);
    }
    return costSection('projector', () =>
      tidy(() => {
        const t = this.table;
        const h = gelu(linear(features, this.w.get(t.linear1.name), this.w.get(t.linear1Bias.name)), 'erf');
        return linear(h, this.w.get(t.linear2.name), this.w.get(t.linear2Bias.name));
      }),
    );
  }

  /**
   * Video [chosen]: projected frames [F, h·w, d] → each grid resized bilinearly to ⌈h/pool⌉×⌈w/pool⌉, plus
   * lavi.frame_embedding[f] when video_config.frame_embedding, concatenated in frame order → [1, F·h'·w', d].
   */
  poolFrames(projected: Tensor, gridH: number, gridW: number): Tensor {
    const v = this.cfg.video_config;
    const [F, , d] = projected.shape as [number, number, number];
    if (F > v.max_frames) throw new ValueError(`video: ${F} frames exceed video_config.max_frames ${v.max_frames}`);
    const oh = Math.ceil(gridH / v.pool);
    const ow = Math.ceil(gridW / v.pool);
    return costSection('projector', () =>
      tidy(() => {
        let x = v.pool === 1 ? projected : resizeGrid(projected, gridH, gridW, oh, ow);
        if (v.frame_embedding) {
          const name = this.table.frameEmbedding.name;
          const table = this.w.maybe(name);
          if (!table) throw new ValueError(`video: video_config.frame_embedding is on but the weights have no ${name}`);
          x = add(x, reshape(sliceAxis(table, 0, 0, F), [F, 1, d]));
        }
        return reshape(x, [1, F * oh * ow, d]);
      }),
    );
  }
}
