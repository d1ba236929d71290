// A third-party backend (examples/instrumented-backend.ts) registered from outside through the public API:
// it passes the conformance harness against the CPU reference, runs the model through LaviRuntime, and counts
// its kernel calls.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { getBackend, releaseAllBackends, listBackends } from '../index.js';
import { summarize, verifyBackend } from '../backends/conformance/index.js';
import { InstrumentedBackend, registerInstrumentedBackend } from '../examples/instrumented-backend.js';
import { LaviRuntime } from '../models/app/runtime.js';
import { makeTinyModel, tempDir, testImage } from './runtime-helpers.js';

const tmp = tempDir('lavi-embed-backend-');

test.after(async () => {
  await releaseAllBackends();
  tmp.cleanup();
});

test('instrumented backend: registers and passes the conformance harness', async () => {
  registerInstrumentedBackend();
  assert.ok(listBackends().some((r) => r.name === 'instrumented'));
  const b = (await getBackend('instrumented')) as InstrumentedBackend;
  assert.instance(b, InstrumentedBackend);
  const results = await verifyBackend({ backend: b, reference: await getBackend('cpu') });
  const s = summarize(results);
  const fails = results.filter((r) => r.status === 'fail').map((r) => `${r.name}: ${r.reason}`);
  assert.is(s.fail, 0, fails.join('\n'));
  assert.is(s.unsupported, 0);
  assert.ok(s.pass > 50, `only ${s.pass} passed`);
  assert.ok((b.stats.get('matmul')?.calls ?? 0) > 0);
});

test('instrumented backend: runs the model and counts its kernels', async () => {
  const dir = join(tmp.dir, 'lavi');
  mkdirSync(dir);
  await makeTinyModel(dir, { seed: 1 });
  const b = (await getBackend('instrumented')) as InstrumentedBackend;
  b.stats.clear();
  const rt = await LaviRuntime.create({ modelDir: dir, backend: 'instrumented' });
  const ref = await LaviRuntime.create({ modelDir: dir, backend: 'cpu' });
  const r = await rt.ask(testImage(), 'What is it?', { maxNewTokens: 4 });
  const want = await ref.ask(testImage(), 'What is it?', { maxNewTokens: 4 });
  assert.equal(r.tokens, want.tokens);
  assert.ok(b.stats.get('attention')!.calls > 0);
  assert.match(b.report(), /matmul\s+\d+ calls/);
  rt.dispose();
  ref.dispose();
});

test.run();
