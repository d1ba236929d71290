// The decoder's KV cache: per layer, one key and one value buffer [1, capacity, Hkv, Dh] (f32, token-major, the
// layout ops.attention reads). New tokens are written in place with ops.writeSlice; attention reads the first
// `length` entries (keyLength), so the buffers can be larger than their fill. When a write would overflow, every
// buffer is reallocated at (at least) twice the capacity and the filled part copied over.
//
// In LaVi mode the cache holds text tokens only; in the concat baseline it holds the visual tokens too.

import type { Backend } from '../../core/backend.js';
import { ValueError } from '../../core/errors.js';
import { keep } from '../../core/scope.js';
import { Tensor } from '../../core/tensor.js';
import { sliceAxis, writeSlice } from '../../ops/index.js';

export class KVCache {
  private keys: Tensor[] = [];
  private values: Tensor[] = [];
  private cap = 0;
  /** Tokens written so far (their positions are 0 .. length-1). */
  length = 0;

  constructor(
    readonly backend: Backend,
    readonly layers: number,
    readonly kvHeads: number,
    readonly headDim: number,
    /** Hard limit (max_position_embeddings). */
    readonly maxLength: number,
    initialCapacity = 0,
  ) {
    if (initialCapacity > 0) this.reserve(initialCapacity, true);
  }

  get capacity(): number {
    return this.cap;
  }

  /** Makes room for at least `n` tokens in total (no-op when there is room); grows geometrically unless `exact`. */
  reserve(n: number, exact = false): void {
    if (n > this.maxLength) throw new ValueError(`KV cache: ${n} tokens exceed max_position_embeddings ${this.maxLength}`);
    if (n <= this.cap) return;
    const cap = exact ? n : Math.min(this.maxLength, Math.max(n, this.cap * 2, 16));
    const shape = [1, cap, this.kvHeads, this.headDim];
    for (let l = 0; l < this.layers; l++) {
      for (const list of [this.keys, this.values]) {
        // Uninitialised is fine: attention never reads past keyLength.
        const fresh = keep(Tensor.fromStorage(this.backend, shape, 'f32', this.backend.alloc(cap * this.kvHeads * this.headDim, 'f32')));
        const old = list[l];
        if (old) {
          if (this.length > 0) {
            const filled = sliceAxis(old, 1, 0, this.length);
            writeSlice(fresh, filled, 1, 0);
            filled.dispose();
          }
          old.dispose();
        }
        list[l] = fresh;
      }
    }
    this.cap = cap;
  }

  /** Writes k, v [1, T, Hkv, Dh] of layer `layer` at positions length .. length+T-1 (call advance(T) after the
   *  last layer). Returns the full buffers for ops.attention (use keyLength = length + T). */
  write(layer: number, k: Tensor, v: Tensor): { k: Tensor; v: Tensor } {
    const T = k.shape[1]!;
    this.reserve(this.length + T);
    writeSlice(this.keys[layer]!, k, 1, this.length);
    writeSlice(this.values[layer]!, v, 1, this.length);
    return { k: this.keys[layer]!, v: this.values[layer]! };
  }

  advance(T: number): void {
    this.length += T;
  }

  /** Forgets the contents (keeps the buffers). */
  reset(): void {
    this.length = 0;
  }

  /** Bytes allocated for the buffers. */
  allocatedBytes(): number {
    return 2 * this.layers * this.cap * this.kvHeads * this.headDim * 4;
  }

  /** Bytes the filled part occupies (what a cache sized exactly to the sequence would take). */
  filledBytes(): number {
    return 2 * this.layers * this.length * this.kvHeads * this.headDim * 4;
  }

  dispose(): void {
    for (const t of [...this.keys, ...this.values]) t.dispose();
    this.keys = [];
    this.values = [];
    this.cap = 0;
    this.length = 0;
  }
}
