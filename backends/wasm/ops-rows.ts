// The row-wise and elementwise ops of the wasm backend: unary, scale, SwiGLU, broadcasting binary ops, norms,
// softmax, attention and rope. Each is one generated SIMD kernel (gen-elementwise.ts, gen-norm.ts,
// gen-attention.ts) over rows or runs of elements; calls above the size threshold are split into jobs by rows
// (or, for attention, whole heads or kv groups), so threads never change results.

import type { AttentionAttrs, BinaryAttrs, BinaryOp, ModulatedNormAttrs, NormAttrs, RopeAttrs, ScaleAttrs, UnaryAttrs, UnaryOp } from '../../core/backend.js';
import { broadcastStrides } from '../../core/shape.js';
import type { Tensor } from '../../core/tensor.js';
import { bytesPerElement } from '../../core/dtype.js';
import { type KernelContext, PAR_BYTES, PAR_FLOPS, ptr, split, WasmStorage } from './jobs.js';

/** Attention runs as per-head GEMMs from this many queries and keys (causal: 128, where it measured ahead). */
const ATTN_GEMM_MIN_TQ = 32;
/** Decode attention with ≥ 2 query heads per kv head runs per group as GEMMs from this many keys (1.35–1.5× at 1–4K keys, even at 256). */
const ATTN_GROUP_MIN_KEYS = 128;

type RopeTable = { cos: number; sin: number; positions: number; half: number; bytes: number };

// Kernel names chosen by an attribute, as strings made once: a name built per call (`norm_${kind}`) costs a
// string build and hash on every kernel call, and a decode step makes over a hundred.
const NORM_FN = { layer: 'norm_layer', rms: 'norm_rms' } as const;
const BINARY_FN: Record<BinaryOp, string> = { add: 'binary_add', sub: 'binary_sub', mul: 'binary_mul', div: 'binary_div' };
const UNARY_FN: Record<UnaryOp, string> = {
  gelu_tanh: 'unary_gelu_tanh', gelu_erf: 'unary_gelu_erf', silu: 'unary_silu', relu: 'unary_relu', tanh: 'unary_tanh',
  exp: 'unary_exp', neg: 'unary_neg', sqrt: 'unary_sqrt', rsqrt: 'unary_rsqrt',
};
/** Attention's mask strides when there is no mask. */
const NO_MASK_STRIDES: readonly number[] = [0, 0, 0, 0];

export class RowOps {
  private readonly ropeTables = new Map<string, RopeTable>();
  private lastRope: { theta: number; rotaryDim: number; tab: RopeTable } | null = null;

  constructor(
    private readonly cx: KernelContext,
    /** Widens an f16/bf16 tensor into f32 at a heap address (the layout ops' cast). */
    private readonly widenInto: (x: Tensor, dst: number) => void,
    /** The layout ops' transpose, into a tensor view over other storage. */
    private readonly transposeInto: (x: Tensor, out: Tensor, perm: number[]) => void,
    /** Benchmarking only (variants.attentionKV1 'generic'): heads of 8 through attention_kv1 too. */
    private readonly genericKV1 = false,
  ) {}

  /** out[i] = fn(ins[i]...) over n floats, split across threads for large n. */
  private map(name: string, out: number, ins: number[], n: number, params: number[] = []): void {
    const cx = this.cx;
    if (n === 0) return;
    const fn = cx.fn(name);
    const nt = cx.threadsFor(n * 4 * (ins.length + 1), PAR_BYTES);
    if (nt === 1) {
      const f = cx.fns[fn]!;
      if (ins.length === 1 && params.length === 0) f(out, ins[0]!, n);
      else if (ins.length === 2 && params.length === 0) f(out, ins[0]!, ins[1]!, n);
      else f(out, ...ins, n, ...params);
      return;
    }
    const jobs = split(n, nt, 16).map(([s, e]) => ({ fn, args: [out + s * 4, ...ins.map((p) => p + s * 4), e - s, ...params] }));
    cx.runJobs(jobs);
  }

  unary = (out: Tensor, [x]: [Tensor], { op }: UnaryAttrs): void => this.map(UNARY_FN[op], ptr(out), [ptr(x)], x.size);

