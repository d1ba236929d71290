// A small WebAssembly binary emitter: enough of the module format (types, one imported shared memory, functions,
// exports) and of the instruction set (integer/float scalar ops, structured control flow, 128-bit SIMD) to write
// the wasm backend's kernels in TypeScript and assemble them at run time. No toolchain, no text format.
//
// Code is built with small expression trees (`Expr`: a value type and a function that emits the instructions that
// push it) and imperative statements on a `FnBuilder` (set a local, store, loop, if). Expressions keep the kernels
// readable; the emitter stays a thin layer over the byte encoding, so what you write is what V8 compiles.
//
// Encoding reference: the WebAssembly core specification (binary format, §5) and the SIMD proposal's opcode table.
//
// This file: the byte writer, FnBuilder and ModuleBuilder; the instructions (Expr constructors) are in
// instructions.ts and re-exported here, so kernels import everything from './emitter.js'.

import { asF32, asI32, check, type Expr, type ExprLike, f32, i32, Local, type ValType } from './instructions.js';

export * from './instructions.js';

const VALTYPE: Record<ValType, number> = { i32: 0x7f, i64: 0x7e, f32: 0x7d, f64: 0x7c, v128: 0x7b };

// ---- byte writer with LEB128 -----------------------------------------------------------------------------

export class Bytes {
  private buf = new Uint8Array(256);
  length = 0;

  private ensure(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.length + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
  }

  u8(b: number): this {
    this.ensure(1);
    this.buf[this.length++] = b & 0xff;
    return this;
  }

  raw(bytes: ArrayLike<number>): this {
    this.ensure(bytes.length);
    for (let i = 0; i < bytes.length; i++) this.buf[this.length++] = bytes[i]! & 0xff;
    return this;
  }

  /** Unsigned LEB128 (values up to 2^32 − 1). */
  uleb(v: number): this {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`uleb: ${v} is not a u32`);
    do {
      let b = v % 128;
      v = Math.floor(v / 128);
      if (v !== 0) b |= 0x80;
      this.u8(b);
    } while (v !== 0);
    return this;
  }

  /** Signed LEB128 of a 32-bit integer (values outside i32 are first wrapped, so u32 bit patterns work too). */
  sleb(v: number): this {
    v |= 0;
    for (;;) {
      const b = v & 0x7f;
      v >>= 7;
      const done = (v === 0 && (b & 0x40) === 0) || (v === -1 && (b & 0x40) !== 0);
      this.u8(done ? b : b | 0x80);
      if (done) return this;
    }
  }

  /** Signed LEB128 of a 64-bit integer. */
  sleb64(v: bigint): this {
    v = BigInt.asIntN(64, v);
    for (;;) {
      const b = Number(v & 0x7fn);
      v >>= 7n;
      const done = (v === 0n && (b & 0x40) === 0) || (v === -1n && (b & 0x40) !== 0);
      this.u8(done ? b : b | 0x80);
      if (done) return this;
    }
  }

  f32(v: number): this {
    const d = new DataView(new ArrayBuffer(4));
    d.setFloat32(0, v, true);
    return this.raw(new Uint8Array(d.buffer));
  }

  f64(v: number): this {
    const d = new DataView(new ArrayBuffer(8));
    d.setFloat64(0, v, true);
    return this.raw(new Uint8Array(d.buffer));
  }

  name(s: string): this {
    const b = new TextEncoder().encode(s);
    this.uleb(b.length);
    return this.raw(b);
  }

  /** A length-prefixed copy of another writer (a section or function body). */
  sized(inner: Bytes): this {
    this.uleb(inner.length);
    return this.raw(inner.bytes());
  }

  bytes(): Uint8Array {
    return this.buf.slice(0, this.length);
  }
}

// ---- function builder ------------------------------------------------------------------------------------

export class FnBuilder {
  readonly code = new Bytes();
  private readonly localTypes: ValType[] = [];
  readonly params: Local[];
  private depth = 0;

  constructor(
    readonly name: string,
    readonly paramTypes: readonly ValType[],
    readonly resultTypes: readonly ValType[],
  ) {
    this.params = paramTypes.map((t, i) => new Local(i, t));
  }

  op(b: number): Bytes {
    return this.code.u8(b);
  }

