// safetensors header: the dtype table, and parsing + validation of the 8-byte length prefix and the JSON header.
//
// Layout of a file: u64 little-endian N, then N bytes of UTF-8 JSON (an object), then the data section. Each
// tensor entry is {dtype, shape, data_offsets: [begin, end)} with offsets relative to the data section start;
// the optional "__metadata__" entry is a string → string map.
//
// Validation follows the Rust reference reader and is a little stricter: every check fails with a FormatError
// whose message names the file ('<memory>' for bytes) and, where there is one, the tensor. Nothing here allocates
// memory in proportion to what a header *claims*, so absurd shapes are refused before any tensor is read.
//
// Tensor names are arbitrary strings: "__proto__", "constructor" and friends are ordinary names. Entries live in
// a Map and metadata in a null-prototype object, and fields are read as own properties only.

import { FormatError, ValueError, fmtShape } from '../errors.js';

/** The Rust reference's cap on the JSON header: 100 MB. */
export const DEFAULT_MAX_HEADER_BYTES = 100_000_000;

/**
 * Default cap on the bytes one `read()` may allocate for a tensor (the larger of the stored bytes and the decoded
 * host array): 2 GiB. That is above any single tensor of the models this engine targets (a 0.5B model's f32
 * embedding table is ≈ 545 MB) and at the size where typed arrays, GPU buffer bindings and single `fs` reads
 * (2 GiB − 1) stop being dependable. Raise it per file or per read with `maxTensorBytes`.
 */
export const DEFAULT_MAX_TENSOR_BYTES = 2 ** 31;

/** Every dtype the safetensors format defines, with its size in bits (sub-byte float formats included). */
export const SAFETENSORS_DTYPE_BITS: ReadonlyMap<string, number> = new Map([
  ['BOOL', 8],
  ['F4', 4],
  ['F6_E2M3', 6],
  ['F6_E3M2', 6],
  ['U8', 8],
  ['I8', 8],
  ['F8_E5M2', 8],
  ['F8_E4M3', 8],
  ['F8_E8M0', 8],
  ['F8_E4M3FNUZ', 8],
  ['F8_E5M2FNUZ', 8],
  ['I16', 16],
  ['U16', 16],
  ['F16', 16],
  ['BF16', 16],
  ['I32', 32],
  ['U32', 32],
  ['F32', 32],
  ['C64', 64],
  ['F64', 64],
  ['I64', 64],
  ['U64', 64],
]);

/** The safetensors dtypes this engine reads (F64 only with `allowLossy`); the rest are refused with a DTypeError. */
export const READABLE_DTYPES: readonly string[] = ['F32', 'F16', 'BF16', 'I32', 'I64', 'U8', 'BOOL', 'F64'];

/** One tensor as the header describes it. `byteOffset` is absolute (from the start of the file). */
export interface TensorEntry {
  readonly name: string;
  /** The safetensors dtype string, e.g. 'BF16'. */
  readonly dtype: string;
  readonly shape: readonly number[];
  /** Number of elements (product of the shape; 1 for a scalar). */
  readonly size: number;
  /** Absolute byte offset of the tensor's data in the file. */
  readonly byteOffset: number;
  readonly byteLength: number;
  /** The file the entry came from: its path, or '<memory>'. */
  readonly file: string;
}

/** A validated header. `entries` is in data order (ascending offsets); `metadata` has a null prototype. */
export interface ParsedHeader {
  readonly source: string;
  /** N, the JSON header's length in bytes. */
  readonly headerLength: number;
  /** Absolute offset of the data section: 8 + N. */
  readonly dataStart: number;
  /** fileSize − 8 − N. */
  readonly dataLength: number;
  readonly fileSize: number;
  readonly metadata: Readonly<Record<string, string>>;
  readonly entries: ReadonlyMap<string, TensorEntry>;
}

/** Options for header parsing. */
export interface HeaderOptions {
  /** Largest header length N accepted, in bytes. Default DEFAULT_MAX_HEADER_BYTES (100 MB). */
  maxHeaderBytes?: number;
}

/** Quotes a tensor name for a message (JSON-style, so odd characters stay visible; very long names are cut). */
export function quoteName(name: string): string {
  const q = JSON.stringify(name);
  return q.length > 160 ? `${q.slice(0, 150)}…"` : q;
}

