// Model sources (core/safetensors/source.ts): a checkpoint read over HTTP — range by range, or whole when small —
// and from a directory gives the same bytes as Checkpoint.open; 404s, servers that ignore Range and truncated
// files give clear errors; WebRuntime (the browser runtime) over HTTP answers as LaviRuntime does, in Node.

import { createServer, type Server } from 'node:http';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Checkpoint } from '../core/safetensors/checkpoint.js';
import { fetchModelSource, nodeModelSource, type SourceProgress } from '../core/safetensors/source.js';
import { FormatError } from '../core/errors.js';
import { WebRuntime } from '../models/app/web-runtime.js';
import { LaviRuntime } from '../models/app/runtime.js';
import { releaseAllBackends } from '../core/registry.js';
import { ROOT, serve, type Server as WebServer } from './browser-harness.js';

const DIR = join(ROOT, 'models/weights/lavi-vqa');
let web: WebServer;
let base: string;
let noRange: Server;
let noRangeUrl: string;

test.before(async () => {
  web = await serve();
  base = `${web.url}models/lavi-vqa/`;
  // A server that ignores Range (always 200 with the whole file).
  const bytes = readFileSync(join(DIR, 'model.safetensors'));
  noRange = createServer((req, res) => {
    res.writeHead(200, { 'Content-Length': String(bytes.length) });
    res.end(req.method === 'HEAD' ? undefined : bytes);
  });
  await new Promise<void>((r) => noRange.listen(0, '127.0.0.1', r));
  noRangeUrl = `http://127.0.0.1:${(noRange.address() as { port: number }).port}/`;
});

test.after(async () => {
  web?.close();
  noRange?.close();
  await releaseAllBackends();
});

async function sameAsDisk(ckpt: Checkpoint): Promise<void> {
  const disk = await Checkpoint.open(DIR);
  try {
    assert.equal(ckpt.names(), disk.names());
    for (const n of disk.names()) assert.ok(Buffer.from(await ckpt.readRaw(n)).equals(Buffer.from(await disk.readRaw(n))), n);
  } finally {
    await disk.close();
  }
}

test('over HTTP, tensor by tensor with range requests: the same bytes as the file; progress reaches the total', async () => {
  const seen: SourceProgress[] = [];
  const ckpt = await Checkpoint.fromSource(fetchModelSource(base, { wholeFileBytes: 0, onProgress: (p) => seen.push(p) }));
  try {
    await sameAsDisk(ckpt);
  } finally {
    await ckpt.close();
  }
  const last = seen[seen.length - 1]!;
  assert.ok(seen.length > 100, `${seen.length} range reads`);
  assert.is(last.total, readFileSync(join(DIR, 'model.safetensors')).length);
  assert.ok(last.loaded >= last.total - 8 && last.loaded <= last.total, `${last.loaded} of ${last.total}`);
});

test('over HTTP, a small file in one streamed request, and from a directory: the same bytes', async () => {
  for (const src of [fetchModelSource(base), nodeModelSource(DIR)]) {
    const ckpt = await Checkpoint.fromSource(src);
    try {
      await sameAsDisk(ckpt);
    } finally {
      await ckpt.close();
    }
  }
});

test('missing files: null from the source, a FormatError naming the folder from Checkpoint.fromSource', async () => {
  const src = fetchModelSource(`${web.url}models/no-such-model/`);
  assert.is(await src.readFile('config.json'), null);
  assert.is(await src.openFile('model.safetensors'), null);
  try {
    await Checkpoint.fromSource(src);
    assert.unreachable('should throw');
  } catch (e) {
    assert.instance(e, FormatError);
    assert.match((e as Error).message, /no-such-model\/: has neither model\.safetensors nor model\.safetensors\.index\.json/);
  }
  const escaped = await fetchModelSource(base).readFile('../secret').then(() => 'read', (e: Error) => e.message);
  assert.match(escaped, /not a file name inside the model folder/);
});

test('a server that ignores Range is refused, not downloaded whole', async () => {
  try {
    await Checkpoint.fromSource(fetchModelSource(noRangeUrl, { wholeFileBytes: 0 }));
    assert.unreachable('should throw');
  } catch (e) {
    assert.match((e as Error).message, /ignored the Range request/);
  }
});

test('WebRuntime over HTTP answers as LaviRuntime does (cpu)', async () => {
  const rt = await WebRuntime.load(base, { backend: 'cpu' });
  const node = await LaviRuntime.create({ backend: 'cpu', recordCost: false });
  try {
    const q = JSON.parse(readFileSync(join(ROOT, 'examples/images/questions.json'), 'utf8')) as Record<string, { question: string }>;
    for (const f of ['shapes1.png', 'shapes2.png', 'shapes3.png']) {
      const img = join(ROOT, 'examples/images', f);
      const streamed: string[] = [];
      const a = await rt.ask(readFileSync(img), q[f]!.question, { onToken: (t) => streamed.push(t) });
      const b = await node.ask(img, q[f]!.question);
      assert.is(a.answer, b.answer, f);
      assert.equal(a.tokens, b.tokens, f);
      assert.is(streamed.join('').trim(), a.answer);
    }
    assert.ok(rt.info().bytesRead > 5e6);
  } finally {
    rt.dispose();
    node.dispose();
  }
});

test.run();
