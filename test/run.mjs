// Runs every compiled test file (dist/test/**/*.test.js) with uvu, one file per Node process so that a
// backend that holds native resources (Dawn) cannot leak into another file, then prints the plain closing line
// "N passed, N failed[, N skipped][, N not run]" that CI reads. "not run" counts the NOTE lines in which a test
// says it did not run its checks (a backend, a package or a fixture missing here), so that a machine without
// WebGPU cannot pass fewer checks silently; they are listed again under the closing line.
//
// Usage: node test/run.mjs [substring filter]
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
// LAVI_TEST_DIR: another folder of compiled tests (test/test-runner.test.ts runs the runner on fake files).
const testDir = process.env.LAVI_TEST_DIR ?? join(root, 'dist', 'test');
const filter = process.argv[2] ?? '';

function walk(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}

const files = walk(testDir).filter((f) => relative(testDir, f).includes(filter));
let passed = 0, failed = 0, skipped = 0, crashed = [];
const notRun = [];
const NOT_RUN = /\b(not run|skipped|not checked|not present)\b/i;
for (const file of files) {
  const rel = relative(root, file);
  const t0 = Date.now();
  const r = spawnSync(process.execPath, [file], { encoding: 'utf8', env: { ...process.env, FORCE_COLOR: '0' }, timeout: 15 * 60 * 1000 });
  const out = (r.stdout ?? '') + (r.stderr ?? '');
  const total = Number(/Total:\s+(\d+)/.exec(out)?.[1] ?? NaN);
  const ok = Number(/Passed:\s+(\d+)/.exec(out)?.[1] ?? NaN);
  const skip = Number(/Skipped:\s+(\d+)/.exec(out)?.[1] ?? 0);
  const secs = ((Date.now() - t0) / 1000).toFixed(1);
  if (Number.isNaN(total) || Number.isNaN(ok)) {
    crashed.push(rel);
    failed += 1;
    process.stdout.write(`✘ ${rel} (${secs}s): crashed before reporting (exit ${r.status}${r.signal ? ', ' + r.signal : ''})\n${out}\n`);
    continue;
  }
  // uvu's Total counts the tests that ran; skipped ones (test.skip) are counted apart.
  passed += ok;
  failed += total - ok;
  skipped += skip;
  const mark = total - ok > 0 || r.status !== 0 ? '✘' : '✔';
  if (r.status !== 0 && total - ok === 0) { failed += 1; crashed.push(rel); }
  process.stdout.write(`${mark} ${rel}: ${ok}/${total} passed${skip ? `, ${skip} skipped` : ''} (${secs}s)\n`);
  if (mark === '✘') process.stdout.write(out + '\n');
  // Visible notes a test file wants the reader to see (e.g. "WebGPU: no adapter, skipped").
  for (const line of out.split('\n')) {
    if (!line.startsWith('NOTE:')) continue;
    process.stdout.write(`  ${line}\n`);
    if (NOT_RUN.test(line)) notRun.push(`${rel}: ${line.slice(5).trim()}`);
  }
}
if (files.length === 0) { process.stdout.write('no test files found\n'); process.exit(1); }
process.stdout.write(`\n${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}${notRun.length ? `, ${notRun.length} not run` : ''}\n`);
if (notRun.length) process.stdout.write(`not run here:\n${notRun.map((l) => `  ${l}`).join('\n')}\n`);
process.exit(failed > 0 ? 1 : 0);
