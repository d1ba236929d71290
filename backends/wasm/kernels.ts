// Assembles the wasm backend's module: every generated kernel in one module that imports the shared memory.
// Built once per process (a few milliseconds) and compiled once; workers receive the compiled module.

import { f32x4, ModuleBuilder, v128 } from './emitter.js';
import { genAttention, genAttentionKV1, genAttentionKV1D8 } from './gen-attention.js';
import { genElementwise } from './gen-elementwise.js';
import { type GemmBlocking, gemmScratchBytes, genGemmDriver, genGemmMacro, genPackCols, genPackRows, type StoreDType } from './gen-gemm.js';
import { genGemvN, genGemvT, genGemvTBf16x, genPrepareX, genRoundBf16, genSumPartials } from './gen-gemv.js';
import { genNorms } from './gen-norm.js';
import { WA, type WasmModule } from './wasm-api.js';
import { nodeBuiltin } from '../../core/platform.js';

/**
 * Register blocking 4×8: 8 accumulators + 2 B vectors + 4 broadcasts + 1 temporary = 15 xmm registers, exactly
 * what V8 can allocate on x64 (xmm15 is its scratch register). Wider tiles (4×12, 5×8, 6×8) spill and measured
 * slower here; V8 also unrolls this loop by itself, so no manual unroll (a manual one made it hoist loads and spill).
 * KC·NR·4 = 8 KiB of B per micro-panel stays in L1; the MC×KC block of A (128 KiB) and the KC×NC block of B
 * (512 KiB) stay in the 1 MiB L2.
 */
export const BLOCKING: GemmBlocking = { MR: 4, NR: 8, MC: 128, KC: 256, NC: 512 };

/**
 * Per-thread GEMM scratch (also where the [N, K] GEMV puts its prepared x when it fits). Sized, as when the
 * benchmark-only GEMM blockings were built into this module, for the largest of them (MC 64, KC 256, NC 1024:
 * 1088 KiB), so that moving them out (test/bench/dev/wasm-variants.ts) changed no buffer placement.
 */
export const GEMM_SCRATCH_BYTES = Math.max(gemmScratchBytes(BLOCKING), gemmScratchBytes({ ...BLOCKING, MC: 64, KC: 256, NC: 1024 }));

/** What a module extension (benchmark-only kernel variants) can build on: the default kernels' helpers. */
export interface ModuleParts {
  m: ModuleBuilder;
  fma: boolean;
  dts: StoreDType[];
  macro: string;
  packA: string;
  packB: { n: Record<StoreDType, string>; t: Record<StoreDType, string> };
}

/** Extra kernels compiled into the module (benchmarks only: test/bench/dev/wasm-variants.ts); `key` names the set. */
export interface KernelExtension {
  key: string;
  add(parts: ModuleParts): void;
}

export const MEMORY_MODULE = 'env';
export const MEMORY_NAME = 'memory';
/** Page limit declared by the module's memory import (the memory's own maximum must not exceed it). */
export const MODULE_MAX_PAGES = 65536;

export interface KernelModule {
  module: WasmModule;
  names: string[];
  bytes: number;
  /** Whether the GEMM/GEMV inner loops use relaxed-SIMD fused multiply-add. */
  fma: boolean;
}

const cached = new Map<string, KernelModule>();

/**
 * Is relaxed SIMD (f32x4.relaxed_madd → one FMA instruction on x64) available? Node ≥ 22 ships it; Node 20's V8 has
 * it behind --experimental-wasm-relaxed-simd, which `enable` turns on at run time (a process-wide V8 flag that only
 * adds instructions; it must be set before the module is compiled). The FMA micro-kernel measured ~1.3× the
 * mul+add one here (52 vs 41 GFLOP per CPU-second on a 4×8 tile).
 */
export function relaxedSimdAvailable(enable: boolean): boolean {
  const m = new ModuleBuilder({ module: MEMORY_MODULE, name: MEMORY_NAME, minPages: 1, maxPages: 1, shared: true });
  m.func('probe', ['i32'], [], (f, p) => f.v128_store(p, f32x4.relaxed_madd(v128.load(p), v128.load(p, 16), v128.load(p, 32))));
  const bytes = m.build();
  if (WA.validate(bytes)) return true;
  if (!enable) return false;
  try {
    nodeBuiltin<typeof import('node:v8')>('node:v8', 'relaxed SIMD').setFlagsFromString('--experimental-wasm-relaxed-simd');
  } catch {
    return false;
  }
  return WA.validate(bytes);
}

export function buildKernelBytes(fma = false, ext?: KernelExtension): { bytes: Uint8Array; names: string[] } {
  const m = new ModuleBuilder({ module: MEMORY_MODULE, name: MEMORY_NAME, minPages: 1, maxPages: MODULE_MAX_PAGES, shared: true });
  const { MR, NR, MC, KC, NC } = BLOCKING;
  const dts: StoreDType[] = ['f32', 'bf16', 'f16'];
  const packA = genPackRows(m, 'f32', MR);
  const packB = { n: {} as Record<StoreDType, string>, t: {} as Record<StoreDType, string> };
  for (const dt of dts) {
    packB.t[dt] = dt === 'f32' && MR === NR ? packA : genPackRows(m, dt, NR);
    packB.n[dt] = genPackCols(m, dt, NR);
  }
  const macro = genGemmMacro(m, MR, NR, 1, fma);
  genGemmDriver(m, { MR, NR, MC, KC, NC }, macro, packA, packB);
  genPrepareX(m);
  genSumPartials(m);
  // The `bf16Activations` option: x rounded to bf16 once per call, then a bf16 × bf16 GEMV (f32 accumulation).
  genRoundBf16(m);
  genGemvTBf16x(m, fma); // two far rows per pass
  for (const dt of dts) {
    // The default: two far rows per pass (row i with row i + rows/2 of the job), four accumulators per row, x
    // loaded once for both rows. Its sums are the one-row kernel's bit for bit; it was 1.13–1.30× faster in every
    // locked A/B run (docs/perf-log.md, "Two far rows, exact").
    genGemvT(m, dt, fma, 2, 4, `gemv_t_${dt}`, true);
    if (dt !== 'bf16') genGemvT(m, dt, fma, 2, 4, `gemv_t_${dt}_d`, true, true);
    genGemvN(m, dt);
  }
  genElementwise(m);
  genNorms(m);
  genAttention(m);
  genAttentionKV1(m, 'f32', fma);
  genAttentionKV1(m, 'bf16', fma);
  genAttentionKV1D8(m, 'f32', fma);
  genAttentionKV1D8(m, 'bf16', fma);
  ext?.add({ m, fma, dts, macro, packA, packB });
  const bytes = m.build();
  return { bytes, names: m.exportNames() };
}

export function kernelModule(fma = false, ext?: KernelExtension): KernelModule {
  const key = `${fma}:${ext?.key ?? ''}`;
  let k = cached.get(key);
  if (!k) {
    const { bytes, names } = buildKernelBytes(fma, ext);
    k = { module: new WA.Module(bytes), names, bytes: bytes.length, fma };
    cached.set(key, k);
  }
  return k;
}
