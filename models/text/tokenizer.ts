// Byte-level BPE tokenizer that reads a Hugging Face `tokenizer.json` and encodes/decodes the way the HF
// `tokenizers` library does for GPT-2/Qwen2-style tokenizers. One code path serves a real Qwen2 file and the small
// tokenizer trained for this project.
//
// Pipeline of encode(text):
//   1. added tokens with normalized=false (all special tokens in practice) are found in the raw text, leftmost
//      first and longest at a position; the text between them goes on;
//   2. normalizer (null, NFC, NFD, NFKC, NFKD or a Sequence of these);
//   3. added tokens with normalized=true are found in the normalized text;
//   4. pre-tokenizer (Split by regex/string, ByteLevel, or a Sequence of these) cuts each piece into words and
//      maps their UTF-8 bytes to the 256 printable "byte characters" (Ġ for space, Ċ for newline, ...);
//   5. BPE on each word: adjacent symbols are merged lowest merge rank first, leftmost first among equal ranks,
//      until no adjacent pair has a merge; results are cached per word;
//   6. post-processor (null, ByteLevel = no change to ids, TemplateProcessing/Bert/Roberta add their special
//      tokens when addSpecialTokens is true, Sequence).
// decode(ids): ids → token strings (special added tokens dropped with skipSpecialTokens) → ByteLevel decoder:
// every character of a token maps back to its byte (a token with a character outside the byte alphabet, e.g. an
// added token typed by hand, contributes its own UTF-8 bytes), and the byte string is read as UTF-8 with U+FFFD
// for invalid sequences. Ids with no token are skipped, as HF does. Without a decoder, tokens are joined by ' '.
//
// Regexes: HF compiles Split patterns with Oniguruma. translateOnigRegex() rewrites one into a JS RegExp with the
// `u` flag: `(?i:...)` groups are expanded by hand ('s → '[sS]), \s/\S become \p{White_Space}/\P{White_Space}
// (Oniguruma's \s is Unicode White_Space: it includes U+0085 and excludes U+FEFF, unlike JS's \s), \d is
// \p{Nd}, \w is Unicode word characters, and Oniguruma-only syntax (atomic groups, possessive quantifiers, class
// intersections) is refused by name. Lookaheads such as `\s+(?!\S)` keep their backtracking meaning in JS.
//
// tokenizer_config.json (read beside tokenizer.json by fromFile/fromDir; parsed in tokenizer-config.ts), as HF's
// fast tokenizer applies it on load: added_tokens_decoder entries are added on top of tokenizer.json's added tokens
// and their lstrip/rstrip/normalized/single_word/special flags win (an id that disagrees with tokenizer.json is
// refused); the named special tokens (bos_token, eos_token, pad_token, unk_token, ..., additional_special_tokens)
// map to ids (bosTokenId, eosTokenId, ...; a name that is no token is refused), and one that is a plain vocab token
// becomes a special added token; add_bos_token/add_eos_token, when either is true, make the post-processor
// [bos] A [eos] (LlamaTokenizerFast's rule; Qwen2 writes false and has no bos); split_special_tokens true leaves
// special tokens as text. Not applied: clean_up_tokenization_spaces (decode never cleans up), model_max_length.
//
// Not applied: truncation and padding settings (encode returns the whole sequence), BPE dropout (refused if > 0).

import { FormatError, UnsupportedError, ValueError } from '../../core/errors.js';
import { readTokenizerConfig, SPECIAL_TOKEN_KEYS, type SpecialTokensMap, type TokenizerConfig } from './tokenizer-config.js';
import { nodeFs, nodePath } from '../../core/platform.js';

export type { SpecialTokensMap, TokenizerConfig } from './tokenizer-config.js';

export interface EncodeOptions {
  /** Let the post-processor add its special tokens (TemplateProcessing/Bert/Roberta). Default true, as HF. */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Drop added tokens marked special (<|im_start|>, <|endoftext|>, ...). Default false, as HF. */
  skipSpecialTokens?: boolean;
}

/** Incremental decoder: text for each pushed id, never splitting a multi-byte UTF-8 character. */
export interface StreamDecoder {
  /** Decodes one more id; returns the text that became complete (may be '' while a character is incomplete). */
  push(id: number): string;
  /** Ends the stream: bytes of an incomplete character come out as U+FFFD. Resets the decoder. */
  flush(): string;
}

