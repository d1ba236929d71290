// Tensor: a shape, a storage dtype, the backend that owns its storage, and an opaque handle to that storage.
// Always row-major and contiguous; reshape shares storage (reference-counted), every other op makes a new one.
// Tensors are freed explicitly (`dispose`) or by the `tidy` scope that created them (core/scope.ts).

import type { Backend, Storage } from './backend.js';
import { type DType, type HostArray, widenToF32 } from './dtype.js';
import { TensorStateError, fmtShape } from './errors.js';
import { internShape, type Shape, sizeOf } from './shape.js';
import { TENSOR_BRAND, trackTensor } from './scope.js';

/** Shared storage with a reference count, so reshaped views free it only once. */
class StorageRef {
  refs = 1;
  constructor(
    readonly backend: Backend,
    readonly handle: Storage,
  ) {}
}

let nextId = 1;

export class Tensor {
  readonly id = nextId++;
  readonly shape: readonly number[];
  readonly size: number;
  private readonly ref: StorageRef;
  private released = false;

  private constructor(
    readonly backend: Backend,
    shape: Shape,
    size: number,
    readonly dtype: DType,
    ref: StorageRef,
  ) {
    // Shapes are frozen, so tensors share them: an op whose output has its input's shape passes that array, and
    // a fresh one is swapped for the interned frozen copy (tensors are made per op; a decode step makes ~100).
    this.shape = Object.isFrozen(shape) ? shape : internShape(shape);
    this.size = size;
    this.ref = ref;
    trackTensor(this);
  }

  /** Wraps fresh storage (made by `backend.alloc` or `backend.upload`) in a tensor that owns it. */
  static fromStorage(backend: Backend, shape: Shape, dtype: DType, handle: Storage): Tensor {
    return new Tensor(backend, shape, sizeOf(shape), dtype, new StorageRef(backend, handle));
  }

  /** fromStorage for the op layer, which has already validated `shape` and computed its `size` (sizeOf). */
  static fromStorageSized(backend: Backend, shape: Shape, size: number, dtype: DType, handle: Storage): Tensor {
    return new Tensor(backend, shape, size, dtype, new StorageRef(backend, handle));
  }

  get rank(): number {
    return this.shape.length;
  }

  get disposed(): boolean {
    return this.released;
  }

  /** The backend's storage handle. For backends and kernels only. */
  get storage(): Storage {
    this.assertAlive('storage');
    return this.ref.handle;
  }

  /** A tensor with a new shape over the same storage (same element count). Disposing either is independent. */
  view(shape: Shape): Tensor {
    this.assertAlive('reshape');
    const size = sizeOf(shape);
    this.ref.refs++;
    return new Tensor(this.backend, shape, size, this.dtype, this.ref);
  }

  /** Reads the values: Float32Array for float dtypes (f16/bf16 widened), Int32Array for i32. */
  async read(): Promise<Float32Array | Int32Array> {
    this.assertAlive('read');
    return toComputeArray(await this.backend.read(this.ref.handle, this.dtype, this.size), this.dtype);
  }

  /** Reads the raw storage: f16/bf16 stay as their 16-bit patterns. */
  async readRaw(): Promise<HostArray> {
    this.assertAlive('readRaw');
    return this.backend.read(this.ref.handle, this.dtype, this.size);
  }

  /** Synchronous read, only on backends that can (the CPU reference). */
  readSync(): Float32Array | Int32Array {
    this.assertAlive('readSync');
    if (!this.backend.readSync) {
      throw new TensorStateError(`readSync: backend '${this.backend.name}' only supports async reads; use await tensor.read()`);
    }
    return toComputeArray(this.backend.readSync(this.ref.handle, this.dtype, this.size), this.dtype);
  }

  /** Frees this tensor's hold on its storage. Idempotent. */
  dispose(): void {
    if (this.released) return;
    this.released = true;
    if (--this.ref.refs === 0) this.ref.backend.free(this.ref.handle);
  }

  assertAlive(what: string): void {
    if (this.released) throw new TensorStateError(`${what}: tensor #${this.id} ${fmtShape(this.shape)} ${this.dtype} was disposed`);
  }

  toString(): string {
    return `Tensor#${this.id}(${fmtShape(this.shape)}, ${this.dtype}, ${this.backend.name}${this.released ? ', disposed' : ''})`;
  }
}

// The brand tidy() recognises tensors by (core/scope.ts): a class name does not survive bundlers and minifiers.
Object.defineProperty(Tensor.prototype, TENSOR_BRAND, { value: true });

function toComputeArray(raw: HostArray, dtype: DType): Float32Array | Int32Array {
  if (dtype === 'f16' || dtype === 'bf16') return widenToF32(raw as Uint16Array, dtype);
  return raw as Float32Array | Int32Array;
}
