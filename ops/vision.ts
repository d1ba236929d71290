// Vision-side ops: patch embedding (a convolution whose stride equals its kernel) and bilinear token-grid resize.

import { ShapeError, fmtShape } from '../core/errors.js';
import type { Tensor } from '../core/tensor.js';
import { F32, requireDType, requireInt, requireRank, requireShape } from './check.js';
import { runKernel } from './dispatch.js';

/** image [B, C, H, W], weight [D, C, P, P], bias [D] → tokens [B, (H/P)·(W/P), D] in row-major patch order. */
export function patchEmbed(image: Tensor, weight: Tensor, bias: Tensor | null, patch: number): Tensor {
  const op = 'patchEmbed';
  requireRank(op, 'image', image, 4);
  requireRank(op, 'weight', weight, 4);
  requireDType(op, 'image', image, F32);
  requireDType(op, 'weight', weight, F32);
  requireInt(op, 'patch', patch, 1);
  const [B, C, H, W] = image.shape as [number, number, number, number];
  const D = weight.shape[0]!;
  requireShape(op, 'weight', weight, [D, C, patch, patch]);
  if (bias) requireDType(op, 'bias', bias, F32), requireShape(op, 'bias', bias, [D]);
  if (H % patch || W % patch) throw new ShapeError(`${op}: image ${fmtShape(image.shape)} is not divisible into ${patch}×${patch} patches`);
  const tokens = (H / patch) * (W / patch);
  return runKernel(op, [B, tokens, D], 'f32', [image, weight, bias], { patch }, { flops: 2 * B * tokens * D * C * patch * patch });
}

/** Bilinear resize of a token grid x [B, inH·inW, D] → [B, outH·outW, D] (align_corners = False). */
export function resizeGrid(x: Tensor, inH: number, inW: number, outH: number, outW: number): Tensor {
  const op = 'resizeGrid';
  requireRank(op, 'x', x, 3);
  requireDType(op, 'x', x, F32);
  for (const [n, v] of [['inH', inH], ['inW', inW], ['outH', outH], ['outW', outW]] as const) requireInt(op, n, v, 1);
  if (x.shape[1] !== inH * inW) throw new ShapeError(`${op}: x ${fmtShape(x.shape)} does not hold a ${inH}×${inW} grid`);
  const [B, , D] = x.shape as [number, number, number];
  return runKernel(op, [B, outH * outW, D], 'f32', [x], { inH, inW, outH, outW }, { flops: 8 * B * outH * outW * D });
}

/** 2× bilinear downsample of a token grid: H×W → ⌈H/2⌉×⌈W/2⌉ (LLaVA-OneVision's video pooling, 27×27 → 14×14). */
export function downsample2x(x: Tensor, h: number, w: number): Tensor {
  return resizeGrid(x, h, w, Math.ceil(h / 2), Math.ceil(w / 2));
}
