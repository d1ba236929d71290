// The Hugging Face LLaVA-OneVision image processor for one image (transformers LlavaOnevisionImageProcessor, the
// slow PIL-based one, and LlavaOnevisionProcessor._get_number_of_features), in TypeScript.
//
// For an RGB image of H×W pixels, a crop/tile size S (preprocessor_config.json `size`, 384 for the released
// models) and the grid pinpoints (candidate resolutions (h, w), multiples of S):
//
// 1. best resolution (select_best_resolution): for each pinpoint (h, w), scale = min(w / W, h / H), the image
//    downscaled to int(W · scale) × int(H · scale); effective = min(that area, H · W), wasted = h · w − effective;
//    keep the first pinpoint with the largest effective area, ties broken by the smallest waste.
// 2. resize keeping the aspect ratio (get_patch_output_size): if w / W < h / H the width becomes w and the height
//    min(ceil(H · w / W), h); otherwise the height becomes h and the width min(ceil(W · h / H), w). PIL resampling,
//    bit exact (../image/resample.ts; `resample` 3 = bicubic for the released models).
// 3. zero padding to (h, w), centred (_pad_for_patching): before = (h − h') // 2, after = before + (h − h') % 2,
//    i.e. the odd pixel goes to the bottom / right; the padding is 0 in the 8-bit image (−1 after mean = std = 0.5).
// 4. tiles: the padded image cut into S×S tiles in row-major order (rows = h / S, cols = w / S).
// 5. base image: the ORIGINAL image resized to S×S (aspect ratio not kept), put first.
// 6. per tile: v · rescale_factor computed in float64 and stored as float32 (transformers rescale), then
//    (v − mean) / std in float32 (transformers normalize) → pixel_values [1 + rows·cols, 3, S, S].
//
// Token count (what LlavaOnevisionForConditionalGeneration's pack_image_features produces, = the number of
// `<image>` placeholders the processor expands): n = S / patch_size tokens per side of a tile; base n²; the tile
// grid is (rows·n) × (cols·n) tokens, unpadded to the image's aspect ratio (if W / H > grid w / grid h the height
// becomes int(round(H · (grid w / W), 7)) and the same padding is removed on both sides, i.e. grid h − 2 ·
// ((grid h − new h) // 2); else the same for the width); then, anyres_max_N, ratio = sqrt(h · w / (N · n²)) and if
// ratio > 1.1 the map is resized to int(h // ratio) × int(w // ratio) (Python float floor division, pymath.ts);
// then one image_newline token per row. Total = n² + h · w + h.

import { readJsonFile } from '../loading/json-fields.js';
import { UnsupportedError, ValueError } from '../../core/errors.js';
import { toRgb, type RGBImage } from '../image/preprocess.js';
import { intFloorDiv, pyFloorDiv, pyInt, pyIntRound7 } from './pymath.js';
import { requireResample, resizePil } from '../image/resample.js';

// ---------------------------------------------------------------------------------------------------------------
// configuration
// ---------------------------------------------------------------------------------------------------------------

/** The preprocessor_config.json fields this processor honours, validated. */
export interface LlavaOnevisionPreprocessorConfig {
  /** Tile and base size S (from `size`: {height, width} square, or {shortest_edge}). */
  size: number;
  /** `crop_size` when given (must equal `size`: the tiles are cut at `size` by transformers). */
  cropSize: number | null;
  /** Candidate resolutions, (height, width) pairs, each a multiple of `size`. */
  imageGridPinpoints: [number, number][];
  /** PIL filter number: 1 lanczos, 2 bilinear, 3 bicubic, 4 box, 5 hamming. */
  resample: number;
  doRescale: boolean;
  rescaleFactor: number;
  doNormalize: boolean;
  imageMean: [number, number, number];
  imageStd: [number, number, number];
  doPad: boolean;
  doConvertRgb: boolean;
  doResize: boolean;
}

/** The config.json fields of LlavaOnevisionForConditionalGeneration that decide the image's token count. */
export interface LlavaOnevisionImageModelConfig {
  /** vision_config.image_size: must equal the processor's S. */
  imageSize: number;
  /** vision_config.patch_size. */
  patchSize: number;
  /** `image_grid_pinpoints` of config.json (pack_image_features reads the model's copy). */
  imageGridPinpoints: [number, number][];
  /** N of `vision_aspect_ratio` "anyres_max_N". */
  maxNumPatches: number;
}

