// The gpu.js runtime under the gpu.js backend: loads gpu.js, sets up the requested mode (and nothing else),
// caches compiled kernels per shape, runs them (synchronously, or in order on a promise queue for the modes whose
// kernels return promises), and owns the storage handles.
//
// Storage (GBuf). gpu.js computes in f32 only, so every tensor is held as f32 *values*: f32 as is, i32 as the
// integer value (exact for |v| ≤ 2^24), f16/bf16 as the value of the 16-bit pattern (0 … 65535; widened and
// narrowed arithmetically inside kernels, see codegen.ts). Where the data lives depends on the mode:
//   - webgpu:     a GPU storage buffer wrapped as gpu.js's WebGPUBufferResult (kernels run with `pipeline: true`,
//                 so results stay on the device and pass straight into the next kernel; only read() copies back).
//   - headlessgl: a gpu.js Texture (pipeline mode); host data is uploaded by gpu.js on a kernel's first use.
//   - webasm:     a host Float32Array. gpu.js's WebAssembly kernels copy their arguments into the kernel's own
//                 linear memory on every call and copy the output out (its `pipeline` returns a fresh typed
//                 array), so nothing stays resident between kernels.
//   - cpu:        a host Float32Array (gpu.js's CPU kernels read it directly).
//
// Modes never switch silently: gpu.js degrades a kernel it cannot translate to its CPU backend (with a console
// warning); every call checks which backend actually ran and turns a degradation into an error.

import type { DType, HostArray } from '../../core/dtype.js';
import { BackendError, DTypeError } from '../../core/errors.js';
import { acquireWebGPU, GPUBufferUsageFlags, GPUMapModeFlags, type WebGPUContext } from '../webgpu/device.js';
import { MAX_ELEMENTS } from './codegen.js';
import { nodeBuiltin } from '../../core/platform.js';

export type GpuJsMode = 'cpu' | 'webasm' | 'webgpu' | 'headlessgl';
export const GPUJS_MODES: readonly GpuJsMode[] = ['webgpu', 'webasm', 'cpu', 'headlessgl'];

// ---- the parts of gpu.js we use (it ships its own typings, but they do not cover the internals we need) ----

interface GpuJsKernelObject {
  constructor: { mode?: string; name: string };
  fallbackReason?: string | null;
  _lastRunPath?: string;
  compiledSource?: string;
}
interface KernelRun {
  (...args: unknown[]): unknown;
  kernel: GpuJsKernelObject;
  destroy(removeCanvasReferences?: boolean): void;
}
interface GpuInstance {
  createKernel(source: string, settings: Record<string, unknown>): KernelRun;
  destroy(): Promise<void> | void;
}
interface GpuJsModule {
  GPU: {
    new (settings: Record<string, unknown>): GpuInstance;
    isHeadlessGLSupported: boolean;
    isWebAssemblySupported: boolean;
  };
}
/** gpu.js's pipeline handle on webgpu (src/backend/web-gpu/buffer-result.js). */
interface WebGPUBufferResult {
  buffer: GPUBuffer & { _refs?: number };
  output: number[];
  componentCount: number;
  context: unknown;
  _deleted: boolean;
  delete(): void;
}
interface WebGPUBufferResultClass {
  new (s: { buffer: GPUBuffer; output: number[]; componentCount?: number; context: unknown; kernel: unknown }): WebGPUBufferResult;
}
/** gpu.js's GL pipeline handle. */
interface GLTexture {
  toArray(): Float32Array | Float32Array[];
  delete(): void;
}

