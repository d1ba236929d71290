// Norms and the other row reductions: LayerNorm / RMSNorm / modulated norm, softmax, argmax (every backend keeps
// its norms in a file named norm: cpu/norm.ts, webgpu/kernels/norm.ts, wasm/gen-norm.ts, this one).
//
// gpu.js has no workgroup memory or multi-output kernels, so a row statistic is its own kernel with one thread
// per row looping over the row, and the elementwise pass reads it. Softmax = row max → row Σexp → normalise
// (3 kernels); norms = row mean (LayerNorm only) → row 1/σ → scale-and-shift (2–3 kernels).

import type { ModulatedNormAttrs, NormAttrs, NormKind } from '../../core/backend.js';
import { broadcastStrides } from '../../core/shape.js';
import type { Tensor } from '../../core/tensor.js';
import { decompose, dot, lit, Src } from './codegen.js';
import { buf, type Env, release, tmp } from './env.js';
import { emitLoad } from './ops-elementwise.js';
import type { GBuf } from './runtime.js';

/** −FLT_MAX: a row max below it is −∞ (a fully masked row). */
export const NEG_MAX = '-3.4028234663852886e38';

export function softmax(env: Env, out: Tensor, [x, mask]: [Tensor, Tensor | null]): void {
  const n = x.shape[x.rank - 1]!;
  const rows = out.size / n;
  if (out.size === 0) return;
  const rowShape = x.shape.slice(0, -1);
  const ms = mask ? broadcastStrides(mask.shape, x.shape) : [];
  const mCol = mask ? ms[ms.length - 1]! : 0;
  const N = lit(n);

  /** Emits `mo`: the mask offset of row `r` (decomposed over the row dims); '' without a mask. */
  const maskRow = (s: Src, r: string): string => {
    if (!mask) return '';
    const c = decompose(s, r, rowShape);
    s.line(`const mo = ${dot(c, ms.slice(0, -1))};`);
    return 'mo';
  };
  const val = (j: string) => (mask ? `x[base + ${j}] + m[mo + ${j} * ${lit(mCol)}]` : `x[base + ${j}]`);
  const args = mask ? ['x', 'm'] : ['x'];
  const ins: GBuf[] = mask ? [buf(x), buf(mask)] : [buf(x)];

  // 1. row max (the first element seeds it, so no −∞ literal is needed)
  let s = new Src();
  s.line('const r = this.thread.x;');
  s.line(`const base = r * ${N};`);
  maskRow(s, 'r');
  s.line(`let mx = ${val('0.0')};`);
  s.line(`for (let j = 1; j < ${n}; j++) {`);
  s.line(`  const v = ${val('j')};`);
  s.line('  if (v > mx) { mx = v; }');
  s.line('}');
  s.line('return mx;');
  const mx = tmp(env, rows);
  env.rt.run({ name: 'softmax.max', source: s.fn(args), output: [rows] }, ins, mx);

  // 2. row Σ exp(v − max); a fully masked row (max = −∞) sums to 0
  s = new Src();
  s.line('const r = this.thread.x;');
  s.line(`const base = r * ${N};`);
  maskRow(s, 'r');
  s.line('const mv = mx[r];');
  s.line('let sum = 0.0;');
  s.line(`if (mv >= ${NEG_MAX}) {`);
  s.line(`  for (let j = 0; j < ${n}; j++) { sum += Math.exp(${val('j')} - mv); }`);
  s.line('}');
  s.line('return sum;');
  const sm = tmp(env, rows);
  env.rt.run({ name: 'softmax.sum', source: s.fn([...args, 'mx']), output: [rows] }, [...ins, mx], sm);

  // 3. normalise
  s = new Src();
  s.line('const i = this.thread.x;');
  const [r, j] = decompose(s, 'i', [rows, n]);
  s.line(`const base = ${r} * ${N};`);
  maskRow(s, r!);
  s.line(`const mv = mx[${r}];`);
  s.line('let p = 0.0;');
  s.line(`if (mv >= ${NEG_MAX}) { p = Math.exp(${val(j!)} - mv) / sm[${r}]; }`);
  s.line('return p;');
  env.rt.run({ name: 'softmax.norm', source: s.fn([...args, 'mx', 'sm']), output: [out.size] }, [...ins, mx, sm], buf(out));
  release(env, mx, sm);
}

