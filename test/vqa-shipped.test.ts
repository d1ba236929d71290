// The shipped LaVi VQA checkpoint (models/weights/lavi-vqa) through the library API:
//   1. the PyTorch golden (test/fixtures/vqa/logits-golden.safetensors, written by models/reference/eval_vqa.py
//      golden: float64 PyTorch on the shipped float16 weights) — the prompt ids our tokenizer and chat template
//      make, the decoded PNG, the pixel values, the logits at every prompt position (NMSE ≤ 1e-6) and the greedy
//      answer ids (exact, stop token included);
//   2. held-out questions (PNG) from examples/vqa/test: the engine's answers equal PyTorch's predictions in
//      models/weights/eval-pytorch.json and match the reference answers (most of them — the model is small).
//
// Backend, chosen by name on purpose: 'wasm' (WebAssembly SIMD, the fastest CPU backend: about 5× the CPU
// reference on this model) when this build registers it, else 'cpu' (the plain-JS reference). A NOTE line says
// which ran and how long it took; the file is meant to finish well within 60 s.
//
// Without the checkpoint or the fixtures in the tree, no test is registered and a NOTE says so. The paths can be
// pointed elsewhere (another export of the same recipe) with LAVI_VQA_MODEL, LAVI_VQA_GOLDEN, LAVI_VQA_EVAL.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import '../backends/index.js';
import { hasBackend, releaseAllBackends } from '../core/registry.js';
import { SafetensorsFile } from '../core/safetensors/reader.js';
import { preprocessImage } from '../models/image/preprocess.js';
import { LaviRuntime, loadImage, packageRoot } from '../models/app/runtime.js';

const BACKEND = hasBackend('wasm') ? 'wasm' : 'cpu';
const root = packageRoot();
const modelDir = process.env.LAVI_VQA_MODEL ?? join(root, 'models', 'weights', 'lavi-vqa');
const goldenPath = process.env.LAVI_VQA_GOLDEN ?? join(root, 'test', 'fixtures', 'vqa', 'logits-golden.safetensors');
const split = join(root, 'examples', 'vqa', 'test');
const evalPytorchPath = process.env.LAVI_VQA_EVAL ?? join(root, 'models', 'weights', 'eval-pytorch.json');
const missing = [join(modelDir, 'model.safetensors'), goldenPath, join(split, 'questions.jsonl'), evalPytorchPath].filter((p) => !existsSync(p));

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
  });
  test.after(async () => {
    rt?.dispose();
    await releaseAllBackends();
    console.log(`NOTE: vqa-shipped on '${BACKEND}' in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  });

  test('PyTorch golden: prompt ids, image, pixels, logits at every prompt position (NMSE ≤ 1e-6), greedy ids (exact)', async () => {
    const f = await SafetensorsFile.open(goldenPath);
    try {
      const picked = JSON.parse(f.metadata.questions!) as (Question & { key: string; prediction: string })[];
      assert.ok(picked.length >= 3);
      let worst = 0;
      for (const q of picked) {
        const ids = Array.from((await f.read(`${q.key}.input_ids`)).data);
        assert.equal(rt.encodePrompt(q.question), ids, `${q.key}: prompt ids`);
        // Decoding: our PNG decoder gives PyTorch's (PIL's) pixels exactly.
        const img = await loadImage(join(split, q.image));
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
        const r = await rt.ask(join(split, q.image), q.question, { maxNewTokens: 64 });
        assert.equal(r.tokens, answerIds, `${q.key}: greedy tokens`);
        assert.is(r.answer, q.prediction.trim());
      }
      console.log(`NOTE: golden logits on '${BACKEND}': worst NMSE ${worst.toExponential(2)} over ${picked.length} prompts`);
    } finally {
      await f.close();
    }
  });

  test("the README's main command: bundled example images answered as examples/images/questions.json says", async () => {
    // shapes2.png ("How many circles are there?" → 2) is left out: the model answers 1 (counting is its weakest
    // type, 90% on the held-out split), as the README says.
    const info = JSON.parse(readFileSync(join(root, 'examples', 'images', 'questions.json'), 'utf8')) as Record<string, { question: string; answer: string }>;
    for (const name of ['shapes1.png', 'shapes3.png']) {
      const r = await rt.ask(join(root, 'examples', 'images', name), info[name]!.question);
      assert.is(normalize(r.answer), normalize(info[name]!.answer), name);
    }
  });

  test('held-out split (PNG, all 252 questions): the engine answers token for token as PyTorch does, ≥ 90% right', async () => {
    const questions = readFileSync(join(split, 'questions.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Question);
    const pt = JSON.parse(readFileSync(evalPytorchPath, 'utf8')) as {
      models: Record<string, { predictions: { index: number; prediction: string; token_ids: number[]; min_margin: number }[] }>;
    };
    const preds = pt.models[basename(modelDir)]!.predictions;
    assert.is(preds.length, questions.length, 'eval-pytorch.json covers every question');
    // The cpu reference is ~20x slower than wasm: there, every 6th question (all types still appear).
    const chosen = questions.map((_, i) => i).filter((i) => BACKEND === 'wasm' || i % 6 === 0);
    const right: Record<string, [number, number]> = {};
    for (const i of chosen) {
      const q = questions[i]!;
      const r = await rt.ask(join(split, q.image), q.question, { maxNewTokens: 64 });
      const p = preds.find((x) => x.index === i)!;
      assert.equal(r.tokens, p.token_ids, `question ${i} (${q.question}): tokens differ from PyTorch's (min margin ${p.min_margin})`);
      assert.is(r.answer, p.prediction.trim());
      const t = (right[q.type] ??= [0, 0]);
      t[1]++;
      if (normalize(r.answer) === normalize(q.answer)) t[0]++;
    }
    const ok = Object.values(right).reduce((a, t) => a + t[0], 0);
    const table = Object.entries(right).map(([k, [a, n]]) => `${k} ${a}/${n}`).join(', ');
    console.log(`NOTE: held-out accuracy on '${BACKEND}': ${ok}/${chosen.length} (${table})`);
    assert.ok(ok >= Math.ceil(chosen.length * 0.9), `only ${ok}/${chosen.length} answers right (${table})`);
  });
}

test.run();
