// Index kernels: embedding gather, argmax, dtype cast.
//
// embedding: one invocation per (token, 4 features); rows are copied as vec4 (f32) or two packed words (f16 /
//   bf16, unpacked in registers) when the row length is a multiple of 4, element by element otherwise. A table
//   larger than one binding is split into row ranges, one dispatch each (a dispatch writes only the tokens whose
//   id falls in its range; the first also zeroes rows of out-of-range ids).
// argmax: one workgroup per row; each lane scans a strided share keeping (first max, first NaN), then the lanes
//   combine with min/max reductions (ties and NaNs resolve to the lowest index, as in the reference).
// cast: four elements per invocation; f32→f16/bf16 round to nearest even and f32→i32 truncates with 32-bit wrap
//   (exactly the CPU reference's `Math.trunc(x) | 0`), all in integer arithmetic so no driver rounding mode leaks in.

import { bytesPerElement, type DType } from '../../../core/dtype.js';
import type { Tensor } from '../../../core/tensor.js';
import { ParamLayout } from '../params.js';
import { flatChunks } from './elementwise.js';
import { grid, type KernelEnv, reductions, sto, WGSL_HALF, WGSL_WID } from './common.js';

const WG = 64;

// ---- embedding --------------------------------------------------------------------------------------------

const embParams = new ParamLayout([
  ['T', 'u32'],
  ['D', 'u32'],
  ['V', 'u32'],
  ['r0', 'u32'],
  ['r1', 'u32'],
  ['zeroInvalid', 'u32'],
  ['offTab', 'u32'],
  ['offIds', 'u32'],
  ['offO', 'u32'],
]);

function embShader(dtype: DType, vec: boolean): string {
  const packed = dtype !== 'f32';
  const un = dtype === 'bf16' ? 'unpackBf16' : 'unpackF16';
  const tabDecl = vec ? (packed ? 'vec2u' : 'vec4f') : packed ? 'u32' : 'f32';
  const readVec = packed ? `let wv = Tab[(tb >> 2u) + g]; let v = vec4f(${un}(wv.x), ${un}(wv.y));` : `let v = Tab[(tb >> 2u) + g];`;
  const readOne = packed
    ? `fn tab(i: u32) -> f32 { let v = ${un}(Tab[i >> 1u]); return select(v.x, v.y, (i & 1u) == 1u); }`
    : `fn tab(i: u32) -> f32 { return Tab[i]; }`;
  return /* wgsl */ `${embParams.wgsl('P')}
@group(0) @binding(0) var<storage, read> Tab: array<${tabDecl}>;
@group(0) @binding(1) var<storage, read> Ids: array<i32>;
@group(0) @binding(2) var<storage, read_write> O: array<${vec ? 'vec4f' : 'f32'}>;
@group(0) @binding(3) var<uniform> p: P;
${WGSL_WID}
${WGSL_HALF}
${vec ? '' : readOne}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) w: vec3u, @builtin(num_workgroups) nw: vec3u, @builtin(local_invocation_index) li: u32) {
  let gpr = (p.D + 3u) / 4u;
  let e = wid(w, nw) * ${WG}u + li;
  if (e >= p.T * gpr) { return; }
  let t = e / gpr;
  let g = e % gpr;
  let id = Ids[p.offIds + t];
  let inRange = id >= i32(p.r0) && id < i32(p.r1);
  let invalid = id < 0 || u32(id) >= p.V;
  if (!inRange && !(invalid && p.zeroInvalid != 0u)) { return; }
  let row = u32(max(id, 0)) - select(0u, p.r0, inRange);
  let tb = p.offTab + row * p.D;
  ${
    vec
      ? `var v0 = vec4f(0.0);
  if (inRange) { ${readVec} v0 = v; }
  O[(p.offO >> 2u) + t * gpr + g] = v0;`
      : `for (var c = 0u; c < 4u; c++) {
    let f = g * 4u + c;
    if (f < p.D) { O[p.offO + t * p.D + f] = select(0.0, tab(tb + f), inRange); }
  }`
  }
}`;
}

