// Matrix products on the wasm backend: matmul (batched, bias, packed f16/bf16 weights) and patchEmbed (im2col,
// then the same GEMM), dispatched by shape to the packed GEMM (gen-gemm.ts), the streaming [N, K] GEMV (decode:
// one to eight rows of x against Linear weights) or the [K, N] GEMV (gen-gemv.ts), and split into jobs by rows or
// columns of the output, or by chunks of K with a fixed-order reduction, so results never depend on threads.

import type { MatmulAttrs, PatchEmbedAttrs } from '../../core/backend.js';
import { bytesPerElement } from '../../core/dtype.js';
import { BackendError } from '../../core/errors.js';
import type { Tensor } from '../../core/tensor.js';
import { DTYPE_CODE, type StoreDType } from './gen-gemm.js';
import { type KernelContext, PAR_BYTES, PAR_FLOPS, ptr, split } from './jobs.js';
import { BLOCKING, GEMM_SCRATCH_BYTES } from './kernels.js';
import { type Job, MAX_JOBS } from './pool.js';

const GEMV_T_MAX_M = 8; // rows of x handled by the streaming GEMV (beyond that the packed GEMM wins)
const GEMV_N_CHUNK = 512; // rows of B per job of the [K, N] GEMV (at least)
/** Up to this K the f32/f16 [N, K] GEMV reads x in place (`gemv_t_<dt>_d`): 4 KiB of x stays in L1 across rows,
 *  and the reordered copy (which helps long rows read from DRAM, docs/perf-log.md) costs a prepare_x call and more
 *  per-row work (two block loops, measured 7–16% of the kernel at K = 64–1024, cache-hot). */
const GEMV_DIRECT_MAX_K = 1024;
/** Weight bytes per job of an [N, K] GEMV (threadsFor: so a GEMV splits once it has two of these, 512 KiB). Lower
 *  than PAR_BYTES: in decode the workers are spinning from the previous kernel, and Qwen2-0.5B's [896, 896] bf16
 *  projections (1.6 MB) ran on one thread; split, lavi-0.5b decode steps are 3–4% faster (`node
 *  dist/test/bench/decode-ab-bench.js --gemv-par-bytes 1048576`, docs/perf-log.md). Rows of at most GEMV_SHORT_K are
 *  compute-bound (unpacking and a horizontal sum per 64–128 bytes): jobs of 64 KiB, so they split from 128 KiB
 *  (LaVi's o_proj, [1792, 64] bf16, 224 KiB). */
const GEMV_PAR_BYTES = 1 << 18;
const GEMV_SHORT_K = 128;
const GEMV_SHORT_PAR_BYTES = 1 << 16;

/** Kernel variants (benchmarking only: their kernels are added by test/bench/dev/wasm-variants.ts). */
export interface Variants {
  gemvT?: string;
  gemvN?: string;
  gemvUnitBytes?: number;
  /** Work (bytes) per job of an [N, K] GEMV, for rows of any length (default GEMV_PAR_BYTES, 256 KiB; 64 KiB for
   *  rows of at most GEMV_SHORT_K); it splits once it has two jobs' worth. */
  gemvParBytes?: number;
  gemm?: string;
  /** 'generic': one-row attention over heads of 8 by attention_kv1 instead of attention_kv1d8 (both shipped). */
  attentionKV1?: 'generic';
}

export class MatmulDispatch {
  /** The [N, K] GEMV per weight dtype (variant resolved once) and prepare_x, as indices into fns: a decode step
   *  makes ~50 GEMV calls, and building and hashing `gemv_t_${dt}${variant}` per call showed in profiles. */
  private readonly gemvT: Record<StoreDType, number>;
  private readonly prepareX: number;
  /** `bf16Activations`: round_bf16 and the bf16-x GEMV (variant resolved once), as indices into fns. */
  private readonly roundBf16: number;
  private readonly gemvTBf16x: number;
  /** The x-in-place [N, K] GEMV per dtype (−1: none: bf16, or another variant chosen) and the K up to which it runs. */
  private readonly gemvTDirect: Record<StoreDType, number>;
  private readonly gemvDirectMaxK: number;

