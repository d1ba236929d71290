// lavi backends [--json] [--verbose]: every backend with whether it runs here and, when not, why; family names
// (gpujs) with the member they resolve to. Each backend is created for real (in a child process, whose stderr, where
// Dawn prints its Vulkan warnings, is shown only with --verbose).

import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseUsage, UsageError } from './args.js';
import type { BackendStatus } from '../backends.js';

const HELP = `usage: lavi backends [--json] [--verbose]

Creates each backend and says which run here: name, yes/no, what it is, and why not when it does not.
--backend NAME of every command takes these names; a family name (gpujs) picks its best member here.
  --json      one JSON array
  --verbose   also show what the backends printed while being created (Dawn's driver warnings)`;

const SELF = fileURLToPath(import.meta.url);

export async function run(args: string[]): Promise<number> {
  const p = parseUsage(args, { boolean: ['json', 'verbose', 'help'] }, 'lavi backends');
  if (p.flags.has('help')) {
    console.log(HELP);
    return 0;
  }
  if (p.positional.length) throw new UsageError(`unexpected argument '${p.positional[0]}'`);
  const r = spawnSync(process.execPath, [SELF, '--probe'], { encoding: 'utf8', timeout: 300_000 });
  const line = (r.stdout ?? '').split('\n').find((l) => l.startsWith('['));
  if (!line) {
    console.error(`lavi backends: the probe failed (exit ${r.status}${r.signal ? `, ${r.signal}` : ''})\n${r.stderr}`);
    return 1;
  }
  const list = JSON.parse(line) as BackendStatus[];
  if (p.flags.has('verbose') && r.stderr.trim()) console.error(`while creating the backends:\n${r.stderr.trimEnd()}`);
  if (p.flags.has('json')) {
    console.log(JSON.stringify(list, null, 1));
    return 0;
  }
  const w = Math.max(...list.map((b) => b.name.length));
  for (const b of list) {
    const what = b.available ? (b.resolvesTo ? `→ ${b.resolvesTo}` : `${b.description}${b.software ? ' (software-emulated)' : ''}`) : b.reason ?? 'unavailable';
    console.log(`${b.name.padEnd(w)}  ${b.available ? 'yes' : 'no '}  ${what}`);
  }
  return 0;
}

if (process.argv[1] === SELF && process.argv[2] === '--probe') {
  const { probeBackends } = await import('../backends.js');
  const { releaseAllBackends } = await import('../../../core/registry.js');
  const list = await probeBackends();
  process.stdout.write(JSON.stringify(list) + '\n');
  await releaseAllBackends();
  process.exit(0);
}
