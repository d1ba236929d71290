// safetensors: round trips for every dtype, the read options, the writer's layout and its error handling.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readdirSync, readFileSync, rmSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { narrowFromF32, widenToF32 } from '../core/dtype.js';
import { DTypeError, FormatError, ValueError } from '../core/errors.js';
import {
  SafetensorsFile,
  decodeTensor,
  encodeSafetensors,
  writeSafetensors,
  type HostTensor,
} from '../core/safetensors/index.js';

const dir = mkdtempSync(join(tmpdir(), 'lavi-st-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

/** Builds a file from a header (JSON text or a value to stringify) and a data section. */
function rawFile(header: string | object, data: Uint8Array | number[] = []): Uint8Array {
  const hb = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const d = data instanceof Uint8Array ? data : Uint8Array.from(data);
  const out = new Uint8Array(8 + hb.length + d.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(hb.length), true);
  out.set(hb, 8);
  out.set(d, 8 + hb.length);
  return out;
}

/** Little-endian bytes of BigInt64 values. */
function i64Bytes(values: bigint[]): Uint8Array {
  const out = new Uint8Array(values.length * 8);
  const dv = new DataView(out.buffer);
  values.forEach((v, i) => dv.setBigInt64(i * 8, v, true));
  return out;
}

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

const t = (dtype: HostTensor['dtype'], shape: number[], data: HostTensor['data']): HostTensor => ({ dtype, shape, data });

test('f32 and i32 round trip through bytes and through a file, with metadata', async () => {
  const w = t('f32', [2, 3], Float32Array.from([1, -2.5, 3e-8, Infinity, -0, 1e30]));
  const ids = t('i32', [4], Int32Array.from([0, -1, 2 ** 31 - 1, -(2 ** 31)]));
  const meta = { format: 'pt', note: 'héllo ✓' };
  const bytes = encodeSafetensors({ w, ids }, meta);
  const path = join(dir, 'roundtrip.safetensors');
  await writeSafetensors(path, new Map([['w', w], ['ids', ids]]), meta);
  assert.equal(new Uint8Array(readFileSync(path)), bytes, 'file and in-memory encodings agree');

  for (const f of [SafetensorsFile.fromBytes(bytes), await SafetensorsFile.open(path)]) {
    assert.equal({ ...f.metadata }, meta);
    assert.equal(f.names().sort(), ['ids', 'w']);
    const rw = await f.read('w');
    assert.is(rw.dtype, 'f32');
    assert.equal(rw.shape, [2, 3]);
    assert.instance(rw.data, Float32Array);
    assert.equal(Array.from(rw.data), Array.from(w.data));
    assert.ok(Object.is(rw.data[4], -0), 'negative zero survives');
    const ri = await f.read('ids');
    assert.is(ri.dtype, 'i32');
    assert.instance(ri.data, Int32Array);
    assert.equal(Array.from(ri.data), Array.from(ids.data));
    const e = f.entry('w');
    assert.is(e.dtype, 'F32');
    assert.equal([...e.shape], [2, 3]);
    assert.is(e.byteLength, 24);
    assert.is(e.size, 6);
    assert.is(e.file, f.path);
    assert.is(bytes[e.byteOffset], new Uint8Array(w.data.buffer)[0]);
    await f.close();
  }
});

for (const kind of ['f16', 'bf16'] as const) {
  test(`${kind} round trip: packed bits and widened values`, async () => {
    const n = 5000; // above the size where the f16 lookup table is used
    const values = new Float32Array(n);
    const special = [0, -0, 1, -2, 0.5, 65504, 2 ** -24, 1e-3, Infinity, -Infinity, NaN, 3.140625];
    for (let i = 0; i < n; i++) values[i] = i < special.length ? special[i]! : Math.sin(i) * 100;
    const bits = narrowFromF32(values, kind);
    const bytes = encodeSafetensors([['x', t(kind, [50, 100], bits)], ['s', t(kind, [3], bits.slice(0, 3))]]);
    const f = SafetensorsFile.fromBytes(bytes);
    assert.is(f.entry('x').dtype, kind === 'f16' ? 'F16' : 'BF16');

    const packed = await f.read('x', { keepPacked: true });
    assert.is(packed.dtype, kind);
    assert.instance(packed.data, Uint16Array);
    assert.equal(Array.from(packed.data), Array.from(bits));

    const wide = await f.read('x');
    assert.is(wide.dtype, 'f32');
    assert.instance(wide.data, Float32Array);
    assert.equal(wide.shape, [50, 100]);
    const expected = widenToF32(bits, kind);
    for (let i = 0; i < n; i++) {
      const a = wide.data[i]!;
      const b = expected[i]!;
      if (!(Object.is(a, b) || (Number.isNaN(a) && Number.isNaN(b)))) assert.unreachable(`element ${i}: ${a} vs ${b}`);
    }
    assert.is(wide.data[5], kind === 'f16' ? 65504 : 65536); // 65504 rounds to 65536 in bf16
    assert.ok(Number.isNaN(wide.data[10]!));
    // small tensors take the direct conversion path
    assert.equal(Array.from((await f.read('s')).data), Array.from(expected.slice(0, 3)));

    // keepPacked as a file-level default, overridable per read
    const g = SafetensorsFile.fromBytes(bytes, { keepPacked: true });
    assert.is((await g.read('s')).dtype, kind);
    assert.is((await g.read('s', { keepPacked: false })).dtype, 'f32');
  });
}

test('I64 → i32 when every value fits; out of range names the tensor and the first bad value', async () => {
  const ok = [0n, -1n, 2147483647n, -2147483648n, 42n];
  const bytes = rawFile({ ids: { dtype: 'I64', shape: [5], data_offsets: [0, 40] } }, i64Bytes(ok));
  const r = await SafetensorsFile.fromBytes(bytes).read('ids');
  assert.is(r.dtype, 'i32');
  assert.instance(r.data, Int32Array);
  assert.equal(Array.from(r.data), ok.map(Number));

  for (const bad of [2147483648n, -2147483649n, 2n ** 62n, -(2n ** 63n)]) {
    const b = rawFile({ pos: { dtype: 'I64', shape: [3], data_offsets: [0, 24] } }, i64Bytes([1n, bad, 3n]));
    await throwsLike(() => SafetensorsFile.fromBytes(b).read('pos'), FormatError, '<memory>', '"pos"', String(bad), 'index 1');
  }
  const path = join(dir, 'i64.safetensors');
  writeFileSync(path, rawFile({ pos: { dtype: 'I64', shape: [1], data_offsets: [0, 8] } }, i64Bytes([2n ** 40n])));
  const f = await SafetensorsFile.open(path);
  await throwsLike(() => f.read('pos'), FormatError, path, '"pos"', String(2n ** 40n));
  await f.close();
});

test('U8 and BOOL → i32; BOOL bytes other than 0/1 are an error', async () => {
  const bytes = rawFile(
    {
      mask: { dtype: 'BOOL', shape: [2, 2], data_offsets: [0, 4] },
      px: { dtype: 'U8', shape: [3], data_offsets: [4, 7] },
    },
    [1, 0, 0, 1, 0, 255, 7],
  );
  const f = SafetensorsFile.fromBytes(bytes);
  const m = await f.read('mask');
  assert.is(m.dtype, 'i32');
  assert.instance(m.data, Int32Array);
  assert.equal(Array.from(m.data), [1, 0, 0, 1]);
  const p = await f.read('px');
  assert.is(p.dtype, 'i32');
  assert.equal(Array.from(p.data), [0, 255, 7]);

  const bad = rawFile({ mask: { dtype: 'BOOL', shape: [3], data_offsets: [0, 3] } }, [0, 1, 2]);
  await throwsLike(() => SafetensorsFile.fromBytes(bad).read('mask'), FormatError, '<memory>', '"mask"', 'index 2', 'is 2');
});

test('F64 needs allowLossy; other known dtypes are unsupported with a DTypeError', async () => {
  const vals = new Float64Array([1 / 3, -1e300, 2.5, 1e-320]);
  const bytes = rawFile({ d: { dtype: 'F64', shape: [4], data_offsets: [0, 32] } }, new Uint8Array(vals.buffer));
  const f = SafetensorsFile.fromBytes(bytes);
  await throwsLike(() => f.read('d'), DTypeError, 'unsupported dtype F64 for tensor "d" in <memory>', 'allowLossy');
  const r = await f.read('d', { allowLossy: true });
  assert.is(r.dtype, 'f32');
  assert.instance(r.data, Float32Array);
  assert.equal(Array.from(r.data), [Math.fround(1 / 3), -Infinity, 2.5, 0]);
  assert.is((await SafetensorsFile.fromBytes(bytes, { allowLossy: true }).read('d')).dtype, 'f32');

  const sizes: Record<string, number> = { I8: 1, I16: 2, U16: 2, U32: 4, U64: 8, F8_E4M3: 1, F8_E5M2: 1, C64: 8 };
  for (const [dt, size] of Object.entries(sizes)) {
    const b = rawFile(
      { q: { dtype: dt, shape: [2], data_offsets: [0, 2 * size] }, ok: { dtype: 'F32', shape: [], data_offsets: [2 * size, 2 * size + 4] } },
      new Uint8Array(2 * size + 4),
    );
    const g = SafetensorsFile.fromBytes(b); // a file with an unsupported dtype still opens
    await throwsLike(() => g.read('q'), DTypeError, `unsupported dtype ${dt} for tensor "q" in <memory>`);
    assert.equal(Array.from((await g.read('ok')).data), [0]);
  }
  const path = join(dir, 'i8.safetensors');
  writeFileSync(path, rawFile({ q: { dtype: 'I8', shape: [1], data_offsets: [0, 1] } }, [5]));
  const h = await SafetensorsFile.open(path);
  await throwsLike(() => h.read('q'), DTypeError, `unsupported dtype I8 for tensor "q" in ${path}`);
  await h.close();
});

test('scalars and zero-size tensors', async () => {
  const tensors: [string, HostTensor][] = [
    ['scalar', t('f32', [], Float32Array.from([7.5]))],
    ['empty', t('f32', [0], new Float32Array(0))],
    ['empty3', t('i32', [3, 0, 2], new Int32Array(0))],
    ['half_scalar', t('bf16', [], narrowFromF32(Float32Array.from([-3]), 'bf16'))],
    ['half_empty', t('f16', [0, 4], new Uint16Array(0))],
  ];
  const path = join(dir, 'scalars.safetensors');
  await writeSafetensors(path, tensors);
  const f = await SafetensorsFile.open(path);
  const s = await f.read('scalar');
  assert.equal(s.shape, []);
  assert.equal(Array.from(s.data), [7.5]);
  assert.is(f.entry('scalar').size, 1);
  for (const name of ['empty', 'empty3', 'half_empty']) {
    const r = await f.read(name);
    assert.is(r.data.length, 0);
    assert.is(f.entry(name).byteLength, 0);
  }
  assert.equal((await f.read('empty3')).shape, [3, 0, 2]);
  assert.equal(Array.from((await f.read('half_scalar')).data), [-3]);
  await f.close();

  // Several zero-size tensors may share an offset, even between two non-empty ones.
  const b = rawFile(
    {
      a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] },
      z1: { dtype: 'F32', shape: [0], data_offsets: [4, 4] },
      z2: { dtype: 'I64', shape: [0, 9], data_offsets: [4, 4] },
      c: { dtype: 'F32', shape: [1], data_offsets: [4, 8] },
    },
    new Uint8Array(8),
  );
  const g = SafetensorsFile.fromBytes(b);
  assert.equal(g.names(), ['a', 'z1', 'z2', 'c']);
  assert.is((await g.read('z2')).data.length, 0);

  // A file with no tensors at all.
  const none = SafetensorsFile.fromBytes(encodeSafetensors([], { k: 'v' }));
  assert.equal(none.names(), []);
  assert.is(none.metadata.k, 'v');
});