  constructor(
    private readonly k: KernelContext,
    private readonly variants: Variants,
    /** Whether the kernels use relaxed-SIMD FMA. */
    private readonly fma: boolean,
    /** See WasmBackendOptions.bf16Activations. */
    private readonly bf16Activations: boolean,
  ) {
    const v = variants.gemvT ?? '';
    // A misspelt or retired variant would otherwise time the default against itself without a word.
    if (v !== '' && !['f32', 'bf16', 'f16', 'bf16_xb'].some((dt) => k.has(`gemv_t_${dt}${v}`))) {
      throw new BackendError(`${k.name}: no GEMV variant '${v}' (variants.gemvT) for any dtype in the module`);
    }
    const gemvT = (dt: StoreDType) => k.fn(k.has(`gemv_t_${dt}${v}`) ? `gemv_t_${dt}${v}` : `gemv_t_${dt}`); // dtype-specific variants: others keep the default
    this.gemvT = { f32: gemvT('f32'), bf16: gemvT('bf16'), f16: gemvT('f16') };
    this.prepareX = k.fn('prepare_x');
    this.roundBf16 = k.fn('round_bf16');
    this.gemvTBf16x = k.fn(k.has(`gemv_t_bf16_xb${v}`) ? `gemv_t_bf16_xb${v}` : 'gemv_t_bf16_xb');
    // Variant '_d' forces the x-in-place kernel at every K; any other variant disables it (so '_r1' is timed as is).
    const direct = (dt: StoreDType) => (v === '' || v === '_d' ? (k.has(`gemv_t_${dt}_d`) ? k.fn(`gemv_t_${dt}_d`) : -1) : -1);
    this.gemvTDirect = { f32: direct('f32'), bf16: -1, f16: direct('f16') };
    this.gemvDirectMaxK = v === '_d' ? Infinity : GEMV_DIRECT_MAX_K;
  }

  matmul = (out: Tensor, [a, b, bias]: [Tensor, Tensor, Tensor | null], { transposeB }: MatmulAttrs): void => {
    const k = this.k;
    const M = a.shape[a.rank - 2]!;
    const K = a.shape[a.rank - 1]!;
    const N = out.shape[out.rank - 1]!;
    let batches = 1;
    for (let i = 0; i < a.rank - 2; i++) batches *= a.shape[i]!;
    if (M === 0 || N === 0 || batches === 0) return;
    const o = ptr(out);
    const biasPtr = bias ? ptr(bias) : 0;
    if (K === 0) {
      for (let r = 0; r < batches * M; r++) {
        const row = (o >>> 2) + r * N;
        if (bias) k.f32.copyWithin(row, biasPtr >>> 2, (biasPtr >>> 2) + N);
        else k.f32.fill(0, row, row + N);
      }
      return;
    }
    const dt = b.dtype as StoreDType;
    const eb = bytesPerElement(b.dtype);
    if (b.rank === 2) {
      // One weight for every batch: the batches are just more rows of A.
      this.gemm(ptr(a), ptr(b), o, biasPtr, batches * M, N, K, transposeB, dt);
    } else {
      for (let bt = 0; bt < batches; bt++) {
        this.gemm(ptr(a) + bt * M * K * 4, ptr(b) + bt * K * N * eb, o + bt * M * N * 4, biasPtr, M, N, K, transposeB, dt);
      }
    }
  };

  /** How many jobs an [N, K] GEMV with eb-byte weights is split into: a multiple of the thread count once there
   *  are more jobs than threads (three equal jobs on two threads would take two jobs' time). */
  private gemvJobs(N: number, K: number, eb: number): number {
    const unit = this.variants.gemvParBytes ?? (K <= GEMV_SHORT_K ? GEMV_SHORT_PAR_BYTES : GEMV_PAR_BYTES);
    const nt = this.k.threadsFor(N * K * (this.variants.gemvUnitBytes ?? eb), unit);
    const T = this.k.threads;
    return nt > T ? Math.floor(nt / T) * T : nt;
  }

