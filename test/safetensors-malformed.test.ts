// safetensors: every malformed file is refused with a FormatError naming the file and the tensor, in memory and
// on disk, without crashing or allocating for sizes the header merely claims.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FormatError, LaviError } from '../core/errors.js';
import { SafetensorsFile, encodeSafetensors, validateHeader, type HostTensor } from '../core/safetensors/index.js';
import { createRng } from '../core/rng.js';

const dir = mkdtempSync(join(tmpdir(), 'lavi-st-bad-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

/** Builds a file: length prefix (the header's byte length unless `n` is given), header text, data. */
function rawFile(header: string | object, data: Uint8Array | number = 0, n?: bigint): Uint8Array {
  const hb = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const d = typeof data === 'number' ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + hb.length + d.length);
  new DataView(out.buffer).setBigUint64(0, n ?? BigInt(hb.length), true);
  out.set(hb, 8);
  out.set(d, 8 + hb.length);
  return out;
}

const ent = (dtype: unknown, shape: unknown, begin: unknown, end: unknown) => ({ dtype, shape, data_offsets: [begin, end] });

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

let fileNo = 0;
/** The file must be refused both from memory and from disk, each message naming the source and `parts`. */
async function refused(bytes: Uint8Array, ...parts: string[]): Promise<void> {
  await throwsLike(() => SafetensorsFile.fromBytes(bytes), FormatError, '<memory>', ...parts);
  const path = join(dir, `bad-${fileNo++}.safetensors`);
  writeFileSync(path, bytes);
  await throwsLike(() => SafetensorsFile.open(path), FormatError, path, ...parts);
}

const good = (): Uint8Array =>
  encodeSafetensors({
    a: { dtype: 'f32', shape: [2, 2], data: Float32Array.from([1, 2, 3, 4]) },
    b: { dtype: 'i32', shape: [3], data: Int32Array.from([5, 6, 7]) },
  });

test('truncated files', async () => {
  const bytes = good();
  await refused(bytes.subarray(0, bytes.length - 1), 'tensor "b"', 'past the end'); // last tensor cut short
  await refused(bytes.subarray(0, bytes.length - 12), 'past the end');
  await refused(bytes.subarray(0, 20), 'header length', 'past the end'); // header cut short
  await refused(bytes.subarray(0, 8), 'past the end');
  await refused(bytes.subarray(0, 5), '5 bytes', '8-byte');
  await refused(new Uint8Array(0), '0 bytes');
  await refused(rawFile('{}', 0, 3n), 'header length 3 runs past the end'); // N < header: prefix claims more
});

test('header length over the cap, including absurd u64 values', async () => {
  await refused(rawFile('{}', 0, 200_000_000n), '200000000', 'exceeds', '100000000');
  await refused(rawFile('{}', 0, 2n ** 64n - 1n), '18446744073709551615', 'exceeds');
  await refused(rawFile('{}', 0, 2n ** 53n + 1n), 'exceeds');
  // A smaller cap as an option.
  const bytes = good();
  await throwsLike(() => SafetensorsFile.fromBytes(bytes, { maxHeaderBytes: 16 }), FormatError, '<memory>', 'maxHeaderBytes');
});

test('invalid UTF-8, invalid JSON, non-object JSON', async () => {
  const hb = Uint8Array.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d]); // {"\xff\xfe":1}
  const bytes = new Uint8Array(8 + hb.length);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(hb.length), true);
  bytes.set(hb, 8);
  await refused(bytes, 'UTF-8');
  await refused(rawFile('{"a": {"dtype": "F32",'), 'not valid JSON');
  await refused(rawFile(''), "starting with '{'");
  await refused(rawFile('[1, 2]'), "starting with '{'");
  await refused(rawFile('"x"'), "starting with '{'");
  await refused(rawFile(' {}'), "starting with '{'"); // like the reference: the header must begin with '{'
  await refused(rawFile('\ufeff{}'), "starting with '{'"); // a BOM is not '{'
  await refused(rawFile('{} trailing'), 'not valid JSON');
  assert.throws(() => validateHeader([], 2, 10, 'h.safetensors'), (e: unknown) => e instanceof FormatError && /h\.safetensors.*an array/.test(e.message));
  assert.throws(() => validateHeader(null, 2, 10, 'h.safetensors'), (e: unknown) => e instanceof FormatError && /null/.test(e.message));
});

