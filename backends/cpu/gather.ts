// CPU reference embedding gather, argmax, cast.

import { convertHost, widenToF32 } from '../../core/dtype.js';
import type { Tensor } from '../../core/tensor.js';

export function embedding(out: Tensor, [table, ids]: [Tensor, Tensor]): void {
  const O = out.storage as Float32Array;
  const I = ids.storage as Int32Array;
  const [V, D] = table.shape as [number, number];
  for (let t = 0; t < I.length; t++) {
    const id = I[t]!;
    if (id < 0 || id >= V) {
      O.fill(0, t * D, (t + 1) * D);
      continue;
    }
    const s = table.storage as Float32Array | Uint16Array;
    const row = s.subarray(id * D, (id + 1) * D);
    O.set(table.dtype === 'f32' ? (row as Float32Array) : widenToF32(row as Uint16Array, table.dtype as 'f16' | 'bf16'), t * D);
  }
}

/** Index of the largest value of each of `rows` rows of n floats (X at x0) into O at o0; the first one on ties,
 *  NaN counts as largest. Plain arrays and offsets, so the wasm backend runs it on its memory. */
export function argmaxRows(O: Int32Array, o0: number, X: Float32Array, x0: number, rows: number, n: number): void {
  for (let r = 0; r < rows; r++) {
    let best = 0;
    let bestV = -Infinity;
    const base = x0 + r * n;
    for (let i = 0; i < n; i++) {
      const v = X[base + i]!;
      if (Number.isNaN(v)) {
        best = i;
        break;
      }
      if (v > bestV) {
        bestV = v;
        best = i;
      }
    }
    O[o0 + r] = best;
  }
}

export function argmax(out: Tensor, [x]: [Tensor]): void {
  const O = out.storage as Int32Array;
  const X = x.dtype === 'f32' ? (x.storage as Float32Array) : widenToF32(x.storage as Uint16Array, x.dtype as 'f16' | 'bf16');
  argmaxRows(O, 0, X, 0, O.length, x.shape[x.rank - 1]!);
}

export function cast(out: Tensor, [x]: [Tensor]): void {
  (out.storage as Float32Array | Uint16Array | Int32Array).set(convertHost(x.storage as Float32Array, x.dtype, out.dtype));
}
