// CPU reference patch embedding and bilinear grid resize.

import type { PatchEmbedAttrs, ResizeGridAttrs } from '../../core/backend.js';
import type { Tensor } from '../../core/tensor.js';

export function patchEmbed(out: Tensor, [image, weight, bias]: [Tensor, Tensor, Tensor | null], { patch: P }: PatchEmbedAttrs): void {
  const X = image.storage as Float32Array, W = weight.storage as Float32Array, O = out.storage as Float32Array;
  const Bv = bias ? (bias.storage as Float32Array) : null;
  const [B, C, H, Wd] = image.shape as [number, number, number, number];
  const D = weight.shape[0]!;
  const gh = H / P, gw = Wd / P;
  for (let b = 0; b < B; b++) {
    for (let py = 0; py < gh; py++) {
      for (let px = 0; px < gw; px++) {
        const oOff = ((b * gh + py) * gw + px) * D;
        for (let d = 0; d < D; d++) {
          let s = Bv ? Bv[d]! : 0;
          for (let c = 0; c < C; c++) {
            for (let i = 0; i < P; i++) {
              const xRow = ((b * C + c) * H + py * P + i) * Wd + px * P;
              const wRow = ((d * C + c) * P + i) * P;
              for (let j = 0; j < P; j++) s += X[xRow + j]! * W[wRow + j]!;
            }
          }
          O[oOff + d] = s;
        }
      }
    }
  }
}

/** Source coordinate of output index i (half-pixel centres, clamped at 0 like PyTorch). */
function source(i: number, inSize: number, outSize: number): [number, number, number] {
  const x = Math.max(0, ((i + 0.5) * inSize) / outSize - 0.5);
  const i0 = Math.min(Math.floor(x), inSize - 1);
  const i1 = Math.min(i0 + 1, inSize - 1);
  return [i0, i1, x - i0];
}

/** Bilinear resize of B token grids of D channels, x at X[x0] → out at O[o0] (plain arrays and offsets, so the
 *  wasm backend runs it on its memory). */
export function resizeGridElements(O: Float32Array, o0: number, X: Float32Array, x0: number, B: number, D: number, { inH, inW, outH, outW }: ResizeGridAttrs): void {
  for (let b = 0; b < B; b++) {
    for (let oy = 0; oy < outH; oy++) {
      const [y0, y1, fy] = source(oy, inH, outH);
      for (let ox = 0; ox < outW; ox++) {
        const [xa, xb, fx] = source(ox, inW, outW);
        const base = b * inH * inW;
        const p00 = x0 + (base + y0 * inW + xa) * D, p01 = x0 + (base + y0 * inW + xb) * D;
        const p10 = x0 + (base + y1 * inW + xa) * D, p11 = x0 + (base + y1 * inW + xb) * D;
        const oOff = o0 + ((b * outH + oy) * outW + ox) * D;
        for (let d = 0; d < D; d++) {
          const top = X[p00 + d]! * (1 - fx) + X[p01 + d]! * fx;
          const bot = X[p10 + d]! * (1 - fx) + X[p11 + d]! * fx;
          O[oOff + d] = top * (1 - fy) + bot * fy;
        }
      }
    }
  }
}

export function resizeGrid(out: Tensor, [x]: [Tensor], attrs: ResizeGridAttrs): void {
  const [B, , D] = x.shape as [number, number, number];
  resizeGridElements(out.storage as Float32Array, 0, x.storage as Float32Array, 0, B, D, attrs);
}