test('entries with missing fields or wrong types', async () => {
  const cases: [object, string[]][] = [
    [{ w: 5 }, ['tensor "w"', 'must be an object']],
    [{ w: [1] }, ['tensor "w"', 'an array']],
    [{ w: null }, ['tensor "w"', 'null']],
    [{ w: { shape: [1], data_offsets: [0, 4] } }, ['tensor "w"', 'no "dtype"']],
    [{ w: { dtype: 'F32', data_offsets: [0, 4] } }, ['tensor "w"', 'no "shape"']],
    [{ w: { dtype: 'F32', shape: [1] } }, ['tensor "w"', 'no "data_offsets"']],
    [{ w: ent(32, [1], 0, 4) }, ['tensor "w"', '"dtype" must be a string']],
    [{ w: ent('F33', [1], 0, 4) }, ['tensor "w"', 'unknown dtype "F33"']],
    [{ w: ent('f32', [1], 0, 4) }, ['tensor "w"', 'unknown dtype "f32"']],
    [{ w: ent('F32', 4, 0, 4) }, ['tensor "w"', '"shape" must be an array']],
    [{ w: ent('F32', [-1], 0, 4) }, ['tensor "w"', 'dimension 0 is -1']],
    [{ w: ent('F32', [2, 1.5], 0, 12) }, ['tensor "w"', 'dimension 1 is 1.5']],
    [{ w: ent('F32', ['2'], 0, 8) }, ['tensor "w"', 'dimension 0 is the string "2"']],
    [{ w: ent('F32', [null], 0, 8) }, ['tensor "w"', 'dimension 0 is null']],
    [{ w: ent('F32', [2 ** 53], 0, 4) }, ['tensor "w"', 'dimension 0 is 9007199254740992']],
    [{ w: { dtype: 'F32', shape: [1], data_offsets: [0] } }, ['tensor "w"', '[begin, end]']],
    [{ w: { dtype: 'F32', shape: [1], data_offsets: [0, 4, 8] } }, ['tensor "w"', '[begin, end]']],
    [{ w: { dtype: 'F32', shape: [1], data_offsets: { begin: 0 } } }, ['tensor "w"', '[begin, end]']],
    [{ w: ent('F32', [1], -4, 0) }, ['tensor "w"', 'non-negative']],
    [{ w: ent('F32', [1], 0, '4') }, ['tensor "w"', 'non-negative']],
    [{ w: ent('F32', [1], 0.5, 4.5) }, ['tensor "w"', 'non-negative']],
    [{ w: ent('F32', [0], 4, 0) }, ['tensor "w"', 'end before they begin']],
  ];
  for (const [header, parts] of cases) await refused(rawFile(header, 4), ...parts);
});

test('byte length must equal dtype size × element count', async () => {
  await refused(rawFile({ w: ent('F32', [2, 3], 0, 20) }, 20), 'tensor "w"', 'dtype F32 with shape [2, 3] needs 24 bytes', 'hold 20');
  await refused(rawFile({ w: ent('BF16', [4], 0, 16) }, 16), 'tensor "w"', 'needs 8 bytes');
  await refused(rawFile({ w: ent('F32', [], 0, 0) }, 0), 'tensor "w"', 'needs 4 bytes'); // a scalar has one element
  await refused(rawFile({ w: ent('F32', [0], 0, 4) }, 4), 'tensor "w"', 'needs 0 bytes');
  await refused(rawFile({ w: ent('F4', [3], 0, 2) }, 2), 'tensor "w"', 'byte boundary'); // 12 bits
});