function embPlan(env: KernelEnv, out: Tensor, table: Tensor): { rows: [number, number][]; tokens: [number, number][] } | string {
  const [V, D] = table.shape as [number, number];
  const bpe = bytesPerElement(table.dtype);
  const limit = env.caps.maxBindingBytes;
  const slack = Math.max(env.caps.offsetAlign, 256) + 64 + (env.rt.guarded ? 4096 : 0);
  const rowsPer = Math.floor((limit - slack) / Math.max(1, D * bpe));
  const tokPer = Math.floor((limit - slack) / Math.max(1, D * 4));
  if (rowsPer < 1 || tokPer < 1) return `one row of the [${V}, ${D}] ${table.dtype} table exceeds maxStorageBufferBindingSize (${limit} bytes)`;
  const rows: [number, number][] = [];
  for (let r = 0; r < V; r += rowsPer) rows.push([r, Math.min(V, r + rowsPer)]);
  if (rows.length === 0) rows.push([0, 0]);
  const T = D ? out.size / D : 0;
  const tokens: [number, number][] = [];
  for (let t = 0; t < T; t += tokPer) tokens.push([t, Math.min(T, t + tokPer)]);
  return { rows, tokens };
}

export function embeddingWhyNot(env: KernelEnv, out: Tensor, [table, ids]: [Tensor, Tensor]): string | null {
  const p = embPlan(env, out, table);
  if (typeof p === 'string') return p;
  if (!env.rt.fitsBinding(ids.dtype, ids.size)) return `${ids.size} token ids exceed maxStorageBufferBindingSize`;
  return null;
}

export function embedding(env: KernelEnv, out: Tensor, [table, ids]: [Tensor, Tensor]): void {
  const { rt } = env;
  const [V, D] = table.shape as [number, number];
  const plan = embPlan(env, out, table);
  if (typeof plan === 'string') throw new Error(`embedding: ${plan}`);
  if (out.size === 0) return;
  for (const [t0, t1] of plan.tokens) {
    const iv = rt.view(sto(ids), t0, t1);
    const ov = rt.view(sto(out), t0 * D, t1 * D);
    plan.rows.forEach(([r0, r1], ri) => {
      const tv = rt.view(sto(table), r0 * D, Math.max(r1, r0 + 1) * D);
      const vec = D % 4 === 0 && tv.elemOffset % 4 === 0 && ov.elemOffset % 4 === 0;
      const pipe = rt.pipe({ label: `embedding_${table.dtype}${vec ? '_v4' : ''}`, code: embShader(table.dtype, vec), bindings: ['r', 'r', 'w'], params: embParams });
      rt.dispatch(
        pipe,
        [tv, iv, ov],
        { T: t1 - t0, D, V, r0, r1, zeroInvalid: ri === 0 ? 1 : 0, offTab: tv.elemOffset, offIds: iv.elemOffset, offO: ov.elemOffset },
        grid((t1 - t0) * Math.ceil(D / 4), WG, env.caps),
      );
    });
  }
}

// ---- argmax -----------------------------------------------------------------------------------------------

const amParams = new ParamLayout([
  ['rows', 'u32'],
  ['n', 'u32'],
  ['offX', 'u32'],
  ['offO', 'u32'],
  ['ninf', 'f32'],
]);

function argmaxShader(env: KernelEnv, dtype: DType, vec: boolean): string {
  const red = reductions(env.caps);
  const packed = dtype !== 'f32';
  const un = dtype === 'bf16' ? 'unpackBf16' : 'unpackF16';
  const decl = vec ? 'vec4f' : packed ? 'u32' : 'f32';
  const at = packed
    ? `fn at(i: u32) -> f32 { let v = ${un}(X[i >> 1u]); return select(v.x, v.y, (i & 1u) == 1u); }`
    : vec
      ? `fn at(i: u32) -> f32 { return X[i >> 2u][i & 3u]; }`
      : `fn at(i: u32) -> f32 { return X[i]; }`;
  const BIG = 4294967295;
  return /* wgsl */ `${red.enable}
${amParams.wgsl('P')}
@group(0) @binding(0) var<storage, read> X: array<${decl}>;
@group(0) @binding(1) var<storage, read_write> O: array<i32>;
@group(0) @binding(2) var<uniform> p: P;
${WGSL_WID}
${WGSL_HALF}
${at}
// NaN by its bits: WGSL lets compilers assume finite floats, so x != x may be folded away.
fn isNan(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u; }
${red.decls}
@compute @workgroup_size(${red.wg})
fn main(@builtin(workgroup_id) w: vec3u, @builtin(num_workgroups) nw: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = wid(w, nw);
  if (row >= p.rows) { return; }
  let base = p.offX + row * p.n;
  var bv = p.ninf;
  var bi = 0u;
  var nanAt = ${BIG}u;
  ${
    vec
      ? `let n4 = p.n / 4u;
  for (var j = lid; j < n4; j += ${red.wg}u) {
    let v = X[(base >> 2u) + j];
    for (var c = 0u; c < 4u; c++) {
      let x = v[c];
      let i = j * 4u + c;
      if (isNan(x)) { nanAt = min(nanAt, i); }
      else if (x > bv) { bv = x; bi = i; }
    }
  }`
      : `for (var i = lid; i < p.n; i += ${red.wg}u) {
    let x = at(base + i);
    if (isNan(x)) { nanAt = min(nanAt, i); }
    else if (x > bv) { bv = x; bi = i; }
  }`
  }
  // Index reductions go through f32 (exact below 2^24, far above any row length we accept).
  let firstNan = ${red.min('f32(nanAt)')};
  let gm = ${red.max('bv')};
  let cand = select(4294967296.0, f32(bi), bv == gm);
  let best = ${red.min('cand')};
  if (lid == 0u) {
    O[p.offO + row] = select(i32(best), i32(firstNan), firstNan < 4294967296.0);
  }
}`;
}