  scale = (out: Tensor, [x]: [Tensor], { scale, shift }: ScaleAttrs): void => this.map('scale', ptr(out), [ptr(x)], x.size, [scale, shift]);

  swiglu = (out: Tensor, [g, u]: [Tensor, Tensor]): void => this.map('swiglu', ptr(out), [ptr(g), ptr(u)], g.size);

  binary = (out: Tensor, [a, b]: [Tensor, Tensor], { op }: BinaryAttrs): void => {
    const cx = this.cx;
    const n = out.size;
    if (n === 0) return;
    const fn = cx.fn(BINARY_FN[op]);
    const A = ptr(a), B = ptr(b), O = ptr(out);
    if (a.size === n && b.size === n) {
      // Same shape (residual adds): one contiguous run, split by elements; the one-row table is a constant.
      const tbl = cx.constsFor(0).binaryRow;
      const nt = cx.threadsFor(n * 12, PAR_BYTES);
      if (nt === 1) return cx.callHere(fn, [O, A, B, n, 1, tbl]);
      return cx.runJobs(split(n, nt, 16).map(([s, e]) => ({ fn, args: [O + s * 4, A + s * 4, B + s * 4, e - s, 1, tbl] })));
    }
    const shape = out.shape;
    const rank = shape.length;
    let sa = broadcastStrides(a.shape, shape);
    let sb = broadcastStrides(b.shape, shape);
    // Merge trailing dims while both inputs stay contiguous (or both broadcast) across them.
    let inner = rank ? shape[rank - 1]! : 1;
    let d = rank - 1;
    const innerA = rank ? sa[rank - 1]! : 1, innerB = rank ? sb[rank - 1]! : 1;
    while (d > 0) {
      const okA = innerA === 1 ? sa[d - 1] === inner : sa[d - 1] === 0;
      const okB = innerB === 1 ? sb[d - 1] === inner : sb[d - 1] === 0;
      if (!okA || !okB || shape[d - 1] === 1) break;
      inner *= shape[d - 1]!;
      d--;
    }
    const outerShape = shape.slice(0, Math.max(d, 0));
    sa = sa.slice(0, outerShape.length);
    sb = sb.slice(0, outerShape.length);
    const rows = n / Math.max(inner, 1);
    const flags = (innerA ? 1 : 0) | (innerB ? 2 : 0);
    const tbl = cx.tableFor(rows * 3);
    const T = cx.i32;
    let t = tbl >>> 2;
    const idx = new Array<number>(outerShape.length).fill(0);
    let ia = 0, ib = 0;
    for (let r = 0; r < rows; r++) {
      T[t++] = ia;
      T[t++] = ib;
      T[t++] = flags;
      for (let k = outerShape.length - 1; k >= 0; k--) {
        idx[k]!++;
        ia += sa[k]!;
        ib += sb[k]!;
        if (idx[k]! < outerShape[k]!) break;
        ia -= sa[k]! * outerShape[k]!;
        ib -= sb[k]! * outerShape[k]!;
        idx[k] = 0;
      }
    }
    const nt = cx.threadsFor(n * 12, PAR_BYTES);
    cx.runJobs(split(rows, nt, 1).map(([s, e]) => ({ fn, args: [O + s * inner * 4, A, B, inner, e - s, tbl + s * 12] })));
  };

