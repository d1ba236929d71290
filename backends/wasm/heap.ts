// The wasm backend's allocator over one shared WasmMemory. Tensors are byte offsets into it.
//
// - Small and medium blocks (≤ 1 MiB) use size classes: 64-byte steps up to 256 B, then four classes per power of
//   two (waste ≤ 25%). A freed block goes onto its class's free list and is handed out again as-is, which is the
//   common pattern of a model loop (the same activation sizes every step).
// - Large blocks are rounded to 64 KiB and come from a list of free extents (best fit, split, coalesced with
//   both neighbours on free); an extent that reaches the top of the heap lowers the top instead.
// - New space is bumped from the top, growing the memory as needed (at least 1/8 of its size at a time, so a
//   model's weights do not cost one grow each). All blocks are 64-byte aligned (cache lines, v128 loads).

import { BackendError } from '../../core/errors.js';
import type { WasmMemory } from './wasm-api.js';

const PAGE = 65536;
const SMALL_MAX = 1 << 20;
const LARGE_ALIGN = 65536;

export function sizeClass(bytes: number): number {
  if (bytes <= 256) return Math.max(64, Math.ceil(bytes / 64) * 64);
  if (bytes > SMALL_MAX) return Math.ceil(bytes / LARGE_ALIGN) * LARGE_ALIGN;
  // Integer ops, not Math.log2: this runs on every alloc and free (several per op). bytes − 1 < 2^20 here.
  const e = 31 - Math.clz32(bytes - 1); // 2^e < bytes ≤ 2^(e+1)
  const step = 1 << (e - 2); // four classes per doubling
  return Math.ceil(bytes / step) * step;
}

export interface HeapStats {
  /** Bytes in live blocks (after rounding to their class). */
  liveBytes: number;
  peakBytes: number;
  /** Top of the heap (bytes of the memory in use or on free lists). */
  topBytes: number;
  /** Size of the memory now, and the most it may grow to. */
  memoryBytes: number;
  maxBytes: number;
  freeBlocks: number;
}

export class Heap {
  private top: number;
  private readonly freeLists = new Map<number, number[]>();
  /** Free large extents, sorted by address. */
  private extents: { ptr: number; size: number }[] = [];
  private live = 0;
  private peak = 0;
  /** Called after the memory grew (so views can be refreshed). */
  onGrow: () => void = () => {};

  constructor(
    private readonly memory: WasmMemory,
    start: number,
    readonly maxBytes: number,
    private readonly name = 'wasm',
  ) {
    this.top = Math.ceil(start / 64) * 64;
  }

  /** A 64-byte aligned block of at least `bytes` bytes; throws a BackendError if it cannot fit. */
  alloc(bytes: number): number {
    if (!Number.isSafeInteger(bytes) || bytes < 0) throw new BackendError(`${this.name}: invalid allocation size ${bytes}`);
    const size = sizeClass(Math.max(bytes, 1));
    if (size > this.maxBytes - PAGE) {
      throw new BackendError(
        `${this.name}: cannot allocate ${bytes} bytes: larger than the backend's memory limit of ${this.maxBytes} bytes ` +
          `(WebAssembly memories are 32-bit; pass a larger maxMemoryBytes, up to 4 GiB, or use packed bf16/f16 weights)`,
      );
    }
    let ptr: number | undefined;
    if (size <= SMALL_MAX) ptr = this.freeLists.get(size)?.pop();
    else ptr = this.takeExtent(size);
    if (ptr === undefined) ptr = this.bump(size, bytes);
    this.live += size;
    if (this.live > this.peak) this.peak = this.live;
    return ptr;
  }

  /** Returns a block; `bytes` is the size it was allocated with. */
  free(ptr: number, bytes: number): void {
    const size = sizeClass(Math.max(bytes, 1));
    this.live -= size;
    if (size <= SMALL_MAX) {
      let list = this.freeLists.get(size);
      if (!list) this.freeLists.set(size, (list = []));
      list.push(ptr);
      return;
    }
    this.releaseExtent(ptr, size);
  }

  stats(): HeapStats {
    let freeBlocks = this.extents.length;
    for (const l of this.freeLists.values()) freeBlocks += l.length;
    return { liveBytes: this.live, peakBytes: this.peak, topBytes: this.top, memoryBytes: this.memory.buffer.byteLength, maxBytes: this.maxBytes, freeBlocks };
  }

  resetPeak(): void {
    this.peak = this.live;
  }

  private takeExtent(size: number): number | undefined {
    let best = -1;
    for (let i = 0; i < this.extents.length; i++) {
      const e = this.extents[i]!;
      if (e.size >= size && (best < 0 || e.size < this.extents[best]!.size)) best = i;
    }
    if (best < 0) return undefined;
    const e = this.extents[best]!;
    const ptr = e.ptr;
    if (e.size === size) this.extents.splice(best, 1);
    else {
      e.ptr += size;
      e.size -= size;
    }
    return ptr;
  }

  private releaseExtent(ptr: number, size: number): void {
    // Insert in address order, then merge with the neighbours.
    let i = 0;
    while (i < this.extents.length && this.extents[i]!.ptr < ptr) i++;
    this.extents.splice(i, 0, { ptr, size });
    const next = this.extents[i + 1];
    if (next && ptr + size === next.ptr) {
      this.extents[i]!.size += next.size;
      this.extents.splice(i + 1, 1);
    }
    const prev = this.extents[i - 1];
    if (prev && prev.ptr + prev.size === ptr) {
      prev.size += this.extents[i]!.size;
      this.extents.splice(i, 1);
      i--;
    }
    const last = this.extents[this.extents.length - 1];
    if (last && last.ptr + last.size === this.top) {
      this.top = last.ptr;
      this.extents.pop();
    }
  }

  private bump(size: number, requested: number): number {
    // Large blocks start on a 64 KiB boundary so that their extents stay aligned when split later.
    const ptr = size > SMALL_MAX ? Math.ceil(this.top / LARGE_ALIGN) * LARGE_ALIGN : this.top;
    const end = ptr + size;
    if (end > this.maxBytes) {
      throw new BackendError(
        `${this.name}: out of memory: cannot allocate ${requested} bytes (${this.live} bytes live, heap top ${this.top}, ` +
          `limit ${this.maxBytes} bytes); dispose unused tensors or raise maxMemoryBytes (at most 4 GiB)`,
      );
    }
    if (ptr > this.top) this.releaseGap(this.top, ptr);
    const have = this.memory.buffer.byteLength;
    if (end > have) {
      const maxPages = Math.floor(this.maxBytes / PAGE);
      const havePages = have / PAGE;
      const needPages = Math.ceil(end / PAGE) - havePages;
      const wantPages = Math.min(maxPages - havePages, Math.max(needPages, Math.ceil(havePages / 8), 256));
      try {
        this.memory.grow(wantPages);
      } catch {
        try {
          this.memory.grow(needPages);
        } catch (e) {
          throw new BackendError(`${this.name}: out of memory: growing the WebAssembly memory to ${end} bytes failed (${(e as Error).message})`);
        }
      }
      this.onGrow();
    }
    this.top = end;
    return ptr;
  }

  /** Space skipped to align a large block becomes small free blocks (64-byte granules, largest classes first). */
  private releaseGap(from: number, to: number): void {
    let p = from;
    while (p < to) {
      let size = 64;
      while (size * 2 <= to - p && size * 2 <= 32768) size *= 2;
      let list = this.freeLists.get(size);
      if (!list) this.freeLists.set(size, (list = []));
      list.push(p);
      p += size;
    }
  }
}
