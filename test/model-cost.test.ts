// Cost accounting: LaVi vs concat on the meta backend (counted by the ops), the structure of the report, the 7B
// comparison against the spec's estimates, and the compiled `lavi cost` CLI in a child process.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_LAVI, preset, tinyConfig } from '../models/lavi/config.js';
import { costReport, type CostReport } from '../models/lavi/cost-report.js';
import { countParameters } from '../models/lavi/weights.js';

const CLI = fileURLToPath(new URL('../models/app/cli.js', import.meta.url));

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [CLI, 'cost', ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test('decode bytes per token: weights read once, KV cache over the context, LaVi K/U over the visual tokens', () => {
  const cfg = tinyConfig();
  const T = 10, Nv = 16;
  const r = costReport(cfg, { textTokens: T, weightDType: 'f32' });
  const t = cfg.text_config;
  const perToken = 2 * t.num_hidden_layers * t.num_key_value_heads * (t.hidden_size / t.num_attention_heads) * 4;
  // The decoded token attends over prompt (+ visual for concat) + itself.
  assert.is(r.lavi.decodePerToken.bytes.kvCache, (T + 1) * perToken);
  assert.is(r.concat.decodePerToken.bytes.kvCache, (Nv + T + 1) * perToken);
  assert.is(r.lavi.decodePerToken.bytes.visualState, r.lavi.memory.visualState);
  assert.is(r.concat.decodePerToken.bytes.visualState, 0);
  // Every matrix is read once; the embedding lookup reads one row (untied head: the table itself is not a matmul).
  const conc = r.concat.decodePerToken.bytes;
  assert.ok(conc.weights > 0.9 * r.concat.memory.weights - t.vocab_size * t.hidden_size * 4 - countParameters(cfg).vision * 4 - countParameters(cfg).projector * 4);
  assert.ok(r.lavi.decodePerToken.bytes.weights > conc.weights);
  for (const b of [r.lavi.decodePerToken.bytes, conc]) {
    assert.ok(b.activations > 0);
    assert.is(b.total, b.weights + b.kvCache + b.visualState + b.activations);
  }
});

test('text only: LaVi and concat cost exactly the same (both are the base LLM), no conditioner work', () => {
  const r = costReport(tinyConfig(), { imageTokens: 0, textTokens: 12 });
  assert.is(r.crops, 0);
  assert.equal(r.lavi.prefill, r.concat.prefill);
  assert.is(r.lavi.prefill.vision, 0);
  assert.is(r.lavi.prefill.conditionerKV + r.lavi.prefill.conditionerTokens, 0);
  assert.is(r.lavi.memory.kvCache, r.concat.memory.kvCache);
  assert.is(r.lavi.memory.visualState, 0);
});

test('with an image: same vision and projector cost; concat pays for the visual tokens in the LLM, LaVi in the conditioners', () => {
  const cfg = tinyConfig();
  const T = 10;
  const r = costReport(cfg, { textTokens: T });
  const Nv = 16;
  assert.is(r.imageTokens, Nv);
  assert.is(r.lavi.prefill.vision, r.concat.prefill.vision);
  assert.ok(r.lavi.prefill.vision > 0);
  assert.is(r.lavi.prefill.projector, r.concat.prefill.projector);
  assert.ok(r.lavi.prefill.conditionerKV > 0 && r.lavi.prefill.conditionerTokens > 0);
  assert.is(r.concat.prefill.conditionerKV + r.concat.prefill.conditionerTokens, 0);
  // LaVi's LLM without its conditioners is the text-only LLM, up to the fused ViLN costing a little more than the
  // RMSNorm it replaces.
  const textOnly = costReport(cfg, { imageTokens: 0, textTokens: T });
  const extra = r.lavi.prefill.llm - r.lavi.prefill.conditionerKV - r.lavi.prefill.conditionerTokens - textOnly.lavi.prefill.llm;
  assert.ok(extra > 0 && extra < 0.02 * textOnly.lavi.prefill.llm, `ViLN norm overhead ${extra}`);
  assert.ok(r.concat.prefill.llm > textOnly.concat.prefill.llm);
  // KV cache: text (+1 decoded token) only for LaVi, visual tokens too for concat. f32 keys and values.
  const t = cfg.text_config;
  const perToken = 2 * t.num_hidden_layers * t.num_key_value_heads * (t.hidden_size / t.num_attention_heads) * 4;
  assert.is(r.lavi.memory.kvCache, (T + 1) * perToken);
  assert.is(r.concat.memory.kvCache, (Nv + T + 1) * perToken);
  assert.is(r.lavi.contextTokens, T);
  assert.is(r.concat.contextTokens, Nv + T);
  // LaVi's per-image state: K and U [N_v, r] f32 for each of the 6 ViLN sites.
  assert.is(r.lavi.memory.visualState, 6 * 2 * Nv * t.hidden_size / 2 * 4);
  // Weights: LaVi carries the conditioners on top of the shared parts.
  assert.is(r.lavi.parameters - r.concat.parameters, countParameters(cfg).conditioners);
  assert.ok(r.lavi.memory.weights > r.concat.memory.weights);
  assert.ok(r.lavi.memory.peakActivations > 0 && r.concat.memory.peakActivations > 0);
});

test('visual tokens: the tower runs on whole crops, vision FLOPs scale with crops', () => {
  const cfg = tinyConfig();
  const one = costReport(cfg, { imageTokens: 16, textTokens: 4 });
  const three = costReport(cfg, { imageTokens: 48, textTokens: 4 });
  const cut = costReport(cfg, { imageTokens: 40, textTokens: 4 });
  assert.is(three.crops, 3);
  assert.is(cut.crops, 3, 'ceil(40 / 16)');
  assert.is(three.lavi.prefill.vision, 3 * one.lavi.prefill.vision);
  assert.is(cut.lavi.prefill.vision, three.lavi.prefill.vision);
  assert.ok(cut.concat.prefill.llm < three.concat.prefill.llm, 'but only 40 tokens enter the LLM');
  assert.is(cut.concat.contextTokens, 44);
  assert.throws(() => costReport(cfg, { imageTokens: 300, textTokens: 4 }), /exceed max_position_embeddings 256/);
  assert.throws(() => costReport(cfg, { textTokens: 0 }), /text tokens must be a positive integer/);
});

function tflop(x: number): number {
  return x / 1e12;
}

test('lavi-7b with the paper conditioner (DEFAULT_LAVI): the counted FLOPs land on the spec estimates (1 crop: ~11.6 vs ~2.2 TFLOP; 10 crops: ~114 vs ~10 TFLOP)', () => {
  const cfg = { ...preset('lavi-7b'), lavi_config: DEFAULT_LAVI };
  const one: CostReport = costReport(cfg, { imageTokens: 729, textTokens: 100 });
  const ten: CostReport = costReport(cfg, { imageTokens: 7290, textTokens: 100 });
  assert.ok(tflop(one.concat.prefill.total) > 11 && tflop(one.concat.prefill.total) < 12.5, `concat 1 crop ${tflop(one.concat.prefill.total)}`);
  assert.ok(tflop(one.lavi.prefill.total) > 2.0 && tflop(one.lavi.prefill.total) < 2.6, `lavi 1 crop ${tflop(one.lavi.prefill.total)}`);
  assert.ok(tflop(ten.concat.prefill.total) > 105 && tflop(ten.concat.prefill.total) < 125, `concat 10 crops ${tflop(ten.concat.prefill.total)}`);
  assert.ok(tflop(ten.lavi.prefill.total) > 9 && tflop(ten.lavi.prefill.total) < 12, `lavi 10 crops ${tflop(ten.lavi.prefill.total)}`);
  // SigLIP-so400m (26 layers) on one 384-px crop: ~0.64 TFLOP.
  assert.ok(Math.abs(tflop(one.lavi.prefill.vision) - 0.64) < 0.03, `vision ${tflop(one.lavi.prefill.vision)}`);
  assert.is(ten.lavi.prefill.vision, 10 * one.lavi.prefill.vision);
  // Parameters: Qwen2-7B ≈ 7.6B, SigLIP (26 layers) ≈ 0.4B.
  const p = countParameters(cfg);
  assert.ok(p.llm > 7.5e9 && p.llm < 7.7e9, `llm params ${p.llm}`);
  assert.ok(p.vision > 0.38e9 && p.vision < 0.42e9, `vision params ${p.vision}`);
});

test('the presets\' conditioner (issue 17): one bf16 K/U per image, about concat\'s decode bytes, peak memory at most concat\'s', () => {
  for (const [name, width] of [['lavi-0.5b', 64], ['lavi-7b', 256]] as const) {
    const cfg = preset(name);
    assert.equal([cfg.lavi_config.conditioner_width, cfg.lavi_config.kv_dtype, cfg.lavi_config.shared_visual_kv], [width, 'bf16', true], name);
    for (const N of [729, 2916]) {
      const r = costReport(cfg, { imageTokens: N, textTokens: 64 });
      assert.is(r.lavi.memory.visualState, 2 * N * width * 2, `${name} ${N}: K and U once, bf16`);
      const bytes = r.lavi.decodePerToken.bytes.total / r.concat.decodePerToken.bytes.total;
      const peak = r.lavi.memory.peakTotal / r.concat.memory.peakTotal;
      assert.ok(bytes < 1.025, `${name} ${N}: decode bytes LaVi/concat ${bytes}`);
      assert.ok(peak <= 1.0, `${name} ${N}: peak memory LaVi/concat ${peak}`);
      assert.ok(r.lavi.prefill.llm * 4 < r.concat.prefill.llm, `${name} ${N}: LLM prefill FLOPs`);
    }
  }
});

test('CLI: `lavi cost --config lavi-7b` prints the table with numbers', () => {
  const r = cli('--config', 'lavi-7b');
  assert.is(r.code, 0, r.err);
  const o = r.out;
  assert.match(o, /lavi cost: lavi-7b, 729 visual tokens \(1 crop × 729\), 100 text tokens/);
  for (const row of ['vision tower', 'projector', 'LLM \\(incl. conditioners\\)', 'conditioner K/U', 'Decode FLOPs per token', 'KV cache', 'peak activations', 'weights']) {
    assert.match(o, new RegExp(`${row}.*\\d`), row);
  }
  const total = /^\s+total\s+([\d.]+) TFLOP\s+([\d.]+) TFLOP/m.exec(o);
  assert.ok(total, 'a total row in TFLOP');
  assert.ok(Number(total![1]) > 2 && Number(total![1]) < 2.6 && Number(total![2]) > 11 && Number(total![2]) < 12.5, total![0]);
  assert.match(o, /FLOP reduction vs concat: total −\d+\.\d%, LLM only −\d+\.\d%/);
});

test('CLI: --image-tokens 7290 --json gives 10 crops and machine-readable numbers', () => {
  const r = cli('--config', 'lavi-7b', '--image-tokens', '7290', '--text-tokens', '100', '--json');
  assert.is(r.code, 0, r.err);
  const j = JSON.parse(r.out) as CostReport;
  assert.is(j.crops, 10);
  assert.is(j.imageTokens, 7290);
  assert.ok(j.concat.prefill.total > 10 * j.lavi.prefill.total * 0.9);
  assert.is(j.concat.contextTokens, 7390);
});

test('CLI: bad arguments and bad config files are errors that name the field', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'lavi-cost-'));
  try {
    const cfg = tinyConfig() as unknown as Record<string, Record<string, unknown>>;
    const bad = { ...cfg, text_config: { ...cfg.text_config, hidden_size: 'wide' } };
    const path = join(dir, 'config.json');
    await writeFile(path, JSON.stringify(bad));
    let r = cli('--config', path);
    assert.is(r.code, 1);
    assert.match(r.err, /config\.json text_config: field 'hidden_size' must be an integer ≥ 1, got "wide"/);
    // A directory holding a good config.json works.
    await writeFile(path, JSON.stringify(cfg));
    r = cli('--config', dir, '--text-tokens', '5');
    assert.is(r.code, 0, r.err);
    assert.match(r.out, /16 visual tokens/);
    r = cli('--config', 'lavi-70b');
    assert.is(r.code, 1);
    assert.match(r.err, /'lavi-70b' is neither a preset \(lavi-7b, lavi-0\.5b\) nor an existing file/);
    r = cli('--config', 'lavi-7b', '--image-tokens', 'many');
    assert.match(r.err, /--image-tokens must be a non-negative integer, got many/);
    r = cli();
    assert.match(r.err, /--config is required/);
    r = cli('--config', 'lavi-7b', '--frobnicate');
    assert.match(r.err, /unknown option --frobnicate/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test.run();
