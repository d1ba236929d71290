// Shared pieces of the WGSL kernels: storage access, grids, reductions, unpacking of 16-bit floats, and the
// host-side shape helpers (dimension collapsing) the kernels use to keep index math short.

import type { Tensor } from '../../../core/tensor.js';
import type { Caps, GpuRuntime, GpuStorage } from '../runtime.js';

export interface KernelEnv {
  rt: GpuRuntime;
  caps: Caps;
}

export function sto(t: Tensor): GpuStorage {
  return t.storage as GpuStorage;
}

/** Workgroups for `items` work items at `perGroup` items per workgroup, as a 2-D grid within the per-dimension
 *  limit. Shaders linearise with `wid(w, nw)`. */
export function grid(items: number, perGroup: number, caps: Caps, z = 1): [number, number, number] {
  const groups = Math.ceil(items / perGroup);
  if (groups === 0) return [0, 0, 0];
  const lim = caps.maxWorkgroupsPerDim;
  const x = Math.min(groups, lim);
  return [x, Math.ceil(groups / x), z];
}

/** Linear workgroup index for a 2-D grid made by grid(). */
export const WGSL_WID = /* wgsl */ `fn wid(w: vec3u, nw: vec3u) -> u32 { return w.x + w.y * nw.x; }`;

/** −∞ and NaN tests on the bits: WGSL lets compilers assume finite floats, so comparisons with infinities or
 *  x != x may be folded away. */
export const WGSL_NEGINF = /* wgsl */ `fn isNegInf(x: f32) -> bool { return bitcast<u32>(x) == 0xff800000u; }`;

/** 16-bit float unpacking: bf16 is the top half of an f32; f16 through unpack2x16float. `h` picks the half. */
export const WGSL_HALF = /* wgsl */ `
fn bf16lo(w: u32) -> f32 { return bitcast<f32>(w << 16u); }
fn bf16hi(w: u32) -> f32 { return bitcast<f32>(w & 0xffff0000u); }
fn unpackBf16(w: u32) -> vec2f { return vec2f(bf16lo(w), bf16hi(w)); }
fn unpackF16(w: u32) -> vec2f { return unpack2x16float(w); }
`;

/** WGSL expression turning a u32 word `w` into vec2f for a packed dtype. */
export function unpack2(dtype: 'f16' | 'bf16', w: string): string {
  return dtype === 'bf16' ? `unpackBf16(${w})` : `unpackF16(${w})`;
}


/**
 * Row reductions over a workgroup. With subgroups (workgroup = one subgroup) they are subgroupAdd/Max; without,
 * a 64-wide workgroup writes partials to workgroup memory and every invocation sums all of them (two barriers,
 * no tree: lavapipe serialises invocations at barriers, so fewer barriers beat a log-depth tree).
 * Both must be called in uniform control flow.
 */
export function reductions(caps: Caps): { wg: number; enable: string; decls: string; sum: (x: string) => string; max: (x: string) => string; min: (x: string) => string } {
  if (caps.subgroups) {
    return {
      wg: caps.sgSize,
      enable: 'enable subgroups;',
      decls: '',
      sum: (x) => `subgroupAdd(${x})`,
      max: (x) => `subgroupMax(${x})`,
      min: (x) => `subgroupMin(${x})`,
    };
  }
  return {
    wg: 64,
    enable: '',
    decls: /* wgsl */ `
var<workgroup> redF: array<f32, 64>;
fn wgSum(x: f32, li: u32) -> f32 {
  workgroupBarrier();
  redF[li] = x;
  workgroupBarrier();
  var s = 0.0;
  for (var i = 0u; i < 64u; i++) { s += redF[i]; }
  return s;
}
fn wgMax(x: f32, li: u32) -> f32 {
  workgroupBarrier();
  redF[li] = x;
  workgroupBarrier();
  var s = redF[0];
  for (var i = 1u; i < 64u; i++) { s = max(s, redF[i]); }
  return s;
}
fn wgMin(x: f32, li: u32) -> f32 {
  workgroupBarrier();
  redF[li] = x;
  workgroupBarrier();
  var s = redF[0];
  for (var i = 1u; i < 64u; i++) { s = min(s, redF[i]); }
  return s;
}`,
    sum: (x) => `wgSum(${x}, lid)`,
    max: (x) => `wgMax(${x}, lid)`,
    min: (x) => `wgMin(${x}, lid)`,
  };
}