  private norm(out: Tensor, x: Tensor, kind: 'layer' | 'rms', eps: number, gamma: Tensor | null, beta: Tensor | null, dGamma: Tensor | null, dBeta: Tensor | null): void {
    const cx = this.cx;
    const d = x.shape[x.rank - 1]!;
    if (x.size === 0 || d === 0) return;
    const rows = x.size / d;
    const c = cx.constsFor(d);
    const fn = cx.fn(NORM_FN[kind]);
    const g = gamma ? ptr(gamma) : c.ones, b = beta ? ptr(beta) : c.zeros;
    const dg = dGamma ? ptr(dGamma) : c.zeros, dgs = dGamma ? d : 0;
    const db = dBeta ? ptr(dBeta) : c.zeros, dbs = dBeta ? d : 0;
    const X = ptr(x), O = ptr(out);
    const nt = cx.threadsFor(x.size * 4 * (2 + (dGamma ? 1 : 0) + (dBeta ? 1 : 0)), PAR_BYTES);
    if (nt === 1) return cx.callHere(fn, [X, O, d, rows, eps, g, b, dg, dgs, db, dbs]);
    cx.runJobs(
      split(rows, nt, 1).map(([s, e]) => ({
        fn,
        args: [X + s * d * 4, O + s * d * 4, d, e - s, eps, g, b, dg + s * dgs * 4, dgs, db + s * dbs * 4, dbs],
      })),
    );
  }

  layerNorm = (out: Tensor, [x, gamma, beta]: [Tensor, Tensor | null, Tensor | null], { eps }: NormAttrs): void => this.norm(out, x, 'layer', eps, gamma, beta, null, null);

  rmsNorm = (out: Tensor, [x, gamma]: [Tensor, Tensor | null], { eps }: NormAttrs): void => this.norm(out, x, 'rms', eps, gamma, null, null, null);

  modulatedNorm = (
    out: Tensor,
    [x, gamma, beta, dGamma, dBeta]: [Tensor, Tensor, Tensor | null, Tensor | null, Tensor | null],
    { kind, eps }: ModulatedNormAttrs,
  ): void => this.norm(out, x, kind, eps, gamma, beta, dGamma, dBeta);

  softmax = (out: Tensor, [x, mask]: [Tensor, Tensor | null]): void => {
    const cx = this.cx;
    const n = x.shape[x.rank - 1]!;
    if (x.size === 0 || n === 0) return;
    const rows = x.size / n;
    const fn = cx.fn('softmax_rows');
    let tbl = 0, mStride = 0;
    if (mask) {
      const ms = broadcastStrides(mask.shape, x.shape);
      mStride = ms[x.rank - 1]!;
      const rowShape = x.shape.slice(0, -1);
      tbl = cx.tableFor(rows);
      const T = cx.i32;
      const idx = new Array<number>(rowShape.length).fill(0);
      let off = 0;
      for (let r = 0; r < rows; r++) {
        T[(tbl >>> 2) + r] = off;
        for (let k = rowShape.length - 1; k >= 0; k--) {
          idx[k]!++;
          off += ms[k]!;
          if (idx[k]! < rowShape[k]!) break;
          off -= ms[k]! * rowShape[k]!;
          idx[k] = 0;
        }
      }
    }
    const X = ptr(x), O = ptr(out), Mk = mask ? ptr(mask) : 0;
    const nt = cx.threadsFor(x.size * 32, PAR_BYTES);
    cx.runJobs(split(rows, nt, 1).map(([s, e]) => ({ fn, args: [X + s * n * 4, O + s * n * 4, n, e - s, Mk, tbl + s * 4, mStride] })));
  };

