// Validation of a trace's op records before replay (models/app/trace.ts). A trace file may come from anywhere,
// and replay hands its records to backend kernels, which trust their arguments (a wrong keyLength or slice start
// reads or writes outside a tensor). So every record is checked first: the op is a kernel of the op table, every
// tensor record's shape, dtype and byte length agree, the attributes have the types the kernel signature says, and
// the call is rebuilt through the public ops layer on the shape-only meta backend, which applies the same checks as
// a live model (ranks, broadcasting, bounds, dtypes) and must infer the recorded output's shape and dtype. Replay
// then passes the kernel only the checked attributes.

import { MetaBackend } from '../../backends/meta/index.js';
import { type KernelAttrs, isOpName, type OpName } from '../../core/op-table.js';
import { bytesPerElement, DTYPES, type DType } from '../../core/dtype.js';
import { ValueError } from '../../core/errors.js';
import { tidy } from '../../core/scope.js';
import { Tensor } from '../../core/tensor.js';
import * as ops from '../../ops/index.js';
import type { OpRecord, TensorRecord } from './trace.js';

const MAX_RANK = 8;
/** Inputs per kernel ('n': any number ≥ 1, concat) and which may be null. */
const ARITY: Record<OpName, { n: number | 'n'; optional: number[] }> = {
  matmul: { n: 3, optional: [2] }, binary: { n: 2, optional: [] }, unary: { n: 1, optional: [] }, scale: { n: 1, optional: [] },
  swiglu: { n: 2, optional: [] }, softmax: { n: 2, optional: [1] }, layerNorm: { n: 3, optional: [1, 2] },
  rmsNorm: { n: 2, optional: [1] }, modulatedNorm: { n: 5, optional: [2, 3, 4] }, rope: { n: 1, optional: [] },
  attention: { n: 4, optional: [3] }, embedding: { n: 2, optional: [] }, transpose: { n: 1, optional: [] },
  slice: { n: 1, optional: [] }, concat: { n: 'n', optional: [] }, writeSlice: { n: 1, optional: [] },
  patchEmbed: { n: 3, optional: [2] }, resizeGrid: { n: 1, optional: [] }, argmax: { n: 1, optional: [] },
  cast: { n: 1, optional: [] }, copy: { n: 1, optional: [] },
};

let meta: MetaBackend | null = null;

/** A tensor record whose shape, dtype and data length agree (the data is what the file holds: bounded by it). */
export function checkTensorRecord(where: string, t: unknown): TensorRecord {
  if (!t || typeof t !== 'object') throw new ValueError(`${where}: not a tensor record (${typeof t})`);
  const { shape, dtype, data } = t as Partial<TensorRecord>;
  if (!Array.isArray(shape) || shape.length > MAX_RANK || shape.some((d) => !Number.isSafeInteger(d) || (d as number) < 0)) {
    throw new ValueError(`${where}: shape must be a list of at most ${MAX_RANK} non-negative integers, got ${JSON.stringify(shape)?.slice(0, 80)}`);
  }
  if (!DTYPES.includes(dtype as DType)) throw new ValueError(`${where}: dtype must be one of ${DTYPES.join(', ')}, got ${JSON.stringify(dtype)?.slice(0, 40)}`);
  if (!(data instanceof Uint8Array)) throw new ValueError(`${where}: data must be binary`);
  const size = shape.reduce((a: number, b: number) => a * b, 1);
  const want = size * bytesPerElement(dtype as DType);
  if (data.byteLength !== want) throw new ValueError(`${where}: ${data.byteLength} bytes of data for shape [${shape.join(', ')}] ${dtype} (${want} expected)`);
  return t as TensorRecord;
}

