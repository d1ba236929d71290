// The WebGPU runtime under the backend: buffers (a pool keyed by size class, optional guard regions), command
// batching (kernels only encode into one compute pass; work is submitted when a read/sync needs it, when a batch
// is large, or when an upload would race with encoded work), a pipeline cache keyed on the shader text, a uniform
// arena (one slot per dispatch, bound with a dynamic offset), bind-group caching, and error collection (error
// scopes around pipeline and buffer creation, uncaptured errors and device loss from the context), surfaced as
// BackendErrors at the next synchronisation point — or at once, for a lost device. Storages carry a write version,
// which lets derived texture copies of GEMV weights (textureMirror) follow in-place writes.

import { bytesPerElement, type DType } from '../../core/dtype.js';
import { BackendError } from '../../core/errors.js';
import { GPUBufferUsageFlags as U, GPUMapModeFlags, type WebGPUContext } from './device.js';
import type { ParamLayout, ParamValues } from './params.js';

export interface Caps {
  /** Subgroup kernels are usable: the feature is on and the subgroup size is fixed (min = max) and ≥ 8. */
  subgroups: boolean;
  /** The fixed subgroup size (the workgroup size of every subgroup kernel), or 0. */
  sgSize: number;
  f16: boolean;
  /** Largest storage binding in bytes (the device limit, or a lower test override). */
  maxBindingBytes: number;
  maxBufferSize: number;
  offsetAlign: number;
  uniformAlign: number;
  maxWorkgroupsPerDim: number;
  maxWorkgroupStorage: number;
  maxInvocations: number;
  maxStorageBuffers: number;
}

/** A GPU buffer as the pool knows it. */
export interface PooledBuffer {
  readonly buffer: GPUBuffer;
  readonly id: number;
  readonly capacity: number;
  /** Serial of the batch that last referenced it (encoded, maybe not yet submitted). */
  lastBatch: number;
  /** Guard mode: byte length of each guard region and of the data between them. */
  guardBytes: number;
}

let nextStorageId = 1;

/** What a tensor's storage handle is on this backend. */
export class GpuStorage {
  readonly id = nextStorageId++;
  released = false;
  constructor(
    readonly buf: PooledBuffer,
    readonly dtype: DType,
    /** Elements. */
    readonly size: number,
    /** Data bytes rounded up to whole 4-byte words (odd-length f16/bf16 tensors get a padding half). */
    readonly bytes: number,
    /** Byte offset of the data inside the buffer (the leading guard in guard mode, else 0). */
    readonly offset: number,
  ) {}
  /** Bumped by every write (upload, copy, kernel output): derived copies (texture mirrors) record the version
   *  they were made from and are refreshed when it changed. */
  version = 0;
  /** Texture copy of the data (rgba32float / rgba32uint), made on demand by GpuRuntime.textureMirror (GEMV weights). */
  mirror: TexMirror | null = null;
  get buffer(): GPUBuffer {
    return this.buf.buffer;
  }
}

/** A binding of (part of) a storage: what a dispatch sees as one `array<…>`. */
export interface View {
  readonly storage: GpuStorage;
  readonly offset: number;
  readonly size: number;
  /** Element (of the storage dtype) index inside the binding where the requested range starts. */
  readonly elemOffset: number;
}

/** 'r'/'w': storage buffer (read-only / read-write); 't' / 'u': read-only rgba32float / rgba32uint 2-D array
 *  storage texture. */
export type BindingKind = 'r' | 'w' | 't' | 'u';

/** A [rows, cols] matrix as a 2-D array texture with 16-byte texels (rgba32float for f32, 4 elements per texel;
 *  rgba32uint for f16/bf16, 8 packed halves): texel (q, r % rowsPerLayer) of layer ⌊r / rowsPerLayer⌋ holds
 *  texel q of row r. Rows are 256-byte multiples (cols a multiple of 64 f32 or 128 halves). */
export interface TexMirror {
  readonly id: number;
  readonly texture: GPUTexture;
  readonly view: GPUTextureView;
  readonly rows: number;
  readonly cols: number;
  readonly rowsPerLayer: number;
  readonly bytes: number;
  /** Shape and format key of the texture (the pool's). */
  readonly poolKey: string;
  version: number;
  lastBatch: number;
}

/** A texture kept for reuse after its mirror was released (same shape and format: a later mirror takes it, with
 *  its id, so cached bind groups stay valid). */
interface PooledTexture {
  readonly id: number;
  readonly texture: GPUTexture;
  readonly view: GPUTextureView;
  readonly bytes: number;
  lastBatch: number;
}

/** A texture binding of a dispatch. */
export interface TexView {
  readonly tex: TexMirror;
}

function isTex(v: View | TexView): v is TexView {
  return (v as TexView).tex !== undefined;
}

export interface Pipe {
  readonly pipeline: GPUComputePipeline;
  readonly bgl: GPUBindGroupLayout;
  readonly layoutKey: string;
  readonly bindings: readonly BindingKind[];
  readonly params: ParamLayout;
  readonly label: string;
}

