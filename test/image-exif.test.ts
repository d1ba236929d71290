// EXIF orientation (models/exif.ts, applied by models/image/decode.ts) against PIL's ImageOps.exif_transpose, the
// independent oracle: test/fixtures/exif holds a PNG (eXIf chunk) and a JPEG (APP1) per orientation 1..8 written by
// PIL, and goldens.json what PIL makes of each (test/oracle/gen_exif_goldens.py). PNGs must match byte for byte;
// JPEGs (libjpeg there, jpeg-js here) within a few levels, far below what a wrong turn would cost. Also:
// little-endian TIFF, damaged or out-of-range tags (ignored, never an error), and the opt-out.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { applyOrientation, jpegExif, pngExif, tiffOrientation } from '../models/image/exif.js';
import { decodeImage } from '../models/image/decode.js';
import { packageRoot } from '../models/app/runtime.js';

const dir = join(packageRoot(), 'test', 'fixtures', 'exif');
interface Golden { orientation: number; width: number; height: number; rgb: string }
const goldens = (JSON.parse(readFileSync(join(dir, 'goldens.json'), 'utf8')) as { files: Record<string, Golden> }).files;
const file = (name: string) => new Uint8Array(readFileSync(join(dir, name)));
const rgbOf = (g: Golden) => new Uint8Array(Buffer.from(g.rgb, 'base64'));

test('the fixtures cover all eight orientations in both formats', () => {
  for (let o = 1; o <= 8; o++) {
    for (const ext of ['png', 'jpg']) {
      const g = goldens[`orient${o}.${ext}`];
      assert.ok(g, `orient${o}.${ext} has a golden`);
      assert.is(g!.orientation, o);
      assert.equal([g!.width, g!.height], o >= 5 ? (ext === 'png' ? [4, 7] : [32, 56]) : ext === 'png' ? [7, 4] : [56, 32]);
    }
  }
});

test('PNG eXIf: every orientation gives exactly PIL exif_transpose pixels', () => {
  for (let o = 1; o <= 8; o++) {
    const name = `orient${o}.png`, g = goldens[name]!;
    const img = decodeImage(file(name), { source: name });
    assert.is(img.orientation, o, name);
    assert.equal([img.width, img.height], [g.width, g.height], `${name}: upright size`);
    assert.equal([...img.data], [...rgbOf(g)], `${name}: pixels`);
  }
});

test('JPEG APP1 Exif: every orientation matches PIL within decoder rounding', () => {
  for (let o = 1; o <= 8; o++) {
    const name = `orient${o}.jpg`, g = goldens[name]!;
    const img = decodeImage(file(name), { source: name });
    assert.is(img.orientation, o, name);
    assert.equal([img.width, img.height], [g.width, g.height], `${name}: upright size`);
    const want = rgbOf(g);
    let maxDiff = 0;
    for (let i = 0; i < want.length; i++) maxDiff = Math.max(maxDiff, Math.abs(img.data[i]! - want[i]!));
    // Blocks are 30–60 levels apart, so any wrong turn or mirror differs by ≥ 30 somewhere.
    assert.ok(maxDiff <= 6, `${name}: max |ours − PIL| = ${maxDiff} levels`);
  }
});

test('exifOrientation: false keeps the stored pixels (= orientation 1)', () => {
  const stored = decodeImage(file('orient1.png'));
  for (let o = 2; o <= 8; o++) {
    const img = decodeImage(file(`orient${o}.png`), { exifOrientation: false });
    assert.is(img.orientation, o);
    assert.equal([img.width, img.height, [...img.data]], [stored.width, stored.height, [...stored.data]]);
  }
});

/** The TIFF bytes of orient<o>.png's eXIf chunk rewritten little-endian ("II"). */
function littleEndianTiff(o: number): Uint8Array {
  const t = new Uint8Array(8 + 2 + 12 + 4);
  const dv = new DataView(t.buffer);
  t.set([0x49, 0x49, 0x2a, 0x00]);
  dv.setUint32(4, 8, true);
  dv.setUint16(8, 1, true);
  dv.setUint16(10, 0x0112, true);
  dv.setUint16(12, 3, true);
  dv.setUint32(14, 1, true);
  dv.setUint16(18, o, true);
  return t;
}

test('tiffOrientation: little- and big-endian, damaged and out-of-range tags', () => {
  for (let o = 1; o <= 8; o++) {
    assert.is(tiffOrientation(littleEndianTiff(o)), o, `II ${o}`);
    assert.is(tiffOrientation(pngExif(file(`orient${o}.png`))!), o, `MM ${o}`);
    assert.is(tiffOrientation(jpegExif(file(`orient${o}.jpg`))!), o, `JPEG ${o}`);
  }
  assert.is(tiffOrientation(littleEndianTiff(0)), 1, 'value 0');
  assert.is(tiffOrientation(littleEndianTiff(9)), 1, 'value 9');
  const good = littleEndianTiff(6);
  for (let cut = 0; cut < 22; cut++) // 22: header, count and the one entry (the next-IFD offset is not needed)
    assert.is(tiffOrientation(good.subarray(0, cut)), 1, `truncated at ${cut}`);
  const badType = new Uint8Array(good);
  badType[12] = 4; // LONG instead of SHORT
  assert.is(tiffOrientation(badType), 1, 'wrong type');
  const badIfd = new Uint8Array(good);
  badIfd[4] = 200; // IFD0 offset past the end
  assert.is(tiffOrientation(badIfd), 1, 'IFD offset out of range');
  assert.is(tiffOrientation(new TextEncoder().encode('not a tiff at all')), 1, 'no TIFF header');
});

test('a damaged EXIF block never fails the image: it is decoded upright-as-stored', () => {
  const bytes = file('orient6.jpg');
  const at = bytes.findIndex((_, i) => bytes[i] === 0x4d && bytes[i + 1] === 0x4d && bytes[i + 2] === 0x00 && bytes[i + 3] === 0x2a);
  assert.ok(at > 0, 'TIFF header found in the JPEG');
  const broken = new Uint8Array(bytes);
  broken[at] = 0x58; // "XM": no longer a TIFF header
  const img = decodeImage(broken, { source: 'broken-exif.jpg' });
  const stored = decodeImage(bytes, { exifOrientation: false });
  assert.is(img.orientation, 1);
  assert.equal([img.width, img.height, [...img.data]], [stored.width, stored.height, [...stored.data]]);
});

test('applyOrientation: composing the turns gives the expected group laws', () => {
  const W = 3, H = 2;
  const img = { width: W, height: H, data: Uint8Array.from({ length: W * H * 3 }, (_, i) => i) };
  const same = (a: typeof img, b: typeof img) => a.width === b.width && a.height === b.height && a.data.every((v, i) => v === b.data[i]);
  // 6 (90° cw) four times, 3 (180°) twice, mirrors twice, transpose twice: identity.
  let r = img;
  for (let i = 0; i < 4; i++) r = applyOrientation(r, 6);
  assert.ok(same(r, img), '6⁴ = 1');
  for (const o of [2, 3, 4, 5, 7]) assert.ok(same(applyOrientation(applyOrientation(img, o), o), img), `${o}² = 1`);
  assert.ok(same(applyOrientation(applyOrientation(img, 6), 8), img), '6 then 8 = 1');
  assert.ok(same(applyOrientation(applyOrientation(img, 6), 6), applyOrientation(img, 3)), '6² = 3');
  assert.is(applyOrientation(img, 1), img);
  assert.is(applyOrientation(img, 42), img);
});

test.run();
