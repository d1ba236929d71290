// LLaVA-OneVision graph (models/llava-onevision/model.ts) against the independent PyTorch oracle:
// - packOnBackend (layout ops + resizeGrid) equals the host pack (itself checked against the oracle's pack to
//   1e-12 in llava-onevision-processor.test.ts) at the real 0.5B geometry, on cpu and wasm;
// - the tiny checkpoints of test/fixtures/hf (llava-ov-tiny: llava-hf names, f16; llava-ov-tiny-new: transformers
//   names, bf16): image features from our processor + tower + projector + pack against the oracle's packed
//   features, logits of the expanded prompt's tail, greedy tokens exact;
// - bad prompts: image tokens without an image, the wrong number of image tokens.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import '../backends/index.js';
import type { Backend } from '../core/backend.js';
import { getBackend, releaseAllBackends } from '../core/registry.js';
import { SafetensorsFile } from '../core/safetensors/index.js';
import { tensor } from '../ops/index.js';
import { decodeImageFile } from '../models/image/decode.js';
import { randomSpecs, uploadSpecs } from '../models/loading/weights.js';
import { LLAVA_HF_NAMES, LlavaOnevisionModel, TRANSFORMERS_NAMES, declareLlavaOnevision, llavaOnevisionSpecs, namesFor, parseLlavaOnevisionConfig } from '../models/llava-onevision/model.js';
import { packImageFeatures, packOnBackend } from '../models/llava-onevision/pack.js';
import { parsePreprocessorConfig, tokenLayout, type LlavaOnevisionImageModelConfig } from '../models/llava-onevision/processor.js';

const root = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..');
const hf = join(root, 'test', 'fixtures', 'hf');

const PINPOINTS: [number, number][] = [];
for (let a = 384; a <= 2304; a += 384) for (let b = 384; b <= 2304; b += 384) PINPOINTS.push([a, b]);
const REAL: LlavaOnevisionImageModelConfig = { imageSize: 384, patchSize: 14, imageGridPinpoints: PINPOINTS, maxNumPatches: 9 };

async function backendOrNote(name: string): Promise<Backend | null> {
  try {
    return await getBackend(name);
  } catch (e) {
    if (process.env.CI === 'true' && (name === 'wasm' || name === 'webgpu')) throw e;
    console.log(`NOTE: ${name} backend unavailable (${(e as Error).message}); not checked`);
    return null;
  }
}

for (const name of ['cpu', 'wasm']) {
  test(`${name}: packOnBackend equals the host pack (real geometry, downscaled and not)`, async () => {
    const backend = await backendOrNote(name);
    if (!backend) return;
    const d = 5;
    for (const [h, w] of [[585, 1929], [1080, 1920], [617, 1234], [1, 10000], [384, 384]] as const) {
      const L = tokenLayout(h, w, REAL);
      const T = 1 + (L.gridTokens[0] / 27) * (L.gridTokens[1] / 27);
      const proj = new Float32Array(T * 729 * d);
      for (let i = 0; i < proj.length; i++) proj[i] = Math.sin(i * 0.37) + ((i * 7) % 11) / 11;
      const nl = Float32Array.from({ length: d }, (_, c) => 3 + c);
      const want = packImageFeatures(proj, T, d, [h, w], nl, REAL);
      const t = tensor(backend, proj, [T, 729, d]);
      const { features, layout } = packOnBackend(t, [h, w], REAL, nl);
      t.dispose();
      assert.equal(features.shape, [layout.numTokens, d]);
      const got = (await features.read()) as Float32Array;
      features.dispose();
      let worst = 0;
      for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want.data[i]!));
      assert.ok(worst <= 1e-5, `${name} ${h}×${w}: ${worst}`);
    }
  });
}

