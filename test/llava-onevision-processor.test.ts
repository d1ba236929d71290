// The LLaVA-OneVision image processor and feature packing (models/llava-onevision/) against the independent
// PyTorch/PIL oracle (test/hf/hf_torch.py):
// - processor outputs for every test image of the oracle's goldens (test/fixtures/hf/goldens/llava-ov-processor.*):
//   8-bit tile pixels exact, normalised pixels to 1e-6, image sizes, best resolution, image token count;
// - the real 0.5B config's token counts (goldens/llava-ov-real-token-counts.json);
// - pack_image_features at the real geometry (27×27 features per tile, anyres_max_9 downscales, Python floor
//   division) against the oracle's pack (test/fixtures/llava-onevision/pack-real.safetensors), to 1e-12;
// - hostile input: zero-size images, 1×10000 strips, absurd pinpoints, malformed configs: clear errors, bounded.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ShapeError, UnsupportedError, ValueError } from '../core/errors.js';
import { SafetensorsFile } from '../core/safetensors/index.js';
import { decodeImageFile } from '../models/image/decode.js';
import { packImageFeatures } from '../models/llava-onevision/pack.js';
import {
  loadPreprocessorConfig,
  parseImageModelConfig,
  parsePreprocessorConfig,
  processImage,
  tokenLayout,
  type LlavaOnevisionImageModelConfig,
} from '../models/llava-onevision/processor.js';

const root = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..');
const hfFixtures = join(root, 'test', 'fixtures', 'hf');
const ownFixtures = join(root, 'test', 'fixtures', 'llava-onevision');

const PINPOINTS: [number, number][] = [];
for (let a = 384; a <= 2304; a += 384) for (let b = 384; b <= 2304; b += 384) PINPOINTS.push([a, b]);
const REAL: LlavaOnevisionImageModelConfig = { imageSize: 384, patchSize: 14, imageGridPinpoints: PINPOINTS, maxNumPatches: 9 };
const REAL_PRE = {
  crop_size: { height: 384, width: 384 }, do_convert_rgb: true, do_normalize: true, do_pad: true, do_rescale: true, do_resize: true,
  image_grid_pinpoints: PINPOINTS, image_mean: [0.5, 0.5, 0.5], image_processor_type: 'LlavaOnevisionImageProcessor',
  image_std: [0.5, 0.5, 0.5], processor_class: 'LlavaOnevisionProcessor', resample: 3, rescale_factor: 0.00392156862745098,
  size: { height: 384, width: 384 },
};

async function rejects(p: Promise<unknown>, re: RegExp): Promise<void> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof ValueError && re.test((e as Error).message), (e as Error).message);
    return;
  }
  assert.unreachable(`expected a rejection matching ${re}`);
}

async function readF64(f: SafetensorsFile, name: string): Promise<Float64Array> {
  const e = f.entry(name);
  assert.is(e.dtype, 'F64', `${name} dtype`);
  const raw = await f.readRaw(name);
  return new Float64Array(raw.buffer, raw.byteOffset, raw.byteLength / 8);
}

async function readI64(f: SafetensorsFile, name: string): Promise<number[]> {
  const e = f.entry(name);
  assert.is(e.dtype, 'I64', `${name} dtype`);
  const raw = await f.readRaw(name);
  return [...new BigInt64Array(raw.buffer, raw.byteOffset, raw.byteLength / 8)].map(Number);
}

// ---------------------------------------------------------------------------------------------------------------
// the oracle's processor goldens
// ---------------------------------------------------------------------------------------------------------------

interface GoldenImage {
  name: string;
  image: string;
  width: number;
  height: number;
  best_resolution: [number, number];
  resized_size: [number, number];
  padding: [[number, number], [number, number]];
  num_tiles_plus_base: number;
  grid: [number, number];
  unpadded_grid: [number, number];
  final_grid: [number, number];
  downscaled: boolean;
  num_image_tokens: number;
}

const procJson = join(hfFixtures, 'goldens', 'llava-ov-processor.json');

