// The instructions of the wasm emitter (emitter.ts): expression trees (`Expr`: a value type and a function that
// emits the instructions that push it) for integer/float scalar ops and 128-bit SIMD, with their opcodes from the
// WebAssembly core specification (binary format, §5) and the SIMD proposal's opcode table.

import type { FnBuilder } from './emitter.js';

export type ValType = 'i32' | 'i64' | 'f32' | 'f64' | 'v128';

// ---- expressions -----------------------------------------------------------------------------------------

/** A value-producing instruction sequence of a known type. */
export interface Expr {
  readonly type: ValType;
  emit(f: FnBuilder): void;
}

/** A local variable (parameters are locals too). `get()` reads it as an expression. */
export class Local implements Expr {
  constructor(
    readonly index: number,
    readonly type: ValType,
  ) {}
  emit(f: FnBuilder): void {
    f.op(0x20).uleb(this.index);
  }
  get(): Expr {
    return this;
  }
}

export type ExprLike = Expr | number;

export function expr(type: ValType, emit: (f: FnBuilder) => void): Expr {
  return { type, emit };
}

export function check(e: Expr, type: ValType, what: string): Expr {
  if (e.type !== type) throw new TypeError(`${what}: expected ${type}, got ${e.type}`);
  return e;
}

/** Integer literal helper: numbers become i32 constants. */
export function asI32(e: ExprLike, what: string): Expr {
  return typeof e === 'number' ? i32.const(e) : check(e, 'i32', what);
}

export function asF32(e: ExprLike, what: string): Expr {
  return typeof e === 'number' ? f32.const(e) : check(e, 'f32', what);
}

function unop(type: ValType, opType: ValType, code: number, name: string) {
  return (a: ExprLike): Expr => {
    const x = opType === 'i32' ? asI32(a, name) : opType === 'f32' ? asF32(a, name) : check(a as Expr, opType, name);
    return expr(type, (f) => {
      x.emit(f);
      f.op(code);
    });
  };
}

function binop(type: ValType, opType: ValType, code: number, name: string) {
  return (a: ExprLike, b: ExprLike): Expr => {
    const conv = (e: ExprLike) => (opType === 'i32' ? asI32(e, name) : opType === 'f32' ? asF32(e, name) : check(e as Expr, opType, name));
    const x = conv(a), y = conv(b);
    return expr(type, (f) => {
      x.emit(f);
      y.emit(f);
      f.op(code);
    });
  };
}

/** Alignment exponent (log2 bytes) and constant offset of a memory access. */
export interface MemArg {
  offset?: number;
  align?: number;
}

function load(type: ValType, code: number, natural: number, prefix = false) {
  return (addr: ExprLike, offset = 0, align = natural): Expr => {
    const a = asI32(addr, 'load address');
    return expr(type, (f) => {
      a.emit(f);
      const b = prefix ? f.simd(code) : f.op(code);
      b.uleb(align).uleb(offset);
    });
  };
}

