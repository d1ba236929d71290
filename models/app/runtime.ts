// LaviRuntime: the library API for running a model folder — LaVi, Qwen2 (text), LLaVA-OneVision — and asking
// it about an image, chatting, or continuing raw text or token ids. It owns one model (weights and KV cache on one
// backend) and its tokenizer, builds prompts with the model's own chat template, decodes image files, streams
// the answer, and reports timings and FLOPs.
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
import type { Backend } from '../../core/backend.js';
import { CostRecorder, withCost } from '../../core/cost.js';
import { ValueError } from '../../core/errors.js';
import { getBackend } from '../../core/registry.js';
import { defaultBackend, resolveBackendName } from './backends.js';
import type { ModelConfig } from '../lavi/config.js';
import { prefillAndAnswer } from './answer.js';
import { type PixelBatch, type RGBImage } from '../image/preprocess.js';
import { decodeImage } from '../image/decode.js';
import { LaviModel } from '../lavi/model.js';
import { countParameters } from '../lavi/weights.js';
import { ChatTemplate, type ChatMessage } from '../text/chat-template.js';
import { Tokenizer } from '../text/tokenizer.js';
import { readJsonFile } from '../loading/json-fields.js';
import { firstWith, inspectModelDir, loadQwen2, readGenerationConfig, readLaviFolder, type Family } from '../loader.js';
import { LaviEngine, LlavaEngine, TextEngine, type EncodedImage, type Engine } from './engine.js';
import { LlavaOnevisionModel } from '../llava-onevision/model.js';
import { parseTokenIds } from '../qwen2/config.js';
import {
  AbortError, ImageError, ModelDirError, PromptTooLongError,
  type AskResult, type BackendChoice, type ImageSource, type RequestOptions, type RuntimeInfo, type RuntimeOptions, type TextTokenizer,
} from './runtime-types.js';

export * from './runtime-types.js';

// ---- helpers -----------------------------------------------------------------------------------------------

/** The package root (three levels above dist/models/app/runtime.js). */
export function packageRoot(): string {
  return fileURLToPath(new URL('../../../', import.meta.url));
}

/** The bundled LaVi checkpoint. */
export function defaultModelDir(): string {
  return join(packageRoot(), 'models', 'weights', 'lavi-vqa');
}

const PACKED_ABOVE_BYTES = 2 ** 30;
const DEFAULT_MAX_NEW = 64;

async function isFile(p: string): Promise<boolean> {
  return (await stat(p).catch(() => null))?.isFile() ?? false;
}

/** Checks a model directory has everything before anything is loaded; one error naming all that is missing. */
async function checkModelDir(dir: string, isDefault: boolean, needTokenizer: boolean): Promise<void> {
  const st = await stat(dir).catch(() => null);
  if (!st && isDefault) throw new ModelDirError(`the bundled checkpoint ${dir} is not in this build; give a model directory (modelDir, or --model DIR)`);
  if (!st) throw new ModelDirError(`model directory ${dir} does not exist`);
  if (!st.isDirectory()) throw new ModelDirError(`model directory ${dir} is not a directory`);
  const missing: string[] = [];
  const hasConfig = await isFile(join(dir, 'config.json'));
  if (!hasConfig) missing.push('config.json');
  // A LaVi assembled from Hugging Face folders may take its tokenizer from its text_model folder.
  const raw = hasConfig ? await readJsonFile(join(dir, 'config.json')).catch(() => null) : null;
  const assembled = typeof raw?.text_model === 'string';
  if (needTokenizer && !assembled && !(await isFile(join(dir, 'tokenizer.json')))) missing.push('tokenizer.json');
  if (!(await isFile(join(dir, 'model.safetensors'))) && !(await isFile(join(dir, 'model.safetensors.index.json')))) {
    missing.push('weights (model.safetensors or model.safetensors.index.json)');
  }
  if (missing.length) throw new ModelDirError(`model directory ${dir} has no ${missing.join(', no ')}`);
}

/** LaVi's own prompt format: a config.json chat_template string with '{question}' (the shipped checkpoints). */
function legacyTemplate(raw: Record<string, unknown>, path: string): string | null {
  const t = raw.chat_template;
  if (t === undefined) return null;
  if (typeof t !== 'string' || !t.includes('{question}')) {
    throw new ModelDirError(`${path}: chat_template must be a string containing {question}, got ${JSON.stringify(t)}`);
  }
  return t;
}