test('reads the reference implementation\'s documented example file', async () => {
  const json = '{"test":{"dtype":"I32","shape":[2,2],"data_offsets":[0,16]}}';
  assert.is(json.length, 60); // the '<' (0x3c) length prefix of the example
  const bytes = rawFile(json, Uint8Array.from([1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]));
  assert.is(bytes[0], 0x3c);
  const r = await SafetensorsFile.fromBytes(bytes).read('test');
  assert.equal(r.shape, [2, 2]);
  assert.equal(Array.from(r.data), [1, 2, 3, -1]);
});

test('writer layout: exact header text, space padding to 8 bytes, aligned data, sorted by size then name', () => {
  const bytes = encodeSafetensors(
    [
      ['a', t('f16', [3], Uint16Array.from([0x3c00, 0x4000, 0xc000]))],
      ['z', t('f32', [1], Float32Array.from([1]))],
      ['b', t('i32', [1], Int32Array.from([7]))],
    ],
    { format: 'numpy' },
  );
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  const json =
    '{"__metadata__":{"format":"numpy"},"b":{"dtype":"I32","shape":[1],"data_offsets":[0,4]},' +
    '"z":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},"a":{"dtype":"F16","shape":[3],"data_offsets":[8,14]}}';
  assert.ok(json.length % 8 !== 0, 'the test needs a header that is not already a multiple of 8');
  assert.is(n, Math.ceil(json.length / 8) * 8);
  const text = new TextDecoder().decode(bytes.subarray(8, 8 + n));
  assert.is(text, json + ' '.repeat(n - json.length));
  assert.equal(Array.from(bytes.subarray(8 + n)), [7, 0, 0, 0, 0, 0, 0x80, 0x3f, 0x00, 0x3c, 0x00, 0x40, 0x00, 0xc0]);
  assert.is(bytes.length, 8 + n + 14);
});

