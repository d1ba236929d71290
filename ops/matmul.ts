// Matrix multiply and the Linear layer built on it.

import { ShapeError, fmtShape } from '../core/errors.js';
import type { Tensor } from '../core/tensor.js';
import { F32, FLOAT_STORAGE, requireDType, requireRank, requireShape1 } from './check.js';
import { runKernel } from './dispatch.js';

export interface MatmulOptions {
  /** b is stored [..., N, K] (PyTorch Linear weight layout). */
  transposeB?: boolean;
  /** Added to every output row, shape [N]. */
  bias?: Tensor | null;
}

/**
 * a [..., M, K] · b → [..., M, N]. b is [K, N] / [N, K] (shared by all batches) or has a's batch dims.
 * b may be packed f16/bf16 (weights); a and bias are f32.
 */
export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  const op = 'matmul';
  const transposeB = opts.transposeB ?? false;
  const bias = opts.bias ?? null;
  requireRank(op, 'a', a, 2, 8);
  requireRank(op, 'b', b, 2, 8);
  requireDType(op, 'a', a, F32);
  requireDType(op, 'b', b, FLOAT_STORAGE);
  const rank = a.rank;
  const M = a.shape[rank - 2]!;
  const K = a.shape[rank - 1]!;
  const bK = b.shape[b.rank - (transposeB ? 1 : 2)]!;
  const N = b.shape[b.rank - (transposeB ? 2 : 1)]!;
  if (bK !== K) {
    throw new ShapeError(`${op}: inner dimensions differ: a ${fmtShape(a.shape)} has K=${K}, b ${fmtShape(b.shape)}${transposeB ? ' (transposed)' : ''} has K=${bK}`);
  }
  // Batch dims and the output shape in plain loops: this runs for every Linear, seven per decoder layer and token.
  if (b.rank > 2) {
    let same = b.rank === rank;
    for (let i = 0; same && i < rank - 2; i++) same = b.shape[i] === a.shape[i];
    if (!same) throw new ShapeError(`${op}: batch dims of b ${fmtShape(b.shape)} must be absent or equal to a's ${fmtShape(a.shape)}`);
  }
  if (bias) {
    requireDType(op, 'bias', bias, F32);
    requireShape1(op, 'bias', bias, N);
  }
  let batches = 1;
  const outShape = new Array<number>(rank);
  for (let i = 0; i < rank - 2; i++) batches *= outShape[i] = a.shape[i]!;
  outShape[rank - 2] = M;
  outShape[rank - 1] = N;
  return runKernel(op, outShape, 'f32', [a, b, bias], { transposeB }, { flops: 2 * batches * M * N * K + (bias ? batches * M * N : 0) });
}

/** y = x · Wᵀ + b with W stored [out, in] like PyTorch's nn.Linear. */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  if (weight.rank !== 2) throw new ShapeError(`linear: weight must be [out, in], got ${fmtShape(weight.shape)}`);
  return matmul(x, weight, { transposeB: true, bias: bias ?? null });
}
