// lavi eval's vocabulary and report: the questions' record, the task's answer vocabulary (what a bundled-model
// answer may contain), the JSON report's types and the printed tables. The command itself is eval.ts.

import { formatBytes as fmtBytes, formatFlops as fmtFlops } from '../../../core/cost.js';

/** The question types, in the order the tables show them. */
export const TYPE_ORDER = ['color', 'shape', 'count', 'exist', 'position', 'describe'];

export interface Question {
  image: string;
  jpeg?: string;
  question: string;
  answer: string;
  type: string;
}

/** The bundled model's task (models/reference/vqa_data.py): its answer words and its out-of-task sentence. */
export const OUT_OF_TASK_ANSWER = 'I can only answer questions about the coloured shapes in the picture.';
const TASK_COLORS = ['red', 'green', 'blue', 'yellow', 'purple', 'orange'];
const TASK_SHAPES = ['circle', 'square', 'triangle', 'cross'];
const TASK_SIZES = ['small', 'large'];
const TASK_CELLS = ['top left', 'top center', 'top right', 'center left', 'center', 'center right', 'bottom left', 'bottom center', 'bottom right'];
const alt = (xs: string[]) => `(?:${xs.join('|')})`;
const TASK_OBJECT = `an? ${alt(TASK_SIZES)} ${alt(TASK_COLORS)} ${alt(TASK_SHAPES)} in the ${alt(TASK_CELLS)}`;
const TASK_ANSWER = new RegExp(`^(?:${alt([...TASK_COLORS, ...TASK_SHAPES, ...TASK_CELLS, 'yes', 'no'])}|[0-9]+|${TASK_OBJECT}(?:(?:, ${TASK_OBJECT})* and ${TASK_OBJECT})?)$`);

/**
 * Whether an answer is one of the task's answer forms (vqa_data.in_task_vocabulary): a colour, a shape, a
 * number, yes/no, a cell, a description ('a|an <size> <colour> <shape> in the <cell>', joined by ', ' and
 * ' and '), or the out-of-task sentence; case and one final period aside.
 */
export function inTaskVocabulary(answer: string): boolean {
  const a = normalizeAnswer(answer);
  return a === normalizeAnswer(OUT_OF_TASK_ANSWER) || TASK_ANSWER.test(a);
}

/** The matching rule: trim, lowercase, drop one final period (and the space before it, if any). */
export function normalizeAnswer(s: string): string {
  let t = s.trim().toLowerCase();
  if (t.endsWith('.')) t = t.slice(0, -1).trimEnd();
  return t;
}

export interface ModelEval {
  name: string;
  dir: string;
  mode: 'lavi' | 'concat';
  parameters: number;
  questions: number;
  accuracy: Record<string, number>;
  correct: Record<string, number>;
  counts: Record<string, number>;
  /** Answers that are none of the task's answer forms (inTaskVocabulary). */
  outOfVocabulary: number;
  flopsPerAnswer: { vision: number; llm: number; llmPrefill: number; llmDecode: number; total: number };
  visualTokensInContext: number;
  /** source: 'backend memory()', 'backend memoryStats()', 'backend memory(), live + pooled after each answer' or
   *  'process RSS delta'. peakBytes includes the weights (except for the RSS delta, which starts before loading
   *  and so includes them too); perAnswerPeakBytes is the most one answer added on top of what was live before it. */
  memory: { source: string; weightsBytes: number; peakBytes: number; perAnswerPeakBytes: number | null };
  latency: { meanAnswerMs: number; meanTtftMs: number; meanEncodeMs: number; meanPrefillMs: number; tokensPerSecond: number; meanAnswerTokens: number };
  pytorch: null | {
    accuracy: Record<string, number>;
    /** Engine − PyTorch, percentage points. */
    accuracyDiffPoints: Record<string, number>;
    answersDiffering: number;
    compared: number;
    /** Greedy token sequences that differ from PyTorch's (PNG runs; null when the file has no token ids). */
    tokenSequencesDiffering: number | null;
    /** The accuracy stated in eval-pytorch.json (whole split), for reference. */
    statedAccuracy: Record<string, number> | null;
    /** pytorchMinMargin: the smallest top-1 − top-2 logit gap along PyTorch's greedy path (a near tie explains a
     *  flip between float64 PyTorch and the engine). */
    differing: { index: number; question: string; engine: string; pytorch: string; pytorchMinMargin: number | null }[];
  };
  predictions: { index: number; type: string; answer: string; prediction: string; correct: boolean; tokens: number; ms: number }[];
}

export interface EvalTable {
  date: string;
  /** The set's name (test, shifted, oot) or, for --split, the directory's name. */
  set: string;
  split: string;
  questions: number;
  limit: number | null;
  imageFormat: 'png' | 'jpeg';
  maxNewTokens: number;
  rule: string;
  backend: { name: string; description: string };
  models: ModelEval[];
}

/** What `lavi eval` prints with --json and writes with --out: one table per set. */
export interface EvalReport {
  format: 'lavi-eval/2';
  date: string;
  backend: { name: string; description: string };
  sets: EvalTable[];
}

