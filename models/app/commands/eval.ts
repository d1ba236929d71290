// lavi eval: the held-out VQA sets through the engine, for the LaVi checkpoint and the concat baseline.
//
//   lavi eval [--sets test,shifted,oot] [--sets-dir examples/vqa] [--pytorch-dir models/weights]
//             [--backend NAME] [--limit N] [--json] [--max-tokens N] [--jpeg] [--lavi DIR] [--concat DIR]
//             [--out FILE] [--verbose]
//   lavi eval --split DIR [--pytorch FILE] [same options]            one other split directory
//
// The bundled model's three held-out sets (models/reference/vqa_data.py writes them): test, the original split
// (48 x 48 pictures drawn like the original training data); shifted, pictures of other sizes and aspects,
// objects near the size and position limits, dark or tinted backgrounds, gradients, noise, low JPEG qualities
// and the question phrasings the model was trained with; oot, out-of-task questions (people, animals, text,
// weather, things, other) whose right answer is the fixed sentence, their types being these categories. Each is
// compared with its PyTorch results (models/weights/eval-pytorch.json, eval-pytorch-shifted.json,
// eval-pytorch-oot.json).
//
// For each set and model: accuracy per question type and overall (exact match after trimming, lowercasing and
// dropping a final period, the rule of the eval-pytorch files), answers outside the task's vocabulary (anything
// but a colour, a shape, a number, yes/no, a cell, a well-formed description or the out-of-task sentence),
// FLOPs per answer split into vision (tower + projector) and LLM (decoder, conditioners, lm_head; prefill and
// decode), peak memory (the backend's memory() counters when it has them, else the process RSS growth — the
// table says which), latency (mean time per answer, time to first token, decode tokens/s), and agreement with
// the PyTorch predictions (accuracy difference in points, answers and token sequences that differ). Nothing is
// written unless --out FILE says where (the JSON report: one table per set, or the one table of --split).
// Models run one after the other, so one model's weights never count in the other's memory.

import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, relative, resolve } from 'node:path';
import '../../../backends/index.js';
import { formatEval, formatSummary, inTaskVocabulary, normalizeAnswer, TYPE_ORDER, type EvalReport, type EvalTable, type ModelEval, type Question } from './eval-report.js';

export { formatEval, formatSummary, inTaskVocabulary, normalizeAnswer, OUT_OF_TASK_ANSWER, type EvalReport, type EvalTable, type ModelEval, type Question } from './eval-report.js';
import type { Backend } from '../../../core/backend.js';
import { getBackend, releaseAllBackends } from '../../../core/registry.js';
import { defaultBackend, resolveBackendArg, resolveBackendName } from '../backends.js';
import { LaviRuntime, packageRoot, type AskResult } from '../runtime.js';
import { parseArgs, type ParsedArgs } from './args.js';

const HELP = `usage: lavi eval [options]

Runs the held-out VQA questions through the engine for the LaVi checkpoint and the concat baseline and prints,
per set, accuracy per question type, answers outside the task's vocabulary, FLOPs per answer (vision / LLM),
peak memory, latency, and agreement with the PyTorch predictions (models/weights/eval-pytorch*.json).

The sets (examples/vqa/<set>): test, the original held-out split; shifted, pictures unlike the original ones
(other sizes and aspects, objects near the size and position limits, dark or tinted backgrounds, gradients,
noise, JPEG) with varied phrasings; oot, out-of-task questions, right when answered with the fixed sentence.

options:
  --sets A,B        which sets (default: test,shifted,oot)
  --sets-dir DIR    directory holding the set folders (default: examples/vqa)
  --pytorch-dir DIR directory holding eval-pytorch.json, eval-pytorch-shifted.json, eval-pytorch-oot.json
                    (default: models/weights; a missing file is skipped)
  --split DIR       one other split directory (questions.jsonl and the images) instead of the sets
  --pytorch FILE    with --split: PyTorch results to compare with (default: none)
  --backend NAME    backend to run on (default: the best available)
  --limit N         only the first N questions of each set
  --max-tokens N    answer tokens at most (default 64, as the PyTorch evaluation)
  --jpeg            read each question's JPEG image instead of the PNG
  --lavi DIR        LaVi checkpoint (default: models/weights/lavi-vqa)
  --concat DIR      concat baseline checkpoint (default: models/weights/concat-vqa)
  --out FILE        write the JSON report to FILE (default: not written; the shipped tables were made with
                    --out models/weights/eval-engine.json)
  --json            print the JSON report instead of the text tables
  --verbose         print every question, the expected answer and the model's`;

