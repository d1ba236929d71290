// The tensor core: lifecycle, scopes, registry, dtype conversions, costs, and the op layer's input validation.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CpuBackend } from '../backends/cpu/index.js';
import { MetaBackend } from '../backends/meta/index.js';
import { CostRecorder, withCost, costSection } from '../core/cost.js';
import { f16ToF32, f32ToBf16, f32ToF16, bf16ToF32 } from '../core/dtype.js';
import { DTypeError, ShapeError, TensorStateError, UnsupportedError, ValueError, BackendError } from '../core/errors.js';
import { bestBackend, getBackend, registerBackend } from '../core/registry.js';
import { keep, tidy } from '../core/scope.js';
import { unsupported } from '../core/backend.js';
import * as ops from '../ops/index.js';

const cpu = new CpuBackend();
const t = (data: number[], shape: number[]) => ops.tensor(cpu, data, shape);

test('tensor: shape, read, reshape shares storage, dispose once', async () => {
  const before = cpu.memory().liveBytes;
  const a = t([1, 2, 3, 4, 5, 6], [2, 3]);
  assert.equal(a.shape, [2, 3]);
  assert.equal(Array.from(await a.read()), [1, 2, 3, 4, 5, 6]);
  const r = ops.reshape(a, [3, -1]);
  assert.equal(r.shape, [3, 2]);
  a.dispose();
  assert.equal(Array.from(r.readSync()), [1, 2, 3, 4, 5, 6], 'view keeps storage alive');
  r.dispose();
  r.dispose(); // idempotent
  assert.equal(cpu.memory().liveBytes, before, 'storage freed exactly once');
  assert.throws(() => r.readSync(), (e: Error) => e instanceof TensorStateError && /disposed/.test(e.message));
  assert.throws(() => ops.add(r, r), (e: Error) => e instanceof TensorStateError);
});

test('tidy disposes intermediates and keeps results (nested)', () => {
  const before = cpu.memory().liveBytes;
  let inner: ReturnType<typeof t> | undefined;
  const out = tidy(() => {
    const a = t([1, 2], [2]);
    const b = ops.add(a, a);
    inner = tidy(() => ops.mul(b, ops.add(b, b)));
    const kept = keep(ops.scale(a, 2));
    return { result: ops.add(inner, b), kept };
  });
  assert.not.ok(out.result.disposed);
  assert.not.ok(out.kept.disposed);
  assert.ok(inner!.disposed, 'inner result disposed with the outer scope');
  assert.equal(Array.from(out.result.readSync()), [2 * 4 + 2, 4 * 8 + 4]);
  out.result.dispose();
  out.kept.dispose();
  assert.equal(cpu.memory().liveBytes, before);
  assert.throws(() => tidy(() => { t([1], [1]); throw new Error('boom'); }), /boom/);
  assert.equal(cpu.memory().liveBytes, before, 'tensors freed when fn throws');
});

test('tidy: a tensor returned twice survives the inner and the outer scope once each; keep works from any depth', () => {
  const before = cpu.memory().liveBytes;
  let x: ReturnType<typeof t> | undefined;
  const outer = tidy(() => {
    const [a, b] = tidy(() => {
      const a = t([1, 2], [2]);
      return [a, a];
    });
    assert.is(a, b);
    x = keep(a!); // one keep takes it out of this scope: it was moved here once, not twice
    const kept = tidy(() => keep(ops.add(a!, a!)));
    return { kept };
  });
  assert.not.ok(x!.disposed, 'returned twice, then kept once: alive');
  assert.not.ok(outer.kept.disposed);
  x!.dispose();
  outer.kept.dispose();
  assert.equal(cpu.memory().liveBytes, before);
});

test('tensor shapes are frozen and shared, never the caller\'s array', () => {
  const dims = [2, 3];
  const a = t([1, 2, 3, 4, 5, 6], dims);
  dims[0] = 7;
  assert.equal(a.shape, [2, 3], 'a later change to the caller\'s array does not reach the tensor');
  assert.ok(Object.isFrozen(a.shape));
  const b = ops.add(a, a);
  assert.is(b.shape, a.shape, 'same-shape output shares the frozen array');
  const c = t([1, 2, 3, 4, 5, 6], [2, 3]);
  assert.is(c.shape, a.shape, 'equal fresh shapes are interned');
  const d = ops.reshape(a, [3, 2]);
  assert.equal(d.shape, [3, 2]);
  assert.ok(Object.isFrozen(d.shape));
  // A typed array as the shape (JS callers do this) becomes a plain frozen array (typed arrays cannot be frozen).
  const e = ops.zeros(cpu, new Int32Array([3, 1]) as unknown as number[]);
  assert.ok(Array.isArray(e.shape) && Object.isFrozen(e.shape));
  assert.equal([...e.shape], [3, 1]);
  for (const x of [a, b, c, d, e]) x.dispose();
});

