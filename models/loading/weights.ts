// Model weights, family-independent: the spec of a tensor (name, shape, kind), validation of a checkpoint or an
// in-memory weight set against a list of specs (one error naming every missing, unexpected, mis-shaped or
// unreadable tensor), and upload to a backend. Each model family declares its specs once (models/<family>/
// weights.ts); the graphs look tensors up by the declared names only.
//
// Storage dtypes: Linear weights and the token embedding table ('matrix' and 'embedding' kinds) may stay packed
// f16/bf16 (option keepPacked, default on): matmul and embedding widen them inside the kernel. Everything else
// (norm scales, biases, the patch-embedding convolution, position embeddings) is widened to f32 at load, because
// the ops that consume them take f32.

import type { Backend } from '../../core/backend.js';
import { narrowFromF32, widenToF32, type DType, type HostArray } from '../../core/dtype.js';
import { FormatError, ValueError, fmtShape } from '../../core/errors.js';
import { formatBytes as fmtBytes } from '../../core/cost.js';
import { createRng, hashString } from '../../core/rng.js';
import { keep } from '../../core/scope.js';
import { Tensor } from '../../core/tensor.js';
import { Checkpoint } from '../../core/safetensors/checkpoint.js';
import type { HostTensor } from '../../core/safetensors/reader.js';
import { tensor, writeSlice } from '../../ops/index.js';

/** matrix: a Linear weight [out, in]; embedding: the token table; vector: norm scale/shift or bias;
 *  conv: the patch-embedding kernel; table: a position/frame embedding added to activations. */
export type WeightKind = 'matrix' | 'embedding' | 'vector' | 'conv' | 'table';

export interface WeightSpec {
  name: string;
  shape: number[];
  kind: WeightKind;
  /** May be absent from a checkpoint (lavi.frame_embedding: only video needs it). */
  optional?: boolean;
}

/** Kinds that may stay packed f16/bf16 on the backend. */
export const PACKABLE_KINDS: readonly WeightKind[] = ['matrix', 'embedding'];

export function weightSpec(name: string, shape: number[], kind: WeightKind, optional = false): WeightSpec {
  return optional ? { name, shape, kind, optional } : { name, shape, kind };
}

/** Every WeightSpec inside a family's declaration object (nested objects and arrays), in declaration order. */
export function flattenSpecs(table: unknown, out: WeightSpec[] = []): WeightSpec[] {
  if (table === null || table === undefined) return out;
  if (Array.isArray(table)) {
    for (const t of table) flattenSpecs(t, out);
  } else if (typeof table === 'object') {
    const o = table as Record<string, unknown>;
    if (typeof o.name === 'string' && Array.isArray(o.shape) && typeof o.kind === 'string') out.push(o as unknown as WeightSpec);
    else for (const v of Object.values(o)) flattenSpecs(v, out);
  }
  return out;
}

export type NamePredicate = (name: string) => boolean;

export interface ValidateOptions {
  /** Further names to accept and skip. */
  ignore?: (RegExp | NamePredicate)[];
}

interface Available {
  shape: readonly number[];
  /** Engine or safetensors dtype string. */
  dtype: string;
}

export interface SpecCheck {
  specs: readonly WeightSpec[];
  /** Names a checkpoint may hold that the graph does not use (accepted and skipped). */
  tolerated?: readonly NamePredicate[];
  /** One line describing the config, for the error's heading. */
  describe: string;
  /** Extra hint lines, given the missing and unexpected names. */
  hints?: (missing: string[], unexpected: string[]) => string[];
}

const FLOAT_DTYPES = new Set(['f32', 'f16', 'bf16', 'F32', 'F16', 'BF16']);

