// Data movement as gpu.js kernels (pure indexing, one thread per output element): transpose, slice, concat,
// writeSlice, embedding gather, bilinear grid resize.
//
// gpu.js kernels write a whole output and nothing else, so the in-place writeSlice is a kernel that produces the
// full new destination (the old values where the slice is not written) and replaces the destination's storage:
// appending one token to a KV cache moves the whole cache.

import type { ConcatAttrs, ResizeGridAttrs, SliceAttrs, TransposeAttrs, WriteSliceAttrs } from '../../core/backend.js';
import { stridesOf } from '../../core/shape.js';
import type { Tensor } from '../../core/tensor.js';
import { collapse, decompose, dot, lit, Src } from './codegen.js';
import { buf, type Env, prod } from './env.js';
import { emitLoad } from './ops-elementwise.js';
import type { GBuf } from './runtime.js';

/** Inputs per concat kernel: WebGPU guarantees 8 storage buffers per shader stage by default (inputs + output). */
export const CONCAT_GROUP = 6;

export function transpose(env: Env, out: Tensor, [x]: [Tensor], { perm }: TransposeAttrs): void {
  if (out.size === 0) return;
  const xs = stridesOf(x.shape);
  const step = perm.map((p) => xs[p]!);
  const { dims, strides } = collapse(out.shape, [stridesOf(out.shape), step]);
  const s = new Src();
  s.line('const i = this.thread.x;');
  const c = decompose(s, 'i', dims);
  s.line(`return x[${dot(c, strides[1]!)}];`);
  env.rt.run({ name: 'transpose', source: s.fn(['x']), output: [out.size] }, [buf(x)], buf(out));
}

export function slice(env: Env, out: Tensor, [x]: [Tensor], { begin }: SliceAttrs): void {
  if (out.size === 0) return;
  const xs = stridesOf(x.shape);
  const base = begin.reduce((acc, b, d) => acc + b * xs[d]!, 0);
  const { dims, strides } = collapse(out.shape, [stridesOf(out.shape), xs]);
  const s = new Src();
  s.line('const i = this.thread.x;');
  const c = decompose(s, 'i', dims);
  s.line(`return x[${dot(c, strides[1]!, base)}];`);
  env.rt.run({ name: 'slice', source: s.fn(['x']), output: [out.size] }, [buf(x)], buf(out));
}

/** [outer, axis, inner] around `axis`. */
function split(shape: readonly number[], axis: number): [number, number, number] {
  return [prod(shape.slice(0, axis)), shape[axis]!, prod(shape.slice(axis + 1))];
}

export function concat(env: Env, out: Tensor, xs: Tensor[], { axis }: ConcatAttrs): void {
  if (out.size === 0) return;
  const [outer, total, inner] = split(out.shape, axis);
  // Inputs in groups of CONCAT_GROUP; after the first group each kernel also reads the output so far.
  const parts: { x: Tensor; at: number }[] = [];
  let at = 0;
  for (const x of xs) {
    if (x.size > 0) parts.push({ x, at });
    at += x.shape[axis]!;
  }
  for (let g = 0; g < parts.length || g === 0; g += CONCAT_GROUP) {
    const group = parts.slice(g, g + CONCAT_GROUP);
    const first = g === 0;
    const s = new Src();
    s.line('const i = this.thread.x;');
    const [o, a, n] = decompose(s, 'i', [outer, total, inner]);
    s.line(first ? 'let v = 0.0;' : 'let v = prev[i];');
    group.forEach(({ x, at: off }, k) => {
      const len = x.shape[axis]!;
      s.line(`if (${a} >= ${lit(off)} && ${a} < ${lit(off + len)}) { v = x${k}[(${o} * ${lit(len)} + ${a} - ${lit(off)}) * ${lit(inner)} + ${n}]; }`);
    });
    s.line('return v;');
    const names = group.map((_, k) => `x${k}`);
    const args: GBuf[] = group.map(({ x }) => buf(x));
    env.rt.run(
      { name: 'concat', source: s.fn(first ? names : ['prev', ...names]), output: [out.size] },
      first ? args : [buf(out), ...args],
      buf(out),
    );
  }
}

