// Row kernels: LayerNorm / RMSNorm / the modulated norm (ViLN), softmax, and RoPE.
//
// Norms and softmax: one workgroup per row. With subgroups the workgroup is one subgroup and the reductions are
// subgroupAdd/Max (no workgroup memory, no barriers); otherwise a 64-wide workgroup reduces through workgroup
// memory. Mean and variance are two passes (mean first, then Σ(x−μ)²), like the CPU reference; the third pass
// writes (x−μ)·rstd·(γ+Δγ)+(β+Δβ) in one go, so the modulated norm costs the same as a plain LayerNorm. Rows
// whose length and offsets are multiples of 4 are walked as vec4 (fewer load instructions).
// Softmax keeps a running (max, Σexp) per lane — one read pass for both — then writes exp(x−max)/Σ.
// RoPE: one invocation per rotated pair; the angle (offset+t)·θ^(−2i/r) is reduced modulo 2π in extended
// precision (the inverse frequencies come from the host as f64 split into two f32s, the product is split with
// fma), so positions in the tens of thousands keep ~1e-7 absolute angle error.

import type { NormKind, RopeAttrs } from '../../../core/backend.js';
import { broadcastStrides } from '../../../core/shape.js';
import type { Tensor } from '../../../core/tensor.js';
import { ParamLayout } from '../params.js';
import type { GpuRuntime, GpuStorage } from '../runtime.js';
import { grid, type KernelEnv, reductions, sto, vec8, WGSL_AT8, WGSL_NEGINF, WGSL_WID } from './common.js';

const normParams = new ParamLayout([
  ['rows', 'u32'],
  ['d', 'u32'],
  ['eps', 'f32'],
  ['offX', 'u32'],
  ['offO', 'u32'],
  ['offG', 'u32'],
  ['offB', 'u32'],
  ['offDG', 'u32'],
  ['offDB', 'u32'],
  ['hasG', 'u32'],
  ['hasB', 'u32'],
  ['hasDG', 'u32'],
  ['hasDB', 'u32'],
]);

function normShader(env: KernelEnv, kind: NormKind, vec: boolean): string {
  const red = reductions(env.caps);
  const T = vec ? 'vec4f' : 'f32';
  const n = vec ? 'p.d / 4u' : 'p.d';
  const o = (off: string) => (vec ? `p.${off} / 4u` : `p.${off}`);
  const hs = (v: string) => (vec ? `(${v}.x + ${v}.y + ${v}.z + ${v}.w)` : v);
  // Every optional input is always bound (a dummy when absent) and switched by a uniform flag: one shader per
  // (kind, vec) instead of 16 presence combinations.
  const decl = [
    `@group(0) @binding(0) var<storage, read> X: array<${T}>;`,
    `@group(0) @binding(1) var<storage, read> G: array<${T}>;`,
    `@group(0) @binding(2) var<storage, read> Bt: array<${T}>;`,
    `@group(0) @binding(3) var<storage, read> DG: array<${T}>;`,
    `@group(0) @binding(4) var<storage, read> DB: array<${T}>;`,
    `@group(0) @binding(5) var<storage, read_write> O: array<${T}>;`,
    `@group(0) @binding(6) var<uniform> p: P;`,
  ];
  return /* wgsl */ `${red.enable}
${normParams.wgsl('P')}
${decl.join('\n')}
${WGSL_WID}
${red.decls}
@compute @workgroup_size(${red.wg})
fn main(@builtin(workgroup_id) w: vec3u, @builtin(num_workgroups) nw: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = wid(w, nw);
  if (row >= p.rows) { return; }
  let n = ${n};
  let rb = row * n;
  let xb = ${o('offX')} + rb;
  // The mean is kept as shift + mean: (x − shift) is exact for x near the row's first value, so rows far
  // from 0 keep their precision in f32 (a rounded shift + mean would cost up to half an ulp of |x|).
  var shift = 0.0;
  var mean = 0.0;
  ${
    kind === 'layer'
      ? `shift = ${vec ? 'X[xb].x' : 'X[xb]'};
  var s = 0.0;
  for (var j = lid; j < n; j += ${red.wg}u) { let c = X[xb + j] - ${T}(shift); s += ${hs('c')}; }
  mean = ${red.sum('s')} / f32(p.d);`
      : ''
  }
  var q = 0.0;
  for (var j = lid; j < n; j += ${red.wg}u) { let c = (X[xb + j] - ${T}(shift)) - ${T}(mean); q += ${hs('(c * c)')}; }
  let rstd = 1.0 / sqrt(${red.sum('q')} / f32(p.d) + p.eps);
  let ob = ${o('offO')} + rb;
  for (var j = lid; j < n; j += ${red.wg}u) {
    // Uniform branches: absent inputs cost nothing (their dummy bindings are never read).
    var gv = ${T}(1.0);
    var bv = ${T}(0.0);
    if (p.hasG != 0u) { gv = G[${o('offG')} + j]; }
    if (p.hasDG != 0u) { gv += DG[${o('offDG')} + rb + j]; }
    if (p.hasB != 0u) { bv = Bt[${o('offB')} + j]; }
    if (p.hasDB != 0u) { bv += DB[${o('offDB')} + rb + j]; }
    O[ob + j] = ((X[xb + j] - ${T}(shift)) - ${T}(mean)) * rstd * gv + bv;
  }
}`;
}

