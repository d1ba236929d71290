// Making tensors from host data.

import type { Backend } from '../core/backend.js';
import { bytesPerElement, checkHostArray, type DType, type HostArray, hostArrayFor, narrowFromF32 } from '../core/dtype.js';
import { DTypeError, ShapeError, ValueError, fmtShape } from '../core/errors.js';
import { sizeOf, type Shape } from '../core/shape.js';
import { Tensor } from '../core/tensor.js';

/**
 * A tensor on `backend` holding `data`. Plain number arrays become f32 (or i32 when dtype is 'i32'); a
 * Float32Array with dtype f16/bf16 is narrowed to packed 16-bit storage.
 */
export function tensor(backend: Backend, data: HostArray | readonly number[], shape: Shape, dtype?: DType): Tensor {
  const n = sizeOf(shape, 'tensor');
  let arr: HostArray;
  if (Array.isArray(data)) {
    arr = dtype === 'i32' ? Int32Array.from(data as number[]) : Float32Array.from(data as number[]);
    dtype ??= 'f32';
  } else {
    arr = data as HostArray;
    dtype ??= arr instanceof Int32Array ? 'i32' : arr instanceof Float32Array ? 'f32' : undefined;
    if (!dtype) throw new DTypeError('tensor: a Uint16Array needs an explicit dtype (f16 or bf16)');
  }
  if ((dtype === 'f16' || dtype === 'bf16') && arr instanceof Float32Array) arr = narrowFromF32(arr, dtype);
  if (dtype === 'i32' && arr instanceof Float32Array) throw new DTypeError('tensor: got a Float32Array for an i32 tensor; pass an Int32Array');
  checkHostArray(arr, dtype, 'tensor');
  if (arr.length !== n) throw new ShapeError(`tensor: ${arr.length} values do not fill shape ${fmtShape(shape)} (${n} elements)`);
  if (!dtypesOf(backend).includes(dtype)) throw new DTypeError(`tensor: backend '${backend.name}' cannot hold ${dtype}`);
  return Tensor.fromStorage(backend, shape, dtype, backend.upload(arr, dtype));
}

/** The storage dtypes of a backend, from info() once: info() builds a description string each call, and a
 *  decode step uploads its token id through here. */
const backendDTypes = new WeakMap<Backend, readonly DType[]>();
function dtypesOf(backend: Backend): readonly DType[] {
  let d = backendDTypes.get(backend);
  if (!d) backendDTypes.set(backend, (d = backend.info().dtypes));
  return d;
}

/** Host arrays are staged through JS typed arrays; refuse sizes that could not be allocated, before trying. */
const MAX_HOST_BYTES = 4 * 2 ** 30;

function hostArray(op: string, shape: Shape, dtype: DType): HostArray {
  const n = sizeOf(shape, op);
  const bytes = n * bytesPerElement(dtype);
  if (bytes > MAX_HOST_BYTES) throw new ValueError(`${op}: shape ${fmtShape(shape)} ${dtype} needs ${bytes} bytes, over the ${MAX_HOST_BYTES}-byte host staging limit`);
  return hostArrayFor(dtype, n);
}

export function zeros(backend: Backend, shape: Shape, dtype: DType = 'f32'): Tensor {
  return Tensor.fromStorage(backend, shape, dtype, backend.upload(hostArray('zeros', shape, dtype), dtype));
}

export function full(backend: Backend, shape: Shape, value: number, dtype: 'f32' | 'i32' = 'f32'): Tensor {
  const arr = hostArray('full', shape, dtype);
  arr.fill(value);
  return Tensor.fromStorage(backend, shape, dtype, backend.upload(arr, dtype));
}
