// Storage dtypes and the conversions between them.
//
// Every kernel computes in f32. f16 and bf16 exist only as *storage*: weights can stay packed (half the bytes)
// and are widened inside the kernel that reads them. i32 is for token ids, indices and argmax results.

import { DTypeError } from './errors.js';

export type DType = 'f32' | 'f16' | 'bf16' | 'i32';

export const DTYPES: readonly DType[] = ['f32', 'f16', 'bf16', 'i32'];

/** Host-side array type that holds a dtype's raw bits. f16/bf16 are kept as their 16-bit patterns. */
export type HostArray = Float32Array | Uint16Array | Int32Array;

export function isDType(x: unknown): x is DType {
  return typeof x === 'string' && (DTYPES as readonly string[]).includes(x);
}

export function bytesPerElement(dtype: DType): number {
  switch (dtype) {
    case 'f32':
    case 'i32':
      return 4;
    case 'f16':
    case 'bf16':
      return 2;
  }
}

/** True for dtypes whose values are floating point (and so are computed in f32). */
export function isFloat(dtype: DType): boolean {
  return dtype !== 'i32';
}

export function hostArrayFor(dtype: DType, size: number): HostArray {
  switch (dtype) {
    case 'f32':
      return new Float32Array(size);
    case 'i32':
      return new Int32Array(size);
    case 'f16':
    case 'bf16':
      return new Uint16Array(size);
  }
}

/** Checks that `data` is the host array type that stores `dtype`, naming `what` in the error. */
export function checkHostArray(data: HostArray, dtype: DType, what: string): void {
  const ok =
    (dtype === 'f32' && data instanceof Float32Array) ||
    (dtype === 'i32' && data instanceof Int32Array) ||
    ((dtype === 'f16' || dtype === 'bf16') && data instanceof Uint16Array);
  if (!ok) {
    throw new DTypeError(`${what}: a ${dtype} tensor needs a ${hostArrayName(dtype)}, got ${data.constructor.name}`);
  }
}

export function hostArrayName(dtype: DType): string {
  return dtype === 'f32' ? 'Float32Array' : dtype === 'i32' ? 'Int32Array' : 'Uint16Array';
}

// ---- f16 / bf16 bit conversions -------------------------------------------------------------------------
// Shared scratch views: reinterpret an f32 as its u32 bits without allocating.
const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** bf16 is the upper half of an f32, so widening is a shift. */
export function bf16ToF32(bits: number): number {
  u32Scratch[0] = bits << 16;
  return f32Scratch[0]!;
}

/** f32 → bf16 with round-to-nearest-even (what PyTorch does); NaN stays a quiet NaN. */
export function f32ToBf16(value: number): number {
  f32Scratch[0] = value;
  const x = u32Scratch[0]!;
  if ((x & 0x7fffffff) > 0x7f800000) return ((x >>> 16) | 0x0040) & 0xffff; // NaN
  const roundingBias = 0x7fff + ((x >>> 16) & 1);
  return ((x + roundingBias) >>> 16) & 0xffff;
}

/** IEEE half → f32, exact (every f16 is representable in f32). Subnormals included. */
export function f16ToF32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24; // zero or subnormal
  if (exponent === 0x1f) return mantissa ? NaN : sign * Infinity;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

/** f32 → IEEE half with round-to-nearest-even; overflow goes to ±Inf, like a hardware conversion. */
export function f32ToF16(value: number): number {
  f32Scratch[0] = value;
  const x = u32Scratch[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // Inf / NaN
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow
  if (e <= 0) {
    // Subnormal half (or zero): shift the implicit-1 mantissa right, rounding to nearest even.
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rest = mant & ((1 << shift) - 1);
    let out = mant >>> shift;
    if (rest > half || (rest === half && (out & 1))) out++;
    return sign | out;
  }
  const rest = mant & 0x1fff;
  let out = (e << 10) | (mant >>> 13);
  if (rest > 0x1000 || (rest === 0x1000 && (out & 1))) out++; // may carry into the exponent: still correct
  return sign | out;
}

/** Widens packed 16-bit floats to f32. */
export function widenToF32(bits: Uint16Array, dtype: 'f16' | 'bf16'): Float32Array {
  const out = new Float32Array(bits.length);
  if (dtype === 'bf16') {
    const u = new Uint32Array(out.buffer);
    for (let i = 0; i < bits.length; i++) u[i] = bits[i]! << 16;
  } else {
    for (let i = 0; i < bits.length; i++) out[i] = f16ToF32(bits[i]!);
  }
  return out;
}

/** Narrows f32 values to packed 16-bit floats (round to nearest even). */
export function narrowFromF32(values: Float32Array, dtype: 'f16' | 'bf16'): Uint16Array {
  const out = new Uint16Array(values.length);
  const conv = dtype === 'bf16' ? f32ToBf16 : f32ToF16;
  for (let i = 0; i < values.length; i++) out[i] = conv(values[i]!);
  return out;
}

/** Converts host data of one dtype into another (float↔int conversions truncate toward zero, like a cast). */
export function convertHost(data: HostArray, from: DType, to: DType): HostArray {
  if (from === to) return data.slice();
  const asF32 =
    from === 'f32' ? (data as Float32Array) : from === 'i32' ? Float32Array.from(data as Int32Array) : widenToF32(data as Uint16Array, from);
  switch (to) {
    case 'f32':
      return asF32 === data ? asF32.slice() : asF32;
    case 'i32': {
      const out = new Int32Array(asF32.length);
      for (let i = 0; i < asF32.length; i++) out[i] = Math.trunc(asF32[i]!) | 0;
      return out;
    }
    case 'f16':
    case 'bf16':
      return narrowFromF32(asF32, to);
  }
}