/** One entry of tokenizer.json's `added_tokens`. */
export interface AddedToken {
  id: number;
  content: string;
  special: boolean;
  normalized: boolean;
  lstrip: boolean;
  rstrip: boolean;
  single_word: boolean;
}

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
function tokenBytes(token: string): Uint8Array {
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
// Oniguruma → JS regex translation.

const WS = '\\p{White_Space}';
const NOT_WS = '\\P{White_Space}';
const WORD_CLASS_BODY = '\\p{L}\\p{M}\\p{Nd}\\p{Pc}';
const JS_SYNTAX_CHARS = new Set('^$\\.*+?()[]{}|/'.split(''));

function validPropertyEscape(body: string): boolean {
  try {
    new RegExp(`\\p{${body}}`, 'u');
    return true;
  } catch {
    return false;
  }
}

/** Both cases of an ASCII-or-Unicode letter as class members ('' when the character has no other case). */
function caseVariants(ch: string): string[] {
  const set = new Set<string>([ch]);
  const lo = ch.toLowerCase(), up = ch.toUpperCase();
  if ([...lo].length === 1) set.add(lo);
  if ([...up].length === 1) set.add(up);
  return [...set];
}

/**
 * Translates an Oniguruma pattern (as used by HF tokenizers' Split pre-tokenizer) into JS RegExp source for the
 * `u` flag. Throws UnsupportedError naming the construct when there is no faithful JS equivalent.
 */
export function translateOnigRegex(pattern: string): string {
  const cps = [...pattern];
  let out = '';
  let i = 0;
  let inClass = false;
  let classStart = false; // just after '[' or '[^': a ']' here is a literal
  // Case-insensitivity per open group; the top of the stack is the current group.
  const ciStack: boolean[] = [false];
  let lastWasQuantifier = false;
  const fail = (what: string): never => {
    throw new UnsupportedError(`regex ${JSON.stringify(pattern)}: ${what} has no JS equivalent`);
  };
  const ci = () => ciStack[ciStack.length - 1]!;

  const escape = (): string => {
    // cps[i] is the backslash.
    const c = cps[i + 1];
    if (c === undefined) fail('a trailing backslash');
    i += 2;
    switch (c) {
      case 's': return WS;
      case 'S': return NOT_WS;
      case 'd': return '\\p{Nd}';
      case 'D': return '\\P{Nd}';
      case 'w': return inClass ? WORD_CLASS_BODY : `[${WORD_CLASS_BODY}]`;
      case 'W': if (inClass) fail('\\W inside a character class'); return `[^${WORD_CLASS_BODY}]`;
      case 'h': return inClass ? '0-9a-fA-F' : '[0-9a-fA-F]';
      case 'H': if (inClass) fail('\\H inside a character class'); return '[^0-9a-fA-F]';
      case 'A': if (inClass) fail('\\A inside a character class'); return '^';
      case 'z': if (inClass) fail('\\z inside a character class'); return '$';
      case 'Z': if (inClass) fail('\\Z inside a character class'); return '(?=\\n?$)';
      case 'p': case 'P': {
        if (cps[i] !== '{') fail(`\\${c} without {name}`);
        const close = cps.indexOf('}', i);
        if (close < 0) fail(`an unterminated \\${c}{`);
        let body = cps.slice(i + 1, close).join('');
        i = close + 1;
        let neg = c === 'P';
        if (body.startsWith('^')) (neg = !neg), (body = body.slice(1));
        let js = body;
        if (!validPropertyEscape(js)) js = `Script=${body}`;
        if (!validPropertyEscape(js)) fail(`the property \\p{${body}}`);
        return `\\${neg ? 'P' : 'p'}{${js}}`;
      }
      case 'x': {
        if (cps[i] === '{') {
          const close = cps.indexOf('}', i);
          if (close < 0) fail('an unterminated \\x{');
          const hex = cps.slice(i + 1, close).join('');
          i = close + 1;
          return `\\u{${hex}}`;
        }
        const hex = cps.slice(i, i + 2).join('');
        if (!/^[0-9a-fA-F]{2}$/.test(hex)) fail('\\x without two hex digits');
        i += 2;
        return `\\x${hex}`;
      }
      case 'u': {
        const hex = cps.slice(i, i + 4).join('');
        if (!/^[0-9a-fA-F]{4}$/.test(hex)) fail('\\u without four hex digits');
        i += 4;
        return `\\u${hex}`;
      }
      case 't': case 'n': case 'r': case 'f': case 'v': case 'b': case 'B': case '0':
        return '\\' + c;
      case 'K': case 'G': case 'X': case 'R': case 'N': case 'O': case 'y': case 'Y':
        return fail(`\\${c}`);
      default:
        if (/[1-9]/.test(c!)) return '\\' + c; // back-reference
        if (/[A-Za-z]/.test(c!)) return fail(`the escape \\${c}`);
        // An escaped punctuation or other literal character: JS's u mode only accepts escapes of its syntax
        // characters, so write the rest as a code point escape.
        if (c === '-') return inClass ? '\\-' : '-';
        return JS_SYNTAX_CHARS.has(c!) ? '\\' + c : `\\u{${c!.codePointAt(0)!.toString(16)}}`;
    }
  };

  while (i < cps.length) {
    const c = cps[i]!;
    if (inClass) {
      if (c === ']' && !classStart) {
        out += ']';
        inClass = false;
        i++;
        lastWasQuantifier = false;
        continue;
      }
      classStart = false;
      if (c === '\\') { out += escape(); continue; }
      if (c === '[') fail('a nested character class');
      if (c === '&' && cps[i + 1] === '&') fail('a class intersection (&&)');
      // A range x-y: copied as is, plus the other case's range under (?i) when both ends are ASCII letters.
      if (cps[i + 1] === '-' && cps[i + 2] !== undefined && cps[i + 2] !== ']' && cps[i + 2] !== '\\') {
        const lo = c, hi = cps[i + 2]!;
        out += `${lo}-${hi}`;
        if (ci() && /^[a-z]$/.test(lo) && /^[a-z]$/.test(hi)) out += `${lo.toUpperCase()}-${hi.toUpperCase()}`;
        else if (ci() && /^[A-Z]$/.test(lo) && /^[A-Z]$/.test(hi)) out += `${lo.toLowerCase()}-${hi.toLowerCase()}`;
        i += 3;
        continue;
      }
      out += ci() && /\p{L}/u.test(c) ? caseVariants(c).join('') : c;
      i++;
      continue;
    }
    let quant = false;
    switch (c) {
      case '\\':
        out += escape();
        break;
      case '[':
        inClass = true;
        classStart = true;
        out += '[';
        i++;
        if (cps[i] === '^') (out += '^'), i++;
        break;
      case '(': {
        const rest = cps.slice(i, i + 4).join('');
        if (rest.startsWith('(?#')) {
          const close = cps.indexOf(')', i);
          if (close < 0) fail('an unterminated comment');
          i = close + 1;
          break;
        }
        if (rest.startsWith('(?>')) fail('an atomic group (?>...)');
        const flagGroup = /^\(\?([imx]*)(?:-([imx]*))?([:)])/.exec(cps.slice(i, i + 12).join(''));
        if (flagGroup && (flagGroup[1] || flagGroup[2])) {
          const on = flagGroup[1] ?? '', off = flagGroup[2] ?? '';
          if (/[mx]/.test(on + off)) fail(`the inline flags (?${on}${off ? '-' + off : ''})`);
          const next = on.includes('i') ? true : off.includes('i') ? false : ci();
          i += flagGroup[0].length;
          if (flagGroup[3] === ':') {
            ciStack.push(next);
            out += '(?:';
          } else {
            ciStack[ciStack.length - 1] = next; // (?i) applies to the rest of the enclosing group
          }
          break;
        }
        ciStack.push(ci());
        out += '(';
        i++;
        if (cps[i] === '?') {
          // (?:  (?=  (?!  (?<=  (?<!  (?<name>  pass through
          const m = /^\?(?::|=|!|<=|<!|<[A-Za-z_][A-Za-z0-9_]*>)/.exec(cps.slice(i, i + 40).join(''));
          if (!m) fail(`the group syntax (${cps.slice(i, i + 3).join('')}`);
          out += m![0];
          i += m![0].length;
        }
        break;
      }
      case ')':
        if (ciStack.length <= 1) fail('an unbalanced )');
        ciStack.pop();
        out += ')';
        i++;
        break;
      case '*': case '+': case '?':
        if (lastWasQuantifier && c === '+') fail('a possessive quantifier');
        out += c;
        i++;
        quant = !(c === '?' && lastWasQuantifier); // a '?' after a quantifier makes it lazy and ends it
        break;
      case '{': {
        const m = /^\{(\d*)(,?)(\d*)\}/.exec(cps.slice(i, i + 24).join(''));
        if (m && (m[1] || m[3])) {
          out += m[1] ? m[0] : `{0,${m[3]}}`; // Oniguruma's {,n} is {0,n}
          i += m[0].length;
          quant = true;
        } else {
          out += '\\{';
          i++;
        }
        break;
      }
      case '}': case ']':
        out += '\\' + c;
        i++;
        break;
      default:
        if (ci() && /\p{L}/u.test(c)) {
          const v = caseVariants(c);
          out += v.length > 1 ? `[${v.join('')}]` : c;
        } else {
          out += c === '/' ? '\\/' : c;
        }
        i++;
    }
    lastWasQuantifier = quant;
  }
  if (inClass) fail('an unterminated character class');
  if (ciStack.length !== 1) fail('an unbalanced (');
  return out;
}

/** Oniguruma's default split regex of the ByteLevel pre-tokenizer (use_regex: true), GPT-2's pattern. */
export const GPT2_SPLIT_PATTERN = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

// ---------------------------------------------------------------------------------------------------------------
// Pipeline components.

type Normalizer = (s: string) => string;
type PreTokenizer = (pieces: string[]) => string[];
type PostProcessor = (ids: number[], addSpecial: boolean) => number[];

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
class AddedTokenMatcher {
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
// BPE model.

interface MergeInfo {
  rank: number;
  id: number;
}

/** Binary min-heap of merge candidates ordered by (rank, position). */
class CandidateHeap {
  private rank: number[] = [];
  private pos: number[] = [];
  get size(): number {
    return this.rank.length;
  }
  private less(a: number, b: number): boolean {
    return this.rank[a]! < this.rank[b]! || (this.rank[a] === this.rank[b] && this.pos[a]! < this.pos[b]!);
  }
  private swap(a: number, b: number): void {
    const r = this.rank[a]!, p = this.pos[a]!;
    this.rank[a] = this.rank[b]!, this.pos[a] = this.pos[b]!;
    this.rank[b] = r, this.pos[b] = p;
  }
  push(rank: number, pos: number): void {
    this.rank.push(rank);
    this.pos.push(pos);
    let i = this.rank.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.less(i, parent)) break;
      this.swap(i, parent);
      i = parent;
    }
  }
  /** Removes the smallest entry; returns its position (the rank is re-checked by the caller). */
  pop(): { rank: number; pos: number } {
    const top = { rank: this.rank[0]!, pos: this.pos[0]! };
    const lastRank = this.rank.pop()!, lastPos = this.pos.pop()!;
    if (this.rank.length > 0) {
      this.rank[0] = lastRank;
      this.pos[0] = lastPos;
      let i = 0;
      const n = this.rank.length;
      for (;;) {
        const l = 2 * i + 1, r = l + 1;
        let m = i;
        if (l < n && this.less(l, m)) m = l;
        if (r < n && this.less(r, m)) m = r;
        if (m === i) break;
        this.swap(i, m);
        i = m;
      }
    }
    return top;
  }
}

