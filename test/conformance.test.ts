// The conformance suite: the case table (backends/conformance: every op at awkward sizes vs the CPU reference,
// fused ops also vs their compositions, out-of-bounds writes caught after every case on backends with guard
// regions) on every registered backend, in each configuration of its option matrix (backends/conformance/
// matrix.ts): wasm thread counts, split paths, FMA and bf16 activations; WebGPU default and portable kernels;
// each gpu.js mode. Then proof that the harness catches broken kernels, and the comparison rules.
//
// A backend that cannot be created here is reported "not run" on a NOTE line and registers no test, so it never
// counts as passed; under CI=true the ones marked requiredOnCi (WebGPU on lavapipe, gpu.js webgpu and webasm)
// must be available, else a failing test says why. LAVI_CONFORMANCE=wasm,webgpu runs only those backends.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import '../backends/index.js';
import { CpuBackend } from '../backends/cpu/index.js';
import { compare, formatResult, summarize, verifyBackend, type CaseResult } from '../backends/conformance/index.js';
import { CONFORMANCE_MATRIX, type ConformanceVariant } from '../backends/conformance/matrix.js';
import { OP_NAMES, unsupported, type Backend, type KernelAttrs, type KernelInputs, type Support } from '../core/backend.js';
import { listBackends } from '../core/registry.js';
import type { Tensor } from '../core/tensor.js';

const CI = process.env.CI === 'true';
const only = process.env.LAVI_CONFORMANCE?.split(',').map((s) => s.trim());
const cpu = new CpuBackend();

/** "matmul 20/20, softmax 5/5, …" with unsupported counts where there are any. */
function perOp(results: readonly CaseResult[]): string {
  const byOp = new Map<string, CaseResult[]>();
  for (const r of results) byOp.set(r.op, [...(byOp.get(r.op) ?? []), r]);
  return [...byOp].map(([op, rs]) => {
    const pass = rs.filter((r) => r.status === 'pass' || r.status === 'reference').length;
    const na = rs.filter((r) => r.status === 'unsupported').length;
    return `${op} ${pass}/${rs.length}${na ? ` (${na} n/a)` : ''}`;
  }).join(', ');
}

async function runVariant(name: string, v: ConformanceVariant, backend: Backend): Promise<void> {
  const t0 = performance.now();
  const results = await verifyBackend({ backend, reference: cpu, ...(v.ops ? { ops: [...v.ops] } : {}), ...(v.cases ? { cases: v.cases } : {}) });
  const secs = (performance.now() - t0) / 1000;
  const s = summarize(results);
  console.log(`\nNOTE: conformance ${name} (${v.label}): ${s.pass} passed, ${s.fail} failed, ${s.unsupported} unsupported${s.reference ? `, ${s.reference} reference` : ''} of ${results.length} cases in ${secs.toFixed(1)} s [${backend.info().description}]`);
  const bad = results.filter((r) => r.status === 'fail' || (r.status === 'unsupported' && (!v.allowUnsupported || !r.reason.trim()))).map((r) => formatResult(r));
  assert.equal(bad, [], `${name} (${v.label}):\n${bad.join('\n')}`);
  if (s.unsupported) console.log(`NOTE:   ${perOp(results)}`);
  // Every op of the table is exercised (or, with an op list, each op listed).
  if (!v.allowUnsupported) for (const op of v.ops ?? OP_NAMES) assert.ok(results.some((r) => r.op === op && r.status === 'pass'), `${name} (${v.label}): no passing case for ${op}`);
  assert.equal(v.check?.(backend) ?? [], [], `${name} (${v.label})`);
}

for (const reg of listBackends()) {
  if (only && !only.includes(reg.name)) continue;
  const variants: readonly ConformanceVariant[] = CONFORMANCE_MATRIX[reg.name] ?? [{ label: 'as registered', create: async () => reg.factory() }];
  // The group's first variant is created now, so that an unavailable backend registers no test.
  let first: Backend | null = null;
  let reason = '';
  try {
    first = await variants[0]!.create(null);
  } catch (e) {
    reason = (e as Error).message;
  }
  if (!first) {
    if (CI && variants[0]!.requiredOnCi) test(`${reg.name}: available (required on CI)`, () => assert.unreachable(`${reg.name} unavailable on CI: ${reason}`));
    else console.log(`NOTE: conformance ${reg.name}: not run: unavailable here (${reason || 'no backend'})`);
    continue;
  }
  if (first.info().device === 'none') {
    console.log(`NOTE: conformance ${reg.name}: not run: it computes nothing (${first.info().description})`);
    await first.destroy();
    continue;
  }
  const f: Backend = first;
  variants.forEach((v, i) => {
    const last = i === variants.length - 1;
    test(`${reg.name} (${v.label}): every conformance case passes`, async () => {
      let b: Backend | null = f;
      try {
        if (i > 0) b = await v.create(f);
        if (!b) return console.log(`NOTE: conformance ${reg.name} (${v.label}): not applicable here (covered by the first variant)`);
        await runVariant(reg.name, v, b);
      } finally {
        if (b && b !== f) await b.destroy();
        if (last) await f.destroy();
      }
    });
  });
}

