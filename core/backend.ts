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
// Semantics of each kernel are documented on its attribute type below and in ops/; the CPU backend
// (backends/cpu) is the executable definition.

import type { DType, HostArray } from './dtype.js';
import type { Tensor } from './tensor.js';

// ---- kernel attributes -----------------------------------------------------------------------------------

/** out[..., M, N] = a[..., M, K] · b (+ bias[N]). b is [..., K, N], or [..., N, K] when transposeB (Linear weights
 *  stored as [out, in], as in PyTorch). b's batch dims are either absent (one matrix for every batch) or equal to a's.
 *  b may be stored as f16/bf16 (packed weights); a, bias and out are f32. */
export interface MatmulAttrs {
  transposeB: boolean;
}

export type BinaryOp = 'add' | 'sub' | 'mul' | 'div';
/** Elementwise with NumPy broadcasting; out has the broadcast shape. */
export interface BinaryAttrs {
  op: BinaryOp;
}

export type UnaryOp = 'gelu_tanh' | 'gelu_erf' | 'silu' | 'relu' | 'tanh' | 'exp' | 'neg' | 'sqrt' | 'rsqrt';
/** Elementwise activation. gelu_tanh: 0.5x(1+tanh(√(2/π)(x+0.044715x³))); gelu_erf: 0.5x(1+erf(x/√2)); silu: x·σ(x). */
export interface UnaryAttrs {
  op: UnaryOp;
}

/** out = x · scale + shift. */
export interface ScaleAttrs {
  scale: number;
  shift: number;
}

/** softmax over the last axis, max-subtracted. An optional additive mask (f32) broadcasts (right-aligned) to x.
 *  A row whose entries are all -Infinity gives all zeros (not NaN). */
export type SoftmaxAttrs = Record<string, never>;

export type NormKind = 'layer' | 'rms';
/** layer: (x−μ)/√(σ²+ε), two-pass mean/variance (biased); rms: x/√(mean(x²)+ε). Both over the last axis. */
export interface NormAttrs {
  eps: number;
}

/** ViLN: out_t = (γ + Δγ_t) ⊙ norm(x_t) + (β + Δβ_t). γ, β are [d]; Δγ, Δβ are shaped like x ([..., d]). Any of β,
 *  Δγ, Δβ may be null (treated as zero). kind selects the normalisation. */
export interface ModulatedNormAttrs {
  kind: NormKind;
  eps: number;
}

/** Rotary embedding, Hugging Face "rotate half" convention, on x [B, T, H, D] (token-major, heads inside).
 *  Token t has position `offset + t`. For i < rotaryDim/2: freq_i = theta^(−2i/rotaryDim); with a = pos·freq_i,
 *  (x_i, x_{i+rotaryDim/2}) ← (x_i cos a − x_{i+half} sin a, x_{i+half} cos a + x_i sin a). Dims ≥ rotaryDim pass
 *  through unchanged. */
export interface RopeAttrs {
  theta: number;
  offset: number;
  rotaryDim: number;
}

/** Multi-head attention with grouped-query heads, token-major layout:
 *  q [B, Tq, Hq, D], k [B, S, Hkv, D], v [B, S, Hkv, Dv] → out [B, Tq, Hq, Dv]. Hq is a multiple of Hkv; query head h
 *  uses kv head ⌊h / (Hq/Hkv)⌋. Only the first `keyLength` keys are used (a KV cache may be larger than its fill).
 *  Query t has absolute position `queryOffset + t`; when causal, it sees keys j ≤ queryOffset + t.
 *  scores = q·kᵀ · scale (+ mask, additive f32, broadcast right-aligned to [B, Hq, Tq, keyLength]).
 *  A query that sees no key at all gives zeros. */
export interface AttentionAttrs {
  causal: boolean;
  queryOffset: number;
  keyLength: number;
  scale: number;
}

/** Gather rows: table [V, D] (f32/f16/bf16), ids i32 [...] → out [..., D] f32. An id outside [0, V) gives a row of
 *  zeros (kernels cannot throw; the model layer validates token ids before upload). */
export type EmbeddingAttrs = Record<string, never>;

/** out = x with axes permuted: out.shape[i] = x.shape[perm[i]]. */
export interface TransposeAttrs {
  perm: number[];
}

