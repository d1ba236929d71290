// PIL's Image.resize for 8-bit RGB images, bit for bit (Pillow src/libImaging/Resample.c, ImagingResample with the
// default box): what Hugging Face's slow image processors call through transformers.image_transforms.resize.
//
// - Separable: a horizontal pass (rows), then a vertical pass (columns), each skipped when that side keeps its
//   size; the intermediate is 8-bit, so rounding and clipping happen after each pass.
// - Per output index: centre = (i + 0.5) · scale with scale = in / out; the filter's support is widened by the
//   downscale factor (antialiasing: support · max(1, scale)); taps from int(centre − support + 0.5) to
//   int(centre + support + 0.5), clamped to the image; weights filter((x − centre + 0.5) / max(1, scale)),
//   normalised to sum 1, then turned into fixed point with PRECISION_BITS = 32 − 8 − 2 = 22 bits (rounded away
//   from zero by ±0.5 and truncated, as C's (int) does).
// - A pixel is Σ v · k in 32-bit integers (C's int), plus 1 << 21 for rounding, shifted right by 22 (arithmetic)
//   and clipped to 0..255.
// - Filters (PIL numbering, as `resample` in preprocessor_config.json): 1 LANCZOS (support 3), 2 BILINEAR
//   (triangle, support 1), 3 BICUBIC (Keys a = −0.5, support 2), 4 BOX (support 0.5), 5 HAMMING (support 1).
//   0 NEAREST takes another code path in PIL and is not implemented.

import { UnsupportedError, ValueError } from '../../core/errors.js';

const PRECISION_BITS = 32 - 8 - 2;
const HALF = 1 << (PRECISION_BITS - 1);
const ONE = 1 << PRECISION_BITS;

interface Filter {
  name: string;
  support: number;
  fn: (x: number) => number;
}

function bicubic(x: number): number {
  const a = -0.5;
  if (x < 0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

function bilinear(x: number): number {
  if (x < 0) x = -x;
  if (x < 1.0) return 1.0 - x;
  return 0.0;
}

function box(x: number): number {
  return x > -0.5 && x <= 0.5 ? 1.0 : 0.0;
}

function hamming(x: number): number {
  if (x < 0) x = -x;
  if (x === 0) return 1.0;
  if (x >= 1.0) return 0.0;
  x = x * Math.PI;
  // 0.54f and 0.46f are float constants in C, promoted to double
  return (Math.sin(x) / x) * (Math.fround(0.54) + Math.fround(0.46) * Math.cos(x));
}

function sinc(x: number): number {
  if (x === 0) return 1.0;
  x = x * Math.PI;
  return Math.sin(x) / x;
}

function lanczos(x: number): number {
  if (-3.0 <= x && x < 3.0) return sinc(x) * sinc(x / 3);
  return 0.0;
}

/** PIL resampling filters by their `resample` number. */
const FILTERS: ReadonlyMap<number, Filter> = new Map([
  [1, { name: 'lanczos', support: 3.0, fn: lanczos }],
  [2, { name: 'bilinear', support: 1.0, fn: bilinear }],
  [3, { name: 'bicubic', support: 2.0, fn: bicubic }],
  [4, { name: 'box', support: 0.5, fn: box }],
  [5, { name: 'hamming', support: 1.0, fn: hamming }],
]);

export const RESAMPLE_NAMES: Readonly<Record<number, string>> = { 0: 'nearest', 1: 'lanczos', 2: 'bilinear', 3: 'bicubic', 4: 'box', 5: 'hamming' };

/** A `resample` field (preprocessor_config.json, vision_config): a PIL filter number that resizePil implements.
 *  Not an integer 0..5: ValueError; 0 (nearest): UnsupportedError. `what` names the file and field in the error. */
export function requireResample(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 5) {
    throw new ValueError(`${what} must be a PIL filter number 0..5, got ${JSON.stringify(v)?.slice(0, 40) ?? String(v)}`);
  }
  if (!FILTERS.has(v)) throw new UnsupportedError(`${what} is ${v} (${RESAMPLE_NAMES[v]}), which is not implemented; supported: ${[...FILTERS].map(([n, f]) => `${n} ${f.name}`).join(', ')}`);
  return v;
}


/** Fixed-point taps of one pass: for output i, `count[i]` weights from input index `start[i]`. */
interface Taps {
  start: Int32Array;
  count: Int32Array;
  ksize: number;
  k: Int32Array; // [out, ksize]
}

function precomputeCoeffs(inSize: number, outSize: number, filter: Filter): Taps {
  // box = (0, 0, in, out) in PIL's float box; in1 - in0 is exact for any size we accept
  const scale = inSize / outSize;
  const filterscale = scale < 1.0 ? 1.0 : scale;
  const support = filter.support * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(outSize), count = new Int32Array(outSize);
  const k = new Int32Array(outSize * ksize);
  const w = new Float64Array(ksize);
  const ss = 1.0 / filterscale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = 0 + (xx + 0.5) * scale;
    let ww = 0.0;
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    for (let x = 0; x < xmax; x++) {
      const v = filter.fn((x + xmin - center + 0.5) * ss);
      w[x] = v;
      ww += v;
    }
    for (let x = 0; x < xmax; x++) {
      let v = w[x]!;
      if (ww !== 0.0) v /= ww;
      // normalize_coeffs_8bpc: (int)(±0.5 + v · 2^22), C truncation
      k[xx * ksize + x] = v < 0 ? Math.trunc(-0.5 + v * ONE) : Math.trunc(0.5 + v * ONE);
    }
    start[xx] = xmin;
    count[xx] = xmax;
  }
  return { start, count, ksize, k };
}

