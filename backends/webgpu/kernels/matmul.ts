// Matrix multiply: out[..., M, N] = a[..., M, K] · b (+ bias), b [K, N] or [N, K] (transposeB), f32/f16/bf16.
//
// Strategy (measured on lavapipe, where every storage load instruction becomes a bounds-checked per-lane loop
// and costs ~30 FMAs, while a subgroup broadcast costs ~1): the kernels minimise load *instructions* per FMA.
//  * Tile kernel (subgroups): a workgroup is one subgroup of S lanes and owns TM rows × (S·TN) columns. Each lane
//    loads its own B columns as vec4 along k (transposeB) or along n ([K, N]); the TM rows of A are loaded once
//    per subgroup — lane i loads row i as a vec4 — and handed to every lane with subgroupBroadcast. No workgroup
//    memory, no barriers. 16×(8·4) tiles reach ~16 GFLOP/s on 1024³ on lavapipe (2 cores), vs ~5 for a plain
//    4×4 register block where every lane loads its own A values.
//  * GEMV kernel (transposeB, M ≤ 4: decode): one subgroup per 4 weight rows, lanes split K (lane i reads vec4
//    i, i+S, … of each row: contiguous across lanes), fma into vec4 accumulators, subgroupAdd at the end.
//    Packed f16/bf16 weights are read 8 halves per vec4<u32> load and unpacked in registers.
//  * Texture GEMV (weights whose rows are 256-byte multiples, when the runtime keeps texture copies: software
//    adapters by default): the same kernel with 8 weight rows per subgroup, reading the weight's rgba32float copy
//    (f32) or rgba32uint copy (f16/bf16, 8 halves per texel) with textureLoad. lavapipe compiles a storage-buffer load into a loop over the lanes with a bounds test per
//    component, but a texel fetch into vectorised address arithmetic and one 16-byte load per lane: 1.7× the
//    weight bytes per CPU-second for f32 (measured 5.5 vs 3.3 GB/s), for a second copy of each weight used this way
//    (made at its first GEMV, refreshed when the weight is written, freed with it).
//  * Portable kernels (no subgroups or a variable subgroup size): an 8×8 workgroup, 4×4 register block per
//    invocation straight from storage; GEMV as one invocation per output.
//  * Operands larger than one storage binding are split: transposeB weights by row ranges of N (each range is
//    one dispatch writing its columns), [K, N] weights by row ranges of K (later ranges accumulate into out),
//    and a / out by row ranges of M. Unaligned rows (a row stride not a multiple of 4) use scalar-load variants.

import type { MatmulAttrs } from '../../../core/backend.js';
import { bytesPerElement, type DType } from '../../../core/dtype.js';
import type { Tensor } from '../../../core/tensor.js';
import { ParamLayout } from '../params.js';
import type { BindingKind, GpuStorage, TexView, View } from '../runtime.js';
import { grid, type KernelEnv, sto, WGSL_HALF, WGSL_WID } from './common.js';

const params = new ParamLayout([
  ['M', 'u32'],
  ['N', 'u32'],
  ['K', 'u32'],
  ['lda', 'u32'],
  ['ldb', 'u32'],
  ['ldo', 'u32'],
  ['aOff', 'u32'],
  ['bOff', 'u32'],
  ['oOff', 'u32'],
  ['biasOff', 'u32'],
  ['sA', 'u32'],
  ['sB', 'u32'],
  ['sO', 'u32'],
  ['tilesN', 'u32'],
  ['accumulate', 'u32'],
  ['hasBias', 'u32'],
  // patchEmbed (im2col) only: channels, patch, image height/width, patches per grid row, patches per image.
  ['C', 'u32'],
  ['P', 'u32'],
  ['H', 'u32'],
  ['W', 'u32'],
  ['gw', 'u32'],
  ['tokens', 'u32'],
  // Texture GEMV: weight rows per texture layer.
  ['texRows', 'u32'],
]);

/** 'tex': f32 weight from its rgba32float texture copy; 'texh': f16/bf16 weight from its rgba32uint copy (8 halves
 *  per texel). GEMV only. */
type Storage = 'v4' | 'f1' | 'h2' | 'h1' | 'h4' | 'tex' | 'texh';

/** WGSL element type of a binding for a storage mode. */
function declType(s: Storage): string {
  return s === 'v4' || s === 'tex' || s === 'texh' ? 'vec4f' : s === 'f1' ? 'f32' : s === 'h2' ? 'vec2u' : s === 'h4' ? 'vec4u' : 'u32';
}

/** Scalar element accessor `name(i) -> f32` for an array stored in mode `s`. */
function elemFn(name: string, arr: string, s: Storage, dtype: DType): string {
  const un = (w: string) => (dtype === 'bf16' ? `unpackBf16(${w})` : `unpackF16(${w})`);
  switch (s) {
    case 'v4':
      return `fn ${name}(i: u32) -> f32 { return ${arr}[i >> 2u][i & 3u]; }`;
    case 'f1':
      return `fn ${name}(i: u32) -> f32 { return ${arr}[i]; }`;
    case 'h1':
      return `fn ${name}(i: u32) -> f32 { let v = ${un(`${arr}[i >> 1u]`)}; return select(v.x, v.y, (i & 1u) == 1u); }`;
    case 'h2':
      return `fn ${name}(i: u32) -> f32 { let v = ${un(`${arr}[i >> 2u][(i >> 1u) & 1u]`)}; return select(v.x, v.y, (i & 1u) == 1u); }`;
    case 'h4':
      return `fn ${name}(i: u32) -> f32 { let v = ${un(`${arr}[i >> 3u][(i >> 1u) & 3u]`)}; return select(v.x, v.y, (i & 1u) == 1u); }`;    case 'tex':
    case 'texh':
      return ''; // texture weights are read by the GEMV's own loads
  }
}

