// ModelSource: where a model folder's files come from — a directory on disk (Node) or a URL (fetch, in a browser or
// in Node). Small files (config.json, tokenizer.json) are read whole; checkpoint files are opened as ByteSources
// and read range by range (HTTP Range requests over fetch), so a large checkpoint is never held in one buffer.
//
//   const src = fetchModelSource(new URL('weights/lavi-vqa/', location.href), { onProgress: (p) => bar(p) });
//   const ckpt = await Checkpoint.fromSource(src);

import { FormatError, ValueError } from '../errors.js';
import { nodeBuiltin } from '../platform.js';
import type { ByteSource } from './reader.js';

export type { ByteSource } from './reader.js';

export interface ModelSource {
  /** Names the folder in messages (a path or a URL). */
  readonly label: string;
  /** Names one file of the folder in messages. */
  describe(name: string): string;
  /** A small file's bytes, or null when the folder has no such file. */
  readFile(name: string): Promise<Uint8Array | null>;
  /** A file opened for range reads, or null when the folder has no such file. */
  openFile(name: string): Promise<ByteSource | null>;
}

/** Bytes read so far by a source's range reads, over the sizes of the files it opened. */
export interface SourceProgress {
  file: string;
  loaded: number;
  total: number;
}

function checkName(name: string): void {
  if (typeof name !== 'string' || name === '' || name.includes('\\') || name.split('/').some((p) => p === '..' || p === '')) {
    throw new ValueError(`model source: ${JSON.stringify(name)} is not a file name inside the model folder`);
  }
}

// ---- Node: a directory ---------------------------------------------------------------------------------------

/** The files of a directory on disk (Node only). */
export function nodeModelSource(dir: string): ModelSource {
  const fs = nodeBuiltin<typeof import('node:fs')>('node:fs', 'nodeModelSource');
  const path = nodeBuiltin<typeof import('node:path')>('node:path', 'nodeModelSource');
  const full = (name: string) => {
    checkName(name);
    return path.join(dir, name);
  };
  const absent = (e: unknown) => ['ENOENT', 'ENOTDIR'].includes((e as NodeJS.ErrnoException).code ?? '');
  return {
    label: dir,
    describe: (name) => path.join(dir, name),
    async readFile(name) {
      try {
        return new Uint8Array(await fs.promises.readFile(full(name)));
      } catch (e) {
        if (absent(e)) return null;
        throw e;
      }
    },
    async openFile(name) {
      const p = full(name);
      let handle: import('node:fs/promises').FileHandle;
      try {
        handle = await fs.promises.open(p, 'r');
      } catch (e) {
        if (absent(e)) return null;
        throw e;
      }
      const size = (await handle.stat()).size;
      return {
        size,
        async read(offset, length, what) {
          const out = new Uint8Array(length);
          let done = 0;
          while (done < length) {
            const { bytesRead } = await handle.read(out, done, Math.min(length - done, 64 << 20), offset + done);
            if (bytesRead === 0) throw new FormatError(`${p}: ${what}: file ended after ${offset + done} bytes while reading [${offset}, ${offset + length})`);
            done += bytesRead;
          }
          return out;
        },
        close: () => handle.close(),
      };
    },
  };
}

// ---- fetch: a URL ----------------------------------------------------------------------------------------------

export interface FetchSourceOptions {
  /** The fetch to use (default globalThis.fetch). */
  fetch?: typeof fetch;
  /** Called after each range read with the bytes read so far over the sizes of the files opened. */
  onProgress?: (p: SourceProgress) => void;
  /** Largest single range request, in bytes (default 8 MiB; larger reads are split). */
  chunkBytes?: number;
  /** A file at most this large is fetched in one streamed request on its first read and served from memory
   *  (default 32 MiB): a small checkpoint's hundreds of tiny tensors then cost one round trip, not one each.
   *  Larger files are read range by range and never held whole. */
  wholeFileBytes?: number;
  /** Passed to every request (e.g. to cancel a load). */
  signal?: AbortSignal;
}

function httpWhy(res: Response, url: string): string {
  return `${url}: HTTP ${res.status}${res.statusText ? ' ' + res.statusText : ''}`;
}

/**
 * The files under a base URL (a folder: a trailing '/' is added). Small files are fetched whole; files opened for
 * range reads are sized with HEAD; up to wholeFileBytes they are then fetched in one streamed request, larger ones
 * are read with `Range: bytes=a-b` requests, each answer checked (206, the range asked for, the length asked for):
 * a server that ignores Range is refused rather than downloaded whole.
 */
