// The pieces a Hugging Face tokenizer.json describes, built from its JSON: the byte-level map (GPT-2's byte ↔
// character convention), normalizers, pre-tokenizers (Split with Oniguruma patterns, ByteLevel), the added-token
// matcher, post-processors and the merges list. models/text/tokenizer.ts assembles them into a Tokenizer.

import type { AddedToken } from './tokenizer.js';
import { FormatError, UnsupportedError } from '../../core/errors.js';
import { GPT2_SPLIT_PATTERN, translateOnigRegex } from './onig-regex.js';

// ---------------------------------------------------------------------------------------------------------------
// Byte ↔ character map of byte-level BPE (the GPT-2 convention): bytes that are printable and not whitespace in
// Latin-1 ('!'..'~', '¡'..'¬', '®'..'ÿ') stand for themselves; the other 68 bytes, in increasing order, take the
// code points 256, 257, ... (so space 0x20 → 'Ġ' U+0120, newline 0x0A → 'Ċ' U+010A).

const BYTE_TO_CHAR: string[] = new Array<string>(256);
const CHAR_TO_BYTE = new Map<number, number>();
{
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    const cp = printable ? b : 256 + extra++;
    BYTE_TO_CHAR[b] = String.fromCodePoint(cp);
    CHAR_TO_BYTE.set(cp, b);
  }
}

const utf8 = new TextEncoder();

/** The byte-level spelling of a string: one character per UTF-8 byte. */
export function toByteLevel(s: string): string {
  const bytes = utf8.encode(s);
  let out = '';
  for (let i = 0; i < bytes.length; i++) out += BYTE_TO_CHAR[bytes[i]!];
  return out;
}

/** The bytes a token stands for under the ByteLevel decoder (its own UTF-8 if a character is outside the map). */
export function tokenBytes(token: string): Uint8Array {
  const out = new Uint8Array(token.length);
  let n = 0;
  for (const ch of token) {
    const b = CHAR_TO_BYTE.get(ch.codePointAt(0)!);
    if (b === undefined) return utf8.encode(token);
    out[n++] = b;
  }
  return out.subarray(0, n);
}


// ---------------------------------------------------------------------------------------------------------------
// Pipeline components.

export type Normalizer = (s: string) => string;
export type PreTokenizer = (pieces: string[]) => string[];
export type PostProcessor = (ids: number[], addSpecial: boolean) => number[];

type SplitBehavior = 'Isolated' | 'Removed';

/** Cuts `s` into the stretches matched by `re` (global) and the stretches between them. */
function splitByRegex(s: string, re: RegExp, behavior: SplitBehavior, invert: boolean): string[] {
  const out: string[] = [];
  let last = 0;
  const emit = (piece: string, isMatch: boolean) => {
    if (piece.length === 0) return;
    if (invert) isMatch = !isMatch;
    if (behavior === 'Removed' && isMatch) return;
    out.push(piece);
  };
  re.lastIndex = 0;
  for (let m = re.exec(s); m !== null; m = re.exec(s)) {
    if (m[0].length === 0) {
      // An empty match: step over one code point, as Oniguruma's iteration does.
      re.lastIndex += (s.codePointAt(re.lastIndex) ?? 0) > 0xffff ? 2 : 1;
      continue;
    }
    emit(s.slice(last, m.index), false);
    emit(m[0], true);
    last = m.index + m[0].length;
  }
  emit(s.slice(last), false);
  return out;
}

function escapeRegex(s: string): string {
  return s.replace(/[\\^$.*+?()[\]{}|/-]/g, '\\$&');
}

/** Unicode White_Space (Rust's char::is_whitespace); a Unicode word character (Rust regex's \w), which decides
 *  whether a single_word added token stands alone. */
const IS_WS = /^\p{White_Space}$/u;
const IS_WORD = /^[\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}]$/u;

function lastChar(s: string): string | undefined {
  if (s.length === 0) return undefined;
  const cp = s.codePointAt(s.length - 1)!;
  if (cp >= 0xdc00 && cp <= 0xdfff && s.length >= 2) return String.fromCodePoint(s.codePointAt(s.length - 2)!);
  return String.fromCodePoint(cp);
}

interface Segment {
  text: string;
  /** Set when the segment is an added token. */
  id?: number;
}

/** Finds added tokens in `text`: leftmost match first, the longest one at that position. */
export class AddedTokenMatcher {
  private readonly byFirst = new Map<string, AddedToken[]>();
  constructor(tokens: readonly AddedToken[]) {
    for (const t of tokens) {
      if (t.content.length === 0) continue;
      const first = String.fromCodePoint(t.content.codePointAt(0)!);
      let list = this.byFirst.get(first);
      if (!list) this.byFirst.set(first, (list = []));
      list.push(t);
    }
    for (const list of this.byFirst.values()) list.sort((a, b) => b.content.length - a.content.length);
  }

