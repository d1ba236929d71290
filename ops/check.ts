// Argument checks shared by the ops. Each error names the op, the argument and the offending shape or value.

import type { DType } from '../core/dtype.js';
import { DTypeError, ShapeError, ValueError, fmtShape } from '../core/errors.js';
import type { Tensor } from '../core/tensor.js';

// These run several times per op (hundreds of times per decoded token), so the passing path allocates nothing.

export function requireDType(op: string, name: string, t: Tensor, allowed: readonly DType[]): void {
  const dt = t.dtype;
  for (let i = 0; i < allowed.length; i++) if (allowed[i] === dt) return;
  throw new DTypeError(`${op}: ${name} has dtype ${t.dtype}, expected ${allowed.join(' or ')}${allowed.includes('f32') && !allowed.includes('f16') && t.dtype !== 'i32' ? ' (cast packed weights first)' : ''}`);
}

/** Rank exactly `lo`, or in [lo, hi]. */
export function requireRank(op: string, name: string, t: Tensor, lo: number, hi = lo): void {
  if (t.rank < lo || t.rank > hi) {
    throw new ShapeError(`${op}: ${name} must have rank ${lo === hi ? lo : `${lo}..${hi}`}, got shape ${fmtShape(t.shape)}`);
  }
}

export function requireShape(op: string, name: string, t: Tensor, shape: readonly number[]): void {
  const s = t.shape;
  let ok = s.length === shape.length;
  for (let i = 0; ok && i < s.length; i++) ok = s[i] === shape[i];
  if (!ok) throw new ShapeError(`${op}: ${name} must have shape ${fmtShape(shape)}, got ${fmtShape(t.shape)}`);
}

/** requireShape(op, name, t, [n]) without the array (gammas, betas and biases of every norm and Linear). */
export function requireShape1(op: string, name: string, t: Tensor, n: number): void {
  if (t.rank !== 1 || t.shape[0] !== n) throw new ShapeError(`${op}: ${name} must have shape ${fmtShape([n])}, got ${fmtShape(t.shape)}`);
}

export function requireInt(op: string, name: string, v: number, min: number, max = Number.MAX_SAFE_INTEGER): void {
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new ValueError(`${op}: ${name} must be an integer in [${min}, ${max === Number.MAX_SAFE_INTEGER ? '∞' : max}], got ${v}`);
  }
}

export function requireFinite(op: string, name: string, v: number): void {
  if (!Number.isFinite(v)) throw new ValueError(`${op}: ${name} must be a finite number, got ${v}`);
}

export const F32: readonly DType[] = ['f32'];
export const FLOAT_STORAGE: readonly DType[] = ['f32', 'f16', 'bf16'];
