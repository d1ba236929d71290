// The shipped VQA checkpoints (models/weights/lavi-vqa, concat-vqa) through the library API:
//   1. the PyTorch goldens (test/fixtures/vqa/logits-golden.safetensors for LaVi, logits-golden-concat.safetensors
//      for concat, written by models/reference/eval_vqa.py golden: float64 PyTorch on the shipped float16
//      weights) — for questions of the original split, of
//      the shifted split (a picture that is not 48 x 48, so the engine's resize is checked too) and of the
//      out-of-task set: the prompt ids our tokenizer and chat template make, the decoded PNG, the pixel values,
//      the logits at every prompt position (NMSE ≤ 1e-6) and the greedy answer ids (exact, stop token included);
//   2. the README's example pictures (examples/images) answered as examples/images/questions.json says;
//   3. a sample of each held-out set (examples/vqa/test, shifted, oot; PNG): the engine's answers equal
//      PyTorch's (models/weights/eval-pytorch.json, eval-pytorch-shifted.json, eval-pytorch-oot.json) token for
//      token for both checkpoints (LaVi every 5th question, concat every 7th), LaVi's accuracy on the sample
//      stays near what PyTorch measured on the whole set, and no answer has text outside the task's vocabulary.
//
// Backend, chosen by name on purpose: 'wasm' (WebAssembly SIMD, the fastest CPU backend: about 5× the CPU
// reference on this model) when this build registers it, else 'cpu' (the plain-JS reference). A NOTE line says
// which ran and how long it took; the file is meant to finish well within 60 s.
//
// Without the checkpoint or the fixtures in the tree, no test is registered and a NOTE says so. The paths can be
// pointed elsewhere (another export of the same recipe) with LAVI_VQA_MODEL, LAVI_VQA_CONCAT, LAVI_VQA_GOLDEN,
// LAVI_VQA_GOLDEN_CONCAT and LAVI_VQA_EVAL_DIR (the directory of the eval-pytorch*.json files).

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import '../backends/index.js';
import { hasBackend, releaseAllBackends } from '../core/registry.js';
import { SafetensorsFile } from '../core/safetensors/reader.js';
import { preprocessImage } from '../models/image/preprocess.js';
import { LaviRuntime, loadImage, packageRoot } from '../models/app/runtime.js';
import { inTaskVocabulary } from '../models/app/commands/eval.js';

const BACKEND = hasBackend('wasm') ? 'wasm' : 'cpu';
const LAVI_STRIDE = BACKEND === 'wasm' ? 5 : 25;
const CONCAT_STRIDE = BACKEND === 'wasm' ? 7 : 31;
// README example pictures the shipped LaVi answers wrongly (the README would say so): none since issue 18's
// retraining (a 96x96 picture, a 1600x1200 JPEG and a dark background among them).
const README_MISSES: string[] = [];
const root = packageRoot();
const modelDir = process.env.LAVI_VQA_MODEL ?? join(root, 'models', 'weights', 'lavi-vqa');
const goldenPath = process.env.LAVI_VQA_GOLDEN ?? join(root, 'test', 'fixtures', 'vqa', 'logits-golden.safetensors');
const goldenConcatPath = process.env.LAVI_VQA_GOLDEN_CONCAT ?? join(root, 'test', 'fixtures', 'vqa', 'logits-golden-concat.safetensors');
const concatDir = process.env.LAVI_VQA_CONCAT ?? join(root, 'models', 'weights', 'concat-vqa');
const evalDir = process.env.LAVI_VQA_EVAL_DIR ?? join(root, 'models', 'weights');
// set -> PyTorch results over the whole set; the least accuracy LaVi must reach on the engine's sample (a little
// under what PyTorch measured on the whole set, models/weights/eval-pytorch*.json: test 99.6%, shifted 93.7%,
// oot 100%); whether every answer must use the task's vocabulary (it does on all three: 0 of 631 outside).
const SETS: Record<string, { file: string; min: number; vocabulary: boolean }> = {
  test: { file: 'eval-pytorch.json', min: 0.95, vocabulary: true },
  shifted: { file: 'eval-pytorch-shifted.json', min: 0.85, vocabulary: true },
  oot: { file: 'eval-pytorch-oot.json', min: 0.95, vocabulary: true },
};
const missing = [join(modelDir, 'model.safetensors'), join(concatDir, 'model.safetensors'), goldenPath, goldenConcatPath,
  ...Object.entries(SETS).flatMap(([s, v]) => [join(root, 'examples', 'vqa', s, 'questions.jsonl'), join(evalDir, v.file)])].filter((p) => !existsSync(p));