/** Limits that keep hostile configs bounded in time and memory. */
export interface ProcessorLimits {
  /** Most tiles one pinpoint may ask for (rows · cols); default 144 (the released models use at most 36). */
  maxTiles?: number;
  /** Most pinpoints in the list; default 4096. */
  maxPinpoints?: number;
  /** Largest S; default 2048. */
  maxSize?: number;
  /** Most values in one image's pixel_values, (1 + tiles) · 3 · S²; default 2^27 (512 MiB as float32; the released
   * models need 16.4 M). */
  maxPixelValues?: number;
}

const DEFAULT_LIMITS: Required<ProcessorLimits> = { maxTiles: 144, maxPinpoints: 4096, maxSize: 2048, maxPixelValues: 2 ** 27 };

/** transformers' default image_grid_pinpoints (LlavaOnevisionConfig and the image processor): 384..2304 in steps of
 * 384, heights outer. */
export const DEFAULT_PINPOINTS: readonly [number, number][] = Object.freeze(
  Array.from({ length: 36 }, (_, i) => [384 * (Math.floor(i / 6) + 1), 384 * ((i % 6) + 1)] as [number, number]),
);

type Json = Record<string, unknown>;

function show(v: unknown): string {
  let s: string | undefined;
  try {
    s = JSON.stringify(v);
  } catch {
    s = String(v);
  }
  if (s === undefined) return v === undefined ? 'nothing' : String(v);
  return s.length > 100 ? s.slice(0, 97) + '...' : s;
}

function isObj(v: unknown): v is Json {
  return !!v && typeof v === 'object' && !Array.isArray(v);
}

function posInt(v: unknown, where: string, field: string, max?: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || (max !== undefined && v > max)) {
    throw new ValueError(`${where}: field '${field}' must be a positive integer${max !== undefined ? ` ≤ ${max}` : ''}, got ${show(v)}`);
  }
  return v;
}

function boolField(obj: Json, field: string, where: string, dflt: boolean): boolean {
  const v = obj[field];
  if (v === undefined || v === null) return dflt;
  if (typeof v !== 'boolean') throw new ValueError(`${where}: field '${field}' must be true or false, got ${show(v)}`);
  return v;
}

function triple(obj: Json, field: string, where: string, dflt: [number, number, number], nonzero: boolean): [number, number, number] {
  let v = obj[field];
  if (v === undefined || v === null) return dflt;
  if (typeof v === 'number') v = [v, v, v];
  if (!Array.isArray(v) || v.length !== 3 || !v.every((x) => typeof x === 'number' && Number.isFinite(x) && (!nonzero || x !== 0))) {
    throw new ValueError(`${where}: field '${field}' must be a number or a list of 3 finite numbers${nonzero ? ' (none zero)' : ''}, got ${show(obj[field])}`);
  }
  return [v[0], v[1], v[2]];
}

/** A transformers size dict ({height, width} or {shortest_edge[, longest_edge]}, or a bare int) → square side. */
function sizeField(v: unknown, where: string, field: string, maxSize: number): number {
  if (typeof v === 'number') return posInt(v, where, field, maxSize);
  if (Array.isArray(v) && v.length === 2) {
    const h = posInt(v[0], where, `${field}[0]`, maxSize), w = posInt(v[1], where, `${field}[1]`, maxSize);
    if (h !== w) throw new UnsupportedError(`${where}: field '${field}' must be square (tiles are S×S), got ${show(v)}`);
    return h;
  }
  if (isObj(v)) {
    if ('height' in v || 'width' in v) {
      const h = posInt(v.height, where, `${field}.height`, maxSize), w = posInt(v.width, where, `${field}.width`, maxSize);
      if (h !== w) throw new UnsupportedError(`${where}: field '${field}' must be square (tiles are S×S), got ${show(v)}`);
      return h;
    }
    if ('shortest_edge' in v) return posInt(v.shortest_edge, where, `${field}.shortest_edge`, maxSize);
  }
  throw new ValueError(`${where}: field '${field}' must be {"height": S, "width": S} or {"shortest_edge": S}, got ${show(v)}`);
}