class UsageError extends Error {}

// ---- PyTorch results ----------------------------------------------------------------------------------------

interface PytorchRow {
  prediction: string;
  tokenIds: number[] | null;
  minMargin: number | null;
}

interface PytorchModel {
  /** The accuracy eval-pytorch.json states for the whole split (fractions). */
  stated: Record<string, number> | null;
  /** PyTorch's answer per question index of our split (matched by image and question text). */
  rows: Map<number, PytorchRow>;
}

type Json = Record<string, unknown>;
const isObj = (x: unknown): x is Json => !!x && typeof x === 'object' && !Array.isArray(x);

function readAccuracy(x: unknown): Record<string, number> | null {
  if (!isObj(x)) return null;
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(x)) if (typeof v === 'number' && Number.isFinite(v)) out[k] = v;
  return Object.keys(out).length ? out : null;
}

/**
 * One model's section of eval-pytorch.json (format 'lavi-vqa-eval/1', written by models/reference/eval_vqa.py):
 * models[<checkpoint dir name>] = { accuracy, accuracy_jpeg, predictions: [{ index, image, question, prediction,
 * prediction_jpeg, token_ids, min_margin, ... }] }. Rows are matched to our questions by image and question
 * text, so a --split other than the one PyTorch ran on compares nothing.
 */
function pytorchModel(root: Json, names: string[], questions: readonly Question[], jpeg: boolean): PytorchModel | null {
  const models = isObj(root.models) ? root.models : null;
  if (!models) return null;
  let entry: Json | null = null;
  for (const n of names) if (!entry && isObj(models[n])) entry = models[n] as Json;
  if (!entry) return null;
  const stated = readAccuracy(jpeg ? entry.accuracy_jpeg : entry.accuracy);
  const rows = new Map<number, PytorchRow>();
  const key = (img: unknown, q: unknown) => `${String(img)}\u0000${String(q)}`;
  const byKey = new Map(questions.map((q, i) => [key(q.image, q.question), i]));
  if (Array.isArray(entry.predictions)) {
    for (const p of entry.predictions) {
      if (!isObj(p)) continue;
      const text = jpeg ? p.prediction_jpeg : p.prediction;
      const idx = byKey.get(key(p.image, p.question));
      if (typeof text !== 'string' || idx === undefined) continue;
      const ids = !jpeg && Array.isArray(p.token_ids) && p.token_ids.every((x) => Number.isInteger(x)) ? (p.token_ids as number[]) : null;
      rows.set(idx, { prediction: text, tokenIds: ids, minMargin: typeof p.min_margin === 'number' ? p.min_margin : null });
    }
  }
  return { stated, rows };
}

// ---- running ------------------------------------------------------------------------------------------------

interface MemProbe {
  start(): void;
  beforeAnswer(): void;
  afterAnswer(): void;
  result(weightsBytes: number): ModelEval['memory'];
}

interface MemoryCounters {
  liveBytes: number;
  peakBytes?: number;
  pooledBytes?: number;
}

/**
 * Peak memory from the backend's own counters when it has them — memory() (cpu: live + peak, with resetPeak();
 * webgpu: live + pooled buffers, sampled after each answer) or memoryStats() (wasm: live + peak of its heap) —
 * else the growth of the process RSS, sampled after each answer. `source` says which.
 */
