// WebRuntime: a LaVi checkpoint loaded from a ModelSource (fetchModelSource: a URL, read with HTTP range requests;
// or nodeModelSource: a directory), for browsers. It imports nothing Node-only, so it bundles for the web
// (browser.ts). It does what LaviRuntime.ask does for a LaVi folder — the '{question}' prompt, image decoding and
// preprocessing, prefill, the decode loop, streaming, timings — with the same engine and loop underneath:
//
//   const rt = await WebRuntime.load('weights/lavi-vqa/', { backend: 'wasm', onProgress: (p) => bar(p.loaded / p.total) });
//   const r = await rt.ask(pngBytes, 'What colour is the square?', { onToken: (t) => out.append(t) });
//
// Run it in a dedicated worker (examples/web does): the wasm backend's threads wait with Atomics.wait, which a
// window's main thread may not do. LaviRuntime (models/app/runtime.ts) stays the Node API: model folders by path,
// every family, chat templates, generation_config.json.

import '../../backends/index.js';
import type { Backend, BackendInfo } from '../../core/backend.js';
import { FormatError, LaviError, ValueError } from '../../core/errors.js';
import { bestBackend, getBackend } from '../../core/registry.js';
import { Checkpoint } from '../../core/safetensors/checkpoint.js';
import { fetchModelSource, type ModelSource, type SourceProgress } from '../../core/safetensors/source.js';
import { decodeImage } from '../image/decode.js';
import type { RGBImage } from '../image/preprocess.js';
import { parseConfig, type ModelConfig } from '../lavi/config.js';
import { LaviModel, type ModelOptions } from '../lavi/model.js';
import { laviCheck } from '../lavi/weights.js';
import { loadSpecs } from '../loading/weights.js';
import { Tokenizer } from '../text/tokenizer.js';
import { parseTokenizerConfig } from '../text/tokenizer-config.js';
import { LaviEngine } from './engine.js';
import { prefillAndAnswer } from './answer.js';
import type { SamplingOptions } from './generate.js';

export interface WebRuntimeOptions {
  /** A registered backend name ('cpu', 'wasm', 'webgpu') or a backend. Default: bestBackend(). */
  backend?: string | Backend;
  /** Bytes of the checkpoint read so far (range reads), for a progress bar. */
  onProgress?: (p: SourceProgress) => void;
  /** Cancels the download. */
  signal?: AbortSignal;
  /** fetchModelSource's wholeFileBytes: a checkpoint up to this size is fetched in one streamed request (default
   *  32 MiB); 0 reads every tensor by its own range requests. */
  wholeFileBytes?: number;
  model?: ModelOptions;
}

export interface WebAskOptions extends SamplingOptions {
  maxNewTokens?: number;
  /** Each answer token's text as soon as it is chosen (the stop token is not reported). */
  onToken?: (text: string, id: number) => void;
  signal?: AbortSignal;
}

export interface WebAskResult {
  answer: string;
  tokens: number[];
  stopReason: 'stop' | 'length' | 'context' | 'aborted';
  promptTokens: number;
  timings: { imageMs: number; encodeMs: number; prefillMs: number; ttftMs: number; decodeMs: number; totalMs: number; tokensPerSecond: number };
}

export interface WebRuntimeInfo {
  backend: BackendInfo;
  model: string;
  mode: string;
  imageSize: number;
  visualTokensPerImage: number;
  llmLayers: number;
  vocabSize: number;
  weightBytes: number;
  /** Checkpoint bytes read while loading (header + tensors). */
  bytesRead: number;
  loadMs: number;
}