export interface PipeSpec {
  label: string;
  code: string;
  bindings: readonly BindingKind[];
  params: ParamLayout;
}

export interface RuntimeOptions {
  guardWords?: number;
  maxBindingBytes?: number;
  subgroups?: boolean;
  maxBatch?: number;
  poolBytes?: number;
  name?: string;
  /** Bytes of texture copies of GEMV weights the runtime may keep (textureMirror); default 1 GiB on software
   *  adapters (lavapipe reads textures with vectorised code but storage buffers lane by lane), 0 elsewhere. */
  textureWeightBytes?: number;
}

export const GUARD_SENTINEL = 0xffbadbad;
const ARENA_BYTES = 1 << 18;

function roundUp(n: number, m: number): number {
  return Math.ceil(n / m) * m;
}

/** Size class for pooled (non-guard) buffers: 256 B minimum, then 4 steps per power of two (≤ 25 % slack);
 *  above 64 MiB, whole MiB (big weights are rarely recycled, so slack there is just waste). */
export function sizeClass(bytes: number): number {
  if (bytes <= 256) return 256;
  if (bytes > 64 * 2 ** 20) return roundUp(bytes, 2 ** 20);
  const p = 2 ** Math.floor(Math.log2(bytes - 1));
  return roundUp(bytes, p / 4);
}

export class GpuRuntime {
  readonly caps: Caps;
  readonly device: GPUDevice;
  private readonly guardBytes: number;
  private readonly maxBatch: number;
  private readonly poolLimit: number;
  private readonly name: string;

  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  /** Serial of the batch being recorded. */
  private serial = 1;
  private dispatches = 0;

  private readonly arena: GPUBuffer;
  private readonly arenaMirror = new ArrayBuffer(ARENA_BYTES);
  private readonly arenaView = new DataView(this.arenaMirror);
  private arenaUsed = 0;

  private readonly pipes = new Map<string, Pipe>();
  private readonly layouts = new Map<string, GPUBindGroupLayout>();
  private readonly pipelineLayouts = new Map<string, GPUPipelineLayout>();
  private bindGroups = new Map<string, GPUBindGroup>();

  private nextBufferId = 1;
  private readonly pool = new Map<number, PooledBuffer[]>();
  private pooledBytes = 0;
  private readonly destroyAfterSubmit: PooledBuffer[] = [];
  /** Every buffer this runtime owns that is not destroyed (for guard checks and destroy()). */
  private readonly owned = new Set<PooledBuffer>();
  readonly live = new Set<GpuStorage>();
  private readonly stagingPool = new Map<number, GPUBuffer[]>();

  private pendingErrors: Promise<string | null>[] = [];
  private dummy: GpuStorage | null = null;
  private readonly textureBudget: number;
  private textureBytes = 0;
  private nextTexId = 1;
  private readonly mirrors = new Set<TexMirror>();
  /** Released mirror textures by shape and format, for the next mirror of that shape: tensors that are new at
   *  every call (prefill K/V, vision attention) then cost one copy, not a texture creation plus a bind group each.
   *  Their bytes stay in textureBytes (the budget) until evicted. */
  private readonly texPool = new Map<string, PooledTexture[]>();
  private texPooledBytes = 0;
  private readonly texDestroyAfterSubmit: GPUTexture[] = [];
  private destroyed = false;
  /** Counters for tests and benchmarks. */
  readonly stats = { submits: 0, dispatches: 0, pipelines: 0, compileMs: 0, buffersCreated: 0, poolHits: 0, bindGroupsCreated: 0 };

  constructor(
    readonly ctx: WebGPUContext,
    opts: RuntimeOptions,
  ) {
    this.device = ctx.device;
    this.name = opts.name ?? 'webgpu';
    const L = ctx.limits;
    const info = ctx.info;
    const sgFeature = ctx.features.has('subgroups');
    const sgMin = info.subgroupMinSize ?? 0;
    const sgMax = info.subgroupMaxSize ?? 0;
    const sgOk = opts.subgroups !== false && sgFeature && sgMin === sgMax && sgMin >= 8 && (sgMin & (sgMin - 1)) === 0 && sgMin <= (L.maxComputeInvocationsPerWorkgroup ?? 256);
    const deviceBinding = L.maxStorageBufferBindingSize ?? 134217728;
    const align = L.minStorageBufferOffsetAlignment ?? 256;
    let maxBinding = deviceBinding;
    if (opts.maxBindingBytes !== undefined) {
      if (!(opts.maxBindingBytes >= 4096)) throw new BackendError(`${this.name}: maxBindingBytes must be at least 4096, got ${opts.maxBindingBytes}`);
      maxBinding = Math.min(deviceBinding, opts.maxBindingBytes);
    }
    maxBinding = Math.floor(maxBinding / 256) * 256;
    this.caps = {
      subgroups: sgOk,
      sgSize: sgOk ? sgMin : 0,
      f16: ctx.hasF16,
      maxBindingBytes: maxBinding,
      maxBufferSize: L.maxBufferSize ?? 268435456,
      offsetAlign: align,
      uniformAlign: Math.max(16, L.minUniformBufferOffsetAlignment ?? 256),
      maxWorkgroupsPerDim: L.maxComputeWorkgroupsPerDimension ?? 65535,
      maxWorkgroupStorage: L.maxComputeWorkgroupStorageSize ?? 16384,
      maxInvocations: L.maxComputeInvocationsPerWorkgroup ?? 256,
      maxStorageBuffers: L.maxStorageBuffersPerShaderStage ?? 8,
    };
    const gw = opts.guardWords ?? 0;
    if (!Number.isInteger(gw) || gw < 0) throw new BackendError(`${this.name}: guardWords must be a non-negative integer, got ${gw}`);
    // Guards are whole alignment units so that the data (and every binding of it) stays aligned.
    this.guardBytes = gw > 0 ? roundUp(gw * 4, Math.max(256, align)) : 0;
    this.maxBatch = opts.maxBatch ?? 256;
    this.poolLimit = opts.poolBytes ?? 512 * 2 ** 20;
    this.textureBudget = opts.textureWeightBytes ?? (ctx.isSoftware ? 2 ** 30 : 0);
    this.arena = this.device.createBuffer({ label: `${this.name}.uniforms`, size: ARENA_BYTES, usage: U.UNIFORM | U.COPY_DST });
  }