  /** C[M, N] = A[M, K] · B (+ bias), all contiguous; B is [K, N] or (transB) [N, K] of dtype dt. */
  gemm(a: number, b: number, c: number, bias: number, M: number, N: number, K: number, transB: boolean, dt: StoreDType, roundA = this.bf16Activations): void {
    const k = this.k;
    const eb = dt === 'f32' ? 4 : 2;
    if (dt === 'bf16' && roundA) return this.gemmBf16Act(a, b, c, bias, M, N, K, transB);
    if (transB && M <= GEMV_T_MAX_M) {
      const nt = this.gemvJobs(N, K, eb);
      const direct = this.gemvTDirect[dt];
      if (direct >= 0 && K <= this.gemvDirectMaxK) {
        // Short f32/f16 rows: x read in place (no prepared copy; the default's sums bit for bit).
        if (nt === 1) return k.fns[direct]!(a, K, 0, b, bias, c, N, N, K, M);
        return k.runJobs(split(N, nt, 4).map(([n0, n1]) => ({ fn: direct, args: [a, K, 0, b + n0 * K * eb, bias ? bias + n0 * 4 : 0, c + n0 * 4, N, n1 - n0, K, M] })));
      }
      // Streaming GEMV over weight rows, against x reordered (and for bf16 split into even/odd elements) once here.
      // The prepared x goes into the calling thread's GEMM scratch when it fits (~768 KiB: K up to 24K at M = 8):
      // no GEMM runs during a GEMV, and the workers only read it, so no alloc/free per call.
      const xBytes = M * K * 4;
      const own = xBytes > GEMM_SCRATCH_BYTES;
      const xd = own ? k.heap.alloc(xBytes) : k.gemmScratch[0]!;
      try {
        const prep = k.fns[this.prepareX]!;
        for (let m = 0; m < M; m++) prep(a + m * K * 4, xd + m * K * 4, K, dt === 'bf16' ? 1 : 0);
        const fn = this.gemvT[dt];
        // One job (every decode GEMV of a small model): a direct call, no ranges, job objects or arrays.
        if (nt === 1) return k.fns[fn]!(a, K, xd, b, bias, c, N, N, K, M);
        k.runJobs(split(N, nt, 4).map(([n0, n1]) => ({ fn, args: [a, K, xd, b + n0 * K * eb, bias ? bias + n0 * 4 : 0, c + n0 * 4, N, n1 - n0, K, M] })));
      } finally {
        if (own) k.heap.free(xd, xBytes);
      }
      return;
    }
    const jobs: Job[] = [];
    if (!transB && M === 1) {
      // x·B with B [K, N]: jobs take chunks of B's rows (whole rows, read in order: splitting columns instead
      // would make every job read short runs of each row, which measured 3–5× slower), each writing partial sums,
      // then one fixed-order reduction. The chunking depends on the shape only, so results do not depend on threads.
      const fn = k.fn(`gemv_n_${dt}${this.fma ? (this.variants.gemvN ?? '') : ''}`);
      const kch = Math.max(GEMV_N_CHUNK, Math.ceil(K / MAX_JOBS));
      const chunks = K * N * eb >= PAR_BYTES ? Math.ceil(K / kch) : 1; // small B: one job, no partials
      if (chunks === 1) {
        jobs.push({ fn, args: [a, b, N, bias, c, N, K] });
      } else {
        const stride = Math.ceil(N / 16) * 16;
        const partial = k.heap.alloc(chunks * stride * 4);
        try {
          for (let ci = 0; ci < chunks; ci++) {
            const k0 = ci * kch, kc = Math.min(kch, K - k0);
            jobs.push({ fn, args: [a + k0 * 4, b + k0 * N * eb, N, 0, partial + ci * stride * 4, N, kc] });
          }
          k.runJobs(jobs); // one thread: back to back; more: claimed like any jobs
          const sum = k.fn('sum_partials');
          const nt = k.threadsFor(chunks * N * 4, PAR_BYTES);
          k.runJobs(split(N, nt, 16).map(([s0, e]) => ({ fn: sum, args: [partial + s0 * 4, stride, chunks, e - s0, bias ? bias + s0 * 4 : 0, c + s0 * 4] })));
        } finally {
          k.heap.free(partial, chunks * stride * 4);
        }
        return;
      }
    } else {
      // Jobs split the larger operand's dimension; each packs what it uses, so the redundant packing is the
      // smaller operand (split N: every job packs all of A). One job per thread when A is large.
      let nt = k.threadsFor(2 * M * N * K, PAR_FLOPS, 2);
      if (M * K > (1 << 18) && !k.splitAll) nt = Math.min(nt, k.threads);
      const fn = k.fn(`gemm${this.variants.gemm ?? ''}`);
      const ldb = transB ? K : N;
      const byN = N >= M || M < BLOCKING.MR * nt;
      const ranges = split(byN ? N : M, nt, byN ? BLOCKING.NR : BLOCKING.MR);
      ranges.forEach(([s, e]) => {
        const [m0, m1, n0, n1] = byN ? [0, M, s, e] : [s, e, 0, N];
        const bOff = transB ? n0 * K * eb : n0 * eb;
        jobs.push({
          fn,
          args: [a + m0 * K * 4, K, b + bOff, ldb, transB ? 1 : 0, DTYPE_CODE[dt], c + (m0 * N + n0) * 4, N, bias ? bias + n0 * 4 : 0, m1 - m0, n1 - n0, K, 0],
          scratchArg: 12,
        });
      });
    }
    k.runJobs(jobs);
  }

