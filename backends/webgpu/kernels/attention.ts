// Fused multi-head attention (grouped-query, causal with a KV-cache offset, key length, additive mask), with an
// online softmax over key blocks: no Tq×S score matrix ever exists in memory.
//
// Subgroup kernel: a workgroup is one subgroup and owns TQ query rows of one kv head — the rows are (query,
// head-in-group) pairs, so for grouped-query attention the query heads sharing a kv head are in one tile and each
// K/V row is read once for all of its rows. Per block of S·KB keys (lane sl owns keys j0 + sl·KB + c, c < KB):
//   * scores: each lane loads its keys' K rows as vec4; query chunks (pre-multiplied by scale·log2 e) stay in
//     registers, spread over the lanes, and are shuffled to all lanes — a K row is read once per tile;
//   * softmax (base 2): block max by a butterfly of subgroupShuffleXor (subgroupMax is a scalar loop over the
//     lanes on lavapipe); the running max moves, and l and the accumulators are rescaled, only when a block
//     raises it (a uniform branch); probabilities by exp2;
//   * values: lanes switch to owning output features; per source lane, its KB keys' probabilities are shuffled
//     to every lane and its KB V rows (each lane reads only its feature chunks) added in one assignment.
// At the end the lanes' partial sums are combined with subgroupAdd. Rows that see no key give zeros.
// lavapipe specifics that shaped it (see the README): every assignment inside a loop is a masked blend, a
// dynamically indexed private array becomes per-lane memory accesses (so query chunks live in named variables),
// and a division of lane-varying integers becomes 8 scalar divisions (so row/head indices are stepped with
// compares, and texel rows addressed by shift and mask).
// Prefill tiles (12 rows) read K and V from texture copies (runtime.textureMirror) when the runtime keeps them
// (software adapters), the tensors are f32 and fill their storages, and head dims are multiples of 64 (256-byte
// texture rows): lavapipe fetches texels with vector code but loads storage buffers (and workgroup memory) lane
// by lane. K/V change between calls, so each such call copies all of K and V into the textures (encoded before
// it); textures of freed tensors are pooled by the runtime, so K/V that are new tensors at every call (prefill
// chunks, vision) cost a copy, not a texture creation. Decode tiles keep reading storage (every step would
// re-copy the whole cache).
// Tile heights: 2 rows (one query, no grouping), 8 (grouped-query decode: a group of 7 heads is one tile), 12
// for prefill (≥ 16 rows), with KB = 4 keys per lane and block (2 for the 8-row tile). 16-row tiles were no
// better than 12 and took lavapipe's LLVM ~2.5× as long to compile; 14 rows with KB 8, KB 2 or 8 at 12 rows,
// and unrolling the score loop by 2–8 were no faster either (the last slower: spills).
// Portable kernel (no subgroups, or head dims not multiples of 4): one invocation per query row, scalar online
// softmax over keys, the accumulator in a private array.

import type { AttentionAttrs } from '../../../core/backend.js';
import { broadcastStrides } from '../../../core/shape.js';
import type { Tensor } from '../../../core/tensor.js';
import { ParamLayout } from '../params.js';
import type { TexMirror } from '../runtime.js';
import { grid, type KernelEnv, sto, WGSL_NEGINF, WGSL_WID } from './common.js';

const params = new ParamLayout([
  ['B', 'u32'],
  ['Tq', 'u32'],
  ['Hq', 'u32'],
  ['Hkv', 'u32'],
  ['S', 'u32'],
  ['g', 'u32'],
  ['rows', 'u32'],
  ['tiles', 'u32'],
  ['causal', 'u32'],
  ['qOff', 'u32'],
  ['keyLen', 'u32'],
  ['scale', 'f32'],
  ['ninf', 'f32'],
  ['offQ', 'u32'],
  ['offK', 'u32'],
  ['offV', 'u32'],
  ['offO', 'u32'],
  ['offM', 'u32'],
  ['D4', 'u32'],
  ['Dv4', 'u32'],
  ['D', 'u32'],
  ['Dv', 'u32'],
  ['tSh', 'u32'],
  ['tMask', 'u32'],
  ['mSt', 'vec4u'],
]);