/** `name(base, q) -> vec4f`: elements base + 4q … base + 4q + 3 (base 4-aligned in the vector modes). When
 *  `masked`, positions ≥ p.K read as 0: the vector modes load the whole group (it stays inside the binding, which
 *  is rounded up to 16 bytes) and zero the tail with a select — no branch and no second copy of the loads, which
 *  keeps the unrolled kernels small for lavapipe's LLVM; the scalar modes clamp their indices. */
function vec4Fn(name: string, arr: string, s: Storage, dtype: DType, elem: string, masked: boolean): string {
  const un = (w: string) => (dtype === 'bf16' ? `unpackBf16(${w})` : `unpackF16(${w})`);
  const mask = (v: string) => (masked ? `select(vec4f(0.0), ${v}, vec4u(4u * q) + vec4u(0u, 1u, 2u, 3u) < vec4u(p.K))` : v);
  switch (s) {
    case 'v4':
      return `fn ${name}(base: u32, q: u32) -> vec4f { return ${mask(`${arr}[(base >> 2u) + q]`)}; }`;
    case 'h2':
      return `fn ${name}(base: u32, q: u32) -> vec4f { let w = ${arr}[(base >> 2u) + q]; return ${mask(`vec4f(${un('w.x')}, ${un('w.y')})`)}; }`;
    default: {
      const at = (c: number) => (masked ? `${elem}(base + min(4u * q + ${c}u, p.K - 1u))` : `${elem}(base + 4u * q + ${c}u)`);
      return `fn ${name}(base: u32, q: u32) -> vec4f { return ${mask(`vec4f(${at(0)}, ${at(1)}, ${at(2)}, ${at(3)})`)}; }`;
    }
  }
}

interface Variant {
  kind: 'tile' | 'gemv' | 'tileFb' | 'gemvFb';
  transposeB: boolean;
  bDtype: DType;
  aMode: Storage;
  bMode: Storage;
  /** Rows per tile (tile kernels) or rows of a (gemv). */
  TM: number;
  S: number;
  /** patchEmbed: a's rows are image patches gathered on the fly (vec4 reads when the patch width allows). */
  im2col?: boolean;
  /** Output written as vec4 rows (N, ldo and the offset multiples of 4) or as scalars. */
  oMode: 'v4' | 'f1';
  /** Add into the existing output (later K ranges of a split [K, N] weight). */
  accumulate: boolean;
}

function isTexB(v: Pick<Variant, 'bMode'>): boolean {
  return v.bMode === 'tex' || v.bMode === 'texh';
}

function bindingsDecl(v: Variant): string {
  let s = `@group(0) @binding(0) var<storage, read> A: array<${declType(v.aMode)}>;
${isTexB(v) ? `@group(0) @binding(1) var Bt: texture_storage_2d_array<${v.bMode === 'tex' ? 'rgba32float' : 'rgba32uint'}, read>;` : `@group(0) @binding(1) var<storage, read> B: array<${declType(v.bMode)}>;`}
`;
  let i = 2;
  s += `@group(0) @binding(${i++}) var<storage, read> Bias: array<f32>;\n`;
  s += `@group(0) @binding(${i++}) var<storage, read_write> O: array<${v.oMode === 'v4' ? 'vec4f' : 'f32'}>;
@group(0) @binding(${i}) var<uniform> p: P;`;
  return s;
}

/** One scalar output store (scalar-output kernels). */
function store(v: Variant, r: string, c: string, val: string): string {
  return `{ let idx = oB + (${r}) * p.ldo + (${c}); var val = ${val}; if (p.hasBias != 0u) { val += Bias[p.biasOff + (${c})]; }${v.accumulate ? ' val += O[idx];' : ''}
      O[idx] = val; }`;
}

function prelude(v: Variant): string {
  return `${v.kind === 'tile' || v.kind === 'gemv' ? 'enable subgroups;' : ''}
${params.wgsl('P')}
${bindingsDecl(v)}
${WGSL_WID}
${WGSL_HALF}
${elemFn('ea', 'A', v.aMode, 'f32')}
${isTexB(v) ? '' : elemFn('eb', 'B', v.bMode, v.bDtype)}
${v.im2col ? IM2COL_WGSL(v.aMode) : `fn arow(r: u32, aB: u32) -> u32 { return aB + r * p.lda; }
${vec4Fn('la', 'A', v.aMode, 'f32', 'ea', true)}`}
${isTexB(v) ? '' : vec4Fn('lb', 'B', v.bMode, v.bDtype, 'eb', v.transposeB)}`;
}

