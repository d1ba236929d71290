// safetensors: sharded and single-file checkpoints, their validation, and lazy reading of a large file.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { promises as fsp, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FormatError, ValueError } from '../core/errors.js';
import { Checkpoint, SafetensorsFile, writeSafetensors, type HostTensor } from '../core/safetensors/index.js';

const root = mkdtempSync(join(tmpdir(), 'lavi-st-ckpt-'));
test.after(() => rmSync(root, { recursive: true, force: true }));

async function throwsLike(fn: () => unknown, cls: new (...a: never[]) => Error, ...parts: string[]): Promise<Error> {
  let err: unknown;
  try {
    await fn();
  } catch (e) {
    err = e;
  }
  assert.ok(err !== undefined, `expected ${cls.name}, nothing was thrown`);
  assert.ok(err instanceof cls, `expected ${cls.name}, got ${String(err)}`);
  const msg = (err as Error).message;
  for (const p of parts) assert.ok(msg.includes(p), `message ${JSON.stringify(msg)} should include ${JSON.stringify(p)}`);
  return err as Error;
}

const f32 = (shape: number[], ...values: number[]): HostTensor => ({ dtype: 'f32', shape, data: Float32Array.from(values) });

const SHARD1 = 'model-00001-of-00002.safetensors';
const SHARD2 = 'model-00002-of-00002.safetensors';
let dirNo = 0;

/** A fresh directory with two shards and an index (the index can be edited before writing). */
async function sharded(edit?: (index: { metadata: Record<string, unknown>; weight_map: Record<string, string> }) => void): Promise<string> {
  const d = join(root, `ckpt-${dirNo++}`);
  mkdirSync(d);
  await writeSafetensors(join(d, SHARD1), { 'embed.weight': f32([2, 2], 1, 2, 3, 4), 'layer.0.w': f32([2], 5, 6) }, { format: 'pt' });
  await writeSafetensors(join(d, SHARD2), { 'layer.1.w': f32([2], 7, 8), 'norm.weight': f32([], 9) }, { format: 'pt' });
  const weight_map: Record<string, string> = Object.create(null);
  weight_map['embed.weight'] = SHARD1;
  weight_map['layer.0.w'] = SHARD1;
  weight_map['layer.1.w'] = SHARD2;
  weight_map['norm.weight'] = SHARD2;
  const index = { metadata: { total_size: 36 } as Record<string, unknown>, weight_map };
  edit?.(index);
  writeFileSync(join(d, 'model.safetensors.index.json'), JSON.stringify(index, null, 2));
  return d;
}

test('sharded checkpoint: open a directory or its index, read from both shards', async () => {
  const d = await sharded();
  for (const target of [d, join(d, 'model.safetensors.index.json')]) {
    const ck = await Checkpoint.open(target);
    assert.is(ck.indexPath, join(d, 'model.safetensors.index.json'));
    assert.equal(ck.shards, [join(d, SHARD1), join(d, SHARD2)]);
    assert.equal(ck.names(), ['embed.weight', 'layer.0.w', 'layer.1.w', 'norm.weight']);
    assert.is(ck.indexMetadata?.total_size, 36);
    assert.is(ck.metadata.format, 'pt');
    assert.equal(Array.from((await ck.read('embed.weight')).data), [1, 2, 3, 4]);
    assert.equal(Array.from((await ck.read('layer.1.w')).data), [7, 8]);
    const n = await ck.read('norm.weight');
    assert.equal(n.shape, []);
    assert.equal(Array.from(n.data), [9]);
    assert.is(ck.shardOf('layer.1.w'), join(d, SHARD2));
    assert.is(ck.entry('layer.0.w').file, join(d, SHARD1));
    assert.is(ck.has('layer.2.w'), false);
    await throwsLike(() => ck.read('layer.2.w'), ValueError, '"layer.2.w"', '"layer.0.w"');
    const all = await Promise.all(ck.names().map((name) => ck.read(name)));
    assert.is(all.length, 4);
    await ck.close();
    await ck.close();
  }
});

test('single-file checkpoints: a file, or a directory with model.safetensors', async () => {
  const d = join(root, 'single');
  mkdirSync(d);
  await writeSafetensors(join(d, 'model.safetensors'), { w: f32([1], 3) }, { k: 'v' });
  for (const target of [d, join(d, 'model.safetensors')]) {
    const ck = await Checkpoint.open(target);
    assert.is(ck.indexPath, null);
    assert.is(ck.indexMetadata, null);
    assert.is(ck.metadata.k, 'v');
    assert.equal(ck.names(), ['w']);
    assert.equal(Array.from((await ck.read('w')).data), [3]);
    await ck.close();
  }
  const empty = join(root, 'empty-dir');
  mkdirSync(empty);
  writeFileSync(join(empty, 'pytorch_model.bin'), 'x');
  await throwsLike(() => Checkpoint.open(empty), FormatError, empty, 'model.safetensors');
  await throwsLike(() => Checkpoint.open(join(root, 'nowhere')), ValueError, 'nowhere');
});