interface Question {
  image: string;
  question: string;
  answer: string;
  type: string;
}

function normalize(s: string): string {
  let t = s.trim().toLowerCase();
  if (t.endsWith('.')) t = t.slice(0, -1).trimEnd();
  return t;
}

function nmse(got: ArrayLike<number>, want: ArrayLike<number>): { nmse: number; maxAbs: number } {
  assert.is(got.length, want.length, 'sizes differ');
  let num = 0, den = 0, maxAbs = 0;
  for (let i = 0; i < got.length; i++) {
    const e = got[i]! - want[i]!;
    num += e * e;
    den += want[i]! * want[i]!;
    maxAbs = Math.max(maxAbs, Math.abs(e));
  }
  return { nmse: num / Math.max(den, 1e-30), maxAbs };
}

let rt: LaviRuntime;
let rtConcat: LaviRuntime;
const t0 = Date.now();

if (missing.length && process.env.CI === 'true') {
  // The checkpoint ships with the repository: in CI its absence is a packaging bug, not a reason to skip.
  test('shipped VQA checkpoint and fixtures are present', () => {
    assert.unreachable(`missing: ${missing.join(', ')}`);
  });
} else if (missing.length) {
  console.log(`NOTE: shipped VQA checkpoint/fixtures not in the tree (${missing.map((p) => (p.startsWith(root) ? p.slice(root.length) : p)).join(', ')}): skipped`);
} else {
  test.before(async () => {
    rt = await LaviRuntime.create({ modelDir, backend: BACKEND });
    rtConcat = await LaviRuntime.create({ modelDir: concatDir, backend: BACKEND });
  });
  test.after(async () => {
    rt?.dispose();
    rtConcat?.dispose();
    await releaseAllBackends();
    console.log(`NOTE: vqa-shipped on '${BACKEND}' in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  });

  for (const [name, path, runtime] of [['LaVi', goldenPath, () => rt], ['concat', goldenConcatPath, () => rtConcat]] as const) {
  test(`PyTorch golden (${name}): prompt ids, image, pixels, logits at every prompt position (NMSE ≤ 1e-6), greedy ids (exact)`, async () => {
    const rt = runtime();
    const f = await SafetensorsFile.open(path);
    try {
      const picked = JSON.parse(f.metadata.questions!) as (Question & { key: string; split: string; prediction: string })[];
      assert.ok(picked.length >= 5);
      assert.ok(picked.some((q) => q.split.endsWith('shifted')) && picked.some((q) => q.split.endsWith('oot')));
      let worst = 0;
      for (const q of picked) {
        const ids = Array.from((await f.read(`${q.key}.input_ids`)).data);
        assert.equal(rt.encodePrompt(q.question), ids, `${q.key}: prompt ids`);
        // Decoding: our PNG decoder gives PyTorch's (PIL's) pixels exactly.
        const img = await loadImage(join(root, q.split, q.image));
        const u8 = await f.read(`${q.key}.image`);
        assert.equal(u8.shape, [img.height, img.width, 3]);
        assert.equal(Array.from(img.data), Array.from(u8.data), `${q.key}: decoded pixels`);
        const pixels = preprocessImage(img, rt.config.vision_config);
        const px = await f.read(`${q.key}.pixel_values`);
        assert.equal(pixels.shape, px.shape);
        const p = nmse(pixels.data, px.data as Float32Array);
        assert.ok(p.maxAbs <= 1e-6, `${q.key}: pixel values differ by ${p.maxAbs}`);
        // Logits at every prompt position, from the golden pixels.
        const want = await f.read(`${q.key}.logits`);
        rt.model.prefill(ids, { data: px.data as Float32Array, shape: px.shape as [number, number, number, number] }, { allLogits: true });
        const got = (await rt.model.logits!.read()) as Float32Array;
        assert.equal(rt.model.logits!.shape, [1, ...want.shape]);
        const l = nmse(got, want.data as Float32Array);
        assert.ok(l.nmse <= 1e-6, `${q.key}: logits NMSE ${l.nmse.toExponential(2)} (max |Δ| ${l.maxAbs.toExponential(2)})`);
        worst = Math.max(worst, l.nmse);
        rt.model.reset();
        // Greedy answer through the runtime, from the PNG file.
        const answerIds = Array.from((await f.read(`${q.key}.answer_ids`)).data);
        const r = await rt.ask(join(root, q.split, q.image), q.question, { maxNewTokens: 64 });
        assert.equal(r.tokens, answerIds, `${q.key}: greedy tokens`);
        assert.is(r.answer, q.prediction.trim());
      }
      console.log(`NOTE: golden logits (${name}) on '${BACKEND}': worst NMSE ${worst.toExponential(2)} over ${picked.length} prompts`);
    } finally {
      await f.close();
    }
  });
  }

  test("the README's examples: the bundled example pictures answered as examples/images/questions.json says", async () => {
    const info = JSON.parse(readFileSync(join(root, 'examples', 'images', 'questions.json'), 'utf8')) as Record<string, { question: string; answer: string }>;
    assert.ok(Object.keys(info).length >= 6);
    for (const [name, q] of Object.entries(info)) {
      if (README_MISSES.includes(name)) continue;
      const r = await rt.ask(join(root, 'examples', 'images', name), q.question);
      assert.is(normalize(r.answer), normalize(q.answer), name);
    }
  });

  for (const [set, { file, min, vocabulary }] of Object.entries(SETS)) {
    test(`held-out set '${set}' (PNG, a sample): both checkpoints answer token for token as PyTorch does; LaVi ≥ ${(min * 100).toFixed(0)}% right${vocabulary ? ', no answer outside the task vocabulary' : ''}`, async () => {
      const dir = join(root, 'examples', 'vqa', set);
      const questions = readFileSync(join(dir, 'questions.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Question);
      const pt = JSON.parse(readFileSync(join(evalDir, file), 'utf8')) as {
        models: Record<string, { predictions: { index: number; prediction: string; token_ids: number[]; min_margin: number }[] }>;
      };
      const right: Record<string, [number, number]> = {};
      let n = 0;
      // Strides prime to 6, so that every type appears (the sets cycle through the six types, two per picture); the
      // cpu reference is ~20x slower than wasm: there, a sparser sample.
      for (const [name, r0, step] of [[basename(modelDir), rt, LAVI_STRIDE], [basename(concatDir), rtConcat, CONCAT_STRIDE]] as const) {
        const preds = pt.models[name]!.predictions;
        assert.is(preds.length, questions.length, `${file} covers every question`);
        for (let i = 0; i < questions.length; i += step) {
          const q = questions[i]!;
          const r = await r0.ask(join(dir, q.image), q.question, { maxNewTokens: 64 });
          const p = preds.find((x) => x.index === i)!;
          assert.equal(r.tokens, p.token_ids, `${name}, ${set} question ${i} (${q.question}): tokens differ from PyTorch's (min margin ${p.min_margin})`);
          assert.is(r.answer, p.prediction.trim());
          if (vocabulary) assert.ok(inTaskVocabulary(r.answer), `${name}, ${set} question ${i}: answer outside the task vocabulary: ${JSON.stringify(r.answer)}`);
          if (r0 !== rt) continue;
          n++;
          const t = (right[q.type] ??= [0, 0]);
          t[1]++;
          if (normalize(r.answer) === normalize(q.answer)) t[0]++;
        }
      }
      const ok = Object.values(right).reduce((a, t) => a + t[0], 0);
      const table = Object.entries(right).map(([k, [a, m]]) => `${k} ${a}/${m}`).join(', ');
      console.log(`NOTE: LaVi on '${set}' ('${BACKEND}', every ${LAVI_STRIDE}th question): ${ok}/${n} (${table})`);
      assert.ok(ok >= Math.ceil(n * min), `only ${ok}/${n} answers right (${table})`);
    });
  }
}

test.run();
