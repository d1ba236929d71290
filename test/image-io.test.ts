// Image file decoding (models/image/decode.ts): PNGs of every colour type written here (with pngjs, or chunk by chunk
// for palette, 1-bit, 16-bit and interlaced ones), JPEGs from jpeg-js plus a progressive and a grayscale JPEG made
// with libjpeg (embedded below), format detection by magic bytes, alpha compositing, the size limits checked from
// the header, and every error.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';
import jpeg from 'jpeg-js';
import { PNG } from 'pngjs';
import { FormatError, LaviError, UnsupportedError, ValueError } from '../core/errors.js';
import { tinyConfig } from '../models/lavi/config.js';
import { preprocessImage, type RGBImage } from '../models/image/preprocess.js';
import { decodeImage, detectImageFormat, decodeImageFile, type DecodedImage } from '../models/image/decode.js';
import { crc32 } from '../core/crc32.js';

const dir = mkdtempSync(join(tmpdir(), 'lavi-image-io-'));
let fileNo = 0;
function tmpFile(bytes: Uint8Array, name = `img${fileNo++}.bin`): string {
  const p = join(dir, name);
  writeFileSync(p, bytes);
  return p;
}

/** RGBA test pattern: every pixel different, alpha varying over the full range. */
function pattern(W: number, H: number): Uint8Array {
  const d = new Uint8Array(W * H * 4);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
    const p = (y * W + x) * 4;
    d[p] = (x * 37 + y * 11) & 255;
    d[p + 1] = (x * 5 + y * 53 + 7) & 255;
    d[p + 2] = (x * 101 + y * 3 + 200) & 255;
    d[p + 3] = (x * 29 + y * 71) & 255;
  }
  return d;
}

/** A copy with every alpha 255 (pngjs composites alpha away when it writes a colour type without alpha). */
function opaque(rgba: Uint8Array): Uint8Array {
  const d = new Uint8Array(rgba);
  for (let p = 3; p < d.length; p += 4) d[p] = 255;
  return d;
}

/** pngjs writer: `rgba` is always RGBA8; colorType picks what the file stores (0 gray, 2 RGB, 4 gray+alpha, 6 RGBA). */
function pngjsWrite(W: number, H: number, rgba: Uint8Array, colorType: 0 | 2 | 4 | 6): Uint8Array {
  const png = new PNG({ width: W, height: H });
  png.data = Buffer.from(rgba);
  return PNG.sync.write(png, { colorType, inputHasAlpha: true });
}

// --- hand-made PNG chunks (palette, sub-byte and 16-bit depths, Adam7) --------------------------------------------

function chunk(type: string, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + body.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, body.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(body, 8);
  dv.setUint32(8 + body.length, crc32(out.subarray(4, 8 + body.length)));
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) out.set(p, off), (off += p.length);
  return out;
}

function ihdr(W: number, H: number, depth: number, colorType: number, interlace = 0): Uint8Array {
  const b = new Uint8Array(13);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, W);
  dv.setUint32(4, H);
  b[8] = depth, b[9] = colorType, b[10] = 0, b[11] = 0, b[12] = interlace;
  return chunk('IHDR', b);
}

/** Packs rows of samples (each `samples[y]` a list of channel values) at `depth` bits, filter 0 per row. */
function packRows(rows: number[][], depth: number): Uint8Array {
  const out: number[] = [];
  for (const row of rows) {
    out.push(0);
    if (depth === 16) for (const v of row) out.push(v >> 8, v & 255);
    else if (depth === 8) out.push(...row);
    else {
      let acc = 0, bits = 0;
      for (const v of row) {
        acc = (acc << depth) | v;
        bits += depth;
        if (bits === 8) out.push(acc), (acc = 0), (bits = 0);
      }
      if (bits > 0) out.push(acc << (8 - bits));
    }
  }
  return Uint8Array.from(out);
}

