// LaviRuntime: the library API for asking the model about an image. It owns one model (weights and KV cache on
// one backend) and its tokenizer, builds the prompt from the checkpoint's chat template, decodes image files,
// streams the answer, and reports timings and FLOPs.
//
//   const rt = await LaviRuntime.create();                      // the bundled checkpoint on the best backend
//   const r = await rt.ask('cat.png', 'What animal is this?', { onToken: (t) => process.stdout.write(t) });
//   console.log(r.answer, r.timings.ttftMs, r.cost?.totalFlops);
//   rt.dispose();
//
// Runtimes are independent: each has its own model, tokenizer and cache, so several can live in one process
// (different checkpoints, different backends) and their asks may interleave. Asks on one runtime run one at a
// time (a queue), since they share its KV cache. Backends come from the registry and are shared; a runtime
// never destroys one (call releaseAllBackends() before exit when a GPU backend was used).

import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import '../../backends/index.js';
import type { Backend, BackendInfo } from '../../core/backend.js';
import { CostRecorder, withCost } from '../../core/cost.js';
import { LaviError, ValueError } from '../../core/errors.js';
import { bestBackend, getBackend, hasBackend, listBackends } from '../../core/registry.js';
import { argmax } from '../../ops/index.js';
import { parseConfig, visualTokensPerImage, type ModelConfig } from '../lavi/config.js';
import { sampleToken, type SamplingOptions } from './generate.js';
import { preprocessImage, type PixelBatch, type RGBImage } from '../image/preprocess.js';
import { decodeImage } from '../image/decode.js';
import { ImageEncoding, LaviModel, type ModelOptions } from '../lavi/model.js';
import { createRng, type Rng } from '../../core/rng.js';
import { Tokenizer } from '../text/tokenizer.js';
import { countParameters } from '../lavi/weights.js';

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

/** Decoded 8-bit RGB(A) pixels, row-major, channels interleaved. */
export type RGB8Image = RGBImage;

/** An image: a file path (PNG/JPEG), the bytes of such a file, or decoded pixels. */
export type ImageSource = string | Uint8Array | RGB8Image;

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
  /** Token ids that end the answer (default: config eos_token_ids). */
  stopTokens?: readonly number[];
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
  mode: 'lavi' | 'concat';
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
  parameters: { vision: number; projector: number; conditioners: number; llm: number; total: number };
  /** Bytes of weights held on the backend. */
  weightBytes: number;
  chatTemplate: string;
}

// ---- helpers -----------------------------------------------------------------------------------------------

/** The package root (three levels above dist/models/app/runtime.js). */
export function packageRoot(): string {
  return fileURLToPath(new URL('../../../', import.meta.url));
}

/** The bundled LaVi checkpoint. */
export function defaultModelDir(): string {
  return join(packageRoot(), 'models', 'weights', 'lavi-vqa');
}

const DEFAULT_TEMPLATE = '{question}';
const PACKED_ABOVE_BYTES = 2 ** 30;
const DEFAULT_MAX_NEW = 64;

async function isFile(p: string): Promise<boolean> {
  return (await stat(p).catch(() => null))?.isFile() ?? false;
}

/** Checks a model directory has everything before anything is loaded; one error naming all that is missing. */
async function checkModelDir(dir: string, needTokenizer: boolean, isDefault: boolean): Promise<void> {
  const st = await stat(dir).catch(() => null);
  if (!st && isDefault) throw new ModelDirError(`the bundled checkpoint ${dir} is not in this build; give a model directory (modelDir, or --model DIR)`);
  if (!st) throw new ModelDirError(`model directory ${dir} does not exist`);
  if (!st.isDirectory()) throw new ModelDirError(`model directory ${dir} is not a directory`);
  const missing: string[] = [];
  if (!(await isFile(join(dir, 'config.json')))) missing.push('config.json');
  if (needTokenizer && !(await isFile(join(dir, 'tokenizer.json')))) missing.push('tokenizer.json');
  if (!(await isFile(join(dir, 'model.safetensors'))) && !(await isFile(join(dir, 'model.safetensors.index.json')))) {
    missing.push('weights (model.safetensors or model.safetensors.index.json)');
  }
  if (missing.length) throw new ModelDirError(`model directory ${dir} has no ${missing.join(', no ')}`);
}

async function readConfig(dir: string): Promise<{ config: ModelConfig; chatTemplate: string }> {
  const path = join(dir, 'config.json');
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(path, 'utf8'));
  } catch (e) {
    throw new ModelDirError(`${path}: not valid JSON (${(e as Error).message})`);
  }
  const config = parseConfig(raw, path);
  const t = (raw as Record<string, unknown>).chat_template;
  if (t !== undefined && (typeof t !== 'string' || !t.includes('{question}'))) {
    throw new ModelDirError(`${path}: chat_template must be a string containing {question}, got ${JSON.stringify(t)}`);
  }
  return { config, chatTemplate: (t as string | undefined) ?? DEFAULT_TEMPLATE };
}