/** Checks one op record; returns the attributes to hand the kernel (only the checked fields). */
export function checkOpRecord(r: unknown, position: number): KernelAttrs<OpName> {
  if (!r || typeof r !== 'object') throw new ValueError(`trace op #${position}: not an op record`);
  const rec = r as Partial<OpRecord>;
  const op = rec.op as string;
  const where = `trace op #${position} (${typeof op === 'string' ? op.slice(0, 40) : typeof op})`;
  if (typeof op !== 'string' || !isOpName(op)) throw new ValueError(`${where}: not a kernel of the op table`);
  const at = rec.attrs;
  if (!at || typeof at !== 'object' || Array.isArray(at)) throw new ValueError(`${where}: attrs must be a map`);
  const attrs = at as Record<string, unknown>;
  const { n, optional } = ARITY[op];
  if (!Array.isArray(rec.inputs) || (n === 'n' ? rec.inputs.length < 1 || rec.inputs.length > 4096 : rec.inputs.length !== n)) {
    throw new ValueError(`${where}: ${n === 'n' ? '1 to 4096' : n} inputs expected, got ${Array.isArray(rec.inputs) ? rec.inputs.length : typeof rec.inputs}`);
  }
  const inputs = rec.inputs.map((t, i) => {
    if (t === null && optional.includes(i)) return null;
    return checkTensorRecord(`${where} input ${i}`, t);
  });
  const out = checkTensorRecord(`${where} output`, rec.out);
  const before = op === 'writeSlice' ? checkTensorRecord(`${where} destination before the write`, rec.before) : null;

  const bad = (name: string, what: string) => new ValueError(`${where}: attrs.${name} must be ${what}, got ${JSON.stringify(attrs[name])?.slice(0, 60)}`);
  const bool = (name: string) => {
    if (typeof attrs[name] !== 'boolean') throw bad(name, 'a boolean');
    return attrs[name] as boolean;
  };
  const num = (name: string, int = false) => {
    const v = attrs[name];
    if (typeof v !== 'number' || !Number.isFinite(v) || (int && !Number.isSafeInteger(v))) throw bad(name, int ? 'an integer' : 'a finite number');
    return v;
  };
  const oneOf = <T extends string>(name: string, values: readonly T[]) => {
    if (!values.includes(attrs[name] as T)) throw bad(name, `one of ${values.join(', ')}`);
    return attrs[name] as T;
  };
  const str = (name: string) => {
    if (typeof attrs[name] !== 'string') throw bad(name, 'a string');
    return attrs[name] as string;
  };
  const ints = (name: string) => {
    const v = attrs[name];
    if (!Array.isArray(v) || v.length > MAX_RANK || v.some((x) => !Number.isSafeInteger(x))) throw bad(name, 'a list of integers');
    return v as number[];
  };

  meta ??= new MetaBackend();
  const m = meta;
  const T = (t: TensorRecord | null) => (t ? Tensor.fromStorage(m, t.shape, t.dtype, m.alloc(t.shape.reduce((a, b) => a * b, 1), t.dtype)) : null);
  let checked: Record<string, unknown> = {};
  try {
    tidy(() => {
      const x = inputs.map(T);
      const [a, b, c, d, e] = x as Tensor[];
      let y: Tensor;
      switch (op) {
        case 'matmul': checked = { transposeB: bool('transposeB') }; y = ops.matmul(a!, b!, { transposeB: checked.transposeB as boolean, bias: c ?? null }); break;
        case 'binary': checked = { op: oneOf('op', ['add', 'sub', 'mul', 'div'] as const) }; y = ops[checked.op as 'add'](a!, b!); break;
        case 'unary': checked = { op: str('op') }; y = ops.unary(checked.op as 'exp', a!); break; // ops.unary checks the name
        case 'scale': checked = { scale: num('scale'), shift: num('shift') }; y = ops.scale(a!, checked.scale as number, checked.shift as number); break;
        case 'swiglu': y = ops.swiglu(a!, b!); break;
        case 'softmax': y = ops.softmax(a!, b ?? null); break;
        case 'layerNorm': checked = { eps: num('eps') }; y = ops.layerNorm(a!, b ?? null, c ?? null, checked.eps as number); break;
        case 'rmsNorm': checked = { eps: num('eps') }; y = ops.rmsNorm(a!, b ?? null, checked.eps as number); break;
        case 'modulatedNorm':
          checked = { kind: oneOf('kind', ['layer', 'rms'] as const), eps: num('eps') };
          y = ops.modulatedNorm(a!, b!, { kind: checked.kind as 'rms', eps: checked.eps as number, beta: c ?? null, dGamma: d ?? null, dBeta: e ?? null });
          break;
        case 'rope':
          checked = { theta: num('theta'), offset: num('offset', true), rotaryDim: num('rotaryDim', true) };
          y = ops.rope(a!, checked as { theta: number; offset: number; rotaryDim: number });
          break;
        case 'attention':
          checked = { causal: bool('causal'), queryOffset: num('queryOffset', true), keyLength: num('keyLength', true), scale: num('scale'), kvHeadMajor: bool('kvHeadMajor') };
          y = ops.attention(a!, b!, c!, { ...(checked as object), mask: d ?? null });
          break;
        case 'embedding': y = ops.embedding(a!, b!); break;
        case 'transpose': checked = { perm: ints('perm') }; y = ops.transpose(a!, checked.perm as number[]); break;
        case 'slice': checked = { begin: ints('begin') }; y = ops.slice(a!, checked.begin as number[], out.shape); break;
        case 'concat': checked = { axis: num('axis', true) }; y = ops.concat(x as Tensor[], checked.axis as number); break;
        case 'writeSlice': checked = { axis: num('axis', true), start: num('start', true) }; y = ops.writeSlice(T(before)!, a!, checked.axis as number, checked.start as number); break;
        case 'patchEmbed': checked = { patch: num('patch', true) }; y = ops.patchEmbed(a!, b!, c ?? null, checked.patch as number); break;
        case 'resizeGrid':
          checked = { inH: num('inH', true), inW: num('inW', true), outH: num('outH', true), outW: num('outW', true) };
          y = ops.resizeGrid(a!, checked.inH as number, checked.inW as number, checked.outH as number, checked.outW as number);
          break;
        case 'argmax': y = ops.argmax(a!); break;
        case 'cast': y = ops.cast(a!, out.dtype); break;
        case 'copy': y = ops.copy(a!); break;
      }
      const same = y!.dtype === out.dtype && y!.shape.length === out.shape.length && y!.shape.every((s, i) => s === out.shape[i]);
      if (!same) throw new ValueError(`output is [${out.shape.join(', ')}] ${out.dtype}, but these inputs and attrs give [${y!.shape.join(', ')}] ${y!.dtype}`);
      if (before && (before.dtype !== out.dtype || before.shape.join() !== out.shape.join())) throw new ValueError('the destination before and after the write differ in shape or dtype');
    });
  } catch (err) {
    const msg = (err as Error).message;
    throw new ValueError(msg.startsWith(where) ? msg : `${where}: ${msg}`);
  }
  return checked as KernelAttrs<OpName>;
}