/** out = x[begin[0] : begin[0]+out.shape[0], ...] (sizes come from out's shape). */
export interface SliceAttrs {
  begin: number[];
}

/** out = inputs concatenated along `axis` (all other dims equal). */
export interface ConcatAttrs {
  axis: number;
}

/** In place: dst[..., start : start+src.shape[axis], ...] = src along `axis`. `out` is dst. */
export interface WriteSliceAttrs {
  axis: number;
  start: number;
}

/** Convolution with stride = kernel = patch: image [B, C, H, W], weight [D, C, P, P], bias [D]
 *  → out [B, (H/P)·(W/P), D], patches in row-major order (token = row·(W/P) + col). */
export interface PatchEmbedAttrs {
  patch: number;
}

/** Bilinear resize of a token grid: x [B, inH·inW, D] → out [B, outH·outW, D]; half-pixel centres
 *  (PyTorch interpolate, mode='bilinear', align_corners=False, no antialias). */
export interface ResizeGridAttrs {
  inH: number;
  inW: number;
  outH: number;
  outW: number;
}

/** Index of the largest value along the last axis (first one on ties; NaN counts as largest) → i32. */
export type ArgmaxAttrs = Record<string, never>;

/** Convert storage dtype: float → float rounds to nearest even; float → i32 truncates toward zero. */
export type CastAttrs = Record<string, never>;

// ---- the kernel table ------------------------------------------------------------------------------------

/** Inputs and attributes of each kernel. `null` marks an optional input that is absent. */
export interface KernelSignatures {
  matmul: { inputs: [a: Tensor, b: Tensor, bias: Tensor | null]; attrs: MatmulAttrs };
  binary: { inputs: [a: Tensor, b: Tensor]; attrs: BinaryAttrs };
  unary: { inputs: [x: Tensor]; attrs: UnaryAttrs };
  scale: { inputs: [x: Tensor]; attrs: ScaleAttrs };
  swiglu: { inputs: [gate: Tensor, up: Tensor]; attrs: Record<string, never> };
  softmax: { inputs: [x: Tensor, mask: Tensor | null]; attrs: SoftmaxAttrs };
  layerNorm: { inputs: [x: Tensor, gamma: Tensor | null, beta: Tensor | null]; attrs: NormAttrs };
  rmsNorm: { inputs: [x: Tensor, gamma: Tensor | null]; attrs: NormAttrs };
  modulatedNorm: {
    inputs: [x: Tensor, gamma: Tensor, beta: Tensor | null, dGamma: Tensor | null, dBeta: Tensor | null];
    attrs: ModulatedNormAttrs;
  };
  rope: { inputs: [x: Tensor]; attrs: RopeAttrs };
  attention: { inputs: [q: Tensor, k: Tensor, v: Tensor, mask: Tensor | null]; attrs: AttentionAttrs };
  embedding: { inputs: [table: Tensor, ids: Tensor]; attrs: EmbeddingAttrs };
  transpose: { inputs: [x: Tensor]; attrs: TransposeAttrs };
  slice: { inputs: [x: Tensor]; attrs: SliceAttrs };
  concat: { inputs: Tensor[]; attrs: ConcatAttrs };
  writeSlice: { inputs: [src: Tensor]; attrs: WriteSliceAttrs };
  patchEmbed: { inputs: [image: Tensor, weight: Tensor, bias: Tensor | null]; attrs: PatchEmbedAttrs };
  resizeGrid: { inputs: [x: Tensor]; attrs: ResizeGridAttrs };
  argmax: { inputs: [x: Tensor]; attrs: ArgmaxAttrs };
  cast: { inputs: [x: Tensor]; attrs: CastAttrs };
  copy: { inputs: [x: Tensor]; attrs: Record<string, never> };
}

export type OpName = keyof KernelSignatures;
export type KernelInputs<K extends OpName> = KernelSignatures[K]['inputs'];
export type KernelAttrs<K extends OpName> = KernelSignatures[K]['attrs'];

export const OP_NAMES: readonly OpName[] = [
  'matmul', 'binary', 'unary', 'scale', 'swiglu', 'softmax', 'layerNorm', 'rmsNorm', 'modulatedNorm', 'rope',
  'attention', 'embedding', 'transpose', 'slice', 'concat', 'writeSlice', 'patchEmbed', 'resizeGrid', 'argmax',
  'cast', 'copy',
];

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
