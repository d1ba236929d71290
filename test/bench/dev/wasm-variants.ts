// Benchmark-only wasm kernel variants (llm.c dev/cuda style): alternatives to the shipped kernels, kept so that
// each can be timed against the default side by side (test/bench/wasm-bench.ts) and checked for agreement
// (test/wasm-backend.test.ts). Never part of the shipped module: a backend compiles them only when created with
// `kernels: WASM_VARIANT_KERNELS`, and selects one with `variants` (e.g. { gemvT: '_r4a2' }). Their measurements
// are in docs/perf-log.md.
//
//   const b = await createWasmBackend({ threads: 1, kernels: WASM_VARIANT_KERNELS, variants: { gemvT: '_r1' } });

import { genGemmDriver, genGemmMacro } from '../../../backends/wasm/gen-gemm.js';
import { f32, f32x4, i32, i32x4, type Expr, type ModuleBuilder, v128 } from '../../../backends/wasm/emitter.js';
import { load1, load4 } from '../../../backends/wasm/gen-gemm.js';
import { genGemvN, genGemvT, genGemvTBf16x, hsum, hsum4 } from '../../../backends/wasm/gen-gemv.js';
import { vexpNonPositive } from '../../../backends/wasm/gen-math.js';
import { ptr, type KernelContext } from '../../../backends/wasm/jobs.js';
import type { Tensor } from '../../../core/tensor.js';
import { tensor } from '../../../ops/index.js';
import { BLOCKING, type KernelExtension } from '../../../backends/wasm/kernels.js';

/** [N, K] GEMV blockings (rows per pass, accumulators per row): variant `_r<R>a<ACC>`. */
export const GEMV_T_VARIANTS: [number, number][] = [[2, 4], [4, 2], [2, 2], [4, 1]];

/** GEMM cache blockings (same micro-kernel): variant `gemm<suffix>`. GEMM_SCRATCH_BYTES (kernels.ts) fits them all. */
export const GEMM_VARIANTS: Record<string, { MC: number; KC: number; NC: number }> = {
  _k512: { MC: 128, KC: 512, NC: 256 },
  _k384: { MC: 96, KC: 384, NC: 384 },
  _m64: { MC: 64, KC: 256, NC: 1024 },
};

export const WASM_VARIANT_KERNELS: KernelExtension = {
  key: 'bench-variants',
  add({ m, fma, dts, macro, packA, packB }) {
    const { MR, NR, MC, KC, NC } = BLOCKING;
    for (const [suffix, b] of Object.entries(GEMM_VARIANTS)) genGemmDriver(m, { MR, NR, ...b }, macro, packA, packB, `gemm${suffix}`);
    // Same blocking, k loop ended by B's pointer instead of a counter.
    genGemmDriver(m, { MR, NR, MC, KC, NC }, genGemmMacro(m, MR, NR, 1, fma, true), packA, packB, 'gemm_p');
    genGemvTBf16x(m, fma, false); // '_r1' under bf16Activations: one row per pass
    genAttentionKV1D8Blocked(m, fma);
    genAttentionKV1D8Contiguous(m, fma);
    for (const dt of dts) {
      genGemvT(m, dt, fma, 1, 4, `gemv_t_${dt}_r1`); // one row per pass (the default's sums, bit for bit)
      for (const [R, ACC] of GEMV_T_VARIANTS) genGemvT(m, dt, fma, R, ACC, `gemv_t_${dt}_r${R}a${ACC}`);
      if (dt === 'bf16') genGemvTPairs(m, fma, `gemv_t_${dt}_p2f`); // bf16 only: other dtypes keep their default
      if (fma) genGemvN(m, dt, true, `gemv_n_${dt}_fma`);
    }
  },
};

/**
 * gemv_t_bf16_p2f (same arguments as gemv_t; benchmarking variant): bf16 [N, K] GEMV over two weight rows per pass,
 * row i with row i + ⌊rows/2⌋ (two streams far apart), eight k per step, each x vector loaded once for both rows,
 * two accumulators per row (even and odd elements); a leftover row alone. Why: one-row passes load two 64-byte
 * lines of x (16 KiB at K = 4096, which the weight stream evicts from L1) per line of weights; a diagnostic kernel
 * whose x reads stayed within 4 KiB streamed 24 GB/s on one core against 14–17 (docs/perf-log.md). Two rows per pass
 * halve the x lines per weight line. A row's sum does not depend on its partner (or on having one).
 * Measured slower: adjacent rows (n, n + 1), four far rows, k-chunks of 512–2048 over all rows, odd rows run
 * downwards (docs/perf-log.md).
 */
