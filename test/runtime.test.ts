// LaviRuntime (models/app/runtime.ts) on tiny random checkpoints written to a temp dir (runtime-helpers.ts): prompt
// building, greedy answers equal to the low-level generate(), streaming, seeded sampling, stop tokens, FLOPs and
// timings, cancellation, error messages (empty/over-long question, images, model dirs, backends), two runtimes
// with different models interleaving their asks, and queued asks on one runtime.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { CpuBackend } from '../backends/cpu/index.js';
import { releaseAllBackends } from '../core/registry.js';
import { generate } from '../models/app/generate.js';
import { preprocessImage } from '../models/image/preprocess.js';
import {
  AbortError,
  ImageError,
  LaviRuntime,
  ModelDirError,
  PromptTooLongError,
  defaultModelDir,
  packageRoot,
  type AskResult,
  type RuntimeOptions,
} from '../models/app/runtime.js';
import { countParameters } from '../models/lavi/weights.js';
import { ByteTokenizer, CHAT_TEMPLATE, SPECIAL, encodePng, makeTinyModel, tempDir, testImage } from './runtime-helpers.js';

const tmp = tempDir();
const laviDir = join(tmp.dir, 'lavi');
const concatDir = join(tmp.dir, 'concat');
const tokenizer = new ByteTokenizer();
const IMG = testImage(40, 30, 0);
const IMG2 = testImage(33, 47, 2);
const Q = 'What colour is the square?';

async function runtime(dir = laviDir, extra: RuntimeOptions = {}): Promise<LaviRuntime> {
  return LaviRuntime.create({ modelDir: dir, backend: 'cpu', tokenizer, ...extra });
}

async function rejects(p: Promise<unknown>, cls: Function, re: RegExp): Promise<Error> {
  try {
    await p;
  } catch (e) {
    assert.instance(e, cls, `expected ${cls.name}, got ${(e as Error).name}: ${(e as Error).message}`);
    assert.match((e as Error).message, re);
    return e as Error;
  }
  assert.unreachable(`expected ${cls.name} matching ${re}`);
  throw new Error('unreachable');
}

test.before(async () => {
  mkdirSync(laviDir);
  mkdirSync(concatDir);
  await makeTinyModel(laviDir, { mode: 'lavi', seed: 1 });
  await makeTinyModel(concatDir, { mode: 'concat', seed: 2 });
});

test.after(async () => {
  tmp.cleanup();
  await releaseAllBackends(); // the default-backend test may have started a GPU or worker-pool backend
});

test('the default model dir is the bundled checkpoint, found from the package, not the cwd', () => {
  const d = defaultModelDir();
  assert.ok(isAbsolute(d));
  assert.ok(d.endsWith(join('models', 'weights', 'lavi-vqa')), d);
  assert.ok(existsSync(join(packageRoot(), 'package.json')));
  assert.ok(existsSync(join(packageRoot(), 'models', 'app', 'runtime.ts')));
});

test('info(): backend, mode, config summary, parameter count', async () => {
  const rt = await runtime();
  const info = rt.info();
  assert.is(info.backend.name, 'cpu');
  assert.equal(info.backendChoice, { name: 'cpu', requested: true, skipped: [] });
  assert.is(info.mode, 'lavi');
  assert.is(info.modelDir, laviDir);
  assert.is(info.config.vocabSize, 259);
  assert.is(info.config.visualTokensPerImage, 16);
  assert.is(info.config.weightDType, 'bfloat16');
  assert.equal(info.parameters, countParameters(rt.config));
  assert.is(info.parameters.total, rt.model.weights.parameterCount() - (rt.model.weights.has('lavi.frame_embedding.weight') ? rt.model.weights.get('lavi.frame_embedding.weight').size : 0));
  assert.ok(info.weightBytes > 0);
  assert.is(info.chatTemplate, CHAT_TEMPLATE);
  rt.dispose();
});

test('small checkpoints are widened to f32 at load by default (exact); keepPacked: true keeps bf16, same answers', async () => {
  const wide = await runtime();
  const packed = await runtime(laviDir, { model: { keepPacked: true } });
  assert.is(wide.model.weights.get('model.embed_tokens.weight').dtype, 'f32');
  assert.is(packed.model.weights.get('model.embed_tokens.weight').dtype, 'bf16');
  assert.ok(packed.info().weightBytes < wide.info().weightBytes);
  const o = { maxNewTokens: 8, stopTokens: [] };
  assert.equal((await wide.ask(IMG, Q, o)).tokens, (await packed.ask(IMG, Q, o)).tokens);
  wide.dispose();
  packed.dispose();
});

