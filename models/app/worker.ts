// WorkerRuntime: a LaviRuntime running in a worker_threads worker, so generation never blocks the caller's event
// loop. Same API as LaviRuntime (ask / generate / info / dispose), with streaming (onToken) and cancellation
// (an AbortSignal becomes a 'cancel' message to the worker, honoured between tokens).
//
//   const rt = await WorkerRuntime.create({ modelDir, backend: 'wasm' });
//   const r = await rt.ask(pngBytes, 'What is this?', { onToken: (t) => process.stdout.write(t), signal });
//   await rt.dispose();   // terminates the worker
//
// Differences from LaviRuntime: options must be structured-cloneable — `backend` is a registered name (a
// backend registered by your own module: list it in `preload`, which the worker imports before creating the
// runtime), and a custom `tokenizer` object cannot be passed. Errors thrown in the worker come back with their
// original name, message and code (the runtime's error classes are re-created). An idle worker is unref'ed: a
// runtime you forgot to dispose does not keep the process alive.

import { Worker } from 'node:worker_threads';
import { LaviError, ValueError } from '../../core/errors.js';
import { AbortError, ImageError, ModelDirError, PromptTooLongError, type AskResult, type ImageSource, type RequestOptions, type RuntimeInfo, type RuntimeOptions } from './runtime.js';
import type { SerializedError } from './worker-entry.js';

export interface WorkerRuntimeOptions extends Omit<RuntimeOptions, 'backend' | 'tokenizer'> {
  backend?: string;
  /** Module specifiers (absolute paths or file: URLs) the worker imports first, e.g. one that registers a backend. */
  preload?: string[];
}

/** Re-creates an error thrown in the worker: the runtime's classes by name, else an Error with the same name. */
export function reviveError(s: SerializedError): Error {
  let e: Error;
  switch (s.name) {
    case 'AbortError': e = new AbortError(s.message); break;
    case 'PromptTooLongError': e = new PromptTooLongError(s.message); break;
    case 'ImageError': e = new ImageError(s.message); break;
    case 'ModelDirError': e = new ModelDirError(s.message); break;
    case 'ValueError': e = new ValueError(s.message); break;
    default:
      e = s.code ? new LaviError(s.code, s.message) : new Error(s.message);
      e.name = s.name;
  }
  if (s.code && (e as { code?: string }).code !== s.code) (e as { code?: string }).code = s.code;
  if (s.stack) e.stack = `${e.name}: ${e.message}\n    (in the LaVi worker)\n${s.stack.split('\n').slice(1).join('\n')}`;
  return e;
}

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  onToken?: (text: string, id: number) => void;
  cleanup?: () => void;
}

type WorkerMsg =
  | { type: 'ready'; info: RuntimeInfo }
  | { type: 'token'; id: number; text: string; token: number }
  | { type: 'result'; id: number; value: unknown }
  | { type: 'error'; id?: number; error: SerializedError };

export class WorkerRuntime {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private closed = false;
  private exitError: Error | null = null;

  private constructor(private readonly worker: Worker, private cachedInfo: RuntimeInfo) {
    worker.on('message', (m: WorkerMsg) => this.onMessage(m));
    worker.on('error', (e) => this.failAll(e instanceof Error ? e : new Error(String(e))));
    worker.on('exit', (code) => this.failAll(new Error(`LaVi worker exited (code ${code})`)));
    worker.unref();
  }

  /** Starts the worker and loads the model in it; rejects with the worker's error when loading fails. */
  static async create(opts: WorkerRuntimeOptions = {}): Promise<WorkerRuntime> {
    const { preload, ...rest } = opts;
    const worker = new Worker(new URL('./worker-entry.js', import.meta.url), { workerData: { opts: rest, preload } });
    const info = await new Promise<RuntimeInfo>((resolve, reject) => {
      const onMsg = (m: WorkerMsg) => {
        off();
        if (m.type === 'ready') resolve(m.info);
        else if (m.type === 'error') reject(reviveError(m.error));
        else reject(new Error(`LaVi worker: unexpected first message '${m.type}'`));
      };
      const onErr = (e: Error) => (off(), reject(e));
      const onExit = (code: number) => (off(), reject(new Error(`LaVi worker exited (code ${code}) while loading`)));
      const off = () => {
        worker.off('message', onMsg);
        worker.off('error', onErr);
        worker.off('exit', onExit);
      };
      worker.on('message', onMsg);
      worker.on('error', onErr);
      worker.on('exit', onExit);
    }).catch(async (e: unknown) => {
      await worker.terminate();
      throw e;
    });
    return new WorkerRuntime(worker, info);
  }

