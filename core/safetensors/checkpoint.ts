// Checkpoint: one weight source over a single .safetensors file or a sharded Hugging Face-style checkpoint.
//
// Accepted inputs to `Checkpoint.open`:
//   - a `.safetensors` file;
//   - a `model.safetensors.index.json`-style index file ({"metadata": {...}, "weight_map": {"name": "shard"}});
//   - a directory holding `model.safetensors` (preferred when both exist, as transformers does) or
//     `model.safetensors.index.json`.
// A sharded checkpoint is validated when opened: every shard exists and lies inside the checkpoint directory,
// every shard's header is valid, no tensor is stored in two shards, every name in the index is in the shard it
// points to, and every tensor in a shard is listed in the index under that shard. Tensors are read lazily.

import { FormatError, ValueError } from '../errors.js';
import { nodeBuiltin } from '../platform.js';
import type { ModelSource } from './source.js';
import {
  DEFAULT_MAX_HEADER_BYTES,
  checkSizeOption,
  isJsonObject,
  jsonKind,
  ownField,
  quoteName,
  type TensorEntry,
} from './header.js';
import { SafetensorsFile, missingTensor, type HostTensor, type OpenOptions, type ReadOptions } from './reader.js';

/** File name of a single-file checkpoint inside a directory. */
export const SINGLE_FILE_NAME = 'model.safetensors';
/** File name of a sharded checkpoint's index inside a directory. */
export const INDEX_FILE_NAME = 'model.safetensors.index.json';

const utf8 = new TextDecoder('utf-8', { fatal: true });

interface ParsedIndex {
  readonly metadata: Readonly<Record<string, unknown>> | null;
  /** tensor name → shard file name as written in the index. */
  readonly weightMap: ReadonlyMap<string, string>;
}

/** Parses and checks an index file's JSON text. Pure; `indexPath` is only used in messages. */
export function parseIndex(text: string, indexPath: string): ParsedIndex {
  const at = `checkpoint index ${indexPath}`;
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new FormatError(`${at}: not valid JSON (${(e as Error).message})`);
  }
  if (!isJsonObject(json)) throw new FormatError(`${at}: must be a JSON object, got ${jsonKind(json)}`);
  const wm = ownField(json, 'weight_map');
  if (wm === undefined) throw new FormatError(`${at}: has no "weight_map"`);
  if (!isJsonObject(wm)) throw new FormatError(`${at}: "weight_map" must be an object, got ${jsonKind(wm)}`);
  const weightMap = new Map<string, string>();
  for (const name of Object.keys(wm)) {
    const shard = wm[name];
    if (typeof shard !== 'string' || shard === '') {
      throw new FormatError(`${at}: tensor ${quoteName(name)} maps to ${jsonKind(shard)}, expected a shard file name`);
    }
    weightMap.set(name, shard);
  }
  const meta = ownField(json, 'metadata');
  let metadata: Record<string, unknown> | null = null;
  if (meta !== undefined && meta !== null) {
    if (!isJsonObject(meta)) throw new FormatError(`${at}: "metadata" must be an object, got ${jsonKind(meta)}`);
    metadata = Object.create(null) as Record<string, unknown>;
    for (const k of Object.keys(meta)) metadata[k] = meta[k];
  }
  return { metadata, weightMap };
}

// Node's fs and path, fetched on first use (core/platform.ts): opening by path is Node-only; fromSource is not.
const nodeFsp = (): typeof import('node:fs').promises => nodeBuiltin<typeof import('node:fs')>('node:fs', 'Checkpoint.open(path)').promises;
const nodePathModule = (): typeof import('node:path') => nodeBuiltin<typeof import('node:path')>('node:path', 'Checkpoint.open(path)');

async function statOrNull(p: string): Promise<import('node:fs').Stats | null> {
  try {
    return await nodeFsp().stat(p);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ENOTDIR') return null;
    throw e;
  }
}

