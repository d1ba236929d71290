// Backend names as users give them: family names (`gpujs` → the best gpu.js mode that works here), the shape-only
// `meta` backend refused for computing answers, availability that is probed rather than assumed (`lavi backends`),
// and the quiet default choice: on Linux, WebGPU is probed only when a GPU device exists, so a default `lavi ask`
// never loads Dawn (and never prints its Vulkan warnings) on a machine where it could only find a software GPU.

import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import '../../backends/index.js';
import { ValueError } from '../../core/errors.js';
import type { Backend } from '../../core/backend.js';
import { bestBackend, getBackend, hasBackend, listBackends } from '../../core/registry.js';
import { UsageError } from './commands/args.js';

/** Family names and their members, best first (a member is only tried where it can matter). */
export const BACKEND_FAMILIES: Record<string, string[]> = {
  gpujs: ['gpujs-webgpu', 'gpujs-webasm', 'gpujs-webasm-threads', 'gpujs-cpu'],
};

/** Backends that compute nothing (shape-only): never offered for answers. */
const SHAPE_ONLY = new Set(['meta']);

/** Whether a hardware GPU could be reached. On Linux a GPU driver needs a device node (DRM render node, NVIDIA,
 *  WSL's dxg) or an explicitly chosen Vulkan driver; without one, WebGPU could only run on a software Vulkan
 *  (lavapipe), which the default choice skips anyway. Other systems: assumed possible (Metal, D3D12). */
export function hardwareGpuPossible(): { possible: boolean; reason: string } {
  if (process.platform !== 'linux') return { possible: true, reason: '' };
  if (process.env.VK_ICD_FILENAMES || process.env.VK_DRIVER_FILES) return { possible: true, reason: '' };
  const dri = existsSync('/dev/dri') ? readdirSync('/dev/dri').filter((f) => f.startsWith('renderD')) : [];
  if (dri.length) return { possible: true, reason: '' };
  if (existsSync('/dev/dxg')) return { possible: true, reason: '' };
  const nv = existsSync('/dev') ? readdirSync('/dev').some((f) => /^nvidia\d+$/.test(f)) : false;
  if (nv) return { possible: true, reason: '' };
  return { possible: false, reason: 'no GPU device (/dev/dri/renderD*, /dev/nvidia*): only a software Vulkan driver could run it (not probed; --backend webgpu uses it anyway)' };
}

/** Backends the default choice does not even try here, and why (see hardwareGpuPossible). */
export function quietSkips(allowSoftwareGpu = false): { name: string; reason: string }[] {
  if (allowSoftwareGpu) return [];
  const hw = hardwareGpuPossible();
  return hw.possible ? [] : ['webgpu', 'gpujs-webgpu'].filter(hasBackend).map((name) => ({ name, reason: hw.reason }));
}

/** The best backend for answers, without probing WebGPU where no GPU device exists (it would only find a software
 *  adapter, and Dawn prints warnings): what the runtime and `lavi eval` use when no backend is named. */
export async function defaultBackend(allowSoftwareGpu = false): Promise<{ backend: Backend; skipped: { name: string; reason: string }[] }> {
  const quiet = quietSkips(allowSoftwareGpu);
  const best = await bestBackend({ allowSoftwareGpu, exclude: quiet.map((q) => q.name) });
  return { backend: best.backend, skipped: [...quiet, ...best.skipped] };
}

/** Why a registered backend cannot work here, known without creating it (null: it has to be probed). */
export function staticUnavailable(name: string): string | null {
  if (name === 'gpujs-headlessgl') {
    try {
      createRequire(import.meta.url).resolve('gl');
    } catch {
      return "the optional native 'gl' package (headless-gl) is not installed";
    }
  }
  return null;
}

/** Names a user may give: the registered computing backends and the family names. */
export function knownBackendNames(): string[] {
  const regs = listBackends().map((r) => r.name).filter((n) => !SHAPE_ONLY.has(n));
  return [...regs, ...Object.keys(BACKEND_FAMILIES).filter((f) => !hasBackend(f))];
}

