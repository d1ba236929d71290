// Image file decoding: PNG (pngjs) and JPEG (jpeg-js) bytes → 8-bit RGB pixels, the input of preprocessImage()
// in models/image.ts.
//
// - The format is told by the file's magic bytes, never by its name. GIF, BMP, WebP, TIFF, HEIC/AVIF, QOI, ICO,
//   JPEG 2000 and JPEG XL are recognised and refused by name; anything else is "not a PNG or JPEG".
// - Output: { width, height, data: Uint8Array of width·height·3 bytes, row-major RGB, channels: 3 }.
// - PNG: decoded here (fflate inflates; pure TypeScript, so the same code runs in browsers), with the semantics of
//   pngjs, which decoded PNGs before and still writes the test images: every colour type and bit depth pngjs reads (grayscale, grayscale+alpha, RGB, RGBA, palette, 1/2/4/8/16
//   bits, Adam7 interlacing, tRNS transparency). 16-bit samples are scaled to 8 bits as round(v·255/65535).
//   Alpha (from an alpha channel, a palette's tRNS or a tRNS colour key) is composited over a background, white by
//   default: out = round((c·a + bg·(255 − a)) / 255). Gamma/colour-profile chunks are ignored (sRGB assumed).
// - JPEG: baseline and progressive, grayscale (replicated to RGB), YCbCr, and Adobe CMYK/YCCK, as jpeg-js decodes
//   them. A JPEG with no end-of-image marker after its scan data is refused as truncated (jpeg-js would otherwise
//   return the missing blocks as gray); damage inside the entropy-coded data is not detectable in general.
// - Size limits are checked from the header (PNG IHDR, JPEG SOFn) before any pixel memory is allocated: by
//   default at most 8192·8192 pixels (64 Mi) and at most 32768 on a side.
// - Errors (all LaviError): ValueError for an unreadable/missing file and for dimensions over the limits,
//   UnsupportedError for a recognised but unsupported format, FormatError for empty, unrecognised, corrupt or
//   truncated data. Every message starts with "image <name>:".
// - EXIF orientation (JPEG APP1, PNG eXIf) is applied by default, so a sideways phone photo comes out upright as
//   in every viewer and in Hugging Face's load_image (models/exif.ts); `exifOrientation: false` keeps the stored
//   pixel order.

import { Unzlib } from 'fflate';
import jpeg from 'jpeg-js';
import { FormatError, LaviError, UnsupportedError, ValueError } from '../../core/errors.js';
import { nodeFs } from '../../core/platform.js';
import { crc32 } from '../../core/crc32.js';
import { applyOrientation, jpegExif, pngExif, tiffOrientation } from './exif.js';
import type { RGBImage } from './preprocess.js';

/** Decoded pixels: 8-bit RGB, row-major, interleaved; accepted as is by preprocessImage(). */
export interface DecodedImage extends RGBImage {
  data: Uint8Array;
  channels: 3;
  /** The EXIF orientation found in the file (1 = upright or none); the pixels are already turned upright unless
   * `exifOrientation: false` was given. */
  orientation?: number;
}

export type ImageFormat = 'png' | 'jpeg';

export interface DecodeImageOptions {
  /** Names the data in error messages (decodeImage); decodeImageFile uses the path. */
  source?: string;
  /** Most pixels (width·height) accepted; default 8192·8192. */
  maxPixels?: number;
  /** Longest side accepted; default 32768. */
  maxSide?: number;
  /** RGB that transparent pixels are composited over; default white [255, 255, 255]. */
  background?: readonly [number, number, number];
  /** Turn the image upright by its EXIF orientation tag (default true). */
  exifOrientation?: boolean;
}

export const DEFAULT_MAX_PIXELS = 8192 * 8192;
export const DEFAULT_MAX_SIDE = 32768;

const PNG_MAGIC = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

function startsWith(b: Uint8Array, sig: readonly number[], at = 0): boolean {
  if (b.length < at + sig.length) return false;
  for (let i = 0; i < sig.length; i++) if (b[at + i] !== sig[i]) return false;
  return true;
}

