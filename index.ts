// lavi-ts public API, in the order of the architecture: the tensor core (tensors, dtypes, the backend seam and
// registry, scopes, costs, errors, safetensors), the ops, the built-in backends and the conformance harness, and
// the LaVi model with its runtimes.
export * from './core/index.js';
export * from './core/safetensors/index.js';
export * as ops from './ops/index.js';
export { CpuBackend, MetaBackend, registerBuiltinBackends } from './backends/index.js';
export { verifyBackend, selectCases, summarize, formatResult, formatSupport, compare, OP_CASES } from './backends/conformance/index.js';
export type { CaseResult, VerifyOptions, OpCase, Tolerance, Comparison } from './backends/conformance/index.js';
export { PRESETS, preset, parseConfig, asConcat, type ModelConfig } from './models/lavi/config.js';
export { LaviModel } from './models/lavi/model.js';
export { generate, type GenerateOptions, type GenerateResult, type SamplingOptions } from './models/app/generate.js';
export { Tokenizer } from './models/text/tokenizer.js';
export { LaviRuntime } from './models/app/runtime.js';
export { WorkerRuntime } from './models/app/worker.js';
export { WebRuntime, ModelSourceError } from './models/app/web-runtime.js';
