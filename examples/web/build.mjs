#!/usr/bin/env node
// Builds the web example with esbuild (esbuild-wasm, a devDependency: no native binary to download): the two pages'
// scripts, the engine's dedicated worker (the library's browser entry, browser.ts) and the wasm thread pool's
// worker (backends/wasm/pool-worker.ts, which the pool starts as new URL('./pool-worker.js', import.meta.url): it
// must sit beside the engine bundle) into examples/web/dist/. Minified by default — the build the browser tests
// load; --dev: not minified, with source maps. Fails when a Node built-in or a Node-only package got into a bundle.
//
//   node examples/web/build.mjs [--dev] [--quiet]
import { writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild-wasm';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const dev = process.argv.includes('--dev');
const quiet = process.argv.includes('--quiet');
const outdir = join(here, 'dist');
mkdirSync(outdir, { recursive: true });

const t0 = performance.now();
const result = await esbuild.build({
  entryPoints: {
    app: join(here, 'src', 'app.ts'),
    verify: join(here, 'src', 'verify.ts'),
    'engine-worker': join(here, 'src', 'engine-worker.ts'),
    'pool-worker': join(root, 'backends', 'wasm', 'pool-worker.ts'),
  },
  outdir,
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  minify: !dev,
  sourcemap: dev,
  metafile: true,
  logLevel: 'warning',
  absWorkingDir: root,
});

// No Node built-in, and none of the Node-only packages, may be bundled (they would need shims).
const NODE_ONLY = /^(node:|(fs|path|os|url|zlib|stream|util|module|worker_threads|v8|crypto)$)|node_modules\/(webgpu|pngjs|gpu\.js|onnxruntime-node)\//;
const bad = Object.keys(result.metafile.inputs).filter((p) => NODE_ONLY.test(p));
if (bad.length) {
  console.error(`build.mjs: Node-only modules in the browser bundle: ${bad.join(', ')}`);
  process.exit(1);
}
const sizes = Object.fromEntries(Object.entries(result.metafile.outputs).filter(([p]) => p.endsWith('.js')).map(([p, o]) => [relative(outdir, join(root, p)), o.bytes]));
writeFileSync(join(outdir, 'build.json'), JSON.stringify({ minified: !dev, inputs: Object.keys(result.metafile.inputs).length, sizes }, null, 2) + '\n');
if (!quiet) {
  console.log(`built examples/web/dist (${dev ? 'dev' : 'minified'}) in ${((performance.now() - t0) / 1000).toFixed(1)} s, ${Object.keys(result.metafile.inputs).length} modules, no Node built-ins:`);
  for (const [f, b] of Object.entries(sizes)) console.log(`  ${f.padEnd(20)} ${(b / 1024).toFixed(0).padStart(5)} KiB`);
}
