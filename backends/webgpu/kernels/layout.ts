// Layout kernels: transpose, slice, concat, writeSlice, copy — for every dtype (4-byte f32/i32 moved as u32
// words, 16-bit f16/bf16 moved as packed halves).
//
// Strategy: contiguous whole-tensor moves and word-aligned runs are buffer-to-buffer copies (a memcpy in the
// driver, no shader). Everything else is one of two shaders that each own four consecutive destination elements
// per invocation (so packed halves are never written by two invocations at once):
//  * gather (transpose, slice): the destination is contiguous, source offsets come from strides over the
//    collapsed shape (dimensions that stay adjacent are merged on the host);
//  * runs (concat, writeSlice): the destination is `outer` runs of `L` elements at a fixed stride, read from a
//    contiguous source; the partially covered groups at run edges are read-modify-write. When runs are closer
//    than 4 elements, odd and even runs go in separate dispatches so neighbouring runs never share a group.

import type { ConcatAttrs, SliceAttrs, TransposeAttrs, WriteSliceAttrs } from '../../../core/backend.js';
import { bytesPerElement } from '../../../core/dtype.js';
import { stridesOf } from '../../../core/shape.js';
import type { Tensor } from '../../../core/tensor.js';
import { ParamLayout } from '../params.js';
import { collapseDims, grid, type KernelEnv, sto, vec8, WGSL_AT8, WGSL_WID } from './common.js';

const WG = 64;

/** The index math handles up to 8 dimensions after merging the ones that stay contiguous. */
export function rankCheck(t: Tensor, op: string): string | null {
  return t.rank > 8 ? `'${op}' supports tensors of rank ≤ 8, got shape [${t.shape.join(', ')}]` : null;
}

export function transposeWhyNot(out: Tensor, x: Tensor, perm: readonly number[]): string | null {
  const xs = stridesOf(x.shape);
  const { shape } = collapseDims(out.shape, [perm.map((p) => xs[p]!)]);
  return shape.length > 8 ? `transpose supports at most 8 non-mergeable dimensions, got perm [${perm.join(', ')}] of shape [${x.shape.join(', ')}]` : null;
}

export function sliceWhyNot(out: Tensor, x: Tensor): string | null {
  const { shape } = collapseDims(out.shape, [stridesOf(x.shape)]);
  return shape.length > 8 ? `slice supports at most 8 non-mergeable dimensions, got shape [${x.shape.join(', ')}]` : null;
}

const gatherParams = new ParamLayout([
  ['n', 'u32'],
  ['rank', 'u32'],
  ['base', 'u32'],
  ['offO', 'u32'],
  ['shapeA', 'vec4u'],
  ['shapeB', 'vec4u'],
  ['stA', 'vec4u'],
  ['stB', 'vec4u'],
]);

/** WGSL to read element `i` of the source (u32 bits for 4-byte types, the 16-bit pattern for halves). */
function srcRead(half: boolean): string {
  return half ? `fn src(i: u32) -> u32 { return (S[i >> 1u] >> ((i & 1u) * 16u)) & 0xffffu; }` : `fn src(i: u32) -> u32 { return S[i]; }`;
}

/** WGSL storing 4 element bit patterns `v` (vec4u) at destination group g, keeping lanes where `keep` is true. */
function dstStore(half: boolean): string {
  return half
    ? `fn put(g: u32, v: vec4u, write: vec4<bool>) {
  var old = vec4u(0u);
  if (!all(write)) { let w = D[g]; old = vec4u(w.x & 0xffffu, w.x >> 16u, w.y & 0xffffu, w.y >> 16u); }
  let r = select(old, v, write);
  D[g] = vec2u(r.x | (r.y << 16u), r.z | (r.w << 16u));
}`
    : `fn put(g: u32, v: vec4u, write: vec4<bool>) {
  if (all(write)) { D[g] = v; return; }
  D[g] = select(D[g], v, write);
}`;
}

