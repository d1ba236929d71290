// The kernel conformance harness (modelled on ggml's test-backend-ops). Each case of the op table runs on the
// backend under test and is checked
//   - against the CPU reference backend (when the backend under test is not the reference), and
//   - against its slow composition of simpler ops, run on the backend under test (for the fused ops).
// After each case, a backend that keeps guard regions around its buffers (a debug mode) is asked whether any
// kernel wrote outside its output. Modes: test (pass/fail), perf (GFLOP/s, GB/s), support (coverage).

import type { Backend } from '../../core/backend.js';
import { CostRecorder, withCost } from '../../core/cost.js';
import { UnsupportedError } from '../../core/errors.js';
import { tidy } from '../../core/scope.js';
import type { Tensor } from '../../core/tensor.js';
import { createRng, hashString } from '../../core/rng.js';
import * as ops from '../../ops/index.js';
import { compare } from './compare.js';
import { type InputSpec, OP_CASES, type OpCase } from './cases.js';

export interface VerifyOptions {
  /** The backend under test. */
  backend: Backend;
  /** The reference (normally the CPU backend). */
  reference: Backend;
  mode?: 'test' | 'perf' | 'support';
  /** Only cases whose op family equals one of these (comma-separated in the CLI). */
  ops?: string[];
  /** Only cases whose name contains this. */
  filter?: string;
  /** Perf mode: seconds of timed runs per case (default 0.5). */
  perfSeconds?: number;
  /** Perf mode: include every case, not only the ones marked for perf. */
  perfAll?: boolean;
  seed?: number;
  cases?: readonly OpCase[];
}

export type CaseStatus = 'pass' | 'fail' | 'unsupported' | 'reference';

export interface CaseResult {
  op: string;
  name: string;
  status: CaseStatus;
  /** What it was compared with: 'cpu', 'composition', or both. */
  against: string[];
  nmse: number | null;
  maxAbs: number | null;
  threshold: number;
  reason: string;
  /** Perf mode. */
  ms?: number;
  gflops?: number;
  gbps?: number;
}

// ---- deterministic inputs ----

export function makeHostInput(spec: InputSpec, rand: () => number): Float32Array | Int32Array {
  const n = spec.shape.reduce((a, b) => a * b, 1);
  if (spec.fill === 'ids') {
    const out = new Int32Array(n);
    for (let i = 0; i < n; i++) out[i] = Math.floor(rand() * (spec.max ?? 100));
    return out;
  }
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = rand() * 2 - 1;
    out[i] = spec.fill === 'wide' ? 10 * u : spec.fill === 'large' ? 1e4 + u : u;
  }
  return out;
}

function upload(backend: Backend, spec: InputSpec, data: Float32Array | Int32Array): Tensor {
  return ops.tensor(backend, data, spec.shape, spec.dtype ?? (data instanceof Int32Array ? 'i32' : 'f32'));
}

/** Runs `fn` on `backend` with the case's inputs and returns the output values (or the unsupported reason). */
async function evaluate(backend: Backend, c: OpCase, host: (Float32Array | Int32Array)[], fn: (ins: Tensor[]) => Tensor): Promise<Float32Array | Int32Array | { unsupported: string }> {
  let out: Tensor;
  try {
    out = tidy(() => fn(c.inputs.map((spec, i) => upload(backend, spec, host[i]!))));
  } catch (e) {
    if (e instanceof UnsupportedError) return { unsupported: e.message };
    throw e;
  }
  try {
    return await out.read();
  } finally {
    out.dispose();
  }
}

type GuardChecker = { checkGuards?: () => Promise<string[]> };

async function guardDamage(backend: Backend): Promise<string[]> {
  const g = (backend as unknown as GuardChecker).checkGuards;
  return g ? g.call(backend) : [];
}

async function testCase(o: VerifyOptions, c: OpCase, seed: number): Promise<CaseResult> {
  const rand = createRng(seed ^ hashString(c.name)).next;
  const host = c.inputs.map((s) => makeHostInput(s, rand));
  const res: CaseResult = { op: c.op, name: c.name, status: 'pass', against: [], nmse: null, maxAbs: null, threshold: c.tol.nmse, reason: '' };
  let got: Float32Array | Int32Array | { unsupported: string };
  try {
    got = await evaluate(o.backend, c, host, c.run);
  } catch (e) {
    return { ...res, status: 'fail', reason: `threw ${(e as Error).name}: ${(e as Error).message}` };
  }
  if ('unsupported' in got) return { ...res, status: 'unsupported', reason: got.unsupported };
  const refs: [string, () => Promise<Float32Array | Int32Array | { unsupported: string }>][] = [];
  if (o.backend !== o.reference) refs.push(['cpu', () => evaluate(o.reference, c, host, c.run)]);
  if (c.compose) refs.push(['composition', () => evaluate(o.backend, c, host, c.compose!)]);
  if (refs.length === 0) return { ...res, status: 'reference', reason: 'is the reference (checked against PyTorch goldens)' };
  for (const [name, make] of refs) {
    let want: Float32Array | Int32Array | { unsupported: string };
    try {
      want = await make();
    } catch (e) {
      return { ...res, status: 'fail', reason: `${name} threw ${(e as Error).name}: ${(e as Error).message}` };
    }
    if ('unsupported' in want) continue; // a composition this backend can't run proves nothing either way
    const cmp = compare(got, want, c.tol);
    res.against.push(name);
    res.nmse = Math.max(res.nmse ?? 0, cmp.nmse);
    res.maxAbs = Math.max(res.maxAbs ?? 0, cmp.maxAbs);
    if (!cmp.ok) return { ...res, status: 'fail', reason: `vs ${name}: ${cmp.reason}` };
  }
  const damage = await guardDamage(o.backend);
  if (damage.length) return { ...res, status: 'fail', reason: `out-of-bounds write: ${damage.join('; ')}` };
  if (res.against.length === 0) return { ...res, status: 'reference', reason: 'no runnable comparison' };
  return res;
}

