// The CPU reference backend: storage is a plain typed array, kernels are the plainest correct loops, evaluated in
// float64 and rounded to f32 on store. It defines what every other backend must compute. It is synchronous, so
// it also offers readSync.

import {
  type Backend,
  type BackendInfo,
  type KernelAttrs,
  type KernelInputs,
  type OpName,
  isOpName,
  SUPPORTED,
  type Support,
  unsupported,
} from '../../core/backend.js';
import { bytesPerElement, checkHostArray, DTYPES, type DType, type HostArray, hostArrayFor } from '../../core/dtype.js';
import { BackendError } from '../../core/errors.js';
import type { Tensor } from '../../core/tensor.js';
import { attention } from './attention.js';
import { binary, scale, swiglu, unary } from './elementwise.js';
import { argmax, cast, embedding } from './gather.js';
import { concat, copy, slice, transpose, writeSlice } from './layout.js';
import { matmul } from './matmul.js';
import { layerNorm, modulatedNorm, rmsNorm } from './norm.js';
import { rope } from './rope.js';
import { softmax } from './softmax.js';
import { patchEmbed, resizeGrid } from './vision.js';

// The reference's array-level functions, for backends whose tensors are views of one memory (the wasm backend's
// layout ops, argmax and resizeGrid run these) and for outside backends that want the reference behaviour.
export { argmaxRows } from './gather.js';
export { type ConcatPart, concatElements, copyRun, type Elements, sliceElements, splitAxis, transposeElements, writeSliceElements } from './layout.js';
export { resizeGridElements } from './vision.js';

export interface CpuBackendOptions {
  /** Largest single allocation in bytes (default 4 GiB); bigger requests fail with a clear error. */
  maxAllocBytes?: number;
}

export class CpuBackend implements Backend {
  readonly name: string;
  /** attention reads head-major K/V natively (index arithmetic only). */
  readonly headMajorKV = true;
  private liveBytes = 0;
  private peak = 0;
  private readonly maxAllocBytes: number;
  private readonly sizes = new WeakMap<object, number>();

  constructor(name = 'cpu', opts: CpuBackendOptions = {}) {
    this.name = name;
    this.maxAllocBytes = opts.maxAllocBytes ?? 4 * 2 ** 30;
  }

  info(): BackendInfo {
    return { name: this.name, device: 'cpu', software: false, description: 'CPU reference (plain JS loops, float64 accumulation)', dtypes: DTYPES };
  }

  /** Bytes currently held by live tensors, and the most ever held at once. */
  memory(): { liveBytes: number; peakBytes: number } {
    return { liveBytes: this.liveBytes, peakBytes: this.peak };
  }

  resetPeak(): void {
    this.peak = this.liveBytes;
  }

  private account(a: HostArray): HostArray {
    this.sizes.set(a, a.byteLength);
    this.liveBytes += a.byteLength;
    this.peak = Math.max(this.peak, this.liveBytes);
    return a;
  }

  alloc(size: number, dtype: DType): HostArray {
    const bytes = size * bytesPerElement(dtype);
    if (bytes > this.maxAllocBytes) {
      throw new BackendError(`${this.name}: cannot allocate ${size} × ${dtype} (${bytes} bytes): over the ${this.maxAllocBytes}-byte limit per tensor`);
    }
    return this.account(hostArrayFor(dtype, size));
  }

  upload(data: HostArray, dtype: DType): HostArray {
    checkHostArray(data, dtype, `${this.name}.upload`);
    return this.account(data.slice());
  }

  readSync(storage: unknown, _dtype: DType, _size: number): HostArray {
    return (storage as HostArray).slice();
  }

  async read(storage: unknown, dtype: DType, size: number): Promise<HostArray> {
    return this.readSync(storage, dtype, size);
  }

  free(storage: unknown): void {
    this.liveBytes -= this.sizes.get(storage as object) ?? 0;
    this.sizes.delete(storage as object);
  }

  async sync(): Promise<void> {}
  async destroy(): Promise<void> {}

  supports<K extends OpName>(op: K, _out: Tensor, _inputs: KernelInputs<K>, _attrs: KernelAttrs<K>): Support {
    // The reference runs every op the op layer accepts; it is the definition the others are measured against.
    return isOpName(op) ? SUPPORTED : unsupported(`no CPU kernel for '${op}'`);
  }

  matmul = matmul;
  binary = binary;
  unary = unary;
  scale = scale;
  swiglu = swiglu;
  softmax = softmax;
  layerNorm = layerNorm;
  rmsNorm = rmsNorm;
  modulatedNorm = modulatedNorm;
  rope = rope;
  attention = attention;
  embedding = embedding;
  transpose = transpose;
  slice = slice;
  concat = concat;
  writeSlice = writeSlice;
  patchEmbed = patchEmbed;
  resizeGrid = resizeGrid;
  argmax = argmax;
  cast = cast;
  copy = copy;
}