test('tidy: a result holding many tensors (past the small-result path) keeps each once', () => {
  const before = cpu.memory().liveBytes;
  const parts = tidy(() => {
    const xs = Array.from({ length: 40 }, (_, i) => t([i], [1]));
    ops.add(xs[0]!, xs[1]!); // an intermediate: freed
    return [...xs, xs[3]!, { again: xs[39]! }];
  });
  assert.is(parts.length, 42);
  for (const p of parts.slice(0, 40)) assert.not.ok((p as { disposed: boolean }).disposed);
  for (const p of parts.slice(0, 40)) (p as { dispose(): void }).dispose();
  assert.equal(cpu.memory().liveBytes, before);
});

test('dtype conversions: f16 and bf16 round-to-nearest-even, specials', () => {
  assert.is(f32ToF16(1), 0x3c00);
  assert.is(f32ToF16(65504), 0x7bff);
  assert.is(f32ToF16(65520), 0x7c00, 'overflow to Inf');
  assert.is(f32ToF16(-0), 0x8000);
  assert.is(f16ToF32(0x0001), 2 ** -24, 'smallest subnormal');
  assert.is(f32ToF16(2 ** -25), 0, 'ties to even at the subnormal boundary');
  assert.is(f32ToF16(3 * 2 ** -25), 2, 'rounds up to even');
  assert.ok(Number.isNaN(f16ToF32(f32ToF16(NaN))));
  assert.is(f32ToBf16(1), 0x3f80);
  assert.is(bf16ToF32(f32ToBf16(1 + 2 ** -8)), 1, 'tie goes to even (down)');
  assert.is(bf16ToF32(f32ToBf16(1 + 3 * 2 ** -8)), 1 + 2 ** -6, 'tie goes to even (up)');
  for (let i = 0; i < 0x7c00; i += 37) assert.is(f32ToF16(f16ToF32(i)), i, `f16 ${i} round-trips`);
});

test('op validation: clear errors naming the op and shapes', () => {
  const a = t([1, 2, 3, 4, 5, 6], [2, 3]);
  assert.throws(() => ops.matmul(a, a), (e: Error) => e instanceof ShapeError && /matmul/.test(e.message) && /\[2, 3\]/.test(e.message));
  assert.throws(() => ops.add(a, t([1, 2], [2])), (e: Error) => e instanceof ShapeError && /add.*\[2, 3\].*\[2\]/.test(e.message));
  assert.throws(() => ops.reshape(a, [4, 2]), /reshape: cannot reshape \[2, 3\]/);
  assert.throws(() => ops.slice(a, [0, 2], [2, 2]), /slice: axis 1/);
  assert.throws(() => ops.transpose(a, [0, 0]), /not a permutation/);
  assert.throws(() => ops.rmsNorm(a, t([1, 2], [2])), /rmsNorm: gamma must have shape \[3\]/);
  assert.throws(() => ops.rmsNorm(a, null, -1), (e: Error) => e instanceof ValueError);
  assert.throws(() => ops.rope(a, { theta: 1e4 }), /rope: x must have rank 4/);
  const ids = ops.tensor(cpu, new Int32Array([0, 1]), [2]);
  assert.throws(() => ops.embedding(a, a), (e: Error) => e instanceof DTypeError && /ids has dtype f32/.test(e.message));
  assert.throws(() => ops.softmax(ids), (e: Error) => e instanceof DTypeError);
  assert.throws(() => ops.unary('destroy' as never, a), (e: Error) => e instanceof ValueError && /unary: op must be one of gelu_tanh, .*got "destroy"/.test(e.message));
  const q = ops.zeros(cpu, [1, 2, 3, 4]);
  const k = ops.zeros(cpu, [1, 5, 2, 4]);
  assert.throws(() => ops.attention(q, k, k), /query heads 3 must be a multiple of kv heads 2/);
  const q2 = ops.zeros(cpu, [1, 3, 2, 4]);
  assert.throws(() => ops.attention(q2, k, k, { causal: true, queryOffset: 3 }), /causal queries reach position 5 but only 5 keys/);
  // head-major K/V [B, Hkv, S, D]: the same checks read heads and keys from their axes
  const khm = ops.zeros(cpu, [1, 2, 5, 4]);
  assert.throws(() => ops.attention(q, khm, khm, { kvHeadMajor: true }), /query heads 3 must be a multiple of kv heads 2/);
  assert.throws(() => ops.attention(q2, khm, khm, { causal: true, queryOffset: 3, kvHeadMajor: true }), /causal queries reach position 5 but only 5 keys/);
  assert.throws(() => ops.attention(q2, khm, ops.zeros(cpu, [1, 5, 2, 4]), { kvHeadMajor: true }), /k \[1, 2, 5, 4\] and v \[1, 5, 2, 4\] disagree in keys or heads/);
  assert.throws(() => ops.attention(q2, khm, khm, { kvHeadMajor: 'yes' as never }), (e: Error) => e instanceof ValueError && /attention: kvHeadMajor must be true or false, got "yes"/.test(e.message));
  assert.throws(() => ops.tensor(cpu, [1, 2, 3], [2, 2]), /3 values do not fill shape \[2, 2\]/);
  assert.throws(() => ops.zeros(cpu, [1e9, 1e9]), (e: Error) => e instanceof ShapeError && /more elements than can be indexed/.test(e.message));
  assert.throws(() => ops.zeros(cpu, [1e5, 1e5]), (e: Error) => e instanceof ValueError && /zeros: shape \[100000, 100000\] f32 needs 40000000000 bytes/.test(e.message));
  // An output too big for the backend fails at allocation, before any compute.
  const small = new CpuBackend('small', { maxAllocBytes: 1024 });
  const x = ops.zeros(small, [16, 16]);
  assert.throws(() => ops.matmul(x, ops.zeros(small, [16, 17])), (e: Error) => e instanceof BackendError && /small: cannot allocate 272 × f32 \(1088 bytes\): over the 1024-byte limit/.test(e.message));
  assert.throws(() => ops.zeros(cpu, [-1]), (e: Error) => e instanceof ShapeError);
});