test('writer refuses bad tensors and metadata, and never leaves a partial file', async () => {
  const good = t('f32', [2], Float32Array.from([1, 2]));
  await throwsLike(() => encodeSafetensors({ w: t('f32', [3], new Float32Array(2)) }), ValueError, '"w"', '[3]', '3 elements');
  await throwsLike(() => encodeSafetensors({ w: t('f32', [2], new Int32Array(2)) }), DTypeError, '"w"', 'Float32Array');
  await throwsLike(() => encodeSafetensors({ w: t('f16', [2], new Float32Array(2)) }), DTypeError, '"w"', 'Uint16Array');
  await throwsLike(() => encodeSafetensors({ w: t('f32', [-2], new Float32Array(2)) }), ValueError, '"w"');
  await throwsLike(() => encodeSafetensors({ w: { ...good, dtype: 'f64' as never } }), ValueError, '"w"', 'f64');
  await throwsLike(() => encodeSafetensors([['w', good], ['w', good]]), ValueError, '"w"', 'twice');
  await throwsLike(() => encodeSafetensors([['__metadata__', good]]), ValueError, '__metadata__');
  await throwsLike(() => encodeSafetensors({ w: good }, { v: 3 as never }), ValueError, 'metadata');

  const path = join(dir, 'atomic.safetensors');
  await writeSafetensors(path, { w: good });
  const before = readFileSync(path);
  await throwsLike(() => writeSafetensors(path, { w: t('f32', [5], new Float32Array(2)) }), ValueError, '"w"');
  assert.equal(readFileSync(path), before, 'a failed write leaves the old file untouched');

  // A failure after the data was written (the rename fails: the target is a non-empty directory).
  const sub = join(dir, 'atomic-dir');
  mkdirSync(join(sub, 'target.safetensors'), { recursive: true });
  writeFileSync(join(sub, 'target.safetensors', 'keep'), 'x');
  let threw = false;
  try {
    await writeSafetensors(join(sub, 'target.safetensors'), { w: good });
  } catch {
    threw = true;
  }
  assert.ok(threw, 'renaming over a directory fails');
  assert.equal(readdirSync(sub), ['target.safetensors'], 'no temporary file is left behind');
  assert.equal(readdirSync(dir).filter((f) => f.endsWith('.tmp')), []);
});

