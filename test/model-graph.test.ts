// The LaVi graph on the CPU backend: against an independent plain-JS float64 implementation of models/README.md
// (many config variants), text-only = base LLM, zero conditioners = base LLM, KV-cached decoding = full
// recomputation, the concat baseline, and no leaked tensors.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CpuBackend } from '../backends/cpu/index.js';
import { CostRecorder, withCost } from '../core/cost.js';
import { tidy } from '../core/scope.js';
import type { Tensor } from '../core/tensor.js';
import { addOpObserver } from '../ops/index.js';
import { asConcat, tinyConfig, type ConfigOverrides, type ModelConfig } from '../models/lavi/config.js';
import type { HostTensor } from '../core/safetensors/reader.js';
import type { PixelBatch } from '../models/image/preprocess.js';
import { LaviModel } from '../models/lavi/model.js';
import { randomWeights } from '../models/lavi/weights.js';
import { createRng } from '../core/rng.js';

const cpu = new CpuBackend();

// ---- an independent float64 implementation of models/README.md --------------------------------------------

type W = (name: string) => Float64Array;

function weightsOf(host: Map<string, HostTensor>): W {
  return (name) => {
    const h = host.get(name);
    if (!h) throw new Error(`reference: no weight ${name}`);
    return Float64Array.from(h.data as Float32Array);
  };
}

/** x [T, n] · Wᵀ (W [m, n]) + b → [T, m] */
function lin(x: Float64Array, T: number, n: number, Wt: Float64Array, m: number, b: Float64Array | null): Float64Array {
  const y = new Float64Array(T * m);
  for (let t = 0; t < T; t++) for (let o = 0; o < m; o++) {
    let s = b ? b[o]! : 0;
    for (let i = 0; i < n; i++) s += x[t * n + i]! * Wt[o * n + i]!;
    y[t * m + o] = s;
  }
  return y;
}

function layerNormRef(x: Float64Array, T: number, n: number, g: Float64Array | null, b: Float64Array | null, eps: number): Float64Array {
  const y = new Float64Array(T * n);
  for (let t = 0; t < T; t++) {
    let mu = 0;
    for (let i = 0; i < n; i++) mu += x[t * n + i]!;
    mu /= n;
    let v = 0;
    for (let i = 0; i < n; i++) v += (x[t * n + i]! - mu) ** 2;
    const inv = 1 / Math.sqrt(v / n + eps);
    for (let i = 0; i < n; i++) y[t * n + i] = (x[t * n + i]! - mu) * inv * (g ? g[i]! : 1) + (b ? b[i]! : 0);
  }
  return y;
}

function rmsHat(x: Float64Array, T: number, n: number, eps: number): Float64Array {
  const y = new Float64Array(T * n);
  for (let t = 0; t < T; t++) {
    let s = 0;
    for (let i = 0; i < n; i++) s += x[t * n + i]! ** 2;
    const inv = 1 / Math.sqrt(s / n + eps);
    for (let i = 0; i < n; i++) y[t * n + i] = x[t * n + i]! * inv;
  }
  return y;
}

function erfRef(x: number): number {
  // Series / continued fraction, independent of the backend's.
  const ax = Math.abs(x);
  if (ax < 2.5) {
    let sum = 0, term = ax, n = 0;
    while (Math.abs(term) > 1e-18) {
      sum += term / (2 * n + 1);
      n++;
      term *= (-ax * ax) / n;
    }
    return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * sum;
  }
  let f = ax;
  for (let k = 80; k >= 1; k--) f = ax + k / 2 / f;
  return Math.sign(x) * (1 - Math.exp(-ax * ax) / Math.sqrt(Math.PI) / f);
}
const geluT = (x: number) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
const geluE = (x: number) => 0.5 * x * (1 + erfRef(x / Math.SQRT2));
const silu = (x: number) => x / (1 + Math.exp(-x));

/** Multi-head attention on token-major [T, H·D] / [S, Hkv·D]; causal with key j ≤ t. */
function attn(q: Float64Array, k: Float64Array, v: Float64Array, T: number, S: number, H: number, Hkv: number, D: number, causal: boolean): Float64Array {
  const out = new Float64Array(T * H * D);
  for (let h = 0; h < H; h++) {
    const kh = Math.floor(h / (H / Hkv));
    for (let t = 0; t < T; t++) {
      const n = causal ? t + 1 : S;
      const sc = new Float64Array(n);
      let mx = -Infinity;
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let i = 0; i < D; i++) s += q[(t * H + h) * D + i]! * k[(j * Hkv + kh) * D + i]!;
        sc[j] = s / Math.sqrt(D);
        mx = Math.max(mx, sc[j]!);
      }
      let z = 0;
      for (let j = 0; j < n; j++) z += sc[j] = Math.exp(sc[j]! - mx);
      for (let j = 0; j < n; j++) for (let i = 0; i < D; i++) out[(t * H + h) * D + i] += (sc[j]! / z) * v[(j * Hkv + kh) * D + i]!;
    }
  }
  return out;
}