  get empty(): boolean {
    return this.byFirst.size === 0;
  }

  split(text: string): Segment[] {
    if (this.empty) return [{ text }];
    const out: Segment[] = [];
    let startOffset = 0;
    let pos = 0;
    while (pos < text.length) {
      const cp = text.codePointAt(pos)!;
      const step = cp > 0xffff ? 2 : 1;
      const list = this.byFirst.get(String.fromCodePoint(cp));
      let found: AddedToken | undefined;
      if (list) {
        for (const t of list) {
          if (!text.startsWith(t.content, pos)) continue;
          if (t.single_word) {
            const before = lastChar(text.slice(0, pos));
            const after = text.codePointAt(pos + t.content.length);
            if ((before !== undefined && IS_WORD.test(before)) || (after !== undefined && IS_WORD.test(String.fromCodePoint(after)))) continue;
          }
          found = t;
          break;
        }
      }
      if (!found) {
        pos += step;
        continue;
      }
      let start = pos;
      let stop = pos + found.content.length;
      if (found.lstrip) {
        while (start > startOffset) {
          const ch = lastChar(text.slice(0, start))!;
          if (!IS_WS.test(ch)) break;
          start -= ch.length;
        }
      }
      if (found.rstrip) {
        while (stop < text.length) {
          const ch = String.fromCodePoint(text.codePointAt(stop)!);
          if (!IS_WS.test(ch)) break;
          stop += ch.length;
        }
      }
      if (startOffset < start) out.push({ text: text.slice(startOffset, start) });
      out.push({ text: found.content, id: found.id });
      startOffset = stop;
      pos = stop;
    }
    if (startOffset < text.length) out.push({ text: text.slice(startOffset) });
    return out;
  }
}


// ---------------------------------------------------------------------------------------------------------------
// tokenizer.json parsing helpers.

type Json = Record<string, unknown>;

export function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function typeName(v: unknown): string {
  return isObject(v) && typeof v.type === 'string' ? v.type : JSON.stringify(v)?.slice(0, 60) ?? String(v);
}

export function boolField(obj: Json, key: string, dflt: boolean, where: string): boolean {
  const v = obj[key];
  if (v === undefined || v === null) return dflt;
  if (typeof v !== 'boolean') throw new FormatError(`${where}: "${key}" must be a boolean, got ${JSON.stringify(v)}`);
  return v;
}

export function buildNormalizer(spec: unknown, where: string): Normalizer | null {
  if (spec === null || spec === undefined) return null;
  if (!isObject(spec)) throw new FormatError(`${where}: normalizer must be an object or null`);
  switch (spec.type) {
    case 'NFC': case 'NFD': case 'NFKC': case 'NFKD': {
      const form = spec.type;
      return (s) => s.normalize(form);
    }
    case 'Sequence': {
      const list = spec.normalizers;
      if (!Array.isArray(list)) throw new FormatError(`${where}: normalizer Sequence needs a "normalizers" array`);
      const parts = list.map((n, k) => buildNormalizer(n, `${where} normalizers[${k}]`)).filter((f): f is Normalizer => f !== null);
      return (s) => parts.reduce((acc, f) => f(acc), s);
    }
    default:
      throw new UnsupportedError(`${where}: unsupported normalizer type ${typeName(spec)} (supported: NFC, NFD, NFKC, NFKD, Sequence, null)`);
  }
}

function compileRegex(pattern: string, where: string): RegExp {
  let src: string;
  try {
    src = translateOnigRegex(pattern);
  } catch (e) {
    if (e instanceof UnsupportedError) throw new UnsupportedError(`${where}: ${e.message}`);
    throw e;
  }
  try {
    return new RegExp(src, 'gu');
  } catch (e) {
    throw new UnsupportedError(`${where}: regex ${JSON.stringify(pattern)} does not compile in JS (${(e as Error).message})`);
  }
}

