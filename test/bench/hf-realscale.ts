// Real-scale benchmark (issue 13, "Real scale"): a Qwen2-0.5B-shaped random checkpoint in the exact Hugging Face
// layout, loaded and run through the CLI as a user would, next to onnxruntime-node running the same model in the
// same run. Prints a table and writes bench-results/hf-realscale.json. A benchmark, not a test: it asserts nothing.
//
//   npx tsc -p tsconfig.json && node dist/test/bench/hf-realscale.js [--repeats 3] [--new-tokens 32]
//       [--dir /tmp/lavi-hf-realscale] [--no-f32] [--no-ort] [--ort-nospin] [--threads 2] [--seed 0]
//       [--wait-load 4 [--wait-max 1800]]   (start timing once the 1-minute load average is at most 4)
//
// 1. prepare (skipped when the files are already there with the same parameters):
//    - DIR/qwen2-0.5b-bf16: config.json (Qwen/Qwen2-0.5B's fields: vocab 151936, hidden 896, intermediate 4864,
//      24 layers, 14 heads, 2 KV heads, tied embeddings, rope_theta 1e6), generation_config.json, one
//      model.safetensors in bf16 (as Qwen/Qwen2-0.5B ships), from declareQwen2 + qwen2Specs + randomSpecs and the
//      library's writeSafetensors;
//    - DIR/qwen2-0.5b-f32: the same values widened to f32, sharded (model-0000k-of-0000n.safetensors +
//      model.safetensors.index.json), written one shard at a time so the writer holds one shard, not the model;
//    - DIR/onnx-fp32: the same weights (bf16 values in fp32) in a Qwen2 decoder step with KV cache in/out, exported
//      by test/bench/qwen2_onnx.py with Debian's PyTorch 1.13 (/usr/bin/python3).
//    All three are the same model, so their greedy ids are compared as a cross-check.
// 2. time (under `flock /tmp/lavi-bench.lock`, taken by re-running this script under flock): for each round, in a
//    rotating order, one process per engine:
//    - lavi bf16 / lavi f32: `node dist/models/app/cli.js generate --model DIR --ids <64 ids> --max-tokens N --json
//      --backend wasm` (its JSON carries load_ms and the runtime's timings), `lavi info --model DIR` once;
//    - ORT fp32: this script with --ort-child (InferenceSession on model.onnx, 2 intra-op threads, greedy loop);
//      with --ort-nospin also a second ORT row with session.intra_op.allow_spinning 0 (ORT's spinning workers
//      degrade badly when the 2 cores are oversubscribed); the table gives ratios against both ORT rows.
//    Each process runs under /usr/bin/time for its peak RSS (ru_maxrss, worker threads included). The load average
//    is read before every run. Medians over rounds; ratios are per round (same load) and then their median/range.
//
// Definitions: load = folder → ready to generate (lavi: LaviRuntime.create; ORT: InferenceSession.create with
// graph optimisation); prefill = 64 prompt tokens through the model until the first token is chosen; decode =
// (tokens − 1) / time of the steps after the first token; RSS / weights = peak RSS over the checkpoint's tensor
// bytes (bf16: 0.99 GB; f32: 1.98 GB; ORT: its model.onnx + external initializers, 2.52 GB, the tied head being
// folded into a second, transposed copy of the embedding table); "× ORT" = ORT time / lavi time (above 1: lavi
// is faster). The machine is shared: quote the same-run ratios, with the load average the output records.

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as Ort from 'onnxruntime-node';
import { widenToF32 } from '../../core/dtype.js';
import type { HostTensor } from '../../core/safetensors/reader.js';
import { writeSafetensors } from '../../core/safetensors/writer.js';
import { randomSpecs, type WeightSpec } from '../../models/loading/weights.js';
import { parseQwen2Config } from '../../models/qwen2/config.js';
import { declareQwen2, qwen2Specs } from '../../models/qwen2/weights.js';