/** Checks `available` against the specs; throws one FormatError listing every problem. Returns skipped names. */
export function validateSpecs(check: SpecCheck, available: ReadonlyMap<string, Available>, source: string, opts: ValidateOptions = {}): string[] {
  const expected = new Map(check.specs.map((s) => [s.name, s]));
  const missing: string[] = [];
  const misShaped: string[] = [];
  const badDType: string[] = [];
  const unexpected: string[] = [];
  const ignored: string[] = [];
  for (const s of check.specs) {
    const a = available.get(s.name);
    if (!a) {
      if (!s.optional) missing.push(`${s.name} ${fmtShape(s.shape)}`);
      continue;
    }
    if (a.shape.length !== s.shape.length || a.shape.some((x, i) => x !== s.shape[i])) {
      misShaped.push(`${s.name}: ${fmtShape(a.shape)}, expected ${fmtShape(s.shape)}`);
    }
    if (!FLOAT_DTYPES.has(a.dtype)) badDType.push(`${s.name}: ${a.dtype} (need F32, F16 or BF16)`);
  }
  const ignore = [...(check.tolerated ?? []), ...(opts.ignore ?? []).map((p) => (p instanceof RegExp ? (n: string) => p.test(n) : p))];
  for (const [name, a] of available) {
    if (expected.has(name)) continue;
    if (ignore.some((f) => f(name))) ignored.push(name);
    else unexpected.push(`${name} ${fmtShape(a.shape)}`);
  }
  const problems = missing.length + misShaped.length + badDType.length + unexpected.length;
  if (problems) {
    const lines = [`${source}: ${problems} problem${problems > 1 ? 's' : ''} with the weights for this config (${check.describe}):`];
    const list = (title: string, items: string[]) => {
      if (!items.length) return;
      const shown = items.slice(0, 40);
      lines.push(`  ${title} (${items.length}):`, ...shown.map((s) => `    ${s}`));
      if (items.length > shown.length) lines.push(`    … and ${items.length - shown.length} more`);
    };
    list('missing', missing);
    list('unexpected', unexpected);
    list('wrong shape', misShaped);
    list('unsupported dtype', badDType);
    lines.push(...(check.hints?.(missing, unexpected) ?? []).map((h) => `  (${h})`));
    throw new FormatError(lines.join('\n'));
  }
  return ignored;
}

// ---- weights on a backend --------------------------------------------------------------------------------

/** The model's tensors on one backend, by name. */
export class ModelWeights {
  private readonly map: Map<string, Tensor>;
  /** Checkpoint names accepted but not loaded. */
  readonly ignored: readonly string[];

  constructor(map: Map<string, Tensor>, ignored: readonly string[] = []) {
    this.map = map;
    this.ignored = ignored;
    for (const t of map.values()) keep(t);
  }

  get(name: string): Tensor {
    const t = this.map.get(name);
    if (!t) throw new ValueError(`weights: no tensor named '${name}'`);
    return t;
  }

  /** The tensor, or null when it is absent (optional weights). */
  maybe(name: string): Tensor | null {
    return this.map.get(name) ?? null;
  }

  has(name: string): boolean {
    return this.map.has(name);
  }

  names(): string[] {
    return [...this.map.keys()];
  }

  /** Bytes held on the backend, by storage dtype. */
  bytes(): number {
    let n = 0;
    for (const t of this.map.values()) n += t.size * (t.dtype === 'f16' || t.dtype === 'bf16' ? 2 : 4);
    return n;
  }

  /** Storage dtypes and their tensor counts. */
  dtypes(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const t of this.map.values()) out[t.dtype] = (out[t.dtype] ?? 0) + 1;
    return out;
  }

  parameterCount(): number {
    let n = 0;
    for (const t of this.map.values()) n += t.size;
    return n;
  }

  dispose(): void {
    for (const t of this.map.values()) t.dispose();
    this.map.clear();
  }
}

export interface UploadOptions extends ValidateOptions {
  /** Keep f16/bf16 Linear weights and the embedding table packed (default true); false widens all to f32. */
  keepPacked?: boolean;
  /** Host bytes one checkpoint read moves at most (default 32 MiB): larger tensors load in runs of rows. */
  pieceBytes?: number;
}

export function storageDType(kind: WeightKind, stored: string, keepPacked: boolean): DType {
  return keepPacked && PACKABLE_KINDS.includes(kind) && (stored === 'f16' || stored === 'bf16' || stored === 'F16' || stored === 'BF16')
    ? (stored.toLowerCase() as DType)
    : 'f32';
}