  simd(code: number): Bytes {
    return this.code.u8(0xfd).uleb(code);
  }

  /** A fresh local of `type`, optionally initialised. */
  local(type: ValType, init?: ExprLike): Local {
    const l = new Local(this.paramTypes.length + this.localTypes.length, type);
    this.localTypes.push(type);
    if (init !== undefined) this.set(l, init);
    return l;
  }

  /** Evaluates an expression and discards nothing: for statements that leave no value. */
  emit(e: Expr): void {
    e.emit(this);
  }

  set(l: Local, value: ExprLike): void {
    const v = typeof value === 'number' ? (l.type === 'f32' ? f32.const(value) : i32.const(value)) : value;
    if (v.type !== l.type) throw new TypeError(`${this.name}: set ${l.type} local from ${v.type}`);
    v.emit(this);
    this.op(0x21).uleb(l.index);
  }

  /** l += n (i32 locals). */
  inc(l: Local, n: ExprLike = 1): void {
    this.set(l, i32.add(l, n));
  }

  private store(code: number, natural: number, addr: ExprLike, value: Expr, offset: number, align: number, prefix: boolean): void {
    asI32(addr, 'store address').emit(this);
    value.emit(this);
    if (prefix) this.simd(code);
    else this.op(code);
    this.code.uleb(align < 0 ? natural : align).uleb(offset);
  }

  f32_store(addr: ExprLike, value: ExprLike, offset = 0): void {
    this.store(0x38, 2, addr, asF32(value, 'f32.store'), offset, -1, false);
  }
  i32_store(addr: ExprLike, value: ExprLike, offset = 0): void {
    this.store(0x36, 2, addr, asI32(value, 'i32.store'), offset, -1, false);
  }
  i32_store16(addr: ExprLike, value: ExprLike, offset = 0): void {
    this.store(0x3b, 1, addr, asI32(value, 'i32.store16'), offset, -1, false);
  }
  v128_store(addr: ExprLike, value: Expr, offset = 0, align = 4): void {
    this.store(0x0b, 4, addr, check(value, 'v128', 'v128.store'), offset, align, true);
  }
  /** Stores the low 64 bits of a vector. */
  v128_store64_lane0(addr: ExprLike, value: Expr, offset = 0): void {
    asI32(addr, 'store address').emit(this);
    check(value, 'v128', 'v128.store64_lane').emit(this);
    this.simd(0x5b).uleb(3).uleb(offset).u8(0);
  }

  // -- control flow --

  /** block … end; `body` gets the label depth to pass to br/brIf to leave the block. */
  block(body: () => void): void {
    this.op(0x02).u8(0x40);
    this.depth++;
    body();
    this.depth--;
    this.op(0x0b);
  }

  /** loop … end; a br to this label jumps back to the top. */
  loop(body: () => void): void {
    this.op(0x03).u8(0x40);
    this.depth++;
    body();
    this.depth--;
    this.op(0x0b);
  }

  if(cond: Expr, then: () => void, otherwise?: () => void): void {
    check(cond, 'i32', 'if condition').emit(this);
    this.op(0x04).u8(0x40);
    this.depth++;
    then();
    if (otherwise) {
      this.op(0x05);
      otherwise();
    }
    this.depth--;
    this.op(0x0b);
  }

  br(label: number): void {
    this.op(0x0c).uleb(label);
  }

  brIf(label: number, cond: Expr): void {
    check(cond, 'i32', 'br_if condition').emit(this);
    this.op(0x0d).uleb(label);
  }

  /** Calls function `index` (by ModuleBuilder.indexOf) for its effect; a result, if any, is dropped. */
  call(index: number, args: readonly ExprLike[], hasResult = false): void {
    for (const a of args) (typeof a === 'number' ? i32.const(a) : a).emit(this);
    this.op(0x10).uleb(index);
    if (hasResult) this.op(0x1a);
  }

  ret(value?: Expr): void {
    value?.emit(this);
    this.op(0x0f);
  }