function describeError(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Reads and decodes an image source to RGB8 pixels; every failure is an ImageError naming the source. */
export async function loadImage(src: ImageSource): Promise<RGB8Image> {
  if (typeof src === 'string') {
    let bytes: Uint8Array;
    try {
      bytes = await readFile(src);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') throw new ImageError(`image ${src}: no such file`);
      if (code === 'EISDIR') throw new ImageError(`image ${src}: is a directory, not an image file`);
      throw new ImageError(`image ${src}: cannot read (${describeError(e)})`);
    }
    return decodeBytes(bytes, src);
  }
  if (src instanceof Uint8Array) return decodeBytes(src, '<bytes>');
  if (src && typeof src === 'object' && 'width' in src && 'height' in src && 'data' in src) return src;
  throw new ImageError('image: expected a file path, the bytes of a PNG/JPEG file, or {width, height, data} pixels');
}

async function decodeBytes(bytes: Uint8Array, source: string): Promise<RGB8Image> {
  if (bytes.length === 0) throw new ImageError(`image ${source}: empty file`);
  try {
    return decodeImage(bytes, { source });
  } catch (e) {
    // image_io's messages already start with "image <source>:".
    const msg = describeError(e);
    throw new ImageError(msg.startsWith('image ') ? msg : `image ${source}: ${msg}`, { cause: e });
  }
}

/** Safe-to-print text per token: the tokenizer's stream decoder, or re-decoding the answer so far and holding
 *  back a trailing incomplete UTF-8 character (U+FFFD). */
function textStream(tok: TextTokenizer): (id: number) => string {
  if (tok.createStreamDecoder) {
    const d = tok.createStreamDecoder({ skipSpecialTokens: true });
    return (id) => d.push(id);
  }
  const ids: number[] = [];
  let emitted = 0;
  return (id) => {
    ids.push(id);
    let text = tok.decode(ids, { skipSpecialTokens: true });
    if (text.endsWith('\uFFFD')) text = text.slice(0, -1);
    if (text.length <= emitted) return '';
    const delta = text.slice(emitted);
    emitted = text.length;
    return delta;
  };
}

function checkRequest(o: RequestOptions): number {
  const m = o.maxNewTokens ?? DEFAULT_MAX_NEW;
  if (!Number.isInteger(m) || m < 1) throw new ValueError(`maxNewTokens must be a positive integer, got ${String(m)}`);
  const t = o.temperature ?? 0;
  if (typeof t !== 'number' || !Number.isFinite(t) || t < 0) throw new ValueError(`temperature must be a number ≥ 0, got ${String(t)}`);
  const k = o.topK ?? 0;
  if (!Number.isInteger(k) || k < 0) throw new ValueError(`topK must be a non-negative integer, got ${String(k)}`);
  const p = o.topP ?? 1;
  if (typeof p !== 'number' || !(p > 0 && p <= 1)) throw new ValueError(`topP must be in (0, 1], got ${String(p)}`);
  const s = o.seed ?? 0;
  if (!Number.isInteger(s)) throw new ValueError(`seed must be an integer, got ${String(s)}`);
  return m;
}

/** Lets timers and I/O (an abort, another runtime's request) run between tokens, also on synchronous backends. */
const yieldToEventLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

// ---- the runtime -------------------------------------------------------------------------------------------

export class LaviRuntime {
  private queue: Promise<unknown> = Promise.resolve();
  private disposed = false;

  private constructor(
    readonly model: LaviModel,
    readonly tokenizer: TextTokenizer,
    readonly modelDir: string,
    readonly chatTemplate: string,
    readonly backendChoice: BackendChoice,
    private readonly recordCost: boolean,
  ) {}

  /** Loads the checkpoint and tokenizer onto the chosen backend. */
  static async create(opts: RuntimeOptions = {}): Promise<LaviRuntime> {
    const modelDir = opts.modelDir ?? defaultModelDir();
    await checkModelDir(modelDir, !opts.tokenizer, opts.modelDir === undefined);
    const { config, chatTemplate } = await readConfig(modelDir);
    const { backend, choice } = await resolveBackend(opts);
    let tokenizer = opts.tokenizer;
    if (!tokenizer) {
      const path = join(modelDir, 'tokenizer.json');
      try {
        tokenizer = Tokenizer.fromFile(path);
      } catch (e) {
        const msg = describeError(e);
        throw new ModelDirError(msg.includes(path) ? msg : `${path}: ${msg}`);
      }
    }
    const keepPacked = opts.model?.keepPacked ?? countParameters(config).total * 4 > PACKED_ABOVE_BYTES;
    const model = await LaviModel.load(modelDir, backend, { ...opts.model, keepPacked, config });
    return new LaviRuntime(model, tokenizer, modelDir, chatTemplate, choice, opts.recordCost ?? true);
  }

  get backend(): Backend {
    return this.model.backend;
  }

  get config(): ModelConfig {
    return this.model.config;
  }

  info(): RuntimeInfo {
    const c = this.model.config;
    const v = c.vision_config, t = c.text_config;
    return {
      backend: this.model.backend.info(),
      backendChoice: this.backendChoice,
      modelDir: this.modelDir,
      mode: c.lavi_config.mode,
      config: {
        imageSize: v.image_size,
        patchSize: v.patch_size,
        visualTokensPerImage: visualTokensPerImage(v),
        visionLayers: v.num_hidden_layers,
        visionWidth: v.hidden_size,
        llmLayers: t.num_hidden_layers,
        llmWidth: t.hidden_size,
        vocabSize: t.vocab_size,
        maxPositionEmbeddings: t.max_position_embeddings,
        eosTokenIds: [...c.eos_token_ids],
        weightDType: c.torch_dtype ?? 'unknown',
      },
      parameters: countParameters(c),
      weightBytes: this.model.weights.bytes(),
      chatTemplate: this.chatTemplate,
    };
  }

  /** The prompt text for a question (the checkpoint's chat template with {question} substituted). */
  formatPrompt(question: string): string {
    return this.chatTemplate.split('{question}').join(question);
  }

  /** Token ids of the prompt for a question. */
  encodePrompt(question: string): number[] {
    if (typeof question !== 'string') throw new ValueError(`question must be a string, got ${typeof question}`);
    if (question.trim() === '') throw new ValueError('question is empty');
    return this.encodeText(this.formatPrompt(question));
  }

  /** The tokenizer decides the special tokens (a BOS comes from its post-processor, as in Hugging Face). */
  private encodeText(text: string): number[] {
    return Array.from(this.tokenizer.encode(text));
  }

  /** Reads, decodes and preprocesses an image to the model's input pixels [1, 3, S, S]. */
  async prepareImage(image: ImageSource): Promise<PixelBatch> {
    const img = await loadImage(image);
    try {
      return preprocessImage(img, this.model.config.vision_config);
    } catch (e) {
      throw new ImageError(`image${typeof image === 'string' ? ' ' + image : ''}: ${describeError(e)}`);
    }
  }

  /** Asks a question about an image. */
  ask(image: ImageSource, question: string, opts: RequestOptions = {}): Promise<AskResult> {
    return this.enqueue(() => this.run(image, question, null, opts));
  }

  /** Text only: continues `prompt` (raw text, no chat template; or token ids) with no image. */
  generate(prompt: string | readonly number[], opts: RequestOptions = {}): Promise<AskResult> {
    return this.enqueue(() => this.run(null, null, prompt, opts));
  }

  /** Frees the model's weights and cache. The backend (shared through the registry) stays. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.model.dispose();
  }

  private enqueue<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.queue.then(fn, fn);
    this.queue = p.catch(() => undefined);
    return p;
  }

  private async run(image: ImageSource | null, question: string | null, rawPrompt: string | readonly number[] | null, opts: RequestOptions): Promise<AskResult> {
    if (this.disposed) throw new ValueError('LaviRuntime: used after dispose()');
    const t0 = performance.now();
    const maxNew = checkRequest(opts);
    const signal = opts.signal;
    if (signal?.aborted) throw new AbortError(`aborted before it started${signal.reason !== undefined ? ` (${describeError(signal.reason)})` : ''}`);
    const model = this.model;
    const cfg = model.config;

    // Prompt ids, and the context check (before any image work, so a hopeless request fails fast).
    let ids: number[];
    if (question !== null) ids = this.encodePrompt(question);
    else if (typeof rawPrompt === 'string') {
      if (rawPrompt === '') throw new ValueError('prompt is empty');
      ids = this.encodeText(rawPrompt);
    } else ids = Array.from(rawPrompt ?? []);
    if (ids.length === 0) throw new ValueError('prompt is empty');
    const maxPos = cfg.text_config.max_position_embeddings;
    const visualInContext = image !== null && cfg.lavi_config.mode === 'concat' ? visualTokensPerImage(cfg.vision_config) : 0;
    if (ids.length + visualInContext + maxNew > maxPos) {
      const allowed = maxPos - visualInContext - maxNew;
      throw new PromptTooLongError(
        `prompt too long: ${ids.length} tokens${visualInContext ? ` + ${visualInContext} visual tokens` : ''} + room for ${maxNew} answer tokens ` +
          `exceeds the model's context of ${maxPos} tokens` +
          (allowed > 0 ? ` (at most ${allowed} prompt tokens fit; shorten the question or lower maxNewTokens)` : ` (lower maxNewTokens)`),
      );
    }

    const rec = this.recordCost ? new CostRecorder() : null;
    const measured = <T>(fn: () => T): T => (rec ? withCost(rec, fn) : fn());

    // Image: decode + preprocess, then the vision tower and projector.
    let imageMs = 0, encodeMs = 0, visualTokens = 0;
    let enc: ImageEncoding | null = null;
    if (image !== null) {
      const pixels = await this.prepareImage(image);
      imageMs = performance.now() - t0;
      const te = performance.now();
      enc = measured(() => model.encodeImage(pixels));
      await model.backend.sync();
      encodeMs = performance.now() - te;
      visualTokens = enc.numTokens;
    }

    const stop = new Set(opts.stopTokens ?? cfg.eos_token_ids);
    const rng = createRng(opts.seed ?? 0);
    const stream = textStream(this.tokenizer);
    const tokens: number[] = [];
    let stopReason: StopReason = 'length';
    let abortReason: unknown;
    let prefillFlops = 0;

    const tp = performance.now();
    try {
      measured(() => model.prefill(ids, enc, { consumeImage: true }));
    } finally {
      enc = null; // consumed (disposed) by prefill, also when it throws
    }
    const contextTokens = model.position;
    if (rec) prefillFlops = rec.total('llm').flops;
    let id = await this.pick(opts, rng);
    const tFirst = performance.now();
    const prefillMs = tFirst - tp;
    const ttftMs = tFirst - t0;

    for (;;) {
      tokens.push(id);
      if (stop.has(id)) {
        stopReason = 'stop';
        break;
      }
      const text = stream(id);
      opts.onToken?.(text, id);
      if (tokens.length >= maxNew) break;
      if (model.position >= maxPos) {
        stopReason = 'context';
        break;
      }
      await yieldToEventLoop();
      if (signal?.aborted) {
        stopReason = 'aborted';
        abortReason = signal.reason;
        break;
      }
      measured(() => model.decodeStep(id));
      id = await this.pick(opts, rng);
    }
    const end = performance.now();
    const decodeMs = end - tFirst;
    const answerIds = stopReason === 'stop' ? tokens.slice(0, -1) : tokens;
    const answer = this.tokenizer.decode(answerIds, { skipSpecialTokens: true }).trim();
    model.reset(); // frees the cache's sequence state and the logits; weights stay

    const result: AskResult = {
      answer,
      tokens,
      stopReason,
      promptTokens: ids.length,
      visualTokens,
      contextTokens,
      timings: {
        imageMs,
        encodeMs,
        prefillMs,
        ttftMs,
        decodeMs,
        totalMs: end - t0,
        tokensPerSecond: tokens.length > 1 && decodeMs > 0 ? ((tokens.length - 1) * 1000) / decodeMs : 0,
      },
    };
    if (rec) {
      const vision = rec.total('vision').flops + rec.total('projector').flops;
      const llm = rec.total('llm').flops;
      const all = rec.total('');
      result.cost = { visionFlops: vision, llmFlops: llm, prefillFlops, totalFlops: all.flops, bytesMoved: all.bytesRead + all.bytesWritten };
    }
    if (stopReason === 'aborted') result.abortReason = abortReason;
    return result;
  }

  /** The next token from the model's current logits: argmax on the backend (greedy) or a seeded draw. */
  private async pick(opts: SamplingOptions, rng: Rng): Promise<number> {
    if ((opts.temperature ?? 0) === 0) {
      const am = argmax(this.model.logits!);
      try {
        const r = await am.read();
        return r[r.length - 1]!;
      } finally {
        am.dispose();
      }
    }
    return sampleToken(await this.model.readLogits(), opts, rng);
  }
}

async function resolveBackend(opts: RuntimeOptions): Promise<{ backend: Backend; choice: BackendChoice }> {
  const b = opts.backend;
  if (b === undefined) {
    const best = await bestBackend({ allowSoftwareGpu: opts.allowSoftwareGpu });
    return { backend: best.backend, choice: { name: best.backend.name, requested: false, skipped: best.skipped } };
  }
  if (typeof b === 'string') {
    if (!hasBackend(b)) {
      throw new ValueError(`unknown backend '${b}' (available: ${listBackends().map((r) => r.name).join(', ')})`);
    }
    const backend = await getBackend(b);
    return { backend, choice: { name: backend.name, requested: true, skipped: [] } };
  }
  return { backend: b, choice: { name: b.name, requested: true, skipped: [] } };
}
