// Elementwise kernels: activations, broadcasting binary ops, scale, SwiGLU, dtype casts, copy.
// One thread per output element; transcendental forms are chosen to stay accurate in f32 on every gpu.js mode
// (e.g. 1 + tanh(u) is evaluated as 2σ(2u) so GELU does not cancel for negative inputs).

import type { BinaryAttrs, BinaryOp, ScaleAttrs, UnaryAttrs, UnaryOp } from '../../core/backend.js';
import type { DType } from '../../core/dtype.js';
import { broadcastStrides, sameShape, stridesOf } from '../../core/shape.js';
import type { Tensor } from '../../core/tensor.js';
import { collapse, decode16, decompose, dot, encode16, Src } from './codegen.js';
import { buf, type Env } from './env.js';

/** erfc(z) for z ≥ 0 (Chebyshev fit, fractional error < 1.2e-7), as an expression in `z`. */
function erfcExpr(z: string, t: string): string {
  return (
    `${t} * Math.exp(-${z} * ${z} - 1.26551223 + ${t} * (1.00002368 + ${t} * (0.37409196 + ${t} * (0.09678418 + ${t} * (-0.18628806 + ` +
    `${t} * (0.27886807 + ${t} * (-1.13520398 + ${t} * (1.48851587 + ${t} * (-0.82215223 + ${t} * 0.17087277)))))))))`
  );
}

/** Emits the activation of `v` into a new variable and returns its name. */
export function emitUnary(s: Src, op: UnaryOp, v: string): string {
  const r = s.v('u');
  switch (op) {
    case 'gelu_tanh': {
      // 0.5·x·(1 + tanh(u)) = x·σ(2u) = x / (1 + e^(−2u)), u = √(2/π)(x + 0.044715x³)
      const u = s.v('g');
      s.line(`const ${u} = 0.7978845608028654 * (${v} + 0.044715 * ${v} * ${v} * ${v});`);
      s.line(`const ${r} = ${v} / (1.0 + Math.exp(-2.0 * ${u}));`);
      break;
    }
    case 'gelu_erf': {
      // 0.5·x·(1 + erf(x/√2)) = 0.5·x·erfc(−x/√2): through erfc on |x| so neither sign cancels
      const z = s.v('z'), t = s.v('t'), c = s.v('c');
      s.line(`const ${z} = Math.abs(${v}) * 0.7071067811865476;`);
      s.line(`const ${t} = 1.0 / (1.0 + 0.5 * ${z});`);
      s.line(`const ${c} = ${erfcExpr(z, t)};`);
      s.line(`const ${r} = ${v} >= 0.0 ? 0.5 * ${v} * (2.0 - ${c}) : 0.5 * ${v} * ${c};`);
      break;
    }
    case 'silu':
      s.line(`const ${r} = ${v} / (1.0 + Math.exp(-${v}));`);
      break;
    case 'relu':
      s.line(`const ${r} = ${v} > 0.0 ? ${v} : 0.0;`);
      break;
    case 'tanh': {
      // (1 − e^(−2|x|)) / (1 + e^(−2|x|)) with the sign restored: finite for every x (no ∞/∞)
      const t = s.v('t'), a = s.v('a');
      s.line(`const ${t} = Math.exp(-2.0 * Math.abs(${v}));`);
      s.line(`const ${a} = (1.0 - ${t}) / (1.0 + ${t});`);
      s.line(`const ${r} = ${v} < 0.0 ? -${a} : ${a};`);
      break;
    }
    case 'exp':
      s.line(`const ${r} = Math.exp(${v});`);
      break;
    case 'neg':
      s.line(`const ${r} = -${v};`);
      break;
    case 'sqrt':
      s.line(`const ${r} = Math.sqrt(${v});`);
      break;
    case 'rsqrt':
      s.line(`const ${r} = 1.0 / Math.sqrt(${v});`);
      break;
  }
  return r;
}

export function unary(env: Env, out: Tensor, [x]: [Tensor], { op }: UnaryAttrs): void {
  const s = new Src();
  s.line('const v = x[this.thread.x];');
  const r = emitUnary(s, op, 'v');
  s.line(`return ${r};`);
  env.rt.run({ name: `unary.${op}`, source: s.fn(['x']), output: [out.size] }, [buf(x)], buf(out));
}