function gatherShader(half: boolean): string {
  return /* wgsl */ `${gatherParams.wgsl('P')}
@group(0) @binding(0) var<storage, read> S: array<u32>;
@group(0) @binding(1) var<storage, read_write> D: array<${half ? 'vec2u' : 'vec4u'}>;
@group(0) @binding(2) var<uniform> p: P;
${WGSL_WID}
${WGSL_AT8}
${srcRead(half)}
${dstStore(half)}
fn offs(e0: u32) -> u32 {
  var e = e0;
  var off = p.base;
  for (var d = i32(p.rank) - 1; d >= 0; d--) {
    let n = at8(p.shapeA, p.shapeB, u32(d));
    off += (e % n) * at8(p.stA, p.stB, u32(d));
    e = e / n;
  }
  return off;
}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) w: vec3u, @builtin(num_workgroups) nw: vec3u, @builtin(local_invocation_index) li: u32) {
  let q = wid(w, nw) * ${WG}u + li;
  let e0 = q * 4u;
  if (e0 >= p.n) { return; }
  let inner = at8(p.shapeA, p.shapeB, p.rank - 1u);
  let sInner = at8(p.stA, p.stB, p.rank - 1u);
  var o = vec4u(0u);
  if ((e0 % inner) + 3u < inner) {
    let b = offs(e0);
    o = vec4u(src(b), src(b + sInner), src(b + 2u * sInner), src(b + 3u * sInner));
  } else {
    for (var c = 0u; c < 4u; c++) {
      if (e0 + c < p.n) { o[c] = src(offs(e0 + c)); }
    }
  }
  let write = vec4<bool>(true, e0 + 1u < p.n, e0 + 2u < p.n, e0 + 3u < p.n);
  put(p.offO / 4u + q, o, write);
}`;
}

function runGather(env: KernelEnv, label: string, out: Tensor, x: Tensor, shape: number[], strides: number[], base: number): void {
  const { rt } = env;
  const half = bytesPerElement(x.dtype) === 2;
  const xv = rt.view(sto(x));
  const ov = rt.view(sto(out));
  if (ov.elemOffset % 4 !== 0) throw new Error(`${label}: unaligned destination`);
  const pipe = rt.pipe({ label: `${label}_${half ? 'h' : 'w'}`, code: gatherShader(half), bindings: ['r', 'w'], params: gatherParams });
  const [sA, sB] = vec8(shape, 1);
  const [tA, tB] = vec8(strides);
  rt.dispatch(pipe, [xv, ov], { n: out.size, rank: shape.length, base: base + xv.elemOffset, offO: ov.elemOffset, shapeA: sA, shapeB: sB, stA: tA, stB: tB }, grid(Math.ceil(out.size / 4), WG, env.caps));
}

export function transpose(env: KernelEnv, out: Tensor, [x]: [Tensor], { perm }: TransposeAttrs): void {
  if (out.size === 0) return;
  const xs = stridesOf(x.shape);
  const { shape, strides } = collapseDims(out.shape, [perm.map((p) => xs[p]!)]);
  if (shape.length === 1 && strides[0]![0] === 1) return copy(env, out, [x]);
  runGather(env, 'transpose', out, x, shape, strides[0]!, 0);
}

export function slice(env: KernelEnv, out: Tensor, [x]: [Tensor], { begin }: SliceAttrs): void {
  if (out.size === 0) return;
  const xs = stridesOf(x.shape);
  const base = begin.reduce((acc, b, d) => acc + b * xs[d]!, 0);
  const { shape, strides } = collapseDims(out.shape, [xs]);
  // A contiguous slice (only leading dims cut) is one copy when it is word aligned.
  if (shape.length === 1 && strides[0]![0] === 1 && tryCopyRuns(env, out, x, [{ dst: 0, src: base, len: out.size }])) return;
  runGather(env, 'slice', out, x, shape, strides[0]!, base);
}

// ---- runs -------------------------------------------------------------------------------------------------

const runParams = new ParamLayout([
  ['outer', 'u32'],
  ['L', 'u32'],
  ['gpr', 'u32'],
  ['dstStart', 'u32'],
  ['dstStride', 'u32'],
  ['srcStart', 'u32'],
  ['srcStride', 'u32'],
  ['step', 'u32'],
  ['first', 'u32'],
]);

function runsShader(half: boolean): string {
  return /* wgsl */ `${runParams.wgsl('P')}
@group(0) @binding(0) var<storage, read> S: array<u32>;
@group(0) @binding(1) var<storage, read_write> D: array<${half ? 'vec2u' : 'vec4u'}>;
@group(0) @binding(2) var<uniform> p: P;
${WGSL_WID}
${srcRead(half)}
${dstStore(half)}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) w: vec3u, @builtin(num_workgroups) nw: vec3u, @builtin(local_invocation_index) li: u32) {
  let q = wid(w, nw) * ${WG}u + li;
  let runs = (p.outer - p.first + p.step - 1u) / p.step;
  if (q >= runs * p.gpr) { return; }
  let o = p.first + (q / p.gpr) * p.step;
  let j = q % p.gpr;
  let rs = p.dstStart + o * p.dstStride;
  let g = rs / 4u + j;
  var v = vec4u(0u);
  var write = vec4<bool>(false);
  for (var c = 0u; c < 4u; c++) {
    let de = g * 4u + c;
    if (de >= rs && de < rs + p.L) {
      write[c] = true;
      v[c] = src(p.srcStart + o * p.srcStride + (de - rs));
    }
  }
  if (!any(write)) { return; }
  put(g, v, write);
}`;
}

