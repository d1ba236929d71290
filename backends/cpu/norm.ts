// CPU reference norms. Mean and variance in two passes (no catastrophic cancellation), float64 accumulation.

import type { ModulatedNormAttrs, NormAttrs, NormKind } from '../../core/backend.js';
import type { Tensor } from '../../core/tensor.js';

const f32 = (t: Tensor | null) => (t ? (t.storage as Float32Array) : null);

/** Writes norm(x_row) for one row into `dst` (as float64) and returns nothing; shared by all three kernels. */
function normalizeRow(x: Float32Array, off: number, d: number, kind: NormKind, eps: number, dst: Float64Array): void {
  let mean = 0;
  if (kind === 'layer') {
    for (let i = 0; i < d; i++) mean += x[off + i]!;
    mean /= d;
  }
  let sq = 0;
  for (let i = 0; i < d; i++) {
    const c = x[off + i]! - mean;
    sq += c * c;
  }
  const inv = 1 / Math.sqrt(sq / d + eps);
  for (let i = 0; i < d; i++) dst[i] = (x[off + i]! - mean) * inv;
}

function normRows(out: Tensor, x: Tensor, kind: NormKind, eps: number, gamma: Float32Array | null, beta: Float32Array | null, dGamma: Float32Array | null, dBeta: Float32Array | null): void {
  const X = x.storage as Float32Array;
  const O = out.storage as Float32Array;
  const d = x.shape[x.rank - 1]!;
  const rows = d ? X.length / d : 0;
  const n = new Float64Array(d);
  for (let r = 0; r < rows; r++) {
    const off = r * d;
    normalizeRow(X, off, d, kind, eps, n);
    for (let i = 0; i < d; i++) {
      const g = (gamma ? gamma[i]! : 1) + (dGamma ? dGamma[off + i]! : 0);
      const b = (beta ? beta[i]! : 0) + (dBeta ? dBeta[off + i]! : 0);
      O[off + i] = g * n[i]! + b;
    }
  }
}

export function layerNorm(out: Tensor, [x, gamma, beta]: [Tensor, Tensor | null, Tensor | null], { eps }: NormAttrs): void {
  normRows(out, x, 'layer', eps, f32(gamma), f32(beta), null, null);
}

export function rmsNorm(out: Tensor, [x, gamma]: [Tensor, Tensor | null], { eps }: NormAttrs): void {
  normRows(out, x, 'rms', eps, f32(gamma), null, null, null);
}

export function modulatedNorm(
  out: Tensor,
  [x, gamma, beta, dGamma, dBeta]: [Tensor, Tensor, Tensor | null, Tensor | null, Tensor | null],
  { kind, eps }: ModulatedNormAttrs,
): void {
  normRows(out, x, kind, eps, f32(gamma), f32(beta), f32(dGamma), f32(dBeta));
}
