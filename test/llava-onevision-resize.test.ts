// LLaVA-OneVision processor pieces against Python: PIL-exact resizing (models/image/resample.ts) against
// Pillow's own output for every filter, up and down, odd ratios and one-pixel strips
// (test/fixtures/llava-onevision/pil-resize.safetensors, written by test/llava-onevision/make_pil_goldens.py);
// transformers' RGBA → RGB; Python's float floor division and int(round(x, 7)); select_best_resolution,
// get_patch_output_size, the padding split and the image token count on hand-worked and Python-computed cases.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SafetensorsFile } from '../core/safetensors/index.js';
import { toRgb } from '../models/image/preprocess.js';
import { resizePil } from '../models/image/resample.js';
import { pyFloorDiv, pyIntRound7 } from '../models/llava-onevision/pymath.js';
import {
  paddingFor,
  patchOutputSize,
  selectBestResolution,
  tokenLayout,
  type LlavaOnevisionImageModelConfig,
} from '../models/llava-onevision/processor.js';

const fixtures = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..', 'test', 'fixtures', 'llava-onevision');
const FILTERS: Record<string, number> = { lanczos: 1, bilinear: 2, bicubic: 3, box: 4, hamming: 5 };

/** The released llava-onevision-qwen2-0.5b-ov-hf geometry: SigLIP 384/14, pinpoints 384..2304 in steps of 384. */
const PINPOINTS: [number, number][] = [];
for (let a = 384; a <= 2304; a += 384) for (let b = 384; b <= 2304; b += 384) PINPOINTS.push([a, b]);
const REAL: LlavaOnevisionImageModelConfig = { imageSize: 384, patchSize: 14, imageGridPinpoints: PINPOINTS, maxNumPatches: 9 };

test('PIL resize: bit-exact against Pillow for every filter, up/down/odd ratios/strips', async () => {
  const f = await SafetensorsFile.open(join(fixtures, 'pil-resize.safetensors'));
  let cases = 0;
  try {
    for (const name of f.names()) {
      if (!name.startsWith('out.')) continue;
      const [, src, filter, size] = name.split('.') as [string, string, string, string];
      const [w, h] = size.split('x').map(Number) as [number, number];
      const se = f.entry(`src.${src}`);
      const [H, W, C] = se.shape as [number, number, number];
      const pixels = await f.readRaw(`src.${src}`);
      const want = await f.readRaw(name);
      const got = resizePil(pixels, W, H, C, w, h, FILTERS[filter]!);
      let bad = -1;
      for (let i = 0; i < want.length; i++) if (got[i] !== want[i]) { bad = i; break; }
      if (bad >= 0) {
        const p = Math.floor(bad / 3);
        assert.unreachable(`${name}: pixel (${p % w}, ${Math.floor(p / w)}) channel ${bad % 3}: got ${got[bad]}, PIL ${want[bad]}`);
      }
      assert.is(got.length, want.length);
      cases++;
    }
    assert.ok(cases >= 150, `only ${cases} resize cases`);

    const rgba = await f.readRaw('src.rgba16x16');
    const rgb = toRgb({ width: 16, height: 16, data: rgba, channels: 4 });
    assert.equal([...rgb], [...(await f.readRaw('rgb.rgba16x16'))]);
  } finally {
    await f.close();
  }
});

test('resize: identity returns a copy; bad sizes and filters are refused', () => {
  const px = new Uint8Array([1, 2, 3, 4, 5, 6]);
  const same = resizePil(px, 2, 1, 3, 2, 1, 3);
  assert.equal([...same], [...px]);
  assert.is.not(same, px);
  assert.throws(() => resizePil(px, 2, 1, 3, 0, 1, 3), /output width must be a positive integer/);
  assert.throws(() => resizePil(px, 2, 1, 3, 2, 1, 0), /resample 0 \(nearest\) is not implemented/);
  assert.throws(() => resizePil(px, 3, 1, 3, 2, 1, 3), /needs 9 bytes, got 6/);
});

