// Loading LaVi weights: safetensors checkpoints (f32, bf16, sharded) written to a temp dir, packed storage,
// the one-error-lists-everything validation, tolerated extras, and config errors that name the field.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CpuBackend } from '../backends/cpu/index.js';
import { writeSafetensors } from '../core/safetensors/writer.js';
import type { HostTensor } from '../core/safetensors/reader.js';
import { asConcat, parseConfig, tinyConfig } from '../models/lavi/config.js';
import { LaviModel } from '../models/lavi/model.js';
import { expectedWeights, randomWeights, saveCheckpoint } from '../models/lavi/weights.js';

const cpu = new CpuBackend();
let dir = '';
const PROMPT = [1, 5, 9, 33, 70];

test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'lavi-weights-'));
});
test.after(async () => {
  await rm(dir, { recursive: true, force: true });
});

function pixels(S: number) {
  return { data: Float32Array.from({ length: 3 * S * S }, (_, i) => Math.cos(i * 0.37)), shape: [1, 3, S, S] as [number, number, number, number] };
}

async function logitsOf(m: LaviModel, withImage = true): Promise<number[]> {
  m.prefill(PROMPT, withImage ? pixels(m.config.vision_config.image_size) : null, { allLogits: true });
  return Array.from((await m.logits!.read()) as Float32Array);
}

test('loads an f32 checkpoint (config.json + model.safetensors) and runs exactly like the in-memory weights', async () => {
  const cfg = tinyConfig();
  const host = randomWeights(cfg, { seed: 1 });
  const d = join(dir, 'f32');
  await saveCheckpoint(d, cfg, host);
  const loaded = await LaviModel.load(d, cpu);
  assert.equal(loaded.config, { ...cfg, torch_dtype: 'float32' });
  assert.is(loaded.weights.get('model.layers.0.self_attn.q_proj.weight').dtype, 'f32');
  const mem = LaviModel.fromWeights(cfg, host, cpu);
  assert.equal(await logitsOf(loaded), await logitsOf(mem));
  loaded.dispose();
  mem.dispose();
});

test('loads a bf16 checkpoint: Linear weights and embeddings stay packed, norms and biases are widened to f32', async () => {
  const cfg = tinyConfig();
  const host = randomWeights(cfg, { seed: 2, dtype: 'bf16' });
  const d = join(dir, 'bf16');
  await saveCheckpoint(d, cfg, host);
  assert.match(await readFile(join(d, 'config.json'), 'utf8'), /"torch_dtype": "bfloat16"/);
  const packed = await LaviModel.load(d, cpu);
  const w = packed.weights;
  assert.is(w.get('model.layers.1.mlp.down_proj.weight').dtype, 'bf16');
  assert.is(w.get('model.embed_tokens.weight').dtype, 'bf16');
  assert.is(w.get('lm_head.weight').dtype, 'bf16');
  assert.is(w.get('lavi.conditioners.0.input_layernorm.o_proj.weight').dtype, 'bf16');
  assert.is(w.get('vision_model.encoder.layers.0.mlp.fc1.weight').dtype, 'bf16');
  for (const n of ['model.norm.weight', 'model.layers.0.self_attn.q_proj.bias', 'vision_model.embeddings.patch_embedding.weight',
    'vision_model.embeddings.position_embedding.weight', 'lavi.conditioners.1.post_attention_layernorm.ln_v.bias']) {
    assert.is(w.get(n).dtype, 'f32', n);
  }
  const widened = await LaviModel.load(d, cpu, { keepPacked: false });
  assert.is(widened.weights.get('model.layers.1.mlp.down_proj.weight').dtype, 'f32');
  assert.ok(widened.weights.bytes() > packed.weights.bytes() * 1.8, 'packed storage is about half');
  // Same values either way: the kernels widen bf16 exactly.
  const a = await logitsOf(packed), b = await logitsOf(widened);
  assert.equal(a, b);
  // And the same as in-memory weights holding the same bf16 values.
  const mem = LaviModel.fromWeights(cfg, host, cpu);
  assert.equal(await logitsOf(mem), a);
  // bf16 rounding moves the logits away from the f32 model's, a little.
  const f32 = LaviModel.fromWeights(cfg, randomWeights(cfg, { seed: 2 }), cpu);
  const c = await logitsOf(f32);
  let num = 0, den = 0;
  c.forEach((x, i) => ((num += (x - a[i]!) ** 2), (den += x * x)));
  assert.ok(num / den > 0 && num / den < 1e-3, `bf16 vs f32 NMSE ${num / den}`);
  for (const m of [packed, widened, mem, f32]) m.dispose();
});