/** Row statistics: mean (LayerNorm; a shifted sum keeps it exact for values far from 0) and 1/√(var + ε). */
function normStats(env: Env, x: Tensor, kind: NormKind, eps: number): { mean: GBuf | null; rstd: GBuf } {
  const d = x.shape[x.rank - 1]!;
  const rows = x.size / d;
  const D = lit(d);
  let mean: GBuf | null = null;
  if (kind === 'layer') {
    const s = new Src();
    s.line('const base = this.thread.x * ' + D + ';');
    s.line('const x0 = x[base];');
    s.line('let acc = 0.0;');
    s.line(`for (let j = 0; j < ${d}; j++) { acc += x[base + j] - x0; }`);
    s.line(`return x0 + acc / ${D};`);
    mean = tmp(env, rows);
    env.rt.run({ name: 'norm.mean', source: s.fn(['x']), output: [rows] }, [buf(x)], mean);
  }
  const s = new Src();
  s.line('const r = this.thread.x;');
  s.line(`const base = r * ${D};`);
  s.line(kind === 'layer' ? 'const mu = mean[r];' : 'const mu = 0.0;');
  s.line('let acc = 0.0;');
  s.line(`for (let j = 0; j < ${d}; j++) { const c = x[base + j] - mu; acc += c * c; }`);
  s.line(`return 1.0 / Math.sqrt(acc / ${D} + eps);`);
  const rstd = tmp(env, rows);
  env.rt.run(
    { name: `norm.rstd.${kind}`, source: s.fn(kind === 'layer' ? ['x', 'mean', 'eps'] : ['x', 'eps']), output: [rows] },
    kind === 'layer' ? [buf(x), mean!, eps] : [buf(x), eps],
    rstd,
  );
  return { mean, rstd };
}

function normApply(env: Env, out: Tensor, x: Tensor, kind: NormKind, eps: number, g: Tensor | null, b: Tensor | null, dg: Tensor | null, db: Tensor | null): void {
  if (out.size === 0) return;
  const d = x.shape[x.rank - 1]!;
  const { mean, rstd } = normStats(env, x, kind, eps);
  const s = new Src();
  const args = ['x', 'rstd'];
  const ins: GBuf[] = [buf(x), rstd];
  const add = (name: string, b: GBuf | null) => {
    if (!b) return false;
    args.push(name);
    ins.push(b);
    return true;
  };
  const opt = (t: Tensor | null) => (t ? buf(t) : null);
  const hasMean = add('mean', mean);
  const hasG = add('g', opt(g)), hasB = add('b', opt(b)), hasDg = add('dg', opt(dg)), hasDb = add('db', opt(db));
  s.line('const i = this.thread.x;');
  const [r, j] = decompose(s, 'i', [out.size / d, d]);
  s.line(`const nrm = (x[i] - ${hasMean ? `mean[${r}]` : '0.0'}) * rstd[${r}];`);
  const gain = [hasG ? `g[${j}]` : '', hasDg ? 'dg[i]' : ''].filter(Boolean).join(' + ') || '1.0';
  const bias = [hasB ? `b[${j}]` : '', hasDb ? 'db[i]' : ''].filter(Boolean).join(' + ');
  s.line(`return (${gain}) * nrm${bias ? ` + (${bias})` : ''};`);
  env.rt.run({ name: `norm.apply.${kind}`, source: s.fn(args), output: [out.size] }, ins, buf(out));
  release(env, rstd, ...(mean ? [mean] : []));
}

export function layerNorm(env: Env, out: Tensor, [x, g, b]: [Tensor, Tensor | null, Tensor | null], { eps }: NormAttrs): void {
  normApply(env, out, x, 'layer', eps, g, b, null, null);
}

export function rmsNorm(env: Env, out: Tensor, [x, g]: [Tensor, Tensor | null], { eps }: NormAttrs): void {
  normApply(env, out, x, 'rms', eps, g, null, null, null);
}

export function modulatedNorm(
  env: Env,
  out: Tensor,
  [x, g, b, dg, db]: [Tensor, Tensor, Tensor | null, Tensor | null, Tensor | null],
  { kind, eps }: ModulatedNormAttrs,
): void {
  normApply(env, out, x, kind, eps, g, b, dg, db);
}

export function argmax(env: Env, out: Tensor, [x]: [Tensor]): void {
  const n = x.shape[x.rank - 1]!;
  const rows = out.size;
  if (rows === 0) return;
  const packed = x.dtype === 'f16' || x.dtype === 'bf16';
  const s = new Src();
  s.line(`const base = this.thread.x * ${lit(n)};`);
  const v0 = emitLoad(s, 'x', 'base', x.dtype);
  s.line(`let bv = ${v0};`);
  s.line('let best = 0.0;');
  s.line('let found = 0.0;');
  s.line('if (bv != bv) { found = 1.0; }');
  s.line('let jf = 0.0;');
  s.line(`for (let j = 1; j < ${n}; j++) {`);
  s.line('  jf = jf + 1.0;');
  const v = emitLoad(s, 'x', 'base + jf', x.dtype);
  // first NaN wins (NaN counts as largest), else the first strict maximum
  s.line(`  if (found < 0.5) { if (${v} != ${v}) { best = jf; found = 1.0; } else { if (${v} > bv) { bv = ${v}; best = jf; } } }`);
  s.line('}');
  s.line('return best;');
  env.rt.run({ name: 'argmax', source: s.fn(packed ? ['x', 'sp'] : ['x']), output: [rows] }, packed ? [buf(x), env.specials] : [buf(x)], buf(out));
}