function memoryProbe(backend: Backend): MemProbe {
  const b = backend as Backend & { memory?: unknown; memoryStats?: unknown; resetPeak?: unknown };
  const read: (() => MemoryCounters) | null =
    typeof b.memory === 'function' ? () => (b.memory as () => MemoryCounters).call(b)
    : typeof b.memoryStats === 'function' ? () => (b.memoryStats as () => MemoryCounters).call(b)
    : null;
  const probe = read?.();
  if (read && probe && typeof probe.liveBytes === 'number') {
    const hasPeak = typeof probe.peakBytes === 'number';
    const reset = typeof b.resetPeak === 'function' ? () => (b.resetPeak as () => void).call(b) : null;
    const fn = typeof b.memory === 'function' ? 'memory()' : 'memoryStats()';
    const source = hasPeak ? `backend ${fn}` : `backend ${fn}, live + pooled after each answer`;
    let peak = 0, perAnswer = 0, live0 = 0;
    const held = (m: MemoryCounters) => (hasPeak ? m.peakBytes! : m.liveBytes + (m.pooledBytes ?? 0));
    return {
      start: () => reset?.(),
      beforeAnswer: () => {
        reset?.();
        live0 = read().liveBytes;
      },
      afterAnswer: () => {
        const m = read();
        peak = Math.max(peak, held(m));
        perAnswer = Math.max(perAnswer, held(m) - live0);
      },
      result: (weightsBytes) => ({ source, weightsBytes, peakBytes: peak, perAnswerPeakBytes: hasPeak && reset ? perAnswer : null }),
    };
  }
  let rss0 = 0, peak = 0;
  return {
    start: () => {
      rss0 = process.memoryUsage().rss;
    },
    beforeAnswer: () => {},
    afterAnswer: () => {
      peak = Math.max(peak, process.memoryUsage().rss - rss0);
    },
    result: (weightsBytes) => ({ source: 'process RSS delta', weightsBytes, peakBytes: peak, perAnswerPeakBytes: null }),
  };
}


function typesOf(questions: readonly Question[]): string[] {
  const seen = [...new Set(questions.map((q) => q.type))];
  return [...TYPE_ORDER.filter((t) => seen.includes(t)), ...seen.filter((t) => !TYPE_ORDER.includes(t)).sort()];
}

function accuracyOf(questions: readonly Question[], pred: (i: number) => string | undefined, types: string[]) {
  const correct: Record<string, number> = {}, counts: Record<string, number> = {}, accuracy: Record<string, number> = {};
  for (const t of [...types, 'overall']) (correct[t] = 0), (counts[t] = 0);
  questions.forEach((q, i) => {
    const p = pred(i);
    if (p === undefined) return;
    const ok = normalizeAnswer(p) === normalizeAnswer(q.answer) ? 1 : 0;
    correct[q.type]! += ok;
    counts[q.type]! += 1;
    correct.overall! += ok;
    counts.overall! += 1;
  });
  for (const t of Object.keys(counts)) accuracy[t] = counts[t]! ? correct[t]! / counts[t]! : NaN;
  return { correct, counts, accuracy };
}

interface SplitArgs {
  name: string;
  dir: string;
  /** PyTorch results file, or null for none. */
  pytorch: string | null;
  /** The file was named on the command line: its absence is an error. */
  pytorchGiven: boolean;
}

/** The bundled model's held-out sets and the PyTorch results file of each. */
export const EVAL_SETS: Record<string, string> = { test: 'eval-pytorch.json', shifted: 'eval-pytorch-shifted.json', oot: 'eval-pytorch-oot.json' };

interface EvalArgs {
  splits: SplitArgs[];
  /** --split: one directory; the JSON is its one table (EvalTable) rather than the report. */
  singleSplit: boolean;
  backend?: string;
  limit: number | null;
  maxNewTokens: number;
  jpeg: boolean;
  models: { name: string; dir: string; pytorchNames: string[] }[];
  out: string | null;
  json: boolean;
  verbose: boolean;
}

function intArg(p: ParsedArgs, key: string, min: number): number | undefined {
  const v = p.flags.get(key);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v === '' || !Number.isInteger(n) || n < min) throw new UsageError(`--${key} must be an integer ≥ ${min}, got '${String(v)}'`);
  return n;
}

