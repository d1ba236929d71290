// lavi ask <image.png|jpg> "<question>": answers a question about an image with the bundled LaVi checkpoint
// (or --model DIR), on the best available backend (or --backend NAME). The answer goes to stdout; --verbose
// details go to stderr, so `lavi ask img.png "..." > answer.txt` keeps only the answer.
//
// Exit status: 0 answered, 1 runtime error (image, model, backend, prompt too long), 2 usage error,
// 130 interrupted (Ctrl-C stops generation between tokens and prints the answer so far).

import { formatFlops as fmtFlops } from '../../../core/cost.js';
import '../../../backends/index.js';
import { LaviError } from '../../../core/errors.js';
import { releaseAllBackends } from '../../../core/registry.js';
import { resolveBackendArg } from '../backends.js';
import { Progress } from '../progress.js';
import { LaviRuntime, type AskResult, type RequestOptions, type RuntimeInfo } from '../runtime.js';
import { parseCommand, parseUsage, samplingFlags, SAMPLING_FLAGS, UsageError } from './args.js';

const HELP = `usage: lavi ask <image.png|jpg> "<question>" [options]

Answers a question about an image with the LaVi model.

What the bundled model (models/weights/lavi-vqa) knows: it is a 3M-parameter LaVi trained from scratch on
synthetic pictures only: 1 to 5 flat coloured shapes (circle, square, triangle, cross; red, green, blue, yellow,
purple, orange; small or large), at most one per cell of a 3x3 grid, on any plain, tinted, graded or noisy
background, any picture size and aspect (PNG or JPEG; it is resized to 48x48). Six kinds of question, in many
phrasings (case, "colour", a missing "?" are fine):
  colour    "What color is the triangle?"  "what colour is the small circle"  "Which color is the cross?"
  shape     "What shape is the red object?"  "What kind of shape is the object in the center?"
  count     "How many circles are there?"  "How many red shapes can you see?"  "Count the objects."
  exist     "Is there a green square?"  "Do you see a red object?"  "Are there any crosses?"
  position  "Where is the cross?"  "Where's the red object?"  "In which part of the image is the blue circle?"
  describe  "Describe the image."  "What do you see?"
A question that names an object expects exactly one object to fit. Anything else ("Is this a cat?", "What is
the man doing?") gets the fixed answer "I can only answer questions about the coloured shapes in the picture."
It is not perfect: README, "The bundled model", has its accuracy on the original, shifted and out-of-task
held-out sets (\`npx lavi eval\` measures them).

options:
  --backend NAME      run on this backend (default: the best available one; software-emulated GPUs are skipped)
  --model DIR         checkpoint directory (default: the bundled models/weights/lavi-vqa)
  --stream            print the answer token by token as it is generated
  --verbose           also print (to stderr) the backend choice, time to first token, tokens/s, visual tokens, FLOPs
  --max-tokens N      answer tokens at most (default 64)
  --temperature T     sampling temperature (default 0: greedy)
  --top-k K           sample among the K most likely tokens (default 0: all)
  --top-p P           nucleus sampling threshold (default 1: off)
  --seed S            seed of the sampler (default 0)
  --json              print the whole result as JSON (errors too: {"error": {code, message}})
                      with --stream: NDJSON, one {"token", "text"} object per token, then the result

exit status: 0 answered, 1 runtime error, 2 usage error, 130 interrupted`;

interface AskArgs {
  image: string;
  question: string;
  backend?: string;
  model?: string;
  stream: boolean;
  verbose: boolean;
  json: boolean;
  request: RequestOptions;
}

function parse(args: string[]): AskArgs | 'help' {
  const p = parseUsage(args, { boolean: ['stream', 'verbose', 'json', 'help'], string: ['backend', 'model', ...SAMPLING_FLAGS] }, 'lavi ask');
  if (p.flags.has('help')) return 'help';
  if (p.positional.length < 2) throw new UsageError(p.positional.length === 0 ? 'missing <image> and "<question>"' : 'missing "<question>"');
  if (p.positional.length > 2) {
    throw new UsageError(`expected 2 arguments (image, question), got ${p.positional.length}: quote the question ("What is this?")`);
  }
  const [image, question] = p.positional as [string, string];
  if (image.trim() === '') throw new UsageError('the image path is empty');
  if (question.trim() === '') throw new UsageError('the question is empty');
  const backend = resolveBackendArg(p.flags.get('backend') as string | undefined);
  const request: RequestOptions = samplingFlags(p);
  return {
    image,
    question,
    backend,
    model: p.flags.get('model') as string | undefined,
    stream: p.flags.has('stream'),
    verbose: p.flags.has('verbose'),
    json: p.flags.has('json'),
    request,
  };
}


function fmtParams(n: number): string {
  return n >= 1e9 ? `${(n / 1e9).toFixed(2)}B` : n >= 1e6 ? `${(n / 1e6).toFixed(1)}M` : `${(n / 1e3).toFixed(1)}k`;
}