const HERE = dirname(fileURLToPath(import.meta.url)); // dist/test/bench
const ROOT = resolve(HERE, '../../..');
const CLI = join(ROOT, 'dist/models/app/cli.js');
const EXPORTER = join(ROOT, 'test/bench/qwen2_onnx.py');
const LOCK = '/tmp/lavi-bench.lock';

/** Qwen/Qwen2-0.5B's config.json, field for field. */
const QWEN2_05B = {
  architectures: ['Qwen2ForCausalLM'],
  attention_dropout: 0.0,
  bos_token_id: 151643,
  eos_token_id: 151643,
  hidden_act: 'silu',
  hidden_size: 896,
  initializer_range: 0.02,
  intermediate_size: 4864,
  max_position_embeddings: 131072,
  max_window_layers: 24,
  model_type: 'qwen2',
  num_attention_heads: 14,
  num_hidden_layers: 24,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000.0,
  sliding_window: 131072,
  tie_word_embeddings: true,
  torch_dtype: 'bfloat16',
  transformers_version: '4.40.1',
  use_cache: true,
  use_sliding_window: false,
  vocab_size: 151936,
};
/** Qwen/Qwen2-0.5B's generation_config.json. */
const GENERATION = { bos_token_id: 151643, do_sample: false, eos_token_id: 151643, max_new_tokens: 2048, transformers_version: '4.37.0' };

// ---- arguments ------------------------------------------------------------------------------------------------

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : dflt;
}
const flag = (name: string) => process.argv.includes(`--${name}`);

const DIR = resolve(arg('dir', join(tmpdir(), 'lavi-hf-realscale')));
const REPEATS = Number(arg('repeats', '3'));
const NEW_TOKENS = Number(arg('new-tokens', '32'));
const PROMPT_TOKENS = Number(arg('prompt-tokens', '64'));
const THREADS = Number(arg('threads', '2'));
const SEED = Number(arg('seed', '0'));
const F32_SHARD_BYTES = 1e9; // save_pretrained(max_shard_size="1GB") → 2 shards for the f32 copy
const OUT = join(ROOT, 'bench-results/hf-realscale.json');

/** The prompt: PROMPT_TOKENS ids below the special tokens (LCG, fixed). */
function promptIds(): number[] {
  const out: number[] = [];
  let s = 12345;
  for (let i = 0; i < PROMPT_TOKENS; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out.push(s % 151643);
  }
  return out;
}

// ---- 1. prepare -----------------------------------------------------------------------------------------------

const numel = (s: WeightSpec) => s.shape.reduce((a, b) => a * b, 1);

function specs(): WeightSpec[] {
  return qwen2Specs(declareQwen2(parseQwen2Config(QWEN2_05B as never, 'config.json')));
}