/** A-side access for patchEmbed: row r is patch r of the batch; element k = (c, i, j) of the patch. */
function IM2COL_WGSL(aMode: Storage): string {
  return `fn arow(r: u32, aB: u32) -> u32 {
  let b = r / p.tokens;
  let pp = r % p.tokens;
  let py = pp / p.gw;
  let px = pp % p.gw;
  return aB + (b * p.C * p.H + py * p.P) * p.W + px * p.P;
}
fn koff(k: u32) -> u32 {
  let pp = p.P * p.P;
  let c = k / pp;
  let rem = k % pp;
  return (c * p.H + rem / p.P) * p.W + rem % p.P;
}
fn la(base: u32, q: u32) -> vec4f {
  if (4u * q + 4u <= p.K) {
    ${aMode === 'v4' ? 'return A[(base + koff(4u * q)) >> 2u];' : 'let k = 4u * q; return vec4f(ea(base + koff(k)), ea(base + koff(k + 1u)), ea(base + koff(k + 2u)), ea(base + koff(k + 3u)));'}
  }
  var r = vec4f(0.0);
  for (var c = 0u; c < 4u; c++) {
    let k = 4u * q + c;
    if (k < p.K) { r[c] = ea(base + koff(k)); }
  }
  return r;
}`;
}

/** Epilogue of the tile kernels: row i of the block holds columns c0 … c0+3. With vec4 output (N a multiple
 *  of 4, so a lane's group is all in or all out) it is one guarded store per row; otherwise four guarded scalar
 *  stores per row (only small tiles use that path). Guarded stores are expensive to compile on lavapipe (each
 *  becomes a per-lane branchy loop), which is why the epilogue is kept this lean. */
function epilogue(v: Variant, rows: number, colExpr: string): string {
  const L: string[] = [];
  // The bias (4 columns of this lane) is read once; absent, a dummy binding is bound and never read.
  L.push(`  var bv = vec4f(0.0);`);
  L.push(`  if (p.hasBias != 0u) { for (var j = 0u; j < 4u; j++) { bv[j] = Bias[p.biasOff + min(${colExpr} + j, p.N - 1u)]; } }`);
  const add = ' + bv';
  for (let i = 0; i < rows; i++) {
    if (v.oMode === 'v4') {
      L.push(`  if (r0 + ${i}u < p.M && ${colExpr} < p.N) { let idx = (oB + (r0 + ${i}u) * p.ldo + ${colExpr}) >> 2u; O[idx] = acc${i}${add}${v.accumulate ? ' + O[idx]' : ''}; }`);
    } else {
      for (let j = 0; j < 4; j++) {
        L.push(`  if (r0 + ${i}u < p.M && ${colExpr} + ${j}u < p.N) { let idx = oB + (r0 + ${i}u) * p.ldo + ${colExpr} + ${j}u; O[idx] = acc${i}[${j}] + bv[${j}]${v.accumulate ? ' + O[idx]' : ''}; }`);
      }
    }
  }
  return L.join('\n');
}

/** Subgroup tile kernel. transposeB: 4 scalar columns per lane; [K, N]: one vec4 column group per lane. */
export function tileShader(v: Variant): string {
  const { TM, S } = v;
  const slots = Math.ceil(TM / S);
  const lines: string[] = [];
  lines.push(prelude(v));
  lines.push(`@compute @workgroup_size(${S})
fn main(@builtin(workgroup_id) w: vec3u, @builtin(num_workgroups) nw: vec3u, @builtin(subgroup_invocation_id) sl: u32) {
  let t = wid(w, nw);
  let tn = t % p.tilesN;
  let tm = t / p.tilesN;
  if (tm * ${TM}u >= p.M) { return; }
  let aB = p.aOff + w.z * p.sA;
  let bB = p.bOff + w.z * p.sB;
  let oB = p.oOff + w.z * p.sO;
  let r0 = tm * ${TM}u;`);
  for (let h = 0; h < slots; h++) lines.push(`  let ar${h} = arow(min(r0 + ${h * S}u + sl, p.M - 1u), aB);`);
  if (v.transposeB) {
    lines.push(`  let c0 = (tn * ${S}u + sl) * 4u;`);
    for (let j = 0; j < 4; j++) lines.push(`  let br${j} = bB + min(c0 + ${j}u, p.N - 1u) * p.ldb;`);
  } else {
    lines.push(`  let c4 = tn * ${S}u + sl;`);
    lines.push(`  let cc4 = min(c4, (p.N + 3u) / 4u - 1u);`);
    lines.push(`  let c0 = c4 * 4u;`);
  }
  for (let i = 0; i < TM; i++) lines.push(`  var acc${i} = vec4f(0.0);`);
  lines.push(`  let K4 = (p.K + 3u) / 4u;
  for (var k4 = 0u; k4 < K4; k4++) {`);
  const b: string[] = [];
  for (let h = 0; h < slots; h++) b.push(`let al${h} = la(ar${h}, k4);`);
  if (v.transposeB) {
    for (let j = 0; j < 4; j++) b.push(`let b${j} = lb(br${j}, k4);`);
    for (let i = 0; i < TM; i++) {
      b.push(`{ let a = subgroupBroadcast(al${Math.floor(i / S)}, ${i % S}u);`);
      b.push(`  acc${i} += vec4f(dot(a, b0), dot(a, b1), dot(a, b2), dot(a, b3)); }`);
    }
  } else {
    // Rows past K are clamped to K−1 (valid memory); the matching a components are 0.
    for (let kk = 0; kk < 4; kk++) b.push(`let b${kk} = lb(bB + min(4u * k4 + ${kk}u, p.K - 1u) * p.ldb, cc4);`);
    for (let i = 0; i < TM; i++) {
      b.push(`{ let a = subgroupBroadcast(al${Math.floor(i / S)}, ${i % S}u);`);
      b.push(`  acc${i} = fma(vec4f(a.x), b0, fma(vec4f(a.y), b1, fma(vec4f(a.z), b2, fma(vec4f(a.w), b3, acc${i})))); }`);
    }
  }
  lines.push(b.map((l) => `    ${l}`).join('\n'));
  lines.push('  }');
  lines.push(epilogue(v, TM, 'c0'));
  lines.push('}');
  return lines.join('\n');
}

