// The gpu.js backend's contract beyond kernel values (those are in conformance.test.ts): modes are set up
// exactly as requested or creation fails with a reason, gpu.js's own CPU fallback is an error, kernels compile
// once per shape, webasm threads engage, WebGPU keeps intermediates on the device and lets Node exit, and the
// registry names exist.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { registerBuiltinBackends } from '../backends/index.js';
import { createGpuJsBackend, type GpuJsBackend } from '../backends/gpujs/index.js';
import { webasmRowsAcrossLanes } from '../backends/gpujs/ops-matmul.js';
import { GBuf, GpuJsRuntime } from '../backends/gpujs/runtime.js';
import { BackendError, DTypeError } from '../core/errors.js';
import { listBackends } from '../core/registry.js';
import { Tensor } from '../core/tensor.js';
import * as ops from '../ops/index.js';

const CI = process.env.CI === 'true';

const seq = (n: number, f = (i: number) => Math.sin(i) * 3) => Float32Array.from({ length: n }, (_, i) => f(i));

test('the built-in registration names every gpu.js mode once (priority 5, its cpu mode 4; idempotent)', () => {
  registerBuiltinBackends();
  const regs = listBackends().filter((r) => r.name.startsWith('gpujs-'));
  assert.equal(regs.map((r) => r.name).sort(), ['gpujs-cpu', 'gpujs-headlessgl', 'gpujs-webasm', 'gpujs-webasm-threads', 'gpujs-webgpu']);
  assert.ok(regs.every((r) => r.priority === (r.name === 'gpujs-cpu' ? 4 : 5)));
});

test('creation fails with a clear error for unknown or misconfigured modes', async () => {
  for (const [opts, re] of [
    [{ mode: 'webgl2' }, /unknown mode 'webgl2'/],
    [{ mode: 'cpu', threads: true }, /threads are a webasm option/],
  ] as const) {
    let err: unknown = null;
    try {
      await createGpuJsBackend(opts as never);
    } catch (e) {
      err = e;
    }
    assert.instance(err, BackendError);
    assert.match((err as Error).message, re);
  }
});