test('names that look like Object.prototype members are ordinary names (writer and reader)', async () => {
  const protoBefore = Object.getOwnPropertyNames(Object.prototype).sort();
  const names = ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf', '__metadata'];
  const tensors = new Map<string, HostTensor>(names.map((n, i) => [n, t('f32', [2], Float32Array.from([i, -i]))]));
  const meta = Object.create(null) as Record<string, string>;
  meta['__proto__'] = 'p';
  meta['constructor'] = 'c';
  const bytes = encodeSafetensors(tensors, meta);
  const f = SafetensorsFile.fromBytes(bytes);
  assert.equal(f.names().sort(), [...names].sort());
  for (const [i, n] of names.entries()) {
    assert.ok(f.has(n));
    assert.equal(Array.from((await f.read(n)).data), [i, -i], n);
  }
  assert.equal(Object.keys(f.metadata).sort(), ['__proto__', 'constructor']);
  assert.is(f.metadata['__proto__'], 'p');
  assert.is(f.has('isPrototypeOf'), false);
  await throwsLike(() => f.read('isPrototypeOf'), ValueError, 'no tensor named "isPrototypeOf"');
  const plain: Record<string, unknown> = {};
  assert.is(Object.getPrototypeOf(plain), Object.prototype);
  assert.is(plain.dtype, undefined);
  assert.is(plain.data_offsets, undefined);
  assert.equal(Object.getOwnPropertyNames(Object.prototype).sort(), protoBefore, 'Object.prototype is untouched');
  assert.is(typeof plain.toString, 'function');
});