/** A PNG from per-pixel sample lists (`px[y][x]` = that pixel's channel values), optionally Adam7-interlaced. */
function handPng(px: number[][][], depth: number, colorType: number, extra: Uint8Array[] = [], interlace = false): Uint8Array {
  const H = px.length, W = px[0]!.length;
  let raw: Uint8Array;
  if (!interlace) raw = packRows(px.map((r) => r.flat()), depth);
  else {
    // Adam7: seven passes (x0, y0, dx, dy), each a sub-image of its own rows.
    const passes = [[0, 0, 8, 8], [4, 0, 8, 8], [0, 4, 4, 8], [2, 0, 4, 4], [0, 2, 2, 4], [1, 0, 2, 2], [0, 1, 1, 2]];
    const parts: Uint8Array[] = [];
    for (const [x0, y0, dx, dy] of passes) {
      const rows: number[][] = [];
      for (let y = y0!; y < H; y += dy!) {
        const row: number[] = [];
        for (let x = x0!; x < W; x += dx!) row.push(...px[y]![x]!);
        if (row.length > 0) rows.push(row);
      }
      if (rows.length > 0) parts.push(packRows(rows, depth));
    }
    raw = concat(parts);
  }
  return concat([
    Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    ihdr(W, H, depth, colorType, interlace ? 1 : 0),
    ...extra,
    chunk('IDAT', deflateSync(raw)),
    chunk('IEND', new Uint8Array(0)),
  ]);
}

function grid<T>(W: number, H: number, f: (x: number, y: number) => T): T[][] {
  return Array.from({ length: H }, (_, y) => Array.from({ length: W }, (_, x) => f(x, y)));
}

/** Alpha over a background, the documented rounding: round((c·a + bg·(255 − a)) / 255), halves up. */
function over(c: number, a: number, bg = 255): number {
  return Math.floor((c * a + bg * (255 - a) + 127) / 255);
}

function rgbOf(img: DecodedImage, x: number, y: number): number[] {
  const p = (y * img.width + x) * 3;
  return Array.from(img.data.subarray(p, p + 3));
}

function throwsLavi(fn: () => unknown, cls: new (...a: never[]) => LaviError, ...parts: (string | RegExp)[]): void {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof cls, `expected ${cls.name}, got ${(e as Error).name}: ${(e as Error).message}`);
    for (const p of parts) {
      const msg = (e as Error).message;
      assert.ok(typeof p === 'string' ? msg.includes(p) : p.test(msg), `message ${JSON.stringify(msg)} lacks ${String(p)}`);
    }
    return;
  }
  assert.unreachable(`expected ${cls.name}`);
}

// --- PNG ----------------------------------------------------------------------------------------------------------

test('PNG RGB: exact pixels, RGB8 output typed for preprocessImage', () => {
  const W = 7, H = 5;
  const src = opaque(pattern(W, H));
  const img = decodeImageFile(tmpFile(pngjsWrite(W, H, src, 2), 'rgb.png'));
  assert.is(img.width, W);
  assert.is(img.height, H);
  assert.is(img.channels, 3);
  assert.ok(img.data instanceof Uint8Array);
  assert.is(img.data.length, W * H * 3);
  for (let p = 0; p < W * H; p++) for (let c = 0; c < 3; c++) assert.is(img.data[p * 3 + c], src[p * 4 + c], `pixel ${p} channel ${c}`);
  // The decoded image is the preprocessor's input type as is.
  const asInput: RGBImage = img;
  const px = preprocessImage(asInput, { ...tinyConfig().vision_config, image_size: 4, patch_size: 2 });
  assert.equal(px.shape, [1, 3, 4, 4]);
});

test('PNG RGBA: alpha composited over white by default, over a given background on request', () => {
  const W = 9, H = 4;
  const src = pattern(W, H);
  const bytes = pngjsWrite(W, H, src, 6);
  const img = decodeImage(bytes);
  const black = decodeImage(bytes, { background: [0, 0, 0] });
  const teal = decodeImage(bytes, { background: [0, 128, 128] });
  for (let p = 0; p < W * H; p++) {
    const a = src[p * 4 + 3]!;
    for (let c = 0; c < 3; c++) {
      assert.is(img.data[p * 3 + c], over(src[p * 4 + c]!, a), `white, pixel ${p} channel ${c}`);
      assert.is(black.data[p * 3 + c], over(src[p * 4 + c]!, a, 0), `black, pixel ${p} channel ${c}`);
      assert.is(teal.data[p * 3 + c], over(src[p * 4 + c]!, a, [0, 128, 128][c]), `teal, pixel ${p} channel ${c}`);
    }
  }
  // Fully transparent → background, fully opaque → colour unchanged.
  const edge = new Uint8Array([10, 20, 30, 0, 10, 20, 30, 255]);
  const e = decodeImage(pngjsWrite(2, 1, edge, 6));
  assert.equal(Array.from(e.data), [255, 255, 255, 10, 20, 30]);
  throwsLavi(() => decodeImage(bytes, { background: [0, 300, 0] }), ValueError, 'background');
});

