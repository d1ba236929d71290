// A tiny argument parser for the subcommands: --flag, --key value, --key=value, and positionals.

import { ValueError } from '../../../core/errors.js';

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
      if (eq >= 0) throw new ValueError(`${command}: --${key} takes no value`);
      flags.set(key, true);
    } else if (strings.has(key)) {
      const v = eq >= 0 ? a.slice(eq + 1) : args[++i];
      if (v === undefined) throw new ValueError(`${command}: --${key} needs a value`);
      flags.set(key, v);
    } else {
      throw new ValueError(`${command}: unknown option --${key} (options: ${[...bools, ...strings].map((s) => '--' + s).join(' ')})`);
    }
  }
  return { positional, flags };
}

export function intFlag(p: ParsedArgs, key: string, dflt: number, command: string): number {
  const v = p.flags.get(key);
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new ValueError(`${command}: --${key} must be a non-negative integer, got ${String(v)}`);
  return n;
}