test('unknown tensor name: ValueError listing the closest names', async () => {
  const tensors = new Map<string, HostTensor>();
  for (let i = 0; i < 20; i++) tensors.set(`model.layers.${i}.mlp.weight`, t('f32', [1], new Float32Array(1)));
  tensors.set('lm_head.weight', t('f32', [1], new Float32Array(1)));
  const f = SafetensorsFile.fromBytes(encodeSafetensors(tensors));
  const e = await throwsLike(() => f.read('model.layers.13.mlp.weigth'), ValueError, '<memory>', '"model.layers.13.mlp.weigth"', '21 tensors');
  assert.ok(e.message.includes('"model.layers.13.mlp.weight"'), e.message);
  await throwsLike(() => f.entry('nope'), ValueError, '"nope"');
  await throwsLike(() => SafetensorsFile.fromBytes(encodeSafetensors([])).read('x'), ValueError, 'no tensors');
});

test('readRaw, unaligned input, independent results, closing', async () => {
  const w = t('f32', [3], Float32Array.from([1, 2, 3]));
  const bytes = encodeSafetensors({ w });
  // Place the file at an odd offset in a bigger buffer: reads must not assume alignment.
  const big = new Uint8Array(bytes.length + 1);
  big.set(bytes, 1);
  const f = SafetensorsFile.fromBytes(big.subarray(1));
  const r1 = await f.read('w');
  const r2 = await f.read('w');
  assert.equal(Array.from(r1.data), [1, 2, 3]);
  assert.is(r1.data.byteOffset % 4, 0);
  r1.data[0] = 99;
  assert.is(r2.data[0], 1, 'each read returns its own array');
  assert.is(big[f.entry('w').byteOffset + 1], 0, 'the source bytes are untouched');
  // Aligned input: results still must not alias the caller's bytes.
  const aligned = SafetensorsFile.fromBytes(bytes);
  const a1 = await aligned.read('w');
  a1.data[1] = 42;
  assert.equal(Array.from((await aligned.read('w')).data), [1, 2, 3]);
  assert.equal(bytes, encodeSafetensors({ w }), 'the caller\'s bytes are untouched');
  // A Node Buffer (whose own slice() is a view) is copied too.
  const path0 = join(dir, 'buffer.safetensors');
  await writeSafetensors(path0, { w });
  const nodeBuf = readFileSync(path0);
  assert.ok(Buffer.isBuffer(nodeBuf));
  // (cast: @types/node 20.9 declares Buffer in a way TS 5.9 does not accept as a Uint8Array)
  const fb = SafetensorsFile.fromBytes(nodeBuf as unknown as Uint8Array);
  const b1 = await fb.read('w');
  b1.data.fill(-1);
  assert.equal(Array.from((await fb.read('w')).data), [1, 2, 3]);
  const raw = await f.readRaw('w');
  assert.equal(Array.from(raw), Array.from(new Uint8Array(w.data.buffer)));

  const path = join(dir, 'close.safetensors');
  await writeSafetensors(path, { w });
  const g = await SafetensorsFile.open(path);
  await g.close();
  await g.close(); // idempotent
  await throwsLike(() => g.read('w'), ValueError, path, '"w"', 'closed');
  await throwsLike(() => SafetensorsFile.open(join(dir, 'missing.safetensors')), ValueError, 'missing.safetensors');
  await throwsLike(() => SafetensorsFile.open(dir), ValueError, dir);
});