test('PNG grayscale and grayscale+alpha (8-bit): gray replicated to R, G, B', () => {
  const W = 6, H = 3;
  const src = pattern(W, H);
  for (let p = 0; p < W * H; p++) src[p * 4 + 1] = src[p * 4 + 2] = src[p * 4]!; // gray input for pngjs
  const g = decodeImage(pngjsWrite(W, H, opaque(src), 0));
  const ga = decodeImage(pngjsWrite(W, H, src, 4));
  for (let p = 0; p < W * H; p++) {
    const v = src[p * 4]!, a = src[p * 4 + 3]!;
    assert.equal(Array.from(g.data.subarray(p * 3, p * 3 + 3)), [v, v, v], `gray pixel ${p}`);
    const o = over(v, a);
    assert.equal(Array.from(ga.data.subarray(p * 3, p * 3 + 3)), [o, o, o], `gray+alpha pixel ${p}`);
  }
});

test('PNG palette (8-bit and 2-bit, with tRNS alpha)', () => {
  const palette = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [250, 200, 100]];
  const plte = chunk('PLTE', Uint8Array.from(palette.flat()));
  const W = 5, H = 3;
  const idx = grid(W, H, (x, y) => (x + 2 * y) % 4);
  for (const depth of [8, 2]) {
    const img = decodeImage(handPng(idx.map((r) => r.map((i) => [i])), depth, 3, [plte]), { source: `palette${depth}` });
    for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) assert.equal(rgbOf(img, x, y), palette[idx[y]![x]!], `depth ${depth} (${x}, ${y})`);
  }
  // tRNS gives palette entries alpha: entry 0 transparent, entry 1 half, others opaque (missing entries = 255).
  const trns = chunk('tRNS', Uint8Array.from([0, 128]));
  const img = decodeImage(handPng(idx.map((r) => r.map((i) => [i])), 8, 3, [plte, trns]));
  const alpha = [0, 128, 255, 255];
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
    const i = idx[y]![x]!;
    assert.equal(rgbOf(img, x, y), palette[i]!.map((c) => over(c, alpha[i]!)), `tRNS (${x}, ${y})`);
  }
});

test('PNG 1-bit grayscale, 16-bit RGB (scaled round(v·255/65535)), 16-bit gray with a tRNS colour key', () => {
  const W = 11, H = 2; // 11 one-bit samples: the row is padded to two bytes
  const bits = grid(W, H, (x, y) => (x * 3 + y) % 2);
  const b = decodeImage(handPng(bits.map((r) => r.map((v) => [v])), 1, 0));
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) assert.equal(rgbOf(b, x, y), bits[y]![x] ? [255, 255, 255] : [0, 0, 0]);

  const deep = grid(4, 3, (x, y) => [x * 20000 + y, 65535 - x * 9000, (x * y * 7919) % 65536]);
  const d = decodeImage(handPng(deep, 16, 2));
  for (let y = 0; y < 3; y++) for (let x = 0; x < 4; x++) {
    assert.equal(rgbOf(d, x, y), deep[y]![x]!.map((v) => Math.round((v * 255) / 65535)), `16-bit (${x}, ${y})`);
  }
  // Colour key: gray 1000 is transparent (→ white); others opaque.
  const g16 = grid(3, 1, (x) => [[1000, 30000, 65535][x]!]);
  const k = decodeImage(handPng(g16, 16, 0, [chunk('tRNS', Uint8Array.from([1000 >> 8, 1000 & 255]))]));
  assert.equal(Array.from(k.data), [255, 255, 255, ...Array(3).fill(Math.round((30000 * 255) / 65535)), 255, 255, 255]);
});

test('PNG Adam7-interlaced RGB equals the non-interlaced image', () => {
  const W = 10, H = 9;
  const px = grid(W, H, (x, y) => [(x * 23 + y) & 255, (y * 31 + x * 2) & 255, (x * y * 5) & 255]);
  const plain = decodeImage(handPng(px, 8, 2));
  const inter = decodeImage(handPng(px, 8, 2, [], true));
  assert.equal(Array.from(inter.data), Array.from(plain.data));
  assert.equal(rgbOf(inter, 9, 8), px[8]![9]);
});

// --- JPEG ---------------------------------------------------------------------------------------------------------

/** Four flat 8×8 blocks (JPEG keeps flat blocks nearly exactly). */
const QUADS = [[220, 30, 30], [30, 200, 60], [40, 60, 210], [128, 128, 128]];
function quadRGBA(): Uint8Array {
  const d = new Uint8Array(16 * 16 * 4);
  for (let y = 0; y < 16; y++) for (let x = 0; x < 16; x++) {
    const q = QUADS[(y >> 3) * 2 + (x >> 3)]!;
    d.set([...q, 255], (y * 16 + x) * 4);
  }
  return d;
}