const ms = (x: number) => `${x.toFixed(x < 10 ? 1 : 0)} ms`;

function backendLines(info: RuntimeInfo): string[] {
  const b = info.backend, c = info.backendChoice;
  const lines = [`backend: ${b.name} (${b.description}${b.software ? ', software-emulated' : ''}) — ${c.requested ? 'chosen with --backend' : 'best available'}`];
  for (const s of c.skipped) lines.push(`  skipped ${s.name}: ${s.reason}`);
  return lines;
}

function verboseReport(info: RuntimeInfo, r: AskResult): string {
  const t = r.timings;
  const lines = [
    `model: ${info.modelDir} (${info.mode}, ${fmtParams(info.parameters.total)} parameters, ${info.config.weightDType})`,
    `visual tokens: ${r.visualTokens} (${info.config.imageSize}px image, patch ${info.config.patchSize})${info.mode === 'lavi' ? ', outside the context (ViLN conditioners)' : ', in the context'}`,
    `prompt: ${r.promptTokens} tokens; context after prefill: ${r.contextTokens} tokens`,
    `time to first token: ${ms(t.ttftMs)} (image ${ms(t.imageMs)}, vision encode ${ms(t.encodeMs)}, prefill ${ms(t.prefillMs)})`,
    `decode: ${r.tokens.length} tokens, ${ms(t.decodeMs)} after the first, ${t.tokensPerSecond > 0 ? `${t.tokensPerSecond.toFixed(1)} tokens/s` : 'n/a tokens/s (one token)'}; total ${ms(t.totalMs)}`,
    `stop: ${{ stop: 'end-of-answer token', length: 'reached --max-tokens', context: 'context full', aborted: 'interrupted' }[r.stopReason]}`,
  ];
  if (r.cost) {
    lines.push(`FLOPs: ${fmtFlops(r.cost.totalFlops)} (vision ${fmtFlops(r.cost.visionFlops)}, LLM ${fmtFlops(r.cost.llmFlops)} of which prefill ${fmtFlops(r.cost.prefillFlops)})`);
  }
  return lines.join('\n');
}

export async function run(args: string[]): Promise<number> {
  const a = parseCommand('lavi ask', args, parse, HELP);
  if (typeof a === 'number') return a;
  const ac = new AbortController();
  const onSigint = () => ac.abort(new Error('interrupted'));
  let rt: LaviRuntime | null = null;
  // A GPU backend's first use compiles its kernels (webgpu on lavapipe: ~20 s): progress on stderr when slow.
  const gpu = (name: string) => /webgpu|gpujs/.test(name);
  const progress = new Progress('lavi ask', 3000);
  try {
    if (a.backend !== undefined && gpu(a.backend)) progress.start(`loading the model on ${a.backend}`);
    rt = await LaviRuntime.create({ modelDir: a.model, backend: a.backend });
    if (gpu(rt.backend.name)) progress.start(`compiling kernels and answering on ${rt.backend.name}`);
    const info = rt.info();
    if (a.verbose && !a.json) console.error(backendLines(info).join('\n'));
    let streamed = '';
    process.once('SIGINT', onSigint);
    const r = await rt.ask(a.image, a.question, {
      ...a.request,
      signal: ac.signal,
      onToken: a.stream && a.json
        ? (text, id) => {
            progress.stop();
            process.stdout.write(JSON.stringify({ token: id, text }) + '\n');
          }
        : a.stream
        ? (text) => {
            progress.stop();
            // Leading whitespace of the answer is trimmed in the final answer; do the same while streaming.
            const out = streamed === '' ? text.trimStart() : text;
            streamed += out;
            if (out) process.stdout.write(out);
          }
        : undefined,
    });
    progress.stop();
    const result = { ...r, abortReason: undefined, backend: info.backend.name, model: info.modelDir, mode: info.mode };
    // --json --stream is NDJSON (one line per object); --json alone one indented document.
    if (a.json) console.log(a.stream ? JSON.stringify(result) : JSON.stringify(result, null, 1));
    else if (a.stream) process.stdout.write('\n');
    else console.log(r.answer);
    if (a.verbose && !a.json) console.error(verboseReport(info, r));
    return r.stopReason === 'aborted' ? 130 : 0;
  } catch (e) {
    progress.stop();
    const msg = e instanceof Error ? e.message : String(e);
    if (a.json) console.log(JSON.stringify({ error: { code: (e as { code?: unknown }).code ?? 'error', message: msg } }));
    console.error(`lavi ask: ${msg.split('\n')[0]}`);
    if (a.verbose && !(e instanceof LaviError) && e instanceof Error && e.stack) console.error(e.stack);
    return 1;
  } finally {
    progress.stop();
    process.removeListener('SIGINT', onSigint);
    rt?.dispose();
    await releaseAllBackends();
  }
}
