// Reading Hugging Face JSON files (config.json, generation_config.json, preprocessor_config.json): one reader that
// names the file in every error, and typed field getters that name the file, the field and the offending value.

import { ValueError } from '../../core/errors.js';
import { nodeFs } from '../../core/platform.js';

export type Json = Record<string, unknown>;

/** Limit on a config-like JSON file: real ones are a few KB (a tokenizer_config.json with a long template ~100 KB). */
const MAX_JSON_BYTES = 16 * 1024 * 1024;

/** Reads and parses a JSON object file; `null` when the file does not exist and `optional` is set. */
export async function readJsonFile(path: string, opts: { optional: true }): Promise<Json | null>;
export async function readJsonFile(path: string, opts?: { optional?: false }): Promise<Json>;
export async function readJsonFile(path: string, opts: { optional?: boolean } = {}): Promise<Json | null> {
  let text: string;
  try {
    const st = await nodeFs().promises.stat(path);
    if (st.isDirectory()) throw new ValueError(`${path}: is a directory, not a JSON file`);
    if (st.size > MAX_JSON_BYTES) throw new ValueError(`${path}: ${st.size} bytes, larger than the ${MAX_JSON_BYTES}-byte limit for a config file`);
    text = await nodeFs().promises.readFile(path, 'utf8');
  } catch (e) {
    if (e instanceof ValueError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && opts.optional) return null;
    throw new ValueError(code === 'ENOENT' ? `${path}: no such file` : `${path}: cannot read (${(e as Error).message})`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ValueError(`${path}: not valid JSON (${(e as Error).message})`);
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new ValueError(`${path}: not a JSON object`);
  return raw as Json;
}

function show(v: unknown): string {
  const s = JSON.stringify(v);
  return s === undefined ? 'nothing' : s.length > 80 ? s.slice(0, 77) + '...' : s;
}

export function num(obj: Json, key: string, where: string, opts: { int?: boolean; min?: number; default?: number } = {}): number {
  const v = obj[key] ?? opts.default;
  if (typeof v !== 'number' || !Number.isFinite(v) || (opts.int && !Number.isInteger(v)) || (opts.min !== undefined && v < opts.min)) {
    throw new ValueError(`${where}: field '${key}' must be ${opts.int ? 'an integer' : 'a number'}${opts.min !== undefined ? ` ≥ ${opts.min}` : ''}, got ${show(obj[key])}`);
  }
  return v;
}

export function bool(obj: Json, key: string, where: string, dflt?: boolean): boolean {
  const v = obj[key] ?? dflt;
  if (typeof v !== 'boolean') throw new ValueError(`${where}: field '${key}' must be true or false, got ${show(obj[key])}`);
  return v;
}

export function str(obj: Json, key: string, where: string, dflt?: string): string {
  const v = obj[key] ?? dflt;
  if (typeof v !== 'string') throw new ValueError(`${where}: field '${key}' must be a string, got ${show(obj[key])}`);
  return v;
}

export function oneOf<T extends string>(obj: Json, key: string, allowed: readonly T[], where: string, dflt?: T): T {
  const v = obj[key] ?? dflt;
  if (!allowed.includes(v as T)) throw new ValueError(`${where}: field '${key}' must be one of ${allowed.join(', ')}, got ${show(obj[key])}`);
  return v as T;
}

export function section(obj: Json, key: string, where: string): Json {
  const v = obj[key];
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new ValueError(`${where}: missing object '${key}'`);
  return v as Json;
}

/** Token ids: an integer, a list of integers, or absent/null (→ []); each must be below `vocab`. */
export function tokenIds(obj: Json, key: string, where: string, vocab: number): number[] {
  const v = obj[key];
  if (v === undefined || v === null) return [];
  const list = Array.isArray(v) ? v : [v];
  if (list.some((e) => !Number.isInteger(e) || (e as number) < 0 || (e as number) >= vocab)) {
    throw new ValueError(`${where}: field '${key}' must be token ids below vocab_size ${vocab}, got ${show(v)}`);
  }
  return list as number[];
}
