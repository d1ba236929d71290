// The WebGPU backend: every op as a WGSL kernel (backends/webgpu/kernels), tensors in GPU buffers, work encoded
// into batched command buffers (runtime.ts). Ops it cannot run are refused by supports() with a reason; it never
// computes anything on the CPU.

import {
  type Backend,
  type BackendInfo,
  type KernelAttrs,
  type KernelInputs,
  type OpName,
  SUPPORTED,
  type Support,
  unsupported,
} from '../../core/backend.js';
import { bytesPerElement, checkHostArray, DTYPES, type DType, type HostArray } from '../../core/dtype.js';
import { BackendError } from '../../core/errors.js';
import { Tensor } from '../../core/tensor.js';
import { acquireWebGPU, type AcquireOptions, type WebGPUContext } from './device.js';
import { GpuRuntime, GpuStorage, type RuntimeOptions } from './runtime.js';
import type { KernelEnv } from './kernels/common.js';
import * as ew from './kernels/elementwise.js';
import * as mm from './kernels/matmul.js';
import * as nrm from './kernels/norm.js';
import * as lay from './kernels/layout.js';
import * as gat from './kernels/gather.js';
import * as att from './kernels/attention.js';
import * as vis from './kernels/vision.js';

export interface WebGPUBackendOptions extends RuntimeOptions {
  /** Registry name (default 'webgpu'). */
  name?: string;
  /** Pad every allocation with this many sentinel words before and after (rounded up to the binding alignment);
   *  checkGuards() reports the damaged ones. Debug only: it disables size-class pooling. */
  guardWords?: number;
  /** Lower the per-binding byte limit below the device's maxStorageBufferBindingSize (tests of the split paths). */
  maxBindingBytes?: number;
  /** Use subgroup kernels when the adapter has them (default true). false forces the portable kernels. */
  subgroups?: boolean;
  /** Dispatches per submitted command buffer (default 256). */
  maxBatch?: number;
  /** Bytes of freed buffers kept for reuse (default 512 MiB). */
  poolBytes?: number;
  /** Bytes of texture copies of GEMV weights to keep (default 1 GiB on software adapters, else 0; 0 = off).
   *  On lavapipe a texture read is vectorised while a storage-buffer read is a per-lane loop, so a decode GEMV
   *  reads a texture copy of its weight ~1.7× faster per CPU-second — at the cost of a second copy of the weight. */
  textureWeightBytes?: number;
  /** Options for device acquisition. */
  acquire?: AcquireOptions;
  /** Use this already-acquired context instead of acquiring one; destroy() then leaves it alive. */
  context?: WebGPUContext;
}

const HOST_ARRAY_FOR: Record<DType, (b: ArrayBuffer, n: number) => HostArray> = {
  f32: (b, n) => new Float32Array(b, 0, n),
  i32: (b, n) => new Int32Array(b, 0, n),
  f16: (b, n) => new Uint16Array(b, 0, n),
  bf16: (b, n) => new Uint16Array(b, 0, n),
};

export class WebGPUBackend implements Backend {
  readonly name: string;
  readonly rt: GpuRuntime;
  private readonly env: KernelEnv;
  private readonly ownsContext: boolean;
  private destroyedFlag = false;

  constructor(
    readonly ctx: WebGPUContext,
    opts: WebGPUBackendOptions = {},
    ownsContext = true,
  ) {
    this.name = opts.name ?? 'webgpu';
    this.rt = new GpuRuntime(ctx, { ...opts, name: this.name });
    this.env = { rt: this.rt, caps: this.rt.caps };
    this.ownsContext = ownsContext;
  }

  info(): BackendInfo {
    const i = this.ctx.info;
    const sg = this.rt.caps.subgroups ? `subgroups ${this.rt.caps.sgSize}` : 'no subgroup kernels';
    return {
      name: this.name,
      device: 'gpu',
      software: this.ctx.isSoftware,
      description: `WebGPU (Dawn) on ${i.description || i.device || 'unknown adapter'} [${i.vendor || '?'}/${i.architecture || '?'}; ${sg}; maxStorageBufferBindingSize ${this.rt.caps.maxBindingBytes}]`,
      dtypes: DTYPES,
      maxBufferBytes: this.rt.caps.maxBufferSize,
    };
  }

  /** The adapter as Dawn describes it (vendor, architecture, device, description, fallback flag, subgroup sizes). */
  get adapter(): WebGPUContext['info'] {
    return this.ctx.info;
  }

  // ---- memory ---------------------------------------------------------------------------------------------

  alloc(size: number, dtype: DType): GpuStorage {
    return this.rt.allocStorage(size, dtype);
  }

  upload(data: HostArray, dtype: DType): GpuStorage {
    checkHostArray(data, dtype, `${this.name}.upload`);
    const st = this.rt.allocStorage(data.length, dtype, 'upload');
    try {
      this.rt.write(st, data);
    } catch (e) {
      this.rt.freeStorage(st);
      throw e;
    }
    return st;
  }

