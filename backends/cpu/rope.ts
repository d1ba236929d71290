// CPU reference rotary embedding (rotate-half convention), angles computed in float64.

import type { RopeAttrs } from '../../core/backend.js';
import type { Tensor } from '../../core/tensor.js';

export function rope(out: Tensor, [x]: [Tensor], { theta, offset, rotaryDim }: RopeAttrs): void {
  const X = x.storage as Float32Array;
  const O = out.storage as Float32Array;
  const [B, T, H, D] = x.shape as [number, number, number, number];
  const half = rotaryDim / 2;
  const invFreq = new Float64Array(half);
  for (let i = 0; i < half; i++) invFreq[i] = Math.pow(theta, (-2 * i) / rotaryDim);
  const cos = new Float64Array(half), sin = new Float64Array(half);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const pos = offset + t;
      for (let i = 0; i < half; i++) {
        const a = pos * invFreq[i]!;
        cos[i] = Math.cos(a);
        sin[i] = Math.sin(a);
      }
      for (let h = 0; h < H; h++) {
        const off = ((b * T + t) * H + h) * D;
        for (let i = 0; i < half; i++) {
          const x1 = X[off + i]!, x2 = X[off + i + half]!;
          O[off + i] = x1 * cos[i]! - x2 * sin[i]!;
          O[off + i + half] = x2 * cos[i]! + x1 * sin[i]!;
        }
        for (let i = rotaryDim; i < D; i++) O[off + i] = X[off + i]!;
      }
    }
  }
}