test('wasm: the real 0.5B geometry end to end (384 px tiles, 27×27 features, anyres_max_9; random narrow weights)', async () => {
  const backend = await backendOrNote('wasm');
  if (!backend) return;
  const cfg = parseLlavaOnevisionConfig({
    model_type: 'llava_onevision', image_token_index: 250, vision_aspect_ratio: 'anyres_max_9', vision_feature_layer: -1, vision_feature_select_strategy: 'full',
    text_config: { model_type: 'qwen2', hidden_size: 32, intermediate_size: 64, num_attention_heads: 2, num_key_value_heads: 1, num_hidden_layers: 1, vocab_size: 256, tie_word_embeddings: true },
    vision_config: { model_type: 'siglip_vision_model', hidden_size: 32, intermediate_size: 64, num_attention_heads: 2, num_hidden_layers: 2, image_size: 384, patch_size: 14 },
  });
  const pre = parsePreprocessorConfig({ size: { height: 384, width: 384 }, image_mean: [0.5, 0.5, 0.5], image_std: [0.5, 0.5, 0.5], resample: 3 });
  const table = declareLlavaOnevision(cfg, LLAVA_HF_NAMES);
  const specs = llavaOnevisionSpecs(table);
  const host = randomSpecs(specs, { seed: 7 });
  const nl = Float32Array.from(host.get('image_newline')!.data as Float32Array);
  const m = new LlavaOnevisionModel(cfg, pre, LLAVA_HF_NAMES, table, uploadSpecs({ specs, describe: 'real geometry' }, host, backend), backend, nl);
  try {
    // 1929×585 (w×h): 2×6 tiles, a 50×162 map, 50 // 1.1111111111111112 = 44 → 44×145 + 44 newlines + 729
    const W = 1929, H = 585;
    const data = new Uint8Array(W * H * 3);
    for (let i = 0; i < data.length; i++) data[i] = (i * 2654435761) >>> 24;
    const inputs = m.processImage({ width: W, height: H, data, channels: 3 });
    assert.equal(inputs.shape, [13, 3, 384, 384]);
    assert.is(inputs.numImageTokens, 7153);
    const proj = m.projectedFeatures(inputs);
    const ref = packImageFeatures((await proj.read()) as Float32Array, 13, 32, inputs.imageSize, nl, cfg.image);
    const { features, layout } = m.pack(proj, inputs.imageSize);
    proj.dispose();
    assert.equal(layout.final, [44, 145]);
    const got = (await features.read()) as Float32Array;
    features.dispose();
    let worst = 0;
    for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i]! - ref.data[i]!));
    assert.ok(worst <= 1e-5, `backend pack vs host pack: ${worst}`);
    const image = m.encodeImage(inputs);
    const ids = m.expandImageTokens([1, 2, 250, 3, 4], image.numTokens);
    assert.is(ids.length, 7157);
    m.prefill(ids, image, { consumeImage: true });
    assert.is(m.position, 7157);
    assert.ok((await m.readLogits()).every(Number.isFinite));
  } finally {
    m.dispose();
  }
});

