// `lavi serve --stdio` against hostile input (issue 15 items 1-3): a 2 KB frame whose id nests 2000 deep (it used
// to overflow the stack echoing the id and kill the server), other deep / wide / extension-typed bodies, a 30 MB
// question (it used to block the event loop for 39 s and take 2 GB tokenising), --model/--backend loading at
// start-up, a cancel sent together with its ask (done, stopReason 'aborted'), and a fuzz of 10,000+ random and
// mutated frames after which the server still answers a valid ask with bounded RSS.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { encodeFrame, FrameDecoder, MAX_DEPTH, packr, scanMsgpack } from '../models/app/serve.js';
import { createRng } from '../core/rng.js';
import { encodePng, makeTinyModel, tempDir, testImage } from './runtime-helpers.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLI = join(ROOT, 'dist', 'models', 'app', 'cli.js');
const tmp = tempDir('lavi-serve-robust-');
const dir = join(tmp.dir, 'lavi');
const PNG = encodePng(testImage(40, 30, 0));
const Q = 'What colour is the square?';

type Msg = Record<string, unknown>;

class Client {
  readonly proc: ChildProcessWithoutNullStreams;
  private dec = new FrameDecoder();
  private inbox: Msg[] = [];
  private waiters: (() => void)[] = [];
  stderr = '';
  badFrames = 0;
  exited: Promise<number | null>;

  constructor(args: string[]) {
    this.proc = spawn(process.execPath, [CLI, 'serve', '--stdio', ...args], { stdio: 'pipe' });
    this.proc.stdout.on('data', (c: Buffer) => {
      for (const ev of this.dec.push(c)) {
        if (!ev.ok) this.badFrames++;
        else this.inbox.push(ev.value as Msg);
      }
      if (this.inbox.length > 50_000) this.inbox.splice(0, 25_000);
      for (const w of this.waiters.splice(0)) w();
    });
    this.proc.stdin.on('error', () => undefined);
    this.proc.stderr.on('data', (c: Buffer) => (this.stderr += c.toString()));
    this.exited = new Promise((r) => this.proc.on('exit', (code) => r(code)));
  }

  write(b: Uint8Array): boolean {
    return this.proc.stdin.write(b);
  }

  send(m: Msg): void {
    this.write(encodeFrame(m));
  }

  drain(): Msg[] {
    return this.inbox.splice(0);
  }

  async next(pred: (m: Msg) => boolean, timeoutMs = 30000): Promise<Msg> {
    const t0 = Date.now();
    for (;;) {
      const i = this.inbox.findIndex(pred);
      if (i >= 0) return this.inbox.splice(i, 1)[0]!;
      if (this.proc.exitCode !== null) throw new Error(`server exited (${this.proc.exitCode}); stderr ${this.stderr.slice(-2000)}`);
      if (Date.now() - t0 > timeoutMs) throw new Error(`timeout; inbox ${JSON.stringify(this.inbox.slice(-5)).slice(0, 500)}; stderr ${this.stderr.slice(-1000)}`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 50);
      });
    }
  }

  async call(m: Msg, timeoutMs?: number): Promise<Msg> {
    this.send(m);
    return this.next((x) => x.id === m.id && x.type !== 'token', timeoutMs);
  }

  async close(): Promise<void> {
    if (this.proc.exitCode === null) this.proc.kill();
    await this.exited;
  }
}

/** The frame: {id: [[[...2000 deep...[nil]...]]], type: 'stats'}. */
function deepIdFrame(depth: number): Buffer {
  const body = Buffer.concat([Buffer.from([0x82, 0xa2]), Buffer.from('id'), Buffer.alloc(depth, 0x91), Buffer.from([0xc0, 0xa4]), Buffer.from('type'), Buffer.from([0xa5]), Buffer.from('stats')]);
  const head = Buffer.alloc(4);
  head.writeUInt32BE(body.length);
  return Buffer.concat([head, body]);
}

let c: Client;

test.before(async () => {
  mkdirSync(dir);
  await makeTinyModel(dir, { mode: 'lavi', seed: 1, maxPositions: 200 });
  c = new Client(['--model', dir, '--backend', 'cpu', '--frame-timeout-ms', '40']);
});

test.after(async () => {
  await c.close();
  tmp.cleanup();
});

