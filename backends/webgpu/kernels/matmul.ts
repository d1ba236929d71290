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
//
// The WGSL of these kernels is generated in matmul-shaders.ts; this file plans (binding-sized pieces) and dispatches.

import type { MatmulAttrs } from '../../../core/backend.js';
import { bytesPerElement, type DType } from '../../../core/dtype.js';
import type { Tensor } from '../../../core/tensor.js';
import { ParamLayout } from '../params.js';
import type { BindingKind, GpuStorage, TexView, View } from '../runtime.js';
import { grid, type KernelEnv, sto, WGSL_WID } from './common.js';
import { gemvFbShader, gemvRows, gemvShader, params, type Storage, tileFbShader, tileShader, type Variant } from './matmul-shaders.js';

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