test('index pointing at a missing shard', async () => {
  const d = await sharded((ix) => {
    ix.weight_map['lm_head.weight'] = 'model-00003-of-00003.safetensors';
  });
  await throwsLike(() => Checkpoint.open(d), FormatError, 'model.safetensors.index.json', 'model-00003-of-00003.safetensors', 'does not exist', '"lm_head.weight"');
});

test('index listing a tensor that its shard does not hold', async () => {
  const d = await sharded((ix) => {
    ix.weight_map['lm_head.weight'] = SHARD1;
  });
  await throwsLike(() => Checkpoint.open(d), FormatError, 'model.safetensors.index.json', '"lm_head.weight"', SHARD1, 'does not contain it');
  const e = await sharded((ix) => {
    ix.weight_map['layer.1.w'] = SHARD1; // it is in shard 2
  });
  await throwsLike(() => Checkpoint.open(e), FormatError, '"layer.1.w"', SHARD1, `it is in ${join(e, SHARD2)}`);
});

test('shard tensors missing from the index, and tensors stored in two shards', async () => {
  const d = await sharded((ix) => {
    delete ix.weight_map['norm.weight'];
  });
  await throwsLike(() => Checkpoint.open(d), FormatError, '"norm.weight"', SHARD2, 'not listed in the index');

  const e = await sharded();
  await writeSafetensors(join(e, SHARD2), { 'layer.1.w': f32([2], 7, 8), 'norm.weight': f32([], 9), 'layer.0.w': f32([2], 5, 6) });
  await throwsLike(() => Checkpoint.open(e), FormatError, '"layer.0.w"', 'two shards', join(e, SHARD1), join(e, SHARD2));
});

test('malformed indexes and shards', async () => {
  const cases: [(d: string) => void, string[]][] = [
    [(d) => writeFileSync(join(d, 'model.safetensors.index.json'), '{"weight_map": {'), ['not valid JSON']],
    [(d) => writeFileSync(join(d, 'model.safetensors.index.json'), '[]'), ['must be a JSON object']],
    [(d) => writeFileSync(join(d, 'model.safetensors.index.json'), '{"metadata": {}}'), ['no "weight_map"']],
    [(d) => writeFileSync(join(d, 'model.safetensors.index.json'), '{"weight_map": []}'), ['"weight_map" must be an object']],
    [(d) => writeFileSync(join(d, 'model.safetensors.index.json'), '{"weight_map": {"w": 3}}'), ['"w"', 'number 3']],
    [(d) => writeFileSync(join(d, 'model.safetensors.index.json'), '{"weight_map": {"w": ""}}'), ['"w"']],
    [(d) => writeFileSync(join(d, 'model.safetensors.index.json'), '{"weight_map": {}, "metadata": 5}'), ['"metadata"']],
    [(d) => writeFileSync(join(d, 'model.safetensors.index.json'), Uint8Array.from([0x7b, 0xff, 0x7d])), ['UTF-8']],
    [(d) => writeFileSync(join(d, 'model.safetensors.index.json'), '{"weight_map": {"w": "../outside.safetensors"}}'), ['"w"', 'outside']],
    [(d) => writeFileSync(join(d, 'model.safetensors.index.json'), '{"weight_map": {"w": "/etc/passwd"}}'), ['"w"', 'outside']],
  ];
  for (const [mutate, parts] of cases) {
    const d = await sharded();
    mutate(d);
    await throwsLike(() => Checkpoint.open(d), FormatError, join(d, 'model.safetensors.index.json'), ...parts);
  }
  // A corrupt shard: the error names the shard file.
  const d = await sharded();
  writeFileSync(join(d, SHARD2), Uint8Array.from([1, 2, 3]));
  await throwsLike(() => Checkpoint.open(d), FormatError, join(d, SHARD2));
});

