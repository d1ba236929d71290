// A tiny argument parser for the subcommands: --flag, --key value, --key=value, and positionals. Its errors are
// UsageErrors: the CLI prints them as `lavi <command>: <message>` (JSON with --json) and exits 2.

/** A mistake in how the command was called: the command prints it and exits 2. */
export class UsageError extends Error {
  readonly code = 'usage';
}

export interface ParsedArgs {
  positional: string[];
  flags: Map<string, string | true>;
}

export function parseArgs(args: string[], spec: { boolean?: string[]; string?: string[] }, command: string): ParsedArgs {
  const bools = new Set(spec.boolean ?? []);
  const strings = new Set(spec.string ?? []);
  const flags = new Map<string, string | true>();
  const positional: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (!a.startsWith('--') || a === '--') {
      positional.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    const key = a.slice(2, eq < 0 ? undefined : eq);
    if (bools.has(key)) {
      if (eq >= 0) throw new UsageError(`${command}: --${key} takes no value`);
      flags.set(key, true);
    } else if (strings.has(key)) {
      const v = eq >= 0 ? a.slice(eq + 1) : args[++i];
      if (v === undefined) throw new UsageError(`${command}: --${key} needs a value`);
      flags.set(key, v);
    } else {
      throw new UsageError(`${command}: unknown option --${key} (options: ${[...bools, ...strings].map((s) => '--' + s).join(' ')})`);
    }
  }
  return { positional, flags };
}

export function intFlag(p: ParsedArgs, key: string, dflt: number, command: string): number {
  const v = p.flags.get(key);
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new UsageError(`${command}: --${key} must be a non-negative integer, got ${String(v)}`);
  return n;
}


export function numberFlag(p: ParsedArgs, key: string, check: (n: number) => boolean, what: string): number | undefined {
  const v = p.flags.get(key);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v === '' || v === true || !Number.isFinite(n) || !check(n)) throw new UsageError(`--${key} must be ${what}, got '${String(v)}'`);
  return n;
}

/** The sampling options every generating command takes. */
export const SAMPLING_FLAGS = ['max-tokens', 'temperature', 'top-k', 'top-p', 'seed'];

export const SAMPLING_HELP = `  --max-tokens N      tokens to generate at most
  --temperature T     sampling temperature (0: greedy)
  --top-k K           sample among the K most likely tokens (0: all)
  --top-p P           nucleus sampling threshold (1: off)
  --seed S            seed of the sampler (default 0)`;

export function samplingFlags(p: ParsedArgs): { maxNewTokens?: number; temperature?: number; topK?: number; topP?: number; seed?: number } {
  const isInt = (n: number) => Number.isInteger(n);
  const out = {
    maxNewTokens: numberFlag(p, 'max-tokens', (n) => isInt(n) && n >= 1, 'a positive integer'),
    temperature: numberFlag(p, 'temperature', (n) => n >= 0, 'a number ≥ 0'),
    topK: numberFlag(p, 'top-k', (n) => isInt(n) && n >= 0, 'a non-negative integer'),
    topP: numberFlag(p, 'top-p', (n) => n > 0 && n <= 1, 'a number in (0, 1]'),
    seed: numberFlag(p, 'seed', isInt, 'an integer'),
  };
  for (const k of Object.keys(out) as (keyof typeof out)[]) if (out[k] === undefined) delete out[k];
  return out;
}

/** Parses with `parseArgs`, turning its errors into UsageErrors without the command prefix. */
export function parseUsage(args: string[], spec: { boolean?: string[]; string?: string[] }, command: string): ParsedArgs {
  try {
    return parseArgs(args, spec, command);
  } catch (e) {
    throw new UsageError((e as Error).message.replace(`${command}: `, ''));
  }
}

/**
 * A command's arguments parsed, or the exit code once the command has answered: 0 after printing its help, 2 after
 * a usage error (on stderr, and as `{"error": …}` on stdout when --json was asked for).
 */
export function parseCommand<T>(command: string, args: string[], parse: (args: string[]) => T | 'help', help: string): T | number {
  let a: T | 'help';
  try {
    a = parse(args);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    if (args.includes('--json')) console.log(JSON.stringify({ error: { code: 'usage', message: e.message } }));
    console.error(`${command}: ${e.message} (see '${command} --help')`);
    return 2;
  }
  if (a === 'help') {
    console.log(help);
    return 0;
  }
  return a;
}