/** image_grid_pinpoints: a list of [height, width] pairs, each a positive multiple of S. */
export function parsePinpoints(v: unknown, where: string, S: number, limits: ProcessorLimits = {}): [number, number][] {
  const lim = { ...DEFAULT_LIMITS, ...limits };
  const field = 'image_grid_pinpoints';
  if (typeof v === 'string') {
    throw new UnsupportedError(`${where}: field '${field}' is a string (${show(v)}); only the list form [[h, w], ...] of Hugging Face configs is supported`);
  }
  if (!Array.isArray(v) || v.length === 0) throw new ValueError(`${where}: field '${field}' must be a non-empty list of [height, width] pairs, got ${show(v)}`);
  if (v.length > lim.maxPinpoints) throw new ValueError(`${where}: field '${field}' has ${v.length} pinpoints, more than the limit of ${lim.maxPinpoints}`);
  const out: [number, number][] = [];
  v.forEach((p, i) => {
    if (!Array.isArray(p) || p.length !== 2) throw new ValueError(`${where}: field '${field}[${i}]' must be a [height, width] pair, got ${show(p)}`);
    const [h, w] = p as unknown[];
    for (const [x, name] of [[h, 'height'], [w, 'width']] as const) {
      if (typeof x !== 'number' || !Number.isInteger(x) || x < S || x % S !== 0) {
        throw new ValueError(`${where}: field '${field}[${i}]' ${name} must be a positive multiple of the tile size ${S}, got ${show(p)}`);
      }
    }
    const tiles = ((h as number) / S) * ((w as number) / S);
    if (tiles > lim.maxTiles) {
      throw new ValueError(`${where}: field '${field}[${i}]' ${show(p)} makes ${tiles} tiles of ${S}×${S}, more than the limit of ${lim.maxTiles}`);
    }
    if ((1 + tiles) * 3 * S * S > lim.maxPixelValues) {
      throw new ValueError(`${where}: field '${field}[${i}]' ${show(p)} makes pixel_values of ${1 + tiles}×3×${S}×${S} = ${(1 + tiles) * 3 * S * S} values, more than the limit of ${lim.maxPixelValues}`);
    }
    out.push([h as number, w as number]);
  });
  return out;
}

/** Validates a parsed preprocessor_config.json; `where` names the file in every error. */
export function parsePreprocessorConfig(json: unknown, where = 'preprocessor_config.json', limits: ProcessorLimits = {}): LlavaOnevisionPreprocessorConfig {
  const lim = { ...DEFAULT_LIMITS, ...limits };
  if (!isObj(json)) throw new ValueError(`${where}: not a JSON object`);
  const type = json.image_processor_type;
  if (type !== undefined && type !== 'LlavaOnevisionImageProcessor' && type !== 'LlavaOnevisionImageProcessorFast') {
    throw new UnsupportedError(`${where}: field 'image_processor_type' is ${show(type)}; this processor implements LlavaOnevisionImageProcessor`);
  }
  if (json.size === undefined || json.size === null) throw new ValueError(`${where}: field 'size' is missing (the tile size, e.g. {"height": 384, "width": 384})`);
  const size = sizeField(json.size, where, 'size', lim.maxSize);
  let cropSize: number | null = null;
  if (json.crop_size !== undefined && json.crop_size !== null) {
    cropSize = sizeField(json.crop_size, where, 'crop_size', lim.maxSize);
    if (cropSize !== size) {
      throw new UnsupportedError(`${where}: field 'crop_size' (${cropSize}) differs from 'size' (${size}); transformers versions disagree on which one cuts the tiles, so this is refused`);
    }
  }
  // absent: transformers' default list (which needs a tile size dividing 384)
  const imageGridPinpoints = parsePinpoints(json.image_grid_pinpoints ?? DEFAULT_PINPOINTS, where, size, lim);
  const r = requireResample(json.resample ?? 3, `${where}: field 'resample'`);
  const rf = json.rescale_factor ?? 1 / 255;
  if (typeof rf !== 'number' || !Number.isFinite(rf) || rf <= 0) throw new ValueError(`${where}: field 'rescale_factor' must be a positive number, got ${show(json.rescale_factor)}`);
  return {
    size,
    cropSize,
    imageGridPinpoints,
    resample: r,
    doRescale: boolField(json, 'do_rescale', where, true),
    rescaleFactor: rf,
    doNormalize: boolField(json, 'do_normalize', where, true),
    // OPENAI_CLIP_MEAN / STD are transformers' defaults when the fields are absent
    imageMean: triple(json, 'image_mean', where, [0.48145466, 0.4578275, 0.40821073], false),
    imageStd: triple(json, 'image_std', where, [0.26862954, 0.26130258, 0.27577711], true),
    doPad: boolField(json, 'do_pad', where, true),
    doConvertRgb: boolField(json, 'do_convert_rgb', where, true),
    doResize: boolField(json, 'do_resize', where, true),
  };
}

