// lavi verify: kernel conformance of a backend against the CPU reference.
//
//   lavi verify [--backend cpu] [--mode test|perf|support] [--op matmul,attention] [--case text]
//               [--seconds 0.5] [--all] [--seed N] [--json] [--strict]
//
// Exit status 1 when any case fails (and, with --strict, when any op is unsupported).

import '../../../backends/index.js';
import { getBackend, releaseAllBackends } from '../../../core/registry.js';
import { formatResult, formatSupport, summarize, verifyBackend } from '../../../backends/conformance/index.js';
import { intFlag, parseArgs, UsageError } from './args.js';
import { resolveBackendArg, resolveBackendName } from '../backends.js';
import { Progress } from '../progress.js';

export async function run(args: string[]): Promise<number> {
  const p = parseArgs(args, { boolean: ['json', 'all', 'strict', 'help'], string: ['backend', 'mode', 'op', 'case', 'seconds', 'seed', 'trace'] }, 'verify');
  if (p.flags.has('help')) {
    console.log('usage: lavi verify [--backend NAME] [--mode test|perf|support] [--op a,b] [--case TEXT] [--seconds S] [--all] [--seed N] [--json] [--strict]\n       lavi verify --trace FILE [--backend NAME] [--json]   (replay a recorded op trace)');
    return 0;
  }
  if (p.flags.has('trace')) {
    resolveBackendArg(p.flags.get('backend') as string | undefined);
    // Replay a recorded op trace (lavi trace record) on the backend instead of the op-case table.
    const { replayCommand } = await import('./trace.js');
    try {
      return await replayCommand(String(p.flags.get('trace')), (p.flags.get('backend') as string | undefined) ?? 'cpu', p.flags.has('json'));
    } finally {
      await releaseAllBackends();
    }
  }
  const mode = (p.flags.get('mode') ?? 'test') as string;
  if (mode !== 'test' && mode !== 'perf' && mode !== 'support') throw new UsageError(`--mode must be test, perf or support, got ${mode}`);
  if (p.positional.length) throw new UsageError(`unexpected argument '${p.positional[0]}'`);
  const backendArg = resolveBackendArg((p.flags.get('backend') as string | undefined) ?? 'cpu')!;
  const seconds = p.flags.has('seconds') ? Number(p.flags.get('seconds')) : 0.5;
  if (!(seconds > 0)) throw new UsageError(`--seconds must be a positive number`);
  const json = p.flags.has('json');
  // First use of a GPU backend compiles its kernels (tens of seconds on gpujs-webgpu): say so on stderr.
  const progress = new Progress(`lavi verify: ${backendArg}`, /webgpu|gpujs/.test(backendArg) ? 2000 : Infinity);
  try {
    progress.start('creating the backend');
    const backendName = (await resolveBackendName(backendArg)).name;
    const backend = await getBackend(backendName);
    const reference = await getBackend('cpu');
    const info = backend.info();
    if (!json) console.log(`lavi verify: backend '${info.name}' (${info.description}${info.software ? ', software-emulated' : ''}), mode ${mode}, reference cpu\n`);
    const results = await verifyBackend(
      {
        backend,
        reference,
        mode,
        ops: p.flags.has('op') ? String(p.flags.get('op')).split(',') : undefined,
        filter: p.flags.get('case') as string | undefined,
        perfSeconds: seconds,
        perfAll: p.flags.has('all'),
        seed: intFlag(p, 'seed', 1234, 'verify'),
      },
      (r) => {
        progress.step(`${r.name} done`);
        if (!(json || mode === 'support')) console.log(formatResult(r, mode));
      },
    );
    progress.stop();
    const s = summarize(results);
    if (json) console.log(JSON.stringify({ backend: info, mode, summary: s, results }, null, 1));
    else {
      if (mode === 'support') console.log(formatSupport(results));
      console.log(`\n${s.pass} passed, ${s.fail} failed, ${s.unsupported} unsupported, ${s.reference} reference-only (of ${results.length} cases)`);
    }
    if (results.length === 0) {
      console.error('verify: no case matched the filters');
      return 1;
    }
    return s.fail > 0 || (p.flags.has('strict') && s.unsupported > 0) ? 1 : 0;
  } finally {
    progress.stop();
    await releaseAllBackends();
  }
}
