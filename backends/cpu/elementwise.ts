// CPU reference: broadcasting binary ops, activations, scale, SwiGLU.

import type { BinaryAttrs, ScaleAttrs, UnaryAttrs, UnaryOp } from '../../core/backend.js';
import { broadcastStrides, sameShape } from '../../core/shape.js';
import type { Tensor } from '../../core/tensor.js';
import { geluErf, geluTanh, silu } from './math.js';

const f32 = (t: Tensor) => t.storage as Float32Array;

const BINARY: Record<BinaryAttrs['op'], (a: number, b: number) => number> = {
  add: (a, b) => a + b,
  sub: (a, b) => a - b,
  mul: (a, b) => a * b,
  div: (a, b) => a / b,
};

export function binary(out: Tensor, [a, b]: [Tensor, Tensor], { op }: BinaryAttrs): void {
  const fn = BINARY[op];
  const o = f32(out), x = f32(a), y = f32(b);
  if (sameShape(a.shape, b.shape)) {
    for (let i = 0; i < o.length; i++) o[i] = fn(x[i]!, y[i]!);
    return;
  }
  // General broadcasting: walk the output with an odometer, advancing each input by its (possibly 0) stride.
  const shape = out.shape;
  const rank = shape.length;
  const sa = broadcastStrides(a.shape, shape);
  const sb = broadcastStrides(b.shape, shape);
  const idx = new Array<number>(rank).fill(0);
  let ia = 0, ib = 0;
  for (let i = 0; i < o.length; i++) {
    o[i] = fn(x[ia]!, y[ib]!);
    for (let d = rank - 1; d >= 0; d--) {
      idx[d]!++;
      ia += sa[d]!;
      ib += sb[d]!;
      if (idx[d]! < shape[d]!) break;
      ia -= sa[d]! * shape[d]!;
      ib -= sb[d]! * shape[d]!;
      idx[d] = 0;
    }
  }
}

const UNARY: Record<UnaryOp, (x: number) => number> = {
  gelu_tanh: geluTanh,
  gelu_erf: geluErf,
  silu,
  relu: (x) => (x > 0 ? x : 0),
  tanh: Math.tanh,
  exp: Math.exp,
  neg: (x) => -x,
  sqrt: Math.sqrt,
  rsqrt: (x) => 1 / Math.sqrt(x),
};

export function unary(out: Tensor, [x]: [Tensor], { op }: UnaryAttrs): void {
  const fn = UNARY[op];
  const o = f32(out), v = f32(x);
  for (let i = 0; i < o.length; i++) o[i] = fn(v[i]!);
}

export function scale(out: Tensor, [x]: [Tensor], { scale: s, shift }: ScaleAttrs): void {
  const o = f32(out), v = f32(x);
  for (let i = 0; i < o.length; i++) o[i] = v[i]! * s + shift;
}

export function swiglu(out: Tensor, [gate, up]: [Tensor, Tensor]): void {
  const o = f32(out), g = f32(gate), u = f32(up);
  for (let i = 0; i < o.length; i++) o[i] = silu(g[i]!) * u[i]!;
}