export function fetchModelSource(base: string | URL, opts: FetchSourceOptions = {}): ModelSource {
  const f = opts.fetch ?? globalThis.fetch?.bind(globalThis);
  if (typeof f !== 'function') throw new ValueError('fetchModelSource: no fetch in this environment');
  let baseUrl: URL;
  try {
    const s = String(base);
    baseUrl = new URL(s.endsWith('/') ? s : s + '/', (globalThis as { location?: { href: string } }).location?.href);
  } catch {
    throw new ValueError(`fetchModelSource: ${JSON.stringify(String(base))} is not a URL`);
  }
  const chunk = opts.chunkBytes ?? 8 << 20;
  const wholeMax = opts.wholeFileBytes ?? 32 << 20;
  let loaded = 0;
  let total = 0;
  const url = (name: string) => {
    checkName(name);
    return new URL(name, baseUrl).href;
  };
  const get = async (u: string, init: RequestInit = {}): Promise<Response> => {
    try {
      return await f(u, { ...init, signal: opts.signal });
    } catch (e) {
      throw new FormatError(`${u}: the request failed (${e instanceof Error ? e.message : String(e)})`);
    }
  };
  return {
    label: baseUrl.href,
    describe: (name) => new URL(name, baseUrl).href,
    async readFile(name) {
      const u = url(name);
      const res = await get(u);
      if (res.status === 404 || res.status === 410) return null;
      if (!res.ok) throw new FormatError(httpWhy(res, u));
      return new Uint8Array(await res.arrayBuffer());
    },
    async openFile(name) {
      const u = url(name);
      const head = await get(u, { method: 'HEAD' });
      if (head.status === 404 || head.status === 410) return null;
      if (!head.ok) throw new FormatError(httpWhy(head, u));
      const len = head.headers.get('content-length');
      const size = len === null ? NaN : Number(len);
      if (!Number.isSafeInteger(size) || size < 0) throw new FormatError(`${u}: the server gave no usable Content-Length (${JSON.stringify(len)}), so the file cannot be read by ranges`);
      total += size;
      opts.onProgress?.({ file: name, loaded, total });
      let closed = false;
      const readRange = async (offset: number, length: number, what: string): Promise<Uint8Array> => {
        const res = await get(u, { headers: { Range: `bytes=${offset}-${offset + length - 1}` } });
        if (res.status !== 206) {
          await res.body?.cancel().catch(() => {});
          throw new FormatError(
            res.status === 200
              ? `${u}: the server ignored the Range request for ${what} (HTTP 200): serve the model from a server that supports range requests`
              : `${u}: ${what}: ${httpWhy(res, u).slice(u.length + 2)}`,
          );
        }
        const cr = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(res.headers.get('content-range') ?? '');
        if (!cr || Number(cr[1]) !== offset || Number(cr[2]) !== offset + length - 1) {
          throw new FormatError(`${u}: ${what}: the server answered range ${JSON.stringify(res.headers.get('content-range'))}, not bytes ${offset}-${offset + length - 1}`);
        }
        const out = new Uint8Array(await res.arrayBuffer());
        if (out.length !== length) throw new FormatError(`${u}: ${what}: got ${out.length} bytes for a range of ${length} (the file changed or the transfer was cut)`);
        return out;
      };
      // A small file: one streamed GET on first use (progress per chunk), then reads from memory.
      let whole: Promise<Uint8Array> | null = null;
      const fetchWhole = async (): Promise<Uint8Array> => {
        const res = await get(u);
        if (!res.ok) throw new FormatError(httpWhy(res, u));
        const out = new Uint8Array(size);
        let got = 0;
        const reader = res.body?.getReader();
        if (!reader) {
          const all = new Uint8Array(await res.arrayBuffer());
          if (all.length !== size) throw new FormatError(`${u}: got ${all.length} bytes, HEAD said ${size} (the file changed or the transfer was cut)`);
          loaded += size;
          opts.onProgress?.({ file: name, loaded, total });
          return all;
        }
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          if (got + value.length > size) {
            await reader.cancel().catch(() => {});
            throw new FormatError(`${u}: more than the ${size} bytes HEAD said (the file changed during the load)`);
          }
          out.set(value, got);
          got += value.length;
          loaded += value.length;
          opts.onProgress?.({ file: name, loaded, total });
        }
        if (got !== size) throw new FormatError(`${u}: got ${got} bytes, HEAD said ${size} (the file changed or the transfer was cut)`);
        return out;
      };
      return {
        size,
        async read(offset, length, what) {
          if (closed) throw new ValueError(`${u}: read after close`);
          if (offset + length > size) throw new FormatError(`${u}: ${what}: [${offset}, ${offset + length}) lies past the end of the file (${size} bytes)`);
          if (length === 0) return new Uint8Array(0);
          if (size <= wholeMax) {
            whole ??= fetchWhole();
            whole.catch(() => {});
            return (await whole).slice(offset, offset + length);
          }
          if (length <= chunk) {
            const out = await readRange(offset, length, what);
            loaded += length;
            opts.onProgress?.({ file: name, loaded, total });
            return out;
          }
          const out = new Uint8Array(length);
          for (let done = 0; done < length; ) {
            const n = Math.min(chunk, length - done);
            out.set(await readRange(offset + done, n, what), done);
            done += n;
            loaded += n;
            opts.onProgress?.({ file: name, loaded, total });
          }
          return out;
        },
        async close() {
          closed = true;
          whole = null;
        },
      };
    },
  };
}
