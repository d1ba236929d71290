// Image preprocessing (models/README.md, "Vision tower" step 1): an 8-bit RGB(A) image → pixels [1, 3, S, S],
// resized bilinearly to S = image_size, scaled to [0, 1] and normalised per channel, (p − mean) / std.
// File decoding (PNG/JPEG) is not here; give decoded pixels.
//
// Resize convention: half-pixel centres, clamped at the borders, no antialiasing (PyTorch
// F.interpolate(mode='bilinear', align_corners=False, antialias=False)), computed in float64 on the 0..255
// values with no rounding back to 8 bits. A config with vision_config.resample (a PIL filter number) is resized as
// Pillow's Image.resize does instead (antialiased, to 8 bits; resample.ts), on the RGB bytes (toRgb).

import { ValueError } from '../../core/errors.js';
import type { VisionConfig } from '../lavi/config.js';
import { resizePil } from './resample.js';

/** Decoded pixels, row-major, interleaved channels (3 = RGB, 4 = RGBA; alpha is ignored). */
export interface RGBImage {
  width: number;
  height: number;
  data: Uint8Array | Uint8ClampedArray;
  /** 3 or 4; inferred from data.length when absent. */
  channels?: 3 | 4;
}

/** Normalised pixels on the host, [B, C, S, S] row-major. */
export interface PixelBatch {
  data: Float32Array;
  shape: [number, number, number, number];
}

function channelsOf(img: RGBImage): 3 | 4 {
  const { width: W, height: H, data } = img;
  if (!Number.isInteger(W) || !Number.isInteger(H) || W < 1 || H < 1) throw new ValueError(`image: width and height must be positive integers, got ${W}×${H}`);
  if (!(data instanceof Uint8Array || data instanceof Uint8ClampedArray)) throw new ValueError(`image: data must be a Uint8Array`);
  const ch = img.channels ?? (data.length === W * H * 4 ? 4 : 3);
  if (ch !== 3 && ch !== 4) throw new ValueError(`image: channels must be 3 or 4, got ${String(ch)}`);
  if (data.length !== W * H * ch) throw new ValueError(`image: ${W}×${H}×${ch} needs ${W * H * ch} bytes, got ${data.length}`);
  return ch;
}

/** RGB bytes of an image. RGBA loses its alpha channel, as transformers' convert_to_rgb does (PIL
 * image.convert("RGB"): no compositing). Note that models/image/decode.ts composites transparent PNGs over white
 * instead, as browsers show them; Hugging Face's load_image also calls convert("RGB") and keeps the hidden colours. */
export function toRgb(img: RGBImage): Uint8Array {
  const ch = channelsOf(img);
  const { width: W, height: H, data } = img;
  if (ch === 3) return data instanceof Uint8Array ? data : new Uint8Array(data.buffer, data.byteOffset, data.length);
  const out = new Uint8Array(W * H * 3);
  for (let p = 0; p < W * H; p++) {
    out[p * 3] = data[p * 4]!;
    out[p * 3 + 1] = data[p * 4 + 1]!;
    out[p * 3 + 2] = data[p * 4 + 2]!;
  }
  return out;
}

/** Source coordinate and weights of one output index under half-pixel bilinear sampling. */
function axisTaps(outSize: number, inSize: number): { i0: Int32Array; i1: Int32Array; w1: Float64Array } {
  const i0 = new Int32Array(outSize), i1 = new Int32Array(outSize), w1 = new Float64Array(outSize);
  const scale = inSize / outSize;
  for (let o = 0; o < outSize; o++) {
    const src = Math.max(0, (o + 0.5) * scale - 0.5);
    const lo = Math.min(Math.floor(src), inSize - 1);
    i0[o] = lo;
    i1[o] = Math.min(lo + 1, inSize - 1);
    w1[o] = src - lo;
  }
  return { i0, i1, w1 };
}

/** Resizes and normalises one image to [1, C, S, S]. */
export function preprocessImage(img: RGBImage, cfg: VisionConfig): PixelBatch {
  const { width: W, height: H, data } = img;
  if (!Number.isInteger(W) || !Number.isInteger(H) || W < 1 || H < 1) throw new ValueError(`image: width and height must be positive integers, got ${W}×${H}`);
  const ch = img.channels ?? (data.length === W * H * 4 ? 4 : 3);
  if (ch !== 3 && ch !== 4) throw new ValueError(`image: channels must be 3 or 4, got ${String(ch)}`);
  if (data.length !== W * H * ch) throw new ValueError(`image: ${W}×${H}×${ch} needs ${W * H * ch} bytes, got ${data.length}`);
  const C = cfg.num_channels;
  if (C !== 3) throw new ValueError(`image: the model takes ${C} channels; only RGB models are supported`);
  const S = cfg.image_size;
  const out = new Float32Array(C * S * S);
  if (cfg.resample !== undefined && (W !== S || H !== S)) {
    // Pillow's filter on the RGB bytes, then the same normalisation.
    const small = resizePil(toRgb(img), W, H, 3, S, S, cfg.resample);
    for (let c = 0; c < C; c++) {
      const mean = cfg.image_mean[c]!, std = cfg.image_std[c]!;
      for (let i = 0; i < S * S; i++) out[c * S * S + i] = (small[i * 3 + c]! / 255 - mean) / std;
    }
    return { data: out, shape: [1, C, S, S] };
  }
  const ys = axisTaps(S, H);
  const xs = axisTaps(S, W);
  for (let c = 0; c < C; c++) {
    const mean = cfg.image_mean[c]!;
    const std = cfg.image_std[c]!;
    for (let oy = 0; oy < S; oy++) {
      const r0 = ys.i0[oy]! * W, r1 = ys.i1[oy]! * W, wy = ys.w1[oy]!;
      for (let ox = 0; ox < S; ox++) {
        const c0 = xs.i0[ox]!, c1 = xs.i1[ox]!, wx = xs.w1[ox]!;
        const p00 = data[(r0 + c0) * ch + c]!, p01 = data[(r0 + c1) * ch + c]!;
        const p10 = data[(r1 + c0) * ch + c]!, p11 = data[(r1 + c1) * ch + c]!;
        const top = p00 + (p01 - p00) * wx;
        const bottom = p10 + (p11 - p10) * wx;
        const v = (top + (bottom - top) * wy) / 255;
        out[(c * S + oy) * S + ox] = (v - mean) / std;
      }
    }
  }
  return { data: out, shape: [1, C, S, S] };
}

/** Several preprocessed images (crops or video frames) stacked into one batch [B, C, S, S]. */
export function stackPixels(batches: readonly PixelBatch[]): PixelBatch {
  if (batches.length === 0) throw new ValueError('stackPixels: no images');
  const [, C, S] = batches[0]!.shape;
  let B = 0;
  for (const b of batches) {
    if (b.shape[1] !== C || b.shape[2] !== S || b.shape[3] !== S) throw new ValueError(`stackPixels: image shapes differ`);
    B += b.shape[0];
  }
  const data = new Float32Array(B * C * S * S);
  let off = 0;
  for (const b of batches) data.set(b.data, off), (off += b.data.length);
  return { data, shape: [B, C, S, S] };
}
