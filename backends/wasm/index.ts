// The WebAssembly backend (backend.ts; README.md): generated SIMD kernels on one shared memory, split across
// worker threads.
//
//   const backend = await createWasmBackend({ threads: 2 });
//   registerBackend('wasm', () => createWasmBackend(), { priority: 20 })   // done by backends/index.ts

import { WasmBackend, type WasmBackendOptions } from './backend.js';

export { WasmBackend, WasmStorage, type Variants, type WasmBackendOptions } from './backend.js';

/** The factory: `registerBackend('wasm', () => createWasmBackend(), { priority: 20 })`. */
export function createWasmBackend(opts: WasmBackendOptions = {}): Promise<WasmBackend> {
  return WasmBackend.create(opts);
}
