// lavi trace: record a model request as an op trace; replay one on a backend.
//
//   lavi trace record --out FILE (--image IMG --question Q | --prompt P) [--model DIR] [--backend cpu] [--max-tokens N]
//   lavi trace replay FILE [--backend NAME] [--json]          (same as: lavi verify --trace FILE --backend NAME)
//
// Replay exits 1 at the first op whose output is outside its tolerance, naming it.

import '../../../backends/index.js';
import { getBackend, releaseAllBackends } from '../../../core/registry.js';
import { LaviRuntime, defaultModelDir } from '../runtime.js';
import { formatDivergence, readTrace, recordingBackend, replayTrace, TraceWriter } from '../trace.js';
import { intFlag, parseArgs, UsageError } from './args.js';
import { resolveBackendArg, resolveBackendName } from '../backends.js';

const USAGE = `usage: lavi trace record --out FILE (--image IMG --question Q | --prompt P) [--model DIR] [--backend cpu] [--max-tokens N]
       lavi trace replay FILE [--backend NAME] [--json]`;

export async function run(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (!sub || sub === '--help' || sub === '-h') {
    console.log(USAGE);
    return sub ? 0 : 2;
  }
  try {
    if (sub === 'record') return await record(rest);
    if (sub === 'replay') {
      const p = parseArgs(rest, { boolean: ['json'], string: ['backend'] }, 'trace replay');
      if (p.positional.length !== 1) throw new UsageError('trace replay: give one trace file');
      return await replayCommand(p.positional[0]!, (p.flags.get('backend') as string | undefined) ?? 'cpu', p.flags.has('json'));
    }
    throw new UsageError(`unknown subcommand '${sub}' (record, replay)`);
  } finally {
    await releaseAllBackends();
  }
}

async function record(args: string[]): Promise<number> {
  const p = parseArgs(args, { string: ['out', 'image', 'question', 'prompt', 'model', 'backend', 'max-tokens'] }, 'trace record');
  const out = p.flags.get('out') as string | undefined;
  if (!out) throw new UsageError('trace record: --out FILE is required');
  const image = p.flags.get('image') as string | undefined;
  const question = p.flags.get('question') as string | undefined;
  const prompt = p.flags.get('prompt') as string | undefined;
  if ((image === undefined) !== (question === undefined)) throw new UsageError('trace record: --image and --question go together');
  if ((image === undefined) === (prompt === undefined)) throw new UsageError('trace record: give either --image IMG --question Q or --prompt P');
  const maxNewTokens = intFlag(p, 'max-tokens', 4, 'trace record');
  const modelDir = (p.flags.get('model') as string | undefined) ?? defaultModelDir();
  const backendName = (await resolveBackendName(resolveBackendArg(p.flags.get('backend') as string | undefined) ?? 'cpu')).name;
  const inner = await getBackend(backendName);
  const request = image !== undefined ? { type: 'ask', image, question, maxNewTokens } : { type: 'generate', prompt, maxNewTokens };
  const writer = new TraceWriter(out, { model: modelDir, backend: backendName, request });
  let recording = false;
  const backend = recordingBackend(inner, (r) => {
    if (recording) writer.write(r);
  });
  const rt = await LaviRuntime.create({ modelDir, backend });
  try {
    recording = true; // the request's ops only, not the weight upload's casts
    const r = image !== undefined ? await rt.ask(image, question!, { maxNewTokens }) : await rt.generate(prompt!, { maxNewTokens });
    recording = false;
    writer.close();
    console.log(`lavi trace: ${writer.count} ops recorded to ${out} (answer ${JSON.stringify(r.answer)}, ${r.tokens.length} tokens)`);
  } finally {
    rt.dispose();
  }
  return 0;
}

/** Replays a trace file on a backend and prints the outcome; 1 on divergence. Used by `lavi verify --trace`. */
export async function replayCommand(file: string, backendName: string, json = false): Promise<number> {
  resolveBackendArg(backendName);
  const trace = readTrace(file);
  const backend = await getBackend((await resolveBackendName(backendName)).name);
  const res = await replayTrace(trace, backend);
  if (json) console.log(JSON.stringify({ trace: trace.header, ...res }, null, 1));
  else {
    console.log(`lavi trace replay: ${file} (recorded on '${trace.header.backend}', model ${trace.header.model}) on '${backend.name}'`);
    if (res.firstDivergence) console.log(`DIVERGED at ${formatDivergence(res.firstDivergence)}\n${res.passed} of ${res.ops} ops matched before it`);
    else {
      const worst = Object.entries(res.worst).map(([op, n]) => `${op} ${n.toExponential(1)}`).join(', ');
      console.log(`all ${res.ops} ops within tolerance (worst NMSE per op: ${worst})`);
    }
  }
  return res.firstDivergence ? 1 : 0;
}