  get guarded(): boolean {
    return this.guardBytes > 0;
  }

  // ---- errors ---------------------------------------------------------------------------------------------

  /** Throws at once if the device is lost or the runtime destroyed. */
  alive(what: string): void {
    if (this.destroyed) throw new BackendError(`${this.name}: ${what} after destroy()`);
    for (const e of this.ctx.errors) {
      if (/device lost/i.test(e.message)) throw new BackendError(`${this.name}: ${what}: ${e.message}`);
    }
  }

  private scoped<T>(what: string, fn: () => T): T {
    const d = this.device;
    d.pushErrorScope('internal');
    d.pushErrorScope('out-of-memory');
    d.pushErrorScope('validation');
    let out: T;
    try {
      out = fn();
    } finally {
      const pops = [d.popErrorScope(), d.popErrorScope(), d.popErrorScope()];
      this.pendingErrors.push(
        Promise.all(pops).then(
          (errs) => {
            const e = errs.find((x) => x);
            return e ? `${what}: ${e.constructor?.name && e.constructor.name !== 'Object' ? e.constructor.name : 'GPUError'}: ${e.message}` : null;
          },
          (e: unknown) => `${what}: ${(e as Error)?.message ?? String(e)}`,
        ),
      );
    }
    return out;
  }

  /** Awaits the error scopes opened so far and the context's stored errors; throws the first as a BackendError. */
  async checkErrors(what: string): Promise<void> {
    const pending = this.pendingErrors;
    this.pendingErrors = [];
    const msgs = (await Promise.all(pending)).filter((m): m is string => m !== null);
    for (const e of this.ctx.takeErrors()) msgs.push(e.message);
    if (msgs.length) {
      const more = msgs.length > 1 ? ` (and ${msgs.length - 1} more: ${msgs.slice(1, 4).join(' | ')})` : '';
      throw new BackendError(`${this.name}: ${what}: ${msgs[0]}${more}`);
    }
  }

  // ---- buffers --------------------------------------------------------------------------------------------

  private createBuffer(capacity: number, label: string): PooledBuffer {
    if (capacity > this.caps.maxBufferSize) {
      throw new BackendError(
        `${this.name}: cannot allocate ${capacity} bytes for ${label}: over the device's maxBufferSize (${this.caps.maxBufferSize} bytes)`,
      );
    }
    const guarded = this.guardBytes > 0;
    const buffer = this.scoped(`creating a ${capacity}-byte buffer for ${label}`, () =>
      this.device.createBuffer({ label, size: capacity, usage: U.STORAGE | U.COPY_SRC | U.COPY_DST, mappedAtCreation: guarded }),
    );
    if (guarded) {
      new Uint32Array(buffer.getMappedRange()).fill(GUARD_SENTINEL);
      buffer.unmap();
    }
    this.stats.buffersCreated++;
    const pb: PooledBuffer = { buffer, id: this.nextBufferId++, capacity, lastBatch: 0, guardBytes: this.guardBytes };
    this.owned.add(pb);
    return pb;
  }

  /** Storage for `size` elements of `dtype` (contents unspecified). */
  allocStorage(size: number, dtype: DType, label = 'tensor'): GpuStorage {
    this.alive('alloc');
    if (!Number.isSafeInteger(size) || size < 0) throw new BackendError(`${this.name}: invalid allocation size ${size}`);
    const bytes = roundUp(size * bytesPerElement(dtype), 4);
    const g = this.guardBytes;
    // Without guards, bindings are rounded up to 16 bytes (vec4 arrays), so the buffer has room for that.
    const capacity = g > 0 ? g + bytes + g : sizeClass(Math.max(16, roundUp(bytes, 16)));
    const pb = this.takeFromPool(capacity) ?? this.createBuffer(capacity, `${this.name}.${label}[${size}×${dtype}]`);
    const st = new GpuStorage(pb, dtype, size, bytes, g);
    this.live.add(st);
    return st;
  }