export function argmax(env: KernelEnv, out: Tensor, [x]: [Tensor]): void {
  const { rt } = env;
  const n = x.shape[x.rank - 1]!;
  const rows = out.size;
  if (rows === 0) return;
  const xv = rt.view(sto(x));
  const ov = rt.view(sto(out));
  if (n === 0) throw new Error('argmax over an empty axis');
  const vec = x.dtype === 'f32' && n % 4 === 0 && xv.elemOffset % 4 === 0;
  const pipe = rt.pipe({ label: `argmax_${x.dtype}${vec ? '_v4' : ''}`, code: argmaxShader(env, x.dtype, vec), bindings: ['r', 'w'], params: amParams });
  rt.dispatch(pipe, [xv, ov], { rows, n, offX: xv.elemOffset, offO: ov.elemOffset, ninf: -Infinity }, grid(rows, 1, env.caps));
}

// ---- cast -------------------------------------------------------------------------------------------------

const castParams = new ParamLayout([
  ['n', 'u32'],
  ['offX', 'u32'],
  ['offO', 'u32'],
  ['srcType', 'u32'],
  ['dstType', 'u32'],
]);

const CAST_FNS = /* wgsl */ `
fn f16BitsToF32(h: u32) -> f32 {
  let s = h & 0x8000u;
  let e = (h >> 10u) & 0x1fu;
  let m = h & 0x3ffu;
  if (e == 0u) {
    let v = f32(m) * 5.9604644775390625e-8;
    return select(v, -v, s != 0u);
  }
  if (e == 31u) { return bitcast<f32>((s << 16u) | 0x7f800000u | (m << 13u)); }
  return bitcast<f32>((s << 16u) | ((e + 112u) << 23u) | (m << 13u));
}
fn f32ToF16Bits(v: f32) -> u32 {
  let x = bitcast<u32>(v);
  let sign = (x >> 16u) & 0x8000u;
  let ex = (x >> 23u) & 0xffu;
  var mant = x & 0x7fffffu;
  if (ex == 0xffu) { return sign | 0x7c00u | select(0u, 0x200u, mant != 0u); }
  let e = i32(ex) - 127 + 15;
  if (e >= 31) { return sign | 0x7c00u; }
  if (e <= 0) {
    if (e < -10) { return sign; }
    mant = mant | 0x800000u;
    let shift = u32(14 - e);
    let halfBit = 1u << (shift - 1u);
    let rest = mant & ((1u << shift) - 1u);
    var o = mant >> shift;
    if (rest > halfBit || (rest == halfBit && (o & 1u) == 1u)) { o += 1u; }
    return sign | o;
  }
  let rest = mant & 0x1fffu;
  var o = (u32(e) << 10u) | (mant >> 13u);
  if (rest > 0x1000u || (rest == 0x1000u && (o & 1u) == 1u)) { o += 1u; }
  return sign | o;
}
fn f32ToBf16Bits(v: f32) -> u32 {
  let x = bitcast<u32>(v);
  if ((x & 0x7fffffffu) > 0x7f800000u) { return ((x >> 16u) | 0x40u) & 0xffffu; }
  return ((x + 0x7fffu + ((x >> 16u) & 1u)) >> 16u) & 0xffffu;
}
fn f32ToI32Wrap(v: f32) -> i32 {
  let b = bitcast<u32>(v);
  let e = (b >> 23u) & 0xffu;
  if (e == 0xffu || e < 127u) { return 0; }
  let m = (b & 0x7fffffu) | 0x800000u;
  let sh = i32(e) - 150;
  var mag = 0u;
  if (sh >= 0) {
    if (sh < 32) { mag = m << u32(sh); }
  } else {
    mag = m >> u32(-sh);
  }
  if ((b >> 31u) != 0u) { mag = 0u - mag; }
  return bitcast<i32>(mag);
}`;

