// Hugging Face LlavaOnevisionModel.pack_image_features for one image, on host arrays.
//
// Input: the projected features of the base image and the tiles, [1 + rows·cols, n², d] (n = image_size /
// patch_size tokens per side of a tile), the image's original (height, width), and image_newline [d].
// Output: [numTokens, d]:
//   1. the base image's n² features, as they are;
//   2. the tiles' features arranged as one (rows·n) × (cols·n) map: map[r·n + i][q·n + j] = tile (r·cols + q),
//      token (i·n + j) (transformers: view(rows, cols, n, n, d).permute(4, 0, 2, 1, 3) then flatten);
//   3. unpadded to the image's aspect ratio (unpad_image: the rows or columns the zero padding produced are cut,
//      the same number on both sides, sizes from int(round(x, 7)));
//   4. anyres_max_N: ratio = sqrt(h · w / (N · n²)); if ratio > 1.1 the map is resized to int(h // ratio) ×
//      int(w // ratio) (Python float floor division) with torch's bilinear interpolation, align_corners=False,
//      no antialiasing (source coordinate (o + 0.5) · in / out − 0.5, clamped at 0; the upper neighbour clamped at
//      the last row/column), computed in float64;
//   5. image_newline appended after each row of the map; the map flattened row-major after the base features.

import { ShapeError, ValueError } from '../../core/errors.js';
import { tidy } from '../../core/scope.js';
import type { Tensor } from '../../core/tensor.js';
import { concat, reshape, resizeGrid, slice, sliceAxis, tensor, transpose } from '../../ops/index.js';
import { tokenLayout, type LlavaOnevisionImageModelConfig, type TokenLayout } from './processor.js';

type FloatArray = Float32Array | Float64Array;

export interface PackedImageFeatures {
  /** [numTokens, d]; a Float64Array when the features were float64, else a Float32Array. */
  data: FloatArray;
  shape: [number, number];
  layout: TokenLayout;
}

/** Source index pair and upper weight of each output index under torch's bilinear, align_corners=False. */
function linearTaps(inSize: number, outSize: number): { i0: Int32Array; i1: Int32Array; l1: Float64Array } {
  const i0 = new Int32Array(outSize), i1 = new Int32Array(outSize), l1 = new Float64Array(outSize);
  const scale = inSize / outSize; // area_pixel_compute_scale with no scale factor given: input / output
  for (let o = 0; o < outSize; o++) {
    let src = scale * (o + 0.5) - 0.5;
    if (src < 0) src = 0;
    const lo = Math.min(Math.floor(src), inSize - 1);
    i0[o] = lo;
    i1[o] = lo < inSize - 1 ? lo + 1 : lo;
    l1[o] = Math.min(Math.max(src - lo, 0), 1);
  }
  return { i0, i1, l1 };
}

/**
 * Packs one image's projected features. `features` is [1 + rows·cols, n², d] row-major, `imageSize` the original
 * (height, width), `newline` the image_newline vector [d]. The result's token count equals the processor's.
 */
