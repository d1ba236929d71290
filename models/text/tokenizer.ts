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
import { readJsonSync, readTokenizerConfig, SPECIAL_TOKEN_KEYS, type SpecialTokensMap, type TokenizerConfig } from './tokenizer-config.js';
import { nodePath } from '../../core/platform.js';
import { BPEModel } from './bpe.js';
import {
  AddedTokenMatcher, boolField, buildNormalizer, buildPostProcessor, buildPreTokenizer, isObject, parseMerges, tokenBytes, typeName,
  type Normalizer, type PostProcessor, type PreTokenizer,
} from './pipeline.js';

export { GPT2_SPLIT_PATTERN, translateOnigRegex } from './onig-regex.js';
export { toByteLevel } from './pipeline.js';

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
    const obj = readJsonSync(path, 'tokenizer ');
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