  private takeFromPool(capacity: number): PooledBuffer | null {
    const list = this.pool.get(capacity);
    const pb = list?.pop();
    if (!pb) return null;
    this.pooledBytes -= pb.capacity;
    this.stats.poolHits++;
    return pb;
  }

  freeStorage(st: GpuStorage): void {
    if (st.released) return;
    st.released = true;
    this.live.delete(st);
    if (this.destroyed) return;
    if (st.mirror) {
      this.releaseMirror(st.mirror);
      st.mirror = null;
    }
    const pb = st.buf;
    if (this.pooledBytes + pb.capacity > this.poolLimit) {
      if (pb.lastBatch === this.serial) this.destroyAfterSubmit.push(pb);
      else this.destroyBuffer(pb);
      return;
    }
    let list = this.pool.get(pb.capacity);
    if (!list) this.pool.set(pb.capacity, (list = []));
    list.push(pb);
    this.pooledBytes += pb.capacity;
  }

  private destroyBuffer(pb: PooledBuffer): void {
    this.owned.delete(pb);
    pb.buffer.destroy();
    this.bindGroups.clear();
  }

  /** A mirror's storage is freed or seen with another shape: its texture goes to the pool (up to a quarter of the
   *  budget), else is destroyed. Pooling at once is safe even if encoded work still reads it: a later refill is a
   *  copy encoded after that work, and commands of a batch run in order. */
  private releaseMirror(m: TexMirror): void {
    if (!this.mirrors.delete(m)) return;
    if (this.texPooledBytes + m.bytes <= this.textureBudget / 4) {
      let list = this.texPool.get(m.poolKey);
      if (!list) this.texPool.set(m.poolKey, (list = []));
      list.push({ id: m.id, texture: m.texture, view: m.view, bytes: m.bytes, lastBatch: m.lastBatch });
      this.texPooledBytes += m.bytes;
      return;
    }
    this.destroyTexture(m.texture, m.bytes, m.lastBatch);
  }

  private destroyTexture(t: GPUTexture, bytes: number, lastBatch: number): void {
    this.textureBytes -= bytes;
    if (lastBatch === this.serial) {
      this.texDestroyAfterSubmit.push(t);
    } else {
      t.destroy();
      this.bindGroups.clear();
    }
  }

  /** Destroys pooled textures (all of them, or until `need` more bytes fit the budget). */
  private evictTextures(need = Infinity): void {
    for (const [key, list] of this.texPool) {
      while (list.length > 0 && (need === Infinity || this.textureBytes + need > this.textureBudget)) {
        const t = list.pop()!;
        this.texPooledBytes -= t.bytes;
        this.destroyTexture(t.texture, t.bytes, t.lastBatch);
      }
      if (list.length === 0) this.texPool.delete(key);
    }
  }

  /**
   * The texture copy of a [rows, cols] f32/f16/bf16 storage (refreshed if the storage was written since), or null
   * when there is none to be had: textures off or over budget, rows not a multiple of 256 bytes (what
   * copyBufferToTexture wants), or beyond the texture limits. The copy is encoded in the current batch, ahead of its users.
   */
  textureMirror(st: GpuStorage, rows: number, cols: number): TexMirror | null {
    if (this.textureBudget <= 0 || st.dtype === 'i32' || rows * cols !== st.size || rows === 0) return null;
    const bpe = bytesPerElement(st.dtype);
    const L = this.ctx.limits;
    const maxDim = L.maxTextureDimension2D ?? 8192;
    const maxLayers = L.maxTextureArrayLayers ?? 256;
    const w = (cols * bpe) / 16;
    if ((cols * bpe) % 256 !== 0 || w > maxDim || st.offset % 16 !== 0) return null;
    const per = Math.min(rows, maxDim);
    const layers = Math.ceil(rows / per);
    if (layers > maxLayers) return null;
    let m = st.mirror;
    if (!m || m.rows !== rows || m.cols !== cols) {
      // The storage is now seen with another shape: release the old copy.
      if (m) this.releaseMirror(m);
      st.mirror = null;
      const bytes = w * 16 * per * layers;
      const poolKey = `${bpe === 4 ? 'f' : 'u'}${w}x${per}x${layers}`;
      const pooled = this.texPool.get(poolKey)?.pop();
      if (pooled) {
        this.texPooledBytes -= bytes;
        m = { id: pooled.id, texture: pooled.texture, view: pooled.view, rows, cols, rowsPerLayer: per, bytes, poolKey, version: -1, lastBatch: pooled.lastBatch };
      } else {
        if (this.textureBytes + bytes > this.textureBudget) this.evictTextures(bytes);
        if (this.textureBytes + bytes > this.textureBudget) return null;
        const texture = this.scoped(`creating a ${bytes}-byte weight texture`, () =>
          this.device.createTexture({
            label: `${this.name}.mirror#${st.id}`, size: [w, per, layers], format: bpe === 4 ? 'rgba32float' : 'rgba32uint', dimension: '2d',
            usage: 8 /* STORAGE_BINDING */ | 2 /* COPY_DST */,
          }),
        );
        m = { id: this.nextTexId++, texture, view: texture.createView({ dimension: '2d-array' }), rows, cols, rowsPerLayer: per, bytes, poolKey, version: -1, lastBatch: 0 };
        this.textureBytes += bytes;
      }
      this.mirrors.add(m);
      st.mirror = m;
    }
    if (m.version !== st.version) {
      this.alive('texture copy');
      const enc = this.endPass();
      for (let l = 0; l < layers; l++) {
        const r = Math.min(per, rows - l * per);
        enc.copyBufferToTexture({ buffer: st.buffer, offset: st.offset + l * per * cols * bpe, bytesPerRow: cols * bpe, rowsPerImage: per }, { texture: m.texture, origin: [0, 0, l] }, [w, r, 1]);
      }
      st.buf.lastBatch = this.serial;
      m.lastBatch = this.serial;
      m.version = st.version;
      this.dispatches++;
    }
    return m;
  }

