// In-browser figures next to Node's, on this machine: model load time, time to first token and decode tokens/s
// per backend, for the bundled LaVi — in headless Chromium (the minified web example, examples/web) and in Node
// (LaviRuntime). Run: npm run bench:web  (builds, then node dist/test/bench/web-bench.js [repeats]).
//
// TTFT: median over the README's three questions (after one warm-up ask), image decode + vision + prefill.
// tokens/s: the decode rate of "Describe the image." (25 answer tokens), median over the repeats.
// Browser WebGPU is Chromium's SwiftShader (CPU); Node's WebGPU is Dawn on Mesa lavapipe (CPU): neither is a GPU.

import { LaviRuntime } from '../../models/app/runtime.js';
import { releaseAllBackends } from '../../core/registry.js';
import { askInPage, buildWeb, hasChromium, launch, openAsk, readmeExamples, serve } from '../browser-harness.js';

const repeats = Number(process.argv[2] ?? 3);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
type Row = { where: string; backend: string; loadMs: number; ttftMs: number; tps: number; note: string };
const rows: Row[] = [];
const examples = readmeExamples();
const describe = examples.find((e) => e.question.startsWith('Describe'))!;

if (!hasChromium()) throw new Error('no chromium (apt-get install chromium)');
buildWeb();
const server = await serve();
const browser = await launch(true);
try {
  for (const backend of ['wasm', 'webgpu', 'cpu']) {
    const page = await browser.context.newPage();
    const load = await openAsk(page, server.url, backend);
    if (load.state !== 'loaded') throw new Error(`${backend}: ${await page.textContent('#error')}`);
    const info = (await page.textContent('#backend-info')) ?? '';
    await askInPage(page, describe.image, describe.question); // warm-up (shader compiles, first allocations)
    const ttft: number[] = [], tps: number[] = [];
    for (let r = 0; r < repeats; r++) {
      for (const ex of examples) {
        const a = await askInPage(page, ex.image, ex.question);
        ttft.push(a.ttftMs);
        if (ex === describe) tps.push(a.tokensPerSecond);
      }
    }
    rows.push({ where: 'Chromium', backend, loadMs: load.loadMs, ttftMs: median(ttft), tps: median(tps), note: info.replace(/^[a-z]+: /, '') });
    await page.close();
  }
} finally {
  await browser.close();
  server.close();
}

for (const backend of ['wasm', 'webgpu', 'cpu']) {
  const t0 = performance.now();
  const rt = await LaviRuntime.create({ backend, recordCost: false });
  const loadMs = performance.now() - t0;
  await rt.ask(describe.image, describe.question);
  const ttft: number[] = [], tps: number[] = [];
  for (let r = 0; r < repeats; r++) {
    for (const ex of examples) {
      const a = await rt.ask(ex.image, ex.question);
      ttft.push(a.timings.ttftMs);
      if (ex === describe) tps.push(a.timings.tokensPerSecond);
    }
  }
  rows.push({ where: 'Node', backend, loadMs, ttftMs: median(ttft), tps: median(tps), note: rt.backend.info().description });
  rt.dispose();
}
await releaseAllBackends();

console.log('| where | backend | load (ms) | TTFT (ms) | tokens/s | backend as reported |');
console.log('|---|---|---|---|---|---|');
for (const r of rows) console.log(`| ${r.where} | ${r.backend} | ${r.loadMs.toFixed(0)} | ${r.ttftMs.toFixed(1)} | ${r.tps.toFixed(0)} | ${r.note} |`);
