// The shipped VQA checkpoints (models/weights/lavi-vqa and concat-vqa) on each backend, side by side in one run:
// decode tokens/s and time to first token for "Describe the image." on held-out images (answers of ~25–40 tokens,
// greedy, KV cache). Prints, does not assert; writes bench-results/shipped.json.
//
//   node dist/test/bench/shipped-bench.js [--backend cpu,wasm] [--images 6] [--repeat 3]
//
// Each figure is the median over images × repeats (after one warm-up answer per backend and model). The ratio
// column divides by the CPU reference's median from the same run.

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import '../../backends/index.js';
import { releaseAllBackends } from '../../core/registry.js';
import { LaviRuntime, packageRoot } from '../../models/runtime.js';

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

interface Row { model: string; backend: string; decodeTokS: number; ttftMs: number; answerTokens: number }
const rows: Row[] = [];
for (const model of ['lavi-vqa', 'concat-vqa']) {
  for (const backend of backends) {
    let rt: LaviRuntime;
    try {
      rt = await LaviRuntime.create({ modelDir: join(root, 'models', 'weights', model), backend });
    } catch (e) {
      console.log(`(skipping ${backend}: ${(e as Error).message})`);
      continue;
    }
    await rt.ask(images[0]!, 'Describe the image.'); // warm-up: kernel compilation, buffer pools
    const rates: number[] = [], ttft: number[] = [], toks: number[] = [];
    for (let r = 0; r < repeat; r++) {
      for (const img of images) {
        const a = await rt.ask(img, 'Describe the image.');
        rates.push(a.timings.tokensPerSecond);
        ttft.push(a.timings.ttftMs);
        toks.push(a.tokens.length);
      }
    }
    rt.dispose();
    rows.push({ model, backend, decodeTokS: median(rates), ttftMs: median(ttft), answerTokens: median(toks) });
  }
}
await releaseAllBackends();

console.log(`${'model'.padEnd(12)}${'backend'.padEnd(10)}${'decode tok/s'.padStart(14)}${'× cpu'.padStart(8)}${'TTFT ms'.padStart(10)}${'tokens'.padStart(8)}`);
for (const r of rows) {
  const cpu = rows.find((x) => x.model === r.model && x.backend === 'cpu');
  const ratio = cpu ? (r.decodeTokS / cpu.decodeTokS).toFixed(2) : '-';
  console.log(`${r.model.padEnd(12)}${r.backend.padEnd(10)}${r.decodeTokS.toFixed(1).padStart(14)}${ratio.padStart(8)}${r.ttftMs.toFixed(1).padStart(10)}${String(r.answerTokens).padStart(8)}`);
}
mkdirSync('bench-results', { recursive: true });
writeFileSync('bench-results/shipped.json', JSON.stringify({ date: new Date().toISOString(), images: nImages, repeat, rows }, null, 1));
