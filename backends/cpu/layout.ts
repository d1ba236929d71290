// CPU reference layout kernels. Each treats the tensor as [outer, axis, inner] blocks and copies contiguous runs.

import type { ConcatAttrs, SliceAttrs, TransposeAttrs, WriteSliceAttrs } from '../../core/backend.js';
import { stridesOf } from '../../core/shape.js';
import type { Tensor } from '../../core/tensor.js';

type Arr = Float32Array | Uint16Array | Int32Array;
const arr = (t: Tensor) => t.storage as Arr;

export function transpose(out: Tensor, [x]: [Tensor], { perm }: TransposeAttrs): void {
  const X = arr(x), O = arr(out);
  const rank = out.rank;
  const xs = stridesOf(x.shape);
  const step = perm.map((p) => xs[p]!); // input stride for each output axis
  const shape = out.shape;
  const idx = new Array<number>(rank).fill(0);
  let src = 0;
  for (let i = 0; i < O.length; i++) {
    O[i] = X[src]!;
    for (let d = rank - 1; d >= 0; d--) {
      idx[d]!++;
      src += step[d]!;
      if (idx[d]! < shape[d]!) break;
      src -= step[d]! * shape[d]!;
      idx[d] = 0;
    }
  }
}

export function slice(out: Tensor, [x]: [Tensor], { begin }: SliceAttrs): void {
  const X = arr(x), O = arr(out);
  const rank = out.rank;
  if (O.length === 0) return;
  const xs = stridesOf(x.shape);
  const shape = out.shape;
  // Copy whole innermost rows at a time.
  const inner = shape[rank - 1] ?? 1;
  const rows = O.length / inner;
  const idx = new Array<number>(Math.max(rank - 1, 0)).fill(0);
  for (let r = 0; r < rows; r++) {
    let src = rank ? begin[rank - 1]! : 0;
    for (let d = 0; d < rank - 1; d++) src += (begin[d]! + idx[d]!) * xs[d]!;
    O.set(X.subarray(src, src + inner), r * inner);
    for (let d = rank - 2; d >= 0; d--) {
      if (++idx[d]! < shape[d]!) break;
      idx[d] = 0;
    }
  }
}

/** [outer, axis, inner] view of a shape around `axis`. */
function split(shape: readonly number[], axis: number): [number, number, number] {
  const outer = shape.slice(0, axis).reduce((a, b) => a * b, 1);
  const inner = shape.slice(axis + 1).reduce((a, b) => a * b, 1);
  return [outer, shape[axis]!, inner];
}

export function concat(out: Tensor, xs: Tensor[], { axis }: ConcatAttrs): void {
  const O = arr(out);
  const [outer, total, inner] = split(out.shape, axis);
  let at = 0;
  for (const x of xs) {
    const X = arr(x);
    const len = x.shape[axis]! * inner;
    for (let o = 0; o < outer; o++) O.set(X.subarray(o * len, (o + 1) * len), o * total * inner + at * inner);
    at += x.shape[axis]!;
  }
}

export function writeSlice(dst: Tensor, [src]: [Tensor], { axis, start }: WriteSliceAttrs): void {
  const O = arr(dst), S = arr(src);
  const [outer, total, inner] = split(dst.shape, axis);
  const len = src.shape[axis]! * inner;
  for (let o = 0; o < outer; o++) O.set(S.subarray(o * len, (o + 1) * len), (o * total + start) * inner);
}

export function copy(out: Tensor, [x]: [Tensor]): void {
  arr(out).set(arr(x));
}