test('Python float floor division and int(round(x, 7))', () => {
  assert.is(pyFloorDiv(50, 1.1111111111111112), 44);
  assert.is(Math.floor(50 / 1.1111111111111112), 45);
  // (x, ratio, x // ratio) from CPython where Math.floor(x / ratio) differs (anyres ratios sqrt(h·w / (9 n²)))
  const table: [number, string, number][] = [
    [138, '1.7037037037037037', 80], [142, '1.7530864197530864', 80], [17, '1.4166666666666667', 11],
    [83, '1.9761904761904763', 41], [135, '1.6666666666666667', 80], [52, '1.2380952380952381', 41],
    [100, '1.1111111111111112', 89], [14, '1.1666666666666667', 11], [98, '1.5555555555555556', 62],
    [65, '1.5476190476190477', 41], [24, '1.6', 14],
  ];
  for (const [x, r, q] of table) {
    assert.is(pyFloorDiv(x, Number(r)), q, `${x} // ${r}`);
    assert.is.not(Math.floor(x / Number(r)), q);
  }
  assert.is(pyFloorDiv(7, 2), 3);
  assert.is(pyFloorDiv(-7, 2), -4);
  assert.is(pyFloorDiv(7, -2), -4);
  assert.is(pyFloorDiv(6, 3), 2);
  assert.is(pyFloorDiv(0.5, 1.5), 0);
  // int(round(v, 7)) vs int(v): 617 · (162 / 1234) is 80.99999999999999 in binary
  assert.is(pyIntRound7(617 * (162 / 1234)), 81);
  assert.is(Math.trunc(617 * (162 / 1234)), 80);
  assert.is(pyIntRound7(1234 * (162 / 1234)), 162);
  assert.is(pyIntRound7(80.99999994), 80);
  assert.is(pyIntRound7(80.99999996), 81);
  assert.is(pyIntRound7(0.4), 0);
});

test('select_best_resolution, get_patch_output_size and the padding split (hand-worked)', () => {
  // square image: the smallest square pinpoint wins (same effective area, least waste)
  assert.equal(selectBestResolution(384, 384, PINPOINTS), [384, 384]);
  assert.equal(selectBestResolution(1, 1, PINPOINTS), [384, 384]);
  // 500×1000 (h×w): 768×1152 keeps all 500 000 pixels with the least waste (1536×768 keeps them too, wastes more)
  assert.equal(selectBestResolution(500, 1000, PINPOINTS), [768, 1152]);
  // ties on effective area go to the first pinpoint with the least waste; order matters
  assert.equal(selectBestResolution(100, 100, [[768, 384], [384, 768]]), [768, 384]);
  assert.equal(selectBestResolution(100, 100, [[384, 768], [768, 384]]), [384, 768]);
  // a too-thin image: every pinpoint rounds one side to 0 pixels, every effective area is 0, the least waste wins
  assert.equal(selectBestResolution(10000, 1, PINPOINTS), [384, 384]);
  assert.equal(selectBestResolution(1, 10000, PINPOINTS), [384, 384]);
  assert.equal(patchOutputSize(10000, 1, [384, 384]), [384, 1]);
  // resize inside the pinpoint: ceil, capped
  assert.equal(patchOutputSize(500, 1000, [768, 1152]), [Math.min(Math.ceil(500 * (1152 / 1000)), 768), 1152]);
  assert.equal(patchOutputSize(1000, 500, [1152, 768]), [1152, Math.min(Math.ceil(500 * (1152 / 1000)), 768)]);
  assert.equal(patchOutputSize(300, 300, [384, 768]), [384, 384]);
  assert.equal(patchOutputSize(3, 7, [384, 384]), [Math.ceil(3 * (384 / 7)), 384]);
  // divmod split: the odd pixel goes after (bottom / right)
  assert.equal(paddingFor([165, 384], [384, 384]), { top: 109, bottom: 110, left: 0, right: 0 });
  assert.equal(paddingFor([384, 383], [384, 768]), { top: 0, bottom: 0, left: 192, right: 193 });
  assert.equal(paddingFor([384, 384], [384, 384]), { top: 0, bottom: 0, left: 0, right: 0 });
});