test('CPU reference: every fused op has a composition check', async () => {
  const results = await verifyBackend({ backend: cpu, reference: cpu });
  for (const op of ['modulatedNorm', 'attention', 'layerNorm', 'rmsNorm', 'swiglu', 'matmul']) {
    assert.ok(results.some((r) => r.op === op && r.status === 'pass' && r.against.includes('composition')), `${op} has no composition check`);
  }
});

/** A CPU backend with three deliberately wrong kernels and one it refuses. */
class BrokenBackend extends CpuBackend {
  constructor() {
    super('broken');
  }
  override rmsNorm = (out: Tensor, ins: KernelInputs<'rmsNorm'>, at: KernelAttrs<'rmsNorm'>) => {
    new CpuBackend().rmsNorm(out, ins, at);
    const o = out.storage as Float32Array;
    for (let i = 0; i < o.length; i++) o[i]! *= 1.01; // 1% off
  };
  override attention = (out: Tensor, ins: KernelInputs<'attention'>, at: KernelAttrs<'attention'>) => {
    new CpuBackend().attention(out, ins, at);
    (out.storage as Float32Array)[0] = NaN;
  };
  override transpose = (out: Tensor, ins: KernelInputs<'transpose'>, at: KernelAttrs<'transpose'>) => {
    new CpuBackend().transpose(out, ins, at);
    const o = out.storage as Float32Array;
    if (o.length > 2) o[o.length - 1] = o[o.length - 2]!; // one wrong element
  };
  override supports<K extends 'rope' | string>(op: K, ...rest: unknown[]): Support {
    if (op === 'rope') return unsupported('rope is not implemented on the broken backend');
    return super.supports(op as never, ...(rest as [never, never, never]));
  }
}

test('the harness fails broken kernels and reports unsupported ops', async () => {
  const results = await verifyBackend({ backend: new BrokenBackend(), reference: cpu });
  const byOp = (op: string) => results.filter((r) => r.op === op);
  assert.ok(byOp('rmsNorm').every((r) => r.status === 'fail' && /NMSE/.test(r.reason)), 'rmsNorm 1% error not caught');
  assert.ok(byOp('attention').every((r) => r.status === 'fail' && /NaN/.test(r.reason)), 'NaN in attention not caught');
  assert.ok(byOp('transpose').every((r) => r.status === 'fail' && /first mismatch|NMSE/.test(r.reason)), 'wrong transpose element not caught');
  assert.ok(byOp('rope').every((r) => r.status === 'unsupported' && /broken backend/.test(r.reason)));
  assert.ok(byOp('softmax').every((r) => r.status === 'pass'), 'correct kernels must still pass');
  // Plain matmuls pass against the reference; linear's composition uses the broken transpose, so it must fail.
  assert.ok(byOp('matmul').filter((r) => r.name.startsWith('matmul ')).every((r) => r.status === 'pass' && r.against.includes('cpu')), 'matmul');
  assert.ok(byOp('matmul').filter((r) => /^linear \d/.test(r.name) && !r.name.startsWith('linear 1x1·')).every((r) => r.status === 'fail' && /vs composition/.test(r.reason)), 'linear');
});

test('compare: NMSE, max-abs, NaN/Inf rules, exact mode', () => {
  assert.ok(compare([1, 2, 3], [1, 2, 3], { nmse: 0 }).ok);
  assert.not.ok(compare([1, 2, 3.0001], [1, 2, 3], { nmse: 0 }).ok);
  assert.ok(compare([1, 2, 3.0001], [1, 2, 3], { nmse: 1e-7 }).ok);
  const nan = compare([1, NaN], [1, 2], { nmse: 1 });
  assert.not.ok(nan.ok);
  assert.match(nan.reason, /NaN at 1/);
  assert.ok(compare([Infinity], [Infinity], { nmse: 0 }).ok);
  assert.not.ok(compare([-Infinity], [Infinity], { nmse: 1 }).ok);
  // One grossly wrong element among many passes an aggregate NMSE but not the elementwise bound.
  const many = Float64Array.from({ length: 10000 }, (_, i) => Math.sin(i) * 10);
  const oneOff = many.slice();
  oneOff[5000]! += 0.5;
  const r = compare(oneOff, many, { nmse: 5e-4 });
  assert.ok(r.nmse < 5e-4);
  assert.not.ok(r.ok);
  assert.match(r.reason, /element 5000/);
  const bad = compare([1, 2, 4], [1, 2, 3], { nmse: 1e-3 });
  assert.equal(bad.firstMismatch, { index: 2, got: 4, want: 3 });
  assert.equal(bad.maxAbs, 1);
  assert.not.ok(compare([1], [1, 2], { nmse: 1 }).ok);
});

test.run();