function ropeRef(x: Float64Array, T: number, H: number, D: number, theta: number): void {
  const half = D / 2;
  for (let t = 0; t < T; t++) for (let h = 0; h < H; h++) for (let i = 0; i < half; i++) {
    const a = t * theta ** (-(2 * i) / D);
    const o = (t * H + h) * D;
    const x1 = x[o + i]!, x2 = x[o + i + half]!;
    x[o + i] = x1 * Math.cos(a) - x2 * Math.sin(a);
    x[o + i + half] = x2 * Math.cos(a) + x1 * Math.sin(a);
  }
}

function visionRef(cfg: ModelConfig, w: W, px: PixelBatch): { feats: Float64Array; B: number; N: number } {
  const v = cfg.vision_config;
  const [B, C, S] = px.shape;
  const P = v.patch_size, g = Math.floor(S / P), N = g * g, Dv = v.hidden_size, H = v.num_attention_heads, Dh = Dv / H;
  const pw = w('vision_model.embeddings.patch_embedding.weight'), pb = w('vision_model.embeddings.patch_embedding.bias');
  const pos = w('vision_model.embeddings.position_embedding.weight');
  const all = new Float64Array(B * N * Dv);
  for (let b = 0; b < B; b++) {
    let x: Float64Array = new Float64Array(N * Dv);
    for (let r = 0; r < g; r++) for (let c = 0; c < g; c++) for (let o = 0; o < Dv; o++) {
      let s = pb[o]!;
      for (let ch = 0; ch < C; ch++) for (let i = 0; i < P; i++) for (let j = 0; j < P; j++) {
        s += pw[((o * C + ch) * P + i) * P + j]! * px.data[((b * C + ch) * S + r * P + i) * S + c * P + j]!;
      }
      x[(r * g + c) * Dv + o] = s + pos[(r * g + c) * Dv + o]!;
    }
    for (let l = 0; l < v.num_hidden_layers; l++) {
      const p = `vision_model.encoder.layers.${l}.`;
      const n1 = layerNormRef(x, N, Dv, w(p + 'layer_norm1.weight'), w(p + 'layer_norm1.bias'), v.layer_norm_eps);
      const q = lin(n1, N, Dv, w(p + 'self_attn.q_proj.weight'), Dv, w(p + 'self_attn.q_proj.bias'));
      const k = lin(n1, N, Dv, w(p + 'self_attn.k_proj.weight'), Dv, w(p + 'self_attn.k_proj.bias'));
      const vv = lin(n1, N, Dv, w(p + 'self_attn.v_proj.weight'), Dv, w(p + 'self_attn.v_proj.bias'));
      const a = lin(attn(q, k, vv, N, N, H, H, Dh, false), N, Dv, w(p + 'self_attn.out_proj.weight'), Dv, w(p + 'self_attn.out_proj.bias'));
      for (let i = 0; i < x.length; i++) x[i] += a[i]!;
      const n2 = layerNormRef(x, N, Dv, w(p + 'layer_norm2.weight'), w(p + 'layer_norm2.bias'), v.layer_norm_eps);
      const f1 = lin(n2, N, Dv, w(p + 'mlp.fc1.weight'), v.intermediate_size, w(p + 'mlp.fc1.bias'));
      for (let i = 0; i < f1.length; i++) f1[i] = v.hidden_act === 'gelu' ? geluE(f1[i]!) : geluT(f1[i]!);
      const f2 = lin(f1, N, v.intermediate_size, w(p + 'mlp.fc2.weight'), Dv, w(p + 'mlp.fc2.bias'));
      for (let i = 0; i < x.length; i++) x[i] += f2[i]!;
    }
    if (v.use_post_layernorm) x = layerNormRef(x, N, Dv, w('vision_model.post_layernorm.weight'), w('vision_model.post_layernorm.bias'), v.layer_norm_eps);
    all.set(x, b * N * Dv);
  }
  return { feats: all, B, N };
}