const DTYPE_CODE: Record<DType, number> = { f32: 0, i32: 1, f16: 2, bf16: 3 };

/** One shader per (input width, output width); the dtypes themselves are run-time switches. */
function castShader(inHalf: boolean, outHalf: boolean): string {
  const load = inHalf
    ? 'let wd = X[q + (p.offX >> 2u)]; let raw = vec4u(wd.x & 0xffffu, wd.x >> 16u, wd.y & 0xffffu, wd.y >> 16u);'
    : 'let raw = X[q + (p.offX >> 2u)];';
  const store = outHalf
    ? `let r = vec2u(bits.x | (bits.y << 16u), bits.z | (bits.w << 16u));
  let oi = q + (p.offO >> 2u);
  if (q * 4u + 4u <= p.n) {
    O[oi] = r;
  } else {
    let rest = p.n - q * 4u;
    let old = O[oi];
    let keep = vec4<bool>(true, rest > 1u, rest > 2u, false);
    let lo = select(vec2u(old.x & 0xffffu, old.x >> 16u), bits.xy, keep.xy);
    let hi = select(vec2u(old.y & 0xffffu, old.y >> 16u), bits.zw, keep.zw);
    O[oi] = vec2u(lo.x | (lo.y << 16u), hi.x | (hi.y << 16u));
  }`
    : `let oi = q + (p.offO >> 2u);
  if (q * 4u + 4u <= p.n) {
    O[oi] = bits;
  } else {
    let rest = p.n - q * 4u;
    O[oi] = select(O[oi], bits, vec4<bool>(true, rest > 1u, rest > 2u, false));
  }`;
  return /* wgsl */ `${castParams.wgsl('P')}
@group(0) @binding(0) var<storage, read> X: array<${inHalf ? 'vec2u' : 'vec4u'}>;
@group(0) @binding(1) var<storage, read_write> O: array<${outHalf ? 'vec2u' : 'vec4u'}>;
@group(0) @binding(2) var<uniform> p: P;
${WGSL_WID}
${CAST_FNS}
fn toF32(b: u32) -> f32 {
  switch p.srcType {
    case 0u: { return bitcast<f32>(b); }
    case 1u: { return f32(bitcast<i32>(b)); }
    case 2u: { return f16BitsToF32(b); }
    default: { return bitcast<f32>(b << 16u); }
  }
}
fn fromF32(v: f32) -> u32 {
  switch p.dstType {
    case 0u: { return bitcast<u32>(v); }
    case 1u: { return bitcast<u32>(f32ToI32Wrap(v)); }
    case 2u: { return f32ToF16Bits(v); }
    default: { return f32ToBf16Bits(v); }
  }
}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) w: vec3u, @builtin(num_workgroups) nw: vec3u, @builtin(local_invocation_index) li: u32) {
  let q = wid(w, nw) * ${WG}u + li;
  if (q * 4u >= p.n) { return; }
  ${load}
  let bits = vec4u(fromF32(toF32(raw.x)), fromF32(toF32(raw.y)), fromF32(toF32(raw.z)), fromF32(toF32(raw.w)));
  ${store}
}`;
}

export function cast(env: KernelEnv, out: Tensor, [x]: [Tensor]): void {
  const { rt } = env;
  if (x.dtype === out.dtype) {
    const bytes = sto(x).bytes;
    if (bytes) rt.copy(sto(x), 0, sto(out), 0, bytes);
    return;
  }
  const inHalf = bytesPerElement(x.dtype) === 2;
  const outHalf = bytesPerElement(out.dtype) === 2;
  const pipe = rt.pipe({ label: `cast_${inHalf ? 'h' : 'w'}${outHalf ? 'h' : 'w'}`, code: castShader(inHalf, outHalf), bindings: ['r', 'w'], params: castParams });
  for (const [s, e] of flatChunks(env, out.size, 4)) {
    if (e <= s) continue;
    const xv = rt.view(sto(x), s, e);
    const ov = rt.view(sto(out), s, e);
    rt.dispatch(pipe, [xv, ov], { n: e - s, offX: xv.elemOffset, offO: ov.elemOffset, srcType: DTYPE_CODE[x.dtype], dstType: DTYPE_CODE[out.dtype] }, grid(Math.ceil((e - s) / 4), WG, env.caps));
  }
}