export const i32 = {
  const: (v: number): Expr => expr('i32', (f) => f.op(0x41).sleb(v)),
  load: load('i32', 0x28, 2),
  load8_u: load('i32', 0x2d, 0),
  load16_u: load('i32', 0x2f, 1),
  load16_s: load('i32', 0x2e, 1),
  eqz: unop('i32', 'i32', 0x45, 'i32.eqz'),
  eq: binop('i32', 'i32', 0x46, 'i32.eq'),
  ne: binop('i32', 'i32', 0x47, 'i32.ne'),
  lt_s: binop('i32', 'i32', 0x48, 'i32.lt_s'),
  lt_u: binop('i32', 'i32', 0x49, 'i32.lt_u'),
  gt_s: binop('i32', 'i32', 0x4a, 'i32.gt_s'),
  gt_u: binop('i32', 'i32', 0x4b, 'i32.gt_u'),
  le_s: binop('i32', 'i32', 0x4c, 'i32.le_s'),
  ge_s: binop('i32', 'i32', 0x4e, 'i32.ge_s'),
  ge_u: binop('i32', 'i32', 0x4f, 'i32.ge_u'),
  add: binop('i32', 'i32', 0x6a, 'i32.add'),
  sub: binop('i32', 'i32', 0x6b, 'i32.sub'),
  mul: binop('i32', 'i32', 0x6c, 'i32.mul'),
  div_s: binop('i32', 'i32', 0x6d, 'i32.div_s'),
  div_u: binop('i32', 'i32', 0x6e, 'i32.div_u'),
  rem_u: binop('i32', 'i32', 0x70, 'i32.rem_u'),
  and: binop('i32', 'i32', 0x71, 'i32.and'),
  or: binop('i32', 'i32', 0x72, 'i32.or'),
  xor: binop('i32', 'i32', 0x73, 'i32.xor'),
  shl: binop('i32', 'i32', 0x74, 'i32.shl'),
  shr_s: binop('i32', 'i32', 0x75, 'i32.shr_s'),
  shr_u: binop('i32', 'i32', 0x76, 'i32.shr_u'),
  min_s: (a: ExprLike, b: ExprLike): Expr => select(a, b, i32.lt_s(a, b)),
  trunc_sat_f32_s: (a: ExprLike): Expr => {
    const x = asF32(a, 'i32.trunc_sat_f32_s');
    return expr('i32', (f) => {
      x.emit(f);
      f.op(0xfc).uleb(0);
    });
  },
  reinterpret_f32: unop('i32', 'f32', 0xbc, 'i32.reinterpret_f32'),
};

export const f32 = {
  const: (v: number): Expr => expr('f32', (f) => f.op(0x43).f32(v)),
  load: load('f32', 0x2a, 2),
  eq: binop('i32', 'f32', 0x5b, 'f32.eq'),
  ne: binop('i32', 'f32', 0x5c, 'f32.ne'),
  lt: binop('i32', 'f32', 0x5d, 'f32.lt'),
  gt: binop('i32', 'f32', 0x5e, 'f32.gt'),
  le: binop('i32', 'f32', 0x5f, 'f32.le'),
  ge: binop('i32', 'f32', 0x60, 'f32.ge'),
  abs: unop('f32', 'f32', 0x8b, 'f32.abs'),
  neg: unop('f32', 'f32', 0x8c, 'f32.neg'),
  floor: unop('f32', 'f32', 0x8e, 'f32.floor'),
  nearest: unop('f32', 'f32', 0x90, 'f32.nearest'),
  sqrt: unop('f32', 'f32', 0x91, 'f32.sqrt'),
  add: binop('f32', 'f32', 0x92, 'f32.add'),
  sub: binop('f32', 'f32', 0x93, 'f32.sub'),
  mul: binop('f32', 'f32', 0x94, 'f32.mul'),
  div: binop('f32', 'f32', 0x95, 'f32.div'),
  min: binop('f32', 'f32', 0x96, 'f32.min'),
  max: binop('f32', 'f32', 0x97, 'f32.max'),
  convert_i32_s: unop('f32', 'i32', 0xb2, 'f32.convert_i32_s'),
  demote_f64: unop('f32', 'f64', 0xb6, 'f32.demote_f64'),
  reinterpret_i32: unop('f32', 'i32', 0xbe, 'f32.reinterpret_i32'),
};

export const f64 = {
  const: (v: number): Expr => expr('f64', (f) => f.op(0x44).f64(v)),
  add: binop('f64', 'f64', 0xa0, 'f64.add'),
  sub: binop('f64', 'f64', 0xa1, 'f64.sub'),
  mul: binop('f64', 'f64', 0xa2, 'f64.mul'),
  div: binop('f64', 'f64', 0xa3, 'f64.div'),
  sqrt: unop('f64', 'f64', 0x9f, 'f64.sqrt'),
  promote_f32: unop('f64', 'f32', 0xbb, 'f64.promote_f32'),
};

