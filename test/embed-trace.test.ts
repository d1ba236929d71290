// Op traces (models/app/trace.ts): record a tiny-model request on cpu through the CLI, replay it on every backend
// that can be created here (a NOTE for the others), and check that a corrupted trace (one output value changed)
// is reported at exactly that op as the first divergence, with exit status 1.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import '../backends/index.js';
import { getBackend, releaseAllBackends } from '../core/registry.js';
import { encodeFrame } from '../models/app/serve.js';
import { hostArray, readTrace, replayTrace, type Trace } from '../models/app/trace.js';
import { encodePng, makeTinyModel, tempDir, testImage } from './runtime-helpers.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLI = join(ROOT, 'dist', 'models', 'app', 'cli.js');
const tmp = tempDir('lavi-embed-trace-');
const dir = join(tmp.dir, 'lavi');
const file = join(tmp.dir, 'ask.trace');
let trace: Trace;

const cli = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 300000 });

test.before(async () => {
  mkdirSync(dir);
  await makeTinyModel(dir, { mode: 'lavi', seed: 1 });
  writeFileSync(join(tmp.dir, 'img.png'), encodePng(testImage(40, 30, 0)));
});

test.after(async () => {
  await releaseAllBackends();
  tmp.cleanup();
});

test('trace: record an ask on cpu', () => {
  const r = cli('trace', 'record', '--out', file, '--model', dir, '--image', join(tmp.dir, 'img.png'), '--question', 'What is it?', '--max-tokens', '3');
  assert.is(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /ops recorded/);
  trace = readTrace(file);
  assert.is(trace.header.backend, 'cpu');
  assert.is(trace.header.version, 1);
  const ops = new Set(trace.ops.map((o) => o.op));
  for (const op of ['patchEmbed', 'matmul', 'attention', 'writeSlice', 'argmax']) assert.ok(ops.has(op as never), `no ${op} in the trace`);
  const ws = trace.ops.find((o) => o.op === 'writeSlice')!;
  assert.ok(ws.before, 'writeSlice records its destination before the write');
});

for (const name of ['cpu', 'wasm', 'webgpu', 'gpujs-webasm']) {
  test(`trace: replay on ${name}`, async () => {
    let b;
    try {
      b = await getBackend(name);
    } catch (e) {
      // CI installs everything these need (lavapipe for webgpu): there a missing backend is a failure.
      if (process.env.CI === 'true') throw e;
      console.log(`\nNOTE: trace replay on ${name} not run: backend unavailable (${(e as Error).message.split('\n')[0]})`);
      return;
    }
    const res = await replayTrace(trace, b);
    assert.is(res.firstDivergence, null, JSON.stringify(res.firstDivergence));
    assert.is(res.passed, trace.ops.length);
  });
}

test('trace: lavi verify --trace passes on cpu', () => {
  const r = cli('verify', '--trace', file, '--backend', 'cpu');
  assert.is(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /all \d+ ops within tolerance/);
});

test('trace: a corrupted output value is the first divergence', () => {
  // Corrupt one element of the output of a matmul in the middle of the trace and write the trace back.
  const matmuls = trace.ops.filter((o) => o.op === 'matmul');
  const victim = matmuls[Math.floor(matmuls.length / 2)]!;
  const out = hostArray(victim.out) as Float32Array;
  out[3] = out[3]! + 10;
  const bad = join(tmp.dir, 'bad.trace');
  const frames = [
    encodeFrame(trace.header),
    ...trace.ops.map((o) => encodeFrame(o === victim ? { ...o, out: { ...o.out, data: new Uint8Array(out.buffer) } } : o)),
    encodeFrame({ kind: 'end', ops: trace.ops.length }),
  ];
  writeFileSync(bad, Buffer.concat(frames));
  const r = cli('verify', '--trace', bad, '--backend', 'cpu');
  assert.is(r.status, 1, r.stdout + r.stderr);
  assert.match(r.stdout, new RegExp(`DIVERGED at op #${victim.index} matmul`));
  assert.match(r.stdout, new RegExp(`${victim.index} of ${trace.ops.length} ops matched`));
});

test('trace: a truncated trace file is an error', () => {
  const r = cli('trace', 'replay', join(ROOT, 'package.json'));
  assert.is(r.status, 1);
  assert.match(r.stderr, /trace/);
});

