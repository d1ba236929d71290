// Image preprocessing: bilinear resize (half-pixel centres, no antialias), [0, 1] scaling, per-channel
// normalisation, RGBA input, stacking crops, and errors.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseConfig, tinyConfig, type VisionConfig } from '../models/lavi/config.js';
import { UnsupportedError, ValueError } from '../core/errors.js';
import { preprocessImage, stackPixels } from '../models/image/preprocess.js';

function vcfg(over: Partial<VisionConfig> = {}): VisionConfig {
  return { ...tinyConfig().vision_config, ...over };
}

/** A W×H RGB image whose channel c at (x, y) is f(x, y, c). */
function img(W: number, H: number, f: (x: number, y: number, c: number) => number, ch: 3 | 4 = 3) {
  const data = new Uint8Array(W * H * ch);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) for (let c = 0; c < ch; c++) data[(y * W + x) * ch + c] = c < 3 ? f(x, y, c) : 77;
  return { width: W, height: H, data };
}

test('native size: no resampling, x/255 then (x − mean) / std per channel, planar [1, 3, S, S]', () => {
  const cfg = vcfg({ image_size: 5, patch_size: 5, image_mean: [0.48145466, 0.4578275, 0.40821073], image_std: [0.26862954, 0.26130258, 0.27577711] });
  const im = img(5, 5, (x, y, c) => (x * 37 + y * 11 + c * 90) % 256);
  const px = preprocessImage(im, cfg);
  assert.equal(px.shape, [1, 3, 5, 5]);
  for (let c = 0; c < 3; c++) for (let y = 0; y < 5; y++) for (let x = 0; x < 5; x++) {
    const want = (im.data[(y * 5 + x) * 3 + c]! / 255 - cfg.image_mean[c]!) / cfg.image_std[c]!;
    assert.ok(Math.abs(px.data[(c * 5 + y) * 5 + x]! - want) < 1e-6, `(${c}, ${y}, ${x})`);
  }
});

test('upscaling 2 → 4 follows half-pixel bilinear with clamped borders (PyTorch align_corners=False)', () => {
  const cfg = vcfg({ image_size: 4, patch_size: 2, image_mean: [0, 0, 0], image_std: [1, 1, 1] });
  const a = 0, b = 200;
  const px = preprocessImage(img(2, 1, (x) => (x === 0 ? a : b)), cfg);
  // Along x: src = (o + 0.5)/2 − 0.5 = −0.25 (→ 0), 0.25, 0.75, 1.25 (→ clamped to the last pixel).
  const row = Array.from(px.data.subarray(0, 4)).map((v) => v * 255);
  const want = [a, a + 0.25 * (b - a), a + 0.75 * (b - a), b];
  row.forEach((v, i) => assert.ok(Math.abs(v - want[i]!) < 1e-3, `x=${i}: ${v} vs ${want[i]}`));
  // Every output row is the same (one input row).
  assert.equal(Array.from(px.data.subarray(4, 8)), Array.from(px.data.subarray(0, 4)));
});

test('downscaling 4 → 2 averages pixel pairs (no antialias filter)', () => {
  const cfg = vcfg({ image_size: 2, patch_size: 2, image_mean: [0, 0, 0], image_std: [1, 1, 1] });
  const vals = [10, 50, 100, 250];
  const px = preprocessImage(img(4, 4, (x, y) => vals[x]! + y), cfg);
  const got = Array.from(px.data.subarray(0, 4)).map((v) => Math.round(v * 255 * 1000) / 1000);
  assert.equal(got, [30.5, 175.5, 32.5, 177.5]);
});

test('RGBA input ignores alpha; stacking crops', () => {
  const cfg = vcfg({ image_size: 3, patch_size: 3 });
  const f = (x: number, y: number, c: number) => x * 40 + y * 7 + c;
  const rgb = preprocessImage(img(3, 3, f), cfg);
  const rgba = preprocessImage(img(3, 3, f, 4), cfg);
  assert.equal(Array.from(rgba.data), Array.from(rgb.data));
  const st = stackPixels([rgb, rgba, rgb]);
  assert.equal(st.shape, [3, 3, 3, 3]);
  assert.equal(Array.from(st.data.subarray(27, 54)), Array.from(rgb.data));
});

test('vision_config.resample: Pillow\'s filter, to 8 bits (box 8 → 2 averages 4×4 blocks, halves rounded up), RGBA as RGB, native size untouched', () => {
  const cfg = vcfg({ image_size: 2, patch_size: 2, image_mean: [0, 0, 0], image_std: [1, 1, 1], resample: 4 });
  const f = (x: number, y: number, c: number) => x * 10 + y + 3 * c;
  const px = preprocessImage(img(8, 8, f), cfg);
  // Block means: x 0..3 → 15, 4..7 → 55; y 0..3 → 1.5, 4..7 → 5.5. Pillow rounds each pass to 8 bits, half up.
  for (let c = 0; c < 3; c++) {
    const got = Array.from(px.data.subarray(c * 4, c * 4 + 4)).map((v) => Math.round(v * 255 * 1e4) / 1e4);
    assert.equal(got, [17 + 3 * c, 57 + 3 * c, 21 + 3 * c, 61 + 3 * c], `channel ${c}`);
  }
  assert.equal(Array.from(preprocessImage(img(8, 8, f, 4), cfg).data), Array.from(px.data));
  // Without resample the same picture is point-sampled (bilinear between pixels 1..2 / 5..6): not the block mean.
  assert.not.equal(Array.from(preprocessImage(img(8, 8, f), vcfg({ image_size: 2, patch_size: 2, image_mean: [0, 0, 0], image_std: [1, 1, 1] })).data), Array.from(px.data));
  // At the model's size nothing is resampled, with or without it.
  const native = img(2, 2, f);
  assert.equal(Array.from(preprocessImage(native, cfg).data), Array.from(preprocessImage(native, { ...cfg, resample: undefined }).data));
});

test('vision_config.resample: a value that is not an implemented PIL filter (1..5) is refused, naming the field', () => {
  const base = tinyConfig();
  const parse = (resample: unknown) => () => parseConfig({ ...base, vision_config: { ...base.vision_config, resample } } as unknown as Record<string, unknown>, 'config.json');
  for (const bad of [6, 2.5, 'bicubic', -1, [3]]) {
    assert.throws(parse(bad), (e: Error) => e instanceof ValueError && /vision_config.*resample must be a PIL filter number/.test(e.message), `resample ${JSON.stringify(bad)}`);
  }
  // 0 is a PIL filter (nearest) that the engine does not implement.
  assert.throws(parse(0), (e: Error) => e instanceof UnsupportedError && /vision_config.*resample is 0 \(nearest\), which is not implemented/.test(e.message));
  assert.is(parseConfig({ ...base, vision_config: { ...base.vision_config, resample: 3 } } as unknown as Record<string, unknown>, 'config.json').vision_config.resample, 3);
  assert.is(parseConfig({ ...base } as unknown as Record<string, unknown>, 'config.json').vision_config.resample, undefined);
});

test('bad images are rejected with the reason', () => {
  const cfg = vcfg();
  assert.throws(() => preprocessImage({ width: 2, height: 2, data: new Uint8Array(5) }, cfg), /2×2×3 needs 12 bytes, got 5/);
  assert.throws(() => preprocessImage({ width: 0, height: 2, data: new Uint8Array(0) }, cfg), /positive integers/);
  assert.throws(() => stackPixels([]), /no images/);
});

test.run();
