// Elementwise ops: broadcasting binary arithmetic, activations, scale, SwiGLU.

import type { BinaryOp, UnaryOp } from '../core/backend.js';
import { broadcastShapes, sameShape } from '../core/shape.js';
import { ShapeError, ValueError, fmtShape } from '../core/errors.js';
import type { Tensor } from '../core/tensor.js';
import { F32, requireDType, requireFinite } from './check.js';
import { runKernel } from './dispatch.js';

function binary(op: BinaryOp, a: Tensor, b: Tensor): Tensor {
  requireDType(op, 'a', a, F32);
  requireDType(op, 'b', b, F32);
  // Equal shapes (the residual adds) need no broadcast: the output shares a's frozen shape.
  const shape = sameShape(a.shape, b.shape) ? a.shape : broadcastShapes(a.shape, b.shape, op);
  let n = 1;
  for (let i = 0; i < shape.length; i++) n *= shape[i]!;
  return runKernel('binary', shape, 'f32', [a, b], { op }, { flops: n });
}

/** a + b with NumPy broadcasting. */
export const add = (a: Tensor, b: Tensor): Tensor => binary('add', a, b);
/** a − b with NumPy broadcasting. */
export const sub = (a: Tensor, b: Tensor): Tensor => binary('sub', a, b);
/** a ⊙ b with NumPy broadcasting. */
export const mul = (a: Tensor, b: Tensor): Tensor => binary('mul', a, b);
/** a / b with NumPy broadcasting. */
export const div = (a: Tensor, b: Tensor): Tensor => binary('div', a, b);

/** Rough FLOPs per element, for cost reports (a transcendental counts as a few FLOPs). */
const UNARY_FLOPS: Record<UnaryOp, number> = { gelu_tanh: 8, gelu_erf: 8, silu: 4, relu: 1, tanh: 4, exp: 2, neg: 1, sqrt: 1, rsqrt: 2 };

export function unary(op: UnaryOp, x: Tensor): Tensor {
  if (!Object.prototype.hasOwnProperty.call(UNARY_FLOPS, op)) {
    throw new ValueError(`unary: op must be one of ${Object.keys(UNARY_FLOPS).join(', ')}, got ${JSON.stringify(op)?.slice(0, 40)}`);
  }
  requireDType(op, 'x', x, F32);
  return runKernel('unary', x.shape, 'f32', [x], { op }, { flops: UNARY_FLOPS[op] * x.size });
}

/** GELU; 'tanh' is the approximation SigLIP and GPT-2 use, 'erf' the exact form. */
export const gelu = (x: Tensor, approximate: 'tanh' | 'erf' = 'tanh'): Tensor => unary(approximate === 'tanh' ? 'gelu_tanh' : 'gelu_erf', x);
export const silu = (x: Tensor): Tensor => unary('silu', x);
export const relu = (x: Tensor): Tensor => unary('relu', x);

/** x · scale + shift. */
export function scale(x: Tensor, s: number, shift = 0): Tensor {
  requireDType('scale', 'x', x, F32);
  requireFinite('scale', 'scale', s);
  requireFinite('scale', 'shift', shift);
  return runKernel('scale', x.shape, 'f32', [x], { scale: s, shift }, { flops: 2 * x.size });
}

/** silu(gate) ⊙ up, the gated MLP of Llama/Qwen. */
export function swiglu(gate: Tensor, up: Tensor): Tensor {
  requireDType('swiglu', 'gate', gate, F32);
  requireDType('swiglu', 'up', up, F32);
  if (!sameShape(gate.shape, up.shape)) throw new ShapeError(`swiglu: gate ${fmtShape(gate.shape)} and up ${fmtShape(up.shape)} differ`);
  return runKernel('swiglu', gate.shape, 'f32', [gate, up], {}, { flops: 5 * gate.size });
}
