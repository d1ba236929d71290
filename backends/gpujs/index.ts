// The gpu.js backend: the engine's op set written as gpu.js kernels (plain JavaScript function sources that gpu.js
// transpiles), runnable in each gpu.js mode this machine offers: webgpu (WGSL compute on Dawn), webasm
// (WebAssembly + f32x4 SIMD, optionally worker threads under gpu.js's async contract), cpu (transpiled JS) and
// headlessgl (GLSL through the optional native `gl` package). See README.md in this folder.
//
//   const b = await createGpuJsBackend({ mode: 'webasm' });        // throws if the mode is unavailable
//   const b2 = await getBackend('gpujs-webasm');                     // registered by backends/index.ts (registrations.ts)
//
// The requested mode is the mode that runs, or creation fails with the reason: gpu.js's own fallbacks (to its CPU
// backend) are detected per kernel call and reported as errors, never taken silently.

import {
  type Backend,
  type BackendInfo,
  type KernelAttrs,
  type KernelInputs,
  isOpName,
  type OpName,
  SUPPORTED,
  type Support,
  unsupported,
} from '../../core/backend.js';
import { checkHostArray, DTYPES, type DType, type HostArray } from '../../core/dtype.js';
import type { Tensor } from '../../core/tensor.js';
import { MAX_ELEMENTS } from './codegen.js';
import type { Env } from './env.js';
import { attention, rope } from './ops-attention.js';
import { binary, cast, copy, scale, swiglu, unary } from './ops-elementwise.js';
import { concat, embedding, resizeGrid, slice, transpose, writeSlice } from './ops-layout.js';
import { matmul, patchEmbed } from './ops-matmul.js';
import { argmax, layerNorm, modulatedNorm, rmsNorm, softmax } from './ops-norm.js';
import { type GBuf, type GpuJsMode, GpuJsRuntime, gpujsVersion } from './runtime.js';

export { type GpuJsMode, GPUJS_MODES } from './runtime.js';

export interface GpuJsBackendOptions {
  mode: GpuJsMode;
  /** webasm: run kernels under gpu.js's async contract so those with ≥ 4096 outputs split across worker threads. */
  threads?: boolean;
  /** webasm threads: worker-pool size (default: gpu.js's choice, the CPU count). */
  poolSize?: number;
  /** Registry name (default `gpujs-<mode>`, `gpujs-webasm-threads` with threads). */
  name?: string;
  /** Matmul kernel: 'blocked' (2×2 outputs per thread, default where the mode allows) or 'naive' (one per thread). */
  matmul?: 'blocked' | 'naive';
  /** Compiled kernels kept (LRU); default 256. */
  maxKernels?: number;
}


export class GpuJsBackend implements Backend {
  readonly name: string;
  readonly mode: GpuJsMode;
  readonly threads: boolean;
  readSync?: (storage: unknown, dtype: DType, size: number) => HostArray;
  private readonly rt: GpuJsRuntime;
  private readonly env: Env;

  /** Use createGpuJsBackend(): setting a mode up is asynchronous (WebGPU device, probe kernels). */
  private constructor(rt: GpuJsRuntime, o: GpuJsBackendOptions) {
    this.rt = rt;
    this.mode = o.mode;
    this.threads = rt.threads;
    this.name = o.name ?? `gpujs-${o.mode}${rt.threads ? '-threads' : ''}`;
    this.env = { rt, blockedMatmul: (o.matmul ?? 'blocked') === 'blocked', specials: new Float32Array([Infinity, NaN]) };
    if (!rt.async) this.readSync = (storage) => rt.readSync(storage as GBuf);
  }

  /** Sets up `mode` (and only it); rejects with a BackendError naming the reason when it is unavailable. */
  static async create(o: GpuJsBackendOptions): Promise<GpuJsBackend> {
    const rt = await GpuJsRuntime.open({ mode: o.mode, threads: o.threads, poolSize: o.poolSize, maxKernels: o.maxKernels });
    return new GpuJsBackend(rt, o);
  }

  /** The gpu.js mode that runs every kernel (always the requested one). */
  get runningMode(): GpuJsMode {
    return this.rt.mode;
  }

  /** gpu.js's reason for the last degradation it attempted (each one is turned into an error), or null. */
  get fallbackReason(): string | null {
    return this.rt.fallbackReason;
  }

  /** Kernel compiles and calls so far (threadedCalls: webasm calls gpu.js split across workers). */
  get stats(): Readonly<{ compiles: number; calls: number; threadedCalls: number }> {
    return this.rt.stats;
  }

  info(): BackendInfo {
    const gpu = this.mode === 'webgpu' || this.mode === 'headlessgl';
    return {
      name: this.name,
      device: gpu ? 'gpu' : 'cpu',
      software: gpu && (this.mode === 'headlessgl' || this.rt.isSoftwareGpu),
      description: `gpu.js ${gpujsVersion()}, mode ${this.rt.mode}: ${this.rt.description}; fallback: ${this.rt.fallbackReason ?? 'none'}`,
      dtypes: DTYPES,
    };
  }

  // ---- memory ----

  alloc(size: number, dtype: DType): GBuf {
    return this.rt.alloc(size, dtype);
  }

  upload(data: HostArray, dtype: DType): GBuf {
    checkHostArray(data, dtype, `${this.name}.upload`);
    return this.rt.upload(data, dtype);
  }

