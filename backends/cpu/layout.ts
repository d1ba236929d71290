// CPU reference layout kernels. Each is a plain function over typed arrays and element offsets, so that a backend
// whose tensors live in one big memory (wasm: views of its shared WebAssembly.Memory) runs the same code; the
// kernels below apply them to whole CPU tensors. A tensor is treated as [outer, axis, inner] blocks and copied in
// contiguous runs.

import type { ConcatAttrs, SliceAttrs, TransposeAttrs, WriteSliceAttrs } from '../../core/backend.js';
import { stridesOf } from '../../core/shape.js';
import type { Tensor } from '../../core/tensor.js';

/** Storage viewed as elements: any typed array of the element size (f32 data may be moved as Int32Array). */
export type Elements = Float32Array | Uint16Array | Int32Array | Uint8Array;
const arr = (t: Tensor) => t.storage as Elements;

/** O[o, o+n) = X[x, x+n); O and X may be the same array (then the ranges must not overlap). */
export function copyRun(O: Elements, o: number, X: Elements, x: number, n: number): void {
  if (n <= 0) return;
  if (O === X) O.copyWithin(o, x, x + n);
  else O.set(X.subarray(x, x + n), o);
}

/** out (outShape, at O[o0]) = x (xShape, at X[x0]) with axes permuted: outShape[i] = xShape[perm[i]]. */
export function transposeElements(O: Elements, o0: number, X: Elements, x0: number, xShape: readonly number[], outShape: readonly number[], perm: readonly number[]): void {
  const rank = outShape.length;
  let n = 1;
  for (const d of outShape) n *= d;
  if (n === 0) return;
  const xs = stridesOf(xShape);
  const step = perm.map((p) => xs[p]!); // input stride for each output axis
  const inner = rank ? outShape[rank - 1]! : 1, innerStep = rank ? step[rank - 1]! : 1;
  const idx = new Array<number>(rank).fill(0);
  let src = 0;
  for (let i = 0; i < n; i += inner) {
    // The innermost axis as one tight loop, the outer ones as an odometer.
    for (let j = 0, s = x0 + src; j < inner; j++, s += innerStep) O[o0 + i + j] = X[s]!;
    for (let d = rank - 2; d >= 0; d--) {
      idx[d]!++;
      src += step[d]!;
      if (idx[d]! < outShape[d]!) break;
      src -= step[d]! * outShape[d]!;
      idx[d] = 0;
    }
  }
}

/** out (outShape, at O[o0]) = x[begin[0] : begin[0]+outShape[0], ...] (x: xShape at X[x0]). */
export function sliceElements(O: Elements, o0: number, X: Elements, x0: number, xShape: readonly number[], outShape: readonly number[], begin: readonly number[]): void {
  const rank = outShape.length;
  let n = 1;
  for (const d of outShape) n *= d;
  if (n === 0) return;
  // Copy whole innermost rows at a time.
  const inner = rank ? outShape[rank - 1]! : 1;
  const rows = n / inner;
  if (rows === 1) {
    // One run (a decode token's slice, e.g. a conditioner's Δγ or Δβ): its offset, without stride arrays.
    let src = 0;
    for (let d = rank - 1, stride = 1; d >= 0; stride *= xShape[d]!, d--) src += begin[d]! * stride;
    return copyRun(O, o0, X, x0 + src, inner);
  }
  const xs = stridesOf(xShape);
  const idx = new Array<number>(Math.max(rank - 1, 0)).fill(0);
  for (let r = 0; r < rows; r++) {
    let src = rank ? begin[rank - 1]! : 0;
    for (let d = 0; d < rank - 1; d++) src += (begin[d]! + idx[d]!) * xs[d]!;
    copyRun(O, o0 + r * inner, X, x0 + src, inner);
    for (let d = rank - 2; d >= 0; d--) {
      if (++idx[d]! < outShape[d]!) break;
      idx[d] = 0;
    }
  }
}

/** [outer, axis, inner] view of a shape around `axis`. */
export function splitAxis(shape: readonly number[], axis: number): [number, number, number] {
  let outer = 1, inner = 1;
  for (let i = 0; i < axis; i++) outer *= shape[i]!;
  for (let i = axis + 1; i < shape.length; i++) inner *= shape[i]!;
  return [outer, shape[axis]!, inner];
}

/** One input of a concatenation: its elements, offset and length along the axis. */
export interface ConcatPart {
  X: Elements;
  x0: number;
  length: number;
}

/** out (outShape, at O[o0]) = the parts concatenated along `axis`. */
export function concatElements(O: Elements, o0: number, outShape: readonly number[], axis: number, parts: readonly ConcatPart[]): void {
  const [outer, total, inner] = splitAxis(outShape, axis);
  let at = 0;
  for (const p of parts) {
    const len = p.length * inner;
    for (let o = 0; o < outer; o++) copyRun(O, o0 + (o * total + at) * inner, p.X, p.x0 + o * len, len);
    at += p.length;
  }
}

/** In place: dst (dstShape, at O[o0])[..., start : start+srcLength, ...] = src (at S[s0]) along `axis`. */
export function writeSliceElements(O: Elements, o0: number, dstShape: readonly number[], S: Elements, s0: number, srcLength: number, axis: number, start: number): void {
  const [outer, total, inner] = splitAxis(dstShape, axis);
  const len = srcLength * inner;
  for (let o = 0; o < outer; o++) copyRun(O, o0 + (o * total + start) * inner, S, s0 + o * len, len);
}

export function transpose(out: Tensor, [x]: [Tensor], { perm }: TransposeAttrs): void {
  transposeElements(arr(out), 0, arr(x), 0, x.shape, out.shape, perm);
}

export function slice(out: Tensor, [x]: [Tensor], { begin }: SliceAttrs): void {
  sliceElements(arr(out), 0, arr(x), 0, x.shape, out.shape, begin);
}

export function concat(out: Tensor, xs: Tensor[], { axis }: ConcatAttrs): void {
  concatElements(arr(out), 0, out.shape, axis, xs.map((x) => ({ X: arr(x), x0: 0, length: x.shape[axis]! })));
}

export function writeSlice(dst: Tensor, [src]: [Tensor], { axis, start }: WriteSliceAttrs): void {
  writeSliceElements(arr(dst), 0, dst.shape, arr(src), 0, src.shape[axis]!, axis, start);
}

export function copy(out: Tensor, [x]: [Tensor]): void {
  copyRun(arr(out), 0, arr(x), 0, arr(x).length);
}