test('processor: every oracle image (pixels exact in 8 bits, 1e-6 normalised, sizes, tokens)', async () => {
  if (!existsSync(procJson) || !existsSync(join(hfFixtures, 'llava-ov-tiny', 'config.json'))) {
    console.log('NOTE: test/fixtures/hf/goldens/llava-ov-processor.json not present yet; oracle comparison skipped');
    return;
  }
  const meta = JSON.parse(readFileSync(procJson, 'utf8')) as { images: GoldenImage[] };
  const tiny = join(hfFixtures, 'llava-ov-tiny');
  const pre = await loadPreprocessorConfig(join(tiny, 'preprocessor_config.json'));
  const model = parseImageModelConfig(JSON.parse(readFileSync(join(tiny, 'config.json'), 'utf8')), join(tiny, 'config.json'));
  const f = await SafetensorsFile.open(join(hfFixtures, 'goldens', 'llava-ov-processor.safetensors'));
  const ratios = new Set<string>();
  try {
    assert.ok(meta.images.length >= 6, `only ${meta.images.length} images`);
    for (const g of meta.images) {
      const img = await decodeImageFile(join(hfFixtures, g.image));
      assert.is(img.width, g.width);
      assert.is(img.height, g.height);
      const r = processImage(img, pre, model);
      const where = `${g.name}`;
      assert.equal(r.imageSize, await readI64(f, `${g.name}.image_size`), `${where} image_size`);
      assert.equal(r.bestResolution, await readI64(f, `${g.name}.best_resolution`), `${where} best_resolution`);
      assert.equal(r.resizedSize, g.resized_size, `${where} resized size`);
      assert.equal([[r.padding.top, r.padding.bottom], [r.padding.left, r.padding.right]], g.padding, `${where} padding`);
      assert.equal(r.grid, g.grid, `${where} grid`);
      assert.is(r.numImageTokens, (await readI64(f, `${g.name}.num_image_tokens`))[0], `${where} tokens`);
      assert.is(r.numImageTokens, g.num_image_tokens);
      assert.equal(r.layout!.unpadded, g.unpadded_grid, `${where} unpadded grid`);
      assert.equal(r.layout!.final, g.final_grid, `${where} final grid`);
      assert.is(r.layout!.downscaled, g.downscaled);
      const want = await readF64(f, `${g.name}.pixel_values`);
      assert.equal(f.entry(`${g.name}.pixel_values`).shape, r.shape, `${where} pixel_values shape`);
      assert.is(r.shape[0], g.num_tiles_plus_base);
      // 8-bit values before normalisation: exact (the oracle's values are (v/255 − mean) / std in float64)
      let worst = 0;
      const S = r.shape[2], plane = S * S;
      for (let i = 0; i < want.length; i++) {
        const c = Math.floor(i / plane) % 3;
        const v8 = Math.round((want[i]! * pre.imageStd[c]! + pre.imageMean[c]!) / pre.rescaleFactor);
        if (r.pixels8[i] !== v8) {
          const t = Math.floor(i / (3 * plane)), p = i % plane;
          assert.unreachable(`${where}: tile ${t} channel ${c} pixel (${p % S}, ${Math.floor(p / S)}): got ${r.pixels8[i]}, oracle ${v8}`);
        }
        worst = Math.max(worst, Math.abs(r.pixelValues[i]! - want[i]!));
      }
      assert.ok(worst <= 1e-6, `${where}: normalised pixels differ by ${worst}`);
      ratios.add((g.width / g.height).toFixed(3));
    }
    assert.ok(ratios.size >= 6, `only ${ratios.size} aspect ratios`);
  } finally {
    await f.close();
  }
});

test('pack: the tiny checkpoint\'s projected features packed as the oracle packs them, to 1e-12', async () => {
  const f = await SafetensorsFile.open(join(ownFixtures, 'pack-tiny.safetensors'));
  try {
    const model = parseImageModelConfig(JSON.parse(readFileSync(join(ownFixtures, 'pack-tiny-config.json'), 'utf8')));
    const names = f.names().filter((n) => n.endsWith('.projected'));
    assert.ok(names.length >= 6, `only ${names.length} images`);
    let downscaled = 0;
    for (const name of names) {
      const img = name.slice(0, -'.projected'.length);
      const [T, , d] = f.entry(name).shape as [number, number, number];
      const size = await readI64(f, `${img}.image_size`);
      const proj = (await f.read(`${img}.projected`)).data as Float32Array;
      const newline = (await f.read(`${img}.image_newline`)).data as Float32Array;
      const got = packImageFeatures(Float64Array.from(proj), T, d, [size[0]!, size[1]!], Float64Array.from(newline), model);
      const want = await readF64(f, `${img}.packed`);
      assert.equal(f.entry(`${img}.packed`).shape, got.shape, `${img} shape`);
      let worst = 0;
      for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got.data[i]! - want[i]!));
      assert.ok(worst <= 1e-12, `${img}: packed features differ by ${worst}`);
      // the float32 path (what the model's host users get) agrees within float32 rounding
      const got32 = packImageFeatures(proj, T, d, [size[0]!, size[1]!], newline, model);
      for (let i = 0; i < want.length; i++) assert.ok(Math.abs(got32.data[i]! - want[i]!) <= 1e-6 * Math.max(1, Math.abs(want[i]!)), `${img} f32 at ${i}`);
      if (got.layout.downscaled) downscaled++;
    }
    void downscaled;
  } finally {
    await f.close();
  }
});