/** Checks a --backend value (usage errors exit 2); returns it unchanged (families resolve when created). */
export function resolveBackendArg(name: string | undefined): string | undefined {
  if (name === undefined) return undefined;
  checkBackendName(name, (m) => new UsageError(m));
  return name;
}

function checkBackendName(name: string, err: (m: string) => Error): void {
  if (SHAPE_ONLY.has(name)) throw err(`backend '${name}' computes nothing (shape-only, for 'lavi cost'); choose one of ${knownBackendNames().join(', ')}`);
  if (!hasBackend(name) && !BACKEND_FAMILIES[name]) {
    throw err(`unknown backend '${name}' (known: ${knownBackendNames().join(', ')}; 'lavi backends' says which work here)`);
  }
}

/** A backend name → the registered backend to create: a family name becomes its best member that can be created
 *  here (GPU members only where a GPU device exists; software-emulated GPUs passed over). */
export async function resolveBackendName(name: string): Promise<{ name: string; skipped: { name: string; reason: string }[] }> {
  checkBackendName(name, (m) => new ValueError(m));
  const members = hasBackend(name) ? null : BACKEND_FAMILIES[name];
  if (!members) return { name, skipped: [] };
  const skipped: { name: string; reason: string }[] = [];
  const hw = hardwareGpuPossible();
  for (const m of members) {
    if (!hasBackend(m)) continue;
    if (m.includes('webgpu') && !hw.possible) {
      skipped.push({ name: m, reason: hw.reason });
      continue;
    }
    const why = staticUnavailable(m);
    if (why) {
      skipped.push({ name: m, reason: why });
      continue;
    }
    try {
      const b = await getBackend(m);
      const info = b.info();
      if (info.device === 'gpu' && info.software) {
        skipped.push({ name: m, reason: `software-emulated GPU (${info.description})` });
        continue;
      }
      return { name: m, skipped };
    } catch (e) {
      skipped.push({ name: m, reason: (e as Error).message.split('\n')[0]! });
    }
  }
  throw new ValueError(`no '${name}' backend works here (${skipped.map((s) => `${s.name}: ${s.reason}`).join('; ')})`);
}

export interface BackendStatus {
  name: string;
  available: boolean;
  /** The description the backend gives once created, or its registration's. */
  description: string;
  device?: string;
  software?: boolean;
  reason?: string;
  /** A family name: the member it resolves to. */
  resolvesTo?: string;
}

/** Creates each registered backend (and resolves each family) to say which work here. Native warnings (Dawn's)
 *  go wherever stderr goes: `lavi backends` runs this in a child process and shows them only with --verbose. */
export async function probeBackends(): Promise<BackendStatus[]> {
  const out: BackendStatus[] = [];
  for (const reg of listBackends()) {
    if (SHAPE_ONLY.has(reg.name)) {
      out.push({ name: reg.name, available: false, description: reg.description ?? '', reason: 'shape-only: computes no values (used by lavi cost)' });
      continue;
    }
    const why = staticUnavailable(reg.name);
    if (why) {
      out.push({ name: reg.name, available: false, description: reg.description ?? '', reason: why });
      continue;
    }
    try {
      const b = await getBackend(reg.name);
      const i = b.info();
      out.push({ name: reg.name, available: true, description: i.description, device: i.device, software: i.software });
    } catch (e) {
      out.push({ name: reg.name, available: false, description: reg.description ?? '', reason: (e as Error).message.split('\n')[0] });
    }
  }
  for (const fam of Object.keys(BACKEND_FAMILIES)) {
    if (hasBackend(fam)) continue;
    try {
      const r = await resolveBackendName(fam);
      out.push({ name: fam, available: true, description: `family: the best gpu.js mode here`, resolvesTo: r.name });
    } catch (e) {
      out.push({ name: fam, available: false, description: 'family', reason: (e as Error).message });
    }
  }
  return out;
}
