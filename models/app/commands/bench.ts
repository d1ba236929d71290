// `lavi bench --config <preset|config.json> [--image-tokens 729,2916] [--dtype bf16] [--json] [--plot FILE.svg]`
// Random-weight LaVi and concat models of one config, timed side by side on the wasm backend. Every run is its own
// process (this command with --child), so peak memory is that variant's alone; runs interleave the variants and
// rotate their order each round, so load swings hit both. Medians over rounds; ratios are LaVi/concat per round
// (same load), then their median and range. Decode is also timed interleaved in one process (both models on shared
// weights, blocks of 4 tokens alternating), whose per-block ratios a load swing of minutes cannot skew.

import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { loadavg, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import { ValueError } from '../../../core/errors.js';
import { widenToF32 } from '../../../core/dtype.js';
import type { Backend } from '../../../core/backend.js';
import type { Tensor } from '../../../core/tensor.js';
import { argmax, tensor } from '../../../ops/index.js';
import { randomSpecs, storageDType, type WeightSpec } from '../../loading/weights.js';
import { resolveConfig, visualTokensPerImage, type ModelConfig } from '../../lavi/config.js';
import { costReport } from '../../lavi/cost-report.js';
import { LaviModel } from '../../lavi/model.js';
import { applyLaviOverrides, describeLavi } from '../../lavi/overrides.js';
import { plotSvg } from '../../lavi/plot.js';
import { expectedWeights } from '../../lavi/weights.js';
import { parseArgs, type ParsedArgs } from './args.js';

const HELP = `usage: lavi bench --config <preset|path/to/config.json> [options]

Random-weight LaVi and concat models of one config on the wasm backend, side by side with ratios: vision encode,
conditioner K/U precompute, LLM prefill (+ first token), time to first token, decode tokens/s, peak memory (wasm
heap and process RSS). One process per run; variants interleaved, order rotated each round; medians. Then, per
token count, decode once more with both models in one process, alternating blocks of 4 tokens (ratio per block).
Hold 'flock /tmp/lavi-bench.lock' around it when others time things on the same machine.

options:
  --config X            a preset (lavi-0.5b, lavi-7b) or a config.json (or a directory holding one)
  --lavi k=v,k=v        lavi_config fields on top of the config (lists join with '+'), e.g.
                        --lavi every_k=2,viln_norms=input_layernorm,kv_dtype=bf16,shared_visual_kv=true
  --image-tokens N,M    visual tokens, one or a comma list (default: one crop); whole crops are encoded, cut to N
  --text-tokens T       prompt tokens (default 64)
  --new-tokens K        decoded tokens after the first (default 16)
  --dtype D             weights: bf16 (default), f16 or f32 (norms and biases stay f32)
  --repeats R           rounds (default 2)
  --threads N           wasm threads (default 2)
  --variants a,b        lavi,concat (default both)
  --json                print the results as JSON
  --plot FILE.svg       plot time to first token, decode ms/token and peak memory vs visual tokens`;

interface ChildSpec {
  config: ModelConfig;
  /** 'paired': both models in one process on shared weights, decode interleaved (runPaired). */
  mode: 'lavi' | 'concat' | 'paired';
  imageTokens: number;
  textTokens: number;
  newTokens: number;
  dtype: 'bf16' | 'f16' | 'f32';
  threads: number;
  seed: number;
  /** 'paired' only: blocks of PAIR_BLOCK decoded tokens per model. */
  blocks?: number;
}

export interface RunResult {
  mode: 'lavi' | 'concat';
  imageTokens: number;
  round: number;
  load: number;
  /** Seconds. */
  visionS: number;
  kuS: number;
  prefillS: number;
  ttftS: number;
  decodeTokS: number;
  decodeMsPerToken: number;
  /** Bytes. */
  heapPeak: number;
  heapWeights: number;
  rssPeak: number;
  loadS: number;
}

/** Decode of both models in one process, blocks of PAIR_BLOCK tokens alternating (order swapped every block). */
export interface PairedResult {
  imageTokens: number;
  load: number;
  blocks: number;
  laviTokS: number;
  concatTokS: number;
  /** LaVi tokens/s ÷ concat tokens/s per pair of adjacent blocks: median and range. */
  ratio: { median: number; min: number; max: number };
}
const PAIR_BLOCK = 4;

const LOCK_NOTE = 'wasm backend; one process per run; medians over rounds';
const WASM32_HEAP = 4 * 2 ** 30;

function usage(msg: string): never {
  const e = new ValueError(`lavi bench: ${msg}`);
  (e as { exitCode?: number }).exitCode = 2;
  throw e;
}

function tokenList(v: string | true | undefined, dflt: number): number[] {
  if (v === undefined) return [dflt];
  if (v === true || v === '') usage('--image-tokens needs a value');
  const out = String(v).split(',').map((s) => s.trim());
  return out.map((s) => {
    const n = Number(s);
    if (s === '' || !Number.isInteger(n) || n <= 0) usage(`--image-tokens: each count must be a positive integer, got '${s}'`);
    return n;
  });
}

function posInt(p: ParsedArgs, key: string, dflt: number, min = 1): number {
  const v = p.flags.get(key);
  if (v === undefined) return dflt;
  const n = Number(v);
  if (v === true || v === '' || !Number.isInteger(n) || n < min) usage(`--${key} must be an integer ≥ ${min}, got '${String(v)}'`);
  return n;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Whether a run fits: the meta backend's peak (weights, caches, activations) against wasm32's 4 GiB heap. */
function fitCheck(cfg: ModelConfig, N: number, T: number, dtype: 'bf16' | 'f16' | 'f32'): { lavi: number; concat: number } {
  const r = costReport(cfg, { imageTokens: N, textTokens: T, weightDType: dtype });
  return { lavi: r.lavi.memory.peakTotal, concat: r.concat.memory.peakTotal };
}

const gib = (b: number) => `${(b / 2 ** 30).toFixed(2)} GiB`;

export async function run(args: string[]): Promise<number> {
  const p = parseArgs(
    args,
    { boolean: ['json', 'help'], string: ['config', 'lavi', 'image-tokens', 'text-tokens', 'new-tokens', 'dtype', 'repeats', 'threads', 'variants', 'plot', 'child'] },
    'lavi bench',
  );
  if (p.flags.has('help')) {
    console.log(HELP);
    return 0;
  }
  const child = p.flags.get('child');
  if (typeof child === 'string') return runChild(JSON.parse(readFileSync(child, 'utf8')) as ChildSpec);
  try {
    return await runParent(p);
  } catch (e) {
    if ((e as { exitCode?: number }).exitCode === 2 || e instanceof ValueError) {
      console.error((e as Error).message.startsWith('lavi bench') ? (e as Error).message : `lavi bench: ${(e as Error).message}`);
      return 2;
    }
    throw e;
  }
}

async function runParent(p: ParsedArgs): Promise<number> {
  if (p.positional.length) usage(`unexpected argument '${p.positional[0]}'\n\n${HELP}`);
  const configArg = p.flags.get('config');
  if (typeof configArg !== 'string') usage(`--config is required\n\n${HELP}`);
  let cfg = await resolveConfig(configArg);
  const lv = p.flags.get('lavi');
  if (typeof lv === 'string') cfg = applyLaviOverrides(cfg, lv);
  const perCrop = visualTokensPerImage(cfg.vision_config);
  const Ns = tokenList(p.flags.get('image-tokens'), perCrop);
  const T = posInt(p, 'text-tokens', 64);
  const K = posInt(p, 'new-tokens', 16);
  const repeats = posInt(p, 'repeats', 2);
  const threads = posInt(p, 'threads', 2);
  const dtype = (p.flags.get('dtype') ?? 'bf16') as 'bf16' | 'f16' | 'f32';
  if (!['bf16', 'f16', 'f32'].includes(dtype)) usage(`--dtype must be bf16, f16 or f32, got '${String(dtype)}'`);
  const variants = String(p.flags.get('variants') ?? 'lavi,concat').split(',') as ('lavi' | 'concat')[];
  if (!variants.length || variants.some((v) => v !== 'lavi' && v !== 'concat')) usage(`--variants: lavi and/or concat, got '${String(p.flags.get('variants'))}'`);
  const maxPos = cfg.text_config.max_position_embeddings;
  // A run's KV cache holds the prompt, the first token and K more (+1 spare): N + T + K + 2 positions for concat.
  for (const N of Ns) if (N + T + K + 2 > maxPos) usage(`${N} visual + ${T} text + ${K} new tokens (+ 2) exceed max_position_embeddings ${maxPos}`);

  // Fit: each run's peak on the meta backend (+ 64 MiB of kernel scratch) against the 4 GiB wasm32 heap, and the
  // host: the heap plus one tensor's random values and Node itself against the machine's memory.
  for (const N of Ns) {
    const f = fitCheck(cfg, N, T, dtype);
    for (const v of variants) {
      const need = f[v] + 64 * 2 ** 20;
      if (need > WASM32_HEAP) {
        usage(`${configArg} (${v}, ${dtype}, ${N} visual tokens) does not fit: it needs about ${gib(need)} of wasm32's 4 GiB heap ` +
          `(weights, caches and peak activations counted by lavi cost); try ${dtype === 'f32' ? '--dtype bf16, ' : ''}fewer visual tokens or a smaller config`);
      }
      if (need + 1.5 * 2 ** 30 > totalmem()) usage(`${configArg} (${v}, ${N} visual tokens) does not fit in this machine's ${gib(totalmem())} of memory (needs about ${gib(need + 1.5 * 2 ** 30)})`);
    }
  }

  const results: RunResult[] = [];
  const paired: PairedResult[] = [];
  const pairedNotRun: string[] = [];
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { tmpdir } = await import('node:os');
  const dir = mkdtempSync(join(tmpdir(), 'lavi-bench-'));
  try {
    for (let round = 0; round < repeats; round++) {
      for (const N of Ns) {
        const order = round % 2 ? [...variants].reverse() : variants;
        for (const mode of order) {
          const spec: ChildSpec = { config: cfg, mode, imageTokens: N, textTokens: T, newTokens: K, dtype, threads, seed: round };
          const file = join(dir, `spec-${round}-${N}-${mode}.json`);
          writeFileSync(file, JSON.stringify(spec));
          const load = loadavg()[0]!;
          if (!p.flags.has('json')) process.stderr.write(`round ${round + 1}/${repeats}: ${mode} N=${N} (load ${load.toFixed(2)}) ... `);
          const r = await spawnChild<RunResult>(file);
          r.round = round;
          r.load = load;
          if (!p.flags.has('json')) process.stderr.write(`decode ${r.decodeTokS.toFixed(1)} tok/s, TTFT ${r.ttftS.toFixed(2)} s, peak heap ${gib(r.heapPeak)}, RSS ${gib(r.rssPeak)}\n`);
          results.push(r);
        }
      }
    }
    if (variants.length === 2) {
      for (const N of Ns) {
        // 2K tokens per model in blocks of PAIR_BLOCK, at least 8 blocks, as many as fit concat's positions.
        const blocks = Math.min(Math.max(8, Math.ceil((2 * K) / PAIR_BLOCK)), Math.floor((maxPos - N - T - 3) / PAIR_BLOCK));
        const say = (m: string) => !p.flags.has('json') && process.stderr.write(m);
        if (blocks < 2) {
          const why = `decode interleaved at ${N} visual tokens: not run (max_position_embeddings ${maxPos} leaves no room for 2 blocks of ${PAIR_BLOCK})`;
          say(`${why}\n`);
          pairedNotRun.push(why);
          continue;
        }
        const spec: ChildSpec = { config: cfg, mode: 'paired', imageTokens: N, textTokens: T, newTokens: K, dtype, threads, seed: 0, blocks };
        const file = join(dir, `spec-paired-${N}.json`);
        writeFileSync(file, JSON.stringify(spec));
        const load = loadavg()[0]!;
        say(`decode interleaved: N=${N} (load ${load.toFixed(2)}) ... `);
        try {
          const r = await spawnChild<PairedResult>(file, 'BENCH-PAIRED ');
          r.load = load;
          say(`LaVi ${r.laviTokS.toFixed(1)}, concat ${r.concatTokS.toFixed(1)} tok/s, ratio ${r.ratio.median.toFixed(2)}\n`);
          paired.push(r);
        } catch (e) {
          // Both models in one process need more memory than either run alone: report it, keep the runs' results.
          say(`failed\n`);
          pairedNotRun.push(`decode interleaved at ${N} visual tokens: failed: ${(e as Error).message.split('\n')[0]}`);
        }
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const summary = summarise(results, Ns, variants);
  const report = {
    config: configArg,
    lavi: describeLavi(cfg),
    lavi_config: cfg.lavi_config,
    dtype, threads, textTokens: T, newTokens: K, repeats,
    note: LOCK_NOTE,
    runs: results,
    summary,
    paired,
    pairedNotRun,
  };
  if (p.flags.has('json')) console.log(JSON.stringify(report, null, 2));
  else console.log([formatBench(report), ...pairedNotRun].join('\n'));
  const plot = p.flags.get('plot');
  if (typeof plot === 'string') {
    writeFileSync(plot, benchPlot(report));
    if (!p.flags.has('json')) console.log(`plot written to ${plot}`);
  }
  return 0;
}

/** Runs one child (`bench --child`) and parses its `tag` line: a RunResult, or a PairedResult for 'paired'. */
function spawnChild<T>(specFile: string, tag = 'BENCH-RESULT '): Promise<T> {
  const cli = fileURLToPath(new URL('../cli.js', import.meta.url));
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, ['--expose-gc', '--max-old-space-size=8192', cli, 'bench', '--child', specFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '', err = '';
    c.stdout.on('data', (d) => (out += d));
    c.stderr.on('data', (d) => (err += d));
    c.on('close', (code, sig) => {
      const line = out.split('\n').find((l) => l.startsWith(tag));
      if (code === 0 && line) return resolve(JSON.parse(line.slice(tag.length)) as T);
      const tail = err.split('\n').slice(-8).join('\n');
      if (/out of memory|Cannot allocate|RangeError: .*memory|WebAssembly.Memory|heap: /i.test(err)) {
        return reject(new ValueError(`lavi bench: a run ran out of memory: this configuration does not fit\n${tail}`));
      }
      reject(new Error(`lavi bench: a run failed (exit ${code ?? sig})\n${tail}`));
    });
  });
}

// ---- one run, in its own process --------------------------------------------------------------------------

function vmHWM(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

/** One weight of `expectedWeights`, random, on the backend in the dtype the loader would store it in;
 *  deterministic in (seed, name), as randomWeights draws them, so LaVi and concat share every common tensor. */
export function randomTensorOn(backend: Backend, spec: WeightSpec, dtype: ChildSpec['dtype']): Tensor {
  const h = randomSpecs([spec], { seed: 1, dtype }).get(spec.name)!;
  const want = storageDType(spec.kind, h.dtype, true);
  const data = want === 'f32' && h.dtype !== 'f32' ? widenToF32(h.data as Uint16Array, h.dtype as 'bf16') : h.data;
  return tensor(backend, data, h.shape, want);
}

/** Random weights straight onto the backend, one tensor at a time (the host never holds the whole model). */
function randomWeightsOn(backend: Backend, cfg: ModelConfig, dtype: ChildSpec['dtype']): Map<string, Tensor> {
  const map = new Map<string, Tensor>();
  for (const spec of expectedWeights(cfg)) if (!spec.optional) map.set(spec.name, randomTensorOn(backend, spec, dtype));
  return map;
}

/** The random picture (crops of the tower's input, values in [-1, 1)) and prompt ids of a run. */
function randomInputs(cfg: ModelConfig, s: ChildSpec): { px: Float32Array; crops: number; ids: number[] } {
  const S = cfg.vision_config.image_size;
  const crops = Math.ceil(s.imageTokens / visualTokensPerImage(cfg.vision_config));
  const px = new Float32Array(crops * 3 * S * S);
  let x = 12345 + s.seed;
  for (let i = 0; i < px.length; i++) (x = (Math.imul(x, 1103515245) + 12345) | 0), (px[i] = ((x >>> 8) / 2 ** 24) * 2 - 1);
  const ids = Array.from({ length: s.textTokens }, (_, i) => (i * 7919 + 17) % cfg.text_config.vocab_size);
  return { px, crops, ids };
}

/** The last position's greedy token. */
export async function nextToken(logits: Tensor): Promise<number> {
  const a = argmax(logits);
  const v = (await a.read()) as Int32Array;
  a.dispose();
  return v[v.length - 1]!;
}

async function runChild(s: ChildSpec): Promise<number> {
  if (s.mode === 'paired') return runPaired(s);
  const { WasmBackend } = await import('../../../backends/wasm/index.js');
  const backend = await WasmBackend.create({ threads: s.threads });
  const cfg: ModelConfig = { ...s.config, lavi_config: { ...s.config.lavi_config, mode: s.mode } };
  const t0 = performance.now();
  const map = randomWeightsOn(backend, cfg, s.dtype);
  const model = LaviModel.fromWeights(cfg, map, backend, { kvCapacity: s.textTokens + (s.mode === 'concat' ? s.imageTokens : 0) + s.newTokens + 2 });
  const loadS = (performance.now() - t0) / 1000;
  (globalThis as { gc?: () => void }).gc?.();
  const heapWeights = backend.memoryStats().liveBytes;
  // Peak RSS from here on: the weights are loaded and the host copies gone.
  try {
    writeFileSync('/proc/self/clear_refs', '5');
  } catch {
    /* older kernels: VmHWM then includes loading */
  }
  (backend as unknown as { heap: { resetPeak(): void } }).heap?.resetPeak?.();

  const S = cfg.vision_config.image_size;
  const { px, crops, ids } = randomInputs(cfg, s);

  const tv = performance.now();
  const enc = model.encodeImage({ data: px, shape: [crops, 3, S, S] }, { maxTokens: s.imageTokens });
  await enc.tokens.read();
  const visionS = (performance.now() - tv) / 1000;

  let kuS = 0;
  if (s.mode === 'lavi') {
    const tk = performance.now();
    const ctx = model.conditioners.prepare(enc.tokens);
    const ts = ctx.tensors();
    if (ts.length) await ts[ts.length - 1]!.read();
    kuS = (performance.now() - tk) / 1000;
    ctx.dispose();
  }

  const next = nextToken;
  const tp = performance.now();
  let tok = await next(model.prefill(ids, enc, { consumeImage: true }));
  const prefillS = (performance.now() - tp) / 1000;
  const td = performance.now();
  for (let i = 0; i < s.newTokens; i++) tok = await next(model.decodeStep(tok));
  const decS = (performance.now() - td) / 1000;
  const stats = backend.memoryStats();
  const result: RunResult = {
    mode: s.mode,
    imageTokens: s.imageTokens,
    round: 0,
    load: 0,
    visionS,
    kuS,
    prefillS,
    ttftS: visionS + prefillS,
    decodeTokS: s.newTokens / decS,
    decodeMsPerToken: (decS * 1000) / s.newTokens,
    heapPeak: stats.peakBytes,
    heapWeights,
    rssPeak: vmHWM(),
    loadS,
  };
  console.log('BENCH-RESULT ' + JSON.stringify(result));
  model.dispose();
  return 0;
}

/**
 * Both models in one process, on one set of weights (concat's are a subset of LaVi's: the same draws), one image
 * encoded once; each prefilled, then decode alternates blocks of PAIR_BLOCK tokens, the order swapped every block,
 * `blocks` of them per model (2·newTokens tokens, at least 8 blocks, as many as fit). Ratios are taken per adjacent pair of blocks, so a slow spell of the
 * machine hits both sides of each.
 */
async function runPaired(s: ChildSpec): Promise<number> {
  const { WasmBackend } = await import('../../../backends/wasm/index.js');
  const backend = await WasmBackend.create({ threads: s.threads });
  const laviCfg: ModelConfig = { ...s.config, lavi_config: { ...s.config.lavi_config, mode: 'lavi' } };
  const concatCfg: ModelConfig = { ...s.config, lavi_config: { ...s.config.lavi_config, mode: 'concat' } };
  const map = randomWeightsOn(backend, laviCfg, s.dtype);
  const concatMap = new Map<string, Tensor>();
  for (const spec of expectedWeights(concatCfg)) {
    if (spec.optional) continue;
    const t = map.get(spec.name);
    if (!t) throw new Error(`lavi bench: concat weight ${spec.name} is not among LaVi's`);
    concatMap.set(spec.name, t);
  }
  const blocks = s.blocks ?? 8;
  const room = blocks * PAIR_BLOCK + 3; // the blocks, the warm-up step, the prefill's token, one spare
  const lavi = LaviModel.fromWeights(laviCfg, map, backend, { kvCapacity: s.textTokens + room });
  const concat = LaviModel.fromWeights(concatCfg, concatMap, backend, { kvCapacity: s.textTokens + s.imageTokens + room });
  const S = laviCfg.vision_config.image_size;
  const { px, crops, ids } = randomInputs(laviCfg, s);
  const enc = lavi.encodeImage({ data: px, shape: [crops, 3, S, S] }, { maxTokens: s.imageTokens });
  const models = [lavi, concat];
  const tok = [await nextToken(lavi.prefill(ids, enc, { consumeImage: false })), await nextToken(concat.prefill(ids, enc, { consumeImage: true }))];
  // One untimed step each first: the first decode step in a process pays one-off costs (JIT, buffers) that would
  // otherwise land on whichever model goes first.
  for (let i = 0; i < 2; i++) tok[i] = await nextToken(models[i]!.decodeStep(tok[i]!));
  const ms: number[][] = [[], []];
  for (let b = 0; b < blocks; b++) {
    for (const i of b % 2 ? [1, 0] : [0, 1]) {
      const t0 = performance.now();
      for (let k = 0; k < PAIR_BLOCK; k++) tok[i] = await nextToken(models[i]!.decodeStep(tok[i]!));
      ms[i]!.push((performance.now() - t0) / PAIR_BLOCK);
    }
  }
  const ratios = ms[0]!.map((l, b) => ms[1]![b]! / l);
  const result: PairedResult = {
    imageTokens: s.imageTokens,
    load: 0,
    blocks,
    laviTokS: 1000 / median(ms[0]!),
    concatTokS: 1000 / median(ms[1]!),
    ratio: { median: median(ratios), min: Math.min(...ratios), max: Math.max(...ratios) },
  };
  console.log('BENCH-PAIRED ' + JSON.stringify(result));
  return 0;
}

// ---- summary and formatting -------------------------------------------------------------------------------

type Metric = 'visionS' | 'kuS' | 'prefillS' | 'ttftS' | 'decodeTokS' | 'heapPeak' | 'rssPeak';
const METRICS: Metric[] = ['visionS', 'kuS', 'prefillS', 'ttftS', 'decodeTokS', 'heapPeak', 'rssPeak'];

export interface Summary {
  imageTokens: number;
  lavi: Partial<Record<Metric, number>>;
  concat: Partial<Record<Metric, number>>;
  /** LaVi / concat per round, median and range; for times, concat/LaVi (above 1: LaVi faster). */
  ratio: Partial<Record<Metric, { median: number; min: number; max: number }>>;
  loads: number[];
}

function summarise(rs: RunResult[], Ns: number[], variants: string[]): Summary[] {
  return Ns.map((N) => {
    const of = (mode: string) => rs.filter((r) => r.imageTokens === N && r.mode === mode);
    const out: Summary = { imageTokens: N, lavi: {}, concat: {}, ratio: {}, loads: rs.filter((r) => r.imageTokens === N).map((r) => r.load) };
    for (const v of variants) for (const m of METRICS) (out[v as 'lavi'])[m] = median(of(v).map((r) => r[m]));
    if (variants.length === 2) {
      for (const m of METRICS) {
        if (m === 'kuS') continue;
        const per: number[] = [];
        for (const l of of('lavi')) {
          const c = of('concat').find((x) => x.round === l.round);
          if (!c) continue;
          // Speed-up for times (concat / LaVi), LaVi / concat for rates and memory.
          per.push(m.endsWith('S') && m !== 'decodeTokS' ? c[m] / l[m] : l[m] / c[m]);
        }
        if (per.length) out.ratio[m] = { median: median(per), min: Math.min(...per), max: Math.max(...per) };
      }
    }
    return out;
  });
}

const LABELS: Record<Metric, string> = {
  visionS: 'vision tower + projector (s)',
  kuS: 'conditioner K/U precompute (s)',
  prefillS: 'LLM prefill + first token (s)',
  ttftS: 'time to first token (s)',
  decodeTokS: 'decode (tokens/s)',
  heapPeak: 'peak wasm heap',
  rssPeak: 'peak process RSS (after load)',
};

function fmtVal(m: Metric, v: number | undefined): string {
  if (v === undefined || Number.isNaN(v)) return '—';
  if (m === 'heapPeak' || m === 'rssPeak') return gib(v);
  if (m === 'decodeTokS') return v.toFixed(1);
  return v.toFixed(2);
}

interface BenchReport {
  config: string;
  lavi: string;
  dtype: string;
  threads: number;
  textTokens: number;
  newTokens: number;
  repeats: number;
  note: string;
  runs: RunResult[];
  summary: Summary[];
  paired: PairedResult[];
}

function formatBench(r: BenchReport): string {
  const out = [
    `lavi bench: ${r.config} (${r.dtype}; LaVi: ${r.lavi}), ${r.textTokens} text tokens, ${r.newTokens} decoded, ${r.repeats} rounds, ${r.threads} threads`,
    `${r.note}; ratios per round (same load), median [min–max]: time rows concat/LaVi (>1: LaVi faster), decode and memory LaVi/concat`,
  ];
  for (const s of r.summary) {
    out.push('', `${s.imageTokens} visual tokens (load ${Math.min(...s.loads).toFixed(2)}–${Math.max(...s.loads).toFixed(2)})`);
    const rows = METRICS.map((m) => {
      const q = s.ratio[m];
      return [LABELS[m], fmtVal(m, s.lavi[m]), fmtVal(m, s.concat[m]), q ? `${q.median.toFixed(2)} [${q.min.toFixed(2)}–${q.max.toFixed(2)}]` : ''];
    });
    const pr = r.paired.find((x) => x.imageTokens === s.imageTokens);
    if (pr) rows.splice(METRICS.indexOf('decodeTokS') + 1, 0, [`decode, interleaved (tokens/s)`, pr.laviTokS.toFixed(1), pr.concatTokS.toFixed(1), `${pr.ratio.median.toFixed(2)} [${pr.ratio.min.toFixed(2)}–${pr.ratio.max.toFixed(2)}] per block pair (${pr.blocks} × ${PAIR_BLOCK} tokens, one process)`]);
    const w0 = Math.max(...rows.map((x) => x[0]!.length));
    out.push(`${''.padEnd(w0)}  ${'LaVi'.padStart(10)}  ${'concat'.padStart(10)}  ratio`);
    for (const [a, b, c, d] of rows) out.push(`${a!.padEnd(w0)}  ${b!.padStart(10)}  ${c!.padStart(10)}  ${d}`);
  }
  return out.join('\n');
}

function benchPlot(r: BenchReport): string {
  const series = (mode: 'lavi' | 'concat', m: Metric, f = (x: number) => x) =>
    ({ label: mode === 'lavi' ? 'LaVi' : 'concat', points: r.summary.filter((s) => s[mode][m] !== undefined).map((s) => [s.imageTokens, f(s[mode][m]!)] as [number, number]) });
  const both = (title: string, m: Metric, fmt: (y: number) => string, f?: (x: number) => number) => ({ title, fmt, lavi: series('lavi', m, f), concat: series('concat', m, f) });
  return plotSvg(
    `lavi bench: ${r.config}, ${r.dtype}, wasm ${r.threads} threads (LaVi: ${r.lavi})`,
    `measured, medians of ${r.repeats} rounds; ×: LaVi/concat`,
    [
      both('time to first token (s)', 'ttftS', (y) => y.toFixed(1)),
      both('LLM prefill + first token (s)', 'prefillS', (y) => y.toFixed(1)),
      both('decode (ms per token)', 'decodeTokS', (y) => y.toFixed(0), (x) => 1000 / x),
      both('peak process RSS (GiB)', 'rssPeak', (y) => (y / 2 ** 30).toFixed(2)),
    ],
  );
}
