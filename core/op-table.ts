// The op table: the one place that says which kernels the engine has. Each op's kernel signature (inputs and
// attributes, below), its documentation, whether it moves data or computes, and its error tolerance against the
// CPU reference. OP_NAMES, the conformance thresholds (backends/conformance) and trace replay (models/app/trace.ts)
// all read it; every backend implements `Kernels`, which is derived from the same signatures.
//
// Adding an op: a line in KernelSignatures, an entry in OP_TABLE (the compiler refuses one without the other),
// then a kernel in every backend (each backend class `implements Backend`, so the compiler lists the ones missing).

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
 *  A query that sees no key at all gives zeros.
 *  kvHeadMajor: k is [B, Hkv, S, D] and v [B, Hkv, S, Dv] instead (each head's keys contiguous, as LaVi's K/U are
 *  stored on backends whose decode kernel streams them faster so); only backends with `headMajorKV` receive it true,
 *  the op layer gives the others token-major copies. */
export interface AttentionAttrs {
  causal: boolean;
  queryOffset: number;
  keyLength: number;
  scale: number;
  kvHeadMajor: boolean;
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

// ---- tolerances ------------------------------------------------------------------------------------------

/** How close a backend's output must be to the CPU reference's (backends/conformance/compare.ts applies it). */
export interface Tolerance {
  /** NMSE threshold (ggml: 1e-7 general, 5e-4 matmul/attention, 1e-6 softmax). 0 = exact match required. */
  nmse: number;
  /** Hard per-element bound |got − want| ≤ atol + rtol·|want| (defaults 1e-3 and 1e-2; 0 in exact mode). */
  atol?: number;
  rtol?: number;
}

// Thresholds, after ggml: data movement is exact, elementwise ops near-exact; reductions and GEMMs accumulate in
// a different order on every backend.
export const TOLERANCES = {
  exact: { nmse: 0 },
  elementwise: { nmse: 1e-10 },
  transcendental: { nmse: 1e-9 },
  rope: { nmse: 1e-8 },
  norm: { nmse: 1e-7 },
  softmax: { nmse: 1e-6 },
  gemm: { nmse: 5e-4 },
} as const satisfies Record<string, Tolerance>;

// ---- the table -------------------------------------------------------------------------------------------

export interface OpSpec<K extends OpName> {
  /** 'data': moves or converts values exactly (layout, gather, cast); 'compute': arithmetic. */
  kind: 'data' | 'compute';
  /** One line: what the kernel computes (the full semantics are on its attribute type above). */
  doc: string;
  /** Allowed error against the CPU reference, for these attributes. */
  tolerance: Tolerance | ((attrs: KernelAttrs<K>) => Tolerance);
}

export type OpTable = { readonly [K in OpName]: OpSpec<K> };

const T = TOLERANCES;

export const OP_TABLE: OpTable = {
  matmul: { kind: 'compute', doc: 'out = a · b (+ bias), b optionally transposed and f16/bf16-packed', tolerance: T.gemm },
  binary: { kind: 'compute', doc: 'add/sub/mul/div with NumPy broadcasting', tolerance: T.elementwise },
  unary: { kind: 'compute', doc: 'elementwise activation (gelu, silu, relu, tanh, exp, neg, sqrt, rsqrt)', tolerance: ({ op }) => (op === 'relu' || op === 'neg' ? T.exact : T.transcendental) },
  scale: { kind: 'compute', doc: 'out = x · scale + shift', tolerance: T.elementwise },
  swiglu: { kind: 'compute', doc: 'out = silu(gate) · up', tolerance: T.transcendental },
  softmax: { kind: 'compute', doc: 'softmax over the last axis, optional additive mask', tolerance: T.softmax },
  layerNorm: { kind: 'compute', doc: 'layer norm over the last axis, optional γ and β', tolerance: T.norm },
  rmsNorm: { kind: 'compute', doc: 'RMS norm over the last axis, optional γ', tolerance: T.norm },
  modulatedNorm: { kind: 'compute', doc: 'ViLN: (γ + Δγ) ⊙ norm(x) + (β + Δβ)', tolerance: T.norm },
  rope: { kind: 'compute', doc: 'rotary position embedding, rotate-half convention', tolerance: T.rope },
  attention: { kind: 'compute', doc: 'fused multi-head attention with grouped-query heads, causal and/or masked', tolerance: T.gemm },
  embedding: { kind: 'data', doc: 'gather rows of a table by i32 ids (f16/bf16 widened to f32)', tolerance: T.exact },
  transpose: { kind: 'data', doc: 'permute axes', tolerance: T.exact },
  slice: { kind: 'data', doc: 'a box of x', tolerance: T.exact },
  concat: { kind: 'data', doc: 'concatenate along an axis', tolerance: T.exact },
  writeSlice: { kind: 'data', doc: 'in place: write src into dst along an axis (KV-cache append)', tolerance: T.exact },
  patchEmbed: { kind: 'compute', doc: 'convolution with stride = kernel = patch, to a token grid', tolerance: T.gemm },
  resizeGrid: { kind: 'compute', doc: 'bilinear resize of a token grid (half-pixel centres)', tolerance: T.elementwise },
  argmax: { kind: 'compute', doc: 'index of the largest value along the last axis → i32', tolerance: T.exact },
  cast: { kind: 'data', doc: 'convert storage dtype (round to nearest even; float → i32 truncates)', tolerance: T.exact },
  copy: { kind: 'data', doc: 'out = x', tolerance: T.exact },
};

/** Every op, in table order. */
export const OP_NAMES: readonly OpName[] = Object.freeze(Object.keys(OP_TABLE) as OpName[]);

export function isOpName(name: string): name is OpName {
  return Object.prototype.hasOwnProperty.call(OP_TABLE, name);
}

/** The tolerance of one call of `op` with these attributes. */
export function opTolerance<K extends OpName>(op: K, attrs: KernelAttrs<K>): Tolerance {
  const t = OP_TABLE[op].tolerance as OpSpec<K>['tolerance'];
  return typeof t === 'function' ? t(attrs) : t;
}