export function norm(
  env: KernelEnv,
  out: Tensor,
  x: Tensor,
  gamma: Tensor | null,
  beta: Tensor | null,
  dGamma: Tensor | null,
  dBeta: Tensor | null,
  kind: NormKind,
  eps: number,
): void {
  const { rt } = env;
  const d = x.shape[x.rank - 1]!;
  const rows = d ? x.size / d : 0;
  if (rows === 0 || d === 0) return;
  const ins = [x, gamma, beta, dGamma, dBeta];
  const views = ins.map((t) => (t ? rt.view(sto(t)) : null));
  const ov = rt.view(sto(out));
  const vec = d % 4 === 0 && [...views, ov].every((v) => !v || v.elemOffset % 4 === 0);
  const pipe = rt.pipe({ label: `norm_${kind}${vec ? '_v4' : ''}`, code: normShader(env, kind, vec), bindings: ['r', 'r', 'r', 'r', 'r', 'w'], params: normParams });
  const dummy = rt.dummyView();
  rt.dispatch(
    pipe,
    [...views.map((v) => v ?? dummy), ov],
    {
      rows,
      d,
      eps,
      offX: views[0]!.elemOffset,
      offO: ov.elemOffset,
      offG: views[1]?.elemOffset ?? 0,
      offB: views[2]?.elemOffset ?? 0,
      offDG: views[3]?.elemOffset ?? 0,
      offDB: views[4]?.elemOffset ?? 0,
      hasG: gamma ? 1 : 0,
      hasB: beta ? 1 : 0,
      hasDG: dGamma ? 1 : 0,
      hasDB: dBeta ? 1 : 0,
    },
    grid(rows, 1, env.caps),
  );
}

// ---- softmax ----------------------------------------------------------------------------------------------

const smParams = new ParamLayout([
  ['rows', 'u32'],
  ['n', 'u32'],
  ['offX', 'u32'],
  ['offO', 'u32'],
  ['offM', 'u32'],
  ['rank', 'u32'],
  ['mLast', 'u32'],
  ['ninf', 'f32'],
  ['shapeA', 'vec4u'],
  ['shapeB', 'vec4u'],
  ['mStA', 'vec4u'],
  ['mStB', 'vec4u'],
]);

