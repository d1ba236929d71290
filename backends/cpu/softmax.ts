// CPU reference softmax over the last axis: subtract the row max before exp so nothing overflows.

import { broadcastStrides } from '../../core/shape.js';
import type { Tensor } from '../../core/tensor.js';

/** Softmax of `n` scores in place (float64). A row that is all −∞ becomes zeros, not NaN. */
export function softmaxRow(s: Float64Array, n: number): void {
  let max = -Infinity;
  for (let i = 0; i < n; i++) if (s[i]! > max) max = s[i]!;
  if (max === -Infinity) {
    s.fill(0, 0, n);
    return;
  }
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const e = Math.exp(s[i]! - max);
    s[i] = e;
    sum += e;
  }
  for (let i = 0; i < n; i++) s[i]! /= sum;
}

export function softmax(out: Tensor, [x, mask]: [Tensor, Tensor | null]): void {
  const X = x.storage as Float32Array;
  const O = out.storage as Float32Array;
  const n = x.shape[x.rank - 1]!;
  const rows = n ? X.length / n : 0;
  const s = new Float64Array(n);
  // The mask is read through broadcast strides: its offset for row r follows the output's row index.
  const M = mask ? (mask.storage as Float32Array) : null;
  const mStrides = mask ? broadcastStrides(mask.shape, x.shape) : [];
  const rowShape = x.shape.slice(0, -1);
  for (let r = 0; r < rows; r++) {
    for (let i = 0; i < n; i++) s[i] = X[r * n + i]!;
    if (M) {
      let off = 0, rem = r;
      for (let d = rowShape.length - 1; d >= 0; d--) {
        off += (rem % rowShape[d]!) * mStrides[d]!;
        rem = Math.floor(rem / rowShape[d]!);
      }
      const last = mStrides[x.rank - 1]!;
      for (let i = 0; i < n; i++) s[i]! += M[off + i * last]!;
    }
    softmaxRow(s, n);
    for (let i = 0; i < n; i++) O[r * n + i] = s[i]!;
  }
}
