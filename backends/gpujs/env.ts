// What the op implementations of the gpu.js backend share: the runtime, temporaries, and a few conventions.

import type { Tensor } from '../../core/tensor.js';
import { type GBuf, type GpuJsRuntime } from './runtime.js';

export interface Env {
  rt: GpuJsRuntime;
  /** Use the register-blocked (2×2 per thread, Array(4)) matmul kernel where the mode allows it. */
  blockedMatmul: boolean;
  /** [+Inf, NaN]: kernels that must produce them read them (a kernel cannot spell them as literals in WGSL). */
  specials: Float32Array;
}

/** The backend storage of a tensor. */
export const buf = (t: Tensor): GBuf => t.storage as GBuf;

/** A temporary f32 buffer for an intermediate of a composed op; release it with `release` after its last use. */
export function tmp(env: Env, size: number): GBuf {
  return env.rt.alloc(size, 'f32');
}

/** Frees temporaries once every kernel queued so far (their consumers included) has run. */
export function release(env: Env, ...bufs: GBuf[]): void {
  for (const b of bufs) env.rt.free(b);
}

export const prod = (dims: readonly number[]): number => dims.reduce((a, b) => a * b, 1);