const BIN: Record<BinaryOp, string> = { add: '+', sub: '-', mul: '*', div: '/' };

export function binary(env: Env, out: Tensor, [a, b]: [Tensor, Tensor], { op }: BinaryAttrs): void {
  const s = new Src();
  const shape = out.shape;
  if (sameShape(a.shape, shape) && sameShape(b.shape, shape)) {
    s.line(`const i = this.thread.x;`);
    s.line(`return a[i] ${BIN[op]} b[i];`);
  } else {
    // Broadcast: stretched dims read with stride 0; dims contiguous for output and both inputs are merged first.
    const { dims, strides } = collapse(shape, [stridesOf(shape), broadcastStrides(a.shape, shape), broadcastStrides(b.shape, shape)]);
    s.line(`const i = this.thread.x;`);
    const c = decompose(s, 'i', dims);
    s.line(`return a[${dot(c, strides[1]!)}] ${BIN[op]} b[${dot(c, strides[2]!)}];`);
  }
  env.rt.run({ name: `binary.${op}`, source: s.fn(['a', 'b']), output: [out.size] }, [buf(a), buf(b)], buf(out));
}

export function scale(env: Env, out: Tensor, [x]: [Tensor], { scale: k, shift }: ScaleAttrs): void {
  // scale and shift are uniforms (kernel arguments), so one compiled kernel serves every value.
  const src = 'function (x, k, sh) {\n  return x[this.thread.x] * k + sh;\n}';
  env.rt.run({ name: 'scale', source: src, output: [out.size] }, [buf(x), k, shift], buf(out));
}

export function swiglu(env: Env, out: Tensor, [gate, up]: [Tensor, Tensor]): void {
  const src = 'function (g, u) {\n  const i = this.thread.x;\n  const v = g[i];\n  return v / (1.0 + Math.exp(-v)) * u[i];\n}';
  env.rt.run({ name: 'swiglu', source: src, output: [out.size] }, [buf(gate), buf(up)], buf(out));
}

/** Emits the f32 value of element `idx` of `name` (a tensor of storage dtype `dtype`); returns the variable. */
export function emitLoad(s: Src, name: string, idx: string, dtype: DType): string {
  const v = s.v('ld');
  if (dtype === 'f16' || dtype === 'bf16') decode16(s, dtype, `${name}[${idx}]`, v, 'sp');
  else s.line(`const ${v} = ${name}[${idx}];`);
  return v;
}

export function cast(env: Env, out: Tensor, [x]: [Tensor]): void {
  const from = x.dtype, to = out.dtype;
  const s = new Src();
  s.line('const i = this.thread.x;');
  let r: string;
  if (from === to || (from === 'i32' && to === 'f32')) {
    r = 'x[i]'; // same values (i32 is held as its integer value)
  } else {
    const v = emitLoad(s, 'x', 'i', from);
    if (to === 'f32') r = v;
    else if (to === 'i32') r = `Math.trunc(${v})`;
    else {
      r = s.v('enc');
      encode16(s, to, v, r);
    }
  }
  s.line(`return ${r};`);
  const packedIn = from === 'f16' || from === 'bf16';
  env.rt.run({ name: `cast.${from}.${to}`, source: s.fn(packedIn ? ['x', 'sp'] : ['x']), output: [out.size] }, packedIn ? [buf(x), env.specials] : [buf(x)], buf(out));
}

export function copy(env: Env, out: Tensor, [x]: [Tensor]): void {
  env.rt.run({ name: 'copy', source: 'function (x) {\n  return x[this.thread.x];\n}', output: [out.size] }, [buf(x)], buf(out));
}

/** A packed f16/bf16 tensor widened to f32 values in a temporary (the caller releases it). */
export function widen(env: Env, t: Tensor, into: import('./runtime.js').GBuf): void {
  const s = new Src();
  s.line('const i = this.thread.x;');
  const v = emitLoad(s, 'x', 'i', t.dtype);
  s.line(`return ${v};`);
  env.rt.run({ name: `widen.${t.dtype}`, source: s.fn(['x', 'sp']), output: [t.size] }, [buf(t), env.specials], into);
}