// Hostile traces: replay hands records to kernels that trust their arguments, so each record is checked first
// (models/app/trace-check.ts). Every case must be refused with an error naming the op, before any kernel runs.
test('trace: malformed or hostile op records are refused with an error naming the op', async () => {
  const first = (op: string) => trace.ops.find((o) => o.op === op)!;
  const att = first('attention'), ws = first('writeSlice'), mm = first('matmul');
  assert.ok(first('unary'), 'the trace has a unary op (the tower\'s GELU)');
  const edit = (victim: typeof att, change: Record<string, unknown>) => trace.ops.map((o) => (o === victim ? { ...o, ...change } : o));
  const cases: [string, unknown[], RegExp][] = [
    ['op name that is a backend method', edit(mm, { op: 'destroy' }), /\(destroy\): not a kernel of the op table/],
    ['keyLength past the keys', edit(att, { attrs: { ...att.attrs, keyLength: 1e6 } }), /\(attention\).*keyLength/],
    ['causal not a boolean', edit(att, { attrs: { ...att.attrs, causal: 1 } }), /\(attention\): attrs\.causal must be a boolean, got 1/],
    ['writeSlice past the destination', edit(ws, { attrs: { ...ws.attrs, start: 1e9 } }), /\(writeSlice\)/],
    ['writeSlice without its destination', edit(ws, { before: null }), /\(writeSlice\) destination before the write: not a tensor record/],
    ['data shorter than the shape', edit(mm, { out: { ...mm.out, shape: [1 << 20, 1 << 10] } }), /\(matmul\) output: \d+ bytes of data for shape \[1048576, 1024\] f32/],
    ['output shape the inputs do not give', edit(mm, { out: { ...mm.out, shape: [...mm.out.shape].reverse(), data: mm.out.data } }), /\(matmul\): output is \[/],
    ['unary op name that is no activation', edit(first('unary'), { attrs: { op: 'destroy' } }), /\(unary\): unary: op must be one of .*got "destroy"/],
    ['unknown dtype', edit(mm, { inputs: [{ ...mm.inputs[0]!, dtype: 'f64' }, ...mm.inputs.slice(1)] }), /\(matmul\) input 0: dtype must be one of/],
    ['a missing required input', edit(mm, { inputs: [null, ...mm.inputs.slice(1)] }), /\(matmul\) input 0: not a tensor record/],
    ['attrs not a map', edit(mm, { attrs: [1, 2] }), /\(matmul\): attrs must be a map/],
  ];
  const cpu = await getBackend('cpu');
  for (const [name, ops, want] of cases) {
    // The bad record is the 2nd..Nth: nothing may have run when replay refuses it (checked up front).
    let ran = 0;
    await replayTrace({ header: trace.header, ops: ops as Trace['ops'] }, cpu, () => ran++).then(
      () => assert.unreachable(`${name}: replay accepted it`),
      (e: Error) => assert.match(e.message, want, `${name}: ${e.message}`),
    );
    assert.is(ran, 0, `${name}: ops ran before the bad record was refused`);
  }
  // An extension type (msgpackr's encoding of undefined) is refused by the reader.
  const ext = join(tmp.dir, 'ext.trace');
  writeFileSync(ext, Buffer.concat([encodeFrame(trace.header), encodeFrame({ ...trace.ops[0]!, before: undefined }), encodeFrame({ kind: 'end', ops: 1 })]));
  assert.throws(() => readTrace(ext), /msgpack extension types are not accepted/);
  // Through the CLI on wasm (whose kernels would read outside the wasm heap's tensors): a clear error, exit 1.
  const path = join(tmp.dir, 'hostile.trace');
  const ops = edit(att, { attrs: { ...att.attrs, keyLength: 1e6 } });
  writeFileSync(path, Buffer.concat([encodeFrame(trace.header), ...ops.map((o) => encodeFrame(o)), encodeFrame({ kind: 'end', ops: ops.length })]));
  const r = cli('verify', '--trace', path, '--backend', 'wasm');
  assert.is(r.status, 1, r.stdout + r.stderr);
  assert.match(r.stderr, /trace op #\d+ \(attention\)/);
});

test.run();
