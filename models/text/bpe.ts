// The byte-level BPE model of a Hugging Face tokenizer.json: merges applied by rank with a candidate heap, a
// bounded cache of encoded words, byte fallback.

import { FormatError } from '../../core/errors.js';

const utf8 = new TextEncoder();

// ---------------------------------------------------------------------------------------------------------------
// BPE model.

interface MergeInfo {
  rank: number;
  id: number;
}

/** Binary min-heap of merge candidates ordered by (rank, position). */
class CandidateHeap {
  private rank: number[] = [];
  private pos: number[] = [];
  get size(): number {
    return this.rank.length;
  }
  private less(a: number, b: number): boolean {
    return this.rank[a]! < this.rank[b]! || (this.rank[a] === this.rank[b] && this.pos[a]! < this.pos[b]!);
  }
  private swap(a: number, b: number): void {
    const r = this.rank[a]!, p = this.pos[a]!;
    this.rank[a] = this.rank[b]!, this.pos[a] = this.pos[b]!;
    this.rank[b] = r, this.pos[b] = p;
  }
  push(rank: number, pos: number): void {
    this.rank.push(rank);
    this.pos.push(pos);
    let i = this.rank.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.less(i, parent)) break;
      this.swap(i, parent);
      i = parent;
    }
  }
  /** Removes the smallest entry; returns its position (the rank is re-checked by the caller). */
  pop(): { rank: number; pos: number } {
    const top = { rank: this.rank[0]!, pos: this.pos[0]! };
    const lastRank = this.rank.pop()!, lastPos = this.pos.pop()!;
    if (this.rank.length > 0) {
      this.rank[0] = lastRank;
      this.pos[0] = lastPos;
      let i = 0;
      const n = this.rank.length;
      for (;;) {
        const l = 2 * i + 1, r = l + 1;
        let m = i;
        if (l < n && this.less(l, m)) m = l;
        if (r < n && this.less(r, m)) m = r;
        if (m === i) break;
        this.swap(i, m);
        i = m;
      }
    }
    return top;
  }
}

const CACHE_LIMIT = 10000;
const CACHE_MAX_WORD = 256;

export class BPEModel {
  readonly vocab: Map<string, number>;
  /** Merge of the adjacent ids (a, b), keyed a * idSpan + b. */
  private readonly merges = new Map<number, MergeInfo>();
  private readonly idSpan: number;
  private readonly cache = new Map<string, number[]>();

  constructor(
    vocab: Map<string, number>,
    merges: [string, string][],
    private readonly ignoreMerges: boolean,
    private readonly byteFallback: boolean,
    private readonly unkId: number | undefined,
    private readonly fuseUnk: boolean,
    where: string,
  ) {
    this.vocab = vocab;
    let maxId = 0;
    for (const id of vocab.values()) maxId = Math.max(maxId, id);
    this.idSpan = maxId + 1;
    merges.forEach(([a, b], rank) => {
      const ia = vocab.get(a), ib = vocab.get(b), merged = vocab.get(a + b);
      const missing = ia === undefined ? a : ib === undefined ? b : merged === undefined ? a + b : undefined;
      if (missing !== undefined) {
        throw new FormatError(`${where}: merge ${rank} ${JSON.stringify(`${a} ${b}`)} refers to the token ${JSON.stringify(missing)}, which is not in the vocab`);
      }
      const key = ia! * this.idSpan + ib!;
      if (!this.merges.has(key)) this.merges.set(key, { rank, id: merged! });
    });
  }

  private merge(a: number, b: number): MergeInfo | undefined {
    return this.merges.get(a * this.idSpan + b);
  }

  /** Ids of one pre-tokenized word (already in byte-level characters). */
  tokenize(word: string): number[] {
    const cached = this.cache.get(word);
    if (cached) return cached;
    const ids = this.tokenizeUncached(word);
    if (word.length <= CACHE_MAX_WORD) {
      if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
      this.cache.set(word, ids);
    }
    return ids;
  }

  private tokenizeUncached(word: string): number[] {
    if (this.ignoreMerges) {
      const whole = this.vocab.get(word);
      if (whole !== undefined) return [whole];
    }
    // Initial symbols: one per character.
    const sym: number[] = [];
    let pendingUnk = false;
    for (const ch of word) {
      const id = this.vocab.get(ch);
      if (id !== undefined) {
        sym.push(id);
        pendingUnk = false;
        continue;
      }
      if (this.byteFallback) {
        const ids = [...utf8.encode(ch)].map((b) => this.vocab.get(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`));
        if (ids.every((x) => x !== undefined)) {
          for (const x of ids) sym.push(x!);
          pendingUnk = false;
          continue;
        }
      }
      if (this.unkId !== undefined) {
        if (!(this.fuseUnk && pendingUnk)) sym.push(this.unkId);
        pendingUnk = true;
      }
      // No unk token: the character is dropped, as HF does.
    }
    const n = sym.length;
    if (n < 2) return sym;
    const prev = new Int32Array(n), next = new Int32Array(n);
    const alive = new Uint8Array(n).fill(1);
    for (let k = 0; k < n; k++) (prev[k] = k - 1), (next[k] = k + 1 < n ? k + 1 : -1);
    const heap = new CandidateHeap();
    for (let k = 0; k + 1 < n; k++) {
      const m = this.merge(sym[k]!, sym[k + 1]!);
      if (m) heap.push(m.rank, k);
    }
    while (heap.size > 0) {
      const { rank, pos } = heap.pop();
      if (!alive[pos]) continue;
      const right = next[pos]!;
      if (right < 0) continue;
      const m = this.merge(sym[pos]!, sym[right]!);
      if (!m || m.rank !== rank) continue; // stale: one side has changed since this entry was pushed
      sym[pos] = m.id;
      alive[right] = 0;
      const after = next[right]!;
      next[pos] = after;
      if (after >= 0) prev[after] = pos;
      const before = prev[pos]!;
      if (before >= 0) {
        const ml = this.merge(sym[before]!, sym[pos]!);
        if (ml) heap.push(ml.rank, before);
      }
      if (after >= 0) {
        const mr = this.merge(sym[pos]!, sym[after]!);
        if (mr) heap.push(mr.rank, pos);
      }
    }
    const out: number[] = [];
    for (let k = 0; k >= 0; k = next[k]!) out.push(sym[k]!);
    return out;
  }
}