function assertQuads(img: DecodedImage, want: number[][], tol: number, label: string): void {
  assert.is(img.width, 16);
  assert.is(img.height, 16);
  assert.is(img.data.length, 16 * 16 * 3);
  for (let y = 0; y < 16; y++) for (let x = 0; x < 16; x++) {
    const q = want[(y >> 3) * 2 + (x >> 3)]!;
    const got = rgbOf(img, x, y);
    for (let c = 0; c < 3; c++) assert.ok(Math.abs(got[c]! - q[c]!) <= tol, `${label} (${x}, ${y}) channel ${c}: ${got[c]} vs ${q[c]}`);
  }
}

/** cjpeg -progressive -quality 95 -sample 1x1 of the QUADS image (SOF2). */
const PROGRESSIVE_JPEG =
  '/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAIBAQEBAQIBAQECAgICAgQDAgICAgUEBAMEBgUGBgYFBgYGBwkIBgcJBwYGCAsICQoKCgoKBggLDAsKDAkKCgr/2wBDAQICAgICAgUDAwUKBwYHCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgr/wgARCAAQABADAREAAhEBAxEB/8QAFAABAAAAAAAAAAAAAAAAAAAAB//EABgBAAIDAAAAAAAAAAAAAAAAAAcIBQYJ/9oADAMBAAIQAxAAAAEtH7fLkblaBvcaHJY7Z//EABQQAQAAAAAAAAAAAAAAAAAAACD/2gAIAQEAAQUCH//EABQRAQAAAAAAAAAAAAAAAAAAACD/2gAIAQMBAT8BH//EABQRAQAAAAAAAAAAAAAAAAAAACD/2gAIAQIBAT8BH//EABQQAQAAAAAAAAAAAAAAAAAAACD/2gAIAQEABj8CH//EABQQAQAAAAAAAAAAAAAAAAAAACD/2gAIAQEAAT8hH//aAAwDAQACAAMAAAAQAA//xAAUEQEAAAAAAAAAAAAAAAAAAAAg/9oACAEDAQE/EB//xAAUEQEAAAAAAAAAAAAAAAAAAAAg/9oACAECAQE/EB//xAAUEAEAAAAAAAAAAAAAAAAAAAAg/9oACAEBAAE/EB//2Q==';
/** cjpeg -grayscale -quality 95 of four flat gray blocks 10, 90, 170, 250 (one component). */
const GRAY_JPEG =
  '/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAIBAQEBAQIBAQECAgICAgQDAgICAgUEBAMEBgUGBgYFBgYGBwkIBgcJBwYGCAsICQoKCgoKBggLDAsKDAkKCgr/wAALCAAQABABAREA/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKTlJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/9oACAEBAAA/APwnr9QK/UCv1Ar/2Q==';

function b64(s: string): Uint8Array {
  return new Uint8Array(Buffer.from(s, 'base64'));
}

function jpegBytes(quality = 95): Uint8Array {
  return new Uint8Array(jpeg.encode({ width: 16, height: 16, data: Buffer.from(quadRGBA()) }, quality).data);
}

test('JPEG baseline (jpeg-js encoder): pixels within tolerance', () => {
  assertQuads(decodeImageFile(tmpFile(jpegBytes(), 'base.jpg')), QUADS, 6, 'baseline');
});

test('JPEG progressive (SOF2) and grayscale (one component → R = G = B)', () => {
  const prog = b64(PROGRESSIVE_JPEG);
  assert.ok(Buffer.from(prog).includes(Buffer.from([0xff, 0xc2])), 'fixture is progressive');
  assertQuads(decodeImage(prog, { source: 'progressive.jpg' }), QUADS, 4, 'progressive');
  const gray = decodeImage(b64(GRAY_JPEG));
  assertQuads(gray, [10, 90, 170, 250].map((v) => [v, v, v]), 3, 'grayscale');
  for (let p = 0; p < 256; p++) assert.ok(gray.data[p * 3] === gray.data[p * 3 + 1] && gray.data[p * 3] === gray.data[p * 3 + 2]);
});

