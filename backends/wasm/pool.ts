// Worker threads over the shared memory. Every worker instantiates the same compiled module on the same
// WebAssembly.Memory, so a kernel call on a worker sees exactly the tensors the main thread sees.
//
// Dispatch goes through a small control block in the shared memory, not postMessage:
//   word 0  GEN    generation counter; the main thread bumps it (Atomics.add + notify) to publish a job
//   word 1  DONE   jobs finished by workers in this generation (each Atomics.add + notify)
//   word 2  ERROR  set by a worker whose kernel threw (a trap); the main thread turns it into an exception
//   word 3  EXIT   set before the last GEN bump at destroy()
//   word 4  NJOBS  number of jobs in this generation
//   words 16..     one claim flag per job (0 = free, 1 = taken)
//   slots          one per job: the function index, the argument count, the index of the argument that receives
//                  the running thread's scratch pointer (−1: none), then the arguments as float64
// A job is a fixed range of the work (its results do not depend on which thread runs it). Every thread — the
// caller included — claims jobs with compare-and-swap until none is left, so a worker that the OS has not
// scheduled yet (two cores shared with other processes) costs nothing: the caller simply runs its job too, and
// waits only for jobs a worker has actually started. Workers spin briefly after each generation (the next kernel
// usually follows within microseconds), then sleep in Atomics.wait; they are unref'd, so they never keep the
// process alive, with or without destroy().
//
// The worker program is pool-worker.ts, its own module file: a worker_threads Worker in Node, a module Worker in a
// browser. A browser page that is not cross-origin isolated has no SharedArrayBuffer (the shared memory cannot be
// sent to a worker), and a window's main thread may not Atomics.wait: there the backend runs on one thread
// (threadSupport says why; the backend's info() repeats it).

import { BackendError } from '../../core/errors.js';
import { isNode, nodeBuiltin } from '../../core/platform.js';
import type { WasmMemory, WasmModule } from './wasm-api.js';

export const CTRL_BYTES = 8192;
const CLAIMS = 16; // word index of the claim flags
const SLOT_OFFSET = 256; // bytes from the control block to slot 0
const SLOT_BYTES = 256; // 16 bytes of header + 30 float64 arguments
export const MAX_JOBS = 24;
export const MAX_THREADS = 16;
const MAX_ARGS = (SLOT_BYTES - 16) / 8;

const GEN = 0, DONE = 1, ERROR = 2, EXIT = 3, NJOBS = 4;

export interface WorkerInit {
  module: WasmModule;
  memory: WasmMemory;
  ctrl: number;
  index: number;
  threads: number;
  names: string[];
  scratch: number;
  gen: number;
  spinMs: number;
  layout: { claims: number; slotOffset: number; slotBytes: number; maxJobs: number };
}

/** A started worker, Node's or the browser's. */
interface PoolWorker {
  start(onMessage: (m: unknown) => void, onError: (e: string) => void): void;
  unref(): void;
  terminate(): Promise<unknown>;
}

/** The worker program's URL (a literal next to import.meta.url, so it survives bundling and minification: a
 *  bundle must ship pool-worker.js beside itself, as examples/web/build.mjs does). */
const workerUrl = (): URL => new URL('./pool-worker.js', import.meta.url);

function spawnWorker(init: WorkerInit, name: string): PoolWorker {
  if (isNode()) {
    const { Worker } = nodeBuiltin<typeof import('node:worker_threads')>('node:worker_threads', 'the wasm thread pool');
    const w = new Worker(workerUrl(), { workerData: init, name, execArgv: [] });
    return {
      start(onMessage, onError) {
        w.on('message', onMessage);
        w.on('error', (e) => onError(e.message));
      },
      unref: () => w.unref(),
      terminate: () => w.terminate().catch(() => 0),
    };
  }
  const BrowserWorker = (globalThis as unknown as { Worker: new (u: URL, o: object) => BrowserWorkerLike }).Worker;
  const w = new BrowserWorker(workerUrl(), { type: 'module', name });
  return {
    start(onMessage, onError) {
      w.onmessage = (e) => onMessage(e.data);
      w.onerror = (e) => onError(`${e.message ?? 'error'}${e.filename ? ` (${e.filename})` : ''}`);
      w.postMessage(init); // the shared WebAssembly.Memory: needs a cross-origin isolated page
    },
    unref: () => {},
    terminate: async () => w.terminate(),
  };
}

