// SafetensorsFile: a lazy reader over a .safetensors file on disk (or over bytes in memory).
//
// Opening reads only the 8-byte prefix and the JSON header; each `read(name)` then reads exactly that tensor's
// byte range (positional reads on one file handle, in chunks), copies it into a fresh, aligned buffer and decodes
// it into the engine's host array. The file is never pulled into one buffer.
//
// Dtype mapping (safetensors → engine):
//   F32 → f32 (Float32Array)            F16/BF16 → f32 widened, or packed Uint16Array 'f16'/'bf16' with keepPacked
//   I32 → i32 (Int32Array)              I64 → i32 when every value fits, else FormatError
//   U8 → i32                            BOOL → i32 (bytes must be 0 or 1, else FormatError)
//   F64 → f32 with allowLossy only      anything else → DTypeError 'unsupported dtype X for tensor Y in FILE'

import type { FileHandle } from 'node:fs/promises';
import { nodeBuiltin } from '../platform.js';
import type { DType, HostArray } from '../dtype.js';
import { f16ToF32, widenToF32 } from '../dtype.js';
import { DTypeError, FormatError, ValueError } from '../errors.js';
import {
  DEFAULT_MAX_TENSOR_BYTES,
  READABLE_DTYPES,
  checkSizeOption,
  parseHeader,
  quoteName,
  readHeaderLength,
  where,
  type HeaderOptions,
  type ParsedHeader,
  type TensorEntry,
} from './header.js';

/** A tensor on the host: engine dtype, row-major shape and the array that holds it. */
export interface HostTensor {
  dtype: DType;
  shape: number[];
  data: HostArray;
}

/** Options for decoding a tensor; given to `open`/`fromBytes` they become that file's defaults. */
export interface ReadOptions {
  /** Keep F16/BF16 as packed 16-bit patterns (Uint16Array, dtype 'f16'/'bf16') instead of widening to f32. */
  keepPacked?: boolean;
  /** Accept lossy conversions: F64 → f32 (rounded; magnitudes beyond f32 become ±Infinity). */
  allowLossy?: boolean;
  /** Largest allocation one read may make (stored bytes or decoded array, whichever is larger). Default 2 GiB. */
  maxTensorBytes?: number;
}

/** Options for opening a file. */
export interface OpenOptions extends ReadOptions, HeaderOptions {
  /** Largest single positional read, in bytes (big tensors are read in chunks). Default 64 MiB. */
  chunkBytes?: number;
}

/** Label used in messages for a file that lives in memory. */
export const MEMORY_SOURCE = '<memory>';

const DEFAULT_CHUNK_BYTES = 64 * 1024 * 1024;
const MAX_FS_READ = 2 ** 31 - 1; // Node refuses a single read longer than this

/** Where a SafetensorsFile gets its bytes from: a file on disk, memory, or HTTP range reads (source.ts). */
export interface ByteSource {
  readonly size: number;
  /** Returns a fresh Uint8Array (own buffer, byteOffset 0) holding bytes [offset, offset + length); with `into`
   *  (at least `length` bytes), the bytes are read into it and a view of its start is returned. */
  read(offset: number, length: number, what: string, into?: Uint8Array): Promise<Uint8Array>;
  close(): Promise<void>;
}

class FileSource implements ByteSource {
  constructor(
    private readonly handle: FileHandle,
    readonly size: number,
    private readonly path: string,
    private readonly chunk: number,
  ) {}

  async read(offset: number, length: number, what: string, into?: Uint8Array): Promise<Uint8Array> {
    const out = into && into.byteLength >= length ? into.subarray(0, length) : new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const want = Math.min(this.chunk, length - done);
      const { bytesRead } = await this.handle.read(out, done, want, offset + done);
      if (bytesRead === 0) {
        throw new FormatError(
          `${where(this.path)}: ${what}: file ended after ${offset + done} bytes while reading ` +
            `[${offset}, ${offset + length}) (was the file truncated after it was opened?)`,
        );
      }
      done += bytesRead;
    }
    return out;
  }

  close(): Promise<void> {
    return this.handle.close();
  }
}

class MemorySource implements ByteSource {
  constructor(private readonly bytes: Uint8Array) {}

  get size(): number {
    return this.bytes.length;
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    // Uint8Array's slice copies into a new, aligned buffer (Buffer's own slice would return a view).
    return Uint8Array.prototype.slice.call(this.bytes, offset, offset + length);
  }

  async close(): Promise<void> {}
}

