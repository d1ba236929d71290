// The PyTorch oracle for the CPU reference backend.
//
// test/oracle/gen_op_goldens.py (run by hand where PyTorch is installed) writes one safetensors file per op family
// into test/fixtures/oracle/: inputs, the golden output (computed by PyTorch in float64 from the float32 inputs,
// then rounded once to float32), and in __metadata__.cases a JSON list of case descriptors (op, attributes, which
// tensor is which input). This file needs no PyTorch: it runs every case through the public op API on the CPU
// backend and compares with the golden.
//
// Comparison modes (chosen per case by the generator):
//   close — |got − expected| ≤ atol + rtol·|expected| with atol 1e-5, rtol 1e-4 unless the case says otherwise
//           (no case does today); NaN/±Inf must match exactly, and a non-finite value where a finite one is
//           expected fails.
//   exact — identical values (Object.is: −0 ≠ +0, NaN = NaN); layout ops, gathers, argmax, i32/f32 casts.
//   bits  — identical 16-bit patterns (f16/bf16 outputs), except that any NaN matches any NaN: PyTorch's
//           vectorised f32→bf16 path writes NaN as 0xFFFF, the engine keeps the sign and writes a quiet NaN.
//
// ORACLE_STATS=1 prints the worst errors per op (relative and f32-ulp errors over values with |expected| ≥ atol).

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { CpuBackend } from '../backends/cpu/index.js';
import { OP_NAMES, type BinaryOp, type NormKind, type UnaryOp } from '../core/backend.js';
import type { DType, HostArray } from '../core/dtype.js';
import { SafetensorsFile, type HostTensor } from '../core/safetensors/index.js';
import type { Tensor } from '../core/tensor.js';
import * as ops from '../ops/index.js';

const FIXTURE_DIR = fileURLToPath(new URL('../../test/fixtures/oracle/', import.meta.url));
const DEFAULT_ATOL = 1e-5;
const DEFAULT_RTOL = 1e-4;

interface OracleCase {
  name: string;
  op: string;
  attrs: Record<string, unknown>;
  inputs: Record<string, string | string[] | null>;
  expected: string;
  cmp: 'close' | 'exact' | 'bits';
  atol?: number;
  rtol?: number;
  why?: string;
}

interface Fixture {
  family: string;
  cases: OracleCase[];
  tensors: Map<string, HostTensor>;
}

// ---- loading -----------------------------------------------------------------------------------------------

async function loadFixtures(): Promise<Fixture[]> {
  const files = readdirSync(FIXTURE_DIR).filter((f) => f.endsWith('.safetensors')).sort();
  const out: Fixture[] = [];
  for (const name of files) {
    const file = await SafetensorsFile.open(join(FIXTURE_DIR, name), { keepPacked: true });
    try {
      const meta = file.metadata;
      if (meta.format !== 'lavi-oracle/1') throw new Error(`${name}: unknown fixture format ${String(meta.format)}`);
      const cases = JSON.parse(meta.cases ?? '[]') as OracleCase[];
      const tensors = new Map<string, HostTensor>();
      for (const t of file.names()) tensors.set(t, await file.read(t));
      out.push({ family: meta.family ?? name.replace(/\.safetensors$/, ''), cases, tensors });
    } finally {
      await file.close();
    }
  }
  return out;
}

const fixtures = await loadFixtures();

// ---- running one case ----------------------------------------------------------------------------------------

/** Typed access to a case's inputs and attributes, with errors that name the case. */
class Args {
  constructor(
    private readonly c: OracleCase,
    private readonly fx: Fixture,
    private readonly be: CpuBackend,
  ) {}

  private upload(tensorName: string): Tensor {
    const h = this.fx.tensors.get(tensorName);
    if (!h) throw new Error(`${this.c.name}: fixture has no tensor '${tensorName}'`);
    return ops.tensor(this.be, h.data, h.shape, h.dtype);
  }

  t(role: string): Tensor {
    const r = this.c.inputs[role];
    if (typeof r !== 'string') throw new Error(`${this.c.name}: input '${role}' missing or not a single tensor`);
    return this.upload(r);
  }

  opt(role: string): Tensor | null {
    const r = this.c.inputs[role];
    if (r === null || r === undefined) return null;
    return this.t(role);
  }