const MAX_SG_DIM = 256;
const MAX_FB_DIM = 1024;

export function whyNot(_env: KernelEnv, _out: Tensor, [q, , v]: [Tensor, Tensor, Tensor, Tensor | null], attrs: AttentionAttrs): string | null {
  if (attrs.kvHeadMajor) return 'head-major K/V is not read by these kernels (ops.attention hands them token-major copies)';
  const D = q.shape[3]!;
  const Dv = v.shape[3]!;
  if (D > MAX_FB_DIM || Dv > MAX_FB_DIM) return `head dims up to ${MAX_FB_DIM} are supported, got D=${D}, Dv=${Dv}`;
  return null;
}

function nextPow2(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

/** Head dims are run-time values; only the register budget is compiled in: NDS query chunks per lane and row
 *  (D ≤ 4·S·NDS) and NV output chunks per lane and row (Dv ≤ 4·S·NV). */
export function sgShader(NDS: number, NV: number, TQ: number, KB: number, S: number, mask: boolean, tex = false): string {
  const L: string[] = [];
  // Texel (x, row r) of a K/V texture copy: layer r >> tSh, y r & tMask (shifts: a division of lane-varying
  // integers compiles to 8 scalar divisions on lavapipe).
  const texRow = (r: string, y: string, l: string) => `let ${y} = ${r} & p.tMask; let ${l} = ${r} >> p.tSh;`;
  L.push(`enable subgroups;
${params.wgsl('P')}
@group(0) @binding(0) var<storage, read> Q: array<vec4f>;
${tex ? `@group(0) @binding(1) var Kt: texture_storage_2d_array<rgba32float, read>;
@group(0) @binding(2) var Vt: texture_storage_2d_array<rgba32float, read>;` : `@group(0) @binding(1) var<storage, read> K: array<vec4f>;
@group(0) @binding(2) var<storage, read> V: array<vec4f>;`}
${mask ? '@group(0) @binding(3) var<storage, read> Mk: array<f32>;' : ''}
@group(0) @binding(${mask ? 4 : 3}) var<storage, read_write> O: array<vec4f>;
@group(0) @binding(${mask ? 5 : 4}) var<uniform> p: P;
${WGSL_WID}
${WGSL_NEGINF}
@compute @workgroup_size(${S})
fn main(@builtin(workgroup_id) w: vec3u, @builtin(num_workgroups) nw: vec3u, @builtin(subgroup_invocation_id) sl: u32) {
  let id = wid(w, nw);
  let tile = id % p.tiles;
  let rest = id / p.tiles;
  if (rest >= p.B * p.Hkv) { return; }
  let kvh = rest % p.Hkv;
  let b = rest / p.Hkv;
  let NEG = p.ninf;
  let r0 = tile * ${TQ}u;
  let rLast = min(r0 + ${TQ - 1}u, p.rows - 1u);
  var visMax = p.keyLen;
  if (p.causal != 0u) { visMax = min(p.keyLen, p.qOff + rLast / p.g + 1u); }
  let D4 = p.D4;
  let Dv4 = p.Dv4;
  let kBase = p.offK / 4u + (b * p.S * p.Hkv + kvh) * D4;
  let vBase = p.offV / 4u + (b * p.S * p.Hkv + kvh) * Dv4;
  let kStride = p.Hkv * D4;
  let vStride = p.Hkv * Dv4;
  let kvRow0 = b * p.S * p.Hkv + kvh;
  let qs = p.scale * 1.4426950408889634;
  let tc0 = r0 / p.g;
  let hc0 = r0 % p.g;`);
  // Row r of the tile is (query t, head h) = divmod(r0 + r, g), stepped from row 0 with compares (no divisions);
  // rows past the end repeat the last query (computed, never stored).
  for (let r = 0; r < TQ; r++) {
    if (r > 0) {
      L.push(`  let hn${r} = hc${r - 1} + 1u;
  let wr${r} = hn${r} == p.g;
  let hc${r} = select(hn${r}, 0u, wr${r});
  let tc${r} = select(tc${r - 1}, tc${r - 1} + 1u, wr${r});`);
    }
    L.push(`  let t${r} = min(tc${r}, p.Tq - 1u);
  let h${r} = kvh * p.g + hc${r};
  var vis${r} = p.keyLen;
  if (p.causal != 0u) { vis${r} = min(p.keyLen, p.qOff + t${r} + 1u); }
  let qr${r} = p.offQ / 4u + ((b * p.Tq + t${r}) * p.Hq + h${r}) * D4;
  var m${r} = NEG;
  var l${r} = 0.0;`);
    if (mask) L.push(`  let mb${r} = p.offM + b * p.mSt.x + h${r} * p.mSt.y + t${r} * p.mSt.z;`);
    for (let s = 0; s < NV; s++) L.push(`  var acc${r}_${s} = vec4f(0.0);`);
  }
  // Query chunks (pre-multiplied by scale·log2 e) stay in registers for the whole key loop, in plain variables:
  // lavapipe turns a dynamically indexed private array into per-lane memory accesses.
  for (let i = 0; i < NDS; i++) {
    L.push(`  let qd${i} = min(${i * S}u + sl, D4 - 1u);
  let qok${i} = ${i * S}u + sl < D4;`);
    for (let r = 0; r < TQ; r++) L.push(`  let qreg${r}_${i} = select(vec4f(0.0), Q[qr${r} + qd${i}] * qs, qok${i});`);
  }
  // Key blocks of S·KB keys; lane sl owns keys j0 + sl·KB + c (c < KB), clamped to a real row for reading.
  L.push(`  for (var j0 = 0u; j0 < visMax; j0 += ${S * KB}u) {`);
  for (let c = 0; c < KB; c++) {
    L.push(`    let jk${c} = j0 + sl * ${KB}u + ${c}u;`);
    L.push(tex ? `    let kr${c} = kvRow0 + min(jk${c}, visMax - 1u) * p.Hkv; ${texRow(`kr${c}`, `ky${c}`, `kl${c}`)}` : `    let kb${c} = kBase + min(jk${c}, visMax - 1u) * kStride;`);
    for (let r = 0; r < TQ; r++) L.push(`    var s${r}_${c} = 0.0;`);
  }
  // Scores, S feature chunks per step: lane sl holds chunk d8 + sl of every query row; chunk d8 + dd goes to
  // all lanes by a shuffle from lane dd. Loops stay loops (not unrolled): fewer access sites keep compile times
  // at a second or two, and unrolling dd by 2–8 measured no faster.
  const qpick = (r: number) => {
    let e = `qreg${r}_0`;
    for (let i = 1; i < NDS; i++) e = `select(${e}, qreg${r}_${i}, st == ${i}u)`;
    return e;
  };
  L.push(`    for (var d8 = 0u; d8 < D4; d8 += ${S}u) {
      let st = d8 / ${S}u;`);
  for (let r = 0; r < TQ; r++) L.push(`      let q${r} = ${qpick(r)};`);
  L.push(`      let nd = min(${S}u, D4 - d8);
      for (var dd = 0u; dd < nd; dd++) {`);
  for (let c = 0; c < KB; c++) L.push(tex ? `        let k${c} = textureLoad(Kt, vec2u(d8 + dd, ky${c}), kl${c});` : `        let k${c} = K[kb${c} + d8 + dd];`);
  for (let r = 0; r < TQ; r++) {
    L.push(`        { let qv = subgroupShuffle(q${r}, dd);`);
    for (let c = 0; c < KB; c++) L.push(`          s${r}_${c} += dot(qv, k${c});`);
    L.push('        }');
  }
  L.push('      }\n    }');
  // Mask and online softmax. Scores arrive in log2 units (scale·log2 e folded into the queries): exp2, and the
  // running maximum moves (and the accumulators are rescaled) only when a block raises it — a uniform branch.
  // The block maximum is a butterfly of shuffles: subgroupMax is a scalar loop over the lanes on lavapipe.
  for (let r = 0; r < TQ; r++) {
    for (let c = 0; c < KB; c++) {
      const add = mask ? ` + Mk[mb${r} + min(jk${c}, visMax - 1u) * p.mSt.w] * 1.4426950408889634` : '';
      L.push(`    s${r}_${c} = select(NEG, s${r}_${c}${add}, jk${c} < vis${r});`);
    }
    const lmax = Array.from({ length: KB }, (_, c) => `s${r}_${c}`).reduce((a, b2) => `max(${a}, ${b2})`);
    L.push(`    {
      var bm = ${lmax};`);
    for (let x = 1; x < S; x *= 2) L.push(`      bm = max(bm, subgroupShuffleXor(bm, ${x}u));`);
    L.push(`      if (bm > m${r}) {
        let corr = select(exp2(m${r} - bm), 0.0, isNegInf(m${r}));
        m${r} = bm;
        l${r} *= corr;`);
    for (let s2 = 0; s2 < NV; s2++) L.push(`        acc${r}_${s2} *= corr;`);
    L.push('      }');
    for (let c = 0; c < KB; c++) L.push(`      s${r}_${c} = select(exp2(s${r}_${c} - m${r}), 0.0, isNegInf(s${r}_${c}));`);
    L.push(`      l${r} += ${Array.from({ length: KB }, (_, c) => `s${r}_${c}`).join(' + ')};
    }`);
  }
  // Values: lanes switch to owning output features. Per source lane src, its KB keys' V rows are read (each lane
  // only its feature chunks) and each row's KB probabilities, shuffled from src, are added in one assignment
  // (keys past visMax have probability 0 and read a real row).
  L.push(`    let ns = min(${S}u, (visMax - j0 + ${KB - 1}u) / ${KB}u);
    for (var src = 0u; src < ns; src++) {
      let jv = j0 + src * ${KB}u;`);
  for (let c = 0; c < KB; c++) {
    L.push(tex ? `      let vr${c} = kvRow0 + min(jv + ${c}u, visMax - 1u) * p.Hkv; ${texRow(`vr${c}`, `vy${c}`, `vl${c}`)}` : `      let vb${c} = vBase + min(jv + ${c}u, visMax - 1u) * vStride;`);
    for (let s2 = 0; s2 < NV; s2++) {
      const x = `min(${s2 * S}u + sl, Dv4 - 1u)`;
      L.push(tex ? `      let v${c}_${s2} = textureLoad(Vt, vec2u(${x}, vy${c}), vl${c});` : `      let v${c}_${s2} = V[vb${c} + ${x}];`);
    }
  }
  for (let r = 0; r < TQ; r++) {
    L.push('      {');
    for (let c = 0; c < KB; c++) L.push(`        let p${c} = vec4f(subgroupShuffle(s${r}_${c}, src));`);
    for (let s2 = 0; s2 < NV; s2++) L.push(`        acc${r}_${s2} = acc${r}_${s2} + ${Array.from({ length: KB }, (_, c) => `p${c} * v${c}_${s2}`).join(' + ')};`);
    L.push('      }');
  }
  L.push('    }\n  }');
  // Combine lanes and store.
  for (let r = 0; r < TQ; r++) {
    L.push(`  {
    let tot = subgroupAdd(l${r});
    let inv = select(1.0 / tot, 0.0, tot == 0.0);
    let ob = p.offO / 4u + ((b * p.Tq + t${r}) * p.Hq + h${r}) * Dv4;`);
    for (let s = 0; s < NV; s++) {
      L.push(`    if (r0 + ${r}u < p.rows && ${s * S}u + sl < Dv4) { O[ob + ${s * S}u + sl] = acc${r}_${s} * inv; }`);
    }
    L.push('  }');
  }
  L.push('}');
  return L.join('\n');
}

/** Portable kernel; private arrays sized to a power-of-two bucket, head dims at run time. */
function fbShader(DM: number, DVM: number, mask: boolean): string {
  return /* wgsl */ `${params.wgsl('P')}
@group(0) @binding(0) var<storage, read> Q: array<f32>;
@group(0) @binding(1) var<storage, read> K: array<f32>;
@group(0) @binding(2) var<storage, read> V: array<f32>;
${mask ? '@group(0) @binding(3) var<storage, read> Mk: array<f32>;' : ''}
@group(0) @binding(${mask ? 4 : 3}) var<storage, read_write> O: array<f32>;
@group(0) @binding(${mask ? 5 : 4}) var<uniform> p: P;
${WGSL_WID}
${WGSL_NEGINF}
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) w: vec3u, @builtin(num_workgroups) nw: vec3u, @builtin(local_invocation_index) li: u32) {
  let e = wid(w, nw) * 64u + li;
  if (e >= p.B * p.Tq * p.Hq) { return; }
  let h = e % p.Hq;
  let t = (e / p.Hq) % p.Tq;
  let b = e / (p.Hq * p.Tq);
  let kvh = h / p.g;
  var vis = p.keyLen;
  if (p.causal != 0u) { vis = min(p.keyLen, p.qOff + t + 1u); }
  let qb = p.offQ + e * p.D;
  var q: array<f32, ${DM}>;
  for (var d = 0u; d < p.D; d++) { q[d] = Q[qb + d]; }
  var acc: array<f32, ${DVM}>;
  for (var d = 0u; d < p.Dv; d++) { acc[d] = 0.0; }
  var m = p.ninf;
  var l = 0.0;
  ${mask ? 'let mb = p.offM + b * p.mSt.x + h * p.mSt.y + t * p.mSt.z;' : ''}
  for (var j = 0u; j < vis; j++) {
    let kb = p.offK + ((b * p.S + j) * p.Hkv + kvh) * p.D;
    var s = 0.0;
    for (var d = 0u; d < p.D; d++) { s += q[d] * K[kb + d]; }
    s = s * p.scale${mask ? ' + Mk[mb + j * p.mSt.w]' : ''};
    if (isNegInf(s)) { continue; }
    let mn = max(m, s);
    let corr = select(exp(m - mn), 0.0, isNegInf(m));
    let pj = exp(s - mn);
    l = l * corr + pj;
    m = mn;
    let vb = p.offV + ((b * p.S + j) * p.Hkv + kvh) * p.Dv;
    for (var d = 0u; d < p.Dv; d++) { acc[d] = acc[d] * corr + pj * V[vb + d]; }
  }
  let inv = select(1.0 / l, 0.0, l == 0.0);
  let ob = p.offO + e * p.Dv;
  for (var d = 0u; d < p.Dv; d++) { O[ob + d] = acc[d] * inv; }
}`;
}

export function attention(env: KernelEnv, out: Tensor, [q, k, v, mask]: [Tensor, Tensor, Tensor, Tensor | null], attrs: AttentionAttrs): void {
  const { rt, caps } = env;
  const [B, Tq, Hq, D] = q.shape as [number, number, number, number];
  const [, S, Hkv] = k.shape as [number, number, number];
  const Dv = v.shape[3]!;
  if (out.size === 0) return;
  const g = Hq / Hkv;
  const qv = rt.view(sto(q));
  const kv = rt.view(sto(k));
  const vv = rt.view(sto(v));
  const ov = rt.view(sto(out));
  const mv = mask ? rt.view(sto(mask)) : null;
  let mSt = [0, 0, 0, 0];
  if (mask) mSt = broadcastStrides(mask.shape, [B, Hq, Tq, attrs.keyLength]);
  const rows = Tq * g;
  const aligned = [qv, kv, vv, ov].every((x) => x.elemOffset % 4 === 0);
  const useSg = caps.subgroups && D % 4 === 0 && Dv % 4 === 0 && D <= MAX_SG_DIM && Dv <= MAX_SG_DIM && aligned;
  const base = {
    B, Tq, Hq, Hkv, S, g, rows, causal: attrs.causal ? 1 : 0, qOff: attrs.queryOffset, keyLen: attrs.keyLength, scale: attrs.scale,
    ninf: -Infinity, offQ: qv.elemOffset, offK: kv.elemOffset, offV: vv.elemOffset, offO: ov.elemOffset, offM: mv?.elemOffset ?? 0, mSt,
    D4: D / 4, Dv4: Dv / 4, D, Dv, tSh: 0, tMask: 0,
  };
  const views = mv ? [qv, kv, vv, mv, ov] : [qv, kv, vv, ov];
  const bindings = mv ? (['r', 'r', 'r', 'r', 'w'] as const) : (['r', 'r', 'r', 'w'] as const);
  if (useSg) {
    // Tile heights (see the top): 2, 8 (grouped-query decode) or 12 (prefill); keys per lane and block KB.
    const TQ = rows <= 2 ? 2 : rows < 16 ? 8 : 12;
    const KB = TQ === 8 ? 2 : 4;
    const S4 = 4 * caps.sgSize;
    const NDS = nextPow2(Math.ceil(D / S4));
    const NV = nextPow2(Math.ceil(Dv / S4));
    // Prefill tiles read K and V from texture copies when the runtime keeps them (software adapters; see the
    // top): f32 tensors that fill their storages, rows of 256-byte multiples (head dims multiples of 64).
    let kt: TexMirror | null = null;
    let vt: TexMirror | null = null;
    const texOk = (t: Tensor, view: { elemOffset: number }, cols: number) =>
      t.dtype === 'f32' && view.elemOffset === 0 && sto(t).size === B * S * Hkv * cols && cols % 64 === 0;
    if (TQ === 12 && texOk(k, kv, D) && texOk(v, vv, Dv)) {
      kt = rt.textureMirror(sto(k), B * S * Hkv, D);
      vt = kt ? rt.textureMirror(sto(v), B * S * Hkv, Dv) : null;
    }
    // Texel rows are addressed by shift and mask: one layer, or power-of-two layers (maxTextureDimension2D).
    const per = kt?.rowsPerLayer ?? 0;
    const single = per >= B * S * Hkv;
    const tex = !!(kt && vt && vt.rowsPerLayer === per && (single || (per & (per - 1)) === 0));
    const code = sgShader(NDS, NV, TQ, KB, caps.sgSize, !!mask, tex);
    const tb = tex ? (mv ? (['r', 't', 't', 'r', 'w'] as const) : (['r', 't', 't', 'w'] as const)) : bindings;
    const pipe = rt.pipe({ label: `attention_sg_q${TQ}_k${KB}_d${NDS}_v${NV}${mask ? '_mask' : ''}${tex ? '_tex' : ''}`, code, bindings: tb, params });
    const tiles = Math.ceil(rows / TQ);
    const tv = tex ? (mv ? [qv, { tex: kt! }, { tex: vt! }, mv, ov] : [qv, { tex: kt! }, { tex: vt! }, ov]) : views;
    const texAddr = !tex ? { tSh: 0, tMask: 0 } : single ? { tSh: 31, tMask: 0xffffffff } : { tSh: Math.log2(per), tMask: per - 1 };
    rt.dispatch(pipe, tv, { ...base, tiles, ...texAddr }, grid(tiles * B * Hkv, 1, caps));
    return;
  }
  const DM = Math.max(16, nextPow2(D));
  const DVM = Math.max(16, nextPow2(Dv));
  const code = fbShader(DM, DVM, !!mask);
  const pipe = rt.pipe({ label: `attention_fb_${DM}_${DVM}${mask ? '_mask' : ''}`, code, bindings, params });
  rt.dispatch(pipe, views, { ...base, tiles: 1 }, grid(B * Tq * Hq, 64, caps));
}
