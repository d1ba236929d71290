// lavi-ts public API: the tensor core, the ops, the backend registry and the built-in backends.
export * from './core/index.js';
export * as ops from './ops/index.js';
export { CpuBackend, MetaBackend, registerBuiltinBackends } from './backends/index.js';