test('the default backend is bestBackend(): cpu here, with the reasons others were skipped', async () => {
  const rt = await LaviRuntime.create({ modelDir: laviDir, tokenizer });
  const c = rt.info().backendChoice;
  assert.is(c.requested, false);
  assert.ok(c.name.length > 0);
  for (const s of c.skipped) assert.ok(s.reason.length > 0);
  rt.dispose();
});

test('the prompt is the chat template with the question substituted, then tokenized', async () => {
  const rt = await runtime();
  assert.is(rt.formatPrompt('Is it red?'), '<|im_start|>user\nIs it red?<|im_end|>\n<|im_start|>assistant\n');
  const ids = rt.encodePrompt('Is it red?');
  assert.equal(ids, tokenizer.encode(rt.formatPrompt('Is it red?')));
  assert.is(ids[0], SPECIAL.imStart);
  assert.ok(ids.includes(SPECIAL.imEnd));
  rt.dispose();
});

test('a greedy answer equals the low-level generate() on the same ids and pixels, and is deterministic', async () => {
  const rt = await runtime();
  const r1 = await rt.ask(IMG, Q, { maxNewTokens: 10 });
  const r2 = await rt.ask(IMG, Q, { maxNewTokens: 10 });
  assert.equal(r1.tokens, r2.tokens);
  assert.is(r1.answer, r2.answer);
  const pixels = preprocessImage(IMG, rt.config.vision_config);
  const low = await generate(rt.model, rt.encodePrompt(Q), { image: pixels, maxNewTokens: 10 });
  assert.equal(r1.tokens, low.tokens);
  const answerIds = r1.stopReason === 'stop' ? r1.tokens.slice(0, -1) : r1.tokens;
  assert.is(r1.answer, tokenizer.decode(answerIds).trim());
  assert.is(r1.promptTokens, rt.encodePrompt(Q).length);
  assert.is(r1.visualTokens, 16);
  assert.is(r1.contextTokens, r1.promptTokens, 'LaVi: no visual tokens in the context');
  assert.ok(['stop', 'length'].includes(r1.stopReason));
  if (r1.stopReason === 'length') assert.is(r1.tokens.length, 10);
  rt.dispose();
});

test('the image matters: different images give different prompt logits', async () => {
  const rt = await runtime();
  const ids = rt.encodePrompt(Q);
  rt.model.prefill(ids, preprocessImage(IMG, rt.config.vision_config));
  const a = Float32Array.from(await rt.model.readLogits());
  rt.model.prefill(ids, preprocessImage(IMG2, rt.config.vision_config));
  const b = await rt.model.readLogits();
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
  assert.ok(diff > 1e-3, `logits barely change with the image (${diff})`);
  rt.dispose();
});

test('without an injected tokenizer, dir/tokenizer.json is loaded (models/text/tokenizer.ts) and encodes the same', async () => {
  const rt = await LaviRuntime.create({ modelDir: laviDir, backend: 'cpu' });
  assert.ok(!(rt.tokenizer instanceof ByteTokenizer));
  for (const q of [Q, 'Ünïcödé — and emoji 🐱?', '  spaces  ']) assert.equal(rt.encodePrompt(q), tokenizer.encode(rt.formatPrompt(q)));
  const ref = await runtime();
  assert.equal((await rt.ask(IMG, Q, { maxNewTokens: 6 })).tokens, (await ref.ask(IMG, Q, { maxNewTokens: 6 })).tokens);
  rt.dispose();
  ref.dispose();
});

test('an image as a PNG path, as PNG bytes, or as decoded pixels gives the same answer', async () => {
  const rt = await runtime();
  const bytes = encodePng(IMG);
  const path = join(tmp.dir, 'img.png');
  writeFileSync(path, bytes);
  const a = await rt.ask(IMG, Q, { maxNewTokens: 6 });
  const b = await rt.ask(path, Q, { maxNewTokens: 6 });
  const c = await rt.ask(bytes, Q, { maxNewTokens: 6 });
  assert.equal(b.tokens, a.tokens);
  assert.equal(c.tokens, a.tokens);
  assert.ok(b.timings.imageMs > 0);
  rt.dispose();
});

test('concat baseline: visual tokens are in the context', async () => {
  const rt = await runtime(concatDir);
  const r = await rt.ask(IMG, Q, { maxNewTokens: 4 });
  assert.is(rt.info().mode, 'concat');
  assert.is(r.contextTokens, r.promptTokens + 16);
  rt.dispose();
});