  list(role: string): Tensor[] {
    const r = this.c.inputs[role];
    if (!Array.isArray(r)) throw new Error(`${this.c.name}: input '${role}' is not a tensor list`);
    return r.map((n) => this.upload(n));
  }

  num(key: string): number {
    const v = this.c.attrs[key];
    if (typeof v !== 'number') throw new Error(`${this.c.name}: attribute '${key}' is not a number: ${JSON.stringify(v)}`);
    return v;
  }

  optNum(key: string): number | undefined {
    return this.c.attrs[key] === undefined ? undefined : this.num(key);
  }

  nums(key: string): number[] {
    const v = this.c.attrs[key];
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'number')) throw new Error(`${this.c.name}: attribute '${key}' is not a number list`);
    return v as number[];
  }

  bool(key: string): boolean {
    const v = this.c.attrs[key];
    if (typeof v !== 'boolean') throw new Error(`${this.c.name}: attribute '${key}' is not a boolean`);
    return v;
  }

  str(key: string): string {
    const v = this.c.attrs[key];
    if (typeof v !== 'string') throw new Error(`${this.c.name}: attribute '${key}' is not a string`);
    return v;
  }
}

const BINARY: Record<BinaryOp, (a: Tensor, b: Tensor) => Tensor> = { add: ops.add, sub: ops.sub, mul: ops.mul, div: ops.div };

function unaryOp(op: UnaryOp, x: Tensor): Tensor {
  // The named wrappers where the public API has them, the generic entry point for the rest.
  switch (op) {
    case 'gelu_tanh':
      return ops.gelu(x, 'tanh');
    case 'gelu_erf':
      return ops.gelu(x, 'erf');
    case 'silu':
      return ops.silu(x);
    case 'relu':
      return ops.relu(x);
    default:
      return ops.unary(op, x);
  }
}

/** Runs the case's op through the public op API; keyed by the generator's op names. */
const RUNNERS: Record<string, (a: Args) => Tensor> = {
  matmul: (a) => ops.matmul(a.t('a'), a.t('b'), { transposeB: a.bool('transposeB'), bias: a.opt('bias') }),
  linear: (a) => ops.linear(a.t('x'), a.t('weight'), a.opt('bias')),
  binary: (a) => BINARY[a.str('op') as BinaryOp](a.t('a'), a.t('b')),
  unary: (a) => unaryOp(a.str('op') as UnaryOp, a.t('x')),
  scale: (a) => ops.scale(a.t('x'), a.num('scale'), a.num('shift')),
  swiglu: (a) => ops.swiglu(a.t('gate'), a.t('up')),
  softmax: (a) => ops.softmax(a.t('x'), a.opt('mask')),
  layerNorm: (a) => ops.layerNorm(a.t('x'), a.opt('gamma'), a.opt('beta'), a.num('eps')),
  rmsNorm: (a) => ops.rmsNorm(a.t('x'), a.opt('gamma'), a.num('eps')),
  modulatedNorm: (a) =>
    ops.modulatedNorm(a.t('x'), a.t('gamma'), {
      kind: a.str('kind') as NormKind,
      eps: a.num('eps'),
      beta: a.opt('beta'),
      dGamma: a.opt('dGamma'),
      dBeta: a.opt('dBeta'),
    }),
  rope: (a) => ops.rope(a.t('x'), { theta: a.num('theta'), offset: a.num('offset'), rotaryDim: a.num('rotaryDim') }),
  attention: (a) =>
    ops.attention(a.t('q'), a.t('k'), a.t('v'), {
      causal: a.bool('causal'),
      queryOffset: a.num('queryOffset'),
      keyLength: a.optNum('keyLength'),
      scale: a.optNum('scale'),
      mask: a.opt('mask'),
    }),
  embedding: (a) => ops.embedding(a.t('table'), a.t('ids')),
  argmax: (a) => ops.argmax(a.t('x')),
  cast: (a) => ops.cast(a.t('x'), a.str('dtype') as DType),
  transpose: (a) => ops.transpose(a.t('x'), a.nums('perm')),
  slice: (a) => ops.slice(a.t('x'), a.nums('begin'), a.nums('size')),
  concat: (a) => ops.concat(a.list('xs'), a.num('axis')),
  writeSlice: (a) => ops.writeSlice(a.t('dst'), a.t('src'), a.num('axis'), a.num('start')),
  copy: (a) => ops.copy(a.t('x')),
  patchEmbed: (a) => ops.patchEmbed(a.t('image'), a.t('weight'), a.opt('bias'), a.num('patch')),
  resizeGrid: (a) => ops.resizeGrid(a.t('x'), a.num('inH'), a.num('inW'), a.num('outH'), a.num('outW')),
  downsample2x: (a) => ops.downsample2x(a.t('x'), a.num('inH'), a.num('inW')),
};

