// Normalisations: LayerNorm, RMSNorm, and the modulated norm at the heart of LaVi (ViLN).

import type { NormKind } from '../core/backend.js';
import type { Tensor } from '../core/tensor.js';
import { F32, requireDType, requireFinite, requireRank, requireShape, requireShape1 } from './check.js';
import { runKernel } from './dispatch.js';
import { ValueError } from '../core/errors.js';

function lastDim(op: string, x: Tensor): number {
  requireDType(op, 'x', x, F32);
  requireRank(op, 'x', x, 1, 8);
  return x.shape[x.rank - 1]!;
}

function checkEps(op: string, eps: number): void {
  requireFinite(op, 'eps', eps);
  if (eps < 0) throw new ValueError(`${op}: eps must be ≥ 0, got ${eps}`);
}

/** (x − mean) / sqrt(var + eps) · γ + β over the last axis (biased variance, two-pass). */
export function layerNorm(x: Tensor, gamma: Tensor | null, beta: Tensor | null, eps = 1e-5): Tensor {
  const d = lastDim('layerNorm', x);
  checkEps('layerNorm', eps);
  if (gamma) requireDType('layerNorm', 'gamma', gamma, F32), requireShape1('layerNorm', 'gamma', gamma, d);
  if (beta) requireDType('layerNorm', 'beta', beta, F32), requireShape1('layerNorm', 'beta', beta, d);
  return runKernel('layerNorm', x.shape, 'f32', [x, gamma, beta], { eps }, { flops: 8 * x.size });
}

/** x / sqrt(mean(x²) + eps) · γ over the last axis. */
export function rmsNorm(x: Tensor, gamma: Tensor | null, eps = 1e-6): Tensor {
  const d = lastDim('rmsNorm', x);
  checkEps('rmsNorm', eps);
  if (gamma) requireDType('rmsNorm', 'gamma', gamma, F32), requireShape1('rmsNorm', 'gamma', gamma, d);
  return runKernel('rmsNorm', x.shape, 'f32', [x, gamma], { eps }, { flops: 4 * x.size });
}

export interface ModulatedNormOptions {
  kind: NormKind;
  eps: number;
  beta?: Tensor | null;
  /** Per-token scale delta Δγ, shaped like x. */
  dGamma?: Tensor | null;
  /** Per-token shift delta Δβ, shaped like x. */
  dBeta?: Tensor | null;
}

/**
 * ViLN: (γ + Δγ_t) ⊙ norm(x_t) + (β + Δβ_t), fused in one pass. With Δγ = Δβ = 0 it is exactly the base norm
 * (so a LaVi with an untrained conditioner is the base LLM).
 */
export function modulatedNorm(x: Tensor, gamma: Tensor, opts: ModulatedNormOptions): Tensor {
  const op = 'modulatedNorm';
  const d = lastDim(op, x);
  checkEps(op, opts.eps);
  if (opts.kind !== 'layer' && opts.kind !== 'rms') throw new ValueError(`${op}: kind must be 'layer' or 'rms', got ${String(opts.kind)}`);
  requireDType(op, 'gamma', gamma, F32);
  requireShape1(op, 'gamma', gamma, d);
  const beta = opts.beta ?? null;
  const dGamma = opts.dGamma ?? null;
  const dBeta = opts.dBeta ?? null;
  if (beta) requireDType(op, 'beta', beta, F32), requireShape1(op, 'beta', beta, d);
  if (dGamma) requireDType(op, 'dGamma', dGamma, F32), requireShape(op, 'dGamma', dGamma, x.shape);
  if (dBeta) requireDType(op, 'dBeta', dBeta, F32), requireShape(op, 'dBeta', dBeta, x.shape);
  return runKernel(op, x.shape, 'f32', [x, gamma, beta, dGamma, dBeta], { kind: opts.kind, eps: opts.eps }, { flops: 10 * x.size });
}