test('maxTensorBytes: refuses before reading, names the tensor; options are checked', async () => {
  const w = t('f32', [256], new Float32Array(256)); // 1024 bytes
  const h = t('bf16', [256], new Uint16Array(256)); // 512 stored, 1024 widened
  const bytes = encodeSafetensors({ w, h });
  const path = join(dir, 'limit.safetensors');
  writeFileSync(path, bytes);
  const f = await SafetensorsFile.open(path, { maxTensorBytes: 1000 });
  await throwsLike(() => f.read('w'), FormatError, path, '"w"', '1024 bytes', 'maxTensorBytes');
  await throwsLike(() => f.read('h'), FormatError, path, '"h"', '1024 bytes');
  assert.is((await f.read('h', { keepPacked: true })).data.length, 256, 'packed bf16 needs only 512 bytes');
  assert.is((await f.read('w', { maxTensorBytes: 1024 })).data.length, 256);
  await throwsLike(() => f.readRaw('w'), FormatError, '"w"');
  await f.close();
  await throwsLike(() => SafetensorsFile.fromBytes(bytes).read('w', { maxTensorBytes: -1 }), ValueError, 'maxTensorBytes');
  await throwsLike(() => SafetensorsFile.fromBytes(bytes, { maxHeaderBytes: 1.5 }), ValueError, 'maxHeaderBytes');
});

test('decodeTensor checks the byte count and copies misaligned bytes', () => {
  const f = SafetensorsFile.fromBytes(encodeSafetensors({ w: t('f32', [2], new Float32Array(2)) }));
  assert.throws(() => decodeTensor(f.entry('w'), new Uint8Array(4)), (e: unknown) => e instanceof FormatError);
  // Misaligned input is decoded through a copy.
  const buf = new Uint8Array(9);
  buf.set(new Uint8Array(Float32Array.from([1.5, -2]).buffer), 1);
  const r = decodeTensor(f.entry('w'), buf.subarray(1));
  assert.equal(Array.from(r.data), [1.5, -2]);
  assert.is(r.data.byteOffset % 4, 0);
});

test.run();