/** Subgroup GEMV for transposeB with TM (≤ 4) rows of a: one subgroup per R weight rows, lanes split K. */
/** Weight rows per subgroup in the GEMV: 4 for f32; 8 for packed weights, where each step reads two vec4 of a
 *  per weight load (8 halves), so more rows amortise those reads. */
function gemvRows(v: Pick<Variant, 'bMode'>): number {
  return v.bMode === 'h4' || v.bMode === 'h2' || isTexB(v) ? 8 : 4;
}
export function gemvShader(v: Variant): string {
  const { TM, S } = v;
  const R = gemvRows(v);
  const wide = v.bMode === 'h4' || v.bMode === 'texh'; // 8 halves per load: two a vec4s per step
  const step = wide ? 8 : 4;
  const L: string[] = [prelude(v)];
  if (wide) L.push(`fn lb8(${v.bMode === 'texh' ? 'y: u32, l: u32' : 'base: u32'}, q: u32) -> array<vec4f, 2> { let w = ${v.bMode === 'texh' ? 'textureLoad(Bt, vec2u(q, y), l)' : 'B[(base >> 3u) + q]'}; let u0 = ${v.bDtype === 'bf16' ? 'unpackBf16' : 'unpackF16'}(w.x); let u1 = ${v.bDtype === 'bf16' ? 'unpackBf16' : 'unpackF16'}(w.y); let u2 = ${v.bDtype === 'bf16' ? 'unpackBf16' : 'unpackF16'}(w.z); let u3 = ${v.bDtype === 'bf16' ? 'unpackBf16' : 'unpackF16'}(w.w); return array<vec4f, 2>(vec4f(u0, u1), vec4f(u2, u3)); }`);
  L.push(`@compute @workgroup_size(${S})
fn main(@builtin(workgroup_id) w: vec3u, @builtin(num_workgroups) nw: vec3u, @builtin(subgroup_invocation_id) sl: u32) {
  let n0 = wid(w, nw) * ${R}u;
  if (n0 >= p.N) { return; }
  let aB = p.aOff + w.z * p.sA;
  let bB = p.bOff + w.z * p.sB;
  let oB = p.oOff + w.z * p.sO;`);
  // Texture weights (K a multiple of 64, so no remainder): p.bOff is the first weight row of this piece.
  // Row and layer are worked out once, outside the loop (a vector integer division is 8 scalar ones here).
  if (isTexB(v)) for (let j = 0; j < R; j++) L.push(`  let tr${j} = p.bOff + min(n0 + ${j}u, p.N - 1u); let ty${j} = tr${j} % p.texRows; let tl${j} = tr${j} / p.texRows;`);
  else for (let j = 0; j < R; j++) L.push(`  let br${j} = bB + min(n0 + ${j}u, p.N - 1u) * p.ldb;`);
  for (let m = 0; m < TM; m++) L.push(`  let ar${m} = aB + min(${m}u, p.M - 1u) * p.lda;`);
  for (let m = 0; m < TM; m++) for (let j = 0; j < R; j++) L.push(`  var acc${m}_${j} = vec4f(0.0);`);
  L.push(`  let KQ = p.K / ${step}u;
  for (var q = sl; q < KQ; q += ${S}u) {`);
  if (wide) {
    for (let m = 0; m < TM; m++) L.push(`    let x${m}a = la(ar${m}, 2u * q); let x${m}b = la(ar${m}, 2u * q + 1u);`);
    for (let j = 0; j < R; j++) {
      L.push(`    { let wv = lb8(${v.bMode === 'texh' ? `ty${j}, tl${j}` : `br${j}`}, q);`);
      for (let m = 0; m < TM; m++) L.push(`      acc${m}_${j} = fma(x${m}a, wv[0], fma(x${m}b, wv[1], acc${m}_${j}));`);
      L.push('    }');
    }
  } else {
    for (let m = 0; m < TM; m++) L.push(`    let x${m} = la(ar${m}, q);`);
    for (let j = 0; j < R; j++) {
      L.push(v.bMode === 'tex' ? `    { let wv = textureLoad(Bt, vec2u(q, ty${j}), tl${j});` : `    { let wv = lb(br${j}, q);`);
      for (let m = 0; m < TM; m++) L.push(`      acc${m}_${j} = fma(x${m}, wv, acc${m}_${j});`);
      L.push('    }');
    }
  }
  L.push('  }');
  // Remainder (K not a multiple of the step): lane 0, scalar.
  if (!isTexB(v)) {
    L.push(`  if (sl == 0u) {
    for (var k = KQ * ${step}u; k < p.K; k++) {`);
    for (let m = 0; m < TM; m++) {
      L.push(`      let x${m} = ea(ar${m} + k);`);
      for (let j = 0; j < R; j++) L.push(`      acc${m}_${j}.x += x${m} * eb(br${j} + k);`);
    }
    L.push('    }\n  }');
  }
  // Lane e writes outputs e, e+S, … of the TM×R block (one store site: guarded stores are costly to compile).
  L.push(`  var sums: array<f32, ${TM * R}>;`);
  for (let m = 0; m < TM; m++) {
    for (let j = 0; j < R; j++) L.push(`  sums[${m * R + j}] = subgroupAdd(acc${m}_${j}.x + acc${m}_${j}.y + acc${m}_${j}.z + acc${m}_${j}.w);`);
  }
  L.push(`  for (var e = sl; e < ${TM * R}u; e += ${S}u) {
    let m = e / ${R}u;
    let n = n0 + e % ${R}u;
    if (n < p.N && m < p.M) ${store(v, 'm', 'n', 'sums[e]')}
  }`);
  L.push('}');
  return L.join('\n');
}

