// Cost report: LaVi vs the concat baseline for one config, counted by the ops themselves. Both graphs run on the
// shape-only meta backend (no weights, no arithmetic) under a CostRecorder; every FLOP and byte comes from the op
// that would run, split by the cost sections the model code opens: 'vision', 'projector', 'llm' (with
// 'llm/viln-kv' for the conditioners' per-image K/U and 'llm/viln' for their per-token work). Memory comes from
// the meta backend's allocation counter: weights (Linear weights and embeddings in the chosen dtype, the rest f32),
// the KV cache (f32, sized to the sequence), the per-image conditioner state (LaVi's K/U, f32), and the peak of
// live bytes during prefill and one decode step.
//
// Visual tokens: the tower runs on ⌈N / tokens_per_crop⌉ crops and the projected tokens are cut to N, so vision
// FLOPs are those of whole crops (7290 = 10 crops of 729 exactly).

import { CostRecorder, withCost } from '../../core/cost.js';
import { ValueError } from '../../core/errors.js';
import { Tensor } from '../../core/tensor.js';
import { bytesPerElement } from '../../core/dtype.js';
import { MetaBackend } from '../../backends/meta/index.js';
import { addOpObserver } from '../../ops/dispatch.js';
import { type ModelConfig, visualTokensPerImage } from './config.js';
import { LaviModel } from './model.js';
import { allocateWeights, countParameters } from './weights.js';

export interface CostOptions {
  /** Visual tokens (default: one crop). 0 = text only. */
  imageTokens?: number;
  /** Prompt tokens (default 100). */
  textTokens?: number;
  /** Storage dtype of Linear weights and embeddings (default bf16). */
  weightDType?: 'f32' | 'f16' | 'bf16';
  /** Name shown in the report. */
  name?: string;
}

export interface FlopSplit {
  vision: number;
  projector: number;
  /** Decoder + lm_head + conditioners. */
  llm: number;
  /** Of llm: conditioners' per-image K/U projections. */
  conditionerKV: number;
  /** Of llm: conditioners' per-token work (x̂, q, attention over the visual tokens, o_proj). */
  conditionerTokens: number;
  total: number;
}

/** Bytes one decode step reads, by what they are (decode is bound by memory bandwidth on CPUs and most GPUs). */
export interface DecodeBytes {
  /** Every weight the step multiplies by (each read once; an embedding lookup reads its one row). */
  weights: number;
  /** The decoder's KV cache, over the keys the step attends to. */
  kvCache: number;
  /** LaVi's per-image conditioner state (K/U) read by the conditioners' attention. */
  visualState: number;
  /** Everything else the ops read: activations, norms' inputs, small vectors. */
  activations: number;
  total: number;
}

export interface RunCost {
  mode: 'lavi' | 'concat';
  /** Tokens the decoder's attention runs over at the end of prefill. */
  contextTokens: number;
  prefill: FlopSplit;
  /** One decode step right after prefill: FLOPs, and bytes read by kind. */
  decodePerToken: FlopSplit & { bytes: DecodeBytes };
  /** Bytes. */
  memory: { weights: number; kvCache: number; visualState: number; peakActivations: number; peakTotal: number };
  parameters: number;
}

export interface CostReport {
  name: string;
  imageTokens: number;
  crops: number;
  tokensPerCrop: number;
  textTokens: number;
  weightDType: 'f32' | 'f16' | 'bf16';
  /** Storage dtype of LaVi's conditioner K/U (lavi_config.kv_dtype). */
  kvDType: string;
  lavi: RunCost;
  concat: RunCost;
}

function split(rec: CostRecorder): FlopSplit {
  const kv = rec.total('llm/viln-kv').flops;
  return {
    vision: rec.total('vision').flops,
    projector: rec.total('projector').flops,
    llm: rec.total('llm').flops,
    conditionerKV: kv,
    conditionerTokens: rec.total('llm/viln').flops - kv,
    total: rec.total('').flops,
  };
}