/** The kernel each generator op name exercises (for the coverage check). */
const KERNEL_OF: Record<string, string> = { linear: 'matmul', downsample2x: 'resizeGrid' };

// ---- comparison ----------------------------------------------------------------------------------------------

interface OpStats {
  cases: number;
  elements: number;
  maxAbs: number;
  maxRel: number;
  maxUlp: number;
  worstCase: string;
}
const stats = new Map<string, OpStats>();

function unravel(i: number, shape: readonly number[]): string {
  const idx: number[] = [];
  for (let d = shape.length - 1; d >= 0; d--) {
    idx.unshift(i % shape[d]!);
    i = Math.floor(i / shape[d]!);
  }
  return `[${idx.join(', ')}]`;
}

/** One unit in the last place of an f32 near |v| (subnormal spacing below 2^-126). */
function ulpF32(v: number): number {
  const a = Math.abs(v);
  if (a < 2 ** -126) return 2 ** -149;
  return 2 ** (Math.floor(Math.log2(a)) - 23);
}

const isNaNBits = (b: number, dtype: DType): boolean =>
  dtype === 'f16' ? (b & 0x7c00) === 0x7c00 && (b & 0x03ff) !== 0 : (b & 0x7f80) === 0x7f80 && (b & 0x007f) !== 0;

const fmtBits = (b: number): string => '0x' + b.toString(16).padStart(4, '0');

function compare(c: OracleCase, op: string, got: HostArray, exp: HostTensor, gotDType: DType): void {
  const E = exp.data;
  const shape = exp.shape;
  assert.is(gotDType, exp.dtype, `${c.name}: output dtype`);
  assert.is(got.length, E.length, `${c.name}: output size`);
  const n = E.length;
  let bad = 0;
  let first = -1;
  let maxAbs = 0, maxRel = 0, maxUlp = 0, worst = -1;
  let nonFinite = 0;

  if (c.cmp === 'bits') {
    for (let i = 0; i < n; i++) {
      const g = got[i]!, e = E[i]!;
      const ok = g === e || (isNaNBits(g, exp.dtype) && isNaNBits(e, exp.dtype));
      if (!ok && bad++ === 0) first = i;
    }
    if (bad) {
      assert.unreachable(
        `${c.name} (${op}, ${exp.dtype} bits): ${bad}/${n} patterns differ; first at ${first} ${unravel(first, shape)}: ` +
          `expected ${fmtBits(E[first]!)}, got ${fmtBits(got[first]!)}`,
      );
    }
  } else if (c.cmp === 'exact') {
    for (let i = 0; i < n; i++) {
      const g = got[i]!, e = E[i]!;
      if (!Object.is(g, e)) {
        if (bad++ === 0) first = i;
        const err = Math.abs(g - e);
        if (!(err <= maxAbs)) (maxAbs = err), (worst = i);
      }
    }
    if (bad) {
      assert.unreachable(
        `${c.name} (${op}, exact): ${bad}/${n} values differ; max |err| ${maxAbs} at ${unravel(worst, shape)}; ` +
          `first at ${first} ${unravel(first, shape)}: expected ${E[first]}, got ${got[first]}`,
      );
    }
  } else {
    const atol = c.atol ?? DEFAULT_ATOL;
    const rtol = c.rtol ?? DEFAULT_RTOL;
    for (let i = 0; i < n; i++) {
      const g = got[i]!, e = E[i]!;
      let ok: boolean;
      if (!Number.isFinite(e)) {
        ok = Object.is(g, e) || (Number.isNaN(g) && Number.isNaN(e));
      } else if (!Number.isFinite(g)) {
        ok = false;
        nonFinite++;
      } else {
        const err = Math.abs(g - e);
        ok = err <= atol + rtol * Math.abs(e);
        if (err > maxAbs) (maxAbs = err), (worst = i);
        // Relative and ulp statistics only where the value is above atol: below it the absolute error is what
        // counts (e.g. the far tail of gelu, where 0.5x(1 + tanh(·)) cancels to ~1e-16 in any float64 evaluation).
        if (Math.abs(e) >= atol) {
          maxRel = Math.max(maxRel, err / Math.abs(e));
          maxUlp = Math.max(maxUlp, err / ulpF32(e));
        }
      }
      if (!ok && bad++ === 0) first = i;
    }
    if (bad) {
      const at = worst >= 0 ? `${unravel(worst, shape)} (expected ${E[worst]}, got ${got[worst]})` : '-';
      assert.unreachable(
        `${c.name} (${op}): ${bad}/${n} values outside atol=${atol} rtol=${rtol}` +
          `${nonFinite ? `, ${nonFinite} NaN/Inf where a finite value was expected` : ''}; ` +
          `max |err| ${maxAbs.toExponential(3)} at ${at}; ` +
          `first mismatch at flat ${first} ${unravel(first, shape)}: expected ${E[first]}, got ${got[first]}`,
      );
    }
  }

  const s = stats.get(op) ?? { cases: 0, elements: 0, maxAbs: 0, maxRel: 0, maxUlp: 0, worstCase: '' };
  s.cases++;
  s.elements += n;
  if (maxAbs > s.maxAbs) (s.maxAbs = maxAbs), (s.worstCase = c.name);
  s.maxRel = Math.max(s.maxRel, maxRel);
  s.maxUlp = Math.max(s.maxUlp, maxUlp);
  stats.set(op, s);
}