test('mixing backends is an error; unsupported ops are errors with the reason', () => {
  const other = new CpuBackend('cpu2');
  const a = t([1], [1]);
  const b = ops.tensor(other, [1], [1]);
  assert.throws(() => ops.add(a, b), /different backends \('cpu' and 'cpu2'\)/);
  class NoSoftmax extends CpuBackend {
    override supports(op: string, ...rest: unknown[]) {
      return op === 'softmax' ? unsupported('not today') : super.supports(op as never, ...(rest as [never, never, never]));
    }
  }
  const ns = new NoSoftmax('nosoftmax');
  const before = ns.memory().liveBytes;
  const x = ops.tensor(ns, [1, 2], [2]);
  assert.throws(() => ops.softmax(x), (e: Error) => e instanceof UnsupportedError && /softmax: backend 'nosoftmax' cannot run it: not today/.test(e.message));
  x.dispose();
  assert.equal(ns.memory().liveBytes, before, 'output of a refused op is freed');
});

test('registry: embedders register backends; bestBackend skips shape-only and software GPUs', async () => {
  registerBackend('test-embedded', () => new CpuBackend('test-embedded'), { priority: 1000 });
  assert.throws(() => registerBackend('test-embedded', () => new CpuBackend()), /already registered/);
  const b = await getBackend('test-embedded');
  assert.is(b, await getBackend('test-embedded'), 'one instance');
  assert.is((await bestBackend()).backend.name, 'test-embedded');
  registerBackend('fake-gpu', () => Object.assign(new CpuBackend('fake-gpu'), { info: () => ({ name: 'fake-gpu', device: 'gpu' as const, software: true, description: 'lavapipe', dtypes: [] }) }), { priority: 2000 });
  const best = await bestBackend();
  assert.is(best.backend.name, 'test-embedded');
  assert.ok(best.skipped.some((s) => s.name === 'fake-gpu' && /software/.test(s.reason)));
  assert.is((await bestBackend({ allowSoftwareGpu: true })).backend.name, 'fake-gpu');
  registerBackend('failing', () => { throw new Error('no device'); }, { priority: 3000 });
  assert.ok((await bestBackend()).skipped.some((s) => s.name === 'failing' && /no device/.test(s.reason)));
  assert.throws(() => getBackend('nope'), /no backend named 'nope'/);
});

test('cost recorder: ops count FLOPs by section; meta backend computes nothing', async () => {
  const meta = new MetaBackend();
  const rec = new CostRecorder();
  withCost(rec, () => {
    const x = ops.zeros(meta, [1, 4, 8]);
    const w = ops.zeros(meta, [16, 8]);
    costSection('vision', () => ops.linear(x, w));
    costSection('llm', () => ops.softmax(x));
  });
  assert.is(rec.total('vision').flops, 2 * 4 * 16 * 8);
  assert.is(rec.total('llm').flops, 5 * 32);
  assert.is(rec.total().calls, 2);
  await assert.not.throws(async () => {});
  const x = ops.zeros(meta, [2]);
  try {
    await x.read();
    assert.unreachable('meta read should throw');
  } catch (e) {
    assert.match((e as Error).message, /no values/);
  }
});

test.run();