/** Portable tile kernel: 8×8 invocations, each a 4×4 block (transposeB) or 4 rows × one vec4 column group. */
function tileFbShader(v: Variant): string {
  const L: string[] = [prelude(v)];
  const T = 4;
  L.push(`@compute @workgroup_size(8, 8)
fn main(@builtin(workgroup_id) w: vec3u, @builtin(num_workgroups) nw: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let t = wid(w, nw);
  let tn = t % p.tilesN;
  let tm = t / p.tilesN;
  if (tm * 32u >= p.M) { return; }
  let aB = p.aOff + w.z * p.sA;
  let bB = p.bOff + w.z * p.sB;
  let oB = p.oOff + w.z * p.sO;
  let r0 = tm * 32u + l.y * ${T}u;`);
  for (let i = 0; i < T; i++) L.push(`  let ar${i} = arow(min(r0 + ${i}u, p.M - 1u), aB);`);
  for (let i = 0; i < T; i++) L.push(`  var acc${i} = vec4f(0.0);`);
  if (v.transposeB) {
    L.push(`  let c0 = tn * 32u + l.x * ${T}u;`);
    for (let j = 0; j < T; j++) L.push(`  let br${j} = bB + min(c0 + ${j}u, p.N - 1u) * p.ldb;`);
  } else {
    L.push(`  let c4 = tn * 8u + l.x;
  let cc4 = min(c4, (p.N + 3u) / 4u - 1u);
  let c0 = c4 * 4u;`);
  }
  L.push(`  let K4 = (p.K + 3u) / 4u;
  for (var k4 = 0u; k4 < K4; k4++) {`);
  for (let i = 0; i < T; i++) L.push(`    let a${i} = la(ar${i}, k4);`);
  if (v.transposeB) {
    for (let j = 0; j < T; j++) L.push(`    let b${j} = lb(br${j}, k4);`);
    for (let i = 0; i < T; i++) L.push(`    acc${i} += vec4f(dot(a${i}, b0), dot(a${i}, b1), dot(a${i}, b2), dot(a${i}, b3));`);
  } else {
    for (let kk = 0; kk < 4; kk++) L.push(`    let b${kk} = lb(bB + min(4u * k4 + ${kk}u, p.K - 1u) * p.ldb, cc4);`);
    for (let i = 0; i < T; i++) L.push(`    acc${i} = fma(vec4f(a${i}.x), b0, fma(vec4f(a${i}.y), b1, fma(vec4f(a${i}.z), b2, fma(vec4f(a${i}.w), b3, acc${i}))));`);
  }
  L.push('  }');
  L.push(epilogue(v, T, 'c0'));
  L.push('}');
  return L.join('\n');
}

/** Portable GEMV (transposeB, any M): one invocation per output element. */
function gemvFbShader(v: Variant): string {
  return `${prelude(v)}
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) w: vec3u, @builtin(num_workgroups) nw: vec3u, @builtin(local_invocation_index) li: u32) {
  let e = wid(w, nw) * 64u + li;
  if (e >= p.M * p.N) { return; }
  let m = e / p.N;
  let n = e % p.N;
  let aB = p.aOff + w.z * p.sA;
  let bB = p.bOff + w.z * p.sB;
  let oB = p.oOff + w.z * p.sO;
  let ar = aB + m * p.lda;
  let br = bB + n * p.ldb;
  var acc = vec4f(0.0);
  let K4 = (p.K + 3u) / 4u;
  for (var k4 = 0u; k4 < K4; k4++) { acc = fma(la(ar, k4), lb(br, k4), acc); }
  ${store(v, 'm', 'n', 'acc.x + acc.y + acc.z + acc.w')}
}`;
}

// ---- planning ---------------------------------------------------------------------------------------------

interface Piece {
  aRange: [number, number];
  bRange: [number, number];
  oRange: [number, number];
  biasRange: [number, number] | null;
  /** Element offsets inside the ranges (added to the bindings' own offsets). */
  aExtra: number;
  bExtra: number;
  oExtra: number;
  biasExtra: number;
  M: number;
  N: number;
  K: number;
  batch: number;
  accumulate: boolean;
}

interface Plan {
  M: number;
  N: number;
  K: number;
  lda: number;
  ldb: number;
  ldo: number;
  sA: number;
  sB: number;
  sO: number;
  pieces: Piece[];
}