/** A model folder that cannot be loaded in the browser runtime (missing or unusable files). */
export class ModelSourceError extends LaviError {
  constructor(message: string) {
    super('model-dir', message);
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

async function readJson(src: ModelSource, name: string, optional: boolean): Promise<Record<string, unknown> | null> {
  const bytes = await src.readFile(name);
  if (!bytes) {
    if (optional) return null;
    throw new ModelSourceError(`model ${src.label}: no ${name} (not found)`);
  }
  let v: unknown;
  try {
    v = JSON.parse(utf8.decode(bytes));
  } catch (e) {
    throw new FormatError(`${src.describe(name)}: not valid JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new FormatError(`${src.describe(name)}: must be a JSON object`);
  return v as Record<string, unknown>;
}

export class WebRuntime {
  private queue: Promise<unknown> = Promise.resolve();
  private disposed = false;

  private constructor(
    readonly engine: LaviEngine,
    readonly tokenizer: Tokenizer,
    private readonly template: string | null,
    private readonly label: string,
    private readonly bytesRead: number,
    private readonly loadMs: number,
  ) {}

  /** Loads a LaVi folder: a URL (fetched: small files whole, the checkpoint by range reads) or a ModelSource. */
  static async load(source: string | URL | ModelSource, opts: WebRuntimeOptions = {}): Promise<WebRuntime> {
    const t0 = performance.now();
    let bytesRead = 0;
    const src: ModelSource =
      typeof source === 'string' || source instanceof URL
        ? fetchModelSource(source, {
            signal: opts.signal,
            wholeFileBytes: opts.wholeFileBytes,
            onProgress: (p) => {
              bytesRead = p.loaded;
              opts.onProgress?.(p);
            },
          })
        : source;
    const raw = await readJson(src, 'config.json', false);
    if (raw!.model_type !== 'lavi') {
      throw new ModelSourceError(`${src.describe('config.json')}: model_type ${JSON.stringify(raw!.model_type)}; the web runtime loads LaVi checkpoints (model_type "lavi")`);
    }
    if (raw!.text_model !== undefined || raw!.vision_model !== undefined) {
      throw new ModelSourceError(`${src.describe('config.json')}: a LaVi assembled from other folders (text_model / vision_model) is loaded by LaviRuntime in Node, not by the web runtime`);
    }
    const config: ModelConfig = parseConfig(raw, src.describe('config.json'));
    const t = raw!.chat_template;
    if (t !== undefined && (typeof t !== 'string' || !t.includes('{question}'))) {
      throw new ModelSourceError(`${src.describe('config.json')}: chat_template must be a string containing {question}`);
    }
    const tokJson = await readJson(src, 'tokenizer.json', false);
    const tokCfg = await readJson(src, 'tokenizer_config.json', true);
    const tokenizer = Tokenizer.fromJSON(tokJson, src.describe('tokenizer.json'), tokCfg ? parseTokenizerConfig(tokCfg, src.describe('tokenizer_config.json')) : undefined);
    const backend = typeof opts.backend === 'object' ? opts.backend : opts.backend ? await getBackend(opts.backend) : (await bestBackend()).backend;
    const ckpt = await Checkpoint.fromSource(src);
    let model: LaviModel;
    try {
      const weights = await loadSpecs([ckpt], laviCheck(config), backend, { keepPacked: false, ...opts.model });
      model = new LaviModel(config, weights, backend, opts.model);
    } finally {
      await ckpt.close();
    }
    const generation = { eosTokenIds: config.eos_token_ids, bosTokenId: config.bos_token_id, doSample: false, temperature: 1, topP: 1, topK: 0, repetitionPenalty: 1 };
    await backend.sync();
    return new WebRuntime(new LaviEngine(model, generation), tokenizer, typeof t === 'string' ? t : null, src.label, bytesRead, performance.now() - t0);
  }

  get backend(): Backend {
    return this.engine.backend;
  }

  info(): WebRuntimeInfo {
    const d = this.engine.describe();
    return {
      backend: this.backend.info(),
      model: this.label,
      mode: d.mode,
      imageSize: d.vision?.imageSize ?? 0,
      visualTokensPerImage: d.vision?.visualTokensPerImage ?? 0,
      llmLayers: d.layers,
      vocabSize: d.vocabSize,
      weightBytes: this.engine.weights.bytes(),
      bytesRead: this.bytesRead,
      loadMs: this.loadMs,
    };
  }

  /** Token ids of the prompt for a question (the checkpoint's '{question}' template). */
  encodePrompt(question: string): number[] {
    if (typeof question !== 'string' || question.trim() === '') throw new ValueError('question is empty');
    const text = this.template === null ? question : this.template.split('{question}').join(question);
    return Array.from(this.tokenizer.encode(text));
  }

  /** Asks about an image: the bytes of a PNG/JPEG file (decoded with the library's decoder) or RGB8 pixels. */
  ask(image: Uint8Array | RGBImage, question: string, opts: WebAskOptions = {}): Promise<WebAskResult> {
    const run = () => this.run(image, question, opts);
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => undefined);
    return p;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.engine.dispose();
  }

  private async run(image: Uint8Array | RGBImage, question: string, opts: WebAskOptions): Promise<WebAskResult> {
    if (this.disposed) throw new ValueError('WebRuntime: used after dispose()');
    const t0 = performance.now();
    const engine = this.engine;
    const maxNew = opts.maxNewTokens ?? 64;
    if (!Number.isInteger(maxNew) || maxNew < 1) throw new ValueError(`maxNewTokens must be a positive integer, got ${String(maxNew)}`);
    const ids = this.encodePrompt(question);
    const img = image instanceof Uint8Array ? decodeImage(image, { source: 'the image' }) : image;
    const pixels = engine.preprocess(img);
    const imageMs = performance.now() - t0;
    const te = performance.now();
    const enc = engine.encode(pixels);
    await engine.backend.sync();
    const encodeMs = performance.now() - te;
    const maxPos = engine.lm.maxContext;
    const visual = engine.contextTokens(enc);
    if (ids.length + visual + maxNew > maxPos) {
      enc.dispose();
      throw new ValueError(`prompt too long: ${ids.length} tokens${visual ? ` + ${visual} visual tokens` : ''} + room for ${maxNew} answer tokens exceeds the model's context of ${maxPos} tokens`);
    }
    const a = await prefillAndAnswer(engine, this.tokenizer, ids, enc, {
      ...opts,
      maxNewTokens: maxNew,
      stopTokens: new Set(engine.generation.eosTokenIds),
      signal: opts.signal,
      onToken: opts.onToken,
    }, t0);
    return { answer: a.answer, tokens: a.tokens, stopReason: a.stopReason, promptTokens: ids.length, timings: { imageMs, encodeMs, ...a.timings } };
  }
}