test('format comes from the magic bytes, not the file name', () => {
  const W = 3, H = 2;
  const src = pattern(W, H);
  for (let p = 0; p < W * H; p++) src[p * 4 + 3] = 255;
  const pngAsJpg = decodeImageFile(tmpFile(pngjsWrite(W, H, src, 2), 'really-a-png.jpg'));
  assert.equal(rgbOf(pngAsJpg, 2, 1), Array.from(src.subarray(5 * 4, 5 * 4 + 3)));
  assertQuads(decodeImageFile(tmpFile(jpegBytes(), 'really-a-jpeg.png')), QUADS, 6, 'jpeg named .png');
  assert.is(decodeImageFile(tmpFile(jpegBytes(), 'no-extension')).width, 16);
  assert.is(detectImageFormat(pngjsWrite(W, H, src, 2)), 'png');
  assert.is(detectImageFormat(jpegBytes()), 'jpeg');
  assert.is(detectImageFormat(new TextEncoder().encode('GIF89a....')), 'GIF');
  assert.is(detectImageFormat(new TextEncoder().encode('hello world')), null);
});

// --- errors -------------------------------------------------------------------------------------------------------

test('missing file, directory, empty file', () => {
  const missing = join(dir, 'nope.png');
  throwsLavi(() => decodeImageFile(missing), ValueError, missing, 'no such file');
  const sub = join(dir, 'a-directory.png');
  mkdirSync(sub);
  throwsLavi(() => decodeImageFile(sub), ValueError, sub);
  const empty = tmpFile(new Uint8Array(0), 'empty.png');
  throwsLavi(() => decodeImageFile(empty), FormatError, empty, 'empty');
});

test('unsupported formats are named (GIF, BMP, WebP, TIFF), unknown data is not a PNG or JPEG', () => {
  const enc = (s: string) => new TextEncoder().encode(s);
  const cases: [string, Uint8Array][] = [
    ['GIF', concat([enc('GIF89a'), new Uint8Array(20)])],
    ['BMP', concat([enc('BM'), new Uint8Array(60)])],
    ['WebP', concat([enc('RIFF'), new Uint8Array([40, 0, 0, 0]), enc('WEBPVP8 '), new Uint8Array(30)])],
    ['TIFF', concat([new Uint8Array([0x49, 0x49, 0x2a, 0]), new Uint8Array(20)])],
  ];
  for (const [name, bytes] of cases) {
    const p = tmpFile(bytes, `pic-${name}.png`);
    throwsLavi(() => decodeImageFile(p), UnsupportedError, p, `unsupported image format ${name}`);
  }
  const text = tmpFile(enc('just some text, not an image'), 'text.jpg');
  throwsLavi(() => decodeImageFile(text), FormatError, text, 'not a PNG or JPEG');
});

test('truncated and corrupt PNGs: FormatError naming the file', () => {
  const full = pngjsWrite(8, 8, pattern(8, 8), 6);
  const half = tmpFile(full.subarray(0, Math.floor(full.length / 2)), 'half.png');
  throwsLavi(() => decodeImageFile(half), FormatError, half, 'PNG');
  const sigOnly = tmpFile(full.subarray(0, 12), 'sig-only.png');
  throwsLavi(() => decodeImageFile(sigOnly), FormatError, sigOnly, 'IHDR');
  // One flipped byte inside IDAT: the chunk CRC no longer matches.
  const flipped = new Uint8Array(full);
  const idat = Buffer.from(flipped).indexOf('IDAT');
  flipped[idat + 10] ^= 0xff;
  const bad = tmpFile(flipped, 'flipped.png');
  throwsLavi(() => decodeImageFile(bad), FormatError, bad, 'CRC mismatch in the IDAT chunk');
  // A valid header but an IDAT that is not zlib data (CRC made to match).
  const junk = concat([full.subarray(0, 33), chunk('IDAT', Uint8Array.from([1, 2, 3, 4, 5, 6])), chunk('IEND', new Uint8Array(0))]);
  throwsLavi(() => decodeImage(junk, { source: 'junk-idat' }), FormatError, 'junk-idat', 'PNG');
  // Valid zlib data, but one row short of what the header implies (pngjs alone would return transparent pixels).
  const rows = grid(4, 4, (x, y) => [x * 60, y * 60, 9]);
  const short = handPng(rows, 8, 2);
  const idatAt = Buffer.from(short).indexOf('IDAT') - 4;
  const shortData = concat([short.subarray(0, idatAt), chunk('IDAT', deflateSync(packRows(rows.slice(0, 3).map((r) => r.flat()), 8))), chunk('IEND', new Uint8Array(0))]);
  throwsLavi(() => decodeImage(shortData, { source: 'short-rows' }), FormatError, 'short-rows', 'inflates to 39 bytes, the header implies 52');
  // A palette index past the end of the palette.
  const pal = handPng([[[0], [3]]], 8, 3, [chunk('PLTE', Uint8Array.from([1, 2, 3, 4, 5, 6]))]);
  throwsLavi(() => decodeImage(pal, { source: 'short-palette' }), FormatError, 'short-palette', 'palette index 3 with 2 palette entries');
  // Impossible colour type / depth.
  const badType = concat([short.subarray(0, 8), ihdr(4, 4, 3, 2), short.subarray(33)]);
  throwsLavi(() => decodeImage(badType, { source: 'bad-depth' }), FormatError, 'bad-depth', 'bit depth 3');
});