/** A single or sharded safetensors checkpoint, read lazily, tensor by tensor. */
export class Checkpoint {
  /** The path given to `open`. */
  readonly path: string;
  /** The index file of a sharded checkpoint; null for a single file. */
  readonly indexPath: string | null;
  /** The index's "metadata" object (null-prototype; e.g. total_size), or null. */
  readonly indexMetadata: Readonly<Record<string, unknown>> | null;
  /** `__metadata__` of the single file, or of the first shard. */
  readonly metadata: Readonly<Record<string, string>>;
  private readonly files: readonly SafetensorsFile[];
  private readonly owner: ReadonlyMap<string, SafetensorsFile>;
  private closed = false;

  private constructor(
    path: string,
    indexPath: string | null,
    indexMetadata: Readonly<Record<string, unknown>> | null,
    files: SafetensorsFile[],
    owner: Map<string, SafetensorsFile>,
  ) {
    this.path = path;
    this.indexPath = indexPath;
    this.indexMetadata = indexMetadata;
    this.files = files;
    this.owner = owner;
    this.metadata = files[0]?.metadata ?? Object.create(null);
  }

  /** Opens a checkpoint (file, index file or directory; see the top of this file) and validates it. */
  static async open(pathOrDir: string, opts: OpenOptions = {}): Promise<Checkpoint> {
    if (typeof pathOrDir !== 'string' || pathOrDir === '') throw new ValueError(`Checkpoint.open() needs a path`);
    const fsp = nodeFsp();
    const nodePath = nodePathModule();
    const st = await statOrNull(pathOrDir);
    if (st === null) throw new ValueError(`checkpoint: no such file or directory: ${pathOrDir}`);
    if (st.isDirectory()) {
      const single = nodePath.join(pathOrDir, SINGLE_FILE_NAME);
      if ((await statOrNull(single))?.isFile()) return Checkpoint.openSingle(pathOrDir, single, opts);
      const index = nodePath.join(pathOrDir, INDEX_FILE_NAME);
      if ((await statOrNull(index))?.isFile()) return Checkpoint.openSharded(pathOrDir, index, opts);
      const found = (await fsp.readdir(pathOrDir)).filter((f) => /safetensors|\.json$/.test(f)).slice(0, 8);
      throw new FormatError(
        `checkpoint ${pathOrDir}: directory holds neither ${SINGLE_FILE_NAME} nor ${INDEX_FILE_NAME}` +
          (found.length ? ` (related files: ${found.join(', ')})` : ''),
      );
    }
    if (pathOrDir.endsWith('.json')) return Checkpoint.openSharded(pathOrDir, pathOrDir, opts);
    return Checkpoint.openSingle(pathOrDir, pathOrDir, opts);
  }

  private static async openSingle(given: string, file: string, opts: OpenOptions): Promise<Checkpoint> {
    const f = await SafetensorsFile.open(file, opts);
    const owner = new Map<string, SafetensorsFile>();
    for (const n of f.names()) owner.set(n, f);
    return new Checkpoint(given, null, null, [f], owner);
  }

  private static async openSharded(given: string, indexPath: string, opts: OpenOptions): Promise<Checkpoint> {
    const at = `checkpoint index ${indexPath}`;
    const fsp = nodeFsp();
    const nodePath = nodePathModule();
    const maxBytes = checkSizeOption(opts.maxHeaderBytes, DEFAULT_MAX_HEADER_BYTES, 'maxHeaderBytes');
    const st = await fsp.stat(indexPath);
    if (st.size > maxBytes) throw new FormatError(`${at}: ${st.size} bytes, over the limit of ${maxBytes} bytes`);
    let text: string;
    try {
      const buf = await fsp.readFile(indexPath);
      text = utf8.decode(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength));
    } catch (e) {
      if (e instanceof TypeError) throw new FormatError(`${at}: not valid UTF-8`);
      throw e;
    }
    const index = parseIndex(text, indexPath);
    const dir = nodePath.dirname(indexPath);