function ranges(total: number, per: number, quantum: number): [number, number][] {
  let step = Math.max(quantum, Math.floor(per / quantum) * quantum);
  if (step <= 0) step = 1;
  const out: [number, number][] = [];
  for (let s = 0; s < total; s += step) out.push([s, Math.min(total, s + step)]);
  return out;
}

/** Splits a matmul into pieces whose bindings fit, or returns a reason it cannot be split. */
function plan(env: KernelEnv, out: Tensor, a: Tensor, b: Tensor, bias: Tensor | null, transposeB: boolean): Plan | string {
  const rt = env.rt;
  const M0 = a.shape[a.rank - 2]!;
  const K = a.shape[a.rank - 1]!;
  const N = out.shape[out.rank - 1]!;
  const batches = a.shape.slice(0, -2).reduce((x, y) => x * y, 1);
  const bShared = b.rank === 2;
  const bpeB = bytesPerElement(b.dtype);
  const limit = env.caps.maxBindingBytes;
  const slack = Math.max(env.caps.offsetAlign, 256) + 64 + (rt.guarded ? 4096 : 0);
  const fitsRows = (rowBytes: number): number => Math.floor((limit - slack) / Math.max(1, rowBytes));
  const base = { K, N, lda: K, ldb: transposeB ? K : N, ldo: N };
  if (!bShared) {
    const pcs: Piece[] = [];
    const allFit = [a, b, out].every((t) => rt.fitsBinding(t.dtype, t.size));
    if (allFit) {
      pcs.push({ aRange: [0, a.size], bRange: [0, b.size], oRange: [0, out.size], biasRange: bias ? [0, N] : null, aExtra: 0, bExtra: 0, oExtra: 0, biasExtra: 0, M: M0, N, K, batch: batches, accumulate: false });
    } else {
      const mk = M0 * K, kn = K * N, mn = M0 * N;
      if (mk * 4 > limit - slack || kn * bpeB > limit - slack || mn * 4 > limit - slack) {
        return `one batch of this batched matmul (a [${M0}, ${K}], b ${transposeB ? `[${N}, ${K}]` : `[${K}, ${N}]`}) exceeds maxStorageBufferBindingSize (${limit} bytes)`;
      }
      for (let z = 0; z < batches; z++) {
        pcs.push({ aRange: [z * mk, (z + 1) * mk], bRange: [z * kn, (z + 1) * kn], oRange: [z * mn, (z + 1) * mn], biasRange: bias ? [0, N] : null, aExtra: 0, bExtra: 0, oExtra: 0, biasExtra: 0, M: M0, N, K, batch: 1, accumulate: false });
      }
    }
    return { ...base, M: M0, sA: M0 * K, sB: K * N, sO: M0 * N, pieces: pcs };
  }
  // Shared weight: fold the batch into M.
  const M = batches * M0;
  const mPer = Math.min(fitsRows(K * 4), fitsRows(N * 4));
  if (mPer < 1) return `one row of a (${K} f32) or of out (${N} f32) exceeds maxStorageBufferBindingSize (${limit} bytes)`;
  const mRanges = ranges(M, mPer, 1);
  const pcs: Piece[] = [];
  if (transposeB) {
    const nPer = fitsRows(K * bpeB);
    if (nPer < 1) return `one row of the [${N}, ${K}] ${b.dtype} weight exceeds maxStorageBufferBindingSize (${limit} bytes)`;
    const nRanges = ranges(N, nPer, nPer >= 64 ? 64 : 1);
    for (const [m0, m1] of mRanges) {
      for (const [n0, n1] of nRanges) {
        pcs.push({
          aRange: [m0 * K, m1 * K], bRange: [n0 * K, n1 * K], oRange: [m0 * N, m1 * N], biasRange: bias ? [n0, n1] : null,
          aExtra: 0, bExtra: 0, oExtra: n0, biasExtra: 0, M: m1 - m0, N: n1 - n0, K, batch: 1, accumulate: false,
        });
      }
    }
  } else {
    const kPer = fitsRows(N * bpeB);
    if (kPer < 1) return `one row of the [${K}, ${N}] ${b.dtype} weight exceeds maxStorageBufferBindingSize (${limit} bytes)`;
    const kRanges = ranges(K, kPer, kPer >= 64 ? 64 : 1);
    for (const [m0, m1] of mRanges) {
      kRanges.forEach(([k0, k1], ki) => {
        pcs.push({
          aRange: [m0 * K, m1 * K], bRange: [k0 * N, k1 * N], oRange: [m0 * N, m1 * N], biasRange: bias && ki === 0 ? [0, N] : null,
          aExtra: k0, bExtra: 0, oExtra: 0, biasExtra: 0, M: m1 - m0, N, K: k1 - k0, batch: 1, accumulate: ki > 0,
        });
      });
    }
  }
  return { ...base, M, sA: 0, sB: 0, sO: 0, pieces: pcs };
}

export function whyNot(env: KernelEnv, out: Tensor, [a, b, bias]: [Tensor, Tensor, Tensor | null], { transposeB }: MatmulAttrs): string | null {
  const p = plan(env, out, a, b, bias, transposeB);
  if (typeof p === 'string') return p;
  if (a.shape.slice(0, -2).reduce((x, y) => x * y, 1) > env.caps.maxWorkgroupsPerDim && b.rank > 2) {
    return `${a.shape.slice(0, -2).reduce((x, y) => x * y, 1)} batches exceed maxComputeWorkgroupsPerDimension`;
  }
  return null;
}