  read(storage: unknown, _dtype: DType, _size: number): Promise<HostArray> {
    return this.rt.read(storage as GBuf);
  }

  free(storage: unknown): void {
    this.rt.free(storage as GBuf);
  }

  sync(): Promise<void> {
    return this.rt.sync();
  }

  destroy(): Promise<void> {
    return this.rt.destroy();
  }

  // ---- capability ----

  supports<K extends OpName>(op: K, out: Tensor, inputs: KernelInputs<K>, attrs: KernelAttrs<K>): Support {
    if (!isOpName(op)) return unsupported(`no gpu.js kernel for '${op}'`);
    if (op === 'attention') {
      const [, k] = inputs as KernelInputs<'attention'>;
      if ((attrs as KernelAttrs<'attention'>).kvHeadMajor) return unsupported('head-major K/V is not read by the gpu.js attention kernel (ops.attention hands it token-major copies)');
      if (k.dtype !== 'f32') return unsupported(`keys/values stored ${k.dtype}: the gpu.js attention kernel reads f32 K/V only (cast them to f32 first; LaVi's conditioners do so by themselves)`);
    }
    const tensors = [out, ...(inputs as readonly (Tensor | null)[])].filter((t): t is Tensor => t !== null);
    for (const t of tensors) {
      if (t.size > MAX_ELEMENTS) {
        return unsupported(`a tensor of ${t.size} elements ${JSON.stringify(t.shape)}: gpu.js kernels compute indices in f32, exact only up to 2^24 elements`);
      }
    }
    const limits = this.rt.webgpuLimits;
    if (limits) {
      const max = Math.min(limits.maxStorageBufferBindingSize ?? Infinity, limits.maxBufferSize ?? Infinity);
      for (const t of tensors) {
        // every dtype is held as f32 values (4 bytes per element)
        if (t.size * 4 > max) return unsupported(`a tensor of ${t.size * 4} bytes exceeds the device's ${max}-byte storage-buffer limit`);
      }
    }
    return SUPPORTED;
  }

  // ---- kernels ----

  matmul = (out: Tensor, ins: KernelInputs<'matmul'>, at: KernelAttrs<'matmul'>) => matmul(this.env, out, ins, at);
  binary = (out: Tensor, ins: KernelInputs<'binary'>, at: KernelAttrs<'binary'>) => binary(this.env, out, ins, at);
  unary = (out: Tensor, ins: KernelInputs<'unary'>, at: KernelAttrs<'unary'>) => unary(this.env, out, ins, at);
  scale = (out: Tensor, ins: KernelInputs<'scale'>, at: KernelAttrs<'scale'>) => scale(this.env, out, ins, at);
  swiglu = (out: Tensor, ins: KernelInputs<'swiglu'>) => swiglu(this.env, out, ins);
  softmax = (out: Tensor, ins: KernelInputs<'softmax'>) => softmax(this.env, out, ins);
  layerNorm = (out: Tensor, ins: KernelInputs<'layerNorm'>, at: KernelAttrs<'layerNorm'>) => layerNorm(this.env, out, ins, at);
  rmsNorm = (out: Tensor, ins: KernelInputs<'rmsNorm'>, at: KernelAttrs<'rmsNorm'>) => rmsNorm(this.env, out, ins, at);
  modulatedNorm = (out: Tensor, ins: KernelInputs<'modulatedNorm'>, at: KernelAttrs<'modulatedNorm'>) => modulatedNorm(this.env, out, ins, at);
  rope = (out: Tensor, ins: KernelInputs<'rope'>, at: KernelAttrs<'rope'>) => rope(this.env, out, ins, at);
  attention = (out: Tensor, ins: KernelInputs<'attention'>, at: KernelAttrs<'attention'>) => attention(this.env, out, ins, at);
  embedding = (out: Tensor, ins: KernelInputs<'embedding'>) => embedding(this.env, out, ins);
  transpose = (out: Tensor, ins: KernelInputs<'transpose'>, at: KernelAttrs<'transpose'>) => transpose(this.env, out, ins, at);
  slice = (out: Tensor, ins: KernelInputs<'slice'>, at: KernelAttrs<'slice'>) => slice(this.env, out, ins, at);
  concat = (out: Tensor, ins: KernelInputs<'concat'>, at: KernelAttrs<'concat'>) => concat(this.env, out, ins, at);
  writeSlice = (out: Tensor, ins: KernelInputs<'writeSlice'>, at: KernelAttrs<'writeSlice'>) => writeSlice(this.env, out, ins, at);
  patchEmbed = (out: Tensor, ins: KernelInputs<'patchEmbed'>, at: KernelAttrs<'patchEmbed'>) => patchEmbed(this.env, out, ins, at);
  resizeGrid = (out: Tensor, ins: KernelInputs<'resizeGrid'>, at: KernelAttrs<'resizeGrid'>) => resizeGrid(this.env, out, ins, at);
  argmax = (out: Tensor, ins: KernelInputs<'argmax'>) => argmax(this.env, out, ins);
  cast = (out: Tensor, ins: KernelInputs<'cast'>) => cast(this.env, out, ins);
  copy = (out: Tensor, ins: KernelInputs<'copy'>) => copy(this.env, out, ins);
}


/** A gpu.js backend in exactly `opts.mode`; rejects (BackendError with the reason) when that mode is unavailable. */
export function createGpuJsBackend(opts: GpuJsBackendOptions): Promise<GpuJsBackend> {
  return GpuJsBackend.create(opts);
}