function projectorRef(cfg: ModelConfig, w: W, feats: Float64Array, n: number): Float64Array {
  const d = cfg.text_config.hidden_size, Dv = cfg.vision_config.hidden_size;
  const h = lin(feats, n, Dv, w('lavi.projector.linear_1.weight'), d, w('lavi.projector.linear_1.bias'));
  for (let i = 0; i < h.length; i++) h[i] = geluE(h[i]!);
  return lin(h, n, d, w('lavi.projector.linear_2.weight'), d, w('lavi.projector.linear_2.bias'));
}

/** Reference logits [T, V] for a prompt (and an image) per models/README.md. */
function referenceLogits(cfg: ModelConfig, host: Map<string, HostTensor>, ids: number[], px: PixelBatch | null): Float64Array {
  const w = weightsOf(host);
  const t = cfg.text_config, l = cfg.lavi_config;
  const d = t.hidden_size, H = t.num_attention_heads, Hkv = t.num_key_value_heads, Dh = d / H, I = t.intermediate_size;
  let V: Float64Array | null = null, Nv = 0;
  if (px) {
    const { feats, B, N } = visionRef(cfg, w, px);
    Nv = B * N;
    V = projectorRef(cfg, w, feats, Nv);
  }
  const has = (n: string) => host.has(n);
  const bias = (n: string) => (has(n) ? w(n) : null);
  // Conditioned norm: x [T, d] → [T, d]
  const norm = (x: Float64Array, T: number, gamma: Float64Array, prefix: string | null): Float64Array => {
    const xh = rmsHat(x, T, d, t.rms_norm_eps);
    const out = new Float64Array(T * d);
    let dG: Float64Array | null = null, dB: Float64Array | null = null;
    if (prefix && V && l.mode === 'lavi' && has(prefix + 'q_proj.weight')) {
      const r = l.conditioner_width, hc = l.conditioner_heads;
      const vn = l.conditioner_ln_v ? layerNormRef(V, Nv, d, w(prefix + 'ln_v.weight'), w(prefix + 'ln_v.bias'), l.conditioner_ln_eps) : V;
      const K = lin(vn, Nv, d, w(prefix + 'k_proj.weight'), r, bias(prefix + 'k_proj.bias'));
      const U = lin(vn, Nv, d, w(prefix + 'v_proj.weight'), r, bias(prefix + 'v_proj.bias'));
      const q = lin(xh, T, d, w(prefix + 'q_proj.weight'), r, bias(prefix + 'q_proj.bias'));
      const a = attn(q, K, U, T, Nv, hc, hc, r / hc, false);
      const m = l.modulate === 'both' ? 2 : 1;
      const delta = lin(a, T, r, w(prefix + 'o_proj.weight'), m * d, w(prefix + 'o_proj.bias'));
      const part = (k: number) => {
        const o = new Float64Array(T * d);
        for (let tt = 0; tt < T; tt++) for (let i = 0; i < d; i++) o[tt * d + i] = delta[tt * m * d + k * d + i]!;
        return o;
      };
      if (l.modulate === 'both') (dG = part(0)), (dB = part(1));
      else if (l.modulate === 'scale') dG = part(0);
      else dB = part(0);
    }
    for (let i = 0; i < T * d; i++) out[i] = (gamma[i % d]! + (dG ? dG[i]! : 0)) * xh[i]! + (dB ? dB[i]! : 0);
    return out;
  };
  const emb = w('model.embed_tokens.weight');
  const concatV = l.mode === 'concat' && V ? Nv : 0;
  const T = concatV + ids.length;
  const x = new Float64Array(T * d);
  if (concatV) x.set(V!, 0);
  ids.forEach((id, i) => x.set(emb.subarray(id * d, (id + 1) * d), (concatV + i) * d));
  const site = (layer: number | string, n: string) => `lavi.conditioners.${layer}.${n}.`;
  for (let li = 0; li < t.num_hidden_layers; li++) {
    const p = `model.layers.${li}.`;
    const n1 = norm(x, T, w(p + 'input_layernorm.weight'), site(li, 'input_layernorm'));
    const q = lin(n1, T, d, w(p + 'self_attn.q_proj.weight'), H * Dh, bias(p + 'self_attn.q_proj.bias'));
    const k = lin(n1, T, d, w(p + 'self_attn.k_proj.weight'), Hkv * Dh, bias(p + 'self_attn.k_proj.bias'));
    const v = lin(n1, T, d, w(p + 'self_attn.v_proj.weight'), Hkv * Dh, bias(p + 'self_attn.v_proj.bias'));
    ropeRef(q, T, H, Dh, t.rope_theta);
    ropeRef(k, T, Hkv, Dh, t.rope_theta);
    const o = lin(attn(q, k, v, T, T, H, Hkv, Dh, true), T, H * Dh, w(p + 'self_attn.o_proj.weight'), d, null);
    for (let i = 0; i < x.length; i++) x[i] += o[i]!;
    const n2 = norm(x, T, w(p + 'post_attention_layernorm.weight'), site(li, 'post_attention_layernorm'));
    const g = lin(n2, T, d, w(p + 'mlp.gate_proj.weight'), I, null);
    const u = lin(n2, T, d, w(p + 'mlp.up_proj.weight'), I, null);
    for (let i = 0; i < g.length; i++) g[i] = silu(g[i]!) * u[i]!;
    const dn = lin(g, T, I, w(p + 'mlp.down_proj.weight'), d, null);
    for (let i = 0; i < x.length; i++) x[i] += dn[i]!;
  }
  const xf = norm(x, T, w('model.norm.weight'), site('final', 'norm'));
  const head = t.tie_word_embeddings ? emb : w('lm_head.weight');
  const logits = lin(xf, T, d, head, t.vocab_size, null);
  return logits.subarray(concatV * t.vocab_size);
}