/** A lazy reader over one safetensors file. Create it with `SafetensorsFile.open` or `SafetensorsFile.fromBytes`. */
export class SafetensorsFile {
  /** The path the file was opened from, or '<memory>'. */
  readonly path: string;
  /** The header's `__metadata__` (null-prototype object; empty when absent). */
  readonly metadata: Readonly<Record<string, string>>;
  /** The validated header. */
  readonly header: ParsedHeader;
  private readonly source: ByteSource;
  private readonly defaults: ReadOptions;
  private closed = false;

  private constructor(path: string, source: ByteSource, header: ParsedHeader, defaults: ReadOptions) {
    this.path = path;
    this.source = source;
    this.header = header;
    this.metadata = header.metadata;
    this.defaults = defaults;
  }

  /** Opens a file and validates its header; reads nothing else. Close it with `close()`. */
  static async open(path: string, opts: OpenOptions = {}): Promise<SafetensorsFile> {
    if (typeof path !== 'string' || path === '') throw new ValueError(`safetensors: open() needs a file path`);
    const defaults = checkReadOptions(opts);
    const chunk = Math.min(checkSizeOption(opts.chunkBytes, DEFAULT_CHUNK_BYTES, 'chunkBytes') || 1, MAX_FS_READ);
    let handle: FileHandle;
    try {
      handle = await nodeBuiltin<typeof import('node:fs')>('node:fs', 'SafetensorsFile.open(path)').promises.open(path, 'r');
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      if (err.code === 'ENOENT') throw new ValueError(`safetensors: no such file: ${path}`);
      if (err.code === 'EISDIR') throw new ValueError(`safetensors: ${path} is a directory (use Checkpoint.open)`);
      throw e;
    }
    try {
      const stat = await handle.stat();
      if (!stat.isFile()) throw new ValueError(`safetensors: ${path} is not a regular file`);
      const source = new FileSource(handle, stat.size, path, chunk);
      const prefix = stat.size >= 8 ? await source.read(0, 8, 'header length') : new Uint8Array(0);
      const n = readHeaderLength(prefix, stat.size, path, opts);
      const headerBytes = await source.read(8, n, 'header');
      const header = parseHeader(headerBytes, stat.size, path);
      return new SafetensorsFile(path, source, header, defaults);
    } catch (e) {
      await handle.close().catch(() => {});
      throw e;
    }
  }

  /** Opens a file behind a ByteSource (e.g. HTTP range reads: fetchModelSource); reads the header only. `label`
   *  names the file in messages. The source is closed by `close()`, or here when the header is invalid. */
  static async fromSource(source: ByteSource, label: string, opts: OpenOptions = {}): Promise<SafetensorsFile> {
    const defaults = checkReadOptions(opts);
    try {
      const prefix = source.size >= 8 ? await source.read(0, 8, 'header length') : new Uint8Array(0);
      const n = readHeaderLength(prefix, source.size, label, opts);
      const header = parseHeader(await source.read(8, n, 'header'), source.size, label);
      return new SafetensorsFile(label, source, header, defaults);
    } catch (e) {
      await source.close().catch(() => {});
      throw e;
    }
  }

  /** Wraps a whole file held in memory (not copied; each read copies its own range out). */
  static fromBytes(bytes: Uint8Array, opts: OpenOptions = {}): SafetensorsFile {
    if (!(bytes instanceof Uint8Array)) throw new ValueError(`safetensors: fromBytes() needs a Uint8Array`);
    const defaults = checkReadOptions(opts);
    const n = readHeaderLength(bytes.subarray(0, 8), bytes.length, MEMORY_SOURCE, opts);
    const header = parseHeader(bytes.subarray(8, 8 + n), bytes.length, MEMORY_SOURCE);
    return new SafetensorsFile(MEMORY_SOURCE, new MemorySource(bytes), header, defaults);
  }

  /** Tensor names, in data order. */
  names(): string[] {
    return [...this.header.entries.keys()];
  }

  /** Every entry, in data order. */
  entries(): TensorEntry[] {
    return [...this.header.entries.values()];
  }

  has(name: string): boolean {
    return this.header.entries.has(name);
  }

  /** The header entry of one tensor; a ValueError listing some available names if there is none. */
  entry(name: string): TensorEntry {
    const e = this.header.entries.get(name);
    if (e === undefined) throw missingTensor(this.path, name, this.names());
    return e;
  }

  /** The tensor's raw little-endian bytes, exactly as stored (a fresh copy). */
  async readRaw(name: string, opts: Pick<ReadOptions, 'maxTensorBytes'> = {}): Promise<Uint8Array> {
    const e = this.entry(name);
    this.checkOpen(name);
    const max = checkSizeOption(opts.maxTensorBytes, this.defaults.maxTensorBytes!, 'maxTensorBytes');
    if (e.byteLength > max) throw tooBig(e, e.byteLength, max);
    return this.source.read(e.byteOffset, e.byteLength, `tensor ${quoteName(name)}`);
  }

