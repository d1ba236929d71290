// Bit-identity check for engine refactors: runs the shipped LaVi VQA checkpoint (models/weights/lavi-vqa) on a few
// held-out questions on each named backend and hashes every op output (observed through ops/dispatch's observer
// hook, read back with readSync), in call order. Prints one line per backend and question: the number of ops, the
// SHA-256 over all outputs, and the answer; with --out, writes every op's hash as JSON for diffing.
//
//   node dist/test/bench/op-hashes.js [--backend cpu,wasm] [--questions 3] [--out hashes.json]

import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import '../../backends/index.js';
import { releaseAllBackends } from '../../core/registry.js';
import { addOpObserver } from '../../ops/dispatch.js';
import { LaviRuntime, packageRoot } from '../../models/app/runtime.js';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : dflt;
}

const root = packageRoot();
const split = join(root, 'examples', 'vqa', 'test');
const questions = readFileSync(join(split, 'questions.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { image: string; question: string })
  .slice(0, Number(arg('questions', '3')));
const out: Record<string, string[]> = {};
for (const backend of arg('backend', 'cpu,wasm').split(',')) {
  const rt = await LaviRuntime.create({ modelDir: join(root, 'models', 'weights', 'lavi-vqa'), backend });
  for (const [qi, q] of questions.entries()) {
    const hashes: string[] = [];
    const all = createHash('sha256');
    const stop = addOpObserver((c) => {
      const a = c.backend.readSync!(c.out.storage, c.out.dtype, c.out.size);
      const bytes = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
      all.update(bytes);
      hashes.push(`${c.op} ${createHash('sha256').update(bytes).digest('hex').slice(0, 16)}`);
    });
    const r = await rt.ask(join(split, q.image), q.question);
    stop();
    const digest = all.digest('hex');
    out[`${backend}/${qi}`] = hashes;
    console.log(`${backend} q${qi} ops ${hashes.length} sha256 ${digest} answer ${JSON.stringify(r.answer)}`);
  }
  rt.dispose();
}
await releaseAllBackends();
const file = arg('out', '');
if (file) writeFileSync(file, JSON.stringify(out, null, 0));
