// Shape arithmetic shared by the op layer and the backends. Tensors are row-major and contiguous.

import { ShapeError, fmtShape } from './errors.js';

export type Shape = readonly number[];

/** Number of elements; throws if a dimension is not a non-negative safe integer or the product overflows. */
export function sizeOf(shape: Shape, what = 'tensor'): number {
  // Runs for every tensor an op makes: an indexed loop, not an iterator.
  let n = 1;
  for (let i = 0; i < shape.length; i++) {
    const d = shape[i]!;
    if (!Number.isSafeInteger(d) || d < 0) throw new ShapeError(`${what}: invalid dimension ${d} in shape ${fmtShape(shape)}`);
    n *= d;
    if (!Number.isSafeInteger(n)) throw new ShapeError(`${what}: shape ${fmtShape(shape)} has more elements than can be indexed`);
  }
  return n;
}

// Frozen shapes by contents. Every tensor keeps a frozen shape; freezing a fresh array costs several times a
// lookup here, and a model loop makes the same few shapes over and over (a decode step makes ~100 tensors of a
// dozen shapes). Shapes are immutable, so tensors with equal shapes can share one array.
const SHAPE_CACHE_MAX = 4096;
const shapeCache = new Map<number, (readonly number[])[]>();
let shapeCacheCount = 0;

/** A frozen array equal to `shape` (validated: non-negative safe integers), shared with earlier equal shapes. */
export function internShape(shape: Shape): Shape {
  let h = shape.length;
  for (let i = 0; i < shape.length; i++) h = (Math.imul(h, 31) + shape[i]!) | 0;
  let bucket = shapeCache.get(h);
  if (bucket) {
    for (let j = 0; j < bucket.length; j++) if (sameShape(bucket[j]!, shape)) return bucket[j]!;
  }
  const frozen = Object.freeze(Array.from(shape)); // a plain array even when given a typed one (those cannot be frozen)
  if (shapeCacheCount >= SHAPE_CACHE_MAX) {
    // Bounded: many distinct shapes (prefills of every length) start it over.
    shapeCache.clear();
    shapeCacheCount = 0;
    bucket = undefined;
  }
  if (!bucket) shapeCache.set(h, (bucket = []));
  bucket.push(frozen);
  shapeCacheCount++;
  return frozen;
}

/** Row-major strides in elements. */
export function stridesOf(shape: Shape): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i]!;
  }
  return s;
}

export function sameShape(a: Shape, b: Shape): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** NumPy broadcasting: shapes are right-aligned, a dimension of 1 stretches. */
export function broadcastShapes(a: Shape, b: Shape, op: string): number[] {
  const rank = Math.max(a.length, b.length);
  const out = new Array<number>(rank);
  for (let i = 0; i < rank; i++) {
    const da = a[a.length - rank + i] ?? 1;
    const db = b[b.length - rank + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) {
      throw new ShapeError(`${op}: shapes ${fmtShape(a)} and ${fmtShape(b)} do not broadcast (dimension ${i}: ${da} vs ${db})`);
    }
    out[i] = da === 1 ? db : da;
  }
  return out;
}

/**
 * Strides for reading an input of shape `inShape` as if it had the broadcast shape `outShape`:
 * stretched (size-1 or missing) dimensions get stride 0.
 */
export function broadcastStrides(inShape: Shape, outShape: Shape): number[] {
  const inStrides = stridesOf(inShape);
  const rank = outShape.length;
  const out = new Array<number>(rank).fill(0);
  for (let i = 0; i < rank; i++) {
    const j = inShape.length - rank + i;
    if (j >= 0 && inShape[j] !== 1) out[i] = inStrides[j]!;
  }
  return out;
}

/** Resolves a possibly negative axis against a rank, naming the op on failure. */
export function normalizeAxis(axis: number, rank: number, op: string): number {
  const a = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(a) || a < 0 || a >= rank) throw new ShapeError(`${op}: axis ${axis} is out of range for rank ${rank}`);
  return a;
}
