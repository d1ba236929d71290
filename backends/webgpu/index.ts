// The WebGPU backend (Dawn's Node bindings, npm `webgpu`): every op as a WGSL kernel, verified against the CPU
// reference. `createWebGPUBackend(opts)` acquires an adapter and device (throwing a BackendError with the reason
// when there is none) and returns the backend; register it with
//   registerBackend('webgpu', () => createWebGPUBackend(), { priority: 30 })
export { createWebGPUBackend, WebGPUBackend, type WebGPUBackendOptions } from './backend.js';
export { GpuStorage, GUARD_SENTINEL, type Caps } from './runtime.js';
export { acquireWebGPU, isSoftwareAdapter, type AdapterInfo, type WebGPUContext } from './device.js';
