// Golden tests against the independent PyTorch reference (models/reference/lavi_torch.py): tiny random
// checkpoints and float64 goldens under test/fixtures/model/ (see its manifest.json). On the CPU backend, for
// every checkpoint: preprocessing, vision features, projected tokens, conditioner K/U and deltas, every hidden
// state, logits (NMSE ≤ 1e-6 and within the manifest's atol), the 20-token greedy continuation (exact), the
// text-only path, and video where the fixture has it.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { CpuBackend } from '../backends/cpu/index.js';
import { widenToF32 } from '../core/dtype.js';
import { Checkpoint } from '../core/safetensors/checkpoint.js';
import type { HostTensor } from '../core/safetensors/reader.js';
import type { Tensor } from '../core/tensor.js';
import { reshape, tensor, transpose } from '../ops/index.js';
import { generate } from '../models/app/generate.js';
import { preprocessImage, type PixelBatch } from '../models/image/preprocess.js';
import { LaviModel } from '../models/lavi/model.js';

const root = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..', 'test', 'fixtures', 'model');

interface ManifestEntry {
  dir: string;
  mode: 'lavi' | 'concat';
  weights_dtype: string;
  suggested_logits_atol: number;
  viln_sites: string[];
  golden_tensors: Record<string, { dtype: string; shape: number[] }>;
}
const manifest = JSON.parse(readFileSync(join(root, 'manifest.json'), 'utf8')) as { checkpoints: Record<string, ManifestEntry> };
const cpu = new CpuBackend();