  /**
   * Bytes [begin, begin + length) of one tensor's stored data (a run of rows, for loading a large tensor in pieces),
   * read into `into` when it is large enough (the result is then a view of it).
   */
  async readRange(name: string, begin: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    const e = this.entry(name);
    this.checkOpen(name);
    if (!Number.isInteger(begin) || !Number.isInteger(length) || begin < 0 || length < 0 || begin + length > e.byteLength) {
      throw new ValueError(`${where(this.path, name)}: byte range [${begin}, ${begin + length}) is outside the tensor's ${e.byteLength} bytes`);
    }
    return this.source.read(e.byteOffset + begin, length, `tensor ${quoteName(name)}`, into);
  }

  /** Reads and decodes one tensor (see the dtype table at the top of this file). */
  async read(name: string, opts: ReadOptions = {}): Promise<HostTensor> {
    const e = this.entry(name);
    this.checkOpen(name);
    const o = checkReadOptions(opts, this.defaults);
    planDecode(e, o); // refuses unsupported dtypes and oversized tensors before anything is allocated
    const bytes = await this.source.read(e.byteOffset, e.byteLength, `tensor ${quoteName(name)}`);
    return decodeTensor(e, bytes, o);
  }

  /** Releases the file handle. Idempotent; reads after close fail. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.source.close();
  }

  private checkOpen(name: string): void {
    if (this.closed) throw new ValueError(`${where(this.path, name)}: cannot read, the file has been closed`);
  }
}

/** Validates read options, filling defaults from `base` (or the library defaults). */
function checkReadOptions(opts: ReadOptions, base?: ReadOptions): ReadOptions {
  if (opts === null || typeof opts !== 'object') throw new ValueError(`safetensors: options must be an object`);
  return {
    keepPacked: opts.keepPacked ?? base?.keepPacked ?? false,
    allowLossy: opts.allowLossy ?? base?.allowLossy ?? false,
    maxTensorBytes: checkSizeOption(opts.maxTensorBytes, base?.maxTensorBytes ?? DEFAULT_MAX_TENSOR_BYTES, 'maxTensorBytes'),
  };
}

/** The error for a tensor name that is not there, listing the closest available names. */
export function missingTensor(source: string, name: string, names: readonly string[]): ValueError {
  const score = (n: string): number => {
    let i = 0;
    while (i < n.length && i < name.length && n[i] === name[i]) i++;
    return i;
  };
  const ranked = names
    .map((n, i) => ({ n, i, s: score(n) }))
    .sort((a, b) => b.s - a.s || a.i - b.i)
    .slice(0, 5)
    .map((x) => quoteName(x.n));
  const list = names.length === 0 ? 'it holds no tensors' : `it holds ${names.length} tensors, e.g. ${ranked.join(', ')}`;
  return new ValueError(`${where(source)}: no tensor named ${quoteName(name)}; ${list}`);
}

function tooBig(e: TensorEntry, bytes: number, max: number): FormatError {
  return new FormatError(
    `${where(e.file, e.name)}: reading it needs ${bytes} bytes (dtype ${e.dtype}, shape [${e.shape.join(', ')}]), ` +
      `over the limit of ${max} bytes (option maxTensorBytes)`,
  );
}

/** The engine dtype a tensor decodes to under `opts`, after checking support and the size limit. */
export function planDecode(e: TensorEntry, opts: ReadOptions = {}): DType {
  let out: DType;
  let outBytes: number;
  switch (e.dtype) {
    case 'F32':
      out = 'f32';
      outBytes = e.size * 4;
      break;
    case 'F16':
    case 'BF16':
      out = opts.keepPacked ? (e.dtype === 'F16' ? 'f16' : 'bf16') : 'f32';
      outBytes = e.size * (opts.keepPacked ? 2 : 4);
      break;
    case 'I32':
    case 'I64':
    case 'U8':
    case 'BOOL':
      out = 'i32';
      outBytes = e.size * 4;
      break;
    case 'F64':
      if (!opts.allowLossy) {
        throw new DTypeError(
          `unsupported dtype F64 for tensor ${quoteName(e.name)} in ${e.file}: ` +
            `F64 → f32 loses precision; pass { allowLossy: true } to convert`,
        );
      }
      out = 'f32';
      outBytes = e.size * 4;
      break;
    default:
      throw new DTypeError(
        `unsupported dtype ${e.dtype} for tensor ${quoteName(e.name)} in ${e.file} ` +
          `(readable: ${READABLE_DTYPES.join(', ')}; F64 needs allowLossy)`,
      );
  }
  const max = opts.maxTensorBytes ?? DEFAULT_MAX_TENSOR_BYTES;
  const need = Math.max(e.byteLength, outBytes);
  if (need > max) throw tooBig(e, need, max);
  return out;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** A typed view of `bytes` when it is aligned and the host is little-endian, else a decoded copy. */
function view<T extends Float32Array | Int32Array | Uint16Array | Float64Array>(
  bytes: Uint8Array,
  Ctor: { new (buffer: ArrayBuffer, byteOffset: number, length: number): T; new (length: number): T; BYTES_PER_ELEMENT: number },
  get: (dv: DataView, byteOffset: number) => number,
): T {
  const bpe = Ctor.BYTES_PER_ELEMENT;
  const n = bytes.length / bpe;
  if (LITTLE_ENDIAN && bytes.byteOffset % bpe === 0 && bytes.buffer instanceof ArrayBuffer) {
    return new Ctor(bytes.buffer, bytes.byteOffset, n);
  }
  const out = new Ctor(n);
  if (LITTLE_ENDIAN) {
    new Uint8Array(out.buffer).set(bytes);
  } else {
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let i = 0; i < n; i++) out[i] = get(dv, i * bpe);
  }
  return out;
}

const asF32 = (b: Uint8Array): Float32Array => view(b, Float32Array, (dv, o) => dv.getFloat32(o, true));
const asI32 = (b: Uint8Array): Int32Array => view(b, Int32Array, (dv, o) => dv.getInt32(o, true));
const asU16 = (b: Uint8Array): Uint16Array => view(b, Uint16Array, (dv, o) => dv.getUint16(o, true));
const asF64 = (b: Uint8Array): Float64Array => view(b, Float64Array, (dv, o) => dv.getFloat64(o, true));

let f16Table: Float32Array | undefined;
/** f16 → f32 through a 64K-entry table (built once): much faster than bit arithmetic per element. */
function widenF16(bits: Uint16Array): Float32Array {
  if (bits.length < 4096) return widenToF32(bits, 'f16');
  if (f16Table === undefined) {
    f16Table = new Float32Array(65536);
    for (let i = 0; i < 65536; i++) f16Table[i] = f16ToF32(i);
  }
  const t = f16Table;
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = t[bits[i]!]!;
  return out;
}

/**
 * Decodes a tensor's stored bytes (little-endian, exactly `e.byteLength` of them) into a host tensor. The result
 * may share `bytes`' buffer, so pass a buffer nobody else holds (the readers pass fresh copies).
 */
export function decodeTensor(e: TensorEntry, bytes: Uint8Array, opts: ReadOptions = {}): HostTensor {
  const dtype = planDecode(e, opts);
  if (bytes.length !== e.byteLength) {
    throw new FormatError(`${where(e.file, e.name)}: expected ${e.byteLength} bytes, got ${bytes.length}`);
  }
  const shape = [...e.shape];
  switch (e.dtype) {
    case 'F32':
      return { dtype, shape, data: asF32(bytes) };
    case 'I32':
      return { dtype, shape, data: asI32(bytes) };
    case 'F16':
    case 'BF16': {
      const bits = asU16(bytes);
      if (opts.keepPacked) return { dtype, shape, data: bits };
      return { dtype, shape, data: e.dtype === 'F16' ? widenF16(bits) : widenToF32(bits, 'bf16') };
    }
    case 'F64':
      return { dtype, shape, data: Float32Array.from(asF64(bytes)) };
    case 'U8':
      return { dtype, shape, data: Int32Array.from(bytes) };
    case 'BOOL': {
      for (let i = 0; i < bytes.length; i++) {
        if (bytes[i]! > 1) {
          throw new FormatError(
            `${where(e.file, e.name)}: BOOL value at index ${i} is ${bytes[i]}; booleans must be stored as 0 or 1`,
          );
        }
      }
      return { dtype, shape, data: Int32Array.from(bytes) };
    }
    case 'I64': {
      // Each I64 is (lo, hi) 32-bit words; it fits in int32 exactly when hi is lo's sign extension.
      const words = asI32(bytes);
      const out = new Int32Array(e.size);
      for (let i = 0; i < e.size; i++) {
        const lo = words[2 * i]!;
        const hi = words[2 * i + 1]!;
        if (hi !== lo >> 31) {
          const value = (BigInt(hi) << 32n) | BigInt(lo >>> 0);
          throw new FormatError(
            `${where(e.file, e.name)}: I64 value ${value} at index ${i} does not fit in int32 ` +
              `(the engine stores integers as i32)`,
          );
        }
        out[i] = lo;
      }
      return { dtype, shape, data: out };
    }
    default:
      // planDecode has already refused every other dtype.
      throw new DTypeError(`unsupported dtype ${e.dtype} for tensor ${quoteName(e.name)} in ${e.file}`);
  }
}
