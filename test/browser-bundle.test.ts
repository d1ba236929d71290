// The browser entry without a browser: browser.ts bundles with esbuild for --platform=browser with no shims and no
// Node built-in (nor a Node-only package) inside, and the *minified* bundle works — tidy() keeps the tensors it
// returns although the minifier renamed the Tensor class (tensors carry a brand symbol, core/scope.ts). Runs
// everywhere (Chromium not needed; test/browser.test.ts covers the pages in Chromium).

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CpuBackend } from '../backends/index.js';
import { isTensor, tidy } from '../core/scope.js';
import { Tensor } from '../core/tensor.js';
import * as ops from '../ops/index.js';
import { ROOT } from './browser-harness.js';

test('tidy keeps returned tensors when the class name is mangled (as minifiers do)', async () => {
  const cpu = new CpuBackend();
  const saved = Object.getOwnPropertyDescriptor(Tensor, 'name')!;
  Object.defineProperty(Tensor, 'name', { value: 'e' });
  try {
    const x = ops.tensor(cpu, new Float32Array([1, 2, 3, 4]), [2, 2]);
    const { y } = tidy(() => ({ y: ops.softmax(ops.matmul(x, x)) }));
    assert.ok(isTensor(y));
    assert.not.ok(isTensor({ shape: [2, 2] }));
    assert.is((await y.read()).length, 4); // not disposed
  } finally {
    Object.defineProperty(Tensor, 'name', saved);
  }
});

test('browser.ts bundles for the browser with no Node built-ins; the minified bundle computes', async () => {
  const esbuild = await import('esbuild-wasm');
  const dir = mkdtempSync(join(tmpdir(), 'lavi-bundle-'));
  try {
    const out = join(dir, 'lavi.min.js');
    const r = await esbuild.build({ entryPoints: [join(ROOT, 'browser.ts')], bundle: true, platform: 'browser', format: 'esm', target: 'es2022', minify: true, outfile: out, metafile: true, logLevel: 'silent', absWorkingDir: ROOT });
    assert.equal(r.errors, []);
    const inputs = Object.keys(r.metafile!.inputs);
    const nodeOnly = inputs.filter((p) => /^node:|node_modules\/(webgpu|pngjs|gpu\.js)\//.test(p));
    assert.equal(nodeOnly, [], 'no Node-only module bundled');
    assert.ok(inputs.some((p) => p.endsWith('core/scope.ts')));
    const lib = (await import(pathToFileURL(out).href)) as typeof import('../browser.js');
    const cpu = new lib.CpuBackend();
    const x = lib.ops.tensor(cpu, new Float32Array([1, 2, 3, 4]), [2, 2]);
    const y = lib.tidy(() => lib.ops.softmax(lib.ops.matmul(x, x)));
    const v = await y.read();
    assert.is(v.length, 4);
    assert.ok(Math.abs(v[0]! + v[1]! - 1) < 1e-6);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