// ---- helpers -------------------------------------------------------------------------------------------

function nmse(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.is(a.length, b.length, 'lengths differ');
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) (num += (a[i]! - b[i]!) ** 2), (den += b[i]! ** 2);
  return num / Math.max(den, 1e-30);
}

function randomPixels(cfg: ModelConfig, seed: number, B = 1): PixelBatch {
  const S = cfg.vision_config.image_size;
  const rng = createRng(seed);
  return { data: Float32Array.from({ length: B * 3 * S * S }, () => rng.next() * 2 - 1), shape: [B, 3, S, S] };
}

function makeModel(cfg: ModelConfig, seed = 1, opts: { zeroConditioners?: boolean } = {}) {
  const host = randomWeights(cfg, { seed, zeroConditioners: opts.zeroConditioners });
  return { host, model: LaviModel.fromWeights(cfg, host, cpu) };
}

async function readAll(t: Tensor): Promise<Float32Array> {
  return (await t.read()) as Float32Array;
}

const PROMPT = [5, 17, 3, 88, 42, 9, 61];

// ---- tests ---------------------------------------------------------------------------------------------

const VARIANTS: [string, ConfigOverrides][] = [
  ['default (GQA 4/2, q/k/v bias, untied, both norms, both deltas, LN_v)', {}],
  ['tied embeddings, no attention bias, MHA', { text_config: { tie_word_embeddings: true, attention_bias: false, num_key_value_heads: 4 } }],
  ['GQA 4/1, rope θ 1e6', { text_config: { num_key_value_heads: 1, rope_theta: 1e6 } }],
  ['modulate scale only, every_k 2, no LN_v, no conditioner bias', { lavi_config: { modulate: 'scale', every_k: 2, conditioner_ln_v: false, conditioner_bias: false } }],
  ['modulate shift only, input_layernorm only, final norm modulated', { lavi_config: { modulate: 'shift', viln_norms: ['input_layernorm'], modulate_final_norm: true } }],
  ['post_layernorm, GELU-erf tower, image 30 px / patch 7 (dropped remainder)', { vision_config: { use_post_layernorm: true, hidden_act: 'gelu', image_size: 30 } }],
];

for (const [name, ov] of VARIANTS) {
  test(`matches the float64 reference: ${name}`, async () => {
    const cfg = tinyConfig(ov);
    const { host, model } = makeModel(cfg, 7);
    const px = randomPixels(cfg, 3, 2);
    model.prefill(PROMPT, px, { allLogits: true });
    const got = await readAll(model.logits!);
    const want = referenceLogits(cfg, host, PROMPT, px);
    const e = nmse(got, want);
    assert.ok(e < 1e-10, `logits NMSE ${e}`);
    // Text only too.
    model.prefill(PROMPT, null, { allLogits: true });
    const e2 = nmse(await readAll(model.logits!), referenceLogits(cfg, host, PROMPT, null));
    assert.ok(e2 < 1e-10, `text-only logits NMSE ${e2}`);
    model.dispose();
  });
}

