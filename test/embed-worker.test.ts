// WorkerRuntime (models/worker.ts): a LaviRuntime in a worker thread. Same answers as in-process, streamed
// tokens, a free event loop during generation, cancellation through an AbortSignal, errors with their original
// name and message, dispose terminating the worker. Also measures tokens/s in-process vs worker (printed NOTE).

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { releaseAllBackends } from '../core/registry.js';
import { LaviRuntime, ModelDirError } from '../models/app/runtime.js';
import { WorkerRuntime } from '../models/app/worker.js';
import { encodePng, makeTinyModel, tempDir, testImage } from './runtime-helpers.js';

const tmp = tempDir('lavi-embed-worker-');
const dir = join(tmp.dir, 'lavi');
const IMG = testImage(40, 30, 0);
const Q = 'What colour is the square?';
let wrt: WorkerRuntime;
let local: LaviRuntime;

test.before(async () => {
  mkdirSync(dir);
  await makeTinyModel(dir, { mode: 'lavi', seed: 1, maxPositions: 600 });
  local = await LaviRuntime.create({ modelDir: dir, backend: 'cpu' });
  wrt = await WorkerRuntime.create({ modelDir: dir, backend: 'cpu' });
});

test.after(async () => {
  await wrt.dispose();
  local.dispose();
  await releaseAllBackends();
  tmp.cleanup();
});

test('worker: same answer and streamed tokens as in-process', async () => {
  const want = await local.ask(IMG, Q, { maxNewTokens: 12 });
  const streamed: string[] = [];
  const ids: number[] = [];
  const got = await wrt.ask(encodePng(IMG), Q, { maxNewTokens: 12, onToken: (t, id) => (streamed.push(t), ids.push(id)) });
  assert.equal(got.answer, want.answer);
  assert.equal(got.tokens, want.tokens);
  assert.equal(got.stopReason, want.stopReason);
  assert.ok(ids.length > 0);
  assert.equal(ids, got.stopReason === 'stop' ? got.tokens.slice(0, -1) : got.tokens);
  assert.equal(streamed.join('').trim(), got.answer);
  const info = await wrt.info();
  assert.is(info.backend.name, 'cpu');
  assert.is(info.modelDir, dir);
});

test('worker: generate from text and from ids', async () => {
  const a = await local.generate('hello there', { maxNewTokens: 8, stopTokens: [] });
  const b = await wrt.generate('hello there', { maxNewTokens: 8, stopTokens: [] });
  assert.equal(b.tokens, a.tokens);
  const c = await wrt.generate([104, 105], { maxNewTokens: 4, stopTokens: [] });
  assert.is(c.tokens.length, 4);
});

test('worker: the event loop stays free during a generation', async () => {
  let ticks = 0;
  const timer = setInterval(() => ticks++, 2);
  const t0 = performance.now();
  const r = await wrt.generate('tick tock', { maxNewTokens: 400, stopTokens: [] });
  const ms = performance.now() - t0;
  clearInterval(timer);
  assert.is(r.tokens.length, 400);
  // A blocked loop would tick ~once; a free one ticks about every 2 ms (allow heavy slack for a loaded machine).
  const expect = Math.min(20, Math.floor(ms / 20));
  assert.ok(ticks >= expect, `only ${ticks} ticks in ${ms.toFixed(0)} ms (want ≥ ${expect})`);
});

test('worker: cancellation through an AbortSignal', async () => {
  const ac = new AbortController();
  let n = 0;
  const r = await wrt.generate('abc', {
    maxNewTokens: 500,
    stopTokens: [],
    signal: ac.signal,
    onToken: () => {
      if (++n === 3) ac.abort('enough');
    },
  });
  assert.is(r.stopReason, 'aborted');
  assert.ok(r.tokens.length < 500);
  assert.is(r.abortReason, 'enough');
  // Aborted before it starts: rejects like LaviRuntime.
  try {
    await wrt.generate('abc', { signal: AbortSignal.abort() });
    assert.unreachable();
  } catch (e) {
    assert.is((e as Error).name, 'AbortError');
  }
});

test('worker: errors keep their name and message; the worker keeps serving', async () => {
  try {
    await wrt.ask(IMG, '   ');
    assert.unreachable('expected an error');
  } catch (e) {
    assert.is((e as Error).name, 'ValueError');
    assert.match((e as Error).message, /question is empty/);
  }
  try {
    await wrt.ask(Uint8Array.from([1, 2, 3]), Q);
    assert.unreachable('expected an error');
  } catch (e) {
    assert.is((e as Error).name, 'ImageError');
    assert.is((e as { code?: string }).code, 'image');
  }
  const r = await wrt.generate('still here', { maxNewTokens: 2, stopTokens: [] });
  assert.is(r.tokens.length, 2);
});

test('worker: a bad model dir rejects create with ModelDirError and leaves no worker behind', async () => {
  try {
    await WorkerRuntime.create({ modelDir: join(tmp.dir, 'nope'), backend: 'cpu' });
    assert.unreachable();
  } catch (e) {
    assert.instance(e, ModelDirError);
    assert.match((e as Error).message, /does not exist/);
  }
});

test('worker: dispose terminates; later calls reject', async () => {
  const w = await WorkerRuntime.create({ modelDir: dir, backend: 'cpu' });
  const p = w.generate('x', { maxNewTokens: 300, stopTokens: [] });
  await w.dispose();
  try {
    await p;
  } catch {
    // either finished or was cut off: both fine
  }
  try {
    await w.generate('x');
    assert.unreachable();
  } catch (e) {
    assert.match((e as Error).message, /dispose/);
  }
});

test('worker: tokens/s in-process vs worker (NOTE)', async () => {
  const N = 200;
  const run = async (rt: { generate: LaviRuntime['generate'] }) => {
    await rt.generate('warm', { maxNewTokens: 8, stopTokens: [] });
    const t0 = performance.now();
    const r = await rt.generate('speed test', { maxNewTokens: N, stopTokens: [], onToken: () => {} });
    return (r.tokens.length * 1000) / (performance.now() - t0);
  };
  let a = 0, b = 0;
  for (let i = 0; i < 3; i++) {
    a = Math.max(a, await run(local));
    b = Math.max(b, await run(wrt));
  }
  console.log(`\nNOTE: tiny model, ${N} tokens, cpu: in-process ${a.toFixed(0)} tok/s, worker ${b.toFixed(0)} tok/s, best of 3 (overhead ${(1000 / b - 1000 / a).toFixed(3)} ms/token)`);
  assert.ok(b > 0);
});

test.run();
