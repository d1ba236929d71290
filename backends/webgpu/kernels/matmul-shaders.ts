// WGSL generators of the matmul kernels (kernels/matmul.ts plans and dispatches them; its header describes the
// strategy): the subgroup tile kernel, the subgroup GEMV (storage or texture weights), their portable fallbacks,
// the im2col prologue of patchEmbed, and the parameter block they share.

import { type DType } from '../../../core/dtype.js';
import { ParamLayout } from '../params.js';
import { WGSL_HALF, WGSL_WID } from './common.js';

export const params = new ParamLayout([
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
export type Storage = 'v4' | 'f1' | 'h2' | 'h1' | 'h4' | 'tex' | 'texh';

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

export interface Variant {
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
export function gemvRows(v: Pick<Variant, 'bMode'>): number {
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
export function tileFbShader(v: Variant): string {
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
export function gemvFbShader(v: Variant): string {
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