/** `c ? a : b` without branching (both sides are evaluated). */
export function select(a: ExprLike, b: ExprLike, c: Expr): Expr {
  const x = typeof a === 'number' ? i32.const(a) : a;
  const y = typeof b === 'number' ? i32.const(b) : b;
  if (x.type !== y.type) throw new TypeError(`select: ${x.type} vs ${y.type}`);
  check(c, 'i32', 'select condition');
  return expr(x.type, (f) => {
    x.emit(f);
    y.emit(f);
    c.emit(f);
    f.op(0x1b);
  });
}

// ---- SIMD (0xfd prefix) ----

function vun(code: number, name: string, inType: ValType = 'v128', outType: ValType = 'v128') {
  return (a: Expr): Expr => {
    check(a, inType, name);
    return expr(outType, (f) => {
      a.emit(f);
      f.simd(code);
    });
  };
}

function vbin(code: number, name: string) {
  return (a: Expr, b: Expr): Expr => {
    check(a, 'v128', name);
    check(b, 'v128', name);
    return expr('v128', (f) => {
      a.emit(f);
      b.emit(f);
      f.simd(code);
    });
  };
}

function vshift(code: number, name: string) {
  return (a: Expr, n: ExprLike): Expr => {
    check(a, 'v128', name);
    const s = asI32(n, name);
    return expr('v128', (f) => {
      a.emit(f);
      s.emit(f);
      f.simd(code);
    });
  };
}

function lane(code: number, outType: ValType, name: string) {
  return (a: Expr, idx: number): Expr => {
    check(a, 'v128', name);
    return expr(outType, (f) => {
      a.emit(f);
      f.simd(code).u8(idx);
    });
  };
}

export const v128 = {
  load: load('v128', 0x00, 4, true),
  /** Loads one f32/i32 and broadcasts it to all four lanes. */
  load32_splat: load('v128', 0x09, 2, true),
  /** Loads 64 bits into the low half, zeroes the high half. */
  load64_zero: load('v128', 0x5d, 3, true),
  const: (bytes: ArrayLike<number>): Expr => {
    if (bytes.length !== 16) throw new RangeError('v128.const needs 16 bytes');
    return expr('v128', (f) => f.simd(0x0c).raw(bytes));
  },
  constF32: (a: number, b: number, c: number, d: number): Expr => {
    const v = new Uint8Array(new Float32Array([a, b, c, d]).buffer);
    return v128.const(v);
  },
  constI32: (a: number, b: number, c: number, d: number): Expr => {
    const v = new Uint8Array(new Int32Array([a, b, c, d]).buffer);
    return v128.const(v);
  },
  zero: (): Expr => v128.const(new Uint8Array(16)),
  not: vun(0x4d, 'v128.not'),
  and: vbin(0x4e, 'v128.and'),
  andnot: vbin(0x4f, 'v128.andnot'),
  or: vbin(0x50, 'v128.or'),
  xor: vbin(0x51, 'v128.xor'),
  /** (a & c) | (b & ~c), bitwise. */
  bitselect: (a: Expr, b: Expr, c: Expr): Expr => {
    for (const e of [a, b, c]) check(e, 'v128', 'v128.bitselect');
    return expr('v128', (f) => {
      a.emit(f);
      b.emit(f);
      c.emit(f);
      f.simd(0x52);
    });
  },
  any_true: vun(0x53, 'v128.any_true', 'v128', 'i32'),
  /** Byte shuffle of the 32 bytes of a‖b (lane indices 0–31). */
  shuffle: (a: Expr, b: Expr, lanes: readonly number[]): Expr => {
    check(a, 'v128', 'i8x16.shuffle');
    check(b, 'v128', 'i8x16.shuffle');
    if (lanes.length !== 16 || lanes.some((l) => l < 0 || l > 31)) throw new RangeError('i8x16.shuffle needs 16 lanes in 0..31');
    return expr('v128', (f) => {
      a.emit(f);
      b.emit(f);
      f.simd(0x0d).raw(lanes);
    });
  },
  /** 32-bit lane shuffle (indices 0–7 over a‖b), expressed as a byte shuffle. */
  shuffle32: (a: Expr, b: Expr, l: readonly [number, number, number, number]): Expr =>
    v128.shuffle(a, b, l.flatMap((x) => [4 * x, 4 * x + 1, 4 * x + 2, 4 * x + 3])),
};