test('concat baseline matches the float64 reference (visual tokens first, positions over both)', async () => {
  const cfg = asConcat(tinyConfig());
  const { host, model } = makeModel(cfg, 11);
  const px = randomPixels(cfg, 5);
  model.prefill(PROMPT, px, { allLogits: true });
  const logits = model.logits!;
  assert.equal(logits.shape, [1, PROMPT.length, cfg.text_config.vocab_size], 'logits cover the text tokens');
  const Nv = 16;
  assert.is(model.position, Nv + PROMPT.length, 'the KV cache holds the visual tokens too');
  const e = nmse(await readAll(logits), referenceLogits(cfg, host, PROMPT, px));
  assert.ok(e < 1e-10, `NMSE ${e}`);
  model.dispose();
});

test('the reference is sensitive: the image changes LaVi logits, zeroed conditioners do not', async () => {
  const cfg = tinyConfig();
  const { model } = makeModel(cfg, 2);
  const px = randomPixels(cfg, 9);
  model.prefill(PROMPT, null, { allLogits: true });
  const text = await readAll(model.logits!);
  model.prefill(PROMPT, px, { allLogits: true });
  const img = await readAll(model.logits!);
  assert.ok(nmse(img, text) > 1e-4, `an image with trained conditioners must change the logits (NMSE ${nmse(img, text)})`);
  model.dispose();
});

test('text-only input runs the base LLM exactly: no conditioner op at all, same logits as the concat graph', async () => {
  const cfg = tinyConfig();
  const { host, model } = makeModel(cfg, 3);
  const ops: string[] = [];
  const rec = new CostRecorder();
  const stop = addOpObserver((c) => ops.push(c.op));
  try {
    withCost(rec, () => model.prefill(PROMPT, null, { allLogits: true }));
  } finally {
    stop();
  }
  assert.not.ok(ops.includes('modulatedNorm'), 'no ViLN without an image');
  assert.is([...rec.sections.keys()].filter((s) => s.includes('viln')).length, 0, 'no conditioner cost section');
  assert.is(model.hasImage, false);
  const lavi = await readAll(model.logits!);
  // The base LLM: same decoder weights, no LaVi tensors in the graph at all.
  const base = asConcat(cfg);
  const baseHost = new Map([...host].filter(([n]) => !n.startsWith('lavi.conditioners.')));
  const baseModel = LaviModel.fromWeights(base, baseHost, cpu);
  baseModel.prefill(PROMPT, null, { allLogits: true });
  const b = await readAll(baseModel.logits!);
  assert.equal(Array.from(lavi), Array.from(b), 'bit-identical to the base decoder');
  model.dispose();
  baseModel.dispose();
});

test('LaVi with zero-initialised o_proj equals the base decoder bit for bit (logits and every hidden state)', async () => {
  const cfg = tinyConfig({ lavi_config: { modulate_final_norm: true } });
  const { model } = makeModel(cfg, 4, { zeroConditioners: true });
  const px = randomPixels(cfg, 1);
  const ops: string[] = [];
  const stop = addOpObserver((c) => ops.push(c.op));
  model.prefill(PROMPT, px, { allLogits: true, captureHidden: true });
  stop();
  // 2 per layer, the final norm for the logits, and once more for the captured final-norm output.
  assert.is(ops.filter((o) => o === 'modulatedNorm').length, 2 * cfg.text_config.num_hidden_layers + 2, 'ViLN ran in every modulated norm');
  const withImg = await readAll(model.logits!);
  const hidImg = await Promise.all(model.hidden.map(readAll));
  model.prefill(PROMPT, null, { allLogits: true, captureHidden: true });
  const base = await readAll(model.logits!);
  const hidBase = await Promise.all(model.hidden.map(readAll));
  assert.is(hidImg.length, cfg.text_config.num_hidden_layers + 2);
  assert.equal(Array.from(withImg), Array.from(base));
  hidImg.forEach((h, i) => assert.equal(Array.from(h), Array.from(hidBase[i]!), `hidden state ${i}`));
  model.dispose();
});