function softmaxShader(env: KernelEnv, vec: boolean, mask: boolean): string {
  const red = reductions(env.caps);
  const T = vec ? 'vec4f' : 'f32';
  const cnt = vec ? 'p.n / 4u' : 'p.n';
  const o = (off: string) => (vec ? `p.${off} / 4u` : `p.${off}`);
  const mx = (v: string) => (vec ? `max(max(${v}.x, ${v}.y), max(${v}.z, ${v}.w))` : v);
  const hs = (v: string) => (vec ? `(${v}.x + ${v}.y + ${v}.z + ${v}.w)` : v);
  const mload = vec
    ? `vec4f(M[mb + (4u * j) * p.mLast], M[mb + (4u * j + 1u) * p.mLast], M[mb + (4u * j + 2u) * p.mLast], M[mb + (4u * j + 3u) * p.mLast])`
    : `M[mb + j * p.mLast]`;
  const val = `(X[xb + j]${mask ? ` + ${mload}` : ''})`;
  return /* wgsl */ `${red.enable}
${smParams.wgsl('P')}
@group(0) @binding(0) var<storage, read> X: array<${T}>;
${mask ? '@group(0) @binding(1) var<storage, read> M: array<f32>;' : ''}
@group(0) @binding(${mask ? 2 : 1}) var<storage, read_write> O: array<${T}>;
@group(0) @binding(${mask ? 3 : 2}) var<uniform> p: P;
${WGSL_WID}
${WGSL_AT8}
${WGSL_NEGINF}
${red.decls}
@compute @workgroup_size(${red.wg})
fn main(@builtin(workgroup_id) w: vec3u, @builtin(num_workgroups) nw: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = wid(w, nw);
  if (row >= p.rows) { return; }
  let NEG_INF = p.ninf;
  let cnt = ${cnt};
  let xb = ${o('offX')} + row * cnt;
  let ob = ${o('offO')} + row * cnt;
  ${
    mask
      ? `// Mask offset of this row: its index over the leading dims, through the mask's broadcast strides.
  var mb = p.offM;
  var r = row;
  for (var d = i32(p.rank) - 2; d >= 0; d--) {
    let e = at8(p.shapeA, p.shapeB, u32(d));
    mb += (r % e) * at8(p.mStA, p.mStB, u32(d));
    r = r / e;
  }`
      : ''
  }
  var m = NEG_INF;
  var s = 0.0;
  for (var j = lid; j < cnt; j += ${red.wg}u) {
    let v = ${val};
    let bm = ${mx('v')};
    if (bm > m) {
      s = select(s * exp(m - bm), 0.0, isNegInf(m));
      m = bm;
    }
    if (!isNegInf(m)) { s += ${hs('exp(v - ' + T + '(m))')}; }
  }
  let gm = ${red.max('m')};
  let gs = ${red.sum('select(s * exp(m - gm), 0.0, isNegInf(m))')};
  let inv = select(1.0 / gs, 0.0, isNegInf(gm));
  for (var j = lid; j < cnt; j += ${red.wg}u) {
    let v = ${val};
    O[ob + j] = select(exp(v - ${T}(gm)) * inv, ${T}(0.0), ${T === 'f32' ? 'isNegInf(gm)' : 'vec4<bool>(isNegInf(gm))'});
  }
}`;
}

export function softmax(env: KernelEnv, out: Tensor, [x, mask]: [Tensor, Tensor | null]): void {
  const { rt } = env;
  const n = x.shape[x.rank - 1]!;
  const rows = n ? x.size / n : 0;
  if (rows === 0 || n === 0) return;
  const xv = rt.view(sto(x));
  const ov = rt.view(sto(out));
  const mv = mask ? rt.view(sto(mask)) : null;
  const vec = n % 4 === 0 && xv.elemOffset % 4 === 0 && ov.elemOffset % 4 === 0;
  const pipe = rt.pipe({ label: `softmax${vec ? '_v4' : ''}${mask ? '_mask' : ''}`, code: softmaxShader(env, vec, !!mask), bindings: mask ? ['r', 'r', 'w'] : ['r', 'w'], params: smParams });
  let extra = {};
  if (mask) {
    const ms = broadcastStrides(mask.shape, x.shape);
    const [sA, sB] = vec8(x.shape, 1);
    const [mA, mB] = vec8(ms);
    extra = { rank: x.rank, mLast: ms[x.rank - 1]!, shapeA: sA, shapeB: sB, mStA: mA, mStB: mB, offM: mv!.elemOffset };
  }
  rt.dispatch(pipe, mv ? [xv, mv, ov] : [xv, ov], { rows, n, offX: xv.elemOffset, offO: ov.elemOffset, ninf: -Infinity, ...extra }, grid(rows, 1, env.caps));
}

// ---- RoPE -------------------------------------------------------------------------------------------------

const ropeParams = new ParamLayout([
  ['rows', 'u32'],
  ['T', 'u32'],
  ['H', 'u32'],
  ['D', 'u32'],
  ['half', 'u32'],
  ['rot', 'u32'],
  ['offset', 'u32'],
  ['offX', 'u32'],
  ['offO', 'u32'],
  ['offF', 'u32'],
]);

