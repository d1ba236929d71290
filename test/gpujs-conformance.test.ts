// The conformance harness (every op case vs the CPU reference, fused ops also vs their compositions) on the gpu.js
// backend in each gpu.js mode this machine has. Every case must pass or be reported unsupported with a reason.
//
// A mode that cannot be set up here is skipped with a NOTE line, except under CI=true, where the webasm and
// webgpu modes must be available (CI installs lavapipe for WebGPU). headlessgl needs the optional native `gl`
// package (X11 dev libraries to build, a display to run), which CI does not install.
//
// All modes run the full table. Set LAVI_GPUJS_MODES (e.g. "webasm,cpu") to run only some.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CpuBackend } from '../backends/cpu/index.js';
import { formatResult, summarize, verifyBackend, type CaseResult } from '../backends/conformance/index.js';
import { createGpuJsBackend, type GpuJsBackend, type GpuJsBackendOptions } from '../backends/gpujs/index.js';

const CI = process.env.CI === 'true';

interface ModeCase {
  label: string;
  opts: GpuJsBackendOptions;
  /** Must be available under CI=true. */
  requiredOnCi: boolean;
}

const ALL: ModeCase[] = [
  { label: 'webgpu', opts: { mode: 'webgpu' }, requiredOnCi: true },
  { label: 'webasm', opts: { mode: 'webasm' }, requiredOnCi: true },
  { label: 'webasm-threads', opts: { mode: 'webasm', threads: true }, requiredOnCi: true },
  { label: 'cpu', opts: { mode: 'cpu' }, requiredOnCi: false },
  { label: 'headlessgl', opts: { mode: 'headlessgl' }, requiredOnCi: false },
];
const only = process.env.LAVI_GPUJS_MODES?.split(',').map((s) => s.trim());
const MODES = only ? ALL.filter((m) => only.includes(m.label)) : ALL;

const reference = new CpuBackend();

/** "matmul 20/20, softmax 5/5, …" with unsupported counts where there are any. */
function perOp(results: readonly CaseResult[]): string {
  const byOp = new Map<string, CaseResult[]>();
  for (const r of results) byOp.set(r.op, [...(byOp.get(r.op) ?? []), r]);
  return [...byOp]
    .map(([op, rs]) => {
      const pass = rs.filter((r) => r.status === 'pass').length;
      const na = rs.filter((r) => r.status === 'unsupported').length;
      return `${op} ${pass}/${rs.length}${na ? ` (${na} n/a)` : ''}`;
    })
    .join(', ');
}

for (const m of MODES) {
  let backend: GpuJsBackend | null = null;
  let reason = '';
  try {
    backend = await createGpuJsBackend(m.opts);
  } catch (e) {
    reason = (e as Error).message;
  }
  if (!backend) {
    if (CI && m.requiredOnCi) {
      test(`gpujs ${m.label}: mode available (required on CI)`, () => {
        assert.unreachable(`gpujs ${m.label} unavailable on CI: ${reason}`);
      });
    } else {
      // (no test.skip: test/run.mjs subtracts uvu's skip count from a total that already excludes skips)
      console.log(`NOTE: gpujs ${m.label}: unavailable here, conformance skipped (${reason})`);
    }
    continue;
  }
  const b = backend;
  test(`gpujs ${m.label}: conformance table (every case passes or is unsupported with a reason)`, async () => {
    const t0 = performance.now();
    const results = await verifyBackend({ backend: b, reference });
    const secs = (performance.now() - t0) / 1000;
    const s = summarize(results);
    const failures = results.filter((r) => r.status === 'fail').map((r) => formatResult(r));
    const silent = results.filter((r) => r.status === 'unsupported' && !r.reason.trim()).map((r) => r.name);
    // The table, for the log (shown by test/run.mjs when this file fails; summarised below either way).
    for (const r of results) if (r.status !== 'pass') console.log(formatResult(r));
    console.log(`\nNOTE: gpujs ${m.label} (${b.info().description}): ${s.pass} pass, ${s.unsupported} unsupported, ${s.fail} fail of ${results.length} cases in ${secs.toFixed(1)} s; ${perOp(results)}`);
    assert.equal(failures, [], `failing cases:\n${failures.join('\n')}`);
    assert.equal(silent, [], 'unsupported without a reason');
    assert.ok(s.pass + s.unsupported === results.length);
    assert.equal(b.runningMode, m.opts.mode, 'ran in another mode');
    assert.is(b.fallbackReason, null, `gpu.js attempted a fallback: ${b.fallbackReason}`);
  });
  test.after(() => b.destroy());
}

test.run();
