// Softmax over the last axis.

import { broadcastShapes, sameShape } from '../core/shape.js';
import { ShapeError, fmtShape } from '../core/errors.js';
import type { Tensor } from '../core/tensor.js';
import { F32, requireDType, requireRank } from './check.js';
import { runKernel } from './dispatch.js';

/** softmax(x + mask) over the last axis; mask (additive, f32) broadcasts to x, e.g. [T, S] for [B, H, T, S]. */
export function softmax(x: Tensor, mask?: Tensor | null): Tensor {
  requireDType('softmax', 'x', x, F32);
  requireRank('softmax', 'x', x, 1, 8);
  if (mask) {
    requireDType('softmax', 'mask', mask, F32);
    const b = broadcastShapes(x.shape, mask.shape, 'softmax');
    if (!sameShape(b, x.shape)) throw new ShapeError(`softmax: mask ${fmtShape(mask.shape)} must broadcast to x ${fmtShape(x.shape)} without growing it`);
  }
  return runKernel('softmax', x.shape, 'f32', [x, mask ?? null], {}, { flops: 5 * x.size });
}
