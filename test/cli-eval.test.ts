// `lavi eval` end to end on tiny random checkpoints and a hand-made split: accuracy per type with the matching
// rule (trim, lowercase, drop a final period), agreement with a PyTorch results file in eval-pytorch.json's
// format, the JSON table written with --out, --limit, --jpeg-less splits and error exits; the held-out sets
// (--sets, --sets-dir, --pytorch-dir): one table per set, a summary, the report written only where --out says;
// the task-vocabulary check.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { inTaskVocabulary, normalizeAnswer, OUT_OF_TASK_ANSWER, type EvalReport, type EvalTable } from '../models/app/commands/eval.js';
import { LaviRuntime } from '../models/app/runtime.js';
import { encodePng, makeTinyModel, tempDir, testImage } from './runtime-helpers.js';

const cli = fileURLToPath(new URL('../models/app/cli.js', import.meta.url));
const tmp = tempDir('lavi-eval-');
const split = join(tmp.dir, 'split');
const laviDir = join(tmp.dir, 'lavi-vqa');
const concatDir = join(tmp.dir, 'concat-vqa');
const TYPES = ['color', 'count', 'describe'];
const N = 6;
const MAX = 5;
let engineLavi: string[] = [];
let engineConcat: string[] = [];

function lavi(...args: string[]) {
  const r = spawnSync(process.execPath, [cli, 'eval', ...args], { encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const common = () => ['--split', split, '--lavi', laviDir, '--concat', concatDir, '--backend', 'cpu', '--max-tokens', String(MAX)];

test.before(async () => {
  mkdirSync(split);
  mkdirSync(laviDir);
  mkdirSync(concatDir);
  await makeTinyModel(laviDir, { seed: 11 });
  await makeTinyModel(concatDir, { mode: 'concat', seed: 12 });
  const qs: { image: string; jpeg: string; question: string; answer: string; type: string }[] = [];
  for (let i = 0; i < N; i++) {
    writeFileSync(join(split, `img_${i}.png`), encodePng(testImage(24 + 3 * i, 30, i)));
    qs.push({ image: `img_${i}.png`, jpeg: `img_${i}.jpg`, question: `Question number ${i}?`, answer: 'placeholder', type: TYPES[i % 3]! });
  }
  const answers = async (dir: string) => {
    const rt = await LaviRuntime.create({ modelDir: dir, backend: 'cpu' });
    const out: string[] = [];
    for (const q of qs) out.push((await rt.ask(join(split, q.image), q.question, { maxNewTokens: MAX })).answer);
    rt.dispose();
    return out;
  };
  engineLavi = await answers(laviDir);
  engineConcat = await answers(concatDir);
  // Questions 0, 1, 3 have LaVi's answer as the reference, spelt differently (case, spaces, a final period).
  for (const i of [0, 1, 3]) qs[i]!.answer = ` ${engineLavi[i]!.toUpperCase()}. `;
  writeFileSync(join(split, 'questions.jsonl'), qs.map((q) => JSON.stringify(q)).join('\n') + '\n');
  // PyTorch results in eval-pytorch.json's format: the same answers as the engine, except LaVi's question 3.
  const rows = (preds: string[]) => qs.map((q, i) => ({ index: i, image: q.image, question: q.question, answer: q.answer, type: q.type, prediction: preds[i], correct: false, token_ids: [1, 2, 3], min_margin: 0.5 }));
  const ptLavi = [...engineLavi];
  ptLavi[3] = 'something else';
  writeFileSync(join(tmp.dir, 'eval-pytorch.json'), JSON.stringify({
    format: 'lavi-vqa-eval/1',
    models: {
      'lavi-vqa': { mode: 'lavi', accuracy: { overall: 0.3333 }, predictions: rows(ptLavi) },
      'concat-vqa': { mode: 'concat', accuracy: { overall: 0 }, predictions: rows(engineConcat) },
    },
  }));
});

test.after(() => tmp.cleanup());

test('normalizeAnswer: trim, lowercase, drop one final period', () => {
  assert.is(normalizeAnswer('  Red. '), 'red');
  assert.is(normalizeAnswer('a small red circle in the top left.'), 'a small red circle in the top left');
  assert.is(normalizeAnswer('2'), '2');
  assert.is(normalizeAnswer('yes..'), 'yes.');
});

test('the table: accuracy per type, agreement with PyTorch, FLOPs, memory, latency; JSON written with --out', () => {
  const out = join(tmp.dir, 'out', 'eval-engine.json');
  const r = lavi(...common(), '--pytorch', join(tmp.dir, 'eval-pytorch.json'), '--out', out);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, /accuracy \(%\)\s+color\s+count\s+describe\s+overall/);
  assert.match(r.stdout, /LaVi \(engine\)\s+100\.0\s+50\.0\s+0\.0\s+50\.0/);
  assert.match(r.stdout, /agreement with PyTorch/);
  assert.match(r.stdout, /peak memory \(backend memory\(\)\)/);
  const t = JSON.parse(readFileSync(out, 'utf8')) as EvalTable;
  assert.is(t.questions, N);
  assert.is(t.backend.name, 'cpu');
  const [l, c] = t.models as [EvalTable['models'][0], EvalTable['models'][0]];
  assert.is(l.mode, 'lavi');
  assert.is(c.mode, 'concat');
  assert.equal(l.predictions.map((p) => p.prediction), engineLavi);
  assert.equal(c.predictions.map((p) => p.prediction), engineConcat);
  assert.equal(l.correct, { color: 2, count: 1, describe: 0, overall: 3 });
  assert.equal(l.counts, { color: 2, count: 2, describe: 2, overall: 6 });
  assert.is(l.accuracy.overall, 0.5);
  // PyTorch got question 3 (a colour question) wrong where the engine got it right.
  assert.is(l.pytorch!.compared, N);
  assert.is(l.pytorch!.answersDiffering, 1);
  assert.is(l.pytorch!.differing[0]!.index, 3);
  assert.ok(Math.abs(l.pytorch!.accuracyDiffPoints.overall! - 100 / 6) < 1e-9);
  assert.is(l.pytorch!.accuracyDiffPoints.color, 50);
  assert.is(l.pytorch!.tokenSequencesDiffering, N);
  assert.is(c.pytorch!.answersDiffering, 0);
  assert.is(c.pytorch!.accuracyDiffPoints.overall, 0);
  // Cost: same vision work for both; concat carries the visual tokens in its context.
  assert.ok(l.flopsPerAnswer.vision > 0 && l.flopsPerAnswer.vision === c.flopsPerAnswer.vision);
  assert.ok(l.flopsPerAnswer.llm > 0 && l.flopsPerAnswer.llmPrefill + l.flopsPerAnswer.llmDecode === l.flopsPerAnswer.llm);
  assert.is(l.visualTokensInContext, 0);
  assert.is(c.visualTokensInContext, 16);
  assert.is(l.memory.source, 'backend memory()');
  assert.ok(l.memory.weightsBytes > 0 && l.memory.peakBytes >= l.memory.weightsBytes);
  assert.ok(l.latency.meanAnswerMs > 0 && l.latency.meanTtftMs > 0 && l.latency.meanTtftMs <= l.latency.meanAnswerMs);
});

test('--limit and --json: the first N questions, printed as JSON, not written without --out', () => {
  const r = lavi(...common(), '--limit', '3', '--json', '--pytorch', join(tmp.dir, 'eval-pytorch.json'));
  assert.is(r.code, 0, r.stderr);
  const t = JSON.parse(r.stdout) as EvalTable;
  assert.is(t.questions, 3);
  assert.is(t.limit, 3);
  assert.is(t.models[0]!.pytorch!.compared, 3);
  assert.is(t.models[0]!.pytorch!.answersDiffering, 0);
});

test('inTaskVocabulary: the task\'s answer forms and the out-of-task sentence; nothing else', () => {
  for (const a of ['red', 'Circle', '3', 'yes', 'no.', 'top left', 'center', OUT_OF_TASK_ANSWER, OUT_OF_TASK_ANSWER.toLowerCase(),
    'a large red circle in the top left.', 'a small blue square in the center and an large green cross in the bottom right',
    'a large red circle in the top left, a small blue square in the center and a large yellow triangle in the bottom right.']) {
    assert.ok(inTaskVocabulary(a), a);
  }
  for (const a of ['', 'topyes left', '4,,, left', 'a large4yes44', 'a cat', 'left', 'red circle',
    'a large red circle in the top left,', 'a large red circle in the top left and', 'I can only answer questions']) {
    assert.not.ok(inTaskVocabulary(a), a);
  }
});

test('the sets: one table per set and a summary; the report only where --out says; missing PyTorch files skipped', () => {
  const sets = join(tmp.dir, 'sets');
  const ptDir = join(tmp.dir, 'pt');
  mkdirSync(join(sets, 'test'), { recursive: true });
  mkdirSync(join(sets, 'oot'), { recursive: true });
  mkdirSync(ptDir);
  for (const f of readdirSync(split)) copyFileSync(join(split, f), join(sets, 'test', f));
  // out-of-task questions on the test set's pictures, by relative path, as examples/vqa/oot does
  const oot = [0, 1].map((i) => JSON.stringify({ image: `../test/img_${i}.png`, question: `Is this a cat ${i}?`, answer: OUT_OF_TASK_ANSWER, type: 'animals' }));
  writeFileSync(join(sets, 'oot', 'questions.jsonl'), oot.join('\n') + '\n');
  copyFileSync(join(tmp.dir, 'eval-pytorch.json'), join(ptDir, 'eval-pytorch.json'));
  const args = ['--sets', 'test,oot', '--sets-dir', sets, '--pytorch-dir', ptDir, '--lavi', laviDir, '--concat', concatDir, '--backend', 'cpu', '--max-tokens', String(MAX)];
  const before = readdirSync(tmp.dir, { recursive: true }).sort();
  const r = lavi(...args);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, /lavi eval, test: 6 questions/);
  assert.match(r.stdout, /lavi eval, oot: 2 questions/);
  assert.match(r.stdout, /accuracy \(%\)\s+animals\s+overall\s+outside vocabulary/);
  assert.match(r.stdout, /overall accuracy \(%\)\s+test \(6\)\s+oot \(2\)\s+outside the task vocabulary/);
  assert.match(r.stdout, /not written/);
  assert.equal(readdirSync(tmp.dir, { recursive: true }).sort(), before, 'nothing written without --out');
  const out = join(tmp.dir, 'report', 'eval.json');
  const j = lavi(...args, '--json', '--out', out);
  assert.is(j.code, 0, j.stderr);
  const rep = JSON.parse(j.stdout) as EvalReport;
  assert.equal(JSON.parse(readFileSync(out, 'utf8')), rep);
  assert.is(rep.format, 'lavi-eval/2');
  assert.equal(rep.sets.map((t) => [t.set, t.questions]), [['test', N], ['oot', 2]]);
  const [t, o] = rep.sets as [EvalTable, EvalTable];
  assert.equal(t.models[0]!.predictions.map((p) => p.prediction), engineLavi);
  assert.is(t.models[0]!.pytorch!.compared, N);
  assert.is(t.models[0]!.pytorch!.answersDiffering, 1);
  assert.is(o.models[0]!.pytorch, null);
  assert.equal(o.models[0]!.counts, { animals: 2, overall: 2 });
  for (const m of [...t.models, ...o.models]) assert.is(m.outOfVocabulary, m.predictions.filter((p) => !inTaskVocabulary(p.prediction)).length);
});

test('errors: a missing split or model (exit 1), bad options (exit 2)', () => {
  const miss = lavi('--split', join(tmp.dir, 'nope'), '--lavi', laviDir, '--concat', concatDir, '--backend', 'cpu');
  assert.is(miss.code, 1);
  assert.match(miss.stderr, /^lavi eval: cannot read .*nope\/questions\.jsonl \(no such file\)\n$/);
  const noModel = lavi('--split', split, '--lavi', join(tmp.dir, 'none'), '--concat', concatDir, '--backend', 'cpu');
  assert.is(noModel.code, 1);
  assert.match(noModel.stderr, /model directory .*none does not exist/);
  const bad = lavi('--limit', 'x');
  assert.is(bad.code, 2);
  assert.match(bad.stderr, /--limit must be an integer ≥ 1, got 'x'/);
  assert.is(lavi('--backend', 'nope').code, 2);
  assert.is(lavi('extra').code, 2);
  assert.match(lavi('--sets', 'nope').stderr, /unknown set 'nope'/);
  assert.match(lavi('--split', split, '--sets', 'test').stderr, /--sets and --split exclude each other/);
  assert.match(lavi('--pytorch', 'x.json').stderr, /--pytorch goes with --split/);
  assert.ok(!existsSync(join(tmp.dir, 'split', 'eval-engine.json')));
});

test.run();