function measure(cfg: ModelConfig, mode: 'lavi' | 'concat', o: Required<Omit<CostOptions, 'name'>>): RunCost {
  const c: ModelConfig = { ...cfg, lavi_config: { ...cfg.lavi_config, mode } };
  const meta = new MetaBackend();
  const weights = allocateWeights(c, meta, { matrixDType: o.weightDType });
  const weightBytes = meta.memory().liveBytes;
  const perCrop = visualTokensPerImage(c.vision_config);
  const crops = Math.ceil(o.imageTokens / perCrop);
  const context = o.textTokens + (mode === 'concat' ? o.imageTokens : 0);
  const model = new LaviModel(c, weights, meta, { kvCapacity: context + 1 });
  const kvBytes = model.cache.allocatedBytes();
  const S = c.vision_config.image_size;
  const ids = new Array<number>(o.textTokens).fill(0);
  const pre = new CostRecorder();
  let visualState = 0;
  withCost(pre, () => {
    let image = null;
    if (crops > 0) {
      const shape = [crops, c.vision_config.num_channels, S, S];
      const px = Tensor.fromStorage(meta, shape, 'f32', meta.alloc(shape.reduce((a, b) => a * b, 1), 'f32'));
      image = model.encodeImage(px, { maxTokens: o.imageTokens });
      px.dispose();
    }
    model.prefill(ids, image, { consumeImage: true });
  });
  visualState = meta.memory().liveBytes - weightBytes - kvBytes - (model.logits ? model.logits.size * 4 : 0);
  const dec = new CostRecorder();
  // Bytes by kind: each op input is a weight, a KV-cache tensor, LaVi's K/U or an activation (by its storage).
  const weightStorage = new Set<unknown>(weights.names().map((n) => weights.get(n).storage));
  const visualStorage = new Set<unknown>(model.visualState?.tensors().map((t) => t.storage) ?? []);
  const bytes: DecodeBytes = { weights: 0, kvCache: 0, visualState: 0, activations: 0, total: 0 };
  const stop = addOpObserver((call) => {
    const ins = call.inputs as readonly (Tensor | null)[];
    if (call.op === 'embedding') {
      const [table, ids] = ins as [Tensor, Tensor];
      bytes.weights += ids.size * table.shape[1]! * bytesPerElement(table.dtype);
      return;
    }
    ins.forEach((t, i) => {
      if (!t) return;
      const b = t.size * bytesPerElement(t.dtype);
      const kv = call.op === 'attention' && (i === 1 || i === 2);
      const part = kv ? b * (t.shape[1] ? (call.attrs as { keyLength: number }).keyLength / t.shape[1] : 0) : b;
      if (weightStorage.has(t.storage)) bytes.weights += b;
      else if (visualStorage.has(t.storage)) bytes.visualState += part;
      else if (kv && !dec.currentSection.includes('viln')) bytes.kvCache += part;
    });
  });
  try {
    withCost(dec, () => model.decodeStep(0));
  } finally {
    stop();
  }
  bytes.total = dec.total('').bytesRead;
  bytes.activations = bytes.total - bytes.weights - bytes.kvCache - bytes.visualState;
  const peak = meta.memory().peakBytes;
  const run: RunCost = {
    mode,
    contextTokens: context,
    prefill: split(pre),
    decodePerToken: { ...split(dec), bytes },
    memory: {
      weights: weightBytes,
      kvCache: kvBytes,
      visualState,
      peakActivations: peak - weightBytes - kvBytes - visualState,
      peakTotal: peak,
    },
    parameters: countParameters(c).total,
  };
  model.dispose();
  return run;
}

/** Runs both graphs on the meta backend and collects their costs. */
export function costReport(cfg: ModelConfig, opts: CostOptions = {}): CostReport {
  const perCrop = visualTokensPerImage(cfg.vision_config);
  const o = {
    imageTokens: opts.imageTokens ?? perCrop,
    textTokens: opts.textTokens ?? 100,
    weightDType: opts.weightDType ?? 'bf16',
  } as const;
  if (!Number.isInteger(o.imageTokens) || o.imageTokens < 0) throw new ValueError(`cost: image tokens must be a non-negative integer, got ${o.imageTokens}`);
  if (!Number.isInteger(o.textTokens) || o.textTokens < 1) throw new ValueError(`cost: text tokens must be a positive integer, got ${o.textTokens}`);
  const maxPos = cfg.text_config.max_position_embeddings;
  if (o.imageTokens + o.textTokens + 1 > maxPos) {
    throw new ValueError(`cost: ${o.imageTokens} visual + ${o.textTokens} text tokens (+1 decoded) exceed max_position_embeddings ${maxPos} of the concat baseline`);
  }
  return {
    name: opts.name ?? 'config',
    imageTokens: o.imageTokens,
    crops: Math.ceil(o.imageTokens / perCrop),
    tokensPerCrop: perCrop,
    textTokens: o.textTokens,
    weightDType: o.weightDType,
    kvDType: (cfg.lavi_config as { kv_dtype?: string }).kv_dtype ?? 'f32',
    lavi: measure(cfg, 'lavi', o),
    concat: measure(cfg, 'concat', o),
  };
}

// ---- formatting ------------------------------------------------------------------------------------------

export { formatFlops as fmtFlops, formatBytes as fmtBytes } from '../../core/cost.js';
import { formatFlops as fmtFlops, formatBytes as fmtBytes } from '../../core/cost.js';

function ratio(a: number, b: number): string {
  if (b === 0) return '—';
  const r = a / b;
  const pct = (r - 1) * 100;
  return `${r.toFixed(3)} (${pct >= 0 ? '+' : '−'}${Math.abs(pct).toFixed(1)}%)`;
}

