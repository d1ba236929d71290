// Hugging Face tokenizer_config.json: the part of it that changes what a tokenizer does or what a chat template
// sees. Read once here, validated field by field; every error is a FormatError (or ValueError for an unreadable
// file) that names the file and the field.
//
// Fields honoured:
//   added_tokens_decoder       {"<id>": {content, lstrip, rstrip, normalized, single_word, special}}: added tokens
//                              on top of tokenizer.json's (HF re-adds any whose flags differ, so these flags win)
//   bos_token, eos_token, unk_token, sep_token, pad_token, cls_token, mask_token
//                              a string, null, or an AddedToken object {"content": ..., ...} (older files add
//                              "__type": "AddedToken"); additional_special_tokens is a list of those
//   add_bos_token, add_eos_token   booleans (Llama/Gemma-style tokenizers: the post-processor adds them)
//   split_special_tokens       boolean: special added tokens are not split out of the text (HF default false)
//   chat_template              a string, or a list of {"name", "template"} (the named-templates form)
//   model_max_length           a number (informational)
// Everything else (tokenizer_class, clean_up_tokenization_spaces, errors, ...) is kept in `raw` and not acted on.

import { FormatError, ValueError } from '../../core/errors.js';
import { nodeFs } from '../../core/platform.js';

/** Names of the special tokens HF's special_tokens_map can hold (besides additional_special_tokens). */
export const SPECIAL_TOKEN_KEYS = ['bos_token', 'eos_token', 'unk_token', 'sep_token', 'pad_token', 'cls_token', 'mask_token'] as const;
export type SpecialTokenKey = (typeof SPECIAL_TOKEN_KEYS)[number];

/** HF's special_tokens_map: only the tokens that are set, as their content strings. */
export interface SpecialTokensMap {
  bos_token?: string;
  eos_token?: string;
  unk_token?: string;
  sep_token?: string;
  pad_token?: string;
  cls_token?: string;
  mask_token?: string;
  additional_special_tokens?: string[];
}

/** One added token as tokenizer_config.json's added_tokens_decoder writes it. */
export interface ConfigAddedToken {
  id: number;
  content: string;
  special: boolean;
  normalized: boolean;
  lstrip: boolean;
  rstrip: boolean;
  single_word: boolean;
}

export interface NamedChatTemplate {
  name: string;
  template: string;
}

export interface TokenizerConfig {
  /** The file, for messages. */
  readonly path: string;
  readonly raw: Record<string, unknown>;
  readonly addedTokensDecoder: readonly ConfigAddedToken[];
  readonly specialTokens: SpecialTokensMap;
  readonly addBosToken?: boolean;
  readonly addEosToken?: boolean;
  readonly splitSpecialTokens: boolean;
  /** As written: a string, the list of named templates, or undefined when the file has none. */
  readonly chatTemplate?: string | readonly NamedChatTemplate[];
  readonly modelMaxLength?: number;
}

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function show(v: unknown): string {
  const s = JSON.stringify(v);
  return s === undefined ? 'nothing' : s.length > 80 ? s.slice(0, 77) + '...' : s;
}

/** The content of a special token value: a string, or an AddedToken object; null/undefined → undefined. */
function tokenContent(v: unknown, where: string, field: string): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'string') return v;
  if (isObject(v) && typeof v.content === 'string') return v.content;
  throw new FormatError(`${where}: field "${field}" must be a string, null or {"content": "..."}, got ${show(v)}`);
}

function flag(obj: Json, key: string, dflt: boolean, where: string, field: string): boolean {
  const v = obj[key];
  if (v === undefined || v === null) return dflt;
  if (typeof v !== 'boolean') throw new FormatError(`${where}: field "${field}.${key}" must be true or false, got ${show(v)}`);
  return v;
}