  /** Drops every pooled buffer (memory goes back to the driver). */
  trimPool(): void {
    for (const list of this.pool.values()) {
      for (const pb of list) {
        if (pb.lastBatch === this.serial) this.destroyAfterSubmit.push(pb);
        else this.destroyBuffer(pb);
      }
    }
    this.pool.clear();
    this.pooledBytes = 0;
    this.evictTextures();
  }

  /** textureBytes: texture copies of live tensors; pooledTextureBytes: released ones kept for reuse. */
  memory(): { liveBytes: number; pooledBytes: number; liveTensors: number; textureBytes: number; pooledTextureBytes: number } {
    let live = 0;
    for (const s of this.live) live += s.buf.capacity;
    return { liveBytes: live, pooledBytes: this.pooledBytes, liveTensors: this.live.size, textureBytes: this.textureBytes - this.texPooledBytes, pooledTextureBytes: this.texPooledBytes };
  }

  /** Copies host bytes into the storage's data region. */
  write(st: GpuStorage, data: ArrayBufferView, byteOffsetInData = 0): void {
    this.alive('upload');
    // queue.writeBuffer runs before any encoded-but-unsubmitted work: if that work uses this buffer (a recycled
    // one), submit it first so the new contents cannot overtake it.
    if (st.buf.lastBatch === this.serial) this.flush();
    let src = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (src.byteLength % 4 !== 0) {
      const padded = new Uint8Array(roundUp(src.byteLength, 4));
      padded.set(src);
      src = padded;
    }
    if (src.byteLength === 0) return;
    st.version++;
    this.device.queue.writeBuffer(st.buffer, st.offset + byteOffsetInData, src, 0, src.byteLength);
  }

  // ---- views ----------------------------------------------------------------------------------------------

  /**
   * A binding over elements [start, end) of the storage (default: all of it). The binding starts at the
   * alignment boundary at or before `start` (elemOffset says where `start` lies inside it) and is rounded up to
   * 16 bytes (in guard mode it also covers the trailing guard, so stray writes land there and get reported).
   * Throws a BackendError if it would exceed the per-binding limit (callers split first).
   */
  view(st: GpuStorage, start = 0, end = st.size): View {
    if (st.released) throw new BackendError(`${this.name}: storage #${st.id} used after free`);
    const bpe = bytesPerElement(st.dtype);
    const startByte = start * bpe;
    const endByte = roundUp(end * bpe, 4);
    const aligned = Math.floor(startByte / this.caps.offsetAlign) * this.caps.offsetAlign;
    let size: number;
    if (this.guardBytes > 0) {
      // Up to the end of the trailing guard when the range reaches the end of the data.
      size = endByte >= st.bytes ? st.bytes + this.guardBytes - aligned : roundUp(endByte - aligned, 16);
    } else {
      size = Math.min(roundUp(Math.max(endByte - aligned, 16), 16), st.buf.capacity - aligned);
    }
    size = Math.max(16, size);
    if (size > this.caps.maxBindingBytes) {
      throw new BackendError(
        `${this.name}: a binding of ${size} bytes (elements ${start}..${end} of a ${st.size}×${st.dtype} tensor) exceeds ` +
          `maxStorageBufferBindingSize (${this.caps.maxBindingBytes} bytes)`,
      );
    }
    return { storage: st, offset: st.offset + aligned, size, elemOffset: (startByte - aligned) / bpe };
  }

  /** A small zeroed binding for an absent optional input (kernels take the flag from their uniforms, so one
   *  shader serves both cases — fewer variants for lavapipe's LLVM to compile). */
  dummyView(): View {
    if (!this.dummy || this.dummy.released) {
      this.dummy = this.allocStorage(64, 'f32', 'absent-input');
      this.live.delete(this.dummy);
      this.write(this.dummy, new Float32Array(64));
    }
    return this.view(this.dummy);
  }