export const f32x4 = {
  /** Relaxed SIMD fused (or not) multiply-add a·b + c; only where the engine supports relaxed SIMD. */
  relaxed_madd: (a: Expr, b: Expr, c: Expr): Expr => {
    for (const e of [a, b, c]) check(e, 'v128', 'f32x4.relaxed_madd');
    return expr('v128', (f) => {
      a.emit(f);
      b.emit(f);
      c.emit(f);
      f.simd(0x105);
    });
  },
  splat: (a: ExprLike): Expr => {
    const x = asF32(a, 'f32x4.splat');
    return expr('v128', (f) => {
      x.emit(f);
      f.simd(0x13);
    });
  },
  extract_lane: lane(0x1f, 'f32', 'f32x4.extract_lane'),
  eq: vbin(0x41, 'f32x4.eq'),
  ne: vbin(0x42, 'f32x4.ne'),
  lt: vbin(0x43, 'f32x4.lt'),
  gt: vbin(0x44, 'f32x4.gt'),
  le: vbin(0x45, 'f32x4.le'),
  ge: vbin(0x46, 'f32x4.ge'),
  ceil: vun(0x67, 'f32x4.ceil'),
  floor: vun(0x68, 'f32x4.floor'),
  trunc: vun(0x69, 'f32x4.trunc'),
  nearest: vun(0x6a, 'f32x4.nearest'),
  abs: vun(0xe0, 'f32x4.abs'),
  neg: vun(0xe1, 'f32x4.neg'),
  sqrt: vun(0xe3, 'f32x4.sqrt'),
  add: vbin(0xe4, 'f32x4.add'),
  sub: vbin(0xe5, 'f32x4.sub'),
  mul: vbin(0xe6, 'f32x4.mul'),
  div: vbin(0xe7, 'f32x4.div'),
  min: vbin(0xe8, 'f32x4.min'),
  max: vbin(0xe9, 'f32x4.max'),
  /** min/max without NaN propagation rules (b < a ? b : a), cheaper on x64. */
  pmin: vbin(0xea, 'f32x4.pmin'),
  pmax: vbin(0xeb, 'f32x4.pmax'),
  convert_i32x4_s: vun(0xfa, 'f32x4.convert_i32x4_s'),
};

export const i16x8 = {
  eq: vbin(0x2d, 'i16x8.eq'),
};

export const i32x4 = {
  splat: (a: ExprLike): Expr => {
    const x = asI32(a, 'i32x4.splat');
    return expr('v128', (f) => {
      x.emit(f);
      f.simd(0x11);
    });
  },
  extract_lane: lane(0x1b, 'i32', 'i32x4.extract_lane'),
  eq: vbin(0x37, 'i32x4.eq'),
  ne: vbin(0x38, 'i32x4.ne'),
  gt_s: vbin(0x3b, 'i32x4.gt_s'),
  extend_low_i16x8_u: vun(0xa9, 'i32x4.extend_low_i16x8_u'),
  extend_high_i16x8_u: vun(0xaa, 'i32x4.extend_high_i16x8_u'),
  shl: vshift(0xab, 'i32x4.shl'),
  shr_s: vshift(0xac, 'i32x4.shr_s'),
  shr_u: vshift(0xad, 'i32x4.shr_u'),
  add: vbin(0xae, 'i32x4.add'),
  sub: vbin(0xb1, 'i32x4.sub'),
  mul: vbin(0xb5, 'i32x4.mul'),
  trunc_sat_f32x4_s: vun(0xf8, 'i32x4.trunc_sat_f32x4_s'),
};