test('config.json and checkpoint naming: unsupported or malformed fields are refused by name', () => {
  const file = join(hf, 'llava-ov-tiny', 'config.json');
  if (!existsSync(file)) {
    console.log('NOTE: test/fixtures/hf/llava-ov-tiny not present; skipped');
    return;
  }
  const base = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  const c = parseLlavaOnevisionConfig(base, 'c.json');
  assert.is(c.vision.num_hidden_layers, 3); // vision_feature_layer −1: every layer, no post_layernorm
  assert.is(c.vision.use_post_layernorm, false);
  assert.is(c.imageTokenId, 508);
  assert.is(parseLlavaOnevisionConfig({ ...base, vision_feature_layer: -2 }, 'c.json').vision.num_hidden_layers, 2);
  const text = base.text_config as Record<string, unknown>, vision = base.vision_config as Record<string, unknown>;
  for (const [patch, re] of [
    [{ model_type: 'llava_next' }, /c.json: model_type is "llava_next", not "llava_onevision"/],
    [{ text_config: { ...text, model_type: 'llama' } }, /text_config.model_type is "llama"; only a Qwen2 decoder/],
    [{ vision_config: { ...vision, model_type: 'clip_vision_model' } }, /vision_config.model_type is "clip_vision_model"; only a SigLIP tower/],
    [{ vision_feature_layer: [-2, -5] }, /field 'vision_feature_layer' is a list \[-2,-5\]/],
    [{ vision_feature_layer: 7 }, /vision_feature_layer 7 is outside the tower's hidden states/],
    [{ projector_hidden_act: 'relu' }, /field 'projector_hidden_act' is "relu"/],
    [{ multimodal_projector_bias: 'yes' }, /field 'multimodal_projector_bias' must be true or false/],
    [{ image_token_index: 100000 }, /field 'image_token_index' must be a token id in \[0, 512\), got 100000/],
    [{ vision_feature_select_strategy: 'default' }, /field 'vision_feature_select_strategy' is "default"/],
    [{ text_config: undefined }, /field 'text_config' must be an object/],
  ] as const) {
    const raw: Record<string, unknown> = { ...base, ...patch };
    for (const k of Object.keys(patch)) if ((patch as Record<string, unknown>)[k] === undefined) delete raw[k];
    assert.throws(() => parseLlavaOnevisionConfig(raw, 'c.json'), (e: Error) => e.message.startsWith('c.json') && re.test(e.message), JSON.stringify(patch));
  }
  assert.is(namesFor(['image_newline', 'vision_tower.vision_model.x'], 'ck'), LLAVA_HF_NAMES);
  assert.is(namesFor(['model.image_newline', 'lm_head.weight'], 'ck'), TRANSFORMERS_NAMES);
  assert.throws(() => namesFor(['model.embed_tokens.weight'], 'checkpoint x'), /checkpoint x: no 'image_newline' or 'model.image_newline' tensor/);
});

interface LlavaGolden {
  images: { name: string; num_image_tokens: number; image_token_start: number; expanded_length: number; logits_tail_start: number; generated_ids: number[] }[];
  prompt_ids_before_expansion: number[];
  eos_token_ids: number[];
  max_new_tokens: number;
}

function nmse(got: Float32Array, want: Float64Array): number {
  let num = 0, den = 0;
  for (let i = 0; i < want.length; i++) {
    const e = got[i]! - want[i]!;
    num += e * e;
    den += want[i]! * want[i]!;
  }
  return num / den;
}

async function readF64(f: SafetensorsFile, name: string): Promise<Float64Array> {
  const raw = await f.readRaw(name);
  return new Float64Array(raw.buffer, raw.byteOffset, raw.byteLength / 8);
}

async function readI64(f: SafetensorsFile, name: string): Promise<number[]> {
  const raw = await f.readRaw(name);
  return [...new BigInt64Array(raw.buffer, raw.byteOffset, raw.byteLength / 8)].map(Number);
}

for (const [bname, ck] of ['cpu', 'wasm', 'webgpu'].flatMap((b) => ['llava-ov-tiny', 'llava-ov-tiny-new'].map((c) => [b, c] as const))) {
  test(`${bname}: ${ck} — features, logits and greedy tokens against the oracle`, async () => {
    const dir = join(hf, ck);
    const goldJson = join(hf, 'goldens', `${ck}.json`);
    if (!existsSync(join(dir, 'config.json')) || !existsSync(goldJson)) {
      console.log(`NOTE: test/fixtures/hf/${ck} not present yet; skipped`);
      return;
    }
    const backend = await backendOrNote(bname);
    if (!backend) return;
    // cpu accumulates in float64: NMSE ~1e-14 against the float64 oracle; device backends within conformance bounds
    const limit = bname === 'cpu' ? 1e-10 : 1e-6;
    const meta = JSON.parse(readFileSync(goldJson, 'utf8')) as LlavaGolden;
    const procMeta = JSON.parse(readFileSync(join(hf, 'goldens', 'llava-ov-processor.json'), 'utf8')) as { images: { name: string; image: string }[] };
    const gold = await SafetensorsFile.open(join(hf, 'goldens', `${ck}.safetensors`));
    const model = await LlavaOnevisionModel.load(dir, backend);
    try {
      for (const g of meta.images) {
        const file = procMeta.images.find((i) => i.name === g.name)!.image;
        const inputs = model.processImage(await decodeImageFile(join(hf, file)));
        assert.is(inputs.numImageTokens, g.num_image_tokens, `${g.name} tokens`);
        const image = model.encodeImage(inputs);
        const feats = (await image.features.read()) as Float32Array;
        const e = nmse(feats, await readF64(gold, `${g.name}.image_features`));
        assert.ok(e <= limit, `${bname} ${ck} ${g.name}: image features NMSE ${e.toExponential(2)}`);
        const ids = model.expandImageTokens(meta.prompt_ids_before_expansion, image.numTokens);
        assert.equal(ids, await readI64(gold, `${g.name}.input_ids`), `${g.name} expanded ids`);
        model.prefill(ids, image, { allLogits: true, consumeImage: true });
        assert.ok(image.isDisposed);
        const all = (await model.logits!.read()) as Float32Array;
        const V = model.vocabSize;
        const tail = all.subarray(g.logits_tail_start * V);
        const el = nmse(tail, await readF64(gold, `${g.name}.logits_tail`));
        assert.ok(el <= limit, `${bname} ${ck} ${g.name}: logits NMSE ${el.toExponential(2)}`);
        // greedy continuation
        const gen: number[] = [];
        let last = all.subarray(all.length - V);
        for (let s = 0; s < meta.max_new_tokens; s++) {
          let best = 0;
          for (let i = 1; i < V; i++) if (last[i]! > last[best]!) best = i;
          gen.push(best);
          if (meta.eos_token_ids.includes(best)) break;
          model.decodeStep(best);
          last = await model.readLogits();
        }
        assert.equal(gen, g.generated_ids, `${bname} ${ck} ${g.name}: greedy tokens`);
      }
      // bad prompts
      const tok = model.imageTokenId;
      const inputs = model.processImage({ width: 20, height: 14, data: new Uint8Array(20 * 14 * 3).fill(9), channels: 3 });
      const image = model.encodeImage(inputs);
      assert.throws(() => model.prefill([1, tok, 2], image), /the image has \d+ features but the prompt holds 1 image tokens.*expandImageTokens/);
      // no image: the image token is an ordinary token (Hugging Face without pixel_values)
      model.prefill([1, tok, 2], null);
      assert.is(model.position, 3);
      assert.throws(() => model.expandImageTokens([tok, 1, tok], image.numTokens), /needs one image token .* found 2/);
      image.dispose();
      assert.throws(() => model.prefill(model.expandImageTokens([1, tok], inputs.numImageTokens!), image), /disposed/);
    } finally {
      model.dispose();
      await gold.close();
    }
  });
}

test.after(async () => {
  await releaseAllBackends();
});

test.run();