/** Message prefix naming the file and, optionally, the tensor. */
export function where(source: string, name?: string): string {
  return name === undefined ? `safetensors ${source}` : `safetensors ${source}: tensor ${quoteName(name)}`;
}

/** Checks a non-negative safe-integer option, returning its default when absent. */
export function checkSizeOption(value: number | undefined, fallback: number, what: string): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new ValueError(`safetensors: option ${what} must be a non-negative safe integer, got ${String(value)}`);
  }
  return value;
}

/**
 * Reads N from the 8-byte prefix and checks it against the cap and the file size. Returns N as a number.
 * `prefix` must hold at least the first 8 bytes of the file.
 */
export function readHeaderLength(prefix: Uint8Array, fileSize: number, source: string, opts: HeaderOptions = {}): number {
  const maxHeader = checkSizeOption(opts.maxHeaderBytes, DEFAULT_MAX_HEADER_BYTES, 'maxHeaderBytes');
  if (fileSize < 8 || prefix.length < 8) {
    throw new FormatError(
      `${where(source)}: file is ${fileSize} bytes, too short for the 8-byte header length (truncated or not a safetensors file)`,
    );
  }
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(maxHeader)) {
    throw new FormatError(
      `${where(source)}: header length ${n} bytes exceeds the limit of ${maxHeader} bytes (option maxHeaderBytes); ` +
        `corrupt file or not a safetensors file`,
    );
  }
  const headerLength = Number(n);
  if (8 + headerLength > fileSize) {
    throw new FormatError(
      `${where(source)}: header length ${headerLength} runs past the end of the file ` +
        `(8 + ${headerLength} > ${fileSize} bytes; truncated file?)`,
    );
  }
  return headerLength;
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Parses and validates the JSON header. `headerBytes` are the N bytes after the prefix; `fileSize` is the size
 * of the whole file (prefix + header + data), which fixes the data section's length.
 */