test('token counts: the real 0.5B config (oracle goldens/llava-ov-real-token-counts.json)', () => {
  const file = join(hfFixtures, 'goldens', 'llava-ov-real-token-counts.json');
  if (!existsSync(file)) {
    console.log('NOTE: test/fixtures/hf/goldens/llava-ov-real-token-counts.json not present yet; skipped');
    return;
  }
  const j = JSON.parse(readFileSync(file, 'utf8')) as {
    sizes: { width: number; height: number; best_resolution: number[]; grid: number[]; unpadded_grid: number[]; final_grid: number[]; downscaled: boolean; num_image_tokens: number }[];
  };
  assert.ok(j.sizes.length >= 10);
  for (const s of j.sizes) {
    const L = tokenLayout(s.height, s.width, REAL);
    const w = `${s.width}×${s.height}`;
    assert.equal([L.gridTokens[0] / 27, L.gridTokens[1] / 27], s.grid, `${w} grid`);
    assert.equal(L.unpadded, s.unpadded_grid, `${w} unpadded`);
    assert.equal(L.final, s.final_grid, `${w} final`);
    assert.is(L.downscaled, s.downscaled, `${w} downscaled`);
    assert.is(L.numTokens, s.num_image_tokens, `${w} tokens`);
  }
});

// ---------------------------------------------------------------------------------------------------------------
// pack at the real geometry
// ---------------------------------------------------------------------------------------------------------------

test('pack: real geometry (27×27 per tile, anyres_max_9) against the oracle\'s pack, to 1e-12', async () => {
  const f = await SafetensorsFile.open(join(ownFixtures, 'pack-real.safetensors'));
  try {
    const D = 2;
    const names = f.names().filter((n) => !n.endsWith('.layout'));
    assert.ok(names.length >= 10);
    for (const name of names) {
      const [h, w] = name.split('x').map(Number) as [number, number];
      const [bh, bw, uh, uw, fh, fw, N] = await readI64(f, `${name}.layout`);
      const T = 1 + (bh! / 384) * (bw! / 384);
      const proj = new Float64Array(T * 729 * D);
      for (let t = 0; t < T; t++) for (let i = 0; i < 729; i++) for (let c = 0; c < D; c++) {
        proj[(t * 729 + i) * D + c] = ((t * 7919 + i * 104729 + c * 31337) % 1009) / 1009 - 0.5;
      }
      const newline = new Float64Array(D).map((_, c) => 10 + c);
      const got = packImageFeatures(proj, T, D, [h, w], newline, REAL);
      assert.equal(got.layout.unpadded, [uh, uw], `${name} unpadded`);
      assert.equal(got.layout.final, [fh, fw], `${name} final`);
      assert.equal(got.shape, [N, D]);
      const want = await readF64(f, name);
      assert.is(got.data.length, want.length);
      let worst = 0;
      for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got.data[i]! - want[i]!));
      assert.ok(worst <= 1e-12, `${name}: packed features differ by ${worst}`);
      // float32 features pack to the same values within float32 rounding
      const got32 = packImageFeatures(Float32Array.from(proj), T, D, [h, w], Float32Array.from(newline), REAL);
      assert.instance(got32.data, Float32Array);
      for (let i = 0; i < want.length; i += 97) assert.ok(Math.abs(got32.data[i]! - want[i]!) <= 1e-6, `${name} f32 at ${i}`);
    }
  } finally {
    await f.close();
  }
});