    // Group tensors by shard, resolving each shard inside the checkpoint directory.
    const byShard = new Map<string, string[]>();
    for (const [name, shard] of index.weightMap) {
      let names = byShard.get(shard);
      if (names === undefined) {
        const rel = nodePath.relative(dir, nodePath.resolve(dir, shard));
        if (nodePath.isAbsolute(shard) || rel === '' || rel.startsWith('..') || nodePath.isAbsolute(rel)) {
          throw new FormatError(`${at}: shard ${quoteName(shard)} (for tensor ${quoteName(name)}) lies outside ${dir}`);
        }
        byShard.set(shard, (names = []));
      }
      names.push(name);
    }

    const shardFiles = new Map<string, SafetensorsFile>();
    try {
      for (const shard of [...byShard.keys()].sort()) {
        const full = nodePath.join(dir, shard);
        const names = byShard.get(shard)!;
        const sst = await statOrNull(full);
        if (sst === null || !sst.isFile()) {
          const others = names.length > 1 ? ` and ${names.length - 1} other tensors` : '';
          throw new FormatError(
            `${at}: shard ${full} ${sst === null ? 'does not exist' : 'is not a file'} ` +
              `(it should hold tensor ${quoteName(names[0]!)}${others})`,
          );
        }
        shardFiles.set(shard, await SafetensorsFile.open(full, opts));
      }

      // Contents must agree with the index, in both directions, and no tensor may live in two shards.
      const owner = new Map<string, SafetensorsFile>();
      for (const f of shardFiles.values()) {
        for (const name of f.names()) {
          const other = owner.get(name);
          if (other !== undefined) {
            throw new FormatError(`${at}: tensor ${quoteName(name)} is stored in two shards, ${other.path} and ${f.path}`);
          }
          owner.set(name, f);
        }
      }
      for (const [name, shard] of index.weightMap) {
        const f = shardFiles.get(shard)!;
        if (!f.has(name)) {
          const actual = owner.get(name);
          throw new FormatError(
            `${at}: maps tensor ${quoteName(name)} to shard ${f.path}, which does not contain it` +
              (actual ? ` (it is in ${actual.path})` : ''),
          );
        }
      }
      for (const [name, f] of owner) {
        if (!index.weightMap.has(name)) {
          throw new FormatError(`${at}: tensor ${quoteName(name)} in shard ${f.path} is not listed in the index`);
        }
      }
      return new Checkpoint(given, indexPath, index.metadata, [...shardFiles.values()], owner);
    } catch (e) {
      await Promise.all([...shardFiles.values()].map((f) => f.close().catch(() => {})));
      throw e;
    }
  }

  /**
   * Opens a checkpoint from a ModelSource (e.g. fetchModelSource: HTTP range reads, so a large checkpoint is never
   * one buffer): `model.safetensors`, else a sharded `model.safetensors.index.json` with its shards, validated as
   * `open` validates them. Tensors are read lazily, each with its own range read(s).
   */
  static async fromSource(src: ModelSource, opts: OpenOptions = {}): Promise<Checkpoint> {
    const single = await src.openFile(SINGLE_FILE_NAME);
    if (single) {
      const f = await SafetensorsFile.fromSource(single, src.describe(SINGLE_FILE_NAME), opts);
      const owner = new Map<string, SafetensorsFile>();
      for (const n of f.names()) owner.set(n, f);
      return new Checkpoint(src.label, null, null, [f], owner);
    }
    const indexLabel = src.describe(INDEX_FILE_NAME);
    const bytes = await src.readFile(INDEX_FILE_NAME);
    if (!bytes) throw new FormatError(`checkpoint ${src.label}: has neither ${SINGLE_FILE_NAME} nor ${INDEX_FILE_NAME}`);
    const at = `checkpoint index ${indexLabel}`;
    const maxBytes = checkSizeOption(opts.maxHeaderBytes, DEFAULT_MAX_HEADER_BYTES, 'maxHeaderBytes');
    if (bytes.length > maxBytes) throw new FormatError(`${at}: ${bytes.length} bytes, over the limit of ${maxBytes} bytes`);
    let text: string;
    try {
      text = utf8.decode(bytes);
    } catch {
      throw new FormatError(`${at}: not valid UTF-8`);
    }
    const index = parseIndex(text, indexLabel);
    const byShard = new Map<string, string[]>();
    for (const [name, shard] of index.weightMap) {
      if (!/^[A-Za-z0-9._-]+$/.test(shard) || shard === '.' || shard === '..') {
        throw new FormatError(`${at}: shard ${quoteName(shard)} (for tensor ${quoteName(name)}) is not a plain file name in the checkpoint folder`);
      }
      const names = byShard.get(shard);
      if (names) names.push(name);
      else byShard.set(shard, [name]);
    }
    const files: SafetensorsFile[] = [];
    try {
      const owner = new Map<string, SafetensorsFile>();
      for (const shard of [...byShard.keys()].sort()) {
        const bs = await src.openFile(shard);
        if (!bs) throw new FormatError(`${at}: shard ${src.describe(shard)} does not exist (it should hold tensor ${quoteName(byShard.get(shard)![0]!)})`);
        const f = await SafetensorsFile.fromSource(bs, src.describe(shard), opts);
        files.push(f);
        for (const name of f.names()) {
          const other = owner.get(name);
          if (other) throw new FormatError(`${at}: tensor ${quoteName(name)} is stored in two shards, ${other.path} and ${f.path}`);
          if (index.weightMap.get(name) !== shard) throw new FormatError(`${at}: tensor ${quoteName(name)} in shard ${f.path} is ${index.weightMap.has(name) ? `mapped to ${index.weightMap.get(name)}` : 'not listed in the index'}`);
          owner.set(name, f);
        }
      }
      for (const [name, shard] of index.weightMap) {
        if (!owner.has(name)) throw new FormatError(`${at}: maps tensor ${quoteName(name)} to shard ${src.describe(shard)}, which does not contain it`);
      }
      return new Checkpoint(src.label, indexLabel, index.metadata, files, owner);
    } catch (e) {
      await Promise.all(files.map((f) => f.close().catch(() => {})));
      throw e;
    }
  }

  /** Paths of the files that hold the tensors (one for a single-file checkpoint). */
  get shards(): string[] {
    return this.files.map((f) => f.path);
  }

  /** Every tensor name: shard by shard (shards in name order), each in data order. */
  names(): string[] {
    return [...this.owner.keys()];
  }

  has(name: string): boolean {
    return this.owner.has(name);
  }

  /** The header entry of a tensor; `entry.file` is the shard that holds it. */
  entry(name: string): TensorEntry {
    return this.fileOf(name).entry(name);
  }

  /** Path of the shard that holds a tensor. */
  shardOf(name: string): string {
    return this.fileOf(name).path;
  }

  /** Reads and decodes one tensor (see SafetensorsFile.read). */
  read(name: string, opts: ReadOptions = {}): Promise<HostTensor> {
    return this.fileOf(name).read(name, opts);
  }

  /** Bytes [begin, begin + length) of a tensor's stored data (see SafetensorsFile.readRange). */
  readRange(name: string, begin: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    return this.fileOf(name).readRange(name, begin, length, into);
  }

  /** A tensor's raw stored bytes. */
  readRaw(name: string, opts: Pick<ReadOptions, 'maxTensorBytes'> = {}): Promise<Uint8Array> {
    return this.fileOf(name).readRaw(name, opts);
  }

  /** Closes every shard. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.files.map((f) => f.close()));
  }

  private fileOf(name: string): SafetensorsFile {
    const f = this.owner.get(name);
    if (f === undefined) throw missingTensor(this.path, name, this.names());
    return f;
  }
}