function describeError(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Reads and decodes an image source to RGB8 pixels; every failure is an ImageError naming the source. */
export async function loadImage(src: ImageSource): Promise<RGBImage> {
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

async function decodeBytes(bytes: Uint8Array, source: string): Promise<RGBImage> {
  if (bytes.length === 0) throw new ImageError(`image ${source}: empty file`);
  try {
    return decodeImage(bytes, { source });
  } catch (e) {
    // image_io's messages already start with "image <source>:".
    const msg = describeError(e);
    throw new ImageError(msg.startsWith('image ') ? msg : `image ${source}: ${msg}`, { cause: e });
  }
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


// ---- the runtime -------------------------------------------------------------------------------------------

export class LaviRuntime {
  private queue: Promise<unknown> = Promise.resolve();
  private disposed = false;

  private constructor(
    readonly engine: Engine,
    private readonly tok: TextTokenizer | null,
    readonly modelDir: string,
    /** LaVi's '{question}' template, or null. */
    private readonly questionTemplate: string | null,
    /** The model's Jinja chat template, or null. */
    readonly template: ChatTemplate | null,
    readonly backendChoice: BackendChoice,
    private readonly recordCost: boolean,
  ) {}

  /** Loads a model folder (config.json picks the family) and its tokenizer onto the chosen backend. */
  static async create(opts: RuntimeOptions = {}): Promise<LaviRuntime> {
    const modelDir = opts.modelDir ?? defaultModelDir();
    await checkModelDir(modelDir, opts.modelDir === undefined, !opts.tokenizer && (opts.requireTokenizer ?? true));
    const folder = await inspectModelDir(modelDir).catch((e: unknown) => {
      throw new ModelDirError(describeError(e));
    });
    let textDirs = [modelDir];
    let config: ModelConfig | null = null;
    let weightDirs = [modelDir];
    if (folder.family === 'lavi') {
      const lf = await readLaviFolder(folder);
      config = lf.config;
      textDirs = lf.textDirs;
      weightDirs = lf.weightDirs;
    } else if (folder.family === 'siglip') {
      throw new ModelDirError(`${folder.configPath}: a SiglipVisionModel computes image features and does not generate text; load it with SiglipVisionModel.load() (models/siglip/model.ts)`);
    }
    const questionTemplate = legacyTemplate(folder.raw, folder.configPath);
    const tokDir = firstWith(textDirs, 'tokenizer.json');
    let tokenizer: TextTokenizer | null = opts.tokenizer ?? null;
    if (!tokenizer && tokDir) {
      const path = join(tokDir, 'tokenizer.json');
      try {
        tokenizer = Tokenizer.fromFile(path);
      } catch (e) {
        const msg = describeError(e);
        throw new ModelDirError(msg.includes(path) ? msg : `${path}: ${msg}`);
      }
    }
    if (!tokenizer && (opts.requireTokenizer ?? true)) throw new ModelDirError(`model directory ${modelDir} has no tokenizer.json`);
    const template = questionTemplate === null ? ChatTemplate.find(firstWith(textDirs, 'tokenizer_config.json') ?? firstWith(textDirs, 'chat_template.jinja') ?? modelDir) : null;
    const { backend, choice } = await resolveBackend(opts);
    let engine: Engine;
    if (config) {
      const keepPacked = opts.model?.keepPacked ?? countParametersOf(config) * 4 > PACKED_ABOVE_BYTES;
      const model = await LaviModel.load(modelDir, backend, { ...opts.model, keepPacked, config, weightDirs });
      const generation = await readGenerationConfig(firstWith(textDirs, 'generation_config.json') ?? modelDir, config, config.text_config.vocab_size);
      engine = new LaviEngine(model, generation);
    } else if (folder.family === 'llava-onevision') {
      const keepPacked = opts.model?.keepPacked ?? (await weightBytesF32(modelDir)) > PACKED_ABOVE_BYTES;
      const model = await LlavaOnevisionModel.load(modelDir, backend, { ...opts.model, keepPacked });
      const t = model.config.text;
      engine = new LlavaEngine(model, await readGenerationConfig(modelDir, parseTokenIds(folder.raw, folder.configPath, t.vocab_size), t.vocab_size));
    } else {
      const keepPacked = opts.model?.keepPacked ?? (await weightBytesF32(modelDir)) > PACKED_ABOVE_BYTES;
      const q = await loadQwen2(folder, backend, { ...opts.model, keepPacked });
      engine = new TextEngine(q.lm, q.generation);
    }
    return new LaviRuntime(engine, tokenizer, modelDir, questionTemplate, template, choice, opts.recordCost ?? true);
  }

  get backend(): Backend {
    return this.engine.backend;
  }

  get family(): Family {
    return this.engine.family;
  }

  /** The LaVi model (LaVi and concat checkpoints only). */
  get model(): LaviModel {
    if (!(this.engine instanceof LaviEngine)) throw new ValueError(`runtime.model: this is a ${this.engine.family} model, not LaVi`);
    return this.engine.model;
  }

  /** The LaVi config (LaVi and concat checkpoints only). */
  get config(): ModelConfig {
    return this.model.config;
  }

  /** The tokenizer; throws when the folder has none. */
  get tokenizer(): TextTokenizer {
    if (!this.tok) throw new ModelDirError(`model directory ${this.modelDir} has no tokenizer.json: give token ids instead of text`);
    return this.tok;
  }

  info(): RuntimeInfo {
    const d = this.engine.describe();
    const v = d.vision;
    const dtypes = this.engine.weights.dtypes();
    return {
      backend: this.engine.backend.info(),
      backendChoice: this.backendChoice,
      modelDir: this.modelDir,
      family: d.family,
      mode: d.mode,
      config: {
        imageSize: v?.imageSize ?? 0,
        patchSize: v?.patchSize ?? 0,
        visualTokensPerImage: v?.visualTokensPerImage ?? 0,
        visionLayers: v?.layers ?? 0,
        visionWidth: v?.width ?? 0,
        llmLayers: d.layers,
        llmWidth: d.width,
        vocabSize: d.vocabSize,
        maxPositionEmbeddings: d.maxPositionEmbeddings,
        eosTokenIds: [...this.engine.generation.eosTokenIds],
        weightDType: this.engine instanceof LaviEngine ? this.engine.model.config.torch_dtype ?? 'unknown' : Object.keys(dtypes).join('+'),
      },
      parameters: d.parameters,
      weightBytes: this.engine.weights.bytes(),
      weightDTypes: dtypes,
      chatTemplate: this.questionTemplate ?? this.template?.source ?? null,
      hasTokenizer: this.tok !== null,
      generation: this.engine.generation,
    };
  }

  /** The prompt text for a question: the checkpoint's '{question}' template, or its chat template with one user
   *  turn (an image part first when an image comes with it) and the generation prompt. */
  formatPrompt(question: string, withImage = false): string {
    if (this.questionTemplate !== null) return this.questionTemplate.split('{question}').join(question);
    if (!this.template) return question;
    const content = withImage && this.engine.imageTokenId !== null ? [{ type: 'image' }, { type: 'text', text: question }] : question;
    return this.template.render([{ role: 'user', content }], { addGenerationPrompt: true });
  }

  /** Token ids of the prompt for a question. */
  encodePrompt(question: string, withImage = false): number[] {
    if (typeof question !== 'string') throw new ValueError(`question must be a string, got ${typeof question}`);
    if (question.trim() === '') throw new ValueError('question is empty');
    const text = this.formatPrompt(question, withImage);
    return this.questionTemplate === null && this.template ? this.encodeText(text, false) : this.encodeText(text);
  }

  /** Token ids of a conversation rendered with the model's chat template (and the generation prompt). */
  encodeChat(messages: readonly ChatMessage[]): number[] {
    if (!this.template) {
      throw new ModelDirError(`model directory ${this.modelDir} has no chat template (tokenizer_config.json chat_template, chat_template.jinja or .json): use raw text or token ids`);
    }
    return this.encodeText(this.template.render(messages, { addGenerationPrompt: true }), false);
  }

  private maxTokenChars: number | null | undefined;

  /** Refuses, before any tokenising, a text that cannot fit the context whatever it tokenises to: a token spells
   *  at most L characters (L: the longest token of the vocabulary, as byte-level or added-token text), so a text
   *  of c characters is at least c / L tokens (halved again for normalisers that shorten text). Costs O(1) per
   *  call after one pass over the vocabulary; a tokenizer without idToToken is not bounded. */
  checkPromptLength(text: string, maxNewTokens = 0): void {
    if (this.maxTokenChars === undefined) {
      const tok = this.tok as (TextTokenizer & { vocabSize?: number; idToToken?(id: number): string | undefined }) | null;
      let L = 0;
      if (tok && typeof tok.idToToken === 'function' && typeof tok.vocabSize === 'number') {
        for (let id = 0; id < tok.vocabSize; id++) L = Math.max(L, tok.idToToken(id)?.length ?? 0);
      }
      this.maxTokenChars = L > 0 ? L : null;
    }
    if (this.maxTokenChars === null) return;
    const minTokens = Math.floor(text.length / (2 * this.maxTokenChars));
    const ctx = this.engine.lm.maxContext;
    if (minTokens + maxNewTokens > ctx) {
      throw new PromptTooLongError(
        `prompt too long: ${text.length} characters are at least ${minTokens} tokens (no token spells more than ${this.maxTokenChars} characters), ` +
          `more than the model's context of ${ctx} tokens${maxNewTokens ? ` with room for ${maxNewTokens} answer tokens` : ''}; refused before tokenising`,
      );
    }
  }

  /** The tokenizer decides the special tokens (a BOS comes from its post-processor, as in Hugging Face);
   *  a rendered chat template carries its own, so none are added then. */
  private encodeText(text: string, addSpecialTokens = true): number[] {
    this.checkPromptLength(text);
    const tok = this.tokenizer as TextTokenizer & { encode(t: string, o?: { addSpecialTokens?: boolean }): number[] };
    return Array.from(addSpecialTokens ? tok.encode(text) : tok.encode(text, { addSpecialTokens: false }));
  }

  /** Reads, decodes and preprocesses an image to the model's input (LaVi: pixels [1, 3, S, S]; LLaVA-OneVision:
   *  the processor's tiles and sizes). */
  async prepareImage(image: ImageSource): Promise<PixelBatch> {
    if (!this.engine.acceptsImages) throw new ValueError(`this model (${this.engine.family}) is text-only: it takes no image`);
    const img = await loadImage(image);
    try {
      return this.engine.preprocess(img) as PixelBatch;
    } catch (e) {
      throw new ImageError(`image${typeof image === 'string' ? ' ' + image : ''}: ${describeError(e)}`);
    }
  }

  /** Asks a question about an image. */
  ask(image: ImageSource, question: string, opts: RequestOptions = {}): Promise<AskResult> {
    return this.enqueue(() => this.run(image, () => this.encodePrompt(question, true), opts));
  }

  /** Continues `prompt` (raw text, no chat template; or token ids), with an image when given (for a model with an
   *  image token, it goes where that token stands). */
  generate(prompt: string | readonly number[], opts: RequestOptions & { image?: ImageSource | null } = {}): Promise<AskResult> {
    const ids = (): number[] => {
      if (typeof prompt === 'string') {
        if (prompt === '') throw new ValueError('prompt is empty');
        return this.encodeText(prompt);
      }
      if (!Array.isArray(prompt) && !ArrayBuffer.isView(prompt)) throw new ValueError('prompt must be text or a list of token ids');
      return Array.from(prompt);
    };
    return this.enqueue(() => this.run(opts.image ?? null, ids, opts));
  }

  /** One assistant turn for a conversation, with the model's chat template; an image for the first user turn. */
  chat(messages: readonly ChatMessage[], opts: RequestOptions & { image?: ImageSource | null } = {}): Promise<AskResult> {
    return this.enqueue(() => this.run(opts.image ?? null, () => this.encodeChat(messages), opts));
  }

  /** Frees the model's weights and cache. The backend (shared through the registry) stays. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.engine.dispose();
  }

  private enqueue<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.queue.then(fn, fn);
    this.queue = p.catch(() => undefined);
    return p;
  }

  private async run(image: ImageSource | null, promptIds: () => number[], opts: RequestOptions): Promise<AskResult> {
    if (this.disposed) throw new ValueError('LaviRuntime: used after dispose()');
    const t0 = performance.now();
    const engine = this.engine;
    const gen = engine.generation;
    const sampling = opts.modelDefaults && gen.doSample
      ? { temperature: gen.temperature, topP: gen.topP, topK: gen.topK, repetitionPenalty: gen.repetitionPenalty, ...definedOnly(opts) }
      : opts;
    const maxNew = checkRequest(sampling);
    const signal = opts.signal;
    if (signal?.aborted) throw new AbortError(`aborted before it started${signal.reason !== undefined ? ` (${describeError(signal.reason)})` : ''}`);
    if (image !== null && !engine.acceptsImages) throw new ValueError(`this model (${engine.family}) is text-only: it takes no image`);

    // Prompt ids, and the context check (before any image work, so a hopeless request fails fast).
    const ids = promptIds();
    if (ids.length === 0) throw new ValueError('prompt is empty');
    const maxPos = engine.lm.maxContext;
    const vocab = engine.lm.vocabSize;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      if (!Number.isInteger(id) || id < 0 || id >= vocab) throw new ValueError(`token id ${JSON.stringify(id)} at position ${i} is outside the vocabulary [0, ${vocab})`);
    }
    const visualGuess = image !== null && engine instanceof LaviEngine && engine.model.mode === 'concat' ? engine.describe().vision!.visualTokensPerImage : 0;
    checkContext(ids.length, visualGuess, maxNew, maxPos);

    const rec = this.recordCost ? new CostRecorder() : null;
    const measured = <T>(fn: () => T): T => (rec ? withCost(rec, fn) : fn());

    // Image: decode + preprocess, then the vision tower and projector.
    let imageMs = 0, encodeMs = 0, visualTokens = 0;
    let enc: EncodedImage | null = null;
    if (image !== null) {
      const pixels = await this.prepareImage(image);
      imageMs = performance.now() - t0;
      const te = performance.now();
      enc = measured(() => engine.encode(pixels));
      await engine.backend.sync();
      encodeMs = performance.now() - te;
      visualTokens = enc.numTokens;
    }

    try {
      checkContext(ids.length, engine.contextTokens(enc, ids), maxNew, maxPos);
    } catch (e) {
      enc?.dispose();
      throw e;
    }
    let prefillFlops = 0;
    const a = await prefillAndAnswer(engine, this.tok, ids, enc, {
      ...sampling,
      maxNewTokens: maxNew,
      stopTokens: new Set(opts.stopTokens ?? gen.eosTokenIds),
      signal,
      onToken: opts.onToken,
      measure: rec ? measured : undefined,
      afterPrefill: () => {
        if (rec) prefillFlops = rec.total('llm').flops;
      },
    }, t0);
    const stopReason = a.stopReason;
    const result: AskResult = {
      answer: a.answer,
      tokens: a.tokens,
      stopReason,
      promptTokens: ids.length,
      visualTokens,
      contextTokens: a.contextTokens,
      timings: { imageMs, encodeMs, ...a.timings },
    };
    if (rec) {
      const vision = rec.total('vision').flops + rec.total('projector').flops;
      const llm = rec.total('llm').flops;
      const all = rec.total('');
      result.cost = { visionFlops: vision, llmFlops: llm, prefillFlops, totalFlops: all.flops, bytesMoved: all.bytesRead + all.bytesWritten };
    }
    if (stopReason === 'aborted') result.abortReason = signal?.reason;
    return result;
  }
}

function definedOnly(o: RequestOptions): Partial<RequestOptions> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) out[k] = v;
  return out as Partial<RequestOptions>;
}

function checkContext(promptTokens: number, visual: number, maxNew: number, maxPos: number): void {
  if (promptTokens + visual + maxNew <= maxPos) return;
  const allowed = maxPos - visual - maxNew;
  throw new PromptTooLongError(
    `prompt too long: ${promptTokens} tokens${visual ? ` + ${visual} visual tokens` : ''} + room for ${maxNew} answer tokens ` +
      `exceeds the model's context of ${maxPos} tokens` +
      (allowed > 0 ? ` (at most ${allowed} prompt tokens fit; shorten the question or lower maxNewTokens)` : ` (lower maxNewTokens)`),
  );
}

/** Parameters of a LaVi config, for the packing decision. */
function countParametersOf(config: ModelConfig): number {
  return countParameters(config).total;
}

/** The bytes a checkpoint folder's tensors take widened to f32 (from the safetensors headers). */
async function weightBytesF32(dir: string): Promise<number> {
  const { Checkpoint } = await import('../../core/safetensors/checkpoint.js');
  const c = await Checkpoint.open(dir);
  try {
    let n = 0;
    for (const name of c.names()) n += c.entry(name).shape.reduce((a: number, b: number) => a * b, 1) * 4;
    return n;
  } finally {
    await c.close();
  }
}

async function resolveBackend(opts: RuntimeOptions): Promise<{ backend: Backend; choice: BackendChoice }> {
  const b = opts.backend;
  if (b === undefined) {
    const best = await defaultBackend(opts.allowSoftwareGpu);
    return { backend: best.backend, choice: { name: best.backend.name, requested: false, skipped: best.skipped } };
  }
  if (typeof b === 'string') {
    // Family names ('gpujs') resolve to their best member here; 'meta' (shape-only) is refused.
    const r = await resolveBackendName(b);
    const backend = await getBackend(r.name);
    return { backend, choice: { name: backend.name, requested: true, skipped: r.skipped } };
  }
  return { backend: b, choice: { name: b.name, requested: true, skipped: [] } };
}
