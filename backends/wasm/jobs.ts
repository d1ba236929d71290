// What every wasm op file works with: views of the shared memory, the module's kernels by index, and the split of
// a kernel call into jobs across the thread pool (pool.ts runs them). Below a size threshold a kernel stays on the
// calling thread (waking a worker costs ~5–20 µs); above it, the work is cut into ranges that depend only on the
// shape, so results never depend on the thread count.

import type { Tensor } from '../../core/tensor.js';
import { BackendError } from '../../core/errors.js';
import type { Heap } from './heap.js';
import { type Job, MAX_JOBS, type ThreadPool } from './pool.js';
import type { WasmMemory } from './wasm-api.js';

/** Below these sizes a kernel stays on the calling thread. */
export const PAR_FLOPS = 1 << 21; // GEMM / attention work
export const PAR_BYTES = 1 << 20; // bytes touched by memory-bound kernels

export type Fn = (...args: number[]) => void;

/** A tensor's storage: a byte offset into the shared memory. */
export class WasmStorage {
  freed = false;
  constructor(
    readonly ptr: number,
    readonly bytes: number,
  ) {}
}

/** A tensor's byte offset in the memory. */
export function ptr(t: Tensor): number {
  return (t.storage as WasmStorage).ptr;
}

/** Splits [0, n) into `parts` ranges whose boundaries are multiples of `align`. */
export function split(n: number, parts: number, align: number): [number, number][] {
  const out: [number, number][] = [];
  const units = Math.ceil(n / align);
  let start = 0;
  for (let p = 0; p < parts; p++) {
    const end = Math.min(n, Math.round((units * (p + 1)) / parts) * align);
    if (end > start) out.push([start, end]);
    start = end;
  }
  return out;
}

export class KernelContext {
  u8!: Uint8Array;
  u16!: Uint16Array;
  i32!: Int32Array;
  f32!: Float32Array;
  private consts: { n: number; ones: number; zeros: number; binaryRow: number } | null = null;
  private table: { ptr: number; bytes: number } | null = null;

  constructor(
    readonly name: string,
    private readonly memory: WasmMemory,
    readonly heap: Heap,
    /** The module's exports, in the order of its export names. */
    readonly fns: Fn[],
    private readonly fnIndex: Map<string, number>,
    readonly pool: ThreadPool | null,
    /** GEMM scratch per thread (index 0: the calling thread's). */
    readonly gemmScratch: number[],
    /** Split every kernel that can be split, however small (tests). */
    readonly splitAll: boolean,
  ) {
    this.refreshViews();
    heap.onGrow = () => this.refreshViews();
  }

  get threads(): number {
    return this.gemmScratch.length;
  }

  private refreshViews(): void {
    const buf = this.memory.buffer;
    if (this.u8 && this.u8.buffer.byteLength === buf.byteLength) return;
    this.u8 = new Uint8Array(buf);
    this.u16 = new Uint16Array(buf);
    this.i32 = new Int32Array(buf);
    this.f32 = new Float32Array(buf);
  }

  has(name: string): boolean {
    return this.fnIndex.has(name);
  }

  /** The index of kernel `name` in fns. */
  fn(name: string): number {
    const i = this.fnIndex.get(name);
    if (i === undefined) throw new BackendError(`${this.name}: no kernel '${name}' in the module`);
    return i;
  }

  /** Runs one job on the calling thread (made once, not per call). */
  private readonly runHere = (j: Job): void => {
    if (j.scratchArg !== undefined) j.args[j.scratchArg] = this.gemmScratch[0]!;
    this.fns[j.fn]!(...j.args);
  };

  /** Runs jobs on the threads (all on this one when there is a single job or no pool). */
  runJobs(jobs: Job[]): void {
    if (jobs.length === 1 || !this.pool) {
      for (const j of jobs) this.runHere(j);
      return;
    }
    this.pool.run(jobs, this.runHere);
  }

  /** One kernel call on the calling thread, for kernels whose work is below the split threshold: the same
   *  arguments as the single job `split` would make, without the ranges, job objects and arrays (most kernel
   *  calls of a decode step are this small). */
  callHere(fn: number, args: number[]): void {
    this.fns[fn]!(...args);
  }

  /**
   * How many jobs a kernel with this much work is split into: one below `unit`, else up to `perThread` per thread
   * (default 4), so a thread that starts late or is preempted mid-job holds up only a small share: the others claim
   * the rest.
   */
  threadsFor(work: number, unit: number, perThread = 4): number {
    if (this.threads === 1) return 1;
    if (this.splitAll) return Math.min(MAX_JOBS, 2 * this.threads);
    const n = Math.floor(work / unit);
    return n < 2 ? 1 : Math.min(MAX_JOBS, perThread * this.threads, n);
  }

  /** Scratch i32 table in the memory with room for `words` entries (reused between calls). */
  tableFor(words: number): number {
    const bytes = Math.max(64, words * 4);
    if (!this.table || this.table.bytes < bytes) {
      if (this.table) this.heap.free(this.table.ptr, this.table.bytes);
      const b = Math.max(bytes, (this.table?.bytes ?? 0) * 2);
      this.table = { ptr: this.heap.alloc(b), bytes: b };
    }
    return this.table.ptr;
  }

  /** Pointers to constant ones and zeros (at least n floats each) and a one-row binary table (0, 0, both contiguous). */
  constsFor(n: number): { ones: number; zeros: number; binaryRow: number } {
    if (!this.consts || this.consts.n < n) {
      if (this.consts) {
        this.heap.free(this.consts.ones, this.consts.n * 4);
        this.heap.free(this.consts.zeros, this.consts.n * 4);
        this.heap.free(this.consts.binaryRow, 12);
      }
      const size = Math.max(n, 1024, (this.consts?.n ?? 0) * 2);
      const ones = this.heap.alloc(size * 4), zeros = this.heap.alloc(size * 4), binaryRow = this.heap.alloc(12);
      this.f32.fill(1, ones >>> 2, (ones >>> 2) + size);
      this.f32.fill(0, zeros >>> 2, (zeros >>> 2) + size);
      this.i32.set([0, 0, 3], binaryRow >>> 2);
      this.consts = { n: size, ones, zeros, binaryRow };
    }
    return this.consts;
  }
}
