// The shipped VQA checkpoints (models/weights/lavi-vqa and concat-vqa) on each backend, side by side in one run:
// decode tokens/s and time to first token for "Describe the image." on held-out images (answers of ~25–40 tokens,
// greedy, KV cache). Prints, does not assert; writes bench-results/shipped.json.
//
//   node dist/test/bench/shipped-bench.js [--backend cpu,wasm] [--images 6] [--repeat 3]
//
// Each figure is the median over images × repeats (after one warm-up answer per backend and model). The backends
// answer each question in turn, and the ratio column is the median over questions of (tokens/s ÷ the CPU
// reference's tokens/s on the same question), which a noisy spell of a shared machine disturbs far less than a
// ratio of medians taken minutes apart.

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import '../../backends/index.js';
import { releaseAllBackends } from '../../core/registry.js';
import { LaviRuntime, packageRoot } from '../../models/app/runtime.js';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : dflt;
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const root = packageRoot();
const backends = arg('backend', 'cpu,wasm').split(',');
const nImages = Number(arg('images', '6'));
const repeat = Number(arg('repeat', '3'));
const images = Array.from({ length: nImages }, (_, i) => join(root, 'examples', 'vqa', 'test', `img_${String(i).padStart(3, '0')}.png`));

interface Row { model: string; backend: string; decodeTokS: number; ttftMs: number; answerTokens: number; ratioToCpu: number | null }
const rows: Row[] = [];
for (const model of ['lavi-vqa', 'concat-vqa']) {
  // Every backend answers the same question in turn (round-robin per image), so a slow spell of this shared
  // machine hits all of them alike; the ratio to the CPU reference is taken per question, then its median.
  const runtimes: { backend: string; rt: LaviRuntime; rates: number[]; ttft: number[]; toks: number[] }[] = [];
  for (const backend of backends) {
    try {
      const rt = await LaviRuntime.create({ modelDir: join(root, 'models', 'weights', model), backend });
      await rt.ask(images[0]!, 'Describe the image.'); // warm-up: kernel compilation, buffer pools
      runtimes.push({ backend, rt, rates: [], ttft: [], toks: [] });
    } catch (e) {
      console.log(`(skipping ${backend}: ${(e as Error).message})`);
    }
  }
  for (let r = 0; r < repeat; r++) {
    for (const img of images) {
      for (const x of runtimes) {
        const a = await x.rt.ask(img, 'Describe the image.');
        x.rates.push(a.timings.tokensPerSecond);
        x.ttft.push(a.timings.ttftMs);
        x.toks.push(a.tokens.length);
      }
    }
  }
  const cpu = runtimes.find((x) => x.backend === 'cpu');
  for (const x of runtimes) {
    x.rt.dispose();
    const ratio = cpu ? median(x.rates.map((v, i) => v / cpu.rates[i]!)) : null;
    rows.push({ model, backend: x.backend, decodeTokS: median(x.rates), ttftMs: median(x.ttft), answerTokens: median(x.toks), ratioToCpu: ratio });
  }
}
await releaseAllBackends();

console.log(`${'model'.padEnd(12)}${'backend'.padEnd(10)}${'decode tok/s'.padStart(14)}${'× cpu'.padStart(8)}${'TTFT ms'.padStart(10)}${'tokens'.padStart(8)}`);
for (const r of rows) {
  const ratio = r.ratioToCpu === null ? '-' : r.ratioToCpu.toFixed(2);
  console.log(`${r.model.padEnd(12)}${r.backend.padEnd(10)}${r.decodeTokS.toFixed(1).padStart(14)}${ratio.padStart(8)}${r.ttftMs.toFixed(1).padStart(10)}${String(r.answerTokens).padStart(8)}`);
}
mkdirSync('bench-results', { recursive: true });
writeFileSync('bench-results/shipped.json', JSON.stringify({ date: new Date().toISOString(), images: nImages, repeat, rows }, null, 1));
