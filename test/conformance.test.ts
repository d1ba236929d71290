// The conformance harness on the CPU reference (fused kernels vs compositions of simple ops), and proof that the
// harness catches broken kernels: a backend with deliberately wrong kernels must fail exactly those cases.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CpuBackend } from '../backends/cpu/index.js';
import { compare, summarize, verifyBackend } from '../backends/conformance/index.js';
import { unsupported, type KernelAttrs, type KernelInputs, type Support } from '../core/backend.js';
import type { Tensor } from '../core/tensor.js';

const cpu = new CpuBackend();

test('CPU reference passes every case that has a comparison', async () => {
  const results = await verifyBackend({ backend: cpu, reference: cpu });
  const s = summarize(results);
  const failures = results.filter((r) => r.status === 'fail').map((r) => `${r.name}: ${r.reason}`);
  assert.equal(failures, []);
  assert.ok(s.pass >= 40, `only ${s.pass} cases compared`);
  // Every fused op has a composition check.
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
