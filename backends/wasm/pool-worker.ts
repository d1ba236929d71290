// The wasm thread pool's worker program (backends/wasm/pool.ts): its own module file, started with
// `new Worker(new URL('./pool-worker.js', import.meta.url), …)` — a worker_threads Worker in Node (the WorkerInit
// comes as workerData), a module Worker in a browser (it comes as the first message). A file of its own, not a
// function's source text, so bundlers and minifiers leave it working. It imports nothing: the same file runs in
// both, bundled or not. Protocol and memory layout: see pool.ts.

import type { WorkerInit } from './pool.js';

type Post = (m: unknown) => void;

function run(d: WorkerInit, post: Post): void {
  const W = (globalThis as unknown as { WebAssembly: { Instance: new (m: unknown, i: object) => { exports: Record<string, unknown> } } }).WebAssembly;
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
  post('ready');
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
        post(String((e as Error)?.stack ?? e));
      }
      Atomics.add(ctrl, 1, 1);
      Atomics.notify(ctrl, 1);
    }
  }
}

const proc = (globalThis as { process?: { versions?: { node?: string }; getBuiltinModule?: (n: string) => unknown } }).process;
if (proc?.versions?.node && proc.getBuiltinModule) {
  const wt = proc.getBuiltinModule('node:worker_threads') as typeof import('node:worker_threads');
  if (wt.parentPort && wt.workerData) run(wt.workerData as WorkerInit, (m) => wt.parentPort!.postMessage(m));
} else {
  const self = globalThis as unknown as { onmessage: ((e: { data: unknown }) => void) | null; postMessage: Post };
  self.onmessage = (e) => {
    self.onmessage = null;
    try {
      run(e.data as WorkerInit, (m) => self.postMessage(m));
    } catch (err) {
      self.postMessage({ startError: String((err as Error)?.message ?? err) });
    }
  };
}
