// The page's side of the engine worker: one request at a time per id, replies routed by id.

import type { Reply, Request } from './protocol.js';

type Pending = { resolve(v: unknown): void; reject(e: Error): void; onEvent?: (r: Reply) => void };
type Body = Request extends infer R ? (R extends { id: number } ? Omit<R, 'id'> : never) : never;

export class EngineClient {
  private readonly worker: Worker;
  private next = 1;
  private readonly pending = new Map<number, Pending>();
  /** Set when the worker itself failed (its script did not load, or it crashed). */
  failure: string | null = null;

  constructor(onFatal: (why: string) => void) {
    this.worker = new Worker(new URL('./engine-worker.js', import.meta.url), { type: 'module', name: 'lavi-engine' });
    this.worker.onmessage = (e: MessageEvent<Reply>) => {
      const r = e.data;
      const p = this.pending.get(r.id);
      if (!p) return;
      if (r.type === 'result') {
        this.pending.delete(r.id);
        p.resolve(r.value);
      } else if (r.type === 'error') {
        this.pending.delete(r.id);
        p.reject(new Error(r.message));
      } else p.onEvent?.(r);
    };
    this.worker.onerror = (e) => {
      this.failure = `the engine worker failed: ${e.message || 'its script could not be loaded'}`;
      for (const p of this.pending.values()) p.reject(new Error(this.failure));
      this.pending.clear();
      onFatal(this.failure);
    };
  }

  request<T>(body: Body, onEvent?: (r: Reply) => void, transfer: Transferable[] = []): Promise<T> {
    if (this.failure) return Promise.reject(new Error(this.failure));
    const id = this.next++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, onEvent });
      this.worker.postMessage({ ...body, id }, transfer);
    });
  }
}