test('headlessgl: either runs, or fails naming the missing gl package / display', async () => {
  try {
    const b = await createGpuJsBackend({ mode: 'headlessgl' });
    assert.is(b.runningMode, 'headlessgl');
    console.log(`\nNOTE: gpujs headlessgl available: ${b.info().description}`);
    await b.destroy();
  } catch (e) {
    assert.instance(e, BackendError);
    assert.match((e as Error).message, /headlessgl' is unavailable: .*(\bgl\b|display)/);
    console.log(`\nNOTE: gpujs headlessgl unavailable here: ${(e as Error).message}`);
  }
});

test('webasm: reports its mode, runs synchronously (readSync), results match', async () => {
  const b = await createGpuJsBackend({ mode: 'webasm' });
  try {
    assert.is(b.runningMode, 'webasm');
    assert.is(b.fallbackReason, null);
    const info = b.info();
    assert.is(info.device, 'cpu');
    assert.match(info.description, /mode webasm.*SIMD/);
    assert.ok(b.readSync, 'sync mode offers readSync');
    const x = ops.tensor(b, seq(10), [10]);
    const y = ops.scale(x, 2, 1);
    assert.equal(Array.from(y.readSync()), Array.from(seq(10), (v) => Math.fround(Math.fround(v * 2) + 1)));
  } finally {
    await b.destroy();
  }
});

test('gpu.js degrading a kernel to its CPU backend is an error, never a silent mode switch', async () => {
  const rt = await GpuJsRuntime.open({ mode: 'webasm' });
  try {
    // A texture argument is something gpu.js's webasm backend hands to its CPU backend (with a console warning).
    const require = createRequire(import.meta.url);
    const { Texture } = require('gpu.js') as { Texture: { prototype: object } };
    const texture = Object.assign(Object.create(Texture.prototype) as object, {
      type: 'NumberTexture', output: [4], size: [4, 1], kernel: null, toArray: () => new Float32Array([1, 2, 3, 4]),
    });
    const y = rt.alloc(4, 'f32');
    const warn = console.warn;
    console.warn = () => {}; // gpu.js announces the fallback; the error below is what matters
    let err: unknown = null;
    try {
      rt.run({ name: 'double', source: 'function (x) {\n  return x[this.thread.x] * 2.0;\n}', output: [4] }, [texture as never], y);
    } catch (e) {
      err = e;
    } finally {
      console.warn = warn;
    }
    assert.instance(err, BackendError);
    assert.match((err as Error).message, /degraded kernel 'double' to its 'cpu' backend .*NumberTexture.*refusing/);
    assert.match(rt.fallbackReason ?? '', /NumberTexture is not supported on the webasm backend/);
  } finally {
    await rt.destroy();
  }
});

test('f16/bf16 narrowing and widening in kernels are bit-exact at the edges (zero, overflow, subnormals, ties)', async () => {
  const { CpuBackend } = await import('../backends/cpu/index.js');
  const cpu = new CpuBackend();
  const b = await createGpuJsBackend({ mode: 'webasm' });
  try {
    const values = Float32Array.from([0, 1, -3, 65504, 65519, 65520, 1e9, 6.1e-5, 5.96e-8, 2.98e-8, 1e-10, -0.333333, 1.0009765625,
      3.3895314e38, 3.4e38, 1.00390625, 1.01171875, -7.5, 1e-30, 1.17549435e-38, 1000.5, -1e-3]);
    for (const to of ['f16', 'bf16'] as const) {
      const got = await ops.cast(ops.tensor(b, values, [values.length]), to).readRaw();
      const want = await ops.cast(ops.tensor(cpu, values, [values.length]), to).readRaw();
      assert.equal(Array.from(got), Array.from(want), `f32 → ${to}`);
      const back = await ops.cast(ops.tensor(b, want as Uint16Array, [values.length], to), 'f32').read();
      const backWant = await ops.cast(ops.tensor(cpu, want as Uint16Array, [values.length], to), 'f32').read();
      assert.equal(Array.from(back), Array.from(backWant), `${to} → f32`);
    }
    const specials = Uint16Array.from([0x7c00, 0xfc00, 0x0001, 0x03ff, 0x3c00, 0x8000]);
    assert.equal(Array.from(await ops.cast(ops.tensor(b, specials, [6], 'f16'), 'f32').read()), [Infinity, -Infinity, 2 ** -24, 1023 * 2 ** -24, 1, -0]);
  } finally {
    await b.destroy();
  }
});

test('rope stays accurate at long positions (in-kernel angle reduction), one kernel for every offset', async () => {
  const { CpuBackend } = await import('../backends/cpu/index.js');
  const cpu = new CpuBackend();
  const b = await createGpuJsBackend({ mode: 'webasm' });
  try {
    const x = seq(3 * 2 * 64, (i) => Math.sin(i * 1.3));
    let compiles = -1;
    for (const offset of [0, 1000, 5000, 32768, 500000]) {
      const got = (await ops.rope(ops.tensor(b, x, [1, 3, 2, 64]), { theta: 10000, offset }).read()) as Float32Array;
      const want = (await ops.rope(ops.tensor(cpu, x, [1, 3, 2, 64]), { theta: 10000, offset }).read()) as Float32Array;
      let err = 0;
      for (let i = 0; i < got.length; i++) err = Math.max(err, Math.abs(got[i]! - want[i]!));
      // a plain f32 angle would be off by ½ ulp(position): 2.4e-4 rad at 5000, 2e-3 at 32768
      assert.ok(err < 1e-5, `offset ${offset}: max |Δ| ${err}`);
      if (compiles < 0) compiles = b.stats.compiles;
    }
    assert.is(b.stats.compiles, compiles, 'the offset is a uniform');
  } finally {
    await b.destroy();
  }
});

test('kernels compile once per shape and are reused', async () => {
  const b = await createGpuJsBackend({ mode: 'cpu' });
  try {
    const x = ops.tensor(b, seq(64), [64]);
    const c0 = b.stats.compiles;
    ops.add(x, x);
    const c1 = b.stats.compiles;
    ops.add(x, x);
    assert.is(b.stats.compiles, c1, 'same op and shape: no new compile');
    assert.is(c1, c0 + 1);
    ops.add(ops.tensor(b, seq(65), [65]), ops.tensor(b, seq(65), [65]));
    assert.is(b.stats.compiles, c1 + 1, 'new shape: one compile');
    // uniforms (scale, shift) are kernel arguments: new values reuse the kernel
    ops.scale(x, 2, 1);
    const c2 = b.stats.compiles;
    ops.scale(x, 3, -1);
    assert.is(b.stats.compiles, c2);
  } finally {
    await b.destroy();
  }
});

test('values beyond what f32 indexing/storage holds exactly are refused, with reasons', async () => {
  const b = await createGpuJsBackend({ mode: 'cpu' });
  try {
    let err: unknown = null;
    try {
      ops.tensor(b, Int32Array.from([1, 2 ** 24 + 1]), [2], 'i32');
    } catch (e) {
      err = e;
    }
    assert.instance(err, DTypeError);
    assert.match((err as Error).message, /outside ±2\^24/);
    // supports() looks at sizes only: a storage-less tensor of 2^24 + 1 elements is enough to ask
    const big = Tensor.fromStorage(b, [2 ** 24 + 1], 'f32', new GBuf('f32', 0));
    const s = b.supports('unary', big, [big], { op: 'exp' });
    assert.not.ok(s.ok);
    assert.match((s as { reason: string }).reason, /indices in f32, exact only up to 2\^24/);
  } finally {
    await b.destroy();
  }
});

test('webasm threads: kernels with ≥ 4096 outputs run on gpu.js worker threads, with the same results', async () => {
  const b = await createGpuJsBackend({ mode: 'webasm', threads: true });
  try {
    assert.is(b.threads, true);
    assert.not.ok(b.readSync, 'async contract: no readSync');
    const n = 8192;
    const x = ops.tensor(b, seq(n), [n]);
    const y = ops.unary('exp', x);
    const got = (await y.read()) as Float32Array;
    assert.ok(b.stats.threadedCalls > 0, 'no threaded call');
    for (const i of [0, 1, 4095, 4096, n - 1]) assert.ok(Math.abs(got[i]! - Math.exp(seq(n)[i]!)) <= 1e-6 * Math.exp(3), `exp at ${i}`);
  } finally {
    await b.destroy();
  }
});

// float64 reference of out[z, m, n] = Σ_k a[z, m, k] · b[(z,) k, n] (+ bias[n]); b may be [N, K] (transposeB)
const ref = (a: Float32Array, bm: Float32Array, bias: Float32Array | null, Z: number, M: number, K: number, N: number, bShared: boolean, tB: boolean) => {
  const out = new Float64Array(Z * M * N);
  for (let z = 0; z < Z; z++) {
    const bo = bShared ? 0 : z * K * N;
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        let acc = bias ? bias[n]! : 0;
        for (let k = 0; k < K; k++) acc += a[(z * M + m) * K + k]! * bm[bo + (tB ? n * K + k : k * N + n)]!;
        out[(z * M + m) * N + n] = acc;
      }
    }
  }
  return out;
};

