// Encoding and writing safetensors files.
//
// Tensors are laid out like the Rust reference does: sorted by element size (largest first) then by name, so each
// tensor's data starts at a multiple of its element size; the JSON header is padded with spaces to a multiple of
// 8 bytes, so the data section itself starts 8-aligned. f32 → F32, i32 → I32, packed f16/bf16 → F16/BF16.
// `writeSafetensors` writes to a temporary file beside the target and renames it into place, so a failure never
// leaves a partial file under the target name.

import type { FileHandle } from 'node:fs/promises';
import { nodeBuiltin, nodeFs } from '../platform.js';
import { bytesPerElement, checkHostArray, isDType, type DType } from '../dtype.js';
import { ValueError, fmtShape } from '../errors.js';
import { DEFAULT_MAX_HEADER_BYTES, isJsonObject, quoteName } from './header.js';
import type { HostTensor } from './reader.js';

/** Tensors to write: `[name, tensor]` pairs (a Map, an array, a generator) or a plain record of them. */
export type TensorSet = Iterable<readonly [string, HostTensor]> | Readonly<Record<string, HostTensor>>;

/** `__metadata__` to write: string → string, as a record or a Map. */
export type MetadataInput = Readonly<Record<string, string>> | ReadonlyMap<string, string>;

const ST_DTYPE: Record<DType, string> = { f32: 'F32', i32: 'I32', f16: 'F16', bf16: 'BF16' };
const WRITE_CHUNK = 64 * 1024 * 1024;

interface PlannedTensor {
  readonly name: string;
  readonly tensor: HostTensor;
  readonly byteLength: number;
}

/** A validated layout: the prefix + padded header bytes, and the tensors in data order. */
interface Plan {
  readonly head: Uint8Array;
  readonly items: readonly PlannedTensor[];
  readonly dataLength: number;
}

function toPairs(tensors: TensorSet): [string, HostTensor][] {
  if (tensors === null || typeof tensors !== 'object') {
    throw new ValueError(`safetensors: tensors must be an iterable of [name, tensor] pairs or a record of tensors`);
  }
  if (typeof (tensors as Iterable<unknown>)[Symbol.iterator] === 'function') {
    const out: [string, HostTensor][] = [];
    for (const pair of tensors as Iterable<readonly [string, HostTensor]>) {
      if (!Array.isArray(pair) || pair.length !== 2) {
        throw new ValueError(`safetensors: each item must be a [name, tensor] pair`);
      }
      out.push([pair[0], pair[1]]);
    }
    return out;
  }
  const rec = tensors as Readonly<Record<string, HostTensor>>;
  return Object.keys(rec).map((k) => [k, rec[k]!]);
}

function checkTensor(name: unknown, t: HostTensor): number {
  if (typeof name !== 'string') throw new ValueError(`safetensors: tensor names must be strings, got ${typeof name}`);
  const at = `safetensors: tensor ${quoteName(name)}`;
  if (name === '__metadata__') throw new ValueError(`${at}: the name __metadata__ is reserved for the metadata map`);
  if (t === null || typeof t !== 'object') throw new ValueError(`${at}: expected a {dtype, shape, data} tensor`);
  if (!isDType(t.dtype)) throw new ValueError(`${at}: unknown dtype ${String(t.dtype)} (f32, f16, bf16 or i32)`);
  if (!Array.isArray(t.shape)) throw new ValueError(`${at}: shape must be an array`);
  let size = 1;
  for (const d of t.shape) {
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
      throw new ValueError(`${at}: shape ${fmtShape(t.shape)} must hold non-negative integers`);
    }
    size *= d;
  }
  if (!Number.isSafeInteger(size)) throw new ValueError(`${at}: shape ${fmtShape(t.shape)} is too large`);
  checkHostArray(t.data, t.dtype, at);
  if (t.data.length !== size) {
    throw new ValueError(`${at}: shape ${fmtShape(t.shape)} holds ${size} elements but data has ${t.data.length}`);
  }
  return size * bytesPerElement(t.dtype);
}

function metadataJson(metadata: MetadataInput | undefined): string | undefined {
  if (metadata === undefined) return undefined;
  let pairs: [string, string][];
  if (metadata instanceof Map) pairs = [...(metadata as ReadonlyMap<string, string>).entries()];
  else if (isJsonObject(metadata)) {
    const rec = metadata as Readonly<Record<string, string>>;
    pairs = Object.keys(rec).map((k) => [k, rec[k]!]);
  } else throw new ValueError(`safetensors: metadata must be a record or a Map of strings`);
  pairs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  for (const [k, v] of pairs) {
    if (typeof k !== 'string' || typeof v !== 'string') {
      throw new ValueError(`safetensors: metadata must map strings to strings; key ${String(k)} holds ${typeof v}`);
    }
  }
  return `{${pairs.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(',')}}`;
}

