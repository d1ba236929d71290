// lavi generate --model DIR (--prompt TEXT | --ids 1,2,3) [--image FILE] [--max-tokens N] [--json]: raw generation
// with no chat template, for any generative family. With --ids the folder needs no tokenizer (then "text" is null),
// which is how people test checkpoints. With --json, the last line of stdout is one JSON object:
// {"ids": [generated ids, the stop token included as Hugging Face's generate includes it], "text": ..., ...,
// "load_ms": model folder → runtime ready, "timings": the runtime's (prefillMs, decodeMs, tokensPerSecond, ...)}.
//
// Exit status: 0 generated, 1 runtime error, 2 usage error, 130 interrupted.

import '../../../backends/index.js';
import { LaviError } from '../../../core/errors.js';
import { releaseAllBackends } from '../../../core/registry.js';
import { resolveBackendArg } from '../backends.js';
import { LaviRuntime, type RequestOptions } from '../runtime.js';
import { parseCommand, parseUsage, samplingFlags, SAMPLING_FLAGS, SAMPLING_HELP, UsageError } from './args.js';

const HELP = `usage: lavi generate --model DIR (--prompt TEXT | --ids 1,2,3) [options]

Continues a prompt with the model as it is: no chat template is applied. Greedy by default.

options:
  --model DIR         a model folder: Qwen2ForCausalLM, LaVi (or the bundled one when omitted)
  --prompt TEXT       the text to continue (needs the folder's tokenizer.json)
  --ids LIST          token ids, comma-separated; works without a tokenizer
  --image FILE        an image (vision models): for a model with an image token it goes where that token stands
  --backend NAME      run on this backend (default: the best available one)
  --sample            sample with generation_config.json's defaults (do_sample, temperature, top_p, top_k,
                      repetition_penalty) unless the flags below say otherwise
${SAMPLING_HELP}
                      (default --max-tokens 32)
  --stream            print the text as it is generated
  --json              print {"ids": [...], "text": "...", ...} as one JSON line at the end (ids include the
                      stop token, as Hugging Face's generate does)

exit status: 0 generated, 1 runtime error, 2 usage error, 130 interrupted`;

/** "1, 2,3" → [1, 2, 3]; every entry a non-negative integer. */
export function parseIdList(s: string): number[] {
  const parts = s.split(',').map((x) => x.trim());
  if (parts.length === 0 || (parts.length === 1 && parts[0] === '')) throw new UsageError('--ids is empty');
  return parts.map((x, i) => {
    if (!/^\d+$/.test(x) || !Number.isSafeInteger(Number(x))) throw new UsageError(`--ids: entry ${i} '${x.slice(0, 40)}' is not a non-negative integer`);
    return Number(x);
  });
}

interface GenerateArgs {
  model?: string;
  backend?: string;
  prompt: string | number[];
  image: string | null;
  json: boolean;
  stream: boolean;
  request: RequestOptions;
}

function parse(args: string[]): GenerateArgs | 'help' {
  const p = parseUsage(args, { boolean: ['json', 'stream', 'sample', 'help'], string: ['model', 'backend', 'prompt', 'ids', 'image', ...SAMPLING_FLAGS] }, 'lavi generate');
  if (p.flags.has('help')) return 'help';
  if (p.positional.length) throw new UsageError(`unexpected argument '${p.positional[0]}' (give the text with --prompt)`);
  const text = p.flags.get('prompt') as string | undefined;
  const ids = p.flags.get('ids') as string | undefined;
  if ((text === undefined) === (ids === undefined)) throw new UsageError('give exactly one of --prompt TEXT and --ids LIST');
  if (text === '') throw new UsageError('--prompt is empty');
  const backend = resolveBackendArg(p.flags.get('backend') as string | undefined);
  const request: RequestOptions = { maxNewTokens: 32, ...samplingFlags(p) };
  if (p.flags.has('sample')) request.modelDefaults = true;
  return {
    model: p.flags.get('model') as string | undefined,
    backend,
    prompt: ids !== undefined ? parseIdList(ids) : text!,
    image: (p.flags.get('image') as string | undefined) ?? null,
    json: p.flags.has('json'),
    stream: p.flags.has('stream'),
    request,
  };
}

export async function run(args: string[]): Promise<number> {
  const a = parseCommand('lavi generate', args, parse, HELP);
  if (typeof a === 'number') return a;
  const ac = new AbortController();
  const onSigint = () => ac.abort(new Error('interrupted'));
  let rt: LaviRuntime | null = null;
  try {
    const t0 = performance.now();
    rt = await LaviRuntime.create({ modelDir: a.model, backend: a.backend, requireTokenizer: typeof a.prompt === 'string' });
    const loadMs = performance.now() - t0;
    process.once('SIGINT', onSigint);
    const r = await rt.generate(a.prompt, {
      ...a.request,
      image: a.image,
      signal: ac.signal,
      onToken: a.stream ? (text) => process.stdout.write(text) : undefined,
    });
    const text = rt.info().hasTokenizer ? rt.tokenizer.decode(r.tokens, { skipSpecialTokens: false }) : null;
    if (a.stream) process.stdout.write('\n');
    if (a.json) {
      console.log(JSON.stringify({ ids: r.tokens, text, stop_reason: r.stopReason, prompt_tokens: r.promptTokens, context_tokens: r.contextTokens, backend: rt.backend.name, family: rt.family, load_ms: loadMs, timings: r.timings }));
    } else if (!a.stream) {
      console.log(text ?? r.tokens.join(','));
    }
    return r.stopReason === 'aborted' ? 130 : 0;
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    if (a.json) console.log(JSON.stringify({ error: { code: (e as { code?: string }).code ?? 'error', message: msg } }));
    console.error(`lavi generate: ${msg.split('\n')[0]}`);
    if (!(e instanceof LaviError) && e instanceof Error && e.stack && process.env.LAVI_DEBUG) console.error(e.stack);
    return 1;
  } finally {
    process.removeListener('SIGINT', onSigint);
    rt?.dispose();
    await releaseAllBackends();
  }
}
