// WebGPU device acquisition for the lavi-ts WebGPU backend (Dawn's Node bindings, npm `webgpu`).
//
// acquireWebGPU() creates a Dawn GPU instance, picks an adapter, requests a device with *all* of the adapter's
// limits (the WebGPU defaults are far smaller: e.g. 128 MiB storage bindings, 16 KiB workgroup storage) and
// `shader-f16` when the adapter has it, and wraps everything in a WebGPUContext. It never throws because the
// machine has no usable GPU: it returns { ok: false, reason } instead, so callers can skip or fall back.
//
// Notes on Dawn (webgpu@0.6.2) measured on Debian bookworm with Mesa 25 lavapipe from bookworm-backports:
//   * create([]) needs no options. Dawn enumerates every backend compiled in; on Linux only Vulkan can produce an
//     adapter here, and with no GPU the only Vulkan physical device is lavapipe ("llvmpipe (LLVM 15.0.6, 256
//     bits)"), so the default requestAdapter() returns it; 'backend=vulkan' is not needed (it just narrows the
//     search). 'adapter=<name>' picks one adapter by name; a wrong name makes requestAdapter() reject with the
//     list of available adapters, which is handy for debugging. Options can also come from the environment
//     variable LAVI_DAWN_OPTIONS (whitespace-separated, e.g. "backend=vulkan enable-dawn-features=dump_shaders").
//   * lavapipe reports vendor 'mesa', architecture 'software', device 'llvmpipe-…', description
//     'llvmpipe: Mesa 25… (LLVM …)', info.isFallbackAdapter === true. GPUAdapter.isFallbackAdapter (the old
//     place) does not exist in this Dawn; both are checked.
//   * Without libvulkan1 Dawn prints "Couldn't load Vulkan" and requestAdapter() resolves to null.
//   * Dawn prints "Warning: maxDynamic…PerPipelineLayout artificially reduced …" on stderr for lavapipe; harmless.
//   * The process exits by itself once the device is destroyed and the GPU object is unreferenced (destroy()
//     does both); an acquire + compute + destroy script ends in well under a second.

import { isNode, nodeImport } from '../../core/platform.js';

/** WebGPU's GPUBufferUsage / GPUMapMode flags (fixed by the specification), without touching globalThis. */
export const GPUBufferUsageFlags = Object.freeze({ MAP_READ: 1, MAP_WRITE: 2, COPY_SRC: 4, COPY_DST: 8, UNIFORM: 64, STORAGE: 128 });
export const GPUMapModeFlags = Object.freeze({ READ: 1, WRITE: 2 });

/** The page's WebGPU (navigator.gpu in a browser or a browser's worker), or null where there is none. */
function browserGPU(): GPU | null {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  return nav && nav.gpu ? nav.gpu : null;
}

export interface AcquireOptions {
  /** Options for Dawn's create(), e.g. ['backend=vulkan']. Default: LAVI_DAWN_OPTIONS split on whitespace, else []. */
  dawnOptions?: string[];
  powerPreference?: GPUPowerPreference;
  forceFallbackAdapter?: boolean;
  /** Features to enable when the adapter has them. Default ['shader-f16']. Missing ones are silently skipped. */
  optionalFeatures?: GPUFeatureName[];
  /** Features that must exist; if one is missing the result is { ok: false }. Default []. */
  requiredFeatures?: GPUFeatureName[];
  /** Request every adapter limit (default true). false: WebGPU default limits. */
  adapterLimits?: boolean;
  label?: string;
}

/** Plain copy of GPUAdapterInfo (Dawn's object exposes its fields as prototype getters). */
export interface AdapterInfo {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  isFallbackAdapter: boolean;
  subgroupMinSize?: number;
  subgroupMaxSize?: number;
}

export interface WebGPUContext {
  readonly ok: true;
  /** These throw once destroy() was called (the references are dropped so Node can exit). */
  readonly gpu: GPU;
  readonly adapter: GPUAdapter;
  readonly device: GPUDevice;
  readonly info: AdapterInfo;
  /** The device's limits as a plain object (equal to the adapter's unless adapterLimits: false). */
  readonly limits: Readonly<Record<string, number>>;
  /** The adapter's limits as a plain object. */
  readonly adapterLimits: Readonly<Record<string, number>>;
  /** Features enabled on the device. */
  readonly features: ReadonlySet<string>;
  readonly hasF16: boolean;
  /** lavapipe / llvmpipe / SwiftShader / WARP or any adapter flagged as fallback. */
  readonly isSoftware: boolean;
  /** Human-readable one-liner, e.g. for test logs. */
  readonly summary: string;
  /** First stored asynchronous error (device lost, uncaptured validation/OOM/internal error), or null. */
  readonly error: Error | null;
  /** Every stored error, oldest first. */
  readonly errors: readonly Error[];
  /** Throws the first stored error, if any (call at sync points: after submit, before reading results). */
  throwIfError(): void;
  /** Forgets stored errors and returns them. */
  takeErrors(): Error[];
  readonly destroyed: boolean;
  /** Destroys the device and drops every reference to Dawn objects. Idempotent. */
  destroy(): void;
}

