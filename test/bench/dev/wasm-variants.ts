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
import { genGemvN, genGemvT, genGemvTBf16x, hsum } from '../../../backends/wasm/gen-gemv.js';
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