function parse(args: string[]): EvalArgs | 'help' {
  let p: ParsedArgs;
  try {
    p = parseArgs(args, {
      boolean: ['json', 'jpeg', 'verbose', 'help'],
      string: ['split', 'sets', 'sets-dir', 'pytorch-dir', 'backend', 'limit', 'max-tokens', 'lavi', 'concat', 'pytorch', 'out'],
    }, 'lavi eval');
  } catch (e) {
    throw new UsageError((e as Error).message.replace(/^lavi eval: /, ''));
  }
  if (p.flags.has('help')) return 'help';
  if (p.positional.length) throw new UsageError(`unexpected argument '${p.positional[0]}'`);
  const backend = p.flags.get('backend') as string | undefined;
  try {
    resolveBackendArg(backend); // family names (gpujs) resolve; meta is refused
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const root = packageRoot();
  const weights = join(root, 'models', 'weights');
  const limit = intArg(p, 'limit', 1) ?? null;
  const str = (k: string) => p.flags.get(k) as string | undefined;
  const outFlag = str('out');
  let splits: SplitArgs[];
  const splitFlag = str('split');
  if (splitFlag !== undefined) {
    for (const k of ['sets', 'sets-dir', 'pytorch-dir']) if (p.flags.has(k)) throw new UsageError(`--${k} and --split exclude each other`);
    const dir = resolve(splitFlag);
    const pt = str('pytorch');
    splits = [{ name: basename(dir), dir, pytorch: pt !== undefined ? resolve(pt) : null, pytorchGiven: pt !== undefined }];
  } else {
    if (p.flags.has('pytorch')) throw new UsageError('--pytorch goes with --split (the sets use --pytorch-dir)');
    const names = (str('sets') ?? Object.keys(EVAL_SETS).join(',')).split(',').map((x) => x.trim()).filter(Boolean);
    for (const n of names) if (!(n in EVAL_SETS)) throw new UsageError(`unknown set '${n}' (sets: ${Object.keys(EVAL_SETS).join(', ')})`);
    if (names.length === 0) throw new UsageError('--sets names no set');
    const setsDir = resolve(str('sets-dir') ?? join(root, 'examples', 'vqa'));
    const ptDir = resolve(str('pytorch-dir') ?? weights);
    splits = [...new Set(names)].map((n) => ({ name: n, dir: join(setsDir, n), pytorch: join(ptDir, EVAL_SETS[n]!), pytorchGiven: false }));
  }
  return {
    splits,
    singleSplit: splitFlag !== undefined,
    backend,
    limit,
    maxNewTokens: intArg(p, 'max-tokens', 1) ?? 64,
    jpeg: p.flags.has('jpeg'),
    models: [
      { name: 'LaVi', dir: resolve(str('lavi') ?? join(weights, 'lavi-vqa')), pytorchNames: ['lavi-vqa', 'lavi'] },
      { name: 'concat', dir: resolve(str('concat') ?? join(weights, 'concat-vqa')), pytorchNames: ['concat-vqa', 'concat'] },
    ],
    out: outFlag !== undefined ? resolve(outFlag) : null,
    json: p.flags.has('json'),
    verbose: p.flags.has('verbose'),
  };
}

async function readQuestions(split: string): Promise<Question[]> {
  const path = join(split, 'questions.jsonl');
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new Error(`cannot read ${path} (${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message})`);
  }
  const out: Question[] = [];
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    let q: unknown;
    try {
      q = JSON.parse(line);
    } catch (e) {
      throw new Error(`${path}:${i + 1}: not valid JSON (${(e as Error).message})`);
    }
    if (!isObj(q) || typeof q.image !== 'string' || typeof q.question !== 'string' || typeof q.answer !== 'string' || typeof q.type !== 'string') {
      throw new Error(`${path}:${i + 1}: expected {image, question, answer, type} strings`);
    }
    out.push({ image: q.image, jpeg: typeof q.jpeg === 'string' ? q.jpeg : undefined, question: q.question, answer: q.answer, type: q.type });
  });
  if (out.length === 0) throw new Error(`${path}: no questions`);
  return out;
}

/** A path relative to the package when it is inside it, else absolute. */
function shortPath(p: string): string {
  const r = relative(packageRoot(), p);
  return r && !r.startsWith('..') && !isAbsolute(r) ? r : p;
}

const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);