export function packImageFeatures(
  features: FloatArray,
  numTiles: number,
  d: number,
  imageSize: readonly [number, number],
  newline: FloatArray,
  model: LlavaOnevisionImageModelConfig,
): PackedImageFeatures {
  const [H, W] = imageSize;
  const layout = tokenLayout(H, W, model);
  const n = layout.tokensPerSide, nn = n * n;
  if (!Number.isInteger(d) || d < 1) throw new ShapeError(`packImageFeatures: feature size must be a positive integer, got ${d}`);
  const [gh, gw] = layout.gridTokens;
  const rows = gh / n, cols = gw / n;
  if (numTiles !== 1 + rows * cols) {
    throw new ShapeError(`packImageFeatures: a ${W}×${H} image has 1 + ${rows}×${cols} = ${1 + rows * cols} tiles, got features for ${numTiles}`);
  }
  if (features.length !== numTiles * nn * d) {
    throw new ShapeError(`packImageFeatures: features must be [${numTiles}, ${nn}, ${d}] (${numTiles * nn * d} values), got ${features.length}`);
  }
  if (newline.length !== d) throw new ShapeError(`packImageFeatures: image_newline must have ${d} values, got ${newline.length}`);

  const [uh, uw] = layout.unpadded;
  const [oy, ox] = layout.unpadOffset;
  const [fh, fw] = layout.final;
  const out: FloatArray = features instanceof Float64Array ? new Float64Array(layout.numTokens * d) : new Float32Array(layout.numTokens * d);
  out.set(features.subarray(0, nn * d), 0);

  /** Offset of the feature vector at map position (y, x) of the unpadded map. */
  const at = (y: number, x: number): number => {
    const gy = y + oy, gx = x + ox;
    const r = Math.floor(gy / n), i = gy - r * n;
    const q = Math.floor(gx / n), j = gx - q * n;
    return ((1 + r * cols + q) * nn + i * n + j) * d;
  };

  let o = nn * d;
  if (!layout.downscaled) {
    for (let y = 0; y < uh; y++) {
      for (let x = 0; x < uw; x++) {
        const s = at(y, x);
        for (let c = 0; c < d; c++) out[o + c] = features[s + c]!;
        o += d;
      }
      out.set(newline, o);
      o += d;
    }
  } else {
    const ty = linearTaps(uh, fh), tx = linearTaps(uw, fw);
    for (let y = 0; y < fh; y++) {
      const y0 = ty.i0[y]!, y1 = ty.i1[y]!, wy1 = ty.l1[y]!, wy0 = 1 - wy1;
      for (let x = 0; x < fw; x++) {
        const x0 = tx.i0[x]!, x1 = tx.i1[x]!, wx1 = tx.l1[x]!, wx0 = 1 - wx1;
        const a = at(y0, x0), b = at(y0, x1), e = at(y1, x0), f = at(y1, x1);
        for (let c = 0; c < d; c++) {
          out[o + c] = wy0 * (wx0 * features[a + c]! + wx1 * features[b + c]!) + wy1 * (wx0 * features[e + c]! + wx1 * features[f + c]!);
        }
        o += d;
      }
      out.set(newline, o);
      o += d;
    }
  }
  if (o !== out.length) throw new ValueError(`packImageFeatures: internal error, wrote ${o / d} of ${layout.numTokens} tokens`);
  return { data: out, shape: [layout.numTokens, d], layout };
}

/**
 * The same packing on a backend, for the model graph: projected [1 + rows·cols, n², d] (a tensor) → [N, d], with
 * layout ops (slice, transpose, concat) and the resizeGrid op (bilinear, align_corners=False) for anyres_max_N.
 * `newline` is image_newline on the host.
 */
export function packOnBackend(
  projected: Tensor,
  imageSize: readonly [number, number],
  model: LlavaOnevisionImageModelConfig,
  newline: Float32Array,
): { features: Tensor; layout: TokenLayout } {
  const [H, W] = imageSize;
  const L = tokenLayout(H, W, model);
  const n = L.tokensPerSide, nn = n * n;
  const [gh, gw] = L.gridTokens;
  const rows = gh / n, cols = gw / n;
  const T = 1 + rows * cols;
  const d = newline.length;
  if (projected.rank !== 3 || projected.shape[0] !== T || projected.shape[1] !== nn || projected.shape[2] !== d) {
    throw new ShapeError(`packOnBackend: a ${W}×${H} image needs projected features [${T}, ${nn}, ${d}], got [${projected.shape.join(', ')}]`);
  }
  const [uh, uw] = L.unpadded, [oy, ox] = L.unpadOffset, [fh, fw] = L.final;
  const features = tidy(() => {
    const base = reshape(sliceAxis(projected, 0, 0, 1), [nn, d]);
    // tiles [rows, cols, n, n, d] → map [rows, n, cols, n, d] = [gh, gw, d]
    const tiles = reshape(sliceAxis(projected, 0, 1, T), [rows, cols, n, n, d]);
    let map = reshape(transpose(tiles, [0, 2, 1, 3, 4]), [gh, gw, d]);
    if (uh !== gh || uw !== gw) map = slice(map, [oy, ox, 0], [uh, uw, d]);
    if (L.downscaled) map = reshape(resizeGrid(reshape(map, [1, uh * uw, d]), uh, uw, fh, fw), [fh, fw, d]);
    const nl = new Float32Array(fh * d);
    for (let r = 0; r < fh; r++) nl.set(newline, r * d);
    const withNl = concat([map, tensor(projected.backend, nl, [fh, 1, d])], 1);
    return concat([base, reshape(withNl, [fh * (fw + 1), d])], 0);
  });
  return { features, layout: L };
}