test('names like __proto__ work across shards', async () => {
  const d = join(root, 'proto');
  mkdirSync(d);
  await writeSafetensors(join(d, 'a.safetensors'), new Map([['__proto__', f32([1], 1)], ['toString', f32([1], 2)]]));
  await writeSafetensors(join(d, 'b.safetensors'), new Map([['constructor', f32([1], 3)], ['hasOwnProperty', f32([1], 4)]]));
  writeFileSync(
    join(d, 'model.safetensors.index.json'),
    '{"metadata":{"__proto__":{"polluted":true}},"weight_map":{"__proto__":"a.safetensors","toString":"a.safetensors",' +
      '"constructor":"b.safetensors","hasOwnProperty":"b.safetensors"}}',
  );
  const ck = await Checkpoint.open(d);
  assert.equal(ck.names().sort(), ['__proto__', 'constructor', 'hasOwnProperty', 'toString']);
  assert.equal(Array.from((await ck.read('__proto__')).data), [1]);
  assert.equal(Array.from((await ck.read('constructor')).data), [3]);
  assert.equal(Array.from((await ck.read('hasOwnProperty')).data), [4]);
  assert.is(ck.shardOf('toString'), join(d, 'a.safetensors'));
  assert.is(({} as Record<string, unknown>).polluted, undefined);
  await ck.close();
});

test('failed opens close every file handle they opened', async () => {
  // Track every FileHandle opened through fs.promises.open and every close.
  const live = new Set<object>();
  let opened = 0;
  const originalOpen = fsp.open;
  (fsp as { open: unknown }).open = async (...args: Parameters<typeof fsp.open>) => {
    const h = await originalOpen(...args);
    live.add(h);
    opened++;
    const close = h.close;
    h.close = () => {
      live.delete(h);
      return close.call(h);
    };
    return h;
  };
  try {
    const d = await sharded((ix) => {
      ix.weight_map['x'] = SHARD2; // both shards open fine, then validation fails
    });
    opened = 0;
    await throwsLike(() => Checkpoint.open(d), FormatError, '"x"');
    assert.is(opened, 2, 'both shards were opened');
    assert.is(live.size, 0, 'and both were closed');
    const e = await sharded();
    writeFileSync(join(e, SHARD2), Uint8Array.from([1, 2, 3]));
    await throwsLike(() => Checkpoint.open(e), FormatError, SHARD2);
    const bad = join(root, 'bad.safetensors');
    writeFileSync(bad, Uint8Array.from([200, 0, 0, 0, 0, 0, 0, 0, 0x7b]));
    await throwsLike(() => SafetensorsFile.open(bad), FormatError, bad);
    assert.is(live.size, 0, 'no handle is left open after failed opens');
    const ok = await Checkpoint.open(d.replace(/ckpt-\d+$/, 'single'));
    assert.is(live.size, 1);
    await ok.close();
    assert.is(live.size, 0);
  } finally {
    (fsp as { open: unknown }).open = originalOpen;
  }
});

test('lazy reads: opening reads only the header, a tensor read touches only its byte range', async () => {
  const n = 2 * 1024 * 1024; // 8 MB of f32
  const big = new Float32Array(n);
  for (let i = 0; i < n; i++) big[i] = i % 1000;
  const path = join(root, 'big.safetensors');
  await writeSafetensors(path, { big: { dtype: 'f32', shape: [2048, 1024], data: big }, small: f32([4], 1, 2, 3, 4) });

  // Spy on every positional read of every FileHandle.
  const probe = await fsp.open(path, 'r');
  const proto = Object.getPrototypeOf(probe) as { read: (...a: unknown[]) => Promise<{ bytesRead: number }> };
  await probe.close();
  const original = proto.read;
  const reads: { position: number; length: number }[] = [];
  proto.read = function (this: unknown, ...args: unknown[]) {
    reads.push({ length: args[2] as number, position: args[3] as number });
    return original.apply(this, args);
  };
  try {
    const f = await SafetensorsFile.open(path, { chunkBytes: 1024 * 1024 });
    const headerEnd = f.header.dataStart;
    assert.equal(reads, [
      { position: 0, length: 8 },
      { position: 8, length: headerEnd - 8 },
    ]);
    reads.length = 0;
    const small = f.entry('small');
    assert.equal(Array.from((await f.read('small')).data), [1, 2, 3, 4]);
    assert.equal(reads, [{ position: small.byteOffset, length: 16 }], 'only the small tensor\'s 16 bytes are read');
    const e = f.entry('big');
    assert.ok(small.byteOffset >= e.byteOffset + e.byteLength || small.byteOffset + 16 <= e.byteOffset);

    reads.length = 0;
    const r = await f.read('big');
    assert.is(reads.length, 8, 'an 8 MiB tensor in 1 MiB chunks');
    assert.is(reads[0]!.position, e.byteOffset);
    assert.is(reads.reduce((s, x) => s + x.length, 0), e.byteLength);
    assert.is(r.data.length, n);
    for (let i = 0; i < n; i += 9973) assert.is(r.data[i], i % 1000);
    assert.is(r.data[n - 1], (n - 1) % 1000);
    await f.close();
  } finally {
    proto.read = original;
  }
});

test.run();