/** Writes one Hugging Face folder; the marker file records what was written so a rerun can skip it. */
async function writeCheckpoint(dir: string, dtype: 'bf16' | 'f32', shardBytes: number): Promise<void> {
  const marker = join(dir, '.lavi-bench.json');
  const want = JSON.stringify({ dtype, seed: SEED, shardBytes, config: QWEN2_05B, generation: GENERATION, v: 1 });
  if (existsSync(marker) && readFileSync(marker, 'utf8') === want) return console.log(`  ${dir}: present`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const t0 = performance.now();
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...QWEN2_05B, torch_dtype: dtype === 'bf16' ? 'bfloat16' : 'float32' }, null, 2) + '\n');
  writeFileSync(join(dir, 'generation_config.json'), JSON.stringify(GENERATION, null, 2) + '\n');
  const all = specs();
  const bpe = dtype === 'bf16' ? 2 : 4;
  // shards in declaration order, as save_pretrained splits the state dict
  const shards: WeightSpec[][] = [[]];
  let used = 0;
  for (const s of all) {
    const b = numel(s) * bpe;
    if (used > 0 && used + b > shardBytes) shards.push([]), (used = 0);
    shards[shards.length - 1]!.push(s), (used += b);
  }
  const n = shards.length;
  const fileOf = (k: number) => (n === 1 ? 'model.safetensors' : `model-${String(k + 1).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.safetensors`);
  const weightMap: Record<string, string> = {};
  let total = 0;
  for (let k = 0; k < n; k++) {
    // values drawn as bf16 (deterministic in seed and name), widened for the f32 copy: one model, two storages
    const drawn = randomSpecs(shards[k]!, { seed: SEED, dtype: 'bf16' });
    const tensors = new Map<string, HostTensor>();
    for (const [name, t] of drawn) {
      tensors.set(name, dtype === 'bf16' ? t : { dtype: 'f32', shape: t.shape, data: widenToF32(t.data as Uint16Array, 'bf16') });
      weightMap[name] = fileOf(k);
      total += t.data.length * bpe;
    }
    await writeSafetensors(join(dir, fileOf(k)), tensors, { format: 'pt' });
  }
  if (n > 1) {
    const sorted: Record<string, string> = {};
    for (const name of Object.keys(weightMap).sort()) sorted[name] = weightMap[name]!;
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: total }, weight_map: sorted }, null, 2) + '\n');
  }
  writeFileSync(marker, want);
  console.log(`  ${dir}: ${n} file(s), ${(total / 1e9).toFixed(3)} GB of ${dtype} tensors, ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

function exportOnnx(src: string, out: string): void {
  const marker = join(out, '.lavi-bench.json');
  const want = JSON.stringify({ src, srcMarker: readFileSync(join(src, '.lavi-bench.json'), 'utf8'), exporter: readFileSync(EXPORTER, 'utf8') });
  if (existsSync(marker) && readFileSync(marker, 'utf8') === want) return console.log(`  ${out}: present`);
  rmSync(out, { recursive: true, force: true });
  const t0 = performance.now();
  const r = spawnSync('/usr/bin/python3', [EXPORTER, src, out], { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${EXPORTER} failed (status ${r.status}): ${r.stdout}`);
  writeFileSync(marker, want);
  console.log(`  ${out}: exported in ${((performance.now() - t0) / 1000).toFixed(0)} s ${r.stdout.trim()}`);
}

function tensorBytes(dir: string): number {
  const idx = join(dir, 'model.safetensors.index.json');
  if (existsSync(idx)) return (JSON.parse(readFileSync(idx, 'utf8')) as { metadata: { total_size: number } }).metadata.total_size;
  const buf = readFileSync(join(dir, 'model.safetensors')).subarray(0, 8);
  return statSync(join(dir, 'model.safetensors')).size - 8 - Number(buf.readBigUInt64LE(0));
}

// ---- 2. one process per measurement ---------------------------------------------------------------------------

interface Run {
  engine: string;
  round: number;
  loadavg: string;
  loadMs: number;
  prefillMs: number;
  decodeTokS: number;
  tokens: number;
  peakRssBytes: number;
  wallMs: number;
  ids: number[];
}

function loadavg(): string {
  return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
}