  /**
   * gemm() with bf16 weights under `bf16Activations`: A is rounded to bf16 once (round_bf16, on the calling thread:
   * M·K floats against M·N·K multiply-adds). The [N, K] GEMV takes it packed (half the x bytes: the point of the
   * option); every other path takes the rounded values as f32 and runs unchanged, so prefill and decode share
   * the same activation rounding.
   */
  private gemmBf16Act(a: number, b: number, c: number, bias: number, M: number, N: number, K: number, transB: boolean): void {
    const k = this.k;
    const round = k.fns[this.roundBf16]!;
    if (transB && M <= GEMV_T_MAX_M) {
      const bytes = M * K * 2;
      const xb = k.heap.alloc(bytes);
      try {
        round(a, xb, M * K, 1); // rows of K bf16, back to back: row m at xb + m·K·2
        const nt = this.gemvJobs(N, K, 2);
        const fn = this.gemvTBf16x;
        if (nt === 1) return k.fns[fn]!(0, K, xb, b, bias, c, N, N, K, M);
        k.runJobs(split(N, nt, 4).map(([n0, n1]) => ({ fn, args: [0, K, xb, b + n0 * K * 2, bias ? bias + n0 * 4 : 0, c + n0 * 4, N, n1 - n0, K, M] })));
      } finally {
        k.heap.free(xb, bytes);
      }
      return;
    }
    const bytes = M * K * 4;
    const ar = k.heap.alloc(bytes);
    try {
      round(a, ar, M * K, 0);
      // The rounded A down the normal bf16 paths (roundA false: no second rounding).
      this.gemm(ar, b, c, bias, M, N, K, transB, 'bf16', false);
    } finally {
      k.heap.free(ar, bytes);
    }
  }


  patchEmbed = (out: Tensor, [image, weight, bias]: [Tensor, Tensor, Tensor | null], { patch: P }: PatchEmbedAttrs): void => {
    const k = this.k;
    const [B, C, H, W] = image.shape as [number, number, number, number];
    const D = weight.shape[0]!;
    const gh = H / P, gw = W / P;
    const rows = B * gh * gw, cols = C * P * P;
    if (rows === 0 || D === 0) return;
    // im2col: one row per patch, in the weight's (c, i, j) order; then a GEMM against weight [D, C·P·P]ᵀ.
    const tmp = k.heap.alloc(rows * cols * 4);
    try {
      const F = k.f32, X = ptr(image) >>> 2;
      let o = tmp >>> 2;
      for (let b = 0; b < B; b++) {
        for (let py = 0; py < gh; py++) {
          for (let px = 0; px < gw; px++) {
            for (let c = 0; c < C; c++) {
              for (let i = 0; i < P; i++) {
                const s = X + ((b * C + c) * H + py * P + i) * W + px * P;
                F.copyWithin(o, s, s + P);
                o += P;
              }
            }
          }
        }
      }
      this.gemm(tmp, ptr(weight), ptr(out), bias ? ptr(bias) : 0, rows, D, cols, true, 'f32');
    } finally {
      k.heap.free(tmp, rows * cols * 4);
    }
  };
}