function ascii(s: string): number[] {
  return [...s].map((c) => c.charCodeAt(0));
}

/** Formats recognised only to be refused by name. */
const OTHER_FORMATS: { name: string; test: (b: Uint8Array) => boolean }[] = [
  { name: 'GIF', test: (b) => startsWith(b, ascii('GIF87a')) || startsWith(b, ascii('GIF89a')) },
  { name: 'BMP', test: (b) => startsWith(b, ascii('BM')) && b.length >= 14 },
  { name: 'WebP', test: (b) => startsWith(b, ascii('RIFF')) && startsWith(b, ascii('WEBP'), 8) },
  { name: 'TIFF', test: (b) => startsWith(b, [0x49, 0x49, 0x2a, 0x00]) || startsWith(b, [0x4d, 0x4d, 0x00, 0x2a]) },
  { name: 'HEIC/HEIF', test: (b) => startsWith(b, ascii('ftyp'), 4) && ['heic', 'heix', 'hevc', 'heim', 'heis', 'mif1', 'msf1'].some((t) => startsWith(b, ascii(t), 8)) },
  { name: 'AVIF', test: (b) => startsWith(b, ascii('ftyp'), 4) && (startsWith(b, ascii('avif'), 8) || startsWith(b, ascii('avis'), 8)) },
  { name: 'JPEG 2000', test: (b) => startsWith(b, [0x00, 0x00, 0x00, 0x0c, 0x6a, 0x50, 0x20, 0x20]) || startsWith(b, [0xff, 0x4f, 0xff, 0x51]) },
  { name: 'JPEG XL', test: (b) => startsWith(b, [0xff, 0x0a]) || startsWith(b, [0x00, 0x00, 0x00, 0x0c, 0x4a, 0x58, 0x4c, 0x20]) },
  { name: 'QOI', test: (b) => startsWith(b, ascii('qoif')) },
  { name: 'ICO', test: (b) => startsWith(b, [0x00, 0x00, 0x01, 0x00]) && b.length >= 6 },
  { name: 'PSD', test: (b) => startsWith(b, ascii('8BPS')) },
];

/**
 * The format named by the data's magic bytes: 'png' or 'jpeg', the name of another recognised image format
 * ('GIF', 'BMP', 'WebP', ...), or null when nothing matches.
 */
export function detectImageFormat(bytes: Uint8Array): ImageFormat | string | null {
  if (startsWith(bytes, PNG_MAGIC)) return 'png';
  if (startsWith(bytes, [0xff, 0xd8, 0xff])) return 'jpeg';
  for (const f of OTHER_FORMATS) if (f.test(bytes)) return f.name;
  return null;
}

function hexHead(b: Uint8Array): string {
  return [...b.subarray(0, 8)].map((x) => x.toString(16).padStart(2, '0')).join(' ');
}

function u32be(b: Uint8Array, at: number): number {
  return ((b[at]! << 24) >>> 0) + (b[at + 1]! << 16) + (b[at + 2]! << 8) + b[at + 3]!;
}

function u16be(b: Uint8Array, at: number): number {
  return (b[at]! << 8) | b[at + 1]!;
}

interface PngHeader {
  width: number;
  height: number;
  depth: number;
  colorType: number;
  interlace: number;
}

/** The fields of a PNG's IHDR chunk (which must come first). */
function pngHeader(b: Uint8Array, name: string): PngHeader {
  if (b.length < 8 + 8 + 13 || u32be(b, 8) !== 13 || !startsWith(b, ascii('IHDR'), 12)) {
    throw new FormatError(`image ${name}: corrupt PNG (no IHDR chunk after the signature${b.length < 33 ? '; the file is truncated' : ''})`);
  }
  return { width: u32be(b, 16), height: u32be(b, 20), depth: b[24]!, colorType: b[25]!, interlace: b[28]! };
}


const PNG_CHANNELS: Record<number, number> = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };

/**
 * Walks the chunks (checking each CRC) and checks that the IDAT chunks hold one complete zlib stream of exactly the size the header implies (pngjs does
 * not: junk or short image data decodes to transparent pixels without an error).
 */