/** Runs argv under /usr/bin/time, returns the last stdout line parsed as JSON, the peak RSS and the wall time. */
function timed(argv: string[]): Promise<{ json: Record<string, unknown>; rss: number; wallMs: number }> {
  const rssFile = join(DIR, `.rss-${process.pid}`);
  return new Promise((res, rej) => {
    const t0 = performance.now();
    const p = spawn('/usr/bin/time', ['-f', '%M', '-o', rssFile, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '', err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    p.on('error', rej);
    p.on('close', (code) => {
      const wallMs = performance.now() - t0;
      const lines = out.trim().split('\n');
      if (code !== 0) return rej(new Error(`${argv.join(' ').slice(0, 200)}… exited ${code}: ${err.slice(-2000)}${lines.at(-1)}`));
      const rss = Number(readFileSync(rssFile, 'utf8').trim().split('\n').at(-1)) * 1024;
      rmSync(rssFile, { force: true });
      res({ json: JSON.parse(lines.at(-1)!) as Record<string, unknown>, rss, wallMs });
    });
  });
}

async function runLavi(engine: string, dir: string, round: number, ids: number[]): Promise<Run> {
  const la = loadavg();
  const r = await timed([process.execPath, CLI, 'generate', '--model', dir, '--ids', ids.join(','), '--max-tokens', String(NEW_TOKENS), '--json', '--backend', 'wasm']);
  const j = r.json as { ids: number[]; load_ms?: number; timings?: { prefillMs: number; tokensPerSecond: number } };
  if (!j.timings || j.load_ms === undefined) throw new Error('lavi generate --json printed no timings/load_ms (models/app/commands/generate.ts)');
  return { engine, round, loadavg: la, loadMs: j.load_ms, prefillMs: j.timings.prefillMs, decodeTokS: j.timings.tokensPerSecond, tokens: j.ids.length, peakRssBytes: r.rss, wallMs: r.wallMs, ids: j.ids };
}

async function runOrt(dir: string, round: number, ids: number[], spin = true): Promise<Run> {
  const la = loadavg();
  const r = await timed([process.execPath, fileURLToPath(import.meta.url), '--ort-child', dir, '--ids', ids.join(','), '--new-tokens', String(NEW_TOKENS), '--threads', String(THREADS), '--ort-spin', spin ? '1' : '0']);
  const j = r.json as { ids: number[]; load_ms: number; prefill_ms: number; tokens_per_second: number };
  return { engine: `ORT fp32 (${THREADS} threads${spin ? '' : ', no spin'})`, round, loadavg: la, loadMs: j.load_ms, prefillMs: j.prefill_ms, decodeTokS: j.tokens_per_second, tokens: j.ids.length, peakRssBytes: r.rss, wallMs: r.wallMs, ids: j.ids };
}

/** The ORT side, in its own process: load, 64-token prefill with an empty cache, greedy decode with the cache. */
async function ortChild(): Promise<void> {
  const dir = arg('ort-child', '');
  const ids = arg('ids', '').split(',').map(Number);
  const spec = 'onnxruntime-node';
  const m = (await import(spec)) as typeof Ort & { default?: typeof Ort };
  const ort = m.default ?? m;
  const L = QWEN2_05B.num_hidden_layers, nkv = QWEN2_05B.num_key_value_heads, hd = QWEN2_05B.hidden_size / QWEN2_05B.num_attention_heads;
  const t0 = performance.now();
  const spin = arg('ort-spin', '1'); // session.intra_op.allow_spinning: ORT's default 1 (workers spin between ops)
  const s = await ort.InferenceSession.create(join(dir, 'model.onnx'), {
    intraOpNumThreads: THREADS,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    extra: { session: { intra_op: { allow_spinning: spin } } },
  });
  const loadMs = performance.now() - t0;
  const argmax = (x: Float32Array) => {
    let best = 0;
    for (let i = 1; i < x.length; i++) if (x[i]! > x[best]!) best = i;
    return best;
  };
  let past: Record<string, Ort.Tensor> = {};
  for (let i = 0; i < L; i++) for (const kv of ['key', 'value']) past[`past_${kv}_${i}`] = new ort.Tensor('float32', new Float32Array(0), [1, nkv, 0, hd]);
  const step = async (tok: number[], pos0: number): Promise<number> => {
    const feeds: Record<string, Ort.Tensor> = {
      input_ids: new ort.Tensor('int64', BigInt64Array.from(tok, BigInt), [1, tok.length]),
      position_ids: new ort.Tensor('int64', BigInt64Array.from(tok, (_, i) => BigInt(pos0 + i)), [1, tok.length]),
      ...past,
    };
    const out = await s.run(feeds);
    const next: Record<string, Ort.Tensor> = {};
    for (let i = 0; i < L; i++) for (const kv of ['key', 'value']) next[`past_${kv}_${i}`] = out[`present_${kv}_${i}`]!;
    for (const t of Object.values(past)) t.dispose();
    past = next;
    const id = argmax(out.logits!.data as Float32Array);
    out.logits!.dispose();
    return id;
  };
  const tp = performance.now();
  const gen = [await step(ids, 0)];
  const prefillMs = performance.now() - tp;
  const td = performance.now();
  while (gen.length < NEW_TOKENS && gen.at(-1) !== GENERATION.eos_token_id) gen.push(await step([gen.at(-1)!], ids.length + gen.length - 1));
  const decodeMs = performance.now() - td;
  await s.release();
  console.log(JSON.stringify({ ids: gen, load_ms: loadMs, prefill_ms: prefillMs, decode_ms: decodeMs, tokens_per_second: gen.length > 1 ? ((gen.length - 1) * 1000) / decodeMs : 0 }));
}

// ---- report ---------------------------------------------------------------------------------------------------

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const k = s.length >> 1;
  return s.length % 2 ? s[k]! : (s[k - 1]! + s[k]!) / 2;
}
const range = (xs: number[], d = 2) => (xs.length ? `${Math.min(...xs).toFixed(d)}–${Math.max(...xs).toFixed(d)}` : '');
const agree = (a: number[], b: number[]) => {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
};

async function timePhase(): Promise<void> {
  const ids = promptIds();
  const dirs = { bf16: join(DIR, 'qwen2-0.5b-bf16'), f32: join(DIR, 'qwen2-0.5b-f32'), onnx: join(DIR, 'onnx-fp32') };
  // ORT holds its initializers: the embedding table and the tied head folded to a second [hidden, vocab] copy
  const onnxBytes = flag('no-ort') ? 0 : readdirSync(dirs.onnx).filter((f) => !f.startsWith('.')).reduce((n, f) => n + statSync(join(dirs.onnx, f)).size, 0);
  const weightBytes = { bf16: tensorBytes(dirs.bf16), f32: flag('no-f32') ? 0 : tensorBytes(dirs.f32), onnx: onnxBytes };
  const uptimeStart = spawnSync('uptime', { encoding: 'utf8' }).stdout.trim();
  console.log(`\ntiming under ${process.env.LAVI_BENCH_LOCKED ? `flock ${LOCK}` : 'NO LOCK'}; ${uptimeStart}`);

  const info: Record<string, { ms: number; out: string }> = {};
  for (const [k, d] of Object.entries(dirs)) {
    if (k === 'onnx' || (k === 'f32' && flag('no-f32'))) continue;
    const t0 = performance.now();
    const r = spawnSync(process.execPath, [CLI, 'info', '--model', d], { encoding: 'utf8' });
    info[k] = { ms: performance.now() - t0, out: (r.stdout + r.stderr).trim() };
    console.log(`\n$ lavi info --model ${d}   (${info[k]!.ms.toFixed(0)} ms, exit ${r.status})\n${info[k]!.out}`);
  }

  type Job = () => Promise<Run>;
  const runs: Run[] = [];
  for (let round = 0; round < REPEATS; round++) {
    const order: Job[] = [() => runLavi('lavi wasm bf16', dirs.bf16, round, ids)];
    if (!flag('no-ort')) order.push(() => runOrt(dirs.onnx, round, ids));
    if (!flag('no-f32')) order.push(() => runLavi('lavi wasm f32', dirs.f32, round, ids));
    if (flag('ort-nospin')) order.push(() => runOrt(dirs.onnx, round, ids, false));
    // rotate the order each round so a slow stretch of the machine does not always hit the same engine
    for (let k = 0; k < order.length; k++) {
      const r = await order[(k + round) % order.length]!();
      runs.push(r);
      console.log(`round ${round + 1} ${r.engine.padEnd(22)} load ${(r.loadMs / 1000).toFixed(2)} s  peak RSS ${(r.peakRssBytes / 1e9).toFixed(2)} GB  prefill ${r.prefillMs.toFixed(0)} ms  decode ${r.decodeTokS.toFixed(1)} tok/s (${r.tokens} tokens)  wall ${(r.wallMs / 1000).toFixed(1)} s  loadavg ${r.loadavg}`);
    }
  }
  const uptimeEnd = spawnSync('uptime', { encoding: 'utf8' }).stdout.trim();

  const engines = [...new Set(runs.map((r) => r.engine))];
  const ortName = engines.find((e) => e.startsWith('ORT') && !e.includes('no spin'));
  const ortNoSpin = engines.find((e) => e.startsWith('ORT') && e.includes('no spin'));
  const byRound = (e: string) => new Map(runs.filter((r) => r.engine === e).map((r) => [r.round, r]));
  /** Per-round ratios against one ORT row: prefill ORT ms / ms, decode tok/s / ORT tok/s (above 1: faster). */
  const vs = (rs: Run[], e: string, ref: string | undefined) => {
    if (!ref || e === ref) return { prefill: [] as number[], decode: [] as number[] };
    const o = byRound(ref);
    const pairs = rs.filter((r) => o.has(r.round)).map((r) => [r, o.get(r.round)!] as const);
    return { prefill: pairs.map(([a, b]) => b.prefillMs / a.prefillMs), decode: pairs.map(([a, b]) => a.decodeTokS / b.decodeTokS) };
  };
  const rows = engines.map((e) => {
    const rs = runs.filter((r) => r.engine === e);
    const wb = e.startsWith('ORT') ? weightBytes.onnx : e.includes('bf16') ? weightBytes.bf16 : weightBytes.f32;
    const a = vs(rs, e, ortName);
    const b = vs(rs, e, ortNoSpin);
    return {
      engine: e,
      runs: rs.length,
      loadS: median(rs.map((r) => r.loadMs / 1000)),
      peakRssGB: median(rs.map((r) => r.peakRssBytes / 1e9)),
      weightGB: wb / 1e9,
      rssOverWeights: wb ? median(rs.map((r) => r.peakRssBytes / wb)) : null,
      prefillMs: median(rs.map((r) => r.prefillMs)),
      decodeTokS: median(rs.map((r) => r.decodeTokS)),
      prefillVsOrt: a.prefill,
      decodeVsOrt: a.decode,
      prefillVsOrtNoSpin: b.prefill,
      decodeVsOrtNoSpin: b.decode,
      loadavg: rs.map((r) => r.loadavg),
      tokens: rs.map((r) => r.tokens),
    };
  });
  const cell = (xs: number[], self: boolean) => (self ? '1' : xs.length ? `${median(xs).toFixed(2)} (${range(xs)})` : '—');

  const ref = runs.find((r) => r.engine === ortName) ?? runs[0]!;
  const idCheck = engines.map((e) => {
    const r = runs.find((x) => x.engine === e)!;
    return `${e}: ${agree(r.ids, ref.ids)}/${Math.max(r.ids.length, ref.ids.length)} greedy ids equal to ${ref.engine}'s`;
  });

  const lines = [
    `| engine | load (s) | peak RSS (GB) | RSS / weight bytes | prefill ${PROMPT_TOKENS} tok (ms) | decode (tok/s) | prefill × ORT | decode × ORT |${ortNoSpin ? ' prefill × ORT no-spin | decode × ORT no-spin |' : ''}`,
    `|---|---|---|---|---|---|---|---|${ortNoSpin ? '---|---|' : ''}`,
    ...rows.map(
      (r) =>
        `| ${r.engine} | ${r.loadS.toFixed(2)} | ${r.peakRssGB.toFixed(2)} | ${r.rssOverWeights === null ? '—' : `${r.rssOverWeights.toFixed(2)} (of ${r.weightGB.toFixed(2)} GB)`} | ${r.prefillMs.toFixed(0)} | ${r.decodeTokS.toFixed(1)} | ` +
        `${cell(r.prefillVsOrt, r.engine === ortName)} | ${cell(r.decodeVsOrt, r.engine === ortName)} |` +
        (ortNoSpin ? ` ${cell(r.prefillVsOrtNoSpin, r.engine === ortNoSpin)} | ${cell(r.decodeVsOrtNoSpin, r.engine === ortNoSpin)} |` : ''),
    ),
  ];
  console.log(`\nQwen2-0.5B shape, random weights, ${PROMPT_TOKENS}-token prompt, ${NEW_TOKENS} new tokens, wasm backend, ${REPEATS} rounds (medians; × ORT: per-round ratios, median (range), above 1 = lavi faster)`);
  console.log(lines.join('\n'));
  console.log(`\n${idCheck.join('\n')}\nstart: ${uptimeStart}\nend:   ${uptimeEnd}`);

  mkdirSync(dirname(OUT), { recursive: true });
  writeFileSync(
    OUT,
    JSON.stringify(
      {
        date: new Date().toISOString(),
        command: `node dist/test/bench/hf-realscale.js ${process.argv.slice(2).filter((a) => a !== '--phase' && a !== 'time').join(' ')}`.trim(),
        locked: !!process.env.LAVI_BENCH_LOCKED,
        node: process.version,
        cpus: spawnSync('nproc', { encoding: 'utf8' }).stdout.trim(),
        uptimeStart,
        uptimeEnd,
        promptTokens: PROMPT_TOKENS,
        newTokens: NEW_TOKENS,
        ortThreads: THREADS,
        weightBytes,
        dirs,
        info,
        rows,
        idCheck,
        table: lines.join('\n'),
        runs: runs.map((r) => ({ ...r, ids: r.ids.slice(0, 8) })),
      },
      null,
      2,
    ) + '\n',
  );
  console.log(`\nwrote ${OUT}`);
}

async function main(): Promise<void> {
  if (flag('ort-child')) return ortChild();
  if (arg('phase', '') === 'time') return timePhase();
  console.log(`prepare (${DIR}):`);
  mkdirSync(DIR, { recursive: true });
  await writeCheckpoint(join(DIR, 'qwen2-0.5b-bf16'), 'bf16', Infinity);
  if (!flag('no-f32')) await writeCheckpoint(join(DIR, 'qwen2-0.5b-f32'), 'f32', F32_SHARD_BYTES);
  if (!flag('no-ort')) exportOnnx(join(DIR, 'qwen2-0.5b-bf16'), join(DIR, 'onnx-fp32'));
  if (flag('prepare-only')) return;
  // --wait-load X: wait (at most --wait-max seconds, default 1800) for the 1-minute load average to fall to X
  const waitLoad = Number(arg('wait-load', 'Infinity'));
  const deadline = Date.now() + Number(arg('wait-max', '1800')) * 1000;
  while (Number(loadavg().split(' ')[0]) > waitLoad && Date.now() < deadline) {
    console.log(`load average ${loadavg()} > ${waitLoad}: waiting`);
    await new Promise((r) => setTimeout(r, 20000));
  }
  // the timing phase holds the shared benchmark lock for its whole length
  const self = [fileURLToPath(import.meta.url), ...process.argv.slice(2), '--phase', 'time'];
  const haveFlock = spawnSync('flock', ['--version']).status === 0;
  const r = haveFlock
    ? spawnSync('flock', [LOCK, process.execPath, ...self], { stdio: 'inherit', env: { ...process.env, LAVI_BENCH_LOCKED: '1' } })
    : spawnSync(process.execPath, self, { stdio: 'inherit' });
  process.exitCode = r.status ?? 1;
}

await main();
