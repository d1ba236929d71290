// `lavi serve --stdio` (models/app/serve.ts) driven from TypeScript as a subprocess: load, ask with streamed tokens,
// generate, cancel, stats, verify, info, shutdown; malformed input (garbage, a truncated frame then more frames,
// an oversized length prefix, a non-map body, an unknown type, missing/bad fields) answered with errors while
// the server keeps serving; busy rejection; and examples/host.py end to end when python3-msgpack is installed.
// Measures tokens/s through the stdio path (NOTE).

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { encodeFrame, FrameDecoder } from '../models/app/serve.js';
import { LaviRuntime } from '../models/app/runtime.js';
import { releaseAllBackends } from '../core/registry.js';
import { encodePng, makeTinyModel, tempDir, testImage } from './runtime-helpers.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLI = join(ROOT, 'dist', 'models', 'app', 'cli.js');
const tmp = tempDir('lavi-embed-stdio-');
const dir = join(tmp.dir, 'lavi');
const IMG = testImage(40, 30, 0);
const PNG = encodePng(IMG);
const Q = 'What colour is the square?';

type Msg = Record<string, unknown>;

class Client {
  readonly proc: ChildProcessWithoutNullStreams;
  private dec = new FrameDecoder();
  private inbox: Msg[] = [];
  private waiters: (() => void)[] = [];
  stderr = '';
  exited: Promise<number | null>;

  constructor(args: string[] = []) {
    this.proc = spawn(process.execPath, [CLI, 'serve', '--stdio', '--frame-timeout-ms', '300', ...args], { stdio: 'pipe' });
    this.proc.stdout.on('data', (c: Buffer) => {
      for (const ev of this.dec.push(c)) {
        if (!ev.ok) throw new Error(`client: bad frame from server: ${ev.message}`);
        this.inbox.push(ev.value as Msg);
      }
      for (const w of this.waiters.splice(0)) w();
    });
    this.proc.stderr.on('data', (c: Buffer) => (this.stderr += c.toString()));
    this.exited = new Promise((r) => this.proc.on('exit', (code) => r(code)));
  }

  write(b: Uint8Array): void {
    this.proc.stdin.write(b);
  }

  send(m: Msg): void {
    this.write(encodeFrame(m));
  }

  /** The next message matching `pred` (others stay in the inbox). */
  async next(pred: (m: Msg) => boolean = () => true, timeoutMs = 20000): Promise<Msg> {
    const t0 = Date.now();
    for (;;) {
      const i = this.inbox.findIndex(pred);
      if (i >= 0) return this.inbox.splice(i, 1)[0]!;
      if (Date.now() - t0 > timeoutMs) throw new Error(`timeout; inbox ${JSON.stringify(this.inbox).slice(0, 500)}; stderr ${this.stderr}`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 50);
      });
    }
  }

  /** Sends a request; returns its token frames and its final frame. */
  async call(m: Msg): Promise<{ tokens: Msg[]; reply: Msg }> {
    this.send(m);
    const tokens: Msg[] = [];
    for (;;) {
      const r = await this.next((x) => x.id === m.id);
      if (r.type === 'token') tokens.push(r);
      else return { tokens, reply: r };
    }
  }

  async alive(id: number): Promise<void> {
    const { reply } = await this.call({ id, type: 'stats' });
    assert.is(reply.type, 'stats', JSON.stringify(reply));
  }
}

let c: Client;

test.before(async () => {
  mkdirSync(dir);
  await makeTinyModel(dir, { mode: 'lavi', seed: 1, maxPositions: 600 });
  c = new Client();
});

test.after(async () => {
  if (c.proc.exitCode === null) c.proc.kill();
  await releaseAllBackends();
  tmp.cleanup();
});