test('pack: refuses features that do not fit the image', () => {
  const d = 3;
  const T = 1 + 2 * 3; // 500×1000 → 768×1152: 2×3 tiles
  const ok = new Float32Array(T * 729 * d);
  const nl = new Float32Array(d);
  assert.is(packImageFeatures(ok, T, d, [500, 1000], nl, REAL).shape[0], 4009);
  assert.throws(() => packImageFeatures(ok, T - 1, d, [500, 1000], nl, REAL), (e: Error) => e instanceof ShapeError && /1 \+ 2×3 = 7 tiles, got features for 6/.test(e.message));
  assert.throws(() => packImageFeatures(ok.subarray(1), T, d, [500, 1000], nl, REAL), /must be \[7, 729, 3\]/);
  assert.throws(() => packImageFeatures(ok, T, d, [500, 1000], new Float32Array(2), REAL), /image_newline must have 3 values/);
  assert.throws(() => packImageFeatures(ok, T, d, [0, 1000], nl, REAL), /positive integers/);
});

// ---------------------------------------------------------------------------------------------------------------
// whole processor on synthetic images; hostile input
// ---------------------------------------------------------------------------------------------------------------

function synth(W: number, H: number): { width: number; height: number; data: Uint8Array; channels: 3 } {
  const data = new Uint8Array(W * H * 3);
  for (let i = 0; i < data.length; i++) data[i] = (i * 2654435761) >>> 24;
  return { width: W, height: H, data, channels: 3 };
}

test('processor: layout invariants on a real-config 500×300 image (base first, zero padding = −1, tiles row-major)', () => {
  const pre = parsePreprocessorConfig(REAL_PRE);
  const r = processImage(synth(500, 300), pre, REAL);
  // 300×500 (h×w): best 384×768 keeps... the least-waste pinpoint with all pixels
  assert.equal(r.imageSize, [300, 500]);
  assert.equal(r.bestResolution, [384, 768]);
  assert.equal(r.resizedSize, [384, 640]);
  assert.equal(r.padding, { top: 0, bottom: 0, left: 64, right: 64 });
  assert.equal(r.shape, [3, 3, 384, 384]);
  assert.is(r.numImageTokens, tokenLayout(300, 500, REAL).numTokens);
  const plane = 384 * 384;
  // tile 1 (left half): its first 64 columns are padding → 0 → (0/255 − 0.5)/0.5 = −1
  for (const y of [0, 100, 383]) for (const x of [0, 63]) for (let c = 0; c < 3; c++) {
    const i = (1 * 3 + c) * plane + y * 384 + x;
    assert.is(r.pixels8[i], 0);
    assert.is(r.pixelValues[i], -1);
  }
  // every value is its 8-bit value normalised in float32
  for (let i = 0; i < r.pixelValues.length; i += 1013) assert.is(r.pixelValues[i], Math.fround(Math.fround(Math.fround(r.pixels8[i]! / 255) - 0.5) / 0.5));
});

test('processor: 1×10000 and 10000×1 strips run in bounded time', () => {
  const pre = parsePreprocessorConfig(REAL_PRE);
  const t0 = Date.now();
  const wide = processImage(synth(10000, 1), pre, REAL);
  assert.equal(wide.bestResolution, [384, 384]);
  assert.equal(wide.resizedSize, [1, 384]);
  assert.equal(wide.padding, { top: 191, bottom: 192, left: 0, right: 0 });
  assert.is(wide.numImageTokens, 757);
  const tall = processImage(synth(1, 10000), pre, REAL);
  assert.equal(tall.resizedSize, [384, 1]);
  assert.is(tall.numImageTokens, 783);
  assert.ok(Date.now() - t0 < 5000, `${Date.now() - t0} ms`);
});

test('processor: RGBA drops alpha (convert("RGB")), Uint8ClampedArray accepted, bad images refused', () => {
  const pre = parsePreprocessorConfig({ ...REAL_PRE, image_grid_pinpoints: [[384, 384]], crop_size: undefined });
  const rgba = new Uint8ClampedArray(2 * 2 * 4).fill(200);
  rgba[3] = 0;
  const a = processImage({ width: 2, height: 2, data: rgba }, pre);
  const b = processImage({ width: 2, height: 2, data: new Uint8Array(12).fill(200), channels: 3 }, pre);
  assert.equal([...a.pixels8.subarray(0, 1000)], [...b.pixels8.subarray(0, 1000)]);
  assert.is(a.numImageTokens, null);
  for (const [img, re] of [
    [{ width: 0, height: 5, data: new Uint8Array(0) }, /positive integers, got 0×5/],
    [{ width: 5, height: 0, data: new Uint8Array(0) }, /positive integers, got 5×0/],
    [{ width: 2.5, height: 2, data: new Uint8Array(15) }, /positive integers/],
    [{ width: 2, height: 2, data: new Uint8Array(11) }, /needs 12 bytes, got 11/],
    [{ width: 2, height: 2, data: new Uint8Array(8), channels: 2 }, /channels must be 3 or 4/],
  ] as const) {
    assert.throws(() => processImage(img as never, pre), (e: Error) => e instanceof ValueError && re.test(e.message));
  }
});