export function genGemvTPairs(m: ModuleBuilder, fma: boolean, name: string): string {
  const R = 2;
  const madd = (a: Expr, b: Expr, acc: Expr) => (fma ? f32x4.relaxed_madd(a, b, acc) : f32x4.add(acc, f32x4.mul(a, b)));
  m.func(name, ['i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32'], [], (f, x, ldx, xd, w, bias, y, ldy, rows, K, M) => {
    const n = f.local('i32'), mm = f.local('i32'), k = f.local('i32'), i = f.local('i32');
    const xp = f.local('i32'), xdp = f.local('i32');
    const wps = Array.from({ length: R }, () => f.local('i32'));
    const rowIx = Array.from({ length: R }, () => f.local('i32'));
    const acc = Array.from({ length: R }, () => [f.local('v128'), f.local('v128')]);
    const xe = f.local('v128'), xo = f.local('v128');
    const s = f.local('f32');
    const rowBytes = f.local('i32', i32.shl(K, 1));
    const ldxb = f.local('i32', i32.shl(ldx, 2)), ldyb = f.local('i32', i32.shl(ldy, 2));
    const k16 = f.local('i32', i32.and(K, -16)), k4 = f.local('i32', i32.and(K, -4));
    const half = f.local('i32', i32.shr_u(rows, 1)); // number of pairs
    const mask = v128.constI32(-65536, -65536, -65536, -65536);
    const pass = (count: number) => {
      for (let r = 0; r < count; r++) f.set(wps[r]!, i32.add(w, i32.mul(rowIx[r]!, rowBytes)));
      f.for(mm, 0, M, 1, () => {
        f.set(xp, i32.add(x, i32.mul(mm, ldxb)));
        f.set(xdp, i32.add(xd, i32.mul(mm, ldxb)));
        for (let r = 0; r < count; r++) for (const a of acc[r]!) f.set(a, v128.zero());
        f.for(k, 0, k16, 8, () => {
          const xa = i32.add(xdp, i32.shl(k, 2));
          f.set(xe, v128.load(xa, 0, 0));
          f.set(xo, v128.load(xa, 16, 0));
          for (let r = 0; r < count; r++) {
            const raw = f.local('v128', v128.load(i32.add(wps[r]!, i32.shl(k, 1)), 0, 0));
            f.set(acc[r]![0]!, madd(i32x4.shl(raw, 16), xe, acc[r]![0]!));
            f.set(acc[r]![1]!, madd(v128.and(raw, mask), xo, acc[r]![1]!));
          }
        });
        for (let r = 0; r < count; r++) {
          const a0 = acc[r]![0]!, wp = wps[r]!;
          f.set(a0, f32x4.add(a0, acc[r]![1]!));
          f.for(k, k16, k4, 4, () => f.set(a0, madd(load4(f, i32.add(wp, i32.shl(k, 1)), 'bf16'), v128.load(i32.add(xp, i32.shl(k, 2)), 0, 0), a0)));
          f.set(s, hsum(a0));
          f.for(k, k4, K, 1, () => f.set(s, f32.add(s, f32.mul(f32.load(i32.add(xp, i32.shl(k, 2))), load1(f, i32.add(wp, i32.shl(k, 1)), 'bf16')))));
          f.if(i32.ne(bias, 0), () => f.set(s, f32.add(s, f32.load(i32.add(bias, i32.shl(rowIx[r]!, 2))))));
          f.f32_store(i32.add(y, i32.add(i32.mul(mm, ldyb), i32.shl(rowIx[r]!, 2))), s);
        }
      });
    };
    f.for(i, 0, half, 1, () => {
      f.set(rowIx[0]!, i);
      f.set(rowIx[1]!, i32.add(i, half));
      pass(R);
    });
    f.for(i, i32.mul(half, R), rows, 1, () => {
      f.set(rowIx[0]!, i);
      pass(1);
    });
  });
  return name;
}

