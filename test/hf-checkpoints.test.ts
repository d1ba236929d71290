// Real Hugging Face checkpoint layouts, run unchanged: the tiny Qwen2 folders (GQA untied bf16, tied f16, sharded
// f32) and the SigLIP folder written by the independent PyTorch oracle (test/hf/), checked against its float64
// goldens: logits NMSE ≤ 1e-10 on the CPU reference, within the model-level threshold on every device backend,
// greedy tokens exact everywhere (library and `lavi generate --ids --json`). A LaVi assembled from the Qwen2 and
// SigLIP folders plus its own tensors runs with no dummy tensors. Bad folders fail with errors naming the file and
// field. A device backend that cannot be created is reported with a NOTE line (a failure under CI=true for
// wasm/webgpu).

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { cpSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import '../backends/index.js';
import type { Backend } from '../core/backend.js';
import { getBackend, releaseAllBackends } from '../core/registry.js';
import { Checkpoint } from '../core/safetensors/checkpoint.js';
import { writeSafetensors } from '../core/safetensors/writer.js';
import { LaviRuntime } from '../models/app/runtime.js';
import { expectedWeights } from '../models/lavi/weights.js';
import { inspectModelDir, loadQwen2, readLaviFolder } from '../models/loader.js';
import { randomSpecs } from '../models/loading/weights.js';
import { SiglipVisionModel } from '../models/siglip/model.js';
import { createWasmBackend } from '../backends/wasm/index.js';
import { parseQwen2Config } from '../models/qwen2/config.js';
import { declareQwen2, qwen2Specs } from '../models/qwen2/weights.js';
import { tempDir } from './runtime-helpers.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const HF = join(ROOT, 'test', 'fixtures', 'hf');
const CLI = join(ROOT, 'dist', 'models', 'app', 'cli.js');
const QWEN2 = ['qwen2-gqa-bf16', 'qwen2-tied-f16', 'qwen2-sharded-f32'];
const DEVICES = ['wasm', 'webgpu', 'gpujs-webasm'];
const REQUIRED_IN_CI = new Set(['wasm', 'webgpu']);

interface Golden {
  promptIds: number[];
  generatedIds: number[];
  maxNewTokens: number;
  logits: Float32Array;
}

async function golden(name: string): Promise<Golden> {
  const meta = JSON.parse(readFileSync(join(HF, 'goldens', `${name}.json`), 'utf8')) as { prompt_ids: number[]; generated_ids: number[]; max_new_tokens: number };
  const ck = await Checkpoint.open(join(HF, 'goldens', `${name}.safetensors`));
  try {
    const logits = (await ck.read('logits', { allowLossy: true })).data as Float32Array;
    return { promptIds: meta.prompt_ids, generatedIds: meta.generated_ids, maxNewTokens: meta.max_new_tokens, logits };
  } finally {
    await ck.close();
  }
}

function nmse(got: Float32Array, want: Float32Array): number {
  assert.is(got.length, want.length, 'logits length');
  let num = 0, den = 0;
  for (let i = 0; i < want.length; i++) {
    if (!Number.isFinite(got[i]!)) return Infinity;
    num += (got[i]! - want[i]!) ** 2;
    den += want[i]! ** 2;
  }
  return num / den;
}

async function promptLogits(dir: string, backend: Backend, ids: number[], pieceBytes?: number): Promise<Float32Array> {
  const q = await loadQwen2(await inspectModelDir(dir), backend, { pieceBytes });
  try {
    q.lm.prefill(ids, { allLogits: true });
    return Float32Array.from((await q.lm.logits!.read()) as Float32Array);
  } finally {
    q.lm.dispose();
  }
}

async function deviceOrNote(name: string): Promise<Backend | null> {
  try {
    return await getBackend(name);
  } catch (e) {
    if (process.env.CI === 'true' && REQUIRED_IN_CI.has(name)) throw e;
    console.log(`NOTE: HF checkpoints on ${name}: backend unavailable (${(e as Error).message.split('\n')[0]}); not run`);
    return null;
  }
}

test('Qwen2 layouts on the CPU reference: prompt logits NMSE ≤ 1e-10 against the float64 goldens, greedy ids exact', async () => {
  const cpu = await getBackend('cpu');
  let worst = 0;
  for (const name of QWEN2) {
    const g = await golden(name);
    const e = nmse(await promptLogits(join(HF, name), cpu, g.promptIds), g.logits);
    worst = Math.max(worst, e);
    assert.ok(e <= 1e-10, `${name}: logits NMSE ${e.toExponential(2)}`);
    assert.equal(await promptLogits(join(HF, name), cpu, g.promptIds, 4096), await promptLogits(join(HF, name), cpu, g.promptIds), `${name}: a piecewise load (4 KiB pieces) gives the same logits`);
    const rt = await LaviRuntime.create({ modelDir: join(HF, name), backend: 'cpu', requireTokenizer: false });
    try {
      assert.is(rt.family, 'qwen2');
      const r = await rt.generate(g.promptIds, { maxNewTokens: g.maxNewTokens });
      assert.equal(r.tokens, g.generatedIds, `${name}: greedy ids (stop token included, as HF's generate)`);
    } finally {
      rt.dispose();
    }
  }
  console.log(`NOTE: HF Qwen2 layouts on cpu: worst logits NMSE ${worst.toExponential(2)} over ${QWEN2.length} checkpoints`);
});

for (const device of DEVICES) {
  test(`Qwen2 layouts on ${device}: logits within the model threshold, greedy ids exact`, async () => {
    const backend = await deviceOrNote(device);
    if (!backend) return;
    let worst = 0;
    for (const name of QWEN2) {
      const g = await golden(name);
      const e = nmse(await promptLogits(join(HF, name), backend, g.promptIds), g.logits);
      worst = Math.max(worst, e);
      assert.ok(e <= 1e-6, `${device} ${name}: logits NMSE ${e.toExponential(2)}`);
      // Loaded in runs of rows through a 4 KiB host piece (as large tensors load): the same logits.
      const pieces = await promptLogits(join(HF, name), backend, g.promptIds, 4096);
      assert.ok(nmse(pieces, g.logits) <= 1e-6, `${device} ${name}: logits after a piecewise load`);
      const rt = await LaviRuntime.create({ modelDir: join(HF, name), backend, requireTokenizer: false });
      try {
        assert.equal((await rt.generate(g.promptIds, { maxNewTokens: g.maxNewTokens })).tokens, g.generatedIds, `${device} ${name}: greedy ids`);
      } finally {
        rt.dispose();
      }
    }
    console.log(`NOTE: HF Qwen2 layouts on ${device}: worst logits NMSE ${worst.toExponential(2)}, greedy ids exact`);
  });
}

test('lavi generate --model DIR --ids … --json: the last stdout line carries the golden ids; text is null without a tokenizer', async () => {
  for (const name of QWEN2) {
    const g = await golden(name);
    const r = spawnSync(process.execPath, [CLI, 'generate', '--model', join(HF, name), '--ids', g.promptIds.join(','), '--max-tokens', String(g.maxNewTokens), '--json', '--backend', 'cpu'], { encoding: 'utf8' });
    assert.is(r.status, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    const out = JSON.parse(lines[lines.length - 1]!) as { ids: number[]; text: string | null };
    assert.equal(out.ids, g.generatedIds, name);
    assert.is(out.text, null);
  }
});

test('SigLIP folder: features (last_hidden_state, after post_layernorm) NMSE ≤ 1e-10 on cpu from the golden pixels', async () => {
  const cpu = await getBackend('cpu');
  const ck = await Checkpoint.open(join(HF, 'goldens', 'siglip-tiny.safetensors'));
  const px = await ck.read('pixel_values', { allowLossy: true });
  const want = (await ck.read('last_hidden_state', { allowLossy: true })).data as Float32Array;
  await ck.close();
  const m = await SiglipVisionModel.load(join(HF, 'siglip-tiny'), cpu);
  try {
    const f = m.features({ data: px.data as Float32Array, shape: px.shape as [number, number, number, number] });
    const e = nmse((await f.read()) as Float32Array, want);
    f.dispose();
    assert.ok(e <= 1e-10, `SigLIP features NMSE ${e.toExponential(2)}`);
    assert.ok(m.weights.ignored.some((n) => n.startsWith('vision_model.head.')), 'the pooling head is accepted and skipped');
  } finally {
    m.dispose();
  }
});

test('lavi generate on LLaVA-OneVision folders (both naming conventions): --ids with one <image> token + --image gives the golden ids on cpu; text-only too', async () => {
  for (const name of ['llava-ov-tiny', 'llava-ov-tiny-new']) {
    const meta = JSON.parse(readFileSync(join(HF, 'goldens', `${name}.json`), 'utf8')) as {
      prompt_ids_before_expansion: number[];
      max_new_tokens: number;
      images: { name: string; generated_ids: number[]; num_image_tokens: number; expanded_length: number }[];
    };
    for (const img of meta.images.slice(0, 2)) {
      const file = join(HF, 'images', `${img.name}.png`);
      const r = spawnSync(process.execPath, [CLI, 'generate', '--model', join(HF, name), '--ids', meta.prompt_ids_before_expansion.join(','), '--image', file, '--max-tokens', String(meta.max_new_tokens), '--json', '--backend', 'cpu'], { encoding: 'utf8' });
      assert.is(r.status, 0, r.stderr);
      const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { ids: number[]; context_tokens: number; family: string };
      assert.is(out.family, 'llava-onevision');
      assert.equal(out.ids, img.generated_ids, `${name} ${img.name}`);
      assert.is(out.context_tokens, img.expanded_length, 'the <image> token expands to the image token count');
    }
  }
  const bad = spawnSync(process.execPath, [CLI, 'generate', '--model', join(HF, 'llava-ov-tiny'), '--ids', '1,2,3', '--image', join(HF, 'images', 'small-20x14.png'), '--backend', 'cpu'], { encoding: 'utf8' });
  assert.is(bad.status, 1);
  assert.match(bad.stderr, /needs one image token \(id 508\)/);
});

/** A LaVi folder that references the Qwen2 and SigLIP folders and holds only lavi.* tensors. */
async function assembleLavi(dir: string, zero: boolean): Promise<void> {
  const config = {
    model_type: 'lavi',
    text_model: join(HF, 'qwen2-tied-f16'),
    vision_model: join(HF, 'siglip-tiny'),
    lavi_config: { conditioner_width: 16, conditioner_heads: 2 },
  };
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  const lf = await readLaviFolder(await inspectModelDir(dir));
  const own = expectedWeights(lf.config).filter((s) => s.name.startsWith('lavi.') && !s.optional);
  const w = randomSpecs(own, { seed: 3, scale: (n) => (zero && n.includes('.o_proj.') ? 0 : 1) });
  await writeSafetensors(join(dir, 'model.safetensors'), w);
}

test('LaVi assembled from a Qwen2 folder, a SigLIP folder and its own tensors: no dummies; zero conditioners = the base LLM', async () => {
  const g = await golden('qwen2-tied-f16');
  const image = join(HF, 'images', 'siglip-75x50.png');
  const { dir, cleanup } = tempDir('lavi-assembled-');
  try {
    await assembleLavi(dir, true);
    const rt = await LaviRuntime.create({ modelDir: dir, backend: 'cpu', requireTokenizer: false });
    try {
      assert.is(rt.family, 'lavi');
      assert.ok(rt.model.weights.has('model.embed_tokens.weight') && rt.model.weights.has('vision_model.encoder.layers.0.mlp.fc1.weight'));
      // With o_proj zeroed the deltas are 0: the image changes nothing and LaVi is exactly its base Qwen2.
      rt.model.prefill(g.promptIds, await rt.prepareImage(image), { allLogits: true });
      const e = nmse(Float32Array.from((await rt.model.logits!.read()) as Float32Array), g.logits);
      assert.ok(e <= 1e-10, `assembled LaVi (zero conditioners) vs the Qwen2 golden: NMSE ${e.toExponential(2)}`);
      rt.model.reset();
      assert.equal((await rt.generate(g.promptIds, { maxNewTokens: g.maxNewTokens, image })).tokens, g.generatedIds);
    } finally {
      rt.dispose();
    }
    await assembleLavi(dir, false);
    const rt2 = await LaviRuntime.create({ modelDir: dir, backend: 'cpu', requireTokenizer: false });
    try {
      rt2.model.prefill(g.promptIds, await rt2.prepareImage(image), { allLogits: true });
      const e = nmse(Float32Array.from((await rt2.model.logits!.read()) as Float32Array), g.logits);
      assert.ok(e > 1e-6, `trained-like conditioners must change the logits (NMSE ${e.toExponential(2)})`);
    } finally {
      rt2.dispose();
    }
  } finally {
    cleanup();
  }
});

/** A copy of a fixture folder with config.json edited (or files removed), for the bad-input cases. */
function variant(name: string, edit: (cfg: Record<string, unknown>) => void, remove: string[] = []): { dir: string; cleanup: () => void } {
  const t = tempDir('lavi-hf-bad-');
  cpSync(join(HF, name), t.dir, { recursive: true });
  const p = join(t.dir, 'config.json');
  const cfg = JSON.parse(readFileSync(p, 'utf8')) as Record<string, unknown>;
  edit(cfg);
  writeFileSync(p, JSON.stringify(cfg));
  for (const f of remove) rmSync(join(t.dir, f));
  return t;
}

async function rejects(fn: () => Promise<unknown>, want: RegExp): Promise<void> {
  try {
    await fn();
  } catch (e) {
    assert.match((e as Error).message, want);
    return;
  }
  assert.unreachable(`expected an error matching ${want}`);
}

async function refusal(dir: string, opts: Parameters<typeof LaviRuntime.create>[0] = {}): Promise<string> {
  try {
    const rt = await LaviRuntime.create({ modelDir: dir, backend: 'cpu', requireTokenizer: false, ...opts });
    rt.dispose();
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error(`${dir}: expected a refusal`);
}

test('bad folders: each a clear error naming the file and field (or tensor), never a crash', async () => {
  const cases: [string, (c: Record<string, unknown>) => void, string[], RegExp][] = [
    ['unknown model_type', (c) => ((c.model_type = 'mistral'), (c.architectures = ['MistralForCausalLM'])), [], /config\.json: model_type "mistral".*not supported; supported: Qwen2ForCausalLM/],
    ['missing field', (c) => delete c.hidden_size, [], /config\.json: field 'hidden_size' must be an integer/],
    ['ill-typed field', (c) => (c.num_hidden_layers = '3'), [], /field 'num_hidden_layers' must be an integer ≥ 1, got "3"/],
    ['shapes disagree with the config', (c) => (c.intermediate_size = 100), [], /wrong shape.*mlp\.gate_proj\.weight: \[176, 64\], expected \[100, 64\]/s],
    ['sliding window on', (c) => (c.use_sliding_window = true), [], /use_sliding_window' is true: sliding-window attention is not implemented/],
    ['rope scaling', (c) => (c.rope_scaling = { type: 'yarn', factor: 4 }), [], /rope_scaling.*not implemented/],
    ['a missing shard', () => {}, ['model-00002-of-00003.safetensors'], /model-00002-of-00003\.safetensors/],
  ];
  for (const [what, edit, remove, want] of cases) {
    const t = variant(what === 'a missing shard' ? 'qwen2-sharded-f32' : 'qwen2-gqa-bf16', edit, remove);
    try {
      const msg = await refusal(t.dir);
      assert.match(msg, want, `${what}: ${msg}`);
    } finally {
      t.cleanup();
    }
  }
});

test('bad requests: a prompt longer than the context, ids outside the vocabulary, text without a tokenizer, chat without a template', async () => {
  const t = variant('qwen2-gqa-bf16', (c) => (c.max_position_embeddings = 16));
  try {
    const rt = await LaviRuntime.create({ modelDir: t.dir, backend: 'cpu', requireTokenizer: false });
    try {
      await rejects(() => rt.generate(Array.from({ length: 12 }, (_, i) => i), { maxNewTokens: 8 }), /prompt too long: 12 tokens \+ room for 8 answer tokens exceeds the model's context of 16/);
      await rejects(() => rt.generate([1, 2, 512]), /token id 512 at position 2 is outside the vocabulary \[0, 512\)/);
      await rejects(() => rt.generate('hello'), /has no tokenizer\.json/);
      await rejects(() => rt.chat([{ role: 'user', content: 'hi' }]), /no chat template/);
      await rejects(() => rt.generate([1, 2], { image: join(HF, 'images', 'siglip-75x50.png') }), /text-only/);
    } finally {
      rt.dispose();
    }
  } finally {
    t.cleanup();
  }
  const cli = spawnSync(process.execPath, [CLI, 'generate', '--model', join(HF, 'qwen2-gqa-bf16'), '--ids', '1,x,3', '--json'], { encoding: 'utf8' });
  assert.is(cli.status, 2, 'a malformed --ids is a usage error');
  assert.match(cli.stderr, /--ids: entry 1 'x' is not a non-negative integer/);
  const siglip = spawnSync(process.execPath, [CLI, 'generate', '--model', join(HF, 'siglip-tiny'), '--ids', '1,2'], { encoding: 'utf8' });
  assert.is(siglip.status, 1);
  assert.match(siglip.stderr, /SiglipVisionModel computes image features and does not generate text/);
});

test('lavi info: family, parameters and backend bytes from the headers alone; bad folders and usage refused clearly', () => {
  const run = (...args: string[]) => spawnSync(process.execPath, [CLI, 'info', ...args], { encoding: 'utf8' });
  const ok = run('--model', join(HF, 'qwen2-gqa-bf16'), '--json');
  assert.is(ok.status, 0, ok.stderr);
  const i = JSON.parse(ok.stdout) as { family: string; parameters: number; storedDTypes: Record<string, number>; backendBytes: { packed: number; f32: number }; tokenizer: boolean; eosTokenIds: number[] };
  assert.is(i.family, 'qwen2');
  assert.equal(Object.keys(i.storedDTypes), ['BF16']);
  assert.ok(i.backendBytes.f32 > i.backendBytes.packed, 'widening bf16 matrices to f32 takes more bytes');
  assert.is(i.tokenizer, false);
  assert.equal(i.eosTokenIds, JSON.parse(readFileSync(join(HF, 'qwen2-gqa-bf16', 'generation_config.json'), 'utf8')).eos_token_id);
  const llava = run('--model', join(HF, 'llava-ov-tiny'), '--json');
  assert.is(JSON.parse(llava.stdout).family, 'llava-onevision');
  const t = variant('qwen2-gqa-bf16', (c) => (c.model_type = 'gpt2'));
  try {
    const bad = run('--model', t.dir);
    assert.is(bad.status, 1);
    assert.match(bad.stderr, /model_type "gpt2".*not supported; supported: Qwen2ForCausalLM/);
  } finally {
    t.cleanup();
  }
  const missing = run('--model', join(HF, 'no-such-folder'));
  assert.is(missing.status, 1);
  assert.match(missing.stderr, /no-such-folder\/config\.json: no such file/);
  assert.is(run('stray').status, 2);
  assert.is(run('--model').status, 2);
});

test('a checkpoint too big for the backend: refused before upload, naming the bytes needed and what would fit', async () => {
  const { dir, cleanup } = tempDir('lavi-hf-big-');
  const wasm = await createWasmBackend({ threads: 1, maxMemoryBytes: 16 * 2 ** 20, name: 'wasm-16mib' });
  try {
    const cfg = { ...JSON.parse(readFileSync(join(HF, 'qwen2-gqa-bf16', 'config.json'), 'utf8')), vocab_size: 60000, torch_dtype: 'float32' };
    writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
    await writeSafetensors(join(dir, 'model.safetensors'), randomSpecs(qwen2Specs(declareQwen2(parseQwen2Config(cfg, 'config.json'))), { seed: 1 }));
    const before = wasm.memoryStats().liveBytes;
    const msg = await refusal(dir, { backend: wasm });
    assert.match(msg, /the weights need 29\.\d+ MiB on backend 'wasm-16mib', which holds at most 16\.0+ MiB; stored as bf16 \(packed\) they would take 1\d\.\d+ MiB and fit/);
    assert.is(wasm.memoryStats().liveBytes, before, 'nothing was uploaded');
  } finally {
    cleanup();
    await wasm.destroy();
  }
});

test.after(async () => {
  await releaseAllBackends();
});

test.run();