  /** Bytes a binding of elements [start, end) of a `dtype` tensor would take at worst (alignment slack included). */
  bindingBytes(dtype: DType, start: number, end: number): number {
    const bpe = bytesPerElement(dtype);
    return roundUp(end * bpe, 16) - Math.floor((start * bpe) / this.caps.offsetAlign) * this.caps.offsetAlign + this.guardBytes + 16;
  }

  /** Whether a whole `dtype` tensor of `size` elements fits one binding. */
  fitsBinding(dtype: DType, size: number): boolean {
    return this.bindingBytes(dtype, 0, size) <= this.caps.maxBindingBytes;
  }

  // ---- pipelines ------------------------------------------------------------------------------------------

  private layoutFor(bindings: readonly BindingKind[]): { key: string; bgl: GPUBindGroupLayout; pl: GPUPipelineLayout } {
    const key = bindings.join('');
    let bgl = this.layouts.get(key);
    let pl = this.pipelineLayouts.get(key);
    if (!bgl || !pl) {
      const entries: GPUBindGroupLayoutEntry[] = bindings.map((k, i) => ({
        binding: i,
        visibility: 4 /* GPUShaderStage.COMPUTE */,
        ...(k === 't' || k === 'u'
          ? { storageTexture: { access: 'read-only' as const, format: k === 't' ? ('rgba32float' as const) : ('rgba32uint' as const), viewDimension: '2d-array' as const } }
          : { buffer: { type: k === 'r' ? ('read-only-storage' as const) : ('storage' as const) } }),
      }));
      entries.push({ binding: bindings.length, visibility: 4, buffer: { type: 'uniform', hasDynamicOffset: true } });
      const made = this.scoped(`bind group layout ${key}`, () => {
        const l = this.device.createBindGroupLayout({ label: `${this.name}.bgl.${key}`, entries });
        return { l, p: this.device.createPipelineLayout({ label: `${this.name}.pl.${key}`, bindGroupLayouts: [l] }) };
      });
      bgl = made.l;
      pl = made.p;
      this.layouts.set(key, bgl);
      this.pipelineLayouts.set(key, pl);
    }
    return { key, bgl, pl };
  }

  /** The compute pipeline for a shader, created once per distinct shader text (+ binding layout). */
  pipe(spec: PipeSpec): Pipe {
    const key = `${spec.bindings.join('')}\n${spec.code}`;
    let p = this.pipes.get(key);
    if (p) return p;
    this.alive('pipeline creation');
    const { key: layoutKey, bgl, pl } = this.layoutFor(spec.bindings);
    const t0 = performance.now();
    const pipeline = this.scoped(`compiling kernel '${spec.label}'`, () => {
      const module = this.device.createShaderModule({ label: spec.label, code: spec.code });
      return this.device.createComputePipeline({ label: spec.label, layout: pl, compute: { module, entryPoint: 'main' } });
    });
    const ms = performance.now() - t0;
    this.stats.pipelines++;
    this.stats.compileMs += ms;
    if (typeof process !== 'undefined' && process.env?.LAVI_WEBGPU_TRACE_COMPILE) process.stderr.write(`[webgpu] compiled ${spec.label} in ${ms.toFixed(0)} ms\n`);
    p = { pipeline, bgl, layoutKey, bindings: spec.bindings, params: spec.params, label: spec.label };
    this.pipes.set(key, p);
    return p;
  }

  /** Compiles a pipeline and waits for the result: a BackendError naming the kernel if the shader is invalid. */
  async pipeChecked(spec: PipeSpec): Promise<Pipe> {
    const p = this.pipe(spec);
    await this.checkErrors(`kernel '${spec.label}'`);
    return p;
  }

  // ---- encoding -------------------------------------------------------------------------------------------

  private ensurePass(): GPUComputePassEncoder {
    if (!this.encoder) this.encoder = this.device.createCommandEncoder({ label: `${this.name}.batch${this.serial}` });
    if (!this.pass) this.pass = this.encoder.beginComputePass();
    return this.pass;
  }

  private endPass(): GPUCommandEncoder {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
    if (!this.encoder) this.encoder = this.device.createCommandEncoder({ label: `${this.name}.batch${this.serial}` });
    return this.encoder;
  }

  private bindGroup(p: Pipe, views: readonly (View | TexView)[]): GPUBindGroup {
    let key = `${p.layoutKey}:${p.params.bytes}`;
    for (const v of views) key += isTex(v) ? `|t${v.tex.id}` : `|${v.storage.buf.id}:${v.offset}:${v.size}`;
    let bg = this.bindGroups.get(key);
    if (!bg) {
      if (this.bindGroups.size > 4096) this.bindGroups = new Map();
      const entries: GPUBindGroupEntry[] = views.map((v, i) => ({ binding: i, resource: isTex(v) ? v.tex.view : { buffer: v.storage.buffer, offset: v.offset, size: v.size } }));
      entries.push({ binding: views.length, resource: { buffer: this.arena, offset: 0, size: p.params.bytes } });
      bg = this.device.createBindGroup({ label: p.label, layout: p.bgl, entries });
      this.bindGroups.set(key, bg);
      this.stats.bindGroupsCreated++;
    }
    return bg;
  }

