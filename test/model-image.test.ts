// Image preprocessing: bilinear resize (half-pixel centres, no antialias), [0, 1] scaling, per-channel
// normalisation, RGBA input, stacking crops, and errors.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { tinyConfig, type VisionConfig } from '../models/lavi/config.js';
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

test('bad images are rejected with the reason', () => {
  const cfg = vcfg();
  assert.throws(() => preprocessImage({ width: 2, height: 2, data: new Uint8Array(5) }, cfg), /2×2×3 needs 12 bytes, got 5/);
  assert.throws(() => preprocessImage({ width: 0, height: 2, data: new Uint8Array(0) }, cfg), /positive integers/);
  assert.throws(() => stackPixels([]), /no images/);
});

test.run();