/**
 * Merges adjacent dimensions that every operand walks contiguously (stride[d] = stride[d+1]·shape[d+1] for all
 * operands, or the dimension has size 1), so index math runs over as few dimensions as possible.
 */
export function collapseDims(shape: readonly number[], strides: readonly (readonly number[])[]): { shape: number[]; strides: number[][] } {
  const outShape: number[] = [];
  const outStrides: number[][] = strides.map(() => []);
  for (let d = 0; d < shape.length; d++) {
    const n = shape[d]!;
    if (n === 1) continue;
    const last = outShape.length - 1;
    if (last >= 0 && strides.every((s, k) => outStrides[k]![last] === s[d]! * n)) {
      outShape[last]! *= n;
      strides.forEach((s, k) => (outStrides[k]![last] = s[d]!));
      continue;
    }
    outShape.push(n);
    strides.forEach((s, k) => outStrides[k]!.push(s[d]!));
  }
  if (outShape.length === 0) {
    outShape.push(1);
    outStrides.forEach((s) => s.push(0));
  }
  return { shape: outShape, strides: outStrides };
}

/** Pads a list to 8 entries as two vec4s for a uniform block. */
export function vec8(xs: readonly number[], fill = 0): [number[], number[]] {
  const a = [...xs];
  while (a.length < 8) a.push(fill);
  return [a.slice(0, 4), a.slice(4, 8)];
}

/** WGSL helper reading entry i of an 8-entry list stored as two vec4<u32> uniforms. */
export const WGSL_AT8 = /* wgsl */ `fn at8(a: vec4u, b: vec4u, i: u32) -> u32 { if (i < 4u) { return a[i]; } return b[i - 4u]; }`;


/** Numerically careful scalar functions (WGSL has no erf and its tanh may lose accuracy near 0 or overflow). */
export const WGSL_MATH = /* wgsl */ `
fn expm1f(y: f32) -> f32 {
  if (abs(y) < 0.5) {
    // Taylor series to y^9/9!: relative error < 1e-9 on |y| < 0.5.
    return y * (1.0 + y * (0.5 + y * (0.16666667 + y * (0.041666668 + y * (0.008333334 + y * (0.0013888889 + y * (0.0001984127 + y * (0.0000248016 + y * 0.0000027557319))))))));
  }
  return exp(y) - 1.0;
}
fn tanhf(x: f32) -> f32 {
  let e = expm1f(-2.0 * abs(x));
  let t = -e / (e + 2.0);
  return select(t, -t, x < 0.0);
}
// erfc with fractional error < 1.2e-7 (Chebyshev fit of exp(-z^2) times a polynomial in t = 1/(1 + z/2)).
fn erff(x: f32) -> f32 {
  let z = abs(x);
  let t = 1.0 / (1.0 + 0.5 * z);
  let poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
  let erfc = t * exp(-z * z + poly);
  let r = 1.0 - erfc;
  return select(r, -r, x < 0.0);
}
fn geluTanh(x: f32) -> f32 { return 0.5 * x * (1.0 + tanhf(0.7978845608028654 * (x + 0.044715 * x * x * x))); }
fn geluErf(x: f32) -> f32 { return 0.5 * x * (1.0 + erff(x * 0.7071067811865476)); }
fn siluf(x: f32) -> f32 { return x / (1.0 + exp(-x)); }
`;

export function roundUp(n: number, m: number): number {
  return Math.ceil(n / m) * m;
}