  attention = (out: Tensor, [q, k, v, mask]: [Tensor, Tensor, Tensor, Tensor | null], attrs: AttentionAttrs): void => {
    const cx = this.cx;
    const { causal, queryOffset, keyLength, scale, kvHeadMajor } = attrs;
    const [B, Tq, Hq, D] = q.shape as [number, number, number, number];
    const S = k.shape[kvHeadMajor ? 2 : 1]!, Hkv = k.shape[kvHeadMajor ? 1 : 2]!;
    const Dv = v.shape[3]!;
    const rows = B * Tq * Hq;
    if (rows === 0 || Dv === 0) return;
    // One query row over many keys with one kv head per query head (LaVi's conditioners in decode), f32 or packed
    // bf16 K/V: attention_kv1 streams the keys in order (gen-attention.ts). Other f16/bf16 K/V: widened copies.
    // Head-major K/V take it at any key length: the other paths would attend over token-major copies (the shipped
    // model's 9 visual tokens spent more time copying than attending).
    if (B * Tq === 1 && Hq === Hkv && !mask && (!causal || queryOffset + 1 >= keyLength) && D % 8 === 0 && Dv % 8 === 0 && (keyLength >= 16 || (kvHeadMajor && keyLength >= 1)) && k.dtype !== 'f16') {
      return this.attentionKV1(out, q, k, v, keyLength, scale, kvHeadMajor);
    }
    if (kvHeadMajor) return this.attentionTokenMajor(out, [q, k, v, mask], attrs);
    if (k.dtype !== 'f32') return this.attentionWidened(out, [q, k, v, mask], attrs);
    const ms = mask ? broadcastStrides(mask.shape, [B, Hq, Tq, keyLength]) : NO_MASK_STRIDES;
    if (Tq >= (causal ? 4 : 1) * ATTN_GEMM_MIN_TQ && keyLength >= ATTN_GEMM_MIN_TQ) {
      // Prefill: per (batch, head), Q·Kᵀ and P·V as packed GEMMs over tiles of queries (the scores of one tile at
      // a time, at most ~4 MB), softmax in between. Jobs are whole heads, so threads do not change results.
      const units = B * Hq;
      // Causal: 64-query tiles, so each computes little of the masked triangle; else as tall as ~4 MB of scores.
      const tile = Math.min(Tq, causal ? 64 : Math.max(16, Math.floor((1 << 20) / keyLength)));
      const per = Math.ceil((tile * keyLength) / 16) * 16 * 4;
      const nt = Math.min(units, cx.threadsFor(2 * units * Tq * keyLength * (D + Dv), PAR_FLOPS, 2));
      const scores = cx.heap.alloc(per * nt);
      try {
        const fn = cx.fn('attention_heads');
        cx.runJobs(
          split(units, nt, 1).map(([s, e], t) => ({
            fn,
            args: [ptr(q), ptr(k), ptr(v), ptr(out), mask ? ptr(mask) : 0, scores + t * per, 0, B, Tq, S, Hq, Hkv, D, Dv, keyLength, queryOffset, causal ? 1 : 0, scale, ms[0]!, ms[1]!, ms[2]!, ms[3]!, s, e, tile],
            scratchArg: 6,
          })),
        );
      } finally {
        cx.heap.free(scores, per * nt);
      }
      return;
    }
    const group = Hq / Hkv;
    if (group >= 2 && keyLength >= ATTN_GROUP_MIN_KEYS) {
      // Decode with grouped-query heads: per (query, kv head), the group's heads as two small GEMMs, so each key
      // and value row is read once per group. Jobs are whole groups: threads do not change results.
      const units = B * Tq * Hkv;
      const per = Math.ceil((group * keyLength) / 16) * 16 * 4;
      const nt = Math.min(units, cx.threadsFor(4 * units * group * keyLength * (D + Dv), PAR_FLOPS, 2));
      const scores = cx.heap.alloc(per * nt);
      try {
        const fn = cx.fn('attention_groups');
        cx.runJobs(
          split(units, nt, 1).map(([s, e], t) => ({
            fn,
            args: [ptr(q), ptr(k), ptr(v), ptr(out), mask ? ptr(mask) : 0, scores + t * per, 0, B, Tq, S, Hq, Hkv, D, Dv, keyLength, queryOffset, causal ? 1 : 0, scale, ms[0]!, ms[1]!, ms[2]!, ms[3]!, s, e],
            scratchArg: 6,
          })),
        );
      } finally {
        cx.heap.free(scores, per * nt);
      }
      return;
    }
    const nt = cx.threadsFor(rows * Math.max(keyLength, 1) * (D + Dv) * 2, PAR_FLOPS / 4);
    const per = (Math.ceil(keyLength / 16) * 16 + 16) * 4;
    const scratch = cx.heap.alloc(per * nt);
    try {
      const fn = cx.fn('attention_rows');
      if (nt === 1) {
        // Decode-sized: one call here (the decoder's and every conditioner's attention, per token).
        const args = [ptr(q), ptr(k), ptr(v), ptr(out), mask ? ptr(mask) : 0, scratch, B, Tq, S, Hq, Hkv, D, Dv, keyLength, queryOffset, causal ? 1 : 0, scale, ms[0]!, ms[1]!, ms[2]!, ms[3]!, 0, rows];
        return cx.callHere(fn, args);
      }
      const base = [ptr(q), ptr(k), ptr(v), ptr(out), mask ? ptr(mask) : 0];
      cx.runJobs(
        split(rows, nt, 1).map(([s, e], t) => ({
          fn,
          args: [...base, scratch + t * per, B, Tq, S, Hq, Hkv, D, Dv, keyLength, queryOffset, causal ? 1 : 0, scale, ms[0]!, ms[1]!, ms[2]!, ms[3]!, s, e],
        })),
      );
    } finally {
      cx.heap.free(scratch, per * nt);
    }
  };