// ---- formatting ---------------------------------------------------------------------------------------------



const pct = (x: number | undefined) => (x === undefined || Number.isNaN(x) ? '—' : (x * 100).toFixed(1));
const signed = (x: number) => (Number.isNaN(x) ? '—' : `${x >= 0 ? '+' : ''}${x.toFixed(1)}`);

export function table(rows: string[][], rightFrom = 1): string {
  const w = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  return rows.map((r) => r.map((cell, c) => (c < rightFrom ? cell.padEnd(w[c]!) : cell.padStart(w[c]!))).join('  ').trimEnd()).join('\n');
}

/** The summary over sets: overall accuracy and answers outside the task vocabulary, per model and set. */
export function formatSummary(r: EvalReport): string {
  const rows: string[][] = [['overall accuracy (%)', ...r.sets.map((t) => `${t.set} (${t.questions})`), 'outside the task vocabulary']];
  const names = [...new Set(r.sets.flatMap((t) => t.models.map((m) => m.name)))];
  for (const n of names) {
    const ms = r.sets.map((t) => t.models.find((m) => m.name === n));
    rows.push([`${n} (engine)`, ...ms.map((m) => pct(m?.accuracy.overall)), String(ms.reduce((s, m) => s + (m?.outOfVocabulary ?? 0), 0))]);
    if (ms.some((m) => m?.pytorch?.compared)) rows.push([`${n} (PyTorch)`, ...ms.map((m) => (m?.pytorch?.compared ? pct(m.pytorch.accuracy.overall) : '—')), '']);
  }
  return table(rows);
}

export function formatEval(t: EvalTable): string {
  const types = [...new Set(t.models.flatMap((m) => Object.keys(m.accuracy)).filter((k) => k !== 'overall'))];
  const ordered = [...TYPE_ORDER.filter((x) => types.includes(x)), ...types.filter((x) => !TYPE_ORDER.includes(x))];
  const out: string[] = [];
  out.push(`lavi eval, ${t.set}: ${t.questions} questions from ${t.split}${t.limit !== null ? ` (--limit ${t.limit})` : ''}, ${t.imageFormat.toUpperCase()} images, on ${t.backend.name} (${t.backend.description})`);
  out.push(`greedy, at most ${t.maxNewTokens} answer tokens; ${t.rule}`);
  out.push('');
  const accRows: string[][] = [['accuracy (%)', ...ordered, 'overall', 'outside vocabulary']];
  for (const m of t.models) accRows.push([`${m.name} (engine)`, ...ordered.map((x) => pct(m.accuracy[x])), pct(m.accuracy.overall), String(m.outOfVocabulary)]);
  for (const m of t.models) if (m.pytorch?.compared) accRows.push([`${m.name} (PyTorch)`, ...ordered.map((x) => pct(m.pytorch!.accuracy[x])), pct(m.pytorch.accuracy.overall)]);
  accRows.push(['questions', ...ordered.map((x) => String(t.models[0]?.counts[x] ?? 0)), String(t.models[0]?.counts.overall ?? 0)]);
  out.push(table(accRows));
  out.push('');
  if (t.models.some((m) => m.pytorch)) {
    const rows: string[][] = [['agreement with PyTorch', 'Δ accuracy (points)', 'answers that differ', 'token sequences that differ']];
    for (const m of t.models) {
      const p = m.pytorch;
      if (!p || p.compared === 0) {
        rows.push([m.name, '—', p ? 'no matching questions' : 'no PyTorch results', '—']);
        continue;
      }
      rows.push([m.name, signed(p.accuracyDiffPoints.overall ?? NaN), `${p.answersDiffering} / ${p.compared}`, p.tokenSequencesDiffering === null ? '—' : `${p.tokenSequencesDiffering} / ${p.compared}`]);
    }
    out.push(table(rows));
    out.push('');
  }
  const memSource = t.models[0]?.memory.source ?? 'backend memory()';
  const rows: string[][] = [[
    'per answer', 'vision FLOPs', 'LLM FLOPs', 'total FLOPs', 'ctx visual tokens', 'weights', `peak memory (${memSource})`, 'mean latency', 'TTFT', 'tokens/s',
  ]];
  for (const m of t.models) {
    const mem = m.memory.perAnswerPeakBytes !== null ? `${fmtBytes(m.memory.peakBytes)} (+${fmtBytes(m.memory.perAnswerPeakBytes)} per answer)` : fmtBytes(m.memory.peakBytes);
    rows.push([
      m.name, fmtFlops(m.flopsPerAnswer.vision), fmtFlops(m.flopsPerAnswer.llm), fmtFlops(m.flopsPerAnswer.total), String(m.visualTokensInContext),
      fmtBytes(m.memory.weightsBytes), mem, `${m.latency.meanAnswerMs.toFixed(0)} ms`, `${m.latency.meanTtftMs.toFixed(0)} ms`, m.latency.tokensPerSecond.toFixed(1),
    ]);
  }
  out.push(table(rows));
  return out.join('\n');
}
