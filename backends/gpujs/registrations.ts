// The registry names of the gpu.js backend, one per gpu.js mode (and webasm with worker threads). Read by
// backends/index.ts, which registers them; kept apart from index.ts so that registering them loads no gpu.js.

import type { GpuJsBackendOptions } from './index.js';

export interface GpuJsRegistration {
  name: string;
  opts: GpuJsBackendOptions;
  /** bestBackend() order: below wasm (20), above the CPU reference (0); gpu.js cpu mode just below the others. */
  priority: number;
  description: string;
}

export const GPUJS_REGISTRATIONS: readonly GpuJsRegistration[] = [
  { name: 'gpujs-webgpu', opts: { mode: 'webgpu' }, priority: 5, description: 'gpu.js webgpu mode (WGSL compute shaders on Dawn)' },
  { name: 'gpujs-webasm', opts: { mode: 'webasm' }, priority: 5, description: 'gpu.js webasm mode (WebAssembly + SIMD, one thread)' },
  { name: 'gpujs-webasm-threads', opts: { mode: 'webasm', threads: true }, priority: 5, description: 'gpu.js webasm mode, worker threads under the async contract' },
  { name: 'gpujs-cpu', opts: { mode: 'cpu' }, priority: 4, description: 'gpu.js cpu mode (kernels transpiled to JavaScript)' },
  { name: 'gpujs-headlessgl', opts: { mode: 'headlessgl' }, priority: 5, description: 'gpu.js headlessgl mode (needs the optional native gl package and a display)' },
];