export function writeSlice(env: Env, dst: Tensor, [src]: [Tensor], { axis, start }: WriteSliceAttrs): void {
  if (src.size === 0 || dst.size === 0) return;
  const [, total, inner] = split(dst.shape, axis);
  const len = src.shape[axis]!;
  // `start` is a uniform, so appending token after token to a KV cache reuses one compiled kernel.
  const s = new Src();
  s.line('const i = this.thread.x;');
  const [o, a, n] = decompose(s, 'i', [dst.size / (total * inner), total, inner]);
  s.line('let v = d[i];');
  s.line(`if (${a} >= st && ${a} < st + ${lit(len)}) { v = src[(${o} * ${lit(len)} + ${a} - st) * ${lit(inner)} + ${n}]; }`);
  s.line('return v;');
  env.rt.run({ name: 'writeSlice', source: s.fn(['d', 'src', 'st']), output: [dst.size] }, [buf(dst), buf(src), start], buf(dst));
}

export function embedding(env: Env, out: Tensor, [table, ids]: [Tensor, Tensor]): void {
  if (out.size === 0) return;
  const [V, D] = table.shape as [number, number];
  const packed = table.dtype === 'f16' || table.dtype === 'bf16';
  const s = new Src();
  s.line('const i = this.thread.x;');
  const [t, d] = decompose(s, 'i', [ids.size, D]);
  s.line(`const id = ids[${t}];`);
  s.line('let v = 0.0;');
  s.line(`if (id >= 0.0 && id < ${lit(V)}) {`);
  const ld = emitLoad(s, 'tb', `id * ${lit(D)} + ${d}`, table.dtype);
  s.line(`  v = ${ld};`);
  s.line('}');
  s.line('return v;');
  env.rt.run(
    { name: `embedding.${table.dtype}`, source: s.fn(packed ? ['tb', 'ids', 'sp'] : ['tb', 'ids']), output: [out.size] },
    packed ? [buf(table), buf(ids), env.specials] : [buf(table), buf(ids)],
    buf(out),
  );
}

/** Bilinear, half-pixel centres, clamped like PyTorch (align_corners = False). */
export function resizeGrid(env: Env, out: Tensor, [x]: [Tensor], { inH, inW, outH, outW }: ResizeGridAttrs): void {
  if (out.size === 0) return;
  const [B, , D] = x.shape as [number, number, number];
  const s = new Src();
  s.line('const i = this.thread.x;');
  const [b, p, d] = decompose(s, 'i', [B, outH * outW, D]);
  const [oy, ox] = decompose(s, p!, [outH, outW]);
  const coord = (o: string, inS: number, outS: number, c: string) => {
    s.line(`let ${c}s = (${o} + 0.5) * ${lit(inS)} / ${lit(outS)} - 0.5; if (${c}s < 0.0) { ${c}s = 0.0; }`);
    s.line(`let ${c}0 = Math.floor(${c}s); if (${c}0 > ${lit(inS - 1)}) { ${c}0 = ${lit(inS - 1)}; }`);
    s.line(`let ${c}1 = ${c}0 + 1.0; if (${c}1 > ${lit(inS - 1)}) { ${c}1 = ${lit(inS - 1)}; }`);
    s.line(`const ${c}f = ${c}s - ${c}0;`);
  };
  coord(oy!, inH, outH, 'y');
  coord(ox!, inW, outW, 'x');
  s.line(`const bb = ${b} * ${lit(inH * inW)};`);
  const at = (yy: string, xx: string) => `x[(bb + ${yy} * ${lit(inW)} + ${xx}) * ${lit(D)} + ${d}]`;
  s.line(`const top = ${at('y0', 'x0')} * (1.0 - xf) + ${at('y0', 'x1')} * xf;`);
  s.line(`const bot = ${at('y1', 'x0')} * (1.0 - xf) + ${at('y1', 'x1')} * xf;`);
  s.line('return top * (1.0 - yf) + bot * yf;');
  env.rt.run({ name: 'resizeGrid', source: s.fn(['x']), output: [out.size] }, [buf(x)], buf(out));
}