test('absurd dimensions fail before any allocation', async () => {
  await refused(rawFile({ huge: ent('F32', [1e9, 1e9], 0, 4) }, 4), 'tensor "huge"', 'more than 2^53 − 1 elements');
  await refused(rawFile({ huge: ent('U8', [2 ** 40, 2 ** 40], 0, 4) }, 4), 'tensor "huge"', '[1099511627776, 1099511627776]', 'elements');
  await refused(rawFile({ huge: ent('F64', [2 ** 26, 2 ** 26], 0, 4) }, 4), 'tensor "huge"', 'more than 2^53 − 1 bytes');
  // Representable but enormous: refused because the offsets cannot hold it.
  await refused(rawFile({ huge: ent('F32', [1e6, 1e6], 0, 4e12) }, 4), 'tensor "huge"', 'past the end');
  await refused(rawFile({ huge: ent('F32', [1e6, 1e6], 0, 4) }, 4), 'tensor "huge"', 'needs 4000000000000 bytes');
  // A zero dimension makes the tensor empty whatever the others are.
  const f = SafetensorsFile.fromBytes(rawFile({ z: ent('F32', [0, 2 ** 52, 2 ** 52], 0, 0) }, 0));
  assert.is((await f.read('z')).data.length, 0);
});

test('offsets that overlap, leave holes, do not cover the data, or run past the end', async () => {
  await refused(rawFile({ a: ent('F32', [2], 0, 8), b: ent('F32', [2], 4, 12) }, 12), 'tensor "b"', 'overlap tensor "a"');
  await refused(rawFile({ a: ent('F32', [2], 0, 8), b: ent('F32', [2], 0, 8) }, 8), 'overlap');
  await refused(rawFile({ a: ent('F32', [2], 0, 8), z: ent('F32', [0], 4, 4) }, 8), 'tensor "z"', 'overlap tensor "a"');
  await refused(rawFile({ a: ent('F32', [1], 0, 4), b: ent('F32', [1], 8, 12) }, 12), 'tensor "b"', 'hole of 4 bytes', 'after tensor "a"');
  await refused(rawFile({ a: ent('F32', [1], 4, 8) }, 8), 'tensor "a"', 'hole of 4 bytes', 'start of the data section');
  await refused(rawFile({ a: ent('F32', [1], 0, 4) }, 7), '3 bytes after the last tensor "a"', 'not covered');
  await refused(rawFile({}, 4), '4 bytes after a header with no tensors');
  await refused(rawFile({ a: ent('F32', [1], 0, 4), b: ent('F32', [1], 4, 8) }, 6), 'tensor "b"', '[4, 8]', 'past the end', '6 bytes');
  await refused(rawFile({ a: ent('F32', [1], 2 ** 50, 2 ** 50 + 4) }, 4), 'tensor "a"', 'past the end');
  // Out of order in the header but tiling the data: fine.
  const f = SafetensorsFile.fromBytes(rawFile({ b: ent('F32', [1], 4, 8), a: ent('F32', [1], 0, 4) }, 8));
  assert.equal(f.names(), ['a', 'b']);
});

test('__metadata__ must be a string → string map; a tensor may not be listed twice', async () => {
  const w = ent('F32', [1], 0, 4);
  await refused(rawFile({ __metadata__: 'x', w }, 4), '__metadata__', 'the string "x"');
  await refused(rawFile({ __metadata__: ['a'], w }, 4), '__metadata__', 'an array');
  await refused(rawFile({ __metadata__: { n: 3 }, w }, 4), '__metadata__', 'key "n"', 'number 3');
  await refused(rawFile({ __metadata__: { o: { a: 'b' } }, w }, 4), '__metadata__', 'key "o"');
  assert.equal({ ...SafetensorsFile.fromBytes(rawFile({ __metadata__: null, w }, 4)).metadata }, {});
  await refused(rawFile('{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}}', 4), 'tensor "w"', 'listed twice');
  await refused(rawFile('{"\\u0077":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}, "w" : {"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', 4), 'tensor "w"', 'listed twice');
  // Nested keys and tricky strings do not confuse the duplicate scan.
  const ok = '{"a\\"}{":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":{"a":1,"a":[{"}":"]"}]}},"b":{"dtype":"F32","shape":[],"data_offsets":[4,8]}}';
  assert.equal(SafetensorsFile.fromBytes(rawFile(ok, 8)).names(), ['a"}{', 'b']);
});