test('streaming: onToken gets each answer token as it is chosen; the texts add up to the answer', async () => {
  const rt = await runtime();
  const seen: { text: string; id: number }[] = [];
  const r = await rt.ask(IMG, 'Say something long.', { maxNewTokens: 12, stopTokens: [], onToken: (text, id) => seen.push({ text, id }) });
  assert.is(r.stopReason, 'length');
  assert.equal(seen.map((s) => s.id), r.tokens);
  // Byte tokens: the text of a complete UTF-8 prefix is emitted as soon as it is complete.
  const full = tokenizer.decode(r.tokens);
  const streamed = seen.map((s) => s.text).join('');
  assert.ok(full.startsWith(streamed), 'streamed text is a prefix of the decoded answer');
  assert.ok(full.length - streamed.length <= 1, 'at most a trailing replacement character is held back');
  rt.dispose();
});

test('streaming with a stop token: the stop token is not reported and not in the answer', async () => {
  const rt = await runtime();
  const first = (await rt.ask(IMG, Q, { maxNewTokens: 1 })).tokens[0]!;
  const seen: number[] = [];
  const r = await rt.ask(IMG, Q, { maxNewTokens: 8, stopTokens: [first], onToken: (_t, id) => seen.push(id) });
  assert.is(r.stopReason, 'stop');
  assert.equal(r.tokens, [first]);
  assert.equal(seen, []);
  assert.is(r.answer, '');
  rt.dispose();
});

test('seeded sampling reproduces; other seeds give other continuations', async () => {
  const rt = await runtime();
  const o = { maxNewTokens: 12, temperature: 1.5, topK: 50, topP: 0.95, stopTokens: [] };
  const a = await rt.ask(IMG, Q, { ...o, seed: 7 });
  const b = await rt.ask(IMG, Q, { ...o, seed: 7 });
  assert.equal(a.tokens, b.tokens);
  const others = await Promise.all([8, 9, 10].map((seed) => rt.ask(IMG, Q, { ...o, seed })));
  assert.ok(others.some((c) => c.tokens.join() !== a.tokens.join()), 'different seeds should differ');
  rt.dispose();
});

test('cost and timings: vision and LLM FLOPs, encode/prefill/TTFT/decode', async () => {
  const rt = await runtime();
  const r = await rt.ask(IMG, Q, { maxNewTokens: 6, stopTokens: [] });
  const c = r.cost!;
  assert.ok(c.visionFlops > 0 && c.llmFlops > 0 && c.prefillFlops > 0);
  assert.ok(c.prefillFlops < c.llmFlops, 'decode steps add LLM FLOPs');
  assert.ok(c.totalFlops >= c.visionFlops + c.llmFlops);
  const t = r.timings;
  for (const [k, v] of Object.entries(t)) assert.ok(Number.isFinite(v) && v >= 0, `${k} = ${v}`);
  assert.ok(t.ttftMs >= t.encodeMs + t.prefillMs - 1e-6);
  assert.ok(t.totalMs >= t.ttftMs);
  assert.ok(t.tokensPerSecond > 0);
  // Same request again: the same FLOPs (the count comes from the ops, not the clock). Bytes moved may differ: the
  // first request also grew the KV cache.
  const r2 = await rt.ask(IMG, Q, { maxNewTokens: 6, stopTokens: [] });
  assert.equal({ ...r2.cost, bytesMoved: 0 }, { ...r.cost, bytesMoved: 0 });
  // Text-only: no vision FLOPs.
  const g = await rt.generate('Once upon a time', { maxNewTokens: 3, stopTokens: [] });
  assert.is(g.cost!.visionFlops, 0);
  assert.is(g.visualTokens, 0);
  assert.is(g.timings.encodeMs, 0);
  assert.is(g.tokens.length, 3);
  rt.dispose();
  const off = await runtime(laviDir, { recordCost: false });
  assert.is((await off.ask(IMG, Q, { maxNewTokens: 2 })).cost, undefined);
  off.dispose();
});

test('text-only generate(): raw text (no chat template) or token ids; same as the low-level generate()', async () => {
  const rt = await runtime();
  const g = await rt.generate('Hello', { maxNewTokens: 5, stopTokens: [] });
  const low = await generate(rt.model, tokenizer.encode('Hello'), { maxNewTokens: 5, stopTokens: [] });
  assert.equal(g.tokens, low.tokens);
  assert.is(g.promptTokens, 5);
  const byIds = await rt.generate(tokenizer.encode('Hello'), { maxNewTokens: 5, stopTokens: [] });
  assert.equal(byIds.tokens, g.tokens);
  rt.dispose();
});