// ---- the tests -----------------------------------------------------------------------------------------------

test('oracle fixtures: present, well-formed, and covering every kernel', () => {
  assert.ok(fixtures.length > 0, `no fixtures in ${FIXTURE_DIR}; run /usr/bin/python3 test/oracle/gen_op_goldens.py`);
  const covered = new Set<string>();
  for (const fx of fixtures) {
    assert.ok(fx.cases.length > 0, `${fx.family}: no cases`);
    for (const c of fx.cases) {
      assert.ok(RUNNERS[c.op], `${fx.family}/${c.name}: unknown op '${c.op}'`);
      assert.ok(fx.tensors.has(c.expected), `${fx.family}/${c.name}: missing expected tensor`);
      covered.add(KERNEL_OF[c.op] ?? c.op);
    }
  }
  const missing = OP_NAMES.filter((k) => !covered.has(k));
  assert.equal(missing, [], `kernels with no oracle case: ${missing.join(', ')}`);
});

for (const fx of fixtures) {
  for (const c of fx.cases) {
    test(`${fx.family}/${c.name}`, async () => {
      const be = new CpuBackend();
      const run = RUNNERS[c.op];
      if (!run) throw new Error(`${c.name}: unknown op '${c.op}'`);
      const y = run(new Args(c, fx, be));
      const exp = fx.tensors.get(c.expected)!;
      assert.equal([...y.shape], exp.shape, `${c.name}: output shape`);
      compare(c, c.op, await y.readRaw(), exp, y.dtype);
    });
  }
}

test.after(() => {
  const n = fixtures.reduce((a, f) => a + f.cases.length, 0);
  let worst = { op: '-', ulp: 0 };
  for (const [op, s] of stats) if (s.maxUlp > worst.ulp) worst = { op, ulp: s.maxUlp };
  // Leading newline: uvu prints its progress dots without one, and test/run.mjs only shows lines starting "NOTE:".
  console.log(`\nNOTE: oracle: ${n} PyTorch cases in ${fixtures.length} fixture files; worst close-mode error ${worst.ulp.toFixed(2)} f32 ulp (${worst.op})`);
  if (process.env.ORACLE_STATS) {
    const rows = [...stats].sort(([a], [b]) => a.localeCompare(b));
    for (const [op, s] of rows) {
      console.log(
        `  ${op.padEnd(14)} ${String(s.cases).padStart(3)} cases ${String(s.elements).padStart(7)} values  ` +
          `max|err| ${s.maxAbs.toExponential(2)}  max rel ${s.maxRel.toExponential(2)}  max ${s.maxUlp.toFixed(2)} ulp  (${s.worstCase || '-'})`,
      );
    }
  }
});

test.run();