test('prototype-like names in a raw header read back correctly, and pollute nothing', async () => {
  const protoBefore = Object.getOwnPropertyNames(Object.prototype).sort();
  const names = ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf', '__defineGetter__'];
  const parts = names.map((n, i) => `${JSON.stringify(n)}:{"dtype":"I32","shape":[1],"data_offsets":[${4 * i},${4 * i + 4}]}`);
  const meta = '"__metadata__":{"__proto__":"x","constructor":"y"}';
  const data = new Uint8Array(Int32Array.from(names.map((_, i) => 100 + i)).buffer);
  const f = SafetensorsFile.fromBytes(rawFile(`{${meta},${parts.join(',')}}`, data));
  assert.equal(f.names(), names);
  for (const [i, n] of names.entries()) {
    assert.equal(Array.from((await f.read(n)).data), [100 + i], n);
    assert.is(f.entry(n).name, n);
  }
  assert.is(f.metadata['__proto__'], 'x');
  assert.is(f.metadata['constructor'], 'y');
  // An entry object with a __proto__ field is still just an entry with an unknown (ignored) field.
  const g = SafetensorsFile.fromBytes(rawFile('{"w":{"__proto__":{"dtype":"I8"},"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', 4));
  assert.is(g.entry('w').dtype, 'F32');
  // Fields inherited from Object.prototype are not fields: "constructor" is not a dtype.
  await refused(rawFile('{"w":{"__proto__":{"dtype":"F32"},"shape":[1],"data_offsets":[0,4]}}', 4), 'no "dtype"');
  assert.equal(Object.getOwnPropertyNames(Object.prototype).sort(), protoBefore);
  assert.is(({} as Record<string, unknown>).dtype, undefined);
  assert.is(({} as Record<string, unknown>).shape, undefined);
  assert.is(Object.getPrototypeOf({}), Object.prototype);
});

test('fuzz: every truncation and random byte corruptions fail with a LaviError or read cleanly', async () => {
  const tensors: [string, HostTensor][] = [
    ['w', { dtype: 'f32', shape: [3, 2], data: Float32Array.from([1, 2, 3, 4, 5, 6]) }],
    ['h', { dtype: 'bf16', shape: [2], data: Uint16Array.from([0x3f80, 0x4000]) }],
    ['s', { dtype: 'i32', shape: [], data: Int32Array.from([9]) }],
  ];
  const base = encodeSafetensors(tensors, { k: 'v' });
  const attempt = async (bytes: Uint8Array): Promise<'ok' | 'error'> => {
    try {
      const f = SafetensorsFile.fromBytes(bytes);
      for (const n of f.names()) {
        await f.read(n);
        await f.read(n, { keepPacked: true, allowLossy: true });
      }
      return 'ok';
    } catch (e) {
      if (!(e instanceof LaviError)) throw new Error(`not a LaviError: ${String(e)}`);
      return 'error';
    }
  };
  for (let len = 0; len < base.length; len++) assert.is(await attempt(base.subarray(0, len)), 'error', `truncated to ${len}`);
  const rand = createRng(12345).next;
  let errors = 0;
  for (let i = 0; i < 600; i++) {
    const b = base.slice();
    const flips = 1 + Math.floor(rand() * 3);
    for (let k = 0; k < flips; k++) {
      // Mostly hit the prefix and header, where the structure is.
      const pos = rand() < 0.85 ? Math.floor(rand() * (base.length - 24)) : Math.floor(rand() * base.length);
      b[pos] = Math.floor(rand() * 256);
    }
    if ((await attempt(b)) === 'error') errors++;
  }
  assert.ok(errors > 300, `most corruptions should be caught (${errors}/600)`);
});

test.run();
