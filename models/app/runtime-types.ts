// The runtime's public types and errors (models/app/runtime.ts): what a request takes and returns, what the
// runtime says about itself, and the errors a caller can tell apart by class or code.

import type { Backend, BackendInfo } from '../../core/backend.js';
import { LaviError } from '../../core/errors.js';
import type { RGBImage } from '../image/preprocess.js';
import type { Family, GenerationDefaults } from '../loader.js';
import type { ModelOptions } from '../lavi/model.js';
import type { SamplingOptions } from './generate.js';

// ---- errors ------------------------------------------------------------------------------------------------

/** Thrown by an ask that was cancelled before it started; an ask cancelled while generating returns normally
 *  with stopReason 'aborted' and the answer so far. */
export class AbortError extends LaviError {
  constructor(message = 'the request was aborted') {
    super('aborted', message);
  }
}

/** The prompt (with the visual tokens, in concat mode, and room for the answer) does not fit the context. */
export class PromptTooLongError extends LaviError {
  constructor(message: string) {
    super('prompt-too-long', message);
  }
}

/** The image could not be read or decoded (missing file, corrupt data, unsupported format). */
export class ImageError extends LaviError {
  constructor(message: string, opts?: { cause?: unknown }) {
    super('image', message);
    if (opts?.cause !== undefined) (this as { cause?: unknown }).cause = opts.cause;
  }
}

/** A model directory without a usable config, tokenizer or checkpoint. */
export class ModelDirError extends LaviError {
  constructor(message: string) {
    super('model-dir', message);
  }
}

// ---- public types ------------------------------------------------------------------------------------------


/** An image: a file path (PNG/JPEG), the bytes of such a file, or decoded pixels. */
export type ImageSource = string | Uint8Array | RGBImage;

/** What the runtime needs from a tokenizer (models/text/tokenizer.ts provides it; embedders may pass their own). */
export interface TextTokenizer {
  encode(text: string): number[];
  decode(ids: readonly number[], opts?: { skipSpecialTokens?: boolean }): string;
  /** Incremental decoding for streaming (else the runtime re-decodes the answer so far for each token). */
  createStreamDecoder?(opts?: { skipSpecialTokens?: boolean }): { push(id: number): string; flush(): string };
}

export interface RuntimeOptions {
  /** Checkpoint directory (config.json, tokenizer.json, model.safetensors). Default: the bundled
   *  models/weights/lavi-vqa of this package (found from the package, not the working directory). */
  modelDir?: string;
  /** A backend or a registered backend name. Default: bestBackend() (software-emulated GPUs skipped). */
  backend?: string | Backend;
  /** With the default backend: allow a software-emulated GPU (lavapipe) to be chosen. */
  allowSoftwareGpu?: boolean;
  /** Model upload options: kvCapacity, and keepPacked — whether f16/bf16 matrices stay packed on the backend.
   *  Default: packed only when the weights widened to f32 would take over 1 GiB; smaller checkpoints are widened
   *  once at load (exact), which spares every matmul the per-row widening (on the CPU reference, f16 rows cost
   *  far more to widen than to multiply). */
  model?: ModelOptions;
  /** Use this tokenizer instead of dir/tokenizer.json. */
  tokenizer?: TextTokenizer;
  /** Refuse a folder without tokenizer.json (default true); false allows token-id requests only. */
  requireTokenizer?: boolean;
  /** Count FLOPs per request (result.cost). Default true; it costs a map update per op. */
  recordCost?: boolean;
}

export interface RequestOptions extends SamplingOptions {
  /** Answer tokens to generate at most (default 64). The prompt must leave this much room in the context. */
  maxNewTokens?: number;
  /** Called with each answer token as soon as it is chosen: the text it adds (possibly '' while a multi-byte
   *  character is incomplete) and its id. The stop token that ends the answer is not reported, and the
   *  texts add up to the answer before trimming (a trailing incomplete character aside). */
  onToken?: (text: string, id: number) => void;
  /** Cancels between tokens: the result has stopReason 'aborted' and the answer so far. */
  signal?: AbortSignal;
  /** Token ids that end the answer (default: generation_config.json's eos, else config eos_token_ids). */
  stopTokens?: readonly number[];
  /** Use generation_config.json's sampling defaults (do_sample, temperature, top_p, top_k, repetition_penalty)
   *  for whatever the request does not set. Default false: greedy unless the request samples. */
  modelDefaults?: boolean;
}

export type StopReason = 'stop' | 'length' | 'context' | 'aborted';

export interface Timings {
  /** Reading, decoding and preprocessing the image (0 for text-only). */
  imageMs: number;
  /** Vision tower + projector (0 for text-only). */
  encodeMs: number;
  /** Decoder over the prompt (LaVi: with the conditioners' K/U; concat: with the visual tokens), until the
   *  first token is chosen. */
  prefillMs: number;
  /** From the call until the first answer token is known (image, encode and prefill included). */
  ttftMs: number;
  /** All decode steps after the first token. */
  decodeMs: number;
  totalMs: number;
  /** Decode rate: tokens after the first / decodeMs (0 when only one token was made). */
  tokensPerSecond: number;
}

export interface RequestCost {
  /** Vision tower + projector FLOPs. */
  visionFlops: number;
  /** Decoder, conditioners and lm_head FLOPs, prefill and every decode step. */
  llmFlops: number;
  /** Of llmFlops: the prefill. */
  prefillFlops: number;
  totalFlops: number;
  /** Bytes read + written by the ops. */
  bytesMoved: number;
}

export interface AskResult {
  /** The decoded answer, trimmed, without the stop token. */
  answer: string;
  /** Generated ids (the stop token included when there was one). */
  tokens: number[];
  stopReason: StopReason;
  promptTokens: number;
  /** Projected visual tokens of the image (0 for text-only). */
  visualTokens: number;
  /** Tokens in the decoder's context after prefill (concat: visual + prompt; LaVi: prompt). */
  contextTokens: number;
  timings: Timings;
  /** FLOPs of this request (absent when the runtime was created with recordCost: false). */
  cost?: RequestCost;
  /** The signal's reason, when aborted. */
  abortReason?: unknown;
}

export interface BackendChoice {
  name: string;
  /** True when the caller named the backend; false when bestBackend() picked it. */
  requested: boolean;
  /** Backends bestBackend() passed over, and why. */
  skipped: { name: string; reason: string }[];
}

export interface RuntimeInfo {
  backend: BackendInfo;
  backendChoice: BackendChoice;
  modelDir: string;
  family: Family;
  /** 'lavi' | 'concat' for LaVi checkpoints; the family otherwise. */
  mode: string;
  config: {
    imageSize: number;
    patchSize: number;
    visualTokensPerImage: number;
    visionLayers: number;
    visionWidth: number;
    llmLayers: number;
    llmWidth: number;
    vocabSize: number;
    maxPositionEmbeddings: number;
    eosTokenIds: number[];
    weightDType: string;
  };
  parameters: Record<string, number> & { total: number };
  /** Bytes of weights held on the backend, and the storage dtypes there (tensor counts). */
  weightBytes: number;
  weightDTypes: Record<string, number>;
  /** The prompt format: a '{question}' template, the Jinja chat template's source file, or null (none). */
  chatTemplate: string | null;
  hasTokenizer: boolean;
  generation: GenerationDefaults;
}