  async read(storage: unknown, dtype: DType, size: number): Promise<HostArray> {
    const st = storage as GpuStorage;
    if (!(st instanceof GpuStorage)) throw new BackendError(`${this.name}.read: not a storage handle of this backend`);
    if (size > st.size) throw new BackendError(`${this.name}.read: ${size} elements requested from a ${st.size}-element storage`);
    const raw = await this.rt.read(st, `reading a ${st.size}×${st.dtype} tensor`);
    const arr = HOST_ARRAY_FOR[dtype](raw, size);
    return arr;
  }

  free(storage: unknown): void {
    this.rt.freeStorage(storage as GpuStorage);
  }

  async sync(): Promise<void> {
    await this.rt.sync();
  }

  async destroy(): Promise<void> {
    if (this.destroyedFlag) return;
    this.destroyedFlag = true;
    await this.rt.destroy();
    if (this.ownsContext) this.ctx.destroy();
  }

  /** Bytes held by live tensors and by the buffer pool; texture copies of live tensors and pooled textures. */
  memory(): { liveBytes: number; pooledBytes: number; liveTensors: number; textureBytes: number; pooledTextureBytes: number } {
    return this.rt.memory();
  }

  /** Guard mode: every damaged guard word so far (empty when all intact or when guards are off). */
  checkGuards(): Promise<string[]> {
    return this.rt.checkGuards();
  }

  // ---- capability -----------------------------------------------------------------------------------------

  supports<K extends OpName>(op: K, out: Tensor, inputs: KernelInputs<K>, attrs: KernelAttrs<K>): Support {
    if (this.destroyedFlag) return unsupported('the backend was destroyed');
    const why = this.whyNot(op, out, inputs as readonly (Tensor | null)[], attrs);
    return why === null ? SUPPORTED : unsupported(why);
  }

  private whyNot(op: OpName, out: Tensor, inputs: readonly (Tensor | null)[], attrs: unknown): string | null {
    for (const t of [out, ...inputs]) {
      if (t && !(t.storage instanceof GpuStorage)) return `tensor #${t.id} does not live on this backend`;
    }
    const env = this.env;
    const limit = this.rt.caps.maxBindingBytes;
    const tooBig = (ts: readonly (Tensor | null)[]): string | null => {
      for (const t of ts) {
        if (t && !this.rt.fitsBinding(t.dtype, t.size)) {
          return `a ${t.dtype} tensor of shape [${t.shape.join(', ')}] (${t.size * bytesPerElement(t.dtype)} bytes) exceeds maxStorageBufferBindingSize (${limit} bytes) and '${op}' has no split path for it`;
        }
      }
      return null;
    };
    switch (op) {
      case 'matmul':
        return mm.whyNot(env, out, inputs as KernelInputs<'matmul'>, attrs as KernelAttrs<'matmul'>);
      case 'embedding':
        return gat.embeddingWhyNot(env, out, inputs as KernelInputs<'embedding'>);
      case 'unary':
      case 'scale':
      case 'swiglu':
      case 'cast':
      case 'copy':
        return null; // flat ops split into binding-sized ranges
      case 'binary':
        return ew.binaryFits(env, out, inputs[0]!, inputs[1]!) ? ew.binaryWhyNot(out, inputs[0]!, inputs[1]!) : tooBig([out, ...inputs]);
      case 'transpose':
        return tooBig([out, ...inputs]) ?? lay.transposeWhyNot(out, inputs[0]!, (attrs as KernelAttrs<'transpose'>).perm);
      case 'slice':
        return tooBig([out, ...inputs]) ?? lay.sliceWhyNot(out, inputs[0]!);
      case 'attention':
        return tooBig([out, ...inputs]) ?? att.whyNot(env, out, inputs as KernelInputs<'attention'>, attrs as KernelAttrs<'attention'>);
      case 'softmax':
        return tooBig([out, ...inputs]) ?? lay.rankCheck(out, op);
      default:
        return tooBig([out, ...inputs]);
    }
  }

  // ---- kernels --------------------------------------------------------------------------------------------