  /**
   * for (i = start; i < end; i += step) body — as `if (i < end) loop { body; i += step; br_if (i < end) }`, the
   * shape V8 compiles best. Comparisons are signed (counters, not addresses).
   */
  for(i: Local, start: ExprLike, end: ExprLike, step: number, body: () => void): void {
    this.set(i, start);
    const endE = typeof end === 'number' ? i32.const(end) : end;
    this.if(i32.lt_s(i, endE), () => {
      this.loop(() => {
        body();
        this.inc(i, step);
        this.brIf(0, i32.lt_s(i, endE));
      });
    });
  }

  /** while (cond) body. */
  while(cond: () => Expr, body: () => void): void {
    this.if(cond(), () => {
      this.loop(() => {
        body();
        this.brIf(0, cond());
      });
    });
  }

  /** The function body: locals (run-length encoded by type) then the code and `end`. */
  body(): Bytes {
    const out = new Bytes();
    const groups: [number, ValType][] = [];
    for (const t of this.localTypes) {
      const last = groups[groups.length - 1];
      if (last && last[1] === t) last[0]++;
      else groups.push([1, t]);
    }
    out.uleb(groups.length);
    for (const [n, t] of groups) out.uleb(n).u8(VALTYPE[t]);
    out.raw(this.code.bytes());
    out.u8(0x0b);
    return out;
  }
}

// ---- module builder --------------------------------------------------------------------------------------

export interface MemoryImport {
  module: string;
  name: string;
  minPages: number;
  maxPages: number;
  shared: boolean;
}

export class ModuleBuilder {
  private readonly fns: FnBuilder[] = [];
  private readonly exported = new Set<string>();

  constructor(readonly memory: MemoryImport) {}

  /** Defines (and exports) a function; `build` receives the builder and its parameters as locals. */
  func(name: string, params: readonly ValType[], results: readonly ValType[], build: (f: FnBuilder, ...p: Local[]) => void, exported = true): number {
    if (this.fns.some((f) => f.name === name)) throw new Error(`duplicate wasm function ${name}`);
    const f = new FnBuilder(name, params, results);
    build(f, ...f.params);
    this.fns.push(f);
    if (exported) this.exported.add(name);
    return this.fns.length - 1;
  }

  /** Names of the exported functions, in definition order. */
  exportNames(): string[] {
    return this.fns.filter((f) => this.exported.has(f.name)).map((f) => f.name);
  }

  /** Index of a previously defined function (for `call`). */
  indexOf(name: string): number {
    const i = this.fns.findIndex((f) => f.name === name);
    if (i < 0) throw new Error(`no wasm function ${name}`);
    return i;
  }

  build(): Uint8Array {
    const out = new Bytes();
    out.raw([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]);
    const section = (id: number, content: Bytes) => out.u8(id).sized(content);

    // Types: one per distinct signature.
    const sigs: string[] = [];
    const sigOf = (f: FnBuilder) => {
      const key = `${f.paramTypes.join(',')}->${f.resultTypes.join(',')}`;
      let i = sigs.indexOf(key);
      if (i < 0) i = sigs.push(key) - 1;
      return i;
    };
    const fnSig = this.fns.map(sigOf);
    const types = new Bytes().uleb(sigs.length);
    for (const key of sigs) {
      const [p, r] = key.split('->') as [string, string];
      const ps = p ? (p.split(',') as ValType[]) : [];
      const rs = r ? (r.split(',') as ValType[]) : [];
      types.u8(0x60).uleb(ps.length);
      for (const t of ps) types.u8(VALTYPE[t]);
      types.uleb(rs.length);
      for (const t of rs) types.u8(VALTYPE[t]);
    }
    section(1, types);

    // Import: the memory (limits flag 0x03 = has max + shared).
    const m = this.memory;
    const imports = new Bytes().uleb(1).name(m.module).name(m.name).u8(0x02);
    imports.u8(m.shared ? 0x03 : 0x01).uleb(m.minPages).uleb(m.maxPages);
    section(2, imports);

    const funcs = new Bytes().uleb(this.fns.length);
    for (const s of fnSig) funcs.uleb(s);
    section(3, funcs);

    const exports = new Bytes().uleb(this.exported.size);
    this.fns.forEach((f, i) => {
      if (this.exported.has(f.name)) exports.name(f.name).u8(0x00).uleb(i);
    });
    section(7, exports);

    const code = new Bytes().uleb(this.fns.length);
    for (const f of this.fns) code.sized(f.body());
    section(10, code);
    return out.bytes();
  }
}