export function parseHeader(headerBytes: Uint8Array, fileSize: number, source: string): ParsedHeader {
  let text: string;
  try {
    text = utf8.decode(headerBytes);
  } catch {
    throw new FormatError(`${where(source)}: header is not valid UTF-8`);
  }
  if (!text.startsWith('{')) {
    const shown = JSON.stringify(text.slice(0, 20));
    throw new FormatError(`${where(source)}: header must be a JSON object starting with '{', starts with ${shown}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new FormatError(`${where(source)}: header is not valid JSON (${(e as Error).message})`);
  }
  const dup = findDuplicateTopLevelKey(text);
  if (dup !== null) throw new FormatError(`${where(source, dup)}: listed twice in the header`);
  return validateHeader(json, headerBytes.length, fileSize, source);
}

/** True for a JSON object (not an array, not null). */
export function isJsonObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/** Own property of a parsed JSON object, never one inherited from Object.prototype. */
export function ownField(obj: Record<string, unknown>, key: string): unknown {
  return Object.hasOwn(obj, key) ? obj[key] : undefined;
}

/**
 * Validates a parsed header object against the file layout: N = `headerLength`, total size `fileSize`.
 * Pure: touches nothing but its arguments.
 */
export function validateHeader(json: unknown, headerLength: number, fileSize: number, source: string): ParsedHeader {
  if (!isJsonObject(json)) {
    throw new FormatError(`${where(source)}: header must be a JSON object, got ${jsonKind(json)}`);
  }
  const dataStart = 8 + headerLength;
  const dataLength = fileSize - dataStart;
  if (dataLength < 0) {
    throw new FormatError(`${where(source)}: header length ${headerLength} runs past the end of the file (${fileSize} bytes)`);
  }
  const metadata: Record<string, string> = Object.create(null);
  const raw: { name: string; dtype: string; shape: number[]; size: number; begin: number; end: number }[] = [];

  for (const name of Object.keys(json)) {
    const value = json[name];
    if (name === '__metadata__') {
      if (value === null) continue; // the Rust reader takes null as "no metadata"
      if (!isJsonObject(value)) {
        throw new FormatError(`${where(source)}: __metadata__ must be an object of strings, got ${jsonKind(value)}`);
      }
      for (const key of Object.keys(value)) {
        const v = value[key];
        if (typeof v !== 'string') {
          throw new FormatError(
            `${where(source)}: __metadata__ must map strings to strings, but key ${quoteName(key)} holds ${jsonKind(v)}`,
          );
        }
        metadata[key] = v;
      }
      continue;
    }
    raw.push(checkEntry(name, value, source));
  }

  // Layout: sorted by offsets, the tensors must tile [0, dataLength) exactly — no overlap, no hole, no tail.
  for (const r of raw) {
    if (r.end > dataLength) {
      throw new FormatError(
        `${where(source, r.name)}: data_offsets [${r.begin}, ${r.end}] run past the end of the file ` +
          `(the data section holds ${dataLength} bytes; truncated file?)`,
      );
    }
  }
  raw.sort((a, b) => a.begin - b.begin || a.end - b.end || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  let pos = 0;
  let prev: string | undefined;
  for (const r of raw) {
    if (r.begin < pos) {
      throw new FormatError(
        `${where(source, r.name)}: data_offsets [${r.begin}, ${r.end}] overlap tensor ${quoteName(prev!)} ` +
          `(which ends at ${pos})`,
      );
    }
    if (r.begin > pos) {
      const after = prev === undefined ? 'the start of the data section' : `tensor ${quoteName(prev)}`;
      throw new FormatError(
        `${where(source, r.name)}: data_offsets [${r.begin}, ${r.end}] leave a hole of ${r.begin - pos} bytes ` +
          `after ${after} (offsets must tile the data section exactly)`,
      );
    }
    pos = r.end;
    prev = r.name;
  }
  if (pos !== dataLength) {
    const after = prev === undefined ? 'a header with no tensors' : `the last tensor ${quoteName(prev)}`;
    throw new FormatError(
      `${where(source)}: ${dataLength - pos} bytes after ${after} are not covered by any tensor ` +
        `(data section is ${dataLength} bytes, tensors cover ${pos})`,
    );
  }

  const entries = new Map<string, TensorEntry>();
  for (const r of raw) {
    entries.set(
      r.name,
      Object.freeze({
        name: r.name,
        dtype: r.dtype,
        shape: Object.freeze(r.shape),
        size: r.size,
        byteOffset: dataStart + r.begin,
        byteLength: r.end - r.begin,
        file: source,
      }),
    );
  }
  return { source, headerLength, dataStart, dataLength, fileSize, metadata, entries };
}

/** Checks one entry's fields and its dtype × shape vs offsets. */
function checkEntry(
  name: string,
  value: unknown,
  source: string,
): { name: string; dtype: string; shape: number[]; size: number; begin: number; end: number } {
  const at = where(source, name);
  if (!isJsonObject(value)) {
    throw new FormatError(`${at}: entry must be an object {dtype, shape, data_offsets}, got ${jsonKind(value)}`);
  }
  const dtype = ownField(value, 'dtype');
  const shapeJson = ownField(value, 'shape');
  const offsets = ownField(value, 'data_offsets');
  if (dtype === undefined) throw new FormatError(`${at}: entry has no "dtype"`);
  if (shapeJson === undefined) throw new FormatError(`${at}: entry has no "shape"`);
  if (offsets === undefined) throw new FormatError(`${at}: entry has no "data_offsets"`);
  if (typeof dtype !== 'string') throw new FormatError(`${at}: "dtype" must be a string, got ${jsonKind(dtype)}`);
  const bits = SAFETENSORS_DTYPE_BITS.get(dtype);
  if (bits === undefined) {
    throw new FormatError(
      `${at}: unknown dtype ${JSON.stringify(dtype)} (known: ${[...SAFETENSORS_DTYPE_BITS.keys()].join(', ')})`,
    );
  }
  if (!Array.isArray(shapeJson)) throw new FormatError(`${at}: "shape" must be an array, got ${jsonKind(shapeJson)}`);
  const shape: number[] = [];
  for (let i = 0; i < shapeJson.length; i++) {
    const d: unknown = shapeJson[i];
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
      throw new FormatError(
        `${at}: shape dimension ${i} is ${typeof d === 'number' ? String(d) : jsonKind(d)}; ` +
          `dimensions must be non-negative safe integers`,
      );
    }
    shape.push(d);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2) {
    throw new FormatError(`${at}: "data_offsets" must be an array [begin, end], got ${jsonKind(offsets)}`);
  }
  const [begin, end] = offsets as unknown[];
  for (const o of [begin, end]) {
    if (typeof o !== 'number' || !Number.isSafeInteger(o) || o < 0) {
      throw new FormatError(
        `${at}: data_offsets must be non-negative safe integers, got [${offsets.map(String).join(', ')}]`,
      );
    }
  }
  const b = begin as number;
  const e = end as number;
  if (e < b) throw new FormatError(`${at}: data_offsets [${b}, ${e}] end before they begin`);

  // Element count with overflow checks; a zero dimension makes the tensor empty whatever the others are.
  let size = 1;
  if (shape.includes(0)) size = 0;
  else {
    for (const d of shape) {
      if (size > Number.MAX_SAFE_INTEGER / d) {
        throw new FormatError(
          `${at}: shape ${fmtShape(shape)} has more than 2^53 − 1 elements; absurd dimensions (corrupt header?)`,
        );
      }
      size *= d;
    }
  }
  let byteLength: number;
  if (bits % 8 === 0) {
    const bpe = bits / 8;
    if (size > Number.MAX_SAFE_INTEGER / bpe) {
      throw new FormatError(`${at}: shape ${fmtShape(shape)} with dtype ${dtype} needs more than 2^53 − 1 bytes`);
    }
    byteLength = size * bpe;
  } else {
    if (size > Number.MAX_SAFE_INTEGER / bits) {
      throw new FormatError(`${at}: shape ${fmtShape(shape)} with dtype ${dtype} needs more than 2^53 − 1 bits`);
    }
    const nbits = size * bits;
    if (nbits % 8 !== 0) {
      throw new FormatError(`${at}: ${size} elements of ${dtype} (${bits} bits each) do not end on a byte boundary`);
    }
    byteLength = nbits / 8;
  }
  if (e - b !== byteLength) {
    throw new FormatError(
      `${at}: dtype ${dtype} with shape ${fmtShape(shape)} needs ${byteLength} bytes, ` +
        `but data_offsets [${b}, ${e}] hold ${e - b}`,
    );
  }
  return { name, dtype, shape, size, begin: b, end: e };
}

/** A short description of a JSON value's kind for messages. */
export function jsonKind(x: unknown): string {
  if (x === null) return 'null';
  if (Array.isArray(x)) return 'an array';
  if (typeof x === 'object') return 'an object';
  if (typeof x === 'string') return `the string ${quoteName(x)}`;
  if (typeof x === 'number' || typeof x === 'boolean') return `${typeof x} ${String(x)}`;
  return typeof x;
}

// ---- duplicate keys -------------------------------------------------------------------------------------------
// JSON.parse keeps the last of two equal keys silently. A header that lists a tensor twice is corrupt, so the top
// level of the (already validated) JSON text is scanned for repeated keys.

function findDuplicateTopLevelKey(text: string): string | null {
  const n = text.length;
  const seen = new Set<string>();
  let i = 1; // text[0] === '{'
  const skipWs = (): void => {
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) i++;
      else break;
    }
  };
  while (i < n) {
    skipWs();
    const c = text[i];
    if (c === '}') return null;
    if (c === ',') {
      i++;
      continue;
    }
    if (c !== '"') return null; // cannot happen for valid JSON; stop scanning rather than loop
    const start = i;
    i = skipString(text, i);
    const literal = text.slice(start, i);
    const key = literal.includes('\\') ? (JSON.parse(literal) as string) : literal.slice(1, -1);
    if (seen.has(key)) return key;
    seen.add(key);
    skipWs();
    i++; // ':'
    skipWs();
    i = skipValue(text, i);
  }
  return null;
}

/** `text[i]` is an opening quote; returns the index just past the closing quote. */
function skipString(text: string, i: number): number {
  const n = text.length;
  i++;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === 0x5c) i += 2;
    else if (c === 0x22) return i + 1;
    else i++;
  }
  return n;
}

/** Skips one JSON value starting at `i`; returns the index just past it (at a ',' or '}' for a primitive). */
function skipValue(text: string, i: number): number {
  const n = text.length;
  let depth = 0;
  while (i < n) {
    const c = text[i];
    if (c === '"') {
      i = skipString(text, i);
      if (depth === 0) return i;
      continue;
    }
    if (c === '{' || c === '[') depth++;
    else if (c === '}' || c === ']') {
      if (depth === 0) return i;
      depth--;
      if (depth === 0) return i + 1;
    } else if (c === ',' && depth === 0) return i;
    i++;
  }
  return n;
}