function checkPngData(b: Uint8Array, h: PngHeader, name: string): PngData {
  const channels = PNG_CHANNELS[h.colorType];
  if (channels === undefined || ![1, 2, 4, 8, 16].includes(h.depth) || (h.colorType === 3 && h.depth === 16) || (h.colorType !== 0 && h.colorType !== 3 && h.depth < 8)) {
    throw new FormatError(`image ${name}: corrupt PNG (colour type ${h.colorType} with bit depth ${h.depth})`);
  }
  const bits = channels * h.depth;
  const rowBytes = (w: number) => Math.ceil((w * bits) / 8) + 1; // plus the filter-type byte
  let expected = 0;
  if (h.interlace === 0) expected = h.height * rowBytes(h.width);
  else {
    for (const [x0, y0, dx, dy] of ADAM7) {
      const pw = Math.max(0, Math.ceil((h.width - x0) / dx)), ph = Math.max(0, Math.ceil((h.height - y0) / dy));
      if (pw > 0 && ph > 0) expected += ph * rowBytes(pw);
    }
  }
  const idat: Uint8Array[] = [];
  let plte: Uint8Array | null = null;
  let trns: Uint8Array | null = null;
  let off = 8;
  while (off + 12 <= b.length) {
    const len = u32be(b, off);
    const type = String.fromCharCode(b[off + 4]!, b[off + 5]!, b[off + 6]!, b[off + 7]!);
    if (off + 12 + len > b.length) throw new FormatError(`image ${name}: truncated PNG (the ${type} chunk at byte ${off} runs past the end of the data)`);
    if (crc32(b.subarray(off + 4, off + 8 + len)) !== u32be(b, off + 8 + len)) {
      throw new FormatError(`image ${name}: corrupt PNG (CRC mismatch in the ${type} chunk at byte ${off})`);
    }
    const data = b.subarray(off + 8, off + 8 + len);
    if (type === 'IDAT') idat.push(data);
    else if (type === 'PLTE') plte = data;
    else if (type === 'tRNS') trns = data;
    off += 12 + len;
    if (type === 'IEND') break;
  }
  if (idat.length === 0) throw new FormatError(`image ${name}: truncated PNG (no image data)`);
  if (h.colorType === 3 && (!plte || plte.length % 3 !== 0 || plte.length === 0)) throw new FormatError(`image ${name}: corrupt PNG (a palette image without a valid PLTE chunk)`);
  // Inflated in pieces, refusing output past the size the header implies (a small file cannot expand to gigabytes).
  const raw = new Uint8Array(expected);
  let got = 0;
  let over = false;
  let ended = false;
  try {
    const z = new Unzlib((chunk, final) => {
      if (got + chunk.length > expected) over = true;
      else raw.set(chunk, got);
      got += chunk.length;
      if (over) throw new FormatError('more data than the header implies');
      if (final) ended = true;
    });
    for (let i = 0; i < idat.length; i++) {
      const d = idat[i]!;
      for (let o = 0; o < d.length; o += 65536) z.push(d.subarray(o, Math.min(d.length, o + 65536)), i === idat.length - 1 && o + 65536 >= d.length);
    }
  } catch (e) {
    if (!over) throw new FormatError(`image ${name}: corrupt or truncated PNG image data (zlib: ${why(e)})`);
  }
  if (got !== expected || !ended) {
    throw new FormatError(`image ${name}: corrupt PNG (the image data inflates to ${over ? 'more than ' + expected : got} bytes${!ended && !over ? ' and the zlib stream is incomplete' : ''}, the header implies ${expected})`);
  }
  return { raw, plte, trns };
}

interface PngData {
  /** The inflated, still filtered scanlines (each with its filter-type byte). */
  raw: Uint8Array;
  plte: Uint8Array | null;
  trns: Uint8Array | null;
}

const ADAM7 = [[0, 0, 8, 8], [4, 0, 8, 8], [0, 4, 4, 8], [2, 0, 4, 4], [0, 2, 2, 4], [1, 0, 2, 2], [0, 1, 1, 2]] as const;

