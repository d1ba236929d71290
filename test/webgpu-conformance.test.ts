// The conformance harness (backends/conformance: the op-case table vs the CPU reference, plus the fused ops vs
// their compositions, with an out-of-bounds-write check after every case) on the WebGPU backend with guard
// regions on: every case must pass and every op must be covered. Then the cases whose kernels differ without
// subgroups (matmul, reductions, attention, patchEmbed) again on the portable kernels.
//
// Skip/fail policy as test/webgpu-device.test.ts: no adapter → NOTE + skip, unless CI=true.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CpuBackend } from '../backends/cpu/index.js';
import { formatResult, summarize, verifyBackend } from '../backends/conformance/index.js';
import { createWebGPUBackend, type WebGPUBackend, type WebGPUBackendOptions } from '../backends/webgpu/index.js';
import { OP_NAMES } from '../core/backend.js';

const cpu = new CpuBackend();

let first: WebGPUBackend | null = null;
let reason = '';
try {
  first = await createWebGPUBackend({ guardWords: 64 });
} catch (e) {
  reason = (e as Error).message;
}

async function run(backend: WebGPUBackend, label: string, ops?: string[]): Promise<void> {
  const results = await verifyBackend({ backend, reference: cpu, ops });
  const s = summarize(results);
  const bad = results.filter((r) => r.status !== 'pass').map((r) => formatResult(r));
  assert.equal(bad, [], `${label}:\n${bad.join('\n')}`);
  const covered = ops ?? OP_NAMES;
  for (const op of covered) assert.ok(results.some((r) => r.op === op && r.status === 'pass'), `${label}: no passing case for ${op}`);
  console.log(`\nNOTE: webgpu conformance (${label}): ${s.pass} passed, ${s.fail} failed, ${s.unsupported} unsupported; ${backend.rt.stats.pipelines} kernels compiled`);
}

if (!first) {
  if (process.env.CI === 'true') {
    test('WebGPU adapter available (CI=true)', () => {
      assert.unreachable(`WebGPU: no adapter on CI: ${reason}`);
    });
  } else {
    console.log(`NOTE: WebGPU: no adapter (${reason}) — WebGPU conformance skipped`);
  }
  // Something that runs without an adapter, so the file reports a count either way.
  test('the conformance table covers every op of the kernel table', async () => {
    const { OP_CASES } = await import('../backends/conformance/index.js');
    for (const op of OP_NAMES) assert.ok(OP_CASES.some((c) => c.op === op), `no case for ${op}`);
  });
} else {
  const B: WebGPUBackend = first;
  test.after(() => B.destroy());

  test('every conformance case passes (guard regions on, default kernels)', () => run(B, B.rt.caps.subgroups ? `subgroup kernels, size ${B.rt.caps.sgSize}` : 'portable kernels'));

  test('portable (no-subgroup) kernels pass the matmul, reduction, attention and vision cases', async () => {
    if (!B.rt.caps.subgroups) return; // already covered above
    const P = await createWebGPUBackend({ subgroups: false, guardWords: 64, context: B.ctx } as WebGPUBackendOptions);
    try {
      await run(P, 'portable kernels', ['matmul', 'softmax', 'layerNorm', 'rmsNorm', 'modulatedNorm', 'attention', 'argmax', 'patchEmbed']);
    } finally {
      await P.destroy();
    }
  });
}

test.run();
