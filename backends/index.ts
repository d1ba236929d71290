// Registers the built-in backends with the registry. Importing this module is enough to make
// getBackend('cpu') / getBackend('meta') work; GPU backends register themselves here too, created lazily.

import { hasBackend, registerBackend } from '../core/registry.js';
import { CpuBackend } from './cpu/index.js';
import { MetaBackend } from './meta/index.js';

export { CpuBackend } from './cpu/index.js';
export { MetaBackend } from './meta/index.js';

export function registerBuiltinBackends(): void {
  if (!hasBackend('cpu')) registerBackend('cpu', () => new CpuBackend(), { priority: 0, description: 'CPU reference' });
  if (!hasBackend('meta')) registerBackend('meta', () => new MetaBackend(), { priority: -100, description: 'shape-only (cost accounting)' });
}

registerBuiltinBackends();