async function evalModel(
  m: EvalArgs['models'][number],
  backend: Backend,
  questions: readonly Question[],
  splitDir: string,
  a: EvalArgs,
  pytorchRoot: Json | null,
  progress: (msg: string, done?: boolean) => void,
): Promise<ModelEval> {
  const probe = memoryProbe(backend);
  probe.start();
  const rt = await LaviRuntime.create({ modelDir: m.dir, backend });
  const types = typesOf(questions);
  const results: AskResult[] = [];
  try {
    const info = rt.info();
    for (let i = 0; i < questions.length; i++) {
      const q = questions[i]!;
      const file = a.jpeg ? q.jpeg : q.image;
      if (!file) throw new Error(`question ${i + 1} has no ${a.jpeg ? 'jpeg' : 'image'} file`);
      probe.beforeAnswer();
      const r = await rt.ask(join(splitDir, file), q.question, { maxNewTokens: a.maxNewTokens });
      probe.afterAnswer();
      results.push(r);
      if (a.verbose) {
        const ok = normalizeAnswer(r.answer) === normalizeAnswer(q.answer);
        progress(`${m.name} ${String(i + 1).padStart(4)} [${q.type}] ${ok ? 'ok  ' : 'MISS'} ${q.question} → ${JSON.stringify(r.answer)}${ok ? '' : ` (expected ${JSON.stringify(q.answer)})`}`);
      } else if ((i + 1) % 25 === 0 || i + 1 === questions.length) {
        progress(`${m.name}: ${i + 1}/${questions.length} questions`, i + 1 === questions.length);
      }
    }
    const acc = accuracyOf(questions, (i) => results[i]!.answer, types);
    const costs = results.map((r) => r.cost!);
    const totalDecodeMs = results.reduce((s, r) => s + r.timings.decodeMs, 0);
    const decodeTokens = results.reduce((s, r) => s + Math.max(0, r.tokens.length - 1), 0);
    const ev: ModelEval = {
      name: m.name,
      dir: shortPath(m.dir),
      mode: info.mode as 'lavi' | 'concat',
      parameters: info.parameters.total,
      questions: questions.length,
      ...acc,
      outOfVocabulary: results.filter((r) => !inTaskVocabulary(r.answer)).length,
      flopsPerAnswer: {
        vision: mean(costs.map((c) => c.visionFlops)),
        llm: mean(costs.map((c) => c.llmFlops)),
        llmPrefill: mean(costs.map((c) => c.prefillFlops)),
        llmDecode: mean(costs.map((c) => c.llmFlops - c.prefillFlops)),
        total: mean(costs.map((c) => c.totalFlops)),
      },
      visualTokensInContext: info.mode === 'concat' ? results[0]!.visualTokens : 0,
      memory: probe.result(info.weightBytes),
      latency: {
        meanAnswerMs: mean(results.map((r) => r.timings.totalMs)),
        meanTtftMs: mean(results.map((r) => r.timings.ttftMs)),
        meanEncodeMs: mean(results.map((r) => r.timings.encodeMs)),
        meanPrefillMs: mean(results.map((r) => r.timings.prefillMs)),
        tokensPerSecond: totalDecodeMs > 0 ? (decodeTokens * 1000) / totalDecodeMs : 0,
        meanAnswerTokens: mean(results.map((r) => r.tokens.length)),
      },
      pytorch: null,
      predictions: results.map((r, i) => ({
        index: i,
        type: questions[i]!.type,
        answer: questions[i]!.answer,
        prediction: r.answer,
        correct: normalizeAnswer(r.answer) === normalizeAnswer(questions[i]!.answer),
        tokens: r.tokens.length,
        ms: Math.round(r.timings.totalMs * 10) / 10,
      })),
    };
    const pt = pytorchRoot ? pytorchModel(pytorchRoot, [basename(m.dir), ...m.pytorchNames], questions, a.jpeg) : null;
    if (pt) {
      const have = questions.map((_, i) => pt.rows.has(i));
      const compared = have.filter(Boolean).length;
      const ptAcc = accuracyOf(questions, (i) => pt.rows.get(i)?.prediction, types);
      // The engine's accuracy over the same questions PyTorch answered (all of them, normally).
      const engAcc = accuracyOf(questions, (i) => (have[i] ? results[i]!.answer : undefined), types);
      const diff: Record<string, number> = {};
      for (const t of Object.keys(ptAcc.accuracy)) diff[t] = (engAcc.accuracy[t]! - ptAcc.accuracy[t]!) * 100;
      const differing: NonNullable<ModelEval['pytorch']>['differing'] = [];
      let tokenCompared = 0, tokensDiffering = 0;
      questions.forEach((q, i) => {
        const p = pt.rows.get(i);
        if (!p) return;
        const r = results[i]!;
        if (p.tokenIds) {
          tokenCompared++;
          // PyTorch decodes at most 64 tokens; compare over what both produced within that budget.
          const n = Math.min(p.tokenIds.length, a.maxNewTokens);
          if (r.tokens.slice(0, n).join() !== p.tokenIds.slice(0, n).join()) tokensDiffering++;
        }
        if (normalizeAnswer(p.prediction) !== normalizeAnswer(r.answer)) {
          differing.push({ index: i, question: q.question, engine: r.answer, pytorch: p.prediction, pytorchMinMargin: p.minMargin });
        }
      });
      ev.pytorch = {
        accuracy: ptAcc.accuracy,
        accuracyDiffPoints: diff,
        answersDiffering: differing.length,
        compared,
        tokenSequencesDiffering: tokenCompared ? tokensDiffering : null,
        statedAccuracy: pt.stated,
        differing,
      };
    }
    return ev;
  } finally {
    rt.dispose();
  }
}