function clip8(ss: number): number {
  const v = ss >> PRECISION_BITS;
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/** Horizontal pass: [H, inW, C] → [H, outW, C]. */
function horizontal(src: Uint8Array, H: number, inW: number, C: number, outW: number, t: Taps): Uint8Array {
  const dst = new Uint8Array(H * outW * C);
  const { start, count, k, ksize } = t;
  for (let y = 0; y < H; y++) {
    const row = y * inW * C;
    const orow = y * outW * C;
    if (C === 3) {
      for (let xx = 0; xx < outW; xx++) {
        const n = count[xx]!, kb = xx * ksize;
        let p = row + start[xx]! * 3;
        let s0 = HALF, s1 = HALF, s2 = HALF;
        for (let x = 0; x < n; x++, p += 3) {
          const w = k[kb + x]!;
          s0 = (s0 + Math.imul(src[p]!, w)) | 0;
          s1 = (s1 + Math.imul(src[p + 1]!, w)) | 0;
          s2 = (s2 + Math.imul(src[p + 2]!, w)) | 0;
        }
        const o = orow + xx * 3;
        dst[o] = clip8(s0);
        dst[o + 1] = clip8(s1);
        dst[o + 2] = clip8(s2);
      }
      continue;
    }
    for (let xx = 0; xx < outW; xx++) {
      const x0 = start[xx]!, n = count[xx]!, kb = xx * ksize;
      for (let c = 0; c < C; c++) {
        let ss = HALF;
        for (let x = 0; x < n; x++) ss = (ss + Math.imul(src[row + (x0 + x) * C + c]!, k[kb + x]!)) | 0;
        dst[orow + xx * C + c] = clip8(ss);
      }
    }
  }
  return dst;
}

/** Vertical pass: [inH, W, C] → [outH, W, C], accumulating whole rows (sequential reads). */
function vertical(src: Uint8Array, inH: number, W: number, C: number, outH: number, t: Taps): Uint8Array {
  void inH;
  const rowLen = W * C;
  const dst = new Uint8Array(outH * rowLen);
  const acc = new Int32Array(rowLen); // C's int accumulator
  const { start, count, k, ksize } = t;
  for (let yy = 0; yy < outH; yy++) {
    const y0 = start[yy]!, n = count[yy]!, kb = yy * ksize;
    acc.fill(HALF);
    for (let y = 0; y < n; y++) {
      const w = k[kb + y]!;
      if (w === 0) continue;
      const r = (y0 + y) * rowLen;
      for (let i = 0; i < rowLen; i++) acc[i] = (acc[i]! + Math.imul(src[r + i]!, w)) | 0;
    }
    const out = yy * rowLen;
    for (let i = 0; i < rowLen; i++) dst[out + i] = clip8(acc[i]!);
  }
  return dst;
}

/** Resizes 8-bit interleaved pixels [H, W, C] to [outH, outW, C] exactly as PIL's Image.resize(…, resample). */
export function resizePil(
  src: Uint8Array,
  W: number,
  H: number,
  C: number,
  outW: number,
  outH: number,
  resample: number,
): Uint8Array {
  for (const [what, v] of [['width', W], ['height', H], ['output width', outW], ['output height', outH]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new ValueError(`resize: ${what} must be a positive integer, got ${v}`);
  }
  if (src.length !== W * H * C) throw new ValueError(`resize: ${W}×${H}×${C} needs ${W * H * C} bytes, got ${src.length}`);
  const filter = FILTERS.get(resample);
  if (!filter) {
    throw new UnsupportedError(`resize: resample ${resample} (${RESAMPLE_NAMES[resample] ?? 'unknown'}) is not implemented; supported: ${[...FILTERS].map(([n, f]) => `${n} (${f.name})`).join(', ')}`);
  }
  let img = src;
  let curW = W;
  if (outW !== W) {
    img = horizontal(img, H, W, C, outW, precomputeCoeffs(W, outW, filter));
    curW = outW;
  }
  if (outH !== H) img = vertical(img, H, curW, C, outH, precomputeCoeffs(H, outH, filter));
  return img === src ? src.slice() : img;
}