/** Bytes the specs take on a backend once loaded (stored dtypes as given, f32 where widened). */
export function bytesOnBackend(specs: readonly WeightSpec[], storedDType: (name: string) => string | undefined, keepPacked: boolean): number {
  let n = 0;
  for (const s of specs) {
    const st = storedDType(s.name);
    if (st === undefined) continue;
    const dt = storageDType(s.kind, st, keepPacked);
    n += s.shape.reduce((a, b) => a * b, 1) * (dt === 'f32' ? 4 : 2);
  }
  return n;
}

function hostToBackend(backend: Backend, h: HostTensor, want: DType): Tensor {
  let data: HostArray = h.data;
  if (want === 'f32' && (h.dtype === 'f16' || h.dtype === 'bf16')) data = widenToF32(h.data as Uint16Array, h.dtype);
  return tensor(backend, data, h.shape, want);
}

/**
 * Loads the specs from one or more checkpoint directories (model.safetensors or a sharded index in each; a name
 * may live in only one of them) onto `backend`, validating everything first.
 */
export async function loadSpecs(sources: readonly (string | Checkpoint)[], check: SpecCheck, backend: Backend, opts: UploadOptions = {}): Promise<ModelWeights> {
  const keepPacked = opts.keepPacked ?? true;
  const ckpts: Checkpoint[] = [];
  // A directory is opened (and closed) here; an open Checkpoint (e.g. Checkpoint.fromSource over fetch) is the
  // caller's to close.
  const dirs = sources.map((s) => (typeof s === 'string' ? s : s.path));
  try {
    for (const s of sources) ckpts.push(typeof s === 'string' ? await Checkpoint.open(s) : s);
    const owner = new Map<string, Checkpoint>();
    const available = new Map<string, Available>();
    for (let i = 0; i < ckpts.length; i++) {
      const c = ckpts[i]!;
      for (const name of c.names()) {
        if (owner.has(name)) throw new FormatError(`tensor '${name}' is in two checkpoints: ${dirs[ckpts.indexOf(owner.get(name)!)]} and ${dirs[i]}`);
        owner.set(name, c);
        const e = c.entry(name);
        available.set(name, { shape: e.shape, dtype: e.dtype });
      }
    }
    const source = dirs.length === 1 ? `checkpoint ${dirs[0]}` : `checkpoints ${dirs.join(' + ')}`;
    const ignored = validateSpecs(check, available, source, opts);
    checkBackendFits(check.specs, (n) => available.get(n)?.dtype, keepPacked, backend, source);
    const map = new Map<string, Tensor>();
    try {
      const reader = new PieceReader(backend, opts.pieceBytes ?? PIECE_BYTES);
      for (const spec of check.specs) {
        const c = owner.get(spec.name);
        if (!c) continue;
        const e = c.entry(spec.name);
        const want = storageDType(spec.kind, e.dtype, keepPacked);
        map.set(spec.name, await reader.load(c, spec.name, e.shape, e.dtype as 'F32' | 'F16' | 'BF16', want));
      }
    } catch (err) {
      for (const t of map.values()) t.dispose();
      throw err;
    }
    return new ModelWeights(map, ignored);
  } finally {
    for (let i = 0; i < ckpts.length; i++) if (typeof sources[i] === 'string') await ckpts[i]!.close();
  }
}

/** Host bytes one read moves at most: larger tensors go to the backend in runs of rows. */
const PIECE_BYTES = 32 * 2 ** 20;

/**
 * Reads tensors onto a backend through one reused host buffer: a tensor up to PIECE_BYTES in one read, a larger one
 * (an embedding table, an lm_head) in runs of rows written into its storage in place. Host memory stays at one
 * piece, instead of a fresh buffer per tensor that lingers until the garbage collector runs (with 0.5B-scale bf16
 * weights that was a quarter of the weights' size in extra peak RSS).
 */
class PieceReader {
  private scratch: Uint8Array | null = null;

  constructor(
    private readonly backend: Backend,
    private readonly pieceBytes: number,
  ) {
    if (!Number.isInteger(pieceBytes) || pieceBytes < 1) throw new ValueError(`pieceBytes must be a positive integer, got ${pieceBytes}`);
  }