test('cancellation: an abort stops generation between tokens with stopReason aborted and the answer so far', async () => {
  const rt = await runtime();
  const ac = new AbortController();
  let n = 0;
  const r = await rt.ask(IMG, Q, {
    maxNewTokens: 50,
    stopTokens: [],
    signal: ac.signal,
    onToken: () => {
      if (++n === 3) ac.abort(new Error('user pressed stop'));
    },
  });
  assert.is(r.stopReason, 'aborted');
  assert.is(r.tokens.length, 3);
  assert.is(r.answer, tokenizer.decode(r.tokens).trim());
  assert.match(String((r.abortReason as Error).message), 'user pressed stop');
  // An abort from a timer is seen too (the runtime yields to the event loop between tokens).
  const ac2 = new AbortController();
  setTimeout(() => ac2.abort(), 30);
  const r2 = await rt.ask(IMG, Q, { maxNewTokens: 110, stopTokens: [], signal: ac2.signal });
  assert.is(r2.stopReason, 'aborted');
  assert.ok(r2.tokens.length < 110);
  // Already aborted: nothing runs, an AbortError.
  const e = await rejects(rt.ask(IMG, Q, { signal: AbortSignal.abort() }), AbortError, /aborted before it started/);
  assert.is((e as AbortError).code, 'aborted');
  // The runtime is still usable and the sequence state was reset.
  const r3 = await rt.ask(IMG, Q, { maxNewTokens: 4 });
  const r4 = await rt.ask(IMG, Q, { maxNewTokens: 4 });
  assert.equal(r3.tokens, r4.tokens);
  rt.dispose();
});

