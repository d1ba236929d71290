// Registers the built-in backends with the registry. Importing this module is enough to make
// getBackend('cpu') / getBackend('meta') work; GPU backends register themselves here too, created lazily.

import { hasBackend, registerBackend } from '../core/registry.js';
import { CpuBackend } from './cpu/index.js';
import { GPUJS_REGISTRATIONS } from './gpujs/registrations.js';
import { MetaBackend } from './meta/index.js';

export { CpuBackend } from './cpu/index.js';
export { MetaBackend } from './meta/index.js';

/**
 * Registers every built-in backend. The device backends are imported only when first created (dynamic import), so
 * a command that never asks for a GPU never loads Dawn or gpu.js.
 * Priorities decide `bestBackend()`: a real GPU (webgpu, 30) > WebAssembly SIMD on all cores (wasm, 20) >
 * gpu.js (5; its cpu mode 4) > the CPU reference (0). A software-emulated GPU (lavapipe) is skipped by bestBackend by default.
 */
export function registerBuiltinBackends(): void {
  const add = (name: string, factory: Parameters<typeof registerBackend>[1], priority: number, description: string) => {
    if (!hasBackend(name)) registerBackend(name, factory, { priority, description });
  };
  add('cpu', () => new CpuBackend(), 0, 'CPU reference (plain loops)');
  add('meta', () => new MetaBackend(), -100, 'shape-only (cost accounting)');
  add('webgpu', async () => (await import('./webgpu/index.js')).createWebGPUBackend(), 30, 'WebGPU on Dawn (WGSL kernels)');
  add('wasm', async () => (await import('./wasm/index.js')).createWasmBackend(), 20, 'WebAssembly SIMD kernels on all cores');
  for (const g of GPUJS_REGISTRATIONS) {
    add(g.name, async () => (await import('./gpujs/index.js')).createGpuJsBackend({ ...g.opts, name: g.name }), g.priority, g.description);
  }
}

registerBuiltinBackends();