/** The report as a plain-text table. */
export function formatCostReport(r: CostReport): string {
  const L = r.lavi, C = r.concat;
  const rows: [string, string, string, string][] = [];
  const flopRows = (title: string, a: FlopSplit, b: FlopSplit) => {
    rows.push([title, '', '', '']);
    rows.push(['  vision tower', fmtFlops(a.vision), fmtFlops(b.vision), ratio(a.vision, b.vision)]);
    rows.push(['  projector', fmtFlops(a.projector), fmtFlops(b.projector), ratio(a.projector, b.projector)]);
    rows.push(['  LLM (incl. conditioners)', fmtFlops(a.llm), fmtFlops(b.llm), ratio(a.llm, b.llm)]);
    rows.push(['    of which conditioner K/U (per image)', fmtFlops(a.conditionerKV), fmtFlops(b.conditionerKV), '']);
    rows.push(['    of which conditioners per token', fmtFlops(a.conditionerTokens), fmtFlops(b.conditionerTokens), '']);
    rows.push(['  total', fmtFlops(a.total), fmtFlops(b.total), ratio(a.total, b.total)]);
  };
  flopRows('Prefill FLOPs (image + prompt)', L.prefill, C.prefill);
  rows.push(['Decode FLOPs per token (after prefill)', fmtFlops(L.decodePerToken.total), fmtFlops(C.decodePerToken.total), ratio(L.decodePerToken.total, C.decodePerToken.total)]);
  {
    const a = L.decodePerToken.bytes, b = C.decodePerToken.bytes;
    const byt = (label: string, x: number, y: number) => rows.push([`  ${label}`, fmtBytes(x), fmtBytes(y), ratio(x, y)]);
    rows.push(['Decode bytes read per token', '', '', '']);
    byt('weights', a.weights, b.weights);
    byt(`KV cache (${kvLabel(r)})`, a.kvCache, b.kvCache);
    byt(`visual state (conditioner K/U, ${r.kvDType})`, a.visualState, b.visualState);
    byt('activations', a.activations, b.activations);
    byt('total', a.total, b.total);
  }
  rows.push(['LLM context (tokens)', String(L.contextTokens), String(C.contextTokens), ratio(L.contextTokens, C.contextTokens)]);
  rows.push(['Parameters', `${(L.parameters / 1e9).toFixed(3)} B`, `${(C.parameters / 1e9).toFixed(3)} B`, ratio(L.parameters, C.parameters)]);
  rows.push(['Memory', '', '', '']);
  const mem = (label: string, a: number, b: number) => rows.push([`  ${label}`, fmtBytes(a), fmtBytes(b), ratio(a, b)]);
  mem(`weights (${r.weightDType} matrices, f32 vectors)`, L.memory.weights, C.memory.weights);
  mem(`KV cache (${kvLabel(r)})`, L.memory.kvCache, C.memory.kvCache);
  mem(`visual state (conditioner K/U, ${r.kvDType})`, L.memory.visualState, C.memory.visualState);
  mem('peak activations', L.memory.peakActivations, C.memory.peakActivations);
  mem('peak total', L.memory.peakTotal, C.memory.peakTotal);
  const w0 = Math.max(...rows.map((x) => x[0].length));
  const w1 = Math.max(12, ...rows.map((x) => x[1].length));
  const w2 = Math.max(12, ...rows.map((x) => x[2].length));
  const header = `${''.padEnd(w0)}  ${'LaVi'.padStart(w1)}  ${'concat'.padStart(w2)}  LaVi/concat`;
  const crops = r.crops === 0 ? 'no image' : `${r.crops} crop${r.crops > 1 ? 's' : ''} × ${r.tokensPerCrop}${r.imageTokens !== r.crops * r.tokensPerCrop ? `, cut to ${r.imageTokens}` : ''}`;
  const out = [
    `lavi cost: ${r.name}, ${r.imageTokens} visual tokens (${crops}), ${r.textTokens} text tokens`,
    `counted by the ops on the meta backend; 1 multiply-add = 2 FLOP`,
    '',
    header,
    ...rows.map(([a, b, c, d]) => `${a.padEnd(w0)}  ${b.padStart(w1)}  ${c.padStart(w2)}  ${d}`),
    '',
    // "reduction" only when LaVi does less on all three (a single visual token makes it do more: +2.5%).
    `${L.prefill.total < C.prefill.total && L.prefill.llm < C.prefill.llm && L.prefill.llm + L.prefill.projector < C.prefill.llm + C.prefill.projector ? 'FLOP reduction' : 'FLOP change (+: LaVi does more)'} vs concat: ` +
      `total ${pct(L.prefill.total, C.prefill.total)}, LLM only ${pct(L.prefill.llm, C.prefill.llm)}, ` +
      `LLM+projector ${pct(L.prefill.llm + L.prefill.projector, C.prefill.llm + C.prefill.projector)}`,
  ];
  return out.join('\n');
}

function kvLabel(_r: CostReport): string {
  return 'f32';
}

function pct(a: number, b: number): string {
  if (b === 0) return '—';
  const p = (a / b - 1) * 100;
  return `${p >= 0 ? '+' : '−'}${Math.abs(p).toFixed(1)}%`;
}