  /** Encodes one dispatch. Nothing runs until the batch is submitted. */
  dispatch(p: Pipe, views: readonly (View | TexView)[], params: ParamValues, groups: readonly [number, number, number]): void {
    this.alive(`kernel '${p.label}'`);
    const [x, y, z] = groups;
    if (x === 0 || y === 0 || z === 0) return;
    const lim = this.caps.maxWorkgroupsPerDim;
    if (x > lim || y > lim || z > lim) {
      throw new BackendError(`${this.name}: kernel '${p.label}' needs ${x}×${y}×${z} workgroups, over maxComputeWorkgroupsPerDimension (${lim})`);
    }
    if (views.length !== p.bindings.length) throw new BackendError(`${this.name}: kernel '${p.label}' takes ${p.bindings.length} bindings, got ${views.length}`);
    for (const v of views) if (!isTex(v) && v.storage.released) throw new BackendError(`${this.name}: kernel '${p.label}' given freed storage #${v.storage.id}`);
    const slotBytes = roundUp(p.params.bytes, this.caps.uniformAlign);
    if (this.arenaUsed + slotBytes > ARENA_BYTES) this.flush();
    const slot = this.arenaUsed;
    p.params.pack(params, this.arenaView, slot);
    this.arenaUsed += slotBytes;
    const bg = this.bindGroup(p, views);
    const pass = this.ensurePass();
    pass.setPipeline(p.pipeline);
    pass.setBindGroup(0, bg, [slot]);
    pass.dispatchWorkgroups(x, y, z);
    views.forEach((v, i) => {
      if (isTex(v)) {
        v.tex.lastBatch = this.serial;
      } else {
        v.storage.buf.lastBatch = this.serial;
        if (p.bindings[i] === 'w') v.storage.version++;
      }
    });
    this.dispatches++;
    this.stats.dispatches++;
    if (this.dispatches >= this.maxBatch) this.flush();
  }

  /** Encodes a buffer-to-buffer copy (ends the current compute pass). */
  copy(src: GpuStorage, srcByte: number, dst: GpuStorage, dstByte: number, bytes: number): void {
    this.alive('copy');
    if (bytes <= 0) return;
    const enc = this.endPass();
    enc.copyBufferToBuffer(src.buffer, src.offset + srcByte, dst.buffer, dst.offset + dstByte, bytes);
    src.buf.lastBatch = this.serial;
    dst.buf.lastBatch = this.serial;
    dst.version++;
    this.dispatches++;
    if (this.dispatches >= this.maxBatch) this.flush();
  }

  /** Submits everything encoded so far. */
  flush(): void {
    if (!this.encoder && this.arenaUsed === 0) return;
    const enc = this.endPass();
    if (this.arenaUsed > 0) this.device.queue.writeBuffer(this.arena, 0, this.arenaMirror, 0, this.arenaUsed);
    this.device.queue.submit([enc.finish()]);
    this.stats.submits++;
    this.encoder = null;
    this.arenaUsed = 0;
    this.dispatches = 0;
    this.serial++;
    for (const pb of this.destroyAfterSubmit.splice(0)) this.destroyBuffer(pb);
    const dead = this.texDestroyAfterSubmit.splice(0);
    for (const t of dead) t.destroy();
    if (dead.length > 0) this.bindGroups.clear();
  }

  private takeStaging(bytes: number): GPUBuffer {
    const cap = sizeClass(bytes);
    const b = this.stagingPool.get(cap)?.pop();
    if (b) return b;
    return this.scoped(`creating a ${cap}-byte readback buffer`, () =>
      this.device.createBuffer({ label: `${this.name}.readback`, size: cap, usage: U.MAP_READ | U.COPY_DST }),
    );
  }

  private giveStaging(b: GPUBuffer): void {
    const cap = b.size;
    let list = this.stagingPool.get(cap);
    if (!list) this.stagingPool.set(cap, (list = []));
    if (list.length < 4) list.push(b);
    else b.destroy();
  }

  /** Reads `bytes` bytes of raw buffer contents at `byteOffset` (absolute, in the buffer) after all queued work. */
  async readRaw(buffer: GPUBuffer, byteOffset: number, bytes: number, what: string): Promise<ArrayBuffer> {
    this.alive(what);
    const n = roundUp(Math.max(bytes, 4), 4);
    const staging = this.takeStaging(n);
    const enc = this.endPass();
    enc.copyBufferToBuffer(buffer, byteOffset, staging, 0, n);
    this.flush();
    try {
      await staging.mapAsync(GPUMapModeFlags.READ, 0, n);
    } catch (e) {
      staging.destroy();
      await this.checkErrors(what);
      throw new BackendError(`${this.name}: ${what}: mapping the readback buffer failed: ${(e as Error)?.message ?? String(e)}`);
    }
    const out = staging.getMappedRange(0, n).slice(0, bytes);
    staging.unmap();
    this.giveStaging(staging);
    await this.checkErrors(what);
    return out;
  }

