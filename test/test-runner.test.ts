// The test runner's closing line and the tests that depend on a backend (issue 15 item 9): test/run.mjs counts the
// NOTE lines in which a test says it did not run its checks ("N not run", listed again), so that a machine without
// WebGPU does not pass fewer checks silently; and under CI=true a backend that CI installs (webgpu: lavapipe) and
// that cannot be created fails the test instead of passing it (embed-trace; model-backends and gpujs-model alike).

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tempDir } from './runtime-helpers.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const tmp = tempDir('lavi-runner-');

test('run.mjs: the closing line counts the tests that were not run, and lists them', () => {
  const uvu = (passed: number, notes: string[]) =>
    `console.log(${JSON.stringify(notes.map((n) => `\nNOTE: ${n}`).join(''))});\nconsole.log('\\n  Total:     ${passed}\\n  Passed:    ${passed}\\n  Skipped:   0\\n');\n`;
  writeFileSync(join(tmp.dir, 'a.test.js'), uvu(3, ['webgpu: no adapter (x); not run: ops', 'oracle: 170 cases, worst 0.5 ulp']));
  writeFileSync(join(tmp.dir, 'b.test.js'), uvu(2, ['gpujs webgpu: unavailable, model test not run (y)']));
  const r = spawnSync(process.execPath, [join(ROOT, 'test', 'run.mjs')], { encoding: 'utf8', env: { ...process.env, LAVI_TEST_DIR: tmp.dir } });
  assert.is(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /^5 passed, 0 failed, 2 not run$/m);
  assert.match(r.stdout, /not run here:\n {2}.*a\.test\.js: webgpu: no adapter/);
  assert.not.match(r.stdout, /not run here:[\s\S]*oracle/);
});

test('embed-trace under CI=true fails when webgpu cannot be created; outside CI it says "not run"', () => {
  const file = join(ROOT, 'dist', 'test', 'embed-trace.test.js');
  const env = { ...process.env, VK_ICD_FILENAMES: join(tmp.dir, 'no-such-icd.json'), VK_DRIVER_FILES: join(tmp.dir, 'no-such-icd.json') };
  const ci = spawnSync(process.execPath, [file], { encoding: 'utf8', env: { ...env, CI: 'true' }, timeout: 300_000 });
  assert.is.not(ci.status, 0, 'passed in CI without webgpu');
  assert.match(ci.stdout + ci.stderr, /replay on webgpu/);
  const local = spawnSync(process.execPath, [file], { encoding: 'utf8', env: { ...env, CI: '' }, timeout: 300_000 });
  assert.is(local.status, 0, local.stdout + local.stderr);
  assert.match(local.stdout, /NOTE: trace replay on webgpu not run/);
});

test.after(() => tmp.cleanup());

test.run();