/** Reads and validates a preprocessor_config.json file. */
export async function loadPreprocessorConfig(path: string, limits: ProcessorLimits = {}): Promise<LlavaOnevisionPreprocessorConfig> {
  return parsePreprocessorConfig(await readJsonFile(path), path, limits);
}

/** Python's str.strip(chars) with a set of characters. */
function pyStrip(s: string, chars: string): string {
  let a = 0, b = s.length;
  while (a < b && chars.includes(s[a]!)) a++;
  while (b > a && chars.includes(s[b - 1]!)) b--;
  return s.slice(a, b);
}

/** Validates the image-related fields of a LLaVA-OneVision config.json; `where` names the file in every error. */
export function parseImageModelConfig(json: unknown, where = 'config.json', limits: ProcessorLimits = {}): LlavaOnevisionImageModelConfig {
  const lim = { ...DEFAULT_LIMITS, ...limits };
  if (!isObj(json)) throw new ValueError(`${where}: not a JSON object`);
  const vc = json.vision_config;
  if (!isObj(vc)) throw new ValueError(`${where}: field 'vision_config' must be an object, got ${show(vc)}`);
  const imageSize = posInt(vc.image_size, where, 'vision_config.image_size', lim.maxSize);
  const patchSize = posInt(vc.patch_size, where, 'vision_config.patch_size', imageSize);
  const ar = json.vision_aspect_ratio ?? 'anyres_max_9';
  if (typeof ar !== 'string') throw new ValueError(`${where}: field 'vision_aspect_ratio' must be a string like "anyres_max_9", got ${show(ar)}`);
  // transformers: int(vision_aspect_ratio.strip("anyres_max_")), i.e. the characters a n y r e s _ m x stripped
  const n = pyStrip(ar, 'anyres_max_');
  if (!/^[0-9]+$/.test(n) || Number(n) < 1 || Number(n) > 1e6) {
    throw new ValueError(`${where}: field 'vision_aspect_ratio' must be "anyres_max_N" with N a positive integer, got ${show(ar)}`);
  }
  const strategy = json.vision_feature_select_strategy ?? 'full';
  if (strategy !== 'full') {
    throw new UnsupportedError(`${where}: field 'vision_feature_select_strategy' is ${show(strategy)}; only "full" fits a SigLIP tower (no CLS token to drop)`);
  }
  const imageGridPinpoints = parsePinpoints(json.image_grid_pinpoints ?? DEFAULT_PINPOINTS, where, imageSize, lim);
  return { imageSize, patchSize, imageGridPinpoints, maxNumPatches: Number(n) };
}

/** Checks that the preprocessor and the model agree on what decides the tiles and the token count. */
export function checkConsistent(pre: LlavaOnevisionPreprocessorConfig, model: LlavaOnevisionImageModelConfig, preWhere = 'preprocessor_config.json', modelWhere = 'config.json'): void {
  if (pre.size !== model.imageSize) {
    throw new ValueError(`${preWhere}: field 'size' (${pre.size}) differs from ${modelWhere} 'vision_config.image_size' (${model.imageSize}); the vision tower takes tiles of its image size`);
  }
  const a = JSON.stringify(pre.imageGridPinpoints), b = JSON.stringify(model.imageGridPinpoints);
  if (a !== b) throw new ValueError(`${preWhere}: field 'image_grid_pinpoints' differs from ${modelWhere} 'image_grid_pinpoints' (${show(pre.imageGridPinpoints)} vs ${show(model.imageGridPinpoints)})`);
}

// ---------------------------------------------------------------------------------------------------------------
// geometry
// ---------------------------------------------------------------------------------------------------------------

/** HF select_best_resolution: the pinpoint (height, width) for an image of `height`×`width`. When every pinpoint
 * rounds a side to 0 pixels (a 1×10000 strip) all effective areas are 0 and the least wasteful one wins, as in
 * transformers (0 == 0 and wasted < inf). */