test('webasm: 2×2 matmul with row pairs across the SIMD lanes (⌈M/2⌉ % 4 = 0): odd N, batches, transposed b, bias', async () => {
  for (const threads of [false, true]) {
    const b = await createGpuJsBackend({ mode: 'webasm', threads });
    try {
      let cases = 0;
      for (const [Z, bShared] of [[1, true], [2, false], [2, true]] as const) {
        for (const tB of [false, true]) {
          for (const M of [7, 16]) {
            for (const K of [1, 5]) {
              for (const N of [1, 3, 6]) {
                assert.ok(webasmRowsAcrossLanes({ Z, M, K, N, bShared, transposeB: tB, bias: false }));
                const av = seq(Z * M * K, (i) => Math.sin(i * 0.7 + K)), bv = seq((bShared ? 1 : Z) * K * N, (i) => Math.cos(i * 1.3 + N));
                const biasV = (M + N) % 2 === 1 ? seq(N, (i) => i - 1.5) : null;
                const bShape = tB ? [N, K] : [K, N];
                const y = ops.matmul(ops.tensor(b, av, [Z, M, K]), ops.tensor(b, bv, bShared ? bShape : [Z, ...bShape]), { transposeB: tB, bias: biasV ? ops.tensor(b, biasV, [N]) : null });
                const got = (await y.read()) as Float32Array;
                const want = ref(av, bv, biasV, Z, M, K, N, bShared, tB);
                for (let i = 0; i < want.length; i++) {
                  assert.ok(Math.abs(got[i]! - want[i]!) <= 1e-5 * (1 + Math.abs(want[i]!)), `threads=${threads} Z${Z} M${M} K${K} N${N} tB=${tB}: [${i}] ${got[i]} vs ${want[i]}`);
                }
                cases++;
              }
            }
          }
        }
      }
      assert.is(cases, 72);
    } finally {
      await b.destroy();
    }
  }
});

