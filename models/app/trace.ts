// Op traces: record every kernel call of a model request (op, attrs, inputs, output; for the in-place
// writeSlice the destination before and after) into a file, and replay it op by op on another backend,
// comparing each output with the recorded one under the op table's per-op tolerances (core/op-table.ts).
//
// File format: a sequence of frames as in the stdio protocol (4-byte big-endian length + msgpack map):
//   {kind:'lavi-trace', version:1, model, backend, request, createdAt}
//   {kind:'op', index, op, attrs, inputs:[TensorRecord|null], out:TensorRecord, before?:TensorRecord}  (×N)
//   {kind:'end', ops:N}
// TensorRecord = {shape:number[], dtype:'f32'|'f16'|'bf16'|'i32', data: binary (little-endian raw storage)}.
// A trace may come from anywhere: readTrace takes plain msgpack only (no extension types), and replayTrace checks
// every record before any kernel runs (trace-check.ts), handing the kernels only checked attributes.
//
// Recording wraps the backend (a Proxy that forwards every call): the observer hook of ops/dispatch runs after
// the kernel, too late to see writeSlice's destination before the write. The recorded backend must read
// synchronously (readSync: the CPU reference).

import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import type { Backend, OpName } from '../../core/backend.js';
import { isOpName, opTolerance, type Tolerance } from '../../core/op-table.js';
import type { DType, HostArray } from '../../core/dtype.js';
import { ValueError } from '../../core/errors.js';
import { Tensor } from '../../core/tensor.js';
import { transpose } from '../../ops/layout.js';
import { compare, type Comparison } from '../../backends/conformance/compare.js';
import { encodeFrame, FrameDecoder } from './serve.js';
import { checkOpRecord } from './trace-check.js';

export const TRACE_VERSION = 1;

export interface TensorRecord {
  shape: number[];
  dtype: DType;
  data: Uint8Array;
}

export interface TraceHeader {
  kind: 'lavi-trace';
  version: number;
  model: string;
  backend: string;
  request: Record<string, unknown>;
  createdAt: string;
}

export interface OpRecord {
  kind: 'op';
  index: number;
  op: OpName;
  attrs: Record<string, unknown>;
  inputs: (TensorRecord | null)[];
  out: TensorRecord;
  before?: TensorRecord;
}

export interface Trace {
  header: TraceHeader;
  ops: OpRecord[];
}

function hostBytes(a: HostArray): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength).slice();
}

export function hostArray(r: TensorRecord): HostArray {
  const b = new Uint8Array(r.data); // aligned copy
  switch (r.dtype) {
    case 'f32': return new Float32Array(b.buffer, 0, b.byteLength / 4);
    case 'i32': return new Int32Array(b.buffer, 0, b.byteLength / 4);
    case 'f16':
    case 'bf16': return new Uint16Array(b.buffer, 0, b.byteLength / 2);
    default: throw new ValueError(`trace: unknown dtype ${String(r.dtype)}`);
  }
}

function snapshot(inner: Backend, t: Tensor): TensorRecord {
  if (!inner.readSync) throw new ValueError(`trace record: backend '${inner.name}' cannot read synchronously; record on 'cpu'`);
  return { shape: [...t.shape], dtype: t.dtype, data: hostBytes(inner.readSync(t.storage, t.dtype, t.size)) };
}

/** A backend that forwards to `inner` and calls `sink` with a record of every kernel call. */
export function recordingBackend(inner: Backend, sink: (r: OpRecord) => void): Backend {
  let index = 0;
  return new Proxy(inner, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver);
      if (typeof prop === 'string' && isOpName(prop) && typeof v === 'function') {
        return (out: Tensor, inputs: (Tensor | null)[], attrs: Record<string, unknown>) => {
          const before = prop === 'writeSlice' ? snapshot(inner, out) : undefined;
          const ins = inputs.map((t) => (t ? snapshot(inner, t) : null));
          (v as Function).call(target, out, inputs, attrs);
          const rec: OpRecord = { kind: 'op', index: index++, op: prop as OpName, attrs: { ...attrs }, inputs: ins, out: snapshot(inner, out) };
          if (before) rec.before = before;
          sink(rec);
        };
      }
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}

/** Writes frames to a file as they come (traces can be large; nothing is kept in memory). */
export class TraceWriter {
  private fd: number;
  count = 0;
  constructor(path: string, header: Omit<TraceHeader, 'kind' | 'version' | 'createdAt'>) {
    this.fd = openSync(path, 'w');
    writeSync(this.fd, encodeFrame({ kind: 'lavi-trace', version: TRACE_VERSION, createdAt: new Date().toISOString(), ...header }));
  }
  write(r: OpRecord): void {
    writeSync(this.fd, encodeFrame(r));
    this.count++;
  }
  close(): void {
    writeSync(this.fd, encodeFrame({ kind: 'end', ops: this.count }));
    closeSync(this.fd);
  }
}