interface BrowserWorkerLike {
  onmessage: ((e: { data: unknown }) => void) | null;
  onerror: ((e: { message?: string; filename?: string }) => void) | null;
  postMessage(m: unknown): void;
  terminate(): void;
}

/**
 * How many threads the wasm backend can use here, and why only one when so: Node, or a browser worker in a
 * cross-origin isolated page, have as many as the cores; a page that is not cross-origin isolated (no
 * SharedArrayBuffer) or a window's main thread (no Atomics.wait) have one.
 */
export function threadSupport(): { cores: number; reason: string | null } {
  if (isNode()) return { cores: nodeBuiltin<typeof import('node:os')>('node:os', 'the wasm thread pool').availableParallelism(), reason: null };
  const g = globalThis as { crossOriginIsolated?: boolean; document?: unknown; navigator?: { hardwareConcurrency?: number } };
  const cores = Math.max(1, g.navigator?.hardwareConcurrency ?? 1);
  if (g.document !== undefined) return { cores: 1, reason: "a window's main thread may not Atomics.wait: run the engine in a worker for threads" };
  if (g.crossOriginIsolated !== true) return { cores: 1, reason: 'the page is not cross-origin isolated (no COOP/COEP headers: no SharedArrayBuffer)' };
  return { cores, reason: null };
}

export interface Job {
  /** Index into the pool's function names. */
  fn: number;
  args: number[];
  /** Index of the argument to replace with the running thread's scratch pointer (per-thread GEMM buffers). */
  scratchArg?: number;
}

export class ThreadPool {
  private readonly workers: PoolWorker[] = [];
  private readonly ctrl: Int32Array;
  private readonly heads: Int32Array[] = [];
  private readonly argViews: Float64Array[] = [];
  private destroyed = false;
  private lastError = '';

  private constructor(
    memory: WasmMemory,
    ctrlPtr: number,
    readonly threads: number,
    private readonly spinMs: number,
  ) {
    this.ctrl = new Int32Array(memory.buffer, ctrlPtr, CLAIMS + MAX_JOBS);
    for (let j = 0; j < MAX_JOBS; j++) {
      const base = ctrlPtr + SLOT_OFFSET + j * SLOT_BYTES;
      this.heads.push(new Int32Array(memory.buffer, base, 4));
      this.argViews.push(new Float64Array(memory.buffer, base + 16, MAX_ARGS));
    }
    for (let j = 0; j < MAX_JOBS; j++) this.ctrl[CLAIMS + j] = 1;
  }

