// Worker threads over the shared memory. Every worker instantiates the same compiled module on the same
// WasmMemory, so a kernel call on a worker sees exactly the tensors the main thread sees.
//
// Dispatch goes through a small control block in the shared memory, not postMessage:
//   word 0  GEN   generation counter; the main thread bumps it (Atomics.add + notify) to start a job
//   word 1  DONE  how many workers finished the current job (each does Atomics.add + notify)
//   word 2  ERROR set by a worker whose kernel threw (a trap); the main thread turns it into an exception
//   word 3  EXIT  set before the last GEN bump at destroy()
//   slots   one per thread: the function index (-1 = nothing for this thread) and its arguments as float64
// The main thread runs share 0 itself, then waits for DONE. Workers spin for a short while after each job (the
// next kernel usually follows within microseconds) and then sleep in Atomics.wait, so an idle backend costs no
// CPU. They are unref'd: they never keep the process alive, with or without destroy().

import { Worker } from 'node:worker_threads';
import { BackendError } from '../../core/errors.js';
import type { WasmMemory, WasmModule } from './wasm-api.js';

export const CTRL_BYTES = 4096;
const SLOT_OFFSET = 64; // bytes from the control block to slot 0
const SLOT_BYTES = 256; // 8 bytes of header + 31 float64 arguments
export const MAX_THREADS = Math.floor((CTRL_BYTES - SLOT_OFFSET) / SLOT_BYTES);
const MAX_ARGS = SLOT_BYTES / 8 - 1;

const GEN = 0, DONE = 1, ERROR = 2, EXIT = 3;

interface WorkerInit {
  module: WasmModule;
  memory: WasmMemory;
  ctrl: number;
  index: number;
  names: string[];
  gen: number;
  spinMs: number;
  slotOffset: number;
  slotBytes: number;
  maxArgs: number;
}

/** The worker's whole program. It runs as an eval'd CommonJS script, so it must not use anything from this file. */
function workerMain(): void {
  const wt = require('node:worker_threads') as typeof import('node:worker_threads');
  const d = wt.workerData as WorkerInit;
  const W = (globalThis as unknown as { WebAssembly: { Instance: new (m: WasmModule, i: object) => { exports: Record<string, unknown> } } }).WebAssembly;
  const inst = new W.Instance(d.module, { env: { memory: d.memory } });
  const fns = d.names.map((n) => inst.exports[n] as (...a: number[]) => unknown);
  const ctrl = new Int32Array(d.memory.buffer, d.ctrl, 16);
  const slotBase = d.ctrl + d.slotOffset + d.index * d.slotBytes;
  const head = new Int32Array(d.memory.buffer, slotBase, 2);
  const args = new Float64Array(d.memory.buffer, slotBase + 8, d.maxArgs);
  wt.parentPort!.postMessage('ready');
  let seen = d.gen;
  for (;;) {
    let g = Atomics.load(ctrl, 0);
    if (g === seen) {
      const until = performance.now() + d.spinMs;
      let i = 0;
      while ((g = Atomics.load(ctrl, 0)) === seen) {
        if ((++i & 255) === 0 && performance.now() > until) break;
      }
      while ((g = Atomics.load(ctrl, 0)) === seen) Atomics.wait(ctrl, 0, seen);
    }
    seen = g;
    if (Atomics.load(ctrl, 3) !== 0) break;
    const id = head[0]!;
    if (id < 0) continue;
    try {
      fns[id]!(...Array.prototype.slice.call(args, 0, head[1]!));
    } catch (e) {
      Atomics.store(ctrl, 2, 1);
      wt.parentPort!.postMessage(String((e as Error)?.stack ?? e));
    }
    Atomics.add(ctrl, 1, 1);
    Atomics.notify(ctrl, 1);
  }
}

export interface Job {
  /** Index into the pool's function names. */
  fn: number;
  args: readonly number[];
}

export class ThreadPool {
  private readonly workers: Worker[] = [];
  private readonly ctrl: Int32Array;
  private readonly heads: Int32Array[] = [];
  private readonly argViews: Float64Array[] = [];
  private destroyed = false;
  private lastError = '';