async function perfCase(o: VerifyOptions, c: OpCase, seed: number): Promise<CaseResult> {
  const rand = createRng(seed ^ hashString(c.name)).next;
  const host = c.inputs.map((s) => makeHostInput(s, rand));
  const base: CaseResult = { op: c.op, name: c.name, status: 'pass', against: [], nmse: null, maxAbs: null, threshold: c.tol.nmse, reason: '' };
  const ins = c.inputs.map((spec, i) => upload(o.backend, spec, host[i]!));
  try {
    const rec = new CostRecorder();
    let first: Tensor;
    try {
      first = withCost(rec, () => tidy(() => c.run(ins)));
    } catch (e) {
      if (e instanceof UnsupportedError) return { ...base, status: 'unsupported', reason: e.message };
      throw e;
    }
    await first.read();
    first.dispose();
    const cost = rec.total();
    const times: number[] = [];
    const budget = (o.perfSeconds ?? 0.5) * 1000;
    const start = performance.now();
    while (times.length < 3 || (performance.now() - start < budget && times.length < 200)) {
      const t0 = performance.now();
      const out = tidy(() => c.run(ins));
      await o.backend.sync();
      times.push(performance.now() - t0);
      out.dispose();
    }
    times.sort((a, b) => a - b);
    const ms = times[Math.floor(times.length / 2)]!;
    return { ...base, ms, gflops: cost.flops / ms / 1e6, gbps: (cost.bytesRead + cost.bytesWritten) / ms / 1e6 };
  } finally {
    for (const t of ins) t.dispose();
  }
}

export function selectCases(o: Pick<VerifyOptions, 'ops' | 'filter' | 'cases' | 'mode' | 'perfAll'>): OpCase[] {
  return (o.cases ?? OP_CASES).filter(
    (c) =>
      (!o.ops?.length || o.ops.includes(c.op)) &&
      (!o.filter || c.name.includes(o.filter)) &&
      (o.mode !== 'perf' || o.perfAll || c.perf),
  );
}

/** Runs the selected cases; never throws for a failing case (the result says why). */
export async function verifyBackend(o: VerifyOptions, onResult?: (r: CaseResult) => void): Promise<CaseResult[]> {
  const seed = o.seed ?? 1234;
  const results: CaseResult[] = [];
  for (const c of selectCases(o)) {
    const r = o.mode === 'perf' ? await perfCase(o, c, seed) : await testCase(o, c, seed);
    results.push(r);
    onResult?.(r);
  }
  return results;
}

export function summarize(results: readonly CaseResult[]): { pass: number; fail: number; unsupported: number; reference: number } {
  const s = { pass: 0, fail: 0, unsupported: 0, reference: 0 };
  for (const r of results) s[r.status]++;
  return s;
}

const fmt = (x: number | null | undefined, digits = 1) => (x === null || x === undefined ? '' : x === 0 ? '0' : x.toExponential(digits));

/** One line per case, aligned, for the terminal. */
export function formatResult(r: CaseResult, mode: VerifyOptions['mode'] = 'test'): string {
  const mark = { pass: 'ok  ', fail: 'FAIL', unsupported: 'n/a ', reference: 'ref ' }[r.status];
  if (mode === 'perf') {
    if (r.status !== 'pass') return `${mark} ${r.name.padEnd(58)} ${r.reason}`;
    return `${mark} ${r.name.padEnd(58)} ${r.ms!.toFixed(3).padStart(9)} ms ${r.gflops!.toFixed(2).padStart(8)} GFLOP/s ${r.gbps!.toFixed(2).padStart(8)} GB/s`;
  }
  const detail = r.status === 'pass' ? `vs ${r.against.join('+').padEnd(15)} nmse ${fmt(r.nmse).padStart(8)} (≤ ${fmt(r.threshold, 0)})  max|Δ| ${fmt(r.maxAbs)}` : r.reason;
  return `${mark} ${r.name.padEnd(58)} ${detail}`;
}

/** Support mode: one row per op family with counts. */
export function formatSupport(results: readonly CaseResult[]): string {
  const byOp = new Map<string, CaseResult[]>();
  for (const r of results) byOp.set(r.op, [...(byOp.get(r.op) ?? []), r]);
  const lines = ['op'.padEnd(16) + 'supported  reason when not'];
  for (const [op, rs] of byOp) {
    const no = rs.filter((r) => r.status === 'unsupported');
    lines.push(`${op.padEnd(16)}${`${rs.length - no.length}/${rs.length}`.padEnd(11)}${no[0]?.reason ?? ''}`);
  }
  return lines.join('\n');
}