  /**
   * Starts `threads − 1` workers (the caller is thread 0) and waits until each has instantiated the module.
   * `scratch[t]` is thread t's scratch pointer (substituted into jobs that ask for it).
   */
  static async create(module: WasmModule, memory: WasmMemory, ctrlPtr: number, names: string[], scratch: number[], spinMs: number): Promise<ThreadPool> {
    const threads = scratch.length;
    if (threads > MAX_THREADS) throw new BackendError(`wasm: at most ${MAX_THREADS} threads, asked for ${threads}`);
    const pool = new ThreadPool(memory, ctrlPtr, threads, spinMs);
    const gen = Atomics.load(pool.ctrl, GEN);
    const ready: Promise<void>[] = [];
    const layout = { claims: CLAIMS, slotOffset: SLOT_OFFSET, slotBytes: SLOT_BYTES, maxJobs: MAX_JOBS };
    for (let i = 1; i < threads; i++) {
      const init: WorkerInit = { module, memory, ctrl: ctrlPtr, index: i, threads, names, scratch: scratch[i]!, gen, spinMs, layout };
      const w = spawnWorker(init, `lavi-wasm-${i}`);
      pool.workers.push(w);
      ready.push(
        new Promise<void>((resolve, reject) => {
          w.start((m) => {
            if (m === 'ready') resolve();
            else if (m && typeof m === 'object' && 'startError' in m) reject(new BackendError(`wasm: worker ${i} failed to start: ${String((m as { startError: unknown }).startError)}`));
            // From now on messages are error reports from kernels (the ERROR flag carries the failure itself).
            else pool.lastError = String(m);
          }, (e) => {
            pool.lastError = e;
            reject(new BackendError(`wasm: worker ${i} failed to start: ${e}`));
          });
        }),
      );
    }
    try {
      await Promise.all(ready);
    } catch (e) {
      await pool.destroy();
      throw e;
    }
    for (const w of pool.workers) w.unref();
    return pool;
  }

  /**
   * Runs the jobs on all threads (the caller claims jobs too) and returns when every job has finished.
   * `call(job)` runs a job on the calling thread (with its own scratch already substituted by the caller).
   */
  run(jobs: readonly Job[], call: (job: Job) => void): void {
    if (this.destroyed) throw new BackendError('wasm: the backend was destroyed');
    const n = jobs.length;
    if (n > MAX_JOBS) throw new BackendError(`wasm: ${n} jobs (at most ${MAX_JOBS})`);
    const ctrl = this.ctrl;
    for (let j = 0; j < n; j++) {
      const job = jobs[j]!;
      if (job.args.length > MAX_ARGS) throw new BackendError(`wasm: too many kernel arguments (${job.args.length})`);
      const h = this.heads[j]!;
      h[0] = job.fn;
      h[1] = job.args.length;
      h[2] = job.scratchArg ?? -1;
      this.argViews[j]!.set(job.args);
    }
    Atomics.store(ctrl, DONE, 0);
    Atomics.store(ctrl, NJOBS, n);
    for (let j = 0; j < MAX_JOBS; j++) Atomics.store(ctrl, CLAIMS + j, j < n ? 0 : 1);
    Atomics.add(ctrl, GEN, 1);
    Atomics.notify(ctrl, GEN);
    let mine = 0;
    let mainError: unknown = null;
    for (let j = 0; j < n; j++) {
      if (Atomics.compareExchange(ctrl, CLAIMS + j, 0, 1) !== 0) continue;
      mine++;
      try {
        call(jobs[j]!);
      } catch (e) {
        mainError ??= e;
      }
    }
    this.waitDone(n - mine);
    const workerFailed = Atomics.exchange(ctrl, ERROR, 0) !== 0; // cleared either way, for the next call
    if (mainError) throw mainError;
    if (workerFailed) throw new BackendError(`wasm: a kernel failed on a worker thread${this.lastError ? `: ${this.lastError}` : ''}`);
  }

  /** Waits until workers have finished `expected` jobs (jobs they claimed are running now, so this is short). */
  private waitDone(expected: number): void {
    if (expected <= 0) return;
    const until = performance.now() + this.spinMs;
    let i = 0;
    let done: number;
    while ((done = Atomics.load(this.ctrl, DONE)) < expected) {
      if ((++i & 255) === 0 && performance.now() > until) break;
    }
    while ((done = Atomics.load(this.ctrl, DONE)) < expected) Atomics.wait(this.ctrl, DONE, done, 1000);
  }

  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    Atomics.store(this.ctrl, EXIT, 1);
    Atomics.add(this.ctrl, GEN, 1);
    Atomics.notify(this.ctrl, GEN);
    await Promise.all(this.workers.map((w) => w.terminate()));
    this.workers.length = 0;
  }
}