const CACHE_LIMIT = 10000;
const CACHE_MAX_WORD = 256;

class BPEModel {
  readonly vocab: Map<string, number>;
  /** Merge of the adjacent ids (a, b), keyed a * idSpan + b. */
  private readonly merges = new Map<number, MergeInfo>();
  private readonly idSpan: number;
  private readonly cache = new Map<string, number[]>();

  constructor(
    vocab: Map<string, number>,
    merges: [string, string][],
    private readonly ignoreMerges: boolean,
    private readonly byteFallback: boolean,
    private readonly unkId: number | undefined,
    private readonly fuseUnk: boolean,
    where: string,
  ) {
    this.vocab = vocab;
    let maxId = 0;
    for (const id of vocab.values()) maxId = Math.max(maxId, id);
    this.idSpan = maxId + 1;
    merges.forEach(([a, b], rank) => {
      const ia = vocab.get(a), ib = vocab.get(b), merged = vocab.get(a + b);
      const missing = ia === undefined ? a : ib === undefined ? b : merged === undefined ? a + b : undefined;
      if (missing !== undefined) {
        throw new FormatError(`${where}: merge ${rank} ${JSON.stringify(`${a} ${b}`)} refers to the token ${JSON.stringify(missing)}, which is not in the vocab`);
      }
      const key = ia! * this.idSpan + ib!;
      if (!this.merges.has(key)) this.merges.set(key, { rank, id: merged! });
    });
  }