test('stdio: load, ask (streamed) matches the in-process runtime', async () => {
  const { reply: loaded } = await c.call({ id: 1, type: 'load', modelDir: dir, backend: 'cpu' });
  assert.is(loaded.type, 'loaded', JSON.stringify(loaded));
  assert.is(loaded.backend, 'cpu');
  const { tokens, reply } = await c.call({ id: 2, type: 'ask', image: PNG, question: Q, maxNewTokens: 12 });
  assert.is(reply.type, 'done', JSON.stringify(reply));
  const local = await LaviRuntime.create({ modelDir: dir, backend: 'cpu' });
  const want = await local.ask(IMG, Q, { maxNewTokens: 12 });
  local.dispose();
  assert.is(reply.answer, want.answer);
  assert.equal(reply.tokens, want.tokens);
  assert.is(reply.stopReason, want.stopReason);
  assert.ok(tokens.length > 0);
  assert.equal(tokens.map((t) => t.token), want.stopReason === 'stop' ? want.tokens.slice(0, -1) : want.tokens);
  assert.is(tokens.map((t) => t.text).join('').trim(), want.answer);
  assert.type((reply.timings as Msg).ttftMs, 'number');
  // Raw pixels work too.
  const raw = await c.call({ id: 3, type: 'ask', image: { width: IMG.width, height: IMG.height, data: IMG.data }, question: Q, maxNewTokens: 12 });
  assert.is(raw.reply.answer, want.answer);
});

test('stdio: generate, info, stats, cancel, busy', async () => {
  const g = await c.call({ id: 10, type: 'generate', prompt: 'hello', maxNewTokens: 5, stopTokens: [] });
  assert.is(g.reply.type, 'done');
  assert.is(g.tokens.length, 5);
  const info = await c.call({ id: 11, type: 'info' });
  assert.is(((info.reply.info as Msg).backend as Msg).name, 'cpu');
  // A long generation, a second one rejected as busy, then cancelled.
  c.send({ id: 12, type: 'generate', prompt: 'long', maxNewTokens: 500, stopTokens: [] });
  await c.next((m) => m.id === 12 && m.type === 'token');
  const busy = await c.call({ id: 13, type: 'ask', image: PNG, question: Q });
  assert.is(busy.reply.type, 'error');
  assert.is(busy.reply.code, 'busy');
  const cancel = await c.call({ id: 14, type: 'cancel', target: 12 });
  assert.is(cancel.reply.found, true);
  const done = await c.next((m) => m.id === 12 && m.type === 'done');
  assert.is(done.stopReason, 'aborted');
  assert.ok((done.tokens as number[]).length < 500);
  const s = await c.call({ id: 15, type: 'stats' });
  assert.is(s.reply.backend, 'cpu');
  assert.type((s.reply.memory as Msg).rss, 'number');
  assert.ok((s.reply.requests as number) >= 6);
  assert.type(s.reply.uptimeS, 'number');
});

test('stdio: verify returns a conformance summary', async () => {
  const v = await c.call({ id: 20, type: 'verify', backend: 'cpu', op: 'binary' });
  assert.is(v.reply.type, 'verify', JSON.stringify(v.reply));
  assert.ok(((v.reply.summary as Msg).reference as number) > 0);
  assert.is((v.reply.summary as Msg).fail, 0);
});

test('stdio: bad requests get errors and the server keeps serving', async () => {
  const cases: [Msg, string, RegExp][] = [
    [{ id: 30, type: 'frobnicate' }, 'unknown-type', /unknown request type/],
    [{ id: 31, type: 'ask', question: Q }, 'bad-argument', /image/],
    [{ id: 32, type: 'ask', image: PNG }, 'bad-argument', /question/],
    [{ id: 33, type: 'ask', image: 'not bytes', question: Q }, 'bad-argument', /image/],
    [{ id: 34, type: 'ask', image: PNG, question: Q, maxNewTokens: 'many' }, 'bad-argument', /maxNewTokens/],
    [{ id: 35, type: 'ask', image: Uint8Array.from([1, 2, 3]), question: Q }, 'image', /image/],
    [{ id: 36, type: 'ask', image: PNG, question: '  ' }, 'value', /question is empty/],
    [{ id: 37, type: 'generate' }, 'bad-argument', /prompt/],
    [{ id: 38, type: 'load', modelDir: join(tmp.dir, 'nope') }, 'model-dir', /does not exist/],
    [{ id: 39, type: 'load', backend: 'nosuch', modelDir: dir }, 'value', /unknown backend/],
  ];
  for (const [req, code, re] of cases) {
    const { reply } = await c.call(req);
    assert.is(reply.type, 'error', JSON.stringify(reply));
    assert.is(reply.code, code, JSON.stringify(reply));
    assert.match(String(reply.message), re);
  }
  // The model from before is still loaded after the failed loads.
  const g = await c.call({ id: 40, type: 'generate', prompt: 'ok', maxNewTokens: 2, stopTokens: [] });
  assert.is(g.reply.type, 'done');
});

