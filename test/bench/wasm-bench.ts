// Benchmark of the wasm backend against the CPU reference and two peers on this machine:
//   onnxruntime-node (native MLAS; W held as a graph initializer, 1 and 2 intra-op threads) and
//   @jax-js/jax on its wasm device (one thread: its threads need a browser Worker, which Node lacks).
// Cases: matmul 1024³ and 128×896·896×4864 (GFLOP/s), GEMV 1×4096·4096×4096 with f32 and bf16 weights (GB/s of
// weight bytes), per-call overhead at 1×64·64×64, and decode tokens/s of a ~20M-parameter random LaVi.
// All engines run in one process and are interleaved round by round, so background load hits them alike:
// quote the ratios, which are measured side by side, rather than the absolute figures. Each row also gives the
// process CPU time per call (all threads, spin-waiting included): on a shared machine it shows the work an engine
// spends even when its wall time is inflated by waiting for a core.
//
//   node dist/test/bench/wasm-bench.js [--rounds 5] [--quick] [--no-peers] [--no-model] [--threads 2]
//        [--cases gemm,gemv-f32] [--no-cpu] [--no-1t] [--baseline DIR] [--variant '{"json":"options"}']...
//
// --cases keeps the cases whose id starts with one of the prefixes; --no-cpu drops the (slow) CPU reference from
// the op cases; --no-1t drops the 1-thread wasm backend; --baseline DIR adds the wasm backend of another build
// (DIR/backends/wasm/index.js, e.g. a copy of dist/ from before a change) as 'base-<N>t', so that before/after
// are measured side by side; every --variant adds a wasm backend with those extra options as 'var<i>-<N>t' (and a
// 1-thread twin 'var<i>-1t' unless --no-1t), e.g. --variant '{"bf16Activations":true}'.
//
// Prints a table and the ratios, writes bench-results/wasm.json. A peer that fails to load is reported and skipped.

import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { CpuBackend } from '../../backends/cpu/index.js';
import { createWasmBackend } from '../../backends/wasm/index.js';
import { WASM_VARIANT_KERNELS } from './dev/wasm-variants.js';
import type { Backend } from '../../core/backend.js';
import { narrowFromF32 } from '../../core/dtype.js';
import type { Tensor } from '../../core/tensor.js';
import { generate } from '../../models/app/generate.js';
import { LaviModel } from '../../models/lavi/model.js';
import { countParameters, randomWeights } from '../../models/lavi/weights.js';
import * as ops from '../../ops/index.js';
import { randomFloats as random } from '../../core/rng.js';
import { benchConfig } from './bench-config.js';

const argv = process.argv.slice(2);
const flag = (n: string) => argv.includes(`--${n}`);
const arg = (n: string, d: string) => {
  const i = argv.indexOf(`--${n}`);
  return i >= 0 && argv[i + 1] ? argv[i + 1]! : d;
};
const QUICK = flag('quick');
const ROUNDS = Number(arg('rounds', QUICK ? '2' : '5'));
const THREADS = Number(arg('threads', String(Math.max(2, availableParallelism()))));
const CASES = arg('cases', '').split(',').filter(Boolean);
const VARIANTS = argv.flatMap((a, i) => (a === '--variant' && argv[i + 1] ? [JSON.parse(argv[i + 1]!) as Record<string, unknown>] : []));

// ---- engines ----

/** One way to compute a case: prepare() builds inputs (untimed) and returns the timed call. */
interface Engine {
  name: string;
  prepare(c: Case): Promise<(() => Promise<void>) | string>;
  dispose?(): Promise<void>;
}

interface Case {
  id: string;
  label: string;
  M: number;
  K: number;
  N: number;
  /** Weight layout: 'kn' = B [K, N] (what the peers take), 'nk' = Linear weight [N, K]. */
  layout: 'kn' | 'nk';
  wdtype: 'f32' | 'bf16';
  /** Rate unit: GFLOP/s for GEMMs, GB/s of weight bytes for GEMVs, µs per call for the overhead probe. */
  unit: 'GFLOP/s' | 'GB/s' | 'us';
  /** Calls timed per round. */
  reps: number;
}

