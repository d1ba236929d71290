// A third-party backend, registered from outside the engine using only the package's public API (index.ts):
// it wraps the CPU reference and counts kernel calls and time per op. The same pattern serves a real device:
// implement the Backend interface (memory, sync/read, supports, one method per kernel with the calling
// convention kernel(out, inputs, attrs)), register a factory, and check it with the conformance harness.
//
//   import { registerInstrumentedBackend } from './examples/instrumented-backend.js';
//   registerInstrumentedBackend();
//   const rt = await LaviRuntime.create({ backend: 'instrumented' });
//   ...; console.log(((await getBackend('instrumented')) as InstrumentedBackend).report());

import { CpuBackend, OP_NAMES, registerBackend, type Backend, type BackendInfo, type DType, type HostArray, type KernelAttrs, type KernelInputs, type Kernels, type OpName, type Storage, type Support, type Tensor } from '../index.js';

export interface OpStats {
  calls: number;
  ms: number;
}

/** Forwards everything to `inner` and measures each kernel call. */
export class InstrumentedBackend implements Backend {
  readonly name: string;
  readonly stats = new Map<OpName, OpStats>();

  constructor(readonly inner: Backend = new CpuBackend(), name = 'instrumented') {
    this.name = name;
    for (const op of OP_NAMES) {
      const kernel = (out: Tensor, inputs: unknown, attrs: unknown) => {
        const t0 = performance.now();
        (inner[op] as (o: Tensor, i: unknown, a: unknown) => void).call(inner, out, inputs, attrs);
        const s = this.stats.get(op) ?? { calls: 0, ms: 0 };
        s.calls++;
        s.ms += performance.now() - t0;
        this.stats.set(op, s);
      };
      (this as unknown as Record<string, unknown>)[op] = kernel;
    }
  }

  info(): BackendInfo {
    const i = this.inner.info();
    return { ...i, name: this.name, description: `instrumented ${i.description}` };
  }
  alloc(size: number, dtype: DType): Storage { return this.inner.alloc(size, dtype); }
  upload(data: HostArray, dtype: DType): Storage { return this.inner.upload(data, dtype); }
  read(s: Storage, dtype: DType, size: number): Promise<HostArray> { return this.inner.read(s, dtype, size); }
  readSync(s: Storage, dtype: DType, size: number): HostArray { return this.inner.readSync!(s, dtype, size); }
  free(s: Storage): void { this.inner.free(s); }
  sync(): Promise<void> { return this.inner.sync(); }
  destroy(): Promise<void> { return this.inner.destroy(); }
  supports<K extends OpName>(op: K, out: Tensor, inputs: KernelInputs<K>, attrs: KernelAttrs<K>): Support {
    return this.inner.supports(op, out, inputs, attrs);
  }

  /** Calls and milliseconds per op, most expensive first. */
  report(): string {
    return [...this.stats].sort((a, b) => b[1].ms - a[1].ms).map(([op, s]) => `${op.padEnd(14)} ${String(s.calls).padStart(7)} calls ${s.ms.toFixed(2).padStart(10)} ms`).join('\n');
  }
}
// The kernels are installed in the constructor; tell TypeScript they are there.
export interface InstrumentedBackend extends Kernels {}

/** Registers 'instrumented' (CPU reference underneath) with the engine's registry. */
export function registerInstrumentedBackend(name = 'instrumented'): void {
  registerBackend(name, () => new InstrumentedBackend(new CpuBackend(), name), { priority: -1, description: 'CPU reference with per-op call counts and timings', replace: true });
}
