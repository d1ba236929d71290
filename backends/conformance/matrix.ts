// The option matrix of each built-in backend for the conformance suite (test/conformance.test.ts): the
// configurations that run different kernels or different thread splits, each of which must pass the whole case
// table. The suite loops over every registered backend; a registered name without an entry here runs once, as
// the registry creates it. Backends are imported only when a variant is created.

import type { Backend, OpName } from '../../core/backend.js';
import { OP_CASES, type OpCase } from './cases.js';

export interface ConformanceVariant {
  /** What differs, e.g. '2 threads, all split'. */
  label: string;
  /**
   * Creates the backend under test; throws when it is unavailable here (the reason is reported as "not run").
   * `first` is the backend of the group's first variant (still alive), for variants that share its device;
   * returns null when the variant does not apply to it (e.g. portable kernels on an adapter without subgroups).
   */
  create(first: Backend | null): Promise<Backend | null>;
  /** Must be available when CI=true (CI installs lavapipe for WebGPU). */
  requiredOnCi?: boolean;
  /** Only these ops' cases (default: all, and every op of the table must have a passing case). */
  ops?: readonly OpName[];
  /** Another case table (default OP_CASES). */
  cases?: readonly OpCase[];
  /** Accept "unsupported" with a reason for a case (gpu.js, whose modes have size limits); default: all pass. */
  allowUnsupported?: boolean;
  /** Problems beyond the case results (checked after the cases), e.g. a gpu.js fallback taken. */
  check?(b: Backend): string[];
}

// ---- wasm ------------------------------------------------------------------------------------------------

// Under bf16Activations the matmuls with bf16 weights keep their NMSE threshold, but their element-by-element
// gross-error bound (atol 1e-3 + 1e-2·|want|) is widened to atol 0.05: rounding x to bf16 moves an output by up to
// ~2^-9·Σ|x·w| (0.06 at K = 129 with uniform inputs; 0.009 was measured at an output of 0.37, NMSE 2e-6).
const BF16_ACT_CASES = OP_CASES.map((c) => (c.op === 'matmul' && c.inputs.some((i) => i.dtype === 'bf16') ? { ...c, tol: { ...c.tol, atol: 0.05 } } : c));

type WasmOptions = import('../wasm/index.js').WasmBackendOptions;
const wasm = (label: string, opts: WasmOptions, extra: Partial<ConformanceVariant> = {}, above2GiB = false): ConformanceVariant => ({
  label,
  async create() {
    const b = await (await import('../wasm/index.js')).createWasmBackend(opts);
    // Park a (never touched, so never committed) 2.2 GB block first: every tensor of the run then lives above the
    // 2 GiB mark, where byte offsets no longer fit a signed 32-bit integer.
    if (above2GiB) b.alloc(2.2e9 / 4, 'f32');
    return b;
  },
  ...(opts.bf16Activations ? { cases: BF16_ACT_CASES } : {}),
  ...extra,
});

// ---- gpu.js ----------------------------------------------------------------------------------------------

type GpuJsOptions = import('../gpujs/index.js').GpuJsBackendOptions;
type GpuJs = import('../gpujs/index.js').GpuJsBackend;
const gpujs = (opts: GpuJsOptions, requiredOnCi: boolean): ConformanceVariant[] => [{
  label: `mode ${opts.mode}${opts.threads ? ', worker threads' : ''}`,
  create: async () => (await import('../gpujs/index.js')).createGpuJsBackend(opts),
  requiredOnCi,
  allowUnsupported: true,
  check: (b) => {
    const g = b as GpuJs;
    return [
      ...(g.runningMode !== opts.mode ? [`ran in mode ${g.runningMode}, not ${opts.mode}`] : []),
      ...(g.fallbackReason !== null ? [`gpu.js attempted a fallback: ${g.fallbackReason}`] : []),
    ];
  },
}];

// ---- the matrix ------------------------------------------------------------------------------------------

export const CONFORMANCE_MATRIX: Readonly<Record<string, readonly ConformanceVariant[]>> = {
  cpu: [{ label: 'the reference itself (fused ops vs their compositions)', create: async () => new (await import('../cpu/index.js')).CpuBackend() }],
  wasm: [
    wasm('1 thread', { threads: 1 }),
    wasm('2 threads', { threads: 2 }),
    // Every kernel split across the threads however small, so each case also runs the threaded paths.
    wasm('2 threads, all split', { threads: 2, splitSmallOps: true }),
    wasm('2 threads, all split, no relaxed-SIMD FMA', { threads: 2, splitSmallOps: true, relaxedSimd: false }),
    wasm('1 thread, bf16 activations', { threads: 1, bf16Activations: true }),
    wasm('2 threads, all split, bf16 activations', { threads: 2, splitSmallOps: true, bf16Activations: true }),
    wasm('2 threads, all split, every tensor above 2 GiB', { threads: 2, splitSmallOps: true }, {}, true),
  ],
  webgpu: [
    {
      // Guard regions on: an out-of-bounds write is caught after every case.
      label: 'guard regions, default kernels',
      create: async () => (await import('../webgpu/index.js')).createWebGPUBackend({ guardWords: 64 }),
      requiredOnCi: true,
    },
    {
      // The cases whose kernels differ without subgroups, on the portable kernels (same device).
      label: 'guard regions, portable (no-subgroup) kernels',
      async create(first) {
        const w = first as import('../webgpu/index.js').WebGPUBackend | null;
        if (!w?.rt.caps.subgroups) return null; // the default kernels are the portable ones: already covered
        return (await import('../webgpu/index.js')).createWebGPUBackend({ subgroups: false, guardWords: 64, context: w.ctx });
      },
      ops: ['matmul', 'softmax', 'layerNorm', 'rmsNorm', 'modulatedNorm', 'attention', 'argmax', 'patchEmbed'],
    },
  ],
  // gpu.js: webgpu and webasm must run on CI; headlessgl needs the optional native `gl` package (X11 dev
  // libraries to build, a display to run), which CI does not install.
  'gpujs-webgpu': gpujs({ mode: 'webgpu' }, true),
  'gpujs-webasm': gpujs({ mode: 'webasm' }, true),
  'gpujs-webasm-threads': gpujs({ mode: 'webasm', threads: true }, true),
  'gpujs-cpu': gpujs({ mode: 'cpu' }, false),
  'gpujs-headlessgl': gpujs({ mode: 'headlessgl' }, false),
};