const ROPE_WGSL = /* wgsl */ `${ropeParams.wgsl('P')}
@group(0) @binding(0) var<storage, read> X: array<f32>;
@group(0) @binding(1) var<storage, read> F: array<vec2f>;
@group(0) @binding(2) var<storage, read_write> O: array<f32>;
@group(0) @binding(3) var<uniform> p: P;
${WGSL_WID}
fn red2pi(x: f32) -> f32 {
  let k = round(x * 0.15915494309189535);
  return ((x - k * 6.28125) - k * 0.0019354820251464844) - k * -1.7484555314695172e-7;
}
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) w: vec3u, @builtin(num_workgroups) nw: vec3u, @builtin(local_invocation_index) li: u32) {
  let per = p.half + (p.D - p.rot);
  let e = wid(w, nw) * 64u + li;
  if (e >= p.rows * per) { return; }
  let row = e / per;
  let j = e % per;
  let xb = p.offX + row * p.D;
  let ob = p.offO + row * p.D;
  if (j >= p.half) {
    let i = p.rot + (j - p.half);
    O[ob + i] = X[xb + i];
    return;
  }
  let t = (row / p.H) % p.T;
  let pos = p.offset + t;
  let f = F[p.offF / 2u + j];
  // a = pos·(hi + lo) mod 2π without relying on fma (lavapipe's is not fused): pos and hi are split into
  // 12-bit halves so every partial product is exact, and each product is reduced on its own with a three-part
  // Cody–Waite 2π (8 + 12 significant bits + f32 rest: k·C1 and k·C2 are exact for k < 4096).
  let ph = f32(pos & 0xfffff000u);
  let pl = f32(pos & 0xfffu);
  let hh = bitcast<f32>(bitcast<u32>(f.x) & 0xfffff000u);
  let hl = f.x - hh;
  let r = red2pi(ph * hh) + red2pi(ph * hl) + red2pi(pl * hh) + red2pi(pl * hl) + red2pi(f32(pos) * f.y);
  let c = cos(r);
  let s = sin(r);
  let x1 = X[xb + j];
  let x2 = X[xb + j + p.half];
  O[ob + j] = x1 * c - x2 * s;
  O[ob + j + p.half] = x2 * c + x1 * s;
}`;

/** Inverse-frequency tables (f64 split into hi/lo f32 pairs), made once per (theta, rotaryDim) per runtime. */
const freqTables = new WeakMap<GpuRuntime, Map<string, GpuStorage>>();

function freqTable(rt: GpuRuntime, theta: number, rotaryDim: number): GpuStorage {
  let m = freqTables.get(rt);
  if (!m) freqTables.set(rt, (m = new Map()));
  const key = `${theta}:${rotaryDim}`;
  let st = m.get(key);
  if (!st || st.released) {
    const half = rotaryDim / 2;
    const data = new Float32Array(2 * half);
    for (let i = 0; i < half; i++) {
      const f = Math.pow(theta, (-2 * i) / rotaryDim);
      const hi = Math.fround(f);
      data[2 * i] = hi;
      data[2 * i + 1] = Math.fround(f - hi);
    }
    st = rt.allocStorage(data.length, 'f32', 'rope-freqs');
    rt.write(st, data);
    m.set(key, st);
  }
  return st;
}

export function rope(env: KernelEnv, out: Tensor, [x]: [Tensor], { theta, offset, rotaryDim }: RopeAttrs): void {
  const { rt } = env;
  const [B, T, H, D] = x.shape as [number, number, number, number];
  const rows = B * T * H;
  if (rows === 0) return;
  const ft = freqTable(rt, theta, rotaryDim);
  const xv = rt.view(sto(x));
  const ov = rt.view(sto(out));
  const fv = rt.view(ft);
  const pipe = rt.pipe({ label: 'rope', code: ROPE_WGSL, bindings: ['r', 'r', 'w'], params: ropeParams });
  const half = rotaryDim / 2;
  rt.dispatch(
    pipe,
    [xv, fv, ov],
    { rows, T, H, D, half, rot: rotaryDim, offset, offX: xv.elemOffset, offO: ov.elemOffset, offF: fv.elemOffset },
    grid(rows * (half + D - rotaryDim), 64, env.caps),
  );
}
