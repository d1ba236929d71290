// Rotary position embedding (Hugging Face / Qwen2 "rotate half" convention).

import { ValueError } from '../core/errors.js';
import type { Tensor } from '../core/tensor.js';
import { F32, requireDType, requireFinite, requireInt, requireRank } from './check.js';
import { runKernel } from './dispatch.js';

export interface RopeOptions {
  /** Base of the frequency ladder (Qwen2: 1e6; Llama: 1e4). */
  theta: number;
  /** Position of the first token (the number of tokens already in the KV cache). */
  offset?: number;
  /** Rotate only the first rotaryDim dims of each head (default: all). */
  rotaryDim?: number;
}

/** x [B, T, H, D] → same shape, token t rotated by angle (offset + t) · θ^(−2i/rotaryDim). */
export function rope(x: Tensor, opts: RopeOptions): Tensor {
  const op = 'rope';
  requireDType(op, 'x', x, F32);
  requireRank(op, 'x', x, 4);
  const D = x.shape[3]!;
  const rotaryDim = opts.rotaryDim ?? D;
  const offset = opts.offset ?? 0;
  requireFinite(op, 'theta', opts.theta);
  if (opts.theta <= 0) throw new ValueError(`${op}: theta must be > 0, got ${opts.theta}`);
  requireInt(op, 'offset', offset, 0);
  requireInt(op, 'rotaryDim', rotaryDim, 2, D);
  if (rotaryDim % 2) throw new ValueError(`${op}: rotaryDim must be even, got ${rotaryDim}`);
  return runKernel(op, x.shape, 'f32', [x], { theta: opts.theta, offset, rotaryDim }, { flops: 3 * x.size });
}
