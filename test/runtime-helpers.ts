// Test support for the runtime and CLI tests: a tiny random LaVi/concat checkpoint in a temp dir with a hand-made
// byte-level BPE tokenizer.json (256 byte tokens, no merges, three special tokens) and a chat template, a byte
// tokenizer that encodes exactly like that tokenizer.json, and a minimal PNG encoder for test images.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';
import { tinyConfig, type ModelConfig } from '../models/lavi/config.js';
import type { TextTokenizer } from '../models/app/runtime.js';
import type { RGBImage } from '../models/image/preprocess.js';
import { randomWeights, saveCheckpoint } from '../models/lavi/weights.js';
import { crc32 } from '../core/crc32.js';

export const SPECIAL = { endoftext: 256, imStart: 257, imEnd: 258 } as const;
export const SPECIAL_TOKENS: Record<string, number> = { '<|endoftext|>': 256, '<|im_start|>': 257, '<|im_end|>': 258 };
export const CHAT_TEMPLATE = '<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n';
export const VOCAB = 259;

/** GPT-2's byte → printable character map (what a byte-level BPE vocabulary is written in). */
export function bytesToUnicode(): string[] {
  const bs: number[] = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n++);
    }
  }
  const out = new Array<string>(256);
  bs.forEach((b, i) => (out[b] = String.fromCodePoint(cs[i]!)));
  return out;
}

/** A Hugging Face tokenizer.json: byte-level BPE, token id = byte value, no merges, three special tokens. */
export function tokenizerJson(): unknown {
  const b2u = bytesToUnicode();
  const vocab: Record<string, number> = {};
  for (let b = 0; b < 256; b++) vocab[b2u[b]!] = b;
  for (const [content, id] of Object.entries(SPECIAL_TOKENS)) vocab[content] = id;
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: Object.entries(SPECIAL_TOKENS).map(([content, id]) => ({
      id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
    })),
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '',
      fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges: [],
    },
  };
}

/** Encodes like tokenizerJson(): special tokens by name, everything else byte by byte. */
export class ByteTokenizer implements TextTokenizer {
  encode(text: string): number[] {
    const ids: number[] = [];
    const re = /<\|endoftext\|>|<\|im_start\|>|<\|im_end\|>/g;
    let last = 0;
    for (let m = re.exec(text); m; m = re.exec(text)) {
      ids.push(...new TextEncoder().encode(text.slice(last, m.index)));
      ids.push(SPECIAL_TOKENS[m[0]]!);
      last = m.index + m[0].length;
    }
    ids.push(...new TextEncoder().encode(text.slice(last)));
    return ids;
  }

  decode(ids: readonly number[]): string {
    return new TextDecoder().decode(Uint8Array.from(ids.filter((i) => i < 256)));
  }
}

export interface TinyModelOptions {
  mode?: 'lavi' | 'concat';
  seed?: number;
  maxPositions?: number;
  /** Leave these files out (to test error messages). */
  omit?: ('config.json' | 'tokenizer.json' | 'model.safetensors')[];
  eos?: number[];
}

export function tinyTestConfig(o: TinyModelOptions = {}): ModelConfig {
  return tinyConfig({
    text_config: { vocab_size: VOCAB, max_position_embeddings: o.maxPositions ?? 160 },
    lavi_config: { mode: o.mode ?? 'lavi' },
    eos_token_ids: o.eos ?? [SPECIAL.imEnd, SPECIAL.endoftext],
  });
}

/** Writes a tiny random checkpoint (config.json with chat_template, model.safetensors, tokenizer.json). */
export async function makeTinyModel(dir: string, o: TinyModelOptions = {}): Promise<ModelConfig> {
  const cfg = tinyTestConfig(o);
  // conditionerScale: large enough that the image visibly changes the answer.
  await saveCheckpoint(dir, cfg, randomWeights(cfg, { seed: o.seed ?? 1, conditionerScale: 3, dtype: 'bf16' }));
  const configPath = join(dir, 'config.json');
  const json = JSON.parse(readFileSync(configPath, 'utf8')) as Record<string, unknown>;
  json.chat_template = CHAT_TEMPLATE;
  writeFileSync(configPath, JSON.stringify(json, null, 2));
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tokenizerJson()));
  for (const f of o.omit ?? []) rmSync(join(dir, f));
  return cfg;
}

export function tempDir(prefix = 'lavi-rt-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A smooth RGB test picture; `variant` changes it. */
export function testImage(width = 40, height = 30, variant = 0): RGBImage {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      data[i] = (x * 255) / width + variant * 70;
      data[i + 1] = (y * 255) / height + variant * 30;
      data[i + 2] = ((x + y) * 97 + variant * 51) & 255;
    }
  }
  return { width, height, data };
}

// ---- PNG encoding (8-bit RGB, no interlace, filter 0) ------------------------------------------------------

function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  dv.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

export function encodePng(img: RGBImage): Uint8Array {
  const { width, height, data } = img;
  const raw = new Uint8Array(height * (1 + width * 3));
  for (let y = 0; y < height; y++) raw.set(data.subarray(y * width * 3, (y + 1) * width * 3), y * (1 + width * 3) + 1);
  const ihdr = new Uint8Array(13);
  const dv = new DataView(ihdr.buffer);
  dv.setUint32(0, width);
  dv.setUint32(4, height);
  ihdr.set([8, 2, 0, 0, 0], 8);
  const parts = [
    Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw)),
    chunk('IEND', new Uint8Array(0)),
  ];
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let off = 0;
  for (const p of parts) out.set(p, off), (off += p.length);
  return out;
}

/** A small, valid GIF89a (1×1): a format the engine does not decode. */
export const GIF_BYTES = Uint8Array.from([
  0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00,
  0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x02,
  0x02, 0x44, 0x01, 0x00, 0x3b,
]);