  /** attention_kv1_<f32|bf16>: heads split across threads, each job reading its heads' run of every key. */
  private attentionKV1(out: Tensor, q: Tensor, k: Tensor, v: Tensor, keyLength: number, scale: number, headMajor: boolean): void {
    const cx = this.cx;
    const [, , H, D] = q.shape as [number, number, number, number];
    const Dv = v.shape[3]!;
    const eb = bytesPerElement(k.dtype);
    const S = k.shape[headMajor ? 2 : 1]!;
    // bytes between keys and between heads: token-major [S, H, D], or head-major [H, S, D]
    const [kStride, kHStride] = headMajor ? [D * eb, S * D * eb] : [H * D * eb, D * eb];
    const [vStride, vHStride] = headMajor ? [Dv * eb, S * Dv * eb] : [H * Dv * eb, Dv * eb];
    // Jobs of whole heads once there is 256 KiB to read. Heads of 8 are compute-bound (an exp and two 8-wide dots
    // per key), so they split from 64 KiB (N = 729 at lavi-0.5b: 21 µs on 2 threads vs 24 on one, docs/perf-log.md).
    const small = D === 8 && Dv === 8 && !this.genericKV1;
    const nt = cx.threads === 1 || H * keyLength * (D + Dv) * eb < (small ? PAR_BYTES / 16 : PAR_BYTES / 4) ? 1 : Math.min(Math.max(1, H >> 1), 2 * cx.threads);
    // attention_kv1d8: one job per thread (it walks its heads one contiguous run at a time; 8 one-head jobs cost
    // 14.5 µs against 11.5 for 2 four-head jobs at N = 729, docs/perf-log.md). attention_kv1, head-major: one head
    // per job (measured 1.1-1.3x faster than two-head jobs at N = 729); token-major: jobs of ≥ 2 heads, each key's
    // run stays ≥ 2 heads.
    const jobs = split(H, nt === 1 ? 1 : small ? Math.min(H, cx.threads) : headMajor ? H : nt, 1);
    const per = Math.max(...jobs.map(([s, e]) => e - s)) * (Math.ceil(keyLength / 4) * 4 + D) * 4;
    const scratch = cx.heap.alloc(per * jobs.length);
    try {
      if (small) {
        // Heads of 8 (the presets' conditioners): attention_kv1d8, one head at a time, p·v in registers.
        const fn = cx.fn(`attention_kv1d8_${k.dtype}`);
        cx.runJobs(jobs.map(([s, e], t) => ({ fn, args: [ptr(q), ptr(k), ptr(v), ptr(out), scratch + t * per, keyLength, kStride, vStride, scale, s, e, kHStride, vHStride] })));
        return;
      }
      const fn = cx.fn(`attention_kv1_${k.dtype}`);
      cx.runJobs(jobs.map(([s, e], t) => ({ fn, args: [ptr(q), ptr(k), ptr(v), ptr(out), scratch + t * per, keyLength, D, Dv, kStride, vStride, scale, s, e, kHStride, vHStride] })));
    } finally {
      cx.heap.free(scratch, per * jobs.length);
    }
  }

  /** Head-major K/V on the paths that read token-major: over token-major copies (same dtype). */
  private attentionTokenMajor(out: Tensor, ins: [Tensor, Tensor, Tensor, Tensor | null], attrs: AttentionAttrs): void {
    const toTokenMajor = (s: readonly number[]) => [s[0]!, s[2]!, s[1]!, s[3]!];
    this.attentionOverCopies(out, ins, { ...attrs, kvHeadMajor: false }, { shape: toTokenMajor }, (t, c) => this.transposeInto(t, c, [0, 2, 1, 3]));
  }