test('preprocessor_config.json: every malformed field names the file, the field and the value', async () => {
  const where = 'x/preprocessor_config.json';
  const bad: [Record<string, unknown>, RegExp, typeof ValueError | typeof UnsupportedError][] = [
    [{ size: undefined }, /field 'size' is missing/, ValueError],
    [{ size: { height: 384, width: 383 } }, /field 'size' must be square.*383/, UnsupportedError],
    [{ size: { height: 0, width: 0 } }, /field 'size.height' must be a positive integer ≤ 2048, got 0/, ValueError],
    [{ size: { longest_edge: 384 } }, /field 'size' must be \{"height": S, "width": S\} or \{"shortest_edge": S\}/, ValueError],
    [{ size: 100000 }, /field 'size' must be a positive integer ≤ 2048, got 100000/, ValueError],
    [{ crop_size: { height: 336, width: 336 } }, /field 'crop_size' \(336\) differs from 'size' \(384\)/, UnsupportedError],
    [{ image_grid_pinpoints: undefined, size: { height: 336, width: 336 }, crop_size: undefined }, /field 'image_grid_pinpoints\[0\]' height must be a positive multiple of the tile size 336, got \[384,384\]/, ValueError],
    [{ image_grid_pinpoints: [] }, /field 'image_grid_pinpoints' must be a non-empty list/, ValueError],
    [{ image_grid_pinpoints: '(1x1),...,(6x6)' }, /field 'image_grid_pinpoints' is a string/, UnsupportedError],
    [{ image_grid_pinpoints: [[384, 384], [385, 384]] }, /field 'image_grid_pinpoints\[1\]' height must be a positive multiple of the tile size 384, got \[385,384\]/, ValueError],
    [{ image_grid_pinpoints: [[384, -384]] }, /'image_grid_pinpoints\[0\]' width must be a positive multiple/, ValueError],
    [{ image_grid_pinpoints: [[384]] }, /'image_grid_pinpoints\[0\]' must be a \[height, width\] pair/, ValueError],
    [{ image_grid_pinpoints: [[384 * 1000, 384 * 1000]] }, /makes 1000000 tiles of 384×384, more than the limit of 144/, ValueError],
    [{ image_grid_pinpoints: [[1e300, 384]] }, /makes 2\.6\d*e\+297 tiles of 384×384, more than the limit/, ValueError],
    [{ image_grid_pinpoints: new Array(5000).fill([384, 384]) }, /5000 pinpoints, more than the limit of 4096/, ValueError],
    [{ size: { height: 2048, width: 2048 }, crop_size: undefined, image_grid_pinpoints: [[2048 * 6, 2048 * 6]] }, /makes pixel_values of 37×3×2048×2048 = 465567744 values, more than the limit of 134217728/, ValueError],
    [{ image_mean: [0.5, 0.5] }, /field 'image_mean' must be a number or a list of 3 finite numbers, got \[0.5,0.5\]/, ValueError],
    [{ image_std: [0.5, 0, 0.5] }, /field 'image_std' must be .* \(none zero\)/, ValueError],
    [{ image_mean: ['a', 1, 2] }, /field 'image_mean'/, ValueError],
    [{ resample: 0 }, /field 'resample' is 0 \(nearest\), which is not implemented/, UnsupportedError],
    [{ resample: 7 }, /field 'resample' must be a PIL filter number 0..5, got 7/, ValueError],
    [{ resample: '3' }, /field 'resample' must be a PIL filter number 0..5, got "3"/, ValueError],
    [{ rescale_factor: -1 }, /field 'rescale_factor' must be a positive number, got -1/, ValueError],
    [{ do_rescale: 'yes' }, /field 'do_rescale' must be true or false, got "yes"/, ValueError],
    [{ do_normalize: 1 }, /field 'do_normalize' must be true or false, got 1/, ValueError],
    [{ image_processor_type: 'CLIPImageProcessor' }, /field 'image_processor_type' is "CLIPImageProcessor"/, UnsupportedError],
  ];
  for (const [patch, re, cls] of bad) {
    const json: Record<string, unknown> = { ...REAL_PRE, ...patch };
    for (const k of Object.keys(patch)) if (patch[k] === undefined) delete json[k];
    assert.throws(() => parsePreprocessorConfig(json, where), (e: Error) => e instanceof cls && e.message.startsWith(where + ':') && re.test(e.message), `${JSON.stringify(patch).slice(0, 60)}`);
  }
  assert.throws(() => parsePreprocessorConfig([1, 2], where), /x\/preprocessor_config.json: not a JSON object/);
  // defaults as transformers: resample bicubic, rescale 1/255, OPENAI CLIP mean/std, {"shortest_edge": S}
  const d = parsePreprocessorConfig({ size: { shortest_edge: 384 } });
  assert.equal(d.imageGridPinpoints, PINPOINTS);
  assert.is(d.size, 384);
  assert.is(d.resample, 3);
  assert.is(d.rescaleFactor, 1 / 255);
  assert.equal(d.imageMean, [0.48145466, 0.4578275, 0.40821073]);
  assert.is(parsePreprocessorConfig({ ...REAL_PRE, image_std: 0.25 }).imageStd[2], 0.25);

  const dir = mkdtempSync(join(tmpdir(), 'llava-ov-pre-'));
  await rejects(loadPreprocessorConfig(join(dir, 'missing.json')), /missing.json: no such file/);
  writeFileSync(join(dir, 'broken.json'), '{"size": ');
  await rejects(loadPreprocessorConfig(join(dir, 'broken.json')), /broken.json: not valid JSON/);
  writeFileSync(join(dir, 'p.json'), JSON.stringify({ ...REAL_PRE, resample: 9 }));
  await rejects(loadPreprocessorConfig(join(dir, 'p.json')), /p.json: field 'resample' must be a PIL filter number 0..5, got 9/);
});