function modeFor(dtype: DType, base: number, ld: number, wide: boolean): Storage {
  if (dtype === 'f32') return base % 4 === 0 && ld % 4 === 0 ? 'v4' : 'f1';
  if (wide && base % 8 === 0 && ld % 8 === 0) return 'h4';
  return base % 4 === 0 && ld % 4 === 0 ? 'h2' : 'h1';
}


export function matmul(env: KernelEnv, out: Tensor, [a, b, bias]: [Tensor, Tensor, Tensor | null], { transposeB }: MatmulAttrs): void {
  const { rt, caps } = env;
  const pl = plan(env, out, a, b, bias, transposeB);
  if (typeof pl === 'string') throw new Error(`matmul: ${pl}`);
  for (const pc of pl.pieces) {
    if (pc.M === 0 || pc.N === 0) continue;
    const av = rt.view(sto(a), pc.aRange[0], pc.aRange[1]);
    const bv = rt.view(sto(b), pc.bRange[0], pc.bRange[1]);
    const ov = rt.view(sto(out), pc.oRange[0], pc.oRange[1]);
    const biasV = bias && pc.biasRange ? rt.view(sto(bias), pc.biasRange[0], pc.biasRange[1]) : null;
    const aOff = av.elemOffset + pc.aExtra;
    const bOff = bv.elemOffset + pc.bExtra;
    const oOff = ov.elemOffset + pc.oExtra;
    if (pc.K === 0) {
      zeroFill(env, out, pc, biasV, ov, oOff, pl.ldo);
      continue;
    }
    const useGemv = transposeB && pc.M <= 4;
    const sg = caps.subgroups;
    const kind: Variant['kind'] = sg ? (useGemv ? 'gemv' : 'tile') : useGemv ? 'gemvFb' : 'tileFb';
    const batchAligned = (s: number) => s % 4 === 0;
    const aMode = modeFor('f32', aOff, pl.lda, false) === 'v4' && batchAligned(pl.sA) ? 'v4' : 'f1';
    let bMode = modeFor(b.dtype, bOff, pl.ldb, kind === 'gemv' && transposeB);
    if (!batchAligned(pl.sB)) bMode = b.dtype === 'f32' ? 'f1' : 'h1';
    if (bMode === 'h4' && pl.sB % 8 !== 0) bMode = 'h2';
    // Decode GEMV over a shared weight: read it from its texture copy when the runtime keeps one (software
    // adapters: see the strategy note at the top).
    const mirror = kind === 'gemv' && b.rank === 2 && aMode === 'v4' ? rt.textureMirror(sto(b), b.shape[0]!, pc.K) : null;
    if (mirror) bMode = b.dtype === 'f32' ? 'tex' : 'texh';
    // Tile heights are 4 or 16 only, and GEMV handles 1 or 4 rows of a (clamped): fewer shader variants, each
    // of which costs lavapipe's LLVM a second or more to compile. Unaligned rows (scalar loads) and scalar output
    // use the small tile.
    const slow = aMode === 'f1' || bMode === 'f1' || bMode === 'h1';
    const oMode = kind.startsWith('tile') && pc.N % 4 === 0 && pl.ldo % 4 === 0 && oOff % 4 === 0 && pl.sO % 4 === 0 ? 'v4' : 'f1';
    const TM = kind === 'gemv' ? (pc.M === 1 ? 1 : 4) : kind === 'tile' ? (slow || oMode === 'f1' || pc.M <= 4 ? 4 : 16) : 4;
    const v: Variant = { kind, transposeB, bDtype: b.dtype, aMode, bMode, TM, S: caps.sgSize, oMode, accumulate: pc.accumulate };
    const code = kind === 'tile' ? tileShader(v) : kind === 'gemv' ? gemvShader(v) : kind === 'tileFb' ? tileFbShader(v) : gemvFbShader(v);
    const pipe = rt.pipe({ label: `matmul_${kind}${transposeB ? '_tb' : ''}_${b.dtype}_${aMode}${bMode}${oMode}_m${TM}${pc.accumulate ? '_acc' : ''}`, code, bindings: ['r', mirror ? (b.dtype === 'f32' ? 't' : 'u') : 'r', 'r', 'w'] as BindingKind[], params });
    let tilesN: number;
    let groups: [number, number, number];
    if (kind === 'tile') {
      const cols = caps.sgSize * (transposeB ? 4 : 4);
      tilesN = Math.ceil(pc.N / cols);
      groups = grid(tilesN * Math.ceil(pc.M / TM), 1, caps, pc.batch);
    } else if (kind === 'gemv') {
      tilesN = 1;
      groups = grid(Math.ceil(pc.N / gemvRows(v)), 1, caps, pc.batch);
    } else if (kind === 'tileFb') {
      tilesN = Math.ceil(pc.N / 32);
      groups = grid(tilesN * Math.ceil(pc.M / 32), 1, caps, pc.batch);
    } else {
      tilesN = 1;
      groups = grid(pc.M * pc.N, 64, caps, pc.batch);
    }
    const views: (View | TexView)[] = [av, mirror ? { tex: mirror } : bv, biasV ?? rt.dummyView(), ov];
    rt.dispatch(pipe, views, {
      M: pc.M, N: pc.N, K: pc.K, lda: pl.lda, ldb: pl.ldb, ldo: pl.ldo, aOff, bOff: mirror ? pc.bRange[0] / pc.K : bOff, oOff, texRows: mirror?.rowsPerLayer ?? 1,
      biasOff: biasV ? biasV.elemOffset + pc.biasExtra : 0, sA: pl.sA, sB: pl.sB, sO: pl.sO, tilesN, accumulate: pc.accumulate ? 1 : 0, hasBias: biasV ? 1 : 0,
    }, groups);
  }
}