  /** Asks a question about an image (a path, file bytes or RGB pixels; sent to the worker by structured clone). */
  ask(image: ImageSource, question: string, opts: RequestOptions = {}): Promise<AskResult> {
    return this.request('ask', { image, question }, opts);
  }

  /** Text only: continues `prompt` (raw text or token ids). */
  generate(prompt: string | readonly number[], opts: RequestOptions = {}): Promise<AskResult> {
    return this.request('generate', { prompt: typeof prompt === 'string' ? prompt : [...prompt] }, opts);
  }

  /** The runtime's info (from the worker). */
  async info(): Promise<RuntimeInfo> {
    this.cachedInfo = (await this.call('info', {})) as RuntimeInfo;
    return this.cachedInfo;
  }

  /** Frees the model in the worker and terminates it; pending requests reject. Safe to call twice. */
  async dispose(): Promise<void> {
    if (this.closed) return;
    try {
      await Promise.race([this.call('dispose', {}), new Promise((r) => setTimeout(r, 2000).unref())]);
    } catch {
      // the worker is going away anyway
    }
    this.closed = true;
    this.exitError = new ValueError('WorkerRuntime: used after dispose()');
    this.worker.ref(); // an unref'ed worker's terminate() would not keep the loop alive until it exits
    await this.worker.terminate();
    this.failAll(new ValueError('WorkerRuntime: disposed'));
  }

  private request(type: 'ask' | 'generate', payload: Record<string, unknown>, opts: RequestOptions): Promise<AskResult> {
    const { onToken, signal, ...rest } = opts;
    if (signal?.aborted) return Promise.reject(new AbortError(`aborted before it started${signal.reason !== undefined ? ` (${String(signal.reason)})` : ''}`));
    return this.call(type, { ...payload, opts: rest }, onToken, signal) as Promise<AskResult>;
  }

  private call(type: string, payload: Record<string, unknown>, onToken?: Pending['onToken'], signal?: AbortSignal): Promise<unknown> {
    if (this.closed) return Promise.reject(this.exitError ?? new ValueError('WorkerRuntime: used after dispose()'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const p: Pending = { resolve, reject, onToken };
      if (signal) {
        const onAbort = () => this.worker.postMessage({ type: 'cancel', id, reason: signal.reason === undefined ? undefined : String(signal.reason) });
        signal.addEventListener('abort', onAbort, { once: true });
        p.cleanup = () => signal.removeEventListener('abort', onAbort);
      }
      this.pending.set(id, p);
      if (this.pending.size === 1) this.worker.ref();
      try {
        this.worker.postMessage({ type, id, ...payload });
      } catch (e) {
        this.settle(id);
        reject(e as Error);
      }
    });
  }

  private settle(id: number): Pending | undefined {
    const p = this.pending.get(id);
    if (!p) return undefined;
    this.pending.delete(id);
    p.cleanup?.();
    if (this.pending.size === 0) this.worker.unref();
    return p;
  }

  private onMessage(m: WorkerMsg): void {
    if (m.type === 'token') {
      this.pending.get(m.id)?.onToken?.(m.text, m.token);
    } else if (m.type === 'result') {
      this.settle(m.id)?.resolve(m.value);
    } else if (m.type === 'error') {
      if (m.id === undefined) this.failAll(reviveError(m.error));
      else this.settle(m.id)?.reject(reviveError(m.error));
    }
  }

  private failAll(e: Error): void {
    this.closed = true;
    this.exitError ??= e;
    for (const id of [...this.pending.keys()]) this.settle(id)?.reject(e);
  }
}
