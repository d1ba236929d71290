// The backend seam: everything a device must provide for the engine to run on it.
//
// A backend owns *storage* (opaque handles: a Float32Array on the CPU, a GPUBuffer on WebGPU, ...) and provides
// one method per kernel. The op layer (ops/) validates arguments, computes output shapes, allocates the output
// with `alloc`, asks `supports` whether this backend can run the call, and then calls the kernel. Kernels never
// validate user input (the op layer did) and never allocate their own output.
//
// Every kernel has the same calling convention, `kernel(out, inputs, attrs)`, so generic tools (the conformance
// harness, trace record/replay, instrumentation wrappers) can call any kernel by name: `backend[op](out, ins, at)`.
//
// Execution may be asynchronous: a GPU backend may only *encode* work in the kernel call and submit it later.
// `read` is therefore async; it must wait for every queued kernel that writes the storage being read.
//
// Semantics of each kernel are documented on its attribute type (core/op-table.ts) and in ops/; the CPU backend
// (backends/cpu) is the executable definition.

import type { DType, HostArray } from './dtype.js';
import type { KernelAttrs, KernelInputs, OpName } from './op-table.js';
import type { Tensor } from './tensor.js';

// The kernels, their attributes and the op table (names, docs, tolerances) live in op-table.ts.
export * from './op-table.js';

/** One method per kernel, all with the calling convention `(out, inputs, attrs)`; kernels write `out`. */
export type Kernels = { [K in OpName]: (out: Tensor, inputs: KernelInputs<K>, attrs: KernelAttrs<K>) => void };

/** The answer of a capability query: either yes, or no with a reason a person can act on. */
export type Support = { ok: true } | { ok: false; reason: string };

export interface BackendInfo {
  /** Registry name, e.g. 'cpu', 'webgpu'. */
  name: string;
  /** What executes the kernels. */
  device: 'cpu' | 'gpu' | 'none';
  /** True when a "GPU" is really emulated on the CPU (lavapipe, llvmpipe, SwiftShader). */
  software: boolean;
  /** Human-readable description (adapter name, thread count, ...). */
  description: string;
  /** Storage dtypes this backend can hold. */
  dtypes: readonly DType[];
  /** Most bytes all storage together can take (wasm32: its 4 GiB memory), when the backend has such a limit. */
  memoryBytes?: number;
  /** Most bytes one storage can take (a GPU's largest buffer binding), when the backend has such a limit. */
  maxBufferBytes?: number;
}

/** Opaque storage handle; only the backend that made it looks inside. */
export type Storage = unknown;

export interface Backend extends Kernels {
  readonly name: string;
  info(): BackendInfo;
  /** Its attention kernel reads head-major K/V ([B, Hkv, S, D], attrs.kvHeadMajor) natively. Without it the op layer
   *  hands it token-major copies, so a model asks for head-major storage only where this is set. */
  readonly headMajorKV?: boolean;

  // -- memory --
  /** Uninitialised storage for `size` elements of `dtype` (contents are unspecified; kernels overwrite them). */
  alloc(size: number, dtype: DType): Storage;
  /** Storage holding a copy of `data` (f16/bf16 as their 16-bit patterns in a Uint16Array). */
  upload(data: HostArray, dtype: DType): Storage;
  /** Copies storage back to the host, after all queued work that writes it. Raw: f16/bf16 come back as bits. */
  read(storage: Storage, dtype: DType, size: number): Promise<HostArray>;
  /** Synchronous read, where the backend can do it (the CPU can; a GPU cannot). */
  readSync?(storage: Storage, dtype: DType, size: number): HostArray;
  /** Frees storage (may return it to a pool). Called exactly once per handle, when its last tensor is disposed. */
  free(storage: Storage): void;
  /** Waits until every queued kernel has finished (a no-op on synchronous backends). */
  sync(): Promise<void>;
  /** Releases the device and everything it holds. The backend is unusable afterwards. */
  destroy(): Promise<void>;

  // -- capability --
  /** Can this backend run `op` on these arguments? Asked by the op layer before every kernel call; a "no" becomes
   *  an UnsupportedError carrying the reason. A backend never quietly runs an op somewhere else. */
  supports<K extends OpName>(op: K, out: Tensor, inputs: KernelInputs<K>, attrs: KernelAttrs<K>): Support;
}

export const SUPPORTED: Support = Object.freeze({ ok: true });
export function unsupported(reason: string): Support {
  return { ok: false, reason };
}
