// `lavi ask` end to end: spawns `node dist/models/app/cli.js ask ...` on a tiny random checkpoint (runtime-helpers.ts,
// with its tokenizer.json read by models/text/tokenizer.ts) and checks stdout, stderr and the exit status for a good
// question, --stream, --verbose, --json, a missing / corrupt / GIF image, an empty and a too-long question, a bad
// backend name, usage mistakes and a model dir without weights. The answer printed must be the one the library
// API (LaviRuntime) gives for the same image and question.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LaviRuntime } from '../models/app/runtime.js';
import { GIF_BYTES, encodePng, makeTinyModel, tempDir, testImage } from './runtime-helpers.js';

const cli = fileURLToPath(new URL('../models/app/cli.js', import.meta.url));
const tmp = tempDir('lavi-cli-');
const modelDir = join(tmp.dir, 'model');
const png = join(tmp.dir, 'picture.png');
const IMG = testImage(40, 30, 1);
const Q = 'What shape is it?';
let expected = '';

function lavi(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [cli, 'ask', ...args], { encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** One clear line on stderr, starting with 'lavi ask:', and nothing on stdout. */
function failsWith(r: ReturnType<typeof lavi>, code: number, re: RegExp): void {
  assert.is(r.code, code, `exit status (stderr: ${r.stderr})`);
  assert.is(r.stdout, '');
  const lines = r.stderr.trimEnd().split('\n');
  assert.is(lines.length, 1, `one line of error, got:\n${r.stderr}`);
  assert.match(lines[0]!, /^lavi ask: /);
  assert.match(lines[0]!, re);
}

test.before(async () => {
  mkdirSync(modelDir);
  await makeTinyModel(modelDir, { seed: 5 });
  writeFileSync(png, encodePng(IMG));
  const rt = await LaviRuntime.create({ modelDir, backend: 'cpu' });
  expected = (await rt.ask(png, Q, { maxNewTokens: 8 })).answer;
  rt.dispose();
});

test.after(() => tmp.cleanup());

test('a good question: the answer on stdout, exit 0, nothing on stderr', () => {
  const r = lavi(png, Q, '--model', modelDir, '--backend', 'cpu', '--max-tokens', '8');
  assert.is(r.code, 0, r.stderr);
  assert.is(r.stderr, '');
  assert.is(r.stdout, expected + '\n');
});

test('--stream prints the same answer, token by token', () => {
  const r = lavi(png, Q, '--model', modelDir, '--backend=cpu', '--max-tokens=8', '--stream');
  assert.is(r.code, 0, r.stderr);
  assert.is(r.stdout, expected + '\n');
});

test('--verbose: backend choice, TTFT, tokens/s, visual tokens and FLOPs on stderr; the answer alone on stdout', () => {
  const r = lavi(png, Q, '--model', modelDir, '--max-tokens', '8', '--verbose');
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stderr, /^backend: \S+ \(.*\) — best available/m);
  assert.match(r.stderr, /time to first token: [\d.]+ ms \(image [\d.]+ ms, vision encode [\d.]+ ms, prefill [\d.]+ ms\)/);
  assert.match(r.stderr, /tokens\/s/);
  assert.match(r.stderr, /visual tokens: 16 \(28px image, patch 7\), outside the context/);
  assert.match(r.stderr, /FLOPs: [\d.]+ [kMGT]?FLOP \(vision [\d.]+ [kMGT]?FLOP, LLM [\d.]+ [kMGT]?FLOP/);
  assert.is(r.stdout.trimEnd().split('\n').length, 1);
  const named = lavi(png, Q, '--model', modelDir, '--max-tokens', '8', '--verbose', '--backend', 'cpu');
  assert.match(named.stderr, /^backend: cpu \(.*\) — chosen with --backend/m);
  assert.is(named.stdout, expected + '\n');
});

test('--json prints the whole result', () => {
  const r = lavi(png, Q, '--model', modelDir, '--backend', 'cpu', '--max-tokens', '8', '--json');
  assert.is(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout) as { answer: string; visualTokens: number; backend: string; timings: { ttftMs: number }; cost: { visionFlops: number } };
  assert.is(j.answer, expected);
  assert.is(j.visualTokens, 16);
  assert.is(j.backend, 'cpu');
  assert.ok(j.timings.ttftMs > 0 && j.cost.visionFlops > 0);
});

test('sampling flags: a seed reproduces', () => {
  const a = lavi(png, Q, '--model', modelDir, '--backend', 'cpu', '--max-tokens', '8', '--temperature', '1.2', '--seed', '3', '--json');
  const b = lavi(png, Q, '--model', modelDir, '--backend', 'cpu', '--max-tokens', '8', '--temperature', '1.2', '--seed', '3', '--json');
  assert.is(a.code, 0, a.stderr);
  assert.equal(JSON.parse(a.stdout).tokens, JSON.parse(b.stdout).tokens);
});

test('a missing image: exit 1, one line naming the file', () => {
  failsWith(lavi(join(tmp.dir, 'nope.png'), Q, '--model', modelDir, '--backend', 'cpu'), 1, /nope\.png: no such file/);
});

test('a corrupt image: exit 1, one line naming the file', () => {
  const bad = join(tmp.dir, 'corrupt.png');
  const bytes = encodePng(IMG);
  writeFileSync(bad, bytes.subarray(0, 60)); // a PNG cut off inside its image data
  failsWith(lavi(bad, Q, '--model', modelDir, '--backend', 'cpu'), 1, /corrupt\.png/);
  const junk = join(tmp.dir, 'junk.jpg');
  writeFileSync(junk, 'this is not an image at all');
  failsWith(lavi(junk, Q, '--model', modelDir, '--backend', 'cpu'), 1, /junk\.jpg/);
});

test('a GIF: exit 1, unsupported format', () => {
  const gif = join(tmp.dir, 'anim.gif');
  writeFileSync(gif, GIF_BYTES);
  failsWith(lavi(gif, Q, '--model', modelDir, '--backend', 'cpu'), 1, /anim\.gif.*(GIF|gif|unsupported|not a PNG or JPEG)/i);
});

test('an empty question: usage error, exit 2', () => {
  failsWith(lavi(png, '', '--model', modelDir), 2, /question is empty/);
  failsWith(lavi(png, '   ', '--model', modelDir), 2, /question is empty/);
});

test('a too-long question: exit 1, says how many tokens fit', () => {
  // The tiny model's context is 160 tokens; with room for 64 answer tokens at most 96 prompt tokens fit.
  failsWith(lavi(png, 'why '.repeat(60), '--model', modelDir, '--backend', 'cpu'), 1, /prompt too long: \d+ tokens .*context of 160 tokens/);
});

test('a bad backend name: usage error, exit 2, lists the backends', () => {
  failsWith(lavi(png, Q, '--model', modelDir, '--backend', 'tpu9000'), 2, /unknown backend 'tpu9000' \(known: .*cpu/);
});

test("the package's bin (dist/models/app/cli.js) runs as an executable, as `npx lavi` runs it", () => {
  // npm does not mark the root package's own bin executable; the build/prepare/test scripts chmod it. Without that,
  // the README's first command fails on a fresh clone with 'lavi: Permission denied'.
  const r = spawnSync(cli, ['ask', '--help'], { encoding: 'utf8', timeout: 60_000 });
  assert.is(r.error, undefined, `spawning ${cli} directly: ${String(r.error)}`);
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout + r.stderr, /usage: lavi ask/);
});

test('usage mistakes: exit 2; --help: exit 0', () => {
  failsWith(lavi(), 2, /missing <image> and "<question>"/);
  failsWith(lavi(png), 2, /missing "<question>"/);
  failsWith(lavi(png, 'What', 'is', 'it?'), 2, /expected 2 arguments .* quote the question/);
  failsWith(lavi(png, Q, '--frobnicate'), 2, /unknown option --frobnicate/);
  failsWith(lavi(png, Q, '--max-tokens', 'lots'), 2, /--max-tokens must be a positive integer, got 'lots'/);
  failsWith(lavi(png, Q, '--max-tokens', '0'), 2, /--max-tokens must be a positive integer/);
  failsWith(lavi(png, Q, '--temperature', '-1'), 2, /--temperature must be a number ≥ 0/);
  failsWith(lavi(png, Q, '--backend'), 2, /--backend needs a value/);
  const h = lavi('--help');
  assert.is(h.code, 0);
  assert.match(h.stdout, /usage: lavi ask <image\.png\|jpg> "<question>"/);
});

test('a model dir without weights: exit 1, one line', () => {
  const d = join(tmp.dir, 'empty-model');
  mkdirSync(d);
  failsWith(lavi(png, Q, '--model', d, '--backend', 'cpu'), 1, /empty-model has no config\.json, no tokenizer\.json, no weights/);
});

test.run();
