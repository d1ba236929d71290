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

import { Worker } from 'node:worker_threads';
import { BackendError } from '../../core/errors.js';
import type { WasmMemory, WasmModule } from './wasm-api.js';

export const CTRL_BYTES = 8192;
const CLAIMS = 16; // word index of the claim flags
const SLOT_OFFSET = 256; // bytes from the control block to slot 0
const SLOT_BYTES = 256; // 16 bytes of header + 30 float64 arguments
export const MAX_JOBS = 24;
export const MAX_THREADS = 16;
const MAX_ARGS = (SLOT_BYTES - 16) / 8;

const GEN = 0, DONE = 1, ERROR = 2, EXIT = 3, NJOBS = 4;

interface WorkerInit {
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

/** The worker's whole program. It runs as an eval'd CommonJS script, so it must not use anything from this file. */
function workerMain(): void {
  const wt = require('node:worker_threads') as typeof import('node:worker_threads');
  const d = wt.workerData as WorkerInit;
  const W = (globalThis as unknown as { WebAssembly: { Instance: new (m: WasmModule, i: object) => { exports: Record<string, unknown> } } }).WebAssembly;
  const inst = new W.Instance(d.module, { env: { memory: d.memory } });
  const fns = d.names.map((n) => inst.exports[n] as (...a: number[]) => unknown);
  const buf = d.memory.buffer;
  const ctrl = new Int32Array(buf, d.ctrl, d.layout.claims + d.layout.maxJobs);
  const heads: Int32Array[] = [];
  const args: Float64Array[] = [];
  for (let j = 0; j < d.layout.maxJobs; j++) {
    const base = d.ctrl + d.layout.slotOffset + j * d.layout.slotBytes;
    heads.push(new Int32Array(buf, base, 4));
    args.push(new Float64Array(buf, base + 16, (d.layout.slotBytes - 16) / 8));
  }
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
    const n = Atomics.load(ctrl, 4);
    // Start at this worker's share, then help with the rest.
    const start = Math.floor((d.index * n) / d.threads);
    for (let k = 0; k < n; k++) {
      const j = (start + k) % n;
      if (Atomics.compareExchange(ctrl, d.layout.claims + j, 0, 1) !== 0) continue;
      const h = heads[j]!;
      const a = Array.prototype.slice.call(args[j]!, 0, h[1]!) as number[];
      if (h[2]! >= 0) a[h[2]!] = d.scratch;
      try {
        fns[h[0]!]!(...a);
      } catch (e) {
        Atomics.store(ctrl, 2, 1);
        wt.parentPort!.postMessage(String((e as Error)?.stack ?? e));
      }
      Atomics.add(ctrl, 1, 1);
      Atomics.notify(ctrl, 1);
    }
  }
}

export interface Job {
  /** Index into the pool's function names. */
  fn: number;
  args: number[];
  /** Index of the argument to replace with the running thread's scratch pointer (per-thread GEMM buffers). */
  scratchArg?: number;
}

export class ThreadPool {
  private readonly workers: Worker[] = [];
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
    await Promise.all(this.workers.map((w) => w.terminate().catch(() => 0)));
    this.workers.length = 0;
  }
}