  private buffer(n: number): Uint8Array {
    if (!this.scratch || this.scratch.byteLength < n) this.scratch = new Uint8Array(Math.max(n, Math.min(this.pieceBytes, 2 * (this.scratch?.byteLength ?? 0))));
    return this.scratch;
  }

  /** Stored bytes (F32, or F16/BF16 bits) → host data of the backend dtype `want` (f32, or the packed bits). */
  private decode(bytes: Uint8Array, stored: 'F32' | 'F16' | 'BF16', want: DType): HostArray {
    if (stored === 'F32') return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
    const bits = new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
    return want === 'f32' ? widenToF32(bits, stored === 'F16' ? 'f16' : 'bf16') : bits;
  }

  async load(c: Checkpoint, name: string, shape: readonly number[], stored: 'F32' | 'F16' | 'BF16', want: DType): Promise<Tensor> {
    const eb = stored === 'F32' ? 4 : 2;
    const size = shape.reduce((a, b) => a * b, 1);
    const rows = shape[0] ?? 1;
    const rowBytes = rows > 0 ? (size / rows) * eb : 0;
    const P = this.pieceBytes;
    if (size * eb <= P || shape.length < 2 || rowBytes > P) {
      const bytes = await c.readRange(name, 0, size * eb, size * eb <= P ? this.buffer(size * eb) : undefined);
      return tensor(this.backend, this.decode(bytes, stored, want), [...shape], want);
    }
    const out = Tensor.fromStorage(this.backend, shape, want, this.backend.alloc(size, want));
    try {
      const per = Math.max(1, Math.floor(P / rowBytes));
      for (let r = 0; r < rows; r += per) {
        const n = Math.min(per, rows - r);
        const bytes = await c.readRange(name, r * rowBytes, n * rowBytes, this.buffer(n * rowBytes));
        const piece = tensor(this.backend, this.decode(bytes, stored, want), [n, ...shape.slice(1)], want);
        try {
          writeSlice(out, piece, 0, r);
        } finally {
          piece.dispose();
        }
      }
    } catch (e) {
      out.dispose();
      throw e;
    }
    return out;
  }
}

/** Refuses, before any upload, weights that cannot fit the backend's memory; says what would. */
function checkBackendFits(specs: readonly WeightSpec[], dtypeOf: (n: string) => string | undefined, keepPacked: boolean, backend: Backend, source: string): void {
  const { maxBufferBytes: limit, memoryBytes: cap } = backend.info();
  const total = bytesOnBackend(specs, dtypeOf, keepPacked);
  if (cap !== undefined && total > cap) {
    const packed = bytesOnBackend(specs, () => 'bf16', true);
    throw new ValueError(
      `${source}: the weights need ${fmtBytes(total)} on backend '${backend.name}', which holds at most ${fmtBytes(cap)}` +
        (packed < cap ? `; stored as bf16 (packed) they would take ${fmtBytes(packed)} and fit` : `; even as bf16 they need ${fmtBytes(packed)}`),
    );
  }
  for (const s of specs) {
    const dt = dtypeOf(s.name);
    if (dt === undefined || limit === undefined) continue;
    const bytes = s.shape.reduce((a, b) => a * b, 1) * (storageDType(s.kind, dt, keepPacked) === 'f32' ? 4 : 2);
    if (bytes > limit) throw new ValueError(`${source}: tensor '${s.name}' ${fmtShape(s.shape)} needs ${fmtBytes(bytes)} in one buffer; backend '${backend.name}' allows ${fmtBytes(limit)}`);
  }
}


/** A weight given in memory: host data, or a tensor already on the target backend. */
export type WeightSource = HostTensor | Tensor;
export type WeightSet = ReadonlyMap<string, WeightSource> | Readonly<Record<string, WeightSource>>;

function entriesOf(w: WeightSet): [string, WeightSource][] {
  return w instanceof Map ? [...(w as ReadonlyMap<string, WeightSource>).entries()] : Object.entries(w as Record<string, WeightSource>);
}