test('image token counts: real 0.5B geometry (values from a CPython transcription of _get_number_of_features)', () => {
  // [h, w, best resolution, tokens, unpadded h, unpadded w]
  const table: [number, number, [number, number], number, number, number][] = [
    [384, 384, [384, 384], 1485, 27, 27], [500, 1000, [768, 1152], 4009, 40, 81], [2304, 2304, [2304, 2304], 7371, 162, 162],
    [617, 1234, [768, 1536], 6615, 54, 108], [1234, 1234, [1536, 1536], 7371, 108, 108], [480, 640, [768, 768], 2929, 40, 54],
    [640, 480, [768, 768], 2943, 54, 40], [1080, 1920, [1152, 1920], 7269, 75, 135], [1920, 1080, [1920, 1152], 7317, 135, 75],
    [10, 4000, [384, 2304], 892, 1, 162], [4000, 10, [2304, 384], 1053, 162, 1], [5, 10000, [384, 2304], 892, 1, 162],
    [300, 7000, [384, 2304], 1870, 7, 162], [7000, 300, [2304, 384], 2025, 162, 7], [1, 1, [384, 384], 1485, 27, 27],
    [3000, 4000, [1920, 2304], 7309, 121, 162], [1851, 1234, [1920, 1536], 7362, 135, 90], [2468, 1234, [2304, 1152], 7341, 162, 81],
    [719, 1277, [768, 1536], 5967, 54, 96], [333, 777, [384, 1152], 2457, 27, 63],
    // anyres_max_9 with Python's 50 // 1.1111111111111112 == 44 (Math.floor would give 45 and 7299 / 7399 tokens)
    [585, 1929, [768, 2304], 7153, 50, 162], [606, 1942, [768, 2304], 7153, 50, 162], [1929, 585, [2304, 768], 7254, 162, 50],
  ];
  for (const [h, w, best, tokens, uh, uw] of table) {
    const L = tokenLayout(h, w, REAL);
    assert.equal(selectBestResolution(h, w, PINPOINTS), best, `${h}×${w} best`);
    assert.equal(L.unpadded, [uh, uw], `${h}×${w} unpadded`);
    assert.is(L.numTokens, tokens, `${h}×${w} tokens`);
    assert.is(L.numTokens, L.baseTokens + L.final[0] * L.final[1] + L.final[0]);
  }
  // 384×384 by hand: base 27² = 729, one tile 27×27 = 729, 27 newlines
  assert.is(tokenLayout(384, 384, REAL).numTokens, 729 + 729 + 27);
  // 2304×2304: 6×6 tiles = 162×162 tokens, ratio sqrt(162² / (9·27²)) = 2 → 81×81 + 81 newlines
  const big = tokenLayout(2304, 2304, REAL);
  assert.is(big.ratio, 2);
  assert.ok(big.downscaled);
  assert.equal(big.final, [81, 81]);
  assert.is(big.numTokens, 729 + 81 * 81 + 81);
  // 1×10000 strips: one tile, unpadded to a single row / column (27 // 2 = 13 removed on each side)
  assert.is(tokenLayout(1, 10000, REAL).numTokens, 757);
  assert.equal(tokenLayout(1, 10000, REAL).unpadded, [1, 27]);
  assert.is(tokenLayout(10000, 1, REAL).numTokens, 783);
  assert.is(tokenLayout(2, 10000, REAL).numTokens, 757);
  assert.is(tokenLayout(1, 1000, REAL).numTokens, 811);
  assert.throws(() => tokenLayout(0, 10, REAL), /positive integers/);
});

test.run();