test('scanMsgpack: accepts what packr writes, refuses deep, wide, extension-typed and truncated bodies', () => {
  for (const v of [1, -1, 2 ** 40, 1.5, 'x', 'é'.repeat(300), null, true, new Uint8Array(70000), [1, [2, [3]]], { id: 1, type: 'ask', image: { width: 1, height: 1, data: new Uint8Array(3) } }, { a: 'x'.repeat(70000) }, Array.from({ length: 70000 }, (_, i) => i)]) {
    assert.is(scanMsgpack(packr.pack(v)), null, JSON.stringify(v).slice(0, 60));
  }
  let deep: unknown = 1;
  for (let i = 0; i < MAX_DEPTH; i++) deep = [deep];
  assert.is(scanMsgpack(packr.pack(deep)), null, `${MAX_DEPTH} levels are allowed`);
  assert.is(scanMsgpack(packr.pack([deep]))?.code, 'bad-request');
  assert.is(scanMsgpack(deepIdFrame(2000).subarray(4))?.code, 'bad-request');
  assert.is(scanMsgpack(packr.pack(new Array(300_000).fill(0)))?.code, 'bad-request');
  assert.is(scanMsgpack(Uint8Array.from([0xd4, 0x01, 0x00]))?.code, 'bad-request', 'fixext');
  assert.is(scanMsgpack(Uint8Array.from([0x92, 0x01]))?.code, 'bad-frame', 'truncated array');
  assert.is(scanMsgpack(Uint8Array.from([0x01, 0x02]))?.code, 'bad-frame', 'trailing bytes');
  assert.is(scanMsgpack(Uint8Array.from([0xdd, 0xff, 0xff, 0xff, 0xff]))?.code, 'bad-frame', 'a 4G-element array in 5 bytes');
  assert.is(scanMsgpack(Uint8Array.from([0xc1]))?.code, 'bad-frame');
});

test('stdio: --model/--backend load at start-up (said on stderr); an ask needs no load request', async () => {
  const r = await c.call({ id: 1, type: 'ask', image: PNG, question: Q, maxNewTokens: 4 });
  assert.is(r.type, 'done', JSON.stringify(r));
  assert.match(c.stderr, /loading .* on cpu/);
  assert.match(c.stderr, /loaded .* on cpu/);
});

test('stdio: a 2000-deep id is refused with bad-request, and the server keeps serving (issue frame)', async () => {
  c.write(deepIdFrame(2000));
  const e = await c.next((m) => m.type === 'error');
  assert.is(e.code, 'bad-request');
  assert.match(String(e.message), /nested deeper/);
  assert.is((await c.call({ id: 2, type: 'stats' })).type, 'stats');
  // Deep maps, 300k values, and an extension type: refused the same way.
  let deep: Msg = { x: 1 };
  for (let i = 0; i < 40; i++) deep = { x: deep };
  c.send({ id: 3, type: 'ask', image: deep, question: Q });
  assert.is((await c.next((m) => m.type === 'error')).code, 'bad-request');
  c.send({ id: 4, type: 'generate', prompt: new Array(300_000).fill(1) });
  assert.is((await c.next((m) => m.type === 'error')).code, 'bad-request');
  assert.is((await c.call({ id: 5, type: 'stats' })).type, 'stats');
});

test('stdio: a cancel sent with its ask ends the ask with done, stopReason aborted', async () => {
  c.write(Buffer.concat([encodeFrame({ id: 10, type: 'ask', image: PNG, question: Q, maxNewTokens: 50 }), encodeFrame({ id: 11, type: 'cancel', target: 10 })]));
  const cancelled = await c.next((m) => m.id === 11);
  assert.is(cancelled.found, true);
  const done = await c.next((m) => m.id === 10 && m.type !== 'token');
  assert.is(done.type, 'done', JSON.stringify(done));
  assert.is(done.stopReason, 'aborted');
});

test('stdio: a 30 MB question is refused fast, before tokenising; stats is answered meanwhile; RSS stays bounded', async () => {
  const big = 'a '.repeat(15 * 1024 * 1024);
  const t0 = Date.now();
  c.send({ id: 20, type: 'ask', image: PNG, question: big });
  c.send({ id: 21, type: 'stats' });
  const err = await c.next((m) => m.id === 20);
  const stats = await c.next((m) => m.id === 21);
  const ms = Date.now() - t0;
  assert.is(err.type, 'error');
  assert.is(err.code, 'prompt-too-long');
  assert.match(String(err.message), /before tokenising/);
  assert.ok(ms < 5000, `refused after ${ms} ms`);
  const rss = ((stats.memory as Msg).rss as number) / 2 ** 20;
  assert.ok(rss < 600, `RSS ${rss.toFixed(0)} MiB`);
  // The same for generate with a text prompt.
  const g = await c.call({ id: 22, type: 'generate', prompt: big });
  assert.is(g.code, 'prompt-too-long');
});