/** Validates and uploads in-memory weights (host tensors are copied; backend tensors are used as they are). */
export function uploadSpecs(check: SpecCheck, weights: WeightSet, backend: Backend, opts: UploadOptions = {}): ModelWeights {
  const keepPacked = opts.keepPacked ?? true;
  const entries = new Map(entriesOf(weights));
  const available = new Map<string, Available>();
  for (const [name, w] of entries) available.set(name, { shape: w.shape, dtype: w.dtype });
  const ignored = validateSpecs(check, available, 'weights', opts);
  const map = new Map<string, Tensor>();
  try {
    for (const spec of check.specs) {
      const w = entries.get(spec.name);
      if (!w) continue;
      const want = storageDType(spec.kind, w.dtype, keepPacked);
      if (w instanceof Tensor) {
        if (w.backend !== backend) throw new ValueError(`weights: tensor '${spec.name}' lives on backend '${w.backend.name}', not '${backend.name}'`);
        if (w.dtype !== want) throw new ValueError(`weights: tensor '${spec.name}' is ${w.dtype}; this weight must be ${want} on the backend`);
        map.set(spec.name, w);
      } else {
        map.set(spec.name, hostToBackend(backend, w, want));
      }
    }
  } catch (err) {
    for (const [name, t] of map) if (!(entries.get(name) instanceof Tensor)) t.dispose();
    throw err;
  }
  return new ModelWeights(map, ignored);
}

/**
 * Uninitialised weights of the right shapes (contents unspecified): for the meta backend, where a 7B model costs
 * nothing to "load". Packable kinds get `matrixDType` (default bf16, as the checkpoints ship), others f32.
 */
export function allocateSpecs(specs: readonly WeightSpec[], backend: Backend, opts: { matrixDType?: 'f32' | 'f16' | 'bf16' } = {}): ModelWeights {
  const md = opts.matrixDType ?? 'bf16';
  const map = new Map<string, Tensor>();
  for (const s of specs) {
    if (s.optional) continue;
    const dt: DType = PACKABLE_KINDS.includes(s.kind) ? md : 'f32';
    const size = s.shape.reduce((a, b) => a * b, 1);
    map.set(s.name, Tensor.fromStorage(backend, s.shape, dt, backend.alloc(size, dt)));
  }
  return new ModelWeights(map);
}

export interface RandomSpecOptions {
  seed?: number;
  /** Stored dtype (values are drawn in f32, then rounded). Default f32. */
  dtype?: 'f32' | 'f16' | 'bf16';
  /** Skip optional specs. */
  skipOptional?: boolean;
  /** Per-name standard deviation multiplier (0 zeroes the tensor). */
  scale?: (name: string) => number;
}

/**
 * Random weights for specs, deterministic in (seed, name): Linear weights ~ N(0, 1/fan_in), embeddings ~ N(0, 1),
 * norm scales 1 + N(0, 0.1²), biases N(0, 0.05²), so activations stay O(1) at any width.
 */
export function randomSpecs(specs: readonly WeightSpec[], opts: RandomSpecOptions = {}): Map<string, HostTensor> {
  const seed = opts.seed ?? 0;
  const out = new Map<string, HostTensor>();
  for (const s of specs) {
    if (s.optional && opts.skipOptional) continue;
    const n = s.shape.reduce((a, b) => a * b, 1);
    const rng = createRng((hashString(s.name) ^ Math.imul(seed, 0x2545f491)) >>> 0);
    const data = new Float32Array(n);
    const isNormScale = s.kind === 'vector' && /(norm[12]?|layernorm|ln_v)\.weight$/.test(s.name);
    let std: number;
    let mean = 0;
    if (isNormScale) (mean = 1), (std = 0.1);
    else if (s.kind === 'vector') std = 0.05;
    else if (s.kind === 'embedding' || s.kind === 'table') std = s.name.includes('position') || s.name.includes('frame') ? 0.2 : 1;
    else std = 1 / Math.sqrt(s.shape.slice(1).reduce((a, b) => a * b, 1));
    const k = opts.scale ? opts.scale(s.name) : 1;
    std *= k;
    if (k !== 0) for (let i = 0; i < n; i++) data[i] = mean + std * rng.normal();
    const dtype = opts.dtype ?? 'f32';
    out.set(s.name, dtype === 'f32' ? { dtype, shape: [...s.shape], data } : { dtype, shape: [...s.shape], data: narrowFromF32(data, dtype) });
  }
  return out;
}
