// lavi-ts for browsers (package.json "exports" → "browser"): everything in index.ts that runs in a web page — the
// tensor core, safetensors reading (from bytes or over fetch with range reads), the ops, the cpu / wasm / webgpu
// backends and the conformance harness, the LaVi model, the tokenizer, image decoding and WebRuntime — and none
// of the Node-only parts (the CLI, the stdio and HTTP servers, the trace writer, the worker_threads runtime,
// LaviRuntime's model folders by path). It imports no Node built-in module: `esbuild browser.ts --bundle
// --platform=browser` needs no shims. Run the engine in a dedicated worker (see examples/web): the wasm backend's
// threads block with Atomics.wait, which a window's main thread may not do.
export * from './core/index.js';
export * from './core/safetensors/index.js';
export { isNode } from './core/platform.js';
export * as ops from './ops/index.js';
export { CpuBackend, MetaBackend, registerBuiltinBackends } from './backends/index.js';
export { verifyBackend, selectCases, summarize, formatResult, formatSupport, compare, OP_CASES } from './backends/conformance/index.js';
export type { CaseResult, VerifyOptions, OpCase, Tolerance, Comparison } from './backends/conformance/index.js';
export { PRESETS, preset, parseConfig, asConcat, type ModelConfig } from './models/lavi/config.js';
export { LaviModel } from './models/lavi/model.js';
export { generate, type GenerateOptions, type GenerateResult, type SamplingOptions } from './models/app/generate.js';
export { Tokenizer } from './models/text/tokenizer.js';
export { decodeImage, detectImageFormat, type DecodedImage } from './models/image/decode.js';
export { WebRuntime, ModelSourceError, type WebRuntimeOptions, type WebAskOptions, type WebAskResult, type WebRuntimeInfo } from './models/app/web-runtime.js';