test('config.json image fields: vision_aspect_ratio, select strategy, consistency with the preprocessor', () => {
  const cfg = { vision_config: { image_size: 384, patch_size: 14 }, image_grid_pinpoints: PINPOINTS, vision_aspect_ratio: 'anyres_max_9', vision_feature_select_strategy: 'full' };
  assert.equal(parseImageModelConfig(cfg), REAL);
  assert.is(parseImageModelConfig({ ...cfg, vision_aspect_ratio: 'anyres_max_4' }).maxNumPatches, 4);
  assert.is(parseImageModelConfig({ ...cfg, vision_aspect_ratio: undefined }).maxNumPatches, 9);
  assert.equal(parseImageModelConfig({ ...cfg, image_grid_pinpoints: undefined, vision_aspect_ratio: undefined, vision_feature_select_strategy: undefined }), REAL);
  for (const [patch, re] of [
    [{ vision_aspect_ratio: 'anyres' }, /field 'vision_aspect_ratio' must be "anyres_max_N"/],
    [{ vision_aspect_ratio: 'anyres_max_0' }, /"anyres_max_N" with N a positive integer, got "anyres_max_0"/],
    [{ vision_aspect_ratio: 9 }, /field 'vision_aspect_ratio' must be a string/],
    [{ vision_feature_select_strategy: 'default' }, /field 'vision_feature_select_strategy' is "default"/],
    [{ vision_config: undefined }, /field 'vision_config' must be an object/],
    [{ vision_config: { image_size: 384 } }, /field 'vision_config.patch_size' must be a positive integer ≤ 384, got nothing/],
    [{ image_grid_pinpoints: [[384, 400]] }, /field 'image_grid_pinpoints\[0\]' width must be a positive multiple of the tile size 384/],
  ] as const) {
    assert.throws(() => parseImageModelConfig({ ...cfg, ...patch }, 'm/config.json'), (e: Error) => e.message.startsWith('m/config.json:') && re.test(e.message), JSON.stringify(patch));
  }
  const pre = parsePreprocessorConfig(REAL_PRE);
  assert.throws(() => processImage(synth(4, 4), pre, { ...REAL, imageSize: 336 }), /field 'size' \(384\) differs from config.json 'vision_config.image_size' \(336\)/);
  assert.throws(() => processImage(synth(4, 4), pre, { ...REAL, imageGridPinpoints: [[384, 384]] }), /'image_grid_pinpoints' differs/);
});

test.run();