// K = 0: out = bias (or 0). A tiny kernel rather than a special case in every matmul shader.
const zeroParams = new ParamLayout([
  ['M', 'u32'],
  ['N', 'u32'],
  ['ldo', 'u32'],
  ['oOff', 'u32'],
  ['biasOff', 'u32'],
  ['sO', 'u32'],
]);
function zeroFill(env: KernelEnv, _out: Tensor, pc: Piece, biasV: View | null, ov: View, oOff: number, ldo: number): void {
  const code = `${zeroParams.wgsl('P')}
${biasV ? '@group(0) @binding(0) var<storage, read> Bias: array<f32>;' : ''}
@group(0) @binding(${biasV ? 1 : 0}) var<storage, read_write> O: array<f32>;
@group(0) @binding(${biasV ? 2 : 1}) var<uniform> p: P;
${WGSL_WID}
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) w: vec3u, @builtin(num_workgroups) nw: vec3u, @builtin(local_invocation_index) li: u32) {
  let e = wid(w, nw) * 64u + li;
  if (e >= p.M * p.N) { return; }
  let m = e / p.N;
  let n = e % p.N;
  O[p.oOff + w.z * p.sO + m * p.ldo + n] = ${biasV ? 'Bias[p.biasOff + n]' : '0.0'};
}`;
  const pipe = env.rt.pipe({ label: 'matmul_k0', code, bindings: biasV ? ['r', 'w'] : ['w'], params: zeroParams });
  env.rt.dispatch(pipe, biasV ? [biasV, ov] : [ov], { M: pc.M, N: pc.N, ldo, oOff, biasOff: biasV ? biasV.elemOffset : 0, sO: pc.batch > 1 ? pc.M * ldo : 0 }, grid(pc.M * pc.N, 64, env.caps, pc.batch));
}

/** patchEmbed as a matmul: a = image patches gathered on the fly [B·tokens, C·P·P], b = weight [D, C·P·P]. */
export function patchEmbed(env: KernelEnv, out: Tensor, [image, weight, bias]: [Tensor, Tensor, Tensor | null], { patch }: { patch: number }): void {
  const { rt, caps } = env;
  const [B, C, H, W] = image.shape as [number, number, number, number];
  const D = weight.shape[0]!;
  const P = patch;
  const gw = W / P;
  const tokens = (H / P) * gw;
  const M = B * tokens;
  const K = C * P * P;
  if (M === 0 || D === 0) return;
  const av = rt.view(sto(image));
  const bv = rt.view(sto(weight));
  const ov = rt.view(sto(out));
  const biasV = bias ? rt.view(sto(bias)) : null;
  if (K === 0) {
    zeroFill(env, out, { aRange: [0, 0], bRange: [0, 0], oRange: [0, 0], biasRange: null, aExtra: 0, bExtra: 0, oExtra: 0, biasExtra: 0, M, N: D, K: 0, batch: 1, accumulate: false }, biasV, ov, ov.elemOffset, D);
    return;
  }
  const sg = caps.subgroups;
  const kind: Variant['kind'] = sg ? 'tile' : 'tileFb';
  const aMode: Storage = P % 4 === 0 && W % 4 === 0 && av.elemOffset % 4 === 0 ? 'v4' : 'f1';
  const bMode = modeFor('f32', bv.elemOffset, K, false);
  const oMode = D % 4 === 0 && ov.elemOffset % 4 === 0 ? 'v4' : 'f1';
  const TM = sg ? (oMode === 'f1' || aMode === 'f1' || M <= 4 ? 4 : 16) : 4;
  const v: Variant = { kind, transposeB: true, bDtype: 'f32', aMode, bMode, TM, S: caps.sgSize, im2col: true, oMode, accumulate: false };
  const code = kind === 'tile' ? tileShader(v) : tileFbShader(v);
  const pipe = rt.pipe({ label: `patchEmbed_${kind}_${aMode}${bMode}${oMode}_m${TM}`, code, bindings: ['r', 'r', 'r', 'w'], params });
  const cols = sg ? caps.sgSize * 4 : 32;
  const tilesN = Math.ceil(D / cols);
  const rowsPer = sg ? TM : 32;
  rt.dispatch(pipe, [av, bv, biasV ?? rt.dummyView(), ov], {
    M, N: D, K, lda: 0, ldb: K, ldo: D, aOff: av.elemOffset, bOff: bv.elemOffset, oOff: ov.elemOffset, biasOff: biasV?.elemOffset ?? 0,
    sA: 0, sB: 0, sO: 0, tilesN, accumulate: 0, hasBias: biasV ? 1 : 0, C, P, H, W, gw, tokens,
  }, grid(tilesN * Math.ceil(M / rowsPer), 1, caps));
}

export type { GpuStorage };
