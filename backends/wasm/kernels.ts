// Assembles the wasm backend's module: every generated kernel in one module that imports the shared memory.
// Built once per process (a few milliseconds) and compiled once; workers receive the compiled module.

import { ModuleBuilder } from './emitter.js';
import { genAttention } from './gen-attention.js';
import { genElementwise } from './gen-elementwise.js';
import { type GemmBlocking, genGemmDriver, genGemmMacro, genPackCols, genPackRows, type StoreDType } from './gen-gemm.js';
import { genDeinterleave, genGemvN, genGemvT } from './gen-gemv.js';
import { genNorms } from './gen-norm.js';
import { WA, type WasmModule } from './wasm-api.js';

/**
 * Register blocking 4×8: 8 accumulators + 2 B vectors + 4 broadcasts + 1 temporary = 15 xmm registers, exactly
 * what V8 can allocate on x64 (xmm15 is its scratch register). Wider tiles (4×12, 5×8, 6×8) spill and measured
 * slower here; V8 also unrolls this loop by itself, so no manual unroll (a manual one made it hoist loads and spill).
 * KC·NR·4 = 8 KiB of B per micro-panel stays in L1; the MC×KC block of A (128 KiB) and the KC×NC block of B
 * (512 KiB) stay in the 1 MiB L2.
 */
export const BLOCKING: GemmBlocking = { MR: 4, NR: 8, MC: 128, KC: 256, NC: 512 };

export const MEMORY_MODULE = 'env';
export const MEMORY_NAME = 'memory';
/** Page limit declared by the module's memory import (the memory's own maximum must not exceed it). */
export const MODULE_MAX_PAGES = 65536;

export interface KernelModule {
  module: WasmModule;
  names: string[];
  bytes: number;
}

let cached: KernelModule | null = null;

export function buildKernelBytes(): { bytes: Uint8Array; names: string[] } {
  const m = new ModuleBuilder({ module: MEMORY_MODULE, name: MEMORY_NAME, minPages: 1, maxPages: MODULE_MAX_PAGES, shared: true });
  const { MR, NR, MC, KC, NC } = BLOCKING;
  const dts: StoreDType[] = ['f32', 'bf16', 'f16'];
  const packA = genPackRows(m, 'f32', MR);
  const packB = { n: {} as Record<StoreDType, string>, t: {} as Record<StoreDType, string> };
  for (const dt of dts) {
    packB.t[dt] = dt === 'f32' && MR === NR ? packA : genPackRows(m, dt, NR);
    packB.n[dt] = genPackCols(m, dt, NR);
  }
  const macro = genGemmMacro(m, MR, NR, 1);
  genGemmDriver(m, { MR, NR, MC, KC, NC }, macro, packA, packB);
  genDeinterleave(m);
  for (const dt of dts) {
    genGemvT(m, dt);
    genGemvN(m, dt);
  }
  genElementwise(m);
  genNorms(m);
  genAttention(m);
  const bytes = m.build();
  return { bytes, names: m.exportNames() };
}

export function kernelModule(): KernelModule {
  if (!cached) {
    const { bytes, names } = buildKernelBytes();
    cached = { module: new WA.Module(bytes), names, bytes: bytes.length };
  }
  return cached;
}