function optionalBool(obj: Json, key: string, where: string): boolean | undefined {
  const v = obj[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw new FormatError(`${where}: field "${key}" must be true or false, got ${show(v)}`);
  return v;
}

/** Validates a parsed tokenizer_config.json object; `path` names it in errors. */
export function parseTokenizerConfig(obj: unknown, path: string): TokenizerConfig {
  const where = `tokenizer_config ${path}`;
  if (!isObject(obj)) throw new FormatError(`${where}: the top level must be a JSON object, got ${show(obj)}`);

  const added: ConfigAddedToken[] = [];
  const decoder = obj.added_tokens_decoder;
  if (decoder !== undefined && decoder !== null) {
    if (!isObject(decoder)) throw new FormatError(`${where}: field "added_tokens_decoder" must be an object of "id": {token}, got ${show(decoder)}`);
    for (const [key, t] of Object.entries(decoder)) {
      const field = `added_tokens_decoder.${key}`;
      if (!/^(0|[1-9][0-9]*)$/.test(key) || !Number.isSafeInteger(Number(key))) {
        throw new FormatError(`${where}: field "added_tokens_decoder" has the key ${show(key)}, which is not a token id (a non-negative integer)`);
      }
      if (!isObject(t) || typeof t.content !== 'string' || t.content.length === 0) {
        throw new FormatError(`${where}: field "${field}" must be an object with a non-empty string "content", got ${show(t)}`);
      }
      const special = flag(t, 'special', false, where, field);
      added.push({
        id: Number(key),
        content: t.content,
        special,
        normalized: flag(t, 'normalized', !special, where, field),
        lstrip: flag(t, 'lstrip', false, where, field),
        rstrip: flag(t, 'rstrip', false, where, field),
        single_word: flag(t, 'single_word', false, where, field),
      });
    }
    added.sort((a, b) => a.id - b.id);
  }

  const specialTokens: SpecialTokensMap = {};
  for (const key of SPECIAL_TOKEN_KEYS) {
    const c = tokenContent(obj[key], where, key);
    if (c !== undefined) specialTokens[key] = c;
  }
  const extra = obj.additional_special_tokens;
  if (extra !== undefined && extra !== null) {
    if (!Array.isArray(extra)) throw new FormatError(`${where}: field "additional_special_tokens" must be a list, got ${show(extra)}`);
    specialTokens.additional_special_tokens = extra.map((v, k) => {
      const c = tokenContent(v, where, `additional_special_tokens[${k}]`);
      if (c === undefined) throw new FormatError(`${where}: field "additional_special_tokens[${k}]" is null`);
      return c;
    });
  }

  let chatTemplate: string | NamedChatTemplate[] | undefined;
  const ct = obj.chat_template;
  if (typeof ct === 'string') chatTemplate = ct;
  else if (Array.isArray(ct)) {
    chatTemplate = ct.map((e, k) => {
      if (!isObject(e) || typeof e.name !== 'string' || typeof e.template !== 'string') {
        throw new FormatError(`${where}: field "chat_template[${k}]" must be {"name": string, "template": string}, got ${show(e)}`);
      }
      return { name: e.name, template: e.template };
    });
  } else if (ct !== undefined && ct !== null) {
    throw new FormatError(`${where}: field "chat_template" must be a string or a list of {"name", "template"}, got ${show(ct)}`);
  }

  const mml = obj.model_max_length;
  if (mml !== undefined && mml !== null && (typeof mml !== 'number' || !(mml > 0))) {
    throw new FormatError(`${where}: field "model_max_length" must be a positive number, got ${show(mml)}`);
  }

  return {
    path,
    raw: obj,
    addedTokensDecoder: added,
    specialTokens,
    addBosToken: optionalBool(obj, 'add_bos_token', where),
    addEosToken: optionalBool(obj, 'add_eos_token', where),
    splitSpecialTokens: optionalBool(obj, 'split_special_tokens', where) ?? false,
    chatTemplate,
    modelMaxLength: typeof mml === 'number' ? mml : undefined,
  };
}

/** Reads a text file synchronously (the tokenizer API is synchronous); `null` when it does not exist and
 *  `optional` is set. Errors name `label` and the path. */
export function readTextSync(path: string, label: string, opts: { optional?: boolean } = {}): string | null {
  try {
    return nodeFs().readFileSync(path, 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOENT' && opts.optional) return null;
    const why = err.code === 'ENOENT' ? 'no such file' : err.code === 'EISDIR' ? 'is a directory' : err.message;
    throw new ValueError(`${label}${path}: cannot read the file (${why})`);
  }
}

/** readTextSync, then JSON.parse with an error naming the file. */
export function readJsonSync(path: string, label: string, opts: { optional?: boolean } = {}): unknown {
  const text = readTextSync(path, label, opts);
  if (text === null) return null;
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new FormatError(`${label}${path}: not valid JSON (${(e as Error).message})`);
  }
}

/** Reads tokenizer_config.json; `null` when it does not exist and `optional` is set. */
export function readTokenizerConfig(path: string, opts: { optional: true }): TokenizerConfig | null;
export function readTokenizerConfig(path: string, opts?: { optional?: false }): TokenizerConfig;
export function readTokenizerConfig(path: string, opts: { optional?: boolean }): TokenizerConfig | null;
export function readTokenizerConfig(path: string, opts: { optional?: boolean } = {}): TokenizerConfig | null {
  const obj = readJsonSync(path, 'tokenizer_config ', opts);
  return obj === null ? null : parseTokenizerConfig(obj, path);
}