  /** Attention with f16/bf16 K/V on the paths that read f32: over widened copies. */
  private attentionWidened(out: Tensor, ins: [Tensor, Tensor, Tensor, Tensor | null], attrs: AttentionAttrs): void {
    this.attentionOverCopies(out, ins, attrs, { dtype: 'f32' }, (t, c) => this.widenInto(t, (c.storage as WasmStorage).ptr));
  }

  /** Attention over scratch copies of K and V (views of them with another dtype or shape, filled by `fill`), freed
   *  after the call. */
  private attentionOverCopies(
    out: Tensor,
    [q, k, v, mask]: [Tensor, Tensor, Tensor, Tensor | null],
    attrs: AttentionAttrs,
    as: { dtype?: 'f32'; shape?: (s: readonly number[]) => number[] },
    fill: (src: Tensor, copy: Tensor) => void,
  ): void {
    const cx = this.cx;
    const copies: WasmStorage[] = [];
    const copy = (t: Tensor): Tensor => {
      const dtype = as.dtype ?? t.dtype;
      const bytes = t.size * bytesPerElement(dtype);
      const storage = new WasmStorage(cx.heap.alloc(bytes), bytes);
      copies.push(storage);
      const c = Object.create(t, { storage: { value: storage }, dtype: { value: dtype }, shape: { value: as.shape ? as.shape(t.shape) : t.shape } }) as Tensor;
      fill(t, c);
      return c;
    };
    try {
      this.attention(out, [q, copy(k), copy(v), mask], attrs);
    } finally {
      for (const c of copies) cx.heap.free(c.ptr, c.bytes);
    }
  }

  rope = (out: Tensor, [x]: [Tensor], { theta, offset, rotaryDim }: RopeAttrs): void => {
    const cx = this.cx;
    const [B, T, H, D] = x.shape as [number, number, number, number];
    if (x.size === 0) return;
    const half = rotaryDim / 2;
    const tab = this.ropeTable(theta, rotaryDim, offset + T);
    const X = ptr(x), O = ptr(out);
    cx.fns[cx.fn('rope')]!(X, O, tab.cos + offset * half * 4, tab.sin + offset * half * 4, B * T, T, H, D, half, rotaryDim);
  };

  /** cos/sin of pos·θ^(−2i/rotaryDim) for positions [0, positions), computed in float64, cached per (θ, dim). */
  private ropeTable(theta: number, rotaryDim: number, positions: number) {
    const cx = this.cx;
    // A model uses one (θ, dim): the last table is checked first, before building the map key.
    const last = this.lastRope;
    if (last && last.theta === theta && last.rotaryDim === rotaryDim && last.tab.positions >= positions) return last.tab;
    const key = `${theta}:${rotaryDim}`;
    const half = rotaryDim / 2;
    let tab = this.ropeTables.get(key);
    if (!tab || tab.positions < positions) {
      const n = Math.max(positions, 256, (tab?.positions ?? 0) * 2);
      if (tab) {
        cx.heap.free(tab.cos, tab.bytes);
        cx.heap.free(tab.sin, tab.bytes);
      }
      const bytes = Math.max(4, n * half * 4);
      const cos = cx.heap.alloc(bytes), sin = cx.heap.alloc(bytes);
      const inv = Array.from({ length: half }, (_, i) => Math.pow(theta, (-2 * i) / rotaryDim));
      const F = cx.f32;
      for (let p = 0; p < n; p++) {
        for (let i = 0; i < half; i++) {
          const ang = p * inv[i]!;
          F[(cos >>> 2) + p * half + i] = Math.cos(ang);
          F[(sin >>> 2) + p * half + i] = Math.sin(ang);
        }
      }
      tab = { cos, sin, positions: n, half, bytes };
      this.ropeTables.set(key, tab);
    }
    this.lastRope = { theta, rotaryDim, tab };
    return tab;
  }
}
