// The wasm backend's memory-bound ops, in JavaScript over views of the shared memory: layout (transpose, slice,
// concat, writeSlice, copy), argmax and resizeGrid run the CPU reference's own functions (backends/cpu) on the
// memory; embedding copies rows (widening f16/bf16 rows with a wasm kernel); cast narrows in JS and widens with a
// wasm kernel split across threads. These are not hot in the model (KV-cache appends and slices are memcpys).

import type { ConcatAttrs, ResizeGridAttrs, SliceAttrs, TransposeAttrs, WriteSliceAttrs } from '../../core/backend.js';
import { bytesPerElement, convertHost, type HostArray, narrowFromF32 } from '../../core/dtype.js';
import type { Tensor } from '../../core/tensor.js';
import { argmaxRows, concatElements, copyRun, type Elements, resizeGridElements, sliceElements, transposeElements, writeSliceElements } from '../cpu/index.js';
import { type KernelContext, PAR_BYTES, ptr, split } from './jobs.js';

const WIDEN_FN: Record<string, string> = { f16: 'widen_f16', bf16: 'widen_bf16' };

export class LayoutOps {
  constructor(private readonly cx: KernelContext) {}

  /** The memory as elements of `t`'s size, and t's offset in them. */
  private at(t: Tensor): [Elements, number] {
    return bytesPerElement(t.dtype) === 4 ? [this.cx.i32, ptr(t) >>> 2] : [this.cx.u16, ptr(t) >>> 1];
  }

  embedding = (out: Tensor, [table, ids]: [Tensor, Tensor]): void => {
    const cx = this.cx;
    const [V, D] = table.shape as [number, number];
    const O = ptr(out), T = ptr(table), I = ptr(ids) >>> 2;
    const eb = bytesPerElement(table.dtype);
    const widen = table.dtype === 'f32' ? null : cx.fns[cx.fn(WIDEN_FN[table.dtype]!)]!;
    for (let t = 0; t < ids.size; t++) {
      const id = cx.i32[I + t]!;
      const dst = O + t * D * 4;
      if (id < 0 || id >= V) cx.f32.fill(0, dst >>> 2, (dst >>> 2) + D);
      else if (widen) widen(T + id * D * eb, dst, D);
      else cx.u8.copyWithin(dst, T + id * D * 4, T + (id + 1) * D * 4);
    }
  };

  argmax = (out: Tensor, [x]: [Tensor]): void => {
    const X = this.floatsOf(x);
    argmaxRows(this.cx.i32, ptr(out) >>> 2, X.arr, X.off, out.size, x.shape[x.rank - 1]!);
  };

  /** f32 values of a float tensor: a view for f32, a widened copy for f16/bf16. */
  private floatsOf(x: Tensor): { arr: Float32Array; off: number } {
    const cx = this.cx;
    if (x.dtype === 'f32') return { arr: cx.f32, off: ptr(x) >>> 2 };
    const tmp = cx.heap.alloc(x.size * 4);
    try {
      cx.fns[cx.fn(WIDEN_FN[x.dtype]!)]!(ptr(x), tmp, x.size);
      return { arr: cx.f32.slice(tmp >>> 2, (tmp >>> 2) + x.size), off: 0 };
    } finally {
      cx.heap.free(tmp, x.size * 4);
    }
  }

  cast = (out: Tensor, [x]: [Tensor]): void => {
    const cx = this.cx;
    const n = x.size;
    if (n === 0) return;
    const from = x.dtype, to = out.dtype;
    if (from === to) return this.copy(out, [x]);
    if (to === 'f32' && (from === 'bf16' || from === 'f16')) return this.widenInto(x, ptr(out));
    if (from === 'f32' && (to === 'bf16' || to === 'f16')) {
      const src = cx.f32.subarray(ptr(x) >>> 2, (ptr(x) >>> 2) + n);
      cx.u16.set(narrowFromF32(src, to), ptr(out) >>> 1);
      return;
    }
    const bytes = cx.u8.slice(ptr(x), ptr(x) + n * bytesPerElement(from));
    const host: HostArray = from === 'f32' ? new Float32Array(bytes.buffer) : from === 'i32' ? new Int32Array(bytes.buffer) : new Uint16Array(bytes.buffer);
    const conv = convertHost(host, from, to);
    cx.u8.set(new Uint8Array(conv.buffer, conv.byteOffset, conv.byteLength), ptr(out));
  };

  /** Widens an f16/bf16 tensor's elements into f32 at dst (heap address). */
  widenInto(x: Tensor, dst: number): void {
    const cx = this.cx;
    const fn = cx.fn(WIDEN_FN[x.dtype]!);
    const n = x.size;
    const nt = cx.threadsFor(n * 6, PAR_BYTES);
    cx.runJobs(split(n, nt, 16).map(([s, e]) => ({ fn, args: [ptr(x) + s * 2, dst + s * 4, e - s] })));
  }

  transpose = (out: Tensor, [x]: [Tensor], { perm }: TransposeAttrs): void => {
    const [O, o0] = this.at(out), [X, x0] = this.at(x);
    transposeElements(O, o0, X, x0, x.shape, out.shape, perm);
  };

  slice = (out: Tensor, [x]: [Tensor], { begin }: SliceAttrs): void => {
    const [O, o0] = this.at(out), [X, x0] = this.at(x);
    sliceElements(O, o0, X, x0, x.shape, out.shape, begin);
  };

  concat = (out: Tensor, xs: Tensor[], { axis }: ConcatAttrs): void => {
    const [O, o0] = this.at(out);
    concatElements(O, o0, out.shape, axis, xs.map((x) => {
      const [X, x0] = this.at(x);
      return { X, x0, length: x.shape[axis]! };
    }));
  };

  writeSlice = (dst: Tensor, [src]: [Tensor], { axis, start }: WriteSliceAttrs): void => {
    const [O, o0] = this.at(dst), [S, s0] = this.at(src);
    writeSliceElements(O, o0, dst.shape, S, s0, src.shape[axis]!, axis, start);
  };

  copy = (out: Tensor, [x]: [Tensor]): void => {
    const [O, o0] = this.at(out), [X, x0] = this.at(x);
    copyRun(O, o0, X, x0, x.size);
  };

  resizeGrid = (out: Tensor, [x]: [Tensor], attrs: ResizeGridAttrs): void => {
    const [B, , D] = x.shape as [number, number, number];
    resizeGridElements(this.cx.f32, ptr(out) >>> 2, this.cx.f32, ptr(x) >>> 2, B, D, attrs);
  };
}