async function checkIncremental(cfg: ModelConfig, withImage: boolean, seed: number): Promise<void> {
  const { model } = makeModel(cfg, seed);
  const px = withImage ? randomPixels(cfg, seed + 1) : null;
  const full = [...PROMPT, 11, 23, 45, 67, 2, 90];
  const P = 3;
  // Incremental: prefill the first P tokens, then one decodeStep per token.
  model.prefill(full.slice(0, P), px);
  const inc: Float32Array[] = [await model.readLogits()];
  for (let i = P; i < full.length; i++) {
    model.decodeStep(full[i]!);
    inc.push(Float32Array.from(await model.readLogits()));
  }
  // Full recomputation of the whole sequence.
  model.prefill(full, px, { allLogits: true });
  const all = await readAll(model.logits!);
  const V = cfg.text_config.vocab_size;
  for (let j = 0; j < inc.length; j++) {
    const pos = P - 1 + j;
    const e = nmse(inc[j]!, all.subarray(pos * V, (pos + 1) * V));
    assert.ok(e < 1e-10, `position ${pos}: NMSE ${e}`);
  }
  model.dispose();
}

test('KV-cached decoding equals full recomputation: LaVi with an image', () => checkIncremental(tinyConfig({ lavi_config: { modulate_final_norm: true } }), true, 20));
test('KV-cached decoding equals full recomputation: text only, tied, GQA 4/1', () =>
  checkIncremental(tinyConfig({ text_config: { tie_word_embeddings: true, num_key_value_heads: 1 } }), false, 21));
test('KV-cached decoding equals full recomputation: concat baseline with an image', () => checkIncremental(asConcat(tinyConfig()), true, 22));

test('the KV cache grows past its initial capacity without changing results', async () => {
  const cfg = tinyConfig();
  const host = randomWeights(cfg, { seed: 30 });
  const small = LaviModel.fromWeights(cfg, host, cpu, { kvCapacity: 2 });
  const big = LaviModel.fromWeights(cfg, host, cpu, { kvCapacity: 128 });
  const px = randomPixels(cfg, 31);
  const seq = Array.from({ length: 40 }, (_, i) => (i * 7) % 97);
  small.prefill(seq.slice(0, 3), px);
  big.prefill(seq.slice(0, 3), px);
  for (let i = 3; i < seq.length; i++) small.decodeStep(seq[i]!), big.decodeStep(seq[i]!);
  assert.ok(small.cache.capacity >= 40);
  assert.equal(Array.from(await small.readLogits()), Array.from(await big.readLogits()));
  small.dispose();
  big.dispose();
});

test('conditioner K/U are computed once per image, not per token', () => {
  const cfg = tinyConfig();
  const { model } = makeModel(cfg, 40);
  const px = randomPixels(cfg, 41);
  const rec = new CostRecorder();
  withCost(rec, () => model.prefill(PROMPT, px));
  const kv1 = rec.total('llm/viln-kv').calls;
  assert.ok(kv1 > 0);
  const rec2 = new CostRecorder();
  withCost(rec2, () => {
    model.decodeStep(3);
    model.decodeStep(4);
  });
  assert.is(rec2.total('llm/viln-kv').calls, 0, 'decode steps reuse the cached K/U');
  assert.ok(rec2.total('llm/viln').calls > 0, 'but compute per-token deltas');
  assert.is(rec2.total('vision').calls, 0, 'and never rerun the tower');
  assert.is(model.stats.imagesPrepared, 1);
  model.dispose();
});

test('no tensor leaks: everything is freed by dispose, also when called inside a caller tidy()', async () => {
  const local = new CpuBackend('cpu-leak');
  const cfg = tinyConfig();
  const model = LaviModel.fromWeights(cfg, randomWeights(cfg, { seed: 50 }), local);
  const afterLoad = local.memory().liveBytes;
  const px = randomPixels(cfg, 51);
  tidy(() => {
    model.prefill(PROMPT, px);
    model.decodeStep(1);
  });
  // The caller's scope must not have freed the model's cache or image state.
  model.decodeStep(2);
  await model.readLogits();
  model.reset();
  model.prefill([1, 2], null);
  model.reset();
  assert.ok(local.memory().liveBytes - afterLoad === model.cache.allocatedBytes(), 'only the KV buffers remain after reset');
  model.dispose();
  assert.is(local.memory().liveBytes, 0);
});

test('bad inputs: token ids outside the vocabulary, wrong pixel shape, use after dispose', () => {
  const cfg = tinyConfig();
  const { model } = makeModel(cfg, 60);
  assert.throws(() => model.prefill([1, 97], null), /token id 97 at position 1 is outside the vocabulary \[0, 97\)/);
  assert.throws(() => model.prefill([], null), /no token ids/);
  assert.throws(() => model.prefill([1], { data: new Float32Array(3 * 20 * 20), shape: [1, 3, 20, 20] }), /pixels must be \[B, 3, 28, 28\]/);
  model.dispose();
  assert.throws(() => model.prefill([1], null), /after dispose/);
});

test.run();