function stats(got: ArrayLike<number>, want: ArrayLike<number>): { nmse: number; maxAbs: number } {
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

const worst = new Map<string, { nmse: number; maxAbs: number }>();

function close(what: string, got: ArrayLike<number>, want: HostTensor, nmseMax = 1e-6, atol = Infinity): void {
  const s = stats(got, want.data as Float32Array);
  if (what.includes('logits')) {
    const w = worst.get('logits') ?? { nmse: 0, maxAbs: 0 };
    worst.set('logits', { nmse: Math.max(w.nmse, s.nmse), maxAbs: Math.max(w.maxAbs, s.maxAbs) });
  }
  assert.ok(s.nmse <= nmseMax && s.maxAbs <= atol, `${what}: NMSE ${s.nmse.toExponential(2)}, max |err| ${s.maxAbs.toExponential(2)}`);
}

async function values(t: Tensor): Promise<Float32Array> {
  return (await t.read()) as Float32Array;
}

for (const [name, m] of Object.entries(manifest.checkpoints)) {
  const dir = join(root, m.dir);
  const golden = async () => {
    const ck = await Checkpoint.open(join(dir, 'golden.safetensors'));
    const out = new Map<string, HostTensor>();
    for (const n of ck.names()) out.set(n, await ck.read(n));
    await ck.close();
    return out;
  };
  const atol = m.suggested_logits_atol;

  test(`${name}: preprocessing, vision features and projected tokens`, async () => {
    const g = await golden();
    const model = await LaviModel.load(dir, cpu);
    if (m.weights_dtype === 'BF16') assert.is(model.weights.get('model.layers.0.mlp.up_proj.weight').dtype, 'bf16', 'bf16 weights stay packed');
    const rgb = g.get('image_rgb8')!;
    const [H, W] = rgb.shape as [number, number, number];
    const px = preprocessImage({ width: W, height: H, data: Uint8Array.from(rgb.data as Int32Array) }, model.config.vision_config);
    close('pixel_values_from_rgb8', px.data, g.get('pixel_values_from_rgb8')!, 1e-12, 1e-6);
    const pv = g.get('pixel_values')!;
    const enc = model.encodeImage({ data: pv.data as Float32Array, shape: pv.shape as PixelBatch['shape'] }, { keepFeatures: true });
    close('vision_features', await values(enc.features!), g.get('vision_features')!);
    close('projected', await values(enc.tokens), g.get('projected')!);
    enc.dispose();
    model.dispose();
  });

  test(`${name}: hidden states, conditioner K/U and deltas, logits`, async () => {
    const g = await golden();
    const model = await LaviModel.load(dir, cpu);
    const ids = Array.from(g.get('input_ids')!.data as Int32Array);
    const pv = g.get('pixel_values')!;
    const pixels = { data: pv.data as Float32Array, shape: pv.shape as PixelBatch['shape'] };
    model.prefill(ids, pixels, { allLogits: true, captureHidden: true, captureDeltas: true });
    close('logits', await values(model.logits!), g.get('logits')!, 1e-6, atol);
    const L = model.config.text_config.num_hidden_layers;
    assert.is(model.hidden.length, L + 2);
    for (let i = 0; i < L; i++) close(`hidden_states.${i}`, await values(model.hidden[i]!), g.get(`hidden_states.${i}`)!);
    close('last_layer_output', await values(model.hidden[L]!), g.get('last_layer_output')!);
    close(`hidden_states.${L} (final norm)`, await values(model.hidden[L + 1]!), g.get(`hidden_states.${L}`)!);
    if (m.mode === 'lavi') {
      assert.equal([...model.deltas.keys()].sort(), [...m.viln_sites].sort(), 'a delta for every ViLN site');
      for (const site of m.viln_sites) close(`viln_delta.${site}`, await values(model.deltas.get(site)!), g.get(`viln_delta.${site}`)!);
      const first = m.viln_sites[0]!;
      const kv = model.visualState!.get(first)!;
      const r = model.config.lavi_config.conditioner_width;
      for (const [stored, key] of [[kv.k, 'k'], [kv.u, 'v']] as const) {
        // head-major storage (backends with headMajorKV) back to token-major [1, N_v, r] as the golden has it
        const t = kv.headMajor ? transpose(stored, [0, 2, 1, 3]) : stored;
        const flat = reshape(t, [1, t.shape[1]!, r]);
        // K/U stored in kv_dtype (bf16/f16 with the decode-oriented options): compared as their f32 values.
        const raw = await flat.read();
        const got = raw instanceof Uint16Array ? widenToF32(raw, flat.dtype as 'f16' | 'bf16') : (raw as Float32Array);
        close(`conditioner_${key}.${first}`, got, g.get(`conditioner_${key}.${first}`)!);
        flat.dispose();
        if (t !== stored) t.dispose();
      }
    } else {
      assert.is(model.deltas.size, 0);
    }
    if (g.has('text_only_logits')) {
      model.prefill(ids, null, { allLogits: true });
      close('text_only_logits', await values(model.logits!), g.get('text_only_logits')!, 1e-6, atol);
    }
    model.dispose();
  });

  test(`${name}: 20-token greedy continuation (exact)`, async () => {
    const g = await golden();
    const model = await LaviModel.load(dir, cpu);
    const ids = Array.from(g.get('input_ids')!.data as Int32Array);
    const pv = g.get('pixel_values')!;
    const image = { data: pv.data as Float32Array, shape: pv.shape as PixelBatch['shape'] };
    const r = await generate(model, ids, { image, maxNewTokens: 20, stopTokens: [] });
    assert.equal(r.tokens, Array.from(g.get('greedy_tokens')!.data as Int32Array));
    if (g.has('text_only_greedy_tokens')) {
      const t = await generate(model, ids, { maxNewTokens: 20, stopTokens: [] });
      assert.equal(t.tokens, Array.from(g.get('text_only_greedy_tokens')!.data as Int32Array));
    }
    model.dispose();
  });

  if (m.golden_tensors['video_pixel_values']) {
    test(`${name}: video (pooled frames with frame embeddings)`, async () => {
      const g = await golden();
      const model = await LaviModel.load(dir, cpu);
      const vp = g.get('video_pixel_values')!;
      const frames = { data: vp.data as Float32Array, shape: vp.shape as PixelBatch['shape'] };
      const px = tensor(cpu, frames.data, frames.shape);
      const feats = model.vision.forward(px);
      const proj = model.projector.forward(feats);
      close('video_projected_frames', await values(proj), g.get('video_projected_frames')!);
      for (const t of [px, feats, proj]) t.dispose();
      const enc = model.encodeVideo(frames);
      close('video_visual_tokens', await values(enc.tokens), g.get('video_visual_tokens')!);
      const ids = Array.from(g.get('input_ids')!.data as Int32Array);
      model.prefill(ids, enc, { allLogits: true });
      close('video_logits', await values(model.logits!), g.get('video_logits')!, 1e-6, atol);
      enc.dispose();
      model.dispose();
    });
  }
}

test.after(() => {
  const w = worst.get('logits');
  if (w) console.log(`\nNOTE: model goldens: worst logits NMSE ${w.nmse.toExponential(2)}, max |err| ${w.maxAbs.toExponential(2)} over ${Object.keys(manifest.checkpoints).length} checkpoints`);
});

test.run();