  private merge(a: number, b: number): MergeInfo | undefined {
    return this.merges.get(a * this.idSpan + b);
  }

  /** Ids of one pre-tokenized word (already in byte-level characters). */
  tokenize(word: string): number[] {
    const cached = this.cache.get(word);
    if (cached) return cached;
    const ids = this.tokenizeUncached(word);
    if (word.length <= CACHE_MAX_WORD) {
      if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
      this.cache.set(word, ids);
    }
    return ids;
  }

  private tokenizeUncached(word: string): number[] {
    if (this.ignoreMerges) {
      const whole = this.vocab.get(word);
      if (whole !== undefined) return [whole];
    }
    // Initial symbols: one per character.
    const sym: number[] = [];
    let pendingUnk = false;
    for (const ch of word) {
      const id = this.vocab.get(ch);
      if (id !== undefined) {
        sym.push(id);
        pendingUnk = false;
        continue;
      }
      if (this.byteFallback) {
        const ids = [...utf8.encode(ch)].map((b) => this.vocab.get(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`));
        if (ids.every((x) => x !== undefined)) {
          for (const x of ids) sym.push(x!);
          pendingUnk = false;
          continue;
        }
      }
      if (this.unkId !== undefined) {
        if (!(this.fuseUnk && pendingUnk)) sym.push(this.unkId);
        pendingUnk = true;
      }
      // No unk token: the character is dropped, as HF does.
    }
    const n = sym.length;
    if (n < 2) return sym;
    const prev = new Int32Array(n), next = new Int32Array(n);
    const alive = new Uint8Array(n).fill(1);
    for (let k = 0; k < n; k++) (prev[k] = k - 1), (next[k] = k + 1 < n ? k + 1 : -1);
    const heap = new CandidateHeap();
    for (let k = 0; k + 1 < n; k++) {
      const m = this.merge(sym[k]!, sym[k + 1]!);
      if (m) heap.push(m.rank, k);
    }
    while (heap.size > 0) {
      const { rank, pos } = heap.pop();
      if (!alive[pos]) continue;
      const right = next[pos]!;
      if (right < 0) continue;
      const m = this.merge(sym[pos]!, sym[right]!);
      if (!m || m.rank !== rank) continue; // stale: one side has changed since this entry was pushed
      sym[pos] = m.id;
      alive[right] = 0;
      const after = next[right]!;
      next[pos] = after;
      if (after >= 0) prev[after] = pos;
      const before = prev[pos]!;
      if (before >= 0) {
        const ml = this.merge(sym[before]!, sym[pos]!);
        if (ml) heap.push(ml.rank, before);
      }
      if (after >= 0) {
        const mr = this.merge(sym[pos]!, sym[after]!);
        if (mr) heap.push(mr.rank, pos);
      }
    }
    const out: number[] = [];
    for (let k = 0; k >= 0; k = next[k]!) out.push(sym[k]!);
    return out;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// tokenizer.json parsing helpers.

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function typeName(v: unknown): string {
  return isObject(v) && typeof v.type === 'string' ? v.type : JSON.stringify(v)?.slice(0, 60) ?? String(v);
}

function boolField(obj: Json, key: string, dflt: boolean, where: string): boolean {
  const v = obj[key];
  if (v === undefined || v === null) return dflt;
  if (typeof v !== 'boolean') throw new FormatError(`${where}: "${key}" must be a boolean, got ${JSON.stringify(v)}`);
  return v;
}

function buildNormalizer(spec: unknown, where: string): Normalizer | null {
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

function buildPreTokenizer(spec: unknown, where: string): PreTokenizer[] {
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

function buildPostProcessor(spec: unknown, where: string, tokenId: (t: string) => number | undefined): PostProcessor | null {
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

function parseMerges(raw: unknown, where: string): [string, string][] {
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

// ---------------------------------------------------------------------------------------------------------------

export class Tokenizer {
  /** Where the tokenizer came from, for messages. */
  readonly source: string;
  readonly addedTokens: readonly AddedToken[];
  private readonly model: BPEModel;
  private readonly idToTok = new Map<number, string>();
  private readonly specialIds = new Set<number>();
  private readonly asciiTexts = new Map<number, string | null>();
  private readonly addedByContent = new Map<string, number>();
  private readonly rawMatcher: AddedTokenMatcher;
  private readonly normalizedMatcher: AddedTokenMatcher;
  private readonly normalizer: Normalizer | null;
  private readonly preTokenizers: PreTokenizer[];
  private readonly postProcessor: PostProcessor | null;
  private readonly byteLevelDecoder: boolean;
  private readonly maxId: number;
  /** The tokenizer_config.json this tokenizer was built with, if any. */
  readonly config: TokenizerConfig | undefined;
  /** HF's special_tokens_map: the named special tokens that are set (bos_token, eos_token, ...), as strings. */
  readonly specialTokens: Readonly<SpecialTokensMap>;
  /** Ids of the named special tokens (undefined when the tokenizer has none by that name). */
  readonly bosTokenId: number | undefined;
  readonly eosTokenId: number | undefined;
  readonly padTokenId: number | undefined;
  readonly unkTokenId: number | undefined;

  private constructor(obj: unknown, source: string, config?: TokenizerConfig) {
    this.config = config;
    this.source = source;
    const where = `tokenizer ${source}`;
    if (!isObject(obj)) throw new FormatError(`${where}: the top level must be a JSON object`);
    const model = obj.model;
    if (!isObject(model)) throw new FormatError(`${where}: missing "model"`);
    const mtype = model.type ?? (model.merges !== undefined ? 'BPE' : undefined);
    if (mtype !== 'BPE') throw new UnsupportedError(`${where}: unsupported model type ${JSON.stringify(mtype)} (only BPE is supported)`);
    if (!isObject(model.vocab)) throw new FormatError(`${where}: model.vocab is missing or not an object of token → id`);
    const vocab = new Map<string, number>();
    for (const [tok, id] of Object.entries(model.vocab)) {
      if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) throw new FormatError(`${where}: vocab entry ${JSON.stringify(tok)} has id ${JSON.stringify(id)}, not a non-negative integer`);
      const prior = this.idToTok.get(id);
      if (prior !== undefined) throw new FormatError(`${where}: vocab tokens ${JSON.stringify(prior)} and ${JSON.stringify(tok)} share the id ${id}`);
      vocab.set(tok, id);
      this.idToTok.set(id, tok);
    }
    if (vocab.size === 0) throw new FormatError(`${where}: model.vocab is empty`);
    const dropout = model.dropout;
    if (dropout !== undefined && dropout !== null && dropout !== 0) {
      throw new UnsupportedError(`${where}: BPE dropout ${JSON.stringify(dropout)} is not supported (encoding would be random)`);
    }
    for (const key of ['continuing_subword_prefix', 'end_of_word_suffix'] as const) {
      const v = model[key];
      if (v !== undefined && v !== null && v !== '') throw new UnsupportedError(`${where}: BPE ${key} ${JSON.stringify(v)} is not supported`);
    }
    let unkId: number | undefined;
    if (model.unk_token !== undefined && model.unk_token !== null) {
      if (typeof model.unk_token !== 'string') throw new FormatError(`${where}: model.unk_token must be a string or null`);
      unkId = vocab.get(model.unk_token);
      if (unkId === undefined) throw new FormatError(`${where}: unk_token ${JSON.stringify(model.unk_token)} is not in the vocab`);
    }
    const mwhere = `${where} model`;
    this.model = new BPEModel(
      vocab,
      parseMerges(model.merges, mwhere),
      boolField(model, 'ignore_merges', false, mwhere),
      boolField(model, 'byte_fallback', false, mwhere),
      unkId,
      boolField(model, 'fuse_unk', false, mwhere),
      mwhere,
    );

    // Added tokens.
    const added: AddedToken[] = [];
    const rawAdded = obj.added_tokens ?? [];
    if (!Array.isArray(rawAdded)) throw new FormatError(`${where}: added_tokens must be an array`);
    rawAdded.forEach((t, k) => {
      if (!isObject(t) || typeof t.content !== 'string' || typeof t.id !== 'number' || !Number.isInteger(t.id) || t.id < 0) {
        throw new FormatError(`${where}: added_tokens[${k}] needs a string "content" and a non-negative integer "id"`);
      }
      const aw = `${where} added_tokens[${k}]`;
      const special = boolField(t, 'special', false, aw);
      added.push({
        id: t.id,
        content: t.content,
        special,
        normalized: boolField(t, 'normalized', !special, aw),
        lstrip: boolField(t, 'lstrip', false, aw),
        rstrip: boolField(t, 'rstrip', false, aw),
        single_word: boolField(t, 'single_word', false, aw),
      });
    });
    // tokenizer_config.json: added_tokens_decoder entries on top of tokenizer.json's added tokens (HF re-adds an
    // entry whose flags differ, so the config's flags win), then the named special tokens that are plain vocab
    // tokens become special added tokens (normalized false), as HF's fast tokenizer does when it loads.
    const cwhere = config ? `tokenizer_config ${config.path}` : '';
    const fromConfig: { token: AddedToken; id: number; field: string }[] = [];
    if (config) {
      for (const c of config.addedTokensDecoder) {
        let t = added.find((a) => a.content === c.content);
        if (t) Object.assign(t, { special: c.special, normalized: c.normalized, lstrip: c.lstrip, rstrip: c.rstrip, single_word: c.single_word });
        else added.push((t = { ...c }));
        fromConfig.push({ token: t, id: c.id, field: `added_tokens_decoder.${c.id}` });
      }
      const named: string[] = [];
      for (const key of SPECIAL_TOKEN_KEYS) {
        const c = config.specialTokens[key];
        if (c !== undefined) named.push(c);
      }
      named.push(...(config.specialTokens.additional_special_tokens ?? []));
      for (const content of named) {
        const t = added.find((a) => a.content === content);
        if (t) t.special = true;
        else if (vocab.has(content)) added.push({ id: vocab.get(content)!, content, special: true, normalized: false, lstrip: false, rstrip: false, single_word: false });
      }
    }
    this.addedTokens = added;
    this.normalizer = buildNormalizer(obj.normalizer, where);
    const normalize = this.normalizer;
    // A normalized added token is looked for in normalized text, so its content is normalized too; as in HF, that
    // normalized form is also what the id decodes to, while tokenToId takes the content as written.
    const matchForm = (t: AddedToken) => (t.normalized && normalize ? normalize(t.content) : t.content);
    // Ids as HF assigns them when it loads a file (the "id" written in the file is not used): a token whose content
    // is already in the model vocab (or added earlier) takes that id; a new one takes the next id after the model
    // vocab and the added tokens so far. For a consistent file, such as Qwen2's, this is exactly the written id.
    const modelSize = vocab.size;
    let maxAdded = -1;
    for (const t of added) {
      let id = this.addedByContent.get(t.content) ?? vocab.get(t.content);
      if (id === undefined) id = maxAdded < 0 ? modelSize : maxAdded >= modelSize || modelSize === 0 ? maxAdded + 1 : modelSize;
      t.id = id;
      maxAdded = Math.max(maxAdded, id);
      this.idToTok.set(id, matchForm(t));
      this.addedByContent.set(t.content, id);
      if (t.special) this.specialIds.add(id);
    }
    let maxId = -1;
    for (const id of this.idToTok.keys()) maxId = Math.max(maxId, id);
    this.maxId = maxId;
    for (const { token, id, field } of fromConfig) {
      if (token.id !== id) {
        throw new FormatError(`${cwhere}: field "${field}" puts ${JSON.stringify(token.content)} at id ${id}, but ${where} gives it the id ${token.id}`);
      }
    }

    // Named special tokens → ids. A name that is no token at all is refused (HF would invent a new id for it).
    const specialTokens: SpecialTokensMap = { ...(config?.specialTokens ?? {}) };
    const namedId = (key: string, content: string | undefined): number | undefined => {
      if (content === undefined) return undefined;
      const id = this.tokenToId(content);
      if (id === undefined) throw new FormatError(`${cwhere}: field "${key}" is ${JSON.stringify(content)}, which is not a token of ${where}`);
      return id;
    };
    for (const key of SPECIAL_TOKEN_KEYS) namedId(key, specialTokens[key]);
    specialTokens.additional_special_tokens?.forEach((c, k) => namedId(`additional_special_tokens[${k}]`, c));
    this.specialTokens = specialTokens;
    this.bosTokenId = namedId('bos_token', specialTokens.bos_token);
    this.eosTokenId = namedId('eos_token', specialTokens.eos_token);
    this.padTokenId = namedId('pad_token', specialTokens.pad_token);
    this.unkTokenId = namedId('unk_token', specialTokens.unk_token);

    // split_special_tokens: special added tokens stay text (HF's encode_special_tokens).
    const splitOut = config?.splitSpecialTokens ? added.filter((t) => !t.special) : added;
    this.rawMatcher = new AddedTokenMatcher(splitOut.filter((t) => !t.normalized));
    this.normalizedMatcher = new AddedTokenMatcher(splitOut.filter((t) => t.normalized).map((t) => ({ ...t, content: matchForm(t) })));
    this.preTokenizers = buildPreTokenizer(obj.pre_tokenizer, where);
    let post = buildPostProcessor(obj.post_processor, where, (t) => this.tokenToId(t));
    // add_bos_token / add_eos_token (Llama- and Gemma-style files): when either is true, the post-processor is
    // [bos if add_bos_token] A [eos if add_eos_token], as HF's LlamaTokenizerFast rebuilds it. When neither is true
    // tokenizer.json's own post-processor stands (Qwen2 writes add_bos_token false and has no bos token).
    if (config && (config.addBosToken === true || config.addEosToken === true)) {
      const bos = config.addBosToken === true ? this.bosTokenId : undefined;
      const eos = config.addEosToken === true ? this.eosTokenId : undefined;
      if (config.addBosToken === true && bos === undefined) throw new FormatError(`${cwhere}: field "add_bos_token" is true but "bos_token" is not set`);
      if (config.addEosToken === true && eos === undefined) throw new FormatError(`${cwhere}: field "add_eos_token" is true but "eos_token" is not set`);
      post = (ids, add) => (add ? [...(bos !== undefined ? [bos] : []), ...ids, ...(eos !== undefined ? [eos] : [])] : ids);
    }
    this.postProcessor = post;
    const dec = obj.decoder;
    if (dec === null || dec === undefined) this.byteLevelDecoder = false;
    else if (isObject(dec) && dec.type === 'ByteLevel') this.byteLevelDecoder = true;
    else throw new UnsupportedError(`${where}: unsupported decoder type ${typeName(dec)} (supported: ByteLevel, null)`);
  }

  /**
   * Reads a tokenizer.json file, and the tokenizer_config.json beside it when there is one (pass `config: null`
   * to ignore it, or a path to read another).
   */
  static fromFile(path: string, opts: { config?: string | null } = {}): Tokenizer {
    const configPath = opts.config === undefined ? nodePath().join(nodePath().dirname(path), 'tokenizer_config.json') : opts.config;
    const config = configPath === null ? undefined : readTokenizerConfig(configPath, { optional: opts.config === undefined }) ?? undefined;
    let text: string;
    try {
      text = nodeFs().readFileSync(path, 'utf8');
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      const why = err.code === 'ENOENT' ? 'no such file' : err.code === 'EISDIR' ? 'is a directory' : err.message;
      throw new ValueError(`tokenizer ${path}: cannot read the file (${why})`);
    }
    let obj: unknown;
    try {
      obj = JSON.parse(text);
    } catch (e) {
      throw new FormatError(`tokenizer ${path}: not valid JSON (${(e as Error).message})`);
    }
    return new Tokenizer(obj, path, config);
  }

  /** Reads `dir`/tokenizer.json and, when present, `dir`/tokenizer_config.json. */
  static fromDir(dir: string): Tokenizer {
    return Tokenizer.fromFile(nodePath().join(dir, 'tokenizer.json'));
  }

  /** Builds a tokenizer from a parsed tokenizer.json object (and optionally a tokenizer_config.json read with
   *  readTokenizerConfig/parseTokenizerConfig); `source` names it in error messages. */
  static fromJSON(obj: unknown, source = '<json>', config?: TokenizerConfig): Tokenizer {
    return new Tokenizer(obj, source, config);
  }

  /** Highest token id + 1 over the model vocab and the added tokens (HF's size with added tokens when ids are
   *  contiguous, which they are in the files this is for). */
  get vocabSize(): number {
    return this.maxId + 1;
  }

  tokenToId(token: string): number | undefined {
    return this.addedByContent.get(token) ?? this.model.vocab.get(token);
  }

  idToToken(id: number): string | undefined {
    return this.idToTok.get(id);
  }

  /** True for the ids of added tokens marked special. */
  isSpecialId(id: number): boolean {
    return this.specialIds.has(id);
  }

  /** Token ids of `text`. */
  encode(text: string, opts: EncodeOptions = {}): number[] {
    if (typeof text !== 'string') throw new ValueError(`tokenizer ${this.source}: encode takes a string, got ${typeof text}`);
    const ids: number[] = [];
    for (const seg of this.rawMatcher.split(text)) {
      if (seg.id !== undefined) {
        ids.push(seg.id);
        continue;
      }
      const normalized = this.normalizer ? this.normalizer(seg.text) : seg.text;
      for (const seg2 of this.normalizedMatcher.split(normalized)) {
        if (seg2.id !== undefined) {
          ids.push(seg2.id);
          continue;
        }
        let pieces = seg2.text.length > 0 ? [seg2.text] : [];
        for (const pt of this.preTokenizers) pieces = pt(pieces);
        for (const word of pieces) if (word.length > 0) for (const id of this.model.tokenize(word)) ids.push(id);
      }
    }
    const add = opts.addSpecialTokens ?? true;
    return this.postProcessor ? this.postProcessor(ids, add) : ids;
  }

  /** The token strings encode() would give (byte-level spelling, e.g. 'Ġworld'). */
  tokenize(text: string, opts: EncodeOptions = {}): string[] {
    return this.encode(text, opts).map((id) => this.idToTok.get(id)!);
  }

  private tokensOf(ids: readonly number[], skipSpecial: boolean): string[] {
    const out: string[] = [];
    for (const id of ids) {
      if (skipSpecial && this.specialIds.has(id)) continue;
      const t = this.idToTok.get(id);
      if (t !== undefined) out.push(t);
    }
    return out;
  }

  /** Text of `ids`. */
  decode(ids: readonly number[], opts: DecodeOptions = {}): string {
    const tokens = this.tokensOf(ids, opts.skipSpecialTokens ?? false);
    if (!this.byteLevelDecoder) return tokens.join(' ');
    const parts = tokens.map(tokenBytes);
    const bytes = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let off = 0;
    for (const p of parts) bytes.set(p, off), (off += p.length);
    return new TextDecoder('utf-8', { fatal: false, ignoreBOM: true }).decode(bytes);
  }

  /** A decoder for ids arriving one at a time; the concatenation of its outputs and flush() equals decode(all). */
  createStreamDecoder(opts: DecodeOptions = {}): StreamDecoder {
    const skip = opts.skipSpecialTokens ?? false;
    if (!this.byteLevelDecoder) {
      let first = true;
      return {
        push: (id) => {
          const [t] = this.tokensOf([id], skip);
          if (t === undefined) return '';
          const s = first ? t : ' ' + t;
          first = false;
          return s;
        },
        flush: () => {
          first = true;
          return '';
        },
      };
    }
    let td = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });
    // While every token so far was ASCII the decoder holds no partial character, so an ASCII token's text is its
    // bytes as they are: looked up once per token id instead of decoded per step (the runtime streams every
    // generated token through here). The first other token hands this stream to the TextDecoder for good.
    let asciiSoFar = true;
    return {
      push: (id) => {
        if (skip && this.specialIds.has(id)) return '';
        const t = this.idToTok.get(id);
        if (t === undefined) return '';
        if (asciiSoFar) {
          const text = this.asciiText(id, t);
          if (text !== null) return text;
          asciiSoFar = false;
        }
        return td.decode(tokenBytes(t), { stream: true });
      },
      flush: () => {
        const s = td.decode();
        td = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });
        asciiSoFar = true;
        return s;
      },
    };
  }

  /** The text of token `id` (spelled `t`) when all its bytes are ASCII, else null; cached per id. */
  private asciiText(id: number, t: string): string | null {
    let text = this.asciiTexts.get(id);
    if (text === undefined) {
      const bytes = tokenBytes(t);
      text = bytes.every((b) => b < 0x80) ? String.fromCharCode(...bytes) : null;
      this.asciiTexts.set(id, text);
    }
    return text;
  }
}