export function selectBestResolution(height: number, width: number, pinpoints: readonly (readonly [number, number])[]): [number, number] {
  if (pinpoints.length === 0) throw new ValueError('llava-onevision: image_grid_pinpoints is empty');
  let best: [number, number] = [pinpoints[0]![0], pinpoints[0]![1]];
  let maxEffective = 0;
  let minWasted = Infinity;
  for (const [h, w] of pinpoints) {
    const scale = Math.min(w / width, h / height);
    const dw = pyInt(width * scale), dh = pyInt(height * scale);
    const effective = Math.min(dw * dh, width * height);
    const wasted = w * h - effective;
    if (effective > maxEffective || (effective === maxEffective && wasted < minWasted)) {
      maxEffective = effective;
      minWasted = wasted;
      best = [h, w];
    }
  }
  return best;
}

/** HF get_patch_output_size: the size an image of `height`×`width` is resized to inside `target` (h, w). */
export function patchOutputSize(height: number, width: number, target: readonly [number, number]): [number, number] {
  const [th, tw] = target;
  const scaleW = tw / width, scaleH = th / height;
  if (scaleW < scaleH) return [Math.min(Math.ceil(height * scaleW), th), tw];
  return [th, Math.min(Math.ceil(width * scaleH), tw)];
}

/** HF _get_padding_size: ((top, bottom), (left, right)) to pad `size` to `target`. */
export function paddingFor(size: readonly [number, number], target: readonly [number, number]): { top: number; bottom: number; left: number; right: number } {
  const dy = target[0] - size[0], dx = target[1] - size[1];
  const py = Math.floor(dy / 2), px = Math.floor(dx / 2);
  return { top: py, bottom: py + (dy - 2 * py), left: px, right: px + (dx - 2 * px) };
}

/** The token-level layout of one image's packed features. */
export interface TokenLayout {
  /** Tokens per side of one tile, n = image_size // patch_size. */
  tokensPerSide: number;
  /** Base image tokens, n². */
  baseTokens: number;
  /** Tile grid in tokens before unpadding: (rows · n, cols · n). */
  gridTokens: [number, number];
  /** After unpadding to the image's aspect ratio: (h, w), and the rows / columns removed before and after. */
  unpadded: [number, number];
  unpadOffset: [number, number];
  /** anyres_max_N: sqrt(h · w / (N · n²)). */
  ratio: number;
  /** Whether ratio > 1.1 (the map is resized bilinearly). */
  downscaled: boolean;
  /** Final map (rows, cols) before the newline column. */
  final: [number, number];
  /** Total: n² + rows · cols + rows. */
  numTokens: number;
}

/** The token layout HF's pack_image_features gives an image of `height`×`width` (and the count the processor
 * expands `<image>` to, which is the same arithmetic). */