let webgpu: GpuJsBackend | null = null;
let webgpuReason = '';
try {
  webgpu = await createGpuJsBackend({ mode: 'webgpu' });
} catch (e) {
  webgpuReason = (e as Error).message;
}
const webgpuTests = [
  'webgpu: intermediates stay on the device; only read() copies back',
  'webgpu: integer-index matmul kernels (2×2 blocked, GEMV, b transposed first) at edge shapes: odd M/N, K below and around the unroll',
  'webgpu: two backends share the device; the process exits after destroy',
];
if (!webgpu) {
  if (CI) test('gpujs webgpu available (CI=true)', () => assert.unreachable(webgpuReason));
  else {
    console.log(`NOTE: gpujs webgpu unavailable (${webgpuReason}); skipped: ${webgpuTests.join('; ')}`);
  }
} else {
  const b = webgpu;
  test(webgpuTests[0]!, async () => {
    assert.is(b.runningMode, 'webgpu');
    assert.is(b.info().device, 'gpu');
    assert.not.ok(b.readSync, 'a GPU backend has no synchronous read');
    const x = ops.tensor(b, seq(300), [3, 100]);
    const w = ops.tensor(b, seq(100 * 50, (i) => Math.cos(i)), [100, 50]);
    const h = ops.matmul(x, w); // blocked kernel + relayout: two kernels, one intermediate
    const y = ops.softmax(ops.gelu(h)); // four more kernels
    await b.sync(); // kernels are queued; storage is filled when they have run
    for (const t of [x, w, h, y]) {
      const s = t.storage as GBuf;
      assert.ok(s.dev, `${t} has no device buffer`);
      assert.is(s.host, null, `${t} has a host copy`);
    }
    const got = (await y.read()) as Float32Array;
    const cpuRows = got.length / 50;
    assert.is(cpuRows, 3);
    for (let r = 0; r < 3; r++) {
      const sum = got.subarray(r * 50, r * 50 + 50).reduce((a, v) => a + v, 0);
      assert.ok(Math.abs(sum - 1) < 1e-5, `row ${r} sums to ${sum}`);
    }
  });
  test(webgpuTests[1]!, async () => {
    const rt = (b as unknown as { rt: GpuJsRuntime }).rt;
    const before = { blocked: rt.compilesByName.get('matmul.blocked') ?? 0, gemv: rt.compilesByName.get('matmul.gemv') ?? 0 };
    let cases = 0;
    for (const [Z, bShared] of [[1, true], [2, false], [3, true]] as const) {
      for (const tB of [false, true]) {
        for (const M of [1, 2, 3]) {
          for (const K of [1, 2, 3, 4, 5, 9]) {
            for (const N of [1, 2, 5]) {
              const bias = (M + K + N) % 2 === 0;
              const av = seq(Z * M * K, (i) => Math.sin(i * 0.7 + K)), bv = seq((bShared ? 1 : Z) * K * N, (i) => Math.cos(i * 1.3 + N));
              const biasV = bias ? seq(N, (i) => i - 1.5) : null;
              const ta = ops.tensor(b, av, Z > 1 ? [Z, M, K] : [M, K]);
              const bShape = tB ? [N, K] : [K, N];
              const tb = ops.tensor(b, bv, bShared ? bShape : [Z, ...bShape]);
              const y = ops.matmul(ta, tb, { transposeB: tB, bias: biasV ? ops.tensor(b, biasV, [N]) : null });
              const got = (await y.read()) as Float32Array;
              const want = ref(av, bv, biasV, Z, M, K, N, bShared, tB);
              assert.is(got.length, want.length);
              for (let i = 0; i < want.length; i++) {
                assert.ok(Math.abs(got[i]! - want[i]!) <= 1e-5 * (1 + Math.abs(want[i]!)), `Z${Z} M${M} K${K} N${N} tB=${tB} shared=${bShared}: [${i}] ${got[i]} vs ${want[i]}`);
              }
              cases++;
            }
          }
        }
      }
    }
    // transposed b with K a multiple of 1024 and ≥ 64 rows of a: b is transposed by a kernel first
    for (const [Z, M, bShared] of [[1, 65, true], [2, 33, false], [2, 33, true]] as const) {
      const K = 1024, N = 5;
      const av = seq(Z * M * K, (i) => Math.sin(i * 0.37)), bv = seq((bShared ? 1 : Z) * N * K, (i) => Math.cos(i * 0.11));
      const biasV = seq(N, (i) => i * 0.5);
      const y = ops.matmul(ops.tensor(b, av, [Z, M, K]), ops.tensor(b, bv, bShared ? [N, K] : [Z, N, K]), { transposeB: true, bias: ops.tensor(b, biasV, [N]) });
      const got = (await y.read()) as Float32Array;
      const want = ref(av, bv, biasV, Z, M, K, N, bShared, true);
      for (let i = 0; i < want.length; i++) {
        assert.ok(Math.abs(got[i]! - want[i]!) <= 2e-5 * (1 + Math.abs(want[i]!)), `K=1024 Z${Z} M${M} shared=${bShared}: [${i}] ${got[i]} vs ${want[i]}`);
      }
    }
    assert.ok((rt.compilesByName.get('matmul.transposeB') ?? 0) >= 2, 'b was transposed by its kernel (shared and batched)');
    assert.ok(cases > 100);
    assert.ok((rt.compilesByName.get('matmul.blocked') ?? 0) > before.blocked, 'the 2×2 kernel ran');
    assert.ok((rt.compilesByName.get('matmul.gemv') ?? 0) > before.gemv, 'the GEMV kernel ran');
  });
  test(webgpuTests[2]!, async () => {
    const other = await createGpuJsBackend({ mode: 'webgpu' });
    const a = ops.tensor(other, seq(8), [8]);
    assert.equal(Array.from((await ops.unary('neg', a).read()) as Float32Array), Array.from(seq(8), (v) => -v));
    await other.destroy();
    // the first backend still works on the shared device
    const c = ops.tensor(b, seq(8), [8]);
    assert.equal(Array.from((await ops.relu(c).read()) as Float32Array), Array.from(seq(8), (v) => Math.max(v, 0)));
    await b.destroy();
    assert.ok(!(globalThis as { navigator?: { gpu?: unknown } }).navigator?.gpu, 'navigator.gpu removed after the last release');

    // A fresh process: create, compute, destroy, and Node must exit by itself (Dawn released).
    const mod = fileURLToPath(new URL('../backends/gpujs/index.js', import.meta.url));
    const opsMod = fileURLToPath(new URL('../ops/index.js', import.meta.url));
    const script = `
      const { createGpuJsBackend } = await import(${JSON.stringify(mod)});
      const ops = await import(${JSON.stringify(opsMod)});
      const b = await createGpuJsBackend({ mode: 'webgpu' });
      const x = ops.tensor(b, new Float32Array([1, 2, 3, 4]), [4]);
      const y = await ops.add(x, x).read();
      await b.destroy();
      console.log('done', Array.from(y).join(','));`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    const code = await new Promise<number | null>((resolve) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        resolve(null);
      }, 30000);
      child.on('exit', (c) => {
        clearTimeout(timer);
        resolve(c);
      });
    });
    assert.is(code, 0, `child did not exit by itself (output: ${out})`);
    assert.match(out, /done 2,4,6,8/);
  });
}

test.run();