export function buildPreTokenizer(spec: unknown, where: string): PreTokenizer[] {
  if (spec === null || spec === undefined) return [];
  if (!isObject(spec)) throw new FormatError(`${where}: pre_tokenizer must be an object or null`);
  switch (spec.type) {
    case 'Sequence': {
      const list = spec.pretokenizers;
      if (!Array.isArray(list)) throw new FormatError(`${where}: pre_tokenizer Sequence needs a "pretokenizers" array`);
      return list.flatMap((p, k) => buildPreTokenizer(p, `${where} pretokenizers[${k}]`));
    }
    case 'Split': {
      const pat = spec.pattern;
      let re: RegExp;
      if (isObject(pat) && typeof pat.Regex === 'string') re = compileRegex(pat.Regex, `${where} Split`);
      else if (isObject(pat) && typeof pat.String === 'string') re = new RegExp(escapeRegex(pat.String), 'gu');
      else throw new FormatError(`${where}: Split needs "pattern": {"Regex": ...} or {"String": ...}`);
      const behavior = spec.behavior;
      if (behavior !== 'Isolated' && behavior !== 'Removed') {
        throw new UnsupportedError(`${where}: unsupported Split behavior ${JSON.stringify(behavior)} (supported: Isolated, Removed)`);
      }
      const invert = boolField(spec, 'invert', false, where);
      return [(pieces) => pieces.flatMap((p) => splitByRegex(p, re, behavior, invert))];
    }
    case 'ByteLevel': {
      const addPrefixSpace = boolField(spec, 'add_prefix_space', true, where);
      const useRegex = boolField(spec, 'use_regex', true, where);
      const re = useRegex ? compileRegex(GPT2_SPLIT_PATTERN, `${where} ByteLevel`) : null;
      return [
        (pieces) => {
          const out: string[] = [];
          for (let p of pieces) {
            if (addPrefixSpace && !p.startsWith(' ')) p = ' ' + p;
            const words = re ? splitByRegex(p, re, 'Isolated', false) : [p];
            for (const w of words) out.push(toByteLevel(w));
          }
          return out;
        },
      ];
    }
    default:
      throw new UnsupportedError(`${where}: unsupported pre_tokenizer type ${typeName(spec)} (supported: Split, ByteLevel, Sequence, null)`);
  }
}

export function buildPostProcessor(spec: unknown, where: string, tokenId: (t: string) => number | undefined): PostProcessor | null {
  if (spec === null || spec === undefined) return null;
  if (!isObject(spec)) throw new FormatError(`${where}: post_processor must be an object or null`);
  const pairField = (key: string): number => {
    const v = spec[key];
    if (!Array.isArray(v) || typeof v[1] !== 'number') throw new FormatError(`${where}: ${spec.type} needs "${key}": [token, id]`);
    return v[1];
  };
  switch (spec.type) {
    case 'ByteLevel':
      return null; // only adjusts offsets
    case 'Sequence': {
      const list = spec.processors;
      if (!Array.isArray(list)) throw new FormatError(`${where}: post_processor Sequence needs a "processors" array`);
      const parts = list.map((p, k) => buildPostProcessor(p, `${where} processors[${k}]`, tokenId)).filter((f): f is PostProcessor => f !== null);
      return (ids, add) => parts.reduce((acc, f) => f(acc, add), ids);
    }
    case 'BertProcessing': case 'RobertaProcessing': {
      const cls = pairField('cls'), sep = pairField('sep');
      return (ids, add) => (add ? [cls, ...ids, sep] : ids);
    }
    case 'TemplateProcessing': {
      const single = spec.single;
      const specials = isObject(spec.special_tokens) ? spec.special_tokens : {};
      if (!Array.isArray(single)) throw new FormatError(`${where}: TemplateProcessing needs a "single" array`);
      const steps: (number[] | 'A')[] = single.map((piece, k) => {
        if (isObject(piece) && isObject(piece.Sequence)) {
          if (piece.Sequence.id !== 'A') throw new UnsupportedError(`${where}: TemplateProcessing single[${k}] uses sequence ${JSON.stringify(piece.Sequence.id)}; only A is supported`);
          return 'A';
        }
        if (isObject(piece) && isObject(piece.SpecialToken) && typeof piece.SpecialToken.id === 'string') {
          const name = piece.SpecialToken.id;
          const entry = specials[name];
          if (isObject(entry) && Array.isArray(entry.ids) && entry.ids.every((x) => typeof x === 'number')) return entry.ids as number[];
          const id = tokenId(name);
          if (id === undefined) throw new FormatError(`${where}: TemplateProcessing refers to the special token ${JSON.stringify(name)}, which has no id`);
          return [id];
        }
        throw new FormatError(`${where}: TemplateProcessing single[${k}] must be {"Sequence": ...} or {"SpecialToken": ...}`);
      });
      return (ids, add) => (add ? steps.flatMap((s) => (s === 'A' ? ids : s)) : ids);
    }
    default:
      throw new UnsupportedError(`${where}: unsupported post_processor type ${typeName(spec)} (supported: ByteLevel, TemplateProcessing, BertProcessing, RobertaProcessing, Sequence, null)`);
  }
}

export function parseMerges(raw: unknown, where: string): [string, string][] {
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) throw new FormatError(`${where}: model.merges must be an array`);
  return raw.map((m, k): [string, string] => {
    if (typeof m === 'string') {
      const parts = m.split(' ');
      if (parts.length !== 2) throw new FormatError(`${where}: merge ${k} ${JSON.stringify(m)} is not two tokens separated by one space`);
      return [parts[0]!, parts[1]!];
    }
    if (Array.isArray(m) && m.length === 2 && typeof m[0] === 'string' && typeof m[1] === 'string') return [m[0], m[1]];
    throw new FormatError(`${where}: merge ${k} must be "a b" or ["a", "b"], got ${JSON.stringify(m)}`);
  });
}