  matmul(out: Tensor, inputs: KernelInputs<'matmul'>, attrs: KernelAttrs<'matmul'>): void {
    mm.matmul(this.env, out, inputs, attrs);
  }
  binary(out: Tensor, inputs: KernelInputs<'binary'>, attrs: KernelAttrs<'binary'>): void {
    ew.binary(this.env, out, inputs, attrs);
  }
  unary(out: Tensor, inputs: KernelInputs<'unary'>, attrs: KernelAttrs<'unary'>): void {
    ew.unary(this.env, out, inputs, attrs);
  }
  scale(out: Tensor, inputs: KernelInputs<'scale'>, attrs: KernelAttrs<'scale'>): void {
    ew.scale(this.env, out, inputs, attrs);
  }
  swiglu(out: Tensor, inputs: KernelInputs<'swiglu'>): void {
    ew.swiglu(this.env, out, inputs);
  }
  softmax(out: Tensor, inputs: KernelInputs<'softmax'>): void {
    nrm.softmax(this.env, out, inputs);
  }
  layerNorm(out: Tensor, [x, gamma, beta]: KernelInputs<'layerNorm'>, { eps }: KernelAttrs<'layerNorm'>): void {
    nrm.norm(this.env, out, x, gamma, beta, null, null, 'layer', eps);
  }
  rmsNorm(out: Tensor, [x, gamma]: KernelInputs<'rmsNorm'>, { eps }: KernelAttrs<'rmsNorm'>): void {
    nrm.norm(this.env, out, x, gamma, null, null, null, 'rms', eps);
  }
  modulatedNorm(out: Tensor, [x, gamma, beta, dGamma, dBeta]: KernelInputs<'modulatedNorm'>, { kind, eps }: KernelAttrs<'modulatedNorm'>): void {
    nrm.norm(this.env, out, x, gamma, beta, dGamma, dBeta, kind, eps);
  }
  rope(out: Tensor, inputs: KernelInputs<'rope'>, attrs: KernelAttrs<'rope'>): void {
    nrm.rope(this.env, out, inputs, attrs);
  }
  attention(out: Tensor, inputs: KernelInputs<'attention'>, attrs: KernelAttrs<'attention'>): void {
    const [q, k, v, mask] = inputs;
    if (k.dtype !== 'f32') {
      // Packed K/V (LaVi's bf16/f16 K/U): widened into f32 temporaries by the cast kernel, then the f32 kernels.
      const wide = (t: Tensor): Tensor => {
        const w = Tensor.fromStorage(this, t.shape, 'f32', this.alloc(t.size, 'f32'));
        this.cast(w, [t]);
        return w;
      };
      const kw = wide(k), vw = wide(v);
      try {
        att.attention(this.env, out, [q, kw, vw, mask], attrs);
      } finally {
        kw.dispose();
        vw.dispose();
      }
      return;
    }
    att.attention(this.env, out, inputs, attrs);
  }
  embedding(out: Tensor, inputs: KernelInputs<'embedding'>): void {
    gat.embedding(this.env, out, inputs);
  }
  transpose(out: Tensor, inputs: KernelInputs<'transpose'>, attrs: KernelAttrs<'transpose'>): void {
    lay.transpose(this.env, out, inputs, attrs);
  }
  slice(out: Tensor, inputs: KernelInputs<'slice'>, attrs: KernelAttrs<'slice'>): void {
    lay.slice(this.env, out, inputs, attrs);
  }
  concat(out: Tensor, inputs: KernelInputs<'concat'>, attrs: KernelAttrs<'concat'>): void {
    lay.concat(this.env, out, inputs, attrs);
  }
  writeSlice(out: Tensor, inputs: KernelInputs<'writeSlice'>, attrs: KernelAttrs<'writeSlice'>): void {
    lay.writeSlice(this.env, out, inputs, attrs);
  }
  copy(out: Tensor, inputs: KernelInputs<'copy'>): void {
    lay.copy(this.env, out, inputs);
  }
  patchEmbed(out: Tensor, inputs: KernelInputs<'patchEmbed'>, attrs: KernelAttrs<'patchEmbed'>): void {
    vis.patchEmbed(this.env, out, inputs, attrs);
  }
  resizeGrid(out: Tensor, inputs: KernelInputs<'resizeGrid'>, attrs: KernelAttrs<'resizeGrid'>): void {
    vis.resizeGrid(this.env, out, inputs, attrs);
  }
  argmax(out: Tensor, inputs: KernelInputs<'argmax'>): void {
    gat.argmax(this.env, out, inputs);
  }
  cast(out: Tensor, inputs: KernelInputs<'cast'>): void {
    gat.cast(this.env, out, inputs);
  }
}

/**
 * Creates a WebGPU backend on the first adapter Dawn finds (or on `opts.context`). Throws a BackendError when
 * there is no usable adapter, naming the reason (no Vulkan driver, no adapter, device creation failure).
 */
export async function createWebGPUBackend(opts: WebGPUBackendOptions = {}): Promise<WebGPUBackend> {
  if (opts.context) return new WebGPUBackend(opts.context, opts, false);
  const r = await acquireWebGPU({ optionalFeatures: ['shader-f16', 'subgroups'], ...opts.acquire });
  if (!r.ok) throw new BackendError(`webgpu: no usable WebGPU adapter: ${r.reason}`);
  try {
    return new WebGPUBackend(r, opts, true);
  } catch (e) {
    r.destroy();
    throw e;
  }
}
