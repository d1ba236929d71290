// The PyTorch golden checkpoints (test/fixtures/model) on every device backend: prompt logits against the float64
// goldens and the exact 20-token greedy continuation, with and without the image. (model-golden.test.ts checks the
// CPU reference in depth; this file checks that each other backend runs the whole graph to the same answers.)
// A backend that cannot be created here is reported with a NOTE line (and fails under CI=true for webgpu/wasm).

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import '../backends/index.js';
import type { Backend } from '../core/backend.js';
import { getBackend, releaseAllBackends } from '../core/registry.js';
import { Checkpoint } from '../core/safetensors/checkpoint.js';
import type { HostTensor } from '../core/safetensors/reader.js';
import { generate } from '../models/app/generate.js';
import type { PixelBatch } from '../models/image/preprocess.js';
import { LaviModel } from '../models/lavi/model.js';

const root = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..', 'test', 'fixtures', 'model');
const manifest = JSON.parse(readFileSync(join(root, 'manifest.json'), 'utf8')) as {
  checkpoints: Record<string, { dir: string; suggested_logits_atol: number }>;
};
const BACKENDS = ['wasm', 'webgpu', 'gpujs-webasm'];
const REQUIRED_IN_CI = new Set(['wasm', 'webgpu', 'gpujs-webasm']);

async function goldens(dir: string): Promise<Map<string, HostTensor>> {
  const ck = await Checkpoint.open(join(dir, 'golden.safetensors'));
  const out = new Map<string, HostTensor>();
  for (const n of ['input_ids', 'pixel_values', 'logits', 'greedy_tokens', 'text_only_greedy_tokens']) if (ck.has(n)) out.set(n, await ck.read(n));
  await ck.close();
  return out;
}

function nmseAndMax(got: Float32Array, want: Float32Array): [number, number] {
  let num = 0, den = 0, max = 0;
  for (let i = 0; i < want.length; i++) {
    const e = got[i]! - want[i]!;
    if (!Number.isFinite(got[i]!)) return [Infinity, Infinity];
    num += e * e;
    den += want[i]! * want[i]!;
    max = Math.max(max, Math.abs(e));
  }
  return [num / den, max];
}

for (const name of BACKENDS) {
  test(`${name}: PyTorch golden checkpoints (logits and greedy tokens, with and without image)`, async () => {
    let backend: Backend;
    try {
      backend = await getBackend(name);
    } catch (e) {
      if (process.env.CI === 'true' && REQUIRED_IN_CI.has(name)) throw e;
      console.log(`NOTE: model goldens on ${name}: backend unavailable (${(e as Error).message}); not run`);
      return;
    }
    let worst = 0;
    for (const [ckName, m] of Object.entries(manifest.checkpoints)) {
      const dir = join(root, m.dir);
      const g = await goldens(dir);
      const model = await LaviModel.load(dir, backend);
      try {
        const ids = Array.from(g.get('input_ids')!.data as Int32Array);
        const pv = g.get('pixel_values')!;
        const image = { data: pv.data as Float32Array, shape: pv.shape as PixelBatch['shape'] };
        model.prefill(ids, image, { allLogits: true });
        const [nmse, max] = nmseAndMax((await model.logits!.read()) as Float32Array, g.get('logits')!.data as Float32Array);
        worst = Math.max(worst, nmse);
        assert.ok(nmse <= 1e-6 && max <= m.suggested_logits_atol * 10, `${name} ${ckName}: logits NMSE ${nmse.toExponential(2)}, max |err| ${max.toExponential(2)}`);
        const r = await generate(model, ids, { image, maxNewTokens: 20, stopTokens: [] });
        assert.equal(r.tokens, Array.from(g.get('greedy_tokens')!.data as Int32Array), `${name} ${ckName}: greedy tokens`);
        if (g.has('text_only_greedy_tokens')) {
          const t = await generate(model, ids, { maxNewTokens: 20, stopTokens: [] });
          assert.equal(t.tokens, Array.from(g.get('text_only_greedy_tokens')!.data as Int32Array), `${name} ${ckName}: text-only greedy tokens`);
        }
      } finally {
        model.dispose();
      }
    }
    console.log(`NOTE: model goldens on ${name}: ${Object.keys(manifest.checkpoints).length} checkpoints, worst logits NMSE ${worst.toExponential(2)}, greedy tokens exact`);
  });
}

test.after(async () => {
  await releaseAllBackends();
});

test.run();
