// End to end on the gpu.js backend: the tiny LaVi model (vision tower, projector, modulated norms, GQA attention,
// KV cache) prefilled with an image and decoded three tokens, in the webasm and webgpu modes, must give the CPU
// reference's logits. Exercises the ops together: in-place KV-cache writes, attention with a query offset, the
// async queue and device residency on webgpu.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CpuBackend } from '../backends/cpu/index.js';
import { createGpuJsBackend, type GpuJsBackendOptions } from '../backends/gpujs/index.js';
import type { Backend } from '../core/backend.js';
import { tinyConfig } from '../models/lavi/config.js';
import type { PixelBatch } from '../models/image/preprocess.js';
import { LaviModel } from '../models/lavi/model.js';
import { createRng } from '../core/rng.js';
import { randomWeights } from '../models/lavi/weights.js';

const CI = process.env.CI === 'true';
const cfg = tinyConfig({ lavi_config: { modulate_final_norm: true } });
const host = randomWeights(cfg, { seed: 7 });
const S = cfg.vision_config.image_size;
const rng = createRng(3);
const pixels: PixelBatch = { data: Float32Array.from({ length: 3 * S * S }, () => rng.next() * 2 - 1), shape: [1, 3, S, S] };
const PROMPT = [5, 17, 3, 88, 42, 9, 61];
const NEXT = [11, 23, 45];

async function logits(backend: Backend): Promise<Float32Array[]> {
  const m = LaviModel.fromWeights(cfg, host, backend);
  try {
    m.prefill(PROMPT, pixels);
    const out = [Float32Array.from(await m.readLogits())];
    for (const id of NEXT) {
      m.decodeStep(id);
      out.push(Float32Array.from(await m.readLogits()));
    }
    return out;
  } finally {
    m.dispose();
  }
}

const reference = await logits(new CpuBackend());

const MODES: [string, GpuJsBackendOptions][] = [
  ['webasm', { mode: 'webasm' }],
  ['webgpu', { mode: 'webgpu' }],
];

for (const [label, opts] of MODES) {
  test(`gpujs ${label}: tiny LaVi prefill (with image) + 3 KV-cached decode steps = CPU reference`, async () => {
    let b;
    try {
      b = await createGpuJsBackend(opts);
    } catch (e) {
      if (CI) throw e;
      console.log(`\nNOTE: gpujs ${label}: unavailable, model test not run (${(e as Error).message})`);
      return;
    }
    try {
      const t0 = performance.now();
      const got = await logits(b);
      const secs = (performance.now() - t0) / 1000;
      for (let i = 0; i < reference.length; i++) {
        let num = 0, den = 0;
        for (let j = 0; j < reference[i]!.length; j++) {
          num += (got[i]![j]! - reference[i]![j]!) ** 2;
          den += reference[i]![j]! ** 2;
        }
        assert.ok(num / den < 1e-9, `step ${i}: logits NMSE ${num / den}`);
      }
      console.log(`\nNOTE: gpujs ${label}: tiny LaVi matches the CPU logits (${b.stats.compiles} kernels compiled, ${b.stats.calls} calls, ${secs.toFixed(1)} s)`);
    } finally {
      await b.destroy();
    }
  });
}

test.run();