export function readTrace(path: string): Trace {
  const bytes = readFileSync(path);
  // One frame may be as large as the file (an op's tensors); plain msgpack only (maps, lists, numbers, strings,
  // binary: what TraceWriter writes), no extension types.
  const dec = new FrameDecoder(Math.max(bytes.length, 4), { maxDepth: 64, maxItems: Number.MAX_SAFE_INTEGER });
  const frames: unknown[] = [];
  for (const ev of dec.push(bytes)) {
    if (!ev.ok) throw new ValueError(`trace ${path}: ${ev.message}`);
    frames.push(ev.value);
  }
  if (dec.pending) throw new ValueError(`trace ${path}: truncated (${dec.pending} trailing bytes)`);
  const header = frames[0] as TraceHeader | undefined;
  if (!header || typeof header !== 'object' || header.kind !== 'lavi-trace') throw new ValueError(`trace ${path}: not a lavi trace (no header frame)`);
  if (header.version !== TRACE_VERSION) throw new ValueError(`trace ${path}: version ${header.version}, this build reads ${TRACE_VERSION}`);
  const ops = frames.slice(1).filter((f) => (f as OpRecord | null)?.kind === 'op') as OpRecord[];
  const end = frames[frames.length - 1] as { kind?: string; ops?: number } | null;
  if (end?.kind !== 'end' || end.ops !== ops.length) throw new ValueError(`trace ${path}: incomplete (no end frame, or op count mismatch)`);
  return { header, ops };
}

export interface ReplayDivergence {
  index: number;
  op: OpName;
  attrs: Record<string, unknown>;
  shapes: { inputs: (number[] | null)[]; out: number[] };
  tolerance: Tolerance;
  /** The comparison, or null when the op threw / was unsupported (see reason). */
  comparison: Comparison | null;
  reason: string;
}

export interface ReplayResult {
  backend: string;
  ops: number;
  /** Ops replayed and within tolerance. */
  passed: number;
  /** Worst NMSE per op name among passing ops. */
  worst: Record<string, number>;
  firstDivergence: ReplayDivergence | null;
}

/** Replays every op of a trace on `backend`; stops at the first op outside its tolerance. */
export async function replayTrace(trace: Trace, backend: Backend, onOp?: (r: OpRecord, c: Comparison) => void): Promise<ReplayResult> {
  const res: ReplayResult = { backend: backend.name, ops: trace.ops.length, passed: 0, worst: {}, firstDivergence: null };
  // Every record is checked before any kernel runs (trace-check.ts): a bad one is an error naming the op, not a
  // kernel reading outside its tensors; the kernels get only the checked attributes.
  const checkedAttrs = trace.ops.map((r, position) => checkOpRecord(r, position) as Record<string, unknown>);
  for (const [position, r] of trace.ops.entries()) {
    const checked = checkedAttrs[position]!;
    const tol = opTolerance(r.op, checked as never); // the op table's tolerance (core/op-table.ts)
    const diverge = (comparison: Comparison | null, reason: string): ReplayResult => {
      res.firstDivergence = { index: r.index, op: r.op, attrs: checked, shapes: { inputs: r.inputs.map((t) => (t ? t.shape : null)), out: r.out.shape }, tolerance: tol, comparison, reason };
      return res;
    };
    const made: Tensor[] = [];
    const up = (t: TensorRecord) => {
      const x = Tensor.fromStorage(backend, t.shape, t.dtype, backend.upload(hostArray(t), t.dtype));
      made.push(x);
      return x;
    };
    try {
      // As ops.attention does: a backend that does not read head-major K/V gets token-major copies.
      const tokenMajor = r.op === 'attention' && checked.kvHeadMajor === true && !backend.headMajorKV;
      const attrs = tokenMajor ? { ...checked, kvHeadMajor: false } : checked;
      const inputs = r.inputs.map((t, i) => {
        if (!t) return null;
        const x = up(t);
        if (!tokenMajor || (i !== 1 && i !== 2)) return x;
        const tm = transpose(x, [0, 2, 1, 3]); // head-major K/V → token-major, on the backend itself
        made.push(tm);
        return tm;
      });
      const out = r.before ? up(r.before) : (() => {
        const size = r.out.shape.reduce((a, b) => a * b, 1);
        const x = Tensor.fromStorage(backend, r.out.shape, r.out.dtype, backend.alloc(size, r.out.dtype));
        made.push(x);
        return x;
      })();
      const s = backend.supports(r.op, out, inputs as never, attrs as never);
      if (!s.ok) return diverge(null, `unsupported on '${backend.name}': ${s.reason}`);
      (backend[r.op] as Function).call(backend, out, inputs, attrs);
      const got = await backend.read(out.storage, out.dtype, out.size);
      const c = compare(got, hostArray(r.out), tol);
      onOp?.(r, c);
      if (!c.ok) return diverge(c, c.reason);
      res.passed++;
      res.worst[r.op] = Math.max(res.worst[r.op] ?? 0, c.nmse);
    } catch (e) {
      return diverge(null, `threw ${(e as Error).name}: ${(e as Error).message}`);
    } finally {
      for (const t of made) t.dispose();
    }
  }
  return res;
}

export function formatDivergence(d: ReplayDivergence): string {
  const shapes = d.shapes.inputs.map((s) => (s ? `[${s.join(',')}]` : 'null')).join(' ');
  return `op #${d.index} ${d.op} ${JSON.stringify(d.attrs)} inputs ${shapes} → [${d.shapes.out.join(',')}]: ${d.reason}` +
    (d.comparison ? ` (nmse ${d.comparison.nmse.toExponential(2)}, max|Δ| ${d.comparison.maxAbs.toExponential(2)}, threshold ${d.tolerance.nmse.toExponential(0)})` : '');
}