/**
 * attention_kv1d8b_bf16(q, k, v, out, scratch, keyLength, scale, h0, h1, kHStride, vHStride) (benchmarking variant
 * of attention_kv1d8, issue 17): the same one-query attention over heads of 8, but K and U in a key-blocked layout,
 * per head ⌈keyLength/8⌉ blocks of 128 bytes, block b holding dimension d of keys 8b..8b+7 at b·128 + 16·d (bf16,
 * keys past keyLength zero). One v128 load gives one dimension of eight keys, so the scores of eight keys are 16
 * multiply-adds against splatted q values, with no horizontal sums; p·U is 16 multiply-adds into one accumulator
 * per dimension, summed across lanes once per head. Widening: shl 16 gives the even keys, and 0xffff0000 the odd.
 * `scratch`: 32 bytes per block (even then odd keys' scores). Keys past keyLength score −inf.
 */
export function genAttentionKV1D8Blocked(m: ModuleBuilder, fma: boolean): void {
  const madd = (a: Expr, b: Expr, acc: Expr) => (fma ? f32x4.relaxed_madd(a, b, acc) : f32x4.add(acc, f32x4.mul(a, b)));
  const params = ['i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'f32', 'i32', 'i32', 'i32', 'i32'] as ('i32' | 'f32')[];
  m.func('attention_kv1d8b_bf16', params, [], (f, q, k, v, out, scratch, keyLength, scale, h0, h1, kHStride, vHStride) => {
    const h = f.local('i32'), b = f.local('i32'), kp = f.local('i32'), vp = f.local('i32'), sp = f.local('i32');
    const nb = f.local('i32', i32.shr_u(i32.add(keyLength, 7), 3));
    const full = f.local('i32', i32.shr_u(keyLength, 3));
    const HI = v128.constI32(-65536, -65536, -65536, -65536);
    const qs = Array.from({ length: 8 }, () => f.local('v128'));
    const CH = 2; // chains per parity in the scores (1, 2 and 4 measured the same: the loop is not latency-bound)
    const raw = f.local('v128'), se = Array.from({ length: CH }, () => f.local('v128')), so = Array.from({ length: CH }, () => f.local('v128'));
    const mx = f.local('v128'), msv = f.local('v128'), sum = f.local('v128'), pe = f.local('v128'), po = f.local('v128');
    const acc = Array.from({ length: 8 }, () => f.local('v128'));
    const t0 = f.local('v128'), t1 = f.local('v128'), inv = f.local('v128');
    const ninf = v128.constF32(-Infinity, -Infinity, -Infinity, -Infinity);
    const remV = f.local('v128', f32x4.splat(f32.convert_i32_s(i32.sub(keyLength, i32.shl(full, 3)))));
    const evenIdx = v128.constF32(0, 2, 4, 6), oddIdx = v128.constF32(1, 3, 5, 7);
    const scores = () => {
      // eight keys of block kp: even keys' scores in se[0] + se[1], odd in so[0] + so[1] (two chains each)
      for (let d = 0; d < 8; d++) {
        f.set(raw, v128.load(kp, d * 16, 0));
        const c = d % CH;
        f.set(se[c]!, d < CH ? f32x4.mul(i32x4.shl(raw, 16), qs[d]!) : madd(i32x4.shl(raw, 16), qs[d]!, se[c]!));
        f.set(so[c]!, d < CH ? f32x4.mul(v128.and(raw, HI), qs[d]!) : madd(v128.and(raw, HI), qs[d]!, so[c]!));
      }
      for (let c = 1; c < CH; c++) f.set(se[0]!, f32x4.add(se[0]!, se[c]!)), f.set(so[0]!, f32x4.add(so[0]!, so[c]!));
    };
    f.for(h, h0, h1, 1, () => {
      for (let d = 0; d < 8; d++) f.set(qs[d]!, f32x4.splat(f32.mul(f32.load(i32.add(q, i32.shl(h, 5)), d * 4), scale)));
      // 1. scores and their running max
      f.set(kp, i32.add(k, i32.mul(h, kHStride)));
      f.set(sp, scratch);
      f.set(mx, ninf);
      f.for(b, 0, full, 1, () => {
        scores();
        f.v128_store(sp, se[0]!, 0, 0);
        f.v128_store(sp, so[0]!, 16, 0);
        f.set(mx, f32x4.max(mx, f32x4.max(se[0]!, so[0]!)));
        f.inc(sp, 32);
        f.inc(kp, 128);
      });
      f.if(i32.lt_u(full, nb), () => {
        scores();
        f.set(se[0]!, v128.bitselect(se[0]!, ninf, f32x4.lt(evenIdx, remV)));
        f.set(so[0]!, v128.bitselect(so[0]!, ninf, f32x4.lt(oddIdx, remV)));
        f.v128_store(sp, se[0]!, 0, 0);
        f.v128_store(sp, so[0]!, 16, 0);
        f.set(mx, f32x4.max(mx, f32x4.max(se[0]!, so[0]!)));
      });
      f.set(t0, f32x4.max(mx, v128.shuffle32(mx, mx, [2, 3, 0, 1])));
      f.set(msv, f32x4.splat(f32.max(f32x4.extract_lane(t0, 0), f32x4.extract_lane(t0, 1))));
      // 2. p = exp(score − max); Σp; Σ p·u per dimension
      for (const x of [sum, ...acc]) f.set(x, v128.zero());
      f.set(vp, i32.add(v, i32.mul(h, vHStride)));
      f.set(sp, scratch);
      f.for(b, 0, nb, 1, () => {
        f.set(pe, vexpNonPositive(f, f32x4.sub(v128.load(sp, 0, 0), msv), fma));
        f.set(po, vexpNonPositive(f, f32x4.sub(v128.load(sp, 16, 0), msv), fma));
        f.set(sum, f32x4.add(sum, f32x4.add(pe, po)));
        for (let d = 0; d < 8; d++) {
          f.set(raw, v128.load(vp, d * 16, 0));
          f.set(acc[d]!, madd(v128.and(raw, HI), po, madd(i32x4.shl(raw, 16), pe, acc[d]!)));
        }
        f.inc(sp, 32);
        f.inc(vp, 128);
      });
      f.set(inv, f32x4.splat(f32.div(f32.const(1), hsum(sum))));
      const op = i32.add(out, i32.shl(h, 5));
      f.v128_store(op, f32x4.mul(hsum4(acc[0]!, acc[1]!, acc[2]!, acc[3]!, [t0, t1])(f), inv), 0, 0);
      f.v128_store(op, f32x4.mul(hsum4(acc[4]!, acc[5]!, acc[6]!, acc[7]!, [t0, t1])(f), inv), 16, 0);
    });
  });
}

/** [1, N, H, 8] token-major values → attention_kv1d8b's key-blocked layout [1, H, ⌈N/8⌉, 8 (dims), 8 (keys)], zero
 *  past N. */
export function packKeyBlocked(src: Float32Array, N: number, H: number): { data: Float32Array; nb: number } {
  const nb = Math.ceil(N / 8);
  const data = new Float32Array(H * nb * 64);
  for (let n = 0; n < N; n++) {
    for (let h = 0; h < H; h++) {
      for (let d = 0; d < 8; d++) data[((h * nb + (n >> 3)) * 8 + d) * 8 + (n & 7)] = src[(n * H + h) * 8 + d]!;
    }
  }
  return { data, nb };
}

/** attention_kv1d8b_bf16 of q [1, 1, H, 8] (f32) over bf16 K, U [1, H, ⌈N/8⌉, 8, 8] (packKeyBlocked) on a wasm
 *  backend created with WASM_VARIANT_KERNELS: [1, 1, H, 8]. Heads split over the backend's threads. */
export function attentionKV1D8Blocked(q: Tensor, k: Tensor, u: Tensor, keyLength: number, scale: number): Tensor {
  const H = q.shape[2]!, nb = Math.ceil(keyLength / 8);
  if (q.dtype !== 'f32' || q.shape.join() !== `1,1,${H},8` || k.dtype !== 'bf16' || u.dtype !== 'bf16' || k.shape.join() !== `1,${H},${nb},8,8` || u.shape.join() !== k.shape.join()) {
    throw new Error(`attentionKV1D8Blocked: q [1, 1, H, 8] f32 and K, U [1, H, ${nb}, 8, 8] bf16 expected, got q ${q.dtype} [${q.shape}], K ${k.dtype} [${k.shape}], U ${u.dtype} [${u.shape}]`);
  }
  return runHeadJobs(q, 'attention_kv1d8b_bf16', nb * 32, (h0, h1, scratch) => [ptr(q), ptr(k), ptr(u), 0, scratch, keyLength, scale, h0, h1, nb * 128, nb * 128], 3);
}

/** Runs dev attention kernel `name` over q's heads split across the threads (one job each, `per` bytes of scratch
 *  each) into a new [1, 1, H, 8] output, whose pointer goes to argument `outArg` of `args(h0, h1, scratch)`. */
function runHeadJobs(q: Tensor, name: string, per: number, args: (h0: number, h1: number, scratch: number) => number[], outArg: number): Tensor {
  const H = q.shape[2]!;
  const cx = (q.backend as unknown as { cx: KernelContext }).cx;
  const fn = cx.fn(name);
  const threads = Math.min(cx.threads, H);
  const jobs = Array.from({ length: threads }, (_, t) => [Math.floor((t * H) / threads), Math.floor(((t + 1) * H) / threads)] as const);
  const scratch = cx.heap.alloc(per * jobs.length);
  try {
    const out = tensor(q.backend, new Float32Array(H * 8), [1, 1, H, 8]);
    cx.runJobs(jobs.map(([h0, h1], t) => {
      const a = args(h0, h1, scratch + t * per);
      a[outArg] = ptr(out);
      return { fn, args: a };
    }));
    return out;
  } finally {
    cx.heap.free(scratch, per * jobs.length);
  }
}

/**
 * attention_kv1d8c_bf16 (same arguments as attention_kv1d8_bf16; benchmarking variant): heads of 8 over head-major
 * bf16 K/U whose keys are contiguous (kStride = vStride = 16 bytes), eight keys per step, every key addressed by
 * the load's immediate offset (no address arithmetic per key), two hsum4s and two exps per step, four accumulator
 * pairs in p·v. The strides are ignored: only for head-major K/U.
 */
export function genAttentionKV1D8Contiguous(m: ModuleBuilder, fma: boolean): void {
  const madd = (a: Expr, b: Expr, acc: Expr) => (fma ? f32x4.relaxed_madd(a, b, acc) : f32x4.add(acc, f32x4.mul(a, b)));
  const params = ['i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'f32', 'i32', 'i32', 'i32', 'i32'] as ('i32' | 'f32')[];
  m.func('attention_kv1d8c_bf16', params, [], (f, q, k, v, out, scratch, keyLength, _kStride, _vStride, scale, h0, h1, kHStride, vHStride) => {
    const h = f.local('i32'), j = f.local('i32'), kp = f.local('i32'), vp = f.local('i32'), sp = f.local('i32');
    const kl8 = f.local('i32', i32.and(keyLength, -8));
    const qe = f.local('v128'), qo = f.local('v128'), mx = f.local('v128'), sum = f.local('v128'), msv = f.local('v128');
    const r = Array.from({ length: 8 }, () => f.local('v128'));
    const a = Array.from({ length: 8 }, () => f.local('v128'));
    const t0 = f.local('v128'), t1 = f.local('v128'), s0 = f.local('v128'), s1 = f.local('v128');
    const ev = Array.from({ length: 4 }, () => f.local('v128')), od = Array.from({ length: 4 }, () => f.local('v128'));
    const ms = f.local('f32'), ss = f.local('f32'), inv = f.local('v128'), pu = f.local('v128');
    const scaleV = f.local('v128', f32x4.splat(scale));
    const HI = f.local('v128', v128.constI32(-65536, -65536, -65536, -65536));
    const dot = (u: number) => {
      f.set(r[u]!, v128.load(kp, 16 * u, 0));
      return madd(v128.and(r[u]!, HI), qo, f32x4.mul(i32x4.shl(r[u]!, 16), qe));
    };
    f.for(h, h0, h1, 1, () => {
      f.set(t0, f32x4.mul(v128.load(i32.add(q, i32.shl(h, 5)), 0, 0), scaleV));
      f.set(t1, f32x4.mul(v128.load(i32.add(q, i32.shl(h, 5)), 16, 0), scaleV));
      f.set(qe, v128.shuffle32(t0, t1, [0, 2, 4, 6]));
      f.set(qo, v128.shuffle32(t0, t1, [1, 3, 5, 7]));
      f.set(kp, i32.add(k, i32.mul(h, kHStride)));
      f.set(sp, scratch);
      f.set(mx, v128.constF32(-Infinity, -Infinity, -Infinity, -Infinity));
      f.for(j, 0, kl8, 8, () => {
        for (let u = 0; u < 8; u++) f.set(a[u]!, dot(u));
        f.set(s0, hsum4(a[0]!, a[1]!, a[2]!, a[3]!, [t0, t1])(f));
        f.set(s1, hsum4(a[4]!, a[5]!, a[6]!, a[7]!, [t0, t1])(f));
        f.v128_store(sp, s0, 0, 0);
        f.v128_store(sp, s1, 16, 0);
        f.set(mx, f32x4.max(mx, f32x4.max(s0, s1)));
        f.inc(sp, 32);
        f.inc(kp, 128);
      });
      f.for(j, kl8, keyLength, 1, () => {
        f.set(a[0]!, dot(0));
        f.set(s0, f32x4.splat(hsum(a[0]!)));
        f.f32_store(sp, f32x4.extract_lane(s0, 0));
        f.set(mx, f32x4.max(mx, s0));
        f.inc(sp, 4);
        f.inc(kp, 16);
      });
      f.set(t0, f32x4.max(mx, v128.shuffle32(mx, mx, [2, 3, 0, 1])));
      f.set(ms, f32.max(f32x4.extract_lane(t0, 0), f32x4.extract_lane(t0, 1)));
      f.set(msv, f32x4.splat(ms));
      for (const x of [...ev, ...od, sum]) f.set(x, v128.zero());
      f.set(ss, 0);
      f.set(vp, i32.add(v, i32.mul(h, vHStride)));
      f.set(sp, scratch);
      const pv = (u: number, p: Expr, c: number) => {
        f.set(pu, p);
        f.set(r[u]!, v128.load(vp, 16 * u, 0));
        f.set(ev[c]!, madd(i32x4.shl(r[u]!, 16), pu, ev[c]!));
        f.set(od[c]!, madd(v128.and(r[u]!, HI), pu, od[c]!));
      };
      f.for(j, 0, kl8, 8, () => {
        const p0 = vexpNonPositive(f, f32x4.sub(v128.load(sp, 0, 0), msv), fma);
        const p1 = vexpNonPositive(f, f32x4.sub(v128.load(sp, 16, 0), msv), fma);
        f.set(sum, f32x4.add(sum, f32x4.add(p0, p1)));
        for (let u = 0; u < 8; u++) pv(u, v128.shuffle32(u < 4 ? p0 : p1, u < 4 ? p0 : p1, [u & 3, u & 3, u & 3, u & 3]), u & 3);
        f.inc(sp, 32);
        f.inc(vp, 128);
      });
      f.for(j, kl8, keyLength, 1, () => {
        const p = vexpNonPositive(f, f32x4.sub(f32x4.splat(f32.load(sp)), msv), fma);
        f.set(ss, f32.add(ss, f32x4.extract_lane(p, 0)));
        pv(0, p, 0);
        f.inc(sp, 4);
        f.inc(vp, 16);
      });
      f.set(inv, f32x4.splat(f32.div(f32.const(1), f32.add(hsum(sum), ss))));
      f.set(ev[0]!, f32x4.mul(f32x4.add(f32x4.add(ev[0]!, ev[1]!), f32x4.add(ev[2]!, ev[3]!)), inv));
      f.set(od[0]!, f32x4.mul(f32x4.add(f32x4.add(od[0]!, od[1]!), f32x4.add(od[2]!, od[3]!)), inv));
      const op = i32.add(out, i32.shl(h, 5));
      f.v128_store(op, v128.shuffle32(ev[0]!, od[0]!, [0, 4, 1, 5]), 0, 0);
      f.v128_store(op, v128.shuffle32(ev[0]!, od[0]!, [2, 6, 3, 7]), 16, 0);
    });
  });
}

/** attention_kv1d8c_bf16 over head-major bf16 K/U [1, H, N, 8] (one job per thread), for benchmarks and tests. */
export function attentionKV1D8Contiguous(q: Tensor, k: Tensor, u: Tensor, scale: number): Tensor {
  const H = q.shape[2]!, N = k.shape[2]!;
  if (q.dtype !== 'f32' || q.shape.join() !== `1,1,${H},8` || k.dtype !== 'bf16' || u.dtype !== 'bf16' || k.shape.join() !== `1,${H},${N},8` || u.shape.join() !== k.shape.join()) {
    throw new Error(`attentionKV1D8Contiguous: q [1, 1, H, 8] f32 and K, U [1, H, N, 8] bf16 expected, got q ${q.dtype} [${q.shape}], K ${k.dtype} [${k.shape}], U ${u.dtype} [${u.shape}]`);
  }
  return runHeadJobs(q, 'attention_kv1d8c_bf16', (Math.ceil(N / 8) * 8 + 8) * 4, (h0, h1, scratch) => [ptr(q), ptr(k), ptr(u), 0, scratch, N, 16, 16, scale, h0, h1, N * 16, N * 16], 3);
}