// ---- command ------------------------------------------------------------------------------------------------

export async function run(args: string[]): Promise<number> {
  let a: EvalArgs | 'help';
  try {
    a = parse(args);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    console.error(`lavi eval: ${e.message} (see 'lavi eval --help')`);
    return 2;
  }
  if (a === 'help') {
    console.log(HELP);
    return 0;
  }
  const verbose = a.verbose;
  // Progress on stderr: every question with --verbose, else a counter line on a terminal.
  const progress = (msg: string, done = false) => {
    if (verbose) console.error(msg);
    else if (process.stderr.isTTY) process.stderr.write(`\r${msg}\x1b[K${done ? '\n' : ''}`);
  };
  try {
    for (const m of a.models) if (!existsSync(m.dir)) throw new Error(`model directory ${m.dir} does not exist`);
    // Read every set (and its PyTorch file) before running anything, so a bad file fails fast.
    const inputs: { s: SplitArgs; questions: Question[]; total: number; pytorchRoot: Json | null }[] = [];
    for (const s of a.splits) {
      let questions = await readQuestions(s.dir);
      const total = questions.length;
      if (a.limit !== null) questions = questions.slice(0, a.limit);
      let pytorchRoot: Json | null = null;
      if (s.pytorch && existsSync(s.pytorch)) {
        try {
          const j = JSON.parse(await readFile(s.pytorch, 'utf8')) as unknown;
          if (!isObj(j)) throw new Error('not a JSON object');
          pytorchRoot = j;
        } catch (e) {
          throw new Error(`${s.pytorch}: ${(e as Error).message}`);
        }
      } else if (s.pytorch && s.pytorchGiven) {
        throw new Error(`${s.pytorch}: no such file`);
      }
      inputs.push({ s, questions, total, pytorchRoot });
    }
    const backend = a.backend ? await getBackend((await resolveBackendName(a.backend)).name) : (await defaultBackend()).backend;
    const info = backend.info();
    const tables: EvalTable[] = [];
    for (const { s, questions, total, pytorchRoot } of inputs) {
      const models: ModelEval[] = [];
      for (const m of a.models) models.push(await evalModel(m, backend, questions, s.dir, a, pytorchRoot, progress));
      tables.push({
        date: new Date().toISOString(),
        set: s.name,
        split: shortPath(s.dir),
        questions: questions.length,
        limit: a.limit !== null && a.limit < total ? a.limit : null,
        imageFormat: a.jpeg ? 'jpeg' : 'png',
        maxNewTokens: a.maxNewTokens,
        rule: 'exact match after trimming, lowercasing and dropping a final period',
        backend: { name: info.name, description: info.description },
        models,
      });
    }
    const report: EvalReport = { format: 'lavi-eval/2', date: new Date().toISOString(), backend: { name: info.name, description: info.description }, sets: tables };
    // --split: the one table, as before; the sets: the report.
    const json = a.singleSplit ? tables[0]! : report;
    if (a.out) {
      await mkdir(dirname(a.out), { recursive: true });
      await writeFile(a.out, JSON.stringify(json, null, 1) + '\n');
    }
    if (a.json) console.log(JSON.stringify(json, null, 1));
    else {
      console.log(tables.map(formatEval).join('\n\n'));
      if (tables.length > 1) console.log('\n' + formatSummary(report));
      console.log(a.out ? `\nwritten to ${shortPath(a.out)}` : '\n(not written; pass --out FILE to keep it)');
    }
    return 0;
  } catch (e) {
    console.error(`lavi eval: ${(e instanceof Error ? e.message : String(e)).split('\n')[0]}`);
    return 1;
  } finally {
    await releaseAllBackends();
  }
}