  async read(st: GpuStorage, what: string): Promise<ArrayBuffer> {
    if (st.released) throw new BackendError(`${this.name}: ${what}: storage #${st.id} was freed`);
    return this.readRaw(st.buffer, st.offset, st.bytes, what);
  }

  async sync(): Promise<void> {
    this.alive('sync');
    this.flush();
    try {
      await this.device.queue.onSubmittedWorkDone();
    } catch (e) {
      await this.checkErrors('sync');
      throw new BackendError(`${this.name}: sync: ${(e as Error)?.message ?? String(e)}`);
    }
    await this.checkErrors('sync');
  }

  // ---- guards ---------------------------------------------------------------------------------------------

  /** Reports every damaged guard word (live tensors and pooled buffers), then re-arms the damaged guards. All
   *  guard regions are copied into one readback buffer, so a check costs one round trip. */
  async checkGuards(): Promise<string[]> {
    if (this.guardBytes === 0) return [];
    this.alive('checkGuards');
    const g = this.guardBytes;
    const owners = new Map<PooledBuffer, GpuStorage>();
    for (const s of this.live) owners.set(s.buf, s);
    const bufs = [...this.owned].filter((pb) => pb.guardBytes > 0);
    if (bufs.length === 0) return [];
    const total = bufs.length * 2 * g;
    const staging = this.scoped('creating the guard readback buffer', () =>
      this.device.createBuffer({ label: `${this.name}.guards`, size: total, usage: U.MAP_READ | U.COPY_DST }),
    );
    const enc = this.endPass();
    bufs.forEach((pb, i) => {
      enc.copyBufferToBuffer(pb.buffer, 0, staging, 2 * i * g, g);
      enc.copyBufferToBuffer(pb.buffer, pb.capacity - g, staging, (2 * i + 1) * g, g);
    });
    this.flush();
    try {
      await staging.mapAsync(GPUMapModeFlags.READ);
    } catch (e) {
      staging.destroy();
      await this.checkErrors('checkGuards');
      throw new BackendError(`${this.name}: checkGuards: ${(e as Error)?.message ?? String(e)}`);
    }
    const all = new Uint32Array(staging.getMappedRange().slice(0));
    staging.unmap();
    staging.destroy();
    await this.checkErrors('checkGuards');
    const reports: string[] = [];
    const words = g / 4;
    bufs.forEach((pb, i) => {
      for (const which of ['leading', 'trailing'] as const) {
        const base = (2 * i + (which === 'leading' ? 0 : 1)) * words;
        let bad = 0;
        let first = -1;
        for (let w = 0; w < words; w++) {
          if (all[base + w] !== GUARD_SENTINEL) {
            bad++;
            if (first < 0) first = w;
          }
        }
        if (bad === 0) continue;
        const st = owners.get(pb);
        const dataBytes = pb.capacity - 2 * g;
        const who = st ? `tensor storage #${st.id} (${st.size}×${st.dtype})` : `pooled buffer #${pb.id} (${dataBytes} data bytes)`;
        const pos = which === 'leading' ? `word ${words - first} before the data` : `word ${first} after the data`;
        reports.push(`${which} guard of ${who}: ${bad} word(s) overwritten, first at ${pos} = 0x${all[base + first]!.toString(16)}`);
        this.device.queue.writeBuffer(pb.buffer, which === 'leading' ? 0 : pb.capacity - g, new Uint32Array(words).fill(GUARD_SENTINEL));
      }
    });
    return reports;
  }

  // ---- teardown -------------------------------------------------------------------------------------------

  async destroy(): Promise<void> {
    if (this.destroyed) return;
    try {
      this.flush();
      await Promise.race([this.device.queue.onSubmittedWorkDone(), new Promise((r) => setTimeout(r, 5000).unref())]);
    } catch {
      /* device may be lost already */
    }
    await Promise.allSettled(this.pendingErrors);
    this.pendingErrors = [];
    this.destroyed = true;
    for (const pb of this.owned) pb.buffer.destroy();
    this.owned.clear();
    for (const m of this.mirrors) m.texture.destroy();
    this.mirrors.clear();
    for (const list of this.texPool.values()) for (const t of list) t.texture.destroy();
    this.texPool.clear();
    this.texPooledBytes = 0;
    this.textureBytes = 0;
    this.pool.clear();
    for (const list of this.stagingPool.values()) for (const b of list) b.destroy();
    this.stagingPool.clear();
    this.arena.destroy();
    this.pipes.clear();
    this.layouts.clear();
    this.pipelineLayouts.clear();
    this.bindGroups.clear();
    this.live.clear();
    this.encoder = null;
    this.pass = null;
  }
}