test('stdio: 10,000+ random and mutated frames, then a valid ask is answered and RSS is bounded', async () => {
  const rng = createRng(15);
  const rand = () => rng.next();
  const int = (n: number) => Math.floor(rand() * n);
  const valid: Buffer[] = [
    encodeFrame({ id: 1, type: 'stats' }),
    encodeFrame({ id: 2, type: 'info' }),
    encodeFrame({ id: 3, type: 'ask', image: PNG, question: Q, maxNewTokens: 2 }),
    encodeFrame({ id: 4, type: 'generate', prompt: [1, 2, 3], maxNewTokens: 2 }),
    encodeFrame({ id: 5, type: 'cancel', target: 3 }),
    encodeFrame({ id: 6, type: 'ask', image: { width: 2, height: 2, data: new Uint8Array(12) }, question: Q, maxNewTokens: 1 }),
    encodeFrame({ id: [1, { a: 2 }], type: 'generate', prompt: 'hi', maxNewTokens: 1, temperature: 0.5, seed: 3 }),
    deepIdFrame(40),
  ];
  const t0 = Date.now();
  const N = 10_000;
  let sent = 0, synced = 0;
  for (let i = 0; i < N; i++) {
    const kind = int(10);
    let f: Buffer;
    if (kind < 2) {
      // Random bytes with a plausible length prefix.
      const body = Buffer.from(Array.from({ length: 1 + int(64) }, () => int(256)));
      f = Buffer.concat([Buffer.from([0, 0, 0, body.length]), body]);
    } else if (kind < 8) {
      // A valid frame with 1-4 body bytes flipped, inserted or deleted; the prefix usually fixed up.
      const v = Buffer.from(valid[int(valid.length)]!);
      let body = v.subarray(4);
      for (let k = 1 + int(4); k > 0; k--) {
        const at = int(Math.max(1, body.length));
        const op = int(3);
        if (op === 0) body[at] = int(256);
        else if (op === 1) body = Buffer.concat([body.subarray(0, at), Buffer.from([int(256)]), body.subarray(at)]);
        else body = Buffer.concat([body.subarray(0, at), body.subarray(at + 1)]);
      }
      const head = Buffer.alloc(4);
      head.writeUInt32BE(int(100) === 0 ? body.length + int(5) - 2 : body.length);
      f = Buffer.concat([head, body]);
    } else if (kind === 8) {
      // A random well-formed msgpack request of random types.
      const vals = [null, true, -1, 2 ** 33, 'ask', 'generate', 'x'.repeat(int(300)), [1, 'a'], { width: 1 }, new Uint8Array(int(20))];
      const m: Msg = {};
      for (let k = int(6); k > 0; k--) m[['id', 'type', 'image', 'question', 'prompt', 'maxNewTokens', 'target', 'stopTokens', 'topP'][int(9)]!] = vals[int(vals.length)];
      f = encodeFrame(m);
    } else {
      f = valid[int(valid.length)]!;
    }
    // Groups of 10 frames, each group followed by a stats request that is awaited (up to 120 ms: a frame with a
    // wrong length prefix swallows it until the 40 ms frame timeout), so that a framing error, which drops what
    // is buffered by design, costs only the rest of its group.
    sent++;
    c.write(f);
    // A frame per read, mostly: a framing error drops what is buffered (by design), so pace the writes.
    await new Promise((r) => setTimeout(r, 0));
    if (i % 10 === 9) {
      const sync = `sync${i}`;
      // In a write of its own, after a pause, so that a bad frame in the group does not drop it with the rest.
      await new Promise((r) => setTimeout(r, 2));
      c.send({ id: sync, type: 'stats' });
      await c.next((m) => m.id === sync, 120).then(() => synced++, () => undefined);
      c.drain();
    }
  }
  // Let a dangling partial frame time out (40 ms), the running generation finish, then ask for real.
  await new Promise((r) => setTimeout(r, 400));
  c.drain();
  let r: Msg;
  for (let tries = 0; ; tries++) {
    r = await c.call({ id: 'final', type: 'ask', image: PNG, question: Q, maxNewTokens: 4 });
    if (r.code !== 'busy' && !(r.type === 'error' && tries < 20 && r.code === 'truncated-frame')) break;
    await new Promise((res) => setTimeout(res, 200));
  }
  assert.is(r.type, 'done', JSON.stringify(r));
  const stats = await c.call({ id: 'stats', type: 'stats' });
  const rss = ((stats.memory as Msg).rss as number) / 2 ** 20;
  const secs = (Date.now() - t0) / 1000;
  assert.ok(rss < 600, `RSS ${rss.toFixed(0)} MiB after the fuzz`);
  assert.ok(secs < 60, `fuzz took ${secs.toFixed(1)} s`);
  assert.is(c.badFrames, 0, 'the server wrote something that is not a frame');
  assert.is(c.proc.exitCode, null);
  assert.ok(synced > N / 20, `${synced} of ${N / 10} groups answered`);
  assert.ok((stats.requests as number) + (stats.frameErrors as number) > N / 2, 'the frames reached the server');
  console.log(`\nNOTE: stdio fuzz: ${sent} frames (${synced} of ${N / 10} groups synced) in ${secs.toFixed(1)} s; ${stats.requests as number} requests, ${stats.errors as number} errors, ${stats.frameErrors as number} framing errors; RSS ${rss.toFixed(0)} MiB`);
});

test.run();