test('stdio: malformed frames get errors and later requests are answered', async () => {
  const noId = (code: string) => (m: Msg) => m.type === 'error' && m.id === undefined && m.code === code;
  // Non-map bodies.
  for (const v of [42, 'hello', [1, 2], null]) {
    c.send(v as never);
    const e = await c.next(noId('bad-request'));
    assert.match(String(e.message), /map/);
  }
  c.send({ id: 50 });
  assert.match(String((await c.next((m) => m.id === 50)).message), /type/);
  await c.alive(51);
  // Garbage bytes: read as a length prefix far over the limit (rejected before allocating).
  c.write(Buffer.from('GARBAGE!GARBAGE!'));
  await c.next(noId('frame-too-large'));
  await c.alive(52);
  // A valid length with a body that is not msgpack.
  const bad = Buffer.alloc(6);
  bad.writeUInt32BE(2, 0);
  bad[4] = 0xc1; // never used in msgpack
  bad[5] = 0xc1;
  c.write(bad);
  await c.next(noId('bad-frame'));
  await c.alive(53);
  // Oversized length prefix.
  const big = Buffer.alloc(4);
  big.writeUInt32BE(0xfffffff0, 0);
  c.write(big);
  assert.match(String((await c.next(noId('frame-too-large'))).message), /exceeds/);
  await c.alive(54);
  // Truncated frame, then (after the frame timeout) more frames.
  const f = encodeFrame({ id: 55, type: 'stats' });
  c.write(f.subarray(0, 7));
  await c.next(noId('truncated-frame'));
  await c.alive(56);
  // Two frames in one write, and one frame split over many writes.
  c.write(Buffer.concat([encodeFrame({ id: 57, type: 'stats' }), encodeFrame({ id: 58, type: 'stats' })]));
  await c.next((m) => m.id === 57);
  await c.next((m) => m.id === 58);
  const g = encodeFrame({ id: 59, type: 'generate', prompt: 'split', maxNewTokens: 3, stopTokens: [] });
  for (let i = 0; i < g.length; i += 3) c.write(g.subarray(i, i + 3));
  assert.is((await c.next((m) => m.id === 59 && m.type === 'done')).type, 'done');
});

test('stdio: tokens/s through the stdio path (NOTE), then shutdown', async () => {
  const N = 200;
  let best = 0;
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    const r = await c.call({ id: 70 + i, type: 'generate', prompt: 'speed test', maxNewTokens: N, stopTokens: [] });
    assert.is(r.tokens.length, N);
    best = Math.max(best, (N * 1000) / (performance.now() - t0));
  }
  const local = await LaviRuntime.create({ modelDir: dir, backend: 'cpu' });
  let base = 0;
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    await local.generate('speed test', { maxNewTokens: N, stopTokens: [], onToken: () => {} });
    base = Math.max(base, (N * 1000) / (performance.now() - t0));
  }
  local.dispose();
  console.log(`\nNOTE: tiny model, ${N} tokens, cpu: in-process ${base.toFixed(0)} tok/s, stdio ${best.toFixed(0)} tok/s, best of 3 (overhead ${(1000 / best - 1000 / base).toFixed(3)} ms/token)`);
  const bye = await c.call({ id: 80, type: 'shutdown' });
  assert.is(bye.reply.type, 'bye');
  assert.is(await c.exited, 0);
});

test('stdio: examples/host.py end to end (python3-msgpack)', async () => {
  const py = '/usr/bin/python3';
  const has = spawnSync(py, ['-c', 'import msgpack'], { encoding: 'utf8' });
  if (has.status !== 0) {
    console.log('\nNOTE: python3-msgpack is not importable by /usr/bin/python3; examples/host.py not run (apt-get install -y python3-msgpack)');
    return;
  }
  const png = join(tmp.dir, 'img.png');
  writeFileSync(png, PNG);
  const r = spawnSync(py, [join(ROOT, 'examples', 'host.py'), png, Q, '--model', dir, '--max-tokens', '6', '--node', process.execPath], { encoding: 'utf8', timeout: 60000 });
  assert.is(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /loaded .* on cpu/);
  assert.match(r.stdout, /token \d+ /);
  assert.match(r.stdout, /answer: /);
  assert.match(r.stdout, /shutdown: bye/);
});

test.run();