export type AcquireResult = WebGPUContext | { readonly ok: false; readonly reason: string };

const SOFTWARE_RE = /\b(llvmpipe|lavapipe|softpipe|swiftshader|swift shader|software|microsoft basic render|warp)\b/i;

function errMsg(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Reads every numeric limit, including Dawn's prototype getters and limits newer than @webgpu/types. */
export function limitsToObject(limits: GPUSupportedLimits): Record<string, number> {
  const out: Record<string, number> = {};
  const names = new Set<string>();
  for (const k in limits) names.add(k);
  for (let p: object | null = limits; p && p !== Object.prototype; p = Object.getPrototypeOf(p)) {
    for (const k of Object.getOwnPropertyNames(p)) names.add(k);
  }
  for (const k of names) {
    if (k === 'constructor' || k === '__brand') continue;
    let v: unknown;
    try {
      v = (limits as unknown as Record<string, unknown>)[k];
    } catch {
      continue;
    }
    if (typeof v === 'number') out[k] = v;
  }
  return out;
}

function infoToObject(adapter: GPUAdapter): AdapterInfo {
  const i = adapter.info as Partial<GPUAdapterInfo> | undefined;
  const legacyFallback = (adapter as unknown as { isFallbackAdapter?: unknown }).isFallbackAdapter;
  const info: AdapterInfo = {
    vendor: String(i?.vendor ?? ''),
    architecture: String(i?.architecture ?? ''),
    device: String(i?.device ?? ''),
    description: String(i?.description ?? ''),
    isFallbackAdapter: i?.isFallbackAdapter === true || legacyFallback === true,
  };
  if (typeof i?.subgroupMinSize === 'number') info.subgroupMinSize = i.subgroupMinSize;
  if (typeof i?.subgroupMaxSize === 'number') info.subgroupMaxSize = i.subgroupMaxSize;
  return info;
}

export function isSoftwareAdapter(info: AdapterInfo): boolean {
  if (info.isFallbackAdapter) return true;
  if (info.architecture.toLowerCase() === 'software') return true;
  return SOFTWARE_RE.test([info.vendor, info.device, info.description].join(' '));
}

/** Dawn's GPUSupportedFeatures is iterable and has has(), but no forEach(). */
function setOf(features: GPUSupportedFeatures): Set<string> {
  const out = new Set<string>();
  for (const f of features as unknown as Iterable<string>) out.add(f);
  return out;
}

function defaultDawnOptions(): string[] {
  const env = isNode() ? process.env.LAVI_DAWN_OPTIONS?.trim() : undefined;
  return env ? env.split(/\s+/) : [];
}

/**
 * Acquires a WebGPU adapter + device. Never throws for environment problems (no adapter, Dawn refusing the
 * driver, device creation failing): those give { ok: false, reason }.
 */
export async function acquireWebGPU(opts: AcquireOptions = {}): Promise<AcquireResult> {
  let r: AcquireResult;
  try {
    r = await acquire(opts);
  } catch (e) {
    // Unexpected (a binding quirk, a driver crash surfacing as an exception): still a "no WebGPU" answer.
    r = { ok: false, reason: `WebGPU acquisition failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}` };
  }
  // Reasons end up in one-line log messages (e.g. "NOTE: ..."): Dawn's messages span several lines.
  return r.ok ? r : { ok: false, reason: r.reason.trim().split(/\s*\n\s*/).join(' | ') };
}

async function acquire(opts: AcquireOptions): Promise<AcquireResult> {
  const dawnOptions = opts.dawnOptions ?? defaultDawnOptions();
  let gpu: GPU | null = browserGPU();
  if (!gpu && !isNode()) {
    return { ok: false, reason: 'this browser has no WebGPU (navigator.gpu is undefined: not supported, disabled, or not a secure context)' };
  }
  if (!gpu) {
    // Node: Dawn's binding (the npm 'webgpu' package), loaded only here so that browsers never see it.
    try {
      const { create } = await nodeImport<typeof import('webgpu')>('webgpu', 'WebGPU in Node');
      gpu = create(dawnOptions);
    } catch (e) {
      return { ok: false, reason: `Dawn create(${JSON.stringify(dawnOptions)}) failed: ${errMsg(e)}` };
    }
  }

  let adapter: GPUAdapter | null;
  try {
    const req: GPURequestAdapterOptions = {};
    if (opts.powerPreference) req.powerPreference = opts.powerPreference;
    if (opts.forceFallbackAdapter) req.forceFallbackAdapter = true;
    adapter = await gpu.requestAdapter(req);
  } catch (e) {
    return { ok: false, reason: `requestAdapter() rejected: ${errMsg(e)}` };
  }
  if (!adapter) {
    const hint =
      isNode() && process.platform === 'linux'
        ? ' (no Vulkan driver usable by Dawn; without a GPU install Mesa >= 24 lavapipe: .ci/install-lavapipe.sh)'
        : '';
    return { ok: false, reason: `requestAdapter() returned null${hint}` };
  }

  const info = infoToObject(adapter);
  const adapterLimits = limitsToObject(adapter.limits);
  const adapterFeatures = setOf(adapter.features);

  const missing = (opts.requiredFeatures ?? []).filter((f) => !adapterFeatures.has(f));
  if (missing.length > 0) {
    return { ok: false, reason: `adapter '${info.description || info.device}' lacks required features: ${missing.join(', ')}` };
  }
  const wanted = new Set<GPUFeatureName>([...(opts.requiredFeatures ?? []), ...(opts.optionalFeatures ?? ['shader-f16'])]);
  const requiredFeatures = [...wanted].filter((f) => adapterFeatures.has(f));

  let device: GPUDevice | null = null;
  const attempts: string[] = [];
  const limitSets: Array<Record<string, number> | undefined> = opts.adapterLimits === false ? [undefined] : [adapterLimits, undefined];
  for (const requiredLimits of limitSets) {
    try {
      const desc: GPUDeviceDescriptor = { requiredFeatures, label: opts.label ?? 'lavi-ts' };
      if (requiredLimits) desc.requiredLimits = requiredLimits;
      device = await adapter.requestDevice(desc);
      break;
    } catch (e) {
      attempts.push(`${requiredLimits ? 'adapter limits' : 'default limits'}: ${errMsg(e)}`);
    }
  }
  if (!device) {
    return { ok: false, reason: `requestDevice() failed on '${info.description || info.device}': ${attempts.join('; ')}` };
  }
  if (attempts.length > 0) {
    if (isNode()) process.emitWarning(`lavi-ts WebGPU: requesting the adapter's limits failed, using WebGPU defaults (${attempts.join('; ')})`);
  }

  return makeContext(gpu, adapter, device, info, adapterLimits);
}

function makeContext(
  gpu0: GPU,
  adapter0: GPUAdapter,
  device0: GPUDevice,
  info: AdapterInfo,
  adapterLimits: Record<string, number>,
): WebGPUContext {
  // Everything native lives in `state`; destroy() nulls it so nothing keeps Dawn alive.
  let state: { gpu: GPU; adapter: GPUAdapter; device: GPUDevice } | null = { gpu: gpu0, adapter: adapter0, device: device0 };
  let destroying = false;
  const errors: Error[] = [];

  const limits = Object.freeze(limitsToObject(device0.limits));
  const features = setOf(device0.features);
  const isSoftware = isSoftwareAdapter(info);
  const summary =
    `${info.description || info.device || 'unknown adapter'} [vendor=${info.vendor || '?'}, arch=${info.architecture || '?'}` +
    `${isSoftware ? ', software' : ''}] maxStorageBufferBindingSize=${limits.maxStorageBufferBindingSize}` +
    ` maxBufferSize=${limits.maxBufferSize} f16=${features.has('shader-f16')}`;

  device0.lost.then(
    (li) => {
      if (destroying && li.reason === 'destroyed') return; // our own destroy()
      errors.push(new Error(`WebGPU device lost (${li.reason}): ${li.message}`));
    },
    () => {},
  );

  const onUncaptured = (ev: Event) => {
    const e = (ev as GPUUncapturedErrorEvent).error;
    const kind = e?.constructor?.name && e.constructor.name !== 'Object' ? e.constructor.name : 'GPUError';
    errors.push(new Error(`WebGPU uncaptured ${kind}: ${e?.message ?? String(e)}`));
    ev.preventDefault?.();
  };
  if (typeof device0.addEventListener === 'function') device0.addEventListener('uncapturederror', onUncaptured);
  else (device0 as { onuncapturederror: ((ev: GPUUncapturedErrorEvent) => void) | null }).onuncapturederror = onUncaptured;

  const live = () => {
    if (!state) throw new Error('WebGPU context used after destroy()');
    return state;
  };

  return {
    ok: true,
    get gpu() {
      return live().gpu;
    },
    get adapter() {
      return live().adapter;
    },
    get device() {
      return live().device;
    },
    info,
    limits,
    adapterLimits: Object.freeze({ ...adapterLimits }),
    features,
    hasF16: features.has('shader-f16'),
    isSoftware,
    summary,
    get error() {
      return errors[0] ?? null;
    },
    get errors() {
      return errors.slice();
    },
    throwIfError() {
      if (errors.length > 0) throw errors[0];
    },
    takeErrors() {
      return errors.splice(0, errors.length);
    },
    get destroyed() {
      return state === null;
    },
    destroy() {
      if (!state) return;
      destroying = true;
      const { device } = state;
      state = null;
      try {
        if (typeof device.removeEventListener === 'function') device.removeEventListener('uncapturederror', onUncaptured);
        else (device as { onuncapturederror: unknown }).onuncapturederror = null;
      } catch {
        /* ignore */
      }
      device.destroy();
    },
  };
}

export const DOUBLE_WGSL = /* wgsl */ `
@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x;
  if (i < arrayLength(&dst)) {
    dst[i] = src[i] * 2.0;
  }
}
`;

/**
 * Smoke test: runs a tiny WGSL compute shader that doubles `input` on the GPU and returns the result. Validation
 * and out-of-memory errors raised while encoding are thrown, as is any stored asynchronous error.
 */
export async function runDoublingShader(ctx: WebGPUContext, input: Float32Array | readonly number[]): Promise<Float32Array> {
  const data = input instanceof Float32Array ? input : Float32Array.from(input);
  const n = data.length;
  if (n === 0) return new Float32Array(0);
  const device = ctx.device;
  const bytes = n * 4;
  const U = GPUBufferUsageFlags;

  const groups = Math.ceil(n / 64);
  if (groups > ctx.limits.maxComputeWorkgroupsPerDimension) {
    throw new RangeError(`runDoublingShader: ${n} elements need ${groups} workgroups (> maxComputeWorkgroupsPerDimension)`);
  }

  device.pushErrorScope('out-of-memory');
  device.pushErrorScope('validation');
  let scopes = 2;
  const popScopes = async (): Promise<GPUError | null> => {
    let first: GPUError | null = null;
    while (scopes > 0) {
      scopes -= 1;
      const e = await device.popErrorScope();
      first ??= e;
    }
    return first;
  };
  const buffers: GPUBuffer[] = [];
  try {
    const src = device.createBuffer({ label: 'double.src', size: bytes, usage: U.STORAGE, mappedAtCreation: true });
    buffers.push(src);
    new Float32Array(src.getMappedRange()).set(data);
    src.unmap();
    const dst = device.createBuffer({ label: 'double.dst', size: bytes, usage: U.STORAGE | U.COPY_SRC });
    buffers.push(dst);
    const readback = device.createBuffer({ label: 'double.readback', size: bytes, usage: U.MAP_READ | U.COPY_DST });
    buffers.push(readback);
    const module = device.createShaderModule({ label: 'double', code: DOUBLE_WGSL });
    const pipeline = device.createComputePipeline({ label: 'double', layout: 'auto', compute: { module, entryPoint: 'main' } });
    const bindGroup = device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: [
        { binding: 0, resource: { buffer: src } },
        { binding: 1, resource: { buffer: dst } },
      ],
    });
    const enc = device.createCommandEncoder({ label: 'double' });
    const pass = enc.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(groups);
    pass.end();
    enc.copyBufferToBuffer(dst, 0, readback, 0, bytes);
    device.queue.submit([enc.finish()]);

    const err = await popScopes();
    if (err) throw new Error(`WebGPU ${err.constructor?.name ?? 'error'} in doubling shader: ${err.message}`);

    await readback.mapAsync(GPUMapModeFlags.READ);
    const out = new Float32Array(readback.getMappedRange().slice(0));
    readback.unmap();
    ctx.throwIfError();
    return out;
  } finally {
    if (scopes > 0) await popScopes().catch(() => null);
    for (const b of buffers) b.destroy();
  }
}