test('truncated and corrupt JPEGs: FormatError naming the file', () => {
  const full = jpegBytes();
  const cut = tmpFile(full.subarray(0, full.length - 40), 'cut.jpg');
  throwsLavi(() => decodeImageFile(cut), FormatError, cut, 'truncated JPEG');
  const headOnly = tmpFile(full.subarray(0, 30), 'head-only.jpg');
  throwsLavi(() => decodeImageFile(headOnly), FormatError, headOnly, 'JPEG');
  // Garbage where the marker after APP0 should be; a segment length running past the end.
  const app0Len = (full[4]! << 8) | full[5]!;
  const garbage = new Uint8Array(full);
  garbage.fill(0x41, 4 + app0Len, 4 + app0Len + 8);
  throwsLavi(() => decodeImage(garbage, { source: 'garbage.jpg' }), FormatError, 'garbage.jpg', 'corrupt JPEG');
  const longSeg = new Uint8Array(full);
  longSeg[4] = 0xff;
  throwsLavi(() => decodeImage(longSeg, { source: 'long-segment.jpg' }), FormatError, 'long-segment.jpg', 'truncated JPEG');
  // A Huffman table that jpeg-js refuses (the library's error is wrapped).
  const b = Buffer.from(full);
  const dht = b.indexOf(Buffer.from([0xff, 0xc4]));
  const broken = new Uint8Array(full);
  broken.fill(0xff, dht + 5, dht + 21); // 16 code-length counts of 255: an impossible table
  throwsLavi(() => decodeImage(broken, { source: 'bad-huffman.jpg' }), FormatError, 'bad-huffman.jpg', 'JPEG');
});

test('absurd dimensions are refused from the header, before decoding', () => {
  // A PNG whose IHDR claims 100000 × 100000 and which has no pixel data at all.
  const huge = concat([Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), ihdr(100000, 100000, 8, 2), chunk('IEND', new Uint8Array(0))]);
  const p = tmpFile(huge, 'huge.png');
  throwsLavi(() => decodeImageFile(p), ValueError, p, '100000×100000', 'too large');
  // 9000 × 9000 is over 8192² pixels; 40000 × 10 is over the side limit.
  throwsLavi(() => decodeImage(concat([huge.subarray(0, 8), ihdr(9000, 9000, 8, 2)])), ValueError, 'too large');
  throwsLavi(() => decodeImage(concat([huge.subarray(0, 8), ihdr(40000, 10, 8, 2)])), ValueError, 'too large');
  // A zero-sized PNG is corrupt.
  throwsLavi(() => decodeImage(concat([huge.subarray(0, 8), ihdr(0, 5, 8, 2)])), FormatError, '0×5');
  // A JPEG whose frame header says 60000 × 60000.
  const j = new Uint8Array(jpegBytes());
  const sof = Buffer.from(j).indexOf(Buffer.from([0xff, 0xc0]));
  new DataView(j.buffer).setUint16(sof + 5, 60000);
  new DataView(j.buffer).setUint16(sof + 7, 60000);
  throwsLavi(() => decodeImage(j, { source: 'huge.jpg' }), ValueError, 'huge.jpg', '60000×60000');
  // Limits are options: a 16×16 image is refused under maxPixels 100, accepted under the default.
  throwsLavi(() => decodeImage(jpegBytes(), { maxPixels: 100 }), ValueError, '16×16');
  throwsLavi(() => decodeImage(pngjsWrite(16, 16, pattern(16, 16), 6), { maxSide: 15 }), ValueError, '16×16');
});

test.after(() => {
  // mkdtemp directories are left for the OS tmp cleaner only if removal fails.
  import('node:fs').then((fs) => fs.rmSync(dir, { recursive: true, force: true }));
});

test.run();
