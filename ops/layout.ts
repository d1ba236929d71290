// Layout ops: reshape (a view), transpose, slice, concat, write-into-slice (KV caches), copy.

import { ShapeError, ValueError, fmtShape } from '../core/errors.js';
import { normalizeAxis, sizeOf } from '../core/shape.js';
import type { Tensor } from '../core/tensor.js';
import { requireInt } from './check.js';
import { backendOf, runInPlace, runKernel } from './dispatch.js';

/** Same storage, new shape; one dimension may be -1 (inferred). Free: no kernel runs. */
export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  x.assertAlive('reshape');
  const infer = shape.indexOf(-1);
  // Without a -1 the shape is used as given (the tensor keeps a frozen copy): model code reshapes every
  // projection, so this path makes no array of its own.
  let out: readonly number[] = shape;
  if (infer >= 0) {
    if (infer !== shape.lastIndexOf(-1)) throw new ShapeError(`reshape: at most one -1 allowed, got ${fmtShape(shape)}`);
    const known = sizeOf(shape.filter((_, i) => i !== infer), 'reshape');
    if (known === 0 || x.size % known !== 0) throw new ShapeError(`reshape: cannot reshape ${fmtShape(x.shape)} to ${fmtShape(shape)}`);
    const inferred = [...shape];
    inferred[infer] = x.size / known;
    out = inferred;
  }
  if (sizeOf(out, 'reshape') !== x.size) throw new ShapeError(`reshape: cannot reshape ${fmtShape(x.shape)} (${x.size} elements) to ${fmtShape(shape)}`);
  return x.view(out);
}

/** Permutes axes: out.shape[i] = x.shape[perm[i]]. */
export function transpose(x: Tensor, perm: readonly number[]): Tensor {
  const seen = new Set(perm);
  if (perm.length !== x.rank || seen.size !== x.rank || perm.some((p) => !Number.isInteger(p) || p < 0 || p >= x.rank)) {
    throw new ShapeError(`transpose: perm ${fmtShape(perm)} is not a permutation of ${x.rank} axes (x ${fmtShape(x.shape)})`);
  }
  const shape = perm.map((p) => x.shape[p]!);
  return runKernel('transpose', shape, x.dtype, [x], { perm: [...perm] }, { flops: 0 });
}

/** x[begin[i] : begin[i] + size[i]] on every axis; a size of -1 means "to the end". */
export function slice(x: Tensor, begin: readonly number[], size: readonly number[]): Tensor {
  if (begin.length !== x.rank || size.length !== x.rank) {
    throw new ShapeError(`slice: begin ${fmtShape(begin)} and size ${fmtShape(size)} must have one entry per axis of x ${fmtShape(x.shape)}`);
  }
  const shape = size.map((s, i) => (s === -1 ? x.shape[i]! - begin[i]! : s));
  return sliceOwned(x, [...begin], shape);
}

/** x[start:end] along one axis. */
export function sliceAxis(x: Tensor, axis: number, start: number, end: number): Tensor {
  const a = normalizeAxis(axis, x.rank, 'slice');
  // Built in loops and handed over without the copies slice() makes of its caller's arrays (the conditioners
  // split their deltas with two of these per norm and token).
  const begin = new Array<number>(x.rank);
  const shape = new Array<number>(x.rank);
  for (let i = 0; i < x.rank; i++) {
    begin[i] = i === a ? start : 0;
    shape[i] = i === a ? end - start : x.shape[i]!;
  }
  return sliceOwned(x, begin, shape);
}

/** Checks and runs a slice whose `begin` and `shape` (sizes resolved) are this module's own arrays. */
function sliceOwned(x: Tensor, begin: number[], shape: number[]): Tensor {
  for (let i = 0; i < x.rank; i++) {
    if (!Number.isInteger(begin[i]) || !Number.isInteger(shape[i]) || begin[i]! < 0 || shape[i]! < 0 || begin[i]! + shape[i]! > x.shape[i]!) {
      throw new ShapeError(`slice: axis ${i}: [${begin[i]}, ${begin[i]! + shape[i]!}) is outside 0..${x.shape[i]} of x ${fmtShape(x.shape)}`);
    }
  }
  return runKernel('slice', shape, x.dtype, [x], { begin }, { flops: 0, bytesRead: 0 });
}

/** Joins tensors along `axis`; every other dimension must match. */
export function concat(xs: readonly Tensor[], axis: number): Tensor {
  if (xs.length === 0) throw new ValueError('concat: needs at least one tensor');
  backendOf('concat', xs);
  const first = xs[0]!;
  const a = normalizeAxis(axis, first.rank, 'concat');
  let total = 0;
  for (const [i, t] of xs.entries()) {
    if (t.dtype !== first.dtype) throw new ShapeError(`concat: input ${i} has dtype ${t.dtype}, input 0 has ${first.dtype}`);
    if (t.rank !== first.rank || t.shape.some((d, j) => j !== a && d !== first.shape[j])) {
      throw new ShapeError(`concat: input ${i} ${fmtShape(t.shape)} does not match input 0 ${fmtShape(first.shape)} outside axis ${a}`);
    }
    total += t.shape[a]!;
  }
  const shape = first.shape.map((d, j) => (j === a ? total : d));
  return runKernel('concat', shape, first.dtype, [...xs], { axis: a }, { flops: 0 });
}

/** In place: dst[..., start : start + src.shape[axis], ...] = src. Returns dst. Used to append to KV caches. */
export function writeSlice(dst: Tensor, src: Tensor, axis: number, start: number): Tensor {
  const a = normalizeAxis(axis, dst.rank, 'writeSlice');
  if (src.dtype !== dst.dtype) throw new ShapeError(`writeSlice: src dtype ${src.dtype} ≠ dst dtype ${dst.dtype}`);
  let match = src.rank === dst.rank;
  for (let j = 0; match && j < src.rank; j++) match = j === a || src.shape[j] === dst.shape[j];
  if (!match) throw new ShapeError(`writeSlice: src ${fmtShape(src.shape)} does not match dst ${fmtShape(dst.shape)} outside axis ${a}`);
  requireInt('writeSlice', 'start', start, 0, dst.shape[a]! - src.shape[a]!);
  return runInPlace('writeSlice', dst, [src], { axis: a, start }, { flops: 0 });
}

/** A fresh copy with its own storage. */
export function copy(x: Tensor): Tensor {
  return runKernel('copy', x.shape, x.dtype, [x], {}, { flops: 0 });
}