interface Run {
  dst: number;
  src: number;
  len: number;
}

/** Copies runs with buffer copies when every byte offset and length is a multiple of 4 and there are few runs. */
function tryCopyRuns(env: KernelEnv, dst: Tensor, src: Tensor, runs: Run[], maxRuns = 16): boolean {
  const bpe = bytesPerElement(dst.dtype);
  if (runs.length > maxRuns) return false;
  if (!runs.every((r) => (r.dst * bpe) % 4 === 0 && (r.src * bpe) % 4 === 0 && (r.len * bpe) % 4 === 0)) {
    // An odd-length tail is fine when it ends both tensors (the padding half is ours to overwrite).
    const ok = runs.every((r) => (r.dst * bpe) % 4 === 0 && (r.src * bpe) % 4 === 0 && (r.len * bpe) % 4 !== 0 && r.dst + r.len === dst.size && r.src + r.len === src.size);
    if (!ok) return false;
  }
  for (const r of runs) {
    const bytes = Math.ceil((r.len * bpe) / 4) * 4;
    env.rt.copy(sto(src), r.src * bpe, sto(dst), r.dst * bpe, bytes);
  }
  return true;
}

/** dst[o·dstStride + dstStart + i] = src[o·srcStride + srcStart + i] for o < outer, i < L. */
function copyRuns(env: KernelEnv, label: string, dst: Tensor, src: Tensor, outer: number, L: number, dstStart: number, dstStride: number, srcStart: number, srcStride: number): void {
  if (outer === 0 || L === 0) return;
  if (dstStride === L && srcStride === L) {
    // Contiguous on both sides: a single run.
    L = outer * L;
    outer = 1;
  }
  const runs: Run[] = [];
  if (outer <= 16) for (let o = 0; o < outer; o++) runs.push({ dst: dstStart + o * dstStride, src: srcStart + o * srcStride, len: L });
  if (runs.length && tryCopyRuns(env, dst, src, runs)) return;
  const { rt } = env;
  const half = bytesPerElement(dst.dtype) === 2;
  const sv = rt.view(sto(src));
  const dv = rt.view(sto(dst));
  const pipe = rt.pipe({ label: `${label}_${half ? 'h' : 'w'}`, code: runsShader(half), bindings: ['r', 'w'], params: runParams });
  const gpr = Math.floor(L / 4) + 2;
  const base = { outer, L, gpr, dstStart: dstStart + dv.elemOffset, dstStride, srcStart: srcStart + sv.elemOffset, srcStride };
  const gap = dstStride - L;
  const passes = outer > 1 && gap < 4 ? [0, 1] : [-1];
  for (const parity of passes) {
    const step = parity < 0 ? 1 : 2;
    const first = parity < 0 ? 0 : parity;
    const count = Math.ceil((outer - first) / step);
    if (count <= 0) continue;
    rt.dispatch(pipe, [sv, dv], { ...base, step, first }, grid(count * gpr, WG, env.caps));
  }
}

function split(shape: readonly number[], axis: number): [number, number, number] {
  const outer = shape.slice(0, axis).reduce((a, b) => a * b, 1);
  const inner = shape.slice(axis + 1).reduce((a, b) => a * b, 1);
  return [outer, shape[axis]!, inner];
}

export function concat(env: KernelEnv, out: Tensor, xs: Tensor[], { axis }: ConcatAttrs): void {
  const [outer, total, inner] = split(out.shape, axis);
  let at = 0;
  for (const x of xs) {
    const len = x.shape[axis]! * inner;
    copyRuns(env, 'concat', out, x, outer, len, at * inner, total * inner, 0, len);
    at += x.shape[axis]!;
  }
}

export function writeSlice(env: KernelEnv, dst: Tensor, [src]: [Tensor], { axis, start }: WriteSliceAttrs): void {
  const [outer, total, inner] = split(dst.shape, axis);
  const len = src.shape[axis]! * inner;
  copyRuns(env, 'writeSlice', dst, src, outer, len, start * inner, total * inner, 0, len);
}

export function copy(env: KernelEnv, out: Tensor, [x]: [Tensor]): void {
  const bytes = sto(x).bytes;
  if (bytes === 0) return;
  env.rt.copy(sto(x), 0, sto(out), 0, bytes);
}