test('errors: empty question, over-long question, bad options', async () => {
  const rt = await runtime();
  await rejects(rt.ask(IMG, ''), Error, /question is empty/);
  await rejects(rt.ask(IMG, '  \n\t '), Error, /question is empty/);
  // max_position_embeddings is 160: the template is 19 tokens, the default room for the answer is 64.
  assert.is(rt.encodePrompt('x').length, 20);
  const long = 'why '.repeat(40);
  const e = await rejects(rt.ask(IMG, long), PromptTooLongError, /prompt too long: 179 tokens \+ room for 64 answer tokens exceeds the model's context of 160 tokens \(at most 96 prompt tokens fit/);
  assert.is((e as PromptTooLongError).code, 'prompt-too-long');
  // The same question fits with less room for the answer... and not when the room alone is too big.
  await rejects(rt.ask(IMG, 'why?', { maxNewTokens: 200 }), PromptTooLongError, /lower maxNewTokens/);
  await rejects(rt.ask(IMG, Q, { maxNewTokens: 0 }), Error, /maxNewTokens must be a positive integer/);
  await rejects(rt.ask(IMG, Q, { temperature: -1 }), Error, /temperature/);
  await rejects(rt.ask(IMG, Q, { topP: 0 }), Error, /topP/);
  // Concat: the visual tokens count against the context; the same question fits LaVi's (no visual tokens in it).
  const q95 = 'why '.repeat(19);
  assert.is((await rt.ask(IMG, q95, { maxNewTokens: 1 })).promptTokens, 95);
  await rt.ask(IMG, q95, { maxNewTokens: 64 });
  rt.dispose();
  const rc = await runtime(concatDir);
  await rejects(rc.ask(IMG, q95, { maxNewTokens: 64 }), PromptTooLongError, /95 tokens \+ 16 visual tokens \+ room for 64 answer tokens exceeds the model's context of 160 tokens \(at most 80 prompt tokens fit/);
  rc.dispose();
});

test('errors: images that are missing, empty, or not images', async () => {
  const rt = await runtime();
  await rejects(rt.ask(join(tmp.dir, 'nope.png'), Q), ImageError, /nope\.png: no such file/);
  await rejects(rt.ask(tmp.dir, Q), ImageError, /is a directory/);
  const empty = join(tmp.dir, 'empty.png');
  writeFileSync(empty, '');
  await rejects(rt.ask(empty, Q), ImageError, /empty\.png: empty file/);
  await rejects(rt.ask({ width: 4, height: 4, data: new Uint8Array(5) }, Q), ImageError, /needs 48 bytes, got 5/);
  await rejects(rt.ask(42 as unknown as string, Q), ImageError, /expected a file path/);
  rt.dispose();
});

test('errors: a model dir without config, tokenizer or weights; a corrupt config; an unknown backend', async () => {
  await rejects(LaviRuntime.create({ modelDir: join(tmp.dir, 'missing'), backend: 'cpu' }), ModelDirError, /missing does not exist/);
  const d1 = join(tmp.dir, 'no-tok');
  await makeTinyModel(d1, { omit: ['tokenizer.json', 'model.safetensors'] });
  await rejects(LaviRuntime.create({ modelDir: d1, backend: 'cpu' }), ModelDirError, /no-tok has no tokenizer\.json, no weights \(model\.safetensors/);
  const d2 = join(tmp.dir, 'no-config');
  await makeTinyModel(d2, { omit: ['config.json'] });
  await rejects(LaviRuntime.create({ modelDir: d2, backend: 'cpu' }), ModelDirError, /no-config has no config\.json$/);
  const d3 = join(tmp.dir, 'bad-config');
  await makeTinyModel(d3);
  writeFileSync(join(d3, 'config.json'), '{"model_type": "lavi",');
  await rejects(LaviRuntime.create({ modelDir: d3, backend: 'cpu' }), ModelDirError, /config\.json: not valid JSON/);
  const d4 = join(tmp.dir, 'bad-weights');
  await makeTinyModel(d4);
  writeFileSync(join(d4, 'model.safetensors'), new Uint8Array(16));
  await rejects(LaviRuntime.create({ modelDir: d4, backend: 'cpu', tokenizer }), Error, /model\.safetensors/);
  await rejects(LaviRuntime.create({ modelDir: laviDir, backend: 'no-such-backend', tokenizer }), Error, /unknown backend 'no-such-backend' \(known: .*cpu/);
});

test('a backend instance can be passed directly', async () => {
  const cpu = new CpuBackend('cpu-private');
  const rt = await runtime(laviDir, { backend: cpu });
  assert.is(rt.info().backend.name, 'cpu-private');
  const r = await rt.ask(IMG, Q, { maxNewTokens: 3 });
  const ref = await runtime();
  assert.equal(r.tokens, (await ref.ask(IMG, Q, { maxNewTokens: 3 })).tokens);
  rt.dispose();
  ref.dispose();
  assert.is(cpu.memory().liveBytes, 0, 'dispose() frees everything the runtime put on the backend');
});

test('two runtimes with different models in one process: interleaved asks give the sequential answers', async () => {
  const a = await runtime(laviDir);
  const b = await runtime(concatDir);
  const o = { maxNewTokens: 8, stopTokens: [] };
  const seqA1 = await a.ask(IMG, Q, o);
  const seqB1 = await b.ask(IMG2, 'Another question?', o);
  const seqA2 = await a.ask(IMG2, 'Third?', o);
  const seqB2 = await b.ask(IMG, Q, o);
  // Interleave: both runtimes generate at once (they yield between tokens); record the order tokens arrive in.
  const order: string[] = [];
  const [pa1, pb1, pa2, pb2] = await Promise.all([
    a.ask(IMG, Q, { ...o, onToken: () => order.push('a') }),
    b.ask(IMG2, 'Another question?', { ...o, onToken: () => order.push('b') }),
    a.ask(IMG2, 'Third?', o),
    b.ask(IMG, Q, o),
  ]);
  const same = (x: AskResult, y: AskResult) => assert.equal(x.tokens, y.tokens);
  same(pa1!, seqA1);
  same(pb1!, seqB1);
  same(pa2!, seqA2);
  same(pb2!, seqB2);
  assert.is(pa1!.cost!.totalFlops, seqA1.cost!.totalFlops, 'FLOP counts are per request, not mixed between runtimes');
  assert.is(pb1!.cost!.totalFlops, seqB1.cost!.totalFlops);
  assert.is(pb2!.cost!.visionFlops, seqB2.cost!.visionFlops);
  const firstB = order.indexOf('b'), lastA = order.lastIndexOf('a');
  assert.ok(firstB >= 0 && firstB < lastA, `the two runtimes' tokens interleave (${order.join('')})`);
  a.dispose();
  b.dispose();
});

test('asks on one runtime are queued: concurrent asks equal sequential ones', async () => {
  const rt = await runtime();
  const o = { maxNewTokens: 6, stopTokens: [] };
  const s1 = await rt.ask(IMG, Q, o);
  const s2 = await rt.ask(IMG2, 'Other?', o);
  const [c1, c2] = await Promise.all([rt.ask(IMG, Q, o), rt.ask(IMG2, 'Other?', o)]);
  assert.equal(c1!.tokens, s1.tokens);
  assert.equal(c2!.tokens, s2.tokens);
  // A failing ask does not poison the queue.
  const bad = rt.ask(IMG, '');
  const good = rt.ask(IMG, Q, o);
  await rejects(bad, Error, /question is empty/);
  assert.equal((await good).tokens, s1.tokens);
  rt.dispose();
  await rejects(rt.ask(IMG, Q), Error, /used after dispose/);
});

test.run();