test('loads a sharded checkpoint (model.safetensors.index.json)', async () => {
  const cfg = tinyConfig({ text_config: { tie_word_embeddings: true } });
  const host = randomWeights(cfg, { seed: 3 });
  const d = join(dir, 'sharded');
  await saveCheckpoint(d, cfg, new Map()); // config.json only (and an empty model.safetensors)
  await rm(join(d, 'model.safetensors'));
  const names = [...host.keys()];
  const half = Math.floor(names.length / 2);
  const shards = [names.slice(0, half), names.slice(half)];
  const weightMap: Record<string, string> = {};
  for (const [i, part] of shards.entries()) {
    const file = `model-0000${i + 1}-of-00002.safetensors`;
    await writeSafetensors(join(d, file), part.map((n) => [n, host.get(n)!] as const));
    for (const n of part) weightMap[n] = file;
  }
  await writeFile(join(d, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
  const m = await LaviModel.load(d, cpu);
  const mem = LaviModel.fromWeights(cfg, host, cpu);
  assert.equal(await logitsOf(m), await logitsOf(mem));
  m.dispose();
  mem.dispose();
});

test('one error lists every missing, unexpected, mis-shaped and unreadable tensor', async () => {
  const cfg = tinyConfig();
  const host = randomWeights(cfg, { seed: 4 });
  host.delete('model.layers.2.mlp.up_proj.weight');
  host.delete('lavi.conditioners.1.input_layernorm.q_proj.bias');
  host.set('model.layers.7.mlp.up_proj.weight', { dtype: 'f32', shape: [64, 32], data: new Float32Array(64 * 32) });
  host.set('extra.thing', { dtype: 'f32', shape: [3], data: new Float32Array(3) });
  host.set('model.norm.weight', { dtype: 'f32', shape: [31], data: new Float32Array(31) });
  host.set('lm_head.weight', { dtype: 'f32', shape: [32, 97], data: new Float32Array(97 * 32) });
  host.set('model.layers.0.input_layernorm.weight', { dtype: 'i32', shape: [32], data: new Int32Array(32) });
  const d = join(dir, 'broken');
  await saveCheckpoint(d, cfg, host);
  let msg = '';
  try {
    await LaviModel.load(d, cpu);
  } catch (e) {
    msg = (e as Error).message;
    assert.is((e as { code?: string }).code, 'format');
  }
  assert.ok(msg, 'load must fail');
  assert.match(msg, /7 problems/);
  assert.match(msg, /missing \(2\):/);
  assert.match(msg, /model\.layers\.2\.mlp\.up_proj\.weight \[64, 32\]/);
  assert.match(msg, /lavi\.conditioners\.1\.input_layernorm\.q_proj\.bias \[16\]/);
  assert.match(msg, /unexpected \(2\):/);
  assert.match(msg, /model\.layers\.7\.mlp\.up_proj\.weight/);
  assert.match(msg, /extra\.thing \[3\]/);
  assert.match(msg, /wrong shape \(2\):/);
  assert.match(msg, /model\.norm\.weight: \[31\], expected \[32\]/);
  assert.match(msg, /lm_head\.weight: \[32, 97\], expected \[97, 32\]/);
  assert.match(msg, /unsupported dtype \(1\):\n\s+model\.layers\.0\.input_layernorm\.weight: I32/);
  assert.match(msg, new RegExp(d.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')), 'names the checkpoint');
  // In-memory weights get the same validation.
  assert.throws(() => LaviModel.fromWeights(cfg, host, cpu), /7 problems/);
});

test('a LaVi checkpoint under a concat config (and the reverse) gets a hint', async () => {
  const cfg = tinyConfig();
  const host = randomWeights(cfg, { seed: 5 });
  assert.throws(() => LaviModel.fromWeights(asConcat(cfg), host, cpu), /unexpected \(\d+\):[\s\S]*set lavi_config\.mode = "lavi"/);
  const concatHost = randomWeights(asConcat(cfg), { seed: 5 });
  assert.throws(() => LaviModel.fromWeights(cfg, concatHost, cpu), /missing[\s\S]*set lavi_config\.mode = "concat"/);
});

test('tolerated extras: SigLIP layers beyond the ones run, unused post_layernorm and head, a stored tied lm_head', async () => {
  const cfg = tinyConfig({ text_config: { tie_word_embeddings: true } });
  const host = randomWeights(cfg, { seed: 6 });
  const extra: [string, HostTensor][] = [
    ['vision_model.encoder.layers.2.mlp.fc1.weight', { dtype: 'f32', shape: [48, 24], data: new Float32Array(48 * 24) }],
    ['vision_model.post_layernorm.weight', { dtype: 'f32', shape: [24], data: new Float32Array(24) }],
    ['vision_model.head.probe', { dtype: 'f32', shape: [1, 1, 24], data: new Float32Array(24) }],
    ['lm_head.weight', { dtype: 'f32', shape: [97, 32], data: new Float32Array(97 * 32) }],
  ];
  for (const [n, t] of extra) host.set(n, t);
  const d = join(dir, 'extras');
  await saveCheckpoint(d, cfg, host);
  const m = await LaviModel.load(d, cpu);
  assert.equal([...m.weights.ignored].sort(), extra.map(([n]) => n).sort());
  assert.not.ok(m.weights.has('lm_head.weight'), 'a tied head reuses the embedding, the stored copy is skipped');
  m.dispose();
  // A user-supplied ignore pattern.
  host.set('my.adapter.weight', { dtype: 'f32', shape: [2], data: new Float32Array(2) });
  assert.throws(() => LaviModel.fromWeights(cfg, host, cpu), /unexpected \(1\):\n\s+my\.adapter\.weight/);
  LaviModel.fromWeights(cfg, host, cpu, { ignore: [/^my\./] }).dispose();
});

test('expectedWeights covers exactly the contract (counts per part for the tiny config)', () => {
  const cfg = tinyConfig();
  const names = expectedWeights(cfg).filter((s) => !s.optional).map((s) => s.name);
  assert.is(new Set(names).size, names.length, 'no duplicates');
  // vision: 3 embedding tensors + 16 per layer; projector 4; conditioners 3 layers × 2 norms × 10; decoder 1 + 12 per layer + 2.
  assert.is(names.filter((n) => n.startsWith('vision_model.')).length, 3 + 16 * 2);
  assert.is(names.filter((n) => n.startsWith('lavi.projector.')).length, 4);
  assert.is(names.filter((n) => n.startsWith('lavi.conditioners.')).length, 3 * 2 * 10);
  assert.is(names.filter((n) => n.startsWith('model.') || n === 'lm_head.weight').length, 1 + 12 * 3 + 2);
  const c = tinyConfig({ lavi_config: { every_k: 2, viln_norms: ['post_attention_layernorm'], conditioner_ln_v: false, conditioner_bias: false, modulate_final_norm: true } });
  const cn = expectedWeights(c).map((s) => s.name).filter((n) => n.startsWith('lavi.conditioners.'));
  assert.equal(
    [...new Set(cn.map((n) => n.split('.').slice(2, 4).join('.')))],
    ['0.post_attention_layernorm', '2.post_attention_layernorm', 'final.norm'],
  );
  assert.is(cn.length, 3 * 5, 'q/k/v/o weights and the o_proj bias');
});

test('conditioner_per_layer: one conditioner per layer named without the norm, its o_proj the layer\'s norms\' blocks; the final norm keeps its own', () => {
  const cfg = tinyConfig({ lavi_config: { conditioner_per_layer: true, modulate_final_norm: true, shared_visual_kv: true } });
  const d = cfg.text_config.hidden_size, r = cfg.lavi_config.conditioner_width;
  const shapes = new Map(expectedWeights(cfg).map((s) => [s.name, s.shape]));
  const cn = [...shapes.keys()].filter((n) => n.startsWith('lavi.conditioners.'));
  assert.equal([...new Set(cn.map((n) => n.replace(/\.(q|o)_proj\.(weight|bias)$/, '')))], ['lavi.conditioners.0', 'lavi.conditioners.1', 'lavi.conditioners.2', 'lavi.conditioners.final.norm']);
  assert.equal(shapes.get('lavi.conditioners.1.o_proj.weight'), [2 * 2 * d, r], 'Δγ, Δβ of input_layernorm, then of post_attention_layernorm');
  assert.equal(shapes.get('lavi.conditioners.final.norm.o_proj.weight'), [2 * d, r]);
  assert.ok(shapes.has('lavi.shared_kv.k_proj.weight'));
  // one modulated norm per layer: the per-layer conditioner's o_proj is one block, named by layer
  const one = tinyConfig({ lavi_config: { conditioner_per_layer: true, viln_norms: ['post_attention_layernorm'] } });
  assert.equal(new Map(expectedWeights(one).map((s) => [s.name, s.shape])).get('lavi.conditioners.0.o_proj.weight'), [2 * d, r]);
  assert.throws(() => parseConfig({ ...cfg, lavi_config: { ...cfg.lavi_config, conditioner_per_layer: 'yes' } } as never, 'p.json'), /p\.json lavi_config: field 'conditioner_per_layer' must be true or false, got "yes"/);
});

test('a per-norm checkpoint under a conditioner_per_layer config (and the reverse) is refused, naming the tensors', async () => {
  const perNorm = tinyConfig({ lavi_config: { shared_visual_kv: true } });
  const perLayer = tinyConfig({ lavi_config: { shared_visual_kv: true, conditioner_per_layer: true } });
  for (const [saved, asked, missing, unexpected] of [
    [perNorm, perLayer, 'lavi.conditioners.0.q_proj.weight', 'lavi.conditioners.0.input_layernorm.q_proj.weight'],
    [perLayer, perNorm, 'lavi.conditioners.0.input_layernorm.q_proj.weight', 'lavi.conditioners.0.q_proj.weight'],
  ] as const) {
    const d = join(dir, `perlayer-${asked.lavi_config.conditioner_per_layer}`);
    await saveCheckpoint(d, saved, randomWeights(saved, { seed: 11 }));
    const raw = JSON.parse(await readFile(join(d, 'config.json'), 'utf8'));
    raw.lavi_config.conditioner_per_layer = asked.lavi_config.conditioner_per_layer;
    await writeFile(join(d, 'config.json'), JSON.stringify(raw));
    let msg = '';
    await LaviModel.load(d, cpu).catch((e: Error) => (msg = e.message));
    assert.ok(msg.includes(missing) && msg.includes(unexpected), msg);
  }
});

test('a bad config.json is rejected naming the file and the field', async () => {
  const cfg = tinyConfig();
  const d = join(dir, 'badcfg');
  await saveCheckpoint(d, cfg, randomWeights(cfg, { seed: 7 }));
  const raw = JSON.parse(await readFile(join(d, 'config.json'), 'utf8'));
  raw.text_config.num_key_value_heads = 3;
  await writeFile(join(d, 'config.json'), JSON.stringify(raw));
  await assert.not.ok(false);
  let msg = '';
  await LaviModel.load(d, cpu).catch((e: Error) => (msg = e.message));
  assert.match(msg, /config\.json text_config: num_attention_heads 4 is not a multiple of num_key_value_heads 3/);
  raw.text_config.num_key_value_heads = 2;
  raw.lavi_config.modulate = 'everything';
  await writeFile(join(d, 'config.json'), JSON.stringify(raw));
  await LaviModel.load(d, cpu).catch((e: Error) => (msg = e.message));
  assert.match(msg, /lavi_config: field 'modulate' must be one of both, scale, shift, got "everything"/);
  await writeFile(join(d, 'config.json'), '{ not json');
  await LaviModel.load(d, cpu).catch((e: Error) => (msg = e.message));
  assert.match(msg, /config\.json: not valid JSON/);
  await rm(join(d, 'config.json'));
  await LaviModel.load(d, cpu).catch((e: Error) => (msg = e.message));
  assert.match(msg, /config\.json: no such file/);
  assert.throws(() => parseConfig({ ...cfg, vision_config: { ...cfg.vision_config, patch_size: 0 } }, 'x.json'), /x\.json vision_config: field 'patch_size' must be an integer ≥ 1, got 0/);
  // the convolutional stem (ours): a list of positive channel counts, each halving the side, dividing patch_size
  const stem = (v: unknown) => () => parseConfig({ ...cfg, vision_config: { ...cfg.vision_config, stem_channels: v } } as never, 'x.json');
  assert.throws(stem([4, 0]), /x\.json vision_config: stem_channels must be a list of at most 8 positive integers, got \[4,0\]/);
  assert.throws(stem('wide'), /stem_channels must be a list .* got "wide"/);
  assert.throws(stem([4]), /x\.json vision_config: patch_size 7 is not divisible by 2\^1 \(stem_channels \[4\]\)/);
});

test('a vision tower with a convolutional stem declares stem.{i} and a patch embedding over its channels', () => {
  const base = tinyConfig();
  const cfg = parseConfig({ ...base, vision_config: { ...base.vision_config, image_size: 32, patch_size: 8, stem_channels: [5, 6] } }, 'stem.json');
  const shapes = new Map(expectedWeights(cfg).map((s) => [s.name, s.shape]));
  assert.equal(shapes.get('vision_model.embeddings.stem.0.weight'), [5, 3, 2, 2]);
  assert.equal(shapes.get('vision_model.embeddings.stem.1.bias'), [6]);
  assert.equal(shapes.get('vision_model.embeddings.patch_embedding.weight'), [24, 6, 2, 2]);
  assert.equal(shapes.get('vision_model.embeddings.position_embedding.weight'), [16, 24]);
  assert.not.ok(expectedWeights(base).some((s) => s.name.includes('.stem.')));
});

test.run();