let seed = 7;
const rand = (n: number): Float32Array => random(n, seed++); // a new stream per input
const hostInputs = new Map<string, { a: Float32Array; w: Float32Array }>();
function inputsOf(c: Case): { a: Float32Array; w: Float32Array } {
  const key = `${c.M}x${c.K}x${c.N}`;
  let h = hostInputs.get(key);
  if (!h) hostInputs.set(key, (h = { a: rand(c.M * c.K), w: rand(c.K * c.N) }));
  return h;
}
/** w as [N, K] (the host data is [K, N]). */
function transposed(w: Float32Array, K: number, N: number): Float32Array {
  const t = new Float32Array(K * N);
  for (let k = 0; k < K; k++) for (let n = 0; n < N; n++) t[n * K + k] = w[k * N + n]!;
  return t;
}

function ourEngine(name: string, backend: Backend, maxFlops = Infinity): Engine {
  return {
    name,
    async prepare(c) {
      if (2 * c.M * c.N * c.K > maxFlops) return 'skipped (too slow for this engine)';
      const h = inputsOf(c);
      const wdata = c.layout === 'nk' ? transposed(h.w, c.K, c.N) : h.w;
      const a = ops.tensor(backend, h.a, [c.M, c.K]);
      const w = ops.tensor(backend, c.wdtype === 'f32' ? wdata : narrowFromF32(wdata, 'bf16'), c.layout === 'nk' ? [c.N, c.K] : [c.K, c.N], c.wdtype);
      held.push(a, w);
      return async () => {
        const y = ops.matmul(a, w, { transposeB: c.layout === 'nk' });
        await y.read();
        y.dispose();
      };
    },
  };
}
const held: Tensor[] = [];

// Minimal protobuf writer for hand-built ONNX graphs (onnx.proto field numbers).
class Proto {
  readonly b: number[] = [];
  varint(v: number): this {
    let x = BigInt(v);
    do {
      let byte = Number(x & 0x7fn);
      x >>= 7n;
      if (x) byte |= 0x80;
      this.b.push(byte);
    } while (x);
    return this;
  }
  int(field: number, v: number): this {
    return this.varint(field << 3).varint(v);
  }
  bytes(field: number, data: ArrayLike<number>): this {
    this.varint((field << 3) | 2).varint(data.length);
    for (let i = 0; i < data.length; i++) this.b.push(data[i]!);
    return this;
  }
  str(field: number, s: string): this {
    return this.bytes(field, new TextEncoder().encode(s));
  }
  msg(field: number, m: Proto): this {
    return this.bytes(field, m.b);
  }
}
function valueInfo(name: string, shape: number[]): Proto {
  const dims = new Proto();
  for (const d of shape) dims.msg(1, new Proto().int(1, d));
  return new Proto().str(1, name).msg(2, new Proto().msg(1, new Proto().int(1, 1).msg(2, dims)));
}
/** ModelProto for Y = MatMul(A, B) with B [K, N] as an f32 initializer (opset 17). */
function onnxMatmul(M: number, K: number, N: number, w: Float32Array): Uint8Array {
  const node = new Proto().str(1, 'A').str(1, 'B').str(2, 'Y').str(3, 'matmul').str(4, 'MatMul');
  const init = new Proto().int(1, K).int(1, N).int(2, 1).str(8, 'B').bytes(9, new Uint8Array(w.buffer, w.byteOffset, w.byteLength));
  const graph = new Proto().msg(1, node).str(2, 'bench').msg(5, init).msg(11, valueInfo('A', [M, K])).msg(12, valueInfo('Y', [M, N]));
  return Uint8Array.from(new Proto().int(1, 8).str(2, 'lavi-ts wasm-bench').msg(7, graph).msg(8, new Proto().str(1, '').int(2, 17)).b);
}

interface OrtLike {
  InferenceSession: { create(model: Uint8Array, o: object): Promise<{ run(feeds: object): Promise<Record<string, { data: unknown }>>; release(): Promise<void> }> };
  Tensor: new (type: string, data: Float32Array, dims: number[]) => unknown;
}