function plan(tensors: TensorSet, metadata: MetadataInput | undefined): Plan {
  const pairs = toPairs(tensors);
  const seen = new Set<string>();
  const items: { name: string; tensor: HostTensor; byteLength: number; bpe: number }[] = [];
  for (const [name, tensor] of pairs) {
    const byteLength = checkTensor(name, tensor);
    if (seen.has(name)) throw new ValueError(`safetensors: tensor ${quoteName(name)} is given twice`);
    seen.add(name);
    items.push({ name, tensor, byteLength, bpe: bytesPerElement(tensor.dtype) });
  }
  items.sort((a, b) => b.bpe - a.bpe || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));

  const parts: string[] = [];
  const meta = metadataJson(metadata);
  if (meta !== undefined) parts.push(`"__metadata__":${meta}`);
  let offset = 0;
  for (const it of items) {
    const entry = { dtype: ST_DTYPE[it.tensor.dtype], shape: it.tensor.shape, data_offsets: [offset, offset + it.byteLength] };
    parts.push(`${JSON.stringify(it.name)}:${JSON.stringify(entry)}`);
    offset += it.byteLength;
  }
  const json = `{${parts.join(',')}}`;
  const jsonBytes = new TextEncoder().encode(json);
  const padded = Math.ceil(jsonBytes.length / 8) * 8;
  if (padded > DEFAULT_MAX_HEADER_BYTES) {
    throw new ValueError(`safetensors: header would be ${padded} bytes, over the ${DEFAULT_MAX_HEADER_BYTES}-byte limit readers accept`);
  }
  const head = new Uint8Array(8 + padded).fill(0x20, 8);
  new DataView(head.buffer).setBigUint64(0, BigInt(padded), true);
  head.set(jsonBytes, 8);
  return { head, items, dataLength: offset };
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** The tensor's data as little-endian bytes (a view on little-endian hosts, a copy otherwise). */
function tensorBytes(t: HostTensor): Uint8Array {
  const d = t.data;
  if (LITTLE_ENDIAN) return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
  const out = new Uint8Array(d.byteLength);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < d.length; i++) {
    if (d instanceof Float32Array) dv.setFloat32(i * 4, d[i]!, true);
    else if (d instanceof Int32Array) dv.setInt32(i * 4, d[i]!, true);
    else dv.setUint16(i * 2, d[i]!, true);
  }
  return out;
}

/** Encodes tensors (and optional `__metadata__`) into the bytes of a safetensors file. */
export function encodeSafetensors(tensors: TensorSet, metadata?: MetadataInput): Uint8Array {
  const p = plan(tensors, metadata);
  const out = new Uint8Array(p.head.length + p.dataLength);
  out.set(p.head, 0);
  let pos = p.head.length;
  for (const it of p.items) {
    out.set(tensorBytes(it.tensor), pos);
    pos += it.byteLength;
  }
  return out;
}

async function writeAll(handle: FileHandle, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    const n = Math.min(WRITE_CHUNK, bytes.length - done);
    const { bytesWritten } = await handle.write(bytes, done, n);
    done += bytesWritten;
  }
}

/**
 * Writes a safetensors file, streaming tensor by tensor. Everything is validated before the disk is touched; the
 * data goes to a temporary file in the same directory, is flushed, then renamed over `path`. On failure the
 * temporary file is removed and `path` is left as it was.
 */
export async function writeSafetensors(path: string, tensors: TensorSet, metadata?: MetadataInput): Promise<void> {
  if (typeof path !== 'string' || path === '') throw new ValueError(`safetensors: writeSafetensors() needs a path`);
  const p = plan(tensors, metadata);
  const fsp = nodeFs('writeSafetensors').promises;
  const { randomBytes } = nodeBuiltin<typeof import('node:crypto')>('node:crypto', 'writeSafetensors');
  const tmp = `${path}.${process.pid}-${randomBytes(6).toString('hex')}.tmp`;
  let handle: FileHandle | undefined;
  try {
    handle = await fsp.open(tmp, 'wx');
    await writeAll(handle, p.head);
    for (const it of p.items) await writeAll(handle, tensorBytes(it.tensor));
    await handle.sync();
    await handle.close();
    handle = undefined;
    await fsp.rename(tmp, path);
  } catch (e) {
    if (handle !== undefined) await handle.close().catch(() => {});
    await fsp.rm(tmp, { force: true }).catch(() => {});
    throw e;
  }
}
