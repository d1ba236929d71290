// Where the library runs. The library itself imports no Node built-in module statically, so that a bundler for
// the browser (esbuild --platform=browser) builds it without shims; the code paths that only make sense in Node
// (reading files by path, worker_threads, the Dawn WebGPU binding) fetch their module here, on first use.
//
// process.getBuiltinModule (Node ≥ 20.16) is synchronous and no bundler follows it, so the synchronous Node APIs
// (Tokenizer.fromFile, loadImage) keep their signatures. In a browser these throw a clear error instead.

import { UnsupportedError } from './errors.js';

/** True in Node (not in a browser, nor in a browser's worker). */
export function isNode(): boolean {
  return typeof process !== 'undefined' && typeof process.versions === 'object' && typeof process.versions?.node === 'string';
}

/** A Node built-in module, e.g. `nodeBuiltin<typeof import('node:fs')>('node:fs', 'Tokenizer.fromFile')`. */
export function nodeBuiltin<T>(name: string, what: string): T {
  if (!isNode()) {
    throw new UnsupportedError(`${what} needs Node (${name}); in a browser, load models over fetch (fetchModelSource) and pass bytes instead of paths`);
  }
  const get = (process as unknown as { getBuiltinModule?: (n: string) => unknown }).getBuiltinModule;
  if (typeof get !== 'function') throw new UnsupportedError(`${what}: this Node (${process.version}) lacks process.getBuiltinModule; Node >= 20.16 is required`);
  return get(name) as T;
}

/** A Node-only package (e.g. 'webgpu', Dawn's binding), imported on first use. The specifier is not a literal,
 *  so a browser bundle does not follow it. */
export async function nodeImport<T>(name: string, what: string): Promise<T> {
  if (!isNode()) throw new UnsupportedError(`${what} needs Node (the '${name}' package)`);
  const specifier = name;
  return (await import(specifier)) as T;
}

/** Node's fs (reading files by path is Node-only). */
export const nodeFs = (what = 'reading a file by path'): typeof import('node:fs') => nodeBuiltin<typeof import('node:fs')>('node:fs', what);
/** Node's path. */
export const nodePath = (what = 'file paths'): typeof import('node:path') => nodeBuiltin<typeof import('node:path')>('node:path', what);