async function ortEngines(): Promise<Engine[] | string> {
  let ort: OrtLike;
  try {
    const spec = 'onnxruntime-node';
    const m = (await import(spec)) as { default?: OrtLike } & OrtLike;
    ort = m.default ?? m;
  } catch (e) {
    return `onnxruntime-node failed to load: ${(e as Error).message.split('\n')[0]}`;
  }
  const sessions: { release(): Promise<void> }[] = [];
  return [1, THREADS].map((threads) => ({
    name: `ort-${threads}t`,
    async prepare(c: Case) {
      if (c.wdtype !== 'f32' || c.layout !== 'kn') return 'n/a (f32 MatMul with B [K, N] only)';
      const h = inputsOf(c);
      const s = await ort.InferenceSession.create(onnxMatmul(c.M, c.K, c.N, h.w), { intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all' });
      sessions.push(s);
      const a = new ort.Tensor('float32', h.a, [c.M, c.K]);
      return async () => {
        const r = await s.run({ A: a });
        void r.Y!.data;
      };
    },
    async dispose() {
      for (const s of sessions.splice(0)) await s.release();
    },
  }));
}

interface JaxArray {
  ref: JaxArray;
  data(): Promise<unknown>;
  dispose(): void;
}
interface JaxLike {
  init(...d: string[]): Promise<string[]>;
  defaultDevice(d: string): void;
  jit(f: (a: JaxArray, b: JaxArray) => JaxArray): (a: JaxArray, b: JaxArray) => JaxArray;
  numpy: { array(d: Float32Array, o: { shape: number[] }): JaxArray; matmul(a: JaxArray, b: JaxArray): JaxArray };
}

async function jaxEngine(): Promise<Engine | string> {
  let jax: JaxLike;
  try {
    const spec = '@jax-js/jax';
    jax = (await import(spec)) as JaxLike;
    const devices = await jax.init('wasm');
    if (!devices.includes('wasm')) return `@jax-js/jax: no wasm device (got ${devices.join(', ')})`;
    jax.defaultDevice('wasm');
  } catch (e) {
    return `@jax-js/jax failed to load: ${(e as Error).message.split('\n')[0]}`;
  }
  const mm = jax.jit((a, b) => jax.numpy.matmul(a, b));
  const arrays: JaxArray[] = [];
  return {
    name: 'jax-wasm',
    async prepare(c) {
      if (c.wdtype !== 'f32' || c.layout !== 'kn') return 'n/a (f32 with B [K, N] only)';
      const h = inputsOf(c);
      const a = jax.numpy.array(h.a, { shape: [c.M, c.K] });
      const w = jax.numpy.array(h.w, { shape: [c.K, c.N] });
      arrays.push(a, w);
      return async () => {
        await mm(a.ref, w.ref).data();
      };
    },
    async dispose() {
      for (const a of arrays.splice(0)) a.dispose();
    },
  };
}

// ---- timing ----

interface Row {
  case: string;
  engine: string;
  samples: number[];
  /** CPU time of the whole process per call (all threads, spinning included). */
  cpuSamples: number[];
  cpuMs?: number;
  medianMs?: number;
  minMs?: number;
  rate?: number;
  unit: string;
  note?: string;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

function rateOf(c: Case, ms: number): number {
  if (c.unit === 'GFLOP/s') return (2 * c.M * c.N * c.K) / ms / 1e6;
  if (c.unit === 'GB/s') return (c.K * c.N * (c.wdtype === 'f32' ? 4 : 2)) / ms / 1e6;
  return ms * 1000;
}

async function benchCases(engines: Engine[], cases: Case[]): Promise<Row[]> {
  const rows: Row[] = [];
  for (const c of cases) {
    const calls = new Map<Engine, () => Promise<void>>();
    for (const e of engines) {
      const row: Row = { case: c.id, engine: e.name, samples: [], cpuSamples: [], unit: c.unit };
      rows.push(row);
      try {
        const p = await e.prepare(c);
        if (typeof p === 'string') row.note = p;
        else {
          await p(); // warm-up: compile, tier up, first-touch
          await p();
          calls.set(e, p);
        }
      } catch (err) {
        row.note = `failed: ${(err as Error).message.split('\n')[0]}`;
      }
    }
    // Interleave engines round by round.
    for (let r = 0; r < ROUNDS; r++) {
      for (const [e, call] of calls) {
        const row = rows.find((x) => x.case === c.id && x.engine === e.name)!;
        const reps = e.name === 'cpu' ? (r < 2 ? 1 : 0) : c.reps;
        for (let i = 0; i < reps; i++) {
          const c0 = process.cpuUsage();
          const t0 = performance.now();
          await call();
          row.samples.push(performance.now() - t0);
          const cu = process.cpuUsage(c0);
          row.cpuSamples.push((cu.user + cu.system) / 1000);
        }
      }
    }
    for (const row of rows.filter((x) => x.case === c.id && x.samples.length)) {
      row.medianMs = median(row.samples);
      row.minMs = Math.min(...row.samples);
      row.rate = rateOf(c, row.medianMs);
      row.cpuMs = median(row.cpuSamples);
    }
    printCase(c, rows.filter((x) => x.case === c.id));
    for (const t of held.splice(0)) t.dispose();
  }
  return rows;
}

function printCase(c: Case, rows: Row[]): void {
  console.log(`\n${c.label}`);
  for (const r of rows) {
    if (r.medianMs === undefined) {
      console.log(`  ${r.engine.padEnd(10)} ${r.note ?? 'no samples'}`);
      continue;
    }
    const rate = c.unit === 'us' ? `${r.rate!.toFixed(0).padStart(8)} µs/call` : `${r.rate!.toFixed(c.unit === 'GB/s' ? 1 : 1).padStart(8)} ${c.unit}`;
    console.log(`  ${r.engine.padEnd(10)} median ${r.medianMs.toFixed(3).padStart(10)} ms  (min ${r.minMs!.toFixed(3)}, n=${r.samples.length})  ${rate}   cpu ${r.cpuMs!.toFixed(3)} ms/call`);
  }
}

// ---- the LaVi decode measurement ----


interface DecodeRow {
  backend: string;
  weights: string;
  decodeTokS: number;
  prefillTokS: number;
}

async function benchDecode(backends: [string, Backend][], newTokens: number, prompt: number): Promise<DecodeRow[]> {
  const cfg = benchConfig();
  const p = countParameters(cfg);
  console.log(`\nLaVi decode: random ${(p.total / 1e6).toFixed(1)}M-parameter model (LLM ${(p.llm / 1e6).toFixed(1)}M), text prompt ${prompt} tokens, ${newTokens} generated, greedy; median of ${ROUNDS} interleaved runs`);
  const ids = Array.from({ length: prompt }, (_, i) => (i * 7919 + 13) % cfg.text_config.vocab_size);
  const models: { name: string; dtype: string; model: LaviModel; dec: number[]; pre: number[] }[] = [];
  for (const dtype of ['f32', 'bf16'] as const) {
    const weights = randomWeights(cfg, { seed: 1, dtype });
    for (const [name, b] of backends) {
      const model = LaviModel.fromWeights(cfg, weights, b, { kvCapacity: prompt + newTokens + 8 });
      await generate(model, ids.slice(0, 8), { maxNewTokens: 3 }); // warm-up
      models.push({ name, dtype, model, dec: [], pre: [] });
    }
  }
  for (let r = 0; r < ROUNDS; r++) {
    for (const m of models) {
      if (m.name === 'cpu' && r >= 2) continue;
      const g = await generate(m.model, ids, { maxNewTokens: newTokens });
      m.dec.push(((g.tokens.length - 1) / g.timings.decodeMs) * 1000);
      m.pre.push((prompt / g.timings.prefillMs) * 1000);
    }
  }
  const out: DecodeRow[] = [];
  for (const m of models) {
    m.model.dispose();
    const row = { backend: m.name, weights: m.dtype, decodeTokS: median(m.dec), prefillTokS: median(m.pre) };
    out.push(row);
    console.log(`  ${m.name.padEnd(10)} ${m.dtype.padEnd(5)} decode ${row.decodeTokS.toFixed(1).padStart(7)} tok/s   prefill ${row.prefillTokS.toFixed(0).padStart(6)} tok/s`);
  }
  return out;
}

// ---- main ----

async function main(): Promise<void> {
  const cpuModel = cpus()[0]?.model ?? 'unknown CPU';
  console.log(`wasm backend benchmark — ${cpuModel}, ${availableParallelism()} cores, Node ${process.version}; ${ROUNDS} interleaved rounds`);
  const cpu = new CpuBackend();
  const w1 = await createWasmBackend({ threads: 1 });
  const wN = await createWasmBackend({ threads: THREADS });
  console.log(`wasm: ${wN.info().description}`);
  const engines: Engine[] = [ourEngine(`wasm-${THREADS}t`, wN)];
  if (!flag('no-1t')) engines.unshift(ourEngine('wasm-1t', w1));
  if (!flag('no-cpu')) engines.push(ourEngine('cpu', cpu, QUICK ? 3e8 : 3e9));
  const extra: [string, Backend][] = [];
  const baseDir = arg('baseline', '');
  if (baseDir) {
    const mod = (await import(`${baseDir.replace(/\/$/, '')}/backends/wasm/index.js`)) as { createWasmBackend: (o: object) => Promise<Backend> };
    extra.push([`base-${THREADS}t`, await mod.createWasmBackend({ threads: THREADS })]);
  }
  for (const [i, v] of VARIANTS.entries()) {
    console.log(`var${i}: ${JSON.stringify(v)}`);
    // A 1-thread twin too (unless --no-1t), so that an option is seen on one core as well as on all of them.
    if (!flag('no-1t') && THREADS > 1) extra.push([`var${i}-1t`, await createWasmBackend({ threads: 1, kernels: WASM_VARIANT_KERNELS, ...v })]);
    extra.push([`var${i}-${THREADS}t`, await createWasmBackend({ threads: THREADS, kernels: WASM_VARIANT_KERNELS, ...v })]);
  }
  /** The default backend with the same thread count as an extra engine (its f32 rows are the yardstick). */
  const peerOf = (name: string) => (name.endsWith('-1t') ? 'wasm-1t' : `wasm-${THREADS}t`);
  for (const [name, b] of extra) engines.push(ourEngine(name, b));
  const skipped: string[] = [];
  if (!flag('no-peers')) {
    const o = await ortEngines();
    if (typeof o === 'string') skipped.push(o), console.log(`peer skipped: ${o}`);
    else engines.push(...o);
    const j = await jaxEngine();
    if (typeof j === 'string') skipped.push(j), console.log(`peer skipped: ${j}`);
    else engines.push(j);
  }

  const allCases: Case[] = [
    { id: 'gemm-1024', label: 'matmul 1024×1024·1024×1024 (f32, B [K,N])', M: 1024, K: 1024, N: 1024, layout: 'kn', wdtype: 'f32', unit: 'GFLOP/s', reps: QUICK ? 2 : 3 },
    { id: 'gemm-prefill', label: 'matmul 128×896·896×4864 (f32, B [K,N])', M: 128, K: 896, N: 4864, layout: 'kn', wdtype: 'f32', unit: 'GFLOP/s', reps: QUICK ? 2 : 4 },
    { id: 'gemm-prefill-linear', label: 'linear 128×896·[4864,896]ᵀ (f32 W [N,K], the model layout)', M: 128, K: 896, N: 4864, layout: 'nk', wdtype: 'f32', unit: 'GFLOP/s', reps: QUICK ? 2 : 4 },
    { id: 'gemv-f32', label: 'gemv 1×4096·4096×4096 (f32 W [K,N]; GB/s of weights)', M: 1, K: 4096, N: 4096, layout: 'kn', wdtype: 'f32', unit: 'GB/s', reps: QUICK ? 4 : 10 },
    { id: 'gemv-f32-linear', label: 'gemv 1×4096·[4096,4096]ᵀ (f32 W [N,K])', M: 1, K: 4096, N: 4096, layout: 'nk', wdtype: 'f32', unit: 'GB/s', reps: QUICK ? 4 : 10 },
    { id: 'gemv-bf16-linear', label: 'gemv 1×4096·[4096,4096]ᵀ (bf16 W [N,K], widened in registers)', M: 1, K: 4096, N: 4096, layout: 'nk', wdtype: 'bf16', unit: 'GB/s', reps: QUICK ? 4 : 10 },
    { id: 'gemv-bf16', label: 'gemv 1×4096·4096×4096 (bf16 W [K,N])', M: 1, K: 4096, N: 4096, layout: 'kn', wdtype: 'bf16', unit: 'GB/s', reps: QUICK ? 4 : 10 },
    { id: 'gemv-896-f32', label: 'gemv 1×896·896×4864 (f32 W [K,N]; Qwen2-0.5B MLP shape)', M: 1, K: 896, N: 4864, layout: 'kn', wdtype: 'f32', unit: 'GB/s', reps: QUICK ? 4 : 20 },
    { id: 'gemv-896-f32-linear', label: 'gemv 1×896·[4864,896]ᵀ (f32 W [N,K])', M: 1, K: 896, N: 4864, layout: 'nk', wdtype: 'f32', unit: 'GB/s', reps: QUICK ? 4 : 20 },
    { id: 'gemv-896-bf16-linear', label: 'gemv 1×896·[4864,896]ᵀ (bf16 W [N,K])', M: 1, K: 896, N: 4864, layout: 'nk', wdtype: 'bf16', unit: 'GB/s', reps: QUICK ? 4 : 20 },
    { id: 'overhead', label: 'call overhead: matmul 1×64·64×64 + read back (µs per call)', M: 1, K: 64, N: 64, layout: 'kn', wdtype: 'f32', unit: 'us', reps: 50 },
  ];
  const cases = allCases.filter((c) => !CASES.length || CASES.some((p) => c.id.startsWith(p)));
  const rows = await benchCases(engines, cases);

  // Ratios of the threaded wasm backend to every other engine, per case (rates: higher is better; µs: lower).
  const ours = `wasm-${THREADS}t`;
  const ratios: { case: string; vs: string; ratio: number }[] = [];
  console.log(`\nratios: ${ours} vs each engine (> 1: ${ours} faster), same run`);
  for (const c of cases) {
    const me = rows.find((r) => r.case === c.id && r.engine === ours && r.medianMs !== undefined);
    if (!me) continue;
    const parts: string[] = [];
    for (const r of rows.filter((x) => x.case === c.id && x.engine !== ours && x.medianMs !== undefined)) {
      const ratio = r.medianMs! / me.medianMs!;
      ratios.push({ case: c.id, vs: r.engine, ratio });
      parts.push(`${r.engine} ${ratio.toFixed(2)}×`);
    }
    console.log(`  ${c.id.padEnd(20)} ${parts.join('  ')}`);
  }
  for (const [a, b] of [['gemv-f32-linear', 'gemv-bf16-linear'], ['gemv-896-f32-linear', 'gemv-896-bf16-linear']] as const) {
    for (const e of ['wasm-1t', ours, ...extra.map(([n]) => n)]) {
      const f32 = rows.find((r) => r.case === a && r.engine === e)?.medianMs;
      const bf16 = rows.find((r) => r.case === b && r.engine === e)?.medianMs;
      if (f32 && bf16) console.log(`  bf16 vs f32 weights (${e}, ${b.replace('-bf16-linear', '')}): ${(f32 / bf16).toFixed(2)}× the calls per second`);
    }
    // An extra engine's bf16 row against the default backend's f32 row at the same thread count (an option such as
    // bf16Activations leaves f32 weights alone, so that is the ratio the option is for).
    for (const [e] of extra) {
      const f32 = rows.find((r) => r.case === a && r.engine === peerOf(e))?.medianMs;
      const bf16 = rows.find((r) => r.case === b && r.engine === e)?.medianMs;
      if (f32 && bf16) console.log(`  bf16 (${e}) vs f32 (${peerOf(e)}) weights, ${b.replace('-bf16-linear', '')}: ${(f32 / bf16).toFixed(2)}× the calls per second`);
    }
  }

  for (const e of engines) await e.dispose?.();
  let decode: DecodeRow[] = [];
  if (!flag('no-model')) {
    const list: [string, Backend][] = [[ours, wN], ...extra];
    if (!flag('no-1t')) list.unshift(['wasm-1t', w1]);
    if (!flag('no-cpu')) list.unshift(['cpu', cpu]);
    decode = await benchDecode(list, QUICK ? 8 : 24, 32);
    const tok = (b: string, w: string) => decode.find((d) => d.backend === b && d.weights === w)?.decodeTokS ?? NaN;
    console.log(
      `  decode ratios: ${ours}/cpu ${(tok(ours, 'f32') / tok('cpu', 'f32')).toFixed(1)}× (f32), ${(tok(ours, 'bf16') / tok('cpu', 'bf16')).toFixed(1)}× (bf16); ` +
        `${ours} bf16/f32 ${(tok(ours, 'bf16') / tok(ours, 'f32')).toFixed(2)}×; ${ours}/wasm-1t ${(tok(ours, 'f32') / tok('wasm-1t', 'f32')).toFixed(2)}×`,
    );
    for (const [name] of extra) {
      const peer = peerOf(name);
      console.log(
        `  ${name}: bf16/f32 ${(tok(name, 'bf16') / tok(name, 'f32')).toFixed(2)}×; ${name}/${peer} ${(tok(name, 'f32') / tok(peer, 'f32')).toFixed(2)}× (f32), ${(tok(name, 'bf16') / tok(peer, 'bf16')).toFixed(2)}× (bf16); ` +
          `${name} bf16 / ${peer} f32 ${(tok(name, 'bf16') / tok(peer, 'f32')).toFixed(2)}×`,
      );
    }
  }
  await w1.destroy();
  await wN.destroy();
  for (const [, b] of extra) await (b as { destroy?: () => Promise<void> }).destroy?.();

  mkdirSync('bench-results', { recursive: true });
  const slim = rows.map(({ samples, cpuSamples, ...r }) => ({ ...r, n: samples.length }));
  writeFileSync(
    'bench-results/wasm.json',
    JSON.stringify({ date: new Date().toISOString(), cpu: cpuModel, cores: availableParallelism(), node: process.version, rounds: ROUNDS, threads: THREADS, skipped, rows: slim, ratios, decode }, null, 2),
  );
  console.log('\nwrote bench-results/wasm.json');
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