// gpu.js is loaded with Node's require (its CommonJS internals are reached by path); not in browser bundles.
const require = (id: string): unknown => nodeBuiltin<typeof import('node:module')>('node:module', 'the gpu.js backends').createRequire(import.meta.url)(id);
let gpujs: GpuJsModule | null = null;
function loadGpuJs(): GpuJsModule {
  return (gpujs ??= require('gpu.js') as GpuJsModule);
}
/** gpu.js's version, read from its package.json. */
export function gpujsVersion(): string {
  try {
    return (require('gpu.js/package.json') as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

// ---- WebGPU: one Dawn device shared by every gpu.js webgpu backend in the process ----------------------------
// gpu.js keeps a module-level device singleton fed by navigator.gpu. Node has no navigator.gpu, so we install
// one whose adapter hands gpu.js the device acquired by backends/webgpu/device.ts (all adapter limits raised,
// errors captured). It is reference-counted across backends and removed again on the last release, so Dawn
// lets Node exit.

interface WebGpuSession {
  ctx: WebGPUContext;
  /** gpu.js's context object ({adapter, device, isLost}); pipeline handles must carry it. */
  gpujsContext: { device: GPUDevice; isLost: boolean };
  BufferResult: WebGPUBufferResultClass;
  refs: number;
}
let webgpuSession: Promise<WebGpuSession> | null = null;

async function openWebGpu(): Promise<WebGpuSession> {
  if (webgpuSession) {
    const s = await webgpuSession;
    s.refs++;
    return s;
  }
  const p = (async (): Promise<WebGpuSession> => {
    const res = await acquireWebGPU();
    if (!res.ok) throw new BackendError(`WebGPU unavailable: ${res.reason}`);
    const ctx = res;
    const adapter = ctx.adapter;
    const fakeAdapter = {
      limits: adapter.limits,
      features: adapter.features,
      info: adapter.info,
      requestDevice: async () => ctx.device,
    };
    const gpuApi = {
      requestAdapter: async () => fakeAdapter,
      getPreferredCanvasFormat: () => 'rgba8unorm',
    };
    installNavigatorGpu(gpuApi);
    const { WebGPUContext } = require('gpu.js/src/backend/web-gpu/context.js') as { WebGPUContext: { acquire(): Promise<{ device: GPUDevice; isLost: boolean }> } };
    const { WebGPUBufferResult } = require('gpu.js/src/backend/web-gpu/buffer-result.js') as { WebGPUBufferResult: WebGPUBufferResultClass };
    let gpujsContext: { device: GPUDevice; isLost: boolean };
    try {
      gpujsContext = await WebGPUContext.acquire();
    } catch (e) {
      removeNavigatorGpu();
      ctx.destroy();
      throw e;
    }
    if (gpujsContext.device !== ctx.device) throw new BackendError('gpu.js acquired a different WebGPU device than the one provided');
    return { ctx, gpujsContext, BufferResult: WebGPUBufferResult, refs: 1 };
  })();
  webgpuSession = p;
  p.catch(() => {
    if (webgpuSession === p) webgpuSession = null;
  });
  return p;
}

async function closeWebGpu(s: WebGpuSession): Promise<void> {
  if (--s.refs > 0) return;
  webgpuSession = null;
  const { WebGPUContext } = require('gpu.js/src/backend/web-gpu/context.js') as { WebGPUContext: { destroy(): Promise<void> } };
  await WebGPUContext.destroy(); // destroys the shared device (ours) and forgets it
  s.ctx.destroy();
  removeNavigatorGpu();
}

let savedNavigator: { had: boolean; value: unknown } | null = null;
function installNavigatorGpu(gpuApi: object): void {
  const g = globalThis as { navigator?: Record<string, unknown> };
  if (g.navigator) {
    savedNavigator = { had: 'gpu' in g.navigator, value: g.navigator.gpu };
    Object.defineProperty(g.navigator, 'gpu', { value: gpuApi, configurable: true, writable: true });
  } else {
    savedNavigator = null;
    Object.defineProperty(globalThis, 'navigator', {
      value: { gpu: gpuApi, userAgent: `Node.js/${process.versions.node}` },
      configurable: true,
      writable: true,
    });
  }
}
function removeNavigatorGpu(): void {
  const g = globalThis as { navigator?: Record<string, unknown> };
  if (savedNavigator === null) {
    delete g.navigator;
  } else if (g.navigator) {
    if (savedNavigator.had) Object.defineProperty(g.navigator, 'gpu', { value: savedNavigator.value, configurable: true, writable: true });
    else delete g.navigator.gpu;
  }
  savedNavigator = null;
}

// ---- storage ------------------------------------------------------------------------------------------------

/** A tensor's storage: f32 values on the host, or a device handle (see the file header). */
export class GBuf {
  host: Float32Array | null = null;
  dev: WebGPUBufferResult | GLTexture | null = null;
  /** Set when the kernel that should have produced this buffer failed. */
  error: Error | null = null;
  /** free() was called (async modes: the release is queued behind the kernels already issued). */
  freeing = false;
  freed = false;
  constructor(
    readonly dtype: DType,
    readonly size: number,
  ) {}
}

/** A kernel argument: a buffer, a scalar (a uniform), or a small host table (e.g. rope frequencies). */
export type Arg = GBuf | number | Float32Array;

export interface KernelSpec {
  /** Short name for messages, e.g. 'matmul.blocked'. */
  name: string;
  /** Function source (see codegen.ts). */
  source: string;
  /** gpu.js output dims, x first: [x], [x, y] or [x, y, z]. */
  output: number[];
  /** The kernel returns Array(4): the output holds 4·cells values, cell-major. */
  vec4?: boolean;
}

export interface RuntimeOptions {
  mode: GpuJsMode;
  /** webasm only: run under gpu.js's async contract, which splits kernels of ≥ 4096 cells across worker threads. */
  threads?: boolean;
  /** webasm threads: the worker-pool size (default: gpu.js's, the CPU count). */
  poolSize?: number;
  /** Most compiled kernels kept (least recently used ones are destroyed). Default 256. */
  maxKernels?: number;
}

function hostArrayOf(dtype: DType, values: Float32Array): HostArray {
  switch (dtype) {
    case 'f32':
      return values;
    case 'i32':
      return Int32Array.from(values);
    case 'f16':
    case 'bf16':
      return Uint16Array.from(values);
  }
}

export class GpuJsRuntime {
  readonly mode: GpuJsMode;
  readonly threads: boolean;
  /** True when kernel calls return promises (webgpu, webasm with threads): work runs on the queue. */
  readonly async: boolean;
  /** What gpu.js reported when the mode was set up: the kernel class, SIMD/threads, the adapter. */
  description = '';
  /** Why gpu.js degraded something, the last time it tried (null: never). Any degradation is an error here. */
  fallbackReason: string | null = null;
  /** Counters for tests and benchmarks. */
  readonly stats = { compiles: 0, calls: 0, threadedCalls: 0 };
  /** Compiles per kernel name (e.g. 'softmax.max'), for tuning. */
  readonly compilesByName = new Map<string, number>();

  private gpu: GpuInstance | null = null;
  private readonly kernels = new Map<string, KernelRun>();
  private readonly maxKernels: number;
  private tail: Promise<void> = Promise.resolve();
  private webgpu: WebGpuSession | null = null;
  private readonly poolSize: number | undefined;
  private destroyed = false;
  private firstError: Error | null = null;

  private constructor(o: RuntimeOptions) {
    this.mode = o.mode;
    this.threads = o.mode === 'webasm' && !!o.threads;
    this.async = o.mode === 'webgpu' || this.threads;
    this.maxKernels = o.maxKernels ?? 256;
    this.poolSize = o.poolSize;
  }

  /** Sets up the mode and proves it with a probe kernel; throws a BackendError naming the reason when the mode is
   *  unavailable (never falls back to another mode). */
  static async open(o: RuntimeOptions): Promise<GpuJsRuntime> {
    if (!GPUJS_MODES.includes(o.mode)) throw new BackendError(`gpu.js: unknown mode '${String(o.mode)}' (modes: ${GPUJS_MODES.join(', ')})`);
    if (o.threads && o.mode !== 'webasm') throw new BackendError(`gpu.js: threads are a webasm option, not available in mode '${o.mode}'`);
    const rt = new GpuJsRuntime(o);
    try {
      await rt.setUp();
      await rt.probe();
    } catch (e) {
      await rt.destroy().catch(() => {});
      const msg = e instanceof Error ? e.message : String(e);
      throw new BackendError(`gpu.js mode '${o.mode}'${rt.threads ? ' (threads)' : ''} is unavailable: ${msg}`);
    }
    return rt;
  }

  private async setUp(): Promise<void> {
    const { GPU } = loadGpuJs();
    const internals = require('gpu.js/src/backend/web-assembly/kernel.js') as {
      WebAssemblyKernel: { isSIMDSupported: boolean; isThreadsSupported: boolean };
    };
    switch (this.mode) {
      case 'cpu':
        this.description = 'gpu.js cpu (kernels transpiled to JavaScript)';
        break;
      case 'webasm': {
        if (!GPU.isWebAssemblySupported) throw new Error('WebAssembly is not supported by this runtime');
        const simd = internals.WebAssemblyKernel.isSIMDSupported;
        if (!simd) throw new Error('WebAssembly SIMD (f32x4) is not supported by this runtime');
        if (this.threads && !internals.WebAssemblyKernel.isThreadsSupported) {
          throw new Error('WebAssembly threads (shared memory + worker_threads) are not supported by this runtime');
        }
        this.description = `gpu.js webasm (WebAssembly, f32x4 SIMD${this.threads ? `, worker threads under the async contract, pool ${this.poolSize ?? 'default'}` : ', single thread'})`;
        break;
      }
      case 'webgpu': {
        this.webgpu = await openWebGpu();
        this.description = `gpu.js webgpu (WGSL compute) on ${this.webgpu.ctx.summary}`;
        break;
      }
      case 'headlessgl': {
        let reason = '';
        try {
          require('gl');
        } catch (e) {
          reason = `the optional native 'gl' package (headless-gl) is not installed or did not build: ${(e as Error).message.split('\n')[0]}`;
        }
        if (!reason && !GPU.isHeadlessGLSupported) reason = "'gl' is installed but creates no context (no X display? run under xvfb-run)";
        if (reason) throw new Error(reason);
        this.description = 'gpu.js headlessgl (GLSL ES 1.0 through headless-gl/ANGLE)';
        break;
      }
    }
    this.gpu = new GPU({ mode: this.mode });
  }

  /** Runs a scalar and an Array(4) kernel and checks that gpu.js really ran them in the requested mode. */
  private async probe(): Promise<void> {
    const n = 4096;
    const src = 'function (x, s) {\n  return x[this.thread.x] * s + 1.0;\n}';
    const x = this.upload(Float32Array.from({ length: n }, (_, i) => i), 'f32');
    const y = this.alloc(n, 'f32');
    this.run({ name: 'probe', source: src, output: [n] }, [x, 2], y);
    const got = (await this.read(y)) as Float32Array;
    if (got.length !== n || got[5] !== 11 || got[n - 1] !== 2 * (n - 1) + 1) throw new Error(`probe kernel computed wrong values (${got[5]}, ${got[n - 1]})`);
    const v = this.alloc(8, 'f32');
    this.run({ name: 'probe4', source: 'function (x) {\n  const i = this.thread.x;\n  return [x[i], x[i] + 1.0, x[i] + 2.0, x[i] + 3.0];\n}', output: [2], vec4: true }, [x], v);
    const got4 = (await this.read(v)) as Float32Array;
    if (Array.from(got4).join() !== '0,1,2,3,1,2,3,4') throw new Error(`probe Array(4) kernel computed wrong values (${Array.from(got4).join()})`);
    for (const b of [x, y, v]) this.free(b);
    await this.sync();
  }

  // ---- memory ----

  alloc(size: number, dtype: DType): GBuf {
    this.checkSize(size, 'allocate');
    return new GBuf(dtype, size);
  }

  /** Copies host data in (as f32 values; i32 must fit in ±2^24, see the file header). */
  upload(data: HostArray, dtype: DType): GBuf {
    this.checkSize(data.length, 'upload');
    const b = new GBuf(dtype, data.length);
    let values: Float32Array;
    if (data instanceof Float32Array) values = data.slice();
    else {
      if (data instanceof Int32Array) {
        for (let i = 0; i < data.length; i++) {
          const v = data[i]!;
          if (v > MAX_ELEMENTS || v < -MAX_ELEMENTS) {
            throw new DTypeError(`gpujs-${this.mode}: i32 value ${v} at ${i} is outside ±2^24; gpu.js holds i32 tensors as f32 values, exact only up to 2^24`);
          }
        }
      }
      values = Float32Array.from(data);
    }
    if (this.mode === 'webgpu' && values.length > 0) {
      const { gpujsContext, BufferResult } = this.webgpu!;
      const device = gpujsContext.device;
      const U = GPUBufferUsageFlags;
      const buffer = device.createBuffer({ size: values.byteLength, usage: U.STORAGE | U.COPY_SRC | U.COPY_DST });
      device.queue.writeBuffer(buffer, 0, values);
      b.dev = new BufferResult({ buffer, output: [values.length], componentCount: 1, context: gpujsContext, kernel: null });
    } else {
      b.host = values;
    }
    return b;
  }

  /** The values after every queued kernel that writes `b`, as the host array of its dtype. */
  async read(b: GBuf): Promise<HostArray> {
    if (!this.async) return hostArrayOf(b.dtype, this.valuesSync(b));
    // Queue the copy behind every kernel issued so far (so a later in-place write cannot overtake it).
    let copy!: Promise<Float32Array>;
    const step = this.tail.then(() => {
      if (b.error) throw b.error;
      copy = this.startReadback(b);
    });
    this.tail = step.catch(() => {});
    await step;
    return hostArrayOf(b.dtype, await copy);
  }

  readSync(b: GBuf): HostArray {
    if (this.async) throw new BackendError(`gpujs-${this.mode}: kernels run asynchronously in this mode; use await read()`);
    return hostArrayOf(b.dtype, this.valuesSync(b));
  }

  private valuesSync(b: GBuf): Float32Array {
    if (b.error) throw b.error;
    if (b.host) return b.host.slice();
    if (b.dev && this.mode === 'headlessgl') return flattenResult((b.dev as GLTexture).toArray(), b.size).slice();
    return new Float32Array(b.size); // never written: unspecified contents, zeros here
  }

  private startReadback(b: GBuf): Promise<Float32Array> {
    if (b.host) return Promise.resolve(b.host.slice());
    const h = b.dev as WebGPUBufferResult | null;
    if (!h || b.size === 0) return Promise.resolve(new Float32Array(b.size));
    const device = this.webgpu!.gpujsContext.device;
    const bytes = b.size * 4;
    const staging = device.createBuffer({ size: bytes, usage: GPUBufferUsageFlags.MAP_READ | GPUBufferUsageFlags.COPY_DST });
    const enc = device.createCommandEncoder();
    enc.copyBufferToBuffer(h.buffer, 0, staging, 0, bytes);
    device.queue.submit([enc.finish()]);
    return staging.mapAsync(GPUMapModeFlags.READ, 0, bytes).then(
      () => {
        const out = new Float32Array(staging.getMappedRange(0, bytes).slice(0));
        staging.unmap();
        staging.destroy();
        this.webgpu!.ctx.throwIfError();
        return out;
      },
      (e: unknown) => {
        staging.destroy();
        throw e;
      },
    );
  }

  free(b: GBuf): void {
    if (b.freeing) return;
    b.freeing = true;
    // Async modes: kernels queued before the free may still read it, so it goes when they have run.
    const release = () => {
      b.freed = true;
      b.host = null;
      const d = b.dev;
      b.dev = null;
      d?.delete();
    };
    if (this.async) this.tail = this.tail.then(release, release);
    else release();
  }

  /** Waits for every queued kernel; throws the first error a queued kernel hit since the last sync (that error
   *  also stays on the buffers it should have written, so reading them throws it too). */
  async sync(): Promise<void> {
    await this.tail;
    const e = this.firstError;
    this.firstError = null;
    if (e) throw e;
    this.webgpu?.ctx.throwIfError();
  }

  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    await this.tail.catch(() => {});
    for (const k of this.kernels.values()) {
      try {
        k.destroy();
      } catch {
        /* already torn down */
      }
    }
    this.kernels.clear();
    try {
      await this.gpu?.destroy();
    } catch {
      /* ignore */
    }
    this.gpu = null;
    if (this.webgpu) {
      const s = this.webgpu;
      this.webgpu = null;
      await closeWebGpu(s);
    }
  }

  get isSoftwareGpu(): boolean {
    return this.webgpu?.ctx.isSoftware ?? false;
  }

  get webgpuLimits(): Readonly<Record<string, number>> | null {
    return this.webgpu?.ctx.limits ?? null;
  }

  checkSize(size: number, what: string): void {
    if (size > MAX_ELEMENTS) {
      throw new BackendError(`gpujs-${this.mode}: cannot ${what} ${size} elements: gpu.js kernels index in f32, exact only up to 2^24 = ${MAX_ELEMENTS} elements`);
    }
  }

  // ---- kernels ----

  private kernel(spec: KernelSpec): KernelRun {
    const key = `${spec.vec4 ? 'v4' : 's'}|${spec.output.join('x')}|${spec.source}`;
    let k = this.kernels.get(key);
    if (k) {
      this.kernels.delete(key); // LRU: move to the back
      this.kernels.set(key, k);
      return k;
    }
    if (!this.gpu) throw new BackendError(`gpujs-${this.mode}: backend was destroyed`);
    k = this.gpu.createKernel(spec.source, {
      output: spec.output,
      pipeline: this.mode === 'webgpu' || this.mode === 'headlessgl',
      immutable: true,
      asyncMode: this.threads,
      precision: 'single',
      tactic: 'precision',
      loopMaxIterations: 1 << 24,
      ...(this.threads && this.poolSize ? { poolSize: this.poolSize } : {}),
    });
    if (this.mode === 'webasm' && (spec.vec4 || spec.output.length > 1)) {
      // gpu.js shapes such results into nested arrays of per-cell subarray views of one flat buffer (a million
      // small objects for a 1024² Array(4) output); the flat buffer is what this backend keeps anyway.
      (k.kernel as unknown as { _shapeOutput: (data: Float32Array) => Float32Array })._shapeOutput = (data) => data;
    }
    this.stats.compiles++;
    this.compilesByName.set(spec.name, (this.compilesByName.get(spec.name) ?? 0) + 1);
    this.kernels.set(key, k);
    if (this.kernels.size > this.maxKernels) {
      const [oldKey, old] = this.kernels.entries().next().value as [string, KernelRun];
      this.kernels.delete(oldKey);
      // Runs after everything queued so far, so an in-flight call of the old kernel is not torn down under it.
      const drop = () => {
        try {
          old.destroy();
        } catch {
          /* ignore */
        }
      };
      if (this.async) this.tail = this.tail.then(drop, drop);
      else drop();
    }
    return k;
  }

  /** The source gpu.js generated for a kernel (WGSL / JS), after its first call; for tests and debugging. */
  compiledSource(spec: KernelSpec): string | undefined {
    return this.kernels.get(`${spec.vec4 ? 'v4' : 's'}|${spec.output.join('x')}|${spec.source}`)?.kernel.compiledSource;
  }

  /** A kernel call that threw: if gpu.js was degrading it at the time, say so (its CPU fallback failed). */
  private explain(k: KernelRun, spec: KernelSpec, e: unknown): Error {
    const kk = k.kernel as GpuJsKernelObject & { fallbackRequested?: boolean };
    if (kk.fallbackRequested || (kk.constructor.mode && kk.constructor.mode !== this.mode)) {
      this.fallbackReason = kk.fallbackReason ?? 'unknown';
      return new BackendError(`gpujs-${this.mode}: gpu.js cannot run kernel '${spec.name}' in mode '${this.mode}' (${this.fallbackReason}); its attempt to degrade to another backend failed too: ${(e as Error).message}`);
    }
    return e instanceof Error ? e : new Error(String(e));
  }

  private checkMode(k: KernelRun, spec: KernelSpec): void {
    const ran = k.kernel.constructor.mode ?? k.kernel.constructor.name;
    if (ran !== this.mode) {
      this.fallbackReason = k.kernel.fallbackReason ?? `kernel ran on gpu.js '${ran}'`;
      throw new BackendError(`gpujs-${this.mode}: gpu.js degraded kernel '${spec.name}' to its '${ran}' backend (${this.fallbackReason}); refusing to run it outside mode '${this.mode}'`);
    }
  }

  /** Runs `spec` with `args`, writing the result into `out` (replacing what it held: in-place kernels pass the
   *  destination as an argument too). Sync modes run now; async modes queue the call. Errors of queued calls are
   *  stored on `out` and thrown by read()/sync(). */
  run(spec: KernelSpec, args: readonly Arg[], out: GBuf): void {
    const cells = spec.output.reduce((a, b) => a * b, 1);
    if (cells === 0) return;
    if (this.destroyed) throw new BackendError(`gpujs-${this.mode}: backend was destroyed`);
    const k = this.kernel(spec);
    this.stats.calls++;
    if (!this.async) {
      const vals = args.map((a) => this.argValue(a, spec));
      let r: unknown;
      try {
        r = k(...vals);
      } catch (e) {
        throw this.explain(k, spec, e);
      }
      this.checkMode(k, spec);
      this.setResult(k, out, r, spec, cells);
      return;
    }
    const step = this.tail.then(async () => {
      const vals = args.map((a) => this.argValue(a, spec));
      let r: unknown;
      try {
        r = await (k(...vals) as Promise<unknown>);
      } catch (e) {
        throw this.explain(k, spec, e);
      }
      this.checkMode(k, spec);
      if (k.kernel._lastRunPath === 'threaded') this.stats.threadedCalls++;
      this.setResult(k, out, r, spec, cells);
    });
    this.tail = step.catch((e: unknown) => {
      out.error = e instanceof Error ? e : new Error(String(e));
      this.firstError ??= out.error;
    });
  }

  private argValue(a: Arg, spec: KernelSpec): unknown {
    if (!(a instanceof GBuf)) return a;
    if (a.error) throw a.error;
    if (a.freed) throw new BackendError(`gpujs-${this.mode}: kernel '${spec.name}' was given a freed buffer`);
    const v = a.dev ?? a.host;
    if (!v) {
      // Never written (allocated, then read as input): unspecified contents, zeros here.
      a.host = new Float32Array(a.size);
      return a.host;
    }
    return v;
  }

  private setResult(k: KernelRun, out: GBuf, r: unknown, spec: KernelSpec, cells: number): void {
    const n = cells * (spec.vec4 ? 4 : 1);
    const oldDev = out.dev;
    if (this.mode === 'webgpu') {
      let h = r as WebGPUBufferResult;
      if (spec.vec4 || spec.output.length > 1) {
        // Same buffer seen as a flat array of scalars (cell-major, components innermost): what every kernel reads.
        const flat = new this.webgpu!.BufferResult({ buffer: h.buffer, output: [n], componentCount: 1, context: h.context, kernel: null });
        h.delete();
        h = flat;
      }
      out.dev = h;
      out.host = null;
      // gpu.js's kernel keeps its own reference to its last output buffer until its next call; let the handle be
      // the only owner, so freeing the tensor frees the buffer (else every cached kernel pins one output).
      const kk = k.kernel as GpuJsKernelObject & { outputBuffer?: (GPUBuffer & { _refs?: number }) | null; bindGroupDirty?: boolean };
      if (kk.outputBuffer) {
        if (--kk.outputBuffer._refs! === 0) kk.outputBuffer.destroy();
        kk.outputBuffer = null;
        kk.bindGroupDirty = true;
      }
    } else if (this.mode === 'headlessgl') {
      out.dev = r as GLTexture;
      out.host = null;
    } else {
      out.host = flattenResult(r, n);
      out.dev = null;
    }
    if (oldDev && oldDev !== out.dev) oldDev.delete();
  }

  /** Runs `fn` after everything queued so far (async modes) or now (sync modes). */
  after(fn: () => void): void {
    if (this.async) this.tail = this.tail.then(fn, fn);
    else fn();
  }
}

/** The flat Float32Array behind a gpu.js result: a typed array, or nested arrays of views onto one buffer (webasm
 *  shapes multi-dimensional and Array(n) results as subarrays of a single fresh buffer). */
function flattenResult(r: unknown, n: number): Float32Array {
  if (r instanceof Float32Array) return r.length === n ? r : r.subarray(0, n);
  let leaf: unknown = r;
  while (Array.isArray(leaf)) leaf = leaf[0];
  if (leaf instanceof Float32Array && leaf.buffer.byteLength >= leaf.byteOffset + n * 4) {
    // webasm: views onto one fresh buffer, the first leaf starts the data
    return new Float32Array(leaf.buffer, leaf.byteOffset, n);
  }
  // cpu mode: separately allocated rows / Array(n) cells; gather them (result marshalling, no arithmetic)
  const out = new Float32Array(n);
  let at = 0;
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) for (const x of v) walk(x);
    else if (v instanceof Float32Array) {
      out.set(v, at);
      at += v.length;
    } else if (typeof v === 'number') out[at++] = v;
    else throw new BackendError(`gpu.js returned a result this backend cannot flatten (${Object.prototype.toString.call(v)})`);
  };
  walk(r);
  if (at !== n) throw new BackendError(`gpu.js returned ${at} values where ${n} were expected`);
  return out;
}