export function tokenLayout(height: number, width: number, model: LlavaOnevisionImageModelConfig): TokenLayout {
  if (!Number.isInteger(height) || !Number.isInteger(width) || height < 1 || width < 1) {
    throw new ValueError(`llava-onevision: image size must be positive integers, got ${height}×${width}`);
  }
  const S = model.imageSize;
  const n = intFloorDiv(S, model.patchSize); // 384 // 14 = 27 (the conv drops the last 6 pixels)
  const best = selectBestResolution(height, width, model.imageGridPinpoints);
  const rows = intFloorDiv(best[0], S), cols = intFloorDiv(best[1], S);
  const gh = rows * n, gw = cols * n;
  let h = gh, w = gw;
  let off: [number, number] = [0, 0];
  if (width / height > gw / gh) {
    const newH = pyIntRound7(height * (gw / width));
    const pad = intFloorDiv(gh - newH, 2);
    h = gh - 2 * pad;
    off = [pad, 0];
  } else {
    const newW = pyIntRound7(width * (gh / height));
    const pad = intFloorDiv(gw - newW, 2);
    w = gw - 2 * pad;
    off = [0, pad];
  }
  const ratio = Math.sqrt((h * w) / (model.maxNumPatches * n * n));
  const downscaled = ratio > 1.1;
  let fh = h, fw = w;
  if (downscaled) {
    fh = pyInt(pyFloorDiv(h, ratio));
    fw = pyInt(pyFloorDiv(w, ratio));
    if (fh < 1 || fw < 1) {
      throw new ValueError(`llava-onevision: a ${width}×${height} image gives a ${h}×${w} token map that anyres_max_${model.maxNumPatches} would shrink to ${fh}×${fw} (torch interpolate refuses an empty output)`);
    }
  }
  return {
    tokensPerSide: n,
    baseTokens: n * n,
    gridTokens: [gh, gw],
    unpadded: [h, w],
    unpadOffset: off,
    ratio,
    downscaled,
    final: [fh, fw],
    numTokens: n * n + fh * fw + fh,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// processing
// ---------------------------------------------------------------------------------------------------------------

/** What processImage returns for one image. */
export interface LlavaOnevisionImageInputs {
  /** pixel_values [1 + rows·cols, 3, S, S], base image first, then the tiles row-major. */
  pixelValues: Float32Array;
  shape: [number, number, number, number];
  /** The same pixels as 8-bit values before rescaling and normalisation, same layout. */
  pixels8: Uint8Array;
  /** image_sizes: the original (height, width). */
  imageSize: [number, number];
  /** The chosen pinpoint (height, width). */
  bestResolution: [number, number];
  /** Size the image was resized to before padding (height, width). */
  resizedSize: [number, number];
  padding: { top: number; bottom: number; left: number; right: number };
  /** Tile grid (rows, cols). */
  grid: [number, number];
  /** Image tokens the model produces for this image, if a model config was given. */
  numImageTokens: number | null;
  layout: TokenLayout | null;
}

/**
 * Runs the LLaVA-OneVision image processor on one image. With `model` (config.json fields) the token count is
 * computed too and the two configs are checked against each other.
 */
export function processImage(img: RGBImage, pre: LlavaOnevisionPreprocessorConfig, model?: LlavaOnevisionImageModelConfig): LlavaOnevisionImageInputs {
  if (model) checkConsistent(pre, model);
  const rgb = toRgb(img);
  const H = img.height, W = img.width;
  const S = pre.size;
  const best = selectBestResolution(H, W, pre.imageGridPinpoints);
  const [bh, bw] = best;
  const resized = patchOutputSize(H, W, best);
  const [rh, rw] = resized;
  const layout = model ? tokenLayout(H, W, model) : null;

  const scaled = resizePil(rgb, W, H, 3, rw, rh, pre.resample);
  // _pad_for_patching recomputes the output size from the resized image (the same size again)
  const pad = paddingFor(patchOutputSize(rh, rw, best), best);
  const rows = bh / S, cols = bw / S;
  const T = 1 + rows * cols;
  const plane = S * S;
  const pixels8 = new Uint8Array(T * 3 * plane);

  // base: the original image squashed to S×S
  const base = resizePil(rgb, W, H, 3, S, S, pre.resample);
  for (let y = 0; y < S; y++) for (let x = 0; x < S; x++) for (let c = 0; c < 3; c++) pixels8[c * plane + y * S + x] = base[(y * S + x) * 3 + c]!;

  // tiles of the zero-padded resized image, row-major
  for (let r = 0; r < rows; r++) {
    for (let q = 0; q < cols; q++) {
      const t = 1 + r * cols + q;
      const tileBase = t * 3 * plane;
      for (let y = 0; y < S; y++) {
        const sy = r * S + y - pad.top;
        if (sy < 0 || sy >= rh) continue; // padding rows stay 0
        for (let x = 0; x < S; x++) {
          const sx = q * S + x - pad.left;
          if (sx < 0 || sx >= rw) continue;
          const src = (sy * rw + sx) * 3;
          for (let c = 0; c < 3; c++) pixels8[tileBase + c * plane + y * S + x] = scaled[src + c]!;
        }
      }
    }
  }

  // rescale (float64 product stored as float32), normalise in float32
  const lut = new Float32Array(3 * 256);
  for (let c = 0; c < 3; c++) {
    const mean = Math.fround(pre.imageMean[c]!), std = Math.fround(pre.imageStd[c]!);
    for (let v = 0; v < 256; v++) {
      let x = pre.doRescale ? Math.fround(v * pre.rescaleFactor) : v;
      if (pre.doNormalize) x = Math.fround(Math.fround(x - mean) / std);
      lut[c * 256 + v] = x;
    }
  }
  const pixelValues = new Float32Array(pixels8.length);
  for (let t = 0; t < T; t++) {
    for (let c = 0; c < 3; c++) {
      const o = (t * 3 + c) * plane, l = c * 256;
      for (let i = 0; i < plane; i++) pixelValues[o + i] = lut[l + pixels8[o + i]!]!;
    }
  }

  return {
    pixelValues,
    shape: [T, 3, S, S],
    pixels8,
    imageSize: [H, W],
    bestResolution: [bh, bw],
    resizedSize: [rh, rw],
    padding: pad,
    grid: [rows, cols],
    numImageTokens: layout ? layout.numTokens : null,
    layout,
  };
}