  private constructor(
    private readonly memory: WasmMemory,
    private readonly ctrlPtr: number,
    readonly threads: number,
    private readonly spinMs: number,
  ) {
    this.ctrl = new Int32Array(memory.buffer, ctrlPtr, 16);
    for (let t = 0; t < threads; t++) {
      const base = ctrlPtr + SLOT_OFFSET + t * SLOT_BYTES;
      this.heads.push(new Int32Array(memory.buffer, base, 2));
      this.argViews.push(new Float64Array(memory.buffer, base + 8, MAX_ARGS));
    }
  }

  /** Starts `threads − 1` workers (the caller is thread 0) and waits until each has instantiated the module. */
  static async create(module: WasmModule, memory: WasmMemory, ctrlPtr: number, names: string[], threads: number, spinMs: number): Promise<ThreadPool> {
    if (threads > MAX_THREADS) throw new BackendError(`wasm: at most ${MAX_THREADS} threads, asked for ${threads}`);
    const pool = new ThreadPool(memory, ctrlPtr, threads, spinMs);
    const gen = Atomics.load(pool.ctrl, GEN);
    const ready: Promise<void>[] = [];
    for (let i = 1; i < threads; i++) {
      const init: WorkerInit = { module, memory, ctrl: ctrlPtr, index: i, names, gen, spinMs, slotOffset: SLOT_OFFSET, slotBytes: SLOT_BYTES, maxArgs: MAX_ARGS };
      const w = new Worker(`(${workerMain.toString()})()`, {
        eval: true,
        workerData: init,
        name: `lavi-wasm-${i}`,
        // The worker is a CommonJS script: do not inherit flags such as --input-type=module from the parent.
        execArgv: [],
      });
      pool.workers.push(w);
      ready.push(
        new Promise<void>((resolve, reject) => {
          const onError = (e: Error) => reject(new BackendError(`wasm: worker ${i} failed to start: ${e.message}`));
          w.once('error', onError);
          w.once('message', () => {
            w.off('error', onError);
            // From now on messages are error reports from kernels (the ERROR flag carries the failure itself).
            w.on('message', (m) => (pool.lastError = String(m)));
            w.on('error', (e) => (pool.lastError = e.message));
            resolve();
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
   * Runs jobs[0] on the calling thread and jobs[i] on worker i, and returns when all have finished.
   * `call(fn, args)` runs a job on this thread.
   */
  run(jobs: readonly (Job | null)[], call: (job: Job) => void): void {
    if (this.destroyed) throw new BackendError('wasm: the backend was destroyed');
    if (jobs.length > this.threads) throw new BackendError(`wasm: ${jobs.length} jobs for ${this.threads} threads`);
    let expected = 0;
    for (let t = 1; t < this.threads; t++) {
      const job = jobs[t];
      const head = this.heads[t]!;
      if (!job) {
        head[0] = -1;
        continue;
      }
      if (job.args.length > MAX_ARGS) throw new BackendError(`wasm: too many kernel arguments (${job.args.length})`);
      head[0] = job.fn;
      head[1] = job.args.length;
      this.argViews[t]!.set(job.args);
      expected++;
    }
    if (expected > 0) {
      Atomics.store(this.ctrl, DONE, 0);
      Atomics.add(this.ctrl, GEN, 1);
      Atomics.notify(this.ctrl, GEN);
    }
    let mainError: unknown = null;
    try {
      if (jobs[0]) call(jobs[0]);
    } catch (e) {
      mainError = e;
    }
    if (expected > 0) this.waitDone(expected);
    if (mainError) throw mainError;
    if (Atomics.load(this.ctrl, ERROR) !== 0) {
      Atomics.store(this.ctrl, ERROR, 0);
      throw new BackendError(`wasm: a kernel failed on a worker thread${this.lastError ? `: ${this.lastError}` : ''}`);
    }
  }

  private waitDone(expected: number): void {
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
    await Promise.all(this.workers.map((w) => w.terminate().catch(() => 0)));
    this.workers.length = 0;
    void this.memory;
    void this.ctrlPtr;
  }
}