/** Undoes the scanline filters of one (sub)image of w×h pixels starting at raw[at]; returns the rows, unfiltered. */
function unfilter(raw: Uint8Array, at: number, w: number, h: number, bits: number, name: string): Uint8Array {
  const len = Math.ceil((w * bits) / 8);
  const bpp = Math.max(1, bits >> 3);
  const out = new Uint8Array(len * h);
  for (let y = 0; y < h; y++) {
    const f = raw[at + y * (len + 1)]!;
    const src = at + y * (len + 1) + 1;
    const row = y * len;
    const prev = row - len;
    for (let i = 0; i < len; i++) {
      const x = raw[src + i]!;
      const a = i >= bpp ? out[row + i - bpp]! : 0;
      const b = y > 0 ? out[prev + i]! : 0;
      let v: number;
      switch (f) {
        case 0: v = x; break;
        case 1: v = x + a; break;
        case 2: v = x + b; break;
        case 3: v = x + ((a + b) >> 1); break;
        case 4: {
          const c = y > 0 && i >= bpp ? out[prev + i - bpp]! : 0;
          const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
          v = x + (pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
          break;
        }
        default:
          throw new FormatError(`image ${name}: corrupt PNG (scanline filter type ${f})`);
      }
      out[row + i] = v & 255;
    }
  }
  return out;
}

/** RGBA8 pixels of a checked PNG, as pngjs gives them: samples scaled to 8 bits as round(v·255/max), a palette
 *  expanded with its tRNS alphas, a tRNS colour key (compared at the stored depth) made transparent. */
function pngPixels(d: PngData, h: PngHeader, name: string): Uint8Array {
  const { width: W, height: H, depth, colorType } = h;
  const ch = PNG_CHANNELS[colorType]!;
  const max = (1 << depth) - 1;
  const scale = (v: number) => (depth === 8 ? v : Math.round((v * 255) / max));
  const rgba = new Uint8Array(W * H * 4);
  const pal = d.plte;
  const palCount = pal ? pal.length / 3 : 0;
  const key = d.trns && (colorType === 0 || colorType === 2) ? d.trns : null;
  const keyGray = key && key.length >= 2 ? u16be(key, 0) : -1;
  const keyRgb = key && key.length >= 6 ? [u16be(key, 0), u16be(key, 2), u16be(key, 4)] : null;
  const s = new Array<number>(4);
  const place = (rows: Uint8Array, pw: number, ph: number, x0: number, y0: number, dx: number, dy: number) => {
    const len = Math.ceil((pw * ch * depth) / 8);
    for (let y = 0; y < ph; y++) {
      for (let x = 0; x < pw; x++) {
        for (let c = 0; c < ch; c++) {
          const k = x * ch + c;
          if (depth === 8) s[c] = rows[y * len + k]!;
          else if (depth === 16) s[c] = (rows[y * len + 2 * k]! << 8) | rows[y * len + 2 * k + 1]!;
          else {
            const bit = k * depth;
            s[c] = (rows[y * len + (bit >> 3)]! >> (8 - depth - (bit & 7))) & max;
          }
        }
        const o = ((y0 + y * dy) * W + (x0 + x * dx)) * 4;
        if (colorType === 3) {
          const i = s[0]!;
          if (i >= palCount) throw new FormatError(`image ${name}: corrupt PNG (palette index ${i} with ${palCount} palette entries)`);
          rgba[o] = pal![i * 3]!;
          rgba[o + 1] = pal![i * 3 + 1]!;
          rgba[o + 2] = pal![i * 3 + 2]!;
          rgba[o + 3] = d.trns && i < d.trns.length ? d.trns[i]! : 255;
        } else if (colorType === 0 || colorType === 4) {
          rgba[o] = rgba[o + 1] = rgba[o + 2] = scale(s[0]!);
          rgba[o + 3] = colorType === 4 ? scale(s[1]!) : s[0] === keyGray ? 0 : 255;
        } else {
          rgba[o] = scale(s[0]!);
          rgba[o + 1] = scale(s[1]!);
          rgba[o + 2] = scale(s[2]!);
          rgba[o + 3] = colorType === 6 ? scale(s[3]!) : keyRgb && s[0] === keyRgb[0] && s[1] === keyRgb[1] && s[2] === keyRgb[2] ? 0 : 255;
        }
      }
    }
  };
  const bits = ch * depth;
  if (h.interlace === 0) place(unfilter(d.raw, 0, W, H, bits, name), W, H, 0, 0, 1, 1);
  else {
    let at = 0;
    for (const [x0, y0, dx, dy] of ADAM7) {
      const pw = Math.max(0, Math.ceil((W - x0) / dx)), ph = Math.max(0, Math.ceil((H - y0) / dy));
      if (pw === 0 || ph === 0) continue;
      place(unfilter(d.raw, at, pw, ph, bits, name), pw, ph, x0, y0, dx, dy);
      at += ph * (Math.ceil((pw * bits) / 8) + 1);
    }
  }
  return rgba;
}

function jpegHeader(b: Uint8Array, name: string): { width: number; height: number } {
  let off = 2;
  let size: { width: number; height: number } | undefined;
  while (off + 4 <= b.length) {
    if (b[off] !== 0xff) throw new FormatError(`image ${name}: corrupt JPEG (expected a marker at byte ${off}, found 0x${b[off]!.toString(16)})`);
    const marker = b[off + 1]!;
    if (marker === 0xff) {
      off++; // fill byte
      continue;
    }
    if (marker === 0xd8 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      off += 2; // markers without a length
      continue;
    }
    if (marker === 0xd9) break; // EOI before any scan
    const len = u16be(b, off + 2);
    if (len < 2 || off + 2 + len > b.length) throw new FormatError(`image ${name}: truncated JPEG (a segment at byte ${off} runs past the end of the data)`);
    const isSof = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
    if (isSof) {
      if (len < 8) throw new FormatError(`image ${name}: corrupt JPEG (frame header too short)`);
      size = { height: u16be(b, off + 5), width: u16be(b, off + 7) };
    }
    if (marker === 0xda) {
      // Start of scan: entropy-coded data follows, in which 0xFF is always stuffed (FF 00) or a restart marker;
      // the image is complete only if an EOI marker (FF D9) comes after it.
      if (!size) throw new FormatError(`image ${name}: corrupt JPEG (scan before any frame header)`);
      let eoi = false;
      for (let k = off + 2 + len; k + 1 < b.length; k++) {
        if (b[k] === 0xff && b[k + 1] === 0xd9) {
          eoi = true;
          break;
        }
      }
      if (!eoi) throw new FormatError(`image ${name}: truncated JPEG (no end-of-image marker after the scan data)`);
      return size;
    }
    off += 2 + len;
  }
  if (!size) throw new FormatError(`image ${name}: corrupt or truncated JPEG (no frame header)`);
  throw new FormatError(`image ${name}: truncated JPEG (no scan data)`);
}

function checkSize(width: number, height: number, fmt: string, name: string, opts: DecodeImageOptions): void {
  const maxPixels = opts.maxPixels ?? DEFAULT_MAX_PIXELS;
  const maxSide = opts.maxSide ?? DEFAULT_MAX_SIDE;
  if (width < 1 || height < 1) throw new FormatError(`image ${name}: corrupt ${fmt} (size ${width}×${height})`);
  if (width > maxSide || height > maxSide || width * height > maxPixels) {
    throw new ValueError(`image ${name}: ${width}×${height} ${fmt} is too large (limits: ${maxPixels} pixels, ${maxSide} on a side)`);
  }
}

/** The library's message, with the library named, for wrapping. */
function why(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function rgbaToRgb(rgba: Uint8Array, w: number, h: number, bg: readonly [number, number, number]): Uint8Array {
  const n = w * h;
  const out = new Uint8Array(n * 3);
  for (let p = 0; p < n; p++) {
    const a = rgba[p * 4 + 3]!;
    for (let c = 0; c < 3; c++) {
      const v = rgba[p * 4 + c]!;
      // Integer round-half-up of (v·a + bg·(255 − a)) / 255.
      out[p * 3 + c] = a === 255 ? v : Math.floor((v * a + bg[c]! * (255 - a) + 127) / 255);
    }
  }
  return out;
}

function decodePng(bytes: Uint8Array, name: string, opts: DecodeImageOptions): DecodedImage {
  const header = pngHeader(bytes, name);
  const { width, height } = header;
  checkSize(width, height, 'PNG', name, opts);
  const rgba = pngPixels(checkPngData(bytes, header, name), header, name);
  const bg = opts.background ?? [255, 255, 255];
  return { width, height, data: rgbaToRgb(rgba, width, height, bg), channels: 3 };
}

function decodeJpeg(bytes: Uint8Array, name: string, opts: DecodeImageOptions): DecodedImage {
  const { width, height } = jpegHeader(bytes, name);
  checkSize(width, height, 'JPEG', name, opts);
  const maxPixels = opts.maxPixels ?? DEFAULT_MAX_PIXELS;
  let img: { width: number; height: number; data: Uint8Array };
  try {
    img = jpeg.decode(bytes, {
      useTArray: true,
      formatAsRGBA: false,
      maxResolutionInMP: Math.max(maxPixels, width * height) / 1e6 + 1,
      // Component planes, block buffers and output: generously 16 bytes a pixel, plus tables.
      maxMemoryUsageInMB: Math.ceil((width * height * 16) / (1 << 20)) + 64,
    });
  } catch (e) {
    throw new FormatError(`image ${name}: corrupt or truncated JPEG (jpeg-js: ${why(e)})`);
  }
  if (img.width !== width || img.height !== height || img.data.length !== width * height * 3) {
    throw new FormatError(`image ${name}: corrupt JPEG (decoded ${img.width}×${img.height} with ${img.data.length} bytes, header says ${width}×${height})`);
  }
  return { width, height, data: img.data, channels: 3 };
}

/** Decodes PNG or JPEG bytes (told apart by their magic bytes) to 8-bit RGB. */
export function decodeImage(bytes: Uint8Array, opts: DecodeImageOptions = {}): DecodedImage {
  const name = opts.source ?? '<bytes>';
  if (!(bytes instanceof Uint8Array)) throw new ValueError(`image ${name}: decodeImage takes a Uint8Array`);
  if (bytes.length === 0) throw new FormatError(`image ${name}: the file is empty`);
  const bg = opts.background;
  if (bg !== undefined && (bg.length !== 3 || bg.some((v) => !Number.isInteger(v) || v < 0 || v > 255))) {
    throw new ValueError(`image ${name}: background must be three integers in 0..255, got ${JSON.stringify(bg)}`);
  }
  const fmt = detectImageFormat(bytes);
  if (fmt === 'png' || fmt === 'jpeg') {
    const img = fmt === 'png' ? decodePng(bytes, name, opts) : decodeJpeg(bytes, name, opts);
    const exif = fmt === 'png' ? pngExif(bytes) : jpegExif(bytes);
    const orientation = exif ? tiffOrientation(exif) : 1;
    const upright = opts.exifOrientation === false ? img : applyOrientation(img, orientation);
    return { ...upright, orientation };
  }
  if (fmt !== null) throw new UnsupportedError(`image ${name}: unsupported image format ${fmt} (only PNG and JPEG are read)`);
  throw new FormatError(`image ${name}: not a PNG or JPEG file (${bytes.length} bytes starting ${hexHead(bytes)})`);
}

/** Reads and decodes a PNG or JPEG file to 8-bit RGB. */
export function decodeImageFile(path: string, opts: Omit<DecodeImageOptions, 'source'> = {}): DecodedImage {
  let bytes: Uint8Array;
  try {
    bytes = nodeFs('decodeImageFile(path)').readFileSync(path);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const reason = err.code === 'ENOENT' ? 'no such file' : err.code === 'EISDIR' ? 'is a directory' : err.code === 'EACCES' ? 'permission denied' : err.message;
    throw new ValueError(`image ${path}: cannot read the file (${reason})`);
  }
  try {
    return decodeImage(bytes, { ...opts, source: path });
  } catch (e) {
    if (e instanceof LaviError) throw e;
    throw new FormatError(`image ${path}: ${why(e)}`);
  }
}
