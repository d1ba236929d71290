// Backend registry: backends are registered by name with a factory (so a backend that needs a device is only
// created when asked for), and embedders register their own the same way, from outside the package.
//
//   registerBackend('mine', async () => new MyBackend(), { priority: 5 });
//   const b = await getBackend('mine');
//
// `bestBackend()` picks the highest-priority backend that can be created and is not a software-emulated GPU
// (a lavapipe "GPU" is slower than the CPU backends), unless asked to allow those.

import type { Backend } from './backend.js';
import { LaviError, ValueError } from './errors.js';

export interface BackendRegistration {
  name: string;
  factory: () => Backend | Promise<Backend>;
  /** Higher wins in bestBackend(). Built-ins: cpu 0, wasm 20, gpujs 5, webgpu 30. */
  priority: number;
  description?: string;
}

const registrations = new Map<string, BackendRegistration>();
const instances = new Map<string, Promise<Backend>>();

export function registerBackend(
  name: string,
  factory: BackendRegistration['factory'],
  opts: { priority?: number; description?: string; replace?: boolean } = {},
): void {
  if (!/^[a-z][a-z0-9_-]*$/i.test(name)) throw new ValueError(`registerBackend: invalid backend name '${name}'`);
  if (registrations.has(name) && !opts.replace) {
    throw new ValueError(`registerBackend: a backend named '${name}' is already registered (pass { replace: true } to override)`);
  }
  registrations.set(name, { name, factory, priority: opts.priority ?? 0, description: opts.description });
  instances.delete(name);
}

export function listBackends(): BackendRegistration[] {
  return [...registrations.values()].sort((a, b) => b.priority - a.priority);
}

export function hasBackend(name: string): boolean {
  return registrations.has(name);
}

/** The (single, lazily created) instance of a registered backend. */
export function getBackend(name: string): Promise<Backend> {
  const reg = registrations.get(name);
  if (!reg) {
    throw new ValueError(`getBackend: no backend named '${name}' (registered: ${[...registrations.keys()].join(', ') || 'none'})`);
  }
  let p = instances.get(name);
  if (!p) {
    p = Promise.resolve().then(reg.factory);
    // A failed creation is not cached, so a later call can retry (e.g. after installing a driver).
    p.catch(() => instances.delete(name));
    instances.set(name, p);
  }
  return p;
}

/** Destroys a created backend instance (its device, pools) and forgets it. */
export async function releaseBackend(name: string): Promise<void> {
  const p = instances.get(name);
  if (!p) return;
  instances.delete(name);
  const b = await p.catch(() => null);
  await b?.destroy();
}

/** Destroys every created backend instance; call before exit so native devices (Dawn) let Node exit. */
export async function releaseAllBackends(): Promise<void> {
  for (const name of [...instances.keys()]) await releaseBackend(name);
}

export interface BestBackendChoice {
  backend: Backend;
  /** Why the others were passed over, for --verbose output. */
  skipped: { name: string; reason: string }[];
}

/** Highest-priority backend that can be created; software-emulated GPUs are skipped unless allowSoftwareGpu. */
export async function bestBackend(opts: { allowSoftwareGpu?: boolean; exclude?: string[] } = {}): Promise<BestBackendChoice> {
  const skipped: { name: string; reason: string }[] = [];
  for (const reg of listBackends()) {
    if (opts.exclude?.includes(reg.name)) continue;
    let b: Backend;
    try {
      b = await getBackend(reg.name);
    } catch (e) {
      skipped.push({ name: reg.name, reason: (e as Error).message });
      continue;
    }
    const info = b.info();
    if (info.device === 'none') {
      skipped.push({ name: reg.name, reason: 'computes nothing (shape-only backend)' });
      continue;
    }
    if (info.device === 'gpu' && info.software && !opts.allowSoftwareGpu) {
      skipped.push({ name: reg.name, reason: `software-emulated GPU (${info.description})` });
      continue;
    }
    return { backend: b, skipped };
  }
  throw new LaviError('no-backend', `bestBackend: no usable backend (${skipped.map((s) => `${s.name}: ${s.reason}`).join('; ')})`);
}
